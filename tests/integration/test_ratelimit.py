"""Rate limiting ([middleware.NAME] type = "rate_limit") against product.md: GCRA buckets of
N + burst refilled at N per period, RateLimit-* headers on every answer of a limited route,
429 rate_limited with Retry-After, Redis-backed limits shared by processes and exact under
concurrency (the decisions of one loop turn go to Redis as one batch EVALSHA), and the failure
modes when Redis goes away."""

import concurrent.futures
import re
import socket
import threading
import time

import pytest

from sluicetest import (RawClient, RedisServer, assert_proxy_error, http_request, run_cli,
                        wait_until)


@pytest.fixture
def redis():
    r = RedisServer().start()
    yield r
    r.stop()


def mw_toml(name, **kw):
    lines = [f"[middleware.{name}]", 'type = "rate_limit"']
    for k, v in kw.items():
        lines.append(f"{k} = {v}" if isinstance(v, int) else f'{k} = "{v}"')
    return "\n".join(lines) + "\n"


def redis_toml(redis, timeout="200ms", failure_mode="open"):
    return (f'[redis]\nurl = "{redis.url}"\ntimeout = "{timeout}"\n'
            f'failure_mode = "{failure_mode}"\n')


def start(make_sluice, backend, extra, middleware, workers=1, path="/"):
    s = make_sluice()
    cfg = s.config(routes=[{"name": "r", "path": path, "pool": "p", "middleware": middleware}],
                   pools={"p": {"backends": [backend.address]}}, server={"workers": workers},
                   extra=extra)
    s.start(cfg)
    return s


def wait_redis_up(s, timeout=10):
    wait_until(lambda: s.metrics().value("sluice_redis_up") == 1, timeout=timeout,
               message="sluice_redis_up == 1")


def get(s, path="/", headers=None):
    return http_request(s.port(), "GET", path, headers or [])


def rl_headers(r):
    return {k: r.header(k) for k in ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset",
                                     "ratelimit-policy")}


def test_local_store_limits_and_headers(backend, make_sluice):
    # No [redis] at all: store defaults to local.
    s = start(make_sluice, backend, mw_toml("rl", rate="3/m", burst=2, key="ip"), ["rl"])
    for i in range(5):  # a fresh client gets N + burst at once
        r = get(s)
        assert r.status == 200, r
        h = rl_headers(r)
        assert h["ratelimit-limit"] == "5"
        assert h["ratelimit-remaining"] == str(4 - i)
        assert h["ratelimit-policy"] == "3;w=60;burst=2"
        assert int(h["ratelimit-reset"]) >= 1
    r = get(s)
    assert_proxy_error(r, 429, "rate_limited")
    retry = int(r.header("retry-after"))
    assert 1 <= retry <= 20  # one request refills in 60 s / 3
    h = rl_headers(r)
    assert h["ratelimit-remaining"] == "0"
    assert h["ratelimit-limit"] == "5"
    assert h["ratelimit-policy"] == "3;w=60;burst=2"
    assert len(backend.requests) == 5
    m = s.metrics()
    assert m.value("sluice_ratelimit_total", middleware="rl", result="allowed") == 5
    assert m.value("sluice_ratelimit_total", middleware="rl", result="limited") == 1
    s.wait_access(lambda e: e.get("ratelimit") == "limited" and e["status"] == 429)
    assert sum(1 for e in s.access_entries() if e.get("ratelimit") == "allowed") == 5


def test_local_store_refills(backend, make_sluice):
    s = start(make_sluice, backend, mw_toml("rl", rate="10/s", key="ip"), ["rl"])
    codes = [get(s).status for _ in range(12)]
    assert codes.count(200) >= 10 and 429 in codes
    # 10/s: a request is allowed again within ~100 ms.
    wait_until(lambda: get(s).status == 200, timeout=2, message="refill")


