/* SPDX-License-Identifier: MIT */
/* socket_ext ("tdp") inside libcoho_net: the records every tdp_*.c file shares and the
 * functions they call across files. Pooled request/response multiplexing over long TCP
 * connections (or UDP sockets):
 *
 *   pool ── conns (generation-id node pool) ── conn: fd, rbuf (cbuf), in-flight list,
 *     │                                            receive coroutine (daemon)
 *     ├── pending (generation-indexed table: struct tdp_pending, waiter, status, response;
 *     │            the request id is the node's id under a per-pool secret permutation, so
 *     │            a stale, guessed or forged id finds nothing; a response is only taken from
 *     │            the connection its request went out on)
 *     └── connect pools: one daemon "keeper" coroutine per slot: connect, receive, back off
 *         listen pools:  one daemon accept coroutine, one receive coroutine per client
 *
 * The receive coroutine owns its connection: it is the only one that frees it. A sender looks
 * the connection up by id each time, so a connection that went away is ENOTCONN, never a
 * dangling pointer.
 *
 * Files: tdp_pool.c (lifecycle, keepers, accept, pick, close), tdp_recv.c (receive loop,
 * dispatch, backpressure, wait_resp), tdp_send.c (sends and group commit), tdp_udp.c
 * (datagram pools), tdp_id.c (request ids), sock_framer.c (the sock protocol). Everything
 * here uses libcoho's public API plus its park primitive (coroutine/park.h). Internal
 * functions return 0 / >= 0 or -errno; public ones set errno. */
#ifndef COHO_NET_TDP_INTERNAL_H
#define COHO_NET_TDP_INTERNAL_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <coho.h>
#include <coho/net.h>

#include "coroutine/park.h"
#include "net/accept.h"

#define TDP_READ_CHUNK    16384
#define TDP_IOV_MAX       8
#define TDP_DGRAM_MAX     65536 /* receive buffer of a datagram socket: the largest UDP payload */
#define TDP_REQS_IDLE_MAX 256   /* freed request records kept per pool */
/* Frames up to this size are copied out of the receive buffer in one piece, and a freed
 * request record keeps a frame buffer of up to this much chunk memory for the next request. */
#define TDP_FRAME_FLAT_MAX 4096
#define TDP_WQ_KEEP_MAX    65536 /* a pool keeps spare write queue buffers of at most this */
#define TDP_WQ_SPARES      4     /* ... and at most this many */

enum { TDP_CONNECT = 1, TDP_LISTEN = 2 };

struct tdp_conn {
    uint64_t id;
    int fd;
    unsigned slot; /* connect pools: the keeper slot */
    bool broken;
    coho_cbuf_t rbuf;
    coho_list_t inflight;         /* struct tdp_pending.conn_link */
    coho_list_t link;             /* in pool->conns_live */
    uint64_t rx_co;               /* the receive coroutine */
    struct sockaddr_storage peer; /* datagram pools: sender of the datagram being dispatched */
    socklen_t peer_len;
    /* Frames queued behind a flush in progress (tdp_send.c): wq_len bytes of a flat buffer of
     * wq_cap (malloc'd, or a spare of the pool's; NULL when nothing is queued). */
    unsigned char *wq;
    size_t wq_len, wq_cap;
    coho_list_t wwaiters; /* struct tdp_waiter: senders whose frames are in wq */
    bool flushing;        /* a sender gathers and writes the frames of others too */
    bool dispatching;     /* the receive coroutine is in coho__tdp_rx_dispatch */
    unsigned reqs_held;   /* requests of this connection handed to on_req and not yet freed */
    size_t reqs_held_len; /* ... the bytes of their frames */
    uint64_t room_co;     /* the receive coroutine, parked until those drain (0: not parked) */
    uint64_t room_token;
};

/* A coroutine parked on a wait list (a flush of its frame, a connection coming up). */
struct tdp_waiter {
    coho_list_t link;
    uint64_t co_id;
    uint64_t token;
};

/* What a request touches on its way (the id, the waiter, the state, the connection link) fills
 * the record's first 64 bytes, and records start on a cache line (tdp_id.c allocates their
 * chunks aligned): a response for a cold waiter then misses one line of its record, not two or
 * three. The response buffer, used only when the waiter's own buffer cannot take it, follows. */
