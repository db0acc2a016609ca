"""Runs Debian's nginx as a test peer: renders a templated nginx.conf (placeholders such as
@@PORT:http@@), starts `nginx -p PREFIX -c CONF -g 'daemon off;'` in its own process group,
waits for its ports and stops it. Used by the differential tests against `sluice
convert-nginx` (tests/integration/test_nginx_differential.py).

    nginx_bin()                      # path of the nginx binary, or None
    render_tree(src_dir, name, dst_dir, values)  # NAME.conf and NAME.d/ with placeholders
    n = Nginx(prefix, conf).start(ports)
    n.stop()
"""

import os
import re
import shutil
import signal
import subprocess
import time

from .util import port_is_open, read_text

PLACEHOLDER = re.compile(r"@@([A-Z]+)(?::([A-Za-z0-9_.-]+))?@@")


def nginx_bin():
    """The nginx binary (`scripts/setup.sh --bench` installs Debian's), or None."""
    for cand in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


def render(text, values):
    """Replace @@KIND@@ / @@KIND:name@@ with values[(KIND, name)] (name None for @@KIND@@);
    an unknown placeholder is an error, so a template cannot silently keep one."""
    def sub(m):
        key = (m.group(1), m.group(2))
        if key not in values:
            raise KeyError(f"no value for placeholder {m.group(0)}")
        return str(values[key])
    return PLACEHOLDER.sub(sub, text)


def placeholders(text):
    """Every (KIND, name) placeholder used in `text`."""
    return {(m.group(1), m.group(2)) for m in PLACEHOLDER.finditer(text)}


def template_files(src_dir, name):
    """The files of corpus entry `name`: NAME.conf and everything under NAME.d/ (relative)."""
    files = [f"{name}.conf"]
    sub = os.path.join(src_dir, f"{name}.d")
    if os.path.isdir(sub):
        for root, _, names in os.walk(sub):
            for n in sorted(names):
                files.append(os.path.relpath(os.path.join(root, n), src_dir))
    return files


def render_tree(src_dir, name, dst_dir, values):
    """Render NAME.conf (and NAME.d/) into dst_dir; returns the main file's path."""
    for rel in template_files(src_dir, name):
        with open(os.path.join(src_dir, rel)) as f:
            text = render(f.read(), values)
        out = os.path.join(dst_dir, rel)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with open(out, "w") as f:
            f.write(text)
    return os.path.join(dst_dir, f"{name}.conf")


def temp_paths_conf(run_dir):
    """nginx's temporary folders under run_dir (its compiled-in ones are not writable here)."""
    return "".join(f"{k}_temp_path {run_dir}/{k};\n"
                   for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))


class Nginx:
    def __init__(self, prefix, conf):
        self.prefix = prefix
        self.conf = conf
        self.proc = None
        self.stderr_path = os.path.join(prefix, "nginx.stderr")

    def start(self, ports, timeout=10.0):
        os.makedirs(self.prefix, exist_ok=True)
        err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen([nginx_bin(), "-p", self.prefix, "-c", self.conf,
                                      "-e", self.stderr_path, "-g", "daemon off;"],
                                     stdout=err, stderr=err, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        err.close()
        deadline = time.monotonic() + timeout
        pending = list(ports)
        while pending:
            if self.proc.poll() is not None:
                raise AssertionError(f"nginx exited with {self.proc.returncode}:\n{self.stderr()}")
            pending = [p for p in pending if not port_is_open(p)]
            if time.monotonic() > deadline:
                raise AssertionError(f"nginx did not listen on {pending}:\n{self.stderr()}")
            time.sleep(0.02)
        return self

    def stderr(self):
        return read_text(self.stderr_path)

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)  # fast shutdown; the master stops its workers
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
