"""Pixel arrays: wire bytes <-> numpy, image files for the CLI (any PNG/JPEG/TIFF PIL reads)."""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from simpson_client import protocol


def from_wire(data: object, width: int, height: int, fmt: str) -> np.ndarray:
    """Wire bytes -> H×W×4 RGBA array (uint8 for rgba8 and bgra8, uint16 for rgba16 and bgra16).

    rgba: no copy on little-endian machines (a read-only array that keeps the received frame
    alive); bgra: one swap into a new array (OpenCV's, ~12 ms for 12 MP)."""
    deep = fmt.endswith("16")
    wire = np.dtype("<u2") if deep else np.dtype(np.uint8)
    native = np.dtype(np.uint16) if deep else np.dtype(np.uint8)
    arr = np.frombuffer(data, dtype=wire).reshape(height, width, 4).astype(native, copy=False)
    return _swap_red_blue(arr) if fmt.startswith("bgra") else arr


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


def to_wire(pixels: np.ndarray, order: str = "rgba") -> bytes:
    """H×W×4 RGBA -> wire bytes in channel order `order` ("rgba" or "bgra": wire_format's prefix)."""
    if order == "bgra":
        pixels = _swap_red_blue(pixels)
    if pixels.dtype == np.uint16:
        return pixels.astype("<u2").tobytes()
    return np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()


def wire_format(pixels: np.ndarray, order: str = "rgba") -> str:
    """The wire format of RGBA `pixels` sent in channel order `order`: rgba8, rgba16, bgra8 or bgra16."""
    return order + ("16" if pixels.dtype == np.uint16 else "8")


def channel_order(fmt: str) -> str:
    """A wire format's channel order: "rgba" or "bgra"."""
    return fmt[:4]


def _swap_red_blue(pixels: np.ndarray) -> np.ndarray:
    """H×W×4 (uint8 or uint16) with the first and third channels swapped, as a new C-contiguous array."""
    import cv2
    return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_BGRA2RGBA)


def to_rgb8(pixels: np.ndarray) -> np.ndarray:
    """RGBA (8 or 16 bit) -> RGB uint8 for the engines (alpha ignored)."""
    import cv2
    if pixels.dtype == np.uint16:
        rgb = pixels[..., :3]
        return ((rgb.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    return cv2.cvtColor(pixels, cv2.COLOR_RGBA2RGB)


def load_image(path: Path) -> np.ndarray:
    """An image file -> H×W×4 RGBA, uint8 or uint16 (16-bit files keep their depth; grey -> RGB),
    turned as its EXIF orientation says (as photo viewers and the editors show it).

    The size is checked against the daemon's limit before anything is decoded; a damaged or
    truncated file is a ValueError (one sentence), never a partial picture."""
    with _open(path, "image") as im:
        deep = im.mode.startswith("I") or any(";16" in str(t[3]) for t in im.tile)   # before load() empties tile
        _decoded(im, path, "image")   # PIL reads 16-bit colour as 8 bits: cv2 decodes those again below
        orientation = _orientation(im)
        if not deep:
            return np.array(orient(np.asarray(im.convert("RGBA"), dtype=np.uint8), orientation), order="C")  # writable
    import cv2
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    if arr is None or arr.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"Cannot read image {path}: the file is damaged or its kind of pixels is not supported.")
    top = np.iinfo(arr.dtype).max
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[2] == 1:
        rgb = np.repeat(arr, 3, axis=2)
    elif arr.shape[2] == 2:   # grey + alpha
        return np.ascontiguousarray(orient(np.dstack([arr[..., :1]] * 3 + [arr[..., 1:]]), orientation))
    else:
        rgb = arr[..., 2::-1]
    alpha = arr[..., 3:4] if arr.shape[2] == 4 else np.full(rgb.shape[:2] + (1,), top, arr.dtype)
    return np.ascontiguousarray(orient(np.concatenate([rgb, alpha], axis=2), orientation))


def load_mask(path: Path, width: int, height: int) -> np.ndarray:
    """An 8-bit mask file (any mode; >= 128 is selected), in the image's displayed orientation
    (its own EXIF orientation applied) -> H×W uint8 0/255."""
    with _open(path, "mask") as im:
        _decoded(im, path, "mask")
        grey = orient(np.asarray(im.convert("L"), dtype=np.uint8), _orientation(im))
    if grey.shape != (height, width):
        raise ValueError(f"Mask {path} is {grey.shape[1]}x{grey.shape[0]}, the image is {width}x{height}.")
    return np.where(grey >= 128, 255, 0).astype(np.uint8)


# EXIF orientation (tag 0x0112) -> how to turn the stored pixels into the displayed picture
_EXIF_ORIENTATION = 0x0112


def orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """Stored pixels (H×W or H×W×C) -> as displayed, for an EXIF orientation 1..8 (PIL's
    ImageOps.exif_transpose, on arrays of any depth)."""
    if orientation == 2:
        return a[:, ::-1]
    if orientation == 3:
        return a[::-1, ::-1]
    if orientation == 4:
        return a[::-1]
    if orientation == 5:
        return a.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(a, -1)
    if orientation == 7:
        return np.rot90(a, 2).swapaxes(0, 1)
    if orientation == 8:
        return np.rot90(a, 1)
    return a


def _orientation(im: PILImage.Image) -> int:
    try:
        value = im.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:   # noqa: BLE001 - a damaged EXIF block: show the pixels as stored
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _open(path: Path, what: str) -> PILImage.Image:
    """PIL's lazy open (the header only), with our size limit instead of PIL's decompression-bomb
    check (no warning on stderr, one sentence)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            im = PILImage.open(path)
    except PILImage.DecompressionBombError as e:
        found = re.search(r"\((\d+) pixels\)", str(e))
        count = f"{int(found.group(1)):,} pixels" if found else "far too many pixels"
        raise ValueError(f"{what.capitalize()} {path} has {count}, over the {protocol.MAX_PIXELS // 1_000_000}-"
                         "megapixel limit.") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise ValueError(f"Cannot read {what} {path}: {_reason(e)}") from None
    w, h = im.size
    if w * h > protocol.MAX_PIXELS or max(w, h) > protocol.MAX_SIDE:
        im.close()
        raise ValueError(f"{what.capitalize()} {path} is {w}x{h}, over the {protocol.MAX_PIXELS // 1_000_000}-megapixel limit.")
    return im


def _decoded(im: PILImage.Image, path: Path, what: str) -> PILImage.Image:
    try:
        im.load()
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise ValueError(f"Cannot read {what} {path}: the file is damaged or incomplete ({_reason(e)}).") from None
    return im


def _reason(e: BaseException) -> str:
    text = str(e).rstrip(".") or type(e).__name__
    return text[0].lower() + text[1:] if text[:1].isupper() and not text[1:2].isupper() else text


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
