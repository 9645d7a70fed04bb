"""The dsn select engine's click semantics (backend/engines/dsn.py), with a segmenter whose
answers are known: which clicks and previous mask reach the model, and how its answer is
combined with the rest of the selection."""
from __future__ import annotations

import numpy as np

from backend.cache import ImageEntry
from backend.engines.dsn import DsnEngine

H, W = 60, 120
A = (slice(10, 30), slice(10, 30))      # object A (20×20)
A_PART = (slice(30, 40), slice(10, 30))  # a part of A the first click misses
B = (slice(10, 30), slice(80, 100))     # object B, far from A


def box(*regions) -> np.ndarray:
    m = np.zeros((H, W), bool)
    for r in regions:
        m[r] = True
    return m


class KnownSegmenter:
    """A click selects the object under it (A without its lower part, or B); with a previous
    mask it answers `refined` and records what it was given."""

    def __init__(self, refined: np.ndarray | None = None):
        self.refined, self.calls = refined, []

    def set_image(self, rgb):
        return "embedding"

    def predict(self, emb, points, prev_mask=None):
        self.calls.append((list(points), None if prev_mask is None else prev_mask > 127))
        if prev_mask is not None:
            return self.refined.astype(np.uint8) * 255
        (x, y, _), = points
        for region in (A, A_PART, B):
            if box(region)[int(y), int(x)]:
                return box(region).astype(np.uint8) * 255
        return np.zeros((H, W), np.uint8)


def run(seg: KnownSegmenter, points, previous=None) -> np.ndarray:
    engine = DsnEngine()
    engine._segmenter = seg
    entry = ImageEntry("t", np.zeros((H, W, 4), np.uint8))
    return engine.select(entry, points, previous, lambda f, m: None)


def test_a_positive_click_on_another_object_adds_it():
    seg = KnownSegmenter()
    out = run(seg, [(20, 20, True), (90, 20, True)], previous=box(A))
    assert np.array_equal(out, box(A, B))
    assert all(prev is None for _, prev in seg.calls)           # no refinement asked for


def test_a_positive_click_on_a_missed_part_refines_that_object_with_its_clicks():
    seg = KnownSegmenter(refined=box(A, A_PART))
    out = run(seg, [(20, 20, True), (90, 20, True), (20, 35, True)], previous=box(A, B))
    assert np.array_equal(out, box(A, A_PART, B))               # B stays selected
    clicks, prev = seg.calls[-1]
    assert np.array_equal(prev, box(A))                         # only the touched object is refined
    assert clicks == [(20, 20, True), (20, 35, True)]           # with the clicks around it, B's left out


def test_a_negative_click_refines_the_object_under_it_and_keeps_the_others():
    refined = box(A)
    refined[10:30, 10:15] = False                               # the model takes off A's left strip
    seg = KnownSegmenter(refined=refined)
    out = run(seg, [(20, 20, True), (90, 20, True), (12, 20, False)], previous=box(A, B))
    assert np.array_equal(out, refined | box(B))
    clicks, prev = seg.calls[-1]
    assert clicks == [(20, 20, True), (12, 20, False)] and np.array_equal(prev, box(A))


def test_clicks_that_agree_with_the_selection_change_nothing():
    seg = KnownSegmenter()
    out = run(seg, [(20, 20, True), (25, 25, True), (60, 50, False)], previous=box(A))
    assert np.array_equal(out, box(A)) and seg.calls == []


def test_a_negative_click_on_an_object_no_click_selected_removes_it():
    seg = KnownSegmenter()
    out = run(seg, [(90, 20, False)], previous=box(A, B))      # e.g. selected with another tool
    assert np.array_equal(out, box(A))


def test_adding_then_removing_on_the_same_spot_removes_the_object():
    seg = KnownSegmenter()
    added = run(seg, [(20, 20, True), (90, 20, True)], previous=box(A))
    out = run(seg, [(20, 20, True), (90, 20, True), (90, 20, False)], previous=added)
    assert np.array_equal(out, box(A))


