"""(query, candidate) pairs from the "pvm" engine's own candidates on real-size scenes (issue 23).

    python -m backend.training.engine_pairs --split train --first 0 --scenes 150 --out pairs.npz
        [--minutes 30] [--seconds 60] [--accept oracle|engine] [--save-every 10] [--resume]
        [--candidates CANDS.npz]

Each scene runs as `python -m bench.similar --split realsize --seed click` runs the shipped "pvm"
engine: the query is what one click on a copy (queries.realsize_query) selects, the engine
proposes, segments and scores its own candidates (every round, the one-click model, settings with
--seconds). Every (query descriptor, candidate descriptor) pair the verifier is asked to score is
captured in similar_data's format (query, cand, label, source 0, peak 0, scene), plus `shipped`
(whether the verifier as shipped accepts it: its score, area gate included, >= its threshold) and
`round`. Label: similar_data.label on the candidate's pixels against the other copies and the other
objects (the query copy counts as neither); ambiguous candidates are kept with label -1 in the
capture and left out of the file.

The capture wraps the engine's verifier in this process only (Capture; no hook in the engine).
--accept oracle (the default): the loop accepts exactly the candidates the ground truth labels
positive, so rounds 2-3 go on from the true copies as behind a perfect verifier (a copy the shipped
verifier rejects in round 1 would otherwise cut the proposals it opens); engine: the shipped
verifier decides, as it runs. Scenes where the big-photo verifier does not decide (the query is
not small on a big photo: similar.small_on_big) are skipped.

--candidates also writes every object the engine described in a scene (the query and each
candidate: descriptor row, the scene's group it lies on, the instance, its score against the query
as the engine reports it and whether the shipped verifier accepted it): by_group's acceptance rules
compared offline (bench/group_rules.py) and pairs among candidates (group_pairs.py).
"""
from __future__ import annotations

import argparse
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import cv2
import numpy as np
import torch

from .. import similar as sim
from ..similar import loop
from .similar_data import SOURCES, label, truth, write_pairs


def label_patch(patch: sim.MaskPatch, targets: np.ndarray, others: np.ndarray) -> int:
    """similar_data.label of a MaskPatch, computed on its box only (a 12-MP full mask per candidate
    is slow)."""
    y0, x0 = patch.y, patch.x
    h, w = patch.mask.shape
    return label(patch.mask, targets[y0:y0 + h, x0:x0 + w], others[y0:y0 + h, x0:x0 + w])


@dataclass
class Capture:
    """A find_similar verifier around the engine's: every score() call is recorded as (query,
    candidate, label, the inner verifier's score, accepted by it), the candidate labelled by its
    pixels (the patch `describe` made it from: `patches`, filled by capturing()). oracle: the loop accepts the
    positives only (score 1 or 0, threshold 0.5); else the inner verifier decides."""

    inner: Any
    targets: np.ndarray
    others: np.ndarray
    oracle: bool = True
    rows: list = field(default_factory=list)
    patches: dict = field(default_factory=dict)

    @property
    def threshold(self) -> float:
        return 0.5 if self.oracle else float(self.inner.threshold)

    def score(self, q: sim.Descriptor, c: sim.Descriptor) -> float:
        s = float(self.inner.score(q, c))
        held = self.patches.get(id(c))
        lab = label_patch(held[1], self.targets, self.others) if held is not None and held[0] is c else -1
        self.rows.append((q, c, lab, s, s >= float(self.inner.threshold)))
        if self.oracle:
            return 1.0 if lab == 1 else 0.0
        return s


@contextmanager
def capturing(patches: dict) -> Iterator[dict]:
    """While active, the loop's `describe` records in `patches` (id of the descriptor -> (descriptor,
    patch)) which patch each candidate descriptor was made from (the loop describes a candidate and
    scores it right after; a Capture given the same dict labels it)."""
    orig = loop.describe

    def describe(mm, rgb, patch, *a, **k):
        d = orig(mm, rgb, patch, *a, **k)
        patches[id(d)] = (d, patch)
        return d

    loop.describe = describe
    try:
        yield patches
    finally:
        loop.describe = orig


