/* SPDX-License-Identifier: MIT */
/* The coho trace log: leveled, buffered per thread, flushed by a background writer thread,
 * rotated by size, and flushed on fatal signals. One logger per process. Every line reads
 *
 *     YY/MM/DD HH:MM:SS mmm [path/file.c:LINE]-[level]-[TID-COID]message
 *
 * (local time, milliseconds, the kernel thread id and the current coroutine id, 0 outside a
 * coroutine). See log/README.md for the buffering, full-buffer and crash policies. */
#ifndef COHO_LOG_H
#define COHO_LOG_H

#include <stdarg.h>

#include "coho/common.h"

COHO_EXTERN_C_BEGIN

/* Levels, lowest to highest. Plain integers so that COHO_LOG_FLOOR works in #if. */
#define COHO_LOG_TRACE 0
#define COHO_LOG_DEBUG 1
#define COHO_LOG_INFO  2
#define COHO_LOG_WARN  3
#define COHO_LOG_ERROR 4
#define COHO_LOG_FATAL 5

/* The longest line written, prefix and newline included; a longer message is cut and ends in
 * "...". */
#define COHO_LOG_LINE_MAX 4096

typedef struct coho_log_opts {
    /* The log file; required. Opened for append (created 0644). */
    const char *path;
    /* Bytes per file before rotation; 0 = never rotate. Only a regular file rotates (not
     * /dev/null, a FIFO or a tty). */
    uint64_t rotate_size;
    /* Rotated files kept: path.1 (newest) .. path.N; 0..1000 (0: the file is truncated). */
    unsigned files_kept;
    /* Lowest level written, COHO_LOG_TRACE..COHO_LOG_FATAL. */
    int level;
    /* Bytes buffered per thread, 16 KiB..1 GiB, rounded up to a power of two; applies to
     * buffers created after the open. */
    size_t thread_buffer_size;
    /* How stale a buffered line may get: the writer's period while lines are buffered (it
     * sleeps while every buffer is empty). */
    unsigned flush_interval_ms;
    /* How long a call waits for room in a full buffer before it drops the line and counts
     * it; 0 = drop at once, never block. */
    unsigned full_wait_ms;
} coho_log_opts_t;

/* Fills `o` with the defaults: path NULL, rotate_size 64 MiB, files_kept 5, level
 * COHO_LOG_INFO, thread_buffer_size 256 KiB, flush_interval_ms 50, full_wait_ms 100. */
COHO_API void coho_log_opts_init(coho_log_opts_t *o);

/* Opens the process logger on `o->path` (append mode). Lines logged before the first open and
 * after a close go to stderr, one write per line. The writer thread starts with the first
 * buffered line and blocks all signals; an atexit handler writes what is still buffered when
 * the process exits without a close; fatal-signal handlers (SEGV, BUS, ABRT, FPE, ILL; not
 * SEGV in sanitizer builds) are installed on the first open and stay for the process's life.
 * Any thread. Errors: EINVAL (NULL `o`, NULL or empty path, level or files_kept out of range,
 * thread_buffer_size below 16 KiB), EBUSY (already open), or the errno of open(2) (EACCES,
 * ENOENT, ...); each failure also writes a one-line reason to stderr. */
COHO_API int coho_log_open(const coho_log_opts_t *o);

/* Stops the writer, writes every buffered line, and closes the file. Lines logged afterwards
 * go to stderr. Call it once logging threads are quiet: a line logged concurrently may land in
 * the file or on stderr, never both, never lost. Any thread except inside a fatal-signal
 * handler. Errors: EBADF (not open). */
COHO_API int coho_log_close(void);

/* True while a log file is open. Any thread. */
COHO_API bool coho_log_is_open(void);

/* Sets the lowest level written, at run time (it also applies to the stderr fallback).
 * Any thread. Errors: EINVAL (not COHO_LOG_TRACE..COHO_LOG_FATAL). */
COHO_API int coho_log_set_level(int level);

/* The lowest level written now. Any thread. */
COHO_API int coho_log_get_level(void);

/* Writes every line buffered so far, by any thread, to the file (write(2), not fsync) and
 * returns once it is there. Runs on the calling thread; blocks it briefly (inside a coroutine
 * too). Errors: EBADF (not open), or the errno of a failed write (EIO, ENOSPC: those lines are
 * counted as dropped). */
COHO_API int coho_log_flush(void);

/* Lines dropped since the process started (full buffer after full_wait_ms, a failed write,
 * no memory for a thread buffer). Each drop is also reported in the file by a warn line from
 * log/log.c naming how many lines were lost. Any thread. */
COHO_API uint64_t coho_log_dropped_count(void);

/* Formats and buffers one line at `level` with `file`:`line` in its prefix (`file` may be
 * NULL; `fmt` may not); callers use the macros below. A trailing newline in the message is not
 * doubled; embedded newlines are kept. Does nothing if `level` is below the current level or
 * out of range. errno is left as it was, and "%m" formats the caller's errno. Any thread,
 * inside or outside coroutines (it never parks; a full buffer may block the thread for up to
 * full_wait_ms); never from a signal handler. Never fails visibly: see
 * coho_log_dropped_count(). */
__attribute__((format(printf, 4, 5))) COHO_API void coho_log_write(int level, const char *file,
                                                                   int line, const char *fmt, ...);

/* coho_log_write with a va_list. */
COHO_API void coho_log_vwrite(int level, const char *file, int line, const char *fmt, va_list ap);

/* The compile-time floor: calls below it compile to nothing (arguments are not evaluated,
 * formats are still checked). Define it before including coho.h, e.g.
 * -DCOHO_LOG_FLOOR=COHO_LOG_INFO removes coho_log_debug and coho_log_trace. Default: every
 * level is compiled in. The floor only removes trace and debug calls. */
#ifndef COHO_LOG_FLOOR
#    define COHO_LOG_FLOOR COHO_LOG_TRACE
#endif

#define COHO_LOG_AT(level, ...) coho_log_write((level), __FILE__, __LINE__, __VA_ARGS__)
#define COHO_LOG_OFF(level, ...)                                      \
    do {                                                              \
        if (0)                                                        \
            coho_log_write((level), __FILE__, __LINE__, __VA_ARGS__); \
    } while (0)

#if COHO_LOG_FLOOR <= COHO_LOG_TRACE
#    define coho_log_trace(...) COHO_LOG_AT(COHO_LOG_TRACE, __VA_ARGS__)
#else
#    define coho_log_trace(...) COHO_LOG_OFF(COHO_LOG_TRACE, __VA_ARGS__)
#endif
#if COHO_LOG_FLOOR <= COHO_LOG_DEBUG
#    define coho_log_debug(...) COHO_LOG_AT(COHO_LOG_DEBUG, __VA_ARGS__)
#else
#    define coho_log_debug(...) COHO_LOG_OFF(COHO_LOG_DEBUG, __VA_ARGS__)
#endif
/* info and above are never compiled out. coho_log_fatal only logs; COHO_CHECK (log/check.h)
 * is the logging abort. */
#define coho_log_info(...)  COHO_LOG_AT(COHO_LOG_INFO, __VA_ARGS__)
#define coho_log_warn(...)  COHO_LOG_AT(COHO_LOG_WARN, __VA_ARGS__)
#define coho_log_error(...) COHO_LOG_AT(COHO_LOG_ERROR, __VA_ARGS__)
#define coho_log_fatal(...) COHO_LOG_AT(COHO_LOG_FATAL, __VA_ARGS__)

COHO_EXTERN_C_END

#endif /* COHO_LOG_H */
