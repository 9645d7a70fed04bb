"""The classic engine: OpenCV only, no weights. Fallback and benchmark baseline.

select: GrabCut seeded from the clicks; similar: colour matching against the seed's colours;
erase: OpenCV Telea inpainting.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..cache import ImageEntry
from . import Engine, Found, Point, Progress

WORK_SIDE = 480          # GrabCut works on a window resized to at most this many pixels
SIMILAR_SIDE = 1024      # colour matching works on the image resized to at most this


class ClassicEngine(Engine):
    name = "classic"
    ops = frozenset({"select", "similar", "erase"})

    def select(self, entry: ImageEntry, points: list[Point], previous: np.ndarray | None,
               progress: Progress) -> np.ndarray:
        return grabcut_select(entry.rgb, points, previous)

    def similar(self, entry: ImageEntry, seed: np.ndarray, progress: Progress,
                min_score: float | None = None) -> list[Found]:
        found = colour_similar(entry.rgb, seed)   # its colour gate decides; min_score only filters
        return found if min_score is None else [f for f in found if f.score >= min_score]

    def erase(self, rgb: np.ndarray, hole: np.ndarray, progress: Progress) -> np.ndarray:
        return cv2.inpaint(rgb, hole.astype(np.uint8), 5, cv2.INPAINT_TELEA)


def grabcut_select(rgb: np.ndarray, points: list[Point], previous: np.ndarray | None) -> np.ndarray:
    """GrabCut in a window around the clicks (and the previous mask); H×W bool."""
    h, w = rgb.shape[:2]
    pos = [(x, y) for x, y, p in points if p]
    neg = [(x, y) for x, y, p in points if not p]
    prev = previous if previous is not None else np.zeros((h, w), bool)
    if not pos and not prev.any():
        return np.zeros((h, w), bool)
    xs = [x for x, _ in pos]
    ys = [y for _, y in pos]
    if prev.any():
        py, px = np.nonzero(prev)
        xs += [px.min(), px.max()]
        ys += [py.min(), py.max()]
    grow = max(0.12 * min(w, h), 24.0)
    x0, x1 = int(max(0, min(xs) - grow)), int(min(w, max(xs) + grow + 1))
    y0, y1 = int(max(0, min(ys) - grow)), int(min(h, max(ys) + grow + 1))
    scale = min(1.0, WORK_SIDE / max(x1 - x0, y1 - y0))
    size = (max(8, round((x1 - x0) * scale)), max(8, round((y1 - y0) * scale)))
    crop = cv2.resize(rgb[y0:y1, x0:x1], size, interpolation=cv2.INTER_AREA)
    gc = np.full(crop.shape[:2], cv2.GC_PR_BGD, np.uint8)
    prev_crop = cv2.resize(prev[y0:y1, x0:x1].astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
    gc[prev_crop > 0] = cv2.GC_PR_FGD
    radius = max(3, int(0.08 * min(size)))
    for x, y in pos:
        c = (int((x - x0) * scale), int((y - y0) * scale))
        cv2.circle(gc, c, radius, cv2.GC_PR_FGD, -1)
        cv2.circle(gc, c, 2, cv2.GC_FGD, -1)
    # window sides inside the image are background (the object is assumed to fit the window)
    if x0 > 0:
        gc[:, 0] = cv2.GC_BGD
    if x1 < w:
        gc[:, -1] = cv2.GC_BGD
    if y0 > 0:
        gc[0, :] = cv2.GC_BGD
    if y1 < h:
        gc[-1, :] = cv2.GC_BGD
    for x, y in neg:
        cv2.circle(gc, (int((x - x0) * scale), int((y - y0) * scale)), 3, cv2.GC_BGD, -1)
    if (gc == cv2.GC_BGD).all() or not ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)).any():
        return prev.copy()
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(crop, gc, None, bgd, fgd, 5, cv2.GC_INIT_WITH_MASK)
    except cv2.error:   # degenerate input (e.g. one colour): keep the seeds
        pass
    fg = ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)).astype(np.uint8)
    # keep the parts connected to a positive click or to the previous mask
    n, labels = cv2.connectedComponents(fg, connectivity=8)
    keep = np.zeros(n, bool)
    for x, y in pos:
        keep[labels[min(size[1] - 1, int((y - y0) * scale)), min(size[0] - 1, int((x - x0) * scale))]] = True
    keep[np.unique(labels[prev_crop > 0])] = True
    keep[0] = False
    small = keep[labels].astype(np.float32)
    full = cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR) >= 0.5
    out = np.zeros((h, w), bool)
    out[y0:y1, x0:x1] = full
    return out


def colour_similar(rgb: np.ndarray, seed: np.ndarray) -> list[Found]:
    """Regions whose colours match the seed's and whose size is close to it."""
    h, w = rgb.shape[:2]
    scale = min(1.0, SIMILAR_SIDE / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    seed_small = cv2.resize(seed.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    if seed_small.sum() < 4:
        return []
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).astype(np.float32)
    inside = lab[seed_small]
    mean = inside.mean(0)
    std = np.maximum(inside.std(0), 6.0)
    dist = np.sqrt((((lab - mean) / std) ** 2).sum(-1))
    cand = (dist < 2.0).astype(np.uint8)
    cand = cv2.morphologyEx(cand, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    cand = cv2.morphologyEx(cand, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    cand[cv2.dilate(seed_small.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0] = 0
    n, labels, stats, _ = cv2.connectedComponentsWithStats(cand, connectivity=8)
    area = float(seed_small.sum())
    found = []
    for i in range(1, n):
        a = stats[i, cv2.CC_STAT_AREA]
        if not 0.3 * area <= a <= 3.0 * area:
            continue
        region = labels == i
        score = float(np.exp(-dist[region].mean() / 2.0) * min(a / area, area / a) ** 0.5)
        x, y, bw, bh = (int(v) for v in stats[i, :4])
        full_box = (int(x / scale), int(y / scale), max(1, round(bw / scale)), max(1, round(bh / scale)))
        fx, fy, fw, fh = _clip_box(full_box, w, h)
        crop = region[y:y + bh, x:x + bw].astype(np.uint8)
        mask = cv2.resize(crop, (fw, fh), interpolation=cv2.INTER_NEAREST) > 0
        found.append(Found((fx, fy, fw, fh), mask, score))
    found.sort(key=lambda f: -f.score)
    return found[:200]


def _clip_box(box: tuple[int, int, int, int], w: int, h: int) -> tuple[int, int, int, int]:
    x, y, bw, bh = box
    x, y = min(max(0, x), w - 1), min(max(0, y), h - 1)
    return x, y, max(1, min(bw, w - x)), max(1, min(bh, h - y))
