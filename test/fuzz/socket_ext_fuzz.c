/* SPDX-License-Identifier: MIT */
/* libFuzzer target: arbitrary bytes through the socket_ext receive path (cbuf, the sock
 * framer, dispatch of requests and responses) over a socketpair attached to a listen pool.
 * Whatever arrives, the pool must neither crash nor leak, answer every request frame it
 * accepted, and count a malformed frame as one protocol error. The first input byte picks
 * the write chunk size, so frames arrive split at varying points. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <coho.h>
#include <coho/net.h>

static size_t max_body = 1u << 16;
static coho_tdp_framer_t framer;

struct run {
    const uint8_t *data;
    size_t size;
    int peer;
    unsigned answered;
    coho_tdp_stats_t st;
};

static coho_sched_t *sched;

static void on_req(coho_tdp_req_t *rq, void *user)
{
    struct run *r = user;
    unsigned char hdr[COHO_SOCK_HDR_LEN];
    coho_sock_hdr_t h = {.magic = COHO_SOCK_MAGIC, .type = COHO_SOCK_RESPONSE, .seq = rq->req_id};

    coho_sock_hdr_encode(&h, hdr);
    if (coho_tdp_send(rq->pool, rq->conn_id, 0, hdr, sizeof(hdr)) == 0)
        r->answered++;
    coho_tdp_req_free(rq);
}

static void writer(void *arg)
{
    struct run *r = arg;
    size_t chunk = r->size > 0 ? (size_t)r->data[0] % 61 + 1 : 1, off = 0;
    char sink[4096];

    while (off < r->size) {
        size_t n = r->size - off < chunk ? r->size - off : chunk;

        if (sendn(r->peer, r->data + off, n, MSG_NOSIGNAL) != (ssize_t)n)
            break;
        off += n;
        coho_yield(); /* let the receive coroutine see a partial frame */
    }
    shutdown(r->peer, SHUT_WR);
    while (recv(r->peer, sink, sizeof(sink), 0) > 0)
        ;
    close(r->peer);
}

static void fuzz_main(void *arg)
{
    struct run *r = arg;
    struct sockaddr_in a = {.sin_family = AF_INET};
    coho_tdp_opts_t o;
    coho_tdp_pool_t *p;
    int sv[2];
    uint64_t w;

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    coho_tdp_opts_init(&o);
    o.framers[0] = &framer;
    o.framer_count = 1;
    o.max_frame_len = COHO_SOCK_HDR_LEN + max_body;
    o.on_req = on_req;
    o.user = r;
    p = coho_tdp_listen((struct sockaddr *)&a, sizeof(a), &o);
    if (p == NULL)
        abort();
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        abort();
    r->peer = sv[1];
    if (coho_tdp_attach(p, sv[0]) == 0)
        abort();
    w = coho_spawn(sched, writer, r);
    coho_join(w, -1);
    coho_tdp_get_stats(p, &r->st);
    coho_tdp_close(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct run r = {.data = data, .size = size};

    if (sched == NULL) {
        coho_sock_framer_init(&framer, &max_body);
        sched = coho_sched_create(NULL);
        if (sched == NULL)
            abort();
    }
    coho_spawn(sched, fuzz_main, &r);
    if (coho_sched_run(sched) != 0)
        abort();
    /* Every request handed over was answered; at most one protocol error per connection. */
    if (r.answered != r.st.requests_in || r.st.protocol_errors > 1 || r.st.conns_total != 1)
        abort();
    return 0;
}
