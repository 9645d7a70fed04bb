"""Pixel match: a candidate the verifier rejected is a copy when the query's own pixels, turned
and scaled onto it, match it.

The verifier compares pooled features, colour histograms and shapes; a copy that is turned 40°,
70 % of the query's size and re-lit often scores under its threshold (on the real-size split a
third of the missed copies are proposed, segmented whole and rejected: docs/similar.md, twentieth
session). Such a copy is the query's own pixels in another pose, which a look-alike is not:

- the query's gray image, inside its mask, is turned (every ANGLE_STEP degrees) and scaled
  (SCALES about the square root of the area ratio) and matched against the candidate's
  neighbourhood (masked normalised cross-correlation, cv2.matchTemplate: blind to a gain and an
  offset of the light), its centre within REACH of the candidate's;
- at the best pose, where the query's mask and the candidate's overlap (a copy partly hidden by
  clutter is compared on what shows), the gray pixels must correlate (likeness) and the colour
  pixels must be the query's under one light: most of them within AGREE of the query's pixel times
  one gain, the same on the three channels and varying linearly across the object (shading),
  fitted robustly (a look-alike recoloured from the same drawing has the same gray structure but
  needs a gain per channel; a copy in another pose or light agrees pixel by pixel);
- and the query's mask at that pose must hold most of the candidate's mask and overlap it (a shape
  test: another object of the same colour that matched in part does not; a copy partly hidden is
  inside the query's shape though it covers only part of it).

The thresholds that decide live in SimilarSettings (pixel_*), chosen on real-size validation scenes.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple, Optional

import cv2
import numpy as np

from .repeated_parts import AGREE, centroid
from .types import MaskPatch, SimilarSettings

SIDE = 48                                  # the query's long side in working pixels
SCALES = (0.8, 0.9, 1.0, 1.1, 1.25)        # × the square root of the candidate's area over the query's
ANGLE_STEP = 6                             # degrees between the turns tried
REACH = 0.3                                # the match's centre within this × SIDE × scale of the candidate's
ROOM = 0.75                                # the query's crop: this × its long side on each side of its centre
FIT = 0.6                                  # the light is fitted again on this share of the pixels that fit best


class Match(NamedTuple):
    """The query at its best pose on a candidate (the pose: the best masked normalised cross-correlation
    of the gray images); likeness and agreement are measured where the query's mask at that pose and the
    candidate's overlap (a copy partly hidden by clutter is compared on what shows)."""
    likeness: float       # normalised cross-correlation of the gray pixels there (-1..1)
    agreement: float      # share of those pixels whose colours are the query's under one light (AGREE)
    shape_iou: float      # IoU of the query's mask at that pose and the candidate's
    inside: float         # share of the candidate's mask inside the query's mask at that pose


def _crop(rgb: np.ndarray, c: tuple[float, float], r: float, f: float) -> np.ndarray:
    """The square of half-side r image pixels about c, f working pixels per image pixel (area-
    resampled first when shrinking, so every image pixel counts), float32."""
    n = max(3, int(round(2 * r * f)))
    H, W = rgb.shape[:2]
    x0, y0 = int(max(0, np.floor(c[0] - r - 2))), int(max(0, np.floor(c[1] - r - 2)))
    x1, y1 = int(min(W, np.ceil(c[0] + r + 2))), int(min(H, np.ceil(c[1] + r + 2)))
    src = rgb[y0:y1, x0:x1]
    kx = ky = 1.0
    if f < 0.5 and x1 - x0 > 1 and y1 - y0 > 1:
        w, h = max(1, round((x1 - x0) * f)), max(1, round((y1 - y0) * f))
        src = cv2.resize(src, (w, h), interpolation=cv2.INTER_AREA)
        kx, ky = w / (x1 - x0), h / (y1 - y0)
    m = np.array([[kx / f, 0, (c[0] - r - x0) * kx], [0, ky / f, (c[1] - r - y0) * ky]], np.float32)
    return cv2.warpAffine(np.ascontiguousarray(src), m, (n, n), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE).astype(np.float32)


