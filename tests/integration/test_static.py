"""Static file routes: root and alias, index and try_files, validators and 304s, single Range
and 416, HEAD, precompressed siblings, MIME types, sendfile on plain listeners and chunked reads
on TLS listeners (large files byte-exact, slow readers, clients that vanish), and every way out
of the root (dot segments raw and encoded, encoded slashes, NUL, symlinks) refused."""

import gzip
import os
import socket
import time

import pytest

from sluicetest import RawClient, http_request, run_cli
from sluicetest.tls import TestCA, TlsRawClient, client_context
from sluicetest.util import free_port, pattern_bytes, wait_until

BIG = 3 * 1024 * 1024 + 123  # several sendfile steps and TLS chunks, odd length


@pytest.fixture
def site(tmp_path):
    """A web root plus a secret file next to it (outside)."""
    root = tmp_path / "www"
    (root / "docs").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "assets").mkdir()
    (root / "index.html").write_text("<h1>home</h1>\n")
    (root / "docs" / "index.html").write_text("docs index\n")
    (root / "app.css").write_text("body { color: red }\n")
    (root / "mod.wasm").write_bytes(b"\0asm\1\0\0\0")
    (root / "logo.SVG").write_text("<svg/>")
    (root / "noext").write_text("plain")
    (root / "big.bin").write_bytes(pattern_bytes(BIG))
    (root / "assets" / "app.js").write_text("console.log('identity')\n" * 20)
    (root / "assets" / "app.js.gz").write_bytes(gzip.compress(b"gz version"))
    (root / "assets" / "app.js.br").write_bytes(b"br version (not really brotli)")
    (root / "space name.txt").write_text("spaced")
    (tmp_path / "secret.txt").write_text("SECRET")
    os.symlink(str(tmp_path / "secret.txt"), root / "abs-out")
    os.symlink("../secret.txt", root / "rel-out")
    os.symlink("app.css", root / "rel-in")
    os.symlink(str(root / "app.css"), root / "abs-in")  # absolute, even if inside: refused
    os.mkfifo(root / "fifo")
    return root


def files_proxy(proxy, backend, routes, **kw):
    return proxy(backend, routes=routes, **kw)


@pytest.fixture
def static(proxy, backend, site):
    return proxy(backend, routes=[
        {"name": "site", "path": "/", "static": {"root": str(site),
                                                   "cache_control": "public, max-age=60"}},
        {"name": "spa", "path": "/spa/",
         "static": {"alias": str(site) + "/", "try_files": ["$uri", "$uri/", "/index.html"]}},
        {"name": "strict", "path": "/strict/",
         "static": {"alias": str(site), "try_files": ["$uri", "=404"]}},
        {"name": "favicon", "path_exact": "/favicon.ico",
         "static": {"alias": str(site / "app.css")}},
        {"name": "pre", "path": "/assets/",
         "static": {"root": str(site), "precompressed": True}},
        {"name": "fresh", "path": "/fresh/",
         "static": {"alias": str(site), "cache_valid": "0s"}},
        {"name": "api", "path": "/api/", "pool": "p"},
    ])


def get(s, target, headers=None, method="GET"):
    return http_request(s.port(), method, target,
                        headers=list(headers.items()) if headers else None)


def test_file_answer_headers_and_body(static, site):
    r = get(static, "/app.css")
    assert r.status == 200
    assert r.body == b"body { color: red }\n"
    assert r.header("content-type") == "text/css"
    assert r.header("content-length") == str(len(r.body))
    assert r.header("cache-control") == "public, max-age=60"
    assert r.header("accept-ranges") == "bytes"
    st = os.stat(site / "app.css")
    assert r.header("etag") == '"%x-%x"' % (int(st.st_mtime), st.st_size)  # nginx's format
    assert r.header("last-modified") == time.strftime("%a, %d %b %Y %H:%M:%S GMT",
                                                      time.gmtime(int(st.st_mtime)))
    assert r.header("date")
    assert r.header("x-request-id")
    # MIME types from /etc/mime.types, extension case-insensitive; unknown -> octet-stream
    assert get(static, "/mod.wasm").header("content-type") == "application/wasm"
    assert get(static, "/logo.SVG").header("content-type") == "image/svg+xml"
    assert get(static, "/noext").header("content-type") == "application/octet-stream"
    assert get(static, "/space%20name.txt").body == b"spaced"
    # the access log names the route, no pool
    entries = static.access_entries()
    assert any(e["route"] == "site" and e["status"] == 200 for e in entries)


