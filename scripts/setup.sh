#!/usr/bin/env bash
# Installs everything Sluice needs to build, test and benchmark, from Debian's registry only.
# Idempotent: re-running it on a machine that has everything does (almost) nothing.
#   scripts/setup.sh          build + test dependencies
#   scripts/setup.sh --bench  also nginx, haproxy, wrk, gnuplot for bench/
#   scripts/setup.sh --lint   also clang-tidy-14 for scripts/lint.sh (options combine)
#   scripts/setup.sh --browser  also chromium, driven headless by the browser tests (CORS, status
#                               page)
#   scripts/setup.sh --prometheus  also prometheus and promtool, which the observability tests
#                               run against the dashboard and alert rules in docker/
#   scripts/setup.sh --build-only  only what building the binary needs (container build stage)
#   scripts/setup.sh --runtime  only the shared libraries the built binary links (container image)
#   scripts/setup.sh --containers  also podman, buildah, debootstrap, docker-compose: the
#                                  container tests (scripts/test.sh --containers)
#   scripts/setup.sh --sanitize also clang-14, its sanitizer/libFuzzer runtimes and
#                               llvm-symbolizer for scripts/sanitize.sh
set -euo pipefail

want_bench=0
want_lint=0
want_browser=0
want_containers=0
want_prometheus=0
want_sanitize=0
runtime_only=0
build_only=0
for a in "$@"; do
  case "$a" in
    --bench) want_bench=1 ;;
    --lint) want_lint=1 ;;
    --browser) want_browser=1 ;;
    --containers) want_containers=1 ;;
    --prometheus) want_prometheus=1 ;;
    --sanitize) want_sanitize=1 ;;
    --runtime) runtime_only=1 ;;
    --build-only) build_only=1 ;;
    *) echo "setup.sh: unknown option $a" >&2; exit 2 ;;
  esac
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

pkgs=(build-essential cmake pkg-config libuv1-dev libssl-dev libhiredis-dev
      libtomlplusplus-dev nlohmann-json3-dev libre2-dev ca-certificates)
if [ "$build_only" = 0 ]; then
  pkgs+=(doctest-dev redis-server curl openssl python3 python3-pytest)
fi
if [ "$want_bench" = 1 ]; then
  pkgs+=(nginx-light haproxy wrk gnuplot-nox)
fi
if [ "$want_lint" = 1 ]; then
  pkgs+=(clang-tidy-14)
fi
if [ "$want_sanitize" = 1 ]; then
  pkgs+=(clang-14 libclang-rt-14-dev llvm-14)
fi
if [ "$want_browser" = 1 ]; then
  # the browser-level (CORS) integration tests drive it headless (sluicetest.browser); without
  # it those tests are skipped
  pkgs+=(chromium)
fi
if [ "$want_containers" = 1 ]; then
  # build the image (podman/buildah, no Docker engine), make its base (debootstrap), validate
  # docker/compose.yaml (docker-compose config, which brings python3-yaml); node + npm run the
  # offline schema check of docker/k8s (tests/k8s); systemd-analyze checks the systemd unit
  pkgs+=(podman buildah debootstrap docker-compose systemd)
  command -v npm >/dev/null 2>&1 || pkgs+=(nodejs npm)
fi
if [ "$want_prometheus" = 1 ]; then
  # tests/integration/test_observability.py starts its own prometheus (a temp storage dir, a
  # free port) scraping a real Sluice, and runs promtool on the rules; without it they skip
  pkgs+=(prometheus)
fi
if [ "$runtime_only" = 1 ]; then
  # what `ldd sluice` names beyond the base image (libc, libstdc++), and the CA store for
  # upstream TLS; the container health check needs nothing more (bash's /dev/tcp)
  pkgs=(libuv1 libssl3 libhiredis0.14 libtomlplusplus3 libre2-9 ca-certificates)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# llhttp 9.2 is in trixie, not bookworm. Fetch the two .debs from the trixie suite of the same
# registry the machine already uses, through a throw-away apt state, then install them with dpkg.
llhttp_debs="libllhttp9.2 libllhttp-dev"
[ "$runtime_only" = 1 ] && llhttp_debs="libllhttp9.2"
installed=$(dpkg-query -W -f='${Status}\n' $llhttp_debs 2>/dev/null | grep -c "install ok installed" || true)
if [ "$installed" -ne "$(echo $llhttp_debs | wc -w)" ]; then
  mirror=$(bash "$(dirname "$0")/debian-mirror.sh")
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp/lists/partial" "$tmp/archives/partial"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main" >"$tmp/sources.list"
  aptopts=(-o "Dir::Etc::SourceList=$tmp/sources.list" -o "Dir::Etc::SourceParts=/nonexistent"
           -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache::Archives=$tmp/archives"
           -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache=" -o "APT::Sandbox::User=root")
  echo "setup: fetching libllhttp from trixie"
  $SUDO apt-get "${aptopts[@]}" update -qq
  (cd "$tmp" && $SUDO apt-get "${aptopts[@]}" download $llhttp_debs)
  $SUDO dpkg -i "$tmp"/libllhttp*.deb >/dev/null
fi

# The Kubernetes schema check's packages (tests/k8s/package-lock.json), from the npm registry.
if [ "$want_containers" = 1 ]; then
  k8s_check="$(cd "$(dirname "$0")/.." && pwd)/tests/k8s"
  if [ ! -f "$k8s_check/node_modules/.package-lock.json" ] ||
     [ "$k8s_check/package-lock.json" -nt "$k8s_check/node_modules/.package-lock.json" ]; then
    echo "setup: npm ci in tests/k8s"
    (cd "$k8s_check" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
fi

# The test harness starts its own redis-server and prometheus processes; the packaged services
# are not needed.
for svc in redis-server prometheus; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    $SUDO systemctl stop "$svc" >/dev/null 2>&1 || true
  fi
done
echo "setup: ok"
