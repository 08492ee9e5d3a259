// SPDX-License-Identifier: MIT
// Calendar timers for game logic (game/README.md, "Calendar timers"): one-shot delays owned by
// the app, a player or an instance; absolute local date-times; daily, weekly, monthly and
// yearly recurrences in local time; timers aligned to whole minutes; boundary events (daily
// reset...) whose last handled boundary survives restarts. Wall time comes from an injectable
// Clock; the system one is a timerfd armed with TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET,
// so a clock set is noticed at once.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <coho.hpp>

namespace coho::game {

// ---- civil time in the process's time zone (TZ) -----------------------------------------

// A local date and time of day (the zone is the process's: TZ, read by tzset()).
struct DateTime {
    int year = 1970;
    int month = 1; // 1..12
    int day = 1;   // 1..days in the month
    int hour = 0;  // 0..23
    int minute = 0;
    int second = 0; // 0..59 (no leap seconds)
};

struct TimeOfDay {
    int hour = 0;
    int minute = 0;
    int second = 0;
};

namespace cal {

constexpr int64_t kNone = INT64_MIN; // "no such occurrence"

// Days in `month` (1..12) of `year` (proleptic Gregorian); 0 for a month out of range.
int days_in_month(int year, int month);
// Throws std::invalid_argument naming what is wrong ("2026-02-30: February 2026 has 28
// days", "25:00:00: hour 25 is not 0..23"). Years are 1970..9999.
void check(const DateTime &dt);
void check(const TimeOfDay &t);
// "HH:MM" or "HH:MM:SS"; "YYYY-MM-DD HH:MM[:SS]" (or with a 'T'). Throw std::invalid_argument.
TimeOfDay parse_time_of_day(std::string_view s);
DateTime parse_date_time(std::string_view s);

// The local date-time of the instant `unix_s`.
DateTime to_local(int64_t unix_s);
// "YYYY-MM-DD HH:MM:SS+hhmm" (local time and its UTC offset).
std::string format_local(int64_t unix_s);
// The first instant (seconds since the epoch) at which the local wall clock shows `dt` or a
// later time. So a time the clock skips (02:30 on a spring-forward night) resolves to the
// instant the gap ends (03:00 local), and a time it shows twice (01:30 on a fall-back night)
// to its first showing. `dt` must pass check().
int64_t resolve_local(const DateTime &dt);

} // namespace cal

// What a monthly (yearly) rule does in a month (year) that lacks its day: the 31st in a
// 30-day month, February 29 in a common year.
enum class ShortMonth : uint8_t {
    LastDay, // fire on the month's last day instead (the default)
    Skip,    // no occurrence that month (year)
};

// When a timer fires. Occurrences are instants (whole seconds); recurring rules are evaluated
// in local time, so a daily 05:00 stays at 05:00 across DST changes (the day between is 23 or
// 25 hours long) with cal::resolve_local's rules for a time the clock skips or repeats.
class Rule {
public:
    enum class Kind : uint8_t { Once, Daily, Weekly, Monthly, Yearly, EveryMinutes };

    // Once, at a local date-time (check()ed).
    static Rule at(const DateTime &dt);
    // Every day at `t`.
    static Rule daily(TimeOfDay t);
    // Every week on `weekday` (0 Sunday .. 6 Saturday) at `t`.
    static Rule weekly(int weekday, TimeOfDay t);
    // Every month on `day` (1..31) at `t`.
    static Rule monthly(int day, TimeOfDay t, ShortMonth p = ShortMonth::LastDay);
    // Every year on `month`-`day` at `t` (February 29: `p` decides for common years).
    static Rule yearly(int month, int day, TimeOfDay t, ShortMonth p = ShortMonth::LastDay);
    // Every `n` minutes at :00 seconds, aligned to whole minutes of the clock: the instants
    // whose seconds since the epoch are a multiple of 60 n. `n` divides 60.
    static Rule every_minutes(int n);