def test_head_keeps_length_without_body(static):
    with RawClient(static.port()) as c:
        r = c.request("HEAD", "/big.bin")
        assert r.status == 200 and r.body == b""
        assert r.header("content-length") == str(BIG)
        r = c.request("GET", "/app.css")  # the connection goes on
        assert r.status == 200 and r.body.startswith(b"body")


def test_conditional_requests(static):
    first = get(static, "/app.css")
    etag, lm = first.header("etag"), first.header("last-modified")
    for h in ({"If-None-Match": etag}, {"If-None-Match": f'W/{etag}, "other"'},
              {"If-None-Match": "*"}, {"If-Modified-Since": lm}):
        r = get(static, "/app.css", h)
        assert r.status == 304, h
        assert r.body == b"" and r.header("etag") == etag
        assert r.header("content-length") is None
        assert r.header("cache-control") == "public, max-age=60"
    # a different tag, or an older date: the file
    assert get(static, "/app.css", {"If-None-Match": '"nope"'}).status == 200
    assert get(static, "/app.css",
               {"If-Modified-Since": "Thu, 01 Jan 1998 00:00:00 GMT"}).status == 200
    # If-None-Match wins over If-Modified-Since
    assert get(static, "/app.css", {"If-None-Match": '"nope"',
                                    "If-Modified-Since": lm}).status == 200
    # preconditions
    assert get(static, "/app.css", {"If-Match": etag}).status == 200
    r = get(static, "/app.css", {"If-Match": '"nope"'})
    assert r.status == 412 and r.json()["error"] == "precondition_failed"
    assert get(static, "/app.css",
               {"If-Unmodified-Since": "Thu, 01 Jan 1998 00:00:00 GMT"}).status == 412


def test_ranges(static, site):
    data = (site / "big.bin").read_bytes()
    r = get(static, "/big.bin", {"Range": "bytes=10-19"})
    assert r.status == 206 and r.body == data[10:20]
    assert r.header("content-range") == f"bytes 10-19/{BIG}"
    assert r.header("content-length") == "10"
    r = get(static, "/big.bin", {"Range": "bytes=-5"})
    assert r.status == 206 and r.body == data[-5:]
    r = get(static, "/big.bin", {"Range": f"bytes={BIG - 3}-"})
    assert r.status == 206 and r.body == data[-3:]
    r = get(static, "/big.bin", {"Range": f"bytes=1000000-{BIG * 2}"})  # clamped, large slice
    assert r.status == 206 and r.body == data[1000000:]
    r = get(static, "/big.bin", {"Range": f"bytes={BIG}-"})
    assert r.status == 416 and r.header("content-range") == f"bytes */{BIG}"
    assert r.json()["error"] == "range_not_satisfiable"
    # several ranges, another unit, garbage: ignored, the whole file
    for rng in ("bytes=0-1,5-6", "items=0-1", "bytes=x-y", "bytes=9-3"):
        r = get(static, "/app.css", {"Range": rng})
        assert r.status == 200 and r.body == b"body { color: red }\n", rng
    # If-Range with the current validator: the range; with another: the whole file
    etag = get(static, "/app.css").header("etag")
    assert get(static, "/app.css", {"Range": "bytes=0-3", "If-Range": etag}).status == 206
    assert get(static, "/app.css", {"Range": "bytes=0-3", "If-Range": '"old"'}).status == 200


def test_small_range_body(static):
    r = get(static, "/app.css", {"Range": "bytes=5-"})
    assert r.status == 206 and r.body == b"{ color: red }\n"


