"""A one-click mask of a proposal, repaired with the query's shape: pieces left out, a part of a
long object, a click in an outline's hole, stray parts."""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from .types import MaskPatch, Segment, as_patch


def interior_point(mask: "np.ndarray | MaskPatch") -> tuple[float, float]:
    """The most interior pixel centre of a mask (a safe place to click)."""
    p = as_patch(mask)
    dist = cv2.distanceTransform(np.pad(p.mask, 1).astype(np.uint8), cv2.DIST_L2, 5)[1:-1, 1:-1]
    yy, xx = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return p.x + xx + 0.5, p.y + yy + 0.5


PIECE_MIN = 0.1       # a piece of the query is a connected part of at least this share of it
PIECES_MAX = 1.5      # a mask grown by clicking more pieces may reach this × the query's area


def query_pieces(sp: MaskPatch) -> list[tuple[float, float]]:
    """Interior points (image pixels) of the query's connected parts of >= PIECE_MIN of its area."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(sp.mask.astype(np.uint8), connectivity=8)
    big = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= PIECE_MIN * max(sp.area, 1)]
    return [interior_point(MaskPatch(sp.x, sp.y, labels == i)) for i in big]


def complete_pieces(pieces: list[tuple[float, float]], offset: tuple[float, float], got: MaskPatch,
                    px: float, py: float, template: MaskPatch, taken: np.ndarray, segment: "Segment",
                    query_area: int) -> MaskPatch:
    """The one-click model may select one piece of an object that comes in several (a symbol and
    its letter, a figure and its flags): click the query's pieces that it left out too, moved by
    `offset` (where template matching placed the query). The bigger mask is kept unless it grew
    past PIECES_MAX × the query (a piece's click that missed and took the background)."""
    H, W = taken.shape
    more = []
    for x, y in pieces:
        x, y = x + offset[0], y + offset[1]
        if not (0 <= x < W and 0 <= y < H) or taken[int(y), int(x)]:
            continue
        lx, ly = int(x) - got.x, int(y) - got.y
        if 0 <= ly < got.mask.shape[0] and 0 <= lx < got.mask.shape[1] and got.mask[ly, lx]:
            continue                             # that piece is selected already
        more.append((x, y))
    if not more:
        return got
    bigger = segment(px, py, template, tuple(more))
    return bigger if got.area < bigger.area <= PIECES_MAX * query_area else got


def holes_of(mask: np.ndarray) -> np.ndarray:
    """The background pixels a mask encloses (the inside of a ring or an outline drawing)."""
    outside = np.pad(~mask, 1, constant_values=True).astype(np.uint8)
    cv2.floodFill(outside, None, (0, 0), 2)
    return outside[1:-1, 1:-1] == 1


HOLE_SHARE = 0.5      # a mask with this share of its area in the placed query's holes is the background inside


def click_the_shape(got: MaskPatch, px: float, py: float, template: MaskPatch, taken: np.ndarray,
                    segment: "Segment") -> tuple[MaskPatch, float, float]:
    """A peak in a hole of the placed query (an outline drawing, a ring, a thought bubble) puts
    the click on the background inside the object, and the one-click model rightly selects that
    background. When the click is in such a hole and the mask lies mostly in the holes, click the
    placed query's interior point instead, and keep whichever mask is closer to the query's
    shape (template matching may have placed it off the object). A click off the placed query
    but not in a hole is left alone: that is template matching missing a copy of another size."""
    if not template.area or template.covers(px, py):
        return got, px, py
    holes = holes_of(template.mask)
    lx, ly = int(px) - template.x, int(py) - template.y
    if not (0 <= ly < holes.shape[0] and 0 <= lx < holes.shape[1] and holes[ly, lx]):
        return got, px, py
    if np.count_nonzero(got.seen_from(template) & holes) < HOLE_SHARE * got.area:
        return got, px, py
    ix, iy = interior_point(template)
    if taken[int(iy), int(ix)]:
        return got, px, py
    alt = segment(ix, iy, template)
    return (alt, ix, iy) if alt.iou(template) > got.iou(template) else (got, px, py)


SHORT = 0.5           # a one-click mask under this share of the query's area may have missed a part
# On a photo over MAX_SIDE (find_similar's hidden_copies) copies vary ±30 % in size and are often partly hidden:
# a copy 70 % the query's length is under half its area, and clicking the placed query's missing part took the
# background or the clutter on it. There the share is SHORT × 0.7² (validation seeds 5000-5399: +7 copies,
# pixel precision +0.0066; never clicking it: -5 copies, +0.0068).
SHORT_BIG = 0.25


def complete_shape(got: MaskPatch, px: float, py: float, template: MaskPatch, taken: np.ndarray,
                   segment: "Segment", query_area: int, short: float = SHORT) -> MaskPatch:
    """The one-click model may select part of a long, thin object (a stick) from a click at one
    end: when the mask is under `short` × the query's area, click the interior of the biggest
    part of the placed query it left out, and keep the bigger mask unless it grew past
    PIECES_MAX × the query (the click missed and took the background)."""
    if got.area >= short * query_area or not template.area:
        return got
    miss = template.mask & ~got.seen_from(template) & ~template.region(taken)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(miss.astype(np.uint8), connectivity=8)
    if n < 2:
        return got
    big = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    if stats[big, cv2.CC_STAT_AREA] < PIECE_MIN * template.area:
        return got
    bigger = segment(px, py, template, (interior_point(MaskPatch(template.x, template.y, labels == big)),))
    return bigger if got.area < bigger.area <= PIECES_MAX * query_area else got


def keep_parts(p: MaskPatch, x: float, y: float, template: Optional[MaskPatch] = None) -> MaskPatch:
    """The connected parts of the patch under (x, y) or lying mostly (>= 50 %) inside the
    template (objects in several pieces), else its largest part; cropped to their box. A part
    inside a hole of another (a blob inside an outline drawing) counts as part of it, and a
    click in a hole is on the part around it."""
    n, labels = cv2.connectedComponents((p.mask | holes_of(p.mask)).astype(np.uint8), connectivity=8)
    if n > 2:
        keep = np.zeros(n, bool)
        lx, ly = int(x) - p.x, int(y) - p.y
        if 0 <= ly < labels.shape[0] and 0 <= lx < labels.shape[1]:
            keep[labels[ly, lx]] = True
        labels[~p.mask] = 0                      # holes are not selected
        area = np.bincount(labels.ravel(), minlength=n)
        if template is not None and template.area:
            keep |= np.bincount(labels[template.seen_from(p)], minlength=n) >= 0.5 * area
        keep[0] = False
        if not keep.any():
            keep[1 + int(np.argmax(area[1:]))] = True
        p = MaskPatch(p.x, p.y, keep[labels])
    q = as_patch(p.mask)
    return MaskPatch(p.x + q.x, p.y + q.y, q.mask)
