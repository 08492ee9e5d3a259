#!/usr/bin/env bash
# The cluster demo (`make cluster`, game/README.md "Cluster"): a throwaway etcd and MariaDB, three
# coho-logic nodes and two coho-gate gateways that find each other through etcd, each on its own
# loopback address (127.0.0.2..4 the nodes, 127.0.0.5..6 the gateways), and one coho-bots per
# gateway; prints the bots' live progress, the membership seen in etcd and a summary; stops
# everything; exits non-zero on any loss beyond what the fault allows.
#
# Usage: tools/run-cluster.sh BUILD_DIR [--kill|--stop|--etcd-restart|--kill-gate] [--duration-s S] [--bots N] [--ttl-s T]
#                              [--calls MIX]
#   --kill   a third of the way through, `kill -9` logic node 1 under load: only calls in flight
#            to it may fail (status 3, at most one per bot; no timeout), and its key must leave
#            etcd within TTL + 1 s
#   --stop   a third of the way through, SIGSTOP logic node 1 for 2 x TTL, then SIGCONT: calls
#            parked on it fail (status 3 or 4, at most one per bot), it must notice it lost its
#            lease, and register again
#   --etcd-restart  a third of the way through, stop etcd for 2 s and start it again: calls go
#            on (on established routes), then a fourth logic node joins, which both gateways
#            must learn through their (re-established) watches
#   --kill-gate  halfway through, `kill -9` gateway 2: its bots (given both gateways, theirs
#            first) reconnect to gateway 1, try REBIND there, which must be refused with status
#            2 (sessions live in the gateway that made them), log in again and carry on. Passes
#            only if every one of them plays again on gateway 1, each lost at most the
#            connection it had (one error), and the bots of gateway 1 saw no error at all
#   --calls MIX  the bots' call mix (coho-bots --calls): default 'all' (player, chat, scene calls
#            and pushes across both gateways), 'echo' with --kill or --stop (scene membership
#            does not follow a uid that moves: with 'all' a fault costs scene.move errors)
# Every logic node must have served logins (the gateways route over every node they found).
# The programs default to BUILD_DIR/game/{gate,logic,bots}/coho-*.
set -uo pipefail

die() {
    echo "run-cluster: $*" >&2
    exit 1
}

[ $# -ge 1 ] || die "usage: $0 BUILD_DIR [--kill] [--duration-s S] [--bots N] [--ttl-s T]"
[ -d "$1" ] || die "build directory '$1' does not exist"
build=$(cd "$1" && pwd)
shift
kill_mode=0 duration=20 nbots=50 ttl=5 calls=""
while [ $# -gt 0 ]; do
    case "$1" in
    --kill) kill_mode=1; shift ;;
    --stop) kill_mode=2; shift ;;
    --etcd-restart) kill_mode=3; shift ;;
    --kill-gate) kill_mode=4; shift ;;
    --duration-s) duration=$2; shift 2 ;;
    --bots) nbots=$2; shift 2 ;;
    --ttl-s) ttl=$2; shift 2 ;;
    --calls) calls=$2; shift 2 ;;
    *) die "unknown flag '$1'" ;;
    esac
done

gate=$build/game/gate/coho-gate logic=$build/game/logic/coho-logic bots=$build/game/bots/coho-bots
for p in "$gate" "$logic" "$bots"; do
    [ -x "$p" ] || die "$p is missing: build it first (make build)"
done
for p in etcd etcdctl mariadb-install-db mariadb python3; do
    command -v "$p" >/dev/null 2>&1 || die "$p is missing: install it with tools/deps.sh game"
done
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || die "mariadbd is missing: tools/deps.sh game"
mariadbd=$(command -v mariadbd || echo /usr/sbin/mariadbd)

tmp=$(mktemp -d /tmp/coho-cluster.XXXXXX) || die "mktemp failed"
pids=()
cleanup() {
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
    rm -rf "$tmp"
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
            echo "run-cluster: $name exited before listening; its output:" >&2
            cat "$file" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "run-cluster: $name printed no 'listening $kind HOST:PORT' line within 30 s; its output:" >&2
    cat "$file" >&2
    return 1
}

