/* SPDX-License-Identifier: MIT */
/* net/ internals shared by its files: servers, shards (one per server thread), connections,
 * shared frames, the process-wide shard table that resolves connection ids from any thread.
 * net/ uses only the public coho API (include/coho.h); see net/README.md. */
#ifndef COHO_NET_INTERNAL_H
#define COHO_NET_INTERNAL_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/uio.h>

#include <coho.h>
#include <coho/net.h>

/* ---- errors: internal functions return -errno; the public boundary sets errno ---------- */

static inline int coho__net_ret(int rc)
{
    if (rc < 0) {
        errno = -rc;
        return -1;
    }
    return rc;
}

/* Monotonic milliseconds. */
int64_t coho__net_now_ms(void);

/* ---- shared frames ------------------------------------------------------------------------ */

/* A frame queued to one or many connections: bytes copied once, freed by the last queue. */
typedef struct coho__frame {
    atomic_uint refs;
    uint32_t len;
    _Atomic(struct coho__frame *) ws; /* the same bytes as one WebSocket message, made once
                                         by the first WebSocket recipient; owned by this frame */
    unsigned char data[];
} coho__frame_t;

coho__frame_t *coho__frame_make(const void *data, size_t len); /* refs 1; NULL: ENOMEM */
void coho__frame_ref(coho__frame_t *f);
void coho__frame_unref(coho__frame_t *f);

/* ---- access lists --------------------------------------------------------------------------- */

typedef struct coho__cidr {
    unsigned char addr[16]; /* IPv4 as ::ffff:a.b.c.d */
    unsigned prefix;        /* 0..128 (IPv4 prefixes + 96) */
} coho__cidr_t;

typedef struct coho__acl {
    coho__cidr_t *allow;
    unsigned allow_count;
    coho__cidr_t *deny;
    unsigned deny_count;
} coho__acl_t;

/* Parses the lists into a new acl (*out; NULL when both are empty). -EINVAL, -ENOMEM. */
int coho__acl_make(const char *const *allow, unsigned allow_count, const char *const *deny,
                   unsigned deny_count, coho__acl_t **out);
void coho__acl_destroy(coho__acl_t *a);
/* Whether `addr16` (an address in the ::ffff: form for IPv4) may connect. NULL acl: yes. */
bool coho__acl_admits(const coho__acl_t *a, const unsigned char addr16[16]);
/* The 16-byte form of a socket address; false for a family that is not IPv4/IPv6. */
bool coho__addr16(const struct sockaddr *sa, unsigned char out[16]);
/* Parses one CIDR or bare address. -EINVAL. */
int coho__cidr_parse(const char *s, coho__cidr_t *out);

/* ---- servers, shards, connections --------------------------------------------------------- */

#define COHO__SHARDS_MAX  1024u /* shard table size: 10 bits of a connection id */
#define COHO__SLOT_BITS   22u
#define COHO__SLOT_CHUNK  1024u
#define COHO__SLOT_CHUNKS 1024u /* 1M connections per shard */

struct coho__shard;

/* One connection slot: the id of its tenant (atomic: read from any thread for staleness). */
typedef struct coho__slot {
    _Atomic uint64_t id; /* 0 when free */
    struct coho_conn *conn;
    uint32_t next_free;
} coho__slot_t;

struct coho_conn {
    /* What a send touches comes first, in the first 64 bytes (two cache lines at most, one when
     * malloc's 16-byte alignment falls on a line): a broadcast visits every member. */
    uint64_t id;
    struct coho__shard *sh;
    int fd;
    bool closing;     /* the handler returned: no more sends */
    bool writer_dead; /* a write failed: the queue only drops */
    bool writer_on;   /* a writer coroutine exists */
    bool ws;          /* upgraded: read_frame returns messages, sends go out as messages */
    /* send queue: a ring of shared frames; the head is sent from byte q_off on */
    unsigned q_cap, q_head, q_count;
    struct ssl_st *ssl; /* TLS (tls.c): memory BIOs, moved by this connection's coroutines */
    size_t q_bytes;     /* unsent bytes */
    size_t q_off;
    coho__frame_t **q;
    coho_cbuf_t rbuf;
    struct sockaddr_storage peer;
    socklen_t peer_len;
    unsigned char addr16[16];
    uint64_t handler_co;
    int close_err;     /* what read_frame reports once reading stopped (0: still reading) */
    bool rd_eof;       /* the socket's read side ended (EOF, error or our shutdown) */
    bool handler_done; /* the handler waits on `done` for the writer */
    bool closing_done; /* being freed: nothing may start a writer */
    unsigned budget;   /* frames read since the last yield */
    coho_sem_t done;   /* posted by the writer when it ends while the handler waits */
    /* idle */
    int64_t last_ms;     /* last whole frame received (or the accept) */
    int64_t deadline_ms; /* the sweeper's key: when to look again */
    size_t heap_idx;     /* in the shard's idle heap, SIZE_MAX when out */
    /* token bucket */
    double tokens;
    int64_t tb_ms;
    /* WebSocket (ws.c) */
    bool ws_close_sent; /* a close frame is queued */
    bool ws_cancelled;  /* the read under wslay was cancelled */
    bool last_text;     /* the last message read was text */
    void *wsctx;        /* wslay_frame_context_ptr */
    bool tls_bye_sent;  /* close_notify sealed (the writer does it once the handler is done) */
    /* in the shard's live list */
    struct coho_conn *prev, *next;
};

