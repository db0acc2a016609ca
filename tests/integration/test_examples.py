"""The shipped configs (examples/, docker/) stay valid, and the quickstart demo really proxies."""

import glob
import signal
import json
import os
import subprocess
import sys

import pytest

from sluicetest import run_cli
from sluicetest.process import render_config
from sluicetest.client import http_request
from sluicetest.util import free_port, wait_until, port_is_open

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "examples", "*.toml")) +
                 glob.glob(os.path.join(ROOT, "docker", "*.toml")) +
                 glob.glob(os.path.join(ROOT, "docker", "compose", "*.toml")))


@pytest.mark.parametrize("path", CONFIGS, ids=[os.path.relpath(p, ROOT) for p in CONFIGS])
def test_shipped_config_is_valid(path):
    # the variables the Compose stack and `docker run -e` set (secrets have no default)
    env = dict(os.environ, SLUICE_BACKEND="127.0.0.1:8000", SLUICE_ADMIN_TOKEN="t",
               SLUICE_JWT_SECRET="s")
    r = run_cli(["-t", "-c", path], env=env)
    assert r.returncode == 0, r.stderr
    assert f"configuration file {path} test is successful" in r.stdout


def test_demo_backend_through_proxy(make_sluice):
    """examples/demo_backend.py behind the proxy answers with its name and sees the request id."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "examples", "demo_backend.py"),
                             str(port), "demo-1"])
    try:
        wait_until(lambda: port_is_open(port), 10, message="demo backend up")
        s = make_sluice()
        s.start(render_config(
            listeners=[{"name": "web", "listen": f"127.0.0.1:{free_port()}"}],
            pools={"app": {"backends": [{"address": f"127.0.0.1:{port}"}]}},
            routes=[{"name": "app", "path": "/", "pool": "app"}]))
        r = http_request(s.port(), "GET", "/hello")
        assert r.status == 200
        body = json.loads(r.body)
        assert body["backend"] == "demo-1" and body["path"] == "/hello"
        assert body["request_id"] == r.header("x-request-id")
        assert body["x_forwarded_for"] == "127.0.0.1"
    finally:
        proc.kill()
        proc.wait()


def test_canary_demo_shows_the_rollback():
    """examples/canary-demo.sh runs as a newcomer would run it, and shows the rollback."""
    from sluicetest.process import SLUICE_BIN
    r = subprocess.run([os.path.join(ROOT, "examples", "canary-demo.sh")],
                       env=dict(os.environ, SLUICE_BIN=SLUICE_BIN), capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "state: rolled_back | source: rollback" in r.stdout, r.stdout
    assert "live weights: {'stable': 100, 'canary': 0}" in r.stdout, r.stdout
    assert 'sluice_rollbacks_total{route="app",pool="canary"} 1' in r.stdout, r.stdout
    assert '"msg":"canary rolled back"' in r.stdout, r.stdout


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_demo_script_stops_everything_on_any_signal(sig):
    """scripts/demo.sh stopped by kill, a closed terminal (HUP) or Ctrl-C leaves nothing on its
    ports (sluice reads HUP as reload: the script must stop it itself)."""
    ports = (8080, 9901, 9001, 9002)
    if any(port_is_open(p) for p in ports):
        pytest.skip("a demo port is already in use on this machine")
    from sluicetest.process import SLUICE_BIN
    if os.path.realpath(SLUICE_BIN) != os.path.realpath(os.path.join(ROOT, "build", "sluice")):
        pytest.skip("scripts/demo.sh runs build/sluice, not $SLUICE_BIN")
    proc = subprocess.Popen(["bash", os.path.join(ROOT, "scripts", "demo.sh")],
                            env=dict(os.environ, DEMO_SKIP_BUILD="1"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until(lambda: all(port_is_open(p) for p in ports), 15, message="demo up")
        r = http_request(8080, "GET", "/hello")
        assert r.status == 200
        proc.send_signal(sig)
        assert proc.wait(15) != 0 or sig == signal.SIGINT
        wait_until(lambda: not any(port_is_open(p) for p in ports), 10,
                   message="every demo port free")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
