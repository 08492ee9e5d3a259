/* SPDX-License-Identifier: MIT */
/* The coho clients of the socket_ext benchmark: `--mode tdp` runs --inflight coroutines that
 * share a socket_ext connect pool of --conns connections; `--mode co` runs one coroutine per
 * connection (--inflight connections), each a blocking-style loop of send and recv (hooked).
 * Prints one RESULT line (tdp_common.h). */
#define _GNU_SOURCE /* accept4, SOCK_CLOEXEC */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <coho.h>
#include <coho/net.h>

#include "tdp_common.h"

#define MAX_ERRORS 1000

static coho_sched_t *sched;

struct client {
    struct tdp_opts o;
    struct tdp_meas m;
    struct sockaddr_in addr;
    coho_tdp_pool_t *pool;
    size_t max_body;
    coho_tdp_framer_t framer;
    unsigned live;  /* workers still running */
    unsigned ready; /* co mode: connected workers */
    bool go;
    uint64_t seq;
};

static bool give_up(struct client *c)
{
    return c->m.errors >= MAX_ERRORS;
}

/* Checks a response: length, magic, response bit, sequence number. */
static bool resp_ok(const unsigned char *hdr, size_t len, uint64_t seq, uint32_t want)
{
    struct tdp_hdr h;

    return len == TDP_HDR_LEN + (size_t)want && tdp_hdr_get(hdr, &h) == 0 &&
           (h.type & TDP_RESP_BIT) != 0 && h.seq == seq && h.body_len == want && h.arg == 0;
}

/* ---- socket_ext: many coroutines over a few pooled connections ---- */

static void tdp_worker(void *arg)
{
    struct client *c = arg;
    unsigned char req[TDP_HDR_LEN + 4096], hdr[TDP_HDR_LEN];
    coho_cbuf_t resp;

    coho_cbuf_init(&resp, NULL);
    while (!give_up(c)) {
        uint64_t now = tdp_now_ns(), conn, id;
        size_t len;

        if (tdp_meas_over(&c->m, now) || !tdp_meas_may_issue(&c->m, now))
            break;
        conn = coho_tdp_pick(c->pool, 1000);
        id = conn != 0 ? coho_tdp_req_id(c->pool) : 0;
        if (id == 0) {
            c->m.errors++;
            continue;
        }
        len = tdp_req_put(req, id, c->o.body, c->o.want);
        if (coho_tdp_call(c->pool, conn, id, req, len, 10000, &resp) != 0) {
            c->m.errors++;
            continue;
        }
        coho_cbuf_seek(&resp, 0, SEEK_SET);
        if (coho_cbuf_read(&resp, hdr, sizeof(hdr)) != (ssize_t)sizeof(hdr) ||
            !resp_ok(hdr, coho_cbuf_len(&resp), id, c->o.want)) {
            c->m.errors++;
            continue;
        }
        tdp_meas_done(&c->m, now, tdp_now_ns());
    }
    coho_cbuf_destroy(&resp);
    c->live--;
}

static int tdp_start(struct client *c)
{
    coho_tdp_opts_t o;
    coho_tdp_stats_t st;
    unsigned waited;

    c->max_body = TDP_BODY_MAX;
    coho_sock_framer_init(&c->framer, &c->max_body);
    coho_tdp_opts_init(&o);
    o.framers[0] = &c->framer;
    o.framer_count = 1;
    o.conn_count = c->o.conns;
    c->pool = coho_tdp_connect((struct sockaddr *)&c->addr, sizeof(c->addr), &o);
    if (c->pool == NULL) {
        perror("coho_tdp_connect");
        return -1;
    }
    for (waited = 0; waited < 5000; waited++) {
        coho_tdp_get_stats(c->pool, &st);
        if (st.conns_open == c->o.conns)
            return 0;
        coho_sleep_ms(1);
    }
    fprintf(stderr, "tdp_client: %llu of %u connections up after 5 s\n",
            (unsigned long long)st.conns_open, c->o.conns);
    return -1;
}

/* ---- one connection per in-flight request, blocking style ---- */

