"""Objects drawn in several pieces: a second, wider look after a first click (issue 23).

A first click's window is fitted to what the click selected, so a click on one piece of an object
in several (a flower and its leaf, the parts of a drawing not touching one another) gets a window
that leaves the other pieces outside it. The segmenter then decodes the same click in a window
PIECES_GROW times wider (backend/segment.py) and the pieces the model is sure of there join the
mask; what the first window selected stays as it was (docs/models.md, "Thirtieth session" and
"Thirty-first session").

Chosen on 400 real-size validation scenes (seeds 7000-7399, first-click logits captured once and
every rule applied offline): a wider window of 2 (1.4 and 3 did less) and pieces that are at least
5 % of the clicked component's area (crumbs). A mean logit of 3 gave the most there (+0.0138 mIoU
after one click, 30 scenes better, 3 worse by over 0.02); 4 gives +0.0117 with none worse, and select
similar's bench lost copies with 3 (queries that took a look-alike or a piece of what the object
lies on): 4 is shipped. The cap of 1.5 times the clicked component's area costs nothing on the
validation scenes; it also came from select similar's bench, where queries that took what their
object lies on (2-5 times their area) lost their copies.

A copy beside the object is not a piece of it (thirty-first session): a component with the clicked
piece's colours (COPY_MIN_COLOUR, the overlap of their colour histograms) and its shape (COPY_MAX_SHAPE,
the distance of their Hu moments, which do not change with size or turn) is the same thing again, a
neighbouring water drop, coin or cup, and stays out; a person who wants it clicks it. The shape test is
coarse: any two compact blobs match (a square, a disc, a 2:1 rectangle), while drawn pieces of the
clicked piece's colours are thin or branched and do not (Hu distance 0.24 and more but for one, on the
validation scenes and select similar's queries). On those 400 scenes the test keeps 25 of the 26
pieces the rule adds (the 26th, the second of two like splats in one drawing, costs 0.0005 mIoU); it
stops the neighbouring drop on the water-drop photo and the copy a select-similar query took
(real-size scene 175). On 200 new real-size scenes the step gives +0.0081 mIoU after one click
(s.e. 0.0029; docs/models.md, "Thirty-first session").

A bigger piece that lies apart (thirty-third session): the cap of 1.5 also kept out the big piece of
an object clicked on its small one (a gear beside its rod, a sheet of paper beside the teddy bear drawn
with it), where the click selects the small piece alone. What the object lies on touches it or holds it
(the click inside its convex hull); such a piece does neither, so it may be up to APART_MAX_SHARE times
the clicked piece (APART_GAP px at least between them; `apart`). Traced on the thirty-first session's
recorded first clicks (seeds 7000-7399): of the 16 components over 1.5 times the clicked one, the 6
apart from it lie on the object (79-99 % of their pixels), while 6 of the 10 touching or holding it lie
mostly off it (2-40 %); with the mean logit of 4 that every piece needs, the rule adds three pieces
there (+0.0049 mIoU after one click, s.e. 0.0029, none worse) and two on 400 new scenes (seeds
8600-8999: +0.0028, s.e. 0.0020, none worse; docs/models.md, "Thirty-third session").
The glance asks for a full look on such a component as well.

A piece lying apart that the model is sure of only in part (thirty-fourth session): once the wider
look's edges follow the colours, a piece drawn with soft edges or shading takes pixels the model is
unsure of, and its mean logit falls under PIECE_MIN_LOGIT (the sign beside the puzzle piece: 4.8 in the
raw mask, 3.9 after). A piece that lies apart joins at a mean logit of APART_MIN_LOGIT (the model on
balance says object) when its largest logit is APART_PEAK_LOGIT (the model is sure of part of it); a
piece against the clicked one still needs PIECE_MIN_LOGIT. Chosen on the wider looks recorded for 400
held-out real-size first clicks (seeds 9100-9499; every component with its logits and its share on the
object) and checked on 415 scenes of the training sources (seeds 6,000,000+) and on 220 random first
clicks on 22 real photos scaled to 4,000 px, where every component that joins is a wrong one: a mean
logit of 0 alone gave +0.0128 mIoU on the 400 but changed 20 of the 220 real clicks (a drop beside a
drop, a stalk beside a petal, patches of texture); the peak of 5 keeps +0.0113 (s.e. 0.0033; 15 scenes
better, none worse; training sources +0.0129, s.e. 0.0039, 21 better, 2 worse) and changes one real
click (a flower's stamen, mean logit 3.8; the rule before already changed three). The same rule for
pieces against the clicked one gives the same on the synthetic scenes and changes two more real clicks
(a petal's stamen, a rope beside a beach chair).

The full look costs one more 320-px encoding and decoding per first click, and most clicks have no
other piece: the wider window is first glanced at GLANCE_SIDE (half the pixels) and looked at in full
only when the glance shows a component a looser rule calls a possible piece (GLANCE_*). Chosen on the
same 400 scenes (a session script recording both looks for every first click): the glance asks for the
full look on 35 of the 346 clicks that need a decode of their own (the other 54 reuse the small-object
probe's) and misses 2 of the 20 that add a piece there; a 160-px glance missed half of them. On small
photos (the standard split's 0.37-MP scenes: the same masks on 100 scenes with and without, the glance
asking on 3 of 35 clicks and the rule adding nothing) it only costs time: it runs above PIECES_ABOVE.
"""
from __future__ import annotations

