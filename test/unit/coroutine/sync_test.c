/* SPDX-License-Identifier: MIT */
/* Tests of the single-thread sync primitives: mutex handoff and FIFO order, condition variable
 * signal/broadcast/timeout, semaphore, wait group, cancellation and misuse answers. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <coho.h>

#include "test/support/cmocka_main.h"

/* ---- helpers ---- */

static uint64_t now_ms(void)
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

/* Runs fn(arg) as the one root coroutine of a fresh scheduler, until every coroutine ends;
 * `ended` coroutine bodies must have run to their end. */
static void run_root(void (*fn)(void *), void *arg, unsigned ended)
{
    coho_sched_t *s = coho_sched_create(NULL);

    assert_non_null(s);
    assert_true(coho_spawn(s, fn, arg) != 0);
    assert_int_equal(coho_sched_run(s), 0);
    coho_sched_destroy(s);
    expect_co(ended);
}

static coho_sched_t *current_sched;

static uint64_t spawn(void (*fn)(void *), void *arg)
{
    uint64_t id = coho_spawn(current_sched, fn, arg);

    CO_CHECK(id != 0);
    return id;
}

static void run_root_with_sched(void (*fn)(void *), void *arg, unsigned ended)
{
    current_sched = coho_sched_create(NULL);
    assert_non_null(current_sched);
    assert_true(coho_spawn(current_sched, fn, arg) != 0);
    assert_int_equal(coho_sched_run(current_sched), 0);
    coho_sched_destroy(current_sched);
    current_sched = NULL;
    expect_co(ended);
}

/* An order log shared by the coroutines of one test. */
static int order[64];
static int norder;

static void order_reset(void)
{
    memset(order, 0, sizeof(order));
    norder = 0;
}

/* ---- mutex ---- */

static void mutex_calls_outside_a_coroutine_fail_with_eperm(void **state)
{
    coho_mutex_t m;

    (void)state;
    coho_mutex_init(&m);
    errno = 0;
    assert_int_equal(coho_mutex_lock(&m), -1);
    assert_int_equal(errno, EPERM);
    errno = 0;
    assert_int_equal(coho_mutex_trylock(&m), -1);
    assert_int_equal(errno, EPERM);
    errno = 0;
    assert_int_equal(coho_mutex_unlock(&m), -1);
    assert_int_equal(errno, EPERM);
    assert_int_equal(coho_mutex_destroy(&m), 0);
}

static coho_mutex_t g_mutex;
static int in_section;
static int max_in_section;
static int section_entries;

static void section_worker(void *arg)
{
    int rounds = (int)(intptr_t)arg;

    for (int i = 0; i < rounds; i++) {
        CO_CHECK_INT(coho_mutex_lock(&g_mutex), 0);
        in_section++;
        if (in_section > max_in_section)
            max_in_section = in_section;
        section_entries++;
        coho_yield(); /* parks others on the mutex while we hold it */
        coho_yield();
        in_section--;
        CO_CHECK_INT(coho_mutex_unlock(&g_mutex), 0);
        coho_yield();
    }
    co_ended();
}

static void mutex_excludes_coroutines_that_yield_while_holding_it(void **state)
{
    (void)state;
    coho_mutex_init(&g_mutex);
    in_section = max_in_section = section_entries = 0;
    current_sched = coho_sched_create(NULL);
    assert_non_null(current_sched);
    for (int i = 0; i < 8; i++)
        assert_true(coho_spawn(current_sched, section_worker, (void *)(intptr_t)50) != 0);
    assert_int_equal(coho_sched_run(current_sched), 0);
    coho_sched_destroy(current_sched);
    expect_co(8);
    assert_int_equal(max_in_section, 1);
    assert_int_equal(section_entries, 8 * 50);
    assert_int_equal(coho_mutex_destroy(&g_mutex), 0);
}

static void fifo_locker(void *arg)
{
    CO_CHECK_INT(coho_mutex_lock(&g_mutex), 0);
    order[norder++] = (int)(intptr_t)arg;
    CO_CHECK_INT(coho_mutex_unlock(&g_mutex), 0);
    co_ended();
}

