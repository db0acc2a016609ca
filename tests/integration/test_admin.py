"""Admin listener: health endpoints, /metrics, /admin/status, /admin/rates, the status page's
HTML and headers, token, cross-origin changes."""

import base64
import ctypes
import hashlib
import json
import os
import re
import time

from sluicetest import RawClient, Response, free_port, http_request, wait_until


def _start(sluice, backends, admin=True, routes=None):
    cfg = sluice.config(routes=routes or [{"name": "r", "path": "/", "pool": "p"}],
                        pools={"p": {"backends": [b if isinstance(b, str) else b.address
                                                  for b in backends], "retries": 0}},
                        admin=admin)
    sluice.start(cfg)


def test_health_endpoints(backend, sluice):
    _start(sluice, [backend])
    assert sluice.admin_get("/health/live")[0] == 200
    assert sluice.admin_get("/health/ready")[0] == 200
    st, hdrs, body = sluice.admin_get("/health")
    assert st == 200
    assert hdrs.get("content-type", "").startswith("application/json")
    doc = json.loads(body)
    assert isinstance(doc, dict) and "p" in json.dumps(doc)


def test_metrics_requests_and_histogram(backend, sluice):
    _start(sluice, [backend])
    for i in range(3):
        assert http_request(sluice.port(), "GET", f"/m/{i}").status == 200
    st, hdrs, _ = sluice.admin_get("/metrics")
    assert st == 200 and hdrs.get("content-type", "").startswith("text/plain")

    def counted():
        m = sluice.metrics()
        return m if m.value("sluice_requests_total", route="r", pool="p", code="200") == 3 else None
    m = wait_until(counted, 3, message="sluice_requests_total == 3")
    assert m.value("sluice_request_duration_seconds_count", route="r") == 3
    assert m.value("sluice_request_duration_seconds_bucket", route="r", le="+Inf") == 3
    assert m.value("sluice_request_duration_seconds_sum", route="r") > 0
    buckets = sorted((float(l["le"]), v) for l, v in
                     m.find("sluice_request_duration_seconds_bucket", route="r"))
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), "histogram buckets are cumulative"
    assert m.value("sluice_backend_up", pool="p", backend=backend.address) == 1
    assert m.value("sluice_config_generation") >= 1


def test_metrics_connections_active(backend, sluice):
    _start(sluice, [backend])
    conns = [RawClient(sluice.port()) for _ in range(3)]
    try:
        for c in conns:
            assert c.request("GET", "/").status == 200
        wait_until(lambda: sluice.metrics().value("sluice_connections_active", listener="web") >= 3,
                   3, message="3 active connections")
    finally:
        for c in conns:
            c.close()
    wait_until(lambda: sluice.metrics().value("sluice_connections_active", listener="web") == 0,
               3, message="connections released")


def test_metrics_upstream_errors(sluice):
    dead = f"127.0.0.1:{free_port()}"
    _start(sluice, [dead])
    assert http_request(sluice.port(), "GET", "/").status == 502
    m = wait_until(lambda: (lambda m: m if m.value("sluice_upstream_errors_total", pool="p",
                                                   backend=dead) >= 1 else None)(sluice.metrics()),
                   3, message="upstream error counted")
    kinds = {l.get("kind") for l, _ in m.find("sluice_upstream_errors_total", pool="p")}
    assert kinds and all(kinds), kinds
    assert m.value("sluice_requests_total", route="r", pool="p", code="502") == 1


def test_admin_status(make_backend, sluice):
    a, b = make_backend("a"), make_backend("b")
    _start(sluice, [a, b])
    st, hdrs, body = sluice.admin_get("/admin/status")
    assert st == 200
    doc = json.loads(body)
    assert doc["generation"] == sluice.generation()
    bes = doc["pools"]["p"]["backends"]
    assert [x["address"] for x in bes] == [a.address, b.address]
    for x in bes:
        assert x["up"] is True
        assert isinstance(x["active"], int)


def test_admin_token(backend, sluice):
    _start(sluice, [backend], admin={"token": "s3cret"})
    assert sluice.admin_get("/admin/status")[0] == 401
    assert sluice.admin_get("/admin/status", token="wrong")[0] == 401
    assert sluice.admin_get("/admin/status", token="s3cret")[0] == 200
    assert sluice.admin_get("/metrics")[0] == 200
    assert sluice.admin_get("/health/live")[0] == 200
    assert sluice.admin_get("/health/ready")[0] == 200


