"""[tracing]: OpenTelemetry spans exported as OTLP/HTTP JSON to a real (Python) receiver:
parents and sampling, attributes, the client span id sent upstream, error status, a dead or
failing collector, queue overflow, reload and the flush on shutdown."""

import re
import signal

import pytest

from sluicetest import OtlpReceiver, Response, free_port, http_request, toml_table, wait_until
from sluicetest.otlp import attrs

TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


@pytest.fixture
def receiver():
    r = OtlpReceiver().start()
    yield r
    r.stop()


def tracing_table(endpoint, **kw):
    return toml_table("[tracing]", {"otlp_endpoint": endpoint, "export_interval": "50ms", **kw})


def start(sluice, backend, endpoint, routes=None, pools=None, **kw):
    cfg = sluice.config(
        routes=routes or [{"name": "api-route", "path": "/api/", "pool": "api-pool"}],
        pools=pools or {"api-pool": {"backends": [backend.address]}},
        extra=tracing_table(endpoint, **kw))
    sluice.start(cfg)
    return cfg


def upstream_tp(backend, path):
    req = next(r for r in backend.requests if r.path == path)
    return TRACEPARENT.match(req.header("traceparent"))


def server_span(receiver, trace_id):
    return receiver.wait_spans(lambda s: s["traceId"] == trace_id and s["kind"] == 2)[0]


def test_span_with_incoming_parent(backend, sluice, receiver):
    backend.on("/api/x", Response(body=b"ok"))
    start(sluice, backend, receiver.endpoint, resource_attributes={"deployment.environment": "t"},
          service_name="edge")
    r = http_request(sluice.port(), "GET", "/api/x?q=1", host="api.test",
                     headers=[("traceparent", f"00-{TRACE}-{PARENT}-01"),
                              ("User-Agent", "trace-agent/1")])
    assert r.status == 200
    sent = upstream_tp(backend, "/api/x")
    assert sent.group(1) == TRACE and sent.group(3) == "01"
    srv = server_span(receiver, TRACE)
    assert srv["parentSpanId"] == PARENT
    assert srv["spanId"] not in (PARENT, sent.group(2))
    assert srv["name"] == "GET /api/"
    assert srv["_resource"]["service.name"] == {"stringValue": "edge"}
    assert srv["_resource"]["deployment.environment"] == {"stringValue": "t"}
    assert srv["_scope"]["name"] == "sluice"
    assert int(srv["endTimeUnixNano"]) >= int(srv["startTimeUnixNano"]) > 1_600_000_000 * 10**9
    a = attrs(srv)
    assert a["http.request.method"] == "GET"
    assert a["http.route"] == "/api/"
    assert a["http.response.status_code"] == 200
    assert a["client.address"] == "127.0.0.1"
    assert a["url.path"] == "/api/x"
    assert a["url.scheme"] == "http"
    assert a["server.address"] == "api.test"
    assert a["user_agent.original"] == "trace-agent/1"
    assert a["sluice.route"] == "api-route"
    assert a["sluice.pool"] == "api-pool"
    assert a["sluice.backend"] == backend.address
    assert "sluice.split" not in a
    assert srv.get("status", {}).get("code", 0) != 2
    # The client span: the id the backend saw in traceparent, child of the server span.
    cli = receiver.wait_spans(lambda s: s["traceId"] == TRACE and s["kind"] == 3)[0]
    assert cli["spanId"] == sent.group(2)
    assert cli["parentSpanId"] == srv["spanId"]
    assert int(srv["startTimeUnixNano"]) <= int(cli["startTimeUnixNano"])
    assert int(cli["endTimeUnixNano"]) <= int(srv["endTimeUnixNano"])
    ca = attrs(cli)
    host, port = backend.address.rsplit(":", 1)
    assert ca["server.address"] == host and ca["server.port"] == int(port)
    assert ca["http.response.status_code"] == 200
    # The access log carries the trace id.
    e = sluice.wait_access(lambda e: e.get("path") == "/api/x?q=1")
    assert e["trace_id"] == TRACE
    posts = receiver.posts
    assert posts[0][0] == "/v1/traces" and posts[0][1] == "application/json"


