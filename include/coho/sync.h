/* SPDX-License-Identifier: MIT */
/* Coroutine-aware synchronisation: mutex, condition variable, semaphore and wait group (one
 * scheduler's thread each), and the bounded channel (safe across threads and schedulers).
 *
 * Every blocking call parks the calling coroutine, never the thread, and waiters are served in
 * FIFO order. The single-thread primitives are complete types the user embeds (no allocation);
 * their fields are private. The first use on a thread that has a scheduler binds one to that
 * scheduler's thread; using it later from another thread is a COHO_CHECK abort (DESIGN.md
 * "Threads and lifetimes"). A cancelled coroutine's blocking call fails with ECANCELED. */
#ifndef COHO_SYNC_H
#define COHO_SYNC_H

#include "coho/common.h"

COHO_EXTERN_C_BEGIN

struct coho__sync_waiter; /* private: a parked coroutine's wait record, on its own stack */

/* Private: the owner binding and FIFO wait queue every single-thread primitive embeds. */
typedef struct coho__sync_base {
    const void *thread_;             /* private: owning thread's tag; NULL before first use */
    struct coho__sync_waiter *head_; /* private: first waiter (served next) */
    struct coho__sync_waiter *tail_; /* private: last waiter */
    uint32_t magic_;                 /* private: set by init, cleared by destroy */
    uint32_t nwaiters_;              /* private: length of the queue */
} coho__sync_base_t;

/* ---- mutex ---------------------------------------------------------------------------------- */

/* A non-recursive coroutine mutex. Unlock hands it to the first waiter (FIFO, no barging).
 * Fields are private. */
typedef struct coho_mutex {
    coho__sync_base_t base_; /* private */
    uint64_t owner_;         /* private: id of the holding coroutine, 0 when unlocked */
} coho_mutex_t;

/* Static initialiser, equivalent to coho_mutex_init(). */
#define COHO_MUTEX_INITIALIZER                \
    {                                         \
        {NULL, NULL, NULL, 0x636d7478u, 0}, 0 \
    }

/* Initialises `m` (unlocked, unbound). The caller owns the storage. Always returns 0. */
COHO_API int coho_mutex_init(coho_mutex_t *m);

/* Destroys `m`. Returns 0, or -1 with errno EBUSY when it is locked or has waiters (then `m`
 * is left intact). Any thread, once no coroutine uses `m`. */
COHO_API int coho_mutex_destroy(coho_mutex_t *m);

/* Locks `m`, parking the calling coroutine until it is handed the lock. Inside a coroutine.
 * Errors: EPERM outside a coroutine; EDEADLK if the caller already holds `m`; ECANCELED if the
 * coroutine is cancelled while it waits (it does not hold `m` then). */
COHO_API int coho_mutex_lock(coho_mutex_t *m);

/* Locks `m` if it is free and nobody waits for it; never parks. Inside a coroutine.
 * Errors: EBUSY (held, or other coroutines queued first), EPERM outside a coroutine. */
COHO_API int coho_mutex_trylock(coho_mutex_t *m);

/* Unlocks `m`; if coroutines wait, the first of them now owns it and is made ready. Inside a
 * coroutine. Unlocking a mutex the caller does not hold is a programming error: a COHO_CHECK
 * abort naming both coroutines. Errors: EPERM outside a coroutine. */
COHO_API int coho_mutex_unlock(coho_mutex_t *m);

/* ---- condition variable --------------------------------------------------------------------- */

/* A condition variable used with a coho_mutex_t. Fields are private. */
typedef struct coho_cond {
    coho__sync_base_t base_; /* private */
} coho_cond_t;

#define COHO_COND_INITIALIZER                \
    {                                        \
        {                                    \
            NULL, NULL, NULL, 0x63636e64u, 0 \
        }                                    \
    }

/* Initialises `c`. The caller owns the storage. Always returns 0. */
COHO_API int coho_cond_init(coho_cond_t *c);

