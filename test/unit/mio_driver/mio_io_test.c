/* SPDX-License-Identifier: MIT */
/* Driver fd events: readiness through socketpairs and pipes, level and edge triggering,
 * registration timeouts, stops inside a batch, and bad input. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "mio_driver/driver.h"
#include "test/support/cmocka_main.h"

static uint64_t mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

typedef struct rec {
    unsigned events[32];
    uint64_t at_ns[32];
    unsigned n;
    int drain; /* read everything on READ */
    coho__driver_t *d;
    coho__io_t *stop_other; /* stop this registration from the callback */
} rec_t;

static void rec_cb(coho__io_t *io, unsigned events)
{
    rec_t *r = io->data;

    if (r->n < 32) {
        r->events[r->n] = events;
        r->at_ns[r->n] = mono_ns();
    }
    r->n++;
    if (r->drain && (events & COHO__EV_READ)) {
        char buf[256];

        while (read(io->fd, buf, sizeof(buf)) > 0) {
        }
    }
    if (r->stop_other != NULL) {
        assert_int_equal(coho__io_stop(r->d, r->stop_other), 0);
        r->stop_other = NULL;
    }
}

static void io_socketpair_becomes_readable_then_reports_peer_hangup(void **state)
{
    coho__driver_t *d = coho__driver_create(NULL);
    int sv[2];
    coho__io_t io;
    rec_t r = {.drain = 1};

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    coho__io_init(&io, sv[0], rec_cb, &r);
    assert_int_equal(coho__io_start(d, &io, COHO__EV_READ, 0, -1), 0);
    assert_int_equal(coho__driver_run_once(d, 0), 0); /* nothing yet */
    assert_int_equal(write(sv[1], "x", 1), 1);
    assert_int_equal(coho__driver_run_once(d, 1000), 1);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.events[0], COHO__EV_READ);
    close(sv[1]);
    assert_int_equal(coho__driver_run_once(d, 1000), 1);
    assert_true(r.events[1] & COHO__EV_RDHUP);
    assert_true(r.events[1] & COHO__EV_READ); /* EOF reads as readable */
    assert_int_equal(coho__io_stop(d, &io), 0);
    close(sv[0]);
    coho__driver_destroy(d);
}

/* A stop while the registration has a wake-up not yet reported (data arrived after the last
 * wait): the close that follows still closes the socket, so the peer reads EOF. On io_uring a
 * POLL_REMOVE fails then (-EALREADY) and the poll it leaves armed would keep the file open. */
static void io_stop_with_a_wakeup_pending_lets_close_reach_the_peer(void **state)
{
    coho__driver_t *d = coho__driver_create(NULL);
    int sv[2];
    coho__io_t io;
    rec_t r = {0};
    struct pollfd p;
    ssize_t n;
    char c;

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    coho__io_init(&io, sv[0], rec_cb, &r);
    assert_int_equal(coho__io_start(d, &io, COHO__EV_READ, COHO__IO_EDGE, -1), 0);
    assert_int_equal(coho__driver_run_once(d, 0), 0); /* the registration reaches the kernel */
    assert_int_equal(write(sv[1], "x", 1), 1);        /* a wake-up, not reported yet */
    assert_int_equal(shutdown(sv[0], SHUT_RD), 0);    /* and another */
    assert_int_equal(coho__io_stop(d, &io), 0);
    close(sv[0]);
    p.fd = sv[1];
    p.events = POLLIN;
    p.revents = 0;
    assert_int_equal(poll(&p, 1, 2000), 1);
    assert_true(p.revents & (POLLIN | POLLHUP));
    n = recv(sv[1], &c, 1, MSG_DONTWAIT); /* EOF, or a reset (its data went unread) */
    assert_true(n == 0 || (n < 0 && errno == ECONNRESET));
    close(sv[1]);
    coho__driver_destroy(d);
}

static void io_pipe_write_end_is_writable_and_read_end_sees_hangup(void **state)
{
    coho__driver_t *d = coho__driver_create(NULL);
    int p[2];
    coho__io_t rd, wr;
    rec_t rr = {.drain = 1}, rw = {0};

    (void)state;
    assert_int_equal(pipe2(p, O_NONBLOCK), 0);
    coho__io_init(&rd, p[0], rec_cb, &rr);
    coho__io_init(&wr, p[1], rec_cb, &rw);
    assert_int_equal(coho__io_start(d, &rd, COHO__EV_READ, 0, -1), 0);
    assert_int_equal(coho__io_start(d, &wr, COHO__EV_WRITE, 0, -1), 0);
    assert_int_equal(coho__driver_run_once(d, 1000), 1);
    assert_int_equal(rw.n, 1);
    assert_int_equal(rw.events[0], COHO__EV_WRITE);
    assert_int_equal(coho__io_stop(d, &wr), 0);
    close(p[1]);
    assert_int_equal(coho__driver_run_once(d, 1000), 1);
    assert_true(rr.events[0] & COHO__EV_HUP);
    coho__io_stop(d, &rd);
    close(p[0]);
    coho__driver_destroy(d);
}

