/* SPDX-License-Identifier: MIT */
/* Fixed-size node pool with generation ids (contract in pool.h).
 *
 * Memory: slabs of 2^shift slots, never moved or unmapped before coho__pool_destroy. A slot is an
 * 8-byte header followed by the node; slab bases sit at 8 mod 16 so that every node starts on
 * a 16-byte boundary while the header costs 8 bytes, not 16:
 *
 *     slab:  | pad 8 | gen u32 | next u32 | node (stride - 8) | gen | next | node | ...
 *                    ^ slot 0 (8 mod 16)  ^ 16-aligned         ^ slot 1
 *
 * `next` is the slot's state: SLOT_LIVE, SLOT_RETIRED, or (free) the index of the next free
 * slot, SLOT_END closing the list. `gen` is the generation of the live id, or, for a free slot,
 * the generation its next alloc will issue. An id resolves only if its slot is live and the
 * generations match, so neither a freed id nor a freed-and-reused id reaches the new owner.
 *
 * Slots never used yet are handed out from `fresh` upwards before a new slab is allocated;
 * freed slots go on a LIFO free list (the most recently freed node is the warmest in cache).
 *
 * Trim (coho__pool_trim): a slab with no live node may give its memory back (MADV_DONTNEED; the
 * slab stays mapped). Its slots leave the free list, and since the generations lived in that
 * memory, the slab remembers the highest one (gen_floor): when it is needed again (free list
 * empty) every slot restarts at gen_floor, above every generation any of its ids carried, so
 * old ids stay stale. Until then a lookup of an old id reads a zero header (gen 0: no match).
 * A slab holding a retired slot is never trimmed (it would forget the retirement).
 */
#include "base_struct/pool.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "base_struct/pool_impl.h"

#if defined(__SANITIZE_ADDRESS__)
#    include <sanitizer/asan_interface.h>
/* Free nodes are poisoned so that a pointer kept past coho__pool_free is caught by ASan. */
#    define POOL_POISON(p, n)   ASAN_POISON_MEMORY_REGION((p), (n))
#    define POOL_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#    define POOL_POISON(p, n)   ((void)(p), (void)(n))
#    define POOL_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define POOL_DEFAULT_SLAB  256u
#define POOL_MAX_SLAB      (1u << 24)
#define POOL_MAX_SLAB_SIZE ((size_t)1 << 40)

coho__pool_t *coho__pool_create(size_t node_size, uint32_t slab_count, uint32_t max_count)
{
    coho__pool_t *p;
    uint32_t shift = 0;
    size_t stride;

    if (slab_count == 0)
        slab_count = POOL_DEFAULT_SLAB;
    if (node_size == 0 || node_size > POOL_MAX_SLAB_SIZE || slab_count > POOL_MAX_SLAB) {
        errno = EINVAL;
        return NULL;
    }
    stride = (node_size + POOL_HEADER_SIZE + 15) & ~(size_t)15;
    while ((1u << shift) < slab_count)
        shift++;
    if (stride > POOL_MAX_SLAB_SIZE >> shift) {
        errno = EINVAL;
        return NULL;
    }
    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    p->shift = shift;
    p->mask = (1u << shift) - 1;
    p->stride = stride;
    p->node_size = node_size;
    p->free_head = SLOT_END;
    p->max_count = max_count ? max_count : UINT32_MAX;
    return p;
}

void coho__pool_destroy(coho__pool_t *p)
{
    uint32_t i;

    if (p == NULL)
        return;
    for (i = 0; i < p->nslabs; i++) {
        POOL_UNPOISON(p->allocs[i], p->slab_bytes);
        munmap(p->allocs[i], p->slab_bytes);
    }
    free(p->slabs);
    free(p->allocs);
    free(p->meta);
    free(p);
}

/* Adds one slab. Cold path: only when no freed or fresh slot is left. */
__attribute__((noinline, cold)) static int pool_grow(coho__pool_t *p)
{
    size_t slots = (size_t)1 << p->shift;
    size_t bytes = (slots * p->stride + 16 + 4095) & ~(size_t)4095;
    char *mem;

    if (p->capacity >= SLOT_INDEX_LIMIT)
        return -ENOMEM; /* the 32-bit slot index space is used up */
    if (p->nslabs == p->slabs_cap) {
        uint32_t cap = p->slabs_cap ? p->slabs_cap * 2 : 8;
        char **slabs = realloc(p->slabs, cap * sizeof(*slabs));

        if (slabs == NULL)
            return -ENOMEM;
        p->slabs = slabs;
        slabs = realloc(p->allocs, cap * sizeof(*slabs));
        if (slabs == NULL)
            return -ENOMEM;
        p->allocs = slabs;
        pool_slab_meta_t *meta = realloc(p->meta, cap * sizeof(*meta));
        if (meta == NULL)
            return -ENOMEM;
        p->meta = meta;
        p->slabs_cap = cap;
    }
    /* Its own mapping (page-aligned), so a trim can give its pages back. */
    mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        return -ENOMEM;
    p->slab_bytes = bytes;
    p->meta[p->nslabs] = (pool_slab_meta_t){0};
    p->allocs[p->nslabs] = mem;
    p->slabs[p->nslabs] = mem + POOL_HEADER_SIZE;
    p->nslabs++;
    p->capacity += slots;
    if (p->capacity > SLOT_INDEX_LIMIT)
        p->capacity = SLOT_INDEX_LIMIT;
    POOL_POISON(mem, bytes);
    return 0;
}

/* Puts the slots of a trimmed slab back on the free list (slot 0 first), every one at the
 * slab's gen_floor. Cold path: only when no freed slot is left. */
