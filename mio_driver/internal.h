/* SPDX-License-Identifier: MIT */
/* mio_driver's private parts shared between its files: the driver object, the poller interface
 * (poller_epoll.c) and the post, signal and offload modules. Nothing outside mio_driver/ (and
 * its tests) includes this; the layers above use mio_driver/driver.h. */
#ifndef COHO_MIO_DRIVER_INTERNAL_H
#define COHO_MIO_DRIVER_INTERNAL_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "mio_driver/driver.h"
#include "mio_driver/wheel.h"

#define COHO__NS_PER_MS UINT64_C(1000000)

/* One entry per fd number: the registration that owns it and its generation. */
typedef struct coho__fdslot {
    coho__io_t *io;
} coho__fdslot_t;

typedef struct coho__post_item {
    void (*fn)(void *arg);
    void *arg;
} coho__post_item_t;

typedef struct coho__offload_job {
    void (*work)(void *arg);
    void (*done)(void *arg);
    void (*lost)(void *arg); /* in a forked child, for a job whose work was running; or NULL */
    void *arg;
} coho__offload_job_t;

/* An offload worker and the job it holds (offload.c). `state` tells a forked child what became
 * of that job: COHO__OFF_IDLE (none), COHO__OFF_RUNNING (work had not returned), or
 * COHO__OFF_FINISHED (work returned, done not posted yet). */
enum { COHO__OFF_IDLE, COHO__OFF_RUNNING, COHO__OFF_FINISHED };

typedef struct coho__offload_worker {
    pthread_t thread;
    struct coho__driver *d;
    coho__offload_job_t job; /* meaningful while state is not COHO__OFF_IDLE */
    atomic_int state;
} coho__offload_worker_t;

typedef struct coho__tgroup coho__tgroup_t;

struct coho__driver {
    coho__driver_opts_t opts;
    uint64_t tick_ns;
    uint64_t base_ns; /* CLOCK_MONOTONIC ns of tick 0 */
    uint64_t now_ns;  /* cached once per iteration */
    coho__wheel_t wheel;
    unsigned ncb;          /* callbacks run in the current iteration */
    uint64_t timers_fired; /* timer callbacks run since create (coho__driver_timers_fired) */
    bool in_loop;          /* inside run_once: re-entering is refused */
    atomic_bool stop_flag;
    atomic_bool shut; /* coho__driver_shutdown was called: run() returns at once, for good */

    /* poller: epoll (poller_epoll.c) or io_uring (poller_uring.c) */
    int backend; /* COHO__BACKEND_EPOLL or COHO__BACKEND_IO_URING, decided at create */
    int epfd;
    struct coho__uring *uring; /* the io_uring backend's state, NULL with epoll */
    /* ring operations a forked child could not submit again: completed with -EAGAIN by the
     * next run_once, on the driver's thread */
    coho__op_t **op_deferred;
    size_t n_op_deferred;
    int maxevents;
    void *events; /* struct epoll_event[maxevents] */
    coho__fdslot_t *fds;
    size_t nfds;
    uint32_t io_gen;

    /* timer groups: a chained hash table of group id -> timers */
    coho__tgroup_t **groups;
    size_t ngroup_buckets;
    size_t ngroups;
    coho__tgroup_t *group_free;

    /* cross-thread posts (post.c) */
    pthread_mutex_t post_mu;
    coho__post_item_t *post_q; /* producers append here */
    size_t post_len, post_cap;
    coho__post_item_t *post_spare; /* the consumer's batch, swapped with post_q */
    size_t post_spare_cap;
    bool post_shutdown;
    int evfd;
    coho__io_t post_io;

    /* signals (signal.c) */
    int sigfd;
    sigset_t sigmask;
    coho__io_t sig_io;
    struct {
        void (*cb)(int signo, void *arg);
        void *arg;
    } sigs[_NSIG];

    /* offload pool (offload.c) */
    pthread_mutex_t off_mu;
    pthread_cond_t off_cv;
    coho__offload_job_t *off_ring;
    size_t off_head, off_len;
    coho__offload_worker_t *off_workers; /* opts.offload_threads entries, once started */
    unsigned off_started;
    unsigned off_alive; /* workers that have entered their loop (off_mu) */
    pthread_cond_t off_alive_cv;
    bool off_stopping;
    bool off_shutdown;

    coho_list_t all_link; /* in the process-wide list that the fork handlers walk */
};

/* ---- poller: the shape of redis's ae_epoll.c, behind which sit two backends ----
 * poller_epoll.c (coho__epoll_*) and poller_uring.c (coho__uring_*); coho__poller_* pick one by
 * d->backend. Tokens (`data`) come back with the events of their registration only: a stale
 * event of an earlier registration of the same fd number never shows up with a later token. */
enum { COHO__POLLER_ADD = 1, COHO__POLLER_MOD = 3 }; /* the values of EPOLL_CTL_ADD/MOD */

