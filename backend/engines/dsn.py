"""The "dsn" select engine: our trained one-click distractor segmentation (SimpSON 1C-DSN).

The image is encoded once per cached image (ImageEntry.derive); each click only decodes.

Clicks after the first work on the selection the way a user means them:
- a positive click inside the selection, or a negative one outside it, changes nothing;
- a positive click on an object that does not touch the selection adds that object;
- a positive click on a missed part of a selected object, and a negative click inside the
  selection, refine that object: the model gets its mask as the previous mask and the clicks
  around it (it was trained to correct its mistakes that way); other selected objects stay;
  the click changes the object where it points (`corrected`): a positive click adds what the
  model adds inside what one click there selects, a negative one removes the region under it,
  and away from that only the model's small edge tidying stays, so a click on a missed corner
  does not also take the neighbour that hides part of the object;
- a negative click whose colour is rare in what it would remove (a click in a hole or a gap the
  selection filled, where the model drops the whole piece around it) removes only the pixels of
  its colour joined to it (`_like_click`), on this path and the next;
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
from ..masks import Parts, mask_box, union_box
from . import Engine, Point, Progress

TOUCH = 3          # px: an object this close to a selected one is part of it
CONTEXT = 0.5      # earlier clicks within this share of an object's box size around it guide its refinement
SAME_SPOT = 0.02   # of the object's box size: a new click this close to an earlier one replaces it
AWAY_SHARE = 0.05  # of the object's area: a correction's change away from the click is kept up to this size a region
HOLE_SHARE = 0.3   # of a negative click's removal: under this in the click's colour, only that colour goes
HOLE_DELTA = 20.0  # CIE Lab distance (OpenCV's 8-bit scale) within which a pixel has the click's colour
_ENCODING = "dsn"  # the image cache's key for this model's encoding


class DsnEngine(Engine):
    name = "dsn"
    ops = frozenset({"select"})

    def __init__(self, segmenter=None, away_share: float | None = AWAY_SHARE,
                 hole_share: float | None = HOLE_SHARE) -> None:
        """segmenter: a ClickSegmenter-like object (set_image/predict, device, on_cpu); None = the
        shipped model, loaded on first use on backend/device.py's device. away_share: `corrected`'s
        bound on a correction's changes away from the click; None keeps every change the model makes.
        hole_share: `_like_click`'s bound for a negative click's removal; None removes what the model
        says. Both None: the engine before the thirty-second session (bench/select.py's row)."""
        self._segmenter = segmenter
        self.away_share = away_share
        self.hole_share = hole_share
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
                out = self._apply(seg, embedding, out, seen, click, entry.rgb)
                seen.append(click)
            return out

    def _apply(self, seg, embedding, out: np.ndarray, seen: list[Point], click: Point,
               rgb: np.ndarray) -> np.ndarray:
        """The selection after one more click; seen: the clicks before it (context); rgb: the image."""
        x, y, positive = click
        h, w = out.shape
        xi, yi = min(int(x), w - 1), min(int(y), h - 1)
        if out[yi, xi] == positive:
            return out
        obj = seg.predict(embedding, [click]) > 127 if positive else None
        # connected parts of the selection, computed in the box holding it (and the new object); on a
        # 12-MP photo the work stays in boxes like this one (a pass over the whole mask is a few ms)
        bx0, by0, bx1, by1 = union_box([mask_box(out), mask_box(obj) if positive else None]) or (0, 0, 0, 0)
        x0, y0, x1, y1 = max(bx0 - TOUCH, 0), max(by0 - TOUCH, 0), min(bx1 + TOUCH, w), min(by1 + TOUCH, h)
        sel = out[y0:y1, x0:x1]
        _, labels = cv2.connectedComponents(np.ascontiguousarray(sel).view(np.uint8), connectivity=8)
        if positive:
            near = cv2.dilate(np.ascontiguousarray(obj[y0:y1, x0:x1]).view(np.uint8),
                              np.ones((2 * TOUCH + 1,) * 2, np.uint8)) > 0
            touched = np.unique(labels[near & sel])
            if touched.size == 0:       # another object: add it
                return out | obj
            part = np.isin(labels, touched)      # the selected object the click corrects, in that box
        else:
            part = labels == labels[yi - y0, xi - x0]
        px0, py0, px1, py1 = mask_box(part)
        clicks = guiding_clicks((px0 + x0, py0 + y0, px1 + x0, py1 + y0), seen, click)
        if not any(p for _, _, p in clicks):   # no click of this part says what to keep: remove the object
            gone = part & (seg.predict(embedding, [(x, y, True)])[y0:y1, x0:x1] > 127)   # under the click from it
            gone = gone if gone[yi - y0, xi - x0] else part                               # (or the part, if the model missed)
            res = out.copy()
            res[y0:y1, x0:x1] &= ~_like_click(gone, rgb[y0:y1, x0:x1], (x - x0, y - y0, positive), self.hole_share)
            return res
        prev = np.zeros((h, w), np.uint8)
        prev[y0:y1, x0:x1] = part.view(np.uint8) * np.uint8(255)
        refined = seg.predict(embedding, clicks, prev) > 127
        if self.away_share is None:
            return (out & ~(prev > 127)) | refined
        # corrected changes nothing outside the boxes of the part and of the model's answer: work in them
        # (and the click's pixel), the same result
        cx0, cy0, cx1, cy1 = union_box([(px0 + x0, py0 + y0, px1 + x0, py1 + y0), mask_box(refined),
                                        (xi, yi, xi + 1, yi + 1)])
        box = (slice(cy0, cy1), slice(cx0, cx1))
        res = out.copy()
        local = prev[box] > 127
        res[box] = (out[box] & ~local) | corrected(local, refined[box], (x - cx0, y - cy0, positive),
                                                   None if obj is None else obj[box], self.away_share, rgb[box],
                                                   self.hole_share)
        return res


def corrected(part: np.ndarray, refined: np.ndarray, click: Point, obj: np.ndarray | None,
              away_share: float = AWAY_SHARE, rgb: np.ndarray | None = None,
              hole_share: float | None = HOLE_SHARE) -> np.ndarray:
    """The selected object `part` after a correction click, from the model's answer `refined`: the
    change the click asks for, and elsewhere, in either direction, only the model's small changes
    (each connected region at most `away_share` of the object's area: edges tidied). The change a
    positive click asks for is what the model adds inside the click's own object `obj` (what one click
    there selects), or, where that object misses the clicked pixel, the added region at the click; a
    negative click's is the removed region at the click (of it, only the click's colour when that is
    rare in it: `_like_click`, with `rgb` the image and `hole_share` its bound; None: no such test).
    A large change away from the click is the
    model taking a neighbour that hides part of the object (an occluder fills the gap it leaves), or
    dropping pieces the user did not point at (docs/models.md, "Thirty-second session")."""
    box = union_box([mask_box(part), mask_box(refined)])     # the work is done in the box of both
    out = part.copy()
    if box is None:
        return out
    x0, y0, x1, y1 = box
    p, r = part[y0:y1, x0:x1], refined[y0:y1, x0:x1]
    at = (click[0] - x0, click[1] - y0, click[2])
    cap = away_share * int(p.sum())
    add, remove = r & ~p, p & ~r
    if click[2]:
        h, w = part.shape
        own = None if obj is None else obj[y0:y1, x0:x1]
        on_own = obj is not None and bool(obj[min(int(click[1]), h - 1), min(int(click[0]), w - 1)])
        # what the click's own object holds; where that object missed the click, the region at it too
        add, remove = _kept(add, cap, None if on_own else at, own), _kept(remove, cap)
    else:
        here = _like_click(_kept(remove, 0, at), None if rgb is None else rgb[y0:y1, x0:x1], at, hole_share)
        add, remove = _kept(add, cap), _kept(remove, cap) | here
    out[y0:y1, x0:x1] = (p | add) & ~remove
    return out


def _like_click(region: np.ndarray, rgb: np.ndarray | None, click: Point, share: float | None) -> np.ndarray:
    """A negative click's removal `region` (over the image `rgb`), or, when under `share` of it has the
    colour under the click (a click in a hole or a gap the mask filled: the model drops the piece
    around it), only the part of it in that colour joined to the click. No image or no share: `region`."""
    if rgb is None or share is None or not region.any():
        return region
    x0, y0, x1, y1 = mask_box(region)
    x, y = int(click[0]), int(click[1])
    x0, y0, x1, y1 = min(x0, x), min(y0, y), max(x1, x + 1), max(y1, y + 1)
    lab = cv2.cvtColor(np.ascontiguousarray(rgb[y0:y1, x0:x1]), cv2.COLOR_RGB2LAB).astype(np.float32)
    cx, cy = x - x0, y - y0
    ref = np.median(lab[max(cy - 2, 0):cy + 3, max(cx - 2, 0):cx + 3].reshape(-1, 3), axis=0)
    same = np.linalg.norm(lab - ref, axis=-1) < HOLE_DELTA
    reg = region[y0:y1, x0:x1]
    if (same & reg).sum() >= share * reg.sum():
        return region
    out = np.zeros_like(region)
    out[y0:y1, x0:x1] = _kept(same & reg, 0, (cx, cy, False))
    return out


def _kept(change: np.ndarray, cap: float, click: Point | None = None, also: np.ndarray | None = None) -> np.ndarray:
    """The connected regions of bool `change` with at most `cap` pixels, those within TOUCH px of
    `click`, and the pixels of `change` in `also`."""
    parts = Parts(change)
    keep = np.zeros(parts.count + 1, bool)
    keep[1:] = parts.stats[1:, cv2.CC_STAT_AREA] <= cap
    if click is not None:
        cx, cy = int(click[0]) - parts.x0, int(click[1]) - parts.y0
        near = parts.labels[max(cy - TOUCH, 0):max(cy + TOUCH + 1, 0), max(cx - TOUCH, 0):max(cx + TOUCH + 1, 0)]
        keep[near] = True
    keep[0] = False
    out = np.zeros_like(change)
    lh, lw = parts.labels.shape
    out[parts.y0:parts.y0 + lh, parts.x0:parts.x0 + lw] = keep[parts.labels]
    if also is not None:
        out |= change & also
    return out


def guiding_clicks(box: tuple[int, int, int, int], seen: list[Point], click: Point) -> list[Point]:
    """The clicks that guide the refinement of the selected object whose box (x0, y0, x1, y1) is
    `box` by `click`: the earlier clicks around it (those on the very spot of the new one are
    replaced by it), then the new one."""
    bx, by, bx1, by1 = box
    bw, bh = bx1 - bx, by1 - by
    mx, my = CONTEXT * bw + TOUCH, CONTEXT * bh + TOUCH
    same = max(TOUCH, SAME_SPOT * max(bw, bh))
    return [(x, y, p) for x, y, p in seen
            if bx - mx <= x < bx + bw + mx and by - my <= y < by + bh + my
            and np.hypot(x - click[0], y - click[1]) > same] + [click]
