"""backend/training/engine_pairs.py: the engine's own candidates captured and labelled by the
ground truth, on test_similar's disc scenes (an ideal one-click model segments)."""
from __future__ import annotations

import numpy as np

from backend import similar as sim
from backend.training.engine_pairs import Capture, capturing, label_patch
from backend.training.similar_data import label
from tests.unit.test_similar import BLUE, RED, ColourBackbone, disc_image


def box(m: np.ndarray) -> tuple[int, int, int, int]:
    return sim.as_patch(m).box


class Nobody:
    """An inner verifier that rejects everything (scores 0.2 against a threshold of 0.9)."""
    threshold = 0.9

    def score(self, q: sim.Descriptor, c: sim.Descriptor) -> float:
        return 0.2


def test_label_patch_is_similar_data_label_on_the_full_mask():
    rng = np.random.default_rng(3)
    targets, others = rng.random((60, 80)) < 0.4, np.zeros((60, 80), bool)
    others[:, 50:] = True
    targets &= ~others
    seen = set()
    for _ in range(200):
        x, y = int(rng.integers(0, 70)), int(rng.integers(0, 50))
        w, h = int(rng.integers(1, 80 - x)), int(rng.integers(1, 60 - y))
        m = rng.random((h, w)) < rng.random()
        if not m.any():
            continue
        patch = sim.MaskPatch(x, y, m)
        want = label(patch.full(60, 80), targets, others)
        assert label_patch(patch, targets, others) == want
        seen.add(want)
    assert seen == {-1, 0, 1}


def run(oracle: bool) -> tuple[sim.Result, Capture, list[np.ndarray]]:
    img, reds, blues = disc_image(RED, BLUE)
    mm = sim.encode(ColourBackbone(), img, 320)
    settings = sim.SimilarSettings(pixel_match=False)    # the verifier alone decides (identical discs: test_pixel_match)

    def segment(x: float, y: float, template: sim.MaskPatch, more: tuple = ()) -> sim.MaskPatch:
        hit = [m for m in reds + blues if m[int(y), int(x)]]
        return sim.as_patch(hit[0] if hit else np.zeros(img.shape[:2], bool))

    targets = np.any(reds[1:3], axis=0)           # the last red disc counts as another kind of object
    patches: dict = {}
    cap = Capture(Nobody(), targets, np.any(reds[3:] + blues, axis=0), oracle=oracle, patches=patches)
    with capturing(patches):
        res = sim.find_similar(img, reds[0], mm, segment, cap, settings, cpn=None, align_clicks=False)
    return res, cap, reds


def test_capture_labels_every_scored_candidate_and_the_oracle_accepts_the_copies():
    res, cap, reds = run(oracle=True)
    assert len(cap.rows) == len(res.accepted) + len(res.rejected)
    # two copies and the red disc of "another kind" (proposed twice: the engine scores it again)
    assert {(r[1].box, r[2]) for r in cap.rows} == {(box(reds[1]), 1), (box(reds[2]), 1), (box(reds[3]), 0)}
    assert all(r[3] == 0.2 and not r[4] for r in cap.rows)  # the inner verifier's score and verdict kept
    found = [c.patch.full(*reds[0].shape) for c in res.accepted]
    assert len(found) == 2 and all(any((f & r).sum() == r.sum() for f in found) for r in reds[1:3])
    assert res.rejected and all((c.patch.full(*reds[0].shape) == reds[3]).all() for c in res.rejected)
    for q, c, lab, _s, _ok in cap.rows:       # the rows are the loop's own descriptors
        assert q.area == reds[0].sum() and c.area > 0


def test_without_the_oracle_the_inner_verifier_decides():
    res, cap, reds = run(oracle=False)
    assert not res.accepted and len(res.rejected) == len(cap.rows) > 0
    assert {(r[1].box, r[2]) for r in cap.rows} == {(box(reds[1]), 1), (box(reds[2]), 1), (box(reds[3]), 0)}


def test_every_described_object_is_kept_once_with_the_object_it_lies_on():
    """engine_pairs --candidates: the query and each scored candidate, labelled by the scene's
    group and instance it lies on (the queried copy counts: it is an instance of group 0)."""
    from backend.training.engine_pairs import candidate_rows

    res, cap, reds = run(oracle=True)
    img, _, blues = disc_image(RED, BLUE)
    scene = type("Scene", (), {"masks": reds[:3] + reds[3:] + blues,
                               "groups": [0, 0, 0] + [1] * len(reds[3:]) + [2] * len(blues)})()
    rows = candidate_rows(cap.rows, cap.patches, scene)
    query = [r for r in rows if r[5]]
    assert len(query) == 1 and query[0][1:3] == (0, 0) and query[0][0].area == reds[0].sum()
    cands = {(r[0].box, r[1], r[2]) for r in rows if not r[5]}
    assert cands == {(box(reds[1]), 0, 1), (box(reds[2]), 0, 2), (box(reds[3]), 1, 3)}
    assert all(r[3] == 0.2 and not r[4] for r in rows if not r[5])    # the inner verifier's score and verdict


def test_pairs_among_candidates_label_copies_and_look_alikes():
    """group_pairs.scene_pairs: two instances of one group are positive (both orders), a copy against a
    look-alike or a blob negative, two candidates on one instance and two blobs are left out; the
    negatives with a copy come first when a scene has more pairs than the cap."""
    from backend.training.group_pairs import BACKGROUND, scene_pairs

    group = np.array([0, 0, 0, 1, 1, BACKGROUND, BACKGROUND, -1, 2])
    inst = np.array([0, 1, 1, 4, 5, -1, -1, -1, 6])
    pairs = scene_pairs(group, inst, np.random.default_rng(0), cap=1000)
    got = {(i, j): y for i, j, y in pairs}
    assert len(got) == len(pairs)
    assert got[(0, 1)] == got[(1, 0)] == got[(0, 2)] == got[(3, 4)] == 1
    assert (1, 2) not in got and (5, 6) not in got and not any(7 in p for p in got)
    assert got[(0, 3)] == got[(3, 0)] == got[(1, 5)] == got[(3, 8)] == got[(8, 5)] == 0
    few = scene_pairs(group, inst, np.random.default_rng(0), cap=10)
    assert len(few) == 10
    assert sum(1 for i, j, y in few if y == 0 and 0 in (group[i], group[j])) == 5
