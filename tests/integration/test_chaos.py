"""Chaos under continuous keep-alive load (issue 16): while clients keep sending GETs and POSTs
with bodies, one thing after another goes wrong around the real binary, and each time the
answers are exactly what docs/operations.md promises and /metrics and the event log say what
happened.

Real parts: the sluice binary (2 workers), four backends in their own processes
(sluicetest.procbackend, so they can be SIGKILLed and SIGSTOPped), a real redis-server for a
rate-limited route, the admin API, and SLUICE_TEST_HOSTS for a host-name backend whose answer
changes (two processes on 127.0.0.1 and 127.0.0.2, one port, like a container that moved).

Load: keep-alive clients (GET, POST with a body whose sha256 the backend echoes, GET on the
rate-limited route) and one client opening a new connection per request, each request with its
own X-Request-Id so a failure can be found in the access log.

What may fail, from docs/operations.md (Retries):
- a backend SIGKILLed: GETs never (a reset before any response byte and a refused connect are
  retried on another backend); a POST whose body already went to the killed backend gets 502
  (replaying it is unsafe), one that only met a refused connect is retried;
- a backend SIGSTOPped: the connect still succeeds (kernel backlog) and no answer comes, so what
  was sent to it before the health checks take it out gets 504 after `response_timeout`, GET or
  POST (a timeout is never retried); nothing after;
- Redis SIGKILLed or SIGSTOPped with `failure_mode = "open"`: nothing (local limits);
- 100 reloads, a DNS answer changing, a backend drained: nothing.
Every failure is checked against that list (status, time window, the backend in the access log).
"""

import hashlib
import json
import os
import threading
import time
import urllib.parse

import pytest

from sluicetest import RawClient, RedisServer, wait_until
from sluicetest.client import ConnectionClosed
from sluicetest.procbackend import ProcBackend
from sluicetest.util import pattern_bytes

RESPONSE_TIMEOUT = 1.0
HEALTH = {"path": "/healthz", "interval": "150ms", "timeout": "200ms", "healthy_threshold": 1,
          "unhealthy_threshold": 3}


class Rec:
    __slots__ = ("kind", "rid", "t0", "t1", "status", "backend", "error")

    def __init__(self, kind, rid, t0):
        self.kind, self.rid, self.t0 = kind, rid, t0
        self.t1 = None
        self.status = None
        self.backend = None
        self.error = None

    @property
    def ok(self):
        return self.error is None and self.status == 200

    def __repr__(self):
        return (f"<{self.kind} {self.rid} {self.t0:.3f}-{self.t1:.3f} status={self.status} "
                f"backend={self.backend} error={self.error}>")


class LoadClient(threading.Thread):
    """Sends one kind of request in a loop until stopped, recording every outcome."""

    def __init__(self, port, kind, stop, n):
        super().__init__(daemon=True, name=f"load-{kind}-{n}")
        self.port, self.kind, self.stop, self.n = port, kind, stop, n
        self.recs = []
        self.conn = None

    def _request(self, i):
        body = None
        method, target = "GET", f"/g/{i}"
        headers = [("X-Request-Id", f"{self.kind}-{self.n}-{i}")]
        if self.kind == "post":
            method, target = "POST", f"/p/{i}"
            body = pattern_bytes(1000 + (i * 7919) % 15000)
        elif self.kind == "limited":
            target = f"/limited/{i}"
        elif self.kind == "newconn":
            headers.append(("Connection", "close"))
        return method, target, headers, body

    def run(self):
        i = 0
        while not self.stop.is_set():
            i += 1
            method, target, headers, body = self._request(i)
            rec = Rec(self.kind, headers[0][1], time.monotonic())
            try:
                if self.conn is None:
                    self.conn = RawClient(self.port, timeout=5 * RESPONSE_TIMEOUT)
                r = self.conn.request(method, target, headers, body)
                rec.status = r.status
                rec.backend = r.header("x-backend")
                if r.status == 200:
                    info = r.json()
                    want = hashlib.sha256(body or b"").hexdigest()
                    if info["method"] != method or info["body_sha256"] != want:
                        rec.error = f"wrong echo {info}"
                if r.connection_close:
                    self.conn.close()
                    self.conn = None
            except (OSError, ConnectionClosed, AssertionError, ValueError) as e:
                rec.error = repr(e)
                if self.conn is not None:
                    self.conn.close()
                    self.conn = None
            rec.t1 = time.monotonic()
            self.recs.append(rec)
        if self.conn is not None:
            self.conn.close()


def write_hosts(path, ip):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(f"svc.test {ip}\n")
    os.replace(tmp, path)


def events(s):
    out = []
    for line in s.stderr().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


@pytest.fixture
def chaos_parts(tmp_path):
    parts = {}
    made = []
    try:
        for name in ("a", "b", "c"):
            parts[name] = ProcBackend(name).start()
            made.append(parts[name])
        parts["d1"] = ProcBackend("d1", host="127.0.0.1").start()
        made.append(parts["d1"])
        parts["d2"] = ProcBackend("d2", host="127.0.0.2", port=parts["d1"].port).start()
        made.append(parts["d2"])
        parts["redis"] = RedisServer().start()
        made.append(parts["redis"])
        yield parts
    finally:
        for p in made:
            p.stop()


