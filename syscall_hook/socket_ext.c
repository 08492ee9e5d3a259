/* SPDX-License-Identifier: MIT */
/* socket_ext ("tdp"): pooled request/response multiplexing over long TCP connections.
 *
 *   pool ── conns (generation-id node pool) ── conn: fd, rbuf (cbuf), in-flight list,
 *     │                                            receive coroutine (daemon)
 *     ├── pending (generation-id node pool: struct pending, waiter, status, response cbuf;
 *     │            the request id is the node's id under a per-pool secret permutation, so
 *     │            a stale, guessed or forged id finds nothing; a response is only taken from
 *     │            the connection its request went out on)
 *     └── connect pools: one daemon "keeper" coroutine per slot: connect, receive, back off
 *         listen pools:  one daemon accept coroutine, one receive coroutine per client
 *
 * The receive coroutine owns its connection: it is the only one that frees it. A sender looks
 * the connection up by id each time, so a connection that went away is ENOTCONN, never a
 * dangling pointer. */
#define _GNU_SOURCE /* accept4, SOCK_CLOEXEC */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base_struct/pool.h"
#include "base_struct/sys_net.h"
#include "syscall_hook/internal.h"

#define TDP_READ_CHUNK 16384
#define TDP_IOV_MAX    8
#define TDP_DGRAM_MAX  65536 /* receive buffer of a datagram socket: the largest UDP payload */

enum { TDP_CONNECT = 1, TDP_LISTEN = 2 };

struct tdp_conn {
    uint64_t id;
    int fd;
    unsigned slot; /* connect pools: the keeper slot */
    bool broken;
    coho_cbuf_t rbuf;
    coho_list_t inflight;         /* struct pending.conn_link */
    coho_list_t link;             /* in pool->conns_live */
    uint64_t rx_co;               /* the receive coroutine */
    struct sockaddr_storage peer; /* datagram pools: sender of the datagram being dispatched */
    socklen_t peer_len;
    coho_cbuf_t wbuf;     /* frames queued behind a flush in progress (tx_send_batched) */
    coho_list_t wwaiters; /* struct tx_waiter: senders whose frames are in wbuf */
    bool flushing;        /* a sender gathers and writes the frames of others too */
    bool dispatching;     /* the receive coroutine is in rx_dispatch */
    unsigned reqs_held;   /* requests of this connection handed to on_req and not yet freed */
    size_t reqs_held_len; /* ... the bytes of their frames */
    uint64_t room_co;     /* the receive coroutine, parked until those drain (0: not parked) */
    uint64_t room_token;
};

/* A sender parked until the flusher has written its queued frame. */
struct tx_waiter {
    coho_list_t link;
    uint64_t co_id;
    uint64_t token;
};

struct pending {
    uint64_t id;      /* the node id (the request id is its permutation: id_encode) */
    uint64_t conn_id; /* the connection the request last went out on; 0: not sent */
    uint64_t co_id;   /* the waiter, 0 while nobody waits */
    uint64_t token;
    int status;     /* 0 waiting for the response, 1 arrived, -errno failed */
    bool resp_live; /* resp is initialised (the response arrived and was not yet taken) */
    coho_cbuf_t resp;
    coho_list_t conn_link; /* in the connection's in-flight list once sent */
};

/* The keys of a pool's request id permutation (see "request ids"). */
struct tdp_id_keys {
    uint64_t xor_in, xor_out;
    uint64_t mul[2];     /* odd */
    uint64_t mul_inv[2]; /* their inverses modulo 2^64 */
};

/* A coroutine parked in coho_tdp_pick until a connection is up. */
struct up_waiter {
    coho_list_t link;
    uint64_t co_id;
    uint64_t token;
};

struct coho_tdp_pool {
    int mode;
    coho_tdp_opts_t o;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    coho__pool_t *conns; /* struct tdp_conn, by id */
    coho_list_t conns_live;
    uint64_t *slots; /* connect pools: conn id per keeper slot (0: down) */
    uint64_t *keepers;
    coho__pool_t *pending;      /* struct pending, by node id (id_decode of the request id) */
    struct tdp_id_keys id_keys; /* the pool's secret: the keys of the id permutation */
    uint64_t id_zero;           /* the permutation of 0, xored out so that 0 stays 0 */
    unsigned rr;
    int listen_fd;
    uint16_t port;
    uint64_t accept_co;
    int reserve_fd; /* shed on EMFILE: closed, used to accept and drop, reopened */
    bool closing;
    bool dgram;    /* UDP: one datagram per frame (coho_tdp_udp_connect, coho_tdp_udp_listen) */
    unsigned refs; /* memory: the user's handle, each live pool coroutine, each request */
    unsigned cos;  /* live pool coroutines (coho_tdp_close waits for them) */
    unsigned reqs_live;        /* requests handed to on_req and not yet freed */
    struct tdp_req *reqs_idle; /* freed request records kept for reuse */
    unsigned reqs_idle_count;
    coho_list_t up_waiters;
    coho_list_t cb_frames; /* struct cb_frame: coroutines inside a user callback now */
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
};

#define TDP_REQS_IDLE_MAX 256 /* records kept per pool */

struct keeper_arg {
    coho_tdp_pool_t *p;
    unsigned slot;
};

struct rx_arg {
    coho_tdp_pool_t *p;
    uint64_t conn_id;
};

void coho_tdp_opts_init(coho_tdp_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->max_frame_len = 16u << 20;
    o->conn_count = 4;
    o->connect_timeout_ms = 3000;
    o->reconnect_min_ms = 10;
    o->reconnect_max_ms = 2000;
    o->max_conns = 10000;
    o->backlog = 1024;
    o->max_conn_reqs = 1024;
    o->max_conn_req_len = 4u << 20;
}

static void pool_free(coho_tdp_pool_t *p);

static inline void pool_unref(coho_tdp_pool_t *p)
{
    if (--p->refs == 0)
        pool_free(p);
}

/* ---- request ids ----
 *
 * A request id is the pending record's node id under a keyed bijection of the 64-bit values,
 * with keys drawn per pool from getrandom. Node ids count up (generation and slot), so without
 * it every peer could tell how many requests a pool makes and predict the ids of those on other
 * connections. The bijection is two rounds of multiply (by a secret odd number, invertible
 * modulo 2^64) and xor-shift by 32 (its own inverse), between secret xors: about ten
 * instructions each way, which matters as ids are encoded once and decoded three times per
 * request (a 4-round Feistel network cost 15 % of a client's instructions per request). Hard
 * to predict for a peer that sees its own ids, not a cryptographic guarantee: what keeps a peer
 * from completing another connection's request is the check in rx_dispatch that a response
 * arrives on the connection its request went out on. */
static inline uint64_t id_permute(const struct tdp_id_keys *k, uint64_t x)
{
    x = (x ^ k->xor_in) * k->mul[0];
    x ^= x >> 32;
    x *= k->mul[1];
    x ^= x >> 32;
    return x ^ k->xor_out;
}

static inline uint64_t id_unpermute(const struct tdp_id_keys *k, uint64_t y)
{
    y ^= k->xor_out;
    y ^= y >> 32;
    y *= k->mul_inv[1];
    y ^= y >> 32;
    return (y * k->mul_inv[0]) ^ k->xor_in;
}

/* Node id -> request id. A bijection that keeps 0 at 0 (node ids are never 0, nor then are
 * request ids). */
static inline uint64_t id_encode(const coho_tdp_pool_t *p, uint64_t node_id)
{
    return id_permute(&p->id_keys, node_id) ^ p->id_zero;
}

static inline uint64_t id_decode(const coho_tdp_pool_t *p, uint64_t req_id)
{
    return id_unpermute(&p->id_keys, req_id ^ p->id_zero);
}

/* The pending record of request id `req_id`, or NULL (0, stale, unknown or forged). */
static inline struct pending *pending_get(const coho_tdp_pool_t *p, uint64_t req_id)
{
    return coho__pool_get(p->pending, id_decode(p, req_id));
}

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
static void id_keys_init(coho_tdp_pool_t *p)
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
    p->id_zero = id_permute(k, 0);
}

