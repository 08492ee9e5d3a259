#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Fixture: etcd (Debian's etcd-server, v3 API and its JSON gateway) on 127.0.0.1, one member, a
# temporary data dir, free client and peer ports. Writes DIR/etcd.port (the client port).
. "$(dirname "$0")/common.sh"

case $action in
start)
    rm -f "$dir"/etcd*
    tmp=$(mktemp -d /tmp/coho-etcd.XXXXXX)
    echo "$tmp" >"$dir/etcd.tmp"
    for attempt in 1 2 3; do
        port=$("$delayd" free-port)
        peer=$("$delayd" free-port)
        [ "$port" != "$peer" ] || continue
        rm -rf "$tmp/data"
        start_bg "$dir/etcd.pid" "$dir/etcd.log" \
            etcd --name coho-test --data-dir "$tmp/data" \
            --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port" \
            --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
            --initial-cluster "coho-test=http://127.0.0.1:$peer" --initial-cluster-state new
        if wait_port "$port" 60; then
            echo "$port" >"$dir/etcd.port"
            echo "etcd on 127.0.0.1:$port"
            exit 0
        fi
        echo "etcd did not come up on port $port (attempt $attempt)" >&2
        stop_pidfile "$dir/etcd.pid"
    done
    cat "$dir/etcd.log" >&2 || true
    exit 1
    ;;
stop)
    stop_pidfile "$dir/etcd.pid"
    if [ -s "$dir/etcd.tmp" ]; then
        tmp=$(cat "$dir/etcd.tmp")
        case $tmp in /tmp/coho-etcd.*) rm -rf "$tmp" ;; esac
    fi
    rm -f "$dir/etcd.port" "$dir/etcd.tmp"
    ;;
*) usage ;;
esac
