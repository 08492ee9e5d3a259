/* SPDX-License-Identifier: MIT */
/* mio_driver: a callback event driver on epoll, usable on its own (it knows no coroutines).
 * One driver belongs to one thread; every function here is for that thread unless it says
 * "any thread". Internal (coho__) until a user need appears (DESIGN.md "Public or internal").
 *
 * Objects the caller embeds (coho__io_t, coho__timer_t) are borrowed by the driver while
 * active: keep them alive until they are stopped (or, for a one-shot timer, until it fired).
 * Every function returns 0 / >= 0, or -errno. */
#ifndef COHO_MIO_DRIVER_DRIVER_H
#define COHO_MIO_DRIVER_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base_struct/heap.h"
#include "base_struct/list.h"

typedef struct coho__driver coho__driver_t;

/* Poller backends (coho__driver_opts_t.backend; the values of coho_backend_t in coho/sched.h). */
enum {
    COHO__BACKEND_DEFAULT = 0,  /* $COHO_BACKEND ("epoll" or "io_uring"), else io_uring */
    COHO__BACKEND_EPOLL = 1,    /* epoll, edge- or level-triggered registrations */
    COHO__BACKEND_IO_URING = 2, /* io_uring readiness (IORING_OP_POLL_ADD); epoll if refused */
};

typedef struct coho__driver_opts {
    unsigned tick_us;         /* timer wheel tick in microseconds, default 100 */
    int backend;              /* COHO__BACKEND_*, default COHO__BACKEND_DEFAULT */
    unsigned offload_threads; /* offload pool workers, default 2; started on first use */
    unsigned offload_queue;   /* bounded offload queue length, default 1024 */
} coho__driver_opts_t;

void coho__driver_opts_init(coho__driver_opts_t *o);

/* Creates a driver for the calling thread. NULL opts: defaults. Returns NULL with errno set. */
coho__driver_t *coho__driver_create(const coho__driver_opts_t *o);

/* Destroys a driver that is not running. Active io and timers are dropped (not called). Posts
 * are refused from the start of the call; offload jobs already running finish and jobs still
 * queued are dropped (their done() is not called); then every accepted post and completion
 * runs, so nothing accepted is lost. */
void coho__driver_destroy(coho__driver_t *d);

/* Runs until coho__driver_stop(). Returns 0, or -errno on a fatal poller error. */
int coho__driver_run(coho__driver_t *d);

/* One iteration: waits for events at most `timeout_ms` (-1: until the next timer or event;
 * 0: no wait), then dispatches fd events, posts and expired timers. Returns the number of
 * callbacks run, or -errno (-EBUSY when called from inside one of the driver's callbacks). */
int coho__driver_run_once(coho__driver_t *d, int timeout_ms);

/* Makes run() return after the current iteration (if run() is not running, the next run()
 * returns at once). Posts are still accepted and run when the loop runs again. Any thread. */
void coho__driver_stop(coho__driver_t *d);

/* Wakes the loop of `d` if it is asleep, or makes its next wait return at once: one write to
 * the driver's eventfd, no lock, no allocation, errno preserved. Any thread, and
 * async-signal-safe (coho_sched_stop calls it from signal handlers); not concurrently with
 * coho__driver_destroy(d). */
void coho__driver_wake(coho__driver_t *d);

/* Stops the driver for good: from now on posts and offload submissions fail with -ESHUTDOWN,
 * and run() returns. What was accepted before still runs (in the loop, or in destroy). Any
 * thread. */
void coho__driver_shutdown(coho__driver_t *d);

/* The backend in use: COHO__BACKEND_EPOLL or COHO__BACKEND_IO_URING. */
int coho__driver_backend(const coho__driver_t *d);

/* The monotonic time in ms cached at the start of the current iteration. */
uint64_t coho__driver_now_ms(const coho__driver_t *d);

/* Timer callbacks the driver has run since it was created (one-shot and repeating, every
 * firing counted once). Loop thread. */
uint64_t coho__driver_timers_fired(const coho__driver_t *d);

/* Re-reads CLOCK_MONOTONIC into the cache and returns it. */
uint64_t coho__driver_update_now(coho__driver_t *d);

