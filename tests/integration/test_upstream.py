"""Upstream failures: 502 (refused, reset, invalid response), 504 (response_timeout),
retries of idempotent requests on another backend, round robin."""

import collections
import time

from sluicetest import (Blackhole, RawClient, Response, assert_proxy_error, free_port,
                        http_request, wait_until)


def test_refused_backend_502(proxy):
    dead = f"127.0.0.1:{free_port()}"
    s = proxy(dead, pool_opts={"connect_timeout": "1s"})
    with RawClient(s.port(), timeout=10) as c:
        r = c.request("GET", "/x")
        assert_proxy_error(r, 502, "bad_gateway")
        # A 502 does not poison the client connection.
        if not r.connection_close:
            assert_proxy_error(c.request("GET", "/y"), 502, "bad_gateway")


def test_backend_reset_before_response_502(backend, proxy):
    backend.on("/reset", Response(action="reset"))
    s = proxy(backend)
    r = http_request(s.port(), "POST", "/reset", body=b"data")
    assert_proxy_error(r, 502, "bad_gateway")
    assert len(backend.requests) == 1, "a POST is not retried"


def test_backend_closes_without_response_502(backend, proxy):
    backend.on("/fin", Response(action="close"))
    s = proxy(backend)
    r = http_request(s.port(), "POST", "/fin", body=b"data")
    assert_proxy_error(r, 502, "bad_gateway")


def test_invalid_backend_response_502(backend, proxy):
    backend.on("/garbage", Response(action="garbage"))
    s = proxy(backend)
    r = http_request(s.port(), "GET", "/garbage")
    assert_proxy_error(r, 502, "bad_gateway")


def test_backend_response_ambiguous_framing_502(backend, proxy):
    raw = (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"0\r\n\r\n")
    backend.on("/amb", Response(raw=raw, close=False))
    s = proxy(backend)
    r = http_request(s.port(), "GET", "/amb")
    assert_proxy_error(r, 502, "bad_gateway")
    # The proxy closed that connection (the backend kept it open): the next request dials.
    wait_until(lambda: backend.closed >= 1, message="the upstream connection closed")
    assert backend.closed == 1
    assert http_request(s.port(), "GET", "/next").status == 200
    assert backend.accepted == 2


def test_response_timeout_504(backend, proxy):
    backend.on("/slow", Response(body=b"late", delay=3))
    s = proxy(backend, pool_opts={"response_timeout": "500ms"})
    t0 = time.monotonic()
    r = http_request(s.port(), "GET", "/slow")
    took = time.monotonic() - t0
    assert_proxy_error(r, 504, "gateway_timeout")
    assert took < 2.5, f"504 after {took:.2f}s, response_timeout is 500ms"
    # The pool is not poisoned by the abandoned upstream connection.
    assert http_request(s.port(), "GET", "/fast").status == 200


def test_response_timeout_not_applied_to_streaming_body(backend, proxy):
    # response_timeout is about the first response byte; a body that keeps flowing past it
    # is fine.
    backend.on("/drip", Response(chunks=[b"a"] * 6, mode="chunked", piece_delay=0.2))
    s = proxy(backend, pool_opts={"response_timeout": "500ms"})
    r = http_request(s.port(), "GET", "/drip")
    assert r.status == 200 and r.body == b"aaaaaa"


def test_connect_timeout_502(proxy):
    hole = Blackhole()  # connects to it hang until connect_timeout
    try:
        s = proxy(hole.address, pool_opts={"connect_timeout": "300ms", "retries": 0})
        t0 = time.monotonic()
        r = http_request(s.port(), "GET", "/x")
        took = time.monotonic() - t0
        assert_proxy_error(r, 502, "bad_gateway")
        assert 0.25 <= took < 2.5, f"answered after {took:.2f}s, connect_timeout is 300ms"
    finally:
        hole.close()


def test_connect_timeout_retried_on_other_backend(backend, proxy):
    hole = Blackhole()
    try:
        s = proxy(hole.address, backend, pool_opts={"connect_timeout": "300ms", "retries": 1})
        for i in range(4):
            r = http_request(s.port(), "GET", f"/ct/{i}")
            assert r.status == 200 and r.header("x-backend") == "b1", r
    finally:
        hole.close()


