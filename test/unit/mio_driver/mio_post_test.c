/* SPDX-License-Identifier: MIT */
/* Cross-thread posts, signalfd delivery, the offload pool and fork. */
/* ctest: TIMEOUT=120 LABELS=slow */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mio_driver/driver.h"
#include "mio_driver/internal.h"
#include "test/support/cmocka_main.h"

/* ---- posts ---- */

enum { PRODUCERS = 4, PER_PRODUCER = 100000 };

typedef struct prod {
    coho__driver_t *d;
    unsigned id;
} prod_t;

static uint64_t next_seq[PRODUCERS];
static atomic_ulong delivered;
static int order_broken;
/* Posts that failed. The producers run on their own threads, where a CMocka assertion would
 * longjmp to the case's frame on another thread's stack: the case checks this instead. */
static atomic_uint post_failures;

static void on_post(void *arg)
{
    uintptr_t v = (uintptr_t)arg;
    unsigned p = (unsigned)(v >> 32);
    uint64_t seq = v & 0xffffffffu;

    if (next_seq[p] != seq)
        order_broken = 1;
    next_seq[p] = seq + 1;
    atomic_fetch_add(&delivered, 1);
}

static void *producer(void *arg)
{
    prod_t *p = arg;

    for (uint64_t i = 0; i < PER_PRODUCER; i++) {
        uintptr_t v = ((uintptr_t)p->id << 32) | (uintptr_t)i;

        if (coho__driver_post(p->d, on_post, (void *)v) != 0)
            atomic_fetch_add(&post_failures, 1);
    }
    return NULL;
}

static void post_from_four_threads_delivers_all_in_per_producer_order(void **state)
{
    coho__driver_t *d = coho__driver_create(NULL);
    pthread_t th[PRODUCERS];
    prod_t p[PRODUCERS];

    (void)state;
    atomic_store(&delivered, 0);
    atomic_store(&post_failures, 0);
    for (unsigned i = 0; i < PRODUCERS; i++) {
        p[i].d = d;
        p[i].id = i;
        next_seq[i] = 0;
        assert_int_equal(pthread_create(&th[i], NULL, producer, &p[i]), 0);
    }
    while (atomic_load(&delivered) < (unsigned long)PRODUCERS * PER_PRODUCER &&
           atomic_load(&post_failures) == 0)
        assert_true(coho__driver_run_once(d, 1000) >= 0);
    for (unsigned i = 0; i < PRODUCERS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&post_failures), 0);
    assert_int_equal(coho__driver_run_once(d, 0), 0); /* nothing extra */
    assert_false(order_broken);
    for (unsigned i = 0; i < PRODUCERS; i++)
        assert_int_equal(next_seq[i], PER_PRODUCER);
    coho__driver_destroy(d);
}

static void set_flag(void *arg)
{
    atomic_store((atomic_int *)arg, 1);
}

static void *post_later(void *arg)
{
    static atomic_int flag;
    struct timespec ts = {0, 50000000};

    nanosleep(&ts, NULL);
    coho__driver_post(arg, set_flag, &flag);
    return &flag;
}

static void post_wakes_a_loop_sleeping_without_timers(void **state)
{
    coho__driver_t *d = coho__driver_create(NULL);
    pthread_t th;
    void *flag;

    (void)state;
    assert_int_equal(pthread_create(&th, NULL, post_later, d), 0);
    assert_int_equal(coho__driver_run_once(d, -1), 1); /* blocks until the post arrives */
    pthread_join(th, &flag);
    assert_int_equal(atomic_load((atomic_int *)flag), 1);
    coho__driver_destroy(d);
}

static void *stop_later(void *arg)
{
    struct timespec ts = {0, 30000000};

    nanosleep(&ts, NULL);
    coho__driver_stop(arg);
    return NULL;
}

static void stop_from_another_thread_ends_run(void **state)
{
    coho__driver_t *d = coho__driver_create(NULL);
    pthread_t th;

    (void)state;
    assert_int_equal(pthread_create(&th, NULL, stop_later, d), 0);
    assert_int_equal(coho__driver_run(d), 0);
    pthread_join(th, NULL);
    coho__driver_destroy(d);
}

static void post_after_shutdown_is_eshutdown_and_accepted_posts_still_run(void **state)
{
    coho__driver_t *d = coho__driver_create(NULL);
    atomic_int a = 0, b = 0;

    (void)state;
    assert_int_equal(coho__driver_post(d, set_flag, &a), 0);
    coho__driver_shutdown(d);
    assert_int_equal(coho__driver_post(d, set_flag, &b), -ESHUTDOWN);
    assert_int_equal(coho__driver_offload(d, set_flag, NULL, &b), -ESHUTDOWN);
    assert_int_equal(coho__driver_run(d), 0); /* returns: shut down */
    assert_int_equal(coho__driver_run(d), 0); /* and keeps returning */
    coho__driver_destroy(d);                  /* runs what was accepted, at the latest */
    assert_int_equal(atomic_load(&a), 1);
    assert_int_equal(atomic_load(&b), 0);
}

