/* SPDX-License-Identifier: MIT */
/* The hierarchical timer wheel: near wheel, four cascading levels, overflow heap, and the
 * occupancy bitmaps that find the next due tick and skip empty ticks. Geometry and invariants
 * are drawn in mio_driver/README.md. */
#include "mio_driver/wheel.h"

#include <errno.h>

#define NEAR_MASK  ((uint64_t)COHO__WHEEL_NEAR_SIZE - 1)
#define LVL_MASK   ((uint64_t)COHO__WHEEL_LVL_SIZE - 1)
#define NEAR_WORDS (COHO__WHEEL_NEAR_SIZE / 64)

static inline unsigned lvl_shift(unsigned level)
{
    return COHO__WHEEL_NEAR_BITS + level * COHO__WHEEL_LVL_BITS;
}

static bool overflow_less(const coho__heap_node_t *a, const coho__heap_node_t *b)
{
    const coho__timer_t *ta = coho_container_of(a, coho__timer_t, heap);
    const coho__timer_t *tb = coho_container_of(b, coho__timer_t, heap);

    return ta->expire_tick < tb->expire_tick;
}

void coho__wheel_init(coho__wheel_t *w, uint64_t start_tick)
{
    w->cur = start_tick;
    w->listed = 0;
    w->way = 0;
    for (unsigned i = 0; i < NEAR_WORDS; i++)
        w->near_bits[i] = 0;
    for (unsigned i = 0; i < COHO__WHEEL_NEAR_SIZE; i++) {
        coho_list_init(&w->near[i]);
        w->near_count[i] = 0;
    }
    for (unsigned l = 0; l < COHO__WHEEL_LEVELS; l++) {
        w->lvl_bits[l] = 0;
        for (unsigned i = 0; i < COHO__WHEEL_LVL_SIZE; i++) {
            w->lvl_count[l][i] = 0;
            for (unsigned k = 0; k < COHO__WHEEL_LVL_WAYS; k++)
                coho_list_init(&w->lvl[l][i][k]);
        }
    }
    coho__heap_init(&w->overflow, overflow_less);
}

void coho__wheel_destroy(coho__wheel_t *w)
{
    coho__heap_destroy(&w->overflow);
}

/* Links `t` into the slot its expiry selects relative to cur. The invariant that makes one
 * tick of lateness impossible: a slot of level L is cascaded when cur enters the 2^shift(L)
 * block that slot stands for, and every timer placed there is due inside that block. */
static void wheel_place(coho__wheel_t *w, coho__timer_t *t)
{
    uint64_t exp = t->expire_tick < w->cur ? w->cur : t->expire_tick;
    uint64_t delta = exp - w->cur;

    if (delta < COHO__WHEEL_NEAR_SIZE) {
        unsigned s = (unsigned)(exp & NEAR_MASK);

        coho_list_push_back(&w->near[s], &t->link);
        w->near_bits[s >> 6] |= UINT64_C(1) << (s & 63);
        w->near_count[s]++;
        t->expire_tick = exp; /* clamped: below cur exactly when on a due list */
        t->state = COHO__TIMER_NEAR + s;
    } else {
        unsigned l = 0;

        while (delta >= (UINT64_C(1) << lvl_shift(l + 1)))
            l++;
        unsigned s = (unsigned)((exp >> lvl_shift(l)) & LVL_MASK);

        unsigned k = w->way++ % COHO__WHEEL_LVL_WAYS;

        coho_list_push_back(&w->lvl[l][s][k], &t->link);
        w->lvl_bits[l] |= UINT64_C(1) << s;
        w->lvl_count[l][s]++;
        t->state = COHO__TIMER_LVL + (l * COHO__WHEEL_LVL_SIZE + s) * COHO__WHEEL_LVL_WAYS + k;
    }
    w->listed++;
}

