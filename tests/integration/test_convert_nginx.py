"""`sluice convert-nginx FILE [-o OUT]` as a command: TOML on stdout or in OUT, warnings and
notes on stderr with FILE:LINE, the counts at the top of the TOML, syntax errors with nginx's
wording and position (exit 1), usage errors (exit 2), and every corpus file converting to a
configuration `sluice -t` accepts (without nginx installed: no nginx is started here)."""

import os
import re
import shutil

import pytest

from sluicetest import run_cli
from sluicetest.nginx import placeholders, render_tree, template_files
from sluicetest.tls import TestCA

CORPUS = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "nginx-corpus"))
CORPUS_NAMES = sorted(f[:-5] for f in os.listdir(CORPUS) if f.endswith(".conf"))
DIAG = re.compile(r"^(\S+):(\d+): (warning|note|error): (.+)$")


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return path


def _convert(*args):
    return run_cli(["convert-nginx", *args], timeout=30)


@pytest.mark.parametrize("name", CORPUS_NAMES)
def test_corpus_converts_to_a_config_that_passes_t(name, tmp_path):
    texts = "".join(open(os.path.join(CORPUS, f)).read() for f in template_files(CORPUS, name))
    ca = TestCA(tmp_path / "ca")
    values = {}
    port = 20000
    for kind, n in sorted(placeholders(texts), key=lambda k: (k[0], k[1] or "")):
        if kind == "PORT":
            port += 1
            values[(kind, n)] = port
        elif kind == "BACKEND":
            values[(kind, n)] = "127.0.0.1:9"
        elif kind == "CERT":
            values[("CERT", n)], values[("KEY", n)] = ca.issue(n, [f"{n}.test"])
    values[("ROOT", None)] = str(tmp_path / "www")
    values[("RUN", None)] = str(tmp_path / "run")
    _write(str(tmp_path / "run" / "temp-paths.conf"), "")
    main = render_tree(CORPUS, name, str(tmp_path / "conf"), values)
    mime = "/etc/nginx/mime.types"
    if os.path.exists(mime):
        shutil.copy(mime, tmp_path / "conf" / "mime.types")
    else:
        _write(str(tmp_path / "conf" / "mime.types"), "types { text/html html; }\n")
    out_path = str(tmp_path / "sluice.toml")
    out = _convert(main, "-o", out_path)
    assert out.returncode == 0, out.stderr
    # Every diagnostic names a file and line; the summary counts match the TOML header.
    lines = out.stderr.strip().splitlines()
    summary = lines[-1]
    m = re.match(r"sluice convert-nginx: (\d+) directives in \d+ files?: (\d+) converted, "
                 r"(\d+) not converted$", summary)
    assert m, summary
    assert int(m.group(1)) == int(m.group(2)) + int(m.group(3))
    diags = [l for l in lines[:-1] if not l.endswith("(sluice -t warning)")]
    for line in diags:
        assert DIAG.match(line), line
    with open(out_path) as f:
        toml = f.read()
    assert f"# {m.group(1)} nginx directives: {m.group(2)} converted, {m.group(3)} not converted." \
        in toml
    # Every directive that was not converted has its line (warning or note), or is inside a
    # block whose line counts it.
    named = 0
    for l in diags:
        if "not converted" in l:
            inside = re.search(r"\(with the (\d+) directives? inside it\)", l)
            named += 1 + (int(inside.group(1)) if inside else 0)
    assert named == int(m.group(3)), out.stderr
    check = run_cli(["-t", "-c", out_path])
    assert check.returncode == 0, check.stdout + check.stderr + "\n" + toml


def test_stdout_and_stderr(tmp_path):
    conf = _write(str(tmp_path / "nginx.conf"), """events {}
http {
    gzip on;
    server {
        listen 127.0.0.1:18080;
        location / { proxy_pass http://127.0.0.1:9000; proxy_set_header Host $host; }
    }
}
""")
    out = _convert(conf)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("# Sluice configuration converted from " + conf)
    assert 'listen = "127.0.0.1:18080"' in out.stdout
    assert f"{conf}:3: warning: \"gzip\" not converted: Sluice does not compress" in out.stderr
    assert f"# {conf}:6: location /" in out.stdout
    assert "warning" not in out.stdout.split("\n\n", 1)[1]  # diagnostics only in the header


