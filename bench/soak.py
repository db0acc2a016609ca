#!/usr/bin/env python3
"""Soak: mixed load against the real Sluice binary for SOAK_SECONDS (default 600), SIGHUP
reloads every 30 s, Sluice's RSS and open descriptors sampled every 10 s. See bench/README.md.

    bench/soak.sh                      # builds build-bench/ (Release), then runs this
    SOAK_SECONDS=120 bench/soak.sh     # shorter

Load (all at once, paced so that the 2-core machine is not saturated; wrk with a Lua delay()):
  keep-alive GET          wrk -c16, 10 ms between requests per connection
  new connection per GET  wrk -c4 with Connection: close, 10 ms
  TLS keep-alive          wrk -c4 on the TLS listener, 10 ms
  TLS new connections     wrk -c4 with Connection: close (a full handshake each), 10 ms:
                          about 290 handshakes/s, so that the TLS session cache (the newest
                          20,000 sessions, a few hundred bytes each) is full within warm-up
  rate-limited route      wrk -c4 on /limited (Redis rate_limit 200/s per address: 429s
                          expected), 10 ms
  WebSocket               20 long-lived echo connections (one message every 100 ms each) and
                          one new connection per second (handshake, one message, close)
  reloads                 SIGHUP every 30 s, alternating between two configs

Verdict: warm-up is the first WARMUP_SECONDS (default 120, at most a fifth of the run): what
is bounded but grows at first (the TLS session cache above, allocator arenas, the worker's free
streams and pooled backend connections) reaches its size then. RSS and
descriptors: the median of the samples of the minute after warm-up is the baseline, the median
of the last three samples the end value; growth = end / baseline - 1 must stay under 5 % for
both. Also failing: Sluice dying, a failed reload, any transport error or non-2xx answer (other
than the expected 429s on /limited), a WebSocket message not echoed. Exit status 1 on failure.

Environment: SLUICE_BIN, SOAK_SECONDS, WARMUP_SECONDS, SAMPLE_SECONDS (10), RELOAD_SECONDS (30).
"""

import asyncio
import json
import multiprocessing
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "support"))

from sluicetest import RedisServer, Sluice, free_port  # noqa: E402
from sluicetest.load import (proc_sample, raise_fd_limit, read_ws_frame, run_origin,  # noqa: E402
                             ws_frame)

GROWTH_LIMIT = 0.05

WRK_LUA = r"""
local delay_ms = tonumber(os.getenv("SOAK_DELAY_MS") or "10")
function delay() return delay_ms end
function done(summary, latency, requests)
  local f = io.open(os.getenv("SOAK_OUT"), "w")
  local e = summary.errors
  f:write(string.format('{"requests":%d,"connect":%d,"read":%d,"write":%d,"status":%d,' ..
    '"timeout":%d,"p50_ms":%.2f,"p99_ms":%.2f}', summary.requests, e.connect, e.read,
    e.write, e.status, e.timeout, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
  f:close()
end
"""

# name, listener, path, connections, delay ms, Connection: close
WRK_RUNS = [
    ("keep-alive", "web", "/small", 16, 10, False),
    ("new-conn", "web", "/small", 4, 10, True),
    ("tls-keep-alive", "tls", "/small", 4, 10, False),
    ("tls-new-conn", "tls", "/small", 4, 10, True),
    ("rate-limited", "web", "/limited", 4, 10, False),
]


def config_text(s, origin_port, redis_url, cert, key, variant):
    """The soak's config: a plain and a TLS listener, a Redis rate limit on /limited, and one
    route whose name and path change with `variant` (so that every reload changes the routes)."""
    web = s.listeners.get("web") or free_port()
    tls = s.listeners.get("tls") or free_port()
    extra = f"""
[[listener]]
name = "tls"
listen = "127.0.0.1:{tls}"
[listener.tls]
certificates = [{{ cert = "{cert}", key = "{key}" }}]

[redis]
url = "{redis_url}"

[middleware.limit]
type = "rate_limit"
key = "ip"
rate = "200/s"
burst = 50
store = "redis"
"""
    return s.config(routes=[{"name": "limited", "path": "/limited", "middleware": ["limit"],
                             "pool": "p"},
                            {"name": f"variant-{variant}", "path": f"/variant-{variant}",
                             "pool": "p"},
                            {"name": "r", "path": "/", "pool": "p"}],
                    pools={"p": {"backends": [f"127.0.0.1:{origin_port}"]}},
                    listeners=[{"name": "web", "listen": f"127.0.0.1:{web}"}],
                    server={"workers": 2}, log={"access": "off", "level": "warn"},
                    extra=extra)


# ---- WebSocket load (own process) ---------------------------------------------------------

