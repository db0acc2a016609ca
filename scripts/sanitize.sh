#!/usr/bin/env bash
# Sanitizers and fuzzing, in one clang build (build-san/: -O1, AddressSanitizer + UBSan,
# libFuzzer coverage) of the sluice binary, the unit tests and the libFuzzer targets:
#   1. the unit tests under ASan + UBSan (leaks checked at exit);
#   2. each fuzzer (tests/fuzz/*.cpp) for FUZZ_SECONDS on its checked-in seed corpus, as many
#      at once as there are CPUs; a crash, a sanitizer report, a leak, a timeout (10 s for one
#      input) or an out-of-memory fails, with the input left in build-san/fuzz-artifacts/;
#   3. the integration smoke subset (tests/integration/sanitize_smoke.txt) against the ASan
#      binary: any ASan/LeakSanitizer/UBSan report in Sluice's stderr fails the test.
# .ci/run runs it after scripts/test.sh.
#   scripts/sanitize.sh                  everything
#   scripts/sanitize.sh --build-only     only build build-san/
#   scripts/sanitize.sh --fuzz-only      build, then only fuzz (FUZZ_SECONDS=600 for a long run)
#   scripts/sanitize.sh --no-fuzz        build, unit tests and the integration smoke subset
# Environment: FUZZ_SECONDS (default 30 per fuzzer), SAN_BUILD_DIR (default build-san).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=all
for a in "$@"; do
  case "$a" in
    --build-only) mode=build ;;
    --fuzz-only) mode=fuzz ;;
    --no-fuzz) mode=nofuzz ;;
    *) echo "sanitize.sh: unknown option $a" >&2; exit 2 ;;
  esac
done

FUZZ_SECONDS=${FUZZ_SECONDS:-30}
BUILD=${SAN_BUILD_DIR:-build-san}
JOBS=$(nproc)
# fuzzer -> its seed corpus (tests/fuzz/)
FUZZERS=(http1_parser_fuzz:corpus http1_response_fuzz:corpus-response cors_origin_fuzz:corpus-cors
         config_fuzz:corpus-config jwt_fuzz:corpus-jwt)

bash scripts/setup.sh --sanitize
t0=$(date +%s)
stamp() { echo "sanitize: $1 ($(($(date +%s) - t0)) s)"; }

# -O1 keeps the build and the runs quick with usable stacks; no NDEBUG, so asserts stay on.
cmake -S . -B "$BUILD" -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only" \
  -DSLUICE_FUZZ=ON >/dev/null
targets=(sluice sluice_unit_tests)
for f in "${FUZZERS[@]}"; do targets+=("${f%%:*}"); done
cmake --build "$BUILD" -j"$JOBS" --target "${targets[@]}"
stamp "built"
[ "$mode" = build ] && exit 0

export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=1:detect_stack_use_after_return=1:strict_string_checks=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export ASAN_SYMBOLIZER_PATH=/usr/bin/llvm-symbolizer-14

if [ "$mode" != fuzz ]; then
  "$BUILD/sluice_unit_tests" --no-intro=true --minimal=true
  stamp "unit tests passed under ASan + UBSan"
fi

if [ "$mode" != nofuzz ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$BUILD/fuzz-artifacts"
  run_fuzzer() {  # name corpus
    # New inputs go to a scratch corpus (listed first); the checked-in seeds are only read.
    mkdir -p "$work/$1"
    if "$BUILD/$1" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$BUILD/fuzz-artifacts/$1-" \
        "$work/$1" "tests/fuzz/$2" >"$work/$1.log" 2>&1; then
      echo "fuzz: $1 ok: $(grep -m1 -o 'stat::number_of_executed_units: [0-9]*' "$work/$1.log" | cut -d' ' -f2) runs in ${FUZZ_SECONDS}s"
      return 0
    fi
    echo "fuzz: $1 FAILED (input kept in $BUILD/fuzz-artifacts/):" >&2
    tail -60 "$work/$1.log" >&2
    return 1
  }
  failed=0
  pids=()
  for f in "${FUZZERS[@]}"; do
    run_fuzzer "${f%%:*}" "${f#*:}" &
    pids+=($!)
    if [ "${#pids[@]}" -ge "$JOBS" ]; then
      wait "${pids[0]}" || failed=1
      pids=("${pids[@]:1}")
    fi
  done
  for p in "${pids[@]}"; do wait "$p" || failed=1; done
  [ "$failed" = 0 ] || exit 1
  stamp "fuzzers passed"
fi

if [ "$mode" != fuzz ]; then
  mapfile -t smoke < <(grep -v '^\s*\(#\|$\)' tests/integration/sanitize_smoke.txt)
  SLUICE_BIN="$PWD/$BUILD/sluice" /usr/bin/python3 -m pytest -q -p no:cacheprovider \
    "${smoke[@]/#/tests/integration/}"
  stamp "integration smoke subset passed under ASan + UBSan"
fi