# stop NAME PID: SIGTERM, up to 15 s to exit, then SIGKILL; prints the exit status.
stop() {
    local name=$1 pid=$2 status
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 150); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "run-cluster: $name did not exit within 15 s of SIGTERM; killing it" >&2
        kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
    status=$?
    local left=() p
    for p in "${pids[@]}"; do
        [ "$p" = "$pid" ] || left+=("$p")
    done
    pids=("${left[@]}")
    [ "$status" -eq 0 ] || echo "run-cluster: $name exited with status $status after SIGTERM" >&2
    return "$status"
}

[ -n "$calls" ] || { [ "$kill_mode" -eq 0 ] && calls=all || calls=echo; }

# ---- etcd ---------------------------------------------------------------------------------------
etcd_port=$(free_port) etcd_peer=$(free_port)
start_etcd() {
    etcd --name coho-cluster --data-dir "$tmp/etcd" \
        --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
        --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
        --initial-cluster "coho-cluster=http://127.0.0.1:$etcd_peer" >>"$tmp/etcd.log" 2>&1 &
    etcd_pid=$!
    pids+=("$etcd_pid")
}
start_etcd
etcd_ep=127.0.0.1:$etcd_port
etcdctl_() { ETCDCTL_API=3 etcdctl --endpoints "$etcd_ep" "$@"; }
for _ in $(seq 300); do
    etcdctl_ endpoint health >/dev/null 2>&1 && break
    sleep 0.1
done
etcdctl_ endpoint health >/dev/null 2>&1 || { cat "$tmp/etcd.log" >&2; die "etcd did not start"; }
echo "run-cluster: etcd on $etcd_ep"

# ---- MariaDB ----------------------------------------------------------------------------------
secret="game-secret-$RANDOM$RANDOM"
db_name=coho_game db_user=coho db_password="pw-$RANDOM$RANDOM"
# The server gets a temporary directory of its own (--tmpdir): installs running at once with a
# shared /tmp collide on their temporary tables ("Error on delete of '/tmp/#sql-temptable-..'").
# A failed install is retried with a fresh datadir.
installed=0
for attempt in 1 2 3; do
    rm -rf "$tmp/db"
    mkdir -p "$tmp/tmpdir"
    if mariadb-install-db --no-defaults --datadir="$tmp/db" --tmpdir="$tmp/tmpdir" --user=root \
        --auth-root-authentication-method=normal --skip-test-db >"$tmp/mariadb-install.log" 2>&1; then
        installed=1
        break
    fi
    echo "run-cluster: mariadb-install-db failed (attempt $attempt)" >&2
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
    echo "run-cluster: mariadbd did not come up on port $port (attempt $attempt)" >&2
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
echo "run-cluster: mariadbd on 127.0.0.1:$db_port (datadir $tmp/db)"

# ---- three logic nodes, two gateways, found through etcd -----------------------------------------
cd "$build" || die "cannot enter $build"
cl=(--etcd "$etcd_ep" --cluster demo --lease-ttl-s "$ttl")
declare -A logic_pid gate_pid
for node in 1 2 3; do
    ip=127.0.0.$((node + 1))
    "$logic" --listen "$ip:0" --db "127.0.0.1:$db_port" --db-user "$db_user" \
        --db-password "$db_password" --db-name "$db_name" --node-id "$node" "${cl[@]}" \
        --journal "$tmp/logic$node.journal" >"$tmp/logic$node.out" 2>&1 &
    logic_pid[$node]=$!
    pids+=("$!")
    addr=$(wait_listen "coho-logic $node" "$!" "$tmp/logic$node.out" tcp) || exit 1
    echo "run-cluster: coho-logic $node on $addr"
done
for _ in $(seq 100); do
    [ "$(etcdctl_ get --prefix --keys-only /demo/logic/ | grep -c .)" -ge 3 ] && break
    sleep 0.1
done
gate_addrs=()
for g in 1 2; do
    "$gate" --listen "127.0.0.$((g + 4)):0" --secret "$secret" "${cl[@]}" --log "$tmp/gate$g.log" \
        >"$tmp/gate$g.out" 2>&1 &
    gate_pid[$g]=$!
    pids+=("$!")
    addr=$(wait_listen "coho-gate $g" "$!" "$tmp/gate$g.out" tcp) || exit 1
    gate_addrs+=("$addr")
    echo "run-cluster: coho-gate $g on $addr"
