/* SPDX-License-Identifier: MIT */
/* socket_ext request ids: a pending record per request in a generation-id pool, and the request
 * id as the record's node id under a per-pool keyed permutation.
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

uint64_t coho_tdp_req_id(coho_tdp_pool_t *p)
{
    struct tdp_pending *pd;
    void *node = NULL;
    uint64_t id;

    if (p == NULL || p->closing) {
        errno = p == NULL ? EINVAL : ESHUTDOWN;
        return 0;
    }
    /* The record comes from the pool's node pool (freed records are reused without malloc), and
     * the request id is its node id permuted: unique, never 0, and a stale id resolves to
     * nothing. */
    id = coho_idpool_alloc(p->pending, &node);
    if (id == 0) {
        errno = ENOMEM; /* no cap on the node pool: only ENOMEM */
        return 0;
    }
    pd = node;
    pd->id = id; /* resp is made when the response arrives, sized for it */
    coho_list_init(&pd->conn_link);
    p->st.in_flight++;
    return coho__tdp_id_encode(p, id);
}

void coho__tdp_pending_free(coho_tdp_pool_t *p, struct tdp_pending *pd)
{
    coho_list_del(&pd->conn_link);
    if (pd->resp_live)
        coho_cbuf_destroy(&pd->resp);
    coho_idpool_free(p->pending, pd->id);
    p->st.in_flight--;
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