static void noop_post(void *arg)
{
    (void)arg;
}

static void post_signals_the_eventfd_only_when_the_queue_was_empty(void **state)
{
    coho__driver_t *d = coho__driver_create(NULL);
    uint64_t v = 0;

    (void)state;
    for (int i = 0; i < 1000; i++)
        assert_int_equal(coho__driver_post(d, noop_post, NULL), 0);
    /* One write for the empty -> non-empty transition, none for the 999 others. */
    assert_int_equal(read(d->evfd, &v, sizeof(v)), (ssize_t)sizeof(v));
    assert_int_equal(v, 1);
    assert_int_equal(write(d->evfd, &v, sizeof(v)), (ssize_t)sizeof(v)); /* put it back */
    assert_int_equal(coho__driver_run_once(d, 0), 1000);
    assert_int_equal(coho__driver_post(d, noop_post, NULL), 0); /* empty again: signals */
    assert_int_equal(coho__driver_run_once(d, 0), 1);
    coho__driver_destroy(d);
}

static void destroy_runs_posts_accepted_before_it(void **state)
{
    coho__driver_t *d = coho__driver_create(NULL);
    atomic_int a = 0;

    (void)state;
    assert_int_equal(coho__driver_post(d, set_flag, &a), 0);
    coho__driver_destroy(d);
    assert_int_equal(atomic_load(&a), 1);
}

/* ---- signals ---- */

static int sig_seen;
static void on_signal(int signo, void *arg)
{
    (void)arg;
    sig_seen = signo;
}

static void signal_is_delivered_as_a_callback_on_the_loop(void **state)
{
    coho__driver_t *d = coho__driver_create(NULL);

    (void)state;
    sig_seen = 0;
    assert_int_equal(coho__driver_signal_start(d, SIGUSR1, on_signal, NULL), 0);
    assert_int_equal(coho__driver_signal_start(d, SIGUSR1, on_signal, NULL), -EINVAL);
    assert_int_equal(coho__driver_signal_start(d, SIGKILL, on_signal, NULL), -EINVAL);
    assert_int_equal(coho__driver_signal_start(d, 0, on_signal, NULL), -EINVAL);
    assert_int_equal(kill(getpid(), SIGUSR1), 0); /* blocked: waits in the signalfd */
    assert_int_equal(coho__driver_run_once(d, 1000), 1);
    assert_int_equal(sig_seen, SIGUSR1);
    assert_int_equal(coho__driver_signal_stop(d, SIGUSR1), 0);
    assert_int_equal(coho__driver_signal_stop(d, SIGUSR1), -EINVAL);
    coho__driver_destroy(d);
}

/* ---- offload ---- */

typedef struct job {
    pthread_t worker, done_thread;
    int sigs_all_blocked;
    int done;
    atomic_int started;
    sem_t *gate;
} job_t;

static void job_work(void *arg)
{
    job_t *j = arg;
    sigset_t cur;

    atomic_store(&j->started, 1);
    if (j->gate != NULL)
        sem_wait(j->gate);
    j->worker = pthread_self();
    pthread_sigmask(SIG_SETMASK, NULL, &cur);
    j->sigs_all_blocked = sigismember(&cur, SIGINT) && sigismember(&cur, SIGTERM) &&
                          sigismember(&cur, SIGUSR2) && sigismember(&cur, SIGCHLD);
}

static void job_done(void *arg)
{
    job_t *j = arg;

    j->done_thread = pthread_self();
    j->done = 1;
}

static void offload_runs_work_on_a_worker_with_signals_blocked_and_done_on_the_loop(void **state)
{
    coho__driver_t *d = coho__driver_create(NULL);
    job_t j = {0};

    (void)state;
    assert_int_equal(coho__driver_offload(d, job_work, job_done, &j), 0);
    while (!j.done)
        assert_true(coho__driver_run_once(d, 1000) >= 0);
    assert_false(pthread_equal(j.worker, pthread_self()));
    assert_true(pthread_equal(j.done_thread, pthread_self()));
    assert_true(j.sigs_all_blocked);
    coho__driver_destroy(d);
}