/* Destroys `c`. Returns 0, or -1 with errno EBUSY when coroutines wait on it. */
COHO_API int coho_cond_destroy(coho_cond_t *c);

/* Atomically unlocks `m` (which the caller must hold) and parks until signalled, then locks
 * `m` again before returning, whatever the outcome. Spurious wake-ups do not happen, but
 * re-check the predicate anyway: another coroutine may run first. Inside a coroutine.
 * Errors: EPERM outside a coroutine or when the caller does not hold `m`; ECANCELED when
 * cancelled (`m` is held again on return). */
COHO_API int coho_cond_wait(coho_cond_t *c, coho_mutex_t *m);

/* coho_cond_wait() with a timeout of `ms` milliseconds (monotonic clock). On ETIMEDOUT `m` is
 * held again, as on every return. A signal that chose this waiter wins over its timeout. */
COHO_API int coho_cond_timedwait_ms(coho_cond_t *c, coho_mutex_t *m, uint64_t ms);

/* Wakes the longest-waiting coroutine, if any. Never parks. On the owning thread (inside a
 * coroutine or not). Always returns 0. */
COHO_API int coho_cond_signal(coho_cond_t *c);

/* Wakes every waiting coroutine (in FIFO order). Never parks. Always returns 0. */
COHO_API int coho_cond_broadcast(coho_cond_t *c);

/* ---- counting semaphore --------------------------------------------------------------------- */

/* A counting semaphore. A post while coroutines wait hands the unit to the first waiter
 * (FIFO). Fields are private. */
typedef struct coho_sem {
    coho__sync_base_t base_; /* private */
    uint64_t value_;         /* private: available units */
} coho_sem_t;

/* Initialises `s` with `value` units. The caller owns the storage. Always returns 0. */
COHO_API int coho_sem_init(coho_sem_t *s, uint64_t value);

/* Destroys `s`. Returns 0, or -1 with errno EBUSY when coroutines wait on it. */
COHO_API int coho_sem_destroy(coho_sem_t *s);

/* Takes one unit, parking until one is available. Inside a coroutine.
 * Errors: EPERM outside a coroutine; ECANCELED. */
COHO_API int coho_sem_wait(coho_sem_t *s);

/* Takes one unit if one is available and nobody waits; never parks. Errors: EAGAIN. Any
 * context on the owning thread. */
COHO_API int coho_sem_trywait(coho_sem_t *s);

/* coho_sem_wait() giving up after `ms` milliseconds: ETIMEDOUT. */
COHO_API int coho_sem_timedwait_ms(coho_sem_t *s, uint64_t ms);

/* Releases one unit (to the first waiter if any). Never parks. On the owning thread (inside a
 * coroutine or not). Errors: EOVERFLOW when the value would exceed UINT64_MAX. */
COHO_API int coho_sem_post(coho_sem_t *s);

/* The number of available units. */
COHO_API uint64_t coho_sem_value(const coho_sem_t *s);

/* ---- wait group ------------------------------------------------------------------------------ */

/* Waits for a counted set of activities to finish (Go's sync.WaitGroup). Fields are private. */
typedef struct coho_wg {
    coho__sync_base_t base_; /* private */
    int64_t count_;          /* private: outstanding activities */
} coho_wg_t;

/* Initialises `wg` with a count of 0. The caller owns the storage. Always returns 0. */
COHO_API int coho_wg_init(coho_wg_t *wg);

/* Destroys `wg`. Returns 0, or -1 with errno EBUSY when coroutines wait on it. */
COHO_API int coho_wg_destroy(coho_wg_t *wg);

/* Adds `delta` (may be negative) to the count; when it reaches 0 every waiter is made ready.
 * A count below 0 is a programming error (COHO_CHECK abort). Never parks. On the owning thread.
 * Always returns 0. */
COHO_API int coho_wg_add(coho_wg_t *wg, int64_t delta);

/* coho_wg_add(wg, -1). */
COHO_API int coho_wg_done(coho_wg_t *wg);

