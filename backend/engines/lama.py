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

import re
import threading
import warnings
from pathlib import Path
from typing import Any, Callable, Optional

import cv2
import numpy as np

from . import Engine, EngineUnavailable, Progress

WORK_SIDE = 1024
PAD_MOD = 8
TORCHSCRIPT_NAME = "big-lama.pt"
CHECKPOINT_NAME = "big-lama.ckpt"

Inpaint = Callable[[Any, Any], Any]   # (image 1×3×H×W, mask 1×1×H×W) -> 1×3×H×W, all 0..1


def weights_dir() -> Path:
    from simpson_client.settings import default_home  # noqa: PLC0415
    return default_home() / "weights"


def find_weights(folder: Optional[Path] = None) -> Optional[Path]:
    folder = folder or weights_dir()
    for name in (TORCHSCRIPT_NAME, CHECKPOINT_NAME):
        if (folder / name).is_file():
            return folder / name
    return None


# ---------------------------------------------------------------- loading
class _Opaque:
    """Stands in for any non-tensor object in a checkpoint (hyper-parameters, loop state…):
    it records its arguments and state and runs no code of the class it replaces."""

    def __new__(cls, *args: Any, **kwargs: Any) -> "_Opaque":
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.state = state


def load_checkpoint_dict(path: Path) -> dict[str, Any]:
    """torch.load with weights_only=True. Classes the weights-only unpickler does not know
    (a Lightning checkpoint's OmegaConf hyper-parameters, say) are replaced by inert stubs,
    so no code from the file ever runs."""
    import torch  # noqa: PLC0415
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as first:  # noqa: BLE001 - retried with stubs below
        unknown = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        if not unknown:
            raise first
        stubs = [(type(name.rsplit(".", 1)[-1], (_Opaque,), {}), name) for name in unknown]
        with torch.serialization.safe_globals(stubs):
            return torch.load(path, map_location="cpu", weights_only=True)


def generator_state(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The generator's tensors of a Lightning checkpoint, `generator.` stripped."""
    sd = ckpt.get("state_dict", ckpt)
    out = {k[len("generator."):]: v for k, v in sd.items() if k.startswith("generator.")}
    if not out:
        raise ValueError("no generator.* weights in the checkpoint")
    return out


def generator_config(sd: dict[str, Any]) -> dict[str, int]:
    """ngf, n_downsampling and n_blocks read off the state dict's shapes and indices."""
    blocks = {int(m.group(1)) for k in sd if (m := re.match(r"model\.(\d+)\.conv1\.ffc\.", k))}
    if not blocks:
        raise ValueError("no FFC resnet blocks in the checkpoint")
    return {"ngf": int(sd["model.1.ffc.convl2l.weight"].shape[0]),
            "n_downsampling": min(blocks) - 2, "n_blocks": len(blocks)}


def load_generator(path: Path) -> Any:
    """Our LamaGenerator with the weights of a Lightning checkpoint (strict)."""
    from ..models.lama import LamaGenerator  # noqa: PLC0415
    sd = generator_state(load_checkpoint_dict(path))
    model = LamaGenerator(**generator_config(sd))
    model.load_state_dict(sd, strict=True)
    return model.eval()


def load_inpainter(path: Path) -> Inpaint:
    """A callable with the TorchScript contract, for either weights format."""
    import torch  # noqa: PLC0415
    if path.suffix == ".pt":
        with warnings.catch_warnings():    # torch.jit is deprecated but is what big-lama.pt needs
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location="cpu").eval()
        return lambda image, mask: module(image, mask)
    from ..models.lama import inpaint  # noqa: PLC0415
    generator = load_generator(path)
    return lambda image, mask: inpaint(generator, image, mask)


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
    with torch.inference_mode():
        out = fn(torch.from_numpy(img).permute(2, 0, 1)[None].contiguous(), torch.from_numpy(msk)[None, None])
    res = np.clip(out[0].permute(1, 2, 0).numpy()[:sh, :sw] * 255.0 + 0.5, 0, 255).astype(np.uint8)
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
        self._fn: Optional[Inpaint] = None
        self._error = ""
        self._lock = threading.Lock()

    def status(self) -> str:
        if self._error:
            return self._error
        if self._fn is not None or find_weights(self.folder) is not None:
            return "ready"
        folder = self.folder or weights_dir()
        return (f"LaMa needs its weights: run `python3 install.py --lama` (downloads {TORCHSCRIPT_NAME}, "
                f"about 200 MB) or put {TORCHSCRIPT_NAME} or {CHECKPOINT_NAME} into {folder}.")

    def _model(self) -> Inpaint:
        with self._lock:
            if self._fn is None:
                path = find_weights(self.folder)
                if path is None:
                    raise EngineUnavailable(self.status())
                try:
                    self._fn = load_inpainter(path)
                except Exception as e:  # noqa: BLE001 - any failure becomes one sentence
                    self._error = (f"The LaMa weights in {path} could not be loaded ({type(e).__name__}); "
                                   f"delete the file and run `python3 install.py --lama` again.")
                    raise EngineUnavailable(self._error) from e
            return self._fn

    def erase(self, rgb: np.ndarray, hole: np.ndarray, progress: Progress) -> np.ndarray:
        progress(0.1, "Loading LaMa")
        fn = self._model()
        progress(0.2, "Inpainting with LaMa")
        return run_inpainter(fn, rgb, hole)
