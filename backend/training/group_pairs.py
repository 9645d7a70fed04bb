"""Pairs among the engine's own candidates, for the verifier of find_similar's by_group (issue 23).

    python -m backend.training.group_pairs --candidates CANDS.npz [CANDS2.npz ...] --out PAIRS.npz
        [--per-scene 160] [--seed 0]

CANDS.npz: engine_pairs --candidates (every object the "pvm" engine described on a real-size scene:
descriptor row, the group and instance it lies on). by_group accepts candidates that accept one
another, so its verifier is asked "are these two the same thing?" of two candidates, neither of them
the query: two copies (turned, re-lit, partly hidden, each segmented by the engine) must pass, and a
copy against a look-alike of its family (or a background blob) must not (docs/similar.md,
twenty-sixth session: the query-trained verifier scored such look-alikes near its threshold, and
every group rule on its scores took about one for every five copies).

Per scene, over the candidates that lie on one object or on none (ambiguous ones are left out), in
both orders (the verifier is not symmetric, by_group asks both ways):
  1 (positive)  two different instances of one group (copies of the object; look-alikes of one kind
                are the same thing too),
  0 (negative)  instances of two groups, or an object against a background blob (two blobs: left out).
Two candidates on one instance are left out (two proposals on one object are not a group). At most
--per-scene pairs a scene, drawn with the negatives that involve a copy first (the hard ones), then
the positives, then the rest. Written in similar_data's pairs format (source 0, peak 0), for train_pvm
and ship_big_pvm.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .similar_data import SOURCES, write_pairs

BACKGROUND = -2                  # engine_pairs.on_object: lies on no object
PER_SCENE = 160


def scene_pairs(group: np.ndarray, instance: np.ndarray, rng: np.random.Generator,
                cap: int = PER_SCENE) -> list[tuple[int, int, int]]:
    """(i, j, label) over one scene's candidates (indices into group/instance), at most cap."""
    ok = [i for i in range(len(group)) if group[i] >= 0 or group[i] == BACKGROUND]
    hard, pos, rest = [], [], []
    for i in ok:
        for j in ok:
            if i == j or (group[i] >= 0 and instance[i] == instance[j] and group[i] == group[j]):
                continue
            gi, gj = int(group[i]), int(group[j])
            if gi == BACKGROUND and gj == BACKGROUND:
                continue
            if gi == gj:
                pos.append((i, j, 1))
            elif gi == 0 or gj == 0:
                hard.append((i, j, 0))
            else:
                rest.append((i, j, 0))
    out: list[tuple[int, int, int]] = []
    for pool, room in ((hard, cap // 2), (pos, cap), (rest, cap)):   # hard negatives fill at most half
        idx = rng.permutation(len(pool))[:max(0, min(room, cap - len(out)))]
        out += [pool[k] for k in idx]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--candidates", type=Path, nargs="+", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--per-scene", type=int, default=PER_SCENE)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    q, c, lab, scn = [], [], [], []
    last = 0
    for f in args.candidates:
        d = np.load(f)
        desc, group, inst, scene = d["desc"], d["group"], d["instance"], d["scene"]
        last = max(last, int(d["last"]))
        for s in np.unique(scene):
            at = np.flatnonzero(scene == s)
            for i, j, y in scene_pairs(group[at], inst[at], rng, args.per_scene):
                q.append(desc[at[i]]); c.append(desc[at[j]]); lab.append(y); scn.append(int(s))
    n = len(lab)
    write_pairs(args.out, q, c, lab, [SOURCES["proposal"]] * n, [0.0] * n, scn, last)
    print(f"wrote {args.out}: {n} pairs ({sum(lab)} positive) from {len(set(scn))} scenes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
