#!/bin/sh
# Durable queue throughput, in one run: the file adapter (synchronous
# NORMAL and FULL, group commit) against beanstalkd with its binlog
# (-b DIR with the default fsync every 50 ms, and -b DIR -f 0: fsync on
# every write). Same thread count, same job count, same body size.
# Prints every figure and the ratios file/beanstalkd. What each measures:
#   enqueue         T threads store jobs (file: enqueue; beanstalkd: put)
#   reserve+ack     T threads take a queued job and acknowledge it, two
#                   calls per job (file: reserve, finish COMPLETE;
#                   beanstalkd: reserve-with-timeout, delete)
#   finish_reserve  file only: T workers as the engine runs them, one call
#                   per job that acknowledges the job held and takes the
#                   next (the ack is as durable; beanstalkd has no such
#                   command, so its reserve+ack is the peer)
#   cycle           T threads each enqueue, reserve, acknowledge
#   flow_steps      file only: build/bench/engine_bench --only flows on a
#                   config whose queue, store and stream adapters are all
#                   file with that synchronous setting (3-step flows chained
#                   by events, FLOWS of them, one run); beanstalkd has no
#                   flows, so no ratio: steps/s and CPU us per step
# Every file call returns once committed (NORMAL: in the WAL, survives a
# killed process; FULL: fsynced). File jobs keep the newest 1000
# completed (the default retention); beanstalkd deletes them.
#   THREADS=16 JOBS=50000 FLOWS=3000 B=build bench/file_vs_beanstalkd.sh
# Not a test. Installs beanstalkd (Debian package) when it is missing.
set -eu
B=${B:-build}
THREADS=${THREADS:-16}
JOBS=${JOBS:-50000}
FLOWS=${FLOWS:-3000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

if ! command -v beanstalkd >/dev/null 2>&1; then
    echo "installing beanstalkd (Debian package)" >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq beanstalkd \
        >/dev/null
fi
make -s B="$B" bench >/dev/null

TMP=$(mktemp -d /tmp/nvent-bench.XXXXXX)
BPID=""
cleanup() {
    [ -n "$BPID" ] && kill "$BPID" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# run_beanstalkd LABEL ARGS...: start beanstalkd with a fresh binlog dir,
# run the client against it, stop it.
run_beanstalkd() {
    label=$1
    shift
    port=$(free_port)
    mkdir -p "$TMP/$label"
    beanstalkd -l 127.0.0.1 -p "$port" -b "$TMP/$label" "$@" &
    BPID=$!
    i=0
    until python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null; do
        i=$((i + 1))
        [ $i -lt 100 ] || { echo "beanstalkd did not start" >&2; exit 1; }
        sleep 0.05
    done
    "$B/bench/beanstalk_bench" -p "$port" -t "$THREADS" -n "$JOBS" -l "$label"
    kill "$BPID"
    wait "$BPID" 2>/dev/null || true
    BPID=""
}

# run_flows SYNC: flow steps/s of the engine on file adapters (queue,
# store, stream) with file.synchronous SYNC, fresh data directories.
run_flows() {
    d="$TMP/flows-$1"
    mkdir -p "$d"
    cat >"$d/nvent.json" <<EOF
{"queue":  {"adapter": "file", "file": {"dataDir": "$d/queue", "synchronous": "$1"}},
 "store":  {"adapter": "file", "file": {"dataDir": "$d/store", "synchronous": "$1"}},
 "stream": {"adapter": "file", "file": {"dataDir": "$d/stream", "synchronous": "$1"}}}
EOF
    "$B/bench/engine_bench" --only flows --flows "$FLOWS" --runs 1 \
        "$d/nvent.json" | awk -v s="$1" '/^flow steps/ {
            cpu = $0
            sub(/.*runs, /, "", cpu)
            sub(/ us CPU.*/, "", cpu)
            printf "file %s flow_steps 3-step %s steps/s (%.1f us CPU/step)\n", s, $5, cpu
        }'
}

OUT="$TMP/results"
echo "threads $THREADS, jobs $JOBS, $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg)"
{
    run_beanstalkd binlog
    "$B/bench/file_bench" -t "$THREADS" -n "$JOBS" -s normal -p rwc -d "$TMP/file-normal"
    run_beanstalkd f0 -f 0
    "$B/bench/file_bench" -t "$THREADS" -n "$JOBS" -s full -p rwc -d "$TMP/file-full"
    run_flows normal
    run_flows full
} | tee "$OUT"

echo
echo "ratios (jobs/s of file / jobs/s of beanstalkd):"
awk '
    $1 == "beanstalkd" { b[$2 " " $3] = $5 }
    $1 == "file"       { f[$2 " " $3] = $5 }
    END {
        split("enqueue reserve+ack finish_reserve cycle", ph, " ")
        split("enqueue reserve+ack reserve+ack cycle", peer, " ")
        for (i = 1; i <= 4; i++) {
            p = ph[i]
            q = peer[i]
            if (b["binlog " q] > 0)
                printf "  %-15s file normal / beanstalkd -b %-12s = %.2f\n", p, q, f["normal " p] / b["binlog " q]
            if (b["f0 " q] > 0)
                printf "  %-15s file full   / beanstalkd -b -f 0 %-7s = %.2f\n", p, q, f["full " p] / b["f0 " q]
        }
    }' "$OUT"
