"""CORS through Sluice as a real browser enforces it: headless Chromium loads a page from one
origin (a PageServer) whose script calls the API through Sluice on another origin, and the
test asserts on what the page's script saw (sluicetest.browser), plus what the backend got.

The backend answers like a careless app would: `Access-Control-Allow-Origin: *` on everything,
no preflight support. Only Sluice's cors middleware can make the credentialed calls work.
Skipped only when Chromium is not installed (scripts/setup.sh --browser installs it).
"""

import pytest

from sluicetest import Response, free_port, probe_page


def careless_api(be):
    """Every answer carries its own (wrong for credentials) CORS header and two extra headers;
    /login sets a session cookie; everything else echoes method and cookie."""

    def route(req):
        h = [("Access-Control-Allow-Origin", "*"), ("X-Thing", "thing-1"),
             ("X-Hidden", "hidden-1"), ("Content-Type", "application/json")]
        if req.path.startswith("/login"):
            h.append(("Set-Cookie", "sid=s1; Path=/; SameSite=Lax"))
        cookie = req.header("cookie") or ""
        return Response(body=f'{{"method": "{req.method}", "cookie": "{cookie}"}}', headers=h)

    be.set_default(route)
    return be


def start_sluice(make_sluice, be, port, origins):
    s = make_sluice()
    quoted = ", ".join(f'"{o}"' for o in origins)
    extra = f"""
[middleware.cors]
type = "cors"
allow_origins = [{quoted}]
allow_methods = ["GET", "PUT", "DELETE"]
allow_headers = ["Content-Type", "X-Custom"]
expose_headers = ["X-Thing"]
allow_credentials = true
max_age = "10m"
"""
    s.start(s.config(routes=[{"name": "api", "path": "/", "pool": "p", "middleware": ["cors"]}],
                     pools={"p": {"backends": [be.address]}},
                     listeners=[{"name": "web", "listen": f"127.0.0.1:{port}"}], extra=extra))
    return s


SCRIPT = '''
const put = {method: "PUT", credentials: "include", body: '{"n": 1}',
             headers: {"Content-Type": "application/json", "X-Custom": "c1"}};
const simple = await probe(API + "/thing", {}, ["X-Thing", "X-Hidden"]);
const login = await probe(API + "/login", {credentials: "include"});
const item = await probe(API + "/item", put);
const bad = await probe(API + "/item", {method: "PUT", credentials: "include",
                                        headers: {"X-Forbidden": "1"}});
const patch = await probe(API + "/item", {method: "PATCH", credentials: "include"});
return {origin: ORIGIN, simple, login, item, bad, patch};
'''


@pytest.fixture
def api(make_backend):
    return careless_api(make_backend("api"))


def test_browser_cors_through_sluice(browser, make_page, make_sluice, api):
    port = free_port()
    page = make_page(probe_page(SCRIPT, API=f"http://127.0.0.1:{port}"))
    start_sluice(make_sluice, api, port, [page.origin()])
    run = browser.load(page.url())
    res = run.result
    # A simple GET reads its status and the exposed header, never the unexposed one.
    assert res["simple"]["ok"] and res["simple"]["status"] == 200, run
    assert res["simple"]["headers"]["x-thing"] == "thing-1"
    assert res["simple"]["headers"]["x-hidden"] is None
    # Credentialed calls work although the backend says "*": Sluice replaced it.
    assert res["login"]["ok"], run
    assert res["item"]["ok"] and res["item"]["status"] == 200, run
    assert res["item"]["body"] == '{"method": "PUT", "cookie": "sid=s1"}'
    # A header or a method the policy does not allow: the preflight fails, nothing is sent.
    assert res["bad"] == {"ok": False, "error": "TypeError", "message": "Failed to fetch"}, run
    assert res["patch"]["error"] == "TypeError", run
    seen = [(q.method, q.path) for q in api.requests]
    # Preflights were answered by Sluice: the backend saw only the real requests.
    assert seen == [("GET", "/thing"), ("GET", "/login"), ("PUT", "/item")], seen
    put = [q for q in api.requests if q.method == "PUT"][0]
    assert put.header("x-custom") == "c1" and put.header("cookie") == "sid=s1"
    assert put.header("origin") == page.origin()


def test_browser_blocks_a_disallowed_origin(browser, make_page, make_sluice, api):
    port = free_port()
    page = make_page(probe_page(SCRIPT, API=f"http://127.0.0.1:{port}"))
    # Allowed: some other origin (and the page's host on another port): not the page.
    start_sluice(make_sluice, api, port, ["https://app.example.com",
                                          f"http://127.0.0.1:{page.port + 1}"])
    run = browser.load(page.url())
    res = run.result
    for name in ("simple", "login", "item", "bad", "patch"):
        assert res[name]["ok"] is False and res[name]["error"] == "TypeError", (name, run)
    # Simple GETs still reach the backend (the browser enforces CORS); the PUT never does.
    assert [(q.method, q.path) for q in api.requests] == [("GET", "/thing"), ("GET", "/login")]
    assert any("blocked by CORS policy" in line for line in run.console), run.console


def test_browser_wildcard_subdomain_origin(browser, make_page, make_sluice, api):
    port = free_port()
    page = make_page(probe_page(SCRIPT, API=f"http://api.example.test:{port}"))
    start_sluice(make_sluice, api, port, [f"http://*.example.test:{page.port}"])
    ok = browser.load(page.url(host="app.example.test"))
    assert ok.result["origin"] == f"http://app.example.test:{page.port}"
    assert ok.result["simple"]["ok"] and ok.result["simple"]["headers"]["x-thing"] == "thing-1"
    # The credentialed, preflighted PUT passes too (app. and api.example.test are one site, so
    # the login cookie travels).
    assert ok.result["item"]["ok"] and ok.result["item"]["status"] == 200, ok
    assert ok.result["item"]["body"] == '{"method": "PUT", "cookie": "sid=s1"}'
    # The same page from 127.0.0.1 is not under *.example.test.
    refused = browser.load(page.url())
    assert refused.result["simple"]["ok"] is False, refused
