/* SPDX-License-Identifier: MIT */
/* The admin HTTP server: a coho server whose framer cuts request heads, http-parser for the
 * request line and headers, and the /metrics, /stats and /coroutines pages. */
#include <errno.h>
#include <http_parser.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <coho.h>
#include <coho/admin.h>
#include <coho/net.h>

#include "net/internal.h"
#include "net/sbuf.h"

typedef struct admin_sched {
    struct admin_sched *next;
    coho_sched_t *s;
    char *name;
} admin_sched_t;

typedef struct admin_section {
    struct admin_section *next;
    char *name;
    void (*fn)(coho_admin_json_t *out, void *arg);
    void *arg;
} admin_section_t;

struct coho_admin {
    coho_admin_opts_t o;
    coho_metrics_t *metrics;
    coho_server_t *srv;
    coho_tdp_framer_t framer;
    pthread_mutex_t mu; /* scheds, sections; held while a section's fn runs */
    admin_sched_t *scheds;
    admin_section_t *sections;
};

struct coho_admin_json {
    coho__sbuf_t *b;
};

/* ---- the request-head framer ---------------------------------------------------------------- */

static int head_detect(coho_cbuf_t *b, void *ctx)
{
    (void)ctx;
    return coho_cbuf_len(b) == 0 ? COHO_TDP_NEED_MORE : COHO_TDP_REQUEST;
}

/* A frame is everything up to the blank line that ends the head: two line feeds with nothing
 * but carriage returns between them. The body, if any, is not part of it. */
static ssize_t head_scan(coho_cbuf_t *b, uint64_t *req_id, void *ctx)
{
    struct iovec iov[16];
    size_t off = 0, len = coho_cbuf_len(b);
    unsigned lf = 0;

    (void)ctx;
    *req_id = 0;
    while (off < len) {
        int n = coho_cbuf_data_iov(b, off, iov, 16);
        if (n <= 0)
            return -1;
        for (int i = 0; i < n; i++) {
            const unsigned char *p = iov[i].iov_base;
            for (size_t k = 0; k < iov[i].iov_len; k++) {
                if (p[k] == '\n') {
                    if (++lf == 2)
                        return (ssize_t)(off + k + 1);
                } else if (p[k] != '\r') {
                    lf = 0;
                }
            }
            off += iov[i].iov_len;
        }
    }
    return 0;
}

/* ---- requests ------------------------------------------------------------------------------- */

typedef struct request {
    const char *url;
    size_t url_len;
    bool head_done;
    bool has_body;
} request_t;

static int on_url(http_parser *p, const char *at, size_t len)
{
    request_t *r = p->data;

    /* The head is one contiguous buffer, so the URL arrives in one piece. */
    if (r->url == NULL)
        r->url = at;
    r->url_len = (size_t)(at + len - r->url);
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    request_t *r = p->data;

    r->head_done = true;
    r->has_body =
        (p->flags & F_CHUNKED) != 0 || (p->content_length != 0 && p->content_length != ULLONG_MAX);
    return 0;
}

/* Queues one response; false when the connection cannot take it (then it is closing). */
static bool respond(coho_conn_t *c, int status, const char *reason, const char *type,
                    const char *extra, const char *body, size_t body_len, bool keep_alive)
{
    coho__sbuf_t b;
    bool ok;

    coho__sbuf_init(&b);
    coho__sbuf_printf(&b,
                      "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                      "Cache-Control: no-store\r\nConnection: %s\r\n%s\r\n",
                      status, reason, type, body_len, keep_alive ? "keep-alive" : "close", extra);
    coho__sbuf_add(&b, body, body_len);
    ok = b.err == 0 && coho_conn_send(c, b.p, b.len) == 0;
    coho__sbuf_destroy(&b);
    return ok;
}

static bool respond_text(coho_conn_t *c, int status, const char *reason, const char *extra,
                         bool keep_alive)
{
    char body[64];
    size_t n = (size_t)snprintf(body, sizeof(body), "%d %s\n", status, reason);

    return respond(c, status, reason, "text/plain; charset=utf-8", extra, body, n, keep_alive);
}

/* ---- /coroutines ---------------------------------------------------------------------------- */

/* One scheduler's dump, shared by the waiting request and the post that fills it; whoever lets
 * go last frees it (the request may give up waiting first). */
typedef struct dump_job {
    atomic_int refs;
    coho_sched_t *s;
    coho__sbuf_t out;
    coho_chan_t *done;
} dump_job_t;

static void dump_job_put(dump_job_t *j)
{
    if (atomic_fetch_sub_explicit(&j->refs, 1, memory_order_acq_rel) != 1)
        return;
    coho__sbuf_destroy(&j->out);
    coho_chan_destroy(j->done);
    free(j);
}

