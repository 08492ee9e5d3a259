/* SPDX-License-Identifier: MIT */
/* The scheduler and coroutines: one scheduler per thread, coroutines addressed by 64-bit ids,
 * a FIFO ready queue, sleeping, joining, names, coroutine-local keys, exit callbacks,
 * cancellation, a live dump and the switch hook of the C++ face.
 *
 * Ids: a coroutine id names a coroutine of one scheduler (slot + generation in that
 * scheduler's pool), never 0. A stale id (the coroutine was reaped) resolves to "gone"
 * (ESRCH), never to a later coroutine. Ids are only meaningful on their scheduler's thread.
 *
 * Threads: a scheduler and its coroutines belong to the thread that created the scheduler.
 * Calling a function marked "scheduler thread" from another thread is a programming error and
 * aborts (COHO_CHECK); other threads use coho_sched_post() (or a channel). coho's blocking calls
 * (coho_sleep_ms, coho_join, ...) fail with EPERM outside a coroutine. */
#ifndef COHO_SCHED_H
#define COHO_SCHED_H

#include "coho/common.h"

COHO_EXTERN_C_BEGIN

typedef struct coho_sched coho_sched_t; /* opaque; one per thread */

/* The scheduler's event backend (coho_sched_opts_t.backend). */
typedef enum coho_backend {
    COHO_BACKEND_DEFAULT = 0,  /* the environment variable COHO_BACKEND ("epoll" or
                                  "io_uring") for whole-program runs, else io_uring */
    COHO_BACKEND_EPOLL = 1,    /* epoll: one epoll_wait per loop iteration, hooked calls try
                                  the syscall and wait for readiness */
    COHO_BACKEND_IO_URING = 2, /* io_uring (the default: the faster one, see
                                  mio_driver/README.md "Backends" for the measurements):
                                  readiness through IORING_OP_POLL_ADD, every change
                                  and the wait in one io_uring_enter per loop iteration; a
                                  hooked recv/send (and read/write, the vectored and msg
                                  forms, accept, connect, a one-fd poll) that would block is
                                  submitted as a ring operation (stats: ring_ops;
                                  $COHO_URING_OPS=off|on|submit). If the kernel refuses
                                  a ring (too old, seccomp, kernel.io_uring_disabled) the
                                  scheduler uses epoll and the log says so once (info). */
} coho_backend_t;

typedef struct coho_sched_opts {
    size_t stack_size;           /* bytes per coroutine stack, default 128 KiB (x4 in
                                    sanitizer builds); rounded up to whole pages */
    unsigned max_coroutines;     /* live coroutines (finished but unjoined included) at most;
                                    0 = no limit */
    unsigned guarded_stacks_max; /* stacks with a PROT_NONE guard page at most, default 8192;
                                    beyond it stacks carry a canary checked at every switch-out
                                    (DESIGN.md "Stacks within vm.max_map_count") */
    size_t guard_size;           /* bytes of guard below a guarded stack, default one page;
                                    raise it for code with frames larger than a page */
    unsigned idle_stacks_max;    /* free stacks kept resident for reuse, default 64; free
                                    stacks beyond it stay resident (and are reused first) until
                                    they have been idle for about a second, then their memory
                                    is returned to the kernel (MADV_DONTNEED; slabs left with
                                    nothing resident are unmapped); these 64 go too once they
                                    have been idle for about 3 s, so an idle scheduler returns
                                    to its size before a burst */
    bool dump_on_sigusr2;        /* SIGUSR2 runs coho_sched_dump() on this scheduler (the signal
                                    is then blocked in this thread and read via signalfd);
                                    default false */
    coho_backend_t backend;      /* event backend, default COHO_BACKEND_DEFAULT (which reads
                                    $COHO_BACKEND); see coho_backend_t */
} coho_sched_opts_t;

/* Fills `o` with the defaults listed above. Any thread. */
COHO_API void coho_sched_opts_init(coho_sched_opts_t *o);

/* Creates the scheduler of the calling thread (NULL `o`: defaults). The first scheduler of the
 * process registers the log's coroutine-id provider and the stack-overflow SIGSEGV handler; each
 * scheduler thread gets an alternate signal stack if it has none. Returns NULL with errno
 * EBUSY (this thread already has a scheduler), EINVAL (bad options) or ENOMEM. */
COHO_API coho_sched_t *coho_sched_create(const coho_sched_opts_t *o);

/* The backend `s` runs on: COHO_BACKEND_EPOLL or COHO_BACKEND_IO_URING (never DEFAULT; EPOLL
 * after a fallback). Any thread. */
