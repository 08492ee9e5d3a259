/* SPDX-License-Identifier: MIT */
/* libcoho_net: TCP servers whose connections are handled by one coroutine each, framed reads,
 * bounded send queues drained by a writer coroutine, broadcast groups spanning threads, and a
 * dial helper. Link coho::net (pkg-config coho-net); see net/README.md for the design.
 *
 * The user's side:
 *
 *     static void on_conn(coho_conn_t *c, void *user)      // one coroutine per connection
 *     {
 *         coho_cbuf_t f;
 *         coho_cbuf_init(&f, NULL);
 *         while (coho_conn_read_frame(c, &f) > 0)          // parks; one whole frame
 *             coho_group_broadcast(room, coho_cbuf_linearize(&f, coho_cbuf_len(&f)),
 *                                  coho_cbuf_len(&f));     // queues, never waits
 *         coho_cbuf_destroy(&f);
 *     }                                                    // return: queued frames leave,
 *                                                          // then the socket closes
 *
 * Frames are whole frames, header included, both ways: coho_conn_read_frame hands out the bytes
 * the framer delimited, and coho_conn_send queues bytes the caller encoded (coho_lenpfx_encode
 * writes a length prefix). A sender never blocks: past the connection's send-queue bound the
 * connection is closed and counted, the sender is not held up.
 *
 * Returns: 0 / -1 + errno; pointers NULL + errno; ids 0 + errno. */
#ifndef COHO_NET_H
#define COHO_NET_H

#include <sys/socket.h>

#include "coho/admin.h"
#include "coho/cbuf.h"
#include "coho/common.h"
#include "coho/metrics.h"
#include "coho/sched.h"
#include "coho/socket_ext.h"

COHO_EXTERN_C_BEGIN

/* ---- framing --------------------------------------------------------------------------------- */

/* A length-prefixed frame format: a 1-, 2- or 4-byte unsigned length, little- or big-endian,
 * counting the bytes after the prefix or (includes_header) the whole frame. */
typedef struct coho_lenpfx {
    unsigned size;        /* 1, 2 or 4; default 4 */
    bool big_endian;      /* default false (little-endian) */
    bool includes_header; /* the length counts the prefix too; default false */
} coho_lenpfx_t;

/* Fills `f` with a framer (the coho_tdp_framer_t of socket_ext, usable by tdp pools too) for
 * the format `cfg`, which must outlive `f` (it is the framer's ctx). scan returns the whole
 * frame's length as soon as the prefix is in; a prefix that cannot be a frame (includes_header
 * and a length below the prefix size, or 0 with includes_header) is malformed; detect says
 * COHO_TDP_REQUEST for every frame. Any context. Errors: EINVAL (NULL, size not 1, 2 or 4). */
COHO_API int coho_lenpfx_framer_init(coho_tdp_framer_t *f, const coho_lenpfx_t *cfg);

/* Writes the prefix of a frame whose payload (after the prefix) is `payload_len` bytes into
 * `out` and returns its size (cfg->size). Any context. Errors: EINVAL (bad cfg), EMSGSIZE (the
 * length does not fit the prefix). */
COHO_API int coho_lenpfx_encode(const coho_lenpfx_t *cfg, size_t payload_len, unsigned char out[4]);

/* Fills `f` with a line framer: a frame is everything up to and including the next '\n'.
 * Any context. Errors: EINVAL (NULL). */
COHO_API int coho_line_framer_init(coho_tdp_framer_t *f);

/* Built-in framings of a server (coho_server_opts_t.framing). */
enum {
    COHO_FRAMING_LENPFX = 0, /* coho_server_opts_t.lenpfx (default 4-byte little-endian) */
    COHO_FRAMING_LINE = 1,   /* '\n'-terminated lines */
    COHO_FRAMING_SOCK = 2,   /* the sock protocol (DESIGN.md "Wire format"), socket_ext's framer */
    COHO_FRAMING_CUSTOM = 3, /* coho_server_opts_t.framer */
};

/* ---- servers --------------------------------------------------------------------------------- */

typedef struct coho_server coho_server_t; /* opaque */
typedef struct coho_conn coho_conn_t;     /* opaque; owned by the server */

