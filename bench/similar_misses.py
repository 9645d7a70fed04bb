"""Where select similar loses copies: each missed copy sorted into one of three kinds.

    python -m bench.similar_misses --split realsize --first 5000 --scenes 40 [--seconds 60] [--json OUT]

Runs the registry's `pvm` engine (the daemon's defaults; --seed click queries as in bench.similar)
on validation scenes, recording every proposal (its click, its mask after the loop's repairs, its
verifier score). A copy the returned union covers < 50 % (bench.similar's rule) is:
  never proposed   no proposal's click lies on it (inside its box) and no proposal's mask overlaps
                   it by >= 20 % of its area; split by the best value of the proposal maps on its
                   cells: under the bar (the map does not see it) / over the bar (not picked: a
                   neighbour's peak suppressed it, or the rounds ended)
  bad mask         proposed, but no proposal's mask has IoU >= 0.5 with it
  rejected         a proposal's mask has IoU >= 0.5 with it and the verifier rejected it
Counts are given per kind and by the copy's long side in photo pixels. Use validation seeds
5000+ for choices (the bench reports seeds 0+).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from backend import similar as sim  # noqa: E402
from backend.cache import ImageEntry  # noqa: E402
from backend.engines.similar_pvm import PvmEngine  # noqa: E402
from backend.masks import mask_box  # noqa: E402
from backend.similar import loop  # noqa: E402
from backend.training.synth import RealSizeGenerator, SceneGenerator  # noqa: E402
from backend.training.queries import query_of, rgba  # noqa: E402
from bench.similar import scenes_in_time  # noqa: E402

SIZES = (0, 80, 120, 200, 10 ** 9)     # copy long side bins, photo px
KINDS = ("never proposed, under the bar", "never proposed, over the bar", "bad mask", "rejected", "other")


def size_bin(long_side: int) -> str:
    for lo, hi in zip(SIZES, SIZES[1:]):
        if lo <= long_side < hi:
            return f"{lo}-{hi}" if hi < 10 ** 9 else f">={lo}"
    return "?"


class Recorder:
    """Wraps the loop's module functions to record each proposal; restores them on exit."""

    def __init__(self) -> None:
        self.props: list[dict] = []
        self.proposer: "sim.Proposer | None" = None

    def __enter__(self) -> "Recorder":
        rec = self
        self._saved = loop.segment_proposal, loop.new_part, loop.Proposer
        seg0, new0, prop0 = self._saved

        def segment_proposal(*args, **kwargs):
            out = seg0(*args, **kwargs)
            rec.props.append({"click": (float(out[1]), float(out[2])), "mask": None, "score": None})
            return out

        def new_part(got, px, py, template, taken, max_overlap):
            out = new0(got, px, py, template, taken, max_overlap)
            rec.props[-1]["mask"] = out
            return out

        class Proposer(prop0):   # type: ignore[misc, valid-type]
            def __init__(self, *a, **k):
                super().__init__(*a, **k)
                rec.proposer = self

        loop.segment_proposal, loop.new_part, loop.Proposer = segment_proposal, new_part, Proposer
        return self

    def __exit__(self, *exc) -> None:
        loop.segment_proposal, loop.new_part, loop.Proposer = self._saved


class ScoringVerifier:
    """The engine's verifier, its scores written into the recorder's last proposal."""

    def __init__(self, inner, rec: Recorder):
        self.inner, self.rec, self.threshold = inner, rec, inner.threshold
        self.min_ratio = getattr(inner, "min_ratio", 0.0)      # the gate, for find_similar's by_copies
        self.max_ratio = getattr(inner, "max_ratio", float("inf"))

    def score(self, q, c) -> float:
        s = self.inner.score(q, c)
        if self.rec.props[-1].get("desc") is None:     # the first score of a proposal: against the query
            self.rec.props[-1]["score"] = s
            self.rec.props[-1]["desc"] = c
        return s