COHO_API coho_backend_t coho_sched_backend(const coho_sched_t *s);

/* Runs coroutines until no user (non-daemon) coroutine is left, or until coho_sched_stop().
 * Then every daemon coroutine (after a stop: every coroutine) is cancelled, so its blocking
 * calls fail with ECANCELED, and run waits for them to finish before it returns: a cancelled
 * coroutine must return. Returns at once when no coroutine exists. Scheduler thread, outside
 * coroutines; not re-entrant. Returns 0, or -1 with errno from the event driver (EBADF, ...). */
COHO_API int coho_sched_run(coho_sched_t *s);

/* Requests that coho_sched_run() of `s` wind down as described there. It is final: later
 * spawns fail with ESHUTDOWN. Any thread, inside coroutines too, and async-signal-safe: an
 * atomic store and one write to the scheduler's eventfd, no lock, errno preserved. Calling it
 * from a SIGINT or SIGTERM handler is the supported way to stop on a signal, whichever thread
 * the handler interrupts; `s` must not be being destroyed meanwhile:
 *
 *     static coho_sched_t *g_sched;
 *     static void on_signal(int signo) { (void)signo; coho_sched_stop(g_sched); }
 *
 *     g_sched = coho_sched_create(NULL);
 *     signal(SIGINT, on_signal);      // after g_sched is set; sigaction works too
 *     ...spawn...
 *     coho_sched_run(g_sched);        // parked coroutines see ECANCELED and return
 *     signal(SIGINT, SIG_DFL);        // before coho_sched_destroy(g_sched)
 */
COHO_API void coho_sched_stop(coho_sched_t *s);

/* Destroys `s`, which must not be running. Coroutines still alive (never run to the end) are
 * dropped without running their exit callbacks or key destructors; their stacks are freed.
 * Scheduler thread. NULL is a no-op. */
COHO_API void coho_sched_destroy(coho_sched_t *s);

/* Options of one spawn. */
typedef struct coho_spawn_opts {
    size_t stack_size; /* 0: the scheduler's stack_size */
    const char *name;  /* copied (up to COHO_NAME_MAX - 1 bytes); NULL: no name */
    bool daemon;       /* a daemon does not keep coho_sched_run() running */
    bool detached;     /* reaped as soon as it finishes; cannot be joined */
} coho_spawn_opts_t;

/* Longest coroutine name kept, terminating NUL included. */
#define COHO_NAME_MAX 32

/* Fills `o` with the defaults: scheduler stack size, no name, user coroutine, joinable. */
COHO_API void coho_spawn_opts_init(coho_spawn_opts_t *o);

/* Creates a coroutine that will run fn(arg) on `s`, queued at the back of the ready queue; it
 * first runs once the caller yields, parks or returns to the scheduler. Callable inside or
 * outside coroutines, on the scheduler's thread only (from another thread: COHO_CHECK abort;
 * use coho_sched_post). The coroutine is joinable: it stays (finished) until one coho_join()
 * reaps it, unless it is detached. Returns its id, or 0 with errno ESHUTDOWN (after
 * coho_sched_stop(), or while run() is cancelling the remaining coroutines), EAGAIN
 * (max_coroutines reached), EINVAL (stack size too large) or ENOMEM. */
COHO_API uint64_t coho_spawn(coho_sched_t *s, void (*fn)(void *arg), void *arg);

/* coho_spawn with options (NULL `o`: defaults). */
COHO_API uint64_t coho_spawn_ex(coho_sched_t *s, void (*fn)(void *arg), void *arg,
                                const coho_spawn_opts_t *o);

/* The scheduler of the calling thread (from coho_sched_create to coho_sched_destroy, whether
 * or not coho_sched_run is active), or NULL if the thread has none. Any thread. */
COHO_API coho_sched_t *coho_sched_current(void);

/* The running coroutine's id, 0 outside coroutines. Any thread (async-signal-safe). */
COHO_API uint64_t coho_self(void);

/* Moves the running coroutine to the back of the ready queue and runs the others (and one
 * round of fd events and timers). Outside a coroutine it does nothing. */
COHO_API void coho_yield(void);

/* Parks the running coroutine for at least `ms` milliseconds (CLOCK_MONOTONIC, driver timer).
 * Errors: EPERM outside a coroutine, ECANCELED when the coroutine is cancelled. */
COHO_API int coho_sleep_ms(uint64_t ms);

/* coho_sleep_ms in nanoseconds: parks for at least `ns`, and wakes within one timer tick
 * (100 us) after that while the loop is not overloaded, so sub-millisecond pacing works
 * (usleep and nanosleep inside coroutines use it). 0 parks until the next tick. */