/* For the dump: the fds registered (the driver's own eventfd and signalfd included) and the
 * timers armed. O(highest fd registered so far); the loop's thread. */
void coho__driver_counts(const coho__driver_t *d, size_t *fds, size_t *timers);

/* ---- operations through the io_uring ring (the io_uring backend only) ----
 * A socket call submitted as an SQE (IORING_OP_RECV / IORING_OP_SEND) whose completion runs
 * `cb` once, on the driver's thread, from inside the loop's wait, with `res` set (bytes or
 * -errno). `user_data` is a slot index and a generation: a completion is delivered only to the
 * op whose slot and generation it names. Every SQE queued in a loop iteration goes to the
 * kernel in the iteration's one io_uring_enter. The caller keeps `op` and its buffer alive and
 * untouched until `cb` ran, cancelled or not: the kernel may write into the buffer until then. */
/* RECVMSG/SENDMSG: `buf` is a struct msghdr (its iovecs) that stays the caller's until cb ran;
 * `len` is unused. ACCEPT: `buf` the address, `buf2` its socklen_t, `msg_flags` accept4's flags
 * (res: the new fd). CONNECT: `buf` the address, `len` its length (res: 0); handed to the kernel at
 * once (the connect starts when called, as the syscall's). POLL: a one-shot IORING_OP_POLL_ADD,
 * `msg_flags` the poll events (res: the revents). */
enum {
    COHO__OP_RECV = 1,
    COHO__OP_SEND = 2,
    COHO__OP_RECVMSG = 3,
    COHO__OP_SENDMSG = 4,
    COHO__OP_ACCEPT = 5,
    COHO__OP_CONNECT = 6,
    COHO__OP_POLL = 7,
};
/* COHO_URING_OPS: "off" (no ring operations: the hooks park on readiness), "on" (a call tries
 * the syscall first unless a read drained the socket), "submit" (the default: a would-be
 * blocking write is submitted without a try, a read as with "on"; mio_driver/README.md has the
 * numbers). */
enum { COHO__OPS_OFF = 0, COHO__OPS_ON = 1, COHO__OPS_SUBMIT = 2 };

typedef struct coho__op coho__op_t;
typedef void (*coho__op_fn)(coho__op_t *op);

struct coho__op { /* cb and data are the caller's; res is set before cb runs */
    coho__op_fn cb;
    void *data;
    int32_t res;
    /* driver-private: the request (re-submitted by a forked child) and its user_data */
    uint8_t kind_;
    int fd_;
    void *buf_;
    void *buf2_;
    uint32_t len_;
    int flags_;
    uint64_t ud_;
};

/* What the driver offers: COHO__OPS_OFF (epoll, or COHO_URING_OPS=off), _ON or _SUBMIT. */
int coho__driver_ops_mode(const coho__driver_t *d);

/* Queues `kind` on `fd` (`len` clamped to INT32_MAX: a short transfer). 0, -EOPNOTSUPP (no ring
 * operations on this driver), -EAGAIN (the SQ stays full), -ENOMEM. */
int coho__op_submit(coho__driver_t *d, coho__op_t *op, int kind, int fd, void *buf, size_t len,
                    int msg_flags, void *buf2);

/* Queues an IORING_OP_ASYNC_CANCEL for `op` (submitted, its cb not run yet); `now`: hand it to
 * the kernel at once (a close follows and must find the file's reference dropped). The op's cb
 * still runs once: with -ECANCELED if the cancel won, with its result if the op completed
 * first. Returns 0 or -errno (the op then completes on its own). */
int coho__op_cancel(coho__driver_t *d, coho__op_t *op, bool now);

/* Operations completed through the ring since the driver was created. Loop thread. */
uint64_t coho__driver_ring_ops(const coho__driver_t *d);

/* ---- timers (hierarchical wheel on CLOCK_MONOTONIC; see mio_driver/README.md) ---- */
typedef struct coho__timer coho__timer_t;
typedef void (*coho__timer_fn)(coho__timer_t *t);