static void dump_line(void *arg, const char *text, size_t len)
{
    coho__sbuf_t *b = arg;

    coho__sbuf_add(b, text, len);
    coho__sbuf_add(b, "\n", 1);
}

static void dump_post(void *arg)
{
    dump_job_t *j = arg;
    int token = 1;

    coho_sched_dump_to(j->s, dump_line, &j->out);
    coho_chan_try_send(j->done, &token);
    dump_job_put(j);
}

static void dump_one_sched(coho_admin_t *a, coho_sched_t *s, coho__sbuf_t *b)
{
    dump_job_t *j = calloc(1, sizeof(*j));
    int token;

    if (j == NULL || (j->done = coho_chan_create(sizeof(int), 1)) == NULL) {
        free(j);
        coho__sbuf_adds(b, "(out of memory)\n");
        return;
    }
    atomic_init(&j->refs, 2);
    j->s = s;
    coho__sbuf_init(&j->out);
    if (coho_sched_post(s, dump_post, j) != 0) {
        coho__sbuf_adds(b, "(the scheduler is stopping)\n");
        atomic_store(&j->refs, 1);
        dump_job_put(j);
        return;
    }
    if (coho_chan_timedrecv_ms(j->done, &token, a->o.dump_timeout_ms) == 0) {
        if (j->out.err != 0)
            coho__sbuf_adds(b, "(out of memory)\n");
        else
            coho__sbuf_add(b, j->out.p, j->out.len);
    } else {
        coho__sbuf_printf(b, "(no answer within %llu ms: the scheduler is not running posts)\n",
                          (unsigned long long)a->o.dump_timeout_ms);
    }
    dump_job_put(j);
}

static void page_coroutines(coho_admin_t *a, coho__sbuf_t *b)
{
    admin_sched_t *list = NULL, **tail = &list, *e, *next;

    /* Copy the list, so no lock is held while this coroutine parks for the dumps. */
    pthread_mutex_lock(&a->mu);
    for (e = a->scheds; e != NULL; e = e->next) {
        admin_sched_t *copy = calloc(1, sizeof(*copy));
        if (copy == NULL || (e->name != NULL && (copy->name = strdup(e->name)) == NULL)) {
            free(copy);
            b->err = -ENOMEM;
            break;
        }
        copy->s = e->s;
        *tail = copy;
        tail = &copy->next;
    }
    pthread_mutex_unlock(&a->mu);
    if (list == NULL && b->err == 0)
        coho__sbuf_adds(b, "(no scheduler registered: coho_admin_add_sched)\n");
    for (e = list; e != NULL; e = next) {
        next = e->next;
        coho__sbuf_printf(b, "== %s ==\n", e->name != NULL ? e->name : "scheduler");
        dump_one_sched(a, e->s, b);
        free(e->name);
        free(e);
    }
}

/* ---- /stats --------------------------------------------------------------------------------- */

static void page_stats(coho_admin_t *a, coho__sbuf_t *b)
{
    char *metrics = NULL;

    if (a->metrics != NULL) {
        metrics = coho_metrics_render_json(a->metrics, NULL);
        if (metrics == NULL) {
            b->err = -ENOMEM;
            return;
        }
    }
    coho__sbuf_adds(b, "{\"metrics\":");
    coho__sbuf_adds(b, metrics != NULL ? metrics : "{}");
    free(metrics);
    pthread_mutex_lock(&a->mu);
    for (admin_section_t *s = a->sections; s != NULL; s = s->next) {
        coho_admin_json_t out = {.b = b};
        size_t before;

        coho__sbuf_add(b, ",", 1);
        coho__sbuf_json_string(b, s->name);
        coho__sbuf_add(b, ":", 1);
        before = b->len;
        s->fn(&out, s->arg);
        if (b->len == before)
            coho__sbuf_adds(b, "null");
    }
    pthread_mutex_unlock(&a->mu);
    coho__sbuf_adds(b, "}\n");
}

void coho_admin_json_raw(coho_admin_json_t *out, const char *json)
{
    if (out != NULL && json != NULL)
        coho__sbuf_adds(out->b, json);
}

void coho_admin_json_printf(coho_admin_json_t *out, const char *fmt, ...)
{
    va_list ap;

    if (out == NULL || fmt == NULL)
        return;
    va_start(ap, fmt);
    coho__sbuf_vprintf(out->b, fmt, ap);
    va_end(ap);
}

