"""The "dsn" select engine: our trained one-click distractor segmentation (SimpSON 1C-DSN).

The image is encoded once per cached image (ImageEntry.derive); each click only decodes.

Clicks after the first work on the selection the way a user means them:
- a positive click inside the selection, or a negative one outside it, changes nothing;
- a positive click on an object that does not touch the selection adds that object;
- a positive click on a missed part of a selected object, and a negative click inside the
  selection, refine that object: the model gets its mask as the previous mask and the clicks
  around it (it was trained to correct its mistakes that way); other selected objects stay;
- a negative click on a selected part that no positive click guides (selected with another
  tool, added by a click on that very spot, or a stray piece away from the clicked object)
  removes the object under the click from that part (the whole part if the model's object
  misses the clicked pixel); other parts stay.
"""
from __future__ import annotations

import threading

import cv2
import numpy as np

from .. import device, weights
from ..cache import ImageEntry
from ..masks import mask_box
from . import Engine, Point, Progress

TOUCH = 3          # px: an object this close to a selected one is part of it
CONTEXT = 0.5      # earlier clicks within this share of an object's box size around it guide its refinement
SAME_SPOT = 0.02   # of the object's box size: a new click this close to an earlier one replaces it
_ENCODING = "dsn"  # the image cache's key for this model's encoding


