"""Select similar: matching maths, the proposal loop, the features and pvm engines, the bench metric.

A fake backbone with colour features (no weights, no network) makes the outcome predictable:
copies of the red object must be found, the blue one and the background must not.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from backend import similar as sim
from backend import weights
from backend.cache import ImageEntry
from backend.engines import Found
from backend.engines.similar_features import FeaturesEngine
from backend.engines.similar_pvm import PvmEngine
from backend.masks import mask_box
from backend.models.lite0 import Lite0
from backend.models.pvm import ROW, PairVerifier, loss_fn
from backend.pipeline import Pipeline


class ColourBackbone(torch.nn.Module):
    """Stand-in for Lite0: s8/s16 features = pooled one-hot hue/brightness codes (40 / 112 channels)."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        r, g, b = x[:, 0], x[:, 1], x[:, 2]
        codes = torch.stack([r > 128, g > 128, b > 128], 1).float()
        idx = (codes[:, 0] * 4 + codes[:, 1] * 2 + codes[:, 2]).long()        # 8 colour classes
        onehot = F.one_hot(idx, 8).permute(0, 3, 1, 2).float()
        f8 = F.avg_pool2d(onehot, 8).repeat(1, 5, 1, 1)                       # 40 channels
        f16 = F.avg_pool2d(onehot, 16).repeat(1, 14, 1, 1)                    # 112 channels
        return {"s8": f8 + 0.01, "s16": f16 + 0.01}


def disc_image(centres_red: list[tuple[int, int]], centres_blue: list[tuple[int, int]],
               h: int = 240, w: int = 320, r: int = 14) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    img = np.full((h, w, 3), (60, 140, 60), np.uint8)      # green field
    reds, blues = [], []
    for cx, cy in centres_red:
        cv2.circle(img, (cx, cy), r, (230, 30, 30), -1)
        m = np.zeros((h, w), np.uint8)
        cv2.circle(m, (cx, cy), r, 1, -1)
        reds.append(m > 0)
    for cx, cy in centres_blue:
        cv2.circle(img, (cx, cy), r, (30, 30, 230), -1)
        m = np.zeros((h, w), np.uint8)
        cv2.circle(m, (cx, cy), r, 1, -1)
        blues.append(m > 0)
    return img, reds, blues


RED = [(40, 40), (160, 50), (270, 60), (80, 180)]
BLUE = [(220, 180)]
LOOKALIKES = [(220, 180), (280, 200), (170, 130)]


def entry_of(rgb: np.ndarray) -> ImageEntry:
    return ImageEntry("k", np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]), rgb)


def test_encode_side_targets_the_query_size():
    seed = np.zeros((3000, 4000), bool)
    seed[100:500, 100:300] = True                        # 400 px tall -> ~96 px when encoded
    assert sim.encode_side(3000, 4000, seed) == 960
    small = np.zeros((600, 800), bool)
    small[10:20, 10:20] = True                           # tiny query: capped
    assert sim.encode_side(600, 800, small) == sim.MAX_SIDE
    big = np.ones((600, 800), bool)
    assert sim.encode_side(600, 800, big) == sim.MIN_SIDE
    tiny = np.zeros((3000, 4000), bool)
    tiny[100:130, 100:160] = True                        # 60 px on a 12-MP photo: a finer encoding
    assert sim.encode_side(3000, 4000, tiny) == sim.LARGE_SIDE
    mid = np.zeros((3000, 4000), bool)
    mid[100:250, 100:250] = True                         # 150 px: 48 encoded px need 1280
    assert sim.encode_side(3000, 4000, mid) == 1280
    speck = np.zeros((1200, 1600), bool)
    speck[100:115, 100:130] = True                       # 30 px on 1600 would want 2560
    assert sim.encode_side(1200, 1600, speck) == 1600     # never past the photo's own size


