"""Erase benchmark: quality on scenes with a known clean photo, mask dilation, big-photo cost.

    python3 bench/erase.py                  # everything (~11 min on 2 busy cores)
    python3 bench/erase.py --quick          # fewer scenes, no dilation sweep
    python3 bench/erase.py --out DIR        # where the contact sheet goes

Every method runs through Pipeline.erase (grow_hole, context_regions, blend), so they differ
only in how a crop's hole is filled. PSNR and SSIM are measured inside the grown hole against
the clean photo. Baselines: OpenCV Telea and NS (radius 5), PatchMatch alone (PyPI PyPatchMatch,
patch radius 3, full resolution), then our engines; LaMa when its weights are installed.
"""
from __future__ import annotations

import sys
from pathlib import Path

# the repo root instead of bench/ first on the path: bench/select.py would shadow the stdlib `select`
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from typing import Callable, Optional  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from backend import engines  # noqa: E402
from backend.cache import ImageCache  # noqa: E402
from backend.engines import Engine, Progress  # noqa: E402
from backend.pipeline import MAX_AUTO_DILATION, Pipeline, grow_hole  # noqa: E402
from bench.common import med, table  # noqa: E402
from bench.erase_scenes import Scene, make_scene, photo, scenes  # noqa: E402

Fill = Callable[[np.ndarray, np.ndarray], np.ndarray]


class FnEngine(Engine):
    """A bare fill function as an erase engine (benchmark baselines only)."""

    ops = frozenset({"erase"})

    def __init__(self, name: str, fn: Fill):
        self.name, self.fn = name, fn

    def erase(self, rgb: np.ndarray, hole: np.ndarray, progress: Progress) -> np.ndarray:
        return self.fn(rgb, hole)


def patchmatch_alone(rgb: np.ndarray, hole: np.ndarray) -> np.ndarray:
    from patchmatch import patch_match as pm
    pm.set_random_seed(1)
    return pm.inpaint(rgb, hole.astype(np.uint8) * 255, patch_size=3)


BASELINES: dict[str, Fill] = {
    "opencv-telea": lambda rgb, hole: cv2.inpaint(rgb, hole.astype(np.uint8), 5, cv2.INPAINT_TELEA),
    "opencv-ns": lambda rgb, hole: cv2.inpaint(rgb, hole.astype(np.uint8), 5, cv2.INPAINT_NS),
    "patchmatch": patchmatch_alone,
}


def register_baselines() -> None:
    for name, fn in BASELINES.items():
        engines.REGISTRY.setdefault(name, "bench")
        engines._built[name] = FnEngine(name, fn)


def methods() -> list[str]:
    names = list(BASELINES) + [n for n in engines.PREFERENCE["erase"] if n != "classic"]
    return [n for n in dict.fromkeys(names) if engines.get(n).status() == "ready"]


# ---------------------------------------------------------------- metrics
def psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    d = a[where].astype(np.float64) - b[where]
    return float(10 * np.log10(255.0 ** 2 / max(1e-10, (d ** 2).mean())))


def ssim(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    """Mean SSIM (grey, Gaussian σ 1.5) over the pixels in `where`."""
    x = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY).astype(np.float64)
    y = cv2.cvtColor(b, cv2.COLOR_RGB2GRAY).astype(np.float64)
    g = lambda z: cv2.GaussianBlur(z, (11, 11), 1.5)  # noqa: E731
    mx, my = g(x), g(y)
    vx, vy, cxy = g(x * x) - mx * mx, g(y * y) - my * my, g(x * y) - mx * my
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    m = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(m[where].mean())


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


