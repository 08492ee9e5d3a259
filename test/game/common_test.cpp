// SPDX-License-Identifier: MIT
// game/common: every helper the three programs share, against DESIGN.md's wire format.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <random>
#include <set>

#include "bytes.hpp"
#include "flags.hpp"
#include "game.pb.h"
#include "node.hpp"
#include "rendezvous.hpp"
#include "scene_call.hpp"
#include "token.hpp"
#include "wire.hpp"

using namespace coho::game;

TEST(GameWire, FrameIsLittleEndianWithLenCountingTheBytesAfterIt)
{
    std::string f = wire::frame(wire::CALL, 0x01020304, "ab");
    ASSERT_EQ(f.size(), wire::kHeaderLen + 2);
    const unsigned char want[] = {10, 0, 0, 0, 4, 0, 0, 0, 4, 3, 2, 1, 'a', 'b'};
    EXPECT_EQ(f, std::string(reinterpret_cast<const char *>(want), sizeof want));
    auto h = wire::parse_header(reinterpret_cast<const unsigned char *>(f.data()));
    EXPECT_EQ(h.len, 10u);
    EXPECT_EQ(h.type, wire::CALL);
    EXPECT_EQ(h.flags, 0);
    EXPECT_EQ(h.seq, 0x01020304u);
    EXPECT_EQ(h.body_len(), 2u);
}

TEST(GameWire, EmptyBodyFrameHasTheMinimumLen)
{
    std::string f = wire::frame(wire::PING, 7);
    auto h = wire::parse_header(reinterpret_cast<const unsigned char *>(f.data()));
    EXPECT_EQ(h.len, wire::kMinLen);
    EXPECT_EQ(h.body_len(), 0u);
}

TEST(GameWire, ErrorResponseCarriesTheStatusAloneUnderTheResponseType)
{
    std::string f = wire::error_response(wire::CALL, 99, wire::NO_NODE);
    auto h = wire::parse_header(reinterpret_cast<const unsigned char *>(f.data()));
    EXPECT_EQ(h.type, wire::CALL | wire::kResponse);
    EXPECT_EQ(h.seq, 99u);
    ASSERT_EQ(h.body_len(), 4u);
    EXPECT_EQ(get_u32(reinterpret_cast<const unsigned char *>(f.data()) + 12), 3u);
}

TEST(GameWire, KickHasSeqZeroAndTheReason)
{
    std::string f = wire::kick(wire::KICK_SLOW);
    auto h = wire::parse_header(reinterpret_cast<const unsigned char *>(f.data()));
    EXPECT_EQ(h.type, wire::KICK);
    EXPECT_EQ(h.seq, 0u);
    Reader r(std::string_view(f).substr(wire::kHeaderLen));
    EXPECT_EQ(r.u32(), 3u);
    EXPECT_TRUE(r.ok());
    EXPECT_EQ(r.left(), 0u);
}

TEST(GameWire, RequestBodiesHaveTheFixedLayout)
{
    std::string lb = wire::login_body(42, "tok");
    Reader l(lb);
    EXPECT_EQ(l.u64(), 42u);
    EXPECT_EQ(l.bytes(l.u16()), "tok");
    EXPECT_TRUE(l.ok());
    EXPECT_EQ(l.left(), 0u);

    // A short key is padded to 16 bytes, a long one cut to 16.
    std::string rb = wire::rebind_body(5, "short", 77);
    ASSERT_EQ(rb.size(), 8u + wire::kResumeKeyLen + 4u);
    Reader r(rb);
    EXPECT_EQ(r.u64(), 5u);
    EXPECT_EQ(r.bytes(wire::kResumeKeyLen), std::string("short") + std::string(11, '\0'));
    EXPECT_EQ(r.u32(), 77u);
    EXPECT_EQ(wire::rebind_body(5, std::string(40, 'k'), 1).size(), rb.size());

    std::string cb = wire::call_body(wire::R_CHAT_SAY, "xyz");
    Reader c(cb);
    EXPECT_EQ(c.u16(), 21u);
    EXPECT_EQ(c.rest(), "xyz");
}

