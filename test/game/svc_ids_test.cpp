// SPDX-License-Identifier: MIT
// game/svc/ids.hpp: the id layout, the sequence running out within one millisecond, a clock
// that goes backwards (absorbed, waited for, or refused loudly), restarts with the state file
// (never an id twice, also after a crash), many threads at once, and bad options.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "game/svc/ids.hpp"

using coho::game::IdClockError;
using coho::game::IdGen;

namespace {

constexpr int64_t kT0 = IdGen::kEpochMs + INT64_C(50000000000); // mid-2026

// A clock the test moves; sleeping advances it (and is counted).
struct FakeTime {
    std::atomic<int64_t> now{kT0};
    std::atomic<int64_t> slept{0};
    IdGen::Options opts(uint32_t machine = 1)
    {
        IdGen::Options o;
        o.machine_id = machine;
        o.now_ms = [this] { return now.load(); };
        o.sleep_ms = [this](int64_t ms) {
            slept += ms;
            now += ms;
        };
        return o;
    }
};

std::string temp_dir()
{
    char tmpl[] = "/tmp/coho-ids-test-XXXXXX";
    const char *d = mkdtemp(tmpl);
    return d != nullptr ? d : "";
}

} // namespace

TEST(Ids, AnIdHoldsItsTimeMachineAndSequence)
{
    FakeTime ft;
    IdGen g(ft.opts(517));
    const uint64_t a = g.next(), b = g.next();
    const IdGen::Parts p = IdGen::decode(a);
    EXPECT_EQ(p.unix_ms, kT0);
    EXPECT_EQ(p.machine, 517u);
    EXPECT_EQ(p.seq, 0u);
    EXPECT_EQ(IdGen::decode(b).seq, 1u);
    EXPECT_LT(a, b);
    EXPECT_EQ(a >> 63, 0u); // positive as a signed 64-bit value
    ft.now += 1;
    EXPECT_EQ(IdGen::decode(g.next()).seq, 0u); // a new millisecond restarts the sequence
}

TEST(Ids, TheSequenceRunningOutWithinOneMillisecondBorrowsTheNext)
{
    FakeTime ft; // the clock stands still
    IdGen g(ft.opts());
    uint64_t last = 0;
    for (int i = 0; i < 4096; i++) {
        const uint64_t id = g.next();
        EXPECT_GT(id, last);
        last = id;
        ASSERT_EQ(IdGen::decode(id).unix_ms, kT0);
    }
    const uint64_t next = g.next();
    EXPECT_EQ(IdGen::decode(next).unix_ms, kT0 + 1);
    EXPECT_EQ(IdGen::decode(next).seq, 0u);
    EXPECT_GT(next, last);
    EXPECT_EQ(ft.slept.load(), 0); // within max_ahead_ms: no wait
}

TEST(Ids, TheSequenceRunningOutWaitsForTheClockWhenNothingMayBeBorrowed)
{
    FakeTime ft;
    IdGen::Options o = ft.opts();
    o.max_ahead_ms = 0;
    IdGen g(o);
    for (int i = 0; i < 4096; i++)
        g.next();
    const uint64_t next = g.next();
    EXPECT_EQ(ft.slept.load(), 1); // slept until the next millisecond
    EXPECT_EQ(IdGen::decode(next).unix_ms, kT0 + 1);
    EXPECT_EQ(g.waits(), 1u);
}

TEST(Ids, AClockGoingBackwardsNeverRepeatsAnId)
{
    FakeTime ft;
    IdGen g(ft.opts());
    std::set<uint64_t> seen;
    for (int i = 0; i < 100; i++)
        ASSERT_TRUE(seen.insert(g.next()).second);
    ft.now -= 1500; // set back 1.5 s: within max_ahead_ms (2 s), ids continue from the last time
    uint64_t prev = *seen.rbegin();
    for (int i = 0; i < 10000; i++) {
        const uint64_t id = g.next();
        ASSERT_TRUE(seen.insert(id).second);
        ASSERT_GT(id, prev);
        prev = id;
    }
    EXPECT_EQ(ft.slept.load(), 0);
}

