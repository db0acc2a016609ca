"""Backend pools (issue 3): balancers, active health checks, outlier ejection, retries when a
backend dies under load, drain/undrain, DNS re-resolution, max_connections and readiness.

Every test runs the real binary against real backend threads on loopback. Waits poll state
(admin JSON, metrics, backend records) with deadlines instead of sleeping.
"""

import collections
import json
import math
import threading
import time

import pytest

from sluicetest import RawClient, Response, http_request, run_cli, wait_until


# ---- helpers ---------------------------------------------------------------------------

def status_json(s, token=None):
    st, _, body = s.admin_get("/admin/status", token=token)
    assert st == 200, body
    return json.loads(body)


def backend_states(s, pool="p", token=None):
    """{backend name: state} from /admin/status."""
    pools = status_json(s, token)["pools"]
    return {b["name"]: b["state"] for b in pools[pool]["backends"]}


def health_json(s):
    _, _, body = s.admin_get("/health")
    return json.loads(body)


def wait_state(s, name, state, timeout=5.0, pool="p"):
    """Waits until backend `name` is in `state`; returns the seconds it took."""
    t0 = time.monotonic()
    wait_until(lambda: backend_states(s, pool).get(name) == state, timeout=timeout,
               message=f"{name} -> {state}")
    return time.monotonic() - t0


def counts(port, n, path="/", headers_for=None):
    """n sequential keep-alive GETs; Counter of the answering backend's name."""
    c = collections.Counter()
    with RawClient(port) as cl:
        for i in range(n):
            hdrs = headers_for(i) if headers_for else None
            r = cl.request("GET", path, headers=hdrs)
            assert r.status == 200, (r.status, r.body[:200])
            c[r.json()["backend"]] += 1
    return c


def admin_post(s, path, token=None):
    return s.admin_get(path, method="POST", body=b"", token=token)


class Toggle:
    """A response that can be flipped between healthy (200) and failing (500) from the test."""

    def __init__(self, ok=True):
        self.ok = ok

    def __call__(self, req):
        return Response(200, body=b"ok") if self.ok else Response(500, body=b"bad")


# ---- balancers ---------------------------------------------------------------------------

