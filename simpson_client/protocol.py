"""SimpSON Erase wire protocol: message layout, limits and checks (stdlib only).

A message is a ZeroMQ multipart message: frame 0 is a UTF-8 JSON header, frames 1..n are raw
byte buffers (pixels, masks) that the header refers to by index. See docs/protocol.md.
This module is the one place where the layout, the limits and the error codes are defined;
the client and the daemon both import it.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
from itertools import accumulate
from typing import Any, NamedTuple, Sequence

VERSION = 1

# Limits. A daemon refuses anything larger with code "too_large".
MAX_PIXELS = 40_000_000          # per image (a 40-MP photo)
MAX_SIDE = 30_000                # per image side
MAX_HEADER_BYTES = 256 * 1024
MAX_POINTS = 64
MAX_INSTANCES = 500
MAX_ID_CHARS = 64
MAX_DILATION = 256
PROGRESS_EVERY_S = 0.5          # a queued or running request hears from the daemon at least this often
MAX_NESTING = 16                 # JSON depth of a header: {"points": [[1, 2, true]]} is 3 deep
MAX_NAME_CHARS = 64              # engine names
MAX_REQUESTS = 64                # requests in flight per daemon (queued or running); more get "busy"
WORKERS = 2                      # requests a daemon runs at a time (`serve --workers`); the rest queue
MAX_MESSAGE_BYTES = MAX_PIXELS * 8 + MAX_PIXELS + MAX_HEADER_BYTES  # rgba16 image + mask + header

# Bytes per pixel of each pixel format on the wire (16-bit samples little-endian). The bgra formats
# are Krita's own channel order: the daemon swaps them, the plug-in need not (an erase's patch comes
# back in the request's format).
FORMATS = {"rgba8": 4, "rgba16": 8, "bgra8": 4, "bgra16": 8}

OPS = ("info", "select", "similar", "erase", "cancel")

Point = tuple[float, float, bool]   # a click: x, y in image pixels (see Coordinates); True = add, False = subtract

# Error codes (reply kind "error").
ERROR_CODES = (
    "bad_request",      # malformed message: bad JSON, missing or wrong fields, wrong frame sizes
    "version",          # protocol version not supported
    "unknown_op",       # op is not one of OPS
    "too_large",        # an image or message exceeds the limits above
    "image_unknown",    # the image hash is not cached: send the request again with the pixels
    "cancelled",        # the request was cancelled by the client
    "busy",             # too many requests queued
    "unavailable",      # the requested engine or its weights are not available
    "internal",         # a bug or resource failure in the daemon; see its log
)


class ProtocolError(Exception):
    """A request or reply that breaks the protocol. code is one of ERROR_CODES; rid: the
    message's id when it could be read ("" when not), so that the error reaches the request."""

    def __init__(self, code: str, message: str, rid: str = ""):
        super().__init__(message)
        self.code = code
        self.message = message
        self.rid = rid


class Message(NamedTuple):
    header: dict[str, Any]
    frames: list[Any]  # bytes-like (bytes, memoryview, zmq.Frame buffers)


HASH_CHUNK = 4 << 20   # image_hash hashes 4 MiB chunks in parallel, then the list of chunk digests


def image_hash(width: int, height: int, fmt: str, data: Any) -> str:
    """Content hash of an image as it travels on the wire (32 hex chars).

    sha256 over "WxH:format:" followed by the sha256 digests of the pixel bytes cut into
    HASH_CHUNK-byte pieces (the last one shorter). The pieces are hashed on threads, since
    hashlib releases the GIL: a 12-MP layer hashes in about half the time of one sha256."""
    view = memoryview(data).cast("B")
    chunks = [view[i:i + HASH_CHUNK] for i in range(0, len(view), HASH_CHUNK)] or [view]
    if len(chunks) > 2:
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            digests = list(pool.map(lambda c: hashlib.sha256(c).digest(), chunks))
    else:
        digests = [hashlib.sha256(c).digest() for c in chunks]
    h = hashlib.sha256(f"{width}x{height}:{fmt}:".encode())
    for d in digests:
        h.update(d)
    return h.hexdigest()[:32]


