// SPDX-License-Identifier: MIT
// The logic node's calendar (game/svc/calendar.hpp) and id generator (game/svc/ids.hpp): the
// daily reset, a boundary event fired once per day at --daily-reset local time (persisted in
// --state-dir across restarts), and the weekly reset (--weekly-reset-day at the same time), logged,
// counted on /metrics and shown on /stats. The wall clock may be shifted (--clock-offset-s) so that
// a demo reaches the reset within seconds.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <coho.hpp>
#include <coho/net.hpp>

#include "game/svc/calendar.hpp"
#include "game/svc/ids.hpp"

namespace coho::game::logic {

struct TimersConfig {
    int64_t clock_offset_s = 0;     // added to the system clock
    TimeOfDay daily_reset{5, 0, 0}; // local time
    int weekly_reset_day = 1;       // the weekly reset: this weekday (0 Sunday) at daily_reset
    std::string state_dir;          // boundary and id state; empty: kept in memory only
    uint32_t machine_id = 1;        // the id generator's machine id (0..1023)
};

class Timers {
public:
    // Registers the calendar's series in `metrics`. Throws std::invalid_argument (bad
    // configuration, corrupt state files) and std::system_error.
    Timers(coho::Scheduler &sched, coho::net::Metrics &metrics, const TimersConfig &cfg);
    ~Timers();
    Timers(const Timers &) = delete;
    Timers &operator=(const Timers &) = delete;

    // Starts the calendar and adds the daily reset. Scheduler thread.
    void start();
    // Ends every timer and waits for running callbacks. Inside a coroutine.
    void stop();
    // The "calendar" section of GET /stats. On the node's scheduler.
    void stats_json(coho::net::Json &j) const;

    Calendar &calendar() { return cal_; }
    IdGen &ids() { return ids_; }

private:
    static double read_metric(void *arg, int key);
    void on_daily_reset(const Fire &f);
    void on_weekly_reset(const Fire &f);

    TimersConfig cfg_;
    coho::net::Metrics &metrics_;
    mutable SystemClock clock_; // read by stats_json
    Calendar cal_;
    std::unique_ptr<BoundaryStore> store_;
    IdGen ids_;
    coho::net::Counter resets_;
    uint64_t reset_count_ = 0;
    int64_t last_reset_s_ = 0;
    uint64_t last_reset_id_ = 0;
    coho::net::Counter weekly_resets_;
    uint64_t weekly_count_ = 0;
    int64_t last_weekly_s_ = 0;
};

} // namespace coho::game::logic
