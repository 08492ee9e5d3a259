// SPDX-License-Identifier: MIT
// What the admin port (--admin, net/'s admin server) shows of the gateway: its counters as
// callback series of the metrics registry, the per-route series, and the /stats sections
// "gate" (the counters as a flat object) and "conns" (the busiest connections).
#include <malloc.h>

#include <algorithm>
#include <iterator>

#include "gate.hpp"

namespace coho::game::gate {

namespace {

// A series read at each scrape: an atomic of Counters, or (field == nullptr) gate_value(key).
struct Metric {
    const char *name, *help;
    int type;
    std::atomic<uint64_t> Counters::*field;
    int key;
};

enum { kSessions, kGroups, kHeap, kCbufChunks, kCbufBytes };

constexpr int C = COHO_METRIC_COUNTER, G = COHO_METRIC_GAUGE;
const Metric kMetrics[] = {
    {"coho_gate_connections_accepted_total", "client connections accepted", C, &Counters::accepted,
     0},
    {"coho_gate_connections_open", "client connections open", G, &Counters::conns_open, 0},
    {"coho_gate_connections_refused_total",
     "connections refused with KICK 7 (max-conns, per-ip-max)", C, &Counters::refused, 0},
    {"coho_gate_sessions", "sessions, connected or in their grace period", G, nullptr, kSessions},
    {"coho_gate_groups", "named groups with members", G, nullptr, kGroups},
    {"coho_gate_logins_total", "successful logins", C, &Counters::logins, 0},
    {"coho_gate_login_failures_total", "failed logins", C, &Counters::login_failures, 0},
    {"coho_gate_logouts_total", "logouts", C, &Counters::logouts, 0},
    {"coho_gate_rebinds_total", "successful rebinds", C, &Counters::rebinds, 0},
    {"coho_gate_rebind_failures_total", "failed rebinds", C, &Counters::rebind_failures, 0},
    {"coho_gate_calls_total", "calls routed", C, &Counters::calls, 0},
    {"coho_gate_call_failures_total", "calls answered with a non-zero status", C,
     &Counters::call_failures, 0},
    {"coho_gate_call_timeouts_total", "node requests that timed out", C, &Counters::call_timeouts,
     0},
    {"coho_gate_pings_total", "heartbeats answered", C, &Counters::pings, 0},
    {"coho_gate_protocol_errors_total", "connections closed for a protocol error", C,
     &Counters::protocol_errors, 0},
    {"coho_gate_node_frames_total", "frames logic nodes sent unasked", C, &Counters::node_frames,
     0},
    {"coho_gate_node_bad_frames_total", "malformed frames from logic nodes", C,
     &Counters::node_bad_frames, 0},
    {"coho_gate_pushes_total", "pushes queued to sessions", C, &Counters::pushes, 0},
    {"coho_gate_push_drops_total", "pushes a connection refused (kept for a rebind)", C,
     &Counters::push_drops, 0},
    {"coho_gate_sessions_expired_total", "sessions ended by their grace period", C,
     &Counters::sessions_expired, 0},
    {"coho_gate_scene_bad_calls_total", "scene calls without a valid scene id (status 6)", C,
     &Counters::scene_bad_calls, 0},
    {"coho_gate_scene_reentries_total",
     "entities entered again at the new owner of a scene that moved", C, &Counters::scene_reentries,
     0},
};

const char *const kKickNames[8] = {"",         "idle",     "elsewhere",  "slow",
                                   "protocol", "shutdown", "rate_limit", "denied"};

// Called under the registry's mutex; gate().mu is never held while registering or rendering.
uint64_t gate_value(int key)
{
    if (key == kHeap) {
        struct mallinfo2 mi = mallinfo2();
        return mi.uordblks + mi.hblkhd;
    }
    if (key == kCbufChunks || key == kCbufBytes) {
        coho_cbuf_pool_stats_t st{};
        coho_cbuf_pool_get_stats(&st);
        return key == kCbufChunks ? st.process_chunks : st.process_bytes;
    }
    std::lock_guard<std::mutex> g(gate().mu);
    return key == kSessions ? gate().by_id.size() : gate().groups.size();
}

uint64_t metric_value(const Metric &m)
{
    return m.field != nullptr ? (gate().stats.*m.field).load() : gate_value(m.key);
}

double read_metric(void *arg, int)
{
    return double(metric_value(*static_cast<const Metric *>(arg)));
}

double read_atomic(void *arg, int)
{
    return double(static_cast<std::atomic<uint64_t> *>(arg)->load());
}

double read_gate(void *, int key)
{
    return double(gate_value(key));
}

// Sampled each second by the shard's janitor (coho_sched_get_stats is for the scheduler's own
// thread).
double read_shard(void *arg, int key)
{
    const Shard &sh = *static_cast<const Shard *>(arg);
    return double(key == 0   ? sh.coroutines.load()
                  : key == 1 ? sh.user_coroutines.load()
                  : key == 2 ? sh.conns.load()
                             : sh.cbuf_idle_bytes.load());
}

void add_fn(coho::net::Metrics &m, int type, const char *name, const char *help,
            const coho::net::Labels &labels, double (*read)(void *, int), void *arg, int key)
{
    coho::net::detail::CLabels l(labels);
    if (coho_metrics_add_fn(m.native_handle(), type, name, help, l.data(), l.size(), read, arg,
                            key) != 0)
        coho::detail::throw_errno("coho_metrics_add_fn");
}

std::string route_label(int route)
{
    return route == kOtherRoutes ? std::string("other") : std::to_string(route);
}

// Connections by traffic, busiest first (at most kMaxConnsListed).
constexpr size_t kMaxConnsListed = 1000;
void conns_section(coho::net::Json &j)
{
    std::vector<std::shared_ptr<ConnTraffic>> all;
    {
        std::lock_guard<std::mutex> g(gate().conns_mu);
        all.reserve(gate().conns.size());
        for (auto &[id, t] : gate().conns)
            all.push_back(t);
    }
    auto traffic = [](const ConnTraffic &t) { return t.bytes_in.load() + t.bytes_out.load(); };
    size_t n = std::min(all.size(), kMaxConnsListed);
    std::partial_sort(all.begin(), all.begin() + long(n), all.end(),
                      [&](auto &a, auto &b) { return traffic(*a) > traffic(*b); });
    int64_t now = now_ms();
    j.raw("{\"open\":").number(all.size()).raw(",\"conns\":[");
    for (size_t i = 0; i < n; i++) {
        const ConnTraffic &t = *all[i];
        j.raw(i ? ",{\"id\":" : "{\"id\":").number(t.id);
        j.raw(",\"shard\":").number(t.shard).raw(",\"ws\":").raw(t.ws ? "true" : "false");
        j.raw(",\"peer\":").string(t.peer).raw(",\"uid\":").number(t.uid.load());
        j.raw(",\"age_ms\":").number(now - t.since_ms);
        j.raw(",\"frames_in\":").number(t.frames_in.load());
        j.raw(",\"bytes_in\":").number(t.bytes_in.load());
        j.raw(",\"frames_out\":").number(t.frames_out.load());
        j.raw(",\"bytes_out\":").number(t.bytes_out.load()).raw("}");
    }
    j.raw("]}");
}

// The counters without "coho_gate_", and the kicks by reason.
void gate_section(coho::net::Json &j)
{
    j.raw("{");
    for (const Metric &m : kMetrics)
        j.string(m.name + 10).raw(":").number(metric_value(m)).raw(",");
    j.raw("\"kicks\":{");
    for (int r = 1; r < 8; r++)
        j.raw(r > 1 ? "," : "").string(kKickNames[r]).raw(":").number(gate().stats.kicks[r].load());
    j.raw("}}");
}

} // namespace

void register_metrics(coho::net::Metrics &m)
{
    Gate &g = gate();
    for (const Metric &k : kMetrics)
        add_fn(m, k.type, k.name, k.help, {}, read_metric, const_cast<Metric *>(&k), 0);
    for (int r = 1; r < 8; r++)
        add_fn(m, C, "coho_gate_kicks_total", "KICK frames sent, by reason",
               {{"reason", kKickNames[r]}}, read_atomic, &g.stats.kicks[r], 0);
    add_fn(m, G, "coho_gate_heap_bytes", "malloc'd bytes in use (mallinfo2)", {}, read_gate, &g,
           kHeap);
    add_fn(m, G, "coho_gate_cbuf_chunks",
           "socket buffer chunks allocated (held by connections or idle in a thread's pool)", {},
           read_gate, &g, kCbufChunks);
    add_fn(m, G, "coho_gate_cbuf_bytes", "bytes of those chunks", {}, read_gate, &g, kCbufBytes);
    const char *per_shard[][2] = {
        {"coho_gate_shard_coroutines",
         "unfinished coroutines of each thread (sampled each second)"},
        {"coho_gate_shard_user_coroutines",
         "non-daemon coroutines of each thread (sampled each second)"},
        {"coho_gate_shard_connections", "client connections of each thread (sampled each second)"},
        {"coho_gate_shard_cbuf_idle_bytes",
         "bytes of socket buffer chunks idle in each thread's pool (sampled each second)"}};
    for (int k = 0; k < 4; k++)
        for (auto &sh : g.shards)
            add_fn(m, G, per_shard[k][0], per_shard[k][1], {{"shard", std::to_string(sh->index)}},
                   read_shard, sh.get(), k);
}

RouteStat route_stat(int key)
{
    Gate &g = gate();
    std::lock_guard<std::mutex> lock(g.route_mu);
    auto it = g.routes.find(key);
    if (it != g.routes.end())
        return it->second;
    coho::net::Metrics &m = *g.metrics;
    coho::net::Labels l{{"route", route_label(key)}};
    RouteStat s;
    s.calls = m.counter("coho_gate_route_calls_total", "calls by route", l);
    s.errors =
        m.counter("coho_gate_route_errors_total", "calls answered with a non-zero status", l);
    s.slow = m.counter("coho_gate_route_slow_total", "calls slower than 50 ms (logged)", l);
    s.bytes_in = m.counter("coho_gate_route_bytes_in_total", "request payload bytes", l);
    s.bytes_out = m.counter("coho_gate_route_bytes_out_total", "response payload bytes", l);
    s.latency =
        m.histogram("coho_gate_route_latency_seconds",
                    "call latency at the gateway, CALL read to answer queued",
                    std::vector<double>(std::begin(kLatencyBounds), std::end(kLatencyBounds)), l);
    g.routes.emplace(key, s);
    return s;
}

void add_stats_sections(coho::net::Admin &a)
{
    a.add_section("gate", gate_section);
    a.add_section("conns", conns_section);
}

} // namespace coho::game::gate
