/* SPDX-License-Identifier: MIT */
/* Intrusive 4-ary min-heap (contract in heap.h). A 4-ary layout halves the depth of a binary
 * heap, and the four children of a node sit next to each other in the array, so sift-down
 * compares them within one or two cache lines. */
#include "base_struct/heap.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#define HEAP_ARITY   4
#define HEAP_MIN_CAP 16

static inline size_t heap_parent(size_t i)
{
    return (i - 1) / HEAP_ARITY;
}

static inline size_t heap_first_child(size_t i)
{
    return i * HEAP_ARITY + 1;
}

static inline void heap_place(coho__heap_t *h, coho__heap_node_t *n, size_t i)
{
    h->nodes[i] = n;
    n->index = i;
}

/* Moves `n` (logically at hole `i`) up towards the root; returns its final index. */
static size_t heap_sift_up(coho__heap_t *h, coho__heap_node_t *n, size_t i)
{
    while (i > 0) {
        size_t p = heap_parent(i);
        coho__heap_node_t *pn = h->nodes[p];

        if (!h->less(n, pn))
            break;
        heap_place(h, pn, i);
        i = p;
    }
    heap_place(h, n, i);
    return i;
}

/* Moves `n` (logically at hole `i`) down towards the leaves. */
static void heap_sift_down(coho__heap_t *h, coho__heap_node_t *n, size_t i)
{
    size_t count = h->count;

    for (;;) {
        size_t c = heap_first_child(i);
        size_t end, best, k;

        if (c >= count)
            break;
        end = c + HEAP_ARITY < count ? c + HEAP_ARITY : count;
        best = c;
        for (k = c + 1; k < end; k++) {
            if (h->less(h->nodes[k], h->nodes[best]))
                best = k;
        }
        if (!h->less(h->nodes[best], n))
            break;
        heap_place(h, h->nodes[best], i);
        i = best;
    }
    heap_place(h, n, i);
}

void coho__heap_init(coho__heap_t *h, coho__heap_less_fn less)
{
    h->nodes = NULL;
    h->count = 0;
    h->cap = 0;
    h->less = less;
}

void coho__heap_destroy(coho__heap_t *h)
{
    free(h->nodes);
    h->nodes = NULL;
    h->count = 0;
    h->cap = 0;
}

static int heap_grow(coho__heap_t *h)
{
    size_t cap = h->cap ? h->cap * 2 : HEAP_MIN_CAP;
    coho__heap_node_t **nodes;

    if (cap > SIZE_MAX / sizeof(*nodes) || cap <= h->cap)
        return -ENOMEM;
    nodes = realloc(h->nodes, cap * sizeof(*nodes));
    if (nodes == NULL)
        return -ENOMEM;
    h->nodes = nodes;
    h->cap = cap;
    return 0;
}

int coho__heap_push(coho__heap_t *h, coho__heap_node_t *n)
{
    int rc;

    if (coho__heap_node_is_in(n))
        return -EALREADY;
    if (h->count == h->cap) {
        rc = heap_grow(h);
        if (rc < 0)
            return rc;
    }
    h->count++;
    heap_sift_up(h, n, h->count - 1);
    return 0;
}

/* Fills the hole at `i` (whose node was taken out) with the last element. */
static void heap_fill_hole(coho__heap_t *h, size_t i)
{
    coho__heap_node_t *last;

    h->count--;
    if (i == h->count)
        return;
    last = h->nodes[h->count];
    if (heap_sift_up(h, last, i) == i)
        heap_sift_down(h, last, i);
}

/* Floyd's trick for the root: the last element almost always belongs near the bottom, so walk
 * the hole down to a leaf along the smallest children without comparing against it (three
 * comparisons per level instead of four), then sift the last element up from there. */
coho__heap_node_t *coho__heap_pop(coho__heap_t *h)
{
    coho__heap_node_t *top, *last;
    size_t count, i = 0;

    if (h->count == 0)
        return NULL;
    top = h->nodes[0];
    top->index = COHO__HEAP_NOT_IN;
    count = --h->count;
    if (count == 0)
        return top;
    last = h->nodes[count];
    for (;;) {
        size_t c = heap_first_child(i);
        size_t end, best, k;

        if (c >= count)
            break;
        end = c + HEAP_ARITY < count ? c + HEAP_ARITY : count;
        best = c;
        for (k = c + 1; k < end; k++) {
            if (h->less(h->nodes[k], h->nodes[best]))
                best = k;
        }
        heap_place(h, h->nodes[best], i);
        i = best;
    }
    heap_sift_up(h, last, i);
    return top;
}

/* True when `n` sits in `h` (a node of another heap, or no heap, does not). */
static bool heap_holds(const coho__heap_t *h, const coho__heap_node_t *n)
{
    return n->index < h->count && h->nodes[n->index] == n;
}

int coho__heap_remove(coho__heap_t *h, coho__heap_node_t *n)
{
    if (!heap_holds(h, n))
        return -ENOENT;
    heap_fill_hole(h, n->index);
    n->index = COHO__HEAP_NOT_IN;
    return 0;
}

int coho__heap_update(coho__heap_t *h, coho__heap_node_t *n)
{
    size_t i;

    if (!heap_holds(h, n))
        return -ENOENT;
    i = n->index;
    if (heap_sift_up(h, n, i) == i)
        heap_sift_down(h, n, i);
    return 0;
}
