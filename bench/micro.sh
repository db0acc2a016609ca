#!/usr/bin/env bash
# Builds and runs the Google Benchmark micro-benchmarks (target sluice_micro) in build-micro/.
#   bench/micro.sh                         all benchmarks
#   bench/micro.sh --benchmark_filter=Route  any Google Benchmark flags are passed through
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bdir="$root/build-micro"
if grep -q 'SLUICE_BENCH' CMakeLists.txt; then
  extra=(-DSLUICE_BENCH=ON)
else
  extra=(-DCMAKE_PROJECT_sluice_INCLUDE="$root/bench/cmake/add_bench_dir.cmake")
fi
cmake -S . -B "$bdir" -DCMAKE_BUILD_TYPE=Release "${extra[@]}" >/dev/null
cmake --build "$bdir" -j"$(nproc)" --target sluice_micro >/dev/null
exec "$bdir/sluice_micro" "$@"
