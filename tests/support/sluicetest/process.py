"""Runs the real sluice binary: writes its TOML config, starts it, waits for its listeners,
reloads it, signals it, reads its logs and metrics, and stops it."""

import json
import os
import re
import signal
import subprocess
import time
import tomllib
import urllib.error
import urllib.request

from .util import free_port, port_is_open, read_text, wait_stopped

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
SLUICE_BIN = os.environ.get("SLUICE_BIN", os.path.join(REPO, "build", "sluice"))


class SluiceDied(AssertionError):
    pass


# ---- TOML rendering -------------------------------------------------------------------

def _tv(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_tv(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_tv(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot render {v!r}")


def _key(k):
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)


def _table(header, d):
    out = [header]
    for k, v in d.items():
        if v is None:
            continue
        out.append(f"{_key(k)} = {_tv(v)}")
    return "\n".join(out) + "\n"


def toml_table(header, d):
    """One TOML table: `header` ("[tracing]") and its keys from the dict (None values left
    out; nested dicts as inline tables)."""
    return _table(header, d)


def render_config(*, listeners, pools=None, routes=None, server=None, admin=None, log=None,
                  extra=""):
    """Render a Sluice TOML config.

    listeners: [{"name": "web", "listen": "127.0.0.1:PORT", ...}]
    pools: {"name": {"backends": ["127.0.0.1:1", ("127.0.0.1:2", 3)], "retries": 1, ...}}
    routes: [{"name": "r", "path": "/", "pool": "p", ...}]
    """
    parts = []
    if server:
        parts.append(_table("[server]", server))
    if admin:
        parts.append(_table("[admin]", admin))
    if log:
        parts.append(_table("[log]", log))
    for lst in listeners:
        parts.append(_table("[[listener]]", lst))
    for name, p in (pools or {}).items():
        p = dict(p)
        bes = []
        for b in p.pop("backends", []):
            if isinstance(b, dict):
                bes.append(b)
            elif isinstance(b, tuple):
                bes.append({"address": b[0], "weight": b[1]})
            else:
                bes.append({"address": b})
        body = {"backends": bes}
        body.update(p)
        parts.append(_table(f"[pool.{_key(name)}]", body))
    for r in routes or []:
        parts.append(_table("[[route]]", r))
    if extra:
        parts.append(extra)
    return "\n".join(parts)


# ---- metrics ----------------------------------------------------------------------------

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """Prometheus text -> list of (name, {labels}, value)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise AssertionError(f"unparsable metrics line: {line!r}")
        labels = dict(_LABEL.findall(m.group(2) or ""))
        v = m.group(3)
        value = float("inf") if v == "+Inf" else float(v)
        out.append((m.group(1), labels, value))
    return out


class Metrics:
    def __init__(self, text):
        self.text = text
        self.samples = parse_metrics(text)

    def find(self, name, **labels):
        return [(l, v) for n, l, v in self.samples
                if n == name and all(l.get(k) == str(x) for k, x in labels.items())]

    def value(self, name, default=0.0, **labels):
        """Sum of the samples of `name` whose labels include `labels` (default if none)."""
        found = self.find(name, **labels)
        if not found:
            return default
        return sum(v for _, v in found)

    def has(self, name, **labels):
        return bool(self.find(name, **labels))


# ---- the process ----------------------------------------------------------------------

class Sluice:
    def __init__(self, workdir, binary=None):
        self.dir = str(workdir)
        os.makedirs(self.dir, exist_ok=True)
        self.bin = binary or SLUICE_BIN
        self.config_path = os.path.join(self.dir, "sluice.toml")
        self.stdout_path = os.path.join(self.dir, "stdout.log")
        self.stderr_path = os.path.join(self.dir, "stderr.log")
        self.access_log_path = os.path.join(self.dir, "access.log")
        self.proc = None
        self.listeners = {}
        self.admin_port = None
        self.admin_token = None
        self.env = {}
        self.expected_exit = False
        self._stdout = None
        self._stderr = None

    # ---- config helpers -------------------------------------------------------------
    def config(self, *, routes, pools, listeners=None, server=None, admin=True, log=None,
               extra=""):
        """Build a complete config with sensible test defaults: one listener "web" on a free
        port (unless `listeners` is given), an admin listener, the access log in the workdir,
        1 worker, 5s shutdown timeout. Ports are kept stable across calls on this object."""
        if listeners is None:
            port = self.listeners.get("web") or free_port()
            listeners = [{"name": "web", "listen": f"127.0.0.1:{port}"}]
        srv = {"workers": 1, "shutdown_timeout": "5s"}
        srv.update(server or {})
        adm = None
        if admin:
            if self.admin_port is None:
                self.admin_port = free_port()
            adm = {"listen": f"127.0.0.1:{self.admin_port}"}
            if isinstance(admin, dict):
                adm.update(admin)
        lg = {"access": self.access_log_path, "format": "json", "level": "info"}
        lg.update(log or {})
        return render_config(listeners=listeners, pools=pools, routes=routes, server=srv,
                             admin=adm, log=lg, extra=extra)

    # ---- lifecycle ------------------------------------------------------------------
    def start(self, config_text, wait=True, env=None, extra_args=(), preexec_fn=None):
        """`preexec_fn` runs in the child before exec (e.g. resource.setrlimit for a low
        open-file limit)."""
        self.env = dict(env or {})
        self._learn_ports(config_text)
        with open(self.config_path, "w") as f:
            f.write(config_text)
        if not os.path.exists(self.bin):
            raise AssertionError(f"sluice binary not found at {self.bin} (set SLUICE_BIN)")
        self._stdout = open(self.stdout_path, "ab")
        self._stderr = open(self.stderr_path, "ab")
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.expected_exit = False
        self.proc = subprocess.Popen([self.bin, "-c", self.config_path, *extra_args],
                                     stdout=self._stdout, stderr=self._stderr, cwd=self.dir,
                                     env=full_env, stdin=subprocess.DEVNULL,
                                     preexec_fn=preexec_fn)
        if wait:
            self.wait_ready()
        return self

    def _learn_ports(self, text):
        """Listener and admin ports (and the admin token) from the config, after its ${ENV}
        interpolation with os.environ + the env given to start() (addresses that stay
        unresolved are skipped)."""
        try:
            cfg = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            return
        cfg = _interpolate(cfg, {**os.environ, **self.env})
        self.listeners = {}
        for lst in cfg.get("listener", []):
            addr = lst.get("listen", "")
            if ":" in addr and "${" not in addr:
                self.listeners[lst.get("name", "")] = int(addr.rsplit(":", 1)[1])
        adm = cfg.get("admin")
        if adm and "listen" in adm and "${" not in adm["listen"]:
            self.admin_port = int(adm["listen"].rsplit(":", 1)[1])
            self.admin_token = adm.get("token") or None
        elif not adm:
            self.admin_port = None

    def wait_ready(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        pending = list(self.listeners.values())
        while True:
            self.check_alive()
            pending = [p for p in pending if not port_is_open(p)]
            if not pending:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"sluice did not listen on {pending} within {timeout}s\n"
                                     + self.stderr())
            time.sleep(0.02)
        if self.admin_port:
            while True:
                self.check_alive()
                try:
                    st, _, _ = self.admin_get("/health/live", timeout=1)
                    if st == 200:
                        return
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError("admin /health/live not 200\n" + self.stderr())
                time.sleep(0.02)

    def check_alive(self):
        if self.proc is None:
            raise AssertionError("sluice not started")
        rc = self.proc.poll()
        if rc is not None and not self.expected_exit:
            raise SluiceDied(f"sluice exited unexpectedly with {rc}\n--- stderr ---\n"
                             + self.stderr()[-8000:])

    def port(self, name="web"):
        return self.listeners[name]

    @property
    def pid(self):
        return self.proc.pid

    def signal(self, sig):
        if sig in (signal.SIGTERM, signal.SIGQUIT, signal.SIGINT, signal.SIGKILL):
            self.expected_exit = True
        self.proc.send_signal(sig)

    def pause(self, timeout=5.0):
        """SIGSTOP, and wait until every thread of the process has actually stopped (the
        signal is asynchronous: bytes sent right after kill() may still be read at once)."""
        self.proc.send_signal(signal.SIGSTOP)
        wait_stopped(self.proc.pid, "sluice", timeout)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def expect_exit(self):
        self.expected_exit = True

    def wait_exit(self, timeout=10.0):
        """Wait for the process to exit; returns its exit code (raises on timeout)."""
        self.expected_exit = True
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"sluice did not exit within {timeout}s")

    def stop(self):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.expected_exit = True
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for f in (self._stdout, self._stderr):
            if f:
                f.close()
        return self.proc.returncode

    # ---- admin / metrics --------------------------------------------------------------
    def admin_get(self, path, timeout=5, token=None, method="GET", body=None, headers=None):
        """(status, headers dict lower-cased, body bytes) from the admin listener."""
        url = f"http://127.0.0.1:{self.admin_port}{path}"
        req = urllib.request.Request(url, method=method, data=body, headers=headers or {})
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
        except urllib.error.HTTPError as e:
            return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()

    def metrics(self):
        st, _, body = self.admin_get("/metrics")
        if st != 200:
            raise AssertionError(f"/metrics answered {st}: {body[:300]!r}")
        return Metrics(body.decode())

    def generation(self):
        return self.metrics().value("sluice_config_generation")

    def reload(self, new_config, timeout=10.0, via=None):
        """Rewrite the config, SIGHUP (or run `via()`), and wait until the reload is
        observed in /metrics. Returns "ok" or "error"."""
        m = self.metrics()
        gen = m.value("sluice_config_generation")
        errs = m.value("sluice_config_reloads_total", result="error")
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(new_config)
        os.replace(tmp, self.config_path)
        if via is None:
            self.signal(signal.SIGHUP)
        else:
            via()
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            m = self.metrics()
            if m.value("sluice_config_generation") > gen:
                self._learn_ports(new_config)
                return "ok"
            if m.value("sluice_config_reloads_total", result="error") > errs:
                return "error"
            if time.monotonic() > deadline:
                raise AssertionError("reload not observed in /metrics\n" + self.stderr())
            time.sleep(0.02)

    # ---- logs -----------------------------------------------------------------------
    def stderr(self):
        return read_text(self.stderr_path)

    def stdout(self):
        return read_text(self.stdout_path)

    def access_lines(self, path=None):
        try:
            with open(path or self.access_log_path, "rb") as f:
                return [l for l in f.read().decode("utf-8", "replace").splitlines() if l.strip()]
        except FileNotFoundError:
            return []

    def access_entries(self, path=None):
        return [json.loads(l) for l in self.access_lines(path)]

    def wait_access(self, pred, timeout=5.0, path=None):
        """Poll the JSON access log until an entry satisfies pred; return it."""
        deadline = time.monotonic() + timeout
        while True:
            for e in self.access_entries(path):
                if pred(e):
                    return e
            if time.monotonic() > deadline:
                raise AssertionError("no matching access log entry; have:\n"
                                     + "\n".join(self.access_lines(path)[-20:]))
            time.sleep(0.02)


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _interpolate(value, env):
    """Sluice's ${NAME} / ${NAME:-default} interpolation of every string in a parsed config
    (a reference to an unset variable without default is left as is)."""
    if isinstance(value, str):
        def sub(m):
            v = env.get(m.group(1))
            if m.group(2) is not None and not v:
                return m.group(2)
            return m.group(0) if v is None else v
        return _ENV_REF.sub(sub, value)
    if isinstance(value, list):
        return [_interpolate(v, env) for v in value]
    if isinstance(value, dict):
        return {k: _interpolate(v, env) for k, v in value.items()}
    return value


def run_cli(args, timeout=10, env=None, cwd=None):
    """Run the binary with args; returns CompletedProcess (text)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([SLUICE_BIN, *args], capture_output=True, text=True, timeout=timeout,
                          env=full_env, cwd=cwd, stdin=subprocess.DEVNULL)
