/* SPDX-License-Identifier: MIT */
/* Servers: listen sockets (one per thread, SO_REUSEPORT), the accept coroutine of each shard
 * with its reserve fd, admission (allow/deny lists, max_conns, per-IP counts), graceful stop. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/accept.h"
#include "net/internal.h"

struct ip_count {
    unsigned char addr[16];
    unsigned n; /* 0: free */
};

void coho_server_opts_init(coho_server_opts_t *o)
{
    if (o == NULL)
        return;
    memset(o, 0, sizeof(*o));
    o->threads = 1;
    o->backlog = 4096;
    o->max_conns = 10000;
    o->max_frame = 65536;
    o->framing = COHO_FRAMING_LENPFX;
    o->lenpfx.size = 4;
    o->send_queue_bytes = (size_t)1 << 20;
    o->send_queue_frames = 4096;
    o->read_budget = 16;
    o->linger_ms = 1000;
}

/* ---- per-IP counts (under srv->mu) ----------------------------------------------------------- */

static size_t ip_hash(const unsigned char a[16], size_t cap)
{
    uint64_t h = 1469598103934665603ull;

    for (int i = 0; i < 16; i++)
        h = (h ^ a[i]) * 1099511628211ull;
    return (size_t)(h & (cap - 1));
}

static struct ip_count *ip_find(coho_server_t *srv, const unsigned char a[16])
{
    if (srv->ips_cap == 0)
        return NULL;
    for (size_t i = ip_hash(a, srv->ips_cap);; i = (i + 1) & (srv->ips_cap - 1)) {
        struct ip_count *e = &srv->ips[i];
        if (e->n == 0)
            return NULL;
        if (memcmp(e->addr, a, 16) == 0)
            return e;
    }
}

static int ip_grow(coho_server_t *srv)
{
    size_t cap = srv->ips_cap ? srv->ips_cap * 2 : 64;
    struct ip_count *t = calloc(cap, sizeof(*t));

    if (t == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < srv->ips_cap; i++) {
        struct ip_count *e = &srv->ips[i];
        if (e->n == 0)
            continue;
        size_t j = ip_hash(e->addr, cap);
        while (t[j].n != 0)
            j = (j + 1) & (cap - 1);
        t[j] = *e;
    }
    free(srv->ips);
    srv->ips = t;
    srv->ips_cap = cap;
    return 0;
}

static int ip_inc(coho_server_t *srv, const unsigned char a[16])
{
    struct ip_count *e = ip_find(srv, a);

    if (e != NULL) {
        e->n++;
        return 0;
    }
    if ((srv->ips_len + 1) * 2 > srv->ips_cap && ip_grow(srv) < 0)
        return -ENOMEM;
    size_t i = ip_hash(a, srv->ips_cap);
    while (srv->ips[i].n != 0)
        i = (i + 1) & (srv->ips_cap - 1);
    memcpy(srv->ips[i].addr, a, 16);
    srv->ips[i].n = 1;
    srv->ips_len++;
    return 0;
}

static void ip_dec(coho_server_t *srv, const unsigned char a[16])
{
    struct ip_count *e = ip_find(srv, a);
    size_t i, j, mask = srv->ips_cap - 1;

    if (e == NULL || --e->n > 0)
        return;
    /* Backward-shift deletion keeps every probe chain unbroken without tombstones. */
    srv->ips_len--;
    i = (size_t)(e - srv->ips);
    for (j = (i + 1) & mask; srv->ips[j].n != 0; j = (j + 1) & mask) {
        size_t home = ip_hash(srv->ips[j].addr, srv->ips_cap);
        bool between = i <= j ? (i < home && home <= j) : (i < home || home <= j);
        if (!between) {
            srv->ips[i] = srv->ips[j];
            srv->ips[j].n = 0;
            i = j;
        }
    }
    srv->ips[i].n = 0;
}

/* ---- admission ------------------------------------------------------------------------------- */

enum { ADMIT_OK = 0, ADMIT_ACL, ADMIT_MAX, ADMIT_PER_IP, ADMIT_NOMEM };

