/* SPDX-License-Identifier: MIT */
/* The internal block/wake protocol with tokens (coroutine/internal.h): results, timeouts,
 * cancellation, and the races where a stale or duplicate wake must be ignored. */
#include <errno.h>
#include <string.h>
#include <time.h>

#include <coho.h>

#include "coroutine/internal.h"
#include "test/support/cmocka_main.h"

static coho_sched_t *sched;

/* Every case creates the scheduler first and destroys it in run(). */
static void begin(void)
{
    sched = coho_sched_create(NULL);
    assert_non_null(sched);
}

static uint64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* A waiter publishes its id and token here, then parks. Coroutine bodies record what they
 * see and the case asserts it after coho_sched_run has returned: a CMocka assertion failing on
 * a coroutine's stack would longjmp across stacks, and one that never runs proves nothing. */
typedef struct wait_rec {
    uint64_t id;
    uint64_t token;
    int64_t timeout_ms;
    int result;
    int resumed; /* how many times coho__co_block returned */
    uint64_t waited_ms;
    int pre_rc; /* of the call made before blocking (a cancel or a wake of itself) */
} wait_rec_t;

static void waiter(void *arg)
{
    wait_rec_t *w = arg;
    uint64_t t0;

    w->id = coho_self();
    w->token = coho__co_block_prepare();
    t0 = mono_ms();
    w->result = coho__co_block(w->timeout_ms);
    w->waited_ms = mono_ms() - t0;
    w->resumed++;
}

static void run(void)
{
    assert_int_equal(coho_sched_run(sched), 0);
    coho_sched_destroy(sched);
    sched = NULL;
}

typedef struct waker_args {
    wait_rec_t *w;
    int rc1;
    int rc2;
    int join_rc;
    bool ended;
} waker_args_t;

static void wakes_twice(void *arg)
{
    waker_args_t *a = arg;

    a->rc1 = coho__co_wake(a->w->id, a->w->token, 42);
    a->rc2 = coho__co_wake(a->w->id, a->w->token, 43);
}

static void wake_with_the_current_token_resumes_once_with_its_result(void **state)
{
    wait_rec_t w = {0, 0, -1, 0, 0, 0, 1};
    waker_args_t a = {&w, 1, 1, 1, false};

    (void)state;
    begin();
    coho_spawn(sched, waiter, &w);
    coho_spawn(sched, wakes_twice, &a);
    run();
    assert_int_not_equal(w.token, 0);
    assert_int_equal(a.rc1, 0);
    assert_int_equal(a.rc2, -ESTALE); /* duplicate wake: ignored */
    assert_int_equal(w.result, 42);
    assert_int_equal(w.resumed, 1);
}

static void wakes_with_a_wrong_token(void *arg)
{
    waker_args_t *a = arg;

    a->rc1 = coho__co_wake(a->w->id, a->w->token + 1, 1);
    a->rc2 = coho__co_wake(a->w->id, a->w->token - 1, 2);
}

static void wake_with_a_stale_token_is_ignored(void **state)
{
    wait_rec_t w = {0, 0, 30, 0, 0, 0, 1};
    waker_args_t a = {&w, 1, 1, 1, false};

    (void)state;
    begin();
    coho_spawn(sched, waiter, &w);
    coho_spawn(sched, wakes_with_a_wrong_token, &a);
    run();
    assert_int_not_equal(w.token, 0);
    assert_int_equal(a.rc1, -ESTALE);
    assert_int_equal(a.rc2, -ESTALE);
    assert_int_equal(w.result, -ETIMEDOUT);
    assert_int_equal(w.resumed, 1);
}

static void block_timeout_returns_etimedout_no_earlier_than_the_timeout(void **state)
{
    wait_rec_t w = {0, 0, 25, 0, 0, 0, 1};

    (void)state;
    begin();
    coho_spawn(sched, waiter, &w);
    run();
    assert_int_equal(w.resumed, 1);
    assert_int_not_equal(w.token, 0);
    assert_int_equal(w.result, -ETIMEDOUT);
    assert_true(w.waited_ms + 1 >= 25);
    assert_true(w.waited_ms < 1000);
}

