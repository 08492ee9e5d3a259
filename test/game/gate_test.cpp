// SPDX-License-Identifier: MIT
// coho-gate end to end: the gateway runs as a process (started here on 127.0.0.1, ports read
// from its "listening ..." lines), logic nodes are fakes in this process speaking node.hpp over
// a socket_ext listen pool, clients are plain blocking sockets (and python3-websockets).
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <coho.hpp>
#include <coho/socket_ext.hpp>

#include "bytes.hpp"
#include "node.hpp"
#include "rendezvous.hpp"
#include "scene_call.hpp"
#include "test/game/gate_harness.hpp"
#include "token.hpp"
#include "wire.hpp"

namespace {

using namespace coho::game;

using namespace coho_test::gate_harness;

// ---- a fake logic node -----------------------------------------------------------------------
//
// Routes: 1 echo; 2 push.self (k u32: k pushes of i u32 to the caller, after the answer);
// 20 join (payload: group name); 21 say (payload: name_len u16 | name | text: a group push on
// route 21); 3 push.all (payload pushed to everyone on route 3); 98 answers status 5; 99 never
// answers. LOAD answers load_status.
class FakeNode {
public:
    explicit FakeNode(int port = 0) : want_port_(port)
    {
        th_ = std::thread([this] { run(); });
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [this] { return port_ != 0 || failed_; });
    }
    ~FakeNode() { stop(); }

    void stop()
    {
        if (th_.joinable()) {
            stop_.try_send(1);
            th_.join();
        }
    }
    int port() const { return port_; }
    std::string addr() const { return "127.0.0.1:" + std::to_string(port_); }

    std::atomic<uint32_t> load_status{0};
    std::atomic<int> hellos{0}, loads{0}, calls{0};

    std::vector<std::pair<uint64_t, uint64_t>> ended()
    {
        std::lock_guard<std::mutex> g(mu_);
        return ended_;
    }
    std::set<uint64_t> loaded_uids()
    {
        std::lock_guard<std::mutex> g(mu_);
        return loaded_;
    }

private:
    void push(const coho::tdp::Request &rq, uint32_t type, uint32_t arg, const std::string &b)
    {
        std::string f = node::frame(type, 0, arg, b);
        coho_tdp_send(rq.native_handle()->pool, rq.conn_id(), 0, f.data(), f.size());
    }

    void on_req(coho::tdp::Request rq)
    {
        std::string whole = rq.frame();
        node::Header h;
        std::string_view body;
        if (!node::parse(whole, &h, &body))
            return;
        auto reply = [&](uint32_t status, std::string_view payload) {
            rq.reply(node::frame(h.type | node::kResponseBit, h.seq, status, payload));
        };
        Reader r(body);
        uint64_t uid = r.u64(), session = r.u64();
        std::string payload(r.rest());
        switch (h.type) {
        case node::HELLO:
            hellos++;
            return reply(0, {});
        case node::LOAD: {
            loads++;
            std::lock_guard<std::mutex> g(mu_);
            loaded_.insert(uid);
        }
            return reply(load_status.load(), {});
        case node::SESSION_END: {
            std::lock_guard<std::mutex> g(mu_);
            ended_.emplace_back(uid, session);
        }
            return reply(0, {});
        case node::CALL:
            break;
        default:
            return reply(7, {});
        }
        calls++;
        switch (h.arg) {
        case 1:
            return reply(0, payload);
        case 2: {
            uint32_t k = payload.size() >= 4 ? get_u32((const unsigned char *)payload.data()) : 0;
            reply(0, {});
            for (uint32_t i = 1; i <= k; i++) {
                std::string b;
                put_u32(b, 1);
                put_u64(b, uid);
                put_u32(b, i);
                push(rq, node::PUSH_UIDS, 2, b);
            }
            return;
        }
        case 3:
            push(rq, node::PUSH_ALL, 3, payload);
            return reply(0, {});
        case 20:
            push(rq, node::GROUP_JOIN, 0, node::uid_group(uid, payload));
            return reply(0, {});
        case 21: {
            push(rq, node::PUSH_GROUP, 21, payload);
            return reply(0, {});
        }
        case 98:
            return reply(wire::UNKNOWN_ROUTE, {});
        case 99:
            held_.push_back(std::move(rq)); // never answered
            return;
        default:
            return reply(wire::UNKNOWN_ROUTE, {});
        }
    }

    void run()
    {
        coho::Scheduler s;
        s.spawn([this] {
            coho::tdp::Pool pool;
            try {
                pool = coho::tdp::Pool::listen(
                    "127.0.0.1", uint16_t(want_port_),
                    [this](coho::tdp::Request rq) { on_req(std::move(rq)); });
            } catch (...) {
                std::lock_guard<std::mutex> g(mu_);
                failed_ = true;
                cv_.notify_all();
                return;
            }
            {
                std::lock_guard<std::mutex> g(mu_);
                port_ = pool.local_port();
                cv_.notify_all();
            }
            stop_.recv();
            held_.clear();
            pool.close();
        });
        s.run();
    }

    int want_port_ = 0;
    std::thread th_;
    std::mutex mu_;
    std::condition_variable cv_;
    int port_ = 0;
    bool failed_ = false;
    coho::Channel<int> stop_{1};
    std::vector<coho::tdp::Request> held_;
    std::vector<std::pair<uint64_t, uint64_t>> ended_;
    std::set<uint64_t> loaded_;
};

std::string u32s(uint32_t v)
{
    std::string b;
    put_u32(b, v);
    return b;
}
std::string group_say(const std::string &name, const std::string &text)
{
    std::string b;
    put_u16(b, uint16_t(name.size()));
    return b + name + text;
}

// GET `path` from the admin port: the whole response, status line to body.
std::string admin_response(int port, const std::string &path)
{
    Client c(port);
    c.send_raw("GET " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    std::string all;
    char ch;
    while (c.recv_exact(&ch, 1)) // until the gateway closes
        all += ch;
    return all;
}

// GET `path` from the admin port: the body.
std::string admin_get(int port, const std::string &path)
{
    std::string all = admin_response(port, path);
    auto at = all.find("\r\n\r\n");
    return at == std::string::npos ? std::string() : all.substr(at + 4);
}

uint64_t stat_of(int admin_port, const std::string &name)
{
    std::string body = admin_get(admin_port, "/stats");
    auto at = body.find("\"" + name + "\":");
    if (at == std::string::npos)
        return ~0ull;
    return std::stoull(body.substr(at + name.size() + 3));
}

// The value of the /metrics sample `series` (name and labels exactly), or -1.
double metric(int admin_port, const std::string &series)
{
    std::string m = admin_get(admin_port, "/metrics");
    auto at = m.find("\n" + series + " ");
    return at == std::string::npos ? -1 : std::stod(m.substr(at + series.size() + 2));
}

bool is_kick(const std::optional<Frame> &f, uint32_t reason)
{
    return f && f->type == wire::KICK && f->seq == 0 && f->status() == reason;
}

} // namespace

