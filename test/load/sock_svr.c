/* SPDX-License-Identifier: MIT */
/* sock_svr: the server side of the socket_ext load test. A socket_ext listen pool speaks the
 * sock protocol; every request gets its own coroutine, which checks the request body, sleeps a
 * random 0..D ms and answers with as many pattern bytes as the request's `arg` asks for. It
 * runs until SIGINT/SIGTERM, a QUIT request, or --duration-s. Trace log: ./log/sock_svr.log. */
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

/* Faults for the tests that prove the client notices them; never for real runs. */
enum fault {
    FAULT_NONE,
    FAULT_CONTENT,
    FAULT_DROP,
    FAULT_SIZE,
    FAULT_SEQ,
    FAULT_STATUS,
    FAULT_DUP
};

static struct {
    /* flags */
    const char *host;
    uint64_t port;
    uint64_t delay_ms;
    uint64_t duration_s;
    uint64_t max_body;
    uint64_t log_sample;
    int log_level;
    const char *port_file;
    const char *faulty;
    uint64_t faulty_every;
    bool quiet;

    enum fault fault;
    coho_sched_t *sched;
    coho_tdp_pool_t *pool;
    size_t framer_max_body;
    coho_tdp_framer_t framer;
    uint64_t rng;
    bool quit;

    /* counters */
    uint64_t requests;
    uint64_t answered;
    uint64_t bad_requests;  /* wrong request body, unknown type, too large a response asked */
    uint64_t send_errors;   /* answers that could not be sent: lost responses */
    uint64_t spawn_errors;  /* requests dropped because no handler coroutine could start */
    uint64_t faults;        /* deliberate faults (--faulty) */
    uint64_t handlers_live; /* handler coroutines running now */
    uint64_t handlers_max;
    uint64_t body_bytes_out;
    sock_hist_t hist_sec; /* handler time (receive to answer sent), this second */
    sock_hist_t hist_all;
} g = {
    .host = "127.0.0.1",
    .delay_ms = 5,
    .max_body = 256u << 10,
    .log_sample = 16,
    .log_level = COHO_LOG_DEBUG,
    .port_file = "",
    .faulty = "",
    .faulty_every = 50,
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

/* Applies the deliberate fault (if any) to the answer of request `seq` (header `h`, body of
 * h->body_len bytes). Returns false when the answer is to be dropped. */
static bool inject_fault(uint64_t seq, coho_sock_hdr_t *h, unsigned char *body)
{
    if (g.fault == FAULT_NONE || seq % g.faulty_every != 0)
        return true;
    if ((g.fault == FAULT_CONTENT || g.fault == FAULT_SIZE) && h->body_len == 0)
        return true; /* nothing to corrupt */
    g.faults++;
    coho_log_warn("seq=%" PRIu64 " fault injected (--faulty %s)", seq, g.faulty);
    switch (g.fault) {
    case FAULT_CONTENT:
        body[h->body_len / 2] ^= 0x20;
        break;
    case FAULT_DROP:
        return false;
    case FAULT_SIZE:
        h->body_len--;
        break;
    case FAULT_SEQ:
        h->seq = seq + 1; /* another request's id; its waiter gets seq's body */
        break;
    case FAULT_STATUS:
        h->arg = SOCK_STATUS_BAD_TYPE;
        break;
    case FAULT_DUP:
        break; /* handled by the caller: the answer goes out twice */
    default:
        break;
    }
    return true;
}

/* One request: check it, sleep, answer. Runs as its own detached coroutine. */
static void handle(void *arg)
{
    coho_tdp_req_t *rq = arg;
    unsigned char hdr[COHO_SOCK_HDR_LEN];
    coho_sock_hdr_t h;
    unsigned char *body = NULL;
    struct iovec iov[2];
    uint64_t t0 = sock_now_us(), seq, delay = 0;
    uint32_t status = SOCK_STATUS_OK, want = 0;
    ssize_t bad;

    g.handlers_live++;
    if (g.handlers_live > g.handlers_max)
        g.handlers_max = g.handlers_live;
    coho_cbuf_seek(&rq->frame, 0, SEEK_SET);
    if (coho_cbuf_read(&rq->frame, hdr, sizeof(hdr)) != (ssize_t)sizeof(hdr) ||
        coho_sock_hdr_decode(hdr, &h) != 0) {
        /* The framer let only whole sock frames through. */
        coho_log_error("conn %" PRIu64 ": undecodable request frame", rq->conn_id);
        g.bad_requests++;
        goto out;
    }
    seq = h.seq;
    bad =
        sock_pattern_check_cbuf(&rq->frame, COHO_SOCK_HDR_LEN, h.body_len, seq, SOCK_SALT_REQUEST);
    if (bad != (ssize_t)h.body_len) {
        coho_log_warn("seq=%" PRIu64 " request body of %" PRIu32 " bytes is wrong at byte %zd", seq,
                      h.body_len, bad);
        status = SOCK_STATUS_BAD_BODY;
    } else if (h.type == SOCK_TYPE_ECHO) {
        if (h.arg > g.max_body) {
            coho_log_warn("seq=%" PRIu64 " asks for %" PRIu32
                          " bytes, more than --max-body %" PRIu64,
                          seq, h.arg, g.max_body);
            status = SOCK_STATUS_TOO_BIG;
        } else {
            want = h.arg;
            delay = g.delay_ms > 0 ? sock_rand(&g.rng) % (g.delay_ms + 1) : 0;
        }
    } else if (h.type == SOCK_TYPE_QUIT) {
        coho_log_info("seq=%" PRIu64 " quit requested by conn %" PRIu64, seq, rq->conn_id);
        g.quit = true;
    } else {
        coho_log_warn("seq=%" PRIu64 " unknown request type %" PRIu32, seq, h.type);
        status = SOCK_STATUS_BAD_TYPE;
    }
    if (status != SOCK_STATUS_OK)
        g.bad_requests++;
    if (sampled(seq))
        coho_log_debug("seq=%" PRIu64 " received on conn %" PRIu64 ": body %" PRIu32
                       " B, asks %" PRIu32 " B; sleeping %" PRIu64 " ms",
                       seq, rq->conn_id, h.body_len, h.arg, delay);
    if (delay > 0 && coho_sleep_ms(delay) != 0)
        coho_log_warn("seq=%" PRIu64 " sleep: %m", seq);

    if (want > 0) {
        body = malloc(want);
        if (body == NULL) {
            coho_log_error("seq=%" PRIu64 " no memory for a %" PRIu32 " B answer", seq, want);
            status = SOCK_STATUS_TOO_BIG;
            want = 0;
            g.bad_requests++;
        } else {
            sock_pattern_fill(body, want, seq, SOCK_SALT_RESPONSE, 0);
        }
    }
    h.type |= COHO_SOCK_RESPONSE;
    h.body_len = want;
    h.arg = status;
    if (!inject_fault(seq, &h, body))
        goto out;
    coho_sock_hdr_encode(&h, hdr);
    iov[0].iov_base = hdr;
    iov[0].iov_len = sizeof(hdr);
    iov[1].iov_base = body;
    iov[1].iov_len = h.body_len;
    if (coho_tdp_sendv(rq->pool, rq->conn_id, 0, iov, h.body_len > 0 ? 2 : 1) != 0) {
        coho_log_warn("seq=%" PRIu64 " answer of %" PRIu32 " B on conn %" PRIu64 " lost: %m", seq,
                      h.body_len, rq->conn_id);
        g.send_errors++;
        goto out;
    }
    if (g.fault == FAULT_DUP && seq % g.faulty_every == 0)
        coho_tdp_sendv(rq->pool, rq->conn_id, 0, iov, h.body_len > 0 ? 2 : 1);
    g.answered++;
    g.body_bytes_out += h.body_len;
    sock_hist_add(&g.hist_sec, sock_now_us() - t0);
    if (sampled(seq))
        coho_log_debug("seq=%" PRIu64 " answered: %" PRIu32 " B, status %" PRIu32, seq, h.body_len,
                       status);
out:
    free(body);
    coho_tdp_req_free(rq);
    g.handlers_live--;
}

/* In the connection's receive coroutine: hand the request to a coroutine of its own. */
static void on_req(coho_tdp_req_t *rq, void *user)
{
    coho_spawn_opts_t o;

    (void)user;
    g.requests++;
    coho_spawn_opts_init(&o);
    o.detached = true;
    o.name = "sock-handle"; /* the entry is a static function: the log names it this way */
    if (coho_spawn_ex(g.sched, handle, rq, &o) == 0) {
        coho_log_error("req %" PRIu64 " on conn %" PRIu64 " dropped: spawn: %m", rq->req_id,
                       rq->conn_id);
        g.spawn_errors++;
        coho_tdp_req_free(rq);
    }
}

static void on_conn_new(coho_tdp_pool_t *p, uint64_t conn_id, void *user)
{
    (void)p;
    (void)user;
    coho_log_info("conn %" PRIu64 " accepted", conn_id);
}

static void on_conn_delete(coho_tdp_pool_t *p, uint64_t conn_id, int err, void *user)
{
    (void)p;
    (void)user;
    coho_log_info("conn %" PRIu64 " closed: %s", conn_id, strerror(err));
}

/* The server's progress line; `interval_us` is the time hist_sec covers. */
static void progress(uint64_t elapsed_us, uint64_t interval_us)
{
    coho_tdp_stats_t st;
    char extra[32];

    coho_tdp_get_stats(g.pool, &st);
    snprintf(extra, sizeof(extra), "conns %2" PRIu64, st.conns_open);
    sock_progress("sock_svr", elapsed_us, interval_us, g.handlers_live, &g.hist_sec, &g.hist_all,
                  g.bad_requests + g.send_errors + g.spawn_errors + st.protocol_errors, 0, extra,
                  g.quiet);
}

static int exit_code = 1;

static void server_main(void *arg)
{
    struct sockaddr_in addr;
    coho_tdp_opts_t o;
    coho_tdp_stats_t st;
    coho_sched_stats_t ss;
    uint64_t start, last, wait_until;
    char p50[32], p99[32], pmax[32];
    const char *why = "";
    double secs;

    (void)arg;
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)g.port);
    if (inet_pton(AF_INET, g.host, &addr.sin_addr) != 1) {
        fprintf(stderr, "sock_svr: --host %s is not an IPv4 address\n", g.host);
        return;
    }
    g.framer_max_body = (size_t)g.max_body;
    coho_sock_framer_init(&g.framer, &g.framer_max_body);
    coho_tdp_opts_init(&o);
    o.framers[0] = &g.framer;
    o.framer_count = 1;
    o.max_frame_len = COHO_SOCK_HDR_LEN + (size_t)g.max_body;
    o.on_req = on_req;
    o.on_conn_new = on_conn_new;
    o.on_conn_delete = on_conn_delete;
    g.pool = coho_tdp_listen((struct sockaddr *)&addr, sizeof(addr), &o);
    if (g.pool == NULL) {
        fprintf(stderr, "sock_svr: listen on %s:%" PRIu64 ": %s\n", g.host, g.port,
                strerror(errno));
        return;
    }
    coho_log_info("listening on %s:%u, delay 0..%" PRIu64 " ms, max body %" PRIu64
                  " B, duration %" PRIu64 " s, log sample 1/%" PRIu64 "%s%s",
                  g.host, coho_tdp_local_port(g.pool), g.delay_ms, g.max_body, g.duration_s,
                  g.log_sample, g.fault != FAULT_NONE ? ", faulty: " : "", g.faulty);
    if (g.port_file != NULL && g.port_file[0] != '\0') {
        char tmp[512];
        FILE *f;

        snprintf(tmp, sizeof(tmp), "%s.tmp", g.port_file);
        f = fopen(tmp, "w");
        if (f == NULL || fprintf(f, "%u\n", coho_tdp_local_port(g.pool)) < 0 || fclose(f) != 0 ||
            rename(tmp, g.port_file) != 0) {
            fprintf(stderr, "sock_svr: --port-file %s: %s\n", g.port_file, strerror(errno));
            coho_tdp_close(g.pool);
            return;
        }
    }
    printf("sock_svr: listening on %s:%u (delay 0..%" PRIu64 " ms, max body %" PRIu64 " B)%s%s\n",
           g.host, coho_tdp_local_port(g.pool), g.delay_ms, g.max_body,
           g.fault != FAULT_NONE ? " FAULTY: " : "", g.faulty);

    start = last = sock_now_us();
    while (!g.quit && got_signal == 0 &&
           (g.duration_s == 0 || sock_now_us() - start < g.duration_s * 1000000)) {
        uint64_t now;

        coho_sleep_ms(20);
        now = sock_now_us();
        if (now - last >= 1000000) {
            progress(now - start, now - last);
            last = now;
        }
    }
    why = g.quit ? "quit request" : got_signal != 0 ? strsignal(got_signal) : "--duration-s";
    coho_log_info("stopping (%s); %" PRIu64 " handlers running", why, g.handlers_live);
    /* Grace: let running handlers answer (each sleeps at most --delay-ms). */
    wait_until = sock_now_us() + (2000 + 2 * g.delay_ms) * 1000;
    while (g.handlers_live > 0 && sock_now_us() < wait_until)
        coho_sleep_ms(5);
    progress(sock_now_us() - start, sock_now_us() - last);
    secs = (double)(sock_now_us() - start) / 1e6;
    coho_tdp_get_stats(g.pool, &st);
    coho_tdp_close(g.pool);
    g.pool = NULL;
    coho_sched_get_stats(g.sched, &ss);

    printf("sock_svr summary: %.1f s, stopped by %s\n", secs, why);
    printf("  requests    %" PRIu64 " received, %" PRIu64 " answered (%.0f req/s, %.1f MB/s of "
           "bodies)\n",
           g.requests, g.answered, (double)g.answered / secs,
           (double)g.body_bytes_out / secs / 1e6);
    printf("  handler     p50 %s  p99 %s  max %s  (receive to answer sent, sleep included); "
           "at most %" PRIu64 " at once\n",
           sock_fmt_us(p50, sizeof(p50), sock_hist_percentile(&g.hist_all, 50)),
           sock_fmt_us(p99, sizeof(p99), sock_hist_percentile(&g.hist_all, 99)),
           sock_fmt_us(pmax, sizeof(pmax), g.hist_all.max_us), g.handlers_max);
    printf("  errors      %" PRIu64 " bad requests, %" PRIu64 " answers lost (send), %" PRIu64
           " spawn failures, %" PRIu64 " protocol errors, %" PRIu64 " handlers unfinished\n",
           g.bad_requests, g.send_errors, g.spawn_errors, st.protocol_errors, g.handlers_live);
    printf("  conns       %" PRIu64 " accepted, %" PRIu64 " rejected\n", st.conns_total,
           st.conns_rejected);
    printf("  coroutines  %zu user left (this one included), %zu daemons left, %zu finished and "
           "not reaped\n",
           ss.user, ss.unfinished - ss.user, ss.coroutines - ss.unfinished);
    if (g.fault != FAULT_NONE)
        printf("  faults      %" PRIu64 " injected deliberately (--faulty %s)\n", g.faults,
               g.faulty);
    if (g.bad_requests + g.send_errors + g.spawn_errors + st.protocol_errors + g.handlers_live >
        0) {
        exit_code = 2;
        printf("  result      FAILED: errors above\n");
    } else if (ss.user != 1) {
        exit_code = 3;
        printf("  result      FAILED: %zu user coroutines other than main still alive\n",
               ss.user - 1);
    } else {
        exit_code = 0;
        printf("  result      OK\n");
    }
    coho_log_info("summary: %" PRIu64 " requests, %" PRIu64 " answered, %" PRIu64 " bad, %" PRIu64
                  " lost, exit %d",
                  g.requests, g.answered, g.bad_requests, g.send_errors, exit_code);
}

