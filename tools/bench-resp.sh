#!/usr/bin/env bash
# Redis-protocol server comparison: redis-server (no persistence) against resp_coho
# (bench/resp/: blocking style, one coroutine per connection) on both coho backends, each
# driven in the same run by Debian's redis-benchmark (`-t set,get -n N -c C -P 1`: no
# pipelining) over loopback. Prints a markdown table: req/s of SET and GET (median of the
# repetitions), resp_coho / redis-server, and the server CPU time per request (/proc
# utime+stime over the SET and GET runs). Then the server's system calls per request: perf stat
# on the syscall tracepoints (runs of PERF_REQS and 5 x PERF_REQS requests of each test,
# difference / (2 x 4 x PERF_REQS), so connection set-up cancels out), or where perf cannot
# count here, strace -c -f over one run of PERF_REQS (set-up included; strace slows every call
# and so makes event batches larger than in a real run).
#
# Servers: "redis" (redis-server), "coho@BACKEND" (resp_coho with COHO_BACKEND=BACKEND).
# Server pinned to CPU 0 and redis-benchmark to CPU 1, as tools/bench-echo.sh does.
#
# Usage: tools/bench-resp.sh BUILD_DIR
# Environment (defaults): REPS=3 N=100000 CONNS="50 1000" SERVERS="redis coho@epoll coho@io_uring"
#   PIN=1 SYSCALLS=1 PERF_REQS=20000
set -euo pipefail

bin=${1:?usage: tools/bench-resp.sh BUILD_DIR}/bench/resp/resp_coho
REPS=${REPS:-3}
N=${N:-100000}
CONNS=${CONNS:-"50 1000"}
SERVERS=${SERVERS:-"redis coho@epoll coho@io_uring"}
SYSCALLS=${SYSCALLS:-1}
PERF_REQS=${PERF_REQS:-20000}

[ -x "$bin" ] || { echo "bench-resp: $bin not built (cmake --build BUILD_DIR --target resp_coho)" >&2; exit 1; }
for t in redis-server redis-benchmark; do
    command -v "$t" >/dev/null || { echo "bench-resp: $t missing (tools/deps.sh integration)" >&2; exit 1; }
done
# shellcheck source=tools/lib-bench.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-bench.sh"
raise_nofile 8192 # 1000 connections and more

# start_server NAME: starts it on a free loopback port and waits until it answers PING; sets
# srv_pid and port.
start_server() {
    if [ "$1" = redis ]; then
        port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        mkdir -p "$work/redis"
        $pin_srv redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
            --dir "$work/redis" --maxclients 4000 --logfile "$work/srv.log" &
        srv_pid=$!
    else
        env COHO_BACKEND="${1#*@}" $pin_srv "$bin" --listen 127.0.0.1:0 >"$work/srv.out" \
            2>"$work/srv.log" &
        srv_pid=$!
        port=""
    fi
    for _ in $(seq 100); do
        if [ -z "$port" ] && grep -q '^listening tcp' "$work/srv.out" 2>/dev/null; then
            port=$(awk -F: '/^listening tcp/ { print $NF }' "$work/srv.out")
        fi
        if [ -n "$port" ] && [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ]; then return 0; fi
        kill -0 "$srv_pid" 2>/dev/null || break
        sleep 0.05
    done
    echo "bench-resp: $1 did not start:" >&2
    cat "$work/srv.log" "$work/srv.out" >&2 2>/dev/null || true
    exit 1
}

# bench C N: redis-benchmark's CSV lines ("SET","rps",...) for SET and GET, C connections, N
# requests each; fails if the server answered any request with an error.
bench() {
    $pin_cli redis-benchmark -p "$port" -t set,get -n "$2" -c "$1" -P 1 --csv 2>"$work/bench.err" |
        tr -d '"' | awk -F, '$1 == "SET" || $1 == "GET" { print $1, $2 }'
    if grep -qi error "$work/bench.err"; then
        echo "bench-resp: redis-benchmark reported errors:" >&2
        cat "$work/bench.err" >&2
        exit 1
    fi
}

