// SPDX-License-Identifier: MIT
#include "stats.hpp"

#include <cmath>
#include <cstdio>

#include <coho/log.h>

namespace coho::game::bots {

const char *op_name(int op)
{
    static const char *const names[OP_COUNT] = {
        "login",       "rebind",     "ping",        "echo",     "push.self",
        "player.get",  "player.add", "chat.join",   "chat.say", "chat.leave",
        "scene.enter", "scene.move", "scene.leave", "logout",
    };
    return op >= 0 && op < OP_COUNT ? names[op] : "?";
}

const char *error_name(int kind)
{
    static const char *const names[E_COUNT] = {
        "connect",   "closed",   "protocol", "timeout", "status",   "reply",
        "push_lost", "push_dup", "push_bad", "kicked",  "internal", "aoi_mismatch",
    };
    return kind >= 0 && kind < E_COUNT ? names[kind] : "?";
}

int Histogram::bucket(uint64_t us)
{
    if (us < kSub)
        return int(us);
    int e = 63 - __builtin_clzll(us); // >= 4
    int sub = int((us >> (e - 4)) & (kSub - 1));
    return kSub + (e - 4) * kSub + sub;
}

uint64_t Histogram::upper_edge(int bucket)
{
    if (bucket < kSub)
        return uint64_t(bucket);
    int e = (bucket - kSub) / kSub + 4;
    uint64_t sub = uint64_t((bucket - kSub) % kSub);
    uint64_t lower = (kSub + sub) << (e - 4);
    return lower + (uint64_t(1) << (e - 4)) - 1;
}

void Histogram::add(uint64_t us)
{
    b_[size_t(bucket(us))].fetch_add(1, std::memory_order_relaxed);
    count_.fetch_add(1, std::memory_order_relaxed);
    sum_.fetch_add(us, std::memory_order_relaxed);
    uint64_t m = max_.load(std::memory_order_relaxed);
    while (us > m && !max_.compare_exchange_weak(m, us, std::memory_order_relaxed)) {
    }
}

Histogram::Snapshot Histogram::snapshot() const
{
    Snapshot s;
    for (size_t i = 0; i < s.b.size(); i++)
        s.b[i] = b_[i].load(std::memory_order_relaxed);
    s.count = 0;
    for (auto v : s.b)
        s.count += v; // from the buckets, so quantiles stay consistent with them
    s.sum = sum_.load(std::memory_order_relaxed);
    s.max = max_.load(std::memory_order_relaxed);
    return s;
}

uint64_t Histogram::Snapshot::quantile(double q) const
{
    if (count == 0)
        return 0;
    // Nearest rank: the smallest value with at least q * count values at or below it.
    double want = std::ceil(q * double(count));
    uint64_t rank = want <= 1 ? 0 : uint64_t(want) - 1;
    if (rank >= count)
        rank = count - 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < b.size(); i++) {
        seen += b[i];
        if (seen > rank) {
            uint64_t v = upper_edge(int(i));
            return max && v > max ? max : v;
        }
    }
    return max;
}

Histogram::Snapshot Histogram::Snapshot::minus(const Snapshot &earlier) const
{
    Snapshot d;
    for (size_t i = 0; i < b.size(); i++)
        d.b[i] = b[i] - earlier.b[i];
    d.count = count - earlier.count;
    d.sum = sum - earlier.sum;
    d.max = 0; // unknown for an interval: quantiles use bucket edges alone
    return d;
}