/* The race: the waiter's timeout and a driver timer that wakes it expire in the same loop
 * iteration (the thread is kept busy past both deadlines). Whichever runs first wins; the
 * other must be ignored and the waiter resumed exactly once. */
typedef struct race {
    wait_rec_t w;
    coho__timer_t t;
    int start_rc;
    int wake_rc;
    bool spun; /* the spinner ran to its end */
} race_t;

static void race_timer_fired(coho__timer_t *t)
{
    race_t *r = t->data;

    r->wake_rc = coho__co_wake(r->w.id, r->w.token, 7);
}

static void arms_racing_timer_then_spins(void *arg)
{
    race_t *r = arg;
    uint64_t t0;

    coho__timer_init(&r->t, race_timer_fired, r);
    r->start_rc = coho__timer_start(coho__sched_driver(sched), &r->t, 5, 0, 0);
    t0 = mono_ms();
    while (mono_ms() - t0 < 30) {
    }
    r->spun = true;
}

static void timer_and_wake_in_the_same_iteration_resume_the_waiter_once(void **state)
{
    race_t r;

    (void)state;
    begin();
    memset(&r, 0, sizeof(r));
    r.w.timeout_ms = 5;
    r.start_rc = 1;
    r.wake_rc = 1;
    coho_spawn(sched, waiter, &r.w);
    coho_spawn(sched, arms_racing_timer_then_spins, &r);
    run();
    assert_int_equal(r.start_rc, 0);
    assert_true(r.spun);
    assert_int_not_equal(r.w.token, 0);
    assert_int_equal(r.w.resumed, 1);
    if (r.wake_rc == 0) {
        assert_int_equal(r.w.result, 7);
    } else {
        assert_int_equal(r.wake_rc, -ESTALE);
        assert_int_equal(r.w.result, -ETIMEDOUT);
    }
}

static void cancels_then_wakes(void *arg)
{
    waker_args_t *a = arg;

    a->rc1 = coho_cancel(a->w->id);
    a->rc2 = coho__co_wake(a->w->id, a->w->token, 5);
}

static void wake_after_cancel_is_ignored(void **state)
{
    wait_rec_t w = {0, 0, -1, 0, 0, 0, 1};
    waker_args_t a = {&w, 1, 1, 1, false};

    (void)state;
    begin();
    coho_spawn(sched, waiter, &w);
    coho_spawn(sched, cancels_then_wakes, &a);
    run();
    assert_int_not_equal(w.token, 0);
    assert_int_equal(a.rc1, 0);
    assert_int_equal(a.rc2, -ESTALE);
    assert_int_equal(w.result, -ECANCELED);
    assert_int_equal(w.resumed, 1);
}

static void finishes_at_once(void *arg)
{
    wait_rec_t *w = arg;

    w->id = coho_self();
    w->token = coho__co_block_prepare();
    /* returns without blocking: the wait it opened dies with it */
}

static void wakes_finished_then_reaped(void *arg)
{
    waker_args_t *a = arg;

    coho_yield();
    a->rc1 = coho__co_wake(a->w->id, a->w->token, 1); /* finished, still joinable */
    a->join_rc = coho_join(a->w->id, -1);
    a->rc2 = coho__co_wake(a->w->id, a->w->token, 1); /* reaped */
    a->ended = true;
}

static void wake_of_a_finished_coroutine_is_ignored(void **state)
{
    wait_rec_t w = {0, 0, -1, 0, 0, 0, 1};
    waker_args_t a = {&w, 1, 1, 1, false};

    (void)state;
    begin();
    coho_spawn(sched, finishes_at_once, &w);
    coho_spawn(sched, wakes_finished_then_reaped, &a);
    run();
    assert_true(a.ended);
    assert_int_not_equal(w.token, 0);
    assert_int_equal(a.rc1, -ESTALE);
    assert_int_equal(a.join_rc, 0);
    assert_int_equal(a.rc2, -ESRCH);
}

