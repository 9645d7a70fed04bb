"""Which proposals are copies of the query: descriptors (pooled features, colour, shape, parts)
and the two verifiers, training-free (CosineVerifier) and learned (LearnedVerifier, the PVM)."""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np
import torch

from .. import device
from .encoding import pool, pool_parts, to_grid
from .types import HIST_BINS, LEVELS, SHAPE, Descriptor, MatchMap, MaskPatch, SimilarSettings, as_patch


def colour_hist(rgb: np.ndarray, p: MaskPatch) -> np.ndarray:
    x0, y0, w, h = p.box
    crop, m = rgb[y0:y0 + h, x0:x0 + w], p.mask.astype(np.uint8)
    step = max(1, int(np.sqrt(m.size / 4096)))       # about 4k pixels are plenty
    crop, m = np.ascontiguousarray(crop[::step, ::step]), np.ascontiguousarray(m[::step, ::step])
    hsv = cv2.cvtColor(crop, cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1, 2], m, list(HIST_BINS), [0, 180, 0, 256, 0, 256]).ravel()
    return hist / max(float(hist.sum()), 1.0)


def describe(mm: MatchMap, rgb: np.ndarray, mask: "np.ndarray | MaskPatch") -> Descriptor:
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

    def __init__(self, settings: SimilarSettings):
        self.s = settings
        self.threshold = settings.accept

    def score(self, q: Descriptor, c: Descriptor) -> float:
        ratio = c.area / max(q.area, 1.0)
        if not self.s.min_ratio <= ratio <= self.s.max_ratio:
            return 0.0
        return float(np.mean([np.dot(q.pooled[lvl], c.pooled[lvl]) for lvl in LEVELS]))


def onto_scale(p: float, own: float, onto: float) -> float:
    """A score p of a verifier whose threshold is `own`, on the scale of one whose threshold is
    `onto`: piecewise linear, 0 -> 0, own -> onto, 1 -> 1 (so it accepts exactly as before, and a
    min_score means the same on both verifiers' scores)."""
    if p < own:
        return min(p * onto / own, float(np.nextafter(onto, 0.0)))
    return onto + (p - own) * (1.0 - onto) / (1.0 - own) if own < 1.0 else 1.0


class LearnedVerifier:
    """The trained pair verifier (PVM, backend/models/pvm.py) on two descriptors' rows.

    gate: (min, max) candidate area / query area outside which a candidate scores 0 (default: the
    settings' learned_min_ratio, learned_max_ratio). onto: report scores on the scale of a verifier
    whose threshold is `onto` (onto_scale; the threshold becomes `onto`)."""

    def __init__(self, model: torch.nn.Module, threshold: Optional[float] = None,
                 settings: Optional[SimilarSettings] = None, gate: Optional[tuple[float, float]] = None,
                 onto: Optional[float] = None):
        self.model = model.eval()
        self.own = float(model.threshold) if threshold is None else threshold
        self.onto = onto
        self.threshold = self.own if onto is None else float(onto)
        s = settings or SimilarSettings()
        self.min_ratio, self.max_ratio = gate or (s.learned_min_ratio, s.learned_max_ratio)

    def score(self, q: Descriptor, c: Descriptor) -> float:
        ratio = c.area / max(q.area, 1.0)
        if not self.min_ratio <= ratio <= self.max_ratio:     # the area gate
            return 0.0
        dev = device.device_of(self.model)
        rows_q = torch.from_numpy(descriptor_row(q))[None].to(dev)
        rows_c = torch.from_numpy(descriptor_row(c))[None].to(dev)
        with torch.inference_mode():
            logits, _ = self.model(rows_q, rows_c)
        p = float(torch.sigmoid(logits[0]))
        return p if self.onto is None else onto_scale(p, self.own, self.onto)
