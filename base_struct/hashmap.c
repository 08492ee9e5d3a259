/* SPDX-License-Identifier: MIT */
/* Open-addressing u64 -> pointer map (contract in hashmap.h).
 *
 * Linear probing keeps a probe sequence inside one or two cache lines (four 16-byte slots per
 * line). The hash folds the high half into the low half, then multiplies by 2^64 / phi and
 * keeps the top bits (Fibonacci hashing): sequential keys, and pool ids that differ only in
 * their generation (high) bits, both spread over the table. Deletion is backward-shift: an
 * entry after the hole moves into it unless its home slot lies cyclically in (hole, entry],
 * so every entry stays reachable from its home without tombstones. */
#include "base_struct/hashmap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define HASHMAP_MIN_SLOTS 8
/* Largest table: far beyond memory, but keeps slots * sizeof(slot) from overflowing. */
#define HASHMAP_MAX_SLOTS ((size_t)1 << 58)

static inline size_t hash_home(const coho__hashmap_t *m, uint64_t key)
{
    key ^= key >> 32;
    return (size_t)((key * UINT64_C(0x9e3779b97f4a7c15)) >> m->shift);
}

/* Slots needed so that `count` entries stay at or below 3/4 load; 0 when too many. */
static size_t slots_for(size_t count)
{
    size_t slots = HASHMAP_MIN_SLOTS;

    if (count > HASHMAP_MAX_SLOTS / 4 * 3)
        return 0;
    while (slots / 4 * 3 < count)
        slots *= 2;
    return slots;
}

/* Moves every entry into a fresh table of `slots` slots (a power of two). */
static int hashmap_rehash(coho__hashmap_t *m, size_t slots)
{
    coho__hashmap_slot_t *old = m->slots;
    size_t old_slots = m->slots != NULL ? m->mask + 1 : 0;
    coho__hashmap_slot_t *fresh = calloc(slots, sizeof(*fresh));
    size_t i;
    unsigned bits = 0;

    if (fresh == NULL)
        return -ENOMEM;
    while (((size_t)1 << bits) < slots)
        bits++;
    m->slots = fresh;
    m->mask = slots - 1;
    m->shift = 64 - bits;
    m->grow_at = slots / 4 * 3;
    for (i = 0; i < old_slots; i++) {
        size_t j;

        if (old[i].value == NULL)
            continue;
        j = hash_home(m, old[i].key);
        while (fresh[j].value != NULL)
            j = (j + 1) & m->mask;
        fresh[j] = old[i];
    }
    free(old);
    return 0;
}

int coho__hashmap_init(coho__hashmap_t *m, size_t expected_count)
{
    memset(m, 0, sizeof(*m));
    m->shift = 64;
    if (expected_count == 0)
        return 0;
    return coho__hashmap_reserve(m, expected_count);
}

void coho__hashmap_destroy(coho__hashmap_t *m)
{
    free(m->slots);
    memset(m, 0, sizeof(*m));
    m->shift = 64;
}

int coho__hashmap_reserve(coho__hashmap_t *m, size_t count)
{
    size_t slots = slots_for(count);

    if (slots == 0)
        return -EINVAL;
    if (m->slots != NULL && slots <= m->mask + 1)
        return 0;
    return hashmap_rehash(m, slots);
}

void *coho__hashmap_get(const coho__hashmap_t *m, uint64_t key)
{
    size_t i;

    if (m->slots == NULL)
        return NULL;
    i = hash_home(m, key);
    for (;;) {
        const coho__hashmap_slot_t *s = &m->slots[i];

        if (s->value == NULL)
            return NULL;
        if (s->key == key)
            return s->value;
        i = (i + 1) & m->mask;
    }
}

int coho__hashmap_put(coho__hashmap_t *m, uint64_t key, void *value, void **old)
{
    size_t i;

    if (old != NULL)
        *old = NULL;
    if (value == NULL)
        return -EINVAL;
    if (m->slots != NULL) {
        i = hash_home(m, key);
        for (;;) {
            coho__hashmap_slot_t *s = &m->slots[i];

            if (s->value == NULL)
                break;
            if (s->key == key) {
                if (old != NULL)
                    *old = s->value;
                s->value = value;
                return 1;
            }
            i = (i + 1) & m->mask;
        }
    }
    if (m->slots == NULL || m->count + 1 > m->grow_at) {
        size_t slots = slots_for(m->count + 1);
        int rc;

        if (slots == 0)
            return -ENOMEM;
        if (m->slots != NULL && slots <= m->mask + 1)
            slots = (m->mask + 1) * 2;
        rc = hashmap_rehash(m, slots);
        if (rc < 0)
            return rc;
    }
    i = hash_home(m, key);
    while (m->slots[i].value != NULL)
        i = (i + 1) & m->mask;
    m->slots[i].key = key;
    m->slots[i].value = value;
    m->count++;
    return 0;
}

void *coho__hashmap_del(coho__hashmap_t *m, uint64_t key)
{
    size_t hole, j;
    void *value;

    if (m->slots == NULL)
        return NULL;
    hole = hash_home(m, key);
    for (;;) {
        if (m->slots[hole].value == NULL)
            return NULL;
        if (m->slots[hole].key == key)
            break;
        hole = (hole + 1) & m->mask;
    }
    value = m->slots[hole].value;
    j = hole;
    for (;;) {
        size_t home;

        j = (j + 1) & m->mask;
        if (m->slots[j].value == NULL)
            break;
        home = hash_home(m, m->slots[j].key);
        /* home in (hole, j] cyclically: the entry must stay where it is */
        if (((j - home) & m->mask) < ((j - hole) & m->mask))
            continue;
        m->slots[hole] = m->slots[j];
        hole = j;
    }
    m->slots[hole].value = NULL;
    m->count--;
    return value;
}

void coho__hashmap_clear(coho__hashmap_t *m)
{
    if (m->slots != NULL)
        memset(m->slots, 0, (m->mask + 1) * sizeof(*m->slots));
    m->count = 0;
}

bool coho__hashmap_next(const coho__hashmap_t *m, size_t *pos, uint64_t *key, void **value)
{
    size_t i;

    if (m->slots == NULL)
        return false;
    for (i = *pos; i <= m->mask; i++) {
        if (m->slots[i].value != NULL) {
            if (key != NULL)
                *key = m->slots[i].key;
            if (value != NULL)
                *value = m->slots[i].value;
            *pos = i + 1;
            return true;
        }
    }
    *pos = i;
    return false;
}
