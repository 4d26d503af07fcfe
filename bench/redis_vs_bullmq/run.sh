#!/bin/sh
# nvent (redis adapters) against BullMQ on one private redis-server, in one
# run. Not a test. Usage (from the repository root or anywhere):
#   bench/redis_vs_bullmq/run.sh [jobs] [flows] [latency samples] [rounds]
# Builds libnvent (make), compiles nvent_bench.c against it (with the engine
# part when the engine is in libnvent), installs BullMQ from the lock file
# (npm ci) when needed, starts redis-server on a free loopback port
# (appendonly yes, appendfsync everysec), runs both 'rounds' times (default
# 3; each round runs both sides, nvent first in odd rounds and BullMQ first
# in even ones, with the server emptied before each), prints the medians and
# the median of the rounds' own ratios with their range (report.mjs), and
# stops the server by its pid. On a VM whose speed changes from minute to
# minute one round can be off by 2x; a ratio taken within its round, and
# the median of several, is not.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
JOBS=${1:-100000}
FLOWS=${2:-20000}
SAMPLES=${3:-2000}
ROUNDS=${4:-3}
B=${B:-build}
cd "$ROOT"
make -s B="$B" "$B/libnvent.a" >/dev/null
DEFS=""
if nm "$B/libnvent.a" 2>/dev/null | grep -q ' T nv_engine_start$'; then
    DEFS="-DNV_BENCH_ENGINE"
fi
mkdir -p "$B/bench"
# shellcheck disable=SC2046
cc -std=c11 -D_GNU_SOURCE -O2 $DEFS -Iinclude -o "$B/bench/nvent_redis_bench" \
    "$HERE/nvent_bench.c" "$HERE/ceiling.c" "$B/libnvent.a" \
    $(pkg-config --libs jansson sqlite3 libmicrohttpd hiredis) -pthread -ldl -lm
[ -d "$HERE/node_modules/bullmq" ] || (cd "$HERE" && npm ci --no-audit --no-fund)

TMP=$(mktemp -d /tmp/nvent-bench.XXXXXX)
. "$ROOT/scripts/redis-test-server.sh"
stop_redis() {
    if [ -n "${NV_REDIS_PID:-}" ] && kill "$NV_REDIS_PID" 2>/dev/null; then
        while kill -0 "$NV_REDIS_PID" 2>/dev/null; do sleep 0.1; done
    fi
    rm -rf "$TMP"
}
trap stop_redis EXIT INT TERM
redis_start "$TMP/redis"
echo "redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/') on port $NV_REDIS_PORT (appendonly everysec); jobs=$JOBS flows=$FLOWS samples=$SAMPLES rounds=$ROUNDS"
run_nvent() {
    redis-cli -p "$NV_REDIS_PORT" flushall >/dev/null
    "$B/bench/nvent_redis_bench" "$NV_REDIS_PORT" "$JOBS" "$FLOWS" "$SAMPLES" \
        "$NV_REDIS_PID" >>"$TMP/nvent.jsonl"
}
run_bullmq() {
    redis-cli -p "$NV_REDIS_PORT" flushall >/dev/null
    node "$HERE/bullmq_bench.mjs" "$NV_REDIS_PORT" "$JOBS" "$FLOWS" "$SAMPLES" \
        "$NV_REDIS_PID" >>"$TMP/bullmq.jsonl"
}
k=1
while [ "$k" -le "$ROUNDS" ]; do
    if [ $((k % 2)) -eq 1 ]; then
        run_nvent
        run_bullmq
    else
        run_bullmq
        run_nvent
    fi
    echo "round $k of $ROUNDS done" >&2
    k=$((k + 1))
done
node "$HERE/report.mjs" "$TMP/nvent.jsonl" "$TMP/bullmq.jsonl"
