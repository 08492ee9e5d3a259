#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# net/ benchmarks: coho_server (bench/net/net_srv.c) against hand-written epoll baselines, driven
# by one plain-libc epoll load client (bench/net/net_load.c) in a separate process. Prints
# markdown rows for bench/RESULTS.md on stdout, progress on stderr.
#
# Usage: tools/bench-net.sh BUILD_DIR [SCENARIO...]
#   scenarios: echo bcast hold churn chat slow kick emfile wstls  (default: all, in that order)
#   BUILD_DIR holds bench/net_srv, bench/net_load, bench/net_tlsload, bench/bcast_epoll,
#   bench/echo_epoll
#   (make bench-net builds them in build-bench/ and runs every scenario).
# Environment (defaults keep every run short on a shared machine):
#   SECS=5        seconds measured per echo/chat/slow run (after a 0.5 s warm-up)
#   ECHO_CONNS="100 1000"  BCAST_N=10000  BCAST_ROUNDS=20  BCAST_THREADS="1 2"  HOLD_N=(nofile - 256, max 19000)
#   HOLD_SECS=12  HOLD_HB_MS=10000  CHURN_SECS=5  CHAT_N=1000  CHAT_SECS=20  CHAT_TICK_MS=20
#   SLOW_NORMAL=100  SLOW_STALLED="100 1000"  KICK_N=1000  KICK_MS=2000  EMFILE_CLIENTS=2000
#   WSTLS_CONNS=100
set -euo pipefail

build=${1:?usage: tools/bench-net.sh BUILD_DIR [SCENARIO...]}
shift
scenarios=${*:-echo bcast hold churn chat slow kick emfile wstls}
bin="$build/bench"
for p in net_srv net_load net_tlsload bcast_epoll echo_epoll; do
    [ -x "$bin/$p" ] || { echo "bench-net: $bin/$p missing (make bench-net builds it)" >&2; exit 1; }
done

SECS=${SECS:-5}
ECHO_CONNS=${ECHO_CONNS:-100 1000}
ECHO_REPS=${ECHO_REPS:-3}
BCAST_N=${BCAST_N:-10000}
BCAST_ROUNDS=${BCAST_ROUNDS:-20}
BCAST_THREADS=${BCAST_THREADS:-1 2}
HOLD_SECS=${HOLD_SECS:-20}
HOLD_HB_MS=${HOLD_HB_MS:-10000}
CHURN_SECS=${CHURN_SECS:-5}
CHAT_N=${CHAT_N:-1000}
CHAT_SECS=${CHAT_SECS:-20}
CHAT_TICK_MS=${CHAT_TICK_MS:-20}
SLOW_NORMAL=${SLOW_NORMAL:-100}
SLOW_STALLED=${SLOW_STALLED:-100 1000}
KICK_N=${KICK_N:-1000}
KICK_MS=${KICK_MS:-2000}
EMFILE_CLIENTS=${EMFILE_CLIENTS:-2000}
WSTLS_CONNS=${WSTLS_CONNS:-100}

# shellcheck source=tools/lib-bench.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-bench.sh"
raise_nofile "$(ulimit -Hn)" # as many connections per process as allowed: N_max below
n_max=$((nofile - 256))
[ "$n_max" -le 100000 ] || n_max=100000
HOLD_N=${HOLD_N:-$((n_max < 19000 ? n_max : 19000))}
srv_port=""

# start_srv PROGRAM ARGS...: starts a server that prints "port=N" and waits for that line.
start_srv() {
    "$@" >"$work/srv.out" 2>&1 &
    srv_pid=$!
    for _ in $(seq 200); do
        srv_port=$(sed -n 's/^port=\([0-9]*\).*/\1/p' "$work/srv.out" | head -1)
        if [ -n "$srv_port" ] && ss -ltnH "sport = :$srv_port" | grep -q .; then return 0; fi
        kill -0 "$srv_pid" 2>/dev/null || break
        sleep 0.05
    done
    echo "bench-net: $* did not start:" >&2
    cat "$work/srv.out" >&2
    exit 1
}

