/* SPDX-License-Identifier: MIT */
/* Shared parts of the sock_svr / sock_client load test (see sock_common.h). */
#include "test/load/sock_common.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* ---- body pattern ------------------------------------------------------------------------- */

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Word `w` (bytes 8w..8w+7, little-endian) of the pattern: cheap per word, different for every
 * (seq, salt) and every position, so a shifted, truncated or foreign body never matches. */
static inline uint64_t pattern_word(uint64_t base, uint64_t w)
{
    uint64_t x = base + w * 0x9E3779B97F4A7C15ull;

    return x ^ (x >> 29);
}

static inline uint64_t pattern_base(uint64_t seq, uint32_t salt)
{
    return mix64(seq ^ ((uint64_t)salt << 32));
}

static inline unsigned char pattern_byte(uint64_t base, size_t off)
{
    return (unsigned char)(pattern_word(base, off >> 3) >> ((off & 7) * 8));
}

static inline uint64_t to_le64(uint64_t v)
{
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return __builtin_bswap64(v);
#else
    return v;
#endif
}

void sock_pattern_fill(void *dst, size_t len, uint64_t seq, uint32_t salt, size_t off)
{
    uint64_t base = pattern_base(seq, salt);
    unsigned char *d = dst;
    size_t end = off + len;

    while (off < end && (off & 7) != 0)
        *d++ = pattern_byte(base, off++);
    while (end - off >= 8) {
        uint64_t v = to_le64(pattern_word(base, off >> 3));

        memcpy(d, &v, 8);
        d += 8;
        off += 8;
    }
    while (off < end)
        *d++ = pattern_byte(base, off++);
}

size_t sock_pattern_check(const void *src, size_t len, uint64_t seq, uint32_t salt, size_t off)
{
    uint64_t base = pattern_base(seq, salt);
    const unsigned char *s = src;
    size_t i = 0;

    while (i < len && ((off + i) & 7) != 0) {
        if (s[i] != pattern_byte(base, off + i))
            return i;
        i++;
    }
    while (len - i >= 8) {
        uint64_t v;

        memcpy(&v, s + i, 8);
        if (v != to_le64(pattern_word(base, (off + i) >> 3)))
            break; /* the byte loop below finds which */
        i += 8;
    }
    while (i < len) {
        if (s[i] != pattern_byte(base, off + i))
            return i;
        i++;
    }
    return len;
}

ssize_t sock_pattern_check_cbuf(const coho_cbuf_t *b, size_t start, size_t len, uint64_t seq,
                                uint32_t salt)
{
    struct iovec iov[16];
    size_t done = 0;

    if (coho_cbuf_len(b) < start + len)
        return -1;
    while (done < len) {
        int n = coho_cbuf_data_iov(b, start + done, iov, 16), i;

        if (n <= 0)
            return -1;
        for (i = 0; i < n && done < len; i++) {
            size_t take = iov[i].iov_len < len - done ? iov[i].iov_len : len - done;
            size_t bad = sock_pattern_check(iov[i].iov_base, take, seq, salt, done);

            if (bad != take)
                return (ssize_t)(done + bad);
            done += take;
        }
    }
    return (ssize_t)len;
}

/* ---- flags ------------------------------------------------------------------------------ */

static const char *const level_names[] = {"trace", "debug", "info", "warn", "error", "fatal"};

const char *sock_level_name(int level)
{
    return level >= 0 && level <= COHO_LOG_FATAL ? level_names[level] : "?";
}

static void usage(FILE *f, const char *prog, const char *about, const sock_flag_t *flags,
                  size_t count)
{
    size_t i;

    fprintf(f, "usage: %s [flags]\n%s\n\nflags (--name value or --name=value):\n", prog, about);
    for (i = 0; i < count; i++) {
        char def[64];

        switch (flags[i].kind) {
        case SOCK_FLAG_U64:
        case SOCK_FLAG_SIZE:
            snprintf(def, sizeof(def), "%" PRIu64, *(const uint64_t *)flags[i].value);
            break;
        case SOCK_FLAG_STR:
            snprintf(def, sizeof(def), "%s",
                     *(const char **)flags[i].value ? *(const char **)flags[i].value : "");
            break;
        case SOCK_FLAG_LEVEL:
            snprintf(def, sizeof(def), "%s", sock_level_name(*(const int *)flags[i].value));
            break;
        default:
            snprintf(def, sizeof(def), "off");
            break;
        }
        fprintf(f, "  --%-14s %s (default %s)\n", flags[i].name, flags[i].help, def);
    }
}

