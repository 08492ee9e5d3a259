/* SPDX-License-Identifier: MIT */
/* socket_ext over UDP: one datagram per frame. A connect pool keeps conn_count connected
 * datagram sockets, a listen pool one bound socket that serves every peer (replies go to the
 * sender of the request's datagram). */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/tdp_internal.h"

/* Receive loop of a datagram socket: each datagram carries one frame. A datagram that is not
 * whole frames is dropped and counted in protocol_errors, and the socket stays: it serves every
 * peer. Returns the reason the loop ended (an errno value). */
int coho__tdp_rx_loop_dgram(coho_tdp_pool_t *p, struct tdp_conn *c)
{
    unsigned char *buf = malloc(TDP_DGRAM_MAX); /* once per socket, not per datagram */
    int err = 0;

    if (buf == NULL)
        return ENOMEM;
    /* c->broken: coho__tdp_conn_break cancelled this coroutine, or a callback it ran closed the
     * pool. */
    while (err == 0 && !c->broken) {
        struct iovec iov = {.iov_base = buf, .iov_len = TDP_DGRAM_MAX};
        struct msghdr mh = {
            .msg_name = &c->peer, .msg_namelen = sizeof(c->peer), .msg_iov = &iov, .msg_iovlen = 1};
        ssize_t n;

        /* Full (backpressure): what arrives meanwhile waits in the socket's receive buffer, and
         * the kernel drops what does not fit. */
        if (coho__tdp_conn_is_full(p, c)) {
            if (coho__tdp_rx_wait_room(p, c) < 0)
                err = ECANCELED;
            continue;
        }
        n = recvmsg(c->fd, &mh, 0);
        if (c->broken) {
            break;
        } else if (n < 0) {
            /* ECONNREFUSED: an ICMP error for an earlier send on a connected socket; its
             * waiter times out, the socket keeps serving. */
            if (errno != ECONNREFUSED && errno != EINTR)
                err = errno == EBADF ? ECONNRESET : errno;
        } else if ((mh.msg_flags & MSG_TRUNC) || n == 0 || (size_t)n > p->o.max_frame_len ||
                   coho_cbuf_append(&c->rbuf, buf, (size_t)n) != 0) {
            p->st.protocol_errors++;
        } else {
            c->peer_len = mh.msg_namelen;
            if (coho__tdp_rx_dispatch(p, c) != 0 || coho_cbuf_len(&c->rbuf) != 0) {
                p->st.protocol_errors++;
                coho_cbuf_consume(&c->rbuf, coho_cbuf_len(&c->rbuf));
            }
        }
    }
    free(buf);
    return err != 0 ? err : ECONNRESET;
}

/* Sends one frame as one datagram on `c`'s socket, to `to` (NULL: the connected peer).
 * Returns 0, or -EMSGSIZE (longer than max_frame_len or than a datagram can be), -ENOTCONN, or
 * the send error. */
int coho__tdp_dgram_sendv(coho_tdp_pool_t *p, struct tdp_conn *c, const struct sockaddr_storage *to,
                          socklen_t tolen, const struct iovec *iov, int iovcnt)
{
    struct msghdr mh = {.msg_name = (void *)to,
                        .msg_namelen = to != NULL ? tolen : 0,
                        .msg_iov = (struct iovec *)iov,
                        .msg_iovlen = (size_t)iovcnt};
    size_t total = 0;
    ssize_t n;
    int i;

    for (i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    if (total > p->o.max_frame_len || total > TDP_DGRAM_MAX)
        return -EMSGSIZE;
    n = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
    if (n < 0)
        return errno == EBADF ? -ENOTCONN : -errno;
    if ((size_t)n != total)
        return -EMSGSIZE;
    return 0;
}

coho_tdp_pool_t *coho_tdp_udp_connect(const struct sockaddr *addr, socklen_t addrlen,
                                      const coho_tdp_opts_t *o)
{
    coho_tdp_pool_t *p;
    unsigned i;
    int err;

    p = coho__tdp_pool_create(TDP_CONNECT, addr, addrlen, o, &err);
    if (p == NULL) {
        errno = err;
        return NULL;
    }
    p->dgram = true;
    p->slots = calloc(o->conn_count, sizeof(*p->slots));
    if (p->slots == NULL) {
        err = ENOMEM;
        goto fail;
    }
    for (i = 0; i < o->conn_count; i++) {
        int fd = socket(addr->sa_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);

        if (fd < 0) {
            err = errno;
            goto fail;
        }
        if (connect(fd, addr, addrlen) != 0) {
            err = errno;
            close(fd);
            goto fail;
        }
        if (coho__tdp_serve_conn(p, fd, i) == 0) {
            err = ENOMEM;
            goto fail;
        }
    }
    return p;
fail:
    coho_tdp_close(p);
    errno = err;
    return NULL;
}

coho_tdp_pool_t *coho_tdp_udp_listen(const struct sockaddr *addr, socklen_t addrlen,
                                     const coho_tdp_opts_t *o)
{
    struct sockaddr_storage bound;
    socklen_t blen = sizeof(bound);
    coho_tdp_pool_t *p;
    int err, fd;

    p = coho__tdp_pool_create(TDP_LISTEN, addr, addrlen, o, &err);
    if (p == NULL) {
        errno = err;
        return NULL;
    }
    p->dgram = true;
    fd = socket(addr->sa_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    if (bind(fd, addr, addrlen) != 0 || getsockname(fd, (struct sockaddr *)&bound, &blen) != 0) {
        err = errno;
        close(fd);
        errno = err;
        goto fail;
    }
    if (bound.ss_family == AF_INET)
        p->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
    else if (bound.ss_family == AF_INET6)
        p->port = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
    if (coho__tdp_serve_conn(p, fd, 0) == 0) {
        errno = ENOMEM;
        goto fail;
    }
    return p;
fail:
    err = errno;
    coho_tdp_close(p);
    errno = err;
    return NULL;
}
