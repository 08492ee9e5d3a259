// SPDX-License-Identifier: MIT
/* hiredis, unmodified, through coho's hooks: 200 coroutines on one thread each open their own
 * blocking connection (redisConnect) and issue SET, GET and a BLPOP that the server answers only
 * when a pusher coroutine fills the lists 200 ms later. The run takes about one such delay, not
 * 200 of them, and every reply is checked. The server: test/support/servers/redis.sh. */
#include <hiredis/hiredis.h>
#include <unistd.h>

#include <string>

#include "test/support/client_harness.hpp"

namespace {

constexpr int kClients = 200;
constexpr int kDelayMs = 200;  // the pusher fills the lists this long after the start
constexpr int kSlackMs = 3000; // connection set-up of 200 clients, 2 shared cores, sanitizers
constexpr int kWatchdogS = 30; // serial execution would take 200 x the BLPOP timeout

std::string reply_str(redisReply *r)
{
    if (r == nullptr)
        return "(no reply)";
    switch (r->type) {
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_ERROR:
        return std::string(r->str, r->len);
    case REDIS_REPLY_INTEGER:
        return std::to_string(r->integer);
    case REDIS_REPLY_NIL:
        return "(nil)";
    case REDIS_REPLY_ARRAY: {
        std::string s = "[";
        for (size_t i = 0; i < r->elements; i++)
            s += (i ? "," : "") + reply_str(r->element[i]);
        return s + "]";
    }
    default:
        return "(type " + std::to_string(r->type) + ")";
    }
}

// Sends one command and returns its reply as text ("(no reply)" on a connection error).
template <class... A>
std::string command(redisContext *c, const char *fmt, A... args)
{
    auto *r = static_cast<redisReply *>(redisCommand(c, fmt, args...));
    std::string s = reply_str(r);
    if (r == nullptr)
        s += std::string(" err: ") + c->errstr;
    freeReplyObject(r);
    return s;
}

TEST(HookRedis, two_hundred_coroutines_share_one_thread_through_blocking_hiredis_calls)
{
    int port = coho_test::server_port("redis");
    ASSERT_GT(port, 0);
    // Keys unique to this process: the server is shared by every test of the ctest run.
    const std::string ns = "coho:" + std::to_string(getpid()) + ":";
    std::atomic<int> ok{0}, finished{0};
    std::atomic<int64_t> pushed_at{0};

    auto client = [&](int i) {
        redisContext *c = redisConnect("127.0.0.1", port);
        if (c == nullptr || c->err) {
            ADD_FAILURE() << "client " << i << ": redisConnect: " << (c ? c->errstr : "NULL");
            redisFree(c);
            return;
        }
        std::string key = ns + "k:" + std::to_string(i), val = "v:" + std::to_string(i);
        std::string list = ns + "list:" + std::to_string(i);
        EXPECT_EQ(command(c, "SET %s %s", key.c_str(), val.c_str()), "OK") << "client " << i;
        EXPECT_EQ(command(c, "GET %s", key.c_str()), val) << "client " << i;
        // Parks until the pusher's RPUSH, kDelayMs after the start.
        std::string got = command(c, "BLPOP %s 5", list.c_str());
        EXPECT_EQ(got, "[" + list + ",item:" + std::to_string(i) + "]") << "client " << i;
        if (got == "[" + list + ",item:" + std::to_string(i) + "]")
            ok++;
        redisFree(c);
    };
    auto pusher = [&] {
        EXPECT_EQ(coho_sleep_ms(kDelayMs), 0);
        redisContext *c = redisConnect("127.0.0.1", port);
        ASSERT_TRUE(c != nullptr && !c->err) << "pusher: redisConnect";
        for (int i = 0; i < kClients; i++) {
            std::string list = ns + "list:" + std::to_string(i);
            std::string item = "item:" + std::to_string(i);
            EXPECT_EQ(command(c, "RPUSH %s %s", list.c_str(), item.c_str()), "1");
        }
        pushed_at = coho_test::now_ms();
        redisFree(c);
    };

    int64_t ms = coho_test::run_coroutines(kClients, client, pusher, kWatchdogS, finished);
    std::cout << kClients << " hiredis clients took " << ms << " ms (server-side delay " << kDelayMs
              << " ms; one after another: at least " << kClients * kDelayMs / 1000
              << " s of BLPOP waits alone)\n";
    EXPECT_EQ(ok.load(), kClients) << "every BLPOP returns its own item";
    EXPECT_EQ(finished.load(), kClients);
    EXPECT_GE(ms, kDelayMs - 2);
    EXPECT_LT(ms, kDelayMs + kSlackMs + coho_test::kTsanSlackMs) << "the requests did not overlap";
}

} // namespace
