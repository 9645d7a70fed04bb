"""by_group's acceptance rules, offline, on the engine's own candidates (issue 23).

    python -m bench.group_rules CANDS.npz [CANDS2.npz ...] [--anchors 1,2,3] [--share 0,0.3,0.4,0.5,0.6]

CANDS.npz: `python -m backend.training.engine_pairs --candidates` (every object the "pvm" engine described on
real-size scenes where the big-photo verifier decides, with the group and instance it lies on, its score
against the query and the shipped verifier's verdict). Per scene the band candidates are those the shipped
big-photo verifier rejected against the query but scored at least SimilarSettings.group_band of its
threshold (one per object: the first on each instance), the voters the instances it accepted. For every rule
it prints how many band candidates it takes that lie on copies and how many on objects of other kinds
(look-alikes and the rest; background blobs are counted apart):

- set (anchors K, share S): taken when at least K voters, and S of them, accept it both ways
  (backend/similar/groups.py: by_set);
- group: SimilarSettings.group_size or more members that accept one another both ways, connected to a voter
  (groups.by_graph: the k-core and its connected parts).

Pairs are scored by the shipped big-photo verifier (weights "pvm-big") behind its area gate, as the engine
scores them. A capture made with --accept oracle explores from every true copy, so its candidates are more
than the engine's own: the counts compare rules, the bench (bench/similar.py --group-set) measures them.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from backend import similar as sim, weights  # noqa: E402
from backend.similar import groups  # noqa: E402
from backend.training.ship_big_pvm import gated  # noqa: E402
from backend.training.train_pvm import predict  # noqa: E402


class Scene:
    """One scene's voters and band candidates, with the mutual acceptance between all of them."""

    def __init__(self, voters: list[int], band: list[int], mutual: np.ndarray, group: np.ndarray):
        self.voters, self.band, self.mutual, self.group = voters, band, mutual, group   # mutual: over voters + band


def scenes_of(files: list[Path], model: torch.nn.Module, settings: sim.SimilarSettings) -> list[Scene]:
    own = float(model.threshold)
    # the captured scores are on the shipped PVM's scale (the engine's onto_scale): the band's floor there
    floor_seen = settings.group_band * float(weights.load("pvm").threshold)
    lo, hi = settings.big_photo_min_ratio, settings.big_photo_max_ratio
    out = []
    for f in files:
        d = dict(np.load(f))
        desc, group, inst, score, ok, isq, scene = (d[k] for k in ("desc", "group", "instance", "score", "shipped",
                                                                    "query", "scene"))
        for s in np.unique(scene):
            at = np.flatnonzero((scene == s) & ~isq)
            voters = [int(i) for i in at if ok[i]]
            seen = {(int(group[i]), int(inst[i])) for i in voters if group[i] >= 0}
            band = []
            for i in at:
                if ok[i] or score[i] < floor_seen or group[i] == -1:
                    continue
                key = (int(group[i]), int(inst[i]))
                if group[i] >= 0 and key in seen:
                    continue                                    # a second candidate on one object
                seen.add(key)
                band.append(int(i))
            if not voters or not band:
                continue
            nodes = voters + band
            rows = torch.from_numpy(desc[nodes])
            n = len(nodes)
            pairs = {"query": rows.repeat_interleave(n, 0), "cand": rows.repeat(n, 1)}   # [i, j]: i scores j
            acc = (gated(predict(model, pairs), pairs, lo, hi) >= own).reshape(n, n)
            mutual = acc & acc.T
            np.fill_diagonal(mutual, False)
            out.append(Scene(list(range(len(voters))), list(range(len(voters), n)), mutual, group[nodes]))
    return out


def set_rule(sc: Scene, anchors: int, share: float) -> list[int]:
    return groups.by_set(sc.band, sc.voters, lambda i, j: bool(sc.mutual[i, j]), anchors, share)


def group_rule(sc: Scene, size: int) -> list[int]:
    joined = groups.by_graph(set(range(len(sc.group))), set(sc.voters), lambda i, j: bool(sc.mutual[i, j]), size)
    return [b for b in sc.band if b in joined]


def count(scenes: list[Scene], rule) -> tuple[int, int, int]:
    """(copies, other kinds, background blobs) taken."""
    c = o = bg = 0
    for sc in scenes:
        for b in rule(sc):
            g = int(sc.group[b])
            c += g == 0
            o += g > 0
            bg += g == -2
    return c, o, bg


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("candidates", type=Path, nargs="+")
    ap.add_argument("--anchors", default="1,2,3")
    ap.add_argument("--share", default="0,0.3,0.4,0.5,0.6,0.7")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    settings = sim.SimilarSettings()
    model = weights.load("pvm-big").eval()
    scenes = scenes_of(args.candidates, model, settings)
    band = [int(sc.group[b]) for sc in scenes for b in sc.band]
    print(f"{len(scenes)} scenes with voters and band candidates; band: {band.count(0)} on copies, "
          f"{sum(g > 0 for g in band)} on other kinds, {band.count(-2)} background")
    c, o, bg = count(scenes, lambda sc: group_rule(sc, settings.group_size))
    print(f"group (size {settings.group_size}): copies {c}, other kinds {o}, background {bg}")
    for k in (int(v) for v in args.anchors.split(",")):
        for s in (float(v) for v in args.share.split(",")):
            c, o, bg = count(scenes, lambda sc: set_rule(sc, k, s))
            print(f"set (anchors {k}, share {s:.2f}): copies {c}, other kinds {o}, background {bg}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
