"""A backend that breaks HTTP framing: bad or truncated bodies abort the client connection
(never a response that looks complete) and the upstream connection is never reused; a bad or
oversized head is a 502; 1xx interim responses (only 103 is forwarded, never to HTTP/1.0
clients); HEAD, 204 and 304 responses that carry a body."""

import pytest

from sluicetest import (RawClient, Response, assert_proxy_error, build_request, http_request,
                        wait_until)


def assert_aborted(c):
    """Everything the proxy sends until it closes must not be a complete response: nothing, or
    a head whose body is short of its Content-Length, or a chunked body without its last
    chunk."""
    data = c.read_all_until_close()
    if not data:
        return
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, f"incomplete head is fine, but got {data[:200]!r}"
    lines = head.split(b"\r\n")
    assert lines[0].startswith(b"HTTP/1.1 200"), lines[0]
    hdrs = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(b":") for ln in lines[1:])}
    if b"content-length" in hdrs:
        assert len(body) < int(hdrs[b"content-length"]), f"complete body {body!r}"
    else:
        assert hdrs.get(b"transfer-encoding") == b"chunked", hdrs
        assert b"0\r\n\r\n" not in body, f"terminating chunk sent: {body!r}"


def check_not_reused(backend, s, first_conns=1):
    # The broken connection was closed by the proxy, and the next request dials a new one.
    wait_until(lambda: backend.closed >= first_conns, message="the upstream connection closed")
    backend.on("/next", Response(body=b"fine"))
    r = http_request(s.port(), "GET", "/next")
    assert r.status == 200 and r.body == b"fine", r
    assert backend.accepted == first_conns + 1
    assert backend.requests[-1].index_on_conn == 1


def aborted_case(backend, proxy, raw, close):
    backend.on("/bad", Response(raw=raw, close=close))
    s = proxy(backend)
    with RawClient(s.port(), timeout=10) as c:
        c.send(build_request("GET", "/bad"))
        assert_aborted(c)
    check_not_reused(backend, s)


# ---------------------------------------------------------------- a broken body after the head


def test_invalid_chunk_size_aborts_client(backend, proxy):
    raw = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\nzz\r\nworld\r\n0\r\n\r\n")
    aborted_case(backend, proxy, raw, close=False)


def test_invalid_chunk_size_in_later_read_aborts_client(backend, proxy):
    # The head and a first chunk reach the client before the bad chunk size arrives.
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
    backend.on("/bad", Response(raw=raw, close=False))
    s = proxy(backend)
    with RawClient(s.port(), timeout=10) as c:
        c.send(build_request("GET", "/bad"))
        got = c.recv_some(5)
        while b"hello" not in got:
            got += c.recv_some(5)
        assert got.startswith(b"HTTP/1.1 200") and b"Transfer-Encoding: chunked" in got
        # The backend goes on, on the same connection, with an invalid chunk size.
        (conn,) = list(backend._conns)
        conn.sock.sendall(b"xyz\r\nmore\r\n0\r\n\r\n")
        rest = c.read_all_until_close()
        assert b"0\r\n\r\n" not in got + rest, f"terminating chunk sent: {got + rest!r}"
    check_not_reused(backend, s)


def test_body_cut_mid_chunk_aborts_client(backend, proxy):
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nonly-half"
    aborted_case(backend, proxy, raw, close=True)


def test_body_short_of_content_length_aborts_client(backend, proxy):
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly forty bytes of the hundred promised"
    aborted_case(backend, proxy, raw, close=True)


# ---------------------------------------------------------------- a bad head: 502


def test_differing_content_lengths_502(backend, proxy):
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"
    backend.on("/bad", Response(raw=raw, close=False))
    s = proxy(backend)
    assert_proxy_error(http_request(s.port(), "GET", "/bad"), 502, "bad_gateway")
    check_not_reused(backend, s)


@pytest.mark.parametrize("raw", [b"HTTP/1.1 099 Continue\r\nContent-Length: 2\r\n\r\nok",
                                 b"HTTP/1.1 000 Zero\r\n\r\nuntil close"])
def test_status_below_100_502(backend, proxy, raw):
    # Forwarded, "099" would have become "HTTP/1.1 99 ..." (found by http1_response_fuzz).
    backend.on("/bad", Response(raw=raw, close=False))
    s = proxy(backend)
    assert_proxy_error(http_request(s.port(), "GET", "/bad"), 502, "bad_gateway")
    check_not_reused(backend, s)


def test_oversized_response_head_502(backend, proxy):
    # The proxy's limit for a backend's response head is 64 KiB.
    raw = (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (70 * 1024) + b"\r\nContent-Length: 2\r\n\r\nok")
    backend.on("/big", Response(raw=raw, close=False))
    s = proxy(backend)
    assert_proxy_error(http_request(s.port(), "GET", "/big"), 502, "bad_gateway")
    check_not_reused(backend, s)


