/* SPDX-License-Identifier: MIT */
/* socket_ext group commit: frames that concurrent senders hand to one connection leave in one
 * write, and senders queued behind a write fail (never hang) when the connection breaks. */
/* ctest: TIMEOUT=60 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <coho.h>
#include <coho/net.h>

#include "test/support/cmocka_main.h"
#include "test/unit/net/socket_ext_check.h"

#define NREQ     10
#define BIG_BODY (256u * 1024u)

static size_t max_body = 1u << 20;
static coho_tdp_framer_t sock_framer;
static unsigned char body_bytes[BIG_BODY]; /* a pattern, filled by main */

struct server {
    coho_tdp_pool_t *pool;
    bool inline_answers; /* answer from on_req itself, not from a spawned coroutine */
    int done;
    int failed;
    int last_errno;
};

static struct server *the_server;

/* Answers one request with `arg` body bytes; counts the outcome of the send. */
static void handle(void *arg)
{
    coho_tdp_req_t *rq = arg;
    unsigned char hdr[COHO_SOCK_HDR_LEN];
    coho_sock_hdr_t h;
    struct iovec iov[2];

    if (!CO_CHECK_EQ(coho_cbuf_read(&rq->frame, hdr, sizeof(hdr)), (ssize_t)sizeof(hdr)) ||
        !CO_CHECK_EQ(coho_sock_hdr_decode(hdr, &h), 0)) {
        coho_tdp_req_free(rq);
        return;
    }
    h.type |= COHO_SOCK_RESPONSE;
    h.body_len = h.arg;
    h.arg = 0;
    coho_sock_hdr_encode(&h, hdr);
    iov[0].iov_base = hdr;
    iov[0].iov_len = sizeof(hdr);
    iov[1].iov_base = body_bytes;
    iov[1].iov_len = h.body_len;
    if (coho_tdp_sendv(rq->pool, rq->conn_id, 0, iov, h.body_len > 0 ? 2 : 1) != 0) {
        the_server->failed++;
        the_server->last_errno = errno;
    }
    the_server->done++;
    coho_tdp_req_free(rq);
}

static void on_req(coho_tdp_req_t *rq, void *user)
{
    struct server *sv = user;

    if (sv->inline_answers)
        handle(rq);
    else
        CO_CHECK_NE(co_spawn(handle, rq), 0);
}

static void server_open(struct server *sv)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    coho_tdp_opts_t o;

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    coho_sock_framer_init(&sock_framer, &max_body);
    coho_tdp_opts_init(&o);
    o.framers[0] = &sock_framer;
    o.framer_count = 1;
    o.on_req = on_req;
    o.user = sv;
    sv->pool = coho_tdp_listen((struct sockaddr *)&a, sizeof(a), &o);
    CO_CHECK(sv->pool != NULL);
    the_server = sv;
}

/* NREQ request frames, seq 1..NREQ, each asking for `want` body bytes, in one buffer. */
static size_t requests(unsigned char *buf, uint32_t want)
{
    size_t i;

    for (i = 0; i < NREQ; i++) {
        coho_sock_hdr_t h = {.magic = COHO_SOCK_MAGIC, .seq = i + 1, .arg = want};

        coho_sock_hdr_encode(&h, buf + i * COHO_SOCK_HDR_LEN);
    }
    return NREQ * COHO_SOCK_HDR_LEN;
}

static void one_write_main(void *arg)
{
    struct server *sv = arg;
    unsigned char req[NREQ * COHO_SOCK_HDR_LEN], rec[4096];
    bool seen[NREQ + 1] = {false};
    int sp[2];
    ssize_t n;
    size_t i;

    server_open(sv);
    /* SOCK_SEQPACKET keeps write boundaries: one record read is one write of the pool. */
    CO_CHECK_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp), 0);
    CO_CHECK_NE(coho_tdp_attach(sv->pool, sp[0]), 0);
    CO_CHECK_EQ(send(sp[1], req, requests(req, 16), 0), (ssize_t)sizeof(req));
    n = recv(sp[1], rec, sizeof(rec), 0);
    CO_CHECK_EQ(n, NREQ * (COHO_SOCK_HDR_LEN + 16));
    for (i = 0; i < NREQ; i++) {
        coho_sock_hdr_t h;

        CO_CHECK_EQ(coho_sock_hdr_decode(rec + i * (COHO_SOCK_HDR_LEN + 16), &h), 0);
        CO_CHECK(h.type & COHO_SOCK_RESPONSE);
        CO_CHECK(h.seq >= 1 && h.seq <= NREQ);
        CO_CHECK(!seen[h.seq]);
        seen[h.seq] = true;
    }
    close(sp[1]);
    CO_CHECK_EQ(coho_tdp_close(sv->pool), 0);
}