typedef struct coho_server_opts {
    unsigned threads;    /* threads, one scheduler and one SO_REUSEPORT listen socket each;
                            default 1 */
    coho_sched_t *sched; /* threads == 1: run on this scheduler, which must be the calling
                            thread's (start from its thread, inside a coroutine or not);
                            NULL (default): a thread of the server's own */
    int backlog;         /* listen(2) backlog, default 4096 */
    unsigned max_conns;  /* open connections at most (all threads); more are shed; default
                            10000; 0 = no limit */
    unsigned per_ip_max; /* open connections per peer address at most; 0 (default) = no limit */
    /* CIDR lists ("127.0.0.0/8", "::1/128", a bare address is a /32 or /128): a peer in `deny`
     * is shed; with a non-empty `allow`, a peer outside it is shed. Copied. Reload with
     * coho_server_set_acl. Default: none. */
    const char *const *allow;
    unsigned allow_count;
    const char *const *deny;
    unsigned deny_count;
    uint64_t idle_ms;     /* a connection with no complete frame received for this long is kicked
                             (its read_frame fails with ETIMEDOUT); 0 (default) = never */
    size_t max_frame;     /* bytes of one frame at most, header included; default 65536 */
    int framing;          /* COHO_FRAMING_*, default COHO_FRAMING_LENPFX */
    coho_lenpfx_t lenpfx; /* COHO_FRAMING_LENPFX: the format (default 4, LE) */
    const coho_tdp_framer_t *framer; /* COHO_FRAMING_CUSTOM: must outlive the server */
    size_t send_queue_bytes;         /* queued bytes at most per connection, default 1 MiB */
    unsigned send_queue_frames;      /* queued frames at most per connection, default 4096 */
    uint64_t flush_tick_ms;          /* 0 (default): queued frames leave when the writer
                                        runs; N: at most one write per connection per N ms */
    unsigned rate_limit;             /* frames per second a connection may send; 0 (default)
                                        = no limit; past it read_frame fails with EDQUOT */
    unsigned rate_burst;             /* token bucket depth; 0 (default) = 2 * rate_limit */
    unsigned read_budget;            /* frames one connection reads before it yields to the
                                        others (fairness); default 16 */
    size_t stack_size;               /* handler coroutine stacks; 0 (default): the
                                        scheduler's */
    bool websocket;      /* connections are WebSocket (RFC 6455, server side): each first
                            sends an HTTP/1.1 upgrade request for ws_path (a bad one is
                            answered 400, 404 or 426 and closed, counted in protocol_errors);
                            then read_frame returns one whole message (text or binary, its
                            fragments joined; max_frame bounds it: close 1009 and EMSGSIZE),
                            pings are answered, clients must mask (else close 1002 and
                            EPROTO), a close frame is answered and ends reads (0), and every
                            frame sent leaves as one message. Default false */
    const char *ws_path; /* the upgrade's path, query ignored; copied; NULL (default): "/" */
    bool ws_text;        /* WebSocket: send text messages; default false (binary) */
    /* TLS: PEM files of the certificate chain and its private key; both set: every connection
     * first completes a TLS handshake (1.2 or later) in its handler's coroutine (a failed one
     * is counted in protocol_errors and closed), then speaks plain frames or WebSocket (wss)
     * inside it, and gets a close_notify when its handler returns. Read once by start (EINVAL
     * when unreadable or mismatched). Default NULL: plain TCP. */
    const char *tls_cert_file;
    const char *tls_key_file;
    int sndbuf; /* SO_SNDBUF of accepted sockets (fixes the kernel's share of a slow reader's
                   backlog; the send queue holds the rest); 0 (default): the kernel's, autotuned */
    int rcvbuf; /* SO_RCVBUF of accepted sockets; 0 (default): the kernel's */
    uint64_t linger_ms; /* after its handler returns, how long a connection's queued frames may
                           take to leave before the socket is closed anyway; default 1000 */
    bool reuseport;     /* set SO_REUSEPORT on the listen socket even with one thread, so that
                           several servers (for example one per scheduler of the caller's, each
                           with o->sched) can listen on one port; the kernel spreads new
                           connections over them. Default false (set only with threads > 1) */
} coho_server_opts_t;

/* Fills `o` with the defaults listed above. Any context. */
COHO_API void coho_server_opts_init(coho_server_opts_t *o);

/* A connection's handler: runs in a coroutine of its own on the thread that accepted it. When
 * it returns, the connection stops reading, its queued frames leave (up to linger_ms) and the
 * socket closes; `c` is then gone. */
typedef void (*coho_conn_handler_t)(coho_conn_t *c, void *user);

