/* SPDX-License-Identifier: MIT */
/* The node pool's memory layout (pool.c's comment draws it), shared by pool.c and its white-box
 * tests (test/support/pool_testing.h), and the inline lookup of a live id for the hot lookups
 * of idpool.c and coroutine/sched.c; nothing else includes it. */
#ifndef COHO_BASE_STRUCT_POOL_IMPL_H
#define COHO_BASE_STRUCT_POOL_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base_struct/pool.h"

#define SLOT_LIVE        UINT32_MAX
#define SLOT_END         (UINT32_MAX - 1)
#define SLOT_RETIRED     (UINT32_MAX - 2)
#define SLOT_INDEX_LIMIT ((UINT64_C(1) << 32) - 3) /* indices 0 .. 2^32 - 4: below the markers */
#define POOL_HEADER_SIZE 8u

typedef struct slot_header {
    uint32_t gen;
    uint32_t next;
} slot_header_t;

/* Per slab: whether its memory was given back (coho__pool_trim). */
typedef struct pool_slab_meta {
    uint32_t gen_floor; /* trimmed: the generation every slot gets when the slab is reused */
    bool trimmed;
    bool releasing; /* inside coho__pool_trim: given back at its end */
} pool_slab_meta_t;

struct coho__pool {
    char **slabs;  /* slot 0 of each slab (8 mod 16) */
    char **allocs; /* the mapping of each slab (slab_bytes, page-aligned) */
    pool_slab_meta_t *meta;
    size_t slab_bytes;
    uint32_t ntrimmed; /* slabs whose memory was given back */
    uint32_t nslabs;
    uint32_t slabs_cap;
    uint32_t shift;   /* log2(slots per slab) */
    uint32_t mask;    /* slots per slab - 1 */
    size_t stride;    /* header + node, a multiple of 16 */
    size_t node_size; /* as asked; what alloc zeroes */
    uint64_t fresh;   /* first never-used slot index */
    uint64_t capacity;
    uint32_t free_head;
    uint32_t live;
    uint32_t max_count; /* UINT32_MAX when uncapped */
};

static inline slot_header_t *pool_slot(const coho__pool_t *p, uint32_t index)
{
    return (slot_header_t *)(p->slabs[index >> p->shift] + (size_t)(index & p->mask) * p->stride);
}

static inline void *slot_node(slot_header_t *s)
{
    return (char *)s + POOL_HEADER_SIZE;
}

static inline uint64_t make_id(uint32_t gen, uint32_t index)
{
    return (uint64_t)gen << 32 | index;
}

/* The slot of a live id, or NULL. */
static inline slot_header_t *pool_live_slot(const coho__pool_t *p, uint64_t id)
{
    uint32_t index = (uint32_t)id;
    uint32_t gen = (uint32_t)(id >> 32);
    slot_header_t *s;

    if (index >= p->fresh || gen == 0)
        return NULL;
    s = pool_slot(p, index);
    if (s->gen != gen || s->next != SLOT_LIVE)
        return NULL;
    return s;
}

/* Inline fast paths of coho__pool_alloc_raw and coho__pool_free for the scheduler's spawn and
 * reap (every coroutine): a freed slot to reuse, or a live id to free whose generation does not
 * wrap. They return 0 / false when the general function must do it (a new slab, a trimmed slab,
 * the cap, a retirement, ASan's poisoning), which then gives the same result the pool always
 * gives. */
static inline uint64_t pool_alloc_raw_fast(coho__pool_t *p, void **node)
{
#if defined(__SANITIZE_ADDRESS__)
    (void)p;
    (void)node;
    return 0;
#else
    uint32_t index = p->free_head;
    slot_header_t *s;

    if (index == SLOT_END || p->live >= p->max_count)
        return 0;
    s = pool_slot(p, index);
    p->free_head = s->next;
    s->next = SLOT_LIVE;
    p->live++;
    *node = slot_node(s);
    return make_id(s->gen, index);
#endif
}

/* Frees the live slot `s` of `id` unless its generation would wrap (then the general function
 * retires it). */
static inline bool pool_free_slot_fast(coho__pool_t *p, slot_header_t *s, uint64_t id)
{
#if defined(__SANITIZE_ADDRESS__)
    (void)p;
    (void)s;
    (void)id;
    return false;
#else
    if (s->gen == UINT32_MAX)
        return false;
    p->live--;
    s->gen++;
    s->next = p->free_head;
    p->free_head = (uint32_t)id;
    return true;
#endif
}

static inline bool pool_free_fast(coho__pool_t *p, uint64_t id)
{
    slot_header_t *s = pool_live_slot(p, id);

    return s != NULL && pool_free_slot_fast(p, s, id);
}

/* pool_free_fast for an owner that holds the live node `node` of `id` (the scheduler reaping a
 * coroutine it just ran): the slot is the node's header, no lookup. */
static inline bool pool_free_node_fast(coho__pool_t *p, void *node, uint64_t id)
{
    return pool_free_slot_fast(p, (slot_header_t *)(void *)((char *)node - POOL_HEADER_SIZE), id);
}

#endif /* COHO_BASE_STRUCT_POOL_IMPL_H */