def test_directories_index_redirect_and_no_listing(static):
    r = get(static, "/docs?x=1")
    assert r.status == 301 and r.header("location") == "/docs/?x=1"
    assert get(static, "/docs/").body == b"docs index\n"
    assert get(static, "/").body == b"<h1>home</h1>\n"
    r = get(static, "/empty/")
    assert r.status == 403 and r.json()["error"] == "forbidden"
    r = get(static, "/nope.txt")
    assert r.status == 404 and r.json()["error"] == "not_found"


def test_try_files_alias_and_exact_alias(static):
    # SPA: unknown paths fall back to /index.html; existing files and directories win
    assert get(static, "/spa/deep/link?q=1").body == b"<h1>home</h1>\n"
    assert get(static, "/spa/app.css").body == b"body { color: red }\n"
    assert get(static, "/spa/docs").body == b"docs index\n"  # $uri/ serves the index
    assert get(static, "/spa/").body == b"<h1>home</h1>\n"
    # =404 as the last entry
    assert get(static, "/strict/app.css").status == 200
    assert get(static, "/strict/missing").status == 404
    # an exact route aliased to a file
    r = get(static, "/favicon.ico")
    assert r.status == 200 and r.body == b"body { color: red }\n"
    # the other routes still proxy
    assert get(static, "/api/x").status == 200


def test_methods(static):
    r = get(static, "/app.css", method="POST")
    assert r.status == 405 and r.header("allow") == "GET, HEAD"
    r = get(static, "/app.css", method="DELETE")
    assert r.status == 405


def test_no_way_out_of_the_root(static):
    for target, want in (("/../secret.txt", 400), ("/%2e%2e/secret.txt", 400),
                         ("/docs/%2E%2E/%2e%2e/secret.txt", 400),
                         ("/docs%2f..%2f..%2fsecret.txt", 400), ("/a%00b", 400),
                         ("/%zz", 400), ("/abs-out", 404), ("/rel-out", 404), ("/abs-in", 404),
                         ("/spa/%2e%2e/secret.txt", 400), ("/spa/../secret.txt", 400),
                         ("/fifo", 404)):
        r = get(static, target)
        assert r.status == want, target
        assert b"SECRET" not in r.body
    # a relative symlink that stays inside is followed
    assert get(static, "/rel-in").body == b"body { color: red }\n"


def test_precompressed_siblings(static):
    r = get(static, "/assets/app.js", {"Accept-Encoding": "gzip, deflate, br"})
    assert r.header("content-encoding") == "br" and r.body == b"br version (not really brotli)"
    assert r.header("content-type") == "text/javascript"
    assert r.header("vary") == "Accept-Encoding"
    r = get(static, "/assets/app.js", {"Accept-Encoding": "gzip;q=0.5, br;q=0"})
    assert r.header("content-encoding") == "gzip" and gzip.decompress(r.body) == b"gz version"
    r = get(static, "/assets/app.js", {"Accept-Encoding": "identity"})
    assert r.header("content-encoding") is None
    assert r.body.startswith(b"console.log") and r.header("vary") == "Accept-Encoding"
    r = get(static, "/assets/app.js")
    assert r.header("content-encoding") is None
    # the variant has its own validator
    e1 = get(static, "/assets/app.js", {"Accept-Encoding": "gzip"}).header("etag")
    e2 = get(static, "/assets/app.js").header("etag")
    assert e1 != e2
    # not on a route without `precompressed`
    r = get(static, "/spa/assets/app.js", {"Accept-Encoding": "gzip"})
    assert r.header("content-encoding") is None and r.header("vary") is None


def _read_response_slowly(sock, want_len, chunk=4096, pause_every=64 * 1024):
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(chunk)
    head, body = buf.split(b"\r\n\r\n", 1)
    read = len(body)
    parts = [body]
    since_pause = read
    while read < want_len:
        d = sock.recv(chunk)
        assert d, f"closed after {read} of {want_len} body bytes"
        parts.append(d)
        read += len(d)
        since_pause += len(d)
        if since_pause >= pause_every:
            since_pause = 0
            time.sleep(0.01)
    return head, b"".join(parts)


