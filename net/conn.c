/* SPDX-License-Identifier: MIT */
/* Connections: generation ids resolved through a process-wide shard table (any thread), framed
 * reads with a per-connection budget and token bucket, bounded send queues of shared frames
 * drained by a writer coroutine, the idle sweeper (one heap per shard, no timer operation per
 * frame), and cross-thread delivery by posts to the owning scheduler. */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "net/internal.h"

_Static_assert(offsetof(struct coho_conn, q_off) + sizeof(size_t) <= 64,
               "the send path's fields fit the connection's first cache line");

#define READ_CHUNK 16384 /* bytes a read asks for inside a frame */
#define READ_IDLE  4096  /* bytes a read asks for between frames */
#define WRITE_IOV  64
#define QUEUE_CAP0 8

/* ---- the shard table ----------------------------------------------------------------------- */

/* Each entry's mutex guards its pointer: a cross-thread sender holds it while it reads a slot
 * and posts, and a shard leaves the table under it before its memory or scheduler go away. */
static struct shard_ref {
    pthread_mutex_t mu;
    coho__shard_t *sh;
    uint32_t epoch;
} shard_tab[COHO__SHARDS_MAX] = {
    [0 ... COHO__SHARDS_MAX - 1] = {PTHREAD_MUTEX_INITIALIZER, NULL, 0}};
static pthread_mutex_t shard_tab_mu = PTHREAD_MUTEX_INITIALIZER; /* allocation of entries */
static unsigned shard_next;
static _Atomic uint32_t id_gen; /* the generation part of connection ids */

int coho__shard_register(coho__shard_t *sh)
{
    int rc = -EMFILE;

    pthread_mutex_lock(&shard_tab_mu);
    for (unsigned n = 0; n < COHO__SHARDS_MAX; n++) {
        unsigned i = (shard_next + n) % COHO__SHARDS_MAX;
        struct shard_ref *r = &shard_tab[i];
        pthread_mutex_lock(&r->mu);
        if (r->sh == NULL) {
            sh->idx = i;
            sh->epoch = ++r->epoch;
            sh->thread = pthread_self();
            r->sh = sh;
            rc = 0;
        }
        pthread_mutex_unlock(&r->mu);
        if (rc == 0) {
            shard_next = i + 1;
            break;
        }
    }
    pthread_mutex_unlock(&shard_tab_mu);
    return rc;
}

void coho__shard_unregister(coho__shard_t *sh)
{
    struct shard_ref *r = &shard_tab[sh->idx];

    pthread_mutex_lock(&r->mu);
    if (r->sh == sh)
        r->sh = NULL;
    pthread_mutex_unlock(&r->mu);
}

coho__shard_t *coho__shard_here(unsigned idx)
{
    struct shard_ref *r = &shard_tab[idx % COHO__SHARDS_MAX];
    coho__shard_t *sh;

    pthread_mutex_lock(&r->mu);
    sh = r->sh;
    if (sh != NULL && !pthread_equal(sh->thread, pthread_self()))
        sh = NULL;
    pthread_mutex_unlock(&r->mu);
    return sh; /* only its own thread frees it */
}

static coho__slot_t *slot_at(coho__shard_t *sh, uint32_t slot)
{
    coho__slot_t *chunk;

    if (slot >= COHO__SLOT_CHUNK * COHO__SLOT_CHUNKS)
        return NULL;
    chunk = atomic_load_explicit(&sh->chunks[slot / COHO__SLOT_CHUNK], memory_order_acquire);
    return chunk ? &chunk[slot % COHO__SLOT_CHUNK] : NULL;
}

/* Whether `id` names a live connection of `sh`; any thread holding the table entry's lock. */
static bool slot_is_live(coho__shard_t *sh, uint64_t id)
{
    coho__slot_t *s = slot_at(sh, coho__id_slot(id));

    return s != NULL && atomic_load_explicit(&s->id, memory_order_acquire) == id;
}

struct coho_conn *coho__conn_lookup(coho__shard_t *sh, uint64_t id)
{
    coho__slot_t *s = slot_at(sh, coho__id_slot(id));

    if (s == NULL || atomic_load_explicit(&s->id, memory_order_relaxed) != id)
        return NULL;
    return s->conn;
}

static int slot_alloc(coho__shard_t *sh, struct coho_conn *c)
{
    uint32_t slot;
    coho__slot_t *s;
    uint32_t gen;

    if (sh->free_head != 0) {
        slot = sh->free_head - 1;
        s = slot_at(sh, slot);
        sh->free_head = s->next_free;
    } else {
        slot = sh->slots_used;
        if (slot >= COHO__SLOT_CHUNK * COHO__SLOT_CHUNKS)
            return -EMFILE;
        if (slot % COHO__SLOT_CHUNK == 0) {
            coho__slot_t *chunk = calloc(COHO__SLOT_CHUNK, sizeof(*chunk));
            if (chunk == NULL)
                return -ENOMEM;
            atomic_store_explicit(&sh->chunks[slot / COHO__SLOT_CHUNK], chunk,
                                  memory_order_release);
        }
        sh->slots_used++;
        s = slot_at(sh, slot);
    }
    do {
        gen = atomic_fetch_add_explicit(&id_gen, 1, memory_order_relaxed) + 1;
    } while (gen == 0);
    c->id = ((uint64_t)gen << 32) | ((uint64_t)sh->idx << COHO__SLOT_BITS) | slot;
    s->conn = c;
    atomic_store_explicit(&s->id, c->id, memory_order_release);
    return 0;
}