@pytest.mark.parametrize("balance,tolerance", [
    ("round_robin", 0.0),   # smooth WRR with one worker: exact
    ("least_conn", 0.0),    # sequential requests tie on 0 active: smooth WRR among the tied
    ("p2c", 0.2),           # weighted random draws
    ("hash", None),         # per backend, from the ring's and the sampling's spread (below)
])
def test_distribution_respects_weights(make_backend, proxy, balance, tolerance):
    a, b, c = make_backend("a"), make_backend("b"), make_backend("c")
    opts = {"balance": balance}
    if balance == "hash":
        opts["hash_key"] = "header:X-User"
    s = proxy(pools={"p": dict(backends=[(a.address, 3), (b.address, 2), (c.address, 1)], **opts)})
    # More keys: less sampling noise for the ring; p2c draws at random, so it needs enough
    # requests that 20 % is far outside the noise (3,000: the lightest backend's share is
    # 500 ± 20, a 20 % miss is 5 standard deviations).
    n = {"hash": 2400, "p2c": 3000}.get(balance, 600)
    got = counts(s.port(), n, headers_for=lambda i: [("X-User", f"user-{i}")])
    want = {"a": n // 2, "b": n // 3, "c": n // 6}
    weight = {"a": 3, "b": 2, "c": 1}
    for name, w in want.items():
        tol = tolerance
        if balance == "hash":
            # A backend's share of the ring is the sum of its 160 x weight arcs (relative
            # spread 1/sqrt(points); the ports, hence the ring, change every run), sampled by
            # the keys (1/sqrt(expected keys)). 5 standard deviations: c +-47 %, a +-27 %, so
            # ignoring the weights (800 each) still fails on a and c.
            tol = 5 * math.sqrt(1 / (160 * weight[name]) + 1 / w)
        assert abs(got[name] - w) <= tol * w + 0.5, (balance, got)


def test_round_robin_has_no_bursts(make_backend, proxy):
    a, b, c = make_backend("a"), make_backend("b"), make_backend("c")
    s = proxy(pools={"p": dict(backends=[(a.address, 5), (b.address, 1), (c.address, 1)])})
    seq = []
    with RawClient(s.port()) as cl:
        for _ in range(70):
            seq.append(cl.request("GET", "/").json()["backend"])
    run = best = 0
    for x in seq:
        run = run + 1 if x == "a" else 0
        best = max(best, run)
    assert best <= 4, seq


def test_least_conn_avoids_the_busy_backend(make_backend, proxy):
    a, b = make_backend("a"), make_backend("b")
    for be in (a, b):
        be.on("/slow", Response(200, body=b"slow", delay=1.5))
    s = proxy(pools={"p": dict(backends=[a.address, b.address], balance="least_conn")})
    port = s.port()
    slow = {}
    t = threading.Thread(target=lambda: slow.setdefault("r", http_request(port, "GET", "/slow")))
    t.start()
    wait_until(lambda: len(a.requests) + len(b.requests) == 1, timeout=3)
    busy = "a" if a.requests else "b"
    got = counts(port, 10)
    t.join()
    assert slow["r"].status == 200
    assert got[busy] == 0 and sum(got.values()) == 10, got


def test_p2c_prefers_less_loaded(make_backend, proxy):
    a, b = make_backend("a"), make_backend("b")
    for be in (a, b):
        be.on("/slow", Response(200, body=b"slow", delay=1.5))
    s = proxy(pools={"p": dict(backends=[a.address, b.address], balance="p2c")})
    port = s.port()
    t = threading.Thread(target=lambda: http_request(port, "GET", "/slow"))
    t.start()
    wait_until(lambda: len(a.requests) + len(b.requests) == 1, timeout=3)
    busy = "a" if a.requests else "b"
    got = counts(port, 20)
    t.join()
    # With two backends both are always drawn: the idle one wins every time.
    assert got[busy] == 0, got


# ---- consistent hashing --------------------------------------------------------------------

def hash_map(port, keys, header="X-User"):
    out = {}
    with RawClient(port) as cl:
        for k in keys:
            r = cl.request("GET", "/", headers=[(header, k)])
            assert r.status == 200
            out[k] = r.json()["backend"]
    return out


def test_hash_is_sticky_and_stable_when_backends_change(make_backend, make_sluice):
    bes = [make_backend(n) for n in ("a", "b", "c", "d")]
    keys = [f"user-{i}" for i in range(400)]
    s = make_sluice()

    def cfg(members):
        return s.config(routes=[{"name": "r", "path": "/", "pool": "p"}],
                        pools={"p": {"backends": [b.address for b in members],
                                     "balance": "hash", "hash_key": "header:X-User"}})

    s.start(cfg(bes[:3]))
    before = hash_map(s.port(), keys)
    assert hash_map(s.port(), keys[:50]) == {k: before[k] for k in keys[:50]}  # sticky
    assert set(before.values()) == {"a", "b", "c"}

    # Add a fourth backend: only keys that now land on it move (about 1/4 of them).
    assert s.reload(cfg(bes)) == "ok"
    added = hash_map(s.port(), keys)
    moved = [k for k in keys if added[k] != before[k]]
    assert all(added[k] == "d" for k in moved)
    assert 0.1 * len(keys) <= len(moved) <= 0.4 * len(keys), len(moved)

    # Remove "b": only b's keys move, spread over the others.
    assert s.reload(cfg([bes[0], bes[2], bes[3]])) == "ok"
    removed = hash_map(s.port(), keys)
    for k in keys:
        if added[k] != "b":
            assert removed[k] == added[k], k
    spread = collections.Counter(removed[k] for k in keys if added[k] == "b")
    assert len(spread) >= 2, spread


def test_hash_down_backend_keys_spread_over_the_rest(make_backend, proxy):
    a, b, c = make_backend("a"), make_backend("b"), make_backend("c")
    s = proxy(pools={"p": dict(backends=[a.address, b.address, c.address], balance="hash",
                               hash_key="cookie:sid")})
    keys = [f"s{i}" for i in range(300)]

    def mapping():
        out = {}
        with RawClient(s.port()) as cl:
            for k in keys:
                r = cl.request("GET", "/", headers=[("Cookie", f"theme=dark; sid={k}")])
                out[k] = r.json()["backend"]
        return out

    before = mapping()
    st, _, body = admin_post(s, f"/admin/pools/p/backends/{b.address}/drain")
    assert st == 200, body
    during = mapping()
    assert "b" not in during.values()
    for k in keys:
        if before[k] != "b":
            assert during[k] == before[k]
    assert len({during[k] for k in keys if before[k] == "b"}) == 2
    assert admin_post(s, f"/admin/pools/p/backends/{b.address}/undrain")[0] == 200
    assert mapping() == before


# ---- active health checks ------------------------------------------------------------------

HEALTH = {"path": "/healthz", "interval": "100ms", "timeout": "200ms",
          "healthy_threshold": 2, "unhealthy_threshold": 2, "expect_status": "200-399"}


def test_health_check_down_and_up_with_timing(make_backend, proxy):
    a, b = make_backend("a"), make_backend("b")
    ta, tb = Toggle(), Toggle()
    a.on("/healthz", ta)
    b.on("/healthz", tb)
    s = proxy(pools={"p": dict(backends=[a.address, b.address], health=HEALTH)})
    wait_until(lambda: len([r for r in a.requests if r.path == "/healthz"]) >= 2, timeout=3)
    assert backend_states(s) == {a.address: "up", b.address: "up"}

    ta.ok = False
    took = wait_state(s, a.address, "down", timeout=3)
    # 2 failures at ~100ms intervals (+-10% jitter) plus the 50ms state monitor.
    assert took < 1.0, took
    assert counts(s.port(), 20) == {"b": 20}
    # The state monitor counts the change within its 50ms period.
    wait_until(lambda: s.metrics().value("sluice_backend_state_changes_total", pool="p",
                                         backend=a.address) >= 1, timeout=2)
    m = s.metrics()
    assert m.value("sluice_backend_up", pool="p", backend=a.address) == 0
    assert m.value("sluice_backend_up", pool="p", backend=b.address) == 1
    h = health_json(s)
    assert h["ready"] is True
    states = {x["address"]: x["state"] for x in h["pools"]["p"]["backends"]}
    assert states[a.address] == "down"

    ta.ok = True
    took = wait_state(s, a.address, "up", timeout=3)
    assert took < 1.0, took
    assert set(counts(s.port(), 10)) == {"a", "b"}
    wait_until(lambda: s.metrics().value("sluice_backend_state_changes_total", pool="p",
                                         backend=a.address) >= 2, timeout=2)
    wait_until(lambda: "backend state changed" in s.stdout() + s.stderr(), timeout=3)
    log = s.stdout() + s.stderr()
    assert '"to":"down"' in log and "health check failed" in log


def test_health_check_timeout_and_connect_refused(make_backend, proxy):
    a, b = make_backend("a"), make_backend("b")
    a.on("/healthz", Response(200, body=b"late", delay=1.0))  # over the 200ms timeout
    s = proxy(pools={"p": dict(backends=[a.address, b.address], health=HEALTH)})
    wait_state(s, a.address, "down", timeout=3)
    b.stop()
    wait_state(s, b.address, "down", timeout=3)
    st, _, _ = s.admin_get("/health/ready")
    assert st == 503
    r = http_request(s.port(), "GET", "/")
    assert r.status == 503 and r.json()["error"] == "no_healthy_backend"


def test_readiness_follows_pool_health(make_backend, proxy):
    a = make_backend("a")
    port = a.port
    a.on("/healthz", Response(200, body=b"ok"))
    s = proxy(pools={"p": dict(backends=[a.address], health=HEALTH)})
    wait_until(lambda: s.admin_get("/health/ready")[0] == 200, timeout=3)
    a.stop()
    wait_until(lambda: s.admin_get("/health/ready")[0] == 503, timeout=3)
    assert http_request(s.port(), "GET", "/health/ready").status == 503  # proxy listener too
    a2 = make_backend("a", port=port)
    a2.on("/healthz", Response(200, body=b"ok"))
    wait_until(lambda: s.admin_get("/health/ready")[0] == 200, timeout=3)
    assert http_request(s.port(), "GET", "/").status == 200


# ---- passive checks (outlier ejection) -------------------------------------------------------

def test_outlier_ejection_and_return(make_backend, proxy):
    a, b = make_backend("a"), make_backend("b")
    ta = Toggle(ok=False)
    a.on("/", ta)
    b.on("/", Response(200, body=b"ok"))
    s = proxy(pools={"p": dict(backends=[a.address, b.address],
                               outlier={"consecutive_failures": 3, "ejection_time": "1s"})})
    statuses = collections.Counter()
    with RawClient(s.port()) as cl:
        for _ in range(6):  # round robin: a gets 3 -> ejected
            statuses[cl.request("GET", "/").status] += 1
    assert statuses[500] == 3
    wait_state(s, a.address, "ejected", timeout=2)
    with RawClient(s.port()) as cl:
        for _ in range(10):
            assert cl.request("GET", "/").status == 200
    ta.ok = True
    took = wait_state(s, a.address, "up", timeout=3)
    assert took < 1.5
    log = s.stdout() + s.stderr()
    assert '"to":"ejected"' in log

    # A second ejection in a row lasts longer (2 x ejection_time).
    ta.ok = False
    with RawClient(s.port()) as cl:
        for _ in range(6):
            cl.request("GET", "/")
    wait_state(s, a.address, "ejected", timeout=2)
    t0 = time.monotonic()
    ta.ok = True
    wait_state(s, a.address, "up", timeout=4)
    assert time.monotonic() - t0 > 1.3


def test_last_backend_is_never_ejected(make_backend, proxy):
    a = make_backend("a")
    a.on("/", Response(500, body=b"bad"))
    s = proxy(pools={"p": dict(backends=[a.address],
                               outlier={"consecutive_failures": 2, "ejection_time": "5s"})})
    with RawClient(s.port()) as cl:
        for _ in range(6):
            assert cl.request("GET", "/").status == 500  # its own answer, not 503
    assert backend_states(s)[a.address] == "up"


def test_connect_failures_eject(make_backend, proxy):
    a, b = make_backend("a"), make_backend("b")
    a.stop()
    s = proxy(pools={"p": dict(backends=[a.address, b.address], retries=1,
                               outlier={"consecutive_failures": 2, "ejection_time": "10s"})})
    with RawClient(s.port()) as cl:
        for _ in range(6):
            assert cl.request("GET", "/").status == 200  # retried on b
    wait_state(s, a.address, "ejected", timeout=2)


# ---- a backend killed under load ---------------------------------------------------------------

def test_killed_backend_under_concurrent_load_costs_no_errors(make_backend, proxy):
    bes = [make_backend(n) for n in ("a", "b", "c")]
    for be in bes:
        be.on("/healthz", Response(200, body=b"ok"))
        # Each response leaves in one write, like a small real response: the kill can only come
        # between responses or before one, never leave half a response (that one could not be
        # retried by any proxy once its first bytes reached the client).
        body = json.dumps({"backend": be.name}).encode()
        be.on("/load", Response(raw=b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                                % (len(body), body)))
    s = proxy(pools={"p": dict(backends=[be.address for be in bes], retries=2,
                               health=HEALTH)})
    port = s.port()
    stop = threading.Event()
    errors, ok = [], collections.Counter()
    lock = threading.Lock()

    def client():
        while not stop.is_set():
            try:
                with RawClient(port, timeout=5) as cl:
                    for _ in range(20):
                        r = cl.request("GET", "/load")
                        with lock:
                            if r.status != 200:
                                errors.append(r.status)
                            else:
                                ok[r.json()["backend"]] += 1
                        if stop.is_set():
                            return
            except Exception as e:  # noqa: BLE001 - any client-visible failure counts
                with lock:
                    errors.append(repr(e))

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    wait_until(lambda: sum(ok.values()) > 200, timeout=10)
    bes[1].kill()
    killed_at = sum(ok.values())
    wait_state(s, bes[1].address, "down", timeout=3)
    wait_until(lambda: sum(ok.values()) > killed_at + 300, timeout=10)
    stop.set()
    for t in threads:
        t.join(10)
    assert errors == [], errors[:10]
    assert ok["a"] and ok["c"]


# ---- drain / undrain ---------------------------------------------------------------------------

def test_drain_finishes_in_flight_and_takes_no_new_requests(make_backend, proxy):
    a, b = make_backend("a"), make_backend("b")
    for be in (a, b):
        be.on("/slow", Response(200, body=b"slow-done", delay=1.0))
    s = proxy(pools={"p": dict(backends=[a.address, b.address])}, admin={"token": "sekret"})
    port = s.port()
    res = {}
    t = threading.Thread(target=lambda: res.setdefault("r", http_request(port, "GET", "/slow")))
    t.start()
    wait_until(lambda: len(a.requests) + len(b.requests) == 1, timeout=3)
    busy, other = (a, b) if a.requests else (b, a)

    path = f"/admin/pools/p/backends/{busy.address}/drain"
    assert admin_post(s, path)[0] == 401  # token auth like every /admin/*
    assert s.admin_get(path, token="sekret")[0] == 405  # POST only
    assert admin_post(s, "/admin/pools/nope/backends/x:1/drain", token="sekret")[0] == 404
    assert admin_post(s, "/admin/pools/p/backends/10.9.9.9:1/drain", token="sekret")[0] == 404
    st, _, body = admin_post(s, path, token="sekret")
    assert st == 200 and json.loads(body)["draining"] is True
    assert backend_states(s, token="sekret")[busy.address] == "draining"

    got = counts(port, 10)
    assert got == {other.name: 10}
    t.join()
    assert res["r"].status == 200 and res["r"].body == b"slow-done"  # in-flight finished

    st, _, _ = admin_post(s, path.replace("/drain", "/undrain"), token="sekret")
    assert st == 200
    assert backend_states(s, token="sekret")[busy.address] == "up"
    assert set(counts(port, 10)) == {"a", "b"}


# ---- max_connections ---------------------------------------------------------------------------

def test_max_connections_is_exact_across_workers_and_waiters_wake_on_release(make_backend, proxy):
    # Two workers share a limit of 2: a slot is reserved atomically (never a third request in
    # flight), and a request waiting on one worker is woken when the other worker releases a
    # slot (without that wakeup it would sit until connect_timeout and get a 503).
    a = make_backend("a")
    a.on("/slow", Response(200, body=b"ok", delay=0.15))
    s = proxy(pools={"p": dict(backends=[a.address], max_connections=2, connect_timeout="20s")},
              server={"workers": 2})
    port = s.port()
    statuses = []
    lock = threading.Lock()

    def go():
        r = http_request(port, "GET", "/slow", timeout=30)
        with lock:
            statuses.append(r.status)

    ts = [threading.Thread(target=go) for _ in range(16)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    elapsed = time.monotonic() - t0
    assert statuses == [200] * 16
    assert a.peak_in_flight == 2
    # 16 requests of 0.15 s through 2 slots: about 1.2 s when every release wakes a waiter.
    assert elapsed < 8, elapsed


def test_max_connections_queues_then_503(make_backend, proxy):
    a = make_backend("a")
    a.on("/slow", Response(200, body=b"slow", delay=0.4))
    a.on("/slower", Response(200, body=b"slower", delay=1.5))
    s = proxy(pools={"p": dict(backends=[a.address], max_connections=1,
                               connect_timeout="800ms")})
    port = s.port()
    results = []
    lock = threading.Lock()

    def go(path):
        r = http_request(port, "GET", path)
        with lock:
            results.append((path, r.status, time.monotonic()))

    # Two at once under the limit of 1: the second waits for the first, both succeed.
    ts = [threading.Thread(target=go, args=("/slow",)) for _ in range(2)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert [r[1] for r in results] == [200, 200]
    assert max(r[2] for r in results) - t0 >= 0.75  # served one after the other

    # A long one holds the slot past connect_timeout: the waiting one gets 503.
    results.clear()
    t1 = threading.Thread(target=go, args=("/slower",))
    t1.start()
    wait_until(lambda: any(r.path == "/slower" for r in a.requests), timeout=3)
    t2 = time.monotonic()
    r = http_request(port, "GET", "/slow")
    assert r.status == 503 and r.json()["error"] == "no_healthy_backend"
    assert 0.6 < time.monotonic() - t2 < 1.4
    t1.join()
    assert results[0][1] == 200


# ---- DNS re-resolution -------------------------------------------------------------------------
# Approach: a test resolver hook. When SLUICE_TEST_HOSTS names a file, the Resolver answers names
# listed there ("name ip [ip...]") from it, re-reading it at every resolution, instead of calling
# getaddrinfo. Tests rewrite the file to change what "svc.test" resolves to; two backends listen
# on the same port of 127.0.0.1 and 127.0.0.2 (both loopback), like two containers behind one
# Compose service name. Everything else (timers, change detection, snapshot rebuild, state kept
# per address) is the production path.

def write_hosts(path, *ips, name="svc.test"):
    tmp = str(path) + ".tmp"
    with open(tmp, "w") as f:
        if ips:
            f.write(f"{name} {' '.join(ips)}\n")
    import os
    os.replace(tmp, path)


def test_dns_changes_add_and_remove_backends_keeping_state(make_backend, make_sluice, tmp_path):
    a = make_backend("a", host="127.0.0.1")
    port = a.port
    b = make_backend("b", host="127.0.0.2", port=port)
    a.on("/healthz", Response(500, body=b"bad"))  # a is unhealthy the whole time
    b.on("/healthz", Response(200, body=b"ok"))
    hosts = tmp_path / "hosts"
    write_hosts(hosts, "127.0.0.1")
    s = make_sluice()
    addr = f"svc.test:{port}"
    cfg = s.config(routes=[{"name": "r", "path": "/", "pool": "p"}],
                   pools={"p": {"backends": [addr], "resolve_interval": "100ms",
                                "health": HEALTH}})
    s.start(cfg, env={"SLUICE_TEST_HOSTS": str(hosts)})
    gen = s.generation()
    wait_state(s, f"{addr}@127.0.0.1", "down", timeout=3)
    assert s.admin_get("/health/ready")[0] == 503

    write_hosts(hosts, "127.0.0.1", "127.0.0.2")
    wait_until(lambda: len(backend_states(s)) == 2, timeout=3)
    # The unchanged address kept its health state: still down, not reset to up.
    assert backend_states(s)[f"{addr}@127.0.0.1"] == "down"
    wait_until(lambda: s.admin_get("/health/ready")[0] == 200, timeout=3)
    assert counts(s.port(), 5) == {"b": 5}
    m = s.metrics()
    assert m.value("sluice_config_generation") == gen  # not a config reload
    assert m.value("sluice_config_reloads_total", result="success") == 0
    assert status_json(s)["backend_revision"] >= 1

    a.on("/healthz", Response(200, body=b"ok"))
    wait_state(s, f"{addr}@127.0.0.1", "up", timeout=3)
    assert set(counts(s.port(), 10)) == {"a", "b"}

    write_hosts(hosts, "127.0.0.2")
    wait_until(lambda: list(backend_states(s)) == [f"{addr}@127.0.0.2"], timeout=3)
    assert counts(s.port(), 10) == {"b": 10}


def test_unresolvable_name_at_start_is_not_fatal(make_backend, make_sluice, tmp_path):
    a = make_backend("a")
    hosts = tmp_path / "hosts"
    write_hosts(hosts, name="other.test")
    s = make_sluice()
    addr = f"late.test:{a.port}"
    cfg = s.config(routes=[{"name": "r", "path": "/", "pool": "p"}],
                   pools={"p": {"backends": [addr], "resolve_interval": "100ms"}})
    s.start(cfg, env={"SLUICE_TEST_HOSTS": str(hosts)})
    assert s.admin_get("/health/ready")[0] == 503
    assert status_json(s)["pools"]["p"]["unresolved"] == [addr]
    r = http_request(s.port(), "GET", "/")
    assert r.status == 503 and r.json()["error"] == "no_healthy_backend"
    write_hosts(hosts, "127.0.0.1", name="late.test")
    wait_until(lambda: s.admin_get("/health/ready")[0] == 200, timeout=3)
    assert http_request(s.port(), "GET", "/").status == 200


def test_t_warns_about_names_that_do_not_resolve(tmp_path):
    cfg = tmp_path / "s.toml"
    cfg.write_text('[[listener]]\nname = "web"\nlisten = "127.0.0.1:18080"\n'
                   '[pool.p]\nbackends = [{ address = "no-such-host.invalid:80" }]\n'
                   '[[route]]\nname = "r"\npath = "/"\npool = "p"\n')
    r = run_cli(["-t", "-c", str(cfg)])
    assert r.returncode == 0, r.stderr
    assert "no-such-host.invalid" in r.stderr and "warning" in r.stderr


def test_refused_connect_triggers_re_resolution(make_backend, make_sluice, tmp_path):
    a = make_backend("a", host="127.0.0.1")
    b = make_backend("b", host="127.0.0.2", port=a.port)
    hosts = tmp_path / "hosts"
    write_hosts(hosts, "127.0.0.1")
    s = make_sluice()
    addr = f"svc.test:{a.port}"
    cfg = s.config(routes=[{"name": "r", "path": "/", "pool": "p"}],
                   pools={"p": {"backends": [addr], "resolve_interval": "1h"}})
    s.start(cfg, env={"SLUICE_TEST_HOSTS": str(hosts)})
    wait_until(lambda: len(backend_states(s)) == 1, timeout=3)
    assert http_request(s.port(), "GET", "/").json()["backend"] == "a"
    # The container moved: a dies, the name now points at b. Only a refused connect can tell
    # (resolve_interval is an hour); the request itself fails, the next one finds b.
    write_hosts(hosts, "127.0.0.2")
    a.stop()
    # Re-resolution after a refusal is rate-limited to once a second per name: requests are
    # refused (502) until one of them makes Sluice look the name up again.
    def refused_then_moved():
        http_request(s.port(), "GET", "/")
        return list(backend_states(s)) == [f"{addr}@127.0.0.2"]

    wait_until(refused_then_moved, timeout=4, interval=0.05,
               message="svc.test looked up again after a refused connect")
    assert http_request(s.port(), "GET", "/").json()["backend"] == "b"


# ---- config ------------------------------------------------------------------------------------

def test_pool_keys_are_validated_with_positions(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(
        '[[listener]]\nname = "web"\nlisten = "127.0.0.1:18080"\n'
        '[pool.p]\nbackends = [{ address = "127.0.0.1:1" }]\n'
        'balance = "random"\n'               # line 6
        'hash_key = "query:x"\n'             # line 7
        'max_connections = -1\n'             # line 8
        'resolve_interval = "10ms"\n'        # line 9
        '[pool.p.health]\n'
        'expect_status = "200-99"\n'         # line 11
        'healthy_threshold = 0\n'            # line 12
        'colour = 1\n'                       # line 13
        '[pool.p.outlier]\n'
        'ejection_time = 5\n'                # line 15
        '[[route]]\nname = "r"\npath = "/"\npool = "p"\n')
    r = run_cli(["-t", "-c", str(cfg)])
    assert r.returncode == 1
    err = r.stderr
    for line, text in [(6, "pool.p.balance"), (7, "pool.p.hash_key"),
                       (8, "pool.p.max_connections"), (9, "pool.p.resolve_interval"),
                       (11, "pool.p.health.expect_status"),
                       (12, "pool.p.health.healthy_threshold"),
                       (13, "unknown key 'colour' in [pool.p.health]"),
                       (15, "pool.p.outlier.ejection_time")]:
        assert f"bad.toml:{line}:" in err and text in err, (line, text, err)
