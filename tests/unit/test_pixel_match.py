"""Pixel match (backend/similar/pixel_match.py): a rejected candidate that is the query's own pixels
turned, scaled and re-lit is a copy; the same drawing recoloured, or another object in the query's
colours, is not."""
from dataclasses import replace

import cv2
import numpy as np

from backend import similar as sim
from backend.similar.pixel_match import pixel_match, rescues


def drawing() -> tuple[np.ndarray, np.ndarray]:
    """An asymmetric object (rgb, mask): a body with stripes, a nose and a dark eye."""
    rgb = np.zeros((90, 120, 3), np.uint8)
    mask = np.zeros((90, 120), np.uint8)
    cv2.ellipse(mask, (55, 45), (45, 28), 0, 0, 360, 1, -1)
    cv2.fillPoly(mask, [np.array([[95, 35], [118, 45], [95, 55]])], 1)
    rgb[:] = (200, 120, 40)
    for x in range(15, 100, 16):
        cv2.line(rgb, (x, 0), (x - 10, 89), (90, 160, 210), 4)
    cv2.circle(rgb, (80, 38), 6, (20, 20, 20), -1)
    cv2.fillPoly(rgb, [np.array([[95, 35], [118, 45], [95, 55]])], (230, 210, 60))
    return rgb, mask.astype(bool)


def placed(canvas: np.ndarray, rgb: np.ndarray, mask: np.ndarray, cx: float, cy: float, angle: float,
           scale: float, gain: float) -> sim.MaskPatch:
    """The object turned, scaled and re-lit, pasted with its centre at (cx, cy); its mask as a patch."""
    h, w = mask.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    m[:, 2] += (cx - w / 2, cy - h / 2)
    H, W = canvas.shape[:2]
    obj = cv2.warpAffine(rgb, m, (W, H), flags=cv2.INTER_LINEAR).astype(np.float32) * gain
    full = cv2.warpAffine(mask.astype(np.uint8), m, (W, H), flags=cv2.INTER_NEAREST) > 0
    canvas[full] = obj[full].clip(0, 255).astype(np.uint8)
    return sim.as_patch(full)


def scene():
    rng = np.random.default_rng(3)
    canvas = cv2.GaussianBlur(rng.integers(60, 190, (600, 800, 3), dtype=np.uint8), (0, 0), 3)
    rgb, mask = drawing()
    query = placed(canvas, rgb, mask, 150, 150, 0, 1.0, 1.0)
    copy = placed(canvas, rgb, mask, 450, 160, 40, 0.8, 0.8)
    recoloured = placed(canvas, rgb[:, :, ::-1].copy(), mask, 650, 420, -30, 1.0, 1.0)
    other = np.zeros_like(mask)
    cv2.ellipse(other.view(np.uint8), (60, 45), (40, 32), 0, 0, 360, 1, -1)
    disc = placed(canvas, np.full_like(rgb, (200, 120, 40)), other, 250, 450, 0, 1.0, 1.0)
    return canvas, query, copy, recoloured, disc


def test_a_turned_scaled_relit_copy_matches_the_query():
    canvas, query, copy, _, _ = scene()
    m = pixel_match(canvas, query, copy)
    assert m is not None
    assert m.likeness > 0.85 and m.agreement > sim.SimilarSettings().pixel_min_agreement and m.shape_iou > 0.7
    assert rescues(canvas, query, copy, 0.2, sim.SimilarSettings())


def test_the_drawing_recoloured_and_another_object_in_its_colour_are_not_copies():
    canvas, query, _, recoloured, disc = scene()
    s = sim.SimilarSettings()
    m = pixel_match(canvas, query, recoloured)
    assert m is not None and m.shape_iou > 0.9 and m.agreement < s.pixel_min_agreement / 4   # its shape, other colours
    assert not rescues(canvas, query, recoloured, 0.2, s)
    assert not rescues(canvas, query, disc, 0.2, s)


def test_a_copy_is_not_rescued_when_switched_off_dismissed_or_outside_the_area_gate():
    canvas, query, copy, _, _ = scene()
    s = sim.SimilarSettings()
    assert not rescues(canvas, query, copy, 0.2, replace(s, pixel_match=False))
    assert not rescues(canvas, query, copy, s.pixel_min_score / 2, s)          # the verifier dismissed it outright
    assert not rescues(canvas, query, copy, 0.2, replace(s, big_photo_min_ratio=0.9))   # 0.64 of the query's area


class Unsure:
    """A verifier that rejects everything, though not outright (score 0.2 under its threshold 0.5)."""
    threshold = 0.5

    def score(self, query: sim.Descriptor, cand: sim.Descriptor) -> float:
        return 0.2