class DsnEngine(Engine):
    name = "dsn"
    ops = frozenset({"select"})

    def __init__(self, segmenter=None) -> None:
        """segmenter: a ClickSegmenter-like object (set_image/predict, device, on_cpu); None = the
        shipped model, loaded on first use on backend/device.py's device."""
        self._segmenter = segmenter
        self._cpu = None                # its CPU copy, made on the first device failure
        self._lock = threading.Lock()   # one decode at a time: the per-image crop cache is shared

    def status(self) -> str:
        if self._segmenter is not None:
            return "ready"
        file = weights.path("dsn")
        if not file.exists():
            return f"The segmentation weights are missing ({file.name}); reinstall SimpSON Erase."
        return "ready"

    def device(self) -> str:
        seg = self._segmenter
        return device.chosen().device if seg is None else device.label(getattr(seg, "device", None))

    def segmenter(self):
        """The one-click model (a ClickSegmenter), loaded on first use; WeightsError when its
        weights are missing or damaged."""
        with self._lock:
            if self._segmenter is None:
                from ..segment import ClickSegmenter
                self._segmenter = ClickSegmenter()
            return self._segmenter

    def _on_cpu(self, seg) -> tuple:
        """(the CPU copy of the model, its encodings' cache key); the model itself when it is on
        the CPU already."""
        with self._lock:
            if self._cpu is None:
                self._cpu = seg.on_cpu() if hasattr(seg, "on_cpu") else seg
            return self._cpu, _ENCODING if self._cpu is seg else _ENCODING + "-cpu"

    def _run(self, what: str, fn):
        """fn(segmenter, cache key) on the model's device; after a device failure again on the
        CPU (its own encodings), for this request."""
        seg = self.segmenter()
        return device.run(f"{what} (dsn engine)", getattr(seg, "device", None), lambda: fn(seg, _ENCODING),
                          lambda: fn(*self._on_cpu(seg)))

    def embedding(self, entry: ImageEntry, seg=None, key: str = _ENCODING):
        """The image's encoding, made once per cached image and shared by everything that
        segments it through this engine (seg, key: the CPU copy's after a device failure)."""
        seg = seg or self.segmenter()
        return entry.derive(key, lambda: seg.set_image(entry.rgb))

    def segment(self, entry: ImageEntry, clicks: list[Point], size: tuple[float, float] | None = None,
                cpu: bool = False) -> np.ndarray:
        """The model's H×W uint8 mask (255 = selected) for `clicks` alone, without the selection
        rules of `select`; size: the (width, height) the object is expected to have (see
        ClickSegmenter.predict); cpu: on the model's CPU copy (a request already fallen back).
        Safe to call from several threads."""
        def on(seg, key: str) -> np.ndarray:
            embedding = self.embedding(entry, seg, key)
            with self._lock:
                return seg.predict(embedding, clicks, size=size)
        if cpu:
            return on(*self._on_cpu(self.segmenter()))
        return self._run("Segmenting", on)

    def select(self, entry: ImageEntry, points: list[Point], previous: np.ndarray | None,
               progress: Progress) -> np.ndarray:
        return self._run("Select", lambda seg, key: self._select(seg, key, entry, points, previous, progress))

    def _select(self, seg, key: str, entry: ImageEntry, points: list[Point], previous: np.ndarray | None,
                progress: Progress) -> np.ndarray:
        progress(0.05, "Encoding the image")
        embedding = self.embedding(entry, seg, key)
        progress(0.5, "Segmenting")
        with self._lock:
            if previous is None or not previous.any():
                first = next((i for i, (_, _, p) in enumerate(points) if p), None)
                if first is None:
                    return np.zeros(entry.rgb.shape[:2], bool)
                out = seg.predict(embedding, [points[first]], None) > 127
                seen, rest = [points[first]], points[:first] + points[first + 1:]
            else:
                out, seen, rest = previous.copy(), [], points
            for click in rest:
                out = self._apply(seg, embedding, out, seen, click)
                seen.append(click)
            return out

    @staticmethod
    def _apply(seg, embedding, out: np.ndarray, seen: list[Point], click: Point) -> np.ndarray:
        """The selection after one more click; seen: the clicks before it (context)."""
        x, y, positive = click
        h, w = out.shape
        xi, yi = min(int(x), w - 1), min(int(y), h - 1)
        if out[yi, xi] == positive:
            return out
        obj = seg.predict(embedding, [click]) > 127 if positive else None
        # connected parts of the selection, computed in the box holding it (and the new object)
        bx0, by0, bx1, by1 = mask_box(out | obj if positive else out) or (0, 0, 0, 0)
        x0, y0, x1, y1 = max(bx0 - TOUCH, 0), max(by0 - TOUCH, 0), min(bx1 + TOUCH, w), min(by1 + TOUCH, h)
        _, labels = cv2.connectedComponents(np.ascontiguousarray(out[y0:y1, x0:x1]).view(np.uint8), connectivity=8)
        local = np.zeros((h, w), bool)
        if positive:
            near = cv2.dilate(np.ascontiguousarray(obj[y0:y1, x0:x1]).view(np.uint8),
                              np.ones((2 * TOUCH + 1,) * 2, np.uint8)) > 0
            touched = np.unique(labels[near & out[y0:y1, x0:x1]])
            if touched.size == 0:       # another object: add it
                return out | obj
            local[y0:y1, x0:x1] = np.isin(labels, touched)
        else:
            local[y0:y1, x0:x1] = labels == labels[yi - y0, xi - x0]
        clicks = guiding_clicks(local, seen, click)
        if not any(p for _, _, p in clicks):   # no click of this part says what to keep: remove the object
            gone = local & (seg.predict(embedding, [(x, y, True)]) > 127)   # under the click from it
            return out & ~(gone if gone[yi, xi] else local)                    # (or the part, if the model missed)
        refined = seg.predict(embedding, clicks, local.view(np.uint8) * np.uint8(255)) > 127
        return (out & ~local) | refined


def guiding_clicks(part: np.ndarray, seen: list[Point], click: Point) -> list[Point]:
    """The clicks that guide the refinement of the selected object `part` by `click`: the
    earlier clicks around it (those on the very spot of the new one are replaced by it),
    then the new one."""
    bx, by, bx1, by1 = mask_box(part) or (0, 0, 0, 0)
    bw, bh = bx1 - bx, by1 - by
    mx, my = CONTEXT * bw + TOUCH, CONTEXT * bh + TOUCH
    same = max(TOUCH, SAME_SPOT * max(bw, bh))
    return [(x, y, p) for x, y, p in seen
            if bx - mx <= x < bx + bw + mx and by - my <= y < by + bh + my
            and np.hypot(x - click[0], y - click[1]) > same] + [click]
