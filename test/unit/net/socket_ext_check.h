/* SPDX-License-Identifier: MIT */
/* Checks for code that runs on a coroutine's stack, shared by the socket_ext tests.
 *
 * A failing CMocka assert_* longjmps to the test's jmp_buf, which lives on the thread's own
 * stack: from a coroutine body, or from a pool callback (which runs in a pool coroutine), the
 * jump crosses stacks and leaves the scheduler in the middle of a switch. And a body that never
 * ran asserts nothing, so its test passes. Here coroutine code records instead:
 *
 *   - CO_CHECK(cond), CO_CHECK_EQ(a, b) and CO_CHECK_NE(a, b) note a failure (the first one
 *     with its place and values, the others counted) and evaluate to whether the check held,
 *     so that a body can stop early: `if (!CO_CHECK(fd >= 0)) return;`.
 *   - co_spawn(fn, arg) starts a body on the test's scheduler that counts its start and end.
 *   - co_run(fn, arg) runs fn(arg) as the first such body of a fresh scheduler and, back on the
 *     test's own stack once coho_sched_run returned, asserts that no check failed and that every
 *     co_spawn()ed body ran to its end.
 *
 * Every case of a test program runs in its own process (ctest), and co_run starts from a clean
 * record, so the static state below is per case. */
#ifndef COHO_TEST_UNIT_SYSCALL_HOOK_SOCKET_EXT_CHECK_H
#define COHO_TEST_UNIT_SYSCALL_HOOK_SOCKET_EXT_CHECK_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <coho.h>
#include <coho/net.h>

#include "test/support/cmocka_main.h"

static struct {
    coho_sched_t *sched; /* the scheduler co_run created */
    unsigned failed;     /* checks that did not hold */
    char first[512];     /* where and what the first of them was */
    unsigned spawned;    /* bodies co_spawn started */
    unsigned ended;      /* ... that returned */
} co_checks;

