#!/bin/sh
# HTTP benchmark of the nvent server (not part of the tests):
#   1. enqueue requests/s over keep-alive connections, with wrk;
#   2. how many concurrent SSE clients one server holds while every client
#      receives every event (bench/sse_clients.mjs).
# Usage: bench/http_bench.sh [duration_s] [wrk_connections] [sse_clients...]
# Needs: build/nvent (make), wrk and node (Debian: wrk, nodejs).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${NVENT_BIN:-$ROOT/build/nvent}
DUR=${1:-10}
CONNS=${2:-32}
shift 2 2>/dev/null || true
CLIENTS=${*:-"100 500 1000 2000"}
TMP=$(mktemp -d /tmp/nvent-http-bench.XXXXXX)
PID=""
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM
ulimit -n 65536 2>/dev/null || ulimit -n 8192 2>/dev/null || true

command -v wrk >/dev/null || { echo "wrk is missing (apt-get install wrk)" >&2; exit 1; }
[ -x "$BIN" ] || { echo "build the server first: make" >&2; exit 1; }

# A project with one plain queue whose function never runs (autorun false):
# the benchmark measures the HTTP path and the enqueue, not the handler.
mkdir -p "$TMP/functions"
cat > "$TMP/functions/bench" <<'PY'
#!/usr/bin/env python3
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m["type"] == "describe":
        print(json.dumps({"type": "config", "config": {"worker": {"autorun": False},
              "queue": {"defaultJobOptions": {"removeOnComplete": True}}}}), flush=True)
    elif m["type"] == "job":
        print(json.dumps({"type": "result", "id": m["id"]}), flush=True)
PY
chmod +x "$TMP/functions/bench"
cat > "$TMP/nvent.json" <<'JSON'
{ "server": { "port": 0, "maxSseClients": 100000, "sseHeartbeatMs": 15000 },
  "debug": { "level": "warn" } }
JSON

start_server() {
    (cd "$TMP" && NVENT_LOG_LEVEL=info "$BIN" serve >"$TMP/server.log" 2>&1) &
    PID=$!
    i=0
    until grep -q 'listening on' "$TMP/server.log" 2>/dev/null; do
        i=$((i + 1))
        [ $i -gt 200 ] && { cat "$TMP/server.log" >&2; exit 1; }
        sleep 0.05
    done
    PORT=$(sed -n 's/.*listening on http:\/\/[^ ]*:\([0-9]*\).*/\1/p' "$TMP/server.log" | head -1)
}

start_server
cat > "$TMP/enqueue.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"data":{"n":1}}'
wrk.headers["Content-Type"] = "application/json"
LUA
echo "== enqueue over keep-alive: wrk -t2 -c$CONNS -d${DUR}s (memory adapters)"
wrk -t2 -c"$CONNS" -d"${DUR}s" -s "$TMP/enqueue.lua" \
    "http://127.0.0.1:$PORT/api/_queues/bench/enqueue"

echo "== concurrent SSE clients, every event to every client"
for n in $CLIENTS; do
    node "$ROOT/bench/sse_clients.mjs" "http://127.0.0.1:$PORT" "$n" 50 || break
done