// ---- command line ----------------------------------------------------------------------------

int run_gate(const std::vector<std::string> &args, std::string *err)
{
    std::string cmd = std::string(COHO_GATE_BIN);
    for (auto &a : args)
        cmd += " '" + a + "'";
    cmd += " 2>&1";
    FILE *p = popen(cmd.c_str(), "r");
    if (p == nullptr)
        return -1;
    char buf[512];
    while (fgets(buf, sizeof(buf), p) != nullptr)
        *err += buf;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

TEST(Gate, HelpPrintsUsageAndBadFlagsExit1)
{
    std::string out;
    EXPECT_EQ(run_gate({"--help"}, &out), 0);
    EXPECT_NE(out.find("--logic HOST:PORT"), std::string::npos) << out;
    out.clear();
    EXPECT_EQ(
        run_gate({"--listen", "127.0.0.1:0", "--secret", "s", "--logic", "x:1", "--bogus"}, &out),
        1);
    EXPECT_NE(out.find("unknown flag '--bogus'"), std::string::npos) << out;
    out.clear();
    EXPECT_EQ(run_gate({"--listen", "127.0.0.1:0", "--secret", "s"}, &out), 1);
    EXPECT_NE(out.find("missing required flag '--logic'"), std::string::npos) << out;
    out.clear();
    EXPECT_EQ(run_gate({"--listen", "nowhere", "--secret", "s", "--logic", "x:1"}, &out), 1);
    EXPECT_NE(out.find("is not HOST:PORT"), std::string::npos) << out;
    out.clear();
    EXPECT_EQ(
        run_gate({"--listen", "127.0.0.1:0", "--secret", "s", "--logic", "x:1", "--threads", "0"},
                 &out),
        1);
    EXPECT_NE(out.find("--threads"), std::string::npos) << out;
}

// ---- login -----------------------------------------------------------------------------------

TEST(Gate, LoginChecksTheTokenAndCallBeforeLoginIsStatus2)
{
    FakeNode node;
    GateProc gate(GateProc::args({node.addr()}, {"--heartbeat-ms", "7000"}));
    ASSERT_GT(gate.tcp, 0);
    Client c(gate.tcp);
    ASSERT_TRUE(c.ok());
    auto f = c.call(1, "early");
    ASSERT_TRUE(f);
    EXPECT_EQ(f->type, wire::CALL | wire::kResponse);
    EXPECT_EQ(f->body, u32s(wire::UNKNOWN_SESSION)); // the status alone
    EXPECT_EQ(c.login(42, "0123"), wire::BAD_TOKEN);
    EXPECT_EQ(c.login(42, login_token(kSecret, 43)), wire::BAD_TOKEN);
    EXPECT_EQ(c.login(42, login_token("other secret", 42)), wire::BAD_TOKEN);
    // A failed LOGIN leaves the connection open for another try.
    EXPECT_EQ(c.login(42), wire::OK);
    EXPECT_NE(c.session, 0u);
    EXPECT_EQ(c.key.size(), 16u);
    EXPECT_EQ(c.heartbeat_ms, 7000u);
    EXPECT_EQ(node.loaded_uids(), std::set<uint64_t>{42});
    f = c.call(1, "now");
    ASSERT_TRUE(f);
    EXPECT_EQ(f->body, u32s(0) + "now");
    // A second LOGIN on a logged-in connection is a protocol error.
    ASSERT_TRUE(c.send(wire::LOGIN, 9, wire::login_body(42, login_token(kSecret, 42))));
    EXPECT_TRUE(is_kick(c.read(), wire::KICK_PROTOCOL));
    EXPECT_TRUE(c.closed());
}

TEST(Gate, LoginFailsWithTheNodesStatus)
{
    FakeNode node;
    node.load_status = wire::SERVER_ERROR;
    GateProc gate(GateProc::args({node.addr()}));
    ASSERT_GT(gate.tcp, 0);
    Client c(gate.tcp);
    EXPECT_EQ(c.login(5), wire::SERVER_ERROR);
    node.load_status = 0;
    EXPECT_EQ(c.login(5), wire::OK);
}

TEST(Gate, DuplicateLoginKicksTheOldSession)
{
    FakeNode node;
    GateProc gate(GateProc::args({node.addr()}));
    ASSERT_GT(gate.tcp, 0);
    Client a(gate.tcp), b(gate.tcp);
    ASSERT_EQ(a.login(7), wire::OK);
    uint64_t first = a.session;
    ASSERT_EQ(b.login(7), wire::OK);
    EXPECT_NE(b.session, first);
    EXPECT_TRUE(is_kick(a.read(), wire::KICK_ELSEWHERE));
    EXPECT_TRUE(a.closed());
    auto f = b.call(1, "still here");
    ASSERT_TRUE(f);
    EXPECT_EQ(f->body, u32s(0) + "still here");
    int64_t end = now_ms() + 5000;
    while (node.ended().empty() && now_ms() < end)
        usleep(10000);
    EXPECT_EQ(node.ended(), (std::vector<std::pair<uint64_t, uint64_t>>{{7, first}}));
    EXPECT_EQ(stat_of(gate.admin, "kicks_total"), ~0ull); // kicks are by reason, below
    std::string metrics = admin_get(gate.admin, "/metrics");
    EXPECT_NE(metrics.find("coho_gate_kicks_total{reason=\"elsewhere\"} 1"), std::string::npos)
        << metrics;
}

TEST(Gate, LogoutAnswersEndsTheSessionAndCloses)
{
    FakeNode node;
    GateProc gate(GateProc::args({node.addr()}));
    ASSERT_GT(gate.tcp, 0);
    Client c(gate.tcp);
    ASSERT_EQ(c.login(11), wire::OK);
    ASSERT_TRUE(c.send(wire::LOGOUT, 3));
    auto f = c.read();
    ASSERT_TRUE(f);
    EXPECT_EQ(f->type, wire::LOGOUT | wire::kResponse);
    EXPECT_EQ(f->seq, 3u);
    EXPECT_TRUE(f->body.empty());
    EXPECT_TRUE(c.closed()); // no KICK
    int64_t end = now_ms() + 5000;
    while (node.ended().empty() && now_ms() < end)
        usleep(10000);
    EXPECT_EQ(node.ended(), (std::vector<std::pair<uint64_t, uint64_t>>{{11, c.session}}));
}

// ---- heartbeats and idle -----------------------------------------------------------------------

TEST(Gate, PingsKeepAConnectionAliveAndSilenceGetsKick1)
{
    FakeNode node;
    GateProc gate(GateProc::args({node.addr()}, {"--idle-ms", "800"}));
    ASSERT_GT(gate.tcp, 0);
    Client pinger(gate.tcp), silent(gate.tcp);
    int64_t start = now_ms();
    for (uint32_t i = 0; i < 10; i++) { // 2 s, well past the idle time
        ASSERT_TRUE(pinger.send(wire::PING, i));
        auto f = pinger.read();
        ASSERT_TRUE(f);
        EXPECT_EQ(f->type, wire::PING | wire::kResponse);
        EXPECT_EQ(f->seq, i);
        usleep(200000);
    }
    auto k = silent.read();
    int64_t took = now_ms() - start;
    EXPECT_TRUE(is_kick(k, wire::KICK_IDLE));
    EXPECT_TRUE(silent.closed());
    EXPECT_GE(took, 700);
    EXPECT_LE(took, 4000);
    ASSERT_TRUE(pinger.send(wire::PING, 99));
    auto f = pinger.read();
    ASSERT_TRUE(f);
    EXPECT_EQ(f->seq, 99u);
}

// ---- calls -------------------------------------------------------------------------------------

TEST(Gate, CallsAreRoutedAndRepliesKeepTheirSeq)
{
    FakeNode node;
    GateProc gate(GateProc::args({node.addr()}));
    ASSERT_GT(gate.tcp, 0);
    Client c(gate.tcp);
    ASSERT_EQ(c.login(3), wire::OK);
    // Pipelined: every answer carries its request's seq (0 included), in any order.
    std::map<uint32_t, std::string> want;
    for (uint32_t seq : {0u, 1u, 2u, 77u, 0xfffffffeu, 5u, 6u, 1000u}) {
        std::string p = "payload-" + std::to_string(seq);
        want[seq] = u32s(0) + p;
        ASSERT_TRUE(c.send(wire::CALL, seq, wire::call_body(1, p)));
    }
    std::map<uint32_t, std::string> got;
    for (size_t i = 0; i < want.size(); i++) {
        auto f = c.read();
        ASSERT_TRUE(f);
        EXPECT_EQ(f->type, wire::CALL | wire::kResponse);
        got[f->seq] = f->body;
    }
    EXPECT_EQ(got, want);
    auto f = c.call(98, "x", 12);
    ASSERT_TRUE(f);
    EXPECT_EQ(f->seq, 12u);
    EXPECT_EQ(f->body, u32s(wire::UNKNOWN_ROUTE));
    EXPECT_EQ(stat_of(gate.admin, "calls_total"), 9u);
    // Per route, with the routes the node does not know under "other".
    std::string m = admin_get(gate.admin, "/metrics");
    for (const char *line : {"coho_gate_route_calls_total{route=\"1\"} 8",
                             "coho_gate_route_calls_total{route=\"other\"} 1",
                             "coho_gate_route_errors_total{route=\"1\"} 0",
                             "coho_gate_route_latency_seconds_bucket{route=\"1\",le=\"+Inf\"} 8",
                             "coho_gate_route_latency_seconds_count{route=\"other\"} 1"})
        EXPECT_NE(m.find(line), std::string::npos) << line << "\n" << m;

    // Per connection ("conns" of /stats): this one (uid 3) read 10 frames (LOGIN, 9 CALLs) and
    // sent 10 answers.
    std::string conns = admin_get(gate.admin, "/stats");
    EXPECT_NE(conns.find("\"conns\":{\"open\":1,"), std::string::npos) << conns;
    EXPECT_NE(conns.find("\"uid\":3,"), std::string::npos) << conns;
    EXPECT_NE(conns.find("\"frames_in\":10,"), std::string::npos) << conns;
    EXPECT_NE(conns.find("\"frames_out\":10,"), std::string::npos) << conns;
    EXPECT_NE(conns.find("\"peer\":\"127.0.0.1:"), std::string::npos) << conns;

    // Prometheus' own checker, where it is installed.
    if (access("/usr/bin/promtool", X_OK) == 0) {
        FILE *p = popen("/usr/bin/promtool check metrics > /dev/null 2>&1", "w");
        ASSERT_NE(p, nullptr);
        fwrite(m.data(), 1, m.size(), p);
        int st = pclose(p);
        EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << m;
    }
}

TEST(Gate, TwoNodesShareTheUidsByRendezvousHashing)
{
    FakeNode a, b;
    GateProc gate(GateProc::args({a.addr(), b.addr()}));
    ASSERT_GT(gate.tcp, 0);
    std::vector<uint64_t> hashes = {fnv1a(a.addr()), fnv1a(b.addr())};
    std::set<uint64_t> want_a, want_b;
    std::vector<std::unique_ptr<Client>> clients;
    for (uint64_t uid = 100; uid < 130; uid++) {
        (rendezvous_pick(hashes, {true, true}, uid) == 0 ? want_a : want_b).insert(uid);
        clients.push_back(std::make_unique<Client>(gate.tcp));
        ASSERT_EQ(clients.back()->login(uid), wire::OK);
    }
    EXPECT_EQ(a.loaded_uids(), want_a);
    EXPECT_EQ(b.loaded_uids(), want_b);
    EXPECT_FALSE(want_a.empty());
    EXPECT_FALSE(want_b.empty());
}

TEST(Gate, SilentNodeTimesOutWithStatus4AndDownNodeFailsWithStatus3)
{
    FakeNode node;
    GateProc gate(GateProc::args({node.addr()}, {"--call-timeout-ms", "500"}));
    ASSERT_GT(gate.tcp, 0);
    Client c(gate.tcp);
    ASSERT_EQ(c.login(9), wire::OK);
    int64_t t0 = now_ms();
    auto f = c.call(99, "never answered", 4);
    ASSERT_TRUE(f);
    EXPECT_EQ(f->seq, 4u);
    EXPECT_EQ(f->body, u32s(wire::TIMEOUT));
    EXPECT_GE(now_ms() - t0, 450);
    EXPECT_LE(now_ms() - t0, 4000);

    // A call in flight when the node goes down fails at once, and so does every later one.
    ASSERT_TRUE(c.send(wire::CALL, 5, wire::call_body(99, "in flight")));
    usleep(100000);
    t0 = now_ms();
    node.stop();
    f = c.reply();
    ASSERT_TRUE(f);
    EXPECT_EQ(f->seq, 5u);
    EXPECT_EQ(f->body, u32s(wire::NO_NODE));
    EXPECT_LE(now_ms() - t0, 2000);
    f = c.call(1, "x", 6);
    ASSERT_TRUE(f);
    EXPECT_EQ(f->body, u32s(wire::NO_NODE));
    Client late(gate.tcp);
    EXPECT_EQ(late.login(10), wire::NO_NODE);
}

// Under overload nearly every call is slow: each is counted, but the log gets at most 10 lines
// a second per thread (a line each would be a write per call on the shard's thread), and the
// first slow call of a later second says how many lines were left out.
TEST(Gate, SlowCallsAreLoggedAtMostTenLinesASecond)
{
    FakeNode node;
    std::string dir;
    {
        char tmpl[] = "/tmp/coho-gate-test-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir = tmpl;
    }
    const std::string log_path = dir + "/gate.log";
    int64_t took_s = 0;
    {
        GateProc gate(
            GateProc::args({node.addr()}, {"--call-timeout-ms", "60", "--log", log_path}));
        ASSERT_GT(gate.tcp, 0);
        Client c(gate.tcp);
        ASSERT_EQ(c.login(9), wire::OK);
        int64_t t0 = now_ms();
        // 150 calls the node never answers: each times out after 60 ms, a slow call.
        auto burst = [&c](uint32_t first) {
            for (uint32_t i = 0; i < 150; i++)
                ASSERT_TRUE(c.send(wire::CALL, first + i, wire::call_body(99, "never answered")));
            for (int i = 0; i < 150; i++) {
                auto f = c.reply();
                ASSERT_TRUE(f);
                EXPECT_EQ(f->body, u32s(wire::TIMEOUT));
            }
        };
        burst(100);
        usleep(1100000); // the second burst starts in a later second
        burst(1000);
        took_s = (now_ms() - t0) / 1000 + 1;
        EXPECT_EQ(gate.stop(), 0);
    }
    std::ifstream in(log_path);
    std::string line;
    uint64_t slow_lines = 0, left_out_lines = 0, left_out = 0;
    while (std::getline(in, line)) {
        if (line.find("gate: slow call: route 99") != std::string::npos)
            slow_lines++;
        size_t at = line.find("gate: ");
        if (line.find("more slow calls not logged") != std::string::npos &&
            at != std::string::npos) {
            left_out_lines++;
            left_out += std::strtoull(line.c_str() + at + 6, nullptr, 10);
        }
    }
    unlink(log_path.c_str());
    rmdir(dir.c_str());
    EXPECT_GE(slow_lines, 10u); // the first ten of the first second at least
    EXPECT_LE(slow_lines, uint64_t(10 * (took_s + 1))) << "over " << took_s << " s";
    EXPECT_GE(left_out_lines, 1u);
    EXPECT_GT(left_out, 0u);
    EXPECT_LE(slow_lines + left_out, 300u);
}

TEST(Gate, CallsMoveToTheOtherNodeWhileTheOwnerIsDownAndBackWhenItReturns)
{
    auto a = std::make_unique<FakeNode>();
    FakeNode b;
    int a_port = a->port();
    std::string a_addr = a->addr();
    GateProc gate(GateProc::args({a_addr, b.addr()}));
    ASSERT_GT(gate.tcp, 0);
    std::vector<uint64_t> hashes = {fnv1a(a_addr), fnv1a(b.addr())};
    uint64_t uid = 1;
    while (rendezvous_pick(hashes, {true, true}, uid) != 0)
        uid++; // a uid that node a owns
    Client c(gate.tcp);
    ASSERT_EQ(c.login(uid), wire::OK);
    ASSERT_EQ(c.call(1, "x")->body, u32s(0) + "x");
    EXPECT_EQ(a->calls.load(), 1);

    a.reset(); // node a goes down: its uids hash to b
    int64_t end = now_ms() + 5000;
    uint32_t st = ~0u;
    while (st != 0 && now_ms() < end) {
        auto f = c.call(1, "moved");
        ASSERT_TRUE(f);
        st = f->status(); // status 3 at most while the gateway notices
        EXPECT_TRUE(st == 0 || st == wire::NO_NODE) << st;
    }
    EXPECT_EQ(st, 0u);
    EXPECT_GE(b.calls.load(), 1);

    FakeNode back(a_port); // the same address: the links reconnect, a owns the uid again
    ASSERT_EQ(back.port(), a_port);
    end = now_ms() + 10000;
    while (back.calls.load() == 0 && now_ms() < end) {
        ASSERT_EQ(c.call(1, "home")->status(), 0u);
        usleep(50000);
    }
    EXPECT_GE(back.calls.load(), 1);
    EXPECT_GE(back.hellos.load(), 1);
}

// Scene calls (routes 30-32) go to the scene's node, by rendezvous on scene_key(scene id); a
// payload without a valid scene id never leaves the gateway.
TEST(Gate, SceneCallsGoToTheScenesNodeAndNeedASceneId)
{
    FakeNode a, b;
    GateProc gate(GateProc::args({a.addr(), b.addr()}));
    ASSERT_GT(gate.tcp, 0);
    std::vector<uint64_t> hashes = {fnv1a(a.addr()), fnv1a(b.addr())};
    uint64_t uid = 1;
    while (rendezvous_pick(hashes, {true, true}, uid) != 0)
        uid++; // node a owns the uid
    uint32_t scene = 1;
    while (rendezvous_pick(hashes, {true, true}, scene_key(scene)) != 1)
        scene++; // node b owns the scene
    Client c(gate.tcp);
    ASSERT_EQ(c.login(uid), wire::OK);
    const int a0 = a.calls.load();
    for (uint16_t route : {wire::R_SCENE_ENTER, wire::R_SCENE_MOVE, wire::R_SCENE_LEAVE}) {
        // field 1 (scene), then a field 2 of 2 bytes: routed by the scene, whatever follows
        std::string p = scene_payload(scene, std::string("\x08\x02", 2), true);
        auto f = c.call(route, p);
        ASSERT_TRUE(f);
        EXPECT_EQ(f->status(), wire::UNKNOWN_ROUTE) << "the fake node answers scene routes 5";
    }
    EXPECT_EQ(b.calls.load(), 3);
    EXPECT_EQ(a.calls.load(), a0);
    // Other calls stay on the uid's node.
    ASSERT_EQ(c.call(1, "x")->status(), wire::OK);
    EXPECT_EQ(a.calls.load(), a0 + 1);

    const std::vector<std::string> bad = {
        "",                            // no field 1
        std::string("\x08\x00", 2),    // scene 0
        "\x08",                        // a truncated varint
        "\x0a\x01z",                   // field 1 as bytes
        "\x08\x80\x80\x80\x80\x10",    // 2^32: wider than uint32
        "\x12\x05zz",                  // a field longer than the payload
        std::string("\x08\x01\x0b", 3) // a group after the id
    };
    for (const std::string &p : bad) {
        auto f = c.call(wire::R_SCENE_MOVE, p);
        ASSERT_TRUE(f);
        EXPECT_EQ(f->status(), wire::BAD_PAYLOAD) << "payload of " << p.size() << " bytes";
    }
    EXPECT_EQ(a.calls.load() + b.calls.load(), a0 + 1 + 3) << "a bad scene call reached a node";
    EXPECT_EQ(metric(gate.admin, "coho_gate_scene_bad_calls_total"), double(bad.size()));
    EXPECT_EQ(metric(gate.admin, "coho_gate_route_errors_total{route=\"31\"}"), double(bad.size()));
}

// ---- pushes ------------------------------------------------------------------------------------

TEST(Gate, PushesArriveInOrderWithTheSessionsSeq)
{
    FakeNode node;
    GateProc gate(GateProc::args({node.addr()}));
    ASSERT_GT(gate.tcp, 0);
    Client c(gate.tcp);
    ASSERT_EQ(c.login(21), wire::OK);
    auto f = c.call(2, u32s(100));
    ASSERT_TRUE(f);
    EXPECT_EQ(f->body, u32s(0));
    // The node answered, then pushed on the same link: the answer comes first.
    EXPECT_TRUE(c.pushes.empty());
    while (c.pushes.size() < 100) {
        auto p = c.read();
        ASSERT_TRUE(p);
        ASSERT_EQ(p->type, wire::PUSH);
        c.pushes.push_back(*p);
    }
    for (uint32_t i = 0; i < 100; i++) {
        EXPECT_EQ(c.pushes[i].seq, i + 1);
        std::string b;
        put_u16(b, 2);
        EXPECT_EQ(c.pushes[i].body, b + u32s(i + 1));
    }
    // The next batch continues the session's sequence.
    ASSERT_TRUE(c.call(2, u32s(3)));
    while (c.pushes.size() < 103) {
        auto p = c.read();
        ASSERT_TRUE(p);
        c.pushes.push_back(*p);
    }
    EXPECT_EQ(c.pushes[102].seq, 103u);
}

TEST(Gate, GroupPushReachesEveryMemberAndNoOneElse)
{
    FakeNode node;
    GateProc gate(GateProc::args({node.addr()}));
    ASSERT_GT(gate.tcp, 0);
    std::vector<std::unique_ptr<Client>> members;
    for (uint64_t uid = 1; uid <= 4; uid++) {
        members.push_back(std::make_unique<Client>(gate.tcp));
        ASSERT_EQ(members.back()->login(uid), wire::OK);
        auto f = members.back()->call(20, "room");
        ASSERT_TRUE(f);
        EXPECT_EQ(f->body, u32s(0));
    }
    Client outsider(gate.tcp);
    ASSERT_EQ(outsider.login(50), wire::OK);
    ASSERT_TRUE(outsider.call(20, "other room"));
    ASSERT_TRUE(members[0]->call(21, group_say("room", "hello all")));
    std::string want;
    put_u16(want, 21);
    want += "hello all";
    for (auto &m : members) {
        while (m->pushes.empty()) {
            auto p = m->read();
            ASSERT_TRUE(p);
            if (p->type == wire::PUSH)
                m->pushes.push_back(*p);
        }
        EXPECT_EQ(m->pushes[0].seq, 1u);
        EXPECT_EQ(m->pushes[0].body, want);
    }
    // The outsider got nothing: its next frame is the answer to its ping.
    ASSERT_TRUE(outsider.send(wire::PING, 5));
    auto f = outsider.read();
    ASSERT_TRUE(f);
    EXPECT_EQ(f->type, wire::PING | wire::kResponse);
    // PUSH_ALL reaches everyone.
    ASSERT_TRUE(outsider.call(3, "to all"));
    for (auto &m : members) {
        auto p = m->read();
        ASSERT_TRUE(p);
        EXPECT_EQ(p->type, wire::PUSH);
        EXPECT_EQ(p->seq, 2u);
    }
}

// ---- bad input ---------------------------------------------------------------------------------

TEST(Gate, MalformedFramesCloseOnlyThatClientAndAreCounted)
{
    FakeNode node;
    GateProc gate(GateProc::args({node.addr()}));
    ASSERT_GT(gate.tcp, 0);
    Client good(gate.tcp);
    ASSERT_EQ(good.login(1), wire::OK);

    std::string short_len;
    put_u32(short_len, 4);
    short_len += "abcd";
    std::vector<std::string> bad = {
        short_len,                                     // len below 8
        wire::frame(99, 1),                            // unknown type
        wire::frame(wire::PUSH, 1, "xx"),              // a type only the gateway sends
        wire::frame(wire::KICK, 1, u32s(1)),           // likewise
        wire::frame(wire::LOGIN | wire::kResponse, 1), // a response
        wire::frame(wire::LOGIN, 1, "short"),          // body shorter than its fields
        wire::frame(wire::CALL, 1, "x"),               // no route
        wire::frame(wire::REBIND, 1, "x"),             // body shorter than its fields
    };
    for (const std::string &b : bad) {
        Client c(gate.tcp);
        ASSERT_TRUE(c.send_raw(b));
        EXPECT_TRUE(is_kick(c.read(), wire::KICK_PROTOCOL)) << b.size();
        EXPECT_TRUE(c.closed());
    }
    auto f = good.call(1, "unharmed");
    ASSERT_TRUE(f);
    EXPECT_EQ(f->body, u32s(0) + "unharmed");
    EXPECT_EQ(stat_of(gate.admin, "protocol_errors_total"), bad.size());
}

TEST(Gate, OversizeFrameIsKick4AndTheLargestFrameIsFine)
{
    FakeNode node;
    GateProc gate(GateProc::args({node.addr()}, {"--max-frame", "1024"}));
    ASSERT_GT(gate.tcp, 0);
    Client c(gate.tcp);
    ASSERT_EQ(c.login(2), wire::OK);
    std::string payload(1024 - 8 - 2, 'p'); // len == 1024 exactly
    auto f = c.call(1, payload);
    ASSERT_TRUE(f);
    EXPECT_EQ(f->body, u32s(0) + payload);
    std::string big;
    put_u32(big, 1025);
    put_u16(big, wire::CALL);
    put_u16(big, 0);
    put_u32(big, 1);
    ASSERT_TRUE(c.send_raw(big)); // the header alone: refused before the body
    EXPECT_TRUE(is_kick(c.read(), wire::KICK_PROTOCOL));
    EXPECT_TRUE(c.closed());
}

TEST(Gate, MaxConnsRefusesWithKick7)
{
    FakeNode node;
    GateProc gate(GateProc::args({node.addr()}, {"--max-conns", "2"}));
    ASSERT_GT(gate.tcp, 0);
    Client a(gate.tcp), b(gate.tcp);
    ASSERT_EQ(a.login(1), wire::OK);
    ASSERT_EQ(b.login(2), wire::OK);
    Client c(gate.tcp);
    EXPECT_TRUE(is_kick(c.read(), wire::KICK_DENIED));
    EXPECT_TRUE(c.closed());
    a.drop();
    int64_t end = now_ms() + 5000;
    bool admitted = false;
    while (!admitted && now_ms() < end) {
        Client d(gate.tcp);
        admitted = d.login(4) == wire::OK;
        if (!admitted)
            usleep(20000);
    }
    EXPECT_TRUE(admitted);
}

// A file in a fresh temporary directory, removed with it.
struct TempFile {
    std::string dir, path;
    TempFile()
    {
        char tmpl[] = "/tmp/coho-gate-test-XXXXXX";
        dir = mkdtemp(tmpl) ? tmpl : "";
        path = dir + "/list";
    }
    ~TempFile()
    {
        unlink(path.c_str());
        rmdir(dir.c_str());
    }
    void write(const std::string &text)
    {
        FILE *f = fopen(path.c_str(), "w");
        if (f) {
            fputs(text.c_str(), f);
            fclose(f);
        }
    }
};

TEST(Gate, DenyAndAllowListsRefuseWithKick7AndReloadOnSighup)
{
    FakeNode node;
    TempFile deny, allow;
    deny.write("# loopback is denied\n10.1.2.3\n127.0.0.0/8\n");
    allow.write("::/0\n0.0.0.0/0\n");
    GateProc gate(GateProc::args({node.addr()}, {"--deny", deny.path, "--allow", allow.path}));
    ASSERT_GT(gate.tcp, 0);
    {
        Client c(gate.tcp);
        EXPECT_TRUE(is_kick(c.read(), wire::KICK_DENIED));
        EXPECT_TRUE(c.closed());
    }
    deny.write("10.1.2.3\n");
    allow.write("10.0.0.0/8 # not us\n");
    gate.signal(SIGHUP);
    usleep(300000);
    {
        Client c(gate.tcp);
        EXPECT_TRUE(is_kick(c.read(), wire::KICK_DENIED));
    }
    allow.write("127.0.0.1/32\n");
    gate.signal(SIGHUP);
    usleep(300000);
    Client ok(gate.tcp);
    EXPECT_EQ(ok.login(1), wire::OK);
    // A bad file on reload keeps the lists in force.
    allow.write("not-an-address\n");
    gate.signal(SIGHUP);
    usleep(300000);
    Client still(gate.tcp);
    EXPECT_EQ(still.login(2), wire::OK);
    EXPECT_EQ(stat_of(gate.admin, "connections_refused_total"), 2u);
    // At start a bad file is an error.
    std::string out;
    EXPECT_EQ(run_gate({"--listen", "127.0.0.1:0", "--secret", "s", "--logic", node.addr(),
                        "--deny", allow.path},
                       &out),
              1);
    EXPECT_NE(out.find("'not-an-address' is not an address or CIDR block"), std::string::npos)
        << out;
}

TEST(Gate, PerIpMaxRefusesWithKick7)
{
    FakeNode node;
    GateProc gate(GateProc::args({node.addr()}, {"--per-ip-max", "2"}));
    ASSERT_GT(gate.tcp, 0);
    Client a(gate.tcp), b(gate.tcp);
    ASSERT_EQ(a.login(1), wire::OK);
    ASSERT_EQ(b.login(2), wire::OK);
    Client c(gate.tcp);
    EXPECT_TRUE(is_kick(c.read(), wire::KICK_DENIED));
}

TEST(Gate, MaxConnsIsCappedByTheFdLimit)
{
    FakeNode node;
    // 200 fds, less 64 + 1 thread x (4 + 1 node x 2 links) kept for the gateway itself: 130.
    GateProc gate(GateProc::args({node.addr()}), 200);
    ASSERT_GT(gate.tcp, 0);
    std::vector<std::unique_ptr<Client>> cs;
    for (int i = 0; i < 130; i++) {
        cs.push_back(std::make_unique<Client>(gate.tcp));
        ASSERT_TRUE(cs.back()->send(wire::PING, uint32_t(i)));
        auto f = cs.back()->read();
        ASSERT_TRUE(f) << i;
        ASSERT_EQ(f->type, wire::PING | wire::kResponse) << i;
    }
    Client over(gate.tcp);
    EXPECT_TRUE(is_kick(over.read(), wire::KICK_DENIED));
}

TEST(Gate, RateLimitSendsKick6)
{
    FakeNode node;
    GateProc gate(GateProc::args({node.addr()}, {"--rate-limit", "20"}));
    ASSERT_GT(gate.tcp, 0);
    Client c(gate.tcp);
    std::string burst;
    for (uint32_t i = 0; i < 200; i++)
        burst += wire::frame(wire::PING, i);
    ASSERT_TRUE(c.send_raw(burst));
    std::optional<Frame> f;
    int pongs = 0;
    while ((f = c.read()) && f->type == (wire::PING | wire::kResponse))
        pongs++;
    EXPECT_TRUE(is_kick(f, wire::KICK_RATE));
    EXPECT_GE(pongs, 20);
    EXPECT_LT(pongs, 200);
}

TEST(Gate, SlowConsumerGetsKick3AfterEveryPushItWasSent)
{
    FakeNode node;
    GateProc gate(GateProc::args(
        {node.addr()}, {"--send-queue-bytes", "65536", "--sndbuf", "16384", "--idle-ms", "60000"}));
    ASSERT_GT(gate.tcp, 0);
    Client fast(gate.tcp);
    ASSERT_EQ(fast.login(2), wire::OK);
    Client slow(gate.tcp, 4096);
    ASSERT_EQ(slow.login(1), wire::OK);
    ASSERT_TRUE(slow.send(wire::CALL, 1, wire::call_body(2, u32s(200000))));
    // The pushes pile up while this client reads nothing, until the gateway gives up on it.
    const std::string kicked = "coho_gate_kicks_total{reason=\"slow\"}";
    int64_t end = now_ms() + 30000;
    while (metric(gate.admin, kicked) < 1 && now_ms() < end)
        usleep(20000);
    ASSERT_EQ(metric(gate.admin, kicked), 1);
    // What it reads: its pushes in order without a gap (the answer among them), then KICK 3.
    uint32_t next = 1;
    std::optional<Frame> f;
    while ((f = slow.read()) && f->type != wire::KICK) {
        if (f->type == wire::PUSH) {
            ASSERT_EQ(f->seq, next++);
        }
    }
    EXPECT_TRUE(is_kick(f, wire::KICK_SLOW));
    EXPECT_LT(next, 200000u);
    EXPECT_TRUE(slow.closed());
    // Nobody else noticed.
    auto r = fast.call(1, "fine");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->body, u32s(0) + "fine");
}

