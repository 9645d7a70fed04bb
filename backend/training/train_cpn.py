"""Train the CPN head on cached frozen-backbone features of synthetic scenes.

    python -m backend.training.train_cpn --out DIR --minutes M [--resume] [--train-scenes 800]
        [--val-scenes 80] [--cache DIR/cache] [--export backend/weights/cpn-lite0.pt]

Scenes: "train" split seeds 0.. for training, "val" split seeds 1000.. for validation (held-out
backgrounds and objects; seeds 0-99 are left to bench/similar.py). Missing cache files are built
first (backend/training/cpn_data.py), inside the time budget. Per step: BATCH scenes, a query per
scene (a random copy; with probability NEG_QUERY an object of another kind, whose heatmap is all
zero), features cropped to at most CROP cells around the query, CenterNet focal loss on Gaussian
targets at the other copies' centres; the query's own cells are left out of the loss.
Validation (every checkpoint): query = the largest copy, peaks by max-pool NMS (kernel 0.6 × the
query's short side in cells, as find_similar), top TOPK, query cells blocked; recall of copies (a
copy is hit when a peak's cell centre lies in its mask) and peaks on objects of other kinds /
background per scene, at several thresholds; the training-free cosine proposals (find_similar's
round 1, before alignment) are logged once as the baseline.
DIR/last.pt is saved atomically every --save-minutes and at the end; DIR/best.pt keeps the best
validation score; --export writes the run-time weights (state dict + chosen threshold) and .sha256.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch

from .. import similar as sim
from ..models.cpn import CPN, focal_loss, n_params, pick_peaks
from ..weights import write_sha256
from . import cpn_data
from .train_dsn import atomic_save

SEED = 20261123
BATCH = 8
CROP = 72
NEG_QUERY = 0.2
TOPK = 12
THRESHOLDS = (0.05, 0.1, 0.2, 0.3, 0.5)
VAL_FIRST = 1000


def crop(c: cpn_data.Cached, q: int, rng: random.Random, size: int = CROP) -> tuple[slice, slice]:
    gh, gw = c.labels.shape
    w = c.weights[q]
    rows = torch.nonzero(w.sum(1) > 0).flatten()
    cols = torch.nonzero(w.sum(0) > 0).flatten()

    def one(n: int, lo: int, hi: int) -> slice:
        if n <= size:
            return slice(0, n)
        a_min, a_max = max(0, hi - size), min(lo, n - size)
        a = rng.randint(a_min, a_max) if a_max >= a_min else max(0, min(n - size, lo))
        return slice(a, a + size)
    return one(gh, int(rows[0]), int(rows[-1]) + 1), one(gw, int(cols[0]), int(cols[-1]) + 1)


def sample(c: cpn_data.Cached, rng: random.Random) -> tuple[dict, torch.Tensor, torch.Tensor, torch.Tensor]:
    copies = [i for i, g in enumerate(c.groups) if g == 0]
    others = [i for i, g in enumerate(c.groups) if g != 0]
    if others and rng.random() < NEG_QUERY:
        q = rng.choice(others)
    else:
        q = rng.choice(copies)
    if float(c.weights[q].sum()) <= 0:
        q = c.ref
    ys, xs = crop(c, q, rng)
    feats = {k: v[None, :, ys, xs].float() for k, v in c.feats.items()}
    query = c.weights[q][ys, xs][None]
    target = cpn_data.heatmap_target(c, q)[ys, xs][None, None]
    ignore = (query > 0)[:, None]
    return feats, query, target, ignore


def baseline_peaks(c: cpn_data.Cached, settings: sim.SimilarSettings) -> list[tuple[int, int, float]]:
    """find_similar's round-1 training-free proposals (grid peaks, before alignment)."""
    gh, gw = c.labels.shape
    mm = sim.MatchMap({k: v.float() for k, v in c.feats.items()}, c.scale, int(gh * sim.STRIDE / c.scale), int(gw * sim.STRIDE / c.scale))
    wts = c.weights[c.ref].numpy()
    cells = (float(c.minside[c.ref]), float(c.minside[c.ref]))
    rows, cols = np.flatnonzero(wts.any(1)), np.flatnonzero(wts.any(0))
    if rows.size:
        cells = (float(cols[-1] + 1 - cols[0]), float(rows[-1] + 1 - rows[0]))
    smooth = sim.smooth_map(sim.cosine_map(mm, sim.pool(mm, wts)), cells)
    inside = wts > 0.3
    own = float(smooth[inside].max()) if inside.any() else float(smooth.max())
    tau = max(settings.peak_floor, settings.peak_rel * own)
    return sim.peaks(smooth, cells, inside, tau, settings.max_peaks)


