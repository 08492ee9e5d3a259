/* SPDX-License-Identifier: MIT */
/* Offload jobs across fork: a job whose work was running on a worker at the fork (a thread the
 * child does not have) completes in the child, with `lost`, or with `done` when it has none;
 * a job still queued runs in the child; the parent completes both normally. Every check made
 * in the child becomes its exit status. */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <stdint.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mio_driver/driver.h"
#include "test/support/cmocka_main.h"

static uint64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void pause_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

typedef struct job {
    int gate; /* >= 0: the work blocks reading one byte from it */
    atomic_int started;
    atomic_int worked; /* work returned */
    int done, lost;    /* completions seen on the driver's thread */
} job_t;

static void job_work(void *arg)
{
    job_t *j = arg;
    char c;

    atomic_store(&j->started, 1);
    if (j->gate >= 0)
        (void)!read(j->gate, &c, 1); /* a worker thread: the hook passes it through */
    atomic_store(&j->worked, 1);
}

static void job_done(void *arg)
{
    ((job_t *)arg)->done++;
}

static void job_lost(void *arg)
{
    ((job_t *)arg)->lost++;
}

/* Runs `d` until `cond` holds or `ms` pass; returns whether it held. */
#define RUN_UNTIL(d, cond, ms)                              \
    ({                                                      \
        uint64_t t0_ = mono_ms();                           \
        while (!(cond) && mono_ms() - t0_ < (uint64_t)(ms)) \
            (void)coho__driver_run_once((d), 10);           \
        (cond);                                             \
    })

/* One worker: `slow` runs (blocked on a pipe) and `queued` waits behind it when the process
 * forks. `with_lost` selects coho__driver_offload_ex with a lost callback for `slow`. */
static void fork_with_a_running_and_a_queued_job(bool with_lost)
{
    coho__driver_opts_t o;
    coho__driver_t *d;
    job_t slow = {0}, queued = {.gate = -1};
    int gate[2], status;
    pid_t pid;

    coho__driver_opts_init(&o);
    o.offload_threads = 1;
    d = coho__driver_create(&o);
    assert_non_null(d);
    assert_int_equal(pipe(gate), 0);
    slow.gate = gate[0];
    if (with_lost)
        assert_int_equal(coho__driver_offload_ex(d, job_work, job_done, job_lost, &slow), 0);
    else
        assert_int_equal(coho__driver_offload(d, job_work, job_done, &slow), 0);
    assert_int_equal(coho__driver_offload_ex(d, job_work, job_done, job_lost, &queued), 0);
    while (!atomic_load(&slow.started))
        pause_ms(1);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        uint64_t t0 = mono_ms();
        bool ok;

        if (with_lost)
            ok = RUN_UNTIL(d, slow.lost == 1 && queued.done == 1, 2000);
        else
            ok = RUN_UNTIL(d, slow.done == 1 && queued.done == 1, 2000);
        if (!ok)
            _exit(10);
        if (mono_ms() - t0 > 1000)
            _exit(11);
        pause_ms(50); /* nothing completes twice */
        (void)coho__driver_run_once(d, 0);
        if (slow.done + slow.lost != 1 || atomic_load(&slow.worked) || queued.done != 1 ||
            queued.lost != 0 || !atomic_load(&queued.worked))
            _exit(12);
        _exit(0);
    }
    /* The parent's jobs are untouched by the fork: the slow one ends when the gate opens. */
    assert_int_equal(write(gate[1], "g", 1), 1);
    assert_true(RUN_UNTIL(d, slow.done == 1 && queued.done == 1, 5000));
    assert_int_equal(slow.lost, 0);
    assert_int_equal(queued.lost, 0);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    coho__driver_destroy(d);
    close(gate[0]);
    close(gate[1]);
}

static void job_running_at_fork_completes_with_lost_in_the_child(void **state)
{
    (void)state;
    fork_with_a_running_and_a_queued_job(true);
}

static void job_running_at_fork_without_lost_completes_with_done_in_the_child(void **state)
{
    (void)state;
    fork_with_a_running_and_a_queued_job(false);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(job_running_at_fork_completes_with_lost_in_the_child),
        cmocka_unit_test(job_running_at_fork_without_lost_completes_with_done_in_the_child),
    };

    return coho_test_main("offload_fork", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
