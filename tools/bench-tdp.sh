#!/usr/bin/env bash
# socket_ext benchmark (bench/tdp/): request/response frames of the sock protocol, 1000 requests
# in flight, 32-byte bodies, client and server in separate processes pinned to one core each.
# Runs every configuration REPEAT times (interleaved), takes the run with the median req/s per
# configuration and prints the table of bench/RESULTS.md "socket_ext".
#
# Usage: tools/bench-tdp.sh [BUILD_DIR]     (default build-tdp; needs -DCOHO_BUILD_BENCH=ON)
# Environment: REPEAT (3), WARMUP_MS (1000), DURATION_MS (5000), INFLIGHT (1000), BODY (32),
#              SERVER_CPU (0), CLIENT_CPU (1), ROWS (all: a space-separated subset of the names
#              below), CALLGRIND=1 also counts instructions per request of the socket_ext client
#              and of the socket_ext server,
#              BEFORE=OTHER_BUILD_DIR adds the socket_ext row built from another tree (a
#              before/after comparison in the same run; BEFORE_NAME labels it), COMMIT names the
#              commit in the header line when the tree is not a git checkout, SYSCALLS=1 also
#              counts system calls per request on both sides (perf stat, raw_syscalls:sys_enter),
#              CALLGRIND_OUT=PREFIX keeps the callgrind files (PREFIX.tdp, PREFIX.epoll,
#              PREFIX.server).
set -euo pipefail

build=${1:-build-tdp}
bin=$build/bench
repeat=${REPEAT:-3}
warmup=${WARMUP_MS:-1000}
duration=${DURATION_MS:-5000}
inflight=${INFLIGHT:-1000}
body=${BODY:-32}
scpu=${SERVER_CPU:-0}
ccpu=${CLIENT_CPU:-1}

for p in tdp_client tdp_server tdp_epoll; do
    [ -x "$bin/$p" ] || { echo "bench-tdp: $bin/$p missing (build with -DCOHO_BUILD_BENCH=ON)" >&2; exit 1; }
done

# name | server command | client command (the driver adds --port)
common="--inflight $inflight --body $body --want $body --warmup-ms $warmup --duration-ms $duration"
declare -A server client label
add_row() { label[$1]=$2; server[$1]=$3; client[$1]=$4; }
add_row tdp "socket_ext: 4 pooled connections, server answers in on_req" \
    "$bin/tdp_server --mode tdp" "$bin/tdp_client --mode tdp --conns 4 $common"
add_row tdp_spawn "socket_ext: 4 pooled connections, server spawns a coroutine per request" \
    "$bin/tdp_server --mode tdp --spawn" "$bin/tdp_client --mode tdp --conns 4 $common"
add_row co "coho: 1 connection per request in flight (1000), blocking-style send/recv" \
    "$bin/tdp_server --mode co" "$bin/tdp_client --mode co $common"
add_row epoll4 "raw epoll: 4 connections, pipelined" \
    "$bin/tdp_epoll server" "$bin/tdp_epoll client --conns 4 $common"
add_row epoll1000 "raw epoll: 1000 connections, 1 request each" \
    "$bin/tdp_epoll server" "$bin/tdp_epoll client --conns $inflight $common"
add_row tdp_cli "socket_ext client vs raw epoll server (client side alone)" \
    "$bin/tdp_epoll server" "$bin/tdp_client --mode tdp --conns 4 $common"
add_row tdp_srv "raw epoll client (4 conns, pipelined) vs socket_ext server (server side alone)" \
    "$bin/tdp_server --mode tdp" "$bin/tdp_epoll client --conns 4 $common"
order=(tdp tdp_spawn co epoll4 epoll1000 tdp_cli tdp_srv)
if [ -n "${BEFORE:-}" ]; then
    add_row tdp_before "socket_ext as above, ${BEFORE_NAME:-$BEFORE}" \
        "$BEFORE/bench/tdp_server --mode tdp" "$BEFORE/bench/tdp_client --mode tdp --conns 4 $common"
    order+=(tdp_before)
fi
rows=${ROWS:-${order[*]}}