/* The pool's memory lives while anyone holds a reference (coho_tdp_pool.refs). Besides the
 * user's handle, the pool's coroutines and the requests handed to on_req, every caller of a
 * public function that may park in it (pick, wait_resp, sendv, attach) holds one for the time
 * of the call: coho_tdp_close wakes such callers but does not wait for them to run, and a
 * closer that is itself cancelled does not wait for the pool's coroutines either, so without it
 * the last of those could free the pool before a woken caller looks at it again. */
static inline void pool_ref(coho_tdp_pool_t *p)
{
    p->refs++;
}

/* A pool coroutine starts / ends. */
static void pool_co_enter(coho_tdp_pool_t *p)
{
    p->refs++;
    p->cos++;
}

static void pool_co_exit(coho_tdp_pool_t *p)
{
    p->cos--;
    pool_unref(p);
}

static void pending_destroy_one(uint64_t id, void *node, void *arg)
{
    struct pending *pd = node;

    (void)id;
    (void)arg;
    if (pd->resp_live)
        coho_cbuf_destroy(&pd->resp);
}

/* The last reference went: frees the pool. */
static void pool_free(coho_tdp_pool_t *p)
{
    coho__pool_for_each(p->pending, pending_destroy_one, NULL);
    coho__pool_destroy(p->pending);
    while (p->reqs_idle != NULL) {
        struct tdp_req *r = p->reqs_idle;

        p->reqs_idle = r->idle_next;
        free(r);
    }
    coho__pool_destroy(p->conns);
    if (p->reserve_fd >= 0)
        coho__sys.close(p->reserve_fd);
    free(p->slots);
    free(p->keepers);
    free(p);
}

static struct tdp_conn *conn_get(const coho_tdp_pool_t *p, uint64_t id)
{
    struct tdp_conn *c = id != 0 ? coho__pool_get(p->conns, id) : NULL;

    return c != NULL && !c->broken ? c : NULL;
}

static void wake_up_waiters(coho_tdp_pool_t *p, int result)
{
    coho_list_t *pos;

    while ((pos = coho_list_pop_front(&p->up_waiters)) != NULL) {
        struct up_waiter *w = coho_list_entry(pos, struct up_waiter, link);

        coho__co_wake(w->co_id, w->token, result);
    }
}

/* User callbacks run in the pool's coroutines. Each call is recorded (a frame on the caller's
 * stack), so that coho_tdp_close called from inside one does not wait for its own coroutine to
 * end. */
struct cb_frame {
    coho_list_t link;
    uint64_t co_id;
};

static void cb_enter(coho_tdp_pool_t *p, struct cb_frame *f)
{
    f->co_id = coho_self();
    coho_list_push_back(&p->cb_frames, &f->link);
}

static bool cb_is_inside(const coho_tdp_pool_t *p)
{
    const coho_list_t *pos;
    uint64_t self = coho_self();

    coho_list_for_each(pos, &p->cb_frames)
    {
        if (coho_list_entry(pos, struct cb_frame, link)->co_id == self)
            return true;
    }
    return false;
}

static void cb_conn_new(coho_tdp_pool_t *p, uint64_t id)
{
    struct cb_frame f;

    cb_enter(p, &f);
    p->o.on_conn_new(p, id, p->o.user);
    coho_list_del(&f.link);
}

static void cb_conn_delete(coho_tdp_pool_t *p, uint64_t id, int err)
{
    struct cb_frame f;

    cb_enter(p, &f);
    p->o.on_conn_delete(p, id, err, p->o.user);
    coho_list_del(&f.link);
}

static void cb_req(coho_tdp_pool_t *p, coho_tdp_req_t *rq)
{
    struct cb_frame f;

    cb_enter(p, &f);
    p->o.on_req(rq, p->o.user);
    coho_list_del(&f.link);
}

/* A new connection joins the pool. Returns its id, or 0 (ENOMEM: the fd is closed). */
static uint64_t conn_add(coho_tdp_pool_t *p, int fd, unsigned slot)
{
    struct tdp_conn *c;
    int err;
    uint64_t id = coho__pool_alloc(p->conns, (void **)&c, &err);

    if (id == 0) {
        close(fd);
        return 0;
    }
    c->id = id;
    c->fd = fd;
    c->slot = slot;
    coho_cbuf_init(&c->rbuf, NULL);
    coho_list_init(&c->inflight);
    coho_cbuf_init(&c->wbuf, NULL);
    coho_list_init(&c->wwaiters);
    c->flushing = false;
    coho_list_push_back(&p->conns_live, &c->link);
    p->st.conns_open++;
    p->st.conns_total++;
    if (p->mode == TDP_CONNECT)
        p->slots[slot] = id;
    wake_up_waiters(p, 0);
    if (p->o.on_conn_new != NULL)
        cb_conn_new(p, id);
    return id;
}

/* Takes the connection out of the pool: in-flight waiters fail at once with `err`. */
static void conn_break(coho_tdp_pool_t *p, struct tdp_conn *c, int err)
{
    coho_list_t *pos;

    if (c->broken)
        return;
    c->broken = true;
    coho_list_del(&c->link);
    if (p->mode == TDP_CONNECT && p->slots[c->slot] == c->id)
        p->slots[c->slot] = 0;
    p->st.conns_open--;
    while ((pos = coho_list_pop_front(&c->inflight)) != NULL) {
        struct pending *pd = coho_list_entry(pos, struct pending, conn_link);

        if (pd->status == 0) {
            pd->status = -err;
            if (pd->co_id != 0)
                coho__co_wake(pd->co_id, pd->token, 0);
        }
    }
    while ((pos = coho_list_pop_front(&c->wwaiters)) != NULL) {
        struct tx_waiter *w = coho_list_entry(pos, struct tx_waiter, link);

        coho__co_wake(w->co_id, w->token, -ENOTCONN);
    }
    if (c->room_co != 0) /* the receive coroutine, parked for backpressure: it ends */
        coho__co_wake(c->room_co, c->room_token, 0);
    /* Senders parked on the fd or its write lock wake with EBADF at the close below. */
    shutdown(c->fd, SHUT_RDWR);
    /* A non-blocking UDP socket reports EAGAIN, not end of file, after a shutdown, so the
     * receive coroutine parked on it would never see it: cancel it instead. */
    if (p->dgram && c->rx_co != 0 && c->rx_co != coho_self())
        coho_cancel(c->rx_co);
}

/* Frees a broken connection (the receive coroutine's last step). */
static void conn_free(coho_tdp_pool_t *p, struct tdp_conn *c, int err)
{
    uint64_t id = c->id;

    conn_break(p, c, err);
    close(c->fd);
    coho_cbuf_destroy(&c->rbuf);
    coho_cbuf_destroy(&c->wbuf);
    coho__pool_free(p->conns, id);
    if (p->o.on_conn_delete != NULL)
        cb_conn_delete(p, id, err);
}

/* Makes `b` an empty buffer for a frame of `len` bytes: a frame shorter than the default chunk
 * gets the smallest chunk size that holds it whole (64, 128, ... bytes, from the chunk pool's
 * class of that size), so a small response or request does not take a 4 KiB chunk. */
static void cbuf_init_for(coho_cbuf_t *b, size_t len)
{
    coho_cbuf_opts_t o;

    coho_cbuf_opts_init(&o);
    if (len < o.chunk_size) {
        o.chunk_size = COHO_CBUF_CHUNK_SIZE_MIN;
        while (o.chunk_size < len)
            o.chunk_size <<= 1;
    }
    coho_cbuf_init(b, &o);
}

