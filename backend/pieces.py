"""Objects drawn in several pieces: a second, wider look after a first click (issue 23).

A first click's window is fitted to what the click selected, so a click on one piece of an object
in several (a flower and its leaf, the parts of a drawing not touching one another) gets a window
that leaves the other pieces outside it. The segmenter then decodes the same click in a window
PIECES_GROW times wider (backend/segment.py) and the pieces the model is sure of there join the
mask; what the first window selected stays as it was (docs/models.md, "Thirtieth session").

Chosen on 400 real-size validation scenes (seeds 7000-7399, first-click logits captured once and
every rule applied offline): a wider window of 2 (1.4 and 3 did less) and pieces that are at least
5 % of the clicked component's area (crumbs). A mean logit of 3 gave the most there (+0.0138 mIoU
after one click, 30 scenes better, 3 worse by over 0.02); 4 gives +0.0117 with none worse, and select
similar's bench lost copies with 3 (queries that took a look-alike or a piece of what the object
lies on): 4 is shipped. The cap of 1.5 times the clicked component's area costs nothing on the
validation scenes; it also came from select similar's bench, where queries that took what their
object lies on (2-5 times their area) lost their copies.

Off in the product (`SegmentSettings.pieces`, backend/segment.py): on 200 new real-size scenes it gives
+0.013 mIoU after one click, but on a real photo of water drops on a leaf the neighbouring drops join
(IoU 0.79 -> 0.60), and select similar loses a few copies: a piece cannot yet be told from a copy
beside the object (docs/models.md, "Thirtieth session").
"""
from __future__ import annotations

import cv2
import numpy as np

from .masks import Parts

PIECES_GROW = 2.0  # the wider window's side / the first click's window side
PIECE_MIN_LOGIT = 4.0  # a piece joins when the model's mean logit over it is at least this (p ~ 0.98)
PIECE_MIN_SHARE = 0.05  # ... and its area is at least this share of the clicked component's
PIECE_MAX_SHARE = 1.5  # ... and at most this share (a bigger one is what the object lies on)


def clicked_component(mask: np.ndarray, click: tuple[int, int]) -> np.ndarray:
    """The 8-connected component of the bool `mask` under `click` (x, y); the whole mask when the
    click is not on it."""
    x, y = click
    h, w = mask.shape
    _, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    label = labels[min(max(y, 0), h - 1), min(max(x, 0), w - 1)]
    return labels == label if label else mask


def pieces_to_add(base: np.ndarray, wider: np.ndarray, logits: np.ndarray,
                  click: tuple[int, int]) -> np.ndarray:
    """The pixels to add to the first click's mask. All arrays cover one region of the photo:
    base, the first click's mask (bool); wider, the wider window's mask (bool); logits, the wider
    window's logits upsampled to the region (float); click (x, y) in the region.
    A component of `wider` joins when base holds at most half of it, the model is sure of it
    (PIECE_MIN_LOGIT) and it is neither a crumb (PIECE_MIN_SHARE) nor much bigger than the clicked
    piece (PIECE_MAX_SHARE: the table or animal the object lies on, a look-alike group)."""
    add = np.zeros_like(base)
    main = int(clicked_component(base, click).sum())
    if not main:
        return add
    parts = Parts(wider)
    for i in range(1, parts.count + 1):
        if not PIECE_MIN_SHARE * main <= parts.area(i) <= PIECE_MAX_SHARE * main:
            continue
        x, y, bw, bh = parts.box(i)
        piece = parts.window(i, x, y, x + bw, y + bh)
        if base[y:y + bh, x:x + bw][piece].sum() > 0.5 * piece.sum():
            continue   # the first window has it already
        if logits[y:y + bh, x:x + bw][piece].mean() < PIECE_MIN_LOGIT:
            continue
        add[y:y + bh, x:x + bw] |= piece
    return add
