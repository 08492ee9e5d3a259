/* SPDX-License-Identifier: MIT */
/* Fuzzes the timer wheel against a plain model: the input is a program of add, cancel and
 * advance operations on 64 timers; every tick must fire exactly the timers the model says are
 * due in it, and none may be left behind. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mio_driver/wheel.h"

enum { NT = 64 };

typedef struct ft {
    coho__timer_t t;
    uint64_t due; /* the tick the model says it fires in */
    int armed;
} ft_t;

static ft_t timers[NT];
static coho__wheel_t wheel;

static void check(int ok)
{
    if (!ok)
        abort();
}

static void fire(void *ctx, coho_list_t *due, uint64_t tick)
{
    unsigned expect = 0, got = 0;
    coho_list_t *n;

    (void)ctx;
    for (unsigned i = 0; i < NT; i++) {
        if (timers[i].armed) {
            check(timers[i].due >= tick); /* an earlier one was missed */
            expect += timers[i].due == tick;
        }
    }
    while ((n = coho_list_pop_front(due)) != NULL) {
        ft_t *x = coho_container_of(n, ft_t, t.link);

        check(x->armed && x->due == tick);
        x->t.state = COHO__TIMER_IDLE;
        x->armed = 0;
        got++;
    }
    check(got == expect);
}

static uint64_t take(const uint8_t **p, const uint8_t *end, unsigned n)
{
    uint64_t v = 0;

    while (n-- > 0 && *p < end)
        v = (v << 8) | *(*p)++;
    return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *p = data, *end = data + size;

    coho__wheel_init(&wheel, take(&p, end, 3));
    memset(timers, 0, sizeof(timers));
    for (unsigned i = 0; i < NT; i++)
        coho__timer_init(&timers[i].t, NULL, NULL);
    while (p < end) {
        uint8_t op = *p++;
        ft_t *x = &timers[op >> 2 & (NT - 1)];

        switch (op & 3) {
        case 0: { /* add: the delay's size class comes from the next byte */
            if (x->armed)
                break;
            uint8_t cls = (uint8_t)take(&p, end, 1);
            uint64_t delay = take(&p, end, 1 + cls % 5);

            if (cls & 0x80)
                delay += UINT64_C(1) << 32; /* past the wheel span */
            x->t.expire_tick = wheel.cur + delay;
            check(coho__wheel_add(&wheel, &x->t) == 0);
            x->due = wheel.cur + delay;
            x->armed = 1;
            break;
        }
        case 1: /* cancel */
            check(coho__wheel_del(&wheel, &x->t) == (x->armed ? 0 : -ENOENT));
            x->armed = 0;
            break;
        case 2: { /* advance a little, checking the next-tick bound first */
            uint64_t nt = coho__wheel_next_tick(&wheel);

            for (unsigned i = 0; i < NT; i++)
                if (timers[i].armed)
                    check(nt <= timers[i].due);
            coho__wheel_advance(&wheel, wheel.cur + take(&p, end, 1), fire, NULL);
            break;
        }
        default: /* advance far */
            coho__wheel_advance(&wheel, wheel.cur + (take(&p, end, 2) << (op >> 6) * 5), fire,
                                NULL);
            break;
        }
    }
    /* Drain: everything still armed must fire at its tick. */
    uint64_t nt;
    while ((nt = coho__wheel_next_tick(&wheel)) != COHO__WHEEL_NEVER)
        coho__wheel_advance(&wheel, nt, fire, NULL);
    for (unsigned i = 0; i < NT; i++)
        check(!timers[i].armed);
    coho__wheel_destroy(&wheel);
    return 0;
}
