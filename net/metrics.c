/* SPDX-License-Identifier: MIT */
/* The metrics registry: families and series, sharded lock-free counters and histograms,
 * callback series, and the Prometheus text and JSON renderings. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <coho/metrics.h>

#include "net/internal.h"
#include "net/sbuf.h"

/* Shards per counter or histogram: a thread adds to shard (its index % SHARDS), so threads
 * rarely share a cache line and an increment is one uncontended relaxed atomic add. */
#define SHARDS 16
#define LINE   64

enum { TYPE_HISTOGRAM = 2 };
enum { KIND_PLAIN, KIND_FN };

typedef struct cell {
    _Alignas(LINE) _Atomic uint64_t v;
} cell_t;

typedef struct family family_t;

typedef struct series {
    struct series *next;
    family_t *fam;
    int kind;
    char *values[COHO_METRICS_LABELS_MAX];
    cell_t *cells;      /* counter: SHARDS cells */
    _Atomic uint64_t g; /* gauge: the double's bits */
    /* histogram: SHARDS blocks of `stride` words: nbounds + 1 bucket counts, then the sum's
     * bits; blocks start on a cache line */
    _Atomic uint64_t *h;
    size_t stride;
    double (*read)(void *arg, int key); /* KIND_FN */
    void *arg;
    int key;
} series_t;

struct family {
    family_t *next;
    char *name, *help;
    int type;
    unsigned nlabels;
    char *labels[COHO_METRICS_LABELS_MAX];
    unsigned nbounds;
    double *bounds;
    series_t *first, **tail;
};

struct coho_metrics {
    pthread_mutex_t mu; /* families, series lists; rendering */
    family_t *first, **tail;
    struct coho_metrics *next_all; /* every registry, for coho__metrics_forget */
};

/* Every live registry: a server that stops removes its callback series from all of them. */
static pthread_mutex_t all_mu = PTHREAD_MUTEX_INITIALIZER;
static coho_metrics_t *all_first;

/* The public handles are the series themselves. */
struct coho_counter {
    series_t s;
};
struct coho_gauge {
    series_t s;
};
struct coho_histogram {
    series_t s;
};

/* ---- shards --------------------------------------------------------------------------------- */

static _Atomic unsigned next_shard;
static __thread unsigned my_shard __attribute__((tls_model("initial-exec")));

static inline unsigned shard_index(void)
{
    unsigned s = my_shard;

    if (__builtin_expect(s == 0, 0)) {
        s = atomic_fetch_add_explicit(&next_shard, 1, memory_order_relaxed) % SHARDS + 1;
        my_shard = s;
    }
    return s - 1;
}

static inline uint64_t dbits(double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof(u));
    return u;
}

static inline double bitsd(uint64_t u)
{
    double v;
    memcpy(&v, &u, sizeof(v));
    return v;
}

static void atomic_add_double(_Atomic uint64_t *w, double delta)
{
    uint64_t old = atomic_load_explicit(w, memory_order_relaxed);

    while (!atomic_compare_exchange_weak_explicit(w, &old, dbits(bitsd(old) + delta),
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
}

/* ---- validation ----------------------------------------------------------------------------- */

static bool metric_name_ok(const char *s)
{
    if (s == NULL || *s == '\0')
        return false;
    for (const char *p = s; *p != '\0'; p++) {
        char c = *p;
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
        if (!alpha && !(p != s && c >= '0' && c <= '9'))
            return false;
    }
    return true;
}

static bool label_name_ok(const char *s)
{
    if (s == NULL || *s == '\0' || strncmp(s, "__", 2) == 0)
        return false;
    for (const char *p = s; *p != '\0'; p++) {
        char c = *p;
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
        if (!alpha && !(p != s && c >= '0' && c <= '9'))
            return false;
    }
    return true;
}

static int labels_ok(int type, const coho_label_t *labels, unsigned n)
{
    if (n > COHO_METRICS_LABELS_MAX || (n > 0 && labels == NULL))
        return -EINVAL;
    for (unsigned i = 0; i < n; i++) {
        if (!label_name_ok(labels[i].name) || labels[i].value == NULL)
            return -EINVAL;
        if (type == TYPE_HISTOGRAM && strcmp(labels[i].name, "le") == 0)
            return -EINVAL;
        for (unsigned j = 0; j < i; j++)
            if (strcmp(labels[i].name, labels[j].name) == 0)
                return -EINVAL;
    }
    return 0;
}

static int bounds_ok(const double *bounds, unsigned n)
{
    if (n > COHO_METRICS_BUCKETS_MAX || (n > 0 && bounds == NULL))
        return -EINVAL;
    for (unsigned i = 0; i < n; i++) {
        if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1])))
            return -EINVAL;
    }
    return 0;
}

