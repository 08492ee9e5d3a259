// SPDX-License-Identifier: MIT
// game/svc/calendar.hpp: civil-time resolution through DST changes (TZ set per test), the
// recurrence rules (monthly on the 31st, yearly on February 29, weekly, minute-aligned), bad
// input, and the calendar service on a manual clock: delays, clock jumps both ways with both
// missed-occurrence policies, owners, callbacks in coroutines of their own, boundary events
// across restarts; and the system clock's timerfd path.
#include <errno.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <coho.h>
#include <coho.hpp>

#include "game/svc/calendar.hpp"

using namespace coho::game;
using namespace std::chrono_literals;

namespace {

void use_tz(const char *tz)
{
    setenv("TZ", tz, 1);
    tzset();
}

// Seconds since the epoch of a UTC date-time.
int64_t utc(int y, int mo, int d, int h = 0, int mi = 0, int s = 0)
{
    struct tm tm = {};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = s;
    return int64_t(timegm(&tm));
}

int64_t local_s(int y, int mo, int d, int h = 0, int mi = 0, int s = 0)
{
    return cal::resolve_local(DateTime{y, mo, d, h, mi, s});
}

std::string error_of(const std::function<void()> &f)
{
    try {
        f();
    } catch (const std::invalid_argument &e) {
        return e.what();
    }
    return "(no error)";
}

// Runs body() in a coroutine of a fresh scheduler until it returns.
template <class F>
void in_sched(F body)
{
    coho::Scheduler s;
    s.spawn([&] { body(s); });
    s.run();
}

// Lets the driver and the callbacks it spawned run (everything else is parked).
void settle()
{
    for (int i = 0; i < 50; i++)
        coho::this_co::yield();
}

struct Log {
    std::vector<Fire> fires;
    Callback cb()
    {
        return [this](const Fire &f) { fires.push_back(f); };
    }
};

TimerOpts named(const char *name, Missed m = Missed::FireOnce, Owner o = Owner::app())
{
    TimerOpts t;
    t.name = name;
    t.missed = m;
    t.owner = o;
    return t;
}

std::string temp_dir()
{
    char tmpl[] = "/tmp/coho-calendar-test-XXXXXX";
    const char *d = mkdtemp(tmpl);
    return d != nullptr ? d : "";
}

} // namespace

// ---- civil time and DST ------------------------------------------------------------------

TEST(CalendarTime, ANonexistentLocalTimeResolvesToTheEndOfTheGap)
{
    use_tz("America/New_York"); // 2026-03-08 02:00 EST -> 03:00 EDT (07:00Z)
    EXPECT_EQ(local_s(2026, 3, 8, 2, 30), utc(2026, 3, 8, 7, 0));
    EXPECT_EQ(local_s(2026, 3, 8, 3, 0), utc(2026, 3, 8, 7, 0));
    EXPECT_EQ(local_s(2026, 3, 8, 1, 59, 59), utc(2026, 3, 8, 6, 59, 59));
    use_tz("Europe/Berlin"); // 2026-03-29 02:00 CET -> 03:00 CEST (01:00Z)
    EXPECT_EQ(local_s(2026, 3, 29, 2, 30), utc(2026, 3, 29, 1, 0));
}

TEST(CalendarTime, ARepeatedLocalTimeResolvesToItsFirstShowing)
{
    use_tz("America/New_York"); // 2026-11-01 02:00 EDT -> 01:00 EST: 01:30 is shown twice
    EXPECT_EQ(local_s(2026, 11, 1, 1, 30), utc(2026, 11, 1, 5, 30)); // EDT, not 06:30Z (EST)
    use_tz("Europe/Berlin"); // 2026-10-25 03:00 CEST -> 02:00 CET
    EXPECT_EQ(local_s(2026, 10, 25, 2, 30), utc(2026, 10, 25, 0, 30));
}