def test_find_similar_accepts_the_copy_the_verifier_rejected_and_not_the_recoloured_drawing():
    from tests.unit.test_similar import ColourBackbone
    canvas, query, copy, recoloured, disc = scene()
    H, W = canvas.shape[:2]
    objects = [p.full(H, W) for p in (query, copy, recoloured, disc)]
    clicked = []

    def segment(x: float, y: float, template: sim.MaskPatch, more: tuple = ()) -> sim.MaskPatch:   # an ideal one-click model
        clicked.append((x, y))
        hit = [m for m in objects if m[int(y), int(x)]]
        return sim.as_patch(hit[0] if hit else np.zeros((H, W), bool))

    mm = sim.encode(ColourBackbone(), canvas, 800)
    s = sim.SimilarSettings()
    for settings, want in ((s, [copy]), (replace(s, pixel_match=False), [])):
        res = sim.find_similar(canvas, objects[0], mm, segment, Unsure(), settings, cpn=None, align_clicks=False)
        got = [c.patch.full(H, W) for c in res.accepted]
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert (g & w.full(H, W)).sum() > 0.9 * w.area
    assert any(recoloured.full(H, W)[int(y), int(x)] or disc.full(H, W)[int(y), int(x)] for x, y in clicked)


def test_a_copy_lit_brighter_on_one_side_agrees_under_one_light_and_the_recoloured_drawing_does_not():
    """Shading across the object (40 % brighter on one side than the other) is one light: a gain the
    same on the three channels that varies across the object; it costs the copy no agreement."""
    canvas, query, copy, recoloured, _ = scene()
    s = sim.SimilarSettings()
    flat = pixel_match(canvas, query, copy)
    H, W = canvas.shape[:2]
    xx = np.mgrid[:H, :W][1].astype(np.float32)
    for p in (copy, recoloured):
        box = p.full(H, W)
        ramp = 0.8 + 0.4 * (xx - p.x) / max(p.mask.shape[1], 1)
        canvas[box] = (canvas[box] * ramp[box][:, None]).clip(0, 255).astype(np.uint8)
    m = pixel_match(canvas, query, copy)
    assert flat is not None and m is not None and m.likeness > s.pixel_min_likeness
    assert m.agreement >= flat.agreement - 0.02 and m.agreement > s.pixel_min_agreement
    assert rescues(canvas, query, copy, 0.2, s)
    assert not rescues(canvas, query, recoloured, 0.2, s)


def test_a_copy_whose_mask_is_the_part_that_shows_is_rescued_by_lying_inside_the_querys_shape():
    """A copy partly hidden (its mask the right 62 % that shows) overlaps the query's placed mask by little, but
    lies inside it: on a big photo (hidden=True) the shape test takes that (pixel_hidden_min_shape with
    pixel_min_inside); elsewhere it asks the whole overlap (pixel_min_shape)."""
    canvas, query, copy, _, disc = scene()
    H, W = canvas.shape[:2]
    full = copy.full(H, W)
    ys, xs = np.nonzero(full)
    shows = full & (np.arange(W)[None, :] > np.percentile(xs, 38))
    part = sim.as_patch(shows)
    s = sim.SimilarSettings()
    m = pixel_match(canvas, query, part)
    assert m is not None and s.pixel_hidden_min_shape < m.shape_iou < s.pixel_min_shape and m.inside > 0.9
    assert rescues(canvas, query, part, 0.2, s, hidden=True)
    assert not rescues(canvas, query, part, 0.2, s)
    assert not rescues(canvas, query, part, 0.2, replace(s, pixel_min_inside=1.01), hidden=True)
    assert not rescues(canvas, query, disc, 0.2, s, hidden=True)


def test_find_similar_takes_the_hidden_copy_only_where_asked():
    """find_similar(..., hidden_copies=True) (the engine: a photo larger than MAX_SIDE) takes a copy whose
    segmented mask is the part that shows; without it (a small photo) the whole overlap is asked."""
    from tests.unit.test_similar import ColourBackbone
    canvas, query, copy, _, _ = scene()
    H, W = canvas.shape[:2]
    full = copy.full(H, W)
    shows = full & (np.arange(W)[None, :] > np.percentile(np.nonzero(full)[1], 38))

    def segment(x: float, y: float, template: sim.MaskPatch, more: tuple = ()) -> sim.MaskPatch:
        if full[int(y), int(x)]:
            return sim.as_patch(shows)               # a click on the copy selects what shows of it
        q = query.full(H, W)
        return sim.as_patch(q if q[int(y), int(x)] else np.zeros((H, W), bool))

    mm = sim.encode(ColourBackbone(), canvas, 800)
    got = {}
    for hidden in (True, False):
        res = sim.find_similar(canvas, query.full(H, W), mm, segment, Unsure(), sim.SimilarSettings(), cpn=None,
                               align_clicks=False, hidden_copies=hidden)
        got[hidden] = [c.patch.full(H, W) for c in res.accepted]
    assert len(got[True]) == 1 and (got[True][0] & shows).sum() > 0.9 * shows.sum()
    assert got[False] == []