static int admit(coho_server_t *srv, const unsigned char a[16])
{
    int verdict = ADMIT_OK;

    pthread_mutex_lock(&srv->mu);
    if (!coho__acl_admits(srv->acl, a)) {
        verdict = ADMIT_ACL;
    } else if (srv->o.max_conns != 0 && srv->open >= srv->o.max_conns) {
        verdict = ADMIT_MAX;
    } else if (srv->o.per_ip_max != 0) {
        struct ip_count *e = ip_find(srv, a);
        if (e != NULL && e->n >= srv->o.per_ip_max)
            verdict = ADMIT_PER_IP;
        else if (ip_inc(srv, a) < 0)
            verdict = ADMIT_NOMEM;
    }
    if (verdict == ADMIT_OK)
        srv->open++;
    pthread_mutex_unlock(&srv->mu);
    return verdict;
}

void coho__server_release(coho_server_t *srv, const unsigned char addr16[16])
{
    pthread_mutex_lock(&srv->mu);
    srv->open--;
    if (srv->o.per_ip_max != 0)
        ip_dec(srv, addr16);
    pthread_mutex_unlock(&srv->mu);
}

/* ---- the accept coroutine: accepts until the stop, then drains its shard ------------------- */

static void shard_drain(coho__shard_t *sh)
{
    int64_t drain = sh->drain_ms, deadline = coho__net_now_ms() + drain;

    if (sh->sweeper_co != 0)
        coho_cancel(sh->sweeper_co);
    if (sh->sweeper_idle)
        coho_sem_post(&sh->sweep_wake);
    for (struct coho_conn *c = sh->live; c != NULL; c = c->next)
        coho__conn_stop_reading(c, ESHUTDOWN);
    while (sh->nconns > 0) {
        int rc;
        if (drain < 0) {
            rc = coho_sem_wait(&sh->gone);
        } else {
            int64_t left = deadline - coho__net_now_ms();
            if (left <= 0)
                break;
            rc = coho_sem_timedwait_ms(&sh->gone, (uint64_t)left);
        }
        if (rc != 0 && errno != ETIMEDOUT)
            break;
    }
    /* Past the deadline: cut the sockets and cancel what still runs. */
    for (struct coho_conn *c = sh->live; c != NULL; c = c->next) {
        c->writer_dead = true;
        shutdown(c->fd, SHUT_RDWR);
        coho_cancel(c->handler_co);
    }
    while (sh->nconns > 0)
        if (coho_sem_wait(&sh->gone) != 0)
            coho_yield(); /* cancelled ourselves: handlers still end on the shutdown */
    while (sh->sweeper_co != 0)
        coho_yield(); /* cancelled above; it must be gone before the shard is */
}

