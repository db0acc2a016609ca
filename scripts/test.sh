#!/usr/bin/env bash
# Sets up, builds, lints (scripts/lint.sh: clang-tidy) and runs the whole test suite: unit tests
# (doctest), integration tests (pytest driving the real binary over real sockets, with a real
# redis-server where needed), then the container tests (the image built with podman and run
# with buildah: tests/containers).
#   scripts/test.sh                 everything (what CI runs)
#   scripts/test.sh --containers    only the container tests
#   scripts/test.sh -k smuggling    extra arguments go to pytest (integration only, no lint)
set -euo pipefail
cd "$(dirname "$0")/.."

# The container tests say SKIPPED with the reason (pytest -rs) where podman cannot run.
containers() {
  local start=$SECONDS
  echo "== container tests (tests/containers): podman build + buildah run"
  /usr/bin/python3 -m pytest -q -rs -p no:cacheprovider tests/containers
  echo "== container tests took $((SECONDS - start)) s"
}

if [ "${1:-}" = "--containers" ]; then
  bash scripts/setup.sh --containers
  containers
  exit
fi

# --bench: the benchmark smoke test needs nginx, haproxy, wrk; --lint: clang-tidy-14;
# --browser: chromium; --prometheus: prometheus and promtool (dashboard and alert tests);
# --containers: podman, buildah, debootstrap, docker-compose and the Kubernetes schema check
bash scripts/setup.sh --bench --lint --browser --prometheus --containers
BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLUICE_WERROR=ON >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)"

if [ "$#" -gt 0 ]; then
  SLUICE_BIN="$PWD/$BUILD_DIR/sluice" /usr/bin/python3 -m pytest -q -p no:cacheprovider \
    tests/integration "$@"
  exit
fi
BUILD_DIR="$BUILD_DIR" bash scripts/lint.sh   # clang-tidy with .clang-tidy; any finding fails
(cd "$BUILD_DIR" && ctest --output-on-failure)
containers
