"""Malformed input never kills the daemon; a killed daemon gives a clear error and is restarted."""
from __future__ import annotations

import json
import os
import random
import signal
import sys
import threading
import time

import numpy as np
import pytest
import zmq

from simpson_client import BackendStopped, Cancelled, Client, Image, Settings, protocol
from tests.conftest import REPO, disc_centres, free_port, scene


def _dealer(endpoint: str) -> zmq.Socket:
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(endpoint)
    return s


def _reply(sock: zmq.Socket, timeout_ms: int = 5000) -> dict:
    """The next non-progress reply header."""
    deadline = time.monotonic() + timeout_ms / 1000
    while time.monotonic() < deadline:
        if sock.poll(100):
            head = json.loads(sock.recv_multipart()[0])
            if head.get("kind") != "progress":
                return head
    raise AssertionError("no reply")


def _valid_request(image: np.ndarray) -> list[bytes]:
    h, w = image.shape[:2]
    data = image.tobytes()
    spec = {"width": w, "height": h, "format": "rgba8", "hash": protocol.image_hash(w, h, "rgba8", data), "frame": 0}
    return protocol.encode({"op": "select", "id": "x1", "image": spec, "points": [[10, 10, True]]}, [data])


MUTATIONS = [
    lambda f, r: [r.randbytes(r.randint(0, 64))],                               # garbage
    lambda f, r: [f[0][: r.randint(0, len(f[0]))]] + f[1:],                     # truncated header
    lambda f, r: [f[0]] + [f[1][: r.randint(0, len(f[1]) - 1)]],                # truncated pixels
    lambda f, r: [f[0]] + [f[1] + b"\0" * r.randint(1, 99)],                    # too many pixels
    lambda f, r: [f[0]],                                                        # missing pixel frame
    lambda f, r: f + [r.randbytes(8)],                                          # extra frame
    lambda f, r: [f[0].replace(b'"v":1', b'"v":' + str(r.randint(2, 9)).encode())] + f[1:],  # version
    lambda f, r: [f[0].replace(b'"select"', r.choice([b'"nope"', b'null', b'7', b'"__init__"']))] + f[1:],
    lambda f, r: [f[0].replace(b'"width":', b'"width":1' + b"0" * r.randint(3, 9) + b"+")] + f[1:],
    lambda f, r: [f[0].replace(b"[[10,10,true]]", r.choice([b"[[NaN,1,true]]", b"[[1e9,1,true]]", b"[[-1,2,true]]",
                                                          b'[["a",1,true]]', b"[[1,2]]", b"7", b"[[1,2,3,4]]",
                                                          b"[[Infinity,1,true]]"]))] + f[1:],
    lambda f, r: [json.dumps({"v": 1, "id": "z" * r.randint(0, 100), "op": "info", "sizes": []}).encode()],
    lambda f, r: [f[0].replace(b'"hash":"', b'"hash":"0')] + f[1:],              # bad hash
    lambda f, r: [bytes(b ^ (1 << r.randint(0, 7)) if r.random() < 0.05 else b for b in f[0])] + f[1:],  # bit flips
    lambda f, r: [json.dumps(r.choice([[], 1, "s", None, {"v": 1}])).encode()] + f[1:],
]


@pytest.mark.slow
def test_fuzz_2000_malformed_messages(daemon):
    rng = random.Random(1234)
    base = _valid_request(scene(48, 32, seed=5))
    sock = _dealer(daemon.endpoint)
    start = time.monotonic()
    errors = 0
    for i in range(2000):
        frames = MUTATIONS[i % len(MUTATIONS)](base, rng)
        sock.send_multipart(frames)
        if i % 50 == 0:  # drain now and then so the queue stays small
            while sock.poll(0):
                sock.recv_multipart()
        assert time.monotonic() - start < 120, "fuzzing took too long"
    # everything answered (or ignored) and the daemon still serves a valid request
    time.sleep(0.5)
    while sock.poll(200):
        head = json.loads(sock.recv_multipart()[0])
        errors += head.get("kind") == "error"
    assert errors > 0
    assert daemon.alive()
    sock.send_multipart(protocol.encode({"op": "info", "id": "after-fuzz"}))
    head = _reply(sock)
    while head.get("id") != "after-fuzz":
        head = _reply(sock)
    assert head["kind"] == "result" and head["protocol"] == protocol.VERSION
    sock.close()


