"""Admin listener: health endpoints, /metrics, /admin/status, token."""

import json

from sluicetest import RawClient, free_port, http_request, wait_until


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
