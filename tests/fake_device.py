"""A device that fails, for the CPU-fallback tests (no GPU needed).

Stand-ins report torch's "meta" device (which every PyTorch build has; inputs moved there cost
nothing) and fail the way a GPU does mid-request: CUDA out of memory, or a CUDA error. Their CPU
copies are real CPU models, so a request that falls back gives the CPU's answer.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from backend import device

FAKE = torch.device("meta")


def out_of_memory() -> Exception:
    return torch.cuda.OutOfMemoryError(
        "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 3.94 GiB total capacity; 3.10 GiB already allocated)")


def cuda_error() -> Exception:
    return RuntimeError("CUDA error: an illegal memory access was encountered\nCUDA kernel errors might be "
                        "asynchronously reported at some other API call")


class FailingSegmenter:
    """A ClickSegmenter on the failing device: `fail` ("set_image" or "predict") raises `error()`;
    on_cpu() is the real CPU segmenter it stands for."""

    def __init__(self, cpu_segmenter: Any, fail: str = "predict", error: Callable[[], Exception] = out_of_memory):
        self.device, self.cpu, self.fail, self.error = FAKE, cpu_segmenter, fail, error
        self.failures = 0

    def set_image(self, rgb):
        if self.fail == "set_image":
            self.failures += 1
            raise self.error()
        return "an encoding on the failing device"

    def predict(self, embedding, points, prev_mask=None, size=None):
        self.failures += 1
        raise self.error()

    def on_cpu(self):
        return self.cpu


class FailingModule(torch.nn.Module):
    """Wraps a CPU module; on the failing device (see `pretend`) its forward raises `error()`."""

    def __init__(self, inner: torch.nn.Module, error: Callable[[], Exception] = out_of_memory):
        super().__init__()
        self.inner, self.error, self.failures = inner, error, 0

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        self.failures += 1
        raise self.error()

    def __getattr__(self, name: str) -> Any:   # the inner module's attributes (a PVM's threshold)
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("inner"), name)


def pretend(monkeypatch, run_on: torch.device = FAKE) -> None:
    """backend/device.py sees every FailingModule on the failing device, their CPU copies are
    the modules they wrap, and the process's device is `run_on`."""
    real_device_of, real_cpu_copy = device.device_of, device.cpu_copy
    monkeypatch.setattr(device, "device_of",
                        lambda m: FAKE if isinstance(m, FailingModule) else real_device_of(m))
    monkeypatch.setattr(device, "cpu_copy",
                        lambda m: m.inner if isinstance(m, FailingModule) else real_cpu_copy(m))
    monkeypatch.setattr(device, "current", lambda: run_on)