@pytest.mark.parametrize("frames,code", [
    ([b"not json"], "bad_request"),
    ([json.dumps({"v": 99, "id": "a", "op": "info"}).encode()], "version"),
    ([json.dumps({"v": 1, "id": "a", "op": "fly", "sizes": []}).encode()], "unknown_op"),
    ([json.dumps({"v": 1, "id": "a", "op": "select", "sizes": [],
                  "image": {"width": 100000, "height": 100000, "format": "rgba8", "hash": "0" * 32}}).encode()],
     "too_large"),
    ([json.dumps({"v": 1, "id": "a", "op": "select", "sizes": [],
                  "image": {"width": 10, "height": 10, "format": "rgba8", "hash": "0" * 32},
                  "points": [[1, 1, True]]}).encode()], "image_unknown"),
])
def test_clear_error_codes(daemon, frames, code):
    sock = _dealer(daemon.endpoint)
    sock.send_multipart(frames)
    head = _reply(sock)
    assert head["kind"] == "error" and head["code"] == code and head["message"]
    sock.close()


IMG10 = {"width": 10, "height": 10, "format": "rgba8", "hash": "0" * 32}


@pytest.mark.parametrize("header,payload,code", [
    ({"v": 2, "sizes": [], "op": "info"}, [], "version"),                         # issue 26.2
    ({"v": 1, "sizes": [3], "op": "info"}, [], "bad_request"),                    # frame count
    ({"v": 1, "sizes": [3], "op": "info"}, [b"ab"], "bad_request"),               # frame size
    ({"v": True, "sizes": [], "op": "info"}, [], "version"),                      # issue 26.5
    ({"v": 1.0, "sizes": [], "op": "info"}, [], "version"),
    ({"v": 1, "op": "info"}, [], "bad_request"),                                  # no sizes
    ({"v": 1, "sizes": [], "op": "select", "image": IMG10, "points": [[1, 1, 2]]}, [], "bad_request"),
    ({"v": 1, "sizes": [], "op": "select", "image": IMG10, "points": [[1, 1, True]], "engine": ""}, [],
     "bad_request"),
    ({"v": 1, "sizes": [], "op": "similar", "image": IMG10}, [], "bad_request"),  # needs a mask or points
    ({"v": 1, "sizes": [], "op": "erase", "image": IMG10, "mask": {"frame": 0}}, [], "bad_request"),
    ({"v": 1, "sizes": [], "op": "cancel"}, [], "bad_request"),
])
def test_errors_reach_the_request_and_types_are_strict(daemon, header, payload, code):
    """Every error about a message with a readable id carries that id (a client waiting for its
    id sees it); what the doc rejects is rejected."""
    sock = _dealer(daemon.endpoint)
    sock.send_multipart([json.dumps(dict(header, id="mine-1")).encode(), *payload])
    head = _reply(sock)
    assert head["kind"] == "error" and head["code"] == code and head["id"] == "mine-1", head
    sock.close()


def test_deep_nesting_is_a_bad_request_not_internal(daemon):
    """Issue 26.3: 5,000 levels of nesting (10 KB) get bad_request, and nothing about the log."""
    sock = _dealer(daemon.endpoint)
    sock.send_multipart([b'{"v":1,"id":"deep","sizes":[],"op":"info","x":' + b"[" * 5000 + b"]" * 5000 + b"}"])
    head = _reply(sock)
    assert head["kind"] == "error" and head["code"] == "bad_request" and "nested" in head["message"], head
    sock.send_multipart(protocol.encode({"op": "info", "id": "after"}))
    assert _reply(sock)["kind"] == "result"
    sock.close()


