/* SPDX-License-Identifier: MIT */
/* Cross-thread posts: a multi-producer, single-consumer queue guarded by one mutex, and an
 * eventfd written only when the queue goes from empty to non-empty. The consumer swaps the
 * whole array out under the lock and runs the batch outside it, so a producer holds the lock
 * for one append, and in steady state nothing is allocated (the two arrays are reused). */
#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

#include "base_struct/sys.h"
#include "mio_driver/internal.h"

#define POST_INITIAL_CAP 256

static void eventfd_drain(int fd)
{
    uint64_t v;

    (void)!coho__sys_base.read(fd, &v, sizeof(v));
}

static void eventfd_signal(int fd)
{
    uint64_t one = 1;

    /* EAGAIN (counter saturated) still leaves the eventfd readable: the wake-up is not lost. */
    (void)!coho__sys_base.write(fd, &one, sizeof(one));
}

/* The eventfd is readable: run every queued post, in queue order. */
static void post_ready(coho__io_t *io, unsigned events)
{
    coho__driver_t *d = io->data;
    coho__post_item_t *batch;
    size_t n;

    (void)events;
    d->ncb--; /* the eventfd itself is not a user callback */
    pthread_mutex_lock(&d->post_mu);
    /* Drained under the lock: producers signal under it too, only when the queue was empty,
     * so after the swap below the next post will signal again. */
    eventfd_drain(d->evfd);
    batch = d->post_q;
    n = d->post_len;
    d->post_q = d->post_spare;
    d->post_spare = batch;
    size_t cap = d->post_cap;
    d->post_cap = d->post_spare_cap;
    d->post_spare_cap = cap;
    d->post_len = 0;
    pthread_mutex_unlock(&d->post_mu);
    for (size_t i = 0; i < n; i++) {
        d->ncb++;
        batch[i].fn(batch[i].arg);
    }
}

int coho__post_init(coho__driver_t *d)
{
    int rc;

    pthread_mutex_init(&d->post_mu, NULL);
    d->post_q = malloc(POST_INITIAL_CAP * sizeof(*d->post_q));
    d->post_spare = malloc(POST_INITIAL_CAP * sizeof(*d->post_spare));
    if (d->post_q == NULL || d->post_spare == NULL) {
        rc = -ENOMEM;
        goto fail_alloc;
    }
    d->post_cap = d->post_spare_cap = POST_INITIAL_CAP;
    d->post_len = 0;
    d->post_shutdown = false;
    d->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (d->evfd < 0) {
        rc = -errno;
        goto fail_alloc;
    }
    if ((rc = coho__driver_io_internal(d, &d->post_io, d->evfd, post_ready)) < 0)
        goto fail_io;
    return 0;

fail_io:
    coho__sys_base.close(d->evfd);
    d->evfd = -1;
fail_alloc:
    free(d->post_q);
    free(d->post_spare);
    d->post_q = d->post_spare = NULL;
    pthread_mutex_destroy(&d->post_mu);
    return rc;
}

int coho__post_push(coho__driver_t *d, void (*fn)(void *), void *arg, bool force)
{
    pthread_mutex_lock(&d->post_mu);
    if (d->post_shutdown && !force) {
        pthread_mutex_unlock(&d->post_mu);
        return -ESHUTDOWN;
    }
    if (d->post_len == d->post_cap) {
        size_t cap = d->post_cap * 2;
        coho__post_item_t *q = realloc(d->post_q, cap * sizeof(*q));

        if (q == NULL) {
            pthread_mutex_unlock(&d->post_mu);
            return -ENOMEM;
        }
        d->post_q = q;
        d->post_cap = cap;
    }
    d->post_q[d->post_len].fn = fn;
    d->post_q[d->post_len].arg = arg;
    /* Signalled under the lock, so destroy cannot close the eventfd under a producer. */
    if (d->post_len++ == 0)
        eventfd_signal(d->evfd);
    pthread_mutex_unlock(&d->post_mu);
    return 0;
}

int coho__driver_post(coho__driver_t *d, void (*fn)(void *arg), void *arg)
{
    return coho__post_push(d, fn, arg, false);
}

void coho__post_wake(coho__driver_t *d)
{
    pthread_mutex_lock(&d->post_mu);
    if (d->evfd >= 0)
        eventfd_signal(d->evfd);
    pthread_mutex_unlock(&d->post_mu);
}

void coho__driver_wake(coho__driver_t *d)
{
    int saved = errno;
    int fd = d->evfd;

    /* No post_mu: a signal handler may have interrupted its own thread while it held it. The
     * eventfd stays open until destroy, which the caller must not race with. */
    if (fd >= 0)
        eventfd_signal(fd);
    errno = saved;
}

void coho__post_shutdown(coho__driver_t *d)
{
    pthread_mutex_lock(&d->post_mu);
    d->post_shutdown = true;
    pthread_mutex_unlock(&d->post_mu);
}

void coho__post_destroy(coho__driver_t *d)
{
    /* Run what was accepted, so that no accepted post is lost; posts may queue more (forced
     * offload completions), hence the loop. */
    while (d->post_len > 0)
        post_ready(&d->post_io, COHO__EV_READ);
    if (d->post_io.active_)
        coho__io_stop(d, &d->post_io);
    if (d->evfd >= 0)
        coho__sys_base.close(d->evfd);
    d->evfd = -1;
    free(d->post_q);
    free(d->post_spare);
    d->post_q = d->post_spare = NULL;
    pthread_mutex_destroy(&d->post_mu);
}

void coho__post_fork_prepare(coho__driver_t *d)
{
    pthread_mutex_lock(&d->post_mu);
}

void coho__post_fork_parent(coho__driver_t *d)
{
    pthread_mutex_unlock(&d->post_mu);
}

void coho__post_fork_child(coho__driver_t *d)
{
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);

    pthread_mutex_unlock(&d->post_mu);
    if (fd < 0)
        return;
    if (d->evfd >= 0)
        coho__sys_base.close(d->evfd);
    d->evfd = fd;
    coho__driver_io_refd(d, &d->post_io, fd);
    if (d->post_len > 0)
        eventfd_signal(fd); /* the child keeps the posts queued at fork */
}
