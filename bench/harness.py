#!/usr/bin/env python3
"""Sluice vs nginx vs HAProxy benchmark harness (issue 6). Started by bench/run.sh.

Layout of a run:
  * an origin (nginx, 1 worker, CPU 1) answering /small with `return 200` and serving static
    4k/64k/1m files, keep-alive;
  * nginx, HAProxy and Sluice as reverse proxies to it, side by side, one worker each, upstream
    keep-alive, access logs off, pinned to CPU 0; wrk pinned to CPU 1;
  * interleaved rounds: for each round, for each workload, each proxy in turn;
  * per run: requests/s, p50/p99 latency (wrk), the proxy's CPU time per request
    (CPU time of its whole process tree over the wrk window / requests completed: schedstat ns,
    with the user/system split from utime/stime);
  * idle memory: RSS with N idle keep-alive connections minus RSS with none, per connection;
  * scaling: the small-GET workload again with 2 workers, proxies pinned to CPUs 0,1;
  * optionally (--sluice-baseline BIN, SLUICE_BASELINE in run.sh) a second Sluice binary as a
    fourth proxy, `sluice-base`, configured exactly like `sluice` and interleaved with it in
    every round, workload and idle-memory run, for a before/after comparison in one run.

Adding a workload = adding a Workload entry below. A proxy that cannot run it yet is listed in
`skip` with the reason (shown in RESULTS.md); FORCE=name[,name] runs it anyway.
"""
import argparse
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PROXY_CPU = "0"
CLIENT_CPU = "1"
SCALE_CPU = "0,1"
PROXIES = ["nginx", "haproxy", "sluice"]
BASELINE = "sluice-base"  # a second Sluice binary (--sluice-baseline); appended to PROXIES by main
SMALL_BODY = "hello from the origin\n"  # /small, 22 bytes
# The origin serves /64k and /1m with sendfile (ORIGIN_SENDFILE=off: plain writes, which
# arrive at the proxies in smaller pieces and cost every proxy more per body).
ORIGIN_SENDFILE = "off" if os.environ.get("ORIGIN_SENDFILE", "on") == "off" else "on"
FILES = {"4k": 4096, "64k": 65536, "1m": 1 << 20}


def kind(proxy):
    """The product a proxy name runs: sluice-base is Sluice (same config, same workloads)."""
    return "sluice" if proxy == BASELINE else proxy


@dataclass
class Workload:
    name: str
    title: str
    path: str
    close: bool = False            # Connection: close on every request (a new connection each)
    tls: bool = False              # client -> proxy over TLS (ECDSA P-256, tickets off)
    # proxies and skip are by kind(): an entry for "sluice" also covers sluice-base
    proxies: list = field(default_factory=lambda: list(PROXIES))
    skip: dict = field(default_factory=dict)  # proxy -> reason it does not run yet
    compare_to: str = ""           # for a Sluice-only workload: the workload it is compared with
    needs_redis: bool = False
    headers: list = field(default_factory=list)  # extra request headers ("Name: value")


WORKLOADS = [
    Workload("small", "small GET, keep-alive", "/small"),
    Workload("64k", "64 KiB body, keep-alive", "/64k"),
    Workload("1m", "1 MiB body, keep-alive", "/1m"),
    Workload("newconn", "small GET, new connection per request", "/small", close=True),
    Workload("tls-keepalive", "small GET over TLS, keep-alive", "/small", tls=True),
    Workload("tls-handshake", "small GET, new TLS handshake per request", "/small", tls=True,
             close=True),
    Workload("ratelimit", "small GET through a Redis rate-limited route", "/limited",
             proxies=["sluice"], compare_to="small", needs_redis=True),
    Workload("split", "small GET through a sticky 10/90 split route with automatic rollback "
             "(the key lands on the canary: every outcome is judged)", "/split",
             proxies=["sluice"], compare_to="small", headers=["X-User: bench-user-42"]),
    Workload("cors", "small GET from an allowed origin through cors + headers (security preset, "
             "a templated response header) middleware", "/cors", proxies=["sluice"],
             compare_to="small", headers=["Origin: https://app.example.com"]),
    Workload("static-4k", "4 KiB file from disk, keep-alive (nginx: sendfile on; Sluice: a "
             "static route; HAProxy serves no files)", "/static/4k", proxies=["nginx", "sluice"]),
    Workload("static-1m", "1 MiB file from disk, keep-alive (nginx: sendfile on; Sluice: a "
             "static route, sendfile)", "/static/1m", proxies=["nginx", "sluice"]),
    Workload("regex", "small GET on a prefix route of a host that also has 50 path_regex routes "
             "(none matches: every request tries all 50, then takes the prefix)", "/small",
             proxies=["sluice"], compare_to="small", headers=["Host: regex.bench"]),
    Workload("tracing", "small GET with a sampled incoming traceparent: every request records "
             "a server and a client span, exported as OTLP JSON to the origin in batches "
             "(Sluice runs [tracing] with sample_ratio 0, so `small`, without the header, "
             "records nothing)", "/small", proxies=["sluice"], compare_to="small",
             headers=["traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"]),
]

# ----------------------------------------------------------------------------------------------
# processes


class Procs:
    """Every process the harness starts, in its own session, killed on exit."""

    def __init__(self):
        self.items = []

    def start(self, name, argv, log, cpu):
        f = open(log, "ab")
        p = subprocess.Popen(["taskset", "-c", cpu] + argv, stdout=f, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        f.close()
        self.items.append((name, p))
        return p

    def stop(self, p, timeout=5.0):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        # children (nginx workers) that outlived their leader
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.wait(1)
        except subprocess.TimeoutExpired:
            pass
        self.items = [(n, q) for n, q in self.items if q is not p]

    def stop_all(self):
        for _, p in list(reversed(self.items)):
            self.stop(p, timeout=3.0)


PROCS = Procs()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=15.0):
    """Polls until 127.0.0.1:port accepts a connection; fails if proc died."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def proc_tree(pid):
    """pid and all its descendants."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        ppid = int(st[st.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_split(pids):
    """(user, system) CPU seconds of the processes."""
    user = system = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(")") + 2:].split()
        user += int(fields[11])  # utime (field 14)
        system += int(fields[12])  # stime (field 15)
    return user / CLK_TCK, system / CLK_TCK


def cpu_seconds(pids):
    return sum(cpu_split(pids))


def cpu_ns(pids):
    """Nanoseconds on a CPU of every thread of the processes (/proc/PID/task/TID/schedstat);
    None where schedstat is missing. /proc/PID/stat counts the same time in clock ticks
    (10 ms), which limits a 1-s run to about 1 %."""
    total = 0
    for p in pids:
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tids:
            try:
                with open(f"/proc/{p}/task/{t}/schedstat") as f:
                    total += int(f.read().split()[0])
            except FileNotFoundError:
                continue  # the thread ended
            except (OSError, ValueError, IndexError):
                return None
    return total


