#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Fixture: memcached on 127.0.0.1 (`memcached -u root`), and in front of it a delaying proxy
# (delayd proxy) that holds every response 200 ms, so overlapping requests are measurable.
# Writes DIR/memcached.port (direct) and DIR/memcached_delayed.port (through the proxy).
. "$(dirname "$0")/common.sh"
delay_ms=200

case $action in
start)
    rm -f "$dir"/memcached*
    for attempt in 1 2 3; do
        port=$("$delayd" free-port)
        memcached -u root -l 127.0.0.1 -p "$port" -U 0 -c 4096 -d -P "$dir/memcached.pid" \
            >"$dir/memcached.log" 2>&1 || true
        if wait_port "$port" 20; then
            echo "$port" >"$dir/memcached.port"
            break
        fi
        echo "memcached did not come up on port $port (attempt $attempt)" >&2
        stop_pidfile "$dir/memcached.pid"
    done
    [ -s "$dir/memcached.port" ] || { cat "$dir/memcached.log" >&2 || true; exit 1; }
    start_bg "$dir/memcached_proxy.pid" "$dir/memcached_proxy.log" \
        "$delayd" proxy "$dir/memcached_delayed.port" "$delay_ms" "$port"
    if ! wait_file "$dir/memcached_delayed.port" 20; then
        cat "$dir/memcached_proxy.log" >&2 || true
        exit 1
    fi
    echo "memcached on 127.0.0.1:$port, delayed by ${delay_ms} ms on $(cat "$dir/memcached_delayed.port")"
    ;;
stop)
    stop_pidfile "$dir/memcached_proxy.pid"
    stop_pidfile "$dir/memcached.pid"
    rm -f "$dir/memcached.port" "$dir/memcached_delayed.port"
    ;;
*) usage ;;
esac