def test_large_file_sendfile_keepalive_and_slow_reader(static, site):
    data = (site / "big.bin").read_bytes()
    with RawClient(static.port()) as c:
        for _ in range(2):
            r = c.request("GET", "/big.bin")
            assert r.status == 200 and len(r.body) == BIG and r.body == data
        r = c.request("GET", "/app.css")
        assert r.status == 200
    # a reader with a tiny receive buffer that pauses: the send waits for writability
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    s.connect(("127.0.0.1", static.port()))
    s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\nGET /app.css HTTP/1.1\r\nHost: t\r\n\r\n")
    head, body = _read_response_slowly(s, BIG)
    assert head.startswith(b"HTTP/1.1 200")
    assert body[:BIG] == data
    rest = body[BIG:]
    while b"color: red" not in rest:  # the pipelined second answer follows in order
        rest += s.recv(4096)
    assert rest.startswith(b"HTTP/1.1 200")
    s.close()


def _fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_client_vanishing_mid_file_leaks_nothing(static):
    with RawClient(static.port()) as c:  # warm up: worker streams, mime table
        assert c.request("GET", "/big.bin").status == 200
    pid = static.pid
    before = _fd_count(pid)
    for _ in range(20):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", static.port()))
        s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        s.recv(1000)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")  # RST
        s.close()
    wait_until(lambda: _fd_count(pid) <= before, timeout=5,
               message=f"fds back to {before} (now {_fd_count(pid)})")
    assert get(static, "/app.css").status == 200


def test_client_that_stops_reading_is_dropped(make_sluice, site):
    s = make_sluice()
    s.start(s.config(pools={}, server={"client_idle_timeout": "1s"},
                     routes=[{"name": "site", "path": "/", "static": {"root": str(site)}}]))
    pid = s.pid
    before = _fd_count(pid)
    c = socket.socket()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.connect(("127.0.0.1", s.port()))
    c.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
    wait_until(lambda: _fd_count(pid) > before, timeout=5, message="connection accepted")
    t0 = time.monotonic()
    # never read: after ~1s without progress the server gives up on this client
    wait_until(lambda: _fd_count(pid) <= before, timeout=6, message="stalled download dropped")
    assert time.monotonic() - t0 >= 0.8
    got = b""
    c.settimeout(5)
    try:
        while True:
            d = c.recv(65536)
            if not d:
                break
            got += d
    except ConnectionResetError:
        pass
    c.close()
    assert len(got) < BIG  # it never looked complete
    assert http_request(s.port(), "GET", "/app.css").status == 200


def test_large_file_over_tls(make_sluice, site, tmp_path):
    ca = TestCA(tmp_path / "ca")
    cert, key = ca.issue("web", ["a.test"], "ec", cn="a.test")
    s = make_sluice()
    port = free_port()
    s.start(s.config(
        listeners=[{"name": "web", "listen": f"127.0.0.1:{port}",
                    "tls": {"certificates": [{"cert": cert, "key": key}]}}],
        pools={}, routes=[{"name": "site", "path": "/", "static": {"root": str(site)}}]))
    data = (site / "big.bin").read_bytes()
    with TlsRawClient(port, servername="a.test", ctx=client_context()) as c:
        r = c.request("GET", "/big.bin")
        assert r.status == 200 and r.body == data
        r = c.request("GET", "/big.bin", headers=[("Range", "bytes=70000-200000")])
        assert r.status == 206 and r.body == data[70000:200001]
        r = c.request("GET", "/app.css")
        assert r.body == b"body { color: red }\n"


def test_middleware_applies_to_files(make_sluice, site):
    s = make_sluice()
    extra = """
[middleware.sec]
type = "headers"
response_set = { "X-Frame-Options" = "DENY" }
"""
    s.start(s.config(pools={}, routes=[
        {"name": "site", "path": "/", "static": {"root": str(site)}, "middleware": ["sec"]}],
        extra=extra))
    r = http_request(s.port(), "GET", "/app.css")
    assert r.status == 200 and r.header("x-frame-options") == "DENY"
    r = http_request(s.port(), "GET", "/missing")
    assert r.status == 404 and r.header("x-frame-options") == "DENY"


