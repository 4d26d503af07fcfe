#!/bin/sh
# The main job (README: `make run`): the nvent server on the example project
# with its file adapters; before the server exists, the C example program.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=${B:-build}
if [ -x "$ROOT/$B/nvent" ] && [ -d "$ROOT/examples/project" ]; then
    cd "$ROOT/examples/project"
    exec "$ROOT/$B/nvent" serve "$@"
fi
exec "$ROOT/$B/examples/flow_demo" "$@"