def encode(header: dict[str, Any], frames: Sequence[Any] = ()) -> list[Any]:
    """Header dict + payload buffers -> frames to send. Adds the version and frame sizes."""
    head = dict(header)
    head["v"] = VERSION
    head["sizes"] = [nbytes(f) for f in frames]
    return [json.dumps(head, separators=(",", ":"), allow_nan=False).encode()] + list(frames)


def decode(frames: Sequence[Any]) -> Message:
    """Frames received -> Message. Checks size, nesting and JSON of the header, then its version
    and declared frame sizes. Errors raised once the header is read carry its id (rid)."""
    if not frames:
        raise ProtocolError("bad_request", "Empty message.")
    raw = bytes(frames[0])
    if len(raw) > MAX_HEADER_BYTES:
        raise ProtocolError("too_large", f"Header is {len(raw)} bytes; the limit is {MAX_HEADER_BYTES}.")
    if too_deep(raw):   # before parsing: json's recursion fails far deeper, as a RecursionError
        raise ProtocolError("bad_request", f"Header is nested more than {MAX_NESTING} levels deep.")
    try:
        header = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ProtocolError("bad_request", f"Header is not valid JSON: {e}") from None
    if not isinstance(header, dict):
        raise ProtocolError("bad_request", "Header must be a JSON object.")
    rid = peek_id(header)
    v = header.get("v")
    if type(v) is not int or v != VERSION:   # not True, not 1.0
        raise ProtocolError("version", f"Protocol version {v!r} is not supported; this side speaks {VERSION}.", rid)
    payload = list(frames[1:])
    sizes = header.get("sizes")
    if not isinstance(sizes, list) or not all(type(n) is int and n >= 0 for n in sizes):
        raise ProtocolError("bad_request", "Field 'sizes' must be a list of payload frame sizes in bytes.", rid)
    if len(sizes) != len(payload):
        raise ProtocolError("bad_request", f"Header declares {len(sizes)} payload frames, {len(payload)} arrived.", rid)
    for i, (declared, frame) in enumerate(zip(sizes, payload)):
        if declared != nbytes(frame):
            raise ProtocolError("bad_request", f"Payload frame {i} is {nbytes(frame)} bytes, header says {declared}.",
                                rid)
    return Message(header, payload)


