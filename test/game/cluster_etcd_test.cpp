// SPDX-License-Identifier: MIT
// game/cluster/etcd.hpp against a real etcd (test/support/servers/etcd.sh): every call runs in a
// coroutine, with unmodified libcurl parked by coho's hooks; the watch test runs the watch
// stream and the writes that feed it in two coroutines of one thread, which only works if curl's
// waits park instead of blocking the thread.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <string>

#include <coho.hpp>

#include "game/cluster/etcd.hpp"
#include "test/game/cluster_harness.hpp"

namespace {

using namespace coho::game;
using coho_test::etcd_client;
using coho_test::etcd_endpoint;
using coho_test::run_co;

TEST(EtcdCodec, base64_round_trips_every_byte_and_rejects_bad_text)
{
    std::string all;
    for (int i = 0; i < 256; i++)
        all += char(i);
    for (size_t n : {0u, 1u, 2u, 3u, 4u, 255u, 256u}) {
        std::string out;
        ASSERT_TRUE(etcd::base64_decode(etcd::base64_encode(all.substr(0, n)), &out));
        EXPECT_EQ(out, all.substr(0, n));
    }
    EXPECT_EQ(etcd::base64_encode("foo"), "Zm9v");
    std::string out;
    EXPECT_FALSE(etcd::base64_decode("Zm9", &out));
    EXPECT_FALSE(etcd::base64_decode("Zm9*", &out));
}

TEST(EtcdCodec, prefix_end_is_the_first_key_past_the_prefix)
{
    EXPECT_EQ(etcd::prefix_end("/a/"), "/a0");
    EXPECT_EQ(etcd::prefix_end(std::string("a\xff", 2)), "b");
    EXPECT_EQ(etcd::prefix_end(std::string("\xff", 1)), std::string(1, '\0'));
}

TEST(EtcdCodec, endpoints_parse_and_bad_ones_are_named)
{
    std::vector<std::string> eps;
    std::string err;
    ASSERT_TRUE(etcd::parse_endpoints("127.0.0.1:2379,127.0.0.2:2380", &eps, &err));
    EXPECT_EQ(eps, (std::vector<std::string>{"127.0.0.1:2379", "127.0.0.2:2380"}));
    EXPECT_FALSE(etcd::parse_endpoints("127.0.0.1", &eps, &err));
    EXPECT_NE(err.find("'127.0.0.1' is not HOST:PORT"), std::string::npos) << err;
    EXPECT_FALSE(etcd::parse_endpoints("a:1,,b:2", &eps, &err));
    EXPECT_FALSE(etcd::parse_endpoints("a:99999", &eps, &err));
    etcd::Options o;
    EXPECT_THROW(etcd::Client{o}, std::invalid_argument);
    o.endpoints = {"nohost"};
    EXPECT_THROW(etcd::Client{o}, std::invalid_argument);
}

TEST(Etcd, put_get_prefix_and_delete_keep_binary_keys_and_values)
{
    auto c = etcd_client();
    run_co({[&] {
        const std::string bin("v\0\xff\n", 4);
        c.put("/t/kv/a", "1");
        c.put("/t/kv/b", bin);
        c.put("/t/kw", "outside the prefix");
        auto one = c.get("/t/kv/b");
        ASSERT_EQ(one.size(), 1u);
        EXPECT_EQ(one[0].value, bin);
        EXPECT_GT(one[0].create_revision, 0);
        EXPECT_TRUE(c.get("/t/kv/none").empty());
        int64_t rev = 0;
        auto all = c.get_prefix("/t/kv/", &rev);
        ASSERT_EQ(all.size(), 2u);
        EXPECT_EQ(all[0].key, "/t/kv/a");
        EXPECT_EQ(all[1].key, "/t/kv/b");
        EXPECT_GE(rev, all[1].mod_revision);
        EXPECT_EQ(c.del("/t/kv/a"), 1);
        EXPECT_EQ(c.del("/t/kv/a"), 0);
        EXPECT_EQ(c.del_prefix("/t/kv/"), 1);
        EXPECT_TRUE(c.get_prefix("/t/kv/").empty());
        EXPECT_EQ(c.get("/t/kw").size(), 1u);
    }});
}

TEST(Etcd, a_key_under_a_lease_lives_while_kept_alive_and_goes_with_the_revoke)
{
    auto c = etcd_client();
    run_co({[&] {
        int64_t lease = c.lease_grant(30);
        ASSERT_NE(lease, 0);
        c.put("/t/lease/k", "v", lease);
        auto kv = c.get("/t/lease/k");
        ASSERT_EQ(kv.size(), 1u);
        EXPECT_EQ(kv[0].lease, lease);
        int64_t ttl = c.lease_keepalive(lease);
        EXPECT_GT(ttl, 0);
        EXPECT_LE(ttl, 30);
        c.lease_revoke(lease);
        EXPECT_TRUE(c.get("/t/lease/k").empty());
        EXPECT_EQ(c.lease_keepalive(lease), 0) << "a revoked lease renews";
        // A put under a lease that is gone is an error etcd names.
        try {
            c.put("/t/lease/k", "v", lease);
            ADD_FAILURE() << "put under a revoked lease succeeded";
        } catch (const etcd::Error &e) {
            EXPECT_NE(std::string(e.what()).find("lease not found"), std::string::npos) << e.what();
        }
    }});
}

TEST(Etcd, a_lease_not_kept_alive_expires_and_takes_its_keys)
{
    auto c = etcd_client();
    run_co({[&] {
        int64_t lease = c.lease_grant(1);
        c.put("/t/expire/k", "v", lease);
        // etcd expires leases on its own clock: wait for it (no fixed sleep decides the test).
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
        while (!c.get("/t/expire/k").empty() && std::chrono::steady_clock::now() < deadline)
            coho::this_co::sleep_for(std::chrono::milliseconds(100));
        EXPECT_TRUE(c.get("/t/expire/k").empty());
        EXPECT_EQ(c.lease_keepalive(lease), 0);
    }});
}

TEST(Etcd, put_if_absent_lets_one_writer_create_a_key)
{
    auto c = etcd_client();
    run_co({[&] {
        c.del("/t/txn/k");
        EXPECT_TRUE(c.put_if_absent("/t/txn/k", "first"));
        EXPECT_FALSE(c.put_if_absent("/t/txn/k", "second"));
        auto kv = c.get("/t/txn/k");
        ASSERT_EQ(kv.size(), 1u);
        EXPECT_EQ(kv[0].value, "first");
        c.del("/t/txn/k");
        EXPECT_TRUE(c.put_if_absent("/t/txn/k", "third"));
    }});
}

TEST(Etcd, a_watch_and_the_writes_it_sees_share_one_thread)
{
    auto c = etcd_client();
    int64_t start = 0;
    std::vector<std::string> seen;
    bool done = false;
    run_co({[&] {
                c.del_prefix("/t/watch/");
                start = c.put("/t/other", "x") + 1;
                c.watch_prefix(
                    "/t/watch/", start,
                    [&](const std::vector<etcd::Event> &evs) {
                        for (const auto &e : evs)
                            seen.push_back((e.type == etcd::Event::PUT ? "put " : "del ") +
                                           e.kv.key + "=" + e.kv.value);
                        return seen.size() < 3;
                    },
                    [&] { return !done; });
            },
            [&] {
                // Runs while the watch coroutine waits in curl: the thread is free.
                while (start == 0)
                    coho::this_co::sleep_for(std::chrono::milliseconds(1));
                c.put("/t/watch/a", "1");
                c.put("/t/outside", "not seen");
                c.put("/t/watch/b", "2");
                c.del("/t/watch/a");
            }});
    done = true;
    EXPECT_EQ(seen, (std::vector<std::string>{"put /t/watch/a=1", "put /t/watch/b=2",
                                              "del /t/watch/a="}));
}

TEST(Etcd, a_watch_ends_when_asked_to_while_idle)
{
    auto c = etcd_client();
    bool stop = false;
    bool returned = false;
    run_co({[&] {
                c.watch_prefix(
                    "/t/idle/", 0, [](const std::vector<etcd::Event> &) { return true; },
                    [&] { return !stop; });
                returned = true;
            },
            [&] {
                coho::this_co::sleep_for(std::chrono::milliseconds(200));
                stop = true;
            }});
    EXPECT_TRUE(returned);
}

TEST(Etcd, a_dead_endpoint_is_skipped_and_none_alive_is_an_error)
{
    int dead = 0;
    {
        // A port nobody listens on: bind one, learn it, close it.
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof a), 0);
        socklen_t len = sizeof a;
        getsockname(fd, reinterpret_cast<sockaddr *>(&a), &len);
        dead = ntohs(a.sin_port);
        close(fd);
    }
    const std::string dead_ep = "127.0.0.1:" + std::to_string(dead);
    etcd::Options o;
    o.endpoints = {dead_ep, etcd_endpoint()};
    etcd::Client both(o);
    o.endpoints = {dead_ep};
    etcd::Client none(o);
    run_co({[&] {
        both.put("/t/failover", "ok");
        EXPECT_EQ(both.get("/t/failover").size(), 1u);
        try {
            none.put("/t/failover", "no");
            ADD_FAILURE() << "a put with no live endpoint succeeded";
        } catch (const etcd::Error &e) {
            EXPECT_NE(std::string(e.what()).find("no endpoint answered"), std::string::npos)
                << e.what();
        }
    }});
}

} // namespace
