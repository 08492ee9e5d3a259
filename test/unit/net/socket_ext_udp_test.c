/* SPDX-License-Identifier: MIT */
/* socket_ext over UDP: one datagram per frame, replies to the sender's address, malformed
 * datagrams dropped and counted while the socket keeps serving, lost answers as timeouts. */
/* ctest: TIMEOUT=60 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <coho.h>
#include <coho/net.h>

#include "test/support/cmocka_main.h"
#include "test/unit/net/socket_ext_check.h"

static size_t max_body = 60000;
static coho_tdp_framer_t sock_framer;
static const unsigned char zeros[COHO_SOCK_HDR_LEN + 100];

static struct sockaddr_in loopback(uint16_t port)
{
    struct sockaddr_in a;

    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    return a;
}

static void sock_opts(coho_tdp_opts_t *o)
{
    coho_sock_framer_init(&sock_framer, &max_body);
    coho_tdp_opts_init(o);
    o->framers[0] = &sock_framer;
    o->framer_count = 1;
    o->max_frame_len = COHO_SOCK_HDR_LEN + max_body;
}

/* ---- the server: `arg` body bytes back; type bit 0 = after (type >> 8) ms; type bit 1 =
 * never answer; records held requests and failed replies ---- */
struct server {
    coho_tdp_pool_t *pool;
    int handled;
    int reply_failed;
    int reply_errno;
};

struct job {
    struct server *sv;
    coho_tdp_req_t *rq;
};

static void handle_job(void *arg)
{
    struct job *j = arg;
    struct server *sv = j->sv;
    coho_tdp_req_t *rq = j->rq;
    unsigned char hdr[COHO_SOCK_HDR_LEN];
    coho_sock_hdr_t h;
    unsigned char *body;

    free(j);
    if (!CO_CHECK_EQ(coho_cbuf_read(&rq->frame, hdr, sizeof(hdr)), (ssize_t)sizeof(hdr)) ||
        !CO_CHECK_EQ(coho_sock_hdr_decode(hdr, &h), 0)) {
        coho_tdp_req_free(rq);
        return;
    }
    CO_CHECK_EQ(rq->req_id, h.seq);
    CO_CHECK(rq->peer_len > 0);
    if (h.type & 1u)
        coho_sleep_ms(h.type >> 8);
    if (h.type & 2u) {
        coho_tdp_req_free(rq);
        return;
    }
    body = malloc(h.arg + 1u);
    if (CO_CHECK(body != NULL)) {
        co_fill(body, h.arg, h.seq);
        errno = 0;
        if (co_sock_reply(rq, h, body, h.arg) != 0) {
            sv->reply_failed++;
            sv->reply_errno = errno;
        }
    }
    free(body);
    coho_tdp_req_free(rq);
}

static void on_req(coho_tdp_req_t *rq, void *user)
{
    struct job *j = malloc(sizeof(*j));

    CO_CHECK(j != NULL);
    j->sv = user;
    j->rq = rq;
    j->sv->handled++;
    co_spawn(handle_job, j);
}

static void server_listen(struct server *sv, uint16_t port)
{
    coho_tdp_opts_t o;
    struct sockaddr_in a = loopback(port);

    sock_opts(&o);
    o.on_req = on_req;
    o.user = sv;
    sv->pool = coho_tdp_udp_listen((struct sockaddr *)&a, sizeof(a), &o);
    CO_CHECK(sv->pool != NULL);
    CO_CHECK_NE(coho_tdp_local_port(sv->pool), 0);
}

static coho_tdp_pool_t *client(uint16_t port, unsigned conns)
{
    coho_tdp_opts_t o;
    struct sockaddr_in a = loopback(port);
    coho_tdp_pool_t *p;

    sock_opts(&o);
    o.conn_count = conns;
    p = coho_tdp_udp_connect((struct sockaddr *)&a, sizeof(a), &o);
    CO_CHECK(p != NULL);
    return p;
}