// ---- rebind ------------------------------------------------------------------------------------

TEST(Gate, RebindMovesTheSessionAndReplaysMissedPushes)
{
    FakeNode node;
    GateProc gate(GateProc::args({node.addr()}, {"--grace-ms", "10000"}));
    ASSERT_GT(gate.tcp, 0);
    auto a = std::make_unique<Client>(gate.tcp);
    ASSERT_EQ(a->login(31), wire::OK);
    ASSERT_TRUE(a->call(20, "g"));
    ASSERT_TRUE(a->call(2, u32s(5)));
    while (a->pushes.size() < 5) {
        auto p = a->read();
        ASSERT_TRUE(p);
        a->pushes.push_back(*p);
    }
    ASSERT_TRUE(a->send(wire::ACK, 0, u32s(2)));
    uint64_t session = a->session;
    std::string key = a->key;
    a->drop();

    // Pushes while the session has no connection wait in its replay cache.
    Client speaker(gate.tcp);
    ASSERT_EQ(speaker.login(32), wire::OK);
    for (int i = 0; i < 3; i++)
        ASSERT_TRUE(speaker.call(21, group_say("g", "missed " + std::to_string(i))));

    Client wrong(gate.tcp);
    ASSERT_TRUE(wrong.send(wire::REBIND, 1, wire::rebind_body(session, "0123456789abcdef", 5)));
    auto f = wrong.reply();
    ASSERT_TRUE(f);
    EXPECT_EQ(f->type, wire::REBIND | wire::kResponse);
    EXPECT_EQ(f->body, u32s(wire::UNKNOWN_SESSION));
    // Older than the cache (ACKed up to 2), and newer than the last push: refused too.
    ASSERT_TRUE(wrong.send(wire::REBIND, 2, wire::rebind_body(session, key, 1)));
    EXPECT_EQ(wrong.reply()->body, u32s(wire::UNKNOWN_SESSION));
    ASSERT_TRUE(wrong.send(wire::REBIND, 3, wire::rebind_body(session, key, 9)));
    EXPECT_EQ(wrong.reply()->body, u32s(wire::UNKNOWN_SESSION));

    Client b(gate.tcp);
    ASSERT_TRUE(b.send(wire::REBIND, 4, wire::rebind_body(session, key, 5)));
    f = b.read();
    ASSERT_TRUE(f);
    EXPECT_EQ(f->type, wire::REBIND | wire::kResponse);
    EXPECT_EQ(f->seq, 4u);
    ASSERT_EQ(f->body.size(), 20u);
    EXPECT_EQ(f->status(), 0u);
    std::string new_key = f->body.substr(4);
    EXPECT_NE(new_key, key);
    for (uint32_t seq = 6; seq <= 8; seq++) {
        auto p = b.read();
        ASSERT_TRUE(p);
        EXPECT_EQ(p->type, wire::PUSH);
        EXPECT_EQ(p->seq, seq);
        std::string want;
        put_u16(want, 21);
        EXPECT_EQ(p->body, want + "missed " + std::to_string(seq - 6));
    }
    // The session works on its new connection and keeps its sequence (a push may overtake
    // the answer of the call that caused it: they travel apart).
    f = b.call(2, u32s(1));
    ASSERT_TRUE(f);
    EXPECT_EQ(f->type, wire::CALL | wire::kResponse);
    if (b.pushes.empty()) {
        auto p = b.read();
        ASSERT_TRUE(p);
        b.pushes.push_back(*p);
    }
    EXPECT_EQ(b.pushes.at(0).seq, 9u);
    // The old key is spent; the new one moves the session again, kicking this connection.
    Client c(gate.tcp);
    ASSERT_TRUE(c.send(wire::REBIND, 1, wire::rebind_body(session, key, 9)));
    EXPECT_EQ(c.reply()->body, u32s(wire::UNKNOWN_SESSION));
    ASSERT_TRUE(c.send(wire::REBIND, 2, wire::rebind_body(session, new_key, 9)));
    f = c.reply();
    ASSERT_TRUE(f);
    EXPECT_EQ(f->status(), 0u);
    EXPECT_TRUE(is_kick(b.read(), wire::KICK_ELSEWHERE));
    EXPECT_EQ(node.loads.load(), 2); // no re-login
}