/* ---- registry ------------------------------------------------------------------------------- */

coho_metrics_t *coho_metrics_create(void)
{
    coho_metrics_t *m = calloc(1, sizeof(*m));

    if (m == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    pthread_mutex_init(&m->mu, NULL);
    m->tail = &m->first;
    pthread_mutex_lock(&all_mu);
    m->next_all = all_first;
    all_first = m;
    pthread_mutex_unlock(&all_mu);
    return m;
}

static void series_free(series_t *s)
{
    for (unsigned i = 0; i < COHO_METRICS_LABELS_MAX; i++)
        free(s->values[i]);
    free(s->cells);
    free(s->h);
    free(s);
}

static void family_free(family_t *f)
{
    series_t *s, *next;

    for (s = f->first; s != NULL; s = next) {
        next = s->next;
        series_free(s);
    }
    for (unsigned i = 0; i < COHO_METRICS_LABELS_MAX; i++)
        free(f->labels[i]);
    free(f->bounds);
    free(f->name);
    free(f->help);
    free(f);
}

void coho_metrics_destroy(coho_metrics_t *m)
{
    family_t *f, *next;

    if (m == NULL)
        return;
    pthread_mutex_lock(&all_mu);
    for (coho_metrics_t **pp = &all_first; *pp != NULL; pp = &(*pp)->next_all) {
        if (*pp == m) {
            *pp = m->next_all;
            break;
        }
    }
    pthread_mutex_unlock(&all_mu);
    for (f = m->first; f != NULL; f = next) {
        next = f->next;
        family_free(f);
    }
    pthread_mutex_destroy(&m->mu);
    free(m);
}

/* Finds family `name`, or creates it; -EINVAL when it exists with another shape. Under mu. */
static int family_get(coho_metrics_t *m, int type, const char *name, const char *help,
                      const coho_label_t *labels, unsigned nlabels, const double *bounds,
                      unsigned nbounds, family_t **out)
{
    family_t *f;

    for (f = m->first; f != NULL; f = f->next) {
        if (strcmp(f->name, name) != 0)
            continue;
        if (f->type != type || f->nlabels != nlabels)
            return -EINVAL;
        for (unsigned i = 0; i < nlabels; i++)
            if (strcmp(f->labels[i], labels[i].name) != 0)
                return -EINVAL;
        if (type == TYPE_HISTOGRAM &&
            (f->nbounds != nbounds ||
             (nbounds > 0 && memcmp(f->bounds, bounds, nbounds * sizeof(double)) != 0)))
            return -EINVAL;
        *out = f;
        return 0;
    }
    f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -ENOMEM;
    f->type = type;
    f->nlabels = nlabels;
    f->tail = &f->first;
    f->name = strdup(name);
    f->help = strdup(help);
    if (f->name == NULL || f->help == NULL)
        goto fail;
    for (unsigned i = 0; i < nlabels; i++) {
        f->labels[i] = strdup(labels[i].name);
        if (f->labels[i] == NULL)
            goto fail;
    }
    if (nbounds > 0) {
        f->bounds = malloc(nbounds * sizeof(double));
        if (f->bounds == NULL)
            goto fail;
        memcpy(f->bounds, bounds, nbounds * sizeof(double));
    }
    f->nbounds = nbounds;
    *m->tail = f;
    m->tail = &f->next;
    *out = f;
    return 0;

fail:
    family_free(f);
    return -ENOMEM;
}

static series_t *series_find(family_t *f, const coho_label_t *labels)
{
    for (series_t *s = f->first; s != NULL; s = s->next) {
        unsigned i;
        for (i = 0; i < f->nlabels; i++)
            if (strcmp(s->values[i], labels[i].value) != 0)
                break;
        if (i == f->nlabels)
            return s;
    }
    return NULL;
}

static series_t *series_make(family_t *f, int kind, const coho_label_t *labels)
{
    series_t *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return NULL;
    s->fam = f;
    s->kind = kind;
    for (unsigned i = 0; i < f->nlabels; i++) {
        s->values[i] = strdup(labels[i].value);
        if (s->values[i] == NULL)
            goto fail;
    }
    if (kind == KIND_PLAIN && f->type == COHO_METRIC_COUNTER) {
        s->cells = aligned_alloc(LINE, SHARDS * sizeof(cell_t));
        if (s->cells == NULL)
            goto fail;
        for (unsigned i = 0; i < SHARDS; i++)
            atomic_init(&s->cells[i].v, 0);
    } else if (kind == KIND_PLAIN && f->type == TYPE_HISTOGRAM) {
        size_t words = f->nbounds + 2, per_line = LINE / sizeof(uint64_t);
        s->stride = (words + per_line - 1) / per_line * per_line;
        s->h = aligned_alloc(LINE, SHARDS * s->stride * sizeof(uint64_t));
        if (s->h == NULL)
            goto fail;
        for (size_t i = 0; i < SHARDS * s->stride; i++)
            atomic_init(&s->h[i], i % s->stride == f->nbounds + 1 ? dbits(0.0) : 0);
    } else {
        atomic_init(&s->g, dbits(0.0));
    }
    return s;

fail:
    series_free(s);
    return NULL;
}

/* Get-or-create of a plain series. */
static series_t *plain_get(coho_metrics_t *m, int type, const char *name, const char *help,
                           const coho_label_t *labels, unsigned nlabels, const double *bounds,
                           unsigned nbounds)
{
    family_t *f;
    series_t *s = NULL;
    int rc;

    if (m == NULL || !metric_name_ok(name) || help == NULL) {
        errno = EINVAL;
        return NULL;
    }
    rc = labels_ok(type, labels, nlabels);
    if (rc == 0 && type == TYPE_HISTOGRAM)
        rc = bounds_ok(bounds, nbounds);
    if (rc < 0) {
        errno = -rc;
        return NULL;
    }
    pthread_mutex_lock(&m->mu);
    rc = family_get(m, type, name, help, labels, nlabels, bounds, nbounds, &f);
    if (rc == 0) {
        s = series_find(f, labels);
        if (s != NULL && s->kind != KIND_PLAIN) {
            s = NULL;
            rc = -EINVAL;
        } else if (s == NULL) {
            s = series_make(f, KIND_PLAIN, labels);
            if (s == NULL) {
                rc = -ENOMEM;
            } else {
                *f->tail = s;
                f->tail = &s->next;
            }
        }
    }
    pthread_mutex_unlock(&m->mu);
    if (s == NULL)
        errno = -rc;
    return s;
}

coho_counter_t *coho_metrics_counter(coho_metrics_t *m, const char *name, const char *help,
                                     const coho_label_t *labels, unsigned nlabels)
{
    return (coho_counter_t *)plain_get(m, COHO_METRIC_COUNTER, name, help, labels, nlabels, NULL,
                                       0);
}

coho_gauge_t *coho_metrics_gauge(coho_metrics_t *m, const char *name, const char *help,
                                 const coho_label_t *labels, unsigned nlabels)
{
    return (coho_gauge_t *)plain_get(m, COHO_METRIC_GAUGE, name, help, labels, nlabels, NULL, 0);
}

coho_histogram_t *coho_metrics_histogram(coho_metrics_t *m, const char *name, const char *help,
                                         const coho_label_t *labels, unsigned nlabels,
                                         const double *bounds, unsigned nbounds)
{
    return (coho_histogram_t *)plain_get(m, TYPE_HISTOGRAM, name, help, labels, nlabels, bounds,
                                         nbounds);
}

int coho_metrics_add_fn(coho_metrics_t *m, int type, const char *name, const char *help,
                        const coho_label_t *labels, unsigned nlabels,
                        double (*read)(void *arg, int key), void *arg, int key)
{
    family_t *f;
    series_t *s;
    int rc;

    if (m == NULL || read == NULL || !metric_name_ok(name) || help == NULL ||
        (type != COHO_METRIC_COUNTER && type != COHO_METRIC_GAUGE))
        return coho__net_ret(-EINVAL);
    rc = labels_ok(type, labels, nlabels);
    if (rc < 0)
        return coho__net_ret(rc);
    pthread_mutex_lock(&m->mu);
    rc = family_get(m, type, name, help, labels, nlabels, NULL, 0, &f);
    if (rc == 0 && series_find(f, labels) != NULL)
        rc = -EINVAL;
    if (rc == 0) {
        s = series_make(f, KIND_FN, labels);
        if (s == NULL) {
            rc = -ENOMEM;
        } else {
            s->read = read;
            s->arg = arg;
            s->key = key;
            *f->tail = s;
            f->tail = &s->next;
        }
    }
    pthread_mutex_unlock(&m->mu);
    return coho__net_ret(rc);
}

size_t coho_metrics_remove_fn(coho_metrics_t *m, void *arg)
{
    size_t n = 0;

    if (m == NULL)
        return 0;
    pthread_mutex_lock(&m->mu);
    for (family_t *f = m->first; f != NULL; f = f->next) {
        series_t **pp = &f->first;
        while (*pp != NULL) {
            series_t *s = *pp;
            if (s->kind == KIND_FN && s->arg == arg) {
                *pp = s->next;
                series_free(s);
                n++;
            } else {
                pp = &s->next;
            }
        }
        f->tail = pp;
    }
    pthread_mutex_unlock(&m->mu);
    return n;
}

size_t coho__metrics_count_fn(coho_metrics_t *m, void *arg)
{
    size_t n = 0;

    pthread_mutex_lock(&m->mu);
    for (const family_t *f = m->first; f != NULL; f = f->next)
        for (const series_t *s = f->first; s != NULL; s = s->next)
            n += s->kind == KIND_FN && s->arg == arg;
    pthread_mutex_unlock(&m->mu);
    return n;
}

void coho__metrics_forget(void *arg)
{
    pthread_mutex_lock(&all_mu);
    for (coho_metrics_t *m = all_first; m != NULL; m = m->next_all)
        coho_metrics_remove_fn(m, arg);
    pthread_mutex_unlock(&all_mu);
}

/* ---- updates -------------------------------------------------------------------------------- */

void coho_counter_add(coho_counter_t *c, uint64_t n)
{
    if (c == NULL)
        return;
    atomic_fetch_add_explicit(&c->s.cells[shard_index()].v, n, memory_order_relaxed);
}

static uint64_t counter_sum(const series_t *s)
{
    uint64_t sum = 0;

    for (unsigned i = 0; i < SHARDS; i++)
        sum += atomic_load_explicit(&s->cells[i].v, memory_order_relaxed);
    return sum;
}

uint64_t coho_counter_get(const coho_counter_t *c)
{
    return c == NULL ? 0 : counter_sum(&c->s);
}

void coho_gauge_set(coho_gauge_t *g, double v)
{
    if (g != NULL)
        atomic_store_explicit(&g->s.g, dbits(v), memory_order_relaxed);
}

void coho_gauge_add(coho_gauge_t *g, double delta)
{
    if (g != NULL)
        atomic_add_double(&g->s.g, delta);
}

double coho_gauge_get(const coho_gauge_t *g)
{
    return g == NULL ? 0.0 : bitsd(atomic_load_explicit(&g->s.g, memory_order_relaxed));
}

void coho_histogram_observe(coho_histogram_t *h, double v)
{
    const family_t *f;
    _Atomic uint64_t *blk;
    unsigned lo, hi;

    if (h == NULL || isnan(v))
        return;
    f = h->s.fam;
    /* The first bound >= v; nbounds (the +Inf bucket) when none is. */
    lo = 0;
    hi = f->nbounds;
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        if (f->bounds[mid] >= v)
            hi = mid;
        else
            lo = mid + 1;
    }
    blk = h->s.h + (size_t)shard_index() * h->s.stride;
    atomic_fetch_add_explicit(&blk[lo], 1, memory_order_relaxed);
    atomic_add_double(&blk[f->nbounds + 1], v);
}

