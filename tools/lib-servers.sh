# SPDX-License-Identifier: MIT
# Shared by tools/run-game.sh and tools/run-cluster.sh (sourced, not run): the process
# bookkeeping, port picking and the throwaway MariaDB server both start.
#
# The sourcing script sets `prog` (its name, for messages), `tmp` (its temporary directory,
# removed on exit), `mariadbd` (the server binary) and defines die(); it appends the pid of
# every process it starts to `pids`, which cleanup stops on exit.

pids=()

# cleanup: on exit, SIGCONT (a stopped process cannot die of SIGTERM) and SIGTERM every process
# in `pids`, SIGKILL what is still there after 10 s, remove $tmp.
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill -CONT "$pid" 2>/dev/null
        kill -TERM "$pid" 2>/dev/null
    done
    for pid in "${pids[@]}"; do
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    if [ -n "${COHO_KEEP_TMP:-}" ]; then
        echo "$prog: logs and data kept in $tmp (COHO_KEEP_TMP)" >&2
    else
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_listen NAME PID FILE KIND: the HOST:PORT of the first "listening KIND HOST:PORT" line the
# program prints, within 30 s; fails (showing the program's output) if it exits first.
wait_listen() {
    local name=$1 pid=$2 file=$3 kind=$4 addr
    for _ in $(seq 300); do
        addr=$(grep -m1 -oE "^listening $kind [^ ]+" "$file" 2>/dev/null | awk '{print $3}')
        if [ -n "$addr" ]; then
            echo "$addr"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "$prog: $name exited before listening; its output:" >&2
            cat "$file" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "$prog: $name printed no 'listening $kind HOST:PORT' line within 30 s; its output:" >&2
    cat "$file" >&2
    return 1
}

# stop NAME PID: SIGTERM, up to 15 s to exit, then SIGKILL; returns the exit status (and says
# so when it is not 0) and forgets the pid.
stop() {
    local name=$1 pid=$2 status
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 150); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "$prog: $name did not exit within 15 s of SIGTERM; killing it" >&2
        kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
    status=$?
    local left=() p
    for p in "${pids[@]}"; do
        [ "$p" = "$pid" ] || left+=("$p")
    done
    pids=("${left[@]}")
    [ "$status" -eq 0 ] || echo "$prog: $name exited with status $status after SIGTERM" >&2
    return "$status"
}

# start_mariadb: a MariaDB server of its own in $tmp/db on a free 127.0.0.1 port, with database
# $db_name and user $db_user / $db_password (set here); sets db_port and db_pid.
# The server gets a temporary directory of its own (--tmpdir): installs running at once with a
# shared /tmp collide on their temporary tables ("Error on delete of '/tmp/#sql-temptable-..'").
# A failed install is retried with a fresh datadir, a server that does not come up on another port.
start_mariadb() {
    db_name=coho_game db_user=coho db_password="pw-$RANDOM$RANDOM"
    local installed=0 attempt port
    for attempt in 1 2 3; do
        rm -rf "$tmp/db"
        mkdir -p "$tmp/tmpdir"
        if mariadb-install-db --no-defaults --datadir="$tmp/db" --tmpdir="$tmp/tmpdir" --user=root \
            --auth-root-authentication-method=normal --skip-test-db >"$tmp/mariadb-install.log" 2>&1; then
            installed=1
            break
        fi
        echo "$prog: mariadb-install-db failed (attempt $attempt)" >&2
    done
    [ "$installed" = 1 ] || {
        cat "$tmp/mariadb-install.log" >&2
        die "mariadb-install-db failed"
    }
    db_port=""
    for attempt in 1 2 3; do
        port=$(free_port) || die "cannot pick a free port"
        "$mariadbd" --no-defaults --tmpdir="$tmp/tmpdir" --user=root --datadir="$tmp/db" --socket="$tmp/mysqld.sock" \
            --port="$port" --bind-address=127.0.0.1 --pid-file="$tmp/mariadbd.pid" --skip-name-resolve \
            --skip-log-bin --innodb-buffer-pool-size=32M --max-connections=500 \
            >"$tmp/mariadb.log" 2>&1 &
        db_pid=$!
        for _ in $(seq 300); do
            if mariadb --no-defaults -uroot -S "$tmp/mysqld.sock" -e 'SELECT 1' >/dev/null 2>&1; then
                db_port=$port
                break
            fi
            kill -0 "$db_pid" 2>/dev/null || break
            sleep 0.1
        done
        if [ -n "$db_port" ]; then
            pids+=("$db_pid")
            break
        fi
        echo "$prog: mariadbd did not come up on port $port (attempt $attempt)" >&2
        kill -KILL "$db_pid" 2>/dev/null
        wait "$db_pid" 2>/dev/null
    done
    [ -n "$db_port" ] || {
        cat "$tmp/mariadb.log" >&2
        die "mariadbd did not start"
    }
    mariadb --no-defaults -uroot -S "$tmp/mysqld.sock" -e "
        CREATE DATABASE $db_name;
        CREATE USER '$db_user'@'127.0.0.1' IDENTIFIED BY '$db_password';
        GRANT ALL ON $db_name.* TO '$db_user'@'127.0.0.1';" || die "cannot create the database and its user"
}
