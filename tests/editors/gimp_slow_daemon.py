"""A fake daemon for the GIMP dialog tests: slow on purpose, so progress, Stop and timeouts show.

select: a progress message every 0.1 s for up to 20 s, then an error; a cancel ends it with
"cancelled" at once. erase: never answers (the client's idle timeout fires). info: answers.
Runs on a thread with pyzmq (host side only; GIMP reaches it over loopback).
"""
from __future__ import annotations

import threading
import time

import zmq

from simpson_client import protocol


class SlowDaemon:
    def __init__(self, port: int):
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.linger = 0
        self.sock.bind(self.endpoint)
        self.seen: list[str] = []          # ops received, in order ("cancel" included)
        self.cancelled = threading.Event()
        self._stop = threading.Event()
        self._jobs: dict[str, tuple[bytes, float]] = {}   # request id -> (identity, start time)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _send(self, identity: bytes, header: dict) -> None:
        self.sock.send_multipart([identity] + protocol.encode(header))

    def _serve(self) -> None:
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        while not self._stop.is_set():
            if poller.poll(100):
                identity, *body = self.sock.recv_multipart()
                header = protocol.decode(body).header
                op, rid = header.get("op"), header.get("id")
                self.seen.append(op)
                if op == "info":
                    self._send(identity, {"id": rid, "kind": "result", "op": "info", "protocol": protocol.VERSION})
                elif op == "select":
                    self._jobs[rid] = (identity, time.monotonic())
                elif op == "cancel":
                    self.cancelled.set()
                    job = self._jobs.pop(header.get("target"), None)
                    if job:
                        self._send(job[0], {"id": header["target"], "kind": "error", "code": "cancelled",
                                            "message": "Cancelled."})
            for rid, (identity, start) in list(self._jobs.items()):
                age = time.monotonic() - start
                if age > 20:
                    del self._jobs[rid]
                    self._send(identity, {"id": rid, "kind": "error", "code": "internal", "message": "Too slow."})
                else:
                    self._send(identity, {"id": rid, "kind": "progress", "fraction": min(0.9, age / 20),
                                          "message": "Thinking slowly"})

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
