/* SPDX-License-Identifier: MIT */
/* Tests of the bounded channel: buffering, rendezvous, close and drain, timeouts, and traffic
 * between coroutines of two schedulers and between a coroutine and a plain thread. */
/* ctest: TIMEOUT=120 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <coho.h>

#include "test/support/cmocka_main.h"

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

static coho_sched_t *current_sched;

static uint64_t spawn(void (*fn)(void *), void *arg)
{
    uint64_t id = coho_spawn(current_sched, fn, arg);

    CO_CHECK(id != 0);
    return id;
}

/* Runs fn(arg) as the root coroutine of a fresh scheduler on this thread; then expects the
 * checks made in coroutines to have passed and `ended` bodies to have run to their end. */
static void run_root(void (*fn)(void *), void *arg, unsigned ended)
{
    coho_sched_t *s = coho_sched_create(NULL);

    assert_non_null(s);
    current_sched = s;
    assert_true(coho_spawn(s, fn, arg) != 0);
    assert_int_equal(coho_sched_run(s), 0);
    coho_sched_destroy(s);
    current_sched = NULL;
    expect_co(ended);
}

/* A thread that runs fn(arg) as the root coroutine of its own scheduler. */
struct sched_thread {
    pthread_t tid;
    void (*fn)(void *);
    void *arg;
};

static void *sched_thread_main(void *p)
{
    struct sched_thread *t = p;
    coho_sched_t *s = coho_sched_create(NULL);

    if (s == NULL || coho_spawn(s, t->fn, t->arg) == 0 || coho_sched_run(s) != 0)
        abort();
    coho_sched_destroy(s);
    return NULL;
}

static void sched_thread_start(struct sched_thread *t, void (*fn)(void *), void *arg)
{
    t->fn = fn;
    t->arg = arg;
    assert_int_equal(pthread_create(&t->tid, NULL, sched_thread_main, t), 0);
}

static coho_chan_t *g_ch;

/* ---- single thread ---- */

static void chan_create_rejects_zero_element_size_with_einval(void **state)
{
    (void)state;
    errno = 0;
    assert_null(coho_chan_create(0, 4));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(coho_chan_create(SIZE_MAX / 2, 4));
    assert_int_equal(errno, EINVAL);
}

static void chan_buffers_up_to_capacity_then_try_send_fails_eagain(void **state)
{
    coho_chan_t *ch = coho_chan_create(sizeof(int), 3);
    int v;

    (void)state;
    assert_non_null(ch);
    assert_int_equal(coho_chan_capacity(ch), 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(coho_chan_try_send(ch, &i), 0);
    assert_int_equal(coho_chan_count(ch), 3);
    errno = 0;
    v = 99;
    assert_int_equal(coho_chan_try_send(ch, &v), -1);
    assert_int_equal(errno, EAGAIN);
    /* wraps around the ring and keeps FIFO order */
    for (int round = 0; round < 10; round++) {
        assert_int_equal(coho_chan_try_recv(ch, &v), 0);
        assert_int_equal(v, round);
        v = round + 3;
        assert_int_equal(coho_chan_try_send(ch, &v), 0);
    }
    for (int i = 10; i < 13; i++) {
        assert_int_equal(coho_chan_try_recv(ch, &v), 0);
        assert_int_equal(v, i);
    }
    errno = 0;
    assert_int_equal(coho_chan_try_recv(ch, &v), -1);
    assert_int_equal(errno, EAGAIN);
    assert_int_equal(coho_chan_destroy(ch), 0);
}

static void chan_close_lets_receivers_drain_then_fails_epipe(void **state)
{
    coho_chan_t *ch = coho_chan_create(sizeof(int), 4);
    int v;

    (void)state;
    assert_non_null(ch);
    for (int i = 0; i < 3; i++)
        assert_int_equal(coho_chan_try_send(ch, &i), 0);
    assert_false(coho_chan_is_closed(ch));
    assert_int_equal(coho_chan_close(ch), 0);
    assert_true(coho_chan_is_closed(ch));
    errno = 0;
    assert_int_equal(coho_chan_close(ch), -1);
    assert_int_equal(errno, EPIPE);
    errno = 0;
    v = 7;
    assert_int_equal(coho_chan_try_send(ch, &v), -1);
    assert_int_equal(errno, EPIPE);
    errno = 0;
    assert_int_equal(coho_chan_send(ch, &v), -1); /* plain thread, would not block anyway */
    assert_int_equal(errno, EPIPE);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(coho_chan_recv(ch, &v), 0);
        assert_int_equal(v, i);
    }
    errno = 0;
    assert_int_equal(coho_chan_recv(ch, &v), -1);
    assert_int_equal(errno, EPIPE);
    errno = 0;
    assert_int_equal(coho_chan_try_recv(ch, &v), -1);
    assert_int_equal(errno, EPIPE);
    errno = 0;
    assert_int_equal(coho_chan_timedrecv_ms(ch, &v, 10), -1);
    assert_int_equal(errno, EPIPE);
    assert_int_equal(coho_chan_destroy(ch), 0);
}

