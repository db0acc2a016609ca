"""Bodies both ways: Content-Length and chunked, large streams with checksums, re-framing,
backpressure."""

import hashlib
import socket
import time

from sluicetest import RawClient, Response, build_request, pattern_bytes, pattern_sha256

MB = 1 << 20


def _chunked(data, size):
    return b"".join(b"%x\r\n" % len(data[i:i + size]) + data[i:i + size] + b"\r\n"
                    for i in range(0, len(data), size)) + b"0\r\n\r\n"


def test_20mb_response_content_length(backend, proxy):
    backend.on("/big", Response(body_size=20 * MB))
    s = proxy(backend)
    with RawClient(s.port(), timeout=30) as c:
        r = c.request("GET", "/big")
        assert r.status == 200
        assert len(r.body) == 20 * MB
        assert hashlib.sha256(r.body).hexdigest() == pattern_sha256(20 * MB)
        # The connection is still usable after a big body.
        assert c.request("GET", "/small").status == 200


def test_20mb_response_chunked(backend, proxy):
    backend.on("/bigc", Response(body_size=20 * MB, mode="chunked"))
    s = proxy(backend)
    with RawClient(s.port(), timeout=30) as c:
        r = c.request("GET", "/bigc")
        assert r.status == 200
        assert r.framing == "chunked", "a chunked response to an HTTP/1.1 client stays chunked"
        assert hashlib.sha256(r.body).hexdigest() == pattern_sha256(20 * MB)
        assert c.request("GET", "/small").status == 200


def test_chunked_response_with_odd_chunks_and_trailers(backend, proxy):
    chunks = [b"a", b"bc" * 1000, b"d" * 70000, b"\r\n0\r\n", b"end"]
    backend.on("/odd", Response(chunks=chunks, mode="chunked", trailers=[("X-Sum", "1")]))
    s = proxy(backend)
    with RawClient(s.port()) as c:
        r = c.request("GET", "/odd")
        assert r.body == b"".join(chunks)
        assert c.request("GET", "/after").status == 200


def test_3mb_upload_content_length_checksum(backend, proxy):
    backend.on("/upload", Response(echo_sha256=True))
    s = proxy(backend)
    body = pattern_bytes(3 * MB)
    with RawClient(s.port(), timeout=30) as c:
        r = c.request("POST", "/upload", body=body)
        assert r.status == 200
        assert r.body.decode() == hashlib.sha256(body).hexdigest()
    req = backend.requests[0]
    assert req.framing == "content-length"
    assert req.header("content-length") == str(3 * MB)
    assert req.body == body


def test_3mb_upload_chunked_checksum(backend, proxy):
    backend.on("/upload", Response(echo_sha256=True))
    s = proxy(backend)
    body = pattern_bytes(3 * MB)
    with RawClient(s.port(), timeout=30) as c:
        c.send(build_request("PUT", "/upload", [("Transfer-Encoding", "chunked")])
               + _chunked(body, 12345))
        r = c.read_response()
        assert r.status == 200
        assert r.body.decode() == hashlib.sha256(body).hexdigest()
        assert c.request("GET", "/after").status == 200
    req = backend.requests[0]
    assert req.framing == "chunked", "chunked from the client goes upstream chunked"
    assert req.header("content-length") is None
    assert req.body == body


def test_chunk_extensions_and_trailers_accepted(backend, proxy):
    backend.on("/upload", Response(echo_body=True))
    s = proxy(backend)
    with RawClient(s.port()) as c:
        c.send(build_request("POST", "/upload", [("Transfer-Encoding", "chunked")])
               + b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.body == b"hello world"


def test_3mb_echo_both_ways(backend, proxy):
    backend.on("/echo", Response(echo_body=True, mode="chunked"))
    s = proxy(backend)
    body = pattern_bytes(3 * MB + 7)
    with RawClient(s.port(), timeout=30) as c:
        r = c.request("POST", "/echo", body=body)
        assert r.status == 200
        assert r.body == body


def test_empty_bodies(backend, proxy):
    backend.on("/e", Response(echo_body=True))
    s = proxy(backend)
    with RawClient(s.port()) as c:
        r = c.request("POST", "/e", body=b"")
        assert r.status == 200 and r.body == b""
        c.send(build_request("POST", "/e", [("Transfer-Encoding", "chunked")]) + b"0\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.body == b""
    assert backend.requests[0].header("content-length") == "0"


def _rss_kb(pid, field="VmRSS:"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def test_slow_client_does_not_make_proxy_buffer(backend, proxy):
    size = 64 * MB
    backend.on("/huge", Response(body_size=size))
    s = proxy(backend)
    base = _rss_kb(s.pid, "VmHWM:")
    with RawClient(s.port(), timeout=30) as c:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        c.send(build_request("GET", "/huge"))
        # Read nothing for a while and watch the proxy's memory: it must apply backpressure
        # to the backend instead of buffering the 64 MB body.
        peak = base
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            peak = max(peak, _rss_kb(s.pid))
            time.sleep(0.05)
        r = c.read_response()
        assert hashlib.sha256(r.body).hexdigest() == pattern_sha256(size)
    peak = max(peak, _rss_kb(s.pid, "VmHWM:"))
    assert peak - base < 24 * 1024, f"proxy RSS grew by {(peak - base) // 1024} MB"


def test_slow_backend_upload_does_not_make_proxy_buffer(backend, proxy):
    # The backend answers only after reading the whole body; the client sends 48 MB fast.
    size = 48 * MB
    backend.on("/up", Response(echo_sha256=True))
    backend.recv_delay = 0.002  # a slow reader
    s = proxy(backend)
    base = _rss_kb(s.pid, "VmHWM:")
    body = pattern_bytes(size)
    with RawClient(s.port(), timeout=60) as c:
        r = c.request("POST", "/up", body=body)
        assert r.body.decode() == hashlib.sha256(body).hexdigest()
    peak = _rss_kb(s.pid, "VmHWM:")
    assert peak - base < 24 * 1024, f"proxy RSS grew by {(peak - base) // 1024} MB"


def test_client_abort_mid_response_does_not_poison_pool(backend, proxy):
    backend.on("/big", Response(body_size=20 * MB))
    s = proxy(backend)
    with RawClient(s.port(), timeout=10) as c:
        c.send(build_request("GET", "/big"))
        c.recv_some()
    # The half-sent upstream connection must not be reused for the next request.
    for i in range(3):
        with RawClient(s.port(), timeout=10) as c:
            r = c.request("GET", f"/small/{i}")
            assert r.status == 200 and r.json()["target"] == f"/small/{i}"
    s.check_alive()


def test_client_abort_mid_upload(backend, proxy):
    backend.on("/up", Response(echo_sha256=True))
    s = proxy(backend)
    with RawClient(s.port(), timeout=10) as c:
        c.send(build_request("POST", "/up", [("Content-Length", str(5 * MB))]) + b"x" * 100000)
    for i in range(3):
        with RawClient(s.port(), timeout=10) as c:
            r = c.request("POST", "/up", body=b"abc")
        assert r.status == 200 and r.header("x-body-length") == "3"
    s.check_alive()
