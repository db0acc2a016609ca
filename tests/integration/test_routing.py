"""Routing: host (exact, wildcard), longest path prefix, path_exact, methods, strip_prefix,
404 no_route, /health on listeners."""

import pytest

from sluicetest import RawClient, assert_proxy_error, http_request


@pytest.fixture
def three(make_backend):
    return make_backend("A"), make_backend("B"), make_backend("C")


def _pools(*bes):
    return {be.name: {"backends": [be.address]} for be in bes}


def _who(s, target, host="any.test", method="GET", body=None):
    r = http_request(s.port(), method, target, host=host, body=body)
    return r.header("x-backend") if r.status == 200 else r.status


def test_longest_prefix_wins_regardless_of_order(three, proxy):
    a, b, c = three
    s = proxy(pools=_pools(a, b, c), routes=[
        {"name": "v2", "path": "/api/v2/", "pool": "C"},
        {"name": "root", "path": "/", "pool": "A"},
        {"name": "api", "path": "/api/", "pool": "B"},
    ])
    assert _who(s, "/") == "A"
    assert _who(s, "/x") == "A"
    assert _who(s, "/api") == "A"
    assert _who(s, "/api/") == "B"
    assert _who(s, "/api/users?x=/api/v2/") == "B"
    assert _who(s, "/api/v2/") == "C"
    assert _who(s, "/api/v2/things") == "C"
    assert _who(s, "/api/v3/things") == "B"


def test_no_route_404(three, proxy):
    a, _, _ = three
    s = proxy(pools=_pools(a), routes=[{"name": "api", "path": "/api/", "pool": "A"}])
    r = http_request(s.port(), "GET", "/other")
    assert_proxy_error(r, 404, "no_route")
    with RawClient(s.port()) as c:
        assert_proxy_error(c.request("GET", "/nope"), 404, "no_route")
        # A 404 keeps the connection usable.
        assert c.request("GET", "/api/x").status == 200
    assert [q.path for q in a.requests] == ["/api/x"]


def test_path_exact(three, proxy):
    a, b, _ = three
    s = proxy(pools=_pools(a, b), routes=[
        {"name": "root", "path": "/", "pool": "A"},
        {"name": "exact", "path_exact": "/exact", "pool": "B"},
    ])
    assert _who(s, "/exact") == "B"
    assert _who(s, "/exact?q=1") == "B"
    assert _who(s, "/exact/") == "A"
    assert _who(s, "/exactly") == "A"
    assert _who(s, "/exact/more") == "A"


def test_path_exact_beats_longer_prefix(three, proxy):
    a, b, _ = three
    s = proxy(pools=_pools(a, b), routes=[
        {"name": "prefix", "path": "/login", "pool": "A"},
        {"name": "exact", "path_exact": "/login", "pool": "B"},
    ])
    assert _who(s, "/login") == "B"
    assert _who(s, "/login/x") == "A"


def test_host_exact_and_wildcard(three, proxy):
    a, b, c = three
    s = proxy(pools=_pools(a, b, c), routes=[
        {"name": "wild", "host": "*.example.com", "path": "/", "pool": "B"},
        {"name": "api", "host": "api.example.com", "path": "/", "pool": "A"},
        {"name": "other", "host": "other.test", "path": "/", "pool": "C"},
    ])
    assert _who(s, "/", host="api.example.com") == "A", "exact host beats wildcard"
    assert _who(s, "/", host="www.example.com") == "B"
    assert _who(s, "/", host="other.test") == "C"
    assert _who(s, "/", host="example.com") == 404, "*.example.com does not match example.com"
    assert _who(s, "/", host="notexample.com") == 404
    assert _who(s, "/", host="unknown.test") == 404


def test_host_match_ignores_port_and_case(three, proxy):
    a, _, _ = three
    s = proxy(pools=_pools(a), routes=[{"name": "api", "host": "api.example.com", "path": "/",
                                        "pool": "A"}])
    assert _who(s, "/", host="api.example.com:8080") == "A"
    assert _who(s, "/", host="API.Example.COM") == "A"


def test_host_route_preferred_over_any_host(three, proxy):
    a, b, _ = three
    s = proxy(pools=_pools(a, b), routes=[
        {"name": "any", "path": "/", "pool": "A"},
        {"name": "site", "host": "site.test", "path": "/", "pool": "B"},
    ])
    assert _who(s, "/", host="site.test") == "B"
    assert _who(s, "/", host="else.test") == "A"