def classify(m: np.ndarray, props: list[dict], best_map: float, bar: float) -> str:
    """The kind of a missed copy m (H×W bool), see the module docstring."""
    area = int(m.sum())
    x0, y0, x1, y1 = mask_box(m)  # type: ignore[misc]
    proposed, good = False, []
    for p in props:
        cx, cy = p["click"]
        if x0 <= cx < x1 and y0 <= cy < y1:
            proposed = True
        got = p["mask"]
        if got is None:
            continue
        inter = int(np.count_nonzero(got.mask & got.region(m)))
        if inter >= 0.2 * area:
            proposed = True
        union = got.area + area - inter
        if union and inter / union >= 0.5:
            good.append(p)
    if good:
        return "rejected" if not any(p["accepted"] for p in good) else "other"
    if proposed:
        return "bad mask"
    return "never proposed, over the bar" if best_map >= bar else "never proposed, under the bar"


def map_value(prop: "sim.Proposer", m: np.ndarray, mm: sim.MatchMap) -> tuple[float, float]:
    """(best value on the copy's cells, the bar) of the proposal maps as the last round saw them,
    each relative to its own bar (CPN heatmap / its threshold, cosine map / tau): max ratio, 1.0."""
    g = sim.to_grid(m, mm) > 0.3
    if not g.any():
        g = sim.to_grid(m, mm) > 0
    best = 0.0
    if prop.heats and prop.cpn is not None:
        best = max(best, float(np.max(np.stack(prop.heats), 0)[g].max()) / float(prop.cpn.threshold))
    if prop.sims and prop.tau:
        best = max(best, float(np.max(np.stack(prop.sims), 0)[g].max()) / prop.tau)
    return best, 1.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", choices=("standard", "realsize"), default="realsize")
    ap.add_argument("--first", type=int, default=5000)
    ap.add_argument("--scenes", type=int, default=40)
    ap.add_argument("--seed", choices=("gt", "click"), default="click")
    ap.add_argument("--seconds", type=float, default=60.0, help="IDS time budget (SimilarSettings.seconds)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--minutes", type=float, default=None)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--copies", type=float, default=None, metavar="MIN_SCORE",
                    help="with find_similar's by_copies (SimilarSettings.by_copies, copies_min_score = MIN_SCORE)")
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    gen = RealSizeGenerator("val") if args.split == "realsize" else SceneGenerator("val")
    eng = PvmEngine(settings=sim.SimilarSettings(seconds=args.seconds, by_copies=args.copies is not None,
                                                 copies_min_score=args.copies or 0.0))
    rows: list[dict] = []
    props: list[dict] = []
    start = time.time()
    for s, scene in scenes_in_time(gen, args.first, args.scenes, args.minutes):
        qi, seed = query_of(scene, s, args.split, args.seed, None)
        entry = ImageEntry(f"scene{s}", rgba(scene.image), scene.image)
        mm = eng.match_map(entry, seed)
        big = sim.small_on_big(entry.height, entry.width, seed)
        verifier = eng.verifier(big_photo=big)
        with Recorder() as rec:
            res = sim.find_similar(entry.rgb, seed, mm, eng.segment_fn(entry), ScoringVerifier(verifier, rec),
                                   eng.settings, cpn=eng.cpn(), align_clicks=eng.segmenter() is None,
                                   by_copies=eng.by_copies(big),
                                   hidden_copies=sim.big_photo(entry.height, entry.width))
        for p in rec.props:        # accepted: against the query, or by a copy (find_similar's by_copies)
            hits = [c for c in res.accepted if p["mask"] is not None and (c.patch.x, c.patch.y) == (p["mask"].x, p["mask"].y)]
            p["accepted"] = bool(hits)
            p["final"] = float(hits[0].score) if hits else None   # the score that accepted it
        qiou = float((seed & scene.masks[qi]).sum() / max((seed | scene.masks[qi]).sum(), 1))
        props += proposal_rows(s, rec.props, scene, qi, verifier, qiou)
        union = np.zeros(seed.shape, bool)
        for c in res.accepted:
            c.patch.region(union)[c.patch.mask] = True
        union &= ~scene.masks[qi]
        qlong = max(np.ptp(np.nonzero(seed)[0]), np.ptp(np.nonzero(seed)[1])) + 1
        for i, (m, g) in enumerate(zip(scene.masks, scene.groups)):
            if g != 0 or i == qi or not m.any():
                continue
            x0, y0, x1, y1 = mask_box(m)  # type: ignore[misc]
            found = (union & m).sum() >= 0.5 * m.sum()
            best, bar = map_value(rec.proposer, m, mm)
            kind = "found" if found else classify(m, rec.props, best, bar)
            scores = [p["score"] for p in rec.props if p["mask"] is not None and p["score"] is not None
                      and np.count_nonzero(p["mask"].mask & p["mask"].region(m)) >= 0.5 * p["mask"].area]
            rows.append({"scene": s, "copy": i, "kind": kind, "long": max(x1 - x0, y1 - y0), "area": int(m.sum()),
                         "query_long": int(qlong), "map": round(best, 3), "scores": [round(float(v), 3) for v in scores],
                         "side": int(round(mm.scale * max(entry.height, entry.width))),
                         "proposals": res.proposals, "rounds": res.rounds, "query_iou": round(qiou, 3)})
        n_other = sum(1 for g in scene.groups if g != 0)
        print(f"scene {s}: {sum(r['kind'] == 'found' for r in rows if r['scene'] == s)} of "
              f"{sum(r['scene'] == s for r in rows)} found, {res.proposals} proposals, {res.rounds} rounds, "
              f"{len(res.accepted)} accepted, {n_other} others, encoded {rows[-1]['side'] if rows else '-'} px, "
              f"{time.time() - start:.0f} s", flush=True)
    report(rows, props)
    if args.json:
        args.json.write_text(json.dumps({"copies": rows, "proposals": props}, indent=1) + "\n")
    return 0