async def _ws_open(port):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    writer.write(f"GET /ws HTTP/1.1\r\nHost: soak.test\r\nUpgrade: websocket\r\n"
                 f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                 f"Sec-WebSocket-Version: 13\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(f"no upgrade: {head[:40]!r}")
    return reader, writer


async def _ws_echo(reader, writer, msg):
    writer.write(ws_frame(1, msg, mask=os.urandom(4)))
    op, payload = await asyncio.wait_for(read_ws_frame(reader), 5)
    if op != 1 or payload != msg:
        raise ConnectionError("bad echo")


def ws_main(port, seconds, out_path, long_lived=20):
    stats = {"messages": 0, "errors": 0, "churned": 0, "last_error": ""}

    async def long_conn(i, end):
        while time.monotonic() < end:
            try:
                r, w = await _ws_open(port)
                while time.monotonic() < end:
                    await _ws_echo(r, w, b"long-%d-%d" % (i, stats["messages"]))
                    stats["messages"] += 1
                    await asyncio.sleep(0.1)
                w.write(ws_frame(8, b"", mask=os.urandom(4)))
                w.close()
            except (OSError, ConnectionError, asyncio.IncompleteReadError,
                    asyncio.TimeoutError) as e:
                stats["errors"] += 1
                stats["last_error"] = repr(e)
                await asyncio.sleep(1)

    async def churn(end):
        while time.monotonic() < end:
            try:
                r, w = await _ws_open(port)
                await _ws_echo(r, w, b"churn")
                w.write(ws_frame(8, b"", mask=os.urandom(4)))
                await asyncio.wait_for(read_ws_frame(r), 5)  # the echoed close
                w.close()
                stats["churned"] += 1
            except (OSError, ConnectionError, asyncio.IncompleteReadError,
                    asyncio.TimeoutError) as e:
                stats["errors"] += 1
                stats["last_error"] = repr(e)
            await asyncio.sleep(1)

    async def main():
        end = time.monotonic() + seconds
        await asyncio.gather(churn(end), *(long_conn(i, end) for i in range(long_lived)))

    asyncio.run(main())
    with open(out_path, "w") as f:
        json.dump(stats, f)


# ---- the run ------------------------------------------------------------------------------

def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--ws":
        ws_main(int(sys.argv[2]), float(sys.argv[3]), sys.argv[4])
        return 0
    seconds = float(os.environ.get("SOAK_SECONDS", 600))
    warmup = float(os.environ.get("WARMUP_SECONDS", min(120.0, seconds / 5)))
    every = float(os.environ.get("SAMPLE_SECONDS", 10))
    reload_every = float(os.environ.get("RELOAD_SECONDS", 30))
    binary = os.environ.get("SLUICE_BIN") or os.path.join(REPO, "build-bench", "sluice")
    raise_fd_limit()
    work = tempfile.mkdtemp(prefix="sluice-soak-")
    procs = []
    origin = None
    redis = None
    s = None
    try:
        origin_port = free_port()
        ready = multiprocessing.Event()
        origin = multiprocessing.Process(target=run_origin, args=(origin_port, 1 << 20, ready),
                                         daemon=True)
        origin.start()
        ready.wait(10)
        redis = RedisServer().start()
        cert, key = os.path.join(work, "cert.pem"), os.path.join(work, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "2", "-subj", "/CN=localhost"], check=True,
                       capture_output=True)
        s = Sluice(work, binary=binary)
        s.start(config_text(s, origin_port, redis.url, cert, key, 0))
        with open(os.path.join(work, "soak.lua"), "w") as f:
            f.write(WRK_LUA)
        print(f"soak: {binary} (pid {s.pid}), {seconds:.0f} s, warm-up {warmup:.0f} s, "
              f"samples every {every:.0f} s, SIGHUP every {reload_every:.0f} s; "
              f"load average {os.getloadavg()[0]:.2f}", flush=True)

        outs = {}
        for name, lst, path, conns, delay, close in WRK_RUNS:
            scheme = "https" if lst == "tls" else "http"
            out = os.path.join(work, f"wrk-{name}.json")
            outs[name] = out
            args = ["wrk", "-t1", f"-c{conns}", f"-d{int(seconds)}s", "--timeout", "5s",
                    "-s", os.path.join(work, "soak.lua"),
                    f"{scheme}://127.0.0.1:{s.port(lst)}{path}"]
            if close:
                args[1:1] = ["-H", "Connection: close"]
            env = dict(os.environ, SOAK_OUT=out, SOAK_DELAY_MS=str(delay))
            procs.append(subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, start_new_session=True))
        ws_out = os.path.join(work, "ws.json")
        procs.append(subprocess.Popen([sys.executable, os.path.abspath(__file__), "--ws",
                                       str(s.port("web")), str(seconds), ws_out],
                                      start_new_session=True))

        t0 = time.monotonic()
        samples = []
        reloads = {"ok": 0, "error": 0}
        next_sample = 0.0
        next_reload = reload_every
        variant = 0
        prev_cpu = None
        while True:
            now = time.monotonic() - t0
            if now >= next_sample:
                s.check_alive()
                p = proc_sample(s.pid)
                m = s.metrics()
                cpu = None if prev_cpu is None else round(
                    100 * (p["cpu_s"] - prev_cpu[1]) / (now - prev_cpu[0]), 1)
                prev_cpu = (now, p["cpu_s"])
                row = {"t": int(round(now)), "rss_kib": p["rss_kib"], "fds": p["fds"],
                       "conns": int(m.value("sluice_connections_active")), "cpu_pct": cpu,
                       "gen": int(m.value("sluice_config_generation"))}
                samples.append(row)
                print(f"  t={row['t']:4d}s rss={row['rss_kib'] / 1024:6.1f} MiB "
                      f"fds={row['fds']:4d} conns={row['conns']:3d} cpu={cpu}% "
                      f"gen={row['gen']}", flush=True)
                next_sample += every
                if now >= seconds:
                    break
            if now >= next_reload and now < seconds - 5:
                variant ^= 1
                reloads[s.reload(config_text(s, origin_port, redis.url, cert, key,
                                             variant))] += 1
                next_reload += reload_every
            time.sleep(max(0.0, min(next_sample, next_reload) - (time.monotonic() - t0)))

        for p in procs:
            p.wait(60)
        wrk = {name: json.load(open(out)) for name, out in outs.items() if os.path.exists(out)}
        ws = json.load(open(ws_out)) if os.path.exists(ws_out) else None
        m = s.metrics()
        limited = {l.get("code"): int(v) for l, v in m.find("sluice_requests_total",
                                                          route="limited")}
        return report(samples, warmup, seconds, reloads, wrk, ws, limited, s)
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
        if s is not None:
            s.stop()
        if redis is not None:
            redis.stop()
        if origin is not None:
            origin.terminate()


