"""(query, candidate) pairs for the verifier, from synthetic scenes.

    python -m backend.training.similar_data --split train --first 0 --scenes 400 --out pairs.npz
        [--segmenter grabcut|dsn] [--generator standard|realsize] [--save-every 20] [--resume]
        [--background 4]

--generator realsize: issue 23's 12-MP scenes (backend/training/synth.py: RealSizeGenerator; copies
varied in size, angle and light, look-alikes of the object's family, objects in pieces). --save-every
N rewrites --out every N scenes (atomically); --resume keeps the pairs already in --out and goes on
after the last scene it holds.

Per scene: the query is one copy of the repeated object (its true mask); the image is encoded at
the scale inference would use; candidates are
  proposals   round-1 peaks segmented as at run time, labelled by where their pixels lie:
              --segmenter dsn (the default engine's path: the shipped one-click model, clicks on
              the peaks) or grabcut (the fallback's path: aligned clicks, template GrabCut);
  instances   every other object's true mask, and a perturbed copy of it (eroded, dilated or cut),
              so the copies of the same object are positives and objects of other kinds
              (look-alikes included: recoloured copies, other objects in the same colour) negatives;
  background  (--background K, default 0) hard negatives: the K peaks of the query's cosine map
              away from every object (the background places most like the query), each clicked and
              segmented as a proposal is at run time (the loop's segment_proposal: the one-click
              model and its shape repair, or GrabCut): the blobs of background that an accepted
              wrong instance goes on to propose (standard scene 2 of docs/similar.md's eleventh
              session: a photo cut-out query, background blobs scoring 0.5-0.9).
Label: 1 when >= 50 % of the candidate's pixels lie on other copies and < 20 % on other objects,
0 when < 20 % lie on copies; anything between is ambiguous and skipped.
"""
from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import cv2
import numpy as np
import torch

from .. import similar as sim
from ..cache import ImageEntry
from ..similar.loop import Query, new_part, segment_proposal
from ..masks import mask_box
from ..engines.similar_features import FeaturesEngine
from .queries import rgba
from .synth import RealSizeGenerator, Scene, SceneGenerator

SOURCES = {"proposal": 0, "instance": 1, "perturbed": 2, "background": 3}
BACKGROUND_MARGIN = 0.05     # a grid cell with more than this share of any object, or next to one, gets no
                             # background click


def truth(scene: Scene, qi: int) -> tuple[np.ndarray, np.ndarray]:
    """(targets, others): H×W unions of the copies other than the queried one (qi) and of the
    objects of other kinds, what `label` judges a candidate's pixels against."""
    h, w = scene.image.shape[:2]
    targets, others = np.zeros((h, w), bool), np.zeros((h, w), bool)
    for i, (m, g) in enumerate(zip(scene.masks, scene.groups)):
        if i != qi:
            (targets if g == 0 else others)[:] |= m
    return targets, others


def label(mask: np.ndarray, targets: np.ndarray, others: np.ndarray) -> int:
    """1 positive, 0 negative, -1 ambiguous."""
    a = max(int(mask.sum()), 1)
    on_t, on_o = (mask & targets).sum() / a, (mask & others).sum() / a
    if on_t >= 0.5 and on_o < 0.2:
        return 1
    if on_t < 0.2:
        return 0
    return -1