/* One request for `want` body bytes; checks the answer. */
static int call(coho_tdp_pool_t *p, uint32_t want, uint32_t type, int64_t timeout_ms)
{
    unsigned char hdr[COHO_SOCK_HDR_LEN];
    coho_sock_hdr_t h = {.magic = COHO_SOCK_MAGIC, .type = type, .arg = want};
    uint64_t conn = coho_tdp_pick(p, 0), id;
    coho_cbuf_t resp;
    int rc, err;

    if (conn == 0)
        return -1;
    id = coho_tdp_req_id(p);
    CO_CHECK_NE(id, 0);
    h.seq = id;
    coho_sock_hdr_encode(&h, hdr);
    if (coho_tdp_send(p, conn, id, hdr, sizeof(hdr)) != 0) {
        err = errno;
        coho_tdp_req_release(p, id);
        errno = err;
        return -1;
    }
    coho_cbuf_init(&resp, NULL);
    rc = coho_tdp_wait_resp(p, id, timeout_ms, &resp);
    err = errno;
    if (rc == 0) {
        unsigned char *body = malloc(want + 1u), *exp = malloc(want + 1u);
        coho_sock_hdr_t rh;

        CO_CHECK_EQ(coho_cbuf_len(&resp), COHO_SOCK_HDR_LEN + want);
        CO_CHECK_EQ(coho_cbuf_read(&resp, hdr, sizeof(hdr)), (ssize_t)sizeof(hdr));
        CO_CHECK_EQ(coho_sock_hdr_decode(hdr, &rh), 0);
        CO_CHECK_EQ(rh.seq, id);
        CO_CHECK_EQ(coho_cbuf_read(&resp, body, want), (ssize_t)want);
        co_fill(exp, want, id);
        CO_CHECK(memcmp(body, exp, want) == 0);
        free(body);
        free(exp);
    }
    coho_cbuf_destroy(&resp);
    errno = err;
    return rc;
}

static coho_tdp_stats_t stats(const coho_tdp_pool_t *p)
{
    coho_tdp_stats_t st;

    CO_CHECK_EQ(coho_tdp_get_stats(p, &st), 0);
    return st;
}

/* ---- many coroutines, two client pools, one server socket ---- */
struct many {
    struct server sv;
    coho_tdp_pool_t *clients[2];
    int ok;
    int failed;
};

struct worker_arg {
    struct many *m;
    coho_tdp_pool_t *p;
};

static void worker(void *arg)
{
    struct worker_arg *a = arg;
    int i;

    for (i = 0; i < 10; i++) {
        /* Small enough that every answer in flight fits the client's receive buffer: UDP
         * drops what does not, and a drop would show as a timeout. */
        uint32_t want = (uint32_t)((coho_self() * 7 + (uint64_t)i * 409) % 1000);

        if (call(a->p, want, (i & 1) ? 1u | (3u << 8) : 0, 2000) == 0)
            a->m->ok++;
        else
            a->m->failed++;
    }
}

static void many_main(void *arg)
{
    struct many *m = arg;
    struct worker_arg wa[2];
    uint64_t ids[40];
    int i;

    server_listen(&m->sv, 0);
    m->clients[0] = client(coho_tdp_local_port(m->sv.pool), 2);
    m->clients[1] = client(coho_tdp_local_port(m->sv.pool), 1);
    for (i = 0; i < 2; i++) {
        wa[i].m = m;
        wa[i].p = m->clients[i];
    }
    for (i = 0; i < 40; i++)
        ids[i] = co_spawn(worker, &wa[i % 2]);
    for (i = 0; i < 40; i++)
        coho_join(ids[i], -1);
    CO_CHECK_EQ(stats(m->clients[0]).conns_open, 2);
    CO_CHECK_EQ(stats(m->clients[0]).in_flight, 0);
    CO_CHECK_EQ(stats(m->sv.pool).requests_in, 400);
    CO_CHECK_EQ(coho_tdp_close(m->clients[0]), 0);
    CO_CHECK_EQ(coho_tdp_close(m->clients[1]), 0);
    CO_CHECK_EQ(coho_tdp_close(m->sv.pool), 0);
}

static void udp_requests_from_many_coroutines_get_their_own_responses(void **state)
{
    struct many m;

    (void)state;
    memset(&m, 0, sizeof(m));
    co_run(many_main, &m);
    assert_int_equal(m.failed, 0);
    assert_int_equal(m.ok, 400);
}

