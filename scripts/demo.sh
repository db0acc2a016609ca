#!/usr/bin/env bash
# Sets up, builds and runs Sluice on examples/quickstart.toml in front of two demo backends.
# Then, from another terminal: curl localhost:8080/   (Ctrl-C stops everything)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target sluice

python3 examples/demo_backend.py 9001 app-1 & b1=$!
python3 examples/demo_backend.py 9002 app-2 & b2=$!
trap 'kill $b1 $b2 2>/dev/null || true' EXIT
echo "demo: backends on 127.0.0.1:9001 and :9002; sluice on :8080 (admin 127.0.0.1:9901)"
echo "demo: try   curl -i localhost:8080/hello"
./build/sluice -c examples/quickstart.toml
