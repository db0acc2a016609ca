"""Fixtures for Sluice's integration tests.

Run from the repo root:
    /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration
The binary is taken from $SLUICE_BIN (default <repo>/build/sluice).
"""

import os
import signal
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))

from sluicetest import Backend, Browser, PageServer, Sluice, chromium_path  # noqa: E402

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")
CRASH_SIGNALS = {-signal.SIGSEGV, -signal.SIGABRT, -signal.SIGBUS, -signal.SIGILL,
                 -signal.SIGFPE}


@pytest.fixture
def make_backend():
    """make_backend(name) -> a started Backend, stopped at teardown."""
    started = []

    def make(name="backend", **kw):
        be = Backend(name, **kw).start()
        started.append(be)
        return be

    yield make
    for be in started:
        be.stop()


@pytest.fixture
def backend(make_backend):
    return make_backend("b1")


@pytest.fixture
def make_sluice(tmp_path):
    """make_sluice() -> an unstarted Sluice with its own work dir; stopped at teardown.
    Teardown fails the test if the process died unexpectedly or crashed."""
    made = []

    def make(name="sluice"):
        s = Sluice(tmp_path / f"{name}{len(made)}")
        made.append(s)
        return s

    yield make
    problems = []
    for s in made:
        if s.proc is None:
            continue
        died = s.proc.poll() is not None and not s.expected_exit
        rc = s.stop()
        if died:
            problems.append(f"sluice exited unexpectedly with {rc}\n{s.stderr()[-4000:]}")
        elif rc in CRASH_SIGNALS:
            problems.append(f"sluice crashed with signal {-rc}\n{s.stderr()[-4000:]}")
        # A sanitizer build (-DSLUICE_SANITIZE=ON) reports use-after-free, leaks and undefined
        # behaviour on stderr: any report fails the test that caused it.
        err = s.stderr()
        for marker in SANITIZER_MARKERS:
            if marker in err:
                at = err.index(marker)
                problems.append(f"sanitizer report\n{err[max(0, at - 200):at + 4000]}")
                break
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def sluice(make_sluice):
    return make_sluice()


@pytest.fixture
def proxy(make_sluice):
    """proxy(*backends, routes=None, pools=None, server=None, ...) -> started Sluice.

    Defaults: one pool "p" with the given backends and one route "r" for path "/"."""

    def start(*backends, routes=None, pools=None, server=None, admin=True, log=None,
              listeners=None, extra="", pool_opts=None):
        s = make_sluice()
        if pools is None:
            pools = {"p": dict(backends=[b.address if hasattr(b, "address") else b
                                         for b in backends], **(pool_opts or {}))}
        if routes is None:
            routes = [{"name": "r", "path": "/", "pool": "p"}]
        cfg = s.config(routes=routes, pools=pools, server=server, admin=admin, log=log,
                       listeners=listeners, extra=extra)
        s.start(cfg)
        return s

    return start


@pytest.fixture
def browser():
    """A headless Chromium (sluicetest.Browser: fresh profile, *.example.test -> 127.0.0.1),
    closed at teardown. Skips the test only when no Chromium is installed (scripts/setup.sh
    installs Debian's `chromium`)."""
    if chromium_path() is None:
        pytest.skip("chromium is not installed (scripts/setup.sh --browser installs it)")
    with Browser() as b:
        yield b


@pytest.fixture
def make_page():
    """make_page(html, **kw) -> a started PageServer serving `html` at "/", stopped at
    teardown."""
    started = []

    def make(html=None, **kw):
        p = PageServer(html, **kw).start()
        started.append(p)
        return p

    yield make
    for p in started:
        p.stop()
