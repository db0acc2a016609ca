"""max_header_size (431), max_body_size (413), client_header_timeout (408),
client_idle_timeout (silent close)."""

import time

from sluicetest import RawClient, Response, assert_proxy_error, build_request

LIMITS = {"max_header_size": "8k", "max_body_size": "64k"}


def test_headers_too_large_431(backend, proxy):
    s = proxy(backend, server=LIMITS)
    with RawClient(s.port(), timeout=5) as c:
        c.send(build_request("GET", "/big-head", [(f"X-Pad-{i}", "v" * 100) for i in range(200)])
               + build_request("GET", "/smuggled"))
        r = c.read_response()
        assert_proxy_error(r, 431, "headers_too_large", closed=True)
        assert c.is_closed(3)
    assert backend.requests == []


def test_huge_request_line_431(backend, proxy):
    s = proxy(backend, server=LIMITS)
    with RawClient(s.port(), timeout=5) as c:
        c.send(b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: t\r\n\r\n")
        r = c.read_response()
        assert r.status in (414, 431), r
        if r.status == 431:
            assert_proxy_error(r, 431, "headers_too_large", closed=True)
    assert backend.requests == []


def test_headers_under_limit_pass(backend, proxy):
    s = proxy(backend, server=LIMITS)
    hdrs = [(f"X-Pad-{i}", "v" * 100) for i in range(50)]  # ~6 KB
    with RawClient(s.port(), timeout=5) as c:
        r = c.request("GET", "/ok", hdrs)
        assert r.status == 200
    assert backend.requests[0].header("x-pad-49") == "v" * 100


def test_content_length_over_limit_413_without_backend(backend, proxy):
    s = proxy(backend, server=LIMITS)
    with RawClient(s.port(), timeout=5) as c:
        # The body is never sent: the proxy must answer from the headers alone.
        c.send(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n")
        r = c.read_response()
        assert_proxy_error(r, 413, "payload_too_large", closed=True)
    assert backend.accepted == 0, "the backend must not be contacted"


def test_expect_continue_over_limit_gets_413_not_100(backend, proxy):
    s = proxy(backend, server=LIMITS)
    with RawClient(s.port(), timeout=5) as c:
        c.send(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n"
               b"Expect: 100-continue\r\n\r\n")
        r = c.read_response(skip_interim=False)
        assert_proxy_error(r, 413, "payload_too_large", closed=True)
    assert backend.accepted == 0


def test_body_at_limit_passes(backend, proxy):
    backend.on("/up", Response(echo_sha256=True))
    s = proxy(backend, server=LIMITS)
    body = b"z" * 65536
    with RawClient(s.port(), timeout=5) as c:
        r = c.request("POST", "/up", body=body)
        assert r.status == 200 and r.header("x-body-length") == "65536"


def test_chunked_body_over_limit_413(backend, proxy):
    backend.on("/up", Response(echo_sha256=True))
    s = proxy(backend, server=LIMITS)
    with RawClient(s.port(), timeout=10) as c:
        c.send(build_request("POST", "/up", [("Transfer-Encoding", "chunked")]))
        piece = b"x" * 8192
        try:
            for _ in range(12):  # 96 KB > 64 KB
                c.send(b"%x\r\n" % len(piece) + piece + b"\r\n")
            c.send(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        r = c.read_response()
        assert_proxy_error(r, 413, "payload_too_large", closed=True)
        assert c.wait_closed(3) is not None
    # The backend never received a complete body over the limit.
    assert all(len(q.body) <= 65536 for q in backend.requests)


def test_zero_max_body_size_is_unlimited(backend, proxy):
    backend.on("/up", Response(echo_sha256=True))
    s = proxy(backend, server={"max_body_size": 0})
    body = b"q" * (200 * 1024)
    with RawClient(s.port(), timeout=10) as c:
        assert c.request("POST", "/up", body=body).header("x-body-length") == str(len(body))


def test_client_header_timeout_408(backend, proxy):
    s = proxy(backend, server={"client_header_timeout": "1s"})
    with RawClient(s.port(), timeout=6) as c:
        c.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n")  # head never completed
        t0 = time.monotonic()
        r = c.read_response()
        took = time.monotonic() - t0
        assert_proxy_error(r, 408, "request_timeout", closed=True)
        assert 0.7 <= took <= 3.0, f"408 after {took:.2f}s, timeout is 1s"
        assert c.is_closed(3)
    assert backend.requests == []


def test_slowloris_trickle_still_408(backend, proxy):
    # Bytes keep arriving, but the whole head is not there within the timeout.
    s = proxy(backend, server={"client_header_timeout": "1s"})
    with RawClient(s.port(), timeout=6) as c:
        c.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n")
        t0 = time.monotonic()
        got = None
        while time.monotonic() - t0 < 4:
            try:
                c.send(b"X-A: b\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            try:
                got = c.recv_some(timeout=0.2)
                break
            except OSError:
                continue  # socket.timeout: nothing yet
            except Exception:  # ConnectionClosed
                break
        took = time.monotonic() - t0
        assert got is not None, "no 408 before close"
        c.buf = got + c.buf
        r = c.read_response()
        assert_proxy_error(r, 408, "request_timeout", closed=True)
        assert took <= 3.0, f"trickling client kept the connection for {took:.2f}s"
    assert backend.requests == []


def test_client_idle_timeout_closes_silently(backend, proxy):
    s = proxy(backend, server={"client_idle_timeout": "1s", "client_header_timeout": "10s"})
    with RawClient(s.port(), timeout=6) as c:
        assert c.request("GET", "/one").status == 200
        t0 = time.monotonic()
        assert c.is_closed(5), "idle keep-alive connection not closed"  # no bytes allowed
        took = time.monotonic() - t0
        assert 0.7 <= took <= 3.5, f"closed after {took:.2f}s idle, timeout is 1s"


def test_active_connection_not_closed_by_idle_timeout(backend, proxy):
    s = proxy(backend, server={"client_idle_timeout": "1s"})
    with RawClient(s.port(), timeout=6) as c:
        t0 = time.monotonic()
        n = 0
        while time.monotonic() - t0 < 2.5:
            assert c.request("GET", f"/busy/{n}").status == 200
            n += 1
            time.sleep(0.3)  # pacing: stay under the idle timeout on purpose
    assert len({q.conn_id for q in backend.requests}) == 1


def test_slow_body_within_limits_is_not_timed_out_by_header_timeout(backend, proxy):
    backend.on("/up", Response(echo_sha256=True))
    s = proxy(backend, server={"client_header_timeout": "1s"})
    with RawClient(s.port(), timeout=6) as c:
        c.send(build_request("POST", "/up", [("Content-Length", "10")]))
        for i in range(3):
            time.sleep(0.5)  # pacing: the body trickles in past the header timeout
            c.send(b"abc")
        c.send(b"d")
        r = c.read_response()
        assert r.status == 200 and r.header("x-body-length") == "10"
