/* SPDX-License-Identifier: MIT */
/* The exported park primitive (coroutine/park.h) that net/ builds its waits on, and
 * coho_sched_current(): a wake delivers its result once, a stale token is ignored, a timeout
 * and a cancellation end the park, and the calls behave outside coroutines. */
#include <errno.h>
#include <stdint.h>

#include <coho.h>

#include "coroutine/park.h"
#include "test/support/cmocka_main.h"

/* Coroutine bodies record what they see; the case asserts after coho_sched_run returned (a
 * CMocka assertion failing on a coroutine's stack would longjmp across stacks). */
typedef struct park_rec {
    uint64_t id;
    uint64_t token;
    int64_t timeout_ms;
    int result;
    int resumed;
    int stale_rc;
    int wake_rc;
    coho_sched_t *seen_sched;
} park_rec_t;

static void parker(void *arg)
{
    park_rec_t *r = arg;

    r->id = coho_self();
    r->seen_sched = coho_sched_current();
    r->token = coho__park_prepare();
    coho__park_note("test park@", (int64_t)(intptr_t)r);
    r->result = coho__park(r->timeout_ms);
    r->resumed++;
}

static void waker(void *arg)
{
    park_rec_t *r = arg;

    coho_yield(); /* the parker parks first */
    r->stale_rc = coho__park_wake(r->id, r->token + 1, 11);
    r->wake_rc = coho__park_wake(r->id, r->token, 42);
    (void)coho__park_wake(r->id, r->token, 43); /* a second wake of the same wait: ignored */
}

static void park_wake_delivers_its_result_once_and_ignores_a_stale_token(void **state)
{
    coho_sched_t *s = coho_sched_create(NULL);
    park_rec_t r = {.timeout_ms = -1};

    (void)state;
    assert_non_null(s);
    assert_ptr_equal(coho_sched_current(), s);
    assert_int_not_equal(coho_spawn(s, parker, &r), 0);
    assert_int_not_equal(coho_spawn(s, waker, &r), 0);
    assert_int_equal(coho_sched_run(s), 0);
    assert_int_equal(r.resumed, 1);
    assert_int_equal(r.result, 42);
    assert_int_equal(r.stale_rc, -ESTALE);
    assert_int_equal(r.wake_rc, 0);
    assert_ptr_equal(r.seen_sched, s);
    coho_sched_destroy(s);
    assert_null(coho_sched_current());
}

static void park_with_timeout_returns_etimedout(void **state)
{
    coho_sched_t *s = coho_sched_create(NULL);
    park_rec_t r = {.timeout_ms = 5};

    (void)state;
    assert_non_null(s);
    assert_int_not_equal(coho_spawn(s, parker, &r), 0);
    assert_int_equal(coho_sched_run(s), 0);
    assert_int_equal(r.resumed, 1);
    assert_int_equal(r.result, -ETIMEDOUT);
    coho_sched_destroy(s);
}

static void canceller(void *arg)
{
    park_rec_t *r = arg;

    coho_yield();
    r->wake_rc = coho_cancel(r->id);
}

static void park_ends_with_ecanceled_when_the_coroutine_is_cancelled(void **state)
{
    coho_sched_t *s = coho_sched_create(NULL);
    park_rec_t r = {.timeout_ms = -1};

    (void)state;
    assert_non_null(s);
    assert_int_not_equal(coho_spawn(s, parker, &r), 0);
    assert_int_not_equal(coho_spawn(s, canceller, &r), 0);
    assert_int_equal(coho_sched_run(s), 0);
    assert_int_equal(r.wake_rc, 0);
    assert_int_equal(r.result, -ECANCELED);
    coho_sched_destroy(s);
}

static void park_outside_a_coroutine_is_eperm(void **state)
{
    (void)state;
    assert_null(coho_sched_current());
    assert_int_equal(coho__park_prepare(), 0);
    coho__park_note("nothing", -1); /* a no-op */
    assert_int_equal(coho__park(0), -EPERM);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(park_wake_delivers_its_result_once_and_ignores_a_stale_token),
        cmocka_unit_test(park_with_timeout_returns_etimedout),
        cmocka_unit_test(park_ends_with_ecanceled_when_the_coroutine_is_cancelled),
        cmocka_unit_test(park_outside_a_coroutine_is_eperm),
    };

    return coho_test_main("park", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