static void slot_free(coho__shard_t *sh, uint64_t id)
{
    uint32_t slot = coho__id_slot(id);
    coho__slot_t *s = slot_at(sh, slot);

    atomic_store_explicit(&s->id, 0, memory_order_release);
    s->conn = NULL;
    s->next_free = sh->free_head;
    sh->free_head = slot + 1;
}

/* ---- the idle heap --------------------------------------------------------------------------- */

static void heap_set(coho__shard_t *sh, size_t i, struct coho_conn *c)
{
    sh->heap[i] = c;
    c->heap_idx = i;
}

static void heap_up(coho__shard_t *sh, size_t i)
{
    struct coho_conn *c = sh->heap[i];

    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (sh->heap[p]->deadline_ms <= c->deadline_ms)
            break;
        heap_set(sh, i, sh->heap[p]);
        i = p;
    }
    heap_set(sh, i, c);
}

static void heap_down(coho__shard_t *sh, size_t i)
{
    struct coho_conn *c = sh->heap[i];

    for (;;) {
        size_t l = 2 * i + 1, m = i;
        int64_t best = c->deadline_ms;
        if (l < sh->heap_len && sh->heap[l]->deadline_ms < best)
            m = l, best = sh->heap[l]->deadline_ms;
        if (l + 1 < sh->heap_len && sh->heap[l + 1]->deadline_ms < best)
            m = l + 1;
        if (m == i)
            break;
        heap_set(sh, i, sh->heap[m]);
        i = m;
    }
    heap_set(sh, i, c);
}

static int heap_push(coho__shard_t *sh, struct coho_conn *c)
{
    if (sh->heap_len == sh->heap_cap) {
        size_t cap = sh->heap_cap ? sh->heap_cap * 2 : 64;
        struct coho_conn **h = realloc(sh->heap, cap * sizeof(*h));
        if (h == NULL)
            return -ENOMEM;
        sh->heap = h;
        sh->heap_cap = cap;
    }
    heap_set(sh, sh->heap_len++, c);
    heap_up(sh, c->heap_idx);
    return 0;
}

static void heap_remove(coho__shard_t *sh, struct coho_conn *c)
{
    size_t i = c->heap_idx;

    if (i == SIZE_MAX)
        return;
    c->heap_idx = SIZE_MAX;
    if (--sh->heap_len == i)
        return;
    struct coho_conn *last = sh->heap[sh->heap_len];
    heap_set(sh, i, last);
    heap_down(sh, i);
    heap_up(sh, last->heap_idx);
}

/* One coroutine per shard. A frame only stamps last_ms; the sweeper sleeps until the earliest
 * deadline in the heap and, at it, either kicks the connection or moves its deadline to
 * last_ms + idle_ms (the remainder). New connections never come before the heap's top (their
 * deadline is now + idle_ms, every other one is some earlier stamp + idle_ms), so nothing
 * needs to wake the sweeper early. */
void coho__sweeper_main(void *arg)
{
    coho__shard_t *sh = arg;
    int64_t idle = (int64_t)sh->srv->o.idle_ms;

    while (!sh->stopping) {
        struct coho_conn *top;
        int64_t now, expire;

        if (sh->heap_len == 0) {
            sh->sweeper_idle = true;
            int rc = coho_sem_wait(&sh->sweep_wake);
            sh->sweeper_idle = false;
            if (rc != 0)
                break;
            continue;
        }
        now = coho__net_now_ms();
        top = sh->heap[0];
        if (top->deadline_ms > now) {
            if (coho_sleep_ms((uint64_t)(top->deadline_ms - now)) != 0)
                break;
            continue;
        }
        /* +1: stamps are whole milliseconds rounded down, so a kick is never early. */
        expire = top->last_ms + idle + 1;
        if (expire <= now) {
            heap_remove(sh, top);
            COHO__STAT_ADD(sh->srv, idle_kicks, 1);
            coho__conn_stop_reading(top, ETIMEDOUT);
        } else {
            top->deadline_ms = expire;
            heap_down(sh, 0);
        }
    }
    sh->sweeper_co = 0; /* the accept coroutine waits for this before the shard goes */
}

/* ---- send queues ----------------------------------------------------------------------------- */