TEST(GameBytes, ReaderFailsForGoodOnAShortBody)
{
    std::string b;
    put_u32(b, 1);
    Reader r(b);
    EXPECT_EQ(r.u64(), 0u); // 4 bytes left, 8 asked
    EXPECT_FALSE(r.ok());
    EXPECT_EQ(r.u16(), 0u); // stays failed even though 2 bytes would fit
    EXPECT_FALSE(r.ok());
    EXPECT_EQ(r.left(), 0u);
    EXPECT_EQ(r.rest(), "");
}

TEST(GameBytes, ReaderBytesPastTheEndFails)
{
    Reader r(std::string_view("abc"));
    EXPECT_EQ(r.bytes(4), "");
    EXPECT_FALSE(r.ok());
}

TEST(GameBytes, IntegersRoundTripLittleEndian)
{
    std::string b;
    put_u16(b, 0xBEEF);
    put_u32(b, 0xDEADBEEF);
    put_u64(b, 0x0123456789ABCDEFull);
    EXPECT_EQ(static_cast<unsigned char>(b[0]), 0xEF);
    Reader r(b);
    EXPECT_EQ(r.u16(), 0xBEEF);
    EXPECT_EQ(r.u32(), 0xDEADBEEFu);
    EXPECT_EQ(r.u64(), 0x0123456789ABCDEFull);
    EXPECT_TRUE(r.ok());
}

TEST(GameToken, IsTheHexHmacSha256OfTheDecimalUid)
{
    // python3 -c "import
    // hmac,hashlib;print(hmac.new(b'k3y',b'1234567890',hashlib.sha256).hexdigest())"
    EXPECT_EQ(login_token("k3y", 1234567890),
              "417361fefc084c831ec256093e1387ced8f6b26ec79a64033b00703fbb256407");
}

TEST(GameToken, OnlyTheExactTokenIsAccepted)
{
    std::string t = login_token("s", 7);
    EXPECT_TRUE(token_ok("s", 7, t));
    EXPECT_FALSE(token_ok("s", 8, t));           // another uid
    EXPECT_FALSE(token_ok("t", 7, t));           // another secret
    EXPECT_FALSE(token_ok("s", 7, t.substr(1))); // shorter
    EXPECT_FALSE(token_ok("s", 7, t + "0"));     // longer
    EXPECT_FALSE(token_ok("s", 7, ""));
    std::string upper = t;
    for (char &c : upper)
        c = char(toupper(c));
    if (upper != t) {
        EXPECT_FALSE(token_ok("s", 7, upper)); // lowercase only
    }
    t[10] = t[10] == 'a' ? 'b' : 'a';
    EXPECT_FALSE(token_ok("s", 7, t));
}

namespace {
std::vector<uint64_t> node_hashes(int n)
{
    std::vector<uint64_t> h;
    for (int i = 0; i < n; i++)
        h.push_back(fnv1a("127.0.0.1:" + std::to_string(7000 + i)));
    return h;
}
} // namespace

TEST(GameRendezvous, NoNodeUpIsMinusOne)
{
    EXPECT_EQ(rendezvous_pick({}, {}, 1), -1);
    auto h = node_hashes(2);
    EXPECT_EQ(rendezvous_pick(h, {false, false}, 1), -1);
}

TEST(GameRendezvous, KeysSpreadEvenlyOverNodes)
{
    auto h = node_hashes(3);
    std::vector<bool> up(3, true);
    std::map<int, int> count;
    for (uint64_t uid = 1; uid <= 30000; uid++)
        count[rendezvous_pick(h, up, uid)]++;
    ASSERT_EQ(count.size(), 3u);
    for (auto &[node, n] : count)
        EXPECT_NEAR(n, 10000, 600) << "node " << node;
}

