/* SPDX-License-Identifier: MIT */
/* socket_ext ("tdp"): request/response multiplexing over a pool of long TCP connections (or
 * UDP sockets, one datagram per frame: coho_tdp_udp_connect, coho_tdp_udp_listen).
 *
 * Many coroutines share a few connections to one address: each allocates a request id,
 * sends one frame carrying it, and parks until the response frame with that id arrives. One
 * background receive coroutine per connection (a daemon) reads into the connection's cbuf with
 * readv, splits frames with the pool's framers, wakes the waiting coroutine by request id (a
 * response counts only on the connection its request was sent on) and hands request frames to
 * the `on_req` callback. A broken connection leaves the pool at once,
 * its in-flight waiters fail immediately with ECONNRESET, and a connect pool reconnects with
 * backoff. A frame a framer rejects closes that connection (counted); nothing else is touched.
 *
 * Part of libcoho_net (net/tdp_*.c, sock_framer.c): include <coho/net.h>, link coho::net
 * (pkg-config coho-net).
 *
 * Every function is for the thread of the scheduler the pool was created on, inside a
 * coroutine unless it says otherwise. Returns: 0 / -1 + errno; ids 0 + errno. */
#ifndef COHO_SOCKET_EXT_H
#define COHO_SOCKET_EXT_H

#include <sys/socket.h>
#include <sys/uio.h>

#include "coho/cbuf.h"
#include "coho/common.h"

COHO_EXTERN_C_BEGIN

/* What a framer's detect says of the bytes at the front of a connection's buffer. */
enum {
    COHO_TDP_BAD = -1,      /* not this framer's format */
    COHO_TDP_NEED_MORE = 0, /* too few bytes to tell */
    COHO_TDP_REQUEST = 1,
    COHO_TDP_RESPONSE = 2,
};

/* A frame format. Both functions look at the frame at the front of `b` (its cursor is at 0 on
 * entry; they may seek, read and linearize, never change the data) and must be pure. */
typedef struct coho_tdp_framer {
    const char *name;
    /* COHO_TDP_REQUEST, COHO_TDP_RESPONSE, COHO_TDP_NEED_MORE or COHO_TDP_BAD. */
    int (*detect)(coho_cbuf_t *b, void *ctx);
    /* The whole frame's length in bytes (> 0) and its request id in *req_id; 0 when more
     * bytes are needed to tell; -1 when the frame is malformed (the connection is closed). */
    ssize_t (*scan)(coho_cbuf_t *b, uint64_t *req_id, void *ctx);
    void *ctx;
} coho_tdp_framer_t;

#define COHO_TDP_MAX_FRAMERS 4

typedef struct coho_tdp_pool coho_tdp_pool_t;

/* A request frame handed to `on_req`. The callback takes ownership: it answers (usually from a
 * coroutine it spawns) with coho_tdp_reply(req, ...) (or, on stream pools,
 * coho_tdp_send(req->pool, req->conn_id, ...)) and then frees it with coho_tdp_req_free.
 * `frame` holds exactly the frame's bytes. */
typedef struct coho_tdp_req {
    coho_tdp_pool_t *pool;
    uint64_t conn_id;
    uint64_t req_id;
    coho_cbuf_t frame;
    struct sockaddr_storage peer; /* datagram pools: the sender, where the reply goes */
    socklen_t peer_len;           /* datagram pools; 0 on stream pools */
} coho_tdp_req_t;

typedef struct coho_tdp_opts {
    const coho_tdp_framer_t *framers[COHO_TDP_MAX_FRAMERS]; /* tried in order */
    unsigned framer_count;
    size_t max_frame_len;       /* a longer frame is malformed; default 16 MiB */
    unsigned conn_count;        /* connect pools: connections kept (default 4) */
    int64_t connect_timeout_ms; /* connect pools: per attempt (default 3000; -1 none) */
    uint64_t reconnect_min_ms;  /* connect pools: first backoff (default 10) */
    uint64_t reconnect_max_ms;  /* connect pools: backoff cap (default 2000) */
    unsigned max_conns;         /* listen pools: more are accepted and closed (default 10000) */
    int backlog;                /* listen pools: listen(2) backlog (default 1024) */
    /* Backpressure, per connection: once the requests of one connection that were handed to
     * on_req and not yet freed (coho_tdp_req_free) number max_conn_reqs, or their frames add
     * up to max_conn_req_len bytes, the connection reads nothing more until enough of them are
     * freed; it is not closed. Meanwhile the peer's writes stall once the socket buffers are
     * full, and its frames already read wait, unparsed, with the responses that came with them
     * (on a connect pool, a response behind a full connection waits too). A connection thus
     * holds at most max_conn_req_len bytes of requests plus the one frame that crossed the
     * bound, plus its receive buffer (one partial frame, up to max_frame_len, and a 16 KiB
     * read). Datagram pools count the requests of their socket and check between datagrams;
     * datagrams that arrive meanwhile wait in the socket's buffer, and the kernel drops what does
     * not fit. 0 means no limit. */
    unsigned max_conn_reqs;                          /* default 1024 */
    size_t max_conn_req_len;                         /* default 4 MiB */
    void (*on_req)(coho_tdp_req_t *req, void *user); /* in the receive coroutine */
    void (*on_conn_new)(coho_tdp_pool_t *p, uint64_t conn_id, void *user);
    void (*on_conn_delete)(coho_tdp_pool_t *p, uint64_t conn_id, int err, void *user);
    void *user;
} coho_tdp_opts_t;

