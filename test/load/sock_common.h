/* SPDX-License-Identifier: MIT */
/* Shared parts of the sock_svr / sock_client load test: the request types and body pattern of
 * the test protocol, flag parsing, a latency histogram with percentiles, the log set-up and
 * the progress line. */
#ifndef COHO_TEST_LOAD_SOCK_COMMON_H
#define COHO_TEST_LOAD_SOCK_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <coho.h>

/* Request types (the header's `type`; responses carry it with COHO_SOCK_RESPONSE set). */
#define SOCK_TYPE_ECHO 1u /* answer `arg` bytes of pattern after a random 0..D ms sleep */
#define SOCK_TYPE_QUIT 2u /* answer at once, then the server winds down */

/* Response statuses (the response header's `arg`). */
#define SOCK_STATUS_OK       0u
#define SOCK_STATUS_TOO_BIG  1u /* `arg` asked for more than the server's --max-body */
#define SOCK_STATUS_BAD_TYPE 2u /* unknown request type */
#define SOCK_STATUS_BAD_BODY 3u /* the request body did not carry its pattern */

/* Body patterns. Byte `off` of a body is a function of (seq, off, salt), so either side can
 * check a body without having seen it; requests and responses use different salts. */
#define SOCK_SALT_REQUEST  0x52455155u
#define SOCK_SALT_RESPONSE 0x52455350u

/* Writes bytes [off, off + len) of the pattern of (seq, salt) to dst. */
void sock_pattern_fill(void *dst, size_t len, uint64_t seq, uint32_t salt, size_t off);

/* Checks bytes [off, off + len) of the pattern of (seq, salt) against src. Returns the index in
 * src of the first wrong byte, or len when all match. */
size_t sock_pattern_check(const void *src, size_t len, uint64_t seq, uint32_t salt, size_t off);

/* Checks `len` bytes of cbuf `b` from byte `start` against the pattern (offsets from 0).
 * Returns the body offset of the first wrong byte, or len when all match (or -1 when the
 * buffer holds fewer bytes). */
ssize_t sock_pattern_check_cbuf(const coho_cbuf_t *b, size_t start, size_t len, uint64_t seq,
                                uint32_t salt);

/* ---- flags ---------------------------------------------------------------------------------- */

enum sock_flag_kind {
    SOCK_FLAG_U64,   /* unsigned integer */
    SOCK_FLAG_SIZE,  /* unsigned integer with an optional K, M or G suffix (x1024) */
    SOCK_FLAG_STR,   /* string (points into argv) */
    SOCK_FLAG_LEVEL, /* log level name: trace, debug, info, warn, error, fatal */
    SOCK_FLAG_BOOL,  /* takes no value; sets true */
};

typedef struct sock_flag {
    const char *name; /* without the leading "--" */
    enum sock_flag_kind kind;
    void *value; /* uint64_t *, const char **, int * (level) or bool * */
    const char *help;
} sock_flag_t;

/* Parses "--name value" and "--name=value" into the table's values (which hold the defaults).
 * "--help" prints the usage and exits 0; an unknown flag or a bad value prints the reason and
 * the usage to stderr and exits 2. */
void sock_flags_parse(const char *prog, const char *about, const sock_flag_t *flags, size_t count,
                      int argc, char **argv);

/* The name of a log level ("debug"). */
const char *sock_level_name(int level);

/* ---- time and randomness -------------------------------------------------------------------- */

/* CLOCK_MONOTONIC in microseconds. */
uint64_t sock_now_us(void);

/* splitmix64: a small deterministic PRNG. */
uint64_t sock_rand(uint64_t *state);

/* ---- latency histogram ---------------------------------------------------------------------- */

/* Log-linear buckets over microseconds: exact below 64 us, then 32 buckets per power of two
 * (about 3 % resolution) up to 2^40 us. Percentiles report a bucket's upper bound. */
#define SOCK_HIST_SUB     32
#define SOCK_HIST_BUCKETS (64 + SOCK_HIST_SUB * 34)

typedef struct sock_hist {
    uint64_t count;
    uint64_t sum_us;
    uint64_t max_us;
    uint64_t buckets[SOCK_HIST_BUCKETS];
} sock_hist_t;

void sock_hist_reset(sock_hist_t *h);
void sock_hist_add(sock_hist_t *h, uint64_t us);
void sock_hist_merge(sock_hist_t *dst, const sock_hist_t *src);
/* The value below which `pct` percent of the samples lie (0 when empty). */
uint64_t sock_hist_percentile(const sock_hist_t *h, double pct);

/* Formats microseconds as "850us", "12.3ms" or "1.52s" into buf. Returns buf. */
const char *sock_fmt_us(char *buf, size_t len, uint64_t us);

/* ---- progress ------------------------------------------------------------------------------ */

/* Prints one progress line to stdout (unless `quiet`) and folds `sec` into `all`, then resets
 * `sec`:  "<who> <t>s <rate> req/s in flight <n> p50 <x> p99 <y> <extra> errors <e> timeouts <t>",
 * the rate and percentiles over the `interval_us` that `sec` covers. `extra` may be "". */
void sock_progress(const char *who, uint64_t elapsed_us, uint64_t interval_us, uint64_t in_flight,
                   sock_hist_t *sec, sock_hist_t *all, uint64_t errors, uint64_t timeouts,
                   const char *extra, bool quiet);

/* ---- log --------------------------------------------------------------------------------------
 */

/* Creates ./log/ and opens ./log/<name>.log at `level`; refuses to when ./log/ is coho's source
 * folder (run from the repository root). Returns 0, or -1 (reason on stderr). */
int sock_log_open(const char *name, int level);

#endif /* COHO_TEST_LOAD_SOCK_COMMON_H */
