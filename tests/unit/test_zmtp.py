"""The stdlib ZMTP transport against a real libzmq ROUTER (pyzmq)."""
import threading

import pytest
import zmq

from simpson_client.zmtp import DealerSocket, TransportClosed


@pytest.fixture
def router():
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    yield sock, port
    sock.close(0)


def test_round_trip_small_and_large_frames(router):
    sock, port = router
    dealer = DealerSocket("127.0.0.1", port)
    big = bytes(range(256)) * 40000          # 10 MB: long frames
    dealer.send_multipart([b"hello", b"", big])
    ident, *frames = sock.recv_multipart()
    assert frames == [b"hello", b"", big]
    sock.send_multipart([ident, b"x" * 300, big[:100], b""])
    assert dealer.recv_multipart(timeout=5) == [b"x" * 300, big[:100], b""]
    dealer.close()


def test_timeout_returns_none(router):
    _, port = router
    dealer = DealerSocket("127.0.0.1", port)
    assert dealer.recv_multipart(timeout=0.05) is None
    dealer.close()


def test_peer_gone_raises(router):
    sock, port = router
    dealer = DealerSocket("127.0.0.1", port)
    sock.close(0)
    with pytest.raises(TransportClosed):
        dealer.recv_multipart(timeout=5)


def test_not_a_zmq_peer():
    import socket
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def answer():
        conn, _ = srv.accept()
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\n" + b"x" * 64)
        conn.close()

    t = threading.Thread(target=answer)
    t.start()
    with pytest.raises(TransportClosed):
        DealerSocket("127.0.0.1", srv.getsockname()[1], connect_timeout=2)
    t.join()
    srv.close()


def test_refused():
    with pytest.raises(OSError):
        DealerSocket("127.0.0.1", 1, connect_timeout=1)
