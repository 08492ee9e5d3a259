/* SPDX-License-Identifier: MIT */
/* Load client for the echo server comparison: C connections on one thread (epoll,
 * level-triggered), each doing ping-pong rounds of S bytes; prints req/s and latency
 * percentiles. Plain libc, no coho, so every server is driven by the same program.
 *
 * With -r RATE the load is paced instead: request slot j falls at start + j / RATE and goes to
 * connection j % C, so every connection sends once per C / RATE seconds (as coho-bots --rate
 * does). A connection whose previous reply has not come back by its slot sends as soon as it
 * does. Latency runs from the send. -t TICK_US moves every slot up to the next multiple of
 * TICK_US after the start, as a timer wheel of that tick would (coho's is 1 ms): the sends of
 * a tick leave together. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Latency histogram: 1 us buckets up to LAT_MAX_US, one overflow bucket. */
#define LAT_MAX_US 1000000u

struct conn {
    int fd;
    size_t sent; /* bytes of the current request written */
    size_t got;  /* bytes of the current reply read */
    uint64_t t0_ns;
    int busy; /* a request is out */
    int owed; /* its paced slot passed while busy: send when the reply is in */
};

static uint32_t *lat_hist;
static uint64_t lat_count;

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
    fprintf(stderr, "echo_client: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void lat_add(uint64_t ns)
{
    uint64_t us = ns / 1000u;

    lat_hist[us < LAT_MAX_US ? us : LAT_MAX_US]++;
    lat_count++;
}

/* The smallest bucket whose cumulative count reaches `q` of all samples, in us. */
static double lat_quantile(double q)
{
    uint64_t need = (uint64_t)(q * (double)lat_count + 0.5), seen = 0;
    uint32_t i;

    if (need == 0)
        need = 1;
    for (i = 0; i <= LAT_MAX_US; i++) {
        seen += lat_hist[i];
        if (seen >= need)
            return (double)i + 0.5;
    }
    return (double)LAT_MAX_US;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: echo_client [-h host] -p port [-c conns] [-s bytes] [-d secs]\n"
            "                   [-w warmup_secs] [-n total_requests] [-r rate [-t tick_us]]\n"
            "  -n: stop after that many replies (no warmup, no duration)\n"
            "  -r: paced, RATE requests a second over all connections (default: each\n"
            "      connection sends its next request when the reply is in)\n"
            "  -t: with -r, send times rounded up to multiples of TICK_US\n");
    exit(2);
}

/* Writes what is left of `c`'s request; returns 0 if the socket filled up first. */
static int conn_send(struct conn *c, const char *msg, size_t size)
{
    while (c->sent < size) {
        ssize_t n = send(c->fd, msg + c->sent, size - c->sent, MSG_NOSIGNAL);

        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return 0;
            die("send");
        }
        c->sent += (size_t)n;
    }
    return 1;
}