struct tdp_pending {
    /* The node id (the request id is its permutation: coho__tdp_id_encode); 0 while the record
     * is free. */
    _Alignas(64) uint64_t id;
    uint32_t gen;   /* the slot's generation, the node id's high half (never 0) */
    int16_t status; /* 0 waiting for the response, 1 arrived, -errno failed */
    bool resp_live; /* resp is initialised (the response arrived and was not yet taken) */
    bool in_out;    /* the response was written straight into `out` (status 1, resp unused) */
    union {
        uint64_t conn_id;   /* live: the connection the request last went out on; 0: not sent */
        uint32_t next_free; /* free: slot + 1 of the next free record, 0 for none */
    };
    uint64_t co_id; /* the waiter, 0 while nobody waits */
    uint64_t token;
    coho_cbuf_t *out;      /* the parked waiter's buffer (coho_tdp_wait_resp), NULL otherwise */
    coho_list_t conn_link; /* in the connection's in-flight list once sent */
    coho_cbuf_t resp;
};

/* An errno value as a record's status (errno values are small: they fit). */
static inline int16_t coho__tdp_status_err(int neg_errno)
{
    return (int16_t)(neg_errno < INT16_MIN ? INT16_MIN : neg_errno);
}

/* The keys of a pool's request id permutation (tdp_id.c). */
struct tdp_id_keys {
    uint64_t xor_in, xor_out;
    uint64_t mul[2];     /* odd */
    uint64_t mul_inv[2]; /* their inverses modulo 2^64 */
};

#define TDP_CONN_CACHE 16 /* entries of a pool's connection cache (a power of two) */

struct tdp_conn_ref {
    uint64_t id; /* 0: empty */
    struct tdp_conn *c;
};

struct coho_tdp_pool {
    int mode;
    coho_tdp_opts_t o;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    coho_idpool_t *conns;                           /* struct tdp_conn, by id */
    struct tdp_conn_ref conn_cache[TDP_CONN_CACHE]; /* coho__tdp_conn_find */
    coho_list_t conns_live;
    uint64_t *slots; /* connect pools: conn id per keeper slot (0: down) */
    uint64_t *keepers;
    /* Pending records by node id (decoded request id): slot in the low 32 bits, generation in
     * the high 32 (tdp_id.c). Records live in chunks of TDP_PEND_CHUNK that never move. */
    struct tdp_pending **pend_chunks;
    uint32_t pend_chunk_cap;    /* entries of pend_chunks */
    uint32_t pend_slots;        /* records made (slots 0 .. pend_slots - 1) */
    uint32_t pend_free;         /* slot + 1 of the first free record, 0 for none */
    struct tdp_id_keys id_keys; /* the pool's secret: the keys of the id permutation */
    uint64_t id_zero;           /* the permutation of 0, xored out so that 0 stays 0 */
    unsigned rr;
    int listen_fd;
    uint16_t port;
    uint64_t accept_co;
    coho__net_acceptor_t acc; /* listen pools: the accept loop's state (its reserve fd) */
    bool closing;
    bool dgram;     /* UDP: one datagram per frame (coho_tdp_udp_connect, coho_tdp_udp_listen) */
    bool sock_only; /* the only framer is the sock framer: headers are read in place, once */
    unsigned refs;  /* memory: the user's handle, each live pool coroutine, each request */
    unsigned cos;   /* live pool coroutines (coho_tdp_close waits for them) */
    unsigned reqs_live;        /* requests handed to on_req and not yet freed */
    struct tdp_req *reqs_idle; /* freed request records kept for reuse */
    unsigned reqs_idle_count;
    /* Write queue buffers a flush gave back, for the next connection that queues a frame
     * (tdp_send.c): a connection holds one only while it has frames queued or in its write. */
    unsigned char *wq_spare[TDP_WQ_SPARES];
    size_t wq_spare_cap[TDP_WQ_SPARES];
    unsigned wq_spares;
    coho_list_t up_waiters; /* struct tdp_waiter: parked in coho_tdp_pick */
    coho_list_t cb_frames;  /* struct tdp_cb_frame: coroutines inside a user callback now */
    coho_tdp_stats_t st;
};