/* Counters of a pool (monotonic except conns_open). */
typedef struct coho_tdp_stats {
    uint64_t conns_open;        /* connections alive now */
    uint64_t conns_total;       /* connections ever established / accepted */
    uint64_t conns_rejected;    /* accepted past max_conns, or shed on EMFILE */
    uint64_t reconnects;        /* connect attempts after a failure or a broken connection */
    uint64_t protocol_errors;   /* connections closed for a malformed frame */
    uint64_t requests_in;       /* request frames handed to on_req */
    uint64_t responses_in;      /* response frames delivered to a waiter */
    uint64_t responses_dropped; /* responses nobody waits for (timed out, unknown id, or the
                                   id of a request sent on another connection) */
    uint64_t in_flight;         /* request ids allocated and not yet collected */
} coho_tdp_stats_t;

/* Fills defaults (no framer; set framers and framer_count). Any context. */
COHO_API void coho_tdp_opts_init(coho_tdp_opts_t *o);

/* A connect pool of o->conn_count connections to `addr`, kept up by daemon coroutines on the
 * current scheduler (they connect in the background; see coho_tdp_pick). Inside a coroutine.
 * Returns NULL with errno EINVAL (bad options or address), EPERM (outside a coroutine), ENOMEM. */
COHO_API coho_tdp_pool_t *coho_tdp_connect(const struct sockaddr *addr, socklen_t addrlen,
                                           const coho_tdp_opts_t *o);

/* A listen pool on `addr` (port 0 picks one: see coho_tdp_local_port): an accept daemon
 * coroutine adds a connection and its receive coroutine per client. Accepting stops only when
 * the pool closes: out of fds, it accepts and closes the connection with the help of a reserve
 * fd (counted in conns_rejected); on any other failure (no reserve fd, ENOMEM, ENOBUFS,
 * EPROTO, EPERM, ...) it backs off, 1 ms doubling up to 100 ms, and tries again. Inside a
 * coroutine. Returns NULL with errno (EINVAL, EPERM, EADDRINUSE, ...). */
COHO_API coho_tdp_pool_t *coho_tdp_listen(const struct sockaddr *addr, socklen_t addrlen,
                                          const coho_tdp_opts_t *o);

/* Datagram pools: the same request/response flow over UDP, one datagram per frame. A connect
 * pool holds o->conn_count connected UDP sockets to `addr` (each a "connection": pick,
 * req_id, send and wait_resp work as on stream pools; nothing reconnects, an ICMP error leaves
 * the waiter to its timeout). A listen pool binds one socket to `addr` (port 0 picks one:
 * coho_tdp_local_port) whose requests go to on_req; answer them with coho_tdp_reply, which
 * sends to the request's sender. A datagram that is not whole frames (bad magic, truncated,
 * longer than max_frame_len) is dropped and counted in protocol_errors; the socket stays.
 * Frames are at most 65536 bytes (sends fail with EMSGSIZE). Delivery is UDP's: a lost
 * datagram shows as a wait_resp timeout. The reconnect, connect-timeout, max_conns and
 * backlog options do not apply. Inside a coroutine. Returns NULL with errno EINVAL, EPERM,
 * ENOMEM, or the socket, bind or connect error (EADDRINUSE, ...). */
COHO_API coho_tdp_pool_t *coho_tdp_udp_connect(const struct sockaddr *addr, socklen_t addrlen,
                                               const coho_tdp_opts_t *o);
COHO_API coho_tdp_pool_t *coho_tdp_udp_listen(const struct sockaddr *addr, socklen_t addrlen,
                                              const coho_tdp_opts_t *o);

