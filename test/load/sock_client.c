/* SPDX-License-Identifier: MIT */
/* sock_client: the client side of the socket_ext load test. N coroutines loop requests through
 * a socket_ext connect pool of M connections: each request carries a random pattern body and
 * asks for a random response size; every response is checked (seq, size, status, content)
 * within a per-request timeout. Exits non-zero on any lost or wrong response, or when user
 * coroutines are left at the end. Trace log: ./log/sock_client.log. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include <coho.h>
#include <coho/net.h>

#include "test/load/sock_common.h"

static struct {
    /* flags */
    const char *host;
    uint64_t port;
    uint64_t conns;
    uint64_t coroutines;
    uint64_t duration_s;
    uint64_t max_body;
    uint64_t max_req_body;
    uint64_t timeout_ms;
    uint64_t seed;
    uint64_t log_sample;
    int log_level;
    bool quit;
    bool quiet;

    coho_sched_t *sched;
    coho_tdp_pool_t *pool;
    size_t framer_max_body;
    coho_tdp_framer_t framer;
    bool stopping;

    /* counters */
    uint64_t sent;
    uint64_t ok;
    uint64_t wrong;        /* a response arrived but is not the one asked for */
    uint64_t timeouts;     /* no response within --timeout-ms */
    uint64_t lost;         /* the connection broke under a waiting request */
    uint64_t send_errors;  /* the request could not be sent */
    uint64_t no_conn;      /* no connection came up within --timeout-ms */
    uint64_t spawn_errors; /* workers that could not start */
    uint64_t in_flight;
    uint64_t body_bytes_in;
    sock_hist_t hist_sec;
    sock_hist_t hist_all;
} g = {
    .host = "127.0.0.1",
    .conns = 4,
    .coroutines = 200,
    .duration_s = 10,
    .max_body = 256u << 10,
    .max_req_body = 1024,
    .timeout_ms = 5000,
    .log_sample = 16,
    .log_level = COHO_LOG_DEBUG,
};

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
    got_signal = sig;
}

static bool sampled(uint64_t seq)
{
    return g.log_sample != 0 && seq % g.log_sample == 0;
}

static uint64_t errors(void)
{
    return g.wrong + g.timeouts + g.lost + g.send_errors + g.no_conn + g.spawn_errors;
}

/* Checks the response to request `seq` that asked for `want` bytes. Returns NULL when it is
 * right, else what is wrong (details in `why`). */
static const char *check_response(coho_cbuf_t *resp, uint64_t seq, uint32_t type, uint32_t want,
                                  char *why, size_t why_len)
{
    unsigned char hdr[COHO_SOCK_HDR_LEN];
    coho_sock_hdr_t h;
    ssize_t bad;

    coho_cbuf_seek(resp, 0, SEEK_SET);
    if (coho_cbuf_read(resp, hdr, sizeof(hdr)) != (ssize_t)sizeof(hdr) ||
        coho_sock_hdr_decode(hdr, &h) != 0)
        return "undecodable header";
    if (h.type != (type | COHO_SOCK_RESPONSE)) {
        snprintf(why, why_len, "type 0x%" PRIx32 ", expected 0x%" PRIx32, h.type,
                 type | COHO_SOCK_RESPONSE);
        return why;
    }
    if (h.seq != seq) {
        snprintf(why, why_len, "seq %" PRIu64, h.seq);
        return why;
    }
    if (h.arg != SOCK_STATUS_OK) {
        snprintf(why, why_len, "status %" PRIu32, h.arg);
        return why;
    }
    if (h.body_len != want || coho_cbuf_len(resp) != COHO_SOCK_HDR_LEN + (size_t)want) {
        snprintf(why, why_len, "body of %" PRIu32 " B (frame %zu B), asked %" PRIu32, h.body_len,
                 coho_cbuf_len(resp), want);
        return why;
    }
    bad = sock_pattern_check_cbuf(resp, COHO_SOCK_HDR_LEN, want, seq, SOCK_SALT_RESPONSE);
    if (bad != (ssize_t)want) {
        snprintf(why, why_len, "body content differs at byte %zd of %" PRIu32, bad, want);
        return why;
    }
    return NULL;
}

