"""Select similar: proposals from feature matching, one-click masks, verification, iteration.

    query mask ──► prototype (mask-pooled Lite0 features at strides 8 and 16)
               ──► cosine map over the image (encoded so the query is ~96 px), peaks by max-pool NMS
                   (or, when backend/weights/cpn-lite0.pt exists, the learned CPN heatmap's peaks)
               ──► each peak becomes a click for the one-click segmenter (DSN, or GrabCut fallback)
               ──► a verifier scores (query, candidate); accepted candidates become new queries (IDS)

The image is encoded once per scale (cached in the ImageEntry by the engine); everything after
that is matching on a small grid plus one segmenter call per proposal.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Optional, Protocol

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from . import device, weights
from .models.cpn import CPN, box_parts, pick_peaks

log = logging.getLogger("simpson.similar")

STRIDE = 8               # grid of the matching features (s16 is upsampled to it)
LEVELS = ("s8", "s16")
TARGET_SEED = 96         # the query's long side in encoded pixels
MIN_SIDE, MAX_SIDE = 320, 1024   # long side of the encoded image
# Photos larger than MAX_SIDE: a small query (a 60-px cigarette butt on a 4000-px photo is 15 px,
# two cells, at 1024) gets a finer encoding, the query's long side >= SMALL_SEED encoded px, up to
# LARGE_SIDE and never past the photo's own size (issue 23; docs/similar.md).
SMALL_SEED = 48
LARGE_SIDE = 2048
SIDE_STEP = 64           # encoded sides are quantised so nearby queries share one encoding
HIST_BINS = (8, 4, 4)    # colour histogram bins: hue, saturation, value
SHAPE = 16               # shape descriptor: the mask's box resized to SHAPE×SHAPE
PARTS = 3                # part descriptor: features pooled in PARTS×PARTS cells of the box


@dataclass
class Settings:
    """Thresholds of the training-free pipeline; fixed on synthetic validation (docs/similar.md)."""
    peak_rel: float = 0.7         # a peak must reach this fraction of the query's own peak ...
    peak_floor: float = 0.25      # ... and at least this cosine
    max_peaks: int = 12           # proposals segmented per round (top-k)
    rounds: int = 3               # IDS rounds at most
    seconds: float = 6.0          # IDS time budget (the first round always runs)
    accept: float = 0.75          # training-free verifier: mask-pooled cosine to the query
    min_ratio: float = 1 / 3      # candidate area / query area
    max_ratio: float = 3.0
    max_overlap: float = 0.3      # of a candidate's area already covered by the query or accepted ones
    cosine_too: bool = True       # with a CPN, also propose the cosine map's peaks (docs/similar.md)
    complete_shape: bool = True   # click the placed query's missed part when a mask is small
    size_hint: bool = True        # the one-click model zooms in for an object of the query's size
    shape_click: bool = True      # a peak in a hole of the placed query: click the query's shape too


class MatchMap(NamedTuple):
    """Per-location L2-normalised features per level on one grid: level -> C×gh×gw float32.

    scale: encoded pixels per image pixel; one grid cell = STRIDE / scale image pixels."""
    feats: dict[str, torch.Tensor]
    scale: float
    height: int      # image size
    width: int

    @property
    def grid(self) -> tuple[int, int]:
        return tuple(self.feats[LEVELS[0]].shape[-2:])  # type: ignore[return-value]


class Descriptor(NamedTuple):
    """What the verifier knows about one object: pooled features per level (unit vectors),
    hsv histogram (sums to 1), area in image px, box (x, y, w, h), shape (SHAPE×SHAPE float),
    parts: per level PARTS²×C features pooled in a PARTS×PARTS split of the box (unit or zero)."""
    pooled: dict[str, np.ndarray]
    hist: np.ndarray
    area: float
    box: tuple[int, int, int, int]
    shape: np.ndarray
    parts: dict[str, np.ndarray]


class Patch(NamedTuple):
    """A mask stored by its box: local h×w bool at (x, y) of the image (cheap on 12-MP photos)."""
    x: int
    y: int
    mask: np.ndarray

    @property
    def box(self) -> tuple[int, int, int, int]:
        return self.x, self.y, self.mask.shape[1], self.mask.shape[0]

    @property
    def area(self) -> int:
        return int(np.count_nonzero(self.mask))

    def full(self, height: int, width: int) -> np.ndarray:
        out = np.zeros((height, width), bool)
        out[self.y:self.y + self.mask.shape[0], self.x:self.x + self.mask.shape[1]] = self.mask
        return out

    def region(self, full: np.ndarray) -> np.ndarray:
        """The part of an H×W array under this patch's box (a view)."""
        return full[self.y:self.y + self.mask.shape[0], self.x:self.x + self.mask.shape[1]]

    def seen_from(self, other: "Patch") -> np.ndarray:
        """This mask in `other`'s box: a bool array of other.mask's shape, False outside this patch."""
        out = np.zeros(other.mask.shape, bool)
        x0, y0 = max(self.x, other.x), max(self.y, other.y)
        x1 = min(self.x + self.mask.shape[1], other.x + other.mask.shape[1])
        y1 = min(self.y + self.mask.shape[0], other.y + other.mask.shape[0])
        if x1 > x0 and y1 > y0:
            out[y0 - other.y:y1 - other.y, x0 - other.x:x1 - other.x] = \
                self.mask[y0 - self.y:y1 - self.y, x0 - self.x:x1 - self.x]
        return out

    def covers(self, x: float, y: float) -> bool:
        """Whether the pixel under image point (x, y) is in the mask."""
        lx, ly = int(x) - self.x, int(y) - self.y
        return 0 <= ly < self.mask.shape[0] and 0 <= lx < self.mask.shape[1] and bool(self.mask[ly, lx])

    def iou(self, other: "Patch") -> float:
        inter = np.count_nonzero(self.mask & other.seen_from(self))
        union = self.area + other.area - inter
        return inter / union if union else 0.0


