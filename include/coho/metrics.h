/* SPDX-License-Identifier: MIT */
/* A metrics registry: counters, gauges and histograms with fixed buckets, optionally labelled,
 * rendered in the Prometheus text exposition format (version 0.0.4) and as JSON. Part of
 * libcoho_net (link coho::net); the admin HTTP server (coho/admin.h) serves both renderings.
 *
 *     coho_metrics_t *m = coho_metrics_create();
 *     coho_label_t l[] = {{"route", "login"}};
 *     coho_counter_t *calls = coho_metrics_counter(m, "game_calls_total", "Calls.", l, 1);
 *     coho_counter_add(calls, 1);                           // any thread, no lock
 *
 * A metric family is a name, a help text and a type; a series is one set of label values of a
 * family. Asking again for a series that exists returns the same handle, so modules need not
 * share pointers. Handles live as long as the registry.
 *
 * Increments are cheap from any thread: a counter or histogram is split in cache-line-sized
 * shards, a thread adds to its own shard with one relaxed atomic operation (no lock, no
 * allocation), and a scrape sums the shards. Registration and rendering take the registry's
 * mutex. Returns: 0 / -1 + errno; pointers NULL + errno. */
#ifndef COHO_METRICS_H
#define COHO_METRICS_H

#include "coho/common.h"

COHO_EXTERN_C_BEGIN

typedef struct coho_metrics coho_metrics_t;     /* opaque; any thread */
typedef struct coho_counter coho_counter_t;     /* opaque; owned by its registry */
typedef struct coho_gauge coho_gauge_t;         /* opaque; owned by its registry */
typedef struct coho_histogram coho_histogram_t; /* opaque; owned by its registry */

/* One label of a series: a name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with "__") and any
 * UTF-8 value (escaped when rendered). Both are copied at registration. */
typedef struct coho_label {
    const char *name;
    const char *value;
} coho_label_t;

/* Most labels per series. */
#define COHO_METRICS_LABELS_MAX 8
/* Most buckets per histogram (+Inf not counted). */
#define COHO_METRICS_BUCKETS_MAX 64

/* Metric types (coho_metrics_add_fn). */
enum {
    COHO_METRIC_COUNTER = 0,
    COHO_METRIC_GAUGE = 1,
};

/* Creates an empty registry. Any thread. NULL + ENOMEM. */
COHO_API coho_metrics_t *coho_metrics_create(void);

/* Destroys `m` and every handle it gave out. Any thread, once nothing uses `m` or its handles
 * (stop the admin servers and the servers registered into it first). NULL is a no-op. */
COHO_API void coho_metrics_destroy(coho_metrics_t *m);

/* Returns the counter series of family `name` ([a-zA-Z_:][a-zA-Z0-9_:]*; by convention ending
 * in "_total") with these labels (`labels` may be NULL when `nlabels` is 0), creating it (and
 * the family, with `help`: any text, copied) on first use. Every series of a family must have
 * the same label names in the same order. Any thread. Errors: EINVAL (bad name, label or
 * help; the family exists with another type or other label names; too many labels), ENOMEM. */
COHO_API coho_counter_t *coho_metrics_counter(coho_metrics_t *m, const char *name, const char *help,
                                              const coho_label_t *labels, unsigned nlabels);

/* As coho_metrics_counter, for a gauge (a value that goes up and down, starting at 0). */
COHO_API coho_gauge_t *coho_metrics_gauge(coho_metrics_t *m, const char *name, const char *help,
                                          const coho_label_t *labels, unsigned nlabels);

/* As coho_metrics_counter, for a histogram whose buckets have the upper bounds `bounds`
 * (`nbounds` finite values, strictly increasing, at most COHO_METRICS_BUCKETS_MAX; a +Inf
 * bucket is implicit). Every series of a family has the family's first bounds; a different
 * list is EINVAL. The label name "le" is reserved. */
COHO_API coho_histogram_t *coho_metrics_histogram(coho_metrics_t *m, const char *name,
                                                  const char *help, const coho_label_t *labels,
                                                  unsigned nlabels, const double *bounds,
                                                  unsigned nbounds);

/* Registers a series whose value is read when the registry is rendered: read(arg, key) is
 * called (any thread, under the registry's mutex: it must not call back into `m`) and must
 * not park. `type` is COHO_METRIC_COUNTER or COHO_METRIC_GAUGE. Remove the series with
 * coho_metrics_remove_fn(m, arg) before `arg` goes away. Any thread. Errors: EINVAL (as
 * coho_metrics_counter; NULL read; the series exists), ENOMEM. */
COHO_API int coho_metrics_add_fn(coho_metrics_t *m, int type, const char *name, const char *help,
                                 const coho_label_t *labels, unsigned nlabels,
                                 double (*read)(void *arg, int key), void *arg, int key);

/* Removes every series registered with coho_metrics_add_fn(..., arg, ...); when this returns
 * no read(arg, ...) is running or will run. A family left without series is not rendered.
 * Any thread. Returns the number of series removed (0 when none). */
COHO_API size_t coho_metrics_remove_fn(coho_metrics_t *m, void *arg);

/* Adds `n` to counter `c`. Any thread, never parks, no lock; NULL is a no-op. */
COHO_API void coho_counter_add(coho_counter_t *c, uint64_t n);

/* The counter's value now (the sum of its shards). Any thread. 0 for NULL. */
COHO_API uint64_t coho_counter_get(const coho_counter_t *c);

/* Sets / adds to gauge `g` (one atomic word shared by all threads). Any thread; NULL is a
 * no-op. */
COHO_API void coho_gauge_set(coho_gauge_t *g, double v);
COHO_API void coho_gauge_add(coho_gauge_t *g, double delta);

/* The gauge's value now. Any thread. 0 for NULL. */
COHO_API double coho_gauge_get(const coho_gauge_t *g);

/* Records one observation `v` in histogram `h`: the first bucket whose bound is >= v (else
 * +Inf), the sum and the count. NaN is ignored. Any thread, never parks, no lock; NULL is a
 * no-op. */
COHO_API void coho_histogram_observe(coho_histogram_t *h, double v);

/* The histogram's observation count and sum now (either may be NULL). Any thread. */
COHO_API void coho_histogram_get(const coho_histogram_t *h, uint64_t *count, double *sum);

/* Renders every family of `m` in the Prometheus text exposition format 0.0.4 (families in
 * registration order, each with its "# HELP" and "# TYPE" lines; label values and help
 * escaped; histograms as cumulative _bucket lines ending in le="+Inf", then _sum and _count)
 * into a NUL-terminated string the caller frees with free(), its length in *len (if not NULL).
 * Any thread. NULL + EINVAL or ENOMEM. */
COHO_API char *coho_metrics_render_prometheus(coho_metrics_t *m, size_t *len);

/* Renders every family of `m` as one JSON object:
 *   {"<name>": {"type": "counter", "help": "...",
 *               "series": [{"labels": {"server": "game"}, "value": 12}, ...]}, ...}
 * histogram series carry "count", "sum" and "buckets": [{"le": 0.1, "count": 3}, ...,
 * {"le": "+Inf", "count": 7}] (cumulative). Non-finite gauge values are rendered as the strings
 * "NaN", "+Inf", "-Inf". Returned as coho_metrics_render_prometheus does. */
COHO_API char *coho_metrics_render_json(coho_metrics_t *m, size_t *len);

COHO_EXTERN_C_END

#endif /* COHO_METRICS_H */