static void queue_pop_bytes(struct coho_conn *c, size_t n)
{
    coho_server_t *srv = c->sh->srv;
    uint64_t whole = 0;

    c->q_bytes -= n;
    while (n > 0) {
        coho__frame_t *f = c->q[c->q_head];
        size_t left = f->len - c->q_off;
        if (n < left) {
            c->q_off += n;
            break;
        }
        n -= left;
        c->q_off = 0;
        c->q[c->q_head] = NULL;
        c->q_head = (c->q_head + 1) % c->q_cap;
        c->q_count--;
        coho__frame_unref(f);
        whole++;
    }
    /* Zero-length frames at the head left with the bytes before them. */
    while (c->q_count > 0 && c->q[c->q_head]->len == 0) {
        coho__frame_unref(c->q[c->q_head]);
        c->q[c->q_head] = NULL;
        c->q_head = (c->q_head + 1) % c->q_cap;
        c->q_count--;
        whole++;
    }
    COHO__STAT_ADD(srv, frames_out, whole);
}

static void queue_drop(struct coho_conn *c)
{
    while (c->q_count > 0) {
        coho__frame_unref(c->q[c->q_head]);
        c->q[c->q_head] = NULL;
        c->q_head = (c->q_head + 1) % c->q_cap;
        c->q_count--;
    }
    c->q_bytes = 0;
    c->q_off = 0;
}

static int writer_start(struct coho_conn *c);

/* TLS: encrypt what is queued (memory only), then send the records; parks in the send. */
static int tls_write_step(struct coho_conn *c)
{
    struct iovec iov[WRITE_IOV];
    int n = 0;
    size_t len;
    char *buf;

    for (unsigned i = 0; i < c->q_count && n < WRITE_IOV; i++) {
        coho__frame_t *f = c->q[(c->q_head + i) % c->q_cap];
        size_t off = i == 0 ? c->q_off : 0;
        if (f->len == off)
            continue;
        iov[n].iov_base = f->data + off;
        iov[n].iov_len = f->len - off;
        n++;
    }
    if (c->q_count > 0)
        queue_pop_bytes(c, coho__tls_seal(c, iov, n));
    if (c->q_count == 0 && c->closing && !c->tls_bye_sent) {
        /* The handler is done and everything queued is sealed: close_notify goes last. */
        c->tls_bye_sent = true;
        coho__tls_shutdown(c);
    }
    buf = coho__tls_take(c, &len);
    if (buf == NULL)
        return c->q_count > 0 && n > 0 ? -EPROTO : 0;
    ssize_t w = sendn(c->fd, buf, len, MSG_NOSIGNAL);
    free(buf);
    if (w != (ssize_t)len)
        return -EPIPE;
    COHO__STAT_ADD(c->sh->srv, bytes_out, w);
    return 0;
}

void coho__conn_kick_writer(struct coho_conn *c)
{
    if (!c->writer_on && !c->writer_dead && !c->closing_done)
        writer_start(c);
}

static void writer_main(void *arg)
{
    struct coho_conn *c = arg;
    coho_server_t *srv = c->sh->srv;
    uint64_t tick = srv->o.flush_tick_ms;

    if (tick > 0)
        coho_sleep_ms(tick); /* what arrives meanwhile leaves in the same write */
    while ((c->q_count > 0 || coho__tls_has_pending(c) ||
            (c->ssl != NULL && c->closing && !c->tls_bye_sent)) &&
           !c->writer_dead) {
        struct iovec iov[WRITE_IOV];
        struct msghdr m;
        int n = 0;

        if (c->ssl != NULL) {
            if (tls_write_step(c) < 0) {
                c->writer_dead = true;
                break;
            }
            continue;
        }

        for (unsigned i = 0; i < c->q_count && n < WRITE_IOV; i++) {
            coho__frame_t *f = c->q[(c->q_head + i) % c->q_cap];
            size_t off = i == 0 ? c->q_off : 0;
            if (f->len == off)
                continue;
            iov[n].iov_base = f->data + off;
            iov[n].iov_len = f->len - off;
            n++;
        }
        if (n == 0) {
            queue_pop_bytes(c, 0);
            continue;
        }
        memset(&m, 0, sizeof(m));
        m.msg_iov = iov;
        m.msg_iovlen = (size_t)n;
        /* A blocking send parks this coroutine until every byte went (the hooks' stream
         * semantics); the iovecs point into frames the queue keeps referenced meanwhile. */
        ssize_t w = sendmsg(c->fd, &m, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            c->writer_dead = true;
            break;
        }
        COHO__STAT_ADD(srv, bytes_out, w);
        queue_pop_bytes(c, (size_t)w);
        if (tick > 0 && c->q_count > 0 && !c->writer_dead)
            coho_sleep_ms(tick);
    }
    if (c->writer_dead) {
        queue_drop(c);
        coho__conn_stop_reading(c, ECONNABORTED);
    }
    c->writer_on = false;
    if (c->handler_done)
        coho_sem_post(&c->done);
}