static void io_level_triggered_repeats_until_drained_and_edge_triggered_reports_once(void **state)
{
    coho__driver_t *d = coho__driver_create(NULL);
    int a[2], b[2];
    coho__io_t lvl, edge;
    rec_t rl = {0}, re = {0};

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, a), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, b), 0);
    coho__io_init(&lvl, a[0], rec_cb, &rl);
    coho__io_init(&edge, b[0], rec_cb, &re);
    assert_int_equal(coho__io_start(d, &lvl, COHO__EV_READ, 0, -1), 0);
    assert_int_equal(coho__io_start(d, &edge, COHO__EV_READ, COHO__IO_EDGE, -1), 0);
    assert_int_equal(write(a[1], "abc", 3), 3);
    assert_int_equal(write(b[1], "abc", 3), 3);
    for (int i = 0; i < 3; i++)
        coho__driver_run_once(d, 50);
    assert_int_equal(rl.n, 3); /* nobody read: level keeps reporting */
    assert_int_equal(re.n, 1); /* one edge */
    assert_int_equal(write(b[1], "d", 1), 1);
    coho__driver_run_once(d, 1000);
    assert_int_equal(re.n, 2); /* a new edge */
    coho__io_stop(d, &lvl);
    coho__io_stop(d, &edge);
    close(a[0]);
    close(a[1]);
    close(b[0]);
    close(b[1]);
    coho__driver_destroy(d);
}

static void io_modify_switches_interest_from_read_to_write(void **state)
{
    coho__driver_t *d = coho__driver_create(NULL);
    int sv[2];
    coho__io_t io;
    rec_t r = {0};

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    coho__io_init(&io, sv[0], rec_cb, &r);
    assert_int_equal(coho__io_start(d, &io, COHO__EV_READ, 0, -1), 0);
    assert_int_equal(coho__driver_run_once(d, 20), 0);
    assert_int_equal(coho__io_modify(d, &io, COHO__EV_WRITE, -1), 0);
    assert_int_equal(coho__driver_run_once(d, 1000), 1);
    assert_int_equal(r.events[0], COHO__EV_WRITE);
    coho__io_stop(d, &io);
    assert_int_equal(coho__io_modify(d, &io, COHO__EV_READ, -1), -ENOENT);
    close(sv[0]);
    close(sv[1]);
    coho__driver_destroy(d);
}

static void io_timeout_fires_without_events_and_restarts_after_an_event(void **state)
{
    coho__driver_t *d = coho__driver_create(NULL);
    int sv[2];
    coho__io_t io;
    rec_t r = {.drain = 1};

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    coho__io_init(&io, sv[0], rec_cb, &r);
    uint64_t t0 = mono_ns();
    assert_int_equal(coho__io_start(d, &io, COHO__EV_READ, 0, 30), 0);
    while (r.n < 1)
        coho__driver_run_once(d, -1);
    assert_int_equal(r.events[0], COHO__EV_TIMEOUT);
    assert_true(r.at_ns[0] - t0 >= 30000000ull);
    assert_true(r.at_ns[0] - t0 <= 60000000ull);
    /* An event 10 ms later pushes the next timeout to 30 ms after it. */
    struct timespec ts = {0, 10000000};
    nanosleep(&ts, NULL);
    assert_int_equal(write(sv[1], "x", 1), 1);
    while (r.n < 2)
        coho__driver_run_once(d, -1);
    assert_int_equal(r.events[1], COHO__EV_READ);
    while (r.n < 3)
        coho__driver_run_once(d, -1);
    assert_int_equal(r.events[2], COHO__EV_TIMEOUT);
    assert_true(r.at_ns[2] - r.at_ns[1] >= 30000000ull);
    assert_int_equal(coho__io_stop(d, &io), 0);
    assert_int_equal(coho__driver_next_timer_ms(d), -1); /* the timeout went with it */
    close(sv[0]);
    close(sv[1]);
    coho__driver_destroy(d);
}

static void io_stopped_by_an_earlier_callback_in_the_same_batch_is_not_called(void **state)
{
    coho__driver_t *d = coho__driver_create(NULL);
    int a[2], b[2];
    coho__io_t ia, ib;
    rec_t ra = {.d = d}, rb = {.d = d};

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, a), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, b), 0);
    coho__io_init(&ia, a[0], rec_cb, &ra);
    coho__io_init(&ib, b[0], rec_cb, &rb);
    ra.stop_other = &ib; /* whichever runs first stops the other */
    rb.stop_other = &ia;
    assert_int_equal(coho__io_start(d, &ia, COHO__EV_WRITE, 0, -1), 0);
    assert_int_equal(coho__io_start(d, &ib, COHO__EV_WRITE, 0, -1), 0);
    assert_int_equal(coho__driver_run_once(d, 1000), 1); /* both were ready, one ran */
    assert_int_equal(ra.n + rb.n, 1);
    close(a[0]);
    close(a[1]);
    close(b[0]);
    close(b[1]);
    coho__driver_destroy(d);
}