work=$(mktemp -d)
srv_pid=
cleanup() {
    [ -n "$srv_pid" ] && kill "$srv_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# run_one NAME OUTFILE: one server + client pair; appends the client's RESULT line plus the
# server's CPU time per request (over the client's whole run, warm-up included).
run_one() {
    local name=$1 out=$2 port t0 t1 c0 c1 line
    taskset -c "$scpu" ${server[$name]} >"$work/srv.out" 2>&1 &
    srv_pid=$!
    for _ in $(seq 200); do grep -q '^port' "$work/srv.out" && break; sleep 0.05; done
    port=$(awk '/^port/ {print $2}' "$work/srv.out")
    [ -n "$port" ] || { echo "bench-tdp: server of $name did not start" >&2; cat "$work/srv.out" >&2; exit 1; }
    c0=$(cpu_ticks "$srv_pid"); t0=$(date +%s%N)
    line=$(taskset -c "$ccpu" ${client[$name]} --port "$port" | grep '^RESULT' || true)
    c1=$(cpu_ticks "$srv_pid"); t1=$(date +%s%N)
    kill "$srv_pid"; wait "$srv_pid" 2>/dev/null || true; srv_pid=
    [ -n "$line" ] || { echo "bench-tdp: client of $name failed" >&2; exit 1; }
    local hz; hz=$(getconf CLK_TCK)
    echo "$line server_us_per_req=$(awk -v c=$((c1 - c0)) -v hz="$hz" -v n="$(field "$line" total)" \
        'BEGIN {printf "%.2f", (n > 0) ? 1e6 * c / hz / n : 0}')" >>"$out"
}

echo "bench-tdp: $(date -u '+%F %T UTC'), $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs," \
    "kernel $(uname -r), commit ${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo ?)}," \
    "load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "bench-tdp: server on CPU $scpu, client on CPU $ccpu, $inflight in flight, $body-byte bodies," \
    "${warmup} ms warm-up + ${duration} ms measured, median of $repeat"
for r in $(seq "$repeat"); do
    for name in $rows; do
        run_one "$name" "$work/$name.res"
        echo "  run $r $name: $(tail -1 "$work/$name.res" | grep -o 'rps=[0-9]*')" >&2
    done
done

declare -A med
for name in $rows; do
    # the run with the median req/s
    med[$name]=$(awk '{for (i = 1; i <= NF; i++) if ($i ~ /^rps=/) {split($i, a, "="); print a[2], $0}}' \
        "$work/$name.res" | sort -n | awk '{a[NR] = $0} END {print a[int((NR + 1) / 2)]}' | cut -d' ' -f2-)
done
rps() { [ -n "${med[$1]:-}" ] && field "${med[$1]}" rps || echo 0; }
ratio() { awk -v a="$(rps "$1")" -v b="$(rps "$2")" 'BEGIN {if (a > 0 && b > 0) printf "%.2f", a / b; else print "-"}'; }

echo
echo "| configuration | req/s | p50 | p99 | client CPU per request | server CPU per request | ratio | target |"
echo "|---|---|---|---|---|---|---|---|"
for name in $rows; do
    l=${med[$name]}
    p99=$(field "$l" p99_us)
    case $name in
    tdp | tdp_spawn) rat="$(ratio "$name" epoll4) of raw epoll (4 conns), $(ratio "$name" co) of 1 conn per request"
        tgt=$(awk -v r="$(field "$l" rps)" -v p="$p99" 'BEGIN {print (r >= 150000 && p <= 20000) ? "met" : "missed"}')
        tgt=">= 150 k req/s, p99 <= 20 ms: $tgt" ;;
    co) rat="$(ratio co epoll1000) of raw epoll (1000 conns)"; tgt="-" ;;
    tdp_cli) rat="$(ratio tdp_cli epoll4) of raw epoll (4 conns)"; tgt="-" ;;
    tdp_srv) rat="$(ratio tdp_srv epoll4) of raw epoll (4 conns)"; tgt="-" ;;
    tdp_before) rat="$(ratio tdp_before epoll4) of raw epoll (4 conns); now $(ratio tdp tdp_before)x this"
        tgt=$(awk -v r="$(field "$l" rps)" -v p="$p99" 'BEGIN {print (r >= 150000 && p <= 20000) ? "met" : "missed"}')
        tgt=">= 150 k req/s, p99 <= 20 ms: $tgt" ;;
    *) rat="1 (baseline)"; tgt="-" ;;
    esac
    printf '| %s | %s | %s ms | %s ms | %s us | %s us | %s | %s |\n' "${label[$name]}" \
        "$(awk -v r="$(field "$l" rps)" 'BEGIN {printf "%.0f k", r / 1000}')" \
        "$(awk -v u="$(field "$l" p50_us)" 'BEGIN {printf "%.2f", u / 1000}')" \
        "$(awk -v u="$p99" 'BEGIN {printf "%.2f", u / 1000}')" \
        "$(field "$l" cpu_us_per_req)" "$(field "$l" server_us_per_req)" "$rat" "$tgt"
done

