// SPDX-License-Identifier: MIT
/* The shared frame of the real-client-library tests (hook_redis, hook_memcached, hook_mariadb,
 * hook_curl): where the fixture servers listen, and N coroutines on one thread that each run a
 * blocking client call sequence, timed, under a watchdog. Header-only; GoogleTest programs. */
#pragma once

#include <errno.h>
#include <gtest/gtest.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <coho.h>

namespace coho_test {

// The port the fixture script `name`.sh wrote into $COHO_TEST_SERVERS/<file>.port, or -1 (with
// a test failure saying why).
inline int server_port(const char *file)
{
    const char *dir = getenv("COHO_TEST_SERVERS");
    if (dir == nullptr) {
        ADD_FAILURE() << "COHO_TEST_SERVERS is not set: run through ctest (fixtures start the "
                         "servers)";
        return -1;
    }
    std::string path = std::string(dir) + "/" + file + ".port";
    std::ifstream in(path);
    int port = -1;
    if (!(in >> port) || port <= 0) {
        ADD_FAILURE() << "no port in " << path << ": the fixture server did not start";
        return -1;
    }
    return port;
}

// Added to the upper bound of a timed run under ThreadSanitizer. Each coroutine is a TSan fiber,
// and the first start of a fiber clears about 1 MiB of TSan trace state: several milliseconds
// each on 2 shared cores, paid by the 200 clients and again by the servers built with the tests
// (delayd), per connection. 200 clients took 6 to 13 s. Run one after another they take 40 s or
// more, so the bounds still tell overlapping calls from serial ones.
#if defined(__SANITIZE_THREAD__)
constexpr int kTsanSlackMs = 20000;
#else
constexpr int kTsanSlackMs = 0;
#endif

// Milliseconds on CLOCK_MONOTONIC.
inline int64_t now_ms()
{
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// Runs body(i) for i in [0, n) in n coroutines on one new scheduler of the calling thread, plus
// `extra` (if set) in one more coroutine, and returns the wall time in milliseconds. If the run
// is not over after `watchdog_s` seconds the process ends with a message: the blocking calls
// did not overlap (a call blocked the thread) or a coroutine was never woken.
inline int64_t run_coroutines(int n, const std::function<void(int)> &body,
                              const std::function<void()> &extra, int watchdog_s,
                              std::atomic<int> &finished)
{
    struct Arg {
        const std::function<void(int)> *body;
        const std::function<void()> *extra;
        int i;
        std::atomic<int> *finished;
    };
    std::mutex m;
    std::condition_variable cv;
    bool done = false;
    std::thread watchdog([&] {
        std::unique_lock<std::mutex> lk(m);
        if (!cv.wait_for(lk, std::chrono::seconds(watchdog_s), [&] { return done; })) {
            fprintf(stderr,
                    "FATAL: after %d s only %d of %d coroutines finished: the blocking calls did "
                    "not overlap, or a parked coroutine was never woken\n",
                    watchdog_s, finished.load(), n);
            fflush(stderr);
            std::_Exit(3);
        }
    });

    coho_sched_opts_t o;
    coho_sched_opts_init(&o);
#if defined(__SANITIZE_ADDRESS__)
    o.stack_size = 1u << 20;
#else
    o.stack_size = 256u << 10;
#endif
    coho_sched_t *s = coho_sched_create(&o);
    EXPECT_NE(s, nullptr) << "coho_sched_create: " << strerror(errno);
    int64_t t0 = now_ms();
    if (s != nullptr) {
        std::vector<Arg> args(static_cast<size_t>(n) + 1);
        for (int i = 0; i < n; i++) {
            args[static_cast<size_t>(i)] = Arg{&body, nullptr, i, &finished};
            uint64_t id = coho_spawn(
                s,
                [](void *p) {
                    auto *a = static_cast<Arg *>(p);
                    (*a->body)(a->i);
                    (*a->finished)++;
                },
                &args[static_cast<size_t>(i)]);
            EXPECT_NE(id, 0u) << "coho_spawn: " << strerror(errno);
        }
        if (extra) {
            args[static_cast<size_t>(n)] = Arg{nullptr, &extra, n, &finished};
            coho_spawn(
                s, [](void *p) { (*static_cast<Arg *>(p)->extra)(); },
                &args[static_cast<size_t>(n)]);
        }
        EXPECT_EQ(coho_sched_run(s), 0) << strerror(errno);
        coho_sched_destroy(s);
    }
    int64_t elapsed = now_ms() - t0;
    {
        std::lock_guard<std::mutex> lk(m);
        done = true;
    }
    cv.notify_one();
    watchdog.join();
    return elapsed;
}

} // namespace coho_test