TEST(CalendarRule, DailyKeepsItsLocalTimeAcross23And25HourDays)
{
    use_tz("America/New_York");
    const Rule r = Rule::daily({5, 0, 0});
    const int64_t mar7 = r.next_after(utc(2026, 3, 7, 0));
    EXPECT_EQ(mar7, utc(2026, 3, 7, 10)); // 05:00 EST
    const int64_t mar8 = r.next_after(mar7);
    EXPECT_EQ(mar8, utc(2026, 3, 8, 9)); // 05:00 EDT
    EXPECT_EQ(mar8 - mar7, 23 * 3600);
    const int64_t oct31 = r.next_after(utc(2026, 10, 31, 0));
    const int64_t nov1 = r.next_after(oct31);
    EXPECT_EQ(nov1 - oct31, 25 * 3600);
    EXPECT_EQ(cal::format_local(nov1), "2026-11-01 05:00:00-0500");
}

TEST(CalendarRule, DailyAtATimeTheClockSkipsFiresOnceAtTheGapsEnd)
{
    use_tz("America/New_York");
    const Rule r = Rule::daily({2, 30, 0});
    const int64_t mar7 = r.next_after(utc(2026, 3, 7, 0));
    const int64_t mar8 = r.next_after(mar7);
    const int64_t mar9 = r.next_after(mar8);
    EXPECT_EQ(mar7, utc(2026, 3, 7, 7, 30));
    EXPECT_EQ(mar8, utc(2026, 3, 8, 7, 0)); // 03:00 EDT, the instant 02:30 is passed
    EXPECT_EQ(mar9, utc(2026, 3, 9, 6, 30));
    EXPECT_EQ(r.count_between(mar7, mar9), 2u);
}

TEST(CalendarRule, DailyAtATimeTheClockRepeatsFiresOnlyAtItsFirstShowing)
{
    use_tz("America/New_York");
    const Rule r = Rule::daily({1, 30, 0});
    const int64_t first = r.next_after(utc(2026, 11, 1, 0));
    EXPECT_EQ(first, utc(2026, 11, 1, 5, 30));
    // The second 01:30 (06:30Z) is no occurrence: the next is the 2nd's.
    EXPECT_EQ(r.next_after(first), utc(2026, 11, 2, 6, 30));
    EXPECT_EQ(r.count_between(first, utc(2026, 11, 1, 7, 0)), 0u);
}

TEST(CalendarRule, MonthlyOnThe31stUsesTheLastDayOfShortMonthsOrSkipsThem)
{
    use_tz("UTC");
    const Rule clamp = Rule::monthly(31, {12, 0, 0});
    const Rule skip = Rule::monthly(31, {12, 0, 0}, ShortMonth::Skip);
    int64_t t = utc(2026, 4, 1);
    std::vector<std::string> seen;
    for (int i = 0; i < 4; i++)
        seen.push_back(cal::format_local(t = clamp.next_after(t)));
    EXPECT_EQ(seen,
              (std::vector<std::string>{"2026-04-30 12:00:00+0000", "2026-05-31 12:00:00+0000",
                                        "2026-06-30 12:00:00+0000", "2026-07-31 12:00:00+0000"}));
    t = utc(2026, 4, 1);
    seen.clear();
    for (int i = 0; i < 3; i++)
        seen.push_back(cal::format_local(t = skip.next_after(t)));
    EXPECT_EQ(seen,
              (std::vector<std::string>{"2026-05-31 12:00:00+0000", "2026-07-31 12:00:00+0000",
                                        "2026-08-31 12:00:00+0000"}));
    // February: the 28th, or the 29th in a leap year.
    EXPECT_EQ(clamp.next_after(utc(2027, 2, 1)), utc(2027, 2, 28, 12));
    EXPECT_EQ(clamp.next_after(utc(2028, 2, 1)), utc(2028, 2, 29, 12));
    // Over a year the 31st exists in 7 months.
    EXPECT_EQ(skip.count_between(utc(2026, 1, 1), utc(2027, 1, 1)), 7u);
    EXPECT_EQ(clamp.count_between(utc(2026, 1, 1), utc(2027, 1, 1)), 12u);
}