void Stats::ok(int op, uint64_t us)
{
    all.add(us);
    if (!measuring()) {
        warmup_ok.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    lat[op].add(us);
    ok_count[op].fetch_add(1, std::memory_order_relaxed);
}

void Stats::measure_from(Clock::time_point from, double seconds)
{
    from_.store(from.time_since_epoch().count(), std::memory_order_relaxed);
    measured_s_.store(seconds, std::memory_order_relaxed);
}

void Stats::status_error(int op, uint32_t status, const std::string &what)
{
    status_errors[op].fetch_add(1, std::memory_order_relaxed);
    error(E_STATUS, std::string(op_name(op)) + ": status " + std::to_string(status) + " " + what);
}

void Stats::error(int kind, const std::string &what)
{
    errors[kind].fetch_add(1, std::memory_order_relaxed);
    coho_log_warn("bots: %s: %s", error_name(kind), what.c_str());
    std::lock_guard<std::mutex> g(mu_);
    if (first_.size() < kKeepErrors)
        first_.push_back(std::string(error_name(kind)) + ": " + what);
}

void Stats::push(uint16_t route)
{
    pushes.fetch_add(1, std::memory_order_relaxed);
    if (route == 2)
        self_pushes.fetch_add(1, std::memory_order_relaxed);
    else if (route == 21)
        chat_pushes.fetch_add(1, std::memory_order_relaxed);
    else if (route == 33)
        aoi_pushes.fetch_add(1, std::memory_order_relaxed);
}

uint64_t Stats::total_errors() const
{
    uint64_t n = 0;
    for (auto &e : errors)
        n += e.load(std::memory_order_relaxed);
    return n;
}

std::vector<std::string> Stats::first_errors() const
{
    std::lock_guard<std::mutex> g(mu_);
    return first_;
}

namespace {

std::string fmt_us(uint64_t us)
{
    char b[32];
    if (us < 1000)
        std::snprintf(b, sizeof b, "%lluus", static_cast<unsigned long long>(us));
    else if (us < 1000000)
        std::snprintf(b, sizeof b, "%.2fms", double(us) / 1e3);
    else
        std::snprintf(b, sizeof b, "%.2fs", double(us) / 1e6);
    return b;
}

std::string json_escape(const std::string &s)
{
    std::string out;
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += char(c);
        } else if (c < 0x20 || c >= 0x7f) {
            char b[8];
            std::snprintf(b, sizeof b, "\\u%04x", c);
            out += b;
        } else {
            out += char(c);
        }
    }
    return out;
}

} // namespace

std::string Stats::report(double elapsed_s) const
{
    const double measured_s = measured_s_.load(std::memory_order_relaxed);
    const double per_s = measured_s > 0 ? measured_s : elapsed_s;
    std::string out;
    char line[256];
    std::snprintf(line, sizeof line, "%-12s %10s %8s %10s %10s %10s %10s %10s\n", "route", "ok",
                  "errors", "req/s", "p50", "p90", "p99", "max");
    out += line;
    for (int op = 0; op < OP_COUNT; op++) {
        auto s = lat[op].snapshot();
        uint64_t errs = status_errors[op].load(std::memory_order_relaxed);
        if (s.count == 0 && errs == 0)
            continue;
        std::snprintf(line, sizeof line, "%-12s %10llu %8llu %10.1f %10s %10s %10s %10s\n",
                      op_name(op), static_cast<unsigned long long>(s.count),
                      static_cast<unsigned long long>(errs),
                      per_s > 0 ? double(s.count) / per_s : 0.0, fmt_us(s.quantile(0.5)).c_str(),
                      fmt_us(s.quantile(0.9)).c_str(), fmt_us(s.quantile(0.99)).c_str(),
                      fmt_us(s.max).c_str());
        out += line;
    }
    std::snprintf(line, sizeof line,
                  "pushes %llu (chat %llu, aoi %llu, push.self %llu); logins %llu, relogins %llu, "
                  "rebinds %llu, logouts %llu, ended by the gateway at the end %llu\n",
                  static_cast<unsigned long long>(pushes.load()),
                  static_cast<unsigned long long>(chat_pushes.load()),
                  static_cast<unsigned long long>(aoi_pushes.load()),
                  static_cast<unsigned long long>(self_pushes.load()),
                  static_cast<unsigned long long>(logins.load()),
                  static_cast<unsigned long long>(relogins.load()),
                  static_cast<unsigned long long>(rebinds.load()),
                  static_cast<unsigned long long>(logouts.load()),
                  static_cast<unsigned long long>(ended_by_gate.load()));
    out += line;
    if (gate_failovers.load() + rebinds_refused.load() + failovers_playing.load() > 0) {
        std::snprintf(line, sizeof line,
                      "gateway failovers %llu; rebinds refused by the new gateway %llu; bots "
                      "playing again there %llu\n",
                      static_cast<unsigned long long>(gate_failovers.load()),
                      static_cast<unsigned long long>(rebinds_refused.load()),
                      static_cast<unsigned long long>(failovers_playing.load()));
        out += line;
    }
    std::snprintf(line, sizeof line,
                  "scene moves %llu; aoi pushes %llu: entered %llu, moved %llu, left %llu; aoi "
                  "mismatches %llu\n",
                  static_cast<unsigned long long>(ok_count[OP_SCENE_MOVE].load()),
                  static_cast<unsigned long long>(aoi_pushes.load()),
                  static_cast<unsigned long long>(aoi_entered.load()),
                  static_cast<unsigned long long>(aoi_moved.load()),
                  static_cast<unsigned long long>(aoi_left.load()),
                  static_cast<unsigned long long>(errors[E_AOI].load()));
    out += line;
    if (measured_s > 0) {
        std::snprintf(line, sizeof line,
                      "measured %.1f s after a warm-up; %llu requests answered before it are "
                      "left out\n",
                      measured_s, static_cast<unsigned long long>(warmup_ok.load()));
        out += line;
    }
    out += "errors " + std::to_string(total_errors());
    for (int k = 0; k < E_COUNT; k++)
        if (uint64_t n = errors[k].load(std::memory_order_relaxed))
            out += std::string(" ") + error_name(k) + "=" + std::to_string(n);
    out += "\n";
    for (auto &e : first_errors())
        out += "  " + e + "\n";
    return out;
}

