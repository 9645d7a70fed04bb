"""The Krita plug-in's layer work per click on a 12-MP layer: its pixel swap (BGRA <-> RGBA), Qt's against the
stdlib's, and a further click's, the read compared with the last one against a swap and hash, in one run.

    python3 tools/editors/in-root.sh python3 bench/krita_pixels.py [--rounds 10] [--side 4380x2738]

Krita hands the plug-in its layer as BGRA; the wire is RGBA. Every click of the one-click tool
reads the layer and swaps it (plugin_krita/simpson_erase/qt_pixels.py: QImage.rgbSwapped for 8-bit
pixels, simpson_client.pixels' strided copies otherwise, which it used for everything before), and the
client hashes the RGBA (simpson_client.protocol.image_hash) for the daemon's image cache. While the
one-click tool is on, a further click's read that equals the last one gives the last pixels back, hash
and all (krita_io.read_layer's reuse): a comparison of the two reads instead. Needs PyQt5, which the
editors root has (Krita's own). Prints the median and minimum of each and their ratios; the two swaps
are checked equal.
"""
from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[0] = str(REPO)        # bench/select.py would shadow the stdlib `select`

import simpson_client  # noqa: E402
from simpson_client import Image  # noqa: E402
from simpson_client.pixels import bgra_to_rgba  # noqa: E402


def qt_pixels():
    """plugin_krita/simpson_erase/qt_pixels.py without the package's __init__ (it needs Krita), its
    simpson_client the repository's (install.py copies the same files into the plug-in)."""
    package = types.ModuleType("simpson_erase")
    package.__path__ = [str(REPO / "plugin_krita" / "simpson_erase")]
    sys.modules["simpson_erase"] = package
    sys.modules["simpson_erase.simpson_client"] = simpson_client
    sys.modules["simpson_erase.simpson_client.pixels"] = sys.modules["simpson_client.pixels"]
    return importlib.import_module("simpson_erase.qt_pixels")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--side", default="4380x2738", help="layer width x height (default: bench/photo12mp.py's 12 MP)")
    args = ap.parse_args()
    w, h = (int(v) for v in args.side.split("x"))
    swap = qt_pixels().swap_red_blue
    data = bytes(range(256)) * (w * h * 4 // 256) + bytes(w * h * 4 % 256)
    times: dict[str, list[float]] = {"stdlib (simpson_client.pixels)": [], "Qt (qt_pixels.swap_red_blue)": []}
    for _ in range(args.rounds):       # alternating, so drifts of the machine hit both
        for name, fn in (("stdlib (simpson_client.pixels)", lambda: bytes(bgra_to_rgba(data, 1))),
                         ("Qt (qt_pixels.swap_red_blue)", lambda: swap(data, w, h, 1))):
            start = time.perf_counter()
            out = fn()
            times[name].append(time.perf_counter() - start)
    assert out == bytes(bgra_to_rgba(data, 1)), "Qt's swap differs from the stdlib's"
    print(f"{w}x{h} 8-bit layer ({w * h / 1e6:.1f} MP, {4 * w * h / 1e6:.0f} MB), {args.rounds} rounds")
    for name, t in times.items():
        print(f"{name:32s} median {statistics.median(t) * 1e3:7.1f} ms   min {min(t) * 1e3:7.1f} ms")
    a, b = times.values()
    ratios = [y / x for x, y in zip(a, b)]
    print(f"Qt / stdlib: median ratio {statistics.median(ratios):.3f}")
    again = bytes(bytearray(data))         # the next click's read: equal bytes, another object
    further: dict[str, list[float]] = {"swap + hash (a fresh read)": [], "compare with the last read": []}
    for _ in range(args.rounds):
        for name, fn in (("swap + hash (a fresh read)", lambda: Image(w, h, swap(again, w, h, 1), "rgba8").hash),
                         ("compare with the last read", lambda: again == data)):
            start = time.perf_counter()
            fn()
            further[name].append(time.perf_counter() - start)
    for name, t in further.items():
        print(f"{name:32s} median {statistics.median(t) * 1e3:7.1f} ms   min {min(t) * 1e3:7.1f} ms")
    a, b = further.values()
    print(f"further click, compare / swap + hash: median ratio {statistics.median([y / x for x, y in zip(a, b)]):.3f}")


if __name__ == "__main__":
    main()
