"""Select-similar benchmark on held-out synthetic scenes (validation backgrounds and objects).

    python -m bench.similar [--scenes 100] [--engines classic,features,simpson] [--seed gt|click]
                               [--photo12mp] [--json OUT]

Each scene has 1-10 copies of one object plus 1-3 objects of other kinds (some are look-alikes:
the same object recoloured, or another object tinted to the same colour). The query is one copy
(its true mask with --seed gt; the select engine's mask from a click inside it with --seed click).
Metrics, micro-averaged over scenes, the query copy itself excluded everywhere:
  instance recall     copies covered >= 50 % by the returned union / copies
  instance precision  returned instances with >= 50 % of their pixels on copies / returned (an
                      instance lying on the query's copy only is not counted: the query excluded)
  other hits          objects of other kinds covered >= 50 % / objects of other kinds
  pixel P / R         union of returned masks against the union of the copies
All engines run on the same scenes in the same run, on one shared image entry: the matching
encoding (and the one-click model's) is timed apart ("encode", paid by the first engine that needs
it) from the similar call itself ("s/scene"). --photo12mp also times one call on a
4000×3000 upscale of a scene, after the image has been encoded once.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from backend.cache import ImageEntry  # noqa: E402
from backend.engines import get  # noqa: E402
from backend.training.synth import RealSizeGenerator, Scene, SceneGenerator  # noqa: E402
from backend.training.queries import query_index, query_of, rgba  # noqa: E402
from bench.common import paired, paired_ratio  # noqa: E402

COVER = 0.5


def scenes_in_time(gen, first: int, n: int, minutes: float | None):
    """(seed, scene) for validation scenes first..first+n-1 that hold copies to find (group 0),
    until `minutes` have passed (None: all)."""
    start = time.time()
    for s in range(first, first + n):
        if minutes is not None and time.time() - start > minutes * 60:
            return
        scene = gen.scene(s)
        if any(g == 0 for g in scene.groups):
            yield s, scene


def dsn_segmenter(path: Path | None, first: Path | None = None):
    """A ClickSegmenter on any checkpoint (a checksum file is written next to a temporary copy):
    `path` for every click, or with `first` the shipped refining model and `first` for the clicks
    without a previous mask (select similar's proposals and click queries; --dsn-first)."""
    import shutil
    import tempfile
    from backend.segment import ClickSegmenter
    from backend.weights import write_sha256

    def copy(file: Path) -> Path:
        tmp = Path(tempfile.mkdtemp(prefix="simpson-bench-")) / file.name
        shutil.copy(file, tmp)
        write_sha256(tmp)
        return tmp
    if first is not None:
        return ClickSegmenter(None if path is None else copy(path), first=copy(first))
    assert path is not None
    return ClickSegmenter(copy(path))


def score_scene(scene: Scene, qi: int, found: list) -> dict[str, float]:
    h, w = scene.image.shape[:2]
    targets = [m for i, (m, g) in enumerate(zip(scene.masks, scene.groups)) if g == 0 and i != qi]
    others = [m for m, g in zip(scene.masks, scene.groups) if g != 0]
    looks = [m for m, r in zip(scene.masks, scene.roles) if r == "lookalike"]
    tgt = np.zeros((h, w), bool)
    for m in targets:
        tgt |= m
    union = np.zeros((h, w), bool)
    good = returned = 0
    for f in found:
        x, y, bw, bh = f.box
        full = np.zeros((h, w), bool)
        full[y:y + bh, x:x + bw] = f.mask
        full &= ~scene.masks[qi]
        if not full.any():
            continue                    # on the query's copy only (its parts the click left out)
        returned += 1
        union |= full
        if (full & tgt).sum() >= COVER * full.sum():
            good += 1
    return {
        "targets": len(targets), "found": int(sum((union & m).sum() >= COVER * m.sum() for m in targets)),
        "returned": returned, "correct": good,
        "others": len(others), "other_hits": int(sum((union & m).sum() >= COVER * m.sum() for m in others)),
        "lookalikes": len(looks), "lookalike_hits": int(sum((union & m).sum() >= COVER * m.sum() for m in looks)),
        "pix_tp": float((union & tgt).sum()), "pix_ret": float(union.sum()), "pix_tgt": float(tgt.sum()),
    }


def summarise(rows: list[dict[str, float]], seconds: list[float]) -> dict[str, float]:
    t = {k: sum(r[k] for r in rows) for k in rows[0] if k != "scene"}
    rec = t["found"] / max(t["targets"], 1)
    prec = t["correct"] / max(t["returned"], 1) if t["returned"] else 1.0
    return {
        "inst_recall": rec, "inst_precision": prec, "inst_f1": 2 * rec * prec / max(rec + prec, 1e-9),
        "other_hit_rate": t["other_hits"] / max(t["others"], 1),
        "lookalike_hit_rate": t["lookalike_hits"] / max(t["lookalikes"], 1),
        "pix_precision": t["pix_tp"] / max(t["pix_ret"], 1), "pix_recall": t["pix_tp"] / max(t["pix_tgt"], 1),
        "targets": t["targets"], "returned": t["returned"], "others": t["others"],
        "sec_median": float(np.median(seconds)), "sec_mean": float(np.mean(seconds)),
    }


def print_paired(rows: dict[str, list], engines: list[str]) -> None:
    """Per-scene paired differences of every engine against the first: copies found, other-kind
    objects taken, look-alikes taken (totals and their standard error over scenes), the
    recall difference (found / copies to find) and the pixel-precision difference (pooled over
    the scenes, its standard error a bootstrap over them: common.paired_ratio)."""
    base = engines[0]
    for e in engines[1:]:
        a, b = rows[base], rows[e]
        targets = sum(r["targets"] for r in a)
        for k in ("found", "other_hits", "lookalike_hits", "returned", "correct"):
            d, se = paired([r[k] for r in a], [r[k] for r in b])
            n = len(a)
            print(f"paired {e} minus {base}: {k} {d * n:+.0f} (s.e. {se * n:.1f}) over {n} scenes"
                  + (f"; recall {d * n / max(targets, 1):+.4f} (s.e. {se * n / max(targets, 1):.4f})" if k == "found" else ""))
        d, se = paired_ratio([r["pix_tp"] for r in a], [r["pix_ret"] for r in a],
                             [r["pix_tp"] for r in b], [r["pix_ret"] for r in b])
        print(f"paired {e} minus {base}: pixel precision {d:+.4f} (bootstrap s.e. {se:.4f}) over {len(a)} scenes")


def own_engine(name: str, settings):
    """The registry's engine `name`, or, for an engine with settings (select similar's), a new one
    with `settings` (None: the registry's engine as it is)."""
    eng = get(name)
    if settings is None or not hasattr(eng, "settings"):
        return eng
    return type(eng)(settings=settings)


def pvm_variant(name: str, settings, big_model="auto", **changes):
    """The pvm engine named `name` with `settings` (None: the defaults) changed by `changes`
    (SimilarSettings fields); big_model as PvmEngine takes it (None: no big-photo verifier)."""
    from dataclasses import replace
    from backend import similar as sim
    from backend.engines.similar_pvm import PvmEngine
    eng = PvmEngine(settings=replace(settings or sim.SimilarSettings(), **changes), big_model=big_model)
    eng.name = name
    return eng


def before_engine(settings):
    """The pvm engine as shipped before issue 23: the matching encoding capped at 1024 px, one verifier."""
    from backend import similar as sim
    return pvm_variant("pvm-before", settings, big_model=None, large_side=sim.MAX_SIDE)


def one_verifier_engine(settings):
    """The pvm engine without the big-photo verifier: the shipped PVM decides everywhere."""
    return pvm_variant("pvm-one", settings, big_model=None)


def copies_engine(settings, min_score: "float | None" = None):
    """The pvm engine with find_similar's by_copies (SimilarSettings.by_copies: where the big-photo
    verifier decides, a candidate it rejects against the query may be accepted by a copy it accepted,
    scoring it >= min_score, default SimilarSettings.copies_min_score)."""
    more = {} if min_score is None else {"copies_min_score": min_score}
    return pvm_variant("pvm-copies" + ("" if min_score is None else f"@{min_score:g}"), settings,
                       by_copies=True, **more)


def candidate_engine(path: Path, threshold: "float | None" = None, settings=None):
    """The pvm engine with the verifier (and its threshold, or `threshold`) from another similar-lite0.pt,
    deciding everywhere (no big-photo verifier)."""
    from backend import weights
    from backend.engines.similar_pvm import PvmEngine
    model = weights.build("pvm", weights.read(path))
    if threshold is not None:
        model.threshold.fill_(threshold)
    eng = PvmEngine(model=model, settings=settings, big_model=None)
    eng.name = "pvm-cand"
    return eng


def big_candidate_engine(path: Path, gate: "tuple[float, float] | None" = None, settings=None):
    """The pvm engine with the big-photo verifier from another similar-big-lite0.pt (ship_big_pvm's file, at its
    stored threshold), gated to `gate` (candidate / query area; default the settings' big_photo_min_ratio,
    big_photo_max_ratio); the shipped PVM elsewhere, as the pvm engine."""
    from dataclasses import replace
    from backend import similar as sim
    from backend import weights
    from backend.engines.similar_pvm import PvmEngine
    s = settings or sim.SimilarSettings()
    if gate is not None:
        s = replace(s, big_photo_min_ratio=gate[0], big_photo_max_ratio=gate[1])
    eng = PvmEngine(settings=s, big_model=weights.build("pvm-big", weights.read(path)))
    eng.name = "pvm-big-cand"
    return eng


def time_12mp(scene: Scene, qi: int, engine: str) -> dict[str, float]:
    rgb = cv2.resize(scene.image, (4000, 3000), interpolation=cv2.INTER_LINEAR)
    seed = cv2.resize(scene.masks[qi].astype(np.uint8), (4000, 3000), interpolation=cv2.INTER_NEAREST) > 0
    entry = ImageEntry("12mp", rgba(rgb), rgb)
    eng = get(engine)
    t0 = time.perf_counter()
    eng.similar(entry, seed, lambda f, m: None)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    found = eng.similar(entry, seed, lambda f, m: None)
    again = time.perf_counter() - t0
    return {"first_call_s": first, "encoded_call_s": again, "instances": len(found)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", type=int, default=100)
    ap.add_argument("--first", type=int, default=0, help="first validation scene seed")
    ap.add_argument("--engines", default="classic,features")
    ap.add_argument("--seed", choices=("gt", "click"), default="gt")
    ap.add_argument("--select-engine", default=None,
                    help="engine that turns the click into the query (default: the daemon's default)")
    ap.add_argument("--dsn", type=Path, default=None,
                    help="one-click checkpoint for proposals and click queries (default: shipped weights if any)")
    ap.add_argument("--dsn-first", type=Path, default=None,
                    help="first-click checkpoint beside the refining one (--dsn, default the shipped one): "
                         "it segments the click query and the proposals, as dsn-first-lite0.pt does")
    ap.add_argument("--pvm-threshold", type=float, default=None, help="override the PVM's shipped threshold")
    ap.add_argument("--photo12mp", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--split", choices=("standard", "realsize"), default="standard",
                    help="realsize: issue 23's 12-MP scenes (3-15 varied copies, 2-4 look-alikes of the "
                         "object's family, objects in pieces); the query is a random copy (backend.training.queries.realsize_query)")
    ap.add_argument("--before", action="store_true",
                    help="also run 'pvm-before': the pvm engine as shipped before issue 23 (encoding capped at "
                         "1024 px, shipped verifier), on the same scenes")
    ap.add_argument("--group", action="store_true",
                    help="also run 'pvm-group': the pvm engine where candidates the big-photo verifier rejects "
                         "against the query but that accept one another both ways in a group are accepted "
                         "(SimilarSettings.by_group)")
    ap.add_argument("--group-set", default=[], action="append", metavar="ANCHORS,SHARE",
                    help="also run 'pvm-set@ANCHORS,SHARE': by_group's set rule (a candidate the big-photo verifier "
                         "rejects against the query, accepted when at least ANCHORS of the instances it accepted, "
                         "and SHARE of them, accept it both ways: SimilarSettings.group_anchors, group_share); repeatable")
    ap.add_argument("--one-verifier", action="store_true",
                    help="also run 'pvm-one': the pvm engine without the big-photo verifier (the shipped PVM "
                         "decides for small queries on photos over 1024 px too), on the same scenes")
    ap.add_argument("--parts", action="store_true",
                    help="also run 'pvm-parts': the pvm engine with repeated parts (the parts beside every copy that "
                         "the query's mask left out: backend/similar/repeated_parts.py), on the same scenes")
    ap.add_argument("--no-pixel-match", action="store_true",
                    help="also run 'pvm-no-pixel': the pvm engine without pixel match (a rejected candidate whose "
                         "pixels are the query's turned and scaled: backend/similar/pixel_match.py), on the same scenes")
    ap.add_argument("--copies", default=[], action="append", metavar="MIN_SCORE", type=float,
                    help="also run 'pvm-copies@MIN_SCORE': the pvm engine with SimilarSettings.by_copies (a candidate the "
                         "big-photo verifier rejects against the query, accepted when a copy it accepted scores it "
                         ">= MIN_SCORE); repeatable")
    ap.add_argument("--pvm", default=[], action="append", metavar="FILE[@THRESHOLD]",
                    help="also run 'pvm-cand[@THRESHOLD]': the pvm engine with the verifier in FILE "
                         "(similar-lite0.pt format), at its stored threshold or THRESHOLD; repeatable")
    ap.add_argument("--big", default=[], action="append", metavar="FILE[@MIN,MAX]",
                    help="also run 'pvm-big-cand[@MIN,MAX]': the pvm engine with the big-photo verifier in FILE "
                         "(similar-big-lite0.pt format, its stored threshold), gated to MIN..MAX of the query's area "
                         "(default SimilarSettings.big_photo_min_ratio, big_photo_max_ratio); repeatable")
    ap.add_argument("--minutes", type=float, default=None, help="stop after this long (scenes done are reported)")
    ap.add_argument("--paired-with", default=None, metavar="JSON:ENGINE",
                    help="also compare every engine, scene by scene, with ENGINE's rows in an earlier --json "
                         "(the scenes both runs measured; same split, seeds and query)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=None,
                    help="every engine's IDS time budget (SimilarSettings.seconds, default 6 s): a larger one keeps "
                         "a loaded machine from cutting rounds, so the arms compare what they find")
    ap.add_argument("--pvm-gate", default=None, metavar="MIN,MAX",
                    help="the --pvm arms' learned-verifier area gate (SimilarSettings.learned_min_ratio, "
                         "learned_max_ratio: candidate area / query area); default off, as shipped")
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    gen = RealSizeGenerator("val") if args.split == "realsize" else SceneGenerator("val")
    if gen.procedural:
        print("bench.similar: the validation sources are missing (synth.SOURCE_ROOT: the Debian packages in "
              "docs/models.md, or SIMPSON_SOURCE_ROOT), so the scenes would be procedural and not the bench's; "
              "install them first.", file=sys.stderr)
        return 2
    engines = [e for e in args.engines.split(",") if e]
    from backend import similar as sim
    settings = None if args.seconds is None else sim.SimilarSettings(seconds=args.seconds)
    arms = {e: own_engine(e, settings) for e in engines}
    if args.before:
        arms["pvm-before"] = before_engine(settings)
    if args.one_verifier:
        arms["pvm-one"] = one_verifier_engine(settings)
    if args.parts:          # repeated parts on (backend/similar/repeated_parts.py; off by default)
        arms["pvm-parts"] = pvm_variant("pvm-parts", settings, repeated_parts=True)
    if args.group:          # rejected candidates that accept one another as a group (SimilarSettings.by_group)
        arms["pvm-group"] = pvm_variant("pvm-group", settings, by_group=True)
    for spec in args.group_set:
        k, share = spec.split(",")
        arms[f"pvm-set@{spec}"] = pvm_variant(f"pvm-set@{spec}", settings, by_group=True,
                                              group_anchors=int(k), group_share=float(share))
    if args.no_pixel_match:  # pixel match off (backend/similar/pixel_match.py): as shipped before it
        arms["pvm-no-pixel"] = pvm_variant("pvm-no-pixel", settings, pixel_match=False)
    for min_score in args.copies:
        eng = copies_engine(settings, min_score)
        arms[eng.name] = eng
    cand_settings = settings
    if args.pvm_gate:
        from dataclasses import replace
        lo, hi = (float(v) for v in args.pvm_gate.split(","))
        cand_settings = replace(settings or sim.SimilarSettings(), learned_min_ratio=lo, learned_max_ratio=hi)
    for spec in args.pvm:
        file, _, thr = spec.partition("@")
        name = "pvm-cand" + (f"@{thr}" if thr else "") + ("" if len(args.pvm) == 1 else f"#{len(arms)}")
        arms[name] = candidate_engine(Path(file), float(thr) if thr else None, cand_settings)
    for spec in args.big:
        file, _, gate = spec.partition("@")
        lo_hi = tuple(float(v) for v in gate.split(",")) if gate else None
        name = "pvm-big-cand" + (f"@{gate}" if gate else "") + ("" if len(args.big) == 1 else f"#{len(arms)}")
        arms[name] = big_candidate_engine(Path(file), lo_hi, settings)  # type: ignore[arg-type]
        arms[name].name = name
    engines = list(arms)
    if args.pvm_threshold is not None and "pvm" in engines:
        arms["pvm"]._load()
        arms["pvm"]._model.threshold.fill_(args.pvm_threshold)
    segmenter = dsn_segmenter(args.dsn, args.dsn_first) if args.dsn or args.dsn_first else None
    if segmenter is not None:              # the similar engines segment through the dsn engine
        get("dsn")._segmenter = segmenter
    for e in engines:
        seg = getattr(arms[e], "segmenter", None)
        print(f"{e}: proposals segmented by {'GrabCut' if seg is not None and seg() is None else 'the one-click model' if seg else '-'}")
    rows: dict[str, list] = {e: [] for e in engines}
    secs: dict[str, list] = {e: [] for e in engines}
    enc: dict[str, list] = {e: [] for e in engines}
    used = 0
    start = time.time()
    for s, scene in scenes_in_time(gen, args.first, args.scenes, args.minutes):
        used += 1
        if used % 10 == 0:
            print(f"{used} scenes, {time.time() - start:.0f} s", flush=True)
        qi, seed = query_of(scene, s, args.split, args.seed, args.select_engine)
        entry = ImageEntry(f"scene{s}", rgba(scene.image), scene.image)   # shared: encoded once
        for e in engines:
            eng = arms[e]
            t0 = time.perf_counter()
            if hasattr(eng, "match_map"):            # encoding, timed apart (cached per image)
                eng.match_map(entry, seed)
                seg = eng.segmenter()
                if seg is not None:
                    seg.embedding(entry)
            enc[e].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            found = eng.similar(entry, seed, lambda f, m: None)
            secs[e].append(time.perf_counter() - t0)
            rows[e].append({"scene": s, **score_scene(scene, qi, found)})
    out: dict[str, dict] = {"scenes": {"used": used, "seed": args.seed, "split": args.split, "first": args.first}}
    print(f"{used} validation scenes ({args.split}, seeds from {args.first}), query = {args.seed}")
    print(f"{'engine':10s} {'inst R':>7s} {'inst P':>7s} {'F1':>6s} {'other':>6s} {'pix P':>6s} {'pix R':>6s} "
          f"{'s/scene':>8s} {'encode':>7s}  (targets/returned/others)")
    for e in engines if used else []:
        m = summarise(rows[e], secs[e])
        m["encode_sec_mean"] = float(np.mean(enc[e]))
        out[e] = {**m, "per_scene": rows[e],   # for comparing two runs scene by scene
                  "seconds_per_scene": [round(t, 4) for t in secs[e]]}   # the similar call, in per_scene's order
        print(f"{e:10s} {m['inst_recall']:7.3f} {m['inst_precision']:7.3f} {m['inst_f1']:6.3f} "
              f"{m['other_hit_rate']:6.3f} {m['pix_precision']:6.3f} {m['pix_recall']:6.3f} {m['sec_mean']:8.2f} {m['encode_sec_mean']:7.2f}"
              f"  ({m['targets']}/{m['returned']}/{m['others']}; look-alikes taken {m['lookalike_hit_rate']:.3f})")
    if used > 1:
        print_paired(rows, engines)
    if args.paired_with and used:
        file, _, name = args.paired_with.rpartition(":")
        earlier = {r["scene"]: r for r in json.loads(Path(file).read_text())[name]["per_scene"]}
        for e in engines:
            common = [r for r in rows[e] if r["scene"] in earlier]
            ref = f"{name} ({Path(file).name})"
            print(f"{len(common)} scenes in common with {ref}:")
            print_paired({ref: [earlier[r["scene"]] for r in common], e: common}, [ref, e])
            m = summarise([earlier[r["scene"]] for r in common], [0.0])
            print(f"  {ref} on them: recall {m['inst_recall']:.3f}, precision {m['inst_precision']:.3f}, "
                  f"other kinds {m['other_hit_rate']:.3f}, look-alikes {m['lookalike_hit_rate']:.3f}, "
                  f"pixel precision {m['pix_precision']:.3f}")
            m = summarise(common, [0.0])
            print(f"  {e} on them: recall {m['inst_recall']:.3f}, precision {m['inst_precision']:.3f}, "
                  f"other kinds {m['other_hit_rate']:.3f}, look-alikes {m['lookalike_hit_rate']:.3f}, "
                  f"pixel precision {m['pix_precision']:.3f}")
    if args.photo12mp:
        scene = gen.scene(args.first)
        qi = query_index(scene)
        for e in engines:
            t = time_12mp(scene, qi, e)
            out.setdefault(e, {})["photo12mp"] = t
            print(f"12 MP, {e}: first call {t['first_call_s']:.2f} s, once encoded {t['encoded_call_s']:.2f} s "
                  f"({t['instances']} instances)")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
