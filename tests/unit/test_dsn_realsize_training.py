"""Issue 23's 1C-DSN training options: real-size crops framed as the daemon frames a click on a
big photo, the mixed batch and its workers, packed sources for a machine without the Debian
image packages (procedural scenes and a made-up source tree: no image packages needed)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from backend.models.window import Window, crop_resize
from backend.training import pack_sources, synth
from backend.training.samples import crop_mask, realsize_sample
from backend.training.synth import RealSizeGenerator
from backend.training.train_dsn import split_batch, split_workers

REPO = Path(__file__).resolve().parents[2]


def test_crop_mask_gives_the_same_bits_as_cropping_the_whole_mask():
    rng = np.random.default_rng(0)
    mask = np.zeros((300, 400), bool)
    cv2.ellipse(mask.view(np.uint8), (200, 150), (60, 25), 30, 0, 360, 1, -1)
    for _ in range(200):
        side = int(rng.integers(8, 700))
        win = Window(int(rng.integers(-side, 400)), int(rng.integers(-side, 300)), side)
        assert np.array_equal(crop_mask(mask, win, 96), crop_resize(mask.astype(np.float32), win, 96) > 0.5)


def test_realsize_crops_hold_the_clicked_object_at_the_daemons_scales():
    """The three views: the whole-image pass's scale (long side 512), the probe window (10 % of
    the long side) and zoom-in windows; each crop holds its object with the first click on it."""
    g = RealSizeGenerator("train", procedural=True, scale=0.25)   # 1000x750 instead of 12 MP
    fills = []
    for seed in range(3):
        sc = g.scene(seed)
        rng = np.random.default_rng(seed)
        for _ in range(6):
            s = realsize_sample(sc, rng, 128, prev_window=0.5)
            assert s.image.shape == (3, 128, 128) and s.target.shape == (1, 128, 128)
            assert s.target.sum() > 0 and ((s.pos[0] > 0.99) & (s.target[0] > 0)).any()
            fills.append(float(s.target.mean()))
    assert min(fills) < 0.01 < max(fills)   # small (coarse view) and large (zoom-in) objects
    a = realsize_sample(g.scene(1), np.random.default_rng(4), 64)
    b = realsize_sample(g.scene(1), np.random.default_rng(4), 64)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_batch_split_between_standard_and_realsize_scenes():
    assert split_batch(8, 0.0, 4) == (4, 0)                 # the runs before the option
    assert split_batch(16, 0.5, 4) == (4, 2)
    assert split_batch(16, 1.0, 4) == (0, 4)
    with pytest.raises(ValueError):
        split_batch(9, 0.0, 4)   # odd: standard scenes give 2 crops each
    assert split_workers(1, 4, 0, 4) == (1, 0)
    w_std, w_rs = split_workers(14, 4, 2, 4)
    assert w_std + w_rs == 14 and w_rs > w_std >= 1        # a real-size scene costs more
    assert split_workers(1, 4, 2, 4) == (1, 1)              # at least one each


def _fake_share(root: Path) -> None:
    """A tiny /usr/share: two wallpapers and a few clipart files on both sides of the split."""
    rng = np.random.default_rng(0)
    for name in ("Alpha", "Kite"):   # Kite is a validation wallpaper
        p = root / "wallpapers" / name / "contents/images/1280x1024.png"
        p.parent.mkdir(parents=True)
        cv2.imwrite(str(p), rng.integers(0, 255, (700, 900, 3), dtype=np.uint8))   # noise: > BG_MIN_BYTES
    names = ["apple", "banana", "pear", "corn", "plum", "fig", "kiwi", "lime"]   # banana, corn: validation
    for k, name in enumerate(names):
        rgba = np.zeros((90 + 7 * k, 120, 4), np.uint8)
        rgba[..., :3] = rng.integers(0, 255, 3)
        if k % 3:   # else no opaque pixel: load_clipart rejects it
            cv2.circle(rgba, (60, 45), 40, (0, 0, 0, 255), -1)
        p = root / "openclipart/png/food/fruit" / f"{name}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(p), rgba)


def _listing(root: Path) -> dict[str, list[str]]:
    """The generator's sources with SIMPSON_SOURCE_ROOT=root (a fresh process: it is read at import)."""
    code = ("import json; from backend.training import synth; "
            "print(json.dumps({s + k: [str(p.relative_to(synth.SOURCE_ROOT).with_suffix('')) for p in f(s)] "
            "for s in ('train', 'val') for k, f in (('_bg', synth.list_backgrounds), ('_obj', synth.list_objects))}))")
    env = dict(os.environ, SIMPSON_SOURCE_ROOT=str(root))
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_packed_sources_list_and_load_like_the_originals(tmp_path, monkeypatch):
    share, pack = tmp_path / "share", tmp_path / "pack"
    _fake_share(share)
    monkeypatch.setattr(synth, "SOURCE_ROOT", share)
    monkeypatch.setattr(synth, "BG_ROOTS", [share / "wallpapers"])
    monkeypatch.setattr(synth, "CLIPART_ROOT", share / "openclipart/png")
    for f in (synth.list_backgrounds, synth.list_objects, synth.load_clipart):
        f.cache_clear()
    try:
        assert synth.list_backgrounds("val") and synth.list_objects("val") and synth.list_objects("train")
        pack_sources.pack_val(pack)
        pack_sources.pack_train(pack, bg_side=400, quality=80, objects_every=1)
        val_objects = {p.relative_to(share): synth.load_clipart(p) for p in synth.list_objects("val")}
    finally:
        for f in (synth.list_backgrounds, synth.list_objects, synth.load_clipart):
            f.cache_clear()
    original, packed = _listing(share), _listing(pack)
    # validation: the same files in the same order, so the same random choices and scenes
    assert packed["val_bg"] == original["val_bg"] and packed["val_obj"] == original["val_obj"]
    # training: every background (shrunk, JPEG), the clipart that loads
    assert packed["train_bg"] == original["train_bg"]
    usable = [name for name in original["train_obj"] if synth.load_clipart.__wrapped__(share / (name + ".png")) is not None]
    assert packed["train_obj"] == usable and 0 < len(usable) < len(original["train_obj"])
    for rel, obj in val_objects.items():   # validation objects load as the very same arrays
        again = synth.load_clipart.__wrapped__(pack / rel)
        assert (obj is None and again is None) or np.array_equal(obj, again)
    assert cv2.imread(str(pack / "wallpapers/Kite/contents/images/1280x1024.png")).shape == (700, 900, 3)
    assert max(cv2.imread(str(p)).shape[1] for p in (pack / "wallpapers/Alpha").rglob("*.jpg")) == 400