typedef struct coho__shard {
    struct coho_server *srv;
    unsigned idx;
    uint32_t epoch;
    coho_sched_t *sched;
    pthread_t thread; /* the shard's scheduler thread (set when it registers) */
    pthread_t tid;    /* own_thread: for the join */
    bool own_thread;
    int lfd;
    int reserve_fd;
    uint64_t acceptor_co;
    uint64_t sweeper_co;
    bool stopping;
    int64_t drain_ms;
    /* slots */
    coho__slot_t *_Atomic chunks[COHO__SLOT_CHUNKS];
    uint32_t free_head; /* slot index + 1; 0: none */
    uint32_t slots_used;
    /* live connections */
    struct coho_conn *live;
    unsigned nconns;
    coho_sem_t gone; /* posted whenever a connection ends while stopping */
    /* idle heap (min by deadline_ms) */
    struct coho_conn **heap;
    size_t heap_len, heap_cap;
    coho_sem_t sweep_wake;
    bool sweeper_idle; /* parked on sweep_wake: the heap was empty */
    /* start-up hand-shake of an own thread */
    int start_err;
} coho__shard_t;

struct coho_server {
    coho_server_opts_t o;
    coho_conn_handler_t handler;
    void *user;
    coho_tdp_framer_t framer;
    size_t sock_max_body;
    char *ws_path;              /* the copy o.ws_path points to */
    struct ssl_ctx_st *tls_ctx; /* o.tls_cert_file set: every connection speaks TLS */
    struct sockaddr_storage addr;
    socklen_t addr_len;
    int port;
    unsigned nshards;
    coho__shard_t **shards;
    coho_chan_t *done;  /* one int per shard when it has wound down */
    pthread_mutex_t mu; /* acl, per-IP table, open count */
    coho__acl_t *acl;
    struct ip_count *ips; /* open-addressing table keyed by addr16 */
    size_t ips_cap, ips_len;
    unsigned open;
    struct {
        _Atomic uint64_t accepted, rejected_max, rejected_per_ip, rejected_acl, rejected_fds,
            rejected_other, accept_errors, bytes_in, bytes_out, frames_in, frames_out,
            queue_full_closes, idle_kicks, rate_limited, protocol_errors, send_stale;
    } st;
};

#define COHO__STAT_ADD(srv, field, n) \
    atomic_fetch_add_explicit(&(srv)->st.field, (uint64_t)(n), memory_order_relaxed)

/* Removes the callback series read from `arg` (a server: coho_server_register_metrics) from
 * every metrics registry (metrics.c); after it returns none of them reads `arg`. */
void coho__metrics_forget(void *arg);
/* The number of callback series of `m` read from `arg`. */
size_t coho__metrics_count_fn(coho_metrics_t *m, void *arg);

/* Admission bookkeeping of a server (server.c): a connection that ends gives its place back. */
void coho__server_release(coho_server_t *srv, const unsigned char addr16[16]);
/* Whether the running coroutine is a connection handler of `srv`. */
bool coho__in_handler_of(const coho_server_t *srv);

/* The shard running on the calling thread for connection ids of shard `idx`, or NULL. */
coho__shard_t *coho__shard_here(unsigned idx);

/* Shard table: registers `sh` (sets idx and epoch), -EMFILE when full; removes it. */
int coho__shard_register(coho__shard_t *sh);
void coho__shard_unregister(coho__shard_t *sh);

