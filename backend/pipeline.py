"""The pipeline: the typed operations (select, similar, erase, info) on cached images.

The daemon's request layer (backend/requests.py) and the one-process CLI (backend/cli.py) call
them. It knows the engines and the image cache, nothing of sockets or wire formats.
"""
from __future__ import annotations

import logging
import platform
import sys
import time
from typing import Any, Optional

import cv2
import numpy as np

from simpson_client import protocol
from simpson_client.protocol import ProtocolError

from . import engines, images
from .cache import ImageCache, ImageEntry
from .erase_maths import blend, context_regions, grow_hole
from .masks import mask255, mask_box
from .engines import EngineUnavailable, Found, Point, Progress
from .shadows import cast_shadows

log = logging.getLogger("simpson.pipeline")


def hole_to_fill(rgb: np.ndarray, selection: np.ndarray, dilation: Optional[int]) -> np.ndarray:
    """What erase replaces: the selection grown by exactly `dilation` px, or with the automatic
    growth (dilation None) grown per object and with the cast shadows found beside the objects."""
    grown = grow_hole(selection, dilation)
    if dilation is None:
        grown |= cast_shadows(rgb, selection, grown)
    return grown


def no_progress(fraction: float, message: str) -> None:
    pass


class Pipeline:
    def __init__(self, cache: Optional[ImageCache] = None):
        self.cache = cache or ImageCache()

    # ---- typed operations (also used by the one-process CLI) ----
    def entry(self, pixels: np.ndarray, key: Optional[str] = None) -> ImageEntry:
        """Wrap RGBA pixels (uint8 or uint16) as a cache entry; cached when a key is given."""
        fmt = images.wire_format(pixels)
        key = key or protocol.image_hash(pixels.shape[1], pixels.shape[0], fmt, images.to_wire(pixels))
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        return self.cache.put(ImageEntry(key, pixels))

    def select(self, entry: ImageEntry, points: list[Point], previous: Optional[np.ndarray] = None,
               engine: Optional[str] = None, progress: Progress = no_progress) -> tuple[np.ndarray, str]:
        """-> (H×W uint8 mask 0/255, engine name)."""
        if not points:
            raise ProtocolError("bad_request", "Select needs at least one point.")
        if not any(p for _, _, p in points) and (previous is None or not previous.any()):
            raise ProtocolError("bad_request", "Select needs a positive point or a previous mask.")
        chosen = engines.choose("select", engine)
        prev = None if previous is None else previous > 127
        mask = chosen.select(entry, points, prev, progress)
        return mask255(mask), chosen.name

    def similar(self, entry: ImageEntry, points: list[Point], seed: Optional[np.ndarray] = None,
                engine: Optional[str] = None, progress: Progress = no_progress,
                min_score: Optional[float] = None) -> tuple[np.ndarray, list[Found], str]:
        """-> (union mask 0/255, instances with the seed first, engine name). min_score: the
        score an instance needs (0..1; default: the engine's own threshold)."""
        if seed is None:
            if not points:
                raise ProtocolError("bad_request", "Similar needs a seed mask or at least one point.")
            progress(0.05, "Selecting the clicked object")
            seed, _ = self.select(entry, points, None, None, progress)
        seed_bool = seed > 127
        if not seed_bool.any():
            raise ProtocolError("bad_request", "The seed selection is empty: click on an object first.")
        chosen = engines.choose("similar", engine)
        progress(0.2, "Looking for similar objects")
        found = chosen.similar(entry, seed_bool, progress, min_score)
        whole = seed_bool.copy()                  # the clicked object, with parts its seed left out
        for f in (f for f in found if f.of_seed):
            x, y, w, h = f.box
            whole[y:y + h, x:x + w] |= f.mask
        found = [f for f in found if not f.of_seed][:protocol.MAX_INSTANCES - 1]
        x0, y0, x1, y1 = mask_box(whole)   # type: ignore[misc] - not empty
        box = (x0, y0, x1 - x0, y1 - y0)
        first = Found(box, whole[y0:y0 + box[3], x0:x0 + box[2]], 1.0)
        union = whole.copy()
        for f in found:
            x, y, w, h = f.box
            union[y:y + h, x:x + w] |= f.mask
        return mask255(union), [first] + found, chosen.name

    def erase(self, entry: ImageEntry, mask: np.ndarray, engine: Optional[str] = None,
              dilation: Optional[int] = None, progress: Progress = no_progress
              ) -> tuple[tuple[int, int, int, int], np.ndarray, str]:
        """-> (box, patch pixels in the image's own format, engine name). Only the grown hole changes."""
        hole = mask > 127
        if not hole.any():
            raise ProtocolError("bad_request", "The mask is empty: there is nothing to erase.")
        chosen = engines.choose("erase", engine)
        grown = hole_to_fill(entry.rgb, hole, dilation)
        bx0, by0, bx1, by1 = mask_box(grown)   # type: ignore[misc] - not empty
        filled = entry.rgb[by0:by1, bx0:bx1].copy()
        regions = context_regions(grown, entry.width, entry.height)
        results = chosen.erase_many([(entry.rgb[y0:y1, x0:x1], grown[y0:y1, x0:x1]) for x0, y0, x1, y1 in regions],
                                    progress)
        for (x0, y0, x1, y1), result in zip(regions, results):
            # copy back the hole pixels of this region that lie in the output box (regions do not overlap)
            sub = grown[y0:y1, x0:x1]
            ox0, oy0 = max(x0, bx0), max(y0, by0)
            ox1, oy1 = min(x1, bx1), min(y1, by1)
            s = sub[oy0 - y0:oy1 - y0, ox0 - x0:ox1 - x0]
            dst = filled[oy0 - by0:oy1 - by0, ox0 - bx0:ox1 - bx0]
            dst[s] = result[oy0 - y0:oy1 - y0, ox0 - x0:ox1 - x0][s]
        progress(0.97, "Blending")
        patch = blend(entry.pixels[by0:by1, bx0:bx1], filled, grown[by0:by1, bx0:bx1])
        return (bx0, by0, bx1 - bx0, by1 - by0), patch, chosen.name

    def warm_up(self) -> None:
        """Run the default select, similar and erase engines once on a small made-up
        photo, so that a user's first click (~1 s) and first select similar (~10 s: the matching
        backbone and verifier) do not pay for loading the weights and the networks' first runs."""
        rgba = np.full((240, 320, 4), 255, np.uint8)
        cv2.circle(rgba, (110, 120), 40, (200, 40, 40, 255), -1)
        cv2.circle(rgba, (230, 120), 40, (200, 40, 40, 255), -1)
        entry = ImageEntry("warm-up", rgba)
        start = time.perf_counter()
        try:
            mask, name = self.select(entry, [(110.0, 120.0, True)])
            log.info("warm-up: %s engine ready in %.2f s", name, time.perf_counter() - start)
            start = time.perf_counter()
            _, _, name = self.similar(entry, [], mask)
        except Exception:   # noqa: BLE001 - a warm-up never stops the daemon; the request will say why
            log.exception("warm-up failed")
            return
        log.info("warm-up: %s similar engine ready in %.2f s", name, time.perf_counter() - start)
        # the default erase engine too: LaMa loads its weights here, and a file that does not load
        # makes it unready now (erase then uses the built-in engine) rather than failing a user's erase
        start = time.perf_counter()
        try:
            _, _, name = self.erase(entry, mask)
        except Exception:   # noqa: BLE001
            log.exception("warm-up of the erase engine failed; erase uses the next engine")
            return
        log.info("warm-up: %s erase engine ready in %.2f s", name, time.perf_counter() - start)

    def info(self) -> dict[str, Any]:
        import torch  # noqa: PLC0415 - only for its version
        from . import device  # noqa: PLC0415
        return {
            "kind": "result", "op": "info", "protocol": protocol.VERSION,
            "versions": {"python": sys.version.split()[0], "numpy": np.__version__, "opencv": cv2.__version__,
                         "torch": torch.__version__, "platform": platform.platform()},
            # where the models run (backend/device.py), not what torch could use; each engine's
            # own device is in `engines` (a model that did not fit stays on the CPU)
            "device": device.chosen().device, "device_note": device.chosen().note,
            "threads": torch.get_num_threads(),
            "engines": engines.describe(),
            "defaults": {op: _default_name(op) for op in ("select", "similar", "erase")},
            "cache": self.cache.stats(),
            "limits": protocol.limits(),
        }


def _default_name(op: str) -> str:
    try:
        return engines.choose(op, None).name
    except EngineUnavailable:
        return ""