COHO_API int coho_sleep_ns(uint64_t ns);

/* Waits until coroutine `id` has finished, then reaps it (its id becomes stale).
 * `timeout_ms` -1 waits forever, 0 only checks. Inside a coroutine of the same scheduler.
 * Errors: EPERM (outside a coroutine), EDEADLK (`id` is the caller), ESRCH (unknown or already
 * reaped id), EINVAL (detached, or another coroutine already joins it), ETIMEDOUT (not
 * finished in time; it stays joinable), ECANCELED (the caller was cancelled). */
COHO_API int coho_join(uint64_t id, int64_t timeout_ms);

/* Makes coroutine `id` (0: the caller) detached: it is reaped as soon as it finishes (at once
 * if it already has). Scheduler thread. Errors: ESRCH (unknown or reaped), EINVAL (already
 * detached, or a coroutine is joining it). */
COHO_API int coho_detach(uint64_t id);

/* Queues fn(arg) to run on `s`'s thread, on the scheduler's own stack (not in a coroutine; fn
 * may spawn). Any thread; posts from one thread run in order. Errors: ESHUTDOWN (the scheduler
 * is being destroyed), ENOMEM. */
COHO_API int coho_sched_post(coho_sched_t *s, void (*fn)(void *arg), void *arg);

/* Sets the name of coroutine `id` (0: the caller), shown in the dump, log lines of the
 * overflow report and COHO_CHECK messages; copied, cut to COHO_NAME_MAX - 1 bytes; NULL
 * clears it. Scheduler thread. Errors: ESRCH. */
COHO_API int coho_set_name(uint64_t id, const char *name);

/* Copies the name of coroutine `id` (0: the caller) into buf[len] (NUL-terminated, cut to fit;
 * "" when it has none). Scheduler thread. Errors: ESRCH, EINVAL (NULL buf or len 0). */
COHO_API int coho_get_name(uint64_t id, char *buf, size_t len);

/* Marks coroutine `id` (0: the caller) as a daemon or a user coroutine. Scheduler thread.
 * Errors: ESRCH (unknown, reaped or finished). */
COHO_API int coho_set_daemon(uint64_t id, bool daemon);

/* Cancels coroutine `id` (0: the caller): its current blocking call (if parked) and every
 * later one fail with ECANCELED; it is expected to clean up and return. Cancelling a finished
 * coroutine does nothing. Scheduler thread. Errors: ESRCH (unknown or reaped). */
COHO_API int coho_cancel(uint64_t id);

/* True when the running coroutine has been cancelled (false outside coroutines). */
COHO_API bool coho_is_cancelled(void);

/* Registers fn(arg) to run when the running coroutine returns from its entry function;
 * callbacks run last-registered first, on the coroutine's stack, before the key destructors.
 * Errors: EPERM (outside a coroutine), ENOMEM. */
COHO_API int coho_at_exit(void (*fn)(void *arg), void *arg);

/* ---- coroutine-local storage --------------------------------------------------------------- */

/* A key names one value slot in every coroutine (process-wide, like pthread_key_t). */
typedef uint64_t coho_key_t;

/* Most keys alive at once. */
#define COHO_KEYS_MAX 64

/* Creates a key whose slot is NULL in every coroutine. When a coroutine finishes, `dtor`
 * (if not NULL) is called with each non-NULL value it holds (after its exit callbacks; values
 * set by a destructor get further rounds, up to 4). Any thread. Errors: EAGAIN (COHO_KEYS_MAX
 * keys exist), EINVAL (NULL key). */
COHO_API int coho_key_create(coho_key_t *key, void (*dtor)(void *value));

/* Deletes `key`; values still held are forgotten (no destructor runs). Any thread, once no
 * coroutine uses the key. Errors: EINVAL (not a live key). */
COHO_API int coho_key_delete(coho_key_t key);

/* Sets the running coroutine's value of `key`. Errors: EPERM (outside a coroutine), EINVAL
 * (not a live key), ENOMEM. */
COHO_API int coho_key_set(coho_key_t key, void *value);

/* The running coroutine's value of `key`; NULL when unset, for a dead key, or outside a
 * coroutine. */
COHO_API void *coho_key_get(coho_key_t key);

/* ---- diagnostics ------------------------------------------------------------------------- */

/* Writes one info line per coroutine of `s` to the log: id, name, state (ready, running,
 * parked, finished), what a parked one waits on and for how long, its entry function and its
 * stack high-water mark (pages ever touched, from mincore). Scheduler thread, inside or
 * outside coroutines. */