# A free port for the baselines that take one on the command line.
free_port() {
    local p
    for p in $(seq 21000 29000); do
        if ! ss -ltnH "sport = :$p" | grep -q .; then echo "$p"; return; fi
    done
    echo "bench-net: no free port" >&2
    exit 1
}

# The echo baseline prints "listening"; bcast_epoll prints "port=".
start_epoll_echo() {
    local p
    p=$(free_port)
    "$bin/echo_epoll" "$p" >"$work/srv.out" 2>&1 &
    srv_pid=$!
    srv_port=$p
    for _ in $(seq 200); do
        if ss -ltnH "sport = :$p" | grep -q .; then return 0; fi
        sleep 0.05
    done
    echo "bench-net: echo_epoll did not start" >&2
    exit 1
}

stop_srv() {
    kill -TERM "$srv_pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$srv_pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -KILL "$srv_pid" 2>/dev/null || true
    wait "$srv_pid" 2>/dev/null || true
    srv_pid=""
}

# srv_stats: asks net_srv for its counters (SIGUSR1) and prints the line.
srv_stats() {
    local before
    before=$(grep -c '^stats' "$work/srv.out" || true)
    kill -USR1 "$srv_pid"
    for _ in $(seq 100); do
        [ "$(grep -c '^stats' "$work/srv.out" || true)" -gt "$before" ] && break
        sleep 0.02
    done
    grep '^stats' "$work/srv.out" | tail -1
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
# field NAME LINE: the value of NAME=... in a key=value line.
field() { printf '%s\n' "$2" | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k { print $2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
median() { tr ' ' '\n' | grep . | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }
load() { local load_now; load_now=$(cut -d' ' -f1-3 /proc/loadavg); echo "load ${load_now}"; }

commit=$(git -C "$(dirname "$0")/.." rev-parse --short HEAD 2>/dev/null || echo '?')
dirty=$(git -C "$(dirname "$0")/.." status --porcelain -- net include 2>/dev/null | grep -q . && echo '+local changes' || true)
echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC'). CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) vCPU. Kernel $(uname -r). $(cc --version | head -1). Commit $commit$dirty."
echo "- RLIMIT_NOFILE $nofile (hard), so N_max = min(100000, nofile - 256) = $n_max per process; client and server are separate processes, unpinned; the machine was loaded by parallel builds of other work ($(load) at the start)."
echo

# ---- echo ----------------------------------------------------------------------------------------
bench_echo() {
    echo "### echo: coho_server handler vs hand-written epoll (req/s, same run)"
    echo
    echo "Command per row: \`net_load echo -p PORT -c C -s 32 -d $SECS -w 0.5\` (36-byte frames, ping-pong) against \`echo_epoll PORT\` (bench/echo/, one recv + one send per request), \`net_srv -M echo -t 1\` and \`net_srv -M echo -t 2\` (a coho_server handler: coho_conn_read_frame, coho_conn_send), $ECHO_REPS repetitions rotating the order; the table gives medians, and the ratios are medians of the per-repetition ratios. N_max = $n_max."
    echo
    echo "| C | epoll req/s | coho t=1 req/s | coho t=2 req/s | t=1 / epoll | t=2 / epoll | t=2 / t=1 | p99 us (epoll / t=1 / t=2) | target >= 0.9x |"
    echo "|---|---|---|---|---|---|---|---|---|"
    local c out rep srv order
    for c in $ECHO_CONNS; do
        local r_epoll="" r_t1="" r_t2="" p_epoll="" p_t1="" p_t2="" q1="" q2="" q12=""
        for rep in $(seq "$ECHO_REPS"); do
            case $((rep % 3)) in
            1) order="epoll t1 t2" ;;
            2) order="t1 t2 epoll" ;;
            0) order="t2 epoll t1" ;;
            esac
            local e_epoll=0 e_t1=0 e_t2=0
            for srv in $order; do
                case $srv in
                epoll) start_epoll_echo ;;
                t1) start_srv "$bin/net_srv" -M echo -t 1 ;;
                t2) start_srv "$bin/net_srv" -M echo -t 2 ;;
                esac
                out=$("$bin/net_load" echo -p "$srv_port" -c "$c" -s 32 -d "$SECS" -w 0.5)
                stop_srv
                echo "# rep $rep $srv C=$c: $out" >&2
                eval "e_$srv=$(field rps "$out")"
                eval "r_$srv=\"\$r_$srv $(field rps "$out")\""
                eval "p_$srv=\"\$p_$srv $(field p99_us "$out")\""
            done
            q1="$q1 $(ratio "$e_t1" "$e_epoll")"
            q2="$q2 $(ratio "$e_t2" "$e_epoll")"
            q12="$q12 $(ratio "$e_t2" "$e_t1")"
        done
        local m1 m2
        m1=$(echo "$q1" | median); m2=$(echo "$q2" | median)
        echo "| $c | $(echo "$r_epoll" | median) | $(echo "$r_t1" | median) | $(echo "$r_t2" | median) | $m1 (${q1# }) | $m2 (${q2# }) | $(echo "$q12" | median) | $(echo "$p_epoll" | median) / $(echo "$p_t1" | median) / $(echo "$p_t2" | median) | t=1: $(awk -v r="$m1" 'BEGIN { print (r >= 0.9 ? "met" : "missed") }'), t=2: $(awk -v r="$m2" 'BEGIN { print (r >= 0.9 ? "met" : "missed") }') |"
    done
    echo
}

