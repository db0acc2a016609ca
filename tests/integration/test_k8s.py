"""The Kubernetes manifests (docker/k8s): validated offline against the Kubernetes API schema
(tests/k8s/validate.mjs), checked for what a zero-downtime, locked-down deployment needs, their
Sluice config valid, and the config-reloader sidecar (docker/reload-on-change.sh) reloading a
real Sluice when its config volume is updated the way kubelet updates a ConfigMap."""

import os
import re
import shutil
import signal
import subprocess
import time
import tomllib

import pytest

from sluicetest import Backend, http_request, run_cli
from sluicetest.util import wait_until

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
K8S = os.path.join(ROOT, "docker", "k8s")
CHECKER = os.path.join(ROOT, "tests", "k8s")
RELOADER = os.path.join(ROOT, "docker", "reload-on-change.sh")
LABELS = {"app.kubernetes.io/name": "sluice"}


def seconds(duration):
    m = re.fullmatch(r"(\d+)s", duration)
    assert m, f"expected a duration in seconds, got {duration!r}"
    return int(m.group(1))


@pytest.fixture(scope="module")
def objects():
    """{(kind, name): object} of kustomization.yaml's resources."""
    yaml = pytest.importorskip("yaml")  # python3-yaml (scripts/setup.sh --containers)
    kust = yaml.safe_load(open(os.path.join(K8S, "kustomization.yaml")))
    out = {("Kustomization", ""): kust}
    for f in kust["resources"]:
        for obj in yaml.safe_load_all(open(os.path.join(K8S, f))):
            out[(obj["kind"], obj["metadata"]["name"])] = obj
    return out


@pytest.fixture(scope="module")
def config():
    with open(os.path.join(K8S, "sluice.toml"), "rb") as f:
        return tomllib.load(f)


