/* SPDX-License-Identifier: MIT */
/* coho_sched_get_stats: the counts follow spawns, daemons, finishing and reaping, so a program
 * can tell that nothing of its own is left running. */
#include <errno.h>

#include <coho.h>

#include "test/support/cmocka_main.h"

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
}

static void expect_stats(size_t coroutines, size_t unfinished, size_t user)
{
    coho_sched_stats_t st;

    assert_int_equal(coho_sched_get_stats(sched, &st), 0);
    assert_int_equal(st.coroutines, coroutines);
    assert_int_equal(st.unfinished, unfinished);
    assert_int_equal(st.user, user);
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
    assert_true(user != 0 && daemon != 0 && detached != 0);
    expect_stats(4, 4, 3);
    coho_sleep_ms(30);
    /* All three finished: the detached one is gone, the joinable ones wait to be reaped. */
    expect_stats(3, 1, 1);
    assert_int_equal(coho_join(user, -1), 0);
    expect_stats(2, 1, 1);
    assert_int_equal(coho_join(daemon, -1), 0);
    expect_stats(1, 1, 1);
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
