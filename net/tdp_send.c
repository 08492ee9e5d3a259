/* SPDX-License-Identifier: MIT */
/* socket_ext sending: whole frames under the fd's write lock, answers given inline by on_req
 * written once the dispatch ends, and group commit (the first sender on an idle connection
 * gathers the frames of the others and writes them with one writev). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>

#include "net/tdp_internal.h"

/* Writes a batch of whole frames under the fd's write lock. Returns 0 or -errno; a failed
 * write breaks the connection (part of a frame may have gone out). */
static int tx_write_batch(coho_tdp_pool_t *p, uint64_t conn_id, int fd, const unsigned char *buf,
                          size_t len)
{
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    int err = 0;

    if (coho_fd_lock(fd, COHO_FD_LOCK_WRITE) != 0)
        return errno == EBADF ? -ENOTCONN : -errno;
    errno = 0;
    if (writevn(fd, &iov, 1) != (ssize_t)len)
        err = errno != 0 ? errno : EPIPE;
    coho_fd_unlock(fd, COHO_FD_LOCK_WRITE);
    if (err != 0) {
        struct tdp_conn *c = coho__tdp_conn_get(p, conn_id);

        if (c != NULL)
            coho__tdp_conn_break(p, c, err);
        return err == EBADF ? -ENOTCONN : -err;
    }
    return 0;
}

/* Writes the frame `iov` (`total` bytes) to `fd`, the socket of connection `conn_id`, under
 * the fd's write lock: whole frames only, the lock keeps concurrent senders' bytes apart. A
 * frame half written breaks the connection (the stream is unusable). The direct write of
 * coho_tdp_sendv and coho_tdp_callv; inline, as it was written in each. Returns 0 or -errno
 * (-ENOTCONN for a closed fd). */
static inline int tx_write_frame(coho_tdp_pool_t *p, uint64_t conn_id, int fd,
                                 const struct iovec *iov, int iovcnt, size_t total)
{
    ssize_t n;
    int err;

    if (coho_fd_lock(fd, COHO_FD_LOCK_WRITE) != 0)
        return errno == EBADF ? -ENOTCONN : -errno;
    n = writevn(fd, iov, iovcnt);
    err = errno;
    coho_fd_unlock(fd, COHO_FD_LOCK_WRITE);
    if (n != (ssize_t)total) {
        struct tdp_conn *c = coho__tdp_conn_get(p, conn_id);

        if (c != NULL)
            coho__tdp_conn_break(p, c, err != 0 ? err : EPIPE); /* half a frame went: unusable */
        return err == EBADF || err == 0 ? -ENOTCONN : -err;
    }
    return 0;
}

/* Parks the caller until the flusher of `c` has written the frames queued so far. Returns the
 * write's result (0 or -errno). */
static int tx_wait_flushed(struct tdp_conn *c)
{
    struct tdp_waiter w = {.co_id = coho_self()};
    int rc;

    w.token = coho__park_prepare();
    coho__park_note("tdp flush of connection@", (int64_t)(intptr_t)c);
    coho_list_push_back(&c->wwaiters, &w.link);
    rc = coho__park(-1);
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
        struct tdp_conn *c = coho__tdp_conn_get(p, conn_id);
        coho_list_t waiters, *pos;
        unsigned char *batch;
        size_t len, cap;
        int res;

        if (c == NULL) /* broken: coho__tdp_conn_break failed the queued senders */
            return rc == 1 ? -ENOTCONN : rc;
        if (c->wq_len == 0) {
            c->flushing = false;
            return rc == 1 ? 0 : rc;
        }
        /* Taken from the connection, which may go while we write; frames queued meanwhile go
         * to a new buffer. */
        batch = c->wq;
        len = c->wq_len;
        cap = c->wq_cap;
        c->wq = NULL;
        c->wq_len = c->wq_cap = 0;
        coho_list_init(&waiters);
        coho_list_splice_back(&waiters, &c->wwaiters);
        res = tx_write_batch(p, conn_id, c->fd, batch, len);
        if (cap <= TDP_WQ_KEEP_MAX && p->wq_spares < TDP_WQ_SPARES) {
            /* Kept by the pool for the next batch of any connection: no malloc per flush, and
             * no buffer held by each of many idle connections. */
            p->wq_spare[p->wq_spares] = batch;
            p->wq_spare_cap[p->wq_spares++] = cap;
        } else {
            free(batch);
        }
        while ((pos = coho_list_pop_front(&waiters)) != NULL) {
            struct tdp_waiter *w = coho_list_entry(pos, struct tdp_waiter, link);

            coho__park_wake(w->co_id, w->token, res);
        }
        if (rc == 1)
            rc = res;
    }
}