static int writer_start(struct coho_conn *c)
{
    coho_spawn_opts_t so;

    coho_spawn_opts_init(&so);
    so.detached = true;
    so.name = "net-writer";
    if (coho_spawn_ex(c->sh->sched, writer_main, c, &so) == 0)
        return -errno;
    c->writer_on = true;
    return 0;
}

int coho__conn_enqueue(struct coho_conn *c, coho__frame_t *f)
{
    if (c->ws) {
        /* Encoded once per frame, whatever the number of WebSocket recipients. */
        coho__frame_t *twin = coho__ws_twin(f, c->sh->srv->o.ws_text);
        if (twin == NULL)
            return -ENOMEM;
        f = twin;
    }
    return coho__conn_enqueue_raw(c, f);
}

/* Ends both directions of `c`'s socket: the handler's reads fail with `err` from now on (as
 * coho__conn_stop_reading, whose SHUT_RD this SHUT_RDWR includes: one system call, which counts
 * when a thousand stalled members reach their bound in the same broadcast). */
static void conn_cut(struct coho_conn *c, int err)
{
    if (c->close_err == 0)
        c->close_err = err;
    shutdown(c->fd, SHUT_RDWR);
}

/* A frame that could not be queued after part of it went out directly: the stream is cut
 * mid-frame, so the connection ends (as when a write fails). Returns `rc`. */
static int enqueue_broken(struct coho_conn *c, size_t sent, int rc)
{
    if (sent > 0) {
        c->writer_dead = true;
        conn_cut(c, ECONNABORTED);
    }
    return rc;
}

/* Whether a frame of `len` bytes may go straight to the socket: nothing queued, no writer, no
 * TLS, no flush tick, and no unread frame of the peer (while its next frames are already read,
 * as with pipelined requests, replies queue instead, so the writer sends them together). */
static bool direct_ok(const struct coho_conn *c, size_t len)
{
    return c->q_count == 0 && !c->writer_on && c->ssl == NULL && c->sh->srv->o.flush_tick_ms == 0 &&
           len > 0 && coho_cbuf_len(&c->rbuf) == 0;
}

/* One send with MSG_DONTWAIT (the hooks never park). Returns the bytes the socket took (0 when
 * it is full), or -1 when the send failed: the connection is then done, as when the writer's
 * send fails, and the frame is lost. */
static ssize_t direct_send(struct coho_conn *c, const void *data, size_t len)
{
    coho_server_t *srv = c->sh->srv;
    ssize_t w;

    do
        w = send(c->fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (w < 0 && errno == EINTR);
    if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        c->writer_dead = true;
        coho__conn_stop_reading(c, ECONNABORTED);
        return -1;
    }
    if (w > 0)
        COHO__STAT_ADD(srv, bytes_out, w);
    if (w == (ssize_t)len)
        COHO__STAT_ADD(srv, frames_out, 1);
    return w > 0 ? w : 0;
}

/* Whether the queue bound lets one more frame of `len` bytes in. */
static bool queue_has_room(const struct coho_conn *c, size_t len)
{
    const coho_server_t *srv = c->sh->srv;

    return c->q_count + 1 <= srv->o.send_queue_frames &&
           c->q_bytes + len <= srv->o.send_queue_bytes;
}

static int enqueue_rest(struct coho_conn *c, coho__frame_t *f, size_t sent);

int coho__conn_enqueue_raw(struct coho_conn *c, coho__frame_t *f)
{
    coho_server_t *srv = c->sh->srv;
    size_t sent = 0;

    if (c->closing || c->writer_dead)
        return -ENOTCONN;
    if (!queue_has_room(c, f->len)) {
        /* The bound: close this connection, never hold the sender up. A writer in progress
         * holds iovecs into the queue, so it drops the queue when its send fails. */
        COHO__STAT_ADD(srv, queue_full_closes, 1);
        c->writer_dead = true;
        conn_cut(c, ECONNABORTED);
        if (!c->writer_on)
            queue_drop(c);
        return -ENOBUFS;
    }
    if (direct_ok(c, f->len)) {
        /* Only what the socket does not take is queued: a reply on a quiet connection costs
         * one send, no writer coroutine. */
        ssize_t w = direct_send(c, f->data, f->len);

        if (w < 0 || (size_t)w == f->len)
            return 0;
        sent = (size_t)w;
    }
    return enqueue_rest(c, f, sent);
}

/* Queues frame `f` of which the first `sent` bytes already went out (directly), and makes sure
 * a writer will send the rest. Takes a reference to `f`. Returns 0 or -errno. */