def test_bench_paired_differences_of_two_weights(capsys):
    import importlib.util
    # bench/select.py shadows the stdlib `select` module by name: load it under another name.
    spec = importlib.util.spec_from_file_location("bench_select", REPO / "bench" / "select.py")
    bs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bs)
    curves = {"shipped": [[0.5, 0.6, 0.7], [0.9, 0.9, 0.9]],
              f"{bs.COMPARED} new.pt": [[0.6, 0.7, 0.8], [0.9, 0.95, 0.95]]}
    bs.print_paired(curves, [f"{bs.COMPARED} new.pt"], 2)
    out = capsys.readouterr().out
    assert "mIoU@1: +0.0500" in out and "mIoU@3: +0.0750" in out


def test_first_click_training_crops_have_no_previous_mask():
    """refine_share=0 (the first-click model's training): no crop has a previous mask (a few
    still get a second click, as first clicks do in training); the default share gives some."""
    g = RealSizeGenerator("train", procedural=True, scale=0.25)
    first, default = [], []
    for seed in range(3):
        sc = g.scene(seed)
        for k in range(8):
            first.append(realsize_sample(sc, np.random.default_rng([seed, k]), 64, prev_window=0.5, refine_share=0.0))
            default.append(realsize_sample(sc, np.random.default_rng([seed, k]), 64, prev_window=0.5))
    assert all(s.prev.sum() == 0 and s.pos.sum() > 0 and s.target.sum() > 0 for s in first)
    assert any(s.prev.sum() > 0 for s in default)
