"""Pieces shared by the load scripts (tests/load/slow_clients.py, bench/soak.py): an asyncio
HTTP/1.1 origin that keeps up with thousands of connections, a sampler of a process's RSS,
open descriptors and CPU from /proc, and percentile summaries.

Standard library only."""

import asyncio
import base64
import hashlib
import os
import resource
import struct
import threading
import time

SMALL_BODY = b'{"ok":true,"origin":1}\n'  # 22 bytes + newline
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def raise_fd_limit():
    """Soft RLIMIT_NOFILE up to the hard limit (this process and what it starts); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# ---- origin -----------------------------------------------------------------------------

async def _serve_origin(reader, writer, big_size):
    writer.transport.set_write_buffer_limits(high=16384)
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            length = int(headers.get("content-length", "0") or 0)
            if length:
                await reader.readexactly(length)
            if headers.get("upgrade", "").lower() == "websocket":
                await _websocket_echo(reader, writer, headers)
                return
            path = target.split("?", 1)[0]
            if path.startswith("/big"):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                             b"Content-Length: %d\r\n\r\n" % big_size)
                piece = b"b" * 65536
                left = big_size
                while left > 0:
                    n = min(left, len(piece))
                    writer.write(piece[:n])
                    left -= n
                    await writer.drain()
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n" % len(SMALL_BODY) + SMALL_BODY)
                await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, ValueError):
        pass
    finally:
        writer.close()


async def _websocket_echo(reader, writer, headers):
    """RFC 6455 handshake, then echo every frame (unmasked) until a close frame or EOF."""
    accept = base64.b64encode(hashlib.sha1(headers["sec-websocket-key"].encode() + _WS_GUID)
                              .digest())
    writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    while True:
        opcode, payload = await read_ws_frame(reader)
        writer.write(ws_frame(opcode, payload))
        await writer.drain()
        if opcode == 8:
            return


def ws_frame(opcode, payload, mask=None):
    """One final frame; `mask` (4 bytes) for a client's frame."""
    n = len(payload)
    head = bytes([0x80 | opcode])
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([bit | 127]) + struct.pack(">Q", n)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        head += mask
    return head + payload


async def read_ws_frame(reader):
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack(">H", await reader.readexactly(2))[0]
    elif n == 127:
        n = struct.unpack(">Q", await reader.readexactly(8))[0]
    mask = await reader.readexactly(4) if b1 & 0x80 else None
    payload = await reader.readexactly(n)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return b0 & 0x0F, payload


def run_origin(port, big_size=1 << 20, ready=None):
    """Serve forever on 127.0.0.1:port: `/big*` = `big_size` bytes (Content-Length), a
    WebSocket upgrade = an echo, anything else = SMALL_BODY. Keep-alive. Meant for a process of
    its own (`multiprocessing.Process(target=run_origin, ...)`)."""
    raise_fd_limit()

    async def main():
        server = await asyncio.start_server(lambda r, w: _serve_origin(r, w, big_size),
                                            "127.0.0.1", port, backlog=4096,
                                            limit=1 << 16)
        if ready is not None:
            ready.set()
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# ---- process sampling -------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def proc_sample(pid):
    """{"rss_kib", "fds", "cpu_s", "threads"} of a running process, from /proc."""
    rss = threads = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime
    return {"rss_kib": rss, "fds": len(os.listdir(f"/proc/{pid}/fd")), "cpu_s": cpu,
            "threads": threads}


def tcp_kernel_kib():
    """Memory the kernel holds for TCP socket buffers, all sockets (KiB, /proc/net/sockstat)."""
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                parts = line.split()
                return int(parts[parts.index("mem") + 1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    return 0


class Sampler:
    """Samples `pid` every `interval` seconds in a thread; `extra()` adds fields to each sample
    (e.g. metrics). `.samples` is a list of dicts with "t" (seconds since start) and "cpu_pct"
    (share of one core since the previous sample)."""

    def __init__(self, pid, interval=1.0, extra=None):
        self.pid = pid
        self.interval = interval
        self.extra = extra
        self.samples = []
        self.error = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="sampler")
        self._t0 = time.monotonic()

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(5)

    def take(self):
        s = proc_sample(self.pid)
        s["t"] = round(time.monotonic() - self._t0, 1)
        if self.samples:
            prev = self.samples[-1]
            dt = s["t"] - prev["t"]
            s["cpu_pct"] = round(100.0 * (s["cpu_s"] - prev["cpu_s"]) / dt, 1) if dt > 0 else 0.0
        else:
            s["cpu_pct"] = 0.0
        if self.extra:
            s.update(self.extra())
        self.samples.append(s)
        return s

    def _run(self):
        while not self._stop.wait(0 if not self.samples else self.interval):
            try:
                self.take()
            except (OSError, ValueError, IndexError) as e:  # the process is gone
                self.error = repr(e)
                return


# ---- statistics -------------------------------------------------------------------------

def percentile(values, p):
    """Nearest-rank percentile of a list (None when empty)."""
    if not values:
        return None
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(round(p / 100.0 * len(v) + 0.5)) - 1))
    return v[k]


def latency_summary(seconds):
    """{"n", "p50_ms", "p99_ms", "max_ms"} of a list of latencies in seconds."""
    ms = [s * 1000.0 for s in seconds]
    return {"n": len(ms),
            "p50_ms": round(percentile(ms, 50), 2) if ms else None,
            "p99_ms": round(percentile(ms, 99), 2) if ms else None,
            "max_ms": round(max(ms), 2) if ms else None}
