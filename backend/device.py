"""Where the models run: one choice for the whole process, one way to fall back to the CPU.

The preference, first found: `set_preference` (the daemon's and the CLI's --device flag),
config.json's "device" key, "auto". Values: auto | cpu | cuda | cuda:N | mps.
auto = CUDA, then Apple MPS, then the CPU. A device asked for that is not usable (no GPU, a CPU
build of PyTorch, a driver too old) gives the CPU and a sentence saying why (doctor, info, log).

Every engine puts its models on `current()` with `place` (a model that does not fit stays on the
CPU; on the CPU a convolutional net keeps its weights channels-last, `cpu_layout`) and runs each
request through `run`: a device failure there (CUDA out of memory, any other
CUDA/MPS error) runs that request again on the CPU, with one sentence in the log. Results then
come from CPU copies of the models, made on the first fallback (`cpu_copy`).

    dev = device.current()                     # torch.device: cuda, mps or cpu
    model = device.place(model, "LaMa")        # on dev, or on the CPU when it does not fit
    out = device.run("erase (lama)", dev, lambda: on(dev), lambda: on(cpu))
"""
from __future__ import annotations

import copy
import logging
import re
import threading
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Optional, TypeVar

log = logging.getLogger("simpson.device")

CHOICES = ("auto", "cpu", "cuda", "mps")   # and cuda:N
_VALID = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
# words that mark an exception as the device's fault, not the code's
_DEVICE_WORDS = ("cuda", "cudnn", "cublas", "cufft", "nvrtc", "out of memory", "mps", "hip error",
                 "device-side assert", "accelerator")

T = TypeVar("T")


@dataclass(frozen=True)
class Choice:
    device: str          # "cuda", "cuda:1", "mps" or "cpu": where the models run
    asked: str           # the preference it came from ("auto", "cuda", …)
    reason: str          # one sentence: why this device (doctor, info, the log)
    name: str = ""       # the accelerator's name ("NVIDIA GeForce RTX 3060"), "" for the CPU

    @property
    def note(self) -> str:
        """info's device_note: "NVIDIA GeForce RTX 3060; auto: a CUDA GPU was found"."""
        return f"{self.name}; {self.reason}" if self.name else self.reason


_lock = threading.Lock()
_preference: Optional[str] = None     # set by the command line; None = config.json / auto
_choice: Optional[Choice] = None


def valid(preference: str) -> bool:
    return bool(_VALID.match(preference or ""))


def set_preference(preference: Optional[str]) -> None:
    """The command line's --device (None: back to config.json / auto). ValueError when unknown."""
    global _preference, _choice
    if preference is not None and not valid(preference):
        raise ValueError(f"Unknown device {preference!r}; use one of {', '.join(CHOICES)} (or cuda:N).")
    with _lock:
        _preference, _choice = preference, None


def preference() -> str:
    """The device asked for: the command line's, else config.json's "device", else "auto"."""
    if _preference is not None:
        return _preference
    from simpson_client import settings as client_settings  # noqa: PLC0415
    cfg = client_settings.load()
    asked = (cfg.device or "auto").strip().lower()
    if not valid(asked):
        log.warning("config.json: device %r is not one of %s; using auto", cfg.device, ", ".join(CHOICES))
        return "auto"
    return asked


# ---------------------------------------------------------------- probing (tests replace these)
def probe_cuda(index: int = 0) -> tuple[bool, str]:
    """(usable, name or why not): CUDA device `index` exists and runs a tiny computation."""
    import torch  # noqa: PLC0415
    if torch.version.cuda is None:
        return False, "this PyTorch is a CPU-only build"
    with warnings.catch_warnings(record=True) as caught:   # a driver too old says so in a warning
        warnings.simplefilter("always")
        available = torch.cuda.is_available()
    if not available:
        why = next((str(w.message).split("\n")[0] for w in caught if "cuda" in str(w.message).lower()), "")
        return False, f"CUDA is not usable ({why.rstrip('.')})" if why else "no CUDA GPU was found"
    if index >= torch.cuda.device_count():
        return False, f"there is no CUDA device {index} (found {torch.cuda.device_count()})"
    try:
        (torch.ones(2, device=f"cuda:{index}") * 2).sum().item()
    except Exception as e:  # noqa: BLE001 - any failure means: not usable
        return False, f"CUDA failed a first test ({first_line(e)})"
    return True, torch.cuda.get_device_name(index)