class _ThreadStop:
    """Stops one thread of another process with ptrace (PTRACE_SEIZE + PTRACE_INTERRUPT);
    the process's other threads go on. Detaching lets it run again."""

    PTRACE_SEIZE, PTRACE_INTERRUPT, PTRACE_DETACH, WALL = 0x4206, 0x4207, 17, 0x40000000

    def __init__(self, tid):
        self.tid = tid
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p,
                                     ctypes.c_void_p]
        self.libc.ptrace.restype = ctypes.c_long

    def _call(self, req):
        if self.libc.ptrace(req, self.tid, None, None) != 0:
            raise OSError(ctypes.get_errno(), f"ptrace({req:#x}, {self.tid})")

    def __enter__(self):
        self._call(self.PTRACE_SEIZE)
        self._call(self.PTRACE_INTERRUPT)
        os.waitpid(self.tid, self.WALL)  # until it has actually stopped
        return self

    def __exit__(self, *exc):
        self._call(self.PTRACE_DETACH)


def _threads(pid, name):
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/comm") as f:
            if f.read().strip() == name:
                out.append(int(tid))
    return out


def test_health_live_is_503_while_a_worker_loop_does_not_turn(backend, sluice):
    # /health/live is what the image's HEALTHCHECK and the Kubernetes liveness probe ask: it
    # must fail when a worker hangs while the rest of the process (the admin listener) is
    # fine. One worker thread is stopped with ptrace; after the stall bound (10 s without
    # answering the heartbeat's poke) the answer is 503, and 200 again once it runs.
    cfg = sluice.config(routes=[{"name": "r", "path": "/", "pool": "p"}],
                        pools={"p": {"backends": [backend.address]}}, admin=True,
                        server={"workers": 2})
    sluice.start(cfg)
    assert sluice.admin_get("/health/live")[0] == 200
    wait_until(lambda: len(_threads(sluice.pid, "sluice-w1")) == 1, timeout=5)
    (tid,) = _threads(sluice.pid, "sluice-w1")
    with _ThreadStop(tid):
        wait_until(lambda: sluice.admin_get("/health/live")[0] == 503, timeout=20,
                   message="a stalled worker")
        st, _, body = sluice.admin_get("/health/live")
        assert st == 503
        doc = json.loads(body)
        assert doc == {"status": "stalled", "stalled_workers": 1, "main_loop_stalled": False}
        st, _, body = sluice.admin_get("/health")
        assert st == 503 and json.loads(body)["live"] is False
        assert "worker event loop stalled" in sluice.stderr()
    wait_until(lambda: sluice.admin_get("/health/live")[0] == 200, timeout=5,
               message="live again once the loop turns")
    assert json.loads(sluice.admin_get("/health")[2])["live"] is True
    wait_until(lambda: "worker event loops turn again" in sluice.stderr(), timeout=5)


def test_a_slow_main_thread_does_not_make_workers_look_stalled(backend, sluice):
    # The whole process stopped for longer than the bound: idle workers answered their last
    # poke before the stop, so the heartbeat that runs after it finds none stalled.
    _start(sluice, [backend])
    sluice.pause()
    try:
        time.sleep(10.5)  # the elapsed time is the condition itself
    finally:
        sluice.resume()
    wait_until(lambda: sluice.admin_get("/health/live")[0] == 200, timeout=5)
    assert "worker event loop stalled" not in sluice.stderr()


def test_admin_token_from_env(backend, sluice):
    cfg = sluice.config(routes=[{"name": "r", "path": "/", "pool": "p"}],
                        pools={"p": {"backends": [backend.address]}},
                        admin={"token": "${SLUICE_TEST_TOKEN:-fallback}"})
    sluice.start(cfg, env={"SLUICE_TEST_TOKEN": "from-env"})
    assert sluice.admin_get("/admin/status", token="fallback")[0] == 401
    assert sluice.admin_get("/admin/status", token="from-env")[0] == 200


def test_admin_unknown_path_404(backend, sluice):
    _start(sluice, [backend])
    assert sluice.admin_get("/definitely/not/here")[0] == 404
    assert backend.requests == []


def test_admin_port_does_not_proxy(backend, sluice):
    _start(sluice, [backend])
    r = http_request(sluice.admin_port, "GET", "/some/app/path")
    assert r.status == 404
    assert backend.requests == []


