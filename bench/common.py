"""Helpers shared by the benchmarks: a daemon on a free port, timing, a table printer."""
from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BenchDaemon:
    def __init__(self) -> None:
        self.home = tempfile.mkdtemp(prefix="simpson-bench-")
        self.endpoint = f"tcp://127.0.0.1:{free_port()}"
        env = dict(os.environ, SIMPSON_HOME=self.home, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, "-m", "backend", "serve", "--endpoint", self.endpoint],
                                     cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
        if "ready" not in self.proc.stdout.readline():
            raise RuntimeError("daemon did not start")

    def settings(self, transport: str):
        from simpson_client import Settings
        return Settings(endpoint=self.endpoint, autostart=False, transport=transport, home=self.home,
                        idle_timeout=120.0)

    def rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(10)


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows)


def paired(a: list[float], b: list[float]) -> tuple[float, float]:
    """Mean of the per-scene differences b - a and its standard error (same scenes, same order)."""
    import numpy as np
    d = np.asarray(b, float) - np.asarray(a, float)
    if d.size == 0:
        return float("nan"), float("nan")
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else float("nan")


def paired_ratio(num_a: list[float], den_a: list[float], num_b: list[float], den_b: list[float],
                 resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """The difference of two ratios of sums over the same scenes (b's sum(num) / sum(den) minus a's: a
    pooled rate such as pixel precision) and its standard error, a bootstrap over scenes (the same
    resampled scenes for both; fixed seed, so a report is reproducible)."""
    import numpy as np
    na, da, nb, db = (np.asarray(x, float) for x in (num_a, den_a, num_b, den_b))
    if na.size == 0:
        return float("nan"), float("nan")

    def diff(idx: "np.ndarray | slice") -> "np.ndarray | float":
        return (nb[idx].sum(-1) / np.maximum(db[idx].sum(-1), 1.0)
                - na[idx].sum(-1) / np.maximum(da[idx].sum(-1), 1.0))
    if na.size < 2:
        return float(diff(slice(None))), float("nan")
    idx = np.random.default_rng(seed).integers(0, na.size, (resamples, na.size))
    return float(diff(slice(None))), float(np.std(diff(idx), ddof=1))
