#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Fixture: mariadbd on 127.0.0.1 in a temporary datadir (mariadb-install-db), run as
# `mariadbd --user=root --max-connections=500`. Grant tables are skipped: any user connects
# without a password, which is all the tests need. Writes DIR/mariadb.port.
. "$(dirname "$0")/common.sh"

case $action in
start)
    rm -f "$dir"/mariadb*
    tmp=$(mktemp -d /tmp/coho-mariadb.XXXXXX) # short: the unix socket path has a length limit
    echo "$tmp" >"$dir/mariadb.tmp"
    if ! mariadb-install-db --no-defaults --datadir="$tmp/data" --user=root \
        --auth-root-authentication-method=normal --skip-test-db >"$dir/mariadb-install.log" 2>&1; then
        cat "$dir/mariadb-install.log" >&2
        exit 1
    fi
    for attempt in 1 2 3; do
        port=$("$delayd" free-port)
        start_bg "$dir/mariadb.pid" "$dir/mariadb.log" \
            mariadbd --no-defaults --user=root --max-connections=500 --datadir="$tmp/data" \
            --socket="$tmp/mysqld.sock" --port="$port" --bind-address=127.0.0.1 \
            --pid-file="$tmp/mariadbd.pid" --skip-grant-tables --skip-name-resolve \
            --skip-log-bin --innodb-buffer-pool-size=16M --thread-cache-size=500
        if wait_port "$port" 60; then
            echo "$port" >"$dir/mariadb.port"
            echo "mariadbd on 127.0.0.1:$port"
            exit 0
        fi
        echo "mariadbd did not come up on port $port (attempt $attempt)" >&2
        stop_pidfile "$dir/mariadb.pid"
    done
    cat "$dir/mariadb.log" >&2 || true
    exit 1
    ;;
stop)
    stop_pidfile "$dir/mariadb.pid"
    if [ -s "$dir/mariadb.tmp" ]; then
        tmp=$(cat "$dir/mariadb.tmp")
        case $tmp in /tmp/coho-mariadb.*) rm -rf "$tmp" ;; esac
    fi
    rm -f "$dir/mariadb.port" "$dir/mariadb.tmp"
    ;;
*) usage ;;
esac