/* Listens on `host_port` ("127.0.0.1:7000", "[::1]:0", ":7000" for every address; port 0
 * picks one: coho_server_port) and runs `handler(c, user)` in a new coroutine for every
 * accepted connection. NULL `o`: defaults. Out of fds, a new connection is accepted with the
 * help of a reserve fd and closed (counted in rejected_fds); any other accept failure backs off
 * (1 ms doubling to 100 ms); the listeners stop only in coho_server_stop. Any thread (with
 * o->sched: that scheduler's thread). Returns NULL with errno EINVAL (bad options, address or
 * CIDR), EADDRINUSE, ENOMEM, or the socket, bind or thread error. */
COHO_API coho_server_t *coho_server_start(const char *host_port, const coho_server_opts_t *o,
                                          coho_conn_handler_t handler, void *user);

/* The bound port (host order), or -1 with EINVAL. Any thread. */
COHO_API int coho_server_port(const coho_server_t *s);

/* Stops `s` and frees it. Accepting stops at once; every connection's pending and later
 * read_frame fails with ESHUTDOWN, so handlers can say goodbye (sends still work) and return;
 * after `drain_ms` (< 0: no limit) the connections left are shut down and their handlers
 * cancelled (their blocking calls fail with ECANCELED). Returns when every handler has
 * returned and the server's threads have ended. Inside a coroutine it parks; on a plain thread
 * it blocks. Errors: EDEADLK (called from a handler of `s`, or, for a server on o->sched, on
 * that scheduler's thread outside a coroutine, where blocking would stall the server). */
COHO_API int coho_server_stop(coho_server_t *s, int64_t drain_ms);

/* Replaces the allow and deny lists (see coho_server_opts_t); connections already open stay.
 * Any thread. Errors: EINVAL (a bad CIDR: nothing changes), ENOMEM. */
COHO_API int coho_server_set_acl(coho_server_t *s, const char *const *allow, unsigned allow_count,
                                 const char *const *deny, unsigned deny_count);

/* Counters of a server, all threads summed (monotonic except conns_open). */
typedef struct coho_server_stats {
    uint64_t accepted;          /* connections handed to a handler */
    uint64_t conns_open;        /* connections alive now */
    uint64_t rejected_max;      /* shed: max_conns reached */
    uint64_t rejected_per_ip;   /* shed: per_ip_max reached */
    uint64_t rejected_acl;      /* shed: denied by the allow/deny lists */
    uint64_t rejected_fds;      /* shed: out of fds (EMFILE/ENFILE) */
    uint64_t rejected_other;    /* shed: out of memory or coroutines */
    uint64_t accept_errors;     /* accept failures backed off from */
    uint64_t bytes_in;          /* read from sockets */
    uint64_t bytes_out;         /* written to sockets */
    uint64_t frames_in;         /* frames handed out by read_frame */
    uint64_t frames_out;        /* frames written whole */
    uint64_t queue_full_closes; /* connections closed at their send-queue bound */
    uint64_t idle_kicks;        /* connections kicked for idle_ms without a frame */
    uint64_t rate_limited;      /* read_frame calls failed with EDQUOT */
    uint64_t protocol_errors;   /* oversize or malformed frames, EOF inside a frame */
    uint64_t send_stale;        /* sends to departed connections (ENOTCONN), broadcasts
                                   included */
} coho_server_stats_t;

/* Copies the counters. Any thread. Errors: EINVAL. */
COHO_API int coho_server_get_stats(const coho_server_t *s, coho_server_stats_t *out);

/* ---- connections ------------------------------------------------------------------------------
 */

/* Reads the next whole frame into `out` (an initialised cbuf; its previous contents are
 * dropped) and returns its length. 0 when the peer closed between frames. Parks until a frame
 * is in. After read_budget frames in a row it yields once, so one connection flooding its
 * thread never delays the others. Only a whole frame counts as activity for idle_ms.
 * In the connection's handler coroutine. Errors: EMSGSIZE (a frame longer than max_frame),
 * EPROTO (malformed), ECONNRESET (EOF inside a frame, or reset), EDQUOT (rate limit: the frame
 * was read and dropped; the connection stays open), ETIMEDOUT (idle kick), ESHUTDOWN (the
 * server is stopping), ECONNABORTED (closed: coho_conn_close, or the send queue overflowed),
 * ECANCELED. After any error but EDQUOT the connection reads nothing more. */
COHO_API ssize_t coho_conn_read_frame(coho_conn_t *c, coho_cbuf_t *out);

