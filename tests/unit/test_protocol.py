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
    ([b'{"v":true,"sizes":[]}'], "version"),           # issue 26.5: the integer 1, not true or 1.0
    ([b'{"v":1.0,"sizes":[]}'], "version"),
    ([b'{"v":1}'], "bad_request"),                      # sizes is in every message
    ([b'{"v":1,"sizes":[1.0]}', b"a"], "bad_request"),
    ([b'{"v":1,"sizes":[true]}', b"a"], "bad_request"),
    ([b'{"v":1,"sizes":"3"}'], "bad_request"),
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
    assert protocol.points([[1, 2.5, True], [0, 0, False]], 10, 10) == [(1.0, 2.5, True), (0.0, 0.0, False)]
    assert protocol.points(None, 10, 10) == []
    for bad in ([[10, 1, True]], [[-0.1, 1, True]], [[math.nan, 1, True]], [["1", 1, True]], [[1, 1]], "x",
                [[1, 1, True]] * (protocol.MAX_POINTS + 1), [[True, 1, True]],
                [[1, 1, 2]], [[1, 1, 0]], [[1, 1, "yes"]]):   # positive is true or false, as documented
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


@pytest.mark.parametrize("frames", [
    [b'{"v":2,"id":"abc","sizes":[]}'],                              # version
    [b'{"v":true,"id":"abc","sizes":[]}'],
    [b'{"v":1,"id":"abc","sizes":[5]}'],                             # frame count
    [b'{"v":1,"id":"abc","sizes":[5]}', b"abc"],                     # frame size
    [b'{"v":1,"id":"abc"}'],                                         # no sizes
])
def test_decode_errors_carry_the_readable_id(frames):
    """Issue 26.2: an error about a header whose id could be read goes back to that id."""
    with pytest.raises(ProtocolError) as e:
        protocol.decode(frames)
    assert e.value.rid == "abc"


def test_deep_nesting_is_bad_request_before_parsing():
    """Issue 26.3: 5,000 levels (10 KB) is a bad_request, not a RecursionError inside json."""
    deep = b'{"v":1,"id":"abc","sizes":[],"x":' + b"[" * 5000 + b"]" * 5000 + b"}"
    with pytest.raises(ProtocolError) as e:
        protocol.decode([deep])
    assert e.value.code == "bad_request" and "nested" in e.value.message
    ok = b'{"v":1,"sizes":[],"x":' + b"[" * (protocol.MAX_NESTING - 1) + b"]" * (protocol.MAX_NESTING - 1) + b"}"
    assert protocol.decode([ok]).header["x"]
    brackets_in_a_string = json.dumps({"v": 1, "sizes": [], "s": "[" * 5000}).encode()
    assert protocol.decode([brackets_in_a_string]).header["s"] == "[" * 5000


IMG = {"width": 4, "height": 3, "format": "rgba8", "hash": "a" * 32}


@pytest.mark.parametrize("header", [
    {"op": "select", "image": IMG, "points": [[1, 1, 2]]},            # positive: 2
    {"op": "select", "image": IMG, "points": [[1, 1, True]], "engine": ""},
    {"op": "select", "image": IMG, "points": [[1, 1, True]], "engine": 7},
    {"op": "select", "image": IMG, "points": []},
    {"op": "select", "image": IMG},
    {"op": "select", "points": [[1, 1, True]]},
    {"op": "select", "image": dict(IMG, frame=0), "points": [[1, 1, True]]},   # no payload frame 0
    {"op": "select", "image": dict(IMG, frame=True), "points": [[1, 1, True]]},
    {"op": "select", "image": IMG, "points": [[1, 1, True]], "mask": {"frame": "0"}},
    {"op": "select", "image": IMG, "points": [[1, 1, True]], "mask": 0},
    {"op": "similar", "image": IMG},                                  # needs a mask or points
    {"op": "similar", "image": IMG, "points": [[1, 1, True]], "min_score": True},
    {"op": "similar", "image": IMG, "points": [[1, 1, True]], "min_score": 1.5},
    {"op": "erase", "image": IMG},
    {"op": "erase", "image": IMG, "mask": {"frame": 0}, "dilation": 3.0},
    {"op": "erase", "image": IMG, "mask": {"frame": 0}, "dilation": -1},
    {"op": "erase", "image": IMG, "mask": {"frame": 0}, "dilation": protocol.MAX_DILATION + 1},
    {"op": "cancel"},
    {"op": "cancel", "target": ""},
])
def test_check_request_rejects_what_the_doc_rejects(header):
    """Issue 26.5: one schema (protocol.REQUESTS) decides, for the daemon and the client."""
    with pytest.raises(ProtocolError) as e:
        protocol.check_request(header, 1 if header.get("op") == "erase" else 0)
    assert e.value.code == "bad_request" and e.value.message.endswith(".")


def test_check_request_accepts_the_documented_forms():
    assert protocol.check_request({"op": "info"}, 0) == "info"
    assert protocol.check_request({"op": "select", "image": IMG, "points": [[1, 1.5, True]], "engine": None}, 0)
    assert protocol.check_request({"op": "select", "image": dict(IMG, frame=1), "points": [[1, 1, False]],
                                   "mask": {"frame": 0, "box": [0, 0, 2, 2]}}, 2)
    assert protocol.check_request({"op": "similar", "image": IMG, "mask": {"frame": 0}, "min_score": 0}, 1)
    assert protocol.check_request({"op": "erase", "image": IMG, "mask": {"frame": 0}, "dilation": 0,
                                   "future_field": 1}, 1)
    with pytest.raises(ProtocolError) as e:
        protocol.check_request({"op": "fly"}, 0)
    assert e.value.code == "unknown_op"
    with pytest.raises(ProtocolError) as e:
        protocol.check_request({"op": "select", "image": dict(IMG, width=100000), "points": []}, 0)
    assert e.value.code == "too_large"


def test_the_docs_request_tables_are_the_schema():
    """Issue 26.5: each request table in docs/protocol.md lists exactly protocol.REQUESTS' fields and types."""
    import re
    from tests.conftest import REPO
    doc = (REPO / "docs" / "protocol.md").read_text()
    for op, fields in protocol.REQUESTS.items():
        section = re.search(rf"### `{op}`.*?\n(.*?)(?=\n### |\n## )", doc, re.S)
        assert section, op
        rows = re.findall(r"^\| `(\w+)` \| ([^|]*?) \|", section.group(1), re.M)
        documented = {name: kind.strip() for name, kind in rows}
        expected = {f.name: f.type + ("" if f.required else ", optional") for f in fields}
        assert documented == expected, op


def test_every_guarantee_names_a_test_that_exists():
    """docs/protocol.md's Guarantees: each row names tests, and each named test exists."""
    import re
    from tests.conftest import REPO
    doc = (REPO / "docs" / "protocol.md").read_text()
    section = doc[doc.index("## Guarantees"):]
    section = section[:section.index("\n## ", 5)]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "`" in line.split("|")[2]]
    assert len(rows) >= 10
    for row in rows:
        path = None
        for ref in re.findall(r"`([^`]+)`", row.split("|")[2]):
            file, _, name = ref.rpartition("::")
            path = REPO / "tests" / file if file else path
            assert path is not None and path.is_file(), ref
            assert re.search(rf"^def {name}\(", path.read_text(), re.M), ref
