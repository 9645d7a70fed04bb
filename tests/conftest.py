"""Shared fixtures: a real daemon on a free loopback port, settings for clients, test images."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from simpson_client import Settings  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """`python -m backend serve` as a child process."""

    def __init__(self, home: Path, port: int | None = None):
        self.home = home
        self.endpoint = f"tcp://127.0.0.1:{port or free_port()}"
        env = dict(os.environ, SIMPSON_HOME=str(home), PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, "-m", "backend", "serve", "--endpoint", self.endpoint],
                                     cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = self.proc.stdout.readline()
        if "ready" not in line:
            self.proc.kill()
            raise RuntimeError(f"daemon did not start: {line}{self.proc.stdout.read()}")

    def settings(self, transport: str = "auto", **kw) -> Settings:
        return Settings(endpoint=self.endpoint, autostart=False, transport=transport, home=str(self.home),
                        idle_timeout=30.0, **kw)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="session")
def daemon(tmp_path_factory):
    d = Daemon(tmp_path_factory.mktemp("simpson-home"))
    yield d
    d.stop()


@pytest.fixture(params=["pyzmq", "stdlib"])
def transport(request) -> str:
    return request.param


def scene(w: int = 320, h: int = 240, seed: int = 0) -> np.ndarray:
    """RGBA uint8: noisy green background, four red discs (r=18) and one blue square."""
    import cv2
    rng = np.random.default_rng(seed)
    img = np.empty((h, w, 3), np.uint8)
    img[:] = (90, 140, 70)
    img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
    for c in disc_centres(w, h):
        cv2.circle(img, c, 18, (220, 40, 40), -1)
    cv2.rectangle(img, (int(w * 0.45), int(h * 0.75)), (int(w * 0.45) + 30, int(h * 0.75) + 30), (40, 40, 220), -1)
    return np.dstack([img, np.full((h, w), 255, np.uint8)])


def disc_centres(w: int, h: int) -> list[tuple[int, int]]:
    return [(int(w * 0.2), int(h * 0.25)), (int(w * 0.7), int(h * 0.3)), (int(w * 0.3), int(h * 0.6)),
            (int(w * 0.8), int(h * 0.7))]
