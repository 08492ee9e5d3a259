/* SPDX-License-Identifier: MIT */
/* The offload pool: N worker threads (started on first use, all signals blocked) take jobs from
 * a bounded ring, run the blocking function, and post the completion back to the driver. A
 * full ring refuses the job with -EAGAIN instead of growing. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>

#include "base_struct/sys.h"
#include "mio_driver/internal.h"

static void *offload_worker(void *arg)
{
    coho__driver_t *d = arg;

    pthread_mutex_lock(&d->off_mu);
    for (;;) {
        while (!d->off_stopping && d->off_len == 0)
            pthread_cond_wait(&d->off_cv, &d->off_mu);
        if (d->off_stopping)
            break;
        coho__offload_job_t job = d->off_ring[d->off_head];

        d->off_head = (d->off_head + 1) % d->opts.offload_queue;
        d->off_len--;
        pthread_mutex_unlock(&d->off_mu);
        job.work(job.arg);
        if (job.done != NULL) {
            /* Forced: a completion is delivered even while the driver is being destroyed.
             * ENOMEM is transient; retry rather than lose the completion. */
            while (coho__post_push(d, job.done, job.arg, true) == -ENOMEM) {
                struct timespec ts = {0, 1000000};

                coho__sys_base.nanosleep(&ts, NULL);
            }
        }
        pthread_mutex_lock(&d->off_mu);
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

    if (d->off_threads == NULL) {
        d->off_threads = calloc(d->opts.offload_threads, sizeof(pthread_t));
        if (d->off_threads == NULL)
            return -ENOMEM;
    }
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    while (d->off_started < d->opts.offload_threads) {
        rc = pthread_create(&d->off_threads[d->off_started], NULL, offload_worker, d);
        if (rc != 0)
            break;
        d->off_started++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return d->off_started > 0 ? 0 : -rc;
}

int coho__offload_init(coho__driver_t *d)
{
    pthread_mutex_init(&d->off_mu, NULL);
    pthread_cond_init(&d->off_cv, NULL);
    d->off_ring = NULL;
    d->off_head = d->off_len = 0;
    d->off_threads = NULL;
    d->off_started = 0;
    d->off_stopping = false;
    d->off_shutdown = false;
    return 0;
}

int coho__driver_offload(coho__driver_t *d, void (*work)(void *arg), void (*done)(void *arg),
                         void *arg)
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
    d->off_ring[tail].arg = arg;
    d->off_len++;
    pthread_cond_signal(&d->off_cv);
out:
    pthread_mutex_unlock(&d->off_mu);
    return rc;
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
        pthread_join(d->off_threads[i], NULL);
    d->off_started = 0;
    free(d->off_threads);
    free(d->off_ring);
    d->off_threads = NULL;
    d->off_ring = NULL;
    pthread_cond_destroy(&d->off_cv);
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

void coho__offload_fork_child(coho__driver_t *d)
{
    /* The workers did not survive the fork. Jobs still queued are the child's copy and run
     * there; jobs that were running belong to the parent. The condition variable may have had
     * waiters in the parent, so the child starts with fresh synchronisation objects. */
    pthread_mutex_init(&d->off_mu, NULL);
    pthread_cond_init(&d->off_cv, NULL);
    d->off_started = 0;
    if (d->off_len > 0 && !d->off_shutdown)
        offload_start_workers(d);
}
