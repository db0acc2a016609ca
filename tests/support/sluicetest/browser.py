"""A real browser for the integration tests: headless Chromium (Debian's `chromium`, installed
by scripts/setup.sh) driven over the DevTools protocol, to prove what a browser does with
Sluice's answers (CORS first of all), not what a client written for the test believes.

The model: a page served from origin A (a PageServer) runs fetch() calls against origin B
(Sluice, or a test Backend) and writes what it saw, as JSON, into <pre id="result"> once every
call has settled. run_page() loads the page and returns that JSON as a dict.

    # origin B: Sluice (with its CORS middleware) in front of a Backend, or a Backend
    # route that writes CORS headers itself (tests/integration/test_browser_harness.py)
    api = sluice.port()
    page = PageServer(probe_page('''
        return {simple: await probe(API + "/thing", {}, ["X-Thing"])};
    ''', API=f"http://127.0.0.1:{api}")).start()      # origin A
    res = run_page(page.url())                         # {"simple": {"ok": true, "status": 200,
                                                       #   "headers": {"x-thing": "1"}, ...}}
    run_page(page.url(host="app.example.test"))        # the same page, Origin
                                                       #   http://app.example.test:PORT

probe() never throws: a fetch the browser refused (CORS, preflight, network) gives
{"ok": false, "error": "TypeError", "message": "Failed to fetch"}; otherwise
{"ok": true, "status": ..., "headers": {<lower-case name>: value for each readable header},
"body": text}. The page script may not see *why* a fetch failed (browsers hide it on purpose);
the console messages Chromium logged (e.g. "... has been blocked by CORS policy: ...") are in
Browser.load(...).console.

Host names: every browser started here maps *.example.test (and whatever `hosts` adds) to
127.0.0.1 with --host-resolver-rules, so a page can live on http://app.example.test:PORT;
every other name except localhost fails to resolve, so nothing leaves the machine.

Why not `chromium --headless --dump-dom URL`: it dumps the DOM at the load event, before an
async fetch() settles; with --virtual-time-budget it waits for pending fetches, but then a
fetch that never gets an answer makes Chromium hang with no output and page time is virtual.
Here the harness polls the page over --remote-debugging-pipe with a real deadline and, on
timeout, reports the DOM and the console.
"""

import base64
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time

from .backend import Backend, Response

__all__ = ["chromium_path", "Browser", "BrowserError", "PageRun", "Tab", "run_page",
           "PageServer", "probe_page", "PROBE_JS", "HOSTS"]

# Names that resolve to 127.0.0.1 in every browser started here (besides localhost, which
# Chromium resolves to loopback by itself). Wildcards as --host-resolver-rules understands them.
HOSTS = ("*.example.test", "example.test")

# The real binary: /usr/bin/chromium is Debian's shell wrapper, which sources /etc/chromium.d/
# (adds --enable-remote-extensions, --load-extension=..., Google API keys and, because of the
# former, drops --disable-background-networking). Calling the binary keeps the flags ours.
_CANDIDATES = ("/usr/lib/chromium/chromium", "chromium", "chromium-browser", "google-chrome")


def chromium_path():
    """The Chromium binary to run ($SLUICE_CHROMIUM first), or None if none is installed."""
    env = os.environ.get("SLUICE_CHROMIUM")
    if env:
        return env
    for c in _CANDIDATES:
        p = c if os.path.isabs(c) else shutil.which(c)
        if p and os.access(p, os.X_OK):
            return p
    return None


class BrowserError(AssertionError):
    pass


class CdpError(BrowserError):
    """Chromium answered a DevTools command with an error."""


class PageRun:
    """What one page load produced: `result` (the JSON the page wrote into #result),
    `console` (console.* calls, uncaught exceptions and Chromium's own messages such as CORS
    refusals, as "level: text" strings) and `url`."""

    def __init__(self, url, result, console):
        self.url = url
        self.result = result
        self.console = console

    def __repr__(self):
        return f"<PageRun {self.url} result={self.result!r} console={self.console!r}>"


# JavaScript that reads #result: the page is done once the element holds text.
_READ_RESULT = """(() => {
  const e = document.getElementById(%s);
  return e && e.textContent.trim() !== "" ? e.textContent : null;
})()"""


def _above9(fd):
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


