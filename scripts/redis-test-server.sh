# Sourced by test scripts: starts a private redis-server on a free loopback
# port with appendonly on, in directory $1. Sets NV_REDIS_PID, NV_REDIS_PORT
# and exports NV_TEST_REDIS_URL. Stop it with: kill "$NV_REDIS_PID".
redis_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
redis_start() {
    dir=$1
    mkdir -p "$dir"
    NV_REDIS_PORT=$(redis_free_port)
    redis-server --bind 127.0.0.1 --port "$NV_REDIS_PORT" --dir "$dir" \
        --appendonly yes --appendfsync everysec --save '' --daemonize no \
        --logfile "$dir/redis.log" &
    NV_REDIS_PID=$!
    i=0
    until redis-cli -p "$NV_REDIS_PORT" ping >/dev/null 2>&1; do
        i=$((i + 1))
        [ $i -gt 100 ] && return 1
        sleep 0.05
    done
    NV_TEST_REDIS_URL="redis://127.0.0.1:$NV_REDIS_PORT/0"
    export NV_TEST_REDIS_URL
}