/* One request and its response. Returns 0 when the response was right. */
static int call(uint32_t type, uint32_t want, unsigned char *body, uint32_t body_len,
                coho_cbuf_t *resp)
{
    unsigned char hdr[COHO_SOCK_HDR_LEN];
    coho_sock_hdr_t h = {.magic = COHO_SOCK_MAGIC, .type = type, .arg = want};
    struct iovec iov[2];
    uint64_t conn, seq, t0, us;
    const char *wrong;
    char why[160], lat[32];
    int rc;

    conn = coho_tdp_pick(g.pool, (int64_t)g.timeout_ms);
    if (conn == 0) {
        coho_log_warn("no connection within %" PRIu64 " ms: %m", g.timeout_ms);
        g.no_conn++;
        coho_sleep_ms(10);
        return -1;
    }
    seq = coho_tdp_req_id(g.pool);
    if (seq == 0) {
        coho_log_error("request id: %m");
        g.send_errors++;
        return -1;
    }
    h.seq = seq;
    h.body_len = body_len;
    coho_sock_hdr_encode(&h, hdr);
    sock_pattern_fill(body, body_len, seq, SOCK_SALT_REQUEST, 0);
    iov[0].iov_base = hdr;
    iov[0].iov_len = sizeof(hdr);
    iov[1].iov_base = body;
    iov[1].iov_len = body_len;
    t0 = sock_now_us();
    if (coho_tdp_sendv(g.pool, conn, seq, iov, body_len > 0 ? 2 : 1) != 0) {
        coho_log_warn("seq=%" PRIu64 " send on conn %" PRIu64 " failed: %m", seq, conn);
        coho_tdp_req_release(g.pool, seq);
        g.send_errors++;
        return -1;
    }
    g.sent++;
    if (sampled(seq))
        coho_log_debug("seq=%" PRIu64 " sent on conn %" PRIu64 ": body %" PRIu32 " B, asks %" PRIu32
                       " B",
                       seq, conn, body_len, want);
    g.in_flight++;
    rc = coho_tdp_wait_resp(g.pool, seq, (int64_t)g.timeout_ms, resp);
    g.in_flight--;
    us = sock_now_us() - t0;
    if (rc != 0) {
        int err = errno;

        coho_log_warn("seq=%" PRIu64 " on conn %" PRIu64 " lost after %s: %s", seq, conn,
                      sock_fmt_us(lat, sizeof(lat), us), strerror(err));
        if (err == ETIMEDOUT)
            g.timeouts++;
        else
            g.lost++;
        return -1;
    }
    wrong = check_response(resp, seq, type, want, why, sizeof(why));
    if (wrong != NULL) {
        coho_log_warn("seq=%" PRIu64 " on conn %" PRIu64 " WRONG response: %s", seq, conn, wrong);
        g.wrong++;
        return -1;
    }
    g.ok++;
    g.body_bytes_in += want;
    sock_hist_add(&g.hist_sec, us);
    if (sampled(seq))
        coho_log_debug("seq=%" PRIu64 " response ok: %" PRIu32 " B in %s", seq, want,
                       sock_fmt_us(lat, sizeof(lat), us));
    return 0;
}

static void worker(void *arg)
{
    uint64_t rng = g.seed ^ ((uint64_t)(uintptr_t)arg * 0x2545F4914F6CDD1Dull);
    unsigned char *body = malloc(g.max_req_body > 0 ? g.max_req_body : 1);
    coho_cbuf_t resp;

    if (body == NULL) {
        coho_log_error("worker: no memory");
        g.send_errors++;
        return;
    }
    coho_cbuf_init(&resp, NULL);
    while (!g.stopping) {
        uint32_t want = (uint32_t)(sock_rand(&rng) % (g.max_body + 1));
        uint32_t len = (uint32_t)(sock_rand(&rng) % (g.max_req_body + 1));

        call(SOCK_TYPE_ECHO, want, body, len, &resp);
    }
    coho_cbuf_destroy(&resp);
    free(body);
}