int coho__wheel_add(coho__wheel_t *w, coho__timer_t *t)
{
    if (t->expire_tick >= w->cur && t->expire_tick - w->cur >= COHO__WHEEL_SPAN) {
        int rc = coho__heap_push(&w->overflow, &t->heap);

        if (rc < 0)
            return rc;
        t->state = COHO__TIMER_HEAP;
        return 0;
    }
    wheel_place(w, t);
    return 0;
}

int coho__wheel_del(coho__wheel_t *w, coho__timer_t *t)
{
    uint32_t st = t->state;

    if (st == COHO__TIMER_IDLE)
        return -ENOENT;
    if (st == COHO__TIMER_HEAP) {
        coho__heap_remove(&w->overflow, &t->heap);
    } else if (st < COHO__TIMER_LVL) {
        unsigned s = st - COHO__TIMER_NEAR;

        coho_list_del(&t->link);
        if (t->expire_tick >= w->cur) { /* in its slot, not on a due list */
            if (--w->near_count[s] == 0)
                w->near_bits[s >> 6] &= ~(UINT64_C(1) << (s & 63));
            w->listed--;
        }
    } else {
        unsigned i = (st - COHO__TIMER_LVL) / COHO__WHEEL_LVL_WAYS;
        unsigned l = i / COHO__WHEEL_LVL_SIZE, s = i % COHO__WHEEL_LVL_SIZE;

        coho_list_del(&t->link);
        if (--w->lvl_count[l][s] == 0)
            w->lvl_bits[l] &= ~(UINT64_C(1) << s);
        w->listed--;
    }
    t->state = COHO__TIMER_IDLE;
    return 0;
}

/* Re-places every timer of level `l` slot `s` relative to the new cur. The slot's timers are
 * spread over several lists walked in turn: each list is a chain of dependent cache misses
 * (timers live wherever their owners put them), and interleaving the chains lets the CPU wait
 * for several misses at once. The lists are walked without unlinking (each node is re-linked
 * by the placement), reading `next` before the node is moved. */
static void wheel_cascade_slot(coho__wheel_t *w, unsigned l, unsigned s)
{
    coho_list_t *cur[COHO__WHEEL_LVL_WAYS], *end[COHO__WHEEL_LVL_WAYS];
    coho_list_t heads[COHO__WHEEL_LVL_WAYS];
    unsigned live = 0;

    if (!(w->lvl_bits[l] & (UINT64_C(1) << s)))
        return;
    w->lvl_bits[l] &= ~(UINT64_C(1) << s);
    w->lvl_count[l][s] = 0;
    for (unsigned k = 0; k < COHO__WHEEL_LVL_WAYS; k++) {
        coho_list_init(&heads[k]);
        coho_list_splice_back(&heads[k], &w->lvl[l][s][k]);
        cur[k] = heads[k].next;
        end[k] = &heads[k];
        live += cur[k] != end[k];
    }
    while (live > 0) {
        for (unsigned k = 0; k < COHO__WHEEL_LVL_WAYS; k++) {
            coho_list_t *n = cur[k];

            if (n == end[k])
                continue;
            cur[k] = n->next;
            __builtin_prefetch(cur[k], 1);
            if (cur[k] == end[k])
                live--;
            w->listed--;
            wheel_place(w, coho_container_of(n, coho__timer_t, link));
        }
    }
}

/* cur has just entered a new near block: pull down the far slots that block opens, highest
 * boundary first so that their timers pass through the lower levels in the right order. */
static void wheel_cascade(coho__wheel_t *w)
{
    unsigned top = 0;

    while (top + 1 < COHO__WHEEL_LEVELS && ((w->cur >> lvl_shift(top)) & LVL_MASK) == 0)
        top++;
    for (unsigned l = top + 1; l-- > 0;)
        wheel_cascade_slot(w, l, (unsigned)((w->cur >> lvl_shift(l)) & LVL_MASK));
}

