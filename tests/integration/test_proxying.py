"""Core proxying: keep-alive, pipelining, HTTP/1.0, HEAD/204/304, close-delimited
responses, Expect: 100-continue."""

import hashlib
import json
import subprocess

from sluicetest import RawClient, Response, build_request, http_request, wait_until


def test_get_is_proxied(backend, proxy):
    s = proxy(backend)
    r = http_request(s.port(), "GET", "/hello?a=1&b=2", host="app.test")
    assert r.status == 200
    assert r.header("x-backend") == "b1"
    info = r.json()
    assert info["method"] == "GET"
    assert info["target"] == "/hello?a=1&b=2"
    assert info["version"] == "HTTP/1.1"
    req = backend.requests[0]
    assert req.header("host") == "app.test"


def test_curl_through_proxy(backend, proxy):
    backend.on("/c", Response(body=b"from-backend\n"))
    s = proxy(backend)
    out = subprocess.run(["curl", "-sS", "-i", f"http://127.0.0.1:{s.port()}/c"],
                         capture_output=True, timeout=10)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(b"HTTP/1.1 200")
    assert out.stdout.endswith(b"\r\n\r\nfrom-backend\n")


def test_keepalive_client_and_upstream(backend, proxy):
    s = proxy(backend)
    with RawClient(s.port()) as c:
        for i in range(10):
            r = c.request("GET", f"/k/{i}")
            assert r.status == 200
            assert r.json()["target"] == f"/k/{i}"
            assert not r.connection_close
    # Sequential requests on one worker reuse one pooled upstream connection.
    assert backend.accepted == 1, f"upstream connections: {backend.accepted}"
    assert len({q.conn_id for q in backend.requests}) == 1


def test_pipelining_responses_in_order(backend, proxy):
    # The first request is the slowest: responses must still come back in request order.
    backend.on("/p/0", Response(body=b"zero", delay=0.4))
    backend.on("/p/1", Response(body=b"one", delay=0.2))
    backend.on("/p/2", Response(body=b"two"))
    backend.on("/p/3", Response(body=b"three", mode="chunked"))
    backend.on("/p/4", Response(body=b"four"))
    s = proxy(backend)
    with RawClient(s.port()) as c:
        c.send(b"".join(build_request("GET", f"/p/{i}") for i in range(5)))
        bodies = [c.read_response().body for _ in range(5)]
        assert bodies == [b"zero", b"one", b"two", b"three", b"four"]
        # Connection still usable.
        assert c.request("GET", "/after").status == 200
    assert sorted(q.path for q in backend.requests) == sorted(
        [f"/p/{i}" for i in range(5)] + ["/after"])


