"""max_header_size (431), max_body_size (413), client_header_timeout (408),
client_idle_timeout (silent close)."""

import socket
import time

import pytest

from sluicetest import RawClient, Response, assert_proxy_error, build_request, wait_until

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


# ---- a finished answer the client is slow to take (nginx's send_timeout) ----------------
#
# The kernel holds a few MiB of a loopback response (both socket buffers) even for a client
# with a tiny receive buffer; only what does not fit stays queued in Sluice. Each test first
# measures how much the kernel takes, then asks for a little more, so that the answer ends
# while its tail is still queued in the proxy. The answers are chunked: a Content-Length body
# over plain TCP is spliced, and its exchange ends only once the client took every byte.

SLOW_READER = {"client_idle_timeout": "1s", "client_header_timeout": "10s"}


def _tiny_window_client(port):
    c = socket.socket()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.connect(("127.0.0.1", port))
    return c


def _read_to_close(c, timeout=5.0):
    c.settimeout(timeout)
    got = 0
    try:
        while True:
            b = c.recv(1 << 20)
            if not b:
                return got
            got += len(b)
    except ConnectionResetError:
        return got


def _kernel_share(s, backend):
    """Bytes of an answer the kernel absorbs for a client that reads nothing: a 32 MiB answer
    stalls, client_idle_timeout cuts it (and its backend connection), and the client then reads
    what had reached it."""
    backend.on("/huge", Response(body_size=32 << 20, mode="chunked"))
    closed = backend.closed
    c = _tiny_window_client(s.port())
    c.sendall(b"GET /huge HTTP/1.1\r\nHost: t\r\n\r\n")
    wait_until(lambda: backend.closed > closed, timeout=8,
               message="the stalled answer cut by client_idle_timeout")
    got = _read_to_close(c)
    c.close()
    assert 0 < got < (32 << 20)
    return got


def _active(s):
    return s.metrics().value("sluice_connections_active")


def test_non_reading_client_of_a_closing_answer_is_dropped(backend, proxy):
    # Connection: close and the tail still queued: before, nothing timed the connection at all
    # (a client that never reads held its descriptor and the queued bytes forever).
    s = proxy(backend, server=SLOW_READER, pool_opts={"response_timeout": "1s"})
    size = _kernel_share(s, backend) + (96 << 10)
    backend.on("/fit", Response(body_size=size, mode="chunked"))
    c = _tiny_window_client(s.port())
    c.sendall(b"GET /fit HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    s.wait_access(lambda e: e["path"] == "/fit")  # the backend's answer is complete
    t0 = time.monotonic()
    wait_until(lambda: _active(s) == 0, timeout=6, message="the stalled connection closed")
    took = time.monotonic() - t0
    assert took >= 0.6, f"closed {took:.2f}s after the answer ended: nothing was queued?"
    got = _read_to_close(c)
    c.close()
    assert got < size, "the queued tail must have been dropped"


def test_idle_timeout_starts_once_the_client_took_the_answer(backend, proxy):
    # Keep-alive, the tail queued: the client takes it after 1.5 s (client_idle_timeout 2 s),
    # stays quiet 1 s more and asks again. The idle wait runs from when the answer was taken,
    # not from when the backend finished it (that would have closed the connection at 2 s).
    s = proxy(backend, server={"client_idle_timeout": "2s"}, pool_opts={"response_timeout": "1s"})
    size = _kernel_share(s, backend) + (96 << 10)
    backend.on("/fit", Response(body_size=size, mode="chunked"))
    c = _tiny_window_client(s.port())
    c.sendall(b"GET /fit HTTP/1.1\r\nHost: t\r\n\r\n")
    s.wait_access(lambda e: e["path"] == "/fit")
    time.sleep(1.5)  # pacing: a client that takes its answer late, on purpose
    c.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        data += c.recv(65536)
    while not data.endswith(b"\r\n0\r\n\r\n"):  # the whole chunked answer
        b = c.recv(1 << 20)
        assert b, f"closed after {len(data)} bytes of a {size}-byte body"
        data += b
    assert len(data) > size
    time.sleep(1.0)  # pacing: idle past the old deadline, within the new one
    c.sendall(b"GET /again HTTP/1.1\r\nHost: t\r\n\r\n")
    again = c.recv(65536)
    assert again.startswith(b"HTTP/1.1 200 "), again[:100]
    c.close()


# ---------------------------------------------------------------- a slow reader of a streaming answer
# While the client holds the answer back (Sluice stops reading the backend), the backend's
# response_timeout does not run: the client is timed instead (client_idle_timeout without
# taking a byte), as nginx's send_timeout. Content-Length bodies take the splice path, chunked
# ones the copy path.

BIG = 64 << 20


def _stream_case(backend, proxy, mode):
    backend.on("/big", Response(body_size=BIG, mode=mode))
    return proxy(backend, server={"client_idle_timeout": "3s"},
                 pool_opts={"response_timeout": "500ms"})


def _read_rest(c, first, until_close=False):
    got = len(first)
    while True:
        try:
            chunk = c.sock.recv(1 << 20)
        except (ConnectionResetError, TimeoutError, socket.timeout):
            break
        if not chunk:
            break
        got += len(chunk)
        if not until_close and got >= BIG:
            break
    return got


def _ask_big(c):
    """GET /big with a small receive buffer; returns the body bytes that came with the head."""
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    c.send(build_request("GET", "/big"))
    data = c.recv_some()
    while b"\r\n\r\n" not in data:
        data += c.recv_some()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return body


@pytest.mark.parametrize("mode", ["length", "chunked"])
def test_paused_reader_outlasting_response_timeout_gets_the_whole_body(backend, proxy, mode):
    s = _stream_case(backend, proxy, mode)
    with RawClient(s.port(), timeout=20) as c:
        body = _ask_big(c)
        # Three response_timeouts without reading (less than client_idle_timeout): the
        # backend was not late, the client was, and it is still within its own limit.
        time.sleep(1.5)  # the stall under test
        if mode == "length":
            assert _read_rest(c, body) == BIG
        else:
            # Chunked: the framing adds bytes; the body is complete when the last chunk came.
            total = len(body)
            tail = body[-5:]
            while tail != b"0\r\n\r\n":
                chunk = c.sock.recv(1 << 20)
                assert chunk, f"closed after {total} bytes"
                total += len(chunk)
                tail = (tail + chunk)[-5:]
            assert total > BIG
    assert backend.closed == 0, "the backend connection stays pooled"
    s.check_alive()


@pytest.mark.parametrize("mode", ["length", "chunked"])
def test_reader_that_stops_is_dropped_after_client_idle_timeout(backend, proxy, mode):
    s = _stream_case(backend, proxy, mode)
    with RawClient(s.port(), timeout=20) as c:
        body = _ask_big(c)
        start = time.monotonic()
        # The exchange ends (its backend connection with it) once the client took nothing
        # for client_idle_timeout: not at response_timeout, and not never.
        wait_until(lambda: backend.closed >= 1, timeout=10,
                   message="the backend connection closed")
        held = time.monotonic() - start
        assert 2.5 < held < 8, held
        assert _read_rest(c, body, until_close=True) < BIG + 1024
    s.check_alive()
