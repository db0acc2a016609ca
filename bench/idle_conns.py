#!/usr/bin/env python3
"""Opens N keep-alive connections to HOST:PORT, sends one GET on each, reads each full
response, then keeps every connection open and idle.

Prints "READY <ok> <failed>" on stdout once every connection has its response (or failed), then
waits until stdin is closed (or --hold seconds pass) and closes everything. Used by the idle-
memory measurement in bench/harness.py; usable on its own:

    python3 bench/idle_conns.py 127.0.0.1 8080 10000 /small
"""
import argparse
import errno
import os
import resource
import selectors
import socket
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("n", type=int)
    ap.add_argument("path", nargs="?", default="/small")
    ap.add_argument("--batch", type=int, default=256, help="connects in flight at once")
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--hold", type=float, default=0, help="exit after this many seconds idle "
                    "instead of waiting for stdin to close")
    a = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if a.n + 32 > hard:
        print(f"idle_conns: {a.n} connections need more than RLIMIT_NOFILE={hard}", file=sys.stderr)
        return 2

    req = (f"GET {a.path} HTTP/1.1\r\nHost: {a.host}:{a.port}\r\n"
           f"User-Agent: sluice-bench-idle\r\n\r\n").encode()
    sel = selectors.DefaultSelector()
    state = {}  # sock -> [phase, buffer]; phase: "connect" | "read"
    done, failed, started, inflight = [], 0, 0, 0
    deadline = time.monotonic() + a.timeout

    def start_one():
        nonlocal started, inflight, failed
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
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

    while (started < a.n or inflight) and time.monotonic() < deadline:
        while started < a.n and inflight < a.batch:
            start_one()
        for key, _ in sel.select(timeout=1.0):
            s = key.fileobj
            st = state[s]
            if st[0] == "connect":
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    finish(s, False)
                    continue
                try:
                    s.send(req)
                except OSError:
                    finish(s, False)
                    continue
                st[0] = "read"
                sel.modify(s, selectors.EVENT_READ)
            else:
                try:
                    chunk = s.recv(65536)
                except OSError:
                    finish(s, False)
                    continue
                if not chunk:
                    finish(s, False)
                    continue
                st[1] += chunk
                if response_complete(st[1]):
                    ok = st[1].startswith(b"HTTP/1.1 200")
                    finish(s, ok)
    failed += len(state) + (a.n - started)

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
