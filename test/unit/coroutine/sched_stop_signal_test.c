/* SPDX-License-Identifier: MIT */
/* coho_sched_stop from a signal handler (the supported way to stop on SIGINT): the run returns
 * and parked coroutines see ECANCELED, whichever thread the handler interrupts, even one that
 * is inside coho_sched_post at that moment. Coroutine bodies and other threads only record;
 * the cases assert on their own stack. */
#define _GNU_SOURCE /* pthread_timedjoin_np */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <coho.h>

#include "test/support/cmocka_main.h"

static coho_sched_t *g_sched;
static atomic_int handled;

static void on_sigint(int signo)
{
    (void)signo;
    coho_sched_stop(g_sched);
    atomic_fetch_add(&handled, 1);
}

static struct sigaction old_action;

static void install_handler(void)
{
    struct sigaction sa = {0};

    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGINT, &sa, &old_action), 0);
}

static void restore_handler(void)
{
    assert_int_equal(sigaction(SIGINT, &old_action, NULL), 0);
}

static uint64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void pause_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};

    nanosleep(&ts, NULL); /* a plain thread: the hook passes the call through */
}

/* ---- coroutines that park until cancelled ---- */

static atomic_int parked;

typedef struct parker {
    int fd;   /* -1: sleep; else recv on it */
    long rc;  /* what the parking call returned */
    int err;  /* errno after it */
    bool end; /* the body ran to its end */
} parker_t;

static void parker_main(void *arg)
{
    parker_t *p = arg;
    char c;

    atomic_fetch_add(&parked, 1);
    if (p->fd < 0)
        p->rc = coho_sleep_ms(60000);
    else
        p->rc = (long)recv(p->fd, &c, 1, 0);
    p->err = errno;
    p->end = true;
}

static void check_cancelled(const parker_t *p)
{
    assert_true(p->end);
    assert_int_equal(p->rc, -1);
    assert_int_equal(p->err, ECANCELED);
}

/* Waits until both parkers have started, then a little longer so that they are parked. */
static void wait_parked(void)
{
    while (atomic_load(&parked) < 2)
        pause_us(1000);
    pause_us(20000);
}

/* ---- the handler interrupts the scheduler's own thread ---- */

static void *kill_main_thread(void *arg)
{
    wait_parked();
    pthread_kill(*(pthread_t *)arg, SIGINT);
    return NULL;
}

static void sigint_handler_calling_coho_sched_stop_ends_run_with_coroutines_parked(void **state)
{
    parker_t sleeper = {.fd = -1}, reader = {0};
    pthread_t self = pthread_self(), killer;
    int sv[2];
    uint64_t t0;

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    reader.fd = sv[0];
    g_sched = coho_sched_create(NULL);
    assert_non_null(g_sched);
    install_handler();
    assert_int_not_equal(coho_spawn(g_sched, parker_main, &sleeper), 0);
    assert_int_not_equal(coho_spawn(g_sched, parker_main, &reader), 0);
    assert_int_equal(pthread_create(&killer, NULL, kill_main_thread, &self), 0);
    t0 = mono_ms();
    assert_int_equal(coho_sched_run(g_sched), 0);
    assert_true(mono_ms() - t0 < 5000);
    assert_int_equal(pthread_join(killer, NULL), 0);
    restore_handler();
    coho_sched_destroy(g_sched);
    g_sched = NULL;
    assert_int_equal(atomic_load(&handled), 1);
    check_cancelled(&sleeper);
    check_cancelled(&reader);
    close(sv[0]);
    close(sv[1]);
}

/* ---- the handler interrupts another thread, maybe inside coho_sched_post ---- */

static atomic_bool stop_posting;
static atomic_long posts_made;

static void post_noop(void *arg)
{
    (void)arg;
}

/* Posts as fast as it can: most of the time it is inside coho_sched_post, holding the queue's
 * lock, when a signal lands. */
static void *poster_main(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop_posting)) {
        (void)coho_sched_post(g_sched, post_noop, NULL);
        atomic_fetch_add(&posts_made, 1);
    }
    return NULL;
}

enum { KICKS = 200 };

static void *kick_poster(void *arg)
{
    pthread_t poster = *(pthread_t *)arg;
    int i;

    wait_parked();
    while (atomic_load(&posts_made) < 1000)
        pause_us(100);
    for (i = 0; i < KICKS; i++) {
        pthread_kill(poster, SIGINT);
        pause_us(200);
    }
    atomic_store(&stop_posting, true);
    return NULL;
}

static void sigint_handler_on_a_thread_inside_coho_sched_post_stops_the_scheduler(void **state)
{
    parker_t sleeper = {.fd = -1}, reader = {0};
    pthread_t poster, kicker;
    sigset_t block, old;
    struct timespec limit;
    int sv[2];
    uint64_t t0;

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    reader.fd = sv[0];
    g_sched = coho_sched_create(NULL);
    assert_non_null(g_sched);
    install_handler();
    assert_int_not_equal(coho_spawn(g_sched, parker_main, &sleeper), 0);
    assert_int_not_equal(coho_spawn(g_sched, parker_main, &reader), 0);
    assert_int_equal(pthread_create(&poster, NULL, poster_main, NULL), 0);
    /* The kicker never takes the signal itself; the scheduler's thread is not its target. */
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    assert_int_equal(pthread_sigmask(SIG_BLOCK, &block, &old), 0);
    assert_int_equal(pthread_create(&kicker, NULL, kick_poster, &poster), 0);
    assert_int_equal(pthread_sigmask(SIG_SETMASK, &old, NULL), 0);
    t0 = mono_ms();
    assert_int_equal(coho_sched_run(g_sched), 0);
    assert_true(mono_ms() - t0 < 5000);
    assert_int_equal(pthread_join(kicker, NULL), 0);
    /* A handler that blocked on the lock its own thread held would never let the poster end. */
    clock_gettime(CLOCK_REALTIME, &limit);
    limit.tv_sec += 5;
    assert_int_equal(pthread_timedjoin_np(poster, NULL, &limit), 0);
    restore_handler();
    coho_sched_destroy(g_sched);
    g_sched = NULL;
    assert_true(atomic_load(&handled) >= 1);
    check_cancelled(&sleeper);
    check_cancelled(&reader);
    close(sv[0]);
    close(sv[1]);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sigint_handler_calling_coho_sched_stop_ends_run_with_coroutines_parked),
        cmocka_unit_test(sigint_handler_on_a_thread_inside_coho_sched_post_stops_the_scheduler),
    };

    return coho_test_main("sched_stop_signal", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
