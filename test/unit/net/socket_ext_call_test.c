/* SPDX-License-Identifier: MIT */
/* socket_ext's coho_tdp_call: one request sent and its response awaited with one park. The
 * response comes back to its own caller, a timeout leaves a late response dropped and counted
 * (never handed to the next request), a failed write or a broken connection wakes every waiter
 * with the error at once, and a bad call releases its id. */
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

static size_t max_body = 1u << 20;
static coho_tdp_framer_t sock_framer;

/* ---- the server: co_sock_answer answers a request with `arg` body bytes, after type >> 8 ms
 * if type & 1 ---- */
struct server {
    coho_tdp_pool_t *pool;
    int handled;
    int deadlk; /* on_req's own coho_tdp_call failed with EDEADLK (type & 2) */
};

static void on_req(coho_tdp_req_t *rq, void *user)
{
    struct server *sv = user;
    unsigned char hdr[COHO_SOCK_HDR_LEN];
    coho_sock_hdr_t h;

    sv->handled++;
    coho_cbuf_seek(&rq->frame, 0, SEEK_SET);
    if (coho_cbuf_read(&rq->frame, hdr, sizeof(hdr)) == (ssize_t)sizeof(hdr) &&
        coho_sock_hdr_decode(hdr, &h) == 0 && (h.type & 2u)) {
        /* A call on the connection this receive coroutine reads: it could never see the
         * response, so it is refused at once. */
        coho_cbuf_t out;
        uint64_t id = coho_tdp_req_id(sv->pool);

        coho_cbuf_init(&out, NULL);
        errno = 0;
        if (coho_tdp_call(sv->pool, rq->conn_id, id, hdr, sizeof(hdr), 1000, &out) != 0 &&
            errno == EDEADLK)
            sv->deadlk++;
        coho_cbuf_destroy(&out);
    }
    coho_cbuf_seek(&rq->frame, 0, SEEK_SET);
    co_spawn(co_sock_answer, rq);
}

struct world {
    struct server sv;
    coho_tdp_pool_t *client;
    struct sockaddr_in addr;
    int ok;
    int failed;
    int failed_errno;
    uint64_t failed_after_ms; /* the longest time a failed call took */
};

static void world_open(struct world *w, unsigned conns)
{
    coho_sock_framer_init(&sock_framer, &max_body);
    co_tdp_pair_open(&sock_framer, on_req, &w->sv, conns, &w->sv.pool, &w->client, &w->addr);
}

static void world_close(struct world *w)
{
    co_tdp_pair_close(w->sv.pool, w->client);
}

/* One request asking for `want` body bytes (request type `type`) with coho_tdp_call. Returns
 * its result; *seq_out gets the request id. */
static int call(coho_tdp_pool_t *p, uint32_t want, uint32_t type, int64_t timeout_ms,
                coho_cbuf_t *resp, uint64_t *seq_out)
{
    unsigned char hdr[COHO_SOCK_HDR_LEN];
    coho_sock_hdr_t h = {.magic = COHO_SOCK_MAGIC, .type = type, .arg = want};
    uint64_t conn = coho_tdp_pick(p, 2000), id;

    if (conn == 0)
        return -1;
    id = coho_tdp_req_id(p);
    if (id == 0)
        return -1;
    h.seq = id;
    if (seq_out != NULL)
        *seq_out = id;
    coho_sock_hdr_encode(&h, hdr);
    return coho_tdp_call(p, conn, id, hdr, sizeof(hdr), timeout_ms, resp);
}

/* ---- one call: its response, and nothing left behind ---- */
static void delivered_main(void *arg)
{
    struct world *w = arg;
    coho_tdp_stats_t st;
    coho_cbuf_t resp;
    uint64_t seq = 0;

    coho_cbuf_init(&resp, NULL);
    world_open(w, 1);
    if (CO_CHECK_EQ(call(w->client, 100, 0, 5000, &resp, &seq), 0) &&
        co_sock_resp_is(&resp, seq, 100))
        w->ok++;
    /* Again with the same buffer (the response is then written straight into it). */
    if (CO_CHECK_EQ(call(w->client, 3000, 0, 5000, &resp, &seq), 0) &&
        co_sock_resp_is(&resp, seq, 3000))
        w->ok++;
    coho_tdp_get_stats(w->client, &st);
    CO_CHECK_EQ(st.responses_in, 2);
    CO_CHECK_EQ(st.responses_dropped, 0);
    CO_CHECK_EQ(st.in_flight, 0);
    coho_cbuf_destroy(&resp);
    world_close(w);
}

