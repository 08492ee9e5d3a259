/* SPDX-License-Identifier: MIT */
/* syscall_hook internals: the per-fd state table and the wait engine the hooks share.
 * See syscall_hook/README.md for the semantics table. */
#ifndef COHO_SYSCALL_HOOK_INTERNAL_H
#define COHO_SYSCALL_HOOK_INTERNAL_H

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <coho.h>

#include "base_struct/list.h"
#include "base_struct/sys.h"
#include "coroutine/internal.h"
#include "mio_driver/driver.h"

/* Marks a function that replaces the libc function of the same name. */
#define COHO_HOOK __attribute__((visibility("default")))

/* What an fd is, learnt once when it is adopted. */
enum coho__fd_kind {
    COHO__FD_STREAM = 1, /* SOCK_STREAM socket: the only kind where a short read means drained */
    COHO__FD_DGRAM,      /* SOCK_DGRAM / SOCK_RAW socket */
    COHO__FD_SEQPACKET,  /* SOCK_SEQPACKET socket */
    COHO__FD_PIPE,       /* pipe or fifo */
    COHO__FD_TTY,        /* a terminal */
    COHO__FD_OTHER,      /* eventfd, epoll fd, timerfd, signalfd, pollable character device */
};

enum coho__fd_state {
    COHO__FDS_UNKNOWN = 0, /* never looked at since the number was last (re)used */
    COHO__FDS_ADOPTED,     /* registered with a driver; coroutines park on it */
    COHO__FDS_PASSTHROUGH, /* regular file, directory, or a type epoll cannot watch */
};

/* The user's blocking view of one open file description, shared by dup'ed fds. */
typedef struct coho__ofd {
    atomic_int refs;
    atomic_bool user_nonblock; /* what F_GETFL shows and what the hooks honour */
} coho__ofd_t;

/* A coroutine parked on an fd (lives on the parked coroutine's stack). */
typedef struct coho__fd_waiter {
    coho_list_t link; /* in coho__fd_t.waiters while parked */
    uint64_t co_id;
    uint64_t token;
    unsigned events; /* COHO__EV_READ / COHO__EV_WRITE wanted */
} coho__fd_waiter_t;

/* Per-fd state. Slots are never freed (a table of chunks that only grows), so a pointer to a
 * slot stays valid; `gen` tells tenants of the same fd number apart. Mutated only by the thread
 * of the scheduler that owns the registration, or under the table lock. */
typedef struct coho__fd {
    int fd;
    atomic_uint gen; /* bumped whenever the number is closed or re-adopted */
    uint8_t state;   /* enum coho__fd_state */
    uint8_t kind;    /* enum coho__fd_kind */
    bool managed;    /* coho set O_NONBLOCK on the kernel file: emulate blocking */
    bool keep_mode;  /* fds 0-2, ttys, inherited fds: the kernel mode is the user's */
    bool rd_drained; /* stream: a short read emptied it; skip the next syscall until an edge */
    uint8_t sticky;  /* COHO__EV_RDHUP | COHO__EV_HUP | COHO__EV_ERROR seen (never cleared) */
    coho__ofd_t *ofd;
    int64_t rcvtimeo_ms; /* SO_RCVTIMEO, -1 for none */
    int64_t sndtimeo_ms; /* SO_SNDTIMEO, -1 for none */
    coho_sched_t *owner; /* scheduler whose driver holds `io` */
    coho__driver_t *drv;
    coho__io_t io;
    coho_list_t waiters;   /* coho__fd_waiter_t */
    coho_list_t lock_q[2]; /* coho_fd_lock waiters: [0] read, [1] write */
    uint64_t lock_owner[2];
} coho__fd_t;

/* Converts an internal result (>= 0, or -errno) to the POSIX form. The one place errno is
 * written by the hooks, right before returning. */
static inline ssize_t coho__posix_ret(ssize_t rc)
{
    if (rc < 0) {
        errno = (int)-rc;
        return -1;
    }
    return rc;
}

/* coho__posix_ret for calls that may have made failing syscalls on the way (EAGAIN before a
 * park): on success errno is put back to `saved`, its value when the call began, as libc
 * leaves errno untouched on success. */
static inline ssize_t coho__posix_ret_keep(ssize_t rc, int saved)
{
    errno = rc < 0 ? (int)-rc : saved;
    return rc < 0 ? -1 : rc;
}

/* True when the caller is a coroutine with hooking on. Inline: every hooked call asks. */
static inline bool coho__hook_active(void)
{
    uint32_t *flags = coho__co_flags();

    return flags != NULL && (*flags & COHO__CO_FLAG_NOHOOK) == 0;
}

/* The fd table (fdstate.c): chunks of 1 << COHO__FD_CHUNK_SHIFT slots, allocated on first use
 * and never freed, read without a lock; `coho__fd_limit` slots are addressable (0 until the
 * table is set up). Only fdstate.c writes them. */
