"""CORS and header policies with the real binary: preflights answered at the edge (and never
seen by the backend), simple and credentialed requests, the backend's own Access-Control-*
headers replaced, Vary merged, origin probes (reflection, prefix/suffix tricks, null, scheme
downgrade) refused, header edits on proxied answers and on the proxy's own errors, and the
config errors with their positions.
"""

import json

import pytest

from sluicetest import RawClient, Response, run_cli

CORS = """
[middleware.cors]
type = "cors"
allow_origins = ["https://app.example.com", "https://*.example.com", "http://localhost:3000"]
allow_methods = ["GET", "POST", "PUT", "DELETE"]
allow_headers = ["Authorization", "Content-Type", "X-Requested-With"]
expose_headers = ["X-Total", "RateLimit-Remaining"]
allow_credentials = true
max_age = "10m"
"""


def start(make_sluice, backend, extra, middleware, path="/"):
    s = make_sluice()
    s.start(s.config(routes=[{"name": "api", "path": path, "pool": "p",
                              "middleware": middleware}],
                     pools={"p": {"backends": [backend.address]}}, extra=extra))
    return s


def request(s, method="GET", target="/", headers=()):
    with RawClient(s.port()) as c:
        return c.request(method, target, list(headers))


def acao_headers(r):
    return {k.lower(): v for k, v in r.headers if k.lower().startswith("access-control-")}


def preflight(s, origin, method="PUT", req_headers=None, extra=()):
    h = [("Origin", origin), ("Access-Control-Request-Method", method)]
    if req_headers is not None:
        h.append(("Access-Control-Request-Headers", req_headers))
    return request(s, "OPTIONS", "/items", h + list(extra))


# ---- CORS -----------------------------------------------------------------------------------

def test_allowed_preflight_is_answered_by_the_proxy(backend, make_sluice):
    s = start(make_sluice, backend, CORS, ["cors"])
    r = preflight(s, "https://app.example.com", "PUT", "content-type, authorization")
    assert r.status == 204, r
    h = acao_headers(r)
    assert h == {"access-control-allow-origin": "https://app.example.com",
                 "access-control-allow-methods": "GET, POST, PUT, DELETE",
                 "access-control-allow-headers": "content-type, authorization",
                 "access-control-allow-credentials": "true",
                 "access-control-max-age": "600"}
    assert r.header("vary") == \
        "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
    assert r.body == b""
    # Wildcard subdomains, with the origin echoed (never a list).
    r = preflight(s, "https://a.b.example.com", "DELETE")
    assert r.status == 204 and r.header("access-control-allow-origin") == "https://a.b.example.com"
    assert backend.requests == []


@pytest.mark.parametrize("origin,method,headers", [
    ("https://evil.com", "PUT", None),
    ("https://app.example.com", "PATCH", None),               # method not allowed
    ("https://app.example.com", "PUT", "x-secret"),           # header not allowed
    ("https://app.example.com", "PUT", "content-type, x-b"),  # one of them not allowed
    ("null", "GET", None),
    ("http://app.example.com", "GET", None),                  # scheme downgrade
    ("https://example.com", "GET", None),                     # the wildcard needs a label
    ("https://example.com.evil.net", "GET", None),
    ("https://evilexample.com", "GET", None),
    ("https://app.example.com.evil.net", "GET", None),
    ("https://app.example.com:8443", "GET", None),
    ("http://localhost:30001", "GET", None),
    ("https://app.example.com/", "GET", None),
    ("garbage", "GET", None),
])
def test_disallowed_preflight_is_403_without_cors_headers(backend, make_sluice, origin, method,
                                                           headers):
    s = start(make_sluice, backend, CORS, ["cors"])
    r = preflight(s, origin, method, headers)
    assert r.status == 403
    assert json.loads(r.body)["error"] == "cors_forbidden"
    assert acao_headers(r) == {}
    assert backend.requests == []


def test_private_network_preflight(backend, make_sluice):
    s = start(make_sluice, backend, CORS, ["cors"])
    pna = [("Access-Control-Request-Private-Network", "true")]
    assert preflight(s, "https://app.example.com", "GET", extra=pna).status == 403
    s2 = start(make_sluice, backend, CORS + "allow_private_network = true\n", ["cors"])
    r = preflight(s2, "https://app.example.com", "GET", extra=pna)
    assert r.status == 204
    assert r.header("access-control-allow-private-network") == "true"