def probe_mps() -> tuple[bool, str]:
    """(usable, name or why not): Apple's Metal device."""
    import torch  # noqa: PLC0415
    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_available():
        return False, "no Apple GPU (MPS) was found"
    try:
        (torch.ones(2, device="mps") * 2).sum().item()
    except Exception as e:  # noqa: BLE001
        return False, f"MPS failed a first test ({first_line(e)})"
    return True, "Apple GPU (MPS)"


# ---------------------------------------------------------------- the choice
def choose(asked: Optional[str] = None) -> Choice:
    """The device for `asked` (default: `preference()`); never raises."""
    asked = asked or preference()
    if asked == "cpu":
        return Choice("cpu", asked, "the CPU was asked for")
    if asked.startswith("cuda"):
        ok, what = probe_cuda(int(asked.split(":")[1]) if ":" in asked else 0)
        if ok:
            return Choice("cuda" if asked == "cuda:0" else asked, asked, f"{asked} was asked for", what)
        return Choice("cpu", asked, f"{asked} was asked for, but {what}; running on the CPU")
    if asked == "mps":
        ok, what = probe_mps()
        if ok:
            return Choice("mps", asked, "mps was asked for", what)
        return Choice("cpu", asked, f"mps was asked for, but {what}; running on the CPU")
    ok, cuda_why = probe_cuda()
    if ok:
        return Choice("cuda", asked, "auto: a CUDA GPU was found", cuda_why)
    ok, mps_why = probe_mps()
    if ok:
        return Choice("mps", asked, "auto: an Apple GPU was found", mps_why)
    return Choice("cpu", asked, f"auto: {cuda_why}, and {mps_why}")


def chosen() -> Choice:
    """The process's choice, made once (again after set_preference)."""
    global _choice
    with _lock:
        if _choice is None:
            asked = _preference or preference()
            try:
                _choice = choose(asked)
            except Exception as e:  # noqa: BLE001 - a broken driver must not stop the daemon
                _choice = Choice("cpu", asked, f"looking for a GPU failed ({first_line(e)}); running on the CPU")
            if _choice.device.startswith("cuda"):
                keep_float32()
            (log.warning if _choice.device == "cpu" and _choice.asked not in ("auto", "cpu") else log.info)(
                "device: %s (%s)", _choice.device, _choice.reason)
        return _choice


def keep_float32() -> None:
    """Full float32 on CUDA: PyTorch may run convolutions in TF32 (10-bit mantissa) on Ampere and
    newer GPUs, which the CPU results (masks, erase within 1 grey level) were never checked
    against; half or TF32 precision only where measured to keep them (issue 24)."""
    import torch  # noqa: PLC0415
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def current() -> Any:
    """torch.device of the choice."""
    import torch  # noqa: PLC0415
    return torch.device(chosen().device)


def cpu() -> Any:
    import torch  # noqa: PLC0415
    return torch.device("cpu")


def label(dev: Any) -> str:
    """How info and doctor name a device: "cuda", "cuda:1", "mps", "cpu" (None: the CPU)."""
    import torch  # noqa: PLC0415
    if dev is None:
        return "cpu"
    dev = torch.device(dev)
    return dev.type if dev.index in (None, 0) else str(dev)


def describe() -> str:
    """One line for doctor: "cuda (NVIDIA …; auto: a CUDA GPU was found)"."""
    c = chosen()
    return f"{c.device} ({c.note})"


# ---------------------------------------------------------------- placing models
def device_of(module: Any) -> Any:
    """The device of a module's first parameter or buffer (the CPU when it has none, or is not
    an nn.Module: a stand-in in a test)."""
    import torch  # noqa: PLC0415
    for tensors in (getattr(module, "parameters", None), getattr(module, "buffers", None)):
        for t in tensors() if callable(tensors) else ():
            return t.device
    return torch.device("cpu")