    // The first occurrence strictly after `t` (seconds since the epoch), or cal::kNone.
    int64_t next_after(int64_t t) const;
    // The last occurrence at or before `t`, or cal::kNone.
    int64_t last_at_or_before(int64_t t) const;
    // How many occurrences lie in (a, b].
    uint64_t count_between(int64_t a, int64_t b) const;
    // "daily 05:00:00", "monthly day 31 12:00:00 (last day when short)", ...
    std::string describe() const;
    Kind kind() const { return kind_; }

private:
    struct Occ {
        int64_t k; // the period's ordinal (day, week, month, year number; minute slot)
        int64_t t; // the instant
    };
    int64_t ordinal_of(int64_t t) const;
    int64_t occ(int64_t k) const; // cal::kNone when period k has no occurrence (Skip)
    Occ next_occ(int64_t t) const;
    Occ last_occ(int64_t t) const;

    Kind kind_ = Kind::Once;
    ShortMonth short_ = ShortMonth::LastDay;
    int8_t weekday_ = 0;
    int8_t month_ = 0;
    int8_t day_ = 0;
    int8_t hour_ = 0, minute_ = 0, second_ = 0;
    int32_t n_ = 0;      // EveryMinutes
    int64_t once_s_ = 0; // Once: the resolved instant
};

// ---- clocks -------------------------------------------------------------------------------

// The calendar's view of time: a wall clock (ms since the epoch), a monotonic clock, and a way
// for one coroutine to wait for a wall-clock deadline or a clock set. One scheduler thread.
class Clock {
public:
    static constexpr int64_t kNever = INT64_MAX;
    enum class Wake { Expired, Set, Interrupted, Cancelled };

    virtual ~Clock() = default;
    virtual int64_t wall_ms() = 0;
    virtual int64_t mono_ms() = 0;
    // Sets the deadline wait() waits for (wall ms; kNever: none, clock sets still wake it).
    // Callable at any time, also while a coroutine waits.
    virtual void arm(int64_t wall_deadline_ms) = 0;
    // Parks the calling coroutine until the armed deadline has passed (Expired), the wall clock
    // was set (Set: a jump, either way), interrupt() was called, or the coroutine was
    // cancelled. Inside a coroutine; one waiter at a time.
    virtual Wake wait() = 0;
    // Makes the current or next wait() return Interrupted.
    virtual void interrupt() = 0;
};

// CLOCK_REALTIME plus `offset_ms` (an injected offset: a demo can make "now" any time),
// watched through a timerfd armed with TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET: when the
// system clock is set, the waiting read() fails with ECANCELED and wait() returns Set at once.
// Throws std::system_error when the timerfd cannot be created.
class SystemClock final : public Clock {
public:
    explicit SystemClock(int64_t offset_ms = 0);
    ~SystemClock() override;
    SystemClock(const SystemClock &) = delete;
    SystemClock &operator=(const SystemClock &) = delete;
    int64_t wall_ms() override;
    int64_t mono_ms() override;
    void arm(int64_t wall_deadline_ms) override;
    Wake wait() override;
    void interrupt() override;
    int64_t offset_ms() const { return offset_ms_; }

