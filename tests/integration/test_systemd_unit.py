"""examples/systemd/sluice.service: systemd accepts it (systemd-analyze verify, and its
sandboxing rated by systemd-analyze security), and its commands do what the unit promises when
run as systemd would run them: the check before start, the start, the reload (check, then
SIGHUP to $MAINPID), and the stop signal draining within TimeoutStopSec."""

import os
import re
import shlex
import shutil
import signal
import subprocess

import pytest

from sluicetest import http_request
from sluicetest.process import SLUICE_BIN
from sluicetest.util import free_port, port_is_open, wait_until

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
UNIT = os.path.join(ROOT, "examples", "systemd", "sluice.service")
INSTALLED = "/usr/local/bin/sluice"
CONFIG = "/etc/sluice/sluice.toml"


def directives():
    """[(section, key, value)] in file order (a unit may repeat keys)."""
    out, section = [], None
    for line in open(UNIT):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        k, _, v = line.partition("=")
        out.append((section, k, v))
    return out


def values(key):
    return [v for _, k, v in directives() if k == key]


def unit_here(tmp_path):
    """The unit with the binary of this build in place of the installed one."""
    path = tmp_path / "sluice.service"
    path.write_text(open(UNIT).read().replace(INSTALLED, os.path.abspath(SLUICE_BIN)))
    return str(path)


def test_systemd_accepts_the_unit(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    unit = unit_here(tmp_path)
    r = subprocess.run([analyze, "verify", "--man=no", unit], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    r = subprocess.run([analyze, "security", "--offline=true", "--no-pager", unit],
                       capture_output=True, text=True, timeout=60)
    score = re.search(r"Overall exposure level for sluice.service: ([0-9.]+) (\w+)", r.stdout)
    assert score, r.stdout + r.stderr
    assert float(score.group(1)) <= 2.0, r.stdout  # systemd rates 0-10; under 2 is "OK"


def test_unit_commands_start_reload_and_drain(tmp_path, backend):
    """ExecStartPre, ExecStart, ExecReload (twice: check then HUP) and KillSignal, run as
    systemd runs them, on a config in a temporary folder."""
    assert values("Type") == ["exec"] and values("User") == ["sluice"]
    conf = tmp_path / "sluice.toml"
    port, admin = free_port(), free_port()

    def write(route_path):
        conf.write_text(f'[server]\nshutdown_timeout = "30s"\n'
                        f'[admin]\nlisten = "127.0.0.1:{admin}"\n'
                        f'[[listener]]\nname = "web"\nlisten = "127.0.0.1:{port}"\n'
                        f'[pool.app]\nbackends = [{{ address = "{backend.address}" }}]\n'
                        f'[[route]]\nname = "app"\npath = "{route_path}"\npool = "app"\n')

    def argv(line, pid=None):
        line = line.replace(INSTALLED, os.path.abspath(SLUICE_BIN)).replace(CONFIG, str(conf))
        if pid is not None:
            line = line.replace("$MAINPID", str(pid))
        return shlex.split(line)

    write("/")
    (pre,) = values("ExecStartPre")
    r = subprocess.run(argv(pre), capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    (start,) = values("ExecStart")
    proc = subprocess.Popen(argv(start), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        wait_until(lambda: port_is_open(admin) and port_is_open(port), 10, message="started")
        assert http_request(admin, "GET", "/health/live").status == 200
        assert http_request(port, "GET", "/x").status == 200

        check, hup = values("ExecReload")
        write("/only/")
        assert subprocess.run(argv(check), capture_output=True, timeout=30).returncode == 0
        assert subprocess.run(argv(hup, proc.pid), timeout=30).returncode == 0
        wait_until(lambda: http_request(port, "GET", "/x").status == 404, 10,
                   message="reloaded")

        # A broken file stops the reload at the check: systemctl reload fails, nothing is sent.
        conf.write_text(conf.read_text() + "[nonsense]\n")
        r = subprocess.run(argv(check), capture_output=True, text=True, timeout=30)
        assert r.returncode == 1 and "unknown" in r.stderr

        # Stop: KillSignal drains, exit 0, well within TimeoutStopSec.
        (kill,) = values("KillSignal")
        (timeout,) = values("TimeoutStopSec")
        assert int(timeout.rstrip("s")) > 30  # > shutdown_timeout (30s, the default)
        proc.send_signal(getattr(signal, kill))
        assert proc.wait(10) == 0
        assert "graceful shutdown" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_unit_install_lines_name_real_files():
    """The install commands in the unit's header copy files that exist."""
    text = open(UNIT).read()
    for src in re.findall(r"install [^\n]*?(examples/\S+|build/sluice)", text):
        if src != "build/sluice":
            assert os.path.exists(os.path.join(ROOT, src)), src
