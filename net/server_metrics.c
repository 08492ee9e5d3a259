/* SPDX-License-Identifier: MIT */
/* coho_server_register_metrics: a server's counters (coho_server_get_stats) as callback series
 * of a metrics registry, read at each scrape. */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include <coho/admin.h>
#include <coho/metrics.h>
#include <coho/net.h>

#include "net/internal.h"

typedef struct stat_series {
    const char *name;
    const char *help;
    int type;
    const char *reason; /* coho_server_rejected_total's label, else NULL */
    size_t off;         /* of the field in coho_server_stats_t */
} stat_series_t;

#define F(field) offsetof(coho_server_stats_t, field)

static const stat_series_t series[] = {
    {"coho_server_accepted_total", "Connections accepted and handed to a handler.",
     COHO_METRIC_COUNTER, NULL, F(accepted)},
    {"coho_server_rejected_total", "Connections shed at accept, by reason.", COHO_METRIC_COUNTER,
     "max_conns", F(rejected_max)},
    {"coho_server_rejected_total", "", COHO_METRIC_COUNTER, "per_ip", F(rejected_per_ip)},
    {"coho_server_rejected_total", "", COHO_METRIC_COUNTER, "acl", F(rejected_acl)},
    {"coho_server_rejected_total", "", COHO_METRIC_COUNTER, "fds", F(rejected_fds)},
    {"coho_server_rejected_total", "", COHO_METRIC_COUNTER, "other", F(rejected_other)},
    {"coho_server_accept_errors_total", "Accept failures backed off from.", COHO_METRIC_COUNTER,
     NULL, F(accept_errors)},
    {"coho_server_connections", "Connections open now.", COHO_METRIC_GAUGE, NULL, F(conns_open)},
    {"coho_server_received_bytes_total", "Bytes read from sockets.", COHO_METRIC_COUNTER, NULL,
     F(bytes_in)},
    {"coho_server_sent_bytes_total", "Bytes written to sockets.", COHO_METRIC_COUNTER, NULL,
     F(bytes_out)},
    {"coho_server_received_frames_total", "Frames handed to handlers.", COHO_METRIC_COUNTER, NULL,
     F(frames_in)},
    {"coho_server_sent_frames_total", "Frames written whole.", COHO_METRIC_COUNTER, NULL,
     F(frames_out)},
    {"coho_server_queue_full_closes_total", "Connections closed at their send-queue bound.",
     COHO_METRIC_COUNTER, NULL, F(queue_full_closes)},
    {"coho_server_idle_kicks_total", "Connections kicked for idle_ms without a frame.",
     COHO_METRIC_COUNTER, NULL, F(idle_kicks)},
    {"coho_server_rate_limited_total", "Frames dropped by the per-connection rate limit.",
     COHO_METRIC_COUNTER, NULL, F(rate_limited)},
    {"coho_server_protocol_errors_total", "Oversize or malformed frames, EOF inside a frame.",
     COHO_METRIC_COUNTER, NULL, F(protocol_errors)},
    {"coho_server_send_stale_total", "Sends to departed connections.", COHO_METRIC_COUNTER, NULL,
     F(send_stale)},
};

#undef F

static double read_stat(void *arg, int key)
{
    coho_server_stats_t st;
    uint64_t v;

    if (coho_server_get_stats(arg, &st) != 0)
        return 0;
    memcpy(&v, (const char *)&st + (size_t)key, sizeof(v));
    return (double)v;
}

int coho_server_register_metrics(coho_server_t *s, coho_metrics_t *m, const char *name)
{
    const char *help = NULL;

    if (s == NULL || m == NULL || name == NULL)
        return coho__net_ret(-EINVAL);
    /* Once per registry, so a failure below can take back exactly what this call added. */
    if (coho__metrics_count_fn(m, s) > 0)
        return coho__net_ret(-EEXIST);
    for (size_t i = 0; i < sizeof(series) / sizeof(series[0]); i++) {
        coho_label_t l[2] = {{"server", name}, {"reason", series[i].reason}};
        int rc;

        if (series[i].help[0] != '\0')
            help = series[i].help;
        rc =
            coho_metrics_add_fn(m, series[i].type, series[i].name, help, l,
                                series[i].reason != NULL ? 2 : 1, read_stat, s, (int)series[i].off);
        if (rc != 0) {
            int err = errno;
            coho_metrics_remove_fn(m, s);
            return coho__net_ret(-err);
        }
    }
    return 0;
}