TEST(CalendarRule, YearlyOnFebruary29InCommonYears)
{
    use_tz("UTC");
    EXPECT_EQ(Rule::yearly(2, 29, {0, 0, 0}).next_after(utc(2026, 6, 1)), utc(2027, 2, 28));
    EXPECT_EQ(Rule::yearly(2, 29, {0, 0, 0}, ShortMonth::Skip).next_after(utc(2026, 6, 1)),
              utc(2028, 2, 29));
    EXPECT_EQ(Rule::yearly(1, 1, {0, 0, 0}).count_between(utc(2026, 6, 1), utc(2030, 6, 1)), 4u);
}

TEST(CalendarRule, WeeklyFiresOnItsWeekday)
{
    use_tz("Europe/Berlin");
    const Rule r = Rule::weekly(1, {5, 0, 0});            // Monday 05:00
    const int64_t t = r.next_after(utc(2026, 12, 9, 12)); // a Wednesday
    EXPECT_EQ(cal::format_local(t), "2026-12-14 05:00:00+0100");
    EXPECT_EQ(r.next_after(t) - t, 7 * 86400);
    EXPECT_EQ(r.last_at_or_before(t), t);
    EXPECT_EQ(r.last_at_or_before(t - 1), t - 7 * 86400);
}

TEST(CalendarRule, EveryMinutesIsAlignedToWholeMinutes)
{
    use_tz("UTC");
    EXPECT_EQ(Rule::every_minutes(1).next_after(utc(2026, 1, 1, 12, 34, 56)),
              utc(2026, 1, 1, 12, 35));
    EXPECT_EQ(Rule::every_minutes(15).next_after(utc(2026, 1, 1, 12, 34, 56)),
              utc(2026, 1, 1, 12, 45));
    EXPECT_EQ(Rule::every_minutes(1).count_between(utc(2026, 1, 1), utc(2026, 1, 2)), 1440u);
}

TEST(CalendarRule, BadInputGetsAClearError)
{
    use_tz("UTC");
    EXPECT_NE(error_of([] {
                  cal::parse_date_time("2026-02-30 05:00");
              }).find("February 2026 has 28 days"),
              std::string::npos);
    EXPECT_NE(error_of([] { cal::parse_time_of_day("25:00"); }).find("hour 25 is not 0..23"),
              std::string::npos);
    EXPECT_NE(error_of([] { cal::parse_time_of_day("12:60"); }).find("minute 60"),
              std::string::npos);
    EXPECT_NE(error_of([] { cal::parse_time_of_day("noon"); }).find("is not HH:MM"),
              std::string::npos);
    EXPECT_NE(error_of([] { cal::parse_date_time("2026-13-01 00:00"); }).find("month 13"),
              std::string::npos);
    EXPECT_NE(error_of([] { Rule::every_minutes(7); }).find("must divide 60"), std::string::npos);
    EXPECT_NE(error_of([] { Rule::weekly(7, {}); }).find("weekday 7"), std::string::npos);
    EXPECT_NE(error_of([] { Rule::monthly(32, {}); }).find("day of month 32"), std::string::npos);
    EXPECT_NE(error_of([] { Rule::yearly(4, 31, {}); }).find("April has no day 31"),
              std::string::npos);
    EXPECT_NE(error_of([] { Rule::daily({24, 0, 0}); }).find("hour 24"), std::string::npos);
    EXPECT_EQ(cal::parse_date_time("2028-02-29T23:59:59").day, 29);
}

// ---- the calendar on a manual clock ------------------------------------------------------