def test_version_mismatch_is_a_sentence(daemon, monkeypatch):
    monkeypatch.setattr(protocol, "VERSION", 2)
    from simpson_client import ProtocolMismatch
    with pytest.raises(ProtocolMismatch) as e:
        Client(daemon.settings("stdlib")).info()
    assert "install.py" in e.value.user_message


def _big_erase_args():
    """An erase that takes a few seconds with the classic engine."""
    h, w = 1500, 2000
    px = np.dstack([np.random.default_rng(0).integers(0, 255, (h, w, 3), np.uint8), np.full((h, w), 255, np.uint8)])
    mask = np.zeros((h, w), np.uint8)
    mask[200:1300, 300:1700] = 255
    return Image(w, h, px.tobytes()), mask.tobytes()


def test_cancel(daemon, transport):
    img, mask = _big_erase_args()
    client = Client(daemon.settings(transport))
    timer = threading.Timer(0.3, client.cancel)
    timer.start()
    with pytest.raises(Cancelled):
        client.erase(img, mask, progress=lambda f, m: None)
    timer.cancel()
    assert Client(daemon.settings(transport)).info()["protocol"] == protocol.VERSION


@pytest.mark.parametrize("kind", ["pyzmq", "stdlib"])
def test_killed_daemon_gives_clear_error_then_restarts(tmp_path, kind):
    port = free_port()
    settings = Settings(endpoint=f"tcp://127.0.0.1:{port}", python=sys.executable, app_dir=str(REPO),
                        autostart=True, transport=kind, home=str(tmp_path), idle_timeout=30.0)
    client = Client(settings)
    assert client.info(timeout=60)["protocol"] == protocol.VERSION        # autostarted
    pid = int((tmp_path / "daemon.pid").read_text())
    img, mask = _big_erase_args()
    killer = threading.Timer(0.8, os.kill, (pid, signal.SIGKILL))
    killer.start()
    with pytest.raises(BackendStopped) as e:
        client.erase(img, mask)
    assert "stopped" in e.value.user_message
    killer.join()
    # the next request starts a new daemon
    px = scene(seed=9)
    x, y = disc_centres(320, 240)[0]
    m = client.select(Image(320, 240, px.tobytes()), [(x, y, True)])
    assert m.data[y * 320 + x] == 255
    new_pid = int((tmp_path / "daemon.pid").read_text())
    assert new_pid != pid
    os.kill(new_pid, signal.SIGINT)


def test_not_installed_and_not_running(tmp_path):
    from simpson_client import BackendNotInstalled, BackendUnavailable
    settings = Settings(endpoint=f"tcp://127.0.0.1:{free_port()}", autostart=True, home=str(tmp_path))
    with pytest.raises(BackendNotInstalled) as e:
        Client(settings).info()
    assert "install.py" in e.value.user_message
    settings.autostart = False
    with pytest.raises(BackendUnavailable) as e:
        Client(settings).info()
    assert "not running" in e.value.user_message