static int parse_value(const sock_flag_t *f, const char *v)
{
    char *end = NULL;
    unsigned long long n;
    int i;

    switch (f->kind) {
    case SOCK_FLAG_STR:
        *(const char **)f->value = v;
        return 0;
    case SOCK_FLAG_LEVEL:
        for (i = 0; i <= COHO_LOG_FATAL; i++)
            if (strcmp(v, level_names[i]) == 0) {
                *(int *)f->value = i;
                return 0;
            }
        return -1;
    case SOCK_FLAG_U64:
    case SOCK_FLAG_SIZE:
        if (*v == '\0' || *v == '-')
            return -1;
        errno = 0;
        n = strtoull(v, &end, 10);
        if (errno != 0 || end == v)
            return -1;
        if (f->kind == SOCK_FLAG_SIZE && *end != '\0') {
            unsigned shift = *end == 'K' || *end == 'k'   ? 10
                             : *end == 'M' || *end == 'm' ? 20
                             : *end == 'G' || *end == 'g' ? 30
                                                          : 0;

            if (shift == 0 || n > (~0ull >> shift))
                return -1;
            n <<= shift;
            end++;
            if (*end == 'i' || *end == 'B')
                end++;
            if (*end == 'B')
                end++;
        }
        if (*end != '\0')
            return -1;
        *(uint64_t *)f->value = n;
        return 0;
    default:
        return -1;
    }
}

void sock_flags_parse(const char *prog, const char *about, const sock_flag_t *flags, size_t count,
                      int argc, char **argv)
{
    int i;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *eq, *v = NULL;
        size_t nlen, k;

        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout, prog, about, flags, count);
            exit(0);
        }
        if (strncmp(a, "--", 2) != 0)
            goto bad;
        a += 2;
        eq = strchr(a, '=');
        nlen = eq != NULL ? (size_t)(eq - a) : strlen(a);
        for (k = 0; k < count; k++)
            if (strlen(flags[k].name) == nlen && strncmp(flags[k].name, a, nlen) == 0)
                break;
        if (k == count)
            goto bad;
        if (flags[k].kind == SOCK_FLAG_BOOL) {
            if (eq != NULL)
                goto bad;
            *(bool *)flags[k].value = true;
            continue;
        }
        if (eq != NULL)
            v = eq + 1;
        else if (i + 1 < argc)
            v = argv[++i];
        if (v == NULL || parse_value(&flags[k], v) != 0) {
            fprintf(stderr, "%s: bad value for --%s: %s\n", prog, flags[k].name, v ? v : "(none)");
            usage(stderr, prog, about, flags, count);
            exit(2);
        }
    }
    return;
bad:
    fprintf(stderr, "%s: unknown flag %s\n", prog, argv[i]);
    usage(stderr, prog, about, flags, count);
    exit(2);
}

/* ---- time and randomness ------------------------------------------------------------------ */

uint64_t sock_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t sock_rand(uint64_t *state)
{
    *state += 0x9E3779B97F4A7C15ull;
    return mix64(*state);
}

/* ---- histogram ---------------------------------------------------------------------------- */

static unsigned hist_index(uint64_t us)
{
    unsigned msb, idx;

    if (us < 64)
        return (unsigned)us;
    msb = 63u - (unsigned)__builtin_clzll(us); /* >= 6 */
    idx = 64 + (msb - 6) * SOCK_HIST_SUB + (unsigned)((us >> (msb - 5)) & (SOCK_HIST_SUB - 1));
    return idx < SOCK_HIST_BUCKETS ? idx : SOCK_HIST_BUCKETS - 1;
}

