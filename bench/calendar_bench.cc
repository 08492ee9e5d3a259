// SPDX-License-Identifier: MIT
// game/svc benchmarks (bench/RESULTS.md "## game/svc"): the calendar with 1 M live timers
// (add+cancel; firing, each callback in a coroutine of its own) against the mio_driver wheel
// measured in the same run with the same counts, and unique ids per second (one thread and
// four) against an atomic counter, the floor for any unique id.
//
// The calendar sources are compiled into this program (with coho_static, like the wheel), so
// both sides run the same libcoho.
#include <benchmark/benchmark.h>
#include <stdlib.h>
#include <time.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include <coho.hpp>

#include "game/svc/calendar.hpp"
#include "game/svc/ids.hpp"

extern "C" {
#include "mio_driver/wheel.h"
}

using namespace coho::game;
using namespace std::chrono_literals;

namespace {

constexpr size_t kLive = 1000000; // live timers
constexpr uint64_t kSpan = 10000; // delays spread over 10 s (the wheel: 10 000 ticks of 1 ms)
constexpr size_t kBatch = 1024;   // timers added then cancelled per round

uint64_t rng_state = 42;
inline uint64_t rnd()
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

const int64_t kStartMs = int64_t(1780000000) * 1000; // 2026-05-28, UTC

void use_utc()
{
    setenv("TZ", "UTC", 1);
    tzset();
}

// ---- the baseline: mio_driver's wheel ----

struct WheelFixture {
    coho__wheel_t *w = static_cast<coho__wheel_t *>(malloc(sizeof(coho__wheel_t)));
    std::vector<coho__timer_t> live = std::vector<coho__timer_t>(kLive);
    WheelFixture()
    {
        coho__wheel_init(w, 0);
        for (auto &t : live) {
            coho__timer_init(&t, nullptr, nullptr);
            t.expire_tick = rnd() % kSpan;
            coho__wheel_add(w, &t);
        }
    }
    ~WheelFixture()
    {
        coho__wheel_destroy(w);
        free(w);
    }
};

void BM_Wheel_AddCancel1M(benchmark::State &state)
{
    WheelFixture f;
    std::vector<coho__timer_t> batch(kBatch);
    for (auto &t : batch)
        coho__timer_init(&t, nullptr, nullptr);
    for (auto _ : state) {
        for (auto &t : batch) {
            t.expire_tick = f.w->cur + rnd() % kSpan;
            coho__wheel_add(f.w, &t);
        }
        for (auto &t : batch)
            coho__wheel_del(f.w, &t);
    }
    state.SetItemsProcessed(state.iterations() * kBatch);
}
BENCHMARK(BM_Wheel_AddCancel1M)->Unit(benchmark::kMicrosecond);

size_t expired;
void count_fire(void *, coho_list_t *due, uint64_t)
{
    coho_list_t *n;
    while ((n = coho_list_pop_front(due)) != nullptr) {
        coho_container_of(n, coho__timer_t, link)->state = COHO__TIMER_IDLE;
        expired++;
    }
}

void BM_Wheel_Expire1M(benchmark::State &state)
{
    for (auto _ : state) {
        state.PauseTiming();
        auto f = std::make_unique<WheelFixture>();
        expired = 0;
        state.ResumeTiming();
        for (uint64_t tick = 0; tick < kSpan; tick++)
            coho__wheel_advance(f->w, tick, count_fire, nullptr);
        state.PauseTiming();
        if (expired != kLive)
            state.SkipWithError("not every timer expired");
        f.reset();
        state.ResumeTiming();
    }
    state.SetItemsProcessed(state.iterations() * kLive);
}
BENCHMARK(BM_Wheel_Expire1M)->Unit(benchmark::kMillisecond)->Iterations(3);

// ---- the calendar ----

TimerOpts opts(const char *name)
{
    TimerOpts o;
    o.name = name;
    return o;
}

// 1 M live timers: delays over 10 s (arg 0), or daily rules at random times of day (arg 1).
struct CalendarFixture {
    coho::Scheduler sched;
    ManualClock clock{kStartMs};
    Calendar cal{sched, clock};
    size_t fired = 0;
    explicit CalendarFixture(bool daily)
    {
        auto cb = [this](const Fire &) { fired++; };
        for (size_t i = 0; i < kLive; i++) {
            if (daily)
                cal.every(Rule::daily({int(rnd() % 24), int(rnd() % 60), int(rnd() % 60)}),
                          opts("d"), cb);
            else
                cal.after(std::chrono::milliseconds(rnd() % kSpan), opts("t"), cb);
        }
    }
};

// Add+cancel of a delay (arg 0: a heap push and remove) or of a daily rule (arg 1: also its
// next occurrence in local time), with 1 M live timers of the same kind.
void BM_Calendar_AddCancel1M(benchmark::State &state)
{
    use_utc();
    const bool daily = state.range(0) != 0;
    CalendarFixture f(daily);
    std::vector<uint64_t> ids(kBatch);
    auto cb = [](const Fire &) {};
    for (auto _ : state) {
        for (auto &id : ids)
            id = daily ? f.cal.every(Rule::daily({int(rnd() % 24), int(rnd() % 60), 0}), opts("d"),
                                     cb)
                       : f.cal.after(std::chrono::milliseconds(rnd() % kSpan), opts("t"), cb);
        for (auto id : ids)
            f.cal.cancel(id);
    }
    state.SetItemsProcessed(state.iterations() * kBatch);
}
BENCHMARK(BM_Calendar_AddCancel1M)->ArgName("daily")->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);