static void acceptor_main(void *arg)
{
    coho__shard_t *sh = arg;
    coho_server_t *srv = sh->srv;
    coho_chan_t *done = srv->done;
    int token = 1;

    /* The accept loop (net/accept.c) holds the shard's reserve fd while it runs. */
    coho__net_acceptor_t acc = {.lfd = sh->lfd, .reserve_fd = sh->reserve_fd, .backoff_ms = 0};

    sh->reserve_fd = -1;
    while (!sh->stopping) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        unsigned char a16[16];
        int fd, verdict;

        fd = coho__net_accept(&acc, (struct sockaddr *)&ss, &len, &sh->stopping);
        if (fd == -ECONNREFUSED) {
            COHO__STAT_ADD(srv, rejected_fds, 1); /* out of fds: shed with the reserve fd */
            continue;
        }
        if (coho__net_accept_stops(fd))
            break;
        if (fd < 0) {
            COHO__STAT_ADD(srv, accept_errors, 1); /* after a backoff */
            continue;
        }
        if (!coho__addr16((struct sockaddr *)&ss, a16))
            memset(a16, 0, sizeof(a16));
        verdict = admit(srv, a16);
        if (verdict != ADMIT_OK) {
            /* Counted before the close: a peer that sees the close sees the count. */
            if (verdict == ADMIT_ACL)
                COHO__STAT_ADD(srv, rejected_acl, 1);
            else if (verdict == ADMIT_MAX)
                COHO__STAT_ADD(srv, rejected_max, 1);
            else if (verdict == ADMIT_PER_IP)
                COHO__STAT_ADD(srv, rejected_per_ip, 1);
            else
                COHO__STAT_ADD(srv, rejected_other, 1);
            close(fd);
            continue;
        }
        if (srv->o.sndbuf > 0)
            setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &srv->o.sndbuf, sizeof(srv->o.sndbuf));
        if (srv->o.rcvbuf > 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &srv->o.rcvbuf, sizeof(srv->o.rcvbuf));
        if (coho__conn_spawn(sh, fd, &ss, len, a16) < 0) {
            coho__server_release(srv, a16);
            COHO__STAT_ADD(srv, rejected_other, 1);
            continue;
        }
        COHO__STAT_ADD(srv, accepted, 1);
    }
    sh->reserve_fd = acc.reserve_fd;
    sh->stopping = true;
    if (sh->lfd >= 0) {
        close(sh->lfd);
        sh->lfd = -1;
    }
    shard_drain(sh);
    if (sh->reserve_fd >= 0) {
        close(sh->reserve_fd);
        sh->reserve_fd = -1;
    }
    coho__shard_unregister(sh);
    coho_sem_destroy(&sh->gone);
    coho_sem_destroy(&sh->sweep_wake);
    /* The last touch of the shard: coho_server_stop frees it once every token is in. */
    coho_chan_try_send(done, &token);
}

/* Runs on the shard's thread: registers it and starts its coroutines. */
static int shard_setup(coho__shard_t *sh)
{
    coho_spawn_opts_t so;
    int rc;

    coho_sem_init(&sh->gone, 0);
    coho_sem_init(&sh->sweep_wake, 0);
    rc = coho__shard_register(sh);
    if (rc < 0)
        return rc;
    coho_spawn_opts_init(&so);
    so.detached = true;
    if (sh->srv->o.idle_ms > 0) {
        so.name = "net-idle";
        so.daemon = true;
        sh->sweeper_co = coho_spawn_ex(sh->sched, coho__sweeper_main, sh, &so);
        if (sh->sweeper_co == 0)
            goto fail;
    }
    so.name = "net-accept";
    so.daemon = false;
    sh->acceptor_co = coho_spawn_ex(sh->sched, acceptor_main, sh, &so);
    if (sh->acceptor_co == 0)
        goto fail;
    return 0;

fail:
    rc = -errno;
    if (sh->sweeper_co != 0)
        coho_cancel(sh->sweeper_co);
    coho__shard_unregister(sh);
    return rc;
}

/* Start-up hand-shake of the server's own threads. */
static pthread_mutex_t start_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t start_cv = PTHREAD_COND_INITIALIZER;

static void *shard_thread(void *arg)
{
    coho__shard_t *sh = arg;
    coho_sched_t *s = coho_sched_create(NULL);
    int rc = s ? 0 : -errno;

    sh->sched = s;
    if (rc == 0)
        rc = shard_setup(sh);
    pthread_mutex_lock(&start_mu);
    sh->start_err = rc < 0 ? rc : 1;
    pthread_cond_broadcast(&start_cv);
    pthread_mutex_unlock(&start_mu);
    if (rc == 0)
        coho_sched_run(s);
    coho_sched_destroy(s);
    return NULL;
}

/* ---- start ----------------------------------------------------------------------------------- */

