/* SPDX-License-Identifier: MIT */
/* The driver is not starved by busy coroutines: while coroutines yield in a tight loop (one
 * alone, whose yields find nothing else ready, or several handing the CPU to each other), a
 * coroutine parked in recv gets data written by another thread within 1 ms, sleeps end on
 * time, and posts from other threads run. Without the scheduler's bounded poll interval
 * (coroutine/README.md "The loop") none of these would happen until the spinners stop.
 *
 * The bounds are on the scheduler thread's CPU time (its CLOCK_THREAD_CPUTIME_ID, read by the
 * other thread through pthread_getcpuclockid): while the spinners run, that clock advances
 * with every nanosecond the scheduler spends without noticing the event, and not while the
 * kernel runs other tenants of a shared test machine instead, so the 1 ms holds there too.
 * On a virtual machine, though, the host can take the vCPU away while the thread runs, and a
 * guest without steal-time accounting counts that time as the thread's: one round of 20 once
 * measured 1.6 ms with a median of 111 us. So the bound must hold for 18 of the 20 rounds, and
 * every round must stay within 10 times it; a starved driver leaves the event unseen until the
 * spinners give up (SPIN_LIMIT_S), which fails both. Wall-clock figures are printed. */
/* ctest: TIMEOUT=60 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <coho.h>

#include "test/support/cmocka_main.h"

#define ROUNDS       20
#define SPIN_LIMIT_S 10 /* spinners give up after this: a starved driver fails, never hangs */

/* Added to the CPU-time bounds under ThreadSanitizer: every access of the loop is instrumented,
 * and the tool's own upkeep (its traces and shadow memory, page faults included) lands on the
 * scheduler thread's CPU clock; a wake once measured 1.1 ms there. A starved driver would leave
 * the event unseen for SPIN_LIMIT_S, so the bounds still tell the two apart. */
#if defined(__SANITIZE_THREAD__)
#    define TSAN_EXTRA_NS 4000000u
#else
#    define TSAN_EXTRA_NS 0u
#endif

