"""PVM: proposal verification. Does a candidate object look like the query?

Each object is described by its mask-pooled Lite0 features (strides 8 and 16), an HSV colour
histogram of its pixels, its shape (mask box resized to 16×16) and its box (see
backend/similar/verification.py: Descriptor / descriptor_row). A small shared MLP embeds each object
(z, unit length); the score comes from a fully connected head over |z_q − z_c|, z_q·z_c, their
distance and hand-made pair features (per-level cosine, histogram intersection, log area ratio,
aspect difference, shape IoU). Trained with BCE on the score plus a max-margin contrastive loss
on the distance (as in the paper). The acceptance threshold chosen on validation is stored in
the weights (buffer `threshold`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

C8, C16 = 40, 112
HIST_BINS = (8, 4, 4)       # hue, saturation, value (backend/similar/types.py: HIST_BINS)
HIST = 8 * 4 * 4
SHAPE = 16 * 16
PARTS = 9                                  # 3×3 part cells per object
ROW = C8 + C16 + HIST + SHAPE + 1 + 4 + PARTS * (C8 + C16)     # descriptor_row length
N_SCALARS = 13           # the first 10 are version 1's (the PVM shipped before issue 23 uses those only)
N_SCALARS_V1 = 10
EMBED = 16
MARGIN = 1.0


def split_row(rows: torch.Tensor) -> dict[str, torch.Tensor]:
    i = 0
    out = {}
    for name, n in (("s8", C8), ("s16", C16), ("hist", HIST), ("shape", SHAPE), ("area", 1), ("box", 4),
                    ("parts8", PARTS * C8), ("parts16", PARTS * C16)):
        out[name] = rows[:, i:i + n]
        i += n
    out["parts8"] = out["parts8"].reshape(-1, PARTS, C8)
    out["parts16"] = out["parts16"].reshape(-1, PARTS, C16)
    return out


def pair_scalars(q: dict[str, torch.Tensor], c: dict[str, torch.Tensor]) -> torch.Tensor:
    """N×13: cosine s8, cosine s16, histogram intersection, log area ratio, |log aspect ratio
    difference|, shape IoU, and per level the mean and the min of the part-by-part cosines
    (3×3 cells of the box, cells empty in either object skipped); then (issue 23: copies turned
    and lit differently) the hue×saturation histogram intersection (brightness left out) and per
    level the mean over the query's parts of its best cosine to any of the candidate's parts (a
    turned copy's parts lie in other cells)."""
    cos8 = (q["s8"] * c["s8"]).sum(1)
    cos16 = (q["s16"] * c["s16"]).sum(1)
    inter = torch.minimum(q["hist"], c["hist"]).sum(1)
    ratio = torch.log(c["area"][:, 0].clamp(min=1) / q["area"][:, 0].clamp(min=1))

    def aspect(b: torch.Tensor) -> torch.Tensor:
        return torch.log(b[:, 2].clamp(min=1) / b[:, 3].clamp(min=1))
    asp = (aspect(q["box"]) - aspect(c["box"])).abs()
    a, b = q["shape"] > 0.5, c["shape"] > 0.5
    iou = (a & b).sum(1).float() / (a | b).sum(1).clamp(min=1).float()
    parts = []
    for lvl in ("parts8", "parts16"):
        pq, pc = q[lvl], c[lvl]
        valid = (pq.abs().sum(2) > 0) & (pc.abs().sum(2) > 0)
        cos = (pq * pc).sum(2)
        n = valid.sum(1).clamp(min=1)
        parts.append((cos * valid).sum(1) / n)
        parts.append(torch.where(valid, cos, torch.ones_like(cos)).min(1).values)
    hs = lambda h: h.reshape(-1, HIST_BINS[0] * HIST_BINS[1], HIST_BINS[2]).sum(2)   # noqa: E731
    inter_hs = torch.minimum(hs(q["hist"]), hs(c["hist"])).sum(1)
    best = []
    for lvl in ("parts8", "parts16"):
        pq, pc = q[lvl], c[lvl]
        vq, vc = pq.abs().sum(2) > 0, pc.abs().sum(2) > 0
        cross = torch.einsum("npc,nqc->npq", pq, pc).masked_fill(~vc[:, None, :], -1.0)
        top = cross.max(2).values
        best.append((top * vq).sum(1) / vq.sum(1).clamp(min=1))
    return torch.stack([cos8, cos16, inter, ratio, asp, iou] + parts + [inter_hs] + best, 1)


class PairVerifier(nn.Module):
    """score = MLP(pair scalars [, |z_q − z_c|]). With embed > 0 each object also gets a unit
    embedding z of its pooled features and colour histogram (the paper's design, trained with the
    contrastive term); embed = 0 (the shipped model) uses the pair scalars only: on ~350 training
    scenes (a few hundred distinct objects) the embedding memorised objects and validated worse."""

    def __init__(self, embed: int = 0, hidden: int = 64, head: int = 16, scalars: int = N_SCALARS):
        """scalars: how many of pair_scalars' columns the head reads (N_SCALARS_V1 for the
        verifier shipped before issue 23; a weights file says which by its scalar_mean)."""
        super().__init__()
        self.n_scalars = scalars
        self.embed = None
        if embed > 0:
            self.embed = nn.Sequential(nn.Linear(C8 + C16 + HIST, hidden), nn.ReLU(inplace=True),
                                       nn.Dropout(0.2), nn.Linear(hidden, embed))
        self.head = nn.Sequential(nn.Linear((1 if embed > 0 else 0) + scalars, head), nn.ReLU(inplace=True),
                                  nn.Linear(head, 1))
        self.register_buffer("scalar_mean", torch.zeros(scalars))
        self.register_buffer("scalar_std", torch.ones(scalars))
        self.register_buffer("threshold", torch.tensor(0.5))

    def z(self, d: dict[str, torch.Tensor]) -> torch.Tensor:
        assert self.embed is not None
        x = torch.cat([d["s8"], d["s16"], d["hist"].clamp(min=0).sqrt()], 1)
        return F.normalize(self.embed(x), dim=1)

    def forward(self, query_rows: torch.Tensor, cand_rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """rows: N×ROW descriptor rows -> (logits N, embedding distances N; zeros without embedding)."""
        q, c = split_row(query_rows), split_row(cand_rows)
        x = (pair_scalars(q, c)[:, :self.n_scalars] - self.scalar_mean) / self.scalar_std
        if self.embed is None:
            return self.head(x)[:, 0], torch.zeros(x.shape[0], device=x.device)
        dist = (self.z(q) - self.z(c)).norm(dim=1)
        return self.head(torch.cat([dist[:, None], x], 1))[:, 0], dist


def loss_fn(logits: torch.Tensor, dist: torch.Tensor, labels: torch.Tensor,
            pos_weight: float = 1.0, contrastive: float = 0.5) -> torch.Tensor:
    """BCE on the score + max-margin contrastive loss on the embedding distance."""
    y = labels.float()
    bce = F.binary_cross_entropy_with_logits(logits, y, pos_weight=torch.tensor(pos_weight))
    if not dist.requires_grad:      # no embedding: BCE only
        return bce
    con = (y * dist ** 2 + (1 - y) * F.relu(MARGIN - dist) ** 2).mean()
    return bce + contrastive * con