COHO_API void coho_sched_dump(coho_sched_t *s);

/* The lines coho_sched_dump() would log, handed to line(arg, text, len) instead, one call per
 * line (a header line, then one per coroutine): `text` is NUL-terminated, without a newline,
 * valid during the call. `line` must not park or touch `s`'s coroutines. Scheduler thread,
 * inside or outside coroutines (to dump another thread's scheduler, post to it). Errors:
 * EINVAL (NULL s or line). */
COHO_API int coho_sched_dump_to(coho_sched_t *s,
                                void (*line)(void *arg, const char *text, size_t len), void *arg);

/* Coroutine counts of a scheduler, and its activity counters. The first three fields are the
 * counts as they always were; the fields after them were appended later (a program built
 * against the older header reads the counts unchanged once rebuilt). The counters start at 0
 * at coho_sched_create, only grow, and are always on (they cost no instruction on the yield
 * path: bench/RESULTS.md, "scheduler counters"); a rate is the difference of two reads. */
typedef struct coho_sched_stats {
    size_t coroutines; /* held: unfinished, plus finished ones not reaped yet (joinable) */
    size_t unfinished; /* running, ready or parked */
    size_t user;       /* unfinished and not daemons: what keeps coho_sched_run() running */
    size_t ready;      /* coroutines in the ready queue now */
    /* Times a coroutine was given the CPU: switched in from the scheduler's stack or handed it
     * directly by the coroutine before it. A coho_yield() that finds nothing else ready and
     * carries on is counted too (it is a resume, made without a switch). */
    uint64_t switches;
    /* Parks (a coroutine gave up the CPU to wait), by what it waited on. */
    uint64_t parks_io;    /* readiness of an fd (hooked socket calls, poll, select, epoll_wait,
                             an fd's read/write lock) and DNS lookups */
    uint64_t parks_sleep; /* coho_sleep_ms() and the hooked sleeps */
    uint64_t parks_sync;  /* mutex, condition variable, semaphore, wait group, channel */
    uint64_t parks_join;  /* coho_join() */
    uint64_t parks_other; /* anything else (parks of code above libcoho, such as net/'s) */
    /* Parked coroutines made ready again: by the event they waited for, a timeout or a
     * cancellation. */
    uint64_t wakes;
    /* Polls of the scheduler's driver (epoll, cross-thread posts, due timers): when the ready
     * queue ran dry, or at the bounded interval while coroutines kept it busy. */
    uint64_t polls;
    /* Timer callbacks run by the driver: sleeps and wait timeouts ending, the stack decay,
     * timers of code above libcoho on this scheduler's loop. */
    uint64_t timer_fires;
    /* Socket calls completed as io_uring operations (the io_uring backend: a recv or send that
     * would block is submitted to the ring and its completion is the call's result); 0 on
     * epoll. */
    uint64_t ring_ops;
} coho_sched_stats_t;

/* Fills `out` with the current counts and counters of `s` (O(1)). A program checks for leaked
 * coroutines with it: once its own work is joined, `user` counts only the caller (1) and
 * `coroutines` only the caller and daemons. Scheduler thread, inside or outside coroutines.
 * Errors: EINVAL (NULL s or out). */
COHO_API int coho_sched_get_stats(const coho_sched_t *s, coho_sched_stats_t *out);

/* ---- switch hook ------------------------------------------------------------------------- */

/* Per-coroutine state that lives in thread-locals (coho.hpp keeps the C++ runtime's exception
 * globals this way). Every coroutine, and each scheduler's own stack, gets `slot_size` bytes of
 * zeroed storage; around every switch the scheduler calls save(slot of the flow switched out)
 * and then restore(slot of the flow switched in). */
typedef struct coho_switch_hook {
    size_t slot_size;            /* bytes per coroutine, at most COHO_SWITCH_HOOK_SLOT_MAX */
    void (*save)(void *slot);    /* the flow that stops running */
    void (*restore)(void *slot); /* the flow that starts running */
} coho_switch_hook_t;

#define COHO_SWITCH_HOOK_SLOT_MAX 64

/* Installs the process's switch hook (copied); NULL removes it. Installing the same hook again
 * is a no-op. Call it before any scheduler runs coroutines. Any thread. Errors: EINVAL
 * (slot_size too large, NULL save or restore), EBUSY (a different hook is installed). */
COHO_API int coho_set_switch_hook(const coho_switch_hook_t *h);

COHO_EXTERN_C_END

#endif /* COHO_SCHED_H */
