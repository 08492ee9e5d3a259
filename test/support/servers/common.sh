#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Helpers shared by the server fixture scripts (sourced). Each script is
#   NAME.sh start|stop DIR DELAYD
# start: launches the server on 127.0.0.1 with a free port, writes DIR/NAME.port (and pid
# files) once it accepts connections; stop: terminates it and removes its temporary data.
# DELAYD is the test/support/delayd program (free ports, the delaying servers).
set -euo pipefail

# wait_port PORT SECONDS: succeeds once 127.0.0.1:PORT accepts a TCP connection.
wait_port() {
    local port=$1 deadline=$((SECONDS + $2))
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

# wait_file FILE SECONDS: succeeds once FILE exists and is not empty.
wait_file() {
    local file=$1 deadline=$((SECONDS + $2))
    until [ -s "$file" ]; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

# stop_pidfile FILE: TERM the process named in FILE, KILL it after 15 s, remove FILE.
stop_pidfile() {
    local file=$1 pid i
    [ -s "$file" ] || { rm -f "$file"; return 0; }
    pid=$(cat "$file")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 150); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$file"
}

# start_bg PIDFILE LOG CMD...: runs CMD detached (own session, no inherited stdio), records pid.
start_bg() {
    local pidfile=$1 log=$2
    shift 2
    setsid "$@" </dev/null >"$log" 2>&1 &
    echo $! >"$pidfile"
}

usage() {
    echo "usage: $0 start|stop DIR DELAYD" >&2
    exit 2
}

[ $# -eq 3 ] || usage
action=$1 dir=$2 delayd=$3
mkdir -p "$dir"