/* Moves overflow timers that came within the wheel span into the wheel. */
static void wheel_migrate(coho__wheel_t *w)
{
    coho__heap_node_t *top;

    while ((top = coho__heap_top(&w->overflow)) != NULL) {
        coho__timer_t *t = coho_container_of(top, coho__timer_t, heap);

        if (t->expire_tick >= w->cur && t->expire_tick - w->cur >= COHO__WHEEL_SPAN)
            return;
        coho__heap_pop(&w->overflow);
        wheel_place(w, t);
    }
}

/* The first set bit of the near bitmap in [from, to] (slot numbers), or -1. */
static int near_find(const coho__wheel_t *w, unsigned from, unsigned to)
{
    for (unsigned word = from >> 6; word <= (to >> 6); word++) {
        uint64_t bits = w->near_bits[word];

        if (word == (from >> 6))
            bits &= ~UINT64_C(0) << (from & 63);
        if (word == (to >> 6) && (to & 63) != 63)
            bits &= (UINT64_C(1) << ((to & 63) + 1)) - 1;
        if (bits)
            return (int)(word * 64 + (unsigned)__builtin_ctzll(bits));
    }
    return -1;
}

/* cur moved onto `next`; cascade if it entered a new near block. */
static inline void wheel_set_cur(coho__wheel_t *w, uint64_t next)
{
    w->cur = next;
    if ((next & NEAR_MASK) == 0)
        wheel_cascade(w);
}

static inline bool near_is_empty(const coho__wheel_t *w)
{
    for (unsigned i = 0; i < NEAR_WORDS; i++)
        if (w->near_bits[i])
            return false;
    return true;
}

/* The first circular set bit at or after `start`, as a distance, or -1. */
static inline int ring_find(uint64_t bits, unsigned start);

/* The first block boundary after cur at which a non-empty far slot cascades, or where an
 * overflow timer enters the span (not a boundary, but then nothing is listed before it). */
static uint64_t next_cascade_tick(const coho__wheel_t *w)
{
    uint64_t best = COHO__WHEEL_NEVER;

    for (unsigned l = 0; l < COHO__WHEEL_LEVELS; l++) {
        unsigned sh = lvl_shift(l);
        uint64_t next_unit = (w->cur >> sh) + 1;
        int k = ring_find(w->lvl_bits[l], (unsigned)(next_unit & LVL_MASK));

        if (k >= 0 && ((next_unit + (uint64_t)k) << sh) < best)
            best = (next_unit + (uint64_t)k) << sh;
    }
    coho__heap_node_t *top = coho__heap_top(&w->overflow);
    if (top != NULL) {
        uint64_t enter =
            coho_container_of(top, coho__timer_t, heap)->expire_tick - COHO__WHEEL_SPAN + 1;

        if (enter <= w->cur)
            enter = w->cur + 1;
        if (enter < best)
            best = enter;
    }
    return best;
}

void coho__wheel_advance(coho__wheel_t *w, uint64_t now_tick, coho__wheel_fire_fn fire, void *ctx)
{
    while (w->cur <= now_tick) {
        if (w->listed == 0) {
            /* Nothing in the slots: jump, stopping where an overflow timer enters the span. */
            uint64_t target = now_tick + 1;
            coho__heap_node_t *top = coho__heap_top(&w->overflow);

            if (top != NULL) {
                uint64_t exp = coho_container_of(top, coho__timer_t, heap)->expire_tick;
                uint64_t enter = exp - COHO__WHEEL_SPAN + 1;

                if (enter < target)
                    target = enter > w->cur ? enter : w->cur + 1;
            }
            w->cur = target;
            wheel_migrate(w);
            continue;
        }
        uint64_t pos = w->cur & NEAR_MASK;
        uint64_t base = w->cur - pos;
        uint64_t end = now_tick - base >= NEAR_MASK ? NEAR_MASK : now_tick - base;
        int s = near_find(w, (unsigned)pos, (unsigned)end);

        if (s < 0) {
            uint64_t next = base + end + 1;

            /* An empty near wheel: jump over every block whose cascade has nothing to do. */
            if (next <= now_tick && near_is_empty(w)) {
                uint64_t c = next_cascade_tick(w);

                next = c < now_tick + 1 ? c : now_tick + 1;
            }
            wheel_set_cur(w, next);
        } else {
            coho_list_t due, *n;

            /* No pass over the due timers here: moving cur past their tick is what marks
             * them as due (coho__wheel_del tells by expire_tick < cur). */
            coho_list_init(&due);
            coho_list_splice_back(&due, &w->near[s]);
            w->near_bits[s >> 6] &= ~(UINT64_C(1) << (s & 63));
            w->listed -= w->near_count[s];
            w->near_count[s] = 0;
            wheel_set_cur(w, base + (uint64_t)s + 1);
            wheel_migrate(w);
            fire(ctx, &due, base + (uint64_t)s);
            /* Whatever the callee left on `due` (it should be empty) is dropped unfired. */
            while ((n = coho_list_pop_front(&due)) != NULL)
                coho_container_of(n, coho__timer_t, link)->state = COHO__TIMER_IDLE;
            continue;
        }
        wheel_migrate(w);
    }
}

