#!/usr/bin/env python3
"""Opens N keep-alive connections to HOST:PORT (plain HTTP, or TLS with --tls), sends one GET on
each, reads each full response, then keeps every connection open and idle.

Prints "READY <ok> <failed>" on stdout once every connection has its response (or failed), then
waits until stdin is closed (or --hold seconds pass) and closes everything. Used by the idle-
memory measurement in bench/harness.py; usable on its own:

    python3 bench/idle_conns.py 127.0.0.1 8080 10000 /small
    python3 bench/idle_conns.py --tls 127.0.0.1 8443 10000 /small

--tls: the handshakes are non-blocking, driven by the same selector (SSLWantReadError /
SSLWantWriteError), at most --batch connections connecting or handshaking at once. The server
certificate is not verified (the bench certificate is self-signed); no session tickets, no
session reuse: every connection is a full handshake, so the proxy holds a complete TLS
connection for each. The TLS batch defaults to 16, not 256: a server's handshake in flight
needs far more memory than an idle TLS connection (~30 KB more), and what the allocator grew to
for the peak stays in RSS, so 256 handshakes at once add ~30 KB x 256 / N to the per-connection
figure (with nginx: 45 KB/connection at N = 200, 16 KB with a batch of 16; 15.5 vs 15.3 KB at
N = 10,000). Python is the slow side: ~1 ms of client CPU per handshake, 10,000 in 10-20 s.
-v prints the time taken, the client's CPU time and the TLS version and cipher on stderr.
"""
import argparse
import errno
import resource
import selectors
import socket
import ssl
import sys
import time


def tls_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.options |= ssl.OP_NO_TICKET
    return ctx