/* ---- a plain UDP socket gets the answer at its own address; junk is dropped and counted ---- */
static void raw_main(void *arg)
{
    struct server *sv = arg;
    struct sockaddr_in a;
    unsigned char hdr[COHO_SOCK_HDR_LEN], junk[64];
    coho_sock_hdr_t h = {.magic = COHO_SOCK_MAGIC, .seq = 77, .arg = 5};
    struct timeval tv = {.tv_sec = 5};
    coho_tdp_pool_t *cli;
    coho_tdp_stats_t st;
    unsigned char got[256];
    int fd;

    server_listen(sv, 0);
    a = loopback(coho_tdp_local_port(sv->pool));
    fd = socket(AF_INET, SOCK_DGRAM, 0);
    CO_CHECK(fd >= 0);
    CO_CHECK_EQ(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);

    memset(junk, 'Z', sizeof(junk)); /* wrong magic */
    CO_CHECK_EQ(sendto(fd, junk, sizeof(junk), 0, (struct sockaddr *)&a, sizeof(a)), 64);
    h.body_len = 50; /* a truncated frame: the header says 50 body bytes, 10 follow */
    coho_sock_hdr_encode(&h, hdr);
    memcpy(got, hdr, sizeof(hdr));
    memset(got + sizeof(hdr), 0, 10);
    CO_CHECK_EQ(sendto(fd, got, sizeof(hdr) + 10, 0, (struct sockaddr *)&a, sizeof(a)),
                (ssize_t)sizeof(hdr) + 10);
    CO_CHECK_EQ(sendto(fd, zeros, sizeof(zeros), 0, (struct sockaddr *)&a, sizeof(a)),
                (ssize_t)sizeof(zeros)); /* zeros: no magic */
    h.body_len = 0;
    coho_sock_hdr_encode(&h, hdr);
    CO_CHECK_EQ(sendto(fd, hdr, sizeof(hdr), 0, (struct sockaddr *)&a, sizeof(a)),
                (ssize_t)sizeof(hdr));
    CO_CHECK_EQ(recv(fd, got, sizeof(got), 0), COHO_SOCK_HDR_LEN + 5);
    CO_CHECK_EQ(coho_sock_hdr_decode(got, &h), 0);
    CO_CHECK_EQ(h.seq, 77);
    CO_CHECK(h.type & COHO_SOCK_RESPONSE);
    close(fd);

    st = stats(sv->pool);
    CO_CHECK_EQ(st.protocol_errors, 3);
    CO_CHECK_EQ(st.requests_in, 1);
    CO_CHECK_EQ(st.conns_open, 1); /* the socket stays */
    cli = client(coho_tdp_local_port(sv->pool), 1);
    CO_CHECK_EQ(call(cli, 1000, 0, 2000), 0);
    CO_CHECK_EQ(coho_tdp_close(cli), 0);
    CO_CHECK_EQ(coho_tdp_close(sv->pool), 0);
}

static void udp_reply_goes_to_the_sender_and_bad_datagrams_are_dropped(void **state)
{
    struct server sv;

    (void)state;
    memset(&sv, 0, sizeof(sv));
    co_run(raw_main, &sv);
    assert_int_equal(sv.reply_failed, 0);
}

/* ---- a lost answer is a timeout; a server that is not there is too, and then returns ---- */
static void lost_main(void *arg)
{
    struct server *sv = arg;
    coho_tdp_pool_t *cli;
    uint16_t port;
    uint64_t t0;

    server_listen(sv, 0);
    port = coho_tdp_local_port(sv->pool);
    cli = client(port, 1);
    t0 = co_now_ms();
    errno = 0;
    CO_CHECK_EQ(call(cli, 10, 2u, 50), -1); /* the server drops it */
    CO_CHECK_EQ(errno, ETIMEDOUT);
    CO_CHECK(co_now_ms() - t0 >= 50);
    CO_CHECK_EQ(stats(cli).in_flight, 0);

    CO_CHECK_EQ(coho_tdp_close(sv->pool), 0);
    errno = 0;
    CO_CHECK_EQ(call(cli, 10, 0, 50), -1); /* ICMP port unreachable: still a timeout */
    CO_CHECK_EQ(errno, ETIMEDOUT);
    CO_CHECK_EQ(stats(cli).conns_open, 1);

    memset(sv, 0, sizeof(*sv));
    server_listen(sv, port);
    CO_CHECK_EQ(call(cli, 10, 0, 2000), 0); /* the same socket works again */
    CO_CHECK_EQ(coho_tdp_close(cli), 0);
    CO_CHECK_EQ(coho_tdp_close(sv->pool), 0);
}

