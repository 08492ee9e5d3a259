/* SPDX-License-Identifier: MIT */
/* Broadcast groups: a set of connection ids of any servers and threads. A broadcast copies the
 * frame once into a shared frame; members on the calling thread get it queued at once, the
 * members of every other shard through one post to that shard's scheduler. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "net/internal.h"

struct coho_group {
    pthread_mutex_t mu;
    /* Members in the order they joined (a removal moves the last one into the hole): a
     * broadcast walks them in that order, which is, for members that joined as they connected,
     * the order of their records and sockets in memory. */
    uint64_t *mem;
    size_t len, mem_cap;
    /* Index: position + 1 of each member, open addressing keyed by its id, linear probing,
     * 0 = empty; at most half full. */
    uint32_t *at;
    size_t cap;
};

static size_t id_home(uint64_t id, size_t cap)
{
    id ^= id >> 33;
    id *= 0xff51afd7ed558ccdull;
    id ^= id >> 33;
    return (size_t)(id & (cap - 1));
}

/* The index entry of `id`, or SIZE_MAX. */
static size_t id_find(const coho_group_t *g, uint64_t id)
{
    if (g->cap == 0)
        return SIZE_MAX;
    for (size_t i = id_home(id, g->cap);; i = (i + 1) & (g->cap - 1)) {
        if (g->at[i] == 0)
            return SIZE_MAX;
        if (g->mem[g->at[i] - 1] == id)
            return i;
    }
}

static void id_put(uint32_t *t, size_t cap, uint64_t id, uint32_t pos1)
{
    size_t i = id_home(id, cap);

    while (t[i] != 0)
        i = (i + 1) & (cap - 1);
    t[i] = pos1;
}

/* Removes the member of index entry `i`: the entry goes (the probe runs after it close up),
 * and the last member moves into its position. */
static void id_del_at(coho_group_t *g, size_t i)
{
    size_t mask = g->cap - 1;
    size_t pos = g->at[i] - 1, last = g->len - 1;

    for (size_t j = (i + 1) & mask; g->at[j] != 0; j = (j + 1) & mask) {
        size_t home = id_home(g->mem[g->at[j] - 1], g->cap);
        bool between = i <= j ? (i < home && home <= j) : (i < home || home <= j);
        if (!between) {
            g->at[i] = g->at[j];
            i = j;
        }
    }
    g->at[i] = 0;
    if (pos != last) {
        size_t k = id_find(g, g->mem[last]);
        g->mem[pos] = g->mem[last];
        g->at[k] = (uint32_t)pos + 1;
    }
    g->len--;
}