def test_grid_weights_and_cosine_map_find_the_copies():
    img, reds, blues = disc_image(RED, BLUE)
    mm = sim.encode(ColourBackbone(), img, 320)
    assert mm.grid == (32, 40) and abs(mm.scale - 1.0) < 1e-9
    wts = sim.to_grid(reds[0], mm)
    cell = sim.STRIDE / mm.scale
    assert abs(wts.sum() * cell * cell - reds[0].sum()) < 0.05 * reds[0].sum()
    cos = sim.cosine_map(mm, sim.pool(mm, wts))
    for cx, cy in RED:
        assert cos[int(cy // cell), int(cx // cell)] > 0.9
    bx, by = BLUE[0]
    assert cos[int(by // cell), int(bx // cell)] < 0.5


def test_peaks_nms_and_blocking():
    sim_map = np.zeros((30, 40), np.float32)
    sim_map[5, 5] = sim_map[20, 30] = 1.0
    sim_map[5, 6] = 0.9                                  # same bump: suppressed by NMS
    blocked = np.zeros_like(sim_map, bool)
    got = sim.peaks(sim_map, (2, 2), blocked, 0.2, 10)
    assert {(x, y) for x, y, _ in got} == {(5, 5), (30, 20)}
    blocked[20, 30] = True
    assert [(x, y) for x, y, _ in sim.peaks(sim_map, (2, 2), blocked, 0.2, 10)] == [(5, 5)]
    assert sim.peaks(sim_map, (2, 2), np.zeros_like(blocked), 1.5, 10) == []


def test_move_template_and_interior_point():
    m = np.zeros((50, 60), bool)
    m[10:20, 10:30] = True
    ax, ay = sim.interior_point(m)
    assert m[int(ay), int(ax)]
    p = sim.as_patch(m)
    assert p.box == (10, 10, 20, 10) and (p.full(50, 60) == m).all()
    moved = sim.move_template(p, (ax, ay), ax + 25, ay + 20, 50, 60).full(50, 60)
    assert moved.sum() == m.sum() and moved[30:40, 35:55].all()
    clipped = sim.move_template(p, (ax, ay), 58, ay, 50, 60).full(50, 60)   # partly outside: cut
    assert 0 < clipped.sum() < m.sum() and not clipped[:, :30].any()
    half = sim.to_grid(sim.MaskPatch(4, 0, np.ones((8, 4), bool)), sim.MatchMap({"s8": torch.zeros(1, 2, 2)}, 1.0, 16, 16))
    assert np.allclose(half, [[0.5, 0], [0, 0]])


def test_find_similar_with_grabcut_fallback_keeps_copies_only():
    img, reds, blues = disc_image(RED, BLUE)
    mm = sim.encode(ColourBackbone(), img, 320)
    settings = sim.SimilarSettings()
    res = sim.find_similar(img, reds[0], mm, lambda x, y, t: sim.template_grabcut(img, x, y, t),
                           sim.CosineVerifier(settings), settings)
    assert len(res.accepted) == 3
    masks = [c.patch.full(*img.shape[:2]) for c in res.accepted]
    for other in reds[1:]:
        assert any((m & other).sum() > 0.8 * other.sum() for m in masks)
    for m in masks:
        assert not (m & reds[0]).any() and not (m & blues[0]).any()
    for a in range(len(masks)):                          # accepted instances are disjoint
        for b in range(a + 1, len(masks)):
            assert not (masks[a] & masks[b]).any()
    assert 1 <= res.rounds <= settings.rounds


def test_unaligned_clicks_land_on_the_peaks():
    """With align_clicks=False (a one-click model segments), each proposal's click is the centre
    of its peak's grid cell, which lies on the copy."""
    img, reds, blues = disc_image(RED, BLUE)
    mm = sim.encode(ColourBackbone(), img, 320)
    settings = sim.SimilarSettings()
    clicks = []

    def segment(x: float, y: float, template: sim.MaskPatch) -> sim.MaskPatch:  # an ideal one-click model
        clicks.append((x, y))
        hit = [m for m in reds + blues if m[int(y), int(x)]]
        return sim.as_patch(hit[0] if hit else np.zeros(img.shape[:2], bool))

    res = sim.find_similar(img, reds[0], mm, segment, sim.CosineVerifier(settings), settings,
                           cpn=None, align_clicks=False)
    cell = sim.STRIDE / mm.scale
    assert len(res.accepted) == 3 and clicks
    for x, y in clicks:
        assert ((x / cell - 0.5) % 1) < 1e-6 and ((y / cell - 0.5) % 1) < 1e-6   # cell centres
    for red in reds[1:]:
        assert any(red[int(y), int(x)] for x, y in clicks)


def test_objects_in_pieces_get_every_piece_clicked():
    """A one-click model that selects only the clicked piece: the query's other pieces are
    clicked too (where template matching places the query), so each copy is found whole."""
    img = np.full((240, 320, 3), (60, 140, 60), np.uint8)
    objects = []
    for cx, cy in [(50, 60), (170, 70), (260, 170), (90, 180)]:   # a disc and a bar beside it
        disc, bar = np.zeros((240, 320), np.uint8), np.zeros((240, 320), np.uint8)
        cv2.circle(disc, (cx, cy), 13, 1, -1)
        cv2.rectangle(bar, (cx + 20, cy - 14), (cx + 27, cy + 14), 1, -1)
        img[(disc | bar) > 0] = (230, 30, 30)
        objects.append((disc > 0, bar > 0))
    mm = sim.encode(ColourBackbone(), img, 320)
    settings = sim.SimilarSettings()
    calls = []

    def segment(x: float, y: float, template: sim.MaskPatch, more: tuple = ()) -> sim.MaskPatch:
        calls.append(len(more))
        out = np.zeros(img.shape[:2], bool)
        for cx, cy in [(x, y), *more]:
            for piece in (p for obj in objects for p in obj):
                if piece[int(cy), int(cx)]:
                    out |= piece
        return sim.as_patch(out) if out.any() else sim.MaskPatch(0, 0, np.zeros((0, 0), bool))

    query = objects[0][0] | objects[0][1]
    res = sim.find_similar(img, query, mm, segment, sim.CosineVerifier(settings), settings,
                           cpn=None, align_clicks=False)
    masks = [c.patch.full(*img.shape[:2]) for c in res.accepted]
    assert any(calls)                                    # other pieces were clicked
    for disc, bar in objects[1:]:
        assert any((m & disc).sum() == disc.sum() and (m & bar).sum() == bar.sum() for m in masks)


def whole_copies(img: np.ndarray, objects: list[np.ndarray], mm, segment, settings: sim.SimilarSettings,
                 cpn=None, avoid: np.ndarray | None = None, hidden_copies: bool = False, exact: bool = False) -> int:
    """find_similar from objects[0] (one-click clicks on the peaks, cosine verifier): how many of
    the other objects an accepted instance covers whole (exact: is exactly); no instance may touch `avoid`."""
    res = sim.find_similar(img, objects[0], mm, segment, sim.CosineVerifier(settings), settings,
                           cpn=cpn, align_clicks=False, hidden_copies=hidden_copies)
    masks = [c.patch.full(*img.shape[:2]) for c in res.accepted]
    assert avoid is None or not any((m & avoid).any() for m in masks)
    if exact:
        return sum(any((m == o).all() for m in masks) for o in objects[1:])
    return sum(any((m & o).sum() == o.sum() for m in masks) for o in objects[1:])


class OneCopyCPN:
    """A CPN whose heatmap sees only the copy at `cell` (gx, gy), so the cosine peaks must find the rest."""
    threshold = 0.5

    def __init__(self, cell: tuple[int, int]):
        self.cell = cell

    def project(self, feats):
        return None

    def __call__(self, feats, q, projected):
        gh, gw = feats[sim.LEVELS[0]].shape[-2:]
        out = torch.full((1, 1, gh, gw), -10.0)
        out[0, 0, self.cell[1], self.cell[0]] = 10.0
        return out


def test_cosine_peaks_propose_what_the_cpn_missed():
    img, reds, blues = disc_image(RED, BLUE)
    mm = sim.encode(ColourBackbone(), img, 320)
    cell = sim.STRIDE / mm.scale
    cpn = OneCopyCPN((int(RED[1][0] / cell), int(RED[1][1] / cell)))

    def segment(x: float, y: float, template: sim.MaskPatch, more: tuple = ()) -> sim.MaskPatch:
        hit = [m for m in reds + blues if m[int(y), int(x)]]
        return sim.as_patch(hit[0] if hit else np.zeros(img.shape[:2], bool))

    found = {on: whole_copies(img, reds, mm, segment, sim.SimilarSettings(cosine_too=on), cpn, avoid=blues[0])
             for on in (False, True)}
    assert found == {False: 1, True: 3}


class OddQuery:
    """A verifier for disc_image's scenes (every disc red: the proposals cannot tell them apart): the
    query (the disc at copies[0]) accepts the copy at copies[1] (0.6) and scores the other copies and
    the look-alikes only 0.3 (under its threshold 0.5, over half of it); copies accept one another
    (1.0), look-alikes accept one another, a copy and a look-alike never."""
    threshold = 0.5

    def __init__(self, copies: list[tuple[int, int]], lookalikes: list[tuple[int, int]]):
        self.kinds = [("copy", i) for i in range(len(copies))] + [("look", i) for i in range(len(lookalikes))]
        self.centres = copies + lookalikes

    def _disc(self, d) -> tuple[str, int]:
        x, y, w, h = d.box
        near = [k for k, (cx, cy) in zip(self.kinds, self.centres) if abs(x + w / 2 - cx) < 6 and abs(y + h / 2 - cy) < 6]
        return near[0] if near else ("none", -1)

    def score(self, a, b) -> float:
        pair = (self._disc(a), self._disc(b))
        if ("none", -1) in pair:
            return 0.0
        if ("copy", 0) in pair:                                   # against the query
            return 0.6 if ("copy", 1) in pair else 0.3
        return 1.0 if pair[0][0] == pair[1][0] else 0.0


@pytest.mark.parametrize("copies, lookalikes, found", [(RED, [], 3), (RED[:3], [], 1), (RED, LOOKALIKES, 3)])
def test_copies_that_accept_one_another_are_found_as_a_group(copies, lookalikes, found):
    """by_group's group rule (group_anchors 0): copies the query scores under the threshold but that accept one another and the
    copy the query accepted are accepted (three in all); two are not a group; three look-alikes that
    accept one another but no copy stay out; off, only the copy the query accepts is found."""
    img, discs, _ = disc_image(copies + lookalikes, [])
    looks = discs[len(copies):]
    mm = sim.encode(ColourBackbone(), img, 320)

    def segment(x: float, y: float, template: sim.MaskPatch, more: tuple = ()) -> sim.MaskPatch:
        hit = [m for m in discs if m[int(y), int(x)]]
        return sim.as_patch(hit[0] if hit else np.zeros(img.shape[:2], bool))

    def accepted(by_group: bool) -> list:
        res = sim.find_similar(img, discs[0], mm, segment, OddQuery(copies, lookalikes),
                               sim.SimilarSettings(pixel_match=False, group_anchors=0), cpn=None, align_clicks=False,
                               by_group=by_group)
        assert not [c for c in res.accepted if any((c.patch.full(*img.shape[:2]) & m).any() for m in looks)]
        if lookalikes:                                           # they were seen, in the band, and left out
            assert len([c for c in res.rejected if any((c.patch.full(*img.shape[:2]) & m).any() for m in looks)]) >= 3
        return res.accepted

    assert len(accepted(False)) == 1
    got = accepted(True)
    assert len(got) == found
    assert sorted(c.score for c in got)[:found - 1] == [OddQuery.threshold] * (found - 1)   # the group's: the engine's own score


class TwoAccepted(OddQuery):
    """OddQuery with the query accepting two copies (copies[1] and copies[2]) and a look-alike that
    accepts, and is accepted by, copies[1] only (one copy of two)."""

    def score(self, a, b) -> float:
        pair = (self._disc(a), self._disc(b))
        if ("none", -1) in pair:
            return 0.0
        if ("copy", 0) in pair:
            return 0.6 if ("copy", 1) in pair or ("copy", 2) in pair else 0.3
        if ("look", 0) in pair and ("copy", 1) in pair:
            return 1.0
        return 1.0 if pair[0][0] == pair[1][0] else 0.0


@pytest.mark.parametrize("anchors, share, looks_taken", [(2, 0.5, 0), (1, 0.0, 1)])
def test_the_set_rule_takes_copies_most_accepted_copies_accept(anchors, share, looks_taken):
    """by_group's set rule (SimilarSettings.group_anchors, group_share): the copy the query rejects is
    accepted by both copies the query accepted and comes in; a look-alike that one of them accepts
    stays out when two votes are asked for (one vote: it comes in, which is why votes are counted)."""
    copies = RED + [(40, 120)]
    img, discs, _ = disc_image(copies + [LOOKALIKES[0]], [])
    mm = sim.encode(ColourBackbone(), img, 320)
    look = discs[len(copies)]

    def segment(x: float, y: float, template: sim.MaskPatch, more: tuple = ()) -> sim.MaskPatch:
        hit = [m for m in discs if m[int(y), int(x)]]
        return sim.as_patch(hit[0] if hit else np.zeros(img.shape[:2], bool))

    settings = sim.SimilarSettings(pixel_match=False, group_anchors=anchors, group_share=share)
    res = sim.find_similar(img, discs[0], mm, segment, TwoAccepted(copies, [LOOKALIKES[0]]), settings, cpn=None,
                           align_clicks=False, by_group=True)
    full = [c.patch.full(*img.shape[:2]) for c in res.accepted]
    assert sum(1 for f in full if (f & look).any()) == looks_taken
    assert all(sum(1 for f in full if (f & m).any()) == 1 for m in discs[1:len(copies)])   # every copy once


def test_a_long_object_selected_in_part_gets_its_missed_part_clicked():
    """A one-click model that selects only 40 % of a long bar around a single click (two
    clicks: all of it): the placed query's missed part is clicked too, so each copy is found whole."""
    img = np.full((240, 320, 3), (60, 140, 60), np.uint8)
    bars = []
    for x0, y0 in [(20, 30), (170, 40), (150, 150), (30, 190)]:
        bar = np.zeros((240, 320), bool)
        bar[y0:y0 + 8, x0:x0 + 110] = True
        img[bar] = (230, 30, 30)
        bars.append(bar)
    mm = sim.encode(ColourBackbone(), img, 320)

    def segment(x: float, y: float, template: sim.MaskPatch, more: tuple = ()) -> sim.MaskPatch:
        out = np.zeros(img.shape[:2], bool)
        for bar in bars:
            hits = [cx for cx, cy in [(x, y), *more] if bar[int(cy), int(cx)]]
            if len(hits) > 1:
                out |= bar
            elif hits:
                out[:, max(int(hits[0]) - 22, 0):int(hits[0]) + 22] |= bar[:, max(int(hits[0]) - 22, 0):int(hits[0]) + 22]
        return sim.as_patch(out) if out.any() else sim.MaskPatch(0, 0, np.zeros((0, 0), bool))

    whole = {on: whole_copies(img, bars, mm, segment, sim.SimilarSettings(complete_shape=on)) for on in (False, True)}
    assert whole == {False: 0, True: 3}


def test_a_smaller_copy_on_a_big_photo_is_not_completed_with_the_background():
    """On a photo over MAX_SIDE (hidden_copies) copies vary ±30 % in size: a copy 65 % of the query's
    width is under half its area, and clicking the placed query's missed part (the background around
    the copy) would take background with it. There the missed part is clicked only under SHORT_BIG
    of the query's area, so each copy comes out exactly; on a smaller photo it is clicked as before."""
    img, reds, _ = disc_image([(60, 60)], [], r=20)
    copies = []
    for cx, cy in [(200, 70), (120, 170), (250, 180)]:
        cv2.circle(img, (cx, cy), 13, (230, 30, 30), -1)
        m = np.zeros(img.shape[:2], np.uint8)
        cv2.circle(m, (cx, cy), 13, 1, -1)
        copies.append(m > 0)
    discs = reds + copies
    assert sim.SHORT_BIG * reds[0].sum() <= copies[0].sum() < sim.SHORT * reds[0].sum()
    mm = sim.encode(ColourBackbone(), img, 320)

    def segment(x: float, y: float, template: sim.MaskPatch, more: tuple = ()) -> sim.MaskPatch:
        out = np.zeros(img.shape[:2], bool)
        for cx, cy in [(x, y), *more]:
            hit = [d for d in discs if d[int(cy), int(cx)]]
            if hit:
                out |= hit[0]
            else:                                   # a click on the background takes a square of it
                out[max(int(cy) - 6, 0):int(cy) + 6, max(int(cx) - 6, 0):int(cx) + 6] = True
        return sim.as_patch(out)

    exact = {big: whole_copies(img, discs, mm, segment, sim.SimilarSettings(), hidden_copies=big, exact=True)
             for big in (False, True)}
    assert exact == {False: 0, True: 3}


def test_a_peak_in_the_hole_of_an_outline_gets_the_outline_clicked():
    """Outline objects (a ring): a click in the hole makes a one-click model rightly select the
    background inside. The placed query's shape is clicked instead, and the mask closer to the
    query's shape is kept."""
    ring, hole = np.zeros((120, 160), np.uint8), np.zeros((120, 160), np.uint8)
    cv2.circle(ring, (80, 60), 24, 1, 5)
    cv2.circle(hole, (80, 60), 21, 1, -1)
    ring, hole = ring > 0, (hole > 0) & (ring == 0)
    template = sim.as_patch(np.roll(ring, 2, axis=1))    # template matching placed it 2 px off
    clicks = []

    def segment(x: float, y: float, template: sim.MaskPatch, more: tuple = ()) -> sim.MaskPatch:
        clicks.append((x, y))
        for part in (ring, hole):
            if part[int(y), int(x)]:
                return sim.as_patch(part)
        return sim.MaskPatch(0, 0, np.zeros((0, 0), bool))

    taken = np.zeros(ring.shape, bool)
    got, x, y = sim.click_the_shape(segment(80.5, 60.5, template), 80.5, 60.5, template, taken, segment)
    assert ring[int(y), int(x)] and got.iou(sim.as_patch(ring)) == 1.0 and len(clicks) == 2
    # the same peak with the outline's pixel taken by a known object: nothing better to click
    taken[int(y), int(x)] = True
    got, x, y = sim.click_the_shape(segment(80.5, 60.5, template), 80.5, 60.5, template, taken, segment)
    assert (x, y) == (80.5, 60.5) and got.iou(sim.as_patch(hole)) == 1.0


def test_template_matching_does_not_place_the_query_on_itself():
    """A copy beside the query (a little darker): the search window around the copy's peak also
    holds the query, which matches itself perfectly; the copy must get the place."""
    img = np.full((120, 200, 3), (60, 140, 60), np.uint8)
    cv2.circle(img, (60, 60), 14, (230, 30, 30), -1)
    cv2.circle(img, (100, 60), 14, (215, 40, 40), -1)
    query = np.zeros((120, 200), np.uint8)
    cv2.circle(query, (60, 60), 14, 1, -1)
    x, y = sim.align(img, sim.as_patch(query > 0), 92, 60, radius=40)
    assert abs(x - 100.5) <= 2 and abs(y - 60.5) <= 2


def test_holes_and_parts_inside_them():
    ring = np.zeros((40, 40), np.uint8)
    cv2.circle(ring, (20, 20), 12, 1, 3)
    ring = ring > 0
    assert sim.holes_of(ring)[20, 20] and not sim.holes_of(ring)[0, 0]
    bars = np.zeros((40, 40), bool)
    bars[:, 5] = bars[:, 30] = True                       # parts spanning the box enclose nothing
    assert not sim.holes_of(bars).any()
    blob = np.zeros((40, 40), bool)
    blob[17:23, 17:23] = True
    far = np.zeros((40, 40), bool)
    far[0:3, 36:40] = True
    mask = sim.as_patch(ring | blob | far)
    kept = sim.keep_parts(mask, 20.5, 20.5).full(40, 40)   # click on the blob inside the ring
    assert (kept == (ring | blob)).all()
    kept = sim.keep_parts(sim.as_patch(ring | far), 15.5, 20.5).full(40, 40)   # click in the hole
    assert (kept == ring).all()


def test_a_peak_on_the_placed_query_is_not_clicked_again():
    template = sim.MaskPatch(10, 10, np.ones((8, 8), bool))
    got = sim.MaskPatch(10, 10, np.ones((8, 8), bool))
    calls = []

    def segment(x, y, template, more=()):
        calls.append((x, y))
        return got

    assert sim.click_the_shape(got, 13.5, 13.5, template, np.zeros((40, 40), bool), segment) == (got, 13.5, 13.5)
    assert not calls


def test_features_engine_through_the_pipeline():
    img, reds, blues = disc_image(RED, BLUE)
    engine = FeaturesEngine(backbone=ColourBackbone(), segmenter=None)
    entry = entry_of(img)
    found = engine.similar(entry, reds[0], lambda f, m: None)
    assert len(found) == 3 and all(isinstance(f, Found) for f in found)
    for f in found:
        x, y, w, h = f.box
        assert f.mask.shape == (h, w) and f.mask.dtype == bool and 0 <= f.score <= 1
        assert 0 <= x and x + w <= img.shape[1] and 0 <= y and y + h <= img.shape[0]
    assert any(k.startswith("similar-match-") for k in entry.derived)   # encoding cached per image
    # through Pipeline.similar: seed first, union covers every red disc and not the blue one
    from backend import engines
    engines._built["features"] = engine
    try:
        union, inst, name = Pipeline().similar(entry, [], (reds[0] * 255).astype(np.uint8), "features")
    finally:
        engines._built.pop("features", None)
    assert name == "features" and len(inst) == 4 and inst[0].score == 1.0
    for m in reds:
        assert (union[m] == 255).mean() > 0.8
    assert (union[blues[0]] == 255).mean() < 0.05


def test_pvm_shapes_loss_and_threshold_gate():
    torch.manual_seed(0)
    model = PairVerifier()
    q, c = torch.rand(5, ROW), torch.rand(5, ROW)
    logits, dist = model(q, c)
    assert logits.shape == (5,) and dist.shape == (5,) and (dist >= 0).all()
    loss = loss_fn(logits, dist, torch.tensor([1, 0, 1, 0, 1]))
    loss.backward()
    assert torch.isfinite(loss) and model.head[0].weight.grad is not None
    img, reds, _ = disc_image(RED, BLUE)
    mm = sim.encode(ColourBackbone(), img, 320)
    d = sim.describe(mm, img, reds[0])
    assert sim.descriptor_row(d).shape == (ROW,)
    p = sim.LearnedVerifier(model).score(d, sim.describe(mm, img, reds[1]))
    assert 0.0 <= p <= 1.0
    always = PvmEngine(backbone=ColourBackbone(), model=model, segmenter=None)
    always._model.threshold.fill_(0.0)
    assert len(always.similar(entry_of(img), reds[0], lambda f, m: None)) >= 3
    never = PvmEngine(backbone=ColourBackbone(), model=PairVerifier(), segmenter=None,
                      settings=sim.SimilarSettings(pixel_match=False))   # pixel match: below
    never._model.threshold.fill_(1.01)
    assert never.similar(entry_of(img), reds[0], lambda f, m: None) == []


def test_learned_verifier_area_gate():
    """SimilarSettings.learned_min_ratio / learned_max_ratio: off by default (the score as the model
    gives it); on, a candidate whose area / the query's area lies outside scores 0, inside unchanged."""
    from dataclasses import replace
    torch.manual_seed(0)
    model = PairVerifier()
    img, reds, _ = disc_image(RED, BLUE)
    mm = sim.encode(ColourBackbone(), img, 320)
    q, c = sim.describe(mm, img, reds[0]), sim.describe(mm, img, reds[1])
    free = sim.LearnedVerifier(model).score(q, c)
    assert free > 0.0
    gated = replace(sim.SimilarSettings(), learned_min_ratio=0.3, learned_max_ratio=2.0)
    assert sim.LearnedVerifier(model, settings=gated).score(q, c) == free
    assert sim.LearnedVerifier(model, settings=gated).score(q, c._replace(area=q.area * 0.2)) == 0.0
    assert sim.LearnedVerifier(model, settings=gated).score(q, c._replace(area=q.area * 2.5)) == 0.0
    assert sim.LearnedVerifier(model).score(q, c._replace(area=q.area * 0.2)) > 0.0
    eng = PvmEngine(backbone=ColourBackbone(), model=model, segmenter=None, settings=gated)
    assert eng.verifier().min_ratio == 0.3 and eng.verifier().max_ratio == 2.0


def test_shipped_format_roundtrip(tmp_path: Path):
    """backbone.* (float16) + pvm.* in one file, loaded with weights_only=True and strict keys."""
    torch.manual_seed(0)
    sd = {f"backbone.{k}": v.half() if v.is_floating_point() else v for k, v in Lite0().state_dict().items()}
    pvm = PairVerifier()
    pvm.threshold.fill_(0.37)
    sd.update({f"pvm.{k}": v for k, v in pvm.state_dict().items()})
    path = tmp_path / "similar-lite0.pt"
    torch.save(sd, path)
    weights.write_sha256(path)
    assert isinstance(weights.load("similar-backbone", path), Lite0)
    assert abs(float(weights.load("pvm", path).threshold) - 0.37) < 1e-6


def test_bench_metric_counts_half_covered_instances():
    from bench.similar import score_scene
    from backend.training.synth import Scene
    img, reds, blues = disc_image(RED, BLUE)
    scene = Scene(img, reds + blues, [0, 0, 0, 0, 1])

    def found_of(mask: np.ndarray) -> Found:
        x0, y0, x1, y1 = mask_box(mask)
        return Found((x0, y0, x1 - x0, y1 - y0), mask[y0:y1, x0:x1], 1.0)
    half = reds[2].copy()
    half[:, :RED[2][0] + 4] = False                       # covers < 50 % of the third copy
    # the query's own copy (parts its seed left out) is neither a find nor a mistake
    r = score_scene(scene, 0, [found_of(reds[1]), found_of(half), found_of(blues[0]), found_of(reds[0])])
    assert r["targets"] == 3 and r["found"] == 1 and r["returned"] == 3 and r["correct"] == 2
    assert r["others"] == 1 and r["other_hits"] == 1


def test_bench_paired_report_gives_pixel_precision_with_a_bootstrap_error(capsys):
    from bench.common import paired_ratio
    from bench.similar import print_paired
    row = {"targets": 4, "found": 2, "other_hits": 0, "lookalike_hits": 0, "returned": 2, "correct": 2}
    a = [dict(row, pix_tp=90.0, pix_ret=100.0), dict(row, pix_tp=40.0, pix_ret=50.0)]
    b = [dict(row, pix_tp=95.0, pix_ret=100.0), dict(row, pix_tp=45.0, pix_ret=50.0)]
    d, se = paired_ratio([r["pix_tp"] for r in a], [r["pix_ret"] for r in a],
                         [r["pix_tp"] for r in b], [r["pix_ret"] for r in b])
    assert abs(d - (140 / 150 - 130 / 150)) < 1e-12 and 0.0 <= se < 0.05   # pooled over scenes, not a mean of ratios
    one = paired_ratio([1.0], [2.0], [1.0], [2.0])                      # one scene: no error to give
    assert one[0] == 0.0 and np.isnan(one[1])
    print_paired({"base": a, "new": b}, ["base", "new"])
    assert f"pixel precision {d:+.4f} (bootstrap s.e. {se:.4f}) over 2 scenes" in capsys.readouterr().out


SHIPPED = Path(__file__).resolve().parents[2] / "backend" / "weights" / "similar-lite0.pt"


@pytest.mark.skipif(not SHIPPED.exists(), reason="backend/weights/similar-lite0.pt not built (docs/similar.md)")
def test_shipped_weights_checksum_size_and_discs():
    from tests.conftest import disc_centres, scene
    assert weights.usable(SHIPPED) and SHIPPED.stat().st_size <= 30 * 2 ** 20
    model = weights.load("pvm", SHIPPED)
    assert 0.0 < float(model.threshold) < 1.0
    engine = PvmEngine(segmenter=None)
    assert engine.status() == "ready"
    px = scene(seed=3)
    x, y = disc_centres(320, 240)[0]
    yy, xx = np.mgrid[:240, :320]
    seed = (xx - x) ** 2 + (yy - y) ** 2 <= 18 ** 2
    found = engine.similar(ImageEntry("d", px, np.ascontiguousarray(px[..., :3])), seed, lambda f, m: None)
    assert len(found) == 3
    for cx, cy in disc_centres(320, 240)[1:]:
        assert any(f.box[0] <= cx < f.box[0] + f.box[2] and f.box[1] <= cy < f.box[1] + f.box[3] for f in found)


def test_min_score_replaces_the_engines_threshold():
    img, reds, _ = disc_image(RED, BLUE)
    torch.manual_seed(0)
    strict = PvmEngine(backbone=ColourBackbone(), model=PairVerifier(), segmenter=None,
                       settings=sim.SimilarSettings(pixel_match=False))
    strict._model.threshold.fill_(1.01)                  # accepts nothing by itself
    assert strict.similar(entry_of(img), reds[0], lambda f, m: None) == []
    assert len(strict.similar(entry_of(img), reds[0], lambda f, m: None, min_score=0.0)) >= 3
    assert strict._model.threshold.item() > 1.0          # the shipped threshold is left as it was
    loose = PvmEngine(backbone=ColourBackbone(), model=PairVerifier(), segmenter=None)
    loose._model.threshold.fill_(0.0)
    assert len(loose.similar(entry_of(img), reds[0], lambda f, m: None)) >= 3
    assert loose.similar(entry_of(img), reds[0], lambda f, m: None, min_score=1.0) == []
    # pixel match: identical discs the verifier rejects count as just likely enough (the engine's own threshold)
    unsure = PvmEngine(backbone=ColourBackbone(), model=PairVerifier(), segmenter=None)
    unsure._model.threshold.fill_(0.999)
    found = unsure.similar(entry_of(img), reds[0], lambda f, m: None)
    assert len(found) >= 3 and all(f.score == pytest.approx(0.999) for f in found)
    assert unsure.similar(entry_of(img), reds[0], lambda f, m: None, min_score=1.0) == []
    assert len(unsure.similar(entry_of(img), reds[0], lambda f, m: None, min_score=0.5)) >= 3


def test_min_score_through_the_pipeline_and_its_bounds():
    from backend.engines.classic import ClassicEngine
    from backend.requests import OPERATIONS, Requests
    from simpson_client.protocol import ProtocolError
    img, reds, _ = disc_image(RED, BLUE)
    classic = ClassicEngine()
    found = classic.similar(entry_of(img), reds[0], lambda f, m: None)
    assert len(found) >= 3
    for cut in (max(f.score for f in found), min(1.0, max(f.score for f in found) + 1e-3)):
        kept = classic.similar(entry_of(img), reds[0], lambda f, m: None, min_score=cut)
        assert [f.score for f in kept] == [f.score for f in found if f.score >= cut]
    assert not kept                                      # above the best score: nothing
    p = Pipeline()
    entry = p.entry(np.dstack([img, np.full(img.shape[:2], 255, np.uint8)]))
    seed = (reds[0] * 255).astype(np.uint8)
    _, inst, _ = p.similar(entry, [], seed, "classic", min_score=1.0)
    assert len(inst) == 1                                 # the seed alone
    for bad in (-0.1, 1.5, "high", True, float("nan")):
        with pytest.raises(ProtocolError) as e:
            OPERATIONS["similar"](Requests(p), {"op": "similar", "min_score": bad}, [], lambda f, m: None)
        assert e.value.code == "bad_request"


def test_pvm_files_say_how_many_pair_features_they_read(tmp_path: Path):
    """A verifier trained before issue 23 reads the first 10 pair features, a newer one all 13;
    each file builds the model it was trained as (strict keys)."""
    from backend.models.pvm import N_SCALARS, N_SCALARS_V1, pair_scalars, split_row
    torch.manual_seed(0)
    rows = torch.rand(4, ROW)
    assert pair_scalars(split_row(rows), split_row(rows)).shape == (4, N_SCALARS)
    for n in (N_SCALARS_V1, N_SCALARS):
        sd = {f"backbone.{k}": v.half() if v.is_floating_point() else v for k, v in Lite0().state_dict().items()}
        sd.update({f"pvm.{k}": v for k, v in PairVerifier(scalars=n).state_dict().items()})
        path = tmp_path / f"similar-{n}.pt"
        torch.save(sd, path)
        weights.write_sha256(path)
        model = weights.load("pvm", path)
        assert model.n_scalars == n and model(rows, rows)[0].shape == (4,)


def test_lite0_features_in_strips_are_the_whole_images():
    """Issue 26: a large select-similar encoding runs its high-resolution blocks in strips; the
    maps it uses are bit for bit those of the whole image, strips and image edges included."""
    torch.manual_seed(0)
    model = Lite0().eval()
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    x = torch.rand(1, 3, 416, 96) * 255
    threads = torch.get_num_threads()
    with torch.inference_mode():
        whole = model(x)
        for strip in (64, 96, 160):     # several threads split the work by size: float rounding only
            got = model.features(x, ("s8", "s16"), strip)
            assert set(got) == {"s8", "s16"}
            for k in ("s8", "s16"):
                assert torch.allclose(got[k], whole[k], rtol=0, atol=1e-5), (strip, k)
        torch.set_num_threads(1)        # one thread: bit for bit
        try:
            whole = model(x)
            for strip in (64, 96, 160):
                got = model.features(x, ("s8", "s16"), strip)
                assert torch.equal(got["s8"], whole["s8"]) and torch.equal(got["s16"], whole["s16"])
        finally:
            torch.set_num_threads(threads)
        with pytest.raises(ValueError):
            model.features(x, ("s4", "s8"))


def test_training_pairs_add_background_blobs_most_like_the_query():
    """similar_data --background K: the background places most like the query (a reddish patch
    that is no object), segmented as proposals are, become negatives (source 3); K = 0 adds none."""
    from backend.training.similar_data import SOURCES, background_clicks, scene_pairs
    from backend.training.synth import Scene
    from backend.similar.loop import Query
    img, reds, blues = disc_image(RED, BLUE)
    cv2.rectangle(img, (150, 150), (180, 215), (230, 60, 30), -1)      # a red-ish blob of background
    patch = np.zeros(img.shape[:2], bool)
    patch[150:216, 150:181] = True
    scene = Scene(img, reds + blues, [0] * len(reds) + [1])
    bb, settings = ColourBackbone(), sim.SimilarSettings()
    engine = FeaturesEngine(backbone=bb, segmenter=None)
    mm = sim.encode(bb, img, sim.encode_side(*img.shape[:2], reds[0]))
    objects = np.any(np.stack(reds + blues), 0)
    clicks = background_clicks(mm, Query.of(img, reds[0], mm, pieces=False), objects, 2)
    assert clicks and all(not objects[int(y), int(x)] for x, y, _ in clicks)
    assert patch[int(clicks[0][1]), int(clicks[0][0])]                # the best one is on the blob
    plain = scene_pairs(scene, np.random.default_rng(0), bb, settings, False, engine, 0)
    more = scene_pairs(scene, np.random.default_rng(0), bb, settings, False, engine, 2)
    assert all(src != SOURCES["background"] for *_, src, _ in plain)
    blobs = [(c, lab) for _, c, lab, src, _ in more if src == SOURCES["background"]]
    assert blobs and all(lab == 0 for _, lab in blobs)
    x, y, w, h = blobs[0][0].box
    assert patch[int(y + h / 2), int(x + w / 2)]                       # segmented on the blob
    assert [(lab, src) for _, _, lab, src, _ in plain] == [(lab, src) for _, _, lab, src, _ in more
                                                            if src != SOURCES["background"]]
