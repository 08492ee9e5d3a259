/* SPDX-License-Identifier: MIT */
/* syscall_hook internals: the per-fd state table and the wait engine the hooks share.
 * See syscall_hook/README.md for the semantics table. */
#ifndef COHO_SYSCALL_HOOK_INTERNAL_H
#define COHO_SYSCALL_HOOK_INTERNAL_H

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/time.h>
#include <sys/types.h>

#include <coho.h>

#include "base_struct/clock.h"
#include "base_struct/err.h"
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

/* The user's blocking view of one open file description, shared by dup'ed fds, and the socket's
 * timeouts (a property of the socket, seen through every dup). Records are never freed: a
 * released one goes to a free list, so a racing reader never touches freed memory. */
typedef struct coho__ofd {
    atomic_int refs;
    atomic_bool user_nonblock;   /* what F_GETFL shows and what the hooks honour */
    _Atomic int64_t rcvtimeo_ms; /* SO_RCVTIMEO, -1 for none */
    _Atomic int64_t sndtimeo_ms; /* SO_SNDTIMEO, -1 for none */
    struct coho__ofd *next_free;
} coho__ofd_t;

/* A coroutine parked on an fd (lives on the parked coroutine's stack). */
typedef struct coho__fd_waiter {
    coho_list_t link; /* in coho__fd_reg_t.waiters while parked */
    uint64_t co_id;
    uint64_t token;
    unsigned events; /* COHO__EV_READ / COHO__EV_WRITE wanted, or COHO__FD_WAIT_RING */
} coho__fd_waiter_t;

/* coho__fd_waiter_t.events of a coroutine waiting for a ring operation's completion
 * (coho__fd_ring_io): readiness never wakes it; a close cancels its operation. */
#define COHO__FD_WAIT_RING (1u << 7)

typedef struct coho__fd coho__fd_t;

/* One scheduler's registration of one tenancy of an fd: an edge-triggered registration in that
 * scheduler's driver and the coroutines of that scheduler parked on it. Every field but `link`
 * belongs to the scheduler's thread; `link` (in the slot's list) is under the table lock.
 * A close on another thread takes the registration off the slot, removes it from the kernel's
 * epoll set and posts its release to the owner, which wakes the waiters with EBADF and frees it:
 * a registration is freed only on its own scheduler's thread. */
typedef struct coho__fd_reg {
    coho__fd_t *f;
    coho__ofd_t *ofd; /* the tenancy's view (f->ofd when made; constant for the tenancy) */
    unsigned gen;     /* the slot generation it was made for */
    uint8_t kind;     /* f->kind, f->keep_mode: constant for the tenancy, kept here for the */
    bool keep_mode;   /* hot path */
    coho_sched_t *sched;
    coho__driver_t *drv;
    coho__io_t io;
    coho_list_t link;      /* in coho__fd_t.regs (table lock) */
    coho_list_t waiters;   /* coho__fd_waiter_t */
    coho_list_t lock_q[2]; /* coho_fd_lock waiters: [0] read, [1] write */
    uint64_t lock_owner[2];
    bool rd_drained; /* stream: a short read emptied it; skip the next syscall until an edge */
    /* The driver's ring operations (COHO__OPS_*) for this stream socket; COHO__OPS_OFF for
     * every other kind, keep-mode fds and the epoll backend. */
    uint8_t ring;
    uint8_t sticky; /* COHO__EV_RDHUP | COHO__EV_HUP | COHO__EV_ERROR | COHO__EV_PRI seen */
    bool released;  /* io stopped and waiters woken; only the memory is left to free */
    /* Taken off its slot by a close on another thread, which removed it from the kernel's epoll
     * set before the real close: its release must not touch the fd number again. Written under
     * the table lock before the release is posted, read by the release. */
    bool kernel_gone;
} coho__fd_reg_t;

/* Per-fd state: what the fd is (its description) and the registrations of the schedulers that
 * wait on it. Slots are never freed (a table of chunks that only grows), so a pointer to a slot
 * stays valid; `gen` tells tenants of the same fd number apart. Fields are written under the
 * table lock and read without it (hence atomic: a plain load on the hot path). */
struct coho__fd {
    int fd;
    atomic_uint gen;       /* bumped whenever the number is closed or re-adopted */
    _Atomic uint8_t state; /* enum coho__fd_state */
    _Atomic uint8_t kind;  /* enum coho__fd_kind */
    atomic_bool managed;   /* coho set O_NONBLOCK on the kernel file: emulate blocking */
    atomic_bool keep_mode; /* fds 0-2, ttys, inherited fds: the kernel mode is the user's */
    _Atomic(coho__ofd_t *) ofd;
    /* The registration of the scheduler that adopted the fd (the hot path's); others are
     * found in `regs`. Set only by the thread of `sched0`, cleared by any. */
    _Atomic(coho_sched_t *) sched0;
    _Atomic(coho__fd_reg_t *) reg0;
    coho_list_t regs; /* coho__fd_reg_t.link, table lock */
    /* To 64 bytes: the hot path's slot address is then a shift, not a multiply by 56. */
    char pad[64 - 56];
};
_Static_assert(sizeof(struct coho__fd) == 64, "an fd slot is 64 bytes");

