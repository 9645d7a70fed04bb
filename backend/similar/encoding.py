"""The image encoded once per scale: the backbone's strides 8 and 16 as unit vectors on one grid,
and what is pooled from them (a mask's features, its parts, a cosine map)."""
from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .. import device
from ..masks import mask_box
from ..models.cpn import box_parts
from .types import (LARGE_SIDE, LEVELS, MAX_SIDE, MIN_SIDE, PARTS, SIDE_STEP, SMALL_SEED, STRIDE, TARGET_SEED,
                    MatchMap, MaskPatch, as_patch)

# Encodings over MAX_SIDE run in strips of this many rows: a 2048-px one peaked ~1 GB above
# resident in one piece, ~0.3 GB so (issue 26; README, bench/memory.py).
STRIP_ROWS = 256


def small_on_big(height: int, width: int, seed: np.ndarray) -> bool:
    """A small query on a photo larger than MAX_SIDE: its long side under MAX_SIDE / TARGET_SEED of
    the photo's (~9 %, ~375 px on 4,000). Issue 23's real-size regime: the encoding may go past
    MAX_SIDE (encode_side) and the big-photo verifier decides (SimilarSettings.big_photo_verifier).
    A larger query on a big photo is encoded at MAX_SIDE, where it looks as on the standard
    split's photos, and the shipped verifier decides as there (docs/similar.md)."""
    return _small_on_big(max(height, width), _long_seed(seed))


def big_photo(height: int, width: int) -> bool:
    """A photo larger than MAX_SIDE: the real-size regime of issue 23 (12-MP photos), where pixel match's
    test for hidden copies was chosen (find_similar's hidden_copies)."""
    return max(height, width) > MAX_SIDE


def _small_on_big(long_image: int, long_seed: int) -> bool:
    return long_image > MAX_SIDE and long_image * TARGET_SEED / long_seed > MAX_SIDE


def _long_seed(seed: np.ndarray) -> int:
    x0, y0, x1, y1 = mask_box(seed) or (0, 0, 0, 0)
    return max(x1 - x0, y1 - y0, 1)


def encode_side(height: int, width: int, seed: np.ndarray, large_side: int = LARGE_SIDE) -> int:
    """Long side (px) to encode the image at so that the seed's long side is ~TARGET_SEED px
    (a small seed on a photo larger than MAX_SIDE: up to `large_side`, see types.py)."""
    long_seed, long_image = _long_seed(seed), max(height, width)
    if _small_on_big(long_image, long_seed):
        side = min(max(MAX_SIDE, long_image * SMALL_SEED / long_seed), large_side, long_image)
        return int(round(side / SIDE_STEP)) * SIDE_STEP if side > MAX_SIDE else MAX_SIDE
    side = int(round(long_image * TARGET_SEED / long_seed / SIDE_STEP)) * SIDE_STEP
    return int(min(MAX_SIDE, max(MIN_SIDE, side)))


def encode(backbone: torch.nn.Module, rgb: np.ndarray, side: int) -> MatchMap:
    """Runs the backbone once on rgb resized to long side `side` (padded to a multiple of 32)."""
    raw, scale = encode_raw(backbone, rgb, side)
    return MatchMap(match_feats(raw), scale, rgb.shape[0], rgb.shape[1])


