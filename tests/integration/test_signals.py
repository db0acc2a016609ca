"""Process model: graceful drain on SIGTERM/SIGQUIT, SIGINT fast exit, SIGUSR1 log reopen,
`sluice -s reload|stop|quit|reopen` via pid_file."""

import os
import signal
import threading
import time

from sluicetest import RawClient, Response, http_request, port_refuses, wait_until
from sluicetest.process import run_cli


def _start(sluice, backend, **server):
    srv = {"shutdown_timeout": "5s"}
    srv.update(server)
    cfg = sluice.config(routes=[{"name": "r", "path": "/", "pool": "p"}],
                        pools={"p": {"backends": [backend.address]}}, server=srv)
    sluice.start(cfg)
    return cfg


def _inflight(sluice, backend, path):
    result = {}

    def run():
        try:
            result["r"] = http_request(sluice.port(), "GET", path, timeout=20)
        except Exception as e:  # noqa: BLE001
            result["e"] = e

    t = threading.Thread(target=run)
    t.start()
    wait_until(lambda: any(q.path == path for q in backend.requests), 5, message="in flight")
    return t, result


def _graceful(sluice, backend, sig):
    backend.on("/slow", Response(body=b"finished-after-signal", delay=1.5))
    _start(sluice, backend)
    t, result = _inflight(sluice, backend, "/slow")
    t0 = time.monotonic()
    sluice.signal(sig)
    # New connections are refused once the listener is closed.
    wait_until(lambda: port_refuses(sluice.port()), 1.0, message="listener closed")
    t.join(10)
    assert "e" not in result, result.get("e")
    r = result["r"]
    assert r.status == 200 and r.body == b"finished-after-signal"
    rc = sluice.wait_exit(6)
    assert rc == 0, f"exit code {rc}\n{sluice.stderr()[-2000:]}"
    assert time.monotonic() - t0 < 5.5


def test_sigterm_graceful_drain(backend, sluice):
    _graceful(sluice, backend, signal.SIGTERM)


def test_sigquit_graceful_drain(backend, sluice):
    _graceful(sluice, backend, signal.SIGQUIT)


def test_graceful_closes_idle_keepalives_promptly(backend, sluice):
    _start(sluice, backend, shutdown_timeout="20s")
    idle = RawClient(sluice.port())
    try:
        assert idle.request("GET", "/x").status == 200
        t0 = time.monotonic()
        sluice.signal(signal.SIGTERM)
        assert idle.is_closed(5), "idle keep-alive not closed on graceful shutdown"
        assert sluice.wait_exit(5) == 0
        assert time.monotonic() - t0 < 4, "graceful exit waited on an idle connection"
    finally:
        idle.close()


def test_graceful_keepalive_gets_connection_close(backend, sluice):
    # A keep-alive request in flight during the drain is answered with Connection: close.
    backend.on("/slow", Response(body=b"done", delay=1.0))
    _start(sluice, backend)
    c = RawClient(sluice.port(), timeout=10)
    try:
        c.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        wait_until(lambda: len(backend.requests) == 1, 5)
        sluice.signal(signal.SIGTERM)
        r = c.read_response()
        assert r.status == 200 and r.body == b"done"
        assert r.connection_close
        assert c.is_closed(3)
    finally:
        c.close()
    assert sluice.wait_exit(6) == 0


def test_shutdown_timeout_bounds_exit(backend, sluice):
    backend.on("/forever", Response(body=b"x", delay=30))
    _start(sluice, backend, shutdown_timeout="1s")
    t, _ = _inflight(sluice, backend, "/forever")
    t0 = time.monotonic()
    sluice.signal(signal.SIGTERM)
    sluice.wait_exit(5)
    took = time.monotonic() - t0
    assert took < 3.5, f"exited {took:.2f}s after SIGTERM, shutdown_timeout is 1s"
    assert sluice.proc.returncode >= 0, "not killed by a signal"
    t.join(10)


def test_sigint_fast_exit(backend, sluice):
    backend.on("/slow", Response(body=b"x", delay=10))
    _start(sluice, backend, shutdown_timeout="20s")
    t, _ = _inflight(sluice, backend, "/slow")
    t0 = time.monotonic()
    sluice.signal(signal.SIGINT)
    rc = sluice.wait_exit(5)
    assert time.monotonic() - t0 < 2, "SIGINT is a fast shutdown"
    assert rc >= 0, f"killed by signal {-rc}"
    t.join(10)