/* Copies the first `len` bytes of `src` into `dst` (appended). Returns 0 or -errno. */
static int cbuf_copy_front(coho_cbuf_t *dst, const coho_cbuf_t *src, size_t len)
{
    struct iovec iov[TDP_IOV_MAX];
    size_t off = 0;

    while (off < len) {
        int n = coho_cbuf_data_iov(src, off, iov, TDP_IOV_MAX), i;

        if (n <= 0)
            return -EINVAL;
        for (i = 0; i < n && off < len; i++) {
            size_t take = iov[i].iov_len < len - off ? iov[i].iov_len : len - off;

            if (coho_cbuf_append(dst, iov[i].iov_base, take) != 0)
                return -errno;
            off += take;
        }
    }
    return 0;
}

/* A zeroed request record: a freed one of this pool, or a new one. */
static struct tdp_req *req_alloc(coho_tdp_pool_t *p)
{
    struct tdp_req *r = p->reqs_idle;

    if (r == NULL)
        return calloc(1, sizeof(*r));
    p->reqs_idle = r->idle_next;
    p->reqs_idle_count--;
    memset(r, 0, sizeof(*r));
    return r;
}

/* Backpressure. A connection whose requests in on_req (handed over, not yet freed) reach
 * max_conn_reqs, or whose frames reach max_conn_req_len bytes, is full: its receive coroutine
 * dispatches no further frame and reads nothing more until coho_tdp_req_free makes room. The
 * peer's writes then fill the socket buffers and stall; the connection stays open. One peer
 * that pipelines without end thus holds at most max_conn_req_len bytes of requests (plus the
 * frame that crossed the bound) and its receive buffer (at most one partial frame and a read). */
static bool conn_is_full(const coho_tdp_pool_t *p, const struct tdp_conn *c)
{
    return (p->o.max_conn_reqs != 0 && c->reqs_held >= p->o.max_conn_reqs) ||
           (p->o.max_conn_req_len != 0 && c->reqs_held_len >= p->o.max_conn_req_len);
}

/* Parks the receive coroutine of `c` while it is full. Returns 0 (room, or the connection
 * broke: see c->broken) or -ECANCELED. */
