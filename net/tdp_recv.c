/* SPDX-License-Identifier: MIT */
/* socket_ext receiving: the receive loop of a stream connection, splitting frames with the
 * pool's framers and dispatching them (a response to the coroutine waiting for its id, a request
 * to on_req), backpressure on connections whose requests are not freed, and waiting for a
 * response (coho_tdp_wait_resp). */
#include <errno.h>
#include <stdio.h> /* SEEK_SET */
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "net/tdp_internal.h"

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

/* Where a frame lies: `off` bytes into the receive buffer `src`, and at `flat` when its bytes
 * are in one piece there (else NULL). */
struct frame_at {
    coho_cbuf_t *src;
    size_t off;
    const void *flat;
};

/* Copies `len` bytes from offset `off` of `src` to `dst`, span by span. Returns 0 or -errno. */
static int cbuf_read_at(const coho_cbuf_t *src, size_t off, void *dst, size_t len)
{
    size_t done = 0;

    while (done < len) {
        struct iovec iov;
        size_t take;

        if (coho_cbuf_data_iov(src, off + done, &iov, 1) != 1)
            return -EINVAL;
        take = iov.iov_len < len - done ? iov.iov_len : len - done;
        memcpy((char *)dst + done, iov.iov_base, take);
        done += take;
    }
    return 0;
}

/* Appends the `len` bytes of frame `f` to `dst`. Returns 0 or -errno. */
static int frame_copy(coho_cbuf_t *dst, const struct frame_at *f, size_t len)
{
    size_t done = 0;

    if (f->flat != NULL) /* the usual frame: one piece of the receive buffer */
        return coho_cbuf_append(dst, f->flat, len) == 0 ? 0 : -errno;
    /* One span at a time: the receive buffer may hold many more chunks of data after the frame
     * (asking for them all cost ~50 instructions per frame). */
    while (done < len) {
        struct iovec iov;
        size_t take;

        if (coho_cbuf_data_iov(f->src, f->off + done, &iov, 1) != 1)
            return -EINVAL;
        take = iov.iov_len < len - done ? iov.iov_len : len - done;
        if (coho_cbuf_append(dst, iov.iov_base, take) != 0)
            return -errno;
        done += take;
    }
    return 0;
}

/* Replaces the contents of `out` with frame `f` (the cursor goes to 0). The old contents go
 * first, so the frame lands at the start of the chunk `out` keeps (appending behind them and
 * dropping them after cost twice as much). On failure `out` is left empty, and the caller
 * falls back to the record's own buffer, which wait_resp then moves into `out` as before: what
 * `out` holds after wait_resp returns is the same either way; only when that fails too (no
 * memory) is `out` found empty after a wait that ends without the response. Returns 0 or
 * -errno. */
static int frame_copy_into(coho_cbuf_t *out, const struct frame_at *f, size_t len)
{
    int rc;

    if (coho_cbuf_truncate(out, 0) != 0)
        return -errno;
    rc = frame_copy(out, f, len);
    if (rc != 0)
        coho_cbuf_truncate(out, 0);
    return rc;
}

/* A request record with zeroed fields: a freed one of this pool (whose frame buffer may still
 * be live, see struct tdp_req), or a new one. */
static struct tdp_req *req_alloc(coho_tdp_pool_t *p)
{
    struct tdp_req *r = p->reqs_idle;

    if (r == NULL)
        return calloc(1, sizeof(*r));
    p->reqs_idle = r->idle_next;
    p->reqs_idle_count--;
    r->idle_next = NULL;
    r->held_len = 0;
    r->held = false;
    r->pub.pool = NULL;
    r->pub.conn_id = 0;
    r->pub.req_id = 0;
    if (r->pub.peer_len != 0)
        memset(&r->pub.peer, 0, sizeof(r->pub.peer));
    r->pub.peer_len = 0;
    return r;
}

/* Makes the record's frame buffer an empty one that takes a frame of `len` bytes: the kept one
 * when it is large enough, else a new one sized for the frame. */