static int enqueue_rest(struct coho_conn *c, coho__frame_t *f, size_t sent)
{
    if (c->q_count == c->q_cap) {
        unsigned cap = c->q_cap ? c->q_cap * 2 : QUEUE_CAP0;
        coho__frame_t **q = malloc(cap * sizeof(*q));
        if (q == NULL)
            return enqueue_broken(c, sent, -ENOMEM);
        for (unsigned i = 0; i < c->q_count; i++)
            q[i] = c->q[(c->q_head + i) % c->q_cap];
        free(c->q);
        c->q = q;
        c->q_cap = cap;
        c->q_head = 0;
    }
    if (!c->writer_on) {
        int rc = writer_start(c);
        if (rc < 0)
            return enqueue_broken(c, sent, rc);
    }
    coho__frame_ref(f);
    c->q[(c->q_head + c->q_count) % c->q_cap] = f;
    c->q_count++;
    c->q_bytes += f->len - sent;
    if (sent > 0)
        c->q_off = sent; /* the queue was empty: this frame is the head */
    return 0;
}

void coho__conn_stop_reading(struct coho_conn *c, int err)
{
    if (c->close_err == 0) {
        c->close_err = err;
        /* Wakes the handler if it is parked in a read (the socket reports RDHUP). */
        shutdown(c->fd, SHUT_RD);
    }
}

/* How many members ahead coho__conn_deliver loads a slot, and a record (from its slot, loaded
 * earlier). */
#define DELIVER_SLOT_AHEAD 8
#define DELIVER_CONN_AHEAD 4

size_t coho__conn_deliver(coho__shard_t *sh, uint64_t *ids, size_t count, coho__frame_t *f,
                          size_t *closing)
{
    struct coho_conn **lag = NULL; /* members with frames still queued: served last */
    size_t nstale = 0, nclosing = 0, nlag = 0, cap_lag = 0;

    for (size_t i = 0; i < count; i++) {
        struct coho_conn *c;
        uint64_t id = ids[i];

        if (i + DELIVER_SLOT_AHEAD < count) {
            coho__slot_t *s = slot_at(sh, coho__id_slot(ids[i + DELIVER_SLOT_AHEAD]));
            if (s != NULL)
                __builtin_prefetch(s);
        }
        if (i + DELIVER_CONN_AHEAD < count) {
            coho__slot_t *s = slot_at(sh, coho__id_slot(ids[i + DELIVER_CONN_AHEAD]));
            if (s != NULL && s->conn != NULL) {
                /* Only read: a stale pointer is harmless to a prefetch. */
                __builtin_prefetch(s->conn);
                __builtin_prefetch((const char *)s->conn + 64);
            }
        }
        c = coho__conn_lookup(sh, id);
        if (c == NULL) {
            ids[nstale++] = id;
            continue;
        }
        if (c->q_count > 0 && !c->closing && !c->writer_dead) {
            /* A member that has not taken its earlier frames (a slow reader, or one about to
             * be closed at its bound) must not delay the members that keep up: its frame is
             * queued after theirs went out. This call never parks, so `c` stays valid. */
            if (nlag == cap_lag) {
                size_t nc = cap_lag ? cap_lag * 2 : 64;
                struct coho_conn **t = realloc(lag, nc * sizeof(*t));
                if (t != NULL) {
                    lag = t;
                    cap_lag = nc;
                }
            }
            if (nlag < cap_lag) {
                lag[nlag++] = c;
                continue;
            }
        }
        if (coho__conn_enqueue(c, f) == -ENOTCONN)
            nclosing++;
    }
    for (size_t i = 0; i < nlag; i++)
        if (coho__conn_enqueue(lag[i], f) == -ENOTCONN)
            nclosing++;
    free(lag);
    if (nstale > 0)
        COHO__STAT_ADD(sh->srv, send_stale, nstale);
    if (closing != NULL)
        *closing = nclosing;
    return nstale;
}

/* ---- connection life ------------------------------------------------------------------------- */

static coho_key_t handler_key;
static pthread_once_t handler_key_once = PTHREAD_ONCE_INIT;

static void handler_key_init(void)
{
    coho_key_create(&handler_key, NULL);
}

bool coho__in_handler_of(const coho_server_t *srv)
{
    pthread_once(&handler_key_once, handler_key_init);
    return coho_self() != 0 && coho_key_get(handler_key) == srv;
}

static void conn_end(struct coho_conn *c)
{
    coho__shard_t *sh = c->sh;
    coho_server_t *srv = sh->srv;

    if (c->ws)
        coho__ws_close(c, sh->stopping ? 1001 : 1000); /* going away, or a normal end */
    c->closing = true;
    if (c->ssl != NULL && !c->writer_dead)
        coho__conn_kick_writer(c); /* it sends close_notify after what is queued */
    if (c->writer_on) {
        c->handler_done = true;
        if (coho_sem_timedwait_ms(&c->done, srv->o.linger_ms) != 0) {
            c->writer_dead = true;
            shutdown(c->fd, SHUT_RDWR);
            while (c->writer_on)
                if (coho_sem_wait(&c->done) != 0)
                    coho_yield(); /* cancelled: the writer still ends on the shutdown */
        }
    }
    queue_drop(c);
    free(c->q);
    heap_remove(sh, c);
    if (c->prev)
        c->prev->next = c->next;
    else
        sh->live = c->next;
    if (c->next)
        c->next->prev = c->prev;
    slot_free(sh, c->id);
    sh->nconns--;
    coho__server_release(srv, c->addr16);
    close(c->fd);
    coho_cbuf_destroy(&c->rbuf);
    coho_sem_destroy(&c->done);
    coho__ws_free(c);
    c->closing_done = true;
    coho__tls_free(c);
    free(c);
    if (sh->stopping)
        coho_sem_post(&sh->gone);
}