static void udp_lost_answer_or_missing_server_is_a_timeout(void **state)
{
    struct server sv;

    (void)state;
    memset(&sv, 0, sizeof(sv));
    co_run(lost_main, &sv);
}

/* ---- frames past a datagram or max_frame_len fail with EMSGSIZE, and nothing is sent ---- */
static void big_main(void *arg)
{
    struct server *sv = arg;
    coho_tdp_pool_t *cli;
    unsigned char *big = calloc(1, 70000);
    uint64_t conn;

    CO_CHECK(big != NULL);
    server_listen(sv, 0);
    cli = client(coho_tdp_local_port(sv->pool), 1);
    conn = coho_tdp_pick(cli, 0);
    CO_CHECK_NE(conn, 0);
    errno = 0;
    CO_CHECK_EQ(coho_tdp_send(cli, conn, 0, big, 70000), -1);
    CO_CHECK_EQ(errno, EMSGSIZE);
    errno = 0;
    CO_CHECK_EQ(coho_tdp_send(cli, conn, 0, big, COHO_SOCK_HDR_LEN + max_body + 1), -1);
    CO_CHECK_EQ(errno, EMSGSIZE);
    CO_CHECK_EQ(call(cli, (uint32_t)max_body, 0, 2000), 0); /* the largest answer */
    free(big);
    CO_CHECK_EQ(coho_tdp_close(cli), 0);
    CO_CHECK_EQ(coho_tdp_close(sv->pool), 0);
}

static void udp_frame_past_the_limits_fails_with_emsgsize(void **state)
{
    struct server sv;

    (void)state;
    memset(&sv, 0, sizeof(sv));
    co_run(big_main, &sv);
}

/* ---- close: waiters get ECANCELED, held requests' replies ENOTCONN ---- */
struct close_world {
    struct server sv;
    coho_tdp_pool_t *cli;
    int rc;
    int err;
    uint64_t ms;
};

static void close_waiter(void *arg)
{
    struct close_world *w = arg;
    uint64_t t0 = co_now_ms();

    errno = 0;
    w->rc = call(w->cli, 10, 1u | (300u << 8), 5000);
    w->err = errno;
    w->ms = co_now_ms() - t0;
}

static void close_main(void *arg)
{
    struct close_world *w = arg;
    uint64_t a;

    server_listen(&w->sv, 0);
    w->cli = client(coho_tdp_local_port(w->sv.pool), 1);
    a = co_spawn(close_waiter, w);
    coho_sleep_ms(50);
    CO_CHECK_EQ(w->sv.handled, 1);
    CO_CHECK_EQ(coho_tdp_close(w->sv.pool), 0); /* the request stays held */
    CO_CHECK_EQ(coho_tdp_close(w->cli), 0);
    coho_join(a, -1);
    CO_CHECK_EQ(w->rc, -1);
    CO_CHECK_EQ(w->err, ECANCELED);
    CO_CHECK(w->ms < 250);
}

static void udp_close_cancels_waiters_and_held_requests_reply_enotconn(void **state)
{
    struct close_world w;

    (void)state;
    memset(&w, 0, sizeof(w));
    co_run(close_main, &w);
    assert_int_equal(w.sv.reply_failed, 1);
    assert_int_equal(w.sv.reply_errno, ENOTCONN);
}