/* Decodes a connection id. */
static inline unsigned coho__id_shard(uint64_t id)
{
    return (unsigned)((id >> COHO__SLOT_BITS) & (COHO__SHARDS_MAX - 1));
}
static inline uint32_t coho__id_slot(uint64_t id)
{
    return (uint32_t)(id & ((1u << COHO__SLOT_BITS) - 1));
}

/* The live connection `id` of shard `sh` (owner thread), or NULL. */
struct coho_conn *coho__conn_lookup(coho__shard_t *sh, uint64_t id);

/* Connections (conn.c): the accept path hands a socket over; the shard owns it from then on.
 * Returns 0 or -errno (the fd is closed on failure). */
int coho__conn_spawn(coho__shard_t *sh, int fd, const struct sockaddr_storage *peer,
                     socklen_t peer_len, const unsigned char addr16[16]);
/* Queues a shared frame (takes a reference of its own on success). Owner thread. 0, -ENOTCONN,
 * -ENOBUFS (the connection was closed for it). */
int coho__conn_enqueue(struct coho_conn *c, coho__frame_t *f);
/* coho__conn_enqueue without the WebSocket wrapping (bytes already encoded for the wire). */
int coho__conn_enqueue_raw(struct coho_conn *c, coho__frame_t *f);
/* One read from the socket into c->rbuf: bytes read (> 0), 0 at EOF, or -errno. Parks. */
ssize_t coho__conn_fill(struct coho_conn *c);
/* WebSocket (ws.c): the upgrade (0 or -errno, a refusal queued), one message into `out`
 * (its length, 0 at the end, -errno), a close frame with `code` (once), the twin of a frame. */
int coho__ws_accept(struct coho_conn *c);
ssize_t coho__ws_read(struct coho_conn *c, coho_cbuf_t *out);
void coho__ws_close(struct coho_conn *c, unsigned code);
coho__frame_t *coho__ws_twin(coho__frame_t *f, bool text);
void coho__ws_free(struct coho_conn *c);
/* TLS (tls.c): the server's context from its options (0 when none is asked for; -EINVAL for
 * unreadable or mismatched files); the handshake (handler's coroutine); plaintext into c->rbuf
 * (as coho__conn_fill); encryption of queued bytes into the write BIO (never parks; returns
 * the plaintext bytes taken); the ciphertext to send (malloc'd); close_notify. */
int coho__tls_ctx_make(coho_server_t *srv);
void coho__tls_ctx_free(coho_server_t *srv);
int coho__tls_accept(struct coho_conn *c);
ssize_t coho__tls_fill(struct coho_conn *c);
size_t coho__tls_seal(struct coho_conn *c, const struct iovec *iov, int n);
char *coho__tls_take(struct coho_conn *c, size_t *len);
bool coho__tls_has_pending(struct coho_conn *c);
void coho__tls_shutdown(struct coho_conn *c);
void coho__tls_free(struct coho_conn *c);
/* Starts the writer if it is not running (it also sends TLS records SSL left behind). */
void coho__conn_kick_writer(struct coho_conn *c);
/* Stops reading: the handler's read_frame fails with `err` from now on. Owner thread. */
void coho__conn_stop_reading(struct coho_conn *c, int err);
/* The shard's idle sweeper coroutine. */
void coho__sweeper_main(void *arg);

/* Queues `f` to the live ones of `count` ids of shard `sh` (its own thread), in order, each
 * member's slot and record loaded a few members ahead. The ids that name no live connection
 * (counted as send_stale) are moved to the front of `ids`; returns their number. Members that
 * are closing take nothing; their number goes to *closing (NULL: not wanted). */
size_t coho__conn_deliver(coho__shard_t *sh, uint64_t *ids, size_t count, coho__frame_t *f,
                          size_t *closing);
/* Cross-thread delivery: queues `f` to the live ones of `count` ids of shard `idx` through one
 * post to that shard's scheduler (takes one reference of `f`, whatever happens). The departed
 * ids are moved to the front of `ids`, their number in *stale (NULL: not wanted). 0, or
 * -ENOTCONN (none is live), -ENOMEM, or the post's error. */
int coho__post_frames(unsigned idx, uint64_t *ids, size_t count, coho__frame_t *f, size_t *stale);

#endif /* COHO_NET_INTERNAL_H */