TEST(GameRendezvous, RemovingANodeMovesOnlyItsKeys)
{
    auto h = node_hashes(4);
    std::vector<bool> all(4, true), without2 = all;
    without2[2] = false;
    int moved = 0;
    for (uint64_t uid = 1; uid <= 20000; uid++) {
        int before = rendezvous_pick(h, all, uid), after = rendezvous_pick(h, without2, uid);
        if (before != 2) {
            EXPECT_EQ(before, after) << "uid " << uid;
        } else {
            moved++;
            EXPECT_NE(after, 2);
        }
    }
    EXPECT_GT(moved, 4000);
}

TEST(GameRendezvous, AddingANodeMovesOnlyTheKeysItGains)
{
    auto h3 = node_hashes(3), h4 = node_hashes(4);
    std::vector<bool> up3(3, true), up4(4, true);
    int gained = 0;
    for (uint64_t uid = 1; uid <= 20000; uid++) {
        int before = rendezvous_pick(h3, up3, uid), after = rendezvous_pick(h4, up4, uid);
        if (after == 3) {
            gained++;
        } else {
            EXPECT_EQ(before, after) << "uid " << uid;
        }
    }
    EXPECT_NEAR(gained, 5000, 500);
}

// A node joining a cluster of 3 (node names as the gateways hash them: "HOST:PORT" of each
// node's registration, here 127.0.0.2..5 with random ports, over 20 clusters): the share of
// uids that move is about 1/4 (the new node's fair share), and every one of them moves to the
// new node — none between two old nodes. bench/RESULTS.md reports the figures printed.
TEST(GameRendezvous, ANodeJoiningThreeMovesAQuarterOfTheUidsAllToItself)
{
    std::mt19937_64 rng(14);
    constexpr uint64_t kUids = 100000;
    double sum = 0, lo = 1, hi = 0;
    const int clusters = 20;
    for (int c = 0; c < clusters; c++) {
        std::vector<uint64_t> h4;
        for (int n = 0; n < 4; n++)
            h4.push_back(fnv1a("127.0.0." + std::to_string(2 + n) + ":" +
                               std::to_string(32768 + rng() % 28000)));
        const std::vector<uint64_t> h3(h4.begin(), h4.begin() + 3);
        const std::vector<bool> up3(3, true), up4(4, true);
        uint64_t moved = 0, between_old = 0;
        for (uint64_t k = 0; k < kUids; k++) {
            const uint64_t uid = rng(); // uids as the bots spread them, and arbitrary ones
            const int before = rendezvous_pick(h3, up3, uid), after = rendezvous_pick(h4, up4, uid);
            if (before == after)
                continue;
            moved++;
            if (after != 3)
                between_old++;
        }
        EXPECT_EQ(between_old, 0u) << "cluster " << c;
        const double f = double(moved) / double(kUids);
        EXPECT_NEAR(f, 0.25, 0.02) << "cluster " << c;
        sum += f;
        lo = std::min(lo, f);
        hi = std::max(hi, f);
    }
    const double mean = sum / clusters;
    EXPECT_NEAR(mean, 0.25, 0.005);
    std::printf("join 3 -> 4 nodes: %.4f of the uids moved (mean of %d clusters of %llu uids; "
                "min %.4f, max %.4f; 1/N = 0.2500), none between old nodes\n",
                mean, clusters, static_cast<unsigned long long>(kUids), lo, hi);
}

