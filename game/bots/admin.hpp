// SPDX-License-Identifier: MIT
// coho-bots' admin port (--admin): net/'s admin HTTP server over the bots' Stats, so a load
// test can be watched and scraped while it runs. /metrics: per-op replies, status errors and
// latency quantiles, errors by kind, pushes, logins, rebinds, bots running; /stats: the same
// JSON as the SUMMARY line, live; /coroutines: every bot thread's scheduler.
#pragma once

#include <memory>
#include <string>

#include <coho/net.hpp>

#include "stats.hpp"

namespace coho::game::bots {

class AdminPort {
public:
    // Serves `stats` (which must outlive this) on `host_port` ("127.0.0.1:0" picks a port).
    // `bots` and `max_errors` go into /stats as in the SUMMARY line. Throws system_error.
    AdminPort(const std::string &host_port, const Stats &stats, uint64_t bots, uint64_t max_errors);
    ~AdminPort();
    AdminPort(const AdminPort &) = delete;
    AdminPort &operator=(const AdminPort &) = delete;

    int port() const { return admin_->port(); }
    // Shows a bot thread's scheduler in /coroutines until remove_sched (before it goes).
    void add_sched(coho::Scheduler &s, const std::string &name) { admin_->add_sched(s, name); }
    void remove_sched(coho::Scheduler &s) { admin_->remove_sched(s.native_handle()); }

private:
    const Stats &stats_;
    std::chrono::steady_clock::time_point t0_;
    coho::net::Metrics metrics_;
    std::unique_ptr<coho::net::Admin> admin_; // after metrics_: stopped first
};

} // namespace coho::game::bots
