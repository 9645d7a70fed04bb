"""The LaMa engine: big-lama (Suvorov et al. 2022) from weights the user supplies.

Weights, looked up in SIMPSON_HOME/weights/ (first found wins):
  big-lama.pt    the TorchScript export IOPaint uses (`python3 install.py` downloads it);
                 forward(image, mask) -> composite, image 1×3×H×W RGB 0..1, mask 1×1×H×W {0,1}
  big-lama.ckpt  the originally released Lightning checkpoint (big-lama/models/best.ckpt),
                 run through our own generator (backend/models/lama.py)

Big crops follow IOPaint's default Crop strategy: a crop longer than CROP_TRIGGER is cut into
windows, each hole's box plus CROP_MARGIN on every side (overlapping windows merged), and each
window is inpainted at full resolution; only a window still longer than RESIZE_LIMIT is shrunk.
Each window is mirror-padded to a multiple of 8, inpainted, cropped, resized back if it was
shrunk and composited (pixels outside the hole are the input's).
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable, Optional

import cv2
import numpy as np

from .. import device, weights
from ..masks import Parts, merge_overlapping
from . import Engine, EngineUnavailable, Progress

CROP_TRIGGER = 800    # IOPaint's hd_strategy_crop_trigger_size: longer crops are cut around each hole
CROP_MARGIN = 128     # IOPaint's hd_strategy_crop_margin: context on every side of a hole's box
RESIZE_LIMIT = 1280   # IOPaint's hd_strategy_resize_limit: a window still longer is shrunk to this
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
def windows(hole: np.ndarray, trigger: int = CROP_TRIGGER, margin: int = CROP_MARGIN
            ) -> list[tuple[int, int, int, int]]:
    """Boxes (x0, y0, x1, y1) to inpaint, as IOPaint's Crop strategy: the whole crop when its long
    side is at most `trigger`, else each group of hole pixels' box grown by `margin` on every side
    (shifted inward at the borders to keep its context, as IOPaint does); windows that overlap
    are merged, so every hole pixel lies in exactly one window together with its whole group."""
    h, w = hole.shape
    if max(h, w) <= trigger:
        return [(0, 0, w, h)]
    parts = Parts(hole)
    boxes = []
    for i in range(1, parts.count + 1):
        x, y, bw, bh = parts.box(i)
        (x0, x1), (y0, y1) = _grow(x, x + bw, margin, w), _grow(y, y + bh, margin, h)
        boxes.append([x0, y0, x1, y1])
    return merge_overlapping(boxes)


def _grow(lo: int, hi: int, margin: int, size: int) -> tuple[int, int]:
    """[lo, hi) grown by margin on both sides inside [0, size), what falls off one side added to the other."""
    lo, hi = lo - margin, hi + margin
    if lo < 0:
        hi, lo = hi - lo, 0
    if hi > size:
        lo, hi = lo - (hi - size), size
    return max(0, lo), min(size, hi)


def inpaint_crop(fn: Inpaint, rgb: np.ndarray, hole: np.ndarray, progress: Optional[Progress] = None,
                 resize_limit: int = RESIZE_LIMIT) -> np.ndarray:
    """The engine's strategy on one crop from the pipeline: each window of `windows(hole)` inpainted
    (shrunk only when longer than resize_limit); -> h×w×3 uint8, only hole pixels changed."""
    result = rgb.copy()
    boxes = windows(hole)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        if progress is not None:
            progress(0.2 + 0.75 * i / len(boxes), "Inpainting with LaMa" + (
                f" (part {i + 1} of {len(boxes)})" if len(boxes) > 1 else ""))
        sub = hole[y0:y1, x0:x1]
        filled = run_inpainter(fn, rgb[y0:y1, x0:x1], sub, resize_limit)
        result[y0:y1, x0:x1][sub] = filled[sub]
    return result


def run_inpainter(fn: Inpaint, rgb: np.ndarray, hole: np.ndarray, work_side: int = RESIZE_LIMIT) -> np.ndarray:
    """One window: rgb h×w×3 uint8, hole h×w bool -> h×w×3 uint8, shrunk to work_side on its long
    side first when longer; pixels outside the hole are unchanged."""
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
        return (f"LaMa needs its weights: run `python3 install.py` (downloads {TORCHSCRIPT_NAME}, "
                f"about 200 MB) or put {TORCHSCRIPT_NAME} or {CHECKPOINT_NAME} into {folder}.")

    def weights_note(self) -> str:
        """For doctor: which weights are there, and whether they are the published file."""
        path = find_weights(self.folder)
        if path is None:
            return "LaMa's weights are not installed: run `python3 install.py`"
        if self._error:
            return self._error.rstrip(".")
        if path.suffix != ".pt":
            return f"{path.name} found in {path.parent}; no checksum is published for it"
        want = weights.MODELS["lama"].md5
        got = weights.md5_of(path)
        if got == want:
            return f"{path.name} found in {path.parent}, md5 ok"
        return (f"{path.name} found in {path.parent}, but its md5 {got} is not the published {want}: it is "
                "used as it is; if erasing fails, run `python3 install.py` to replace it")

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
                                   f"delete the file and run `python3 install.py` again.")
                    raise EngineUnavailable(self._error) from e
            return self._cpu if on_cpu else self._fn

    def erase(self, rgb: np.ndarray, hole: np.ndarray, progress: Progress) -> np.ndarray:
        progress(0.1, "Loading LaMa")
        fn = self._model()
        return device.run("Erase (lama engine)", fn.device, lambda: inpaint_crop(fn, rgb, hole, progress),
                          lambda: inpaint_crop(self._model(on_cpu=True), rgb, hole, progress))
