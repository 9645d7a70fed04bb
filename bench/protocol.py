"""Protocol benchmark: 12-MP round trips through both transports vs a raw loopback copy.

    python3 bench/protocol.py [--runs 5] [--megapixels 12]

Prints medians and ratios measured in this run:
- raw: the same bytes (RGBA layer out, mask back) over a plain loopback TCP socket;
- pyzmq / stdlib: Client.select on a new image (pixels travel, hash, cache miss handshake),
  protocol overhead = wall time minus the time the daemon spent selecting;
- cached click: the same image again (only the click travels), overhead the same way.
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

from bench.common import BenchDaemon, med, table  # noqa: E402
from simpson_client import Client, Image  # noqa: E402


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


def client_round_trips(client: Client, w: int, h: int, runs: int, seed: int) -> tuple[list[float], list[float]]:
    """(uncached overheads, cached-click overheads) in seconds."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (h, w, 4), np.uint8)
    uncached, cached = [], []
    for i in range(runs):
        base[0, 0, 0] = (seed * 31 + i) % 256          # a new image each run: a cache miss
        img = Image(w, h, base.tobytes(), "rgba8")
        for bucket in (uncached, cached):
            start = time.perf_counter()
            img._hash = "" if bucket is uncached else img._hash   # the client hashes a new layer each time
            reply, frames = client._call({"op": "select", "points": [[w / 2, h / 2, True]], "engine": "classic"},
                                         (), img)
            mask = client._mask(reply, frames, img)          # the full-size mask, as Client.select returns
            wall = time.perf_counter() - start
            assert len(mask.data) == w * h
            bucket.append(wall - reply["seconds"])
    return uncached, cached


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
        raw = med(raw_round_trip(layer, w * h, args.runs))
        rows = [["path", "median s", "ratio to raw", "target"], ["raw loopback copy", f"{raw:.4f}", "1.00", ""]]
        results = {}
        for kind in ("pyzmq", "stdlib"):
            unc, cac = client_round_trips(Client(daemon.settings(kind)), w, h, args.runs, seed=len(kind))
            results[kind] = (med(unc), med(cac))
        rows.append(["pyzmq round trip overhead", f"{results['pyzmq'][0]:.4f}", f"{results['pyzmq'][0] / raw:.2f}",
                     "<= 0.060 s"])
        rows.append(["stdlib round trip overhead", f"{results['stdlib'][0]:.4f}", f"{results['stdlib'][0] / raw:.2f}",
                     "<= 3x raw"])
        rows.append(["pyzmq cached click overhead", f"{results['pyzmq'][1]:.4f}", "", "<= 0.005 s"])
        rows.append(["stdlib cached click overhead", f"{results['stdlib'][1]:.4f}", "", ""])
        print(f"{w}x{h} RGBA8 layer ({w * h / 1e6:.1f} MP, {w * h * 4 / 1e6:.0f} MB), mask reply {w * h / 1e6:.0f} MB, "
              f"{args.runs} runs each")
        print(table(rows))
        print(f"daemon peak RSS: {daemon.rss_mb():.0f} MB")
    finally:
        daemon.stop()


if __name__ == "__main__":
    main()
