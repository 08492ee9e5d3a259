/* SPDX-License-Identifier: MIT */
/* Open-addressing hash map from uint64_t keys to non-NULL pointers.
 *
 * Linear probing in a power-of-two table of {key, value} slots, grown (doubled) before the
 * load passes 3/4; deletion shifts the following entries back, so there are no tombstones and
 * lookups never slow down with churn. Every key is allowed, 0 included; values must be
 * non-NULL (an empty slot is a NULL value), so a NULL result always means "absent". The map
 * never owns the values. One thread at a time (no locking). */
#ifndef COHO_BASE_STRUCT_HASHMAP_H
#define COHO_BASE_STRUCT_HASHMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct coho__hashmap_slot {
    uint64_t key;
    void *value; /* NULL: empty slot */
} coho__hashmap_slot_t;

typedef struct coho__hashmap {
    coho__hashmap_slot_t *slots;
    size_t mask;    /* slots - 1; 0 while nothing is allocated */
    size_t count;   /* live entries */
    size_t grow_at; /* count that triggers the next doubling */
    unsigned shift; /* 64 - log2(slots) */
} coho__hashmap_t;

/* Initialises an empty map sized for `expected_count` entries without growing (0: allocates
 * nothing until the first put). Returns 0, -EINVAL (expected_count too large to address), or
 * -ENOMEM. */
int coho__hashmap_init(coho__hashmap_t *m, size_t expected_count);

/* Frees the table; the values are not touched. The map is left empty and may be reused after
 * another coho__hashmap_init. */
void coho__hashmap_destroy(coho__hashmap_t *m);

/* The value stored for `key`, or NULL when absent. O(1) expected. */
void *coho__hashmap_get(const coho__hashmap_t *m, uint64_t key);

/* Stores `value` for `key`, replacing any previous value (which is written to *old when old is
 * not NULL; *old is set to NULL when the key was absent). Returns 0 when the key was added,
 * 1 when its value was replaced, -EINVAL for a NULL value, or -ENOMEM (nothing changes). */
int coho__hashmap_put(coho__hashmap_t *m, uint64_t key, void *value, void **old);

/* Removes `key`. Returns the value it had, or NULL when it was absent. */
void *coho__hashmap_del(coho__hashmap_t *m, uint64_t key);

/* Makes room for `count` entries without growing. Returns 0, -EINVAL or -ENOMEM. */
int coho__hashmap_reserve(coho__hashmap_t *m, size_t count);

/* Removes every entry; keeps the table. */
void coho__hashmap_clear(coho__hashmap_t *m);

static inline size_t coho__hashmap_count(const coho__hashmap_t *m)
{
    return m->count;
}

/* Iteration in table order. Start with *pos = 0; each call that returns true fills *key and
 * *value (either may be NULL) and advances *pos; false means the end. The map must not be
 * changed (put or del) during an iteration: collect the keys first, then delete. */
bool coho__hashmap_next(const coho__hashmap_t *m, size_t *pos, uint64_t *key, void **value);

#endif /* COHO_BASE_STRUCT_HASHMAP_H */
