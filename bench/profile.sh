#!/usr/bin/env bash
# Profiles Sluice alone (one worker, CPU 0) on the small-GET workload (WORKLOADS=name: another).
#   bench/profile.sh            perf record -e cpu-clock -g  -> bench/profile-perf.txt
#   bench/profile.sh callgrind  valgrind --tool=callgrind     -> bench/profile-callgrind.txt
# (perf uses the cpu-clock software event: VMs often have no hardware counters.)
# DURATION (default 10s for perf, 5s for callgrind), CONNECTIONS (50; callgrind uses <= 10).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
tool=${1:-perf}
case "$tool" in
  perf) : "${DURATION:=10s}" ;;
  callgrind) : "${DURATION:=5s}" ;;
  *) echo "profile.sh: perf | callgrind" >&2; exit 2 ;;
esac
export DURATION
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-bench -j"$(nproc)" --target sluice >/dev/null
ulimit -n "$(ulimit -Hn)"
exec python3 bench/harness.py --sluice "$root/build-bench/sluice" --profile "$tool" \
  --profile-out "$root/bench/profile-$tool.txt"
