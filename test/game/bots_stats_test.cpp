// SPDX-License-Identifier: MIT
// coho-bots' accounting: the latency histogram's buckets and quantiles, and the report and
// SUMMARY line built from the counters.
#include <gtest/gtest.h>

#include <random>
#include <thread>
#include <vector>

#include "stats.hpp"

using namespace coho::game::bots;

TEST(BotsHistogram, EveryValueFallsInABucketWhoseUpperEdgeIsWithinOneSixteenth)
{
    std::mt19937_64 rng(7);
    for (int i = 0; i < 100000; i++) {
        uint64_t v = rng() >> (rng() % 64);
        int b = Histogram::bucket(v);
        ASSERT_GE(b, 0);
        ASSERT_LT(b, Histogram::kBuckets);
        uint64_t edge = Histogram::upper_edge(b);
        ASSERT_GE(edge, v) << v;
        ASSERT_LE(double(edge - v), double(v) / 16 + 1) << v;
        if (b > 0) {
            ASSERT_LT(Histogram::upper_edge(b - 1), v) << v; // buckets are ordered, no overlap
        }
    }
    EXPECT_EQ(Histogram::bucket(0), 0);
    EXPECT_EQ(Histogram::bucket(15), 15);
    EXPECT_EQ(Histogram::upper_edge(Histogram::bucket(16)), 16u);
    EXPECT_EQ(Histogram::bucket(UINT64_MAX), Histogram::kBuckets - 1);
}

TEST(BotsHistogram, QuantilesOfAUniformSpreadAreWithinTheBucketError)
{
    Histogram h;
    for (uint64_t us = 1; us <= 10000; us++)
        h.add(us);
    auto s = h.snapshot();
    EXPECT_EQ(s.count, 10000u);
    EXPECT_EQ(s.max, 10000u);
    EXPECT_EQ(s.sum, 10000u * 10001u / 2);
    for (double q : {0.5, 0.9, 0.99}) {
        double want = q * 10000;
        EXPECT_GE(double(s.quantile(q)), want) << q;
        EXPECT_LE(double(s.quantile(q)), want * (1 + 1.0 / 16) + 1) << q;
    }
    EXPECT_EQ(s.quantile(1.0), 10000u); // capped at the maximum seen
}

TEST(BotsHistogram, AnIntervalIsTheDifferenceOfTwoSnapshots)
{
    Histogram h;
    for (int i = 0; i < 100; i++)
        h.add(10);
    auto first = h.snapshot();
    for (int i = 0; i < 100; i++)
        h.add(5000);
    auto d = h.snapshot().minus(first);
    EXPECT_EQ(d.count, 100u);
    EXPECT_GE(d.quantile(0.5), 5000u);
    EXPECT_LE(d.quantile(0.5), 5000u + 5000u / 16);
}

TEST(BotsHistogram, ConcurrentAddsAreAllCounted)
{
    Histogram h;
    std::vector<std::thread> ts;
    for (int t = 0; t < 4; t++)
        ts.emplace_back([&h, t] {
            for (int i = 0; i < 50000; i++)
                h.add(uint64_t(t * 1000 + i % 1000));
        });
    for (auto &t : ts)
        t.join();
    auto s = h.snapshot();
    EXPECT_EQ(s.count, 200000u);
    EXPECT_EQ(s.max, 3999u);
}

TEST(BotsStats, TheSummaryCarriesEveryCounterAndTheVerdict)
{
    Stats st;
    st.ok(OP_ECHO, 100);
    st.ok(OP_ECHO, 300);
    st.status_error(OP_CHAT_SAY, 3, "(uid 7)");
    st.error(E_PUSH_LOST, "uid 7: pushes 4..5 never came \"quoted\"");
    st.push(21);
    st.push(33);
    st.push(2);
    EXPECT_EQ(st.total_errors(), 2u);
    std::string j = st.json(1.5, 3, 1);
    EXPECT_EQ(j.rfind("{\"ok\":false,", 0), 0u) << j; // 2 errors > max 1
    EXPECT_NE(j.find("\"errors\":2,"), std::string::npos) << j;
    // p50 of {100, 300} is 100, reported as the upper edge of its bucket; p99 is capped at max.
    const std::string p50 = std::to_string(Histogram::upper_edge(Histogram::bucket(100)));
    EXPECT_NE(j.find("\"echo\":{\"ok\":2,\"status_errors\":0,\"p50_us\":" + p50 +
                     ",\"p90_us\":300,\"p99_us\":300,\"max_us\":300}"),
              std::string::npos)
        << j;
    EXPECT_NE(j.find("\"chat.say\":{\"ok\":0,\"status_errors\":1,"), std::string::npos) << j;
    EXPECT_NE(j.find("\"push_lost\":1"), std::string::npos) << j;
    EXPECT_NE(j.find("\"pushes\":3,\"chat_pushes\":1,\"aoi_pushes\":1,\"self_pushes\":1"),
              std::string::npos)
        << j;
    EXPECT_NE(j.find("never came \\\"quoted\\\""), std::string::npos) << j; // escaped
    EXPECT_EQ(st.json(1.5, 3, 2).rfind("{\"ok\":true,", 0), 0u);
    std::string rep = st.report(1.5);
    EXPECT_NE(rep.find("echo"), std::string::npos) << rep;
    EXPECT_NE(rep.find("status: chat.say: status 3 (uid 7)"), std::string::npos) << rep;
    EXPECT_NE(rep.find("errors 2 status=1 push_lost=1"), std::string::npos) << rep;
}

TEST(BotsStats, RequestsAnsweredBeforeTheMeasuredPartAreLeftOutOfTheRoutes)
{
    Stats st;
    st.measure_from(Stats::Clock::now() + std::chrono::hours(1), 10);
    for (int i = 0; i < 5; i++)
        st.ok(OP_ECHO, 40000);
    EXPECT_EQ(st.lat[OP_ECHO].snapshot().count, 0u);
    EXPECT_EQ(st.ok_count[OP_ECHO].load(), 0u);
    EXPECT_EQ(st.warmup_ok.load(), 5u);
    EXPECT_EQ(st.all.snapshot().count, 5u); // the progress line still shows them
    std::string j = st.json(30, 1, 0);
    EXPECT_NE(j.find("\"measured_s\":10.000,\"warmup_ok\":5,"), std::string::npos) << j;
    EXPECT_NE(j.find("\"echo\":{\"ok\":0,"), std::string::npos) << j;

    // From here on every answer is measured, and req/s are per measured second.
    st.measure_from(Stats::Clock::now() - std::chrono::seconds(1), 10);
    for (int i = 0; i < 3; i++)
        st.ok(OP_ECHO, 100);
    auto s = st.lat[OP_ECHO].snapshot();
    EXPECT_EQ(s.count, 3u);
    EXPECT_EQ(s.max, 100u); // the warm-up's 40 ms answers left no trace in the route
    std::string r = st.report(30);
    EXPECT_NE(r.find("0.3"), std::string::npos) << r; // 3 requests in 10 measured seconds
    EXPECT_NE(r.find("5 requests answered before it are left out"), std::string::npos) << r;
}

TEST(BotsStats, WithoutAWarmUpEveryRequestIsMeasuredOverTheElapsedTime)
{
    Stats st;
    st.ok(OP_ECHO, 100);
    EXPECT_EQ(st.lat[OP_ECHO].snapshot().count, 1u);
    EXPECT_EQ(st.warmup_ok.load(), 0u);
    std::string j = st.json(2.5, 1, 0);
    EXPECT_NE(j.find("\"measured_s\":2.500,\"warmup_ok\":0,"), std::string::npos) << j;
}
