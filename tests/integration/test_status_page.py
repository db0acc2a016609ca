"""The status page (GET / on the admin listener) in a real browser: headless Chromium
(sluicetest.browser) signs in with the admin token, sees the listeners, routes, splits, pools
and backends of a running Sluice, follows a backend that goes down, drains and undrains a
backend, sets split weights and promotes through the page's confirmation dialog, and renders at
320 px in dark mode; the page logs no console error (a CSP violation would be one). Screenshots
are saved as test artifacts (SLUICE_TEST_ARTIFACTS, default test-artifacts/ next to the
binary).

Skipped only when Chromium is not installed (scripts/setup.sh --browser installs it).
"""

import json
import os

import pytest

from sluicetest import RawClient, Response, chromium_path, wait_until
from sluicetest.process import SLUICE_BIN

TOKEN = "page-t0ken"

pytestmark = pytest.mark.skipif(chromium_path() is None,
                                reason="chromium is not installed "
                                       "(scripts/setup.sh --browser installs it)")


def artifact(name):
    d = os.environ.get("SLUICE_TEST_ARTIFACTS") or os.path.join(
        os.path.dirname(os.path.abspath(SLUICE_BIN)), "test-artifacts")
    os.makedirs(d, exist_ok=True)
    return os.path.join(d, name)


def start(make_sluice, bes):
    s = make_sluice()
    health = {"path": "/health", "interval": "100ms", "timeout": "90ms",
              "unhealthy_threshold": 1, "healthy_threshold": 1}
    s.start(s.config(
        routes=[{"name": "api", "path": "/api/", "pool": "app"},
                {"name": "shop", "path": "/", "split": [{"pool": "app", "weight": 90},
                                                         {"pool": "canary", "weight": 10}],
                 "promote": {"steps": [10, 50, 100], "interval": "1h"}}],
        pools={"app": {"backends": [bes["app1"].address, bes["app2"].address],
                       "health": health},
               "canary": {"backends": [bes["canary"].address]}},
        admin={"token": TOKEN}))
    return s


def traffic(s, n=30):
    with RawClient(s.port()) as c:
        for i in range(n):
            c.request("GET", "/api/x" if i % 2 else "/")


def status(s):
    return json.loads(s.admin_get("/admin/status", token=TOKEN)[2])


def js(selector):
    return json.dumps(selector)


def page_backend_state(tab, pool, address):
    return tab.eval(f"document.querySelector({js(f'[data-pool={pool!r}] [data-backend={address!r}]')})"
                    "?.dataset.state || null")


def confirm(tab, button):
    """Click `button`, then Confirm in the page's dialog (and wait for it to close)."""
    tab.click(button)
    tab.wait("document.getElementById('confirm').open", message="the confirmation dialog")
    tab.click("#confirm-ok")
    tab.wait("!document.getElementById('confirm').open", message="the dialog to close")


