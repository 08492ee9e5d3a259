/* SPDX-License-Identifier: MIT */
/* socket_ext request ids: a pending record per request in a generation-indexed table, and the
 * request id as the record's node id under a per-pool keyed permutation.
 *
 * A request id is the pending record's node id under a keyed bijection of the 64-bit values,
 * with keys drawn per pool from getrandom. Node ids count up (generation and slot), so without
 * it every peer could tell how many requests a pool makes and predict the ids of those on other
 * connections. The bijection (coho__tdp_id_permute, inline in tdp_internal.h) is two rounds of
 * multiply (by a secret odd number, invertible modulo 2^64) and xor-shift by 32 (its own
 * inverse), between secret xors: about ten instructions each way, which matters as ids are
 * encoded once and decoded three times per request (a 4-round Feistel network cost 15 % of a
 * client's instructions per request). Hard to predict for a peer that sees its own ids, not a
 * cryptographic guarantee: what keeps a peer from completing another connection's request is
 * the check in coho__tdp_rx_dispatch that a response arrives on the connection its request went
 * out on. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "net/tdp_internal.h"

/* The inverse of odd `m` modulo 2^64 (Newton's iteration: each step doubles the correct low
 * bits, from 3 for m itself). */
static uint64_t mul_inverse(uint64_t m)
{
    uint64_t inv = m;
    int i;

    for (i = 0; i < 5; i++)
        inv *= 2 - m * inv;
    return inv;
}

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Draws the pool's id keys: from getrandom, or, where it fails (no entropy yet at boot, an
 * old kernel, a seccomp filter), from the clocks and the pool's address. */
void coho__tdp_id_keys_init(coho_tdp_pool_t *p)
{
    struct tdp_id_keys *k = &p->id_keys;
    uint64_t r[4] = {0, 0, 0, 0};
    unsigned i;

    if (getrandom(r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r)) {
        struct timespec rt, mono;
        uint64_t seed;

        clock_gettime(CLOCK_REALTIME, &rt);
        clock_gettime(CLOCK_MONOTONIC, &mono);
        seed = (uint64_t)rt.tv_sec * 1000000007u ^ (uint64_t)rt.tv_nsec ^
               (uint64_t)mono.tv_nsec << 32 ^ (uint64_t)(uintptr_t)p;
        for (i = 0; i < 4; i++)
            r[i] ^= splitmix64(&seed);
    }
    k->xor_in = r[0];
    k->xor_out = r[1];
    for (i = 0; i < 2; i++) {
        k->mul[i] = r[2 + i] | 1;
        k->mul_inv[i] = mul_inverse(k->mul[i]);
    }
    p->id_zero = coho__tdp_id_permute(k, 0);
}

/* A free pending record with a new node id (its generation bumped when it was freed), or
 * NULL (ENOMEM). The table grows by a chunk of TDP_PEND_CHUNK records; records never move, so
 * a parked waiter's pointer stays valid. */
static struct tdp_pending *pending_alloc(coho_tdp_pool_t *p)
{
    struct tdp_pending *pd;
    uint32_t slot;