int main(int argc, char **argv)
{
    const sock_flag_t flags[] = {
        {"host", SOCK_FLAG_STR, &g.host, "IPv4 address to listen on"},
        {"port", SOCK_FLAG_U64, &g.port, "TCP port; 0 picks a free one (see --port-file)"},
        {"port-file", SOCK_FLAG_STR, &g.port_file, "write the bound port to this file"},
        {"delay-ms", SOCK_FLAG_U64, &g.delay_ms, "each answer waits a random 0..D ms"},
        {"duration-s", SOCK_FLAG_U64, &g.duration_s,
         "stop after this many seconds; 0: at SIGINT/SIGTERM or a quit request"},
        {"max-body", SOCK_FLAG_SIZE, &g.max_body, "largest request or response body (K/M ok)"},
        {"log-level", SOCK_FLAG_LEVEL, &g.log_level, "trace, debug, info, warn, error"},
        {"log-sample", SOCK_FLAG_U64, &g.log_sample,
         "debug lines for requests whose seq is a multiple of N (0: none)"},
        {"quiet", SOCK_FLAG_BOOL, &g.quiet, "no per-second progress lines"},
        {"faulty", SOCK_FLAG_STR, &g.faulty,
         "TESTS ONLY: break every Nth answer: content, drop, size, seq, status or dup"},
        {"faulty-every", SOCK_FLAG_U64, &g.faulty_every, "N for --faulty"},
    };
    static const char *const fault_names[] = {"",    "content", "drop", "size",
                                              "seq", "status",  "dup"};
    struct sigaction sa;
    coho_sched_opts_t so;
    unsigned i;

    sock_flags_parse("sock_svr", "socket_ext load test server (sock protocol).", flags,
                     sizeof(flags) / sizeof(flags[0]), argc, argv);
    for (i = 0; i < sizeof(fault_names) / sizeof(fault_names[0]); i++)
        if (strcmp(g.faulty, fault_names[i]) == 0)
            break;
    if (i == sizeof(fault_names) / sizeof(fault_names[0]) || g.faulty_every == 0 ||
        g.port > 65535 || g.max_body > (1u << 30)) {
        fprintf(stderr, "sock_svr: bad --faulty, --faulty-every, --port or --max-body\n");
        return 2;
    }
    g.fault = (enum fault)i;
    g.rng = sock_now_us();
    setvbuf(stdout, NULL, _IOLBF, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN); /* a client that goes away is an error return, not a signal */
    if (sock_log_open("sock_svr", g.log_level) != 0)
        return 1;
    coho_sched_opts_init(&so);
    so.dump_on_sigusr2 = true; /* tools/coho-top --pid PID --log log/sock_svr.log */
    g.sched = coho_sched_create(&so);
    if (g.sched == NULL || coho_spawn(g.sched, server_main, NULL) == 0 ||
        coho_sched_run(g.sched) != 0) {
        fprintf(stderr, "sock_svr: scheduler: %s\n", strerror(errno));
        return 1;
    }
    coho_sched_destroy(g.sched);
    coho_log_close();
    return exit_code;
}
