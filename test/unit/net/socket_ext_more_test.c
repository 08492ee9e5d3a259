/* SPDX-License-Identifier: MIT */
/* socket_ext: reconnects with backoff, round-robin picks, the listen pool's connection limit,
 * connection callbacks, frame limits and truncated frames, closing a pool with work in flight,
 * and the connect timeout against a listener that never accepts. */
/* ctest: TIMEOUT=60 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <coho.h>
#include <coho/net.h>

#include "test/support/cmocka_main.h"
#include "test/unit/net/socket_ext_check.h"

static size_t max_body = 1u << 20;
static coho_tdp_framer_t sock_framer;
static const unsigned char zeros[4096];

static void sock_opts(coho_tdp_opts_t *o)
{
    coho_sock_framer_init(&sock_framer, &max_body);
    coho_tdp_opts_init(o);
    o->framers[0] = &sock_framer;
    o->framer_count = 1;
}

static struct sockaddr_in loopback(uint16_t port)
{
    struct sockaddr_in a;

    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    return a;
}

/* ---- the server: answers a request with `arg` body bytes, after (type >> 8) ms when type
 * bit 0 is set; records what its sends returned ---- */
struct server {
    coho_tdp_pool_t *pool;
    int handled;
    int send_failed;
    int send_errno;
    uint64_t new_ids[16];
    int new_count;
    uint64_t del_ids[16];
    int del_errs[16];
    int del_count;
};