def test_status_page_in_a_browser(browser, make_backend, make_sluice):
    bes = {n: make_backend(n) for n in ("app1", "app2", "canary")}
    bes["app1"].set_default(Response(delay=0.02))
    s = start(make_sluice, bes)
    traffic(s)
    url = f"http://127.0.0.1:{s.admin_port}/"
    a1, a2 = bes["app1"].address, bes["app2"].address
    with browser.open(url, width=1280, height=900) as tab:
        # A token is configured: the page asks for it before anything else.
        tab.wait("!document.getElementById('login').hidden", message="the login prompt")
        tab.type("#token", TOKEN)
        tab.press("Enter")
        tab.wait(f"!!document.querySelector({js(f'[data-backend={a1!r}]')})",
                 message="the pools to render")
        # The token stays in this tab's session storage, never in the URL.
        assert tab.eval("sessionStorage.getItem('sluice.adminToken')") == TOKEN
        assert tab.eval("location.href") == url
        # What the running Sluice has: listeners, routes, the split, pools and backends.
        assert tab.eval("document.querySelector('[data-listener=\"web\"]') !== null")
        assert tab.eval("[...document.querySelectorAll('article[data-route]')].map(e => "
                        "e.dataset.route)") == ["api", "shop"]
        assert tab.eval("Object.keys(document.querySelector('[data-split=\"shop\"]')"
                        ".querySelector('.legend').children).length") == 2
        assert page_backend_state(tab, "app", a1) == "up"
        assert page_backend_state(tab, "app", a2) == "up"
        assert page_backend_state(tab, "canary", bes["canary"].address) == "up"
        assert "step 1 of 3" in tab.eval(
            "document.querySelector('[data-split=\"shop\"] [data-stat=\"step\"]').textContent")
        # The last minute's traffic arrives with the samples (every 2 s).
        traffic(s)
        tab.wait("(() => { const v = document.querySelector('[data-route=\"api\"] "
                 "[data-stat=\"rps\"]'); return v && v.textContent !== '–' && "
                 "parseFloat(v.textContent) > 0; })()", timeout=15, message="a request rate")
        tab.wait("!!document.querySelector('[data-route=\"api\"] .spark path.rate')",
                 timeout=15, message="the rate sparkline")

        # A backend goes down: the page follows.
        bes["app2"].stop()
        tab.wait(f"document.querySelector({js(f'[data-backend={a2!r}]')})?.dataset.state "
                 "=== 'down'", timeout=10, message="app2 shown down")

        # Drain app1 through the page (with confirmation), then undrain it.
        drain = f"button[data-act='drain'][data-address='{a1}']"
        confirm(tab, drain)
        tab.wait(f"document.querySelector({js(f'[data-backend={a1!r}]')})?.dataset.state "
                 "=== 'draining'", message="app1 shown draining")
        assert [b for b in status(s)["pools"]["app"]["backends"]
                if b["address"] == a1][0]["draining"] is True
        # Cancel leaves things alone.
        tab.click(f"button[data-act='undrain'][data-address='{a1}']")
        tab.wait("document.getElementById('confirm').open")
        tab.click("#confirm-cancel")
        tab.wait("!document.getElementById('confirm').open")
        assert [b for b in status(s)["pools"]["app"]["backends"]
                if b["address"] == a1][0]["draining"] is True
        confirm(tab, f"button[data-act='undrain'][data-address='{a1}']")
        tab.wait(f"document.querySelector({js(f'[data-backend={a1!r}]')})?.dataset.state "
                 "=== 'up'", message="app1 shown up again")

        # Split weights: 60 / 40 through the dialog's inputs.
        tab.click("button[data-act='weights'][data-route='shop']")
        tab.wait("document.getElementById('confirm').open")
        tab.eval("document.getElementById('f-w0').select()")
        tab.type("#f-w0", "60")
        tab.eval("document.getElementById('f-w1').select()")
        tab.type("#f-w1", "40")
        tab.click("#confirm-ok")
        tab.wait("document.querySelector('[data-split=\"shop\"] [data-weight=\"canary\"]')"
                 "?.textContent.startsWith('canary 40')", message="the new weights shown")
        assert status(s)["routes"][1]["live_weights"] == {"app": 60, "canary": 40}

        # Promote: the release's last decision is shown.
        confirm(tab, "button[data-act='promote'][data-route='shop']")
        tab.wait("document.querySelector('[data-split=\"shop\"] [data-decision]')"
                 "?.dataset.decision === 'promote'", message="the promotion shown")
        assert status(s)["routes"][1]["release"]["last_decision"]["action"] == "promote"

        tab.wait("document.getElementById('notice').textContent.includes('done')")
        tab.screenshot(artifact("status-page.png"))
        assert tab.errors() == [], tab.console
        assert tab.eval("document.documentElement.scrollWidth <= window.innerWidth")


def test_status_page_narrow_and_dark(browser, make_backend, make_sluice):
    bes = {n: make_backend(n) for n in ("app1", "app2", "canary")}
    s = start(make_sluice, bes)
    traffic(s)
    with browser.open(f"http://127.0.0.1:{s.admin_port}/", width=320, height=640,
                      color_scheme="dark") as tab:
        tab.eval(f"sessionStorage.setItem('sluice.adminToken', {js(TOKEN)})")
        tab.eval("location.reload()")
        tab.wait("!!document.querySelector('[data-pool=\"canary\"]')", message="the pools")
        # Nothing wider than the screen: no sideways scrolling at 320 px.
        assert tab.eval("document.documentElement.scrollWidth") <= 320
        # Dark colours: a dark background and light text.
        lum = tab.eval("""(() => {
  const l = c => { const [r, g, b] = c.match(/\\d+/g).map(Number); return (r + g + b) / 3; };
  const body = getComputedStyle(document.body);
  return [l(body.backgroundColor), l(body.color)];
})()""")
        assert lum[0] < 60 and lum[1] > 180, lum
        tab.screenshot(artifact("status-page-320-dark.png"))
        assert tab.errors() == [], tab.console


def test_status_page_wrong_token_asks_again(browser, make_backend, make_sluice):
    bes = {n: make_backend(n) for n in ("app1", "app2", "canary")}
    s = start(make_sluice, bes)
    with browser.open(f"http://127.0.0.1:{s.admin_port}/") as tab:
        tab.wait("!document.getElementById('login').hidden")
        tab.type("#token", "not-the-token")
        tab.press("Enter")
        tab.wait("document.getElementById('login-error').textContent.includes('not accepted')",
                 message="the refusal")
        assert tab.eval("sessionStorage.getItem('sluice.adminToken')") is None
        assert tab.eval("document.getElementById('app').hidden")
        # The right one works; signing out forgets it.
        tab.type("#token", TOKEN)
        tab.press("Enter")
        tab.wait("!!document.querySelector('[data-pool=\"app\"]')", message="the pools")
        tab.click("#signout")
        tab.wait("!document.getElementById('login').hidden")
        assert tab.eval("sessionStorage.getItem('sluice.adminToken')") is None
        assert not tab.eval("document.querySelector('[data-pool]')")
