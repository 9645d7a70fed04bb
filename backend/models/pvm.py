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
N_SCALARS_V3 = 18        # + 5 that a turned, re-lit copy keeps (issue 23, sixteenth session; pair_scalars)
RING = (0, 1, 2, 5, 8, 7, 6, 3)     # the 3×3 part cells around the centre (4), clockwise: one step ≈ 45°
OWN = 24                            # side of a shape resampled in its own frame
EMBED = 16
HEAD = 16                # the head's hidden width of every verifier shipped before the seventeenth session
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


def pair_scalars(q: dict[str, torch.Tensor], c: dict[str, torch.Tensor], n: int = N_SCALARS) -> torch.Tensor:
    """N×n, the first n of: cosine s8, cosine s16, histogram intersection, log area ratio, |log
    aspect ratio difference|, shape IoU, and per level the mean and the min of the part-by-part
    cosines (3×3 cells of the box, cells empty in either object skipped); then (issue 23: copies
    turned and lit differently) the hue×saturation histogram intersection (brightness left out) and
    per level the mean over the query's parts of its best cosine to any of the candidate's parts (a
    turned copy's parts lie in other cells); then (N_SCALARS_V3, sixteenth session) what a turn
    or a change of light leaves alone: own_frame_scalars."""
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
        nv = valid.sum(1).clamp(min=1)
        parts.append((cos * valid).sum(1) / nv)
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
    out = torch.stack([cos8, cos16, inter, ratio, asp, iou] + parts + [inter_hs] + best, 1)
    if n > N_SCALARS:
        out = torch.cat([out, own_frame_scalars(q, c)], 1)
    return out[:, :n]


def own_frame_scalars(q: dict[str, torch.Tensor], c: dict[str, torch.Tensor]) -> torch.Tensor:
    """N×5 pair features that do not change when a copy is turned or re-lit (issue 23: copies are
    turned up to ±45° and lit ±25 %): the colour histogram intersection with the candidate's
    brightness shifted by -1, 0 or +1 value bin (the best); |difference of log elongation| (the
    principal axes' spread ratio, which a turn keeps where the box aspect changes); the soft IoU of
    the two shapes each resampled in its own principal-axis frame (the better of 0° and 180°);
    per level the mean part-by-part cosine with the ring of 8 outer cells turned by the best of
    8 steps of ~45° (the centre cell as is)."""
    h = HIST_BINS
    hq, hc = q["hist"].reshape(-1, h[0] * h[1], h[2]), c["hist"].reshape(-1, h[0] * h[1], h[2])
    shifted = [hc, torch.cat([hc[..., :1] + hc[..., 1:2], hc[..., 2:]], 2),               # one bin darker
               torch.cat([hc[..., :-2], hc[..., -2:-1] + hc[..., -1:]], 2)]             # one bin brighter
    shifted[1] = torch.cat([shifted[1], torch.zeros_like(hc[..., :1])], 2)
    shifted[2] = torch.cat([torch.zeros_like(hc[..., :1]), shifted[2]], 2)
    inter_v = torch.stack([torch.minimum(hq, x).sum((1, 2)) for x in shifted], 1).max(1).values
    eq, sq = _own_frame(q["shape"], q["box"])
    ec, sc = _own_frame(c["shape"], c["box"])
    elong = (eq - ec).abs()
    soft_iou = lambda a, b: torch.minimum(a, b).sum((1, 2)) / torch.maximum(a, b).sum((1, 2)).clamp(min=1e-6)  # noqa: E731
    own_iou = torch.maximum(soft_iou(sq, sc), soft_iou(sq, sc.flip(1, 2)))
    ring = []
    idx = torch.tensor(RING)
    for lvl in ("parts8", "parts16"):
        pq, pc = q[lvl], c[lvl]
        centre = (pq[:, 4] * pc[:, 4]).sum(1)
        v_centre = ((pq[:, 4].abs().sum(1) > 0) & (pc[:, 4].abs().sum(1) > 0)).float()
        rq, rc = pq[:, idx], pc[:, idx]
        best = None
        for k in range(len(RING)):
            rk = rc.roll(k, 1)
            valid = ((rq.abs().sum(2) > 0) & (rk.abs().sum(2) > 0)).float()
            mean = ((rq * rk).sum(2) * valid).sum(1) + centre * v_centre
            mean = mean / (valid.sum(1) + v_centre).clamp(min=1)
            best = mean if best is None else torch.maximum(best, mean)
        ring.append(best)
    return torch.stack([inter_v, elong, own_iou] + ring, 1)


