"""install.py's choice of PyTorch build, with a fake nvidia-smi and a fake pip (nothing is
downloaded): --gpu without a GPU, and a CUDA build the driver is too old for, end with a sentence
and the CPU build."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO))
import install  # noqa: E402

PIN = install._torch_pin()


class FakePip:
    """Stands in for install.run: records the commands; a dry run offers the CUDA build (as PyPI
    does on Linux), `pip list` shows what a CUDA build installs."""

    def __init__(self):
        self.commands: list[list[str]] = []

    def __call__(self, cmd, what, **kw):
        self.commands.append(list(cmd[1:]))
        out = ""
        if "--report" in cmd:
            Path(cmd[cmd.index("--report") + 1]).write_text(json.dumps(
                {"install": [{"metadata": {"name": "torch"}}, {"metadata": {"name": "nvidia-cublas-cu12"}}]}))
        if "list" in cmd:
            out = json.dumps([{"name": "torch"}, {"name": "nvidia-cublas-cu12"}, {"name": "triton"},
                              {"name": "numpy"}])
        return subprocess.CompletedProcess(cmd, 0, out, "")

    def installs(self) -> list[list[str]]:
        return [c for c in self.commands if c[2] == "install" and "--dry-run" not in c and "-r" not in c]


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A made-up environment folder whose python 'exists' (no venv is created) and a fake pip."""
    py = install.venv_python(tmp_path / "venv")
    py.parent.mkdir(parents=True)
    py.write_text("")
    pip = FakePip()
    monkeypatch.setattr(install, "run", pip)
    monkeypatch.setattr(install, "NOTES", [])
    req = tmp_path / "requirements.txt"
    req.write_text(f"{PIN}\nnumpy\n")
    return tmp_path / "venv", req, pip


def fake_nvidia_smi(monkeypatch, rc: int, out: str) -> None:
    monkeypatch.setattr(install.shutil, "which", lambda name: "/usr/bin/nvidia-smi" if name == "nvidia-smi" else None)
    monkeypatch.setattr(install.subprocess, "run",
                        lambda cmd, **kw: subprocess.CompletedProcess(cmd, rc, out, ""))


def test_nvidia_smi_is_read_not_just_found(monkeypatch):
    monkeypatch.setattr(install.shutil, "which", lambda name: None)
    assert install.nvidia_gpu() is None
    fake_nvidia_smi(monkeypatch, 0, "NVIDIA GeForce RTX 3060, 550.54.14\n")
    assert install.nvidia_gpu() == ("NVIDIA GeForce RTX 3060", "550.54.14")
    fake_nvidia_smi(monkeypatch, 9, "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.")
    assert install.nvidia_gpu() is None


def test_gpu_asked_without_a_gpu_says_so_and_installs_the_cpu_build(env, monkeypatch, capsys):
    folder, req, pip = env
    monkeypatch.setattr(install, "nvidia_gpu", lambda: None)
    build = install.choose_build(gpu_asked=True)
    assert build == "cpu"
    install.ensure_env(folder, req, gpu=build)
    out = capsys.readouterr().out
    assert "--gpu: no NVIDIA GPU was found (nvidia-smi is missing or sees none), so the CPU build of PyTorch " \
           "is installed; SimpSON Erase runs on the CPU." in out
    assert pip.installs() == [["-m", "pip", "install", "--disable-pip-version-check", "-q", PIN,
                               "--index-url", install.CPU_INDEX]]
    assert install.NOTES and install.NOTES[0].startswith("--gpu: no NVIDIA GPU")
    # without --gpu and without a GPU: the CPU build, nothing to say
    install.NOTES.clear()
    assert install.choose_build(gpu_asked=False) == "cpu" and install.NOTES == []


def test_a_driver_too_old_for_the_cuda_build_ends_with_the_cpu_build(env, monkeypatch, capsys):
    folder, req, pip = env
    monkeypatch.setattr(install, "nvidia_gpu", lambda: ("NVIDIA GeForce GTX 960", "470.57.02"))
    checks = []
    monkeypatch.setattr(install, "cuda_check", lambda py: checks.append(py) or {
        "ok": False, "cuda": "12.8",
        "why": "The NVIDIA driver on your system is too old (found version 11040). Please update your GPU driver."})
    build = install.choose_build(gpu_asked=False)    # nvidia-smi present: the CUDA build is tried
    assert build == "470.57.02"
    install.ensure_env(folder, req, gpu=build)
    out = capsys.readouterr().out
    sentence = ("The CUDA build of PyTorch (CUDA 12.8) cannot use the GPU with NVIDIA driver 470.57.02 (The NVIDIA "
                "driver on your system is too old (found version 11040). Please update your GPU driver), so the CPU "
                "build is installed instead and SimpSON Erase runs on the CPU; update the NVIDIA driver and run "
                "install.py again to use the GPU.")
    assert sentence in out and install.NOTES == [sentence]
    assert pip.installs() == [["-m", "pip", "install", "--disable-pip-version-check", "-q", PIN],   # the CUDA build
                              ["-m", "pip", "install", "--disable-pip-version-check", "-q", PIN,   # then the CPU one
                               "--index-url", install.CPU_INDEX]]
    uninstall = next(c for c in pip.commands if "uninstall" in c)
    assert uninstall[-3:] == ["torch", "nvidia-cublas-cu12", "triton"]
    assert len(checks) == 1
    # the same driver again: nothing is downloaded again; a new driver tries the CUDA build again
    pip.commands.clear()
    install.ensure_env(folder, req, gpu=build)
    assert pip.commands == [] and "is up to date" in capsys.readouterr().out
    install.ensure_env(folder, req, gpu="550.54.14")
    assert pip.installs()[0] == ["-m", "pip", "install", "--disable-pip-version-check", "-q", PIN]


def test_a_working_gpu_keeps_the_cuda_build(env, monkeypatch, capsys):
    folder, req, pip = env
    monkeypatch.setattr(install, "cuda_check", lambda py: {"ok": True, "cuda": "12.8", "why": ""})
    install.ensure_env(folder, req, gpu="550.54.14")
    assert pip.installs() == [["-m", "pip", "install", "--disable-pip-version-check", "-q", PIN]]
    assert "PyTorch uses the GPU (CUDA 12.8)" in capsys.readouterr().out and install.NOTES == []


def test_the_check_runs_in_the_environment_and_reports_a_cpu_build():
    """cuda_check with this test environment's own PyTorch (the CPU build on CI machines)."""
    import torch
    check = install.cuda_check(Path(sys.executable))
    if torch.version.cuda is None:
        assert check == {"ok": False, "cuda": None, "why": "torch.cuda.is_available() is False"}
    else:
        assert check["ok"] == torch.cuda.is_available()
    assert install.cuda_check(Path("/nonexistent/python"))["why"].startswith("PyTorch did not start (")
