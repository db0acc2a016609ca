"""path_regex routes (RE2): nginx-like precedence, rewrite with captures and the query, invalid
patterns as positioned config errors, linear-time matching; `return` routes: redirects built
from {host}/{uri}/{scheme}, fixed bodies, 204, after the route's middleware."""

import time

import pytest

from sluicetest import RawClient, http_request, run_cli


@pytest.fixture
def three(make_backend):
    return make_backend("A"), make_backend("B"), make_backend("C")


def _pools(*bes):
    return {be.name: {"backends": [be.address]} for be in bes}


def _who(s, target, host="any.test", method="GET"):
    r = http_request(s.port(), method, target, host=host)
    return r.header("x-backend") if r.status == 200 else r.status


def test_regex_rewrite_reaches_backend_with_captures_and_query(three, proxy):
    a, b, _ = three
    s = proxy(pools=_pools(a, b), routes=[
        {"name": "root", "path": "/", "pool": "A"},
        {"name": "v1", "path_regex": r"^/api/v1/(users|teams)/([0-9]+)$",
         "rewrite": "/v2/$1/$2", "pool": "B"},
        {"name": "legacy", "path_regex": r"^/legacy/(.*)", "rewrite": "/new/$1?from=legacy",
         "pool": "B"},
    ])
    assert _who(s, "/api/v1/users/42?expand=1&x=%20") == "B"
    assert b.requests[-1].target == "/v2/users/42?expand=1&x=%20"
    assert _who(s, "/api/v1/teams/7") == "B"
    assert b.requests[-1].target == "/v2/teams/7"
    # Not matched by the pattern: the prefix route, target untouched.
    assert _who(s, "/api/v1/users/abc?q=1") == "A"
    assert a.requests[-1].target == "/api/v1/users/abc?q=1"
    # A rewrite with its own query: the client's query follows after '&'.
    assert _who(s, "/legacy/a/b?k=v") == "B"
    assert b.requests[-1].target == "/new/a/b?from=legacy&k=v"
    assert _who(s, "/legacy/a") == "B"
    assert b.requests[-1].target == "/new/a?from=legacy"


def test_nginx_precedence(three, proxy):
    a, b, c = three
    s = proxy(pools=_pools(a, b, c), routes=[
        {"name": "root", "path": "/", "pool": "A"},
        {"name": "static", "path": "/static/", "prefix_priority": True, "pool": "A"},
        {"name": "images", "path_regex": r"(?i)\.(png|jpe?g)$", "pool": "B"},
        {"name": "api-any", "path_regex": r"^/api/", "pool": "C"},
        {"name": "api-v1", "path_regex": r"^/api/v1/", "pool": "A"},
        {"name": "logo", "path_exact": "/api/logo.png", "pool": "A"},
        {"name": "docs", "path": "/docs/", "pool": "A"},
    ])
    assert _who(s, "/api/logo.png") == "A"        # exact first
    assert _who(s, "/static/x.png") == "A"        # ^~ prefix skips the regexes
    assert _who(s, "/docs/x.PNG") == "B"          # regex beats a plain prefix, (?i)
    assert _who(s, "/docs/x.gif") == "A"          # no regex: longest prefix
    assert _who(s, "/api/v1/things") == "C"       # first regex in file order wins
    assert _who(s, "/x.JPEG?y=.txt") == "B"       # the query is not matched
    assert _who(s, "/x.txt?y=.png") == "A"
    assert [q.path for q in c.requests] == ["/api/v1/things"]


def test_catastrophic_pattern_answers_quickly(backend, proxy):
    s = proxy(pools={"p": {"backends": [backend.address]}}, routes=[
        {"name": "evil", "path_regex": r"^/(a+)+$", "pool": "p"},
    ])
    path = "/" + "a" * 6000 + "b"
    with RawClient(s.port()) as c:
        t0 = time.monotonic()
        for _ in range(20):
            r = c.request("GET", path)
            assert r.status == 404
        elapsed = time.monotonic() - t0
        assert elapsed < 2.0, elapsed
        assert c.request("GET", "/" + "a" * 6000).status == 200
    assert len(backend.requests) == 1


def _write_config(s, tmp_path, routes, pools):
    path = tmp_path / "r.toml"
    path.write_text(s.config(routes=routes, pools=pools, admin=False, log={"access": "off"}))
    return path


def _pos_of(path, key):
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith(key + " = "):
            return i, len(key) + 4
    raise AssertionError(key)