#define COHO__FD_CHUNK_SHIFT 10
extern _Atomic(coho__fd_t *) *coho__fd_chunks;
extern unsigned coho__fd_limit;

/* The slot of `fd` if its chunk exists, else NULL. Never allocates. */
static inline coho__fd_t *coho__fd_slot_if_exists(int fd)
{
    coho__fd_t *chunk;

    if (fd < 0 || (unsigned)fd >= coho__fd_limit)
        return NULL;
    chunk = atomic_load_explicit(&coho__fd_chunks[(unsigned)fd >> COHO__FD_CHUNK_SHIFT],
                                 memory_order_acquire);
    return chunk != NULL ? &chunk[(unsigned)fd & ((1u << COHO__FD_CHUNK_SHIFT) - 1)] : NULL;
}

/* The slot of `fd` (created if needed), or NULL for a negative fd or one beyond the table's
 * limit (RLIMIT_NOFILE at start-up, at most 1 << 22). Never adopts. */
coho__fd_t *coho__fd_slot(int fd);

/* The slot of `fd` if it is adopted, else NULL. Never adopts; cheap. */
static inline coho__fd_t *coho__fd_adopted(int fd)
{
    coho__fd_t *f = coho__fd_slot_if_exists(fd);

    return f != NULL && f->state == COHO__FDS_ADOPTED ? f : NULL;
}

/* coho__fd_for_hook for an fd that is not adopted yet (or not in the table). */
coho__fd_t *coho__fd_for_hook_slow(int fd, int *err);

/* For a hooked call inside a coroutine: the adopted slot of `fd`, adopting it now if it was
 * never seen (fstat, kind, O_NONBLOCK, edge-triggered registration). NULL means "pass the call
 * straight to libc" (regular file, bad fd, unwatchable type, or an fd table limit); *err then
 * holds 0 or -EBADF. The adopted case is inline. */
static inline coho__fd_t *coho__fd_for_hook(int fd, int *err)
{
    coho__fd_t *f = coho__fd_slot_if_exists(fd);

    if (f != NULL && f->state == COHO__FDS_ADOPTED) {
        *err = 0;
        return f;
    }
    return coho__fd_for_hook_slow(fd, err);
}

/* Adopts a socket coho just created (socket, socketpair, accept) in a coroutine.
 * `user_nonblock`: the caller asked for SOCK_NONBLOCK. Returns 0 or -errno. */
int coho__fd_adopt_new(int fd, bool user_nonblock);

/* Before closing `fd` (close, dup2/dup3 over it): removes the registration, wakes every parked
 * coroutine with -EBADF, forgets the state. Safe for unknown fds. */
void coho__fd_forget(int fd);

/* After a successful dup of `oldfd` into `newfd`: `newfd` shares the user view of `oldfd`. */
void coho__fd_on_dup(int oldfd, int newfd);

/* Parks the running coroutine until `f` reports one of `events` (COHO__EV_READ/WRITE; error
 * and hang-up always count), `timeout_ms` passes (< 0: never), or the fd is closed.
 * Returns 0, -ETIMEDOUT, -EBADF (closed meanwhile), -ECANCELED. */
int coho__fd_wait(coho__fd_t *f, unsigned events, int64_t timeout_ms);

/* Waits for `events` on `f` from outside a coroutine (a plain thread using a managed fd in its
 * blocking view): real poll with the timeout. Returns 0, -ETIMEDOUT or -errno. */
int coho__fd_wait_thread(int fd, unsigned events, int64_t timeout_ms);

/* The user's O_NONBLOCK view of `f`. */
static inline bool coho__fd_user_nonblock(const coho__fd_t *f)
{
    return f->ofd != NULL && atomic_load_explicit(&f->ofd->user_nonblock, memory_order_relaxed);
}

/* Monotonic milliseconds (fresh reading). */
uint64_t coho__hook_now_ms(void);

/* Remaining budget for a deadline (-1: none), never negative. */
static inline int64_t coho__hook_remaining(int64_t deadline_ms, uint64_t now_ms)
{
    if (deadline_ms < 0)
        return -1;
    return (uint64_t)deadline_ms > now_ms ? (int64_t)((uint64_t)deadline_ms - now_ms) : 0;
}

/* coho__co_block for the hooks: errno is a thread-local that other coroutines change while this
 * one is parked, and a hooked call that succeeds must leave the caller's errno as it was. */
static inline int coho__hook_block(int64_t timeout_ms)
{
    int saved = errno;
    int rc = coho__co_block(timeout_ms);

    errno = saved;
    return rc;
}

/* Parks the running coroutine for `ms` milliseconds (never less). Returns 0 or -ECANCELED. */
int coho__hook_sleep_ms(uint64_t ms);

#endif /* COHO_SYSCALL_HOOK_INTERNAL_H */
