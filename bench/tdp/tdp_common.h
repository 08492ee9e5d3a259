/* SPDX-License-Identifier: MIT */
/* Shared parts of the socket_ext benchmark programs: the sock protocol frame (DESIGN.md "Wire
 * format") coded by hand so the raw epoll programs do not link coho, the clock, the latency
 * recorder and the result line the driver (tools/bench-tdp.sh) parses. */
#ifndef COHO_BENCH_TDP_COMMON_H
#define COHO_BENCH_TDP_COMMON_H

#ifndef _GNU_SOURCE
#    define _GNU_SOURCE
#endif
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#if defined(__has_include)
#    if __has_include(<valgrind/callgrind.h>)
#        include <valgrind/callgrind.h>
#    endif
#endif
#ifndef CALLGRIND_TOGGLE_COLLECT
#    define CALLGRIND_TOGGLE_COLLECT ((void)0)
#endif

#define TDP_MAGIC     0x4F484F43u
#define TDP_HDR_LEN   24
#define TDP_RESP_BIT  0x80u
#define TDP_BODY_MAX  65536u
#define TDP_FRAME_MAX (TDP_HDR_LEN + TDP_BODY_MAX)

struct tdp_hdr {
    uint32_t magic;
    uint32_t type;
    uint64_t seq;
    uint32_t body_len;
    uint32_t arg;
};

static inline void tdp_put32(unsigned char *o, uint32_t v)
{
    o[0] = (unsigned char)v;
    o[1] = (unsigned char)(v >> 8);
    o[2] = (unsigned char)(v >> 16);
    o[3] = (unsigned char)(v >> 24);
}

static inline uint32_t tdp_get32(const unsigned char *i)
{
    return (uint32_t)i[0] | (uint32_t)i[1] << 8 | (uint32_t)i[2] << 16 | (uint32_t)i[3] << 24;
}

static inline void tdp_hdr_put(unsigned char *o, const struct tdp_hdr *h)
{
    tdp_put32(o, h->magic);
    tdp_put32(o + 4, h->type);
    tdp_put32(o + 8, (uint32_t)h->seq);
    tdp_put32(o + 12, (uint32_t)(h->seq >> 32));
    tdp_put32(o + 16, h->body_len);
    tdp_put32(o + 20, h->arg);
}

/* Returns 0, or -1 for a wrong magic or an oversized body. */
static inline int tdp_hdr_get(const unsigned char *i, struct tdp_hdr *h)
{
    h->magic = tdp_get32(i);
    h->type = tdp_get32(i + 4);
    h->seq = (uint64_t)tdp_get32(i + 8) | (uint64_t)tdp_get32(i + 12) << 32;
    h->body_len = tdp_get32(i + 16);
    h->arg = tdp_get32(i + 20);
    return h->magic == TDP_MAGIC && h->body_len <= TDP_BODY_MAX ? 0 : -1;
}

/* Writes a request frame (header + `body` bytes of a pattern) asking for `want` response bytes.
 * Returns its length. */
static inline size_t tdp_req_put(unsigned char *o, uint64_t seq, uint32_t body, uint32_t want)
{
    struct tdp_hdr h = {.magic = TDP_MAGIC, .type = 0, .seq = seq, .body_len = body, .arg = want};

    tdp_hdr_put(o, &h);
    memset(o + TDP_HDR_LEN, 'q', body);
    return TDP_HDR_LEN + (size_t)body;
}

/* Writes the response to request header `rq` (status 0, `rq->arg` body bytes). Returns its
 * length. */
static inline size_t tdp_resp_put(unsigned char *o, const struct tdp_hdr *rq)
{
    struct tdp_hdr h = {.magic = TDP_MAGIC,
                        .type = rq->type | TDP_RESP_BIT,
                        .seq = rq->seq,
                        .body_len = rq->arg,
                        .arg = 0};

    tdp_hdr_put(o, &h);
    memset(o + TDP_HDR_LEN, 'r', rq->arg);
    return TDP_HDR_LEN + (size_t)rq->arg;
}

