"""Small helpers shared by the harness and the tests."""

import hashlib
import os
import socket
import time

_BLOCK = None


_HANDED_OUT = set()


def read_text(path):
    """A log file's text ("" while it does not exist), undecodable bytes replaced."""
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago (bind :0, read, close).

    Never the same port twice in one test run: a port handed out for a "dead" backend is not
    bound by anyone, so the kernel would happily offer it again (e.g. as the admin port)."""
    s = bound_socket()
    port = s.getsockname()[1]
    s.close()
    return port


def bound_socket(host="127.0.0.1", port=0):
    """A TCP socket bound to (host, port), SO_REUSEADDR set. With port 0, never a port that
    free_port() handed out: nobody may be bound to such a port yet (a Sluice about to listen
    on it), and the kernel would offer it again. The port is then reserved the same way."""
    held = []
    try:
        while True:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except BaseException:
                s.close()
                raise
            got = s.getsockname()[1]
            if port or got not in _HANDED_OUT:
                _HANDED_OUT.add(got)
                return s
            held.append(s)  # keep it bound, so the next bind cannot get it again
    finally:
        for h in held:
            h.close()


def wait_until(pred, timeout=5.0, interval=0.01, message="condition"):
    """Poll `pred` until it returns a truthy value (returned) or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = pred()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message} (last={last!r})")
        time.sleep(interval)


def wait_stopped(pid, what, timeout=5.0):
    """Wait until every thread of process `pid` is stopped (after a SIGSTOP, which is
    asynchronous: bytes sent right after kill() may still be read at once)."""
    deadline = time.monotonic() + timeout
    task_dir = f"/proc/{pid}/task"
    while True:
        states = []
        for tid in os.listdir(task_dir):
            try:
                with open(f"{task_dir}/{tid}/stat") as f:
                    states.append(f.read().rsplit(")", 1)[1].split()[0])
            except FileNotFoundError:
                continue
        if states and all(st in ("T", "t") for st in states):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not stop: thread states {states}")
        time.sleep(0.001)


def port_is_open(port, host="127.0.0.1", timeout=0.2):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_refuses(port, host="127.0.0.1", timeout=0.5):
    """True if a connect to the port is actively refused (nothing listening)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((host, port))
        return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    finally:
        s.close()


def _block():
    global _BLOCK
    if _BLOCK is None:
        # 64 KiB of deterministic pseudo-random bytes (not compressible, not repeating short).
        out = bytearray()
        h = b"sluice-pattern"
        while len(out) < 65536:
            h = hashlib.sha256(h).digest()
            out += h
        _BLOCK = bytes(out[:65536])
    return _BLOCK


def pattern_chunks(size, chunk=65536, offset=0):
    """Yield `size` deterministic bytes in pieces of at most `chunk` bytes."""
    block = _block()
    pos = offset
    remaining = size
    while remaining > 0:
        start = pos % len(block)
        n = min(chunk, remaining, len(block) - start)
        yield block[start:start + n]
        pos += n
        remaining -= n


def pattern_bytes(size):
    return b"".join(pattern_chunks(size))


def pattern_sha256(size):
    h = hashlib.sha256()
    for piece in pattern_chunks(size):
        h.update(piece)
    return h.hexdigest()


class Blackhole:
    """A local port whose connects hang (SYNs dropped: listener with a full accept queue that
    never accepts), for connect_timeout tests without relying on unroutable addresses."""

    def __init__(self):
        self.listener = bound_socket()
        self.listener.listen(0)
        self.port = self.listener.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.fillers = []
        for _ in range(16):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(0.3)
            self.fillers.append(s)
            try:
                s.connect(("127.0.0.1", self.port))
            except OSError:
                break  # the queue is full: further connects hang
        else:
            raise AssertionError("could not fill the accept queue")

    def close(self):
        for s in self.fillers:
            s.close()
        self.listener.close()


class HeaderLookup:
    """Case-insensitive access to a `headers` list of (name, value) pairs."""

    def header(self, name, default=None):
        n = name.lower()
        for k, v in self.headers:
            if k.lower() == n:
                return v
        return default

    def header_all(self, name):
        n = name.lower()
        return [v for k, v in self.headers if k.lower() == n]

    def has_header(self, name):
        return self.header(name) is not None