TEST(Calendar, ATimerInThePastOrAnInvalidDateIsRefused)
{
    use_tz("UTC");
    in_sched([](coho::Scheduler &s) {
        ManualClock clock(utc(2026, 6, 1, 12) * 1000);
        Calendar c(s, clock);
        Log log;
        EXPECT_NE(error_of([&] {
                      c.at({2026, 6, 1, 11, 59, 59}, named("past"), log.cb());
                  }).find("is not after now (2026-06-01 12:00:00+0000)"),
                  std::string::npos);
        EXPECT_NE(error_of([&] {
                      c.at({2026, 6, 1, 12, 0, 0}, named("now"), log.cb());
                  }).find("is not after now"),
                  std::string::npos);
        EXPECT_NE(error_of([&] {
                      c.at({2026, 2, 30, 0, 0, 0}, named("feb30"), log.cb());
                  }).find("February 2026 has 28 days"),
                  std::string::npos);
        EXPECT_NE(error_of([&] { c.after(-1ms, named("neg"), log.cb()); }).find("negative delay"),
                  std::string::npos);
        EXPECT_NE(error_of([&] { c.after(1ms, named("nocb"), Callback()); }).find("no callback"),
                  std::string::npos);
        EXPECT_EQ(c.stats().live, 0u);
    });
}

TEST(Calendar, AnAbsoluteTimerFiresOnceAtItsTimeInACoroutineNamedAfterIt)
{
    use_tz("America/New_York");
    in_sched([](coho::Scheduler &s) {
        ManualClock clock(local_s(2026, 6, 1, 11, 59, 0) * 1000);
        Calendar c(s, clock);
        c.start();
        std::vector<std::string> names;
        std::vector<Fire> fires;
        const uint64_t id = c.at({2026, 6, 1, 12, 0, 0}, named("noon-event"), [&](const Fire &f) {
            char b[COHO_NAME_MAX];
            coho_get_name(0, b, sizeof b);
            names.push_back(b);
            fires.push_back(f);
        });
        EXPECT_EQ(c.next_due_ms(id), local_s(2026, 6, 1, 12) * 1000);
        clock.advance(59999ms);
        settle();
        EXPECT_TRUE(fires.empty());
        clock.advance(1ms);
        settle();
        ASSERT_EQ(fires.size(), 1u);
        EXPECT_EQ(names[0], "noon-event");
        EXPECT_EQ(fires[0].due_ms, local_s(2026, 6, 1, 12) * 1000);
        EXPECT_FALSE(fires[0].late);
        clock.advance(48h);
        settle();
        EXPECT_EQ(fires.size(), 1u);
        EXPECT_EQ(c.stats().live, 0u);
        EXPECT_FALSE(c.cancel(id)); // ended: its id is stale
        c.stop();
    });
}

TEST(Calendar, AForwardJumpFiresTheMissedOccurrencesOnceLate)
{
    use_tz("UTC");
    in_sched([](coho::Scheduler &s) {
        ManualClock clock(utc(2026, 6, 1, 4) * 1000);
        Calendar c(s, clock);
        c.start();
        Log log;
        c.every(Rule::daily({5, 0, 0}), named("daily"), log.cb());
        clock.set_wall(utc(2026, 6, 4, 6) * 1000); // jumps over the 1st, 2nd, 3rd and 4th's 05:00
        settle();
        ASSERT_EQ(log.fires.size(), 1u);
        EXPECT_TRUE(log.fires[0].late);
        EXPECT_EQ(log.fires[0].missed, 3u);
        EXPECT_EQ(log.fires[0].due_ms, utc(2026, 6, 4, 5) * 1000);
        EXPECT_EQ(c.stats().clock_sets, 1u);
        clock.advance(23h); // the 5th's 05:00, on time
        settle();
        ASSERT_EQ(log.fires.size(), 2u);
        EXPECT_FALSE(log.fires[1].late);
        EXPECT_EQ(log.fires[1].missed, 0u);
        c.stop();
    });
}

