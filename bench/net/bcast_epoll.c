/* SPDX-License-Identifier: MIT */
/* Baseline of the broadcast benchmark: a hand-written single-thread epoll server (plain libc,
 * no coho) speaking net_srv's bcast protocol. A frame whose first payload byte is 'G' makes it
 * write one 64-byte stamped frame to every connection with send(MSG_DONTWAIT) in one loop and
 * print how long the loop took; any other frame is echoed.
 *
 * usage: bcast_epoll PORT (127.0.0.1) */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net_common.h"

#define IN_MAX 64 /* client frames are tiny */

struct conn {
    int fd;
    size_t len;
    unsigned char in[IN_MAX];
};

static struct conn **conns;
static size_t nconns, cap;

static void die(const char *what)
{
    fprintf(stderr, "bcast_epoll: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void drop(int ep, struct conn *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    for (size_t i = 0; i < nconns; i++)
        if (conns[i] == c) {
            conns[i] = conns[--nconns];
            break;
        }
    free(c);
}

static void broadcast(uint32_t round)
{
    unsigned char msg[NB_BCAST_FRAME];
    size_t failed = 0;
    uint64_t t0 = nb_now_ns(), t1;

    nb_put_stamp(msg, sizeof(msg), t0, round);
    for (size_t i = 0; i < nconns; i++)
        if (send(conns[i]->fd, msg, sizeof(msg), MSG_DONTWAIT | MSG_NOSIGNAL) !=
            (ssize_t)sizeof(msg))
            failed++;
    t1 = nb_now_ns();
    printf("round=%u members=%zu queued_us=%.1f all_sent_us=%.1f failed=%zu\n", round, nconns,
           (double)(t1 - t0) / 1e3, (double)(t1 - t0) / 1e3, failed);
    fflush(stdout);
}

/* Handles the whole frames in c->in; -1 when the connection must go. */
static int frames(struct conn *c)
{
    size_t off = 0;

    while (c->len - off >= 4) {
        size_t flen = 4 + nb_get_u32(c->in + off);
        if (flen > IN_MAX)
            return -1;
        if (c->len - off < flen)
            break;
        if (flen > 4 && c->in[off + 4] == 'G')
            broadcast(flen >= 9 ? nb_get_u32(c->in + off + 5) : 0);
        else if (send(c->fd, c->in + off, flen, MSG_DONTWAIT | MSG_NOSIGNAL) != (ssize_t)flen)
            return -1;
        off += flen;
    }
    memmove(c->in, c->in + off, c->len - off);
    c->len -= off;
    return 0;
}

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 0, one = 1, lfd, ep;
    struct sockaddr_in a = {.sin_family = AF_INET};
    struct epoll_event evs[512], ev = {.events = EPOLLIN, .data.ptr = NULL};

    if (port <= 0 || port > 65535) {
        fprintf(stderr, "usage: bcast_epoll PORT\n");
        return 2;
    }
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (lfd < 0)
        die("socket");
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(lfd, 4096) != 0)
        die("bind/listen");
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) != 0)
        die("epoll");
    printf("port=%d\n", port);
    fflush(stdout);
    for (;;) {
        int n = epoll_wait(ep, evs, 512, -1);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;

            if (c == NULL) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    if (nconns == cap) {
                        cap = cap ? cap * 2 : 1024;
                        conns = realloc(conns, cap * sizeof(*conns));
                        if (conns == NULL)
                            die("realloc");
                    }
                    c = calloc(1, sizeof(*c));
                    if (c == NULL)
                        die("calloc");
                    c->fd = fd;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                    ev.events = EPOLLIN;
                    ev.data.ptr = c;
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
                        die("epoll_ctl");
                    conns[nconns++] = c;
                }
                continue;
            }
            ssize_t r = recv(c->fd, c->in + c->len, IN_MAX - c->len, 0);
            if (r < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (r <= 0) {
                drop(ep, c);
                continue;
            }
            c->len += (size_t)r;
            if (frames(c) != 0)
                drop(ep, c);
        }
    }
}