def as_patch(mask: "np.ndarray | Patch") -> Patch:
    """A full H×W bool mask cropped to its box (a Patch is returned as is)."""
    if isinstance(mask, Patch):
        return mask
    x0, y0, x1, y1 = box_of(mask)
    return Patch(x0, y0, mask[y0:y1, x0:x1].astype(bool, copy=False))


class Candidate(NamedTuple):
    patch: Patch
    peak: float           # cosine at the proposal's peak
    score: float          # verifier score 0..1


class Segment(Protocol):
    def __call__(self, x: float, y: float, template: Patch, more: tuple = ()) -> Patch:
        """The object clicked at (x, y); template: the query's shape moved there; more: further
        (x, y) positive clicks on the same object (its other pieces), if the segmenter takes them."""
        ...


class Verifier(Protocol):
    threshold: float

    def score(self, query: Descriptor, cand: Descriptor) -> float: ...


# ---------------------------------------------------------------- encoding

def encode_side(height: int, width: int, seed: np.ndarray) -> int:
    """Long side (px) to encode the image at so that the seed's long side is ~TARGET_SEED px."""
    x0, y0, x1, y1 = box_of(seed)
    long_seed = max(x1 - x0, y1 - y0, 1)
    long_image = max(height, width)
    side = long_image * TARGET_SEED / long_seed
    if side > MAX_SIDE and long_image > MAX_SIDE:   # a small query on a big photo
        side = min(max(MAX_SIDE, long_image * SMALL_SEED / long_seed), LARGE_SIDE, long_image)
        return int(round(side / SIDE_STEP)) * SIDE_STEP if side > MAX_SIDE else MAX_SIDE
    side = int(round(side / SIDE_STEP)) * SIDE_STEP
    return int(min(MAX_SIDE, max(MIN_SIDE, side)))


def encode(backbone: torch.nn.Module, rgb: np.ndarray, side: int) -> MatchMap:
    """Runs the backbone once on rgb resized to long side `side` (padded to a multiple of 32)."""
    raw, scale = encode_raw(backbone, rgb, side)
    return MatchMap(match_feats(raw), scale, rgb.shape[0], rgb.shape[1])


