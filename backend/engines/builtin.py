"""The built-in erase engine: needs no download; the default when LaMa's weights are absent.

One PatchMatch exemplar fill (Barnes et al. 2009, via PyPI `PyPatchMatch`) of the crop at full
resolution (or at the largest working scale that keeps the hole under `FillSettings.max_hole_px`)
copies real texture into the hole; its low frequencies are then corrected towards a guide, a
small PatchMatch fill of the whole crop at a 224-px working size (it sees the crop's colour, light
and structure at once), by adding ¾ of the guide's difference from the fill (`guide_weight`),
blurred over `guide_sigma` px. Only the colour and light of the copied texture move: its fine
detail is kept, nothing is averaged into a smear, and the correction fades to zero at the hole's
edge, so no seam. Why this and not the others: docs/erase.md (bench/erase.py, held-out scenes).

The working scale bounds the cost: a 24-MP photo with small holes costs what a small photo
costs, and a 12-MP photo with a 5 % hole is filled at a reduced scale.
"""
from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor, TimeoutError
from dataclasses import dataclass
from typing import Any, Optional

import cv2
import numpy as np

from ..masks import mask_box
from . import Engine, Progress

# Small fills, one per pass: (context, working long side in px, patch radius: patches are
# (2r+1)² px). context None = the whole crop the pipeline gives (the hole plus max(64 px, its
# size) on every side); a number = only the hole's box plus that fraction of its size (at least
# 24 px) on every side, so the fill copies from nearer texture at a finer working scale.
# The guide is one such fill. The mean of three (PASSES) was the engine before issue 22 (a smear:
# texture kept 0.52) and the guide until the twelfth session: on 39 val scenes one pass gave
# -0.05 dB (s.e. 0.09) at a third of the guide's cost (docs/erase.md).
GUIDE_PASSES: tuple[tuple[float | None, int, int], ...] = ((None, 224, 5),)
PASSES: tuple[tuple[float | None, int, int], ...] = ((None, 224, 7), (None, 160, 9), (0.5, 224, 5))
SEED = 1


@dataclass(frozen=True)
class FillSettings:
    """The built-in engine's tuning (chosen on bench/erase.py's val split; docs/erase.md)."""
    patch_radius: int = 5           # the texture fill's patches are (2r+1)² px
    scaled_patch_radius: int = 3    # the same when the hole is too big for full resolution (then resized up)
    context: float = 0.5            # the texture fill copies from the hole's box plus this × its size around it
    max_hole_px: int = 40_000       # the texture fill runs at the largest scale with at most this many hole px
    guide_sigma: float = 8.0        # px: the guide sets the fill's colour and light below this blur scale
    guide_weight: float = 0.75      # how far those low frequencies move towards the guide's (1: all the way)
    guide_passes: tuple[tuple[float | None, int, int], ...] = GUIDE_PASSES


SETTINGS = FillSettings()

_pm: Optional[Any] = None
_pm_error = ""
# The passes run on threads: the native code releases the GIL (ctypes) and its random generator
# is per thread, so a pass seeded on its own thread gives the same fill as run alone (tested). The
# seed it starts from is one for the process (the last set_random_seed, on any thread): every fill
# uses SEED, since fills with other seeds running at the same time would differ from run to run.
_pool = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="simpson-fill")
# Crops of one erase filled at the same time (each submits its passes to _pool; no deadlock: these
# threads wait on _pool's, never the other way round).
REGION_WORKERS = 2
PROGRESS_EVERY_S = 0.25
_region_pool = ThreadPoolExecutor(max_workers=REGION_WORKERS, thread_name_prefix="simpson-region")


def _patchmatch() -> Optional[Any]:
    global _pm, _pm_error
    if _pm is None and not _pm_error:
        try:
            from patchmatch import patch_match  # noqa: PLC0415
            if not patch_match.patchmatch_available:
                raise ImportError("its native library did not load")
            patch_match.set_verbose(False)
            _pm = patch_match
        except Exception as e:  # noqa: BLE001 - reported by status()
            _pm_error = str(e) or type(e).__name__
    return _pm