/* Appends a whole frame to the connection's queue (all or nothing). Returns 0 or -ENOMEM. */
static int tx_queue(coho_tdp_pool_t *p, struct tdp_conn *c, const struct iovec *iov, int iovcnt,
                    size_t total)
{
    int i;

    if (c->wq == NULL && p->wq_spares > 0) {
        c->wq = p->wq_spare[--p->wq_spares];
        c->wq_cap = p->wq_spare_cap[p->wq_spares];
    }
    if (total > c->wq_cap - c->wq_len) {
        size_t cap = c->wq_cap != 0 ? c->wq_cap : 4096;
        unsigned char *q;

        while (cap - c->wq_len < total) {
            if (cap > SIZE_MAX / 2)
                return -ENOMEM;
            cap *= 2;
        }
        q = realloc(c->wq, cap);
        if (q == NULL)
            return -ENOMEM;
        c->wq = q;
        c->wq_cap = cap;
    }
    for (i = 0; i < iovcnt; i++)
        if (iov[i].iov_len > 0) {
            memcpy(c->wq + c->wq_len, iov[i].iov_base, iov[i].iov_len);
            c->wq_len += iov[i].iov_len;
        }
    return 0;
}

/* Group commit. The first sender on an idle connection queues its frame, yields once so that
 * the coroutines ready in this pass (typically those a batch of responses just woke) can queue
 * theirs and park, then writes everything queued (one flat buffer) with one write and
 * wakes them with the result (tx_flush). One write(2) per frame was the dominant cost of a
 * request (bench/RESULTS.md "socket_ext"). Returns 0 or -errno: each sender gets the result of
 * the write that carried its frame. */
