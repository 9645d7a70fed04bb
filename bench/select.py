"""Click-to-mask quality on held-out synthetic scenes: 1C-DSN against GrabCut from the same clicks.

    python bench/select.py [--n 100] [--max-clicks 8] [--weights PATH]
    python bench/select.py --photos [bench/photos.json]      # a few real photos instead
    python bench/select.py --split realsize --n 300 --compare NEW.pt --json out.json   # two weights, paired
    python bench/select.py --split realsize --n 300 --compare-refiner NEW.pt   # a new refining model, paired


Scenes come from the validation split of backend/training/synth.py (backgrounds and objects
never trained on; seeds differ from the training-time validation set). The first click is the
interior point farthest from the object's boundary; every later click goes to the centre of
the largest error region (positive if missed, negative if extra), as in NoC protocols.
With --photos, the scenes are real photos listed in bench/photos.json (objects outlined by
hand, snapped to the image by GrabCut in a narrow band; see that file). Reports mIoU after 1 and 3 clicks, boundary F-score (1 click, 2 px tolerance), NoC@85/90
(capped at --max-clicks) and time per click, all measured in the same run.
"""
from __future__ import annotations

import os
import sys

# This file's name shadows the stdlib `select` module: run it with the repository root,
# not bench/, on the import path.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from backend.cache import ImageEntry  # noqa: E402
from backend import weights  # noqa: E402
from backend.engines.dsn import AWAY_SHARE, HOLE_SHARE, DsnEngine  # noqa: E402
from backend.segment import ClickSegmenter, SegmentSettings  # noqa: E402
from backend.training.samples import pick_instance  # noqa: E402
from backend.training.synth import SceneGenerator  # noqa: E402
from simpson_client.protocol import Point  # noqa: E402
BENCH_SEED = 10_000
BOUNDARY_TOL = 2


def interior_point(region: np.ndarray) -> tuple[float, float, float]:
    """(x, y, distance to the boundary) of the most interior pixel of a bool mask."""
    dist = cv2.distanceTransform(np.pad(region, 1).astype(np.uint8), cv2.DIST_L2, 5)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return float(x) + 0.5, float(y) + 0.5, float(dist[y, x])


def next_click(gt: np.ndarray, pred: np.ndarray) -> Point | None:
    fn, fp = gt & ~pred, pred & ~gt
    cands = [(interior_point(r), pos) for r, pos in ((fn, True), (fp, False)) if r.any()]
    if not cands:
        return None
    (x, y, _), pos = max(cands, key=lambda c: c[0][2])
    return x, y, pos


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def boundary_f(pred: np.ndarray, gt: np.ndarray, tol: int = BOUNDARY_TOL) -> float:
    k = np.ones((3, 3), np.uint8)
    bp = cv2.morphologyEx(pred.astype(np.uint8), cv2.MORPH_GRADIENT, k) > 0
    bg = cv2.morphologyEx(gt.astype(np.uint8), cv2.MORPH_GRADIENT, k) > 0
    if not bp.any() or not bg.any():
        return float(bp.any() == bg.any())
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * tol + 1, 2 * tol + 1))
    prec = (bp & (cv2.dilate(bg.astype(np.uint8), disk) > 0)).sum() / bp.sum()
    rec = (bg & (cv2.dilate(bp.astype(np.uint8), disk) > 0)).sum() / bg.sum()
    return float(2 * prec * rec / max(prec + rec, 1e-9))


