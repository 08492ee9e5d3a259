/* SPDX-License-Identifier: MIT */
/* The hierarchical timer wheel, without a driver: a near wheel of 256 one-tick slots, four
 * cascading levels of 64 slots and an overflow min-heap past 2^32 ticks. Time is in ticks; the
 * driver converts CLOCK_MONOTONIC readings to ticks. Private to mio_driver (and its tests). */
#ifndef COHO_MIO_DRIVER_WHEEL_H
#define COHO_MIO_DRIVER_WHEEL_H

#include <stdint.h>

#include "base_struct/heap.h"
#include "base_struct/list.h"
#include "mio_driver/driver.h"

#define COHO__WHEEL_NEAR_BITS 8
#define COHO__WHEEL_NEAR_SIZE (1u << COHO__WHEEL_NEAR_BITS) /* 256 */
#define COHO__WHEEL_LVL_BITS  6
#define COHO__WHEEL_LVL_SIZE  (1u << COHO__WHEEL_LVL_BITS) /* 64 */
#define COHO__WHEEL_LEVELS    4
#define COHO__WHEEL_LVL_WAYS  8 /* lists per far slot, walked interleaved when cascading */
#define COHO__WHEEL_SPAN_BITS (COHO__WHEEL_NEAR_BITS + COHO__WHEEL_LEVELS * COHO__WHEEL_LVL_BITS)
#define COHO__WHEEL_SPAN      (UINT64_C(1) << COHO__WHEEL_SPAN_BITS) /* 2^32 ticks */
#define COHO__WHEEL_NEVER     UINT64_MAX

/* coho__timer_t.state as the wheel sets it: where the timer is. 0 means not in the wheel. */
enum {
    COHO__TIMER_IDLE = 0,
    /* 1..256: near slot + 1; also while on the due list (then expire_tick < cur) */
    COHO__TIMER_NEAR = 1,
    COHO__TIMER_LVL = 1 + COHO__WHEEL_NEAR_SIZE, /* + (level * 64 + slot) * ways + way */
    COHO__TIMER_HEAP = 0x10000,                  /* in the overflow heap */
};

typedef struct coho__wheel {
    uint64_t cur;  /* the next tick to process: every tick < cur has been processed */
    size_t listed; /* timers in slot lists (not the heap, not the due list) */
    uint64_t near_bits[COHO__WHEEL_NEAR_SIZE / 64];
    uint64_t lvl_bits[COHO__WHEEL_LEVELS];
    coho_list_t near[COHO__WHEEL_NEAR_SIZE];
    uint32_t near_count[COHO__WHEEL_NEAR_SIZE];
    coho_list_t lvl[COHO__WHEEL_LEVELS][COHO__WHEEL_LVL_SIZE][COHO__WHEEL_LVL_WAYS];
    uint32_t lvl_count[COHO__WHEEL_LEVELS][COHO__WHEEL_LVL_SIZE];
    unsigned way;          /* round-robin way for the next far placement */
    coho__heap_t overflow; /* timers due at or past cur + 2^32, ordered by expire_tick */
} coho__wheel_t;

/* Called by coho__wheel_advance for each tick that has due timers. `due` holds them (linked by
 * coho__timer_t.link, still armed); the callee pops them one by one, sets each one's state to
 * COHO__TIMER_IDLE and fires it, and may
 * add or delete any timer meanwhile (a deleted due timer simply leaves the list). When it is
 * called, cur is already tick + 1, so a timer added for "now" lands in the next tick. */
typedef void (*coho__wheel_fire_fn)(void *ctx, coho_list_t *due, uint64_t tick);

/* Prepares an empty wheel whose first unprocessed tick is `start_tick`. No allocation. */
void coho__wheel_init(coho__wheel_t *w, uint64_t start_tick);

/* Frees the overflow heap's array. Timers still in the wheel are forgotten, not touched. */
void coho__wheel_destroy(coho__wheel_t *w);

/* Inserts `t`, which must not be in the wheel, due at t->expire_tick (a tick already processed
 * is due at the next processed tick). O(1), or O(log n) past the wheel span. Returns 0, or
 * -ENOMEM when the overflow heap cannot grow. */
int coho__wheel_add(coho__wheel_t *w, coho__timer_t *t);

/* Removes `t` (in a slot, the heap or the due list). O(1) (O(log n) in the heap). Returns 0,
 * or -ENOENT if it is not in the wheel. */
int coho__wheel_del(coho__wheel_t *w, coho__timer_t *t);

/* Processes every tick <= now_tick, in order: cascades far slots and hands each tick's due
 * timers to `fire`. Empty ticks are skipped through the occupancy bitmaps. */
void coho__wheel_advance(coho__wheel_t *w, uint64_t now_tick, coho__wheel_fire_fn fire, void *ctx);

/* The first tick at which coho__wheel_advance has work: the next due tick, or (when the first
 * far slot holds more than a few timers, or for the overflow heap) an earlier cascade or
 * migration point. Never later than the next due timer. COHO__WHEEL_NEVER when empty. */
uint64_t coho__wheel_next_tick(const coho__wheel_t *w);

/* Timers in the slots and the overflow heap (not those on a due list being fired). */
static inline size_t coho__wheel_count(const coho__wheel_t *w)
{
    return w->listed + coho__heap_count(&w->overflow);
}

#endif /* COHO_MIO_DRIVER_WHEEL_H */
