#!/usr/bin/env python3
"""Slow clients at scale against the real Sluice binary: slowloris, then slow-read, while a
normal client keeps asking. See docs/operations.md ("Slow clients under load").

    tests/load/slow_clients.py            # 10,000 slowloris + 2,000 slow-read (~3.5 min)
    tests/load/slow_clients.py --smoke    # 500 + 200, short phases (~40 s)

Environment: SLUICE_BIN (default build-release/sluice, else build/sluice), SLOWLORIS_CONNS,
SLOWREAD_CONNS, PHASE_SECONDS (each attack phase), BIG_SIZE (bytes of the slow-read answer).

Everything runs on 127.0.0.1: an asyncio origin (own process), Sluice (2 workers, the config is
written here), the attackers (own processes, from 127.0.0.2-127.0.0.11 so that the listener's
max_connections_per_ip applies to them and not to the normal client on 127.0.0.1) and the
normal client (own process: one GET every 50 ms, on a keep-alive connection, every 5th on a new
connection). Sluice's RSS, descriptors, CPU and open connections are sampled every second.

Exit status 1 when the normal client saw an error or a p99 of 100 ms or more in any phase, or
Sluice died; 0 otherwise.
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "support"))

from sluicetest import Sluice, free_port  # noqa: E402
from sluicetest.load import (Sampler, latency_summary, raise_fd_limit, run_origin,  # noqa: E402
                             tcp_kernel_kib)

ATTACK_ADDRS = [f"127.0.0.{i}" for i in range(2, 12)]  # 10 source addresses
PER_IP = None  # set from the connection count (main)
NORMAL_INTERVAL = 0.05
NORMAL_TIMEOUT = 2.0
P99_LIMIT_MS = 100.0


# ---- attackers (each in its own process; a JSON summary on stdout) ----------------------

async def _slowloris_slot(port, addr, start_delay, end, stats):
    """Keep one slowloris connection open: a request head that never ends, one more header
    line every 5 s; reconnect when Sluice closes it."""
    await asyncio.sleep(start_delay)
    while time.monotonic() < end:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                           local_addr=(addr, 0))
        except OSError:
            stats["connect_errors"] += 1
            await asyncio.sleep(0.5)
            continue
        stats["connects"] += 1
        stats["open"] += 1
        stats["peak_open"] = max(stats["peak_open"], stats["open"])
        t0 = time.monotonic()
        got = b""
        try:
            writer.write(b"GET /small HTTP/1.1\r\nHost: load.test\r\nUser-Agent: slowloris\r\n")
            while time.monotonic() < end:
                try:
                    got = await asyncio.wait_for(reader.read(4096), 5 + random.random())
                    break  # an answer (408) or EOF: Sluice is done with us
                except asyncio.TimeoutError:
                    writer.write(b"X-Slow: %d\r\n" % random.randint(0, 1 << 30))
        except (ConnectionError, OSError):
            got = None
        held = time.monotonic() - t0
        stats["open"] -= 1
        if time.monotonic() >= end:
            writer.close()
            return
        if got is None or (not got and held < 0.5):
            stats["reset"] += 1  # refused by a cap: accepted and reset at once
        elif got.startswith(b"HTTP/1.1 408"):
            stats["answered_408"] += 1
            stats["held"].append(held)
        else:
            stats["closed_silently"] += 1
            stats["held"].append(held)
        writer.close()
        if got is None or not got:
            await asyncio.sleep(0.2)  # do not spin on a refusing listener


async def _slowread_slot(port, addr, start_delay, end, stats, big_size):
    """A slow reader (as slowhttptest -X): a small receive window, a request for a large
    answer, then 32 bytes every 2 s; reconnect when Sluice closes it."""
    await asyncio.sleep(start_delay)
    while time.monotonic() < end:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.setblocking(False)
        try:
            s.bind((addr, 0))
            await asyncio.get_running_loop().sock_connect(s, ("127.0.0.1", port))
        except OSError:
            s.close()
            stats["connect_errors"] += 1
            await asyncio.sleep(0.5)
            continue
        stats["connects"] += 1
        stats["open"] += 1
        stats["peak_open"] = max(stats["peak_open"], stats["open"])
        t0 = time.monotonic()
        got = 0
        ended = "eof"
        loop = asyncio.get_running_loop()
        try:
            await loop.sock_sendall(s, b"GET /big HTTP/1.1\r\nHost: load.test\r\n"
                                       b"User-Agent: slowread\r\n\r\n")
            while time.monotonic() < end:
                await asyncio.sleep(2)
                b = await asyncio.wait_for(loop.sock_recv(s, 32), 5)
                if not b:
                    break
                got += len(b)
        except (ConnectionError, OSError):
            ended = "reset"
        except asyncio.TimeoutError:
            ended = "stuck"
        stats["open"] -= 1
        s.close()
        if time.monotonic() >= end:
            return
        stats["bytes"] += got
        stats["held"].append(time.monotonic() - t0)
        stats[ended] = stats.get(ended, 0) + 1
        if got == 0:
            await asyncio.sleep(0.2)


def attacker_main(kind, port, conns, seconds, ramp, big_size):
    raise_fd_limit()
    stats = {"connects": 0, "connect_errors": 0, "open": 0, "peak_open": 0, "reset": 0,
             "answered_408": 0, "closed_silently": 0, "bytes": 0, "held": []}
    open_samples = []

    async def main():
        end = time.monotonic() + seconds
        tasks = []
        for i in range(conns):
            addr = ATTACK_ADDRS[i % len(ATTACK_ADDRS)]
            delay = ramp * i / conns
            if kind == "slowloris":
                tasks.append(_slowloris_slot(port, addr, delay, end, stats))
            else:
                tasks.append(_slowread_slot(port, addr, delay, end, stats, big_size))

        async def watch():
            while time.monotonic() < end:
                await asyncio.sleep(1)
                open_samples.append(stats["open"])

        await asyncio.gather(watch(), *tasks)

    asyncio.run(main())
    held = sorted(stats.pop("held"))
    stats["held_n"] = len(held)
    stats["held_median_s"] = round(held[len(held) // 2], 1) if held else None
    stats["held_max_s"] = round(held[-1], 1) if held else None
    stats["open_series"] = open_samples
    print(json.dumps(stats))


# ---- the normal client --------------------------------------------------------------------

def _read_response(sock):
    buf = b""
    while b"\r\n\r\n" not in buf:
        b = sock.recv(65536)
        if not b:
            raise ConnectionError("closed before the answer")
        buf += b
    head, _, body = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(body) < length:
        b = sock.recv(65536)
        if not b:
            raise ConnectionError("closed mid-body")
        body += b
    return head.split(b" ", 2)[1]


def normal_main(port, seconds, out_path):
    """GET /small every 50 ms for `seconds`; every 5th request on a new connection. Writes
    [[t, latency_s or null, error or null], ...] to out_path."""
    results = []
    keep = None
    t_start = time.monotonic()
    i = 0
    while time.monotonic() - t_start < seconds:
        i += 1
        fresh = i % 5 == 0
        t0 = time.monotonic()
        err = None
        try:
            if fresh or keep is None:
                s = socket.create_connection(("127.0.0.1", port), timeout=NORMAL_TIMEOUT)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            else:
                s = keep
            s.settimeout(NORMAL_TIMEOUT)
            s.sendall(b"GET /small HTTP/1.1\r\nHost: load.test\r\nUser-Agent: normal\r\n"
                      + (b"Connection: close\r\n" if fresh else b"") + b"\r\n")
            status = _read_response(s)
            if status != b"200":
                err = f"status {status.decode()}"
            if fresh:
                s.close()
            else:
                keep = s
        except (OSError, ConnectionError) as e:
            err = f"{type(e).__name__}: {e}"
            if keep is not None:
                keep.close()
            keep = None
        lat = time.monotonic() - t0
        results.append([round(t0 - t_start, 3), None if err else lat, err])
        left = NORMAL_INTERVAL - (time.monotonic() - t0)
        if left > 0:
            time.sleep(left)  # pacing: a steady request rate
    with open(out_path, "w") as f:
        json.dump(results, f)


# ---- orchestration ----------------------------------------------------------------------

def sluice_binary():
    if os.environ.get("SLUICE_BIN"):
        return os.environ["SLUICE_BIN"]
    for d in ("build-release", "build"):
        p = os.path.join(REPO, d, "sluice")
        if os.path.exists(p):
            return p
    sys.exit("slow_clients: no sluice binary (build one or set SLUICE_BIN)")


def spawn(role, *args):
    return subprocess.Popen([sys.executable, os.path.abspath(__file__), "--role", role,
                             *map(str, args)], stdout=subprocess.PIPE, text=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--role")
    ap.add_argument("rest", nargs="*")
    a = ap.parse_args()
    if a.role in ("slowloris", "slowread"):
        port, conns, seconds, ramp, big = a.rest
        attacker_main(a.role, int(port), int(conns), float(seconds), float(ramp), int(big))
        return 0
    if a.role == "normal":
        normal_main(int(a.rest[0]), float(a.rest[1]), a.rest[2])
        return 0

    hard = raise_fd_limit()
    loris = int(os.environ.get("SLOWLORIS_CONNS", 500 if a.smoke else 10000))
    slowread = int(os.environ.get("SLOWREAD_CONNS", 200 if a.smoke else 2000))
    phase = float(os.environ.get("PHASE_SECONDS", 12 if a.smoke else 75))
    big = int(os.environ.get("BIG_SIZE", 256 << 10))
    baseline = 3.0 if a.smoke else 10.0
    gap = 3.0 if a.smoke else 10.0  # between phases: what the attack left behind settles
    per_ip = -(-max(loris, slowread) // len(ATTACK_ADDRS))  # the attack just fits
    ramp = min(8.0, phase / 4)
    need = loris + 200
    if hard < need + 100:
        sys.exit(f"slow_clients: the hard open-file limit ({hard}) is below {need + 100}; "
                 "lower SLOWLORIS_CONNS or raise it")
    binary = sluice_binary()
    work = tempfile.mkdtemp(prefix="sluice-slow-")
    origin_port = free_port()
    ready = multiprocessing.Event()
    origin = multiprocessing.Process(target=run_origin, args=(origin_port, big, ready),
                                     daemon=True)
    origin.start()
    ready.wait(10)

    s = Sluice(work, binary=binary)
    server = {"workers": 2, "max_connections": need + 1000,
              "client_header_timeout": "10s", "client_idle_timeout": "60s"}
    listener = {"name": "web", "listen": f"127.0.0.1:{free_port()}",
                "max_connections_per_ip": per_ip}
    cfg = s.config(routes=[{"name": "r", "path": "/", "pool": "p"}],
                   pools={"p": {"backends": [f"127.0.0.1:{origin_port}"],
                                "response_timeout": "30s"}},
                   listeners=[listener], server=server, log={"access": "off"})
    s.start(cfg)
    port = s.port()
    print(f"sluice {binary} (pid {s.pid}), fd limit {hard}; config {s.config_path}:")
    print("  " + cfg.replace("\n", "\n  ").rstrip())
    print(f"slowloris {loris} connections, slow-read {slowread} (answer {big} bytes), "
          f"{len(ATTACK_ADDRS)} source addresses, max_connections_per_ip {per_ip}, "
          f"phases {phase:.0f}s, load average {os.getloadavg()[0]:.2f}", flush=True)

    def extra():
        m = s.metrics()
        return {"conns": int(m.value("sluice_connections_active")),
                "refused": int(m.value("sluice_connections_refused_total")),
                "kernel_tcp_kib": tcp_kernel_kib()}

    sampler = Sampler(s.pid, 1.0, extra).start()
    total = baseline + phase + gap + phase + gap
    normal_out = os.path.join(work, "normal.json")
    normal = spawn("normal", port, total, normal_out)
    t0 = time.monotonic()
    marks = [("baseline", 0.0)]
    time.sleep(baseline)  # pacing: the normal client alone first
    marks.append(("slowloris", time.monotonic() - t0))
    lor = spawn("slowloris", port, loris, phase, ramp, big)
    lor_stats = json.loads(lor.communicate()[0])
    marks.append(("after slowloris", time.monotonic() - t0))
    time.sleep(gap)  # pacing: let the slowloris connections drain
    marks.append(("slow-read", time.monotonic() - t0))
    sr = spawn("slowread", port, slowread, phase, ramp, big)
    sr_stats = json.loads(sr.communicate()[0])
    marks.append(("after slow-read", time.monotonic() - t0))
    normal.wait()
    sampler.stop()
    alive = s.proc.poll() is None
    m = s.metrics() if alive else None
    s.stop()
    origin.terminate()

    # ---- report ----------------------------------------------------------------------
    results = json.load(open(normal_out))
    failed = False
    print("\nnormal client (GET /small every 50 ms, every 5th on a new connection):")
    print("| phase | requests | errors | p50 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|---:|")
    bounds = [(name, start, marks[i + 1][1] if i + 1 < len(marks) else total)
              for i, (name, start) in enumerate(marks)]
    for name, lo, hi in bounds:
        rows = [r for r in results if lo <= r[0] < hi]
        lat = [r[1] for r in rows if r[1] is not None]
        errs = [r[2] for r in rows if r[2]]
        if not rows:
            continue  # the normal client stopped before this phase (a short run)
        summ = latency_summary(lat)
        print(f"| {name} | {len(rows)} | {len(errs)} | {summ['p50_ms']} | {summ['p99_ms']} | "
              f"{summ['max_ms']} |")
        if errs:
            failed = True
            print(f"    errors: {sorted(set(errs))[:5]}")
        if summ["p99_ms"] is not None and summ["p99_ms"] >= P99_LIMIT_MS:
            failed = True
    print("\nattackers:")
    for name, st in (("slowloris", lor_stats), ("slow-read", sr_stats)):
        series = st.pop("open_series")
        print(f"  {name}: {json.dumps(st)}")
        print(f"    open connections (attacker side, every 1 s): {series}")

    print("\nsluice, every 1 s (t from the start of the baseline):")
    print("| t s | phase | RSS MiB | fds | CPU % | connections | refused total | kernel TCP MiB |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    step = max(1, len(sampler.samples) // 60)
    for i, smp in enumerate(sampler.samples):
        if i % step and i != len(sampler.samples) - 1:
            continue
        ph = [n for n, lo, hi in bounds if lo <= smp["t"] < hi]
        print(f"| {smp['t']} | {ph[0] if ph else '-'} | {smp['rss_kib'] / 1024:.1f} | "
              f"{smp['fds']} | {smp['cpu_pct']} | {smp.get('conns', '-')} | "
              f"{smp.get('refused', '-')} | {smp.get('kernel_tcp_kib', 0) / 1024:.0f} |")
    peak = max(sampler.samples, key=lambda x: x["rss_kib"]) if sampler.samples else None
    if peak:
        print(f"peak RSS {peak['rss_kib'] / 1024:.1f} MiB, peak fds "
              f"{max(x['fds'] for x in sampler.samples)}, peak connections "
              f"{max(x.get('conns', 0) for x in sampler.samples)}")
    if m is not None:
        refused = {l.get("reason"): int(v) for l, v in m.find("sluice_connections_refused_total")}
        codes = {}
        for l, v in m.find("sluice_requests_total"):
            codes[l.get("code", l.get("status", "?"))] = codes.get(
                l.get("code", l.get("status", "?")), 0) + int(v)
        print(f"refused by reason: {refused}; requests by status: {codes}")
    if not alive:
        failed = True
        print("SLUICE DIED:\n" + s.stderr()[-3000:])
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")
    print("verdict: " + ("FAIL" if failed else "ok") +
          f" (normal client p99 < {P99_LIMIT_MS:.0f} ms in every phase, no error, Sluice alive)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
