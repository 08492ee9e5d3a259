# SPDX-License-Identifier: MIT
# Shared by the benchmarks tools/bench-echo.sh, tools/bench-resp.sh and tools/bench-net.sh
# (sourced, not run): the open-file limit, where server and client are pinned, a process's CPU
# time, its system calls counted by perf on the syscall tracepoints or by strace, the scratch
# directory and the server's stop, the header line and the median of the results tables.
#
# Sourcing it makes the scratch directory $work and sets the EXIT trap that kills the server
# still running ($srv_pid, which the script's start-up function sets) and removes $work. The
# script raises the open-file limit itself with raise_nofile, to what it needs.

# raise_nofile N: sets the open-file limit (soft and hard, as `ulimit -n` does) to N, or to the
# hard limit when N cannot be had; sets nofile to the limit in force.
raise_nofile() {
    ulimit -n "$1" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
    nofile=$(ulimit -n)
}

work=$(mktemp -d)
srv_pid=""
cleanup() {
    if [ -n "$srv_pid" ]; then kill "$srv_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# stop_server: kills the server start_server started and waits for it.
stop_server() {
    kill "$srv_pid" 2>/dev/null || true
    wait "$srv_pid" 2>/dev/null || true
    srv_pid=""
}

# bench_stamp: the results' first line, "date: ...; commit: ...".
bench_stamp() {
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit: $(git -C "$(dirname "${BASH_SOURCE[0]}")/.." rev-parse --short HEAD 2>/dev/null || echo '?')"
}

# awk_results: awk functions for the results tables, put in front of an awk program that
# reads the results file, one line per run: "SERVER C X REP REQ/S ..." (X: the size or the
# test). note() keeps a line's req/s; add(name, v) appends v to the values of the line's
# server and configuration under `name`; after the lines, ratios(base) turns each server's
# req/s into ratios to server `base`'s in the same repetition and configuration (values
# "ratio"; needs sv[1..ns], the servers); median(key) is the median of the values vals[key],
# whose keys are SERVER SUBSEP cfg[i] SUBSEP name (cfg[1..ncfg]: "C SUBSEP X" in the order
# first seen).
awk_results='
function median(key,    n, i, j, t, a) {
    n = split(vals[key], a, " ")
    for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function add(name, v,    k) {
    k = $1 SUBSEP $2 SUBSEP $3 SUBSEP name
    vals[k] = vals[k] " " v
}
function note() {
    add("rps", $5)
    rps[$1 SUBSEP $2 SUBSEP $3 SUBSEP $4] = $5
    if (!(($2 SUBSEP $3) in seen)) { seen[$2 SUBSEP $3] = 1; cfg[++ncfg] = $2 SUBSEP $3 }
    reps[$4] = 1
}
function ratios(base,    r, i, j, e, v) {
    for (r in reps) for (i = 1; i <= ncfg; i++) for (j = 1; j <= ns; j++) {
        e = rps[base SUBSEP cfg[i] SUBSEP r]; v = rps[sv[j] SUBSEP cfg[i] SUBSEP r]
        if (e > 0) vals[sv[j] SUBSEP cfg[i] SUBSEP "ratio"] = vals[sv[j] SUBSEP cfg[i] SUBSEP "ratio"] " " v / e
    }
}'

# Server on CPU 0, client on CPU 1 when there are two (PIN=0: let the kernel place them).
if [ "$(nproc)" -ge 2 ] && [ "${PIN:-1}" = 1 ]; then
    pin_srv="taskset -c 0"
    pin_cli="taskset -c 1"
else
    pin_srv=""
    pin_cli=""
fi

# CPU ticks (utime + stime, all threads) of a process; hz ticks make a second.
cpu_ticks() {
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}
hz=$(getconf CLK_TCK)

# perf_syscalls_start PID FILE: counts PID's system calls (all, recvfrom + read, sendto + write,
# epoll_wait + epoll_pwait2, io_uring_enter) into FILE until perf_syscalls_stop; sets perf_pid.
perf_syscalls_start() {
    perf stat -x, -o "$2" -e raw_syscalls:sys_enter,syscalls:sys_enter_recvfrom \
        -e syscalls:sys_enter_sendto,syscalls:sys_enter_epoll_wait \
        -e syscalls:sys_enter_epoll_pwait2,syscalls:sys_enter_io_uring_enter \
        -e syscalls:sys_enter_read,syscalls:sys_enter_write -p "$1" &
    perf_pid=$!
    sleep 0.3
}

# perf_syscalls_stop FILE: ends the count and prints it as
# "total recvfrom+read sendto+write epoll_wait+epoll_pwait2 io_uring_enter".
perf_syscalls_stop() {
    kill -INT "$perf_pid"
    wait "$perf_pid" 2>/dev/null || true
    awk -F, '$3 ~ /sys_enter/ { v[$3] = $1 }
        END { print v["raw_syscalls:sys_enter"] + 0,
              v["syscalls:sys_enter_recvfrom"] + v["syscalls:sys_enter_read"],
              v["syscalls:sys_enter_sendto"] + v["syscalls:sys_enter_write"],
              v["syscalls:sys_enter_epoll_wait"] + v["syscalls:sys_enter_epoll_pwait2"],
              v["syscalls:sys_enter_io_uring_enter"] + 0 }' "$1"
}

# perf_works: whether perf can count a process's system calls here (a kernel with the syscall
# tracepoints, perf_event_paranoid or privileges that allow it).
perf_works() {
    command -v perf >/dev/null || return 1
    perf stat -x, -o /dev/null -e raw_syscalls:sys_enter true 2>/dev/null
}

# strace_start PID FILE: strace -c -f counts the system calls of PID's threads into FILE until
# strace_stop; returns once strace is attached. Sets st_pid.
strace_start() {
    strace -f -c -q -p "$1" -o "$2" &
    st_pid=$!
    for _ in $(seq 100); do
        if [ "$(awk '/TracerPid/ { print $2 }' "/proc/$1/status")" != 0 ]; then break; fi
        sleep 0.05
    done
}

# strace_stop: ends the count strace_start began (strace writes its summary as it detaches).
strace_stop() {
    kill -INT "$st_pid"
    wait "$st_pid" 2>/dev/null || true
}

# strace_per_req FILE N: from the strace -c summary in FILE, the system calls per request over N
# requests as "TOTAL|NAME RATE, NAME RATE, ..." (the calls at 0.005 per request or more).
strace_per_req() {
    awk -v n="$2" '
        /^-/ { d++; next }
        d == 1 && NF >= 5 { calls[$NF] = $4 }
        END {
            line = ""
            for (k in calls) if (calls[k] / n >= 0.005) line = line sprintf("%s %.3f, ", k, calls[k] / n)
            sub(/, $/, "", line)
            t = 0; for (k in calls) t += calls[k]
            printf "%.3f|%s\n", t / n, line
        }' "$1"
}
