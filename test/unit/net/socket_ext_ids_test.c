/* SPDX-License-Identifier: MIT */
/* socket_ext: request ids (unique, never 0, stale ids find nothing, a response carrying the
 * stale id of a reused record is dropped, a response on another connection than its request's
 * is dropped, ids differ between pools and do not count up) and response buffers sized for
 * small frames (correct content, and the buffer handed out keeps growing like any other). */
/* ctest: TIMEOUT=60 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
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

static unsigned char pattern(uint64_t seq, size_t i)
{
    return (unsigned char)(seq * 7 + i * 13 + 1);
}

/* Answers inline: the header with the request's seq and `arg` body bytes of the pattern. */
static void on_req(coho_tdp_req_t *rq, void *user)
{
    unsigned char hdr[COHO_SOCK_HDR_LEN];
    coho_sock_hdr_t h;
    unsigned char *body;
    struct iovec iov[2];
    size_t i;

    (void)user;
    if (!CO_CHECK_EQ(coho_cbuf_read(&rq->frame, hdr, sizeof(hdr)), (ssize_t)sizeof(hdr)) ||
        !CO_CHECK_EQ(coho_sock_hdr_decode(hdr, &h), 0)) {
        coho_tdp_req_free(rq);
        return;
    }
    body = malloc(h.arg + 1u);
    for (i = 0; i < h.arg; i++)
        body[i] = pattern(h.seq, i);
    h.type |= COHO_SOCK_RESPONSE;
    h.body_len = h.arg;
    h.arg = 0;
    coho_sock_hdr_encode(&h, hdr);
    iov[0].iov_base = hdr;
    iov[0].iov_len = sizeof(hdr);
    iov[1].iov_base = body;
    iov[1].iov_len = h.body_len;
    CO_CHECK_EQ(coho_tdp_replyv(rq, iov, h.body_len ? 2 : 1), 0);
    free(body);
    coho_tdp_req_free(rq);
}

struct world {
    coho_tdp_pool_t *server, *client;
};

static void world_open(struct world *w)
{
    struct sockaddr_in addr;
    coho_tdp_opts_t o;

    memset(&addr, 0, sizeof(addr));
    coho_sock_framer_init(&sock_framer, &max_body);
    coho_tdp_opts_init(&o);
    o.framers[0] = &sock_framer;
    o.framer_count = 1;
    o.on_req = on_req;
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    w->server = coho_tdp_listen((struct sockaddr *)&addr, sizeof(addr), &o);
    CO_CHECK(w->server != NULL);
    addr.sin_port = htons(coho_tdp_local_port(w->server));
    coho_tdp_opts_init(&o);
    o.framers[0] = &sock_framer;
    o.framer_count = 1;
    o.conn_count = 1;
    w->client = coho_tdp_connect((struct sockaddr *)&addr, sizeof(addr), &o);
    CO_CHECK(w->client != NULL);
}

static void world_close(struct world *w)
{
    CO_CHECK_EQ(coho_tdp_close(w->client), 0);
    CO_CHECK_EQ(coho_tdp_close(w->server), 0);
}

/* Sends a request with header seq `seq`, tied to `req_id` (0: untied), asking for `want`
 * body bytes. */
static void send_req(struct world *w, uint64_t req_id, uint64_t seq, uint32_t want)
{
    unsigned char hdr[COHO_SOCK_HDR_LEN];
    coho_sock_hdr_t h = {.magic = COHO_SOCK_MAGIC, .seq = seq, .arg = want};
    uint64_t conn = coho_tdp_pick(w->client, 2000);

    CO_CHECK_NE(conn, 0);
    coho_sock_hdr_encode(&h, hdr);
    CO_CHECK_EQ(coho_tdp_send(w->client, conn, req_id, hdr, sizeof(hdr)), 0);
}

static void check_resp(coho_cbuf_t *resp, uint64_t seq, uint32_t want)
{
    unsigned char hdr[COHO_SOCK_HDR_LEN];
    unsigned char *body = malloc(want + 1u);
    coho_sock_hdr_t h;
    size_t i;

    CO_CHECK_EQ(coho_cbuf_len(resp), COHO_SOCK_HDR_LEN + want);
    coho_cbuf_seek(resp, 0, SEEK_SET);
    CO_CHECK_EQ(coho_cbuf_read(resp, hdr, sizeof(hdr)), (ssize_t)sizeof(hdr));
    CO_CHECK_EQ(coho_sock_hdr_decode(hdr, &h), 0);
    CO_CHECK_EQ(h.seq, seq);
    CO_CHECK_EQ(h.body_len, want);
    CO_CHECK_EQ(coho_cbuf_read(resp, body, want), (ssize_t)want);
    for (i = 0; i < want; i++)
        CO_CHECK_EQ(body[i], pattern(seq, i));
    free(body);
}

