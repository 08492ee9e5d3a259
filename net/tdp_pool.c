/* SPDX-License-Identifier: MIT */
/* socket_ext pools: options, creation (connect, listen), the keeper coroutine of each connect
 * slot, the accept coroutine of a listen pool, connections joining and leaving, user callbacks,
 * pick, close and stats. The records are in tdp_internal.h. */
#define _GNU_SOURCE /* SOCK_CLOEXEC, SOCK_NONBLOCK */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/tdp_internal.h"

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

/* A pool coroutine starts / ends. */
static void pool_co_enter(coho_tdp_pool_t *p)
{
    p->refs++;
    p->cos++;
}

void coho__tdp_pool_co_exit(coho_tdp_pool_t *p)
{
    p->cos--;
    coho__tdp_pool_unref(p);
}

/* The last reference went: frees the pool. */
void coho__tdp_pool_free(coho_tdp_pool_t *p)
{
    coho__tdp_pending_destroy(p);
    while (p->reqs_idle != NULL) {
        struct tdp_req *r = p->reqs_idle;

        p->reqs_idle = r->idle_next;
        if (r->frame_live)
            coho_cbuf_destroy(&r->pub.frame);
        free(r);
    }
    while (p->wq_spares > 0)
        free(p->wq_spare[--p->wq_spares]);
    coho_idpool_destroy(p->conns);
    coho__net_acceptor_destroy(&p->acc);
    free(p->slots);
    free(p->keepers);
    free(p);
}

static void wake_up_waiters(coho_tdp_pool_t *p, int result)
{
    coho_list_t *pos;

    while ((pos = coho_list_pop_front(&p->up_waiters)) != NULL) {
        struct tdp_waiter *w = coho_list_entry(pos, struct tdp_waiter, link);

        coho__park_wake(w->co_id, w->token, result);
    }
}

/* User callbacks run in the pool's coroutines. Each call is recorded (a frame on the caller's
 * stack), so that coho_tdp_close called from inside one does not wait for its own coroutine to
 * end. */
struct tdp_cb_frame {
    coho_list_t link;
    uint64_t co_id;
};

static void cb_enter(coho_tdp_pool_t *p, struct tdp_cb_frame *f)
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
        if (coho_list_entry(pos, struct tdp_cb_frame, link)->co_id == self)
            return true;
    }
    return false;
}

static void cb_conn_new(coho_tdp_pool_t *p, uint64_t id)
{
    struct tdp_cb_frame f;

    cb_enter(p, &f);
    p->o.on_conn_new(p, id, p->o.user);
    coho_list_del(&f.link);
}

static void cb_conn_delete(coho_tdp_pool_t *p, uint64_t id, int err)
{
    struct tdp_cb_frame f;

    cb_enter(p, &f);
    p->o.on_conn_delete(p, id, err, p->o.user);
    coho_list_del(&f.link);
}

void coho__tdp_cb_req(coho_tdp_pool_t *p, coho_tdp_req_t *rq)
{
    struct tdp_cb_frame f;

    cb_enter(p, &f);
    p->o.on_req(rq, p->o.user);
    coho_list_del(&f.link);
}

/* A new connection joins the pool. Returns its id, or 0 (ENOMEM: the fd is closed). */
static uint64_t conn_add(coho_tdp_pool_t *p, int fd, unsigned slot)
{
    struct tdp_conn *c;
    uint64_t id = coho_idpool_alloc(p->conns, (void **)&c);

    if (id == 0) {
        close(fd);
        return 0;
    }
    c->id = id;
    c->fd = fd;
    c->slot = slot;
    coho_cbuf_init(&c->rbuf, NULL);
    coho_list_init(&c->inflight);
    c->wq = NULL;
    c->wq_len = c->wq_cap = 0;
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
void coho__tdp_conn_break(coho_tdp_pool_t *p, struct tdp_conn *c, int err)
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
        struct tdp_pending *pd = coho_list_entry(pos, struct tdp_pending, conn_link);

        if (pd->status == 0) {
            pd->status = coho__tdp_status_err(-err);
            if (pd->co_id != 0)
                coho__park_wake(pd->co_id, pd->token, 0);
        }
    }
    while ((pos = coho_list_pop_front(&c->wwaiters)) != NULL) {
        struct tdp_waiter *w = coho_list_entry(pos, struct tdp_waiter, link);

        coho__park_wake(w->co_id, w->token, -ENOTCONN);
    }
    if (c->room_co != 0) /* the receive coroutine, parked for backpressure: it ends */
        coho__park_wake(c->room_co, c->room_token, 0);
    /* Senders parked on the fd or its write lock wake with EBADF at the close below. */
    shutdown(c->fd, SHUT_RDWR);
    /* A non-blocking UDP socket reports EAGAIN, not end of file, after a shutdown, so the
     * receive coroutine parked on it would never see it: cancel it instead. */
    if (p->dgram && c->rx_co != 0 && c->rx_co != coho_self())
        coho_cancel(c->rx_co);
}

