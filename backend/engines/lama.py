"""The LaMa engine: big-lama (Suvorov et al. 2022) from weights the user supplies.

Weights, looked up in SIMPSON_HOME/weights/ (first found wins):
  big-lama.pt    the TorchScript export IOPaint uses (`python3 install.py --lama` downloads it);
                 forward(image, mask) -> composite, image 1×3×H×W RGB 0..1, mask 1×1×H×W {0,1}
  big-lama.ckpt  the originally released Lightning checkpoint (big-lama/models/best.ckpt),
                 run through our own generator (backend/models/lama.py)

The crop is resized to at most WORK_SIDE on its long side, mirror-padded to a multiple of 8,
inpainted, cropped, resized back and composited (pixels outside the hole are the input's).
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable, Optional

import cv2
import numpy as np

from .. import device, weights
from . import Engine, EngineUnavailable, Progress

WORK_SIDE = 1024
PAD_MOD = 8
TORCHSCRIPT_NAME = weights.MODELS["lama"].file
CHECKPOINT_NAME = weights.MODELS["lama-ckpt"].file

Inpaint = Callable[[Any, Any], Any]   # (image 1×3×H×W, mask 1×1×H×W) -> 1×3×H×W, all 0..1


def find_weights(folder: Optional[Path] = None) -> Optional[Path]:
    folder = folder or weights.home_dir()
    for name in (TORCHSCRIPT_NAME, CHECKPOINT_NAME):
        if (folder / name).is_file():
            return folder / name
    return None


# ---------------------------------------------------------------- loading
class Inpainter:
    """The TorchScript contract (image, mask) -> composite, and the device its model is on."""

    def __init__(self, fn: Inpaint, dev: Any):
        self.fn, self.device = fn, dev

    def __call__(self, image: Any, mask: Any) -> Any:
        return self.fn(image, mask)


def load_inpainter(path: Path, dev: Any = None) -> Inpainter:
    """A callable with the TorchScript contract, for either weights format (backend/weights.py),
    on `dev` (default: backend/device.py's choice; the CPU when the model does not fit there)."""
    if path.suffix == ".pt":
        module = device.place(weights.load("lama", path), "LaMa", dev)
        return Inpainter(lambda image, mask: module(image, mask), device.device_of(module))
    from ..models.lama import inpaint  # noqa: PLC0415
    generator = device.place(weights.load("lama-ckpt", path), "LaMa", dev)
    return Inpainter(lambda image, mask: inpaint(generator, image, mask), device.device_of(generator))


# ---------------------------------------------------------------- running
def run_inpainter(fn: Inpaint, rgb: np.ndarray, hole: np.ndarray, work_side: int = WORK_SIDE) -> np.ndarray:
    """rgb h×w×3 uint8, hole h×w bool -> h×w×3 uint8; pixels outside the hole are unchanged."""
    import torch  # noqa: PLC0415
    h, w = hole.shape
    scale = min(1.0, work_side / max(h, w))
    size = (max(8, round(w * scale)), max(8, round(h * scale)))
    small = rgb if scale == 1.0 else cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    m = hole.astype(np.float32)
    m_small = m if scale == 1.0 else (cv2.resize(m, size, interpolation=cv2.INTER_AREA) > 0).astype(np.float32)
    sh, sw = m_small.shape
    ph, pw = -sh % PAD_MOD, -sw % PAD_MOD
    img = np.pad(small, ((0, ph), (0, pw), (0, 0)), mode="symmetric").astype(np.float32) / 255.0
    msk = np.pad(m_small, ((0, ph), (0, pw)), mode="symmetric")
    dev = getattr(fn, "device", None) or torch.device("cpu")   # where fn's model is
    with torch.inference_mode():
        out = fn(torch.from_numpy(img).permute(2, 0, 1)[None].contiguous().to(dev),
                 torch.from_numpy(msk)[None, None].to(dev))
    res = np.clip(out[0].permute(1, 2, 0).float().cpu().numpy()[:sh, :sw] * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if scale != 1.0:
        res = cv2.resize(res, (w, h), interpolation=cv2.INTER_CUBIC)
    result = rgb.copy()
    result[hole] = res[hole]
    return result


class LamaEngine(Engine):
    name = "lama"
    ops = frozenset({"erase"})

    def __init__(self, folder: Optional[Path] = None):
        self.folder = folder
        self._fn: Optional[Inpainter] = None
        self._cpu: Optional[Inpainter] = None    # loaded on the CPU after a device failure
        self._error = ""
        self._lock = threading.Lock()

    def status(self) -> str:
        if self._error:
            return self._error
        if self._fn is not None or find_weights(self.folder) is not None:
            return "ready"
        folder = self.folder or weights.home_dir()
        return (f"LaMa needs its weights: run `python3 install.py --lama` (downloads {TORCHSCRIPT_NAME}, "
                f"about 200 MB) or put {TORCHSCRIPT_NAME} or {CHECKPOINT_NAME} into {folder}.")

    def device(self) -> str:
        return device.label(self._fn.device) if self._fn is not None else device.chosen().device

    def _model(self, on_cpu: bool = False) -> Inpainter:
        with self._lock:
            if (self._cpu if on_cpu else self._fn) is None:
                path = find_weights(self.folder)
                if path is None:
                    raise EngineUnavailable(self.status())
                try:
                    if on_cpu:
                        self._cpu = load_inpainter(path, device.cpu())
                    else:
                        self._fn = load_inpainter(path)
                except Exception as e:  # noqa: BLE001 - any failure becomes one sentence
                    self._error = (f"The LaMa weights in {path} could not be loaded ({type(e).__name__}); "
                                   f"delete the file and run `python3 install.py --lama` again.")
                    raise EngineUnavailable(self._error) from e
            return self._cpu if on_cpu else self._fn

    def erase(self, rgb: np.ndarray, hole: np.ndarray, progress: Progress) -> np.ndarray:
        progress(0.1, "Loading LaMa")
        fn = self._model()
        progress(0.2, "Inpainting with LaMa")
        return device.run("Erase (lama engine)", fn.device, lambda: run_inpainter(fn, rgb, hole),
                          lambda: run_inpainter(self._model(on_cpu=True), rgb, hole))