static void call_delivers_the_response_and_releases_the_id(void **state)
{
    struct world w;

    (void)state;
    memset(&w, 0, sizeof(w));
    co_run(delivered_main, &w);
    assert_int_equal(w.ok, 2);
}

/* ---- a timeout: ETIMEDOUT on time; the late response is dropped and counted, and the call
 * waiting on the same connection when it comes gets its own response, not that one ---- */
static void timeout_main(void *arg)
{
    struct world *w = arg;
    coho_tdp_stats_t st;
    coho_cbuf_t resp;
    uint64_t t0, seq = 0;

    coho_cbuf_init(&resp, NULL);
    world_open(w, 1);
    t0 = co_now_ms();
    errno = 0;
    CO_CHECK_EQ(call(w->client, 10, 1u | (200u << 8), 30, &resp, NULL), -1);
    CO_CHECK_EQ(errno, ETIMEDOUT);
    CO_CHECK(co_now_ms() - t0 >= 30);
    CO_CHECK(co_now_ms() - t0 < 200);
    coho_tdp_get_stats(w->client, &st);
    CO_CHECK_EQ(st.in_flight, 0); /* the id went with the timeout */
    /* The first response comes at ~200 ms, while this one (answered at ~400 ms) waits. */
    if (CO_CHECK_EQ(call(w->client, 20, 1u | (400u << 8), 5000, &resp, &seq), 0) &&
        co_sock_resp_is(&resp, seq, 20))
        w->ok++;
    coho_tdp_get_stats(w->client, &st);
    CO_CHECK_EQ(st.responses_dropped, 1);
    CO_CHECK_EQ(st.responses_in, 1);
    CO_CHECK_EQ(st.in_flight, 0);
    coho_cbuf_destroy(&resp);
    world_close(w);
}

static void call_times_out_and_the_late_response_is_dropped_and_counted(void **state)
{
    struct world w;

    (void)state;
    memset(&w, 0, sizeof(w));
    co_run(timeout_main, &w);
    assert_int_equal(w.ok, 1);
}

/* ---- many coroutines over few connections: each gets its own response ---- */
struct worker_arg {
    struct world *w;
    int n;
};

static void worker(void *arg)
{
    struct worker_arg *a = arg;
    coho_cbuf_t resp;
    int i;

    coho_cbuf_init(&resp, NULL);
    for (i = 0; i < a->n; i++) {
        uint64_t seq = 0;
        uint32_t want = (uint32_t)((i * 977 + coho_self() * 13) % 9000);

        if (call(a->w->client, want, 0, 10000, &resp, &seq) != 0) {
            a->w->failed++;
            a->w->failed_errno = errno;
            continue;
        }
        if (co_sock_resp_is(&resp, seq, want))
            a->w->ok++;
    }
    coho_cbuf_destroy(&resp);
}

static void many_main(void *arg)
{
    struct world *w = arg;
    struct worker_arg wa = {.w = w, .n = 20};
    coho_tdp_stats_t st;
    uint64_t ids[200];
    int i;

    world_open(w, 3);
    for (i = 0; i < 200; i++)
        ids[i] = co_spawn(worker, &wa);
    for (i = 0; i < 200; i++)
        coho_join(ids[i], -1);
    coho_tdp_get_stats(w->client, &st);
    CO_CHECK_EQ(st.responses_in, 4000);
    CO_CHECK_EQ(st.responses_dropped, 0);
    CO_CHECK_EQ(st.in_flight, 0);
    world_close(w);
}

static void many_coroutines_over_few_connections_each_get_their_own_response(void **state)
{
    struct world w;

    (void)state;
    memset(&w, 0, sizeof(w));
    co_run(many_main, &w);
    assert_int_equal(w.failed, 0);
    assert_int_equal(w.ok, 4000);
    assert_int_equal(w.sv.handled, 4000);
}

