"""TLS termination and upstream TLS against the real binary, with real clients
(`openssl s_client`, `curl`, Python's ssl). Certificates are made at test time with the
`openssl` CLI: a test CA issues an ECDSA P-256 certificate for a.test + *.wild.test, an RSA one
for b.test, a rotated a.test one, and backend certificates (one from an untrusted CA).

Covers: SNI (exact, wildcard, default), protocol versions, ALPN, session resumption (tickets,
session cache, across workers and reloads), certificate reload on SIGHUP, redirect_https, HSTS,
plain HTTP / garbage / truncated / stalled handshakes, access log and metrics, upstream TLS
verification, `-t` errors for certificates, large bodies through TLS.
"""

import hashlib
import os
import re
import shutil
import socket
import ssl
import time
from types import SimpleNamespace

import pytest

from sluicetest import (RawClient, Response, assert_proxy_error, free_port, http_request,
                        pattern_bytes, pattern_sha256, wait_until)
from sluicetest.process import run_cli
from sluicetest.tls import (TestCA, TlsBackend, TlsRawClient, cert_der, client_context,
                            client_hello, curl, s_client)

HSTS = "max-age=600; includeSubDomains"
GET_CLOSE = b"GET /via-s-client HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"


# ---- certificates --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = TestCA(d / "ca")
    untrusted = TestCA(d / "untrusted-ca", name="Untrusted Test CA")
    p = SimpleNamespace(ca=ca, dir=str(d))
    p.a = ca.issue("a", ["a.test", "*.wild.test"], "ec", cn="a.test")
    p.b = ca.issue("b", ["b.test"], "rsa", cn="b.test")
    p.a2 = ca.issue("a2", ["a.test", "*.wild.test"], "ec", cn="a.test rotated")
    p.backend = ca.issue("backend", ["backend.test"], "ec", cn="backend.test")
    p.backend_untrusted = untrusted.issue("backend-u", ["backend.test"], "ec",
                                          cn="backend.test untrusted")
    return p


def install(s, pki, name, as_name=None):
    """Copy certificate `name` of the PKI into the Sluice work dir as certs/<as_name>.pem/.key
    (atomically, so a reload never reads a half-written file)."""
    cert, key = getattr(pki, name)
    as_name = as_name or name
    os.makedirs(os.path.join(s.dir, "certs"), exist_ok=True)
    for src, ext in ((cert, "pem"), (key, "key")):
        dst = os.path.join(s.dir, "certs", f"{as_name}.{ext}")
        shutil.copyfile(src, dst + ".tmp")
        os.replace(dst + ".tmp", dst)


def entry(name):
    return {"cert": f"certs/{name}.pem", "key": f"certs/{name}.key"}


def tls_config(s, pools, *, certs=("a", "b"), tls=None, server=None, routes=None, plain=None):
    """A config with listener "web" (TLS, certificate paths relative to the config dir) and
    optionally a plain listener "plain" (dict of extra keys, e.g. redirect_https)."""
    port = s.listeners.get("web") or free_port()
    t = {"certificates": [entry(n) for n in certs]}
    t.update(tls or {})
    listeners = [{"name": "web", "listen": f"127.0.0.1:{port}", "tls": t}]
    if plain is not None:
        pport = s.listeners.get("plain") or free_port()
        listeners.append({"name": "plain", "listen": f"127.0.0.1:{pport}", **plain})
    if routes is None:
        routes = [{"name": "r", "path": "/", "pool": "p"}]
    return s.config(routes=routes, pools=pools, listeners=listeners, server=server)


@pytest.fixture
def start_tls(make_sluice, pki):
    """start_tls(*backends, certs=, tls=, server=, routes=, pools=, plain=) -> started Sluice
    with certs/<name>.pem installed for every name in certs."""

    def start(*backends, certs=("a", "b"), tls=None, server=None, routes=None, pools=None,
              plain=None):
        s = make_sluice()
        for n in certs:
            install(s, pki, n)
        if pools is None:
            pools = {"p": {"backends": [b.address for b in backends] or ["127.0.0.1:9"]}}
        s.start(tls_config(s, pools, certs=certs, tls=tls, server=server, routes=routes,
                           plain=plain))
        return s

    return start


# ---- small helpers ---------------------------------------------------------------------------

def metric(s, name, **labels):
    return s.metrics().value(name, **labels)


def hs(s, version=None, resumed=None, listener="web"):
    labels = {"listener": listener}
    if version:
        labels["version"] = version
    if resumed is not None:
        labels["resumed"] = "true" if resumed else "false"
    return metric(s, "sluice_tls_handshakes_total", **labels)


def hs_err(s, reason=None, listener="web"):
    labels = {"listener": listener}
    if reason:
        labels["reason"] = reason
    return metric(s, "sluice_tls_handshake_errors_total", **labels)


def wait_metric(s, fn, want, message):
    return wait_until(lambda: fn() >= want, 5, message=f"{message} (want >= {want})")


def curl_https(s, path, name="a.test", pki=None, *args, include=True):
    port = s.port()
    extra = ["--resolve", f"{name}:{port}:127.0.0.1"]
    extra += ["--cacert", pki.ca.cert] if pki else ["-k"]
    return curl(f"https://{name}:{port}{path}", *extra, *args, include=include)


