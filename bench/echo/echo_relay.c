/* SPDX-License-Identifier: MIT */
/* Hand-written relay for the forward-path floor (tools/bench-game.py floor): one thread,
 * non-blocking sockets, level-triggered epoll. Each accepted client connection gets its own
 * connection to the upstream server, and bytes go through both ways untouched, so a request
 * pays what a gateway's forwarding cannot avoid: a recv from the client, a send upstream, a
 * recv of the answer and a send back. Bytes a destination cannot take at once are kept and the
 * source is not read until they are gone. A hang-up or an error on either side closes both.
 * Plain libc, no coho.
 *
 * Usage: echo_relay PORT UPSTREAM_PORT (both on 127.0.0.1). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/epoll.h>

#include "echo_common.h"

/* One direction of a pair: bytes read from `from` and not yet written to `to`. */
struct half {
    struct half *peer; /* the other direction */
    int from, to;
    size_t off, len;
    int dead; /* closed in this batch of events; freed after it */
    char buf[ECHO_BUF_SIZE];
};

static int ep;
static struct half *dead[256]; /* pairs closed in the current batch (at most one per event) */
static int ndead;

static void watch(int op, int fd, uint32_t events, struct half *h)
{
    struct epoll_event ev = {.events = events, .data.ptr = h};

    if (epoll_ctl(ep, op, fd, &ev) != 0)
        echo_die("echo_relay", "epoll_ctl");
}

static void pair_close(struct half *h)
{
    struct half *p = h->peer;

    epoll_ctl(ep, EPOLL_CTL_DEL, h->from, NULL);
    epoll_ctl(ep, EPOLL_CTL_DEL, p->from, NULL);
    close(h->from);
    close(p->from);
    h->dead = p->dead = 1;
    dead[ndead++] = h < p ? h : p; /* both halves are one allocation */
}

/* Writes what `h` holds; 1 when all went, 0 when `h->to` is full, -1 on error. */
static int half_flush(struct half *h)
{
    while (h->off < h->len) {
        ssize_t n = send(h->to, h->buf + h->off, h->len - h->off, MSG_NOSIGNAL);

        if (n < 0)
            return errno == EAGAIN || errno == EINTR ? 0 : -1;
        h->off += (size_t)n;
    }
    h->off = h->len = 0;
    return 1;
}

/* `h->to` is watched under the half that reads from it (its peer): EPOLLIN for reading, and
 * EPOLLOUT while `h` waits to write. `h->from` is read only while `h` holds nothing. */
static void rearm(struct half *h)
{
    struct half *p = h->peer;

    watch(EPOLL_CTL_MOD, h->from, (h->len ? 0 : EPOLLIN) | (p->len ? EPOLLOUT : 0), h);
    watch(EPOLL_CTL_MOD, p->from, (p->len ? 0 : EPOLLIN) | (h->len ? EPOLLOUT : 0), p);
}

/* Reads from `h->from` and passes it on; returns -1 when the pair is to close. */
static int half_read(struct half *h)
{
    ssize_t n = recv(h->from, h->buf, sizeof(h->buf), 0);
    int r;

    if (n == 0)
        return -1;
    if (n < 0)
        return errno == EAGAIN || errno == EINTR ? 0 : -1;
    h->off = 0;
    h->len = (size_t)n;
    r = half_flush(h);
    if (r < 0)
        return -1;
    if (r == 0)
        rearm(h);
    return 0;
}

static int connect_upstream(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd < 0)
        echo_die("echo_relay", "socket");
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
        echo_die("echo_relay", "connect to the upstream");
    echo_nodelay(fd);
    if (fcntl(fd, F_SETFL, O_NONBLOCK) != 0)
        echo_die("echo_relay", "fcntl");
    return fd;
}

int main(int argc, char **argv)
{
    int port = echo_port_arg(argc, argv), up_port = argc > 2 ? atoi(argv[2]) : 0, lfd;
    struct epoll_event evs[256];
    struct half listener = {.from = -1};

    if (up_port <= 0 || up_port > 65535) {
        fprintf(stderr, "usage: %s PORT UPSTREAM_PORT (both on 127.0.0.1)\n", argv[0]);
        return 2;
    }
    lfd = echo_listen("echo_relay", port, SOCK_NONBLOCK);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        echo_die("echo_relay", "epoll_create1");
    listener.from = lfd;
    watch(EPOLL_CTL_ADD, lfd, EPOLLIN, &listener);
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1), k;

        if (n < 0) {
            if (errno == EINTR)
                continue;
            echo_die("echo_relay", "epoll_wait");
        }
        for (k = 0; k < n; k++) {
            struct half *h = evs[k].data.ptr, *p;

            if (h == &listener) {
                int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
                struct half *pair;

                if (cfd < 0) {
                    if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
                        continue;
                    echo_die("echo_relay", "accept4");
                }
                pair = malloc(2 * sizeof(*pair));
                if (pair == NULL)
                    echo_die("echo_relay", "malloc");
                echo_nodelay(cfd);
                pair[0] = (struct half){.peer = &pair[1], .from = cfd};
                pair[1] = (struct half){.peer = &pair[0], .to = cfd};
                pair[1].from = pair[0].to = connect_upstream(up_port);
                watch(EPOLL_CTL_ADD, pair[0].from, EPOLLIN, &pair[0]);
                watch(EPOLL_CTL_ADD, pair[1].from, EPOLLIN, &pair[1]);
                continue;
            }
            if (h->dead)
                continue;
            p = h->peer;
            if (evs[k].events & (EPOLLERR | EPOLLHUP)) {
                pair_close(h);
                continue;
            }
            if (evs[k].events & EPOLLOUT) {
                /* h->from is p->to: the peer's pending bytes can go now. */
                int r = half_flush(p);

                if (r < 0) {
                    pair_close(h);
                    continue;
                }
                if (r > 0)
                    rearm(h);
            }
            if ((evs[k].events & EPOLLIN) && h->len == 0 && half_read(h) < 0)
                pair_close(h);
        }
        while (ndead > 0)
            free(dead[--ndead]);
    }
}