TEST(Gate, SessionEndsAfterItsGracePeriod)
{
    FakeNode node;
    GateProc gate(GateProc::args({node.addr()}, {"--grace-ms", "300"}));
    ASSERT_GT(gate.tcp, 0);
    auto a = std::make_unique<Client>(gate.tcp);
    ASSERT_EQ(a->login(41), wire::OK);
    uint64_t session = a->session;
    std::string key = a->key;
    a.reset();
    int64_t end = now_ms() + 5000;
    while (node.ended().empty() && now_ms() < end)
        usleep(10000);
    EXPECT_EQ(node.ended(), (std::vector<std::pair<uint64_t, uint64_t>>{{41, session}}));
    Client b(gate.tcp);
    ASSERT_TRUE(b.send(wire::REBIND, 1, wire::rebind_body(session, key, 0)));
    EXPECT_EQ(b.reply()->body, u32s(wire::UNKNOWN_SESSION));
}

// ---- threads, WebSocket, shutdown ------------------------------------------------------------

TEST(Gate, TwoThreadsServeClientsAndDeliverAcrossThreads)
{
    FakeNode node;
    GateProc gate(GateProc::args({node.addr()}, {"--threads", "2"}));
    ASSERT_GT(gate.tcp, 0);
    std::vector<std::unique_ptr<Client>> cs;
    for (uint64_t uid = 1; uid <= 24; uid++) {
        cs.push_back(std::make_unique<Client>(gate.tcp));
        ASSERT_EQ(cs.back()->login(uid), wire::OK);
        ASSERT_TRUE(cs.back()->call(20, "all"));
    }
    for (int round = 0; round < 3; round++)
        ASSERT_TRUE(cs[size_t(round)]->call(21, group_say("all", "r" + std::to_string(round))));
    for (auto &c : cs) {
        ASSERT_TRUE(c->call(2, u32s(5)));
        while (c->pushes.size() < 8) {
            auto p = c->read();
            ASSERT_TRUE(p);
            ASSERT_EQ(p->type, wire::PUSH);
            c->pushes.push_back(*p);
        }
        for (uint32_t i = 0; i < 8; i++)
            EXPECT_EQ(c->pushes[i].seq, i + 1);
    }
    EXPECT_EQ(stat_of(gate.admin, "logins_total"), 24u);
    // Both threads took connections (sampled each second); the heap and coroutines are reported.
    double s0 = 0, s1 = 0;
    int64_t end = now_ms() + 5000;
    while (s0 + s1 != 24 && now_ms() < end) {
        usleep(100000);
        s0 = metric(gate.admin, "coho_gate_shard_connections{shard=\"0\"}");
        s1 = metric(gate.admin, "coho_gate_shard_connections{shard=\"1\"}");
    }
    EXPECT_EQ(s0 + s1, 24);
    EXPECT_GT(s0, 0);
    EXPECT_GT(s1, 0);
    // Present (under ASan its allocator leaves mallinfo2 at 0).
    EXPECT_GE(metric(gate.admin, "coho_gate_heap_bytes"), 0);
    EXPECT_GT(metric(gate.admin, "coho_gate_shard_coroutines{shard=\"0\"}"), 0);
    // Socket buffer chunks: the 24 connections hold some; each thread's idle pool is reported.
    EXPECT_GT(metric(gate.admin, "coho_gate_cbuf_chunks"), 0);
    EXPECT_GE(metric(gate.admin, "coho_gate_cbuf_bytes"),
              metric(gate.admin, "coho_gate_cbuf_chunks"));
    EXPECT_GE(metric(gate.admin, "coho_gate_shard_cbuf_idle_bytes{shard=\"1\"}"), 0);
}

