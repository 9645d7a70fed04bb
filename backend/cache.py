"""The daemon's image cache: the last few images and whatever engines derived from them."""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np


@dataclass
class ImageEntry:
    """One image as received. pixels: H×W×4 uint8 or uint16 (RGBA); rgb: H×W×3 uint8 for engines."""

    key: str
    pixels: np.ndarray
    rgb: np.ndarray
    derived: dict[str, Any] = field(default_factory=dict)   # engine name -> its cached features
    lock: threading.Lock = field(default_factory=threading.Lock)

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
        return self.pixels.nbytes + self.rgb.nbytes


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