def encode_raw(backbone: torch.nn.Module, rgb: np.ndarray, side: int) -> tuple[dict[str, torch.Tensor], float]:
    """The backbone's raw level maps (1×C×h×w) of rgb resized to long side `side`, and the scale.
    An encoding larger than MAX_SIDE runs the backbone's high-resolution blocks in strips of
    STRIP_ROWS rows (Lite0.features: the same maps, a fraction of the memory; issue 26)."""
    h, w = rgb.shape[:2]
    scale = side / max(h, w)
    eh, ew = max(1, round(h * scale)), max(1, round(w * scale))
    small = cv2.resize(rgb, (ew, eh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    ph, pw = -(-eh // 32) * 32, -(-ew // 32) * 32
    padded = np.zeros((ph, pw, 3), np.uint8)
    padded[:eh, :ew] = small
    if ph > eh:   # replicate edges into the padding so it does not look like an object
        padded[eh:, :ew] = small[-1:]
    if pw > ew:
        padded[:, ew:] = padded[:, ew - 1:ew]
    x = torch.from_numpy(padded.transpose(2, 0, 1).copy()).float()[None].to(device.device_of(backbone))
    del small, padded
    with torch.inference_mode():
        if hasattr(backbone, "features"):   # Lite0: the levels used only; a large encoding in strips
            out = backbone.features(x, LEVELS, STRIP_ROWS if side > MAX_SIDE else None)
        else:
            out = backbone(x)
    return {lvl: out[lvl].float().cpu() for lvl in LEVELS}, scale   # the rest of the search is on the CPU


def match_feats(raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Raw level maps -> MatchMap.feats: C×gh×gw on the s8 grid (s16 resampled), unit length per cell."""
    grid = raw["s8"].shape[-2:]
    feats = {}
    for lvl in LEVELS:
        f = raw[lvl].float()
        if f.shape[-2:] != grid:
            f = F.interpolate(f, size=grid, mode="bilinear", align_corners=False)
        feats[lvl] = F.normalize(f[0], dim=0).contiguous()
    return feats


def to_grid(mask: "np.ndarray | MaskPatch", mm: MatchMap) -> np.ndarray:
    """Mask (H×W bool or MaskPatch) -> gh×gw float32 fraction of each grid cell that it covers."""
    p = as_patch(mask)
    gh, gw = mm.grid
    out = np.zeros((gh, gw), np.float32)
    if p.mask.size == 0:
        return out
    cell = STRIDE / mm.scale
    x0, y0 = p.x, p.y
    x1, y1 = x0 + p.mask.shape[1], y0 + p.mask.shape[0]
    gx0, gy0 = int(x0 // cell), int(y0 // cell)
    gx1, gy1 = min(gw, int(np.ceil(x1 / cell))), min(gh, int(np.ceil(y1 / cell)))
    if gx1 <= gx0 or gy1 <= gy0:
        return out
    # the cells' extent in image pixels, the patch pasted into it, resized onto the cells
    sx0, sy0 = int(gx0 * cell), int(gy0 * cell)
    sx1, sy1 = int(np.ceil(gx1 * cell)), int(np.ceil(gy1 * cell))
    canvas = np.zeros((sy1 - sy0, sx1 - sx0), np.float32)
    cx1, cy1 = min(x1, sx1), min(y1, sy1)
    canvas[y0 - sy0:cy1 - sy0, x0 - sx0:cx1 - sx0] = p.mask[:cy1 - y0, :cx1 - x0]
    out[gy0:gy1, gx0:gx1] = cv2.resize(canvas, (gx1 - gx0, gy1 - gy0), interpolation=cv2.INTER_AREA)
    return out


def pool(mm: MatchMap, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Weighted mean of the features under gh×gw weights, per level, renormalised to unit length."""
    rows, cols = np.flatnonzero(weights.any(1)), np.flatnonzero(weights.any(0))
    if rows.size == 0:
        weights = np.ones_like(weights)
        rows, cols = np.arange(weights.shape[0]), np.arange(weights.shape[1])
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    wt = torch.from_numpy(np.ascontiguousarray(weights[r0:r1, c0:c1]))
    out = {}
    for lvl, f in mm.feats.items():
        v = torch.einsum("chw,hw->c", f[:, r0:r1, c0:c1], wt)
        out[lvl] = F.normalize(v, dim=0).numpy()
    return out


def pool_parts(mm: MatchMap, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Features pooled in a PARTS×PARTS split of the weights' box (cells of the grid; a part is at
    least one cell) -> level -> PARTS²×C, rows unit length (zero where a part has no weight)."""
    rows, cols = np.flatnonzero(weights.any(1)), np.flatnonzero(weights.any(0))
    out = {lvl: np.zeros((PARTS * PARTS, f.shape[0]), np.float32) for lvl, f in mm.feats.items()}
    if rows.size == 0:
        return out
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    wt = torch.from_numpy(np.ascontiguousarray(weights))
    for i, (ya, yb) in enumerate(box_parts(r0, r1, PARTS)):
        for j, (xa, xb) in enumerate(box_parts(c0, c1, PARTS)):
            w = wt[ya:yb, xa:xb]
            if float(w.sum()) <= 0:
                continue
            for lvl, f in mm.feats.items():
                out[lvl][i * PARTS + j] = F.normalize(torch.einsum("chw,hw->c", f[:, ya:yb, xa:xb], w), dim=0).numpy()
    return out


def cosine_map(mm: MatchMap, pooled: dict[str, np.ndarray]) -> np.ndarray:
    """gh×gw mean over levels of the cosine between each location and the pooled query."""
    total = None
    for lvl, f in mm.feats.items():
        c = torch.einsum("chw,c->hw", f, torch.from_numpy(pooled[lvl]))
        total = c if total is None else total + c
    return (total / len(mm.feats)).numpy()
