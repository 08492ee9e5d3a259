/* SPDX-License-Identifier: MIT */
/* Choosing the poller backend, the fallback from io_uring to epoll, and what the io_uring
 * poller must guarantee: no stale completion reaches a new tenant of an fd number, a zero-timeout
 * wait sees what completed, a forked child gets a ring of its own, a removal drops the ring's
 * reference to the file before the close. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "coho/log.h"
#include "coho/sched.h"
#include "mio_driver/driver.h"
#include "test/support/cmocka_main.h"

typedef struct rec {
    unsigned n;
    unsigned last;
} rec_t;

static void rec_cb(coho__io_t *io, unsigned events)
{
    rec_t *r = io->data;

    r->n++;
    r->last = events;
}

/* io_uring where the kernel allows rings (kernel.io_uring_disabled 0); else the case skips. */
static coho__driver_t *uring_driver(void)
{
    coho__driver_opts_t o;
    coho__driver_t *d;
    FILE *f = fopen("/proc/sys/kernel/io_uring_disabled", "r");
    int off = 0;

    if (f != NULL) {
        if (fscanf(f, "%d", &off) != 1)
            off = 0;
        fclose(f);
    }
    if (off != 0)
        return NULL;
    coho__driver_opts_init(&o);
    o.backend = COHO__BACKEND_IO_URING;
    d = coho__driver_create(&o);
    assert_non_null(d);
    return d;
}

#define URING_OR_SKIP(d)                                                   \
    do {                                                                   \
        if ((d) == NULL) {                                                 \
            skip();                                                        \
            return;                                                        \
        }                                                                  \
        assert_int_equal(coho__driver_backend(d), COHO__BACKEND_IO_URING); \
    } while (0)

/* With COHO_BACKEND set to `env` (NULL: unset), a driver created without options runs on
 * `backend`. */
static void env_backend_is(const char *env, int backend)
{
    coho__driver_t *d;

    if (env == NULL)
        unsetenv("COHO_BACKEND");
    else
        setenv("COHO_BACKEND", env, 1);
    d = coho__driver_create(NULL);
    assert_non_null(d);
    assert_int_equal(coho__driver_backend(d), backend);
    coho__driver_destroy(d);
}

static void backend_default_is_io_uring_and_env_selects_epoll(void **state)
{
    coho__driver_t *d;

    (void)state;
    d = uring_driver();
    if (d == NULL) {
        skip();
        return;
    }
    coho__driver_destroy(d);
    env_backend_is(NULL, COHO__BACKEND_IO_URING);
    env_backend_is("epoll", COHO__BACKEND_EPOLL);
    env_backend_is("io_uring", COHO__BACKEND_IO_URING);
    /* A value that names no backend: the default, and a warning (not silently epoll). */
    env_backend_is("kqueue", COHO__BACKEND_IO_URING);
    unsetenv("COHO_BACKEND");
}

static void backend_sched_opts_choose_and_report_the_backend(void **state)
{
    coho_sched_opts_t o;
    coho_sched_t *s;

    (void)state;
    unsetenv("COHO_BACKEND");
    coho_sched_opts_init(&o);
    assert_int_equal(o.backend, COHO_BACKEND_DEFAULT);
    o.backend = COHO_BACKEND_EPOLL;
    s = coho_sched_create(&o);
    assert_non_null(s);
    assert_int_equal(coho_sched_backend(s), COHO_BACKEND_EPOLL);
    coho_sched_destroy(s);
    coho_sched_opts_init(&o);
    o.backend = COHO_BACKEND_IO_URING;
    s = coho_sched_create(&o);
    assert_non_null(s);
    coho_backend_t b = coho_sched_backend(s);

    coho_sched_destroy(s);
    coho__driver_t *d = uring_driver();

    if (d == NULL) {
        assert_int_equal(b, COHO_BACKEND_EPOLL);
        return;
    }
    coho__driver_destroy(d);
    assert_int_equal(b, COHO_BACKEND_IO_URING);
}

/* COHO_BACKEND_URING_FAIL=1 (test-only) makes the ring setup fail as seccomp would: every
 * driver falls back to epoll, and the log says so in exactly one line. */
