/* SPDX-License-Identifier: MIT */
/* The canary check of unguarded stacks: a coroutine whose canary word is overwritten aborts
 * at its next switch-out with a COHO_CHECK message naming it. Run in a forked child, whose
 * signal and stderr the parent checks. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <coho.h>

#include "coroutine/sched_impl.h"
#include "test/support/cmocka_main.h"

/* Runs fn() in a child with stderr captured; returns the wait status, output in out[len]. */
static int run_child(void (*fn)(void), char *out, size_t len)
{
    int fds[2];
    pid_t pid;
    size_t n = 0;
    int status = 0;

    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], STDERR_FILENO);
        fn();
        _exit(0);
    }
    close(fds[1]);
    for (;;) {
        ssize_t r = read(fds[0], out + n, len - 1 - n);

        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || n + (size_t)r >= len - 1) {
            if (r > 0)
                n += (size_t)r;
            break;
        }
        n += (size_t)r;
    }
    out[n] = '\0';
    close(fds[0]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return status;
}

static void breaks_own_canary(void *arg)
{
    coho__co_t *co = coho__co_current();

    (void)arg;
    /* the canary lies in the 16 bytes right below the stack's lowest usable address */
    memset((char *)co->stack.lo - 16, 0x5a, 16);
    coho_yield(); /* the switch-out checks it */
}

static void child_breaks_canary(void)
{
    coho_sched_opts_t o;
    coho_spawn_opts_t so;
    coho_sched_t *s;

    coho_sched_opts_init(&o);
    o.guarded_stacks_max = 0; /* every stack unguarded, with a canary */
    o.stack_size = 64 * 1024;
    s = coho_sched_create(&o);
    coho_spawn_opts_init(&so);
    so.name = "canary-breaker";
    coho_spawn_ex(s, breaks_own_canary, NULL, &so);
    coho_sched_run(s);
}

static void canary_breach_on_unguarded_stack_aborts_naming_the_coroutine(void **state)
{
    char out[8192];
    int st;

    (void)state;
    st = run_child(child_breaks_canary, out, sizeof(out));
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGABRT);
    assert_non_null(strstr(out, "(canary-breaker, entry "));
    if (strstr(out, ") overflowed its 64 KiB stack: the canary at the stack limit") == NULL)
        fail_msg("child said: %s", out);
}

static int yielded; /* coroutines that ran past their yield to their end */

static void yields_once(void *arg)
{
    (void)arg;
    coho_yield();
    yielded++;
}

static void intact_canary_lets_unguarded_coroutines_run(void **state)
{
    coho_sched_opts_t o;
    coho_sched_t *s;
    int i;

    (void)state;
    coho_sched_opts_init(&o);
    o.guarded_stacks_max = 0;
    s = coho_sched_create(&o);
    assert_non_null(s);
    yielded = 0;
    for (i = 0; i < 100; i++)
        assert_int_not_equal(coho_spawn(s, yields_once, NULL), 0);
    assert_int_equal(coho_sched_run(s), 0);
    coho_sched_destroy(s);
    assert_int_equal(yielded, 100);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(canary_breach_on_unguarded_stack_aborts_naming_the_coroutine),
        cmocka_unit_test(intact_canary_lets_unguarded_coroutines_run),
    };

    return coho_test_main("sched_canary", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