/* A request handed to on_req: the public record, and what it holds of its connection's
 * allowance (max_conn_reqs, max_conn_req_len). A freed record is kept by its pool for the next
 * request (no malloc per request). */
struct tdp_req {
    coho_tdp_req_t pub;        /* first: a coho_tdp_req_t * is a struct tdp_req * */
    struct tdp_req *idle_next; /* in the pool's reqs_idle while freed */
    size_t held_len;           /* frame bytes counted in the connection's reqs_held_len */
    bool held;                 /* counted in the connection's reqs_held */
    /* A kept record's frame buffer stays initialised, empty, with frame_cap bytes of chunk
     * memory (at most TDP_FRAME_FLAT_MAX): the next request of up to that size is copied into
     * it without taking a chunk from the pool and giving one back per request. */
    bool frame_live;
    size_t frame_cap;
};

/* ---- tdp_pool.c ---- */

/* The last reference went: frees the pool. */
void coho__tdp_pool_free(coho_tdp_pool_t *p);

/* The pool's memory lives while anyone holds a reference (refs). Besides the user's handle,
 * the pool's coroutines and the requests handed to on_req, every caller of a public function
 * that may park in it (pick, wait_resp, sendv, attach) holds one for the time of the call:
 * coho_tdp_close wakes such callers but does not wait for them to run, and a closer that is
 * itself cancelled does not wait for the pool's coroutines either, so without it the last of
 * those could free the pool before a woken caller looks at it again. */
static inline void coho__tdp_pool_ref(coho_tdp_pool_t *p)
{
    p->refs++;
}

static inline void coho__tdp_pool_unref(coho_tdp_pool_t *p)
{
    if (--p->refs == 0)
        coho__tdp_pool_free(p);
}

/* A pool coroutine ends (its start is counted before the spawn). */
void coho__tdp_pool_co_exit(coho_tdp_pool_t *p);

/* A new pool (mode TDP_CONNECT or TDP_LISTEN), checked options, no coroutine yet. Returns it,
 * or NULL with *err EPERM (not in a coroutine), EINVAL or ENOMEM. */
coho_tdp_pool_t *coho__tdp_pool_create(int mode, const struct sockaddr *addr, socklen_t addrlen,
                                       const coho_tdp_opts_t *o, int *err);

/* Adds a connected fd (or a datagram socket) to the pool with its receive coroutine, in keeper
 * slot `slot` of a connect pool. Returns the connection id, or 0 (ENOMEM; the fd is closed). */
uint64_t coho__tdp_serve_conn(coho_tdp_pool_t *p, int fd, unsigned slot);

/* Takes the connection out of the pool: in-flight waiters fail at once with `err`. */
void coho__tdp_conn_break(coho_tdp_pool_t *p, struct tdp_conn *c, int err);

/* Frees a broken connection (the receive coroutine's last step). */
void coho__tdp_conn_free(coho_tdp_pool_t *p, struct tdp_conn *c, int err);

/* Runs on_req(rq) recorded as a callback frame (see tdp_pool.c "callbacks"). */
void coho__tdp_cb_req(coho_tdp_pool_t *p, coho_tdp_req_t *rq);

/* The connection of id `id` (broken or not, until it is freed), or NULL. A small direct-mapped
 * cache by id (entries cleared when their connection is freed) spares the node pool's lookup,
 * a call into libcoho, on the two or three lookups of a request. */
static inline struct tdp_conn *coho__tdp_conn_find(coho_tdp_pool_t *p, uint64_t id)
{
    struct tdp_conn_ref *e = &p->conn_cache[id & (TDP_CONN_CACHE - 1)];
    struct tdp_conn *c;

    if (e->id == id && id != 0)
        return e->c;
    c = id != 0 ? coho_idpool_get(p->conns, id) : NULL;
    if (c != NULL) {
        e->id = id;
        e->c = c;
    }
    return c;
}

/* A live (not broken) connection of the pool, or NULL. */
static inline struct tdp_conn *coho__tdp_conn_get(coho_tdp_pool_t *p, uint64_t id)
{
    struct tdp_conn *c = coho__tdp_conn_find(p, id);

    return c != NULL && !c->broken ? c : NULL;
}

/* ---- sock_framer.c ---- */

/* Whether `f` is the sock protocol's framer (coho_sock_framer_init). */
bool coho__sock_is_framer(const coho_tdp_framer_t *f);

