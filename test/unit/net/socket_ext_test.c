/* SPDX-License-Identifier: MIT */
/* socket_ext: request/response over pooled connections, frames never interleave, broken
 * connections fail their waiters at once, malformed frames close only their connection. */
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

/* ---- a tiny server: co_sock_answer answers each request with `arg` bytes, after type >> 8 ms
 * if type & 1 ---- */
struct server {
    coho_tdp_pool_t *pool;
    unsigned delay_ms;
    int handled;
};

static void on_req(coho_tdp_req_t *rq, void *user)
{
    struct server *sv = user;

    sv->handled++;
    co_spawn(co_sock_answer, rq);
}

/* ---- client helpers ---- */
static int call(coho_tdp_pool_t *p, uint32_t want, uint32_t type, int64_t timeout_ms,
                coho_cbuf_t *resp, uint64_t *seq_out)
{
    unsigned char hdr[COHO_SOCK_HDR_LEN];
    coho_sock_hdr_t h = {.magic = COHO_SOCK_MAGIC, .type = type, .arg = want};
    uint64_t conn = coho_tdp_pick(p, 2000);
    uint64_t id;

    if (conn == 0)
        return -1;
    id = coho_tdp_req_id(p);
    h.seq = id;
    if (seq_out)
        *seq_out = id;
    coho_sock_hdr_encode(&h, hdr);
    if (coho_tdp_send(p, conn, id, hdr, sizeof(hdr)) != 0) {
        coho_tdp_req_release(p, id);
        return -1;
    }
    return coho_tdp_wait_resp(p, id, timeout_ms, resp);
}

struct world {
    struct server sv;
    coho_tdp_pool_t *client;
    struct sockaddr_in addr;
    int done;
    int ok;
    int failed;
    int failed_errno;
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

/* ---- many coroutines share 4 connections; every response is checked ---- */
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
        uint64_t seq;
        uint32_t want = (uint32_t)((i * 977 + coho_self()) % 70000);

        if (call(a->w->client, want, 0, 5000, &resp, &seq) != 0) {
            a->w->failed++;
            a->w->failed_errno = errno;
            continue;
        }
        (void)co_sock_resp_is(&resp, seq, want); /* a mismatch is a failed check */
        a->w->ok++;
    }
    coho_cbuf_destroy(&resp);
}

static void many_main(void *arg)
{
    struct world *w = arg;
    struct worker_arg wa = {.w = w, .n = 20};
    uint64_t ids[100];
    int i;

    world_open(w, 4);
    for (i = 0; i < 100; i++)
        ids[i] = co_spawn(worker, &wa);
    for (i = 0; i < 100; i++)
        coho_join(ids[i], -1);
    world_close(w);
}

static void many_coroutines_share_few_connections_and_get_their_own_responses(void **state)
{
    struct world w;

    (void)state;
    memset(&w, 0, sizeof(w));
    co_run(many_main, &w);
    assert_int_equal(w.failed, 0);
    assert_int_equal(w.ok, 2000);
    assert_int_equal(w.sv.handled, 2000);
}

/* ---- a response later than the timeout: ETIMEDOUT, and the late one is dropped ---- */
static void timeout_main(void *arg)
{
    struct world *w = arg;
    coho_cbuf_t resp;
    coho_tdp_stats_t st;
    uint64_t t0 = co_now_ms();

    coho_cbuf_init(&resp, NULL);
    world_open(w, 1);
    errno = 0;
    CO_CHECK_EQ(call(w->client, 10, 1u | (200u << 8), 30, &resp, NULL), -1);
    CO_CHECK_EQ(errno, ETIMEDOUT);
    CO_CHECK(co_now_ms() - t0 >= 30);
    coho_sleep_ms(300);
    coho_tdp_get_stats(w->client, &st);
    CO_CHECK_EQ(st.responses_dropped, 1);
    CO_CHECK_EQ(st.in_flight, 0);
    coho_cbuf_destroy(&resp);
    world_close(w);
}

static void wait_resp_times_out_and_late_response_is_dropped(void **state)
{
    struct world w;

    (void)state;
    memset(&w, 0, sizeof(w));
    co_run(timeout_main, &w);
}

/* ---- a malformed frame closes that connection only; waiters elsewhere are unaffected ---- */
static void bad_peer(void *arg)
{
    struct world *w = arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    char junk[64];

    memset(junk, 'Z', sizeof(junk)); /* wrong magic */
    CO_CHECK_EQ(connect(fd, (struct sockaddr *)&w->addr, sizeof(w->addr)), 0);
    CO_CHECK_EQ(send(fd, junk, sizeof(junk), 0), (ssize_t)sizeof(junk));
    CO_CHECK_EQ(recv(fd, junk, 1, 0), 0); /* the server closed it */
    close(fd);
}

static void oversize_peer(void *arg)
{
    struct world *w = arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    unsigned char hdr[COHO_SOCK_HDR_LEN];
    coho_sock_hdr_t h = {.magic = COHO_SOCK_MAGIC, .seq = 9, .body_len = (uint32_t)max_body + 1};
    char b;

    coho_sock_hdr_encode(&h, hdr);
    CO_CHECK_EQ(connect(fd, (struct sockaddr *)&w->addr, sizeof(w->addr)), 0);
    CO_CHECK_EQ(send(fd, hdr, sizeof(hdr), 0), (ssize_t)sizeof(hdr));
    CO_CHECK_EQ(recv(fd, &b, 1, 0), 0);
    close(fd);
}

