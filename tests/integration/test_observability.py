"""The operators' view, proven against the real thing: a real Prometheus (Debian's
`prometheus`) scrapes a real Sluice under a little load, and every PromQL expression of the
Grafana dashboard (docker/grafana/sluice-dashboard.json: panels, annotations, template
variables) and of the alert rules (docker/prometheus/alerts.yml) must parse and return data
through Prometheus' HTTP API; Prometheus loads the rules and every alert goes pending or
firing. `promtool check metrics` passes on Sluice's /metrics, `promtool check rules` and the
rules' unit tests (docker/prometheus/alerts_test.yml, `promtool test rules`) pass.

The Sluice under test is configured so that every panel and every alert has something to show:
a split route whose failing canary is rolled back, a promotion, a rate-limited route on a real
redis-server that is then killed (failure_mode = "closed": store errors), a TLS listener with a
good and a failed handshake, a pool whose only backend is dead, a backend killed under load, a
slow route (p95 over the 200 ms objective), a good reload and then a failed one.

Skipped only when prometheus/promtool are not installed (scripts/setup.sh --prometheus).
"""

import json
import os
import threading

import pytest

from sluicetest import RawClient, RedisServer, Response, free_port, wait_until
from sluicetest.process import REPO
from sluicetest.prometheus import (PrometheusServer, PromQLError, dashboard_queries,
                                   label_values_query, prometheus_installed, promtool,
                                   substitute)
from sluicetest.tls import TestCA, TlsRawClient, s_client

DASHBOARD = os.path.join(REPO, "docker", "grafana", "sluice-dashboard.json")
ALERTS = os.path.join(REPO, "docker", "prometheus", "alerts.yml")
ALERTS_TEST = os.path.join(REPO, "docker", "prometheus", "alerts_test.yml")
# What the test gives Grafana's built-in intervals: enough 1 s scrapes for rate(), short
# enough that what the test just did is in the window.
RATE_INTERVAL = "15s"

pytestmark = pytest.mark.skipif(not prometheus_installed(),
                                reason="prometheus is not installed "
                                       "(scripts/setup.sh --prometheus installs it)")


