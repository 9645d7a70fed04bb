"""The segmenter when the one-click model's weights are missing: GrabCut seeded with the query's shape."""
from __future__ import annotations

import cv2
import numpy as np

from .types import MaskPatch


# ---------------------------------------------------------------- fallback segmenter

GRABCUT_SIDE = 160    # the fallback works on the proposal's window resized to at most this
GRABCUT_ITERS = 3


def template_grabcut(rgb: np.ndarray, x: float, y: float, template: MaskPatch) -> MaskPatch:
    """GrabCut in a small window around the query's shape moved to the proposal: the shape's
    inside is probably foreground, its core and the click surely, the window's border background."""
    h, w = rgb.shape[:2]
    if template.area == 0:
        return template
    bx0, by0, tw, th = template.box
    m = 0.35 * max(tw, th) + 4
    x0, y0 = int(max(0, bx0 - m)), int(max(0, by0 - m))
    x1, y1 = int(min(w, bx0 + tw + m)), int(min(h, by0 + th + m))
    s = min(1.0, GRABCUT_SIDE / max(x1 - x0, y1 - y0))
    size = (max(8, round((x1 - x0) * s)), max(8, round((y1 - y0) * s)))
    crop = cv2.resize(rgb[y0:y1, x0:x1], size, interpolation=cv2.INTER_AREA)
    window = np.zeros((y1 - y0, x1 - x0), np.uint8)
    window[by0 - y0:by0 - y0 + th, bx0 - x0:bx0 - x0 + tw] = template.mask
    t = cv2.resize(window, size, interpolation=cv2.INTER_NEAREST)
    gc = np.full(size[::-1], cv2.GC_PR_BGD, np.uint8)
    gc[t > 0] = cv2.GC_PR_FGD
    core = cv2.erode(t, np.ones((3, 3), np.uint8), iterations=max(1, int(0.15 * min(size))))
    gc[core > 0] = cv2.GC_FGD
    cx, cy = int(min(size[0] - 1, (x - x0) * s)), int(min(size[1] - 1, (y - y0) * s))
    cv2.circle(gc, (cx, cy), 2, cv2.GC_FGD, -1)
    gc[[0, -1], :] = cv2.GC_BGD
    gc[:, [0, -1]] = cv2.GC_BGD
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(crop, gc, None, bgd, fgd, GRABCUT_ITERS, cv2.GC_INIT_WITH_MASK)
    except cv2.error:   # degenerate window (one colour): keep the moved shape
        return template
    fg = ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)).astype(np.uint8)
    t1 = t > 0
    if (fg.astype(bool) & t1).sum() < 0.5 * (fg.astype(bool) | t1).sum():
        return template        # GrabCut disagrees with the (aligned) shape: trust the shape
    return MaskPatch(x0, y0, cv2.resize(fg.astype(np.float32), (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR) >= 0.5)