static void conn_main(void *arg)
{
    struct coho_conn *c = arg;
    coho_server_t *srv = c->sh->srv;

    coho_key_set(handler_key, srv);
    if ((srv->tls_ctx == NULL || coho__tls_accept(c) == 0) &&
        (!srv->o.websocket || coho__ws_accept(c) == 0))
        srv->handler(c, srv->user);
    coho_key_set(handler_key, NULL);
    conn_end(c);
}

int coho__conn_spawn(coho__shard_t *sh, int fd, const struct sockaddr_storage *peer,
                     socklen_t peer_len, const unsigned char addr16[16])
{
    coho_server_t *srv = sh->srv;
    struct coho_conn *c;
    coho_spawn_opts_t so;
    int rc;

    pthread_once(&handler_key_once, handler_key_init);
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        rc = -ENOMEM;
        goto fail_alloc;
    }
    c->sh = sh;
    c->fd = fd;
    /* Frames are whole messages written in one call each: Nagle would only delay them. The
     * socket has TCP_NODELAY from its listener (listen_socket in server.c). */
    c->peer = *peer;
    c->peer_len = peer_len;
    memcpy(c->addr16, addr16, 16);
    c->heap_idx = SIZE_MAX;
    c->last_ms = coho__net_now_ms();
    c->tb_ms = c->last_ms;
    c->tokens = srv->o.rate_burst;
    coho_cbuf_init(&c->rbuf, NULL);
    coho_sem_init(&c->done, 0);
    rc = slot_alloc(sh, c);
    if (rc < 0)
        goto fail_slot;
    if (srv->o.idle_ms > 0) {
        c->deadline_ms = c->last_ms + (int64_t)srv->o.idle_ms + 1;
        rc = heap_push(sh, c);
        if (rc < 0)
            goto fail_heap;
    }
    coho_spawn_opts_init(&so);
    so.detached = true;
    so.name = "net-conn";
    so.stack_size = srv->o.stack_size;
    c->handler_co = coho_spawn_ex(sh->sched, conn_main, c, &so);
    if (c->handler_co == 0) {
        rc = -errno;
        goto fail_spawn;
    }
    c->next = sh->live;
    if (sh->live)
        sh->live->prev = c;
    sh->live = c;
    sh->nconns++;
    if (sh->sweeper_idle && sh->heap_len == 1)
        coho_sem_post(&sh->sweep_wake);
    return 0;

fail_spawn:
    heap_remove(sh, c);
fail_heap:
    slot_free(sh, c->id);
fail_slot:
    coho_sem_destroy(&c->done);
    coho_cbuf_destroy(&c->rbuf);
    free(c);
fail_alloc:
    close(fd);
    return rc;
}

/* ---- reads ----------------------------------------------------------------------------------- */

static ssize_t protocol_error(struct coho_conn *c, int err)
{
    COHO__STAT_ADD(c->sh->srv, protocol_errors, 1);
    coho__conn_stop_reading(c, err);
    return -err;
}

static int take_frame(struct coho_conn *c, coho_cbuf_t *out, size_t len)
{
    struct iovec iov[16];
    size_t off = 0;

    if (coho_cbuf_truncate(out, 0) != 0)
        return -errno;
    while (off < len) {
        int n = coho_cbuf_data_iov(&c->rbuf, off, iov, 16);
        if (n <= 0)
            return -EINVAL;
        for (int i = 0; i < n && off < len; i++) {
            size_t k = iov[i].iov_len < len - off ? iov[i].iov_len : len - off;
            if (coho_cbuf_append(out, iov[i].iov_base, k) != 0)
                return -errno;
            off += k;
        }
    }
    coho_cbuf_seek(out, 0, SEEK_SET);
    return coho_cbuf_consume(&c->rbuf, len) == 0 ? 0 : -errno;
}

/* Token bucket: refilled from the clock on each frame, no timer. */
static bool rate_take(struct coho_conn *c, int64_t now)
{
    const coho_server_opts_t *o = &c->sh->srv->o;

    if (o->rate_limit == 0)
        return true;
    c->tokens += (double)(now - c->tb_ms) * o->rate_limit / 1000.0;
    c->tb_ms = now;
    if (c->tokens > o->rate_burst)
        c->tokens = o->rate_burst;
    if (c->tokens < 1.0)
        return false;
    c->tokens -= 1.0;
    return true;
}

