"""A recording HTTP/1.1 test origin built on raw sockets and threads.

It records exactly what it received (request line, header lines in order, body bytes and
the framing the sender used) and answers what each test configures per path.

    be = Backend("a").start()
    be.on("/big", Response(body_size=20 << 20, mode="chunked"))
    ...
    be.requests          # list of Request, in arrival order
    be.accepted          # number of accepted TCP connections
    be.stop()
"""

import hashlib
import json
import socket
import struct
import threading
import time

from .util import HeaderLookup, bound_socket, pattern_chunks


class Request(HeaderLookup):
    def __init__(self):
        self.method = ""
        self.target = ""
        self.version = ""
        self.headers = []  # [(name, value)] exactly as received, in order
        self.body = b""
        self.framing = "none"  # "content-length" | "chunked" | "none"
        self.trailers = []
        self.conn_id = 0
        self.index_on_conn = 0
        self.raw_head = b""
        self.received_at = 0.0

    @property
    def path(self):
        return self.target.split("?", 1)[0]

    def header_names(self):
        return [k.lower() for k, _ in self.headers]

    def info(self, backend_name):
        return {
            "backend": backend_name,
            "method": self.method,
            "target": self.target,
            "version": self.version,
            "headers": [[k, v] for k, v in self.headers],
            "framing": self.framing,
            "body_len": len(self.body),
            "body_sha256": hashlib.sha256(self.body).hexdigest(),
            "conn_id": self.conn_id,
        }

    def __repr__(self):
        return f"<Request {self.method} {self.target} {self.framing} body={len(self.body)}>"


class Response:
    """What the backend answers.

    mode: "length" (Content-Length), "chunked", "close" (no framing, close after the body),
          "none" (no framing header and no body: for 204/304 or hand-written headers).
    body / body_size (deterministic pattern streamed, see util.pattern_chunks) / chunks.
    echo_body: answer the request body; echo_sha256: answer hex sha256 of the request body;
    info (default when no body is given): JSON describing the request (echoes headers).
    delay: seconds to wait after reading the request before answering.
    action: None | "reset" (RST instead of answering) | "close" (FIN without answering) |
            "garbage" (send an invalid response) | "upgrade" (101 then echo bytes) |
            "hang" (never answer; keep the socket open).
    close: close the connection after the response (announce: send Connection: close).
    """

    def __init__(self, status=200, body=None, headers=None, mode="length", reason=None,
                 body_size=None, chunks=None, delay=0.0, action=None, echo_body=False,
                 echo_sha256=False, info=None, close=False, announce=True, trailers=None,
                 raw=None, piece_delay=0.0):
        self.status = status
        self.body = body
        self.headers = list(headers or [])
        self.mode = mode
        self.reason = reason
        self.body_size = body_size
        self.chunks = chunks
        self.delay = delay
        self.action = action
        self.echo_body = echo_body
        self.echo_sha256 = echo_sha256
        self.info = info
        self.close = close
        self.announce = announce
        self.trailers = trailers
        self.raw = raw
        self.piece_delay = piece_delay


REASONS = {100: "Continue", 101: "Switching Protocols", 200: "OK", 201: "Created",
           204: "No Content", 301: "Moved Permanently", 304: "Not Modified",
           400: "Bad Request", 404: "Not Found", 500: "Internal Server Error",
           502: "Bad Gateway", 503: "Service Unavailable"}


class _Conn:
    def __init__(self, sock, cid, recv_delay=0.0):
        self.recv_delay = recv_delay
        self.sock = sock
        self.id = cid
        self.buf = b""
        self.closed = False

    def fill(self):
        if self.recv_delay:
            time.sleep(self.recv_delay)
        data = self.sock.recv(65536)
        if not data:
            raise EOFError
        self.buf += data

    def read_until(self, sep, limit=1 << 20):
        while True:
            i = self.buf.find(sep)
            if i >= 0:
                out = self.buf[:i]
                self.buf = self.buf[i + len(sep):]
                return out
            if len(self.buf) > limit:
                raise ValueError("line too long")
            self.fill()

    def read_exact(self, n):
        chunks = []
        while n > 0:
            if not self.buf:
                self.fill()
            piece = self.buf[:n]
            self.buf = self.buf[len(piece):]
            chunks.append(piece)
            n -= len(piece)
        return b"".join(chunks)


