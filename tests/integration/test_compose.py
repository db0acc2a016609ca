"""The Compose sidecar stack (docker/compose.yaml): the file validates with docker-compose, its
mounts and ports agree with the configs they carry, and the exact Sluice config it mounts
(docker/compose/sluice.toml) runs here with the Compose service names answered by local
processes (SLUICE_TEST_HOSTS): the demo backend as app-blue and app-green, a real redis-server
as redis. Blue -> green through the admin API, the per-user limit in Redis, CORS for the
frontend origin."""

import base64
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib

import pytest

from sluicetest import RedisServer, http_request
from sluicetest.util import free_port, port_is_open, wait_until

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DOCKER = os.path.join(ROOT, "docker")
COMPOSE = os.path.join(DOCKER, "compose.yaml")
SLUICE_TOML = os.path.join(DOCKER, "compose", "sluice.toml")
SERVICES = {"sluice", "app-blue", "app-green", "redis", "prometheus", "grafana"}
TOKEN = "compose-admin-token"
JWT_SECRET = "compose-jwt-secret-0123456789"
ORIGIN = "http://localhost:5173"  # FRONTEND_ORIGIN's default in compose.yaml and sluice.toml

# The service names of the stack, each on its own loopback address so every service keeps the
# port the config names (app-*:8000, redis:6379).
HOSTS = {"app-blue": "127.0.0.2", "app-green": "127.0.0.3", "redis": "127.0.0.4"}


def seconds(duration):
    """'30s', '1m30s', '250ms' (Compose and Sluice durations) -> seconds."""
    total, num = 0.0, ""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    i = 0
    while i < len(duration):
        c = duration[i]
        if c.isdigit():
            num += c
            i += 1
            continue
        unit = "ms" if duration.startswith("ms", i) else c
        total += int(num) * units[unit]
        num, i = "", i + len(unit)
    return total + (int(num) if num else 0)


def compose_config(env):
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.skip("docker-compose is not installed (scripts/setup.sh --containers installs it)")
    full = {k: v for k, v in os.environ.items() if not k.startswith(("SLUICE_", "COMPOSE_"))}
    full.update(env)
    return subprocess.run([exe, "-f", COMPOSE, "config"], capture_output=True, text=True,
                          env=full, cwd=ROOT, timeout=60)


def mounts(service):
    """{container path: (host path, read-only)} of a service in `docker-compose config`."""
    out = {}
    for v in service.get("volumes", []):
        host, target, *mode = v.split(":") if isinstance(v, str) else (v["source"], v["target"])
        out[target] = (host, "ro" in mode)
    return out


def published(service):
    """{container port: host ip ('' = every address)} of a service in `docker-compose config`."""
    out = {}
    for p in service.get("ports", []):
        if isinstance(p, dict):
            out[int(p["target"])] = p.get("host_ip", "")
        else:
            parts = p.split("/")[0].split(":")
            out[int(parts[-1])] = parts[0] if len(parts) == 3 else ""
    return out


def test_compose_file_validates_and_matches_its_configs():
    yaml = pytest.importorskip("yaml")  # python3-yaml, a dependency of docker-compose
    r = compose_config({"SLUICE_ADMIN_TOKEN": TOKEN, "SLUICE_JWT_SECRET": JWT_SECRET})
    assert r.returncode == 0, r.stderr
    cfg = yaml.safe_load(r.stdout)
    services = cfg["services"]
    assert set(services) == SERVICES

    sluice = services["sluice"]
    assert sluice["environment"]["SLUICE_ADMIN_TOKEN"] == TOKEN
    assert published(sluice) == {8080: "", 9901: "127.0.0.1"}  # admin: this machine only
    assert mounts(sluice)["/etc/sluice"] == (os.path.join(DOCKER, "compose"), True)
    assert sluice["read_only"] is True and sluice["cap_drop"] == ["ALL"]
    toml = tomllib.load(open(SLUICE_TOML, "rb"))
    # `docker stop` waits stop_grace_period, then kills: the drain must finish before.
    assert seconds(sluice["stop_grace_period"]) > seconds(toml["server"]["shutdown_timeout"])
    assert set(sluice["depends_on"]) == {"app-blue", "app-green", "redis"}

    # Every host name the Sluice config uses is a service of the stack, on the port it serves.
    for pool in toml["pool"].values():
        for b in pool["backends"]:
            host, port = b["address"].rsplit(":", 1)
            assert host in services and port == "8000", b
            assert "8000" in services[host]["command"]
    assert toml["redis"]["url"].startswith("redis://redis:6379/")

    # Prometheus scrapes the admin listener and loads alerts.yml from its mounted folder.
    prom = services["prometheus"]
    host_dir, ro = mounts(prom)["/etc/prometheus"]
    assert host_dir == os.path.join(DOCKER, "prometheus") and ro
    prom_cfg = yaml.safe_load(open(os.path.join(host_dir, "prometheus.yml")))
    assert prom_cfg["rule_files"] == ["/etc/prometheus/alerts.yml"]
    targets = [t for job in prom_cfg["scrape_configs"] for sc in job["static_configs"]
               for t in sc["targets"]]
    admin_port = toml["admin"]["listen"].rsplit(":", 1)[1].rstrip("}")
    assert targets == [f"sluice:{admin_port}"]

    # Grafana: the datasource is the stack's Prometheus; the dashboards provider reads the
    # folder compose mounts docker/grafana/ at.
    graf = mounts(services["grafana"])
    prov_dir, ro = graf["/etc/grafana/provisioning"]
    assert prov_dir == os.path.join(DOCKER, "grafana", "provisioning") and ro
    ds = yaml.safe_load(open(os.path.join(prov_dir, "datasources", "prometheus.yml")))
    assert [(d["type"], d["url"], d["uid"]) for d in ds["datasources"]] == \
        [("prometheus", "http://prometheus:9090", "prometheus")]
    dash = yaml.safe_load(open(os.path.join(prov_dir, "dashboards", "sluice.yml")))
    (provider,) = dash["providers"]
    assert provider["type"] == "file"
    assert graf[provider["options"]["path"]] == (os.path.join(DOCKER, "grafana"), True)


