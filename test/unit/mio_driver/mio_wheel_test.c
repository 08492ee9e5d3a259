/* SPDX-License-Identifier: MIT */
/* The timer wheel without a driver: exact ticks through every level and the overflow heap,
 * next-tick bounds, and a randomized differential test against a plain heap model. */
/* ctest: TIMEOUT=120 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mio_driver/wheel.h"
#include "test/support/cmocka_main.h"

typedef struct rec {
    uint64_t tick;
    unsigned id;
} rec_t;

typedef struct fired {
    rec_t *r;
    size_t n, cap;
} fired_t;

typedef struct tt {
    coho__timer_t t;
    unsigned id;
} tt_t;

static void record_fire(void *ctx, coho_list_t *due, uint64_t tick)
{
    fired_t *f = ctx;
    coho_list_t *n;

    while ((n = coho_list_pop_front(due)) != NULL) {
        tt_t *x = coho_container_of(n, tt_t, t.link);

        x->t.state = COHO__TIMER_IDLE;
        if (f->n == f->cap) {
            f->cap = f->cap ? f->cap * 2 : 64;
            f->r = realloc(f->r, f->cap * sizeof(*f->r));
            assert_non_null(f->r);
        }
        f->r[f->n].tick = tick;
        f->r[f->n].id = x->id;
        f->n++;
    }
}

static void arm(coho__wheel_t *w, tt_t *x, unsigned id, uint64_t tick)
{
    memset(x, 0, sizeof(*x));
    coho_list_init(&x->t.link);
    coho__heap_node_init(&x->t.heap);
    x->id = id;
    x->t.expire_tick = tick;
    assert_int_equal(coho__wheel_add(w, &x->t), 0);
}

static void wheel_fires_each_level_timer_in_its_exact_tick(void **state)
{
    static const uint64_t at[] = {0,
                                  1,
                                  255,
                                  256,
                                  257,
                                  300,
                                  16383,
                                  16384,
                                  20000,
                                  (1u << 20) + 5,
                                  (1u << 26) - 1,
                                  (1u << 27) + 3,
                                  UINT64_C(0xffffffff),
                                  UINT64_C(0x100000000) + 7,
                                  UINT64_C(0x300000000) + 1};
    const size_t n = sizeof(at) / sizeof(at[0]);
    coho__wheel_t *w = malloc(sizeof(*w));
    tt_t x[sizeof(at) / sizeof(at[0])];
    fired_t f = {0};

    (void)state;
    coho__wheel_init(w, 0);
    for (size_t i = 0; i < n; i++)
        arm(w, &x[i], (unsigned)i, at[i]);
    assert_int_equal(coho__wheel_count(w), n);
    /* Advance in uneven steps, checking nothing fires before its tick. */
    uint64_t now = 0, step = 1;
    while (f.n < n) {
        coho__wheel_advance(w, now, record_fire, &f);
        for (size_t i = 0; i < f.n; i++)
            assert_true(f.r[i].tick <= now);
        now += step;
        step = step * 3 + 1;
        if (step > (UINT64_C(1) << 30))
            step = 1;
    }
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(f.r[i].id, i);
        assert_int_equal(f.r[i].tick, at[i]);
    }
    assert_int_equal(coho__wheel_count(w), 0);
    assert_int_equal(coho__wheel_next_tick(w), COHO__WHEEL_NEVER);
    coho__wheel_destroy(w);
    free(w);
    free(f.r);
}

static void wheel_timer_added_in_the_past_fires_at_next_processed_tick(void **state)
{
    coho__wheel_t *w = malloc(sizeof(*w));
    tt_t x;
    fired_t f = {0};

    (void)state;
    coho__wheel_init(w, 1000);
    arm(w, &x, 1, 10);
    assert_int_equal(coho__wheel_next_tick(w), 1000);
    coho__wheel_advance(w, 999, record_fire, &f);
    assert_int_equal(f.n, 0);
    coho__wheel_advance(w, 1000, record_fire, &f);
    assert_int_equal(f.n, 1);
    assert_int_equal(f.r[0].tick, 1000);
    coho__wheel_destroy(w);
    free(w);
    free(f.r);
}