    // What one read() of the timerfd means: 8 bytes read -> Expired; ECANCELED -> Set; EAGAIN
    // (nothing yet) -> no wake-up (returns false). Other errors throw std::system_error.
    static bool wake_of_read(ssize_t n, int err, Wake *out);

private:
    void settime(int64_t abs_ms);
    int fd_ = -1;
    int64_t offset_ms_;
    bool interrupted_ = false;
    bool set_pending_ = false; // timerfd_settime itself reported ECANCELED
};

// A clock the caller moves (tests): advance() is time passing (wall and monotonic move
// together); set_wall() is a clock set (a jump forward or back: wait() returns Set).
class ManualClock final : public Clock {
public:
    explicit ManualClock(int64_t wall_ms, int64_t mono_ms = 0) : wall_(wall_ms), mono_(mono_ms) {}
    int64_t wall_ms() override { return wall_; }
    int64_t mono_ms() override { return mono_; }
    void arm(int64_t wall_deadline_ms) override;
    Wake wait() override;
    void interrupt() override;
    void advance(std::chrono::milliseconds d);
    void set_wall(int64_t wall_ms);
    int64_t armed() const { return armed_; }

private:
    void poke();
    int64_t wall_, mono_;
    int64_t armed_ = kNever;
    bool set_pending_ = false;
    bool interrupted_ = false;
    bool waiting_ = false;
    coho::Semaphore wake_;
};

// ---- boundary persistence ------------------------------------------------------------------

// Where a boundary event keeps the last boundary it handled (seconds since the epoch).
class BoundaryStore {
public:
    virtual ~BoundaryStore() = default;
    // False when nothing is stored for `name`.
    virtual bool load(const std::string &name, int64_t *last_s) = 0;
    virtual void save(const std::string &name, int64_t last_s) = 0;
};

// One file per event, DIR/NAME.boundary, written whole (temporary file, fsync, rename, fsync of
// the directory). The directory is created if missing. Throws std::system_error on I/O errors
// and std::invalid_argument on a corrupt file.
class FileBoundaryStore final : public BoundaryStore {
public:
    explicit FileBoundaryStore(std::string dir);
    bool load(const std::string &name, int64_t *last_s) override;
    void save(const std::string &name, int64_t last_s) override;
    std::string path_of(const std::string &name) const;

private:
    std::string dir_;
};

// ---- the calendar ------------------------------------------------------------------------

// Who a timer belongs to; cancel_owner() ends all of an owner's timers (a player logging out,
// a dungeon instance closing; app timers end with stop()).
struct Owner {
    enum class Kind : uint8_t { App, Player, Instance };
    Kind kind = Kind::App;
    uint64_t id = 0;
    static Owner app() { return {}; }
    static Owner player(uint64_t uid) { return {Kind::Player, uid}; }
    static Owner instance(uint64_t id) { return {Kind::Instance, id}; }
    bool operator==(const Owner &o) const { return kind == o.kind && id == o.id; }
};

// What to do with occurrences a clock jump (or a restart, for boundary events) passed over.
enum class Missed : uint8_t {
    FireOnce, // fire once, late, for the latest of them (Fire::missed counts the others)
    Skip,     // do not fire; wait for the next occurrence
};

// What a callback is told.
struct Fire {
    uint64_t timer = 0;
    int64_t due_ms = 0;     // the occurrence (wall ms); for a delay, its wall deadline
    int64_t now_ms = 0;     // the wall clock when it was found due
    uint64_t missed = 0;    // further occurrences folded into this one (jump, stall, restart)
    bool late = false;      // found due after a clock set, a restart, or more than one period late
    int64_t previous_s = 0; // boundary events: the boundary handled before this one
};

using Callback = std::function<void(const Fire &)>;

struct TimerOpts {
    std::string name = "timer"; // the callback coroutine's name (cut to 31 bytes), logs
    Owner owner;
    Missed missed = Missed::FireOnce;
};

// The timers of one scheduler thread. Each callback runs in a coroutine of its own, named after
// its timer, so a slow callback delays no other timer; one timer's callbacks never overlap (an
// occurrence due while the previous callback runs is handled when it returns). Adding and
// cancelling work inside or outside coroutines, on the scheduler's thread. Bad input throws
// std::invalid_argument with the reason (an invalid date or time, a date-time in the past, a
// negative delay, an unnamed boundary event).
class Calendar {
public:
    struct Stats {
        uint64_t live = 0;       // timers not yet ended
        uint64_t fired = 0;      // callbacks started
        uint64_t skipped = 0;    // occurrences dropped by Missed::Skip
        uint64_t late = 0;       // callbacks started late (Fire::late)
        uint64_t clock_sets = 0; // wall-clock jumps noticed
        uint64_t running = 0;    // callbacks running now
    };

    Calendar(coho::Scheduler &sched, Clock &clock);
    ~Calendar(); // stop() must have returned, or start() never called
    Calendar(const Calendar &) = delete;
    Calendar &operator=(const Calendar &) = delete;

    // Spawns the driver coroutine ("calendar", a daemon). Scheduler thread.
    void start();
    // Ends every timer, stops the driver and waits for running callbacks. Inside a coroutine.
    void stop();