def test_public_admin_listener_without_token_refuses_changes(backend, sluice):
    port = free_port()
    _start(sluice, [backend], admin={"listen": f"0.0.0.0:{port}"})
    # Reads stay open: health, metrics, status.
    assert sluice.admin_get("/admin/status")[0] == 200
    assert sluice.admin_get("/metrics")[0] == 200
    st, _, body = sluice.admin_get(f"/admin/pools/p/backends/{backend.address}/drain",
                                   method="POST")
    assert st == 403 and json.loads(body)["error"] == "admin_token_required"
    assert "admin listener is not on loopback and has no token" in sluice.stderr()


def test_public_admin_listener_with_token(backend, sluice):
    port = free_port()
    _start(sluice, [backend], admin={"listen": f"0.0.0.0:{port}", "token": "t0k3n"})
    path = f"/admin/pools/p/backends/{backend.address}/drain"
    assert sluice.admin_get(path, method="POST")[0] == 401
    assert sluice.admin_get(path, method="POST", token="t0k3n-longer")[0] == 401
    assert sluice.admin_get(path, method="POST", token="t0k3")[0] == 401
    assert sluice.admin_get(path, method="POST", token="t0k3n")[0] == 200


def test_metrics_upstream_duration_tells_backend_time_apart(make_backend, sluice):
    slow = make_backend("slow")
    slow.set_default(Response(delay=0.15))
    _start(sluice, [slow])
    assert http_request(sluice.port(), "GET", "/x").status == 200
    m = wait_until(lambda: (lambda m: m if m.value("sluice_upstream_duration_seconds_count",
                                                   pool="p") == 1 else None)(sluice.metrics()),
                   3, message="sluice_upstream_duration_seconds_count == 1")
    # The backend took 150 ms before its head: in (0.1, 0.25], like the whole answer.
    for metric, label in (("sluice_upstream_duration_seconds_bucket", {"pool": "p"}),
                          ("sluice_request_duration_seconds_bucket", {"route": "r"})):
        assert m.value(metric, le="0.1", **label) == 0
        assert m.value(metric, le="0.25", **label) == 1
        assert m.value(metric, le="+Inf", **label) == 1
    assert m.value("sluice_upstream_duration_seconds_sum", pool="p") >= 0.15
    # An answer the proxy makes itself has no backend time.
    with RawClient(sluice.port()) as c:
        assert c.request("GET", "/x", headers=[("Content-Length", "1"),
                                               ("Transfer-Encoding", "chunked")]).status == 400
    m = wait_until(lambda: (lambda m: m if m.value("sluice_requests_total", code="400") == 1
                            else None)(sluice.metrics()), 3, message="the 400 counted")
    assert m.value("sluice_upstream_duration_seconds_count", pool="p") == 1


def test_backend_draining_and_last_reload_metrics(backend, sluice):
    _start(sluice, [backend])
    m = sluice.metrics()
    assert m.value("sluice_backend_draining", pool="p", backend=backend.address) == 0
    assert m.value("sluice_config_last_reload_successful") == 1
    assert sluice.admin_get(f"/admin/pools/p/backends/{backend.address}/drain",
                            method="POST")[0] == 200
    m = sluice.metrics()
    assert m.value("sluice_backend_draining", pool="p", backend=backend.address) == 1
    assert m.value("sluice_backend_up", pool="p", backend=backend.address) == 0
    # No reload yet: last_reload is null.
    assert json.loads(sluice.admin_get("/admin/status")[2])["last_reload"] is None
    good = sluice.config(routes=[{"name": "r", "path": "/", "pool": "p"}],
                         pools={"p": {"backends": [backend.address]}})
    assert sluice.reload(good + "\n[bogus]\nkey = 1\n") == "error"
    assert sluice.metrics().value("sluice_config_last_reload_successful") == 0
    last = json.loads(sluice.admin_get("/admin/status")[2])["last_reload"]
    assert last["result"] == "error" and last["reason"] == "1 configuration error(s)", last
    assert len(last["errors"]) == 1 and "bogus" in last["errors"][0], last
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", last["at"]), last
    assert sluice.reload(good) == "ok"
    assert sluice.metrics().value("sluice_config_last_reload_successful") == 1
    last = json.loads(sluice.admin_get("/admin/status")[2])["last_reload"]
    assert last["result"] == "success" and "errors" not in last, last


