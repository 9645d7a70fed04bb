"""Training/validation samples for 1C-DSN: scale-matched crops, simulated clicks, previous masks."""
from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np
import torch

from simpson_client.protocol import Point

from ..masks import mask_box
from ..models.dsn import click_maps
from ..models.window import Window, covers_image, crop_resize, fit_window, window_part
from ..windows import MIN_WINDOW
from ..windows import SMALL_PROBE as PROBE_SHARE   # the small-object probe window, of the long side
from .synth import Scene, random_blob

# The daemon's views of a big photo (backend/segment.py), for real-size training crops.
COARSE_SIDE = 512   # segment.COARSE_SIDE: the whole-image pass's long side
REFINE_SHARE = 0.35  # share of training crops with a previous mask and corrective clicks


class Sample(NamedTuple):
    """image 3×S×S float 0..255; pos/neg 2×S×S; prev 1×S×S; target 1×S×S (all float32)."""
    image: torch.Tensor
    pos: torch.Tensor
    neg: torch.Tensor
    prev: torch.Tensor
    target: torch.Tensor


def choose_window(mask: np.ndarray, rng: np.random.Generator, fill: float) -> Window:
    """Square window where the object's box covers `fill` of the area, object inside."""
    x0, y0, x1, y1 = mask_box(mask)
    bw, bh = x1 - x0, y1 - y0
    side = max(np.sqrt(bw * bh / fill), 1.1 * max(bw, bh), 32.0)
    cx = (x0 + x1) / 2 + rng.uniform(-0.4, 0.4) * max(side - bw, 0)
    cy = (y0 + y1) / 2 + rng.uniform(-0.4, 0.4) * max(side - bh, 0)
    return fit_window(cx, cy, side, mask.shape[1], mask.shape[0])


def crop_mask(mask: np.ndarray, win: Window, size: int) -> np.ndarray:
    """crop_resize(mask.astype(float32), win, size) > 0.5, the same bits, converting only the part
    of the mask inside the window (a 12-MP scene's masks are 12 M pixels each)."""
    part, at = window_part(mask, win)
    if not part.any():
        return np.zeros((size, size), bool)
    return crop_resize(part.astype(np.float32), at, size) > 0.5


def click_inside(mask: np.ndarray, rng: np.random.Generator, central: bool) -> tuple[float, float] | None:
    """A pixel centre inside `mask` (bool): near the interior if central, else anywhere >= 2 px in."""
    dist = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 5)[1:-1, 1:-1]
    if dist.max() <= 0:
        return None
    thr = 0.5 * dist.max() if central else min(2.0, dist.max())
    cand = np.argwhere(dist >= thr)
    y, x = cand[rng.integers(len(cand))]
    return float(x) + 0.5, float(y) + 0.5


def error_click(gt: np.ndarray, prev: np.ndarray, rng: np.random.Generator) -> Point | None:
    """Click at the interior of the largest error region: positive if missed, negative if extra."""
    best: tuple[float, Point] | None = None
    for region, positive in ((gt & ~prev, True), (prev & ~gt, False)):
        if not region.any():
            continue
        dist = cv2.distanceTransform(np.pad(region, 1).astype(np.uint8), cv2.DIST_L2, 5)[1:-1, 1:-1]
        m = float(dist.max())
        cand = np.argwhere(dist >= 0.8 * m)
        y, x = cand[rng.integers(len(cand))]
        if best is None or m > best[0]:
            best = (m, (float(x) + 0.5, float(y) + 0.5, positive))
    return best[1] if best else None


def background_region(image: np.ndarray, gt: np.ndarray, rng: np.random.Generator,
                      tolerance: tuple[int, int] = (8, 30)) -> np.ndarray:
    """A colour-coherent region of the background next to the object (flood fill from a pixel
    just outside it, colour tolerance drawn from `tolerance`): what a one-click model selects
    when it takes the object's support."""
    ring = cv2.dilate(gt.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool) & ~gt
    ys, xs = np.nonzero(ring)
    if not len(ys):
        return np.zeros_like(gt)
    i = rng.integers(len(ys))
    tol = (int(rng.integers(*tolerance)),) * 3
    ff = np.zeros((gt.shape[0] + 2, gt.shape[1] + 2), np.uint8)
    blurred = cv2.GaussianBlur(np.ascontiguousarray(image), (5, 5), 0)
    cv2.floodFill(blurred, ff, (int(xs[i]), int(ys[i])), 0, tol, tol,
                  4 | cv2.FLOODFILL_MASK_ONLY | (255 << 8))
    return (ff[1:-1, 1:-1] > 0) & ~gt


