"""backend/device.py: which device is chosen and why, and a request that fails on the device
(a fake one: tests/fake_device.py) runs again on the CPU with one log sentence."""
from __future__ import annotations

import copy
import json
import logging
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from backend import device, engines
from backend.cache import ImageEntry
from backend.engines.dsn import DsnEngine
from backend.pipeline import Pipeline
from tests.conftest import REPO
from tests.fake_device import FAKE, FailingModule, FailingSegmenter, cuda_error, out_of_memory, pretend

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.*:DeprecationWarning")


@pytest.fixture(autouse=True)
def fresh_choice(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMPSON_HOME", str(tmp_path / "home"))   # no config.json of the user's
    device.set_preference(None)
    yield
    device.set_preference(None)


def machine(monkeypatch, cuda: bool, mps: bool) -> None:
    monkeypatch.setattr(device, "probe_cuda", lambda index=0: (True, "Fake GPU") if cuda and index == 0
                        else (False, "no CUDA GPU was found"))
    monkeypatch.setattr(device, "probe_mps", lambda: (True, "Apple GPU (MPS)") if mps
                        else (False, "no Apple GPU (MPS) was found"))


# ---------------------------------------------------------------- the choice
@pytest.mark.parametrize("cuda, mps, expected", [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")])
def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected):
    machine(monkeypatch, cuda, mps)
    c = device.choose("auto")
    assert c.device == expected and c.reason.startswith("auto: ")
    if expected == "cpu":
        assert c.reason == "auto: no CUDA GPU was found, and no Apple GPU (MPS) was found"


def test_forced_device(monkeypatch):
    machine(monkeypatch, cuda=True, mps=False)
    assert device.choose("cpu").device == "cpu"
    assert device.choose("cuda").device == "cuda" and device.choose("cuda").name == "Fake GPU"
    assert device.choose("cuda:1") == device.Choice(
        "cpu", "cuda:1", "cuda:1 was asked for, but no CUDA GPU was found; running on the CPU")
    mps = device.choose("mps")
    assert mps.device == "cpu" and mps.reason == "mps was asked for, but no Apple GPU (MPS) was found; running on the CPU"


def test_preference_from_flag_then_config_then_auto(monkeypatch, tmp_path, caplog):
    machine(monkeypatch, cuda=True, mps=False)
    monkeypatch.setenv("SIMPSON_HOME", str(tmp_path))
    assert device.preference() == "auto" and device.chosen().device == "cuda"
    (tmp_path / "config.json").write_text(json.dumps({"device": "CPU"}))
    device.set_preference(None)
    assert device.preference() == "cpu" and device.chosen().device == "cpu"
    device.set_preference("cuda")            # the flag wins over config.json
    assert device.chosen().device == "cuda" and str(device.current()) == "cuda"
    (tmp_path / "config.json").write_text(json.dumps({"device": "gpu"}))
    device.set_preference(None)
    with caplog.at_level(logging.WARNING, "simpson.device"):
        assert device.preference() == "auto"
    assert "device 'gpu' is not one of auto, cpu, cuda, mps" in caplog.text
    with pytest.raises(ValueError, match="Unknown device 'gpu'"):
        device.set_preference("gpu")


def test_this_machines_torch_is_probed_for_real():
    ok, why = device.probe_cuda()
    if torch.version.cuda is None:
        assert (ok, why) == (False, "this PyTorch is a CPU-only build")
    assert isinstance(ok, bool) and why


def test_a_driver_too_old_is_named(monkeypatch):
    def too_old() -> bool:
        warnings.warn("CUDA initialization: The NVIDIA driver on your system is too old (found version 11040). "
                      "Please update your GPU driver.", UserWarning)
        return False
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(torch.cuda, "is_available", too_old)
    ok, why = device.probe_cuda()
    assert not ok
    assert why == ("CUDA is not usable (CUDA initialization: The NVIDIA driver on your system is too old "
                   "(found version 11040). Please update your GPU driver)")
    monkeypatch.setattr(device, "probe_mps", lambda: (False, "no Apple GPU (MPS) was found"))
    assert device.choose("cuda").reason.startswith("cuda was asked for, but CUDA is not usable (CUDA initialization")


# ---------------------------------------------------------------- failures and fallback
def test_device_failures_are_told_from_bugs():
    assert device.is_failure(out_of_memory()) and device.is_failure(cuda_error())
    assert device.is_failure(RuntimeError("MPS backend out of memory (MPS allocated: 1.2 GB)"))
    assert not device.is_failure(RuntimeError("The size of tensor a (3) must match the size of tensor b (4)"))
    assert not device.is_failure(ValueError("CUDA"))


def test_run_falls_back_once_with_one_sentence(caplog):
    calls = []

    def on_device():
        calls.append("device")
        raise out_of_memory()

    with caplog.at_level(logging.INFO, "simpson.device"):
        assert device.run("Erase (test engine)", FAKE, on_device, lambda: calls.append("cpu") or "done") == "done"
    assert calls == ["device", "cpu"]
    assert [r.getMessage() for r in caplog.records] == [
        "Erase (test engine) failed on meta (OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB "
        "(GPU 0; 3.94 GiB total capacity; 3.10 GiB already allocated)); this request runs on the CPU."]
    # on the CPU there is nothing to fall back to; a bug is not a device failure
    with pytest.raises(torch.cuda.OutOfMemoryError):
        device.run("x", torch.device("cpu"), lambda: (_ for _ in ()).throw(out_of_memory()), lambda: "never")
    with pytest.raises(KeyError):
        device.run("x", FAKE, lambda: {}["missing"], lambda: "never")


def test_a_model_that_does_not_fit_stays_on_the_cpu(caplog):
    class TooBig(torch.nn.Linear):
        def to(self, *args, **kwargs):
            if torch.device(args[0]).type != "cpu":
                raise out_of_memory()
            return super().to(*args, **kwargs)

    with caplog.at_level(logging.WARNING, "simpson.device"):
        model = device.place(TooBig(2, 2), "The test model", FAKE)
    assert device.device_of(model).type == "cpu"
    assert caplog.records[0].getMessage().startswith("The test model does not fit on meta (OutOfMemoryError")


def test_cpu_copy_leaves_the_original():
    m = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2)).eval()
    c = device.cpu_copy(m)
    assert c is not m and device.device_of(c).type == "cpu"
    x = torch.rand(4, 3)
    assert torch.equal(c(x), m(x))
    c[0].weight.data.zero_()
    assert m[0].weight.abs().sum() > 0


