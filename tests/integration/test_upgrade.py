"""Upgrade: websocket becomes a raw two-way tunnel after the backend's 101; h2c is not
forwarded."""

import hashlib

from sluicetest import RawClient, Response, build_request, pattern_bytes, wait_until

WS_HEADERS = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
              ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13")]


def _open_ws(port):
    c = RawClient(port, timeout=10)
    c.send(build_request("GET", "/ws", WS_HEADERS))
    r = c.read_response()
    assert r.status == 101, r
    assert (r.header("upgrade") or "").lower() == "websocket"
    assert "upgrade" in (r.header("connection") or "").lower()
    return c


def test_websocket_tunnel_echo(backend, proxy):
    backend.on("/ws", Response(action="upgrade"))
    s = proxy(backend)
    c = _open_ws(s.port())
    try:
        for msg in (b"\x81\x05hello", b"\x00\xff binary \r\n\r\n GET / HTTP/1.1\r\n\r\n", b"x"):
            c.send(msg)
            assert c.recv_exact(len(msg)) == msg
        big = pattern_bytes(1 << 20)
        c.send(big)
        got = c.recv_exact(len(big))
        assert hashlib.sha256(got).digest() == hashlib.sha256(big).digest()
    finally:
        c.close()
    req = backend.requests[0]
    assert (req.header("upgrade") or "").lower() == "websocket"
    assert "upgrade" in (req.header("connection") or "").lower()
    assert req.header("sec-websocket-key") == "dGhlIHNhbXBsZSBub25jZQ=="
    # The client's close reaches the backend.
    wait_until(lambda: "client-eof" in backend.upgrade_events, 5, message="backend sees EOF")


def test_websocket_bytes_sent_with_upgrade_request(backend, proxy):
    # Bytes pipelined right behind the upgrade request belong to the tunnel.
    backend.on("/ws", Response(action="upgrade"))
    s = proxy(backend)
    with RawClient(s.port(), timeout=10) as c:
        c.send(build_request("GET", "/ws", WS_HEADERS) + b"early-bytes")
        r = c.read_response()
        assert r.status == 101
        assert c.recv_exact(len(b"early-bytes")) == b"early-bytes"


def test_websocket_backend_close_reaches_client(backend, proxy):
    def once(req):
        return Response(action="upgrade")
    backend.on("/ws", once)
    s = proxy(backend)
    c = _open_ws(s.port())
    try:
        c.send(b"ping")
        assert c.recv_exact(4) == b"ping"
        backend.stop()
        assert c.wait_closed(5) is not None, "backend close must close the client tunnel"
    finally:
        c.close()


def test_websocket_refused_by_backend_is_plain_response(backend, proxy):
    backend.on("/ws", Response(status=400, body=b"no upgrade here"))
    s = proxy(backend)
    with RawClient(s.port(), timeout=10) as c:
        c.send(build_request("GET", "/ws", WS_HEADERS))
        r = c.read_response()
        assert r.status == 400 and r.body == b"no upgrade here"


def test_h2c_upgrade_not_forwarded(backend, proxy):
    s = proxy(backend)
    with RawClient(s.port(), timeout=10) as c:
        r = c.request("GET", "/h2c", [("Connection", "Upgrade, HTTP2-Settings"),
                                      ("Upgrade", "h2c"),
                                      ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA")])
        assert r.status == 200, "h2c is proxied as plain HTTP/1.1"
        assert not r.connection_close, "a plain HTTP/1.1 exchange: the connection stays open"
        assert r.header("upgrade") is None
        # Still plain HTTP/1.1 afterwards.
        assert c.request("GET", "/after").status == 200
    req = backend.requests[0]
    assert req.header("upgrade") is None
    assert req.header("http2-settings") is None
    assert "upgrade" not in (req.header("connection") or "").lower()


def test_websocket_and_plain_traffic_concurrently(backend, proxy):
    backend.on("/ws", Response(action="upgrade"))
    s = proxy(backend)
    c = _open_ws(s.port())
    try:
        with RawClient(s.port()) as plain:
            for i in range(5):
                c.send(b"m%d" % i)
                assert plain.request("GET", f"/p/{i}").status == 200
                assert c.recv_exact(2) == b"m%d" % i
    finally:
        c.close()
