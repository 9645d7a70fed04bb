"""The "dsn" select engine: our trained one-click distractor segmentation (SimpSON 1C-DSN).

The image is encoded once per cached image (ImageEntry.derive); each click only decodes.
"""
from __future__ import annotations

import threading

import numpy as np

from ..cache import ImageEntry
from . import Engine, Point, Progress


class DsnEngine(Engine):
    name = "dsn"
    ops = frozenset({"select"})

    def __init__(self) -> None:
        self._segmenter = None
        self._lock = threading.Lock()   # one decode at a time: the per-image crop cache is shared

    def status(self) -> str:
        from ..segment import WEIGHTS
        if not WEIGHTS.exists():
            return f"The segmentation weights are missing ({WEIGHTS.name}); reinstall SimpSON Erase."
        return "ready"

    def _model(self):
        with self._lock:
            if self._segmenter is None:
                from ..segment import ClickSegmenter
                self._segmenter = ClickSegmenter()
            return self._segmenter

    def select(self, entry: ImageEntry, points: list[Point], previous: np.ndarray | None,
               progress: Progress) -> np.ndarray:
        seg = self._model()
        progress(0.05, "Encoding the image")
        embedding = entry.derive("dsn", lambda: seg.set_image(entry.rgb))
        progress(0.5, "Segmenting")
        prev = None if previous is None else previous.view(np.uint8) * np.uint8(255)
        with self._lock:
            if previous is None or not previous.any():
                first = next((i for i, (_, _, p) in enumerate(points) if p), None)
                if first is None:
                    return np.zeros(entry.rgb.shape[:2], bool)
                out = seg.predict(embedding, [points[first]], None) > 127
                rest = points[:first] + points[first + 1:]
            else:
                out, rest = previous.copy(), points
            # further clicks: a positive click outside the selection adds the object under it,
            # a negative click inside it removes the object under it
            for x, y, positive in rest:
                inside = out[min(int(y), out.shape[0] - 1), min(int(x), out.shape[1] - 1)]
                if positive and not inside:
                    out |= seg.predict(embedding, [(x, y, True)]) > 127
                elif not positive and inside:   # a negative click outside the selection changes nothing
                    out &= ~(seg.predict(embedding, [(x, y, True)]) > 127)
            return out