// The gateway reads scene requests without the schema: it must agree with protobuf on every
// SceneEnterReq / SceneMoveReq, and what it builds must parse as the messages it stands for.
TEST(GameScene, TheSceneIdAndPositionAreReadAsProtobufWritesThem)
{
    std::mt19937_64 rng(7);
    for (int i = 0; i < 2000; i++) {
        SceneMoveReq m;
        m.set_scene(uint32_t(rng()) | 1);
        m.mutable_pos()->set_x(int32_t(rng()));
        m.mutable_pos()->set_y(int32_t(rng()));
        const std::string p = m.SerializeAsString();
        uint32_t scene = 0;
        std::string pos;
        ASSERT_TRUE(parse_scene_call(p, &scene, &pos));
        EXPECT_EQ(scene, m.scene());
        // What the gateway sends on a player's behalf: an enter at the same place.
        SceneEnterReq e;
        ASSERT_TRUE(e.ParseFromString(scene_payload(scene, pos, true)));
        EXPECT_EQ(e.scene(), m.scene());
        EXPECT_EQ(e.pos().x(), m.pos().x());
        EXPECT_EQ(e.pos().y(), m.pos().y());
        SceneLeaveReq l;
        ASSERT_TRUE(l.ParseFromString(scene_payload(scene, {}, false)));
        EXPECT_EQ(l.scene(), m.scene());
    }
    // Fields in any order, unknown fields skipped, the last scene id wins (as in protobuf).
    std::string p = std::string("\x12\x02\x08\x04", 4) + "\x08\x05" + "\x1d" + "abcd" + "\x08\x09";
    SceneMoveReq m;
    ASSERT_TRUE(m.ParseFromString(p));
    uint32_t scene = 0;
    std::string pos;
    ASSERT_TRUE(parse_scene_call(p, &scene, &pos));
    EXPECT_EQ(scene, m.scene());
    EXPECT_EQ(pos, std::string("\x08\x04", 2));
    // No scene id, id 0, wider than 32 bits, wrong wire type, truncated: refused.
    for (const std::string &bad :
         {std::string(), std::string("\x08\x00", 2), std::string("\x08\x80\x80\x80\x80\x10"),
          std::string("\x0a\x01z"), std::string("\x08"), std::string("\x12\x05zz")})
        EXPECT_FALSE(parse_scene_call(bad, &scene, &pos)) << bad.size() << " bytes";
}

TEST(GameScene, AnEnterReplyBecomesAnAoiBatchOfWhoEntered)
{
    SceneEnterResp r;
    for (uint64_t uid : {3u, 9u}) {
        Entity *e = r.add_others();
        e->set_uid(uid);
        e->mutable_pos()->set_x(int32_t(uid) * 10);
        e->mutable_pos()->set_y(-1);
    }
    std::string aoi;
    ASSERT_TRUE(enter_resp_as_aoi(42, r.SerializeAsString(), &aoi));
    AoiBatch b;
    ASSERT_TRUE(b.ParseFromString(aoi));
    EXPECT_EQ(b.scene(), 42u);
    ASSERT_EQ(b.entered_size(), 2);
    EXPECT_EQ(b.entered(1).uid(), 9u);
    EXPECT_EQ(b.entered(1).pos().x(), 90);
    EXPECT_EQ(b.entered(1).pos().y(), -1);
    EXPECT_EQ(b.moved_size() + b.left_size(), 0);
    // Nobody in view: no batch (an empty AoiBatch is never pushed).
    ASSERT_TRUE(enter_resp_as_aoi(42, {}, &aoi));
    EXPECT_TRUE(aoi.empty());
    EXPECT_FALSE(enter_resp_as_aoi(42, "\x0a\x09", &aoi));
}

TEST(GameScene, SceneAndUidKeysGoToIndependentNodes)
{
    // Scene n and uid n must not share an owner more often than chance: over 3 nodes, about a
    // third of the time.
    const std::vector<uint64_t> nodes = {fnv1a("a:1"), fnv1a("b:2"), fnv1a("c:3")};
    const std::vector<bool> up = {true, true, true};
    int same = 0;
    const int n = 30000;
    for (uint32_t k = 1; k <= uint32_t(n); k++)
        same += rendezvous_pick(nodes, up, k) == rendezvous_pick(nodes, up, scene_key(k));
    EXPECT_NEAR(double(same) / n, 1.0 / 3, 0.02);
}

TEST(GameNode, FrameParsesBack)
{
    std::string f = node::frame(node::CALL, 1ull << 40, 21, node::uid_session(9, 10, "p"));
    node::Header h;
    std::string_view body;
    ASSERT_TRUE(node::parse(f, &h, &body));
    EXPECT_EQ(h.type, node::CALL);
    EXPECT_EQ(h.seq, 1ull << 40);
    EXPECT_EQ(h.arg, 21u);
    Reader r(body);
    EXPECT_EQ(r.u64(), 9u);
    EXPECT_EQ(r.u64(), 10u);
    EXPECT_EQ(r.rest(), "p");
}