def test_response_head_just_under_limit_passes(backend, proxy):
    raw = (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (60 * 1024) + b"\r\nContent-Length: 2\r\n\r\nok")
    backend.on("/big", Response(raw=raw, close=False))
    s = proxy(backend)
    r = http_request(s.port(), "GET", "/big")
    assert r.status == 200 and r.body == b"ok" and len(r.header("x-big")) == 60 * 1024


def test_too_many_response_header_fields_502(backend, proxy):
    # ... and 200 fields.
    raw = (b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(201))
           + b"Content-Length: 2\r\n\r\nok")
    backend.on("/many", Response(raw=raw, close=False))
    s = proxy(backend)
    assert_proxy_error(http_request(s.port(), "GET", "/many"), 502, "bad_gateway")
    check_not_reused(backend, s)


# ---------------------------------------------------------------- 1xx interim responses


def test_backend_100_continue_not_forwarded_twice(backend, proxy):
    raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    backend.on("/up", Response(raw=raw))
    s = proxy(backend)
    with RawClient(s.port(), timeout=10) as c:
        c.send(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n"
               b"Expect: 100-continue\r\n\r\n")
        first = c.read_response(skip_interim=False)
        assert first.status == 100  # the proxy's own
        c.send(b"body")
        r = c.read_response()
        assert r.status == 200 and r.body == b"ok" and r.interim == [], r.interim
        # Without Expect the backend's 100 is dropped too.
        r = c.request("POST", "/up", body=b"data")
        assert r.status == 200 and r.interim == []
    assert backend.accepted == 1


EARLY_HINTS = (b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n"
               b"Connection: x-hop\r\nX-Hop: secret\r\n\r\n"
               b"HTTP/1.1 103 Early Hints\r\nLink: </app.js>; rel=preload; as=script\r\n\r\n"
               b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal")


def test_early_hints_forwarded_before_final_response(backend, proxy):
    backend.on("/hints", Response(raw=EARLY_HINTS))
    s = proxy(backend)
    with RawClient(s.port(), timeout=10) as c:
        r = c.request("GET", "/hints")
        assert r.status == 200 and r.body == b"final"
        assert [i.status for i in r.interim] == [103, 103]
        assert r.interim[0].header("link") == "</style.css>; rel=preload; as=style"
        assert r.interim[1].header("link") == "</app.js>; rel=preload; as=script"
        # Hop-by-hop headers are not forwarded, nor any framing.
        for name in ("connection", "x-hop", "content-length", "transfer-encoding"):
            assert r.interim[0].header(name) is None, name
        assert c.request("GET", "/after").status == 200
    assert backend.accepted == 1


def test_early_hints_not_sent_to_http10_client(backend, proxy):
    backend.on("/hints", Response(raw=EARLY_HINTS))
    s = proxy(backend)
    with RawClient(s.port(), timeout=10) as c:
        r = c.request("GET", "/hints", version="HTTP/1.0")
        assert r.status == 200 and r.body == b"final" and r.interim == []


def test_early_hints_then_broken_response_502(backend, proxy):
    raw = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nNOT HTTP\r\n\r\n"
    backend.on("/hints", Response(raw=raw, close=True))
    s = proxy(backend)
    with RawClient(s.port(), timeout=10) as c:
        r = c.request("GET", "/hints")
        assert [i.status for i in r.interim] == [103]
        assert_proxy_error(r, 502, "bad_gateway")


# ---------------------------------------------------------------- no-body responses with a body


def no_body_case(backend, proxy, method, raw, status):
    backend.on("/nb", Response(raw=raw))
    backend.on("/next", Response(body=b"next-body"))
    s = proxy(backend)
    with RawClient(s.port(), timeout=10) as c:
        c.send(build_request(method, "/nb"))
        r = c.read_response(method)
        assert r.status == status
        # The client connection goes on: the next response is the right one, not the junk.
        r2 = c.request("GET", "/next")
        assert r2.status == 200 and r2.body == b"next-body", r2
    # The junk would have been read as the next response: the connection was not reused.
    assert backend.accepted == 2
    assert [q.index_on_conn for q in backend.requests] == [1, 1]


def test_head_response_with_body_not_forwarded(backend, proxy):
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    no_body_case(backend, proxy, "HEAD", raw, 200)


def test_204_with_body_not_forwarded(backend, proxy):
    raw = b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nforge"
    no_body_case(backend, proxy, "GET", raw, 204)


def test_304_with_body_not_forwarded(backend, proxy):
    raw = b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\nhello"
    no_body_case(backend, proxy, "GET", raw, 304)