void coho_admin_json_string(coho_admin_json_t *out, const char *s)
{
    if (out != NULL)
        coho__sbuf_json_string(out->b, s != NULL ? s : "");
}

/* ---- the connection handler ----------------------------------------------------------------- */

/* Serves the request head in `head`; returns whether the connection stays open. */
static bool serve(coho_admin_t *a, coho_conn_t *c, const char *head, size_t len)
{
    http_parser_settings st;
    http_parser p;
    request_t r = {0};
    struct http_parser_url u;
    coho__sbuf_t body;
    const char *path, *type;
    size_t path_len, parsed;
    bool keep, ok;

    http_parser_settings_init(&st);
    st.on_url = on_url;
    st.on_headers_complete = on_headers_complete;
    http_parser_init(&p, HTTP_REQUEST);
    p.data = &r;
    parsed = http_parser_execute(&p, &st, head, len);
    if (HTTP_PARSER_ERRNO(&p) != HPE_OK || parsed != len || !r.head_done || r.url == NULL) {
        respond_text(c, 400, "Bad Request", "", false);
        return false;
    }
    /* A body is not read: answer, then close (the next request would start inside it). */
    keep = http_should_keep_alive(&p) != 0 && !r.has_body;
    if (p.method != HTTP_GET)
        return respond_text(c, 405, "Method Not Allowed", "Allow: GET\r\n", keep) && keep;
    http_parser_url_init(&u);
    if (http_parser_parse_url(r.url, r.url_len, 0, &u) != 0 || !(u.field_set & (1 << UF_PATH))) {
        respond_text(c, 400, "Bad Request", "", false);
        return false;
    }
    path = r.url + u.field_data[UF_PATH].off;
    path_len = u.field_data[UF_PATH].len;
#define IS(lit) (path_len == sizeof(lit) - 1 && memcmp(path, lit, path_len) == 0)
    coho__sbuf_init(&body);
    if (IS("/metrics")) {
        type = "text/plain; version=0.0.4; charset=utf-8";
        if (a->metrics != NULL) {
            size_t text_len = 0;
            char *text = coho_metrics_render_prometheus(a->metrics, &text_len);
            if (text == NULL)
                body.err = -ENOMEM;
            coho__sbuf_add(&body, text, text_len);
            free(text);
        }
    } else if (IS("/stats")) {
        type = "application/json";
        page_stats(a, &body);
    } else if (IS("/coroutines")) {
        type = "text/plain; charset=utf-8";
        page_coroutines(a, &body);
    } else {
        coho__sbuf_destroy(&body);
        return respond_text(c, 404, "Not Found", "", keep) && keep;
    }
#undef IS
    coho__sbuf_add(&body, "", 0); /* an empty page is still a string */
    if (body.err != 0) {
        coho__sbuf_destroy(&body);
        respond_text(c, 500, "Internal Server Error", "", false);
        return false;
    }
    ok = respond(c, 200, "OK", type, "", body.p, body.len, keep);
    coho__sbuf_destroy(&body);
    return ok && keep;
}