/* A request and the server that took it: the handler records its send's result there, also
 * after the pool is closed (rq->pool is then only good for the send and the free). */
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
    struct iovec iov[2];

    free(j);
    if (coho_cbuf_read(&rq->frame, hdr, sizeof(hdr)) != (ssize_t)sizeof(hdr) ||
        coho_sock_hdr_decode(hdr, &h) != 0) {
        coho_tdp_req_free(rq); /* another framer's request: not answered */
        return;
    }
    if (h.type & 1u)
        coho_sleep_ms(h.type >> 8);
    body = calloc(1, h.arg + 1u);
    h.type |= COHO_SOCK_RESPONSE;
    h.body_len = h.arg;
    h.arg = 0;
    coho_sock_hdr_encode(&h, hdr);
    iov[0].iov_base = hdr;
    iov[0].iov_len = sizeof(hdr);
    iov[1].iov_base = body;
    iov[1].iov_len = h.body_len;
    errno = 0;
    if (coho_tdp_sendv(rq->pool, rq->conn_id, 0, iov, h.body_len ? 2 : 1) != 0) {
        sv->send_failed++;
        sv->send_errno = errno;
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

static void on_conn_new(coho_tdp_pool_t *p, uint64_t conn_id, void *user)
{
    struct server *sv = user;

    (void)p;
    CO_CHECK(sv->new_count < 16);
    sv->new_ids[sv->new_count++] = conn_id;
}

static void on_conn_delete(coho_tdp_pool_t *p, uint64_t conn_id, int err, void *user)
{
    struct server *sv = user;

    (void)p;
    CO_CHECK(sv->del_count < 16);
    sv->del_errs[sv->del_count] = err;
    sv->del_ids[sv->del_count++] = conn_id;
}

static coho_tdp_pool_t *server_listen(struct server *sv, uint16_t port)
{
    coho_tdp_opts_t o;
    struct sockaddr_in a = loopback(port);

    sock_opts(&o);
    o.on_req = on_req;
    o.on_conn_new = on_conn_new;
    o.on_conn_delete = on_conn_delete;
    o.user = sv;
    sv->pool = coho_tdp_listen((struct sockaddr *)&a, sizeof(a), &o);
    CO_CHECK(sv->pool != NULL);
    return sv->pool;
}

/* One request: `want` body bytes back, after `delay_ms` if not 0. */
static int call(coho_tdp_pool_t *p, uint32_t want, unsigned delay_ms, int64_t pick_ms,
                int64_t timeout_ms)
{
    unsigned char hdr[COHO_SOCK_HDR_LEN];
    coho_sock_hdr_t h = {.magic = COHO_SOCK_MAGIC, .arg = want};
    uint64_t conn = coho_tdp_pick(p, pick_ms), id;
    coho_cbuf_t resp;
    int rc, err;

    if (conn == 0)
        return -1;
    if (delay_ms != 0)
        h.type = 1u | (delay_ms << 8);
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
        coho_sock_hdr_t rh;

        CO_CHECK_EQ(coho_cbuf_len(&resp), COHO_SOCK_HDR_LEN + want);
        CO_CHECK_EQ(coho_sock_hdr_decode(coho_cbuf_linearize(&resp, COHO_SOCK_HDR_LEN), &rh), 0);
        CO_CHECK_EQ(rh.seq, id);
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

/* Parks until the pool has `n` open connections (at most `limit_ms`). */
static void wait_conns_open(coho_tdp_pool_t *p, uint64_t n, uint64_t limit_ms)
{
    uint64_t t0 = co_now_ms();

    while (stats(p).conns_open != n && CO_CHECK(co_now_ms() - t0 < limit_ms))
        coho_sleep_ms(2);
}

static coho_tdp_pool_t *client_connect(uint16_t port, unsigned conns, struct server *cb)
{
    coho_tdp_opts_t o;
    struct sockaddr_in a = loopback(port);
    coho_tdp_pool_t *p;

    sock_opts(&o);
    o.conn_count = conns;
    o.reconnect_min_ms = 5;
    o.reconnect_max_ms = 40;
    if (cb != NULL) {
        o.on_conn_new = on_conn_new;
        o.on_conn_delete = on_conn_delete;
        o.user = cb;
    }
    p = coho_tdp_connect((struct sockaddr *)&a, sizeof(a), &o);
    CO_CHECK(p != NULL);
    return p;
}

/* A raw client socket connected to `port`, with a receive timeout so a test fails rather than
 * hangs when the server does not close it. */
static int raw_connect(uint16_t port)
{
    struct sockaddr_in a = loopback(port);
    struct timeval tv = {.tv_sec = 5};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    CO_CHECK(fd >= 0);
    CO_CHECK_EQ(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
    CO_CHECK_EQ(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

/* Asserts that the server closed `fd` (reads to EOF), then closes it. */
static void expect_closed_by_server(int fd)
{
    char b[256];
    ssize_t n;

    while ((n = recv(fd, b, sizeof(b), 0)) > 0)
        ;
    CO_CHECK_EQ(n, 0);
    close(fd);
}

/* A request header with seq 7 and `body_len` body bytes to follow. */
static void sock_header(unsigned char *hdr, uint32_t body_len)
{
    coho_sock_hdr_t h = {.magic = COHO_SOCK_MAGIC, .seq = 7, .body_len = body_len};

    coho_sock_hdr_encode(&h, hdr);
}

/* ---- the server goes away and comes back: the pool reconnects with backoff ---- */
static void reconnect_main(void *arg)
{
    struct server *sv = arg;
    coho_tdp_pool_t *client;
    coho_tdp_stats_t st;
    uint16_t port;
    uint64_t t0;

    server_listen(sv, 0);
    port = coho_tdp_local_port(sv->pool);
    client = client_connect(port, 2, NULL);
    CO_CHECK_EQ(call(client, 10, 0, 2000, 2000), 0);
    CO_CHECK_EQ(stats(client).reconnects, 0);

    CO_CHECK_EQ(coho_tdp_close(sv->pool), 0);
    wait_conns_open(client, 0, 1000);
    /* The outage: a caller fails when its pick times out, at the time it asked for. */
    t0 = co_now_ms();
    errno = 0;
    CO_CHECK_EQ(call(client, 10, 0, 100, 2000), -1);
    CO_CHECK_EQ(errno, ETIMEDOUT);
    CO_CHECK(co_now_ms() - t0 >= 100);
    CO_CHECK(co_now_ms() - t0 < 1000);
    st = stats(client);
    CO_CHECK(st.reconnects >= 2); /* both keepers kept trying */
    /* ... but backed off: 100 ms at 5..40 ms per attempt and keeper is ~6 attempts each. */
    CO_CHECK(st.reconnects <= 2 * 12);

    memset(sv, 0, sizeof(*sv));
    server_listen(sv, port);
    t0 = co_now_ms();
    CO_CHECK_EQ(call(client, 10, 0, 2000, 2000), 0);
    CO_CHECK(co_now_ms() - t0 < 40 + 500); /* the backoff cap plus slack */
    wait_conns_open(client, 2, 1000);
    st = stats(client);
    CO_CHECK_EQ(st.conns_total, 4);
    CO_CHECK(st.reconnects > 2);
    CO_CHECK_EQ(st.in_flight, 0);
    CO_CHECK_EQ(coho_tdp_close(client), 0);
    CO_CHECK_EQ(coho_tdp_close(sv->pool), 0);
}

static void pool_reconnects_with_backoff_after_server_returns(void **state)
{
    struct server sv;

    (void)state;
    memset(&sv, 0, sizeof(sv));
    co_run(reconnect_main, &sv);
}

/* ---- pick spreads over every healthy connection, and skips a broken one ---- */
static void collect_id(uint64_t conn_id, int fd, void *arg)
{
    uint64_t *ids = arg;
    int i;

    CO_CHECK(fd >= 0);
    for (i = 0; ids[i] != 0; i++)
        ;
    ids[i] = conn_id;
}

static void shutdown_first(uint64_t conn_id, int fd, void *arg)
{
    int *done = arg;

    (void)conn_id;
    if (!*done)
        shutdown(fd, SHUT_RDWR);
    *done = 1;
}

/* `n` picks over a pool with `conns` open connections: each comes up n / conns times. */
static void expect_round_robin(coho_tdp_pool_t *p, unsigned conns)
{
    uint64_t live[17] = {0}, got;
    unsigned i, j, count[16] = {0};

    CO_CHECK_EQ(coho_tdp_for_each_conn(p, collect_id, live), 0);
    for (i = 0; i < 3 * conns; i++) {
        got = coho_tdp_pick(p, 0);
        for (j = 0; j < conns && live[j] != got; j++)
            ;
        CO_CHECK(j < conns); /* a live connection */
        count[j]++;
    }
    for (j = 0; j < conns; j++)
        CO_CHECK_EQ(count[j], 3);
}

static void rr_main(void *arg)
{
    struct server *sv = arg;
    coho_tdp_pool_t *client;
    coho_tdp_opts_t o;
    struct sockaddr_in a;
    int done = 0;

    server_listen(sv, 0);
    a = loopback(coho_tdp_local_port(sv->pool));
    sock_opts(&o);
    o.conn_count = 4;
    o.reconnect_min_ms = 5000; /* a broken connection stays down during the test */
    o.reconnect_max_ms = 5000;
    client = coho_tdp_connect((struct sockaddr *)&a, sizeof(a), &o);
    CO_CHECK(client != NULL);
    wait_conns_open(client, 4, 2000);
    wait_conns_open(sv->pool, 4, 2000);
    expect_round_robin(client, 4);
    expect_round_robin(sv->pool, 4);

    CO_CHECK_EQ(coho_tdp_for_each_conn(sv->pool, shutdown_first, &done), 0);
    wait_conns_open(client, 3, 2000);
    expect_round_robin(client, 3);
    CO_CHECK_EQ(call(client, 100, 0, 0, 2000), 0);
    CO_CHECK_EQ(coho_tdp_close(client), 0);
    CO_CHECK_EQ(coho_tdp_close(sv->pool), 0);
}

static void pick_round_robins_over_healthy_connections(void **state)
{
    struct server sv;

    (void)state;
    memset(&sv, 0, sizeof(sv));
    co_run(rr_main, &sv);
}

/* ---- a listen pool at max_conns accepts and closes the excess, and counts it ---- */
static void max_conns_main(void *arg)
{
    struct server *sv = arg;
    coho_tdp_opts_t o;
    struct sockaddr_in a = loopback(0);
    coho_tdp_stats_t st;
    uint16_t port;
    int fds[4];

    sock_opts(&o);
    o.on_req = on_req;
    o.user = sv;
    o.max_conns = 2;
    sv->pool = coho_tdp_listen((struct sockaddr *)&a, sizeof(a), &o);
    CO_CHECK(sv->pool != NULL);
    port = coho_tdp_local_port(sv->pool);
    fds[0] = raw_connect(port);
    fds[1] = raw_connect(port);
    wait_conns_open(sv->pool, 2, 2000);
    fds[2] = raw_connect(port);
    expect_closed_by_server(fds[2]);
    st = stats(sv->pool);
    CO_CHECK_EQ(st.conns_rejected, 1);
    CO_CHECK_EQ(st.conns_open, 2);
    CO_CHECK_EQ(st.conns_total, 2);

    close(fds[0]); /* room for one more */
    wait_conns_open(sv->pool, 1, 2000);
    fds[3] = raw_connect(port);
    wait_conns_open(sv->pool, 2, 2000);
    st = stats(sv->pool);
    CO_CHECK_EQ(st.conns_rejected, 1);
    CO_CHECK_EQ(st.conns_total, 3);
    close(fds[1]);
    close(fds[3]);
    CO_CHECK_EQ(coho_tdp_close(sv->pool), 0);
}

static void listen_pool_past_max_conns_closes_and_counts_the_excess(void **state)
{
    struct server sv;

    (void)state;
    memset(&sv, 0, sizeof(sv));
    co_run(max_conns_main, &sv);
}

/* ---- out of fds with no reserve fd to shed with: the accept loop backs off and accepts again
 * once fds are free ---- */
#define EMFILE_FILL_MAX 512

/* One request on `fd`, and its answer read back. */
static void raw_exchange(int fd)
{
    unsigned char hdr[COHO_SOCK_HDR_LEN];
    coho_sock_hdr_t h;

    sock_header(hdr, 0);
    CO_CHECK_EQ(send(fd, hdr, sizeof(hdr), 0), (ssize_t)sizeof(hdr));
    CO_CHECK_EQ(recv(fd, hdr, sizeof(hdr), MSG_WAITALL), (ssize_t)sizeof(hdr));
    CO_CHECK_EQ(coho_sock_hdr_decode(hdr, &h), 0);
    CO_CHECK(h.type & COHO_SOCK_RESPONSE);
}

static void emfile_main(void *arg)
{
    struct server *sv = arg;
    struct sockaddr_in a = loopback(0);
    struct timeval tv = {.tv_sec = 5};
    struct rlimit old, low;
    coho_tdp_opts_t o;
    coho_tdp_stats_t st;
    int *fill = calloc(EMFILE_FILL_MAX, sizeof(*fill));
    int nul, c1, c2, nfill = 0;

    /* The clients' sockets and the fd the table is filled with exist before it is full. */
    nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
    c1 = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    c2 = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (!CO_CHECK(fill != NULL && nul >= 0 && c1 >= 0 && c2 >= 0))
        return;
    CO_CHECK_EQ(setsockopt(c1, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
    CO_CHECK_EQ(setsockopt(c2, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
    /* A soft limit a little above the lowest free fd, every number below it taken but one: the
     * listen socket takes that one, and the pool finds no fd for its reserve. (Each test case
     * is a process of its own: the limit dies with it.) */
    CO_CHECK_EQ(getrlimit(RLIMIT_NOFILE, &old), 0);
    low = old;
    low.rlim_cur = (rlim_t)c2 + 32;
    CO_CHECK_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
    while (nfill < EMFILE_FILL_MAX && (fill[nfill] = fcntl(nul, F_DUPFD_CLOEXEC, 0)) >= 0)
        nfill++;
    CO_CHECK_EQ(errno, EMFILE);
    if (!CO_CHECK(nfill > 0))
        return;
    close(fill[--nfill]);

    sock_opts(&o);
    o.on_req = on_req;
    o.user = sv;
    sv->pool = coho_tdp_listen((struct sockaddr *)&a, sizeof(a), &o);
    if (!CO_CHECK(sv->pool != NULL))
        return;
    a = loopback(coho_tdp_local_port(sv->pool));
    CO_CHECK_EQ(connect(c1, (struct sockaddr *)&a, sizeof(a)), 0); /* waits in the backlog */
    coho_sleep_ms(30);
    st = stats(sv->pool);
    CO_CHECK_EQ(st.conns_total, 0);
    CO_CHECK_EQ(st.conns_rejected, 0); /* no reserve: nothing could be shed either */

    /* fds free again: the accept loop, backing off meanwhile, takes c1 from the backlog, and
     * c2 after it; both are served. */
    while (nfill > 0)
        close(fill[--nfill]);
    CO_CHECK_EQ(setrlimit(RLIMIT_NOFILE, &old), 0);
    CO_CHECK_EQ(connect(c2, (struct sockaddr *)&a, sizeof(a)), 0);
    wait_conns_open(sv->pool, 2, 1000);
    raw_exchange(c1);
    raw_exchange(c2);
    st = stats(sv->pool);
    CO_CHECK_EQ(st.conns_total, 2);
    CO_CHECK_EQ(st.conns_rejected, 0);
    close(c1);
    close(c2);
    close(nul);
    free(fill);
    CO_CHECK_EQ(coho_tdp_close(sv->pool), 0);
}

static void accept_backs_off_when_out_of_fds_and_resumes_when_fds_are_free(void **state)
{
    struct server sv;

    (void)state;
    memset(&sv, 0, sizeof(sv));
    co_run(emfile_main, &sv);
    assert_int_equal(sv.handled, 2);
}

/* ---- out of fds with the reserve fd at hand and nothing queued: accept fails with EMFILE even
 * then (the kernel takes the fd before it looks at the queue); the accept loop waits for a
 * connection instead of retrying at once (a loop that never parks would starve every other
 * coroutine of the thread), sheds the one that comes, and serves again once fds are free ---- */
static void emfile_idle_main(void *arg)
{
    struct server *sv = arg;
    struct sockaddr_in a = loopback(0);
    struct timeval tv = {.tv_sec = 5};
    struct rlimit old, low;
    coho_tdp_opts_t o;
    coho_tdp_stats_t st;
    int *fill = calloc(EMFILE_FILL_MAX, sizeof(*fill));
    int nul, c1, c2, nfill = 0;
    uint64_t t0;
    char byte;

    nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
    c1 = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    c2 = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (!CO_CHECK(fill != NULL && nul >= 0 && c1 >= 0 && c2 >= 0))
        return;
    CO_CHECK_EQ(setsockopt(c1, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
    CO_CHECK_EQ(setsockopt(c2, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
    /* The pool (listen socket and reserve fd) first, then every fd below the limit taken. */
    sock_opts(&o);
    o.on_req = on_req;
    o.user = sv;
    sv->pool = coho_tdp_listen((struct sockaddr *)&a, sizeof(a), &o);
    if (!CO_CHECK(sv->pool != NULL))
        return;
    a = loopback(coho_tdp_local_port(sv->pool));
    CO_CHECK_EQ(getrlimit(RLIMIT_NOFILE, &old), 0);
    low = old;
    low.rlim_cur = (rlim_t)c2 + 32;
    CO_CHECK_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
    while (nfill < EMFILE_FILL_MAX && (fill[nfill] = fcntl(nul, F_DUPFD_CLOEXEC, 0)) >= 0)
        nfill++;
    CO_CHECK_EQ(errno, EMFILE);

    /* Nothing queued: this coroutine's sleep returns (the accept loop parks) and nothing is
     * counted as shed. Generous bound: the machine may be loaded. */
    t0 = co_now_ms();
    CO_CHECK_EQ(coho_sleep_ms(50), 0);
    CO_CHECK(co_now_ms() - t0 < 5000);
    st = stats(sv->pool);
    CO_CHECK_EQ(st.conns_rejected, 0);
    CO_CHECK_EQ(st.conns_total, 0);

    /* A connection comes: shed with the reserve fd, so the client sees the close at once. */
    CO_CHECK_EQ(connect(c1, (struct sockaddr *)&a, sizeof(a)), 0);
    CO_CHECK_EQ(recv(c1, &byte, 1, 0), 0);
    st = stats(sv->pool);
    CO_CHECK_EQ(st.conns_rejected, 1);
    CO_CHECK_EQ(st.conns_total, 0);

    /* fds free again: the next connection is served. */
    while (nfill > 0)
        close(fill[--nfill]);
    CO_CHECK_EQ(setrlimit(RLIMIT_NOFILE, &old), 0);
    CO_CHECK_EQ(connect(c2, (struct sockaddr *)&a, sizeof(a)), 0);
    wait_conns_open(sv->pool, 1, 2000);
    raw_exchange(c2);
    st = stats(sv->pool);
    CO_CHECK_EQ(st.conns_total, 1);
    CO_CHECK_EQ(st.conns_rejected, 1);
    close(c1);
    close(c2);
    close(nul);
    free(fill);
    CO_CHECK_EQ(coho_tdp_close(sv->pool), 0);
}

static void accept_out_of_fds_and_idle_waits_then_sheds_a_new_client(void **state)
{
    struct server sv;

    (void)state;
    memset(&sv, 0, sizeof(sv));
    co_run(emfile_idle_main, &sv);
    assert_int_equal(sv.handled, 1);
}

/* ---- backpressure: a client that pipelines far more requests than its connection may hold
 * in on_req is read no further until they drain; every request is answered, nothing closed ---- */
#define BP_REQS 200

struct bp_world {
    coho_tdp_pool_t *pool;
    unsigned max_reqs;
    size_t max_len;
    uint32_t body_len; /* of each request */
    unsigned live;     /* requests in on_req, not yet freed */
    unsigned live_max;
    size_t live_len; /* ... their frames' bytes */
    size_t live_len_max;
    unsigned answered;
    unsigned hold_ms; /* how long a handler holds its request (default 2) */
    bool closed;      /* the pool was closed under the handlers: their replies fail */
    bool seen[BP_REQS + 1];
};

static struct bp_world *bp;

/* Holds the request hold_ms, answers it (header only, same seq), frees it. */
static void bp_handle(void *arg)
{
    coho_tdp_req_t *rq = arg;
    unsigned char hdr[COHO_SOCK_HDR_LEN];
    coho_sock_hdr_t h;
    size_t len = coho_cbuf_len(&rq->frame);

    coho_sleep_ms(bp->hold_ms != 0 ? bp->hold_ms : 2);
    if (!bp->closed &&
        CO_CHECK_EQ(coho_cbuf_read(&rq->frame, hdr, sizeof(hdr)), (ssize_t)sizeof(hdr)) &&
        CO_CHECK_EQ(coho_sock_hdr_decode(hdr, &h), 0)) {
        h.type |= COHO_SOCK_RESPONSE;
        h.body_len = 0;
        coho_sock_hdr_encode(&h, hdr);
        CO_CHECK_EQ(coho_tdp_reply(rq, hdr, sizeof(hdr)), 0);
    }
    bp->live--;
    bp->live_len -= len;
    coho_tdp_req_free(rq);
}

static void bp_on_req(coho_tdp_req_t *rq, void *user)
{
    (void)user;
    bp->live++;
    bp->live_len += coho_cbuf_len(&rq->frame);
    if (bp->live > bp->live_max)
        bp->live_max = bp->live;
    if (bp->live_len > bp->live_len_max)
        bp->live_len_max = bp->live_len;
    co_spawn(bp_handle, rq);
}

static void bp_main(void *arg)
{
    struct bp_world *w = arg;
    struct sockaddr_in a = loopback(0);
    size_t flen = COHO_SOCK_HDR_LEN + w->body_len;
    unsigned char *reqs = calloc(BP_REQS, flen), hdr[COHO_SOCK_HDR_LEN];
    coho_tdp_opts_t o;
    coho_tdp_stats_t st;
    int sp[2];
    unsigned i;

    if (!CO_CHECK(reqs != NULL))
        return;
    bp = w;
    sock_opts(&o);
    o.on_req = bp_on_req;
    o.max_conn_reqs = w->max_reqs;
    o.max_conn_req_len = w->max_len;
    w->pool = coho_tdp_listen((struct sockaddr *)&a, sizeof(a), &o);
    if (!CO_CHECK(w->pool != NULL))
        return;
    CO_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
    CO_CHECK_NE(coho_tdp_attach(w->pool, sp[0]), 0);
    /* All the requests at once: they fit the socket buffers, so the pool could read them all. */
    for (i = 0; i < BP_REQS; i++) {
        coho_sock_hdr_t h = {.magic = COHO_SOCK_MAGIC, .seq = i + 1, .body_len = w->body_len};

        coho_sock_hdr_encode(&h, reqs + i * flen);
    }
    CO_CHECK_EQ(send(sp[1], reqs, BP_REQS * flen, 0), (ssize_t)(BP_REQS * flen));
    for (i = 0; i < BP_REQS; i++) {
        coho_sock_hdr_t h;

        if (!CO_CHECK_EQ(recv(sp[1], hdr, sizeof(hdr), MSG_WAITALL), (ssize_t)sizeof(hdr)))
            break;
        CO_CHECK_EQ(coho_sock_hdr_decode(hdr, &h), 0);
        if (CO_CHECK(h.seq >= 1 && h.seq <= BP_REQS && !w->seen[h.seq]))
            w->seen[h.seq] = true;
        w->answered++;
    }
    st = stats(w->pool);
    CO_CHECK_EQ(st.requests_in, BP_REQS);
    CO_CHECK_EQ(st.conns_open, 1); /* held back, never closed */
    CO_CHECK_EQ(st.protocol_errors, 0);
    close(sp[1]);
    free(reqs);
    CO_CHECK_EQ(coho_tdp_close(w->pool), 0);
}

static void pipelined_requests_past_max_conn_reqs_wait_and_are_all_answered(void **state)
{
    struct bp_world w;

    (void)state;
    memset(&w, 0, sizeof(w));
    w.max_reqs = 8;
    w.max_len = 0; /* no byte limit */
    co_run(bp_main, &w);
    assert_int_equal(w.answered, BP_REQS);
    assert_int_equal(w.live_max, 8); /* reached, never passed */
}

static void pipelined_requests_past_max_conn_req_len_wait_and_are_all_answered(void **state)
{
    struct bp_world w;

    (void)state;
    memset(&w, 0, sizeof(w));
    w.max_reqs = 0; /* no count limit */
    w.max_len = 1000;
    w.body_len = 100; /* 124-byte frames: the 9th reaches 1000 bytes */
    co_run(bp_main, &w);
    assert_int_equal(w.answered, BP_REQS);
    assert_int_equal(w.live_max, 9);
    assert_true(w.live_len_max < 1000 + COHO_SOCK_HDR_LEN + 100);
}

/* A connection held back waits for room, not for its peer: closing the pool ends it at once. */
static void bp_close_main(void *arg)
{
    struct bp_world *w = arg;
    struct sockaddr_in a = loopback(0);
    unsigned char reqs[10 * COHO_SOCK_HDR_LEN];
    coho_tdp_opts_t o;
    uint64_t t0;
    unsigned i;
    int sp[2];

    bp = w;
    sock_opts(&o);
    o.on_req = bp_on_req;
    o.max_conn_reqs = 2;
    w->pool = coho_tdp_listen((struct sockaddr *)&a, sizeof(a), &o);
    if (!CO_CHECK(w->pool != NULL))
        return;
    CO_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
    CO_CHECK_NE(coho_tdp_attach(w->pool, sp[0]), 0);
    for (i = 0; i < 10; i++) {
        coho_sock_hdr_t h = {.magic = COHO_SOCK_MAGIC, .seq = i + 1};

        coho_sock_hdr_encode(&h, reqs + i * COHO_SOCK_HDR_LEN);
    }
    CO_CHECK_EQ(send(sp[1], reqs, sizeof(reqs), 0), (ssize_t)sizeof(reqs));
    coho_sleep_ms(50);
    CO_CHECK_EQ(w->live, 2);
    w->closed = true;
    t0 = co_now_ms();
    CO_CHECK_EQ(coho_tdp_close(w->pool), 0);
    CO_CHECK(co_now_ms() - t0 < 300); /* not at the handlers' 1 s */
    close(sp[1]);
}

static void close_ends_a_connection_held_back_by_backpressure(void **state)
{
    struct bp_world w;

    (void)state;
    memset(&w, 0, sizeof(w));
    w.hold_ms = 1000;
    co_run(bp_close_main, &w);
    assert_int_equal(w.live_max, 2);
    assert_int_equal(w.live, 0); /* the held requests were freed after the close */
}

/* ---- a pool's own coroutines are reaped when they end: connections that come and go leave
 * no finished coroutine records behind ---- */
static void churn_main(void *arg)
{
    struct server *sv = arg;
    coho_tdp_opts_t o;
    struct sockaddr_in a = loopback(0);
    coho_sched_stats_t before, after;
    uint16_t port;

    sock_opts(&o);
    o.on_req = on_req;
    o.user = sv;
    sv->pool = coho_tdp_listen((struct sockaddr *)&a, sizeof(a), &o);
    CO_CHECK(sv->pool != NULL);
    port = coho_tdp_local_port(sv->pool);
    CO_CHECK_EQ(coho_sched_get_stats(co_checks.sched, &before), 0);
    for (int i = 0; i < 200; i++) {
        int fd = raw_connect(port);

        wait_conns_open(sv->pool, 1, 2000);
        close(fd);
        wait_conns_open(sv->pool, 0, 2000);
    }
    CO_CHECK_EQ(stats(sv->pool).conns_total, 200);
    coho_sleep_ms(20); /* the last receive coroutine runs to its end */
    CO_CHECK_EQ(coho_sched_get_stats(co_checks.sched, &after), 0);
    /* 200 receive coroutines came and went: none of them is still held */
    CO_CHECK(after.coroutines <= before.coroutines + 1);
    CO_CHECK_EQ(after.unfinished, before.unfinished);
    CO_CHECK_EQ(coho_tdp_close(sv->pool), 0);
}

static void pool_coroutines_are_reaped_when_connections_end(void **state)
{
    struct server sv;

    (void)state;
    memset(&sv, 0, sizeof(sv));
    co_run(churn_main, &sv);
}

/* ---- on_conn_new / on_conn_delete: once each per connection, with its id ---- */
struct cb_world {
    struct server sv; /* the listen side's records */
    struct server cl; /* the connect side's records */
    uint64_t sv_live[17];
    uint64_t cl_live[17];
};

static void cb_main(void *arg)
{
    struct cb_world *w = arg;
    coho_tdp_pool_t *client;
    int i;

    server_listen(&w->sv, 0);
    client = client_connect(coho_tdp_local_port(w->sv.pool), 3, &w->cl);
    wait_conns_open(client, 3, 2000);
    wait_conns_open(w->sv.pool, 3, 2000);
    CO_CHECK_EQ(call(client, 10, 0, 0, 2000), 0);
    CO_CHECK_EQ(coho_tdp_for_each_conn(client, collect_id, w->cl_live), 0);
    CO_CHECK_EQ(coho_tdp_for_each_conn(w->sv.pool, collect_id, w->sv_live), 0);
    CO_CHECK_EQ(w->cl.del_count, 0);
    CO_CHECK_EQ(w->sv.del_count, 0);
    CO_CHECK_EQ(coho_tdp_close(client), 0);
    /* Every connect-side connection is gone when close returns, ended by the close. */
    CO_CHECK_EQ(w->cl.del_count, 3);
    for (i = 0; i < 3; i++)
        CO_CHECK_EQ(w->cl.del_errs[i], ECANCELED);
    wait_conns_open(w->sv.pool, 0, 2000);
    CO_CHECK_EQ(coho_tdp_close(w->sv.pool), 0);
}

/* Each of `live` (the ids for_each_conn saw) is in `ids` exactly once, and `ids` has 3. */
static void expect_same_ids(const uint64_t *ids, int count, const uint64_t *live)
{
    int i, j, hits;

    assert_int_equal(count, 3);
    for (i = 0; i < 3; i++) {
        assert_int_not_equal(live[i], 0);
        for (hits = 0, j = 0; j < count; j++)
            hits += ids[j] == live[i];
        assert_int_equal(hits, 1);
    }
    assert_int_equal(live[3], 0);
}

static void conn_callbacks_run_once_per_connection_with_its_id(void **state)
{
    struct cb_world w;

    (void)state;
    memset(&w, 0, sizeof(w));
    co_run(cb_main, &w);
    expect_same_ids(w.cl.new_ids, w.cl.new_count, w.cl_live);
    expect_same_ids(w.cl.del_ids, w.cl.del_count, w.cl_live);
    expect_same_ids(w.sv.new_ids, w.sv.new_count, w.sv_live);
    expect_same_ids(w.sv.del_ids, w.sv.del_count, w.sv_live);
}

/* ---- frame limits: a peer that breaks one closes only its connection ---- */
struct limit_world {
    struct server sv;
    coho_tdp_pool_t *client;
    int slow_rc;
    int slow_errno;
    uint64_t slow_ms;
};

/* A client call that is in flight while a bad peer is handled. */
static void slow_call(void *arg)
{
    struct limit_world *w = arg;
    uint64_t t0 = co_now_ms();

    errno = 0;
    w->slow_rc = call(w->client, 1000, 200, 2000, 5000);
    w->slow_errno = errno;
    w->slow_ms = co_now_ms() - t0;
}

static coho_tdp_pool_t *limit_server(struct limit_world *w, const coho_tdp_framer_t *fr,
                                     size_t max_frame_len)
{
    coho_tdp_opts_t o;
    struct sockaddr_in a = loopback(0);

    sock_opts(&o);
    if (fr != NULL) {
        o.framers[1] = fr; /* tried after the sock framer */
        o.framer_count = 2;
    }
    o.max_frame_len = max_frame_len;
    o.on_req = on_req;
    o.user = &w->sv;
    w->sv.pool = coho_tdp_listen((struct sockaddr *)&a, sizeof(a), &o);
    CO_CHECK(w->sv.pool != NULL);
    w->client = client_connect(coho_tdp_local_port(w->sv.pool), 2, NULL);
    wait_conns_open(w->client, 2, 2000);
    return w->sv.pool;
}

static void limit_finish(struct limit_world *w, uint64_t slow)
{
    coho_tdp_stats_t st;

    coho_join(slow, -1);
    CO_CHECK_EQ(w->slow_rc, 0);
    CO_CHECK(w->slow_ms >= 200);
    CO_CHECK_EQ(call(w->client, 100, 0, 0, 2000), 0);
    st = stats(w->sv.pool);
    CO_CHECK_EQ(st.protocol_errors, 1);
    CO_CHECK_EQ(st.conns_open, 2); /* the client's connections */
    CO_CHECK_EQ(stats(w->client).conns_total, 2);
    CO_CHECK_EQ(coho_tdp_close(w->client), 0);
    CO_CHECK_EQ(coho_tdp_close(w->sv.pool), 0);
}

/* The pool's max_frame_len (here below the framer's own body limit) bounds a frame. */
static void frame_limit_main(void *arg)
{
    struct limit_world *w = arg;
    unsigned char hdr[COHO_SOCK_HDR_LEN];
    uint64_t slow;
    int fd;

    limit_server(w, NULL, COHO_SOCK_HDR_LEN + 100);
    slow = co_spawn(slow_call, w);
    coho_sleep_ms(20);
    fd = raw_connect(coho_tdp_local_port(w->sv.pool));
    sock_header(hdr, 100); /* exactly the limit: served */
    CO_CHECK_EQ(send(fd, hdr, sizeof(hdr), 0), (ssize_t)sizeof(hdr));
    CO_CHECK_EQ(send(fd, zeros, 100, 0), 100);
    sock_header(hdr, 101); /* one past */
    CO_CHECK_EQ(send(fd, hdr, sizeof(hdr), 0), (ssize_t)sizeof(hdr));
    expect_closed_by_server(fd);
    CO_CHECK_EQ(w->sv.handled, 2); /* the slow call's and the first frame */
    limit_finish(w, slow);
}

static void frame_past_max_frame_len_closes_only_its_connection(void **state)
{
    struct limit_world w;

    (void)state;
    memset(&w, 0, sizeof(w));
    co_run(frame_limit_main, &w);
}

/* A line framer ("L...\n" requests) whose scan needs more bytes until it sees a newline: a
 * peer that never sends one must not make the pool buffer without bound. */
static int line_detect(coho_cbuf_t *b, void *ctx)
{
    char c;

    (void)ctx;
    if (coho_cbuf_read(b, &c, 1) != 1)
        return COHO_TDP_NEED_MORE;
    return c == 'L' ? COHO_TDP_REQUEST : COHO_TDP_BAD;
}

static ssize_t line_scan(coho_cbuf_t *b, uint64_t *req_id, void *ctx)
{
    char buf[512];
    ssize_t n, i, off = 0;

    (void)ctx;
    *req_id = 0;
    while ((n = coho_cbuf_read(b, buf, sizeof(buf))) > 0) {
        for (i = 0; i < n; i++)
            if (buf[i] == '\n')
                return off + i + 1;
        off += n;
    }
    return 0;
}

static const coho_tdp_framer_t line_framer = {"line", line_detect, line_scan, NULL};

static void endless_main(void *arg)
{
    struct limit_world *w = arg;
    char junk[4096];
    uint64_t slow;
    int fd;

    limit_server(w, &line_framer, 1000);
    slow = co_spawn(slow_call, w);
    coho_sleep_ms(20);
    fd = raw_connect(coho_tdp_local_port(w->sv.pool));
    CO_CHECK_EQ(send(fd, "L hello\n", 8, 0), 8); /* a whole line: a request */
    memset(junk, 'x', sizeof(junk));
    junk[0] = 'L';
    CO_CHECK_EQ(send(fd, junk, sizeof(junk), 0), (ssize_t)sizeof(junk));
    expect_closed_by_server(fd);
    limit_finish(w, slow);
}

static void frame_without_end_past_max_frame_len_closes_its_connection(void **state)
{
    struct limit_world w;

    (void)state;
    memset(&w, 0, sizeof(w));
    co_run(endless_main, &w);
    assert_int_equal(w.sv.handled, 3); /* the slow call, the whole line, the last call */
}

/* A peer closes halfway through a frame: a protocol error, not a clean end. */
static void truncated_main(void *arg)
{
    struct limit_world *w = arg;
    unsigned char hdr[COHO_SOCK_HDR_LEN];
    uint64_t slow;
    int fd;

    limit_server(w, NULL, 1u << 20);
    slow = co_spawn(slow_call, w);
    coho_sleep_ms(20);
    fd = raw_connect(coho_tdp_local_port(w->sv.pool));
    sock_header(hdr, 50);
    CO_CHECK_EQ(send(fd, hdr, sizeof(hdr), 0), (ssize_t)sizeof(hdr));
    CO_CHECK_EQ(send(fd, zeros, 10, 0), 10);
    CO_CHECK_EQ(shutdown(fd, SHUT_WR), 0);
    expect_closed_by_server(fd);
    limit_finish(w, slow);
}

static void truncated_frame_then_close_counts_a_protocol_error(void **state)
{
    struct limit_world w;

    (void)state;
    memset(&w, 0, sizeof(w));
    co_run(truncated_main, &w);
}

/* A peer that closes between frames ends cleanly: no protocol error. */
static void clean_close_main(void *arg)
{
    struct server *sv = arg;
    unsigned char hdr[COHO_SOCK_HDR_LEN];
    int fd;

    server_listen(sv, 0);
    fd = raw_connect(coho_tdp_local_port(sv->pool));
    sock_header(hdr, 0);
    CO_CHECK_EQ(send(fd, hdr, sizeof(hdr), 0), (ssize_t)sizeof(hdr));
    CO_CHECK_EQ(recv(fd, hdr, sizeof(hdr), MSG_WAITALL), (ssize_t)sizeof(hdr));
    close(fd);
    wait_conns_open(sv->pool, 0, 2000);
    CO_CHECK_EQ(stats(sv->pool).protocol_errors, 0);
    CO_CHECK_EQ(sv->del_count, 1);
    CO_CHECK_EQ(sv->del_errs[0], ECONNRESET);
    CO_CHECK_EQ(coho_tdp_close(sv->pool), 0);
}

static void peer_closing_between_frames_is_not_a_protocol_error(void **state)
{
    struct server sv;

    (void)state;
    memset(&sv, 0, sizeof(sv));
    co_run(clean_close_main, &sv);
}

/* ---- coho_tdp_close with work in flight ---- */
struct close_world {
    struct server sv;
    coho_tdp_pool_t *client;
    int rc;
    int err;
    uint64_t ms;
};

static void close_waiter(void *arg)
{
    struct close_world *w = arg;
    uint64_t t0 = co_now_ms();

    errno = 0;
    w->rc = call(w->client, 10, 1000, 2000, 5000);
    w->err = errno;
    w->ms = co_now_ms() - t0;
}

static void picker(void *arg)
{
    struct close_world *w = arg;

    errno = 0;
    w->rc = coho_tdp_pick(w->client, 5000) == 0 ? -1 : 0;
    w->err = errno;
}

static void close_waiters_main(void *arg)
{
    struct close_world *w = arg;
    struct close_world idle;
    struct sockaddr_in nowhere = loopback(0);
    coho_tdp_opts_t o;
    uint64_t a, b;

    server_listen(&w->sv, 0);
    w->client = client_connect(coho_tdp_local_port(w->sv.pool), 1, NULL);
    a = co_spawn(close_waiter, w);
    coho_sleep_ms(50);
    CO_CHECK_EQ(stats(w->client).in_flight, 1);
    CO_CHECK_EQ(coho_tdp_close(w->client), 0);
    coho_join(a, -1);
    CO_CHECK_EQ(w->rc, -1);
    CO_CHECK_EQ(w->err, ECANCELED);
    CO_CHECK(w->ms < 500); /* at once, not at the server's 1 s answer */

    /* A coroutine parked in pick on a pool that never connects: ESHUTDOWN at the close. */
    memset(&idle, 0, sizeof(idle));
    sock_opts(&o);
    o.conn_count = 1;
    nowhere.sin_port = htons(1); /* refused */
    idle.client = coho_tdp_connect((struct sockaddr *)&nowhere, sizeof(nowhere), &o);
    CO_CHECK(idle.client != NULL);
    b = co_spawn(picker, &idle);
    coho_sleep_ms(20);
    CO_CHECK_EQ(coho_tdp_close(idle.client), 0);
    coho_join(b, -1);
    CO_CHECK_EQ(idle.rc, -1);
    CO_CHECK_EQ(idle.err, ESHUTDOWN);
    CO_CHECK_EQ(coho_tdp_close(w->sv.pool), 0);
}

static void close_fails_in_flight_waiters_with_ecanceled(void **state)
{
    struct close_world w;

    (void)state;
    memset(&w, 0, sizeof(w));
    co_run(close_waiters_main, &w);
    /* The server's handler answered after its pool was closed: ENOTCONN, and freed. */
    assert_int_equal(w.sv.handled, 1);
}

static void close_held_main(void *arg)
{
    struct close_world *w = arg;
    uint64_t a;

    server_listen(&w->sv, 0);
    w->client = client_connect(coho_tdp_local_port(w->sv.pool), 1, NULL);
    a = co_spawn(close_waiter, w); /* the server holds the request for 1 s */
    coho_sleep_ms(100);
    CO_CHECK_EQ(w->sv.handled, 1);
    CO_CHECK_EQ(coho_tdp_close(w->sv.pool), 0); /* returns with the request still held */
    CO_CHECK_EQ(w->sv.send_failed, 0);
    coho_join(a, -1);
    CO_CHECK_EQ(w->rc, -1);
    CO_CHECK_EQ(w->err, ECONNRESET); /* the client's connection broke */
    CO_CHECK_EQ(coho_tdp_close(w->client), 0);
}

static void close_with_requests_held_by_on_req_keeps_them_valid_until_freed(void **state)
{
    struct close_world w;

    (void)state;
    memset(&w, 0, sizeof(w));
    co_run(close_held_main, &w);
    /* The handler woke after the close, its send failed, and its free released the pool (the
     * ASan build reports a leak or a use after free otherwise). */
    assert_int_equal(w.sv.send_failed, 1);
    assert_int_equal(w.sv.send_errno, ENOTCONN);
}

/* ---- a coroutine waiting for a response while another closes the pool and is cancelled: the
 * closer stops waiting for the pool's coroutines, the last of them ends before the waiter runs
 * again, and the waiter must still find its pool (it holds a reference) and get ECANCELED ---- */
struct cancel_world {
    struct server sv;
    coho_tdp_pool_t *client;
    coho_sem_t gate; /* the client's keeper is held here, in on_conn_new */
    int rc;
    int err;
    bool waited;
    int close_rc;
    bool closed;
};

static struct cancel_world *cw;

static void cw_on_conn_new(coho_tdp_pool_t *p, uint64_t conn_id, void *user)
{
    (void)p;
    (void)conn_id;
    (void)user;
    (void)coho_sem_wait(&cw->gate);
}

static void cw_waiter(void *arg)
{
    struct cancel_world *w = arg;

    errno = 0;
    w->rc = call(w->client, 10, 1000, 2000, 5000); /* the server answers after 1 s */
    w->err = errno;
    w->waited = true;
}

static void cw_closer(void *arg)
{
    struct cancel_world *w = arg;

    CO_CHECK_EQ(coho_sleep_ms(10000), -1); /* cancelled: it closes the pool on its way out */
    CO_CHECK(coho_is_cancelled());
    w->close_rc = coho_tdp_close(w->client);
    w->closed = true;
}

static void cancelled_closer_main(void *arg)
{
    struct cancel_world *w = arg;
    coho_tdp_opts_t o;
    struct sockaddr_in a;
    uint64_t waiter, closer;

    cw = w;
    CO_CHECK_EQ(coho_sem_init(&w->gate, 0), 0);
    server_listen(&w->sv, 0);
    a = loopback(coho_tdp_local_port(w->sv.pool));
    sock_opts(&o);
    o.conn_count = 1;
    o.on_conn_new = cw_on_conn_new;
    w->client = coho_tdp_connect((struct sockaddr *)&a, sizeof(a), &o);
    if (!CO_CHECK(w->client != NULL))
        return;
    waiter = co_spawn(cw_waiter, w);
    closer = co_spawn(cw_closer, w);
    coho_sleep_ms(100);
    CO_CHECK_EQ(w->sv.handled, 1); /* the waiter's request reached the server */
    CO_CHECK(!w->waited);
    /* In one step: the closer is cancelled (it runs first), then the keeper let go, so it runs
     * right after the close and, the pool closing, ends. */
    CO_CHECK_EQ(coho_cancel(closer), 0);
    CO_CHECK_EQ(coho_sem_post(&w->gate), 0);
    CO_CHECK_EQ(coho_join(closer, 2000), 0);
    CO_CHECK_EQ(coho_join(waiter, 2000), 0);
    CO_CHECK(w->closed);
    CO_CHECK_EQ(w->close_rc, 0);
    CO_CHECK(w->waited);
    CO_CHECK_EQ(w->rc, -1);
    CO_CHECK_EQ(w->err, ECANCELED);
    CO_CHECK_EQ(coho_tdp_close(w->sv.pool), 0);
    coho_sem_destroy(&w->gate);
}

static void wait_resp_survives_a_cancelled_closer_and_fails_with_ecanceled(void **state)
{
    struct cancel_world w;

    (void)state;
    memset(&w, 0, sizeof(w));
    co_run(cancelled_closer_main, &w);
}

/* ---- connect timeout: a listener that never accepts and whose queue is full ---- */
static void blackhole_main(void *arg)
{
    struct sockaddr_in a = loopback(0);
    socklen_t alen = sizeof(a);
    coho_tdp_opts_t o;
    coho_tdp_pool_t *p;
    coho_tdp_stats_t st;
    uint64_t t0;
    int lfd, filler;

    (void)arg;
    lfd = socket(AF_INET, SOCK_STREAM, 0);
    CO_CHECK(lfd >= 0);
    CO_CHECK_EQ(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    CO_CHECK_EQ(listen(lfd, 0), 0);
    CO_CHECK_EQ(getsockname(lfd, (struct sockaddr *)&a, &alen), 0);
    filler = raw_connect(ntohs(a.sin_port)); /* fills the accept queue of backlog 0 */

    sock_opts(&o);
    o.conn_count = 1;
    o.connect_timeout_ms = 100;
    o.reconnect_min_ms = 10;
    o.reconnect_max_ms = 10;
    t0 = co_now_ms();
    p = coho_tdp_connect((struct sockaddr *)&a, sizeof(a), &o);
    CO_CHECK(p != NULL);
    errno = 0;
    CO_CHECK_EQ(coho_tdp_pick(p, 350), 0);
    CO_CHECK_EQ(errno, ETIMEDOUT);
    CO_CHECK(co_now_ms() - t0 >= 350);
    st = stats(p);
    /* Attempts end at their 100 ms timeout: about 3 in 350 ms, not one hanging for the
     * kernel's SYN retries (over a minute) and not dozens failing at once. */
    CO_CHECK(st.reconnects >= 2);
    CO_CHECK(st.reconnects <= 3);
    CO_CHECK_EQ(st.conns_total, 0);
    CO_CHECK_EQ(coho_tdp_close(p), 0);
    close(filler);
    close(lfd);
}

static void connect_times_out_against_a_listener_that_never_accepts(void **state)
{
    (void)state;
    co_run(blackhole_main, NULL);
}

/* ---- a request id has one waiter ---- */
static void second_waiter_main(void *arg)
{
    struct close_world *w = arg;
    coho_cbuf_t b;
    uint64_t id;

    server_listen(&w->sv, 0);
    w->client = client_connect(coho_tdp_local_port(w->sv.pool), 1, NULL);
    id = coho_tdp_req_id(w->client);
    CO_CHECK_NE(id, 0);
    coho_cbuf_init(&b, NULL);
    errno = 0;
    CO_CHECK_EQ(coho_tdp_wait_resp(w->client, id, 10, &b), -1);
    CO_CHECK_EQ(errno, ETIMEDOUT);
    errno = 0;
    CO_CHECK_EQ(coho_tdp_wait_resp(w->client, id, 10, &b), -1); /* released above */
    CO_CHECK_EQ(errno, ENOENT);
    coho_cbuf_destroy(&b);
    CO_CHECK_EQ(stats(w->client).in_flight, 0);
    CO_CHECK_EQ(coho_tdp_close(w->client), 0);
    CO_CHECK_EQ(coho_tdp_close(w->sv.pool), 0);
}

static void wait_resp_releases_the_id_on_timeout(void **state)
{
    struct close_world w;

    (void)state;
    memset(&w, 0, sizeof(w));
    co_run(second_waiter_main, &w);
}

/* A sender parked in a write to a peer that does not read, when the pool is closed: the send
 * fails and touches no freed memory (the ASan build checks). */
struct stuck_world {
    coho_tdp_pool_t *client;
    int rc;
    int err;
};

static void stuck_sender(void *arg)
{
    struct stuck_world *w = arg;
    size_t len = 16u << 20;
    unsigned char *big = calloc(1, len);
    uint64_t conn = coho_tdp_pick(w->client, 2000);

    CO_CHECK(big != NULL);
    CO_CHECK_NE(conn, 0);
    errno = 0;
    w->rc = coho_tdp_send(w->client, conn, 0, big, len);
    w->err = errno;
    free(big);
}

static void stuck_main(void *arg)
{
    struct stuck_world *w = arg;
    struct sockaddr_in a = loopback(0);
    socklen_t alen = sizeof(a);
    uint64_t s;
    int lfd, peer;

    lfd = socket(AF_INET, SOCK_STREAM, 0);
    CO_CHECK(lfd >= 0);
    CO_CHECK_EQ(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    CO_CHECK_EQ(listen(lfd, 8), 0);
    CO_CHECK_EQ(getsockname(lfd, (struct sockaddr *)&a, &alen), 0);
    w->client = client_connect(ntohs(a.sin_port), 1, NULL);
    peer = accept(lfd, NULL, NULL); /* and never read */
    CO_CHECK(peer >= 0);
    s = co_spawn(stuck_sender, w);
    coho_sleep_ms(50);
    CO_CHECK_EQ(coho_tdp_close(w->client), 0);
    coho_join(s, -1);
    CO_CHECK_EQ(w->rc, -1);
    close(peer);
    close(lfd);
}

static void close_fails_a_sender_parked_in_its_write(void **state)
{
    struct stuck_world w;

    (void)state;
    memset(&w, 0, sizeof(w));
    co_run(stuck_main, &w);
    assert_true(w.err == ENOTCONN || w.err == ECANCELED || w.err == EPIPE);
}

/* ---- a request id has one waiter: a second one gets EBUSY, the first its response ---- */
struct two_waiters {
    coho_tdp_pool_t *client;
    uint64_t id;
    int rc;
    int err;
};

static void second_waiter(void *arg)
{
    struct two_waiters *t = arg;
    coho_cbuf_t b;

    coho_cbuf_init(&b, NULL);
    errno = 0;
    t->rc = coho_tdp_wait_resp(t->client, t->id, 2000, &b);
    t->err = errno;
    coho_cbuf_destroy(&b);
}

static void two_waiters_main(void *arg)
{
    struct close_world *w = arg;
    unsigned char hdr[COHO_SOCK_HDR_LEN];
    coho_sock_hdr_t h = {.magic = COHO_SOCK_MAGIC, .type = 1u | (50u << 8), .arg = 3};
    struct two_waiters t;
    coho_cbuf_t b;
    uint64_t conn, co;

    server_listen(&w->sv, 0);
    w->client = client_connect(coho_tdp_local_port(w->sv.pool), 1, NULL);
    conn = coho_tdp_pick(w->client, 2000);
    CO_CHECK_NE(conn, 0);
    memset(&t, 0, sizeof(t));
    t.client = w->client;
    t.id = coho_tdp_req_id(w->client);
    h.seq = t.id;
    coho_sock_hdr_encode(&h, hdr);
    CO_CHECK_EQ(coho_tdp_send(w->client, conn, t.id, hdr, sizeof(hdr)), 0);
    co = co_spawn(second_waiter, &t); /* parks first */
    coho_yield();
    coho_cbuf_init(&b, NULL);
    errno = 0;
    CO_CHECK_EQ(coho_tdp_wait_resp(w->client, t.id, 2000, &b), -1);
    CO_CHECK_EQ(errno, EBUSY);
    coho_join(co, -1);
    CO_CHECK_EQ(t.rc, 0);
    CO_CHECK_EQ(coho_cbuf_len(&b), 0);
    coho_cbuf_destroy(&b);
    CO_CHECK_EQ(stats(w->client).in_flight, 0);
    CO_CHECK_EQ(coho_tdp_close(w->client), 0);
    CO_CHECK_EQ(coho_tdp_close(w->sv.pool), 0);
}

static void second_waiter_on_one_id_gets_ebusy(void **state)
{
    struct close_world w;

    (void)state;
    memset(&w, 0, sizeof(w));
    co_run(two_waiters_main, &w);
}

/* ---- on_req closes its own pool (a "shut down" request handled inline) ---- */
struct self_close {
    coho_tdp_pool_t *pool;
    int closed;
    uint64_t close_ms;
};

static void on_req_closing(coho_tdp_req_t *rq, void *user)
{
    struct self_close *sc = user;
    uint64_t t0 = co_now_ms();

    coho_tdp_req_free(rq);
    CO_CHECK_EQ(coho_tdp_close(sc->pool), 0);
    sc->close_ms = co_now_ms() - t0;
    sc->closed++;
}

static void self_close_main(void *arg)
{
    struct self_close *sc = arg;
    struct sockaddr_in a = loopback(0);
    unsigned char hdr[COHO_SOCK_HDR_LEN];
    coho_tdp_opts_t o;
    uint64_t t0;
    int fd, other;

    sock_opts(&o);
    o.on_req = on_req_closing;
    o.user = sc;
    sc->pool = coho_tdp_listen((struct sockaddr *)&a, sizeof(a), &o);
    CO_CHECK(sc->pool != NULL);
    other = raw_connect(coho_tdp_local_port(sc->pool)); /* a second connection, idle */
    fd = raw_connect(coho_tdp_local_port(sc->pool));
    sock_header(hdr, 0);
    CO_CHECK_EQ(send(fd, hdr, sizeof(hdr), 0), (ssize_t)sizeof(hdr));
    expect_closed_by_server(fd);
    expect_closed_by_server(other);
    t0 = co_now_ms();
    /* The close waits for the pool's other coroutines. */
    while (sc->closed == 0 && CO_CHECK(co_now_ms() - t0 < 2000))
        coho_sleep_ms(2);
    CO_CHECK_EQ(sc->closed, 1);
    CO_CHECK(sc->close_ms < 1000);
}

static void on_req_may_close_its_own_pool(void **state)
{
    struct self_close sc;

    (void)state;
    memset(&sc, 0, sizeof(sc));
    co_run(self_close_main, &sc);
}

/* ---- on_conn_new closes its own connect pool ---- */
static coho_tdp_pool_t *closing_client;
static int client_closed;

static void on_conn_new_closing(coho_tdp_pool_t *p, uint64_t conn_id, void *user)
{
    (void)conn_id;
    (void)user;
    CO_CHECK(p == closing_client);
    if (client_closed++ == 0)
        CO_CHECK_EQ(coho_tdp_close(p), 0);
}

static void conn_new_close_main(void *arg)
{
    struct server *sv = arg;
    struct sockaddr_in a;
    coho_tdp_opts_t o;
    uint64_t t0 = co_now_ms();

    server_listen(sv, 0);
    a = loopback(coho_tdp_local_port(sv->pool));
    sock_opts(&o);
    o.conn_count = 3;
    o.on_conn_new = on_conn_new_closing;
    closing_client = coho_tdp_connect((struct sockaddr *)&a, sizeof(a), &o);
    CO_CHECK(closing_client != NULL);
    while (client_closed == 0 && CO_CHECK(co_now_ms() - t0 < 2000))
        coho_sleep_ms(2);
    /* Every keeper ends: only this coroutine and the server's remain. */
    for (;;) {
        coho_sched_stats_t st;

        CO_CHECK_EQ(coho_sched_get_stats(co_checks.sched, &st), 0);
        if (st.unfinished == 1 + 1 + stats(sv->pool).conns_open)
            break;
        if (!CO_CHECK(co_now_ms() - t0 < 2000))
            break;
        coho_sleep_ms(2);
    }
    CO_CHECK_EQ(client_closed, 1);
    CO_CHECK_EQ(coho_tdp_close(sv->pool), 0);
}

static void on_conn_new_may_close_its_own_pool(void **state)
{
    struct server sv;

    (void)state;
    memset(&sv, 0, sizeof(sv));
    co_run(conn_new_close_main, &sv);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pool_reconnects_with_backoff_after_server_returns),
        cmocka_unit_test(pick_round_robins_over_healthy_connections),
        cmocka_unit_test(listen_pool_past_max_conns_closes_and_counts_the_excess),
        cmocka_unit_test(accept_backs_off_when_out_of_fds_and_resumes_when_fds_are_free),
        cmocka_unit_test(accept_out_of_fds_and_idle_waits_then_sheds_a_new_client),
        cmocka_unit_test(pipelined_requests_past_max_conn_reqs_wait_and_are_all_answered),
        cmocka_unit_test(pipelined_requests_past_max_conn_req_len_wait_and_are_all_answered),
        cmocka_unit_test(close_ends_a_connection_held_back_by_backpressure),
        cmocka_unit_test(pool_coroutines_are_reaped_when_connections_end),
        cmocka_unit_test(conn_callbacks_run_once_per_connection_with_its_id),
        cmocka_unit_test(frame_past_max_frame_len_closes_only_its_connection),
        cmocka_unit_test(frame_without_end_past_max_frame_len_closes_its_connection),
        cmocka_unit_test(truncated_frame_then_close_counts_a_protocol_error),
        cmocka_unit_test(peer_closing_between_frames_is_not_a_protocol_error),
        cmocka_unit_test(close_fails_in_flight_waiters_with_ecanceled),
        cmocka_unit_test(close_with_requests_held_by_on_req_keeps_them_valid_until_freed),
        cmocka_unit_test(wait_resp_survives_a_cancelled_closer_and_fails_with_ecanceled),
        cmocka_unit_test(connect_times_out_against_a_listener_that_never_accepts),
        cmocka_unit_test(wait_resp_releases_the_id_on_timeout),
        cmocka_unit_test(close_fails_a_sender_parked_in_its_write),
        cmocka_unit_test(second_waiter_on_one_id_gets_ebusy),
        cmocka_unit_test(on_req_may_close_its_own_pool),
        cmocka_unit_test(on_conn_new_may_close_its_own_pool),
    };

    return coho_test_main("socket_ext_more", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