def count(c: cpn_data.Cached, pk: list[tuple[int, int, float]]) -> tuple[int, int, int, int]:
    """(copies to find, copies hit, peaks on other kinds, peaks on background)."""
    q = c.ref
    targets = {i for i, g in enumerate(c.groups) if g == c.groups[q] and i != q}
    hit, other, bg = set(), 0, 0
    for x, y, _ in pk:
        lab = int(c.labels[y, x]) - 1
        if lab < 0:
            bg += 1
        elif lab in targets:
            hit.add(lab)
        elif lab != q:
            other += 1
    return len(targets), len(hit), other, bg


@torch.no_grad()
def validate(model: CPN, val: list[cpn_data.Cached]) -> dict[str, dict[str, float]]:
    model.eval()
    tot = {t: np.zeros(4) for t in THRESHOLDS}
    for c in val:
        heat = torch.sigmoid(model({k: v[None].float() for k, v in c.feats.items()}, c.weights[c.ref][None]))[0, 0]
        blocked = c.weights[c.ref] > 0.3
        for t in THRESHOLDS:
            tot[t] += count(c, pick_peaks(heat, sim.peak_kernel(float(c.minside[c.ref])), t, TOPK, blocked))
    model.train()
    n = max(len(val), 1)
    return {f"{t:g}": {"recall": a[1] / max(a[0], 1), "other_per_scene": a[2] / n, "bg_per_scene": a[3] / n}
            for t, a in tot.items()}


def score(v: dict[str, dict[str, float]]) -> float:
    """One number to keep the best checkpoint: recall minus a small price per false peak."""
    return float(np.mean([v[k]["recall"] - 0.02 * (v[k]["other_per_scene"] + v[k]["bg_per_scene"])
                          for k in ("0.1", "0.2", "0.3")]))


def choose_threshold(v: dict[str, dict[str, float]]) -> float:
    """The highest threshold whose recall is within 0.01 of the best."""
    best = max(r["recall"] for r in v.values())
    return max(float(k) for k, r in v.items() if r["recall"] >= best - 0.01)


def export(model: CPN, threshold: float, path: Path) -> str:
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    sd["threshold"] = torch.tensor(float(threshold))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save(sd, path)
    return write_sha256(path)


