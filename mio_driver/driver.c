/* SPDX-License-Identifier: MIT */
/* The driver: its life cycle, the loop, fd registrations, timers (glue between the wheel and
 * CLOCK_MONOTONIC), timer groups and the fork handlers. */
#include "mio_driver/driver.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "base_struct/clock.h"
#include "base_struct/sys.h"
#include "mio_driver/internal.h"

/* A timer group: the armed timers of one owner. */
struct coho__tgroup {
    uint64_t id;
    coho_list_t timers;
    coho__tgroup_t *next;
};

/* ---- process-wide list of drivers, for the fork handlers ---- */
static pthread_mutex_t all_mu = PTHREAD_MUTEX_INITIALIZER;
static coho_list_t all_drivers = {&all_drivers, &all_drivers};
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

void coho__driver_opts_init(coho__driver_opts_t *o)
{
    o->tick_us = 100;
    o->offload_threads = 2;
    o->offload_queue = 1024;
    o->backend = COHO__BACKEND_DEFAULT;
}

int coho__driver_backend(const coho__driver_t *d)
{
    return d->backend;
}

/* ---- time <-> ticks ---- */

/* The first tick whose start is at or after `ns`: a timer in it never fires early. */
static inline uint64_t ns_to_tick_ceil(const coho__driver_t *d, uint64_t ns)
{
    if (ns <= d->base_ns)
        return 0;
    return (ns - d->base_ns + d->tick_ns - 1) / d->tick_ns;
}

static inline uint64_t ns_to_tick_floor(const coho__driver_t *d, uint64_t ns)
{
    return ns <= d->base_ns ? 0 : (ns - d->base_ns) / d->tick_ns;
}

uint64_t coho__driver_timers_fired(const coho__driver_t *d)
{
    return d->timers_fired;
}

uint64_t coho__driver_now_ms(const coho__driver_t *d)
{
    return d->now_ns / COHO__NS_PER_MS;
}

uint64_t coho__driver_update_now(coho__driver_t *d)
{
    d->now_ns = coho__mono_ns();
    return d->now_ns / COHO__NS_PER_MS;
}

void coho__driver_counts(const coho__driver_t *d, size_t *fds, size_t *timers)
{
    size_t n = 0;

    for (size_t fd = 0; fd < d->nfds; fd++)
        n += d->fds[fd].io != NULL;
    *fds = n;
    *timers = coho__wheel_count(&d->wheel);
}

/* ---- timer groups ---- */

static inline size_t group_hash(const coho__driver_t *d, uint64_t id)
{
    return (size_t)((id * UINT64_C(0x9E3779B97F4A7C15)) >> 32) & (d->ngroup_buckets - 1);
}

static coho__tgroup_t *group_find(const coho__driver_t *d, uint64_t id)
{
    if (d->ngroup_buckets == 0)
        return NULL;
    for (coho__tgroup_t *g = d->groups[group_hash(d, id)]; g != NULL; g = g->next)
        if (g->id == id)
            return g;
    return NULL;
}

static int group_grow(coho__driver_t *d)
{
    size_t n = d->ngroup_buckets ? d->ngroup_buckets * 2 : 16;
    coho__tgroup_t **b = calloc(n, sizeof(*b));

    if (b == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < d->ngroup_buckets; i++) {
        coho__tgroup_t *g = d->groups[i], *next;

        for (; g != NULL; g = next) {
            size_t h = (size_t)((g->id * UINT64_C(0x9E3779B97F4A7C15)) >> 32) & (n - 1);

            next = g->next;
            g->next = b[h];
            b[h] = g;
        }
    }
    free(d->groups);
    d->groups = b;
    d->ngroup_buckets = n;
    return 0;
}

static int group_add(coho__driver_t *d, coho__timer_t *t, uint64_t id)
{
    coho__tgroup_t *g = group_find(d, id);

    if (g == NULL) {
        if (d->ngroups >= d->ngroup_buckets && group_grow(d) < 0)
            return -ENOMEM;
        if (d->group_free != NULL) {
            g = d->group_free;
            d->group_free = g->next;
        } else if ((g = malloc(sizeof(*g))) == NULL) {
            return -ENOMEM;
        }
        g->id = id;
        coho_list_init(&g->timers);
        size_t h = group_hash(d, id);
        g->next = d->groups[h];
        d->groups[h] = g;
        d->ngroups++;
    }
    coho_list_push_back(&g->timers, &t->group_link);
    t->group = id;
    return 0;
}

