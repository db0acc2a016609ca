"""A raw-socket HTTP/1.x client: send exact bytes, parse responses strictly enough to check
framing (Content-Length, chunked, close-delimited), detect a closed connection."""

import json
import socket
import time

from .util import HeaderLookup


class ConnectionClosed(Exception):
    pass


class HttpResponse(HeaderLookup):
    def __init__(self):
        self.version = ""
        self.status = 0
        self.reason = ""
        self.headers = []  # [(name, value)] in order
        self.body = b""
        self.framing = "none"  # "content-length" | "chunked" | "close" | "none"
        self.trailers = []
        self.raw_head = b""
        self.interim = []  # 1xx responses seen before this one

    def json(self):
        return json.loads(self.body)

    @property
    def connection_close(self):
        conn = (self.header("connection") or "").lower()
        return "close" in [t.strip() for t in conn.split(",")]

    def __repr__(self):
        return f"<HttpResponse {self.status} {self.framing} body={self.body[:200]!r}>"


class RawClient:
    def __init__(self, port, host="127.0.0.1", timeout=10.0, source=None):
        """`source`: the local address to connect from (any 127.x.y.z works on Linux)."""
        self.host = host
        self.port = port
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.eof = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def shutdown_write(self):
        self.sock.shutdown(socket.SHUT_WR)

    # ---- low level reading -----------------------------------------------------------
    def _fill(self, timeout=None):
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        try:
            data = self.sock.recv(262144)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            raise ConnectionClosed("connection closed by peer")
        self.buf += data

    def _read_until(self, sep):
        while True:
            i = self.buf.find(sep)
            if i >= 0:
                out = self.buf[:i]
                self.buf = self.buf[i + len(sep):]
                return out
            self._fill()

    def _read_exact(self, n):
        parts = []
        while n > 0:
            if not self.buf:
                self._fill()
            piece = self.buf[:n]
            self.buf = self.buf[len(piece):]
            parts.append(piece)
            n -= len(piece)
        return b"".join(parts)

    def recv_some(self, timeout=None):
        """Return buffered bytes or the next bytes received (raises ConnectionClosed on EOF)."""
        if not self.buf:
            self._fill(timeout)
        out, self.buf = self.buf, b""
        return out

    def recv_exact(self, n):
        return self._read_exact(n)

    def read_all_until_close(self):
        while True:
            try:
                self._fill()
            except ConnectionClosed:
                out, self.buf = self.buf, b""
                return out

    def is_closed(self, timeout=2.0):
        """Wait up to `timeout` for the peer to close. True if it closed (EOF/reset) with no
        further bytes, False if it stayed open; raises if unexpected bytes arrive."""
        if self.eof and not self.buf:
            return True
        if self.buf:
            raise AssertionError(f"unexpected bytes pending: {self.buf[:200]!r}")
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        except ConnectionResetError:
            self.eof = True
            return True
        if not data:
            self.eof = True
            return True
        raise AssertionError(f"expected close, got bytes: {data[:200]!r}")

    def wait_closed(self, timeout=5.0):
        """Like is_closed but tolerates (and returns) bytes that arrive before the close."""
        deadline = time.monotonic() + timeout
        got = self.buf
        self.buf = b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return None
            except ConnectionResetError:
                data = b""
            if not data:
                self.eof = True
                return got
            got += data

    # ---- HTTP ------------------------------------------------------------------------
    def read_head(self):
        head = self._read_until(b"\r\n\r\n")
        r = HttpResponse()
        r.raw_head = head + b"\r\n\r\n"
        lines = head.split(b"\r\n")
        status_line = lines[0].decode("latin-1")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise AssertionError(f"bad status line {status_line!r}")
        r.version = parts[0]
        r.status = int(parts[1])
        r.reason = parts[2] if len(parts) > 2 else ""
        for line in lines[1:]:
            k, sep, v = line.decode("latin-1").partition(":")
            if not sep:
                raise AssertionError(f"bad header line {line!r}")
            r.headers.append((k, v.strip(" \t")))
        return r

    def read_response(self, method="GET", skip_interim=True):
        """Read one response. With skip_interim, 1xx (except 101) are collected in
        `.interim` and the final response is returned."""
        interim = []
        while True:
            r = self.read_head()
            if 100 <= r.status < 200 and r.status != 101 and skip_interim:
                interim.append(r)
                continue
            break
        r.interim = interim
        if method == "HEAD" or r.status in (204, 304) or 100 <= r.status < 200:
            r.framing = "none"
            return r
        te = r.header("transfer-encoding")
        cl = r.header("content-length")
        if te is not None:
            if te.strip().lower() != "chunked":
                raise AssertionError(f"unexpected Transfer-Encoding {te!r}")
            r.framing = "chunked"
            parts = []
            while True:
                size_line = self._read_until(b"\r\n").decode("latin-1")
                size = int(size_line.split(";", 1)[0].strip(), 16)
                if size == 0:
                    break
                parts.append(self._read_exact(size))
                crlf = self._read_exact(2)
                if crlf != b"\r\n":
                    raise AssertionError(f"bad chunk terminator {crlf!r}")
            while True:
                line = self._read_until(b"\r\n")
                if not line:
                    break
                k, _, v = line.decode("latin-1").partition(":")
                r.trailers.append((k, v.strip()))
            r.body = b"".join(parts)
        elif cl is not None:
            if len(set(r.header_all("content-length"))) != 1:
                raise AssertionError(f"conflicting Content-Length {r.header_all('content-length')}")
            r.framing = "content-length"
            r.body = self._read_exact(int(cl))
        else:
            r.framing = "close"
            r.body = self.read_all_until_close()
        return r

    def request(self, method="GET", target="/", headers=None, body=None, host="test.local",
                version="HTTP/1.1"):
        """Send one request built from parts and read its response."""
        self.send(build_request(method, target, headers, body, host, version))
        return self.read_response(method)


def build_request(method="GET", target="/", headers=None, body=None, host="test.local",
                  version="HTTP/1.1"):
    lines = [f"{method} {target} {version}"]
    hdrs = list(headers or [])
    names = {k.lower() for k, _ in hdrs}
    if host is not None and "host" not in names:
        lines.append(f"Host: {host}")
    if isinstance(body, str):
        body = body.encode()
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        hdrs.append(("Content-Length", str(len(body))))
    lines += [f"{k}: {v}" for k, v in hdrs]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def http_request(port, method="GET", target="/", headers=None, body=None, host="test.local",
                 timeout=10.0):
    """One request on a fresh connection (closed afterwards)."""
    with RawClient(port, timeout=timeout) as c:
        return c.request(method, target, headers, body, host)
