/* SPDX-License-Identifier: MIT */
/* A fixed-size node pool addressed by 64-bit generation ids: the pool libcoho keeps its
 * coroutines in, for code above it (libcoho_net's socket_ext pools, user code) that hands out
 * references which must outlive their object safely.
 *
 * An id packs a slot index (low 32 bits) and the slot's generation (high 32 bits, never 0), so
 * id 0 is never issued. Freeing a node bumps its slot's generation: a stale id (freed, or freed
 * and reused) resolves to NULL, never to the slot's new owner. Nodes never move while their id
 * is live, so a node pointer stays valid until its id is freed. alloc, get and free are O(1).
 *
 * Threads: a pool belongs to one thread at a time (no locking). */
#ifndef COHO_IDPOOL_H
#define COHO_IDPOOL_H

#include "coho/common.h"

COHO_EXTERN_C_BEGIN

typedef struct coho_idpool coho_idpool_t; /* opaque */

/* Creates a pool of nodes of `node_size` bytes (16-byte aligned), growing by `slab_count` nodes
 * at a time (0: 256; rounded up to a power of two, at most 2^24). `max_count` caps live nodes
 * (0: no cap). Returns NULL with errno EINVAL (node_size 0, slab_count above 2^24) or ENOMEM. */
COHO_API coho_idpool_t *coho_idpool_create(size_t node_size, uint32_t slab_count,
                                           uint32_t max_count);

/* Frees the pool and every node in it (live ids become meaningless). NULL is a no-op. */
COHO_API void coho_idpool_destroy(coho_idpool_t *p);

/* Allocates a zeroed node, stores its address in *node (if `node` is not NULL) and returns its
 * id. Returns 0 with errno ENOMEM, or EAGAIN (max_count live nodes). */
COHO_API uint64_t coho_idpool_alloc(coho_idpool_t *p, void **node);

/* The node of live id `id`, or NULL for 0, a freed, stale or never-issued id. The pointer is
 * valid until the id is freed. */
COHO_API void *coho_idpool_get(const coho_idpool_t *p, uint64_t id);

/* Frees the node of `id`. Returns 0, or -1 with errno ENOENT (stale or unknown id: nothing
 * changes). */
COHO_API int coho_idpool_free(coho_idpool_t *p, uint64_t id);

/* The number of live nodes. */
COHO_API size_t coho_idpool_count(const coho_idpool_t *p);

/* Calls fn(id, node, arg) for every live node, in slot order. `fn` may free the node it is
 * given (and no other); it must not allocate from the pool. */
COHO_API void coho_idpool_for_each(const coho_idpool_t *p,
                                   void (*fn)(uint64_t id, void *node, void *arg), void *arg);

COHO_EXTERN_C_END

#endif /* COHO_IDPOOL_H */
