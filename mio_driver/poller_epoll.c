/* SPDX-License-Identifier: MIT */
/* The poller over epoll: init, ctl, wait, close (the shape of redis's ae_epoll.c). Waits use
 * epoll_pwait2 for a nanosecond timeout, so a timer is not made up to a millisecond later by
 * rounding; kernels without it fall back to epoll_wait with the timeout rounded up. */
#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>

#include "base_struct/sys.h"
#include "mio_driver/internal.h"

#define POLLER_MAX_EVENTS 256

static atomic_bool no_pwait2;

int coho__epoll_init(coho__driver_t *d)
{
    d->events = calloc(POLLER_MAX_EVENTS, sizeof(struct epoll_event));
    if (d->events == NULL)
        return -ENOMEM;
    d->maxevents = POLLER_MAX_EVENTS;
    d->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (d->epfd < 0) {
        int err = errno;

        free(d->events);
        d->events = NULL;
        return -err;
    }
    return 0;
}

int coho__epoll_ctl(coho__driver_t *d, int op, int fd, uint32_t ev, uint64_t data)
{
    struct epoll_event e = {.events = ev, .data.u64 = data};

    if (epoll_ctl(d->epfd, op, fd, &e) < 0)
        return -errno;
    return 0;
}

void coho__epoll_del(coho__driver_t *d, int fd, uint64_t data)
{
    struct epoll_event e = {.events = 0, .data.u64 = data};

    epoll_ctl(d->epfd, EPOLL_CTL_DEL, fd, &e);
}

/* The wait of either backend (io_uring's is in poller_uring.c). */
int coho__poller_wait(coho__driver_t *d, int64_t timeout_ns)
{
    struct epoll_event *ev = d->events;
    int n;

    if (d->backend == COHO__BACKEND_IO_URING)
        return coho__uring_wait(d, timeout_ns);

    if (!atomic_load_explicit(&no_pwait2, memory_order_relaxed)) {
        struct timespec ts, *tsp = NULL;

        if (timeout_ns >= 0) {
            ts.tv_sec = (time_t)(timeout_ns / 1000000000);
            ts.tv_nsec = (long)(timeout_ns % 1000000000);
            tsp = &ts;
        }
        n = epoll_pwait2(d->epfd, ev, d->maxevents, tsp, NULL);
        if (n >= 0)
            return n;
        if (errno != ENOSYS)
            return errno == EINTR ? 0 : -errno;
        atomic_store_explicit(&no_pwait2, true, memory_order_relaxed);
    }
    int ms = -1;

    if (timeout_ns >= 0) {
        int64_t m = (timeout_ns + 999999) / 1000000;

        ms = m > 0x7fffffff ? 0x7fffffff : (int)m;
    }
    n = coho__sys_base.epoll_wait(d->epfd, ev, d->maxevents, ms);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    return n;
}

void coho__epoll_event(const coho__driver_t *d, int i, uint32_t *ev, uint64_t *data)
{
    const struct epoll_event *e = (const struct epoll_event *)d->events + i;

    *ev = e->events;
    *data = e->data.u64;
}

void coho__epoll_close(coho__driver_t *d)
{
    if (d->epfd >= 0)
        coho__sys_base.close(d->epfd);
    d->epfd = -1;
    free(d->events);
    d->events = NULL;
}
