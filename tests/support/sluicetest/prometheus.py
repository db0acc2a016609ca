"""A throw-away Prometheus (Debian's `prometheus`, installed by scripts/setup.sh --prometheus)
for the observability tests: an unprivileged process on a free port of 127.0.0.1 with its own
temp storage, scraping the given targets every second and evaluating rule files every second;
plus promtool and the PromQL expressions of the Grafana dashboard.

    prom = PrometheusServer({"sluice": [f"127.0.0.1:{s.admin_port}"]},
                            rule_files=["docker/prometheus/alerts.yml"]).start()
    prom.wait_target_up("sluice")
    prom.query('sum(rate(sluice_requests_total[10s]))')   # the "result" list of the answer
    prom.stop()
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

from .util import free_port

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def prometheus_installed():
    return os.access(PROMETHEUS, os.X_OK) and os.access(PROMTOOL, os.X_OK)


def promtool(*args, stdin=None, cwd=None, timeout=60):
    """Run promtool; returns the CompletedProcess (text)."""
    return subprocess.run([PROMTOOL, *args], input=stdin, capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


class PromQLError(AssertionError):
    pass


class PrometheusServer:
    def __init__(self, jobs, rule_files=(), interval="1s"):
        """jobs: {job name: [host:port, ...]} scraped at /metrics every `interval`;
        rule_files: paths of rule files, evaluated every `interval`."""
        self.jobs = jobs
        self.rule_files = [os.path.abspath(p) for p in rule_files]
        self.interval = interval
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="sluice-prometheus-")
        self.proc = None
        self._log = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def config(self):
        lines = ["global:", f"  scrape_interval: {self.interval}",
                 f"  evaluation_interval: {self.interval}", f"  scrape_timeout: {self.interval}"]
        if self.rule_files:
            lines.append("rule_files:")
            lines += [f"  - {json.dumps(p)}" for p in self.rule_files]
        lines.append("scrape_configs:")
        for job, targets in self.jobs.items():
            lines += [f"  - job_name: {json.dumps(job)}", "    static_configs:",
                      f"      - targets: {json.dumps(list(targets))}"]
        return "\n".join(lines) + "\n"

    def start(self, timeout=30.0):
        cfg = os.path.join(self.dir, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write(self.config())
        self._log = open(os.path.join(self.dir, "prometheus.log"), "wb")
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={cfg}", f"--storage.tsdb.path={self.dir}/data",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self._log, stderr=self._log, stdin=subprocess.DEVNULL, cwd=self.dir)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited with {self.proc.returncode}\n"
                                     + self.log())
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return self
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError("prometheus not ready\n" + self.log())
            time.sleep(0.05)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._log:
            self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self):
        try:
            with open(os.path.join(self.dir, "prometheus.log"), "rb") as f:
                return f.read().decode("utf-8", "replace")[-4000:]
        except OSError:
            return ""

    # ---- HTTP API ------------------------------------------------------------------------
    def api(self, path, **params):
        """GET /api/v1/PATH?params -> the "data" of a success answer; PromQLError (with
        Prometheus' errorType and error) otherwise."""
        qs = urllib.parse.urlencode(params, doseq=True)
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{qs}", timeout=10) as r:
                body = json.load(r)
        except urllib.error.HTTPError as e:
            body = json.load(e)
        if body.get("status") != "success":
            raise PromQLError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr):
        """Instant query now: the list of results (vector samples, or [scalar])."""
        data = self.api("query", query=expr)
        return data["result"] if data["resultType"] in ("vector", "matrix") else [data["result"]]

    def series(self, match):
        return self.api("series", **{"match[]": match})

    def targets(self):
        return self.api("targets")["activeTargets"]

    def rules(self):
        return [r for g in self.api("rules")["groups"] for r in g["rules"]]

    def wait_target_up(self, job, timeout=30.0):
        deadline = time.monotonic() + timeout
        while True:
            ups = [t for t in self.targets() if t["labels"].get("job") == job
                   and t["health"] == "up"]
            if ups:
                return ups
            if time.monotonic() > deadline:
                raise AssertionError(f"no target of job {job} is up: {self.targets()}")
            time.sleep(0.1)


# ---- Grafana dashboards ---------------------------------------------------------------------

def dashboard_queries(dashboard):
    """Every PromQL expression of a Grafana dashboard (parsed JSON): [(where, expr)] for the
    panel targets (rows' collapsed panels included) and the annotation queries, and
    [(name, query)] for the template variables' label_values() queries."""
    exprs, variables = [], []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    exprs.append((f"panel {p.get('title')!r} {t.get('refId')}", t["expr"]))
            walk(p.get("panels", []))

    walk(dashboard.get("panels", []))
    for a in dashboard.get("annotations", {}).get("list", []):
        if a.get("expr"):
            exprs.append((f"annotation {a.get('name')!r}", a["expr"]))
    for v in dashboard.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            variables.append((v["name"], q))
    return exprs, variables


_LABEL_VALUES = re.compile(r"^label_values\((.+),\s*([A-Za-z_][A-Za-z0-9_]*)\)$", re.S)


def label_values_query(query):
    """label_values(SELECTOR, LABEL) -> (SELECTOR, LABEL); AssertionError for other forms."""
    m = _LABEL_VALUES.match(query.strip())
    if not m:
        raise AssertionError(f"not a label_values(selector, label) query: {query!r}")
    return m.group(1).strip(), m.group(2)


def substitute(expr, variables, rate_interval):
    """What Grafana sends for `expr`: $__rate_interval / $__interval / $__range replaced by
    `rate_interval`, and each $name / ${name} of `variables` by its value."""
    for name in ("__rate_interval", "__interval", "__range"):
        expr = expr.replace("${" + name + "}", rate_interval).replace("$" + name, rate_interval)
    for name, value in variables.items():
        expr = expr.replace("${" + name + "}", value)
        expr = re.sub(r"\$" + re.escape(name) + r"\b", lambda _: value, expr)
    return expr
