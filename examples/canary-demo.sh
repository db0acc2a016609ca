#!/usr/bin/env bash
# Canary with automatic rollback, end to end, on this machine:
#   - two backends on loopback: "stable", and "canary", which answers 500 once it has served
#     CANARY_GOOD requests (a bad release that looked fine at first);
#   - Sluice with a 50/50 split of the two and [route.rollback];
#   - load through Sluice, then what /admin/status, /metrics and the event log say.
# Needs a built sluice (build/sluice, or SLUICE_BIN=...) and python3. Ports are picked free.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
SLUICE_BIN=${SLUICE_BIN:-$here/../build/sluice}
CANARY_GOOD=${CANARY_GOOD:-30}
REQUESTS=${REQUESTS:-300}
if [ ! -x "$SLUICE_BIN" ]; then
  echo "canary-demo: no sluice binary at $SLUICE_BIN (build it, or set SLUICE_BIN)" >&2
  exit 1
fi

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# A tiny backend: answers its name; with a budget, 500 after that many requests.
cat >"$work/backend.py" <<'EOF'
import http.server, sys
name, port, good = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
served = 0
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 65536  # head and body in one write (no delayed-ACK stall)
    def do_GET(self):
        global served
        served += 1
        bad = good >= 0 and served > good
        body = f"{name} {'broken' if bad else 'ok'}\n".encode()
        self.send_response(500 if bad else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
EOF

stable_port=$(free_port)
canary_port=$(free_port)
web_port=$(free_port)
admin_port=$(free_port)
python3 "$work/backend.py" stable "$stable_port" -1 & pids+=($!)
python3 "$work/backend.py" canary "$canary_port" "$CANARY_GOOD" & pids+=($!)

cat >"$work/sluice.toml" <<EOF
[server]
workers = 1
state_file = "$work/state.json"

[admin]
listen = "127.0.0.1:$admin_port"

[log]
access = "off"

[[listener]]
name = "web"
listen = "127.0.0.1:$web_port"

[pool.stable]
backends = [{ address = "127.0.0.1:$stable_port" }]

[pool.canary]
backends = [{ address = "127.0.0.1:$canary_port" }]

[[route]]
name = "app"
path = "/"
split = [{ pool = "stable", weight = 50 }, { pool = "canary", weight = 50 }]
[route.rollback]
max_error_rate = 0.2   # more than 20 % errors ...
min_requests = 20      # ... over at least 20 canary requests ...
window = "10s"         # ... in the last 10 seconds
EOF

echo "== config: $work/sluice.toml (50/50 split, rollback above 20 % errors)"
"$SLUICE_BIN" -c "$work/sluice.toml" 2>"$work/events.log" & pids+=($!)
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$admin_port/health/ready" >/dev/null 2>&1 && break
  sleep 0.1
done

echo "== $REQUESTS requests; the canary starts failing after $CANARY_GOOD"
python3 - "$web_port" "$REQUESTS" <<'EOF'
import collections, http.client, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
conn = http.client.HTTPConnection("127.0.0.1", port)
seen, first_500, last_canary = collections.Counter(), None, None
for i in range(n):
    conn.request("GET", "/")
    r = conn.getresponse()
    body = r.read().decode().strip()
    seen[f"{r.status} {body}"] += 1
    if r.status == 500 and first_500 is None:
        first_500 = i + 1
    if body.startswith("canary"):
        last_canary = i + 1
for k, v in sorted(seen.items()):
    print(f"   {v:4d} x {k}")
print(f"   first failure at request {first_500}; last request on the canary: {last_canary}")
EOF

echo "== /admin/status: the route's release"
curl -fs "http://127.0.0.1:$admin_port/admin/status" | python3 -c '
import json, sys
r = [r for r in json.load(sys.stdin)["routes"] if r["name"] == "app"][0]
rel = r["release"]
print("   live weights:", r["live_weights"])
print("   state:", rel["state"], "| source:", rel["source"])
d = rel["last_decision"]
if d:
    print("   last decision:", d["action"], d["pool"], "-", d["reason"])
'
echo "== /metrics"
curl -fs "http://127.0.0.1:$admin_port/metrics" |
  grep -E '^sluice_(rollbacks_total|split_weight|split_requests_total)' | sed 's/^/   /'
echo "== event log"
grep -E 'canary rolled back' "$work/events.log" | sed 's/^/   /' || true
echo "== back to 50/50 (after a fix, or to watch it again):"
echo "   curl -X PUT localhost:$admin_port/admin/routes/app/split -d '{\"stable\": 50, \"canary\": 50}'"
