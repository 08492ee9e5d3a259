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
    uint64_t *ids; /* open addressing, 0 = empty, linear probing */
    size_t cap, len;
};

static size_t id_home(uint64_t id, size_t cap)
{
    id ^= id >> 33;
    id *= 0xff51afd7ed558ccdull;
    id ^= id >> 33;
    return (size_t)(id & (cap - 1));
}

static size_t id_find(const coho_group_t *g, uint64_t id)
{
    if (g->cap == 0)
        return SIZE_MAX;
    for (size_t i = id_home(id, g->cap);; i = (i + 1) & (g->cap - 1)) {
        if (g->ids[i] == id)
            return i;
        if (g->ids[i] == 0)
            return SIZE_MAX;
    }
}

static void id_put(uint64_t *t, size_t cap, uint64_t id)
{
    size_t i = id_home(id, cap);

    while (t[i] != 0)
        i = (i + 1) & (cap - 1);
    t[i] = id;
}

static void id_del_at(coho_group_t *g, size_t i)
{
    size_t mask = g->cap - 1;

    g->len--;
    for (size_t j = (i + 1) & mask; g->ids[j] != 0; j = (j + 1) & mask) {
        size_t home = id_home(g->ids[j], g->cap);
        bool between = i <= j ? (i < home && home <= j) : (i < home || home <= j);
        if (!between) {
            g->ids[i] = g->ids[j];
            i = j;
        }
    }
    g->ids[i] = 0;
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
    free(g->ids);
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
    } else {
        if ((g->len + 1) * 2 > g->cap) {
            size_t cap = g->cap ? g->cap * 2 : 16;
            uint64_t *t = calloc(cap, sizeof(*t));
            if (t == NULL) {
                rc = -ENOMEM;
                goto out;
            }
            for (size_t i = 0; i < g->cap; i++)
                if (g->ids[i] != 0)
                    id_put(t, cap, g->ids[i]);
            free(g->ids);
            g->ids = t;
            g->cap = cap;
        }
        id_put(g->ids, g->cap, conn_id);
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

/* The members of one shard gathered for a broadcast. */
struct batch {
    unsigned idx;
    size_t len, cap;
    uint64_t *ids;
};

int coho_group_broadcast(coho_group_t *g, const void *frame, size_t len)
{
    struct batch *b = NULL;
    size_t nb = 0, cap_b = 0;
    coho__frame_t *f;
    int rc = 0;

    if (g == NULL || (frame == NULL && len > 0) || len > UINT32_MAX)
        return coho__net_ret(-EINVAL);
    f = coho__frame_make(frame, len);
    if (f == NULL)
        return coho__net_ret(-ENOMEM);
    pthread_mutex_lock(&g->mu);
    for (size_t i = 0; i < g->cap; i++) {
        uint64_t id = g->ids[i];
        unsigned idx = coho__id_shard(id);
        size_t k;
        if (id == 0)
            continue;
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
            b[nb++] = (struct batch){.idx = idx};
        }
        if (b[k].len == b[k].cap) {
            size_t nc = b[k].cap ? b[k].cap * 2 : 16;
            uint64_t *t = realloc(b[k].ids, nc * sizeof(*t));
            if (t == NULL) {
                rc = -ENOMEM;
                goto out;
            }
            b[k].ids = t;
            b[k].cap = nc;
        }
        b[k].ids[b[k].len++] = id;
    }
    for (size_t k = 0; k < nb; k++) {
        coho__shard_t *sh = coho__shard_here(b[k].idx);
        if (sh == NULL) {
            /* Another thread's shard (or none): one post carries the frame to all of them. */
            size_t stale = 0;
            coho__frame_ref(f);
            coho__post_frames(b[k].idx, b[k].ids, b[k].len, f, &stale);
            for (size_t j = 0; j < stale; j++) {
                size_t at = id_find(g, b[k].ids[j]); /* departed: leaves the group now */
                if (at != SIZE_MAX)
                    id_del_at(g, at);
            }
            continue;
        }
        for (size_t j = 0; j < b[k].len; j++) {
            struct coho_conn *c = coho__conn_lookup(sh, b[k].ids[j]);
            if (c == NULL) {
                /* Departed: leaves the group now. */
                size_t at = id_find(g, b[k].ids[j]);
                if (at != SIZE_MAX)
                    id_del_at(g, at);
                COHO__STAT_ADD(sh->srv, send_stale, 1);
                continue;
            }
            coho__conn_enqueue(c, f); /* an overflow closes that member, counted */
        }
    }
out:
    pthread_mutex_unlock(&g->mu);
    for (size_t k = 0; k < nb; k++)
        free(b[k].ids);
    free(b);
    coho__frame_unref(f);
    return coho__net_ret(rc);
}
