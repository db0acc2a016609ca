"""`sluice convert-nginx` against nginx itself.

For every configuration of tests/nginx-corpus/: render it twice (nginx's ports, Sluice's),
convert one copy, check it with `sluice -t`, start Debian's nginx and Sluice side by side on
the same recording backends, send both the same requests (paths, hosts, redirects, 404s,
static files, WebSocket upgrades, bodies) and compare the status, Location, body, the
response headers a case names, and the request each backend saw (method, target, body,
Host, X-Forwarded-*, X-Real-IP and every other header nginx sent). The differences that are
Sluice's by design are declared per request (`known=`) and are asserted too, not ignored:
each one is a warning of the converter and a line of docs/migrating-from-nginx.md.

Skipped when nginx is not installed (`scripts/setup.sh --bench` installs it); cases with
static files are skipped, naming the missing feature, while `sluice -t` refuses `static`.
"""

import collections
import difflib
import os
import shutil
import ssl
import stat
import tempfile
import urllib.parse

import pytest

from sluicetest import Backend, RawClient, Response, Sluice, build_request, free_port, run_cli
from sluicetest.nginx import (Nginx, nginx_bin, placeholders, render, render_tree,
                              temp_paths_conf, template_files)
from sluicetest.tls import TestCA

MIME_TYPES = "/etc/nginx/mime.types"  # from nginx-common, installed with nginx
CORPUS = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "nginx-corpus"))

# Headers Sluice adds to what the backend sees by design (docs/migrating-from-nginx.md).
SLUICE_ADDS = {"x-request-id", "traceparent", "x-forwarded-for", "x-forwarded-proto",
               "x-forwarded-host"}
# Connection management differs by design (nginx: HTTP/1.0 + close, or its own values).
NOT_COMPARED = {"connection", "keep-alive", "content-length", "transfer-encoding"}


class R:
    """One request of a case.

    port: the @@PORT:name@@ it goes to (TLS when the name starts with "https").
    ws: send a WebSocket upgrade and exchange bytes after a 101.
    repeat: send it this many times (rate limits, balancing).
    known: differences by design, each with its reason: {"status": (nginx, sluice)},
           {"host": why} (Host seen by the backend), {"route": why} (nginx and Sluice route it
           differently, or one of them answers it itself), {"body": why},
           {"content-type": why} (of an answer the proxy makes itself: file, return),
           {"sluice-only": (header names, why)} (headers only Sluice forwards).
    """

    def __init__(self, port, path, host="app.test", method="GET", headers=(), body=None,
                 ws=False, repeat=1, known=None):
        self.port = port
        self.path = path
        self.host = host
        self.method = method
        self.headers = list(headers)
        self.body = body
        self.ws = ws
        self.repeat = repeat
        self.known = known or {}

    def __str__(self):
        scheme = "https" if self.port.startswith("https") else "http"
        return f"{self.method} {scheme}://{self.host}{self.path} (port {self.port})"


class Case:
    def __init__(self, requests, backends=None, certs=None, files=None, warnings=(),
                 ws_paths=None, response_headers=(), backend_headers=None, compare=None):
        self.requests = requests
        self.certs = certs or {}            # cert name -> DNS names
        self.files = files                  # static files: relative path -> bytes (None: none)
        self.warnings = list(warnings)      # substrings the converter must warn about
        self.ws_paths = ws_paths or {}      # backend -> path prefix answered with a 101
        self.response_headers = list(response_headers)
        self.backend_headers = backend_headers or {}  # backend -> extra response headers
        self.compare = compare              # special comparison for the whole case, see below


REDIRECT_308 = "Sluice's redirect_https answers 308 (the method is kept), nginx's return 301"
VERBOSE = os.environ.get("SLUICE_DIFF_VERBOSE") == "1"  # print every exchange pair
JS_TYPE = ("file types come from Sluice's table (/etc/mime.types: text/javascript), not "
           "nginx's mime.types (application/javascript)")
HOST_UPSTREAM = "without proxy_set_header Host nginx sends the upstream's name; Sluice the client's"