/* Frees a broken connection (the receive coroutine's last step). */
void coho__tdp_conn_free(coho_tdp_pool_t *p, struct tdp_conn *c, int err)
{
    uint64_t id = c->id;

    coho__tdp_conn_break(p, c, err);
    close(c->fd);
    coho_cbuf_destroy(&c->rbuf);
    free(c->wq);
    c->wq = NULL;
    if (p->conn_cache[id & (TDP_CONN_CACHE - 1)].id == id)
        p->conn_cache[id & (TDP_CONN_CACHE - 1)].id = 0;
    coho_idpool_free(p->conns, id);
    if (p->o.on_conn_delete != NULL)
        cb_conn_delete(p, id, err);
}

static uint64_t spawn_daemon(void (*fn)(void *), void *arg, const char *name)
{
    coho_spawn_opts_t so;

    coho_spawn_opts_init(&so);
    so.daemon = true;
    so.detached = true; /* the pool counts its coroutines; nobody joins them */
    so.name = name;
    return coho_spawn_ex(coho_sched_current(), fn, arg, &so);
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

struct keeper_arg {
    coho_tdp_pool_t *p;
    unsigned slot;
};

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
        if (fd >= 0 && (p->closing || coho_is_cancelled())) {
            /* The pool was closed while this connect completed (another keeper's on_conn_new
             * may close it after this connect's completion woke this coroutine): the
             * connection is not added. */
            close(fd);
            break;
        }
        if (fd >= 0) {
            uint64_t id = conn_add(p, fd, slot);
            struct tdp_conn *c = coho__tdp_conn_find(p, id);

            if (c != NULL) {
                c->rx_co = coho_self();
                coho__tdp_conn_free(p, c, coho__tdp_rx_loop(p, c));
                backoff = p->o.reconnect_min_ms;
            }
        }
        if (p->closing || coho_sleep_ms(backoff) != 0)
            break;
        backoff = backoff * 2 > p->o.reconnect_max_ms ? p->o.reconnect_max_ms : backoff * 2;
    }
    coho__tdp_pool_co_exit(p);
}

/* Adds a connected fd (or a datagram socket) to the pool with its receive coroutine, in keeper
 * slot `slot` of a connect pool. Returns the connection id, or 0 (ENOMEM; the fd is closed). */
uint64_t coho__tdp_serve_conn(coho_tdp_pool_t *p, int fd, unsigned slot)
{
    int one = 1;
    uint64_t id;
    struct tdp_rx_arg *ra;
    struct tdp_conn *c;

    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* fails harmlessly on AF_UNIX */
    id = conn_add(p, fd, slot);
    if (id == 0)
        return 0;
    c = coho__tdp_conn_find(p, id);
    ra = malloc(sizeof(*ra));
    if (ra == NULL) {
        coho__tdp_conn_free(p, c, ENOMEM);
        return 0;
    }
    ra->p = p;
    ra->conn_id = id;
    pool_co_enter(p);
    c->rx_co = spawn_daemon(coho__tdp_rx_main, ra, "tdp-rx");
    if (c->rx_co == 0) {
        p->refs--;
        p->cos--;
        free(ra);
        coho__tdp_conn_free(p, c, ENOMEM);
        return 0;
    }
    return id;
}

/* Accept coroutine of a listen pool (coho__net_accept, net/accept.c). It ends only when the
 * pool closes its listen socket or the scheduler cancels it as it shuts down: out of fds, a
 * queued connection is shed with the reserve fd (counted in conns_rejected) and nothing queued
 * means a wait for a connection; every other failure passes, after a backoff. */
static void accept_main(void *arg)
{
    coho_tdp_pool_t *p = arg;

    while (!p->closing) {
        int fd = coho__net_accept(&p->acc, NULL, NULL, &p->closing);

        if (fd == -ECONNREFUSED) { /* shed: out of fds */
            p->st.conns_rejected++;
            continue;
        }
        if (coho__net_accept_stops(fd))
            break;
        if (fd < 0)
            continue; /* an error that passes: coho__net_accept backed off already */
        if (p->st.conns_open >= p->o.max_conns) {
            close(fd);
            p->st.conns_rejected++;
            continue;
        }
        coho__tdp_serve_conn(p, fd, 0);
    }
    coho__tdp_pool_co_exit(p);
}