/* The client's progress line; `interval_us` is the time hist_sec covers. */
static void progress(uint64_t elapsed_us, uint64_t interval_us)
{
    static uint64_t bytes_before;
    char extra[32];

    snprintf(extra, sizeof(extra), "%5.0f MB/s",
             interval_us > 0 ? (double)(g.body_bytes_in - bytes_before) / (double)interval_us
                             : 0.0);
    bytes_before = g.body_bytes_in;
    sock_progress("sock_client", elapsed_us, interval_us, g.in_flight, &g.hist_sec, &g.hist_all,
                  errors(), g.timeouts, extra, g.quiet);
}

static int exit_code = 1;

static void client_main(void *arg)
{
    struct sockaddr_in addr;
    coho_tdp_opts_t o;
    coho_tdp_stats_t st;
    coho_sched_stats_t ss;
    coho_spawn_opts_t so;
    uint64_t *ids, start, last, end_us, i, unexpected;
    char p50[32], p99[32], p999[32], pmax[32], mean[32];
    const char *why = "--duration-s";
    double secs;

    (void)arg;
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)g.port);
    if (inet_pton(AF_INET, g.host, &addr.sin_addr) != 1) {
        fprintf(stderr, "sock_client: --host %s is not an IPv4 address\n", g.host);
        return;
    }
    g.framer_max_body = (size_t)g.max_body;
    coho_sock_framer_init(&g.framer, &g.framer_max_body);
    coho_tdp_opts_init(&o);
    o.framers[0] = &g.framer;
    o.framer_count = 1;
    o.max_frame_len = COHO_SOCK_HDR_LEN + (size_t)g.max_body;
    o.conn_count = (unsigned)g.conns;
    g.pool = coho_tdp_connect((struct sockaddr *)&addr, sizeof(addr), &o);
    if (g.pool == NULL) {
        fprintf(stderr, "sock_client: pool to %s:%" PRIu64 ": %s\n", g.host, g.port,
                strerror(errno));
        return;
    }
    if (coho_tdp_pick(g.pool, 3000) == 0) {
        fprintf(stderr, "sock_client: no connection to %s:%" PRIu64 " within 3 s\n", g.host,
                g.port);
        coho_tdp_close(g.pool);
        return;
    }
    ids = calloc(g.coroutines, sizeof(*ids));
    if (ids == NULL) {
        coho_tdp_close(g.pool);
        return;
    }
    coho_log_info("%" PRIu64 " coroutines over %" PRIu64 " connections to %s:%" PRIu64
                  " for %" PRIu64 " s; bodies up to %" PRIu64 " B (requests %" PRIu64
                  " B), timeout %" PRIu64 " ms, seed %" PRIu64 ", log sample 1/%" PRIu64,
                  g.coroutines, g.conns, g.host, g.port, g.duration_s, g.max_body, g.max_req_body,
                  g.timeout_ms, g.seed, g.log_sample);
    printf("sock_client: %" PRIu64 " coroutines, %" PRIu64 " connections to %s:%" PRIu64
           ", %" PRIu64 " s, bodies up to %" PRIu64 " B, timeout %" PRIu64 " ms, seed %" PRIu64
           "\n",
           g.coroutines, g.conns, g.host, g.port, g.duration_s, g.max_body, g.timeout_ms, g.seed);
    start = last = sock_now_us();
    end_us = start + g.duration_s * 1000000;
    coho_spawn_opts_init(&so);
    so.name = "sock-worker";
    for (i = 0; i < g.coroutines; i++) {
        ids[i] = coho_spawn_ex(g.sched, worker, (void *)(uintptr_t)i, &so);
        if (ids[i] == 0) {
            fprintf(stderr, "sock_client: spawn: %s\n", strerror(errno));
            g.spawn_errors++;
            break;
        }
    }
    while (i == g.coroutines && got_signal == 0) {
        uint64_t now = sock_now_us(), next = last + 1000000;

        if (now >= end_us)
            break;
        if (now >= next) {
            progress(now - start, now - last);
            last = now;
            continue;
        }
        coho_sleep_ms((((next < end_us ? next : end_us) - now) + 999) / 1000);
    }
    if (got_signal != 0)
        why = strsignal(got_signal);
    g.stopping = true;
    coho_log_info("stopping (%s): %" PRIu64 " requests in flight", why, g.in_flight);
    for (i = 0; i < g.coroutines && ids[i] != 0; i++)
        coho_join(ids[i], -1); /* each finishes its request in flight (bounded by the timeout) */
    free(ids);
    progress(sock_now_us() - start, sock_now_us() - last);
    secs = (double)(sock_now_us() - start) / 1e6;
    if (g.quit) {
        coho_cbuf_t resp;
        unsigned char none[1];

        coho_cbuf_init(&resp, NULL);
        if (call(SOCK_TYPE_QUIT, 0, none, 0, &resp) == 0)
            printf("sock_client: the server acknowledged the quit request\n");
        else
            printf("sock_client: the quit request failed\n");
        coho_cbuf_destroy(&resp);
    }
    coho_tdp_get_stats(g.pool, &st);
    coho_tdp_close(g.pool);
    g.pool = NULL;
    coho_sched_get_stats(g.sched, &ss);

    printf("sock_client summary: %.1f s, %" PRIu64 " coroutines over %" PRIu64
           " connections, stopped by %s\n",
           secs, g.coroutines, g.conns, why);
    printf("  requests    %" PRIu64 " sent, %" PRIu64 " ok, %" PRIu64 " wrong, %" PRIu64
           " timeouts, %" PRIu64 " lost (connection broke), %" PRIu64 " send errors, %" PRIu64
           " without a connection\n",
           g.sent, g.ok, g.wrong, g.timeouts, g.lost, g.send_errors, g.no_conn);
    printf("  rate        %.0f req/s ok, %.1f MB/s of response bodies\n", (double)g.ok / secs,
           (double)g.body_bytes_in / secs / 1e6);
    printf("  latency     p50 %s  p99 %s  p99.9 %s  max %s  mean %s\n",
           sock_fmt_us(p50, sizeof(p50), sock_hist_percentile(&g.hist_all, 50)),
           sock_fmt_us(p99, sizeof(p99), sock_hist_percentile(&g.hist_all, 99)),
           sock_fmt_us(p999, sizeof(p999), sock_hist_percentile(&g.hist_all, 99.9)),
           sock_fmt_us(pmax, sizeof(pmax), g.hist_all.max_us),
           sock_fmt_us(mean, sizeof(mean),
                       g.hist_all.count > 0 ? g.hist_all.sum_us / g.hist_all.count : 0));
    printf("  pool        %" PRIu64 " connections made, %" PRIu64 " reconnects, %" PRIu64
           " protocol errors, %" PRIu64 " late responses dropped\n",
           st.conns_total, st.reconnects, st.protocol_errors, st.responses_dropped);
    printf("  coroutines  %zu user left (this one included), %zu daemons left, %zu finished and "
           "not reaped\n",
           ss.user, ss.unfinished - ss.user, ss.coroutines - ss.unfinished);
    /* Only a request that timed out or lost its connection can have a response arrive that
     * nobody waits for; anything beyond those is a duplicate or unsolicited answer. */
    unexpected = st.responses_dropped > g.timeouts + g.lost
                     ? st.responses_dropped - (g.timeouts + g.lost)
                     : 0;
    if (unexpected > 0)
        printf("  unexpected  %" PRIu64 " responses that no request was waiting for\n", unexpected);
    if (errors() > 0 || unexpected > 0 || st.protocol_errors > 0 || g.ok == 0) {
        exit_code = 2;
        printf("  result      FAILED: %s\n",
               g.ok == 0 ? "no request succeeded"
                         : "lost, wrong or unexpected responses (see above)");
    } else if (ss.user != 1) {
        exit_code = 3;
        printf("  result      FAILED: %zu user coroutines other than main still alive\n",
               ss.user - 1);
    } else {
        exit_code = 0;
        printf("  result      OK\n");
    }
    coho_log_info("summary: %" PRIu64 " sent, %" PRIu64 " ok, %" PRIu64 " wrong, %" PRIu64
                  " timeouts, %" PRIu64 " lost, exit %d",
                  g.sent, g.ok, g.wrong, g.timeouts, g.lost, exit_code);
}

