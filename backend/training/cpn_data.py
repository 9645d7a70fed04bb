"""Cached frozen-backbone features and heatmap targets of synthetic scenes, for the CPN.

    python -m backend.training.cpn_data --split train --first 0 --scenes 600 --out DIR [--minutes M]

One file per scene, DIR/<split>-<seed>.npz (written atomically; existing files are kept, so a
stopped run resumes): the Lite0 features as find_similar computes them, but stored raw at their
own strides in float16 (s8 40×gh×gw, s16 112×gh/2×gw/2; `similar.match_feats` rebuilds the MatchMap
levels), and per object: group id, grid weights (sim.to_grid), centre (most interior point, in
grid cells), min(h, w) of its box in cells; a label map (object index + 1 at each cell centre,
0 = background). The image is encoded at the scale inference would use for a reference copy (a
random copy for "train", the largest for "val", as bench/similar.py queries).
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import NamedTuple

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import cv2
import numpy as np
import torch

from .. import similar as sim
from .synth import Scene, SceneGenerator


class Cached(NamedTuple):
    feats: dict[str, torch.Tensor]     # level -> C×gh×gw float16 (MatchMap.feats, .float() to use)
    weights: torch.Tensor              # n×gh×gw float32 grid coverage per object
    groups: np.ndarray                 # n int
    centres: np.ndarray                # n×2 float32 (x, y) in grid cells (cell i spans [i, i+1))
    minside: np.ndarray                # n float32, min(w, h) of the object's box in cells
    labels: np.ndarray                 # gh×gw int16, object index + 1 at the cell centre, 0 = none
    ref: int                           # the copy whose size set the encoding scale
    scale: float


def backbone() -> torch.nn.Module:
    """The matching backbone find_similar uses (similar-lite0.pt's, else the PyPI one)."""
    from ..engines.similar_features import find_backbone
    model, where = find_backbone()
    if model is None:
        raise SystemExit(where)
    return model.eval()


def scene_record(scene: Scene, model: torch.nn.Module, ref: int) -> dict[str, np.ndarray]:
    h, w = scene.image.shape[:2]
    side = sim.encode_side(h, w, scene.masks[ref])
    raw, scale = sim.encode_raw(model, scene.image, side)
    feats = sim.match_feats(raw)
    mm = sim.MatchMap(feats, scale, h, w)
    gh, gw = mm.grid
    cell = sim.STRIDE / scale
    n = len(scene.masks)
    weights = np.zeros((n, gh, gw), np.float16)
    centres = np.zeros((n, 2), np.float32)
    minside = np.zeros(n, np.float32)
    labels = np.zeros((gh, gw), np.int16)
    ys = np.minimum(((np.arange(gh) + 0.5) * cell).astype(int), h - 1)
    xs = np.minimum(((np.arange(gw) + 0.5) * cell).astype(int), w - 1)
    inside_y = ((np.arange(gh) + 0.5) * cell) < h
    inside_x = ((np.arange(gw) + 0.5) * cell) < w
    for i, m in enumerate(scene.masks):
        p = sim.as_patch(m)
        weights[i] = sim.to_grid(p, mm)
        cx, cy = sim.interior_point(p)
        centres[i] = (cx / cell, cy / cell)
        minside[i] = min(p.mask.shape) / cell
        on = m[np.ix_(ys, xs)] & inside_y[:, None] & inside_x[None, :]
        labels[on] = i + 1
    return {"s8": raw["s8"][0].numpy().astype(np.float16), "s16": raw["s16"][0].numpy().astype(np.float16),
            "weights": weights, "groups": np.asarray(scene.groups, np.int16), "centres": centres,
            "minside": minside, "labels": labels, "ref": np.int32(ref), "scale": np.float32(scale),
            "size": np.asarray([h, w], np.int32)}


def reference_copy(scene: Scene, split: str, seed: int) -> int:
    copies = [i for i, g in enumerate(scene.groups) if g == 0]
    if split == "val":
        return max(copies, key=lambda i: int(scene.masks[i].sum()))
    return copies[int(np.random.default_rng([31, seed]).integers(len(copies)))]


def path_of(out: Path, split: str, seed: int) -> Path:
    return out / f"{split}-{seed:06d}.npz"


def build(out: Path, split: str, first: int, count: int, minutes: float = 1e9,
          log=print, model: torch.nn.Module | None = None) -> int:
    """Writes missing scene files; returns how many exist for the range when it stops."""
    out.mkdir(parents=True, exist_ok=True)
    gen = None
    start = time.time()
    made = 0
    for s in range(first, first + count):
        p = path_of(out, split, s)
        if p.exists():
            continue
        if time.time() - start > minutes * 60:
            break
        if gen is None:
            gen = SceneGenerator(split)
            model = model or backbone()
        scene = gen.scene(s)
        if not any(g == 0 for g in scene.groups):
            np.savez(p.with_suffix(".tmp.npz"), empty=np.int8(1))
        else:
            np.savez(p.with_suffix(".tmp.npz"), **scene_record(scene, model, reference_copy(scene, split, s)))
        os.replace(p.with_suffix(".tmp.npz"), p)
        made += 1
        if made % 25 == 0:
            log(f"cache {split}: {made} new scenes, {time.time() - start:.0f} s")
    return sum(path_of(out, split, s).exists() for s in range(first, first + count))


def load(path: Path) -> Cached | None:
    d = np.load(path)
    if "empty" in d.files:
        return None
    feats = sim.match_feats({"s8": torch.from_numpy(d["s8"].astype(np.float32))[None],
                         "s16": torch.from_numpy(d["s16"].astype(np.float32))[None]})
    feats = {k: v.half() for k, v in feats.items()}          # memory: hundreds of scenes in RAM
    return Cached(feats, torch.from_numpy(d["weights"].astype(np.float32)), d["groups"].astype(int),
                  d["centres"], d["minside"], d["labels"], int(d["ref"]), float(d["scale"]))


def heatmap_target(c: Cached, query: int) -> torch.Tensor:
    """gh×gw Gaussian heatmap: 1 at the centre cell of every OTHER copy of the query's group,
    sigma = min(h, w) / 6 cells (kernel size ~ min(h, w)), max where they overlap."""
    gh, gw = c.labels.shape
    out = np.zeros((gh, gw), np.float32)
    yy, xx = np.mgrid[0:gh, 0:gw]
    for i, g in enumerate(c.groups):
        if i == query or g != c.groups[query]:
            continue
        cx, cy = int(min(gw - 1, c.centres[i, 0])), int(min(gh - 1, c.centres[i, 1]))
        sigma = max(0.5, float(c.minside[i]) / 6)
        r = int(3 * sigma) + 1
        y0, y1, x0, x1 = max(0, cy - r), min(gh, cy + r + 1), max(0, cx - r), min(gw, cx + r + 1)
        g_ = np.exp(-((xx[y0:y1, x0:x1] - cx) ** 2 + (yy[y0:y1, x0:x1] - cy) ** 2) / (2 * sigma * sigma))
        out[y0:y1, x0:x1] = np.maximum(out[y0:y1, x0:x1], g_)
    return torch.from_numpy(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", choices=("train", "val"), default="train")
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--scenes", type=int, default=200)
    ap.add_argument("--minutes", type=float, default=1e9)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    have = build(args.out, args.split, args.first, args.scenes, args.minutes, lambda m: print(m, flush=True))
    print(f"{args.out}: {have}/{args.scenes} {args.split} scenes cached")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