done
echo "run-cluster: registered in etcd:"
etcdctl_ get --prefix /demo/ | paste - - | sed 's/^/    /'

# ---- bots, one set per gateway; the fault ---------------------------------------------------------
max_errors=0
case $kill_mode in 1 | 2) max_errors=$nbots ;; esac # at most the call in flight of each bot
bot_pids=()
for g in 1 2; do
    gates=${gate_addrs[g - 1]} bot_max=$max_errors
    if [ "$kill_mode" -eq 4 ] && [ "$g" = 2 ]; then
        gates="${gate_addrs[1]},${gate_addrs[0]}" # theirs first, then the survivor
        bot_max=$nbots                            # the connection each had when it died
    fi
    "$bots" --gate "$gates" --secret "$secret" --bots "$nbots" --duration-s "$duration" \
        --rate 20 --calls "$calls" --uid-base $((g * 100000)) --max-errors "$bot_max" \
        --log "$tmp/bots$g.log" $([ "$g" = 2 ] && echo --quiet) >"$tmp/bots$g.out" 2>&1 &
    bot_pids+=("$!")
    pids+=("$!")
done
touch "$tmp/bots1.out"
tail -f "$tmp/bots1.out" &
tail_pid=$!
status=0
# key_gone_within MS: succeeds once node 1's key is not in etcd, within MS; prints the time taken.
key_gone_within() {
    local t0 ms
    t0=$(date +%s%N)
    while :; do
        ms=$((($(date +%s%N) - t0) / 1000000))
        if [ -z "$(etcdctl_ get --keys-only /demo/logic/1)" ]; then
            echo "$ms"
            return 0
        fi
        [ "$ms" -lt "$1" ] || return 1
        sleep 0.05
    done
}
if [ "$kill_mode" -eq 3 ]; then
    sleep $((duration / 3))
    kill -TERM "$etcd_pid"
    wait "$etcd_pid" 2>/dev/null
    echo "run-cluster: etcd stopped"
    sleep 2
    start_etcd
    for _ in $(seq 300); do
        etcdctl_ endpoint health >/dev/null 2>&1 && break
        sleep 0.1
    done
    echo "run-cluster: etcd started again"
    grep -h "lost its lease" "$tmp"/logic[123].out | sed "s/^/    /"
    "$logic" --listen "127.0.0.8:0" --db "127.0.0.1:$db_port" --db-user "$db_user" \
        --db-password "$db_password" --db-name "$db_name" --node-id 4 "${cl[@]}" \
        --journal "$tmp/logic4.journal" >"$tmp/logic4.out" 2>&1 &
    pids+=("$!")
    logic_pid[4]=$!
    addr4=$(wait_listen "coho-logic 4" "$!" "$tmp/logic4.out" tcp) || exit 1
    echo "run-cluster: coho-logic 4 on $addr4"
    for g in 1 2; do
        for _ in $(seq 200); do
            grep -q "logic node $addr4 joined" "$tmp/gate$g.log" 2>/dev/null && break
            sleep 0.05
        done
        if grep -q "logic node $addr4 joined" "$tmp/gate$g.log" 2>/dev/null; then
            echo "run-cluster: coho-gate $g found coho-logic 4 through etcd"
        else
            echo "run-cluster: FAIL: coho-gate $g did not learn of coho-logic 4 within 10 s"
            status=1
        fi
    done
elif [ "$kill_mode" -eq 4 ]; then
    sleep $((duration / 2))
    kill -KILL "${gate_pid[2]}"
    wait "${gate_pid[2]}" 2>/dev/null
    echo "run-cluster: kill -9 coho-gate 2 (pid ${gate_pid[2]})"