def test_actual_requests_get_the_policy_headers(make_backend, make_sluice):
    be = make_backend("api")
    be.set_default(Response(headers=[("Access-Control-Allow-Origin", "*"),
                                      ("access-control-allow-origin", "https://other.net"),
                                      ("Access-Control-Allow-Methods", "GET"),
                                      ("Vary", "Accept-Encoding"), ("X-Total", "42")]))
    s = start(make_sluice, be, CORS, ["cors"])
    r = request(s, "GET", "/items", [("Origin", "https://app.example.com")])
    assert r.status == 200
    assert acao_headers(r) == {"access-control-allow-origin": "https://app.example.com",
                               "access-control-allow-credentials": "true",
                               "access-control-expose-headers": "X-Total, RateLimit-Remaining"}
    assert [v for k, v in r.headers if k.lower() == "vary"] == ["Accept-Encoding, Origin"]
    # The backend saw the request, with its Origin.
    assert be.requests[-1].header("origin") == "https://app.example.com"
    # A disallowed origin is still proxied (the browser enforces CORS) but gets no CORS header.
    r = request(s, "GET", "/items", [("Origin", "https://evil.com")])
    assert r.status == 200 and acao_headers(r) == {}
    assert [v for k, v in r.headers if k.lower() == "vary"] == ["Accept-Encoding, Origin"]
    # No Origin at all: Vary still says the answer depends on it.
    r = request(s, "GET", "/items")
    assert r.status == 200 and acao_headers(r) == {}
    assert r.header("vary") == "Accept-Encoding, Origin"
    # A plain OPTIONS (no CORS request headers) is proxied like any request.
    n = len(be.requests)
    r = request(s, "OPTIONS", "/items", [("Origin", "https://app.example.com")])
    assert len(be.requests) == n + 1 and r.status == 200


def test_proxy_errors_carry_cors_headers_for_allowed_origins(make_sluice):
    from sluicetest import free_port
    s = make_sluice()
    s.start(s.config(routes=[{"name": "api", "path": "/", "pool": "p", "middleware": ["cors"]}],
                     pools={"p": {"backends": [f"127.0.0.1:{free_port()}"]}}, extra=CORS))
    r = request(s, "GET", "/x", [("Origin", "https://app.example.com")])
    assert r.status in (502, 503)
    assert r.header("access-control-allow-origin") == "https://app.example.com"


def test_reject_disallowed_answers_403_but_not_same_origin(backend, make_sluice):
    s = start(make_sluice, backend, CORS + "reject_disallowed = true\n", ["cors"])
    r = request(s, "POST", "/x", [("Origin", "https://evil.com"), ("Content-Length", "0")])
    assert r.status == 403 and json.loads(r.body)["error"] == "cors_forbidden"
    assert backend.requests == []
    same = f"http://127.0.0.1:{s.port()}"
    r = request(s, "POST", "/x", [("Origin", same), ("Host", f"127.0.0.1:{s.port()}"),
                                  ("Content-Length", "0")])
    assert r.status == 200
    assert request(s, "GET", "/x").status == 200  # no Origin: not a CORS request


def test_star_origin_without_credentials(backend, make_sluice):
    cfg = ('[middleware.cors]\ntype = "cors"\nallow_origins = ["*"]\n'
           'allow_methods = ["GET", "PUT"]\nallow_headers = ["*"]\n')
    s = start(make_sluice, backend, cfg, ["cors"])
    r = preflight(s, "https://anyone.net", "PUT", "x-whatever")
    assert r.status == 204
    assert r.header("access-control-allow-origin") == "*"
    assert r.header("access-control-allow-headers") == "x-whatever"
    assert r.header("access-control-allow-credentials") is None
    r = request(s, "GET", "/", [("Origin", "https://anyone.net")])
    assert r.header("access-control-allow-origin") == "*"
    assert preflight(s, "null", "GET").status == 403


def test_cors_after_jwt_warns(tmp_path, make_sluice):
    s = make_sluice()
    path = tmp_path / "c.toml"
    path.write_text(s.config(
        routes=[{"name": "api", "path": "/", "pool": "p", "middleware": ["auth", "cors"]}],
        pools={"p": {"backends": ["127.0.0.1:1"]}},
        extra=CORS + '[middleware.auth]\ntype = "jwt"\nalgorithms = ["HS256"]\nsecret = "s"\n'))
    r = run_cli(["-t", "-c", str(path)])
    assert r.returncode == 0
    assert "'cors' comes after 'auth': CORS preflights carry no credentials" in r.stderr


# ---- headers --------------------------------------------------------------------------------

HEADERS = """
[middleware.edit]
type = "headers"
request_set = { "X-Env" = "prod", "X-Seen-Host" = "{scheme}://{host}" }
request_add = { "X-Req" = "{request_id}" }
request_remove = ["Cookie"]
response_set = { "X-Served-By" = "{route}/{pool}" }
response_add = { "X-Client" = "{client_ip}" }
response_remove = ["Server"]
preset = "security"
frame_options = "SAMEORIGIN"
content_security_policy = "default-src 'self'"
"""