def on_object(patch: sim.MaskPatch, masks: list[np.ndarray], groups: list[int]) -> tuple[int, int]:
    """(group, instance) a patch lies on, by the scene's masks (the queried copy included): the group
    holding >= 50 % of its pixels while the other groups hold < 20 % (instance: the one of that group
    holding most); (-2, -1) when objects hold < 20 % of it (background); (-1, -1) in between."""
    y0, x0 = patch.y, patch.x
    h, w = patch.mask.shape
    a = max(patch.area, 1)
    on = np.array([np.count_nonzero(patch.mask & m[y0:y0 + h, x0:x0 + w]) for m in masks], float) / a
    per = {g: float(on[[i for i, gi in enumerate(groups) if gi == g]].sum()) for g in set(groups)}
    total = sum(per.values())
    if total < 0.2:
        return -2, -1
    g = max(per, key=per.__getitem__)
    if per[g] >= 0.5 and total - per[g] < 0.2:
        own = [i for i, gi in enumerate(groups) if gi == g]
        return g, max(own, key=lambda i: on[i])
    return -1, -1


def candidate_rows(rows: list, patches: dict, scene: Any) -> list[tuple]:
    """Every object described in the scene's run, once: (descriptor, group, instance, score against
    the query, accepted by the shipped verifier, is the query). The query is the first row's query;
    a candidate's score is the query's (its first score() call)."""
    if not rows:
        return []
    query = rows[0][0]
    against = {}
    for q, c, _lab, s, ok in rows:
        if q is query and id(c) not in against:
            against[id(c)] = (c, s, ok)
    out = []
    for key, (d, patch) in patches.items():
        if d is not query and (key not in against or against[key][0] is not d):
            continue                                     # described but never scored against the query
        g, inst = on_object(patch, scene.masks, scene.groups)
        _, s, ok = against.get(key, (d, 1.0, True))
        out.append((d, g, inst, s, ok, d is query))
    return out


def capture_engine(settings: sim.SimilarSettings, oracle: bool):
    """The shipped "pvm" engine (its one-click model, its big-photo verifier), its verifier wrapped
    in a Capture whose truth and patches are set per scene (engine.truth = (targets, others),
    engine.patches: capturing()'s dict)."""
    from ..engines.similar_pvm import PvmEngine

    class CapturingPvm(PvmEngine):
        truth: tuple[np.ndarray, np.ndarray] = (np.zeros((1, 1), bool), np.zeros((1, 1), bool))
        last: "Capture | None" = None
        patches: dict = {}

        def verifier(self, cpu: bool = False, big_photo: bool = False):  # type: ignore[override]
            inner = super().verifier(cpu, big_photo)
            self.last = Capture(inner, *self.truth, oracle=oracle, patches=self.patches)
            return self.last

    return CapturingPvm(settings=settings)


