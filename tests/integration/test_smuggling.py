"""Request smuggling defences: every ambiguous framing is answered 400 (501 for an
unimplemented transfer coding) with Connection: close, the connection is closed, and the
backend never sees that request or anything pipelined after it."""

import pytest

from sluicetest import RawClient, assert_proxy_error, build_request

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: evil\r\n\r\n"

CASES = {
    "cl_and_te": b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te_and_cl": b"POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                 b"Content-Length: 6\r\n\r\n0\r\n\r\n",
    "duplicate_cl_differing": b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
                              b"Content-Length: 4\r\n\r\nabcd",
    "cl_list_differing": b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 3, 4\r\n\r\nabcd",
    "cl_not_a_number": b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 3x\r\n\r\nabc",
    "cl_negative": b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
    "cl_plus_sign": b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: +3\r\n\r\nabc",
    "te_final_not_chunked": b"POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, identity"
                            b"\r\n\r\n0\r\n\r\n",
    "te_gzip_only": b"POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\nabc",
    "te_unknown_token": b"POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: xchunked\r\n\r\n"
                        b"0\r\n\r\n",
    "te_two_headers_final_not_chunked": b"POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: "
                                        b"chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
    "space_before_colon_te": b"POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding : chunked\r\n"
                             b"\r\n0\r\n\r\n",
    "space_before_colon_cl": b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length : 0\r\n\r\n",
    "tab_before_colon": b"GET /a HTTP/1.1\r\nHost: t\r\nX-Thing\t: v\r\n\r\n",
    "space_before_colon_other": b"GET /a HTTP/1.1\r\nHost: t\r\nX-Thing : v\r\n\r\n",
    "chunk_size_not_hex": b"POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                          b"zz\r\nhello\r\n0\r\n\r\n",
    "chunk_size_0x_prefix": b"POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                            b"0x5\r\nhello\r\n0\r\n\r\n",
    "chunk_size_overflow": b"POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"fffffffffffffffff1\r\nhello\r\n0\r\n\r\n",
    "chunk_size_negative": b"POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"-5\r\nhello\r\n0\r\n\r\n",
    "chunk_data_too_long": b"POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"3\r\nhello\r\n0\r\n\r\n",
    "bare_lf_request": b"GET /a HTTP/1.1\nHost: t\n\n",
    "bare_lf_in_headers": b"GET /a HTTP/1.1\r\nHost: t\nX-A: b\r\n\r\n",
    "bare_lf_chunk_size": b"POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                          b"5\nhello\r\n0\r\n\r\n",
    "obs_fold": b"GET /a HTTP/1.1\r\nHost: t\r\nX-Folded: a\r\n b\r\n\r\n",
    "obs_fold_te": b"POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: identity\r\n chunked"
                   b"\r\n\r\n0\r\n\r\n",
    "space_in_header_name": b"GET /a HTTP/1.1\r\nHost: t\r\nX Bad: v\r\n\r\n",
    "nul_in_header": b"GET /a HTTP/1.1\r\nHost: t\r\nX-A: a\x00b\r\n\r\n",
    "http11_missing_host": b"GET /a HTTP/1.1\r\nX-A: b\r\n\r\n",
    "duplicate_host": b"GET /a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    # HTTPWookiee's findings: bare CRs before the request line, an explicit HTTP/0.9, and
    # whitespace inside Host (with an absolute-form target too).
    "bare_crs_before_request_line": b"\r\r\r\rGET /a HTTP/1.1\r\nHost: t\r\n\r\n",
    "bare_cr_before_request_line": b"\rGET /a HTTP/1.1\r\nHost: t\r\n\r\n",
    "http09_version": b"GET /a HTTP/0.9\r\nHost: t\r\n\r\n",
    "host_with_space": b"GET /a HTTP/1.1\r\nHost: a b\r\n\r\n",
    "host_with_tab_absolute_form": b"GET http://t/a HTTP/1.1\r\nHost: a\tb\r\n\r\n",
    "host_with_space_absolute_form": b"GET http://t/a HTTP/1.1\r\nHost: a b\r\n\r\n",
}


def test_empty_lines_before_the_request_line_are_ignored(guarded):
    backend, s = guarded
    with RawClient(s.port(), timeout=5) as c:
        c.send(b"\r\n\r\nGET /a HTTP/1.1\r\nHost: t\r\n\r\n")
        assert c.read_response().status == 200
    assert [q.path for q in backend.requests] == ["/a"]


def _assert_rejected(c, backend, status=400, code="bad_request"):
    r = c.read_response()
    assert_proxy_error(r, status, code, closed=True)
    assert c.is_closed(3), "connection must be closed after the error"
    assert backend.requests == [], f"backend saw {backend.requests}"
    return r


@pytest.fixture
def guarded(backend, proxy):
    return backend, proxy(backend)


@pytest.mark.parametrize("case", sorted(CASES))
def test_ambiguous_request_rejected(guarded, case):
    backend, s = guarded
    with RawClient(s.port(), timeout=5) as c:
        c.send(CASES[case] + SMUGGLED)
        _assert_rejected(c, backend)
    # Nothing was forwarded, including the pipelined request; the proxy is still serving.
    with RawClient(s.port()) as c:
        assert c.request("GET", "/ok").status == 200
    assert [q.path for q in backend.requests] == ["/ok"]


def test_gzip_chunked_is_not_implemented(guarded):
    backend, s = guarded
    with RawClient(s.port(), timeout=5) as c:
        c.send(b"POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
               b"3\r\nabc\r\n0\r\n\r\n" + SMUGGLED)
        _assert_rejected(c, backend, 501, "not_implemented")


def test_connect_method_not_allowed(guarded):
    backend, s = guarded
    with RawClient(s.port(), timeout=5) as c:
        c.send(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        r = c.read_response()
        assert_proxy_error(r, 405, "method_not_allowed")
    assert backend.requests == []


def test_bad_request_after_good_ones_on_same_connection(guarded):
    backend, s = guarded
    with RawClient(s.port(), timeout=5) as c:
        c.send(build_request("GET", "/first") + build_request("GET", "/second")
               + CASES["cl_and_te"] + SMUGGLED)
        assert c.read_response().json()["target"] == "/first"
        assert c.read_response().json()["target"] == "/second"
        r = c.read_response()
        assert_proxy_error(r, 400, "bad_request", closed=True)
        assert c.is_closed(3)
    assert [q.path for q in backend.requests] == ["/first", "/second"]


def test_identical_duplicate_content_length_is_forwarded_once(guarded):
    # RFC 9112 allows identical repeated values; whatever the proxy does, it must not be
    # ambiguous upstream: either 400, or exactly one Content-Length forwarded.
    backend, s = guarded
    with RawClient(s.port(), timeout=5) as c:
        c.send(b"POST /dup HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n"
               b"abc")
        r = c.read_response()
        if r.status == 400:
            assert_proxy_error(r, 400, "bad_request", closed=True)
            assert backend.requests == []
        else:
            assert r.status == 200
            req = backend.requests[0]
            assert req.header_all("content-length") == ["3"]
            assert req.body == b"abc"


def test_upstream_request_is_reframed(guarded):
    # Headers that could confuse the backend's framing are never passed through as-is.
    backend, s = guarded
    with RawClient(s.port(), timeout=5) as c:
        c.send(b"POST /cl HTTP/1.1\r\nHost: t\r\nContent-Length: 005\r\n\r\nhello")
        r = c.read_response()
        if r.status == 200:
            req = backend.requests[0]
            assert req.header_all("content-length") == ["5"]
            assert req.body == b"hello"
        else:
            assert_proxy_error(r, 400, "bad_request", closed=True)
