"""Mask geometry shared by the backend: the one bounding-box helper (and the box of several), the parts
of a mask, box merging, 0/255 masks."""
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


def union_box(boxes: "list[Optional[tuple[int, int, int, int]]]") -> Optional[tuple[int, int, int, int]]:
    """The box (x0, y0, x1, y1) holding every box given (None ones skipped): mask_box of the union of
    masks is union_box of their mask_boxes. None when there is none."""
    got = [b for b in boxes if b is not None]
    if not got:
        return None
    return min(b[0] for b in got), min(b[1] for b in got), max(b[2] for b in got), max(b[3] for b in got)


class Parts:
    """The 8-connected parts of a mask, labelled within its bounding box only (a 24-MP photo with
    a small hole labels the hole's box, not 24 MP): the same parts, in the same order, as
    labelling the whole mask."""

    def __init__(self, mask: np.ndarray):
        box = mask_box(mask)
        self.x0, self.y0, x1, y1 = box if box is not None else (0, 0, 0, 0)
        if box is None:
            self.count, self.labels, self.stats = 0, np.zeros((0, 0), np.int32), np.zeros((1, 5), np.int32)
            return
        n, self.labels, self.stats, _ = cv2.connectedComponentsWithStats(
            np.ascontiguousarray(mask[self.y0:y1, self.x0:x1]).astype(np.uint8), connectivity=8)
        self.count = n - 1
        self.stats[:, 0] += self.x0
        self.stats[:, 1] += self.y0

    def box(self, i: int) -> tuple[int, int, int, int]:
        """x, y, w, h of part i (1 .. count) in the mask's coordinates."""
        return tuple(int(v) for v in self.stats[i, :4])   # type: ignore[return-value]

    def area(self, i: int) -> int:
        return int(self.stats[i, cv2.CC_STAT_AREA])

    def largest(self, k: int) -> list[int]:
        """The k largest parts' numbers, largest first."""
        return sorted(range(1, self.count + 1), key=lambda i: -self.area(i))[:k]

    def window(self, i: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        """Part i as a bool array over the window (x0, y0, x1, y1) of the mask's coordinates."""
        out = np.zeros((y1 - y0, x1 - x0), bool)
        lh, lw = self.labels.shape
        ix0, iy0 = max(x0, self.x0), max(y0, self.y0)
        ix1, iy1 = min(x1, self.x0 + lw), min(y1, self.y0 + lh)
        if ix1 > ix0 and iy1 > iy0:
            out[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] = \
                self.labels[iy0 - self.y0:iy1 - self.y0, ix0 - self.x0:ix1 - self.x0] == i
        return out


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