def test_non_loopback_needs_keys(tmp_path):
    import subprocess
    env = dict(os.environ, SIMPSON_HOME=str(tmp_path))
    r = subprocess.run([sys.executable, "-m", "backend", "serve", "--endpoint", f"tcp://0.0.0.0:{free_port()}"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "authentication" in r.stderr


def test_curve_authenticated_daemon(tmp_path):
    """A daemon with CURVE keys accepts a client holding the keys and ignores one without."""
    import subprocess
    keys = tmp_path / "keys"
    out = subprocess.run([sys.executable, "-m", "backend", "keygen", str(keys)], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    cfg = json.loads(out[out.index("{"):])
    port = free_port()
    env = dict(os.environ, SIMPSON_HOME=str(tmp_path), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "backend", "serve", "--endpoint", f"tcp://127.0.0.1:{port}",
                             "--curve-dir", str(keys)], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert "ready" in proc.stdout.readline()
        good = Settings(endpoint=f"tcp://127.0.0.1:{port}", autostart=False, home=str(tmp_path), **cfg)
        assert Client(good).info()["protocol"] == protocol.VERSION
        from simpson_client import BackendUnavailable
        for transport in ("stdlib", "pyzmq"):   # issue 26.7: says that keys are needed and where they go
            with pytest.raises(BackendUnavailable) as e:
                Client(Settings(endpoint=f"tcp://127.0.0.1:{port}", autostart=False, home=str(tmp_path),
                                transport=transport)).info()
            assert "needs CURVE keys" in e.value.user_message and "config.json" in e.value.user_message, transport
        wrong = dict(cfg, curve_client_secret=cfg["curve_client_public"])
        with pytest.raises(BackendUnavailable) as e:
            Client(Settings(endpoint=f"tcp://127.0.0.1:{port}", autostart=False, home=str(tmp_path), idle_timeout=10,
                            **wrong)).info()
        assert "refused" in e.value.user_message
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)   # it lets a running start-up warm-up finish first


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_a_daemon_started_with_sigint_ignored(tmp_path, signum):
    """A shell's background job (and every child of one) starts with SIGINT ignored; the daemon
    still stops cleanly on SIGINT (as install.py stops it) and on SIGTERM (`kill PID`), and
    removes its pid file."""
    import subprocess
    port = free_port()
    env = dict(os.environ, SIMPSON_HOME=str(tmp_path), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "backend", "serve", "--endpoint", f"tcp://127.0.0.1:{port}"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        assert "ready" in proc.stdout.readline()
        assert (tmp_path / "daemon.pid").read_text().strip() == str(proc.pid)
        proc.send_signal(signum)
        assert proc.wait(60) == 0
        assert not (tmp_path / "daemon.pid").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_progress_at_least_every_half_second(daemon):
    """Issue 26.8: while a request is queued or running, no gap between the messages it hears
    (from sending it to its result) exceeds protocol.PROGRESS_EVERY_S, with two requests running
    and one queued behind them."""
    img, mask = _big_erase_args()
    spec = {"width": img.width, "height": img.height, "format": "rgba8", "hash": img.hash}
    sock = _dealer(daemon.endpoint)
    sent, heard = {}, {}
    for rid in ("p1", "p2", "p3"):   # the daemon runs two at a time: the third waits in the queue
        sock.send_multipart(protocol.encode({"op": "erase", "id": rid, "image": dict(spec, frame=1),
                                             "mask": {"frame": 0}, "engine": "classic"}, [mask, img.data]))
        sent[rid] = time.monotonic()
        heard[rid] = []
    done = set()
    deadline = time.monotonic() + 300
    while len(done) < 3 and time.monotonic() < deadline:
        if sock.poll(100):
            head = json.loads(sock.recv_multipart()[0])
            heard[head["id"]].append(time.monotonic())
            if head["kind"] != "progress":
                assert head["kind"] == "result", head
                done.add(head["id"])
    assert len(done) == 3
    gaps = [b - a for rid in heard for a, b in zip([sent[rid]] + heard[rid], heard[rid])]
    assert len(gaps) > 10 and max(gaps) <= protocol.PROGRESS_EVERY_S, max(gaps)
    sock.close()


def test_memory_is_given_back_once_requests_stop():
    """Issue 26.11: a second after the last request the daemon calls on_idle (the CLI's serve
    returns freed heap pages to the system there), once per burst, never while idle before."""
    from backend.pipeline import Pipeline
    from backend.server import ON_IDLE_S, Server
    calls: list[float] = []
    server = Server(f"tcp://127.0.0.1:{free_port()}", Pipeline(), on_idle=lambda: calls.append(time.monotonic()))
    loop = threading.Thread(target=server.serve_forever)
    loop.start()
    try:
        time.sleep(ON_IDLE_S + 0.5)
        assert calls == []
        sock = _dealer(server.endpoint)
        sock.send_multipart(protocol.encode({"op": "info", "id": "i1"}))
        assert _reply(sock, 30000)["kind"] == "result"
        answered = time.monotonic()
        time.sleep(ON_IDLE_S + 1.0)
        assert len(calls) == 1 and calls[0] - answered >= ON_IDLE_S - 0.1
        sock.close()
    finally:
        server.stop()
        loop.join(10)
        server.close()