static inline uint64_t tdp_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t tdp_cpu_ns(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return ((uint64_t)ru.ru_utime.tv_sec + (uint64_t)ru.ru_stime.tv_sec) * 1000000000u +
           ((uint64_t)ru.ru_utime.tv_usec + (uint64_t)ru.ru_stime.tv_usec) * 1000u;
}

/* Options of every program (a server reads mode, port and spawn only). */
struct tdp_opts {
    const char *mode;
    bool spawn; /* socket_ext server: answer from a coroutine spawned per request */
    const char *host;
    unsigned port;
    unsigned conns;
    unsigned inflight;
    uint32_t body; /* request body bytes */
    uint32_t want; /* response body bytes asked for */
    unsigned warmup_ms;
    unsigned duration_ms;
    uint64_t requests; /* > 0: count mode, every request is measured, no warm-up */
};

/* Parses the command line into `o` (defaults: 4 connections, 1000 in flight, 32-byte bodies both
 * ways, 1 s warm-up, 5 s measured). Exits on a bad option. */
static inline void tdp_opts_parse(int argc, char **argv, struct tdp_opts *o)
{
    static const struct option longs[] = {
        {"mode", required_argument, NULL, 'm'},
        {"host", required_argument, NULL, 'h'},
        {"port", required_argument, NULL, 'p'},
        {"conns", required_argument, NULL, 'c'},
        {"inflight", required_argument, NULL, 'n'},
        {"body", required_argument, NULL, 'b'},
        {"want", required_argument, NULL, 'w'},
        {"warmup-ms", required_argument, NULL, 'W'},
        {"duration-ms", required_argument, NULL, 'd'},
        {"requests", required_argument, NULL, 'r'},
        {"spawn", no_argument, NULL, 's'},
        {NULL, 0, NULL, 0},
    };
    int ch;

    memset(o, 0, sizeof(*o));
    o->mode = "tdp";
    o->host = "127.0.0.1";
    o->conns = 4;
    o->inflight = 1000;
    o->body = 32;
    o->want = 32;
    o->warmup_ms = 1000;
    o->duration_ms = 5000;
    while ((ch = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (ch) {
        case 'm':
            o->mode = optarg;
            break;
        case 'h':
            o->host = optarg;
            break;
        case 'p':
            o->port = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'c':
            o->conns = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'n':
            o->inflight = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'b':
            o->body = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'w':
            o->want = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'W':
            o->warmup_ms = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'd':
            o->duration_ms = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'r':
            o->requests = strtoull(optarg, NULL, 10);
            break;
        case 's':
            o->spawn = true;
            break;
        default:
            fprintf(stderr,
                    "usage: %s --mode M --port P [--host H] [--conns C] [--inflight N] "
                    "[--body B] [--want W] [--warmup-ms MS] [--duration-ms MS] "
                    "[--requests N] [--spawn]\n",
                    argv[0]);
            exit(2);
        }
    }
    if (o->body > 4096 || o->want > TDP_BODY_MAX || o->conns == 0 || o->inflight == 0 ||
        o->duration_ms == 0) {
        fprintf(stderr, "%s: bad option values\n", argv[0]);
        exit(2);
    }
}

/* The measurement: a completion at `now` counts when it falls inside [t_begin, t_end). In count
 * mode the window opens when the clients start and closes at the last completion. */
struct tdp_meas {
    uint64_t t_begin;
    uint64_t t_end; /* clients stop issuing at t_end */
    uint64_t t_last;
    uint64_t cpu_begin;
    uint64_t cpu_end;
    bool begun;
    bool ended;
    bool count_mode;
    uint64_t issued; /* count mode: requests handed out */
    uint64_t limit;
    uint64_t count;
    uint64_t all; /* completions, warm-up included */
    uint64_t errors;
    uint32_t *lat_ns;
    size_t lat_cap;
};

static inline void tdp_meas_init(struct tdp_meas *m, const struct tdp_opts *o)
{
    uint64_t now = tdp_now_ns();

    memset(m, 0, sizeof(*m));
    m->count_mode = o->requests > 0;
    m->limit = o->requests;
    if (m->count_mode) {
        m->t_begin = now;
        m->t_end = UINT64_MAX;
        m->lat_cap = (size_t)o->requests;
        m->begun = true;
        m->cpu_begin = tdp_cpu_ns();
        CALLGRIND_TOGGLE_COLLECT; /* under --collect-atstart=no: count the measured work only */
    } else {
        m->t_begin = now + (uint64_t)o->warmup_ms * 1000000u;
        m->t_end = m->t_begin + (uint64_t)o->duration_ms * 1000000u;
        m->lat_cap = (size_t)o->duration_ms * 2000u; /* up to 2 M req/s */
    }
    m->lat_ns = malloc(m->lat_cap * sizeof(*m->lat_ns) + 1);
    if (m->lat_ns == NULL) {
        perror("malloc");
        exit(1);
    }
}

/* May another request be issued now? */
static inline bool tdp_meas_may_issue(struct tdp_meas *m, uint64_t now)
{
    if (m->count_mode) {
        if (m->issued >= m->limit)
            return false;
        m->issued++;
        return true;
    }
    return now < m->t_end;
}

/* Records one completion of a request sent at `sent`, answered at `now`. */
static inline void tdp_meas_done(struct tdp_meas *m, uint64_t sent, uint64_t now)
{
    uint64_t d = now - sent;

    m->all++;
    if (!m->begun && now >= m->t_begin) {
        m->begun = true;
        m->cpu_begin = tdp_cpu_ns();
    }
    if (now < m->t_begin || now >= m->t_end || !m->begun)
        return;
    if (m->count < m->lat_cap)
        m->lat_ns[m->count] = d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
    m->count++;
    m->t_last = now;
    if (m->count_mode && m->count == m->limit) {
        m->ended = true;
        m->cpu_end = tdp_cpu_ns();
    }
}

/* Called by the clients' loops: true once the window has closed (duration mode). */
static inline bool tdp_meas_over(struct tdp_meas *m, uint64_t now)
{
    if (m->count_mode)
        return m->ended;
    if (now >= m->t_end && !m->ended) {
        m->ended = true;
        m->cpu_end = tdp_cpu_ns();
    }
    return m->ended;
}

static inline int tdp_cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    return x < y ? -1 : x > y;
}