def _resize_to(rgb: np.ndarray, hole: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Downscale so the long side is at most `side`."""
    return _scaled(rgb, hole, side / max(hole.shape))


def _scaled(rgb: np.ndarray, hole: np.ndarray, s: float) -> tuple[np.ndarray, np.ndarray]:
    """Downscale by `s` (nothing when s >= 1); a pixel is a hole if any source pixel was."""
    if s >= 1:
        return rgb, hole
    h, w = hole.shape
    size = (max(8, round(w * s)), max(8, round(h * s)))
    small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    small_hole = cv2.resize(hole.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0
    return small, small_hole


def exemplar_fill(pm: Any, rgb: np.ndarray, hole: np.ndarray, side: int, radius: int) -> np.ndarray:
    """One PatchMatch fill of the crop downscaled to long side `side` (uint8, at that size)."""
    return _inpaint(pm, *_resize_to(rgb, hole, side), radius)


def _inpaint(pm: Any, small: np.ndarray, small_hole: np.ndarray, radius: int) -> np.ndarray:
    """PatchMatch inpainting of `small_hole` in `small`, the patch radius capped at a quarter of
    the crop's short side, from this thread's generator seeded with SEED (uint8, small's size)."""
    radius = max(1, min(radius, min(small_hole.shape) // 4))
    pm.set_random_seed(SEED)   # this thread's generator
    return pm.inpaint(small, small_hole.astype(np.uint8) * 255, patch_size=radius)


def _trivial(rgb: np.ndarray, hole: np.ndarray) -> Optional[np.ndarray]:
    """The fill where PatchMatch has nothing to do: no hole (a copy), or nothing to copy from or
    too small for patches (OpenCV's Telea); None otherwise."""
    if not hole.any():
        return rgb.copy()
    if hole.all() or min(hole.shape) < 8:
        return cv2.inpaint(rgb, hole.astype(np.uint8), 5, cv2.INPAINT_TELEA)
    return None


def _with_hole(rgb: np.ndarray, hole: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """A copy of rgb with the hole's pixels (n×3, in row order) replaced."""
    out = rgb.copy()
    y0, y1, x0, x1 = _box(hole)
    out[y0:y1, x0:x1][hole[y0:y1, x0:x1]] = pixels
    return out


def ensemble_fill(pm: Any, rgb: np.ndarray, hole: np.ndarray,
                  passes: tuple[tuple[float | None, int, int], ...] = PASSES,
                  progress: Optional[Progress] = None) -> np.ndarray:
    """rgb h×w×3 uint8, hole h×w bool -> h×w×3 uint8; pixels outside the hole are unchanged.

    Each pass fills its window of the crop at its working size; the fills are resized to the
    crop's resolution over the hole's box only, and averaged."""
    done = _trivial(rgb, hole)
    if done is not None:
        return done
    y0, y1, x0, x1 = _box(hole)
    return _with_hole(rgb, hole, _guide_box(pm, rgb, hole, passes, progress)[hole[y0:y1, x0:x1]])


def _guide_box(pm: Any, rgb: np.ndarray, hole: np.ndarray, passes: tuple[tuple[float | None, int, int], ...],
               progress: Optional[Progress] = None) -> np.ndarray:
    """The mean of the passes' fills over the hole's box (uint8; only hole pixels are meaningful)."""
    y0, y1, x0, x1 = _box(hole)
    windows = [_window(hole, context) for context, _, _ in passes]
    fills = [_pool.submit(exemplar_fill, pm, rgb[wy0:wy1, wx0:wx1], hole[wy0:wy1, wx0:wx1], side, radius)
             for (wy0, wy1, wx0, wx1), (_, side, radius) in zip(windows, passes)]
    total = np.zeros((y1 - y0, x1 - x0, 3), np.float32)
    try:
        for i, ((wy0, wy1, wx0, wx1), future) in enumerate(zip(windows, fills)):
            if progress is not None:    # here, on the request's thread: it may raise Cancelled
                label = "colour and light" if len(passes) == 1 else f"pass {i + 1} of {len(passes)}"
                progress(0.1 + 0.8 * i / len(passes), f"Filling ({label})")
            fill = future.result().astype(np.float32)
            part = (wy1 - wy0, wx1 - wx0)
            box = (x0 - wx0, y0 - wy0, x1 - wx0, y1 - wy0)     # the hole's box in this window
            if fill.shape[:2] == part:
                total += fill[box[1]:box[3], box[0]:box[2]]
            else:
                total += _upscale_box(fill, part, box)
    finally:
        for future in fills:
            future.cancel()             # passes not started yet, after a cancel or an error
    return np.clip(total / len(passes) + 0.5, 0, 255).astype(np.uint8)


def texture_fill(pm: Any, rgb: np.ndarray, hole: np.ndarray, settings: FillSettings = SETTINGS) -> np.ndarray:
    """One PatchMatch fill of the hole's box plus settings.context × its size around it, at full
    resolution or at the largest scale whose hole has at most settings.max_hole_px pixels (then
    resized back): the fill over the hole's box, float32 (only hole pixels are meaningful)."""
    wy0, wy1, wx0, wx1 = _window(hole, settings.context)
    win_rgb, win_hole = rgb[wy0:wy1, wx0:wx1], hole[wy0:wy1, wx0:wx1]
    y0, y1, x0, x1 = _box(win_hole)
    scale = min(1.0, (settings.max_hole_px / max(1, int(win_hole.sum()))) ** 0.5)
    small, small_hole = _scaled(win_rgb, win_hole, scale)
    fill = _inpaint(pm, small, small_hole, settings.patch_radius if scale >= 1 else settings.scaled_patch_radius)
    if scale < 1:
        return _upscale_box(fill, win_hole.shape, (x0, y0, x1, y1)).astype(np.float32)
    return fill[y0:y1, x0:x1].astype(np.float32)


def corrected(texture: np.ndarray, guide: np.ndarray, hole: np.ndarray, sigma: float,
              weight: float = 1.0) -> np.ndarray:
    """The fill's hole pixels (a vector, uint8 n×3): texture + weight × (guide − texture) blurred
    over sigma px, with the difference zero outside the hole (so the correction fades out at its
    edge). texture and guide cover the hole's box."""
    y0, y1, x0, x1 = _box(hole)
    m = int(np.ceil(3 * sigma))
    h, w = hole.shape
    by0, by1, bx0, bx1 = max(0, y0 - m), min(h, y1 + m), max(0, x0 - m), min(w, x1 + m)
    box_hole = hole[y0:y1, x0:x1]
    diff = np.zeros((by1 - by0, bx1 - bx0, 3), np.float32)
    inner = diff[y0 - by0:y1 - by0, x0 - bx0:x1 - bx0]
    inner[box_hole] = weight * (guide[box_hole].astype(np.float32) - texture[box_hole])
    if sigma > 0:
        diff = cv2.GaussianBlur(diff, (0, 0), sigma)
        inner = diff[y0 - by0:y1 - by0, x0 - bx0:x1 - bx0]
    return np.clip(texture[box_hole] + inner[box_hole] + 0.5, 0, 255).astype(np.uint8)


def fill(pm: Any, rgb: np.ndarray, hole: np.ndarray, settings: FillSettings = SETTINGS,
         progress: Optional[Progress] = None) -> np.ndarray:
    """rgb h×w×3 uint8, hole h×w bool -> h×w×3 uint8; pixels outside the hole are unchanged."""
    done = _trivial(rgb, hole)
    if done is not None:
        return done
    texture: Future = _pool.submit(texture_fill, pm, rgb, hole, settings)
    try:
        guide = _guide_box(pm, rgb, hole, settings.guide_passes, progress)
        if progress is not None:
            progress(0.9, "Filling (texture)")
        pixels = corrected(texture.result(), guide, hole, settings.guide_sigma, settings.guide_weight)
    finally:
        texture.cancel()
    return _with_hole(rgb, hole, pixels)


def _box(hole: np.ndarray) -> tuple[int, int, int, int]:
    """y0, y1, x0, x1 of the (non-empty) hole's bounding box, in the order slicing wants."""
    box = mask_box(hole)
    assert box is not None, "the hole is empty"
    x0, y0, x1, y1 = box
    return y0, y1, x0, x1


def _window(hole: np.ndarray, context: float | None) -> tuple[int, int, int, int]:
    """y0, y1, x0, x1 of a pass's window: the whole crop, or the hole's box with context around it."""
    h, w = hole.shape
    if context is None:
        return 0, h, 0, w
    y0, y1, x0, x1 = _box(hole)
    m = max(24, int(context * max(y1 - y0, x1 - x0)))
    return max(0, y0 - m), min(h, y1 + m), max(0, x0 - m), min(w, x1 + m)


def _upscale_box(small: np.ndarray, shape: tuple[int, int], box: tuple[int, int, int, int]) -> np.ndarray:
    """The part `box` (x0, y0, x1, y1, in crop pixels) of `small` resized to the crop's `shape`,
    interpolated as a whole-crop cubic resize would (only the box is computed)."""
    h, w = shape
    x0, y0, x1, y1 = box
    sx, sy = small.shape[1] / w, small.shape[0] / h
    mx = ((np.arange(x0, x1, dtype=np.float32) + 0.5) * sx - 0.5)[None, :].repeat(y1 - y0, 0)
    my = ((np.arange(y0, y1, dtype=np.float32) + 0.5) * sy - 0.5)[:, None].repeat(x1 - x0, 1)
    return cv2.remap(small, mx, my, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)


class BuiltinEngine(Engine):
    name = "builtin"
    ops = frozenset({"erase"})

    def status(self) -> str:
        if _patchmatch() is None:
            return (f"The built-in eraser needs the PyPatchMatch package ({_pm_error}); "
                    f"run `python3 install.py` again.")
        return "ready"

    def _pm(self) -> Any:
        pm = _patchmatch()
        if pm is None:
            from . import EngineUnavailable  # noqa: PLC0415
            raise EngineUnavailable(self.status())
        return pm

    def erase(self, rgb: np.ndarray, hole: np.ndarray, progress: Progress) -> np.ndarray:
        return fill(self._pm(), rgb, hole, SETTINGS, progress)

    def erase_many(self, crops: list[tuple[np.ndarray, np.ndarray]], progress: Progress) -> list[np.ndarray]:
        """The crops of one erase (objects far apart) filled REGION_WORKERS at a time: one crop's
        texture fill keeps one core busy and its guide the other only briefly. The same fills as
        one by one (each PatchMatch call seeds its own thread); progress and cancelling stay on
        the caller's thread, which waits in steps of PROGRESS_EVERY_S."""
        pm = self._pm()
        if len(crops) == 1:
            return [fill(pm, crops[0][0], crops[0][1], SETTINGS, progress)]
        futures = [_region_pool.submit(fill, pm, rgb, hole, SETTINGS) for rgb, hole in crops]
        out = []
        try:
            for i, future in enumerate(futures):
                while True:
                    progress(0.05 + 0.9 * i / len(crops), f"Filling region {i + 1} of {len(crops)}")
                    try:
                        out.append(future.result(timeout=PROGRESS_EVERY_S))
                        break
                    except TimeoutError:
                        continue
        finally:
            for future in futures:
                future.cancel()         # crops not started yet, after a cancel or an error
        return out