def test_new_trace_without_parent(backend, sluice, receiver):
    start(sluice, backend, receiver.endpoint)
    assert http_request(sluice.port(), "GET", "/api/new").status == 200
    sent = upstream_tp(backend, "/api/new")
    assert sent.group(3) == "01"
    srv = server_span(receiver, sent.group(1))
    assert "parentSpanId" not in srv or not srv["parentSpanId"]
    cli = receiver.wait_spans(lambda s: s["spanId"] == sent.group(2))[0]
    assert cli["parentSpanId"] == srv["spanId"]
    assert sluice.wait_access(lambda e: e.get("path") == "/api/new")["trace_id"] == sent.group(1)


def test_not_sampled_parent_and_ratio_zero(backend, sluice, receiver):
    start(sluice, backend, receiver.endpoint, sample_ratio=0)
    other = "1" * 32
    http_request(sluice.port(), "GET", "/api/unsampled",
                 headers=[("traceparent", f"00-{TRACE}-{PARENT}-00")])
    http_request(sluice.port(), "GET", "/api/noparent")
    # A sampled parent is traced whatever the ratio: once its span is in, the others (sent
    # earlier on the same worker) would have been too.
    http_request(sluice.port(), "GET", "/api/sampled",
                 headers=[("traceparent", f"00-{other}-{PARENT}-01")])
    server_span(receiver, other)
    assert upstream_tp(backend, "/api/unsampled").group(3) == "00"
    noparent = upstream_tp(backend, "/api/noparent")
    assert noparent.group(3) == "00"
    traced = {s["traceId"] for s in receiver.spans()}
    assert traced == {other}


def test_error_status_and_local_answer(make_backend, sluice, receiver):
    backend = make_backend("b1")
    backend.on("/api/fail", Response(status=503, body=b"down"))
    start(sluice, backend, receiver.endpoint,
          routes=[{"name": "api-route", "path": "/api/", "pool": "api-pool"},
                  {"name": "fixed", "path": "/fixed", "return": {"status": 204}}])
    assert http_request(sluice.port(), "GET", "/api/fail").status == 503
    assert http_request(sluice.port(), "GET", "/fixed").status == 204
    fail_trace = upstream_tp(backend, "/api/fail").group(1)
    srv = server_span(receiver, fail_trace)
    assert srv["status"]["code"] == 2
    assert attrs(srv)["http.response.status_code"] == 503
    fixed = receiver.wait_spans(lambda s: attrs(s).get("sluice.route") == "fixed")[0]
    assert fixed["name"] == "GET /fixed"
    assert "sluice.pool" not in attrs(fixed)
    # No upstream: no client span in that trace.
    assert [s["kind"] for s in receiver.spans() if s["traceId"] == fixed["traceId"]] == [2]


def test_split_route_attribute(make_backend, sluice, receiver):
    a, b = make_backend("a"), make_backend("b")
    start(sluice, a, receiver.endpoint,
          routes=[{"name": "canary-route", "path": "/api/",
                   "split": [{"pool": "stable", "weight": 1}, {"pool": "canary", "weight": 1}]}],
          pools={"stable": {"backends": [a.address]}, "canary": {"backends": [b.address]}})
    assert http_request(sluice.port(), "GET", "/api/s").status == 200
    span = receiver.wait_spans(lambda s: s["kind"] == 2)[0]
    assert attrs(span)["sluice.split"] == "canary-route"
    assert attrs(span)["sluice.pool"] in ("stable", "canary")


def test_dead_collector_costs_no_request(backend, sluice):
    port = free_port()  # nothing listens: connections are refused
    start(sluice, backend, f"http://127.0.0.1:{port}/v1/traces", export_timeout="200ms")
    for i in range(20):
        assert http_request(sluice.port(), "GET", f"/api/{i}").status == 200
    wait_until(lambda: sluice.metrics().value("sluice_tracing_dropped_total",
                                              reason="export_failed") >= 1, 15)
    m = sluice.metrics()
    assert m.value("sluice_tracing_export_errors_total") >= 1
    assert m.value("sluice_tracing_spans_exported_total") == 0


