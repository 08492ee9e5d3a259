// SPDX-License-Identifier: MIT
// The trace log's hot path: one coho_log_info call into the thread buffer while the writer
// thread runs, against the baseline of snprintf'ing the same line into a local buffer in the
// same run. Reports lines/s, the ratio to the baseline, and per-call latency percentiles.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <coho.h>

namespace {

double g_baseline_ns = 0; // ns per snprintf of the whole line, set by BM_Log_SnprintfBaseline
double g_baseline_p99_ns = 0;

std::string temp_log_path()
{
    const char *base = std::getenv("TMPDIR");
    return std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/coho_log_bench." +
           std::to_string(getpid()) + ".log";
}

struct LogOpen {
    explicit LogOpen(const std::string &path, uint64_t rotate)
    {
        coho_log_opts_t o;
        coho_log_opts_init(&o);
        o.path = path.c_str();
        o.rotate_size = rotate;
        o.files_kept = 1;
        o.full_wait_ms = 1000; // measure what the writer sustains rather than drops
        if (coho_log_open(&o) != 0) {
            std::perror("coho_log_open");
            std::exit(1);
        }
    }
    ~LogOpen() { coho_log_close(); }
};

// The line coho writes, built with one snprintf: the cost floor of producing the text.
inline int snprintf_line(char *buf, size_t n, int i)
{
    return std::snprintf(
        buf, n, "%02d/%02d/%02d %02d:%02d:%02d %03d [%s:%d]-[%s]-[%d-%llu]request %d %s\n", 26, 11,
        22, 23, 59, 59, i % 1000, __FILE__, __LINE__, "info", 12345, 0ull, i, "done");
}

void BM_Log_SnprintfBaseline(benchmark::State &state)
{
    char buf[COHO_LOG_LINE_MAX];
    int i = 0;
    auto t0 = std::chrono::steady_clock::now();
    for (auto _ : state) {
        benchmark::DoNotOptimize(snprintf_line(buf, sizeof(buf), i++));
        benchmark::ClobberMemory();
    }
    auto ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0);
    g_baseline_ns = ns.count() / static_cast<double>(state.iterations());
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Log_SnprintfBaseline);

void log_throughput(benchmark::State &state, const std::string &path, uint64_t rotate)
{
    LogOpen log(path, rotate);
    uint64_t dropped0 = coho_log_dropped_count();
    int i = 0;
    auto t0 = std::chrono::steady_clock::now();
    for (auto _ : state)
        coho_log_info("request %d %s", i++, "done");
    auto ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0);
    double per_call = ns.count() / static_cast<double>(state.iterations());
    state.SetItemsProcessed(state.iterations());
    state.counters["x_snprintf"] = g_baseline_ns > 0 ? per_call / g_baseline_ns : 0;
    state.counters["wall_lines_per_s"] = 1e9 / per_call; // items_per_second is CPU-time based
    state.counters["dropped"] = static_cast<double>(coho_log_dropped_count() - dropped0);
}

// Into a real file (rotating at 64 MiB, one old file kept), the writer on the other core.
void BM_Log_Info_File(benchmark::State &state)
{
    std::string path = temp_log_path();
    log_throughput(state, path, 64ull << 20);
    std::remove(path.c_str());
    std::remove((path + ".1").c_str());
}
BENCHMARK(BM_Log_Info_File);

// The writer's cost removed: the file is /dev/null.
void BM_Log_Info_DevNull(benchmark::State &state)
{
    log_throughput(state, "/dev/null", 0);
}
BENCHMARK(BM_Log_Info_DevNull);

// A call below the run-time level: the level check only.
void BM_Log_Filtered(benchmark::State &state)
{
    LogOpen log("/dev/null", 0);
    int i = 0;
    for (auto _ : state)
        coho_log_debug("request %d %s", i++, "done");
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Log_Filtered);

// Per-call latency: every call timed on the monotonic clock (the clock reads add ~2x20 ns to
// every sample, to both the baseline and the log call).
template <class F>
void sample_latency(benchmark::State &state, F call, std::vector<double> &samples)
{
    samples.clear();
    samples.reserve(1 << 22);
    int i = 0;
    for (auto _ : state) {
        auto t0 = std::chrono::steady_clock::now();
        call(i++);
        auto t1 = std::chrono::steady_clock::now();
        if (samples.size() < samples.capacity())
            samples.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count());
    }
    std::sort(samples.begin(), samples.end());
    auto pct = [&](double p) {
        return samples.empty() ? 0.0 : samples[static_cast<size_t>(p * (samples.size() - 1))];
    };
    state.counters["p50_ns"] = pct(0.50);
    state.counters["p99_ns"] = pct(0.99);
    state.counters["p999_ns"] = pct(0.999);
    state.counters["max_ns"] = samples.empty() ? 0.0 : samples.back();
}

void BM_Log_SnprintfBaseline_Latency(benchmark::State &state)
{
    std::vector<double> samples;
    char buf[COHO_LOG_LINE_MAX];
    sample_latency(
        state,
        [&](int i) {
            benchmark::DoNotOptimize(snprintf_line(buf, sizeof(buf), i));
            benchmark::ClobberMemory();
        },
        samples);
    g_baseline_p99_ns = state.counters["p99_ns"];
}
BENCHMARK(BM_Log_SnprintfBaseline_Latency);

void BM_Log_Info_File_Latency(benchmark::State &state)
{
    std::string path = temp_log_path();
    std::vector<double> samples;
    {
        LogOpen log(path, 64ull << 20);
        sample_latency(
            state, [](int i) { coho_log_info("request %d %s", i, "done"); }, samples);
    }
    state.counters["p99_x_snprintf"] =
        g_baseline_p99_ns > 0 ? state.counters["p99_ns"] / g_baseline_p99_ns : 0;
    std::remove(path.c_str());
    std::remove((path + ".1").c_str());
}
BENCHMARK(BM_Log_Info_File_Latency);

} // namespace

BENCHMARK_MAIN();