static void co_worker(void *arg)
{
    struct client *c = arg;
    unsigned char req[TDP_HDR_LEN + 4096], in[8192];
    size_t have = 0;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

    if (fd < 0 || connect(fd, (struct sockaddr *)&c->addr, sizeof(c->addr)) != 0) {
        perror("co_worker: connect");
        c->m.errors = MAX_ERRORS;
        goto out;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->ready++;
    while (!c->go && !give_up(c))
        coho_sleep_ms(1);
    while (!give_up(c)) {
        uint64_t now = tdp_now_ns(), seq = ++c->seq;
        size_t len, flen = 0;
        struct tdp_hdr h;

        if (tdp_meas_over(&c->m, now) || !tdp_meas_may_issue(&c->m, now))
            break;
        len = tdp_req_put(req, seq, c->o.body, c->o.want);
        if (sendn(fd, req, len, 0) != (ssize_t)len) {
            c->m.errors = MAX_ERRORS;
            break;
        }
        /* Read until one whole frame is buffered: a short read leaves the socket drained, so
         * the next recv parks at once (DESIGN.md, readiness per fd). */
        for (;;) {
            ssize_t n;

            if (have >= TDP_HDR_LEN) {
                if (tdp_hdr_get(in, &h) != 0)
                    break;
                flen = TDP_HDR_LEN + (size_t)h.body_len;
                if (flen > sizeof(in) || have >= flen)
                    break;
            }
            n = recv(fd, in + have, sizeof(in) - have, 0);
            if (n <= 0) {
                flen = 0;
                break;
            }
            have += (size_t)n;
        }
        if (flen == 0 || flen > sizeof(in) || have < flen || !resp_ok(in, flen, seq, c->o.want)) {
            c->m.errors = MAX_ERRORS;
            break;
        }
        memmove(in, in + flen, have - flen);
        have -= flen;
        tdp_meas_done(&c->m, now, tdp_now_ns());
    }
out:
    if (fd >= 0)
        close(fd);
    c->live--;
}

static void main_co(void *arg)
{
    struct client *c = arg;
    coho_spawn_opts_t so;
    bool tdp = strcmp(c->o.mode, "tdp") == 0;
    unsigned i, waited;

    coho_spawn_opts_init(&so);
    so.detached = true;
    so.stack_size = 64 * 1024;
    if (tdp) {
        if (tdp_start(c) != 0)
            exit(1);
        tdp_meas_init(&c->m, &c->o);
    }
    for (i = 0; i < c->o.inflight; i++) {
        c->live++;
        if (coho_spawn_ex(sched, tdp ? tdp_worker : co_worker, c, &so) == 0) {
            perror("coho_spawn_ex");
            exit(1);
        }
    }
    if (!tdp) {
        for (waited = 0; c->ready < c->o.inflight && !give_up(c) && waited < 10000; waited++)
            coho_sleep_ms(1);
        if (c->ready < c->o.inflight) {
            fprintf(stderr, "tdp_client: %u of %u connections up\n", c->ready, c->o.inflight);
            exit(1);
        }
        tdp_meas_init(&c->m, &c->o);
        c->go = true;
    }
    while (c->live > 0)
        coho_sleep_ms(5);
    if (tdp)
        coho_tdp_close(c->pool);
    tdp_meas_report(&c->m, &c->o);
}

int main(int argc, char **argv)
{
    static struct client c;
    tdp_opts_parse(argc, argv, &c.o);
    if (strcmp(c.o.mode, "tdp") != 0 && strcmp(c.o.mode, "co") != 0) {
        fprintf(stderr, "tdp_client: --mode tdp|co\n");
        return 2;
    }
    if (strcmp(c.o.mode, "co") == 0)
        c.o.conns = c.o.inflight;
    tdp_raise_nofile();
    c.addr.sin_family = AF_INET;
    c.addr.sin_port = htons((uint16_t)c.o.port);
    if (inet_pton(AF_INET, c.o.host, &c.addr.sin_addr) != 1) {
        fprintf(stderr, "tdp_client: bad --host\n");
        return 2;
    }
    sched = coho_sched_create(NULL);
    if (sched == NULL || coho_spawn(sched, main_co, &c) == 0) {
        perror("tdp_client");
        return 1;
    }
    coho_sched_run(sched);
    coho_sched_destroy(sched);
    return c.m.errors > 0 ? 1 : 0;
}