static uint64_t mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t clock_ns(clockid_t c)
{
    struct timespec ts;

    clock_gettime(c, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* The bound of the file's comment on `sorted` (ROUNDS figures, ascending): 18 of 20 rounds
 * within `bound_ns`, every round within 10 times it. */
static void assert_within(const uint64_t *sorted, uint64_t bound_ns)
{
    assert_true(sorted[ROUNDS - 1 - ROUNDS / 10] <= bound_ns);
    assert_true(sorted[ROUNDS - 1] <= 10 * bound_ns);
}

/* Everything the coroutines and the other threads record; asserted after coho_sched_run. */
static struct {
    bool done;                 /* the measuring coroutine finished: spinners stop */
    bool spin_gave_up;         /* a spinner hit SPIN_LIMIT_S */
    uint64_t spins;            /* yields made by the spinners */
    int fds[2];                /* socketpair: the writer thread writes fds[1] */
    clockid_t sched_cpu;       /* the scheduler thread's CPU-time clock */
    uint64_t sent_ns[ROUNDS];  /* wall time before the write (or the post) */
    uint64_t sent_cpu[ROUNDS]; /* scheduler CPU time right after the write (post) */
    uint64_t woke_ns[ROUNDS];  /* wall time when recv returned (the post ran) */
    uint64_t woke_cpu[ROUNDS]; /* scheduler CPU time then */
    uint64_t late_cpu[ROUNDS]; /* sleeps: scheduler CPU time slept - the delay */
    uint64_t late_ns[ROUNDS];  /* sleeps: wall time slept - the delay */
    int got;                   /* rounds received (1 byte each, the round number) */
    int bad_bytes;             /* bytes that were not the expected round number */
    int early;                 /* sleeps that returned before their delay */
    int slept;
    int posts_run;
} st;

static bool gave_up(void)
{
    return __atomic_load_n(&st.spin_gave_up, __ATOMIC_RELAXED);
}

static void spinner(void *arg)
{
    uint64_t limit = mono_ns() + (uint64_t)SPIN_LIMIT_S * 1000000000u;

    (void)arg;
    while (!st.done) {
        coho_yield();
        st.spins++;
        if ((st.spins & 1023) == 0 && mono_ns() > limit) {
            __atomic_store_n(&st.spin_gave_up, true, __ATOMIC_RELAXED);
            return;
        }
    }
}

static coho_sched_t *sched_for_test(void)
{
    coho_sched_t *s;

    memset(&st, 0, sizeof(st));
    assert_int_equal(pthread_getcpuclockid(pthread_self(), &st.sched_cpu), 0);
    s = coho_sched_create(NULL);
    assert_non_null(s);
    return s;
}

/* Scheduler CPU time from each round's event to its wake (0 when the wake came first), sorted;
 * prints the wall and CPU medians and maxima. */
static void latencies(const char *what, uint64_t *cpu_sorted)
{
    uint64_t wall[ROUNDS];

    for (int i = 0; i < ROUNDS; i++) {
        cpu_sorted[i] = st.woke_cpu[i] > st.sent_cpu[i] ? st.woke_cpu[i] - st.sent_cpu[i] : 0;
        wall[i] = st.woke_ns[i] > st.sent_ns[i] ? st.woke_ns[i] - st.sent_ns[i] : 0;
    }
    qsort(cpu_sorted, ROUNDS, sizeof(uint64_t), cmp_u64);
    qsort(wall, ROUNDS, sizeof(uint64_t), cmp_u64);
    print_message(
        "%s, %llu yields: scheduler CPU time to the wake median %llu us, max %llu us; "
        "wall median %llu us, max %llu us\n",
        what, (unsigned long long)st.spins, (unsigned long long)cpu_sorted[ROUNDS / 2] / 1000,
        (unsigned long long)cpu_sorted[ROUNDS - 1] / 1000,
        (unsigned long long)wall[ROUNDS / 2] / 1000, (unsigned long long)wall[ROUNDS - 1] / 1000);
}

/* ---- data on a socket ---- */

static void *writer_main(void *arg)
{
    (void)arg;
    for (int i = 0; i < ROUNDS && !gave_up(); i++) {
        unsigned char b = (unsigned char)i;

        usleep(5000); /* the reader is parked in recv again by then */
        st.sent_ns[i] = mono_ns();
        if (write(st.fds[1], &b, 1) != 1)
            break;
        st.sent_cpu[i] = clock_ns(st.sched_cpu);
    }
    return NULL;
}

static void reader(void *arg)
{
    (void)arg;
    for (int i = 0; i < ROUNDS; i++) {
        unsigned char b;

        if (recv(st.fds[0], &b, 1, 0) != 1)
            break;
        st.woke_cpu[i] = clock_ns(CLOCK_THREAD_CPUTIME_ID);
        st.woke_ns[i] = mono_ns();
        st.bad_bytes += b != (unsigned char)i;
        st.got++;
    }
    st.done = true;
}

static void run_socket_case(int nspinners)
{
    uint64_t cpu[ROUNDS];
    pthread_t writer;
    coho_sched_t *s = sched_for_test();

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, st.fds), 0);
    assert_true(coho_spawn(s, reader, NULL) != 0);
    for (int i = 0; i < nspinners; i++)
        assert_true(coho_spawn(s, spinner, NULL) != 0);
    assert_int_equal(pthread_create(&writer, NULL, writer_main, NULL), 0);
    assert_int_equal(coho_sched_run(s), 0);
    pthread_join(writer, NULL);
    coho_sched_destroy(s);
    close(st.fds[0]);
    close(st.fds[1]);

    latencies(nspinners == 1 ? "recv, 1 spinner" : "recv, 4 spinners", cpu);
    assert_false(gave_up());
    assert_int_equal(st.got, ROUNDS);
    assert_int_equal(st.bad_bytes, 0);
    assert_true(st.spins > 1000); /* the spinners really spun while the reader waited */
    assert_within(cpu, 1000000u + TSAN_EXTRA_NS);
}

static void recv_gets_data_within_1ms_while_one_coroutine_yields(void **state)
{
    (void)state;
    run_socket_case(1);
}

static void recv_gets_data_within_1ms_while_four_coroutines_yield(void **state)
{
    (void)state;
    run_socket_case(4);
}

/* ---- timers ---- */

