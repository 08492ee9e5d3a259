/* SPDX-License-Identifier: MIT */
/* The public face of the node pool (<coho/idpool.h>): the same pool as pool.c, with the public
 * error convention (errno) instead of -errno. A coho_idpool_t is a coho__pool_t. */
#include <errno.h>

#include <coho/idpool.h>

#include "base_struct/pool.h"
#include "base_struct/pool_impl.h"

static inline coho__pool_t *inner(coho_idpool_t *p)
{
    return (coho__pool_t *)(void *)p;
}

static inline const coho__pool_t *inner_const(const coho_idpool_t *p)
{
    return (const coho__pool_t *)(const void *)p;
}

coho_idpool_t *coho_idpool_create(size_t node_size, uint32_t slab_count, uint32_t max_count)
{
    return (coho_idpool_t *)(void *)coho__pool_create(node_size, slab_count, max_count);
}

void coho_idpool_destroy(coho_idpool_t *p)
{
    if (p != NULL)
        coho__pool_destroy(inner(p));
}

uint64_t coho_idpool_alloc(coho_idpool_t *p, void **node)
{
    int err = 0;
    uint64_t id = coho__pool_alloc(inner(p), node, &err);

    if (id == 0)
        errno = -err;
    return id;
}

void *coho_idpool_get(const coho_idpool_t *p, uint64_t id)
{
    /* The lookup inline (pool_impl.h): socket_ext makes several per request. */
    slot_header_t *s = pool_live_slot(inner_const(p), id);

    return s != NULL ? slot_node(s) : NULL;
}

int coho_idpool_free(coho_idpool_t *p, uint64_t id)
{
    int rc = coho__pool_free(inner(p), id);

    if (rc < 0) {
        errno = -rc;
        return -1;
    }
    return 0;
}

size_t coho_idpool_count(const coho_idpool_t *p)
{
    return coho__pool_count(inner_const(p));
}

void coho_idpool_for_each(const coho_idpool_t *p, void (*fn)(uint64_t id, void *node, void *arg),
                          void *arg)
{
    coho__pool_for_each(inner_const(p), fn, arg);
}
