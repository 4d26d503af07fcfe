#!/bin/sh
# nvent (redis adapters) against BullMQ on one private redis-server, in one
# run. Not a test. Usage (from the repository root or anywhere):
#   bench/redis_vs_bullmq/run.sh [jobs] [flows] [latency samples]
# Builds libnvent (make), compiles nvent_bench.c against it (with the engine
# part when the engine is in libnvent), installs BullMQ from the lock file
# (npm ci) when needed, starts redis-server on a free loopback port
# (appendonly yes, appendfsync everysec), runs both, prints the figures and
# the ratios, and stops the server by its pid.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
JOBS=${1:-100000}
FLOWS=${2:-20000}
SAMPLES=${3:-2000}
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
    "$HERE/nvent_bench.c" "$B/libnvent.a" \
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
echo "redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/') on port $NV_REDIS_PORT (appendonly everysec); jobs=$JOBS flows=$FLOWS samples=$SAMPLES"
NV=$("$B/bench/nvent_redis_bench" "$NV_REDIS_PORT" "$JOBS" "$FLOWS" "$SAMPLES" "$NV_REDIS_PID")
redis-cli -p "$NV_REDIS_PORT" flushall >/dev/null
BM=$(node "$HERE/bullmq_bench.mjs" "$NV_REDIS_PORT" "$JOBS" "$FLOWS" "$SAMPLES" "$NV_REDIS_PID")
node -e '
const nv = JSON.parse(process.argv[1]), bm = JSON.parse(process.argv[2]);
const f = (x) => x === undefined ? "-" : Math.round(x).toString();
const r = (a, b) => a === undefined || b === undefined ? "-" : (a / b).toFixed(2) + "x";
const rows = [];
nv.jobs = nv.jobs || {};
for (const c of ["1", "10", "100"]) {
  rows.push([`no-op jobs/s, concurrency ${c} (adapter)`, f(nv.jobs[c]), f(bm.jobs[c]), r(nv.jobs[c], bm.jobs[c])]);
  if (nv.engine_jobs)
    rows.push([`no-op jobs/s, concurrency ${c} (engine)`, f(nv.engine_jobs[c]), f(bm.jobs[c]), r(nv.engine_jobs[c], bm.jobs[c])]);
}
if (nv.instances)
  for (const k of ["1", "2", "3"])
    rows.push([`no-op jobs/s, ${k} instance(s) x 10 workers`, f(nv.instances[k]), "-", "-"]);
rows.push(["enqueue jobs/s", f(nv.enqueue), f(bm.enqueue), r(nv.enqueue, bm.enqueue)]);
rows.push(["3-step flows/s", f(nv.flows), f(bm.flows), r(nv.flows, bm.flows)]);
if (nv.flows_4t !== undefined)
  rows.push(["3-step flows/s, started by 4 threads", f(nv.flows_4t), f(bm.flows), r(nv.flows_4t, bm.flows)]);
rows.push(["enqueue->start p50 (us)", f(nv.p50_us), f(bm.p50_us), r(bm.p50_us, nv.p50_us)]);
rows.push(["enqueue->start p99 (us)", f(nv.p99_us), f(bm.p99_us), r(bm.p99_us, nv.p99_us)]);
if (nv.rss_kb) rows.push(["peak RSS (MB)", (nv.rss_kb / 1024).toFixed(1), (bm.rss_kb / 1024).toFixed(1), r(bm.rss_kb, nv.rss_kb)]);
if (nv.worker_rss_kb)
  for (const [k, label] of [["10", "conc. 10"], ["100", "conc. 100"], ["100a2", "conc. 100, 2 arenas"]])
    rows.push([`worker RSS, ${label} (MB)`, (nv.worker_rss_kb[k] / 1024).toFixed(1), (bm.rss_kb / 1024).toFixed(1), r(bm.rss_kb, nv.worker_rss_kb[k])]);
console.log(["measure", "nvent", "bullmq", "ratio"].map((s, i) => i ? s.padStart(10) : s.padEnd(40)).join(""));
for (const row of rows) console.log(row.map((s, i) => i ? s.padStart(10) : s.padEnd(40)).join(""));
console.log("ratio: nvent/bullmq for rates, bullmq/nvent for latency and memory (>1 = nvent better)");
const nc = nv.cpu || {}, bc = bm.cpu || {};
const c = (v, i) => v === undefined ? "-" : v[i].toFixed(1);
const t = (v) => v === undefined ? undefined : v[0] + v[1];
const crow = (label, a, b) => [label, c(a, 0), c(a, 1), c(b, 0), c(b, 1),
  t(a) === undefined || t(b) === undefined ? "-" : (t(b) / t(a)).toFixed(2) + "x"];
const pairs = [];
for (const k of ["1", "10", "100"]) {
  pairs.push([`jobs, concurrency ${k} (adapter)`, nc[`adapter_${k}`], bc[`jobs_${k}`]]);
  pairs.push([`jobs, concurrency ${k} (engine)`, nc[`engine_${k}`], bc[`jobs_${k}`]]);
}
for (const k of ["1", "2", "3"])
  pairs.push([`jobs, ${k} instance(s) x 10 workers`, nc[`instances_${k}`], undefined]);
pairs.push(["enqueue", nc.enqueue, bc.enqueue]);
pairs.push(["3-step flows (per flow)", nc.flows, bc.flows]);
pairs.push(["3-step flows, 4 starting threads", nc.flows_4t, bc.flows]);
const pad = (row) => row.map((s, i) => i ? s.padStart(9) : s.padEnd(36)).join("");
console.log("");
console.log(pad(["CPU us per job", "nvent", "redis", "bullmq", "redis", "ratio"]));
for (const [label, a, b] of pairs) console.log(pad(crow(label, a, b)));
console.log("CPU: of the bench process and of redis-server; ratio: bullmq/nvent totals (>1 = nvent cheaper)");
const w = (v, i) => v === undefined || v[i] === undefined ? "-" : v[i].toFixed(2);
const ws = (v) => v === undefined || v[2] === undefined ? undefined : v[2] + v[3];
console.log("");
console.log(pad(["switches per job", "nvent", "redis", "bullmq", "redis", "ratio"]));
for (const [label, a, b] of pairs)
  console.log(pad([label, w(a, 2), w(a, 3), w(b, 2), w(b, 3),
    ws(a) === undefined || ws(b) === undefined ? "-" : (ws(b) / ws(a)).toFixed(2) + "x"]));
console.log("switches: context switches (voluntary + involuntary) of the bench process (every thread) and of the main thread of redis-server; ratio: bullmq/nvent totals");
' "$NV" "$BM"
