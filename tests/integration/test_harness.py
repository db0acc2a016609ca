"""Self-tests of the harness (Backend, RawClient): they need no sluice binary and make sure
that a failure elsewhere is the proxy's, not the test origin's or the client's."""

import hashlib
import socket

from sluicetest import (Response, RawClient, build_request, free_port, pattern_bytes,
                        pattern_sha256, port_refuses)


def test_backend_records_and_keeps_alive(backend):
    with RawClient(backend.port) as c:
        for i in range(3):
            r = c.request("GET", f"/x/{i}?q=1", headers=[("X-Test", f"v{i}")])
            assert r.status == 200 and r.framing == "content-length"
            assert r.json()["target"] == f"/x/{i}?q=1"
    reqs = backend.wait_requests(3)
    assert [q.target for q in reqs] == ["/x/0?q=1", "/x/1?q=1", "/x/2?q=1"]
    assert reqs[1].headers == [("Host", "test.local"), ("X-Test", "v1")]
    assert backend.accepted == 1


def test_backend_pipelined_and_chunked_request(backend):
    backend.on("/sum", Response(echo_sha256=True))
    body = pattern_bytes(100000)
    chunked = b"".join(b"%x\r\n" % len(body[i:i + 7000]) + body[i:i + 7000] + b"\r\n"
                       for i in range(0, len(body), 7000)) + b"0\r\n\r\n"
    with RawClient(backend.port) as c:
        c.send(build_request("POST", "/sum", [("Transfer-Encoding", "chunked")]) + chunked
               + build_request("GET", "/two") + build_request("GET", "/three"))
        r1 = c.read_response()
        r2 = c.read_response()
        r3 = c.read_response()
    assert r1.body.decode() == hashlib.sha256(body).hexdigest()
    assert r2.json()["target"] == "/two" and r3.json()["target"] == "/three"
    assert backend.requests[0].framing == "chunked"


def test_backend_response_modes(backend):
    backend.on("/chunked", Response(body_size=300000, mode="chunked"))
    backend.on("/close", Response(body=b"until-close", mode="close"))
    backend.on("/head", Response(body=b"x" * 50))
    backend.on("/nc", Response(status=204, mode="none"))
    with RawClient(backend.port) as c:
        r = c.request("GET", "/chunked")
        assert r.framing == "chunked" and hashlib.sha256(r.body).hexdigest() == pattern_sha256(300000)
        r = c.request("HEAD", "/head")
        assert r.header("content-length") == "50" and r.body == b""
        r = c.request("GET", "/nc")
        assert r.status == 204
        r = c.request("GET", "/close")
        assert r.framing == "close" and r.body == b"until-close"
        assert c.is_closed()


def test_backend_reset_and_upgrade(backend):
    backend.on("/reset", Response(action="reset"))
    backend.on("/ws", Response(action="upgrade"))
    with RawClient(backend.port) as c:
        c.send(build_request("GET", "/reset"))
        assert c.is_closed()
    with RawClient(backend.port) as c:
        c.send(build_request("GET", "/ws", [("Upgrade", "websocket"), ("Connection", "Upgrade")]))
        r = c.read_response()
        assert r.status == 101
        c.send(b"hello")
        assert c.recv_exact(5) == b"hello"


def test_free_port_and_refusal():
    p = free_port()
    assert port_refuses(p)
    s = socket.socket()
    s.bind(("127.0.0.1", p))
    s.listen(1)
    try:
        assert not port_refuses(p)
    finally:
        s.close()