static inline double tdp_pct_us(const uint32_t *sorted, size_t n, double q)
{
    size_t i;

    if (n == 0)
        return 0;
    i = (size_t)(q * (double)(n - 1) + 0.5);
    return sorted[i] / 1000.0;
}

/* Prints the result line the driver parses. */
static inline void tdp_meas_report(struct tdp_meas *m, const struct tdp_opts *o)
{
    size_t n = m->count < m->lat_cap ? (size_t)m->count : m->lat_cap;
    uint64_t span = m->count_mode ? m->t_last - m->t_begin : m->t_end - m->t_begin;
    double secs = (double)span / 1e9;

    if (!m->ended) {
        m->ended = true;
        m->cpu_end = tdp_cpu_ns();
    }
    if (m->count_mode)
        CALLGRIND_TOGGLE_COLLECT;
    qsort(m->lat_ns, n, sizeof(*m->lat_ns), tdp_cmp_u32);
    printf("RESULT mode=%s conns=%u inflight=%u body=%u requests=%llu seconds=%.3f rps=%.0f "
           "p50_us=%.1f p90_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f cpu_us_per_req=%.2f "
           "errors=%llu total=%llu\n",
           o->mode, o->conns, o->inflight, o->body, (unsigned long long)m->count, secs,
           secs > 0 ? (double)m->count / secs : 0.0, tdp_pct_us(m->lat_ns, n, 0.50),
           tdp_pct_us(m->lat_ns, n, 0.90), tdp_pct_us(m->lat_ns, n, 0.99),
           tdp_pct_us(m->lat_ns, n, 0.999), n ? m->lat_ns[n - 1] / 1000.0 : 0.0,
           m->count ? (double)(m->cpu_end - m->cpu_begin) / 1000.0 / (double)m->count : 0.0,
           (unsigned long long)m->errors, (unsigned long long)m->all);
    fflush(stdout);
    free(m->lat_ns);
}

/* Raises RLIMIT_NOFILE to its hard limit (1000 connections per process need it). */
static inline void tdp_raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

#endif /* COHO_BENCH_TDP_COMMON_H */
