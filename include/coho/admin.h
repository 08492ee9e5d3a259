/* SPDX-License-Identifier: MIT */
/* The admin HTTP server of libcoho_net: a small HTTP/1.1 server (a coho server, one coroutine
 * per connection, requests parsed with http-parser) for operators and scrapers:
 *
 *   GET /metrics     the registry in the Prometheus text format (text/plain; version=0.0.4)
 *   GET /stats       JSON: {"metrics": <the registry as JSON>, "<section>": <a user's value>}
 *   GET /coroutines  the live dump (coho_sched_dump_to) of every registered scheduler
 *
 * Anything else is 404; a method other than GET is 405; a malformed request is 400 and closes
 * the connection; a request head (request line and headers) longer than max_request is 431 and
 * closes it. Connections are kept alive (HTTP/1.1, or HTTP/1.0 with keep-alive); a request with
 * a body is answered, then its connection closed.
 *
 *     coho_metrics_t *m = coho_metrics_create();
 *     coho_server_register_metrics(game, m, "game");
 *     coho_admin_t *a = coho_admin_start("127.0.0.1:9100", m, NULL);
 *     ...
 *     coho_admin_stop(a);
 *     coho_metrics_destroy(m);
 *
 * Returns: 0 / -1 + errno; pointers NULL + errno. */
#ifndef COHO_ADMIN_H
#define COHO_ADMIN_H

#include "coho/common.h"
#include "coho/metrics.h"
#include "coho/sched.h"

COHO_EXTERN_C_BEGIN

typedef struct coho_admin coho_admin_t;           /* opaque */
typedef struct coho_admin_json coho_admin_json_t; /* opaque; a section's output */
typedef struct coho_server coho_server_t;         /* coho/net.h */

typedef struct coho_admin_opts {
    coho_sched_t *sched;      /* run on this scheduler, which must be the calling thread's (as
                                 coho_server_opts_t.sched); NULL (default): a thread of its own */
    size_t max_request;       /* bytes of a request head at most; default 8192 */
    unsigned max_conns;       /* connections at once at most; default 64 */
    uint64_t idle_ms;         /* a connection without a whole request for this long is closed
                                 (slow clients included); default 30000 */
    uint64_t dump_timeout_ms; /* /coroutines waits this long for each scheduler's dump;
                                 default 1000 */
} coho_admin_opts_t;

/* Fills `o` with the defaults listed above. Any context. */
COHO_API void coho_admin_opts_init(coho_admin_opts_t *o);

/* Starts an admin server listening on `host_port` ("127.0.0.1:9100"; port 0 picks one:
 * coho_admin_port) serving `metrics` (borrowed: it must outlive the admin server; NULL serves an
 * empty registry). NULL `o`: defaults. Any thread (with o->sched: that scheduler's thread).
 * Returns NULL with errno EINVAL (bad options or address), EADDRINUSE, ENOMEM, or the socket,
 * bind or thread error. */
COHO_API coho_admin_t *coho_admin_start(const char *host_port, coho_metrics_t *metrics,
                                        const coho_admin_opts_t *o);

/* The bound port (host order), or -1 with EINVAL. Any thread. */
COHO_API int coho_admin_port(const coho_admin_t *a);

/* Stops `a` (open requests get a second to finish) and frees it. Parks inside a coroutine,
 * blocks a plain thread. Errors: EINVAL, and coho_server_stop's (EDEADLK: from an admin
 * request, or on o->sched's thread outside a coroutine). */
COHO_API int coho_admin_stop(coho_admin_t *a);

/* Adds scheduler `s` to /coroutines under `name` (copied; NULL: none). The dump runs on `s`'s
 * thread (posted), so `s` must keep running posts; remove `s` before it is destroyed. Any
 * thread. Errors: EINVAL, EEXIST (already added), ENOMEM. */
COHO_API int coho_admin_add_sched(coho_admin_t *a, coho_sched_t *s, const char *name);

/* Removes scheduler `s` from /coroutines. Any thread. Errors: EINVAL, ENOENT. */
COHO_API int coho_admin_remove_sched(coho_admin_t *a, coho_sched_t *s);

/* Adds a section to /stats: for each request, fn(out, arg) writes one JSON value (an object,
 * usually) with the coho_admin_json_* functions, which /stats shows under key `name` (copied;
 * not "metrics"). fn runs on the admin server's thread under its section lock (so
 * coho_admin_remove_section waits for it) and must not park or call coho_admin_* on `a`;
 * writing nothing yields null. Any thread. Errors: EINVAL, EEXIST (the name is taken), ENOMEM. */
COHO_API int coho_admin_add_section(coho_admin_t *a, const char *name,
                                    void (*fn)(coho_admin_json_t *out, void *arg), void *arg);

/* Removes the section `name`; when this returns fn is not running. Any thread. Errors: EINVAL,
 * ENOENT. */
COHO_API int coho_admin_remove_section(coho_admin_t *a, const char *name);

/* Appends JSON text as it is (the caller keeps it valid). Inside a section's fn. */
COHO_API void coho_admin_json_raw(coho_admin_json_t *out, const char *json);

/* Appends printf output as it is (numbers, punctuation). Inside a section's fn. */
COHO_API void coho_admin_json_printf(coho_admin_json_t *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Appends `s` as a JSON string: quoted, with '"', '\\' and control characters escaped. Inside a
 * section's fn. */
COHO_API void coho_admin_json_string(coho_admin_json_t *out, const char *s);

/* Registers the counters of server `s` (coho_server_get_stats) into `m` with the label
 * server="<name>" (copied):
 *   coho_server_accepted_total, coho_server_rejected_total{reason="max_conns|per_ip|acl|fds|
 *   other"}, coho_server_accept_errors_total, coho_server_connections (open now, a gauge),
 *   coho_server_received_bytes_total, coho_server_sent_bytes_total,
 *   coho_server_received_frames_total, coho_server_sent_frames_total,
 *   coho_server_queue_full_closes_total, coho_server_idle_kicks_total,
 *   coho_server_rate_limited_total, coho_server_protocol_errors_total,
 *   coho_server_send_stale_total.
 * They are read at each scrape (no cost per event beyond the server's own counters) and leave
 * `m` when the server stops. A server may be registered into several registries, once into
 * each. Any thread. Errors: EINVAL (NULL, or another server registered in `m` under `name`),
 * EEXIST (`s` is registered in `m` already), ENOMEM. */
COHO_API int coho_server_register_metrics(coho_server_t *s, coho_metrics_t *m, const char *name);

COHO_EXTERN_C_END

#endif /* COHO_ADMIN_H */