CASES = {
    "spa-api-tls": Case(
        certs={"app": ["app.test", "www.app.test"]},
        files={"index.html": b"<!doctype html><title>app</title>\n",
               "app.js": b"console.log('app');\n",
               "assets/logo.svg": b"<svg/>\n"},
        warnings=['"return": this listener answers every request with a redirect'],
        response_headers=["Strict-Transport-Security"],
        requests=[
            R("http", "/cart?item=3", known={"status": (301, 308)}),
            R("http", "/", host="www.app.test", known={"status": (301, 308)}),
            R("https", "/"),
            R("https", "/app.js", known={"content-type": JS_TYPE}),
            R("https", "/assets/logo.svg"),
            R("https", "/deep/link/42"),
            R("https", "/api/users?id=7"),
            R("https", "/api/orders", method="POST", body=b'{"n":1}',
              headers=[("Content-Type", "application/json")]),
        ]),
    "upstream-weights": Case(
        warnings=["Sluice has no backup servers"],
        compare="counts",
        requests=[R("http", "/page", host="any.test", repeat=8)]),
    "websocket": Case(
        ws_paths={"chat": "/ws/"},
        requests=[
            R("http", "/ws/room1", host="chat.test", ws=True),
            R("http", "/", host="chat.test"),
            R("http", "/history?room=1", host="chat.test"),
        ]),
    "vhosts-includes": Case(
        requests=[
            R("http", "/", host="shop.test"),
            R("http", "/cart?x=1", host="www.shop.test"),
            R("http", "/post/1", host="blog.test"),
            R("http", "/feed", host="blog.test"),
            R("http", "/v1/users", host="eu.api.test"),
            R("http", "/v2/users", host="eu.api.test"),
            R("http", "/", host="unknown.test"),
            R("http", "/", host="api.test"),
        ]),
    "rate-limited-login": Case(
        compare="sequence",
        requests=[R("http", "/login", method="POST", body=b"user=a", repeat=5),
                  R("http", "/", repeat=3)]),
    "proxy-pass-uri": Case(
        requests=[
            R("http", "/api/users?x=1"),
            R("http", "/api/"),
            R("http", "/api/a%20b"),
            R("http", "/v1/items/3?y=2"),
            R("http", "/raw/a%20b?q"),
            R("http", "/old-login?next=/"),
            R("http", "/noslash/x"),
            R("http", "/noslashy"),
            R("http", "/static/app.css"),
            R("http", "/static/x.php"),
            R("http", "/v1/index.php"),
            R("http", "/api/index.php"),
        ]),
    "regex-locations": Case(
        requests=[
            R("http", "/"),
            R("http", "/index.html"),
            R("http", "/images/a.jpg"),
            R("http", "/photos/b.JPG"),
            R("http", "/docs/readme.md"),
            R("http", "/docs/index.md"),
            R("http", "/docs/guide.txt"),
            R("http", "/docs/x.PNG"),
            R("http", "/images/x.md"),
        ]),
    "returns-redirects": Case(
        requests=[
            R("http", "/a?b=1", host="www.example.test"),
            R("http", "/health", host="example.test"),
            R("http", "/old", host="example.test"),
            R("http", "/moved?x=1", host="example.test"),
            R("http", "/gone/page", host="example.test"),
            R("http", "/nothing", host="example.test"),
            R("http", "/legacy", host="example.test"),
            R("http", "/other", host="example.test"),
            R("http", "/other", host="unknown.test"),
        ]),
    "rewrite-break": Case(
        requests=[
            R("http", "/api/users/1?full=1"),
            R("http", "/old/42/items?x=1"),
            R("http", "/old/abc"),
            R("http", "/legacy/page"),
            R("http", "/shop/cart?y=2"),
            R("http", "/home"),
        ]),
    "headers": Case(
        warnings=["without proxy_set_header Host"],
        response_headers=["X-Frame-Options", "X-Served-By", "X-Powered-By"],
        backend_headers={"app": [("X-Powered-By", "php/8")]},
        requests=[
            R("http", "/", headers=[("X-Forwarded-For", "203.0.113.9")]),
            R("http", "/u", headers=[("X_Trace", "1")], known={"sluice-only": (
                ["x_trace"], "nginx drops header names with '_' (underscores_in_headers off)")}),
            R("http", "/internal/x", headers=[("Accept-Encoding", "gzip")],
              known={"host": HOST_UPSTREAM}),
        ]),
    "static-site": Case(
        files={"index.html": b"home\n", "about/index.html": b"about\n",
               "assets/site.css": b"body{}\n", "assets/site.css.gz": b"gz",
               "files/report.txt": b"report\n"},
        response_headers=["Cache-Control", "Content-Encoding"],
        requests=[
            R("http", "/", host="www.site.test"),
            R("http", "/about/", host="www.site.test"),
            R("http", "/about", host="www.site.test", known={
                "status": (301, 200), "route": "try_files $uri/ on a directory without its '/': "
                "nginx redirects to add it, Sluice serves the directory's index"}),
            R("http", "/assets/site.css", host="www.site.test"),
            R("http", "/assets/site.css", host="www.site.test",
              headers=[("Accept-Encoding", "gzip")]),
            R("http", "/assets/none.css", host="www.site.test"),
            R("http", "/downloads/report.txt", host="www.site.test"),
            R("http", "/missing", host="www.site.test"),
        ]),
    "hash-balancing": Case(
        warnings=['"hash": the same keys stay together', '"ip_hash": Sluice hashes'],
        compare="sticky",
        requests=[R("http", "/users/me", headers=[("X-User", f"user-{i}")], repeat=3)
                  for i in range(6)] + [R("http", "/sessions/s", repeat=4)]),
    "wildcard-names": Case(
        requests=[
            R("http", "/", host="api.example.test"),
            R("http", "/x", host="eu.example.test"),
            R("http", "/y", host="a.b.example.test"),
            R("http", "/", host="corp.test"),
            R("http", "/z", host="www.corp.test"),
            R("http", "/", host="other.test"),
            R("http", "/", host="API.Example.Test", known={
                "host": "proxy_set_header Host $host sends the name lower-cased; Sluice "
                        "forwards the Host header as the client wrote it"}),
        ]),
    "body-limits": Case(
        warnings=["Sluice has one max_body_size for every route"],
        requests=[
            R("http", "/upload", method="POST", body=b"u" * 3000),
            R("http", "/upload", method="POST", body=b"u" * 5000),
            R("http", "/form", method="POST", body=b"f" * 500),
            R("http", "/form", method="POST", body=b"f" * 2000,
              known={"status": (413, 200), "route": "Sluice has one max_body_size (the "
                                                    "largest, 4k) for every route"}),
        ]),
    "no-proxy-headers": Case(
        warnings=["without proxy_set_header Host"],
        requests=[R("http", "/x?y=1", host="site.test", known={"host": HOST_UPSTREAM})]),
    "scheme-redirect": Case(
        certs={"app": ["app.test"]},
        warnings=['"return": this listener answers every request with a redirect'],
        requests=[
            R("http", "/x?y=1", known={"status": (301, 308)}),
            R("https", "/x?y=1"),
        ]),
    "tls-sni-vhosts": Case(
        certs={"a": ["a.test"], "b": ["b.test"]},
        requests=[
            R("https", "/", host="a.test"),
            R("https", "/x", host="b.test"),
        ]),
    "access-rules": Case(
        warnings=['"gzip" not converted', '"if" not converted', '"allow" not converted'],
        requests=[
            R("http", "/admin/x"),
            R("http", "/page"),
            R("http", "/private/x", known={"status": (403, 200), "route":
                                            "allow/deny lists are not converted"}),
            R("http", "/page", headers=[("X-Debug", "1")],
              known={"status": (418, 200), "route": "if blocks are not converted"}),
        ]),
    "multi-listen": Case(
        warnings=["Sluice's routes are not per listener"],
        requests=[
            R("main", "/", host="app.test"),
            R("alt", "/a", host="app.test"),
            R("admin", "/", host="admin.test"),
            R("main", "/", host="admin.test",
              known={"route": "Sluice's routes are not per listener: admin.test's routes "
                              "answer on every port"}),
        ]),
}


