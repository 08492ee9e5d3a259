/* SPDX-License-Identifier: MIT */
/* Coroutine stacks: mmap'd slabs, PROT_NONE guard pages for the first guarded_max stacks of a
 * pool, unguarded stacks with a canary word beyond that (DESIGN.md "Stacks within
 * vm.max_map_count"), free lists for reuse, lazy time-based decay of idle stacks past a
 * watermark (MADV_DONTNEED, then munmap of slabs with nothing resident left), and the
 * high-water mark read from page residency (mincore). One pool per scheduler; a pool is used
 * by one thread. */
#ifndef COHO_COROUTINE_STACK_H
#define COHO_COROUTINE_STACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct coho__stack_pool coho__stack_pool_t;

typedef struct coho__stack {
    void *lo;        /* lowest usable address (just above the guard, or the canary word) */
    size_t size;     /* usable bytes, from lo up */
    bool guarded;    /* a PROT_NONE guard lies right below lo */
    void *owner;     /* free for the user of the stack (the scheduler: its coroutine) */
    void *internal_; /* owned by the pool */
} coho__stack_t;

typedef struct coho__stack_pool_opts {
    size_t stack_size;      /* default usable size per stack, rounded up to pages */
    size_t guard_size;      /* bytes of PROT_NONE guard, rounded up to pages (>= 1 page) */
    unsigned guarded_max;   /* stacks with a guard at most (default 8192); beyond: canary */
    unsigned idle_keep;     /* idle stacks kept resident; beyond: given back by the decay */
    unsigned decay_ms;      /* an idle stack beyond idle_keep is given back once it has been idle
                               this long (coho__stack_pool_decay); 0: at once, in the put */
    unsigned keep_decay_ms; /* once at most idle_keep stacks are idle, each of them is given
                               back after it has been idle this long (at least decay_ms), so an
                               idle program returns to its size before a burst; 0: the
                               idle_keep stacks stay resident for good. Needs decay_ms != 0. */
} coho__stack_pool_opts_t;

/* Fills defaults: 128 KiB (x4 in sanitizer builds), 1 page guard, 8192 guarded, 64 idle,
 * 1000 ms decay, 3000 ms decay of the idle_keep stacks. */
void coho__stack_pool_opts_init(coho__stack_pool_opts_t *o);

/* Creates a pool (NULL `o`: defaults). Returns NULL with errno EINVAL (stack_size 0 or over
 * 1 GiB, guard_size over 64 MiB) or ENOMEM. guard_size 0 means one page. */
coho__stack_pool_t *coho__stack_pool_create(const coho__stack_pool_opts_t *o);

/* Unmaps everything. Every stack must have been put back (a COHO_CHECK abort otherwise). */
void coho__stack_pool_destroy(coho__stack_pool_t *p);

/* Takes a stack of at least `size` bytes (0: the pool's default) from the free list or a new
 * mapping. Returns 0, -ENOMEM, or -EINVAL (size too large: over 1 GiB). Fills *out (owner is
 * set to NULL). `out` must stay at that address (e.g. embedded in the coroutine) until
 * coho__stack_put: coho__stack_find_guard reports that descriptor. Recently returned stacks
 * are reused first (their pages are still resident). */
int coho__stack_get(coho__stack_pool_t *p, size_t size, coho__stack_t *out);

/* Promises a stack of at least `size` bytes (0: the pool's default) to a later
 * coho__stack_get_reserved, which then cannot fail: the pool maps a slab now if its free stacks
 * are all promised already, and the decay keeps enough of them mapped. Nothing is touched; the
 * stack is chosen only when it is taken, so a stack put back in between (the warmest) serves
 * it. Stores the size class in *cls. Returns 0, -EINVAL (size) or -ENOMEM. */
int coho__stack_reserve(coho__stack_pool_t *p, size_t size, unsigned *cls);

/* Takes the stack promised by coho__stack_reserve (class `cls`), the most recently put back
 * first, as coho__stack_get does. */
void coho__stack_get_reserved(coho__stack_pool_t *p, unsigned cls, coho__stack_t *out);

/* Moves the live stack descriptor `from` to `to` (which the guard registry reports from now
 * on); `from` is left empty. The stack stays live and held. */