def rss_kib(pids):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


# ----------------------------------------------------------------------------------------------
# configuration


def nginx_common(tmp, tag, nofile):
    t = os.path.join(tmp, tag)
    os.makedirs(t, exist_ok=True)
    return f"""daemon off;
pid {t}/nginx.pid;
error_log {t}/error.log warn;
worker_rlimit_nofile {nofile};
"""


def nginx_temp_paths(tmp, tag):
    t = os.path.join(tmp, tag)
    return "\n".join(f"  {k}_temp_path {t}/{k};" for k in
                     ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))


def origin_conf(tmp, port, nofile):
    return nginx_common(tmp, "origin", nofile) + f"""worker_processes 1;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  default_type application/octet-stream;
  sendfile {ORIGIN_SENDFILE};
  tcp_nopush on;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
{nginx_temp_paths(tmp, "origin")}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    root {tmp}/www;
    location = /small {{ default_type text/plain; return 200 "{SMALL_BODY.strip()}\\n"; }}
    location = /limited {{ default_type text/plain; return 200 "{SMALL_BODY.strip()}\\n"; }}
    location = /split {{ default_type text/plain; return 200 "{SMALL_BODY.strip()}\\n"; }}
    location = /cors {{ default_type text/plain; return 200 "{SMALL_BODY.strip()}\\n"; }}
    location = /v1/traces {{ default_type application/json; return 200 "{{}}"; }}
    location / {{ }}
  }}
}}
"""


def nginx_conf(tmp, port, tls_port, origin, workers, nofile, cert, key):
    tag = f"nginx-w{workers}"
    return nginx_common(tmp, tag, nofile) + f"""worker_processes {workers};
events {{ worker_connections {nofile - 64}; }}
http {{
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
{nginx_temp_paths(tmp, tag)}
  upstream origin {{
    server 127.0.0.1:{origin};
    keepalive 64;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
  }}
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    listen 127.0.0.1:{tls_port} ssl backlog=4096;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_tickets off;
    ssl_session_cache off;
    location / {{ proxy_pass http://origin; }}
    location /static/ {{ alias {tmp}/www/; sendfile on; tcp_nopush on; }}
  }}
}}
"""


def haproxy_conf(tmp, port, tls_port, origin, workers, nofile, pem, maxconn):
    return f"""global
  nbthread {workers}
  maxconn {maxconn}
  ulimit-n {nofile}
  # maxconn assumes 2 fds per connection; idle clients hold one (server connections are
  # shared with http-reuse), so do not refuse to start when 2 x maxconn > the fd limit.
  no strict-limits
  tune.ssl.cachesize 0
  ssl-default-bind-options ssl-min-ver TLSv1.2 no-tls-tickets

defaults
  mode http
  maxconn {maxconn}
  option http-keep-alive
  http-reuse always
  timeout connect 5s
  timeout client 300s
  timeout server 60s
  timeout http-request 60s
  timeout http-keep-alive 300s

frontend fe
  bind 127.0.0.1:{port} backlog 4096
  bind 127.0.0.1:{tls_port} ssl crt {pem} no-tls-tickets backlog 4096
  default_backend be

backend be
  server origin 127.0.0.1:{origin}
"""


_FEATURE_SUPPORT = {}

# A config snippet per feature that a Sluice binary from before it refuses (a baseline binary
# then sends that workload through the plain route, which the before/after table shows).
_PROBE_LISTENER = '[[listener]]\nname = "w"\nlisten = "127.0.0.1:1"\n'
_PROBE_POOLS = ('[pool.a]\nbackends = [{ address = "127.0.0.1:1" }]\n'
                '[pool.b]\nbackends = [{ address = "127.0.0.1:1" }]\n')
FEATURE_PROBES = {
    # route splits with automatic rollback
    "split": _PROBE_POOLS + '[[route]]\nname = "r"\npath = "/"\n'
             'split = [{ pool = "a", weight = 1 }, { pool = "b", weight = 1 }]\n'
             '[route.rollback]\nmax_error_rate = 0.05\n',
    # the cors and headers middleware
    "cors": '[middleware.c]\ntype = "cors"\nallow_origins = ["https://a.com"]\n'
            '[middleware.h]\ntype = "headers"\npreset = "security"\n',
    # path_regex routes
    "regex": _PROBE_POOLS + '[[route]]\nname = "r"\npath_regex = "^/x"\npool = "a"\n',
    # static file routes
    "static": '[[route]]\nname = "r"\npath = "/"\nstatic = { root = "/" }\n',
    # server.max_connections
    "max_connections": '[server]\nmax_connections = 100\n',
    # OpenTelemetry export
    "tracing": '[tracing]\notlp_endpoint = "http://127.0.0.1:1/v1/traces"\n',
}


def supports(binary, tmp, feature):
    """Whether this Sluice binary accepts FEATURE_PROBES[feature] (`sluice -t`, cached)."""
    key = (binary, feature)
    if key not in _FEATURE_SUPPORT:
        conf = os.path.join(tmp, f"{feature}-probe.toml")
        with open(conf, "w") as f:
            f.write(_PROBE_LISTENER + FEATURE_PROBES[feature])
        r = subprocess.run([binary, "-t", "-c", conf], capture_output=True, timeout=30)
        _FEATURE_SUPPORT[key] = r.returncode == 0
    return _FEATURE_SUPPORT[key]


def regex_routes(n=50):
    """The regex workload's host: n path_regex routes (with captures and rewrites, none
    matching /small) in front of a plain prefix route."""
    s = ""
    for i in range(n):
        s += f"""
[[route]]
name = "re{i}"
host = "regex.bench"
path_regex = '^/app{i}/(users|teams)/([0-9]+)(/.*)?$'
rewrite = "/v2/$1/$2$3"
pool = "origin"
"""
    s += """
[[route]]
name = "regex-prefix"
host = "regex.bench"
path = "/"
pool = "origin"
"""
    return s


