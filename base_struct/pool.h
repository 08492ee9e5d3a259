/* SPDX-License-Identifier: MIT */
/* Fixed-size node pool addressed by 64-bit generation ids.
 *
 * An id packs a slot index (low 32 bits) and the slot's generation (high 32 bits, never 0), so
 * id 0 is never issued. Freeing a slot bumps its generation: a stale id (slot freed, or freed and
 * reused) resolves to NULL, never to the slot's new owner. The pool grows in slabs (memory is
 * never moved, so node pointers stay valid while their id is live) and reuses freed slots LIFO.
 * alloc, get and free are O(1). A generation that would wrap retires its slot for good.
 *
 *     id layout:  63 ............ 32 | 31 ............ 0
 *                 generation (>= 1)   | slot index
 */
#ifndef COHO_BASE_STRUCT_POOL_H
#define COHO_BASE_STRUCT_POOL_H

#include <stddef.h>
#include <stdint.h>

typedef struct coho__pool coho__pool_t;

/* Creates a pool of nodes of `node_size` bytes (aligned to 16), growing by `slab_count` nodes
 * (0: a default of 256; rounded up to a power of two, at most 2^24). `max_count` caps live
 * nodes (0: no cap beyond the 2^32 - 3 slot indices). Returns NULL with errno EINVAL (node_size
 * 0, slab_count above 2^24, or one slab larger than 1 TiB) or ENOMEM. */
coho__pool_t *coho__pool_create(size_t node_size, uint32_t slab_count, uint32_t max_count);

/* Frees every slab. Live nodes are gone with it. */
void coho__pool_destroy(coho__pool_t *p);

/* Allocates a node (contents zeroed) and stores its address in *node (if node != NULL).
 * Returns its id, or 0 with *err set (if err != NULL) to -ENOMEM or -EAGAIN (max_count reached). */
uint64_t coho__pool_alloc(coho__pool_t *p, void **node, int *err);

/* As coho__pool_alloc, without zeroing: the node holds what its last owner left in it, or zeros
 * if the slot was never used or its slab was trimmed since. For owners that keep a node's fields
 * valid across reuse and set the rest themselves. `node` must not be NULL. */
uint64_t coho__pool_alloc_raw(coho__pool_t *p, void **node, int *err);

/* The node of a live id, or NULL for 0, a stale, freed or never-issued id. */
void *coho__pool_get(const coho__pool_t *p, uint64_t id);

/* Frees the node of `id`. Returns 0, or -ENOENT for a stale or unknown id (nothing changes). */
int coho__pool_free(coho__pool_t *p, uint64_t id);

/* Gives the memory of every slab without a live node back to the kernel (MADV_DONTNEED),
 * except the first slab, which stays resident. Ids of such a slab stay stale; its slots are
 * reused (memory faulted back) only once no other freed slot is left. O(slabs + free slots):
 * meant for an idle moment, not for every free. Returns the number of slabs given back. */
size_t coho__pool_trim(coho__pool_t *p);

/* Number of live nodes. */
size_t coho__pool_count(const coho__pool_t *p);

/* Calls fn(id, node, arg) for every live node, in slot order. fn may free the node it is given
 * (and no other); it must not alloc. */
void coho__pool_for_each(const coho__pool_t *p, void (*fn)(uint64_t id, void *node, void *arg),
                         void *arg);

#endif /* COHO_BASE_STRUCT_POOL_H */
