// SPDX-License-Identifier: MIT
// Unique 64-bit ids for sessions, items, mail (game/README.md, "Unique ids"): snowflake-style
// (time, machine id, sequence), never repeated across restarts (the time reserved ahead is
// persisted), thread-safe and lock-free on the fast path.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>

namespace coho::game {

// A clock too far behind the ids already issued (it went backwards beyond what the generator
// absorbs and waits for), or outside the ids' time range.
class IdClockError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

//  63  62                       22 21        12 11         0
// +---+---------------------------+------------+------------+
// | 0 | ms since 2025-01-01 UTC   | machine id | sequence   |
// |   | 41 bits (until 2094)      | 10 bits    | 12 bits    |
// +---+---------------------------+------------+------------+
//
// Ids of one generator grow strictly. Within one millisecond 4096 ids are available; past
// them, and when the clock reads earlier than the last id's time (it went backwards), the
// generator borrows the next milliseconds, at most max_ahead_ms ahead of the clock; beyond
// that it sleeps for the clock to catch up, at most max_wait_ms, and past that next() throws
// IdClockError (the clock is that far behind). It never returns an id twice.
class IdGen {
public:
    static constexpr int kSeqBits = 12;
    static constexpr int kMachineBits = 10;
    static constexpr uint32_t kMaxMachine = (1u << kMachineBits) - 1;
    static constexpr int64_t kEpochMs = INT64_C(1735689600000); // 2025-01-01T00:00:00Z
    static constexpr int64_t kMaxTimeMs = (INT64_C(1) << 41) - 1;

    struct Options {
        uint32_t machine_id = 0; // 0..1023, unique among the processes issuing ids
        // A file holding the time up to which ids may have been issued (written with fsync
        // before any id beyond it). Empty: nothing persisted, so a restart is safe only once
        // the clock has passed the last id's time.
        std::string state_path;
        int64_t reserve_ms = 1000;       // how far ahead each write of the file reserves
        int64_t max_ahead_ms = 2000;     // how far ids may run ahead of the clock; at least
                                         // reserve_ms, so that a restart does not wait
        int64_t max_wait_ms = 5000;      // how long next() waits for a clock behind, then throws
        std::function<int64_t()> now_ms; // default: CLOCK_REALTIME, ms since the epoch
        std::function<void(int64_t)> sleep_ms; // default: nanosleep (parks a coroutine)
    };

    struct Parts {
        int64_t unix_ms = 0;
        uint32_t machine = 0;
        uint32_t seq = 0;
    };

    // Reads the state file, if any. Throws std::invalid_argument (a machine id out of range, a
    // bad option, a corrupt state file) and std::system_error (the file cannot be read).
    explicit IdGen(Options o);
    IdGen(const IdGen &) = delete;
    IdGen &operator=(const IdGen &) = delete;

    // A new id. Any thread, inside or outside coroutines. Throws IdClockError (above) and
    // std::system_error (the state file cannot be written: no id is issued unreserved).
    uint64_t next();

    static Parts decode(uint64_t id);
    uint32_t machine_id() const { return machine_; }
    uint64_t issued() const { return issued_.load(std::memory_order_relaxed); }
    // How many times the generator slept for the clock (sequence exhausted, clock behind).
    uint64_t waits() const { return waits_.load(std::memory_order_relaxed); }

private:
    void reserve(int64_t t, int64_t now);

    uint32_t machine_;
    Options o_;
    std::atomic<uint64_t> state_{0}; // time (ms since kEpochMs) << kSeqBits | sequence, last id
    std::atomic<int64_t> reserved_;  // ids need time < reserved_ (ms since kEpochMs)
    std::mutex file_mu_;
    std::atomic<uint64_t> issued_{0};
    std::atomic<uint64_t> waits_{0};
};

} // namespace coho::game