struct coho__timer { /* fields private to the driver except data */
    void *data;
    coho__timer_fn cb;
    coho_list_t link;       /* wheel slot or due list */
    coho__heap_node_t heap; /* overflow heap (past the wheel span) */
    uint64_t expire_tick;   /* first tick at or after deadline_ns */
    uint64_t deadline_ns;   /* CLOCK_MONOTONIC ns it is due at */
    uint64_t period_ms;     /* 0: one-shot */
    uint64_t overrun;       /* periods skipped before the current firing */
    uint64_t group;
    coho_list_t group_link;
    coho__driver_t *owner; /* the driver it is armed on, NULL when idle */
    uint32_t state;        /* where it is in the wheel (mio_driver/wheel.h) */
};

/* ---- fd events ---- */
enum {
    COHO__EV_READ = 1u << 0,    /* readable (EPOLLIN) */
    COHO__EV_WRITE = 1u << 1,   /* writable (EPOLLOUT) */
    COHO__EV_ERROR = 1u << 2,   /* EPOLLERR */
    COHO__EV_HUP = 1u << 3,     /* EPOLLHUP */
    COHO__EV_RDHUP = 1u << 4,   /* EPOLLRDHUP: the peer shut down its writing side */
    COHO__EV_TIMEOUT = 1u << 5, /* the registration's timeout expired with no event */
    COHO__EV_PRI = 1u << 6,     /* urgent data (EPOLLPRI; edge-triggered read registrations) */
};
enum {
    COHO__IO_EDGE = 1u << 0, /* edge-triggered registration (EPOLLET); default level */
};

typedef struct coho__io coho__io_t;
/* `events`: the COHO__EV_* bits that happened. */
typedef void (*coho__io_fn)(coho__io_t *io, unsigned events);

struct coho__io { /* fields private to the driver except fd and data */
    int fd;
    void *data;
    coho__io_fn cb;
    unsigned interest;
    unsigned flags;
    int64_t timeout_ms;
    uint64_t gen;
    coho__timer_t timer_; /* driver-private: the registration timeout */
    uint64_t last_ns_;    /* driver-private: when the last event was delivered */
    coho__driver_t *drv_; /* driver-private: the driver it is registered with */
    bool active_;
};

/* Prepares `io` for `fd`; no syscall. */
void coho__io_init(coho__io_t *io, int fd, coho__io_fn cb, void *data);

/* Registers interest in `events` (COHO__EV_READ | COHO__EV_WRITE; error and hang-up are always
 * reported, and RDHUP is requested too) with COHO__IO_* `flags`. If `timeout_ms` >= 0 and no
 * event arrives within it, the callback gets COHO__EV_TIMEOUT (the registration stays; the
 * timeout restarts when an event is delivered). Returns 0, -EBADF (closed or unknown fd),
 * -EEXIST (already active), -EPERM (fd type epoll cannot watch, e.g. a regular file), -ENOMEM. */
int coho__io_start(coho__driver_t *d, coho__io_t *io, unsigned events, unsigned flags,
                   int64_t timeout_ms);

/* Changes the interest and timeout of an active registration. Returns 0, -ENOENT, -EBADF. */
int coho__io_modify(coho__driver_t *d, coho__io_t *io, unsigned events, int64_t timeout_ms);

/* The active registration of `fd` in `d`, or NULL. */
coho__io_t *coho__driver_io_at(const coho__driver_t *d, int fd);
/* Removes `io`'s registration from the kernel's epoll set only (EPOLL_CTL_DEL), leaving the
 * driver's own record of it for coho__io_stop on the driver's thread. Any thread, while the
 * driver exists: lets another thread close the fd without waiting for the driver's thread. */
void coho__io_kernel_del(coho__driver_t *d, coho__io_t *io);
/* Removes the registration (EPOLL_CTL_DEL first, so a later close of the fd is safe). No
 * callback runs for `io` after this returns, even for events already collected in this
 * iteration. Returns 0, or -ENOENT if not active. */
int coho__io_stop(coho__driver_t *d, coho__io_t *io);
/* coho__io_stop for an io whose kernel registration another thread already removed
 * (coho__io_kernel_del) before closing its fd: forgets it without any syscall on the fd number,
 * which may be closed, or held by a new file, by the time the driver's thread gets here (an
 * EPOLL_CTL_DEL then would race with that close). Returns 0, or -ENOENT if not active. */
int coho__io_forget(coho__driver_t *d, coho__io_t *io);