static void wheel_del_of_idle_timer_is_enoent(void **state)
{
    coho__wheel_t *w = malloc(sizeof(*w));
    tt_t x;

    (void)state;
    coho__wheel_init(w, 0);
    arm(w, &x, 1, 5000);
    assert_int_equal(coho__wheel_del(w, &x.t), 0);
    assert_int_equal(coho__wheel_del(w, &x.t), -ENOENT);
    assert_int_equal(coho__wheel_count(w), 0);
    assert_int_equal(coho__wheel_next_tick(w), COHO__WHEEL_NEVER);
    arm(w, &x, 1, UINT64_C(1) << 40);
    assert_int_equal(coho__wheel_del(w, &x.t), 0);
    assert_int_equal(coho__wheel_del(w, &x.t), -ENOENT);
    coho__wheel_destroy(w);
    free(w);
}

static void wheel_skips_a_long_stall_and_fires_in_order(void **state)
{
    coho__wheel_t *w = malloc(sizeof(*w));
    tt_t x[3];
    fired_t f = {0};

    (void)state;
    coho__wheel_init(w, 0);
    arm(w, &x[0], 0, 700000);
    arm(w, &x[1], 1, 3);
    arm(w, &x[2], 2, 90000);
    coho__wheel_advance(w, 10000000, record_fire, &f);
    assert_int_equal(f.n, 3);
    assert_int_equal(f.r[0].id, 1);
    assert_int_equal(f.r[1].id, 2);
    assert_int_equal(f.r[2].id, 0);
    assert_int_equal(f.r[2].tick, 700000);
    assert_int_equal(w->cur, 10000001);
    coho__wheel_destroy(w);
    free(w);
    free(f.r);
}

/* ---- differential test against a plain heap model ---- */

enum { DIFF_N = 4000, DIFF_STEPS = 100000 };

typedef struct mt {
    coho__timer_t t;     /* the wheel's */
    coho__heap_node_t m; /* the model's */
    uint64_t due;        /* the tick the model says it fires in */
    unsigned id;
    int armed; /* 1 in the model heap; 2 popped for the tick being fired */
    unsigned fired;
} mt_t;

typedef struct diff {
    coho__wheel_t *w;
    coho__heap_t model;
    mt_t *t;
    uint64_t rng;
    uint64_t seq;
    size_t fires, ticks;
} diff_t;

static bool model_less(const coho__heap_node_t *a, const coho__heap_node_t *b)
{
    const mt_t *x = coho_container_of(a, mt_t, m), *y = coho_container_of(b, mt_t, m);

    return x->due < y->due || (x->due == y->due && x->id < y->id);
}

static uint64_t rnd(diff_t *s)
{
    return coho_test_rand(&s->rng);
}

static uint64_t random_delay(diff_t *s)
{
    switch (rnd(s) % 8) {
    case 0:
        return 0;
    case 1:
    case 2:
        return rnd(s) % 300;
    case 3:
    case 4:
        return rnd(s) % 20000;
    case 5:
        return rnd(s) % (1u << 22);
    case 6:
        return rnd(s) % (UINT64_C(1) << 28);
    default:
        return (rnd(s) % 4 == 0) ? (UINT64_C(1) << 32) + rnd(s) % 100000 : rnd(s) % 5;
    }
}

static void diff_add(diff_t *s, mt_t *x)
{
    uint64_t d = random_delay(s);
    /* Sometimes in the past, as a late add from a callback would be. */
    uint64_t exp =
        (rnd(s) % 16 == 0 && s->w->cur > 10) ? s->w->cur - 1 - rnd(s) % 10 : s->w->cur + d;

    x->t.expire_tick = exp;
    assert_int_equal(coho__wheel_add(s->w, &x->t), 0);
    x->due = exp < s->w->cur ? s->w->cur : exp;
    x->armed = 1;
    assert_int_equal(coho__heap_push(&s->model, &x->m), 0);
}

static void diff_cancel(diff_t *s, mt_t *x)
{
    assert_int_equal(coho__wheel_del(s->w, &x->t), 0);
    if (x->armed == 1)
        assert_int_equal(coho__heap_remove(&s->model, &x->m), 0);
    x->armed = 0;
}

/* One random operation on a random timer: add if idle, cancel if armed. */
static void diff_op(diff_t *s)
{
    mt_t *x = &s->t[rnd(s) % DIFF_N];

    if (x->t.state == COHO__TIMER_IDLE)
        diff_add(s, x);
    else
        diff_cancel(s, x);
}