def test_manifests_validate_against_the_kubernetes_schema():
    node = shutil.which("node")
    if node is None or not os.path.isdir(os.path.join(CHECKER, "node_modules")):
        pytest.skip("node or tests/k8s/node_modules missing (scripts/setup.sh --containers)")
    r = subprocess.run([node, os.path.join(CHECKER, "validate.mjs"), K8S], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "6 objects valid" in r.stdout, r.stdout


def test_the_checker_refuses_a_misspelt_field(tmp_path):
    node = shutil.which("node")
    if node is None or not os.path.isdir(os.path.join(CHECKER, "node_modules")):
        pytest.skip("node or tests/k8s/node_modules missing (scripts/setup.sh --containers)")
    bad = tmp_path / "k8s"
    shutil.copytree(K8S, bad)
    dep = (bad / "deployment.yaml").read_text()
    (bad / "deployment.yaml").write_text(dep.replace("livenessProbe:", "livenesProbe:", 1))
    (bad / "pdb.yaml").write_text((bad / "pdb.yaml").read_text().replace(
        "minAvailable: 1", "minAvailable: [1]"))
    r = subprocess.run([node, os.path.join(CHECKER, "validate.mjs"), str(bad)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert "'\"livenesProbe\"' does not exist in type 'IContainer'" in r.stderr, r.stderr
    assert "PodDisruptionBudget/sluice (pdb.yaml): data/spec/minAvailable" in r.stderr, r.stderr


def container(pod, name):
    (c,) = [c for c in pod["containers"] if c["name"] == name]
    return c


def test_deployment_is_ready_for_zero_downtime(objects, config):
    dep = objects[("Deployment", "sluice")]
    spec = dep["spec"]
    assert spec["replicas"] == 2
    assert spec["selector"]["matchLabels"] == LABELS
    assert spec["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    pod = spec["template"]["spec"]
    assert spec["template"]["metadata"]["labels"] == LABELS
    sluice = container(pod, "sluice")

    # Ports and probes match the config's listeners.
    ports = {p["name"]: p["containerPort"] for p in sluice["ports"]}
    assert ports == {"http": int(config["listener"][0]["listen"].rsplit(":", 1)[1]),
                     "admin": int(config["admin"]["listen"].rsplit(":", 1)[1])}
    assert sluice["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "admin"}
    assert sluice["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "admin"}

    # Stop: out of the endpoints (preStop), then the drain; kubelet's SIGKILL comes later.
    pre = sluice["lifecycle"]["preStop"]["exec"]["command"]
    assert pre[0] == "/bin/sleep"
    drain = seconds(config["server"]["shutdown_timeout"])
    assert pod["terminationGracePeriodSeconds"] >= int(pre[1]) + drain + 1

    # Replicas spread over nodes.
    (term,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == LABELS


def test_pods_are_locked_down(objects):
    pod = objects[("Deployment", "sluice")]["spec"]["template"]["spec"]
    sec = pod["securityContext"]
    # the image's USER (docker/Dockerfile), numeric so runAsNonRoot can check it
    dockerfile = open(os.path.join(ROOT, "docker", "Dockerfile")).read()
    uid = re.search(r"^USER (\d+):(\d+)$", dockerfile, re.M)
    assert sec["runAsNonRoot"] is True
    assert (sec["runAsUser"], sec["runAsGroup"]) == (int(uid.group(1)), int(uid.group(2)))
    assert pod["automountServiceAccountToken"] is False
    for c in pod["containers"]:
        assert c["securityContext"] == {"allowPrivilegeEscalation": False,
                                        "readOnlyRootFilesystem": True,
                                        "capabilities": {"drop": ["ALL"]}}, c["name"]
        assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
        assert c["resources"]["limits"]["memory"], c["name"]


def test_config_secrets_and_reloader_are_wired(objects, config):
    kust = objects[("Kustomization", "")]
    pod = objects[("Deployment", "sluice")]["spec"]["template"]["spec"]
    sluice, reloader = container(pod, "sluice"), container(pod, "config-reloader")
    volumes = {v["name"]: v for v in pod["volumes"]}

    # /etc/sluice = the generated ConfigMap (sluice.toml, updated in place) + the Secret's key.
    (gen,) = kust["configMapGenerator"]
    assert gen["files"] == ["sluice.toml"]
    assert kust["generatorOptions"]["disableNameSuffixHash"] is True
    cm, secret = volumes["config"]["projected"]["sources"]
    assert cm["configMap"]["name"] == gen["name"]
    assert secret["secret"]["name"] == "sluice-secrets"
    assert secret["secret"]["items"] == [{"key": "jwt-public.pem",
                                          "path": config["middleware"]["auth"]["public_key"]}]
    assert sluice["args"] == ["-c", "/etc/sluice/sluice.toml"]

    # Every ${VAR} without a default in the config is set in the container.
    text = open(os.path.join(K8S, "sluice.toml")).read()
    required = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text))
    env = {e["name"]: e for e in sluice["env"]}
    assert required == {"SLUICE_ADMIN_TOKEN"}
    assert env["SLUICE_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "sluice-secrets",
                                                                      "key": "admin-token"}

    # The reloader sees the same files and signals the pid Sluice writes on the shared volume.
    assert pod["shareProcessNamespace"] is True
    assert reloader["image"] == sluice["image"] == "sluice"
    assert reloader["command"] == ["/usr/local/bin/sluice-reload-on-change", "/etc/sluice"]
    renv = {e["name"]: e["value"] for e in reloader["env"]}
    assert renv["SLUICE_PID_FILE"] == config["server"]["pid_file"]
    run_dir = os.path.dirname(config["server"]["pid_file"])
    for c in (sluice, reloader):
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        assert mounts["/etc/sluice"]["name"] == "config" and mounts["/etc/sluice"]["readOnly"]
        assert mounts[run_dir]["name"] == "run"
    assert "emptyDir" in volumes["run"]

    # Several replicas share the release state (blue/green weights) through Redis.
    assert config["server"]["release_store"] == "redis"


def test_services_budget_and_autoscaler_select_the_pods(objects):
    dep = objects[("Deployment", "sluice")]
    port_names = {p["name"] for p in container(dep["spec"]["template"]["spec"], "sluice")["ports"]}
    svc, admin = objects[("Service", "sluice")], objects[("Service", "sluice-admin")]
    for s in (svc, admin):
        assert s["spec"]["selector"] == LABELS
        assert {p["targetPort"] for p in s["spec"]["ports"]} <= port_names
    assert admin["spec"]["clusterIP"] == "None"  # every replica's admin listener
    pdb = objects[("PodDisruptionBudget", "sluice")]
    assert pdb["spec"]["selector"]["matchLabels"] == LABELS
    assert 0 < pdb["spec"]["minAvailable"] < dep["spec"]["replicas"]
    hpa = objects[("HorizontalPodAutoscaler", "sluice")]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": "sluice"}
    assert hpa["spec"]["minReplicas"] == dep["spec"]["replicas"]
    assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    # the image tag is this version
    cmake = open(os.path.join(ROOT, "CMakeLists.txt")).read()
    version = re.search(r"project\(sluice VERSION (\S+)", cmake).group(1)
    assert objects[("Kustomization", "")]["images"] == [{"name": "sluice", "newTag": version}]


def test_k8s_config_is_valid(tmp_path):
    """The ConfigMap's sluice.toml with a key where the Secret puts it (jwt/public.pem)."""
    shutil.copy(os.path.join(K8S, "sluice.toml"), tmp_path / "sluice.toml")
    (tmp_path / "jwt").mkdir()
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                    "-out", str(tmp_path / "key.pem")], check=True, capture_output=True)
    subprocess.run(["openssl", "pkey", "-in", str(tmp_path / "key.pem"), "-pubout", "-out",
                    str(tmp_path / "jwt" / "public.pem")], check=True, capture_output=True)
    path = str(tmp_path / "sluice.toml")
    r = run_cli(["-t", "-c", path], env={"SLUICE_ADMIN_TOKEN": "t"})
    assert r.returncode == 0, r.stderr
    assert f"configuration file {path} test is successful" in r.stdout
    # only: the Services' names do not resolve here (NXDOMAIN, or no answer within 1s on a
    # machine whose resolver cannot reach a server)
    for line in r.stderr.splitlines():
        assert "does not resolve" in line or "did not resolve within 1s" in line, line


# ---- the config-reloader sidecar -------------------------------------------------------

class ConfigMapVolume:
    """A folder laid out as kubelet lays out a ConfigMap volume: the files are symlinks into
    `..data`, itself a symlink to a timestamped folder; an update writes a new folder and
    swaps `..data` with a rename (atomic)."""

    def __init__(self, path):
        self.path = path
        self.n = 0
        os.makedirs(path)

    def write(self, files):
        self.n += 1
        stamp = f"..2026_01_01_00_00_{self.n:02d}.{os.getpid()}"
        os.makedirs(os.path.join(self.path, stamp))
        for name, text in files.items():
            with open(os.path.join(self.path, stamp, name), "w") as f:
                f.write(text)
        tmp = os.path.join(self.path, "..data_tmp")
        os.symlink(stamp, tmp)
        os.replace(tmp, os.path.join(self.path, "..data"))
        for name in files:
            link = os.path.join(self.path, name)
            if not os.path.islink(link):
                os.symlink(os.path.join("..data", name), link)


@pytest.fixture
def reloader_proc():
    started = []

    def start(directory, pid_file):
        log = open(os.path.join(os.path.dirname(pid_file), "reloader.log"), "w+")
        p = subprocess.Popen(["bash", RELOADER, directory], stdout=log, stderr=subprocess.STDOUT,
                             env=dict(os.environ, SLUICE_PID_FILE=pid_file,
                                      SLUICE_RELOAD_INTERVAL="0.1"))
        started.append((p, log))
        return p, log

    yield start
    for p, log in started:
        if p.poll() is None:
            p.kill()
            p.wait()
        log.close()


def test_reloader_reloads_sluice_when_kubelet_updates_the_configmap(make_sluice, tmp_path,
                                                                     reloader_proc):
    blue, green = Backend("blue").start(), Backend("green").start()
    try:
        s = make_sluice()
        pid_file = str(tmp_path / "sluice.pid")

        def cfg(backend):
            return s.config(routes=[{"name": "app", "path": "/", "pool": "app"}],
                            pools={"app": {"backends": [backend.address]}},
                            server={"pid_file": pid_file})

        volume = ConfigMapVolume(str(tmp_path / "etc-sluice"))
        volume.write({"sluice.toml": cfg(blue)})
        s.config_path = os.path.join(volume.path, "sluice.toml")  # run it from the volume
        proc, log = reloader_proc(volume.path, pid_file)
        wait_until(lambda: "watching config" in open(log.name).read(), 5, message="reloader up")
        s.start(open(s.config_path).read())
        assert s.generation() == 1

        volume.write({"sluice.toml": cfg(green)})
        wait_until(lambda: s.generation() == 2, 10, message="reload after the ConfigMap update")
        assert http_request(s.port(), "GET", "/").json()["backend"] == "green"
        # The reloader logs after its kill(2), so Sluice may have reloaded before the line lands.
        sent = f'"msg":"config changed, sent SIGHUP","pid":{s.pid}'
        wait_until(lambda: sent in open(log.name).read(), 5, message="the reloader's log line")

        # A broken file is refused by Sluice, which keeps running the last good config.
        volume.write({"sluice.toml": cfg(green) + "\n[nonsense]\n"})
        wait_until(lambda: s.metrics().value("sluice_config_reloads_total", result="error") == 1,
                   10, message="the bad config refused")
        assert s.generation() == 2
        assert http_request(s.port(), "GET", "/").status == 200

        # Unchanged files: no signal.
        reloads = open(log.name).read().count("sent SIGHUP")
        time.sleep(0.5)  # five rounds of the reloader, which must not signal
        assert open(log.name).read().count("sent SIGHUP") == reloads

        proc.send_signal(signal.SIGTERM)  # the pod stops: the sidecar exits at once
        assert proc.wait(3) == 0
    finally:
        blue.stop()
        green.stop()


def test_reloader_waits_for_the_pid_file(tmp_path, reloader_proc):
    """A change before Sluice wrote its pid file is signalled once the pid file is there."""
    volume = ConfigMapVolume(str(tmp_path / "etc-sluice"))
    volume.write({"sluice.toml": "a"})
    pid_file = str(tmp_path / "sluice.pid")
    proc, log = reloader_proc(volume.path, pid_file)
    wait_until(lambda: "watching config" in open(log.name).read(), 5, message="reloader up")
    volume.write({"sluice.toml": "b"})
    wait_until(lambda: "cannot signal sluice yet" in open(log.name).read(), 5,
               message="the change seen without a pid file")
    # a process that takes SIGHUP and says so
    sleeper = subprocess.Popen(["bash", "-c", "trap 'echo hup; exit 0' HUP; "
                                "while :; do sleep 0.05; done"], stdout=subprocess.PIPE, text=True)
    try:
        with open(pid_file, "w") as f:
            f.write(f"{sleeper.pid}\n")
        assert sleeper.stdout.readline().strip() == "hup"
        assert sleeper.wait(5) == 0
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()
