"""The daemon: a ZeroMQ ROUTER socket, a small worker pool, progress, cancel, never dies on input.

The main thread owns the ROUTER socket. Requests are validated enough to route them (and
`cancel` is answered there), then run on worker threads through backend/requests.py, whose
OPERATIONS table maps each operation to its handler; workers send replies and progress through
an inproc PUSH socket each, which the main thread forwards. The server knows nothing of arrays
or models.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import zmq

from simpson_client import protocol
from simpson_client.errors import Cancelled
from simpson_client.protocol import ProtocolError
from simpson_client.settings import is_loopback, parse_endpoint

from .pipeline import Pipeline
from .requests import Requests

log = logging.getLogger("simpson.server")

HEARTBEAT_S = 0.2      # progress period; the promise is protocol.PROGRESS_EVERY_S, the rest is slack for a loaded machine
ON_IDLE_S = 1.0        # requests stopped this long: on_idle runs
POLL_BUSY_S = 0.05     # main loop wake-ups while requests are in flight (0.25 s when idle)
OUTBOX = "inproc://simpson-outbox"


class StartupError(Exception):
    """The daemon cannot start; str() is the sentence to print."""


@dataclass
class Job:
    envelope: list[bytes]
    rid: str
    op: str
    cancel: threading.Event = field(default_factory=threading.Event)
    fraction: float = 0.0
    message: str = "Queued"
    last_sent: float = field(default_factory=time.monotonic)


def insecure_keys(secret: Path, clients: Path) -> str:
    """A sentence when other local users could read the server's secret key or add a client key
    (as ssh refuses such keys); "" when the keys are the owner's only. POSIX only."""
    import os
    import stat
    if os.name != "posix":
        return ""
    mode = stat.S_IMODE(secret.stat().st_mode)
    if mode & 0o077:
        return (f"{secret} is readable by other users (mode {mode:04o}); make it the owner's only "
                f"(chmod 600 {secret}) or make new keys with `python -m backend keygen --force`.")
    mode = stat.S_IMODE(clients.stat().st_mode)
    if mode & 0o022:
        return (f"{clients} can be changed by other users (mode {mode:04o}), who could let themselves in; "
                f"run chmod go-w {clients}.")
    return ""