/* Sums the shards of histogram `s` into counts[nbounds + 1] (per bucket, not cumulative). */
static double histogram_snapshot(const series_t *s, uint64_t *counts)
{
    unsigned nb = s->fam->nbounds;
    double sum = 0.0;

    memset(counts, 0, (nb + 1) * sizeof(uint64_t));
    for (unsigned k = 0; k < SHARDS; k++) {
        const _Atomic uint64_t *blk = s->h + (size_t)k * s->stride;
        for (unsigned i = 0; i <= nb; i++)
            counts[i] += atomic_load_explicit(&blk[i], memory_order_relaxed);
        sum += bitsd(atomic_load_explicit(&blk[nb + 1], memory_order_relaxed));
    }
    return sum;
}

void coho_histogram_get(const coho_histogram_t *h, uint64_t *count, double *sum)
{
    uint64_t counts[COHO_METRICS_BUCKETS_MAX + 1], n = 0;
    double s = 0.0;

    if (h != NULL) {
        s = histogram_snapshot(&h->s, counts);
        for (unsigned i = 0; i <= h->s.fam->nbounds; i++)
            n += counts[i];
    }
    if (count != NULL)
        *count = n;
    if (sum != NULL)
        *sum = s;
}

/* ---- Prometheus text format ----------------------------------------------------------------- */