static uint64_t call(struct world *w, uint32_t want, coho_cbuf_t *resp)
{
    uint64_t id = coho_tdp_req_id(w->client);

    CO_CHECK_NE(id, 0);
    send_req(w, id, id, want);
    CO_CHECK_EQ(coho_tdp_wait_resp(w->client, id, 5000, resp), 0);
    check_resp(resp, id, want);
    return id;
}

/* ---- ids: never 0, never issued twice, dead once collected or released ---- */
#define IDS 3000

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

static void ids_main(void *arg)
{
    struct world w;
    uint64_t *ids = calloc(IDS, sizeof(*ids));
    coho_cbuf_t resp;
    coho_tdp_stats_t st;
    uint64_t id;
    int i;

    (void)arg;
    world_open(&w);
    coho_cbuf_init(&resp, NULL);
    /* Released at once, three at a time, so records are reused again and again. */
    for (i = 0; i < IDS; i += 3) {
        ids[i] = coho_tdp_req_id(w.client);
        ids[i + 1] = coho_tdp_req_id(w.client);
        ids[i + 2] = coho_tdp_req_id(w.client);
        CO_CHECK_EQ(coho_tdp_req_release(w.client, ids[i + 1]), 0);
        CO_CHECK_EQ(coho_tdp_req_release(w.client, ids[i]), 0);
        CO_CHECK_EQ(coho_tdp_req_release(w.client, ids[i + 2]), 0);
    }
    qsort(ids, IDS, sizeof(*ids), cmp_u64);
    CO_CHECK_NE(ids[0], 0);
    for (i = 1; i < IDS; i++)
        CO_CHECK(ids[i] != ids[i - 1]);
    /* A released id: released again, waited for, or sent on, it is unknown. */
    errno = 0;
    CO_CHECK_EQ(coho_tdp_req_release(w.client, ids[5]), -1);
    CO_CHECK_EQ(errno, ENOENT);
    errno = 0;
    CO_CHECK_EQ(coho_tdp_wait_resp(w.client, ids[5], 10, &resp), -1);
    CO_CHECK_EQ(errno, ENOENT);
    errno = 0;
    CO_CHECK_EQ(coho_tdp_send(w.client, coho_tdp_pick(w.client, 2000), ids[5], "x", 1), -1);
    CO_CHECK_EQ(errno, ENOENT);
    /* A collected id is dead too. */
    id = call(&w, 16, &resp);
    errno = 0;
    CO_CHECK_EQ(coho_tdp_wait_resp(w.client, id, 10, &resp), -1);
    CO_CHECK_EQ(errno, ENOENT);
    coho_tdp_get_stats(w.client, &st);
    CO_CHECK_EQ(st.in_flight, 0);
    coho_cbuf_destroy(&resp);
    world_close(&w);
    free(ids);
}

static void request_ids_are_unique_and_dead_once_collected_or_released(void **state)
{
    (void)state;
    co_run(ids_main, NULL);
}

/* ---- a response carrying the id of a released request is dropped, even though its record
 * went to the next request ---- */
static void stale_main(void *arg)
{
    struct world w;
    coho_cbuf_t resp;
    coho_tdp_stats_t st;
    uint64_t old, cur;

    (void)arg;
    world_open(&w);
    coho_cbuf_init(&resp, NULL);
    old = coho_tdp_req_id(w.client);
    CO_CHECK_EQ(coho_tdp_req_release(w.client, old), 0);
    cur = coho_tdp_req_id(w.client);
    CO_CHECK(cur != old);
    send_req(&w, 0, old, 5); /* answered with seq = old */
    coho_sleep_ms(100);
    coho_tdp_get_stats(w.client, &st);
    CO_CHECK_EQ(st.responses_dropped, 1);
    CO_CHECK_EQ(st.responses_in, 0);
    send_req(&w, cur, cur, 7);
    CO_CHECK_EQ(coho_tdp_wait_resp(w.client, cur, 5000, &resp), 0);
    check_resp(&resp, cur, 7);
    coho_cbuf_destroy(&resp);
    world_close(&w);
}

static void response_with_stale_id_of_reused_record_is_dropped(void **state)
{
    (void)state;
    co_run(stale_main, NULL);
}

