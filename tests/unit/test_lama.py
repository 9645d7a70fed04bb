"""LaMa: our generator, both weight formats (built here, tiny), the engine's padding and compositing."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.engines import EngineUnavailable
from backend import weights
from backend.engines.lama import (CHECKPOINT_NAME, CROP_MARGIN, CROP_TRIGGER, RESIZE_LIMIT, TORCHSCRIPT_NAME,
                                  LamaEngine, find_weights, inpaint_crop, load_inpainter, windows)
from backend.models.lama import LamaGenerator, LamaInpainter
from backend.weights import generator_config, load, read_checkpoint

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.*:DeprecationWarning")

TINY = {"ngf": 8, "n_downsampling": 3, "n_blocks": 1}


class HyperParams:
    """Stands for a non-tensor object in a Lightning checkpoint (OmegaConf's DictConfig, say)."""

    def __init__(self, cfg: dict):
        self.cfg = cfg


def tiny_generator(seed: int = 0) -> LamaGenerator:
    torch.manual_seed(seed)
    g = LamaGenerator(**TINY)
    for m in g.modules():   # non-trivial BN statistics, so eval-mode loading is really checked
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return g.eval()


def save_lightning(g: LamaGenerator, path: Path, extra: object = None) -> None:
    sd = {f"generator.{k}": v for k, v in g.state_dict().items()}
    sd["discriminator.model0.0.weight"] = torch.zeros(4, 3, 4, 4)
    ckpt = {"epoch": 39, "global_step": 123456, "pytorch-lightning_version": "1.2.9", "state_dict": sd,
            "optimizer_states": [{"state": {}, "param_groups": [{"lr": 1e-3}]}], "lr_schedulers": [],
            "callbacks": {}, "hparams_name": "kwargs"}
    if extra is not None:
        ckpt["hyper_parameters"] = extra
    torch.save(ckpt, path)


def save_torchscript(g: LamaGenerator, path: Path) -> None:
    """As advimman/lama bin/to_jit.py: trace forward(image, mask) -> composite on 1×3×120×120."""
    image, mask = torch.rand(1, 3, 120, 120), (torch.rand(1, 1, 120, 120) > 0.5).float()
    with torch.no_grad():
        traced = torch.jit.trace(LamaInpainter(g).eval(), (image, mask), strict=False)
    traced.save(str(path))


def inputs(h: int = 64, w: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    mask = torch.zeros(1, 1, h, w)
    mask[..., h // 4:h // 2, w // 3:w // 2] = 1
    return torch.rand(1, 3, h, w), mask


def test_big_lama_layout():
    g = LamaGenerator()
    assert abs(sum(p.numel() for p in g.parameters()) / 1e6 - 51.0) < 0.5
    keys = g.state_dict()
    for k in ("model.5.conv1.ffc.convg2g.fu.conv_layer.weight", "model.5.conv1.bn_g.running_var",
              "model.22.conv2.ffc.convl2g.weight", "model.34.weight"):
        assert k in keys
    assert "model.23.weight" not in keys and len([m for m in g.model]) == 36
    assert generator_config(keys) == {"ngf": 64, "n_downsampling": 3, "n_blocks": 18}


def test_generator_runs_on_multiples_of_8():
    g = tiny_generator()
    with torch.no_grad():
        out = g(torch.rand(2, 4, 40, 56))
    assert out.shape == (2, 3, 40, 56) and out.min() >= 0 and out.max() <= 1


def test_lightning_checkpoint_loads_weights_only(tmp_path):
    g = tiny_generator()
    path = tmp_path / CHECKPOINT_NAME
    save_lightning(g, path, {"lr": 1e-3, "kind": "ffc_resnet"})
    assert read_checkpoint(path)["global_step"] == 123456   # plain values load as they are
    loaded = load("lama-ckpt", path)
    image, mask = inputs()
    x = torch.cat((image * (1 - mask), mask), 1)
    with torch.no_grad():
        assert torch.allclose(loaded(x), g(x), atol=1e-6)


def test_checkpoint_with_foreign_objects_runs_no_code(tmp_path):
    path = tmp_path / CHECKPOINT_NAME
    save_lightning(tiny_generator(), path, HyperParams({"generator": {"kind": "ffc_resnet"}}))
    with pytest.raises(Exception):
        torch.load(path, map_location="cpu", weights_only=True)
    ckpt = read_checkpoint(path)
    assert not isinstance(ckpt["hyper_parameters"], HyperParams)   # a stub, not the real class
    assert generator_config({k[10:]: v for k, v in ckpt["state_dict"].items() if k.startswith("generator.")}) == TINY


def test_torchscript_and_checkpoint_agree(tmp_path):
    g = tiny_generator()
    save_lightning(g, tmp_path / CHECKPOINT_NAME)
    save_torchscript(g, tmp_path / TORCHSCRIPT_NAME)
    image, mask = inputs(64, 96)             # not the traced size
    with torch.no_grad():
        a = load_inpainter(tmp_path / TORCHSCRIPT_NAME)(image, mask)   # channels-last on the CPU (device.cpu_layout)
        b = load_inpainter(tmp_path / CHECKPOINT_NAME)(image, mask)
        c = LamaInpainter(g)(image, mask)                               # the default layout
    assert a.shape == (1, 3, 64, 96)
    assert torch.allclose(a, b, atol=1e-5) and torch.allclose(a, c, atol=1e-5)
    assert torch.equal(a[mask.expand_as(a) == 0], image[mask.expand_as(image) == 0])   # composited


@pytest.mark.parametrize("fmt", ["pt", "ckpt"])
@pytest.mark.parametrize("size", [(53, 77), (300, 1500)])    # odd sizes pad; 1500 > CROP_TRIGGER: windows
def test_engine_changes_only_the_hole(tmp_path, fmt, size):
    g = tiny_generator()
    if fmt == "pt":
        save_torchscript(g, tmp_path / TORCHSCRIPT_NAME)
    else:
        save_lightning(g, tmp_path / CHECKPOINT_NAME)
    engine = LamaEngine(tmp_path)
    assert engine.status() == "ready"
    h, w = size
    rgb = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    hole = np.zeros((h, w), bool)
    hole[h // 3:h // 2, w // 4:w // 3] = True
    calls = []
    out = engine.erase(rgb, hole, lambda f, m: calls.append(f))
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert np.array_equal(out[~hole], rgb[~hole])
    assert not np.array_equal(out[hole], rgb[hole])
    assert calls == sorted(calls) and calls


def test_status_without_weights_says_how_to_get_them(tmp_path):
    engine = LamaEngine(tmp_path)
    assert find_weights(tmp_path) is None
    assert "run `python3 install.py`" in engine.status()
    assert engine.weights_note() == "LaMa's weights are not installed: run `python3 install.py`"
    with pytest.raises(EngineUnavailable):
        engine.erase(np.zeros((16, 16, 3), np.uint8), np.ones((16, 16), bool), lambda f, m: None)


def test_damaged_weights_become_one_sentence(tmp_path):
    (tmp_path / TORCHSCRIPT_NAME).write_bytes(b"not a model")
    engine = LamaEngine(tmp_path)
    with pytest.raises(EngineUnavailable, match="could not be loaded"):
        engine.erase(np.zeros((16, 16, 3), np.uint8), np.ones((16, 16), bool), lambda f, m: None)
    assert "run `python3 install.py` again" in engine.status()
    assert "could not be loaded" in engine.weights_note()


def test_cancel_from_progress(tmp_path):
    save_lightning(tiny_generator(), tmp_path / CHECKPOINT_NAME)

    class Stop(Exception):
        pass

    def progress(f: float, m: str) -> None:
        raise Stop

    with pytest.raises(Stop):
        LamaEngine(tmp_path).erase(np.zeros((16, 16, 3), np.uint8), np.ones((16, 16), bool), progress)


# ---------------------------------------------------------------- big crops: IOPaint's Crop strategy
class Recorder:
    """Stands for the network: records each window's input size and fills the hole with grey."""

    def __init__(self):
        self.sizes: list[tuple[int, int]] = []

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        self.sizes.append(tuple(image.shape[-2:]))
        return image * (1 - mask) + 0.5 * mask


def test_a_crop_up_to_the_trigger_is_one_window():
    hole = np.zeros((CROP_TRIGGER, 500), bool)
    hole[10:20, 10:20] = True
    assert windows(hole) == [(0, 0, 500, CROP_TRIGGER)]


def test_windows_grow_each_hole_by_the_margin_shift_inward_and_merge():
    hole = np.zeros((1000, 3000), bool)
    hole[500:540, 1000:1100] = True            # in the middle: grown by the margin
    hole[10:30, 2950:2990] = True              # in a corner: shifted inward, same size
    hole[500:520, 1300:1320] = True            # within 2 margins of the first: merged with it
    got = sorted(windows(hole))
    m = CROP_MARGIN
    assert got == [(1000 - m, 500 - m, 1320 + m, 540 + m), (3000 - 40 - 2 * m, 0, 3000, 20 + 2 * m)]


def test_a_small_hole_in_a_big_crop_is_inpainted_at_full_resolution():
    rgb = np.random.default_rng(0).integers(0, 256, (2000, 3000, 3), dtype=np.uint8)
    hole = np.zeros((2000, 3000), bool)
    hole[900:950, 1400:1480] = True
    hole[100:110, 100:110] = True
    fn = Recorder()
    out = inpaint_crop(fn, rgb, hole)
    # two windows, each the hole plus the margin (padded to a multiple of 8), nothing shrunk
    assert sorted(fn.sizes) == sorted([(-(-(10 + 2 * CROP_MARGIN) // 8) * 8,) * 2,
                                       (-(-(50 + 2 * CROP_MARGIN) // 8) * 8, -(-(80 + 2 * CROP_MARGIN) // 8) * 8)])
    assert np.array_equal(out[~hole], rgb[~hole]) and (out[hole] == 128).all()   # full resolution: exact grey


def test_a_window_longer_than_the_limit_is_shrunk():
    rgb = np.zeros((1600, 2400, 3), np.uint8)
    hole = np.zeros((1600, 2400), bool)
    hole[100:1500, 200:1700] = True            # 1500 + 2 margins > RESIZE_LIMIT
    fn = Recorder()
    out = inpaint_crop(fn, rgb, hole)
    assert len(fn.sizes) == 1 and max(fn.sizes[0]) == RESIZE_LIMIT
    assert np.array_equal(out[~hole], rgb[~hole])


def test_progress_names_each_window():
    rgb = np.zeros((900, 2000, 3), np.uint8)
    hole = np.zeros((900, 2000), bool)
    hole[100:120, 100:120] = hole[700:720, 1800:1820] = True
    seen = []
    inpaint_crop(Recorder(), rgb, hole, lambda f, m: seen.append((f, m)))
    assert [m for _, m in seen] == ["Inpainting with LaMa (part 1 of 2)", "Inpainting with LaMa (part 2 of 2)"]
    assert [f for f, _ in seen] == sorted(f for f, _ in seen)


# ---------------------------------------------------------------- doctor's note
def test_weights_note_checks_the_published_md5(tmp_path, monkeypatch):
    g = tiny_generator()
    save_torchscript(g, tmp_path / TORCHSCRIPT_NAME)
    engine = LamaEngine(tmp_path)
    assert "md5" in engine.weights_note() and "is not the published" in engine.weights_note()
    published = weights.md5_of(tmp_path / TORCHSCRIPT_NAME)     # the test seam: the table's md5
    monkeypatch.setitem(weights.MODELS, "lama", dataclasses.replace(weights.MODELS["lama"], md5=published))
    assert engine.weights_note() == f"{TORCHSCRIPT_NAME} found in {tmp_path}, md5 ok"
    (tmp_path / TORCHSCRIPT_NAME).unlink()
    save_lightning(g, tmp_path / CHECKPOINT_NAME)
    assert engine.weights_note().startswith(f"{CHECKPOINT_NAME} found")


@pytest.mark.parametrize("present", [False, True])
def test_doctor_says_which_erase_engine_and_why(tmp_path, monkeypatch, capsys, present):
    from backend import cli, engines
    monkeypatch.setenv("SIMPSON_HOME", str(tmp_path))
    monkeypatch.setattr(engines, "_built", {})                   # engines as a fresh daemon builds them
    monkeypatch.setattr(cli, "_daemon_state", lambda cfg: "not asked")
    folder = tmp_path / "weights"
    if present:
        folder.mkdir()
        save_torchscript(tiny_generator(), folder / TORCHSCRIPT_NAME)
        published = weights.md5_of(folder / TORCHSCRIPT_NAME)
        monkeypatch.setitem(weights.MODELS, "lama", dataclasses.replace(weights.MODELS["lama"], md5=published))
    cli.doctor()
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("erase engine:")]
    if present:
        assert lines == [f"erase engine: lama ({TORCHSCRIPT_NAME} found in {folder}, md5 ok)"]
    else:
        assert lines == [f"erase engine: {engines.choose('erase', None).name} "
                         "(LaMa's weights are not installed: run `python3 install.py`)"]


def test_the_crop_bench_runs_and_fills_a_2_percent_hole_at_full_resolution():
    """bench/lama_crop.py (docs/erase.md's table) with a tiny generator, so the script cannot rot."""
    import subprocess
    import sys
    repo = Path(__file__).resolve().parents[2]
    r = subprocess.run([sys.executable, str(repo / "bench" / "lama_crop.py"), "--tiny", "--cases", "2pct"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = {line.split(" | ")[3]: line.split(" | ") for line in r.stdout.splitlines() if line.startswith("2pct |")}
    assert rows["before"][6:8] == ["0 %", "0.49"] and rows["crop"][6:8] == ["100 %", "1.00"]
