/* SPDX-License-Identifier: MIT */
/* Dial: connect by host name with a timeout, over the hooked getaddrinfo, connect and poll (a
 * coroutine parks; a plain thread blocks as with libc). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/internal.h"

/* One attempt: a non-blocking connect waited for with poll, then back to blocking. */
static int dial_one(const struct addrinfo *ai, int64_t deadline)
{
    int fd, err = 0, fl;
    socklen_t el = sizeof(err);

    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0)
        return -errno;
    fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        if (errno != EINPROGRESS) {
            err = errno;
            goto fail;
        }
        for (;;) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            int wait = -1, n;
            if (deadline >= 0) {
                int64_t left = deadline - coho__net_now_ms();
                if (left <= 0) {
                    err = ETIMEDOUT;
                    goto fail;
                }
                wait = left > 1000000 ? 1000000 : (int)left;
            }
            n = poll(&p, 1, wait);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                err = errno;
                goto fail;
            }
            if (n > 0)
                break;
        }
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0)
            err = errno;
        if (err != 0)
            goto fail;
    }
    fcntl(fd, F_SETFL, fl);
    if (ai->ai_socktype == SOCK_STREAM) {
        int one = 1;

        /* As the server side's sockets: a message written in one call leaves at once instead
         * of waiting for the acknowledgement of the one before (Nagle). */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    return fd;

fail:
    close(fd);
    return -err;
}

int coho_dial(const char *host_port, int64_t timeout_ms)
{
    char host[256];
    const char *port, *h = host_port;
    size_t hlen;
    struct addrinfo hints, *res = NULL;
    int64_t deadline = timeout_ms < 0 ? -1 : coho__net_now_ms() + timeout_ms;
    int rc = -EHOSTUNREACH;

    if (host_port == NULL)
        return coho__net_ret(-EINVAL);
    if (host_port[0] == '[') {
        const char *end = strchr(host_port, ']');
        if (end == NULL || end[1] != ':')
            return coho__net_ret(-EINVAL);
        h = host_port + 1;
        hlen = (size_t)(end - h);
        port = end + 2;
    } else {
        const char *colon = strrchr(host_port, ':');
        if (colon == NULL)
            return coho__net_ret(-EINVAL);
        hlen = (size_t)(colon - host_port);
        port = colon + 1;
    }
    if (hlen == 0 || hlen >= sizeof(host) || *port == '\0')
        return coho__net_ret(-EINVAL);
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    if (getaddrinfo(host, port, &hints, &res) != 0 || res == NULL)
        return coho__net_ret(-EHOSTUNREACH);
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        rc = dial_one(ai, deadline);
        if (rc >= 0 || rc == -ETIMEDOUT)
            break;
    }
    freeaddrinfo(res);
    return coho__net_ret(rc);
}
