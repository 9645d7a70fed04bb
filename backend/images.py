"""Pixel arrays: wire bytes <-> numpy, image files for the CLI (any PNG/JPEG/TIFF PIL reads)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from simpson_client import protocol


def from_wire(data: object, width: int, height: int, fmt: str) -> np.ndarray:
    """Wire bytes -> H×W×4 read-only array (uint8 for rgba8, uint16 for rgba16).

    No copy on little-endian machines: the array keeps the received frame alive."""
    wire = np.dtype(np.uint8) if fmt == "rgba8" else np.dtype("<u2")
    native = np.dtype(np.uint8) if fmt == "rgba8" else np.dtype(np.uint16)
    return np.frombuffer(data, dtype=wire).reshape(height, width, 4).astype(native, copy=False)


def mask_from_wire(spec: dict, payload: list, width: int, height: int) -> np.ndarray:
    """A request's mask -> H×W uint8: {"frame": i} holds width×height bytes; {"frame": i, "box":
    [x, y, w, h]} holds the box's w×h bytes and everything outside the box is 0 (as replies send masks)."""
    if spec.get("box") is None:
        data = protocol.frame_ref(spec, "mask", payload, width * height)
        return np.frombuffer(data, np.uint8).reshape(height, width)
    x, y, w, h = protocol.box(spec["box"])
    if x < 0 or y < 0 or x + w > width or y + h > height:
        raise protocol.ProtocolError("bad_request", f"The mask's box {[x, y, w, h]} is not inside the {width}x{height} image.")
    crop = protocol.frame_ref(spec, "mask", payload, w * h)
    full = np.zeros((height, width), np.uint8)
    full[y:y + h, x:x + w] = np.frombuffer(crop, np.uint8).reshape(h, w)
    return full


def to_wire(pixels: np.ndarray) -> bytes:
    if pixels.dtype == np.uint16:
        return pixels.astype("<u2").tobytes()
    return np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()


def wire_format(pixels: np.ndarray) -> str:
    return "rgba16" if pixels.dtype == np.uint16 else "rgba8"


def to_rgb8(pixels: np.ndarray) -> np.ndarray:
    """RGBA (8 or 16 bit) -> RGB uint8 for the engines (alpha ignored)."""
    import cv2
    if pixels.dtype == np.uint16:
        rgb = pixels[..., :3]
        return ((rgb.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    return cv2.cvtColor(pixels, cv2.COLOR_RGBA2RGB)


def load_image(path: Path) -> np.ndarray:
    """An image file -> H×W×4 RGBA, uint8 or uint16 (16-bit files keep their depth; grey -> RGB)."""
    import cv2
    try:
        with PILImage.open(path) as im:   # reads only the header: check the size before decoding
            w, h = im.size
    except (OSError, ValueError) as e:
        raise ValueError(f"Cannot read image {path}: {e}") from None
    if w * h > protocol.MAX_PIXELS or max(w, h) > protocol.MAX_SIDE:
        raise ValueError(f"Image {path} is {w}x{h}, over the {protocol.MAX_PIXELS // 1_000_000}-megapixel limit.")
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.dtype not in (np.uint8, np.uint16):
        with PILImage.open(path) as im:
            return np.asarray(im.convert("RGBA"), dtype=np.uint8).copy()
    top = np.iinfo(arr.dtype).max
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[2] == 1:
        rgb = np.repeat(arr, 3, axis=2)
    elif arr.shape[2] == 2:   # grey + alpha
        return np.dstack([arr[..., :1]] * 3 + [arr[..., 1:]])
    else:
        rgb = arr[..., 2::-1]
    alpha = arr[..., 3:4] if arr.shape[2] == 4 else np.full(rgb.shape[:2] + (1,), top, arr.dtype)
    return np.ascontiguousarray(np.concatenate([rgb, alpha], axis=2))


def load_mask(path: Path, width: int, height: int) -> np.ndarray:
    """An 8-bit mask file (any mode; >= 128 is selected) -> H×W uint8 0/255."""
    try:
        im = PILImage.open(path)
        im.load()
    except (OSError, ValueError) as e:
        raise ValueError(f"Cannot read mask {path}: {e}") from None
    if im.size != (width, height):
        raise ValueError(f"Mask {path} is {im.size[0]}x{im.size[1]}, the image is {width}x{height}.")
    grey = np.asarray(im.convert("L"), dtype=np.uint8)
    return np.where(grey >= 128, 255, 0).astype(np.uint8)


def save_mask(path: Path, mask: np.ndarray) -> None:
    """H×W uint8 -> 8-bit single-channel PNG, 255 = selected."""
    _save(PILImage.fromarray(np.ascontiguousarray(mask, dtype=np.uint8), mode="L"), path)


def save_image(path: Path, pixels: np.ndarray) -> None:
    """H×W×4 RGBA uint8 or uint16 -> file (16-bit RGBA is written as 16-bit PNG)."""
    if pixels.dtype == np.uint16:
        if path.suffix.lower() != ".png":
            raise ValueError("16-bit output needs a .png file name.")
        _save_png16(path, pixels)
        return
    _save(PILImage.fromarray(np.ascontiguousarray(pixels), mode="RGBA"), path)


def _save(im: PILImage.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        im = im.convert("RGB") if im.mode == "RGBA" else im
    tmp = path.with_name(path.name + ".part" + path.suffix)
    im.save(tmp)
    tmp.replace(path)


def _save_png16(path: Path, pixels: np.ndarray) -> None:
    import cv2
    bgra = np.ascontiguousarray(pixels[..., [2, 1, 0, 3]])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part.png")
    if not cv2.imwrite(str(tmp), bgra):
        raise OSError(f"Cannot write {path}")
    tmp.replace(path)