TEST(Calendar, AForwardJumpSkipsTheMissedOccurrencesWithTheSkipPolicy)
{
    use_tz("UTC");
    in_sched([](coho::Scheduler &s) {
        ManualClock clock(utc(2026, 6, 1, 4) * 1000);
        Calendar c(s, clock);
        c.start();
        Log log;
        c.every(Rule::daily({5, 0, 0}), named("daily", Missed::Skip), log.cb());
        clock.set_wall(utc(2026, 6, 4, 6) * 1000);
        settle();
        EXPECT_TRUE(log.fires.empty());
        EXPECT_EQ(c.stats().skipped, 4u);
        clock.advance(23h);
        settle();
        ASSERT_EQ(log.fires.size(), 1u);
        EXPECT_EQ(log.fires[0].due_ms, utc(2026, 6, 5, 5) * 1000);
        c.stop();
    });
}

TEST(Calendar, ABackwardJumpNeverFiresAnOccurrenceTwice)
{
    use_tz("UTC");
    in_sched([](coho::Scheduler &s) {
        ManualClock clock(utc(2026, 6, 1, 4, 59, 59) * 1000);
        Calendar c(s, clock);
        c.start();
        Log log;
        c.every(Rule::daily({5, 0, 0}), named("daily"), log.cb());
        clock.advance(1s);
        settle();
        ASSERT_EQ(log.fires.size(), 1u);
        clock.set_wall(utc(2026, 6, 1, 3) * 1000); // two hours back: 05:00 comes again
        settle();
        clock.advance(3h);
        settle();
        EXPECT_EQ(log.fires.size(), 1u);
        clock.advance(24h); // the 2nd's 05:00
        settle();
        ASSERT_EQ(log.fires.size(), 2u);
        EXPECT_EQ(log.fires[1].due_ms, utc(2026, 6, 2, 5) * 1000);
        c.stop();
    });
}

TEST(Calendar, ADelayKeepsItsMonotonicDeadlineWhenTheWallClockJumps)
{
    use_tz("UTC");
    in_sched([](coho::Scheduler &s) {
        ManualClock clock(utc(2026, 6, 1) * 1000);
        Calendar c(s, clock);
        c.start();
        Log log;
        c.after(10s, named("delay"), log.cb());
        clock.set_wall(utc(2026, 6, 2) * 1000); // a day forward
        settle();
        EXPECT_TRUE(log.fires.empty());
        clock.set_wall(utc(2026, 5, 1) * 1000); // a month back
        settle();
        clock.advance(9999ms);
        settle();
        EXPECT_TRUE(log.fires.empty());
        clock.advance(1ms);
        settle();
        EXPECT_EQ(log.fires.size(), 1u);
        c.stop();
    });
}

TEST(Calendar, TimersEndWithTheirOwner)
{
    use_tz("UTC");
    in_sched([](coho::Scheduler &s) {
        ManualClock clock(utc(2026, 6, 1) * 1000);
        Calendar c(s, clock);
        c.start();
        std::vector<std::string> fired;
        auto note = [&](const char *what) {
            return [&fired, what](const Fire &) { fired.push_back(what); };
        };
        for (int i = 0; i < 3; i++)
            c.after(1s, named("buff", Missed::FireOnce, Owner::player(42)), note("player42"));
        c.every(Rule::every_minutes(1), named("regen", Missed::FireOnce, Owner::player(42)),
                note("player42"));
        c.after(1s, named("buff", Missed::FireOnce, Owner::player(43)), note("player43"));
        c.after(1s, named("boss", Missed::FireOnce, Owner::instance(7)), note("instance7"));
        c.after(1s, named("app"), note("app"));
        EXPECT_EQ(c.cancel_owner(Owner::player(42)), 4u);
        EXPECT_EQ(c.cancel_owner(Owner::player(42)), 0u);
        EXPECT_EQ(c.cancel_owner(Owner::instance(7)), 1u);
        EXPECT_EQ(c.stats().live, 2u);
        clock.advance(2min);
        settle();
        std::sort(fired.begin(), fired.end());
        EXPECT_EQ(fired, (std::vector<std::string>{"app", "player43"}));
        c.stop();
    });
}