def encode_raw(backbone: torch.nn.Module, rgb: np.ndarray, side: int) -> tuple[dict[str, torch.Tensor], float]:
    """The backbone's raw level maps (1×C×h×w) of rgb resized to long side `side`, and the scale."""
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
    with torch.inference_mode():
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


def to_grid(mask: "np.ndarray | Patch", mm: MatchMap) -> np.ndarray:
    """Mask (H×W bool or Patch) -> gh×gw float32 fraction of each grid cell that it covers."""
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


# ---------------------------------------------------------------- descriptors

def box_of(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the True pixels; (0, 0, 0, 0) if none."""
    rows = np.flatnonzero(mask.any(1))
    if rows.size == 0:
        return 0, 0, 0, 0
    cols = np.flatnonzero(mask[rows[0]:rows[-1] + 1].any(0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def colour_hist(rgb: np.ndarray, p: Patch) -> np.ndarray:
    x0, y0, w, h = p.box
    crop, m = rgb[y0:y0 + h, x0:x0 + w], p.mask.astype(np.uint8)
    step = max(1, int(np.sqrt(m.size / 4096)))       # about 4k pixels are plenty
    crop, m = np.ascontiguousarray(crop[::step, ::step]), np.ascontiguousarray(m[::step, ::step])
    hsv = cv2.cvtColor(crop, cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1, 2], m, list(HIST_BINS), [0, 180, 0, 256, 0, 256]).ravel()
    return hist / max(float(hist.sum()), 1.0)


def describe(mm: MatchMap, rgb: np.ndarray, mask: "np.ndarray | Patch") -> Descriptor:
    p = as_patch(mask)
    crop = p.mask.astype(np.float32)
    shape = cv2.resize(crop, (SHAPE, SHAPE), interpolation=cv2.INTER_AREA) if crop.size else np.zeros((SHAPE, SHAPE), np.float32)
    wts = to_grid(p, mm)
    return Descriptor(pool(mm, wts), colour_hist(rgb, p), float(p.area), p.box, shape, pool_parts(mm, wts))


def descriptor_row(d: Descriptor) -> np.ndarray:
    """Descriptor -> one float32 row: s8 | s16 | hist | shape | area | box (x, y, w, h) |
    parts s8 | parts s16."""
    return np.concatenate([d.pooled["s8"], d.pooled["s16"], d.hist, d.shape.ravel(),
                           [d.area], np.asarray(d.box, np.float32),
                           d.parts["s8"].ravel(), d.parts["s16"].ravel()]).astype(np.float32)


class CosineVerifier:
    """Training-free verification: mean pooled cosine to the query and a plausible size."""

    def __init__(self, settings: Settings):
        self.s = settings
        self.threshold = settings.accept

    def score(self, q: Descriptor, c: Descriptor) -> float:
        ratio = c.area / max(q.area, 1.0)
        if not self.s.min_ratio <= ratio <= self.s.max_ratio:
            return 0.0
        return float(np.mean([np.dot(q.pooled[lvl], c.pooled[lvl]) for lvl in LEVELS]))


# ---------------------------------------------------------------- proposals

def smooth_map(sim: np.ndarray, seed_cells: tuple[float, float]) -> np.ndarray:
    """A light box blur (0.3 of the query's size): one peak per object, neighbours kept apart."""
    bw, bh = max(1, int(round(seed_cells[0] * 0.3))), max(1, int(round(seed_cells[1] * 0.3)))
    return cv2.blur(sim.astype(np.float32), (bw, bh), borderType=cv2.BORDER_REPLICATE)


ALIGN_SIDE = 48       # template matching works with the query resized to at most this


def align(rgb: np.ndarray, sp: "Patch", cx: float, cy: float, radius: float) -> tuple[float, float]:
    """Where the query's box centre fits best near (cx, cy): masked squared differences of the
    query's pixels, searching ±radius image pixels on a small copy. Places where the box would
    overlap the query's own box by half its size or more on both axes are not searched (the
    query matches itself perfectly: a copy beside it got the query's place)."""
    h, w = rgb.shape[:2]
    tw, th = sp.mask.shape[1], sp.mask.shape[0]
    f = min(1.0, ALIGN_SIDE / max(tw, th))
    x0, y0 = max(0, int(round(cx - tw / 2 - radius))), max(0, int(round(cy - th / 2 - radius)))
    x1, y1 = min(w, int(round(cx + tw / 2 + radius))), min(h, int(round(cy + th / 2 + radius)))
    sw, sh = max(2, round(tw * f)), max(2, round(th * f))
    rw, rh = round((x1 - x0) * f), round((y1 - y0) * f)
    if rw < sw or rh < sh:
        return cx, cy          # the query does not fit here (image border): keep the grid peak
    tmpl = cv2.resize(rgb[sp.y:sp.y + th, sp.x:sp.x + tw], (sw, sh), interpolation=cv2.INTER_AREA)
    m = cv2.resize(sp.mask.astype(np.uint8), (sw, sh), interpolation=cv2.INTER_NEAREST)
    if m.sum() < 4:
        return cx, cy
    region = cv2.resize(rgb[y0:y1, x0:x1], (rw, rh), interpolation=cv2.INTER_AREA)
    res = cv2.matchTemplate(region.astype(np.float32), tmpl.astype(np.float32), cv2.TM_SQDIFF,
                            mask=np.repeat(m[..., None], 3, 2).astype(np.float32))
    ys, xs = np.mgrid[:res.shape[0], :res.shape[1]]
    itself = (np.abs(x0 + xs / f - sp.x) < tw / 2) & (np.abs(y0 + ys / f - sp.y) < th / 2)
    if itself.all():
        return cx, cy
    res[itself] = np.inf
    _, _, (bx, by), _ = cv2.minMaxLoc(res)
    return x0 + (bx + sw / 2) / f, y0 + (by + sh / 2) / f


def peaks(smooth: np.ndarray, seed_cells: tuple[float, float], blocked: np.ndarray, tau: float,
          k: int) -> list[tuple[int, int, float]]:
    """(gx, gy, value) of local maxima of a (matched) cosine map or a CPN heatmap, best first:
    max-pool NMS with a kernel of 0.6 × the query's short side in cells (>= 3), values >= tau.

    smooth: gh×gw; seed_cells: the query's (w, h) in cells; blocked: gh×gw bool, no peaks there."""
    return pick_peaks(torch.from_numpy(smooth), peak_kernel(min(seed_cells)), tau, k, torch.from_numpy(blocked))


def peak_kernel(short_side_cells: float) -> int:
    """The NMS window of `peaks`: 0.6 × the query's short side in cells, odd, at least 3."""
    return max(3, int(round(0.6 * short_side_cells)) | 1)


def move_template(seed: Patch, anchor: tuple[float, float], x: float, y: float,
                  height: int, width: int) -> Patch:
    """The seed translated so that its anchor point lands on (x, y), clipped to the image."""
    dx, dy = int(round(x - anchor[0])), int(round(y - anchor[1]))
    h, w = seed.mask.shape
    nx, ny = seed.x + dx, seed.y + dy
    cx0, cy0 = max(0, -nx), max(0, -ny)
    cx1, cy1 = min(w, width - nx), min(h, height - ny)
    if cx1 <= cx0 or cy1 <= cy0:
        return Patch(0, 0, np.zeros((0, 0), bool))
    return Patch(nx + cx0, ny + cy0, seed.mask[cy0:cy1, cx0:cx1])


def interior_point(mask: "np.ndarray | Patch") -> tuple[float, float]:
    """The most interior pixel centre of a mask (a safe place to click)."""
    p = as_patch(mask)
    dist = cv2.distanceTransform(np.pad(p.mask, 1).astype(np.uint8), cv2.DIST_L2, 5)[1:-1, 1:-1]
    yy, xx = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return p.x + xx + 0.5, p.y + yy + 0.5


PIECE_MIN = 0.1       # a piece of the query is a connected part of at least this share of it
PIECES_MAX = 1.5      # a mask grown by clicking more pieces may reach this × the query's area


def query_pieces(sp: Patch) -> list[tuple[float, float]]:
    """Interior points (image pixels) of the query's connected parts of >= PIECE_MIN of its area."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(sp.mask.astype(np.uint8), connectivity=8)
    big = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= PIECE_MIN * max(sp.area, 1)]
    return [interior_point(Patch(sp.x, sp.y, labels == i)) for i in big]


def complete_pieces(pieces: list[tuple[float, float]], offset: tuple[float, float], got: Patch,
                    px: float, py: float, template: Patch, taken: np.ndarray, segment: "Segment",
                    query_area: int) -> Patch:
    """The one-click model may select one piece of an object that comes in several (a symbol and
    its letter, a figure and its flags): click the query's pieces that it left out too, moved by
    `offset` (where template matching placed the query). The bigger mask is kept unless it grew
    past PIECES_MAX × the query (a piece's click that missed and took the background)."""
    H, W = taken.shape
    more = []
    for x, y in pieces:
        x, y = x + offset[0], y + offset[1]
        if not (0 <= x < W and 0 <= y < H) or taken[int(y), int(x)]:
            continue
        lx, ly = int(x) - got.x, int(y) - got.y
        if 0 <= ly < got.mask.shape[0] and 0 <= lx < got.mask.shape[1] and got.mask[ly, lx]:
            continue                             # that piece is selected already
        more.append((x, y))
    if not more:
        return got
    bigger = segment(px, py, template, tuple(more))
    return bigger if got.area < bigger.area <= PIECES_MAX * query_area else got


def holes_of(mask: np.ndarray) -> np.ndarray:
    """The background pixels a mask encloses (the inside of a ring or an outline drawing)."""
    outside = np.pad(~mask, 1, constant_values=True).astype(np.uint8)
    cv2.floodFill(outside, None, (0, 0), 2)
    return outside[1:-1, 1:-1] == 1


HOLE_SHARE = 0.5      # a mask with this share of its area in the placed query's holes is the background inside


def click_the_shape(got: Patch, px: float, py: float, template: Patch, taken: np.ndarray,
                    segment: "Segment") -> tuple[Patch, float, float]:
    """A peak in a hole of the placed query (an outline drawing, a ring, a thought bubble) puts
    the click on the background inside the object, and the one-click model rightly selects that
    background. When the click is in such a hole and the mask lies mostly in the holes, click the
    placed query's interior point instead, and keep whichever mask is closer to the query's
    shape (template matching may have placed it off the object). A click off the placed query
    but not in a hole is left alone: that is template matching missing a copy of another size."""
    if not template.area or template.covers(px, py):
        return got, px, py
    holes = holes_of(template.mask)
    lx, ly = int(px) - template.x, int(py) - template.y
    if not (0 <= ly < holes.shape[0] and 0 <= lx < holes.shape[1] and holes[ly, lx]):
        return got, px, py
    if np.count_nonzero(got.seen_from(template) & holes) < HOLE_SHARE * got.area:
        return got, px, py
    ix, iy = interior_point(template)
    if taken[int(iy), int(ix)]:
        return got, px, py
    alt = segment(ix, iy, template)
    return (alt, ix, iy) if alt.iou(template) > got.iou(template) else (got, px, py)


SHORT = 0.5           # a one-click mask under this share of the query's area may have missed a part


def complete_shape(got: Patch, px: float, py: float, template: Patch, taken: np.ndarray,
                   segment: "Segment", query_area: int) -> Patch:
    """The one-click model may select part of a long, thin object (a stick) from a click at one
    end: when the mask is under SHORT × the query's area, click the interior of the biggest
    part of the placed query it left out, and keep the bigger mask unless it grew past
    PIECES_MAX × the query (the click missed and took the background)."""
    if got.area >= SHORT * query_area or not template.area:
        return got
    miss = template.mask & ~got.seen_from(template) & ~template.region(taken)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(miss.astype(np.uint8), connectivity=8)
    if n < 2:
        return got
    big = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    if stats[big, cv2.CC_STAT_AREA] < PIECE_MIN * template.area:
        return got
    bigger = segment(px, py, template, (interior_point(Patch(template.x, template.y, labels == big)),))
    return bigger if got.area < bigger.area <= PIECES_MAX * query_area else got


def keep_parts(p: Patch, x: float, y: float, template: Optional[Patch] = None) -> Patch:
    """The connected parts of the patch under (x, y) or lying mostly (>= 50 %) inside the
    template (objects in several pieces), else its largest part; cropped to their box. A part
    inside a hole of another (a blob inside an outline drawing) counts as part of it, and a
    click in a hole is on the part around it."""
    n, labels = cv2.connectedComponents((p.mask | holes_of(p.mask)).astype(np.uint8), connectivity=8)
    if n > 2:
        keep = np.zeros(n, bool)
        lx, ly = int(x) - p.x, int(y) - p.y
        if 0 <= ly < labels.shape[0] and 0 <= lx < labels.shape[1]:
            keep[labels[ly, lx]] = True
        labels[~p.mask] = 0                      # holes are not selected
        area = np.bincount(labels.ravel(), minlength=n)
        if template is not None and template.area:
            keep |= np.bincount(labels[template.seen_from(p)], minlength=n) >= 0.5 * area
        keep[0] = False
        if not keep.any():
            keep[1 + int(np.argmax(area[1:]))] = True
        p = Patch(p.x, p.y, keep[labels])
    q = as_patch(p.mask)
    return Patch(p.x + q.x, p.y + q.y, q.mask)


# ---------------------------------------------------------------- learned proposals (CPN)

_CPN_LOCK = threading.Lock()
_CPN_LOADED: dict[tuple, Optional[CPN]] = {}


def default_cpn() -> Optional[CPN]:
    """The CPN from backend/weights/cpn-lite0.pt when that file exists (optional; cached per file
    version), else None; a file that fails its checksum or does not load is logged and not used
    (cosine proposals)."""
    file = weights.path("cpn")
    try:
        st = file.stat()
    except OSError:
        return None
    key = (str(file), st.st_mtime_ns, st.st_size)
    with _CPN_LOCK:
        if key not in _CPN_LOADED:
            _CPN_LOADED.clear()
            try:
                _CPN_LOADED[key] = device.place(weights.load("cpn", file), "The CPN")
                log.info("similar: proposals from the CPN (%s)", file.name)
            except Exception:   # noqa: BLE001 - fall back to the cosine proposals, say why
                log.exception("similar: CPN weights unusable; cosine proposals")
                _CPN_LOADED[key] = None
        return _CPN_LOADED[key]


def cpn_heatmap(cpn: CPN, mm: MatchMap, weights: np.ndarray,
                projected: Optional[dict[str, torch.Tensor]] = None) -> np.ndarray:
    """gh×gw click probabilities for one query (its grid weights, see to_grid)."""
    dev = device.device_of(cpn)
    with torch.inference_mode():
        feats = {lvl: f[None].to(dev) for lvl, f in mm.feats.items()}
        q = torch.from_numpy(np.ascontiguousarray(weights, np.float32))[None].to(dev)
        return torch.sigmoid(cpn(feats, q, projected))[0, 0].float().cpu().numpy()


@dataclass
class Result:
    accepted: list[Candidate] = field(default_factory=list)
    rejected: list[Candidate] = field(default_factory=list)
    rounds: int = 0
    proposals: int = 0


def find_similar(rgb: np.ndarray, seed: np.ndarray, mm: MatchMap, segment: Segment, verifier: Verifier,
                 settings: Settings, progress: Callable[[float, str], None] = lambda f, m: None,
                 clock: Callable[[], float] = time.perf_counter, cpn: Any = "auto",
                 align_clicks: bool = True) -> Result:
    """The whole loop on an encoded image. seed: H×W bool (the query). Accepted candidates are
    disjoint from the seed and from each other.

    cpn: the proposal source. "auto" = the shipped CPN (default_cpn) when its file exists, else the
    training-free cosine map; None = always the cosine map; or a CPN module. With a CPN, each
    query (the seed, then every accepted instance) gives a heatmap, proposals are the peaks of
    their maximum above the CPN's stored threshold; the rest of the loop is the same. With
    settings.cosine_too the cosine map's peaks away from the CPN's are proposed as well (thin,
    low-contrast copies that the CPN's heatmap misses; the verifier still decides).

    align_clicks: move each peak's click to where template matching puts the query (for the
    GrabCut fallback, which needs the query's shape in place); False = click at the peak, for a
    one-click model, which segments from any point on the object (alignment sent 27 of 432
    validation copies' clicks off the object or onto a neighbour: docs/similar.md)."""
    if isinstance(cpn, str):
        cpn = default_cpn()
    start = clock()
    res = Result()
    H, W = seed.shape
    sp = as_patch(seed)
    query = describe(mm, rgb, sp)
    cell = STRIDE / mm.scale
    seed_cells = (sp.mask.shape[1] / cell, sp.mask.shape[0] / cell)
    anchor = interior_point(sp)
    centre = (sp.x + sp.mask.shape[1] / 2, sp.y + sp.mask.shape[0] / 2)
    pieces = [] if align_clicks else query_pieces(sp)   # an object in pieces: where to click each
    taken = seed.copy()                          # pixels that belong to known objects
    taken_grid = to_grid(sp, mm)
    queries = [query.pooled]
    qgrids = [taken_grid]                        # the queries' grid weights (CPN inputs)
    projected = None                             # the CPN's projected maps, once per call
    sims: list[np.ndarray] = []                  # per query: its smoothed cosine map
    heats: list[np.ndarray] = []                 # per query: its CPN heatmap
    tried = np.zeros(mm.grid, bool)              # cells already proposed or segmented
    rounds_done = 0                              # queries the proposals have seen
    for rnd in range(settings.rounds):
        if rnd > 0 and clock() - start > settings.seconds:
            break
        if len(qgrids) == rounds_done:
            break
        rounds_done = len(qgrids)
        blocked = tried | (taken_grid > 0.3)
        if cpn is not None:     # learned proposals: one heatmap per query, their maximum
            if projected is None:
                with torch.inference_mode():
                    projected = cpn.project({lvl: f[None].to(device.device_of(cpn)) for lvl, f in mm.feats.items()})
            heats += [cpn_heatmap(cpn, mm, g, projected) for g in qgrids[len(heats):]]
            props = peaks(np.max(np.stack(heats), 0), seed_cells, blocked, float(cpn.threshold), settings.max_peaks)
        if cpn is None or settings.cosine_too:
            sims += [smooth_map(cosine_map(mm, q), seed_cells) for q in queries[len(sims):]]
            if rnd == 0:   # the query's own peak sets the bar for its copies
                inside = taken_grid > 0.3
                own = float(sims[0][inside].max()) if inside.any() else float(sims[0].max())
                tau = max(settings.peak_floor, settings.peak_rel * own)
            more = peaks(np.max(np.stack(sims), 0), seed_cells, blocked, tau, settings.max_peaks)
            if cpn is None:
                props = more
            else:     # cosine peaks away from the CPN's: objects the CPN did not see
                near = peak_kernel(min(seed_cells)) // 2
                props += [p for p in more if all(max(abs(p[0] - q[0]), abs(p[1] - q[1])) > near for q in props)]
        res.rounds = rnd + 1
        if not props:
            break
        for i, (gx, gy, value) in enumerate(props):
            progress(0.25 + 0.7 * min(1.0, (rnd + i / len(props)) / settings.rounds),
                     f"Checking proposal {res.proposals + 1}")
            tried[max(0, gy - 1):gy + 2, max(0, gx - 1):gx + 2] = True
            # the peak lies on an object like the query; template matching finds where the
            # query's box centre would be; the click goes where its interior point would be
            if align_clicks:
                cx, cy = align(rgb, sp, (gx + 0.5) * cell, (gy + 0.5) * cell,
                               0.5 * max(sp.mask.shape) + cell)
                px, py = cx + anchor[0] - centre[0], cy + anchor[1] - centre[1]
            else:
                px, py = (gx + 0.5) * cell, (gy + 0.5) * cell
            px, py = min(max(px, 0), W - 1), min(max(py, 0), H - 1)
            if taken[int(py), int(px)]:
                continue
            res.proposals += 1
            if align_clicks:
                template = move_template(sp, anchor, px, py, H, W)
                got = segment(px, py, template)
            else:   # the query's shape where template matching puts it (for its parts and pieces)
                cx, cy = align(rgb, sp, px, py, 0.5 * max(sp.mask.shape) + cell)
                template = move_template(sp, centre, cx, cy, H, W)
                got = segment(px, py, template)
                if settings.shape_click:
                    got, px, py = click_the_shape(got, px, py, template, taken, segment)
                if len(pieces) > 1:
                    got = complete_pieces(pieces, (cx - centre[0], cy - centre[1]), got, px, py,
                                          template, taken, segment, sp.area)
                if settings.complete_shape:
                    got = complete_shape(got, px, py, template, taken, segment, sp.area)
            if got.area == 0:
                continue
            got = keep_parts(got, px, py, template)
            area = got.area
            mask = got.mask & ~got.region(taken)
            if area - np.count_nonzero(mask) > settings.max_overlap * area or np.count_nonzero(mask) < 4:
                continue                         # mostly a known object again
            got = keep_parts(Patch(got.x, got.y, mask), px, py, template)
            cand = describe(mm, rgb, got)
            score = verifier.score(query, cand)
            c = Candidate(got, value, score)
            g = to_grid(got, mm)
            tried |= g > 0.5
            if score >= verifier.threshold:
                res.accepted.append(c)
                got.region(taken)[got.mask] = True
                taken_grid = np.maximum(taken_grid, g)
                queries.append(cand.pooled)
                qgrids.append(g)
            else:
                res.rejected.append(c)
    return res


# ---------------------------------------------------------------- fallback segmenter

GRABCUT_SIDE = 160    # the fallback works on the proposal's window resized to at most this
GRABCUT_ITERS = 3


def template_grabcut(rgb: np.ndarray, x: float, y: float, template: Patch) -> Patch:
    """GrabCut in a small window around the query's shape moved to the proposal: the shape's
    inside is probably foreground, its core and the click surely, the window's border background."""
    h, w = rgb.shape[:2]
    if template.area == 0:
        return template
    bx0, by0, tw, th = template.box
    m = 0.35 * max(tw, th) + 4
    x0, y0 = int(max(0, bx0 - m)), int(max(0, by0 - m))
    x1, y1 = int(min(w, bx0 + tw + m)), int(min(h, by0 + th + m))
    s = min(1.0, GRABCUT_SIDE / max(x1 - x0, y1 - y0))
    size = (max(8, round((x1 - x0) * s)), max(8, round((y1 - y0) * s)))
    crop = cv2.resize(rgb[y0:y1, x0:x1], size, interpolation=cv2.INTER_AREA)
    window = np.zeros((y1 - y0, x1 - x0), np.uint8)
    window[by0 - y0:by0 - y0 + th, bx0 - x0:bx0 - x0 + tw] = template.mask
    t = cv2.resize(window, size, interpolation=cv2.INTER_NEAREST)
    gc = np.full(size[::-1], cv2.GC_PR_BGD, np.uint8)
    gc[t > 0] = cv2.GC_PR_FGD
    core = cv2.erode(t, np.ones((3, 3), np.uint8), iterations=max(1, int(0.15 * min(size))))
    gc[core > 0] = cv2.GC_FGD
    cx, cy = int(min(size[0] - 1, (x - x0) * s)), int(min(size[1] - 1, (y - y0) * s))
    cv2.circle(gc, (cx, cy), 2, cv2.GC_FGD, -1)
    gc[[0, -1], :] = cv2.GC_BGD
    gc[:, [0, -1]] = cv2.GC_BGD
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(crop, gc, None, bgd, fgd, GRABCUT_ITERS, cv2.GC_INIT_WITH_MASK)
    except cv2.error:   # degenerate window (one colour): keep the moved shape
        return template
    fg = ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)).astype(np.uint8)
    t1 = t > 0
    if (fg.astype(bool) & t1).sum() < 0.5 * (fg.astype(bool) | t1).sum():
        return template        # GrabCut disagrees with the (aligned) shape: trust the shape
    return Patch(x0, y0, cv2.resize(fg.astype(np.float32), (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR) >= 0.5)