static const char *type_name(int type)
{
    return type == COHO_METRIC_COUNTER ? "counter"
           : type == COHO_METRIC_GAUGE ? "gauge"
                                       : "histogram";
}

/* HELP text: backslash and line feed escaped. */
static void prom_help(coho__sbuf_t *b, const char *s)
{
    for (; *s != '\0'; s++) {
        if (*s == '\\')
            coho__sbuf_add(b, "\\\\", 2);
        else if (*s == '\n')
            coho__sbuf_add(b, "\\n", 2);
        else
            coho__sbuf_add(b, s, 1);
    }
}

/* A label value: backslash, double quote and line feed escaped. */
static void prom_label_value(coho__sbuf_t *b, const char *s)
{
    for (; *s != '\0'; s++) {
        if (*s == '\\')
            coho__sbuf_add(b, "\\\\", 2);
        else if (*s == '"')
            coho__sbuf_add(b, "\\\"", 2);
        else if (*s == '\n')
            coho__sbuf_add(b, "\\n", 2);
        else
            coho__sbuf_add(b, s, 1);
    }
}

/* name<suffix>{labels[,le="..."]}: braces only when there is a label. For a bucket line `le` is
 * its bound, NULL for +Inf. */
static void prom_series_name(coho__sbuf_t *b, const series_t *s, const char *suffix, bool bucket,
                             const double *le)
{
    const family_t *f = s->fam;

    coho__sbuf_adds(b, f->name);
    coho__sbuf_adds(b, suffix);
    if (f->nlabels == 0 && !bucket)
        return;
    coho__sbuf_add(b, "{", 1);
    for (unsigned i = 0; i < f->nlabels; i++) {
        if (i > 0)
            coho__sbuf_add(b, ",", 1);
        coho__sbuf_adds(b, f->labels[i]);
        coho__sbuf_add(b, "=\"", 2);
        prom_label_value(b, s->values[i]);
        coho__sbuf_add(b, "\"", 1);
    }
    if (bucket) {
        coho__sbuf_adds(b, f->nlabels > 0 ? ",le=\"" : "le=\"");
        if (le != NULL)
            coho__sbuf_double(b, *le);
        else
            coho__sbuf_adds(b, "+Inf");
        coho__sbuf_add(b, "\"", 1);
    }
    coho__sbuf_add(b, "}", 1);
}