def load_split(cache: Path, split: str, first: int, n: int) -> list[cpn_data.Cached]:
    out = []
    for s in range(first, first + n):
        p = cpn_data.path_of(cache, split, s)
        if p.exists():
            c = cpn_data.load(p)
            if c is not None:
                out.append(c)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--minutes", type=float, required=True, help="wall time of this invocation, cache building included")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--cache", type=Path, default=None, help="scene cache (default OUT/cache)")
    ap.add_argument("--train-scenes", type=int, default=800)
    ap.add_argument("--val-scenes", type=int, default=80)
    ap.add_argument("--cache-minutes", type=float, default=None, help="at most this long building the cache (default: a third)")
    ap.add_argument("--plan-minutes", type=float, default=None, help="length of the lr schedule (default --minutes)")
    ap.add_argument("--save-minutes", type=float, default=3.0)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--export", type=Path, default=None)
    args = ap.parse_args(argv)
    start = time.time()
    torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)
    args.out.mkdir(parents=True, exist_ok=True)
    cache = args.cache or args.out / "cache"
    logf = open(args.out / "log.txt", "a")

    def log(msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        print(line, flush=True)
        logf.write(line + "\n")
        logf.flush()

    cache_min = args.cache_minutes if args.cache_minutes is not None else args.minutes / 3
    cpn_data.build(cache, "val", VAL_FIRST, args.val_scenes, cache_min, log)
    cpn_data.build(cache, "train", 0, args.train_scenes, cache_min - (time.time() - start) / 60, log)
    train = load_split(cache, "train", 0, args.train_scenes)
    val = load_split(cache, "val", VAL_FIRST, args.val_scenes)
    if not train or not val:
        raise SystemExit("no cached scenes")
    log(f"{len(train)} train scenes, {len(val)} val scenes (cache {cache}), {time.time() - start:.0f} s")

    model = CPN()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    state = {"step": 0, "train_seconds": 0.0, "best": -1e9}
    last, best_path = args.out / "last.pt", args.out / "best.pt"
    if args.resume and last.exists():
        ck = torch.load(last, map_location="cpu", weights_only=True)
        model.load_state_dict(ck["model"], strict=True)
        opt.load_state_dict(ck["opt"])
        state = {"step": int(ck["step"]), "train_seconds": float(ck["train_seconds"]), "best": float(ck["best"])}
        log(f"resumed at step {state['step']} ({state['train_seconds'] / 60:.1f} min trained)")
    else:
        settings = sim.SimilarSettings()
        tot = np.zeros(4)
        for c in val:
            tot += count(c, baseline_peaks(c, settings))
        log(f"baseline (training-free cosine peaks, top {settings.max_peaks}): recall {tot[1] / max(tot[0], 1):.3f} "
            f"other/scene {tot[2] / len(val):.2f} bg/scene {tot[3] / len(val):.2f} ({int(tot[0])} copies)")
    log(f"CPN {n_params(model)} parameters")
    plan = (args.plan_minutes or args.minutes) * 60
    rng = random.Random(SEED + state["step"])
    t_run = time.time()
    seconds0 = state["train_seconds"]
    last_save = time.time()
    losses: list[float] = []

    def checkpoint(final: bool = False) -> None:
        v = validate(model, val)
        sc = score(v)
        log(f"step {state['step']} val " + json.dumps({k: {m: round(x, 3) for m, x in r.items()} for k, r in v.items()})
            + f" score {sc:.4f}")
        ck = {"model": model.state_dict(), "opt": opt.state_dict(), "step": state["step"],
              "train_seconds": state["train_seconds"], "best": max(state["best"], sc)}
        if sc > state["best"]:
            state["best"] = sc
            atomic_save({"model": model.state_dict(), "step": state["step"], "threshold": choose_threshold(v),
                         "val": json.dumps(v)}, best_path)
            log(f"new best {sc:.4f} -> {best_path}")
        atomic_save(ck, last)

    model.train()
    while time.time() - start < args.minutes * 60 - 30:
        frac = min(1.0, state["train_seconds"] / plan)
        lr = args.lr * (min(1.0, (state["step"] + 1) / 100)) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad()
        total = 0.0
        for _ in range(BATCH):
            feats, query, target, ignore = sample(rng.choice(train), rng)
            loss = focal_loss(model(feats, query), target, ignore) / BATCH
            loss.backward()
            total += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        state["step"] += 1
        state["train_seconds"] = seconds0 + time.time() - t_run
        losses.append(total)
        if state["step"] % 25 == 0:
            log(f"step {state['step']} loss {np.mean(losses[-25:]):.4f} lr {lr:.2e} "
                f"{state['train_seconds'] / 60:.1f} min trained")
        if time.time() - last_save > args.save_minutes * 60:
            checkpoint()
            last_save = time.time()
    checkpoint(final=True)
    if args.export:
        ck = torch.load(best_path, map_location="cpu", weights_only=True)
        model.load_state_dict(ck["model"], strict=True)
        digest = export(model, float(ck["threshold"]), args.export)
        log(f"exported best (step {ck['step']}, threshold {float(ck['threshold']):g}) -> {args.export} sha256 {digest}")
    log(f"done: {state['step']} steps, {time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
