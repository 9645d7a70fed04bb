"""LaMa: our generator, both weight formats (built here, tiny), the engine's padding and compositing."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from backend.engines import EngineUnavailable
from backend.engines.lama import CHECKPOINT_NAME, TORCHSCRIPT_NAME, LamaEngine, find_weights, load_inpainter
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
        a = load_inpainter(tmp_path / TORCHSCRIPT_NAME)(image, mask)
        b = load_inpainter(tmp_path / CHECKPOINT_NAME)(image, mask)
    assert a.shape == (1, 3, 64, 96)
    assert torch.allclose(a, b, atol=1e-5)
    assert torch.equal(a[mask.expand_as(a) == 0], image[mask.expand_as(image) == 0])   # composited


@pytest.mark.parametrize("fmt", ["pt", "ckpt"])
@pytest.mark.parametrize("size", [(53, 77), (300, 1500)])    # odd sizes pad; 1500 > WORK_SIDE resizes
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
    assert "install.py --lama" in engine.status()
    with pytest.raises(EngineUnavailable):
        engine.erase(np.zeros((16, 16, 3), np.uint8), np.ones((16, 16), bool), lambda f, m: None)


def test_damaged_weights_become_one_sentence(tmp_path):
    (tmp_path / TORCHSCRIPT_NAME).write_bytes(b"not a model")
    engine = LamaEngine(tmp_path)
    with pytest.raises(EngineUnavailable, match="could not be loaded"):
        engine.erase(np.zeros((16, 16, 3), np.uint8), np.ones((16, 16), bool), lambda f, m: None)
    assert "install.py --lama" in engine.status()


def test_cancel_from_progress(tmp_path):
    save_lightning(tiny_generator(), tmp_path / CHECKPOINT_NAME)

    class Stop(Exception):
        pass

    def progress(f: float, m: str) -> None:
        raise Stop

    with pytest.raises(Stop):
        LamaEngine(tmp_path).erase(np.zeros((16, 16, 3), np.uint8), np.ones((16, 16), bool), progress)
