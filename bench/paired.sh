#!/usr/bin/env bash
# Paired comparison: many short runs of the proxies back to back, the ratio of CPU time per
# request taken within each pair (see bench/README.md, "Paired comparison").
#   bench/paired.sh                        Sluice against nginx on the small GET, 30 pairs of 1 s
#   PROXIES=sluice-base,sluice SLUICE_BASELINE=/path/to/old/sluice bench/paired.sh
#                                          a change against the build before it
# Environment: PROXIES (nginx,sluice; the first is the reference), WORKLOADS (small),
#   PAIRS (30), DURATION (1s per run), WARMUP (2s per proxy), CONNECTIONS (64),
#   SLUICE_BIN=path (that binary instead of building build-bench/), SLUICE_BASELINE=path
#   (a second Sluice binary, the proxy "sluice-base"), SKIP_SETUP=1, OUT=file (also write
#   the table there).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
case "${1:-}" in
  -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
  "") ;;
  *) echo "paired.sh: no options (see --help)" >&2; exit 2 ;;
esac

cmd="bench/paired.sh"
for v in PROXIES WORKLOADS PAIRS DURATION WARMUP CONNECTIONS SLUICE_BASELINE; do
  if [ -n "${!v:-}" ]; then cmd="$v=${!v} $cmd"; fi
done
args=()
. bench/common.sh
bench_prepare paired.sh
args+=(--sluice "$sluice_bin" --command "$cmd")
[ -z "${OUT:-}" ] || args+=(--out "$OUT")
exec python3 bench/paired.py "${args[@]}"
