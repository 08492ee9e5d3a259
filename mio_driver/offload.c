/* SPDX-License-Identifier: MIT */
/* The offload pool: N worker threads (started on first use, all signals blocked) take jobs from
 * a bounded ring, run the blocking function, and post the completion back to the driver. A
 * full ring refuses the job with -EAGAIN instead of growing. Each worker records the job it
 * holds, so that a forked child, which has no workers, can complete what they held. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>

#include "base_struct/sys.h"
#include "mio_driver/internal.h"

/* Posts a completion; called and returns with off_mu held. Forced: a completion is delivered
 * even while the driver is being destroyed. ENOMEM is transient: retry rather than lose it,
 * without holding off_mu while sleeping. The post is made under off_mu, and the worker's state
 * changes with it, so a fork (whose prepare handler takes off_mu, then post_mu) sees either a
 * finished job not yet posted or a posted job no longer held, never both. */
static void offload_complete_locked(coho__driver_t *d, void (*fn)(void *), void *arg)
{
    while (coho__post_push(d, fn, arg, true) == -ENOMEM) {
        struct timespec ts = {0, 1000000};

        pthread_mutex_unlock(&d->off_mu);
        coho__sys_base.nanosleep(&ts, NULL);
        pthread_mutex_lock(&d->off_mu);
    }
}

static void *offload_worker(void *arg)
{
    coho__offload_worker_t *w = arg;
    coho__driver_t *d = w->d;

    pthread_mutex_lock(&d->off_mu);
    d->off_alive++;
    pthread_cond_broadcast(&d->off_alive_cv);
    for (;;) {
        while (!d->off_stopping && d->off_len == 0)
            pthread_cond_wait(&d->off_cv, &d->off_mu);
        if (d->off_stopping)
            break;
        w->job = d->off_ring[d->off_head];
        d->off_head = (d->off_head + 1) % d->opts.offload_queue;
        d->off_len--;
        atomic_store_explicit(&w->state, COHO__OFF_RUNNING, memory_order_relaxed);
        pthread_mutex_unlock(&d->off_mu);
        w->job.work(w->job.arg);
        /* Release: a child forked from here on sees what work wrote along with FINISHED. */
        atomic_store_explicit(&w->state, COHO__OFF_FINISHED, memory_order_release);
        pthread_mutex_lock(&d->off_mu);
        if (w->job.done != NULL)
            offload_complete_locked(d, w->job.done, w->job.arg);
        atomic_store_explicit(&w->state, COHO__OFF_IDLE, memory_order_relaxed);
    }
    pthread_mutex_unlock(&d->off_mu);
    return NULL;
}

/* Starts the workers with every signal blocked from their first instruction (DESIGN.md: threads
 * coho starts block every signal). Called with off_mu held. */
