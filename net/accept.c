/* SPDX-License-Identifier: MIT */
/* The accept loop of servers and socket_ext listen pools (contract in accept.h).
 *
 * The listen socket is non-blocking and waited for with poll, not with a parking accept: at the
 * fd limit the kernel fails accept with EMFILE before it looks at the queue, so a parking accept
 * would return EMFILE over and over with nothing queued, and the shedding accept must never
 * park with the reserve closed. Out of fds, the reserve is closed to make room for one accept;
 * if that finds a connection it is closed at once (shed), if it finds nothing the acceptor waits
 * for a connection, not for a free fd. Without a reserve (it could not be reopened) EMFILE is an
 * error like ENOMEM: exponential backoff, so a persistent failure does not spin and a passing one
 * costs at most the cap (LESSONS.md). */
#define _GNU_SOURCE /* accept4 */
#include "net/accept.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <coho.h>

void coho__net_acceptor_init(coho__net_acceptor_t *a, int lfd)
{
    a->lfd = lfd;
    a->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    a->backoff_ms = 0;
}

void coho__net_acceptor_destroy(coho__net_acceptor_t *a)
{
    if (a->reserve_fd >= 0)
        close(a->reserve_fd);
    a->reserve_fd = -1;
}

/* Parks until the listen socket is readable. Returns 0, or -errno (ECANCELED, EBADF...). */
static int wait_readable(int lfd)
{
    struct pollfd p = {.fd = lfd, .events = POLLIN};

    if (poll(&p, 1, -1) < 0)
        return errno == EINTR ? 0 : -errno;
    return (p.revents & POLLNVAL) ? -EBADF : 0;
}

/* Out of fds with the reserve at hand: takes one queued connection with it and closes it.
 * Returns 1 (shed), 0 (nothing was queued: the caller waits for a connection) or -errno. */
static int shed_one(coho__net_acceptor_t *a)
{
    int fd, err = 0;

    close(a->reserve_fd);
    a->reserve_fd = -1;
    fd = accept4(a->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0)
        err = errno;
    else
        close(fd);
    a->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd >= 0)
        return 1;
    return err == EAGAIN || err == EWOULDBLOCK || err == ECONNABORTED || err == EINTR ? 0 : -err;
}

static int backoff(coho__net_acceptor_t *a)
{
    a->backoff_ms = a->backoff_ms == 0 ? COHO__NET_ACCEPT_BACKOFF_MIN_MS : a->backoff_ms * 2;
    if (a->backoff_ms > COHO__NET_ACCEPT_BACKOFF_MAX_MS)
        a->backoff_ms = COHO__NET_ACCEPT_BACKOFF_MAX_MS;
    return coho_sleep_ms(a->backoff_ms) != 0 ? -ECANCELED : 0;
}

int coho__net_accept(coho__net_acceptor_t *a, struct sockaddr *addr, socklen_t *addrlen,
                     const bool *stop)
{
    socklen_t len0 = addrlen != NULL ? *addrlen : 0;

    for (;;) {
        int fd, err, rc;

        if (*stop)
            return -ESHUTDOWN;
        if (a->reserve_fd < 0)
            a->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (addrlen != NULL)
            *addrlen = len0;
        fd = accept4(a->lfd, addr, addrlen, SOCK_CLOEXEC);
        if (fd >= 0) {
            a->backoff_ms = 0;
            return fd;
        }
        err = errno;
        switch (err) {
        case EAGAIN:
#if EWOULDBLOCK != EAGAIN
        case EWOULDBLOCK:
#endif
            rc = wait_readable(a->lfd);
            if (rc < 0)
                return rc;
            continue;
        case EINTR:
        case ECONNABORTED: /* the peer gave up while queued: the next one */
            continue;
        case EBADF:
        case EINVAL:
        case ENOTSOCK:
        case ECANCELED:
            return -err;
        case EMFILE:
        case ENFILE:
            if (a->reserve_fd >= 0) {
                rc = shed_one(a);
                if (rc > 0)
                    return -ECONNREFUSED;
                if (rc == 0) { /* nothing queued: wait for a connection, not for an fd */
                    rc = wait_readable(a->lfd);
                    if (rc < 0)
                        return rc;
                    continue;
                }
            }
            break; /* no reserve: back off until fds are free */
        default:
            break;
        }
        rc = backoff(a);
        return rc < 0 ? rc : -err;
    }
}