    // A one-shot delay on the monotonic clock: a wall-clock jump moves it not at all.
    uint64_t after(std::chrono::milliseconds delay, TimerOpts o, Callback cb);
    // Once at a local date-time; throws if it is not after now.
    uint64_t at(const DateTime &dt, TimerOpts o, Callback cb);
    // Every occurrence of `r` after now (an `at` rule: as at()).
    uint64_t every(const Rule &r, TimerOpts o, Callback cb);
    // A boundary event (daily reset at a configured hour, weekly reset...): fired once per
    // boundary of `r`, counting across restarts through `store` (keyed by the timer's name).
    // First start (nothing stored): the latest boundary at or before now counts as handled.
    // A boundary passed while the program was down is handled at start per `o.missed`
    // (FireOnce: once, with Fire::missed the others). The boundary is saved once the callback
    // returns: a crash inside the callback runs it again at the next start.
    uint64_t boundary(const Rule &r, BoundaryStore &store, TimerOpts o, Callback cb);

    // Ends a timer (a running callback finishes). False for an unknown or ended id.
    bool cancel(uint64_t id);
    // Ends every timer of `o`; returns how many.
    size_t cancel_owner(const Owner &o);

    // The next wall deadline of a timer (ms), or cal::kNone if it is unknown, ended or running.
    int64_t next_due_ms(uint64_t id) const;
    Stats stats() const;
    Clock &clock() { return clock_; }

private:
    static constexpr uint32_t kNil = UINT32_MAX;
    enum class Kind : uint8_t { Delay, Rule, Boundary };
    struct Slot {
        Rule rule;
        Callback cb;
        std::string name;
        Owner owner;
        BoundaryStore *store = nullptr;
        int64_t due = 0;    // heap key: wall ms (rules) or monotonic ms (delays)
        int64_t last_s = 0; // rules: the last occurrence fired or skipped
        uint32_t gen = 1;
        uint32_t heap_pos = kNil;
        uint32_t prev = kNil, next = kNil; // the owner's list
        Kind kind = Kind::Delay;
        Missed missed = Missed::FireOnce;
        bool live = false;
        bool running = false;
        bool jumped = false; // a clock set happened while it was running
    };
    struct HeapItem {
        int64_t due;
        uint32_t slot;
    };
    struct Heap {
        std::vector<HeapItem> a;
        void push(std::deque<Slot> &s, uint32_t slot, int64_t due);
        uint32_t pop(std::deque<Slot> &s);
        void remove(std::deque<Slot> &s, uint32_t pos);
        void up(std::deque<Slot> &s, size_t i);
        void down(std::deque<Slot> &s, size_t i);
    };
    struct OwnerHash {
        size_t operator()(const Owner &o) const
        {
            return std::hash<uint64_t>()(o.id * 4 + uint64_t(o.kind));
        }
    };

    uint32_t alloc(TimerOpts &o, Callback &cb, Kind k);
    void release(uint32_t i);
    uint64_t id_of(uint32_t i) const { return (uint64_t(slots_[i].gen) << 32) | (i + 1); }
    uint32_t find(uint64_t id) const; // the slot of a live timer, or kNil
    void end(uint32_t i);
    void schedule_rule(uint32_t i);
    void rearm();
    void run();
    void process(bool after_set);
    void handle_rule(uint32_t i, int64_t now_ms, bool jumped);
    void fire(uint32_t i, const Fire &f, int64_t save_s);
    void finished(uint32_t i, int64_t save_s);

    coho::Scheduler &sched_;
    Clock &clock_;
    std::deque<Slot> slots_; // a deque: a running callback's slot never moves
    std::vector<uint32_t> free_;
    Heap wall_, mono_; // rule timers by wall ms, delays by monotonic ms
    std::unordered_map<Owner, uint32_t, OwnerHash> owners_;
    Stats stats_;
    uint64_t driver_ = 0;
    bool started_ = false, stopping_ = false;
    coho::WaitGroup running_;
};

} // namespace coho::game
