// SPDX-License-Identifier: MIT
// Sync benchmarks: an uncontended coho mutex against pthread's; a condition-variable ping-pong
// between two coroutines, and channel ping-pongs (same scheduler, two schedulers, coroutine and
// plain thread) against the same ping-pong between two threads on a pthread mutex + condvar;
// channel streaming throughput against a mutex + condvar queue between two threads. Baselines
// run in the same binary.
#include <benchmark/benchmark.h>
#include <pthread.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include <coho.h>

namespace {

// Runs f() as the only root coroutine of a fresh scheduler on this thread.
template <class F>
void in_coroutine(F &f)
{
    coho_sched_t *s = coho_sched_create(nullptr);
    coho_spawn(
        s, [](void *a) { (*static_cast<F *>(a))(); }, &f);
    coho_sched_run(s);
    coho_sched_destroy(s);
}

// ---- uncontended mutex ----

void BM_Mutex_LockUnlock_Coho(benchmark::State &state)
{
    coho_mutex_t m;
    coho_mutex_init(&m);
    auto body = [&] {
        for (auto _ : state) {
            coho_mutex_lock(&m);
            coho_mutex_unlock(&m);
        }
    };
    in_coroutine(body);
    coho_mutex_destroy(&m);
}
BENCHMARK(BM_Mutex_LockUnlock_Coho);

void BM_Mutex_LockUnlock_PthreadBaseline(benchmark::State &state)
{
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    for (auto _ : state) {
        pthread_mutex_lock(&m);
        pthread_mutex_unlock(&m);
    }
}
BENCHMARK(BM_Mutex_LockUnlock_PthreadBaseline);

// ---- condition-variable ping-pong: one round trip per iteration ----

void BM_CondPingPong_Coho(benchmark::State &state)
{
    coho_mutex_t m;
    coho_cond_t cv;
    int turn = 0;
    bool stop = false;
    coho_mutex_init(&m);
    coho_cond_init(&cv);
    coho_sched_t *s = coho_sched_create(nullptr);
    auto ponger = [&] {
        coho_mutex_lock(&m);
        for (;;) {
            while (turn != 1 && !stop)
                coho_cond_wait(&cv, &m);
            if (stop)
                break;
            turn = 0;
            coho_cond_signal(&cv);
        }
        coho_mutex_unlock(&m);
    };
    auto pinger = [&] {
        coho_mutex_lock(&m);
        for (auto _ : state) {
            turn = 1;
            coho_cond_signal(&cv);
            while (turn != 0)
                coho_cond_wait(&cv, &m);
        }
        stop = true;
        coho_cond_signal(&cv);
        coho_mutex_unlock(&m);
    };
    using P = decltype(ponger);
    using Q = decltype(pinger);
    coho_spawn(
        s, [](void *a) { (*static_cast<P *>(a))(); }, &ponger);
    coho_spawn(
        s, [](void *a) { (*static_cast<Q *>(a))(); }, &pinger);
    coho_sched_run(s);
    coho_sched_destroy(s);
    coho_cond_destroy(&cv);
    coho_mutex_destroy(&m);
}
BENCHMARK(BM_CondPingPong_Coho);

// The baseline: the same round trip between two threads (futex wake + sleep each way).
void BM_PingPong_PthreadBaseline(benchmark::State &state)
{
    std::mutex m;
    std::condition_variable cv;
    int turn = 0;
    bool stop = false;
    std::thread ponger([&] {
        std::unique_lock<std::mutex> lk(m);
        for (;;) {
            cv.wait(lk, [&] { return turn == 1 || stop; });
            if (stop)
                break;
            turn = 0;
            cv.notify_one();
        }
    });
    {
        std::unique_lock<std::mutex> lk(m);
        for (auto _ : state) {
            turn = 1;
            cv.notify_one();
            cv.wait(lk, [&] { return turn == 0; });
        }
        stop = true;
        cv.notify_one();
    }
    ponger.join();
}
BENCHMARK(BM_PingPong_PthreadBaseline)->UseRealTime();

// ---- channel ping-pong: a message there and back per iteration ----

void echo(coho_chan_t *in, coho_chan_t *out)
{
    int v;
    while (coho_chan_recv(in, &v) == 0)
        coho_chan_send(out, &v);
    coho_chan_close(out);
}

void ping(benchmark::State &state, coho_chan_t *out, coho_chan_t *in)
{
    int v = 0;
    for (auto _ : state) {
        coho_chan_send(out, &v);
        coho_chan_recv(in, &v);
    }
    coho_chan_close(out);
    while (coho_chan_recv(in, &v) == 0) {
    }
}

void BM_ChanPingPong_SameSched(benchmark::State &state)
{
    coho_chan_t *a = coho_chan_create(sizeof(int), 0);
    coho_chan_t *b = coho_chan_create(sizeof(int), 0);
    coho_sched_t *s = coho_sched_create(nullptr);
    auto ponger = [&] { echo(a, b); };
    auto pinger = [&] { ping(state, a, b); };
    using P = decltype(ponger);
    using Q = decltype(pinger);
    coho_spawn(
        s, [](void *x) { (*static_cast<P *>(x))(); }, &ponger);
    coho_spawn(
        s, [](void *x) { (*static_cast<Q *>(x))(); }, &pinger);
    coho_sched_run(s);
    coho_sched_destroy(s);
    coho_chan_destroy(a);
    coho_chan_destroy(b);
}
BENCHMARK(BM_ChanPingPong_SameSched);

void BM_ChanPingPong_TwoScheds(benchmark::State &state)
{
    coho_chan_t *a = coho_chan_create(sizeof(int), 0);
    coho_chan_t *b = coho_chan_create(sizeof(int), 0);
    std::thread other([&] {
        auto ponger = [&] { echo(a, b); };
        in_coroutine(ponger);
    });
    auto pinger = [&] { ping(state, a, b); };
    in_coroutine(pinger);
    other.join();
    coho_chan_destroy(a);
    coho_chan_destroy(b);
}
BENCHMARK(BM_ChanPingPong_TwoScheds)->UseRealTime();

void BM_ChanPingPong_CoroutineAndPlainThread(benchmark::State &state)
{
    coho_chan_t *a = coho_chan_create(sizeof(int), 0);
    coho_chan_t *b = coho_chan_create(sizeof(int), 0);
    std::thread other([&] { echo(a, b); });
    auto pinger = [&] { ping(state, a, b); };
    in_coroutine(pinger);
    other.join();
    coho_chan_destroy(a);
    coho_chan_destroy(b);
}
BENCHMARK(BM_ChanPingPong_CoroutineAndPlainThread)->UseRealTime();

// ---- streaming: one message per iteration through a 64-slot buffer ----

void BM_ChanStream_SameSched(benchmark::State &state)
{
    coho_chan_t *ch = coho_chan_create(sizeof(int), 64);
    coho_sched_t *s = coho_sched_create(nullptr);
    auto consumer = [&] {
        int v;
        while (coho_chan_recv(ch, &v) == 0)
            benchmark::DoNotOptimize(v);
    };
    auto producer = [&] {
        int v = 0;
        for (auto _ : state)
            coho_chan_send(ch, &v);
        coho_chan_close(ch);
    };
    using P = decltype(consumer);
    using Q = decltype(producer);
    coho_spawn(
        s, [](void *x) { (*static_cast<P *>(x))(); }, &consumer);
    coho_spawn(
        s, [](void *x) { (*static_cast<Q *>(x))(); }, &producer);
    coho_sched_run(s);
    coho_sched_destroy(s);
    coho_chan_destroy(ch);
}
BENCHMARK(BM_ChanStream_SameSched);

void BM_ChanStream_TwoScheds(benchmark::State &state)
{
    coho_chan_t *ch = coho_chan_create(sizeof(int), 64);
    std::thread other([&] {
        auto consumer = [&] {
            int v;
            while (coho_chan_recv(ch, &v) == 0)
                benchmark::DoNotOptimize(v);
        };
        in_coroutine(consumer);
    });
    auto producer = [&] {
        int v = 0;
        for (auto _ : state)
            coho_chan_send(ch, &v);
        coho_chan_close(ch);
    };
    in_coroutine(producer);
    other.join();
    coho_chan_destroy(ch);
}
BENCHMARK(BM_ChanStream_TwoScheds)->UseRealTime();

// The baseline: a 64-slot mutex + condvar queue between two threads.
void BM_Stream_PthreadBaseline(benchmark::State &state)
{
    std::mutex m;
    std::condition_variable not_empty, not_full;
    std::deque<int> q;
    bool closed = false;
    std::thread consumer([&] {
        std::unique_lock<std::mutex> lk(m);
        for (;;) {
            not_empty.wait(lk, [&] { return !q.empty() || closed; });
            if (q.empty())
                break;
            benchmark::DoNotOptimize(q.front());
            q.pop_front();
            not_full.notify_one();
        }
    });
    for (auto _ : state) {
        std::unique_lock<std::mutex> lk(m);
        not_full.wait(lk, [&] { return q.size() < 64; });
        q.push_back(0);
        not_empty.notify_one();
    }
    {
        std::lock_guard<std::mutex> g(m);
        closed = true;
        not_empty.notify_one();
    }
    consumer.join();
}
BENCHMARK(BM_Stream_PthreadBaseline)->UseRealTime();

} // namespace

BENCHMARK_MAIN();