/* ---- small and large responses into one buffer, which then grows by appending ---- */
static void sizes_main(void *arg)
{
    static const uint32_t wants[] = {0, 1, 39, 40, 41, 100, 4072, 4073, 9000, 8, 70000, 3};
    struct world w;
    coho_cbuf_t resp;
    unsigned char *big = malloc(20000), *back = malloc(20000);
    size_t i;

    (void)arg;
    world_open(&w);
    coho_cbuf_init(&resp, NULL);
    for (i = 0; i < sizeof(wants) / sizeof(wants[0]); i++)
        call(&w, wants[i], &resp);
    /* The last response (27 bytes) sits in a buffer made for it: it must still grow. */
    for (i = 0; i < 20000; i++)
        big[i] = (unsigned char)(i * 3);
    CO_CHECK_EQ(coho_cbuf_append(&resp, big, 20000), 0);
    CO_CHECK_EQ(coho_cbuf_len(&resp), COHO_SOCK_HDR_LEN + 3 + 20000);
    CO_CHECK_EQ(coho_cbuf_seek(&resp, COHO_SOCK_HDR_LEN + 3, SEEK_SET), COHO_SOCK_HDR_LEN + 3);
    CO_CHECK_EQ(coho_cbuf_read(&resp, back, 20000), 20000);
    CO_CHECK(memcmp(back, big, 20000) == 0);
    coho_cbuf_destroy(&resp);
    world_close(&w);
    free(big);
    free(back);
}

static void small_and_large_responses_arrive_whole_and_the_buffer_grows(void **state)
{
    (void)state;
    co_run(sizes_main, NULL);
}

/* ---- a response counts only on the connection its request went out on ---- */
struct cross_world {
    coho_tdp_pool_t *server;
    uint64_t id;
    int rc;
    int err;
    bool done;
    coho_cbuf_t resp;
};

static void cross_waiter(void *arg)
{
    struct cross_world *w = arg;

    errno = 0;
    w->rc = coho_tdp_wait_resp(w->server, w->id, 5000, &w->resp);
    w->err = errno;
    w->done = true;
}

/* Writes a response frame with header seq `seq` and the 4-byte body `body` to `fd`. */
static void write_resp(int fd, uint64_t seq, const char *body)
{
    unsigned char f[COHO_SOCK_HDR_LEN + 4];
    coho_sock_hdr_t h = {.magic = COHO_SOCK_MAGIC, .type = COHO_SOCK_RESPONSE, .seq = seq};

    h.body_len = 4;
    coho_sock_hdr_encode(&h, f);
    memcpy(f + COHO_SOCK_HDR_LEN, body, 4);
    CO_CHECK_EQ(send(fd, f, sizeof(f), 0), (ssize_t)sizeof(f));
}

/* A listen pool asks client A something; client B, on another connection of the same pool,
 * answers with A's request id (guessed, leaked, or learnt as A's accomplice). B's answer is
 * dropped and counted, the request stays waiting, and A's answer completes it. */
static void cross_main(void *arg)
{
    struct cross_world *w = arg;
    unsigned char hdr[COHO_SOCK_HDR_LEN];
    struct sockaddr_in a;
    coho_tdp_opts_t o;
    coho_tdp_stats_t st;
    coho_sock_hdr_t h = {.magic = COHO_SOCK_MAGIC};
    char body[4] = {0};
    int sa[2], sb[2];
    uint64_t ca, cb, waiter;

    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    coho_sock_framer_init(&sock_framer, &max_body);
    coho_tdp_opts_init(&o);
    o.framers[0] = &sock_framer;
    o.framer_count = 1;
    o.on_req = on_req;
    w->server = coho_tdp_listen((struct sockaddr *)&a, sizeof(a), &o);
    if (!CO_CHECK(w->server != NULL))
        return;
    CO_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sa), 0);
    CO_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sb), 0);
    ca = coho_tdp_attach(w->server, sa[0]);
    cb = coho_tdp_attach(w->server, sb[0]);
    CO_CHECK(ca != 0 && cb != 0 && ca != cb);

    w->id = coho_tdp_req_id(w->server);
    h.seq = w->id;
    coho_sock_hdr_encode(&h, hdr);
    CO_CHECK_EQ(coho_tdp_send(w->server, ca, w->id, hdr, sizeof(hdr)), 0);
    waiter = co_spawn(cross_waiter, w);
    /* A reads the request (and so learns its id); B answers it first. */
    CO_CHECK_EQ(recv(sa[1], hdr, sizeof(hdr), MSG_WAITALL), (ssize_t)sizeof(hdr));
    CO_CHECK_EQ(coho_sock_hdr_decode(hdr, &h), 0);
    CO_CHECK_EQ(h.seq, w->id);
    write_resp(sb[1], w->id, "evil");
    coho_sleep_ms(50);
    CO_CHECK(!w->done);
    CO_CHECK_EQ(coho_tdp_get_stats(w->server, &st), 0);
    CO_CHECK_EQ(st.responses_dropped, 1);
    CO_CHECK_EQ(st.responses_in, 0);
    CO_CHECK_EQ(st.conns_open, 2); /* a stray response is not a protocol error */

    write_resp(sa[1], w->id, "good");
    coho_join(waiter, 2000);
    CO_CHECK(w->done);
    CO_CHECK_EQ(w->rc, 0);
    CO_CHECK_EQ(coho_cbuf_len(&w->resp), COHO_SOCK_HDR_LEN + 4);
    CO_CHECK_EQ(coho_cbuf_seek(&w->resp, COHO_SOCK_HDR_LEN, SEEK_SET), COHO_SOCK_HDR_LEN);
    CO_CHECK_EQ(coho_cbuf_read(&w->resp, body, sizeof(body)), (ssize_t)sizeof(body));
    CO_CHECK(memcmp(body, "good", 4) == 0);
    CO_CHECK_EQ(coho_tdp_get_stats(w->server, &st), 0);
    CO_CHECK_EQ(st.responses_in, 1);
    CO_CHECK_EQ(st.responses_dropped, 1);
    CO_CHECK_EQ(st.in_flight, 0);
    close(sa[1]);
    close(sb[1]);
    CO_CHECK_EQ(coho_tdp_close(w->server), 0);
}

