#!/usr/bin/env bash
# Static analysis: clang-tidy 14 with the checked-in .clang-tidy over every .cpp file that the
# default build compiles (config/ middleware/ proxy/ tls/ and tests/unit/), using the build's
# compile_commands.json. Any finding fails (WarningsAsErrors: '*'). scripts/test.sh runs it
# after the build; about 3 minutes on 2 cores.
#   scripts/lint.sh                   every file
#   scripts/lint.sh proxy/worker.cpp  only these files
# Environment: BUILD_DIR (build), CLANG_TIDY (clang-tidy-14, else clang-tidy), JOBS (nproc).
#
# Not linted: tests/fuzz/ and bench/micro/ (built only with -DSLUICE_FUZZ=ON / -DSLUICE_BENCH=ON,
# so the default compile_commands.json has no entry for them). clang-format is not checked
# here: the tree is not clang-format clean yet (`clang-format --dry-run` reports ~175 places).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-$(nproc)}

tidy=${CLANG_TIDY:-}
if [ -z "$tidy" ]; then
  for t in clang-tidy-14 clang-tidy; do
    if command -v "$t" >/dev/null 2>&1; then tidy=$t; break; fi
  done
fi
[ -n "$tidy" ] || { echo "lint: clang-tidy not found (scripts/setup.sh --lint installs clang-tidy-14)" >&2; exit 2; }

db="$BUILD_DIR/compile_commands.json"
if [ ! -f "$db" ]; then
  # Configuring is enough: clang-tidy needs the compile commands, not the objects.
  cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLUICE_WERROR=ON >/dev/null
fi

if [ "$#" -gt 0 ]; then
  files=()
  for f in "$@"; do files+=("$(realpath -m --relative-to="$root" "$f")"); done
else
  mapfile -t files < <(git ls-files -- 'config/*.cpp' 'middleware/*.cpp' 'proxy/*.cpp' \
    'tls/*.cpp' 'tests/unit/*.cpp')
fi
# Every file must have a compile command: a file missing from it would be checked with
# guessed flags (or be silently skipped by run-clang-tidy).
missing=$(python3 - "$db" "$root" "${files[@]}" <<'EOF'
import json, os, sys
db, root, files = sys.argv[1], sys.argv[2], sys.argv[3:]
have = {os.path.realpath(os.path.join(e["directory"], e["file"])) for e in json.load(open(db))}
print("\n".join(f for f in files if os.path.realpath(os.path.join(root, f)) not in have))
EOF
)
if [ -n "$missing" ]; then
  echo "lint: not in $db (re-run cmake -S . -B $BUILD_DIR):" >&2
  echo "$missing" >&2
  exit 2
fi

echo "lint: $tidy on ${#files[@]} files, $JOBS jobs"
start=$(date +%s)
runner=run-${tidy}
# clang prints "N warnings generated." for the warnings it suppressed in system headers: noise.
noise=' warnings\? generated\.$'
set +e
if [ "$tidy" = clang-tidy-14 ] && command -v "$runner" >/dev/null 2>&1; then
  # run-clang-tidy takes regexes, not paths: one anchored alternation of the exact paths. It
  # echoes each command line and always colours (--use-color): both are filtered out.
  bin=$(command -v "$tidy")
  regex="^($(printf '%s\n' "${files[@]/#/$root/}" | sed 's/[.+]/\\&/g' | paste -sd'|'))\$"
  "$runner" -clang-tidy-binary "$bin" -p "$BUILD_DIR" -j "$JOBS" -quiet "$regex" 2>&1 |
    sed 's/\x1b\[[0-9;]*m//g' | grep -v -e "^$bin " -e "$noise"
  status=${PIPESTATUS[0]}
else
  printf '%s\n' "${files[@]}" | xargs -P "$JOBS" -n 1 "$tidy" -p "$BUILD_DIR" --quiet 2>&1 |
    grep -v -e "$noise"
  status=${PIPESTATUS[1]}
fi
set -e
echo "lint: $(( $(date +%s) - start ))s, $([ "$status" = 0 ] && echo clean || echo FINDINGS)"
exit "$status"