/* Starts a request on `c`: stamps it and writes it, waiting for EPOLLOUT if the socket is full. */
static void conn_start(int ep, struct conn *c, const char *msg, size_t size, uint64_t t)
{
    c->t0_ns = t;
    c->sent = 0;
    c->busy = 1;
    if (!conn_send(c, msg, size)) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};

        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    }
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    int port = 0, nconn = 1, opt, ep, i, one = 1;
    size_t size = 32;
    double secs = 3.0, warm = 0.5;
    uint64_t total = 0, replies = 0, measured = 0, t_start, t_meas = 0, t_end;
    struct conn *conns;
    struct epoll_event evs[256];
    char *msg, *rbuf;
    int measuring;
    double rate = 0;
    uint64_t tick_ns = 0, slot = 0, slot_ns = 0;

    while ((opt = getopt(argc, argv, "h:p:c:s:d:w:n:r:t:")) != -1) {
        switch (opt) {
        case 'h':
            host = optarg;
            break;
        case 'p':
            port = atoi(optarg);
            break;
        case 'c':
            nconn = atoi(optarg);
            break;
        case 's':
            size = (size_t)strtoul(optarg, NULL, 0);
            break;
        case 'd':
            secs = atof(optarg);
            break;
        case 'w':
            warm = atof(optarg);
            break;
        case 'n':
            total = strtoull(optarg, NULL, 0);
            break;
        case 'r':
            rate = atof(optarg);
            break;
        case 't':
            tick_ns = strtoull(optarg, NULL, 0) * 1000u;
            break;
        default:
            usage();
        }
    }
    if (port <= 0 || nconn <= 0 || size == 0 || rate < 0 || (tick_ns != 0 && rate == 0))
        usage();
    lat_hist = calloc(LAT_MAX_US + 1, sizeof(*lat_hist));
    conns = calloc((size_t)nconn, sizeof(*conns));
    msg = malloc(size);
    rbuf = malloc(size);
    if (lat_hist == NULL || conns == NULL || msg == NULL || rbuf == NULL)
        die("malloc");
    memset(msg, 'x', size);

    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1");
    for (i = 0; i < nconn; i++) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &conns[i]};
        int fd = socket(AF_INET, SOCK_STREAM, 0);

        if (fd < 0)
            die("socket");
        inet_pton(AF_INET, host, &a.sin_addr);
        if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
            die("connect");
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (fcntl(fd, F_SETFL, O_NONBLOCK) != 0)
            die("fcntl");
        conns[i].fd = fd;
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
            die("epoll_ctl");
    }

    /* Every connection sends its first request; then each reply triggers the next. */
    t_start = now_ns();
    measuring = total != 0 || warm <= 0;
    if (measuring)
        t_meas = t_start;
    if (rate == 0) {
        for (i = 0; i < nconn; i++)
            conn_start(ep, &conns[i], msg, size, t_start);
    }
    for (;;) {
        struct timespec wait = {1, 0};
        int n, k;
        uint64_t t;

        if (rate != 0) {
            /* Every slot that is due: its connection sends now, or when its reply is in. */
            for (t = now_ns();; slot++) {
                struct conn *c = &conns[slot % (uint64_t)nconn];

                slot_ns = (uint64_t)((double)slot * 1e9 / rate);
                if (tick_ns != 0)
                    slot_ns = (slot_ns + tick_ns - 1) / tick_ns * tick_ns;
                slot_ns += t_start;
                if (slot_ns > t)
                    break;
                if (c->busy)
                    c->owed = 1;
                else
                    conn_start(ep, c, msg, size, t);
            }
            wait.tv_sec = 0;
            wait.tv_nsec = (long)(slot_ns - t < 1000000000u ? slot_ns - t : 999999999u);
        }
        n = epoll_pwait2(ep, evs, 256, &wait, NULL);
        t = now_ns();

        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        if (total != 0) {
            if (replies >= total)
                break;
        } else if (!measuring && t - t_start >= (uint64_t)(warm * 1e9)) {
            measuring = 1;
            t_meas = t;
        } else if (measuring && t - t_meas >= (uint64_t)(secs * 1e9)) {
            break;
        }
        for (k = 0; k < n; k++) {
            struct conn *c = evs[k].data.ptr;

            if (evs[k].events & EPOLLOUT) {
                if (conn_send(c, msg, size)) {
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};

                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                }
            }
            if (!(evs[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
                continue;
            for (;;) {
                ssize_t r = recv(c->fd, rbuf, size - c->got, 0);

                if (r < 0) {
                    if (errno == EAGAIN || errno == EINTR)
                        break;
                    die("recv");
                }
                if (r == 0) {
                    fprintf(stderr, "echo_client: server closed a connection\n");
                    exit(1);
                }
                c->got += (size_t)r;
                if (c->got < size)
                    continue; /* a partial reply: read on, the rest may be queued */
                replies++;
                t = now_ns();
                if (measuring) {
                    measured++;
                    lat_add(t - c->t0_ns);
                }
                c->got = 0;
                c->busy = 0;
                if (total != 0 && replies >= total)
                    break;
                if (rate == 0 || c->owed) {
                    c->owed = 0;
                    conn_start(ep, c, msg, size, t);
                }
                break; /* ping-pong: nothing more can be queued for this connection */
            }
        }
    }
    t_end = now_ns();
    {
        double el = (double)(t_end - t_meas) / 1e9;

        printf("conns=%d size=%zu rate=%.0f tick_us=%llu replies=%llu measured=%llu secs=%.3f "
               "rps=%.0f p50_us=%.1f p99_us=%.1f p999_us=%.1f\n",
               nconn, size, rate, (unsigned long long)(tick_ns / 1000u),
               (unsigned long long)replies, (unsigned long long)measured, el, (double)measured / el,
               lat_quantile(0.50), lat_quantile(0.99), lat_quantile(0.999));
    }
    for (i = 0; i < nconn; i++)
        close(conns[i].fd);
    close(ep);
    free(conns);
    free(msg);
    free(rbuf);
    free(lat_hist);
    return 0;
}
