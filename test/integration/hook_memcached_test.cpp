// SPDX-License-Identifier: MIT
/* libmemcached, unmodified, through coho's hooks: 200 coroutines on one thread each create
 * their own memcached_st and do memcached_set then memcached_get through a proxy that delays
 * every response by 200 ms (test/support/servers/memcached.sh). The run takes about two delays,
 * not 400 of them, and every value is checked. libmemcached uses non-blocking sockets and poll
 * underneath, so this also drives the user-O_NONBLOCK and poll paths. */
#include <libmemcached/memcached.h>
#include <unistd.h>

#include <string>

#include "test/support/client_harness.hpp"

namespace {

constexpr int kClients = 200;
constexpr int kDelayMs = 200; // the proxy's delay per response; set + get = two of them
constexpr int kSlackMs = 3000;
constexpr int kWatchdogS = 30;

TEST(HookMemcached, two_hundred_coroutines_share_one_thread_through_blocking_libmemcached_calls)
{
    int port = coho_test::server_port("memcached_delayed");
    ASSERT_GT(port, 0);
    const std::string ns = "coho:" + std::to_string(getpid()) + ":";
    std::atomic<int> ok{0}, finished{0};

    auto client = [&](int i) {
        memcached_st *m = memcached_create(nullptr);
        ASSERT_NE(m, nullptr);
        ASSERT_EQ(memcached_server_add(m, "127.0.0.1", static_cast<in_port_t>(port)),
                  MEMCACHED_SUCCESS);
        std::string key = ns + std::to_string(i), val = "value-" + std::to_string(i);
        memcached_return_t rc =
            memcached_set(m, key.data(), key.size(), val.data(), val.size(), 0, 0);
        EXPECT_EQ(rc, MEMCACHED_SUCCESS)
            << "client " << i << ": memcached_set: " << memcached_strerror(m, rc);
        size_t len = 0;
        uint32_t flags = 0;
        char *got = memcached_get(m, key.data(), key.size(), &len, &flags, &rc);
        EXPECT_EQ(rc, MEMCACHED_SUCCESS)
            << "client " << i << ": memcached_get: " << memcached_strerror(m, rc);
        std::string value = got != nullptr ? std::string(got, len) : "(none)";
        EXPECT_EQ(value, val) << "client " << i;
        if (rc == MEMCACHED_SUCCESS && value == val)
            ok++;
        free(got);
        memcached_free(m);
    };

    int64_t ms = coho_test::run_coroutines(kClients, client, nullptr, kWatchdogS, finished);
    std::cout << kClients << " libmemcached clients (set + get, " << kDelayMs
              << " ms per response) took " << ms << " ms; one after another: at least "
              << 2 * kClients * kDelayMs / 1000 << " s\n";
    EXPECT_EQ(ok.load(), kClients);
    EXPECT_EQ(finished.load(), kClients);
    EXPECT_GE(ms, 2 * kDelayMs - 2);
    EXPECT_LT(ms, 2 * kDelayMs + kSlackMs + coho_test::kTsanSlackMs)
        << "the requests did not overlap";
}

} // namespace
