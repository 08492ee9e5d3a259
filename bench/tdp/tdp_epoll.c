/* SPDX-License-Identifier: MIT */
/* The raw baseline of the socket_ext benchmark: a hand-written epoll server and client for the
 * same frames, without coho. `tdp_epoll server [--port P]` answers every whole frame of a read in
 * one write; `tdp_epoll client --port P --conns C --inflight N ...` keeps N requests in flight
 * spread over C connections (pipelined when N > C), sends the requests that a read's responses
 * free up in one write per connection, and prints one RESULT line (tdp_common.h). */
#define _GNU_SOURCE /* accept4, SOCK_CLOEXEC */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tdp_common.h"

#define IN_CAP 65536
#define EVENTS 1024

struct econn {
    int fd;
    bool out_armed; /* EPOLLOUT registered: the last write was partial */
    size_t in_len;
    unsigned char *out;
    size_t out_off, out_len, out_cap;
    unsigned char in[IN_CAP];
};

static int ep;

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static struct econn *econn_new(int fd)
{
    struct econn *c = malloc(sizeof(*c));
    struct epoll_event ev = {.events = EPOLLIN};
    int one = 1;

    if (c == NULL)
        die("malloc");
    memset(c, 0, offsetof(struct econn, in));
    c->fd = fd;
    c->out_cap = 16384;
    c->out = malloc(c->out_cap);
    if (c->out == NULL)
        die("malloc");
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    ev.data.ptr = c;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
        die("epoll_ctl");
    return c;
}

static void econn_free(struct econn *c)
{
    close(c->fd);
    free(c->out);
    free(c);
}

/* Room for `n` more bytes of output. */
static unsigned char *out_reserve(struct econn *c, size_t n)
{
    if (c->out_cap - c->out_len < n && c->out_off > 0) {
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
    }
    while (c->out_cap - c->out_len < n) {
        c->out_cap *= 2;
        c->out = realloc(c->out, c->out_cap);
        if (c->out == NULL)
            die("realloc");
    }
    return c->out + c->out_len;
}

/* Writes what is queued; arms EPOLLOUT while the socket is full. Returns 0, or -1 when broken. */
static int flush(struct econn *c)
{
    struct epoll_event ev = {.data.ptr = c};

    while (c->out_off < c->out_len) {
        ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                return -1;
            if (!c->out_armed) {
                ev.events = EPOLLIN | EPOLLOUT;
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                c->out_armed = true;
            }
            return 0;
        }
        c->out_off += (size_t)n;
    }
    c->out_off = c->out_len = 0;
    if (c->out_armed) {
        ev.events = EPOLLIN;
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        c->out_armed = false;
    }
    return 0;
}

/* One read into the input buffer. Returns bytes read, 0 for nothing now, -1 at EOF or error. */
static ssize_t fill(struct econn *c)
{
    ssize_t n = read(c->fd, c->in + c->in_len, IN_CAP - c->in_len);

    if (n > 0) {
        c->in_len += (size_t)n;
        return n;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    return -1;
}

/* ---- server ---- */

/* Answers every whole request buffered. Returns 0, or -1 for a malformed frame. */
static int serve(struct econn *c)
{
    size_t off = 0;

    while (c->in_len - off >= TDP_HDR_LEN) {
        struct tdp_hdr h;
        size_t flen;

        if (tdp_hdr_get(c->in + off, &h) != 0 || TDP_HDR_LEN + (size_t)h.body_len > IN_CAP)
            return -1;
        flen = TDP_HDR_LEN + (size_t)h.body_len;
        if (c->in_len - off < flen)
            break;
        c->out_len += tdp_resp_put(out_reserve(c, TDP_HDR_LEN + (size_t)h.arg), &h);
        off += flen;
    }
    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
    return 0;
}

static _Noreturn void server(const struct tdp_opts *o)
{
    struct sockaddr_in addr = {.sin_family = AF_INET};
    socklen_t alen = sizeof(addr);
    struct epoll_event evs[EVENTS], ev = {.events = EPOLLIN, .data.ptr = NULL};
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), one = 1;

    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons((uint16_t)o->port);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) != 0 ||
        listen(lfd, 4096) != 0 || getsockname(lfd, (struct sockaddr *)&addr, &alen) != 0)
        die("listen");
    if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) != 0)
        die("epoll_ctl");
    printf("port %u\n", ntohs(addr.sin_port));
    fflush(stdout);
    for (;;) {
        int n = epoll_wait(ep, evs, EVENTS, -1), i;

        for (i = 0; i < n; i++) {
            struct econn *c = evs[i].data.ptr;

            if (c == NULL) {
                int fd;

                while ((fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0)
                    econn_new(fd);
                continue;
            }
            if ((evs[i].events & EPOLLOUT) && flush(c) != 0) {
                econn_free(c);
                continue;
            }
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                if (fill(c) < 0 || serve(c) != 0 || flush(c) != 0)
                    econn_free(c);
            }
        }
    }
}