/* io_uring (COHO_BACKEND=io_uring) submits the poll with the next wait instead of making a
 * system call in io_start: a closed number is reported by the kernel then, as an error event. */
static void expect_error_event_on_uring(coho__driver_t *d, int fd, unsigned want)
{
    rec_t r = {.d = d};
    coho__io_t io;

    coho__io_init(&io, fd, rec_cb, &r);
    assert_int_equal(coho__io_start(d, &io, COHO__EV_READ, 0, -1), 0);
    for (int i = 0; i < 100 && r.n == 0; i++)
        assert_true(coho__driver_run_once(d, 100) >= 0);
    assert_true(r.n >= 1);
    assert_true((r.events[0] & want) != 0);
    assert_int_equal(coho__io_stop(d, &io), 0);
}

static void io_start_on_closed_or_unknown_fd_is_ebadf(void **state)
{
    coho__driver_t *d = coho__driver_create(NULL);
    coho__io_t io;
    int p[2];

    (void)state;
    assert_int_equal(pipe(p), 0);
    close(p[0]);
    close(p[1]);
    coho__io_init(&io, -1, rec_cb, NULL);
    assert_int_equal(coho__io_start(d, &io, COHO__EV_READ, 0, -1), -EBADF);
    if (coho__driver_backend(d) == COHO__BACKEND_IO_URING) {
        expect_error_event_on_uring(d, p[0], COHO__EV_ERROR);
        expect_error_event_on_uring(d, 100000, COHO__EV_ERROR);
        assert_int_equal(coho__driver_run_once(d, 0), 0); /* still consistent */
        coho__driver_destroy(d);
        return;
    }
    coho__io_init(&io, p[0], rec_cb, NULL);
    assert_int_equal(coho__io_start(d, &io, COHO__EV_READ, 0, -1), -EBADF);
    coho__io_init(&io, 100000, rec_cb, NULL);
    assert_int_equal(coho__io_start(d, &io, COHO__EV_READ, 0, -1), -EBADF);
    assert_false(io.active_);
    assert_int_equal(coho__io_stop(d, &io), -ENOENT);
    assert_int_equal(coho__driver_run_once(d, 0), 0); /* still consistent */
    coho__driver_destroy(d);
}

static void io_start_on_regular_file_is_eperm(void **state)
{
    coho__driver_t *d = coho__driver_create(NULL);
    char path[] = "/tmp/coho_mio_XXXXXX";
    int fd = mkstemp(path);
    coho__io_t io;

    (void)state;
    assert_true(fd >= 0);
    unlink(path);
    if (coho__driver_backend(d) == COHO__BACKEND_IO_URING) {
        /* io_uring polls a regular file as always ready, as poll(2) does. */
        expect_error_event_on_uring(d, fd, COHO__EV_READ);
    } else {
        coho__io_init(&io, fd, rec_cb, NULL);
        assert_int_equal(coho__io_start(d, &io, COHO__EV_READ, 0, -1), -EPERM);
        assert_false(io.active_);
    }
    close(fd);
    coho__driver_destroy(d);
}

static void io_start_twice_is_eexist_and_stop_twice_is_enoent(void **state)
{
    coho__driver_t *d = coho__driver_create(NULL);
    int sv[2];
    coho__io_t io, other;
    rec_t r = {0};

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    coho__io_init(&io, sv[0], rec_cb, &r);
    coho__io_init(&other, sv[0], rec_cb, &r);
    assert_int_equal(coho__io_start(d, &io, COHO__EV_READ, 0, -1), 0);
    assert_int_equal(coho__io_start(d, &io, COHO__EV_READ, 0, -1), -EEXIST);
    assert_int_equal(coho__io_start(d, &other, COHO__EV_READ, 0, -1), -EEXIST); /* same fd */
    assert_int_equal(coho__io_stop(d, &io), 0);
    assert_int_equal(coho__io_stop(d, &io), -ENOENT);
    assert_int_equal(coho__io_start(d, &other, COHO__EV_READ, 0, -1), 0); /* reusable */
    assert_int_equal(coho__io_stop(d, &other), 0);
    close(sv[0]);
    close(sv[1]);
    coho__driver_destroy(d);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(io_socketpair_becomes_readable_then_reports_peer_hangup),
        cmocka_unit_test(io_stop_with_a_wakeup_pending_lets_close_reach_the_peer),
        cmocka_unit_test(io_pipe_write_end_is_writable_and_read_end_sees_hangup),
        cmocka_unit_test(io_level_triggered_repeats_until_drained_and_edge_triggered_reports_once),
        cmocka_unit_test(io_modify_switches_interest_from_read_to_write),
        cmocka_unit_test(io_timeout_fires_without_events_and_restarts_after_an_event),
        cmocka_unit_test(io_stopped_by_an_earlier_callback_in_the_same_batch_is_not_called),
        cmocka_unit_test(io_start_on_closed_or_unknown_fd_is_ebadf),
        cmocka_unit_test(io_start_on_regular_file_is_eperm),
        cmocka_unit_test(io_start_twice_is_eexist_and_stop_twice_is_enoent),
    };

    return coho_test_main("mio_io", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
