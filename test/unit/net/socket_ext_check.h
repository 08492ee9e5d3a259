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

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

#endif /* COHO_TEST_UNIT_SYSCALL_HOOK_SOCKET_EXT_CHECK_H */
