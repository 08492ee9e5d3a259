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

typedef struct coho__driver_opts {
    unsigned tick_ms;         /* timer wheel tick, default 1 */
    unsigned offload_threads; /* offload pool workers, default 2; started on first use */
    unsigned offload_queue;   /* bounded offload queue length, default 1024 */
} coho__driver_opts_t;

void coho__driver_opts_init(coho__driver_opts_t *o);

/* Creates a driver for the calling thread. NULL opts: defaults. Returns NULL with errno set. */
coho__driver_t *coho__driver_create(const coho__driver_opts_t *o);

/* Destroys a driver that is not running. Active io and timers are dropped (not called). */
void coho__driver_destroy(coho__driver_t *d);

/* Runs until coho__driver_stop(). Returns 0, or -errno on a fatal poller error. */
int coho__driver_run(coho__driver_t *d);

/* One iteration: waits for events at most `timeout_ms` (-1: until the next timer or event;
 * 0: no wait), then dispatches fd events, posts and expired timers. Returns the number of
 * callbacks run, or -errno. */
int coho__driver_run_once(coho__driver_t *d, int timeout_ms);

/* Makes run() return after the current iteration. Any thread. */
void coho__driver_stop(coho__driver_t *d);

/* The monotonic time in ms cached at the start of the current iteration. */
uint64_t coho__driver_now_ms(const coho__driver_t *d);

/* Re-reads CLOCK_MONOTONIC into the cache and returns it. */
uint64_t coho__driver_update_now(coho__driver_t *d);

/* ---- fd events ---- */
enum {
    COHO__EV_READ = 1u << 0,    /* readable (EPOLLIN) */
    COHO__EV_WRITE = 1u << 1,   /* writable (EPOLLOUT) */
    COHO__EV_ERROR = 1u << 2,   /* EPOLLERR */
    COHO__EV_HUP = 1u << 3,     /* EPOLLHUP */
    COHO__EV_RDHUP = 1u << 4,   /* EPOLLRDHUP: the peer shut down its writing side */
    COHO__EV_TIMEOUT = 1u << 5, /* the registration's timeout expired with no event */
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
    void *timer_; /* driver-private */
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

/* Removes the registration (EPOLL_CTL_DEL first, so a later close of the fd is safe). No
 * callback runs for `io` after this returns, even for events already collected in this
 * iteration. Returns 0, or -ENOENT if not active. */
int coho__io_stop(coho__driver_t *d, coho__io_t *io);

/* ---- timers (hierarchical wheel on CLOCK_MONOTONIC; see mio_driver/README.md) ---- */
typedef struct coho__timer coho__timer_t;
typedef void (*coho__timer_fn)(coho__timer_t *t);

struct coho__timer { /* fields private to the driver except data */
    void *data;
    coho__timer_fn cb;
    coho_list_t link;
    coho__heap_node_t heap;
    uint64_t expire_tick;
    uint64_t period_ms;
    uint64_t group;
    coho_list_t group_link;
    uint32_t state;
};

void coho__timer_init(coho__timer_t *t, coho__timer_fn cb, void *data);

/* Arms `t` to fire `delay_ms` after now (never earlier; at most one tick later when the loop
 * is not overloaded), then every `period_ms` if `period_ms` > 0 (fixed rate; missed periods
 * are documented in the README). `group` != 0 puts it in a group for
 * coho__timer_stop_group. Safe inside any timer callback. Returns 0, -EALREADY (armed). */
int coho__timer_start(coho__driver_t *d, coho__timer_t *t, uint64_t delay_ms, uint64_t period_ms,
                      uint64_t group);

/* Disarms `t`. Safe inside any timer callback, including its own. Returns 0, or -ENOENT if it
 * is not armed (already fired or never started). */
int coho__timer_stop(coho__driver_t *d, coho__timer_t *t);

bool coho__timer_is_active(const coho__timer_t *t);

/* Disarms every timer of `group`. Returns how many. */
size_t coho__timer_stop_group(coho__driver_t *d, uint64_t group);

/* Milliseconds until the next timer is due (0 if overdue), or -1 when none is armed. */
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
 * thread. Returns 0, -EAGAIN (queue full: nothing queued), -ESHUTDOWN, -ENOMEM. */
int coho__driver_offload(coho__driver_t *d, void (*work)(void *arg), void (*done)(void *arg),
                         void *arg);

#endif /* COHO_MIO_DRIVER_DRIVER_H */