/* ---- bad arguments ---- */
static void badarg_main(void *arg)
{
    coho_tdp_opts_t o;
    struct sockaddr_in a = loopback(0);
    coho_tdp_pool_t *p;
    int sv[2];

    (void)arg;
    sock_opts(&o);
    errno = 0;
    CO_CHECK(coho_tdp_udp_listen((struct sockaddr *)&a, sizeof(a), &o) == NULL); /* no on_req */
    CO_CHECK_EQ(errno, EINVAL);
    o.on_req = on_req;
    o.user = NULL;
    p = coho_tdp_udp_listen((struct sockaddr *)&a, sizeof(a), &o);
    CO_CHECK(p != NULL);
    CO_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    errno = 0;
    CO_CHECK_EQ(coho_tdp_attach(p, sv[0]), 0); /* stream fds are not for datagram pools */
    CO_CHECK_EQ(errno, EINVAL);
    close(sv[0]);
    close(sv[1]);
    errno = 0;
    CO_CHECK_EQ(coho_tdp_reply(NULL, "x", 1), -1);
    CO_CHECK_EQ(errno, EINVAL);
    CO_CHECK_EQ(coho_tdp_close(p), 0);
}

static void udp_bad_arguments_give_einval(void **state)
{
    coho_tdp_opts_t o;
    struct sockaddr_in a = loopback(0);

    (void)state;
    sock_opts(&o);
    errno = 0;
    assert_null(coho_tdp_udp_connect((struct sockaddr *)&a, sizeof(a), &o)); /* outside */
    assert_int_equal(errno, EPERM);
    co_run(badarg_main, NULL);
}

/* ---- on_req may close its own pool ---- */
static coho_tdp_pool_t *closing_pool;
static int closed_inline;

static void on_req_closing(coho_tdp_req_t *rq, void *user)
{
    (void)user;
    coho_tdp_req_free(rq);
    CO_CHECK_EQ(coho_tdp_close(closing_pool), 0);
    closed_inline++;
}

static void self_close_main(void *arg)
{
    coho_tdp_opts_t o;
    struct sockaddr_in a = loopback(0);
    unsigned char hdr[COHO_SOCK_HDR_LEN];
    coho_sock_hdr_t h = {.magic = COHO_SOCK_MAGIC, .seq = 1};
    uint64_t t0 = co_now_ms();
    int fd;

    (void)arg;
    sock_opts(&o);
    o.on_req = on_req_closing;
    closing_pool = coho_tdp_udp_listen((struct sockaddr *)&a, sizeof(a), &o);
    CO_CHECK(closing_pool != NULL);
    a = loopback(coho_tdp_local_port(closing_pool));
    fd = socket(AF_INET, SOCK_DGRAM, 0);
    CO_CHECK(fd >= 0);
    coho_sock_hdr_encode(&h, hdr);
    CO_CHECK_EQ(sendto(fd, hdr, sizeof(hdr), 0, (struct sockaddr *)&a, sizeof(a)),
                (ssize_t)sizeof(hdr));
    close(fd);
    while (closed_inline == 0 && CO_CHECK(co_now_ms() - t0 < 2000))
        coho_sleep_ms(2);
    /* The pool's receive coroutine ends too: only this one is left unfinished. */
    for (;;) {
        coho_sched_stats_t st;

        CO_CHECK_EQ(coho_sched_get_stats(co_checks.sched, &st), 0);
        if (st.unfinished == 1)
            break;
        if (!CO_CHECK(co_now_ms() - t0 < 2000))
            break;
        coho_sleep_ms(2);
    }
}

static void udp_on_req_may_close_its_own_pool(void **state)
{
    (void)state;
    co_run(self_close_main, NULL);
    assert_int_equal(closed_inline, 1);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(udp_requests_from_many_coroutines_get_their_own_responses),
        cmocka_unit_test(udp_reply_goes_to_the_sender_and_bad_datagrams_are_dropped),
        cmocka_unit_test(udp_lost_answer_or_missing_server_is_a_timeout),
        cmocka_unit_test(udp_frame_past_the_limits_fails_with_emsgsize),
        cmocka_unit_test(udp_close_cancels_waiters_and_held_requests_reply_enotconn),
        cmocka_unit_test(udp_bad_arguments_give_einval),
        cmocka_unit_test(udp_on_req_may_close_its_own_pool),
    };

    return coho_test_main("socket_ext_udp", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