class GrabCutClicks:
    """OpenCV GrabCut driven by the same clicks: a box around the first click (or the given
    box), click disks as hard constraints, the previous result as the initial mask."""

    def __init__(self, box_frac: float = 0.3, gt_box: bool = False):
        self.box_frac, self.gt_box = box_frac, gt_box

    def __call__(self, img: np.ndarray, points: list[Point], prev: np.ndarray | None, gt: np.ndarray) -> np.ndarray:
        h, w = gt.shape
        if self.gt_box:
            ys, xs = np.nonzero(gt)
            bx0, by0, bx1, by1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
            mx, my = 0.05 * (bx1 - bx0) + 2, 0.05 * (by1 - by0) + 2
            bx0, by0, bx1, by1 = bx0 - mx, by0 - my, bx1 + mx, by1 + my
        else:
            r = self.box_frac * min(h, w) / 2
            x, y, _ = points[0]
            bx0, by0, bx1, by1 = x - r, y - r, x + r, y + r
        for x, y, p in points:
            if p:
                bx0, by0, bx1, by1 = min(bx0, x - 6), min(by0, y - 6), max(bx1, x + 6), max(by1, y + 6)
        bx0, by0 = int(max(bx0, 0)), int(max(by0, 0))
        bx1, by1 = int(min(bx1, w)), int(min(by1, h))
        # work on a region of interest with a background margin, for speed
        mw, mh = (bx1 - bx0) // 2 + 8, (by1 - by0) // 2 + 8
        rx0, ry0, rx1, ry1 = max(bx0 - mw, 0), max(by0 - mh, 0), min(bx1 + mw, w), min(by1 + mh, h)
        mask = np.full((ry1 - ry0, rx1 - rx0), cv2.GC_BGD, np.uint8)
        inner = mask[by0 - ry0:by1 - ry0, bx0 - rx0:bx1 - rx0]
        if prev is None:
            inner[:] = cv2.GC_PR_FGD
        else:
            inner[:] = np.where(prev[by0:by1, bx0:bx1], cv2.GC_PR_FGD, cv2.GC_PR_BGD)
        for x, y, p in points:
            cv2.circle(mask, (int(x) - rx0, int(y) - ry0), 5, cv2.GC_FGD if p else cv2.GC_BGD, -1)
        if not (mask == cv2.GC_BGD).any() or not np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)).any():
            out = np.zeros((h, w), bool)
            out[ry0:ry1, rx0:rx1] = np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD))
            return out
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        roi = np.ascontiguousarray(img[ry0:ry1, rx0:rx1, ::-1])
        cv2.grabCut(roi, mask, None, bgd, fgd, 5, cv2.GC_INIT_WITH_MASK)
        out = np.zeros((h, w), bool)
        out[ry0:ry1, rx0:rx1] = np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD))
        return out


class DSNClicks:
    """ClickSegmenter with its switches (SegmentSettings: zoom, use_prev, refine_edges, small_probe)
    set per method; the model is shared."""

    def __init__(self, seg: ClickSegmenter, **switches: bool):
        self.seg = seg.with_settings(SegmentSettings(**switches))
        self.emb, self.key = None, None

    def __call__(self, img: np.ndarray, points: list[Point], prev: np.ndarray | None, gt: np.ndarray) -> np.ndarray:
        if self.key is not img:
            self.emb, self.key = self.seg.set_image(img), img
        prev_u8 = None if prev is None else prev.astype(np.uint8) * 255
        return self.seg.predict(self.emb, points, prev_u8) > 0


class EngineClicks(DSNClicks):
    """The daemon's select engine (backend/engines/dsn.py) as the GIMP dialog drives it: all
    clicks so far plus the mask the earlier ones gave; the product's path."""

    def __init__(self, seg: ClickSegmenter, away_share: float | None = AWAY_SHARE,
                 hole_share: float | None = HOLE_SHARE, **switches: bool):
        super().__init__(seg, **switches)
        self.engine = DsnEngine(self.seg, away_share, hole_share)

    def __call__(self, img: np.ndarray, points: list[Point], prev: np.ndarray | None, gt: np.ndarray) -> np.ndarray:
        if self.key is not img:
            self.emb, self.key = ImageEntry("bench", np.dstack([img, np.full(img.shape[:2], 255, np.uint8)]), img), img
        return self.engine.select(self.emb, points, prev, lambda f, m: None)


Method = Callable[[np.ndarray, list[Point], "np.ndarray | None", np.ndarray], np.ndarray]


def run(method: Method, scenes: list[tuple[np.ndarray, np.ndarray]], max_clicks: int) -> dict[str, float]:
    ious, bfs, noc85, noc90, t_first, t_next = [], [], [], [], [], []
    for img, gt in scenes:
        iou_curve(method, img, gt, max_clicks, ious, bfs, noc85, noc90, t_first, t_next)
    return {**summary(ious, bfs, noc85, noc90, t_first, t_next, max_clicks), "iou": ious}


def iou_curve(method: Method, img: np.ndarray, gt: np.ndarray, max_clicks: int, ious: list, bfs: list,
              noc85: list, noc90: list, t_first: list, t_next: list) -> None:
    """One scene's clicks (see the module docstring), appended to the lists."""
    x, y, _ = interior_point(gt)
    points: list[Point] = [(x, y, True)]
    prev, curve = None, []
    for k in range(max_clicks):
        t = time.perf_counter()
        pred = method(img, points, prev, gt)
        (t_first if k == 0 else t_next).append(time.perf_counter() - t)
        curve.append(iou(pred, gt))
        if k == 0:
            bfs.append(boundary_f(pred, gt))
        if k >= 2 and curve[-1] >= 0.9:
            break
        click = next_click(gt, pred)
        if click is None:
            break
        points.append(click)
        prev = pred
    curve += [curve[-1]] * (max_clicks - len(curve))
    ious.append(curve)
    noc85.append(next((i + 1 for i, v in enumerate(curve) if v >= 0.85), max_clicks))
    noc90.append(next((i + 1 for i, v in enumerate(curve) if v >= 0.9), max_clicks))