def test_a_convolutional_net_runs_channels_last_on_the_cpu_with_the_same_outputs():
    from backend.models.dsn import build_dsn_lite0, click_maps
    from backend.models.folding import fold_batchnorm
    torch.manual_seed(0)
    plain = fold_batchnorm(build_dsn_lite0())
    x = torch.rand(1, 3, 128, 160) * 255
    pos, neg = click_maps([(70.0, 60.0, True)], 128, 160)
    with torch.inference_mode():
        before = plain(x, pos[None], neg[None])[0]
    assert plain.backbone._conv_stem.weight.is_contiguous()
    for model in (device.cpu_copy(plain), device.place(copy.deepcopy(plain), "The test model", torch.device("cpu"))):
        conv = model.backbone._conv_stem.weight
        assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
        with torch.inference_mode():
            feats = model.encode(x)   # an input in the default layout: the outputs follow the weights'
            after = model.decode(feats, pos[None], neg[None])[0]
        assert feats["s8"].is_contiguous(memory_format=torch.channels_last)
        assert torch.allclose(before, after, atol=1e-4 * float(before.abs().max()))
    assert plain.backbone._conv_stem.weight.is_contiguous()   # cpu_copy leaves the original's layout
    linear = torch.nn.Linear(3, 2)
    assert device.place(linear, "The test model", torch.device("cpu")) is linear   # no 4-D weights: as it is


def scene() -> np.ndarray:
    rgba = np.full((120, 160, 4), 255, np.uint8)
    rgba[..., :3] = (90, 140, 70)
    rgba[40:80, 50:100, :3] = (200, 40, 40)
    return rgba


@pytest.mark.parametrize("fail, error", [("set_image", out_of_memory), ("predict", cuda_error)])
def test_select_falls_back_to_the_cpu_for_the_request(fail, error, caplog):
    from backend.segment import ClickSegmenter
    cpu = ClickSegmenter(device="cpu")
    expected = DsnEngine(cpu).select(ImageEntry("a", scene()), [(75.0, 60.0, True)], None, lambda f, m: None)
    failing = FailingSegmenter(cpu, fail=fail, error=error)
    engine = DsnEngine(failing)
    assert engine.device() == "meta"
    with caplog.at_level(logging.WARNING, "simpson.device"):
        for i in range(2):   # each request tries the device again, and falls back again
            got = engine.select(ImageEntry(f"b{i}", scene()), [(75.0, 60.0, True)], None, lambda f, m: None)
            assert np.array_equal(got, expected)
    assert failing.failures == 2 and len(caplog.records) == 2
    assert all("Select (dsn engine) failed on meta" in r.getMessage() and
               r.getMessage().endswith("this request runs on the CPU.") for r in caplog.records)


def test_the_daemons_pipeline_answers_through_a_failing_device(caplog):
    from backend.segment import ClickSegmenter
    engines._built["dsn"] = DsnEngine(FailingSegmenter(ClickSegmenter(device="cpu")))
    try:
        with caplog.at_level(logging.WARNING, "simpson.device"):
            mask, name = Pipeline().select(ImageEntry("c", scene()), [(75.0, 60.0, True)], engine="dsn")
    finally:
        engines._built.pop("dsn", None)
    assert name == "dsn" and mask[60, 75] == 255 and mask[5, 5] == 0
    assert len(caplog.records) == 1