TEST(Ids, AClockFarBehindIsWaitedForWithinTheBound)
{
    FakeTime ft;
    IdGen g(ft.opts());
    const uint64_t before = g.next();
    ft.now -= 5000; // 5 s back: 3 s beyond max_ahead_ms, within max_wait_ms (5 s)
    const uint64_t after = g.next();
    EXPECT_GT(after, before);
    EXPECT_GE(ft.slept.load(), 3000);
    EXPECT_LE(ft.slept.load(), 3001);
}

TEST(Ids, AClockTooFarBehindFailsLoudly)
{
    FakeTime ft;
    IdGen g(ft.opts());
    g.next();
    ft.now -= 3600 * 1000; // an hour back
    try {
        g.next();
        FAIL() << "no error";
    } catch (const IdClockError &e) {
        EXPECT_NE(std::string(e.what()).find("ms behind the last id's time"), std::string::npos)
            << e.what();
    }
    EXPECT_EQ(ft.slept.load(), 0); // it did not wait for a gap it could never cover
    ft.now += 3600 * 1000;
    EXPECT_NO_THROW(g.next()); // once the clock is back, ids flow again
}

TEST(Ids, ARestartNeverRepeatsAnIdEvenAfterACrash)
{
    const std::string dir = temp_dir();
    ASSERT_FALSE(dir.empty());
    FakeTime ft;
    IdGen::Options o = ft.opts();
    o.state_path = dir + "/ids.state";
    std::set<uint64_t> seen;
    uint64_t last = 0;
    {
        IdGen g(o);
        for (int i = 0; i < 50000; i++) { // 12+ ms of ids with the clock standing still
            last = g.next();
            ASSERT_TRUE(seen.insert(last).second);
        }
    } // "crash": nothing is written at exit
    // The restarted process reads an earlier clock (restarted quickly, or the clock went back
    // a little): its ids still come after every id of the first run.
    ft.now -= 500;
    {
        IdGen g(o);
        for (int i = 0; i < 50000; i++) {
            const uint64_t id = g.next();
            ASSERT_TRUE(seen.insert(id).second);
            ASSERT_GT(id, last);
        }
    }
    std::ifstream f(o.state_path);
    std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    EXPECT_EQ(text.rfind("coho-ids v1 reserved_unix_ms=", 0), 0u) << text;
    std::system(("rm -rf " + dir).c_str());
}

TEST(Ids, IdsAreUniqueAcrossManyThreads)
{
    IdGen::Options o;
    o.machine_id = 3;
    IdGen g(o); // the real clock
    constexpr int kThreads = 8, kEach = 50000;
    std::vector<std::vector<uint64_t>> got(kThreads);
    std::vector<std::thread> ts;
    for (int t = 0; t < kThreads; t++)
        ts.emplace_back([&, t] {
            got[t].reserve(kEach);
            for (int i = 0; i < kEach; i++)
                got[t].push_back(g.next());
        });
    for (auto &t : ts)
        t.join();
    std::vector<uint64_t> all;
    for (auto &v : got) {
        EXPECT_TRUE(std::is_sorted(v.begin(), v.end())); // each thread sees them grow
        all.insert(all.end(), v.begin(), v.end());
    }
    std::sort(all.begin(), all.end());
    EXPECT_EQ(std::adjacent_find(all.begin(), all.end()), all.end());
    EXPECT_EQ(all.size(), size_t(kThreads) * kEach);
    EXPECT_EQ(g.issued(), uint64_t(kThreads) * kEach);
}

TEST(Ids, BadOptionsAndACorruptStateFileAreRefused)
{
    IdGen::Options o;
    o.machine_id = 1024;
    try {
        IdGen g(o);
        FAIL() << "no error";
    } catch (const std::invalid_argument &e) {
        EXPECT_NE(std::string(e.what()).find("machine id 1024 is not 0..1023"), std::string::npos);
    }
    const std::string dir = temp_dir();
    o.machine_id = 1;
    o.state_path = dir + "/ids.state";
    std::ofstream(o.state_path) << "hello\n";
    try {
        IdGen g(o);
        FAIL() << "no error";
    } catch (const std::invalid_argument &e) {
        EXPECT_NE(std::string(e.what()).find("not an id state file"), std::string::npos);
    }
    std::system(("rm -rf " + dir).c_str());
}