def test_admin_rates_last_minute(make_backend, sluice):
    a = make_backend("a")
    a.on("/fail", Response(status=503))
    a.on("/slow", Response(delay=0.3))
    _start(sluice, [a], admin={"token": "t0k"}, routes=[
        {"name": "r", "path": "/", "pool": "p"}, {"name": "slow", "path": "/slow", "pool": "p"}])
    assert sluice.admin_get("/admin/rates")[0] == 401
    with RawClient(sluice.port()) as c:
        for _ in range(9):
            assert c.request("GET", "/ok").status == 200
        assert c.request("GET", "/fail").status == 503
        assert c.request("GET", "/slow").status == 200

    def rates():
        st, hdrs, body = sluice.admin_get("/admin/rates", token="t0k")
        assert st == 200 and hdrs["content-type"] == "application/json"
        doc = json.loads(body)
        routes = {r["name"]: r for r in doc["routes"]}
        # Samples every 2 s: the requests show once a sample after them exists.
        return doc if routes.get("r", {}).get("requests") == 10 else None

    doc = wait_until(rates, 10, interval=0.2, message="the requests in /admin/rates")
    assert doc["interval_ms"] == 2000 and 0 < doc["span_ms"] <= 62000
    r = {x["name"]: x for x in doc["routes"]}["r"]
    assert r["errors"] == 1 and r["error_ratio"] == 0.1
    assert r["rps"] > 0 and len(r["rps_series"]) == len(r["p95_series"]) == 30
    assert r["p95_ms"] is not None and r["p95_ms"] <= 5
    slow = {x["name"]: x for x in doc["routes"]}["slow"]
    assert 250 <= slow["p50_ms"] <= 500
    p = {x["name"]: x for x in doc["pools"]}["p"]
    assert p["requests"] == 11 and p["errors"] == 1
    # The pool's quantiles are backend time: the slow answer is 1 of 11.
    assert p["p50_ms"] <= 5 and p["p99_ms"] > 250
    assert {x["name"] for x in doc["listeners"]} == {"web"}
    assert doc["ratelimit"] == [] and doc["tls"] == {"handshakes": 0, "errors": 0}
    assert sluice.admin_get("/admin/rates", token="t0k", method="POST")[0] == 405


def test_status_page_is_served_with_a_strict_csp(backend, sluice):
    _start(sluice, [backend], admin={"token": "t0k"})
    # The page itself needs no token (it asks for one); the data behind it does.
    st, hdrs, body = sluice.admin_get("/")
    assert st == 200 and hdrs["content-type"] == "text/html; charset=utf-8"
    html = body.decode()
    assert html.startswith("<!doctype html>") and 'data-auth="token"' in html
    csp = hdrs["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'none'"
    script = html.split("<script>", 1)[1].split("</script>", 1)[0]
    style = html.split("<style>", 1)[1].split("</style>", 1)[0]
    digest = lambda t: "'sha256-" + base64.b64encode(hashlib.sha256(t.encode()).digest()).decode() + "'"
    assert directives["script-src"] == digest(script)
    assert directives["style-src"] == digest(style)
    assert directives["connect-src"] == "'self'" and directives["form-action"] == "'none'"
    assert "unsafe" not in csp
    assert hdrs["x-frame-options"] == "DENY" and hdrs["x-content-type-options"] == "nosniff"
    assert hdrs["cache-control"] == "no-store"
    assert sluice.admin_get("/", method="HEAD")[0] == 200
    assert sluice.admin_get("/", method="POST")[0] == 405
    assert sluice.admin_get("/?x=1")[0] == 200
    assert backend.requests == []


def test_cross_origin_admin_changes_are_refused(backend, sluice):
    _start(sluice, [backend])  # loopback, no token: changes allowed to local clients
    path = f"/admin/pools/p/backends/{backend.address}/drain"
    # A page elsewhere making the operator's browser post here is refused ...
    st, _, body = sluice.admin_get(path, method="POST", headers={"Origin": "http://evil.test"})
    assert st == 403 and json.loads(body)["error"] == "cross_origin"
    st, _, body = sluice.admin_get(path, method="POST", headers={"Origin": "null"})
    assert st == 403
    assert json.loads(sluice.admin_get("/admin/status")[2])["pools"]["p"]["backends"][0][
        "draining"] is False
    # ... the status page on the listener itself and clients without Origin are not.
    origin = f"http://127.0.0.1:{sluice.admin_port}"
    assert sluice.admin_get(path, method="POST", headers={"Origin": origin})[0] == 200
    assert sluice.admin_get(path.replace("/drain", "/undrain"), method="POST")[0] == 200
    # Reads from anywhere are answered as before (the browser keeps them from the page).
    assert sluice.admin_get("/admin/status", headers={"Origin": "http://evil.test"})[0] == 200