ssize_t coho__conn_fill(struct coho_conn *c)
{
    struct iovec iov[8];
    size_t want;
    ssize_t r;
    int n;

    if (c->ssl != NULL)
        return coho__tls_fill(c);
    /* Between frames (nothing buffered) a read asks for one 4 KiB chunk: an idle connection
     * parked here holds no more than that, and small frames still arrive many to a read.
     * Inside a frame it asks for READ_CHUNK. */
    want = coho_cbuf_len(&c->rbuf) == 0 ? READ_IDLE : READ_CHUNK;
    n = coho_cbuf_reserve_iov(&c->rbuf, want, iov, 8);
    if (n < 0)
        return -errno;
    for (;;) {
        /* One span (the usual case) reads with recv: readv also copies the iovec array in and
         * takes the file position lock, which a socket does not need. */
        r = n == 1 ? recv(c->fd, iov[0].iov_base, iov[0].iov_len, 0) : readv(c->fd, iov, n);
        if (r >= 0 || errno != EINTR)
            break;
    }
    if (r < 0) {
        int err = errno;
        if (err == ECANCELED)
            return -ECANCELED;
        c->rd_eof = true;
        if (c->close_err == 0)
            c->close_err = err;
        return -err;
    }
    if (r == 0) {
        c->rd_eof = true;
        return 0;
    }
    coho_cbuf_commit(&c->rbuf, (size_t)r);
    COHO__STAT_ADD(c->sh->srv, bytes_in, r);
    if ((size_t)r < want)
        c->budget = 0; /* drained: the next read parks, the others run */
    return r;
}

/* One frame by the framer: its length, 0 at EOF, -errno. */
static ssize_t framed_read(struct coho_conn *c, coho_cbuf_t *out)
{
    coho_server_t *srv = c->sh->srv;
    const coho_tdp_framer_t *fr = &srv->framer;

    for (;;) {
        size_t have = coho_cbuf_len(&c->rbuf);
        ssize_t flen = 0, r;

        if (c->close_err != 0)
            return -c->close_err;
        if (have > 0) {
            uint64_t rid = 0;
            coho_cbuf_seek(&c->rbuf, 0, SEEK_SET);
            flen = fr->scan(&c->rbuf, &rid, fr->ctx);
            coho_cbuf_seek(&c->rbuf, 0, SEEK_SET);
            if (flen < 0)
                return protocol_error(c, EPROTO);
            if ((size_t)flen > srv->o.max_frame || (flen == 0 && have >= srv->o.max_frame))
                return protocol_error(c, EMSGSIZE);
            if (flen > 0 && have >= (size_t)flen) {
                int rc = take_frame(c, out, (size_t)flen);
                return rc < 0 ? rc : flen;
            }
        }
        if (c->rd_eof) {
            if (c->close_err != 0)
                return -c->close_err;
            if (have > 0)
                return protocol_error(c, ECONNRESET);
            return 0;
        }
        r = coho__conn_fill(c);
        if (r < 0 && (r == -ECANCELED || c->close_err == 0))
            return r; /* cancelled, or no memory: nothing recorded to report next time */
    }
}

static ssize_t read_frame(struct coho_conn *c, coho_cbuf_t *out)
{
    coho_server_t *srv = c->sh->srv;
    ssize_t flen = c->ws ? coho__ws_read(c, out) : framed_read(c, out);
    int64_t now;

    if (flen <= 0)
        return flen;
    now = coho__net_now_ms();
    COHO__STAT_ADD(srv, frames_in, 1);
    c->last_ms = now;
    if (!rate_take(c, now)) {
        COHO__STAT_ADD(srv, rate_limited, 1);
        return -EDQUOT;
    }
    if (++c->budget >= srv->o.read_budget) {
        c->budget = 0;
        coho_yield(); /* fairness: the others' turn */
    }
    return flen;
}

ssize_t coho_conn_read_frame(coho_conn_t *c, coho_cbuf_t *out)
{
    if (c == NULL || out == NULL) {
        errno = EINVAL;
        return -1;
    }
    ssize_t rc = read_frame(c, out);
    if (rc < 0) {
        errno = (int)-rc;
        return -1;
    }
    return rc;
}

/* ---- sends ----------------------------------------------------------------------------------- */

int coho_conn_send(coho_conn_t *c, const void *frame, size_t len)
{
    coho__frame_t *f;
    size_t sent = 0;
    int rc;

    if (c == NULL || (frame == NULL && len > 0))
        return coho__net_ret(-EINVAL);
    if (!c->ws && !c->closing && !c->writer_dead && queue_has_room(c, len) && direct_ok(c, len)) {
        /* The caller's bytes go straight to the socket: a frame (an allocation and a copy) is
         * made only for what the socket does not take. */
        ssize_t w = direct_send(c, frame, len);

        if (w < 0 || (size_t)w == len)
            return 0;
        sent = (size_t)w;
        f = coho__frame_make(frame, len);
        if (f == NULL)
            return coho__net_ret(enqueue_broken(c, sent, -ENOMEM));
        rc = enqueue_rest(c, f, sent);
        coho__frame_unref(f);
        return coho__net_ret(rc);
    }
    f = coho__frame_make(frame, len);
    if (f == NULL)
        return coho__net_ret(len > UINT32_MAX ? -EINVAL : -ENOMEM);
    rc = coho__conn_enqueue(c, f);
    coho__frame_unref(f);
    return coho__net_ret(rc);
}

