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

/* The members of one shard met during a broadcast: the shard when it runs on the calling
 * thread (its members get the frame during the scan), else the ids gathered for one post. */
struct batch {
    unsigned idx;
    coho__shard_t *sh; /* NULL: another thread's shard (or none) */
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

int coho_group_broadcast(coho_group_t *g, const void *frame, size_t len)
{
    struct batch *b = NULL;
    size_t nb = 0, cap_b = 0, k = 0;
    uint64_t *gone = NULL; /* local members found departed: they leave after the scan */
    size_t ngone = 0, cap_gone = 0;
    coho__frame_t *f;
    int rc = 0;

    if (g == NULL || (frame == NULL && len > 0) || len > UINT32_MAX)
        return coho__net_ret(-EINVAL);
    f = coho__frame_make(frame, len);
    if (f == NULL)
        return coho__net_ret(-ENOMEM);
    pthread_mutex_lock(&g->mu);
    /* One pass over the table: a member of a shard of this thread gets the frame at once (a
     * direct send when its queue is empty); the others are gathered per shard for one post
     * each. The table is not changed during the pass (departed ids are removed after it). */
    for (size_t i = 0; i < g->cap; i++) {
        uint64_t id = g->ids[i];
        unsigned idx = coho__id_shard(id);
        if (id == 0)
            continue;
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
        if (b[k].sh != NULL) {
            struct coho_conn *c = coho__conn_lookup(b[k].sh, id);
            if (c != NULL) {
                coho__conn_enqueue(c, f); /* an overflow closes that member, counted */
                continue;
            }
            COHO__STAT_ADD(b[k].sh->srv, send_stale, 1);
            if (ids_push(&gone, &ngone, &cap_gone, id) != 0) {
                rc = -ENOMEM;
                goto out;
            }
            continue;
        }
        if (ids_push(&b[k].ids, &b[k].len, &b[k].cap, id) != 0) {
            rc = -ENOMEM;
            goto out;
        }
    }
    for (k = 0; k < nb; k++) {
        size_t stale = 0;
        if (b[k].sh != NULL || b[k].len == 0)
            continue;
        /* Another thread's shard (or none): one post carries the frame to all of them. */
        coho__frame_ref(f);
        coho__post_frames(b[k].idx, b[k].ids, b[k].len, f, &stale);
        for (size_t j = 0; j < stale; j++) {
            size_t at = id_find(g, b[k].ids[j]); /* departed: leaves the group now */
            if (at != SIZE_MAX)
                id_del_at(g, at);
        }
    }
out:
    for (size_t j = 0; j < ngone; j++) {
        size_t at = id_find(g, gone[j]); /* departed: leaves the group now */
        if (at != SIZE_MAX)
            id_del_at(g, at);
    }
    pthread_mutex_unlock(&g->mu);
    for (k = 0; k < nb; k++)
        free(b[k].ids);
    free(b);
    free(gone);
    coho__frame_unref(f);
    return coho__net_ret(rc);
}
