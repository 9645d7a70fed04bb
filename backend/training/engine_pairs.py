"""(query, candidate) pairs from the "pvm" engine's own candidates on real-size scenes (issue 23).

    python -m backend.training.engine_pairs --split train --first 0 --scenes 150 --out pairs.npz
        [--minutes 30] [--seconds 60] [--accept oracle|engine] [--save-every 10] [--resume]

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
    click bench queries it."""
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

    def save(last: int) -> None:
        n = len(cols["label"])
        write_pairs(args.out, cols["query"], cols["cand"], cols["label"], [SOURCES["proposal"]] * n, [0.0] * n,
                    cols["scene"], last, shipped=np.array(cols["shipped"], bool))

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
        done += 1
        if done % args.save_every == 0:
            save(s)
            print(f"{done} scenes ({skipped} not small-on-big), {len(cols['label'])} pairs, "
                  f"{sum(cols['label'])} positive, {amb} ambiguous, {time.time() - start:.0f} s", flush=True)
    save(s)
    print(f"wrote {args.out}: {done} scenes ({skipped} not small-on-big), {len(cols['label'])} pairs, "
          f"{sum(cols['label'])} positive, {amb} ambiguous, {time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