def response_complete(buf):
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return False
    head = buf[:head_end].decode("latin-1").lower()
    length = 0
    for line in head.split("\r\n")[1:]:
        k, _, v = line.partition(":")
        if k.strip() == "content-length":
            length = int(v.strip())
    return len(buf) - head_end - 4 >= length


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("n", type=int)
    ap.add_argument("path", nargs="?", default="/small")
    ap.add_argument("--tls", action="store_true", help="connect with TLS (full handshake each)")
    ap.add_argument("--batch", type=int, default=0,
                    help="connects (and TLS handshakes) in flight at once (default: 256 plain, "
                    "16 TLS)")
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--hold", type=float, default=0, help="exit after this many seconds idle "
                    "instead of waiting for stdin to close")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="print time and client CPU time on stderr")
    a = ap.parse_args()
    if a.batch <= 0:
        a.batch = 16 if a.tls else 256

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if a.n + 32 > hard:
        print(f"idle_conns: {a.n} connections need more than RLIMIT_NOFILE={hard}", file=sys.stderr)
        return 2

    req = (f"GET {a.path} HTTP/1.1\r\nHost: {a.host}:{a.port}\r\n"
           f"User-Agent: sluice-bench-idle\r\n\r\n").encode()
    ctx = tls_context() if a.tls else None
    sel = selectors.DefaultSelector()
    # sock -> [phase, buffer]; phase: "connect" | "handshake" | "send" | "read".
    # "send": buffer holds the request bytes not yet written; "read": the response so far.
    state = {}
    done, failed, started, inflight = [], 0, 0, 0
    t0, c0 = time.monotonic(), time.process_time()
    deadline = t0 + a.timeout

    def start_one():
        nonlocal started, inflight, failed
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        # as browsers, curl and wrk do: without it, the GET right after the client's TLS
        # Finished waits for the server's (delayed, ~40 ms) ACK unless the server has something
        # to send then (nginx and HAProxy send two TLS 1.3 session tickets, Sluice none)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rc = s.connect_ex((a.host, a.port))
        started += 1
        if rc not in (0, errno.EINPROGRESS):
            s.close()
            failed += 1
            return
        state[s] = ["connect", b""]
        sel.register(s, selectors.EVENT_WRITE)
        inflight += 1

    def finish(s, ok):
        nonlocal inflight, failed
        sel.unregister(s)
        del state[s]
        inflight -= 1
        if ok:
            done.append(s)
        else:
            failed += 1
            s.close()

    def drop_failed(s):
        """A connection already out of the selector and the state failed."""
        nonlocal inflight, failed
        inflight -= 1
        failed += 1
        s.close()

    def want(s, events):
        if sel.get_key(s).events != events:
            sel.modify(s, events)

    def handshake(s):
        """Advances the TLS handshake; True once it is complete."""
        try:
            s.do_handshake()
            return True
        except ssl.SSLWantReadError:
            want(s, selectors.EVENT_READ)
        except ssl.SSLWantWriteError:
            want(s, selectors.EVENT_WRITE)
        return False

    def send(s, st):
        """Writes what is left of the request; True once all of it is written."""
        while st[1]:
            try:
                k = s.send(st[1])
            except (BlockingIOError, ssl.SSLWantWriteError):
                want(s, selectors.EVENT_WRITE)
                return False
            except ssl.SSLWantReadError:
                want(s, selectors.EVENT_READ)
                return False
            st[1] = st[1][k:]
        st[0] = "read"
        want(s, selectors.EVENT_READ)
        return True

    def read(s, st):
        """Reads everything available (an SSL socket may hold decrypted bytes the selector does
        not see); finishes the connection once the response is complete or on EOF/error."""
        while True:
            try:
                chunk = s.recv(65536)
            except (BlockingIOError, ssl.SSLWantReadError):
                return
            except ssl.SSLWantWriteError:  # renegotiation/key update: not expected
                want(s, selectors.EVENT_WRITE)
                return
            except OSError:
                finish(s, False)
                return
            if not chunk:
                finish(s, False)
                return
            st[1] += chunk
            if response_complete(st[1]):
                finish(s, st[1].startswith(b"HTTP/1.1 200"))
                return

    def step(s):
        try:
            advance(s)
        except OSError:  # a TLS alert, a reset during the handshake, ...
            if s in state:
                finish(s, False)

    def advance(s):
        st = state[s]
        if st[0] == "connect":
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                finish(s, False)
                return
            if ctx is not None:
                # wrap_socket detaches the plain socket: swap it in the selector and the state
                sel.unregister(s)
                del state[s]
                try:
                    s = ctx.wrap_socket(s, do_handshake_on_connect=False)
                except (OSError, ValueError):
                    drop_failed(s)
                    return
                st = state[s] = ["handshake", b""]
                sel.register(s, selectors.EVENT_READ)
                step(s)  # errors from here on are the wrapped socket's
                return
            else:
                st[0] = "send"
        if st[0] == "handshake":
            if not handshake(s):
                return
            st[0] = "send"
        if st[0] == "send":
            if not st[1]:
                st[1] = req
            if not send(s, st):
                return
        read(s, st)

    while (started < a.n or inflight) and time.monotonic() < deadline:
        while started < a.n and inflight < a.batch:
            start_one()
        for key, _ in sel.select(timeout=1.0):
            s = key.fileobj
            if s in state:
                step(s)
    failed += len(state) + (a.n - started)
    if a.verbose:
        print(f"idle_conns: {len(done)} {'TLS' if a.tls else 'plain'} connections ready, "
              f"{failed} failed, {time.monotonic() - t0:.2f} s, client CPU "
              f"{time.process_time() - c0:.2f} s"
              + (f", {done[0].version()} {done[0].cipher()[0]}" if a.tls and done else ""),
              file=sys.stderr, flush=True)

    print(f"READY {len(done)} {failed}", flush=True)
    if a.hold > 0:
        time.sleep(a.hold)
    else:
        try:
            sys.stdin.read()
        except KeyboardInterrupt:
            pass
    for s in done:
        s.close()
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