/* The first set bit at or after `start` in a 64-bit circular bitmap, as a distance, or -1. */
static inline int ring_find(uint64_t bits, unsigned start)
{
    uint64_t r;

    if (bits == 0)
        return -1;
    r = start ? (bits >> start) | (bits << (64 - start)) : bits;
    return __builtin_ctzll(r);
}

/* The earliest expiry in a far slot, so an idle loop sleeps until the timer rather than until
 * the cascade point. A long slot is not scanned: its cascade tick `open` is returned instead,
 * a bound that costs one extra wake-up. */
static uint64_t slot_min_expiry(const coho_list_t *ways, uint64_t open)
{
    uint64_t best = COHO__WHEEL_NEVER;
    unsigned n = 0;

    for (unsigned k = 0; k < COHO__WHEEL_LVL_WAYS; k++) {
        const coho_list_t *head = &ways[k], *p;

        for (p = head->next; p != head; p = p->next) {
            const coho__timer_t *t = coho_container_of(p, coho__timer_t, link);

            if (++n > 16)
                return open;
            if (t->expire_tick < best)
                best = t->expire_tick;
        }
    }
    return best < open ? open : best;
}

uint64_t coho__wheel_next_tick(const coho__wheel_t *w)
{
    uint64_t best = COHO__WHEEL_NEVER;
    uint64_t pos = w->cur & NEAR_MASK;
    uint64_t base = w->cur - pos;
    int s = near_find(w, (unsigned)pos, (unsigned)NEAR_MASK);

    if (s >= 0)
        return base + (uint64_t)s; /* nothing can happen before it */
    if (pos > 0 && (s = near_find(w, 0, (unsigned)pos - 1)) >= 0)
        best = base + COHO__WHEEL_NEAR_SIZE + (uint64_t)s;
    for (unsigned l = 0; l < COHO__WHEEL_LEVELS; l++) {
        unsigned sh = lvl_shift(l);
        uint64_t next_unit = (w->cur >> sh) + 1;
        int k = ring_find(w->lvl_bits[l], (unsigned)(next_unit & LVL_MASK));

        if (k >= 0) {
            unsigned slot = (unsigned)((next_unit + (uint64_t)k) & LVL_MASK);
            uint64_t at = slot_min_expiry(w->lvl[l][slot], (next_unit + (uint64_t)k) << sh);

            if (at < best)
                best = at;
        }
    }
    coho__heap_node_t *top = coho__heap_top(&w->overflow);
    if (top != NULL) {
        uint64_t exp = coho_container_of(top, coho__timer_t, heap)->expire_tick;
        uint64_t enter = exp - COHO__WHEEL_SPAN + 1;

        if (enter < w->cur)
            enter = w->cur;
        if (enter < best)
            best = enter;
    }
    return best;
}