def proposal_rows(s: int, recorded: list[dict], scene, qi: int, verifier, qiou: float) -> list[dict]:
    """One row per verified proposal: what it lies on ("copy" when >= 50 % of it lies on copies
    other than the query, else the role of the object holding most of it, or "background"), its
    score against the query and its best score against the proposals accepted in that scene."""
    done = [p for p in recorded if p.get("desc") is not None]
    accepted = [p for p in done if p["accepted"]]
    out = []
    for p in done:
        got = p["mask"]
        share = [np.count_nonzero(got.mask & got.region(m)) / max(got.area, 1) if j != qi else 0.0
                 for j, m in enumerate(scene.masks)]
        copies = sum(v for v, g in zip(share, scene.groups) if g == 0)
        j = int(np.argmax(share))
        label = "copy" if copies >= 0.5 else scene.roles[j] if share[j] >= 0.5 else "background"
        others = [verifier.score(a["desc"], p["desc"]) for a in accepted if a is not p]
        out.append({"scene": s, "label": label, "score": round(float(p["score"]), 4),
                    "score_accepted": round(float(max(others)), 4) if others else None,
                    "accepted": p["accepted"], "final": p["final"], "query_iou": round(qiou, 3),
                    "area": got.area, "on_copies": int(round(copies * got.area))})
    return out


def report(rows: list[dict], props: "list[dict] | None" = None) -> None:
    bins = [size_bin(lo) for lo in SIZES[:-1]]
    print(f"{len({r['scene'] for r in rows})} scenes, {len(rows)} copies to find, "
          f"{sum(r['kind'] == 'found' for r in rows)} found")
    print(f"{'kind':32s} {'all':>5s} " + " ".join(f"{b:>8s}" for b in bins))
    for kind in ("found",) + KINDS:
        sel = [r for r in rows if r["kind"] == kind]
        print(f"{kind:32s} {len(sel):5d} " + " ".join(f"{sum(size_bin(r['long']) == b for r in sel):8d}" for b in bins))
    print(f"{'copies':32s} {len(rows):5d} " + " ".join(f"{sum(size_bin(r['long']) == b for r in rows):8d}" for b in bins))
    bad = sorted({r["scene"] for r in rows if r["query_iou"] < 0.5})
    print(f"scenes whose click query has IoU < 0.5 with its copy: {len(bad)} {bad}; their copies missed by kind: "
          + ", ".join(f"{k} {sum(r['kind'] == k and r['scene'] in bad for r in rows)}" for k in KINDS))
    for label in sorted({p["label"] for p in props or []}):
        sel = [p for p in props or [] if p["label"] == label]
        print(f"proposals on {label}: {len(sel)}, accepted {sum(p['accepted'] for p in sel)}")


if __name__ == "__main__":
    raise SystemExit(main())