__attribute__((noinline, cold)) static void pool_revive(coho__pool_t *p)
{
    uint32_t i, j, slots = p->mask + 1;

    for (i = 0; i < p->nslabs && !p->meta[i].trimmed; i++)
        ;
    if (i == p->nslabs)
        return;
    for (j = slots; j-- > 0;) {
        uint32_t index = (i << p->shift) | j;
        slot_header_t *s = pool_slot(p, index);

        s->gen = p->meta[i].gen_floor;
        s->next = p->free_head;
        p->free_head = index;
    }
    p->meta[i].trimmed = false;
    p->ntrimmed--;
}

/* Can slab i give its memory back: no live node, every slot used at least once (so all are on
 * the free list), none retired? Sets its gen_floor. A scan of its headers, so that alloc and
 * free keep no per-slab count (the trim is the cold path). */
static bool slab_trimmable(coho__pool_t *p, uint32_t i)
{
    uint32_t j, slots = p->mask + 1, floor = 1;

    if (p->meta[i].trimmed || ((uint64_t)i + 1) * slots > p->fresh)
        return false;
    for (j = 0; j < slots; j++) {
        const slot_header_t *s = pool_slot(p, (i << p->shift) | j);

        if (s->next == SLOT_RETIRED || s->next == SLOT_LIVE)
            return false;
        if (s->gen > floor)
            floor = s->gen;
    }
    p->meta[i].gen_floor = floor;
    return true;
}

size_t coho__pool_trim(coho__pool_t *p)
{
    uint32_t i, index, *link;
    size_t n = 0;

    for (i = 1; i < p->nslabs; i++) {
        if (slab_trimmable(p, i)) {
            p->meta[i].trimmed = true;
            p->meta[i].releasing = true;
            n++;
        }
    }
    if (n == 0)
        return 0;
    /* The free list without the slots of trimmed slabs, in its order. */
    link = &p->free_head;
    for (index = p->free_head; index != SLOT_END;) {
        slot_header_t *s = pool_slot(p, index);
        uint32_t next = s->next;

        if (!p->meta[index >> p->shift].trimmed) {
            *link = index;
            link = &s->next;
        }
        index = next;
    }
    *link = SLOT_END;
    /* Only now: the walk above read the links of the slots being dropped. */
    for (i = 1; i < p->nslabs; i++) {
        if (p->meta[i].releasing) {
            madvise(p->allocs[i], p->slab_bytes, MADV_DONTNEED);
            p->meta[i].releasing = false;
        }
    }
    p->ntrimmed += (uint32_t)n;
    return n;
}

/* Takes a slot; its node is left as it was (see coho__pool_alloc_raw). Returns its id, or 0. */
static inline uint64_t pool_take(coho__pool_t *p, void **node, int *err)
{
    slot_header_t *s;
    uint32_t index;
    void *n;

    if (p->live >= p->max_count) {
        if (err != NULL)
            *err = -EAGAIN;
        return 0;
    }
    if (p->free_head == SLOT_END && p->ntrimmed > 0)
        pool_revive(p);
    if (p->free_head != SLOT_END) {
        index = p->free_head;
        s = pool_slot(p, index);
        p->free_head = s->next;
    } else {
        if (p->fresh == p->capacity) {
            int rc = pool_grow(p);

            if (rc < 0) {
                if (err != NULL)
                    *err = rc;
                return 0;
            }
        }
        index = (uint32_t)p->fresh++;
        s = pool_slot(p, index);
        POOL_UNPOISON(s, POOL_HEADER_SIZE);
        s->gen = 1;
    }
    s->next = SLOT_LIVE;
    p->live++;
    n = slot_node(s);
    POOL_UNPOISON(n, p->node_size);
    *node = n;
    return make_id(s->gen, index);
}

uint64_t coho__pool_alloc(coho__pool_t *p, void **node, int *err)
{
    void *n;
    uint64_t id = pool_take(p, &n, err);

    if (id == 0)
        return 0;
    memset(n, 0, p->node_size);
    if (node != NULL)
        *node = n;
    return id;
}

uint64_t coho__pool_alloc_raw(coho__pool_t *p, void **node, int *err)
{
    return pool_take(p, node, err);
}

void *coho__pool_get(const coho__pool_t *p, uint64_t id)
{
    slot_header_t *s = pool_live_slot(p, id);

    return s != NULL ? slot_node(s) : NULL;
}

int coho__pool_free(coho__pool_t *p, uint64_t id)
{
    slot_header_t *s = pool_live_slot(p, id);

    if (s == NULL)
        return -ENOENT;
    p->live--;
    POOL_POISON(slot_node(s), p->stride - POOL_HEADER_SIZE);
    if (++s->gen == 0) {
        /* Reusing this slot would issue generation 0, which id 0 needs, and then ids of its
         * earliest tenants again: retire it for good. */
        s->next = SLOT_RETIRED;
        return 0;
    }
    s->next = p->free_head;
    p->free_head = (uint32_t)id;
    return 0;
}

size_t coho__pool_count(const coho__pool_t *p)
{
    return p->live;
}

void coho__pool_for_each(const coho__pool_t *p, void (*fn)(uint64_t id, void *node, void *arg),
                         void *arg)
{
    uint64_t i;

    for (i = 0; i < p->fresh; i++) {
        slot_header_t *s;

        if (p->meta[i >> p->shift].trimmed) { /* no live node, and its memory is gone */
            i |= p->mask;
            continue;
        }
        s = pool_slot(p, (uint32_t)i);

        if (s->next == SLOT_LIVE)
            fn(make_id(s->gen, (uint32_t)i), slot_node(s), arg);
    }
}
