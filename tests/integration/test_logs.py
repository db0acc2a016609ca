"""Access log: JSON fields, combined format, errors logged, access = "off"."""

import re

from sluicetest import Response, free_port, http_request

RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d)$")
FIELDS = {"time", "request_id", "trace_id", "client_ip", "method", "host", "path", "status", "bytes_sent",
          "duration_ms", "upstream", "upstream_ms", "route", "pool", "user_agent", "ratelimit",
          "tls"}


def _start(sluice, backend, log=None, routes=None):
    cfg = sluice.config(routes=routes or [{"name": "web-route", "path": "/", "pool": "web-pool"}],
                        pools={"web-pool": {"backends": [backend.address]}}, log=log)
    sluice.start(cfg)


def test_access_log_json_fields(backend, sluice):
    backend.on("/logged", Response(body=b"x" * 321))
    _start(sluice, backend)
    r = http_request(sluice.port(), "GET", "/logged?q=1", host="log.test",
                     headers=[("User-Agent", "pytest-agent/1.0"), ("X-Request-Id", "log-1")])
    assert r.status == 200
    e = sluice.wait_access(lambda e: e.get("request_id") == "log-1")
    assert FIELDS <= set(e), f"missing fields: {FIELDS - set(e)}"
    assert RFC3339_MS.match(e["time"]), e["time"]
    assert e["client_ip"] == "127.0.0.1"
    assert e["method"] == "GET"
    assert e["host"] == "log.test"
    assert e["path"] in ("/logged", "/logged?q=1")
    assert e["status"] == 200
    assert isinstance(e["bytes_sent"], int) and e["bytes_sent"] >= 321
    assert isinstance(e["duration_ms"], (int, float)) and e["duration_ms"] >= 0
    assert e["upstream"] == backend.address
    assert isinstance(e["upstream_ms"], (int, float)) and e["upstream_ms"] >= 0
    assert e["route"] == "web-route"
    assert e["pool"] == "web-pool"
    assert e["user_agent"] == "pytest-agent/1.0"
    assert e["ratelimit"] == "-"
    assert e["tls"] == "-"


def test_access_log_one_line_per_request(backend, sluice):
    _start(sluice, backend)
    for i in range(5):
        http_request(sluice.port(), "GET", f"/n/{i}", headers=[("X-Request-Id", f"n-{i}")])
    sluice.wait_access(lambda e: e.get("request_id") == "n-4")
    ids = [e["request_id"] for e in sluice.access_entries() if e["request_id"].startswith("n-")]
    assert sorted(ids) == [f"n-{i}" for i in range(5)]


def test_access_log_records_proxy_errors(backend, sluice):
    _start(sluice, backend, routes=[{"name": "api", "path": "/api/", "pool": "web-pool"}])
    r = http_request(sluice.port(), "GET", "/nowhere", headers=[("X-Request-Id", "err-404")])
    assert r.status == 404
    e = sluice.wait_access(lambda e: e.get("request_id") == "err-404")
    assert e["status"] == 404
    assert e["method"] == "GET"


def test_access_log_upstream_error(sluice):
    dead = f"127.0.0.1:{free_port()}"
    cfg = sluice.config(routes=[{"name": "r", "path": "/", "pool": "p"}],
                        pools={"p": {"backends": [dead], "retries": 0}})
    sluice.start(cfg)
    r = http_request(sluice.port(), "GET", "/x", headers=[("X-Request-Id", "err-502")])
    assert r.status == 502
    e = sluice.wait_access(lambda e: e.get("request_id") == "err-502")
    assert e["status"] == 502
    assert e["upstream"] == dead
    assert e["route"] == "r" and e["pool"] == "p"


COMBINED = re.compile(
    r'^(\S+) - (\S+) \[(\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4})\] "([^"]*)" (\d{3}) (\d+|-) '
    r'"([^"]*)" "([^"]*)"')


def test_access_log_combined_format(backend, sluice):
    backend.on("/c", Response(body=b"y" * 100))
    _start(sluice, backend, log={"format": "combined"})
    http_request(sluice.port(), "GET", "/c?x=1",
                 headers=[("User-Agent", "combined-agent"), ("Referer", "http://ref.test/")])
    from sluicetest import wait_until
    line = wait_until(lambda: sluice.access_lines() and sluice.access_lines()[-1], 5)
    m = COMBINED.match(line)
    assert m, line
    assert m.group(1) == "127.0.0.1"
    assert m.group(4) == "GET /c?x=1 HTTP/1.1"
    assert m.group(5) == "200"
    assert int(m.group(6)) >= 100
    assert m.group(7) == "http://ref.test/"
    assert m.group(8) == "combined-agent"
    # Sluice's addition after nginx's fields: the trace id sent upstream.
    assert re.search(r'"combined-agent" [0-9a-f]{32}$', line), line


def test_access_log_off(backend, sluice):
    _start(sluice, backend, log={"access": "off"})
    assert http_request(sluice.port(), "GET", "/x").status == 200
    assert http_request(sluice.port(), "GET", "/y").status == 200
    # Give the (async) writer a chance to misbehave: a /metrics round trip orders us after
    # the requests on the server side.
    sluice.metrics()
    assert not sluice.access_lines()
    assert "/x" not in sluice.stdout()


def test_trusted_proxies_client_ip(backend, sluice):
    cfg = sluice.config(routes=[{"name": "r", "path": "/", "pool": "p"}],
                        pools={"p": {"backends": [backend.address]}},
                        server={"trusted_proxies": ["127.0.0.0/8"]})
    sluice.start(cfg)
    http_request(sluice.port(), "GET", "/t", headers=[("X-Forwarded-For", "203.0.113.9"),
                                                      ("X-Request-Id", "trusted-1")])
    e = sluice.wait_access(lambda e: e.get("request_id") == "trusted-1")
    assert e["client_ip"] == "203.0.113.9"
    # The forwarded chain is still appended upstream.
    xff = backend.requests[0].header("x-forwarded-for")
    assert [p.strip() for p in xff.split(",")] == ["203.0.113.9", "127.0.0.1"]


def test_untrusted_x_forwarded_for_not_believed(backend, sluice):
    _start(sluice, backend)
    http_request(sluice.port(), "GET", "/t", headers=[("X-Forwarded-For", "203.0.113.9"),
                                                      ("X-Request-Id", "untrusted-1")])
    e = sluice.wait_access(lambda e: e.get("request_id") == "untrusted-1")
    assert e["client_ip"] == "127.0.0.1"


def test_event_log_lines_are_json(make_backend, sluice):
    import json
    backend = make_backend("x")
    _start(sluice, backend)
    cfg2 = open(sluice.config_path).read().replace('path = "/"', 'path = "/v2/"')
    assert sluice.reload(cfg2) == "ok"
    sluice.stop()
    lines = [l for l in sluice.stderr().splitlines() if l.strip()]
    assert lines, "startup/reload/shutdown are logged"
    for l in lines:
        doc = json.loads(l)
        assert isinstance(doc, dict) and "time" in doc, l
        assert RFC3339_MS.match(doc["time"]), doc["time"]