def test_collector_500_is_retried_then_dropped(backend, sluice):
    with OtlpReceiver(status=500) as failing:
        start(sluice, backend, failing.endpoint)
        for i in range(5):
            assert http_request(sluice.port(), "GET", f"/api/{i}").status == 200
        # One batch: the first POST and the retries, then it is dropped and counted.
        wait_until(lambda: sluice.metrics().value("sluice_tracing_dropped_total",
                                                  reason="export_failed") >= 1, 15)
        assert failing.attempts >= 2
        m = sluice.metrics()
        assert m.value("sluice_tracing_export_errors_total") >= 2
        # The collector recovers: the next spans arrive.
        failing.status = 200
        http_request(sluice.port(), "GET", "/api/after")
        trace = upstream_tp(backend, "/api/after").group(1)
        server_span(failing, trace)
        wait_until(lambda: sluice.metrics().value("sluice_tracing_spans_exported_total") >= 2)


def test_queue_overflow_counts_drops(backend, sluice):
    # The collector does not answer within the timeout and the POST is retried: meanwhile the
    # worker's 16-span queue fills and the rest is dropped at once.
    with OtlpReceiver(status=503) as failing:
        start(sluice, backend, failing.endpoint, queue_size=16, batch_size=1,
              export_interval="10s")
        for i in range(60):
            assert http_request(sluice.port(), "GET", f"/api/{i}").status == 200
        wait_until(lambda: sluice.metrics().value("sluice_tracing_dropped_total",
                                                  reason="queue_full") >= 1, 10)


def test_reload_changes_endpoint(backend, sluice, receiver):
    cfg = start(sluice, backend, receiver.endpoint)
    http_request(sluice.port(), "GET", "/api/before")
    server_span(receiver, upstream_tp(backend, "/api/before").group(1))
    with OtlpReceiver() as second:
        new = cfg.replace(receiver.endpoint, second.endpoint)
        assert sluice.reload(new) == "ok"
        http_request(sluice.port(), "GET", "/api/after")
        trace = upstream_tp(backend, "/api/after").group(1)
        server_span(second, trace)
        assert not [s for s in receiver.spans() if s["traceId"] == trace]


def test_tracing_added_by_reload(backend, sluice, receiver):
    cfg = sluice.config(routes=[{"name": "api-route", "path": "/api/", "pool": "api-pool"}],
                        pools={"api-pool": {"backends": [backend.address]}})
    sluice.start(cfg)
    assert not sluice.metrics().has("sluice_tracing_spans_exported_total")
    assert sluice.reload(cfg + tracing_table(receiver.endpoint)) == "ok"
    http_request(sluice.port(), "GET", "/api/later")
    server_span(receiver, upstream_tp(backend, "/api/later").group(1))


def test_shutdown_flushes_queued_spans(backend, sluice, receiver):
    # Neither the interval nor the batch size is reached: only the shutdown sends them.
    start(sluice, backend, receiver.endpoint, export_interval="1h", batch_size=1000)
    for i in range(5):
        assert http_request(sluice.port(), "GET", f"/api/q{i}").status == 200
    assert receiver.spans() == []
    assert sluice.stop() == 0
    traces = {upstream_tp(backend, f"/api/q{i}").group(1) for i in range(5)}
    got = {s["traceId"] for s in receiver.spans() if s["kind"] == 2}
    assert traces <= got


def test_trace_id_logged_without_tracing(backend, sluice):
    cfg = sluice.config(routes=[{"name": "r", "path": "/", "pool": "p"}],
                        pools={"p": {"backends": [backend.address]}})
    sluice.start(cfg)
    http_request(sluice.port(), "GET", "/plain", headers=[("X-Request-Id", "plain-1")])
    e = sluice.wait_access(lambda e: e.get("request_id") == "plain-1")
    assert e["trace_id"] == upstream_tp(backend, "/plain").group(1)
