"""Protocol benchmark: 12-MP round trips through both transports vs a raw loopback copy.

    python3 bench/protocol.py [--runs 5] [--megapixels 12]

Prints medians and ratios measured in this run:
- raw: the same bytes (RGBA layer out, the largest mask reply back) over a plain loopback TCP socket;
- pyzmq / stdlib: Client.select on a new image (the client hashes the layer, asks by hash, the
  daemon answers image_unknown, the pixels travel; the reply is the mask's bounding box, which
  is what the plug-ins write into the selection), protocol overhead = wall time minus the
  daemon's time for the operation (Mask.seconds: the engine, including making its RGB input);
- cached click: the same Image again (its hash is known, only the click travels: later clicks in
  GIMP's Select Object dialog), overhead the same way. A plug-in that reads the layer anew
  hashes it again: see the hash line.
Targets (issue #3): pyzmq overhead <= 60 ms; stdlib <= 3x raw; cached click overhead <= 5 ms.
"""
from __future__ import annotations

import sys
from pathlib import Path

# the repo root instead of bench/ first on the path: bench/select.py would shadow the stdlib `select`
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import socket  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from bench.common import BenchDaemon, med, table, timed  # noqa: E402
from simpson_client import Client, Image, protocol  # noqa: E402


def raw_round_trip(layer: bytes, mask_size: int, runs: int) -> list[float]:
    """Send len(layer) bytes, get mask_size bytes back, over a plain loopback socket."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    reply = bytes(mask_size)

    def serve() -> None:
        conn, _ = srv.accept()
        buf = bytearray(len(layer))
        view = memoryview(buf)
        for _ in range(runs):
            got = 0
            while got < len(layer):
                got += conn.recv_into(view[got:])
            conn.sendall(reply)
        conn.close()

    t = threading.Thread(target=serve)
    t.start()
    c = socket.create_connection(srv.getsockname())
    out = []
    back = bytearray(mask_size)
    view = memoryview(back)
    for _ in range(runs):
        start = time.perf_counter()
        c.sendall(layer)
        got = 0
        while got < mask_size:
            got += c.recv_into(view[got:])
        out.append(time.perf_counter() - start)
    t.join()
    c.close()
    srv.close()
    return out


def client_round_trips(client: Client, w: int, h: int, runs: int, seed: int) -> tuple[list[float], list[float], int]:
    """(uncached overheads, cached-click overheads, largest mask reply in bytes); overheads in seconds: Client.select's wall time minus the
    daemon's own time for the operation (Mask.seconds), as a plug-in calls it."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (h, w, 4), np.uint8)
    yy, xx = np.ogrid[:h, :w]
    base[(xx - w / 2) ** 2 + (yy - h / 2) ** 2 < (h / 4) ** 2] = (230, 40, 40, 255)   # an object to select
    uncached, cached, reply = [], [], 0
    for i in range(runs):
        base[0, 0, 0] = (seed * 31 + i) % 256          # a new image each run: a cache miss
        img = Image(w, h, base.tobytes(), "rgba8")    # a new Image: the client hashes it on the first call
        for bucket in (uncached, cached):
            start = time.perf_counter()
            mask = client.select(img, [(w / 2, h / 2, True)])   # the default engine, as a plug-in calls it
            wall = time.perf_counter() - start
            assert mask.width == w and len(mask.crop) == mask.box[2] * mask.box[3]
            bucket.append(wall - mask.seconds)
            reply = max(reply, len(mask.crop))
    return uncached, cached, reply


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--megapixels", type=float, default=12.0)
    args = ap.parse_args()
    w = int(round((args.megapixels * 1e6 * 4 / 3) ** 0.5))
    h = int(round(w * 3 / 4))
    daemon = BenchDaemon()
    try:
        layer = bytes(w * h * 4)
        results, reply = {}, 0
        for kind in ("pyzmq", "stdlib"):
            unc, cac, most = client_round_trips(Client(daemon.settings(kind)), w, h, args.runs, seed=len(kind))
            results[kind] = (med(unc), med(cac))
            reply = max(reply, most)
        raw = med(raw_round_trip(layer, reply, args.runs))   # the same bytes: the layer out, the mask reply back
        rows = [["path", "median s", "ratio to raw", "target"], ["raw loopback copy", f"{raw:.4f}", "1.00", ""]]
        rows.append(["pyzmq round trip overhead", f"{results['pyzmq'][0]:.4f}", f"{results['pyzmq'][0] / raw:.2f}",
                     "<= 0.060 s"])
        rows.append(["stdlib round trip overhead", f"{results['stdlib'][0]:.4f}", f"{results['stdlib'][0] / raw:.2f}",
                     "<= 3x raw"])
        rows.append(["pyzmq cached click overhead", f"{results['pyzmq'][1]:.4f}", "", "<= 0.005 s"])
        rows.append(["stdlib cached click overhead", f"{results['stdlib'][1]:.4f}", "", ""])
        hashing = med(timed(lambda: protocol.image_hash(w, h, "rgba8", layer), args.runs))
        rows.append(["client hash of the layer (in both overheads)", f"{hashing:.4f}", f"{hashing / raw:.2f}", ""])
        print(f"{w}x{h} RGBA8 layer ({w * h / 1e6:.1f} MP, {w * h * 4 / 1e6:.0f} MB), mask reply (its bounding box) up to {reply / 1e6:.1f} MB, "
              f"{args.runs} runs each")
        print(table(rows))
        print(f"daemon peak RSS: {daemon.rss_mb():.0f} MB")
    finally:
        daemon.stop()


if __name__ == "__main__":
    main()