# ---- bcast ---------------------------------------------------------------------------------------
bench_bcast() {
    echo "### broadcast: one 64-byte frame to $BCAST_N connections"
    echo
    echo "Command: \`net_load bcast -p PORT -c $BCAST_N -r $BCAST_ROUNDS -i 200\` against \`bcast_epoll PORT\` (one loop of send(MSG_DONTWAIT) over the sockets) and \`net_srv -M bcast -t T\` for T in $BCAST_THREADS (coho-tT; coho_group_broadcast: a direct send per member whose queue is empty, the writers for the rest; with T > 1 the members on the other threads get the frame through one post per thread and are sent to there, in parallel). \"All sent\" is the server's time from the broadcast call until every frame was written (coho: frames_out grew by the member count), median / max over $BCAST_ROUNDS rounds; receivers' latency is the client's receive time minus the stamp, over every delivery of every round (the one client thread reads all $BCAST_N sockets, which is part of it). N_max = $n_max."
    echo
    echo "| server | all sent median / max ms | all sent median / epoll's | coho call returned (queued) median ms | receivers p50 / p99 / max ms | missing | target |"
    echo "|---|---|---|---|---|---|---|"
    local srv out sent q med mx p50 p99 pmax miss emed="" ratio
    local t
    for srv in epoll $(for t in $BCAST_THREADS; do echo "coho-t$t"; done); do
        if [ "$srv" = epoll ]; then
            local p
            p=$(free_port)
            start_srv "$bin/bcast_epoll" "$p"
        else
            start_srv "$bin/net_srv" -M bcast -t "${srv#coho-t}"
        fi
        out=$("$bin/net_load" bcast -p "$srv_port" -c "$BCAST_N" -r "$BCAST_ROUNDS" -i 200)
        echo "# $srv: $out" >&2
        sent=$(grep '^round=' "$work/srv.out" | sed 's/.*all_sent_us=\([0-9.]*\).*/\1/' | sort -n)
        q=$(grep '^round=' "$work/srv.out" | sed 's/.*queued_us=\([0-9.]*\).*/\1/' | sort -n)
        stop_srv
        med=$(printf '%s\n' "$sent" | awk '{ a[NR] = $1 } END { printf "%.2f", a[int((NR + 1) / 2)] / 1000 }')
        mx=$(printf '%s\n' "$sent" | awk '{ m = $1 } END { printf "%.2f", m / 1000 }')
        local qm
        qm=$(printf '%s\n' "$q" | awk '{ a[NR] = $1 } END { printf "%.2f", a[int((NR + 1) / 2)] / 1000 }')
        p50=$(awk -v v="$(field p50_us "$out")" 'BEGIN { printf "%.2f", v / 1000 }')
        p99=$(awk -v v="$(field p99_us "$out")" 'BEGIN { printf "%.2f", v / 1000 }')
        pmax=$(awk -v v="$(field max_us "$out")" 'BEGIN { printf "%.2f", v / 1000 }')
        miss=$(field missing "$out")
        local tgt="-"
        if [ "$srv" != epoll ]; then
            tgt="all sent <= 100 ms: $(awk -v v="$mx" 'BEGIN { print (v <= 100 ? "met" : "missed") }'), p99 <= 120 ms: $(awk -v v="$p99" 'BEGIN { print (v <= 120 ? "met" : "missed") }')"
        fi
        if [ "$srv" = epoll ]; then emed=$med; ratio="-"; else ratio=$(awk -v a="$med" -v b="$emed" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }'); fi
        echo "| $srv | $med / $mx | $ratio | $([ "$srv" != epoll ] && echo "$qm" || echo "-") | $p50 / $p99 / $pmax | $miss | $tgt |"
    done
    echo
}