/* Serves an already connected stream fd (a socketpair end, an fd handed over by another
 * process) as one more connection of listen pool `p`: it gets a receive coroutine and its
 * requests go to on_req. Takes ownership of `fd` (closed when the connection ends, or at once
 * on failure). Inside a coroutine. Returns the connection id, or 0 with errno EINVAL (not a
 * listen pool, bad fd), ESHUTDOWN, EPERM, ENOMEM. */
COHO_API uint64_t coho_tdp_attach(coho_tdp_pool_t *p, int fd);

/* The bound port of a listen pool (host order), or 0. Any context on the pool's thread. */
COHO_API uint16_t coho_tdp_local_port(const coho_tdp_pool_t *p);

/* Shuts every connection down, stops accepting and reconnecting, fails in-flight waiters
 * with ECANCELED, waits for the pool's coroutines to end (inside a coroutine) and releases the
 * handle. Requests handed to on_req and not yet freed keep the pool's memory alive (their
 * sends fail with ENOTCONN); the last coho_tdp_req_free releases it. It may be called from the
 * pool's own callbacks (on_req, on_conn_new, on_conn_delete): it then waits for the pool's
 * other coroutines, and the calling one ends after the callback returns. Coroutines parked in
 * the pool's calls (pick, wait_resp, send, attach) hold its memory too: they wake with ESHUTDOWN,
 * ECANCELED or ENOTCONN, and the last one out releases it, also when the closing coroutine is
 * cancelled and so stops waiting. Outside a coroutine (after coho_sched_run returned) it only
 * releases. */
COHO_API int coho_tdp_close(coho_tdp_pool_t *p);

/* A healthy connection, round-robin, parking up to `timeout_ms` (-1: forever) while none is
 * up. Returns its id, or 0 with errno ETIMEDOUT, ECANCELED, ESHUTDOWN (pool closing). */
COHO_API uint64_t coho_tdp_pick(coho_tdp_pool_t *p, int64_t timeout_ms);

/* Allocates a request id (never 0) and registers it, so a response that arrives before
 * coho_tdp_wait_resp is kept for it. Ids come from a permutation keyed by a per-pool random
 * secret: they neither count up nor repeat between pools, so a peer cannot tell the ids of
 * other connections' requests from its own (hard to predict, not a cryptographic guarantee).
 * A response completes the request only when it arrives on the connection the request was sent
 * on with this id (coho_tdp_sendv's req_id); one carrying the id on another connection, or for
 * an id never sent, is dropped and counted in responses_dropped. Returns the id, or 0 with
 * errno ENOMEM/ESHUTDOWN. */
COHO_API uint64_t coho_tdp_req_id(coho_tdp_pool_t *p);

/* Sends one frame, given as `iovcnt` buffers, on connection `conn_id`. Concurrent senders on
 * one connection never interleave bytes of different frames, and their frames leave in one
 * write when they send in the same scheduler pass. `req_id` != 0 ties the request to the
 * connection: only a response arriving on it completes the request, and the waiter fails at
 * once if the connection breaks (a request sent again on another connection is tied to that
 * one). Returns 0, or -1 with errno
 * ENOTCONN (stale or broken connection), EINVAL, or the send error. Called by on_req on the
 * connection the request came from, it only queues the frame: the answers to one read leave in
 * one write when on_req has seen them all, and a failed write breaks the connection. A sender
 * queued behind another's write parks until that write is done; to send a request and wait
 * for its response, coho_tdp_call parks once where coho_tdp_sendv and coho_tdp_wait_resp park
 * twice. */
COHO_API int coho_tdp_sendv(coho_tdp_pool_t *p, uint64_t conn_id, uint64_t req_id,
                            const struct iovec *iov, int iovcnt);
COHO_API int coho_tdp_send(coho_tdp_pool_t *p, uint64_t conn_id, uint64_t req_id, const void *frame,
                           size_t len);

/* Parks until the response with `req_id` arrives, then hands its frame over in `out` (an
 * initialised cbuf whose previous contents are dropped), with the cursor at 0: written into
 * `out` itself when it already holds chunk memory for the frame (a buffer reused from call to
 * call keeps its chunks and options), else moved in (`out` then has the options of a buffer
 * made for the frame, its chunks sized for a small one). The id is released either way.
 * `timeout_ms` -1: forever. Returns 0, or -1 with errno ETIMEDOUT, ECONNRESET (its connection
 * broke), ECANCELED, ENOENT (unknown or already collected id), EBUSY (another coroutine waits
 * for this id; the id stays with that one). */
COHO_API int coho_tdp_wait_resp(coho_tdp_pool_t *p, uint64_t req_id, int64_t timeout_ms,
                                coho_cbuf_t *out);

