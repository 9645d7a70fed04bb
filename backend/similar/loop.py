"""The iterative loop (IDS): propose, segment each proposal with one click, verify, and search
again from every accepted copy."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from .encoding import to_grid
from .groups import Groups
from .pixel_match import rescues
from .repeated_parts import complete_copies
from .proposals import Proposer, align, default_cpn, move_template
from .shape_repair import (SHORT, SHORT_BIG, click_the_shape, complete_pieces, complete_shape, interior_point,
                           keep_parts, query_pieces)
from .types import (STRIDE, Candidate, Descriptor, MatchMap, MaskPatch, Result, Segment, SimilarSettings, Verifier,
                    as_patch)
from .verification import describe


def find_similar(rgb: np.ndarray, seed: np.ndarray, mm: MatchMap, segment: Segment, verifier: Verifier,
                 settings: SimilarSettings, progress: Callable[[float, str], None] = lambda f, m: None,
                 clock: Callable[[], float] = time.perf_counter, cpn: Any = "auto",
                 align_clicks: bool = True, by_copies: bool = False, pixel_score: Optional[float] = None,
                 hidden_copies: bool = False, by_group: bool = False) -> Result:
    """The whole loop on an encoded image. seed: H×W bool (the query). Accepted candidates are
    disjoint from the seed and from each other.

    cpn: the proposal source. "auto" = the shipped CPN (default_cpn) when its file exists, else the
    training-free cosine map; None = always the cosine map; or a CPN module. With a CPN, each
    query (the seed, then every accepted instance) gives a heatmap, proposals are the peaks of
    their maximum above the CPN's stored threshold; the rest of the loop is the same. With
    settings.cosine_too the cosine map's peaks away from the CPN's are proposed as well (thin,
    low-contrast copies that the CPN's heatmap misses; the verifier still decides).

    align_clicks: move each peak's click to where template matching puts the query (for the
    GrabCut fallback, which needs the query's shape in place); False = click at the peak, for a
    one-click model, which segments from any point on the object (alignment sent 27 of 432
    validation copies' clicks off the object or onto a neighbour: docs/similar.md).

    by_copies: a candidate the verifier rejects against the query is also scored against each
    *anchor* (an instance accepted against the query itself) and accepted when one of them accepts
    it (settings.copies_min_score or more, and the verifier's threshold) and its area is within
    the verifier's gate of the query's (Anchors; the copies of a small
    query on a big photo are turned and re-lit, and a copy is often more like another copy than
    like the query: docs/similar.md, fifteenth session). One hop only: an instance accepted so is
    a query for the proposals but no anchor. A rejected candidate is scored again when a new
    anchor comes.

    by_group: at the end of each round, candidates the verifier rejected against the query but
    scored at least settings.group_band of its threshold are accepted when they form a group of
    settings.group_size or more that accept one another both ways, the instances already
    accepted counting as members (groups.Groups: a partly hidden or oddly lit query whose copies
    are alike); they get pixel_score, as a pixel match does. With settings.group_anchors > 0 (the default) the
    set rule decides instead: enough of the instances accepted against the query accept the candidate both
    ways (groups.by_set).

    pixel_score: the score a candidate gets when the verifier rejected it and pixel match
    (settings.pixel_match, pixel_match.rescues) finds it to be the query's own pixels in another
    pose: the engine's own threshold, so a likeness the user asks for above it (min_score, which
    replaced the verifier's threshold) leaves such candidates out and one at or below it keeps them.
    None: the verifier's threshold as given.

    hidden_copies: on a photo larger than MAX_SIDE (encoding.big_photo), where these were chosen,
    pixel match also takes a candidate that lies inside the query's placed shape but covers only
    part of it (a copy partly hidden; pixel_match.rescues' `hidden`), and a proposal's mask has its
    missed part clicked only under SHORT_BIG of the query's area (complete_shape: a smaller or
    partly hidden copy is not completed with the background or the clutter on it)."""
    if isinstance(cpn, str):
        cpn = default_cpn()
    start = clock()
    res = Result()
    q = Query.of(rgb, seed, mm, pieces=not align_clicks)
    known = Known.of(seed, to_grid(q.patch, mm), q.descriptor)
    propose = Proposer(mm, cpn, settings, q.cells)
    anchors = Anchors(verifier, q.descriptor, settings.max_overlap, settings.copies_min_score) if by_copies else None
    rescued_at = verifier.threshold if pixel_score is None else pixel_score
    groups = Groups(verifier, settings.group_band, settings.group_size, settings.group_anchors,
                    settings.group_share) \
        if by_group and rescued_at >= verifier.threshold else None
    rounds_done = 0                              # queries the proposals have seen
    for rnd in range(settings.rounds):
        if rnd > 0 and clock() - start > settings.seconds:
            break
        if len(known.qgrids) == rounds_done:
            break
        rounds_done = len(known.qgrids)
        props = propose(known.queries, known.qgrids, known.tried | (known.taken_grid > 0.3))
        res.rounds = rnd + 1
        if not props:
            break
        for i, (gx, gy, value) in enumerate(props):
            progress(0.25 + 0.7 * min(1.0, (rnd + i / len(props)) / settings.rounds),
                     f"Checking proposal {res.proposals + 1}")
            known.tried[max(0, gy - 1):gy + 2, max(0, gx - 1):gx + 2] = True
            px, py = q.click_at(rgb, gx, gy, align_clicks)
            if known.taken[int(py), int(px)]:
                continue
            res.proposals += 1
            got, px, py, template = segment_proposal(rgb, q, px, py, known.taken, segment, settings, align_clicks,
                                                     SHORT_BIG if hidden_copies else SHORT)
            got = new_part(got, px, py, template, known.taken, settings.max_overlap)
            if got is None:
                continue                         # empty, or mostly a known object again
            cand = describe(mm, rgb, got)
            c = Candidate(got, value, verifier.score(q.descriptor, cand))
            g = to_grid(got, mm)
            known.tried |= g > 0.5
            if c.score >= verifier.threshold:
                res.accepted.append(c)
                known.add(got, g, cand)
                if anchors is not None:
                    anchors.add(cand, res, known)
                if groups is not None:
                    groups.accepted(cand)
            elif rescued_at >= verifier.threshold and rescues(rgb, q.patch, got, c.score, settings, hidden_copies):
                res.accepted.append(c._replace(score=rescued_at))   # the query's own pixels in another pose
                known.add(got, g, cand)
                if groups is not None:
                    groups.accepted(cand)
            elif anchors is not None and anchors.check(c, cand, g, res, known):
                continue
            else:
                res.rejected.append(c)
                if groups is not None:
                    groups.keep(c, cand, g)
        if groups is not None:
            groups.take(lambda c, cand, g: accept_late(c, cand, g, rescued_at, res, known, settings.max_overlap))
    if settings.repeated_parts:
        add_repeated_parts(rgb, q.patch, res, known.taken, segment)
    return res


def accept_late(c: Candidate, cand: Descriptor, grid: np.ndarray, score: float, res: Result, known: "Known",
                max_overlap: float) -> bool:
    """A candidate rejected earlier and accepted now (by a new anchor, by_copies; by a group, by_group):
    less the pixels of objects found since, at `score`; False when that leaves too little of it."""
    got = less_known(c.patch, known.taken, max_overlap)
    if got is None:
        return False
    res.rejected = [r for r in res.rejected if r is not c]
    res.accepted.append(c._replace(patch=got, score=score))
    known.add(got, grid, cand)
    return True


def add_repeated_parts(rgb: np.ndarray, query: MaskPatch, res: Result, taken: np.ndarray, segment: Segment) -> None:
    """The parts of the object that the query's mask left out and that lie beside every copy
    (repeated_parts): added to the copies whose neighbourhood agrees, and beside the query as
    res.seed_parts (the user's selection grows by them)."""
    order = sorted(range(len(res.accepted)), key=lambda i: -res.accepted[i].score)
    own, grown = complete_copies(rgb, query, [res.accepted[i].patch for i in order], taken, segment)
    if own is None:
        return
    for i, patch in zip(order, grown):
        res.accepted[i] = res.accepted[i]._replace(patch=patch)
    res.seed_parts = own


class Anchors:
    """find_similar's by_copies: the instances accepted against the query, and the candidates
    rejected so far (kept to be scored against each new anchor)."""

    def __init__(self, verifier: Verifier, query: Descriptor, max_overlap: float, min_score: float = 0.0):
        self.verifier, self.query, self.max_overlap = verifier, query, max_overlap
        self.bar = max(verifier.threshold, min_score)     # an anchor's score that accepts
        self.anchors: list[Descriptor] = []
        self.pending: list[tuple[Candidate, Descriptor, np.ndarray]] = []
        self.gate = (getattr(verifier, "min_ratio", 0.0), getattr(verifier, "max_ratio", float("inf")))

    def score(self, cand: Descriptor, anchors: list[Descriptor]) -> float:
        """The best anchor's score of cand (0 outside the gate of the query's area, or no anchor)."""
        ratio = cand.area / max(self.query.area, 1.0)
        if not anchors or not self.gate[0] <= ratio <= self.gate[1]:
            return 0.0
        return max(self.verifier.score(a, cand) for a in anchors)

    def check(self, c: Candidate, cand: Descriptor, grid: np.ndarray, res: Result, known: "Known") -> bool:
        """A candidate the query rejected: accepted (True) when an anchor accepts it, else kept."""
        s = self.score(cand, self.anchors)
        if s >= self.bar:
            res.accepted.append(c._replace(score=s))
            known.add(c.patch, grid, cand)
            return True
        self.pending.append((c, cand, grid))
        return False

    def add(self, anchor: Descriptor, res: Result, known: "Known") -> None:
        """A new anchor: the kept candidates it accepts are accepted, less the pixels of objects
        found since (less_known, as for every proposal)."""
        self.anchors.append(anchor)
        keep = []
        for c, cand, grid in self.pending:
            s = self.score(cand, [anchor])
            if s < self.bar:
                keep.append((c, cand, grid))
                continue
            accept_late(c, cand, grid, s, res, known, self.max_overlap)
        self.pending = keep


@dataclass
class Query:
    """The seed as the loop uses it."""
    patch: MaskPatch
    descriptor: Descriptor
    cell: float                                  # image pixels per grid cell
    cells: tuple[float, float]                   # the seed's (w, h) in cells
    anchor: tuple[float, float]                  # its most interior point
    centre: tuple[float, float]                  # its box centre
    pieces: list[tuple[float, float]]            # an object in pieces: where to click each

    @classmethod
    def of(cls, rgb: np.ndarray, seed: np.ndarray, mm: MatchMap, pieces: bool) -> "Query":
        sp = as_patch(seed)
        cell = STRIDE / mm.scale
        return cls(sp, describe(mm, rgb, sp), cell, (sp.mask.shape[1] / cell, sp.mask.shape[0] / cell),
                   interior_point(sp), (sp.x + sp.mask.shape[1] / 2, sp.y + sp.mask.shape[0] / 2),
                   query_pieces(sp) if pieces else [])

    def click_at(self, rgb: np.ndarray, gx: int, gy: int, align_clicks: bool) -> tuple[float, float]:
        """Where to click for the peak in grid cell (gx, gy), inside the image. The peak lies on an
        object like the query; with align_clicks, template matching finds where the query's box
        centre would be, and the click goes where its interior point would be."""
        H, W = rgb.shape[:2]
        sp, cell = self.patch, self.cell
        if align_clicks:
            cx, cy = align(rgb, sp, (gx + 0.5) * cell, (gy + 0.5) * cell, 0.5 * max(sp.mask.shape) + cell)
            px, py = cx + self.anchor[0] - self.centre[0], cy + self.anchor[1] - self.centre[1]
        else:
            px, py = (gx + 0.5) * cell, (gy + 0.5) * cell
        return min(max(px, 0), W - 1), min(max(py, 0), H - 1)


@dataclass
class Known:
    """What the loop has found so far."""
    taken: np.ndarray                            # H×W bool: pixels that belong to known objects
    taken_grid: np.ndarray                       # gh×gw: their share of each cell
    tried: np.ndarray                            # gh×gw bool: cells already proposed or segmented
    queries: list[dict[str, np.ndarray]]         # pooled features of the seed and each accepted copy
    qgrids: list[np.ndarray]                     # their grid weights (CPN inputs)

    @classmethod
    def of(cls, seed: np.ndarray, seed_grid: np.ndarray, query: Descriptor) -> "Known":
        return cls(seed.copy(), seed_grid, np.zeros(seed_grid.shape, bool), [query.pooled], [seed_grid])

    def add(self, got: MaskPatch, grid: np.ndarray, desc: Descriptor) -> None:
        """An accepted copy: taken, and a query of its own."""
        got.region(self.taken)[got.mask] = True
        self.taken_grid = np.maximum(self.taken_grid, grid)
        self.queries.append(desc.pooled)
        self.qgrids.append(grid)


def segment_proposal(rgb: np.ndarray, q: Query, px: float, py: float, taken: np.ndarray, segment: Segment,
                     settings: SimilarSettings, align_clicks: bool,
                     short: float = SHORT) -> tuple[MaskPatch, float, float, MaskPatch]:
    """(mask, click x, click y, the query's shape placed there) for a click at (px, py). With a
    one-click model (not align_clicks) the mask is repaired with the placed shape (shape_repair;
    short: complete_shape's share of the query's area)."""
    H, W = rgb.shape[:2]
    sp = q.patch
    if align_clicks:
        template = move_template(sp, q.anchor, px, py, H, W)
        return segment(px, py, template), px, py, template
    # the query's shape where template matching puts it (for its parts and pieces)
    cx, cy = align(rgb, sp, px, py, 0.5 * max(sp.mask.shape) + q.cell)
    template = move_template(sp, q.centre, cx, cy, H, W)
    got = segment(px, py, template)
    if settings.shape_click:
        got, px, py = click_the_shape(got, px, py, template, taken, segment)
    if len(q.pieces) > 1:
        got = complete_pieces(q.pieces, (cx - q.centre[0], cy - q.centre[1]), got, px, py,
                              template, taken, segment, sp.area)
    if settings.complete_shape:
        got = complete_shape(got, px, py, template, taken, segment, sp.area, short)
    return got, px, py, template


def new_part(got: MaskPatch, px: float, py: float, template: MaskPatch, taken: np.ndarray,
             max_overlap: float) -> Optional[MaskPatch]:
    """The mask's parts worth verifying (keep_parts), less the pixels of known objects; None when
    it is empty or more than max_overlap of it is known already."""
    if got.area == 0:
        return None
    free = less_known(keep_parts(got, px, py, template), taken, max_overlap)
    return None if free is None else keep_parts(free, px, py, template)


def less_known(got: MaskPatch, taken: np.ndarray, max_overlap: float) -> Optional[MaskPatch]:
    """The mask less the pixels of known objects; None when more than max_overlap of it is known
    already or under 4 pixels are left."""
    mask = got.mask & ~got.region(taken)
    n = np.count_nonzero(mask)
    if got.area - n > max_overlap * got.area or n < 4:
        return None
    return MaskPatch(got.x, got.y, mask)