def report(samples, warmup, seconds, reloads, wrk, ws, limited, s):
    failed = []
    print("\n| t s | RSS MiB | open fds | client connections | CPU % | config generation |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in samples:
        mark = " (warm-up)" if r["t"] < warmup else ""
        print(f"| {r['t']}{mark} | {r['rss_kib'] / 1024:.1f} | {r['fds']} | {r['conns']} | "
              f"{'-' if r['cpu_pct'] is None else r['cpu_pct']} | {r['gen']} |")
    base = [r for r in samples if warmup <= r["t"] < warmup + 60]
    end = samples[-3:]
    for field, label, unit in (("rss_kib", "RSS", " KiB"), ("fds", "open fds", "")):
        b = statistics.median(r[field] for r in base)
        e = statistics.median(r[field] for r in end)
        growth = e / b - 1
        peak = max(r[field] for r in samples if r["t"] >= warmup)
        ok = growth < GROWTH_LIMIT
        print(f"{label}: baseline {b}{unit} (median, t {warmup:.0f}-{warmup + 60:.0f} s), "
              f"end {e}{unit} (median of the last 3), growth {growth * 100:+.2f} %, peak after warm-up "
              f"{peak}{unit}: {'ok' if ok else 'FAIL'}")
        if not ok:
            failed.append(f"{label} grew {growth * 100:.1f} %")
    print(f"reloads: {reloads}")
    if reloads["error"] or not reloads["ok"]:
        failed.append("reloads")
    print("\n| load | requests | p50 ms | p99 ms | errors (connect/read/write/timeout) | "
          "non-2xx |")
    print("|---|---:|---:|---:|---|---:|")
    for name, _lst, _path, _c, _d, _close in WRK_RUNS:
        w = wrk.get(name)
        if w is None:
            failed.append(f"wrk {name} wrote no result")
            continue
        errs = (w["connect"], w["read"], w["write"], w["timeout"])
        print(f"| {name} | {w['requests']} | {w['p50_ms']} | {w['p99_ms']} | "
              f"{'/'.join(map(str, errs))} | {w['status']} |")
        if any(errs) or (w["status"] and name != "rate-limited"):
            failed.append(f"{name}: errors")
    print(f"rate-limited route by status: {limited}")
    if ws is None:
        failed.append("websocket client wrote no result")
    else:
        print(f"websocket: {ws['messages']} echoed messages on 20 connections, "
              f"{ws['churned']} short connections, {ws['errors']} errors {ws['last_error']}")
        if ws["errors"]:
            failed.append("websocket errors")
    s.check_alive()
    print("verdict: " + ("FAIL: " + "; ".join(failed) if failed else
                         f"ok (RSS and fds grew under {GROWTH_LIMIT * 100:.0f} % after warm-up, "
                         "no errors)"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
