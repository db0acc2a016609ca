"""Self-tests of the browser harness (sluicetest.browser): headless Chromium loads a page from
one origin whose script calls an "API" on another origin, and the test reads what the script
saw. The API here is a test Backend that writes its own CORS headers, so these tests need no
sluice binary and no CORS support in Sluice: they prove that a browser-level CORS test of
Sluice will fail for Sluice's reasons, not the harness's.

Skipped only when Chromium is not installed (scripts/setup.sh --browser installs it)."""

import re

import pytest

from sluicetest import Backend, Browser, BrowserError, Response, probe_page, run_page

EXAMPLE_TEST = re.compile(r"^http://[a-z0-9-]+\.example\.test(:\d+)?$")


def cors(allow, credentials=False, expose=(), methods=(), headers=(), max_age=None):
    """A Backend route answering like a CORS-aware API: `allow(origin)` decides whether the
    Origin is echoed in Access-Control-Allow-Origin; OPTIONS with
    Access-Control-Request-Method is a preflight (204, no body)."""

    def route(req):
        origin = req.header("origin")
        h = [("Vary", "Origin"), ("X-Thing", "thing-1"), ("X-Hidden", "hidden-1")]
        ok = origin is not None and allow(origin)
        if ok:
            h.append(("Access-Control-Allow-Origin", origin))
            if credentials:
                h.append(("Access-Control-Allow-Credentials", "true"))
        if req.method == "OPTIONS" and req.header("access-control-request-method"):
            if ok:
                if methods:
                    h.append(("Access-Control-Allow-Methods", ", ".join(methods)))
                if headers:
                    h.append(("Access-Control-Allow-Headers", ", ".join(headers)))
                if max_age is not None:
                    h.append(("Access-Control-Max-Age", str(max_age)))
            return Response(status=204, headers=h, mode="none")
        if ok and expose:
            h.append(("Access-Control-Expose-Headers", ", ".join(expose)))
        cookie = req.header("cookie") or ""
        return Response(body=f'{{"method": "{req.method}", "cookie": "{cookie}"}}',
                        headers=h + [("Content-Type", "application/json")])

    return route


@pytest.fixture
def api(make_backend):
    return make_backend("api")


def test_cross_origin_get_reads_status_and_exposed_header(browser, make_page, api):
    api.on("/thing", cors(lambda o: True, expose=["X-Thing"]))
    page = make_page(probe_page(
        'return {r: await probe(API + "/thing", {}, ["X-Thing", "X-Hidden"])};',
        API=f"http://127.0.0.1:{api.port}"))
    run = browser.load(page.url())
    r = run.result["r"]
    assert r["ok"] and r["status"] == 200 and r["type"] == "cors", run
    assert r["headers"]["x-thing"] == "thing-1"
    assert r["headers"]["x-hidden"] is None  # sent, but not exposed: the browser hides it
    assert r["body"] == '{"method": "GET", "cookie": ""}'
    (req,) = [q for q in api.requests if q.path == "/thing"]
    # A page on 127.0.0.1:PORT sends exactly that origin, port included.
    assert req.header("origin") == page.origin() == f"http://127.0.0.1:{page.port}"


def test_api_without_cors_headers_is_blocked(browser, make_page, api):
    api.on("/plain", Response(body=b"secret", headers=[("X-Thing", "1")]))
    page = make_page(probe_page('return {r: await probe(API + "/plain")};',
                                API=f"http://127.0.0.1:{api.port}"))
    run = browser.load(page.url())
    assert run.result["r"] == {"ok": False, "error": "TypeError", "message": "Failed to fetch"}
    # A simple GET is sent anyway: CORS only keeps the page from reading the answer.
    assert [q.method for q in api.requests if q.path == "/plain"] == ["GET"]
    assert any("blocked by CORS policy" in line and "No 'Access-Control-Allow-Origin'" in line
               for line in run.console), run.console