TEST(Calendar, ASlowCallbackDelaysNoOtherTimerAndOneTimersCallbacksNeverOverlap)
{
    use_tz("UTC");
    in_sched([](coho::Scheduler &s) {
        ManualClock clock(utc(2026, 6, 1, 12, 0, 30) * 1000);
        Calendar c(s, clock);
        c.start();
        coho::Semaphore release_slow;
        int slow_running = 0, slow_max = 0, slow_runs = 0;
        std::vector<Fire> slow_fires, fast;
        c.every(Rule::every_minutes(1), named("slow"), [&](const Fire &f) {
            slow_fires.push_back(f);
            slow_runs++;
            slow_max = std::max(slow_max, ++slow_running);
            release_slow.acquire(); // parks until the test lets it go
            slow_running--;
        });
        c.after(90s, named("fast"), [&](const Fire &f) { fast.push_back(f); });
        for (int i = 0; i < 5; i++) { // 12:01 .. 12:05 pass while "slow" is parked
            clock.advance(1min);
            settle();
        }
        EXPECT_EQ(slow_runs, 1);
        EXPECT_EQ(fast.size(), 1u); // fired at 12:02 although "slow" still runs
        EXPECT_EQ(c.stats().running, 1u);
        release_slow.release();
        settle(); // the occurrences due meanwhile fold into one late run
        ASSERT_EQ(slow_fires.size(), 2u);
        EXPECT_EQ(slow_fires[1].due_ms, utc(2026, 6, 1, 12, 5) * 1000);
        EXPECT_EQ(slow_fires[1].missed, 3u);
        EXPECT_TRUE(slow_fires[1].late);
        EXPECT_EQ(slow_max, 1);
        release_slow.release();
        settle();
        c.stop();
    });
}

TEST(Calendar, MinuteTimersFireOnWholeMinutesOfTheWallClock)
{
    use_tz("Asia/Kolkata"); // UTC+05:30: whole minutes all the same
    in_sched([](coho::Scheduler &s) {
        ManualClock clock(utc(2026, 6, 1, 12, 0, 30) * 1000 + 500);
        Calendar c(s, clock);
        c.start();
        Log log;
        c.every(Rule::every_minutes(1), named("tick"), log.cb());
        for (int i = 0; i < 3; i++) {
            clock.advance(1min);
            settle();
        }
        ASSERT_EQ(log.fires.size(), 3u);
        for (const Fire &f : log.fires)
            EXPECT_EQ(f.due_ms % 60000, 0);
        EXPECT_EQ(log.fires[0].due_ms, utc(2026, 6, 1, 12, 1) * 1000);
        c.stop();
    });
}

TEST(Calendar, ADailyTimerAcrossASpringForwardFiresOnceAtTheGapsEnd)
{
    use_tz("America/New_York");
    in_sched([](coho::Scheduler &s) {
        ManualClock clock(utc(2026, 3, 7, 12) * 1000);
        Calendar c(s, clock);
        c.start();
        Log log;
        c.every(Rule::daily({2, 30, 0}), named("night"), log.cb());
        for (int i = 0; i < 72 * 4; i++) { // three days in 15-minute steps
            clock.advance(15min);
            settle();
        }
        ASSERT_EQ(log.fires.size(), 3u);
        EXPECT_EQ(log.fires[0].due_ms, utc(2026, 3, 8, 7, 0) * 1000); // 03:00 EDT
        EXPECT_EQ(log.fires[1].due_ms, utc(2026, 3, 9, 6, 30) * 1000);
        for (const Fire &f : log.fires)
            EXPECT_FALSE(f.late);
        c.stop();
    });
}