import cv2
import numpy as np

from .masks import Parts
from .windows import SMALL_PROBE_ABOVE

PIECES_GROW = 2.0  # the wider window's side / the first click's window side
PIECES_ABOVE = SMALL_PROBE_ABOVE  # only on photos whose long side is over this (big photos, as the small-object probe)
PIECE_MIN_LOGIT = 4.0  # a piece joins when the model's mean logit over it is at least this (p ~ 0.98)
PIECE_MIN_SHARE = 0.05  # ... and its area is at least this share of the clicked component's
PIECE_MAX_SHARE = 1.5  # ... and at most this share (a bigger one is what the object lies on) ...
APART_MAX_SHARE = 8.0  # ... unless it lies apart from the clicked piece (APART_GAP), which may be up to this share
APART_GAP = 2          # apart: no pixel within this many of the clicked piece, nor the click inside its hull
APART_MIN_LOGIT = 0.0  # a piece lying apart joins at a lower mean logit: the model on balance says object ...
APART_PEAK_LOGIT = 5.0  # ... when it is sure of some of it (its largest logit at least this)
COPY_MIN_COLOUR = 0.5  # a component whose colour histogram overlaps the clicked piece's this much ...
COPY_MAX_SHAPE = 0.2   # ... and whose shape is this close to it (Hu moments, cv2 CONTOURS_MATCH_I1) is a copy
COLOUR_BINS = 8        # colour histograms: bins per CIE Lab channel
GLANCE_SIDE = 224      # the wider window is glanced at first at this input side (half a full look's pixels) ...
GLANCE_MIN_LOGIT = 2.0  # ... and looked at in full only when a component of the glance has this mean logit
GLANCE_MIN_SHARE = 0.03  # ... and this share of the clicked component's area
GLANCE_MAX_SHARE = 3.0   # ... up to this share


def clicked_component(mask: np.ndarray, click: tuple[int, int]) -> np.ndarray:
    """The 8-connected component of the bool `mask` under `click` (x, y); the whole mask when the
    click is not on it."""
    x, y = click
    h, w = mask.shape
    _, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    label = labels[min(max(y, 0), h - 1), min(max(x, 0), w - 1)]
    return labels == label if label else mask


class Likeness:
    """What a copy of the clicked piece shares with it: its colours (a CIE Lab histogram) and its
    shape (Hu moments), over one RGB region."""

    def __init__(self, rgb: np.ndarray, piece: np.ndarray):
        self.lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
        x, y, w, h = cv2.boundingRect(piece.astype(np.uint8))
        self.shape = piece[y:y + h, x:x + w].astype(np.uint8)
        self.colours = self._histogram(self.lab[y:y + h, x:x + w], self.shape)

    @staticmethod
    def _histogram(lab: np.ndarray, mask: np.ndarray) -> np.ndarray:
        hist = cv2.calcHist([lab], [0, 1, 2], mask, [COLOUR_BINS] * 3, [0, 256] * 3)
        return hist / max(float(hist.sum()), 1.0)

    def is_copy(self, piece: np.ndarray, x: int, y: int) -> bool:
        """Whether `piece`, a bool crop whose corner is (x, y) in the region, is the clicked piece
        again: its colours (COPY_MIN_COLOUR) and its shape (COPY_MAX_SHAPE)."""
        p = piece.astype(np.uint8)
        h, w = p.shape
        colours = self._histogram(self.lab[y:y + h, x:x + w], p)
        if cv2.compareHist(self.colours, colours, cv2.HISTCMP_INTERSECT) < COPY_MIN_COLOUR:
            return False
        return cv2.matchShapes(self.shape, p, cv2.CONTOURS_MATCH_I1, 0) <= COPY_MAX_SHAPE