def test_similar_falls_back_with_cpu_copies_of_its_models(monkeypatch, caplog):
    from backend.engines.similar_pvm import PvmEngine
    from backend.models.pvm import PairVerifier
    from tests.unit.test_similar import BLUE, RED, ColourBackbone, disc_image, entry_of
    img, reds, _ = disc_image(RED, BLUE)
    torch.manual_seed(0)
    verifier = PairVerifier().eval()
    verifier.threshold.fill_(0.0)
    expected = PvmEngine(backbone=ColourBackbone(), model=verifier, segmenter=None).similar(
        entry_of(img), reds[0], lambda f, m: None)
    pretend(monkeypatch)
    backbone, model = FailingModule(ColourBackbone()), FailingModule(verifier)
    engine = PvmEngine(backbone=backbone, model=model, segmenter=None)
    assert engine.device() == "meta"
    with caplog.at_level(logging.WARNING, "simpson.device"):
        got = engine.similar(entry_of(img), reds[0], lambda f, m: None)
    assert [f.box for f in got] == [f.box for f in expected] and len(got) >= 3
    assert backbone.failures == 1 and model.failures == 0     # the backbone failed first; nothing after
    assert [r.getMessage()[:61] for r in caplog.records] == ["Select similar (pvm engine) failed on meta (OutOfMemoryError:"]
    # the verifier failing later in the request: the whole request again on the CPU
    caplog.clear()
    engine = PvmEngine(backbone=ColourBackbone(), model=FailingModule(verifier, cuda_error), segmenter=None)
    with caplog.at_level(logging.WARNING, "simpson.device"):
        got = engine.similar(entry_of(img), reds[0], lambda f, m: None)
    assert [f.box for f in got] == [f.box for f in expected] and len(caplog.records) == 1


def test_lama_falls_back_to_weights_loaded_on_the_cpu(tmp_path, caplog):
    from backend.engines.lama import TORCHSCRIPT_NAME, Inpainter, LamaEngine
    from tests.unit.test_lama import save_torchscript, tiny_generator
    save_torchscript(tiny_generator(), tmp_path / TORCHSCRIPT_NAME)
    rgb = np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    hole = np.zeros((64, 96), bool)
    hole[20:40, 30:60] = True
    expected = LamaEngine(tmp_path).erase(rgb, hole, lambda f, m: None)
    engine = LamaEngine(tmp_path)
    failures = []
    engine._fn = Inpainter(lambda image, mask: failures.append(1) or (_ for _ in ()).throw(out_of_memory()), FAKE)
    assert engine.device() == "meta"
    with caplog.at_level(logging.WARNING, "simpson.device"):
        got = engine.erase(rgb, hole, lambda f, m: None)
    assert np.array_equal(got, expected) and failures == [1]
    assert caplog.records[0].getMessage().startswith("Erase (lama engine) failed on meta (OutOfMemoryError")


# ---------------------------------------------------------------- what info and doctor say
def test_info_says_where_the_models_run(monkeypatch):
    machine(monkeypatch, cuda=False, mps=False)
    info = Pipeline().info()
    assert info["device"] == "cpu" and info["device_note"].startswith("auto: no CUDA GPU was found")
    assert all(e["device"] == "cpu" for e in info["engines"].values())


def test_doctor_shows_the_device_and_the_flag_forces_it(tmp_path):
    env = dict(os.environ, SIMPSON_HOME=str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"device": "cpu"}))
    r = subprocess.run([sys.executable, "-m", "backend", "doctor"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=120)
    line = next(s for s in r.stdout.splitlines() if s.strip().startswith("device"))
    assert line.split()[1] == "cpu" and "the CPU was asked for" in line, r.stdout + r.stderr
    assert " dsn       select                 cpu " in r.stdout
    r = subprocess.run([sys.executable, "-m", "backend", "doctor", "--device", "gpu"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "'gpu' is not one of auto, cpu, cuda, mps" in r.stderr


def test_the_plugins_line_says_what_info_says(monkeypatch):
    from simpson_client.status import backend_line
    info = {"device": "cuda", "engines": {
        "dsn": {"status": "ready", "device": "cuda"}, "pvm": {"status": "ready", "device": "cuda"},
        "lama": {"status": "ready", "device": "cpu"}, "classic": {"status": "ready", "device": "cpu"},
        "features": {"status": "The weights are missing.", "device": "cuda"}}}
    assert backend_line(info) == "Backend: ready on cuda (dsn, pvm; classic, lama on cpu)"
    assert backend_line({"device": "cpu", "engines": {}}) == "Backend: ready on cpu (no engine ready)"
    machine(monkeypatch, cuda=False, mps=False)
    line = backend_line(Pipeline().info())
    assert line.startswith("Backend: ready on cpu (") and "dsn" in line and " on " not in line[len("Backend: ready on cpu"):]


def test_a_probe_that_crashes_gives_the_cpu(monkeypatch):
    def broken(index=0):
        raise RuntimeError("CUDA driver initialization failed, you might not have a CUDA gpu.")
    monkeypatch.setattr(device, "probe_cuda", broken)
    c = device.chosen()
    assert c.device == "cpu" and c.reason.startswith("looking for a GPU failed (RuntimeError: CUDA driver")
    machine(monkeypatch, cuda=True, mps=False)
    assert device.choose("cuda:0").device == "cuda"