# ---- running both ----------------------------------------------------------------------

def _static_supported():
    """Whether this build serves static routes (`sluice -t` on a one-route file)."""
    d = tempfile.mkdtemp(prefix="sluice-static-probe-")
    try:
        path = os.path.join(d, "s.toml")
        with open(path, "w") as f:
            f.write('[[listener]]\nname = "w"\nlisten = "127.0.0.1:1"\n[[route]]\nname = "s"\n'
                    f'path = "/"\nstatic = {{ root = "{d}" }}\n')
        out = run_cli(["-t", "-c", path])
        return out.returncode == 0, (out.stdout + out.stderr).strip()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _open_dirs(path):
    """nginx's workers run as nobody when the tests run as root: let them read the files."""
    for root, dirs, files in os.walk(path):
        os.chmod(root, 0o755)
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)


class Side:
    """One proxy under test: its ports and how to reach them."""

    def __init__(self, name, ports):
        self.name = name
        self.ports = ports  # placeholder name -> port

    def location_key(self, loc, req):
        """A Location made comparable: absolute against the request's URL, this side's ports
        replaced by their placeholder names."""
        if loc is None:
            return None
        scheme = "https" if req.port.startswith("https") else "http"
        base = f"{scheme}://{req.host.lower()}:{self.ports[req.port]}{req.path}"
        url = urllib.parse.urljoin(base, loc)
        for pname, port in self.ports.items():
            url = url.replace(f":{port}/", f":@{pname}/").replace(f":{port}?", f":@{pname}?")
            if url.endswith(f":{port}"):
                url = url[: -len(str(port))] + "@" + pname
        # A default port is implied: http://h/ and http://h:80/ are the same target.
        return url.replace(":80/", "/").replace(":443/", "/")


