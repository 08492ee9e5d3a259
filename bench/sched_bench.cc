// SPDX-License-Identifier: MIT
// Scheduler benchmarks: spawn -> run -> exit per coroutine (id allocation, queueing and a
// pooled stack included) against Boost.Context callcc with a pooled stack; the yield round
// trip against a Boost continuation ping-pong; and RSS per coroutine with 10^6 coroutines
// parked at once (unguarded stacks beyond the guarded cap). Baselines run in the same binary.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <boost/context/continuation.hpp>
#include <boost/context/pooled_fixedsize_stack.hpp>
#include <cstdio>
#include <cstdlib>

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

// state.range(0) coroutines are spawned, then run to completion, per iteration. Up to 64 the
// stacks cycle through the pool's resident free list; beyond the default idle watermark (64)
// the surplus is returned with MADV_DONTNEED and faults back in, which dominates the cost;
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
BENCHMARK(BM_Spawn_Coho)->Args({1, 0})->Args({32, 0})->Args({1024, 0})->Args({1024, 1});

void BM_Spawn_BoostCallccPooled(benchmark::State &state)
{
    const int kBatch = static_cast<int>(state.range(0));
    ctx::pooled_fixedsize_stack salloc(128 * 1024, kBatch);

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
BENCHMARK(BM_Spawn_BoostCallccPooled)->Arg(1)->Arg(32)->Arg(1024);

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

// ---- 10^6 parked coroutines ----

struct ParkState {
    coho_sched_t *s;
    int64_t target;
    int64_t parked;
    size_t rss_before;
    size_t rss_parked;
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
    p->rss_parked = rss_bytes();
    coho_sched_stop(p->s);
}

void BM_Parked_RssPerCoroutine(benchmark::State &state)
{
    const int64_t n = state.range(0);
    double per_co = 0;

    for (auto _ : state) {
        ParkState p{};
        coho_spawn_opts_t o;

        p.rss_before = rss_bytes();
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
    }
    state.counters["rss_per_co_B"] = per_co;
}
BENCHMARK(BM_Parked_RssPerCoroutine)
    ->Arg(100000)
    ->Arg(1000000)
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

} // namespace

BENCHMARK_MAIN();