static void fifo_root(void *arg)
{
    (void)arg;
    CO_CHECK_INT(coho_mutex_lock(&g_mutex), 0);
    for (int i = 1; i <= 5; i++)
        spawn(fifo_locker, (void *)(intptr_t)i);
    coho_yield(); /* all five queue on the mutex, in spawn order */
    coho_yield();
    CO_CHECK_INT(coho_mutex_unlock(&g_mutex), 0);
    /* Handoff: the first waiter owns it now, so the unlocker cannot barge back in. */
    errno = 0;
    CO_CHECK_INT(coho_mutex_trylock(&g_mutex), -1);
    CO_CHECK_INT(errno, EBUSY);
    errno = 0;
    CO_CHECK_INT(coho_mutex_destroy(&g_mutex), -1);
    CO_CHECK_INT(errno, EBUSY);
    co_ended();
}

static void mutex_unlock_hands_off_to_waiters_in_fifo_order(void **state)
{
    (void)state;
    order_reset();
    coho_mutex_init(&g_mutex);
    run_root_with_sched(fifo_root, NULL, 6);
    assert_int_equal(norder, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(order[i], i + 1);
    assert_int_equal(coho_mutex_destroy(&g_mutex), 0);
}

static void trylock_root(void *arg)
{
    (void)arg;
    CO_CHECK_INT(coho_mutex_trylock(&g_mutex), 0);
    errno = 0;
    CO_CHECK_INT(coho_mutex_trylock(&g_mutex), -1);
    CO_CHECK_INT(errno, EBUSY);
    errno = 0;
    CO_CHECK_INT(coho_mutex_lock(&g_mutex), -1);
    CO_CHECK_INT(errno, EDEADLK);
    CO_CHECK_INT(coho_mutex_unlock(&g_mutex), 0);
    CO_CHECK_INT(coho_mutex_trylock(&g_mutex), 0);
    CO_CHECK_INT(coho_mutex_unlock(&g_mutex), 0);
    co_ended();
}

static void mutex_trylock_on_held_mutex_fails_ebusy_and_relock_fails_edeadlk(void **state)
{
    (void)state;
    coho_mutex_init(&g_mutex);
    run_root(trylock_root, NULL, 1);
    assert_int_equal(coho_mutex_destroy(&g_mutex), 0);
}

static int cancel_result;
static int cancel_errno;

static void cancelled_locker(void *arg)
{
    (void)arg;
    errno = 0;
    cancel_result = coho_mutex_lock(&g_mutex);
    cancel_errno = errno;
}

static void cancel_root(void *arg)
{
    uint64_t victim;

    (void)arg;
    CO_CHECK_INT(coho_mutex_lock(&g_mutex), 0);
    victim = spawn(cancelled_locker, NULL);
    spawn(fifo_locker, (void *)(intptr_t)7);
    coho_yield(); /* both queue behind us */
    CO_CHECK_INT(coho_cancel(victim), 0);
    CO_CHECK_INT(coho_join(victim, -1), 0);
    CO_CHECK_INT(cancel_result, -1);
    CO_CHECK_INT(cancel_errno, ECANCELED);
    /* The cancelled waiter left the queue: the unlock goes to the next one. */
    CO_CHECK_INT(coho_mutex_unlock(&g_mutex), 0);
    co_ended();
}

static void mutex_lock_cancelled_while_waiting_fails_ecanceled_and_leaves_queue(void **state)
{
    (void)state;
    order_reset();
    cancel_result = 0;
    coho_mutex_init(&g_mutex);
    run_root_with_sched(cancel_root, NULL, 2);
    assert_int_equal(norder, 1);
    assert_int_equal(order[0], 7);
    assert_int_equal(coho_mutex_destroy(&g_mutex), 0);
}

static coho_mutex_t static_mutex = COHO_MUTEX_INITIALIZER;
static coho_cond_t static_cond = COHO_COND_INITIALIZER;

static void static_root(void *arg)
{
    (void)arg;
    CO_CHECK_INT(coho_mutex_lock(&static_mutex), 0);
    errno = 0;
    CO_CHECK_INT(coho_cond_timedwait_ms(&static_cond, &static_mutex, 1), -1);
    CO_CHECK_INT(errno, ETIMEDOUT);
    CO_CHECK_INT(coho_cond_signal(&static_cond), 0);
    CO_CHECK_INT(coho_mutex_unlock(&static_mutex), 0);
    co_ended();
}

static void static_initializers_give_a_usable_mutex_and_condvar(void **state)
{
    (void)state;
    run_root(static_root, NULL, 1);
    assert_int_equal(coho_cond_destroy(&static_cond), 0);
    assert_int_equal(coho_mutex_destroy(&static_mutex), 0);
}

/* ---- condition variable ---- */

static coho_cond_t g_cond;
static int ready_flag;

static void cond_waiter(void *arg)
{
    CO_CHECK_INT(coho_mutex_lock(&g_mutex), 0);
    while (!ready_flag)
        CO_CHECK_INT(coho_cond_wait(&g_cond, &g_mutex), 0);
    order[norder++] = (int)(intptr_t)arg;
    CO_CHECK_INT(coho_mutex_unlock(&g_mutex), 0);
    co_ended();
}

static void one_shot_waiter(void *arg)
{
    CO_CHECK_INT(coho_mutex_lock(&g_mutex), 0);
    CO_CHECK_INT(coho_cond_wait(&g_cond, &g_mutex), 0);
    order[norder++] = (int)(intptr_t)arg;
    CO_CHECK_INT(coho_mutex_unlock(&g_mutex), 0);
    co_ended();
}

static void signal_root(void *arg)
{
    (void)arg;
    for (int i = 1; i <= 4; i++)
        spawn(one_shot_waiter, (void *)(intptr_t)i);
    coho_yield();
    errno = 0;
    CO_CHECK_INT(coho_cond_destroy(&g_cond), -1);
    CO_CHECK_INT(errno, EBUSY);
    for (int i = 1; i <= 4; i++) {
        CO_CHECK_INT(coho_cond_signal(&g_cond), 0);
        coho_yield();
        coho_yield();
        /* exactly one waiter per signal, oldest first */
        CO_CHECK_INT(norder, i);
        CO_CHECK_INT(order[i - 1], i);
    }
    CO_CHECK_INT(coho_cond_signal(&g_cond), 0); /* nobody waits: a no-op */
    co_ended();
}

static void cond_signal_wakes_one_waiter_oldest_first(void **state)
{
    (void)state;
    order_reset();
    coho_mutex_init(&g_mutex);
    coho_cond_init(&g_cond);
    run_root_with_sched(signal_root, NULL, 5);
    assert_int_equal(norder, 4);
    assert_int_equal(coho_cond_destroy(&g_cond), 0);
    assert_int_equal(coho_mutex_destroy(&g_mutex), 0);
}

static void broadcast_root(void *arg)
{
    (void)arg;
    for (int i = 1; i <= 6; i++)
        spawn(cond_waiter, (void *)(intptr_t)i);
    coho_yield();
    CO_CHECK_INT(coho_mutex_lock(&g_mutex), 0);
    ready_flag = 1;
    CO_CHECK_INT(coho_cond_broadcast(&g_cond), 0);
    /* Woken waiters queue on the mutex we hold; none of them has run yet. */
    coho_yield();
    CO_CHECK_INT(norder, 0);
    CO_CHECK_INT(coho_mutex_unlock(&g_mutex), 0);
    co_ended();
}

static void cond_broadcast_wakes_every_waiter_in_fifo_order(void **state)
{
    (void)state;
    order_reset();
    ready_flag = 0;
    coho_mutex_init(&g_mutex);
    coho_cond_init(&g_cond);
    run_root_with_sched(broadcast_root, NULL, 7);
    assert_int_equal(norder, 6);
    for (int i = 0; i < 6; i++)
        assert_int_equal(order[i], i + 1);
    assert_int_equal(coho_cond_destroy(&g_cond), 0);
    assert_int_equal(coho_mutex_destroy(&g_mutex), 0);
}

static void timed_root(void *arg)
{
    uint64_t t0;
    uint64_t elapsed;

    (void)arg;
    CO_CHECK_INT(coho_mutex_lock(&g_mutex), 0);
    t0 = now_ms();
    errno = 0;
    CO_CHECK_INT(coho_cond_timedwait_ms(&g_cond, &g_mutex, 50), -1);
    CO_CHECK_INT(errno, ETIMEDOUT);
    elapsed = now_ms() - t0;
    CO_CHECK(elapsed >= 50);
    CO_CHECK(elapsed < 50 + 1000); /* slack for a loaded machine */
    /* the mutex is ours again */
    errno = 0;
    CO_CHECK_INT(coho_mutex_lock(&g_mutex), -1);
    CO_CHECK_INT(errno, EDEADLK);
    CO_CHECK_INT(coho_mutex_unlock(&g_mutex), 0);
    co_ended();
}

static void cond_timedwait_times_out_with_etimedout_and_holds_the_mutex_again(void **state)
{
    (void)state;
    coho_mutex_init(&g_mutex);
    coho_cond_init(&g_cond);
    run_root(timed_root, NULL, 1);
    assert_int_equal(coho_cond_destroy(&g_cond), 0);
    assert_int_equal(coho_mutex_destroy(&g_mutex), 0);
}

static void holder_while_timeout(void *arg)
{
    (void)arg;
    /* Takes the mutex while the waiter sleeps in timedwait and keeps it past the timeout. */
    CO_CHECK_INT(coho_mutex_lock(&g_mutex), 0);
    CO_CHECK_INT(coho_sleep_ms(80), 0);
    order[norder++] = 1;
    CO_CHECK_INT(coho_mutex_unlock(&g_mutex), 0);
    co_ended();
}

static void timeout_relock_root(void *arg)
{
    (void)arg;
    CO_CHECK_INT(coho_mutex_lock(&g_mutex), 0);
    spawn(holder_while_timeout, NULL);
    errno = 0;
    CO_CHECK_INT(coho_cond_timedwait_ms(&g_cond, &g_mutex, 10), -1);
    CO_CHECK_INT(errno, ETIMEDOUT);
    /* The timeout fired at ~10 ms, but the return waited for the holder's unlock. */
    CO_CHECK_INT(norder, 1);
    order[norder++] = 2;
    CO_CHECK_INT(coho_mutex_unlock(&g_mutex), 0);
    co_ended();
}

static void cond_timedwait_returns_only_after_reacquiring_a_held_mutex(void **state)
{
    (void)state;
    order_reset();
    coho_mutex_init(&g_mutex);
    coho_cond_init(&g_cond);
    run_root_with_sched(timeout_relock_root, NULL, 2);
    assert_int_equal(norder, 2);
    assert_int_equal(coho_cond_destroy(&g_cond), 0);
    assert_int_equal(coho_mutex_destroy(&g_mutex), 0);
}

static void eperm_root(void *arg)
{
    (void)arg;
    errno = 0;
    CO_CHECK_INT(coho_cond_wait(&g_cond, &g_mutex), -1);
    CO_CHECK_INT(errno, EPERM);
    co_ended();
}

static void cond_wait_without_holding_the_mutex_fails_eperm(void **state)
{
    (void)state;
    coho_mutex_init(&g_mutex);
    coho_cond_init(&g_cond);
    run_root(eperm_root, NULL, 1);
    errno = 0;
    assert_int_equal(coho_cond_wait(&g_cond, &g_mutex), -1);
    assert_int_equal(errno, EPERM); /* outside a coroutine */
    assert_int_equal(coho_cond_destroy(&g_cond), 0);
    assert_int_equal(coho_mutex_destroy(&g_mutex), 0);
}

static int cancelled_wait_held;

static void cancelled_cond_waiter(void *arg)
{
    (void)arg;
    CO_CHECK_INT(coho_mutex_lock(&g_mutex), 0);
    errno = 0;
    cancel_result = coho_cond_wait(&g_cond, &g_mutex);
    cancel_errno = errno;
    /* held again: a relock would be EDEADLK */
    cancelled_wait_held = coho_mutex_trylock(&g_mutex) == -1 && errno == EBUSY;
    CO_CHECK_INT(coho_mutex_unlock(&g_mutex), 0);
    co_ended();
}

static void cancel_cond_root(void *arg)
{
    uint64_t victim;

    (void)arg;
    victim = spawn(cancelled_cond_waiter, NULL);
    coho_yield(); /* it waits on the cond */
    CO_CHECK_INT(coho_mutex_lock(&g_mutex), 0);
    CO_CHECK_INT(coho_cancel(victim), 0);
    coho_yield(); /* it wakes and queues for the mutex we hold */
    coho_yield();
    CO_CHECK_INT(cancel_result, 0);
    CO_CHECK_INT(coho_mutex_unlock(&g_mutex), 0);
    CO_CHECK_INT(coho_join(victim, -1), 0);
    CO_CHECK_INT(cancel_result, -1);
    CO_CHECK_INT(cancel_errno, ECANCELED);
    CO_CHECK(cancelled_wait_held);
    co_ended();
}

static void cond_wait_cancelled_fails_ecanceled_with_the_mutex_held_again(void **state)
{
    (void)state;
    cancel_result = 0;
    cancelled_wait_held = 0;
    coho_mutex_init(&g_mutex);
    coho_cond_init(&g_cond);
    run_root_with_sched(cancel_cond_root, NULL, 2);
    assert_int_equal(coho_cond_destroy(&g_cond), 0);
    assert_int_equal(coho_mutex_destroy(&g_mutex), 0);
}

/* A bounded queue guarded by mutex + two condvars, driven by random yields. */
enum { PC_CAP = 4, PC_ITEMS = 2000, PC_PRODUCERS = 3 };
static coho_cond_t not_full;
static coho_cond_t not_empty;
static int pc_buf[PC_CAP];
static int pc_count;
static int pc_head;
static uint64_t pc_rng;
static long pc_sum;
static int pc_received;

static void pc_producer(void *arg)
{
    int base = (int)(intptr_t)arg;

    for (int i = 0; i < PC_ITEMS; i++) {
        CO_CHECK_INT(coho_mutex_lock(&g_mutex), 0);
        while (pc_count == PC_CAP)
            CO_CHECK_INT(coho_cond_wait(&not_full, &g_mutex), 0);
        pc_buf[(pc_head + pc_count) % PC_CAP] = base + i;
        pc_count++;
        CO_CHECK_INT(coho_cond_signal(&not_empty), 0);
        CO_CHECK_INT(coho_mutex_unlock(&g_mutex), 0);
        if (coho_test_rand(&pc_rng) % 3 == 0)
            coho_yield();
    }
    co_ended();
}

static void pc_consumer(void *arg)
{
    int last[PC_PRODUCERS];

    (void)arg;
    for (int p = 0; p < PC_PRODUCERS; p++)
        last[p] = -1;
    for (int n = 0; n < PC_ITEMS * PC_PRODUCERS; n++) {
        int v;

        CO_CHECK_INT(coho_mutex_lock(&g_mutex), 0);
        while (pc_count == 0)
            CO_CHECK_INT(coho_cond_wait(&not_empty, &g_mutex), 0);
        v = pc_buf[pc_head];
        pc_head = (pc_head + 1) % PC_CAP;
        pc_count--;
        CO_CHECK_INT(coho_cond_signal(&not_full), 0);
        CO_CHECK_INT(coho_mutex_unlock(&g_mutex), 0);
        /* each producer's items arrive in its own order */
        CO_CHECK(v % 100000 > last[v / 100000]);
        last[v / 100000] = v % 100000;
        pc_sum += v;
        pc_received++;
        if (coho_test_rand(&pc_rng) % 4 == 0)
            coho_yield();
    }
    co_ended();
}

static void mutex_and_conds_pass_every_item_of_a_randomly_interleaved_bounded_queue(void **state)
{
    long expect = 0;

    (void)state;
    pc_rng = coho_test_seed();
    pc_count = pc_head = pc_received = 0;
    pc_sum = 0;
    coho_mutex_init(&g_mutex);
    coho_cond_init(&not_full);
    coho_cond_init(&not_empty);
    current_sched = coho_sched_create(NULL);
    assert_non_null(current_sched);
    assert_true(coho_spawn(current_sched, pc_consumer, NULL) != 0);
    for (int p = 0; p < PC_PRODUCERS; p++)
        assert_true(coho_spawn(current_sched, pc_producer, (void *)(intptr_t)(p * 100000)) != 0);
    assert_int_equal(coho_sched_run(current_sched), 0);
    coho_sched_destroy(current_sched);
    expect_co(1 + PC_PRODUCERS);
    for (int p = 0; p < PC_PRODUCERS; p++)
        for (int i = 0; i < PC_ITEMS; i++)
            expect += p * 100000 + i;
    assert_int_equal(pc_received, PC_ITEMS * PC_PRODUCERS);
    assert_true(pc_sum == expect);
    assert_int_equal(coho_cond_destroy(&not_full), 0);
    assert_int_equal(coho_cond_destroy(&not_empty), 0);
    assert_int_equal(coho_mutex_destroy(&g_mutex), 0);
}

/* ---- semaphore ---- */

static coho_sem_t g_sem;

static void sem_taker(void *arg)
{
    CO_CHECK_INT(coho_sem_wait(&g_sem), 0);
    order[norder++] = (int)(intptr_t)arg;
    co_ended();
}

static void sem_root(void *arg)
{
    (void)arg;
    for (int i = 1; i <= 5; i++)
        spawn(sem_taker, (void *)(intptr_t)i);
    coho_yield();
    /* two initial units went to the first two */
    CO_CHECK_INT(norder, 2);
    CO_CHECK_INT(coho_sem_value(&g_sem), 0);
    errno = 0;
    CO_CHECK_INT(coho_sem_destroy(&g_sem), -1);
    CO_CHECK_INT(errno, EBUSY);
    CO_CHECK_INT(coho_sem_post(&g_sem), 0);
    /* the unit was handed to the first waiter, not left for a trywait to grab */
    errno = 0;
    CO_CHECK_INT(coho_sem_trywait(&g_sem), -1);
    CO_CHECK_INT(errno, EAGAIN);
    CO_CHECK_INT(coho_sem_post(&g_sem), 0);
    CO_CHECK_INT(coho_sem_post(&g_sem), 0);
    coho_yield();
    CO_CHECK_INT(norder, 5);
    CO_CHECK_INT(coho_sem_post(&g_sem), 0);
    CO_CHECK_INT(coho_sem_value(&g_sem), 1);
    CO_CHECK_INT(coho_sem_trywait(&g_sem), 0);
    co_ended();
}

static void sem_hands_units_to_waiters_in_fifo_order(void **state)
{
    (void)state;
    order_reset();
    coho_sem_init(&g_sem, 2);
    run_root_with_sched(sem_root, NULL, 6);
    assert_int_equal(norder, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(order[i], i + 1);
    assert_int_equal(coho_sem_destroy(&g_sem), 0);
}

static void sem_timed_root(void *arg)
{
    uint64_t t0 = now_ms();
    uint64_t elapsed;

    (void)arg;
    errno = 0;
    CO_CHECK_INT(coho_sem_timedwait_ms(&g_sem, 30), -1);
    CO_CHECK_INT(errno, ETIMEDOUT);
    elapsed = now_ms() - t0;
    CO_CHECK(elapsed >= 30 && elapsed < 30 + 1000);
    errno = 0;
    CO_CHECK_INT(coho_sem_timedwait_ms(&g_sem, 0), -1);
    CO_CHECK_INT(errno, ETIMEDOUT);
    CO_CHECK_INT(coho_sem_post(&g_sem), 0);
    CO_CHECK_INT(coho_sem_timedwait_ms(&g_sem, 30), 0);
    co_ended();
}

static void sem_timedwait_times_out_with_etimedout_and_wait_outside_fails_eperm(void **state)
{
    (void)state;
    coho_sem_init(&g_sem, 0);
    errno = 0;
    assert_int_equal(coho_sem_wait(&g_sem), -1);
    assert_int_equal(errno, EPERM);
    run_root(sem_timed_root, NULL, 1);
    assert_int_equal(coho_sem_destroy(&g_sem), 0);
}

/* A post that reaches a waiter whose timeout already fired (it is ready, queued behind the
 * poster, but has not run) hands it the unit: the wait returns 0, and the unit is neither lost
 * nor left behind as well. */
static int late_rc;
static int late_errno;
static uint64_t late_deadline_ms;

static void late_sem_waiter(void *arg)
{
    (void)arg;
    errno = 0;
    late_rc = coho_sem_timedwait_ms(&g_sem, 20);
    late_errno = errno;
}

static void late_cond_waiter(void *arg)
{
    (void)arg;
    CO_CHECK_INT(coho_mutex_lock(&g_mutex), 0);
    errno = 0;
    late_rc = coho_cond_timedwait_ms(&g_cond, &g_mutex, 20);
    late_errno = errno;
    CO_CHECK_INT(coho_mutex_unlock(&g_mutex), 0);
    co_ended();
}

/* Runs past the waiter's deadline without yielding, then yields once: the waiter's timer fires
 * in that pass and queues it behind this coroutine. */
static void hold_past_deadline(void)
{
    while (now_ms() < late_deadline_ms + 5) {
    }
    coho_yield();
}

static void late_sem_root(void *arg)
{
    (void)arg;
    late_deadline_ms = now_ms() + 20;
    spawn(late_sem_waiter, NULL);
    coho_yield(); /* it parks */
    hold_past_deadline();
    CO_CHECK_INT(late_rc, -2); /* timed out, but has not run yet */
    CO_CHECK_INT(coho_sem_post(&g_sem), 0);
    co_ended();
}

static void late_cond_root(void *arg)
{
    (void)arg;
    late_deadline_ms = now_ms() + 20;
    spawn(late_cond_waiter, NULL);
    coho_yield();
    hold_past_deadline();
    CO_CHECK_INT(late_rc, -2);
    CO_CHECK_INT(coho_cond_signal(&g_cond), 0);
    co_ended();
}

static void sem_post_to_a_waiter_whose_timeout_fired_is_delivered_not_lost(void **state)
{
    (void)state;
    late_rc = -2;
    coho_sem_init(&g_sem, 0);
    run_root_with_sched(late_sem_root, NULL, 1);
    assert_int_equal(late_rc, 0);
    assert_int_equal(coho_sem_value(&g_sem), 0);
    assert_int_equal(coho_sem_destroy(&g_sem), 0);
}

static void cond_signal_to_a_waiter_whose_timeout_fired_is_delivered_not_lost(void **state)
{
    (void)state;
    late_rc = -2;
    coho_mutex_init(&g_mutex);
    coho_cond_init(&g_cond);
    run_root_with_sched(late_cond_root, NULL, 2);
    assert_int_equal(late_rc, 0);
    assert_int_equal(coho_cond_destroy(&g_cond), 0);
    assert_int_equal(coho_mutex_destroy(&g_mutex), 0);
}

/* ---- wait group ---- */

static coho_wg_t g_wg;
static int wg_finished;

static void wg_worker(void *arg)
{
    CO_CHECK_INT(coho_sleep_ms((uint64_t)(intptr_t)arg), 0);
    wg_finished++;
    CO_CHECK_INT(coho_wg_done(&g_wg), 0);
    co_ended();
}

static void wg_watcher(void *arg)
{
    (void)arg;
    CO_CHECK_INT(coho_wg_wait(&g_wg), 0);
    order[norder++] = wg_finished;
    co_ended();
}

static void wg_root(void *arg)
{
    (void)arg;
    CO_CHECK_INT(coho_wg_wait(&g_wg), 0); /* count 0: at once */
    CO_CHECK_INT(coho_wg_add(&g_wg, 4), 0);
    for (int i = 0; i < 4; i++)
        spawn(wg_worker, (void *)(intptr_t)(5 + 5 * i));
    spawn(wg_watcher, NULL);
    errno = 0;
    CO_CHECK_INT(coho_wg_timedwait_ms(&g_wg, 1), -1);
    CO_CHECK_INT(errno, ETIMEDOUT);
    CO_CHECK_INT(coho_wg_wait(&g_wg), 0);
    CO_CHECK_INT(wg_finished, 4);
    co_ended();
}

static void wg_wait_returns_when_the_count_reaches_zero_for_every_waiter(void **state)
{
    (void)state;
    order_reset();
    wg_finished = 0;
    coho_wg_init(&g_wg);
    run_root_with_sched(wg_root, NULL, 6);
    assert_int_equal(norder, 1);
    assert_int_equal(order[0], 4);
    assert_int_equal(coho_wg_destroy(&g_wg), 0);
}

static void wg_busy_root(void *arg)
{
    (void)arg;
    CO_CHECK_INT(coho_wg_add(&g_wg, 1), 0);
    spawn(wg_watcher, NULL);
    coho_yield();
    errno = 0;
    CO_CHECK_INT(coho_wg_destroy(&g_wg), -1);
    CO_CHECK_INT(errno, EBUSY);
    CO_CHECK_INT(coho_wg_done(&g_wg), 0);
    co_ended();
}

static void wg_destroy_with_a_waiter_fails_ebusy(void **state)
{
    (void)state;
    order_reset();
    wg_finished = 0;
    coho_wg_init(&g_wg);
    run_root_with_sched(wg_busy_root, NULL, 2);
    assert_int_equal(norder, 1);
    assert_int_equal(coho_wg_destroy(&g_wg), 0);
}

/* ---- parking, not blocking ---- */

static int ticks;

static void ticker(void *arg)
{
    (void)arg;
    for (int i = 0; i < 10; i++) {
        ticks++;
        CO_CHECK_INT(coho_sleep_ms(1), 0);
    }
    CO_CHECK_INT(coho_sem_post(&g_sem), 0);
    co_ended();
}

static void park_root(void *arg)
{
    (void)arg;
    spawn(ticker, NULL);
    /* parks this coroutine only: the ticker keeps running on the same thread */
    CO_CHECK_INT(coho_sem_wait(&g_sem), 0);
    CO_CHECK_INT(ticks, 10);
    co_ended();
}

static void sem_wait_parks_the_coroutine_while_others_keep_running(void **state)
{
    (void)state;
    ticks = 0;
    coho_sem_init(&g_sem, 0);
    run_root_with_sched(park_root, NULL, 2);
    assert_int_equal(ticks, 10);
    assert_int_equal(coho_sem_destroy(&g_sem), 0);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(mutex_calls_outside_a_coroutine_fail_with_eperm),
        cmocka_unit_test(mutex_excludes_coroutines_that_yield_while_holding_it),
        cmocka_unit_test(mutex_unlock_hands_off_to_waiters_in_fifo_order),
        cmocka_unit_test(mutex_trylock_on_held_mutex_fails_ebusy_and_relock_fails_edeadlk),
        cmocka_unit_test(mutex_lock_cancelled_while_waiting_fails_ecanceled_and_leaves_queue),
        cmocka_unit_test(static_initializers_give_a_usable_mutex_and_condvar),
        cmocka_unit_test(cond_signal_wakes_one_waiter_oldest_first),
        cmocka_unit_test(cond_broadcast_wakes_every_waiter_in_fifo_order),
        cmocka_unit_test(cond_timedwait_times_out_with_etimedout_and_holds_the_mutex_again),
        cmocka_unit_test(cond_timedwait_returns_only_after_reacquiring_a_held_mutex),
        cmocka_unit_test(cond_wait_without_holding_the_mutex_fails_eperm),
        cmocka_unit_test(cond_wait_cancelled_fails_ecanceled_with_the_mutex_held_again),
        cmocka_unit_test(mutex_and_conds_pass_every_item_of_a_randomly_interleaved_bounded_queue),
        cmocka_unit_test(sem_hands_units_to_waiters_in_fifo_order),
        cmocka_unit_test(sem_timedwait_times_out_with_etimedout_and_wait_outside_fails_eperm),
        cmocka_unit_test(sem_post_to_a_waiter_whose_timeout_fired_is_delivered_not_lost),
        cmocka_unit_test(cond_signal_to_a_waiter_whose_timeout_fired_is_delivered_not_lost),
        cmocka_unit_test(wg_wait_returns_when_the_count_reaches_zero_for_every_waiter),
        cmocka_unit_test(wg_destroy_with_a_waiter_fails_ebusy),
        cmocka_unit_test(sem_wait_parks_the_coroutine_while_others_keep_running),
    };

    return coho_test_main("sync", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
