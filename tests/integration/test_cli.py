"""Command line: -t success and failure output, -v, -h, ${ENV} interpolation, startup with a
bad config."""

import re

import pytest

from sluicetest import Sluice, free_port, http_request
from sluicetest.process import run_cli


@pytest.fixture
def cfgdir(tmp_path):
    return Sluice(tmp_path / "cli")


def _write(s, text):
    with open(s.config_path, "w") as f:
        f.write(text)
    return s.config_path


def _good(s, backend_addr="127.0.0.1:9"):
    return s.config(routes=[{"name": "r", "path": "/", "pool": "p"}],
                    pools={"p": {"backends": [backend_addr]}})


def _line_of(text, needle):
    for i, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(needle)


def _errors(out, path):
    """[(line, col, message)] from FILE:LINE:COL: message lines (stdout+stderr)."""
    found = []
    for l in (out.stdout + out.stderr).splitlines():
        m = re.search(re.escape(path) + r":(\d+):(\d+): (.+)$", l)
        if m:
            found.append((int(m.group(1)), int(m.group(2)), m.group(3)))
    return found


def test_t_success(cfgdir):
    path = _write(cfgdir, _good(cfgdir))
    out = run_cli(["-t", "-c", path])
    assert out.returncode == 0, out.stdout + out.stderr
    lines = (out.stdout + out.stderr).strip().splitlines()
    assert f"sluice: configuration file {path} test is successful" in lines, lines


def test_t_does_not_bind_or_start(cfgdir):
    text = _good(cfgdir)
    path = _write(cfgdir, text)
    out = run_cli(["-t", "-c", path], timeout=5)
    assert out.returncode == 0
    # The listener port was not taken (the process exited and never bound it for good).
    from sluicetest import port_refuses
    assert port_refuses(int(re.search(r'listen = "127\.0\.0\.1:(\d+)"', text).group(1)))


def test_t_unknown_key(cfgdir):
    text = _good(cfgdir).replace("[server]\n", "[server]\nworkerz = 2\n", 1)
    path = _write(cfgdir, text)
    out = run_cli(["-t", "-c", path])
    assert out.returncode == 1, out.stdout + out.stderr
    errs = _errors(out, path)
    assert errs, out.stdout + out.stderr
    assert errs[0][0] == _line_of(text, "workerz"), errs
    assert errs[0][1] >= 1
    assert "workerz" in errs[0][2]
    first = (out.stdout + out.stderr).strip().splitlines()[0]
    assert first.startswith(f"{path}:{errs[0][0]}:{errs[0][1]}: "), f"-t line format: {first!r}"
    assert "test is successful" not in out.stdout + out.stderr


def test_t_reports_every_error(cfgdir):
    text = _good(cfgdir)
    text = text.replace('shutdown_timeout = "5s"', 'shutdown_timeout = "soon"')
    text = text.replace('pool = "p"', 'pool = "missing-pool"')
    text += '\n[[route]]\nname = "r2"\npath = "/x"\npool = "p"\ncolour = "blue"\n'
    path = _write(cfgdir, text)
    out = run_cli(["-t", "-c", path])
    assert out.returncode == 1
    lines = {l for l, _, _ in _errors(out, path)}
    want = {_line_of(text, '"soon"'), _line_of(text, '"missing-pool"'), _line_of(text, "colour")}
    assert want <= lines, f"want errors at {sorted(want)}, got {sorted(lines)}:\n{out.stderr}"
    # -t output: one `FILE:LINE:COL: message` line per problem (an nginx-style final
    # "sluice: configuration file FILE test failed" summary line is tolerated).
    for l in (out.stdout + out.stderr).strip().splitlines():
        assert l.startswith(path + ":") or l == f"sluice: configuration file {path} test failed", \
            f"unexpected output line {l!r}"