/* Sends one request frame (carrying request id `req_id`, from coho_tdp_req_id) on connection
 * `conn_id` and waits for its response with ONE park: coho_tdp_sendv with `req_id` followed by
 * coho_tdp_wait_resp, except that the caller does not park for the write. Its frame is copied
 * into the connection's write queue and the caller parks once, until the response arrives (it
 * is handed over in `out` exactly as coho_tdp_wait_resp does), the write or the connection
 * fails (every caller whose frame that write carried, or that waits on that connection, wakes
 * with the error), or `timeout_ms` passes (-1: forever). The first caller on an idle connection
 * writes the queue for the others (as coho_tdp_sendv's group commit); the time it spends writing
 * counts in its timeout. After a timeout the id is gone: a late response is dropped and counted
 * in responses_dropped, never handed to another request. The id is released in every case but
 * ENOENT and EBUSY. Returns 0, or -1 with errno ETIMEDOUT, ENOTCONN (stale or broken
 * connection), ECONNRESET or the write's error (the connection broke), ECANCELED (pool closed
 * or caller cancelled), ENOENT (unknown or already collected id), EBUSY (another coroutine
 * waits for this id; the id stays with that one), EDEADLK (called by the receive coroutine of
 * `conn_id` itself, as from its on_req: only it could read the response), EINVAL, EPERM
 * (outside a coroutine), ENOMEM, EMSGSIZE (datagram pools). */
COHO_API int coho_tdp_callv(coho_tdp_pool_t *p, uint64_t conn_id, uint64_t req_id,
                            const struct iovec *iov, int iovcnt, int64_t timeout_ms,
                            coho_cbuf_t *out);
COHO_API int coho_tdp_call(coho_tdp_pool_t *p, uint64_t conn_id, uint64_t req_id, const void *frame,
                           size_t len, int64_t timeout_ms, coho_cbuf_t *out);

/* Releases a request id without waiting (a late response is then dropped and counted). */
COHO_API int coho_tdp_req_release(coho_tdp_pool_t *p, uint64_t req_id);

/* Frees a request handed to on_req. */
COHO_API void coho_tdp_req_free(coho_tdp_req_t *req);

/* Answers request `req` with one frame: on the connection it came from (coho_tdp_sendv with
 * req_id 0), or on a datagram pool as one datagram to the request's sender. Works until `req`
 * is freed; after its connection or pool is gone it fails with ENOTCONN. Inside a coroutine.
 * Returns 0, or -1 with errno EINVAL, ENOTCONN, EMSGSIZE (datagram pools: longer than
 * max_frame_len or 65536 bytes), or the send error. */
COHO_API int coho_tdp_replyv(const coho_tdp_req_t *req, const struct iovec *iov, int iovcnt);
COHO_API int coho_tdp_reply(const coho_tdp_req_t *req, const void *frame, size_t len);

/* Calls fn(conn_id, fd, arg) for every live connection. */
COHO_API int coho_tdp_for_each_conn(coho_tdp_pool_t *p,
                                    void (*fn)(uint64_t conn_id, int fd, void *arg), void *arg);

/* Copies the pool's counters. Any context on the pool's thread. */
COHO_API int coho_tdp_get_stats(const coho_tdp_pool_t *p, coho_tdp_stats_t *out);

/* ---- the sock protocol (DESIGN.md "Wire format"): a built-in framer ---- */

#define COHO_SOCK_MAGIC    0x4F484F43u
#define COHO_SOCK_HDR_LEN  24
#define COHO_SOCK_RESPONSE 0x80u

/* The 24-byte header, little-endian on the wire. */
typedef struct coho_sock_hdr {
    uint32_t magic;
    uint32_t type;     /* bit COHO_SOCK_RESPONSE set on responses */
    uint64_t seq;      /* the request id */
    uint32_t body_len; /* bytes after the header */
    uint32_t arg;      /* requests: body size wanted; responses: status, 0 = ok */
} coho_sock_hdr_t;

/* Encodes `h` into 24 bytes at `out`. Any context. */
COHO_API void coho_sock_hdr_encode(const coho_sock_hdr_t *h, unsigned char out[COHO_SOCK_HDR_LEN]);

/* Decodes 24 bytes. Returns 0, or -1 with errno EPROTO for a wrong magic. Any context. */
COHO_API int coho_sock_hdr_decode(const unsigned char in[COHO_SOCK_HDR_LEN], coho_sock_hdr_t *h);

/* Fills `f` with the sock protocol framer; frames whose body_len exceeds `max_body_len` are
 * malformed. `max_body_len` must outlive the framer (it is the framer's ctx). Any context. */
COHO_API void coho_sock_framer_init(coho_tdp_framer_t *f, const size_t *max_body_len);

COHO_EXTERN_C_END

#endif /* COHO_SOCKET_EXT_H */