# ---- hold ----------------------------------------------------------------------------------------
bench_hold() {
    echo "### idle: hold $HOLD_N connections with a heartbeat"
    echo
    echo "Command: \`net_srv -M echo -t 1 -n 0\` and \`net_load hold -p PORT -c $HOLD_N -b $HOLD_HB_MS -d $HOLD_SECS\`: every connection sends an 8-byte heartbeat every $HOLD_HB_MS ms (phases spread; the target's 30 s heartbeat is scaled down, i.e. 3x the work), echoed. Server CPU is measured over the steady part ($((HOLD_SECS - HOLD_HB_MS / 1000 - 2)) s, starting once every connection has sent a heartbeat); user RSS per connection = (server VmRSS with the connections - VmRSS before any) / N; kernel socket memory from /proc/net/sockstat (whole machine, client's sockets included). N_max = $n_max; N = $HOLD_N."
    echo
    echo "| N | server CPU % of a core | user RSS per connection | RSS before / with N (KiB) | kernel TCP mem (pages, both ends) | heartbeats / echoed | target |"
    echo "|---|---|---|---|---|---|---|"
    start_srv "$bin/net_srv" -M echo -t 1 -n 0
    local rss0 rss1 t0 t1 out cpu per mem0 mem1 lpid
    local hold_win=$((HOLD_SECS - HOLD_HB_MS / 1000 - 2))
    rss0=$(rss_kib "$srv_pid")
    mem0=$(awk '/^TCP:/ { for (i = 1; i < NF; i++) if ($i == "mem") print $(i + 1) }' /proc/net/sockstat)
    "$bin/net_load" hold -p "$srv_port" -c "$HOLD_N" -b "$HOLD_HB_MS" -d "$HOLD_SECS" >"$work/cli.out" 2>&1 &
    lpid=$!
    for _ in $(seq 1200); do
        grep -q '^connected=' "$work/cli.out" && break
        kill -0 "$lpid" 2>/dev/null || break
        sleep 0.05
    done
    # Steady state: every connection has sent its first heartbeat (its first frame allocates).
    sleep "$(awk -v h="$HOLD_HB_MS" 'BEGIN { print h / 1000 + 1 }')"
    t0=$(cpu_ticks "$srv_pid")
    sleep "$hold_win"
    t1=$(cpu_ticks "$srv_pid")
    rss1=$(rss_kib "$srv_pid")
    mem1=$(awk '/^TCP:/ { for (i = 1; i < NF; i++) if ($i == "mem") print $(i + 1) }' /proc/net/sockstat)
    wait "$lpid" || true
    out=$(grep '^mode=hold' "$work/cli.out" || cat "$work/cli.out")
    echo "# hold: $out" >&2
    stop_srv
    cpu=$(awk -v t="$((t1 - t0))" -v hz="$hz" -v s="$hold_win" 'BEGIN { printf "%.1f", 100 * t / hz / s }')
    per=$(awk -v a="$rss0" -v b="$rss1" -v n="$HOLD_N" 'BEGIN { printf "%.1f KiB", (b - a) / n }')
    echo "| $HOLD_N | $cpu | $per | $rss0 / $rss1 | $mem0 -> $mem1 | $(field heartbeats "$out") / $(field replies "$out") | CPU <= 5 %: $(awk -v v="$cpu" 'BEGIN { print (v <= 5 ? "met" : "missed") }'), RSS <= 16 KiB: $(awk -v a="$rss0" -v b="$rss1" -v n="$HOLD_N" 'BEGIN { print (b - a) / n <= 16 ? "met" : "missed" }') |"
    echo
}