static int rx_wait_room(coho_tdp_pool_t *p, struct tdp_conn *c)
{
    while (conn_is_full(p, c) && !c->broken) {
        int rc;

        c->room_token = coho__co_block_prepare();
        c->room_co = coho_self();
        coho__co_wait_note("tdp requests to drain, connection@", (int64_t)(intptr_t)c);
        rc = coho__co_block(-1);
        c->room_co = 0;
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* A request of connection `conn_id` was freed: gives its share back, and wakes the receive
 * coroutine when that makes room. */
static void conn_req_done(coho_tdp_pool_t *p, uint64_t conn_id, size_t len)
{
    struct tdp_conn *c = coho__pool_get(p->conns, conn_id);

    if (c == NULL) /* the connection is gone, and its counts with it */
        return;
    c->reqs_held--;
    c->reqs_held_len -= len;
    if (c->room_co != 0 && !conn_is_full(p, c))
        coho__co_wake(c->room_co, c->room_token, 0);
}

/* Splits and dispatches the whole frames at the front of the connection's buffer, until a
 * stream connection is full (conn_is_full: the rest waits in the buffer). Returns 0 (need more
 * bytes, or full) or -EPROTO (malformed: close the connection). */
static int rx_dispatch(coho_tdp_pool_t *p, struct tdp_conn *c)
{
    /* A datagram is dispatched whole (its frames cannot wait in the buffer): datagram pools
     * check the bound between datagrams, in rx_loop_dgram. */
    while (coho_cbuf_len(&c->rbuf) > 0 && !c->broken && (p->dgram || !conn_is_full(p, c))) {
        const coho_tdp_framer_t *fr = NULL;
        uint64_t req_id = 0;
        ssize_t flen = 0;
        int kind = COHO_TDP_BAD;
        unsigned i;

        for (i = 0; i < p->o.framer_count; i++) {
            coho_cbuf_seek(&c->rbuf, 0, SEEK_SET);
            kind = p->o.framers[i]->detect(&c->rbuf, p->o.framers[i]->ctx);
            if (kind != COHO_TDP_BAD) {
                fr = p->o.framers[i];
                break;
            }
        }
        /* A frame that has not ended within max_frame_len bytes never will: without this
         * bound a peer that sends no terminator would grow the buffer without limit. */
        if (kind == COHO_TDP_NEED_MORE)
            return coho_cbuf_len(&c->rbuf) > p->o.max_frame_len ? -EPROTO : 0;
        if (fr == NULL || (kind != COHO_TDP_REQUEST && kind != COHO_TDP_RESPONSE))
            return -EPROTO;
        coho_cbuf_seek(&c->rbuf, 0, SEEK_SET);
        flen = fr->scan(&c->rbuf, &req_id, fr->ctx);
        if (flen < 0 || (size_t)flen > p->o.max_frame_len)
            return -EPROTO;
        if (flen == 0)
            return coho_cbuf_len(&c->rbuf) > p->o.max_frame_len ? -EPROTO : 0;
        if ((size_t)flen > coho_cbuf_len(&c->rbuf))
            return 0;
        if (kind == COHO_TDP_RESPONSE) {
            struct pending *pd = pending_get(p, req_id);

            /* Only the connection the request went out on answers it: a response carrying the
             * id on any other connection (a client of a listen pool answering another client's
             * request, with a guessed or leaked id) is dropped and counted. */
            if (pd != NULL && pd->conn_id != c->id)
                pd = NULL;
            if (pd != NULL && pd->status == 0) {
                cbuf_init_for(&pd->resp, (size_t)flen);
                pd->resp_live = true;
                if (cbuf_copy_front(&pd->resp, &c->rbuf, (size_t)flen) != 0) {
                    coho_cbuf_destroy(&pd->resp);
                    pd->resp_live = false;
                }
            }
            if (pd != NULL && pd->status == 0 && pd->resp_live) {
                pd->status = 1;
                coho_list_del(&pd->conn_link);
                p->st.responses_in++;
                if (pd->co_id != 0)
                    coho__co_wake(pd->co_id, pd->token, 0);
            } else {
                p->st.responses_dropped++;
            }
        } else {
            struct tdp_req *r = req_alloc(p);
            coho_tdp_req_t *rq = r != NULL ? &r->pub : NULL;

            if (rq != NULL) {
                p->refs++; /* dropped by coho_tdp_req_free: the pool outlives its requests */
                p->reqs_live++;
                rq->pool = p;
                rq->conn_id = c->id;
                rq->req_id = req_id;
                if (p->dgram) {
                    memcpy(&rq->peer, &c->peer, c->peer_len);
                    rq->peer_len = c->peer_len;
                }
                cbuf_init_for(&rq->frame, (size_t)flen);
                if (cbuf_copy_front(&rq->frame, &c->rbuf, (size_t)flen) != 0) {
                    coho_tdp_req_free(rq);
                    rq = NULL;
                }
            }
            if (rq != NULL && p->o.on_req != NULL) {
                r->held = true;
                r->held_len = (size_t)flen;
                c->reqs_held++;
                c->reqs_held_len += (size_t)flen;
                p->st.requests_in++;
                cb_req(p, rq);
            } else if (rq != NULL) {
                coho_tdp_req_free(rq);
            }
        }
        coho_cbuf_consume(&c->rbuf, (size_t)flen);
    }
    return 0;
}

static void rx_flush_inline(coho_tdp_pool_t *p, struct tdp_conn *c);

/* Reads and dispatches until the connection breaks. Returns the reason (an errno value). */
static int rx_loop(coho_tdp_pool_t *p, struct tdp_conn *c)
{
    struct iovec iov[TDP_IOV_MAX];
    bool read_more = true;

    for (;;) {
        bool full;
        int rc;

        if (read_more) {
            ssize_t n;
            int cnt = coho_cbuf_reserve_iov(&c->rbuf, TDP_READ_CHUNK, iov, TDP_IOV_MAX);

            if (cnt < 0)
                return errno == ENOBUFS ? EPROTO : errno;
            n = readv(c->fd, iov, cnt);
            if (n == 0 && coho_cbuf_len(&c->rbuf) > 0 && !c->broken) {
                p->st.protocol_errors++; /* the peer closed halfway through a frame */
                return EPROTO;
            }
            if (n == 0)
                return ECONNRESET;
            if (n < 0)
                return errno == EBADF ? ECONNRESET : errno;
            coho_cbuf_commit(&c->rbuf, (size_t)n);
        }
        c->dispatching = true;
        rc = rx_dispatch(p, c);
        c->dispatching = false;
        /* Whether the dispatch stopped at the bound, taken before rx_flush_inline, which may
         * park: requests freed during that park make room, and the frames left in the buffer
         * must still be dispatched before the next read (which may never come). */
        full = conn_is_full(p, c);
        rx_flush_inline(p, c);
        if (rc != 0) {
            p->st.protocol_errors++;
            return EPROTO;
        }
        if (c->broken)
            return ECONNRESET;
        /* Full: wait for room, then dispatch what the buffer still holds before reading. */
        read_more = !full;
        if (full && rx_wait_room(p, c) < 0)
            return ECANCELED;
    }
}

/* Receive loop of a datagram socket: each datagram carries one frame. A datagram that is not
 * whole frames is dropped and counted in protocol_errors, and the socket stays: it serves every
 * peer. Returns the reason the loop ended (an errno value). */
static int rx_loop_dgram(coho_tdp_pool_t *p, struct tdp_conn *c)
{
    unsigned char *buf = malloc(TDP_DGRAM_MAX); /* once per socket, not per datagram */
    int err = 0;

    if (buf == NULL)
        return ENOMEM;
    /* c->broken: conn_break cancelled this coroutine, or a callback it ran closed the pool. */
    while (err == 0 && !c->broken) {
        struct iovec iov = {.iov_base = buf, .iov_len = TDP_DGRAM_MAX};
        struct msghdr mh = {
            .msg_name = &c->peer, .msg_namelen = sizeof(c->peer), .msg_iov = &iov, .msg_iovlen = 1};
        ssize_t n;

        /* Full (backpressure): what arrives meanwhile waits in the socket's receive buffer, and
         * the kernel drops what does not fit. */
        if (conn_is_full(p, c)) {
            if (rx_wait_room(p, c) < 0)
                err = ECANCELED;
            continue;
        }
        n = recvmsg(c->fd, &mh, 0);
        if (c->broken) {
            break;
        } else if (n < 0) {
            /* ECONNREFUSED: an ICMP error for an earlier send on a connected socket; its
             * waiter times out, the socket keeps serving. */
            if (errno != ECONNREFUSED && errno != EINTR)
                err = errno == EBADF ? ECONNRESET : errno;
        } else if ((mh.msg_flags & MSG_TRUNC) || n == 0 || (size_t)n > p->o.max_frame_len ||
                   coho_cbuf_append(&c->rbuf, buf, (size_t)n) != 0) {
            p->st.protocol_errors++;
        } else {
            c->peer_len = mh.msg_namelen;
            if (rx_dispatch(p, c) != 0 || coho_cbuf_len(&c->rbuf) != 0) {
                p->st.protocol_errors++;
                coho_cbuf_consume(&c->rbuf, coho_cbuf_len(&c->rbuf));
            }
        }
    }
    free(buf);
    return err != 0 ? err : ECONNRESET;
}

/* Receive coroutine of an accepted connection. */
static void rx_main(void *arg)
{
    struct rx_arg *a = arg;
    coho_tdp_pool_t *p = a->p;
    struct tdp_conn *c = coho__pool_get(p->conns, a->conn_id);
    int err;

    free(a);
    if (c != NULL) {
        err = p->dgram ? rx_loop_dgram(p, c) : rx_loop(p, c);
        conn_free(p, c, err);
    }
    pool_co_exit(p);
}

static uint64_t spawn_daemon(void (*fn)(void *), void *arg, const char *name)
{
    coho_spawn_opts_t so;

    coho_spawn_opts_init(&so);
    so.daemon = true;
    so.detached = true; /* the pool counts its coroutines; nobody joins them */
    so.name = name;
    return coho_spawn_ex(coho__sched_current(), fn, arg, &so);
}

/* One connect attempt with the pool's timeout. Returns the fd or -errno. */
static int keeper_connect(coho_tdp_pool_t *p)
{
    int fd = socket(p->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1, rc;

    if (fd < 0)
        return -errno;
    if (p->o.connect_timeout_ms > 0) {
        struct timeval tv = {.tv_sec = p->o.connect_timeout_ms / 1000,
                             .tv_usec = (p->o.connect_timeout_ms % 1000) * 1000};

        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    }
    if (connect(fd, (struct sockaddr *)&p->addr, p->addrlen) != 0) {
        rc = errno == EINPROGRESS ? -ETIMEDOUT : -errno;
        close(fd);
        return rc;
    }
    if (p->o.connect_timeout_ms > 0) {
        struct timeval none = {0, 0};

        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &none, sizeof(none));
    }
    if (p->addr.ss_family == AF_INET || p->addr.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

/* Keeper coroutine of one connect slot: connect, run the receive loop, back off, again. */
static void keeper_main(void *arg)
{
    struct keeper_arg *ka = arg;
    coho_tdp_pool_t *p = ka->p;
    unsigned slot = ka->slot;
    uint64_t backoff = p->o.reconnect_min_ms;
    bool first = true;

    free(ka);
    while (!p->closing && !coho_is_cancelled()) {
        int fd;

        if (!first)
            p->st.reconnects++;
        first = false;
        fd = keeper_connect(p);
        if (fd >= 0) {
            uint64_t id = conn_add(p, fd, slot);
            struct tdp_conn *c = id != 0 ? coho__pool_get(p->conns, id) : NULL;

            if (c != NULL) {
                c->rx_co = coho_self();
                conn_free(p, c, rx_loop(p, c));
                backoff = p->o.reconnect_min_ms;
            }
        }
        if (p->closing || coho_sleep_ms(backoff) != 0)
            break;
        backoff = backoff * 2 > p->o.reconnect_max_ms ? p->o.reconnect_max_ms : backoff * 2;
    }
    pool_co_exit(p);
}

/* Adds a connected fd (or a datagram socket) to the pool with its receive coroutine, in keeper
 * slot `slot` of a connect pool. Returns the connection id, or 0 (ENOMEM; the fd is closed). */
static uint64_t serve_conn(coho_tdp_pool_t *p, int fd, unsigned slot)
{
    int one = 1;
    uint64_t id;
    struct rx_arg *ra;
    struct tdp_conn *c;

    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* fails harmlessly on AF_UNIX */
    id = conn_add(p, fd, slot);
    if (id == 0)
        return 0;
    c = coho__pool_get(p->conns, id);
    ra = malloc(sizeof(*ra));
    if (ra == NULL) {
        conn_free(p, c, ENOMEM);
        return 0;
    }
    ra->p = p;
    ra->conn_id = id;
    pool_co_enter(p);
    c->rx_co = spawn_daemon(rx_main, ra, "tdp-rx");
    if (c->rx_co == 0) {
        p->refs--;
        p->cos--;
        free(ra);
        conn_free(p, c, ENOMEM);
        return 0;
    }
    return id;
}

/* Accept coroutine of a listen pool. It ends only when the pool closes its listen socket (or the
 * scheduler cancels it as it shuts down): every other failure is a state of the system that
 * passes, so it backs off and tries again.
 *   - Out of fds (EMFILE, ENFILE) with the reserve fd at hand: the reserve is closed, the new
 *     connection accepted and shed (counted in conns_rejected), and the reserve reopened
 *     (LESSONS.md), so the backlog keeps moving and clients see a close, not a hang.
 *   - Out of fds without the reserve (it could not be reopened), out of memory or buffers
 *     (ENOMEM, ENOBUFS), a connection that failed in the accept (EPROTO, ENETDOWN, ...), a
 *     firewall's EPERM: exponential backoff from TDP_ACCEPT_BACKOFF_MIN_MS to
 *     TDP_ACCEPT_BACKOFF_MAX_MS, reset by the next accepted connection, so a persistent error
 *     does not spin and a passing one costs at most the cap. Each round first tries to get the
 *     reserve back. */
#define TDP_ACCEPT_BACKOFF_MIN_MS 1
#define TDP_ACCEPT_BACKOFF_MAX_MS 100

static void accept_main(void *arg)
{
    coho_tdp_pool_t *p = arg;
    uint64_t backoff_ms = 0;

    while (!p->closing) {
        int fd, err;

        if (p->reserve_fd < 0)
            p->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        fd = accept4(p->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0) {
            backoff_ms = 0;
            if (p->st.conns_open >= p->o.max_conns) {
                close(fd);
                p->st.conns_rejected++;
                continue;
            }
            serve_conn(p, fd, 0);
            continue;
        }
        err = errno;
        /* EBADF: the pool closed its socket (a number closed behind its back may be someone
         * else's socket by now); ECANCELED: the scheduler is shutting down. */
        if (err == EBADF || err == ECANCELED)
            break;
        if (err == EINTR || err == ECONNABORTED || err == EAGAIN)
            continue;
        if ((err == EMFILE || err == ENFILE) && p->reserve_fd >= 0) {
            coho__sys.close(p->reserve_fd);
            fd = coho__sys.accept4(p->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
            if (fd >= 0)
                coho__sys.close(fd);
            p->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
            p->st.conns_rejected++;
            continue;
        }
        backoff_ms = backoff_ms == 0 ? TDP_ACCEPT_BACKOFF_MIN_MS : backoff_ms * 2;
        if (backoff_ms > TDP_ACCEPT_BACKOFF_MAX_MS)
            backoff_ms = TDP_ACCEPT_BACKOFF_MAX_MS;
        if (coho_sleep_ms(backoff_ms) != 0)
            break; /* cancelled: the scheduler is shutting down */
    }
    pool_co_exit(p);
}

static coho_tdp_pool_t *pool_create(int mode, const struct sockaddr *addr, socklen_t addrlen,
                                    const coho_tdp_opts_t *o, int *err)
{
    coho_tdp_pool_t *p;
    unsigned i;

    if (coho__sched_current() == NULL || coho_self() == 0) {
        *err = EPERM;
        return NULL;
    }
    if (addr == NULL || addrlen == 0 || addrlen > sizeof(struct sockaddr_storage) || o == NULL ||
        o->framer_count == 0 || o->framer_count > COHO_TDP_MAX_FRAMERS || o->max_frame_len == 0 ||
        (mode == TDP_CONNECT && o->conn_count == 0) || (mode == TDP_LISTEN && o->on_req == NULL)) {
        *err = EINVAL;
        return NULL;
    }
    for (i = 0; i < o->framer_count; i++)
        if (o->framers[i] == NULL || o->framers[i]->detect == NULL || o->framers[i]->scan == NULL) {
            *err = EINVAL;
            return NULL;
        }
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        goto fail_nomem;
    p->mode = mode;
    p->o = *o;
    memcpy(&p->addr, addr, addrlen);
    p->addrlen = addrlen;
    p->listen_fd = -1;
    p->reserve_fd = -1;
    p->refs = 1;
    coho_list_init(&p->conns_live);
    coho_list_init(&p->up_waiters);
    coho_list_init(&p->cb_frames);
    p->conns = coho__pool_create(sizeof(struct tdp_conn), 64, 0);
    if (p->conns == NULL)
        goto fail_conns;
    p->pending = coho__pool_create(sizeof(struct pending), 256, 0);
    if (p->pending == NULL)
        goto fail_map;
    id_keys_init(p);
    return p;
fail_map:
    coho__pool_destroy(p->conns);
fail_conns:
    free(p);
fail_nomem:
    *err = ENOMEM;
    return NULL;
}

coho_tdp_pool_t *coho_tdp_connect(const struct sockaddr *addr, socklen_t addrlen,
                                  const coho_tdp_opts_t *o)
{
    coho_tdp_pool_t *p;
    unsigned i;
    int err;

    p = pool_create(TDP_CONNECT, addr, addrlen, o, &err);
    if (p == NULL) {
        errno = err;
        return NULL;
    }
    p->slots = calloc(o->conn_count, sizeof(*p->slots));
    p->keepers = calloc(o->conn_count, sizeof(*p->keepers));
    if (p->slots == NULL || p->keepers == NULL) {
        pool_unref(p);
        errno = ENOMEM;
        return NULL;
    }
    for (i = 0; i < o->conn_count; i++) {
        struct keeper_arg *ka = malloc(sizeof(*ka));

        if (ka == NULL)
            break;
        ka->p = p;
        ka->slot = i;
        pool_co_enter(p);
        p->keepers[i] = spawn_daemon(keeper_main, ka, "tdp-keeper");
        if (p->keepers[i] == 0) {
            p->refs--;
            p->cos--;
            free(ka);
            break;
        }
    }
    if (i < o->conn_count) {
        err = errno != 0 ? errno : ENOMEM;
        coho_tdp_close(p);
        errno = err;
        return NULL;
    }
    return p;
}

coho_tdp_pool_t *coho_tdp_listen(const struct sockaddr *addr, socklen_t addrlen,
                                 const coho_tdp_opts_t *o)
{
    struct sockaddr_storage bound;
    socklen_t blen = sizeof(bound);
    coho_tdp_pool_t *p;
    int err, one = 1;

    p = pool_create(TDP_LISTEN, addr, addrlen, o, &err);
    if (p == NULL) {
        errno = err;
        return NULL;
    }
    p->listen_fd = socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (p->listen_fd < 0)
        goto fail;
    setsockopt(p->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(p->listen_fd, addr, addrlen) != 0 || listen(p->listen_fd, o->backlog) != 0 ||
        getsockname(p->listen_fd, (struct sockaddr *)&bound, &blen) != 0)
        goto fail;
    if (bound.ss_family == AF_INET)
        p->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
    else if (bound.ss_family == AF_INET6)
        p->port = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
    p->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    pool_co_enter(p);
    p->accept_co = spawn_daemon(accept_main, p, "tdp-accept");
    if (p->accept_co == 0) {
        p->refs--;
        p->cos--;
        goto fail;
    }
    return p;
fail:
    err = errno;
    if (p->listen_fd >= 0)
        close(p->listen_fd);
    p->listen_fd = -1;
    pool_unref(p);
    errno = err;
    return NULL;
}

uint64_t coho_tdp_attach(coho_tdp_pool_t *p, int fd)
{
    uint64_t id;

    if (p == NULL || p->mode != TDP_LISTEN || p->dgram || fd < 0) {
        errno = EINVAL;
        return 0;
    }
    if (p->closing) {
        errno = ESHUTDOWN;
        return 0;
    }
    if (coho_self() == 0) {
        errno = EPERM;
        return 0;
    }
    pool_ref(p); /* on_conn_new runs in this coroutine, and may park or close the pool */
    id = serve_conn(p, fd, 0);
    pool_unref(p);
    if (id == 0)
        errno = ENOMEM;
    return id;
}

uint16_t coho_tdp_local_port(const coho_tdp_pool_t *p)
{
    return p != NULL ? p->port : 0;
}

static void pending_cancel_one(uint64_t id, void *node, void *arg)
{
    struct pending *pd = node;

    (void)id;
    (void)arg;
    if (pd->status == 0) {
        pd->status = -ECANCELED;
        if (pd->co_id != 0)
            coho__co_wake(pd->co_id, pd->token, 0);
    }
}

int coho_tdp_close(coho_tdp_pool_t *p)
{
    coho_list_t *pos, *tmp;
    unsigned i;

    if (p == NULL) {
        errno = EINVAL;
        return -1;
    }
    p->closing = true;
    wake_up_waiters(p, -ESHUTDOWN);
    coho__pool_for_each(p->pending, pending_cancel_one, NULL);
    coho_list_for_each_safe(pos, tmp, &p->conns_live)
    {
        conn_break(p, coho_list_entry(pos, struct tdp_conn, link), ECANCELED);
    }
    if (p->listen_fd >= 0) {
        close(p->listen_fd); /* the accept coroutine wakes with EBADF */
        p->listen_fd = -1;
    }
    for (i = 0; p->keepers != NULL && i < p->o.conn_count; i++)
        if (p->keepers[i] != 0)
            coho_cancel(p->keepers[i]);
    if (coho_self() != 0) {
        /* Let the pool's coroutines run to their end, then free; called from a callback, the
         * caller's own coroutine ends only after this returns. */
        unsigned self = cb_is_inside(p) ? 1 : 0;

        while (p->cos > self && coho_sleep_ms(1) == 0)
            ;
    }
    pool_unref(p);
    return 0;
}

/* coho_tdp_pick's loop. Returns 0 with the connection's id in *id, or -errno. */
static int pick_conn(coho_tdp_pool_t *p, int64_t timeout_ms, uint64_t *id)
{
    for (;;) {
        struct up_waiter w;
        int rc;

        if (p->closing)
            return -ESHUTDOWN;
        if (p->mode == TDP_CONNECT) {
            unsigned i;

            for (i = 0; i < p->o.conn_count; i++) {
                uint64_t cid = p->slots[(p->rr + i) % p->o.conn_count];

                if (conn_get(p, cid) != NULL) {
                    p->rr = (p->rr + i + 1) % p->o.conn_count;
                    *id = cid;
                    return 0;
                }
            }
        } else if (!coho_list_is_empty(&p->conns_live)) {
            struct tdp_conn *c =
                coho_list_entry(coho_list_first(&p->conns_live), struct tdp_conn, link);

            coho_list_del(&c->link); /* rotate: round robin */
            coho_list_push_back(&p->conns_live, &c->link);
            *id = c->id;
            return 0;
        }
        if (timeout_ms == 0 || coho_self() == 0)
            return -ETIMEDOUT;
        w.co_id = coho_self();
        w.token = coho__co_block_prepare();
        coho__co_wait_note("tdp connection of pool@", (int64_t)(intptr_t)p);
        coho_list_push_back(&p->up_waiters, &w.link);
        rc = coho__co_block(timeout_ms);
        coho_list_del(&w.link);
        if (rc < 0)
            return rc;
        /* One came up; a timeout then restarts from its full value, which only errs long. */
    }
}

uint64_t coho_tdp_pick(coho_tdp_pool_t *p, int64_t timeout_ms)
{
    uint64_t id = 0;
    int rc;

    if (p == NULL) {
        errno = EINVAL;
        return 0;
    }
    pool_ref(p);
    rc = pick_conn(p, timeout_ms, &id);
    pool_unref(p);
    if (rc < 0) {
        errno = -rc;
        return 0;
    }
    return id;
}

uint64_t coho_tdp_req_id(coho_tdp_pool_t *p)
{
    struct pending *pd;
    void *node = NULL;
    uint64_t id;

    if (p == NULL || p->closing) {
        errno = p == NULL ? EINVAL : ESHUTDOWN;
        return 0;
    }
    /* The record comes from the pool's node pool (freed records are reused without malloc), and
     * the request id is its node id permuted: unique, never 0, and a stale id resolves to
     * nothing. */
    id = coho__pool_alloc(p->pending, &node, NULL);
    if (id == 0) {
        errno = ENOMEM; /* no cap on the node pool: only ENOMEM */
        return 0;
    }
    pd = node;
    pd->id = id; /* resp is made when the response arrives, sized for it */
    coho_list_init(&pd->conn_link);
    p->st.in_flight++;
    return id_encode(p, id);
}

static void pending_free(coho_tdp_pool_t *p, struct pending *pd)
{
    coho_list_del(&pd->conn_link);
    if (pd->resp_live)
        coho_cbuf_destroy(&pd->resp);
    coho__pool_free(p->pending, pd->id);
    p->st.in_flight--;
}

/* Writes a batch of whole frames under the fd's write lock. Returns 0 or -errno; a failed
 * write breaks the connection (part of a frame may have gone out). */
static int tx_write_batch(coho_tdp_pool_t *p, uint64_t conn_id, int fd, const coho_cbuf_t *batch)
{
    struct iovec iov[TDP_IOV_MAX];
    size_t off = 0, len = coho_cbuf_len(batch);
    int err = 0;

    if (coho_fd_lock(fd, COHO_FD_LOCK_WRITE) != 0)
        return errno == EBADF ? -ENOTCONN : -errno;
    while (off < len && err == 0) {
        int n = coho_cbuf_data_iov(batch, off, iov, TDP_IOV_MAX), i;
        size_t want = 0;

        for (i = 0; i < n; i++)
            want += iov[i].iov_len;
        errno = 0;
        if (n <= 0 || writevn(fd, iov, n) != (ssize_t)want)
            err = errno != 0 ? errno : EPIPE;
        off += want;
    }
    coho_fd_unlock(fd, COHO_FD_LOCK_WRITE);
    if (err != 0) {
        struct tdp_conn *c = conn_get(p, conn_id);

        if (c != NULL)
            conn_break(p, c, err);
        return err == EBADF ? -ENOTCONN : -err;
    }
    return 0;
}

/* Parks the caller until the flusher of `c` has written the frames queued so far. Returns the
 * write's result (0 or -errno). */
static int tx_wait_flushed(struct tdp_conn *c)
{
    struct tx_waiter w = {.co_id = coho_self()};
    int rc;

    w.token = coho__co_block_prepare();
    coho__co_wait_note("tdp flush of connection@", (int64_t)(intptr_t)c);
    coho_list_push_back(&c->wwaiters, &w.link);
    rc = coho__co_block(-1);
    coho_list_del(&w.link); /* harmless when the waker already unlinked it */
    return rc;
}

/* The flusher's loop (c->flushing set by the caller): writes everything queued on the
 * connection, batch after batch, until nothing is left, and wakes the senders of each batch with
 * its result. Returns the result of the first batch (0 or -errno). */
static int tx_flush(coho_tdp_pool_t *p, uint64_t conn_id)
{
    int rc = 1;

    for (;;) {
        struct tdp_conn *c = conn_get(p, conn_id);
        coho_list_t waiters, *pos;
        coho_cbuf_t batch;
        int res;

        if (c == NULL) /* broken: conn_break failed the queued senders */
            return rc == 1 ? -ENOTCONN : rc;
        if (coho_cbuf_len(&c->wbuf) == 0) {
            c->flushing = false;
            return rc == 1 ? 0 : rc;
        }
        memcpy(&batch, &c->wbuf, sizeof(batch)); /* move: the connection may go while we write */
        coho_cbuf_init(&c->wbuf, NULL);
        coho_list_init(&waiters);
        coho_list_splice_back(&waiters, &c->wwaiters);
        res = tx_write_batch(p, conn_id, c->fd, &batch);
        coho_cbuf_destroy(&batch);
        while ((pos = coho_list_pop_front(&waiters)) != NULL) {
            struct tx_waiter *w = coho_list_entry(pos, struct tx_waiter, link);

            coho__co_wake(w->co_id, w->token, res);
        }
        if (rc == 1)
            rc = res;
    }
}

/* Appends a whole frame to the connection's queue (all or nothing). Returns 0 or -ENOMEM. */
static int tx_queue(struct tdp_conn *c, const struct iovec *iov, int iovcnt)
{
    size_t before = coho_cbuf_len(&c->wbuf);
    int i;

    for (i = 0; i < iovcnt; i++)
        if (coho_cbuf_append(&c->wbuf, iov[i].iov_base, iov[i].iov_len) != 0) {
            coho_cbuf_truncate(&c->wbuf, before);
            return -ENOMEM;
        }
    return 0;
}

/* Group commit. The first sender on an idle connection queues its frame, yields once so that
 * the coroutines ready in this pass (typically those a batch of responses just woke) can queue
 * theirs and park, then writes everything queued with one writev per TDP_IOV_MAX chunks and
 * wakes them with the result (tx_flush). One write(2) per frame was the dominant cost of a
 * request (bench/RESULTS.md "socket_ext"). Returns 0 or -errno: each sender gets the result of
 * the write that carried its frame. */
static int tx_send_batched(coho_tdp_pool_t *p, struct tdp_conn *c, const struct iovec *iov,
                           int iovcnt)
{
    uint64_t conn_id = c->id;
    int rc = tx_queue(c, iov, iovcnt);

    if (rc != 0)
        return rc;
    if (c->flushing)
        return tx_wait_flushed(c);
    c->flushing = true;
    coho_yield();
    return tx_flush(p, conn_id);
}

/* After a dispatch: writes the answers on_req gave inline (queued by coho_tdp_sendv), or waits
 * while another sender's flush carries them, so a peer that does not read stops this
 * connection's reading too. */
static void rx_flush_inline(coho_tdp_pool_t *p, struct tdp_conn *c)
{
    if (c->broken || coho_cbuf_len(&c->wbuf) == 0)
        return;
    if (c->flushing) {
        tx_wait_flushed(c);
        return;
    }
    c->flushing = true;
    tx_flush(p, c->id);
}

/* Gathering costs the first sender one pass of the ready queue; it pays off when other senders
 * are likely to run in that pass: other requests of the pool in flight, or other requests
 * handed to on_req not yet answered. A lone caller writes at once. */
static bool tx_gather_worthwhile(const coho_tdp_pool_t *p)
{
    return p->st.in_flight > 1 || p->reqs_live > 1;
}

/* Sends one frame as one datagram on `c`'s socket, to `to` (NULL: the connected peer).
 * Returns 0, or -EMSGSIZE (longer than max_frame_len or than a datagram can be), -ENOTCONN, or
 * the send error. */
static int dgram_sendv(coho_tdp_pool_t *p, struct tdp_conn *c, const struct sockaddr_storage *to,
                       socklen_t tolen, const struct iovec *iov, int iovcnt)
{
    struct msghdr mh = {.msg_name = (void *)to,
                        .msg_namelen = to != NULL ? tolen : 0,
                        .msg_iov = (struct iovec *)iov,
                        .msg_iovlen = (size_t)iovcnt};
    size_t total = 0;
    ssize_t n;
    int i;

    for (i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    if (total > p->o.max_frame_len || total > TDP_DGRAM_MAX)
        return -EMSGSIZE;
    n = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
    if (n < 0)
        return errno == EBADF ? -ENOTCONN : -errno;
    if ((size_t)n != total)
        return -EMSGSIZE;
    return 0;
}

/* coho_tdp_sendv on a live pool. Returns 0 or -errno. */
static int tdp_sendv(coho_tdp_pool_t *p, uint64_t conn_id, uint64_t req_id, const struct iovec *iov,
                     int iovcnt)
{
    struct tdp_conn *c;
    struct pending *pd = NULL;
    ssize_t n;
    size_t total = 0;
    int i, fd, err;

    for (i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    c = conn_get(p, conn_id);
    if (c == NULL)
        return -ENOTCONN;
    if (req_id != 0) {
        pd = pending_get(p, req_id);
        if (pd == NULL)
            return -ENOENT;
        pd->conn_id = conn_id;
        coho_list_del(&pd->conn_link);
        coho_list_push_back(&c->inflight, &pd->conn_link);
    }
    if (p->dgram) /* one datagram per frame: never queued behind or batched with others */
        return dgram_sendv(p, c, NULL, 0, iov, iovcnt);
    if (c->dispatching && coho_self() == c->rx_co) {
        /* An answer given inline by on_req: queued, and written with the other answers of the
         * same read once the dispatch ends (rx_flush_inline); a failed write breaks the
         * connection. */
        return tx_queue(c, iov, iovcnt);
    }
    if (c->flushing || (tx_gather_worthwhile(p) && coho_self() != c->rx_co))
        return tx_send_batched(p, c, iov, iovcnt);
    fd = c->fd;
    /* Whole frames only: the write lock keeps concurrent senders' bytes apart. */
    if (coho_fd_lock(fd, COHO_FD_LOCK_WRITE) != 0)
        return errno == EBADF ? -ENOTCONN : -errno;
    n = writevn(fd, iov, iovcnt);
    err = errno;
    coho_fd_unlock(fd, COHO_FD_LOCK_WRITE);
    if (n != (ssize_t)total) {
        c = conn_get(p, conn_id);
        if (c != NULL)
            conn_break(p, c, err != 0 ? err : EPIPE); /* half a frame went: unusable */
        return err == EBADF || err == 0 ? -ENOTCONN : -err;
    }
    return 0;
}

int coho_tdp_sendv(coho_tdp_pool_t *p, uint64_t conn_id, uint64_t req_id, const struct iovec *iov,
                   int iovcnt)
{
    int rc;

    if (p == NULL || iov == NULL || iovcnt <= 0) {
        errno = EINVAL;
        return -1;
    }
    pool_ref(p);
    rc = tdp_sendv(p, conn_id, req_id, iov, iovcnt);
    pool_unref(p);
    if (rc < 0) {
        errno = -rc;
        return -1;
    }
    return 0;
}

int coho_tdp_send(coho_tdp_pool_t *p, uint64_t conn_id, uint64_t req_id, const void *frame,
                  size_t len)
{
    struct iovec iov = {.iov_base = (void *)frame, .iov_len = len};

    if (frame == NULL || len == 0) {
        errno = EINVAL;
        return -1;
    }
    return coho_tdp_sendv(p, conn_id, req_id, &iov, 1);
}

int coho_tdp_wait_resp(coho_tdp_pool_t *p, uint64_t req_id, int64_t timeout_ms, coho_cbuf_t *out)
{
    struct pending *pd;
    bool parked = false;
    int rc = 0;

    if (p == NULL || out == NULL) {
        errno = EINVAL;
        return -1;
    }
    pd = pending_get(p, req_id);
    if (pd == NULL) {
        errno = ENOENT;
        return -1;
    }
    if (pd->co_id != 0) {
        /* One waiter per id: a second would take the wake-up, free the entry, and leave the
         * first to wake at its timeout on freed memory. */
        errno = EBUSY;
        return -1;
    }
    if (pd->status == 0) {
        pd->co_id = coho_self();
        if (pd->co_id == 0) {
            errno = EPERM;
            return -1;
        }
        pd->token = coho__co_block_prepare();
        coho__co_wait_note("tdp response req=", (int64_t)req_id);
        pool_ref(p); /* see pool_ref: pd and the pool outlive a close while parked */
        parked = true;
        rc = coho__co_block(timeout_ms);
        pd->co_id = 0;
    }
    if (pd->status == 1) {
        coho_cbuf_destroy(out);
        memcpy(out, &pd->resp, sizeof(*out)); /* move: the cbuf struct may be memcpy'd */
        pd->resp_live = false;
        rc = 0;
    } else if (pd->status < 0) {
        rc = pd->status;
    }
    pending_free(p, pd);
    if (parked)
        pool_unref(p);
    if (rc < 0) {
        errno = -rc;
        return -1;
    }
    return 0;
}

int coho_tdp_req_release(coho_tdp_pool_t *p, uint64_t req_id)
{
    struct pending *pd = p != NULL ? pending_get(p, req_id) : NULL;

    if (pd == NULL) {
        errno = p == NULL ? EINVAL : ENOENT;
        return -1;
    }
    if (pd->co_id != 0) {
        errno = EBUSY; /* a coroutine waits for it */
        return -1;
    }
    pending_free(p, pd);
    return 0;
}

void coho_tdp_req_free(coho_tdp_req_t *req)
{
    struct tdp_req *r = (struct tdp_req *)req;
    coho_tdp_pool_t *p;

    if (req == NULL)
        return;
    p = req->pool;
    if (p != NULL && r->held)
        conn_req_done(p, req->conn_id, r->held_len);
    coho_cbuf_destroy(&req->frame);
    if (p != NULL && p->reqs_idle_count < TDP_REQS_IDLE_MAX) {
        r->idle_next = p->reqs_idle; /* kept for req_alloc */
        p->reqs_idle = r;
        p->reqs_idle_count++;
    } else {
        free(r);
    }
    if (p != NULL) {
        p->reqs_live--;
        pool_unref(p);
    }
}

int coho_tdp_for_each_conn(coho_tdp_pool_t *p, void (*fn)(uint64_t conn_id, int fd, void *arg),
                           void *arg)
{
    coho_list_t *pos, *tmp;

    if (p == NULL || fn == NULL) {
        errno = EINVAL;
        return -1;
    }
    coho_list_for_each_safe(pos, tmp, &p->conns_live)
    {
        struct tdp_conn *c = coho_list_entry(pos, struct tdp_conn, link);

        fn(c->id, c->fd, arg);
    }
    return 0;
}

int coho_tdp_replyv(const coho_tdp_req_t *req, const struct iovec *iov, int iovcnt)
{
    struct tdp_conn *c;
    int rc;

    if (req == NULL || req->pool == NULL || iov == NULL || iovcnt <= 0) {
        errno = EINVAL;
        return -1;
    }
    if (!req->pool->dgram)
        return coho_tdp_sendv(req->pool, req->conn_id, 0, iov, iovcnt);
    c = conn_get(req->pool, req->conn_id);
    rc = c != NULL ? dgram_sendv(req->pool, c, &req->peer, req->peer_len, iov, iovcnt) : -ENOTCONN;
    if (rc < 0) {
        errno = -rc;
        return -1;
    }
    return 0;
}

int coho_tdp_reply(const coho_tdp_req_t *req, const void *frame, size_t len)
{
    struct iovec iov = {.iov_base = (void *)frame, .iov_len = len};

    if (frame == NULL || len == 0) {
        errno = EINVAL;
        return -1;
    }
    return coho_tdp_replyv(req, &iov, 1);
}

coho_tdp_pool_t *coho_tdp_udp_connect(const struct sockaddr *addr, socklen_t addrlen,
                                      const coho_tdp_opts_t *o)
{
    coho_tdp_pool_t *p;
    unsigned i;
    int err;

    p = pool_create(TDP_CONNECT, addr, addrlen, o, &err);
    if (p == NULL) {
        errno = err;
        return NULL;
    }
    p->dgram = true;
    p->slots = calloc(o->conn_count, sizeof(*p->slots));
    if (p->slots == NULL) {
        err = ENOMEM;
        goto fail;
    }
    for (i = 0; i < o->conn_count; i++) {
        int fd = socket(addr->sa_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);

        if (fd < 0) {
            err = errno;
            goto fail;
        }
        if (connect(fd, addr, addrlen) != 0) {
            err = errno;
            close(fd);
            goto fail;
        }
        if (serve_conn(p, fd, i) == 0) {
            err = ENOMEM;
            goto fail;
        }
    }
    return p;
fail:
    coho_tdp_close(p);
    errno = err;
    return NULL;
}

coho_tdp_pool_t *coho_tdp_udp_listen(const struct sockaddr *addr, socklen_t addrlen,
                                     const coho_tdp_opts_t *o)
{
    struct sockaddr_storage bound;
    socklen_t blen = sizeof(bound);
    coho_tdp_pool_t *p;
    int err, fd;

    p = pool_create(TDP_LISTEN, addr, addrlen, o, &err);
    if (p == NULL) {
        errno = err;
        return NULL;
    }
    p->dgram = true;
    fd = socket(addr->sa_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    if (bind(fd, addr, addrlen) != 0 || getsockname(fd, (struct sockaddr *)&bound, &blen) != 0) {
        err = errno;
        close(fd);
        errno = err;
        goto fail;
    }
    if (bound.ss_family == AF_INET)
        p->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
    else if (bound.ss_family == AF_INET6)
        p->port = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
    if (serve_conn(p, fd, 0) == 0) {
        errno = ENOMEM;
        goto fail;
    }
    return p;
fail:
    err = errno;
    coho_tdp_close(p);
    errno = err;
    return NULL;
}

int coho_tdp_get_stats(const coho_tdp_pool_t *p, coho_tdp_stats_t *out)
{
    if (p == NULL || out == NULL) {
        errno = EINVAL;
        return -1;
    }
    *out = p->st;
    return 0;
}

/* ---- the sock protocol framer ---- */

static void put_le32(unsigned char *o, uint32_t v)
{
    o[0] = (unsigned char)v;
    o[1] = (unsigned char)(v >> 8);
    o[2] = (unsigned char)(v >> 16);
    o[3] = (unsigned char)(v >> 24);
}

static uint32_t get_le32(const unsigned char *i)
{
    return (uint32_t)i[0] | (uint32_t)i[1] << 8 | (uint32_t)i[2] << 16 | (uint32_t)i[3] << 24;
}

void coho_sock_hdr_encode(const coho_sock_hdr_t *h, unsigned char out[COHO_SOCK_HDR_LEN])
{
    put_le32(out, h->magic);
    put_le32(out + 4, h->type);
    put_le32(out + 8, (uint32_t)h->seq);
    put_le32(out + 12, (uint32_t)(h->seq >> 32));
    put_le32(out + 16, h->body_len);
    put_le32(out + 20, h->arg);
}

int coho_sock_hdr_decode(const unsigned char in[COHO_SOCK_HDR_LEN], coho_sock_hdr_t *h)
{
    h->magic = get_le32(in);
    h->type = get_le32(in + 4);
    h->seq = (uint64_t)get_le32(in + 8) | (uint64_t)get_le32(in + 12) << 32;
    h->body_len = get_le32(in + 16);
    h->arg = get_le32(in + 20);
    if (h->magic != COHO_SOCK_MAGIC) {
        errno = EPROTO;
        return -1;
    }
    return 0;
}

static int sock_detect(coho_cbuf_t *b, void *ctx)
{
    unsigned char hdr[COHO_SOCK_HDR_LEN];
    coho_sock_hdr_t h;

    (void)ctx;
    if (coho_cbuf_len(b) < 4)
        return COHO_TDP_NEED_MORE;
    if (coho_cbuf_len(b) < COHO_SOCK_HDR_LEN) {
        /* Reject a wrong magic as soon as its 4 bytes are there. */
        if (coho_cbuf_read(b, hdr, 4) != 4 || get_le32(hdr) != COHO_SOCK_MAGIC)
            return COHO_TDP_BAD;
        return COHO_TDP_NEED_MORE;
    }
    if (coho_cbuf_read(b, hdr, sizeof(hdr)) != (ssize_t)sizeof(hdr) ||
        coho_sock_hdr_decode(hdr, &h) != 0)
        return COHO_TDP_BAD;
    return (h.type & COHO_SOCK_RESPONSE) ? COHO_TDP_RESPONSE : COHO_TDP_REQUEST;
}

static ssize_t sock_scan(coho_cbuf_t *b, uint64_t *req_id, void *ctx)
{
    unsigned char hdr[COHO_SOCK_HDR_LEN];
    const size_t *max_body = ctx;
    coho_sock_hdr_t h;

    if (coho_cbuf_len(b) < COHO_SOCK_HDR_LEN)
        return 0;
    if (coho_cbuf_read(b, hdr, sizeof(hdr)) != (ssize_t)sizeof(hdr) ||
        coho_sock_hdr_decode(hdr, &h) != 0)
        return -1;
    if (max_body != NULL && h.body_len > *max_body)
        return -1;
    *req_id = h.seq;
    return (ssize_t)(COHO_SOCK_HDR_LEN + (size_t)h.body_len);
}

void coho_sock_framer_init(coho_tdp_framer_t *f, const size_t *max_body_len)
{
    f->name = "sock";
    f->detect = sock_detect;
    f->scan = sock_scan;
    f->ctx = (void *)max_body_len;
}