class Exchange:
    def __init__(self):
        self.status = None
        self.headers = []
        self.body = b""
        self.echo = None
        self.backend = None  # (backend name, Request)
        self.error = None

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


def _send(port, req, ca, backends):
    ex = Exchange()
    before = {n: len(b.requests) for n, b in backends.items()}
    try:
        c = RawClient(port, timeout=10)
        if req.port.startswith("https"):
            ctx = ssl.create_default_context(cafile=ca.cert)
            c.sock = ctx.wrap_socket(c.sock, server_hostname=req.host.lower())
        with c:
            headers = list(req.headers)
            if req.ws:
                headers += [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                            ("Sec-WebSocket-Version", "13")]
            c.send(build_request(req.method, req.path, headers, req.body, req.host))
            if req.ws:
                r = c.read_head()
                if r.status == 101:
                    c.send(b"ping-123")
                    ex.echo = c.recv_exact(8)
            else:
                r = c.read_response(req.method)
            ex.status, ex.headers, ex.body = r.status, r.headers, r.body
    except Exception as e:  # noqa: BLE001 - reported as a difference
        ex.error = repr(e)
    for n, b in backends.items():
        new = b.requests[before[n]:]
        if new:
            ex.backend = (n, new[-1])
    return ex


def _headers_of(backend_req):
    out = collections.OrderedDict()
    for k, v in backend_req.headers:
        out.setdefault(k.lower(), []).append(v)
    return out


def _compare(case, req, n, s, ns, ss, problems):
    """Appends what differs between nginx's exchange `n` and Sluice's `s`."""
    where = str(req)

    def bad(what):
        problems.append(f"{where}: {what}")

    if n.error or s.error:
        bad(f"failed: nginx={n.error} sluice={s.error}")
        return
    want_status = req.known.get("status")
    if want_status:
        if (n.status, s.status) != want_status:
            bad(f"status nginx={n.status} sluice={s.status}, expected {want_status} "
                f"(known difference)")
    elif n.status != s.status:
        bad(f"status nginx={n.status} sluice={s.status}")
    nl = ns.location_key(n.header("location"), req)
    sl = ss.location_key(s.header("location"), req)
    if nl != sl and "route" not in req.known:
        bad(f"Location nginx={nl} sluice={sl}")
    if req.ws and n.echo != s.echo:
        bad(f"WebSocket echo nginx={n.echo!r} sluice={s.echo!r}")
    for h in case.response_headers:
        if "route" not in req.known and n.header(h) != s.header(h):
            bad(f"response header {h}: nginx={n.header(h)!r} sluice={s.header(h)!r}")
    if "route" in req.known:
        return
    nb, sb = n.backend, s.backend
    if (nb is None) != (sb is None) or (nb and nb[0] != sb[0]):
        bad(f"backend nginx={nb and nb[0]} sluice={sb and sb[0]}")
        return
    from_backend = n.header("x-backend") is not None
    proxy_answer_ok = n.status < 300 and not req.ws
    if (from_backend or proxy_answer_ok) and "body" not in req.known and n.body != s.body:
        bad(f"body nginx={n.body[:120]!r} sluice={s.body[:120]!r}")
    if not from_backend and proxy_answer_ok and n.status != 204 and "content-type" not in req.known:
        if (n.header("content-type") or "").split(";")[0] != \
                (s.header("content-type") or "").split(";")[0]:
            bad(f"Content-Type nginx={n.header('content-type')!r} "
                f"sluice={s.header('content-type')!r}")
    if nb is None:
        return
    nr, sr = nb[1], sb[1]
    if (nr.method, nr.target, nr.body) != (sr.method, sr.target, sr.body):
        bad(f"backend saw nginx={nr.method} {nr.target} ({len(nr.body)} bytes) "
            f"sluice={sr.method} {sr.target} ({len(sr.body)} bytes)")
    nh, sh = _headers_of(nr), _headers_of(sr)
    lines = []
    for k, v in nh.items():
        if k in NOT_COMPARED or (k == "host" and "host" in req.known):
            continue
        if sh.get(k) != v:
            lines.append(f"{k}: nginx={v} sluice={sh.get(k)}")
    only = set(req.known.get("sluice-only", ((), ""))[0])
    for k, v in sh.items():
        if k not in nh and k not in SLUICE_ADDS and k not in NOT_COMPARED and k not in only:
            lines.append(f"{k}: nginx=None sluice={v}")
    for k in only:
        if k in nh or k not in sh:
            lines.append(f"{k}: expected only Sluice to forward it ({req.known['sluice-only'][1]})")
    if "host" in req.known and nh.get("host") == sh.get("host"):
        lines.append(f"host: expected a difference ({req.known['host']}), both {sh.get('host')}")
    if lines:
        diff = "\n".join(difflib.unified_diff(
            [f"{k}: {v}" for k, v in nr.headers], [f"{k}: {v}" for k, v in sr.headers],
            "nginx's backend request", "sluice's backend request", lineterm=""))
        bad("backend request headers differ:\n    " + "\n    ".join(lines) + "\n" + diff)


