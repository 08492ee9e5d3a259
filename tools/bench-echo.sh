#!/usr/bin/env bash
# Echo server comparison: the coho server (blocking calls, one coroutine per connection), a
# hand-written level-triggered epoll server, a hand-written multishot io_uring server (uring:
# multishot accept and recv, provided buffer ring, one io_uring_enter per loop) and a
# thread-per-connection server, each driven by the same load client (bench/echo/) over
# loopback. Prints a markdown table: req/s (median of the repetitions), coho / epoll, p99, and
# server CPU time per request (/proc utime+stime).
# With PERF=1 it also counts the server's system calls per request (perf stat on the syscall
# tracepoints, runs of PERF_REQS and 5 x PERF_REQS requests, difference / 4 x PERF_REQS, so the
# connection set-up cancels out); with STRACE=1, by strace -c -f (which slows every call down
# and so makes epoll_wait batches larger than in a real run).
#
# A server named NAME@BACKEND runs echo_NAME with COHO_BACKEND=BACKEND (coho@epoll,
# coho@io_uring: both coho backends in one run), and NAME@BACKEND:OPS also with
# COHO_URING_OPS=OPS (coho@io_uring:off, coho@io_uring:submit: the ring-operation policies
# of mio_driver/README.md side by side). For the uring server, @SETUP sets ECHO_URING_SETUP
# (uring@defer, uring@coop, uring@plain: the ring's set-up flags, bench/echo/echo_uring.c);
# plain `uring` takes the first the kernel accepts (defer on 6.1 and later).
#
# Usage: tools/bench-echo.sh BUILD_DIR
# Environment (defaults): REPS=3 SECS=2 WARM=0.5 CONNS="1 100 1000" SIZES="32 4096"
#   SERVERS="epoll coho thread" PIN=1 PORT=19600 PERF=0 PERF_REQS=20000 STRACE=0 STRACE_REQS=50000
set -euo pipefail

dir=${1:?usage: tools/bench-echo.sh BUILD_DIR}/bench
REPS=${REPS:-3}
SECS=${SECS:-2}
WARM=${WARM:-0.5}
CONNS=${CONNS:-"1 100 1000"}
SIZES=${SIZES:-"32 4096"}
SERVERS=${SERVERS:-"epoll coho thread"}
PORT=${PORT:-19600}
STRACE=${STRACE:-0}
PERF=${PERF:-0}
PERF_REQS=${PERF_REQS:-20000}
STRACE_REQS=${STRACE_REQS:-50000}

for s in $SERVERS client; do
    s=${s%%@*}
    [ -x "$dir/echo_$s" ] || { echo "bench-echo: $dir/echo_$s not built" >&2; exit 1; }
done
# shellcheck source=tools/lib-bench.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-bench.sh"
raise_nofile 8192 # 1000 connections and more