void coho__timer_init(coho__timer_t *t, coho__timer_fn cb, void *data);

/* Arms `t` to fire `delay_ms` after now (never earlier; at most one tick later when the loop
 * is not overloaded), then every `period_ms` if `period_ms` > 0 (fixed rate; missed periods
 * are documented in the README). `group` != 0 puts it in a group for
 * coho__timer_stop_group. Safe inside any timer callback. Returns 0, -EALREADY (armed). */
int coho__timer_start(coho__driver_t *d, coho__timer_t *t, uint64_t delay_ms, uint64_t period_ms,
                      uint64_t group);

/* Arms `t` to fire once at `deadline_ns` on the CLOCK_MONOTONIC scale of coho__mono_ns() (never
 * earlier; a deadline already past fires at the next processed tick). Safe inside any timer
 * callback. Returns 0, -EALREADY (armed). */
int coho__timer_start_at(coho__driver_t *d, coho__timer_t *t, uint64_t deadline_ns);

/* Disarms `t`. Safe inside any timer callback, including its own. Returns 0, or -ENOENT if it
 * is not armed (already fired or never started). */
int coho__timer_stop(coho__driver_t *d, coho__timer_t *t);

/* Whether `t` is armed (inline: the scheduler asks on every exit and every wait with a
 * timeout). COHO__TIMER_IDLE (wheel.h) is 0. */
static inline bool coho__timer_is_active(const coho__timer_t *t)
{
    return t->state != 0;
}

/* For a repeating timer, inside its callback: how many periods were skipped before this firing
 * because the loop was late (0 when on time). See README "Repeating timers". */
uint64_t coho__timer_overrun(const coho__timer_t *t);

/* Disarms every timer of `group`. Returns how many. */
size_t coho__timer_stop_group(coho__driver_t *d, uint64_t group);

/* Milliseconds until the next timer is due (0 if overdue), or -1 when none is armed. Rounded
 * up; may be earlier (never later) than the next due timer when the wheel must cascade a
 * crowded far slot first: the loop then wakes once more. */
int64_t coho__driver_next_timer_ms(const coho__driver_t *d);

/* ---- cross-thread posts ---- */

/* Queues fn(arg) to run on the driver's thread. Any thread. In order per producer; never
 * lost. Returns 0, -ESHUTDOWN (driver destroyed or being destroyed), -ENOMEM. */
int coho__driver_post(coho__driver_t *d, void (*fn)(void *arg), void *arg);

/* ---- signals (signalfd) ---- */

/* Blocks `signo` in the calling thread and delivers it as cb(signo, arg) on the loop.
 * Returns 0, -EINVAL (bad or already watched signal), -errno. */
int coho__driver_signal_start(coho__driver_t *d, int signo, void (*cb)(int signo, void *arg),
                              void *arg);
int coho__driver_signal_stop(coho__driver_t *d, int signo);

/* ---- offload pool ---- */

/* Runs work(arg) on a worker thread (workers block all signals), then done(arg) on the driver's
 * thread. Returns 0, -EAGAIN (queue full: nothing queued), -ESHUTDOWN, -ENOMEM. In a child
 * forked while the job waited in the queue, it runs there; while work(arg) was running on a
 * worker (a thread the child does not have), done(arg) runs in the child as if the work had
 * returned: use coho__driver_offload_ex when work's results cannot be trusted then. */
int coho__driver_offload(coho__driver_t *d, void (*work)(void *arg), void (*done)(void *arg),
                         void *arg);

/* coho__driver_offload, with `lost`: in a child forked while work(arg) was running, the child's
 * driver runs lost(arg) on its thread instead of done(arg) (what work wrote is partial there),
 * so whoever waits on the job learns it failed instead of waiting forever. A job whose work had
 * returned before the fork gets done(arg) in the child (its results are in the child's memory).
 * Every accepted job thus completes exactly once in each process that has it, unless the driver
 * is destroyed with the job still queued. NULL `lost`: done(arg) runs in its place. */
int coho__driver_offload_ex(coho__driver_t *d, void (*work)(void *arg), void (*done)(void *arg),
                            void (*lost)(void *arg), void *arg);

#endif /* COHO_MIO_DRIVER_DRIVER_H */
