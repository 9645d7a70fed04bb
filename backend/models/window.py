"""Square windows of an image, resized to the network input (shared by training and inference).

A window is (x0, y0, side) in whole source pixels; parts outside the source are zero-padded.
"""
from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np


WHOLE_IMAGE = 0.9  # a window this share of the long side or bigger: the whole image is decoded instead


def covers_image(side: float, width: int, height: int) -> bool:
    """Whether a window of `side` is (nearly) the whole image: inference then decodes the
    whole-image encoding, and training frames such a crop on the whole scene."""
    return side >= WHOLE_IMAGE * max(width, height)


class Window(NamedTuple):
    x0: int
    y0: int
    side: int

    def to_window(self, x: float, y: float, out: int) -> tuple[float, float]:
        """Source pixel coordinates → coordinates in the out×out resized window."""
        s = out / self.side
        return (x - self.x0) * s, (y - self.y0) * s


def fit_window(cx: float, cy: float, side: float, width: int, height: int) -> Window:
    """Square window of `side` centred near (cx, cy), shifted to stay inside the image
    where it fits (centred on the image along an axis where it does not)."""
    side = max(int(round(side)), 1)

    def axis(c: float, n: int) -> int:
        if side >= n:
            return (n - side) // 2
        return int(min(max(round(c - side / 2), 0), n - side))
    return Window(axis(cx, width), axis(cy, height), side)


def window_part(img: np.ndarray, win: Window) -> tuple[np.ndarray, Window]:
    """The part of img (H×W[×C]) under `win`, and `win` in that part's coordinates: crop_resize of any
    per-pixel function of the part in the shifted window is crop_resize of it on the whole image, at the
    cost of the window's pixels (a 12-MP mask is 12 M of them; the window a few hundred thousand)."""
    h, w = img.shape[:2]
    x0, y0 = min(max(0, win.x0), w), min(max(0, win.y0), h)
    x1, y1 = max(min(w, win.x0 + win.side), x0), max(min(h, win.y0 + win.side), y0)
    return img[y0:y1, x0:x1], Window(win.x0 - x0, win.y0 - y0, win.side)


def crop_resize(img: np.ndarray, win: Window, out: int, interp_up: int = cv2.INTER_LINEAR) -> np.ndarray:
    """img H×W[×C] → out×out[×C] view of `win` (zero outside the image), same dtype."""
    h, w = img.shape[:2]
    s = out / win.side
    sx0, sy0 = max(0, win.x0), max(0, win.y0)
    sx1, sy1 = min(w, win.x0 + win.side), min(h, win.y0 + win.side)
    res = np.zeros((out, out) + img.shape[2:], img.dtype)
    if sx1 <= sx0 or sy1 <= sy0:
        return res
    dx0, dy0 = int(round((sx0 - win.x0) * s)), int(round((sy0 - win.y0) * s))
    dx1, dy1 = int(round((sx1 - win.x0) * s)), int(round((sy1 - win.y0) * s))
    dx0, dy0, dx1, dy1 = max(dx0, 0), max(dy0, 0), min(dx1, out), min(dy1, out)
    if dx1 <= dx0 or dy1 <= dy0:
        return res
    part = img[sy0:sy1, sx0:sx1]
    interp = cv2.INTER_AREA if s < 1 else interp_up
    res[dy0:dy1, dx0:dx1] = cv2.resize(part, (dx1 - dx0, dy1 - dy0), interpolation=interp)
    return res