def test_redis_limits_per_key(backend, make_sluice, redis):
    extra = redis_toml(redis) + mw_toml("per-key", rate="2/h", key="header:X-API-Key",
                                        store="redis")
    s = start(make_sluice, backend, extra, ["per-key"])
    wait_redis_up(s)
    alice = [("X-API-Key", "alice")]
    assert [get(s, headers=alice).status for _ in range(3)] == [200, 200, 429]
    # Another key has its own bucket; no key falls back to the client IP.
    assert get(s, headers=[("X-API-Key", "bob")]).status == 200
    assert [get(s).status for _ in range(3)] == [200, 200, 429]
    keys = sorted(redis.command("KEYS", "sluice:rl:*"))
    assert keys == ["sluice:rl:per-key:header:alice", "sluice:rl:per-key:header:bob",
                    "sluice:rl:per-key:ip:127.0.0.1"], keys
    ttl = redis.command("PTTL", "sluice:rl:per-key:header:alice")
    assert 0 < ttl <= 2 * 3600 * 1000  # expires once the bucket would be full again
    r = get(s, headers=alice)
    assert_proxy_error(r, 429, "rate_limited")
    assert int(r.header("retry-after")) > 1000  # 2/h: next token in ~30 min
    assert r.header("ratelimit-policy") == "2;w=3600"


def test_two_processes_share_one_limit(backend, make_sluice, redis):
    extra = redis_toml(redis) + mw_toml("shared", rate="10/h", key="ip", store="redis")
    a = start(make_sluice, backend, extra, ["shared"])
    b = start(make_sluice, backend, extra, ["shared"])
    wait_redis_up(a)
    wait_redis_up(b)
    codes = [get(a if i % 2 else b).status for i in range(30)]
    assert codes.count(200) == 10, codes
    assert codes.count(429) == 20
    assert len(backend.requests) == 10


def _parallel(port, n, headers=(), paths=None, stopped=None):
    """n requests at once (to `paths[i]`, default "/"), each on its own connection, released
    together: statuses in order. `stopped` (a Sluice): the heads are sent while that process
    is SIGSTOPped, so it reads them all in one loop turn."""
    socks = []
    for _ in range(n):
        c = RawClient(port, timeout=15)
        socks.append(c)
    from sluicetest import build_request
    paths = paths or ["/"] * n
    if stopped:
        stopped.pause()
    try:
        for c, path in zip(socks, paths):  # all heads go out before any answer is read
            c.send(build_request("GET", path, list(headers)))
    finally:
        if stopped:
            stopped.resume()

    def read(c):
        try:
            return c.read_response().status
        finally:
            c.close()

    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as ex:
        return list(ex.map(read, socks))


def bytes_unread_by(port):
    """Bytes sent to 127.0.0.1:port that the process behind it has not read (a stopped Redis):
    the receive queues of its accepted sockets in /proc/net/tcp."""
    total = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, state, queues = fields[1], fields[3], fields[4]
            if int(local.rsplit(":", 1)[1], 16) == port and state != "0A":  # not the listener
                total += int(queues.split(":")[1], 16)
    return total


class Monitor:
    """Redis MONITOR on its own connection: the EVALSHAs Sluice sent, as argument lists."""

    def __init__(self, redis):
        self.sock = socket.create_connection(("127.0.0.1", redis.port), timeout=10)
        self.sock.sendall(b"*1\r\n$7\r\nMONITOR\r\n")
        self.file = self.sock.makefile("rb")
        assert self.file.readline() == b"+OK\r\n"
        self.lines = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            for line in self.file:
                self.lines.append(line.decode("utf-8", "replace"))
        except (OSError, ValueError):
            pass

    def evalshas(self):
        out = []
        for line in list(self.lines):
            # +1700000000.123456 [0 127.0.0.1:40000] "EVALSHA" "sha" "2" "key" ... (the
            # commands the script runs are "[0 lua]" lines)
            if "lua]" in line.split('"', 1)[0]:
                continue
            args = re.findall(r'"((?:[^"\\]|\\.)*)"', line)
            if args and args[0].upper() == "EVALSHA":
                out.append(args)
        return out

    def keys_sent(self):
        return sum(int(a[2]) for a in self.evalshas())

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(5)


@pytest.mark.parametrize("workers", [1, 4])
def test_parallel_requests_are_exact(backend, make_sluice, redis, workers):
    extra = redis_toml(redis, timeout="2s") + mw_toml("bucket", rate="50/h", key="ip",
                                                       store="redis")
    s = start(make_sluice, backend, extra, ["bucket"], workers=workers)
    wait_redis_up(s)
    codes = _parallel(s.port(), 200)
    assert codes.count(200) == 50, sorted(set(codes))
    assert codes.count(429) == 150
    assert len(backend.requests) == 50