def perturb(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    r = rng.random()
    k = np.ones((3, 3), np.uint8)
    if r < 0.35:
        return cv2.erode(mask.astype(np.uint8), k, iterations=int(rng.integers(1, 4))) > 0
    if r < 0.7:
        return cv2.dilate(mask.astype(np.uint8), k, iterations=int(rng.integers(1, 5))) > 0
    x0, y0, x1, y1 = mask_box(mask) or (0, 0, 0, 0)
    out = mask.copy()
    f = rng.uniform(0.55, 0.85)
    side = int(rng.integers(4))
    if side == 0:
        out[:, x0 + int((x1 - x0) * f):] = False
    elif side == 1:
        out[:, :x1 - int((x1 - x0) * f)] = False
    elif side == 2:
        out[y0 + int((y1 - y0) * f):] = False
    else:
        out[:y1 - int((y1 - y0) * f)] = False
    return out


class _Nobody:
    threshold = float("inf")

    def score(self, q: sim.Descriptor, c: sim.Descriptor) -> float:
        return 0.0


def background_clicks(mm: sim.MatchMap, q: Query, objects: np.ndarray, k: int) -> list[tuple[float, float, float]]:
    """(x, y, cosine) of the k best peaks of the query's smoothed cosine map (the loop's peak picking)
    in grid cells that no object covers or touches (objects: H×W bool, every object's mask, the query's
    included)."""
    sm = sim.smooth_map(sim.cosine_map(mm, q.descriptor.pooled), q.cells)
    blocked = cv2.dilate((sim.to_grid(objects, mm) > BACKGROUND_MARGIN).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    sm[blocked] = -1.0           # the objects' own peaks would hide the background beside them
    return [((gx + 0.5) * q.cell, (gy + 0.5) * q.cell, float(v))
            for gx, gy, v in sim.peaks(sm, q.cells, blocked, -1.0, k)]


def background_pairs(rgb: np.ndarray, seed: np.ndarray, mm: sim.MatchMap, objects: np.ndarray, targets: np.ndarray,
                     others: np.ndarray, segment: sim.Segment, settings: sim.SimilarSettings, align_clicks: bool,
                     k: int) -> list[tuple[sim.Descriptor, int, float]]:
    """[(candidate, 0, cosine)] for background_clicks, each segmented as the loop segments a
    proposal (segment_proposal, then new_part against the query), kept when it is a negative by
    `label` (a mask that the one-click model or the shape repair spread onto a copy is left out:
    the copies are in the pairs already)."""
    h, w = rgb.shape[:2]
    q = Query.of(rgb, seed, mm, pieces=not align_clicks)
    out = []
    for x, y, v in background_clicks(mm, q, objects, k):
        px, py = min(max(x, 0), w - 1), min(max(y, 0), h - 1)
        got, px, py, template = segment_proposal(rgb, q, px, py, seed, segment, settings, align_clicks)
        got = new_part(got, px, py, template, seed, settings.max_overlap)
        if got is None or got.area < 16:
            continue
        if label(got.full(h, w), targets, others) == 0:
            out.append((sim.describe(mm, rgb, got), 0, v))
    return out


def scene_pairs(scene: Scene, rng: np.random.Generator, backbone: torch.nn.Module,
                settings: sim.SimilarSettings, proposals: bool = True,
                engine: "FeaturesEngine | None" = None,
                background: int = 0) -> list[tuple[sim.Descriptor, sim.Descriptor, int, int, float]]:
    """[(query, candidate, label, source, peak)] for one scene (empty if it has no copies).
    engine: segments the proposals as at run time (its one-click model, clicks on the peaks, or
    GrabCut without one); None = GrabCut. background: how many background blobs (the module's
    docstring) to add; their `peak` is the click's cosine to the query."""
    copies = [i for i, g in enumerate(scene.groups) if g == 0]
    if not copies:
        return []
    qi = copies[int(rng.integers(len(copies)))]
    h, w = scene.image.shape[:2]
    seed = scene.masks[qi]
    targets, others = truth(scene, qi)
    mm = sim.encode(backbone, scene.image, sim.encode_side(h, w, seed))
    q = sim.describe(mm, scene.image, seed)
    out = []
    for i, m in enumerate(scene.masks):
        if i == qi:
            continue
        pos = int(scene.groups[i] == 0)
        out.append((q, sim.describe(mm, scene.image, m), pos, SOURCES["instance"], 0.0))
        p = perturb(m, rng)
        if p.sum() >= 16:
            lab = label(p, targets, others)
            if lab >= 0:
                out.append((q, sim.describe(mm, scene.image, p), lab, SOURCES["perturbed"], 0.0))
    if not proposals and background <= 0:
        return out
    engine = engine or FeaturesEngine(backbone=backbone, segmenter=None)
    segment = engine.segment_fn(ImageEntry("scene", rgba(scene.image), scene.image))
    if background > 0:
        for c, lab, v in background_pairs(scene.image, seed, mm, targets | others | seed, targets, others, segment,
                                          settings, engine.segmenter() is None, background):
            out.append((q, c, lab, SOURCES["background"], v))
    if proposals:
        one = replace(settings, rounds=1, peak_rel=0.55, max_peaks=max(settings.max_peaks, 16))
        res = sim.find_similar(scene.image, seed, mm, segment,
                               _Nobody(), one, align_clicks=engine.segmenter() is None)
        for c in res.rejected:
            full = c.patch.full(h, w)
            lab = label(full, targets, others)
            if lab >= 0:
                out.append((q, sim.describe(mm, scene.image, c.patch), lab, SOURCES["proposal"], c.peak))
    return out


def write_pairs(path: Path, query: list, cand: list, label: list, source: list, peak: list, scene: list,
                last: int, **extra: np.ndarray) -> None:
    """The pairs file train_pvm reads (load_pairs): descriptor rows, label, source, peak, scene, the
    last scene done (for --resume) and any `extra` arrays; written to a temporary file, then moved."""
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez_compressed(tmp, query=np.array(query, np.float32), cand=np.array(cand, np.float32),
                        label=np.array(label, np.int8),
                        source=np.array(source, np.int8), peak=np.array(peak, np.float32),
                        scene=np.array(scene, np.int32), last=np.array(last), **extra)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", choices=("train", "val"), default="train")
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--scenes", type=int, default=200)
    ap.add_argument("--minutes", type=float, default=1e9, help="stop after this long (saves what it has)")
    ap.add_argument("--no-proposals", action="store_true")
    ap.add_argument("--background", type=int, default=0,
                    help="per scene, this many background blobs most like the query as negatives (source 3)")
    ap.add_argument("--segmenter", choices=("grabcut", "dsn"), default="grabcut",
                    help="how proposals are segmented (dsn: the default engine's run-time path)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--generator", choices=("standard", "realsize"), default="standard")
    ap.add_argument("--scale", type=float, default=1.0, help="realsize: photo size factor (1 = 12 MP)")
    ap.add_argument("--save-every", type=int, default=0, help="rewrite --out every N scenes")
    ap.add_argument("--resume", action="store_true", help="keep --out's pairs, go on after its last scene")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    from ..weights import load
    backbone = load("lite0-imagenet")
    gen = RealSizeGenerator(args.split, scale=args.scale) if args.generator == "realsize" else SceneGenerator(args.split)
    engine = FeaturesEngine(backbone=backbone, segmenter="auto" if args.segmenter == "dsn" else None)
    if args.segmenter == "dsn" and engine.segmenter() is None:
        raise SystemExit("--segmenter dsn needs the one-click model's weights (backend/weights/dsn-lite0.pt)")
    settings = sim.SimilarSettings()
    rows_q, rows_c, labels, sources, peaks_, scene_ids = [], [], [], [], [], []
    first = args.first
    if args.resume and args.out.is_file():
        old = np.load(args.out)
        rows_q, rows_c = list(old["query"]), list(old["cand"])
        labels, sources = [int(v) for v in old["label"]], [int(v) for v in old["source"]]
        peaks_, scene_ids = [float(v) for v in old["peak"]], [int(v) for v in old["scene"]]
        last = int(old["last"]) if "last" in old.files else max(scene_ids, default=first - 1)
        first = max(first, last + 1)
        print(f"resuming after scene {last}: {len(labels)} pairs", flush=True)
    start = time.time()
    done = 0

    def save(last: int) -> None:
        write_pairs(args.out, rows_q, rows_c, labels, sources, peaks_, scene_ids, last)

    s = first - 1
    for s in range(first, args.first + args.scenes):
        if time.time() - start > args.minutes * 60:
            s -= 1
            break
        rng = np.random.default_rng([77, s])
        for q, c, lab, src, pk in scene_pairs(gen.scene(s), rng, backbone, settings, not args.no_proposals,
                                                 engine, args.background):
            rows_q.append(sim.descriptor_row(q)); rows_c.append(sim.descriptor_row(c)); labels.append(lab)
            sources.append(src); peaks_.append(pk); scene_ids.append(s)
        done += 1
        if done % 20 == 0:
            print(f"{done} scenes, {len(labels)} pairs, {sum(labels)} positive, {time.time() - start:.0f} s", flush=True)
        if args.save_every and done % args.save_every == 0:
            save(s)
    save(s)
    print(f"wrote {args.out}: {done} scenes, {len(labels)} pairs, {sum(labels)} positive, {time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
