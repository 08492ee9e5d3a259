/* SPDX-License-Identifier: MIT */
/* Intrusive 4-ary min-heap. Elements embed a coho__heap_node_t; the heap stores pointers to
 * nodes in a growable array and never owns the elements. Push and pop are O(log n); removal of
 * any element is O(log n) through the index kept in its node. */
#ifndef COHO_BASE_STRUCT_HEAP_H
#define COHO_BASE_STRUCT_HEAP_H

#include <stdbool.h>
#include <stddef.h>

typedef struct coho__heap_node {
    size_t index; /* position in the heap array; COHO__HEAP_NOT_IN when not in a heap */
} coho__heap_node_t;

#define COHO__HEAP_NOT_IN ((size_t)-1)

/* Strict ordering: true when `a` must come out before `b`. */
typedef bool (*coho__heap_less_fn)(const coho__heap_node_t *a, const coho__heap_node_t *b);

typedef struct coho__heap {
    coho__heap_node_t **nodes;
    size_t count;
    size_t cap;
    coho__heap_less_fn less;
} coho__heap_t;

/* Makes `n` a node that is in no heap. */
static inline void coho__heap_node_init(coho__heap_node_t *n)
{
    n->index = COHO__HEAP_NOT_IN;
}

static inline bool coho__heap_node_is_in(const coho__heap_node_t *n)
{
    return n->index != COHO__HEAP_NOT_IN;
}

/* Initialises an empty heap ordered by `less`. Allocates nothing until the first push. */
void coho__heap_init(coho__heap_t *h, coho__heap_less_fn less);

/* Frees the array. The elements are not touched (the heap never owns them). */
void coho__heap_destroy(coho__heap_t *h);

/* Inserts `n`. Returns 0, -EALREADY if `n` is already in a heap, or -ENOMEM. */
int coho__heap_push(coho__heap_t *h, coho__heap_node_t *n);

/* The minimum, or NULL when empty. O(1). */
static inline coho__heap_node_t *coho__heap_top(const coho__heap_t *h)
{
    return h->count ? h->nodes[0] : NULL;
}

/* Removes and returns the minimum, or NULL when empty. */
coho__heap_node_t *coho__heap_pop(coho__heap_t *h);

/* Removes `n` from `h`. Returns 0, or -ENOENT if `n` is not in `h`. */
int coho__heap_remove(coho__heap_t *h, coho__heap_node_t *n);

/* Restores order after the key of `n` (in `h`) changed. Returns 0 or -ENOENT. */
int coho__heap_update(coho__heap_t *h, coho__heap_node_t *n);

static inline size_t coho__heap_count(const coho__heap_t *h)
{
    return h->count;
}

#endif /* COHO_BASE_STRUCT_HEAP_H */
