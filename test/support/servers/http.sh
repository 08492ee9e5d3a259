#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Fixture: an HTTP server on 127.0.0.1 (delayd http, listen backlog 1024) that answers every
# request 200 ms after it arrived. Writes DIR/http.port.
. "$(dirname "$0")/common.sh"
delay_ms=200

case $action in
start)
    rm -f "$dir"/http.*
    start_bg "$dir/http.pid" "$dir/http.log" "$delayd" http "$dir/http.port" "$delay_ms"
    if ! wait_file "$dir/http.port" 20 || ! wait_port "$(cat "$dir/http.port")" 20; then
        cat "$dir/http.log" >&2 || true
        exit 1
    fi
    echo "delaying HTTP server on 127.0.0.1:$(cat "$dir/http.port"), ${delay_ms} ms per response"
    ;;
stop)
    stop_pidfile "$dir/http.pid"
    rm -f "$dir/http.port"
    ;;
*) usage ;;
esac