static int rv_stage;

static void rv_receiver(void *arg)
{
    int v = 0;

    (void)arg;
    CO_CHECK_INT(rv_stage, 1); /* the sender is parked by now */
    CO_CHECK_INT(coho_chan_recv(g_ch, &v), 0);
    CO_CHECK_INT(v, 42);
    rv_stage = 2;
    co_ended();
}

static void rv_root(void *arg)
{
    int v = 42;

    (void)arg;
    errno = 0;
    CO_CHECK_INT(coho_chan_try_send(g_ch, &v), -1); /* no receiver waits */
    CO_CHECK_INT(errno, EAGAIN);
    spawn(rv_receiver, NULL);
    rv_stage = 1;
    CO_CHECK_INT(coho_chan_send(g_ch, &v), 0); /* parks until the receiver takes it */
    CO_CHECK_INT(rv_stage, 2);
    CO_CHECK_INT(coho_chan_count(g_ch), 0);
    co_ended();
}

static void chan_of_capacity_zero_completes_a_send_only_when_a_receiver_takes_it(void **state)
{
    (void)state;
    rv_stage = 0;
    g_ch = coho_chan_create(sizeof(int), 0);
    assert_non_null(g_ch);
    run_root(rv_root, NULL, 2);
    assert_int_equal(rv_stage, 2);
    assert_int_equal(coho_chan_destroy(g_ch), 0);
}

static int close_results[8];
static int close_errnos[8];

static void close_receiver(void *arg)
{
    int i = (int)(intptr_t)arg;
    int v;

    errno = 0;
    close_results[i] = coho_chan_recv(g_ch, &v);
    close_errnos[i] = errno;
}

static void close_sender(void *arg)
{
    int i = (int)(intptr_t)arg;
    int v = i;

    errno = 0;
    close_results[i] = coho_chan_send(g_ch, &v);
    close_errnos[i] = errno;
}

static void close_root(void *arg)
{
    coho_chan_t *full = arg;
    coho_chan_t *empty = g_ch;
    int v = 0;

    for (int i = 0; i < 3; i++)
        spawn(close_receiver, (void *)(intptr_t)i);
    coho_yield(); /* three receivers parked on the empty channel */
    errno = 0;
    CO_CHECK_INT(coho_chan_destroy(empty), -1);
    CO_CHECK_INT(errno, EBUSY);
    CO_CHECK_INT(coho_chan_close(empty), 0);
    coho_yield();
    for (int i = 0; i < 3; i++) {
        CO_CHECK_INT(close_results[i], -1);
        CO_CHECK_INT(close_errnos[i], EPIPE);
    }
    /* senders parked on a full channel fail too; the buffered element stays for draining */
    g_ch = full;
    CO_CHECK_INT(coho_chan_try_send(full, &v), 0);
    for (int i = 3; i < 6; i++)
        spawn(close_sender, (void *)(intptr_t)i);
    coho_yield();
    CO_CHECK_INT(coho_chan_close(full), 0);
    coho_yield();
    for (int i = 3; i < 6; i++) {
        CO_CHECK_INT(close_results[i], -1);
        CO_CHECK_INT(close_errnos[i], EPIPE);
    }
    CO_CHECK_INT(coho_chan_recv(full, &v), 0);
    CO_CHECK_INT(v, 0);
    errno = 0;
    CO_CHECK_INT(coho_chan_recv(full, &v), -1);
    CO_CHECK_INT(errno, EPIPE);
    g_ch = empty;
    co_ended();
}