def test_output_file(tmp_path):
    conf = _write(str(tmp_path / "nginx.conf"),
                  "http { server { listen 127.0.0.1:18081; return 204; } }\n")
    target = str(tmp_path / "out" / "sluice.toml")
    os.makedirs(os.path.dirname(target))
    out = _convert(conf, "-o", target)
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""
    with open(target) as f:
        text = f.read()
    assert 'return = { status = 204 }' in text
    assert run_cli(["-t", "-c", target]).returncode == 0


@pytest.mark.parametrize("text,line,message", [
    ("http {\n  server {\n    listen 80;\n", 4, 'unexpected end of file, expecting "}"'),
    ("http {\n  server { listen 80 }\n}\n", 2, 'unexpected "}"'),
    ("events {}\n;\n", 2, 'unexpected ";"'),
    ('http { add_header X "a"b; }\n', 1, 'unexpected "b"'),
])
def test_syntax_errors_exit_1_with_position(tmp_path, text, line, message):
    conf = _write(str(tmp_path / "nginx.conf"), text)
    out = _convert(conf)
    assert out.returncode == 1
    assert out.stdout == ""
    assert out.stderr.strip() == f"{conf}:{line}: error: {message}"


def test_include_errors(tmp_path):
    conf = _write(str(tmp_path / "nginx.conf"), "http {\n  include sites/*.conf;\n}\n")
    _write(str(tmp_path / "sites" / "a.conf"), "server {\n  listen 80;\n  include a2.conf;\n}\n")
    out = _convert(conf)
    assert out.returncode == 1
    assert out.stderr.strip() == (f"{tmp_path}/sites/a.conf:3: error: open() "
                                  f"\"{tmp_path}/a2.conf\" failed (2: No such file or directory)")
    _write(str(tmp_path / "a2.conf"), "include sites/*.conf;\n")
    out = _convert(conf)
    assert out.returncode == 1
    assert "include cycle" in out.stderr


def test_usage_and_nothing_to_convert(tmp_path):
    assert _convert().returncode == 2
    assert _convert("a.conf", "b.conf").returncode == 2
    missing = _convert(str(tmp_path / "none.conf"))
    assert missing.returncode == 1
    assert "No such file or directory" in missing.stderr
    conf = _write(str(tmp_path / "nginx.conf"), "events {}\n")
    out = _convert(conf)
    assert out.returncode == 1
    assert "no http { server { ... } } block" in out.stderr


def test_result_checked_like_sluice_t(tmp_path):
    """A certificate this machine cannot read: the TOML is still written, and the -t errors
    are reported (exit 1), each with its position in the output."""
    conf = _write(str(tmp_path / "nginx.conf"), """http { server {
    listen 127.0.0.1:18443 ssl;
    ssl_certificate /nonexistent/cert.pem;
    ssl_certificate_key /nonexistent/key.pem;
    location / { proxy_pass http://127.0.0.1:9000; proxy_set_header Host $host; }
} }
""")
    target = str(tmp_path / "s.toml")
    out = _convert(conf, "-o", target)
    assert out.returncode == 1
    assert os.path.exists(target)
    assert re.search(re.escape(target) + r":\d+:\d+: .*cannot.*\(sluice -t\)", out.stderr), \
        out.stderr
    assert "the result does not pass sluice -t here" in out.stderr


def test_shipped_example_is_current():
    """examples/nginx/sluice.toml is what convert-nginx makes of examples/nginx/nginx.conf
    today (the migration guide shows both); only the certificates are missing here."""
    examples = os.path.join(os.path.dirname(__file__), "..", "..", "examples")
    out = run_cli(["convert-nginx", "nginx/nginx.conf"], cwd=examples, timeout=30)
    with open(os.path.join(examples, "nginx", "sluice.toml")) as f:
        shipped = f.read()
    # The first line names the version that wrote it.
    assert out.stdout.splitlines()[1:] == shipped.splitlines()[1:], (
        "regenerate: cd examples && ../build/sluice convert-nginx nginx/nginx.conf "
        "-o nginx/sluice.toml")
    errors = [l for l in out.stderr.splitlines() if l.endswith("(sluice -t)")]
    assert errors and all("cannot load certificate /etc/letsencrypt/" in l for l in errors), \
        out.stderr
