"""Train the PVM on (query, candidate) pairs from backend.training.similar_data.

    python -m backend.training.train_pvm --train train_pairs.npz --val val_pairs.npz --out DIR
        [--minutes 5] [--recall-target 0.96] [--ship backend/weights/similar-lite0.pt]

The threshold is chosen on the validation pairs' run-time proposals (source 0): the highest
threshold that keeps >= --recall-target (default RECALL_TARGET) of the positive proposals,
written into the weights.
--ship writes the run-time file: ImageNet Lite0 backbone (float16, "backbone.*") + PVM
("pvm.*"), plus its .sha256.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch

from ..models.pvm import HEAD, N_SCALARS, N_SCALARS_V1, N_SCALARS_V3, PairVerifier, loss_fn

SEED = 20260511
RECALL_TARGET = 0.96
BATCH = 256


def load_pairs(path: Path) -> dict[str, torch.Tensor]:
    d = np.load(path)
    return {k: torch.from_numpy(d[k]) for k in d.files if k != "last"}   # "last": similar_data's resume mark


@torch.no_grad()
def predict(model: PairVerifier, data: dict[str, torch.Tensor]) -> np.ndarray:
    model.eval()
    logits, _ = model(data["query"].float(), data["cand"].float())
    return torch.sigmoid(logits).numpy()


def choose_threshold(prob: np.ndarray, labels: np.ndarray, recall: float = RECALL_TARGET) -> float:
    pos = np.sort(prob[labels == 1])
    if pos.size == 0:
        return 0.5
    k = int(np.floor((1 - recall) * pos.size))
    return float(min(0.95, max(0.05, pos[k] - 1e-4)))


def report(prob: np.ndarray, labels: np.ndarray, thr: float) -> dict[str, float]:
    acc = prob >= thr
    tp = int((acc & (labels == 1)).sum())
    fp = int((acc & (labels == 0)).sum())
    return {"threshold": thr, "recall": tp / max(int((labels == 1).sum()), 1),
            "precision": tp / max(tp + fp, 1), "fpr": fp / max(int((labels == 0).sum()), 1),
            "n_pos": int((labels == 1).sum()), "n_neg": int((labels == 0).sum())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=Path, nargs="+", required=True)
    ap.add_argument("--val", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--ship", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--embed", type=int, default=0, help="object embedding size (0 = pair scalars only)")
    ap.add_argument("--head", type=int, default=HEAD,
                    help=f"the head's hidden width ({HEAD}: the verifiers shipped before the seventeenth session)")
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--scalars", type=int, default=N_SCALARS,
                    help=f"pair features the head reads ({N_SCALARS_V1}: the version shipped before issue 23; "
                         f"{N_SCALARS_V3}: with the own-frame features, models.pvm.own_frame_scalars)")
    ap.add_argument("--seed", type=int, default=SEED, help="initialisation and batch order")
    ap.add_argument("--recall-target", type=float, default=RECALL_TARGET,
                    help="share of the positive validation proposals the threshold keeps")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    parts = [load_pairs(p) for p in args.train]
    common = [k for k in parts[0] if all(k in p for p in parts)]   # a file's extras (engine_pairs' "shipped") may be missing in another's
    train = {k: torch.cat([p[k] for p in parts]) for k in common}
    val = load_pairs(args.val)
    vprop = val["source"].numpy() == 0
    vlab = val["label"].numpy()
    n = len(train["label"])
    pos = float(train["label"].float().mean())
    print(f"train pairs {n} ({pos:.2f} positive), val pairs {len(vlab)} ({int(vprop.sum())} proposals)", flush=True)
    model = PairVerifier(embed=args.embed, head=args.head, scalars=args.scalars)
    from ..models.pvm import pair_scalars, split_row
    with torch.no_grad():   # input normalisation, fixed from the training set
        sc = pair_scalars(split_row(train["query"].float()), split_row(train["cand"].float()), args.scalars)
        model.scalar_mean.copy_(sc.mean(0))
        model.scalar_std.copy_(sc.std(0).clamp(min=1e-3))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-3)
    steps = args.epochs * max(1, n // BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps, pct_start=0.1)
    args.out.mkdir(parents=True, exist_ok=True)
    log = open(args.out / "train.log", "a")
    start = time.time()
    best, best_state = -1.0, None
    g = torch.Generator().manual_seed(args.seed)
    step = 0
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(n, generator=g)
        total = 0.0
        for i in range(0, n - BATCH + 1, BATCH):
            idx = perm[i:i + BATCH]
            q, c, y = train["query"][idx].float(), train["cand"][idx].float(), train["label"][idx]
            # symmetric pairs: the query role is swapped half of the time
            if epoch % 2:
                q, c = c, q
            logits, dist = model(q, c)
            loss = loss_fn(logits, dist, y, pos_weight=(1 - pos) / max(pos, 1e-3))
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step < steps - 1:
                sched.step()
            step += 1
            total += float(loss.detach()) * len(idx)
        prob = predict(model, val)
        thr = choose_threshold(prob[vprop], vlab[vprop], args.recall_target)
        r = report(prob[vprop], vlab[vprop], thr)
        all_r = report(prob, vlab, thr)
        score = r["precision"] - 2 * r["fpr"]
        line = (f"epoch {epoch} loss {total / n:.4f} val proposals thr {thr:.3f} R {r['recall']:.3f} "
                f"P {r['precision']:.3f} FPR {r['fpr']:.3f}; all pairs R {all_r['recall']:.3f} FPR {all_r['fpr']:.3f} "
                f"({time.time() - start:.0f} s)")
        print(line, flush=True)
        log.write(line + "\n")
        log.flush()
        if score > best:
            best = score
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
            best_state["threshold"] = torch.tensor(thr)
        if time.time() - start > args.minutes * 60:
            break
    assert best_state is not None
    torch.save(best_state, args.out / "pvm.pt")
    model.load_state_dict(best_state)
    prob = predict(model, val)
    final = {"proposals": report(prob[vprop], vlab[vprop], float(best_state["threshold"])),
             "all_pairs": report(prob, vlab, float(best_state["threshold"]))}
    (args.out / "val.json").write_text(json.dumps(final, indent=2) + "\n")
    print(json.dumps(final, indent=2))
    if args.ship:
        ship(args.out / "pvm.pt", args.ship)
    return 0


def ship(pvm_path: Path, dest: Path) -> None:
    """Backbone (float16) + PVM in one state dict, plus dest.sha256."""
    from .. import weights
    sd = {f"backbone.{k}": v.half() if v.is_floating_point() else v
          for k, v in weights.load("lite0-imagenet").state_dict().items()}
    sd.update({f"pvm.{k}": v for k, v in torch.load(pvm_path, map_location="cpu", weights_only=True).items()})
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp")
    torch.save(sd, tmp)
    tmp.replace(dest)
    weights.write_sha256(dest)
    print(f"shipped {dest} ({dest.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    raise SystemExit(main())