def test_small_files_cached_for_cache_valid_then_fresh(static, site):
    assert get(static, "/app.css").body == b"body { color: red }\n"
    assert get(static, "/fresh/app.css").body == b"body { color: red }\n"
    (site / "app.css").write_text("body { color: blue }\n")
    os.utime(site / "app.css", (time.time() + 5, time.time() + 5))  # a visibly newer mtime
    # cache_valid = "0s": every request asks the disk
    r = get(static, "/fresh/app.css")
    assert r.body == b"body { color: blue }\n"
    new_etag = r.header("etag")
    # the default (1s): the worker's copy until it expires, then the new file and validator
    t0 = time.monotonic()
    wait_until(lambda: get(static, "/app.css").body == b"body { color: blue }\n", timeout=3,
               message="the cached copy expired")
    assert time.monotonic() - t0 < 2.5
    r = get(static, "/app.css")
    assert r.header("etag") == new_etag and r.header("content-length") == "21"
    # a cached answer still judges conditions and ranges per request
    assert get(static, "/app.css", {"If-None-Match": new_etag}).status == 304
    r = get(static, "/app.css", {"Range": "bytes=0-3"})
    assert r.status == 206 and r.body == b"body"
    (site / "new.txt").write_text("new")
    assert get(static, "/new.txt").body == b"new"  # misses are never cached


def test_cache_hits_pipelined(static):
    for _ in range(2):  # the second round is all cache hits
        with RawClient(static.port()) as c:
            c.send(b"".join(b"GET /%s HTTP/1.1\r\nHost: t\r\n\r\n" % p
                            for p in (b"app.css", b"index.html", b"app.css", b"nope",
                                      b"docs/")))
            bodies = [c.read_response().body for _ in range(5)]
        assert bodies[0] == bodies[2] == b"body { color: red }\n"
        assert bodies[1] == b"<h1>home</h1>\n" and bodies[4] == b"docs index\n"
        assert b"not_found" in bodies[3]


def test_config_errors(tmp_path):
    d = tmp_path / "www"
    d.mkdir()

    def check(route, want):
        cfg = tmp_path / "c.toml"
        cfg.write_text('[[listener]]\nname = "web"\nlisten = "127.0.0.1:%d"\n\n[[route]]\n'
                       'name = "r"\n%s\n' % (free_port(), route))
        r = run_cli(["-t", "-c", str(cfg)])
        assert want in r.stdout + r.stderr, r.stdout + r.stderr
        return r

    r = check(f'path = "/"\nstatic = {{ root = "{d}" }}', "test is successful")
    assert r.returncode == 0
    r = check(f'path = "/"\nstatic = {{ root = "{d}/missing" }}', "is not a directory (yet)")
    assert r.returncode == 0  # a warning: it may be mounted later
    for route, want in (
            (f'path = "/"\nstatic = {{ root = "{d}", alias = "{d}" }}',
             "use exactly one of 'root' and 'alias'"),
            (f'path_regex = "^/x"\nstatic = {{ alias = "{d}" }}',
             "alias: only with 'path' or 'path_exact'"),
            (f'path = "/"\nstatic = {{ root = "{d}", try_files = ["=404", "$uri"] }}',
             "only allowed as the last entry"),
            (f'path = "/"\nstatic = {{ root = "{d}", try_files = ["$uri", "$args"] }}',
             "only $uri can be used"),
            (f'path = "/"\nstatic = {{ root = "{d}", try_files = ["$uri", "=99"] }}',
             "expected =CODE"),
            (f'path = "/"\nstatic = {{ root = "{d}", index = ["a/b.html"] }}',
             "must be a file name"),
            (f'path = "/"\nstatic = {{ root = "{d}", listing = true }}', "unknown key 'listing'"),
            (f'path = "/"\nstatic = {{ root = "{d}", cache_valid = "2h" }}', "at most 1h"),
            (f'path = "/"\npool = "p"\nstatic = {{ root = "{d}" }}',
             "use exactly one of 'pool', 'split', 'return' and 'static'"),
            (f'path = "/"\nstrip_prefix = true\nstatic = {{ root = "{d}" }}',
             "strip_prefix: not allowed with 'static'")):
        r = check(route, want)
        assert r.returncode == 1