/* Copies one frame (`len` bytes, already encoded) into `c`'s send queue; the writer coroutine
 * sends it. Never parks. On `c`'s thread (any coroutine, or a post callback). Errors: ENOTCONN
 * (the connection is closing), ENOBUFS (the frame would pass the queue's bound: the connection
 * is closed and counted), ENOMEM, EINVAL. */
COHO_API int coho_conn_send(coho_conn_t *c, const void *frame, size_t len);

/* The connection's id: never 0, never reused for another connection. Any context. */
COHO_API uint64_t coho_conn_id(const coho_conn_t *c);

/* coho_conn_send by id, from any coroutine or plain thread. On the connection's own thread it
 * queues at once; from another thread the frame is copied and posted to the connection's
 * scheduler (a connection gone by then drops it, counted in send_stale). Errors: ENOTCONN (no
 * such connection now: it departed, or never was; never its successor), ENOBUFS (own thread:
 * as coho_conn_send), ENOMEM, EINVAL. */
COHO_API int coho_conn_send_to(uint64_t conn_id, const void *frame, size_t len);

/* Closes `c` for reading: its handler's pending and later read_frame fail with ECONNABORTED;
 * frames already queued still leave when the handler returns. On `c`'s thread. */
COHO_API int coho_conn_close(coho_conn_t *c);

/* Copies the peer's address into `addr` (`*len` in: its size; out: the address's). On `c`'s
 * thread. Errors: EINVAL. */
COHO_API int coho_conn_peer(const coho_conn_t *c, struct sockaddr *addr, socklen_t *len);

/* The connection's socket, for socket options; do not read, write or close it. */
COHO_API int coho_conn_fd(const coho_conn_t *c);

/* WebSocket: whether the last message read_frame returned was a text message. */
COHO_API bool coho_conn_last_is_text(const coho_conn_t *c);

/* Bytes in `c`'s send queue not yet written to the socket (the WebSocket framing of the queued
 * frames included, as send_queue_bytes counts them), so that a sender can tell that a
 * frame would pass the bound and say goodbye first (a gateway's "slow consumer" KICK). On `c`'s
 * thread. */
COHO_API size_t coho_conn_queued_bytes(const coho_conn_t *c);

/* ---- broadcast groups ------------------------------------------------------------------------ */

typedef struct coho_group coho_group_t; /* opaque; any thread */

/* Creates an empty group. Any thread. NULL + ENOMEM. */
COHO_API coho_group_t *coho_group_create(void);

/* Destroys `g`; members are not touched. Any thread, once no call on `g` is running. NULL is a
 * no-op. */
COHO_API void coho_group_destroy(coho_group_t *g);

/* Adds connection `conn_id` (of any server, on any thread). Departed members are dropped by
 * the next broadcast. Any thread. Errors: EEXIST (already a member), ENOTCONN (no such
 * connection), ENOMEM, EINVAL. */
COHO_API int coho_group_add(coho_group_t *g, uint64_t conn_id);

/* Removes `conn_id`. Any thread. Errors: ENOENT (not a member), EINVAL. */
COHO_API int coho_group_remove(coho_group_t *g, uint64_t conn_id);

/* Members now. Any thread. */
COHO_API size_t coho_group_count(const coho_group_t *g);

/* Queues one frame to every member: the bytes are copied once into a reference-counted frame
 * that every member's queue shares; members on other threads get it through one post per
 * thread. A member whose queue overflows is closed (counted by its server); departed members
 * are removed. Never parks. Any thread. Errors: ENOMEM, EINVAL. */
COHO_API int coho_group_broadcast(coho_group_t *g, const void *frame, size_t len);

/* ---- dial --------------------------------------------------------------------------------------
 */

/* Connects a TCP socket to `host_port` ("example.com:80", "127.0.0.1:7000", "[::1]:7000"),
 * trying each address the name resolves to (hooked getaddrinfo: parks in a coroutine) until
 * one connects, within `timeout_ms` in all for the connects (-1: no limit). Returns a
 * connected, blocking fd (close-on-exec, TCP_NODELAY set as on the server side's sockets:
 * a message written in one call leaves at once) owned by the caller, or -1 with errno ETIMEDOUT,
 * EHOSTUNREACH (the name does not resolve), EINVAL (bad host_port), or the last connect error
 * (ECONNREFUSED, ...). Any context. */
COHO_API int coho_dial(const char *host_port, int64_t timeout_ms);

COHO_EXTERN_C_END

#endif /* COHO_NET_H */