/* ---- tdp_recv.c ---- */

/* Receive coroutine of a connection made by coho__tdp_serve_conn (arg: a malloc'd
 * struct tdp_rx_arg, freed here). */
struct tdp_rx_arg {
    coho_tdp_pool_t *p;
    uint64_t conn_id;
};
void coho__tdp_rx_main(void *arg);

/* Reads and dispatches a stream connection until it breaks. Returns the reason (an errno
 * value). */
int coho__tdp_rx_loop(coho_tdp_pool_t *p, struct tdp_conn *c);

/* Splits and dispatches the whole frames at the front of the connection's buffer. Returns 0
 * (need more bytes, or full) or -EPROTO (malformed: close the connection). */
int coho__tdp_rx_dispatch(coho_tdp_pool_t *p, struct tdp_conn *c);

/* Backpressure (tdp_recv.c): the connection's requests in on_req reach max_conn_reqs, or their
 * frames max_conn_req_len bytes. */
static inline bool coho__tdp_conn_is_full(const coho_tdp_pool_t *p, const struct tdp_conn *c)
{
    return (p->o.max_conn_reqs != 0 && c->reqs_held >= p->o.max_conn_reqs) ||
           (p->o.max_conn_req_len != 0 && c->reqs_held_len >= p->o.max_conn_req_len);
}

/* Parks the receive coroutine of `c` while it is full. Returns 0 (room, or the connection
 * broke: see c->broken) or -ECANCELED. */
int coho__tdp_rx_wait_room(coho_tdp_pool_t *p, struct tdp_conn *c);

/* ---- tdp_send.c ---- */

/* After a dispatch: writes the answers on_req gave inline, or waits while another sender's
 * flush carries them. */
void coho__tdp_flush_inline(coho_tdp_pool_t *p, struct tdp_conn *c);

/* ---- tdp_udp.c ---- */

/* Receive loop of a datagram socket. Returns the reason it ended (an errno value). */
int coho__tdp_rx_loop_dgram(coho_tdp_pool_t *p, struct tdp_conn *c);

/* Sends one frame as one datagram on `c`'s socket, to `to` (NULL: the connected peer).
 * Returns 0, or -EMSGSIZE, -ENOTCONN, or the send error. */
int coho__tdp_dgram_sendv(coho_tdp_pool_t *p, struct tdp_conn *c, const struct sockaddr_storage *to,
                          socklen_t tolen, const struct iovec *iov, int iovcnt);

/* ---- tdp_id.c: request ids ---- */

/* Draws the pool's id keys (getrandom, or the clocks where it fails). */
void coho__tdp_id_keys_init(coho_tdp_pool_t *p);

/* The keyed bijection of tdp_id.c, inline: ids are encoded once and decoded three times per
 * request. */
static inline uint64_t coho__tdp_id_permute(const struct tdp_id_keys *k, uint64_t x)
{
    x = (x ^ k->xor_in) * k->mul[0];
    x ^= x >> 32;
    x *= k->mul[1];
    x ^= x >> 32;
    return x ^ k->xor_out;
}

static inline uint64_t coho__tdp_id_unpermute(const struct tdp_id_keys *k, uint64_t y)
{
    y ^= k->xor_out;
    y ^= y >> 32;
    y *= k->mul_inv[1];
    y ^= y >> 32;
    return (y * k->mul_inv[0]) ^ k->xor_in;
}

/* Node id -> request id: a bijection that keeps 0 at 0 (node ids are never 0, nor then are
 * request ids). */
static inline uint64_t coho__tdp_id_encode(const coho_tdp_pool_t *p, uint64_t node_id)
{
    return coho__tdp_id_permute(&p->id_keys, node_id) ^ p->id_zero;
}

static inline uint64_t coho__tdp_id_decode(const coho_tdp_pool_t *p, uint64_t req_id)
{
    return coho__tdp_id_unpermute(&p->id_keys, req_id ^ p->id_zero);
}

#define TDP_PEND_SHIFT 8 /* records per chunk of the pending table: 256 */
#define TDP_PEND_CHUNK (1u << TDP_PEND_SHIFT)

