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

    rgb is made on first use (by the engine that needs it), not while the request is routed."""

    def __init__(self, key: str, pixels: np.ndarray, rgb: np.ndarray | None = None):
        self.key = key
        self.pixels = pixels
        self._rgb = rgb
        self._rgb_lock = threading.Lock()
        self.derived: dict[str, Any] = {}   # engine name -> its cached features
        self.lock = threading.Lock()
        self.on_grow: Optional[Callable[[], None]] = None   # set by the cache that holds this entry

    @property
    def rgb(self) -> np.ndarray:
        if self._rgb is None:
            with self._rgb_lock:
                if self._rgb is None:
                    self._rgb = to_rgb8(self.pixels)
        return self._rgb

    @property
    def width(self) -> int:
        return self.pixels.shape[1]

    @property
    def height(self) -> int:
        return self.pixels.shape[0]

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
        seen = {_buffer(self.pixels)[0]}
        if self._rgb is not None:
            seen.add(_buffer(self._rgb)[0])
        return self.pixels.nbytes + self.width * self.height * 3 + held_bytes(list(self.derived.values()), seen)


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