/* ---- the server goes away: every caller waiting on the connection fails at once ---- */
static void slow_caller(void *arg)
{
    struct world *w = arg;
    coho_cbuf_t resp;
    uint64_t t0 = co_now_ms(), took;

    coho_cbuf_init(&resp, NULL);
    errno = 0;
    if (call(w->client, 5, 1u | (3000u << 8), 10000, &resp, NULL) != 0) {
        w->failed++;
        w->failed_errno = errno;
    }
    took = co_now_ms() - t0;
    if (took > w->failed_after_ms)
        w->failed_after_ms = took;
    coho_cbuf_destroy(&resp);
}

static void broken_main(void *arg)
{
    struct world *w = arg;
    uint64_t ids[8];
    int i;

    world_open(w, 1);
    for (i = 0; i < 8; i++)
        ids[i] = co_spawn(slow_caller, w);
    coho_sleep_ms(100);
    CO_CHECK_EQ(w->sv.handled, 8);
    CO_CHECK_EQ(coho_tdp_close(w->sv.pool), 0);
    w->sv.pool = NULL;
    for (i = 0; i < 8; i++)
        coho_join(ids[i], -1);
    world_close(w);
}

static void a_broken_connection_wakes_every_caller_with_the_error(void **state)
{
    struct world w;

    (void)state;
    memset(&w, 0, sizeof(w));
    co_run(broken_main, &w);
    assert_int_equal(w.failed, 8);
    assert_int_equal(w.failed_errno, ECONNRESET);
    assert_true(w.failed_after_ms < 2000); /* far below the 3 s answer and the 10 s timeout */
}

/* ---- a write that fails: the callers whose frames it carried, and those queued behind it,
 * wake with the error ---- */
#define BIG_BODY (1024u * 1024u) /* 8 of them outgrow the socket buffers */

struct sink {
    int lfd;
    struct sockaddr_in addr;
};

/* Accepts one connection, reads nothing for 200 ms (the callers' frames fill the socket
 * buffers and a write parks), then resets it. */
static void sink_main(void *arg)
{
    struct sink *s = arg;
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    int fd = accept(s->lfd, NULL, NULL);

    if (!CO_CHECK(fd >= 0))
        return;
    coho_sleep_ms(200);
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd); /* RST: the client's write fails */
}

struct big_caller {
    struct world *w;
    unsigned char *frame; /* a request header and BIG_BODY body bytes */
};

static void big_caller_main(void *arg)
{
    struct big_caller *b = arg;
    coho_cbuf_t resp;
    uint64_t t0 = co_now_ms(), took, conn = coho_tdp_pick(b->w->client, 2000);
    uint64_t id = conn != 0 ? coho_tdp_req_id(b->w->client) : 0;

    coho_cbuf_init(&resp, NULL);
    errno = 0;
    if (id != 0 && coho_tdp_call(b->w->client, conn, id, b->frame, COHO_SOCK_HDR_LEN + BIG_BODY,
                                 10000, &resp) != 0) {
        b->w->failed++;
        b->w->failed_errno = errno;
    }
    took = co_now_ms() - t0;
    if (took > b->w->failed_after_ms)
        b->w->failed_after_ms = took;
    coho_cbuf_destroy(&resp);
}

