"""The daemon's image cache: the last few images and whatever engines derived from them."""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Callable

import numpy as np

from .images import to_rgb8


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
        """derived[name], computed once per image (e.g. a model's encoding)."""
        with self.lock:
            if name not in self.derived:
                self.derived[name] = make()
            return self.derived[name]

    def nbytes(self) -> int:
        return self.pixels.nbytes + self.width * self.height * 3   # rgb, made or not


class ImageCache:
    """LRU by content hash, bounded in entries and in pixel bytes. Thread-safe."""

    def __init__(self, max_entries: int = 4, max_bytes: int = 1 << 30):
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
            while len(self._items) > 1 and (len(self._items) > self.max_entries or self._total() > self.max_bytes):
                self._items.popitem(last=False)
            return entry

    def _total(self) -> int:
        return sum(e.nbytes() for e in self._items.values())

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"images": len(self._items), "bytes": self._total()}
