#!/usr/bin/env bash
# Builds bench/eventloop_probe.c and runs its three modes interleaved, ROUNDS times (default 5),
# SECONDS each (default 3); prints every run, then the median per mode and the modes 1 and 2
# against mode 0. Needs 2 CPUs and a quiet machine.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cc -O2 -o "$out/probe" "$root/bench/eventloop_probe.c" -lpthread
rounds=${ROUNDS:-5}
secs=${SECONDS_PER_RUN:-3}
for ((r = 1; r <= rounds; r++)); do
  for m in 0 1 2; do
    "$out/probe" "$m" "$secs" | tee -a "$out/runs.txt"
  done
done
python3 - "$out/runs.txt" <<'EOF'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    f = line.split()
    runs.setdefault(int(f[1]), []).append(float(f[5]))
names = {0: "level-triggered + read", 1: "edge-triggered + recv", 2: "nested edge-triggered + recv"}
base = statistics.median(runs[0])
for m in sorted(runs):
    med = statistics.median(runs[m])
    print(f"mode {m} ({names[m]}): median {med:.0f} ns/round trip ({med / base:.3f} x mode 0)")
EOF
