"""Mask geometry shared by the backend: the one bounding-box helper."""
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
