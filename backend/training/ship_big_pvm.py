"""The big-photo verifier's file (issue 23): a PVM trained by train_pvm (its DIR/pvm.pt), with its
threshold chosen on the real-size validation pairs, written for the "pvm" engine to use for a small
query on a photo over 1024 px (similar.small_on_big, SimilarSettings.big_photo_verifier; docs/similar.md).

    python -m backend.training.ship_big_pvm --verifier DIR/pvm.pt [DIR2/pvm.pt ...] --val val_rs.npz \\
        [--out backend/weights/similar-big-lite0.pt] [--gate MIN,MAX] [--reference pvm|pvm-big] [--negatives N]

Threshold: the lowest (0.001 steps) at which the verifier, gated as the engine runs it (candidate /
query area within SimilarSettings.big_photo_min_ratio..big_photo_max_ratio, or --gate), accepts no more of the
validation negatives than the shipped verifier (weights "pvm", as it runs: ungated, its own
threshold): as many wrong candidates as before, and whatever copies it keeps beyond the shipped
one's are the gain. --reference pvm-big: the reference is the big-photo verifier shipped now
(weights "pvm-big", behind the settings' gate, its own threshold), for pairs of the engine's own
candidates on small queries on big photos (backend/training/engine_pairs.py), which it decides.
The file holds "pvm.*" only (the backbone is the shipped similar-lite0.pt's),
plus its .sha256.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

from .. import weights
from ..models.pvm import PairVerifier, VerifierEnsemble, split_row, verifier_for
from ..similar.types import SimilarSettings
from .train_pvm import load_pairs, predict

STEP = 1000                  # thresholds on a 0.001 grid


def gated(prob: np.ndarray, data: dict[str, torch.Tensor], lo: float, hi: float) -> np.ndarray:
    """Scores with the area gate: 0 where candidate area / query area lies outside lo..hi."""
    q, c = split_row(data["query"].float()), split_row(data["cand"].float())
    ratio = (c["area"][:, 0] / q["area"][:, 0].clamp(min=1)).numpy()
    return np.where((ratio >= lo) & (ratio <= hi), prob, 0.0)


def matching_threshold(prob: np.ndarray, negatives: np.ndarray, allowed: int) -> float:
    """The lowest threshold on the 0.001 grid at which at most `allowed` negatives score >= it."""
    neg = np.sort(prob[negatives])[::-1]
    if allowed >= neg.size:
        return 0.0
    t = math.ceil(float(neg[allowed]) * STEP) / STEP          # the first negative it must reject
    return t + 1 / STEP if t <= neg[allowed] else t


def ensemble_of(files: list[Path]) -> "PairVerifier | VerifierEnsemble":
    """The verifier in one train_pvm file, or the ensemble of those in several, loaded strictly."""
    members = []
    for f in files:
        sd = torch.load(f, map_location="cpu", weights_only=True)
        m = verifier_for(sd)
        m.load_state_dict(sd, strict=True)
        members.append(m)
    return members[0] if len(members) == 1 else VerifierEnsemble(members)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--verifier", type=Path, nargs="+", required=True,
                    help="train_pvm's DIR/pvm.pt; several: their ensemble (models.pvm.VerifierEnsemble, the mean "
                         "of their logits) with one threshold")
    ap.add_argument("--val", type=Path, required=True, help="real-size validation pairs (similar_data)")
    ap.add_argument("--out", type=Path, default=weights.path("pvm-big"))
    ap.add_argument("--gate", default=None, metavar="MIN,MAX",
                    help="the area gate the engine will run it behind (default SimilarSettings.big_photo_min_ratio, "
                         "big_photo_max_ratio)")
    ap.add_argument("--reference", choices=("pvm", "pvm-big"), default="pvm",
                    help="whose accepted negatives the threshold matches: the shipped PVM (ungated) or the shipped "
                         "big-photo verifier (behind the settings' gate)")
    ap.add_argument("--negatives", type=int, default=None, metavar="N",
                    help="accept at most N validation negatives instead of as many as the reference accepts "
                         "(a stricter threshold; version 5: 95 against version 4's 113)")
    args = ap.parse_args(argv)
    s = SimilarSettings()
    lo, hi = (float(v) for v in args.gate.split(",")) if args.gate else (s.big_photo_min_ratio, s.big_photo_max_ratio)
    val = load_pairs(args.val)
    lab, src = val["label"].numpy(), val["source"].numpy()
    neg, pos_prop = lab == 0, (lab == 1) & (src == 0)
    shipped = weights.load(args.reference)
    ref = predict(shipped, val)
    if args.reference == "pvm-big":
        ref = gated(ref, val, s.big_photo_min_ratio, s.big_photo_max_ratio)
    ref = ref >= float(shipped.threshold)
    model = ensemble_of(args.verifier)
    sd = model.state_dict()
    prob = gated(predict(model, val), val, lo, hi)
    allowed = int(ref[neg].sum()) if args.negatives is None else args.negatives
    t = matching_threshold(prob, neg, allowed)
    acc = prob >= t
    print(f"{args.val}: {len(np.unique(val['scene'].numpy()))} scenes, {len(lab)} pairs")
    for name, a, thr in (("shipped", ref, float(shipped.threshold)), ("big-photo", acc, t)):
        print(f"  {name} at {thr:.3f}: positive proposals kept {a[pos_prop].mean():.3f} ({a[pos_prop].sum()}/"
              f"{pos_prop.sum()}), negatives accepted {a[neg].mean():.3f} ({a[neg].sum()}/{neg.sum()})")
    sd["threshold"] = torch.tensor(t)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    torch.save({f"pvm.{k}": v for k, v in sd.items()}, tmp)
    tmp.replace(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes), sha256 {weights.write_sha256(args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