class Server:
    def __init__(self, endpoint: str, pipeline: Pipeline, curve_dir: Optional[Path] = None,
                 workers: int = protocol.WORKERS, max_jobs: int = protocol.MAX_REQUESTS,
                 log_path: str = "the daemon log",
                 idle_exit: float = 0.0, on_idle: Callable[[], None] = lambda: None):
        self.endpoint = endpoint
        self.on_idle = on_idle          # called once when requests stop for ON_IDLE_S (the CLI gives memory back)
        self._last_busy = time.monotonic()
        self._idle_called = True
        self.idle_exit = idle_exit      # seconds without requests before the daemon exits; 0 = never
        self._last_activity = time.monotonic()
        self.pipeline = pipeline
        self.requests = Requests(pipeline, {"max_requests": max_jobs, "workers": workers})   # info adds them
        self.log_path = log_path
        self.max_jobs = max_jobs
        self.workers = workers
        self.ctx = zmq.Context()
        self._stop = threading.Event()
        self._jobs: dict[tuple[bytes, str], Job] = {}
        self._jobs_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="simpson-worker")
        self._auth = None
        host, _ = parse_endpoint(endpoint)
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE_BYTES)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 0)
        if curve_dir is not None:
            self._enable_curve(curve_dir)
        elif not is_loopback(host):
            self.close()
            raise StartupError(f"The daemon refuses to listen on {endpoint} without authentication: "
                               "pass --curve-dir (see `python -m backend keygen`).")
        try:
            self.router.bind(endpoint)
        except zmq.ZMQError as e:
            self.close()
            raise StartupError(f"Cannot listen on {endpoint}: {e.strerror} (Address already in use?)"
                               if e.errno == zmq.EADDRINUSE else f"Cannot listen on {endpoint}: {e.strerror}") from None
        self.outbox = self.ctx.socket(zmq.PULL)
        self.outbox.bind(OUTBOX)
        # One PUSH socket per worker, connected now: a pipe attached while the main loop is
        # already polling is noticed late, so none may appear later. Workers borrow them.
        self._pushes: queue.SimpleQueue[zmq.Socket] = queue.SimpleQueue()
        for _ in range(workers):
            push = self.ctx.socket(zmq.PUSH)
            push.setsockopt(zmq.LINGER, 0)
            push.connect(OUTBOX)
            self._pushes.put(push)

    def _enable_curve(self, curve_dir: Path) -> None:
        from zmq.auth import load_certificate
        from zmq.auth.thread import ThreadAuthenticator
        secret = curve_dir / "server.key_secret"
        clients = curve_dir / "clients"
        if not secret.exists() or not clients.is_dir():
            self.close()
            raise StartupError(f"{curve_dir} must hold server.key_secret and a clients/ folder of public keys.")
        problem = insecure_keys(secret, clients)
        if problem:
            self.close()
            raise StartupError(problem)
        public, private = load_certificate(str(secret))
        self._auth = ThreadAuthenticator(self.ctx)
        self._auth.start()
        self._auth.configure_curve(domain="*", location=str(clients))
        self.router.curve_publickey = public
        self.router.curve_secretkey = private
        self.router.curve_server = True

    # ---- main loop ----
    def serve_forever(self, on_ready: Callable[[], None] = lambda: None) -> None:
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self.outbox, zmq.POLLIN)
        on_ready()
        while not self._stop.is_set():
            events = dict(poller.poll(int(1000 * (POLL_BUSY_S if self._jobs else 0.25))))
            if self.outbox in events:
                self._forward_outbox()
            if self.router in events:
                for _ in range(16):
                    try:
                        frames = self.router.recv_multipart(flags=zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    self._last_activity = time.monotonic()
                    self._on_message(frames)
            self._heartbeat()
            if self._jobs:
                self._last_busy, self._idle_called = time.monotonic(), False
            elif not self._idle_called and time.monotonic() - self._last_busy >= ON_IDLE_S:
                self._idle_called = True
                self.on_idle()
            if self.idle_exit and not self._jobs and time.monotonic() - self._last_activity > self.idle_exit:
                log.info("idle for %.0f s: exiting", self.idle_exit)
                return

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._auth is not None:
            self._auth.stop()
        self.ctx.destroy(linger=0)

    def _forward_outbox(self) -> None:
        while True:
            try:
                frames = self.outbox.recv_multipart(flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            try:
                self.router.send_multipart(frames, copy=False)
            except zmq.ZMQError as e:   # the client is gone: drop its reply
                log.info("dropping a reply: %s", e)

    def _send(self, envelope: list[Any], header: dict[str, Any], frames: list[Any] = ()) -> None:
        """Send from the main thread."""
        self.router.send_multipart(envelope + protocol.encode(header, frames), copy=False)

    def _on_message(self, frames: list[zmq.Frame]) -> None:
        envelope, body = [frames[0]], frames[1:]
        rid = ""
        try:
            msg = protocol.decode([f.buffer for f in body])
            rid = protocol.request_id(msg.header)
            op = protocol.check_request(msg.header, len(msg.frames))   # every field's type, before queuing
            if op == "cancel":
                self._cancel(frames[0].bytes, msg.header["target"])
                self._send(envelope, {"id": rid, "kind": "result", "op": "cancel"})
                return
            key = (frames[0].bytes, rid)
            with self._jobs_lock:
                if len(self._jobs) >= self.max_jobs:
                    raise ProtocolError("busy", "The daemon is busy with other requests; try again shortly.")
                if key in self._jobs:
                    raise ProtocolError("bad_request", f"Request id {rid!r} is already in progress.")
                job = Job(envelope=[frames[0].bytes], rid=rid, op=op)
                self._jobs[key] = job
            self._pool.submit(self._run, key, job, msg)
        except ProtocolError as e:   # the id, whenever the header had a readable one
            self._send(envelope, {"id": rid or e.rid, "kind": "error", "code": e.code, "message": e.message})
        except Exception:  # never let one message kill the loop
            log.exception("failed to route a message")
            self._send(envelope, {"id": rid, "kind": "error", "code": "internal",
                                  "message": f"Backend error; see {self.log_path}."})

    def _cancel(self, identity: bytes, target: str) -> None:
        with self._jobs_lock:
            job = self._jobs.get((identity, target))
        if job is not None:
            job.cancel.set()

    def _heartbeat(self) -> None:
        now = time.monotonic()
        with self._jobs_lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            if now - job.last_sent >= HEARTBEAT_S:
                job.last_sent = now
                self._send(job.envelope, {"id": job.rid, "kind": "progress", "fraction": round(job.fraction, 3),
                                          "message": job.message})

    # ---- workers ----
    def _run(self, key: tuple[bytes, str], job: Job, msg: protocol.Message) -> None:
        out = self._pushes.get()   # the queue hands the socket over between threads safely
        try:
            self._work(key, job, msg, out)
        finally:
            self._pushes.put(out)

    def _work(self, key: tuple[bytes, str], job: Job, msg: protocol.Message, out: zmq.Socket) -> None:

        def progress(fraction: float, message: str) -> None:
            if job.cancel.is_set():
                raise Cancelled("Cancelled.", "cancelled")
            job.fraction, job.message = max(0.0, min(1.0, fraction)), message
            if time.monotonic() - job.last_sent >= 0.1:
                job.last_sent = time.monotonic()
                out.send_multipart(job.envelope + protocol.encode(
                    {"id": job.rid, "kind": "progress", "fraction": round(job.fraction, 3), "message": message}))

        try:
            progress(0.0, "Working")
            header, frames = self.requests.handle(msg, progress)
            reply = protocol.encode(dict(header, id=job.rid), frames)
        except Cancelled:
            reply = protocol.encode({"id": job.rid, "kind": "error", "code": "cancelled", "message": "Cancelled."})
        except ProtocolError as e:
            reply = protocol.encode({"id": job.rid, "kind": "error", "code": e.code, "message": e.message})
        except MemoryError:
            log.exception("out of memory in %s", job.op)
            reply = protocol.encode({"id": job.rid, "kind": "error", "code": "internal",
                                     "message": "The backend ran out of memory; try a smaller image."})
        except Exception:
            log.exception("request %s (%s) failed", job.rid, job.op)
            reply = protocol.encode({"id": job.rid, "kind": "error", "code": "internal",
                                     "message": f"Backend error; see {self.log_path}."})
        finally:
            with self._jobs_lock:
                self._jobs.pop(key, None)
        big = any(protocol.nbytes(f) >= 65536 for f in reply)
        out.send_multipart(job.envelope + reply, copy=not big)
