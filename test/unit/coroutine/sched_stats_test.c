/* SPDX-License-Identifier: MIT */
/* coho_sched_get_stats: the counts follow spawns, daemons, finishing and reaping, so a program
 * can tell that nothing of its own is left running. */
#include <errno.h>
#include <stdio.h>

#include <coho.h>

#include "test/support/cmocka_main.h"

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

static void sleeper(void *arg)
{
    coho_sleep_ms((uint64_t)(uintptr_t)arg);
}

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

/* Checks the scheduler's counts; it runs in coroutines too, hence CO_CHECK. */
static void expect_stats(size_t coroutines, size_t unfinished, size_t user)
{
    coho_sched_stats_t st;

    CO_CHECK_INT(coho_sched_get_stats(sched, &st), 0);
    CO_CHECK_INT(st.coroutines, coroutines);
    CO_CHECK_INT(st.unfinished, unfinished);
    CO_CHECK_INT(st.user, user);
}

static void stats_count_user_daemon_and_finished_coroutines_co(void *arg)
{
    coho_spawn_opts_t o;
    uint64_t user, daemon, detached;

    (void)arg;
    expect_stats(1, 1, 1); /* the caller */
    user = coho_spawn(sched, sleeper, (void *)(uintptr_t)5);
    coho_spawn_opts_init(&o);
    o.daemon = true;
    daemon = coho_spawn_ex(sched, sleeper, (void *)(uintptr_t)5, &o);
    coho_spawn_opts_init(&o);
    o.detached = true;
    detached = coho_spawn_ex(sched, sleeper, (void *)(uintptr_t)5, &o);
    CO_CHECK(user != 0 && daemon != 0 && detached != 0);
    expect_stats(4, 4, 3);
    coho_sleep_ms(30);
    /* All three finished: the detached one is gone, the joinable ones wait to be reaped. */
    expect_stats(3, 1, 1);
    CO_CHECK_INT(coho_join(user, -1), 0);
    expect_stats(2, 1, 1);
    CO_CHECK_INT(coho_join(daemon, -1), 0);
    expect_stats(1, 1, 1);
    co_ended();
}

static void stats_count_user_daemon_and_finished_coroutines(void **state)
{
    (void)state;
    run_test_co(stats_count_user_daemon_and_finished_coroutines_co);
}

static void stats_outside_coroutines_count_what_was_spawned(void **state)
{
    (void)state;
    sched = coho_sched_create(NULL);
    assert_non_null(sched);
    expect_stats(0, 0, 0);
    assert_int_not_equal(coho_spawn(sched, sleeper, (void *)(uintptr_t)1), 0);
    expect_stats(1, 1, 1);
    assert_int_equal(coho_sched_run(sched), 0);
    expect_stats(1, 0, 0); /* finished, never joined */
    coho_sched_destroy(sched);
    sched = NULL;
    expect_co(0);
}

static void stats_with_null_arguments_fail_with_einval(void **state)
{
    coho_sched_stats_t st;

    (void)state;
    errno = 0;
    assert_int_equal(coho_sched_get_stats(NULL, &st), -1);
    assert_int_equal(errno, EINVAL);
    sched = coho_sched_create(NULL);
    assert_non_null(sched);
    errno = 0;
    assert_int_equal(coho_sched_get_stats(sched, NULL), -1);
    assert_int_equal(errno, EINVAL);
    coho_sched_destroy(sched);
    sched = NULL;
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(stats_count_user_daemon_and_finished_coroutines),
        cmocka_unit_test(stats_outside_coroutines_count_what_was_spawned),
        cmocka_unit_test(stats_with_null_arguments_fail_with_einval),
    };

    return coho_test_main("sched_stats", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