static void backend_refused_ring_falls_back_to_epoll_with_one_log_line(void **state)
{
    const char *base = getenv("COHO_TEST_TMPDIR");
    char dir[512], path[600], line[1024];
    coho_log_opts_t lo;
    coho__driver_opts_t o;
    FILE *f;
    int lines = 0, hits = 0;

    (void)state;
    snprintf(dir, sizeof(dir), "%s/mio_backend_XXXXXX", base != NULL ? base : "/tmp");
    if (base != NULL)
        mkdir(base, 0755);
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/log", dir);
    coho_log_opts_init(&lo);
    lo.path = path;
    lo.level = COHO_LOG_INFO;
    assert_int_equal(coho_log_open(&lo), 0);
    setenv("COHO_BACKEND_URING_FAIL", "1", 1);
    coho__driver_opts_init(&o);
    o.backend = COHO__BACKEND_IO_URING;
    for (int i = 0; i < 3; i++) {
        coho__driver_t *d = coho__driver_create(&o);
        rec_t r = {0};
        coho__io_t io;
        int p[2];

        assert_non_null(d);
        assert_int_equal(coho__driver_backend(d), COHO__BACKEND_EPOLL);
        /* and the epoll it fell back to works */
        assert_int_equal(pipe2(p, O_NONBLOCK), 0);
        coho__io_init(&io, p[0], rec_cb, &r);
        assert_int_equal(coho__io_start(d, &io, COHO__EV_READ, 0, -1), 0);
        assert_int_equal(write(p[1], "x", 1), 1);
        for (int k = 0; k < 100 && r.n == 0; k++)
            assert_true(coho__driver_run_once(d, 100) >= 0);
        assert_true(r.n >= 1 && (r.last & COHO__EV_READ));
        coho__io_stop(d, &io);
        close(p[0]);
        close(p[1]);
        coho__driver_destroy(d);
    }
    unsetenv("COHO_BACKEND_URING_FAIL");
    assert_int_equal(coho_log_close(), 0);
    f = fopen(path, "r");
    assert_non_null(f);
    while (fgets(line, sizeof(line), f) != NULL) {
        lines++;
        if (strstr(line, "io_uring unavailable") != NULL && strstr(line, "-[info]-") != NULL)
            hits++;
    }
    fclose(f);
    unlink(path);
    rmdir(dir);
    assert_int_equal(hits, 1);
    assert_int_equal(lines, 1);
}

/* fd N gets readable and its registration is removed before the driver reaps the completion;
 * N is closed and reused by a new pipe whose registration must hear nothing of the old one. */
static void uring_stale_completion_never_reaches_a_new_tenant_of_the_number(void **state)
{
    coho__driver_t *d = uring_driver();
    rec_t r1 = {0}, r2 = {0};
    coho__io_t io1, io2;
    int p[2], q[2];

    (void)state;
    URING_OR_SKIP(d);
    for (int round = 0; round < 50; round++) {
        assert_int_equal(pipe2(p, O_NONBLOCK), 0);
        coho__io_init(&io1, p[0], rec_cb, &r1);
        assert_int_equal(coho__io_start(d, &io1, COHO__EV_READ, COHO__IO_EDGE, -1), 0);
        assert_true(coho__driver_run_once(d, 0) >= 0); /* the poll is in the kernel now */
        assert_int_equal(write(p[1], "x", 1), 1);      /* its completion is pending */
        assert_int_equal(coho__io_stop(d, &io1), 0);
        close(p[0]);
        close(p[1]);
        assert_int_equal(pipe2(q, O_NONBLOCK), 0);
        assert_int_equal(q[0], p[0]); /* the same number, a new file */
        coho__io_init(&io2, q[0], rec_cb, &r2);
        assert_int_equal(coho__io_start(d, &io2, COHO__EV_READ, COHO__IO_EDGE, -1), 0);
        assert_true(coho__driver_run_once(d, 0) >= 0);
        assert_true(coho__driver_run_once(d, 5) >= 0);
        assert_int_equal(r2.n, 0); /* nothing to read on the new pipe: no event */
        assert_int_equal(coho__io_stop(d, &io2), 0);
        close(q[0]);
        close(q[1]);
    }
    coho__driver_destroy(d);
}

/* A zero-timeout wait (the scheduler's poll while coroutines are ready) sees a completion
 * without any blocking wait in between. */