def test_retry_on_dead_backend_every_get_succeeds(backend, proxy):
    dead = f"127.0.0.1:{free_port()}"
    s = proxy(dead, backend, pool_opts={"retries": 1, "connect_timeout": "1s"})
    with RawClient(s.port(), timeout=10) as c:
        for i in range(20):
            r = c.request("GET", f"/r/{i}")
            assert r.status == 200, f"request {i}: {r}"
            assert r.header("x-backend") == "b1"
    assert len(backend.requests) == 20


def test_retry_on_reset_before_response(make_backend, proxy):
    flaky = make_backend("flaky")
    good = make_backend("good")
    flaky.set_default(Response(action="reset"))
    s = proxy(flaky, good, pool_opts={"retries": 1})
    for i in range(10):
        r = http_request(s.port(), "GET", f"/g/{i}")
        assert r.status == 200 and r.header("x-backend") == "good", r
    assert len(good.requests) == 10


def test_post_retried_after_connect_failure(backend, proxy):
    # A refused connect means nothing was sent (the body is read from the client only once an
    # upstream connection exists), so even a POST is safely retried on another backend.
    dead = f"127.0.0.1:{free_port()}"
    s = proxy(dead, backend, pool_opts={"retries": 1, "connect_timeout": "1s"})
    for i in range(6):
        r = http_request(s.port(), "POST", f"/post/{i}", body=b"payload-%d" % i)
        assert r.status == 200, r
    assert [q.body for q in backend.requests] == [b"payload-%d" % i for i in range(6)]


def test_post_not_retried_after_reset(make_backend, proxy):
    # Once the request reached a backend, a non-idempotent one is never replayed elsewhere.
    flaky = make_backend("flaky")
    good = make_backend("good")
    flaky.set_default(Response(action="reset"))
    s = proxy(flaky, good, pool_opts={"retries": 1})
    statuses = collections.Counter()
    for i in range(6):
        r = http_request(s.port(), "POST", f"/p/{i}", body=b"once")
        statuses[r.status] += 1
        if r.status != 200:
            assert_proxy_error(r, 502, "bad_gateway")
    assert statuses[502] >= 1, statuses
    assert len(flaky.requests) == statuses[502]
    assert len(good.requests) == statuses[200]


def test_retries_zero_means_no_retry(backend, proxy):
    dead = f"127.0.0.1:{free_port()}"
    s = proxy(dead, backend, pool_opts={"retries": 0, "connect_timeout": "1s"})
    statuses = collections.Counter(http_request(s.port(), "GET", "/z").status for _ in range(6))
    assert statuses[502] >= 1 and statuses[200] >= 1, statuses


def test_round_robin_weighted(make_backend, proxy):
    a, b = make_backend("a"), make_backend("b")
    s = proxy(pools={"p": {"backends": [(a.address, 3), (b.address, 1)]}})
    with RawClient(s.port()) as c:
        seq = [c.request("GET", "/w").header("x-backend") for _ in range(40)]
    counts = collections.Counter(seq)
    assert counts == {"a": 30, "b": 10}, counts
    # Smooth weighted round-robin: b is never picked twice in a row, a never 4 times.
    assert "bb" not in "".join(seq)
    assert "aaaa" not in "".join(seq)


def test_round_robin_equal(make_backend, proxy):
    bes = [make_backend(n) for n in "abc"]
    s = proxy(*bes)
    seq = [http_request(s.port(), "GET", "/").header("x-backend") for _ in range(30)]
    assert collections.Counter(seq) == {"a": 10, "b": 10, "c": 10}


def test_backend_stopped_midway(make_backend, proxy):
    a, b = make_backend("a"), make_backend("b")
    s = proxy(a, b, pool_opts={"retries": 1, "connect_timeout": "1s"})
    with RawClient(s.port()) as c:
        for _ in range(4):
            assert c.request("GET", "/").status == 200
        a.stop()
        for i in range(10):
            r = c.request("GET", f"/after/{i}")
            assert r.status == 200 and r.header("x-backend") == "b", r


def test_upstream_keepalive_reused_across_clients(backend, proxy):
    s = proxy(backend)
    for i in range(5):
        assert http_request(s.port(), "GET", f"/n/{i}").status == 200
    assert backend.accepted == 1, f"{backend.accepted} upstream connections for 5 requests"