def place(module: T, what: str, dev: Any = None) -> T:
    """`module` moved to `dev` (default: current()); a device failure while moving it (too little
    free memory) leaves it on the CPU, with one sentence in the log. On the CPU in `cpu_layout`."""
    dev = current() if dev is None else dev
    if dev.type == "cpu":
        return cpu_layout(module)
    try:
        return module.to(dev)
    except Exception as e:  # noqa: BLE001 - only device failures are handled
        if not is_failure(e):
            raise
        failure = first_line(e)
    release(dev)
    log.warning("%s does not fit on %s (%s); it runs on the CPU.", what, dev, failure)
    return cpu_layout(module.to("cpu"))


def cpu_layout(module: T) -> T:
    """`module` (on the CPU) with its 4-D weights in the channels-last (NHWC) layout when it has any
    (a convolutional net): oneDNN's convolutions run the one-click model, the select-similar
    backbone, the CPN and LaMa (a TorchScript module too) faster in it, and a convolution's output
    follows its weights' layout whatever the input's (`bench/layout.py`; docs/models.md,
    "Thirty-fifth session"). Any other module is returned as it is. On an accelerator a module
    keeps its layout (`place`): not measured there."""
    import torch  # noqa: PLC0415
    parameters = getattr(module, "parameters", None)
    if callable(parameters) and any(p.dim() == 4 for p in parameters()):
        return module.to(memory_format=torch.channels_last)
    return module


def cpu_copy(module: T) -> T:
    """A copy of an nn.Module with its tensors on the CPU, in `cpu_layout`; the original stays where
    it is and no device memory is allocated for the copy."""
    import torch  # noqa: PLC0415
    memo: dict[int, Any] = {}
    for p in module.parameters():
        memo[id(p)] = torch.nn.Parameter(p.detach().to("cpu", copy=True), requires_grad=p.requires_grad)
    for b in module.buffers():
        memo[id(b)] = b.detach().to("cpu", copy=True)
    return cpu_layout(copy.deepcopy(module, memo))


# ---------------------------------------------------------------- running requests
def first_line(e: BaseException) -> str:
    text = str(e).strip().split("\n")[0]
    return f"{type(e).__name__}: {text[:200]}" if text else type(e).__name__


def is_failure(e: BaseException) -> bool:
    """True when `e` is the device's fault: CUDA/MPS out of memory, a CUDA or MPS error."""
    import torch  # noqa: PLC0415
    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(e, oom):
        return True
    accel = getattr(torch, "AcceleratorError", None)
    if accel is not None and isinstance(e, accel):
        return True
    if not isinstance(e, RuntimeError):
        return False
    text = str(e).lower()
    return any(word in text for word in _DEVICE_WORDS)


def release(dev: Any) -> None:
    """Give cached device memory back after a failure (best effort)."""
    import torch  # noqa: PLC0415
    try:
        if dev.type == "cuda":
            torch.cuda.empty_cache()
        elif dev.type == "mps":
            torch.mps.empty_cache()
    except Exception:  # noqa: BLE001 - a broken device may refuse this too
        pass


def run(what: str, dev: Any, on_device: Callable[[], T], on_cpu: Callable[[], T]) -> T:
    """on_device(); when it fails because of the device (not the CPU), on_cpu() for this
    request, with one sentence in the log. Other exceptions pass through. dev: where on_device
    runs (a torch.device or its name; None = the CPU)."""
    import torch  # noqa: PLC0415
    dev = None if dev is None else torch.device(dev)
    if dev is None or dev.type == "cpu":
        return on_device()
    try:
        return on_device()
    except Exception as e:  # noqa: BLE001 - only device failures are handled
        if not is_failure(e):
            raise
        failure = first_line(e)
    # outside the except block: the failed attempt's frames (and device tensors) are gone
    release(dev)
    log.warning("%s failed on %s (%s); this request runs on the CPU.", what, dev, failure)
    return on_cpu()