def test_methods(three, proxy):
    a, b, _ = three
    s = proxy(pools=_pools(a, b), routes=[
        {"name": "root", "path": "/", "pool": "A"},
        {"name": "writes", "path": "/m/", "methods": ["POST", "PUT"], "pool": "B"},
    ])
    assert _who(s, "/m/x", method="POST", body=b"1") == "B"
    assert _who(s, "/m/x", method="PUT", body=b"1") == "B"
    assert _who(s, "/m/x", method="GET") == "A"
    assert _who(s, "/m/x", method="DELETE") == "A"


def test_methods_without_fallback_404(three, proxy):
    a, _, _ = three
    s = proxy(pools=_pools(a), routes=[{"name": "w", "path": "/", "methods": ["POST"],
                                        "pool": "A"}])
    assert _who(s, "/", method="POST", body=b"x") == "A"
    r = http_request(s.port(), "GET", "/")
    assert_proxy_error(r, 404, "no_route")


def test_strip_prefix(three, proxy):
    a, b, _ = three
    s = proxy(pools=_pools(a, b), routes=[
        {"name": "api", "path": "/api/", "strip_prefix": True, "pool": "A"},
        {"name": "keep", "path": "/keep/", "pool": "B"},
    ])
    for target, seen in [("/api/users?x=1", "/users?x=1"), ("/api/", "/"),
                         ("/api/a/b/c", "/a/b/c"), ("/api/?q=2", "/?q=2")]:
        r = http_request(s.port(), "GET", target)
        assert r.status == 200
        assert r.json()["target"] == seen, (target, r.json()["target"])
    r = http_request(s.port(), "GET", "/keep/x?y=1")
    assert r.json()["target"] == "/keep/x?y=1"


def test_strip_prefix_without_trailing_slash(three, proxy):
    a, _, _ = three
    s = proxy(pools=_pools(a), routes=[{"name": "api", "path": "/api", "strip_prefix": True,
                                        "pool": "A"}])
    assert http_request(s.port(), "GET", "/api/users").json()["target"] == "/users"
    assert http_request(s.port(), "GET", "/api").json()["target"] == "/"
    assert http_request(s.port(), "GET", "/api?x=1").json()["target"] == "/?x=1"


def test_health_answered_on_listener_when_unrouted(three, proxy):
    a, _, _ = three
    s = proxy(pools=_pools(a), routes=[{"name": "api", "path": "/api/", "pool": "A"}])
    assert http_request(s.port(), "GET", "/health/live").status == 200
    assert http_request(s.port(), "GET", "/health/ready").status == 200
    assert a.requests == []


def test_health_path_claimed_by_route_goes_to_backend(three, proxy):
    a, _, _ = three
    s = proxy(pools=_pools(a), routes=[{"name": "all", "path": "/", "pool": "A"}])
    r = http_request(s.port(), "GET", "/health/live")
    assert r.status == 200 and r.header("x-backend") == "A"
    assert [q.path for q in a.requests] == ["/health/live"]


def test_route_without_host_header_http10(three, proxy):
    a, _, _ = three
    s = proxy(pools=_pools(a), routes=[{"name": "all", "path": "/", "pool": "A"}])
    with RawClient(s.port()) as c:
        c.send(b"GET /nohost HTTP/1.0\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.json()["target"] == "/nohost"


def test_absolute_form_target(three, proxy):
    a, b, _ = three
    s = proxy(pools=_pools(a, b), routes=[
        {"name": "h", "host": "abs.test", "path": "/", "pool": "B"},
        {"name": "any", "path": "/", "pool": "A"},
    ])
    with RawClient(s.port()) as c:
        c.send(b"GET http://abs.test/p?q=1 HTTP/1.1\r\nHost: abs.test\r\n\r\n")
        r = c.read_response()
    assert r.status == 200 and r.header("x-backend") == "B"
    assert r.json()["target"] in ("/p?q=1", "http://abs.test/p?q=1")


def test_redirect_https_listener(three, proxy):
    from sluicetest import free_port
    a, _, _ = three
    web, redir = free_port(), free_port()
    s = proxy(pools=_pools(a), routes=[{"name": "all", "path": "/", "pool": "A"}],
              listeners=[{"name": "web", "listen": f"127.0.0.1:{web}"},
                         {"name": "redir", "listen": f"127.0.0.1:{redir}",
                          "redirect_https": "https://{host}:8443{uri}"}])
    r = http_request(s.port("redir"), "GET", "/a/b?c=1", host="shop.test")
    assert r.status == 308
    assert r.header("location") == "https://shop.test:8443/a/b?c=1"
    assert a.requests == []
    assert http_request(s.port("web"), "GET", "/x").status == 200