def sluice_conf(port, tls_port, origin, workers, cert, key, tls, redis_port, split=True,
                cors=True, regex=True, static_root="", tracing=True, max_connections=0):
    # max_connections: as nginx's worker_connections (Sluice's default, "auto", allows half
    # the descriptors, one pair per proxied request, which refuses idle clients beyond it)
    s = f"""[server]
workers = {workers}
{f"max_connections = {max_connections}" if max_connections else ""}
client_idle_timeout = "300s"
client_header_timeout = "60s"
shutdown_timeout = "1s"

[log]
access = "off"
level = "warn"

[[listener]]
name = "web"
listen = "127.0.0.1:{port}"
"""
    if tls:
        s += f"""
[[listener]]
name = "web-tls"
listen = "127.0.0.1:{tls_port}"
[listener.tls]
certificates = [{{ cert = "{cert}", key = "{key}" }}]
session_tickets = false
"""
    if redis_port:
        s += f"""
[redis]
url = "redis://127.0.0.1:{redis_port}/0"

[middleware.limit]
type = "rate_limit"
key = "ip"
rate = "1000000/s"
burst = 1000000
store = "redis"
"""
    s += f"""
[pool.origin]
backends = [{{ address = "127.0.0.1:{origin}" }}]
idle_timeout = "300s"
response_timeout = "60s"
"""
    if redis_port:
        s += """
[[route]]
name = "limited"
path = "/limited"
middleware = ["limit"]
pool = "origin"
"""
    # Two pools on the same origin behind a sticky split (the "split" workload).
    if split:
        s += f"""
[pool.origin-canary]
backends = [{{ address = "127.0.0.1:{origin}" }}]
idle_timeout = "300s"
response_timeout = "60s"

[[route]]
name = "split"
path = "/split"
split = [{{ pool = "origin", weight = 10 }}, {{ pool = "origin-canary", weight = 90 }}]
sticky = "header:X-User"
[route.rollback]
max_error_rate = 0.05
max_p99_ratio = 3.0
min_requests = 1000000
"""
    # An API route with CORS and header policies (the "cors" workload).
    if cors:
        s += """
[middleware.cors]
type = "cors"
allow_origins = ["https://app.example.com", "https://*.example.com"]
allow_methods = ["GET", "POST", "PUT"]
allow_headers = ["Authorization", "Content-Type"]
expose_headers = ["X-Request-Id"]
allow_credentials = true
max_age = "10m"

[middleware.secure]
type = "headers"
preset = "security"
response_set = { "X-Served-By" = "sluice/{route}" }
response_remove = ["Server"]

[[route]]
name = "cors"
path = "/cors"
middleware = ["cors", "secure"]
pool = "origin"
"""
    # A host with 50 regex routes before its prefix route (the "regex" workload).
    if regex:
        s += regex_routes()
    # The origin's files, served by Sluice itself (the "static-*" workloads).
    if static_root:
        s += f"""
[[route]]
name = "static"
path = "/static/"
static = {{ alias = "{static_root}" }}
"""
    s += """
[[route]]
name = "all"
path = "/"
pool = "origin"
"""
    # Spans for requests with a sampled traceparent only (the "tracing" workload), sent to the
    # origin, which answers 200 "{}".
    if tracing:
        s += f"""
[tracing]
otlp_endpoint = "http://127.0.0.1:{origin}/v1/traces"
sample_ratio = 0.0
"""
    return s


# ----------------------------------------------------------------------------------------------
# the bench