static void cancel_self_then_block(void *arg)
{
    wait_rec_t *w = arg;

    w->pre_rc = coho_cancel(0);
    w->token = coho__co_block_prepare();
    w->result = coho__co_block(-1); /* must not park */
    w->resumed++;
}

static void cancel_before_block_returns_ecanceled_at_once(void **state)
{
    wait_rec_t w = {0, 0, -1, 0, 0, 0, 1};

    (void)state;
    begin();
    coho_spawn(sched, cancel_self_then_block, &w);
    run();
    assert_int_equal(w.pre_rc, 0);
    assert_int_equal(w.result, -ECANCELED);
    assert_int_equal(w.resumed, 1);
}

static void wake_self_then_block(void *arg)
{
    wait_rec_t *w = arg;
    uint64_t tok = coho__co_block_prepare();

    /* a wake that lands between prepare and block (e.g. from a callback the coroutine ran
     * itself) makes block return at once */
    w->pre_rc = coho__co_wake(coho_self(), tok, 9);
    w->result = coho__co_block(-1);
    w->resumed++;
}

static void wake_before_block_makes_block_return_at_once(void **state)
{
    wait_rec_t w = {0, 0, -1, 0, 0, 0, 1};

    (void)state;
    begin();
    coho_spawn(sched, wake_self_then_block, &w);
    run();
    assert_int_equal(w.pre_rc, 0);
    assert_int_equal(w.result, 9);
    assert_int_equal(w.resumed, 1);
}

typedef struct two_waits {
    uint64_t t1, t2;
    int wake_t1_rc; /* while the second wait is open */
    int block_rc;   /* of the second wait, with timeout 0 */
    int wake_t2_rc; /* after the second wait ended */
    bool ended;
} two_waits_t;

static void new_wait_makes_the_previous_token_stale_co(void *arg)
{
    two_waits_t *r = arg;

    r->t1 = coho__co_block_prepare();
    r->t2 = coho__co_block_prepare();
    r->wake_t1_rc = coho__co_wake(coho_self(), r->t1, 1);
    r->block_rc = coho__co_block(0);
    r->wake_t2_rc = coho__co_wake(coho_self(), r->t2, 1); /* that wait ended */
    r->ended = true;
}

static void new_wait_makes_the_previous_token_stale(void **state)
{
    two_waits_t r = {0, 0, 1, 1, 1, false};

    (void)state;
    begin();
    coho_spawn(sched, new_wait_makes_the_previous_token_stale_co, &r);
    run();
    assert_true(r.ended);
    assert_int_not_equal(r.t1, 0);
    assert_int_not_equal(r.t1, r.t2);
    assert_int_equal(r.wake_t1_rc, -ESTALE);
    assert_int_equal(r.block_rc, -ETIMEDOUT);
    assert_int_equal(r.wake_t2_rc, -ESTALE);
}

typedef struct post_wake {
    wait_rec_t w;
    int post_rc;
    int rc;
} post_wake_t;

static void wake_from_post(void *arg)
{
    post_wake_t *p = arg;

    p->rc = coho__co_wake(p->w.id, p->w.token, 11);
}

static void posts_a_wake(void *arg)
{
    post_wake_t *p = arg;

    p->post_rc = coho__sched_post(sched, wake_from_post, p);
}

static void wake_from_a_driver_callback_resumes_the_waiter(void **state)
{
    post_wake_t p;

    (void)state;
    begin();
    memset(&p, 0, sizeof(p));
    p.w.timeout_ms = 5000;
    p.post_rc = 1;
    p.rc = 1;
    coho_spawn(sched, waiter, &p.w);
    coho_spawn(sched, posts_a_wake, &p);
    run();
    assert_int_equal(p.post_rc, 0);
    assert_int_not_equal(p.w.token, 0);
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.w.resumed, 1);
    assert_int_equal(p.w.result, 11);
    assert_true(p.w.waited_ms < 4000);
}

