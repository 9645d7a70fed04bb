"""Click Proposal Network (CPN, SimpSON section 2): query mask + image features -> click heatmap.

    feats  s8: B×40×H×W, s16: B×112×H×W   the MatchMap levels (L2-normalised per location, s16
                                           upsampled to the stride-8 grid), as find_similar has them
    query  B×1×H×W                        fraction of each grid cell covered by the query mask

    per level: project to D channels; query vectors = mask-weighted means of the projected
               features in a 3×3 split of the query's box (zero where a cell has no mask),
               plus a learned (level, cell) embedding                      -> 2·9 = 18 vectors
    decoder:   LAYERS transformer decoder layers (self-attention among the query vectors,
               cross-attention to ONE pyramid level per layer: s16 at its own stride, s8, s16)
    heatmap:   refined vectors -> dynamic 1×1 kernels correlated with the projected s8 map;
               max and mean over the valid query vectors + the plain cosine of the pooled query
               -> a small dilated conv head -> one logit per stride-8 cell

Stride 4 is not used: the MatchMap (shared with the rest of find_similar) holds strides 8 and 16
only. Plain nn.Module: no files, no sockets; pick_peaks turns a heatmap into click cells.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

CHANNELS = {"s8": 40, "s16": 112}
D = 64
HEADS = 4
K = 3                          # query grid per level (the paper's k)
LAYER_LEVELS = ("s16", "s8", "s16")
HEAD_CH = 24
PRIOR = 0.01                   # initial heatmap probability (CenterNet bias init)
THRESHOLD = 0.2                # the paper's tau_c; replaced by the value stored in the weights


class DecoderLayer(nn.Module):
    def __init__(self, d: int = D, heads: int = HEADS):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(d, 2 * d), nn.ReLU(inplace=True), nn.Linear(2 * d, d))
        self.n1, self.n2, self.n3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)

    def forward(self, q: torch.Tensor, pos: torch.Tensor, memory: torch.Tensor,
                q_pad: torch.Tensor) -> torch.Tensor:
        """q, pos: B×N×D; memory: B×M×D; q_pad: B×N bool (True = empty cell, ignored as a key)."""
        x = self.n1(q + pos)
        q = q + self.self_attn(x, x, x, key_padding_mask=q_pad, need_weights=False)[0]
        x = self.n2(q + pos)
        q = q + self.cross_attn(x, memory, memory, need_weights=False)[0]
        return q + self.ffn(self.n3(q))


def box_parts(a: int, b: int, k: int) -> list[tuple[int, int]]:
    """The span [a, b) of a box cut into k parts (start, end), each at least one cell long."""
    edges = [a + (b - a) * i / k for i in range(k + 1)]
    return [(int(math.floor(edges[i])), max(int(math.floor(edges[i])) + 1, int(math.ceil(edges[i + 1]))))
            for i in range(k)]


def grid_pool(feat: torch.Tensor, weights: torch.Tensor, k: int = K) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask-weighted means of feat (C×H×W) in a k×k split of the weights' box (H×W).

    -> (k²×C vectors, zero where a cell has no weight; k² bool, True where empty)."""
    c = feat.shape[0]
    out = feat.new_zeros(k * k, c)
    empty = torch.ones(k * k, dtype=torch.bool, device=feat.device)
    rows = torch.nonzero(weights.sum(1) > 0).flatten()
    cols = torch.nonzero(weights.sum(0) > 0).flatten()
    if rows.numel() == 0:
        return out, empty
    r0, r1 = int(rows[0]), int(rows[-1]) + 1
    c0, c1 = int(cols[0]), int(cols[-1]) + 1
    for i, (ya, yb) in enumerate(box_parts(r0, r1, k)):
        for j, (xa, xb) in enumerate(box_parts(c0, c1, k)):
            w = weights[ya:yb, xa:xb]
            s = w.sum()
            if float(s) <= 0:
                continue
            out[i * k + j] = torch.einsum("chw,hw->c", feat[:, ya:yb, xa:xb], w) / s
            empty[i * k + j] = False
    return out, empty