def test_sigusr1_reopens_access_log(backend, sluice):
    _start(sluice, backend)
    r = http_request(sluice.port(), "GET", "/before", headers=[("X-Request-Id", "before-1")])
    assert r.status == 200
    sluice.wait_access(lambda e: e.get("request_id") == "before-1")
    rotated = sluice.access_log_path + ".1"
    os.rename(sluice.access_log_path, rotated)
    sluice.signal(signal.SIGUSR1)
    # Requests after the reopen land in a new file at the configured path.
    def new_file_has_line():
        http_request(sluice.port(), "GET", "/after", headers=[("X-Request-Id", "after-1")])
        return any(e.get("request_id") == "after-1" for e in sluice.access_entries())
    wait_until(new_file_has_line, 5, interval=0.1, message="line in reopened access log")
    assert any(e.get("request_id") == "before-1" for e in sluice.access_entries(rotated))
    assert not any(e.get("request_id") == "before-1" for e in sluice.access_entries())
    sluice.check_alive()


def _pid_cfg(sluice, backend, route="/"):
    return sluice.config(routes=[{"name": "r", "path": route, "pool": "p"}],
                         pools={"p": {"backends": [backend.address]}},
                         server={"pid_file": os.path.join(sluice.dir, "sluice.pid")})


def _pid_from_file(sluice):
    path = os.path.join(sluice.dir, "sluice.pid")
    wait_until(lambda: os.path.exists(path) and open(path).read().strip(), 5,
               message="pid file written")
    return int(open(path).read().strip())


def test_pid_file_written(backend, sluice):
    sluice.start(_pid_cfg(sluice, backend))
    assert _pid_from_file(sluice) == sluice.pid


def test_s_reload(backend, sluice):
    sluice.start(_pid_cfg(sluice, backend, "/old/"))
    _pid_from_file(sluice)
    assert http_request(sluice.port(), "GET", "/new/x").status == 404

    def via():
        out = run_cli(["-s", "reload", "-c", sluice.config_path])
        assert out.returncode == 0, out.stdout + out.stderr

    assert sluice.reload(_pid_cfg(sluice, backend, "/new/"), via=via) == "ok"
    wait_until(lambda: http_request(sluice.port(), "GET", "/new/x").status == 200, 3)


def test_s_reopen(backend, sluice):
    sluice.start(_pid_cfg(sluice, backend))
    _pid_from_file(sluice)
    assert http_request(sluice.port(), "GET", "/a").status == 200
    wait_until(lambda: sluice.access_lines(), 5)
    os.rename(sluice.access_log_path, sluice.access_log_path + ".old")
    out = run_cli(["-s", "reopen", "-c", sluice.config_path])
    assert out.returncode == 0, out.stdout + out.stderr

    def reopened():
        http_request(sluice.port(), "GET", "/b", headers=[("X-Request-Id", "reopen-b")])
        return any(e.get("request_id") == "reopen-b" for e in sluice.access_entries())
    wait_until(reopened, 5, interval=0.1, message="reopened log")


def test_s_quit_is_graceful(backend, sluice):
    backend.on("/slow", Response(body=b"quit-drained", delay=1.0))
    sluice.start(_pid_cfg(sluice, backend))
    _pid_from_file(sluice)
    t, result = _inflight(sluice, backend, "/slow")
    out = run_cli(["-s", "quit", "-c", sluice.config_path])
    assert out.returncode == 0, out.stdout + out.stderr
    t.join(10)
    assert result["r"].status == 200 and result["r"].body == b"quit-drained"
    assert sluice.wait_exit(6) == 0


def test_s_stop_is_fast(backend, sluice):
    backend.on("/slow", Response(body=b"x", delay=10))
    sluice.start(_pid_cfg(sluice, backend))
    _pid_from_file(sluice)
    t, _ = _inflight(sluice, backend, "/slow")
    t0 = time.monotonic()
    out = run_cli(["-s", "stop", "-c", sluice.config_path])
    assert out.returncode == 0, out.stdout + out.stderr
    sluice.wait_exit(5)
    assert time.monotonic() - t0 < 2.5
    t.join(10)


def test_s_without_running_process_fails(backend, tmp_path):
    from sluicetest import Sluice
    s = Sluice(tmp_path / "nop")
    cfg = s.config(routes=[{"name": "r", "path": "/", "pool": "p"}],
                   pools={"p": {"backends": [backend.address]}},
                   server={"pid_file": str(tmp_path / "nop" / "missing.pid")})
    with open(s.config_path, "w") as f:
        f.write(cfg)
    out = run_cli(["-s", "reload", "-c", s.config_path])
    assert out.returncode != 0
    assert out.stderr.strip(), "an explanation on stderr"