def peek_id(header: dict[str, Any]) -> str:
    """The header's id if it is a valid one (a string of 1..MAX_ID_CHARS), else ""."""
    rid = header.get("id")
    return rid if isinstance(rid, str) and 0 < len(rid) <= MAX_ID_CHARS else ""


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def too_deep(raw: bytes) -> bool:
    """Do the arrays and objects of a JSON text nest more than MAX_NESTING deep (brackets inside
    strings ignored)? Linear time; a usual header (a few brackets) costs two counts."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_NESTING:
        return False
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    return max(accumulate(1 if c in b"[{" else -1 for c in brackets), default=0) > MAX_NESTING


# ---- field checks shared by the daemon (requests) and the client (replies) ----

def field(header: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
    """header[name], type-checked; default if absent (required when no default)."""
    if name not in header or header[name] is None:
        if default is ...:
            raise ProtocolError("bad_request", f"Missing field {name!r}.")
        return default
    value = header[name]
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise ProtocolError("bad_request", f"Field {name!r} must be a number.")
    if not isinstance(value, kind):
        raise ProtocolError("bad_request", f"Field {name!r} has the wrong type.")
    if isinstance(value, float) and not math.isfinite(value):
        raise ProtocolError("bad_request", f"Field {name!r} must be finite.")
    return value


def request_id(header: dict[str, Any]) -> str:
    rid = field(header, "id", str)
    if not 0 < len(rid) <= MAX_ID_CHARS:
        raise ProtocolError("bad_request", f"Field 'id' must be 1..{MAX_ID_CHARS} characters.")
    return rid


def image_spec(spec: Any) -> tuple[int, int, str, str]:
    """An "image" object -> (width, height, format, hash), checked against the limits."""
    if not isinstance(spec, dict):
        raise ProtocolError("bad_request", "Field 'image' must be an object.")
    w = field(spec, "width", int)
    h = field(spec, "height", int)
    fmt = field(spec, "format", str)
    digest = field(spec, "hash", str)
    if fmt not in FORMATS:
        raise ProtocolError("bad_request", f"Image format {fmt!r} is not one of {sorted(FORMATS)}.")
    if w < 1 or h < 1:
        raise ProtocolError("bad_request", f"Image size {w}x{h} is empty.")
    if w > MAX_SIDE or h > MAX_SIDE or w * h > MAX_PIXELS:
        raise ProtocolError("too_large", f"Image {w}x{h} is larger than the limit of {MAX_PIXELS // 1_000_000} megapixels.")
    if len(digest) != 32 or any(c not in "0123456789abcdef" for c in digest):
        raise ProtocolError("bad_request", "Image hash must be 32 lowercase hex characters.")
    return w, h, fmt, digest


def points(value: Any, width: int, height: int) -> list[tuple[float, float, bool]]:
    """[[x, y, positive], ...] in image pixels (x right, y down, pixel centres at +0.5); None = []."""
    out = []
    for x, y, positive in _point_list(value):
        if not (0 <= x < width and 0 <= y < height):
            raise ProtocolError("bad_request", f"Point ({x:g}, {y:g}) is outside the {width}x{height} image.")
        out.append((x, y, positive))
    return out


def _point_list(value: Any) -> list[tuple[float, float, bool]]:
    """Type check of a points field (not yet against an image's size)."""
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_POINTS:
        raise ProtocolError("bad_request", f"Field 'points' must be a list of at most {MAX_POINTS} points.")
    out = []
    for p in value:
        if not (isinstance(p, list) and len(p) == 3 and all(_is_number(c) for c in p[:2]) and isinstance(p[2], bool)):
            raise ProtocolError("bad_request", "Each point must be [x, y, positive] with numbers x, y and "
                                               "positive true or false.")
        x, y = float(p[0]), float(p[1])
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ProtocolError("bad_request", "Point coordinates must be finite numbers.")
        out.append((x, y, p[2]))
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def frame_ref(spec: Any, what: str, payload: list[Any], size: int) -> Any:
    """{"frame": i} -> payload[i], which must hold exactly size bytes."""
    if not isinstance(spec, dict):
        raise ProtocolError("bad_request", f"Field {what!r} must be an object.")
    i = field(spec, "frame", int)
    if not 0 <= i < len(payload):
        raise ProtocolError("bad_request", f"{what}: frame {i} does not exist.")
    if nbytes(payload[i]) != size:
        raise ProtocolError("bad_request", f"{what}: frame {i} is {nbytes(payload[i])} bytes, expected {size}.")
    return payload[i]


def box(value: Any) -> tuple[int, int, int, int]:
    if not (isinstance(value, list) and len(value) == 4 and all(isinstance(c, int) and not isinstance(c, bool) for c in value)):
        raise ProtocolError("bad_request", "A box must be [x, y, width, height] integers.")
    x, y, w, h = value
    if w < 0 or h < 0:
        raise ProtocolError("bad_request", "A box must not have a negative size.")
    return x, y, w, h


# ---- the requests' fields: one schema, used by the daemon (it checks every request before
# queuing it), by the client (it checks what it sends) and by docs/protocol.md, whose tables
# tests/unit/test_protocol.py compares with it ----

class Field(NamedTuple):
    name: str
    type: str              # as the doc's "type" column writes it (", optional" added when not required)
    required: bool = False


IMAGE_REF, POINTS, PAYLOAD_REF, NAME, REQUEST_ID = "image reference", "points", "payload reference", "string", "request id"
SCORE, DILATION = "number 0–1", f"integer 0–{MAX_DILATION}"

REQUESTS: dict[str, tuple[Field, ...]] = {
    "info": (),
    "select": (Field("image", IMAGE_REF, True), Field("points", POINTS, True), Field("mask", PAYLOAD_REF),
               Field("engine", NAME)),
    "similar": (Field("image", IMAGE_REF, True), Field("mask", PAYLOAD_REF), Field("points", POINTS),
                Field("engine", NAME), Field("min_score", SCORE)),
    "erase": (Field("image", IMAGE_REF, True), Field("mask", PAYLOAD_REF, True), Field("engine", NAME),
              Field("dilation", DILATION)),
    "cancel": (Field("target", REQUEST_ID, True),),
}
ONE_OF = {"similar": ("mask", "points")}   # ops that need at least one of these fields


def check_request(header: dict[str, Any], n_payload: int) -> str:
    """Checks a request header's op and the types and ranges of its fields against REQUESTS
    (the image's limits included; points against the image's size come later, with the image);
    -> op. Unknown fields are ignored (later versions may add some); null = absent."""
    op = field(header, "op", str)
    if op not in REQUESTS:
        raise ProtocolError("unknown_op", f"Unknown op {op!r}; known: {', '.join(OPS)}.")
    for f in REQUESTS[op]:
        value = header.get(f.name)
        if value is None:
            if f.required:
                raise ProtocolError("bad_request", f"A {op} request needs the field {f.name!r}.")
            continue
        _CHECKS[f.type](f.name, value, n_payload)
        if f.type == POINTS and f.required and not value:
            raise ProtocolError("bad_request", f"A {op} request needs at least one point.")
    need = ONE_OF.get(op)
    if need and all(not header.get(name) for name in need):
        raise ProtocolError("bad_request", f"A {op} request needs {' or '.join(repr(n) for n in need)}.")
    return op


def _check_image(name: str, value: Any, n_payload: int) -> None:
    image_spec(value)
    if value.get("frame") is not None:
        _frame_index(name, value, n_payload)


def _frame_index(name: str, value: Any, n_payload: int) -> int:
    i = value.get("frame")
    if type(i) is not int or not 0 <= i < n_payload:
        raise ProtocolError("bad_request", f"{name}: 'frame' must be the index of one of the "
                                           f"{n_payload} payload frames, not {i!r}.")
    return i


def _check_payload_ref(name: str, value: Any, n_payload: int) -> None:
    if not isinstance(value, dict):
        raise ProtocolError("bad_request", f"Field {name!r} must be an object {{\"frame\": i}}.")
    _frame_index(name, value, n_payload)
    if value.get("box") is not None:
        box(value["box"])


def _check_name(name: str, value: Any, n_payload: int) -> None:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_NAME_CHARS:
        raise ProtocolError("bad_request", f"Field {name!r} must be a name of 1..{MAX_NAME_CHARS} characters "
                                           "(omit it for the default).")


def _check_request_id(name: str, value: Any, n_payload: int) -> None:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_CHARS:
        raise ProtocolError("bad_request", f"Field {name!r} must be a request id of 1..{MAX_ID_CHARS} characters.")


def _check_score(name: str, value: Any, n_payload: int) -> None:
    if not _is_number(value) or not 0 <= value <= 1:   # NaN fails the range
        raise ProtocolError("bad_request", f"Field {name!r} must be a number from 0 to 1.")


def _check_dilation(name: str, value: Any, n_payload: int) -> None:
    if type(value) is not int or not 0 <= value <= MAX_DILATION:
        raise ProtocolError("bad_request", f"Field {name!r} must be an integer from 0 to {MAX_DILATION} (pixels).")


_CHECKS = {IMAGE_REF: _check_image, POINTS: lambda name, value, n: _point_list(value), PAYLOAD_REF: _check_payload_ref,
           NAME: _check_name, REQUEST_ID: _check_request_id, SCORE: _check_score, DILATION: _check_dilation}


def limits() -> dict[str, int]:
    """The limits a daemon reports in info (docs/protocol.md, Limits)."""
    return {"max_pixels": MAX_PIXELS, "max_side": MAX_SIDE, "max_message_bytes": MAX_MESSAGE_BYTES,
            "max_header_bytes": MAX_HEADER_BYTES, "max_nesting": MAX_NESTING, "max_points": MAX_POINTS,
            "max_instances": MAX_INSTANCES, "max_id_chars": MAX_ID_CHARS, "max_dilation": MAX_DILATION,
            "max_requests": MAX_REQUESTS, "workers": WORKERS}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _count(sizes: Any) -> str:
    return str(len(sizes)) if isinstance(sizes, list) else "invalid"


def nbytes(frame: Any) -> int:
    """Size in bytes of a bytes-like frame."""
    if isinstance(frame, (bytes, bytearray)):
        return len(frame)
    return memoryview(frame).nbytes