# ---------------------------------------------------------------- parts
def quality(split: str, names: list[str], per_photo: int, pipe: Pipeline) -> tuple[list[list[str]], dict]:
    rows = [[f"{split}: method", "PSNR in hole", "SSIM in hole", "s/scene"]]
    outputs: dict[str, list[np.ndarray]] = {n: [] for n in names}
    sc = scenes(split, per_photo)
    for name in names:
        p, s, t = [], [], []
        for scene in sc:
            start = time.perf_counter()
            out = erase(pipe, scene.photo, scene.mask, name)
            t.append(time.perf_counter() - start)
            hole = grow_hole(scene.mask, None)
            p.append(psnr(out, scene.clean, hole))
            s.append(ssim(out, scene.clean, hole))
            outputs[name].append(out)
        rows.append([name, f"{np.mean(p):.2f}", f"{np.mean(s):.4f}", f"{np.mean(t):.2f}"])
        print(f"  {split} {name}: {rows[-1][1]} dB", flush=True)
    return rows, {"scenes": sc, "outputs": outputs}


def grow_scaled(mask: np.ndarray, fraction: float, base: int = 2) -> np.ndarray:
    """grow_hole's automatic rule with other constants: per object, fraction × its size + base px
    (at least 3, at most MAX_AUTO_DILATION)."""
    out = mask.copy()
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    for i in range(1, n):
        x, y, bw, bh = (int(v) for v in stats[i, :4])
        r = int(min(MAX_AUTO_DILATION, max(3, round(fraction * max(bw, bh)) + base)))
        x0, y0 = max(0, x - r), max(0, y - r)
        part = (labels[y0:y + bh + r, x0:x + bw + r] == i).astype(np.uint8)
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        out[y0:y + bh + r, x0:x + bw + r] |= cv2.dilate(part, k) > 0
    return out


def hole_for(scene: Scene, setting: object) -> np.ndarray:
    """The grown hole for a sweep setting: int px, None (grow_hole's auto) or (fraction, base px)."""
    if isinstance(setting, tuple):
        return grow_scaled(scene.mask, *setting)
    return grow_hole(scene.mask, setting)  # type: ignore[arg-type]


def dilation_sweep(engine: str, split: str, per_photo: int, pipe: Pipeline) -> list[list[str]]:
    """PSNR against the clean photo over a fixed region (the objects' and shadows' visible
    footprint grown by 48 px), so settings that leave halos or shadows and settings that erase
    too much both lose."""
    rows = [[f"hole ({split})", "PSNR around objects", "footprint left", "hole/footprint area"]]
    sc = scenes(split, per_photo)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (97, 97))
    for setting in [0, 4, 8, 12, 16, 24, None, (0.05, 2), (0.07, 2), (0.10, 2), (0.03, 8), (0.02, 10)]:
        p, left, ratio = [], [], []
        for scene in sc:
            region = cv2.dilate(scene.footprint.astype(np.uint8), k) > 0
            hole = hole_for(scene, setting)
            out = erase(pipe, scene.photo, hole, engine, 0)
            p.append(psnr(out, scene.clean, region))
            left.append((scene.footprint & ~hole).sum() / scene.footprint.sum())
            ratio.append(hole.sum() / scene.footprint.sum())
        label = ("auto (grow_hole: 3 % + 2 px)" if setting is None else
                 f"auto {100 * setting[0]:.0f} % + {setting[1]} px" if isinstance(setting, tuple)
                 else f"{setting} px")
        rows.append([label, f"{np.mean(p):.2f}", f"{100 * np.mean(left):.1f} %", f"{np.mean(ratio):.2f}"])
        print(f"  hole {label}: {rows[-1][1]} dB", flush=True)
    return rows