def test_t_toml_syntax_error(cfgdir):
    text = _good(cfgdir) + '\n[broken\nx = 1\n'
    path = _write(cfgdir, text)
    out = run_cli(["-t", "-c", path])
    assert out.returncode == 1
    errs = _errors(out, path)
    assert errs and errs[0][0] == _line_of(text, "[broken"), out.stdout + out.stderr


@pytest.mark.parametrize("key,bad", [("max_header_size", '"lots"'), ("workers", '"many"'),
                                     ("client_idle_timeout", '"-5s"'),
                                     ("max_body_size", '"12q"')])
def test_t_bad_values(cfgdir, key, bad):
    text = re.sub(rf"^{key} = .*\n", "", _good(cfgdir), flags=re.M)
    text = text.replace("[server]\n", f"[server]\n{key} = {bad}\n", 1)
    path = _write(cfgdir, text)
    out = run_cli(["-t", "-c", path])
    assert out.returncode == 1, out.stdout + out.stderr
    errs = _errors(out, path)
    assert errs and errs[0][0] == _line_of(text, f"{key} = {bad}"), out.stdout + out.stderr


def test_t_bad_listen_address(cfgdir):
    text = _good(cfgdir).replace('listen = "127.0.0.1:', 'listen = "not-an-ip:', 1)
    path = _write(cfgdir, text)
    out = run_cli(["-t", "-c", path])
    assert out.returncode == 1
    assert _errors(out, path)


def test_t_missing_file(tmp_path):
    out = run_cli(["-t", "-c", str(tmp_path / "nope.toml")])
    assert out.returncode != 0
    assert "nope.toml" in out.stdout + out.stderr


def test_version_and_help():
    v = run_cli(["-v"])
    assert v.returncode == 0
    assert "sluice" in (v.stdout + v.stderr).lower()
    assert re.search(r"\d+\.\d+", v.stdout + v.stderr)
    v2 = run_cli(["--version"])
    assert v2.returncode == 0 and v2.stdout + v2.stderr == v.stdout + v.stderr
    h = run_cli(["-h"])
    assert h.returncode == 0
    for flag in ("-c", "-t", "-s"):
        assert flag in h.stdout + h.stderr


def test_unknown_option_fails():
    out = run_cli(["--definitely-not-an-option"])
    assert out.returncode != 0
    assert out.stderr.strip()


def test_startup_with_bad_config_exits_1(tmp_path):
    s = Sluice(tmp_path / "bad")
    text = _good(s).replace("[server]\n", "[server]\nbogus_key = 1\n", 1)
    _write(s, text)
    out = run_cli(["-c", s.config_path], timeout=10)
    assert out.returncode == 1
    errs = _errors(out, s.config_path)
    assert errs and errs[0][0] == _line_of(text, "bogus_key")


def test_env_interpolation(backend, sluice):
    port = free_port()
    cfg = sluice.config(
        listeners=[{"name": "web", "listen": "127.0.0.1:${SLUICE_TEST_PORT}"}],
        routes=[{"name": "r", "path": "${SLUICE_TEST_PATH:-/}", "pool": "p"}],
        pools={"p": {"backends": [backend.address]}})
    sluice.start(cfg, wait=False, env={"SLUICE_TEST_PORT": str(port)})
    sluice.listeners = {"web": port}
    sluice.wait_ready()
    assert http_request(port, "GET", "/x").status == 200


def test_t_env_interpolation(cfgdir):
    text = _good(cfgdir).replace('path = "/"', 'path = "${SLUICE_SURELY_UNSET_VAR}"')
    path = _write(cfgdir, text)
    out = run_cli(["-t", "-c", path], env={"SLUICE_SURELY_UNSET_VAR": "/ok/"})
    assert out.returncode == 0, out.stdout + out.stderr


def test_default_config_path(backend, tmp_path):
    # -c defaults to ./sluice.toml
    s = Sluice(tmp_path / "dflt")
    _write(s, _good(s, backend.address))
    out = run_cli(["-t"], cwd=s.dir)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "sluice.toml test is successful" in out.stdout + out.stderr