static void prom_series(coho__sbuf_t *b, const series_t *s)
{
    const family_t *f = s->fam;

    if (f->type == TYPE_HISTOGRAM) {
        uint64_t counts[COHO_METRICS_BUCKETS_MAX + 1], cum = 0;
        double sum = histogram_snapshot(s, counts);

        for (unsigned i = 0; i <= f->nbounds; i++) {
            cum += counts[i];
            prom_series_name(b, s, "_bucket", true, i < f->nbounds ? &f->bounds[i] : NULL);
            coho__sbuf_printf(b, " %" PRIu64 "\n", cum);
        }
        prom_series_name(b, s, "_sum", false, NULL);
        coho__sbuf_add(b, " ", 1);
        coho__sbuf_double(b, sum);
        coho__sbuf_add(b, "\n", 1);
        prom_series_name(b, s, "_count", false, NULL);
        coho__sbuf_printf(b, " %" PRIu64 "\n", cum);
        return;
    }
    prom_series_name(b, s, "", false, NULL);
    coho__sbuf_add(b, " ", 1);
    if (s->kind == KIND_FN)
        coho__sbuf_double(b, s->read(s->arg, s->key));
    else if (f->type == COHO_METRIC_COUNTER)
        coho__sbuf_printf(b, "%" PRIu64, counter_sum(s));
    else
        coho__sbuf_double(b, bitsd(atomic_load_explicit(&s->g, memory_order_relaxed)));
    coho__sbuf_add(b, "\n", 1);
}