static void chan_close_wakes_parked_receivers_and_senders_with_epipe(void **state)
{
    coho_chan_t *full = coho_chan_create(sizeof(int), 1);

    (void)state;
    g_ch = coho_chan_create(sizeof(int), 2);
    assert_non_null(g_ch);
    assert_non_null(full);
    memset(close_results, 0, sizeof(close_results));
    run_root(close_root, full, 1);
    assert_int_equal(coho_chan_destroy(g_ch), 0);
    assert_int_equal(coho_chan_destroy(full), 0);
}

static void timed_root(void *arg)
{
    uint64_t t0;
    uint64_t elapsed;
    int v = 1;

    (void)arg;
    t0 = now_ms();
    errno = 0;
    CO_CHECK_INT(coho_chan_timedrecv_ms(g_ch, &v, 40), -1);
    CO_CHECK_INT(errno, ETIMEDOUT);
    elapsed = now_ms() - t0;
    CO_CHECK(elapsed >= 40 && elapsed < 40 + 1000);
    CO_CHECK_INT(coho_chan_try_send(g_ch, &v), 0);
    t0 = now_ms();
    errno = 0;
    CO_CHECK_INT(coho_chan_timedsend_ms(g_ch, &v, 40), -1); /* full */
    CO_CHECK_INT(errno, ETIMEDOUT);
    elapsed = now_ms() - t0;
    CO_CHECK(elapsed >= 40 && elapsed < 40 + 1000);
    errno = 0;
    CO_CHECK_INT(coho_chan_timedsend_ms(g_ch, &v, 0), -1);
    CO_CHECK_INT(errno, ETIMEDOUT);
    CO_CHECK_INT(coho_chan_timedrecv_ms(g_ch, &v, 40), 0);
    CO_CHECK_INT(v, 1);
    co_ended();
}

static void chan_timed_calls_fail_etimedout_in_a_coroutine_and_in_a_plain_thread(void **state)
{
    uint64_t t0;
    uint64_t elapsed;
    int v = 0;

    (void)state;
    g_ch = coho_chan_create(sizeof(int), 1);
    assert_non_null(g_ch);
    run_root(timed_root, NULL, 1);
    /* the plain-thread path: a condition variable on the monotonic clock */
    t0 = now_ms();
    errno = 0;
    assert_int_equal(coho_chan_timedrecv_ms(g_ch, &v, 40), -1);
    assert_int_equal(errno, ETIMEDOUT);
    elapsed = now_ms() - t0;
    assert_true(elapsed >= 40 && elapsed < 40 + 1000);
    assert_int_equal(coho_chan_destroy(g_ch), 0);
}

static void stack_cb(void *arg)
{
    int v;

    (void)arg;
    errno = 0;
    *(int *)arg = coho_chan_recv(g_ch, &v) == -1 && errno == EPERM;
}

static void noop(void *arg)
{
    (void)arg;
}

static void chan_blocking_call_on_a_scheduler_stack_fails_eperm(void **state)
{
    coho_sched_t *s = coho_sched_create(NULL);
    int ok = 0;

    (void)state;
    assert_non_null(s);
    g_ch = coho_chan_create(sizeof(int), 1);
    assert_non_null(g_ch);
    assert_int_equal(coho_sched_post(s, stack_cb, &ok), 0);
    assert_true(coho_spawn(s, noop, NULL) != 0);
    assert_int_equal(coho_sched_run(s), 0);
    coho_sched_destroy(s);
    assert_true(ok);
    assert_int_equal(coho_chan_destroy(g_ch), 0);
}

/* ---- across threads ---- */

enum { N_MSG = 100000 };