class Backend:
    def __init__(self, name="backend", port=0, host="127.0.0.1"):
        self.name = name
        self.host = host
        self._want_port = port
        self.port = None
        self.routes = {}  # path or prefix* -> Response | callable(req) -> Response
        self.default = None
        self.requests = []
        self.accepted = 0
        self.closed = 0  # connections that ended (either side)
        self.errors = []
        self.upgrade_events = []
        self.recv_delay = 0.0  # seconds slept before each recv: a slow reader
        self.in_flight = 0  # requests being answered right now
        self.peak_in_flight = 0
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._conns = set()
        self._listener = None
        self._thread = None
        self._stopping = False
        self._next_id = 0

    # ---- configuration -------------------------------------------------------------
    @property
    def address(self):
        return f"{self.host}:{self.port}"

    def on(self, path, response):
        """Answer `response` for requests whose path equals `path` (or starts with it if it
        ends with '*'). `response` may be a callable taking the Request."""
        self.routes[path] = response
        return self

    def set_default(self, response):
        self.default = response
        return self

    def _pick(self, req):
        r = self.routes.get(req.path)
        if r is None:
            best = None
            for k, v in self.routes.items():
                if k.endswith("*") and req.path.startswith(k[:-1]):
                    if best is None or len(k) > len(best[0]):
                        best = (k, v)
            if best:
                r = best[1]
        if r is None:
            r = self.default
        if callable(r):
            r = r(req)
        return r or Response()

    # ---- lifecycle ------------------------------------------------------------------
    def start(self):
        s = bound_socket(self.host, self._want_port)
        s.listen(256)
        s.settimeout(0.1)
        self._listener = s
        self.port = s.getsockname()[1]
        self._thread = threading.Thread(target=self._accept_loop, name=f"backend-{self.name}",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Close the listener and every connection (peers see a close)."""
        self._stopping = True
        if self._listener is not None:
            try:
                self._listener.close()
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(2)
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                c.sock.close()
            except OSError:
                pass

    kill = stop

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- observation ----------------------------------------------------------------
    def reset_records(self):
        with self._lock:
            self.requests = []

    def paths(self):
        with self._lock:
            return [r.target for r in self.requests]

    def wait_requests(self, n, timeout=5.0):
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.requests) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"backend {self.name}: expected {n} requests, got {len(self.requests)}")
                self._cond.wait(left)
            return list(self.requests)

    @property
    def open_connections(self):
        with self._lock:
            return len(self._conns)

    # ---- serving --------------------------------------------------------------------
    def _accept_loop(self):
        while not self._stopping:
            try:
                sock, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._next_id += 1
                self.accepted += 1
                c = _Conn(sock, self._next_id, self.recv_delay)
                self._conns.add(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        index = 0
        try:
            while True:
                req = self._read_request(c)
                if req is None:
                    break
                index += 1
                req.index_on_conn = index
                resp = self._pick(req)
                if resp.action == "reset" or resp.action == "close":
                    # Record the request, then drop the connection without answering.
                    self._record(req)
                    if resp.delay:
                        time.sleep(resp.delay)
                    if resp.action == "reset":
                        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                          struct.pack("ii", 1, 0))
                    break
                self._record(req)
                # In flight from the request's arrival until just before the answer goes out:
                # the proxy can only see the end of the answer after that, so a limit it keeps
                # is never seen exceeded here.
                with self._lock:
                    self.in_flight += 1
                    self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
                try:
                    if resp.delay:
                        time.sleep(resp.delay)
                    if resp.action == "hang":
                        while not self._stopping:
                            time.sleep(0.05)
                        break
                finally:
                    with self._lock:
                        self.in_flight -= 1
                keep = self._respond(c, req, resp)
                if not keep:
                    break
        except (EOFError, ConnectionError, OSError, ValueError) as e:
            if not isinstance(e, EOFError) and not self._stopping:
                self.errors.append(repr(e))
        finally:
            try:
                c.sock.close()
            except OSError:
                pass
            with self._lock:
                self._conns.discard(c)
                self.closed += 1
                self._cond.notify_all()

    def _record(self, req):
        with self._cond:
            self.requests.append(req)
            self._cond.notify_all()

    def _read_request(self, c):
        # Wait for the first byte; a clean EOF between requests is a normal end.
        while not c.buf:
            try:
                c.fill()
            except EOFError:
                return None
        head = c.read_until(b"\r\n\r\n")
        req = Request()
        req.conn_id = c.id
        req.raw_head = head + b"\r\n\r\n"
        req.received_at = time.monotonic()
        lines = head.split(b"\r\n")
        parts = lines[0].decode("latin-1").split(" ")
        if len(parts) != 3:
            raise ValueError(f"bad request line {lines[0]!r}")
        req.method, req.target, req.version = parts
        for line in lines[1:]:
            k, _, v = line.decode("latin-1").partition(":")
            req.headers.append((k, v.strip(" \t")))
        te = req.header("transfer-encoding")
        cl = req.header("content-length")
        if (req.header("expect") or "").lower() == "100-continue":
            c.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        if te is not None and te.strip().lower().endswith("chunked"):
            req.framing = "chunked"
            parts = []
            while True:
                size_line = c.read_until(b"\r\n").decode("latin-1")
                size = int(size_line.split(";", 1)[0].strip(), 16)
                if size == 0:
                    break
                parts.append(c.read_exact(size))
                if c.read_exact(2) != b"\r\n":
                    raise ValueError("bad chunk terminator")
            while True:
                line = c.read_until(b"\r\n")
                if not line:
                    break
                k, _, v = line.decode("latin-1").partition(":")
                req.trailers.append((k, v.strip()))
            req.body = b"".join(parts)
        elif cl is not None:
            req.framing = "content-length"
            req.body = c.read_exact(int(cl))
        return req

    def _respond(self, c, req, resp):
        """Send the response; return True if the connection stays open."""
        sock = c.sock
        if resp.raw is not None:
            sock.sendall(resp.raw)
            return not resp.close
        if resp.action == "garbage":
            sock.sendall(b"THIS IS NOT HTTP\r\n\r\n")
            return False
        if resp.action == "upgrade":
            hdrs = resp.headers or [("Upgrade", "websocket"), ("Connection", "Upgrade")]
            out = [f"HTTP/1.1 101 Switching Protocols"] + [f"{k}: {v}" for k, v in hdrs]
            sock.sendall(("\r\n".join(out) + "\r\n\r\n").encode("latin-1"))
            data = c.buf
            c.buf = b""
            if data:
                sock.sendall(data)
            while True:
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    self.upgrade_events.append("client-eof")
                    break
                sock.sendall(data)
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            return False

        # Body source.
        body_iter = None
        length = None
        if resp.echo_body:
            body = req.body
        elif resp.echo_sha256:
            body = hashlib.sha256(req.body).hexdigest().encode()
        elif resp.body_size is not None:
            body = None
            length = resp.body_size
            body_iter = pattern_chunks(resp.body_size)
        elif resp.chunks is not None:
            body = None
            body_iter = iter(resp.chunks)
            length = sum(len(x) for x in resp.chunks)
        elif resp.body is not None:
            body = resp.body if isinstance(resp.body, bytes) else resp.body.encode()
        else:
            body = json.dumps(req.info(self.name)).encode()
        if body is not None:
            length = len(body)
            body_iter = iter([body]) if body else iter([])

        names = {k.lower() for k, _ in resp.headers}
        headers = list(resp.headers)
        if "x-backend" not in names:
            headers.append(("X-Backend", self.name))
        if resp.info is not False and body is not None and resp.body is None \
                and not resp.echo_body and not resp.echo_sha256 and "content-type" not in names:
            headers.append(("Content-Type", "application/json"))
        if resp.echo_sha256:
            headers.append(("X-Body-Sha256", hashlib.sha256(req.body).hexdigest()))
            headers.append(("X-Body-Length", str(len(req.body))))
        mode = resp.mode
        if mode == "length" and "content-length" not in names:
            headers.append(("Content-Length", str(length)))
        elif mode == "chunked" and "transfer-encoding" not in names:
            headers.append(("Transfer-Encoding", "chunked"))
        close_after = resp.close or mode == "close" \
            or (req.header("connection") or "").lower() == "close"
        if close_after and resp.announce and "connection" not in names:
            headers.append(("Connection", "close"))
        reason = resp.reason or REASONS.get(resp.status, "Status")
        out = [f"HTTP/1.1 {resp.status} {reason}"] + [f"{k}: {v}" for k, v in headers]
        sock.sendall(("\r\n".join(out) + "\r\n\r\n").encode("latin-1"))

        no_body = req.method == "HEAD" or resp.status in (204, 304) or mode == "none" \
            or 100 <= resp.status < 200
        if not no_body:
            for piece in body_iter:
                if not piece:
                    continue
                if mode == "chunked":
                    sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
                else:
                    sock.sendall(piece)
                if resp.piece_delay:
                    time.sleep(resp.piece_delay)
            if mode == "chunked":
                trailer = b"".join(f"{k}: {v}\r\n".encode() for k, v in (resp.trailers or []))
                sock.sendall(b"0\r\n" + trailer + b"\r\n")
        if close_after:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            return False
        return True