int main(int argc, char **argv)
{
    const sock_flag_t flags[] = {
        {"host", SOCK_FLAG_STR, &g.host, "server IPv4 address"},
        {"port", SOCK_FLAG_U64, &g.port, "server TCP port (required)"},
        {"conns", SOCK_FLAG_U64, &g.conns, "M: connections in the pool"},
        {"coroutines", SOCK_FLAG_U64, &g.coroutines, "N: coroutines looping requests"},
        {"duration-s", SOCK_FLAG_U64, &g.duration_s, "seconds of load"},
        {"max-body", SOCK_FLAG_SIZE, &g.max_body, "largest response body asked (K/M ok)"},
        {"max-req-body", SOCK_FLAG_SIZE, &g.max_req_body, "largest request body sent"},
        {"timeout-ms", SOCK_FLAG_U64, &g.timeout_ms, "per-request timeout"},
        {"seed", SOCK_FLAG_U64, &g.seed, "random seed; 0 picks one (printed)"},
        {"log-level", SOCK_FLAG_LEVEL, &g.log_level, "trace, debug, info, warn, error"},
        {"log-sample", SOCK_FLAG_U64, &g.log_sample,
         "debug lines for requests whose seq is a multiple of N (0: none)"},
        {"quit", SOCK_FLAG_BOOL, &g.quit, "send a quit request to the server at the end"},
        {"quiet", SOCK_FLAG_BOOL, &g.quiet, "no per-second progress lines"},
    };
    struct sigaction sa;

    sock_flags_parse("sock_client", "socket_ext load test client (sock protocol).", flags,
                     sizeof(flags) / sizeof(flags[0]), argc, argv);
    if (g.port == 0 || g.port > 65535 || g.conns == 0 || g.conns > 1024 || g.coroutines == 0 ||
        g.max_body > (1u << 30) || g.max_req_body > (1u << 30) || g.timeout_ms == 0) {
        fprintf(stderr, "sock_client: need --port 1..65535, --conns 1..1024, --coroutines > 0, "
                        "--timeout-ms > 0, bodies up to 1 GiB (--help)\n");
        return 2;
    }
    if (g.max_req_body > g.max_body)
        g.max_req_body = g.max_body; /* the server's framer rejects larger request bodies */
    if (g.seed == 0)
        g.seed = sock_now_us();
    setvbuf(stdout, NULL, _IOLBF, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (sock_log_open("sock_client", g.log_level) != 0)
        return 1;
    g.sched = coho_sched_create(NULL);
    if (g.sched == NULL || coho_spawn(g.sched, client_main, NULL) == 0 ||
        coho_sched_run(g.sched) != 0) {
        fprintf(stderr, "sock_client: scheduler: %s\n", strerror(errno));
        return 1;
    }
    coho_sched_destroy(g.sched);
    coho_log_close();
    return exit_code;
}