static int tx_send_batched(coho_tdp_pool_t *p, struct tdp_conn *c, const struct iovec *iov,
                           int iovcnt, size_t total)
{
    uint64_t conn_id = c->id;
    int rc = tx_queue(p, c, iov, iovcnt, total);

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
void coho__tdp_flush_inline(coho_tdp_pool_t *p, struct tdp_conn *c)
{
    if (c->broken || c->wq_len == 0)
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

/* coho_tdp_sendv on a live pool. Returns 0 or -errno. Kept out of coho_tdp_sendv, whose
 * inline-answer path then saves and restores few registers. */
__attribute__((noinline)) static int tdp_sendv(coho_tdp_pool_t *p, uint64_t conn_id,
                                               uint64_t req_id, const struct iovec *iov, int iovcnt)
{
    struct tdp_conn *c;
    struct tdp_pending *pd = NULL;
    size_t total = 0;
    int i;

    for (i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    c = coho__tdp_conn_get(p, conn_id);
    if (c == NULL)
        return -ENOTCONN;
    if (req_id != 0) {
        pd = coho__tdp_pending_get(p, req_id);
        if (pd == NULL)
            return -ENOENT;
        pd->conn_id = conn_id;
        coho_list_del(&pd->conn_link);
        coho_list_push_back(&c->inflight, &pd->conn_link);
    }
    if (p->dgram) /* one datagram per frame: never queued behind or batched with others */
        return coho__tdp_dgram_sendv(p, c, NULL, 0, iov, iovcnt);
    if (c->dispatching && coho_self() == c->rx_co) {
        /* An answer given inline by on_req: queued, and written with the other answers of the
         * same read once the dispatch ends (coho__tdp_flush_inline); a failed write breaks the
         * connection. */
        return tx_queue(p, c, iov, iovcnt, total);
    }
    if (c->flushing || (tx_gather_worthwhile(p) && coho_self() != c->rx_co))
        return tx_send_batched(p, c, iov, iovcnt, total);
    return tx_write_frame(p, conn_id, c->fd, iov, iovcnt, total);
}

int coho_tdp_sendv(coho_tdp_pool_t *p, uint64_t conn_id, uint64_t req_id, const struct iovec *iov,
                   int iovcnt)
{
    int rc;

    if (p == NULL || iov == NULL || iovcnt <= 0) {
        errno = EINVAL;
        return -1;
    }
    if (req_id == 0 && !p->dgram) {
        /* The usual answer of a server: given inline by on_req on the connection the request
         * came from, it is only queued (see tdp_sendv), and nothing parks, so the pool needs no
         * reference. */
        struct tdp_conn *c = coho__tdp_conn_get(p, conn_id);

        if (c != NULL && c->dispatching && coho_self() == c->rx_co) {
            size_t total = 0;
            int i;

            for (i = 0; i < iovcnt; i++)
                total += iov[i].iov_len;
            rc = tx_queue(p, c, iov, iovcnt, total);
            if (rc < 0) {
                errno = -rc;
                return -1;
            }
            return 0;
        }
    }
    coho__tdp_pool_ref(p);
    rc = tdp_sendv(p, conn_id, req_id, iov, iovcnt);
    coho__tdp_pool_unref(p);
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
    c = coho__tdp_conn_get(req->pool, req->conn_id);
    rc = c != NULL ? coho__tdp_dgram_sendv(req->pool, c, &req->peer, req->peer_len, iov, iovcnt)
                   : -ENOTCONN;
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

/* Milliseconds on the monotonic clock. */
static int64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* coho_tdp_callv's send half: ties pd to the connection and hands the frame on without parking
 * for the write where another sender carries it. A caller that finds the connection's queue
 * being written appends its frame and returns at once: the write's failure breaks the
 * connection, and that fails pd (it is on the connection's in-flight list) and wakes its
 * waiter. The first caller on an idle connection gathers and writes as coho_tdp_sendv does;
 * when `t0` is not NULL it then gets the time the write began (monotonic ms), since that caller
 * spends the write's time out of its timeout (the others pay no clock read). Returns 0 or
 * -errno. */
static int tx_call_send(coho_tdp_pool_t *p, uint64_t self, uint64_t conn_id, struct tdp_pending *pd,
                        const struct iovec *iov, int iovcnt, int64_t *t0)
{
    struct tdp_conn *c = coho__tdp_conn_get(p, conn_id);
    size_t total = 0;
    int i, rc;

    if (c == NULL)
        return -ENOTCONN;
    if (self == c->rx_co)
        return -EDEADLK; /* it would wait for a response only it can read */
    for (i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    pd->conn_id = conn_id;
    coho_list_del(&pd->conn_link);
    coho_list_push_back(&c->inflight, &pd->conn_link);
    if (p->dgram)
        return coho__tdp_dgram_sendv(p, c, NULL, 0, iov, iovcnt);
    if (c->flushing)
        return tx_queue(p, c, iov, iovcnt, total);
    if (t0 != NULL)
        *t0 = mono_ms();
    if (tx_gather_worthwhile(p)) {
        rc = tx_queue(p, c, iov, iovcnt, total);
        if (rc != 0)
            return rc;
        c->flushing = true;
        coho_yield();
        return tx_flush(p, conn_id);
    }
    return tx_write_frame(p, conn_id, c->fd, iov, iovcnt, total);
}

/* coho_tdp_callv and coho_tdp_call (one function: no call through the PLT between them). */
static inline int tdp_callv(coho_tdp_pool_t *p, uint64_t conn_id, uint64_t req_id,
                            const struct iovec *iov, int iovcnt, int64_t timeout_ms,
                            coho_cbuf_t *out)
{
    struct tdp_pending *pd;
    uint64_t self;
    int64_t t0 = -1;
    int rc;

    rc = coho__tdp_pending_for_wait(p, req_id, &pd);
    if (rc < 0) {
        errno = -rc;
        return -1;
    }
    self = coho_self();
    if (iov == NULL || iovcnt <= 0 || out == NULL || self == 0) {
        rc = self == 0 ? EPERM : EINVAL;
        coho__tdp_pending_free(p, pd); /* released either way */
        errno = rc;
        return -1;
    }
    coho__tdp_pool_ref(p); /* see coho__tdp_pool_ref: the send may park */
    if (pd->status == 0) { /* else the pool's close already failed it */
        /* A response that comes while this caller still writes (the flusher) goes into `out`. */
        pd->out = out;
        rc = tx_call_send(p, self, conn_id, pd, iov, iovcnt, timeout_ms > 0 ? &t0 : NULL);
        /* The frame did not go (a failed write already failed pd through its connection):
         * the request fails with the send's error. */
        if (rc < 0 && pd->status == 0)
            pd->status = coho__tdp_status_err(rc);
    }
    if (t0 >= 0) {
        int64_t spent = mono_ms() - t0;

        timeout_ms = spent >= timeout_ms ? 0 : timeout_ms - spent;
    }
    rc = coho__tdp_resp_wait(p, pd, self, req_id, timeout_ms, out);
    coho__tdp_pool_unref(p);
    if (rc < 0) {
        errno = -rc;
        return -1;
    }
    return 0;
}

int coho_tdp_callv(coho_tdp_pool_t *p, uint64_t conn_id, uint64_t req_id, const struct iovec *iov,
                   int iovcnt, int64_t timeout_ms, coho_cbuf_t *out)
{
    return tdp_callv(p, conn_id, req_id, iov, iovcnt, timeout_ms, out);
}

int coho_tdp_call(coho_tdp_pool_t *p, uint64_t conn_id, uint64_t req_id, const void *frame,
                  size_t len, int64_t timeout_ms, coho_cbuf_t *out)
{
    struct iovec iov = {.iov_base = (void *)frame, .iov_len = len};

    /* A bad frame goes on as no buffers: EINVAL, with the id released. */
    return tdp_callv(p, conn_id, req_id, frame != NULL && len > 0 ? &iov : NULL, 1, timeout_ms,
                     out);
}