class Bench:
    def __init__(self, a):
        self.a = a
        self.tmp = tempfile.mkdtemp(prefix="sluice-bench-")
        os.chmod(self.tmp, 0o755)  # nginx workers run as nobody and read www/
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        self.nofile = min(hard, 65536)
        self.failures = []
        self.notes = []
        self.running = {}  # (proxy, workers) -> dict(proc, pids, port, tls_port)
        self.redis_port = 0
        self.force = set(filter(None, os.environ.get("FORCE", "").split(",")))

    # -- setup ---------------------------------------------------------------------------------
    def prepare(self):
        www = os.path.join(self.tmp, "www")
        os.makedirs(www)
        for name, size in FILES.items():
            with open(os.path.join(www, name), "wb") as f:
                f.write(bytes((i * 7 + 13) % 251 for i in range(size)))
            os.chmod(os.path.join(www, name), 0o644)
        os.chmod(www, 0o755)
        self.cert = os.path.join(self.tmp, "cert.pem")
        self.key = os.path.join(self.tmp, "key.pem")
        self.pem = os.path.join(self.tmp, "combined.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", self.key, "-out",
                        self.cert, "-days", "2", "-subj", "/CN=localhost"],
                       check=True, capture_output=True)
        with open(self.pem, "w") as f:
            f.write(open(self.cert).read() + open(self.key).read())
        for p in (self.cert, self.key, self.pem):
            os.chmod(p, 0o644)
        with open(os.path.join(self.tmp, "report.lua"), "w") as f:
            f.write(WRK_LUA)

    def start_origin(self):
        self.origin_port = free_port()
        conf = os.path.join(self.tmp, "origin.conf")
        with open(conf, "w") as f:
            f.write(origin_conf(self.tmp, self.origin_port, self.nofile))
        p = PROCS.start("origin", ["nginx", "-p", self.tmp, "-e", "stderr", "-c", conf],
                        os.path.join(self.tmp, "origin.log"), CLIENT_CPU)
        wait_port(self.origin_port, p)
        self.check_http(self.origin_port, False, "origin")

    def start_redis(self):
        self.redis_port = free_port()
        p = PROCS.start("redis", ["redis-server", "--port", str(self.redis_port), "--bind",
                                  "127.0.0.1", "--save", "", "--appendonly", "no"],
                        os.path.join(self.tmp, "redis.log"), CLIENT_CPU)
        wait_port(self.redis_port, p)

    def sluice_features(self):
        """Workloads whose Sluice entry is not skipped decide what the Sluice config needs."""
        sluices = [p for p in self.proxies() if kind(p) == "sluice"]
        tls = any(w.tls and self.runs(w, p) for w in self.workloads() for p in sluices)
        redis = any(w.needs_redis and self.runs(w, p) for w in self.workloads() for p in sluices)
        return tls, redis

    def start_proxy(self, name, workers, sluice_tls=None):
        """sluice_tls: give Sluice its TLS listener (None: only if a TLS workload runs for it;
        nginx and HAProxy always have theirs)."""
        key = (name, workers)
        if key in self.running:
            return self.running[key]
        port, tls_port = free_port(), free_port()
        cpu = PROXY_CPU if workers == 1 else SCALE_CPU
        tag = f"{name}-w{workers}"
        conf = os.path.join(self.tmp, f"{tag}.conf")
        log = os.path.join(self.tmp, f"{tag}.log")
        if name == "nginx":
            text = nginx_conf(self.tmp, port, tls_port, self.origin_port, workers, self.nofile,
                              self.cert, self.key)
            argv = ["nginx", "-p", self.tmp, "-e", "stderr", "-c", conf]
        elif name == "haproxy":
            maxconn = max(self.a.idle, self.a.idle_tls) + 1000
            text = haproxy_conf(self.tmp, port, tls_port, self.origin_port, workers, self.nofile,
                                self.pem, maxconn)
            argv = ["haproxy", "-db", "-f", conf]
        else:
            tls, redis = self.sluice_features()
            if sluice_tls is not None:
                tls = sluice_tls
            if redis and not self.redis_port:
                self.start_redis()
            binary = self.a.sluice_baseline if name == BASELINE else self.a.sluice
            text = sluice_conf(port, tls_port, self.origin_port, workers, self.cert, self.key,
                               tls, self.redis_port, split=supports(binary, self.tmp, "split"),
                               cors=supports(binary, self.tmp, "cors"),
                               regex=supports(binary, self.tmp, "regex"),
                               static_root=os.path.join(self.tmp, "www") + "/"
                               if supports(binary, self.tmp, "static") else "",
                               max_connections=self.nofile - 64
                               if supports(binary, self.tmp, "max_connections") else 0,
                               tracing=supports(binary, self.tmp, "tracing"))
            argv = [binary, "-c", conf]
        with open(conf, "w") as f:
            f.write(text)
        p = PROCS.start(tag, argv, log, cpu)
        try:
            wait_port(port, p)
        except RuntimeError as e:
            raise RuntimeError(f"{tag}: {e}\n--- {log}:\n{tail(log)}")
        # let nginx fork its workers before taking the process tree
        end = time.monotonic() + 5
        pids = proc_tree(p.pid)
        while name == "nginx" and len(pids) < workers + 1 and time.monotonic() < end:
            time.sleep(0.02)
            pids = proc_tree(p.pid)
        info = {"proc": p, "pids": pids, "port": port, "tls_port": tls_port, "log": log,
                "tag": tag}
        self.running[key] = info
        return info

    def stop_proxy(self, name, workers):
        info = self.running.pop((name, workers), None)
        if info:
            PROCS.stop(info["proc"])

    def check_http(self, port, tls, who, paths=None):
        """GETs every path and checks the status and body; raises on failure."""
        paths = paths or ["/small", "/4k", "/64k", "/1m"]
        ctx = None
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        scheme = "https" if tls else "http"
        for path in paths:
            url = f"{scheme}://127.0.0.1:{port}{path}"
            try:
                with urllib.request.urlopen(url, timeout=10, context=ctx) as r:
                    body = r.read()
                    status = r.status
            except Exception as e:  # noqa: BLE001
                raise RuntimeError(f"{who}: GET {url} failed: {e}")
            want = FILES.get(path.rsplit("/", 1)[-1], len(SMALL_BODY))
            if status != 200 or len(body) != want:
                raise RuntimeError(f"{who}: GET {url} -> {status}, {len(body)} bytes, "
                                   f"expected 200 and {want}")

    # -- workloads ------------------------------------------------------------------------------
    def workloads(self):
        sel = os.environ.get("WORKLOADS")
        names = set(sel.split(",")) if sel else None
        return [w for w in WORKLOADS if names is None or w.name in names]

    def proxies(self):
        sel = os.environ.get("PROXIES")
        return [p for p in PROXIES if not sel or p in sel.split(",")]

    def runs(self, w, proxy):
        if kind(proxy) not in w.proxies or proxy not in self.proxies():
            return False
        return kind(proxy) not in w.skip or w.name in self.force

    def wrk(self, info, w, duration):
        port = info["tls_port"] if w.tls else info["port"]
        scheme = "https" if w.tls else "http"
        argv = ["taskset", "-c", CLIENT_CPU, "wrk", "-t1", f"-c{self.a.connections}",
                f"-d{duration}", "--latency", "--timeout", "5s",
                "-s", os.path.join(self.tmp, "report.lua")]
        if w.close:
            argv += ["-H", "Connection: close"]
        for h in w.headers:
            argv += ["-H", h]
        argv.append(f"{scheme}://127.0.0.1:{port}{w.path}")
        pids = info["pids"]
        (u0, s0), n0, t0 = cpu_split(pids), cpu_ns(pids), time.monotonic()
        r = subprocess.run(argv, capture_output=True, text=True, timeout=parse_secs(duration) + 60)
        (u1, s1), n1, t1 = cpu_split(pids), cpu_ns(pids), time.monotonic()
        c0, c1 = u0 + s0, u1 + s1
        if n0 is not None and n1 is not None:  # the same time, in ns rather than ticks
            c0, c1 = n0 / 1e9, n1 / 1e9
        m = re.search(r"^WRKJSON (.*)$", r.stdout, re.M)
        if r.returncode != 0 or not m:
            raise RuntimeError(f"wrk failed ({r.returncode}): {r.stdout}\n{r.stderr}")
        j = json.loads(m.group(1))
        n = j["requests"]
        ticks = (u1 - u0) + (s1 - s0)
        user_share = (u1 - u0) / ticks if ticks > 0 else 0.0
        res = {
            "requests": n,
            "rps": n / (j["duration_us"] / 1e6) if j["duration_us"] else 0.0,
            "p50_ms": j["p50_us"] / 1000.0,
            "p99_ms": j["p99_us"] / 1000.0,
            "cpu_us": (c1 - c0) * 1e6 / n if n else float("inf"),
            "user_us": (c1 - c0) * user_share * 1e6 / n if n else float("inf"),
            "sys_us": (c1 - c0) * (1 - user_share) * 1e6 / n if n else float("inf"),
            "cpu_util": (c1 - c0) / (t1 - t0),
            "errors": j["connect_err"] + j["read_err"] + j["write_err"] + j["timeout_err"],
            "non2xx": j["status_err"],
        }
        return res

    def run_one(self, proxy, w, workers, duration, results, label):
        info = self.running[(proxy, workers)]
        if info["proc"].poll() is not None:
            self.fail(f"{info['tag']} exited ({info['proc'].returncode}):\n{tail(info['log'])}")
            return
        try:
            res = self.wrk(info, w, duration)
        except Exception as e:  # noqa: BLE001
            self.fail(f"{label} {w.name} {proxy}: {e}")
            return
        results.setdefault((w.name, proxy), []).append(res)
        bad = res["errors"] + res["non2xx"]
        if res["requests"] == 0 or bad > max(10, 0.01 * res["requests"]):
            self.fail(f"{label} {w.name} {proxy}: {res['requests']} requests, "
                      f"{res['errors']} socket errors, {res['non2xx']} non-2xx")
        log(f"  {label} {w.name:14s} {proxy:11s} {res['rps']:10.0f} req/s  "
            f"p50 {res['p50_ms']:7.3f} ms  p99 {res['p99_ms']:7.3f} ms  "
            f"cpu {res['cpu_us']:8.2f} us/req (user {res['user_us']:.2f} sys {res['sys_us']:.2f})"
            f"  ({res['cpu_util'] * 100:4.0f}% of a core)"
            + (f"  ERR {res['errors']} non2xx {res['non2xx']}" if bad else ""))

    def fail(self, msg):
        log("FAIL: " + msg)
        self.failures.append(msg)

    def throughput(self, workers, workloads, rounds, duration, label):
        results = {}
        for proxy in self.proxies():
            if not any(self.runs(w, proxy) for w in workloads):
                continue
            try:
                info = self.start_proxy(proxy, workers)
                for w in workloads:
                    if self.runs(w, proxy):
                        self.check_http(info["tls_port"] if w.tls else info["port"], w.tls,
                                        f"{info['tag']} ({w.name})", [w.path])
            except Exception as e:  # noqa: BLE001
                self.fail(f"{label} {proxy}: {e}")
                self.stop_proxy(proxy, workers)
        if self.a.warmup:
            for proxy in self.proxies():
                if (proxy, workers) in self.running:
                    info = self.running[(proxy, workers)]
                    try:
                        self.wrk(info, workloads[0], self.a.warmup)
                    except Exception as e:  # noqa: BLE001
                        self.fail(f"{label} warm-up {proxy}: {e}")
        for rnd in range(1, rounds + 1):
            log(f"{label}: round {rnd}/{rounds}")
            for w in workloads:
                for proxy in self.proxies():
                    if self.runs(w, proxy) and (proxy, workers) in self.running:
                        self.run_one(proxy, w, workers, duration, results, f"r{rnd}")
        return results

    # -- idle memory ----------------------------------------------------------------------------
    def idle_memory(self, n, n_tls):
        """{"plain": {proxy: figures}, "tls": {proxy: figures}}: n idle plain-HTTP connections,
        then n_tls idle TLS ones (0: not measured), each on a fresh proxy process. Sluice gets
        its TLS listener in both runs (nginx and HAProxy always have theirs), so the baselines
        compare."""
        out = {"plain": {}, "tls": {}}
        modes = [("plain", n)] + ([("tls", n_tls)] if n_tls > 0 else [])
        for mode, count in modes:
            tls = mode == "tls"
            for proxy in self.proxies():
                res = self.idle_one(proxy, count, tls, n_tls > 0)
                if res:
                    out[mode][proxy] = res
        return out

    def idle_one(self, proxy, n, tls, sluice_tls):
        mode = "tls" if tls else "plain"
        self.stop_proxy(proxy, 1)  # a fresh process: nothing left over from earlier runs
        try:
            info = self.start_proxy(proxy, 1, sluice_tls=sluice_tls)
            port = info["tls_port"] if tls else info["port"]
            if tls:
                wait_port(port, info["proc"])
            self.check_http(port, tls, f"{info['tag']} (idle {mode})")
            # warm-up: the upstream connection, the allocator, OpenSSL's lazily built state
            self.check_http(port, tls, f"{info['tag']} (idle {mode})", ["/small"] * 20)
            pids = proc_tree(info["proc"].pid)
            base = settle_rss(pids)
            argv = ["taskset", "-c", CLIENT_CPU, sys.executable,
                    os.path.join(HERE, "idle_conns.py")]
            if tls:
                # ~1 ms of client CPU per handshake (Python is the slow side): allow for it
                argv += ["--tls", "--timeout", str(60 + n // 100)]
            argv += ["127.0.0.1", str(port), str(n), "/small"]
            t0 = time.monotonic()
            cl = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  start_new_session=True)
            PROCS.items.append(("idle_conns", cl))
            try:
                line = cl.stdout.readline().split()
                secs = time.monotonic() - t0
                if len(line) != 3 or line[0] != "READY":
                    raise RuntimeError(f"idle client said {line}")
                ok, bad = int(line[1]), int(line[2])
                loaded = settle_rss(pids)
                still = info["proc"].poll() is None
            finally:
                cl.stdin.close()
                try:
                    cl.wait(30)
                except subprocess.TimeoutExpired:
                    PROCS.stop(cl)
                PROCS.items = [(a, b) for a, b in PROCS.items if b is not cl]
            if bad or not still:
                self.fail(f"idle {mode} {proxy}: {ok} connections ok, {bad} failed"
                          + ("" if still else ", proxy died"))
            per = (loaded - base) * 1024.0 / ok if ok else float("nan")
            log(f"  idle {mode:5s} {proxy:11s} base {base} KiB, with {ok} idle: {loaded} KiB, "
                f"{per:.0f} B/connection  (connected in {secs:.1f}s)")
            return {"base_kib": base, "loaded_kib": loaded, "ok": ok, "bad": bad,
                    "per_conn_bytes": per}
        except Exception as e:  # noqa: BLE001
            self.fail(f"idle {mode} {proxy}: {e}")
            return None
        finally:
            self.stop_proxy(proxy, 1)


def settle_rss(pids, timeout=3.0):
    """RSS once two reads 100 ms apart agree (or after timeout)."""
    last = rss_kib(pids)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        time.sleep(0.1)
        cur = rss_kib(pids)
        if cur == last:
            return cur
        last = cur
    return last


WRK_LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect_err":%d,"read_err":%d,' ..
    '"write_err":%d,"status_err":%d,"timeout_err":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"mean_us":%f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean))
end
"""


def parse_secs(d):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)?", d)
    if not m:
        raise SystemExit(f"bad duration {d!r}")
    v = float(m.group(1))
    return {"ms": v / 1000, "s": v, None: v, "m": v * 60}[m.group(2)]


def tail(path, n=20):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def log(msg):
    print(msg, flush=True)


def med(rs, k):
    return statistics.median(r[k] for r in rs)


# ----------------------------------------------------------------------------------------------
# report


def machine():
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    virt = subprocess.run(["systemd-detect-virt"], capture_output=True, text=True).stdout.strip() \
        if shutil.which("systemd-detect-virt") else ""
    return f"{os.cpu_count()} CPUs, {model}" + (f" ({virt})" if virt and virt != "none" else "") \
        + f", Linux {platform.release()}"


def versions(sluice, baseline=None):
    def first(argv):
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except Exception:  # noqa: BLE001
            return "?"
    v = {"nginx": first(["nginx", "-v"]), "haproxy": first(["haproxy", "-v"]),
         "sluice": first([sluice, "--version"])}
    if baseline:  # both print the same version: tell them apart by path
        v["sluice"] += f" (`{sluice}`)"
        v[BASELINE] = first([baseline, "--version"]) + f" (`{baseline}`)"
    v["wrk"] = first(["wrk", "-v"])
    return v


def pct(new, old):
    return "—" if not old else f"{(new / old - 1) * 100:+.1f}%"


def before_after(results, scale, idle, workloads, a):
    """sluice next to sluice-base: the medians of the same interleaved rounds, and the change."""
    new, old = "sluice", BASELINE
    out = [f"`{old}` is `{a.sluice_baseline}`, `{new}` is `{a.sluice}`: the same config, "
           "interleaved in every round. Change = sluice / sluice-base − 1 (lower is better for "
           "CPU, p99 and memory, higher for req/s). Differences of a few percent are within the "
           "run-to-run noise of this machine unless they hold over several rounds.",
           "",
           f"| workload | CPU µs/req {old} | CPU µs/req {new} | change | req/s {old} | "
           f"req/s {new} | change | p99 ms {old} | p99 ms {new} | change | runs |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    rows = [(w.name, w.name, results) for w in workloads]
    if ("small", new) in scale or ("small", old) in scale:
        rows.append(("small, 2 workers", "small", scale))
    for label, wn, res in rows:
        b, n = res.get((wn, old)), res.get((wn, new))
        if not b or not n:
            if b or n:
                who = old if not b else new
                out.append(f"| {label} | {who}: failed / not run | | | | | | | | | |")
            continue
        cols = []
        for k, fmt in (("cpu_us", "{:.2f}"), ("rps", "{:,.0f}"), ("p99_ms", "{:.3f}")):
            mb, mn = med(b, k), med(n, k)
            cols += [fmt.format(mb), fmt.format(mn), pct(mn, mb)]
        out.append(f"| {label} | " + " | ".join(cols) + f" | {len(b)} / {len(n)} |")
    out += ["", f"| idle memory | bytes/connection {old} | bytes/connection {new} | change |",
            "|---|---:|---:|---:|"]
    for mode in ("plain", "tls"):
        b, n = idle.get(mode, {}).get(old), idle.get(mode, {}).get(new)
        if b and n:
            out.append(f"| {'TLS' if mode == 'tls' else mode} ({n['ok']:,} connections) | "
                       f"{b['per_conn_bytes']:,.0f} | {n['per_conn_bytes']:,.0f} | "
                       f"{pct(n['per_conn_bytes'], b['per_conn_bytes'])} |")
        elif mode == "plain" or a.idle_tls:
            out.append(f"| {'TLS' if mode == 'tls' else mode} | not measured / failed | | |")
    return "\n".join(out)


def fmt_ratio(x):
    return "—" if x is None else f"{x:.2f}"


def throughput_table(results, workloads, proxies, base=None):
    rows = ["| workload | proxy | req/s | p50 ms | p99 ms | CPU µs/req | user + sys µs | "
            "CPU vs nginx | proxy CPU busy | runs |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for w in workloads:
        nginx_cpu = None
        if ("nginx" in proxies) and (w.name, "nginx") in results:
            nginx_cpu = med(results[(w.name, "nginx")], "cpu_us")
        for p in proxies:
            if kind(p) not in w.proxies:
                continue
            rs = results.get((w.name, p))
            if not rs:
                reason = w.skip.get(kind(p), "failed / not run")
                rows.append(f"| {w.name} | {p} | skipped: {reason} | | | | | | | |")
                continue
            cpu = med(rs, "cpu_us")
            ratio = cpu / nginx_cpu if nginx_cpu else None
            rows.append(f"| {w.name} | {p} | {med(rs, 'rps'):,.0f} | {med(rs, 'p50_ms'):.3f} | "
                        f"{med(rs, 'p99_ms'):.3f} | {cpu:.2f} | "
                        f"{med(rs, 'user_us'):.2f} + {med(rs, 'sys_us'):.2f} | {fmt_ratio(ratio)} | "
                        f"{med(rs, 'cpu_util') * 100:.0f}% | {len(rs)} |")
    return "\n".join(rows)


def targets(results, idle):
    def get(w, p, k):
        rs = results.get((w, p))
        return med(rs, k) if rs else None
    out = ["| target | Sluice | reference | met? |", "|---|---:|---:|---|"]

    def row(desc, s, ref, ok, unit):
        if s is None or ref is None:
            out.append(f"| {desc} | — | — | not measured |")
        else:
            out.append(f"| {desc} | {s:.2f} {unit} | {ref:.2f} {unit} | "
                       f"{'yes' if ok(s, ref) else '**no**'} |")
    n = get("small", "nginx", "cpu_us")
    row("small GET CPU/req <= 0.8 x nginx", get("small", "sluice", "cpu_us"),
        None if n is None else 0.8 * n, lambda s, r: s <= r, "µs")
    row("small GET p99 <= nginx", get("small", "sluice", "p99_ms"), get("small", "nginx", "p99_ms"),
        lambda s, r: s <= r, "ms")
    for w in ("64k", "1m"):
        row(f"{w} CPU/req <= HAProxy", get(w, "sluice", "cpu_us"), get(w, "haproxy", "cpu_us"),
            lambda s, r: s <= r, "µs")
    row("TLS keep-alive CPU/req <= nginx", get("tls-keepalive", "sluice", "cpu_us"),
        get("tls-keepalive", "nginx", "cpu_us"), lambda s, r: s <= r, "µs")
    h = get("tls-handshake", "nginx", "cpu_us")
    row("full TLS handshake CPU/req within 5% of nginx (<= 1.05 x)",
        get("tls-handshake", "sluice", "cpu_us"), None if h is None else 1.05 * h,
        lambda s, r: s <= r, "µs")
    plain = get("small", "sluice", "rps")
    row("rate-limited route >= 70% of the plain route's req/s", get("ratelimit", "sluice", "rps"),
        None if plain is None else 0.7 * plain, lambda s, r: s >= r, "req/s")
    for mode in ("plain", "tls"):
        si, ni = idle.get(mode, {}).get("sluice"), idle.get(mode, {}).get("nginx")
        row(f"idle memory/connection <= nginx ({'TLS' if mode == 'tls' else mode})",
            si and si["per_conn_bytes"], ni and ni["per_conn_bytes"], lambda s, r: s <= r, "B")
    return "\n".join(out)


def write_chart(results, workloads, proxies, png, datafile):
    names = [w.name for w in workloads if any((w.name, p) in results for p in proxies)]
    proxies = [p for p in proxies if any((wn, p) in results for wn in names)]
    if not names:
        raise RuntimeError("no results to plot")
    with open(datafile, "w") as f:
        f.write("# workload " + " ".join(f"{p}_cpu {p}_rps" for p in proxies) + "\n")
        for wn in names:
            vals = []
            for p in proxies:
                rs = results.get((wn, p))
                vals += [f"{med(rs, 'cpu_us'):.3f}", f"{med(rs, 'rps'):.1f}"] if rs else ["NaN"] * 2
            f.write(f"{wn} " + " ".join(vals) + "\n")
    cpu_cols = ", ".join(f"'{datafile}' using {2 + 2 * i}:xtic(1) title '{p}'"
                         for i, p in enumerate(proxies))
    rps_cols = ", ".join(f"'{datafile}' using {3 + 2 * i}:xtic(1) title '{p}'"
                         for i, p in enumerate(proxies))
    script = f"""
set terminal pngcairo size 1400,560 font ',10'
set output '{png}'
set multiplot layout 1,2 title 'Sluice vs nginx vs HAProxy, one worker pinned to CPU 0 (medians)'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set key top left
set grid ytics
set logscale y
set xtics nomirror rotate by -25
set xrange [-0.6:{len(names) - 0.4}]
set title 'proxy CPU time per request (µs, log scale, lower is better)'
plot {cpu_cols}
set title 'requests/s (log scale, higher is better)'
plot {rps_cols}
unset multiplot
"""
    r = subprocess.run(["gnuplot"], input=script, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("gnuplot: " + r.stderr)


def write_report(path, png_rel, a, results, scale, idle, wl, b):
    proxies = b.proxies()
    lines = []
    lines.append(f"Run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  ")
    lines.append(f"Machine: {machine()}  ")
    lines.append(f"Load average at start / end: {a.load_start} / {open('/proc/loadavg').read().split()[:3]} "
                 "(other work on the machine shows up here)  ")
    lines.append(f"Command: `{a.command}`  ")
    lines.append(f"Settings: {a.rounds} interleaved round(s) × {a.duration} per run, wrk -t1 "
                 f"-c{a.connections}, warm-up {a.warmup or 'none'}, idle connections "
                 f"{a.idle} plain / {a.idle_tls or 'not measured'} TLS  ")
    v = versions(a.sluice, a.sluice_baseline)
    lines.append("Versions: " + "; ".join(f"{k}: {v[k]}" for k in v))
    lines.append("")
    lines.append("Setup: origin = nginx (1 worker, CPU 1; `/small` is `return 200` with a "
                 f"{len(SMALL_BODY)}-byte body, `/64k` and `/1m` static files), wrk on CPU 1, "
                 "each proxy with one worker pinned to CPU 0 (`taskset -c 0`), upstream "
                 "keep-alive, access logs off. CPU µs/req = CPU time of the proxy's whole "
                 "process tree over the wrk window (schedstat, ns) / requests completed; "
                 "user and sys split it in the ratio of utime to stime. Values are "
                 "medians over the rounds. \"proxy CPU busy\" is the proxy's CPU time over the "
                 "window as a share of one core: near 100% means the proxy was the bottleneck; "
                 "below that, the client/origin core was.")
    lines.append("")
    lines.append("### Throughput, latency and CPU per request (1 worker)")
    lines.append("")
    lines.append(throughput_table(results, wl, proxies))
    lines.append("")
    lines.append(f"![chart]({png_rel})")
    lines.append("")
    if BASELINE in proxies and "sluice" in proxies:
        lines.append("### Before / after: sluice vs sluice-base (same run)")
        lines.append("")
        lines.append(before_after(results, scale, idle, wl, a))
        lines.append("")
    lines.append("### Targets (issue 6)")
    lines.append("")
    lines.append(targets(results, idle))
    lines.append("")
    lines.append(f"### Idle memory ({a.idle:,} plain / {a.idle_tls:,} TLS idle keep-alive "
                 "connections)" if a.idle_tls else
                 f"### Idle memory ({a.idle:,} idle keep-alive connections, plain HTTP)")
    lines.append("")
    lines.append("Fresh process per proxy and mode; each connection made one `GET /small` and then "
                 "stays idle. RSS is VmRSS summed over the proxy's processes; bytes/connection = "
                 "(RSS with connections − RSS idle) / connections. TLS: TLS 1.3, ECDSA P-256 "
                 "certificate, a full handshake per connection (Python client, no resumption, 16 "
                 "handshakes in flight); Sluice has its TLS listener in both modes, as nginx and "
                 "HAProxy do.")
    lines.append("")
    lines.append("| proxy | mode | RSS idle (KiB) | RSS with connections (KiB) | connections | "
                 "bytes/connection | vs nginx |")
    lines.append("|---|---|---:|---:|---:|---:|---:|")
    for mode in ("plain", "tls"):
        label = "TLS" if mode == "tls" else mode
        if mode == "tls" and not a.idle_tls:
            lines.append("| all | TLS | not measured (`IDLE_TLS_CONNS=0`) | | | | |")
            continue
        ref = idle.get(mode, {}).get("nginx")
        for p in proxies:
            d = idle.get(mode, {}).get(p)
            if d:
                ratio = (d["per_conn_bytes"] / ref["per_conn_bytes"]
                         if ref and ref["per_conn_bytes"] > 0 else None)
                lines.append(f"| {p} | {label} | {d['base_kib']:,} | {d['loaded_kib']:,} | "
                             f"{d['ok']:,} | {d['per_conn_bytes']:,.0f} | {fmt_ratio(ratio)} |")
            else:
                lines.append(f"| {p} | {label} | failed / not run | | | | |")
    lines.append("")
    lines.append("### Scaling: small GET with 2 workers, proxy on CPUs 0,1")
    lines.append("")
    lines.append("wrk and the origin still share CPU 1 with the proxy's second worker, so this "
                 "shows whether the worker model spreads load, not a clean 2× figure.")
    lines.append("")
    small = [w for w in wl if w.name == "small"]
    lines.append(throughput_table(scale, small, proxies))
    lines.append("")
    lines.append("| proxy | req/s 1 worker | req/s 2 workers | ratio |")
    lines.append("|---|---:|---:|---:|")
    for p in proxies:
        r1, r2 = results.get(("small", p)), scale.get(("small", p))
        if r1 and r2:
            a1, a2 = med(r1, "rps"), med(r2, "rps")
            lines.append(f"| {p} | {a1:,.0f} | {a2:,.0f} | {a2 / a1:.2f} |")
    lines.append("")
    skipped = [(w.name, p, w.skip[p]) for w in wl for p in w.proxies
               if p in w.skip and w.name not in b.force]
    if skipped:
        lines.append("### Skipped")
        lines.append("")
        for wn, p, why in skipped:
            lines.append(f"- {wn} / {p}: {why}")
        lines.append("")
    if b.failures:
        lines.append("### Failures")
        lines.append("")
        for f in b.failures:
            lines.append("- " + f.replace("\n", " ")[:400])
        lines.append("")
    block = "\n".join(lines)
    begin, end = "<!-- bench:begin (generated by bench/run.sh) -->", "<!-- bench:end -->"
    old = open(path).read() if os.path.exists(path) else ""
    if begin in old and end in old:
        new = old[:old.index(begin)] + begin + "\n" + block + "\n" + end + \
            old[old.index(end) + len(end):]
    else:
        new = "# Benchmark results\n\n" + begin + "\n" + block + "\n" + end + "\n"
    with open(path, "w") as f:
        f.write(new)


# ----------------------------------------------------------------------------------------------
# profiling (bench/profile.sh)


def profile(a, b, tool, out):
    """Sluice alone on one workload (the first of WORKLOADS, default small GET) under perf
    (cpu-clock samples) or callgrind."""
    b.prepare()
    b.start_origin()
    w = b.workloads()[0]
    if tool == "callgrind":
        cg = os.path.join(b.tmp, "callgrind.out")
        real = a.sluice
        a.sluice = "valgrind"
        orig_conf = sluice_conf
        info = None
        try:
            port = free_port()
            conf = os.path.join(b.tmp, "sluice-prof.conf")
            with open(conf, "w") as f:
                f.write(orig_conf(port, free_port(), b.origin_port, 1, b.cert, b.key, False, 0))
            p = PROCS.start("sluice-callgrind",
                            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={cg}",
                             "--dump-instr=no", real, "-c", conf],
                            os.path.join(b.tmp, "callgrind.log"), PROXY_CPU)
            wait_port(port, p, timeout=60)
            b.check_http(port, False, "sluice under callgrind", ["/small"])
            info = {"proc": p, "pids": proc_tree(p.pid), "port": port, "tls_port": 0}
            a.connections = min(a.connections, 10)
            res = b.wrk(info, w, a.duration)
            log(f"under callgrind: {res['requests']} requests")
            os.kill(p.pid, signal.SIGINT)
            p.wait(60)
        finally:
            a.sluice = real
        r = subprocess.run(["callgrind_annotate", "--inclusive=no", cg], capture_output=True,
                           text=True)
        text = f"# callgrind, {res['requests']} small GETs\n" + r.stdout
    else:
        info = b.start_proxy("sluice", 1)
        b.wrk(info, w, "2s")  # warm-up
        data = os.path.join(b.tmp, "perf.data")
        secs = parse_secs(a.duration)
        rec = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "4999", "-g",
                                "-p", str(info["proc"].pid), "-o", data, "--", "sleep",
                                str(secs + 1)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        time.sleep(0.5)  # perf attaches
        res = b.wrk(info, w, a.duration)
        rec.wait(secs + 30)
        flat = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children",
                               "--sort", "dso,symbol", "-g", "none", "--percent-limit", "0.3"],
                              capture_output=True, text=True).stdout
        incl = subprocess.run(["perf", "report", "-i", data, "--stdio", "--children",
                               "--sort", "symbol", "-g", "none", "--percent-limit", "2"],
                              capture_output=True, text=True).stdout
        text = (f"# perf cpu-clock, sluice {w.name}, {res['rps']:.0f} req/s, "
                f"{res['cpu_us']:.2f} CPU us/req\n# --- self ---\n" + flat +
                "\n# --- children (inclusive) ---\n" + incl)
    text = "\n".join(re.sub(r"\s+-\s+-\s*$", "", re.sub(r"  +", "  ", ln)).rstrip()
                     for ln in text.splitlines()) + "\n"
    with open(out, "w") as f:
        f.write(text)
    log(f"wrote {out}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sluice", required=True)
    ap.add_argument("--sluice-baseline", default="",
                    help=f"a second Sluice binary, benchmarked as proxy '{BASELINE}'")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--command", default="bench/run.sh")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs)")
    ap.add_argument("--profile", choices=["perf", "callgrind"])
    ap.add_argument("--profile-out", default="")
    a = ap.parse_args()
    env = os.environ
    if a.smoke:
        a.rounds, a.duration, a.warmup = 1, env.get("DURATION", "1s"), ""
        a.idle = int(env.get("IDLE_CONNS", "500"))
        a.idle_tls = int(env.get("IDLE_TLS_CONNS", str(min(200, a.idle))))
    else:
        a.rounds = int(env.get("ROUNDS", "3"))
        a.duration = env.get("DURATION", "10s")
        a.warmup = env.get("WARMUP", "2s")
        a.idle = int(env.get("IDLE_CONNS", "10000"))
        a.idle_tls = int(env.get("IDLE_TLS_CONNS", str(a.idle)))
    a.connections = int(env.get("CONNECTIONS", "64"))
    if a.sluice_baseline:
        if not os.access(a.sluice_baseline, os.X_OK):
            raise SystemExit(f"--sluice-baseline {a.sluice_baseline}: not an executable file")
        PROXIES.append(BASELINE)
    sel = [p for p in env.get("PROXIES", "").split(",") if p]
    unknown = [p for p in sel if p not in PROXIES]
    if unknown:
        raise SystemExit(f"PROXIES: unknown {','.join(unknown)} (known: {','.join(PROXIES)}"
                         + ("" if a.sluice_baseline else f"; {BASELINE} needs SLUICE_BASELINE")
                         + ")")
    if a.rounds < 1:
        raise SystemExit("ROUNDS must be >= 1")
    parse_secs(a.duration)

    a.load_start = open("/proc/loadavg").read().split()[:3]
    b = Bench(a)

    def on_signal(sig, _frame):
        PROCS.stop_all()
        sys.exit(128 + sig)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    if a.profile:
        try:
            profile(a, b, a.profile, a.profile_out)
        finally:
            PROCS.stop_all()
            if not a.keep:
                shutil.rmtree(b.tmp, ignore_errors=True)
        return 0

    for attr, what in (("idle", "idle connections"), ("idle_tls", "idle TLS connections")):
        if getattr(a, attr) + 200 > b.nofile:
            old = getattr(a, attr)
            setattr(a, attr, b.nofile - 200)
            b.notes.append(f"{what} lowered from {old} to {b.nofile - 200} "
                           f"(RLIMIT_NOFILE {b.nofile})")
            log(b.notes[-1])

    results, scale, idle = {}, {}, {}
    wl = b.workloads()
    t0 = time.monotonic()
    try:
        b.prepare()
        b.start_origin()
        log(f"temp dir {b.tmp}; origin on 127.0.0.1:{b.origin_port}")
        try:
            results = b.throughput(1, wl, a.rounds, a.duration, "1 worker")
        except Exception as e:  # noqa: BLE001
            b.fail(f"1-worker runs: {e}")
        for p in PROXIES:
            b.stop_proxy(p, 1)
        if env.get("SKIP_IDLE") != "1":
            log(f"idle memory: {a.idle} plain connections, {a.idle_tls} TLS connections")
            idle = b.idle_memory(a.idle, a.idle_tls)
        small = [w for w in wl if w.name == "small"]
        if small and env.get("SKIP_SCALING") != "1":
            try:
                scale = b.throughput(2, small, a.rounds, a.duration, "2 workers")
            except Exception as e:  # noqa: BLE001
                b.fail(f"2-worker runs: {e}")
            for p in PROXIES:
                b.stop_proxy(p, 2)
    finally:
        PROCS.stop_all()

    if a.smoke:
        outdir = tempfile.mkdtemp(prefix="sluice-bench-smoke-")
        md, png = os.path.join(outdir, "RESULTS.md"), os.path.join(outdir, "results.png")
    else:
        # OUT_DIR: somewhere else than bench/ (a before/after run need not replace the
        # checked-in RESULTS.md; a new RESULTS.md there has only the generated block)
        outdir = env.get("OUT_DIR") or HERE
        os.makedirs(outdir, exist_ok=True)
        md, png = os.path.join(outdir, "RESULTS.md"), os.path.join(outdir, "results.png")
    try:
        write_chart(results, wl, b.proxies(), png, os.path.join(b.tmp, "chart.dat"))
    except Exception as e:  # noqa: BLE001
        b.fail(f"chart: {e}")
    write_report(md, os.path.basename(png), a, results, scale, idle, wl, b)
    log(f"\nwrote {md} and {png} in {time.monotonic() - t0:.0f}s")
    if not a.keep:
        shutil.rmtree(b.tmp, ignore_errors=True)
    else:
        log(f"kept {b.tmp}")
    if b.failures:
        log(f"{len(b.failures)} failure(s):")
        for f in b.failures:
            log("  " + f.splitlines()[0])
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