/* coho__posix_ret (base_struct/err.h) converts an internal result to the POSIX form, right
 * before a hook returns. coho__posix_ret for calls that may have made failing syscalls on the way
 * (EAGAIN before a park): on success errno is put back to `saved`, its value when the call began,
 * as libc leaves errno untouched on success. */
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
 * table is set up, at most COHO__FD_LIMIT_MAX). The chunk array is static, so the hot path's
 * lookup is one load less. Only fdstate.c writes them. */
#define COHO__FD_CHUNK_SHIFT 10
#define COHO__FD_LIMIT_MAX   (1u << 22)
extern _Atomic(coho__fd_t *) coho__fd_chunks[COHO__FD_LIMIT_MAX >> COHO__FD_CHUNK_SHIFT];
extern unsigned coho__fd_limit;

/* The slot of `fd` if its chunk exists, else NULL. Never allocates. */
static inline coho__fd_t *coho__fd_slot_if_exists(int fd)
{
    coho__fd_t *chunk;

    /* The static array covers COHO__FD_LIMIT_MAX; chunks at or beyond coho__fd_limit are never
     * made, so their NULL is the limit check (a negative fd is a huge unsigned one). */
    if ((unsigned)fd >= COHO__FD_LIMIT_MAX)
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

/* The calling thread's scheduler, cached for the hot path (coho__sched_current() is a call into
 * coroutine/): filled on first use, cleared when that scheduler is destroyed. */
extern __thread coho_sched_t *coho__fd_tls_sched __attribute__((tls_model("initial-exec")));

static inline coho_sched_t *coho__fd_cur_sched(void)
{
    coho_sched_t *s = coho__fd_tls_sched;

    if (s == NULL)
        s = coho__fd_tls_sched = coho__sched_current();
    return s;
}

/* coho__fd_for_hook for an fd that is not adopted yet, not in the table, or whose registration
 * for this scheduler is not the slot's first. */
coho__fd_reg_t *coho__fd_for_hook_slow(int fd, int *err);

/* For a hooked call inside a coroutine: this scheduler's registration of `fd`, adopting the fd
 * now if it was never seen (fstat, kind, O_NONBLOCK, edge-triggered registration) and
 * registering it with this scheduler's driver if another scheduler adopted it. NULL means "pass
 * the call straight to libc" (regular file, bad fd, unwatchable type, or an fd table limit);
 * *err then holds 0 or -EBADF. The common case (the adopting scheduler) is inline: the slot's
 * first registration is this scheduler's if `sched0` reads the same before and after it. */
static inline coho__fd_reg_t *coho__fd_for_hook(int fd, int *err)
{
    coho__fd_t *f = coho__fd_slot_if_exists(fd);

    if (f != NULL && f->state == COHO__FDS_ADOPTED) {
        coho_sched_t *s = coho__fd_cur_sched();

        if (f->sched0 == s) {
            coho__fd_reg_t *r = f->reg0;

            if (r != NULL && f->sched0 == s) {
                *err = 0;
                return r;
            }
        }
    }
    return coho__fd_for_hook_slow(fd, err);
}

/* Adopts a socket coho just created (socket, socketpair, accept) in a coroutine, discarding
 * whatever the slot held for an earlier tenant of the number (a close that bypassed the hooks).
 * `user_nonblock`: the caller asked for SOCK_NONBLOCK. `from`: the listening socket's slot for
 * an accepted socket (which inherits its timeouts), else NULL. Returns 0 or -errno. */
int coho__fd_adopt_new(int fd, bool user_nonblock, const coho__fd_t *from);
/* coho__fd_adopt_new for a socket accepted with SOCK_NONBLOCK added (the user's own flags say
 * `user_nonblock`) from `from`, an adopted, managed SOCK_STREAM listener, on a number > 2: the
 * kind and the kernel mode are known, so adoption makes no system call but the registration.
 * Where it does not adopt, the kernel file gets the user's mode back. 0 or -errno. */
int coho__fd_adopt_accepted(int fd, bool user_nonblock, const coho__fd_t *from);

/* Before closing `fd` (close, close_range, fclose, dup2/dup3 over it), from any thread: removes
 * every registration from the kernel's epoll sets, wakes every parked coroutine of every
 * scheduler with -EBADF (this thread's at once, others' through a post to their scheduler) and
 * forgets the state. Never waits for another thread. Safe for unknown fds. */
void coho__fd_forget(int fd);

/* coho__fd_forget for every fd in [first, last] that coho knows. */
void coho__fd_forget_range(unsigned first, unsigned last);

/* The generation of `fd`'s slot (0 for an fd beyond the table): a whole-buffer call that
 * continues after a partial transfer checks it is unchanged, so no byte reaches a later tenant
 * of the number. */
static inline unsigned coho__fd_gen(int fd)
{
    coho__fd_t *f = coho__fd_slot_if_exists(fd);

    return f != NULL ? atomic_load_explicit(&f->gen, memory_order_acquire) : 0;
}

/* After a successful dup of `oldfd` into `newfd`: `newfd` shares the user view of `oldfd`. */
void coho__fd_on_dup(int oldfd, int newfd);

/* Parks the running coroutine until `r` reports one of `events` (COHO__EV_READ/WRITE; error
 * and hang-up always count), `timeout_ms` passes (< 0: never), or the fd is closed.
 * Returns 0, -ETIMEDOUT, -EBADF (closed meanwhile), -ECANCELED. After -EBADF `r` may be freed:
 * the caller must not touch it again. errno is not saved around the park (the scheduler keeps
 * it per coroutine); a hook puts its caller's errno back as it returns. */
int coho__fd_wait(coho__fd_reg_t *r, unsigned events, int64_t timeout_ms);

/* The running coroutine's call `kind` (COHO__OP_RECV / COHO__OP_SEND, `flags`: its MSG_*
 * flags; the other kinds and their `buf2`: driver.h) on `r`'s socket, submitted as a ring
 * operation: parks until its completion, the timeout (< 0: none), cancellation, or a close of the
 * fd. Whatever ends the park, the operation is cancelled (IORING_OP_ASYNC_CANCEL) if still in
 * flight and its completion is awaited before this returns: the kernel never writes into `buf`
 * afterwards. An operation that completed with bytes returns them even when the wait ended
 * otherwise. Returns bytes, the operation's -errno, -ETIMEDOUT, -ECANCELED, -EBADF (then `r` must
 * not be touched again), or -EOPNOTSUPP / -EAGAIN when the call must be made the readiness way (not
 * submitted; or a forked child's ring could not take it again). */
ssize_t coho__fd_ring_io(coho__fd_reg_t *r, int kind, void *buf, size_t len, int flags, void *buf2,
                         int64_t timeout_ms);

/* Waits for `events` on `fd` from outside a coroutine (a plain thread using a managed fd in its
 * blocking view): real poll with the timeout. A signal restarts the wait as SA_RESTART would
 * (when every installed handler has SA_RESTART and `timeout_ms` < 0, as the kernel restarts
 * socket calls without a timeout), else the call fails with EINTR. Returns 0, -ETIMEDOUT or
 * -errno. */
int coho__fd_wait_thread(int fd, unsigned events, int64_t timeout_ms);

/* SO_RCVTIMEO/SO_SNDTIMEO as milliseconds, rounded up; 0 (none) and negative become -1, and a
 * huge tv_sec saturates instead of overflowing. */
int64_t coho__timeval_to_ms(const struct timeval *tv);

/* The user's timeouts of `f` (-1: none). */
static inline int64_t coho__fd_rcvtimeo(const coho__fd_t *f)
{
    coho__ofd_t *o = f->ofd;

    return o != NULL ? atomic_load_explicit(&o->rcvtimeo_ms, memory_order_relaxed) : -1;
}

static inline int64_t coho__fd_sndtimeo(const coho__fd_t *f)
{
    coho__ofd_t *o = f->ofd;

    return o != NULL ? atomic_load_explicit(&o->sndtimeo_ms, memory_order_relaxed) : -1;
}

/* The user's O_NONBLOCK view of `f`. */
static inline bool coho__fd_user_nonblock(const coho__fd_t *f)
{
    coho__ofd_t *o = f->ofd;

    return o != NULL && atomic_load_explicit(&o->user_nonblock, memory_order_relaxed);
}

/* Monotonic milliseconds (fresh reading). */
static inline uint64_t coho__hook_now_ms(void)
{
    return coho__mono_ms();
}

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

/* The same in nanoseconds: wakes within one timer tick (100 us) after `ns`, so usleep(200) and
 * a 200 us nanosleep do not become millisecond sleeps. */
int coho__hook_sleep_ns(uint64_t ns);

#endif /* COHO_SYSCALL_HOOK_INTERNAL_H */