/* The live pending record of node id `node_id`, or NULL. A freed record's id is 0 and a reused
 * one's carries the next generation, so a stale id finds nothing. Inline: three lookups per
 * request (send, dispatch, wait). */
static inline struct tdp_pending *coho__tdp_pending_at(const coho_tdp_pool_t *p, uint64_t node_id)
{
    uint32_t slot = (uint32_t)node_id;
    struct tdp_pending *pd;

    if (slot >= p->pend_slots)
        return NULL;
    pd = &p->pend_chunks[slot >> TDP_PEND_SHIFT][slot & (TDP_PEND_CHUNK - 1)];
    return pd->id == node_id && node_id != 0 ? pd : NULL;
}

/* The pending record of request id `req_id`, or NULL (0, stale, unknown or forged). */
static inline struct tdp_pending *coho__tdp_pending_get(const coho_tdp_pool_t *p, uint64_t req_id)
{
    return coho__tdp_pending_at(p, coho__tdp_id_decode(p, req_id));
}

/* Unlinks and frees a pending record (and its response, if not taken). */
void coho__tdp_pending_free(coho_tdp_pool_t *p, struct tdp_pending *pd);

/* Calls fn(p, pd) for every live pending record, in slot order (fn must not free records). */
void coho__tdp_pending_for_each(coho_tdp_pool_t *p,
                                void (*fn)(coho_tdp_pool_t *p, struct tdp_pending *pd));

/* Frees the pending table (the records' responses included). */
void coho__tdp_pending_destroy(coho_tdp_pool_t *p);

/* ---- tdp_recv.c and tdp_send.c: waiting for a response ---- */

/* Sets *pd to the pending record of request `req_id` that a coroutine is about to wait on
 * (coho_tdp_callv, coho_tdp_wait_resp). One waiter per id: a second would take the wake-up,
 * free the entry, and leave the first to wake at its timeout on freed memory, so an id another
 * coroutine waits for stays with that one. Returns 0, or -EINVAL (no pool), -ENOENT (0, stale,
 * released or forged id) or -EBUSY (another coroutine waits for it). */
static inline int coho__tdp_pending_for_wait(const coho_tdp_pool_t *p, uint64_t req_id,
                                             struct tdp_pending **pd)
{
    if (p == NULL)
        return -EINVAL;
    *pd = coho__tdp_pending_get(p, req_id);
    if (*pd == NULL)
        return -ENOENT;
    if ((*pd)->co_id != 0)
        return -EBUSY;
    return 0;
}

/* Parks coroutine `self` (coho_self()), unless the response already came or the request
 * already failed, until the response of pd (request id `req_id`) arrives, the request fails or
 * `timeout_ms` passes; hands the response over in `out` (as coho_tdp_wait_resp) and frees pd.
 * pd->out may already point at `out` (coho_tdp_callv sets it before its frame leaves). Inline:
 * in coho_tdp_call it saves a stack frame, whose lines are cold when the waiter wakes. Returns 0
 * or -errno. */
static inline int coho__tdp_resp_wait(coho_tdp_pool_t *p, struct tdp_pending *pd, uint64_t self,
                                      uint64_t req_id, int64_t timeout_ms, coho_cbuf_t *out)
{
    bool parked = false;
    int rc = 0;

    if (pd->status == 0) {
        pd->co_id = self;
        pd->token = coho__park_prepare();
        coho__park_note("tdp response req=", (int64_t)req_id);
        /* See coho__tdp_pool_ref: pd and the pool outlive a close while parked. */
        coho__tdp_pool_ref(p);
        parked = true;
        pd->out = out; /* the receive coroutine writes the response straight into it */
        rc = coho__park(timeout_ms);
        pd->co_id = 0;
    }
    pd->out = NULL;
    if (pd->status == 1 && pd->in_out) {
        rc = 0;
    } else if (pd->status == 1) {
        coho_cbuf_destroy(out);
        memcpy(out, &pd->resp, sizeof(*out)); /* move: the cbuf struct may be memcpy'd */
        pd->resp_live = false;
        rc = 0;
    } else if (pd->status < 0) {
        rc = pd->status;
    }
    coho__tdp_pending_free(p, pd);
    if (parked)
        coho__tdp_pool_unref(p);
    return rc;
}

#endif /* COHO_NET_TDP_INTERNAL_H */