static void group_unlink(coho__driver_t *d, coho__tgroup_t *g)
{
    coho__tgroup_t **pp = &d->groups[group_hash(d, g->id)];

    while (*pp != g)
        pp = &(*pp)->next;
    *pp = g->next;
    d->ngroups--;
    g->next = d->group_free; /* kept for reuse: groups come and go with connections */
    d->group_free = g;
}

static void group_del(coho__driver_t *d, coho__timer_t *t)
{
    if (t->group == 0)
        return;
    coho_list_del(&t->group_link);
    coho__tgroup_t *g = group_find(d, t->group);
    if (g != NULL && coho_list_is_empty(&g->timers))
        group_unlink(d, g);
    t->group = 0;
}

/* ---- timers ---- */

void coho__timer_init(coho__timer_t *t, coho__timer_fn cb, void *data)
{
    memset(t, 0, sizeof(*t));
    t->cb = cb;
    t->data = data;
    coho_list_init(&t->link);
    coho_list_init(&t->group_link);
    coho__heap_node_init(&t->heap);
    t->state = COHO__TIMER_IDLE;
}

_Static_assert(COHO__TIMER_IDLE == 0, "coho__timer_is_active (driver.h) tests state != 0");

uint64_t coho__timer_overrun(const coho__timer_t *t)
{
    return t->overrun;
}

static inline uint64_t ms_to_ns_sat(uint64_t ms)
{
    /* Past ~292 years the deadline saturates; such a timer never fires in practice. */
    return ms > UINT64_MAX / 4 / COHO__NS_PER_MS ? UINT64_MAX / 4 : ms * COHO__NS_PER_MS;
}

/* Arms `t` at the absolute deadline `deadline_ns`. */
static int timer_arm_at(coho__driver_t *d, coho__timer_t *t, uint64_t deadline_ns)
{
    t->deadline_ns = deadline_ns;
    t->expire_tick = ns_to_tick_ceil(d, deadline_ns);
    return coho__wheel_add(&d->wheel, t);
}

int coho__timer_start(coho__driver_t *d, coho__timer_t *t, uint64_t delay_ms, uint64_t period_ms,
                      uint64_t group)
{
    int rc;

    if (t->state != COHO__TIMER_IDLE)
        return -EALREADY;
    /* A fresh reading, not the cached one: a callback may have run long since the iteration
     * began, and arming from the cache would then fire early. */
    rc = timer_arm_at(d, t, coho__mono_ns() + ms_to_ns_sat(delay_ms));
    if (rc < 0)
        return rc;
    t->period_ms = period_ms;
    t->overrun = 0;
    t->owner = d;
    t->group = 0;
    if (group != 0 && (rc = group_add(d, t, group)) < 0) {
        coho__wheel_del(&d->wheel, t);
        t->owner = NULL;
        return rc;
    }
    return 0;
}

int coho__timer_start_at(coho__driver_t *d, coho__timer_t *t, uint64_t deadline_ns)
{
    int rc;

    if (t->state != COHO__TIMER_IDLE)
        return -EALREADY;
    rc = timer_arm_at(d, t, deadline_ns);
    if (rc < 0)
        return rc;
    t->period_ms = 0;
    t->overrun = 0;
    t->owner = d;
    t->group = 0;
    return 0;
}

int coho__timer_stop(coho__driver_t *d, coho__timer_t *t)
{
    if (t->state == COHO__TIMER_IDLE || t->owner != d)
        return -ENOENT;
    coho__wheel_del(&d->wheel, t);
    group_del(d, t);
    t->owner = NULL;
    return 0;
}

size_t coho__timer_stop_group(coho__driver_t *d, uint64_t group)
{
    coho__tgroup_t *g = group_find(d, group);
    size_t n = 0;
    coho_list_t *node;

    if (g == NULL || group == 0)
        return 0;
    while ((node = coho_list_pop_front(&g->timers)) != NULL) {
        coho__timer_t *t = coho_container_of(node, coho__timer_t, group_link);

        coho__wheel_del(&d->wheel, t);
        t->group = 0;
        t->owner = NULL;
        n++;
    }
    group_unlink(d, g);
    return n;
}

