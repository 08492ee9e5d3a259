// SPDX-License-Identifier: MIT
// The logic node's metrics, in its net/ registry (served by net/'s admin server: GET /metrics,
// GET /stats). Per route: calls, errors, slow calls, bytes in and out, a latency histogram; the
// node: pushes, malformed frames, gateways, players, scenes, the database pool, coroutines,
// memory (mallinfo2), read from the node's state at each scrape.
#include <malloc.h>

#include <cmath>
#include <string>
#include <system_error>
#include <vector>

#include <coho.h>

#include "game/logic/node.hpp"

namespace coho::game::logic {

namespace {

// What read_metric reads (the series' key).
enum Key {
    kPushesSent,
    kPushesDropped,
    kBadFrames,
    kStaleRequests,
    kDbErrors,
    kGateways,
    kGatewayConns,
    kGatewayProtocolErrors,
    kRequests,
    kPlayers,
    kScenes,
    kSceneEntities,
    kDbConns,
    kDbConnsIdle,
    kCoroutines,
    kCoroutinesRunning,
    kHeapInUse,
    kHeapFromSystem,
    kDbPings,
    kDbDeadReplaced,
    kDirtyPlayers,
    kJournalBytes,
    kJournalSaves,
    kSaveFlushes,
    kSaves,
    kSaveRetries,
    kSavesJournaled,
    kSavesReplayed,
    kSaveSqlErrors,
    kDirtyWaits,
    kCbufChunks,
    kCbufBytes,
    kCbufIdleBytes,
    // Per kind of query (read, write): kQueries + kind, kQueryErrors + kind, and
    // kQueryLatency + 4 * kind + stat (min, avg, max, p99).
    kQueries = 100,
    kQueryErrors = 102,
    kQueryLatency = 110,
};

const char *const kKinds[] = {"read", "write"};
const char *const kLatencyStats[] = {"min", "avg", "max", "p99"};

struct Series {
    Key key;
    int type;
    const char *name, *help;
};

const Series kSeries[] = {
    {kPushesSent, COHO_METRIC_COUNTER, "coho_logic_pushes_sent_total",
     "One-way frames sent to gateways."},
    {kPushesDropped, COHO_METRIC_COUNTER, "coho_logic_pushes_dropped_total",
     "One-way frames dropped: no connection to their gateway."},
    {kBadFrames, COHO_METRIC_COUNTER, "coho_logic_bad_frames_total", "Frames that did not parse."},
    {kStaleRequests, COHO_METRIC_COUNTER, "coho_logic_stale_requests_total",
     "Requests refused (status 3) on a gateway connection opened under an earlier lease."},
    {kDbErrors, COHO_METRIC_COUNTER, "coho_logic_db_errors_total",
     "Failed database connects and statements."},
    {kGateways, COHO_METRIC_GAUGE, "coho_logic_gateways", "Gateways connected (by HELLO)."},
    {kGatewayConns, COHO_METRIC_GAUGE, "coho_logic_gateway_connections",
     "Gateway connections open."},
    {kGatewayProtocolErrors, COHO_METRIC_COUNTER, "coho_logic_gateway_protocol_errors_total",
     "Gateway connections closed for a malformed frame."},
    {kRequests, COHO_METRIC_COUNTER, "coho_logic_requests_total", "Request frames received."},
    {kPlayers, COHO_METRIC_GAUGE, "coho_logic_players_loaded", "Players in memory."},
    {kScenes, COHO_METRIC_GAUGE, "coho_logic_scenes", "Scenes with someone in them."},
    {kSceneEntities, COHO_METRIC_GAUGE, "coho_logic_scene_entities", "Entities in all scenes."},
    {kDbConns, COHO_METRIC_GAUGE, "coho_logic_db_connections", "Database connections open."},
    {kDbConnsIdle, COHO_METRIC_GAUGE, "coho_logic_db_connections_idle",
     "Database connections idle."},
    {kCoroutines, COHO_METRIC_GAUGE, "coho_logic_coroutines", "Coroutines held by the scheduler."},
    {kCoroutinesRunning, COHO_METRIC_GAUGE, "coho_logic_coroutines_running",
     "Coroutines not finished."},
    {kHeapInUse, COHO_METRIC_GAUGE, "coho_logic_heap_in_use_bytes",
     "malloc'd bytes in use (mallinfo2)."},
    {kHeapFromSystem, COHO_METRIC_GAUGE, "coho_logic_heap_from_system_bytes",
     "Bytes malloc took from the system."},
    {kDbPings, COHO_METRIC_COUNTER, "coho_logic_db_pings_total",
     "Pings of idle database connections."},
    {kDbDeadReplaced, COHO_METRIC_COUNTER, "coho_logic_db_dead_connections_replaced_total",
     "Idle database connections that failed their ping and were replaced."},
    {kDirtyPlayers, COHO_METRIC_GAUGE, "coho_logic_dirty_players",
     "Players changed and not yet handed to the saver (the dirty set)."},
    {kJournalBytes, COHO_METRIC_GAUGE, "coho_logic_journal_bytes",
     "Bytes of saves in the journal, waiting for the database."},
    {kJournalSaves, COHO_METRIC_GAUGE, "coho_logic_journal_saves",
     "Saves in the journal, waiting for the database."},
    {kSaveFlushes, COHO_METRIC_COUNTER, "coho_logic_save_flushes_total",
     "Rounds of the saver that saved something."},
    {kSaves, COHO_METRIC_COUNTER, "coho_logic_saves_total",
     "Player saves written to the database."},
    {kSaveRetries, COHO_METRIC_COUNTER, "coho_logic_save_retries_total",
     "Save statements tried again after a network error."},
    {kSavesJournaled, COHO_METRIC_COUNTER, "coho_logic_saves_journaled_total",
     "Player saves appended to the journal (the database away)."},
    {kSavesReplayed, COHO_METRIC_COUNTER, "coho_logic_saves_replayed_total",
     "Player saves replayed from the journal."},
    {kSaveSqlErrors, COHO_METRIC_COUNTER, "coho_logic_save_sql_errors_total",
     "Player saves the database refused (written to the error file, not retried)."},
    {kDirtyWaits, COHO_METRIC_COUNTER, "coho_logic_dirty_waits_total",
     "Changes that waited for room in the full dirty set."},
    {kCbufChunks, COHO_METRIC_GAUGE, "coho_logic_cbuf_chunks",
     "Socket buffer chunks allocated (held by connections or idle in a pool)."},
    {kCbufBytes, COHO_METRIC_GAUGE, "coho_logic_cbuf_bytes", "Bytes of those chunks."},
    {kCbufIdleBytes, COHO_METRIC_GAUGE, "coho_logic_cbuf_idle_bytes",
     "Bytes of socket buffer chunks idle in the node thread's pool."},
};

} // namespace

void Node::register_metrics()
{
    for (const Series &s : kSeries)
        if (coho_metrics_add_fn(metrics_.native_handle(), s.type, s.name, s.help, nullptr, 0,
                                &Node::read_metric, this, s.key) != 0)
            throw std::system_error(errno, std::generic_category(), "coho_metrics_add_fn");
    auto *m = metrics_.native_handle();
    for (int kind = 0; kind < 2; kind++) {
        const coho_label_t k[] = {{"kind", kKinds[kind]}};
        if (coho_metrics_add_fn(m, COHO_METRIC_COUNTER, "coho_logic_db_queries_total",
                                "Database queries (read: with a result set; write: without).", k, 1,
                                &Node::read_metric, this, kQueries + kind) != 0 ||
            coho_metrics_add_fn(m, COHO_METRIC_COUNTER, "coho_logic_db_query_errors_total",
                                "Database queries that failed.", k, 1, &Node::read_metric, this,
                                kQueryErrors + kind) != 0)
            throw std::system_error(errno, std::generic_category(), "coho_metrics_add_fn");
        for (int stat = 0; stat < 4; stat++) {
            const coho_label_t l[] = {{"kind", kKinds[kind]}, {"stat", kLatencyStats[stat]}};
            if (coho_metrics_add_fn(m, COHO_METRIC_GAUGE, "coho_logic_db_query_latency_seconds",
                                    "Database query latency: min, avg and max since the start, "
                                    "p99 of the last 4096 queries of the kind.",
                                    l, 2, &Node::read_metric, this,
                                    kQueryLatency + 4 * kind + stat) != 0)
                throw std::system_error(errno, std::generic_category(), "coho_metrics_add_fn");
        }
    }
}

RouteStats &Node::route_stats(int route)
{
    auto it = stats_.find(route);
    if (it != stats_.end())
        return it->second;
    // A route's first call: register its series (the registry allocates, once per route).
    static const std::vector<double> bounds = [] {
        std::vector<double> b;
        for (uint64_t us : RouteStats::kBucketsUs)
            b.push_back(double(us) / 1e6);
        return b;
    }();
    const coho::net::Labels l = {
        {"route", route == kOtherRoutes ? std::string("other") : std::to_string(route)}};
    RouteStats st;
    st.calls = metrics_.counter("coho_logic_route_calls_total", "Calls per route.", l);
    st.errors = metrics_.counter("coho_logic_route_errors_total",
                                 "Calls per route answered with a non-zero status.", l);
    st.slow = metrics_.counter("coho_logic_route_slow_total",
                               "Calls per route that took more than 50 ms.", l);
    st.bytes_in =
        metrics_.counter("coho_logic_route_in_bytes_total", "Request payload bytes per route.", l);
    st.bytes_out = metrics_.counter("coho_logic_route_out_bytes_total",
                                    "Response payload bytes per route.", l);
    st.latency =
        metrics_.histogram("coho_logic_route_latency_seconds", "Time to answer a call.", bounds, l);
    return stats_.emplace(route, st).first->second;
}

// Runs under the registry's mutex, on the node's scheduler (the admin server runs there).
double Node::read_metric(void *node, int key)
{
    const Node &n = *static_cast<const Node *>(node);
    if (key >= kQueries) {
        const QueryStats &q =
            (key >= kQueryLatency ? (key - kQueryLatency) / 4 : (key - kQueries) % 2) == 0
                ? n.db_.reads()
                : n.db_.writes();
        if (key < kQueryErrors)
            return double(q.count());
        if (key < kQueryLatency)
            return double(q.failed());
        switch ((key - kQueryLatency) % 4) {
        case 0:
            return double(q.min_us()) / 1e6;
        case 1:
            return q.avg_us() / 1e6;
        case 2:
            return double(q.max_us()) / 1e6;
        default:
            return double(q.p99_us()) / 1e6;
        }
    }
    const PersistStats &ps = n.store_.stats();
    switch (Key(key)) {
    case kDbPings:
        return double(n.db_.pings());
    case kDbDeadReplaced:
        return double(n.db_.dead_replaced());
    case kDirtyPlayers:
        return double(n.store_.dirty_size());
    case kJournalBytes:
        return double(n.store_.journal_bytes());
    case kJournalSaves:
        return double(n.store_.journal_records());
    case kSaveFlushes:
        return double(ps.flushes);
    case kSaves:
        return double(ps.saves);
    case kSaveRetries:
        return double(ps.retries);
    case kSavesJournaled:
        return double(ps.journaled);
    case kSavesReplayed:
        return double(ps.replayed);
    case kSaveSqlErrors:
        return double(ps.sql_errors);
    case kDirtyWaits:
        return double(ps.dirty_waits);
    case kQueries:
    case kQueryErrors:
    case kQueryLatency:
        break;
    case kPushesSent:
        return double(n.pushes_sent_);
    case kPushesDropped:
        return double(n.pushes_dropped_);
    case kBadFrames:
        return double(n.bad_frames_);
    case kStaleRequests:
        return double(n.stale_requests_);
    case kDbErrors:
        return double(n.db_.error_count());
    case kGateways:
        return double(n.gates_.size());
    case kGatewayConns:
    case kGatewayProtocolErrors:
    case kRequests: {
        coho_tdp_stats_t ts{};
        if (n.pool_)
            coho_tdp_get_stats(n.pool_.native_handle(), &ts);
        return double(key == kGatewayConns ? ts.conns_open
                      : key == kRequests   ? ts.requests_in
                                           : ts.protocol_errors);
    }
    case kPlayers:
        return double(n.players.size());
    case kScenes:
        return double(n.scenes.size());
    case kSceneEntities: {
        size_t entities = 0;
        for (auto &sc : n.scenes)
            entities += sc.second->grid.size();
        return double(entities);
    }
    case kDbConns:
        return double(n.db_.open_count());
    case kDbConnsIdle:
        return double(n.db_.idle_count());
    case kCoroutines:
    case kCoroutinesRunning: {
        coho_sched_stats_t ss{};
        coho_sched_get_stats(n.sched_.native_handle(), &ss);
        return double(key == kCoroutines ? ss.coroutines : ss.unfinished);
    }
    case kHeapInUse:
    case kHeapFromSystem: {
        const struct mallinfo2 mi = mallinfo2();
        return double(key == kHeapInUse ? mi.uordblks + mi.hblkhd : mi.arena + mi.hblkhd);
    }
    case kCbufChunks:
    case kCbufBytes:
    case kCbufIdleBytes: {
        coho_cbuf_pool_stats_t st{};
        coho_cbuf_pool_get_stats(&st);
        return double(key == kCbufChunks  ? st.process_chunks
                      : key == kCbufBytes ? st.process_bytes
                                          : st.idle_bytes);
    }
    }
    return NAN;
}

void Node::stats_json(coho::net::Json &j) const
{
    j.raw("{\"node_id\":").number(cfg_.node_id).raw(",\"routes\":{");
    bool first = true;
    for (auto &[route, st] : stats_) {
        j.raw(first ? "" : ",");
        if (route == kOtherRoutes)
            j.string("other");
        else
            j.raw("\"").number(unsigned(route)).raw("\"");
        j.raw(":{\"calls\":");
        j.number(st.calls.value()).raw(",\"errors\":").number(st.errors.value());
        j.raw(",\"slow\":").number(st.slow.value());
        j.raw(",\"bytes_in\":").number(st.bytes_in.value());
        j.raw(",\"bytes_out\":").number(st.bytes_out.value());
        j.raw(",\"latency_us_sum\":").number(uint64_t(std::llround(st.latency.sum() * 1e6)));
        j.raw("}");
        first = false;
    }
    coho_sched_stats_t ss{};
    coho_sched_get_stats(sched_.native_handle(), &ss);
    j.raw("},\"pushes_sent\":").number(pushes_sent_);
    j.raw(",\"pushes_dropped\":").number(pushes_dropped_);
    j.raw(",\"bad_frames\":").number(bad_frames_);
    j.raw(",\"stale_requests\":").number(stale_requests_);
    j.raw(",\"gateways\":").number(gates_.size());
    j.raw(",\"players\":").number(players.size());
    j.raw(",\"scenes\":").number(scenes.size());
    j.raw(",\"db_connections\":").number(db_.open_count());
    j.raw(",\"db_errors\":").number(db_.error_count());
    j.raw(",\"db_reads\":").number(db_.reads().count());
    j.raw(",\"db_writes\":").number(db_.writes().count());
    j.raw(",\"dirty_players\":").number(store_.dirty_size());
    j.raw(",\"journal_saves\":").number(store_.journal_records());
    j.raw(",\"journal_bytes\":").number(store_.journal_bytes());
    j.raw(",\"saves\":").number(store_.stats().saves);
    j.raw(",\"saves_journaled\":").number(store_.stats().journaled);
    j.raw(",\"saves_replayed\":").number(store_.stats().replayed);
    j.raw(",\"save_sql_errors\":").number(store_.stats().sql_errors);
    j.raw(",\"coroutines\":").number(ss.coroutines);
    j.raw("}");
}

} // namespace coho::game::logic