std::string Stats::json(double elapsed_s, uint64_t bots, uint64_t max_errors) const
{
    auto u = [](uint64_t v) { return std::to_string(v); };
    uint64_t errs = total_errors();
    std::string j = "{\"ok\":" + std::string(errs <= max_errors ? "true" : "false");
    char el[32];
    std::snprintf(el, sizeof el, "%.3f", elapsed_s);
    j += ",\"elapsed_s\":" + std::string(el) + ",\"bots\":" + u(bots);
    const double measured_s = measured_s_.load(std::memory_order_relaxed);
    std::snprintf(el, sizeof el, "%.3f", measured_s > 0 ? measured_s : elapsed_s);
    j += ",\"measured_s\":" + std::string(el) + ",\"warmup_ok\":" + u(warmup_ok.load());
    j += ",\"errors\":" + u(errs) + ",\"max_errors\":" + u(max_errors);
    j += ",\"error_kinds\":{";
    for (int k = 0; k < E_COUNT; k++)
        j += std::string(k ? "," : "") + "\"" + error_name(k) + "\":" + u(errors[k].load());
    j += "},\"routes\":{";
    for (int op = 0; op < OP_COUNT; op++) {
        auto s = lat[op].snapshot();
        j += std::string(op ? "," : "") + "\"" + op_name(op) + "\":{\"ok\":" + u(s.count) +
             ",\"status_errors\":" + u(status_errors[op].load()) +
             ",\"p50_us\":" + u(s.quantile(0.5)) + ",\"p90_us\":" + u(s.quantile(0.9)) +
             ",\"p99_us\":" + u(s.quantile(0.99)) + ",\"max_us\":" + u(s.max) + "}";
    }
    j += "},\"pushes\":" + u(pushes.load()) + ",\"chat_pushes\":" + u(chat_pushes.load()) +
         ",\"aoi_pushes\":" + u(aoi_pushes.load()) + ",\"self_pushes\":" + u(self_pushes.load());
    j += ",\"scene_moves\":" + u(ok_count[OP_SCENE_MOVE].load()) +
         ",\"aoi_entered\":" + u(aoi_entered.load()) + ",\"aoi_moved\":" + u(aoi_moved.load()) +
         ",\"aoi_left\":" + u(aoi_left.load()) + ",\"aoi_mismatches\":" + u(errors[E_AOI].load());
    j += ",\"logins\":" + u(logins.load()) + ",\"relogins\":" + u(relogins.load()) +
         ",\"rebinds\":" + u(rebinds.load()) + ",\"logouts\":" + u(logouts.load()) +
         ",\"ended_by_gate\":" + u(ended_by_gate.load());
    j += ",\"gate_failovers\":" + u(gate_failovers.load()) +
         ",\"rebinds_refused\":" + u(rebinds_refused.load()) +
         ",\"failovers_playing\":" + u(failovers_playing.load());
    j += ",\"first_errors\":[";
    auto first = first_errors();
    for (size_t i = 0; i < first.size(); i++)
        j += std::string(i ? "," : "") + "\"" + json_escape(first[i]) + "\"";
    j += "]}";
    return j;
}

} // namespace coho::game::bots
