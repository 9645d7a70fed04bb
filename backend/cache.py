"""The daemon's image cache: the last few images and whatever engines derived from them.

Its budget counts everything an entry holds: the pixels as received, the engines' RGB copy and
what the models derived (encodings, match maps), each buffer once."""
from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from typing import Any, Callable, Optional

import numpy as np

from .images import to_rgb8

MAX_ENTRIES = 4
MAX_BYTES = 1 << 30     # pixels + RGB + derived data of all cached images


class ImageEntry:
    """One image as received. pixels: H×W×4 uint8 or uint16 (RGBA); rgb: H×W×3 uint8 for engines.

    rgb is made on first use (by the engine that needs it), not while the request is routed.
    A cached 8-bit entry is compacted: it keeps the RGB copy and the alpha channel (nothing when
    opaque) instead of the RGBA pixels too, and pixels becomes a read-only view that builds
    what is indexed (a crop costs only the crop): 12 MB instead of 48 MB per cached 12-MP image."""

    def __init__(self, key: str, pixels: np.ndarray, rgb: np.ndarray | None = None):
        self.key = key
        self._pixels: Optional[np.ndarray] = pixels
        self._alpha: Optional[np.ndarray] = None     # after compact(): H×W alpha, None when opaque
        self._shape = pixels.shape
        self._rgb = rgb
        self._rgb_lock = threading.Lock()
        self.derived: dict[str, Any] = {}   # engine name -> its cached features
        self.lock = threading.Lock()
        self.on_grow: Optional[Callable[[], None]] = None   # set by the cache that holds this entry

    @property
    def pixels(self) -> Any:
        """H×W×4 RGBA as received (an ndarray), or, once compacted, an RGBA view of rgb + alpha."""
        pixels = self._pixels
        return pixels if pixels is not None else CompactRGBA(self.rgb, self._alpha)

    @property
    def rgb(self) -> np.ndarray:
        if self._rgb is None:
            with self._rgb_lock:
                if self._rgb is None:
                    self._rgb = to_rgb8(self.pixels)
        return self._rgb

    @property
    def width(self) -> int:
        return self._shape[1]

    @property
    def height(self) -> int:
        return self._shape[0]

    def compact(self) -> None:
        """8-bit entries: keep rgb and alpha (nothing when opaque), drop the RGBA pixels."""
        pixels = self._pixels
        if pixels is None or pixels.dtype != np.uint8:
            return
        self.rgb   # noqa: B018 - made now, from the pixels
        alpha = pixels[..., 3]
        self._alpha = None if int(alpha.min()) == 255 else np.ascontiguousarray(alpha)
        self._pixels = None

    def derive(self, name: str, make: Callable[[], Any]) -> Any:
        """derived[name], computed once per image (e.g. a model's encoding). Each call lets the
        cache see the entry's size again: derived data grow (zoom-in encodings per click)."""
        with self.lock:
            if name not in self.derived:
                self.derived[name] = make()
            value = self.derived[name]
        if self.on_grow is not None:
            self.on_grow()
        return value

    def nbytes(self) -> int:
        """Pixels + RGB (made or not) + every array and tensor the engines derived, each buffer once
        (an encoding that keeps a reference to the RGB copy does not count it again)."""
        pixels, alpha = self._pixels, self._alpha
        own = (pixels.nbytes if pixels is not None else 0) + (alpha.nbytes if alpha is not None else 0)
        seen = {_buffer(a)[0] for a in (pixels, alpha, self._rgb) if a is not None}
        return own + self.width * self.height * 3 + held_bytes(list(self.derived.values()), seen)


class CompactRGBA:
    """Read-only H×W×4 uint8 RGBA made of an RGB array and an alpha channel (None = opaque).
    Indexing rows and columns builds only that part; anything else builds the whole image."""

    dtype = np.dtype(np.uint8)
    ndim = 3

    def __init__(self, rgb: np.ndarray, alpha: Optional[np.ndarray]):
        self._rgb, self._alpha = rgb, alpha

    @property
    def shape(self) -> tuple[int, int, int]:
        return self._rgb.shape[0], self._rgb.shape[1], 4

    @property
    def nbytes(self) -> int:
        return self._rgb.shape[0] * self._rgb.shape[1] * 4

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if len(key) <= 2 and all(isinstance(k, (slice, int)) for k in key):
            rgb = self._rgb[key]
            alpha = (np.full(rgb.shape[:-1], 255, np.uint8) if self._alpha is None else self._alpha[key])
            return np.concatenate([rgb, alpha[..., None]], axis=-1)
        return self[:, :][key]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        full = self[:, :]
        return full if dtype is None else full.astype(dtype)


def held_bytes(obj: Any, seen: set[int], depth: int = 0) -> int:
    """Bytes of the numpy arrays and torch tensors reachable from obj through containers,
    NamedTuples, dataclasses and plain objects; buffers in seen (their keys) are not counted,
    and each one is counted once."""
    if depth > 8 or obj is None or isinstance(obj, (str, bytes, int, float, bool)):
        return 0
    if type(obj).__name__ in ("Tensor", "Parameter") and obj.device.type != "cpu":
        return 0   # the budget is the daemon's RAM; accelerator memory is the device's to manage
    if isinstance(obj, np.ndarray) or type(obj).__name__ in ("Tensor", "Parameter"):
        key, size = _buffer(obj)
        if key in seen:
            return 0
        seen.add(key)
        return size
    if isinstance(obj, dict):
        items: list[Any] = list(obj.values())
    elif isinstance(obj, (list, tuple, set, frozenset)):
        items = list(obj)
    elif callable(getattr(obj, "parameters", None)):
        return 0   # a model (torch.nn.Module): shared by every image, not this one's data
    elif dataclasses.is_dataclass(obj):
        items = [getattr(obj, f.name, None) for f in dataclasses.fields(obj)]
    elif hasattr(obj, "__dict__"):
        items = list(vars(obj).values())
    else:
        return 0
    return sum(held_bytes(item, seen, depth + 1) for item in items)


def _buffer(a: Any) -> tuple[int, int]:
    """(a key for the memory a numpy array or torch tensor lives in, that memory's size)."""
    if isinstance(a, np.ndarray):
        while isinstance(a.base, np.ndarray):
            a = a.base
        return a.__array_interface__["data"][0], a.nbytes
    storage = a.untyped_storage()
    return storage.data_ptr(), storage.nbytes()


class ImageCache:
    """LRU by content hash, bounded in entries and in bytes (pixels, RGB and derived data).
    Thread-safe."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES):
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, ImageEntry] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> ImageEntry | None:
        with self._lock:
            entry = self._items.get(key)
            if entry is not None:
                self._items.move_to_end(key)
            return entry

    def put(self, entry: ImageEntry) -> ImageEntry:
        with self._lock:
            old = self._items.get(entry.key)
            if old is not None:
                self._items.move_to_end(entry.key)
                return old
            self._items[entry.key] = entry
            entry.on_grow = self._trim
            entry.compact()
            self._trim_locked()
            return entry

    def _trim(self) -> None:
        with self._lock:
            self._trim_locked()

    def _trim_locked(self) -> None:
        """Forget the least recently used images until the rest fit (the newest always stays)."""
        while len(self._items) > 1 and (len(self._items) > self.max_entries or self._total() > self.max_bytes):
            _, gone = self._items.popitem(last=False)
            gone.on_grow = None

    def _total(self) -> int:
        return sum(e.nbytes() for e in list(self._items.values()))

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"images": len(self._items), "bytes": self._total()}