static void sleeper(void *arg)
{
    const uint64_t delay_ns = 5000000u;

    (void)arg;
    for (int i = 0; i < ROUNDS; i++) {
        uint64_t start = mono_ns(), start_cpu = clock_ns(CLOCK_THREAD_CPUTIME_ID);

        coho_sleep_ms(5);
        uint64_t end = mono_ns(), end_cpu = clock_ns(CLOCK_THREAD_CPUTIME_ID);
        if (end < start + delay_ns)
            st.early++;
        else
            st.late_ns[i] = end - (start + delay_ns);
        st.late_cpu[i] = end_cpu > start_cpu + delay_ns ? end_cpu - (start_cpu + delay_ns) : 0;
        st.slept++;
    }
    st.done = true;
}

static void sleeps_end_on_time_while_coroutines_yield(void **state)
{
    (void)state;
    coho_sched_t *s = sched_for_test();

    assert_true(coho_spawn(s, sleeper, NULL) != 0);
    for (int i = 0; i < 4; i++)
        assert_true(coho_spawn(s, spinner, NULL) != 0);
    assert_int_equal(coho_sched_run(s), 0);
    coho_sched_destroy(s);

    qsort(st.late_cpu, ROUNDS, sizeof(uint64_t), cmp_u64);
    qsort(st.late_ns, ROUNDS, sizeof(uint64_t), cmp_u64);
    print_message("sleep(5 ms), 4 spinners, %llu yields: late by (scheduler CPU time) median "
                  "%llu us, max %llu us; wall median %llu us, max %llu us\n",
                  (unsigned long long)st.spins, (unsigned long long)st.late_cpu[ROUNDS / 2] / 1000,
                  (unsigned long long)st.late_cpu[ROUNDS - 1] / 1000,
                  (unsigned long long)st.late_ns[ROUNDS / 2] / 1000,
                  (unsigned long long)st.late_ns[ROUNDS - 1] / 1000);
    assert_false(gave_up());
    assert_int_equal(st.slept, ROUNDS);
    assert_int_equal(st.early, 0);
    assert_true(st.spins > 1000);
    /* The wheel's tick is 1 ms and a deadline is rounded up to it: a timer fires up to one
     * tick after its delay, plus the poll interval. */
    assert_within(st.late_cpu, 2000000u + TSAN_EXTRA_NS);
}

/* ---- posts from another thread ---- */

static void counted_post(void *arg)
{
    int i = (int)(intptr_t)arg;

    st.woke_cpu[i] = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    st.woke_ns[i] = mono_ns();
    if (__atomic_add_fetch(&st.posts_run, 1, __ATOMIC_RELEASE) == ROUNDS)
        st.done = true;
}

static void *poster_main(void *arg)
{
    coho_sched_t *s = arg;

    for (int i = 0; i < ROUNDS && !gave_up(); i++) {
        usleep(2000);
        st.sent_ns[i] = mono_ns();
        if (coho_sched_post(s, counted_post, (void *)(intptr_t)i) != 0)
            break;
        st.sent_cpu[i] = clock_ns(st.sched_cpu);
        while (__atomic_load_n(&st.posts_run, __ATOMIC_ACQUIRE) <= i && !gave_up())
            usleep(100);
    }
    return NULL;
}

static void posts_from_another_thread_run_while_a_coroutine_yields(void **state)
{
    (void)state;
    uint64_t cpu[ROUNDS];
    pthread_t t;
    coho_sched_t *s = sched_for_test();

    assert_true(coho_spawn(s, spinner, NULL) != 0);
    assert_int_equal(pthread_create(&t, NULL, poster_main, s), 0);
    assert_int_equal(coho_sched_run(s), 0);
    pthread_join(t, NULL);
    coho_sched_destroy(s);

    latencies("post, 1 spinner", cpu);
    assert_false(gave_up());
    assert_int_equal(st.posts_run, ROUNDS);
    assert_within(cpu, 1000000u + TSAN_EXTRA_NS);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(recv_gets_data_within_1ms_while_one_coroutine_yields),
        cmocka_unit_test(recv_gets_data_within_1ms_while_four_coroutines_yield),
        cmocka_unit_test(sleeps_end_on_time_while_coroutines_yield),
        cmocka_unit_test(posts_from_another_thread_run_while_a_coroutine_yields),
    };

    return coho_test_main("sched_poll", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
