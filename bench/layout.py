"""The convolutional nets' memory layout on the CPU, paired in one process: channels-last (what the
engines use, backend/device.py: cpu_layout) against PyTorch's default (NCHW).

    python3 bench/layout.py [--rounds 12] [--threads 2] [--lama 1024]

The steps of bench/photo12mp.py on its 12-MP photo (samples/beach.jpg resized to 4380×2738), through
the pipeline in this process (no daemon, no transfer): a first click on a fresh image; a click on
another object with the first mask as the previous one; select similar from the first mask (the
image's matching encoding made), and again (encoded). The nets switched: the one-click models, the
select-similar backbone and the CPN. With --lama SIDE, LaMa too: its generator (big-lama's config with random
weights: the same operations, timing only) inpainting a SIDE×SIDE image with a hole. Each round runs both layouts in turn, the order alternating,
so the machine's drift is paired out: the table gives each layout's median and the median of the
per-round ratios (channels-last / default) with the mean's standard error; then how many mask
pixels differ between the layouts.
"""
from __future__ import annotations

import sys
from pathlib import Path

# the repo root instead of bench/ first on the path: bench/select.py would shadow the stdlib `select`
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import itertools  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from backend import engines, similar as sim  # noqa: E402
from backend.models.lama import LamaGenerator, LamaInpainter  # noqa: E402
from backend.pipeline import Pipeline  # noqa: E402
from bench.common import med, table  # noqa: E402
from bench.photo12mp import SIZE, photo  # noqa: E402

LAYOUTS = {"default": torch.contiguous_format, "channels-last": torch.channels_last}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lama", type=int, default=0, metavar="SIDE", help="also LaMa's generator on SIDE×SIDE (0: not)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rgba, click, other = photo()
    first, second = (*click, True), (*other, True)
    pipe = Pipeline()
    seg = engines.get("dsn").segmenter()
    nets = [seg.model, engines.get("pvm").backbone()]
    nets += [m for m in (getattr(seg.first, "model", None), sim.default_cpn()) if m is not None]
    times: dict[tuple[str, str], list[float]] = {}
    masks: dict[tuple[str, str], np.ndarray] = {}

    def timed(step: str, layout: str, fn):
        start = time.perf_counter()
        out = fn()
        times.setdefault((step, layout), []).append(time.perf_counter() - start)
        masks[(step, layout)] = out[0]
        return out[0]

    lama = None
    if args.lama:
        torch.manual_seed(0)
        lama = LamaInpainter(LamaGenerator()).eval()
        nets.append(lama)
        side = args.lama
        image, hole = torch.rand(1, 3, side, side), torch.zeros(1, 1, side, side)
        hole[..., side // 3:side // 2, side // 3:side // 2] = 1

    images = itertools.count()

    def run(layout: str) -> None:
        for net in nets:
            net.to(memory_format=LAYOUTS[layout])
        if lama is not None:
            with torch.inference_mode():
                timed(f"LaMa generator, {args.lama}×{args.lama} (random weights)", layout,
                      lambda: ((lama(image, hole)[0, 0] * 255).round().numpy(),))
        n = next(images)
        rgba[0, 0, :3] = (n // 65536 % 256, n // 256 % 256, n % 256)   # a new image each time: nothing cached
        entry = pipe.entry(rgba.copy())
        _ = entry.rgb   # made once per image, before the click, as in the daemon
        mask = timed("first click", layout, lambda: pipe.select(entry, [first]))
        timed("click on another object", layout, lambda: pipe.select(entry, [second], mask))
        timed("select similar, first (encodes for matching)", layout, lambda: pipe.similar(entry, [first], mask))
        timed("select similar again, image encoded", layout, lambda: pipe.similar(entry, [first], mask))

    names = list(LAYOUTS)
    for layout in names:   # warm-up, not counted
        run(layout)
    times.clear()
    for i in range(args.rounds):
        for layout in (names if i % 2 == 0 else names[::-1]):
            run(layout)
    rows = [["step", *(f"{n} s (median)" for n in names), "ratio (median)", "ratio mean ± s.e.", "pixels that differ"]]
    for step in dict.fromkeys(s for s, _ in times):
        a, b = (np.asarray(times[(step, n)]) for n in names)
        r = b / a
        differ = int((masks[(step, names[0])] != masks[(step, names[1])]).sum())
        rows.append([step, f"{med(list(a)):.3f}", f"{med(list(b)):.3f}", f"{np.median(r):.3f}",
                     f"{r.mean():.3f} ± {r.std(ddof=1) / np.sqrt(r.size):.3f}",
                     f"{differ} of {int((masks[(step, names[0])] > 0).sum())}"])
    print(f"{SIZE[0]}x{SIZE[1]} samples/beach.jpg, {args.rounds} rounds, {args.threads} threads, "
          f"ratio = {names[1]} / {names[0]}; pixels: the last round's masks")
    print(table(rows))


if __name__ == "__main__":
    main()
