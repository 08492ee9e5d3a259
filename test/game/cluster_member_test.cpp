// SPDX-License-Identifier: MIT
// game/cluster: registration under a lease (member.hpp), discovery by watch (discovery.hpp) and
// machine ids (machine_id.hpp) against a real etcd (test/support/servers/etcd.sh). Each test
// uses a cluster name of its own.
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <set>
#include <string>

#include <coho.hpp>

#include "game/cluster/discovery.hpp"
#include "game/cluster/machine_id.hpp"
#include "game/cluster/member.hpp"
#include "test/game/cluster_harness.hpp"

namespace {

using namespace coho::game;
using coho_test::etcd_client;
using coho_test::etcd_endpoint;
using coho_test::run_co;

using namespace std::chrono_literals;

cluster::MemberConfig member_config(const std::string &cluster, const std::string &id,
                                    int64_t ttl_s = 5)
{
    cluster::MemberConfig m;
    m.etcd = {etcd_endpoint()};
    m.cluster = cluster;
    m.role = "logic";
    m.id = id;
    m.value = cluster::describe("127.0.0." + id + ":7000", 100);
    m.ttl_s = ttl_s;
    return m;
}

// Waits (parked) up to `d` for `cond`.
bool wait_for(const std::function<bool()> &cond, std::chrono::milliseconds d)
{
    const auto end = std::chrono::steady_clock::now() + d;
    while (!cond()) {
        if (std::chrono::steady_clock::now() >= end)
            return false;
        coho::this_co::sleep_for(10ms);
    }
    return true;
}

TEST(ClusterNames, describe_and_addr_of_agree_and_names_are_checked)
{
    EXPECT_EQ(cluster::addr_of(cluster::describe("127.0.0.2:7001", 5)), "127.0.0.2:7001");
    EXPECT_EQ(cluster::addr_of("not json"), "");
    EXPECT_EQ(cluster::addr_of("{\"capacity\":1}"), "");
    EXPECT_EQ(cluster::role_prefix("c", "logic"), "/c/logic/");
    EXPECT_TRUE(cluster::valid_name("node-1.a_b"));
    EXPECT_FALSE(cluster::valid_name(""));
    EXPECT_FALSE(cluster::valid_name("a/b"));
    EXPECT_FALSE(cluster::valid_name(std::string(65, 'a')));
}

TEST(ClusterMember, registers_under_a_lease_and_a_stop_removes_the_key_at_once)
{
    auto c = etcd_client();
    cluster::Member m(member_config("reg", "1"));
    run_co({[&] {
        m.start();
        ASSERT_TRUE(m.wait_valid(10s));
        auto kv = c.get("/reg/logic/1");
        ASSERT_EQ(kv.size(), 1u);
        EXPECT_EQ(cluster::addr_of(kv[0].value), "127.0.0.1:7000");
        EXPECT_EQ(kv[0].lease, m.lease());
        EXPECT_GT(c.lease_keepalive(m.lease()), 0);
        m.stop();
        EXPECT_FALSE(m.valid());
        EXPECT_TRUE(c.get("/reg/logic/1").empty());
    }});
}

TEST(ClusterMember, a_lost_lease_fences_the_node_until_it_registers_again)
{
    auto c = etcd_client();
    cluster::Member m(member_config("lost", "1", 2));
    run_co({[&] {
        m.start();
        ASSERT_TRUE(m.wait_valid(10s));
        const int64_t first = m.lease();
        // etcd drops the lease (as after a partition or a pause past the TTL).
        c.lease_revoke(first);
        EXPECT_TRUE(wait_for([&] { return m.leases_lost() == 1; }, 10s));
        EXPECT_TRUE(wait_for([&] { return m.registrations() == 2 && m.valid(); }, 10s));
        EXPECT_NE(m.lease(), first);
        auto kv = c.get("/lost/logic/1");
        ASSERT_EQ(kv.size(), 1u);
        EXPECT_EQ(kv[0].lease, m.lease());
        m.stop();
    }});
}

TEST(ClusterMember, without_etcd_a_node_never_counts_itself_registered)
{
    cluster::MemberConfig mc = member_config("down", "1", 1);
    mc.etcd = {"127.0.0.1:1"};
    cluster::Member m(mc);
    run_co({[&] {
        m.start();
        EXPECT_FALSE(m.wait_valid(1500ms));
        EXPECT_EQ(m.registrations(), 0u);
        m.stop();
    }});
}

TEST(ClusterDiscovery, the_set_follows_nodes_as_they_come_and_go)
{
    cluster::Member a(member_config("disc", "1")), b(member_config("disc", "2"));
    cluster::Discovery d({etcd_endpoint()}, cluster::role_prefix("disc", "logic"));
    cluster::NodeSet last;
    run_co({[&] {
        a.start();
        ASSERT_TRUE(a.wait_valid(10s));
        ASSERT_TRUE(d.start([&](const cluster::NodeSet &s) { last = s; }, 5000));
        ASSERT_EQ(last.size(), 1u);
        EXPECT_EQ(last["1"].addr, "127.0.0.1:7000");
        const int64_t first = last["1"].lease;
        EXPECT_NE(first, 0);
        b.start();
        EXPECT_TRUE(wait_for([&] { return last.size() == 2; }, 10s));
        EXPECT_EQ(last["2"].addr, "127.0.0.2:7000");
        a.stop();
        EXPECT_TRUE(wait_for([&] { return last.size() == 1; }, 10s));
        EXPECT_EQ(last.count("2"), 1u);
        // Registered again at the same address: a new registration, which the gateways tell
        // from the old one (their scene seats there enter again).
        cluster::Member again(member_config("disc", "1"));
        again.start();
        EXPECT_TRUE(wait_for([&] { return last.size() == 2; }, 10s));
        EXPECT_EQ(last["1"].addr, "127.0.0.1:7000");
        EXPECT_NE(last["1"].lease, first);
        again.stop();
        b.stop();
        EXPECT_TRUE(wait_for([&] { return last.empty(); }, 10s));
        d.stop();
    }});
}

TEST(ClusterDiscovery, a_crashed_node_leaves_the_set_when_its_lease_expires)
{
    auto c = etcd_client();
    cluster::Discovery d({etcd_endpoint()}, cluster::role_prefix("crash", "logic"));
    cluster::NodeSet last;
    run_co({[&] {
        // A node that registered and then died: nobody renews its lease.
        int64_t lease = c.lease_grant(1);
        c.put("/crash/logic/9", cluster::describe("127.0.0.9:7000", 0), lease);
        ASSERT_TRUE(d.start([&](const cluster::NodeSet &s) { last = s; }, 5000));
        EXPECT_EQ(last.size(), 1u);
        EXPECT_TRUE(wait_for([&] { return last.empty(); }, 15s));
        d.stop();
    }});
}

TEST(ClusterMachineId, ids_are_distinct_while_held_and_free_again_after_the_lease)
{
    auto c = etcd_client();
    run_co({[&] {
        c.del_prefix("/mid/");
        int64_t l1 = c.lease_grant(30), l2 = c.lease_grant(30), l3 = c.lease_grant(30);
        EXPECT_EQ(cluster::lease_machine_id(c, "mid", l1, "a", 1), 0);
        EXPECT_EQ(cluster::lease_machine_id(c, "mid", l2, "b", 1), 1);
        EXPECT_THROW(cluster::lease_machine_id(c, "mid", l3, "c", 1), etcd::Error);
        c.lease_revoke(l1);
        EXPECT_EQ(cluster::lease_machine_id(c, "mid", l3, "c", 1), 0);
        auto kv = c.get(cluster::machine_id_key("mid", 0));
        ASSERT_EQ(kv.size(), 1u);
        EXPECT_EQ(kv[0].value, "c");
        EXPECT_EQ(kv[0].lease, l3);
        EXPECT_THROW(cluster::lease_machine_id(c, "mid", 0, "d"), std::invalid_argument);
        c.lease_revoke(l2);
        c.lease_revoke(l3);
    }});
}

TEST(ClusterMachineId, claims_racing_on_one_thread_never_share_an_id)
{
    constexpr int kNodes = 8;
    etcd::Options o;
    o.endpoints = {etcd_endpoint()};
    std::vector<std::unique_ptr<etcd::Client>> cs;
    for (int i = 0; i < kNodes; i++)
        cs.push_back(std::make_unique<etcd::Client>(o));
    std::vector<int64_t> ids(kNodes, -1), leases(kNodes, 0);
    std::vector<std::function<void()>> fns;
    for (int i = 0; i < kNodes; i++)
        fns.push_back([&, i] {
            leases[size_t(i)] = cs[size_t(i)]->lease_grant(30);
            ids[size_t(i)] = cluster::lease_machine_id(*cs[size_t(i)], "race", leases[size_t(i)],
                                                       std::to_string(i), 1023);
        });
    auto c = etcd_client();
    run_co({[&] { c.del_prefix("/race/"); }});
    run_co(fns);
    std::set<int64_t> distinct(ids.begin(), ids.end());
    EXPECT_EQ(distinct.size(), size_t(kNodes));
    EXPECT_EQ(distinct.count(-1), 0u);
    EXPECT_EQ(*distinct.rbegin(), kNodes - 1) << "the lowest free ids are taken";
    run_co({[&] {
        EXPECT_EQ(c.get_prefix("/race/machine/").size(), size_t(kNodes));
        for (int64_t l : leases)
            c.lease_revoke(l);
        EXPECT_TRUE(c.get_prefix("/race/machine/").empty());
    }});
}

} // namespace