static void inline_answers_of_one_read_leave_in_one_write(void **state)
{
    struct server sv;

    (void)state;
    memset(&sv, 0, sizeof(sv));
    sv.inline_answers = true;
    co_run(one_write_main, &sv);
    assert_int_equal(sv.done, NREQ);
    assert_int_equal(sv.failed, 0);
}

/* Large inline answers to a peer that reads slowly: the receive coroutine parks in its flush,
 * and every byte arrives whole and in order. */
static void slow_reader_main(void *arg)
{
    struct server *sv = arg;
    unsigned char req[NREQ * COHO_SOCK_HDR_LEN], *rec = malloc(NREQ * (COHO_SOCK_HDR_LEN + 65536));
    size_t total = NREQ * (COHO_SOCK_HDR_LEN + 65536), got = 0, i;
    int sp[2];

    CO_CHECK(rec != NULL);
    server_open(sv);
    CO_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
    CO_CHECK_NE(coho_tdp_attach(sv->pool, sp[0]), 0);
    CO_CHECK_EQ(send(sp[1], req, requests(req, 65536), 0), (ssize_t)sizeof(req));
    while (got < total) {
        ssize_t n = recv(sp[1], rec + got, total - got < 1000 ? total - got : 1000, 0);

        if (!CO_CHECK(n > 0))
            break;
        got += (size_t)n;
    }
    for (i = 0; i < NREQ; i++) {
        coho_sock_hdr_t h;
        const unsigned char *f = rec + i * (COHO_SOCK_HDR_LEN + 65536);

        CO_CHECK_EQ(coho_sock_hdr_decode(f, &h), 0);
        CO_CHECK_EQ(h.seq, i + 1); /* inline answers keep the order of the requests */
        CO_CHECK_EQ(h.body_len, 65536);
        CO_CHECK(memcmp(f + COHO_SOCK_HDR_LEN, body_bytes, 65536) == 0);
    }
    free(rec);
    close(sp[1]);
    CO_CHECK_EQ(coho_tdp_close(sv->pool), 0);
}

static void inline_answers_to_a_slow_reader_arrive_whole_and_in_order(void **state)
{
    struct server sv;

    (void)state;
    memset(&sv, 0, sizeof(sv));
    sv.inline_answers = true;
    co_run(slow_reader_main, &sv);
    assert_int_equal(sv.done, NREQ);
    assert_int_equal(sv.failed, 0);
}

static void responses_of_concurrent_handlers_leave_in_one_write(void **state)
{
    struct server sv;

    (void)state;
    memset(&sv, 0, sizeof(sv));
    co_run(one_write_main, &sv);
    assert_int_equal(sv.done, NREQ);
    assert_int_equal(sv.failed, 0);
}

static void break_main(void *arg)
{
    struct server *sv = arg;
    unsigned char req[NREQ * COHO_SOCK_HDR_LEN];
    uint64_t t0;
    int sp[2];

    server_open(sv);
    CO_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
    CO_CHECK_NE(coho_tdp_attach(sv->pool, sp[0]), 0);
    /* 10 responses of 256 KiB: the first batch fills the socket and its writer parks with the
     * others queued behind it, since nobody reads. */
    CO_CHECK_EQ(send(sp[1], req, requests(req, BIG_BODY), 0), (ssize_t)sizeof(req));
    coho_sleep_ms(50);
    CO_CHECK_EQ(sv->done, 0);
    close(sp[1]);
    t0 = co_now_ms();
    while (sv->done < NREQ && co_now_ms() - t0 < 2000)
        coho_sleep_ms(1);
    CO_CHECK_EQ(coho_tdp_close(sv->pool), 0);
}

static void queued_senders_fail_when_the_connection_breaks_mid_write(void **state)
{
    struct server sv;

    (void)state;
    memset(&sv, 0, sizeof(sv));
    co_run(break_main, &sv);
    assert_int_equal(sv.done, NREQ);
    assert_int_equal(sv.failed, NREQ);
    assert_true(sv.last_errno == EPIPE || sv.last_errno == ECONNRESET || sv.last_errno == ENOTCONN);
}

int main(int argc, char **argv)
{
    size_t i;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(responses_of_concurrent_handlers_leave_in_one_write),
        cmocka_unit_test(queued_senders_fail_when_the_connection_breaks_mid_write),
        cmocka_unit_test(inline_answers_of_one_read_leave_in_one_write),
        cmocka_unit_test(inline_answers_to_a_slow_reader_arrive_whole_and_in_order),
    };

    for (i = 0; i < sizeof(body_bytes); i++)
        body_bytes[i] = (unsigned char)(i * 7 + i / 251);
    return coho_test_main("socket_ext_batch", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