def chaos_config(s, parts, marker):
    d = parts["d1"]
    redis = parts["redis"]
    extra = (f'[redis]\nurl = "{redis.url}"\ntimeout = "100ms"\nfailure_mode = "open"\n\n'
             '[middleware.rl]\ntype = "rate_limit"\nrate = "100000/s"\nburst = 1000\n'
             'store = "redis"\n')
    pools = {"p": {"backends": [parts["a"].address, parts["b"].address, parts["c"].address,
                                f"svc.test:{d.port}"],
                   "connect_timeout": "500ms", "response_timeout": f"{int(RESPONSE_TIMEOUT)}s",
                   "resolve_interval": "100ms", "health": HEALTH}}
    routes = [{"name": "marker", "path_exact": "/marker",
               "return": {"status": 200, "body": f"{marker}"}},
              {"name": "limited", "path": "/limited/", "pool": "p", "middleware": ["rl"]},
              {"name": "r", "path": "/", "pool": "p"}]
    return s.config(routes=routes, pools=pools, server={"workers": 2}, extra=extra)


def test_chaos_under_keep_alive_load(make_sluice, chaos_parts, tmp_path):
    parts = chaos_parts
    a, b, c, d1, d2, redis = (parts[k] for k in ("a", "b", "c", "d1", "d2", "redis"))
    hosts = tmp_path / "hosts"
    write_hosts(hosts, "127.0.0.1")
    s = make_sluice()
    s.start(chaos_config(s, parts, 0), env={"SLUICE_TEST_HOSTS": str(hosts)})
    d_name = f"svc.test:{d1.port}"
    d1_name, d2_name = f"{d_name}@127.0.0.1", f"{d_name}@127.0.0.2"

    def metric(name, **labels):
        return s.metrics().value(name, **labels)

    def up(name):
        return metric("sluice_backend_up", pool="p", backend=name)

    def wait_up(name, want, timeout=10):
        wait_until(lambda: up(name) == want, timeout=timeout,
                   message=f"sluice_backend_up{{backend={name}}} == {want}")

    for name in (a.address, b.address, c.address, d1_name):
        wait_up(name, 1)

    stop = threading.Event()
    clients = [LoadClient(s.port(), kind, stop, n) for n, kind in
               enumerate(("get", "get", "post", "post", "limited", "newconn"))]
    for cl in clients:
        cl.start()

    def served_by(name, after):
        return sum(1 for cl in clients for r in list(cl.recs)
                   if r.t0 >= after and r.backend == name and r.ok)

    def wait_served(name, n=5, after=None, timeout=10):
        after = time.monotonic() if after is None else after
        wait_until(lambda: served_by(name, after) >= n, timeout=timeout,
                   message=f"{n} answers from backend {name}")

    def errors(backend, kind=None):
        labels = {"pool": "p", "backend": backend}
        if kind:
            labels["kind"] = kind
        return metric("sluice_upstream_errors_total", **labels)

    def marker():
        with RawClient(s.port()) as probe:
            return probe.request("GET", "/marker", [("Connection", "close")]).body

    def wait_limited_ok(n=5):
        after = time.monotonic()
        wait_until(lambda: sum(1 for cl in clients if cl.kind == "limited"
                               for r in list(cl.recs) if r.t0 >= after and r.ok) >= n,
                   message=f"{n} answers on the rate-limited route")

    windows = {}
    try:
        for name in ("a", "b", "c", "d1"):
            wait_served(name)

        # ---- 1. a backend SIGKILLed, then started again on its port -----------------------
        t = time.monotonic()
        a.kill()
        wait_up(a.address, 0)
        windows["kill"] = (t, time.monotonic())
        wait_until(lambda: errors(a.address) > 0, message="upstream errors of the killed backend")
        a.start()
        wait_up(a.address, 1)
        wait_served("a")

        # ---- 2. a backend SIGSTOPped (hangs), then SIGCONT --------------------------------
        t = time.monotonic()
        b.pause()
        wait_up(b.address, 0)
        # What was sent to it before that ends within response_timeout (504), nothing later.
        windows["stop"] = (t, time.monotonic() + RESPONSE_TIMEOUT)
        wait_until(lambda: errors(b.address, "timeout") > 0, timeout=5,
                   message="response timeouts of the stopped backend")
        b.resume()
        wait_up(b.address, 1)
        wait_served("b")

        # ---- 3. Redis SIGKILLed, then restarted; 4. SIGSTOPped, then SIGCONT ----------------
        lost = metric("sluice_redis_errors_total", kind="connection_lost")
        redis.kill()
        wait_until(lambda: metric("sluice_redis_errors_total", kind="connection_lost") > lost,
                   message="redis connection_lost")
        assert metric("sluice_redis_up") == 0
        wait_limited_ok()  # decided by the local store meanwhile (failure_mode = "open")
        redis.start()
        wait_until(lambda: metric("sluice_redis_up") == 1, timeout=10, message="redis up again")
        # Decided in Redis again: the restarted (empty) server holds the client's bucket.
        wait_until(lambda: redis.command("KEYS", "sluice:rl:rl:*"), message="a bucket in Redis")

        timeouts = metric("sluice_redis_errors_total", kind="timeout")
        redis.pause()
        wait_until(lambda: metric("sluice_redis_errors_total", kind="timeout") > timeouts,
                   message="redis timeout")
        wait_limited_ok()
        redis.resume()
        wait_until(lambda: metric("sluice_redis_up") == 1, timeout=10, message="redis up again")

        # ---- 5. 100 reloads (each one visible to a new connection at once) ----------------
        for i in range(1, 101):
            assert s.reload(chaos_config(s, parts, i)) == "ok"
            # Every worker takes the new generation right after the main thread built it.
            wait_until(lambda: marker() == str(i).encode(), timeout=2,
                       message=f"the marker of reload {i}")
        assert metric("sluice_config_reloads_total", result="success") == 100

        # ---- 6. the DNS answer of svc.test changes ----------------------------------------
        write_hosts(hosts, "127.0.0.2")
        wait_until(lambda: s.metrics().has("sluice_backend_up", backend=d2_name)
                   and not s.metrics().has("sluice_backend_up", backend=d1_name),
                   message="svc.test now 127.0.0.2 only")
        wait_served("d2")
        moved = time.monotonic()
        wait_served("c", after=moved)
        assert served_by("d1", moved) == 0

        # ---- 7. a backend drained through the admin API, then undrained -------------------
        quoted = urllib.parse.quote(c.address, safe="")
        st, _, body = s.admin_get(f"/admin/pools/p/backends/{quoted}/drain", method="POST")
        assert st == 200 and json.loads(body)["matched"] == 1, body
        drained = time.monotonic()
        assert metric("sluice_backend_draining", backend=c.address) == 1
        wait_served("a", after=drained, n=20)
        assert served_by("c", drained) == 0
        st, _, body = s.admin_get(f"/admin/pools/p/backends/{quoted}/undrain", method="POST")
        assert st == 200, body
        wait_served("c")
    finally:
        stop.set()
        for cl in clients:
            cl.join(10)

    # ---- every failure is one the docs allow ------------------------------------------------
    recs = [r for cl in clients for r in cl.recs]
    failed = [r for r in recs if not r.ok]
    if failed:
        rids = {r.rid for r in failed}
        wait_until(lambda: rids <= {e["request_id"] for e in s.access_entries()},
                   message="access-log lines of the failed requests")
    access = {e["request_id"]: e for e in s.access_entries()}

    def overlaps(r, window):
        return r.t0 <= window[1] and r.t1 >= window[0]

    def allowed(r):
        if r.error is not None:
            return False
        upstream = access[r.rid]["upstream"]
        if r.status == 502 and r.kind == "post":
            return overlaps(r, windows["kill"]) and upstream == a.address
        if r.status == 504:
            return (overlaps(r, windows["stop"]) and upstream == b.address
                    and r.t1 - r.t0 >= RESPONSE_TIMEOUT * 0.9)
        return False

    bad = [r for r in failed if not allowed(r)]
    assert not bad, f"{len(bad)} failures the docs do not allow: {bad[:20]}"
    by_kind = {k: sum(1 for r in recs if r.kind == k) for k in ("get", "post", "limited", "newconn")}
    assert all(n >= 20 for n in by_kind.values()), by_kind
    gets_failed = [r for r in failed if r.kind != "post"]
    assert all(r.status == 504 for r in gets_failed), gets_failed

    # ---- metrics and logs say what happened ------------------------------------------------
    m = s.metrics()
    assert m.value("sluice_upstream_errors_total", backend=a.address) > 0
    assert m.value("sluice_upstream_errors_total", backend=b.address, kind="timeout") > 0
    assert m.value("sluice_backend_state_changes_total", backend=a.address) >= 2
    assert m.value("sluice_backend_state_changes_total", backend=b.address) >= 2
    assert m.value("sluice_redis_errors_total", kind="connection_lost") >= 1
    assert m.value("sluice_redis_errors_total", kind="timeout") >= 1
    assert m.value("sluice_redis_up") == 1
    assert m.value("sluice_ratelimit_total", result="store_error") == 0
    assert m.value("sluice_config_generation") == 101
    assert m.value("sluice_backend_draining", backend=c.address) == 0

    ev = events(s)

    def logged(msg, **fields):
        return [e for e in ev if e.get("msg") == msg
                and all(e.get(k) == v for k, v in fields.items())]

    for be in (a, b):
        assert logged("backend state changed", backend=be.address, to="down"), be.name
        assert logged("backend state changed", backend=be.address, to="up"), be.name
    redis_down = logged("redis connection lost") + logged("redis unavailable")
    assert redis_down and {e["failure_mode"] for e in redis_down} == {"open (local limits)"}
    assert logged("redis connected")
    assert len(logged("configuration reloaded")) == 100
    assert logged("backend addresses changed", host="svc.test")
    assert logged("backend drained") and logged("backend undrained")
    assert {e["ratelimit"] for e in access.values() if e["route"] == "limited"} == {"allowed"}
