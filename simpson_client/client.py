"""The client both plug-ins use: one request at a time, progress, cancel, clear errors (stdlib only)."""
from __future__ import annotations

import threading
import time
import uuid
from typing import Any, Callable, NamedTuple, Sequence

from . import daemon, pixels, protocol
from .protocol import Point
from .errors import (BackendStopped, BackendTimeout, BackendUnavailable, Cancelled, ProtocolMismatch,
                     RequestRejected, SimpsonError)
from .settings import Settings, load
from .transport import AuthenticationFailed, Connection, TransportClosed, connect

Progress = Callable[[float, str], Any]   # (fraction 0..1, message); return False to cancel


class Image:
    """Pixels to send: width × height in a protocol.FORMATS format ('rgba8', 'rgba16', or Krita's channel
    order 'bgra8', 'bgra16'; 16-bit samples little-endian), no row padding."""

    __slots__ = ("width", "height", "format", "data", "_hash")

    def __init__(self, width: int, height: int, data: bytes | bytearray | memoryview, format: str = "rgba8"):
        if format not in protocol.FORMATS:
            raise ValueError(f"unknown pixel format {format!r}")
        if width * height > protocol.MAX_PIXELS or max(width, height) > protocol.MAX_SIDE:
            raise RequestRejected(f"The image is {width}×{height} pixels, larger than SimpSON Erase's limit of "
                                  f"{protocol.MAX_PIXELS // 1_000_000} megapixels.", "too_large")
        expected = width * height * protocol.FORMATS[format]
        if protocol.nbytes(data) != expected:
            raise ValueError(f"{width}x{height} {format} needs {expected} bytes, got {protocol.nbytes(data)}")
        self.width, self.height, self.format, self.data = width, height, format, data
        self._hash = ""

    @property
    def hash(self) -> str:
        if not self._hash:
            self._hash = protocol.image_hash(self.width, self.height, self.format, self.data)
        return self._hash

    def spec(self) -> dict[str, Any]:
        return {"width": self.width, "height": self.height, "format": self.format, "hash": self.hash}


class Mask:
    """A selection on a width × height image: the bounding box of its selected pixels and the
    box's bytes (crop). data, the full-size mask, is built on first use: a plug-in that writes
    only the box never pays for the whole image. seconds: the daemon's time for the operation."""

    __slots__ = ("width", "height", "box", "crop", "engine", "seconds", "_data")

    def __init__(self, width: int, height: int, box: tuple[int, int, int, int], crop: bytes, engine: str = "",
                 seconds: float = 0.0):
        self.width, self.height, self.box, self.crop, self.engine = width, height, box, crop, engine
        self.seconds = seconds
        self._data: bytes | None = None

    @property
    def data(self) -> bytes:
        """width*height bytes, 255 = selected."""
        if self._data is None:
            full = bytearray(self.width * self.height)
            pixels.paste(full, self.width, self.crop, self.box, 1)
            self._data = bytes(full)
        return self._data

    def __repr__(self) -> str:
        return f"Mask({self.width}x{self.height}, box={self.box}, engine={self.engine!r})"


class Instance(NamedTuple):
    box: tuple[int, int, int, int]   # x, y, w, h in image pixels
    score: float
    mask: bytes                      # w*h bytes for the box, 255 = selected


class Similar(NamedTuple):
    mask: Mask                       # union of all instances
    instances: list[Instance]


class Patch(NamedTuple):
    box: tuple[int, int, int, int]   # where the patch goes; pixels outside it are unchanged
    format: str
    data: bytes                      # box w*h pixels in format
    engine: str