int64_t coho__driver_next_timer_ms(const coho__driver_t *d)
{
    uint64_t tick = coho__wheel_next_tick(&d->wheel);
    uint64_t now = coho__mono_ns(), at;

    if (tick == COHO__WHEEL_NEVER)
        return -1;
    at = d->base_ns + tick * d->tick_ns;
    if (at <= now)
        return 0;
    return (int64_t)((at - now + COHO__NS_PER_MS - 1) / COHO__NS_PER_MS);
}

/* The wheel hands over one tick's due timers. Periodic timers are re-armed on their fixed-rate
 * grid before their callback runs, so the callback may stop them; periods that passed while
 * the loop was stalled are skipped and counted in t->overrun (README "Repeating timers"). */
static void fire_due(void *ctx, coho_list_t *due, uint64_t tick)
{
    coho__driver_t *d = ctx;
    coho_list_t *n;

    (void)tick;
    while ((n = coho_list_pop_front(due)) != NULL) {
        coho__timer_t *t = coho_container_of(n, coho__timer_t, link);

        t->state = COHO__TIMER_IDLE;
        if (t->period_ms != 0) {
            uint64_t p = ms_to_ns_sat(t->period_ms);
            uint64_t next = t->deadline_ns + p;
            uint64_t skipped = 0;

            if (next <= d->now_ns) {
                skipped = (d->now_ns - next) / p + 1;
                next += skipped * p;
            }
            t->overrun = skipped;
            if (timer_arm_at(d, t, next) < 0) {
                group_del(d, t);
                t->owner = NULL;
            }
        } else {
            group_del(d, t);
            t->owner = NULL;
        }
        d->ncb++;
        d->timers_fired++;
        t->cb(t); /* may free t: not touched afterwards */
    }
}

/* ---- fd registrations ---- */

static uint32_t ev_to_epoll(unsigned events, unsigned flags)
{
    uint32_t e = EPOLLRDHUP;

    if (events & COHO__EV_READ)
        e |= EPOLLIN;
    if (events & COHO__EV_WRITE)
        e |= EPOLLOUT;
    if (flags & COHO__IO_EDGE)
        e |= EPOLLET;
    /* Urgent data: an edge-triggered registration hears of it once (level-triggered it would
     * report it on every wait until read). */
    if ((flags & COHO__IO_EDGE) && (events & COHO__EV_READ))
        e |= EPOLLPRI;
    return e;
}

static unsigned epoll_to_ev(uint32_t e)
{
    unsigned ev = 0;

    if (e & EPOLLIN)
        ev |= COHO__EV_READ;
    if (e & EPOLLOUT)
        ev |= COHO__EV_WRITE;
    if (e & EPOLLERR)
        ev |= COHO__EV_ERROR;
    if (e & EPOLLHUP)
        ev |= COHO__EV_HUP;
    if (e & EPOLLPRI)
        ev |= COHO__EV_PRI;
    if (e & EPOLLRDHUP)
        ev |= COHO__EV_RDHUP;
    return ev;
}

static inline uint64_t io_token(const coho__io_t *io)
{
    return (uint64_t)(uint32_t)io->fd | ((uint64_t)(uint32_t)io->gen << 32);
}

static int fd_table_reserve(coho__driver_t *d, int fd)
{
    size_t n = d->nfds ? d->nfds : 64;
    coho__fdslot_t *f;

    if ((size_t)fd < d->nfds)
        return 0;
    while (n <= (size_t)fd)
        n *= 2;
    f = realloc(d->fds, n * sizeof(*f));
    if (f == NULL)
        return -ENOMEM;
    memset(f + d->nfds, 0, (n - d->nfds) * sizeof(*f));
    d->fds = f;
    d->nfds = n;
    return 0;
}

void coho__io_init(coho__io_t *io, int fd, coho__io_fn cb, void *data)
{
    memset(io, 0, sizeof(*io));
    io->fd = fd;
    io->cb = cb;
    io->data = data;
    io->timeout_ms = -1;
    coho__timer_init(&io->timer_, NULL, io);
}

/* The registration timeout: the timer is armed once per timeout period, not per event; when it
 * fires it checks the time of the last event and re-arms for the remainder (LESSONS.md). */
static void io_timeout_fired(coho__timer_t *t)
{
    coho__io_t *io = t->data;
    coho__driver_t *d = io->drv_;
    uint64_t now = coho__mono_ns();
    uint64_t due = io->last_ns_ + ms_to_ns_sat((uint64_t)io->timeout_ms);

    if (due > now) {
        d->ncb--; /* not a user callback */
        timer_arm_at(d, t, due);
        t->owner = d;
        return;
    }
    io->last_ns_ = now;
    timer_arm_at(d, t, now + ms_to_ns_sat((uint64_t)io->timeout_ms));
    t->owner = d;
    io->cb(io, COHO__EV_TIMEOUT);
}