# start_server NAME PORT: starts it and waits until it listens; sets srv_pid.
start_server() {
    local bin=${1%%@*} backend="" ops="" setup=""
    [[ $1 == *@* ]] && backend=${1#*@}
    [[ $backend == *:* ]] && ops=${backend#*:} && backend=${backend%%:*}
    [ "$bin" = uring ] && setup=$backend && backend=""
    env ${backend:+COHO_BACKEND=$backend} ${ops:+COHO_URING_OPS=$ops} \
        ${setup:+ECHO_URING_SETUP=$setup} $pin_srv \
        "$dir/echo_$bin" "$2" >"$work/srv.out" 2>&1 &
    srv_pid=$!
    for _ in $(seq 100); do
        if ss -ltnH "sport = :$2" | grep -q .; then return 0; fi
        kill -0 "$srv_pid" 2>/dev/null || break
        sleep 0.05
    done
    echo "bench-echo: echo_$1 did not start:" >&2
    cat "$work/srv.out" >&2
    exit 1
}

# field NAME LINE: the value of NAME=... in the client's output line.
field() {
    printf '%s\n' "$2" | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k { print $2 }'
}

res="$work/results"
: >"$res"
port=$PORT
for rep in $(seq "$REPS"); do
    for c in $CONNS; do
        for s in $SIZES; do
            # Rotate the server order per repetition so none always runs first.
            set -- $SERVERS
            order=""
            for _ in $(seq $(((rep - 1) % $#))); do set -- "${@:2}" "$1"; done
            for srv in "$@"; do
                port=$((port + 1))
                [ "$port" -lt 19999 ] || port=$PORT
                start_server "$srv" "$port"
                t0=$(cpu_ticks "$srv_pid")
                out=$($pin_cli "$dir/echo_client" -p "$port" -c "$c" -s "$s" -d "$SECS" \
                    -w "$WARM")
                t1=$(cpu_ticks "$srv_pid")
                stop_server
                replies=$(field replies "$out")
                cpu_us=$(awk -v t="$((t1 - t0))" -v hz="$hz" -v n="$replies" \
                    'BEGIN { printf "%.2f", t * 1e6 / hz / n }')
                echo "$srv $c $s $rep $(field rps "$out") $(field p99_us "$out") $cpu_us" >>"$res"
                echo "# rep $rep $srv C=$c S=$s: $out cpu_us_per_req=$cpu_us" >&2
            done
        done
    done
done

echo
bench_stamp
echo "repetitions: $REPS x ${SECS}s (+${WARM}s warm-up); medians; server pinned: ${pin_srv:-no}, client: ${pin_cli:-no}"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
awk -v servers="$SERVERS" "$awk_results"'
{ note(); add("p99", $6); add("cpu", $7) }
END {
    ns = split(servers, sv, " ")
    ratios("epoll") # per-repetition ratio to epoll (same repetition, same configuration)
    hdr = "| C | S |"; sep = "|---|---|"
    for (j = 1; j <= ns; j++) { hdr = hdr " " sv[j] " req/s |"; sep = sep "---|" }
    for (j = 1; j <= ns; j++) if (sv[j] != "epoll") { hdr = hdr " " sv[j] " / epoll |"; sep = sep "---|" }
    hdr = hdr " p99 us (" servers ") | server CPU us/req (" servers ") | target |"; sep = sep "---|---|---|"
    print hdr; print sep
    for (i = 1; i <= ncfg; i++) {
        split(cfg[i], cs, SUBSEP)
        line = "| " cs[1] " | " cs[2] " B |"
        for (j = 1; j <= ns; j++) line = line sprintf(" %.0f |", median(sv[j] SUBSEP cfg[i] SUBSEP "rps"))
        for (j = 1; j <= ns; j++) if (sv[j] != "epoll") {
            rm = median(sv[j] SUBSEP cfg[i] SUBSEP "rps") / median("epoll" SUBSEP cfg[i] SUBSEP "rps")
            line = line sprintf(" %.2f (per-rep median %.2f) |", rm, median(sv[j] SUBSEP cfg[i] SUBSEP "ratio"))
        }
        p = ""; u = ""
        for (j = 1; j <= ns; j++) {
            p = p (j > 1 ? " / " : "") sprintf("%.0f", median(sv[j] SUBSEP cfg[i] SUBSEP "p99"))
            u = u (j > 1 ? " / " : "") sprintf("%.1f", median(sv[j] SUBSEP cfg[i] SUBSEP "cpu"))
        }
        tgt = "-"
        if (cs[1] >= 100 && ("coho" SUBSEP cfg[i] SUBSEP "rps") in vals) {
            rm = median("coho" SUBSEP cfg[i] SUBSEP "rps") / median("epoll" SUBSEP cfg[i] SUBSEP "rps")
            tgt = rm >= 0.9 ? "coho >= 0.9x: met" : "coho >= 0.9x: missed"
        }
        print line " " p " | " u " | " tgt " |"
    }
}' "$res"

# perf_count SERVER C S N: the server's system calls while the client makes N requests, as
# "total recvfrom+read sendto+write epoll_wait+epoll_pwait2 io_uring_enter".
perf_count() {
    port=$((port + 1))
    [ "$port" -lt 19999 ] || port=$PORT
    start_server "$1" "$port"
    perf_syscalls_start "$srv_pid" "$work/perf.txt"
    $pin_cli "$dir/echo_client" -p "$port" -c "$2" -s "$3" -n "$4" >/dev/null
    perf_syscalls_stop "$work/perf.txt"
    stop_server
}

if [ "$PERF" = 1 ]; then
    echo
    echo "system calls per request (perf stat, (count at $((5 * PERF_REQS)) - count at $PERF_REQS requests) / $((4 * PERF_REQS)))"
    echo
    echo "| server | C | S | total | recvfrom + read | sendto + write | epoll_wait / epoll_pwait2 | io_uring_enter |"
    echo "|---|---|---|---|---|---|---|---|"
    for c in $CONNS; do
        for s in $SIZES; do
            for srv in $SERVERS; do
                a=$(perf_count "$srv" "$c" "$s" "$PERF_REQS")
                b=$(perf_count "$srv" "$c" "$s" "$((5 * PERF_REQS))")
                echo "$a $b" | awk -v n="$((4 * PERF_REQS))" -v srv="$srv" -v c="$c" -v s="$s" \
                    '{ printf "| %s | %s | %s B | %.3f | %.3f | %.3f | %.3f | %.3f |\n", srv, c, s,
                       ($6 - $1) / n, ($7 - $2) / n, ($8 - $3) / n, ($9 - $4) / n, ($10 - $5) / n }'
            done
        done
    done
fi

[ "$STRACE" = 1 ] || exit 0

# Syscalls per request: strace attaches to every thread of the running server, the client
# makes STRACE_REQS requests, then strace detaches and prints its summary.
echo
echo "syscalls per request (strace -c -f -p, $STRACE_REQS requests; setup of the connections included)"
echo
echo "| server | C | S | total | per syscall |"
echo "|---|---|---|---|---|"
for c in $CONNS; do
    for s in $SIZES; do
        for srv in $SERVERS; do
            port=$((port + 1))
            [ "$port" -lt 19999 ] || port=$PORT
            start_server "$srv" "$port"
            strace_start "$srv_pid" "$work/strace.txt"
            $pin_cli "$dir/echo_client" -p "$port" -c "$c" -s "$s" -n "$STRACE_REQS" >/dev/null
            strace_stop
            stop_server
            IFS='|' read -r total per < <(strace_per_req "$work/strace.txt" "$STRACE_REQS")
            echo "| $srv | $c | $s B | $total | $per |"
        done
    done
done
