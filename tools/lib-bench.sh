# SPDX-License-Identifier: MIT
# Shared by the server comparisons tools/bench-echo.sh and tools/bench-resp.sh (sourced, not
# run): where server and client are pinned, a process's CPU time, and its system calls counted
# by perf on the syscall tracepoints.

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