/* Parks until the count is 0 (returns at once if it is). Inside a coroutine.
 * Errors: EPERM outside a coroutine; ECANCELED. */
COHO_API int coho_wg_wait(coho_wg_t *wg);

/* coho_wg_wait() giving up after `ms` milliseconds: ETIMEDOUT. */
COHO_API int coho_wg_timedwait_ms(coho_wg_t *wg, uint64_t ms);

/* ---- bounded channel (any thread) ------------------------------------------------------------ */

/* A bounded FIFO channel of fixed-size elements, copied in and out with memcpy. Safe between
 * coroutines of different schedulers and plain threads: a coroutine parks (woken through its
 * own scheduler), a plain thread blocks on a condition variable. Capacity 0 makes a
 * rendezvous channel: a send completes only when a receiver takes the element. */
typedef struct coho_chan coho_chan_t;

/* Creates a channel of `capacity` elements of `elem_size` bytes (elem_size >= 1). Returns
 * NULL with errno EINVAL (elem_size 0 or capacity * elem_size overflows) or ENOMEM. Any
 * thread. */
COHO_API coho_chan_t *coho_chan_create(size_t elem_size, size_t capacity);

/* Destroys `ch` and drops buffered elements. Returns 0, or -1 with EBUSY while anybody is
 * parked in a send or receive on it (then `ch` is left intact). Any thread. */
COHO_API int coho_chan_destroy(coho_chan_t *ch);

/* Closes `ch`: later sends fail with EPIPE, senders parked now fail with EPIPE (their elements
 * are not delivered), receivers first drain what is buffered, then fail with EPIPE. Wakes
 * every parked receiver and sender. Never parks. Any thread. Returns 0, or -1 with EPIPE when
 * already closed. */
COHO_API int coho_chan_close(coho_chan_t *ch);

/* True once coho_chan_close() was called. Any thread. */
COHO_API bool coho_chan_is_closed(coho_chan_t *ch);

/* Copies `elem_size` bytes from `elem` into the channel, waiting while it is full (for
 * capacity 0: until a receiver takes it). Inside a coroutine (parks) or on a thread without a
 * scheduler (blocks the thread). Errors: EPIPE (closed), ECANCELED, EPERM outside coroutines on
 * a thread that has a scheduler (a post callback, or before/after coho_sched_run: blocking the
 * thread would stall its coroutines; use coho_chan_try_send()). */
COHO_API int coho_chan_send(coho_chan_t *ch, const void *elem);

/* coho_chan_send() that never waits. Errors: EAGAIN (full, or for capacity 0 no receiver
 * waiting), EPIPE. Any context. */
COHO_API int coho_chan_try_send(coho_chan_t *ch, const void *elem);

/* coho_chan_send() giving up after `ms` milliseconds (monotonic clock): ETIMEDOUT. */
COHO_API int coho_chan_timedsend_ms(coho_chan_t *ch, const void *elem, uint64_t ms);

/* Moves the oldest element into `elem` (`elem_size` bytes), waiting while the channel is
 * empty. Same calling context as coho_chan_send(). Errors: EPIPE (closed and drained),
 * ECANCELED, EPERM outside coroutines on a thread that has a scheduler. */
COHO_API int coho_chan_recv(coho_chan_t *ch, void *elem);

/* coho_chan_recv() that never waits. Errors: EAGAIN (empty), EPIPE (closed and drained). Any
 * context. */
COHO_API int coho_chan_try_recv(coho_chan_t *ch, void *elem);

/* coho_chan_recv() giving up after `ms` milliseconds (monotonic clock): ETIMEDOUT. */
COHO_API int coho_chan_timedrecv_ms(coho_chan_t *ch, void *elem, uint64_t ms);

/* The number of buffered elements (a snapshot). Any thread. */
COHO_API size_t coho_chan_count(coho_chan_t *ch);

/* The capacity given to coho_chan_create(). Any thread. */
COHO_API size_t coho_chan_capacity(const coho_chan_t *ch);

COHO_EXTERN_C_END

#endif /* COHO_SYNC_H */