# ---- churn ---------------------------------------------------------------------------------------
bench_churn() {
    echo "### connection churn (backlog 4096)"
    echo
    echo "Command: \`net_srv -M echo -t T\` and \`net_load churn -p PORT -d $CHURN_SECS -k 64\` (64 non-blocking connects in flight; each connected socket is closed at once with SO_LINGER 0, a reset, so the client's ports do not sit in TIME_WAIT). Accepted/s from the server's counter over the same window. N_max = $n_max."
    echo
    echo "| server | client connects/s | server accepted/s | refused | other errors | target >= 10 k/s, 0 refused |"
    echo "|---|---|---|---|---|---|"
    local t out s0 s1 a0 a1
    start_epoll_echo
    out=$("$bin/net_load" churn -p "$srv_port" -d "$CHURN_SECS" -k 64)
    stop_srv
    echo "# churn epoll: $out" >&2
    echo "| epoll (bench/echo/echo_epoll.c, the baseline) | $(field connects_per_s "$out") | - | $(field refused "$out") | $(field other_errors "$out") | - |"
    for t in 1 2; do
        start_srv "$bin/net_srv" -M echo -t "$t" -n 0
        s0=$(srv_stats); a0=$(field accepted "$s0")
        out=$("$bin/net_load" churn -p "$srv_port" -d "$CHURN_SECS" -k 64)
        s1=$(srv_stats); a1=$(field accepted "$s1")
        stop_srv
        echo "# churn t=$t: $out / $s1" >&2
        local cps acc
        cps=$(field connects_per_s "$out")
        acc=$(awk -v a="$((a1 - a0))" -v s="$(field secs "$out")" 'BEGIN { printf "%.0f", a / s }')
        echo "| coho t=$t | $cps | $acc | $(field refused "$out") | $(field other_errors "$out") | $(awk -v v="$acc" -v r="$(field refused "$out")" 'BEGIN { print (v >= 10000 && r == 0 ? "met" : "missed") }') |"
    done
    echo
}

# ---- chat ----------------------------------------------------------------------------------------
syscall_count() { # PID SECONDS: sendmsg+writev+sendto+write calls of PID's threads (perf stat)
    if command -v perf >/dev/null 2>&1; then
        perf stat -x, -o "$work/perf.txt" -e syscalls:sys_enter_sendmsg -e syscalls:sys_enter_writev \
            -e syscalls:sys_enter_sendto -e syscalls:sys_enter_write -p "$1" -- sleep "$2" >/dev/null 2>&1 || true
        awk -F, '$3 ~ /sys_enter/ { s += $1 } END { print s + 0 }' "$work/perf.txt"
    else
        timeout -s INT "$2" strace -c -f -q -e trace=sendmsg,writev,sendto,write -p "$1" -o "$work/strace.txt" >/dev/null 2>&1 || true
        awk '$NF == "total" { print $3 }' "$work/strace.txt"
    fi
}

