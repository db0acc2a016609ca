"""Fixtures for the container image tests (scripts/test.sh --containers).

There is no Docker engine and no image registry here, and container runtimes (crun, runc) cannot
start containers on this host's cgroup/rlimit setup. So:
  - the base image debian:bookworm-slim is made locally (scripts/container-base.sh: debootstrap
    from the machine's Debian mirror, cached);
  - docker/Dockerfile is built with `podman build --isolation chroot --network host --format
    docker` (docker format keeps HEALTHCHECK);
  - the image is run with `buildah from IMAGE` + `buildah run --isolation chroot`: the image's
    own binary, user and files, on the host network.
Every test is skipped, with the reason, where podman cannot run at all; a build that fails is a
failure. The build time and the image size are printed at the end of the run."""

import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "support"))

IMAGE = os.environ.get("SLUICE_TEST_IMAGE", "localhost/sluice:test")
BASE = "debian:bookworm-slim"
MEASURED = {}


def run(args, timeout=600, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=ROOT, **kw)


def cannot_run_podman():
    """Why podman/buildah cannot work on this machine, or None."""
    for tool in ("podman", "buildah"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/setup.sh --containers installs it)"
    if os.geteuid() != 0:
        user = os.environ.get("USER") or str(os.geteuid())
        try:
            subuid = open("/etc/subuid").read()
        except OSError:
            subuid = ""
        if not re.search(rf"^({re.escape(user)}|{os.geteuid()}):", subuid, re.M):
            return (f"rootless podman needs subordinate ids: no entry for {user} in /etc/subuid "
                    "(and debootstrap, which makes the base image, needs root)")
        return "debootstrap, which makes the base image, needs root"
    r = run(["podman", "info", "--format", "{{.Host.OCIRuntime.Name}}"], timeout=60)
    if r.returncode != 0:
        return f"podman info fails: {r.stderr.strip()[-500:]}"
    return None


def version():
    cmake = open(os.path.join(ROOT, "CMakeLists.txt")).read()
    return re.search(r"project\(sluice VERSION (\S+)", cmake).group(1)


def git(*args):
    r = run(["git", *args], timeout=30)
    return r.stdout.strip() if r.returncode == 0 else ""


def image_size(ref):
    r = run(["podman", "image", "inspect", "--format", "{{.Size}}", ref], timeout=60)
    assert r.returncode == 0, r.stderr
    return int(r.stdout)


@pytest.fixture(scope="session")
def image():
    """Builds docker/Dockerfile (making the base image first if podman lacks it); returns
    {"ref", "version", "revision", "source", "config" (the image's config), "build_s",
    "added_bytes"}."""
    why = cannot_run_podman()
    if why:
        pytest.skip(f"container tests SKIPPED: {why}")
    # working containers a killed run left behind
    r = run(["buildah", "containers", "--format", "{{.ContainerName}}"], timeout=60)
    for name in r.stdout.split():
        if name.startswith(("sluice-test-", "sluice-probe-")):
            run(["buildah", "rm", name], timeout=60)
    r = run(["bash", "scripts/container-base.sh"], timeout=900)
    assert r.returncode == 0, f"cannot make the base image:\n{r.stdout}\n{r.stderr}"
    rev = git("rev-parse", "HEAD") or "unknown"
    source = git("remote", "get-url", "origin") or f"file://{ROOT}"
    args = ["podman", "build", "--isolation", "chroot", "--network", "host", "--format",
            "docker", "-f", "docker/Dockerfile", "-t", IMAGE]
    # The Dockerfile's LABEL takes these build args. buildah 1.28 reuses a cached LABEL step
    # whatever the args' values are now, so the labels are also given with --label (applied to
    # the final image, never cached).
    for arg, label, value in (("VERSION", "version", version()), ("REVISION", "revision", rev),
                              ("SOURCE", "source", source)):
        args += ["--build-arg", f"{arg}={value}",
                 "--label", f"org.opencontainers.image.{label}={value}"]
    args.append(".")
    started = time.monotonic()
    r = run(args, timeout=1200)
    build_s = time.monotonic() - started
    assert r.returncode == 0, f"podman build failed:\n{r.stdout[-6000:]}\n{r.stderr[-4000:]}"
    cached = r.stdout.count("Using cache")
    # Build-stage images of earlier builds (a compile each) pile up; keep a day's worth of cache.
    run(["podman", "image", "prune", "-f", "--filter", "label=io.sluice.stage=build",
         "--filter", "until=24h"], timeout=300)
    r = run(["podman", "image", "inspect", IMAGE], timeout=60)
    assert r.returncode == 0, r.stderr
    (inspected,) = json.loads(r.stdout)
    config = dict(inspected["Config"], Healthcheck=inspected.get("Healthcheck"),
                  ManifestType=inspected.get("ManifestType"))
    info = {"ref": IMAGE, "version": version(), "revision": rev, "source": source,
            "config": config, "build_s": build_s,
            "added_bytes": image_size(IMAGE) - image_size(BASE)}
    MEASURED["build"] = (f"podman build {build_s:.0f} s ({cached} steps from the layer cache); "
                         f"the runtime stage adds {info['added_bytes'] / 1e6:.1f} MB "
                         f"to {BASE} ({image_size(BASE) / 1e6:.1f} MB)")
    return info


@pytest.fixture(scope="session")
def runnable(image):
    """The image, once `buildah run` has shown it can run a command of it here."""
    name = f"sluice-probe-{os.getpid()}"
    r = run(["buildah", "from", "--name", name, image["ref"]], timeout=120)
    assert r.returncode == 0, r.stderr
    try:
        r = run(["buildah", "run", "--isolation", "chroot", name, "--", "/bin/true"], timeout=60)
        if r.returncode != 0:
            pytest.skip(f"container tests SKIPPED: buildah run cannot run a command here: "
                        f"{r.stderr.strip()[-500:]}")
    finally:
        run(["buildah", "rm", name], timeout=60)
    return image


@pytest.fixture
def container(runnable):
    """A fresh working container of the image (buildah from), removed at teardown."""
    name = f"sluice-test-{os.getpid()}-{time.monotonic_ns()}"
    r = run(["buildah", "from", "--name", name, runnable["ref"]], timeout=120)
    assert r.returncode == 0, r.stderr
    yield name
    run(["buildah", "rm", name], timeout=60)


def pytest_terminal_summary(terminalreporter):
    if MEASURED:
        for line in MEASURED.values():
            terminalreporter.write_line(f"container image: {line}")