// --no-stats (the A/B switch of the stats-cost benchmark) skips the per-route series and the
// per-connection traffic; calls work and the gateway-wide counters still count.
TEST(Gate, NoStatsSkipsPerRouteAndPerConnectionAccounting)
{
    FakeNode node;
    GateProc gate(GateProc::args({node.addr()}, {"--no-stats"}));
    ASSERT_GT(gate.tcp, 0);
    Client c(gate.tcp);
    ASSERT_EQ(c.login(4), wire::OK);
    for (uint32_t seq = 1; seq <= 3; seq++) {
        auto f = c.call(1, "p", seq);
        ASSERT_TRUE(f);
        EXPECT_EQ(f->body, u32s(0) + "p");
    }
    EXPECT_EQ(stat_of(gate.admin, "calls_total"), 3u);
    std::string m = admin_get(gate.admin, "/metrics");
    EXPECT_EQ(m.find("coho_gate_route_calls_total"), std::string::npos) << m;
    std::string st = admin_get(gate.admin, "/stats");
    EXPECT_NE(st.find("\"uid\":4,"), std::string::npos) << st;
    EXPECT_NE(st.find("\"frames_in\":0,"), std::string::npos) << st;
}

TEST(Gate, AdminPortDumpsEveryThreadAndItsMetricsPassPromtool)
{
    FakeNode node;
    GateProc gate(GateProc::args({node.addr()}, {"--threads", "2"}));
    ASSERT_GT(gate.tcp, 0);
    Client c(gate.tcp);
    ASSERT_EQ(c.login(5), wire::OK);
    ASSERT_TRUE(c.call(1, "x"));
    // /coroutines: the live dump of both shards' schedulers.
    std::string dump = admin_get(gate.admin, "/coroutines");
    EXPECT_NE(dump.find("== shard 0 =="), std::string::npos) << dump;
    EXPECT_NE(dump.find("== shard 1 =="), std::string::npos) << dump;
    // /stats: the registry, then the gateway's sections.
    std::string stats = admin_get(gate.admin, "/stats");
    for (const char *key : {"\"metrics\":", "\"gate\":{", "\"conns\":{"})
        EXPECT_NE(stats.find(key), std::string::npos) << key << "\n" << stats;
    // The servers' own counters, one series per listener and thread.
    std::string m = admin_get(gate.admin, "/metrics");
    EXPECT_NE(m.find("coho_server_accepted_total{server=\"tcp0\"}"), std::string::npos) << m;
    EXPECT_NE(m.find("coho_server_accepted_total{server=\"tcp1\"}"), std::string::npos) << m;
    // /conns is the "conns" section of /stats now.
    EXPECT_EQ(admin_response(gate.admin, "/conns").rfind("HTTP/1.1 404 ", 0), 0u);
    ASSERT_EQ(access("/usr/bin/promtool", X_OK), 0) << "promtool (tools/deps.sh test)";
    FILE *p = popen("/usr/bin/promtool check metrics > /dev/null 2>&1", "w");
    ASSERT_NE(p, nullptr);
    fwrite(m.data(), 1, m.size(), p);
    int st = pclose(p);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << m;
}