coho_tdp_pool_t *coho__tdp_pool_create(int mode, const struct sockaddr *addr, socklen_t addrlen,
                                       const coho_tdp_opts_t *o, int *err)
{
    coho_tdp_pool_t *p;
    unsigned i;

    if (coho_sched_current() == NULL || coho_self() == 0) {
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
    p->acc.lfd = -1;
    p->acc.reserve_fd = -1;
    p->refs = 1;
    coho_list_init(&p->conns_live);
    coho_list_init(&p->up_waiters);
    coho_list_init(&p->cb_frames);
    p->conns = coho_idpool_create(sizeof(struct tdp_conn), 64, 0);
    if (p->conns == NULL)
        goto fail_conns;
    coho__tdp_id_keys_init(p);
    p->sock_only = o->framer_count == 1 && coho__sock_is_framer(o->framers[0]);
    return p;
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

    p = coho__tdp_pool_create(TDP_CONNECT, addr, addrlen, o, &err);
    if (p == NULL) {
        errno = err;
        return NULL;
    }
    p->slots = calloc(o->conn_count, sizeof(*p->slots));
    p->keepers = calloc(o->conn_count, sizeof(*p->keepers));
    if (p->slots == NULL || p->keepers == NULL) {
        coho__tdp_pool_unref(p);
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

    p = coho__tdp_pool_create(TDP_LISTEN, addr, addrlen, o, &err);
    if (p == NULL) {
        errno = err;
        return NULL;
    }
    /* Non-blocking: the accept loop waits with poll (net/accept.c). */
    p->listen_fd = socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
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
    coho__net_acceptor_init(&p->acc, p->listen_fd);
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
    coho__tdp_pool_unref(p);
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
    coho__tdp_pool_ref(p); /* on_conn_new runs in this coroutine, and may park or close the pool */
    id = coho__tdp_serve_conn(p, fd, 0);
    coho__tdp_pool_unref(p);
    if (id == 0)
        errno = ENOMEM;
    return id;
}

uint16_t coho_tdp_local_port(const coho_tdp_pool_t *p)
{
    return p != NULL ? p->port : 0;
}

static void pending_cancel_one(coho_tdp_pool_t *p, struct tdp_pending *pd)
{
    (void)p;
    if (pd->status == 0) {
        pd->status = coho__tdp_status_err(-ECANCELED);
        if (pd->co_id != 0)
            coho__park_wake(pd->co_id, pd->token, 0);
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
    coho__tdp_pending_for_each(p, pending_cancel_one);
    coho_list_for_each_safe(pos, tmp, &p->conns_live)
    {
        coho__tdp_conn_break(p, coho_list_entry(pos, struct tdp_conn, link), ECANCELED);
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
    coho__tdp_pool_unref(p);
    return 0;
}

/* coho_tdp_pick's loop. Returns 0 with the connection's id in *id, or -errno. */
static int pick_conn(coho_tdp_pool_t *p, int64_t timeout_ms, uint64_t *id)
{
    for (;;) {
        struct tdp_waiter w;
        int rc;

        if (p->closing)
            return -ESHUTDOWN;
        if (p->mode == TDP_CONNECT) {
            unsigned i, n = p->o.conn_count, k = p->rr < n ? p->rr : 0;

            /* Round robin from p->rr; the index wraps by comparison (a division per step cost
             * more than the rest of the pick). */
            for (i = 0; i < n; i++) {
                uint64_t cid = p->slots[k];

                k = k + 1 == n ? 0 : k + 1;
                if (coho__tdp_conn_get(p, cid) != NULL) {
                    p->rr = k;
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
        w.token = coho__park_prepare();
        coho__park_note("tdp connection of pool@", (int64_t)(intptr_t)p);
        coho_list_push_back(&p->up_waiters, &w.link);
        rc = coho__park(timeout_ms);
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
    if (p->mode == TDP_CONNECT && !p->closing) {
        /* The usual case, without the reference a park needs: the next slot's connection is
         * up. */
        unsigned k = p->rr < p->o.conn_count ? p->rr : 0;
        uint64_t cid = p->slots[k];

        if (coho__tdp_conn_get(p, cid) != NULL) {
            p->rr = k + 1 == p->o.conn_count ? 0 : k + 1;
            return cid;
        }
    }
    coho__tdp_pool_ref(p);
    rc = pick_conn(p, timeout_ms, &id);
    coho__tdp_pool_unref(p);
    if (rc < 0) {
        errno = -rc;
        return 0;
    }
    return id;
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

int coho_tdp_get_stats(const coho_tdp_pool_t *p, coho_tdp_stats_t *out)
{
    if (p == NULL || out == NULL) {
        errno = EINVAL;
        return -1;
    }
    *out = p->st;
    return 0;
}
