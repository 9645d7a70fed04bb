"""LaMa on big photos: the engine's IOPaint Crop strategy against the whole-crop resize it replaced.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/lama_crop.py [--threads 1] [--cases small,2pct,5pct,15pct]

A 12-MP photo (samples/beach.jpg resized to 4000×3000) with made-up holes (ellipses):
  small   five holes of 0.05 % of the photo each (a drink can at this size: ~75×100 px)
  2pct    one hole of 2 % of the photo (~480 × 640 px)
  5pct    one hole of 5 % of the photo (~760 × 1010 px)
  15pct   one hole of 15 % (~1310 × 1750 px: the erase benchmark's largest objects)
Each goes through the pipeline as a request does (hole_to_fill with the default growth, then
context_regions), and each region's crop is filled by
  before  the whole crop shrunk to 1024 px on its long side (the engine until issue 22), and
  crop    backend/engines/lama.py's inpaint_crop: windows around each hole (hole box + 128 px)
          at full resolution when the crop is longer than 800 px, shrunk only beyond 1280 px.
Both run big-lama's generator (backend/models/lama.py, 51 M parameters) with RANDOM weights on
the CPU: this measures cost and the resolution the hole is filled at, not quality (no real
weights here). Printed per case and strategy: network calls, megapixels the network sees
(padded), share of hole pixels filled at full resolution, the coarsest scale any hole pixel is
filled at, and seconds (one run, same process, same threads; ratios are what to read).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])   # the repo, not bench/, first

import argparse  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from backend.engines import lama as engine  # noqa: E402
from backend.models.lama import LamaGenerator, inpaint  # noqa: E402
from backend.erase_maths import context_regions  # noqa: E402
from backend.pipeline import hole_to_fill  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
W, H = 4000, 3000
OLD_SIDE = 1024                      # the engine's WORK_SIDE before the Crop strategy
CASES = {"small": [(0.0005, (600, 2200)), (0.0005, (1500, 900)), (0.0005, (2400, 2500)),
                   (0.0005, (3300, 600)), (0.0005, (3700, 2000))],
         "2pct": [(0.02, (2000, 1500))],
         "5pct": [(0.05, (2000, 1500))],
         "15pct": [(0.15, (2100, 1500))]}


def scene(case: str) -> tuple[np.ndarray, np.ndarray]:
    rgb = cv2.cvtColor(cv2.resize(cv2.imread(str(REPO / "samples" / "beach.jpg")), (W, H),
                                  interpolation=cv2.INTER_CUBIC), cv2.COLOR_BGR2RGB)
    hole = np.zeros((H, W), np.uint8)
    for share, (cx, cy) in CASES[case]:
        b = np.sqrt(share * W * H / np.pi / 0.75)    # half-axes 0.75 b and b: area pi * 0.75 b² = share
        a = 0.75 * b
        cv2.ellipse(hole, (cx, cy), (int(round(a)), int(round(b))), 0, 0, 360, 1, -1)
    return rgb, hole > 0


class Counted:
    """big-lama with random weights, counting calls and the (padded) pixels it sees."""

    def __init__(self, generator: torch.nn.Module):
        self.generator, self.calls, self.pixels = generator, 0, 0

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.pixels += image.shape[-1] * image.shape[-2]
        return inpaint(self.generator, image, mask)


def scales_before(sub: np.ndarray) -> list[tuple[float, int]]:
    return [(min(1.0, OLD_SIDE / max(sub.shape)), int(sub.sum()))]


def scales_crop(sub: np.ndarray) -> list[tuple[float, int]]:
    out = []
    for x0, y0, x1, y1 in engine.windows(sub):
        out.append((min(1.0, engine.RESIZE_LIMIT / max(y1 - y0, x1 - x0)), int(sub[y0:y1, x0:x1].sum())))
    return out


def run(case: str, generator: torch.nn.Module) -> list[list[str]]:
    rgb, hole = scene(case)
    grown = hole_to_fill(rgb, hole, None)
    regions = context_regions(grown, W, H)
    rows = []
    for name in ("before", "crop"):
        fn = Counted(generator)
        scales: list[tuple[float, int]] = []
        start = time.perf_counter()
        for x0, y0, x1, y1 in regions:
            crop, sub = rgb[y0:y1, x0:x1], grown[y0:y1, x0:x1]
            if name == "before":
                engine.run_inpainter(fn, crop, sub, OLD_SIDE)
                scales += scales_before(sub)
            else:
                engine.inpaint_crop(fn, crop, sub)
                scales += scales_crop(sub)
        seconds = time.perf_counter() - start
        total = sum(n for _, n in scales)
        full = sum(n for s, n in scales if s == 1.0)
        crops = " ".join(f"{x1 - x0}×{y1 - y0}" for x0, y0, x1, y1 in regions)
        rows.append([case, f"{100 * grown.sum() / grown.size:.2f} %", crops, name, str(fn.calls),
                     f"{fn.pixels / 1e6:.2f}", f"{100 * full / total:.0f} %", f"{min(s for s, _ in scales):.2f}",
                     f"{seconds:.1f}"])
        print(" | ".join(rows[-1]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cases", default="small,2pct,5pct,15pct")
    ap.add_argument("--tiny", action="store_true", help="a tiny generator, to check this script quickly")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    generator = (LamaGenerator(ngf=8, n_blocks=1) if args.tiny else LamaGenerator()).eval()   # random weights
    with torch.inference_mode():                # warm-up: the first call pays one-off costs
        inpaint(generator, torch.rand(1, 3, 64, 64), torch.ones(1, 1, 64, 64))
    print(f"big-lama, random weights, CPU, {args.threads} thread(s); photo {W}×{H}")
    print("case | grown hole | context crops | strategy | calls | network MP | hole px at full res | "
          "coarsest scale | seconds")
    for case in args.cases.split(","):
        run(case, generator)


if __name__ == "__main__":
    main()
