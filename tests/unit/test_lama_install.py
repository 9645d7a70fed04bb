"""install.py's LaMa download against a loopback HTTP server (no network): md5 and size checks,
resuming with a Range request, a damaged or cut download, and an install that goes on offline.
The address, checksum and size come from backend/weights.py's table, replaced here per test."""
from __future__ import annotations

import dataclasses
import hashlib
import http.server
import importlib
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from backend import weights
from backend.engines.lama import TORCHSCRIPT_NAME, find_weights

REPO = Path(__file__).resolve().parents[2]
BLOB = bytes(range(256)) * 4000          # 1 MB: a few progress steps


class Served:
    """What the loopback server sends, and what it was asked."""

    def __init__(self, blob: bytes):
        self.blob = blob
        self.ranges = True          # honours Range requests
        self.cut_after = None       # sends only this many bytes once (announcing all), then closes
        self.status = 200
        self.requests: list[str | None] = []     # the Range header of each request (None: none)


@pytest.fixture
def server():
    served = Served(BLOB)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            rng = self.headers.get("Range")
            served.requests.append(rng)
            if served.status != 200:
                self.send_error(served.status)
                return
            body, start = served.blob, 0
            if rng and served.ranges:
                start = int(rng.split("=")[1].split("-")[0])
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            part = body[start:]
            self.send_header("Content-Length", str(len(part)))
            self.end_headers()
            if served.cut_after is not None:
                part, served.cut_after = part[:served.cut_after], None
                self.wfile.write(part)
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(part)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    served.url = f"http://127.0.0.1:{httpd.server_address[1]}/big-lama.pt"
    yield served
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def install(monkeypatch):
    monkeypatch.delenv("LAMA_MODEL_URL", raising=False)
    monkeypatch.delenv("LAMA_MODEL_MD5", raising=False)
    return importlib.import_module("install")


def publish(monkeypatch, url: str, blob: bytes = BLOB, md5: str | None = None, size: int | None = -1) -> None:
    """The test seam: backend/weights.py's table entry for big-lama.pt, pointed at the loopback server."""
    spec = dataclasses.replace(weights.MODELS["lama"], url=url, md5=md5 or hashlib.md5(blob).hexdigest(),
                               size=len(blob) if size == -1 else size)
    monkeypatch.setitem(weights.MODELS, "lama", spec)


def test_download_checks_md5_and_size_shows_progress_and_is_idempotent(install, server, monkeypatch,
                                                                      tmp_path, capsys):
    publish(monkeypatch, server.url)
    home = tmp_path / "home"
    dest = install.download_lama(home)
    assert dest == home / "weights" / TORCHSCRIPT_NAME and dest.read_bytes() == BLOB
    assert find_weights(home / "weights") == dest
    assert [p.name for p in dest.parent.iterdir()] == [TORCHSCRIPT_NAME]     # no .part left
    out = capsys.readouterr().out
    assert "100 %" in out and "md5 ok" in out
    install.download_lama(home)            # already there: checked, not fetched again
    assert "already there (md5 ok)" in capsys.readouterr().out
    assert server.requests == [None]


def test_a_cut_download_resumes_with_a_range_request(install, server, monkeypatch, tmp_path):
    publish(monkeypatch, server.url)
    server.cut_after = 300_000
    home = tmp_path / "home"
    with pytest.raises(install.DownloadError, match="stopped at"):
        install.download_lama(home)
    part = home / "weights" / (TORCHSCRIPT_NAME + ".part")
    kept = part.stat().st_size
    assert 0 < kept < len(BLOB) and not (home / "weights" / TORCHSCRIPT_NAME).exists()
    dest = install.download_lama(home)
    assert dest.read_bytes() == BLOB and not part.exists()
    assert server.requests == [None, f"bytes={kept}-"]


def test_a_server_that_ignores_range_starts_over(install, server, monkeypatch, tmp_path):
    publish(monkeypatch, server.url)
    server.ranges = False
    part = tmp_path / "home" / "weights" / (TORCHSCRIPT_NAME + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\xff" * 5000)       # would corrupt the file if appended to
    assert install.download_lama(tmp_path / "home").read_bytes() == BLOB
    assert server.requests == ["bytes=5000-"]


def test_a_whole_part_is_only_checked(install, server, monkeypatch, tmp_path):
    publish(monkeypatch, server.url, size=None)        # no size known: the server says 416
    part = tmp_path / "home" / "weights" / (TORCHSCRIPT_NAME + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(BLOB)
    assert install.download_lama(tmp_path / "home").read_bytes() == BLOB
    assert server.requests == [f"bytes={len(BLOB)}-"]


def test_a_damaged_download_is_removed_with_a_sentence(install, server, monkeypatch, tmp_path):
    publish(monkeypatch, server.url, md5="0" * 32, size=None)
    with pytest.raises(install.DownloadError, match=r"damaged \(md5 [0-9a-f]{32}, expected 0{32}\) and was removed"):
        install.download_lama(tmp_path / "home")
    assert not any((tmp_path / "home" / "weights").iterdir())


def test_a_file_of_the_wrong_size_is_refused_before_downloading(install, server, monkeypatch, tmp_path):
    publish(monkeypatch, server.url, size=len(BLOB) + 1)
    with pytest.raises(install.DownloadError, match=f"offers {len(BLOB)} bytes, not the {len(BLOB) + 1}"):
        install.download_lama(tmp_path / "home")


def test_a_wrong_file_already_there_is_replaced(install, server, monkeypatch, tmp_path, capsys):
    publish(monkeypatch, server.url)
    dest = tmp_path / "home" / "weights" / TORCHSCRIPT_NAME
    dest.parent.mkdir(parents=True)
    dest.write_bytes(BLOB[:-1] + b"\x00")
    assert install.download_lama(tmp_path / "home").read_bytes() == BLOB
    assert "removed" in capsys.readouterr().out and server.requests == [None]


def test_the_environment_overrides_address_and_checksum(install, server, monkeypatch, tmp_path):
    publish(monkeypatch, "http://127.0.0.1:9/nothing-here", md5="f" * 32, size=1)
    monkeypatch.setenv("LAMA_MODEL_URL", server.url)
    monkeypatch.setenv("LAMA_MODEL_MD5", hashlib.md5(BLOB).hexdigest().upper())
    assert install.download_lama(tmp_path / "home").read_bytes() == BLOB   # the table's size is not used


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("how", ["offline", "404"])
def test_a_failed_download_is_one_line_and_the_install_goes_on(install, server, monkeypatch, tmp_path,
                                                             capsys, how):
    if how == "offline":
        publish(monkeypatch, f"http://127.0.0.1:{closed_port()}/big-lama.pt")
    else:
        publish(monkeypatch, server.url)
        server.status = 404
    home = tmp_path / "home"
    assert install.install_lama(home) is None
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "LaMa not installed" in line]
    assert len(lines) == 1
    assert "cannot reach" in lines[0] if how == "offline" else "answered 404" in lines[0]
    assert "uses the built-in engine" in lines[0] and "run `python3 install.py` again" in lines[0]
    assert find_weights(home / "weights") is None


def test_lama_flags():
    run = [sys.executable, str(REPO / "install.py")]
    both = subprocess.run(run + ["--lama", "--no-lama"], capture_output=True, text=True, timeout=60)
    assert both.returncode == 2 and "not allowed with" in both.stderr
    helptext = subprocess.run(run + ["--help"], capture_output=True, text=True, timeout=60).stdout
    assert "--no-lama" in helptext and "--lama" in helptext