typedef struct flags_rec {
    bool had_flags;       /* coho__co_flags() was not NULL */
    uint32_t at_start;    /* the first coroutine's, before it sets NOHOOK */
    uint32_t after_yield; /* the first coroutine's, after the other one ran */
    uint32_t other;       /* the second coroutine's, while the first one has NOHOOK */
    int ended;            /* coroutines that ran to their end */
} flags_rec_t;

static void flags_are_per_coroutine_co(void *arg)
{
    flags_rec_t *r = arg;
    uint32_t *f = coho__co_flags();

    r->had_flags = f != NULL;
    if (f == NULL)
        return;
    r->at_start = *f;
    *f |= COHO__CO_FLAG_NOHOOK;
    coho_yield();
    r->after_yield = *coho__co_flags();
    r->ended++;
}

static void flags_are_per_coroutine_other(void *arg)
{
    flags_rec_t *r = arg;

    r->other = *coho__co_flags();
    r->ended++;
}

static void coroutine_flags_are_per_coroutine(void **state)
{
    flags_rec_t r = {false, ~0u, 0, ~0u, 0};

    (void)state;
    begin();
    coho_spawn(sched, flags_are_per_coroutine_co, &r);
    coho_spawn(sched, flags_are_per_coroutine_other, &r);
    run();
    assert_true(r.had_flags);
    assert_int_equal(r.ended, 2);
    assert_int_equal(r.at_start, 0);
    assert_int_equal(r.other, 0);
    assert_int_equal(r.after_yield, COHO__CO_FLAG_NOHOOK);
}

/* ---- randomized: wakes, duplicate and stale wakes, timeouts and cancels racing ---- */

enum { RW_WAITERS = 200, RW_ROUNDS = 6, RW_AGITATORS = 4 };

typedef struct rw_slot {
    uint64_t id;
    uint64_t token; /* published token, 0 while not waiting */
    uint64_t stale_token;
    int resumed;
    int bad;
    bool finished;
} rw_slot_t;

static rw_slot_t rw[RW_WAITERS];
static uint64_t rw_seed;
static int rw_agitators_left;
static int rw_outcomes[3]; /* woken, timed out, cancelled */

static int rw_result_for(uint64_t token)
{
    return (int)(token & 0xffff) + 1; /* > 0: told apart from -ETIMEDOUT / -ECANCELED */
}

static void rw_waiter(void *arg)
{
    rw_slot_t *sl = arg;
    uint64_t st = rw_seed ^ (uint64_t)(uintptr_t)arg;

    for (int r = 0; r < RW_ROUNDS; r++) {
        uint64_t tok = coho__co_block_prepare();
        int64_t timeout = coho_test_rand(&st) % 3 == 0 ? -1 : (int64_t)(coho_test_rand(&st) % 4);
        int rc;

        sl->token = tok;
        rc = coho__co_block(timeout);
        sl->stale_token = tok;
        sl->token = 0;
        sl->resumed++;
        if (rc > 0 && rc != rw_result_for(tok))
            sl->bad++; /* a wake meant for another wait got through */
        if (rc <= 0 && rc != -ETIMEDOUT && rc != -ECANCELED)
            sl->bad++;
        if (rc == -ETIMEDOUT && timeout < 0)
            sl->bad++;
        rw_outcomes[rc > 0 ? 0 : rc == -ETIMEDOUT ? 1 : 2]++;
        if (rc == -ECANCELED)
            break;
    }
    sl->finished = true;
}