void coho__stack_move(coho__stack_t *from, coho__stack_t *to);

/* Takes the promise of coho__stack_reserve (class `cls`) with a stack the caller already holds
 * instead of one from the free lists: moves the descriptor `from` (a stack of class `cls`
 * filled by coho__stack_get or coho__stack_get_reserved, still live) to `to`, which the guard
 * registry reports from now on, and withdraws the promise. The scheduler hands the stack of a
 * coroutine that just finished to the next one this way, without a put and a get. */
void coho__stack_move_reserved(coho__stack_pool_t *p, unsigned cls, coho__stack_t *from,
                               coho__stack_t *to);

/* Withdraws a promise of coho__stack_reserve that will not be taken. */
void coho__stack_unreserve(coho__stack_pool_t *p, unsigned cls);

/* Returns a stack to the pool for reuse (pass the descriptor coho__stack_get filled). It stays
 * resident and is reused first (most recently put, first taken), stamped with the pool's clock
 * (coho__stack_pool_set_now). Returns true when more than idle_keep stacks are idle (any idle
 * stack when keep_decay_ms is set), so a coho__stack_pool_decay call has work once they have
 * been idle for decay_ms (keep_decay_ms). With decay_ms 0,
 * a stack beyond idle_keep is given back at once instead (and false is returned). O(1); no
 * system call unless decay_ms is 0. */
bool coho__stack_put(coho__stack_pool_t *p, coho__stack_t *s);

/* Sets the pool's clock (monotonic ms, any origin, never going back): the stamp of the stacks
 * put from now on. The scheduler sets it from its driver's cached time after every poll. */
void coho__stack_pool_set_now(coho__stack_pool_t *p, uint64_t now_ms);

/* The decay: sets the clock to `now_ms`, then, while more than idle_keep stacks are idle,
 * gives back the memory (MADV_DONTNEED) of those idle for decay_ms or longer, oldest first, at
 * most `max` per call; then, with keep_decay_ms set, those of the rest idle for keep_decay_ms
 * or longer. Adjacent stacks go in one madvise; a slab left with no live or resident stack is
 * unmapped instead (its maps and descriptors go too), unless the class would keep fewer than
 * idle_keep free stacks mapped beyond those promised (coho__stack_reserve) without it. Returns -1
 * when nothing is left to wait for (no idle stack, or at most idle_keep without keep_decay_ms), 0
 * when `max` stopped it with more due, else the ms until the next idle stack is due. */
int64_t coho__stack_pool_decay(coho__stack_pool_t *p, uint64_t now_ms, unsigned max);

/* Slabs mapped since the pool was created (each one mmap, plus one mprotect per stack when it
 * is guarded): a server's steady churn of coroutines should not move it. */
uint64_t coho__stack_pool_slabs_mapped(const coho__stack_pool_t *p);

/* Guard pages set since the pool was created (one mprotect each, at a stack's first take). */
uint64_t coho__stack_pool_guards_set(const coho__stack_pool_t *p);

/* False when the canary word of an unguarded stack was overwritten (always true when guarded).
 * The scheduler checks it at every switch-out. */
bool coho__stack_canary_is_intact(const coho__stack_t *s);

/* Bytes of the stack that have ever been touched, from page residency (mincore): the resident
 * pages contiguous from the top. A stack reused while still resident also counts what its
 * previous users touched; one given back with MADV_DONTNEED starts from zero. Makes one
 * mincore call per 256 pages; not async-signal-safe by contract, though it allocates nothing. */
size_t coho__stack_high_water(const coho__stack_t *s);

/* Whether `addr` lies in the guard of a live stack of any pool of this process; if so and
 * `out` is not NULL, *out is that stack's descriptor (the one coho__stack_get filled).
 * Async-signal-safe (for the SIGSEGV handler on the alternate stack): it reads a fixed-size
 * registry of guarded slabs published with atomics, without locks or allocation. A pool
 * destroyed by another thread at the same moment is not supported. */
bool coho__stack_find_guard(const void *addr, const coho__stack_t **out);

#endif /* COHO_COROUTINE_STACK_H */