class Client:
    """Talks to the daemon; starts it on demand. Not thread-safe except cancel()."""

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or load()
        self._cancel = threading.Event()
        self._heard = False   # did the daemon answer anything on the current connection?

    # ---- operations ----
    def info(self, timeout: float = 10.0) -> dict[str, Any]:
        header, _ = self._call({"op": "info"}, timeout=timeout)
        return header

    def select(self, image: Image, points: Sequence[Point], previous: "bytes | Mask | None" = None,
               engine: str | None = None, progress: Progress | None = None) -> Mask:
        """previous: the mask to refine: a Mask from an earlier reply travels as its box and crop
        (a few KB instead of a full-size mask: 12 MB at 12 MP), full-size bytes as they are."""
        reply, payload = self._mask_request("select", image, points, previous, engine, progress)
        return self._mask(reply, payload, image)

    def similar(self, image: Image, points: Sequence[Point] = (), mask: "bytes | Mask | None" = None,
                engine: str | None = None, progress: Progress | None = None,
                min_score: float | None = None) -> Similar:
        """min_score: the score (0..1) an instance needs; None = the engine's own threshold."""
        extra = {} if min_score is None else {"min_score": float(min_score)}
        reply, payload = self._mask_request("similar", image, points, mask, engine, progress, extra)
        instances = []
        for inst in reply.get("instances", []):
            x, y, w, h = protocol.box(inst.get("box"))
            data = protocol.frame_ref(inst, "instance mask", payload, w * h)
            instances.append(Instance((x, y, w, h), float(inst.get("score", 0.0)), bytes(data)))
        return Similar(self._mask(reply, payload, image), instances)

    def erase(self, image: Image, mask: "bytes | Mask", engine: str | None = None, dilation: int | None = None,
              progress: Progress | None = None) -> Patch:
        spec, frame = _mask_frame(mask, image, 0)
        header: dict[str, Any] = {"op": "erase", "mask": spec}
        if engine:
            header["engine"] = engine
        if dilation is not None:
            header["dilation"] = int(dilation)
        reply, payload = self._call(header, [frame], image, progress)
        patch = protocol.field(reply, "patch", dict)
        x, y, w, h = protocol.box(patch.get("box"))
        if patch.get("format", image.format) != image.format:   # a patch comes back in the image's format
            raise SimpsonError(f"The SimpSON backend sent a {patch.get('format')} patch for a {image.format} image.")
        data = protocol.frame_ref(patch, "patch", payload, w * h * protocol.FORMATS[image.format])
        return Patch((x, y, w, h), image.format, bytes(data), str(reply.get("engine", "")))

    def cancel(self) -> None:
        """Ask the running request to stop (safe to call from another thread)."""
        self._cancel.set()

    def close(self) -> None:
        """Nothing stays open between requests; kept so `with Client() as c:` reads naturally."""

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- internals ----
    def _mask_request(self, op: str, image: Image, points: Sequence[Point], mask: "bytes | Mask | None",
                      engine: str | None, progress: Progress | None,
                      extra: dict[str, Any] | None = None) -> tuple[dict[str, Any], list[Any]]:
        """A select or similar request: points, an optional mask (previous / seed), an engine,
        and the op's own fields (extra)."""
        header: dict[str, Any] = {"op": op, "points": _points(points), **(extra or {})}
        frames: list[Any] = []
        if mask is not None:
            header["mask"], frame = _mask_frame(mask, image, 0)
            frames.append(frame)
        if engine:
            header["engine"] = engine
        return self._call(header, frames, image, progress)

    def _mask(self, reply: dict[str, Any], payload: list[Any], image: Image) -> Mask:
        """The reply carries the mask's bounding box and its bytes."""
        spec = reply.get("mask")
        x, y, w, h = protocol.box(spec.get("box") if isinstance(spec, dict) else None)
        if x < 0 or y < 0 or x + w > image.width or y + h > image.height:
            raise SimpsonError("The SimpSON backend sent a mask outside the image.")
        crop = protocol.frame_ref(spec, "mask", payload, w * h)
        seconds = reply.get("seconds")
        return Mask(image.width, image.height, (x, y, w, h), bytes(crop), str(reply.get("engine", "")),
                    float(seconds) if isinstance(seconds, (int, float)) else 0.0)

    def _connect(self, progress: Progress | None) -> Connection:
        """A fresh connection per request: a restarted daemon is simply found again."""
        for attempt in range(3):
            try:
                return connect(self.settings)
            except AuthenticationFailed as e:
                # a daemon that wants keys, or one that is just dying: look again before saying so
                if attempt == 2:
                    raise BackendUnavailable(self._keys_sentence(e)) from None
                time.sleep(0.3)
            except TransportClosed:
                break
        if not self.settings.autostart:
            raise BackendUnavailable(f"The SimpSON backend is not running at {self.settings.endpoint}. "
                                     "Start it with `python -m backend serve`.")
        say = (lambda text: progress(0.0, text)) if progress else None
        daemon.start(self.settings, self._ping, say)
        try:
            return connect(self.settings)
        except TransportClosed:
            raise BackendUnavailable(f"The SimpSON backend started but does not answer at {self.settings.endpoint}; "
                                     f"see {self.settings.log_path}.") from None

    def _keys_sentence(self, e: Exception) -> str:
        """What to do when the daemon refused the handshake: it needs CURVE keys, or others."""
        from .settings import CONFIG_NAME
        config = f"{self.settings.home}/{CONFIG_NAME}"
        keys = "curve_server_public, curve_client_public and curve_client_secret"
        if not self.settings.curve_server_public:
            return (f"The SimpSON backend at {self.settings.endpoint} needs CURVE keys, and this plug-in has none: "
                    f"put {keys} (printed by `python -m backend keygen KEYS` where the daemon runs) in {config}; "
                    f"this needs pyzmq in the editor's Python ({e}).")
        return (f"The SimpSON backend at {self.settings.endpoint} refused this plug-in's CURVE keys: check {keys} "
                f"in {config}, and that the client's public key is in the daemon's KEYS/clients folder ({e}).")

    def _ping(self) -> bool:
        try:
            conn = connect(self.settings)
        except TransportClosed:
            return False
        try:
            rid = uuid.uuid4().hex[:16]
            conn.send(protocol.encode({"op": "info", "id": rid}))
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline:
                frames = conn.recv(deadline - time.monotonic())
                if frames is None:
                    return False
                if protocol.decode(frames).header.get("id") == rid:
                    return True
            return False
        except (TransportClosed, protocol.ProtocolError):
            return False
        finally:
            conn.close()

    def _call(self, header: dict[str, Any], frames: Sequence[Any] = (), image: Image | None = None,
              progress: Progress | None = None, timeout: float | None = None) -> tuple[dict[str, Any], list[Any]]:
        """Send one request and wait for its result, passing progress on. Handles the image cache.

        A connection that drops before the daemon said anything (a daemon that was just
        stopping) is retried once on a fresh connection; requests have no side effects."""
        self._cancel.clear()
        for attempt in (0, 1):
            self._heard = False
            conn = self._connect(progress)
            try:
                return self._request(conn, header, frames, image, progress, timeout)
            except TransportClosed as e:
                if attempt == 0 and not self._heard:
                    time.sleep(0.5)
                    continue
                raise BackendStopped(f"The SimpSON backend stopped while working ({e}). "
                                     f"Try again; see {self.settings.log_path} if it keeps happening.") from None
            finally:
                conn.close()
        raise AssertionError("unreachable")

    def _request(self, conn: Connection, header: dict[str, Any], frames: Sequence[Any], image: Image | None,
                 progress: Progress | None, timeout: float | None) -> tuple[dict[str, Any], list[Any]]:
        if image is None:
            return self._exchange(conn, header, list(frames), progress, timeout)
        header = dict(header, image=image.spec())
        try:
            return self._exchange(conn, header, list(frames), progress, timeout)
        except RequestRejected as e:
            if e.code != "image_unknown":
                raise
        # The daemon has not seen this image (or evicted it): send the pixels once.
        header["image"] = dict(header["image"], frame=len(frames))
        return self._exchange(conn, header, list(frames) + [image.data], progress, timeout)

    def _exchange(self, conn: Connection, header: dict[str, Any], frames: list[Any], progress: Progress | None,
                  timeout: float | None) -> tuple[dict[str, Any], list[Any]]:
        rid = uuid.uuid4().hex[:16]
        try:   # the daemon's own checks (one schema): a request it would refuse is not sent
            protocol.check_request(header, len(frames))
        except protocol.ProtocolError as e:
            raise RequestRejected(e.message, e.code) from None
        conn.send(protocol.encode(dict(header, id=rid), frames))
        idle = timeout or self.settings.idle_timeout
        cancel_sent = False
        last = time.monotonic()
        while True:
            if self._cancel.is_set() and not cancel_sent:
                conn.send(protocol.encode({"op": "cancel", "id": uuid.uuid4().hex[:16], "target": rid}))
                cancel_sent = True
            got = conn.recv(0.1)
            if got is None:
                if time.monotonic() - last > idle:
                    raise BackendTimeout(f"The SimpSON backend did not answer within {idle:.0f} s; "
                                         f"see {self.settings.log_path}.")
                continue
            last = time.monotonic()
            self._heard = True
            try:
                msg = protocol.decode(got)
            except protocol.ProtocolError as e:
                if e.code == "version":
                    raise ProtocolMismatch("The SimpSON backend and this plug-in have different versions. "
                                           "Run `python3 install.py` again to update both.") from None
                raise SimpsonError(f"The SimpSON backend sent a malformed reply ({e.message}).") from None
            reply = msg.header
            if reply.get("id") != rid:
                continue  # a late reply to an earlier, abandoned request
            kind = reply.get("kind")
            if kind == "progress":
                if progress is not None and progress(float(reply.get("fraction", 0.0)), str(reply.get("message", ""))) is False:
                    self._cancel.set()
                continue
            if kind == "error":
                code, text = str(reply.get("code", "internal")), str(reply.get("message", "unknown error"))
                if code == "cancelled":
                    raise Cancelled("Cancelled.", code)
                if code == "version":
                    raise ProtocolMismatch("The SimpSON backend and this plug-in have different versions. "
                                           "Run `python3 install.py` again to update both.", code)
                raise RequestRejected(text, code)
            return reply, msg.frames


def _points(points: Sequence[Point]) -> list[list[Any]]:
    return [[float(x), float(y), bool(pos)] for x, y, pos in points]


def _mask_frame(mask: "bytes | Mask", image: Image, frame: int) -> tuple[dict[str, Any], Any]:
    """A mask as a request sends it -> (its payload reference, its frame): a Mask as its box and
    crop, full-size bytes as they are."""
    if isinstance(mask, Mask):
        if (mask.width, mask.height) != (image.width, image.height):
            raise ValueError(f"mask is {mask.width}x{mask.height}, the image {image.width}x{image.height}")
        return {"frame": frame, "box": list(mask.box)}, mask.crop
    if protocol.nbytes(mask) != image.width * image.height:
        raise ValueError(f"mask must be {image.width}x{image.height} bytes")
    return {"frame": frame}, mask