def test_compose_file_requires_the_secrets():
    r = compose_config({"SLUICE_JWT_SECRET": JWT_SECRET})
    assert r.returncode != 0
    assert "set SLUICE_ADMIN_TOKEN" in r.stderr, r.stderr
    r = compose_config({"SLUICE_ADMIN_TOKEN": TOKEN})
    assert r.returncode != 0
    assert "set SLUICE_JWT_SECRET" in r.stderr, r.stderr


def jwt(sub):
    def b64(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"sub": sub, "exp": int(time.time()) + 600}).encode())
    sig = hmac.new(JWT_SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


@pytest.fixture
def stack(tmp_path):
    """The stack's services as local processes; yields the SLUICE_TEST_HOSTS file."""
    procs, redis = [], None
    try:
        for name, ip in HOSTS.items():
            if name.startswith("app-"):
                if port_is_open(8000, host=ip):
                    pytest.fail(f"{ip}:8000 is taken on this machine")
                procs.append(subprocess.Popen(
                    [sys.executable, os.path.join(ROOT, "examples", "demo_backend.py"), "8000",
                     name.removeprefix("app-"), ip]))
        for name, ip in HOSTS.items():
            if name.startswith("app-"):
                wait_until(lambda: port_is_open(8000, host=ip), 10, message=f"{name} up")
        redis = RedisServer(host=HOSTS["redis"], port=6379).start()
        hosts = tmp_path / "hosts"
        hosts.write_text("".join(f"{n} {ip}\n" for n, ip in HOSTS.items()))
        yield {"hosts": str(hosts), "redis": redis}
    finally:
        for p in procs:
            p.kill()
            p.wait()
        if redis:
            redis.stop()


def test_compose_sluice_config_runs_the_stack(make_sluice, stack):
    s = make_sluice()
    with open(SLUICE_TOML) as f:
        text = f.read()
    s.start(text, env={"SLUICE_TEST_HOSTS": stack["hosts"], "SLUICE_ADMIN_TOKEN": TOKEN,
                       "SLUICE_JWT_SECRET": JWT_SECRET,
                       "SLUICE_LISTEN": f"127.0.0.1:{free_port()}",
                       "SLUICE_ADMIN_LISTEN": f"127.0.0.1:{free_port()}"})
    assert s.admin_token == TOKEN
    wait_until(lambda: s.admin_get("/health/ready")[0] == 200, 10, message="ready")
    redis = stack["redis"]

    def get(user=None, origin=ORIGIN):
        hdrs = [("Origin", origin)]
        if user:
            hdrs.append(("Authorization", f"Bearer {jwt(user)}"))
        return http_request(s.port(), "GET", "/items", headers=hdrs)

    # Everything goes to blue; the frontend's origin may read the answer.
    r = get()
    assert r.status == 200, r.body
    assert r.json()["backend"] == "blue"
    assert r.header("access-control-allow-origin") == ORIGIN
    assert r.header("access-control-allow-credentials") == "true"
    assert r.header("ratelimit-limit") == "30"
    pre = http_request(s.port(), "OPTIONS", "/items", headers=[
        ("Origin", ORIGIN), ("Access-Control-Request-Method", "PUT"),
        ("Access-Control-Request-Headers", "authorization,content-type")])
    assert pre.status == 204
    assert pre.header("access-control-allow-origin") == ORIGIN
    assert "PUT" in pre.header("access-control-allow-methods")
    other = get(origin="https://evil.example")
    assert other.status == 200 and other.header("access-control-allow-origin") is None

    # Blue -> green through the admin API: the token is required, and the flip is stored in
    # Redis for every replica.
    flip = json.dumps({"blue": 0, "green": 100}).encode()
    st, _, body = s.admin_get("/admin/routes/app/split", method="PUT", body=flip)
    assert st == 401, body
    st, _, body = s.admin_get("/admin/routes/app/split", method="PUT", body=flip, token=TOKEN)
    assert st == 200, body
    assert json.loads(body)["weights"] == {"blue": 0, "green": 100}
    assert {get().json()["backend"] for _ in range(5)} == {"green"}
    wait_until(lambda: '"green":100' in (redis.command("GET", "sluice:release:app") or ""), 5,
               message="the flip stored in Redis")

    # Per user, in Redis: alice gets the bucket (10/s + 20) and then 429; bob is not affected.
    allowed, first_refusal, started = 0, None, time.monotonic()
    for _ in range(100):
        r = get("alice")
        if r.status == 429:
            first_refusal = r
            break
        assert r.status == 200, r.body
        allowed += 1
    assert first_refusal is not None, "alice was never limited"
    elapsed = time.monotonic() - started
    assert 30 <= allowed <= 30 + 10 * elapsed + 1, (allowed, elapsed)  # + the 10/s refill
    assert first_refusal.json()["error"] == "rate_limited"
    assert int(first_refusal.header("retry-after")) >= 1
    assert first_refusal.header("access-control-allow-origin") == ORIGIN  # the page can read it
    assert get("bob").status == 200
    keys = redis.command("KEYS", "sluice:rl:per-user:jwt:*")
    assert sorted(keys) == ["sluice:rl:per-user:jwt:alice", "sluice:rl:per-user:jwt:bob"], keys
