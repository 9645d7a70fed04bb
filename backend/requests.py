"""The request layer: a decoded protocol message -> a typed Pipeline call -> a reply.

One table, OPERATIONS, says which handler answers each operation the workers run (`cancel` is
the server's own: it acts on its job table). A handler parses the header and the payload frames
(an image by hash or by pixels, points, masks; docs/protocol.md), calls the pipeline's typed
operation and builds the reply (a result header and its frames). Knows nothing of sockets.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable, Optional

import numpy as np

from simpson_client import protocol
from simpson_client.protocol import Message, ProtocolError

from . import images
from .cache import ImageEntry
from .engines import EngineUnavailable, Point, Progress
from .masks import mask255, mask_box
from .pipeline import Pipeline, no_progress

log = logging.getLogger("simpson.pipeline")

Reply = tuple[dict[str, Any], list[Any]]


class Requests:
    """Answers the operations in OPERATIONS with `pipeline`; limits: what `info` adds to the
    protocol's limits (the server's concurrency)."""

    def __init__(self, pipeline: Pipeline, limits: Optional[dict[str, Any]] = None):
        self.pipeline = pipeline
        self.limits = dict(limits or {})
        self._pending: dict[str, threading.Event] = {}   # hashes being checked, not cached yet
        self._checks = threading.local()                 # this thread's request: its pending hash checks

    def handle(self, msg: Message, progress: Progress = no_progress) -> Reply:
        op = msg.header.get("op")
        handler = OPERATIONS.get(op)   # type: ignore[arg-type]
        if handler is None:
            raise ProtocolError("unknown_op", f"Unknown op {op!r}; known: {', '.join(protocol.OPS)}.")
        self._checks.pending = []
        try:
            reply = handler(self, msg.header, msg.frames, progress)
        except EngineUnavailable as e:
            raise ProtocolError("unavailable", str(e)) from None
        for check in self._checks.pending:   # pixels sent with the request: answer only if they match the hash
            if not check.result():
                raise ProtocolError("bad_request", "The image's pixels do not match its hash (see 'Image reference' "
                                                   "in docs/protocol.md); the image was not cached.")
        return reply

    # ---- the operations
    def select(self, header: dict[str, Any], payload: list[Any], progress: Progress) -> Reply:
        engine, entry, points, previous = self._mask_request(header, payload)
        start = time.perf_counter()
        mask, name = self.pipeline.select(entry, points, previous, engine, progress)
        box, crop = mask_crop(mask)
        return ({"kind": "result", "op": "select", "engine": name, "seconds": round(time.perf_counter() - start, 4),
                 "mask": {"frame": 0, "box": box}}, [crop])

    def similar(self, header: dict[str, Any], payload: list[Any], progress: Progress) -> Reply:
        min_score = protocol.field(header, "min_score", (int, float), None)
        if min_score is not None and not 0 <= min_score <= 1:
            raise ProtocolError("bad_request", "min_score must be 0..1.")
        engine, entry, points, seed = self._mask_request(header, payload)
        start = time.perf_counter()
        union, found, name = self.pipeline.similar(entry, points, seed, engine, progress, min_score)
        box, crop = mask_crop(union)
        frames: list[Any] = [crop]
        instances = []
        for f in found:
            instances.append({"box": list(f.box), "score": round(float(f.score), 4), "frame": len(frames)})
            frames.append(mask255(f.mask).tobytes())
        return ({"kind": "result", "op": "similar", "engine": name, "seconds": round(time.perf_counter() - start, 4),
                 "mask": {"frame": 0, "box": box}, "instances": instances}, frames)

    def erase(self, header: dict[str, Any], payload: list[Any], progress: Progress) -> Reply:
        engine = protocol.field(header, "engine", str, None)
        dilation = protocol.field(header, "dilation", int, None)
        if dilation is not None and not 0 <= dilation <= protocol.MAX_DILATION:
            raise ProtocolError("bad_request", f"Dilation must be 0..{protocol.MAX_DILATION} pixels.")
        entry = self._image(header, payload)
        mask = self._mask(header, payload, entry, required=True)
        order = images.channel_order(header["image"]["format"])   # the patch comes back as the image went
        start = time.perf_counter()
        box, patch, name = self.pipeline.erase(entry, mask, engine, dilation, progress)
        return ({"kind": "result", "op": "erase", "engine": name, "seconds": round(time.perf_counter() - start, 4),
                 "patch": {"box": list(box), "format": images.wire_format(patch, order), "frame": 0}},
                [images.to_wire(patch, order)])

    def info(self, header: dict[str, Any], payload: list[Any], progress: Progress) -> Reply:
        info = self.pipeline.info()
        return dict(info, limits=dict(info["limits"], **self.limits)), []

    # ---- parsing
    def _image(self, header: dict[str, Any], payload: list[Any]) -> ImageEntry:
        spec = protocol.field(header, "image", dict)
        w, h, fmt, digest = protocol.image_spec(spec)
        cache = self.pipeline.cache
        if "frame" not in spec:
            entry = cache.get(digest)
            pending = self._pending.get(digest)
            if entry is None and pending is not None:   # its pixels arrived a moment ago
                pending.wait(5.0)
                entry = cache.get(digest)
            if entry is None:
                raise ProtocolError("image_unknown", "The daemon does not have this image; send its pixels.")
            return entry
        data = protocol.frame_ref(spec, "image", payload, w * h * protocol.FORMATS[fmt])
        pixels = images.from_wire(data, w, h, fmt)
        entry = ImageEntry(digest, pixels)
        # This request works on the pixels it carried, whatever the hash says. Later requests
        # find the image by hash only once the hash is checked, off the request's path.
        self._pending.setdefault(digest, threading.Event())
        check: Future[bool] = Future()
        threading.Thread(target=self._cache_if_hash_matches, args=(entry, data, fmt, check), daemon=True).start()
        getattr(self._checks, "pending", []).append(check)   # handle() waits for it before answering
        return entry

    def _cache_if_hash_matches(self, entry: ImageEntry, data: Any, fmt: str, check: "Future[bool]") -> None:
        w, h = entry.width, entry.height
        try:
            ok = protocol.image_hash(w, h, fmt, data) == entry.key
            if ok:
                self.pipeline.cache.put(entry)
            else:
                log.warning("an image's hash does not match its pixels; not cached")
            check.set_result(ok)
        except BaseException as e:   # noqa: BLE001 - handed to the request, which answers with it
            check.set_exception(e)
        finally:
            event = self._pending.pop(entry.key, None)
            if event is not None:
                event.set()

    def _mask(self, header: dict[str, Any], payload: list[Any], entry: ImageEntry, required: bool) -> Optional[np.ndarray]:
        if header.get("mask") is None:
            if required:
                raise ProtocolError("bad_request", "Missing field 'mask'.")
            return None
        return images.mask_from_wire(header["mask"], payload, entry.width, entry.height)

    def _mask_request(self, header: dict[str, Any], payload: list[Any]
                      ) -> tuple[Optional[str], ImageEntry, list[Point], Optional[np.ndarray]]:
        """engine, image, points and optional mask of a select or similar request."""
        engine = protocol.field(header, "engine", str, None)
        entry = self._image(header, payload)
        points = protocol.points(header.get("points", []), entry.width, entry.height)
        return engine, entry, points, self._mask(header, payload, entry, required=False)


Handler = Callable[[Requests, dict[str, Any], list[Any], Progress], Reply]

# The one dispatch table: operation -> handler (run on a worker thread).
OPERATIONS: dict[str, Handler] = {
    "select": Requests.select,
    "similar": Requests.similar,
    "erase": Requests.erase,
    "info": Requests.info,
}


def mask_crop(mask: np.ndarray) -> tuple[list[int], bytes]:
    """A 0/255 mask -> ([x, y, w, h] of its nonzero pixels, those w×h bytes); [0, 0, 0, 0] if empty."""
    box = mask_box(mask)
    if box is None:
        return [0, 0, 0, 0], b""
    x0, y0, x1, y1 = box
    return [x0, y0, x1 - x0, y1 - y0], mask[y0:y1, x0:x1].tobytes()
