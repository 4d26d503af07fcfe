#!/bin/sh
# Step "notify" of the "orders" flow, in plain POSIX shell: a process
# function (SPEC §11) needs nothing but reading and writing JSON lines.
# It runs after the "ship" step completed (subscription "step:ship").
while IFS= read -r line; do
    case "$line" in
    *'"type":"describe"'*)
        echo '{"type":"config","config":{"flow":{"name":"orders","subscribes":["step:ship"]}}}'
        ;;
    *'"type":"job"'*)
        # the host writes "type" then "id" first in every message it sends
        id=$(printf '%s\n' "$line" | sed -n 's/^{"type":"job","id":"\([^"]*\)".*/\1/p')
        echo "{\"type\":\"log\",\"id\":\"$id\",\"level\":\"info\",\"message\":\"customer notified\"}"
        echo "{\"type\":\"result\",\"id\":\"$id\",\"result\":{\"notified\":true}}"
        ;;
    esac
done
