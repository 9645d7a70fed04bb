"""A tiny pure-Python ZeroMQ transport: a ZMTP 3.x DEALER socket over TCP (NULL mechanism).

For editor Pythons that have no pyzmq. It interoperates with a libzmq ROUTER socket.
One connection, blocking I/O with timeouts; not thread-safe (one user at a time).
Spec: https://rfc.zeromq.org/spec/23/ (ZMTP 3.0) and /spec/37/ (ZMTP 3.1).
"""
from __future__ import annotations

import socket
import struct
import time
from typing import Any, Sequence

_SIGNATURE = b"\xff" + b"\x00" * 8 + b"\x7f"
_GREETING = _SIGNATURE + b"\x03\x00" + b"NULL".ljust(20, b"\x00") + b"\x00" + b"\x00" * 31
_MORE, _LONG, _COMMAND = 0x01, 0x02, 0x04


class TransportClosed(ConnectionError):
    """The peer closed the connection (e.g. the daemon stopped)."""


class AuthenticationFailed(TransportClosed):
    """The peer wants security this side cannot give (or refused our keys)."""


class DealerSocket:
    """Connects to tcp://HOST:PORT; send_multipart / recv_multipart like pyzmq's DEALER."""

    def __init__(self, host: str, port: int, connect_timeout: float = 5.0, max_message: int = 1 << 31):
        self.max_message = max_message
        self._sock = socket.create_connection((host, port), timeout=connect_timeout)
        if self._sock.getsockname() == self._sock.getpeername():  # TCP self-connect: nobody listens
            self._sock.close()
            raise ConnectionRefusedError("Connection refused.")
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = bytearray()
        try:
            self._handshake(connect_timeout)
        except BaseException:
            self.close()
            raise

    # ---- public API ----
    def send_multipart(self, frames: Sequence[Any]) -> None:
        self._sock.settimeout(None)
        n = len(frames)
        for i, frame in enumerate(frames):
            data = memoryview(frame).cast("B") if not isinstance(frame, bytes) else frame
            flags = _MORE if i < n - 1 else 0
            self._sock.sendall(_frame_head(flags, len(data)))
            self._sock.sendall(data)

    def recv_multipart(self, timeout: float | None = None) -> list[bytes | bytearray] | None:
        """The next message, or None if nothing arrived within timeout seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        frames: list[bytes | bytearray] = []
        total = 0
        while True:
            flags, body = self._read_frame(deadline, waiting=not frames)
            if body is None:
                return None
            if flags & _COMMAND:
                self._on_command(body)
                continue
            total += len(body)
            if total > self.max_message:
                self.close()
                raise TransportClosed(f"Message larger than {self.max_message} bytes.")
            frames.append(body)
            if not flags & _MORE:
                return frames

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass

    # ---- internals ----
    def _handshake(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        self._sock.sendall(_GREETING)
        try:
            greeting = self._read_exact(64, deadline)
        except TransportClosed:
            # libzmq hangs up without a word when the mechanisms differ (e.g. it wants CURVE)
            raise AuthenticationFailed("The daemon closed the connection during the ZeroMQ handshake: it probably "
                                       "requires CURVE authentication, which needs pyzmq and keys.") from None
        if greeting is None or greeting[0] != 0xFF or greeting[9] != 0x7F:
            raise TransportClosed("The peer is not a ZeroMQ socket.")
        if greeting[10] < 3:
            raise TransportClosed(f"The peer speaks ZMTP {greeting[10]}, not 3.")
        mechanism = greeting[12:32].rstrip(b"\x00")
        if mechanism != b"NULL":
            raise AuthenticationFailed(f"The peer requires {mechanism.decode(errors='replace')} security; "
                                  "install pyzmq to use authenticated connections.")
        self._sock.sendall(_command(b"READY", {b"Socket-Type": b"DEALER", b"Identity": b""}))
        flags, body = self._read_frame(deadline, waiting=True)
        if body is None or not flags & _COMMAND:
            raise TransportClosed("The peer did not complete the ZeroMQ handshake.")
        name, props = _parse_command(body)
        if name == b"ERROR":
            raise TransportClosed(f"The peer refused the connection: {props.get(b'', b'').decode(errors='replace')}")
        if name != b"READY" or props.get(b"Socket-Type") != b"ROUTER":
            raise TransportClosed("The peer is not a ZeroMQ ROUTER socket.")

    def _on_command(self, body: bytes) -> None:
        name, _ = _parse_command(body)
        if name == b"PING":  # ZMTP 3.1 heartbeat: answer with the ping's context
            ttl_ctx = body[1 + len(name) + 2:]
            self._sock.settimeout(None)
            self._sock.sendall(_frame_head(_COMMAND, 5 + len(ttl_ctx)) + b"\x04PONG" + ttl_ctx)
        elif name == b"ERROR":
            self.close()
            raise TransportClosed("The peer reported a ZeroMQ error.")

    def _read_frame(self, deadline: float | None, waiting: bool) -> tuple[int, bytes | bytearray | None]:
        head = self._read_exact(1, deadline if waiting else None)
        if head is None:
            return 0, None
        flags = head[0]
        size_bytes = self._read_exact(8 if flags & _LONG else 1, None)
        size = struct.unpack(">Q", size_bytes)[0] if flags & _LONG else size_bytes[0]
        if size > self.max_message:
            self.close()
            raise TransportClosed(f"Frame of {size} bytes exceeds the limit.")
        if size < 65536:
            return flags, self._read_exact(size, None)
        return flags, self._read_large(size)

    def _read_large(self, size: int) -> bytes:
        """Read a big frame straight into its own buffer (one copy)."""
        out = bytearray(size)
        have = min(len(self._buf), size)
        out[:have] = self._buf[:have]
        del self._buf[:have]
        view = memoryview(out)
        self._sock.settimeout(None)
        while have < size:
            try:
                n = self._sock.recv_into(view[have:], size - have)
            except OSError as e:
                raise TransportClosed(f"Connection lost: {e}") from None
            if n == 0:
                raise TransportClosed("The peer closed the connection.")
            have += n
        return out  # bytearray: bytes-like, no extra copy

    def _read_exact(self, n: int, deadline: float | None) -> bytes | None:
        """n bytes; None on timeout (only before the first byte when a deadline is given)."""
        while len(self._buf) < n:
            if deadline is not None and not self._buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._sock.settimeout(left)
            else:
                self._sock.settimeout(None)
            try:
                want = max(n - len(self._buf), 65536)
                chunk = self._sock.recv(min(want, 1 << 24))
            except socket.timeout:
                if deadline is not None and not self._buf:
                    return None
                raise
            except OSError as e:
                raise TransportClosed(f"Connection lost: {e}") from None
            if not chunk:
                raise TransportClosed("The peer closed the connection.")
            self._buf += chunk
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out


def _frame_head(flags: int, size: int) -> bytes:
    if size > 255:
        return bytes([flags | _LONG]) + struct.pack(">Q", size)
    return bytes([flags, size])


def _command(name: bytes, props: dict[bytes, bytes]) -> bytes:
    body = bytes([len(name)]) + name
    for k, v in props.items():
        body += bytes([len(k)]) + k + struct.pack(">I", len(v)) + v
    return _frame_head(_COMMAND, len(body)) + body


def _parse_command(body: bytes) -> tuple[bytes, dict[bytes, bytes]]:
    if not body:
        raise TransportClosed("Empty ZeroMQ command.")
    n = body[0]
    name, rest = body[1:1 + n], body[1 + n:]
    props: dict[bytes, bytes] = {}
    if name == b"ERROR":
        return name, {b"": rest[1:1 + rest[0]] if rest else b""}
    if name != b"READY":
        return name, props
    while rest:
        kn = rest[0]
        key = rest[1:1 + kn]
        (vn,) = struct.unpack(">I", rest[1 + kn:5 + kn])
        props[key] = rest[5 + kn:5 + kn + vn]
        rest = rest[5 + kn + vn:]
    return name, props