class CPN(nn.Module):
    def __init__(self, d: int = D, layer_levels: tuple[str, ...] = LAYER_LEVELS):
        super().__init__()
        self.layer_levels = tuple(layer_levels)
        self.proj = nn.ModuleDict({lvl: nn.Sequential(nn.Conv2d(c, d, 1), nn.ReLU(inplace=True), nn.Conv2d(d, d, 1))
                                   for lvl, c in CHANNELS.items()})
        self.embed = nn.Parameter(torch.randn(len(CHANNELS) * K * K, d) * 0.02)   # (level, cell)
        self.layers = nn.ModuleList([DecoderLayer(d) for _ in self.layer_levels])
        self.kernel = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d))
        self.key = nn.Conv2d(d, d, 1)
        self.head = nn.Sequential(
            nn.Conv2d(3, HEAD_CH, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(HEAD_CH, HEAD_CH, 3, padding=2, dilation=2), nn.ReLU(inplace=True),
            nn.Conv2d(HEAD_CH, HEAD_CH, 3, padding=4, dilation=4), nn.ReLU(inplace=True),
            nn.Conv2d(HEAD_CH, 1, 1))
        nn.init.constant_(self.head[-1].bias, -math.log((1 - PRIOR) / PRIOR))
        self.register_buffer("threshold", torch.tensor(THRESHOLD))

    def project(self, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Level -> B×D×H×W projected maps (computed once per image, reused for every query)."""
        return {lvl: self.proj[lvl](feats[lvl]) for lvl in CHANNELS}

    def forward(self, feats: dict[str, torch.Tensor], query: torch.Tensor,
                projected: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """feats: level -> B×C×H×W; query: B×1×H×W (or B×H×W) weights -> B×1×H×W logits."""
        p = projected if projected is not None else self.project(feats)
        if query.dim() == 3:
            query = query[:, None]
        b, _, h, w = p["s8"].shape
        qs, pads, cos = [], [], []
        for i in range(b):
            vecs, empty = [], []
            for lvl in CHANNELS:
                v, e = grid_pool(p[lvl][i], query[i, 0])
                vecs.append(v)
                empty.append(e)
            qs.append(torch.cat(vecs))
            pads.append(torch.cat(empty))
            # the training-free cue: cosine between each location and the mask-pooled query
            wq = query[i, 0]
            c = 0
            for lvl in CHANNELS:
                f = feats[lvl][i]
                proto = F.normalize(torch.einsum("chw,hw->c", f, wq), dim=0)
                c = c + torch.einsum("chw,c->hw", f, proto)
            cos.append(c / len(CHANNELS))
        q = torch.stack(qs)                                   # B×N×D
        pad = torch.stack(pads)                               # B×N
        pad = pad & ~pad.all(1, keepdim=True)                 # never mask every key
        pos = self.embed[None].expand(b, -1, -1)
        memory = {"s8": p["s8"].flatten(2).transpose(1, 2),
                  "s16": F.avg_pool2d(p["s16"], 2, ceil_mode=True).flatten(2).transpose(1, 2)}
        for layer, lvl in zip(self.layers, self.layer_levels):
            q = layer(q, pos, memory[lvl], pad)
        kern = self.kernel(q)                                 # B×N×D
        keys = self.key(p["s8"]).flatten(2)                   # B×D×HW
        corr = torch.einsum("bnd,bdl->bnl", kern, keys) / math.sqrt(kern.shape[-1])
        valid = (~pad).float()[..., None]                     # B×N×1
        mx = corr.masked_fill(valid == 0, -1e4).max(1).values
        mean = (corr * valid).sum(1) / valid.sum(1).clamp(min=1)
        x = torch.stack([mx, mean], 1).view(b, 2, h, w)
        x = torch.cat([x, torch.stack(cos)[:, None]], 1)
        return self.head(x)


def focal_loss(logits: torch.Tensor, target: torch.Tensor, ignore: torch.Tensor | None = None,
               alpha: float = 2.0, beta: float = 4.0) -> torch.Tensor:
    """CenterNet's penalty-reduced pixel-wise focal loss; target: Gaussian heatmap, 1 at centres;
    ignore: bool, cells left out. Normalised by the number of centres (at least 1)."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = target >= 1 - 1e-4
    keep = torch.ones_like(target, dtype=torch.bool) if ignore is None else ~ignore
    pos_loss = -(torch.log(p) * (1 - p) ** alpha)[pos & keep].sum()
    neg = (~pos) & keep
    neg_loss = -(torch.log(1 - p) * p ** alpha * (1 - target) ** beta)[neg].sum()
    return (pos_loss + neg_loss) / max(1, int((pos & keep).sum()))


def pick_peaks(heat: torch.Tensor, kernel: int, threshold: float, k: int,
               blocked: torch.Tensor | None = None) -> list[tuple[int, int, float]]:
    """Max-pool NMS on an H×W heatmap (probabilities): cells that are the maximum of their
    kernel×kernel window, >= threshold, not blocked; best k first as (x, y, value)."""
    kernel = max(1, int(kernel)) | 1
    local = F.max_pool2d(heat[None, None], kernel, stride=1, padding=kernel // 2)[0, 0]
    ok = (heat >= local - 1e-6) & (heat >= threshold)
    if blocked is not None:
        ok &= ~blocked
    ys, xs = torch.nonzero(ok, as_tuple=True)
    vals = heat[ys, xs]
    order = torch.argsort(-vals, stable=True)[:k]
    return [(int(xs[i]), int(ys[i]), float(vals[i])) for i in order]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