/* The largest value that falls in bucket `idx`. */
static uint64_t hist_upper(unsigned idx)
{
    unsigned msb, sub;

    if (idx < 64)
        return idx;
    msb = (idx - 64) / SOCK_HIST_SUB + 6;
    sub = (idx - 64) % SOCK_HIST_SUB;
    return ((uint64_t)(SOCK_HIST_SUB + sub + 1) << (msb - 5)) - 1;
}

void sock_hist_reset(sock_hist_t *h)
{
    memset(h, 0, sizeof(*h));
}

void sock_hist_add(sock_hist_t *h, uint64_t us)
{
    h->count++;
    h->sum_us += us;
    if (us > h->max_us)
        h->max_us = us;
    h->buckets[hist_index(us)]++;
}

void sock_hist_merge(sock_hist_t *dst, const sock_hist_t *src)
{
    unsigned i;

    dst->count += src->count;
    dst->sum_us += src->sum_us;
    if (src->max_us > dst->max_us)
        dst->max_us = src->max_us;
    for (i = 0; i < SOCK_HIST_BUCKETS; i++)
        dst->buckets[i] += src->buckets[i];
}

uint64_t sock_hist_percentile(const sock_hist_t *h, double pct)
{
    uint64_t want, seen = 0;
    unsigned i;

    if (h->count == 0)
        return 0;
    want = (uint64_t)((double)h->count * pct / 100.0 + 0.999999);
    if (want == 0)
        want = 1;
    for (i = 0; i < SOCK_HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= want) {
            uint64_t up = i < SOCK_HIST_BUCKETS - 1 ? hist_upper(i) : h->max_us;

            return up < h->max_us ? up : h->max_us;
        }
    }
    return h->max_us;
}

const char *sock_fmt_us(char *buf, size_t len, uint64_t us)
{
    if (us < 1000)
        snprintf(buf, len, "%" PRIu64 "us", us);
    else if (us < 1000000)
        snprintf(buf, len, "%.2fms", (double)us / 1000.0);
    else
        snprintf(buf, len, "%.2fs", (double)us / 1000000.0);
    return buf;
}

/* ---- progress ---------------------------------------------------------------------------- */

void sock_progress(const char *who, uint64_t elapsed_us, uint64_t interval_us, uint64_t in_flight,
                   sock_hist_t *sec, sock_hist_t *all, uint64_t errors, uint64_t timeouts,
                   const char *extra, bool quiet)
{
    char p50[32], p99[32];

    if (!quiet && interval_us > 0)
        printf("%s %5.1fs  %7.0f req/s  in flight %4" PRIu64
               "  p50 %8s  p99 %8s  %s%serrors %" PRIu64 "  timeouts %" PRIu64 "\n",
               who, (double)elapsed_us / 1e6, (double)sec->count * 1e6 / (double)interval_us,
               in_flight, sock_fmt_us(p50, sizeof(p50), sock_hist_percentile(sec, 50)),
               sock_fmt_us(p99, sizeof(p99), sock_hist_percentile(sec, 99)), extra,
               extra[0] != '\0' ? "  " : "", errors, timeouts);
    sock_hist_merge(all, sec);
    sock_hist_reset(sec);
}

/* ---- log ---------------------------------------------------------------------------------- */

int sock_log_open(const char *name, int level)
{
    char path[256];
    coho_log_opts_t o;

    /* ./log/ of the source tree holds the log layer's sources: never write there. */
    if (access("log/log.c", F_OK) == 0) {
        fprintf(stderr,
                "%s: ./log/ is coho's source folder; run from a build directory (make run does)\n",
                name);
        return -1;
    }
    if (mkdir("log", 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "%s: mkdir log: %s\n", name, strerror(errno));
        return -1;
    }
    snprintf(path, sizeof(path), "log/%s.log", name);
    coho_log_opts_init(&o);
    o.path = path;
    o.level = level;
    o.files_kept = 2;
    o.rotate_size = 256u << 20;
    o.thread_buffer_size = 4u << 20;
    return coho_log_open(&o) == 0 ? 0 : -1;
}