struct stream {
    coho_chan_t *ch;
    int n;
    int received;
    int in_order;
};

static void stream_producer(void *arg)
{
    struct stream *st = arg;

    for (int i = 0; i < st->n; i++)
        CO_CHECK_INT(coho_chan_send(st->ch, &i), 0);
    CO_CHECK_INT(coho_chan_close(st->ch), 0);
    co_ended();
}

static void stream_consumer(void *arg)
{
    struct stream *st = arg;
    int v;

    st->in_order = 1;
    while (coho_chan_recv(st->ch, &v) == 0) {
        if (v != st->received)
            st->in_order = 0;
        st->received++;
    }
    CO_CHECK_INT(errno, EPIPE);
    co_ended();
}

static void run_two_schedulers(size_t capacity, int n)
{
    struct sched_thread a;
    struct sched_thread b;
    struct stream st = {.n = n};

    st.ch = coho_chan_create(sizeof(int), capacity);
    assert_non_null(st.ch);
    sched_thread_start(&b, stream_consumer, &st);
    sched_thread_start(&a, stream_producer, &st);
    assert_int_equal(pthread_join(a.tid, NULL), 0);
    assert_int_equal(pthread_join(b.tid, NULL), 0);
    expect_co(2);
    assert_int_equal(st.received, n);
    assert_true(st.in_order);
    assert_int_equal(coho_chan_destroy(st.ch), 0);
}

static void chan_carries_100k_messages_in_order_between_two_schedulers(void **state)
{
    (void)state;
    run_two_schedulers(16, N_MSG);
}

static void chan_of_capacity_zero_carries_messages_in_order_between_two_schedulers(void **state)
{
    (void)state;
    run_two_schedulers(0, 20000);
}

static void *plain_producer(void *arg)
{
    struct stream *st = arg;

    for (int i = 0; i < st->n; i++) {
        if (coho_chan_send(st->ch, &i) != 0)
            abort();
    }
    coho_chan_close(st->ch);
    return NULL;
}

static void *plain_consumer(void *arg)
{
    struct stream *st = arg;
    int v;

    st->in_order = 1;
    while (coho_chan_recv(st->ch, &v) == 0) {
        if (v != st->received)
            st->in_order = 0;
        st->received++;
    }
    return NULL;
}

static void chan_carries_100k_messages_in_order_between_coroutine_and_plain_thread(void **state)
{
    struct stream to_thread = {.n = N_MSG};
    struct stream to_co = {.n = N_MSG};
    pthread_t consumer;
    pthread_t producer;

    (void)state;
    to_thread.ch = coho_chan_create(sizeof(int), 8);
    to_co.ch = coho_chan_create(sizeof(int), 8);
    assert_non_null(to_thread.ch);
    assert_non_null(to_co.ch);
    assert_int_equal(pthread_create(&consumer, NULL, plain_consumer, &to_thread), 0);
    assert_int_equal(pthread_create(&producer, NULL, plain_producer, &to_co), 0);
    current_sched = coho_sched_create(NULL);
    assert_non_null(current_sched);
    spawn(stream_producer, &to_thread); /* coroutine -> plain thread */
    spawn(stream_consumer, &to_co);     /* plain thread -> coroutine */
    assert_int_equal(coho_sched_run(current_sched), 0);
    coho_sched_destroy(current_sched);
    current_sched = NULL;
    assert_int_equal(pthread_join(consumer, NULL), 0);
    assert_int_equal(pthread_join(producer, NULL), 0);
    expect_co(2);
    assert_int_equal(to_thread.received, N_MSG);
    assert_true(to_thread.in_order);
    assert_int_equal(to_co.received, N_MSG);
    assert_true(to_co.in_order);
    assert_int_equal(coho_chan_destroy(to_thread.ch), 0);
    assert_int_equal(coho_chan_destroy(to_co.ch), 0);
}

static atomic_int plain_waiter_result;
static atomic_int plain_waiter_started;

static void *plain_blocked_receiver(void *arg)
{
    int v;

    (void)arg;
    atomic_store(&plain_waiter_started, 1);
    errno = 0;
    atomic_store(&plain_waiter_result, coho_chan_recv(g_ch, &v) == -1 && errno == EPIPE ? 1 : 2);
    return NULL;
}