def _mask_crop(p: MaskPatch, c: tuple[float, float], r: float, f: float) -> np.ndarray:
    n = max(3, int(round(2 * r * f)))
    m = np.array([[1 / f, 0, c[0] - r - p.x], [0, 1 / f, c[1] - r - p.y]], np.float32)
    return cv2.warpAffine(p.mask.astype(np.float32), m, (n, n), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP) > 0.5


def pixel_match(rgb: np.ndarray, query: MaskPatch, cand: MaskPatch) -> Optional[Match]:
    """The query's best pose on the candidate (None when either mask is empty)."""
    if query.area == 0 or cand.area == 0:
        return None
    long_side = max(query.mask.shape)
    f = SIDE / long_side
    qc, cc = centroid(query), centroid(cand)
    r = ROOM * long_side
    q_rgb = _crop(rgb, qc, r, f)
    q_mask = _mask_crop(query, qc, r, f).astype(np.uint8)
    s0 = float(np.clip(np.sqrt(cand.area / query.area), 0.5, 2.0))
    rc = 2 * r * s0
    c_rgb = _crop(rgb, cc, rc, f)
    c_mask = _mask_crop(cand, cc, rc, f)
    q_gray, c_gray = cv2.cvtColor(q_rgb, cv2.COLOR_RGB2GRAY), cv2.cvtColor(c_rgb, cv2.COLOR_RGB2GRAY)
    best = _best_pose(q_gray, q_mask, c_gray, s0)
    if best is None:
        return None
    (x, y), m, side, t_mask, t_gray = best
    window = c_mask[y:y + side, x:x + side]
    both = np.count_nonzero(t_mask & window)
    iou = both / max(np.count_nonzero(t_mask | window), 1)
    inside = both / max(np.count_nonzero(window), 1)
    on = (t_mask & window)[t_mask]               # the query's pixels at that pose that lie on the candidate
    if np.count_nonzero(on) < 9:
        return Match(-1.0, 0.0, float(iou), float(inside))
    likeness = _correlation(t_gray[t_mask][on], c_gray[y:y + side, x:x + side][t_mask][on])
    yy, xx = np.nonzero(t_mask)
    t_rgb = cv2.warpAffine(q_rgb, m, (side, side), flags=cv2.INTER_LINEAR)[t_mask]
    seen = c_rgb[y:y + side, x:x + side][t_mask]
    off = _off_one_light(t_rgb, seen, (xx - side / 2) / side, (yy - side / 2) / side)
    return Match(likeness, float(np.mean(off[on] < AGREE ** 2)), float(iou), float(inside))