def enclosing_region(image: np.ndarray, gt: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The object together with the bigger thing it lies on (a drawing with the boat under it):
    a loose flood fill of its surroundings, holes filled, or a blob a few times its size around
    it where that fill stays small or takes most of the crop. A negative click deep inside it
    must bring the object back."""
    region = background_region(image, gt, rng, tolerance=(12, 45)) | gt
    if region.sum() < 3 * gt.sum() or (region.mean() > 0.7 and rng.random() < 0.6):
        x0, y0, x1, y1 = mask_box(gt)
        k = rng.uniform(2.0, 4.0)
        bw, bh = int((x1 - x0) * k) + 8, int((y1 - y0) * k) + 8
        blob = np.zeros(gt.shape, np.uint8)
        cx, cy = (x0 + x1) // 2 + int(rng.integers(-bw // 6, bw // 6 + 1)), (y0 + y1) // 2 + int(rng.integers(-bh // 6, bh // 6 + 1))
        cv2.ellipse(blob, (cx, cy), (bw // 2, bh // 2), float(rng.uniform(0, 180)), 0, 360, 1, -1)
        region = blob.astype(bool) | gt
    filled = region.astype(np.uint8)
    contours, _ = cv2.findContours(filled, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(filled, contours, -1, 1, -1)
    return filled.astype(bool)


def perturb_mask(gt: np.ndarray, others: list[np.ndarray], rng: np.random.Generator,
                 image: np.ndarray | None = None, scale: int | None = None) -> np.ndarray:
    """A plausible wrong previous prediction made from the ground truth (`image`: the same
    pixels, for background regions). `scale`: the side of the window the object is seen in
    (default: the array's height, for a crop); the sizes of the mistakes follow it."""
    m = gt.astype(np.uint8)
    s = scale or m.shape[0]
    r = rng.random()
    if r < 0.25:
        k = int(rng.integers(3, max(4, s // 12)))
        op = cv2.erode if rng.random() < 0.5 else cv2.dilate
        m = op(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    elif r < 0.5:  # a missing part
        x0, y0, x1, y1 = mask_box(gt)
        bh, bw = max((y1 - y0) // 2, 4), max((x1 - x0) // 2, 4)
        y, x = int(rng.integers(y0, max(y1 - bh // 2, y0 + 1))), int(rng.integers(x0, max(x1 - bw // 2, x0 + 1)))
        hole = np.zeros_like(m)
        blob = random_blob(rng, bh, bw) > 0
        hole[y:y + bh, x:x + bw] = blob[: m.shape[0] - y, : m.shape[1] - x]
        m = m & (1 - hole)
    elif r < 0.75 and others:  # bled into a neighbour
        m = m | others[rng.integers(len(others))].astype(np.uint8)
    elif r < 0.82 and image is not None:  # took a region of the background with it
        m = m | background_region(image, gt, rng)
    elif r < 0.92 and image is not None:  # took the bigger thing the object lies on
        m = enclosing_region(image, gt, rng).astype(np.uint8)
    else:  # an extra blob touching the object
        bh, bw = int(rng.integers(8, s // 3)), int(rng.integers(8, s // 3))
        ys, xs = np.nonzero(cv2.morphologyEx(m, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)))
        if len(ys):
            i = rng.integers(len(ys))
            y, x = max(ys[i] - bh // 2, 0), max(xs[i] - bw // 2, 0)
            blob = (random_blob(rng, bh, bw) > 0).astype(np.uint8)
            m[y:y + bh, x:x + bw] |= blob[: m.shape[0] - y, : m.shape[1] - x]
    return m.astype(bool)


def make_sample(scene: Scene, index: int, rng: np.random.Generator, size: int = 320,
                fill: float | None = None, refine: bool | None = None,
                min_fill: float = 0.005, prev_window: float = 0.0, view: Window | None = None,
                refine_share: float = REFINE_SHARE) -> Sample:
    """Crop around instance `index` at a random scale; simulate 1-3 clicks (+ previous mask).

    min_fill: the smallest object share of the crop (a quarter of the crops are log-uniform
    between it and 0.1, the coarse whole-image pass's view of small objects).
    prev_window: the share of refinement crops whose window is fitted to the previous mask,
    not the object: the daemon refines in the window of the selection (segment.py), so a
    selection that took the boat under a drawing is seen at the boat's scale.
    view: crop exactly this window (realsize_sample's daemon views) instead of one chosen by fill.
    refine_share: the share of crops given a previous mask and corrective clicks when `refine` is
    None (0: first-click crops only, for the first-click model)."""
    mask = scene.masks[index]
    if fill is None:
        fill = rng.uniform(0.1, 0.6) if rng.random() < 0.75 else float(np.exp(rng.uniform(np.log(min_fill), np.log(0.1))))
    if refine is None:
        refine = rng.random() < refine_share
    win = view or choose_window(mask, rng, fill)
    prev_full = None
    if view is None and refine and rng.random() < prev_window:  # the mistake at the scene's scale, then its window
        near = [m for i, m in enumerate(scene.masks) if i != index
                and m[max(win.y0, 0):win.y0 + win.side, max(win.x0, 0):win.x0 + win.side].any()]
        prev_full = perturb_mask(mask, near, rng, scene.image, scale=win.side)
        win = choose_window(prev_full if prev_full.any() else mask, rng, rng.uniform(0.15, 0.45))
        h, w = mask.shape
        if covers_image(win.side, w, h):  # the daemon then decodes the whole image
            win = fit_window(w / 2, h / 2, max(h, w), w, h)
    image = crop_resize(scene.image, win, size)
    gt = crop_mask(mask, win, size)
    others = [crop_mask(m, win, size) for i, m in enumerate(scene.masks) if i != index]
    others = [o for o in others if o.any()]
    if not gt.any():  # vanished at this scale: fall back to a comfortable window
        return make_sample(scene, index, rng, size, 0.3, refine)
    first = click_inside(gt, rng, central=rng.random() < 0.5)
    points: list[Point] = [(first[0], first[1], True)]
    prev = np.zeros_like(gt)
    if refine:
        if prev_full is not None:
            prev = crop_mask(prev_full, win, size)
        else:
            prev = perturb_mask(gt, others, rng, image)
        for _ in range(int(rng.integers(1, 3))):
            p = error_click(gt, prev, rng)
            if p is None:
                break
            points.append(p)
            if rng.random() < 0.5:  # the next error region (as if the net fixed the first)
                x, y = int(p[0]), int(p[1])
                fix = np.zeros_like(gt)
                cv2.circle(fix.view(np.uint8), (x, y), int(rng.integers(6, 30)), 1, -1)
                prev = np.where(fix, gt, prev)
    else:
        r = rng.random()
        if r < 0.15 and others:  # negative click on a neighbour
            o = others[rng.integers(len(others))]
            c = click_inside(o, rng, central=True)
            if c:
                points.append((c[0], c[1], False))
        elif r < 0.25:  # a second positive click
            c = click_inside(gt, rng, central=False)
            if c:
                points.append((c[0], c[1], True))
    pos, neg = click_maps(points, size, size)
    return Sample(torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float(), pos, neg,
                  torch.from_numpy(prev.astype(np.float32))[None], torch.from_numpy(gt.astype(np.float32))[None])


def pick_instance(scene: Scene, rng: np.random.Generator, min_area: int = 64) -> int:
    ok = [i for i, m in enumerate(scene.masks) if np.count_nonzero(m) >= min_area]
    if not ok:
        ok = list(range(len(scene.masks)))
    return int(ok[rng.integers(len(ok))])


def realsize_sample(scene: Scene, rng: np.random.Generator, size: int = 320, min_fill: float = 0.002,
                    prev_window: float = 0.0, coarse: float = 0.3, probe: float = 0.3,
                    refine_share: float = REFINE_SHARE) -> Sample:
    """A crop of a real-size scene (synth.RealSizeGenerator) as the daemon sees a click on a small
    object in a big photo (backend/segment.py): with probability `coarse` the whole-image pass's
    scale (the photo at COARSE_SIDE on its long side; the crop is a size×size part of that view
    holding the object), with probability `probe` the small-object probe (a window of PROBE_SHARE
    of the long side around a pixel of the object, snapped to 8 px), else a zoom-in window chosen
    by fill as make_sample chooses it (refinement crops included). These two first views are
    first-click crops (no previous mask). The object: one of the repeated copies 3 times in 4
    (what a user clicks), else any instance."""
    copies = [i for i, r in enumerate(scene.roles) if r == "copy" and np.count_nonzero(scene.masks[i]) >= 64]
    index = int(copies[rng.integers(len(copies))]) if copies and rng.random() < 0.75 else pick_instance(scene, rng)
    h, w = scene.masks[index].shape
    long_side = max(h, w)
    r = rng.random()
    if r < coarse + probe:
        mask = scene.masks[index]
        x0, y0, x1, y1 = mask_box(mask)
        if r < coarse:
            side = long_side * size / COARSE_SIDE
            cx = (x0 + x1) / 2 + rng.uniform(-0.4, 0.4) * max(side - (x1 - x0), 0)
            cy = (y0 + y1) / 2 + rng.uniform(-0.4, 0.4) * max(side - (y1 - y0), 0)
        else:
            side = int(np.ceil(max(MIN_WINDOW, PROBE_SHARE * long_side) / 16) * 16)
            c = click_inside(mask[y0:y1, x0:x1], rng, central=rng.random() < 0.5)
            cx, cy = (x0 + c[0], y0 + c[1]) if c else ((x0 + x1) / 2, (y0 + y1) / 2)
            cx, cy = round(cx / 8) * 8, round(cy / 8) * 8
        if not covers_image(side, w, h):
            return make_sample(scene, index, rng, size, refine=False, view=fit_window(cx, cy, side, w, h))
    return make_sample(scene, index, rng, size, min_fill=min_fill, prev_window=prev_window, refine_share=refine_share)