static int offload_start_workers(coho__driver_t *d)
{
    sigset_t all, old;
    int rc = 0;

    if (d->off_workers == NULL) {
        d->off_workers = calloc(d->opts.offload_threads, sizeof(*d->off_workers));
        if (d->off_workers == NULL)
            return -ENOMEM;
    }
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    while (d->off_started < d->opts.offload_threads) {
        coho__offload_worker_t *w = &d->off_workers[d->off_started];

        w->d = d;
        atomic_store_explicit(&w->state, COHO__OFF_IDLE, memory_order_relaxed);
        rc = pthread_create(&w->thread, NULL, offload_worker, w);
        if (rc != 0)
            break;
        d->off_started++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    /* Returns only once every worker runs its own code: a thread still starting may hold libc's
     * or a sanitizer's internal locks, which a fork right after this would leave locked in the
     * child for good. */
    while (d->off_alive < d->off_started)
        pthread_cond_wait(&d->off_alive_cv, &d->off_mu);
    return d->off_started > 0 ? 0 : -rc;
}

int coho__offload_init(coho__driver_t *d)
{
    pthread_mutex_init(&d->off_mu, NULL);
    pthread_cond_init(&d->off_cv, NULL);
    pthread_cond_init(&d->off_alive_cv, NULL);
    d->off_alive = 0;
    d->off_ring = NULL;
    d->off_head = d->off_len = 0;
    d->off_workers = NULL;
    d->off_started = 0;
    d->off_stopping = false;
    d->off_shutdown = false;
    return 0;
}

int coho__driver_offload_ex(coho__driver_t *d, void (*work)(void *arg), void (*done)(void *arg),
                            void (*lost)(void *arg), void *arg)
{
    int rc = 0;

    if (work == NULL)
        return -EINVAL;
    pthread_mutex_lock(&d->off_mu);
    if (d->off_shutdown) {
        rc = -ESHUTDOWN;
        goto out;
    }
    if (d->off_ring == NULL &&
        (d->off_ring = malloc(d->opts.offload_queue * sizeof(*d->off_ring))) == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    if (d->off_len == d->opts.offload_queue) {
        rc = -EAGAIN;
        goto out;
    }
    if (d->off_started < d->opts.offload_threads && (rc = offload_start_workers(d)) < 0)
        goto out;
    size_t tail = (d->off_head + d->off_len) % d->opts.offload_queue;
    d->off_ring[tail].work = work;
    d->off_ring[tail].done = done;
    d->off_ring[tail].lost = lost;
    d->off_ring[tail].arg = arg;
    d->off_len++;
    pthread_cond_signal(&d->off_cv);
out:
    pthread_mutex_unlock(&d->off_mu);
    return rc;
}

int coho__driver_offload(coho__driver_t *d, void (*work)(void *arg), void (*done)(void *arg),
                         void *arg)
{
    return coho__driver_offload_ex(d, work, done, NULL, arg);
}

void coho__offload_shutdown(coho__driver_t *d)
{
    pthread_mutex_lock(&d->off_mu);
    d->off_shutdown = true;
    pthread_mutex_unlock(&d->off_mu);
}

void coho__offload_destroy(coho__driver_t *d)
{
    pthread_mutex_lock(&d->off_mu);
    d->off_shutdown = true;
    d->off_stopping = true;
    pthread_cond_broadcast(&d->off_cv);
    pthread_mutex_unlock(&d->off_mu);
    for (unsigned i = 0; i < d->off_started; i++)
        pthread_join(d->off_workers[i].thread, NULL);
    d->off_started = 0;
    free(d->off_workers);
    free(d->off_ring);
    d->off_workers = NULL;
    d->off_ring = NULL;
    pthread_cond_destroy(&d->off_cv);
    pthread_cond_destroy(&d->off_alive_cv);
    pthread_mutex_destroy(&d->off_mu);
}

void coho__offload_fork_prepare(coho__driver_t *d)
{
    pthread_mutex_lock(&d->off_mu);
}

void coho__offload_fork_parent(coho__driver_t *d)
{
    pthread_mutex_unlock(&d->off_mu);
}

/* Runs after coho__post_fork_child (the post queue works again). */
void coho__offload_fork_child(coho__driver_t *d)
{
    /* The workers did not survive the fork, and the condition variable may have had waiters in
     * the parent, so the child starts with fresh synchronisation objects. Jobs still queued are
     * the child's copy and run there. A job a worker held completes here, once: with done if
     * its work had returned (the results are in this memory), with lost if it was still
     * running (it would never end here: the thread running it is gone). */
    pthread_mutex_init(&d->off_mu, NULL);
    pthread_cond_init(&d->off_cv, NULL);
    pthread_cond_init(&d->off_alive_cv, NULL);
    d->off_alive = 0;
    for (unsigned i = 0; i < d->off_started; i++) {
        coho__offload_worker_t *w = &d->off_workers[i];
        int state = atomic_load_explicit(&w->state, memory_order_acquire);
        void (*fn)(void *) = NULL;

        if (state == COHO__OFF_RUNNING)
            fn = w->job.lost != NULL ? w->job.lost : w->job.done;
        else if (state == COHO__OFF_FINISHED)
            fn = w->job.done;
        atomic_store_explicit(&w->state, COHO__OFF_IDLE, memory_order_relaxed);
        /* ENOMEM (the queue could not grow) would lose this completion: there is no thread
         * to retry on, and the queue rarely needs to grow for it. */
        if (fn != NULL)
            (void)coho__post_push(d, fn, w->job.arg, true);
    }
    d->off_started = 0;
    if (d->off_len > 0 && !d->off_shutdown) {
        pthread_mutex_lock(&d->off_mu);
        offload_start_workers(d);
        pthread_mutex_unlock(&d->off_mu);
    }
}