class Browser:
    """One headless Chromium process (fresh profile in a temp dir), driven over the DevTools
    protocol on a pipe. Use as a context manager; load() pages one after another. Pages loaded
    by one Browser share its network state (preflight cache, HTTP cache, cookies); a new
    Browser starts from nothing.

    hosts: extra host-name patterns mapped to 127.0.0.1 (added to HOSTS).
    flags: extra command-line switches.
    """

    def __init__(self, hosts=(), flags=(), binary=None, start_timeout=20.0):
        self.binary = binary or chromium_path()
        if not self.binary:
            raise BrowserError("chromium is not installed (scripts/setup.sh installs it)")
        self.hosts = tuple(HOSTS) + tuple(hosts)
        self.extra_flags = tuple(flags)
        self.start_timeout = start_timeout
        self.proc = None
        self._dir = None
        self._wfd = self._rfd = None
        self._buf = b""
        self._next_id = 0
        self._console = {}  # sessionId -> [str]

    # ---- lifecycle ---------------------------------------------------------------------
    def flags(self):
        rules = [f"MAP {h} 127.0.0.1" for h in self.hosts]
        # Everything else fails to resolve (no lookup leaves the machine); loopback names and
        # literals are left alone.
        rules += ["MAP * ~NOTFOUND", "EXCLUDE localhost", "EXCLUDE *.localhost",
                  "EXCLUDE 127.0.0.1", "EXCLUDE [::1]"]
        f = [
            "--headless",                       # the "new" headless mode (the only one left)
            "--remote-debugging-pipe",          # DevTools protocol on fds 3 (in) and 4 (out)
            f"--user-data-dir={self._dir}/profile",  # fresh profile: no cache, cookie, HSTS
            "--disable-gpu",                    # no GPU on test machines
            "--disable-dev-shm-usage",          # containers have a tiny /dev/shm
            "--no-first-run", "--no-default-browser-check",
            # Nothing reaches out (and nothing waits on a network it cannot reach):
            "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-default-apps", "--disable-extensions",
            "--disable-domain-reliability", "--disable-client-side-phishing-detection",
            "--disable-breakpad", "--disable-crash-reporter", "--no-pings",
            "--metrics-recording-only", "--safebrowsing-disable-auto-update",
            "--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider,"
            "AutofillServerCommunication,CertificateTransparencyComponentUpdater",
            "--password-store=basic",           # no keyring daemon
            "--no-proxy-server",                # $http_proxy would capture *.example.test
            f"--host-resolver-rules={', '.join(rules)}",
            "--mute-audio", "--hide-scrollbars",
        ]
        # Chromium refuses to run as root with its sandbox; a container without user
        # namespaces needs SLUICE_CHROMIUM_NO_SANDBOX=1 for any user.
        if os.geteuid() == 0 or os.environ.get("SLUICE_CHROMIUM_NO_SANDBOX") == "1":
            f.append("--no-sandbox")
        return f + list(self.extra_flags) + ["about:blank"]

    def start(self):
        self._dir = tempfile.mkdtemp(prefix="sluice-chromium-")
        to_chrome_r, to_chrome_w = os.pipe()
        from_chrome_r, from_chrome_w = os.pipe()
        # The child's ends above 9, so that moving them onto 3 and 4 cannot clobber one another.
        to_chrome_r, from_chrome_w = _above9(to_chrome_r), _above9(from_chrome_w)
        # Chromium reads commands on fd 3 and writes on fd 4; bash moves the pipe ends there
        # (subprocess only remaps 0-2; dash refuses fds above 9) and closes the originals.
        launcher = (f'exec "$@" 3<&{to_chrome_r} 4>&{from_chrome_w} '
                    f'{to_chrome_r}<&- {from_chrome_w}>&-')
        self._wfd, self._rfd = to_chrome_w, from_chrome_r
        self._stderr = open(os.path.join(self._dir, "stderr.log"), "wb")
        try:
            # start_new_session: Chromium and all its helpers form one process group, ours.
            self.proc = subprocess.Popen(
                ["/bin/bash", "-c", launcher, "chromium", self.binary] + self.flags(),
                stdin=subprocess.DEVNULL, stdout=self._stderr, stderr=self._stderr,
                pass_fds=(to_chrome_r, from_chrome_w), start_new_session=True)
        except BaseException:
            self.close()
            raise
        finally:
            os.close(to_chrome_r)
            os.close(from_chrome_w)
        try:
            # The first answer on the pipe: the browser is up.
            self.call("Browser.getVersion", timeout=self.start_timeout)
        except BaseException:
            self.close()
            raise
        return self

    def close(self):
        """Close the browser (politely, then by force) and remove its profile."""
        if self.proc is not None:
            if self.proc.poll() is None:
                try:
                    self.call("Browser.close", timeout=5)
                except (BrowserError, OSError):
                    pass
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    pass
            # Chromium's helpers (zygote, renderers, network service) are in its process
            # group, which start_new_session made ours alone.
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
            self.proc = None
        for fd in (self._wfd, self._rfd):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._wfd = self._rfd = None
        if self._dir:
            self._stderr.close()
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def stderr(self):
        """Chromium's own log so far (noisy: D-Bus complaints are normal in a container)."""
        try:
            with open(os.path.join(self._dir, "stderr.log"), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except (OSError, TypeError):
            return ""

    # ---- DevTools protocol --------------------------------------------------------------
    def _send(self, msg):
        data = json.dumps(msg).encode() + b"\0"
        while data:
            try:
                n = os.write(self._wfd, data)
            except BrokenPipeError:
                raise self._died() from None
            data = data[n:]

    def _died(self):
        try:
            rc = self.proc.wait(2)
        except subprocess.TimeoutExpired:
            rc = None
        return BrowserError(f"chromium closed the DevTools pipe (exit status {rc})\n"
                            f"{self.stderr()[-3000:]}")

    def _recv(self, deadline):
        """The next message, or None at the deadline."""
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self._rfd], [], [], left)
            if not ready:
                return None
            chunk = os.read(self._rfd, 1 << 16)
            if not chunk:
                raise self._died()
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def _event(self, msg):
        sid = msg.get("sessionId")
        method = msg.get("method")
        p = msg.get("params", {})
        log = self._console.setdefault(sid, [])
        if method == "Runtime.consoleAPICalled":
            args = [str(a.get("value", a.get("description", ""))) for a in p.get("args", [])]
            log.append(f"console.{p.get('type')}: {' '.join(args)}")
        elif method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            text = d.get("exception", {}).get("description") or d.get("text", "")
            log.append(f"exception: {text}")
        elif method == "Log.entryAdded":
            e = p.get("entry", {})
            log.append(f"{e.get('level')}: {e.get('text')}")
        elif method == "Inspector.targetCrashed":
            log.append("error: the page crashed")

    def call(self, method, params=None, session=None, timeout=10.0):
        """Send one command and return its result; events that arrive meanwhile are kept."""
        self._next_id += 1
        mid = self._next_id
        msg = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self._send(msg)
        deadline = time.monotonic() + timeout
        while True:
            m = self._recv(deadline)
            if m is None:
                raise BrowserError(f"no answer to {method} within {timeout}s")
            if m.get("id") == mid:
                if "error" in m:
                    raise CdpError(f"{method}: {m['error']}")
                return m.get("result", {})
            if "method" in m:
                self._event(m)

    def _pump(self, seconds):
        """Handle events for up to `seconds` (returns early on none left to read)."""
        deadline = time.monotonic() + seconds
        while True:
            m = self._recv(deadline)
            if m is None:
                return
            if "method" in m:
                self._event(m)

    # ---- pages --------------------------------------------------------------------------
    def open(self, url, width=None, height=None, color_scheme=None, timeout=15.0):
        """Open `url` in a new tab and return a Tab (a context manager that closes it) once
        the navigation committed. width/height emulate a viewport of that size (CSS px; up to
        480 px wide as a phone); color_scheme "dark" or "light" sets prefers-color-scheme."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        tab = Tab(self, target)
        try:
            tab.session = self.call("Target.attachToTarget",
                                    {"targetId": target, "flatten": True})["sessionId"]
            self._console[tab.session] = []
            for domain in ("Runtime", "Log", "Page", "Inspector"):
                tab.call(f"{domain}.enable")
            if width or height:
                tab.call("Emulation.setDeviceMetricsOverride", {
                    "width": width or 1280, "height": height or 800, "deviceScaleFactor": 1,
                    "mobile": bool(width and width <= 480)})
            if color_scheme:
                tab.call("Emulation.setEmulatedMedia", {
                    "features": [{"name": "prefers-color-scheme", "value": color_scheme}]})
            nav = tab.call("Page.navigate", {"url": url}, timeout=timeout)
            if nav.get("errorText"):
                raise BrowserError(f"cannot load {url}: {nav['errorText']}")
        except BaseException:
            tab.close()
            raise
        tab.url = url
        return tab

    def load(self, url, timeout=15.0, result_id="result"):
        """Open `url` in a new tab, wait (at most `timeout` s) until the element `result_id`
        holds text, parse it as JSON and return a PageRun. Raises BrowserError if the page
        cannot be loaded or never finishes (with the DOM and the console in the message), or
        if the page reported a script error (probe_page's "__page_error__")."""
        with self.open(url, timeout=timeout) as tab:
            text = tab.wait(_READ_RESULT % json.dumps(result_id), timeout=timeout,
                            message=f"#{result_id} still empty")
            self._pump(0)
            try:
                result = json.loads(text)
            except ValueError:
                raise BrowserError(f"{url}: #{result_id} is not JSON: {text[:2000]!r}")
            console = tab.console
            if isinstance(result, dict) and "__page_error__" in result:
                raise BrowserError(f"{url}: the page script failed: {result['__page_error__']}"
                                   f"\nconsole: {console}")
            return PageRun(url, result, console)


class Tab:
    """One open page of a Browser (Browser.open): evaluate JavaScript in it, wait for a
    condition, click like a user, type, take a screenshot. `console` holds what the page
    logged so far (console calls, uncaught exceptions, Chromium's own messages: failed loads,
    CSP violations), as "level: text" strings."""

    def __init__(self, browser, target):
        self.browser = browser
        self.target = target
        self.session = None
        self.url = None

    def call(self, method, params=None, timeout=10.0):
        return self.browser.call(method, params, session=self.session, timeout=timeout)

    @property
    def console(self):
        self.browser._pump(0)
        return list(self.browser._console.get(self.session, []))

    def errors(self):
        """The console entries at level error (and uncaught exceptions)."""
        return [c for c in self.console if c.startswith(("error:", "exception:",
                                                          "console.error:"))]

    def eval(self, expression, timeout=10.0):
        """The value of a JavaScript expression (promises awaited), as JSON-able data.
        A thrown exception is a BrowserError."""
        r = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                           "awaitPromise": True}, timeout=timeout)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise BrowserError(f"{expression[:200]}: "
                               f"{d.get('exception', {}).get('description') or d.get('text')}")
        return r.get("result", {}).get("value")

    def wait(self, expression, timeout=10.0, message=None):
        """Evaluate `expression` until it is truthy (returned) or fail after `timeout` with
        `message` (what is still awaited), the DOM and the console. Not a sleep: it polls,
        handling page events. Values come back as JSON: a DOM element is {} (falsy here), so
        wait for `!!document.querySelector(...)`."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.eval(expression, timeout=max(1.0, deadline - time.monotonic()))
            except BrowserError:  # e.g. evaluated while a navigation swapped the context
                value = None
            if value:
                return value
            if time.monotonic() >= deadline:
                try:  # the body: a page's inline style would fill the excerpt
                    dom = self.eval("(document.body || document.documentElement).outerHTML")
                except BrowserError as e:
                    dom = str(e)
                raise BrowserError(
                    f"{self.url}: {message or 'still waiting for ' + expression} after "
                    f"{timeout}s\n"
                    f"console: {self.console}\nDOM: {(dom or '')[:3000]}")
            self.browser._pump(0.02)

    def click(self, selector, timeout=10.0):
        """A real mouse click (press and release) in the middle of the first element matching
        `selector`, once it is visible; scrolled into view first."""
        box = self.wait(f"""(() => {{
  const e = document.querySelector({json.dumps(selector)});
  if (!e) return null;
  e.scrollIntoView({{block: "center", inline: "center"}});
  const r = e.getBoundingClientRect();
  return r.width > 0 && r.height > 0 ? {{x: r.x + r.width / 2, y: r.y + r.height / 2}} : null;
}})()""", timeout=timeout, message=f"still waiting for {selector} to be visible")
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", {"type": kind, "x": box["x"], "y": box["y"],
                                                   "button": "left", "clickCount": 1})

    def type(self, selector, text):
        """Focus the element matching `selector` and type `text` into it."""
        self.eval(f"document.querySelector({json.dumps(selector)}).focus()")
        self.call("Input.insertText", {"text": text})

    def press(self, key):
        """Press and release one key, e.g. "Enter" or "Escape"."""
        codes = {"Enter": 13, "Escape": 27, "Tab": 9}
        for kind in ("keyDown", "keyUp"):
            params = {"type": kind, "key": key, "code": key,
                      "windowsVirtualKeyCode": codes.get(key, 0)}
            if key == "Enter" and kind == "keyDown":
                params["text"] = "\r"
            self.call("Input.dispatchKeyEvent", params)

    def screenshot(self, path, full_page=True):
        """Save a PNG of the page (the whole page, or the viewport) to `path`."""
        params = {"format": "png"}
        if full_page:
            m = self.call("Page.getLayoutMetrics")
            size = m.get("cssContentSize") or m["contentSize"]
            view = m.get("cssLayoutViewport") or m["layoutViewport"]
            params["captureBeyondViewport"] = True
            params["clip"] = {"x": 0, "y": 0, "width": view["clientWidth"],
                              "height": size["height"], "scale": 1}
        data = self.call("Page.captureScreenshot", params, timeout=30)["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        return path

    def close(self):
        try:
            self.browser.call("Target.closeTarget", {"targetId": self.target})
        except BrowserError:
            pass
        if self.session:
            self.browser._console.pop(self.session, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def run_page(url, timeout=15.0, **browser_kw):
    """Load `url` in a fresh headless Chromium and return the JSON the page wrote into
    <pre id="result"> (see Browser.load). browser_kw go to Browser (hosts=, flags=)."""
    with Browser(**browser_kw) as b:
        return b.load(url, timeout=timeout).result


# ---- pages ------------------------------------------------------------------------------

PROBE_JS = r"""
// probe(url, init, expose): fetch() that never throws. expose: header names to read back.
async function probe(url, init = {}, expose = []) {
  let r;
  try {
    r = await fetch(url, init);
  } catch (e) {
    return {ok: false, error: e.name, message: e.message};
  }
  const headers = {};
  for (const [k, v] of r.headers) headers[k] = v;         // every readable header
  for (const n of expose) headers[n.toLowerCase()] = r.headers.get(n);  // null if hidden
  let body = null;
  try { body = await r.text(); } catch (e) { body = null; }
  return {ok: true, status: r.status, type: r.type, headers, body};
}
function finish(value) {
  document.getElementById("result").textContent = JSON.stringify(value);
}
"""


def probe_page(script, title="sluice browser test", **consts):
    """An HTML page whose async `script` (a function body: use await, `return` the result)
    runs at load; what it returns is written as JSON into <pre id="result">. `consts` become
    JavaScript constants (JSON-encoded), e.g. API="http://127.0.0.1:8080". probe() and
    finish() (PROBE_JS) are available; ORIGIN is the page's own origin."""
    decl = "".join(f"const {k} = {json.dumps(v)};\n" for k, v in consts.items())
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title><link rel="icon" href="data:,"></head>
<body><pre id="result"></pre>
<script>
{PROBE_JS}
const ORIGIN = location.origin;
{decl}
(async () => {{
{script}
}})().then(finish, e => finish({{__page_error__: String(e && e.stack || e)}}));
</script></body></html>
"""


class PageServer(Backend):
    """A recording test origin (a Backend) that serves `html` at `path` (default "/") as
    text/html, uncached. Other paths answer like any Backend (Backend.on adds more).

        page = PageServer(html).start()
        page.url()                              # http://127.0.0.1:PORT/
        page.url(host="app.example.test")       # http://app.example.test:PORT/ (HOSTS)
        page.origin(host="app.example.test")    # http://app.example.test:PORT
    """

    def __init__(self, html=None, path="/", name="page", host="127.0.0.1", port=0):
        super().__init__(name, port=port, host=host)
        if html is not None:
            self.page(path, html)

    def page(self, path, html):
        body = html.encode() if isinstance(html, str) else html
        return self.on(path, Response(body=body, headers=[
            ("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")]))

    def origin(self, host=None):
        return f"http://{host or self.host}:{self.port}"

    def url(self, path="/", host=None):
        return self.origin(host) + path