def test_parallel_across_processes(backend, make_sluice, redis):
    extra = redis_toml(redis, timeout="2s") + mw_toml("bucket", rate="50/h", key="ip",
                                                       store="redis")
    a = start(make_sluice, backend, extra, ["bucket"], workers=2)
    b = start(make_sluice, backend, extra, ["bucket"], workers=2)
    wait_redis_up(a)
    wait_redis_up(b)
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as ex:
        fa = ex.submit(_parallel, a.port(), 100)
        fb = ex.submit(_parallel, b.port(), 100)
        codes = fa.result() + fb.result()
    assert codes.count(200) == 50
    assert codes.count(429) == 150


def test_redis_killed_fail_open_serves_quickly_with_local_limits(backend, make_sluice, redis):
    extra = redis_toml(redis, timeout="300ms", failure_mode="open") + mw_toml(
        "rl", rate="5/h", key="ip", store="redis")
    s = start(make_sluice, backend, extra, ["rl"])
    wait_redis_up(s)
    assert get(s).status == 200
    redis.kill()
    times, codes = [], []
    for _ in range(20):
        t0 = time.monotonic()
        codes.append(get(s).status)
        times.append(time.monotonic() - t0)
    # At most the timeout for the first request that meets the dead connection, and no wait at
    # all once it is known to be down.
    assert max(times) < 0.3 + 0.5, times
    assert sorted(times)[len(times) // 2] < 0.1, times
    # Never unlimited: the local fallback holds the same N + burst per process.
    assert set(codes) <= {200, 429}
    assert 1 <= codes.count(200) <= 5, codes
    assert codes[-1] == 429
    m = s.metrics()
    assert m.value("sluice_redis_up") == 0
    assert m.value("sluice_redis_errors_total") >= 1


def test_redis_killed_fail_closed_then_restarted(backend, make_sluice, redis):
    extra = redis_toml(redis, timeout="300ms", failure_mode="closed") + mw_toml(
        "rl", rate="3/h", key="ip", store="redis")
    s = start(make_sluice, backend, extra, ["rl"])
    wait_redis_up(s)
    assert get(s).status == 200
    redis.kill()
    # Once the loss is noticed every request is refused at once with 503.
    wait_until(lambda: get(s).status == 503, timeout=5, message="503 after Redis died")
    t0 = time.monotonic()
    r = get(s)
    assert time.monotonic() - t0 < 0.2
    assert_proxy_error(r, 503, "ratelimit_unavailable")
    assert r.header("ratelimit-policy") == "3;w=3600"
    wait_until(lambda: s.metrics().value("sluice_ratelimit_total", middleware="rl",
                                         result="store_error") >= 2, timeout=5)
    n_before = len(backend.requests)
    assert n_before == 1  # nothing got through while the store was down
    # Redis comes back (empty): Sluice reconnects by itself and limits apply again.
    redis.start()
    wait_redis_up(s, timeout=10)
    codes = [get(s).status for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429], codes
    assert redis.command("EXISTS", "sluice:rl:rl:ip:127.0.0.1") == 1


def test_redis_restarted_fail_open_limits_again(backend, make_sluice, redis):
    extra = redis_toml(redis, timeout="300ms") + mw_toml("rl", rate="2/h", key="header:K",
                                                         store="redis")
    s = start(make_sluice, backend, extra, ["rl"])
    wait_redis_up(s)
    redis.kill()
    wait_until(lambda: s.metrics().value("sluice_redis_up") == 0, timeout=5)
    redis.start()
    wait_redis_up(s, timeout=10)
    h = [("K", "fresh")]
    assert [get(s, headers=h).status for _ in range(3)] == [200, 200, 429]
    assert redis.command("EXISTS", "sluice:rl:rl:header:fresh") == 1


def test_client_disconnect_during_pending_redis_call(backend, make_sluice, redis):
    extra = redis_toml(redis, timeout="3s") + mw_toml("rl", rate="100/h", key="ip",
                                                     store="redis")
    s = start(make_sluice, backend, extra, ["rl"])
    wait_redis_up(s)
    redis.pause()  # commands are sent but not answered
    try:
        for _ in range(20):
            c = RawClient(s.port(), timeout=5)
            c.send(b"GET /gone HTTP/1.1\r\nHost: t\r\n\r\n")
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            c.close()  # RST while the Redis call is pending
        # Sluice sees the resets while Redis is still stopped.
        wait_until(lambda: s.metrics().value("sluice_connections_active") == 0,
                   message="the 20 connections closed")
    finally:
        redis.resume()  # the replies for the vanished requests arrive now
    s.check_alive()
    r = get(s)
    assert r.status == 200
    assert all(req.path != "/gone" for req in backend.requests)


def test_store_redis_without_redis_section_is_a_config_error(tmp_path):
    cfg = tmp_path / "s.toml"
    cfg.write_text('[[listener]]\nname = "web"\nlisten = "127.0.0.1:1"\n'
                   '[pool.p]\nbackends = [{ address = "127.0.0.1:2" }]\n'
                   '[middleware.rl]\ntype = "rate_limit"\nrate = "1/s"\nstore = "redis"\n'
                   '[[route]]\nname = "r"\npath = "/"\npool = "p"\nmiddleware = ["rl", "nope"]\n')
    p = run_cli(["-t", "-c", str(cfg)])
    assert p.returncode == 1
    assert f"{cfg}:9:9: middleware.rl.store" in p.stderr + p.stdout
    assert f"{cfg}:14:21: route[0].middleware[1]: no middleware named 'nope'" in p.stderr + p.stdout


def test_one_loop_turn_is_one_batch_and_each_limit_stays_exact(backend, make_sluice, redis):
    # Two routes with different limits, hit at once: their decisions share batch EVALSHAs and
    # each bucket still lets exactly its size through.
    extra = (redis_toml(redis, timeout="2s") + mw_toml("ra", rate="30/h", key="ip", store="redis")
             + mw_toml("rb", rate="20/h", burst=5, key="ip", store="redis"))
    s = make_sluice()
    s.start(s.config(routes=[{"name": "a", "path": "/a", "pool": "p", "middleware": ["ra"]},
                             {"name": "b", "path": "/b", "pool": "p", "middleware": ["rb"]}],
                     pools={"p": {"backends": [backend.address]}}, server={"workers": 1},
                     extra=extra))
    wait_redis_up(s)
    mon = Monitor(redis)
    try:
        paths = ["/a" if i % 2 else "/b" for i in range(200)]
        codes = _parallel(s.port(), 200, paths=paths, stopped=s)
        a = [c for c, p in zip(codes, paths) if p == "/a"]
        b = [c for c, p in zip(codes, paths) if p == "/b"]
        assert a.count(200) == 30 and a.count(429) == 70, sorted(set(a))
        assert b.count(200) == 25 and b.count(429) == 75, sorted(set(b))
        wait_until(lambda: mon.keys_sent() == 200, timeout=5,
                   message="every decision in some EVALSHA")
        batches = mon.evalshas()
        # Read in one or two loop turns: a handful of EVALSHAs, not 200.
        assert len(batches) <= 4, [int(x[2]) for x in batches]
        assert any(any(k.startswith("sluice:rl:ra:") for k in x[3:3 + int(x[2])]) and
                   any(k.startswith("sluice:rl:rb:") for k in x[3:3 + int(x[2])])
                   for x in batches), "no batch with both middlewares"
    finally:
        mon.close()
    assert len(backend.requests) == 55
    # Each bucket holds its state: the next request of each route is refused.
    assert get(s, "/a").status == 429
    assert get(s, "/b").status == 429


@pytest.mark.parametrize("failure_mode", ["open", "closed"])
def test_redis_killed_while_a_batch_waits_fails_every_request(backend, make_sluice, redis,
                                                              failure_mode):
    # Long timeout: it is the lost connection, not the timer, that answers the waiting batch.
    extra = redis_toml(redis, timeout="10s", failure_mode=failure_mode) + mw_toml(
        "rl", rate="10/h", key="ip", store="redis")
    s = start(make_sluice, backend, extra, ["rl"])
    wait_redis_up(s)
    redis.pause()  # the batch is written but not answered
    clients = [RawClient(s.port(), timeout=10) for _ in range(40)]
    for c in clients:
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    # Every decision is in a batch Redis has not read: each names the client's bucket.
    key = "sluice:rl:rl:ip:127.0.0.1"
    wait_until(lambda: bytes_unread_by(redis.port) >= 40 * len(key),
               message="40 decisions written to the stopped Redis")
    t0 = time.monotonic()
    redis.kill()
    codes = []
    for c in clients:
        r = c.read_response()
        codes.append(r.status)
        if failure_mode == "closed":
            assert_proxy_error(r, 503, "ratelimit_unavailable")
        c.close()
    assert time.monotonic() - t0 < 3
    if failure_mode == "closed":
        assert codes == [503] * 40
        assert len(backend.requests) == 0
    else:  # the local store decides, with the same limit: exactly 10 pass
        assert codes.count(200) == 10 and codes.count(429) == 30, codes
        assert len(backend.requests) == 10
    m = s.metrics()
    assert m.value("sluice_redis_up") == 0
    assert m.value("sluice_redis_errors_total") >= 1


def test_script_flush_between_requests_reloads_the_batch_script(backend, make_sluice, redis):
    extra = redis_toml(redis, timeout="2s") + mw_toml("rl", rate="30/h", key="ip", store="redis")
    s = start(make_sluice, backend, extra, ["rl"])
    wait_redis_up(s)

    def noscripts():
        info = redis.command("INFO", "errorstats")
        m = re.search(r"errorstat_NOSCRIPT:count=(\d+)", info)
        return int(m.group(1)) if m else 0

    r = get(s)
    assert r.status == 200 and r.header("ratelimit-remaining") == "29"
    assert redis.command("SCRIPT", "FLUSH") == "OK"
    r = get(s)  # NOSCRIPT, SCRIPT LOAD, the same batch again
    assert r.status == 200 and r.header("ratelimit-remaining") == "28", r
    assert noscripts() == 1
    assert get(s).header("ratelimit-remaining") == "27"  # loaded now: no NOSCRIPT
    assert noscripts() == 1
    # A whole batch meets NOSCRIPT: retried once, still exact.
    assert redis.command("SCRIPT", "FLUSH") == "OK"
    codes = _parallel(s.port(), 60, stopped=s)
    assert codes.count(200) == 27 and codes.count(429) == 33, codes
    assert noscripts() >= 2
    assert len(backend.requests) == 30


def test_requests_gone_before_their_batch_is_sent_are_left_out(backend, make_sluice, redis):
    # Sluice is stopped while 30 heads arrive, 20 of them followed by a reset: it reads each
    # head and the reset in the same loop turn, so those calls are cancelled before the batch
    # goes. They take no token: the 10 that stay all fit in a bucket of 10.
    extra = redis_toml(redis, timeout="2s") + mw_toml("rl", rate="10/h", key="ip", store="redis")
    s = start(make_sluice, backend, extra, ["rl"])
    wait_redis_up(s)
    mon = Monitor(redis)
    try:
        clients = [RawClient(s.port(), timeout=10) for _ in range(30)]
        wait_until(lambda: s.metrics().value("sluice_connections_active") == 30,
                   message="the 30 connections accepted")
        s.pause()  # stopped for sure: heads and resets are read together after the resume
        try:
            for i, c in enumerate(clients):
                gone = i % 3 != 0
                c.send(f"GET /{'gone' if gone else 'stay'} HTTP/1.1\r\nHost: t\r\n\r\n")
                if gone:
                    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                      b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    c.close()  # RST
        finally:
            s.resume()
        stay = [c for i, c in enumerate(clients) if i % 3 == 0]
        codes = []
        for c in stay:
            codes.append(c.read_response().status)
            c.close()
        assert codes == [200] * 10, codes
        wait_until(lambda: mon.keys_sent() >= 10, timeout=5)
        time.sleep(0.1)  # a short look: no other key may follow
        assert mon.keys_sent() == 10
    finally:
        mon.close()
    s.check_alive()
    assert get(s).status == 429
    assert all(req.path != "/gone" for req in backend.requests)