static void close_remote_root(void *arg)
{
    (void)arg;
    while (!atomic_load(&plain_waiter_started))
        CO_CHECK_INT(coho_sleep_ms(1), 0);
    /* give the thread time to block in recv (if it has not, recv sees the close: same answer) */
    CO_CHECK_INT(coho_sleep_ms(50), 0);
    CO_CHECK_INT(atomic_load(&plain_waiter_result), 0);
    CO_CHECK_INT(coho_chan_close(g_ch), 0);
    co_ended();
}

static void chan_close_from_a_coroutine_wakes_a_plain_thread_blocked_in_recv(void **state)
{
    pthread_t t;

    (void)state;
    atomic_store(&plain_waiter_result, 0);
    atomic_store(&plain_waiter_started, 0);
    g_ch = coho_chan_create(sizeof(int), 1);
    assert_non_null(g_ch);
    assert_int_equal(pthread_create(&t, NULL, plain_blocked_receiver, NULL), 0);
    run_root(close_remote_root, NULL, 1);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(atomic_load(&plain_waiter_result), 1);
    assert_int_equal(coho_chan_destroy(g_ch), 0);
}

/* Timed receives that expire while another thread sends: a timeout racing with a transfer
 * either returns the element or leaves it in the channel, never loses or duplicates it. */
enum { RACE_N = 20000 };

static void *race_sender(void *arg)
{
    uint64_t rng = *(uint64_t *)arg;

    for (int i = 0; i < RACE_N; i++) {
        if (coho_chan_send(g_ch, &i) != 0)
            abort();
        if (coho_test_rand(&rng) % 64 == 0) {
            struct timespec ts = {0, (long)(coho_test_rand(&rng) % 1500) * 1000};

            nanosleep(&ts, NULL); /* lands near the receiver's 1 ms timeouts */
        }
    }
    return NULL;
}

static int race_next;
static int race_timeouts;

static void race_receiver(void *arg)
{
    int v;

    (void)arg;
    while (race_next < RACE_N) {
        if (coho_chan_timedrecv_ms(g_ch, &v, 1) != 0) {
            CO_CHECK_INT(errno, ETIMEDOUT);
            race_timeouts++;
            continue;
        }
        CO_CHECK_INT(v, race_next);
        race_next++;
    }
    co_ended();
}

static void chan_timed_receive_racing_a_cross_thread_send_loses_no_message(void **state)
{
    uint64_t seed = coho_test_seed();
    pthread_t t;

    (void)state;
    race_next = race_timeouts = 0;
    g_ch = coho_chan_create(sizeof(int), (size_t)(seed % 2)); /* capacity 0 or 1 */
    assert_non_null(g_ch);
    assert_int_equal(pthread_create(&t, NULL, race_sender, &seed), 0);
    run_root(race_receiver, NULL, 1);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(race_next, RACE_N);
    assert_int_equal(coho_chan_count(g_ch), 0);
    print_message("%d timeouts\n", race_timeouts);
    assert_int_equal(coho_chan_destroy(g_ch), 0);
}

/* The exact race: the receiver's timeout has fired (it is ready, behind another coroutine)
 * when a plain thread hands it an element. The transfer wins (the receive returns 0 with the
 * element), and the receiver does not return before the posted wake that points at its wait
 * record has run. */
static atomic_int race_trigger;
static atomic_int race_sent;
static int race_rc;
static int race_value;
static uint64_t race_deadline_ms;

static void *race_trigger_sender(void *arg)
{
    int v = 4242;

    (void)arg;
    while (!atomic_load(&race_trigger))
        sched_yield();
    if (coho_chan_try_send(g_ch, &v) != 0) /* the receiver is still queued: a direct handoff */
        abort();
    atomic_store(&race_sent, 1);
    return NULL;
}

static int race_frame_intact;

/* Covers the stack the finished receive used with a pattern, lets any late callback run, and
 * checks nothing wrote into it. */