def contact_sheet(res: dict, names: list[str], path: Path, n: int = 6, cell: int = 300) -> None:
    """One row per scene: the photo (mask outlined), the clean photo, then each method; cropped
    around the first object."""
    rows = []
    for i, scene in enumerate(res["scenes"][:n]):
        n_parts, labels, stats, _ = cv2.connectedComponentsWithStats(scene.footprint.astype(np.uint8))
        biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        ys, xs = np.nonzero(labels == biggest)
        cy, cx, half = int(ys.mean()), int(xs.mean()), int(max(np.ptp(ys), np.ptp(xs)) * 0.8) + 40
        y0, x0 = max(0, cy - half), max(0, cx - half)
        y1, x1 = min(scene.clean.shape[0], cy + half), min(scene.clean.shape[1], cx + half)
        marked = scene.photo.copy()
        contours, _ = cv2.findContours(grow_hole(scene.mask, None).astype(np.uint8), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(marked, contours, -1, (255, 0, 255), 2)
        tiles = [marked, scene.clean] + [res["outputs"][nm][i] for nm in names]
        row = [cv2.resize(np.ascontiguousarray(t[y0:y1, x0:x1]), (cell, cell), interpolation=cv2.INTER_AREA)
               for t in tiles]
        rows.append(np.hstack(row))
    header = np.full((28, rows[0].shape[1], 3), 255, np.uint8)
    for j, label in enumerate(["input + hole", "clean"] + names):
        cv2.putText(header, label, (j * cell + 6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    sheet = np.vstack([header] + rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
        raise SystemExit(f"could not write {path}")
    print(f"  contact sheet: {path}")


def _big_scene(width: int, height: int, holes: list[tuple[int, int, int]], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A photo of width×height (Volna, resized) and a mask of clip-art shaped holes (x, y, side)."""
    rgb = cv2.resize(photo("Volna", 5120), (width, height), interpolation=cv2.INTER_CUBIC)
    mask = np.zeros((height, width), bool)
    for i, (x, y, side) in enumerate(holes):
        obj = make_scene("Volna", seed + i, n_objects=1, size=(0.5, 0.5), long_side=2 * side).mask
        ys, xs = np.nonzero(obj)
        obj = obj[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        mask[y:y + obj.shape[0], x:x + obj.shape[1]] |= obj
    return rgb, mask


def cost(engine: str, pipe: Pipeline, runs: int) -> list[list[str]]:
    rows = [[f"cost ({engine})", "pixels", "hole", "wall s (median)", "CPU s", "peak numpy MB", "× small (wall)"]]
    small_holes = [(300, 200, 100), (800, 500, 80)]
    cases = {
        "small photo 1280×800, 2 small holes": (1280, 800, small_holes),
        "24 MP 6000×4000, the same 2 holes": (6000, 4000, [(3000 + x, 2000 + y, s) for x, y, s in small_holes]),
        "12 MP 4240×2832, one 5 % hole": (4240, 2832, [(1500, 900, 1000)]),
    }
    base = None
    for label, (w, h, holes) in cases.items():
        rgb, mask = _big_scene(w, h, holes, 7)
        if "5 %" in label:   # scale the object until its mask is about 5 % of the photo
            side = int(1000 * (0.05 * w * h / mask.sum()) ** 0.5)
            rgb, mask = _big_scene(w, h, [(1500, 900, side)], 7)
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
    p.add_argument("--quick", action="store_true", help="one scene per photo, no dilation sweep")
    p.add_argument("--per-photo", type=int, default=2, help="scenes per photo (6 photos per split)")
    p.add_argument("--out", type=Path, default=Path("/tmp/simpson-bench"))
    p.add_argument("--sweep-split", choices=["val", "test"], default="val", help="scenes for the dilation sweep")
    p.add_argument("--skip", action="append", default=[], choices=["quality", "dilation", "cost"])
    args = p.parse_args(argv)
    per_photo = 1 if args.quick else args.per_photo
    register_baselines()
    names = methods()
    builtin = "builtin" if "builtin" in names else "classic"   # the engine for the sweep and the cost
    pipe = Pipeline()
    import torch
    print(f"methods: {', '.join(names)}; torch threads {torch.get_num_threads()}, cv2 threads {cv2.getNumThreads()}")
    out = []
    if "quality" not in args.skip:
        for split in ("val", "test"):
            rows, res = quality(split, names, per_photo, pipe)
            out.append(table(rows))
            if split == "test":
                contact_sheet(res, names, args.out / "erase_sheet.png")
    if "dilation" not in args.skip and not args.quick:
        out.append(table(dilation_sweep(builtin, args.sweep_split, per_photo, pipe)))
    if "cost" not in args.skip:
        out.append(table(cost(builtin, pipe, 1 if args.quick else 3)))
    print("\n\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
