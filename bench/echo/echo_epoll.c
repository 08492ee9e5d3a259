/* SPDX-License-Identifier: MIT */
/* Baseline echo server: one thread, non-blocking sockets, level-triggered epoll. Per request it
 * pays one recv and one send plus its share of an epoll_wait; a reply the socket cannot take at
 * once is kept and sent on EPOLLOUT. Plain libc, no coho. */
#define _GNU_SOURCE
#include <sys/epoll.h>

#include "echo_common.h"

struct conn {
    int fd;
    size_t off, len; /* unsent part of buf */
    char buf[ECHO_BUF_SIZE];
};

static void conn_close(int ep, struct conn *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c);
}

/* Sends what is pending; returns 1 when all went, 0 when the socket is full, -1 on error. */
static int conn_flush(struct conn *c)
{
    while (c->off < c->len) {
        ssize_t n = send(c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);

        if (n < 0)
            return errno == EAGAIN ? 0 : errno == EINTR ? 0 : -1;
        c->off += (size_t)n;
    }
    c->off = c->len = 0;
    return 1;
}

int main(int argc, char **argv)
{
    int port = echo_port_arg(argc, argv);
    int lfd = echo_listen("echo_epoll", port, SOCK_NONBLOCK);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event evs[512], ev = {.events = EPOLLIN, .data.ptr = NULL};

    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) != 0)
        echo_die("echo_epoll", "epoll");
    for (;;) {
        int n = epoll_wait(ep, evs, 512, -1), i;

        if (n < 0) {
            if (errno == EINTR)
                continue;
            echo_die("echo_epoll", "epoll_wait");
        }
        for (i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;

            if (c == NULL) { /* the listening socket */
                int fd;

                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    c = malloc(sizeof(*c));
                    if (c == NULL)
                        echo_die("echo_epoll", "malloc");
                    c->fd = fd;
                    c->off = c->len = 0;
                    echo_nodelay(fd);
                    ev.events = EPOLLIN;
                    ev.data.ptr = c;
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
                        echo_die("echo_epoll", "epoll_ctl");
                }
                continue;
            }
            if (c->len > 0) { /* EPOLLOUT: finish the pending reply, then read again */
                int rc = conn_flush(c);

                if (rc < 0) {
                    conn_close(ep, c);
                } else if (rc > 0) {
                    ev.events = EPOLLIN;
                    ev.data.ptr = c;
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                }
                continue;
            }
            {
                ssize_t r = recv(c->fd, c->buf, sizeof(c->buf), 0);
                int rc;

                if (r < 0 && (errno == EAGAIN || errno == EINTR))
                    continue;
                if (r <= 0) {
                    conn_close(ep, c);
                    continue;
                }
                c->len = (size_t)r;
                rc = conn_flush(c);
                if (rc < 0) {
                    conn_close(ep, c);
                } else if (rc == 0) {
                    ev.events = EPOLLOUT;
                    ev.data.ptr = c;
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                }
            }
        }
    }
}