bench_chat() {
    echo "### world chat: $CHAT_N members, each 1 message / 5 s to all"
    echo
    echo "Command: \`net_srv -M chat -t T -f $CHAT_TICK_MS\` (every frame broadcast to the group; flush tick $CHAT_TICK_MS ms) and \`net_load chat -p PORT -c $CHAT_N -R 0.2 -s 32 -d $CHAT_SECS\` (36-byte stamped frames): $((CHAT_N * CHAT_N / 5)) deliveries/s asked for, run for $CHAT_SECS s instead of 60 s. Write calls (sendmsg + writev + sendto + write of the server's threads) counted by \`perf stat -e syscalls:sys_enter_*\` over 5 s of the run. Queue bound: the default 1 MiB / 4096 frames per connection; queue_full_closes says whether a live member was closed. N_max = $n_max."
    echo
    echo "| server | deliveries/s (asked) | write calls/s | latency p50 / p99 / max ms | queue-full closes | idle kicks | target |"
    echo "|---|---|---|---|---|---|---|"
    local t out st calls lpid
    for t in 1 2; do
        start_srv "$bin/net_srv" -M chat -t "$t" -f "$CHAT_TICK_MS"
        "$bin/net_load" chat -p "$srv_port" -c "$CHAT_N" -R 0.2 -s 32 -d "$CHAT_SECS" >"$work/cli.out" 2>&1 &
        lpid=$!
        sleep 5
        calls=$(syscall_count "$srv_pid" 5)
        wait "$lpid" || true
        out=$(grep '^mode=chat' "$work/cli.out" || cat "$work/cli.out")
        st=$(srv_stats)
        stop_srv
        echo "# chat t=$t: $out / $st" >&2
        local cps
        cps=$(awk -v c="$calls" 'BEGIN { printf "%.0f", c / 5 }')
        echo "| coho t=$t | $(field deliveries_per_s "$out") ($(field expected_per_s "$out")) | $cps | $(awk -v a="$(field p50_us "$out")" -v b="$(field p99_us "$out")" -v c="$(field max_us "$out")" 'BEGIN { printf "%.1f / %.1f / %.1f", a / 1000, b / 1000, c / 1000 }') | $(field queue_full_closes "$st") | $(field idle_kicks "$st") | <= 50 k writes/s: $(awk -v v="$cps" 'BEGIN { print (v <= 50000 ? "met" : "missed") }'), deliveries $(awk -v a="$(field deliveries_per_s "$out")" -v b="$(field expected_per_s "$out")" 'BEGIN { print (a >= 0.95 * b ? "kept up" : "fell behind (missed)") }') |"
    done
    echo
}

