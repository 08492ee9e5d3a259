// SPDX-License-Identifier: MIT
// mio_driver benchmarks: the timer wheel against a 4-ary heap baseline with 1 M live timers
// (add+cancel, expiry), cross-thread post throughput, and the cost per dispatched fd event
// against a bare epoll_wait loop over the same fds. Results: bench/RESULTS.md "## mio_driver".
//
// `mio_bench --callgrind` runs fixed workloads in cg_* functions instead, for instruction counts:
//   valgrind --tool=callgrind --callgrind-out-file=cg.out ./mio_bench --callgrind
//   callgrind_annotate --inclusive=yes cg.out | grep cg_
#include <benchmark/benchmark.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

extern "C" {
#include "base_struct/heap.h"
#include "mio_driver/driver.h"
#include "mio_driver/wheel.h"
}

namespace {

constexpr size_t kLive = 1000000; // live timers
constexpr uint64_t kSpan = 10000; // their expiries spread over 10 s of 1 ms ticks

uint64_t rng_state = 42;
// Expiry layout of the fixtures: random (timer memory order unrelated to expiry order, the
// worst case for caches) or sequential (timers armed in memory order, as when a server arms
// a fixed timeout for connections allocated one after another).
bool sequential_layout = false;
inline uint64_t rnd()
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// ---- the baseline: the same timer struct in a 4-ary min-heap ----
bool timer_less(const coho__heap_node_t *a, const coho__heap_node_t *b)
{
    auto *ta = coho_container_of(a, coho__timer_t, heap);
    auto *tb = coho_container_of(b, coho__timer_t, heap);
    return ta->expire_tick < tb->expire_tick;
}

struct WheelFixture {
    coho__wheel_t *w = static_cast<coho__wheel_t *>(malloc(sizeof(coho__wheel_t)));
    std::vector<coho__timer_t> live = std::vector<coho__timer_t>(kLive);
    WheelFixture()
    {
        coho__wheel_init(w, 0);
        for (size_t i = 0; i < kLive; i++) {
            coho__timer_t &t = live[i];
            coho__timer_init(&t, nullptr, nullptr);
            t.expire_tick = sequential_layout ? i * kSpan / kLive : rnd() % kSpan;
            coho__wheel_add(w, &t);
        }
    }
    ~WheelFixture()
    {
        coho__wheel_destroy(w);
        free(w);
    }
};

struct HeapFixture {
    coho__heap_t h;
    std::vector<coho__timer_t> live = std::vector<coho__timer_t>(kLive);
    HeapFixture()
    {
        coho__heap_init(&h, timer_less);
        for (size_t i = 0; i < kLive; i++) {
            coho__timer_t &t = live[i];
            coho__timer_init(&t, nullptr, nullptr);
            t.expire_tick = sequential_layout ? i * kSpan / kLive : rnd() % kSpan;
            coho__heap_push(&h, &t.heap);
        }
    }
    ~HeapFixture() { coho__heap_destroy(&h); }
};

constexpr size_t kBatch = 1024; // timers added then cancelled per round (keeps caches honest)

__attribute__((noinline)) void wheel_add_cancel_round(coho__wheel_t *w, coho__timer_t *batch)
{
    for (size_t i = 0; i < kBatch; i++) {
        batch[i].expire_tick = w->cur + rnd() % kSpan;
        coho__wheel_add(w, &batch[i]);
    }
    for (size_t i = 0; i < kBatch; i++)
        coho__wheel_del(w, &batch[i]);
}

__attribute__((noinline)) void heap_add_cancel_round(coho__heap_t *h, coho__timer_t *batch)
{
    for (size_t i = 0; i < kBatch; i++) {
        batch[i].expire_tick = rnd() % kSpan;
        coho__heap_push(h, &batch[i].heap);
    }
    for (size_t i = 0; i < kBatch; i++)
        coho__heap_remove(h, &batch[i].heap);
}

void BM_Wheel_AddCancel1M(benchmark::State &state)
{
    WheelFixture f;
    std::vector<coho__timer_t> batch(kBatch);
    for (auto &t : batch)
        coho__timer_init(&t, nullptr, nullptr);
    for (auto _ : state)
        wheel_add_cancel_round(f.w, batch.data());
    state.SetItemsProcessed(state.iterations() * kBatch);
    state.counters["ns_per_add_cancel"] =
        benchmark::Counter(static_cast<double>(state.iterations() * kBatch),
                           benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_Wheel_AddCancel1M)->Unit(benchmark::kMicrosecond);

void BM_Heap4_AddCancel1M(benchmark::State &state)
{
    HeapFixture f;
    std::vector<coho__timer_t> batch(kBatch);
    for (auto &t : batch)
        coho__timer_init(&t, nullptr, nullptr);
    for (auto _ : state)
        heap_add_cancel_round(&f.h, batch.data());
    state.SetItemsProcessed(state.iterations() * kBatch);
    state.counters["ns_per_add_cancel"] =
        benchmark::Counter(static_cast<double>(state.iterations() * kBatch),
                           benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_Heap4_AddCancel1M)->Unit(benchmark::kMicrosecond);

// ---- expiry: 1 M timers over 10 000 ticks, fired tick by tick ----
size_t expired;
void count_fire(void *, coho_list_t *due, uint64_t)
{
    coho_list_t *n;
    while ((n = coho_list_pop_front(due)) != nullptr) {
        coho_container_of(n, coho__timer_t, link)->state = COHO__TIMER_IDLE;
        expired++;
    }
}

__attribute__((noinline)) void wheel_expire_all(coho__wheel_t *w)
{
    for (uint64_t tick = 0; tick < kSpan; tick++)
        coho__wheel_advance(w, tick, count_fire, nullptr);
}

__attribute__((noinline)) void heap_expire_all(coho__heap_t *h)
{
    for (uint64_t tick = 0; tick < kSpan; tick++) {
        coho__heap_node_t *top;
        while ((top = coho__heap_top(h)) != nullptr &&
               coho_container_of(top, coho__timer_t, heap)->expire_tick <= tick) {
            coho__heap_pop(h);
            expired++;
        }
    }
}

void BM_Wheel_Expire1M(benchmark::State &state)
{
    sequential_layout = state.range(0) != 0;
    for (auto _ : state) {
        state.PauseTiming();
        auto *f = new WheelFixture();
        expired = 0;
        state.ResumeTiming();
        wheel_expire_all(f->w);
        state.PauseTiming();
        if (expired != kLive)
            state.SkipWithError("not every timer expired");
        delete f;
        state.ResumeTiming();
    }
    sequential_layout = false;
    state.SetItemsProcessed(state.iterations() * kLive);
    state.counters["ns_per_expiry"] =
        benchmark::Counter(static_cast<double>(state.iterations() * kLive),
                           benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_Wheel_Expire1M)
    ->ArgName("sequential")
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(5);

void BM_Heap4_Expire1M(benchmark::State &state)
{
    sequential_layout = state.range(0) != 0;
    for (auto _ : state) {
        state.PauseTiming();
        auto *f = new HeapFixture();
        expired = 0;
        state.ResumeTiming();
        heap_expire_all(&f->h);
        state.PauseTiming();
        if (expired != kLive)
            state.SkipWithError("not every timer expired");
        delete f;
        state.ResumeTiming();
    }
    sequential_layout = false;
    state.SetItemsProcessed(state.iterations() * kLive);
    state.counters["ns_per_expiry"] =
        benchmark::Counter(static_cast<double>(state.iterations() * kLive),
                           benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_Heap4_Expire1M)
    ->ArgName("sequential")
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(5);

// ---- the driver-level timer API (fresh CLOCK_MONOTONIC read per start) ----
void noop_timer(coho__timer_t *) {}

void BM_DriverTimer_StartStop1M(benchmark::State &state)
{
    coho__driver_t *d = coho__driver_create(nullptr);
    std::vector<coho__timer_t> live(kLive);
    for (auto &t : live) {
        coho__timer_init(&t, noop_timer, nullptr);
        coho__timer_start(d, &t, 1000 + rnd() % kSpan, 0, 0);
    }
    coho__timer_t t;
    coho__timer_init(&t, noop_timer, nullptr);
    for (auto _ : state) {
        coho__timer_start(d, &t, rnd() % kSpan, 0, 0);
        coho__timer_stop(d, &t);
    }
    state.SetItemsProcessed(state.iterations());
    coho__driver_destroy(d);
}
BENCHMARK(BM_DriverTimer_StartStop1M);

// ---- cross-thread posts ----
std::atomic<uint64_t> posted_runs;
void post_fn(void *)
{
    posted_runs.fetch_add(1, std::memory_order_relaxed);
}

void BM_Post_Throughput(benchmark::State &state)
{
    const int producers = static_cast<int>(state.range(0));
    constexpr uint64_t kPerProducer = 1000000;
    for (auto _ : state) {
        coho__driver_t *d = coho__driver_create(nullptr);
        posted_runs = 0;
        std::vector<std::thread> th;
        for (int p = 0; p < producers; p++)
            th.emplace_back([d] {
                for (uint64_t i = 0; i < kPerProducer; i++)
                    while (coho__driver_post(d, post_fn, nullptr) != 0) {
                    }
            });
        const uint64_t want = kPerProducer * static_cast<uint64_t>(producers);
        while (posted_runs.load(std::memory_order_relaxed) < want)
            coho__driver_run_once(d, 100);
        for (auto &t : th)
            t.join();
        coho__driver_destroy(d);
    }
    state.SetItemsProcessed(state.iterations() * kPerProducer * producers);
}
BENCHMARK(BM_Post_Throughput)->Arg(1)->Arg(4)->Unit(benchmark::kMillisecond)->UseRealTime();

// ---- fd event dispatch: level-triggered readable sockets, never drained ----
constexpr int kFds = 64;

struct Pairs {
    int sv[kFds][2];
    Pairs()
    {
        for (auto &p : sv) {
            if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, p) != 0)
                abort();
            if (write(p[1], "x", 1) != 1)
                abort();
        }
    }
    ~Pairs()
    {
        for (auto &p : sv) {
            close(p[0]);
            close(p[1]);
        }
    }
};

uint64_t io_events;
void io_fn(coho__io_t *, unsigned)
{
    io_events++;
}

void BM_Io_DispatchPerEvent(benchmark::State &state)
{
    Pairs p;
    coho__driver_t *d = coho__driver_create(nullptr);
    std::vector<coho__io_t> io(kFds);
    for (int i = 0; i < kFds; i++) {
        coho__io_init(&io[i], p.sv[i][0], io_fn, nullptr);
        coho__io_start(d, &io[i], COHO__EV_READ, 0, -1);
    }
    io_events = 0;
    for (auto _ : state)
        coho__driver_run_once(d, 0);
    if (io_events != static_cast<uint64_t>(state.iterations()) * kFds)
        state.SkipWithError("missed events");
    state.SetItemsProcessed(static_cast<int64_t>(io_events));
    for (auto &x : io)
        coho__io_stop(d, &x);
    coho__driver_destroy(d);
}
BENCHMARK(BM_Io_DispatchPerEvent);

void BM_Io_BareEpollPerEvent(benchmark::State &state)
{
    Pairs p;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    for (int i = 0; i < kFds; i++) {
        epoll_event e{};
        e.events = EPOLLIN | EPOLLRDHUP;
        e.data.u64 = static_cast<uint64_t>(i);
        epoll_ctl(ep, EPOLL_CTL_ADD, p.sv[i][0], &e);
    }
    epoll_event ev[256];
    uint64_t n = 0;
    for (auto _ : state) {
        int k = epoll_wait(ep, ev, 256, 0);
        for (int i = 0; i < k; i++)
            benchmark::DoNotOptimize(n += ev[i].events & EPOLLIN ? 1 : 0);
    }
    state.SetItemsProcessed(static_cast<int64_t>(n));
    close(ep);
}
BENCHMARK(BM_Io_BareEpollPerEvent);

// ---- fixed workloads for callgrind instruction counts ----
constexpr size_t kCgRounds = 100; // x kBatch add+cancel pairs

__attribute__((noinline)) void cg_wheel_add_cancel(WheelFixture &f, coho__timer_t *b)
{
    for (size_t r = 0; r < kCgRounds; r++)
        wheel_add_cancel_round(f.w, b);
}
__attribute__((noinline)) void cg_heap_add_cancel(HeapFixture &f, coho__timer_t *b)
{
    for (size_t r = 0; r < kCgRounds; r++)
        heap_add_cancel_round(&f.h, b);
}
__attribute__((noinline)) void cg_wheel_expire(WheelFixture &f)
{
    wheel_expire_all(f.w);
}
__attribute__((noinline)) void cg_heap_expire(HeapFixture &f)
{
    heap_expire_all(&f.h);
}

int callgrind_main()
{
    std::vector<coho__timer_t> batch(kBatch);
    for (auto &t : batch)
        coho__timer_init(&t, nullptr, nullptr);
    {
        WheelFixture f;
        cg_wheel_add_cancel(f, batch.data());
        expired = 0;
        cg_wheel_expire(f);
        if (expired != kLive)
            return 1;
    }
    {
        HeapFixture f;
        cg_heap_add_cancel(f, batch.data());
        expired = 0;
        cg_heap_expire(f);
        if (expired != kLive)
            return 1;
    }
    printf("add+cancel pairs per cg_*_add_cancel: %zu; expiries per cg_*_expire: %zu\n",
           kCgRounds * kBatch, kLive);
    return 0;
}

} // namespace

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--callgrind") == 0)
        return callgrind_main();
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv))
        return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