def apart(piece: np.ndarray, x: int, y: int, clicked: np.ndarray, click: tuple[int, int]) -> bool:
    """Whether `piece`, a bool crop whose corner is (x, y), lies apart from the bool component
    `clicked`: no pixel of `clicked` within APART_GAP px of the piece, and the click (x, y) outside the
    piece's convex hull. What an object lies on (a table, an animal, a sign it is printed on) touches or holds it."""
    h, w = piece.shape
    g, (rows, cols) = APART_GAP, clicked.shape
    grown = cv2.dilate(np.pad(piece, g).astype(np.uint8), np.ones((2 * g + 1, 2 * g + 1), np.uint8)) > 0
    x0, y0, x1, y1 = max(x - g, 0), max(y - g, 0), min(x + w + g, cols), min(y + h + g, rows)
    if (clicked[y0:y1, x0:x1] & grown[y0 - y + g:y1 - y + g, x0 - x + g:x1 - x + g]).any():
        return False
    cx, cy = click[0] - x, click[1] - y
    if not (0 <= cx < w and 0 <= cy < h):
        return True
    hull = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(cv2.findNonZero(piece.astype(np.uint8))), 1)
    return not hull[cy, cx]


def _candidates(base: np.ndarray, wider: np.ndarray, logits: np.ndarray, click: tuple[int, int],
                min_logit: float, min_share: float, max_share: float, apart_share: float | None,
                unsure_apart: bool = False):
    """(clicked component, [(piece, x, y), ...]): the components of `wider` that base holds at most half
    of, whose mean logit is at least min_logit and whose area is min_share-max_share of the clicked
    component's (up to apart_share when it lies apart from it; None: no more); with `unsure_apart`, a
    component lying apart may also have a mean logit of APART_MIN_LOGIT when its largest is
    APART_PEAK_LOGIT. Each piece a bool crop whose corner is (x, y)."""
    clicked = clicked_component(base, click)
    main = int(clicked.sum())
    found: list[tuple[np.ndarray, int, int]] = []
    if not main:
        return clicked, found
    parts = Parts(wider)
    for i in range(1, parts.count + 1):
        area = parts.area(i)
        if not min_share * main <= area <= max(max_share, apart_share or 0.0) * main:
            continue
        x, y, bw, bh = parts.box(i)
        piece = parts.window(i, x, y, x + bw, y + bh)
        if base[y:y + bh, x:x + bw][piece].sum() > 0.5 * piece.sum():
            continue   # the first window has it already
        lg = logits[y:y + bh, x:x + bw][piece]
        mean = float(lg.mean())
        sure = mean >= min_logit
        if not sure and not (unsure_apart and mean >= APART_MIN_LOGIT and lg.max() >= APART_PEAK_LOGIT):
            continue
        big = area > max_share * main
        if (big or not sure) and not apart(piece, x, y, clicked, click):
            continue   # bigger than a piece, or the model unsure, and against the clicked one: what it lies on
        found.append((piece, x, y))
    return clicked, found


def may_hold_pieces(base: np.ndarray, logits: np.ndarray, click: tuple[int, int],
                    apart_share: float | None = APART_MAX_SHARE) -> bool:
    """Whether a glance at the wider window (its logits at GLANCE_SIDE, upsampled to the region, as
    pieces_to_add takes them) shows a component that might be a piece: the looser GLANCE_* rule."""
    return bool(_candidates(base, logits > 0, logits, click, GLANCE_MIN_LOGIT, GLANCE_MIN_SHARE,
                            GLANCE_MAX_SHARE, apart_share)[1])


def pieces_to_add(base: np.ndarray, wider: np.ndarray, logits: np.ndarray, click: tuple[int, int],
                  rgb: np.ndarray, apart_share: float | None = APART_MAX_SHARE,
                  unsure_apart: bool = True) -> np.ndarray:
    """The pixels to add to the first click's mask. All arrays cover one region of the photo:
    base, the first click's mask (bool); wider, the wider window's mask (bool); logits, the wider
    window's logits upsampled to the region (float); click (x, y) in the region; rgb, the photo.
    A component of `wider` joins when base holds at most half of it, the model is sure of it
    (PIECE_MIN_LOGIT; with `unsure_apart`, a component lying apart from the clicked piece may have
    APART_MIN_LOGIT when its largest logit is APART_PEAK_LOGIT), it is neither a crumb
    (PIECE_MIN_SHARE) nor much bigger than the clicked piece (PIECE_MAX_SHARE: the table or animal
    the object lies on, a look-alike group; up to apart_share, APART_MAX_SHARE by default, when it
    lies apart from the clicked piece), and it is not a copy of the clicked piece (Likeness: its
    colours and shape)."""
    add = np.zeros_like(base)
    clicked, found = _candidates(base, wider, logits, click, PIECE_MIN_LOGIT, PIECE_MIN_SHARE, PIECE_MAX_SHARE,
                                 apart_share, unsure_apart)
    likeness = Likeness(rgb, clicked) if found else None
    for piece, x, y in found:
        if not likeness.is_copy(piece, x, y):
            add[y:y + piece.shape[0], x:x + piece.shape[1]] |= piece
    return add
