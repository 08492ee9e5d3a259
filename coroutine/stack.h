/* SPDX-License-Identifier: MIT */
/* Coroutine stacks: mmap'd slabs, PROT_NONE guard pages for the first guarded_max stacks of a
 * pool, unguarded stacks with a canary word beyond that (DESIGN.md "Stacks within
 * vm.max_map_count"), a free list for reuse, MADV_DONTNEED for idle stacks past a watermark,
 * and the high-water mark read from page residency (mincore). One pool per scheduler; a pool is
 * used by one thread. */
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
    size_t stack_size;    /* default usable size per stack, rounded up to pages */
    size_t guard_size;    /* bytes of PROT_NONE guard, rounded up to pages (>= 1 page) */
    unsigned guarded_max; /* stacks with a guard at most (default 8192); beyond: canary */
    unsigned idle_keep;   /* idle stacks kept resident; beyond: MADV_DONTNEED */
} coho__stack_pool_opts_t;

/* Fills defaults: 128 KiB (x4 in sanitizer builds), 1 page guard, 8192 guarded, 64 idle. */
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

/* Returns a stack to the pool for reuse (pass the descriptor coho__stack_get filled). Beyond
 * idle_keep idle stacks, its memory is given back with MADV_DONTNEED. */
void coho__stack_put(coho__stack_pool_t *p, coho__stack_t *s);

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
