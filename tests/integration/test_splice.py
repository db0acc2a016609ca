"""Response bodies spliced backend -> pipe -> client (splice(2), plain TCP on both sides, a
Content-Length body longer than one read): the bytes are exact, keep-alive and the upstream pool
go on after them, a slow client holds the backend back, and a body that breaks (the backend
closes or stalls short of its Content-Length, the client goes away) aborts the client's
connection and never reuses the backend's, with no descriptor left behind."""

import hashlib
import os
import socket
import time

from sluicetest import RawClient, Response, build_request, pattern_sha256, wait_until

MB = 1 << 20


def _pipes(pid):
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("pipe:"):
                n += 1
        except OSError:
            pass  # closed meanwhile
    return n


def _fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def _assert_truncated(c, size):
    """The client sees the head and less than `size` body bytes, then the connection closes."""
    data = c.read_all_until_close()
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep and head.startswith(b"HTTP/1.1 200"), data[:200]
    assert f"content-length: {size}".encode() in head.lower()
    assert len(body) < size, "a truncated body must not look complete"


def test_keepalive_bodies_are_exact_and_reuse_the_upstream_connection(backend, proxy):
    backend.on("/big", Response(body_size=9 * MB + 123))
    backend.on("/small", Response(body=b"after"))
    s = proxy(backend)
    with RawClient(s.port(), timeout=30) as c:
        for _ in range(3):
            r = c.request("GET", "/big")
            assert r.status == 200 and r.header("content-length") == str(9 * MB + 123)
            assert hashlib.sha256(r.body).hexdigest() == pattern_sha256(9 * MB + 123)
        assert c.request("GET", "/small").body == b"after"
    # One upstream connection carried all four: the spliced bodies left it reusable.
    assert backend.accepted == 1
    assert [q.index_on_conn for q in backend.requests] == [1, 2, 3, 4]
    # The access log counts the spliced bytes.
    s.wait_access(lambda e: e["path"] == "/small")
    big = [e for e in s.access_entries() if e["path"] == "/big"]
    assert len(big) == 3 and all(e["bytes_sent"] > 9 * MB + 123 for e in big), big


def test_slow_client_holds_the_backend_back_through_a_pipe(backend, proxy):
    size = 48 * MB
    backend.on("/huge", Response(body_size=size))
    s = proxy(backend)
    pipes_before = _pipes(s.pid)
    with RawClient(s.port(), timeout=30) as c:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        c.send(build_request("GET", "/huge"))
        head = c.recv_some()
        assert head.startswith(b"HTTP/1.1 200")
        # The body moves through one of the worker's pipes while the client reads nothing.
        wait_until(lambda: _pipes(s.pid) > pipes_before, message="a pipe in use")
        parts = [head.partition(b"\r\n\r\n")[2]]
        got = len(parts[0])
        while got < size:
            chunk = c.sock.recv(1 << 20)
            assert chunk, "closed early"
            parts.append(chunk)
            got += len(chunk)
        assert hashlib.sha256(b"".join(parts)).hexdigest() == pattern_sha256(size)
    s.check_alive()


def test_backend_closing_short_of_its_length_aborts_the_client(backend, proxy):
    size = 8 * MB
    raw = (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size) + b"x" * (3 * MB)
    backend.on("/cut", Response(raw=raw, close=True))
    backend.on("/next", Response(body=b"fine"))
    s = proxy(backend)
    with RawClient(s.port(), timeout=10) as c:
        c.send(build_request("GET", "/cut"))
        _assert_truncated(c, size)
    wait_until(lambda: backend.closed >= 1, message="the broken upstream connection closed")
    with RawClient(s.port(), timeout=10) as c:
        assert c.request("GET", "/next").body == b"fine"
    assert backend.accepted == 2 and backend.requests[-1].index_on_conn == 1
    s.check_alive()


def test_backend_stalling_mid_body_times_out(backend, proxy):
    size = 8 * MB
    raw = (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size) + b"y" * (2 * MB)
    backend.on("/stall", Response(raw=raw, close=False))  # then silence, socket open
    s = proxy(backend, pool_opts={"response_timeout": "700ms"})
    start = time.monotonic()
    with RawClient(s.port(), timeout=10) as c:
        c.send(build_request("GET", "/stall"))
        _assert_truncated(c, size)
    elapsed = time.monotonic() - start
    assert 0.6 < elapsed < 5, elapsed
    wait_until(lambda: backend.closed >= 1, message="the stalled upstream connection closed")
    s.check_alive()


def test_client_going_away_mid_body_leaves_no_descriptor(backend, proxy):
    backend.on("/big", Response(body_size=64 * MB))
    backend.on("/small", Response(body=b"ok"))
    s = proxy(backend)
    # Warm up: one spliced body, so the worker has its spare pipe and pooled connection.
    with RawClient(s.port(), timeout=30) as c:
        assert len(c.request("GET", "/big").body) == 64 * MB
    base = _fds(s.pid)
    for _ in range(10):
        with RawClient(s.port(), timeout=10) as c:
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            c.send(build_request("GET", "/big"))
            c.recv_some()
            # Leave with bytes still in the pipe: an abortive close, as a killed client would.
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    # Every broken transfer gave back (or closed) its pipe and closed its upstream connection.
    wait_until(lambda: _fds(s.pid) <= base, timeout=10,
               message=f"descriptors back to {base} (now {_fds(s.pid)})")
    with RawClient(s.port(), timeout=10) as c:
        assert c.request("GET", "/small").body == b"ok"
    s.check_alive()


def test_http10_and_chunked_bodies_are_exact(backend, proxy):
    # HTTP/1.0 keeps the Content-Length (spliced); a chunked backend body is never spliced.
    backend.on("/big", Response(body_size=5 * MB))
    backend.on("/bigc", Response(body_size=5 * MB, mode="chunked"))
    s = proxy(backend)
    with RawClient(s.port(), timeout=30) as c:
        c.send(build_request("GET", "/big", version="HTTP/1.0"))
        data = c.read_all_until_close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.") and b"content-length: %d" % (5 * MB) in head.lower()
    assert hashlib.sha256(body).hexdigest() == pattern_sha256(5 * MB)
    with RawClient(s.port(), timeout=30) as c:
        r = c.request("GET", "/bigc")
        assert r.framing == "chunked"
        assert hashlib.sha256(r.body).hexdigest() == pattern_sha256(5 * MB)