static void write_fail_main(void *arg)
{
    struct world *w = arg;
    struct sink s = {.addr = {.sin_family = AF_INET}};
    struct big_caller bc[8];
    unsigned char *frame = calloc(1, COHO_SOCK_HDR_LEN + BIG_BODY);
    coho_sock_hdr_t h = {.magic = COHO_SOCK_MAGIC, .body_len = BIG_BODY};
    coho_tdp_stats_t st;
    coho_tdp_opts_t o;
    socklen_t sl = sizeof(s.addr);
    uint64_t ids[9];
    int i;

    if (!CO_CHECK(frame != NULL))
        return;
    coho_sock_hdr_encode(&h, frame);
    s.addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    {
        int small = 4096; /* inherited by the accepted socket: a small window */

        setsockopt(s.lfd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    }
    CO_CHECK_EQ(bind(s.lfd, (struct sockaddr *)&s.addr, sizeof(s.addr)), 0);
    CO_CHECK_EQ(listen(s.lfd, 4), 0);
    CO_CHECK_EQ(getsockname(s.lfd, (struct sockaddr *)&s.addr, &sl), 0);
    ids[8] = co_spawn(sink_main, &s);
    coho_sock_framer_init(&sock_framer, &max_body);
    coho_tdp_opts_init(&o);
    o.framers[0] = &sock_framer;
    o.framer_count = 1;
    o.conn_count = 1;
    o.reconnect_min_ms = 10000; /* no second connection while the callers wait */
    w->client = coho_tdp_connect((struct sockaddr *)&s.addr, sizeof(s.addr), &o);
    CO_CHECK(w->client != NULL);
    for (i = 0; i < 8; i++) {
        bc[i].w = w;
        bc[i].frame = frame;
        ids[i] = co_spawn(big_caller_main, &bc[i]);
    }
    for (i = 0; i < 9; i++)
        coho_join(ids[i], -1);
    coho_tdp_get_stats(w->client, &st);
    CO_CHECK_EQ(st.in_flight, 0);
    CO_CHECK_EQ(coho_tdp_close(w->client), 0);
    close(s.lfd);
    free(frame);
}

static void a_failed_write_wakes_its_callers_with_the_error(void **state)
{
    struct world w;

    (void)state;
    memset(&w, 0, sizeof(w));
    co_run(write_fail_main, &w);
    assert_int_equal(w.failed, 8);
    assert_true(w.failed_errno == ECONNRESET || w.failed_errno == EPIPE);
    assert_true(w.failed_after_ms < 5000); /* the reset, not the 10 s timeout */
}

/* ---- bad calls: EINVAL and EDEADLK release the id; ENOENT for an unknown one ---- */
static void bad_main(void *arg)
{
    struct world *w = arg;
    unsigned char hdr[COHO_SOCK_HDR_LEN];
    coho_sock_hdr_t h = {.magic = COHO_SOCK_MAGIC, .type = 2u, .seq = 1};
    coho_tdp_stats_t st;
    coho_cbuf_t resp;
    uint64_t conn, id;

    coho_sock_hdr_encode(&h, hdr);
    coho_cbuf_init(&resp, NULL);
    world_open(w, 1);
    conn = coho_tdp_pick(w->client, 2000);
    id = coho_tdp_req_id(w->client);
    errno = 0;
    CO_CHECK_EQ(coho_tdp_call(w->client, conn, id, NULL, 0, 1000, &resp), -1);
    CO_CHECK_EQ(errno, EINVAL);
    errno = 0;
    CO_CHECK_EQ(coho_tdp_call(w->client, conn, id, hdr, sizeof(hdr), 1000, &resp), -1);
    CO_CHECK_EQ(errno, ENOENT); /* released by the failed call */
    errno = 0;
    CO_CHECK_EQ(coho_tdp_call(NULL, conn, id, hdr, sizeof(hdr), 1000, &resp), -1);
    CO_CHECK_EQ(errno, EINVAL);
    id = coho_tdp_req_id(w->client);
    errno = 0;
    CO_CHECK_EQ(coho_tdp_call(w->client, 12345, id, hdr, sizeof(hdr), 1000, &resp), -1);
    CO_CHECK_EQ(errno, ENOTCONN);
    coho_tdp_get_stats(w->client, &st);
    CO_CHECK_EQ(st.in_flight, 0);
    /* type & 2: the server's on_req calls on the connection it reads (EDEADLK), then answers. */
    id = coho_tdp_req_id(w->client);
    h.seq = id;
    coho_sock_hdr_encode(&h, hdr);
    CO_CHECK_EQ(coho_tdp_call(w->client, conn, id, hdr, sizeof(hdr), 5000, &resp), 0);
    CO_CHECK_EQ(w->sv.deadlk, 1);
    coho_tdp_get_stats(w->sv.pool, &st);
    CO_CHECK_EQ(st.in_flight, 0);
    coho_cbuf_destroy(&resp);
    world_close(w);
}

static void bad_calls_fail_and_release_their_id(void **state)
{
    struct world w;

    (void)state;
    memset(&w, 0, sizeof(w));
    co_run(bad_main, &w);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(call_delivers_the_response_and_releases_the_id),
        cmocka_unit_test(call_times_out_and_the_late_response_is_dropped_and_counted),
        cmocka_unit_test(many_coroutines_over_few_connections_each_get_their_own_response),
        cmocka_unit_test(a_broken_connection_wakes_every_caller_with_the_error),
        cmocka_unit_test(a_failed_write_wakes_its_callers_with_the_error),
        cmocka_unit_test(bad_calls_fail_and_release_their_id),
    };

    return coho_test_main("socket_ext_call", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
