/* SPDX-License-Identifier: MIT */
/* coho_sched_get_stats: the counts follow spawns, daemons, finishing and reaping, so a program
 * can tell that nothing of its own is left running; the counters (switches, parks by reason,
 * wakes, polls, timer fires) move with what the scheduler does, and only those that should. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <coho.h>

#include "coroutine/internal.h"
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
    /* Waits for the three to finish (a condition, not a fixed sleep: under a sanitizer on a
     * loaded machine the thread may be off the CPU for longer than the sleepers' 5 ms). */
    for (int i = 0; i < 60000; i++) {
        coho_sched_stats_t st;

        CO_CHECK_INT(coho_sched_get_stats(sched, &st), 0);
        if (st.unfinished == 1)
            break;
        coho_sleep_ms(1);
    }
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

/* ---- counters ---- */

static coho_sched_stats_t stats_now(void)
{
    coho_sched_stats_t st;

    memset(&st, 0xff, sizeof(st));
    CO_CHECK_INT(coho_sched_get_stats(sched, &st), 0);
    return st;
}

/* The parks_* deltas between two reads, in the order io, sleep, sync, join, other. */
static void expect_parks(const coho_sched_stats_t *a, const coho_sched_stats_t *b, int line,
                         uint64_t io, uint64_t sleep, uint64_t sync, uint64_t join, uint64_t other)
{
    uint64_t got[5] = {b->parks_io - a->parks_io, b->parks_sleep - a->parks_sleep,
                       b->parks_sync - a->parks_sync, b->parks_join - a->parks_join,
                       b->parks_other - a->parks_other};
    uint64_t want[5] = {io, sleep, sync, join, other};

    if (memcmp(got, want, sizeof(got)) != 0)
        co_record(line,
                  "parks io/sleep/sync/join/other moved by %llu/%llu/%llu/%llu/%llu, "
                  "expected %llu/%llu/%llu/%llu/%llu",
                  (unsigned long long)got[0], (unsigned long long)got[1],
                  (unsigned long long)got[2], (unsigned long long)got[3],
                  (unsigned long long)got[4], (unsigned long long)io, (unsigned long long)sleep,
                  (unsigned long long)sync, (unsigned long long)join, (unsigned long long)other);
}

static void yield_ten(void *arg)
{
    int i;

    (void)arg;
    for (i = 0; i < 10; i++)
        coho_yield();
}

static void sem_poster(void *arg)
{
    coho_yield();
    CO_CHECK_INT(coho_sem_post(arg), 0);
}

/* Whether fd_writer's write parked: with COHO_BACKEND=io_uring and COHO_URING_OPS=submit a write
 * is submitted as a ring operation without a try, and its wait for the completion is a park
 * for io (the only coroutine that runs meanwhile, the reader, is parked already). */
static uint64_t writer_parks;

static void fd_writer(void *arg)
{
    int fd = *(int *)arg;
    coho_sched_stats_t a, b;

    coho_yield();
    a = stats_now();
    CO_CHECK_INT(write(fd, "x", 1), 1);
    b = stats_now();
    writer_parks = b.parks_io - a.parks_io;
}

struct other_wait {
    uint64_t id;
    uint64_t token;
};

static void other_waker(void *arg)
{
    struct other_wait *w = arg;

    coho_yield();
    CO_CHECK_INT(coho__co_wake(w->id, w->token, 0), 0);
}

static void counters_move_with_what_the_scheduler_does_co(void *arg)
{
    coho_sched_stats_t a, b;
    coho_sem_t sem;
    struct other_wait w;
    uint64_t id;
    int fds[2];
    char c;

    (void)arg;
    /* Switches: ten yields of a child, its start and the joiner's return. */
    a = stats_now();
    id = coho_spawn(sched, yield_ten, NULL);
    b = stats_now();
    CO_CHECK_INT(b.ready, a.ready + 1);
    CO_CHECK_INT(coho_join(id, -1), 0);
    b = stats_now();
    CO_CHECK(b.switches >= a.switches + 11);
    expect_parks(&a, &b, __LINE__, 0, 0, 0, 1, 0);
    CO_CHECK_INT(b.wakes, a.wakes + 1);

    /* A sleep: a park for sleep, a timer firing, a wake, and a poll (nothing else is ready). */
    a = stats_now();
    CO_CHECK_INT(coho_sleep_ms(1), 0);
    b = stats_now();
    expect_parks(&a, &b, __LINE__, 0, 1, 0, 0, 0);
    CO_CHECK(b.timer_fires >= a.timer_fires + 1);
    CO_CHECK_INT(b.wakes, a.wakes + 1);
    CO_CHECK(b.polls >= a.polls + 1);
    CO_CHECK(b.switches >= a.switches + 1);

    /* A semaphore: a park for sync, ended by the poster. */
    CO_CHECK_INT(coho_sem_init(&sem, 0), 0);
    a = stats_now();
    CO_CHECK(coho_spawn(sched, sem_poster, &sem) != 0);
    CO_CHECK_INT(coho_sem_wait(&sem), 0);
    b = stats_now();
    expect_parks(&a, &b, __LINE__, 0, 0, 1, 0, 0);
    CO_CHECK_INT(b.wakes, a.wakes + 1);
    CO_CHECK_INT(coho_sem_destroy(&sem), 0);
    coho_sleep_ms(1); /* the poster finishes */

    /* A recv on an empty socket: a park for io, ended by a poll that saw the data. */
    CO_CHECK_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    a = stats_now();
    CO_CHECK(coho_spawn(sched, fd_writer, &fds[1]) != 0);
    CO_CHECK_INT(recv(fds[0], &c, 1, 0), 1);
    coho_sleep_ms(1); /* the writer finishes (its write may be a ring operation) */
    b = stats_now();
    /* The recv's park, and the writer's if its write went through the ring. */
    expect_parks(&a, &b, __LINE__, 1 + writer_parks, 1, 0, 0, 0);
    CO_CHECK_INT(b.wakes, a.wakes + 2 + writer_parks);
    CO_CHECK(b.polls >= a.polls + 1);
    close(fds[0]);
    close(fds[1]);
    coho_sleep_ms(1);

    /* A wait labelled by code above libcoho: other. */
    a = stats_now();
    w.id = coho_self();
    w.token = coho__co_block_prepare();
    coho__co_wait_note("a wait of some library", -1);
    CO_CHECK(coho_spawn(sched, other_waker, &w) != 0);
    CO_CHECK_INT(coho__co_block(-1), 0);
    b = stats_now();
    expect_parks(&a, &b, __LINE__, 0, 0, 0, 0, 1);
    CO_CHECK_INT(b.wakes, a.wakes + 1);
    coho_sleep_ms(1);
    co_ended();
}

