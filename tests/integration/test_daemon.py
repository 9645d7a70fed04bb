"""A real daemon on real loopback sockets, through both client transports."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from simpson_client import Client, Image, RequestRejected
from simpson_client import protocol
from tests.conftest import disc_centres, scene


def _image(pixels: np.ndarray) -> Image:
    return Image(pixels.shape[1], pixels.shape[0], pixels.tobytes(), "rgba8")


def test_info(daemon, transport):
    info = Client(daemon.settings(transport)).info()
    assert info["protocol"] == protocol.VERSION
    assert "classic" in info["engines"]
    assert info["defaults"]["erase"]


def test_select_similar_erase_round_trip(daemon, transport):
    px = scene(seed=1)
    img = _image(px)
    client = Client(daemon.settings(transport))
    seen = []
    x, y = disc_centres(320, 240)[0]
    mask = client.select(img, [(x, y, True)], progress=lambda f, m: seen.append(f))
    sel = np.frombuffer(mask.data, np.uint8).reshape(240, 320)
    yy, xx = np.mgrid[:240, :320]
    disc = (xx - x) ** 2 + (yy - y) ** 2 <= 18 ** 2
    iou = (disc & (sel > 0)).sum() / (disc | (sel > 0)).sum()
    assert iou > 0.8
    bx, by, bw, bh = mask.box                     # the reply carried only the bounding box
    ys, xs = np.nonzero(sel)
    assert (bx, by, bw, bh) == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)

    sim = client.similar(img, [(x, y, True)])
    assert len(sim.instances) >= 4                # the clicked disc and three more
    union = np.frombuffer(sim.mask.data, np.uint8).reshape(240, 320) > 0
    for cx, cy in disc_centres(320, 240):
        assert union[cy, cx]
    bx, by = int(320 * 0.45) + 15, int(240 * 0.75) + 15
    assert not union[by, bx]                      # the blue square is not a red disc
    assert len(client.similar(img, [(x, y, True)], min_score=0.0).instances) >= len(sim.instances)

    patch = client.erase(img, sim.mask.data)
    x0, y0, w, h = patch.box
    out = np.frombuffer(patch.data, np.uint8).reshape(h, w, 4)
    full = px.copy()
    full[y0:y0 + h, x0:x0 + w] = out
    changed = np.any(full != px, axis=2)
    assert changed[union].mean() > 0.9            # the discs were filled
    grown = np.zeros_like(union)
    import cv2
    grown = cv2.dilate(union.astype(np.uint8), np.ones((2 * 40 + 1,) * 2, np.uint8)) > 0
    assert not changed[~grown].any()              # nothing outside the (dilated) hole changed
    red = (full[..., 0] > 180) & (full[..., 1] < 80)
    assert red.sum() < 30


@pytest.mark.parametrize("depth", [8, 16])
def test_krita_order_pixels_select_and_erase_as_their_rgba_twin(daemon, depth):
    """bgra8 / bgra16 (Krita's own channel order, sent unswapped): the daemon sees the same colours as
    from the same pixels in RGBA (the same masks), and the erase patch comes back in BGRA, channel for
    channel the RGBA request's patch."""
    px = scene(seed=1)
    rgba = px if depth == 8 else px.astype("<u2") * 257
    bgra = np.ascontiguousarray(rgba[..., [2, 1, 0, 3]])
    twins = Image(320, 240, rgba.tobytes(), f"rgba{depth}"), Image(320, 240, bgra.tobytes(), f"bgra{depth}")
    client = Client(daemon.settings("pyzmq"))
    x, y = disc_centres(320, 240)[0]
    sel = [client.select(img, [(x, y, True)]) for img in twins]
    assert sel[0].box == sel[1].box and sel[0].crop == sel[1].crop and sel[0].box[2] > 0
    sim = [client.similar(img, [(x, y, True)]) for img in twins]
    assert sim[0].mask.crop == sim[1].mask.crop and len(sim[0].instances) == len(sim[1].instances) >= 4
    patches = [client.erase(img, sim[0].mask.data) for img in twins]
    assert [p.format for p in patches] == [f"rgba{depth}", f"bgra{depth}"] and patches[0].box == patches[1].box
    dtype = np.uint8 if depth == 8 else np.dtype("<u2")
    w, h = patches[0].box[2:]
    got = [np.frombuffer(p.data, dtype).reshape(h, w, 4) for p in patches]
    assert np.array_equal(got[1], got[0][..., [2, 1, 0, 3]])
    assert not np.array_equal(got[0], got[1])      # the two orders differ (red discs on green)


@pytest.fixture
def sent_bytes(monkeypatch) -> list[int]:
    """The size of every message the pyzmq transport sends while the test runs."""
    from simpson_client import transport as tr
    sent: list[int] = []
    orig = tr.PyzmqConnection.send

    def spy(self, frames):
        sent.append(sum(protocol.nbytes(f) for f in frames))
        return orig(self, frames)

    monkeypatch.setattr(tr.PyzmqConnection, "send", spy)
    return sent


def test_cached_image_is_sent_once(daemon, sent_bytes):
    px = scene(seed=2)
    img = _image(px)
    client = Client(daemon.settings("pyzmq"))
    sent = sent_bytes
    x, y = disc_centres(320, 240)[1]
    client.select(img, [(x, y, True)])
    first = list(sent)
    sent.clear()
    client.select(img, [(x + 2, y, True)])
    # the first call may carry the pixels (unless another test cached them); the second never does
    assert max(sent) < 4096
    assert sum(first) >= 0


def test_errors_are_sentences(daemon, transport):
    img = _image(scene(seed=3))
    client = Client(daemon.settings(transport))
    with pytest.raises(RequestRejected) as e:
        client.select(img, [(1000.0, 5.0, True)])
    assert e.value.code == "bad_request" and "outside" in e.value.user_message
    with pytest.raises(RequestRejected) as e:
        client.erase(img, bytes(320 * 240))
    assert "empty" in e.value.user_message
    with pytest.raises(RequestRejected) as e:
        client.similar(img, [(10.0, 5.0, True)], min_score=1.5)
    assert e.value.code == "bad_request" and "min_score" in e.value.user_message
    with pytest.raises(RequestRejected) as e:
        client.select(img, [(10.0, 5.0, True)], engine="nope")
    assert e.value.code == "unavailable"


def test_eight_concurrent_clients(daemon):
    results: dict[int, object] = {}

    def work(i: int) -> None:
        try:
            px = scene(seed=100 + i)
            img = _image(px)
            x, y = disc_centres(320, 240)[i % 4]
            m = Client(daemon.settings("stdlib" if i % 2 else "pyzmq")).select(img, [(x, y, True)])
            sel = np.frombuffer(m.data, np.uint8).reshape(240, 320)
            results[i] = bool(sel[y, x] == 255 and (sel > 0).sum() < 3 * 3.15 * 18 ** 2)
        except Exception as e:  # reported below
            results[i] = e

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert results == {i: True for i in range(8)}
    assert daemon.alive()


def test_pixels_that_do_not_match_their_hash_are_refused(daemon):
    """Issue 26.4: pixels sent with a hash they do not have get bad_request (not a result), and
    are not cached."""
    import json

    import zmq
    px = scene(seed=11)
    data = px.tobytes()
    spec = {"width": 320, "height": 240, "format": "rgba8", "hash": "0123456789abcdef" * 2}
    x, y = disc_centres(320, 240)[0]
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(daemon.endpoint)

    def ask(frames):
        sock.send_multipart(frames)
        while True:
            assert sock.poll(30000)
            head = json.loads(sock.recv_multipart()[0])
            if head["kind"] != "progress":
                return head

    head = ask(protocol.encode({"op": "select", "id": "h1", "image": dict(spec, frame=0),
                                "points": [[x, y, True]]}, [data]))
    assert head["kind"] == "error" and head["code"] == "bad_request" and "hash" in head["message"], head
    head = ask(protocol.encode({"op": "select", "id": "h2", "image": spec, "points": [[x, y, True]]}))
    assert head["code"] == "image_unknown"
    sock.close()


def test_a_request_may_send_a_mask_as_box_and_crop(daemon, sent_bytes):
    """Issue 26.10: a refinement click sends the previous Mask as its box + crop (as replies do),
    with the same result as the full-size mask, and far fewer bytes."""
    px = scene(seed=12)
    img = _image(px)
    client = Client(daemon.settings("pyzmq"))
    (x, y), (x2, y2) = disc_centres(320, 240)[:2]
    first = client.select(img, [(x, y, True)])
    sent_bytes.clear()
    by_box = client.select(img, [(x, y, True), (x2, y2, True)], previous=first)
    small = max(sent_bytes)
    full = client.select(img, [(x, y, True), (x2, y2, True)], previous=first.data)
    assert by_box.box == full.box and by_box.crop == full.crop
    assert small < 4096 + first.box[2] * first.box[3] < 320 * 240
    assert client.erase(img, first).data == client.erase(img, first.data).data
    with pytest.raises(RequestRejected) as e:     # a box outside the image
        from simpson_client.client import Mask
        client.select(img, [(x, y, True)], previous=Mask(320, 240, (300, 0, 40, 10), bytes(400)))
    assert e.value.code == "bad_request" and "box" in e.value.user_message
