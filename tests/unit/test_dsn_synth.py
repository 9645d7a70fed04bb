"""Synthetic scenes and training samples for 1C-DSN (procedural: no image packages needed)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.models.window import Window, crop_resize, fit_window, window_part
from backend.training.samples import background_region, error_click, make_sample
from backend.training.synth import RealSizeGenerator, SceneGenerator, split_of


@pytest.fixture(scope="module")
def gen() -> SceneGenerator:
    return SceneGenerator("train", procedural=True, size=(256, 320))


def test_scenes_are_deterministic(gen):
    a, b = gen.scene(7), gen.scene(7)
    assert np.array_equal(a.image, b.image)
    assert a.groups == b.groups and all(np.array_equal(x, y) for x, y in zip(a.masks, b.masks))
    assert not np.array_equal(a.image, gen.scene(8).image)


def test_scene_instances_are_disjoint_and_grouped(gen):
    sc = gen.scene(3)
    h, w = sc.image.shape[:2]
    assert sc.image.dtype == np.uint8 and sc.image.shape[2] == 3 and 256 <= h <= 320
    assert len(sc.masks) == len(sc.groups) >= 2
    assert 0 in sc.groups and max(sc.groups) >= 1  # repeated object + at least one other kind
    total = np.sum([m.astype(int) for m in sc.masks], axis=0)
    assert total.max() <= 1  # visible parts never overlap


def test_recoloured_lookalikes_differ_visibly():
    from backend.training.synth import LOOKALIKE_MIN_DELTA, colour_delta, distinct_recolour
    rng = np.random.default_rng(0)
    for colour in [(0, 0, 0), (255, 255, 255), (128, 128, 128), (200, 30, 30)]:
        obj = np.zeros((12, 12, 4), np.uint8)
        obj[..., :3], obj[..., 3] = colour, 255
        for _ in range(10):  # a hue turn alone leaves black, white and grey as they were
            assert colour_delta(obj, distinct_recolour(obj, rng)) >= LOOKALIKE_MIN_DELTA


def test_split_is_stable_and_both_sides_exist():
    names = [f"obj:{i}" for i in range(200)]
    splits = [split_of(n) for n in names]
    assert splits == [split_of(n) for n in names]
    assert 20 <= splits.count("val") <= 70


def test_sample_has_object_and_click_inside(gen):
    sc = gen.scene(5)
    s = make_sample(sc, 0, np.random.default_rng(0), size=128, refine=False)
    assert s.image.shape == (3, 128, 128) and s.target.shape == (1, 128, 128)
    assert s.target.sum() > 0
    disk = s.pos[0] > 0
    assert (disk & (s.target[0] > 0)).any()  # the first click lies on the object


def test_error_click_goes_to_the_largest_mistake():
    gt = np.zeros((50, 50), bool)
    gt[10:40, 10:40] = True
    pred = gt.copy()
    pred[10:40, 10:20] = False  # a big miss
    x, y, positive = error_click(gt, pred, np.random.default_rng(0))
    assert positive and 10 <= x < 20 and 10 <= y < 40


def test_background_region_is_the_support_next_to_the_object():
    img = np.zeros((60, 60, 3), np.uint8)
    img[:, 30:] = 200  # two flat halves
    gt = np.zeros((60, 60), bool)
    gt[20:30, 22:28] = True  # object in the dark half, next to the bright half
    img[gt] = 90
    region = background_region(img, gt, np.random.default_rng(1))
    assert region.any() and not (region & gt).any()
    assert region.sum() >= 900  # a whole flat half, not a few pixels
    assert (region | gt)[:, :28].all() or region[:, 32:].all()  # (the blur softens the step)


def test_model_clicks_correct_the_models_own_mistakes():
    import torch
    from backend.training.samples import Sample
    from backend.training.train_dsn import model_clicks

    class Half(torch.nn.Module):  # "predicts" the left half of every crop, at half resolution
        def encode(self, x):
            return x

        def decode(self, feats, pos, neg, prev):
            logits = torch.full((len(feats), 1, 16, 16), -5.0)
            logits[..., :8] = 5.0
            return logits, logits

    target = torch.zeros(2, 1, 32, 32)
    target[:, :, :, 4:28] = 1  # the biggest mistake: its part right of the middle
    zeros = torch.zeros(2, 2, 32, 32)
    b = Sample(torch.zeros(2, 3, 32, 32), zeros, zeros.clone(), torch.zeros(2, 1, 32, 32), target)
    out = model_clicks(Half(), b, [0, 1], np.random.default_rng(0))
    assert torch.equal(out.pos[0], b.pos[0]) and torch.equal(out.prev[0], b.prev[0])  # untouched
    assert out.prev[1, 0, :, :16].all() and not out.prev[1, 0, :, 16:].any()  # its prediction
    ys, xs = torch.nonzero(out.pos[1, 0] > 0, as_tuple=True)  # a positive click on the missed part
    assert len(xs) and xs.float().mean() >= 16 and not out.neg[1].any()
    assert b.prev[1].sum() == 0  # the batch given is not modified


def test_windows_pad_outside_the_image():
    img = np.full((10, 20), 7, np.uint8)
    win = fit_window(10, 5, 40, 20, 10)
    assert win == Window(-10, -15, 40)
    out = crop_resize(img, win, 40)
    assert out[15:25, 10:30].min() == 7 and out[:15].max() == 0


def test_a_window_part_crops_as_the_whole_image_does():
    """window_part: crop_resize of a per-pixel function of the part under a window, in the shifted
    window, equals crop_resize of it on the whole image (windows inside, across edges, outside, and
    down- and upsampled; segment.py converts only that part of a 12-MP previous mask)."""
    rng = np.random.default_rng(0)
    mask = (rng.random((90, 130)) > 0.6).astype(np.uint8) * 255
    for _ in range(300):
        side = int(rng.integers(4, 260))
        win = Window(int(rng.integers(-side - 5, 140)), int(rng.integers(-side - 5, 100)), side)
        part, at = window_part(mask, win)
        assert part.size <= min(side, 130) * min(side, 90)
        assert np.array_equal(crop_resize((part > 127).astype(np.float32), at, 48),
                              crop_resize((mask > 127).astype(np.float32), win, 48))


def test_enclosing_region_holds_the_object_and_more():
    from backend.training.samples import enclosing_region
    img = np.full((80, 80, 3), 120, np.uint8)
    img[20:60, 20:60] = 200                      # a flat "boat" with a small object on it
    gt = np.zeros((80, 80), bool)
    gt[35:45, 35:45] = True
    img[gt] = 30
    for seed in range(6):
        region = enclosing_region(img, gt, np.random.default_rng(seed))
        assert (region & gt).sum() == gt.sum()   # the whole object, holes filled
        assert region.sum() >= 3 * gt.sum()


def test_refinement_crops_can_be_framed_on_the_previous_mask(gen):
    """prev_window=1: the crop is the window the daemon would refine in, fitted to the previous
    mask's box (15-45 % of the crop) or the whole scene; prev_window=0: fitted to the object."""
    from backend.masks import mask_box
    framed, fills = 0, []
    for seed in range(12):
        sc = gen.scene(seed)
        if not sc.masks:
            continue
        s = make_sample(sc, 0, np.random.default_rng(seed), size=128, refine=True, prev_window=1.0)
        assert s.target.sum() > 0 and s.prev.sum() > 0
        assert (s.pos[0] > 0).any() and ((s.pos[0] > 0) & (s.target[0] > 0)).any()
        x0, y0, x1, y1 = mask_box((s.prev[0].numpy() * 255).astype(np.uint8) > 127)
        fills.append((x1 - x0) * (y1 - y0) / 128 ** 2)
        framed += 1
    assert framed >= 8
    assert np.median(fills) > 0.1          # the previous mask, not a speck, sets the scale
    a = make_sample(gen.scene(3), 0, np.random.default_rng(5), size=128, refine=True, prev_window=0.0)
    b = make_sample(gen.scene(3), 0, np.random.default_rng(5), size=128, refine=True)
    assert all(torch.equal(x, y) for x, y in zip(a, b))   # the default is unchanged


def test_real_size_scenes_have_varied_copies_and_lookalikes():
    """issue 23's split: 3-15 copies of one small object, 2-4 look-alikes, deterministic, the
    random stream apart from the standard generator's (scale 0.1: 400x300 instead of 12 MP)."""
    g = RealSizeGenerator("val", procedural=True, scale=0.1)
    a, b = g.scene(5), g.scene(5)
    assert np.array_equal(a.image, b.image) and a.roles == b.roles
    for s in range(4):
        sc = g.scene(s)
        h, w = sc.image.shape[:2]
        assert {(w, h), (h, w)} & {(400, 300), (403, 302), (424, 283)}
        assert len(sc.masks) == len(sc.groups) == len(sc.roles)
        copies = [m for m, r in zip(sc.masks, sc.roles) if r == "copy"]
        assert 1 <= len(copies) <= 15 and 0 < sc.roles.count("lookalike") <= 4
        assert all(g == 0 for g, r in zip(sc.groups, sc.roles) if r == "copy")
        assert all(g > 0 for g, r in zip(sc.groups, sc.roles) if r != "copy")
        assert max(m.sum() for m in copies) <= 0.012 * h * w
        total = np.sum([m.astype(int) for m in sc.masks], axis=0)
        assert total.max() <= 1
