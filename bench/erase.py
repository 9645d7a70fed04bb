"""Erase benchmark: what a viewer sees, on held-out scenes with a known clean photo, and the cost.

    python3 bench/erase.py                        # val and test, every method, cost (~1 h on 2 cores)
    python3 bench/erase.py --split val            # choose on val ...
    python3 bench/erase.py --split test           # ... report test
    python3 bench/erase.py --limit 20 --skip cost # a quick look
    python3 bench/erase.py --skip quality         # only the cost

Scenes: bench/erase_scenes.py (real photos at native resolution and objects that training and
tuning never read; 13 val photos and 14 test photos × 9 scenes; objects 0.5–15 % of the scene,
soft edges, half of them with soft cast shadows). Metrics: bench/erase_metrics.py (PSNR and SSIM
in the true hole, texture kept, object shows through, seam; PSNR over object + shadow on the
scenes with shadows).

Every method runs through Pipeline.erase (context crops, feathered paste), all in the same run on
the same scenes. Our engines get what a user's selection gives them, the objects' masks (alpha
>= 0.5), and grow them with the pipeline's default rule; the baselines get the true hole (the
objects grown by 7 px), and PatchMatch once more with our grown hole (the same mask our engine
fills). Paired differences against `builtin` come with their standard errors.
"""
from __future__ import annotations

import sys
from pathlib import Path

# the repo root instead of bench/ first on the path: bench/select.py would shadow the stdlib `select`
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from typing import Callable, NamedTuple, Optional  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from backend import engines  # noqa: E402
from backend.cache import ImageCache  # noqa: E402
from backend.engines import Engine, Progress  # noqa: E402
from backend.erase_maths import grow_hole  # noqa: E402
from backend.pipeline import Pipeline, hole_to_fill  # noqa: E402
from bench.common import med, table  # noqa: E402
from bench.erase_metrics import measure, psnr  # noqa: E402
from bench.erase_scenes import _object, photo, scenes, true_hole  # noqa: E402

Fill = Callable[[np.ndarray, np.ndarray], np.ndarray]


class FnEngine(Engine):
    """A bare fill function as an erase engine (benchmark baselines only)."""

    ops = frozenset({"erase"})

    def __init__(self, name: str, fn: Fill):
        self.name, self.fn = name, fn

    def erase(self, rgb: np.ndarray, hole: np.ndarray, progress: Progress) -> np.ndarray:
        return self.fn(rgb, hole)


def patchmatch_alone(rgb: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """PyPatchMatch alone: full resolution, patch radius 3 (its examples' setting)."""
    from patchmatch import patch_match as pm
    pm.set_random_seed(1)
    return pm.inpaint(rgb, hole.astype(np.uint8) * 255, patch_size=3)


def previous_builtin(rgb: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """The built-in engine before issue 22: the mean of three small PatchMatch fills (now its guide)."""
    from backend.engines.builtin import _patchmatch, ensemble_fill
    return ensemble_fill(_patchmatch(), rgb, hole)


BASELINES: dict[str, Fill] = {
    "opencv-telea": lambda rgb, hole: cv2.inpaint(rgb, hole.astype(np.uint8), 5, cv2.INPAINT_TELEA),
    "patchmatch": patchmatch_alone,
    "previous-builtin": previous_builtin,
}


class Method(NamedTuple):
    label: str          # the row's name
    engine: str         # the erase engine
    true_hole: bool     # given the true hole (no growth); else the objects' masks, default growth


def register_baselines() -> None:
    for name, fn in BASELINES.items():
        engines.REGISTRY.setdefault(name, "bench")
        engines._built[name] = FnEngine(name, fn)


def methods(only: Optional[list[str]] = None) -> list[Method]:
    ours = [n for n in ("builtin", "lama") if engines.get(n).status() == "ready"]
    out = [Method(n, n, False) for n in ours] + [
        Method("patchmatch (true hole)", "patchmatch", True),
        Method("patchmatch (our grown hole)", "patchmatch", False),
        Method("opencv-telea (true hole)", "opencv-telea", True),
        Method("previous builtin (3-fill mean)", "previous-builtin", False),
    ]
    return [m for m in out if not only or m.engine in only or m.label in only]


def rgba(rgb: np.ndarray) -> np.ndarray:
    return np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])


def erase(pipe: Pipeline, sc_photo: np.ndarray, mask: np.ndarray, engine: str,
          dilation: Optional[int] = None) -> np.ndarray:
    """The full photo after Pipeline.erase (RGB)."""
    entry = pipe.entry(rgba(sc_photo))
    (x, y, w, h), patch, _ = pipe.erase(entry, mask.view(np.uint8) * np.uint8(255), engine, dilation)
    out = sc_photo.copy()
    out[y:y + h, x:x + w] = patch[..., :3]
    return out


