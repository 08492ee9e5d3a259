#!/usr/bin/env bash
# The game demo (`make game`): starts a throwaway MariaDB (datadir in a temporary directory, a
# free loopback port), two coho-logic nodes, one coho-gate in front of them and coho-bots against
# the gate; prints the bots' live progress and report and the servers' last lines; stops
# everything; exits with the bots' status (0 pass, 3 errors: a lost, duplicated or wrong
# message; 1 also when a logic node's daily reset, shifted by --clock-offset-s to come 3 s after
# the start, did not fire). Programs run in BUILD_DIR, so their logs land in BUILD_DIR/log/. Builds nothing:
# `make game` builds BUILD_DIR first.
#
# Usage: tools/run-game.sh BUILD_DIR [FLAGS...]
#   make game GAME_ARGS="--bots 200 --duration-s 10 --ws"
# FLAGS go to coho-bots (coho-bots --help; later ones win over the defaults below), except:
#   --gate-arg ARG    one more argument for coho-gate (repeatable)
#   --logic-arg ARG   one more argument for both coho-logic nodes (repeatable)
#   --serve-only FILE start MariaDB, the nodes and the gate, write GATE=HOST:PORT, WS=HOST:PORT,
#                     ADMIN=HOST:PORT (with --gate-arg --admin), SECRET=..., GATE_PID=... and
#                     LOGIC_PIDS=... to FILE (shell syntax), then
#                     serve until SIGTERM or SIGINT without running bots (tools/bench-game.sh
#                     drives its own)
# COHO_GAME_GATE_CPUS, COHO_GAME_LOGIC_CPUS and COHO_GAME_BOTS_CPUS (taskset CPU lists, e.g. 0)
# pin the programs.
# With --ws the bots connect to the gate's WebSocket listener.
# The programs default to BUILD_DIR/game/{gate,logic,bots}/coho-*; the environment variables
# COHO_GATE, COHO_LOGIC and COHO_BOTS name other binaries.
set -uo pipefail

die() {
    echo "run-game: $*" >&2
    exit 1
}

[ $# -ge 1 ] || die "usage: $0 BUILD_DIR [FLAGS...]"
[ -d "$1" ] || die "build directory '$1' does not exist"
build=$(cd "$1" && pwd)
shift

gate=${COHO_GATE:-$build/game/gate/coho-gate}
logic=${COHO_LOGIC:-$build/game/logic/coho-logic}
bots=${COHO_BOTS:-$build/game/bots/coho-bots}
gate=$(realpath -m "$gate") logic=$(realpath -m "$logic") bots=$(realpath -m "$bots") # we cd later
for p in "$gate" "$logic" "$bots"; do
    [ -x "$p" ] || die "$p is missing: build it first (make build; game/ needs COHO_BUILD_GAME=ON)"
done
for p in mariadbd mariadb-install-db mariadb python3; do
    command -v "$p" >/dev/null 2>&1 || [ -x "/usr/sbin/$p" ] ||
        die "$p is missing: install it with tools/deps.sh game"
done
mariadbd=$(command -v mariadbd || echo /usr/sbin/mariadbd)

gate_extra=() logic_extra=() bot_args=() ws=0 serve_file=""
while [ $# -gt 0 ]; do
    case "$1" in
    --serve-only)
        [ $# -ge 2 ] || die "$1 needs a file"
        serve_file=$2
        shift 2
        ;;
    --gate-arg | --logic-arg)
        [ $# -ge 2 ] || die "$1 needs a value"
        if [ "$1" = --gate-arg ]; then gate_extra+=("$2"); else logic_extra+=("$2"); fi
        shift 2
        ;;
    --ws)
        ws=1
        bot_args+=("$1")
        shift
        ;;
    *)
        bot_args+=("$1")
        shift
        ;;
    esac
done

# pin NAME: the taskset prefix of COHO_GAME_<NAME>_CPUS, if set.
pin() {
    local v="COHO_GAME_$1_CPUS"
    if [ -n "${!v:-}" ]; then
        command -v taskset >/dev/null 2>&1 || die "$v is set but taskset is missing"
        echo "taskset -c ${!v}"
    fi
}
read -r -a gate_pin <<<"$(pin GATE)"
read -r -a logic_pin <<<"$(pin LOGIC)"
read -r -a bots_pin <<<"$(pin BOTS)"
[ -z "$serve_file" ] || serve_file=$(realpath -m "$serve_file")

tmp=$(mktemp -d /tmp/coho-game.XXXXXX) || die "mktemp failed" # short: unix socket path limit
prog=run-game
# shellcheck source=tools/lib-servers.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-servers.sh"

# ---- MariaDB ----------------------------------------------------------------------------------
secret="game-secret-$RANDOM$RANDOM"
start_mariadb
echo "run-game: mariadbd on 127.0.0.1:$db_port (datadir $tmp/db)"