TEST(GameNode, BadMagicOrLengthIsRefused)
{
    std::string f = node::frame(node::HELLO, 0, 0, "12345678");
    node::Header h;
    std::string_view body;
    EXPECT_FALSE(node::parse(f.substr(0, 10), &h, &body)); // short
    EXPECT_FALSE(node::parse(f + "x", &h, &body));         // body_len disagrees
    EXPECT_FALSE(node::parse(f.substr(0, f.size() - 1), &h, &body));
    std::string bad = f;
    bad[0] ^= 1;
    EXPECT_FALSE(node::parse(bad, &h, &body));
    std::string gb = node::uid_group(3, "world");
    Reader g(gb);
    EXPECT_EQ(g.u64(), 3u);
    EXPECT_EQ(g.bytes(g.u16()), "world");
}

namespace {
struct Parsed {
    std::string listen, gates;
    uint64_t n = 0;
    bool v = false;
};
Parsed parse_flags(std::vector<std::string> args)
{
    Flags f("prog", "test program");
    Parsed p;
    auto &listen = f.str("listen", "HOST:PORT", "where", "", true);
    auto &n = f.u64("threads", "N", "threads", 1);
    auto &v = f.flag("ws", "websocket");
    auto &gates = f.list("gate", "HOST:PORT[,...]", "gateways");
    std::vector<char *> argv{const_cast<char *>("prog")};
    for (auto &a : args)
        argv.push_back(a.data());
    f.parse(int(argv.size()), argv.data());
    p.listen = listen;
    p.n = n;
    p.v = v;
    p.gates = gates;
    return p;
}
} // namespace

TEST(GameFlags, BothSpellingsAndDefaults)
{
    auto p = parse_flags({"--listen", "127.0.0.1:0", "--ws"});
    EXPECT_EQ(p.listen, "127.0.0.1:0");
    EXPECT_EQ(p.n, 1u);
    EXPECT_TRUE(p.v);
    p = parse_flags({"--listen=h:1", "--threads=4"});
    EXPECT_EQ(p.listen, "h:1");
    EXPECT_EQ(p.n, 4u);
    EXPECT_FALSE(p.v);
    EXPECT_EQ(p.gates, "");
}

// A list flag: one comma-separated value, or the flag repeated (the values joined with ',').
TEST(GameFlags, AListFlagMayBeRepeated)
{
    EXPECT_EQ(parse_flags({"--listen", "h:1", "--gate", "a:1,b:2"}).gates, "a:1,b:2");
    EXPECT_EQ(
        parse_flags({"--listen", "h:1", "--gate", "a:1", "--gate=b:2", "--gate", "c:3"}).gates,
        "a:1,b:2,c:3");
    // A plain string flag given twice keeps the last value.
    EXPECT_EQ(parse_flags({"--listen", "h:1", "--listen", "h:2"}).listen, "h:2");
}

TEST(GameFlagsDeathTest, BadCommandLinesExitOneWithAClearLine)
{
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_EXIT(parse_flags({"--listen", "h:1", "--bogus", "1"}), testing::ExitedWithCode(1),
                "unknown flag '--bogus'");
    EXPECT_EXIT(parse_flags({}), testing::ExitedWithCode(1), "missing required flag '--listen'");
    EXPECT_EXIT(parse_flags({"--listen", "h:1", "--threads", "-2"}), testing::ExitedWithCode(1),
                "is not a non-negative integer");
    EXPECT_EXIT(parse_flags({"--listen", "h:1", "--threads", "4x"}), testing::ExitedWithCode(1),
                "is not a non-negative integer");
    EXPECT_EXIT(parse_flags({"--listen"}), testing::ExitedWithCode(1), "needs a value");
    EXPECT_EXIT(parse_flags({"--listen", "h:1", "--ws=1"}), testing::ExitedWithCode(1),
                "takes no value");
    EXPECT_EXIT(parse_flags({"stray"}), testing::ExitedWithCode(1), "unexpected argument");
    EXPECT_EXIT(parse_flags({"--help"}), testing::ExitedWithCode(0), "");
}
