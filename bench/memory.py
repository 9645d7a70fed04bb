"""Daemon memory with several 12-MP photos in its cache, as a user works through them.

    python3 bench/memory.py [--images 8] [--pause 0] [--no-similar] [--no-erase]

A fresh daemon (`python -m backend serve`, default engines, warm-up included) gets, through
the shared client (pyzmq), for each of --images different 12-MP photos (samples/beach.jpg
resized to 4380×2738, turned and shifted so that every photo differs): a first click, select
similar from its mask, and an erase of the similar mask, then --pause seconds (a user looking
at the result; after a second without requests the daemon gives freed memory back to the
system, so a pause lowers what stays resident). After each photo it prints the
daemon's resident memory now (VmRSS) and at its peak so far (VmHWM), and the cache as the
daemon reports it in `info` (images, bytes counted against its budget: pixels, the engines'
RGB copy and what the models derived). Issue 26's target: peak RSS <= 1.2 GB with four 12-MP
photos cached (the cache holds at most four).
"""
from __future__ import annotations

import sys
from pathlib import Path

# the repo root instead of bench/ first on the path: bench/select.py would shadow the stdlib `select`
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from bench.common import REPO, BenchDaemon, table  # noqa: E402
from simpson_client import Client, Image  # noqa: E402

SIZE = (4380, 2738)
CLICK = (1104, 726)   # the drink can in samples/beach.jpg


def vm(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line[:5]] = int(line.split()[1]) / 1024
    return out["VmRSS"], out["VmHWM"]


def photos(n: int) -> list[tuple[np.ndarray, tuple[float, float]]]:
    """n different 12-MP RGBA photos and the click on the can in each."""
    bgr = cv2.imread(str(REPO / "samples/beach.jpg"))
    base = cv2.cvtColor(cv2.resize(bgr, SIZE, interpolation=cv2.INTER_CUBIC), cv2.COLOR_BGR2RGBA)
    sx, sy = SIZE[0] / bgr.shape[1], SIZE[1] / bgr.shape[0]
    out = []
    for i in range(n):
        shift = 37 * i
        img = np.roll(base, shift, axis=1)          # the same scene, moved: a new image for the cache
        img[..., :3] = np.clip(img[..., :3].astype(np.int16) + (i % 5) - 2, 0, 255).astype(np.uint8)
        out.append((np.ascontiguousarray(img), ((CLICK[0] * sx + shift) % SIZE[0], CLICK[1] * sy)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--pause", type=float, default=0.0, help="seconds between photos")
    ap.add_argument("--no-similar", action="store_true")
    ap.add_argument("--no-erase", action="store_true")
    args = ap.parse_args()
    daemon = BenchDaemon()
    try:
        client = Client(daemon.settings("pyzmq"))
        time.sleep(5.0)   # the start-up warm-up, as while a user opens a photo
        info = client.info()
        rss, hwm = vm(daemon.proc.pid)
        rows = [["after", "RSS MB", "peak RSS MB", "cached images", "cache MB (budget)", "seconds"],
                ["start-up + warm-up", f"{rss:.0f}", f"{hwm:.0f}", str(info["cache"]["images"]),
                 f"{info['cache']['bytes'] / 1e6:.0f}", ""]]
        for i, (rgba, click) in enumerate(photos(args.images)):
            start = time.perf_counter()
            img = Image(SIZE[0], SIZE[1], rgba.tobytes(), "rgba8")
            mask = client.select(img, [(*click, True)])
            steps = "select"
            if not args.no_similar:
                mask = client.similar(img, mask=mask).mask
                steps += " + similar"
            if not args.no_erase:
                client.erase(img, mask)
                steps += " + erase"
            seconds = time.perf_counter() - start
            del img
            time.sleep(args.pause)
            cache = client.info()["cache"]
            rss, hwm = vm(daemon.proc.pid)
            rows.append([f"photo {i + 1}: {steps}", f"{rss:.0f}", f"{hwm:.0f}", str(cache["images"]),
                         f"{cache['bytes'] / 1e6:.0f}", f"{seconds:.1f}"])
            print("  ".join(rows[-1]), flush=True)
        print(f"{args.images} different {SIZE[0]}x{SIZE[1]} ({SIZE[0] * SIZE[1] / 1e6:.1f} MP) photos, engines: "
              f"select {info['defaults']['select']}, similar {info['defaults']['similar']}, "
              f"erase {info['defaults']['erase']}; {args.pause:g} s between photos; target: peak RSS <= 1200 MB")
        print(table(rows))
    finally:
        daemon.stop()


if __name__ == "__main__":
    main()