def test_credentialed_put_with_custom_header_is_preflighted(browser, make_page, api):
    # /login sets a cookie (127.0.0.1 on two ports is one site: SameSite=Lax lets it through).
    login = cors(lambda o: True, credentials=True)

    def login_route(req):
        resp = login(req)
        resp.headers.append(("Set-Cookie", "sid=s1; Path=/; SameSite=Lax"))
        return resp

    api.on("/login", login_route)
    api.on("/item", cors(lambda o: True, credentials=True, methods=["GET", "PUT"],
                         headers=["Content-Type", "X-Custom"]))
    # Same API, but the preflight does not allow X-Custom: the PUT is never sent.
    api.on("/strict", cors(lambda o: True, credentials=True, methods=["PUT"]))
    # Credentials with "Access-Control-Allow-Origin: *" are refused by the browser.
    star = Response(status=204, mode="none", headers=[
        ("Access-Control-Allow-Origin", "*"), ("Access-Control-Allow-Methods", "PUT"),
        ("Access-Control-Allow-Headers", "Content-Type, X-Custom")])
    api.on("/star", star)
    page = make_page(probe_page('''
        const put = {method: "PUT", credentials: "include", body: '{"n": 1}',
                     headers: {"Content-Type": "application/json", "X-Custom": "c1"}};
        const login = await probe(API + "/login?set=1", {credentials: "include"});
        return {login, item: await probe(API + "/item", put),
                strict: await probe(API + "/strict", put),
                star: await probe(API + "/star", put)};
    ''', API=f"http://127.0.0.1:{api.port}"))
    run = browser.load(page.url())
    res = run.result
    assert res["login"]["ok"] and res["login"]["status"] == 200, run
    assert res["item"]["ok"] and res["item"]["status"] == 200, run
    assert res["item"]["body"] == '{"method": "PUT", "cookie": "sid=s1"}'
    assert res["strict"]["error"] == "TypeError" and res["star"]["error"] == "TypeError", run

    seen = [(q.method, q.path) for q in api.requests]
    assert seen == [("GET", "/login"), ("OPTIONS", "/item"), ("PUT", "/item"),
                    ("OPTIONS", "/strict"), ("OPTIONS", "/star")], seen
    pre = [q for q in api.requests if q.method == "OPTIONS"][0]
    assert pre.header("origin") == page.origin()
    assert pre.header("access-control-request-method") == "PUT"
    # Lower case, sorted, comma-separated without spaces (Chromium's format).
    assert pre.header("access-control-request-headers") == "content-type,x-custom"
    assert pre.header("cookie") is None  # a preflight never carries credentials
    put = [q for q in api.requests if q.method == "PUT"][0]
    assert put.header("x-custom") == "c1" and put.body == b'{"n": 1}'
    assert put.header("cookie") == "sid=s1"
    assert any("Access-Control-Allow-Headers" in line for line in run.console), run.console
    assert any("'*'" in line and "credentials mode" in line for line in run.console), run.console


def test_wildcard_subdomain_origin_via_host_resolver_rules(browser, make_page, api):
    api.on("/thing", cors(lambda o: bool(EXAMPLE_TEST.match(o)), expose=["X-Thing"]))
    page = make_page(probe_page(
        'return {origin: ORIGIN, r: await probe(API + "/thing", {}, ["X-Thing"])};',
        API=f"http://api.example.test:{api.port}"))
    ok = browser.load(page.url(host="app.example.test"))
    assert ok.result["origin"] == f"http://app.example.test:{page.port}"
    assert ok.result["r"]["status"] == 200 and ok.result["r"]["headers"]["x-thing"] == "thing-1"
    # The same page from 127.0.0.1 is not in the allow-list.
    refused = browser.load(page.url())
    assert refused.result["r"]["error"] == "TypeError"
    assert [q.header("origin") for q in api.requests] == [
        f"http://app.example.test:{page.port}", f"http://127.0.0.1:{page.port}"]
    assert {q.header("host") for q in api.requests} == {f"api.example.test:{api.port}"}
    assert page.requests[0].header("host") == f"app.example.test:{page.port}"


def test_preflight_cache_is_per_browser(make_page, api, browser):
    api.on("/item", cors(lambda o: True, methods=["PUT"], headers=["X-Custom"], max_age=600))
    page = make_page(probe_page(
        'return {r: await probe(API + "/item", {method: "PUT", headers: {"X-Custom": "1"}})};',
        API=f"http://127.0.0.1:{api.port}"))
    for _ in range(2):
        assert browser.load(page.url()).result["r"]["status"] == 200
    # Access-Control-Max-Age: 600 holds within one browser (across tabs) ...
    assert [q.method for q in api.requests] == ["OPTIONS", "PUT", "PUT"]
    # ... and a new browser (fresh profile) starts with an empty preflight cache.
    assert run_page(page.url())["r"]["status"] == 200
    assert [q.method for q in api.requests] == ["OPTIONS", "PUT", "PUT", "OPTIONS", "PUT"]


def test_page_that_never_finishes_fails_with_its_dom_and_console(browser, make_page):
    hang = Backend("hang").start()
    try:
        hang.on("/slow", Response(action="hang"))
        page = make_page(probe_page(
            'console.log("before"); await probe(API + "/slow"); return {};',
            API=f"http://127.0.0.1:{hang.port}"))
        with pytest.raises(BrowserError) as e:
            browser.load(page.url(), timeout=1.0)
        msg = str(e.value)
        assert "still empty after 1.0s" in msg and "console.log: before" in msg
        assert '<pre id="result"></pre>' in msg
        # A page whose script throws says so at once.
        broken = make_page(probe_page('throw new Error("boom");'))
        with pytest.raises(BrowserError, match="the page script failed: Error: boom"):
            browser.load(broken.url())
        # The browser is still usable after both.
        good = make_page(probe_page('return {fine: true};'))
        assert browser.load(good.url()).result == {"fine": True}
    finally:
        hang.stop()


def test_nothing_leaves_the_machine(browser, make_page):
    page = make_page(probe_page('return {r: await probe("http://www.debian.org/")};'))
    run = browser.load(page.url())
    assert run.result["r"]["error"] == "TypeError"
    assert any("ERR_NAME_NOT_RESOLVED" in line for line in run.console), run.console


def test_a_browser_that_dies_at_start_is_reported():
    with pytest.raises(BrowserError, match="closed the DevTools pipe"):
        Browser(binary="/bin/false").start()
