#!/usr/bin/env bash
# Soak: 10 minutes (SOAK_SECONDS) of mixed load against a Release build of Sluice, reloads
# every 30 s, RSS and open descriptors every 10 s; exit 1 when either grows 5 % or more after
# warm-up, or anything fails. See bench/README.md ("Soak").
#   bench/soak.sh                     full run (~10 min after the build)
#   SOAK_SECONDS=120 bench/soak.sh    shorter
# Environment: SOAK_SECONDS, WARMUP_SECONDS, SAMPLE_SECONDS, RELOAD_SECONDS, SKIP_SETUP=1,
#   SLUICE_BIN=path (that binary instead of building build-bench/).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [ "${SKIP_SETUP:-0}" != 1 ]; then
  bash scripts/setup.sh --bench  # wrk (and redis-server, openssl from the base set)
fi
if [ -z "${SLUICE_BIN:-}" ]; then
  cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build-bench -j"$(nproc)" --target sluice >/dev/null
  export SLUICE_BIN="$root/build-bench/sluice"
fi
ulimit -n "$(ulimit -Hn)"
exec python3 bench/soak.py