def _best_pose(q_gray: np.ndarray, q_mask: np.ndarray, c_gray: np.ndarray, s0: float) -> Optional[tuple]:
    """The query's turn and scale (SCALES about s0) whose gray pixels, inside its mask, best match the
    candidate's crop with the centre within REACH: (place, turn matrix, side, turned mask, turned gray),
    or None. The matches run on OpenCV's thread count (cv2.matchTemplate lets go of the GIL); the best
    is taken in the order of the turns, as one loop would."""
    n, N = q_gray.shape[0], c_gray.shape[0]
    jobs = []                  # (search image, turned gray, turned mask, offset, far places, turn, side)
    for sc in SCALES:
        s = s0 * sc
        side = max(3, int(round(n * s)))
        if side >= N:
            continue
        # only places within REACH of the centre count: the template is matched over the part of the
        # candidate's crop they need (the same values there; a sixth of the work or less)
        mid, reach = (N - side) / 2, REACH * SIDE * s
        lo, hi = max(0, int(np.ceil(mid - reach))), min(N - side, int(np.floor(mid + reach)))
        if hi < lo:
            continue
        yy, xx = np.mgrid[lo:hi + 1, lo:hi + 1]
        far = (xx - mid) ** 2 + (yy - mid) ** 2 > reach ** 2
        search = c_gray[lo:hi + side, lo:hi + side]
        for angle in range(0, 360, ANGLE_STEP):
            m = cv2.getRotationMatrix2D((n / 2, n / 2), angle, s)
            m[:, 2] += (side - n) / 2
            t_mask = cv2.warpAffine(q_mask, m, (side, side), flags=cv2.INTER_NEAREST)
            if np.count_nonzero(t_mask) < 9:
                continue
            t = cv2.warpAffine(q_gray, m, (side, side), flags=cv2.INTER_LINEAR)
            jobs.append((search, t, t_mask, lo, far, m, side))

    def match(job: tuple) -> np.ndarray:
        search, t, t_mask, _, far, _, _ = job
        res = cv2.matchTemplate(search, t, cv2.TM_CCOEFF_NORMED, mask=t_mask.astype(np.float32))
        res[~np.isfinite(res) | far] = -2.0
        return res

    workers = min(max(cv2.getNumThreads(), 1), len(jobs))
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(match, jobs))
    else:
        results = [match(job) for job in jobs]
    best, top = None, -2.0
    for (_, t, t_mask, lo, _, m, side), res in zip(jobs, results):
        _, v, _, (x, y) = cv2.minMaxLoc(res)
        if v > top:
            best, top = ((x + lo, y + lo), m, side, t_mask > 0, t), float(v)
    return best


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised cross-correlation of two pixel vectors (blind to a gain and an offset)."""
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / max(float(np.sqrt((a * a).sum() * (b * b).sum())), 1e-6))


def _off_one_light(query: np.ndarray, seen: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Squared RGB distance of each seen pixel (n×3) from the query's (n×3) under one light: a gain the
    same on the three channels that may vary linearly across the object (g = a + b·u + c·v, u and v its
    pixels' positions over its size: shading), fitted by least squares and again on the FIT share of
    pixels that fit best (an occluder, a shadow or a highlight does not pull it). A recoloured drawing
    needs a different gain per channel and stays far."""
    def fit(sel: np.ndarray) -> np.ndarray:
        q = query[sel]
        design = np.stack([q, u[sel, None] * q, v[sel, None] * q], -1).reshape(-1, 3)
        k = np.linalg.lstsq(design, seen[sel].reshape(-1), rcond=None)[0]
        gain = k[0] + k[1] * u + k[2] * v
        return np.sum((seen - gain[:, None] * query) ** 2, axis=1)

    off = fit(np.ones(len(query), bool))
    best = off < np.percentile(off, 100 * FIT)
    return fit(best) if np.count_nonzero(best) >= 10 else off


def rescues(rgb: np.ndarray, query: MaskPatch, cand: MaskPatch, score: float, settings: SimilarSettings,
            hidden: bool = False) -> bool:
    """Whether a candidate the verifier rejected (its score) is a copy all the same: within the
    copies' area gate, not dismissed by the verifier outright, and its pixels the query's
    (settings.pixel_*). The query's mask at the match's pose overlaps the candidate's by
    pixel_min_shape (IoU); with `hidden` (a photo larger than MAX_SIDE, where it was chosen) by
    pixel_hidden_min_shape when at least pixel_min_inside of the candidate lies inside it (a copy
    partly hidden by clutter, its mask what shows)."""
    s = settings
    ratio = cand.area / max(query.area, 1)
    if not (s.pixel_match and score >= s.pixel_min_score and s.big_photo_min_ratio <= ratio <= s.big_photo_max_ratio):
        return False
    m = pixel_match(rgb, query, cand)
    if m is None or m.likeness < s.pixel_min_likeness or m.agreement < s.pixel_min_agreement:
        return False
    return m.shape_iou >= s.pixel_min_shape or (
        hidden and m.shape_iou >= s.pixel_hidden_min_shape and m.inside >= s.pixel_min_inside)
