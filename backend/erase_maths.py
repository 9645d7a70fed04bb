"""Erase's maths around the engine: how much the selection grows (grow_hole), the crops the
engine fills (context_regions), and how the fill is pasted back (blend). Plain arrays in and out."""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from .masks import Parts, merge_overlapping

MAX_AUTO_DILATION = 40   # px: the automatic growth's cap
AUTO_FRACTION = 0.03     # the automatic growth: this share of an object's long side ...
AUTO_BASE_PX = 8         # ... plus this many px
# px inside the grown hole's edge over which the fill fades into the photo (bench/erase.py val:
# 6 px instead of 3 halves the seam score at no measurable cost; docs/erase.md)
FEATHER_PX = 6.0


def grow_hole(hole: np.ndarray, dilation: Optional[int], fraction: float = AUTO_FRACTION,
              base: int = AUTO_BASE_PX) -> np.ndarray:
    """Dilate the hole so halos, soft edges and shadows go too.

    dilation=None: per object, `fraction` of its size plus `base` px (at least 3, at most
    MAX_AUTO_DILATION); the defaults, 3 % + 8 px, were tuned on the erase benchmark's validation
    scenes (docs/erase.md; bench/erase.py sweeps others): soft edges and contact shadows go too."""
    if dilation is not None:
        if dilation == 0:
            return hole.copy()
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilation + 1, 2 * dilation + 1))
        return cv2.dilate(hole.astype(np.uint8), k) > 0
    out = hole.copy()
    h, w = hole.shape
    parts = Parts(hole)
    for i in range(1, parts.count + 1):
        x, y, bw, bh = parts.box(i)
        r = int(min(MAX_AUTO_DILATION, max(3, round(fraction * max(bw, bh)) + base)))
        x0, y0, x1, y1 = max(0, x - r), max(0, y - r), min(w, x + bw + r), min(h, y + bh + r)
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        out[y0:y1, x0:x1] |= cv2.dilate(parts.window(i, x0, y0, x1, y1).astype(np.uint8), k) > 0
    return out


def context_regions(hole: np.ndarray, width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Boxes (x0, y0, x1, y1) around groups of hole pixels, each with context on every side.

    Context is max(64 px, the group's size); boxes that overlap are merged, so each engine
    call sees a hole with real surroundings and a 24-MP photo with small holes stays cheap."""
    parts = Parts(hole)
    boxes = []
    for i in range(1, parts.count + 1):
        x, y, bw, bh = parts.box(i)
        m = max(64, max(bw, bh))
        boxes.append([max(0, x - m), max(0, y - m), min(width, x + bw + m), min(height, y + bh + m)])
    return merge_overlapping(boxes)


def blend(original: np.ndarray, filled_rgb: np.ndarray, hole: np.ndarray, feather: float = FEATHER_PX) -> np.ndarray:
    """Original RGBA patch with the hole replaced by filled_rgb, feathered over `feather` px inside
    the hole's edge, or over less where the hole is thinner (its middle is always fully filled,
    so a thin wire does not show through). Pixels outside the hole are unchanged; alpha is kept."""
    inside = cv2.distanceTransform(hole.astype(np.uint8), cv2.DIST_L2, 3)
    size = 2 * int(np.ceil(feather)) + 1
    deepest = cv2.dilate(inside, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))  # half the local thickness
    ramp = np.maximum(np.minimum(deepest, feather), 1e-3)
    weight = np.clip(inside[hole] / ramp[hole], 0.0, 1.0)[:, None]     # the hole's pixels only
    out = original.copy()
    top = 65535.0 if original.dtype == np.uint16 else 255.0
    fill = filled_rgb[hole].astype(np.float32) * np.float32(top / 255.0)
    rgb = original[..., :3][hole].astype(np.float32)
    mixed = rgb * (1.0 - weight) + fill * weight
    out[..., :3][hole] = np.clip(np.rint(mixed), 0, top).astype(original.dtype)
    return out