def scene_rows(eng: Any, scene: Any, s: int) -> tuple[list, bool]:
    """(captured rows, whether the big-photo verifier decided) for scene seed s, as the real-size
    click bench queries it; eng.patches then holds the patches described (capturing())."""
    from ..cache import ImageEntry
    from .queries import query_of, rgba
    qi, seed = query_of(scene, s, "realsize", "click", None)
    h, w = scene.image.shape[:2]
    if not sim.small_on_big(h, w, seed):
        return [], False
    eng.truth = truth(scene, qi)
    entry = ImageEntry(f"scene{s}", rgba(scene.image), scene.image)
    eng.patches, eng.last = {}, None
    with capturing(eng.patches):
        eng.similar(entry, seed, lambda f, m: None)
    return eng.last.rows if eng.last is not None else [], True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", choices=("train", "val"), default="train")
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--scenes", type=int, default=150)
    ap.add_argument("--minutes", type=float, default=1e9, help="stop after this long (saves what it has)")
    ap.add_argument("--seconds", type=float, default=60.0, help="the loop's time budget (as bench --seconds)")
    ap.add_argument("--accept", choices=("oracle", "engine"), default="oracle")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--save-every", type=int, default=10)
    ap.add_argument("--resume", action="store_true", help="keep --out's pairs, go on after its last scene")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--candidates", type=Path, default=None,
                    help="also write every described object (candidate_rows) here, for bench/group_rules.py "
                         "and group_pairs.py")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    from .synth import RealSizeGenerator
    gen = RealSizeGenerator(args.split)
    eng = capture_engine(sim.SimilarSettings(seconds=args.seconds), args.accept == "oracle")
    cols: dict[str, list] = {k: [] for k in ("query", "cand", "label", "shipped", "scene")}
    first = args.first
    if args.resume and args.out.is_file():
        old = np.load(args.out)
        cols = {k: list(old[k]) for k in cols}
        first = max(first, int(old["last"]) + 1)
        print(f"resuming after scene {first - 1}: {len(cols['label'])} pairs", flush=True)
    ccols: dict[str, list] = {k: [] for k in ("desc", "group", "instance", "score", "shipped", "query", "scene")}
    if args.candidates is not None and args.resume and args.candidates.is_file():
        old = np.load(args.candidates)
        ccols = {k: [r for r, sc in zip(old[k], old["scene"]) if sc < first] for k in ccols}

    def save(last: int) -> None:
        n = len(cols["label"])
        write_pairs(args.out, cols["query"], cols["cand"], cols["label"], [SOURCES["proposal"]] * n, [0.0] * n,
                    cols["scene"], last, shipped=np.array(cols["shipped"], bool))
        if args.candidates is not None:
            tmp = args.candidates.with_name(args.candidates.stem + ".tmp.npz")
            np.savez_compressed(tmp, desc=np.array(ccols["desc"], np.float32).reshape(len(ccols["desc"]), -1),
                                group=np.array(ccols["group"], np.int16), instance=np.array(ccols["instance"], np.int16),
                                score=np.array(ccols["score"], np.float32), shipped=np.array(ccols["shipped"], bool),
                                query=np.array(ccols["query"], bool), scene=np.array(ccols["scene"], np.int32),
                                last=np.array(last))
            tmp.replace(args.candidates)

    start, done, skipped, amb = time.time(), 0, 0, 0
    s = first - 1
    for s in range(first, args.first + args.scenes):
        if time.time() - start > args.minutes * 60:
            s -= 1
            break
        scene = gen.scene(s)
        if not any(g == 0 for g in scene.groups):
            continue
        rows, big = scene_rows(eng, scene, s)
        skipped += not big
        for q, c, lab, _score, ok in rows:
            if lab < 0:
                amb += 1
                continue
            cols["query"].append(sim.descriptor_row(q)); cols["cand"].append(sim.descriptor_row(c))
            cols["label"].append(lab); cols["shipped"].append(ok); cols["scene"].append(s)
        if args.candidates is not None:
            for d, g, inst, sc, ok, isq in candidate_rows(rows, eng.patches, scene):
                for k, v in zip(ccols, (sim.descriptor_row(d), g, inst, sc, ok, isq, s)):
                    ccols[k].append(v)
        done += 1
        if done % args.save_every == 0:
            save(s)
            print(f"{done} scenes ({skipped} not small-on-big), {len(cols['label'])} pairs, "
                  f"{sum(int(v) for v in cols['label'])} positive, {amb} ambiguous, {time.time() - start:.0f} s", flush=True)
    save(s)
    print(f"wrote {args.out}: {done} scenes ({skipped} not small-on-big), {len(cols['label'])} pairs, "
          f"{sum(int(v) for v in cols['label'])} positive, {amb} ambiguous, {time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
