#!/bin/sh
# Runs every test suite against the build in $B (default build/):
#   1. C unit tests (Criterion), once, and the differential cron test
#      against the npm cron-parser (npm ci when node_modules is missing);
#   2. the backend suites (adapter contract + flow semantics), once per
#      adapter: memory, file, and redis on a redis-server this script starts
#      on a free loopback port and stops by pid;
#   3. end-to-end tests against the built binary (node --test), when present.
# Exits non-zero when any suite fails.
set -eu
B=${B:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
JOBS=${NV_TEST_JOBS:-2}
fail=0
TMP=$(mktemp -d /tmp/nvent-test.XXXXXX)
REDIS_PID=""
cleanup() {
    [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM
T0=$(date +%s)
SECTION_T=$T0
# Prints how long the previous section took, then the new section's title.
section() {
    now=$(date +%s)
    echo "   (previous section: $((now - SECTION_T)) s)"
    SECTION_T=$now
    echo "== $*"
}

section "unit tests ($B)"
"$B/test-unit" --jobs "$JOBS" || fail=1

section "cron differential test (cron-parser, tests/cron-diff)"
if [ ! -d tests/cron-diff/node_modules ]; then
    (cd tests/cron-diff && npm ci --no-audit --no-fund --loglevel=error) || fail=1
fi
node tests/cron-diff/diff.mjs "$B/cron-dump" || fail=1

for backend in memory file redis; do
    if [ "$backend" = redis ]; then
        . scripts/redis-test-server.sh
        redis_start "$TMP/redis" || { echo "cannot start redis-server" >&2; exit 1; }
        REDIS_PID=$NV_REDIS_PID
    fi
    section "backend suite: $backend"
    NV_TEST_BACKEND=$backend NV_TEST_TMP=$TMP "$B/test-backend" --jobs "$JOBS" || fail=1
done

if ls tests/e2e/*.test.mjs >/dev/null 2>&1; then
    section "end-to-end tests"
    NVENT_BIN="$ROOT/$B/nvent" NV_TEST_REDIS_URL=${NV_TEST_REDIS_URL:-} \
        node --test --test-concurrency=2 tests/e2e/ || fail=1
fi
section "done in $(( $(date +%s) - T0 )) s, result: $([ $fail = 0 ] && echo pass || echo FAIL)"
exit $fail