TEST(Calendar, ABoundaryEventFiresOncePerBoundaryAcrossRestarts)
{
    use_tz("Europe/Berlin");
    const std::string dir = temp_dir();
    ASSERT_FALSE(dir.empty());
    FileBoundaryStore store(dir);
    const Rule reset = Rule::daily({5, 0, 0});
    std::vector<Fire> fires;
    auto run_at = [&](int64_t start_ms, std::chrono::milliseconds run_for, Missed m) {
        in_sched([&](coho::Scheduler &s) {
            ManualClock clock(start_ms);
            Calendar c(s, clock);
            c.start();
            c.boundary(reset, store, named("daily-reset", m),
                       [&](const Fire &f) { fires.push_back(f); });
            settle();
            for (auto left = run_for; left > 0ms; left -= 1min) {
                clock.advance(std::min<std::chrono::milliseconds>(left, 1min));
                settle();
            }
            c.stop();
        });
    };
    // First start ever, at 04:59:30: the 1st's boundary (yesterday's 05:00) counts as handled.
    run_at(local_s(2026, 6, 1, 4, 59, 30) * 1000, 1min, Missed::FireOnce);
    ASSERT_EQ(fires.size(), 1u);
    EXPECT_EQ(fires[0].due_ms, local_s(2026, 6, 1, 5) * 1000);
    EXPECT_EQ(fires[0].previous_s, local_s(2026, 5, 31, 5));
    EXPECT_FALSE(fires[0].late);
    // A restart the same morning: that boundary was handled, nothing fires.
    run_at(local_s(2026, 6, 1, 6) * 1000, 2min, Missed::FireOnce);
    EXPECT_EQ(fires.size(), 1u);
    // Down over two boundaries (the 2nd's and 3rd's): handled once, at start, late.
    run_at(local_s(2026, 6, 3, 9) * 1000, 1min, Missed::FireOnce);
    ASSERT_EQ(fires.size(), 2u);
    EXPECT_TRUE(fires[1].late);
    EXPECT_EQ(fires[1].missed, 1u);
    EXPECT_EQ(fires[1].due_ms, local_s(2026, 6, 3, 5) * 1000);
    EXPECT_EQ(fires[1].previous_s, local_s(2026, 6, 1, 5));
    // With the Skip policy, boundaries passed while down are not handled late.
    run_at(local_s(2026, 6, 5, 9) * 1000, 1min, Missed::Skip);
    EXPECT_EQ(fires.size(), 2u);
    int64_t saved = 0;
    ASSERT_TRUE(store.load("daily-reset", &saved));
    EXPECT_EQ(saved, local_s(2026, 6, 5, 5));
    // The file says what it holds.
    std::ifstream f(store.path_of("daily-reset"));
    std::stringstream text;
    text << f.rdbuf();
    EXPECT_NE(text.str().find("2026-06-05 05:00:00+0200"), std::string::npos) << text.str();
    // A corrupt file and a bad name are errors, not silently a fresh start.
    std::ofstream(store.path_of("broken")) << "garbage\n";
    int64_t v = 0;
    EXPECT_NE(error_of([&] { store.load("broken", &v); }).find("not a boundary file"),
              std::string::npos);
    EXPECT_NE(error_of([&] { store.load("../evil", &v); }).find("boundary name"),
              std::string::npos);
    std::system(("rm -rf " + dir).c_str());
}

TEST(Calendar, StopEndsEveryTimerAndWaitsForRunningCallbacks)
{
    use_tz("UTC");
    in_sched([](coho::Scheduler &s) {
        ManualClock clock(utc(2026, 6, 1) * 1000);
        Calendar c(s, clock);
        c.start();
        bool finished = false;
        c.after(1s, named("long"), [&](const Fire &) {
            coho::this_co::sleep_for(20ms);
            finished = true;
        });
        c.every(Rule::daily({5, 0, 0}), named("daily"), [](const Fire &) {});
        clock.advance(1s);
        settle();
        EXPECT_EQ(c.stats().running, 1u);
        c.stop();
        EXPECT_TRUE(finished);
        EXPECT_EQ(c.stats().live, 0u);
        EXPECT_EQ(c.stats().running, 0u);
    });
}