__attribute__((noinline)) static int stack_survives_late_callbacks(void)
{
    volatile unsigned char buf[4096];

    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = 0xa5;
    coho_yield();
    coho_yield();
    for (size_t i = 0; i < sizeof(buf); i++) {
        if (buf[i] != 0xa5)
            return 0;
    }
    return 1;
}

static void race_timed_receiver(void *arg)
{
    (void)arg;
    race_value = 0;
    errno = 0;
    race_rc = coho_chan_timedrecv_ms(g_ch, &race_value, 20);
    race_frame_intact = stack_survives_late_callbacks();
}

static void race_holder(void *arg)
{
    (void)arg;
    coho_yield(); /* the receiver parks */
    /* Hold the thread past the receiver's deadline, so its timer fires in the next pass... */
    while (now_ms() < race_deadline_ms + 5) {
    }
    coho_yield(); /* ...this one: the receiver is now ready, queued behind us */
    atomic_store(&race_trigger, 1);
    while (!atomic_load(&race_sent)) {
    }
}

static void race_root(void *arg)
{
    (void)arg;
    race_deadline_ms = now_ms() + 20;
    spawn(race_timed_receiver, NULL);
    spawn(race_holder, NULL);
    co_ended();
}

static void chan_transfer_racing_a_fired_timeout_wins_and_outlives_the_posted_wake(void **state)
{
    pthread_t t;

    (void)state;
    atomic_store(&race_trigger, 0);
    atomic_store(&race_sent, 0);
    race_rc = -2;
    race_frame_intact = 0;
    g_ch = coho_chan_create(sizeof(int), 0);
    assert_non_null(g_ch);
    assert_int_equal(pthread_create(&t, NULL, race_trigger_sender, NULL), 0);
    run_root(race_root, NULL, 1);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(race_rc, 0);
    assert_int_equal(race_value, 4242);
    assert_true(race_frame_intact);
    assert_int_equal(coho_chan_count(g_ch), 0);
    assert_int_equal(coho_chan_destroy(g_ch), 0);
}

/* Producers (coroutines on two schedulers and a plain thread) and consumers on both schedulers,
 * with random yields and timed receives: every message arrives exactly once, and the messages
 * of one producer reach any one consumer in the order they were sent. */
enum { MP_PRODUCERS = 5, MP_PER = 4000, MP_CONSUMERS_PER_SCHED = 2 };

struct mp_state {
    coho_chan_t *ch;
    uint64_t seed;
    atomic_int producers_left;
    atomic_long sum;
    atomic_int count;
    atomic_int disorder;
};

static struct mp_state mp;

static void mp_send_all(int p, uint64_t *rng, int in_coroutine)
{
    for (int i = 0; i < MP_PER; i++) {
        int v = p * MP_PER + i;

        if (coho_chan_send(mp.ch, &v) != 0)
            abort();
        if (in_coroutine && coho_test_rand(rng) % 5 == 0)
            coho_yield();
    }
    if (atomic_fetch_sub(&mp.producers_left, 1) == 1)
        coho_chan_close(mp.ch);
}

static void mp_producer_co(void *arg)
{
    int p = (int)(intptr_t)arg;
    uint64_t rng = mp.seed + (uint64_t)p;

    mp_send_all(p, &rng, 1);
}

static void *mp_producer_thread(void *arg)
{
    int p = (int)(intptr_t)arg;
    uint64_t rng = mp.seed + (uint64_t)p;

    mp_send_all(p, &rng, 0);
    return NULL;
}

static void mp_consumer(void *arg)
{
    int last[MP_PRODUCERS];
    uint64_t rng = mp.seed * 31 + (uint64_t)(intptr_t)arg;
    int v;

    for (int p = 0; p < MP_PRODUCERS; p++)
        last[p] = -1;
    for (;;) {
        int rc = coho_test_rand(&rng) % 2 ? coho_chan_recv(mp.ch, &v)
                                          : coho_chan_timedrecv_ms(mp.ch, &v, 1);

        if (rc != 0) {
            if (errno == ETIMEDOUT)
                continue;
            if (errno != EPIPE)
                atomic_store(&mp.disorder, 2);
            return;
        }
        if (v % MP_PER <= last[v / MP_PER])
            atomic_store(&mp.disorder, 1);
        last[v / MP_PER] = v % MP_PER;
        atomic_fetch_add(&mp.sum, v);
        atomic_fetch_add(&mp.count, 1);
        if (coho_test_rand(&rng) % 7 == 0)
            coho_yield();
    }
}

