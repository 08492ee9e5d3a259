/* SPDX-License-Identifier: MIT */
/* errno per coroutine (DESIGN.md "errno per coroutine"): each coroutine, and the scheduler's
 * own stack, reads back the errno it left before a park, whatever the others set meanwhile.
 * Coroutine bodies only record what they see; the cases assert after coho_sched_run. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

#include <coho.h>

#include "test/support/cmocka_main.h"

/* The ways a coroutine parks in these cases. */
enum park_kind { PARK_SLEEP, PARK_USLEEP, PARK_RECV };

typedef struct flow {
    enum park_kind kind;
    int set;        /* the errno this coroutine sets before it parks */
    unsigned ms;    /* how long it parks (sleeps) */
    int fd;         /* PARK_RECV: the socket it reads */
    int park_rc;    /* what the parking call returned */
    int seen;       /* errno right after the park */
    int seen_later; /* errno after a second park (a yield) */
    int after;      /* set after the park, to clobber the others if errno were shared */
    bool done;
} flow_t;

static int clobber_with(int e)
{
    errno = e;
    return e;
}

static void flow_main(void *arg)
{
    flow_t *f = arg;
    char c;

    if (f->set == EBADF)
        (void)close(-1); /* a real failing call: the hooked close sets EBADF */
    else
        errno = f->set;
    switch (f->kind) {
    case PARK_SLEEP:
        f->park_rc = coho_sleep_ms(f->ms);
        break;
    case PARK_USLEEP:
        f->park_rc = usleep(f->ms * 1000u);
        break;
    case PARK_RECV:
        f->park_rc = (int)recv(f->fd, &c, 1, 0);
        break;
    }
    f->seen = errno;
    (void)clobber_with(f->after);
    coho_yield();
    f->seen_later = errno;
    f->done = true;
}

/* Runs between every two switches of the flows until both are done, setting its own errno
 * each time; counts the times it did not read back its own value after a yield. */
typedef struct noise {
    const flow_t *a, *b;
    int rounds;
    int mismatches;
} noise_t;

static void noise_main(void *arg)
{
    noise_t *n = arg;

    while (!n->a->done || !n->b->done) {
        errno = EILSEQ;
        coho_yield();
        if (errno != EILSEQ)
            n->mismatches++;
        n->rounds++;
    }
}

/* Writes one byte to `fd` after `ms`, so a reader parked in recv wakes. */
typedef struct writer {
    int fd;
    unsigned ms;
} writer_t;

static void writer_main(void *arg)
{
    writer_t *w = arg;

    (void)clobber_with(ERANGE);
    (void)coho_sleep_ms(w->ms);
    (void)!write(w->fd, "x", 1);
    (void)clobber_with(EILSEQ);
}

static void run_two(flow_t *a, flow_t *b, writer_t *w)
{
    coho_sched_t *s = coho_sched_create(NULL);
    noise_t n = {.a = a, .b = b};

    assert_non_null(s);
    assert_int_not_equal(coho_spawn(s, noise_main, &n), 0);
    assert_int_not_equal(coho_spawn(s, flow_main, a), 0);
    assert_int_not_equal(coho_spawn(s, flow_main, b), 0);
    if (w != NULL)
        assert_int_not_equal(coho_spawn(s, writer_main, w), 0);
    assert_int_equal(coho_sched_run(s), 0);
    coho_sched_destroy(s);
    assert_true(n.rounds > 0);
    assert_int_equal(n.mismatches, 0);
}

static void check_flow(const flow_t *f, int expect)
{
    assert_int_equal(f->seen, expect);
    assert_int_equal(f->seen_later, f->after);
}

/* A (EBADF) parks longest; B (ENOENT) wakes first and leaves EPIPE behind; a third coroutine
 * sets EILSEQ between every two switches: none sees another's value. */
static void errno_survives_coho_sleep_ms_while_another_coroutine_sets_its_own(void **state)
{
    flow_t a = {.kind = PARK_SLEEP, .set = EBADF, .ms = 40, .after = EDOM};
    flow_t b = {.kind = PARK_SLEEP, .set = ENOENT, .ms = 10, .after = EPIPE};

    (void)state;
    run_two(&a, &b, NULL);
    assert_int_equal(a.park_rc, 0);
    assert_int_equal(b.park_rc, 0);
    check_flow(&a, EBADF);
    check_flow(&b, ENOENT);
}