static void response_on_another_connection_does_not_complete_the_request(void **state)
{
    struct cross_world w;

    (void)state;
    memset(&w, 0, sizeof(w));
    coho_cbuf_init(&w.resp, NULL);
    co_run(cross_main, &w);
    coho_cbuf_destroy(&w.resp);
}

/* ---- ids carry a per-pool secret: they do not count up, and two pools that allocate in the
 * same pattern hand out different ids ---- */
#define SEQ_IDS 64

static coho_tdp_pool_t *idle_listen_pool(void)
{
    struct sockaddr_in a;
    coho_tdp_opts_t o;

    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    coho_sock_framer_init(&sock_framer, &max_body);
    coho_tdp_opts_init(&o);
    o.framers[0] = &sock_framer;
    o.framer_count = 1;
    o.on_req = on_req;
    return coho_tdp_listen((struct sockaddr *)&a, sizeof(a), &o);
}

static void secret_main(void *arg)
{
    coho_tdp_pool_t *p[2] = {idle_listen_pool(), idle_listen_pool()};
    uint64_t ids[2][SEQ_IDS], diffs[SEQ_IDS - 1];
    int k, i, j;

    (void)arg;
    if (!CO_CHECK(p[0] != NULL && p[1] != NULL))
        return;
    /* Allocated and released one at a time: the same record again and again, its generation
     * counting up, in both pools alike. */
    for (k = 0; k < 2; k++)
        for (i = 0; i < SEQ_IDS; i++) {
            ids[k][i] = coho_tdp_req_id(p[k]);
            CO_CHECK_NE(ids[k][i], 0);
            CO_CHECK_EQ(coho_tdp_req_release(p[k], ids[k][i]), 0);
        }
    for (i = 0; i < SEQ_IDS; i++)
        for (j = 0; j < SEQ_IDS; j++)
            CO_CHECK(ids[0][i] != ids[1][j]);
    /* No stride: the steps between consecutive ids are all different. */
    for (i = 0; i < SEQ_IDS - 1; i++) {
        diffs[i] = ids[0][i + 1] - ids[0][i];
        for (j = 0; j < i; j++)
            CO_CHECK(diffs[i] != diffs[j]);
    }
    CO_CHECK_EQ(coho_tdp_close(p[0]), 0);
    CO_CHECK_EQ(coho_tdp_close(p[1]), 0);
}

static void request_ids_differ_between_pools_and_do_not_count_up(void **state)
{
    (void)state;
    co_run(secret_main, NULL);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(request_ids_are_unique_and_dead_once_collected_or_released),
        cmocka_unit_test(response_with_stale_id_of_reused_record_is_dropped),
        cmocka_unit_test(small_and_large_responses_arrive_whole_and_the_buffer_grows),
        cmocka_unit_test(response_on_another_connection_does_not_complete_the_request),
        cmocka_unit_test(request_ids_differ_between_pools_and_do_not_count_up),
    };

    return coho_test_main("socket_ext_ids", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
