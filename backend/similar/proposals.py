"""Where copies of the query may be: peaks of the cosine map and of the learned CPN's heatmap,
each placed by template matching (align, move_template)."""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np
import torch

from .. import device, weights
from ..models.cpn import CPN, pick_peaks
from .encoding import cosine_map
from .types import MatchMap, MaskPatch, SimilarSettings


def smooth_map(sim: np.ndarray, seed_cells: tuple[float, float]) -> np.ndarray:
    """A light box blur (0.3 of the query's size): one peak per object, neighbours kept apart."""
    bw, bh = max(1, int(round(seed_cells[0] * 0.3))), max(1, int(round(seed_cells[1] * 0.3)))
    return cv2.blur(sim.astype(np.float32), (bw, bh), borderType=cv2.BORDER_REPLICATE)


ALIGN_SIDE = 48       # template matching works with the query resized to at most this


def align(rgb: np.ndarray, sp: "MaskPatch", cx: float, cy: float, radius: float) -> tuple[float, float]:
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


def move_template(seed: MaskPatch, anchor: tuple[float, float], x: float, y: float,
                  height: int, width: int) -> MaskPatch:
    """The seed translated so that its anchor point lands on (x, y), clipped to the image."""
    dx, dy = int(round(x - anchor[0])), int(round(y - anchor[1]))
    h, w = seed.mask.shape
    nx, ny = seed.x + dx, seed.y + dy
    cx0, cy0 = max(0, -nx), max(0, -ny)
    cx1, cy1 = min(w, width - nx), min(h, height - ny)
    if cx1 <= cx0 or cy1 <= cy0:
        return MaskPatch(0, 0, np.zeros((0, 0), bool))
    return MaskPatch(nx + cx0, ny + cy0, seed.mask[cy0:cy1, cx0:cx1])


def default_cpn() -> Optional[CPN]:
    """The CPN from backend/weights/cpn-lite0.pt when that file exists (optional; loaded once per
    file version by weights.shared), else None; a file that fails its checksum or does not load
    is logged and not used (cosine proposals)."""
    return weights.shared("cpn", lambda model: device.place(model, "The CPN"))


def cpn_heatmap(cpn: CPN, mm: MatchMap, weights: np.ndarray,
                projected: Optional[dict[str, torch.Tensor]] = None) -> np.ndarray:
    """gh×gw click probabilities for one query (its grid weights, see to_grid)."""
    dev = device.device_of(cpn)
    with torch.inference_mode():
        feats = {lvl: f[None].to(dev) for lvl, f in mm.feats.items()}
        q = torch.from_numpy(np.ascontiguousarray(weights, np.float32))[None].to(dev)
        return torch.sigmoid(cpn(feats, q, projected))[0, 0].float().cpu().numpy()


class Proposer:
    """Each round's proposals, (gx, gy, value) best first: the peaks of the maximum of every
    query's CPN heatmap above the CPN's threshold (with a CPN), and the peaks of the maximum of
    their smoothed cosine maps above a bar set by the seed's own peak (without one, or with
    settings.cosine_too: then only those away from the CPN's peaks, thin, low-contrast copies
    that the CPN misses). Heatmaps and cosine maps are computed once per query."""

    def __init__(self, mm: MatchMap, cpn: Optional[CPN], settings: SimilarSettings, seed_cells: tuple[float, float]):
        self.mm, self.cpn, self.settings, self.seed_cells = mm, cpn, settings, seed_cells
        self.projected: Optional[dict[str, torch.Tensor]] = None   # the CPN's projected maps, once per call
        self.heats: list[np.ndarray] = []        # per query: its CPN heatmap
        self.sims: list[np.ndarray] = []         # per query: its smoothed cosine map
        self.tau: Optional[float] = None         # the cosine peaks' bar

    def __call__(self, queries: list[dict[str, np.ndarray]], qgrids: list[np.ndarray],
                 blocked: np.ndarray) -> list[tuple[int, int, float]]:
        """queries: pooled features of the seed and every accepted copy; qgrids: their grid
        weights (the seed's first); blocked: gh×gw bool, no proposals there."""
        mm, cpn, s, cells = self.mm, self.cpn, self.settings, self.seed_cells
        props: list[tuple[int, int, float]] = []
        if cpn is not None:
            if self.projected is None:
                with torch.inference_mode():
                    self.projected = cpn.project({lvl: f[None].to(device.device_of(cpn)) for lvl, f in mm.feats.items()})
            self.heats += [cpn_heatmap(cpn, mm, g, self.projected) for g in qgrids[len(self.heats):]]
            props = peaks(np.max(np.stack(self.heats), 0), cells, blocked, float(cpn.threshold), s.max_peaks)
        if cpn is None or s.cosine_too:
            self.sims += [smooth_map(cosine_map(mm, q), cells) for q in queries[len(self.sims):]]
            if self.tau is None:    # the seed's own peak sets the bar for its copies
                inside = qgrids[0] > 0.3
                own = float(self.sims[0][inside].max()) if inside.any() else float(self.sims[0].max())
                self.tau = max(s.peak_floor, s.peak_rel * own)
            more = peaks(np.max(np.stack(self.sims), 0), cells, blocked, self.tau, s.max_peaks)
            if cpn is None:
                return more
            near = peak_kernel(min(cells)) // 2
            props += [p for p in more if all(max(abs(p[0] - q[0]), abs(p[1] - q[1])) > near for q in props)]
        return props
