# Sourced by bench/run.sh and bench/paired.sh (from the repository root): the tools, the
# binaries and the descriptor limit. Sets sluice_bin and appends --sluice-baseline to args.
#   SKIP_SETUP=1       do not run scripts/setup.sh --bench (nginx, HAProxy, wrk, gnuplot)
#   SLUICE_BIN=path    benchmark that binary (CI's smoke reuses the test build) instead of a
#                      Release build in build-bench/
#   SLUICE_BASELINE=path  a second Sluice binary, the proxy "sluice-base"
bench_prepare() {
  local me=$1
  if [ "${SKIP_SETUP:-0}" != 1 ]; then
    bash scripts/setup.sh --bench
  fi
  sluice_bin="${SLUICE_BIN:-}"
  if [ -z "$sluice_bin" ]; then
    cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build build-bench -j"$(nproc)" --target sluice >/dev/null
    sluice_bin="$PWD/build-bench/sluice"
  fi
  if [ -n "${SLUICE_BASELINE:-}" ]; then
    [ -x "$SLUICE_BASELINE" ] || { echo "$me: SLUICE_BASELINE=$SLUICE_BASELINE is not executable" >&2; exit 2; }
    args+=(--sluice-baseline "$(realpath "$SLUICE_BASELINE")")
  fi
  ulimit -n "$(ulimit -Hn)"
}
