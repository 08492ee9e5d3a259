// SPDX-License-Identifier: MIT
// The logic node's calendar and ids (timers.hpp): the daily reset boundary event, its log line,
// its counters on /metrics and its section of /stats.
#include "game/logic/timers.hpp"

#include <cinttypes>
#include <map>

#include <coho.h>

namespace coho::game::logic {

namespace {

// Boundaries kept in memory only (no --state-dir): once per boundary while the node runs.
class MemoryStore final : public BoundaryStore {
public:
    bool load(const std::string &name, int64_t *last_s) override
    {
        auto it = m_.find(name);
        if (it == m_.end())
            return false;
        *last_s = it->second;
        return true;
    }
    void save(const std::string &name, int64_t last_s) override { m_[name] = last_s; }

private:
    std::map<std::string, int64_t> m_;
};

enum Key { kLive, kFired, kSkipped, kLate, kClockSets, kRunning, kIds };

struct Series {
    Key key;
    int type;
    const char *name, *help;
};

const Series kSeries[] = {
    {kLive, COHO_METRIC_GAUGE, "coho_logic_calendar_timers", "Calendar timers not yet ended."},
    {kFired, COHO_METRIC_COUNTER, "coho_logic_calendar_fired_total",
     "Calendar timer callbacks started."},
    {kSkipped, COHO_METRIC_COUNTER, "coho_logic_calendar_skipped_total",
     "Occurrences a clock jump passed over, dropped by their Skip policy."},
    {kLate, COHO_METRIC_COUNTER, "coho_logic_calendar_late_total",
     "Callbacks started late (after a clock set, a restart or a stall)."},
    {kClockSets, COHO_METRIC_COUNTER, "coho_logic_calendar_clock_sets_total",
     "Wall-clock sets noticed (timerfd TFD_TIMER_CANCEL_ON_SET)."},
    {kRunning, COHO_METRIC_GAUGE, "coho_logic_calendar_callbacks_running",
     "Calendar callbacks running now."},
    {kIds, COHO_METRIC_COUNTER, "coho_logic_ids_issued_total", "Unique ids issued."},
};

IdGen::Options id_options(const TimersConfig &cfg)
{
    IdGen::Options o;
    o.machine_id = cfg.machine_id;
    if (!cfg.state_dir.empty())
        o.state_path = cfg.state_dir + "/ids.state";
    return o;
}

std::unique_ptr<BoundaryStore> make_store(const TimersConfig &cfg)
{
    if (cfg.state_dir.empty())
        return std::make_unique<MemoryStore>();
    return std::make_unique<FileBoundaryStore>(cfg.state_dir); // creates the directory
}

} // namespace

Timers::Timers(coho::Scheduler &sched, coho::net::Metrics &metrics, const TimersConfig &cfg)
    : cfg_(cfg), metrics_(metrics), clock_(cfg.clock_offset_s * 1000), cal_(sched, clock_),
      store_(make_store(cfg)), ids_(id_options(cfg))
{
    cal::check(cfg.daily_reset);
    Rule::weekly(cfg.weekly_reset_day, cfg.daily_reset); // throws on a bad weekday
    resets_ = metrics.counter("coho_logic_daily_resets_total",
                              "Daily resets handled (one per boundary, across restarts).");
    weekly_resets_ = metrics.counter("coho_logic_weekly_resets_total",
                                     "Weekly resets handled (one per boundary, across restarts).");
    for (const Series &s : kSeries) {
        if (coho_metrics_add_fn(metrics.native_handle(), s.type, s.name, s.help, nullptr, 0,
                                &Timers::read_metric, this, s.key) != 0)
            throw std::system_error(errno, std::generic_category(), "coho_metrics_add_fn");
    }
}

Timers::~Timers()
{
    coho_metrics_remove_fn(metrics_.native_handle(), this);
}

double Timers::read_metric(void *arg, int key)
{
    const Timers *t = static_cast<const Timers *>(arg);
    const Calendar::Stats s = t->cal_.stats();
    switch (key) {
    case kLive:
        return double(s.live);
    case kFired:
        return double(s.fired);
    case kSkipped:
        return double(s.skipped);
    case kLate:
        return double(s.late);
    case kClockSets:
        return double(s.clock_sets);
    case kRunning:
        return double(s.running);
    case kIds:
        return double(t->ids_.issued());
    }
    return 0;
}

void Timers::start()
{
    cal_.start();
    TimerOpts o;
    o.name = "daily-reset";
    o.missed = Missed::FireOnce; // a reset passed while the node was down is done at start
    const Rule rule = Rule::daily(cfg_.daily_reset);
    const uint64_t id =
        cal_.boundary(rule, *store_, o, [this](const Fire &f) { on_daily_reset(f); });
    coho_log_info("calendar: daily reset %s, next at %s (clock offset %" PRId64 " s, now %s)%s",
                  rule.describe().c_str(), cal::format_local(cal_.next_due_ms(id) / 1000).c_str(),
                  cfg_.clock_offset_s, cal::format_local(clock_.wall_ms() / 1000).c_str(),
                  cfg_.state_dir.empty() ? "; no --state-dir: boundaries kept in memory only" : "");
    TimerOpts w;
    w.name = "weekly-reset";
    const Rule weekly = Rule::weekly(cfg_.weekly_reset_day, cfg_.daily_reset);
    const uint64_t wid =
        cal_.boundary(weekly, *store_, w, [this](const Fire &f) { on_weekly_reset(f); });
    coho_log_info("calendar: weekly reset %s, next at %s", weekly.describe().c_str(),
                  cal::format_local(cal_.next_due_ms(wid) / 1000).c_str());
}

void Timers::on_weekly_reset(const Fire &f)
{
    weekly_count_++;
    last_weekly_s_ = f.due_ms / 1000;
    weekly_resets_.add();
    coho_log_info("weekly reset: boundary %s handled (previous boundary %s, %" PRIu64
                  " missed, %s)",
                  cal::format_local(last_weekly_s_).c_str(),
                  cal::format_local(f.previous_s).c_str(), f.missed, f.late ? "late" : "on time");
}

void Timers::stop()
{
    cal_.stop();
}

void Timers::on_daily_reset(const Fire &f)
{
    reset_count_++;
    last_reset_s_ = f.due_ms / 1000;
    last_reset_id_ = ids_.next();
    resets_.add();
    coho_log_info("daily reset: boundary %s handled (reset id %" PRIu64 ", previous boundary %s, "
                  "%" PRIu64 " missed, %s)",
                  cal::format_local(last_reset_s_).c_str(), last_reset_id_,
                  cal::format_local(f.previous_s).c_str(), f.missed, f.late ? "late" : "on time");
}

void Timers::stats_json(coho::net::Json &j) const
{
    const Calendar::Stats s = cal_.stats();
    j.raw("{\"clock_offset_s\":").number(cfg_.clock_offset_s);
    j.raw(",\"now\":").string(cal::format_local(clock_.wall_ms() / 1000));
    j.raw(",\"timers\":").number(s.live);
    j.raw(",\"fired\":").number(s.fired);
    j.raw(",\"skipped\":").number(s.skipped);
    j.raw(",\"late\":").number(s.late);
    j.raw(",\"clock_sets\":").number(s.clock_sets);
    j.raw(",\"daily_resets\":").number(reset_count_);
    j.raw(",\"last_daily_reset\":");
    if (reset_count_ == 0)
        j.raw("null");
    else
        j.string(cal::format_local(last_reset_s_));
    j.raw(",\"last_reset_id\":").number(last_reset_id_);
    j.raw(",\"weekly_resets\":").number(weekly_count_);
    j.raw(",\"last_weekly_reset\":");
    if (weekly_count_ == 0)
        j.raw("null");
    else
        j.string(cal::format_local(last_weekly_s_));
    j.raw(",\"machine_id\":").number(ids_.machine_id());
    j.raw(",\"ids_issued\":").number(ids_.issued());
    j.raw("}");
}

} // namespace coho::game::logic