// 1 M timers fired: delays, the clock advanced 1 ms at a time over their 10 s (arg 0), or daily
// rules, the clock advanced 1 s at a time over a day (arg 1). Each fire is a heap pop, a
// coroutine spawned for its callback (named after the timer) and, for a rule, the next
// occurrence computed and pushed.
void BM_Calendar_Fire1M(benchmark::State &state)
{
    use_utc();
    const bool daily = state.range(0) != 0;
    for (auto _ : state) {
        state.PauseTiming();
        auto f = std::make_unique<CalendarFixture>(daily);
        f->cal.start();
        state.ResumeTiming();
        f->sched.spawn([&] {
            const auto step = daily ? 1000ms : 1ms;
            const int64_t steps = daily ? 86400 : int64_t(kSpan);
            for (int64_t i = 0; i < steps; i++) {
                f->clock.advance(step);
                while (f->cal.stats().running > 0 || f->clock.armed() <= f->clock.wall_ms())
                    coho::this_co::yield();
            }
            f->cal.stop();
        });
        f->sched.run();
        state.PauseTiming();
        if (f->fired != kLive)
            state.SkipWithError("not every timer fired once");
        f.reset();
        state.ResumeTiming();
    }
    state.SetItemsProcessed(state.iterations() * kLive);
}
BENCHMARK(BM_Calendar_Fire1M)
    ->ArgName("daily")
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1);

// ---- ids ----

IdGen &shared_ids()
{
    static IdGen g([] {
        IdGen::Options o;
        o.machine_id = 1;
        return o;
    }());
    return g;
}

void BM_Ids_Next(benchmark::State &state)
{
    IdGen &g = shared_ids();
    for (auto _ : state)
        benchmark::DoNotOptimize(g.next());
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Ids_Next)->Threads(1)->Threads(4)->UseRealTime();

std::atomic<uint64_t> counter{0};
void BM_Ids_AtomicCounterBaseline(benchmark::State &state)
{
    for (auto _ : state)
        benchmark::DoNotOptimize(counter.fetch_add(1, std::memory_order_relaxed));
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Ids_AtomicCounterBaseline)->Threads(1)->Threads(4)->UseRealTime();

} // namespace

BENCHMARK_MAIN();