    if (p->pend_free != 0) {
        slot = p->pend_free - 1;
        pd = &p->pend_chunks[slot >> TDP_PEND_SHIFT][slot & (TDP_PEND_CHUNK - 1)];
        p->pend_free = pd->next_free;
    } else {
        uint32_t chunk = p->pend_slots >> TDP_PEND_SHIFT;

        if (p->pend_slots == UINT32_MAX)
            return NULL;
        if ((p->pend_slots & (TDP_PEND_CHUNK - 1)) == 0) {
            struct tdp_pending *recs;

            if (chunk == p->pend_chunk_cap) {
                uint32_t cap = p->pend_chunk_cap != 0 ? p->pend_chunk_cap * 2 : 4;
                struct tdp_pending **t = realloc(p->pend_chunks, cap * sizeof(*t));

                if (t == NULL)
                    return NULL;
                p->pend_chunks = t;
                p->pend_chunk_cap = cap;
            }
            /* Cache-line aligned, so that each record's first line holds its hot fields. */
            recs = aligned_alloc(_Alignof(struct tdp_pending), TDP_PEND_CHUNK * sizeof(*recs));
            if (recs == NULL)
                return NULL;
            memset(recs, 0, TDP_PEND_CHUNK * sizeof(*recs));
            p->pend_chunks[chunk] = recs;
        }
        slot = p->pend_slots++;
        pd = &p->pend_chunks[chunk][slot & (TDP_PEND_CHUNK - 1)];
        pd->gen = 1;
    }
    pd->id = (uint64_t)pd->gen << 32 | slot;
    pd->conn_id = 0; /* ends next_free too (a union): the record is live */
    pd->co_id = 0;
    pd->token = 0;
    pd->status = 0;
    pd->resp_live = false; /* resp is made when the response arrives, sized for it */
    pd->in_out = false;
    pd->out = NULL;
    coho_list_init(&pd->conn_link);
    return pd;
}

uint64_t coho_tdp_req_id(coho_tdp_pool_t *p)
{
    struct tdp_pending *pd;

    if (p == NULL || p->closing) {
        errno = p == NULL ? EINVAL : ESHUTDOWN;
        return 0;
    }
    /* Freed records are reused without malloc; the request id is the record's node id
     * permuted: unique, never 0, and a stale id resolves to nothing. */
    pd = pending_alloc(p);
    if (pd == NULL) {
        errno = ENOMEM; /* no cap on the table: only ENOMEM */
        return 0;
    }
    p->st.in_flight++;
    return coho__tdp_id_encode(p, pd->id);
}

void coho__tdp_pending_free(coho_tdp_pool_t *p, struct tdp_pending *pd)
{
    uint32_t slot = (uint32_t)pd->id;

    coho_list_del(&pd->conn_link);
    if (pd->resp_live)
        coho_cbuf_destroy(&pd->resp);
    pd->resp_live = false;
    pd->id = 0;
    pd->gen = pd->gen == UINT32_MAX ? 1 : pd->gen + 1; /* never 0: node ids are never 0 */
    pd->next_free = p->pend_free;
    p->pend_free = slot + 1;
    p->st.in_flight--;
}

void coho__tdp_pending_for_each(coho_tdp_pool_t *p,
                                void (*fn)(coho_tdp_pool_t *p, struct tdp_pending *pd))
{
    uint32_t slot;

    for (slot = 0; slot < p->pend_slots; slot++) {
        struct tdp_pending *pd =
            &p->pend_chunks[slot >> TDP_PEND_SHIFT][slot & (TDP_PEND_CHUNK - 1)];

        if (pd->id != 0)
            fn(p, pd);
    }
}

void coho__tdp_pending_destroy(coho_tdp_pool_t *p)
{
    uint32_t slot, nchunks = (p->pend_slots + TDP_PEND_CHUNK - 1) >> TDP_PEND_SHIFT;

    for (slot = 0; slot < p->pend_slots; slot++) {
        struct tdp_pending *pd =
            &p->pend_chunks[slot >> TDP_PEND_SHIFT][slot & (TDP_PEND_CHUNK - 1)];

        if (pd->id != 0 && pd->resp_live)
            coho_cbuf_destroy(&pd->resp);
    }
    for (slot = 0; slot < nchunks; slot++)
        free(p->pend_chunks[slot]);
    free(p->pend_chunks);
    p->pend_chunks = NULL;
    p->pend_slots = p->pend_free = p->pend_chunk_cap = 0;
}

int coho_tdp_req_release(coho_tdp_pool_t *p, uint64_t req_id)
{
    struct tdp_pending *pd = p != NULL ? coho__tdp_pending_get(p, req_id) : NULL;

    if (pd == NULL) {
        errno = p == NULL ? EINVAL : ENOENT;
        return -1;
    }
    if (pd->co_id != 0) {
        errno = EBUSY; /* a coroutine waits for it */
        return -1;
    }
    coho__tdp_pending_free(p, pd);
    return 0;
}