# ---------------------------------------------------------------- quality
def quality(split: str, ms: list[Method], per_photo: int, limit: Optional[int], pipe: Pipeline
            ) -> tuple[list[list[str]], dict]:
    sc = scenes(split, per_photo, limit)
    rows: dict[str, list[dict[str, float]]] = {m.label: [] for m in ms}
    outputs: dict[str, list[np.ndarray]] = {m.label: [] for m in ms}
    for i, scene in enumerate(sc):
        th = true_hole(scene)
        foot = (scene.footprint | th) if scene.shadowed else None
        for m in ms:
            start = time.perf_counter()
            out = erase(pipe, scene.photo, th if m.true_hole else scene.mask, m.engine, 0 if m.true_hole else None)
            r = measure(out, scene.clean, scene.photo, th, scene.mask, foot)
            r["seconds"] = time.perf_counter() - start
            rows[m.label].append(r)
            outputs[m.label].append(out if i < 64 else None)
        if (i + 1) % 10 == 0:
            print(f"  {split}: {i + 1} of {len(sc)} scenes", flush=True)
    return summary_table(split, len(sc), rows), {"scenes": sc, "outputs": outputs, "rows": rows}


def summary_table(split: str, n: int, rows: dict[str, list[dict[str, float]]]) -> list[list[str]]:
    out = [[f"{split} ({n} scenes)", "PSNR in hole", "Δ vs builtin (s.e.)", "SSIM", "texture kept (median)",
            "object shows through", "seam", "PSNR object+shadow", "s/scene"]]
    ref = rows.get("builtin")
    for label, rs in rows.items():
        g = lambda k: np.array([r[k] for r in rs if k in r])  # noqa: E731
        delta = ""
        if ref is not None and label != "builtin":
            d = np.array([a["psnr"] - b["psnr"] for a, b in zip(rs, ref)])
            delta = f"{d.mean():+.2f} ({d.std(ddof=1) / len(d) ** 0.5:.2f})" if len(d) > 1 else f"{d.mean():+.2f}"
        shadow = g("psnr_shadow")
        out.append([label, f"{g('psnr').mean():.2f}", delta, f"{g('ssim').mean():.4f}",
                    f"{np.median(g('texture')):.2f}", f"{100 * g('ghost').mean():.1f} %", f"{g('seam').mean():.2f}",
                    f"{shadow.mean():.2f}" if shadow.size else "-", f"{g('seconds').mean():.2f}"])
    return out