static void rw_agitator(void *arg)
{
    uint64_t st = rw_seed + (uint64_t)(uintptr_t)arg;

    for (int i = 0; i < 3000; i++) {
        rw_slot_t *sl = &rw[coho_test_rand(&st) % RW_WAITERS];
        unsigned what = (unsigned)(coho_test_rand(&st) % 16);
        uint64_t tok = sl->token;

        if (what < 10 && tok != 0) {
            int rc1 = coho__co_wake(sl->id, tok, rw_result_for(tok));
            int rc2 = coho__co_wake(sl->id, tok, rw_result_for(tok)); /* duplicate */

            if ((rc1 != 0 && rc1 != -ESTALE) || rc2 != -ESTALE)
                sl->bad++;
        } else if (what < 13 && sl->stale_token != 0) {
            int rc = coho__co_wake(sl->id, sl->stale_token, 1);

            if (rc != -ESTALE && rc != -ESRCH)
                sl->bad++;
        } else if (what == 13) {
            coho_cancel(sl->id);
        }
        if (coho_test_rand(&st) % 8 == 0)
            coho_sleep_ms(coho_test_rand(&st) % 2);
        else
            coho_yield();
    }
    if (--rw_agitators_left == 0) {
        for (int i = 0; i < RW_WAITERS; i++)
            if (!rw[i].finished)
                coho_cancel(rw[i].id); /* ends the waits nobody will wake */
    }
}

static void random_wakes_timeouts_and_cancels_resume_each_wait_exactly_once(void **state)
{
    coho_spawn_opts_t o;
    int i;

    (void)state;
    begin();
    rw_seed = coho_test_seed();
    memset(rw, 0, sizeof(rw));
    rw_agitators_left = RW_AGITATORS;
    memset(rw_outcomes, 0, sizeof(rw_outcomes));
    coho_spawn_opts_init(&o);
    o.detached = true;
    for (i = 0; i < RW_WAITERS; i++) {
        rw[i].id = coho_spawn_ex(sched, rw_waiter, &rw[i], &o);
        assert_int_not_equal(rw[i].id, 0);
    }
    for (i = 0; i < RW_AGITATORS; i++)
        coho_spawn_ex(sched, rw_agitator, (void *)(uintptr_t)(i + 1), &o);
    run();
    for (i = 0; i < RW_WAITERS; i++) {
        assert_true(rw[i].finished);
        assert_int_equal(rw[i].bad, 0);
        assert_true(rw[i].resumed >= 1 && rw[i].resumed <= RW_ROUNDS);
    }
    /* every kind of ending happened */
    assert_true(rw_outcomes[0] > 0);
    assert_true(rw_outcomes[1] > 0);
    assert_true(rw_outcomes[2] > 0);
}

/* ---- lazy wait timers: a wait woken in time leaves its timer armed ----
 * LAZY_N coroutines each wait LAZY_ROUNDS times with a timeout; a waker ends every wait but the
 * last of each coroutine early, so each one's timer is still armed for an earlier wait's
 * deadline when the last wait starts. The last waits get no wake: every one must end with
 * -ETIMEDOUT, none before its own deadline, none stuck until much later. */
#define LAZY_N      200
#define LAZY_ROUNDS 4
#define LAZY_TMO_MS 60

typedef struct lazy_waiter {
    uint64_t id;
    uint64_t token; /* of the open wait; 0: none */
    bool last;      /* the open wait is the last one: no wake */
    int early_timeouts;
    int last_rc;
    uint64_t last_waited_ms;
    int early_bad; /* an early wait that ended with neither 0 nor a timeout past its deadline */
    bool done;
} lazy_waiter_t;

static lazy_waiter_t lazy[LAZY_N];
static int lazy_done;

static void lazy_wait_loop(void *arg)
{
    lazy_waiter_t *w = arg;

    w->id = coho_self();
    for (int r = 0; r < LAZY_ROUNDS; r++) {
        uint64_t t0 = mono_ms();
        int rc;

        w->last = r == LAZY_ROUNDS - 1;
        w->token = coho__co_block_prepare();
        rc = coho__co_block(LAZY_TMO_MS);
        w->token = 0;
        if (w->last) {
            w->last_rc = rc;
            w->last_waited_ms = mono_ms() - t0;
        } else if (rc == -ETIMEDOUT && mono_ms() - t0 + 1 >= LAZY_TMO_MS) {
            w->early_timeouts++; /* a loaded machine may stall the waker that long: allowed */
        } else if (rc != 0) {
            w->early_bad++;
        }
        coho_sleep_ms((uint64_t)(r + 1)); /* the next wait starts later: a later deadline */
    }
    w->done = true;
    lazy_done++;
}

