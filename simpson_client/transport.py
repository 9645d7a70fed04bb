"""One connection to the daemon: pyzmq when it imports, else the stdlib ZMTP transport.

Both give the same three calls: send(frames), recv(timeout) -> frames | None, close().
recv raises TransportClosed when the daemon went away (process killed, connection lost).
"""
from __future__ import annotations

import math
import socket
from typing import Any, Sequence

from . import protocol
from .settings import Settings, parse_endpoint
from .zmtp import AuthenticationFailed, DealerSocket, TransportClosed

try:  # editors' Pythons usually lack pyzmq
    import zmq
except ImportError:  # pragma: no cover - depends on the interpreter
    zmq = None

__all__ = ["AuthenticationFailed", "Connection", "TransportClosed", "connect"]


NEEDS_KEYS = ("The daemon closed the connection during the ZeroMQ handshake: it probably requires CURVE "
              "authentication, which needs pyzmq and keys.")


class Connection:
    name = "base"

    def send(self, frames: Sequence[Any]) -> None: ...
    def recv(self, timeout: float) -> list[Any] | None: ...
    def close(self) -> None: ...


class StdlibConnection(Connection):
    name = "stdlib"

    def __init__(self, endpoint: str):
        host, port = parse_endpoint(endpoint)
        try:
            self._sock = DealerSocket(host, port, max_message=protocol.MAX_MESSAGE_BYTES)
        except TransportClosed:
            raise
        except OSError as e:  # refused, unreachable, or handshake failure (TransportClosed)
            raise TransportClosed(str(e)) from None

    def send(self, frames: Sequence[Any]) -> None:
        try:
            self._sock.send_multipart(frames)
        except OSError as e:
            raise TransportClosed(f"Connection lost: {e}") from None

    def recv(self, timeout: float) -> list[Any] | None:
        return self._sock.recv_multipart(timeout)

    def close(self) -> None:
        self._sock.close()


class PyzmqConnection(Connection):
    """DEALER socket plus a monitor that reports a lost connection at once."""

    name = "pyzmq"

    def __init__(self, endpoint: str, settings: Settings, connect_timeout: float = 5.0):
        _probe(*parse_endpoint(endpoint))
        ctx = zmq.Context.instance()
        self._sock = ctx.socket(zmq.DEALER)
        self._curve = bool(settings.curve_server_public)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE_BYTES)
        if settings.curve_server_public:
            self._sock.curve_serverkey = settings.curve_server_public.encode()
            self._sock.curve_publickey = settings.curve_client_public.encode()
            self._sock.curve_secretkey = settings.curve_client_secret.encode()
        self._monitor = self._sock.get_monitor_socket(
            zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED
            | zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL)
        self._poller = zmq.Poller()
        self._poller.register(self._sock, zmq.POLLIN)
        self._poller.register(self._monitor, zmq.POLLIN)
        self._connected = False
        self._sock.connect(endpoint)
        # libzmq connects in the background; wait for the handshake so that a missing
        # daemon is reported now (as with the stdlib transport) rather than as a timeout later.
        self._wait_connected(connect_timeout)

    def _wait_connected(self, timeout: float) -> None:
        import time
        deadline = time.monotonic() + timeout
        while not self._connected:
            left = deadline - time.monotonic()
            if left <= 0 or not self._monitor.poll(int(left * 1000)):
                self.close()
                raise TransportClosed("Connection refused.")
            self._on_event()

    def _on_event(self) -> None:
        from zmq.utils.monitor import recv_monitor_message
        event = recv_monitor_message(self._monitor)["event"]
        # connected once the ZeroMQ handshake succeeded (libzmq reports it for NULL security too):
        # a daemon that wants CURVE hangs up on a client without keys right after the TCP connect
        if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self._connected = True
        elif event in (zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL) or (
                event == zmq.EVENT_DISCONNECTED and not self._connected):
            self.close()
            raise AuthenticationFailed(NEEDS_KEYS if not self._curve else
                                       "The daemon refused our keys (authentication failed).")
        elif event == zmq.EVENT_DISCONNECTED:
            self.close()
            raise TransportClosed("The daemon closed the connection.")

    def send(self, frames: Sequence[Any]) -> None:
        big = any(protocol.nbytes(f) >= 65536 for f in frames)
        self._sock.send_multipart(frames, copy=not big)

    def recv(self, timeout: float) -> list[Any] | None:
        import time
        deadline = time.monotonic() + timeout
        while True:
            left = max(0.0, deadline - time.monotonic())
            events = dict(self._poller.poll(math.ceil(left * 1000)))   # never a 0 ms busy loop
            if self._monitor in events:
                self._on_event()
            if self._sock in events:
                return [f.buffer for f in self._sock.recv_multipart(copy=False)]
            if time.monotonic() >= deadline:
                return None

    def close(self) -> None:
        if not self._sock.closed:
            self._sock.disable_monitor()
            self._monitor.close(linger=0)
            self._sock.close(linger=0)


def _probe(host: str, port: int) -> None:
    """Fail at once when nothing listens (libzmq would silently keep retrying)."""
    try:
        with socket.create_connection((host, port), timeout=2.0) as s:
            if s.getsockname() == s.getpeername():
                raise ConnectionRefusedError("self-connect")
    except OSError as e:
        raise TransportClosed(f"Connection refused ({e}).") from None


def connect(settings: Settings) -> Connection:
    """Open a connection to settings.endpoint; raises TransportClosed if nobody answers."""
    kind = settings.transport
    if kind == "pyzmq" and zmq is None:
        raise TransportClosed("pyzmq is not installed in this Python.")
    if kind not in ("auto", "pyzmq", "stdlib"):
        kind = "auto"
    if settings.curve_server_public and zmq is None:
        raise AuthenticationFailed("A remote (authenticated) daemon needs pyzmq in this Python.")
    if kind == "pyzmq" or (kind == "auto" and zmq is not None):
        return PyzmqConnection(settings.endpoint, settings)
    return StdlibConnection(settings.endpoint)