def test_without_a_previous_mask_the_clicks_apply_one_by_one():
    seg = KnownSegmenter()
    out = run(seg, [(60, 50, False), (20, 20, True), (90, 20, True)])
    assert np.array_equal(out, box(A, B))


def test_a_negative_click_on_a_stray_piece_removes_only_that_piece():
    """The model's object under the click is bigger than the piece (it reaches into A): only the
    piece goes, A (guided by the first click, far away) stays."""
    stray = (slice(45, 50), slice(50, 56))
    seg = KnownSegmenter()
    seg.predict = lambda emb, points, prev_mask=None: box(A, stray).astype(np.uint8) * 255
    out = run(seg, [(20, 20, True), (52, 47, False)], previous=box(A, stray))
    assert np.array_equal(out, box(A))


# A correction click changes the selection where it points (backend/engines/dsn.py: corrected).
OCCLUDER = (slice(12, 28), slice(30, 50))   # a neighbour beside A, not touching its missed part


def test_a_positive_click_does_not_take_a_large_neighbour_away_from_it():
    """The model answers a click on A's missed part with that part and an occluder beside A, far from
    the click: the part is added, the occluder is not."""
    seg = KnownSegmenter(refined=box(A, A_PART, OCCLUDER))
    out = run(seg, [(20, 20, True), (20, 35, True)], previous=box(A))
    assert np.array_equal(out, box(A, A_PART))


def test_a_positive_click_keeps_what_its_own_object_adds_away_from_it():
    """Pixels the model adds away from the click are kept when one click there selects them too (the
    click's own object): here A's missed part reaches the far corner only through the object."""
    seg = KnownSegmenter(refined=box(A, A_PART, OCCLUDER))
    seg_object = box(A_PART, OCCLUDER)
    plain = seg.predict
    seg.predict = lambda emb, points, prev_mask=None: (
        seg_object.astype(np.uint8) * 255 if prev_mask is None and len(points) == 1 and points[0][1] >= 30
        else plain(emb, points, prev_mask))
    out = run(seg, [(20, 20, True), (20, 35, True)], previous=box(A))
    assert np.array_equal(out, box(A, A_PART, OCCLUDER))


def test_a_negative_click_removes_only_at_the_click_and_keeps_the_small_tidying():
    """The model answers a negative click on A's left strip by also dropping A's right half (large,
    away from the click) and one stray pixel by the top edge (small): the strip and the pixel go, the
    right half stays."""
    refined = box(A)
    refined[10:30, 10:13] = False          # the strip under the click
    refined[10:30, 20:30] = False          # half the object, away from the click
    refined[10, 16] = False                # a one-pixel tidy-up
    seg = KnownSegmenter(refined=refined)
    out = run(seg, [(20, 20, True), (11, 20, False)], previous=box(A))
    want = box(A)
    want[10:30, 10:13] = False
    want[10, 16] = False
    assert np.array_equal(out, want)


def test_a_positive_click_keeps_small_changes_away_from_it_and_not_large_removals():
    refined = box(A, A_PART)
    refined[10:20, 10:30] = False          # the top half of A: large, away from the click
    refined[29, 29] = False                # one pixel: small
    seg = KnownSegmenter(refined=refined)
    out = run(seg, [(20, 20, True), (20, 35, True)], previous=box(A))
    want = box(A, A_PART)
    want[29, 29] = False
    assert np.array_equal(out, want)


def test_where_the_clicks_own_object_misses_it_the_region_at_the_click_is_added():
    """One click at the spot selects a sliver beside it (the model's object misses the clicked
    pixel): what the refinement adds at the click is kept, the neighbour away from it is not."""
    seg = KnownSegmenter(refined=box(A, A_PART, OCCLUDER))
    sliver = box((slice(30, 40), slice(10, 15)))
    plain = seg.predict
    seg.predict = lambda emb, points, prev_mask=None: (
        sliver.astype(np.uint8) * 255 if prev_mask is None and len(points) == 1 and points[0][1] >= 30
        else plain(emb, points, prev_mask))
    out = run(seg, [(20, 20, True), (20, 35, True)], previous=box(A))
    assert np.array_equal(out, box(A, A_PART))