static void lazy_waker(void *arg)
{
    (void)arg;
    while (lazy_done < LAZY_N) {
        for (int i = 0; i < LAZY_N; i++) {
            if (lazy[i].token != 0 && !lazy[i].last)
                coho__co_wake(lazy[i].id, lazy[i].token, 0);
        }
        coho_sleep_ms(1);
    }
}

static void waits_woken_in_time_leave_timers_that_still_time_out_later_waits(void **state)
{
    (void)state;
    memset(lazy, 0, sizeof(lazy));
    lazy_done = 0;
    begin();
    for (int i = 0; i < LAZY_N; i++)
        assert_int_not_equal(coho_spawn(sched, lazy_wait_loop, &lazy[i]), 0);
    assert_int_not_equal(coho_spawn(sched, lazy_waker, NULL), 0);
    run();
    for (int i = 0; i < LAZY_N; i++) {
        assert_true(lazy[i].done);
        assert_int_equal(lazy[i].early_bad, 0);
        assert_int_equal(lazy[i].last_rc, -ETIMEDOUT);
        assert_true(lazy[i].last_waited_ms + 1 >= LAZY_TMO_MS);
        assert_true(lazy[i].last_waited_ms < 5000);
    }
}

/* A wait with a long timeout woken at once leaves its timer armed far ahead; a later wait with a
 * short timeout must still end at its own, earlier deadline. */
typedef struct short_after_long {
    uint64_t id;
    uint64_t token;
    int rc_long, rc_short;
    uint64_t short_waited_ms;
} short_after_long_t;

static void short_after_long_waiter(void *arg)
{
    short_after_long_t *a = arg;
    uint64_t t0;

    a->id = coho_self();
    a->token = coho__co_block_prepare();
    a->rc_long = coho__co_block(60000);
    a->token = 0;
    t0 = mono_ms();
    coho__co_block_prepare();
    a->rc_short = coho__co_block(30);
    a->short_waited_ms = mono_ms() - t0;
}

static void short_after_long_waker(void *arg)
{
    short_after_long_t *a = arg;

    coho_yield(); /* the waiter is parked now */
    coho__co_wake(a->id, a->token, 0);
}

static void wait_with_an_earlier_deadline_than_the_armed_timer_ends_at_its_own(void **state)
{
    short_after_long_t a = {0};

    (void)state;
    begin();
    assert_int_not_equal(coho_spawn(sched, short_after_long_waiter, &a), 0);
    assert_int_not_equal(coho_spawn(sched, short_after_long_waker, &a), 0);
    run();
    assert_int_equal(a.rc_long, 0);
    assert_int_equal(a.rc_short, -ETIMEDOUT);
    assert_true(a.short_waited_ms + 1 >= 30);
    assert_true(a.short_waited_ms < 30000);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(wake_with_the_current_token_resumes_once_with_its_result),
        cmocka_unit_test(waits_woken_in_time_leave_timers_that_still_time_out_later_waits),
        cmocka_unit_test(wait_with_an_earlier_deadline_than_the_armed_timer_ends_at_its_own),
        cmocka_unit_test(wake_with_a_stale_token_is_ignored),
        cmocka_unit_test(block_timeout_returns_etimedout_no_earlier_than_the_timeout),
        cmocka_unit_test(timer_and_wake_in_the_same_iteration_resume_the_waiter_once),
        cmocka_unit_test(wake_after_cancel_is_ignored),
        cmocka_unit_test(wake_of_a_finished_coroutine_is_ignored),
        cmocka_unit_test(cancel_before_block_returns_ecanceled_at_once),
        cmocka_unit_test(wake_before_block_makes_block_return_at_once),
        cmocka_unit_test(new_wait_makes_the_previous_token_stale),
        cmocka_unit_test(wake_from_a_driver_callback_resumes_the_waiter),
        cmocka_unit_test(coroutine_flags_are_per_coroutine),
        cmocka_unit_test(random_wakes_timeouts_and_cancels_resume_each_wait_exactly_once),
    };

    return coho_test_main("sched_block", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