uint64_t coho_conn_id(const coho_conn_t *c)
{
    return c ? c->id : 0;
}

int coho_conn_close(coho_conn_t *c)
{
    if (c == NULL)
        return coho__net_ret(-EINVAL);
    coho__conn_stop_reading(c, ECONNABORTED);
    return 0;
}

int coho_conn_peer(const coho_conn_t *c, struct sockaddr *addr, socklen_t *len)
{
    if (c == NULL || addr == NULL || len == NULL)
        return coho__net_ret(-EINVAL);
    memcpy(addr, &c->peer, *len < c->peer_len ? *len : c->peer_len);
    *len = c->peer_len;
    return 0;
}

int coho_conn_fd(const coho_conn_t *c)
{
    return c ? c->fd : -1;
}

bool coho_conn_last_is_text(const coho_conn_t *c)
{
    return c != NULL && c->last_text;
}

size_t coho_conn_queued_bytes(const coho_conn_t *c)
{
    return c != NULL ? c->q_bytes : 0;
}

/* A batch of ids of one shard and the frame they get, posted to that shard's scheduler. */
struct post_msg {
    unsigned idx;
    uint32_t epoch;
    coho__frame_t *f;
    size_t count;
    uint64_t ids[];
};

static void deliver_cb(void *arg)
{
    struct post_msg *m = arg;
    struct shard_ref *r = &shard_tab[m->idx];
    coho__shard_t *sh;

    pthread_mutex_lock(&r->mu);
    sh = r->sh != NULL && r->epoch == m->epoch ? r->sh : NULL;
    pthread_mutex_unlock(&r->mu);
    /* This is the shard's own thread: it cannot go away while this callback runs. */
    if (sh != NULL) {
        size_t closing = 0;
        coho__conn_deliver(sh, m->ids, m->count, m->f, &closing);
        COHO__STAT_ADD(sh->srv, send_stale, closing);
    }
    coho__frame_unref(m->f);
    free(m);
}

int coho__post_frames(unsigned idx, uint64_t *ids, size_t count, coho__frame_t *f, size_t *stale)
{
    struct shard_ref *r = &shard_tab[idx % COHO__SHARDS_MAX];
    struct post_msg *m;
    size_t nstale = 0;
    int rc = 0;

    if (stale)
        *stale = 0;
    m = malloc(sizeof(*m) + count * sizeof(uint64_t));
    if (m == NULL) {
        coho__frame_unref(f);
        return -ENOMEM;
    }
    m->idx = idx % COHO__SHARDS_MAX;
    m->f = f;
    m->count = 0;
    pthread_mutex_lock(&r->mu);
    if (r->sh == NULL) {
        nstale = count; /* the whole shard is gone */
        rc = -ENOTCONN;
    } else {
        for (size_t i = 0; i < count; i++) {
            uint64_t id = ids[i];
            if (slot_is_live(r->sh, id)) {
                m->ids[m->count++] = id;
            } else {
                COHO__STAT_ADD(r->sh->srv, send_stale, 1);
                ids[nstale++] = id; /* the caller learns which departed */
            }
        }
        m->epoch = r->epoch;
        /* Once posted, `m` belongs to the callback (it may already be freed). */
        if (m->count == 0)
            rc = -ENOTCONN;
        else if (coho_sched_post(r->sh->sched, deliver_cb, m) != 0)
            rc = -errno;
    }
    pthread_mutex_unlock(&r->mu);
    if (stale)
        *stale = nstale;
    if (rc < 0) {
        coho__frame_unref(f);
        free(m);
    }
    return rc;
}

int coho_conn_send_to(uint64_t conn_id, const void *frame, size_t len)
{
    unsigned idx = coho__id_shard(conn_id);
    coho__shard_t *sh;
    coho__frame_t *f;
    int rc;

    if (conn_id == 0 || (frame == NULL && len > 0))
        return coho__net_ret(conn_id == 0 ? -ENOTCONN : -EINVAL);
    sh = coho__shard_here(idx);
    if (sh != NULL) {
        struct coho_conn *c = coho__conn_lookup(sh, conn_id);
        if (c == NULL) {
            COHO__STAT_ADD(sh->srv, send_stale, 1);
            return coho__net_ret(-ENOTCONN);
        }
        return coho_conn_send(c, frame, len);
    }
    f = coho__frame_make(frame, len);
    if (f == NULL)
        return coho__net_ret(len > UINT32_MAX ? -EINVAL : -ENOMEM);
    rc = coho__post_frames(idx, &conn_id, 1, f, NULL);
    return coho__net_ret(rc);
}