def split_http(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for l in lines[1:]:
        k, _, v = l.partition(":")
        headers.setdefault(k.strip().lower(), v.strip())
    return status, headers, body


# ---- SNI and certificates -------------------------------------------------------------------

def test_sni_picks_certificate(backend, start_tls, pki):
    s = start_tls(backend, certs=("a", "b"))
    a, b = cert_der(pki.a[0]), cert_der(pki.b[0])
    cases = {"a.test": a, "b.test": b, "B.Test": b, "x.wild.test": a, "deep-1.wild.test": a}
    for name, want in cases.items():
        r = s_client(s.port(), servername=name)
        assert r.handshake_ok, r
        assert r.cert_der == want, f"SNI {name}: got subject {r.subject!r}"
    # ECDSA for a.test, RSA for b.test (the key types are really the ones configured).
    ra = s_client(s.port(), servername="a.test")
    rb = s_client(s.port(), servername="b.test")
    assert "Server public key is 256 bit" in ra.text, ra
    assert "Server public key is 2048 bit" in rb.text, rb
    # curl verifies each certificate against the test CA and the requested name.
    for name in ("a.test", "b.test", "x.wild.test"):
        out = curl_https(s, "/sni", name, pki)
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith(b"HTTP/1.1 200"), out.stdout[:200]
        req = backend.requests[-1]
        assert req.header("host") == f"{name}:{s.port()}"
        assert req.header_all("x-forwarded-proto") == ["https"], req.headers


def test_default_certificate_for_unknown_and_missing_sni(backend, start_tls, pki):
    # The FIRST certificate is the default: put b first to tell "default" from "matched a".
    s = start_tls(backend, certs=("b", "a"))
    a, b = cert_der(pki.a[0]), cert_der(pki.b[0])
    expect = [("unknown.test", b), (None, b), ("a.test", a), ("x.wild.test", a),
              # "*.wild.test" covers exactly one label: neither the bare suffix nor two labels.
              ("wild.test", b), ("x.y.wild.test", b)]
    for name, want in expect:
        r = s_client(s.port(), servername=name)
        assert r.handshake_ok, r
        got = {a: "a", b: "b"}.get(r.cert_der, r.subject)
        assert r.cert_der == want, f"SNI {name!r}: got cert {got}, want {'a' if want == a else 'b'}"
    # Python's ssl without SNI (IP address as server_hostname sends no SNI).
    with TlsRawClient(s.port(), servername=None) as c:
        assert c.peer_der() == b
        assert c.request("GET", "/no-sni", host="whatever").status == 200


# ---- protocol versions -----------------------------------------------------------------------

def test_tls11_refused_tls12_and_13_accepted(backend, start_tls):
    s = start_tls(backend)
    e0 = hs_err(s, "unsupported_protocol")
    # SECLEVEL=0 lets OpenSSL 3's client really offer TLS 1.1 (otherwise it refuses locally).
    r = s_client(s.port(), "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0", servername="a.test")
    assert r.rc != 0 and not r.handshake_ok, r
    assert "written 0 bytes" not in r.text, "the client never sent a ClientHello"
    # The client is told why: a protocol_version alert, not an unexpected EOF.
    assert "alert protocol version" in r.text, r.text
    wait_metric(s, lambda: hs_err(s, "unsupported_protocol"), e0 + 1,
                'sluice_tls_handshake_errors_total{reason="unsupported_protocol"}')
    for flag, version in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
        before = hs(s, version, resumed=False)
        r = s_client(s.port(), flag, servername="a.test")
        assert r.handshake_ok and r.protocol == version, r
        wait_metric(s, lambda v=version: hs(s, v, resumed=False), before + 1,
                    f"handshakes {version}")
    # No CBC / RC4 / 3DES suites with TLS 1.2: a CBC-only client is refused.
    r = s_client(s.port(), "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA",
                 servername="a.test")
    assert not r.handshake_ok, f"CBC suite accepted: {r}"
    assert "alert handshake failure" in r.text, r.text
    # The negotiated TLS 1.2 suite is an AEAD ECDHE one.
    r = s_client(s.port(), "-tls1_2", servername="a.test")
    cipher = r._field(r"Cipher is (\S+)")
    assert cipher and cipher.startswith("ECDHE-") and ("GCM" in cipher or "CHACHA20" in cipher), \
        cipher


def test_min_version_13_refuses_tls12(backend, start_tls):
    s = start_tls(backend, tls={"min_version": "1.3"})
    e0 = hs_err(s)
    r = s_client(s.port(), "-tls1_2", servername="a.test")
    assert not r.handshake_ok, r
    assert "alert protocol version" in r.text, r.text
    wait_metric(s, lambda: hs_err(s), e0 + 1, "handshake error counted for TLS 1.2 client")
    r = s_client(s.port(), "-tls1_3", servername="a.test")
    assert r.handshake_ok and r.protocol == "TLSv1.3", r
    out = curl_https(s, "/v", "a.test", None, "--tls-max", "1.2")
    assert out.returncode != 0, out.stdout[:300]
    out = curl_https(s, "/v", "a.test", None, "--tlsv1.3")
    assert out.returncode == 0 and out.stdout.startswith(b"HTTP/1.1 200"), out.stderr


# ---- ALPN ------------------------------------------------------------------------------------

def test_alpn_http11_negotiated(backend, start_tls, pki):
    s = start_tls(backend, tls={"alpn": ["http/1.1"]})
    r = s_client(s.port(), "-alpn", "http/1.1", servername="a.test", request=GET_CLOSE)
    assert r.handshake_ok, r
    assert r.alpn == "http/1.1", r
    assert r.http_status == 200, r.stdout[-500:]
    r = s_client(s.port(), "-alpn", "h2,http/1.1", servername="a.test")
    assert r.alpn == "http/1.1", r
    with TlsRawClient(s.port(), "a.test", ctx=client_context(alpn=["h2", "http/1.1"])) as c:
        assert c.tls.selected_alpn_protocol() == "http/1.1"
        assert c.request("GET", "/alpn").status == 200
    # curl offers h2 and http/1.1 by default and must end up speaking HTTP/1.1.
    out = curl_https(s, "/alpn", "a.test", pki, "--http2")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(b"HTTP/1.1 200"), out.stdout[:200]


def test_alpn_h2_only_client_gets_connection_without_alpn(backend, start_tls):
    """Sluice's choice (like nginx before 1.21.4): no common protocol -> the handshake goes on
    without ALPN (no no_application_protocol alert); a client that then speaks HTTP/1.1 is
    served."""
    s = start_tls(backend, tls={"alpn": ["http/1.1"]})
    r = s_client(s.port(), "-alpn", "h2", servername="a.test", request=GET_CLOSE)
    assert r.handshake_ok, f"h2-only client refused: {r}"
    assert r.alpn is None, f"server selected {r.alpn!r} for an h2-only client"
    assert r.http_status == 200
    with TlsRawClient(s.port(), "a.test", ctx=client_context(alpn=["h2"])) as c:
        assert c.tls.selected_alpn_protocol() is None
        assert c.request("GET", "/h2-only").status == 200
    assert s_client(s.port(), "-alpn", "http/1.1", servername="a.test").alpn == "http/1.1"


# ---- session resumption ----------------------------------------------------------------------

def _resume(s, tmp_path, n_resumes=1, extra=("-tls1_2",), servername="a.test", sess=None,
            request=None):
    """Full handshake saving the session, then n resumptions from it; returns the runs."""
    sess = sess or str(tmp_path / f"sess-{time.monotonic_ns()}.pem")
    first = s_client(s.port(), *extra, "-sess_out", sess, servername=servername,
                     request=request)
    assert first.handshake_ok and first.new, first
    runs = [s_client(s.port(), *extra, "-sess_in", sess, servername=servername,
                     request=request) for _ in range(n_resumes)]
    return first, runs, sess


def test_tls12_resumption_with_tickets(backend, start_tls, tmp_path):
    s = start_tls(backend)
    r0 = hs(s, "TLSv1.2", resumed=True)
    first, runs, _ = _resume(s, tmp_path, 3)
    assert first.session_ticket, "no session ticket issued with session_tickets on (default)"
    for r in runs:
        assert r.reused, f"ticket resumption: expected 'Reused, ...', got {r.summary!r}"
    wait_metric(s, lambda: hs(s, "TLSv1.2", resumed=True), r0 + 3, "resumed handshakes")


def test_tls12_resumption_with_session_cache(backend, start_tls, tmp_path):
    s = start_tls(backend, tls={"session_tickets": False})
    first, runs, _ = _resume(s, tmp_path, 3)
    assert not first.session_ticket, "a session ticket was issued with session_tickets = false"
    assert first.session_id, "no session id for the server session cache"
    for r in runs:
        assert r.reused, f"session-cache resumption: expected 'Reused, ...', got {r.summary!r}"
        assert not r.session_ticket


def test_tls13_resumption_with_tickets(backend, start_tls, tmp_path):
    # TLS 1.3 tickets arrive after the handshake: send a request so the client reads them.
    s = start_tls(backend)
    r0 = hs(s, "TLSv1.3", resumed=True)
    first, runs, _ = _resume(s, tmp_path, 2, extra=("-tls1_3",), request=GET_CLOSE)
    for r in runs:
        assert r.reused, r
        assert r.http_status == 200
    wait_metric(s, lambda: hs(s, "TLSv1.3", resumed=True), r0 + 2, "TLS 1.3 resumed handshakes")


def test_tls13_resumption_from_session_cache_without_tickets(backend, start_tls, tmp_path):
    # session_tickets = false: TLS 1.3 still resumes, through stateful tickets that only name
    # an entry of the server's session cache (what nginx and HAProxy do).
    s = start_tls(backend, tls={"session_tickets": False})
    first, runs, _ = _resume(s, tmp_path, 2, extra=("-tls1_3",), request=GET_CLOSE)
    for r in runs:
        assert r.reused, r
        assert r.http_status == 200


@pytest.mark.parametrize("tickets", [True, False], ids=["tickets", "session-cache"])
def test_resumption_across_two_workers(backend, start_tls, tmp_path, tickets):
    s = start_tls(backend, server={"workers": 2}, tls={"session_tickets": tickets})
    first, runs, _ = _resume(s, tmp_path, 12)
    reused = [r.reused for r in runs]
    assert all(reused), f"resumed {reused.count(True)}/12 with 2 workers: {reused}"


@pytest.mark.parametrize("tickets", [True, False], ids=["tickets", "session-cache"])
def test_resumption_survives_reload(backend, start_tls, tmp_path, tickets):
    # Ticket keys and the session cache are process-wide: a reload builds new SSL_CTXs, and
    # sessions from before it still resume, on any worker.
    tls = {"session_tickets": tickets}
    s = start_tls(backend, server={"workers": 2}, tls={**tls, "hsts": "max-age=1"})
    first, runs, sess = _resume(s, tmp_path, 1)
    assert runs[0].reused
    assert bool(first.session_ticket) == tickets
    new_cfg = tls_config(s, {"p": {"backends": [backend.address]}}, server={"workers": 2},
                         tls={**tls, "hsts": "max-age=2"})
    assert s.reload(new_cfg) == "ok", s.stderr()[-2000:]
    after = [s_client(s.port(), "-tls1_2", "-sess_in", sess, servername="a.test")
             for _ in range(6)]
    assert all(r.reused for r in after), [r.reused for r in after]


def test_expired_sessions_are_not_resumed(backend, start_tls, tmp_path):
    # session_timeout = "3s": a session resumes right away, and from ~3 s after the handshake
    # that made it (OpenSSL counts whole seconds, so 2-3 s) every way back is a full handshake:
    # by session id (the client does not know the server's lifetime: the server refuses it),
    # TLS 1.3 stateful tickets naming a cache entry, and stateless tickets.
    cache = start_tls(backend, tls={"session_tickets": False, "session_timeout": "3s"})
    tickets = start_tls(backend, tls={"session_timeout": "3s"})
    cases = {"tls1.2 session id": (cache, ("-tls1_2",), None),
             "tls1.3 stateful ticket": (cache, ("-tls1_3",), GET_CLOSE),
             "tls1.2 ticket": (tickets, ("-tls1_2",), None),
             "tls1.3 ticket": (tickets, ("-tls1_3",), GET_CLOSE)}
    made = time.monotonic()
    saved = {}
    for name, (s, extra, request) in cases.items():
        first, runs, sess = _resume(s, tmp_path, 1, extra=extra, request=request)
        assert runs[0].reused, f"{name}: not resumed at once: {runs[0].summary}"
        if name != "tls1.2 session id":
            assert "lifetime hint: 3 (seconds)" in first.stdout, f"{name}: {first.stdout}"
        saved[name] = sess

    def resumes(name):
        s, extra, request = cases[name]
        return s_client(s.port(), *extra, "-sess_in", saved[name], servername="a.test",
                        request=request)

    for name in cases:  # still good a moment later: the lifetime is not zero
        assert resumes(name).reused, name
    for name in cases:
        r = wait_until(lambda n=name: (lambda r: None if r.reused else r)(resumes(n)),
                       timeout=8, interval=0.2, message=f"{name} no longer resumed")
        assert r.handshake_ok and r.new, r  # a full handshake instead, not a failure
    assert time.monotonic() - made >= 1.9, "sessions expired before their lifetime"


@pytest.mark.parametrize("value", ['"500ms"', '"0"', '"25h"', '"1500ms"', "3"])
def test_t_session_timeout_errors(tdir, value):
    path, text = _t_config(tdir, ['{ cert = "certs/a.pem", key = "certs/a.key" }'])
    text = text.replace("]\n\n[pool.p]", f"]\nsession_timeout = {value}\n\n[pool.p]")
    with open(path, "w") as f:
        f.write(text)
    out = run_cli(["-t", "-c", path])
    assert out.returncode == 1, out.stdout + out.stderr
    errs = _t_errors(out, path)
    assert errs and errs[0][0] == _line(text, "session_timeout"), errs
    assert "session_timeout" in errs[0][2]
    ok = text.replace(f"session_timeout = {value}", 'session_timeout = "24h"')
    with open(path, "w") as f:
        f.write(ok)
    assert run_cli(["-t", "-c", path]).returncode == 0


# ---- certificate reload ----------------------------------------------------------------------

def test_cert_replaced_on_disk_and_sighup(backend, start_tls, pki):
    s = start_tls(backend, certs=("a", "b"))
    old, new = cert_der(pki.a[0]), cert_der(pki.a2[0])
    c = TlsRawClient(s.port(), "a.test")
    try:
        assert c.peer_der() == old
        assert c.request("GET", "/before").status == 200
        install(s, pki, "a2", as_name="a")  # same paths, new files
        with open(s.config_path) as f:
            cfg = f.read()
        assert s.reload(cfg) == "ok", s.stderr()[-2000:]
        # New connections see the new certificate (exact SNI and wildcard).
        for name in ("a.test", "x.wild.test"):
            r = s_client(s.port(), servername=name)
            assert r.cert_der == new, f"{name}: still {r.subject!r} after reload"
        assert s_client(s.port(), servername="b.test").cert_der == cert_der(pki.b[0])
        # The already open TLS keep-alive connection keeps working.
        for i in range(3):
            r = c.request("GET", f"/after/{i}")
            assert r.status == 200, r
            assert not r.connection_close
        assert c.peer_der() == old
    finally:
        c.close()


def test_reload_with_bad_certificate_keeps_old(backend, start_tls, pki):
    s = start_tls(backend, certs=("a",))
    with open(s.config_path) as f:
        good = f.read()
    bad = good.replace("certs/a.pem", "certs/missing.pem")
    assert bad != good
    assert s.reload(bad) == "error"
    r = s_client(s.port(), servername="a.test", request=GET_CLOSE)
    assert r.cert_der == cert_der(pki.a[0]) and r.http_status == 200, r
    # A key that does not belong to the certificate is refused the same way.
    install(s, pki, "b")
    mismatched = good.replace("certs/a.key", "certs/b.key")
    assert s.reload(mismatched) == "error"
    assert s_client(s.port(), servername="a.test", request=GET_CLOSE).http_status == 200


# ---- redirect_https and HSTS ---------------------------------------------------------------

def test_redirect_https_308_exact_location(backend, start_tls):
    s = start_tls(backend, plain={"redirect_https": "https://{host}:8443{uri}"})
    port = s.port("plain")
    r = http_request(port, "GET", "/a/b%20c?x=1&y=two", host="app.test:8080")
    assert r.status == 308, r
    assert r.header("location") == "https://app.test:8443/a/b%20c?x=1&y=two", r.headers
    r = http_request(port, "POST", "/form", host="app.test", body=b"k=v")
    assert r.status == 308 and r.header("location") == "https://app.test:8443/form", r.headers
    out = curl(f"http://127.0.0.1:{port}/c?q=1", "-H", "Host: www.example.test")
    status, headers, _ = split_http(out.stdout)
    assert status == 308 and headers["location"] == "https://www.example.test:8443/c?q=1", \
        out.stdout[:400]
    assert backend.requests == [], "redirect listener routed a request"


def test_hsts_on_proxied_and_error_responses(backend, start_tls):
    routes = [{"name": "api", "path": "/api/", "pool": "p"}]
    s = start_tls(backend, tls={"hsts": HSTS}, routes=routes, plain={})
    with TlsRawClient(s.port(), "a.test") as c:
        ok = c.request("GET", "/api/x")
        assert ok.status == 200
        assert ok.header_all("strict-transport-security") == [HSTS], ok.headers
        nf = c.request("GET", "/nowhere")
        assert_proxy_error(nf, 404, "no_route")
        assert nf.header_all("strict-transport-security") == [HSTS], nf.headers
    out = curl_https(s, "/nowhere", "a.test", None)
    status, headers, _ = split_http(out.stdout)
    assert status == 404 and headers.get("strict-transport-security") == HSTS, out.stdout[:500]
    # Not on the plain listener of the same config.
    plain = http_request(s.port("plain"), "GET", "/api/x")
    assert plain.status == 200 and not plain.has_header("strict-transport-security")


def test_hsts_on_redirect_answers(backend, make_sluice, pki):
    # Every local answer goes through one builder: a TLS listener that redirects elsewhere
    # carries the listener's HSTS header too (it used to be skipped on redirects).
    s = make_sluice()
    install(s, pki, "a")
    port = free_port()
    listeners = [{"name": "web", "listen": f"127.0.0.1:{port}",
                  "redirect_https": "https://{host}:9443{uri}",
                  "tls": {"certificates": [entry("a")], "hsts": HSTS}}]
    s.start(s.config(routes=[], pools={"p": {"backends": [backend.address]}},
                     listeners=listeners))
    with TlsRawClient(port, "a.test") as c:
        r = c.request("GET", "/x?y=1")
        assert r.status == 308 and r.header("location") == "https://test.local:9443/x?y=1", r.headers
        assert r.header_all("strict-transport-security") == [HSTS], r.headers
        assert r.header("x-request-id"), r.headers


# ---- clean close ------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["TLSv1_2", "TLSv1_3"])
def test_close_notify_before_close(backend, start_tls, version):
    """RFC 8446 6.1 / RFC 5246 7.2.1: a party MUST send close_notify before closing its write
    side. After a `Connection: close` response the client must see close_notify, not a bare
    TCP FIN (which s_client reports as "unexpected eof while reading")."""
    s = start_tls(backend)
    v = getattr(ssl.TLSVersion, version)
    ctx = client_context(min_version=v, max_version=v)
    ctx.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF  # Python ignores a missing close_notify by default
    raw = socket.create_connection(("127.0.0.1", s.port()), timeout=10)
    c = ctx.wrap_socket(raw, server_hostname="a.test", suppress_ragged_eofs=False)
    try:
        c.sendall(b"GET /close HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        data = b""
        try:
            while True:
                piece = c.recv(65536)
                if not piece:
                    break
                data += piece
            outcome = "close_notify"
        except ssl.SSLError as e:  # SSLEOFError, or UNEXPECTED_EOF_WHILE_READING (OpenSSL 3)
            outcome = f"TCP FIN without close_notify ({e})"
        assert data.startswith(b"HTTP/1.1 200"), data[:200]
        assert outcome == "close_notify", outcome
    finally:
        c.close()
    r = s_client(s.port(), servername="a.test", request=GET_CLOSE)
    assert r.http_status == 200
    assert "unexpected eof while reading" not in r.text, "s_client: unexpected eof while reading"


# ---- bad input on the TLS port -----------------------------------------------------------

def test_plain_http_to_tls_port(backend, start_tls):
    s = start_tls(backend)
    e0 = hs_err(s, "http_request")
    with RawClient(s.port()) as c:
        c.send(b"GET /plain HTTP/1.1\r\nHost: a.test\r\n\r\n")
        r = c.read_response()
        assert_proxy_error(r, 400, "plain_http_to_tls_port")
        assert c.is_closed(3), "connection not closed after the plain-HTTP 400"
    wait_metric(s, lambda: hs_err(s, "http_request"), e0 + 1, 'reason="http_request"')
    out = curl(f"http://127.0.0.1:{s.port()}/plain")
    status, _, body = split_http(out.stdout)
    assert status == 400 and b"plain_http_to_tls_port" in body, out.stdout[:400]
    assert backend.requests == []


def _closed_within(c, timeout):
    """(closed?, bytes received before the close, seconds)"""
    t0 = time.monotonic()
    got = c.wait_closed(timeout)
    return got is not None, got, time.monotonic() - t0


def test_garbage_truncated_and_stalled_handshakes(backend, start_tls):
    s = start_tls(backend, server={"client_header_timeout": "1s"})
    good = TlsRawClient(s.port(), "a.test")
    try:
        assert good.request("GET", "/good/0").status == 200
        base_active = metric(s, "sluice_connections_active", listener="web")
        e0 = hs_err(s)
        t0 = hs_err(s, "handshake_timeout")
        hello = client_hello("a.test")
        assert hello[:1] == b"\x16" and len(hello) > 100

        # Garbage: binary bytes that are neither TLS nor HTTP.
        g = RawClient(s.port())
        g.send(bytes(range(1, 256)) * 4)
        closed, got, _ = _closed_within(g, 3)
        assert closed, "garbage connection not closed"
        assert not (got or b"").startswith(b"HTTP/"), got[:100]
        wait_metric(s, lambda: hs_err(s), e0 + 1, "handshake error for garbage")

        # Truncated ClientHello followed by EOF.
        tr = RawClient(s.port())
        tr.send(hello[: len(hello) // 2])
        tr.shutdown_write()
        closed, _, _ = _closed_within(tr, 3)
        assert closed, "truncated ClientHello + EOF not closed"

        # Stalls: half a ClientHello, a lone record header, and nothing at all.
        stalls = [RawClient(s.port()) for _ in range(3)]
        stalls[0].send(hello[: len(hello) // 2])
        stalls[1].send(hello[:3])
        started = time.monotonic()
        # While they stall, the good connection and new handshakes are served promptly.
        for i in range(3):
            t = time.monotonic()
            assert good.request("GET", f"/good/during/{i}").status == 200
            assert time.monotonic() - t < 0.5
        r = s_client(s.port(), servername="a.test", request=GET_CLOSE)
        assert r.http_status == 200, r
        for i, st in enumerate(stalls):
            closed, _, _ = _closed_within(st, 5)
            assert closed, f"stalled handshake {i} not closed by client_header_timeout"
            elapsed = time.monotonic() - started
            assert 0.8 <= elapsed <= 4.0, f"stall {i} closed after {elapsed:.2f}s (timeout 1s)"
        wait_metric(s, lambda: hs_err(s, "handshake_timeout"), t0 + 2,
                    'reason="handshake_timeout"')
        for c in [g, tr, *stalls]:
            c.close()
        wait_until(lambda: metric(s, "sluice_connections_active", listener="web")
                   == base_active, 5, message="bad connections released")
        assert good.request("GET", "/good/after").status == 200
    finally:
        good.close()
    assert [q.path for q in backend.requests if not q.path.startswith("/good/")] == \
        ["/via-s-client"]


# ---- access log and metrics -------------------------------------------------------------------

def test_access_log_tls_field(backend, start_tls):
    s = start_tls(backend, plain={})
    v12 = client_context(max_version=ssl.TLSVersion.TLSv1_2)
    v13 = client_context(min_version=ssl.TLSVersion.TLSv1_3)
    with TlsRawClient(s.port(), "a.test", ctx=v12) as c:
        assert c.tls.version() == "TLSv1.2"
        assert c.request("GET", "/log/v12").status == 200
    with TlsRawClient(s.port(), "a.test", ctx=v13) as c:
        assert c.request("GET", "/log/v13").status == 200
    assert http_request(s.port("plain"), "GET", "/log/plain").status == 200
    e12 = s.wait_access(lambda e: e.get("path") == "/log/v12")
    e13 = s.wait_access(lambda e: e.get("path") == "/log/v13")
    ep = s.wait_access(lambda e: e.get("path") == "/log/plain")
    assert (e12.get("tls"), e13.get("tls"), ep.get("tls")) == ("TLSv1.2", "TLSv1.3", "-")


def test_handshake_metrics(backend, start_tls, tmp_path):
    s = start_tls(backend)
    m = s.metrics()
    for fam in ("sluice_tls_handshakes_total", "sluice_tls_handshake_errors_total"):
        assert f"# TYPE {fam} counter" in m.text, fam
    full12, full13 = hs(s, "TLSv1.2", False), hs(s, "TLSv1.3", False)
    res12 = hs(s, "TLSv1.2", True)
    for _ in range(2):
        assert s_client(s.port(), "-tls1_2", servername="a.test").handshake_ok
    for _ in range(3):
        assert s_client(s.port(), "-tls1_3", servername="b.test").handshake_ok
    _resume(s, tmp_path, 2)  # one more full 1.2 + two resumed
    wait_until(lambda: (hs(s, "TLSv1.2", False), hs(s, "TLSv1.3", False),
                        hs(s, "TLSv1.2", True)) == (full12 + 3, full13 + 3, res12 + 2), 5,
               message="handshake counters by version/resumed")
    for labels, _ in s.metrics().find("sluice_tls_handshakes_total"):
        assert labels["listener"] == "web"
        assert labels["version"] in ("TLSv1.2", "TLSv1.3"), labels
        assert labels["resumed"] in ("true", "false"), labels


# ---- large bodies ------------------------------------------------------------------------------

def test_large_response_and_upload_through_tls(backend, start_tls, pki, tmp_path):
    size_down, size_up = 5 << 20, 3 << 20
    backend.on("/big", Response(body_size=size_down))
    backend.on("/big-chunked", Response(body_size=size_down, mode="chunked"))
    backend.on("/upload", Response(echo_sha256=True))
    s = start_tls(backend)
    want_down = pattern_sha256(size_down)
    for path in ("/big", "/big-chunked"):
        dst = tmp_path / f"{path.strip('/')}.bin"
        out = curl_https(s, path, "a.test", pki, "-o", str(dst), include=False)
        assert out.returncode == 0, out.stderr
        data = dst.read_bytes()
        assert len(data) == size_down
        assert hashlib.sha256(data).hexdigest() == want_down, path
    up = tmp_path / "up.bin"
    up.write_bytes(pattern_bytes(size_up))
    out = curl_https(s, "/upload", "a.test", pki, "--data-binary", f"@{up}",
                     "-H", "Content-Type: application/octet-stream")
    assert out.returncode == 0, out.stderr
    status, _, body = split_http(out.stdout.split(b"HTTP/1.1 100 Continue\r\n\r\n")[-1])
    assert status == 200
    assert body.decode().strip() == pattern_sha256(size_up)
    assert backend.requests[-1].body == pattern_bytes(size_up)
    # And with Python's ssl on one keep-alive connection, both directions.
    with TlsRawClient(s.port(), "a.test") as c:
        r = c.request("GET", "/big")
        assert hashlib.sha256(r.body).hexdigest() == want_down
        r = c.request("POST", "/upload", body=pattern_bytes(size_up))
        assert r.body.decode().strip() == pattern_sha256(size_up)


# ---- upstream TLS ----------------------------------------------------------------------------

@pytest.fixture
def tls_backend(pki):
    started = []

    def make(name="tb", cert="backend"):
        c, k = getattr(pki, cert)
        be = TlsBackend(name, certfile=c, keyfile=k).start()
        started.append(be)
        return be

    yield make
    for be in started:
        be.stop()


def _upstream_errors(s, kind="tls_handshake"):
    return metric(s, "sluice_upstream_errors_total", kind=kind)


def test_upstream_tls_verified_with_ca_and_server_name(tls_backend, proxy, pki):
    tb = tls_backend()
    tb.on("/big", Response(body_size=5 << 20))
    tb.on("/upload", Response(echo_sha256=True))
    s = proxy(tb, pool_opts={"tls": True, "tls_ca": pki.ca.cert,
                             "tls_server_name": "backend.test"})
    with RawClient(s.port()) as c:
        for i in range(3):
            r = c.request("GET", f"/up/{i}", host="app.test")
            assert r.status == 200, r
            assert r.header("x-backend") == "tb"
        r = c.request("GET", "/big")
        assert r.status == 200 and hashlib.sha256(r.body).hexdigest() == pattern_sha256(5 << 20)
        r = c.request("POST", "/upload", body=pattern_bytes(3 << 20))
        assert r.status == 200 and r.body.decode().strip() == pattern_sha256(3 << 20)
    assert tb.tls_failures == 0, tb.tls_errors
    assert tb.tls_versions and set(tb.tls_versions) <= {"TLSv1.2", "TLSv1.3"}
    assert tb.accepted == 1, f"upstream TLS connections not reused: {tb.accepted}"
    assert tb.requests[0].header("host") == "app.test"
    assert _upstream_errors(s) == 0


def test_upstream_tls_from_tls_listener(tls_backend, start_tls, pki):
    tb = tls_backend()
    s = start_tls(pools={"p": {"backends": [tb.address], "tls": True, "tls_ca": pki.ca.cert,
                               "tls_server_name": "backend.test"}})
    out = curl_https(s, "/both-ways", "a.test", pki)
    assert out.returncode == 0, out.stderr
    status, headers, _ = split_http(out.stdout)
    assert status == 200 and headers.get("x-backend") == "tb"
    assert tb.requests[-1].header("x-forwarded-proto") == "https"


@pytest.mark.parametrize("case", ["untrusted-ca", "system-store", "name-mismatch",
                                  "default-name-is-backend-host"])
def test_upstream_tls_verification_failure_is_502(tls_backend, proxy, pki, case):
    opts = {"tls": True}
    cert = "backend"
    if case == "untrusted-ca":
        cert = "backend_untrusted"
        opts.update(tls_ca=pki.ca.cert, tls_server_name="backend.test")
    elif case == "system-store":
        opts.update(tls_server_name="backend.test")
    elif case == "name-mismatch":
        opts.update(tls_ca=pki.ca.cert, tls_server_name="other.test")
    else:  # cert only names backend.test; the backend host is 127.0.0.1
        opts.update(tls_ca=pki.ca.cert)
    tb = tls_backend(cert=cert)
    s = proxy(tb, pool_opts=opts)
    r = http_request(s.port(), "GET", "/verify")
    assert_proxy_error(r, 502, "bad_gateway")
    wait_until(lambda: _upstream_errors(s) >= 1, 5,
               message='sluice_upstream_errors_total{kind="tls_handshake"}')
    samples = s.metrics().find("sluice_upstream_errors_total", kind="tls_handshake")
    assert samples[0][0].get("pool") == "p" and samples[0][0].get("backend") == tb.address, \
        samples
    assert tb.requests == [], "a request was sent over an unverified connection"


def test_upstream_tls_verify_off(tls_backend, proxy, pki):
    tb = tls_backend(cert="backend_untrusted")
    s = proxy(tb, pool_opts={"tls": True, "tls_verify": False})
    r = http_request(s.port(), "GET", "/noverify")
    assert r.status == 200 and r.header("x-backend") == "tb", r
    assert _upstream_errors(s) == 0


def test_plain_pool_against_tls_backend_is_502(tls_backend, proxy):
    # Sanity: without tls = true the proxy speaks plain HTTP and the TLS backend rejects it.
    tb = tls_backend()
    s = proxy(tb)
    r = http_request(s.port(), "GET", "/plain-to-tls")
    assert r.status == 502, r


# ---- sluice -t ---------------------------------------------------------------------------

def _t_config(dirpath, cert_lines):
    port = free_port()
    text = (
        "[server]\n"
        "workers = 1\n"
        "\n"
        "[[listener]]\n"
        'name = "web"\n'
        f'listen = "127.0.0.1:{port}"\n'
        "[listener.tls]\n"
        "certificates = [\n"
        + "".join(f"  {l},\n" for l in cert_lines)
        + "]\n"
        "\n"
        "[pool.p]\n"
        'backends = [{ address = "127.0.0.1:9" }]\n'
        "\n"
        "[[route]]\n"
        'name = "r"\n'
        'path = "/"\n'
        'pool = "p"\n'
    )
    path = os.path.join(dirpath, "sluice.toml")
    with open(path, "w") as f:
        f.write(text)
    return path, text


def _t_errors(out, path):
    found = []
    for l in (out.stdout + out.stderr).splitlines():
        m = re.search(re.escape(path) + r":(\d+):(\d+): (.+)$", l)
        if m:
            found.append((int(m.group(1)), int(m.group(2)), m.group(3)))
    return found


def _line(text, needle):
    return next(i for i, l in enumerate(text.splitlines(), 1) if needle in l)


@pytest.fixture
def tdir(tmp_path, pki):
    d = tmp_path / "cfg"
    os.makedirs(d / "certs")
    for n in ("a", "b"):
        c, k = getattr(pki, n)
        shutil.copyfile(c, d / "certs" / f"{n}.pem")
        shutil.copyfile(k, d / "certs" / f"{n}.key")
    return str(d)


def test_t_accepts_relative_certificate_paths(tdir):
    path, _ = _t_config(tdir, ['{ cert = "certs/a.pem", key = "certs/a.key" }',
                               '{ cert = "certs/b.pem", key = "certs/b.key" }'])
    out = run_cli(["-t", "-c", path], cwd="/")  # relative to the config file, not the cwd
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("case", ["missing-cert", "missing-key", "mismatched-key",
                                  "not-a-certificate", "missing-ocsp"])
def test_t_certificate_errors(tdir, case):
    bad = {
        "missing-cert": '{ cert = "certs/nope.pem", key = "certs/b.key" }',
        "missing-key": '{ cert = "certs/b.pem", key = "certs/nope.key" }',
        "mismatched-key": '{ cert = "certs/b.pem", key = "certs/a.key" }',
        "not-a-certificate": '{ cert = "certs/a.key", key = "certs/a.key" }',
        "missing-ocsp": '{ cert = "certs/b.pem", key = "certs/b.key", ocsp = "certs/nope.der" }',
    }[case]
    names = {"missing-cert": ["nope.pem"], "missing-key": ["nope.key"],
             "mismatched-key": ["a.key", "b.pem"], "not-a-certificate": ["a.key"],
             "missing-ocsp": ["nope.der"]}[case]
    path, text = _t_config(tdir, ['{ cert = "certs/a.pem", key = "certs/a.key" }', bad])
    out = run_cli(["-t", "-c", path])
    assert out.returncode == 1, out.stdout + out.stderr
    errs = _t_errors(out, path)
    assert errs, f"no FILE:LINE:COL error: {out.stdout + out.stderr}"
    want_line = _line(text, bad)
    assert errs[0][0] == want_line, f"error at {errs[0][:2]}, want line {want_line}: {errs}"
    assert errs[0][1] >= 1
    for n in names:
        assert n in errs[0][2], f"{n!r} not named in {errs[0][2]!r}"
    assert "test is successful" not in out.stdout + out.stderr
    # A failing start too: the binary refuses to run with it.
    start = run_cli(["-c", path], timeout=10)
    assert start.returncode != 0


# ---- active health checks over TLS (issue 3: checks use the pool's TLS setting) -----------------

TLS_HEALTH = {"path": "/healthz", "interval": "100ms", "timeout": "500ms",
              "healthy_threshold": 1, "unhealthy_threshold": 2, "expect_status": "200-399"}


def _backend_state(s, address):
    import json
    _, _, body = s.admin_get("/health")
    for b in json.loads(body)["pools"]["p"]["backends"]:
        if b["address"] == address:
            return b["state"]
    return None


def test_health_checks_speak_tls_and_verify(tls_backend, proxy, pki):
    good = tls_backend()
    s = proxy(good, pool_opts={"tls": True, "tls_ca": pki.ca.cert, "tls_server_name": "backend.test",
                               "health": TLS_HEALTH})
    # The check is a real HTTPS GET: the backend sees it, decrypted, on the check path.
    wait_until(lambda: any(r.path == "/healthz" for r in good.requests), timeout=5,
               message="a health check request over TLS")
    assert good.tls_failures == 0, good.tls_errors
    assert _backend_state(s, good.address) == "up"


def test_health_check_fails_on_untrusted_certificate(tls_backend, proxy, pki):
    bad = tls_backend(cert="backend_untrusted")
    s = proxy(bad, pool_opts={"tls": True, "tls_ca": pki.ca.cert,
                              "tls_server_name": "backend.test", "health": TLS_HEALTH})
    wait_until(lambda: _backend_state(s, bad.address) == "down", timeout=5,
               message="backend with an untrusted certificate marked down")
    assert not any(r.path == "/healthz" for r in bad.requests)
