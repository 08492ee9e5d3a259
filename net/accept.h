/* SPDX-License-Identifier: MIT */
/* The accept loop shared by servers (server.c) and socket_ext listen pools (tdp_pool.c): one
 * connection per call, parking while none is queued, surviving the fd limit with a reserve fd,
 * backing off on errors that pass. */
#ifndef COHO_NET_ACCEPT_H
#define COHO_NET_ACCEPT_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

/* An accept coroutine's state over one listen socket. */
typedef struct coho__net_acceptor {
    int lfd;             /* the listen socket, non-blocking (SOCK_NONBLOCK); owned by the caller */
    int reserve_fd;      /* an fd on /dev/null held for shedding at the fd limit; -1: none now */
    uint64_t backoff_ms; /* the next error backoff; 0 after an accepted connection */
} coho__net_acceptor_t;

#define COHO__NET_ACCEPT_BACKOFF_MIN_MS 1
#define COHO__NET_ACCEPT_BACKOFF_MAX_MS 100

/* Starts an acceptor on `lfd` and opens its reserve fd (a failure to open it is not an error:
 * each call tries again). */
void coho__net_acceptor_init(coho__net_acceptor_t *a, int lfd);

/* Closes the reserve fd (not the listen socket). */
void coho__net_acceptor_destroy(coho__net_acceptor_t *a);

/* Accepts one connection (SOCK_CLOEXEC) into *addr / *addrlen (both may be NULL), inside a
 * coroutine. While nothing is queued it parks in poll; `*stop` is checked whenever it wakes.
 * Returns the new fd, or:
 *   -ECONNREFUSED      out of fds (EMFILE, ENFILE): a queued connection was taken with the
 *                      reserve fd and closed at once (shed: the peer sees a close, not a hang);
 *                      count it, call again. Out of fds with nothing queued it parks until a
 *                      connection arrives instead, and without a reserve (it could not be
 *                      reopened) EMFILE is an error like the ones below: it never spins.
 *   -ESHUTDOWN         `*stop` was set while it waited.
 *   -EBADF, -EINVAL, -ENOTSOCK, -ECANCELED
 *                      the listen socket was closed (or is not one), or the coroutine was
 *                      cancelled: stop accepting.
 *   other -errno       an accept error that passes (ENOMEM, ENOBUFS, EPERM, EPROTO, ...), after
 *                      a backoff sleep of 1, 2, 4 ... 100 ms (reset by the next accepted
 *                      connection); count it, call again. */
int coho__net_accept(coho__net_acceptor_t *a, struct sockaddr *addr, socklen_t *addrlen,
                     const bool *stop);

/* Whether a result of coho__net_accept means: stop accepting (the listener is gone, a stop was
 * asked, or the coroutine was cancelled). */
static inline bool coho__net_accept_stops(int rc)
{
    return rc == -ESHUTDOWN || rc == -EBADF || rc == -EINVAL || rc == -ENOTSOCK || rc == -ECANCELED;
}

#endif /* COHO_NET_ACCEPT_H */
