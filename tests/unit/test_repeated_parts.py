"""Select similar's repeated parts (backend/similar/repeated_parts.py): what the query's mask left
out of an object, found because it lies beside every copy."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from backend import similar as sim
from backend.similar import repeated_parts as rp

H, W = 640, 900
PLACES = [(150, 140), (450, 130), (750, 160), (170, 470), (470, 480), (760, 450)]


def template(with_piece: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 120-px object: a blue ellipse (the piece a click selects) and, beside it past a gap, an
    orange square with a dark stripe (the piece it leaves out). (rgb, ellipse mask, square mask)."""
    rgb = np.zeros((120, 120, 3), np.uint8)
    a = np.zeros((120, 120), np.uint8)
    b = np.zeros((120, 120), np.uint8)
    cv2.ellipse(a, (42, 60), (26, 15), 0, 0, 360, 1, -1)
    rgb[a > 0] = (40, 70, 200)
    if with_piece:
        b[50:72, 84:104] = 1
        rgb[b > 0] = (240, 150, 30)
        rgb[58:63, 84:104] = (90, 40, 20)
    return rgb, a > 0, b > 0


def scene(with_piece: bool, background: str, seed: int = 0):
    """A photo with the object at PLACES, each turned (±40°), scaled (±15 %) and re-lit (±15 %):
    (rgb, the ellipses' masks, the squares' masks, the turns)."""
    rng = np.random.default_rng(seed)
    if background == "texture":
        noise = rng.integers(0, 255, (H // 6, W // 6, 3)).astype(np.uint8)       # leaves, gravel
        img = cv2.resize(noise, (W, H), interpolation=cv2.INTER_CUBIC)
    else:
        img = np.full((H, W, 3), (150, 160, 150), np.uint8)
    rgb, a, b = template(with_piece)
    pieces, rest, angles = [], [], []
    for cx, cy in PLACES:
        angles.append(rng.uniform(-40, 40))
        m = cv2.getRotationMatrix2D((60, 60), angles[-1], rng.uniform(0.85, 1.15))
        m[:, 2] += (cx - 60, cy - 60)
        obj = cv2.warpAffine(rgb, m, (W, H), flags=cv2.INTER_LINEAR)
        ma = cv2.warpAffine(a.astype(np.uint8), m, (W, H), flags=cv2.INTER_NEAREST) > 0
        mb = cv2.warpAffine(b.astype(np.uint8), m, (W, H), flags=cv2.INTER_NEAREST) > 0
        gain = rng.uniform(0.85, 1.15)
        on = ma | mb
        img[on] = np.clip(obj[on] * gain, 0, 255).astype(np.uint8)
        pieces.append(ma)
        rest.append(mb)
    return img, pieces, rest, angles


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return (a & b).sum() / max((a | b).sum(), 1)


def run(img: np.ndarray, pieces: list[np.ndarray], segment=None):
    query = sim.as_patch(pieces[0])
    copies = [sim.as_patch(m) for m in pieces[1:]]
    taken = np.logical_or.reduce(pieces)
    return rp.complete_copies(img, query, copies, taken, segment)


def test_the_piece_beside_every_copy_is_added_to_each_and_to_the_query():
    img, pieces, rest, _ = scene(True, "texture")
    own, grown = run(img, pieces)
    assert own is not None and iou(own.full(H, W), rest[0]) > 0.6
    for g, a, b in zip(grown, pieces[1:], rest[1:]):
        full = g.full(H, W)
        assert (full & b).sum() >= 0.7 * b.sum()             # its own square, placed by its own pose
        assert (full & a).sum() == a.sum()                    # the piece it had is kept
        assert (full & ~(a | b)).sum() <= 0.25 * b.sum()      # and little else


@pytest.mark.parametrize("background", ["texture", "plain"])
def test_an_object_in_one_piece_gets_nothing(background: str):
    img, pieces, _, _ = scene(False, background)
    own, grown = run(img, pieces)
    assert own is None
    assert all(g.area == sim.as_patch(m).area for g, m in zip(grown, pieces[1:]))


def test_too_few_copies_compare_nothing():
    img, pieces, _, _ = scene(True, "texture")
    own, grown = run(img, pieces[:rp.MIN_COPIES])
    assert own is None and len(grown) == rp.MIN_COPIES - 1


def test_the_poses_fit_the_turns():
    img, pieces, _, angles = scene(True, "texture", seed=3)
    for k in (1, 2, 3):
        pose = rp.fit_pose(img, sim.as_patch(pieces[0]), sim.as_patch(pieces[k]))
        turn = (angles[k] - angles[0] - pose.angle + 180) % 360 - 180
        assert abs(turn) <= rp.ANGLE_STEP


def test_the_one_click_mask_of_a_part_is_used_when_it_agrees_with_the_placed_part():
    img, pieces, rest, _ = scene(True, "texture")
    placed = sim.as_patch(rest[1])
    taken = np.zeros((H, W), bool)
    calls = []

    def exact(x, y, template, more=()):
        calls.append((x, y))
        return sim.as_patch(rest[1])

    def background(x, y, template, more=()):
        return sim.MaskPatch(0, 0, np.ones((H, W), bool))   # a click that took the whole photo
    got = rp.segment_parts(placed, taken, exact, 100)
    assert calls and placed.covers(*calls[0]) and iou(got.full(H, W), rest[1]) == 1.0
    got = rp.segment_parts(placed, taken, background, 100)
    assert iou(got.full(H, W), rest[1]) == 1.0                # the placed part, not the background


def test_parts_of_the_seed_join_the_first_instance_through_the_pipeline():
    from backend import engines
    from backend.cache import ImageEntry
    from backend.engines import Found
    from backend.pipeline import Pipeline
    img, pieces, rest, _ = scene(True, "texture")

    class Stub:                      # an engine that found one copy and a part of the seed
        name, ops = "features", ("similar",)

        def status(self):
            return "ready"

        def similar(self, entry, seed, progress, min_score=None):
            out = []
            for m in (pieces[1] | rest[1], rest[0]):
                p = sim.as_patch(m)
                out.append(Found(p.box, p.mask, 0.9, of_seed=m is rest[0]))
            return out
    before = engines._built.get("features")
    engines._built["features"] = Stub()
    try:
        entry = ImageEntry("k", np.dstack([img, np.full((H, W), 255, np.uint8)]), img)
        union, inst, _ = Pipeline().similar(entry, [], (pieces[0] * 255).astype(np.uint8), "features")
    finally:
        engines._built.pop("features", None)
        if before is not None:
            engines._built["features"] = before
    assert len(inst) == 2                                   # the clicked object and one copy
    seed = sim.MaskPatch(inst[0].box[0], inst[0].box[1], inst[0].mask).full(H, W)
    assert (seed == (pieces[0] | rest[0])).all()            # the seed with its left-out part
    assert ((union > 127) == (pieces[0] | rest[0] | pieces[1] | rest[1])).all()


def test_only_parts_the_one_click_model_takes_for_objects_are_kept():
    img, pieces, rest, _ = scene(True, "texture")
    query = sim.as_patch(pieces[0])
    copies = [sim.as_patch(m) for m in pieces[1:]]
    taken = np.logical_or.reduce(pieces)
    parts, nb, _ = rp.find_parts(img, query, copies, taken)
    fr = nb.frame
    assert parts is not None

    def square(x, y, template, more=()):
        return sim.as_patch(rest[0])                         # the click beside the query takes the square

    def wall(x, y, template, more=()):
        return sim.MaskPatch(0, 0, np.ones((H, W), bool))   # it takes the background
    kept = rp.objects_only(parts, fr, taken, square)
    assert kept is not None and iou(rp.place(kept, fr, None, H, W).full(H, W), rest[0]) > 0.6
    assert rp.objects_only(parts, fr, taken, wall) is None
    own, grown = run(img, pieces, wall)
    assert own is None and all(g.area == c.area for g, c in zip(grown, copies))
