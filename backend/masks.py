"""Mask geometry shared by the backend: the one bounding-box helper, box merging, 0/255 masks."""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np


def mask_box(mask: np.ndarray) -> Optional[tuple[int, int, int, int]]:
    """(x0, y0, x1, y1), end-exclusive, of the nonzero pixels of an H×W bool or uint8 mask;
    None when there are none. (A 0/255 mask whose values mean "selected" from 128 up: pass
    `mask > 127`.)"""
    m = np.ascontiguousarray(mask)
    x, y, w, h = cv2.boundingRect(m.view(np.uint8) if m.dtype == bool else (m != 0).view(np.uint8))
    return None if w == 0 else (x, y, x + w, y + h)


def merge_overlapping(boxes: list[list[int]]) -> list[tuple[int, int, int, int]]:
    """Boxes (x0, y0, x1, y1), end-exclusive, with every pair that overlaps merged into the box
    holding both, until none overlap (the pipeline's context crops, LaMa's windows)."""
    boxes = [list(b) for b in boxes]
    merged = True
    while merged:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                    boxes[i] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    return [(b[0], b[1], b[2], b[3]) for b in boxes]


def mask255(mask: np.ndarray) -> np.ndarray:
    """bool mask -> uint8 0/255 (without a wide temporary)."""
    return mask.astype(bool, copy=False).view(np.uint8) * np.uint8(255)
