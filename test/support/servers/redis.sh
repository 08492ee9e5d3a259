#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Fixture: redis-server on 127.0.0.1 without persistence. Writes DIR/redis.port.
. "$(dirname "$0")/common.sh"

case $action in
start)
    rm -f "$dir"/redis.*
    for attempt in 1 2 3; do
        port=$("$delayd" free-port)
        redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
            --dir "$dir" --daemonize yes --pidfile "$dir/redis.pid" \
            --logfile "$dir/redis.log" --maxclients 4000
        if wait_port "$port" 20; then
            echo "$port" >"$dir/redis.port"
            echo "redis-server on 127.0.0.1:$port"
            exit 0
        fi
        echo "redis-server did not come up on port $port (attempt $attempt)" >&2
        stop_pidfile "$dir/redis.pid"
    done
    cat "$dir/redis.log" >&2 || true
    exit 1
    ;;
stop)
    stop_pidfile "$dir/redis.pid"
    rm -f "$dir/redis.port"
    ;;
*) usage ;;
esac