static void bad_main(void *arg)
{
    struct world *w = arg;
    struct worker_arg wa = {.w = w, .n = 10};
    coho_tdp_stats_t st;
    uint64_t ids[12];
    int i;

    world_open(w, 2);
    ids[0] = co_spawn(bad_peer, w);
    ids[1] = co_spawn(oversize_peer, w);
    for (i = 2; i < 12; i++)
        ids[i] = co_spawn(worker, &wa);
    for (i = 0; i < 12; i++)
        coho_join(ids[i], -1);
    coho_tdp_get_stats(w->sv.pool, &st);
    CO_CHECK_EQ(st.protocol_errors, 2);
    world_close(w);
}

static void malformed_frame_closes_only_its_connection(void **state)
{
    struct world w;

    (void)state;
    memset(&w, 0, sizeof(w));
    co_run(bad_main, &w);
    assert_int_equal(w.failed, 0);
    assert_int_equal(w.ok, 100);
}

/* ---- the server dies: in-flight waiters fail at once, not at their timeout ---- */
static void kill_server(void *arg)
{
    struct world *w = arg;

    coho_sleep_ms(50);
    coho_tdp_close(w->sv.pool);
    w->sv.pool = NULL;
}

static void slow_caller(void *arg)
{
    struct world *w = arg;
    coho_cbuf_t resp;
    uint64_t t0 = co_now_ms();

    coho_cbuf_init(&resp, NULL);
    errno = 0;
    if (call(w->client, 5, 1u | (1500u << 8), 10000, &resp, NULL) != 0) {
        w->failed++;
        w->failed_errno = errno;
    }
    w->done = (int)(co_now_ms() - t0);
    coho_cbuf_destroy(&resp);
}

static void broken_main(void *arg)
{
    struct world *w = arg;
    uint64_t a, b;

    world_open(w, 1);
    a = co_spawn(slow_caller, w);
    b = co_spawn(kill_server, w);
    coho_join(a, -1);
    coho_join(b, -1);
    CO_CHECK_EQ(coho_tdp_close(w->client), 0);
}

static void broken_connection_fails_in_flight_waiters_at_once(void **state)
{
    struct world w;

    (void)state;
    memset(&w, 0, sizeof(w));
    co_run(broken_main, &w);
    assert_int_equal(w.failed, 1);
    assert_int_equal(w.failed_errno, ECONNRESET);
    assert_true(w.done < 1000); /* far below the 1.5 s server delay and 10 s timeout */
}

/* ---- concurrent senders on one connection never interleave frames ---- */
struct big_arg {
    struct world *w;
    uint32_t size;
};

static void big_sender(void *arg)
{
    struct big_arg *a = arg;
    coho_cbuf_t resp;
    uint64_t seq;
    int i;

    coho_cbuf_init(&resp, NULL);
    for (i = 0; i < 5; i++) {
        if (call(a->w->client, a->size, 0, 10000, &resp, &seq) != 0) {
            a->w->failed++;
            continue;
        }
        (void)co_sock_resp_is(&resp, seq, a->size);
        a->w->ok++;
    }
    coho_cbuf_destroy(&resp);
}

static void interleave_main(void *arg)
{
    struct world *w = arg;
    struct big_arg ba = {.w = w, .size = 600000};
    uint64_t ids[8];
    int i;

    world_open(w, 1);
    for (i = 0; i < 8; i++)
        ids[i] = co_spawn(big_sender, &ba);
    for (i = 0; i < 8; i++)
        coho_join(ids[i], -1);
    world_close(w);
}

static void concurrent_large_frames_on_one_connection_never_interleave(void **state)
{
    struct world w;

    (void)state;
    memset(&w, 0, sizeof(w));
    max_body = 1u << 20;
    co_run(interleave_main, &w);
    assert_int_equal(w.failed, 0);
    assert_int_equal(w.ok, 40);
}

/* ---- bad input ---- */
static void badinput_main(void *arg)
{
    coho_tdp_opts_t o;
    struct sockaddr_in a = {.sin_family = AF_INET};
    coho_cbuf_t b;

    (void)arg;
    coho_tdp_opts_init(&o);
    errno = 0;
    CO_CHECK(coho_tdp_listen((struct sockaddr *)&a, sizeof(a), &o) == NULL); /* no framer */
    CO_CHECK_EQ(errno, EINVAL);
    errno = 0;
    CO_CHECK(coho_tdp_connect(NULL, 0, &o) == NULL);
    CO_CHECK_EQ(errno, EINVAL);
    coho_cbuf_init(&b, NULL);
    errno = 0;
    CO_CHECK_EQ(coho_tdp_wait_resp(NULL, 1, 0, &b), -1);
    CO_CHECK_EQ(errno, EINVAL);
    coho_cbuf_destroy(&b);
}

static void bad_arguments_give_einval(void **state)
{
    coho_tdp_opts_t o;
    struct sockaddr_in a = {.sin_family = AF_INET};

    (void)state;
    coho_tdp_opts_init(&o);
    o.framers[0] = &sock_framer;
    o.framer_count = 1;
    errno = 0;
    assert_null(coho_tdp_connect((struct sockaddr *)&a, sizeof(a), &o)); /* outside: EPERM */
    assert_int_equal(errno, EPERM);
    co_run(badinput_main, NULL);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(many_coroutines_share_few_connections_and_get_their_own_responses),
        cmocka_unit_test(wait_resp_times_out_and_late_response_is_dropped),
        cmocka_unit_test(malformed_frame_closes_only_its_connection),
        cmocka_unit_test(broken_connection_fails_in_flight_waiters_at_once),
        cmocka_unit_test(concurrent_large_frames_on_one_connection_never_interleave),
        cmocka_unit_test(bad_arguments_give_einval),
    };

    return coho_test_main("socket_ext", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