def _compare_group(case, reqs, nx, sx, problems):
    """Whole-case comparisons where per-request equality is not the contract."""
    if case.compare == "counts":
        # Smooth weighted round robin in both: the same share per backend.
        nc = collections.Counter(e.backend and e.backend[0] for e in nx)
        sc = collections.Counter(e.backend and e.backend[0] for e in sx)
        if nc != sc:
            problems.append(f"backend counts nginx={dict(nc)} sluice={dict(sc)}")
    elif case.compare == "sequence":
        ns = [e.status for e in nx]
        ss = [e.status for e in sx]
        if ns != ss:
            problems.append(f"status sequence nginx={ns} sluice={ss}")
    elif case.compare == "sticky":
        # Both keep every key on one backend of the right upstream; which one is theirs.
        for side, ex in (("nginx", nx), ("sluice", sx)):
            seen = collections.defaultdict(set)
            for req, e in zip(reqs, ex):
                key = (req.path, tuple(req.headers))
                seen[key].add(e.backend and e.backend[0])
            for key, names in seen.items():
                group = {n.rstrip("0123456789") if n else None for n in names}
                if len(names) != 1 or group != {key[0].split("/")[1]}:
                    problems.append(f"{side}: {key} went to {sorted(map(str, names))}")


def _run_case(name, case, tmp, static_ok):
    bin_ = nginx_bin()
    if bin_ is None or not os.path.exists(MIME_TYPES):
        pytest.skip("nginx is not installed (scripts/setup.sh --bench installs it)")
    texts = "".join(open(os.path.join(CORPUS, f)).read() for f in template_files(CORPUS, name))
    wanted = placeholders(texts)
    if case.files is not None and not static_ok[0]:
        pytest.skip("static file routes are not in this build (sluice -t on a static route: "
                    f"{static_ok[1].splitlines()[0] if static_ok[1] else '?'})")

    backends = {}
    for kind, bname in sorted(wanted):
        if kind != "BACKEND":
            continue
        be = Backend(bname)

        def answer(r, bname=bname):
            return Response(body=f"{bname}: {r.method} {r.target}\n",
                            headers=case.backend_headers.get(bname, []))
        be.set_default(answer)
        if bname in case.ws_paths:
            be.on(case.ws_paths[bname] + "*", Response(action="upgrade"))
        backends[bname] = be.start()
    nginx = None
    sluice = None
    try:
        ca = TestCA(os.path.join(tmp, "ca"))
        values = {}
        for kind, cname in wanted:
            if kind in ("CERT", "KEY") and ("CERT", cname) not in values:
                cert, key = ca.issue(cname, case.certs.get(cname, [f"{cname}.test"]))
                values[("CERT", cname)], values[("KEY", cname)] = cert, key
            elif kind == "BACKEND":
                values[(kind, cname)] = backends[cname].address
        root = os.path.join(tmp, "www")
        os.makedirs(root, exist_ok=True)
        for rel, data in (case.files or {}).items():
            p = os.path.join(root, rel)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "wb") as f:
                f.write(data)
        values[("ROOT", None)] = root
        port_names = sorted(n for k, n in wanted if k == "PORT")
        sides = {}
        trees = {}
        for side in ("nginx", "sluice"):
            run = os.path.join(tmp, f"{side}-run")
            os.makedirs(run, exist_ok=True)
            with open(os.path.join(run, "temp-paths.conf"), "w") as f:
                f.write(temp_paths_conf(run))
            ports = {p: free_port() for p in port_names}
            v = dict(values)
            v[("RUN", None)] = run
            v.update({("PORT", p): port for p, port in ports.items()})
            trees[side] = render_tree(CORPUS, name, os.path.join(tmp, f"{side}-conf"), v)
            # `include mime.types;` is Debian's file, next to the rendered configuration.
            shutil.copy(MIME_TYPES, os.path.join(tmp, f"{side}-conf", "mime.types"))
            sides[side] = Side(side, ports)
        _open_dirs(tmp)

        toml = os.path.join(tmp, "sluice.toml")
        out = run_cli(["convert-nginx", trees["sluice"], "-o", toml], timeout=30)
        report = f"convert-nginx exit {out.returncode}\n--- stderr ---\n{out.stderr}"
        assert out.returncode == 0, report
        for w in case.warnings:
            assert w in out.stderr, f"expected a warning containing {w!r}\n{report}"
        check = run_cli(["-t", "-c", toml])
        assert check.returncode == 0, check.stdout + check.stderr + "\n" + report
        with open(toml) as f:
            toml_text = f.read()

        nginx = Nginx(os.path.join(tmp, "nginx-prefix"), trees["nginx"])
        nginx.start(sides["nginx"].ports.values())
        sluice = Sluice(os.path.join(tmp, "sluice-work"))
        sluice.start(toml_text)

        problems = []
        flat = [r for r in case.requests for _ in range(r.repeat)]
        nx, sx = [], []
        for req in flat:
            n = _send(sides["nginx"].ports[req.port], req, ca, backends)
            s = _send(sides["sluice"].ports[req.port], req, ca, backends)
            nx.append(n)
            sx.append(s)
        if VERBOSE:
            for req, n, s in zip(flat, nx, sx):
                print(f"{req}\n  nginx : {n.status} {n.header('location') or ''} "
                      f"{n.backend and (n.backend[0], n.backend[1].target)} {n.body[:60]!r}"
                      f"\n  sluice: {s.status} {s.header('location') or ''} "
                      f"{s.backend and (s.backend[0], s.backend[1].target)} {s.body[:60]!r}")
        if case.compare:
            for req, n, s in zip(flat, nx, sx):
                if n.error or s.error:
                    problems.append(f"{req}: failed: nginx={n.error} sluice={s.error}")
            _compare_group(case, flat, nx, sx, problems)
        else:
            for req, n, s in zip(flat, nx, sx):
                _compare(case, req, n, s, sides["nginx"], sides["sluice"], problems)
        if problems:
            pytest.fail(f"{name}: {len(problems)} difference(s) between nginx and Sluice:\n  "
                        + "\n  ".join(problems)
                        + f"\n\nconverted config: {toml}\n{report}\n--- sluice.toml ---\n"
                        + toml_text, pytrace=False)
    finally:
        if nginx is not None:
            nginx.stop()
        if sluice is not None:
            rc = sluice.stop()
            assert rc == 0, f"sluice exited with {rc}\n{sluice.stderr()[-3000:]}"
        for be in backends.values():
            be.stop()


@pytest.fixture(scope="module")
def static_support():
    return _static_supported()


@pytest.fixture
def work_dir():
    d = tempfile.mkdtemp(prefix="sluice-nginx-diff-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("name", sorted(CASES))
def test_nginx_differential(name, work_dir, static_support):
    _run_case(name, CASES[name], work_dir, static_support)


def test_corpus_is_covered():
    """Every corpus file has its case here, and the corpus has the 15+ shapes it promises."""
    names = sorted(f[:-5] for f in os.listdir(CORPUS) if f.endswith(".conf"))
    assert names == sorted(CASES)
    assert len(names) >= 15