@pytest.mark.parametrize("route,key,message", [
    ({"path_regex": "^/(a", "pool": "p"}, "path_regex",
     "route[0].path_regex: invalid regular expression '^/(a': missing ): ^/(a"),
    ({"path_regex": "^/x[", "pool": "p"}, "path_regex", "missing ]"),
    ({"path_regex": "^/(x)", "rewrite": "/$2", "pool": "p"}, "rewrite",
     "route[0].rewrite: '$2' but path_regex has 1 capturing group"),
    ({"path": "/", "rewrite": "/x", "pool": "p"}, "rewrite",
     "route[0].rewrite: only allowed with 'path_regex'"),
    ({"path_regex": "^/x", "strip_prefix": True, "pool": "p"}, "strip_prefix",
     "route[0].strip_prefix: only allowed with 'path'"),
    ({"path": "/", "return": {"status": 301, "location": "https://{hostname}/"}}, "return",
     "route[0].return.location: unknown placeholder '{hostname}'"),
    ({"path": "/", "return": {"status": 302}}, "return", "route[0].return: a 302 needs 'location'"),
])
def test_config_errors_with_position(tmp_path, make_sluice, route, key, message):
    s = make_sluice()
    path = _write_config(s, tmp_path, [dict(name="r", **route)],
                         {"p": {"backends": ["127.0.0.1:9"]}})
    line, col = _pos_of(path, key)
    r = run_cli(["-t", "-c", str(path)])
    assert r.returncode == 1, r.stderr
    assert message in r.stderr, r.stderr
    if key != "return":  # the inline table's errors point inside it
        assert f"{path}:{line}:{col}: " in r.stderr, r.stderr
    else:
        assert f"{path}:{line}:" in r.stderr, r.stderr


HEADERS_MW = """
[middleware.mark]
type = "headers"
response_set = { "X-Mw" = "ran" }
"""


def test_return_redirect_body_and_204(backend, make_sluice):
    s = make_sluice()
    s.start(s.config(pools={"p": {"backends": [backend.address]}}, extra=HEADERS_MW, routes=[
        {"name": "app", "path": "/", "pool": "p"},
        {"name": "old", "path": "/old/", "middleware": ["mark"],
         "return": {"status": 301, "location": "https://{host}{uri}"}},
        {"name": "moved", "path_regex": "^/moved$",
         "return": {"status": 308, "location": "{scheme}://new.{host}/landing"}},
        {"name": "hello", "path_exact": "/hello", "middleware": ["mark"],
         "return": {"status": 200, "body": "hello\n", "content_type": "text/plain; charset=utf-8"}},
        {"name": "gone", "path_exact": "/gone", "return": {"status": 410, "body": "gone"}},
        {"name": "empty", "path_exact": "/empty", "return": {"status": 204}},
    ]))
    with RawClient(s.port()) as c:
        r = c.request("GET", "/old/page?a=1&b=2", host="Example.COM:8080")
        assert r.status == 301
        assert r.header("location") == "https://example.com/old/page?a=1&b=2"
        assert r.header("x-mw") == "ran"
        assert r.header("content-length") == "0"
        r = c.request("GET", "/moved", host="site.test")
        assert r.status == 308
        assert r.header("location") == "http://new.site.test/landing"
        r = c.request("GET", "/hello")
        assert (r.status, r.body) == (200, b"hello\n")
        assert r.header("content-type") == "text/plain; charset=utf-8"
        assert r.header("x-mw") == "ran"
        r = c.request("HEAD", "/hello")
        assert r.status == 200 and r.body == b""
        r = c.request("GET", "/gone")
        assert (r.status, r.body, r.header("content-type")) == (410, b"gone", "text/plain")
        r = c.request("GET", "/empty")
        assert r.status == 204 and r.body == b"" and r.header("content-length") is None
        # The connection stays usable; other routes still proxy.
        assert c.request("GET", "/app").status == 200
    # An absolute-form target: {uri} is its path and query.
    r = http_request(s.port(), "GET", "http://abs.test:81/old/x?q=1", host="ignored.test")
    assert r.header("location") == "https://abs.test/old/x?q=1"
    assert [q.path for q in backend.requests] == ["/app"]
    e = s.wait_access(lambda e: e["path"] == "/hello")
    assert e["route"] == "hello" and e["pool"] == "-" and e["status"] == 200
    m = s.metrics()
    assert m.value("sluice_requests_total", route="old", pool="", code="301") == 2


def test_many_regex_routes_keep_prefix_routes_working(backend, proxy):
    routes = [{"name": f"re{i}", "path_regex": rf"^/r{i}/(\w+)\.php$", "rewrite": f"/php{i}/$1",
               "pool": "p"} for i in range(50)]
    routes.append({"name": "api", "path": "/api/", "prefix_priority": True, "pool": "p"})
    s = proxy(pools={"p": {"backends": [backend.address]}}, routes=routes)
    assert http_request(s.port(), "GET", "/r49/index.php?x=1").status == 200
    assert backend.requests[-1].target == "/php49/index?x=1"
    assert http_request(s.port(), "GET", "/api/r1/a.php").status == 200
    assert backend.requests[-1].target == "/api/r1/a.php"
    assert http_request(s.port(), "GET", "/r1/a.html").status == 404