static void admin_conn(coho_conn_t *c, void *user)
{
    coho_admin_t *a = user;
    coho_cbuf_t f;
    ssize_t n;

    coho_set_name(0, "admin-http");
    coho_cbuf_init(&f, NULL);
    while ((n = coho_conn_read_frame(c, &f)) > 0) {
        const char *head = coho_cbuf_linearize(&f, (size_t)n);
        if (head == NULL || !serve(a, c, head, (size_t)n))
            break;
    }
    if (n < 0 && errno == EMSGSIZE)
        respond_text(c, 431, "Request Header Fields Too Large", "", false);
    coho_cbuf_destroy(&f);
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

void coho_admin_opts_init(coho_admin_opts_t *o)
{
    if (o == NULL)
        return;
    memset(o, 0, sizeof(*o));
    o->max_request = 8192;
    o->max_conns = 64;
    o->idle_ms = 30000;
    o->dump_timeout_ms = 1000;
}

coho_admin_t *coho_admin_start(const char *host_port, coho_metrics_t *metrics,
                               const coho_admin_opts_t *o)
{
    coho_server_opts_t so;
    coho_admin_t *a;

    if (host_port == NULL || (o != NULL && (o->max_request < 16 || o->max_conns == 0))) {
        errno = EINVAL;
        return NULL;
    }
    a = calloc(1, sizeof(*a));
    if (a == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    if (o != NULL)
        a->o = *o;
    else
        coho_admin_opts_init(&a->o);
    a->metrics = metrics;
    pthread_mutex_init(&a->mu, NULL);
    a->framer.name = "http-head";
    a->framer.detect = head_detect;
    a->framer.scan = head_scan;
    coho_server_opts_init(&so);
    so.sched = a->o.sched;
    so.max_conns = a->o.max_conns;
    so.idle_ms = a->o.idle_ms;
    so.max_frame = a->o.max_request;
    so.framing = COHO_FRAMING_CUSTOM;
    so.framer = &a->framer;
    so.send_queue_bytes = 64u << 20; /* a page is one frame: a dump of many coroutines */
    so.linger_ms = 5000;
    a->srv = coho_server_start(host_port, &so, admin_conn, a);
    if (a->srv == NULL) {
        int err = errno;
        pthread_mutex_destroy(&a->mu);
        free(a);
        errno = err;
        return NULL;
    }
    return a;
}

int coho_admin_port(const coho_admin_t *a)
{
    if (a == NULL)
        return coho__net_ret(-EINVAL);
    return coho_server_port(a->srv);
}

int coho_admin_stop(coho_admin_t *a)
{
    if (a == NULL)
        return coho__net_ret(-EINVAL);
    if (coho_server_stop(a->srv, 1000) != 0)
        return -1;
    while (a->scheds != NULL) {
        admin_sched_t *e = a->scheds;
        a->scheds = e->next;
        free(e->name);
        free(e);
    }
    while (a->sections != NULL) {
        admin_section_t *s = a->sections;
        a->sections = s->next;
        free(s->name);
        free(s);
    }
    pthread_mutex_destroy(&a->mu);
    free(a);
    return 0;
}

int coho_admin_add_sched(coho_admin_t *a, coho_sched_t *s, const char *name)
{
    admin_sched_t *e, **pp;

    if (a == NULL || s == NULL)
        return coho__net_ret(-EINVAL);
    e = calloc(1, sizeof(*e));
    if (e == NULL || (name != NULL && (e->name = strdup(name)) == NULL)) {
        free(e);
        return coho__net_ret(-ENOMEM);
    }
    e->s = s;
    pthread_mutex_lock(&a->mu);
    for (pp = &a->scheds; *pp != NULL; pp = &(*pp)->next) {
        if ((*pp)->s == s) {
            pthread_mutex_unlock(&a->mu);
            free(e->name);
            free(e);
            return coho__net_ret(-EEXIST);
        }
    }
    *pp = e;
    pthread_mutex_unlock(&a->mu);
    return 0;
}

int coho_admin_remove_sched(coho_admin_t *a, coho_sched_t *s)
{
    admin_sched_t **pp, *e = NULL;

    if (a == NULL || s == NULL)
        return coho__net_ret(-EINVAL);
    pthread_mutex_lock(&a->mu);
    for (pp = &a->scheds; *pp != NULL; pp = &(*pp)->next) {
        if ((*pp)->s == s) {
            e = *pp;
            *pp = e->next;
            break;
        }
    }
    pthread_mutex_unlock(&a->mu);
    if (e == NULL)
        return coho__net_ret(-ENOENT);
    free(e->name);
    free(e);
    return 0;
}

int coho_admin_add_section(coho_admin_t *a, const char *name,
                           void (*fn)(coho_admin_json_t *out, void *arg), void *arg)
{
    admin_section_t *e, **pp;

    if (a == NULL || name == NULL || fn == NULL || strcmp(name, "metrics") == 0)
        return coho__net_ret(-EINVAL);
    e = calloc(1, sizeof(*e));
    if (e == NULL || (e->name = strdup(name)) == NULL) {
        free(e);
        return coho__net_ret(-ENOMEM);
    }
    e->fn = fn;
    e->arg = arg;
    pthread_mutex_lock(&a->mu);
    for (pp = &a->sections; *pp != NULL; pp = &(*pp)->next) {
        if (strcmp((*pp)->name, name) == 0) {
            pthread_mutex_unlock(&a->mu);
            free(e->name);
            free(e);
            return coho__net_ret(-EEXIST);
        }
    }
    *pp = e;
    pthread_mutex_unlock(&a->mu);
    return 0;
}

int coho_admin_remove_section(coho_admin_t *a, const char *name)
{
    admin_section_t **pp, *e = NULL;

    if (a == NULL || name == NULL)
        return coho__net_ret(-EINVAL);
    pthread_mutex_lock(&a->mu);
    for (pp = &a->sections; *pp != NULL; pp = &(*pp)->next) {
        if (strcmp((*pp)->name, name) == 0) {
            e = *pp;
            *pp = e->next;
            break;
        }
    }
    pthread_mutex_unlock(&a->mu);
    if (e == NULL)
        return coho__net_ret(-ENOENT);
    free(e->name);
    free(e);
    return 0;
}
