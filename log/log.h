/* SPDX-License-Identifier: MIT */
/* Internal log API used by the layers above log/. The public part (levels, open, macros) is in
 * include/coho/log.h. */
#ifndef COHO_LOG_LOG_H
#define COHO_LOG_LOG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <coho/log.h>

/* The lowest level written now (coho_log_get_level). Layers that must decide cheaply whether
 * to format a line at all (the scheduler's park and wake lines) read it with a relaxed load:
 * one load and a compare, no call. Written only by coho_log_open and coho_log_set_level.
 * Hidden: only code linked into libcoho itself may use it (libcoho_net calls
 * coho_log_get_level). */
extern __attribute__((visibility("hidden"))) atomic_int coho__log_level;

/* True when lines of `level` are written now: `level` is not below COHO_LOG_FLOOR (the
 * compile-time floor of the including file) nor below the run-time level. Any thread. */
static inline bool coho__log_is_on(int level)
{
    return level >= COHO_LOG_FLOOR &&
           level >= atomic_load_explicit(&coho__log_level, memory_order_relaxed);
}

/* Registers the function that returns the current coroutine id for the TID-COID field of every
 * line (0 on a scheduler's own stack). Called by the coroutine layer at start-up; NULL
 * restores "always 0". Any thread; the provider must be async-signal-safe and cheap. */
void coho__log_set_id_provider(uint64_t (*current_coid)(void));

/* Installs the log's fatal-signal handlers (SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL; never
 * SIGSEGV in sanitizer builds) once per process; later calls do nothing. coho_log_open() calls
 * it; a layer that chains its own handler in front of the log's (the coroutine layer's
 * stack-overflow handler) calls it first, so that the previous handler it records and calls
 * is the log's. Each handler writes every thread's buffered lines, then restores the handler
 * that was installed before it (SIG_DFL if none) and hands the signal on: it calls a previous
 * function handler directly with the same siginfo and context, or re-raises the signal so the
 * default action (a core dump) happens. Any thread. */
void coho__log_crash_install(void);

/* Writes every thread's buffered lines to the log file (to stderr if no file is open) with
 * async-signal-safe calls only. Meant for fatal-signal handlers: it takes no lock, waits at
 * most about 100 ms for a buffer the writer thread is draining, and runs once per process
 * (later calls return at once), since the process is about to die. */
void coho__log_crash_flush(void);

/* For a fatal-signal handler that has something to say before the process dies (the coroutine
 * layer's stack-overflow report): runs coho__log_crash_flush(), so the lines buffered before
 * come first, then writes `msg` (one line, without the newline) as a line of `level` from
 * `file`:`line` with the calling thread's TID-COID straight to the log file. Async-signal-safe:
 * the time stamp is computed without localtime_r, from the UTC offset the last formatted line
 * saw. Returns true if the line was written; false if no log file is open (only the buffered
 * lines then went to stderr, and the caller writes `msg` where it wants) or the write failed.
 * Any thread. */
bool coho__log_crash_write(int level, const char *file, int line, const char *msg);

/* The number of per-thread buffers allocated so far (exited threads' buffers are reused, so
 * this tracks the peak number of logging threads). For tests. */
size_t coho__log_buffer_count(void);

#endif /* COHO_LOG_LOG_H */