static void io_timeout_arm(coho__driver_t *d, coho__io_t *io, int64_t timeout_ms)
{
    io->timeout_ms = timeout_ms;
    if (timeout_ms < 0)
        return;
    io->timer_.cb = io_timeout_fired;
    io->timer_.data = io;
    io->last_ns_ = coho__mono_ns();
    if (timer_arm_at(d, &io->timer_, io->last_ns_ + ms_to_ns_sat((uint64_t)timeout_ms)) == 0)
        io->timer_.owner = d;
}

static int io_register(coho__driver_t *d, coho__io_t *io, uint32_t ev)
{
    int rc;

    if (io->active_)
        return -EEXIST;
    if (io->fd < 0)
        return -EBADF;
    if ((rc = fd_table_reserve(d, io->fd)) < 0)
        return rc;
    if (d->fds[io->fd].io != NULL)
        return -EEXIST;
    if (++d->io_gen == 0)
        d->io_gen = 1;
    io->gen = d->io_gen;
    if ((rc = coho__poller_ctl(d, COHO__POLLER_ADD, io->fd, ev, io_token(io))) < 0)
        return rc;
    d->fds[io->fd].io = io;
    io->drv_ = d;
    io->active_ = true;
    return 0;
}

int coho__io_start(coho__driver_t *d, coho__io_t *io, unsigned events, unsigned flags,
                   int64_t timeout_ms)
{
    int rc = io_register(d, io, ev_to_epoll(events, flags));

    if (rc < 0)
        return rc;
    io->interest = events;
    io->flags = flags;
    io_timeout_arm(d, io, timeout_ms);
    return 0;
}

int coho__driver_io_internal(coho__driver_t *d, coho__io_t *io, int fd, coho__io_fn cb)
{
    coho__io_init(io, fd, cb, d);
    return coho__io_start(d, io, COHO__EV_READ, 0, -1);
}

int coho__driver_io_refd(coho__driver_t *d, coho__io_t *io, int fd)
{
    if (io->active_ && (size_t)io->fd < d->nfds && d->fds[io->fd].io == io)
        d->fds[io->fd].io = NULL;
    io->active_ = false;
    io->fd = fd;
    return io_register(d, io, ev_to_epoll(io->interest, io->flags));
}

int coho__io_modify(coho__driver_t *d, coho__io_t *io, unsigned events, int64_t timeout_ms)
{
    int rc;

    if (!io->active_ || io->drv_ != d)
        return -ENOENT;
    rc =
        coho__poller_ctl(d, COHO__POLLER_MOD, io->fd, ev_to_epoll(events, io->flags), io_token(io));
    if (rc < 0)
        return rc == -ENOENT ? -EBADF : rc;
    io->interest = events;
    if (io->timer_.state != COHO__TIMER_IDLE)
        coho__timer_stop(d, &io->timer_);
    io_timeout_arm(d, io, timeout_ms);
    return 0;
}

coho__io_t *coho__driver_io_at(const coho__driver_t *d, int fd)
{
    return fd >= 0 && (size_t)fd < d->nfds ? d->fds[fd].io : NULL;
}

void coho__io_kernel_del(coho__driver_t *d, coho__io_t *io)
{
    /* epoll_ctl is safe from any thread; an fd already closed gives EBADF/ENOENT, ignored.
     * An io_uring ring takes submissions from its own thread only (IORING_SETUP_SINGLE_ISSUER):
     * its poll request goes when the driver's thread forgets the registration (coho__io_forget
     * removes it by its user_data, never by fd number). Until then the request holds a
     * reference to the file, so the close that follows completes (the peer sees FIN) once that
     * thread has run the release posted to it. */
    if (d->backend == COHO__BACKEND_EPOLL)
        coho__epoll_del(d, io->fd, io_token(io));
}