def contact_sheet(res: dict, labels: list[str], path: Path, n: int = 8, cell: int = 256) -> None:
    """At 100 %: one row per scene (the most textured first), a cell×cell crop around its biggest
    object: the input with the true hole outlined, the clean photo, then each method."""
    sc = res["scenes"]
    order = sorted((i for i in range(len(sc)) if res["outputs"][labels[0]][i] is not None),
                   key=lambda i: -sc[i].busy)[:n]
    rows = []
    for i in order:
        scene = sc[i]
        n_parts, lab, stats, cents = cv2.connectedComponentsWithStats(scene.objects.astype(np.uint8))
        big = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        cx, cy = (int(v) for v in cents[big])
        h, w = scene.clean.shape[:2]
        x0, y0 = min(max(0, cx - cell // 2), w - cell), min(max(0, cy - cell // 2), h - cell)
        marked = scene.photo.copy()
        contours, _ = cv2.findContours(true_hole(scene).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(marked, contours, -1, (255, 0, 255), 1)
        tiles = [marked, scene.clean] + [res["outputs"][lb][i] for lb in labels]
        rows.append(np.hstack([np.pad(t[y0:y0 + cell, x0:x0 + cell], ((2, 2), (2, 2), (0, 0)), constant_values=255)
                               for t in tiles]))
    header = np.full((22, rows[0].shape[1], 3), 255, np.uint8)
    for j, label in enumerate(["input + true hole", "clean"] + labels):
        cv2.putText(header, label[:34], (j * (cell + 4) + 4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1,
                    cv2.LINE_AA)
    sheet = np.vstack([header] + rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
        raise SystemExit(f"could not write {path}")
    print(f"  contact sheet: {path}")


# ---------------------------------------------------------------- mask growth and shadows
def dilation_sweep(engine: str, split: str, per_photo: int, limit: Optional[int], pipe: Pipeline) -> list[list[str]]:
    """On the scenes with shadows: PSNR over a fixed region (the objects' and shadows' visible
    footprint grown by 48 px), so growth that leaves shadows and growth that eats the
    surroundings both lose."""
    rows = [[f"hole growth ({split}, scenes with shadows)", "PSNR around objects", "footprint left",
             "hole/footprint area"]]
    sc = [s for s in scenes(split, per_photo, limit) if s.shadowed]
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (97, 97))
    for setting in [None, 0, 8, 16, (0.03, 8), (0.06, 8), (0.10, 8), (0.15, 8)]:
        p, left, ratio = [], [], []
        for scene in sc:
            region = cv2.dilate(scene.footprint.astype(np.uint8), k) > 0
            hole = (grow_hole(scene.mask, None, *setting) if isinstance(setting, tuple)
                    else hole_to_fill(scene.photo, scene.mask, setting))
            out = erase(pipe, scene.photo, hole, engine, 0)
            p.append(psnr(out, scene.clean, region))
            left.append((scene.footprint & ~hole).sum() / scene.footprint.sum())
            ratio.append(hole.sum() / scene.footprint.sum())
        label = ("default (growth + cast shadows)" if setting is None else
                 f"{100 * setting[0]:.0f} % + {setting[1]} px" if isinstance(setting, tuple) else f"{setting} px")
        rows.append([label, f"{np.mean(p):.2f}", f"{100 * np.mean(left):.1f} %", f"{np.mean(ratio):.2f}"])
        print(f"  growth {label}: {rows[-1][1]} dB", flush=True)
    return rows


# ---------------------------------------------------------------- cost
def _big_scene(width: int, height: int, holes: list[tuple[int, int, int]], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A held-out test photo resized to width×height and a mask of clip-art shaped holes (x, y, area px)."""
    rgb = cv2.resize(photo("Kleiber"), (width, height), interpolation=cv2.INTER_AREA)
    mask = np.zeros((height, width), bool)
    rng = np.random.default_rng(seed)
    for x, y, area in holes:
        _, alpha = _object(rng, "test", area)
        obj = alpha >= 0.5
        h, w = min(obj.shape[0], height - y), min(obj.shape[1], width - x)
        mask[y:y + h, x:x + w] |= obj[:h, :w]
    return rgb, mask


def cost(engine: str, pipe: Pipeline, runs: int) -> list[list[str]]:
    rows = [[f"cost ({engine})", "pixels", "hole", "wall s (median)", "CPU s", "peak numpy MB", "× small (wall)"]]
    small_holes = [(300, 200, 6000), (800, 500, 4000)]
    cases = {
        "small photo 1280×800, 2 small holes": (1280, 800, small_holes),
        "24 MP 6000×4000, the same 2 holes": (6000, 4000, [(3000 + x, 2000 + y, a) for x, y, a in small_holes]),
        "12 MP 4240×2832, one 5 % hole": (4240, 2832, [(1200, 700, int(0.05 * 4240 * 2832))]),
    }
    base = None
    for label, (w, h, holes) in cases.items():
        rgb, mask = _big_scene(w, h, holes, 7)
        entry = pipe.entry(rgba(rgb))
        m255 = mask.view(np.uint8) * np.uint8(255)
        if base is None:
            pipe.erase(entry, m255, engine)     # warm-up: imports, first native calls
        times, cpu = [], []
        for _ in range(runs):
            tracemalloc.start()
            start, start_cpu = time.perf_counter(), time.process_time()
            pipe.erase(entry, m255, engine)
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
            peak = tracemalloc.get_traced_memory()[1] / 2 ** 20
            tracemalloc.stop()
        t = med(times)
        base = base or t
        rows.append([label, f"{w * h / 1e6:.1f} MP", f"{100 * mask.mean():.2f} %", f"{t:.2f}", f"{med(cpu):.2f}",
                     f"{peak:.0f}", f"{t / base:.2f}"])
        print(f"  {label}: {t:.2f} s", flush=True)
        pipe.cache = ImageCache()
    return rows


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", choices=["val", "test", "both"], default="both")
    p.add_argument("--per-photo", type=int, default=9, help="scenes per photo (13 val / 14 test photos)")
    p.add_argument("--limit", type=int, default=None, help="at most this many scenes per split, spread over the photos")
    p.add_argument("--quick", action="store_true", help="--limit 20, one cost run, no growth sweep")
    p.add_argument("--methods", default="", help="comma-separated engines or row labels (default: all)")
    p.add_argument("--out", type=Path, default=Path("/tmp/simpson-bench"), help="contact sheets and per-scene JSON")
    p.add_argument("--sweep-split", choices=["val", "test"], default="val", help="scenes for the growth sweep")
    p.add_argument("--skip", action="append", default=[], choices=["quality", "dilation", "cost"])
    args = p.parse_args(argv)
    limit = 20 if args.quick and args.limit is None else args.limit
    register_baselines()
    ms = methods([m for m in args.methods.split(",") if m])
    pipe = Pipeline()
    import torch
    print(f"methods: {', '.join(m.label for m in ms)}; torch threads {torch.get_num_threads()}, "
          f"cv2 threads {cv2.getNumThreads()}", flush=True)
    out = []
    if "quality" not in args.skip:
        for split in (["val", "test"] if args.split == "both" else [args.split]):
            rows, res = quality(split, ms, args.per_photo, limit, pipe)
            out.append(table(rows))
            print(out[-1], flush=True)
            contact_sheet(res, [m.label for m in ms], args.out / f"erase_sheet_{split}.png")
            per_scene = [{"scene": s.name, "shadowed": s.shadowed, **{m: res["rows"][m][i] for m in res["rows"]}}
                         for i, s in enumerate(res["scenes"])]
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / f"erase_{split}.json").write_text(json.dumps(per_scene, indent=1))
    engine = "builtin" if engines.get("builtin").status() == "ready" else "classic"
    if "dilation" not in args.skip and not args.quick:
        out.append(table(dilation_sweep(engine, args.sweep_split, args.per_photo, limit, pipe)))
    if "cost" not in args.skip:
        out.append(table(cost(engine, pipe, 1 if args.quick else 3)))
    print("\n\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