static void req_frame_init(struct tdp_req *r, size_t len)
{
    if (r->frame_live && r->frame_cap >= len)
        return;
    if (r->frame_live)
        coho_cbuf_destroy(&r->pub.frame);
    cbuf_init_for(&r->pub.frame, len);
    r->frame_live = true;
    r->frame_cap = 0;
}

/* Backpressure. A connection whose requests in on_req (handed over, not yet freed) reach
 * max_conn_reqs, or whose frames reach max_conn_req_len bytes, is full: its receive coroutine
 * dispatches no further frame and reads nothing more until coho_tdp_req_free makes room. The
 * peer's writes then fill the socket buffers and stall; the connection stays open. One peer
 * that pipelines without end thus holds at most max_conn_req_len bytes of requests (plus the
 * frame that crossed the bound) and its receive buffer (at most one partial frame and a read).
 * (coho__tdp_conn_is_full, inline in tdp_internal.h, is the test.)
 *
 * Parks the receive coroutine of `c` while it is full. Returns 0 (room, or the connection
 * broke: see c->broken) or -ECANCELED. */
int coho__tdp_rx_wait_room(coho_tdp_pool_t *p, struct tdp_conn *c)
{
    while (coho__tdp_conn_is_full(p, c) && !c->broken) {
        int rc;

        c->room_token = coho__park_prepare();
        c->room_co = coho_self();
        coho__park_note("tdp requests to drain, connection@", (int64_t)(intptr_t)c);
        rc = coho__park(-1);
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
    struct tdp_conn *c = coho__tdp_conn_find(p, conn_id);

    if (c == NULL) /* the connection is gone, and its counts with it */
        return;
    c->reqs_held--;
    c->reqs_held_len -= len;
    if (c->room_co != 0 && !coho__tdp_conn_is_full(p, c))
        coho__park_wake(c->room_co, c->room_token, 0);
}

/* Hands one whole frame on: a response to the request it answers (into the waiter's buffer
 * when it is parked, else into the record's), a request to on_req. */
static void frame_deliver(coho_tdp_pool_t *p, struct tdp_conn *c, int kind, uint64_t req_id,
                          size_t flen, const struct frame_at *f)
{
    if (kind == COHO_TDP_RESPONSE) {
        struct tdp_pending *pd = coho__tdp_pending_get(p, req_id);

        /* Only the connection the request went out on answers it: a response carrying the id
         * on any other connection (a client of a listen pool answering another client's
         * request, with a guessed or leaked id) is dropped and counted. */
        if (pd != NULL && pd->conn_id != c->id)
            pd = NULL;
        if (pd != NULL && pd->status == 0 && pd->out != NULL &&
            coho_cbuf_capacity(pd->out) >= flen && frame_copy_into(pd->out, f, flen) == 0) {
            /* The waiter is parked and its buffer already holds chunk memory for the frame (a
             * buffer reused from call to call): the frame goes there, with no buffer of the
             * record's to fill, move and free. A new, empty buffer gets one sized for the frame
             * below instead, so a small response never takes a default 4 KiB chunk. */
            pd->in_out = true;
        } else if (pd != NULL && pd->status == 0) {
            cbuf_init_for(&pd->resp, flen);
            pd->resp_live = true;
            if (frame_copy(&pd->resp, f, flen) != 0) {
                coho_cbuf_destroy(&pd->resp);
                pd->resp_live = false;
            }
        }
        if (pd != NULL && pd->status == 0 && (pd->resp_live || pd->in_out)) {
            pd->status = 1;
            coho_list_del(&pd->conn_link);
            p->st.responses_in++;
            if (pd->co_id != 0)
                coho__park_wake(pd->co_id, pd->token, 0);
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
            req_frame_init(r, flen);
            if (frame_copy(&rq->frame, f, flen) != 0) {
                coho_tdp_req_free(rq);
                rq = NULL;
            }
        }
        if (rq != NULL && p->o.on_req != NULL) {
            r->held = true;
            r->held_len = flen;
            c->reqs_held++;
            c->reqs_held_len += flen;
            p->st.requests_in++;
            coho__tdp_cb_req(p, rq);
        } else if (rq != NULL) {
            coho_tdp_req_free(rq);
        }
    }
}

static uint32_t get_le32(const unsigned char *i)
{
    return (uint32_t)i[0] | (uint32_t)i[1] << 8 | (uint32_t)i[2] << 16 | (uint32_t)i[3] << 24;
}

/* coho__tdp_rx_dispatch for a pool whose only framer is the sock framer: the headers are read
 * in place, walking the buffer's contiguous spans (one coho_cbuf_data_iov per span, not per
 * frame), and the dispatched frames are consumed together at the end. The buffer does not
 * change meanwhile: only this coroutine reads into it or frees it, also while on_req parks. */
static int dispatch_sock(coho_tdp_pool_t *p, struct tdp_conn *c)
{
    const size_t *max_body = p->o.framers[0]->ctx;
    size_t len = coho_cbuf_len(&c->rbuf), off = 0, span_off = 0, span_len = 0;
    const unsigned char *span = NULL;
    int rc = 0;

    while (off < len && !c->broken && (p->dgram || !coho__tdp_conn_is_full(p, c))) {
        unsigned char tmp[COHO_SOCK_HDR_LEN];
        const unsigned char *hdr;
        struct frame_at f = {.src = &c->rbuf, .off = off, .flat = NULL};
        size_t avail, flen;
        uint32_t body_len;

        if (len - off < COHO_SOCK_HDR_LEN) {
            /* A partial header: reject a wrong magic as soon as its 4 bytes are there. */
            if (len - off >= 4 &&
                (cbuf_read_at(&c->rbuf, off, tmp, 4) != 0 || get_le32(tmp) != COHO_SOCK_MAGIC))
                rc = -EPROTO;
            else if (len - off > p->o.max_frame_len)
                rc = -EPROTO;
            break;
        }
        if (off >= span_off + span_len) {
            struct iovec iov;

            if (coho_cbuf_data_iov(&c->rbuf, off, &iov, 1) != 1) {
                rc = -EPROTO;
                break;
            }
            span = iov.iov_base;
            span_off = off;
            span_len = iov.iov_len;
        }
        avail = span_off + span_len - off; /* bytes in one piece from off */
        hdr = span + (off - span_off);
        if (avail < COHO_SOCK_HDR_LEN) { /* the header straddles two chunks */
            if (cbuf_read_at(&c->rbuf, off, tmp, sizeof(tmp)) != 0) {
                rc = -EPROTO;
                break;
            }
            hdr = tmp;
        }
        body_len = get_le32(hdr + 16);
        flen = COHO_SOCK_HDR_LEN + (size_t)body_len;
        if (get_le32(hdr) != COHO_SOCK_MAGIC || (max_body != NULL && body_len > *max_body) ||
            flen > p->o.max_frame_len) {
            rc = -EPROTO;
            break;
        }
        if (flen > len - off)
            break; /* need more bytes */
        f.flat = avail >= flen ? hdr : NULL;
        frame_deliver(
            p, c, (get_le32(hdr + 4) & COHO_SOCK_RESPONSE) ? COHO_TDP_RESPONSE : COHO_TDP_REQUEST,
            (uint64_t)get_le32(hdr + 8) | (uint64_t)get_le32(hdr + 12) << 32, flen, &f);
        off += flen;
    }
    if (off > 0)
        coho_cbuf_consume(&c->rbuf, off);
    return rc;
}

/* Splits and dispatches the whole frames at the front of the connection's buffer, until a
 * stream connection is full (coho__tdp_conn_is_full: the rest waits in the buffer). Returns 0 (need
 * more bytes, or full) or -EPROTO (malformed: close the connection). */
int coho__tdp_rx_dispatch(coho_tdp_pool_t *p, struct tdp_conn *c)
{
    if (p->sock_only)
        return dispatch_sock(p, c);
    /* A datagram is dispatched whole (its frames cannot wait in the buffer): datagram pools
     * check the bound between datagrams, in coho__tdp_rx_loop_dgram. */
    while (coho_cbuf_len(&c->rbuf) > 0 && !c->broken &&
           (p->dgram || !coho__tdp_conn_is_full(p, c))) {
        const coho_tdp_framer_t *fr = NULL;
        struct frame_at f = {.src = &c->rbuf, .off = 0, .flat = NULL};
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
        /* A small frame (the usual one) in one piece: a pointer into the receive chunk, copied
         * to the buffer's scratch only when it straddles two. */
        if ((size_t)flen <= TDP_FRAME_FLAT_MAX)
            f.flat = coho_cbuf_linearize(&c->rbuf, (size_t)flen);
        frame_deliver(p, c, kind, req_id, (size_t)flen, &f);
        coho_cbuf_consume(&c->rbuf, (size_t)flen);
    }
    return 0;
}

/* Reads and dispatches until the connection breaks. Returns the reason (an errno value). */
int coho__tdp_rx_loop(coho_tdp_pool_t *p, struct tdp_conn *c)
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
        rc = coho__tdp_rx_dispatch(p, c);
        c->dispatching = false;
        /* Whether the dispatch stopped at the bound, taken before coho__tdp_flush_inline, which may
         * park: requests freed during that park make room, and the frames left in the buffer
         * must still be dispatched before the next read (which may never come). */
        full = coho__tdp_conn_is_full(p, c);
        coho__tdp_flush_inline(p, c);
        if (rc != 0) {
            p->st.protocol_errors++;
            return EPROTO;
        }
        if (c->broken)
            return ECONNRESET;
        /* Full: wait for room, then dispatch what the buffer still holds before reading. */
        read_more = !full;
        if (full && coho__tdp_rx_wait_room(p, c) < 0)
            return ECANCELED;
    }
}

