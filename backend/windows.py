"""Which window a click is decoded in: the one-click segmenter's zoom-in policy, in one place.

backend/segment.py runs the network; this module decides where it looks (geometry helpers:
backend/models/window.py). A first click gets a window where the object's box fills TARGET_FILL:
the box is the previous mask's when refining, the expected size's when select similar knows it,
else the coarse pass's (with, on big photos, the small-object probe's, issue 23). The decoded mask
may then ask for a better window (`better_window`: grow on an edge, zoom in on a small fill), up
to MAX_WINDOWS encodings per first click. Windows are snapped (sides to 16 px, centres to 8 px)
so that nearby clicks share cached encodings.
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from .masks import mask_box
from .models.window import Window, covers_image, fit_window

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in image pixels

COARSE_SIDE = 512  # long side of the whole-image pass
CROP = 320  # network input of the zoom-in pass
TARGET_FILL = 0.3  # object box / window area
MIN_WINDOW = CROP // 4  # never upsample a window more than 4x
PROBE_FRACTION = 0.15  # first window (of the long side) when the coarse pass finds no small object
GROW = 2.0  # window growth when the mask runs into its edge
# A photo whose long side is over SMALL_PROBE_ABOVE shrinks a small object to a few coarse pixels
# (a 60-px bottle cap on a 4000-px photo is 8), and the coarse pass takes what it lies on. There
# the first click also decodes a window of SMALL_PROBE × the long side around it; an object that
# lies inside that window (it touches no edge) and is at most SMALL_SHARE of the coarse box is the
# one clicked (docs/models.md, issue 23).
SMALL_PROBE_ABOVE = 2 * COARSE_SIDE
SMALL_PROBE = 0.1
SMALL_SHARE = 0.25
MAX_WINDOWS = 4  # zoom-in encodings per first click at most


def snap_side(side: float) -> int:
    """A window side rounded up to a multiple of 16 (for the encoding cache)."""
    return int(np.ceil(side / 16) * 16)


def window_for(box: Box, positives: list[tuple[float, float]], w: int, h: int) -> Window | None:
    """Window where `box` (grown to hold the positive clicks) fills TARGET_FILL, or None if that
    is (nearly) the whole image."""
    x0, y0, x1, y1 = box
    for x, y in positives:  # positive clicks belong to the object
        x0, y0, x1, y1 = min(x0, x), min(y0, y), max(x1, x + 1), max(y1, y + 1)
    bw, bh = x1 - x0, y1 - y0
    side = max(np.sqrt(bw * bh / TARGET_FILL), 1.25 * max(bw, bh), MIN_WINDOW)
    if covers_image(side, w, h):
        return None
    return fit_window(round((x0 + x1) / 16) * 8, round((y0 + y1) / 16) * 8, snap_side(side), w, h)


def first_window(positives: list[tuple[float, float]], w: int, h: int, *, prev: np.ndarray | None,
                 size: tuple[float, float] | None, coarse_box: Callable[[], Box],
                 probe: Callable[[Window], np.ndarray] | None) -> Window | None:
    """The window a new set of positive clicks is decoded in first (None: the whole image).
    prev: the previous mask (H×W uint8) when refining; size: the object's expected (width, height);
    coarse_box(): the coarse pass's object box; probe(window): the decoded H'×W' bool mask of the
    clicks in a window, or None to skip the small-object probe."""
    if prev is not None and (box := mask_box(prev > 127)) is not None:
        return window_for(box, positives, w, h)  # refining: the scale of the selection
    if size is not None:
        (x, y), (bw, bh) = positives[0], size
        return window_for((x - bw / 2, y - bh / 2, x + bw / 2, y + bh / 2), positives, w, h)
    box = coarse_box()
    win = window_for(box, positives, w, h)
    if probe is not None and max(w, h) > SMALL_PROBE_ABOVE:
        win = small_object_window(probe, box, positives, w, h) or win
    if win is None:  # the coarse pass found a huge object: check from a small window up
        side = max(MIN_WINDOW, PROBE_FRACTION * max(w, h))
        win = fit_window(positives[0][0], positives[0][1], snap_side(side), w, h)
    return win


def small_object_window(probe: Callable[[Window], np.ndarray], box: Box,
                        positives: list[tuple[float, float]], w: int, h: int) -> Window | None:
    """The window for a small object under the first click, when a probe window around it holds
    one that touches none of its edges and is much smaller than the coarse pass's object `box`;
    else None."""
    x, y = positives[0]
    side = snap_side(max(MIN_WINDOW, SMALL_PROBE * max(w, h)))
    win = fit_window(round(x / 8) * 8, round(y / 8) * 8, side, w, h)
    if covers_image(win.side, w, h):
        return None
    m = probe(win)
    n = m.shape[0]
    s = win.side / n
    _, labels = cv2.connectedComponents(m.astype(np.uint8), connectivity=8)
    lab = labels[min(max(int((y - win.y0) / s), 0), n - 1), min(max(int((x - win.x0) / s), 0), n - 1)]
    if lab == 0:
        return None
    ys, xs = np.nonzero(labels == lab)
    if ((ys.min() <= 1 and win.y0 > 0) or (xs.min() <= 1 and win.x0 > 0)
            or (ys.max() >= n - 2 and win.y0 + win.side < h) or (xs.max() >= n - 2 and win.x0 + win.side < w)):
        return None   # it runs out of the probe (inside the photo): not a small object
    small = (win.x0 + xs.min() * s, win.y0 + ys.min() * s, win.x0 + (xs.max() + 1) * s,
             win.y0 + (ys.max() + 1) * s)
    area = (small[2] - small[0]) * (small[3] - small[1])
    if area > SMALL_SHARE * (box[2] - box[0]) * (box[3] - box[1]):
        return None   # about what the coarse pass found
    return window_for(small, positives, w, h)


def wider_window(win: Window, factor: float, w: int, h: int) -> Window | None:
    """A window `factor` times as wide as `win`, around the same centre (snapped), or None if that
    is (nearly) the whole image."""
    side = snap_side(win.side * factor)
    if covers_image(side, w, h):
        return None
    return fit_window(round((win.x0 + win.side / 2) / 8) * 8, round((win.y0 + win.side / 2) / 8) * 8, side, w, h)


def better_window(m: np.ndarray, win: Window, positives: list[tuple[float, float]],
                  w: int, h: int) -> Window | None:
    """A better window when the mask `m` decoded in `win` (n×n bool) runs into a window edge
    inside the image (grow) or fills much less of the window than intended (zoom in); else None."""
    n = m.shape[0]
    s = win.side / n
    edges = [(m[:, 0], win.x0 > 0), (m[:, -1], win.x0 + win.side < w),
             (m[0, :], win.y0 > 0), (m[-1, :], win.y0 + win.side < h)]
    if any(inside and e.mean() > 0.05 for e, inside in edges):
        x0, y0, x1, y1 = mask_box(m)
        cx, cy = win.x0 + (x0 + x1) / 2 * s, win.y0 + (y0 + y1) / 2 * s
        side = min(snap_side(win.side * GROW), max(w, h))
        return fit_window(round(cx / 8) * 8, round(cy / 8) * 8, side, w, h)
    _, labels = cv2.connectedComponents(m.astype(np.uint8), connectivity=8)
    keep = {int(labels[min(max(int((y - win.y0) / s), 0), n - 1), min(max(int((x - win.x0) / s), 0), n - 1)])
            for x, y in positives} - {0}
    if not keep:
        return None
    x0, y0, x1, y1 = mask_box(np.isin(labels, list(keep)))
    box = (win.x0 + x0 * s, win.y0 + y0 * s, win.x0 + x1 * s, win.y0 + y1 * s)
    fill = (box[2] - box[0]) * (box[3] - box[1]) / win.side ** 2
    if fill >= TARGET_FILL / 4 or win.side <= 1.5 * MIN_WINDOW:
        return None
    return window_for(box, positives, w, h)