# ---- slow consumers ------------------------------------------------------------------------------
bench_slow() {
    echo "### slow consumers"
    echo
    echo "Command: \`net_srv -M tick -t 1 -m 1024 -P 5 -q 262144 -S 65536\` (a 1 KiB stamped frame broadcast to every connection every 5 ms; send queue bound 256 KiB; SO_SNDBUF 64 KiB) and \`net_load slow -p PORT -c $SLOW_NORMAL -z Z -d $SECS -B 4096\` (Z connections with a 4 KiB receive buffer never read). The others' latency is receive time minus the stamp. N_max = $n_max."
    echo
    echo "| stalled | others p50 / p99 / max ms | p99 change vs 0 stalled | stalled closed at their bound | server RSS start / peak (MiB) | target |"
    echo "|---|---|---|---|---|---|"
    local z out st base_p99="" rss0 peak lpid p99
    for z in 0 $SLOW_STALLED; do
        start_srv "$bin/net_srv" -M tick -t 1 -m 1024 -P 5 -q 262144 -S 65536 -n 0
        rss0=$(rss_kib "$srv_pid")
        peak=$rss0
        "$bin/net_load" slow -p "$srv_port" -c "$SLOW_NORMAL" -z "$z" -d "$SECS" -B 4096 >"$work/cli.out" 2>&1 &
        lpid=$!
        while kill -0 "$lpid" 2>/dev/null; do
            local r
            r=$(rss_kib "$srv_pid")
            [ "$r" -le "$peak" ] || peak=$r
            sleep 0.2
        done
        wait "$lpid" || true
        out=$(grep '^mode=slow' "$work/cli.out" || cat "$work/cli.out")
        st=$(srv_stats)
        stop_srv
        echo "# slow z=$z: $out / $st" >&2
        p99=$(awk -v v="$(field p99_us "$out")" 'BEGIN { printf "%.2f", v / 1000 }')
        [ -n "$base_p99" ] || base_p99=$p99
        local d
        d=$(awk -v a="$p99" -v b="$base_p99" 'BEGIN { printf "%+.2f ms", a - b }')
        echo "| $z | $(awk -v a="$(field p50_us "$out")" -v c="$(field max_us "$out")" -v b="$p99" 'BEGIN { printf "%.2f / %s / %.2f", a / 1000, b, c / 1000 }') | $d | $(field queue_full_closes "$st") / $z | $((rss0 / 1024)) / $((peak / 1024)) | $([ "$z" = 0 ] && echo "baseline" || awk -v a="$p99" -v b="$base_p99" -v q="$(field queue_full_closes "$st")" -v z="$z" -v g="$(((peak - rss0) / 1024))" 'BEGIN { printf "p99 +<= 1 ms: %s, all closed: %s, RSS growth <= 256 MiB: %s", (a - b <= 1 ? "met" : "missed"), (q >= z ? "met" : "missed"), (g <= 256 ? "met" : "missed") }') |"
    done
    echo
}

# ---- idle kick -----------------------------------------------------------------------------------
bench_kick() {
    echo "### idle kick accuracy (T scaled to $KICK_MS ms)"
    echo
    echo "Command: \`net_srv -M echo -t 1 -i $KICK_MS\` and \`net_load kick -p PORT -c $KICK_N -T $KICK_MS\` ($KICK_N connections, all accepted first; then each sends one frame, its last activity, and its close is timed from just before that send, so the server's delay in reading the frame counts against it and a close before T is early for sure; "from the echo" times it from the frame's echo instead, after the server's stamp: a lower bound of the lateness). Timer operations per message: by design none (the frame only stamps last_ms; net/README.md \"Idle\"). N_max = $n_max."
    echo
    echo "| N | closed | early | over T p50 / p99 / max ms | later than T + 100 ms | over T from the echo min / max ms | target |"
    echo "|---|---|---|---|---|---|---|"
    local out
    start_srv "$bin/net_srv" -M echo -t 1 -i "$KICK_MS" -n 0
    out=$("$bin/net_load" kick -p "$srv_port" -c "$KICK_N" -T "$KICK_MS")
    stop_srv
    echo "# kick: $out" >&2
    echo "| $KICK_N | $(field closed "$out") | $(field early "$out") | $(awk -v a="$(field over_T_p50_us "$out")" -v b="$(field over_T_p99_us "$out")" -v c="$(field over_T_max_us "$out")" 'BEGIN { printf "%.1f / %.1f / %.1f", a / 1000, b / 1000, c / 1000 }') | $(field late_over_100ms "$out") | $(field from_echo_min_ms "$out") / $(field from_echo_max_ms "$out") | $(awk -v e="$(field early "$out")" -v l="$(field late_over_100ms "$out")" -v n="$(field not_closed "$out")" 'BEGIN { print (e == 0 && l == 0 && n == 0 ? "within [T, T + 100 ms]: met" : "within [T, T + 100 ms]: missed") }') |"
    echo
}