def _own_frame(shape: torch.Tensor, box: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """shape: N×SHAPE (the mask box resized to 16×16), box: N×4 (x, y, w, h) -> (log elongation N,
    N×OWN×OWN the shape resampled in its principal-axis frame at its box's true aspect: the major
    axis along x, both axes scaled by 2.5 major-axis standard deviations)."""
    n, side = shape.shape[0], int(round(SHAPE ** 0.5))
    m = shape.reshape(n, side, side).clamp(min=0)
    w, h = box[:, 2].clamp(min=1), box[:, 3].clamp(min=1)
    t = (torch.arange(side, dtype=shape.dtype) + 0.5) / side              # cell centres, 0..1 of the box
    xs, ys = t[None, None, :] * w[:, None, None], t[None, :, None] * h[:, None, None]
    mass = m.sum((1, 2)).clamp(min=1e-6)
    mx, my = (m * xs).sum((1, 2)) / mass, (m * ys).sum((1, 2)) / mass
    dx, dy = xs - mx[:, None, None], ys - my[:, None, None]
    cxx = (m * dx * dx).sum((1, 2)) / mass + (w / side) ** 2 / 12          # + a cell's own spread
    cyy = (m * dy * dy).sum((1, 2)) / mass + (h / side) ** 2 / 12
    cxy = (m * dx * dy).sum((1, 2)) / mass
    half, diff = (cxx + cyy) / 2, torch.sqrt(((cxx - cyy) / 2) ** 2 + cxy ** 2)
    l1, l2 = half + diff, (half - diff).clamp(min=1e-6)
    theta = 0.5 * torch.atan2(2 * cxy, cxx - cyy)
    r = 2.5 * l1.sqrt()
    cos, sin = torch.cos(theta), torch.sin(theta)
    # own frame (u, v) in [-1, 1]² -> box pixels mu + R(theta) (u r, v r) -> grid_sample's [-1, 1] of the box
    aff = torch.zeros(n, 2, 3, dtype=shape.dtype)
    aff[:, 0, 0], aff[:, 0, 1], aff[:, 0, 2] = 2 * r * cos / w, -2 * r * sin / w, 2 * mx / w - 1
    aff[:, 1, 0], aff[:, 1, 1], aff[:, 1, 2] = 2 * r * sin / h, 2 * r * cos / h, 2 * my / h - 1
    grid = F.affine_grid(aff, [n, 1, OWN, OWN], align_corners=False)
    own = F.grid_sample(m[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, 0]
    return 0.5 * torch.log(l1 / l2), own


class PairVerifier(nn.Module):
    """score = MLP(pair scalars [, |z_q − z_c|]). With embed > 0 each object also gets a unit
    embedding z of its pooled features and colour histogram (the paper's design, trained with the
    contrastive term); embed = 0 (the shipped model) uses the pair scalars only: on ~350 training
    scenes (a few hundred distinct objects) the embedding memorised objects and validated worse."""

    def __init__(self, embed: int = 0, hidden: int = 64, head: int = HEAD, scalars: int = N_SCALARS):
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
        return self.decide(q, c, pair_scalars(q, c, self.n_scalars))

    def decide(self, q: dict[str, torch.Tensor], c: dict[str, torch.Tensor],
               scalars: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """forward on split rows and their pair_scalars (at least n_scalars columns: an ensemble
        computes them once for all its members)."""
        x = (scalars[:, :self.n_scalars] - self.scalar_mean) / self.scalar_std
        if self.embed is None:
            return self.head(x)[:, 0], torch.zeros(x.shape[0], device=x.device)
        dist = (self.z(q) - self.z(c)).norm(dim=1)
        return self.head(torch.cat([dist[:, None], x], 1))[:, 0], dist


class VerifierEnsemble(nn.Module):
    """Several PairVerifiers trained on the same pairs (other seeds, with and without the object
    embedding) scoring as one: the mean of their logits (and of their embedding distances). Its
    threshold is its own, chosen on validation as a single verifier's is (ship_big_pvm). Issue 23,
    eighteenth session: single verifiers of one recipe differ by ±25 validation copies from seed to
    seed; their mean keeps more copies at the same accepted negatives than any of them."""

    def __init__(self, members: list[PairVerifier]):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.register_buffer("threshold", torch.tensor(0.5))

    @property
    def n_scalars(self) -> int:
        return max(m.n_scalars for m in self.members)

    def forward(self, query_rows: torch.Tensor, cand_rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q, c = split_row(query_rows), split_row(cand_rows)
        scalars = pair_scalars(q, c, self.n_scalars)
        outs = [m.decide(q, c, scalars) for m in self.members]
        return torch.stack([o[0] for o in outs]).mean(0), torch.stack([o[1] for o in outs]).mean(0)


def verifier_for(sd: dict[str, torch.Tensor]) -> "PairVerifier | VerifierEnsemble":
    """A PairVerifier shaped as a weights file's state dict says: how many pair features its head
    reads (the class's default without a scalar_mean), the head's width, the embedding's sizes if any;
    a VerifierEnsemble of such verifiers when the keys are its members' ("members.<i>.…")."""
    if any(k.startswith("members.") for k in sd):
        n = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("members."))
        return VerifierEnsemble([verifier_for({k.split(".", 2)[2]: v for k, v in sd.items()
                                               if k.startswith(f"members.{i}.")}) for i in range(n)])
    kw: dict[str, int] = {}
    if "scalar_mean" in sd:
        kw["scalars"] = int(sd["scalar_mean"].numel())
    if "head.0.weight" in sd:
        kw["head"] = int(sd["head.0.weight"].shape[0])
    if "embed.3.weight" in sd:
        kw["embed"], kw["hidden"] = int(sd["embed.3.weight"].shape[0]), int(sd["embed.0.weight"].shape[0])
    return PairVerifier(**kw)


def loss_fn(logits: torch.Tensor, dist: torch.Tensor, labels: torch.Tensor,
            pos_weight: float = 1.0, contrastive: float = 0.5) -> torch.Tensor:
    """BCE on the score + max-margin contrastive loss on the embedding distance."""
    y = labels.float()
    bce = F.binary_cross_entropy_with_logits(logits, y, pos_weight=torch.tensor(pos_weight))
    if not dist.requires_grad:      # no embedding: BCE only
        return bce
    con = (y * dist ** 2 + (1 - y) * F.relu(MARGIN - dist) ** 2).mean()
    return bce + contrastive * con
