// SPDX-License-Identifier: MIT
// coho-bots' admin port: callback series over the Stats atomics (read at each scrape, so the
// bots pay nothing per request for being watched) and a /stats section.
#include "admin.hpp"

#include <cerrno>
#include <system_error>

namespace coho::game::bots {

namespace {

// key = what * 256 + index (an Op or an ErrorKind).
enum What {
    kReplies,
    kStatusErrors,
    kP50,
    kP99,
    kErrors,
    kPushes,
    kLogins,
    kRelogins,
    kRebinds,
    kLogouts,
    kRunning,
    kDone,
};

double read(void *arg, int key)
{
    const Stats &s = *static_cast<const Stats *>(arg);
    const int i = key % 256;
    switch (What(key / 256)) {
    case kReplies:
        return double(s.ok_count[i].load());
    case kStatusErrors:
        return double(s.status_errors[i].load());
    case kP50:
    case kP99: {
        auto snap = s.lat[i].snapshot();
        return snap.count == 0 ? 0.0 : double(snap.quantile(key / 256 == kP50 ? 0.5 : 0.99)) / 1e6;
    }
    case kErrors:
        return double(s.errors[i].load());
    case kPushes:
        return double(s.pushes.load());
    case kLogins:
        return double(s.logins.load());
    case kRelogins:
        return double(s.relogins.load());
    case kRebinds:
        return double(s.rebinds.load());
    case kLogouts:
        return double(s.logouts.load());
    case kRunning:
        return double(s.bots_running.load());
    case kDone:
        return double(s.bots_done.load());
    }
    return 0;
}

void add(coho::net::Metrics &m, int type, const char *name, const char *help, const char *label,
         const char *value, const Stats &s, int key)
{
    coho_label_t l{label, value};
    if (coho_metrics_add_fn(m.native_handle(), type, name, help, label ? &l : nullptr,
                            label ? 1 : 0, read, const_cast<Stats *>(&s), key) != 0)
        throw std::system_error(errno, std::generic_category(), "coho_metrics_add_fn");
}

} // namespace

AdminPort::AdminPort(const std::string &host_port, const Stats &stats, uint64_t bots,
                     uint64_t max_errors)
    : stats_(stats), t0_(std::chrono::steady_clock::now())
{
    constexpr int C = COHO_METRIC_COUNTER, G = COHO_METRIC_GAUGE;
    for (int op = 0; op < OP_COUNT; op++) {
        add(metrics_, C, "coho_bots_replies_total", "replies with status 0, by request", "op",
            op_name(op), stats, kReplies * 256 + op);
        add(metrics_, C, "coho_bots_status_errors_total", "replies with a non-zero status", "op",
            op_name(op), stats, kStatusErrors * 256 + op);
        add(metrics_, G, "coho_bots_latency_p50_seconds",
            "median reply time since the start, by request", "op", op_name(op), stats,
            kP50 * 256 + op);
        add(metrics_, G, "coho_bots_latency_p99_seconds",
            "99th percentile reply time since the start, by request", "op", op_name(op), stats,
            kP99 * 256 + op);
    }
    for (int k = 0; k < E_COUNT; k++)
        add(metrics_, C, "coho_bots_errors_total", "errors by kind (the exit status counts them)",
            "kind", error_name(k), stats, kErrors * 256 + k);
    add(metrics_, C, "coho_bots_pushes_total", "pushes received and checked", nullptr, nullptr,
        stats, kPushes * 256);
    add(metrics_, C, "coho_bots_logins_total", "logins", nullptr, nullptr, stats, kLogins * 256);
    add(metrics_, C, "coho_bots_relogins_total", "logins again after a failed rebind", nullptr,
        nullptr, stats, kRelogins * 256);
    add(metrics_, C, "coho_bots_rebinds_total", "sessions moved to a new socket", nullptr, nullptr,
        stats, kRebinds * 256);
    add(metrics_, C, "coho_bots_logouts_total", "logouts", nullptr, nullptr, stats, kLogouts * 256);
    add(metrics_, G, "coho_bots_running", "bots playing now", nullptr, nullptr, stats,
        kRunning * 256);
    add(metrics_, C, "coho_bots_done_total", "bots that finished", nullptr, nullptr, stats,
        kDone * 256);
    admin_ = std::make_unique<coho::net::Admin>(host_port, &metrics_);
    admin_->add_section("bots", [this, bots, max_errors](coho::net::Json &j) {
        double elapsed =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
        j.raw(stats_.json(elapsed, bots, max_errors));
    });
}

AdminPort::~AdminPort()
{
    admin_.reset(); // no scrape runs once the registry goes
    coho_metrics_remove_fn(metrics_.native_handle(), const_cast<Stats *>(&stats_));
}

} // namespace coho::game::bots