/* ---- client ---- */

struct lane {
    struct econn *conn;
    uint64_t seq; /* of the request in flight; lane index + k * inflight */
    uint64_t sent;
    bool busy;
};

static struct lane *lanes;

static void issue(const struct tdp_opts *o, struct tdp_meas *m, unsigned i, uint64_t now)
{
    struct lane *l = &lanes[i];
    struct econn *c = l->conn;

    if (!tdp_meas_may_issue(m, now)) {
        l->busy = false;
        return;
    }
    l->seq += o->inflight;
    l->sent = now;
    l->busy = true;
    c->out_len += tdp_req_put(out_reserve(c, TDP_HDR_LEN + o->body), l->seq, o->body, o->want);
}

/* Takes every whole response buffered and issues the lanes' next requests. */
static int collect(const struct tdp_opts *o, struct tdp_meas *m, struct econn *c, uint64_t now)
{
    size_t off = 0;

    while (c->in_len - off >= TDP_HDR_LEN) {
        struct tdp_hdr h;
        size_t flen;
        struct lane *l;

        if (tdp_hdr_get(c->in + off, &h) != 0 || TDP_HDR_LEN + (size_t)h.body_len > IN_CAP)
            return -1;
        flen = TDP_HDR_LEN + (size_t)h.body_len;
        if (c->in_len - off < flen)
            break;
        l = &lanes[h.seq % o->inflight];
        if (!l->busy || l->seq != h.seq || l->conn != c || !(h.type & TDP_RESP_BIT) ||
            h.body_len != o->want) {
            m->errors++;
        } else {
            tdp_meas_done(m, l->sent, now);
            issue(o, m, (unsigned)(h.seq % o->inflight), now);
        }
        off += flen;
    }
    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
    return 0;
}

static int client(const struct tdp_opts *o)
{
    struct sockaddr_in addr = {.sin_family = AF_INET};
    struct epoll_event evs[EVENTS];
    struct econn **conns = calloc(o->conns, sizeof(*conns));
    struct tdp_meas m;
    uint64_t now;
    unsigned i;

    lanes = calloc(o->inflight, sizeof(*lanes));
    if (conns == NULL || lanes == NULL)
        die("calloc");
    addr.sin_port = htons((uint16_t)o->port);
    if (inet_pton(AF_INET, o->host, &addr.sin_addr) != 1) {
        fprintf(stderr, "tdp_epoll: bad --host\n");
        return 2;
    }
    for (i = 0; i < o->conns; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0)
            die("connect");
        conns[i] = econn_new(fd);
    }
    tdp_meas_init(&m, o);
    now = tdp_now_ns();
    for (i = 0; i < o->inflight; i++) {
        lanes[i].conn = conns[i % o->conns];
        lanes[i].seq = i; /* issue() adds inflight: seq % inflight stays i */
        issue(o, &m, i, now);
    }
    for (i = 0; i < o->conns; i++)
        if (flush(conns[i]) != 0)
            die("write");
    while (!tdp_meas_over(&m, now)) {
        int n = epoll_wait(ep, evs, EVENTS, 100), k;

        now = tdp_now_ns();
        for (k = 0; k < n; k++) {
            struct econn *c = evs[k].data.ptr;

            if ((evs[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) &&
                (fill(c) < 0 || collect(o, &m, c, now) != 0)) {
                fprintf(stderr, "tdp_epoll: connection lost\n");
                m.errors++;
                goto done;
            }
            if (flush(c) != 0) {
                m.errors++;
                goto done;
            }
        }
    }
done:
    tdp_meas_report(&m, o);
    for (i = 0; i < o->conns; i++)
        econn_free(conns[i]);
    free(conns);
    free(lanes);
    return m.errors > 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
    struct tdp_opts o;
    bool is_server;

    if (argc < 2 || (strcmp(argv[1], "server") != 0 && strcmp(argv[1], "client") != 0)) {
        fprintf(stderr, "usage: %s server|client [options]\n", argv[0]);
        return 2;
    }
    is_server = strcmp(argv[1], "server") == 0;
    tdp_opts_parse(argc - 1, argv + 1, &o);
    o.mode = "epoll";
    tdp_raise_nofile();
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1");
    if (is_server)
        server(&o);
    return client(&o);
}
