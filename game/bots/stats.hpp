// SPDX-License-Identifier: MIT
// What the bots measure: per-route latency histograms and counts, errors by kind (with the
// first messages kept for the report), pushes, rebinds. Shared by every bot of every thread:
// counters are relaxed atomics, so recording costs no lock.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace coho::game::bots {

// The requests a bot makes, each with its own latency histogram.
enum Op : int {
    OP_LOGIN,
    OP_REBIND,
    OP_PING,
    OP_ECHO,
    OP_PUSH_SELF,
    OP_PLAYER_GET,
    OP_PLAYER_ADD,
    OP_CHAT_JOIN,
    OP_CHAT_SAY,
    OP_CHAT_LEAVE,
    OP_SCENE_ENTER,
    OP_SCENE_MOVE,
    OP_SCENE_LEAVE,
    OP_LOGOUT,
    OP_COUNT,
};
const char *op_name(int op);

enum ErrorKind : int {
    E_CONNECT,   // could not connect or upgrade
    E_CLOSED,    // the gateway closed or reset the connection unexpectedly
    E_PROTOCOL,  // a frame the protocol does not allow here (bad len, type, seq, body)
    E_TIMEOUT,   // no reply before --timeout-ms
    E_STATUS,    // a reply with a non-zero status
    E_REPLY,     // a reply whose payload is wrong
    E_PUSH_LOST, // a gap in the push sequence, or a push.self push missing
    E_PUSH_DUP,  // a push sequence number seen before
    E_PUSH_BAD,  // a push whose route or payload is wrong
    E_KICKED,    // a KICK during the run
    E_INTERNAL,  // the bot itself failed (out of memory, cancelled)
    E_AOI,       // an AOI push that breaks the grid rule for the positions the bot knows
    E_COUNT,
};
const char *error_name(int kind);

// Latencies in microseconds, log-linear buckets (16 per power of two: at most 6 % above the
// true value), merged without locks.
class Histogram {
public:
    static constexpr int kSub = 16;
    static constexpr int kBuckets = kSub + (64 - 4) * kSub;
    void add(uint64_t us);
    struct Snapshot {
        std::array<uint64_t, kBuckets> b{};
        uint64_t count = 0, sum = 0, max = 0;
        // The value at quantile q (0..1): the upper edge of its bucket, at most max.
        uint64_t quantile(double q) const;
        Snapshot minus(const Snapshot &earlier) const;
    };
    Snapshot snapshot() const;
    static int bucket(uint64_t us);
    static uint64_t upper_edge(int bucket);

private:
    std::array<std::atomic<uint64_t>, kBuckets> b_{};
    std::atomic<uint64_t> count_{0}, sum_{0}, max_{0};
};

class Stats {
public:
    using Clock = std::chrono::steady_clock;

    // A request answered, `us` after it was sent. Before the measured part starts
    // (measure_from) it goes to the progress line's histogram (`all`) and to warmup_ok only.
    void ok(int op, uint64_t us);
    // The measured part is [from, from + seconds): requests answered before `from` (the logins
    // of the ramp and a warm-up after them, --warmup-s) are left out of the per-route histograms
    // and counts of the report and the SUMMARY, whose req/s are then per measured second. Call
    // it before any bot starts. Without it every request is measured and req/s are per elapsed
    // second.
    void measure_from(Clock::time_point from, double seconds);
    bool measuring() const
    {
        return Clock::now().time_since_epoch().count() >= from_.load(std::memory_order_relaxed);
    }
    void status_error(int op, uint32_t status, const std::string &what);
    void error(int kind, const std::string &what);
    void push(uint16_t route);

    Histogram lat[OP_COUNT];
    Histogram all; // every request, for the per-second progress line
    std::atomic<uint64_t> ok_count[OP_COUNT]{};
    std::atomic<uint64_t> status_errors[OP_COUNT]{};
    std::atomic<uint64_t> errors[E_COUNT]{};
    std::atomic<uint64_t> pushes{0}, chat_pushes{0}, aoi_pushes{0}, self_pushes{0};
    // What the AOI pushes said (entities entered, moved, left), each entry checked.
    std::atomic<uint64_t> aoi_entered{0}, aoi_moved{0}, aoi_left{0};
    std::atomic<uint64_t> logins{0}, relogins{0}, rebinds{0}, logouts{0}, ended_by_gate{0};
    // Moving to another gateway (several --gate): connects that went to the next gateway after
    // one failed, REBINDs refused there (status 2, as they must be), and bots playing again
    // (an action answered) after a new login on a gateway other than their last session's.
    std::atomic<uint64_t> gate_failovers{0}, rebinds_refused{0}, failovers_playing{0};
    std::atomic<uint64_t> bots_running{0}, bots_done{0};
    std::atomic<uint64_t> warmup_ok{0}; // requests answered before the measured part

    uint64_t total_errors() const;
    std::vector<std::string> first_errors() const;

    // The human-readable report (route table, errors, first messages).
    std::string report(double elapsed_s) const;
    // One line of JSON with every number of the report.
    std::string json(double elapsed_s, uint64_t bots, uint64_t max_errors) const;

private:
    static constexpr size_t kKeepErrors = 20;
    // Atomics: the admin port's thread may read them while main sets them.
    std::atomic<Clock::rep> from_{0};   // the measured part's start (0: everything)
    std::atomic<double> measured_s_{0}; // its length; 0: per elapsed second
    mutable std::mutex mu_;
    std::vector<std::string> first_;
};

} // namespace coho::game::bots
