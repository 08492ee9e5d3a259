#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Fixture: mariadbd on 127.0.0.1 in a temporary datadir (mariadb-install-db), run as
# `mariadbd --user=root --max-connections=500`. Grant tables are skipped: any user connects
# without a password, which is all the tests need. Writes DIR/mariadb.port.
# `restart` starts mariadbd again on the same datadir and port (after a test killed it: InnoDB
# recovers what was committed).
. "$(dirname "$0")/common.sh"

# run_mariadbd TMP PORT: mariadbd on datadir TMP/data, in the background (pid in DIR).
run_mariadbd() {
    start_bg "$dir/mariadb.pid" "$dir/mariadb.log" \
        mariadbd --no-defaults --tmpdir="$1/tmpdir" --user=root --max-connections=500 --datadir="$1/data" \
        --socket="$1/mysqld.sock" --port="$2" --bind-address=127.0.0.1 \
        --pid-file="$1/mariadbd.pid" --skip-grant-tables --skip-name-resolve \
        --skip-log-bin --innodb-buffer-pool-size=16M --thread-cache-size=500
}

case $action in
start)
    rm -f "$dir"/mariadb*
    tmp=$(mktemp -d /tmp/coho-mariadb.XXXXXX) # short: the unix socket path has a length limit
    echo "$tmp" >"$dir/mariadb.tmp"
    # The server gets a temporary directory of its own (--tmpdir): installs running at once with a
    # shared /tmp collide on their temporary tables ("Error on delete of '/tmp/#sql-temptable-..'").
    # A failed install is retried with a fresh datadir.
    installed=0
    for attempt in 1 2 3; do
        rm -rf "$tmp/data"
        mkdir -p "$tmp/tmpdir"
        if mariadb-install-db --no-defaults --datadir="$tmp/data" --tmpdir="$tmp/tmpdir" --user=root \
            --auth-root-authentication-method=normal --skip-test-db >"$dir/mariadb-install.log" 2>&1; then
            installed=1
            break
        fi
        echo "mariadb.sh: mariadb-install-db failed (attempt $attempt)" >&2
    done
    if [ "$installed" != 1 ]; then
        cat "$dir/mariadb-install.log" >&2
        exit 1
    fi
    for attempt in 1 2 3; do
        port=$("$delayd" free-port)
        run_mariadbd "$tmp" "$port"
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
restart)
    tmp=$(cat "$dir/mariadb.tmp") port=$(cat "$dir/mariadb.port")
    stop_pidfile "$dir/mariadb.pid"
    # The port was freed by the old server; crash recovery may take a while on a loaded machine.
    for attempt in 1 2 3; do
        run_mariadbd "$tmp" "$port"
        if wait_port "$port" 120; then
            echo "mariadbd again on 127.0.0.1:$port"
            exit 0
        fi
        echo "mariadbd did not come back on port $port (attempt $attempt)" >&2
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