# A negative click in a hole or gap the mask filled removes that, not the piece around it (_like_click).
ORANGE, GREEN, SKY = (230, 120, 20), (40, 170, 60), (120, 180, 250)


def picture(*fills) -> np.ndarray:
    """A sky-coloured RGBA image with (region, colour) fills, in order."""
    img = np.zeros((H, W, 4), np.uint8)
    img[..., :3], img[..., 3] = SKY, 255
    for region, colour in fills:
        img[region + (slice(0, 3),)] = colour
    return img


def run_on(seg: KnownSegmenter, pixels: np.ndarray, points, previous) -> np.ndarray:
    engine = DsnEngine()
    engine._segmenter = seg
    return engine.select(ImageEntry("t", pixels), points, previous, lambda f, m: None)


HOLE = (slice(18, 22), slice(22, 26))        # sky showing through A


def test_a_negative_click_in_a_hole_the_mask_filled_removes_the_hole_not_the_piece():
    """The model answers a negative click in the hole by dropping A's right half around it: only the
    pixels of the hole's colour joined to the click go."""
    refined = box(A)
    refined[10:30, 16:30] = False
    seg = KnownSegmenter(refined=refined)
    pixels = picture((A, ORANGE), (HOLE, SKY))
    out = run_on(seg, pixels, [(12, 12, True), (24, 20, False)], previous=box(A))
    assert np.array_equal(out, box(A) & ~box(HOLE))


def test_a_negative_click_on_a_neighbour_the_mask_took_removes_all_of_it():
    """The click has the colour of what the model removes (a green neighbour taken with A): all of it goes."""
    neighbour = (slice(10, 30), slice(30, 40))
    seg = KnownSegmenter(refined=box(A))
    pixels = picture((A, ORANGE), (neighbour, GREEN))
    out = run_on(seg, pixels, [(12, 12, True), (35, 20, False)], previous=box(A, neighbour))
    assert np.array_equal(out, box(A))


def test_a_negative_click_in_a_hole_of_an_unguided_piece_removes_the_hole():
    """B was selected without a click on it; a negative click in a hole of B takes out the hole, not B."""
    b_hole = (slice(18, 22), slice(88, 92))
    seg = KnownSegmenter()
    pixels = picture((A, ORANGE), (B, GREEN), (b_hole, SKY))
    out = run_on(seg, pixels, [(20, 20, True), (90, 20, False)], previous=box(A, B))
    assert np.array_equal(out, box(A, B) & ~box(b_hole))


def test_a_correction_computed_in_boxes_is_the_one_computed_on_the_whole_image():
    """The engine works in the boxes of the corrected object and of the model's answer (a 12-MP photo's
    masks are 12 M pixels): on random answers, clicks and colours it gives what `corrected` gives on the
    whole image, with the rest of the selection (B) untouched."""
    from backend.engines.dsn import AWAY_SHARE, HOLE_SHARE, corrected
    rng = np.random.default_rng(0)
    for trial in range(60):
        refined = box(A)
        for _ in range(int(rng.integers(1, 4))):     # blobs the model adds or drops, some far from A
            y, x = int(rng.integers(0, H - 6)), int(rng.integers(0, W - 6))
            refined[y:y + int(rng.integers(2, 12)), x:x + int(rng.integers(2, 12))] = bool(rng.integers(2))
        refined[box(B)] = False
        pixels = picture((A, ORANGE), (B, GREEN))
        pixels[..., :3] = np.where(rng.random((H, W, 1)) < 0.2, SKY, pixels[..., :3])
        if trial % 2:
            click = (float(rng.integers(11, 29)) + 0.5, float(rng.integers(31, 39)) + 0.5, True)   # on A's missed part
            obj = box(A_PART)
        else:
            click = (float(rng.integers(17, 29)) + 0.5, float(rng.integers(17, 29)) + 0.5, False)  # inside A, away from the first
            obj = None
        out = run_on(KnownSegmenter(refined=refined), pixels, [(12.5, 12.5, True), click], previous=box(A, B))
        want = box(B) | corrected(box(A), refined, click, obj, AWAY_SHARE, pixels[..., :3], HOLE_SHARE)
        assert np.array_equal(out, want), trial
