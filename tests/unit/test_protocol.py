import json
import math

import pytest

from simpson_client import protocol
from simpson_client.protocol import ProtocolError


def test_encode_decode_round_trip():
    frames = protocol.encode({"op": "info", "id": "a"}, [b"abc", bytearray(b"de")])
    msg = protocol.decode(frames)
    assert msg.header["op"] == "info" and msg.header["v"] == protocol.VERSION
    assert msg.header["sizes"] == [3, 2]
    assert [bytes(f) for f in msg.frames] == [b"abc", b"de"]


@pytest.mark.parametrize("frames,code", [
    ([], "bad_request"),
    ([b"\xff\xfe"], "bad_request"),
    ([b"[1,2]"], "bad_request"),
    ([b'{"v":1,"sizes":[1]}'], "bad_request"),
    ([b'{"v":1,"sizes":[3]}', b"ab"], "bad_request"),
    ([b'{"v":3}'], "version"),
    ([b'{"v":1,"x":NaN}'], "bad_request"),
    ([b" " * (protocol.MAX_HEADER_BYTES + 1)], "too_large"),
])
def test_decode_rejects(frames, code):
    with pytest.raises(ProtocolError) as e:
        protocol.decode(frames)
    assert e.value.code == code and e.value.message


def test_image_spec_limits():
    ok = {"width": 4, "height": 3, "format": "rgba8", "hash": "a" * 32}
    assert protocol.image_spec(ok) == (4, 3, "rgba8", "a" * 32)
    for bad, code in [(dict(ok, width=0), "bad_request"), (dict(ok, format="cmyk"), "bad_request"),
                      (dict(ok, width=protocol.MAX_SIDE + 1), "too_large"),
                      (dict(ok, width=10000, height=10000), "too_large"), (dict(ok, hash="xyz"), "bad_request"),
                      (dict(ok, width=True), "bad_request"), (dict(ok, width=4.0), "bad_request")]:
        with pytest.raises(ProtocolError) as e:
            protocol.image_spec(bad)
        assert e.value.code == code


def test_points():
    assert protocol.points([[1, 2.5, True], [0, 0, 0]], 10, 10) == [(1.0, 2.5, True), (0.0, 0.0, False)]
    for bad in ([[10, 1, True]], [[-0.1, 1, True]], [[math.nan, 1, True]], [["1", 1, True]], [[1, 1]], "x",
                [[1, 1, True]] * (protocol.MAX_POINTS + 1), [[True, 1, True]]):
        with pytest.raises(ProtocolError):
            protocol.points(bad, 10, 10)


def test_image_hash_depends_on_size_and_format():
    a = protocol.image_hash(2, 1, "rgba8", b"\0" * 8)
    assert a != protocol.image_hash(1, 2, "rgba8", b"\0" * 8)
    assert a != protocol.image_hash(1, 1, "rgba16", b"\0" * 8)
    assert len(a) == 32 and a == protocol.image_hash(2, 1, "rgba8", bytearray(8))


def test_encode_refuses_nan():
    with pytest.raises(ValueError):
        protocol.encode({"x": math.nan})
    assert json.loads(protocol.encode({"x": 1.5})[0])["x"] == 1.5


def test_client_refuses_oversized_images_before_sending():
    from simpson_client import Image, RequestRejected
    with pytest.raises(RequestRejected) as e:
        Image(10000, 5000, b"", "rgba8")
    assert e.value.code == "too_large" and "megapixels" in e.value.user_message
