"""The Krita plug-in's layer work per click on a 12-MP layer, now against the code before, in one run.

    bash tools/editors/in-root.sh python3 bench/krita_pixels.py [--rounds 10] [--side 4380x2738]

Krita hands the plug-in its layer as BGRA in a QByteArray (node.pixelData). Until the thirty-seventh
session the wire took only RGBA: every read was copied into bytes and swapped to RGBA in the plug-in
(Qt's QImage.rgbSwapped for 8-bit pixels), then hashed by the client (simpson_client.protocol.image_hash)
for the daemon's image cache, and a further click's read, while the one-click tool is on, was copied and
compared with the last copy (krita_io.read_layer's reuse). Now the layer travels as the wire's bgra8 /
bgra16 straight from Krita's buffer (a memoryview; the daemon swaps it, OpenCV: ~12 ms for 12 MP, in
`bench/photo12mp.py --format bgra8`), and a further read is compared with the last one as QByteArrays
(no copy). Needs PyQt5, which the editors root has (Krita's own). Prints the median and minimum of each
and their ratios.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[0] = str(REPO)        # bench/select.py would shadow the stdlib `select`

from PyQt5.QtCore import QByteArray  # noqa: E402
from PyQt5.QtGui import QImage  # noqa: E402

from simpson_client import Image  # noqa: E402


def qt_swap(data: bytes, w: int, h: int) -> bytes:
    """The code before: 8-bit BGRA -> RGBA through QImage.rgbSwapped (qt_pixels.swap_red_blue)."""
    swapped = QImage(data, w, h, 4 * w, QImage.Format_RGBA8888).rgbSwapped()   # held while its bits are read
    return swapped.constBits().asstring(4 * w * h)


def timed(arms: dict, rounds: int) -> dict[str, list[float]]:
    """Each arm's seconds per round, the arms alternating, so drifts of the machine hit all of them."""
    times: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(rounds):
        for name, fn in arms.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def report(times: dict[str, list[float]]) -> None:
    for name, t in times.items():
        print(f"{name:44s} median {statistics.median(t) * 1e3:7.1f} ms   min {min(t) * 1e3:7.1f} ms")
    (a_name, a), (b_name, b) = list(times.items())[:2]
    print(f"{b_name} / {a_name}: median ratio {statistics.median([y / x for x, y in zip(a, b)]):.3f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--side", default="4380x2738", help="layer width x height (default: bench/photo12mp.py's 12 MP)")
    args = ap.parse_args()
    w, h = (int(v) for v in args.side.split("x"))
    raw = bytes(range(256)) * (w * h * 4 // 256) + bytes(w * h * 4 % 256)
    pixel_data = QByteArray(raw)     # what node.pixelData gives
    again = QByteArray(raw)          # a further click's read: equal bytes, another buffer
    swapped = bytearray(raw)                # the swap the baseline arm must do, by slices
    swapped[0::4], swapped[2::4] = raw[2::4], raw[0::4]
    assert qt_swap(raw, w, h) == swapped, "Qt's swap is not a red-blue swap"
    print(f"{w}x{h} 8-bit layer ({w * h / 1e6:.1f} MP, {4 * w * h / 1e6:.0f} MB), {args.rounds} rounds")
    print("a first click (pixelData's buffer to what the client sends and hashes):")
    report(timed({"before: copied, Qt swap to rgba8, hash": lambda: Image(w, h, qt_swap(bytes(pixel_data), w, h),
                                                                          "rgba8").hash,
                  "now: bgra8 in Krita's buffer, hash": lambda: Image(w, h, memoryview(pixel_data), "bgra8").hash},
                 args.rounds))
    print("a further click on the unchanged layer:")
    report(timed({"before: copied, compared with the last copy": lambda: bytes(again) == raw,
                  "now: Krita's buffers compared": lambda: again == pixel_data}, args.rounds))


if __name__ == "__main__":
    main()