static void uring_zero_timeout_wait_sees_a_completion(void **state)
{
    coho__driver_t *d = uring_driver();
    rec_t r = {0};
    coho__io_t io;
    int p[2];

    (void)state;
    URING_OR_SKIP(d);
    assert_int_equal(pipe2(p, O_NONBLOCK), 0);
    coho__io_init(&io, p[0], rec_cb, &r);
    assert_int_equal(coho__io_start(d, &io, COHO__EV_READ, COHO__IO_EDGE, -1), 0);
    assert_true(coho__driver_run_once(d, 0) >= 0);
    assert_int_equal(r.n, 0);
    assert_int_equal(write(p[1], "x", 1), 1);
    for (int i = 0; i < 1000000 && r.n == 0; i++)
        assert_true(coho__driver_run_once(d, 0) >= 0);
    assert_int_equal(r.n, 1);
    assert_true(r.last & COHO__EV_READ);
    coho__io_stop(d, &io);
    close(p[0]);
    close(p[1]);
    coho__driver_destroy(d);
}

/* After io_stop the ring holds no reference to the socket: the close that follows sends FIN and
 * the peer reads EOF at once. */
static void uring_removed_registration_lets_close_reach_the_peer(void **state)
{
    coho__driver_t *d = uring_driver();
    rec_t r = {0};
    coho__io_t io;
    int sv[2];
    char c;

    (void)state;
    URING_OR_SKIP(d);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    coho__io_init(&io, sv[0], rec_cb, &r);
    assert_int_equal(coho__io_start(d, &io, COHO__EV_READ | COHO__EV_WRITE, COHO__IO_EDGE, -1), 0);
    assert_true(coho__driver_run_once(d, 0) >= 0);
    assert_true(coho__driver_run_once(d, 0) >= 0);
    assert_int_equal(coho__io_stop(d, &io), 0);
    close(sv[0]);
    /* blocking read: with the socket still referenced by a poll it would block for ever (the
     * ctest timeout fails the case) */
    assert_int_equal(read(sv[1], &c, 1), 0);
    close(sv[1]);
    coho__driver_destroy(d);
}

/* A forked child gets a ring of its own: its registrations report there, and the parent's ring
 * keeps working. */
static void uring_forked_child_gets_its_own_ring(void **state)
{
    coho__driver_t *d = uring_driver();
    rec_t r = {0};
    coho__io_t io;
    int p[2], status;
    pid_t pid;

    (void)state;
    URING_OR_SKIP(d);
    assert_int_equal(pipe2(p, O_NONBLOCK), 0);
    coho__io_init(&io, p[0], rec_cb, &r);
    assert_int_equal(coho__io_start(d, &io, COHO__EV_READ, COHO__IO_EDGE, -1), 0);
    assert_true(coho__driver_run_once(d, 0) >= 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int ok = coho__driver_backend(d) == COHO__BACKEND_IO_URING;

        if (write(p[1], "c", 1) != 1)
            _exit(3);
        for (int i = 0; i < 100 && r.n == 0; i++)
            if (coho__driver_run_once(d, 100) < 0)
                _exit(4);
        _exit(ok && r.n >= 1 && (r.last & COHO__EV_READ) ? 0 : 5);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    /* the child's byte is in the shared pipe; the parent's ring reports it too */
    for (int i = 0; i < 100 && r.n == 0; i++)
        assert_true(coho__driver_run_once(d, 100) >= 0);
    assert_true(r.n >= 1 && (r.last & COHO__EV_READ));
    coho__io_stop(d, &io);
    close(p[0]);
    close(p[1]);
    coho__driver_destroy(d);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(backend_default_is_io_uring_and_env_selects_epoll),
        cmocka_unit_test(backend_sched_opts_choose_and_report_the_backend),
        cmocka_unit_test(backend_refused_ring_falls_back_to_epoll_with_one_log_line),
        cmocka_unit_test(uring_stale_completion_never_reaches_a_new_tenant_of_the_number),
        cmocka_unit_test(uring_zero_timeout_wait_sees_a_completion),
        cmocka_unit_test(uring_removed_registration_lets_close_reach_the_peer),
        cmocka_unit_test(uring_forked_child_gets_its_own_ring),
    };

    return coho_test_main("mio_backend", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
