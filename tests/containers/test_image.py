"""The container image (docker/Dockerfile), built with podman and run with buildah on the host
network (see conftest.py): its metadata and size, what its runtime stage holds, and Sluice
running from it read-only as the non-root user against a backend on the host: `sluice -t`, a
proxied request, /health/ready, the HEALTHCHECK command, SIGHUP reload, SIGQUIT draining an
in-flight request."""

import os
import re
import signal
import subprocess
import threading
import time
import tomllib

import pytest

from conftest import ROOT, run
from sluicetest import Backend, Response, http_request, port_is_open, port_refuses, wait_until
from sluicetest.process import Metrics
from sluicetest.util import free_port

MAX_ADDED_BYTES = 60 * 1000 * 1000  # the runtime stage over its base image
TOKEN = "image-test-token"


def buildah_run(ctr, *cmd, user=None, env=None, volumes=(), timeout=60):
    args = ["buildah", "run", "--isolation", "chroot"]
    if user:
        args += ["--user", user]
    for k, v in (env or {}).items():
        args += ["-e", f"{k}={v}"]
    for v in volumes:
        args += ["--volume", v]
    return run([*args, ctr, "--", *cmd], timeout=timeout)


def mounted(ctr):
    r = run(["buildah", "mount", ctr], timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


# ---- the image itself ------------------------------------------------------------------

def test_image_metadata(runnable):
    cfg = runnable["config"]
    assert cfg["User"] == "10001:10001"
    assert cfg["Entrypoint"] == ["/usr/local/bin/sluice"]
    assert cfg["Cmd"] == ["-c", "/etc/sluice/sluice.toml"]
    assert cfg["StopSignal"] == "SIGQUIT"
    # the docker format keeps the HEALTHCHECK (OCI image configs have no such field)
    assert cfg["ManifestType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert cfg["Healthcheck"]["Test"] == ["CMD", "/usr/local/bin/sluice-healthcheck"]
    # EXPOSE = the listeners of the config baked into the image
    baked = tomllib.load(open(os.path.join(ROOT, "docker", "sluice.toml"), "rb"))
    ports = {int(l["listen"].rsplit(":", 1)[1]) for l in baked["listener"]}
    ports.add(int(baked["admin"]["listen"].rsplit(":", 1)[1]))
    assert set(cfg["ExposedPorts"]) == {f"{p}/tcp" for p in ports}
    # a build without --build-arg VERSION (docker compose build) labels this version too
    dockerfile = open(os.path.join(ROOT, "docker", "Dockerfile")).read()
    assert re.search(r"^ARG VERSION=(\S+)$", dockerfile, re.M).group(1) == runnable["version"]
    labels = cfg["Labels"]
    assert labels["org.opencontainers.image.version"] == runnable["version"]
    assert labels["org.opencontainers.image.revision"] == runnable["revision"]
    assert labels["org.opencontainers.image.source"] == runnable["source"]


def test_runtime_stage_is_small_and_holds_only_what_runs(container, runnable):
    assert runnable["added_bytes"] <= MAX_ADDED_BYTES, runnable["added_bytes"]
    root = mounted(container)
    for tool in ("gcc", "cc", "c++", "g++", "cmake", "make", "curl"):
        assert not os.path.exists(f"{root}/usr/bin/{tool}"), tool
    for headers in ("uv.h", "openssl/ssl.h", "hiredis/hiredis.h", "re2/re2.h", "llhttp.h"):
        assert not os.path.exists(f"{root}/usr/include/{headers}"), headers
    assert [f for f in os.listdir(f"{root}/var/lib/apt/lists") if f not in ("lock", "partial")] \
        == []
    assert not [f for f in os.listdir(f"{root}/var/cache/apt") if f.endswith(".bin")]
    docs = [os.path.join(d, f) for d, _, fs in os.walk(f"{root}/usr/share/doc") for f in fs]
    assert all(f.endswith("/copyright") for f in docs), [f for f in docs if "copyright" not in f]
    # stripped: no symbol table
    sections = run(["readelf", "-S", "-W", f"{root}/usr/local/bin/sluice"]).stdout
    assert ".text" in sections and ".symtab" not in sections and ".debug_info" not in sections
    # every library it links is there
    r = buildah_run(container, "ldd", "/usr/local/bin/sluice")
    assert r.returncode == 0 and "not found" not in r.stdout, r.stdout + r.stderr
    # what the health check, the Kubernetes preStop hook and the config reloader run
    r = buildah_run(container, "bash", "-c", "command -v sleep find sort xargs cksum date cat",
                    user="sluice")
    assert r.returncode == 0 and len(r.stdout.split()) == 7, r.stdout + r.stderr
    for tool in ("sluice-healthcheck", "sluice-reload-on-change"):
        assert os.access(f"{root}/usr/local/bin/{tool}", os.X_OK), tool


def test_runs_as_the_non_root_user(container):
    for user in ("sluice", None):  # named, and the image's USER by default
        r = buildah_run(container, "id", user=user)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "uid=10001(sluice) gid=10001(sluice) groups=10001(sluice)"


def test_baked_config_and_version(container, runnable):
    r = buildah_run(container, "/usr/local/bin/sluice", "-v", user="sluice")
    assert r.stdout.strip() == f"sluice {runnable['version']}"
    r = buildah_run(container, "/usr/local/bin/sluice", "-t", "-c", "/etc/sluice/sluice.toml",
                    user="sluice", env={"SLUICE_BACKEND": "127.0.0.1:8000"})
    assert r.returncode == 0, r.stderr
    assert "configuration file /etc/sluice/sluice.toml test is successful" in r.stdout


# ---- Sluice running from the image -----------------------------------------------------

def descendants(pid):
    """Pids of every process below `pid`."""
    children = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(p))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


class Contained:
    """Sluice started from the image like `docker run --read-only --tmpfs /run/sluice
    --cap-drop ALL -v DIR:/etc/sluice:ro IMAGE`: the image's ENTRYPOINT and CMD, as its USER.
    buildah run has no --read-only: the container's root is remounted read-only in the
    container's own mount namespace, then the command runs as the image's user with no
    capabilities and no_new_privs. Signals go to the sluice process, as `docker kill` sends
    them."""

    def __init__(self, ctr, image, conf_dir, env, workdir):
        uid, gid = image["config"]["User"].split(":")
        argv = image["config"]["Entrypoint"] + image["config"]["Cmd"]
        script = ('uid=$0 gid=$1; shift; mount -o remount,bind,ro / && exec setpriv '
                  '--reuid="$uid" --regid="$gid" --clear-groups --inh-caps=-all '
                  '--bounding-set=-all --no-new-privs -- "$@"')
        args = ["buildah", "run", "--isolation", "chroot", "--user", "root", "--cap-add",
                "CAP_SYS_ADMIN", "--mount", "type=tmpfs,destination=/run/sluice,tmpfs-mode=1777",
                "--volume", f"{conf_dir}:/etc/sluice:ro"]
        for k, v in env.items():
            args += ["-e", f"{k}={v}"]
        self.out = open(os.path.join(workdir, "container.out"), "w+b")
        self.err = open(os.path.join(workdir, "container.err"), "w+b")
        self.proc = subprocess.Popen([*args, ctr, "--", "/bin/sh", "-c", script, uid, gid, *argv],
                                     stdout=self.out, stderr=self.err, stdin=subprocess.DEVNULL)
        self.pid = None

    def wait_sluice(self, timeout=20):
        def found():
            assert self.proc.poll() is None, f"the container exited: {self.stderr()}"
            pids = [p for p in descendants(self.proc.pid) if comm(p) == "sluice"]
            self.pid = pids[0] if pids else None
            return self.pid is not None
        wait_until(found, timeout, message="sluice running in the container")
        return self.pid

    def stderr(self):
        self.err.flush()
        with open(self.err.name, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def kill(self, sig):
        os.kill(self.pid, sig)

    def stop(self):
        if self.proc.poll() is None:
            for p in [*descendants(self.proc.pid), self.proc.pid]:  # before they are orphans
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.wait(10)
        self.out.close()
        self.err.close()


def test_contract(container, runnable, tmp_path):
    """Config from a mounted folder with ${SLUICE_*} from the environment; the root file system
    read-only, a tmpfs for the pid file."""
    blue = Backend("blue").start()
    green = Backend("green").start()
    blue.on("/slow", Response(body=b"finished-after-sigquit", delay=1.5))
    port, admin = free_port(), free_port()
    conf = tmp_path / "etc-sluice"
    conf.mkdir()

    def write_config(backend_env):
        text = f"""
[server]
workers = 2
shutdown_timeout = "8s"
pid_file = "/run/sluice/sluice.pid"
[admin]
listen = "127.0.0.1:{admin}"
token = "${{SLUICE_ADMIN_TOKEN}}"
[log]
access = "stdout"
format = "json"
[[listener]]
name = "web"
listen = "127.0.0.1:{port}"
[pool.app]
backends = [{{ address = "${{{backend_env}}}" }}]
[[route]]
name = "app"
path = "/"
pool = "app"
"""
        tmp = conf / "sluice.toml.tmp"
        tmp.write_text(text)
        os.replace(tmp, conf / "sluice.toml")  # as an editor saves it: a new file

    write_config("SLUICE_BACKEND")
    env = {"SLUICE_BACKEND": blue.address, "SLUICE_GREEN": green.address,
           "SLUICE_ADMIN_TOKEN": TOKEN, "SLUICE_ADMIN_PORT": str(admin)}
    c = Contained(container, runnable, str(conf), env, str(tmp_path))
    try:
        # sluice -t, by the image's user, on the mounted config
        r = buildah_run(container, "/usr/local/bin/sluice", "-t", "-c", "/etc/sluice/sluice.toml",
                        user="sluice", env=env, volumes=[f"{conf}:/etc/sluice:ro"])
        assert r.returncode == 0, r.stderr
        assert "configuration file /etc/sluice/sluice.toml test is successful" in r.stdout

        pid = c.wait_sluice()
        wait_until(lambda: port_is_open(admin) and port_is_open(port), 20, message="listening")

        # running as the image's user, on a read-only root, its pid file on the tmpfs
        status = open(f"/proc/{pid}/status").read()
        assert re.search(r"^Uid:\s+10001\s+10001\s+10001\s+10001$", status, re.M), status
        assert re.search(r"^CapEff:\s+0+$", status, re.M)
        root_mount = [l.split() for l in open(f"/proc/{pid}/mountinfo")
                      if l.split()[4] == "/"][-1]
        assert "ro" in root_mount[5].split(","), root_mount
        assert open(f"/proc/{pid}/root/run/sluice/sluice.pid").read().strip() == str(pid)

        # a proxied request and readiness
        r = http_request(port, "GET", "/hello")
        assert r.status == 200 and r.json()["backend"] == "blue"
        assert r.header("x-request-id")
        assert admin_get(admin, "/health/ready") == 200

        # the image's HEALTHCHECK command, inside the container
        hc = runnable["config"]["Healthcheck"]["Test"][1:]
        r = buildah_run(container, *hc, user="sluice", env={"SLUICE_ADMIN_PORT": str(admin)})
        assert r.returncode == 0, r.stdout + r.stderr
        r = buildah_run(container, *hc, user="sluice",
                        env={"SLUICE_ADMIN_PORT": str(free_port())})
        assert r.returncode == 1  # nothing listens there: unhealthy
        # SIGHUP: the edited file is read again
        write_config("SLUICE_GREEN")
        c.kill(signal.SIGHUP)
        wait_until(lambda: metrics(admin).value("sluice_config_generation") == 2, 10,
                   message="reloaded")
        assert http_request(port, "GET", "/hello").json()["backend"] == "green"

        # SIGQUIT (the image's STOPSIGNAL): the in-flight request finishes, then exit 0
        write_config("SLUICE_BACKEND")
        c.kill(signal.SIGHUP)
        wait_until(lambda: metrics(admin).value("sluice_config_generation") == 3, 10,
                   message="reloaded back")
        result = {}
        t = threading.Thread(target=lambda: result.update(
            r=http_request(port, "GET", "/slow", timeout=20)))
        t.start()
        wait_until(lambda: any(q.path == "/slow" for q in blue.requests), 5, message="in flight")
        c.kill(signal.SIGQUIT)
        wait_until(lambda: port_refuses(port), 2, message="listener closed")
        t.join(10)
        assert result["r"].status == 200 and result["r"].body == b"finished-after-sigquit"
        assert c.proc.wait(15) == 0, c.stderr()
        assert '"msg":"graceful shutdown"' in c.stderr()
        assert '"msg":"sluice stopped"' in c.stderr()
    finally:
        c.stop()
        blue.stop()
        green.stop()


def admin_get(port, path):
    return http_request(port, "GET", path).status


def metrics(port):
    return Metrics(http_request(port, "GET", "/metrics").body.decode())