/* Receive coroutine of an accepted connection. */
void coho__tdp_rx_main(void *arg)
{
    struct tdp_rx_arg *a = arg;
    coho_tdp_pool_t *p = a->p;
    struct tdp_conn *c = coho__tdp_conn_find(p, a->conn_id);
    int err;

    free(a);
    if (c != NULL) {
        err = p->dgram ? coho__tdp_rx_loop_dgram(p, c) : coho__tdp_rx_loop(p, c);
        coho__tdp_conn_free(p, c, err);
    }
    coho__tdp_pool_co_exit(p);
}

int coho_tdp_wait_resp(coho_tdp_pool_t *p, uint64_t req_id, int64_t timeout_ms, coho_cbuf_t *out)
{
    struct tdp_pending *pd;
    uint64_t self;
    int rc;

    if (out == NULL) {
        errno = EINVAL;
        return -1;
    }
    rc = coho__tdp_pending_for_wait(p, req_id, &pd);
    if (rc < 0) {
        errno = -rc;
        return -1;
    }
    self = coho_self();
    if (pd->status == 0 && self == 0) {
        errno = EPERM;
        return -1;
    }
    rc = coho__tdp_resp_wait(p, pd, self, req_id, timeout_ms, out);
    if (rc < 0) {
        errno = -rc;
        return -1;
    }
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
    if (p != NULL && p->reqs_idle_count < TDP_REQS_IDLE_MAX) {
        /* Kept for req_alloc with its frame buffer emptied, unless the buffer is gone (the
         * callback destroyed it) or holds more than a small frame's chunk memory. */
        r->frame_live = r->frame_live && coho_cbuf_truncate(&req->frame, 0) == 0;
        r->frame_cap = r->frame_live ? coho_cbuf_capacity(&req->frame) : 0;
        if (r->frame_live && r->frame_cap > TDP_FRAME_FLAT_MAX) {
            coho_cbuf_destroy(&req->frame);
            r->frame_live = false;
        }
        r->idle_next = p->reqs_idle;
        p->reqs_idle = r;
        p->reqs_idle_count++;
    } else {
        coho_cbuf_destroy(&req->frame);
        free(r);
    }
    if (p != NULL) {
        p->reqs_live--;
        coho__tdp_pool_unref(p);
    }
}
