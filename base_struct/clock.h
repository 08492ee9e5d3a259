/* SPDX-License-Identifier: MIT */
/* CLOCK_MONOTONIC readings: the one clock of every coho timer, timeout and deadline
 * (DESIGN.md "Timers"). */
#ifndef COHO_BASE_STRUCT_CLOCK_H
#define COHO_BASE_STRUCT_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Nanoseconds on CLOCK_MONOTONIC. Any thread (a vDSO call, no syscall, on Linux). */
static inline uint64_t coho__mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

/* Milliseconds on CLOCK_MONOTONIC (rounded down). Any thread. */
static inline uint64_t coho__mono_ms(void)
{
    return coho__mono_ns() / UINT64_C(1000000);
}

/* Fills `ts` with the CLOCK_MONOTONIC time `ms` milliseconds from now, for waits that take an
 * absolute deadline (pthread_cond_timedwait on a condition variable set to CLOCK_MONOTONIC). */
static inline void coho__mono_deadline(struct timespec *ts, uint64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += (time_t)(ms / 1000u);
    ts->tv_nsec += (long)(ms % 1000u) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

#endif /* COHO_BASE_STRUCT_CLOCK_H */