def test_alert_rules_check_and_unit_tests():
    r = promtool("check", "rules", ALERTS)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout
    # Every alert of the file has at least one unit test that expects it to fire.
    with open(ALERTS) as f:
        alerts = {line.split(":", 1)[1].strip() for line in f
                  if line.strip().startswith("- alert:")}
    with open(ALERTS_TEST) as f:
        tested = f.read()
    assert alerts and all(f"alertname: {a}" in tested for a in alerts), alerts
    r = promtool("test", "rules", os.path.basename(ALERTS_TEST), cwd=os.path.dirname(ALERTS_TEST))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_dashboard_is_importable_grafana_json():
    with open(DASHBOARD) as f:
        d = json.load(f)
    assert [i["name"] for i in d["__inputs"]] == ["DS_PROMETHEUS"]
    assert d["__inputs"][0]["pluginId"] == "prometheus"
    assert d["uid"] and d["title"] and d["id"] is None
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    exprs, variables = dashboard_queries(d)
    assert len(exprs) > 30 and {n for n, _ in variables} == {"instance", "route", "pool"}
    # Every query runs on the chosen data source, nothing on a hard-wired one.
    for p in d["panels"]:
        if p["type"] != "row":
            assert p["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, p["title"]
            for t in p["targets"]:
                assert t["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]
    # The panels the operators asked for are there.
    titles = " | ".join(p["title"] for p in d["panels"]).lower()
    for word in ("requests/s", "status class", "p50 / p95 / p99", "backend state", "split weights",
                 "rollbacks", "rate-limit", "open connections", "tls handshakes", "reloads",
                 "backend time to first byte"):
        assert word in titles, word


# ---- the real thing --------------------------------------------------------------------------

class Load:
    """Background clients, each a loop of requests until stop()."""

    def __init__(self):
        self.stopped = threading.Event()
        self.threads = []
        self.errors = []

    def loop(self, fn):
        def run():
            while not self.stopped.is_set():
                try:
                    fn()
                except Exception as e:  # a killed backend or a closed connection: go on
                    self.errors.append(repr(e))
                    self.stopped.wait(0.05)

        t = threading.Thread(target=run, daemon=True)
        t.start()
        self.threads.append(t)

    def stop(self):
        self.stopped.set()
        for t in self.threads:
            t.join(10)


def keepalive(port, paths, pause=0.01, headers=None):
    """One keep-alive connection asking `paths` in turn (a new one when it closes)."""
    state = {"c": None, "i": 0}

    def step():
        if state["c"] is None:
            state["c"] = RawClient(port)
        path = paths[state["i"] % len(paths)]
        state["i"] += 1
        try:
            r = state["c"].request("GET", path, headers=headers or [])
            if r.connection_close:
                raise ConnectionError("closed")
        except Exception:
            state["c"].close()
            state["c"] = None
            raise
        stopped_wait(pause)

    return step


def stopped_wait(seconds):
    threading.Event().wait(seconds)


def tls_request(port):
    """A new TLS connection (a full handshake) for one request."""
    with TlsRawClient(port, servername="a.test") as c:
        c.request("GET", "/api/tls")
    stopped_wait(0.2)


def release_of(s, route):
    st = json.loads(s.admin_get("/admin/status")[2])
    return [r for r in st["routes"] if r["name"] == route][0]


def backend_state(s, pool, address):
    st = json.loads(s.admin_get("/admin/status")[2])
    return [b for b in st["pools"][pool]["backends"] if b["address"] == address][0]["state"]


@pytest.fixture
def redis():
    r = RedisServer().start()
    yield r
    r.stop()


def config(s, *, bes, dead, redis, web, secure, certs, good=True):
    pools = {
        "app": {"backends": [bes["app1"].address, bes["app2"].address],
                "health": {"path": "/health", "interval": "100ms", "timeout": "90ms",
                           "unhealthy_threshold": 1, "healthy_threshold": 1}},
        "slow": {"backends": [bes["slow"].address]},
        "canary": {"backends": [bes["canary"].address]},
        "gone": {"backends": [dead], "health": {"path": "/health", "interval": "100ms",
                                                "timeout": "90ms", "unhealthy_threshold": 1}},
    }
    routes = [
        {"name": "api", "path": "/api/", "pool": "app"},
        {"name": "slow", "path": "/slow", "pool": "slow"},
        {"name": "gone", "path": "/gone", "pool": "gone"},
        {"name": "limited", "path": "/limited", "pool": "app", "middleware": ["per-client"]},
        {"name": "shop", "path": "/", "split": [{"pool": "app", "weight": 75},
                                                 {"pool": "canary", "weight": 25}],
         "rollback": {"max_error_rate": 0.2, "min_requests": 20, "window": "30s"},
         "promote": {"steps": [25, 50, 100], "interval": "1h"}},
    ]
    extra = (f'[redis]\nurl = "{redis.url}"\ntimeout = "200ms"\nfailure_mode = "closed"\n\n'
             '[middleware.per-client]\ntype = "rate_limit"\nrate = "5/s"\nkey = "ip"\n'
             'store = "redis"\n')
    if not good:
        extra += "[middleware.broken]\ntype = \"rate_limit\"\n"  # no rate: a config error
    listeners = [{"name": "web", "listen": f"127.0.0.1:{web}"},
                 {"name": "secure", "listen": f"127.0.0.1:{secure}",
                  "tls": {"certificates": [{"cert": certs[0], "key": certs[1]}]}}]
    return s.config(routes=routes, pools=pools, listeners=listeners, extra=extra)


def test_dashboard_and_alerts_against_real_prometheus(make_backend, make_sluice, redis,
                                                      tmp_path):
    bes = {n: make_backend(n) for n in ("app1", "app2", "slow", "canary")}
    bes["slow"].set_default(Response(delay=0.3))
    bes["canary"].set_default(Response(status=500))
    bes["app1"].on("/api/reset", Response(action="reset"))  # upstream errors, 502
    dead = f"127.0.0.1:{free_port()}"
    ca = TestCA(tmp_path / "pki")
    certs = ca.issue("a", ["a.test"])
    s = make_sluice()
    web, secure = free_port(), free_port()
    cfg = config(s, bes=bes, dead=dead, redis=redis, web=web, secure=secure, certs=certs)
    s.start(cfg)
    wait_until(lambda: s.metrics().value("sluice_redis_up") == 1, timeout=10,
               message="sluice_redis_up == 1")

    # A second target of the job that answers nothing: SluiceDown has something to fire on.
    prom = PrometheusServer({"sluice": [f"127.0.0.1:{s.admin_port}", f"127.0.0.1:{free_port()}"]},
                            rule_files=[ALERTS]).start()
    load = Load()
    try:
        prom.wait_target_up("sluice")
        # The counters the alerts watch must move while Prometheus is looking.
        wait_until(lambda: prom.query('count_over_time(sluice_config_generation[1m]) >= 3'),
                   timeout=20, message="three scrapes of sluice")

        load.loop(keepalive(web, ["/api/a", "/gone", "/api/b", "/", "/api/reset"]))
        load.loop(keepalive(web, ["/slow"], pause=0))
        load.loop(keepalive(web, ["/limited"], pause=0.05))
        load.loop(lambda: tls_request(secure))

        # The canary answers 500: rolled back after 20 of its requests.
        wait_until(lambda: release_of(s, "shop")["release"]["state"] == "rolled_back",
                   timeout=20, message="the canary rolled back")
        # A backend dies under load: health checks take it out.
        bes["app2"].stop()
        wait_until(lambda: backend_state(s, "app", bes["app2"].address) == "down", timeout=10,
                   message="app2 down")
        # A good reload, then a bad one (the running configuration stays).
        assert s.reload(cfg) == "ok"
        bad = config(s, bes=bes, dead=dead, redis=redis, web=web, secure=secure, certs=certs,
                     good=False)
        assert s.reload(bad) == "error"
        # A TLS handshake that fails (TLS 1.1 is refused).
        r = s_client(secure, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0", servername="a.test")
        assert not r.handshake_ok
        # Redis goes away: with failure_mode = "closed" the limited route answers 503.
        redis.kill()
        wait_until(lambda: s.metrics().value("sluice_ratelimit_total", result="store_error") > 0,
                   timeout=10, message="store_error decisions")

        with open(DASHBOARD) as f:
            exprs, variables = dashboard_queries(json.load(f))
        values = {"instance": ".*", "route": ".*", "pool": ".*"}
        # The alert expressions as Prometheus parsed them from the rule file.
        alert_exprs = [(r["name"], r["query"]) for r in prom.rules() if r["type"] == "alerting"]
        with open(ALERTS) as f:
            assert len(alert_exprs) == f.read().count("- alert:") == 10

        def missing():
            """The expressions that do not return data yet, with why."""
            out = []
            for where, expr in exprs:
                q = substitute(expr, values, RATE_INTERVAL)
                try:
                    if not prom.query(q):
                        out.append(f"{where}: no data for {q}")
                except PromQLError as e:
                    out.append(f"{where}: {e}")
            for name, query in variables:
                selector, label = label_values_query(substitute(query, values, RATE_INTERVAL))
                if not [x for x in prom.series(selector) if x.get(label)]:
                    out.append(f"variable {name}: no {label} values for {selector}")
            for name, expr in alert_exprs:
                try:
                    if not prom.query(expr):
                        out.append(f"alert {name}: no data for {expr}")
                except PromQLError as e:
                    out.append(f"alert {name}: {e}")
            return out

        try:
            wait_until(lambda: not missing(), timeout=60, interval=0.5,
                       message="every dashboard and alert expression to return data")
        except AssertionError:
            raise AssertionError("\n".join(missing()) + "\n" + s.stderr()[-3000:])

        # Prometheus loaded the rule file and each alert is pending or firing.
        def alert_states():
            return {r["name"]: (r["health"], r["state"]) for r in prom.rules()
                    if r["type"] == "alerting"}

        wait_until(lambda: all(h == "ok" and st in ("pending", "firing")
                               for h, st in alert_states().values()),
                   timeout=30, message="every alert pending or firing")
        assert set(alert_states()) == {n for n, _ in alert_exprs}

        # The new histogram tells backend time from the whole answer: the slow backend's
        # 300 ms show in both, the proxy's own 502s of "gone" only in the request duration.
        slow = prom.query('histogram_quantile(0.5, sum by (le) (rate('
                          'sluice_upstream_duration_seconds_bucket{pool="slow"}[15s])))')
        assert 0.25 <= float(slow[0]["value"][1]) <= 0.5, slow
        assert not prom.query('sluice_upstream_duration_seconds_count{pool="gone"} > 0')

        # Sluice's /metrics passes promtool's lint, with every family present.
        st, _, text = s.admin_get("/metrics")
        assert st == 200
        r = promtool("check", "metrics", stdin=text.decode())
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        load.stop()
        prom.stop()