res="$work/results"
: >"$res"
for rep in $(seq "$REPS"); do
    for c in $CONNS; do
        # Rotate the server order per repetition so none always runs first.
        set -- $SERVERS
        for _ in $(seq $(((rep - 1) % $#))); do set -- "${@:2}" "$1"; done
        for srv in "$@"; do
            start_server "$srv"
            t0=$(cpu_ticks "$srv_pid")
            out=$(bench "$c" "$N")
            t1=$(cpu_ticks "$srv_pid")
            stop_server
            cpu_us=$(awk -v t="$((t1 - t0))" -v hz="$hz" -v n="$((2 * N))" \
                'BEGIN { printf "%.2f", t * 1e6 / hz / n }')
            printf '%s\n' "$out" | while read -r test rps; do
                echo "$srv $c $test $rep $rps $cpu_us" >>"$res"
            done
            echo "# rep $rep $srv C=$c: $(echo $out) cpu_us_per_req=$cpu_us" >&2
        done
    done
done

echo
bench_stamp
echo "redis-benchmark -t set,get -n $N -c C -P 1; $REPS repetitions, medians; server pinned: ${pin_srv:-no}, client: ${pin_cli:-no}"
echo "$(redis-server --version | cut -d' ' -f1-3); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
awk -v servers="$SERVERS" "$awk_results"'
{ note(); add("cpu", $6) }
END {
    ns = split(servers, sv, " ")
    ratios("redis") # per-repetition ratio to redis-server (same repetition, same configuration)
    hdr = "| C | test |"; sep = "|---|---|"
    for (j = 1; j <= ns; j++) { hdr = hdr " " sv[j] " req/s |"; sep = sep "---|" }
    for (j = 1; j <= ns; j++) if (sv[j] != "redis") { hdr = hdr " " sv[j] " / redis |"; sep = sep "---|" }
    hdr = hdr " server CPU us/req (" servers ") | target |"; sep = sep "---|---|"
    print hdr; print sep
    for (i = 1; i <= ncfg; i++) {
        split(cfg[i], cs, SUBSEP)
        line = "| " cs[1] " | " cs[2] " |"
        for (j = 1; j <= ns; j++) line = line sprintf(" %.0f |", median(sv[j] SUBSEP cfg[i] SUBSEP "rps"))
        met = ""
        for (j = 1; j <= ns; j++) if (sv[j] != "redis") {
            rm = median(sv[j] SUBSEP cfg[i] SUBSEP "rps") / median("redis" SUBSEP cfg[i] SUBSEP "rps")
            line = line sprintf(" %.2f (per-rep median %.2f) |", rm, median(sv[j] SUBSEP cfg[i] SUBSEP "ratio"))
            met = met (met == "" ? "" : ", ") sv[j] (rm >= 1.2 ? " met" : " missed")
        }
        u = ""
        for (j = 1; j <= ns; j++) u = u (j > 1 ? " / " : "") sprintf("%.1f", median(sv[j] SUBSEP cfg[i] SUBSEP "cpu"))
        print line " " u " | >= 1.2x: " met " |"
    }
}' "$res"

[ "$SYSCALLS" = 1 ] || exit 0

echo
if perf_works; then
    # count SERVER C REQS: the server's system calls over a SET and a GET run of REQS each.
    count() {
        start_server "$1"
        perf_syscalls_start "$srv_pid" "$work/perf.txt"
        bench "$2" "$3" >/dev/null
        perf_syscalls_stop "$work/perf.txt"
        stop_server
    }
    echo "system calls per request (perf stat, (count at 2 x $((5 * PERF_REQS)) - count at 2 x $PERF_REQS requests) / $((8 * PERF_REQS)))"
    echo
    echo "| server | C | total | recvfrom + read | sendto + write | epoll_wait / epoll_pwait2 | io_uring_enter |"
    echo "|---|---|---|---|---|---|---|"
    for c in $CONNS; do
        for srv in $SERVERS; do
            a=$(count "$srv" "$c" "$PERF_REQS")
            b=$(count "$srv" "$c" "$((5 * PERF_REQS))")
            echo "$a $b" | awk -v n="$((8 * PERF_REQS))" -v srv="$srv" -v c="$c" \
                '{ printf "| %s | %s | %.3f | %.3f | %.3f | %.3f | %.3f |\n", srv, c,
                   ($6 - $1) / n, ($7 - $2) / n, ($8 - $3) / n, ($9 - $4) / n, ($10 - $5) / n }'
        done
    done
else
    echo "system calls per request (perf cannot count here: strace -c -f -p, 2 x $PERF_REQS requests; set-up included)"
    echo
    echo "| server | C | total | per syscall |"
    echo "|---|---|---|---|"
    for c in $CONNS; do
        for srv in $SERVERS; do
            start_server "$srv"
            strace_start "$srv_pid" "$work/strace.txt"
            bench "$c" "$PERF_REQS" >/dev/null
            strace_stop
            stop_server
            IFS='|' read -r total per < <(strace_per_req "$work/strace.txt" "$((2 * PERF_REQS))")
            echo "| $srv | $c | $total | $per |"
        done
    done
fi