/* Scheduler thread k (0 or 1): producers k and k + 2, two consumers. Producer 4 is a plain
 * thread. */
static void *mp_sched_thread(void *arg)
{
    int k = (int)(intptr_t)arg;
    coho_sched_t *s = coho_sched_create(NULL);

    if (s == NULL)
        abort();
    for (int p = k; p < MP_PRODUCERS - 1; p += 2) {
        if (coho_spawn(s, mp_producer_co, (void *)(intptr_t)p) == 0)
            abort();
    }
    for (int c = 0; c < MP_CONSUMERS_PER_SCHED; c++) {
        if (coho_spawn(s, mp_consumer, (void *)(intptr_t)(k * 10 + c)) == 0)
            abort();
    }
    if (coho_sched_run(s) != 0)
        abort();
    coho_sched_destroy(s);
    return NULL;
}

static void chan_delivers_every_message_once_to_many_consumers_across_threads(void **state)
{
    pthread_t t[3];
    long expect = 0;

    (void)state;
    mp.seed = coho_test_seed();
    mp.ch = coho_chan_create(sizeof(int), (size_t)(mp.seed % 4)); /* capacity 0..3 */
    assert_non_null(mp.ch);
    atomic_store(&mp.producers_left, MP_PRODUCERS);
    atomic_store(&mp.sum, 0);
    atomic_store(&mp.count, 0);
    atomic_store(&mp.disorder, 0);
    assert_int_equal(pthread_create(&t[0], NULL, mp_sched_thread, (void *)(intptr_t)0), 0);
    assert_int_equal(pthread_create(&t[1], NULL, mp_sched_thread, (void *)(intptr_t)1), 0);
    assert_int_equal(pthread_create(&t[2], NULL, mp_producer_thread, (void *)(intptr_t)4), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    for (int v = 0; v < MP_PRODUCERS * MP_PER; v++)
        expect += v;
    assert_int_equal(atomic_load(&mp.count), MP_PRODUCERS * MP_PER);
    assert_true(atomic_load(&mp.sum) == expect);
    assert_int_equal(atomic_load(&mp.disorder), 0);
    assert_int_equal(coho_chan_destroy(mp.ch), 0);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(chan_create_rejects_zero_element_size_with_einval),
        cmocka_unit_test(chan_buffers_up_to_capacity_then_try_send_fails_eagain),
        cmocka_unit_test(chan_close_lets_receivers_drain_then_fails_epipe),
        cmocka_unit_test(chan_of_capacity_zero_completes_a_send_only_when_a_receiver_takes_it),
        cmocka_unit_test(chan_close_wakes_parked_receivers_and_senders_with_epipe),
        cmocka_unit_test(chan_timed_calls_fail_etimedout_in_a_coroutine_and_in_a_plain_thread),
        cmocka_unit_test(chan_blocking_call_on_a_scheduler_stack_fails_eperm),
        cmocka_unit_test(chan_carries_100k_messages_in_order_between_two_schedulers),
        cmocka_unit_test(chan_of_capacity_zero_carries_messages_in_order_between_two_schedulers),
        cmocka_unit_test(chan_carries_100k_messages_in_order_between_coroutine_and_plain_thread),
        cmocka_unit_test(chan_close_from_a_coroutine_wakes_a_plain_thread_blocked_in_recv),
        cmocka_unit_test(chan_delivers_every_message_once_to_many_consumers_across_threads),
        cmocka_unit_test(chan_timed_receive_racing_a_cross_thread_send_loses_no_message),
        cmocka_unit_test(chan_transfer_racing_a_fired_timeout_wins_and_outlives_the_posted_wake),
    };

    return coho_test_main("chan", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