def test_header_edits_on_proxied_requests_and_responses(make_backend, make_sluice):
    be = make_backend("api")
    be.set_default(Response(headers=[("Server", "gunicorn"), ("X-Frame-Options", "DENY")]))
    s = start(make_sluice, be, HEADERS, ["edit"])
    r = request(s, "GET", "/x", [("Cookie", "a=b"), ("X-Env", "dev"), ("Host", "Api.Example.com")])
    assert r.status == 200
    seen = be.requests[-1]
    assert seen.header("x-env") == "prod"
    assert seen.header("x-seen-host") == "http://api.example.com"
    assert seen.header("x-req") == r.header("x-request-id")
    assert seen.header("cookie") is None
    assert r.header("server") is None
    assert r.header("x-served-by") == "api/p"
    assert r.header("x-client") == "127.0.0.1"
    # The preset fills in what the backend did not set, and keeps what it did.
    assert r.header("x-frame-options") == "DENY"
    assert r.header("x-content-type-options") == "nosniff"
    assert r.header("referrer-policy") == "strict-origin-when-cross-origin"
    assert r.header("cross-origin-opener-policy") == "same-origin"
    assert r.header("content-security-policy") == "default-src 'self'"
    assert r.header("permissions-policy").startswith("camera=()")


def test_header_edits_apply_to_the_proxys_own_answers(make_sluice):
    from sluicetest import free_port
    s = make_sluice()
    s.start(s.config(routes=[{"name": "api", "path": "/", "pool": "p",
                              "middleware": ["cors", "edit"]}],
                     pools={"p": {"backends": [f"127.0.0.1:{free_port()}"]}},
                     extra=CORS + HEADERS))
    r = request(s, "GET", "/x")
    assert r.status in (502, 503)
    assert r.header("x-frame-options") == "SAMEORIGIN"
    assert r.header("x-served-by") == "api/p"
    r = preflight(s, "https://app.example.com", "PUT")
    assert r.status == 204
    assert r.header("x-content-type-options") == "nosniff"
    assert r.header("x-served-by") == "api/-"  # answered before a pool was chosen


@pytest.mark.parametrize("body,message,line,col", [
    ('allow_origins = ["*"]\nallow_credentials = true\n',
     'allow_credentials: cannot be true with allow_origins = "*"', 4, 21),
    ('allow_origins = ["https://a.com/"]\n', "(an origin has no path", 3, 18),
    ('allow_origins = ["a.com"]\n', 'an origin has a scheme: "https://a.com"', 3, 18),
    ('allow_origins = []\n', "expected at least one origin", 3, 17),
    ('allow_origins = ["https://a.com"]\nallow_methods = ["GE T"]\n', "not a valid method", 4, 18),
])
def test_cors_config_errors(tmp_path, make_sluice, body, message, line, col):
    s = make_sluice()
    path = tmp_path / "c.toml"
    text = s.config(routes=[], pools={}, admin=False, log={"access": "off"})
    # The middleware table first, so the line numbers in the expectations are stable.
    path.write_text('\n[middleware.c]\ntype = "cors"\n'.lstrip("\n") + body + text)
    r = run_cli(["-t", "-c", str(path)])
    assert r.returncode == 1
    expected = f"{path}:{line}:{col}: middleware.c."
    assert expected in r.stderr and message in r.stderr, r.stderr


@pytest.mark.parametrize("body,message", [
    ('response_set = { "Content-Length" = "1" }', "'Content-Length' is managed by the proxy"),
    ('request_remove = ["Host"]', "'Host' is managed by the proxy"),
    ('request_set = { "Connection" = "x" }', "'Connection' is managed by the proxy"),
    ('response_remove = ["Transfer-Encoding"]', "'Transfer-Encoding' is managed by the proxy"),
    ('response_set = { "X" = "{nope}" }', "unknown placeholder {nope}"),
    ('request_set = { "X" = "{pool}" }', "{pool} is only known in response values"),
    ('preset = "paranoid"', 'expected "security"'),
    ('frame_options = "DENY"', 'only with preset = "security"'),
    ('preset = "security"\nframe_options = "ALLOW"', 'expected "DENY" or "SAMEORIGIN"'),
    ('response_set = { "Bad Name" = "x" }', "is not a valid header name"),
])
def test_headers_config_errors(tmp_path, make_sluice, body, message):
    s = make_sluice()
    path = tmp_path / "h.toml"
    path.write_text('[middleware.h]\ntype = "headers"\n' + body + "\n" +
                    s.config(routes=[], pools={}, admin=False, log={"access": "off"}))
    r = run_cli(["-t", "-c", str(path)])
    assert r.returncode == 1 and message in r.stderr, r.stderr
    assert f"{path}:" in r.stderr