static void diff_fire(void *ctx, coho_list_t *due, uint64_t tick)
{
    diff_t *s = ctx;
    coho__heap_node_t *top;
    size_t expect = 0, got = 0;
    coho_list_t *n;

    s->ticks++;
    /* The model's due set for this tick; nothing may be due earlier (that would be a miss). */
    while ((top = coho__heap_top(&s->model)) != NULL) {
        mt_t *x = coho_container_of(top, mt_t, m);

        if (x->due > tick)
            break;
        if (x->due != tick)
            fail_msg("timer %u due at %llu not fired before tick %llu", x->id,
                     (unsigned long long)x->due, (unsigned long long)tick);
        coho__heap_pop(&s->model);
        x->armed = 2;
        expect++;
    }
    coho_list_for_each(n, due)
    {
        mt_t *x = coho_container_of(n, mt_t, t.link);

        if (x->armed != 2)
            fail_msg("wheel fired timer %u (due %llu) in tick %llu", x->id,
                     (unsigned long long)x->due, (unsigned long long)tick);
        got++;
    }
    assert_int_equal(got, expect);
    /* Fire them one by one; each firing may cancel or add timers, including ones due now. */
    while ((n = coho_list_pop_front(due)) != NULL) {
        mt_t *x = coho_container_of(n, mt_t, t.link);

        x->t.state = COHO__TIMER_IDLE;
        x->armed = 0;
        x->fired++;
        s->fires++;
        if (rnd(s) % 4 == 0)
            diff_op(s);
        if (rnd(s) % 8 == 0 && x->t.state == COHO__TIMER_IDLE)
            diff_add(s, x); /* re-arm itself */
    }
}

static void diff_check_nothing_due(diff_t *s, uint64_t now)
{
    coho__heap_node_t *top = coho__heap_top(&s->model);

    if (top != NULL && coho_container_of(top, mt_t, m)->due <= now)
        fail_msg("timer %u due at %llu still armed after advancing to %llu",
                 coho_container_of(top, mt_t, m)->id,
                 (unsigned long long)coho_container_of(top, mt_t, m)->due, (unsigned long long)now);
}

static void wheel_matches_heap_model_under_random_add_cancel_advance(void **state)
{
    diff_t s = {0};

    (void)state;
    s.rng = coho_test_seed();
    s.w = malloc(sizeof(*s.w));
    s.t = calloc(DIFF_N, sizeof(*s.t));
    assert_non_null(s.w);
    assert_non_null(s.t);
    coho__wheel_init(s.w, rnd(&s) % 1000000);
    coho__heap_init(&s.model, model_less);
    for (unsigned i = 0; i < DIFF_N; i++) {
        coho__timer_init(&s.t[i].t, NULL, NULL);
        coho__heap_node_init(&s.t[i].m);
        s.t[i].id = i;
    }
    for (unsigned step = 0; step < DIFF_STEPS; step++) {
        unsigned ops = (unsigned)(rnd(&s) % 8);

        for (unsigned k = 0; k < ops; k++)
            diff_op(&s);
        uint64_t adv;
        switch (rnd(&s) % 10) {
        case 0:
            adv = rnd(&s) % 100000;
            break;
        case 1:
            adv = rnd(&s) % 3000;
            break;
        default:
            adv = rnd(&s) % 4;
            break;
        }
        uint64_t now = s.w->cur + adv - 1;
        /* The next-tick bound: nothing is due before it. */
        uint64_t nt = coho__wheel_next_tick(s.w);
        coho__heap_node_t *top = coho__heap_top(&s.model);
        if (top != NULL)
            assert_true(nt <= coho_container_of(top, mt_t, m)->due);
        else
            assert_int_equal(nt, COHO__WHEEL_NEVER);
        coho__wheel_advance(s.w, now, diff_fire, &s);
        diff_check_nothing_due(&s, now);
    }
    /* Drain everything, including overflow-heap timers, in large steps. */
    while (coho__heap_count(&s.model) > 0) {
        uint64_t nt = coho__wheel_next_tick(s.w);

        assert_true(nt != COHO__WHEEL_NEVER);
        coho__wheel_advance(s.w, nt, diff_fire, &s);
        diff_check_nothing_due(&s, nt);
    }
    assert_int_equal(coho__wheel_count(s.w), 0);
    fprintf(stderr, "fired %zu timers in %zu ticks\n", s.fires, s.ticks);
    assert_true(s.fires > DIFF_N);
    coho__heap_destroy(&s.model);
    coho__wheel_destroy(s.w);
    free(s.w);
    free(s.t);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(wheel_fires_each_level_timer_in_its_exact_tick),
        cmocka_unit_test(wheel_timer_added_in_the_past_fires_at_next_processed_tick),
        cmocka_unit_test(wheel_del_of_idle_timer_is_enoent),
        cmocka_unit_test(wheel_skips_a_long_stall_and_fires_in_order),
        cmocka_unit_test(wheel_matches_heap_model_under_random_add_cancel_advance),
    };

    return coho_test_main("mio_wheel", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