// ---- the system clock ----------------------------------------------------------------------

TEST(CalendarSystemClock, AReadOfTheTimerfdMapsToItsWakeUp)
{
    Clock::Wake w = Clock::Wake::Interrupted;
    EXPECT_TRUE(SystemClock::wake_of_read(8, 0, &w));
    EXPECT_EQ(w, Clock::Wake::Expired);
    EXPECT_TRUE(SystemClock::wake_of_read(-1, ECANCELED, &w)); // TFD_TIMER_CANCEL_ON_SET
    EXPECT_EQ(w, Clock::Wake::Set);
    EXPECT_FALSE(SystemClock::wake_of_read(-1, EAGAIN, &w));
    EXPECT_THROW(SystemClock::wake_of_read(-1, EBADF, &w), std::system_error);
}

TEST(CalendarSystemClock, AnOffsetClockFiresATimerAtItsShiftedWallTime)
{
    use_tz("UTC");
    in_sched([](coho::Scheduler &s) {
        // The clock reads ten years ahead; a timer two seconds after that "now" fires.
        const int64_t offset = int64_t(3652) * 86400 * 1000;
        SystemClock clock(offset);
        const int64_t real = std::chrono::duration_cast<std::chrono::milliseconds>(
                                 std::chrono::system_clock::now().time_since_epoch())
                                 .count();
        EXPECT_GE(clock.wall_ms(), real + offset);
        EXPECT_LT(clock.wall_ms(), real + offset + 60000);
        Calendar c(s, clock);
        c.start();
        bool fired = false;
        const DateTime when = cal::to_local(clock.wall_ms() / 1000 + 2);
        c.at(when, named("shifted"), [&](const Fire &) { fired = true; });
        for (int i = 0; i < 600 && !fired; i++) // up to 60 s on a loaded machine
            coho::this_co::sleep_for(100ms);
        EXPECT_TRUE(fired);
        EXPECT_GE(clock.wall_ms() / 1000, cal::resolve_local(when));
        c.stop();
    });
}

// The kernel path itself: the system clock is set (to the time it reads, so nothing else on
// the machine sees a jump beyond the microseconds of the call), the timerfd armed with
// TFD_TIMER_CANCEL_ON_SET fails its read with ECANCELED, and the calendar re-evaluates its
// timers at once. Needs CAP_SYS_TIME (root in a container usually has it); skipped otherwise.
TEST(CalendarSystemClock, ASetOfTheRealSystemClockIsNoticedAtOnce)
{
    use_tz("UTC");
    in_sched([](coho::Scheduler &s) {
        SystemClock clock;
        Calendar c(s, clock);
        c.start();
        bool fired = false;
        const DateTime later = cal::to_local(clock.wall_ms() / 1000 + 3600);
        c.at(later, named("an hour ahead"), [&](const Fire &) { fired = true; });
        coho::this_co::sleep_for(50ms); // the calendar's driver is parked in its read()
        EXPECT_EQ(c.stats().clock_sets, 0u);
        timespec now{};
        ASSERT_EQ(clock_gettime(CLOCK_REALTIME, &now), 0);
        if (clock_settime(CLOCK_REALTIME, &now) != 0) {
            const int e = errno;
            c.stop();
            GTEST_SKIP() << "clock_settime(CLOCK_REALTIME): " << strerror(e)
                         << " (needs CAP_SYS_TIME)";
        }
        for (int i = 0; i < 1000 && c.stats().clock_sets == 0; i++) // up to 10 s when loaded
            coho::this_co::sleep_for(10ms);
        EXPECT_GE(c.stats().clock_sets, 1u) << "the timerfd's ECANCELED was not noticed";
        EXPECT_FALSE(fired) << "a set that did not move the clock fired an hour-ahead timer";
        EXPECT_EQ(c.stats().live, 1u);
        c.stop();
    });
}
