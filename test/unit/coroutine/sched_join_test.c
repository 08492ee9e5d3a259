/* SPDX-License-Identifier: MIT */
/* coho_join and coho_detach: reaping, the one-joiner rule, timeouts, cancellation, and the
 * errno of every misuse (DESIGN.md "Threads and lifetimes"). */
#include <errno.h>
#include <stdio.h>
#include <time.h>

#include <coho.h>

#include "test/support/cmocka_main.h"

static uint64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- checks made off the case's stack ----
 * A failing CMocka assertion longjmps to the case's frame: from a coroutine body that jump
 * crosses stacks and skips the scheduler's frames, and an assertion in a body that never runs
 * proves nothing. Bodies record their checks with CO_CHECK() and CO_CHECK_INT() and count
 * their ends with co_ended(); the case calls expect_co() once the scheduler has returned. */
static struct {
    unsigned failed; /* checks that failed */
    unsigned ended;  /* bodies that ran to their end */
    int line;        /* of the first failed check */
    char what[256];
} co_checks;

#define CO_CHECK(cond)     co_check((cond), __LINE__, #cond)
#define CO_CHECK_INT(a, b) co_check_int((long long)(a), (long long)(b), __LINE__, #a " == " #b)

static void co_record(int line, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void co_record(int line, const char *fmt, ...)
{
    va_list ap;

    if (__atomic_fetch_add(&co_checks.failed, 1, __ATOMIC_RELAXED) != 0)
        return;
    co_checks.line = line;
    va_start(ap, fmt);
    vsnprintf(co_checks.what, sizeof(co_checks.what), fmt, ap);
    va_end(ap);
}

static bool co_check(bool ok, int line, const char *what)
{
    if (!ok)
        co_record(line, "%s", what);
    return ok;
}

static bool co_check_int(long long got, long long want, int line, const char *what)
{
    if (got != want)
        co_record(line, "%s: got %lld", what, got);
    return got == want;
}

static void co_ended(void)
{
    __atomic_fetch_add(&co_checks.ended, 1, __ATOMIC_RELAXED);
}

/* Asserts that no recorded check failed and that `ended` bodies ran to their end, then clears
 * the record. */
static void expect_co(unsigned ended)
{
    unsigned failed = co_checks.failed, n = co_checks.ended;

    co_checks.failed = 0;
    co_checks.ended = 0;
    if (failed != 0)
        fail_msg("%u check(s) failed off the case's stack; the first, line %d: %s", failed,
                 co_checks.line, co_checks.what);
    assert_int_equal(n, ended);
}

static coho_sched_t *sched;

static int child_done;

static void child_sleeps(void *arg)
{
    coho_sleep_ms((uint64_t)(uintptr_t)arg);
    child_done = 1;
}

static void noop(void *arg)
{
    (void)arg;
}

/* Runs `fn` as the one test coroutine of a fresh scheduler; it must run to its end. */
static void run_test_co(void (*fn)(void *))
{
    sched = coho_sched_create(NULL);
    assert_non_null(sched);
    assert_int_not_equal(coho_spawn(sched, fn, NULL), 0);
    assert_int_equal(coho_sched_run(sched), 0);
    coho_sched_destroy(sched);
    sched = NULL;
    expect_co(1);
}

static void join_waits_for_the_coroutine_then_reaps_it_co(void *arg)
{
    uint64_t id = coho_spawn(sched, child_sleeps, (void *)(uintptr_t)20);

    (void)arg;
    child_done = 0;
    CO_CHECK_INT(coho_join(id, -1), 0);
    CO_CHECK_INT(child_done, 1);
    errno = 0;
    CO_CHECK_INT(coho_join(id, -1), -1); /* reaped: the id is stale now */
    CO_CHECK_INT(errno, ESRCH);
    co_ended();
}

static void join_waits_for_the_coroutine_then_reaps_it(void **state)
{
    (void)state;
    run_test_co(join_waits_for_the_coroutine_then_reaps_it_co);
}

static void join_of_a_finished_coroutine_returns_at_once_co(void *arg)
{
    uint64_t id = coho_spawn(sched, noop, NULL);
    uint64_t t0;

    (void)arg;
    coho_yield(); /* the child runs and finishes */
    t0 = mono_ms();
    CO_CHECK_INT(coho_join(id, 0), 0);
    CO_CHECK(mono_ms() - t0 < 100);
    co_ended();
}

static void join_of_a_finished_coroutine_returns_at_once(void **state)
{
    (void)state;
    run_test_co(join_of_a_finished_coroutine_returns_at_once_co);
}

static void join_on_self_fails_with_edeadlk_co(void *arg)
{
    (void)arg;
    errno = 0;
    CO_CHECK_INT(coho_join(coho_self(), -1), -1);
    CO_CHECK_INT(errno, EDEADLK);
    co_ended();
}

static void join_on_self_fails_with_edeadlk(void **state)
{
    (void)state;
    run_test_co(join_on_self_fails_with_edeadlk_co);
}

static void join_unknown_id_fails_with_esrch_co(void *arg)
{
    (void)arg;
    errno = 0;
    CO_CHECK_INT(coho_join(0, -1), -1);
    CO_CHECK_INT(errno, ESRCH);
    errno = 0;
    CO_CHECK_INT(coho_join(0x7777777700000042ull, -1), -1);
    CO_CHECK_INT(errno, ESRCH);
    co_ended();
}

static void join_unknown_id_fails_with_esrch(void **state)
{
    (void)state;
    run_test_co(join_unknown_id_fails_with_esrch_co);
}

static uint64_t target_id;
static int first_join_rc = -2;

static void first_joiner(void *arg)
{
    (void)arg;
    first_join_rc = coho_join(target_id, -1);
}

static void second_joiner_fails_with_einval_co(void *arg)
{
    (void)arg;
    target_id = coho_spawn(sched, child_sleeps, (void *)(uintptr_t)30);
    coho_spawn(sched, first_joiner, NULL);
    coho_yield(); /* the first joiner parks on the target */
    errno = 0;
    CO_CHECK_INT(coho_join(target_id, -1), -1);
    CO_CHECK_INT(errno, EINVAL);
    errno = 0;
    CO_CHECK_INT(coho_detach(target_id), -1); /* nor can it be detached under a joiner */
    CO_CHECK_INT(errno, EINVAL);
    co_ended();
}

static void second_joiner_fails_with_einval(void **state)
{
    (void)state;
    first_join_rc = -2;
    run_test_co(second_joiner_fails_with_einval_co);
    assert_int_equal(first_join_rc, 0);
}

static void join_timeout_fails_with_etimedout_and_keeps_it_joinable_co(void *arg)
{
    uint64_t id = coho_spawn(sched, child_sleeps, (void *)(uintptr_t)200);
    uint64_t t0 = mono_ms();

    (void)arg;
    errno = 0;
    CO_CHECK_INT(coho_join(id, 20), -1);
    CO_CHECK_INT(errno, ETIMEDOUT);
    CO_CHECK(mono_ms() - t0 + 1 >= 20);
    CO_CHECK(mono_ms() - t0 < 190);
    errno = 0;
    CO_CHECK_INT(coho_join(id, 0), -1); /* 0 only checks */
    CO_CHECK_INT(errno, ETIMEDOUT);
    CO_CHECK_INT(coho_join(id, -1), 0);
    co_ended();
}

static void join_timeout_fails_with_etimedout_and_keeps_it_joinable(void **state)
{
    (void)state;
    run_test_co(join_timeout_fails_with_etimedout_and_keeps_it_joinable_co);
}

static void join_of_a_detached_coroutine_fails_with_einval_co(void *arg)
{
    coho_spawn_opts_t o;
    uint64_t a, b;

    (void)arg;
    coho_spawn_opts_init(&o);
    o.detached = true;
    a = coho_spawn_ex(sched, child_sleeps, (void *)(uintptr_t)10, &o);
    b = coho_spawn(sched, child_sleeps, (void *)(uintptr_t)10);
    CO_CHECK_INT(coho_detach(b), 0);
    errno = 0;
    CO_CHECK_INT(coho_detach(b), -1);
    CO_CHECK_INT(errno, EINVAL);
    errno = 0;
    CO_CHECK_INT(coho_join(a, -1), -1);
    CO_CHECK_INT(errno, EINVAL);
    errno = 0;
    CO_CHECK_INT(coho_join(b, -1), -1);
    CO_CHECK_INT(errno, EINVAL);
    coho_sleep_ms(30); /* both finish and are reaped at once: the ids go stale */
    errno = 0;
    CO_CHECK_INT(coho_join(a, -1), -1);
    CO_CHECK_INT(errno, ESRCH);
    errno = 0;
    CO_CHECK_INT(coho_detach(b), -1);
    CO_CHECK_INT(errno, ESRCH);
    co_ended();
}

static void join_of_a_detached_coroutine_fails_with_einval(void **state)
{
    (void)state;
    run_test_co(join_of_a_detached_coroutine_fails_with_einval_co);
}

static void detach_of_a_finished_coroutine_reaps_it(void **state)
{
    uint64_t id;

    (void)state;
    sched = coho_sched_create(NULL);
    assert_non_null(sched);
    id = coho_spawn(sched, noop, NULL);
    assert_int_equal(coho_sched_run(sched), 0);
    assert_int_equal(coho_detach(id), 0); /* from outside a coroutine too */
    errno = 0;
    assert_int_equal(coho_detach(id), -1);
    assert_int_equal(errno, ESRCH);
    errno = 0;
    assert_int_equal(coho_cancel(id), -1);
    assert_int_equal(errno, ESRCH);
    coho_sched_destroy(sched);
}

static int joiner_errno;

static void cancelled_joiner(void *arg)
{
    errno = 0;
    if (coho_join((uint64_t)(uintptr_t)arg, -1) == -1)
        joiner_errno = errno;
}

static void cancelling_a_joiner_fails_its_join_with_ecanceled_co(void *arg)
{
    uint64_t target = coho_spawn(sched, child_sleeps, (void *)(uintptr_t)50);
    uint64_t joiner = coho_spawn(sched, cancelled_joiner, (void *)(uintptr_t)target);

    (void)arg;
    coho_yield();
    CO_CHECK_INT(coho_cancel(joiner), 0);
    coho_yield();
    CO_CHECK_INT(joiner_errno, ECANCELED);
    CO_CHECK_INT(coho_join(joiner, -1), 0);
    CO_CHECK_INT(coho_join(target, -1), 0); /* the target is still joinable */
    co_ended();
}

static void cancelling_a_joiner_fails_its_join_with_ecanceled(void **state)
{
    (void)state;
    joiner_errno = 0;
    run_test_co(cancelling_a_joiner_fails_its_join_with_ecanceled_co);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(join_waits_for_the_coroutine_then_reaps_it),
        cmocka_unit_test(join_of_a_finished_coroutine_returns_at_once),
        cmocka_unit_test(join_on_self_fails_with_edeadlk),
        cmocka_unit_test(join_unknown_id_fails_with_esrch),
        cmocka_unit_test(second_joiner_fails_with_einval),
        cmocka_unit_test(join_timeout_fails_with_etimedout_and_keeps_it_joinable),
        cmocka_unit_test(join_of_a_detached_coroutine_fails_with_einval),
        cmocka_unit_test(detach_of_a_finished_coroutine_reaps_it),
        cmocka_unit_test(cancelling_a_joiner_fails_its_join_with_ecanceled),
    };

    return coho_test_main("sched_join", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