static void counters_move_with_what_the_scheduler_does(void **state)
{
    coho_sched_stats_t st;

    (void)state;
    run_test_co(counters_move_with_what_the_scheduler_does_co);
    /* A new scheduler starts from zero. */
    sched = coho_sched_create(NULL);
    assert_non_null(sched);
    assert_int_equal(coho_sched_get_stats(sched, &st), 0);
    assert_int_equal(st.switches, 0);
    assert_int_equal(st.parks_io + st.parks_sleep + st.parks_sync + st.parks_join + st.parks_other,
                     0);
    assert_int_equal(st.wakes, 0);
    assert_int_equal(st.polls, 0);
    assert_int_equal(st.timer_fires, 0);
    assert_int_equal(st.ready, 0);
    coho_sched_destroy(sched);
    sched = NULL;
}

/* Every wait label of libcoho (coroutine/README.md, "Live dump") is counted under its reason. */
static const struct {
    const char *label;
    int reason; /* 0 io, 1 sleep, 2 sync, 3 join, 4 other */
} label_reasons[] = {
    {"read fd=", 0},
    {"write fd=", 0},
    {"read/write fd=", 0},
    {"poll nfds=", 0},
    {"fd read lock fd=", 0},
    {"fd write lock fd=", 0},
    {"dns", 0},
    {"sleep", 1},
    {"mutex@", 2},
    {"cond@", 2},
    {"sem@", 2},
    {"waitgroup@", 2},
    {"chan send@", 2},
    {"chan recv@", 2},
    {"join", 3},
    {"tdp response req=", 4},
    {"s", 4},
    {"", 4},
    {NULL, 4},
};

static void labels_count_under_their_reason_co(void *arg)
{
    size_t i;

    (void)arg;
    for (i = 0; i < sizeof(label_reasons) / sizeof(label_reasons[0]); i++) {
        coho_sched_stats_t a, b;
        struct other_wait w;
        uint64_t want[5] = {0, 0, 0, 0, 0};

        a = stats_now();
        w.id = coho_self();
        w.token = coho__co_block_prepare();
        if (label_reasons[i].label != NULL)
            coho__co_wait_note(label_reasons[i].label, -1);
        CO_CHECK(coho_spawn(sched, other_waker, &w) != 0);
        CO_CHECK_INT(coho__co_block(-1), 0);
        b = stats_now();
        want[label_reasons[i].reason] = 1;
        if (b.parks_io - a.parks_io != want[0] || b.parks_sleep - a.parks_sleep != want[1] ||
            b.parks_sync - a.parks_sync != want[2] || b.parks_join - a.parks_join != want[3] ||
            b.parks_other - a.parks_other != want[4])
            co_record(__LINE__, "label \"%s\" not counted under reason %d",
                      label_reasons[i].label != NULL ? label_reasons[i].label : "(none)",
                      label_reasons[i].reason);
        coho_yield(); /* the waker finishes */
    }
    co_ended();
}

static void labels_count_under_their_reason(void **state)
{
    (void)state;
    run_test_co(labels_count_under_their_reason_co);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(stats_count_user_daemon_and_finished_coroutines),
        cmocka_unit_test(counters_move_with_what_the_scheduler_does),
        cmocka_unit_test(labels_count_under_their_reason),
        cmocka_unit_test(stats_outside_coroutines_count_what_was_spawned),
        cmocka_unit_test(stats_with_null_arguments_fail_with_einval),
    };

    return coho_test_main("sched_stats", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