static void offload_on_a_full_queue_is_eagain_and_nothing_is_queued(void **state)
{
    coho__driver_opts_t o;
    coho__driver_t *d;
    sem_t gate;
    job_t j[6] = {{0}};

    (void)state;
    coho__driver_opts_init(&o);
    o.offload_threads = 1;
    o.offload_queue = 2;
    d = coho__driver_create(&o);
    assert_non_null(d);
    sem_init(&gate, 0, 0);
    for (int i = 0; i < 6; i++)
        j[i].gate = &gate;
    /* j0 occupies the only worker; then j1 and j2 fill the queue and j3..j5 are refused. */
    assert_int_equal(coho__driver_offload(d, job_work, job_done, &j[0]), 0);
    while (!atomic_load(&j[0].started))
        sched_yield();
    int queued = 1;
    for (int i = 1; i < 6; i++) {
        int rc = coho__driver_offload(d, job_work, job_done, &j[i]);

        assert_int_equal(rc, i <= 2 ? 0 : -EAGAIN);
        queued += rc == 0;
    }
    assert_int_equal(queued, 3);
    for (int i = 0; i < queued; i++)
        sem_post(&gate);
    int done = 0;
    while (done < queued) {
        assert_true(coho__driver_run_once(d, 1000) >= 0);
        done = 0;
        for (int i = 0; i < 6; i++)
            done += j[i].done;
    }
    /* The driver stays usable: a new job runs once there is room. */
    job_t extra = {0};
    assert_int_equal(coho__driver_offload(d, job_work, job_done, &extra), 0);
    while (!extra.done)
        coho__driver_run_once(d, 1000);
    coho__driver_destroy(d);
    sem_destroy(&gate);
}

/* ---- fork ---- */

static int child_timer, child_post, child_offload;
static void child_timer_cb(coho__timer_t *t)
{
    (void)t;
    child_timer = 1;
}
static void child_post_cb(void *arg)
{
    (void)arg;
    child_post = 1;
}
static void child_work(void *arg)
{
    (void)arg;
}
static void child_done(void *arg)
{
    (void)arg;
    child_offload = 1;
}

static int child_io;
static void child_io_cb(coho__io_t *io, unsigned events)
{
    char c;

    if ((events & COHO__EV_READ) && read(io->fd, &c, 1) == 1)
        child_io = 1;
}

static void fork_child_runs_a_timer_a_post_and_an_offload_job(void **state)
{
    coho__driver_t *d = coho__driver_create(NULL);
    job_t j = {0};
    pid_t pid;
    int status, sv[2];
    coho__io_t io;

    (void)state;
    /* A registration made before the fork must work in the child's new epoll fd. */
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    coho__io_init(&io, sv[0], child_io_cb, NULL);
    assert_int_equal(coho__io_start(d, &io, COHO__EV_READ, 0, -1), 0);
    /* The parent has used everything fork must re-create: workers, eventfd, epoll. */
    assert_int_equal(coho__driver_offload(d, job_work, job_done, &j), 0);
    while (!j.done)
        coho__driver_run_once(d, 1000);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        coho__timer_t t;

        coho__timer_init(&t, child_timer_cb, NULL);
        if (coho__timer_start(d, &t, 5, 0, 0) != 0 ||
            coho__driver_post(d, child_post_cb, NULL) != 0 ||
            coho__driver_offload(d, child_work, child_done, NULL) != 0 || write(sv[1], "c", 1) != 1)
            _exit(2);
        for (int i = 0; i < 200 && !(child_timer && child_post && child_offload && child_io); i++)
            if (coho__driver_run_once(d, 50) < 0)
                _exit(3);
        coho__driver_destroy(d);
        _exit(child_timer && child_post && child_offload && child_io ? 0 : 4);
    }
    /* Meanwhile the parent's driver still works and sees none of the child's wake-ups. */
    atomic_int a = 0;
    assert_int_equal(coho__driver_post(d, set_flag, &a), 0);
    while (!atomic_load(&a))
        coho__driver_run_once(d, 1000);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    coho__io_stop(d, &io);
    close(sv[0]);
    close(sv[1]);
    coho__driver_destroy(d);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(post_from_four_threads_delivers_all_in_per_producer_order),
        cmocka_unit_test(post_wakes_a_loop_sleeping_without_timers),
        cmocka_unit_test(stop_from_another_thread_ends_run),
        cmocka_unit_test(post_after_shutdown_is_eshutdown_and_accepted_posts_still_run),
        cmocka_unit_test(post_signals_the_eventfd_only_when_the_queue_was_empty),
        cmocka_unit_test(destroy_runs_posts_accepted_before_it),
        cmocka_unit_test(signal_is_delivered_as_a_callback_on_the_loop),
        cmocka_unit_test(offload_runs_work_on_a_worker_with_signals_blocked_and_done_on_the_loop),
        cmocka_unit_test(offload_on_a_full_queue_is_eagain_and_nothing_is_queued),
        cmocka_unit_test(fork_child_runs_a_timer_a_post_and_an_offload_job),
    };

    return coho_test_main("mio_post", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