def test_pipelining_with_bodies(backend, proxy):
    backend.on("/echo", Response(echo_body=True))
    s = proxy(backend)
    with RawClient(s.port()) as c:
        reqs = [build_request("POST", "/echo", body=f"body-{i}-".encode() * (i + 1))
                for i in range(4)]
        reqs.insert(2, build_request("POST", "/echo", [("Transfer-Encoding", "chunked")])
                    + b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        c.send(b"".join(reqs))
        got = [c.read_response().body for _ in range(5)]
    expected = [f"body-{i}-".encode() * (i + 1) for i in range(4)]
    expected.insert(2, b"abcde")
    assert got == expected


def test_http10_client(backend, proxy):
    backend.on("/ten", Response(body=b"ten-body"))
    s = proxy(backend)
    with RawClient(s.port()) as c:
        c.send(b"GET /ten HTTP/1.0\r\nHost: old.test\r\n\r\n")
        r = c.read_response()
        assert r.status == 200
        assert r.body == b"ten-body"
        assert r.framing in ("content-length", "close")
        # HTTP/1.0 without keep-alive: the proxy closes after the response.
        assert c.is_closed(3)
    req = backend.requests[0]
    assert req.version == "HTTP/1.1", "upstream is always HTTP/1.1"
    assert req.header("host") == "old.test"


def test_http10_client_gets_no_chunked_encoding(backend, proxy):
    backend.on("/chunky", Response(chunks=[b"part1-", b"part2-", b"part3"], mode="chunked"))
    s = proxy(backend)
    with RawClient(s.port()) as c:
        c.send(b"GET /chunky HTTP/1.0\r\nHost: old.test\r\n\r\n")
        r = c.read_response()
        assert r.status == 200
        assert r.framing != "chunked", "HTTP/1.0 clients cannot receive chunked encoding"
        assert r.body == b"part1-part2-part3"


def test_head_has_no_body_and_connection_stays_usable(backend, proxy):
    backend.on("/h", Response(body=b"x" * 1234))
    s = proxy(backend)
    with RawClient(s.port()) as c:
        c.send(build_request("HEAD", "/h") + build_request("GET", "/next"))
        r = c.read_response("HEAD")
        assert r.status == 200
        assert r.header("content-length") in (None, "1234")
        r2 = c.read_response()
        assert r2.status == 200 and r2.json()["target"] == "/next"
    assert backend.requests[0].method == "HEAD"


def test_head_with_chunked_backend_headers(backend, proxy):
    # Backend announces chunked for HEAD (no body follows): the proxy must not wait for one.
    backend.on("/hc", Response(body=b"abc", mode="chunked"))
    s = proxy(backend)
    with RawClient(s.port(), timeout=5) as c:
        c.send(build_request("HEAD", "/hc") + build_request("GET", "/next"))
        assert c.read_response("HEAD").status == 200
        assert c.read_response().json()["target"] == "/next"


def test_204_and_304_have_no_body(backend, proxy):
    backend.on("/204", Response(status=204, mode="none"))
    backend.on("/304", Response(status=304, mode="none", headers=[("ETag", '"v1"')]))
    s = proxy(backend)
    with RawClient(s.port(), timeout=5) as c:
        c.send(build_request("GET", "/204") + build_request("GET", "/304",
               [("If-None-Match", '"v1"')]) + build_request("GET", "/after"))
        r1 = c.read_response()
        assert r1.status == 204
        assert r1.header("transfer-encoding") is None
        assert r1.header("content-length") in (None, "0")
        r2 = c.read_response()
        assert r2.status == 304 and r2.header("etag") == '"v1"'
        assert r2.header("transfer-encoding") is None
        r3 = c.read_response()
        assert r3.status == 200 and r3.json()["target"] == "/after"


def test_close_delimited_response(backend, proxy):
    backend.on("/eof", Response(body=b"delimited-by-close" * 1000, mode="close"))
    s = proxy(backend)
    with RawClient(s.port()) as c:
        r = c.request("GET", "/eof")
        assert r.status == 200
        assert r.body == b"delimited-by-close" * 1000
        if r.framing != "close":
            # Re-framed for the client: the connection stays usable.
            assert c.request("GET", "/again").status == 200
    # The next request works (the proxy did not reuse the closed upstream connection).
    assert http_request(s.port(), "GET", "/x").status == 200


def test_backend_connection_close_is_honoured(backend, proxy):
    backend.on("/bye", Response(body=b"bye", close=True))
    s = proxy(backend)
    with RawClient(s.port()) as c:
        assert c.request("GET", "/bye").body == b"bye"
        assert c.request("GET", "/bye").body == b"bye"
        assert c.request("GET", "/x").status == 200
    assert backend.accepted >= 2


def test_stale_pooled_upstream_connection(backend, proxy):
    # The backend closes its side of a keep-alive connection silently after each response;
    # the proxy must not fail the next request because of the stale pooled connection.
    backend.on("/once", Response(body=b"ok", close=True, announce=False))
    s = proxy(backend)
    for i in range(5):
        with RawClient(s.port()) as c:
            r = c.request("GET", "/once")
            assert r.status == 200 and r.body == b"ok", r
        wait_until(lambda: backend.open_connections == 0, 3, message="backend closed conn")


def test_expect_100_continue(backend, proxy):
    backend.on("/up", Response(echo_sha256=True))
    s = proxy(backend)
    body = b"0123456789" * 1000
    with RawClient(s.port()) as c:
        c.send(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n"
               b"Expect: 100-continue\r\n\r\n" % len(body))
        interim = c.read_response(skip_interim=False)
        assert interim.status == 100, "proxy must answer 100 Continue before the body is sent"
        c.send(body)
        r = c.read_response()
        assert r.status == 200
        assert r.header("x-body-length") == str(len(body))
    req = backend.requests[0]
    assert req.header("expect") is None, "Expect is not forwarded"
    assert req.body == body


def test_expect_100_continue_curl(backend, proxy, tmp_path):
    backend.on("/up", Response(echo_sha256=True))
    s = proxy(backend)
    f = tmp_path / "up.bin"
    f.write_bytes(b"a" * 2_000_000)
    out = subprocess.run(["curl", "-sS", "-H", "Expect: 100-continue", "--expect100-timeout", "5",
                          "--data-binary", f"@{f}", f"http://127.0.0.1:{s.port()}/up", "-w",
                          "\n%{time_total}"], capture_output=True, timeout=15)
    assert out.returncode == 0, out.stderr
    digest, t = out.stdout.decode().rsplit("\n", 1)
    assert digest == hashlib.sha256(b"a" * 2_000_000).hexdigest()
    assert float(t) < 3, "curl waited for its expect timeout: no 100 Continue from the proxy"


def test_unknown_method_and_long_target_proxied(backend, proxy):
    s = proxy(backend)
    target = "/long/" + "a" * 4000 + "?q=" + "b" * 1000
    r = http_request(s.port(), "PATCH", target, body=b"{}")
    assert r.status == 200
    info = r.json()
    assert info["method"] == "PATCH" and info["target"] == target
    r = http_request(s.port(), "OPTIONS", "*")
    assert r.status in (200, 400, 404)  # must answer something sane, not hang or crash


def test_many_concurrent_connections(backend, proxy):
    import threading
    s = proxy(backend)
    errors = []

    def worker(n):
        try:
            with RawClient(s.port()) as c:
                for i in range(10):
                    r = c.request("GET", f"/c/{n}/{i}")
                    if r.status != 200 or json.loads(r.body)["target"] != f"/c/{n}/{i}":
                        errors.append((n, i, r.status))
        except Exception as e:  # noqa: BLE001
            errors.append((n, repr(e)))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert len(backend.requests) == 200


def test_workers_auto_and_several_workers(backend, proxy):
    s = proxy(backend, server={"workers": "auto"})
    conns = [RawClient(s.port()) for _ in range(8)]
    try:
        for i, c in enumerate(conns):
            assert c.request("GET", f"/w/{i}").status == 200
    finally:
        for c in conns:
            c.close()
    assert len(backend.requests) == 8


def test_upstream_idle_timeout_closes_pooled_connection(backend, proxy):
    s = proxy(backend, pool_opts={"idle_timeout": "500ms"})
    assert http_request(s.port(), "GET", "/a").status == 200
    assert backend.open_connections == 1
    wait_until(lambda: backend.open_connections == 0, 3,
               message="pooled upstream connection closed after idle_timeout")
    assert http_request(s.port(), "GET", "/b").status == 200
    assert backend.accepted == 2


def test_client_connection_close(backend, proxy):
    s = proxy(backend)
    with RawClient(s.port()) as c:
        c.send(build_request("GET", "/bye", [("Connection", "close")])
               + build_request("GET", "/never"))
        r = c.read_response()
        assert r.status == 200 and r.connection_close
        assert c.is_closed(3)
    assert [q.path for q in backend.requests] == ["/bye"]
    # The client's Connection: close is hop-by-hop: the upstream connection stays pooled.
    assert http_request(s.port(), "GET", "/again").status == 200
    assert backend.accepted == 1


def test_backend_informational_response(backend, proxy):
    raw = (b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
           b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal")
    backend.on("/hints", Response(raw=raw))
    s = proxy(backend)
    with RawClient(s.port()) as c:
        r = c.request("GET", "/hints")
        assert r.status == 200 and r.body == b"final"
        assert [i.status for i in r.interim] == [103]
        assert r.interim[0].header("link") == "</style.css>; rel=preload"
        assert c.request("GET", "/after").status == 200
