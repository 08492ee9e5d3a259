// SPDX-License-Identifier: MIT
// Scheduler benchmarks: spawn -> run -> exit per coroutine (id allocation, queueing and a
// pooled stack included) at batch sizes past every pool threshold, against Boost.Context callcc
// with a pooled stack; a fan-out (a coroutine spawning batches of 100 and yielding); the yield
// round trip against a Boost continuation ping-pong; RSS after a burst of 10^5 coroutines and
// while idling; and RSS and creation time per coroutine with 10^6 coroutines parked at once
// (unguarded stacks beyond the guarded cap). Baselines run in the same binary.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <boost/context/continuation.hpp>
#include <boost/context/fiber.hpp>
#include <boost/context/pooled_fixedsize_stack.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <coho.h>

namespace ctx = boost::context;

namespace {

// Bytes resident (VmRSS) of this process.
size_t rss_bytes()
{
    long pages = 0, resident = 0;
    FILE *f = std::fopen("/proc/self/statm", "r");

    if (f == nullptr)
        return 0;
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2)
        resident = 0;
    std::fclose(f);
    return static_cast<size_t>(resident) * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

void noop(void *) {}

// ---- spawn -> run -> exit ----

// state.range(0) coroutines are spawned, then run to completion, per iteration, so that many
// stacks are live at once (1 to 10,000: below and far past idle_stacks_max, 64 by default);
// state.range(1) = 1 raises idle_stacks_max to the batch size.
void BM_Spawn_Coho(benchmark::State &state)
{
    const int kBatch = static_cast<int>(state.range(0));
    coho_sched_opts_t so;

    coho_sched_opts_init(&so);
    if (state.range(1) != 0)
        so.idle_stacks_max = static_cast<unsigned>(kBatch); // keep every stack resident
    coho_sched_t *s = coho_sched_create(&so);
    coho_spawn_opts_t o;

    coho_spawn_opts_init(&o);
    o.detached = true;
    // One untimed batch first, as for the baseline: the first touch of 10,000 stacks (page
    // faults, slab mappings) is set-up, not the steady state a server bursts in.
    for (int i = 0; i < kBatch; i++)
        coho_spawn_ex(s, noop, nullptr, &o);
    coho_sched_run(s);
    for (auto _ : state) {
        for (int i = 0; i < kBatch; i++)
            benchmark::DoNotOptimize(coho_spawn_ex(s, noop, nullptr, &o));
        coho_sched_run(s);
    }
    state.counters["per_co"] =
        benchmark::Counter(static_cast<double>(state.iterations()) * kBatch,
                           benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
    coho_sched_destroy(s);
}
BENCHMARK(BM_Spawn_Coho)
    ->Args({1, 0})
    ->Args({32, 0})
    ->Args({100, 0})
    ->Args({1024, 0})
    ->Args({10000, 0})
    ->Args({1024, 1});

// A fan-out as servers write it: one coroutine spawns batches of 100 detached children and
// yields so they run; state.range(0) batches per iteration. Time per child.
struct FanOut {
    coho_sched_t *s;
    int batches;
};

void fan_out_parent(void *arg)
{
    auto *f = static_cast<FanOut *>(arg);
    coho_spawn_opts_t o;

    coho_spawn_opts_init(&o);
    o.detached = true;
    for (int b = 0; b < f->batches; b++) {
        for (int i = 0; i < 100; i++)
            coho_spawn_ex(f->s, noop, nullptr, &o);
        coho_yield();
    }
}

void BM_Spawn_CohoFanOut(benchmark::State &state)
{
    coho_sched_t *s = coho_sched_create(nullptr);
    FanOut f{s, static_cast<int>(state.range(0))};

    for (auto _ : state) {
        coho_spawn(s, fan_out_parent, &f);
        coho_sched_run(s);
    }
    state.counters["per_co"] =
        benchmark::Counter(static_cast<double>(state.iterations()) * f.batches * 100,
                           benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
    coho_sched_destroy(s);
}
BENCHMARK(BM_Spawn_CohoFanOut)->Arg(10);

void BM_Spawn_BoostCallccPooled(benchmark::State &state)
{
    const int kBatch = static_cast<int>(state.range(0));
    ctx::pooled_fixedsize_stack salloc(128 * 1024, kBatch);

    // Untimed warm-up: the pool's first block (kBatch stacks in one allocation) is set-up.
    ctx::callcc(std::allocator_arg, salloc,
                [](ctx::continuation &&caller) { return std::move(caller); });
    for (auto _ : state) {
        for (int i = 0; i < kBatch; i++) {
            ctx::continuation c =
                ctx::callcc(std::allocator_arg, salloc,
                            [](ctx::continuation &&caller) { return std::move(caller); });
            benchmark::DoNotOptimize(c);
        }
    }
    state.counters["per_co"] =
        benchmark::Counter(static_cast<double>(state.iterations()) * kBatch,
                           benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_Spawn_BoostCallccPooled)->Arg(1)->Arg(32)->Arg(100)->Arg(1024)->Arg(10000);

// The same shape as BM_Spawn_Coho: a batch of state.range(0) Boost fibers (created without
// running, like a spawn) is alive at once, then each runs to its end (two switches, like coho's
// switch in and out). callcc above runs each to completion before creating the next, so it
// only ever touches one stack; this one touches as many stacks as coho does.
void BM_Spawn_BoostFiberPooledBatch(benchmark::State &state)
{
    const int kBatch = static_cast<int>(state.range(0));
    ctx::pooled_fixedsize_stack salloc(128 * 1024, kBatch);
    std::vector<ctx::fiber> fibers(static_cast<size_t>(kBatch));
    auto body = [](ctx::fiber &&caller) { return std::move(caller); };
    auto batch = [&] {
        for (int i = 0; i < kBatch; i++)
            fibers[static_cast<size_t>(i)] = ctx::fiber(std::allocator_arg, salloc, body);
        for (int i = 0; i < kBatch; i++)
            std::move(fibers[static_cast<size_t>(i)]).resume();
    };

    batch(); // untimed, as for the others: the first touch of the stacks is set-up
    for (auto _ : state)
        batch();
    state.counters["per_co"] =
        benchmark::Counter(static_cast<double>(state.iterations()) * kBatch,
                           benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_Spawn_BoostFiberPooledBatch)->Arg(1)->Arg(32)->Arg(100)->Arg(1024)->Arg(10000);

// ---- yield round trip ----

struct YieldArgs {
    int64_t rounds;
};

void yield_loop(void *arg)
{
    auto *a = static_cast<YieldArgs *>(arg);

    for (int64_t i = 0; i < a->rounds; i++)
        coho_yield();
}

// state.range(0) coroutines each yield `rounds` times: one yield = switch out, the loop's
// bookkeeping, switch in; one epoll_wait(0) per pass over the ready queue is shared by all.
void BM_Yield_Coho(benchmark::State &state)
{
    const int n = static_cast<int>(state.range(0));
    coho_sched_opts_t so;

    coho_sched_opts_init(&so);
    so.idle_stacks_max = static_cast<unsigned>(n); // no MADV_DONTNEED between iterations
    coho_sched_t *s = coho_sched_create(&so);
    YieldArgs a{10000 / n + 1};
    int64_t yields = 0;

    for (auto _ : state) {
        for (int i = 0; i < n; i++)
            coho_spawn_ex(s, yield_loop, &a, nullptr);
        coho_sched_run(s);
        yields += a.rounds * n;
    }
    state.counters["per_yield"] = benchmark::Counter(
        static_cast<double>(yields), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
    coho_sched_destroy(s);
}
BENCHMARK(BM_Yield_Coho)->Arg(1)->Arg(2)->Arg(100);

// A continuation ping-pong: one round trip = two switches, as a coho yield.
void BM_Yield_BoostContinuation(benchmark::State &state)
{
    int64_t yields = 0;

    for (auto _ : state) {
        ctx::continuation c = ctx::callcc([](ctx::continuation &&caller) {
            for (;;)
                caller = caller.resume();
            return std::move(caller);
        });
        for (int i = 0; i < 10000; i++)
            c = c.resume();
        yields += 10000;
        benchmark::DoNotOptimize(c);
        state.PauseTiming();
        // the continuation is dropped here: Boost unwinds it with forced_unwind
        c = ctx::continuation();
        state.ResumeTiming();
    }
    state.counters["per_yield"] = benchmark::Counter(
        static_cast<double>(yields), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_Yield_BoostContinuation);

// ---- RSS after a burst ----

// 10^5 coroutines live at once (each yields once, so all of them hold a stack together), then
// the scheduler idles (one coroutine sleeping) for 5 s. Counters: RSS before the burst, at its
// peak, after 1, 2 and 5 s of idling, and the idle time after which RSS was back within 10 %
// of the value before the burst (-1: not within 5 s).
struct Burst {
    coho_sched_t *s;
    int n;
    size_t rss_before, rss_peak, rss_1s, rss_2s, rss_5s;
    double back_s;
};

void burst_child(void *)
{
    coho_yield();
}

void burst_main(void *arg)
{
    auto *b = static_cast<Burst *>(arg);
    coho_spawn_opts_t o;

    coho_spawn_opts_init(&o);
    o.detached = true;
    for (int i = 0; i < b->n; i++)
        coho_spawn_ex(b->s, burst_child, nullptr, &o);
    coho_yield(); // every child runs to its yield
    b->rss_peak = rss_bytes();
    coho_yield(); // and finishes
    auto t0 = std::chrono::steady_clock::now();
    b->back_s = -1;
    for (int ms = 0; ms < 5000; ms += 50) {
        coho_sleep_ms(50);
        size_t r = rss_bytes();
        double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

        if (b->back_s < 0 && r <= b->rss_before + b->rss_before / 10)
            b->back_s = t;
        if (b->rss_1s == 0 && t >= 1.0)
            b->rss_1s = r;
        if (b->rss_2s == 0 && t >= 2.0)
            b->rss_2s = r;
    }
    b->rss_5s = rss_bytes();
}

void BM_Burst_RssReturns(benchmark::State &state)
{
    Burst b{};

    for (auto _ : state) {
        b = Burst{};
        b.s = coho_sched_create(nullptr);
        b.n = static_cast<int>(state.range(0));
        b.rss_before = rss_bytes();
        coho_spawn(b.s, burst_main, &b);
        coho_sched_run(b.s);
        coho_sched_destroy(b.s);
    }
    state.counters["rss_before_KiB"] = static_cast<double>(b.rss_before) / 1024;
    state.counters["rss_peak_KiB"] = static_cast<double>(b.rss_peak) / 1024;
    state.counters["rss_1s_KiB"] = static_cast<double>(b.rss_1s) / 1024;
    state.counters["rss_2s_KiB"] = static_cast<double>(b.rss_2s) / 1024;
    state.counters["rss_5s_KiB"] = static_cast<double>(b.rss_5s) / 1024;
    state.counters["back_within_10pct_s"] = b.back_s;
}
BENCHMARK(BM_Burst_RssReturns)->Arg(100000)->Iterations(1)->Unit(benchmark::kMillisecond);

// ---- 10^6 parked coroutines ----

struct ParkState {
    coho_sched_t *s;
    int64_t target;
    int64_t parked;
    size_t rss_before;
    size_t rss_parked;
    std::chrono::steady_clock::time_point t0, t_parked;
};

void parks(void *arg)
{
    auto *p = static_cast<ParkState *>(arg);

    p->parked++;
    coho_sleep_ms(3600 * 1000); // until the stop cancels it
}

void measures(void *arg)
{
    auto *p = static_cast<ParkState *>(arg);

    while (p->parked < p->target)
        coho_sleep_ms(1);
    p->t_parked = std::chrono::steady_clock::now();
    p->rss_parked = rss_bytes();
    coho_sched_stop(p->s);
}

void BM_Parked_RssPerCoroutine(benchmark::State &state)
{
    const int64_t n = state.range(0);
    double per_co = 0, create_ns = 0;

    for (auto _ : state) {
        ParkState p{};
        coho_spawn_opts_t o;

        p.rss_before = rss_bytes();
        p.t0 = std::chrono::steady_clock::now();
        p.s = coho_sched_create(nullptr);
        p.target = n;
        coho_spawn_opts_init(&o);
        o.detached = true;
        for (int64_t i = 0; i < n; i++) {
            if (coho_spawn_ex(p.s, parks, &p, &o) == 0) {
                state.SkipWithError("spawn failed");
                break;
            }
        }
        coho_spawn_ex(p.s, measures, &p, &o);
        coho_sched_run(p.s);
        coho_sched_destroy(p.s);
        per_co = static_cast<double>(p.rss_parked - p.rss_before) / static_cast<double>(n);
        create_ns = std::chrono::duration<double, std::nano>(p.t_parked - p.t0).count() /
                    static_cast<double>(n);
    }
    state.counters["rss_per_co_B"] = per_co;
    // From the first spawn until every coroutine has run and parked (wall time).
    state.counters["create_ns_per_co"] = create_ns;
}
BENCHMARK(BM_Parked_RssPerCoroutine)
    ->Arg(100000)
    ->Arg(1000000)
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

} // namespace

BENCHMARK_MAIN();