# ---- EMFILE --------------------------------------------------------------------------------------
bench_emfile() {
    echo "### EMFILE: RLIMIT_NOFILE = 1000, $EMFILE_CLIENTS clients"
    echo
    echo "Command: \`prlimit --nofile=1000:1000 net_srv -M echo -t 1 -n 0\` and \`net_load emfile -p PORT -c $EMFILE_CLIENTS -H 1000 -g 2000\` (connects at least 2 ms apart, so a refusal's time is the server's and not a queue of connects; each client connects and sends a ping; it is either echoed or closed by the server; the refusal time runs from connect() returning to the close; then every client leaves and 10 new ones must be echoed)."
    echo
    echo "| clients | echoed | refused | refusal p50 / p99 / max ms | unanswered | after the clients left | target |"
    echo "|---|---|---|---|---|---|---|"
    local out st
    start_srv prlimit --nofile=1000:1000 "$bin/net_srv" -M echo -t 1 -n 0
    out=$("$bin/net_load" emfile -p "$srv_port" -c "$EMFILE_CLIENTS" -H 1000 -g 2000)
    st=$(srv_stats)
    stop_srv
    echo "# emfile: $out / $st" >&2
    echo "| $EMFILE_CLIENTS | $(field echoed "$out") | $(field refused "$out") (rejected_fds $(field rejected_fds "$st")) | $(awk -v a="$(field refusal_p50_us "$out")" -v b="$(field refusal_p99_us "$out")" -v c="$(field refusal_max_us "$out")" 'BEGIN { printf "%.2f / %.2f / %.2f", a / 1000, b / 1000, c / 1000 }') | $(field unanswered "$out") | $(field after_leave_ok "$out") echoed | $(awk -v m="$(field refusal_max_us "$out")" -v u="$(field unanswered "$out")" -v a="$(field after_leave_ok "$out")" 'BEGIN { print (m <= 10000 && u == 0 && a == "10/10" ? "met" : "missed") }') |"
    echo
}

# ---- WebSocket and TLS echo ---------------------------------------------------------------------
bench_wstls() {
    echo "### WebSocket and TLS echo"
    echo
    echo "Command: \`net_tlsload -p PORT -c $WSTLS_CONNS -s 32 -d $SECS [-t] [-W]\` (a coho client: a coroutine per connection over OpenSSL's blocking API; WebSocket frames masked, 32-byte binary messages) against \`net_srv -M echo -t 1\` with \`-W\` (WebSocket), \`-c cert -K key\` (TLS 1.3, a P-256 certificate made for the run) or both (wss); the first row is the same client against the epoll echo baseline. N_max = $n_max."
    echo
    echo "| server | req/s | / coho plain TCP | p50 / p99 us |"
    echo "|---|---|---|---|"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/key.pem" \
        -out "$work/cert.pem" -days 1 -subj /CN=localhost >/dev/null 2>&1
    local name out base="" rps
    for name in epoll tcp ws tls wss; do
        case $name in
        epoll) start_epoll_echo ;;
        tcp) start_srv "$bin/net_srv" -M echo -t 1 ;;
        ws) start_srv "$bin/net_srv" -M echo -t 1 -W ;;
        tls) start_srv "$bin/net_srv" -M echo -t 1 -c "$work/cert.pem" -K "$work/key.pem" ;;
        wss) start_srv "$bin/net_srv" -M echo -t 1 -W -c "$work/cert.pem" -K "$work/key.pem" ;;
        esac
        local flags=""
        case $name in ws) flags="-W" ;; tls) flags="-t" ;; wss) flags="-t -W" ;; esac
        # shellcheck disable=SC2086
        out=$("$bin/net_tlsload" -p "$srv_port" -c "$WSTLS_CONNS" -s 32 -d "$SECS" $flags || true)
        stop_srv
        echo "# $name: $out" >&2
        rps=$(field rps "$out")
        [ "$name" != tcp ] || base=$rps
        echo "| $name | ${rps:-failed} | $([ -n "$base" ] && ratio "${rps:-0}" "$base" || echo -) | $(field p50_us "$out") / $(field p99_us "$out") |"
    done
    echo
}

for s in $scenarios; do
    case "$s" in
    echo | bcast | hold | churn | chat | slow | kick | emfile | wstls) "bench_$s" ;;
    *) echo "bench-net: unknown scenario $s" >&2; exit 2 ;;
    esac
done
echo "- $(load) at the end."