elif [ "$kill_mode" -ne 0 ]; then
    sleep $((duration / 3))
    t0=$(date +%s%N)
    if [ "$kill_mode" -eq 1 ]; then
        kill -KILL "${logic_pid[1]}"
        echo "run-cluster: kill -9 coho-logic 1 (pid ${logic_pid[1]})"
    else
        kill -STOP "${logic_pid[1]}"
        echo "run-cluster: SIGSTOP coho-logic 1 (pid ${logic_pid[1]}) for $((2 * ttl)) s"
    fi
    if gone=$(key_gone_within $(((ttl + 1) * 1000))); then
        gone=$((($(date +%s%N) - t0) / 1000000))
        echo "run-cluster: node 1's key left etcd ${gone} ms after the fault (TTL $ttl s)"
    else
        echo "run-cluster: FAIL: node 1's key still in etcd $((ttl + 1)) s after the fault"
        status=1
    fi
    if [ "$kill_mode" -eq 2 ]; then
        sleep $((2 * ttl - (gone + 999) / 1000 > 0 ? 2 * ttl - (gone + 999) / 1000 : 0))
        kill -CONT "${logic_pid[1]}"
        echo "run-cluster: SIGCONT coho-logic 1"
        for _ in $(seq 100); do
            [ -n "$(etcdctl_ get --keys-only /demo/logic/1)" ] && break
            sleep 0.1
        done
        if [ -z "$(etcdctl_ get --keys-only /demo/logic/1)" ]; then
            echo "run-cluster: FAIL: node 1 did not register again within 10 s of SIGCONT"
            status=1
        elif ! grep -q "lost its lease" "$tmp/logic1.out"; then
            echo "run-cluster: FAIL: node 1 did not notice it lost its lease"
            status=1
        else
            echo "run-cluster: node 1 noticed it lost its lease and registered again"
        fi
    fi
fi
for i in 0 1; do
    wait "${bot_pids[i]}"
    s=$?
    if [ "$s" -ne 0 ]; then
        echo "run-cluster: FAIL: coho-bots of gate $((i + 1)) exited with status $s"
        status=$s
    fi
done
kill "$tail_pid" 2>/dev/null
wait "$tail_pid" 2>/dev/null
for g in 1 2; do
    # A call to a node that died fails fast: never a timeout at the bots.
    if [ "$kill_mode" -eq 1 ] && ! grep -q '"timeout":0,' "$tmp/bots$g.out"; then
        echo "run-cluster: FAIL: bots of gate $g saw timeouts after the kill"
        status=1
    fi
done
if [ "$kill_mode" -eq 4 ]; then
    # summary_num FILE KEY: a number from the SUMMARY line of a coho-bots output.
    summary_num() { grep -m1 '^SUMMARY ' "$1" | grep -oE "\"$2\":[0-9]+" | head -n1 | cut -d: -f2; }
    refused=$(summary_num "$tmp/bots2.out" rebinds_refused)
    playing=$(summary_num "$tmp/bots2.out" failovers_playing)
    echo "run-cluster: bots of gate 2: ${refused:-?} REBINDs refused by gate 1 (status 2), ${playing:-?} of $nbots playing again there"
    if [ "${refused:-0}" -ne "$nbots" ] || [ "${playing:-0}" -ne "$nbots" ]; then
        echo "run-cluster: FAIL: not every bot of gate 2 was refused its REBIND and played again on gate 1"
        status=1
    fi
fi
for node in 1 2 3; do
    if ! grep -q "logged in" "$tmp/logic$node.out"; then
        echo "run-cluster: FAIL: coho-logic $node served no login (not found through etcd?)"
        status=1
    fi
done
# Every server must exit cleanly on SIGTERM (a sanitizer's report makes its status non-zero).
for g in 1 2; do
    [ "$kill_mode" -eq 4 ] && [ "$g" = 2 ] && continue # killed
    stop "coho-gate $g" "${gate_pid[$g]}" || { status=1; tail -n 20 "$tmp/gate$g.out"; }
done
for node in 1 2 3 4; do
    [ -n "${logic_pid[$node]:-}" ] || continue
    [ "$kill_mode" -eq 1 ] && [ "$node" = 1 ] && continue # killed
    stop "coho-logic $node" "${logic_pid[$node]}" || { status=1; tail -n 20 "$tmp/logic$node.out"; }
done
echo "---- coho-bots of gate 2 (summary) ----"
tail -n 12 "$tmp/bots2.out"
echo "---- registered at the end ----"
etcdctl_ get --prefix --keys-only /demo/ | grep . | sed 's/^/    /'
for node in 1 2 3; do
    echo "---- coho-logic $node (last lines) ----"
    tail -n 5 "$tmp/logic$node.out"
done
if [ "$status" -ne 0 ]; then
    echo "run-cluster: FAIL"
    exit "$status"
fi
echo "run-cluster: PASS"