/* coho__io_stop and coho__io_forget: `kernel_del` says whether to make the EPOLL_CTL_DEL. */
static int io_unregister(coho__driver_t *d, coho__io_t *io, bool kernel_del)
{
    if (!io->active_ || io->drv_ != d)
        return -ENOENT;
    /* Errors are ignored: if the fd was already closed, epoll dropped it with the last
     * reference to the open file description. */
    if (kernel_del || d->backend == COHO__BACKEND_IO_URING)
        coho__poller_del(d, io->fd, io_token(io)); /* io_uring: by user_data, not fd number */
    d->fds[io->fd].io = NULL;
    if (io->timer_.state != COHO__TIMER_IDLE)
        coho__timer_stop(d, &io->timer_);
    io->active_ = false;
    io->drv_ = NULL;
    return 0;
}

int coho__io_stop(coho__driver_t *d, coho__io_t *io)
{
    return io_unregister(d, io, true);
}

int coho__io_forget(coho__driver_t *d, coho__io_t *io)
{
    return io_unregister(d, io, false);
}

/* ---- the loop ---- */

static int64_t loop_wait_ns(coho__driver_t *d, int timeout_ms)
{
    uint64_t tick;
    int64_t wait = timeout_ms < 0 ? -1 : (int64_t)timeout_ms * (int64_t)COHO__NS_PER_MS;

    if (timeout_ms == 0)
        return 0;
    tick = coho__wheel_next_tick(&d->wheel);
    if (tick != COHO__WHEEL_NEVER) {
        uint64_t at = d->base_ns + tick * d->tick_ns;
        int64_t t = at > d->now_ns ? (int64_t)(at - d->now_ns) : 0;

        if (wait < 0 || t < wait)
            wait = t;
    }
    /* The kernel lets a poll timeout expire late by 0.1 % of its length (0.5 % for a niced
     * thread; select_estimate_accuracy), 3 ms on a 3 s wait. Wake that much early instead;
     * the next iteration sleeps the short remainder with negligible slack. */
    if (wait > 2 * (int64_t)COHO__NS_PER_MS)
        wait -= wait / 190;
    return wait;
}

int coho__driver_run_once(coho__driver_t *d, int timeout_ms)
{
    int n;

    if (d->in_loop)
        return -EBUSY;
    d->in_loop = true;
    d->ncb = 0;
    d->now_ns = coho__mono_ns();
    if (d->n_op_deferred != 0) {
        /* a forked child's ring operations that could not be submitted again: -EAGAIN */
        for (size_t i = 0; i < d->n_op_deferred; i++) {
            d->ncb++;
            d->op_deferred[i]->cb(d->op_deferred[i]);
        }
        free(d->op_deferred);
        d->op_deferred = NULL;
        d->n_op_deferred = 0;
        timeout_ms = 0;
    }
    n = coho__poller_wait(d, loop_wait_ns(d, timeout_ms));
    d->now_ns = coho__mono_ns();
    for (int i = 0; i < n; i++) {
        uint32_t e;
        uint64_t token;

        coho__poller_event(d, i, &e, &token);
        uint32_t fd = (uint32_t)token;
        coho__io_t *io = fd < d->nfds ? d->fds[fd].io : NULL;

        /* A registration stopped (or replaced) earlier in this batch is skipped. */
        if (io == NULL || (uint32_t)io->gen != (uint32_t)(token >> 32))
            continue;
        io->last_ns_ = d->now_ns;
        d->ncb++;
        io->cb(io, epoll_to_ev(e));
    }
    coho__wheel_advance(&d->wheel, ns_to_tick_floor(d, d->now_ns), fire_due, d);
    d->in_loop = false;
    if (n < 0)
        return n;
    return (int)d->ncb;
}

int coho__driver_run(coho__driver_t *d)
{
    int rc = 0;

    while (!atomic_load_explicit(&d->stop_flag, memory_order_acquire) &&
           !atomic_load_explicit(&d->shut, memory_order_acquire)) {
        rc = coho__driver_run_once(d, -1);
        if (rc < 0)
            break;
        rc = 0;
    }
    atomic_store_explicit(&d->stop_flag, false, memory_order_relaxed);
    return rc;
}

void coho__driver_stop(coho__driver_t *d)
{
    atomic_store_explicit(&d->stop_flag, true, memory_order_release);
    coho__post_wake(d);
}

void coho__driver_shutdown(coho__driver_t *d)
{
    atomic_store_explicit(&d->shut, true, memory_order_release);
    coho__post_shutdown(d);
    coho__offload_shutdown(d);
    coho__driver_stop(d);
}

/* ---- fork: the child gets its own epoll fd (or ring), eventfd, signalfd and offload workers ----
 */