/* Records a failed check. Returns false, the check's value. */
static bool co_check_failed(const char *file, int line, const char *fmt, ...)
{
    if (co_checks.failed++ == 0) {
        va_list ap;
        int n = snprintf(co_checks.first, sizeof(co_checks.first), "%s:%d: ", file, line);

        va_start(ap, fmt);
        if (n > 0 && (size_t)n < sizeof(co_checks.first))
            vsnprintf(co_checks.first + n, sizeof(co_checks.first) - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return false;
}

static bool co_check_int(const char *file, int line, const char *expr, bool equal, intmax_t a,
                         intmax_t b)
{
    if ((a == b) == equal)
        return true;
    return co_check_failed(file, line, "%s (%jd, %jd)", expr, a, b);
}

#define CO_CHECK(cond) ((cond) ? true : co_check_failed(__FILE__, __LINE__, "%s", #cond))
#define CO_CHECK_EQ(a, b) \
    co_check_int(__FILE__, __LINE__, #a " == " #b, true, (intmax_t)(a), (intmax_t)(b))
#define CO_CHECK_NE(a, b) \
    co_check_int(__FILE__, __LINE__, #a " != " #b, false, (intmax_t)(a), (intmax_t)(b))

struct co_body {
    void (*fn)(void *);
    void *arg;
};

static void co_body_main(void *arg)
{
    struct co_body b = *(struct co_body *)arg;

    free(arg);
    b.fn(b.arg);
    co_checks.ended++;
}

/* Spawns fn(arg) on the test's scheduler, counted. Returns the coroutine id, or 0 (recorded as
 * a failed check). */
static uint64_t co_spawn(void (*fn)(void *), void *arg)
{
    struct co_body *b = malloc(sizeof(*b));
    uint64_t id = 0;

    if (b != NULL) {
        b->fn = fn;
        b->arg = arg;
        id = coho_spawn(co_checks.sched, co_body_main, b);
    }
    if (id == 0) {
        free(b);
        co_check_failed(__FILE__, __LINE__, "co_spawn: coho_spawn failed");
        return 0;
    }
    co_checks.spawned++;
    return id;
}

/* On the test's stack: fails the test if a coroutine check failed or a counted body did not run
 * to its end. */
static void co_checks_assert(void)
{
    if (co_checks.failed != 0)
        fail_msg("%u check(s) failed in coroutines; the first: %s", co_checks.failed,
                 co_checks.first);
    if (co_checks.spawned == 0 || co_checks.ended != co_checks.spawned)
        fail_msg("%u of %u coroutine bodies did not run to their end",
                 co_checks.spawned - co_checks.ended, co_checks.spawned);
}

/* Runs fn(arg) in a fresh scheduler until no user coroutine is left, then asserts the record. */
static void co_run(void (*fn)(void *), void *arg)
{
    memset(&co_checks, 0, sizeof(co_checks));
    co_checks.sched = coho_sched_create(NULL);
    assert_non_null(co_checks.sched);
    assert_int_not_equal(co_spawn(fn, arg), 0);
    assert_int_equal(coho_sched_run(co_checks.sched), 0);
    coho_sched_destroy(co_checks.sched);
    co_checks.sched = NULL;
    co_checks_assert();
}

/* Answers request `rq`, whose decoded header is `h`, with a sock response: the header with the
 * response bit, `len` body bytes from `body`, arg 0. Returns coho_tdp_replyv's result. */
static inline int co_sock_reply(const coho_tdp_req_t *rq, coho_sock_hdr_t h, const void *body,
                                uint32_t len)
{
    unsigned char hdr[COHO_SOCK_HDR_LEN];
    struct iovec iov[2];

    h.type |= COHO_SOCK_RESPONSE;
    h.body_len = len;
    h.arg = 0;
    coho_sock_hdr_encode(&h, hdr);
    iov[0].iov_base = hdr;
    iov[0].iov_len = sizeof(hdr);
    iov[1].iov_base = (void *)body;
    iov[1].iov_len = len;
    return coho_tdp_replyv(rq, iov, len > 0 ? 2 : 1);
}

/* Milliseconds on the monotonic clock. */
static inline uint64_t co_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Fills `n` bytes at `b` with the body pattern of request `seq`. */
static inline void co_fill(unsigned char *b, size_t n, uint64_t seq)
{
    size_t i;

    for (i = 0; i < n; i++)
        b[i] = (unsigned char)(seq * 31 + i);
}

/* A coroutine body (co_spawn) that answers request `arg` (a coho_tdp_req_t, freed here) with
 * the request's `arg` body bytes of co_fill's pattern for its seq, after type >> 8 ms when
 * type & 1. A frame whose header does not decode is a failed check. */
static inline void co_sock_answer(void *arg)
{
    coho_tdp_req_t *rq = arg;
    unsigned char hdr[COHO_SOCK_HDR_LEN];
    coho_sock_hdr_t h;
    unsigned char *body;

    if (!CO_CHECK_EQ(coho_cbuf_read(&rq->frame, hdr, sizeof(hdr)), (ssize_t)sizeof(hdr)) ||
        !CO_CHECK_EQ(coho_sock_hdr_decode(hdr, &h), 0)) {
        coho_tdp_req_free(rq);
        return;
    }
    if (h.type & 1u)
        coho_sleep_ms(h.type >> 8); /* test knob: the client asks for a delay */
    body = malloc(h.arg + 1u);
    if (CO_CHECK(body != NULL)) {
        co_fill(body, h.arg, h.seq);
        co_sock_reply(rq, h, body, h.arg);
    }
    free(body);
    coho_tdp_req_free(rq);
}

/* Whether `resp` is the response to request `seq` with `want` body bytes of co_fill's pattern;
 * the first thing that differs is a failed check. */
static inline bool co_sock_resp_is(coho_cbuf_t *resp, uint64_t seq, uint32_t want)
{
    unsigned char hdr[COHO_SOCK_HDR_LEN];
    unsigned char *body = malloc(want + 1u), *exp = malloc(want + 1u);
    coho_sock_hdr_t h;
    bool ok = CO_CHECK(body != NULL && exp != NULL);

    coho_cbuf_seek(resp, 0, SEEK_SET);
    ok = ok && CO_CHECK_EQ(coho_cbuf_len(resp), COHO_SOCK_HDR_LEN + want);
    ok = ok && CO_CHECK_EQ(coho_cbuf_read(resp, hdr, sizeof(hdr)), (ssize_t)sizeof(hdr));
    ok = ok && CO_CHECK_EQ(coho_sock_hdr_decode(hdr, &h), 0);
    ok = ok && CO_CHECK(h.type & COHO_SOCK_RESPONSE);
    ok = ok && CO_CHECK_EQ(h.seq, seq);
    ok = ok && CO_CHECK_EQ(h.body_len, want);
    ok = ok && CO_CHECK_EQ(coho_cbuf_read(resp, body, want), (ssize_t)want);
    if (ok) {
        co_fill(exp, want, seq);
        ok = CO_CHECK(memcmp(body, exp, want) == 0);
    }
    free(body);
    free(exp);
    return ok;
}

/* Opens a socket_ext listen pool on a loopback port that reads `framer`'s frames and hands
 * each request to on_req(rq, user) into *server, then a client pool of `conns` connections to
 * it into *client; *addr gets the server's address. A pool that fails to open is a failed
 * check (and NULL). */
static inline void co_tdp_pair_open(coho_tdp_framer_t *framer,
                                    void (*on_req)(coho_tdp_req_t *rq, void *user), void *user,
                                    unsigned conns, coho_tdp_pool_t **server,
                                    coho_tdp_pool_t **client, struct sockaddr_in *addr)
{
    coho_tdp_opts_t o;

    coho_tdp_opts_init(&o);
    o.framers[0] = framer;
    o.framer_count = 1;
    o.on_req = on_req;
    o.user = user;
    addr->sin_family = AF_INET;
    addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    *server = coho_tdp_listen((struct sockaddr *)addr, sizeof(*addr), &o);
    CO_CHECK(*server != NULL);
    addr->sin_port = htons(coho_tdp_local_port(*server));
    coho_tdp_opts_init(&o);
    o.framers[0] = framer;
    o.framer_count = 1;
    o.conn_count = conns;
    *client = coho_tdp_connect((struct sockaddr *)addr, sizeof(*addr), &o);
    CO_CHECK(*client != NULL);
}

/* Closes the pools co_tdp_pair_open opened (a server the test already closed is NULL). */
static inline void co_tdp_pair_close(coho_tdp_pool_t *server, coho_tdp_pool_t *client)
{
    CO_CHECK_EQ(coho_tdp_close(client), 0);
    if (server != NULL)
        CO_CHECK_EQ(coho_tdp_close(server), 0);
}

#endif /* COHO_TEST_UNIT_SYSCALL_HOOK_SOCKET_EXT_CHECK_H */