# ---- two logic nodes, one gate ------------------------------------------------------------------
# The logic nodes' calendar clock is shifted (--clock-offset-s) so that their daily reset (05:00
# local, the default --daily-reset) comes 3 s from now. Each node gets a fresh --state-dir
# saying the previous day's reset was handled, so the reset fires once in every run: at 05:00
# on the node's clock, or at its start if a loaded machine started it later than that.
now=$(date +%s)
reset_at=$(date -d "today 05:00:00" +%s)
[ "$reset_at" -gt "$now" ] || reset_at=$(date -d "tomorrow 05:00:00" +%s)
reset_due=$((now + 3))
clock_offset=$((reset_at - reset_due))
cd "$build" || die "cannot enter $build"
logic_addrs=()
for node in 1 2; do
    mkdir -p "$tmp/logic$node.state"
    echo "coho-boundary v1 last_s=$((reset_at - 86400))" >"$tmp/logic$node.state/daily-reset.boundary"
    "${logic_pin[@]}" "$logic" --listen 127.0.0.1:0 --secret "$secret" --db "127.0.0.1:$db_port" \
        --db-user "$db_user" --db-password "$db_password" --db-name "$db_name" --node-id "$node" \
        --clock-offset-s "$clock_offset" --state-dir "$tmp/logic$node.state" \
        --journal "$tmp/logic$node.journal" "${logic_extra[@]}" >"$tmp/logic$node.out" 2>&1 &
    pid=$!
    pids+=("$pid")
    logic_pids[node]=$pid
    addr=$(wait_listen "coho-logic $node" "$pid" "$tmp/logic$node.out" tcp) || exit 1
    logic_addrs+=("$addr")
    echo "run-game: coho-logic $node on $addr"
done

gate_args=(--listen 127.0.0.1:0 --logic "$(
    IFS=,
    echo "${logic_addrs[*]}"
)" --secret "$secret")
[ "$ws" -eq 1 ] && gate_args+=(--ws-listen 127.0.0.1:0)
"${gate_pin[@]}" "$gate" "${gate_args[@]}" "${gate_extra[@]}" >"$tmp/gate.out" 2>&1 &
gate_pid=$!
pids+=("$gate_pid")
gate_addr=$(wait_listen coho-gate "$gate_pid" "$tmp/gate.out" tcp) || exit 1
echo "run-game: coho-gate on tcp $gate_addr"
bot_gate=$gate_addr
if [ "$ws" -eq 1 ]; then
    bot_gate=$(wait_listen coho-gate "$gate_pid" "$tmp/gate.out" ws) || exit 1
    echo "run-game: coho-gate on ws $bot_gate"
fi

if [ -n "$serve_file" ]; then
    ws_addr="" admin_addr=""
    [ "$ws" -eq 1 ] && ws_addr=$bot_gate
    for a in "${gate_extra[@]}"; do
        if [ "$a" = --admin ]; then
            admin_addr=$(wait_listen coho-gate "$gate_pid" "$tmp/gate.out" admin) || exit 1
        fi
    done
    {
        echo "GATE=$gate_addr"
        echo "WS=$ws_addr"
        echo "SECRET=$secret"
        echo "ADMIN=$admin_addr"
        echo "GATE_PID=$gate_pid"
        echo "LOGIC_PIDS=\"${logic_pids[*]}\""
    } >"$serve_file.tmp" && mv "$serve_file.tmp" "$serve_file"
    echo "run-game: serving (details in $serve_file) until SIGTERM"
    wait "$gate_pid"
    echo "run-game: coho-gate exited with status $?" >&2
    tail -n 30 "$tmp/gate.out" >&2
    exit 1
fi

# ---- the bots ---------------------------------------------------------------------------------
echo "run-game: coho-bots ${bot_args[*]}"
"${bots_pin[@]}" "$bots" --gate "$bot_gate" --secret "$secret" --bots 50 --duration-s 30 --rate 5 "${bot_args[@]}"
bots_status=$?

# ---- the daily reset: due 3 s after the nodes started; waits for it past a short run ----------
resets_ok=1
for node in 1 2; do
    line=""
    for _ in $(seq 150); do
        line=$(grep -m1 "daily reset: boundary" "$tmp/logic$node.out")
        [ -n "$line" ] && break
        [ "$(date +%s)" -gt $((reset_due + 10)) ] && break
        sleep 0.1
    done
    if [ -n "$line" ]; then
        echo "run-game: coho-logic $node: $(sed 's/^.*-\[info\]-\[[0-9-]*\]//' <<<"$line")"
    else
        echo "run-game: coho-logic $node: the daily reset did not fire (due $(date -d "@$reset_due" +%T))"
        resets_ok=0
    fi
done

# ---- stop and show the servers' side --------------------------------------------------------
stop coho-gate "$gate_pid"
for node in 1 2; do
    stop "coho-logic $node" "${logic_pids[node]}"
done
echo
echo "---- coho-gate (last lines) ----"
tail -n 30 "$tmp/gate.out"
for node in 1 2; do
    echo "---- coho-logic $node (last lines) ----"
    tail -n 15 "$tmp/logic$node.out"
done
echo "run-game: logs in $build/log/"
if [ "$bots_status" -ne 0 ]; then
    echo "run-game: FAIL (coho-bots exited with status $bots_status)"
    exit "$bots_status"
fi
if [ "$resets_ok" -ne 1 ]; then
    echo "run-game: FAIL (a logic node's daily reset did not fire)"
    exit 1
fi
echo "run-game: PASS"