static void errno_survives_hooked_usleep_while_another_coroutine_sets_its_own(void **state)
{
    flow_t a = {.kind = PARK_USLEEP, .set = EBADF, .ms = 40, .after = EDOM};
    flow_t b = {.kind = PARK_USLEEP, .set = ENOENT, .ms = 10, .after = EPIPE};

    (void)state;
    run_two(&a, &b, NULL);
    assert_int_equal(a.park_rc, 0);
    assert_int_equal(b.park_rc, 0);
    check_flow(&a, EBADF);
    check_flow(&b, ENOENT);
}

/* A parks in a blocking recv (its first attempt fails with EAGAIN inside the hook), B sleeps;
 * the writer wakes A in between. */
static void errno_survives_a_blocking_recv_while_another_coroutine_sets_its_own(void **state)
{
    int sv[2];
    flow_t a = {.kind = PARK_RECV, .set = EBADF, .after = EDOM};
    flow_t b = {.kind = PARK_SLEEP, .set = ENOENT, .ms = 60, .after = EPIPE};
    writer_t w = {.ms = 20};

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    a.fd = sv[0];
    w.fd = sv[1];
    run_two(&a, &b, &w);
    assert_int_equal(a.park_rc, 1);
    assert_int_equal(b.park_rc, 0);
    check_flow(&a, EBADF);
    check_flow(&b, ENOENT);
    close(sv[0]);
    close(sv[1]);
}

/* ---- the scheduler's own stack ---- */

static int post_seen = -1;
static int post_rc = -1;

static void probe_post(void *arg)
{
    (void)arg;
    post_seen = errno; /* runs on the scheduler's stack */
}

static void setter_main(void *arg)
{
    coho_sched_t *s = arg;

    errno = ENOENT;
    post_rc = coho_sched_post(s, probe_post, NULL);
    errno = EBADF;
    (void)coho_sleep_ms(20);
    errno = EPIPE;
}

static int first_seen = -1;

static void first_main(void *arg)
{
    (void)arg;
    first_seen = errno;
    errno = ERANGE;
}

static void scheduler_errno_is_not_clobbered_by_coroutines(void **state)
{
    coho_sched_t *s = coho_sched_create(NULL);
    int after_run;

    (void)state;
    assert_non_null(s);
    assert_int_not_equal(coho_spawn(s, setter_main, s), 0);
    assert_int_not_equal(coho_spawn(s, first_main, NULL), 0);
    errno = EDOM;
    assert_int_equal(coho_sched_run(s), 0);
    after_run = errno;
    coho_sched_destroy(s);
    assert_int_equal(post_rc, 0);
    assert_int_equal(post_seen, EDOM); /* between switches, on the scheduler's stack */
    assert_int_equal(after_run, EDOM);
}

/* As a new thread does, a new coroutine starts with errno 0, not its spawner's value. */
static void a_new_coroutine_starts_with_errno_zero(void **state)
{
    coho_sched_t *s = coho_sched_create(NULL);

    (void)state;
    assert_non_null(s);
    first_seen = -1;
    assert_int_not_equal(coho_spawn(s, first_main, NULL), 0);
    errno = EDOM;
    assert_int_equal(coho_sched_run(s), 0);
    coho_sched_destroy(s);
    assert_int_equal(first_seen, 0);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(errno_survives_coho_sleep_ms_while_another_coroutine_sets_its_own),
        cmocka_unit_test(errno_survives_hooked_usleep_while_another_coroutine_sets_its_own),
        cmocka_unit_test(errno_survives_a_blocking_recv_while_another_coroutine_sets_its_own),
        cmocka_unit_test(scheduler_errno_is_not_clobbered_by_coroutines),
        cmocka_unit_test(a_new_coroutine_starts_with_errno_zero),
    };

    return coho_test_main("sched_errno", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