char *coho_metrics_render_prometheus(coho_metrics_t *m, size_t *len)
{
    coho__sbuf_t b;
    char *out;

    if (m == NULL) {
        errno = EINVAL;
        return NULL;
    }
    coho__sbuf_init(&b);
    pthread_mutex_lock(&m->mu);
    for (const family_t *f = m->first; f != NULL; f = f->next) {
        if (f->first == NULL)
            continue;
        coho__sbuf_printf(&b, "# HELP %s ", f->name);
        prom_help(&b, f->help);
        coho__sbuf_printf(&b, "\n# TYPE %s %s\n", f->name, type_name(f->type));
        for (const series_t *s = f->first; s != NULL; s = s->next)
            prom_series(&b, s);
    }
    pthread_mutex_unlock(&m->mu);
    out = coho__sbuf_take(&b, len);
    if (out == NULL)
        errno = ENOMEM;
    return out;
}

/* ---- JSON ----------------------------------------------------------------------------------- */

/* A number, or the string "NaN"/"+Inf"/"-Inf", which JSON has no number for. */
static void json_double(coho__sbuf_t *b, double v)
{
    if (!isfinite(v))
        coho__sbuf_add(b, "\"", 1);
    coho__sbuf_double(b, v);
    if (!isfinite(v))
        coho__sbuf_add(b, "\"", 1);
}

static void json_series(coho__sbuf_t *b, const series_t *s)
{
    const family_t *f = s->fam;

    coho__sbuf_adds(b, "{\"labels\":{");
    for (unsigned i = 0; i < f->nlabels; i++) {
        if (i > 0)
            coho__sbuf_add(b, ",", 1);
        coho__sbuf_json_string(b, f->labels[i]);
        coho__sbuf_add(b, ":", 1);
        coho__sbuf_json_string(b, s->values[i]);
    }
    coho__sbuf_adds(b, "},");
    if (f->type == TYPE_HISTOGRAM) {
        uint64_t counts[COHO_METRICS_BUCKETS_MAX + 1], cum = 0, total = 0;
        double sum = histogram_snapshot(s, counts);

        for (unsigned i = 0; i <= f->nbounds; i++)
            total += counts[i];
        coho__sbuf_printf(b, "\"count\":%" PRIu64 ",\"sum\":", total);
        json_double(b, sum);
        coho__sbuf_adds(b, ",\"buckets\":[");
        for (unsigned i = 0; i <= f->nbounds; i++) {
            cum += counts[i];
            coho__sbuf_adds(b, i > 0 ? ",{\"le\":" : "{\"le\":");
            if (i < f->nbounds)
                coho__sbuf_double(b, f->bounds[i]);
            else
                coho__sbuf_adds(b, "\"+Inf\"");
            coho__sbuf_printf(b, ",\"count\":%" PRIu64 "}", cum);
        }
        coho__sbuf_adds(b, "]}");
        return;
    }
    coho__sbuf_adds(b, "\"value\":");
    if (s->kind == KIND_FN)
        json_double(b, s->read(s->arg, s->key));
    else if (f->type == COHO_METRIC_COUNTER)
        coho__sbuf_printf(b, "%" PRIu64, counter_sum(s));
    else
        json_double(b, bitsd(atomic_load_explicit(&s->g, memory_order_relaxed)));
    coho__sbuf_add(b, "}", 1);
}

static void json_render(coho_metrics_t *m, coho__sbuf_t *b)
{
    bool first = true;

    coho__sbuf_add(b, "{", 1);
    pthread_mutex_lock(&m->mu);
    for (const family_t *f = m->first; f != NULL; f = f->next) {
        if (f->first == NULL)
            continue;
        if (!first)
            coho__sbuf_add(b, ",", 1);
        first = false;
        coho__sbuf_json_string(b, f->name);
        coho__sbuf_printf(b, ":{\"type\":\"%s\",\"help\":", type_name(f->type));
        coho__sbuf_json_string(b, f->help);
        coho__sbuf_adds(b, ",\"series\":[");
        for (const series_t *s = f->first; s != NULL; s = s->next) {
            if (s != f->first)
                coho__sbuf_add(b, ",", 1);
            json_series(b, s);
        }
        coho__sbuf_adds(b, "]}");
    }
    pthread_mutex_unlock(&m->mu);
    coho__sbuf_add(b, "}", 1);
}

char *coho_metrics_render_json(coho_metrics_t *m, size_t *len)
{
    coho__sbuf_t b;
    char *out;

    if (m == NULL) {
        errno = EINVAL;
        return NULL;
    }
    coho__sbuf_init(&b);
    json_render(m, &b);
    out = coho__sbuf_take(&b, len);
    if (out == NULL)
        errno = ENOMEM;
    return out;
}