TEST(Gate, WebSocketClientLogsInCallsAndIsKickedForText)
{
    FakeNode node;
    GateProc gate(
        GateProc::args({node.addr()}, {"--ws-listen", "127.0.0.1:0", "--ws-path", "/game"}));
    ASSERT_GT(gate.ws, 0);
    std::string cmd = std::string("/usr/bin/python3 ") + COHO_SOURCE_DIR +
                      "/test/game/gate_ws_client.py " + std::to_string(gate.ws) + " /game " +
                      kSecret + " 2>&1";
    FILE *p = popen(cmd.c_str(), "r");
    ASSERT_NE(p, nullptr);
    std::string out;
    char buf[512];
    while (fgets(buf, sizeof(buf), p) != nullptr)
        out += buf;
    int st = pclose(p);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << out;
    EXPECT_NE(out.find("ws client ok"), std::string::npos) << out;
}

TEST(Gate, TlsClientLogsInAndCalls)
{
    FakeNode node;
    TempFile dir;
    std::string cert = dir.dir + "/cert.pem", key = dir.dir + "/key.pem";
    std::string mk = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
                     "-days 1 -subj /CN=localhost -keyout " +
                     key + " -out " + cert + " 2>/dev/null";
    ASSERT_EQ(std::system(mk.c_str()), 0) << mk;
    {
        GateProc gate(GateProc::args({node.addr()}, {"--tls-cert", cert, "--tls-key", key}));
        ASSERT_GT(gate.tcp, 0);
        std::string cmd = std::string("/usr/bin/python3 ") + COHO_SOURCE_DIR +
                          "/test/game/gate_tls_client.py " + std::to_string(gate.tcp) + " " +
                          kSecret + " 2>&1";
        std::string out;
        FILE *p = popen(cmd.c_str(), "r");
        ASSERT_NE(p, nullptr);
        char buf[512];
        while (fgets(buf, sizeof(buf), p) != nullptr)
            out += buf;
        int st = pclose(p);
        EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << out;
        EXPECT_NE(out.find("tls client ok"), std::string::npos) << out;
    }
    unlink(cert.c_str());
    unlink(key.c_str());
}

TEST(Gate, ShutdownKicksEveryoneWith5AndExits0)
{
    FakeNode node;
    GateProc gate(GateProc::args({node.addr()}, {"--threads", "2"}));
    ASSERT_GT(gate.tcp, 0);
    std::vector<std::unique_ptr<Client>> cs;
    for (uint64_t uid = 1; uid <= 6; uid++) {
        cs.push_back(std::make_unique<Client>(gate.tcp));
        if (uid % 2)
            ASSERT_EQ(cs.back()->login(uid), wire::OK);
        else
            ASSERT_TRUE(cs.back()->send(wire::PING, 1) && cs.back()->read());
    }
    EXPECT_EQ(gate.stop(), 0);
    for (auto &c : cs) {
        EXPECT_TRUE(is_kick(c->read(), wire::KICK_SHUTDOWN));
        EXPECT_TRUE(c->closed());
    }
}