# System calls per request on each side: perf counts raw_syscalls:sys_enter of the client (run
# with --requests N) and of the server (attached for the client's run), for two N; the
# difference cancels connection set-up and start-up.
perf_count() { awk -F, '/raw_syscalls:sys_enter/ {print $1}' "$1"; }
if [ "${SYSCALLS:-0}" = 1 ]; then
    command -v perf >/dev/null || { echo "bench-tdp: perf missing" >&2; exit 1; }
    echo
    echo "| configuration | client syscalls per request | server syscalls per request |"
    echo "|---|---|---|"
    for name in $rows; do
        declare -A cs ss
        for n in 50000 250000; do
            taskset -c "$scpu" ${server[$name]} >"$work/srv.out" 2>&1 &
            srv_pid=$!
            for _ in $(seq 200); do grep -q '^port' "$work/srv.out" && break; sleep 0.05; done
            port=$(awk '/^port/ {print $2}' "$work/srv.out")
            perf stat -x, -e raw_syscalls:sys_enter -p "$srv_pid" -o "$work/perf.srv" &
            perf_pid=$!
            sleep 0.2
            cmd=${client[$name]/--warmup-ms $warmup --duration-ms $duration/--requests $n}
            taskset -c "$ccpu" perf stat -x, -e raw_syscalls:sys_enter -o "$work/perf.cli" \
                $cmd --port "$port" >/dev/null
            kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true
            kill "$srv_pid"; wait "$srv_pid" 2>/dev/null || true; srv_pid=
            cs[$n]=$(perf_count "$work/perf.cli"); ss[$n]=$(perf_count "$work/perf.srv")
        done
        printf '| %s | %s | %s |\n' "${label[$name]}" \
            "$(awk -v a="${cs[50000]}" -v b="${cs[250000]}" 'BEGIN {printf "%.3f", (b - a) / 200000}')" \
            "$(awk -v a="${ss[50000]}" -v b="${ss[250000]}" 'BEGIN {printf "%.3f", (b - a) / 200000}')"
    done
fi

# Instructions per request of the socket_ext client (user space, callgrind): the client counts
# only from the start of its measurement to its last response (CALLGRIND_TOGGLE_COLLECT under
# --collect-atstart=no), in two runs with different request counts against the raw epoll
# server; the difference cancels what is not per request (spawning the workers, closing).
if [ "${CALLGRIND:-0}" = 1 ]; then
    command -v valgrind >/dev/null || { echo "bench-tdp: valgrind missing" >&2; exit 1; }
    taskset -c "$scpu" "$bin/tdp_epoll" server >"$work/srv.out" 2>&1 &
    srv_pid=$!
    for _ in $(seq 200); do grep -q '^port' "$work/srv.out" && break; sleep 0.05; done
    port=$(awk '/^port/ {print $2}' "$work/srv.out")
    echo
    for who in tdp epoll; do
        if [ $who = tdp ]; then cli=("$bin/tdp_client" --mode tdp); else cli=("$bin/tdp_epoll" client); fi
        declare -A ir
        for n in 20000 120000; do
            taskset -c "$ccpu" valgrind --tool=callgrind --collect-atstart=no \
                --callgrind-out-file="$work/cg.$who.$n" "${cli[@]}" --conns 4 \
                --inflight "$inflight" --body "$body" --want "$body" --requests "$n" \
                --port "$port" >/dev/null 2>"$work/cg.$who.$n.log"
            ir[$n]=$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$work/cg.$who.$n.log")
        done
        echo "callgrind: $who client (4 conns), $(( (ir[120000] - ir[20000]) / 100000 ))" \
            "instructions per request (user space; (Ir(120k) - Ir(20k)) / 100k requests)"
        if [ -n "${CALLGRIND_OUT:-}" ]; then cp "$work/cg.$who.120000" "$CALLGRIND_OUT.$who"; fi
    done
    kill "$srv_pid"; wait "$srv_pid" 2>/dev/null || true; srv_pid=
    # The socket_ext server (answering in on_req) under callgrind, the whole process, against
    # the raw epoll client, stopped with SIGTERM after N requests; the difference of two runs
    # cancels start-up and the connections.
    declare -A sir
    for n in 20000 120000; do
        taskset -c "$scpu" valgrind --tool=callgrind --callgrind-out-file="$work/cgs.$n" \
            "$bin/tdp_server" --mode tdp >"$work/srv.out" 2>"$work/cgs.$n.log" &
        srv_pid=$!
        for _ in $(seq 400); do grep -q '^port' "$work/srv.out" && break; sleep 0.05; done
        port=$(awk '/^port/ {print $2}' "$work/srv.out")
        taskset -c "$ccpu" "$bin/tdp_epoll" client --conns 4 --inflight "$inflight" --body "$body" \
            --want "$body" --requests "$n" --port "$port" >/dev/null
        kill "$srv_pid"; wait "$srv_pid" 2>/dev/null || true; srv_pid=
        for _ in $(seq 200); do grep -q 'Collected' "$work/cgs.$n.log" && break; sleep 0.05; done
        sir[$n]=$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$work/cgs.$n.log")
    done
    echo "callgrind: tdp server (on_req answers), $(( (sir[120000] - sir[20000]) / 100000 ))" \
        "instructions per request (user space, whole process; (Ir(120k) - Ir(20k)) / 100k requests)"
    if [ -n "${CALLGRIND_OUT:-}" ]; then cp "$work/cgs.120000" "$CALLGRIND_OUT.server"; fi
fi