def summary(ious: list, bfs: list, noc85: list, noc90: list, t_first: list, t_next: list,
            max_clicks: int) -> dict[str, float]:
    a = np.array(ious)
    return {"miou1": a[:, 0].mean(), "miou3": a[:, min(2, max_clicks - 1)].mean(), "bf1": float(np.mean(bfs)),
            "noc85": float(np.mean(noc85)), "noc90": float(np.mean(noc90)),
            "t_first": float(np.mean(t_first)), "t_next": float(np.mean(t_next)) if t_next else float("nan")}


def realsize_scenes(n: int, seed: int):
    """Issue 23's real-size split (12-MP photos, held-out backgrounds and objects): the clicked
    object is a copy of the repeated small object (backend.training.queries.realsize_query), the one
    bench/similar.py --split realsize queries. A generator, scenes are ~36 MB each."""
    from backend.training.synth import RealSizeGenerator
    from backend.training.queries import realsize_query
    gen = RealSizeGenerator("val")
    for i in range(n):
        sc = gen.scene(seed + i)
        if not any(g == 0 for g in sc.groups):
            continue
        yield sc.image, sc.masks[realsize_query(sc, seed + i)]


def load_scenes(n: int, upscale: float, seed: int = BENCH_SEED) -> list[tuple[np.ndarray, np.ndarray]]:
    gen = SceneGenerator("val")
    out = []
    for i in range(n):
        sc = gen.scene(seed + i)
        if not sc.masks:
            continue
        k = pick_instance(sc, np.random.default_rng([seed, i]))
        img, gt = sc.image, sc.masks[k]
        if upscale != 1:
            size = (round(img.shape[1] * upscale), round(img.shape[0] * upscale))
            img = cv2.resize(img, size, interpolation=cv2.INTER_CUBIC)
            gt = cv2.resize(gt.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
        out.append((img, gt))
    return out


PHOTOS = Path(__file__).with_name("photos.json")


def outline_mask(img: np.ndarray, polygon: list[list[float]], band: int) -> np.ndarray:
    """Ground truth from a hand-drawn outline: the filled polygon, or with band > 0 GrabCut's
    answer when everything farther than `band` px inside is the object and everything farther
    outside is not."""
    h, w = img.shape[:2]
    drawn = np.zeros((h, w), np.uint8)
    cv2.fillPoly(drawn, [np.round(np.asarray(polygon)).astype(np.int32)], 1)
    if band <= 0:
        return drawn > 0
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    trimap = np.full((h, w), cv2.GC_BGD, np.uint8)
    trimap[cv2.dilate(drawn, k) > 0] = cv2.GC_PR_BGD
    trimap[drawn > 0] = cv2.GC_PR_FGD
    trimap[cv2.erode(drawn, k) > 0] = cv2.GC_FGD
    x, y, bw, bh = cv2.boundingRect(cv2.dilate(drawn, k))
    x0, y0, x1, y1 = max(x - 40, 0), max(y - 40, 0), min(x + bw + 40, w), min(y + bh + 40, h)
    sub = trimap[y0:y1, x0:x1].copy()
    cv2.grabCut(np.ascontiguousarray(img[y0:y1, x0:x1]), sub, None, np.zeros((1, 65)), np.zeros((1, 65)),
                5, cv2.GC_INIT_WITH_MASK)
    out = np.zeros((h, w), bool)
    out[y0:y1, x0:x1] = (sub == cv2.GC_FGD) | (sub == cv2.GC_PR_FGD)
    return out


def load_photos(path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(RGB image, ground-truth mask) of every listed photo that is installed."""
    out = []
    for ph in json.loads(path.read_text())["photos"]:
        bgr = cv2.imread(ph["path"], cv2.IMREAD_COLOR)
        if bgr is None:
            print(f"skipped {ph['name']}: {ph['path']} not found (Debian package {ph['package']})", file=sys.stderr)
            continue
        img = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        out.append((img, outline_mask(img, ph["polygon"], ph["band"])))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100, help="validation scenes")
    ap.add_argument("--max-clicks", type=int, default=8)
    ap.add_argument("--weights", type=Path, default=None)
    ap.add_argument("--upscale", type=float, default=1.0, help="resize scenes, e.g. 4 for ~5-9 MP photos")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=BENCH_SEED, help="first scene seed (tune on others)")
    ap.add_argument("--skip", default="", help="comma-separated method names to skip")
    ap.add_argument("--photos", type=Path, nargs="?", const=PHOTOS, default=None,
                    help=f"real photos from this list instead of synthetic scenes (default list: {PHOTOS.name})")
    ap.add_argument("--split", choices=("standard", "realsize"), default="standard",
                    help="realsize: issue 23's 12-MP scenes (seeds from --seed, default 0), the daemon engine "
                         "with and without the small-object probe, paired per scene")
    ap.add_argument("--minutes", type=float, default=None, help="realsize: stop after this long")
    ap.add_argument("--json", type=Path, default=None, help="per-scene IoU curves per method")
    ap.add_argument("--compare", type=Path, default=None,
                    help="other weights for the daemon engine, run on the same scenes; paired differences "
                         "against the first method (--weights, default the shipped file)")
    ap.add_argument("--compare-first", type=Path, default=None,
                    help="also the daemon engine with these weights for clicks without a previous mask (first "
                         "clicks, added objects) and --weights for the rest (backend.segment.ClickSegmenter's "
                         "first), paired like --compare")
    ap.add_argument("--compare-refiner", type=Path, default=None,
                    help="also the daemon engine with these weights for the clicks with a previous mask or with "
                         "several clicks (the refining model, dsn-lite0.pt's role) and the shipped first-click "
                         "model for the rest, paired like --compare")
    ap.add_argument("--device", default=None, help="cpu, cuda, ... (default: the backend's choice)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    if args.split == "realsize":
        return main_realsize(args)

    scenes = load_photos(args.photos) if args.photos else load_scenes(args.n, args.upscale, args.seed)
    if not scenes:
        raise SystemExit("no scenes to measure")
    seg = ClickSegmenter(args.weights, args.device)
    methods: dict[str, Method] = {
        **engine_methods(seg, args),
        "1C-DSN (coarse + zoom-in)": DSNClicks(seg, zoom=True),
        "1C-DSN (whole image only)": DSNClicks(seg, zoom=False),
        "1C-DSN (no previous-mask input)": DSNClicks(seg, use_prev=False),
        "1C-DSN (no guided-filter edges)": DSNClicks(seg, refine_edges=False),
        "GrabCut (box around click)": GrabCutClicks(),
        "GrabCut (GT box, reference)": GrabCutClicks(gt_box=True),
    }
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    px = np.mean([img.shape[0] * img.shape[1] for img, _ in scenes]) / 1e6
    print(f"{len(scenes)} {'real photos' if args.photos else 'held-out scenes'}, mean {px:.2f} MP, max {args.max_clicks} clicks, "
          f"{torch.get_num_threads()} threads")
    print(f"| method | mIoU@1 | mIoU@3 | BF@1 ({BOUNDARY_TOL} px) | NoC@85 | NoC@90 | s first click | s next click |")
    print("|---|---|---|---|---|---|---|---|")
    curves: dict[str, list] = {}
    for name, m in methods.items():
        if any(s in name for s in skip):
            continue
        r = run(m, scenes, args.max_clicks)
        curves[name] = r.pop("iou")
        print(f"| {name} | {r['miou1']:.3f} | {r['miou3']:.3f} | {r['bf1']:.3f} | {r['noc85']:.2f} | "
              f"{r['noc90']:.2f} | {r['t_first']:.3f} | {r['t_next']:.3f} |", flush=True)
    print_paired(curves, [k for k in curves if k.startswith(COMPARED) or k in BEFORE], len(scenes))
    if args.json:
        args.json.write_text(json.dumps({"split": "photos" if args.photos else "standard", "seed": args.seed,
                                         "scenes": len(scenes), "methods": {k: {"iou": v} for k, v in curves.items()}}) + "\n")


COMPARED = "1C-DSN (daemon engine), --compare weights"
NO_COLOUR = "1C-DSN (daemon engine, no colour edges: before the twenty-ninth session)"
NO_PIECES = "1C-DSN (daemon engine, no wider look for other pieces: before the thirty-first session)"
ANYWHERE = "1C-DSN (daemon engine, a correction's changes kept anywhere: before the thirty-second session)"
NOT_APART = "1C-DSN (daemon engine, no bigger pieces lying apart: before the thirty-third session)"
SURE_APART = "1C-DSN (daemon engine, pieces lying apart only where the model is sure: before the thirty-fourth session)"
BEFORE = (NO_COLOUR, NO_PIECES, ANYWHERE, NOT_APART, SURE_APART)   # the engine without one later step each


def engine_methods(seg: ClickSegmenter, args: argparse.Namespace) -> dict[str, Method]:
    """The daemon's select engine as shipped, the --compare weights, and the engine without each step
    that came after it (the rows both splits pair with the engine)."""
    return {
        "1C-DSN (daemon engine: clicks as the plug-ins send them)": EngineClicks(seg),
        **compared(args),
        "1C-DSN (daemon engine, no small-object probe: before issue 23)": EngineClicks(seg, small_probe=False),
        NO_COLOUR: EngineClicks(seg, colour_edges=False),
        NO_PIECES: EngineClicks(seg, pieces=False),
        ANYWHERE: EngineClicks(seg, away_share=None, hole_share=None),
        NOT_APART: EngineClicks(seg, pieces_apart=False),
        SURE_APART: EngineClicks(seg, pieces_unsure_apart=False),
    }


def compared(args: argparse.Namespace) -> dict[str, Method]:
    """The daemon engine with the --compare weights, with the --compare-first weights for its first
    clicks, and with the --compare-refiner weights for the rest, if given."""
    out: dict[str, Method] = {}
    if args.compare is not None:
        out[f"{COMPARED} {args.compare.name}"] = EngineClicks(ClickSegmenter(args.compare, args.device))
    if args.compare_first is not None:
        out[f"{COMPARED} {(args.weights or weights.path('dsn')).name}, first clicks {args.compare_first.name}"] = \
            EngineClicks(ClickSegmenter(args.weights, args.device, first=args.compare_first))
    if args.compare_refiner is not None:
        out[f"{COMPARED} {args.compare_refiner.name} refining, first clicks the shipped first-click model"] = \
            EngineClicks(ClickSegmenter(args.compare_refiner, args.device, first=True))
    return out


def print_paired(curves: dict[str, list], others: list[str], n: int, first_minus_other: bool = False) -> None:
    """Per-scene paired differences after 1 and 3 clicks (the last click there is): other minus the
    first method, or the first minus each other with `first_minus_other`."""
    from bench.common import paired
    first = next(iter(curves), None)
    for other in others:
        if other == first:
            continue
        a, b = (first, other) if first_minus_other else (other, first)
        for k, lab in ((0, "@1"), (2, "@3")):
            k = min(k, len(curves[first][0]) - 1)
            d, se = paired([c[k] for c in curves[b]], [c[k] for c in curves[a]])
            print(f"paired: {a} minus {b}, mIoU{lab}: {d:+.4f} (s.e. {se:.4f}, {n} scenes)")


def main_realsize(args: argparse.Namespace) -> None:
    """Issue 23's split, scene by scene (12-MP scenes do not all fit in memory): every method on
    each scene before the next; paired differences against the first method."""
    seg = ClickSegmenter(args.weights, args.device)
    methods: dict[str, Method] = engine_methods(seg, args)   # GrabCut is left out: ~80 s per click on a 12-MP photo
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    methods = {k: v for k, v in methods.items() if not any(s in k for s in skip)}
    seed = 0 if args.seed == BENCH_SEED else args.seed
    acc = {k: ([], [], [], [], [], []) for k in methods}
    start, n = time.time(), 0
    for img, gt in realsize_scenes(args.n, seed):
        if args.minutes is not None and time.time() - start > args.minutes * 60:
            break
        for name, m in methods.items():
            iou_curve(m, img, gt, args.max_clicks, *acc[name])
        n += 1
        if n % 10 == 0:
            print(f"{n} scenes, {time.time() - start:.0f} s", flush=True)
    print(f"{n} real-size held-out scenes (seeds {seed}-{seed + n - 1}, 12 MP), max {args.max_clicks} clicks, "
          f"{torch.get_num_threads()} threads")
    print(f"| method | mIoU@1 | mIoU@3 | BF@1 ({BOUNDARY_TOL} px) | NoC@85 | NoC@90 | s first click | s next click |")
    print("|---|---|---|---|---|---|---|---|")
    for name in methods:
        r = summary(*acc[name], args.max_clicks)
        print(f"| {name} | {r['miou1']:.3f} | {r['miou3']:.3f} | {r['bf1']:.3f} | {r['noc85']:.2f} | "
              f"{r['noc90']:.2f} | {r['t_first']:.3f} | {r['t_next']:.3f} |")
    curves = {k: acc[k][0] for k in methods}
    print_paired(curves, [k for k in methods if not k.startswith(COMPARED)], n, first_minus_other=True)
    print_paired(curves, [k for k in methods if k.startswith(COMPARED)], n)
    if args.json:
        args.json.write_text(json.dumps({"seed": seed, "scenes": n, "methods": {
            k: {"iou": acc[k][0], "t_first": acc[k][4]} for k in methods}}) + "\n")


if __name__ == "__main__":
    main()