coho_group_t *coho_group_create(void)
{
    coho_group_t *g = calloc(1, sizeof(*g));

    if (g == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    pthread_mutex_init(&g->mu, NULL);
    return g;
}

void coho_group_destroy(coho_group_t *g)
{
    if (g == NULL)
        return;
    pthread_mutex_destroy(&g->mu);
    free(g->mem);
    free(g->at);
    free(g);
}

int coho_group_add(coho_group_t *g, uint64_t conn_id)
{
    int rc = 0;

    if (g == NULL || conn_id == 0)
        return coho__net_ret(g == NULL ? -EINVAL : -ENOTCONN);
    pthread_mutex_lock(&g->mu);
    if (id_find(g, conn_id) != SIZE_MAX) {
        rc = -EEXIST;
    } else if (g->len >= UINT32_MAX - 1) {
        rc = -ENOMEM; /* positions are 32-bit */
    } else {
        if (g->len == g->mem_cap) {
            size_t nc = g->mem_cap ? g->mem_cap * 2 : 16;
            uint64_t *m = realloc(g->mem, nc * sizeof(*m));
            if (m == NULL) {
                rc = -ENOMEM;
                goto out;
            }
            g->mem = m;
            g->mem_cap = nc;
        }
        if ((g->len + 1) * 2 > g->cap) {
            size_t cap = g->cap ? g->cap * 2 : 32;
            uint32_t *t = calloc(cap, sizeof(*t));
            if (t == NULL) {
                rc = -ENOMEM;
                goto out;
            }
            for (size_t i = 0; i < g->len; i++)
                id_put(t, cap, g->mem[i], (uint32_t)i + 1);
            free(g->at);
            g->at = t;
            g->cap = cap;
        }
        g->mem[g->len] = conn_id;
        id_put(g->at, g->cap, conn_id, (uint32_t)g->len + 1);
        g->len++;
    }
out:
    pthread_mutex_unlock(&g->mu);
    return coho__net_ret(rc);
}

int coho_group_remove(coho_group_t *g, uint64_t conn_id)
{
    int rc = 0;
    size_t i;

    if (g == NULL)
        return coho__net_ret(-EINVAL);
    pthread_mutex_lock(&g->mu);
    i = id_find(g, conn_id);
    if (i == SIZE_MAX)
        rc = -ENOENT;
    else
        id_del_at(g, i);
    pthread_mutex_unlock(&g->mu);
    return coho__net_ret(rc);
}

size_t coho_group_count(const coho_group_t *g)
{
    coho_group_t *m = (coho_group_t *)g;
    size_t n;

    if (g == NULL)
        return 0;
    pthread_mutex_lock(&m->mu);
    n = m->len;
    pthread_mutex_unlock(&m->mu);
    return n;
}

/* The members of one shard met during a broadcast, in the group's order; `sh` is the shard
 * when it runs on the calling thread (they get the frame here), NULL for another thread's shard
 * (or none: one post carries the frame to all of them). */
struct batch {
    unsigned idx;
    coho__shard_t *sh;
    size_t len, cap;
    uint64_t *ids;
};

/* Appends `id` to a growable array; -ENOMEM. */
static int ids_push(uint64_t **ids, size_t *len, size_t *cap, uint64_t id)
{
    if (*len == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        uint64_t *t = realloc(*ids, nc * sizeof(*t));
        if (t == NULL)
            return -ENOMEM;
        *ids = t;
        *cap = nc;
    }
    (*ids)[(*len)++] = id;
    return 0;
}

/* Removes the departed members `ids[0..n)` (not found: already gone). */
static void drop_departed(coho_group_t *g, const uint64_t *ids, size_t n)
{
    for (size_t j = 0; j < n; j++) {
        size_t at = id_find(g, ids[j]);
        if (at != SIZE_MAX)
            id_del_at(g, at);
    }
}

int coho_group_broadcast(coho_group_t *g, const void *frame, size_t len)
{
    struct batch *b = NULL;
    size_t nb = 0, cap_b = 0, k = 0;
    coho__frame_t *f;
    int rc = 0;

    if (g == NULL || (frame == NULL && len > 0) || len > UINT32_MAX)
        return coho__net_ret(-EINVAL);
    f = coho__frame_make(frame, len);
    if (f == NULL)
        return coho__net_ret(-ENOMEM);
    pthread_mutex_lock(&g->mu);
    /* One pass over the members gathers them per shard, in order; then the shards of this
     * thread get the frame at once (a direct send per member whose queue is empty) and every
     * other shard gets one post. The members do not change until the departed ones leave. */
    for (size_t i = 0; i < g->len; i++) {
        uint64_t id = g->mem[i];
        unsigned idx = coho__id_shard(id);
        if (k >= nb || b[k].idx != idx) {
            for (k = 0; k < nb && b[k].idx != idx; k++)
                ;
            if (k == nb) {
                if (nb == cap_b) {
                    size_t nc = cap_b ? cap_b * 2 : 4;
                    struct batch *t = realloc(b, nc * sizeof(*b));
                    if (t == NULL) {
                        rc = -ENOMEM;
                        goto out;
                    }
                    b = t;
                    cap_b = nc;
                }
                b[nb++] = (struct batch){.idx = idx, .sh = coho__shard_here(idx)};
            }
        }
        if (ids_push(&b[k].ids, &b[k].len, &b[k].cap, id) != 0) {
            rc = -ENOMEM;
            goto out;
        }
    }
    for (k = 0; k < nb; k++) {
        size_t stale = 0;
        if (b[k].sh != NULL) {
            stale = coho__conn_deliver(b[k].sh, b[k].ids, b[k].len, f, NULL);
        } else {
            coho__frame_ref(f);
            coho__post_frames(b[k].idx, b[k].ids, b[k].len, f, &stale);
        }
        drop_departed(g, b[k].ids, stale);
    }
out:
    pthread_mutex_unlock(&g->mu);
    for (k = 0; k < nb; k++)
        free(b[k].ids);
    free(b);
    coho__frame_unref(f);
    return coho__net_ret(rc);
}
