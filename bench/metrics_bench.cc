// SPDX-License-Identifier: MIT
// The cost of a metrics update (coho/metrics.h) from one and from two threads, against the
// baseline every registry without shards pays: one relaxed atomic add on a word all threads
// share. Run: build-bench/bench/metrics_bench (bench/RESULTS.md "metrics").
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <string>

#include <coho/metrics.h>

namespace {

coho_metrics_t *registry()
{
    static coho_metrics_t *m = coho_metrics_create();
    return m;
}

coho_counter_t *counter()
{
    static coho_counter_t *c = coho_metrics_counter(registry(), "bench_total", "B.", nullptr, 0);
    return c;
}

coho_gauge_t *gauge()
{
    static coho_gauge_t *g = coho_metrics_gauge(registry(), "bench_level", "B.", nullptr, 0);
    return g;
}

coho_histogram_t *histogram()
{
    static const double bounds[] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5};
    static coho_histogram_t *h =
        coho_metrics_histogram(registry(), "bench_seconds", "B.", nullptr, 0, bounds, 8);
    return h;
}

// The baseline: one shared word, on a cache line of its own.
struct alignas(64) Shared {
    std::atomic<uint64_t> v{0};
};
Shared shared;

void BM_Metrics_CounterAdd(benchmark::State &st)
{
    coho_counter_t *c = counter();
    for (auto _ : st)
        coho_counter_add(c, 1);
}
BENCHMARK(BM_Metrics_CounterAdd)->Threads(1)->Threads(2);

void BM_Metrics_SharedAtomicAdd(benchmark::State &st)
{
    for (auto _ : st)
        shared.v.fetch_add(1, std::memory_order_relaxed);
}
BENCHMARK(BM_Metrics_SharedAtomicAdd)->Threads(1)->Threads(2);

void BM_Metrics_GaugeAdd(benchmark::State &st)
{
    coho_gauge_t *g = gauge();
    for (auto _ : st)
        coho_gauge_add(g, 1);
}
BENCHMARK(BM_Metrics_GaugeAdd)->Threads(1)->Threads(2);

void BM_Metrics_HistogramObserve(benchmark::State &st)
{
    coho_histogram_t *h = histogram();
    double v = 0.0001;
    for (auto _ : st) {
        coho_histogram_observe(h, v);
        v = v < 2 ? v * 1.5 : 0.0001; // walks every bucket
    }
}
BENCHMARK(BM_Metrics_HistogramObserve)->Threads(1)->Threads(2);

void BM_Metrics_RenderPrometheus(benchmark::State &st)
{
    coho_metrics_t *m = coho_metrics_create();
    for (int i = 0; i < 100; i++) {
        std::string v = std::to_string(i);
        coho_label_t l[] = {{"id", v.c_str()}};
        coho_counter_add(coho_metrics_counter(m, "bench_series_total", "B.", l, 1), uint64_t(i));
    }
    for (auto _ : st) {
        size_t len = 0;
        char *s = coho_metrics_render_prometheus(m, &len);
        benchmark::DoNotOptimize(s);
        free(s);
    }
    coho_metrics_destroy(m);
}
BENCHMARK(BM_Metrics_RenderPrometheus);

} // namespace

BENCHMARK_MAIN();