static void fork_prepare(void)
{
    coho_list_t *n;

    pthread_mutex_lock(&all_mu);
    coho_list_for_each(n, &all_drivers)
    {
        coho__driver_t *d = coho_container_of(n, coho__driver_t, all_link);

        coho__offload_fork_prepare(d);
        coho__post_fork_prepare(d);
    }
}

static void fork_parent(void)
{
    coho_list_t *n;

    coho_list_for_each(n, &all_drivers)
    {
        coho__driver_t *d = coho_container_of(n, coho__driver_t, all_link);

        coho__post_fork_parent(d);
        coho__offload_fork_parent(d);
    }
    pthread_mutex_unlock(&all_mu);
}

static void fork_child(void)
{
    coho_list_t *n;

    coho_list_for_each(n, &all_drivers)
    {
        coho__driver_t *d = coho_container_of(n, coho__driver_t, all_link);
        /* The inherited epoll fd (or io_uring ring) is the parent's: registrations made on it
         * would be shared. Replace it, then re-register every live fd. */
        coho__poller_fork_child(d);
        coho__post_fork_child(d);   /* new eventfd, re-registered */
        coho__signal_fork_child(d); /* new signalfd, re-registered */
        for (size_t fd = 0; fd < d->nfds; fd++) {
            coho__io_t *io = d->fds[fd].io;

            if (io == NULL || io == &d->post_io || io == &d->sig_io)
                continue;
            coho__poller_ctl(d, COHO__POLLER_ADD, (int)fd, ev_to_epoll(io->interest, io->flags),
                             io_token(io));
        }
        coho__offload_fork_child(d);
    }
    pthread_mutex_unlock(&all_mu);
}

static void atfork_register(void)
{
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

/* ---- life cycle ---- */

coho__driver_t *coho__driver_create(const coho__driver_opts_t *o)
{
    coho__driver_t *d = calloc(1, sizeof(*d));
    int rc;

    if (d == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    if (o != NULL)
        d->opts = *o;
    else
        coho__driver_opts_init(&d->opts);
    if (d->opts.tick_us == 0)
        d->opts.tick_us = 100;
    if (d->opts.offload_threads == 0)
        d->opts.offload_threads = 2;
    if (d->opts.offload_queue == 0)
        d->opts.offload_queue = 1024;
    d->tick_ns = (uint64_t)d->opts.tick_us * 1000u;
    d->epfd = -1;
    d->uring = NULL;
    d->evfd = -1;
    d->base_ns = coho__mono_ns();
    d->now_ns = d->base_ns;
    coho__wheel_init(&d->wheel, 0);
    atomic_init(&d->stop_flag, false);
    atomic_init(&d->shut, false);
    coho__signal_init(d);
    if ((rc = coho__poller_init(d)) < 0)
        goto fail_poller;
    if ((rc = coho__post_init(d)) < 0)
        goto fail_post;
    if ((rc = coho__offload_init(d)) < 0)
        goto fail_offload;
    pthread_once(&atfork_once, atfork_register);
    pthread_mutex_lock(&all_mu);
    coho_list_push_back(&all_drivers, &d->all_link);
    pthread_mutex_unlock(&all_mu);
    return d;

fail_offload:
    coho__post_destroy(d);
fail_post:
    coho__poller_close(d);
fail_poller:
    coho__wheel_destroy(&d->wheel);
    free(d->fds);
    free(d);
    errno = -rc;
    return NULL;
}

void coho__driver_destroy(coho__driver_t *d)
{
    if (d == NULL)
        return;
    coho__post_shutdown(d);
    coho__offload_destroy(d);
    coho__post_destroy(d); /* runs completions and posts accepted before the shutdown */
    coho__signal_destroy(d);
    pthread_mutex_lock(&all_mu);
    coho_list_del(&d->all_link);
    pthread_mutex_unlock(&all_mu);
    coho__poller_close(d);
    free(d->op_deferred);
    coho__wheel_destroy(&d->wheel);
    while (d->group_free != NULL) {
        coho__tgroup_t *g = d->group_free;

        d->group_free = g->next;
        free(g);
    }
    for (size_t i = 0; i < d->ngroup_buckets; i++) {
        while (d->groups[i] != NULL) {
            coho__tgroup_t *g = d->groups[i];

            d->groups[i] = g->next;
            free(g);
        }
    }
    free(d->groups);
    free(d->fds);
    free(d);
}
