#!/usr/bin/env bash
# Sluice vs nginx vs HAProxy benchmark (issue 6). See bench/README.md.
#   bench/run.sh           full run: writes bench/RESULTS.md and bench/results.png
#   bench/run.sh --smoke   ~1 s per run, 1 round, writes to a temp dir; non-zero exit if any
#                          proxy fails to serve (what CI runs)
# Environment: ROUNDS (3), DURATION (10s), WARMUP (2s), CONNECTIONS (50), IDLE_CONNS (10000),
#   IDLE_TLS_CONNS (idle TLS connections: IDLE_CONNS; smoke 200; 0 = no TLS idle run),
#   WORKLOADS / PROXIES (comma lists to run a subset), FORCE (workloads to run even where
#   marked skipped), SKIP_IDLE=1, SKIP_SCALING=1, SKIP_SETUP=1 (do not run scripts/setup.sh),
#   SLUICE_BIN=path (benchmark that binary instead of building build-bench/),
#   SLUICE_BASELINE=path (a second Sluice binary, e.g. a build of main, run as the proxy
#   "sluice-base" with sluice's config, interleaved with it: before/after in one run),
#   OUT_DIR=dir (write RESULTS.md and results.png there instead of bench/).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

args=()
cmd="bench/run.sh"
for v in ROUNDS DURATION WARMUP CONNECTIONS IDLE_CONNS IDLE_TLS_CONNS WORKLOADS PROXIES FORCE SKIP_IDLE SKIP_SCALING SLUICE_BASELINE OUT_DIR; do
  if [ -n "${!v:-}" ]; then cmd="$v=${!v} $cmd"; fi
done
for a in "$@"; do
  case "$a" in
    --smoke) args+=(--smoke); cmd="$cmd --smoke" ;;
    --keep) args+=(--keep) ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $a" >&2; exit 2 ;;
  esac
done

. bench/common.sh
bench_prepare run.sh
# harness.py kills everything it started on exit (and on INT/TERM/HUP); this catches the rest.
exec python3 bench/harness.py --sluice "$sluice_bin" --command "$cmd" "${args[@]}"
