#!/usr/bin/env bash
# Sets up, builds, lints (scripts/lint.sh: clang-tidy) and runs the whole test suite: unit tests
# (doctest) and integration tests (pytest driving the real binary over real sockets, with a real
# redis-server where needed).
#   scripts/test.sh                 everything
#   scripts/test.sh -k smuggling    extra arguments go to pytest (integration only, no lint)
set -euo pipefail
cd "$(dirname "$0")/.."

# --bench: the benchmark smoke test needs nginx, haproxy, wrk; --lint: clang-tidy-14;
# --browser: chromium; --prometheus: prometheus and promtool (dashboard and alert tests)
bash scripts/setup.sh --bench --lint --browser --prometheus
BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLUICE_WERROR=ON >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)"

if [ "$#" -gt 0 ]; then
  SLUICE_BIN="$PWD/$BUILD_DIR/sluice" /usr/bin/python3 -m pytest -q -p no:cacheprovider \
    tests/integration "$@"
  exit
fi
BUILD_DIR="$BUILD_DIR" bash scripts/lint.sh   # clang-tidy with .clang-tidy; any finding fails
cd "$BUILD_DIR"
ctest --output-on-failure