int coho__epoll_init(coho__driver_t *d);
int coho__epoll_ctl(coho__driver_t *d, int op, int fd, uint32_t ev, uint64_t data);
void coho__epoll_del(coho__driver_t *d, int fd, uint64_t data);
void coho__epoll_event(const coho__driver_t *d, int i, uint32_t *ev, uint64_t *data);
void coho__epoll_close(coho__driver_t *d);

/* io_uring: returns -errno when the kernel refuses a ring (the caller falls back to epoll). */
int coho__uring_init(coho__driver_t *d);
int coho__uring_ctl(coho__driver_t *d, int op, int fd, uint32_t ev, uint64_t data);
/* The driver's thread: the poll request is gone from the kernel (and its file reference with
 * it) when this returns. */
void coho__uring_del(coho__driver_t *d, int fd, uint64_t data);
int coho__uring_wait(coho__driver_t *d, int64_t timeout_ns);
void coho__uring_event(const coho__driver_t *d, int i, uint32_t *ev, uint64_t *data);
void coho__uring_close(coho__driver_t *d);
/* In a forked child: drops the parent's ring without touching it (its memory is shared with the
 * parent) and makes a new one. Returns -errno if none can be made. */
int coho__uring_fork_child(coho__driver_t *d);

/* Picks the backend (opts.backend, else $COHO_BACKEND, else io_uring; io_uring falls back to
 * epoll with one info line per process) and initialises it. */
int coho__poller_init(coho__driver_t *d);
/* op: COHO__POLLER_ADD/MOD; `ev`: EPOLL* bits (EPOLLET: edge-triggered); `data`: the token. */
static inline int coho__poller_ctl(coho__driver_t *d, int op, int fd, uint32_t ev, uint64_t data)
{
    return d->backend == COHO__BACKEND_IO_URING ? coho__uring_ctl(d, op, fd, ev, data)
                                                : coho__epoll_ctl(d, op, fd, ev, data);
}
/* Removes registration `data` of `fd`, on the driver's thread. */
static inline void coho__poller_del(coho__driver_t *d, int fd, uint64_t data)
{
    if (d->backend == COHO__BACKEND_IO_URING)
        coho__uring_del(d, fd, data);
    else
        coho__epoll_del(d, fd, data);
}
/* Waits at most `timeout_ns` (< 0: forever). Returns the number of events (0 on EINTR) or
 * -errno. */
/* poller_epoll.c, out of line: debuggers and tools/coho-gdb.py recognise its frame as "the
 * loop is waiting". */
int coho__poller_wait(coho__driver_t *d, int64_t timeout_ns);
/* Reads event `i` of the last wait. */
static inline void coho__poller_event(const coho__driver_t *d, int i, uint32_t *ev, uint64_t *data)
{
    if (d->backend == COHO__BACKEND_IO_URING)
        coho__uring_event(d, i, ev, data);
    else
        coho__epoll_event(d, i, ev, data);
}
void coho__poller_close(coho__driver_t *d);
/* In a forked child: a poller of the child's own, empty (the driver re-adds what it has). */
int coho__poller_fork_child(coho__driver_t *d);

/* Registers an internal fd (eventfd, signalfd) with the driver, level-triggered for reading. */
int coho__driver_io_internal(coho__driver_t *d, coho__io_t *io, int fd, coho__io_fn cb);
/* Moves an internal registration to a new fd (after fork); the old fd must be closed already. */
int coho__driver_io_refd(coho__driver_t *d, coho__io_t *io, int fd);

/* ---- posts (post.c) ---- */
int coho__post_init(coho__driver_t *d);
/* Refuses new posts from now on (-ESHUTDOWN). */
void coho__post_shutdown(coho__driver_t *d);
/* Runs whatever is still queued (destroy), then frees the queue and the eventfd. */
void coho__post_destroy(coho__driver_t *d);
/* Queues fn(arg); `force` bypasses the shutdown check (offload completions during destroy). */
int coho__post_push(coho__driver_t *d, void (*fn)(void *), void *arg, bool force);
/* Wakes the loop without queueing anything (stop). Any thread. */
void coho__post_wake(coho__driver_t *d);
void coho__post_fork_prepare(coho__driver_t *d);
void coho__post_fork_parent(coho__driver_t *d);
void coho__post_fork_child(coho__driver_t *d);

/* ---- signals (signal.c) ---- */
void coho__signal_init(coho__driver_t *d);
void coho__signal_destroy(coho__driver_t *d);
void coho__signal_fork_child(coho__driver_t *d);

/* ---- offload (offload.c) ---- */
int coho__offload_init(coho__driver_t *d);
/* Refuses new jobs (-ESHUTDOWN); queued and running jobs still complete. */
void coho__offload_shutdown(coho__driver_t *d);
/* Refuses new jobs, lets running jobs finish, drops queued ones, joins the workers. */
void coho__offload_destroy(coho__driver_t *d);
void coho__offload_fork_prepare(coho__driver_t *d);
void coho__offload_fork_parent(coho__driver_t *d);
void coho__offload_fork_child(coho__driver_t *d);

#endif /* COHO_MIO_DRIVER_INTERNAL_H */
