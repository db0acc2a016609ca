#!/usr/bin/env bash
# Sets up, builds and runs Sluice on examples/quickstart.toml in front of two demo backends.
# Then, from another terminal: curl localhost:8080/   (Ctrl-C stops everything)
# However the script ends (Ctrl-C, kill, a closed terminal's SIGHUP, a supervisor's SIGTERM),
# it stops sluice and both backends first, so the next run finds its ports free.
# DEMO_SKIP_BUILD=1 uses the existing build/sluice (the tests do).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${DEMO_SKIP_BUILD:-0}" != 1 ]; then
  bash scripts/setup.sh
  cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build build -j"$(nproc)" --target sluice
fi

pids=()
cleanup() {
  trap - EXIT INT TERM HUP
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
# A trapped signal interrupts `wait` below at once; exiting runs cleanup. (sluice itself reads
# SIGHUP as "reload": the script must stop it, not the terminal.)
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

python3 examples/demo_backend.py 9001 app-1 & pids+=($!)
python3 examples/demo_backend.py 9002 app-2 & pids+=($!)
echo "demo: backends on 127.0.0.1:9001 and :9002; sluice on :8080 (admin 127.0.0.1:9901)"
echo "demo: try   curl -i localhost:8080/hello"
./build/sluice -c examples/quickstart.toml & pids+=($!)
wait "${pids[2]}"