static int parse_host_port(const char *hp, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[256];
    const char *port, *h = hp;
    size_t hlen;
    struct addrinfo hints, *res = NULL;
    int rc;

    if (hp == NULL)
        return -EINVAL;
    if (hp[0] == '[') {
        const char *end = strchr(hp, ']');
        if (end == NULL || end[1] != ':')
            return -EINVAL;
        h = hp + 1;
        hlen = (size_t)(end - h);
        port = end + 2;
    } else {
        const char *colon = strrchr(hp, ':');
        if (colon == NULL)
            return -EINVAL;
        hlen = (size_t)(colon - hp);
        port = colon + 1;
    }
    if (hlen >= sizeof(host) || *port == '\0')
        return -EINVAL;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    rc = getaddrinfo(hlen ? host : NULL, port, &hints, &res);
    if (rc != 0)
        return -EINVAL;
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static int listen_socket(coho_server_t *srv, int port)
{
    struct sockaddr_storage ss = srv->addr;
    int one = 1, fd, err;

    if (ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)port);
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    /* Accepted sockets inherit TCP_NODELAY from the listener (Linux copies the option at the
     * accept): no setsockopt per connection. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if ((srv->nshards > 1 || srv->o.reuseport) &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
        goto fail;
    if (bind(fd, (struct sockaddr *)&ss, srv->addr_len) != 0 || listen(fd, srv->o.backlog) != 0)
        goto fail;
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0)
        goto fail;
    return fd;

fail:
    err = errno;
    close(fd);
    return -err;
}

static void server_free(coho_server_t *srv)
{
    for (unsigned i = 0; i < srv->nshards; i++) {
        coho__shard_t *sh = srv->shards[i];
        if (sh == NULL)
            continue;
        for (unsigned k = 0; k < COHO__SLOT_CHUNKS; k++)
            free(atomic_load(&sh->chunks[k]));
        if (sh->lfd >= 0)
            close(sh->lfd);
        if (sh->reserve_fd >= 0)
            close(sh->reserve_fd);
        free(sh->heap);
        free(sh);
    }
    free(srv->shards);
    if (srv->done)
        coho_chan_destroy(srv->done);
    coho__acl_destroy(srv->acl);
    free(srv->ips);
    free(srv->ws_path);
    coho__tls_ctx_free(srv);
    pthread_mutex_destroy(&srv->mu);
    free(srv);
}

static int check_opts(const coho_server_opts_t *o)
{
    if (o->threads == 0 || o->threads > 256 || o->max_frame == 0 || o->send_queue_bytes == 0 ||
        o->send_queue_frames == 0 || o->read_budget == 0 || (o->sched && o->threads != 1))
        return -EINVAL;
    if (o->framing == COHO_FRAMING_CUSTOM && (o->framer == NULL || o->framer->scan == NULL))
        return -EINVAL;
    if (o->framing < COHO_FRAMING_LENPFX || o->framing > COHO_FRAMING_CUSTOM)
        return -EINVAL;
    return 0;
}

static coho_server_t *server_start(const char *host_port, const coho_server_opts_t *o,
                                   coho_conn_handler_t handler, void *user, int *err)
{
    coho_server_t *srv;
    int rc;

    srv = calloc(1, sizeof(*srv));
    if (srv == NULL) {
        *err = -ENOMEM;
        return NULL;
    }
    pthread_mutex_init(&srv->mu, NULL);
    if (o)
        srv->o = *o;
    else
        coho_server_opts_init(&srv->o);
    srv->o.allow = srv->o.deny = NULL; /* copied into the acl */
    if (srv->o.ws_path != NULL) {
        srv->ws_path = strdup(srv->o.ws_path);
        srv->o.ws_path = srv->ws_path;
        if (srv->ws_path == NULL) {
            rc = -ENOMEM;
            goto fail;
        }
    }
    if (srv->o.rate_burst == 0)
        srv->o.rate_burst = srv->o.rate_limit * 2;
    srv->handler = handler;
    srv->user = user;
    rc = handler == NULL ? -EINVAL : check_opts(&srv->o);
    if (rc < 0)
        goto fail;
    switch (srv->o.framing) {
    case COHO_FRAMING_LENPFX:
        rc = coho_lenpfx_framer_init(&srv->framer, &srv->o.lenpfx) == 0 ? 0 : -EINVAL;
        break;
    case COHO_FRAMING_LINE:
        rc = coho_line_framer_init(&srv->framer);
        break;
    case COHO_FRAMING_SOCK:
        srv->sock_max_body = SIZE_MAX;
        coho_sock_framer_init(&srv->framer, &srv->sock_max_body);
        break;
    default:
        srv->framer = *srv->o.framer;
        break;
    }
    if (rc < 0)
        goto fail;
    rc = coho__tls_ctx_make(srv);
    srv->o.tls_cert_file = srv->o.tls_key_file = NULL; /* read once, here */
    if (rc < 0)
        goto fail;
    rc = coho__acl_make(o ? o->allow : NULL, o ? o->allow_count : 0, o ? o->deny : NULL,
                        o ? o->deny_count : 0, &srv->acl);
    if (rc < 0)
        goto fail;
    rc = parse_host_port(host_port, &srv->addr, &srv->addr_len);
    if (rc < 0)
        goto fail;
    /* The port asked for (0: the kernel picks one, and shard 0's choice is shared). */
    srv->port =
        ntohs(srv->addr.ss_family == AF_INET ? ((struct sockaddr_in *)&srv->addr)->sin_port
                                             : ((struct sockaddr_in6 *)&srv->addr)->sin6_port);
    srv->nshards = srv->o.threads;
    srv->shards = calloc(srv->nshards, sizeof(*srv->shards));
    srv->done = coho_chan_create(sizeof(int), srv->nshards);
    if (srv->shards == NULL || srv->done == NULL) {
        rc = -ENOMEM;
        goto fail;
    }
    for (unsigned i = 0; i < srv->nshards; i++) {
        coho__shard_t *sh = calloc(1, sizeof(*sh));
        if (sh == NULL) {
            rc = -ENOMEM;
            goto fail;
        }
        srv->shards[i] = sh;
        sh->srv = srv;
        sh->reserve_fd = -1;
        sh->lfd = listen_socket(srv, srv->port);
        if (sh->lfd < 0) {
            rc = sh->lfd;
            goto fail;
        }
        if (i == 0) {
            struct sockaddr_storage b;
            socklen_t bl = sizeof(b);
            getsockname(sh->lfd, (struct sockaddr *)&b, &bl);
            srv->port = ntohs(b.ss_family == AF_INET ? ((struct sockaddr_in *)&b)->sin_port
                                                     : ((struct sockaddr_in6 *)&b)->sin6_port);
        }
        sh->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    if (srv->o.sched != NULL) {
        srv->shards[0]->sched = srv->o.sched;
        rc = shard_setup(srv->shards[0]);
        if (rc < 0)
            goto fail;
        return srv;
    }
    for (unsigned i = 0; i < srv->nshards; i++) {
        coho__shard_t *sh = srv->shards[i];
        pthread_t t;
        rc = -pthread_create(&t, NULL, shard_thread, sh);
        if (rc < 0)
            break;
        sh->tid = t;
        sh->own_thread = true;
        pthread_mutex_lock(&start_mu);
        while (sh->start_err == 0)
            pthread_cond_wait(&start_cv, &start_mu);
        pthread_mutex_unlock(&start_mu);
        if (sh->start_err < 0) {
            rc = sh->start_err;
            pthread_join(sh->tid, NULL);
            sh->own_thread = false;
            break;
        }
    }
    if (rc < 0) {
        /* Threads that did start are stopped the ordinary way. */
        *err = rc;
        for (unsigned i = 0; i < srv->nshards; i++)
            if (!srv->shards[i]->own_thread) {
                close(srv->shards[i]->lfd);
                if (srv->shards[i]->reserve_fd >= 0)
                    close(srv->shards[i]->reserve_fd);
                free(srv->shards[i]);
                srv->shards[i] = NULL;
            }
        unsigned started = 0;
        for (unsigned i = 0; i < srv->nshards; i++)
            if (srv->shards[i] != NULL)
                srv->shards[started++] = srv->shards[i];
        srv->nshards = started;
        coho_server_stop(srv, 0);
        return NULL;
    }
    return srv;

fail:
    *err = rc;
    server_free(srv);
    return NULL;
}

coho_server_t *coho_server_start(const char *host_port, const coho_server_opts_t *o,
                                 coho_conn_handler_t handler, void *user)
{
    int err = 0;
    coho_server_t *srv = server_start(host_port, o, handler, user, &err);

    if (srv == NULL)
        errno = -err;
    return srv;
}

int coho_server_port(const coho_server_t *s)
{
    if (s == NULL)
        return coho__net_ret(-EINVAL);
    return s->port;
}

/* ---- stop -------------------------------------------------------------------------------------
 */

struct stop_msg {
    unsigned idx;
    uint32_t epoch;
    coho__shard_t *sh;
    int64_t drain_ms;
};

static void stop_cb(void *arg)
{
    struct stop_msg *m = arg;
    coho__shard_t *sh = coho__shard_here(m->idx);

    /* A shard that already wound down (its scheduler was stopped) left the table. */
    if (sh == m->sh && sh->epoch == m->epoch && !sh->stopping) {
        sh->stopping = true;
        sh->drain_ms = m->drain_ms;
        if (sh->lfd >= 0) {
            close(sh->lfd); /* wakes the accept coroutine with EBADF */
            sh->lfd = -1;
        }
    }
    free(m);
}

int coho_server_stop(coho_server_t *s, int64_t drain_ms)
{
    unsigned got = 0;

    if (s == NULL)
        return coho__net_ret(-EINVAL);
    if (coho__in_handler_of(s))
        return coho__net_ret(-EDEADLK);
    if (s->o.sched != NULL && coho_self() == 0 && s->nshards == 1 &&
        pthread_equal(s->shards[0]->thread, pthread_self()))
        return coho__net_ret(-EDEADLK);
    coho__metrics_forget(s); /* no scrape reads the counters of a server being freed */
    for (unsigned i = 0; i < s->nshards; i++) {
        coho__shard_t *sh = s->shards[i];
        struct stop_msg *m = malloc(sizeof(*m));
        if (m == NULL)
            return coho__net_ret(-ENOMEM);
        m->idx = sh->idx;
        m->epoch = sh->epoch;
        m->sh = sh;
        m->drain_ms = drain_ms;
        if (coho_sched_post(sh->sched, stop_cb, m) != 0)
            free(m); /* its scheduler is going away: the shard winds down with it */
    }
    while (got < s->nshards) {
        int token;
        if (coho_chan_recv(s->done, &token) == 0)
            got++;
        else if (errno == ECANCELED)
            coho_yield();
        else
            return -1;
    }
    for (unsigned i = 0; i < s->nshards; i++)
        if (s->shards[i]->own_thread)
            pthread_join(s->shards[i]->tid, NULL);
    server_free(s);
    return 0;
}

int coho_server_set_acl(coho_server_t *s, const char *const *allow, unsigned allow_count,
                        const char *const *deny, unsigned deny_count)
{
    coho__acl_t *a, *old;
    int rc;

    if (s == NULL)
        return coho__net_ret(-EINVAL);
    rc = coho__acl_make(allow, allow_count, deny, deny_count, &a);
    if (rc < 0)
        return coho__net_ret(rc);
    pthread_mutex_lock(&s->mu);
    old = s->acl;
    s->acl = a;
    pthread_mutex_unlock(&s->mu);
    coho__acl_destroy(old);
    return 0;
}

int coho_server_get_stats(const coho_server_t *s, coho_server_stats_t *out)
{
    coho_server_t *m = (coho_server_t *)s;

    if (s == NULL || out == NULL)
        return coho__net_ret(-EINVAL);
#define LOAD(f) out->f = atomic_load_explicit(&m->st.f, memory_order_relaxed)
    LOAD(accepted);
    LOAD(rejected_max);
    LOAD(rejected_per_ip);
    LOAD(rejected_acl);
    LOAD(rejected_fds);
    LOAD(rejected_other);
    LOAD(accept_errors);
    LOAD(bytes_in);
    LOAD(bytes_out);
    LOAD(frames_in);
    LOAD(frames_out);
    LOAD(queue_full_closes);
    LOAD(idle_kicks);
    LOAD(rate_limited);
    LOAD(protocol_errors);
    LOAD(send_stale);
#undef LOAD
    pthread_mutex_lock(&m->mu);
    out->conns_open = m->open;
    pthread_mutex_unlock(&m->mu);
    return 0;
}
