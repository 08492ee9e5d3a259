// SPDX-License-Identifier: MIT
// coho-logic as a process, driven by fake gateways that speak game/common/node.hpp over plain
// blocking sockets, against a throwaway mariadbd (the game_logic_mariadb fixture). Each test
// uses a database of its own. Pushes and replies of one gateway share its only connection and
// the node queues a call's pushes before its reply, so a reply (or an echo round trip on
// another gateway) is a barrier: every push caused so far has arrived.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <mysql.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "game.pb.h"
#include "game/common/node.hpp"
#include "game/common/scene_call.hpp"
#include "game/common/wire.hpp"
#ifdef COHO_GATE_BIN
#    include "test/game/gate_harness.hpp"
#endif

using namespace coho::game;

namespace {

constexpr int kStartTimeoutMs = 30000;
constexpr int kReplyTimeoutMs = 20000; // generous: 2 shared cores, sanitizers

int64_t now_ms()
{
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

int db_port()
{
    const char *dir = std::getenv("COHO_TEST_SERVERS");
    if (dir == nullptr) {
        ADD_FAILURE() << "COHO_TEST_SERVERS is not set: run through ctest (a fixture starts "
                         "mariadbd)";
        return -1;
    }
    std::ifstream in(std::string(dir) + "/mariadb.port");
    int port = -1;
    if (!(in >> port) || port <= 0)
        ADD_FAILURE() << "no port in " << dir << "/mariadb.port: mariadbd did not start";
    return port;
}

// A TCP port nothing listens on (bound, then closed).
int dead_port()
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof a);
    getsockname(fd, reinterpret_cast<sockaddr *>(&a), &len);
    close(fd);
    return ntohs(a.sin_port);
}

// The coho-logic process: started with `args`, its port read from the "listening tcp" line.
class Logic {
public:
    explicit Logic(std::vector<std::string> args, std::vector<std::string> env = {})
    {
        int out[2];
        if (pipe(out) != 0)
            return;
        pid_ = fork();
        if (pid_ == 0) {
            dup2(out[1], 1);
            close(out[0]);
            close(out[1]);
            for (auto &e : env)
                putenv(const_cast<char *>(e.c_str()));
            std::vector<char *> argv{const_cast<char *>(COHO_LOGIC_BIN)};
            for (auto &a : args)
                argv.push_back(const_cast<char *>(a.c_str()));
            argv.push_back(nullptr);
            execv(argv[0], argv.data());
            _exit(127);
        }
        close(out[1]);
        out_ = out[0];
    }
    ~Logic()
    {
        if (pid_ > 0 && !reaped_) {
            kill(pid_, SIGKILL);
            waitpid(pid_, nullptr, 0);
        }
        if (out_ >= 0)
            close(out_);
    }

    // The port from "listening tcp HOST:PORT", or 0 if the line did not come in time.
    int port()
    {
        if (port_ != 0)
            return port_;
        std::string line;
        const int64_t deadline = now_ms() + kStartTimeoutMs;
        while (now_ms() < deadline) {
            pollfd p{out_, POLLIN, 0};
            if (poll(&p, 1, 100) <= 0)
                continue;
            char c;
            if (read(out_, &c, 1) != 1)
                break;
            if (c != '\n') {
                line += c;
                continue;
            }
            const std::string tag = "listening tcp ", admin = "listening admin ";
            if (line.rfind(tag, 0) == 0)
                port_ = std::atoi(line.substr(line.rfind(':') + 1).c_str());
            if (line.rfind(admin, 0) == 0)
                admin_port_ = std::atoi(line.substr(line.rfind(':') + 1).c_str());
            if (port_ != 0)
                return port_;
            line.clear();
        }
        ADD_FAILURE() << "coho-logic printed no 'listening tcp' line";
        return 0;
    }

    // The port of "listening admin HOST:PORT" (after port()), 0 if none was printed.
    int admin_port() const { return admin_port_; }
    pid_t pid() const { return pid_; }

    // SIGTERM, then the exit status (-1 on a signal or a timeout).
    int stop(int timeout_ms = 20000)
    {
        kill(pid_, SIGTERM);
        return wait(timeout_ms);
    }
    int wait(int timeout_ms)
    {
        const int64_t deadline = now_ms() + timeout_ms;
        int st = 0;
        while (now_ms() < deadline) {
            pid_t r = waitpid(pid_, &st, WNOHANG);
            if (r == pid_) {
                reaped_ = true;
                return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
            }
            usleep(10000);
        }
        return -1;
    }
    bool running() { return !reaped_ && waitpid(pid_, nullptr, WNOHANG) == 0; }
    // kill -9, then reaped.
    void kill9()
    {
        kill(pid_, SIGKILL);
        EXPECT_EQ(wait(20000), -1);
    }

private:
    pid_t pid_ = -1;
    int out_ = -1;
    int port_ = 0;
    int admin_port_ = 0;
    bool reaped_ = false;
};

// AOI ticks of 0 unless told: the pushes a scene call causes arrive before its reply.
std::vector<std::string> logic_args(const std::string &db_name, int dbp, int extra_cell = 0,
                                    int aoi_tick_ms = 0)
{
    // A database per test run: the fixture's server may have served earlier runs.
    std::vector<std::string> a{"--listen",       "127.0.0.1:0",
                               "--db",           "127.0.0.1:" + std::to_string(dbp),
                               "--db-name",      db_name + "_" + std::to_string(getpid()),
                               "--db-timeout-s", "10",
                               "--secret",       "s",
                               "--aoi-tick-ms",  std::to_string(aoi_tick_ms)};
    // A journal per node started (two nodes on one database must not share one), removed
    // with its error file when the test process exits.
    struct Journals {
        std::vector<std::string> paths;
        ~Journals()
        {
            for (auto &p : paths) {
                unlink(p.c_str());
                unlink((p + ".errors").c_str());
            }
        }
    };
    static Journals journals;
    const char *dir = std::getenv("COHO_TEST_SERVERS");
    journals.paths.push_back(std::string(dir != nullptr ? dir : "/tmp") + "/" + db_name + "_" +
                             std::to_string(getpid()) + "_" +
                             std::to_string(journals.paths.size() + 1) + ".journal");
    a.push_back("--journal");
    a.push_back(journals.paths.back());
    if (extra_cell > 0) {
        a.push_back("--aoi-cell");
        a.push_back(std::to_string(extra_cell));
    }
    return a;
}

struct Frame {
    node::Header h;
    std::string body;
};

struct Resp {
    uint32_t status = UINT32_MAX;
    std::string body;
};

// A fake gateway: one connection, HELLO first.
class Gate {
public:
    Gate(int port, uint64_t id, bool hello = true)
    {
        fd_ = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons(uint16_t(port));
        if (connect(fd_, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0) {
            ADD_FAILURE() << "connect to coho-logic: " << strerror(errno);
            return;
        }
        int one = 1;
        setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (hello) {
            std::string b;
            put_u64(b, id);
            Resp r = request(node::HELLO, 0, b);
            EXPECT_EQ(r.status, wire::OK) << "HELLO";
        }
    }
    ~Gate()
    {
        if (fd_ >= 0)
            close(fd_);
    }

    void send_raw(const std::string &bytes)
    {
        ASSERT_EQ(::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL), ssize_t(bytes.size()));
    }

    // Sends a request and waits for its response; one-way frames met meanwhile are kept.
    Resp request(uint32_t type, uint32_t arg, const std::string &body)
    {
        const uint64_t seq = next_seq_++;
        send_raw(node::frame(type, seq, arg, body));
        const int64_t deadline = now_ms() + kReplyTimeoutMs;
        for (;;) {
            std::optional<Frame> f = read_frame(deadline);
            if (!f) {
                ADD_FAILURE() << "no response to type " << type << " seq " << seq;
                return {};
            }
            if (f->h.type == (type | node::kResponseBit) && f->h.seq == seq)
                return {f->h.arg, f->body};
            if ((f->h.type & node::kResponseBit) != 0) {
                ADD_FAILURE() << "unexpected response type " << f->h.type << " seq " << f->h.seq;
                continue;
            }
            EXPECT_EQ(f->h.seq, 0u) << "one-way frames carry seq 0";
            oneway_.push_back(std::move(*f));
        }
    }

    Resp call(uint64_t uid, uint16_t route, const std::string &payload, uint64_t session = 1)
    {
        return request(node::CALL, route, node::uid_session(uid, session, payload));
    }
    Resp load(uint64_t uid, uint64_t session = 1)
    {
        return request(node::LOAD, 0, node::uid_session(uid, session));
    }
    Resp session_end(uint64_t uid, uint64_t session = 1)
    {
        return request(node::SESSION_END, 0, node::uid_session(uid, session));
    }

    // Reads until `n` responses came; returns them by seq. One-way frames are kept.
    std::map<uint64_t, Resp> responses(size_t n)
    {
        std::map<uint64_t, Resp> got;
        const int64_t deadline = now_ms() + kReplyTimeoutMs;
        while (got.size() < n) {
            std::optional<Frame> f = read_frame(deadline);
            if (!f) {
                ADD_FAILURE() << "only " << got.size() << " of " << n << " responses came";
                break;
            }
            if ((f->h.type & node::kResponseBit) != 0)
                got[f->h.seq] = {f->h.arg, f->body};
            else
                oneway_.push_back(std::move(*f));
        }
        return got;
    }

    // An echo round trip: every one-way frame the node queued for this gateway before it has
    // arrived.
    void barrier()
    {
        Resp r = call(0, wire::R_ECHO, "barrier");
        EXPECT_EQ(r.status, wire::OK);
    }

    // The one-way frames received so far (then forgotten).
    std::vector<Frame> take()
    {
        std::vector<Frame> v(oneway_.begin(), oneway_.end());
        oneway_.clear();
        return v;
    }

    // True when the node closed the connection within `ms`.
    bool closed_within(int ms)
    {
        pollfd p{fd_, POLLIN, 0};
        const int64_t deadline = now_ms() + ms;
        while (now_ms() < deadline) {
            if (poll(&p, 1, 100) > 0) {
                char c;
                ssize_t n = recv(fd_, &c, 1, 0);
                if (n == 0 || (n < 0 && errno == ECONNRESET))
                    return true;
            }
        }
        return false;
    }

private:
    bool fill(size_t n, int64_t deadline)
    {
        while (buf_.size() < n) {
            const int64_t left = deadline - now_ms();
            if (left <= 0)
                return false;
            pollfd p{fd_, POLLIN, 0};
            if (poll(&p, 1, int(left)) <= 0)
                continue;
            char tmp[65536];
            ssize_t got = recv(fd_, tmp, sizeof tmp, 0);
            if (got <= 0)
                return false;
            buf_.append(tmp, size_t(got));
        }
        return true;
    }
    std::optional<Frame> read_frame(int64_t deadline)
    {
        if (!fill(node::kHeaderLen, deadline))
            return std::nullopt;
        const uint32_t body_len =
            get_u32(reinterpret_cast<const unsigned char *>(buf_.data()) + 16);
        if (!fill(node::kHeaderLen + body_len, deadline))
            return std::nullopt;
        Frame f;
        std::string_view body;
        std::string whole = buf_.substr(0, node::kHeaderLen + body_len);
        buf_.erase(0, whole.size());
        if (!node::parse(whole, &f.h, &body)) {
            ADD_FAILURE() << "malformed frame from the node";
            return std::nullopt;
        }
        f.body.assign(body);
        return f;
    }

    int fd_ = -1;
    uint64_t next_seq_ = 1;
    std::string buf_;
    std::deque<Frame> oneway_;
};

// A PUSH_UIDS frame, decoded.
struct UidsPush {
    uint16_t route = 0;
    std::vector<uint64_t> uids;
    std::string payload;
};

UidsPush uids_push(const Frame &f)
{
    UidsPush p;
    EXPECT_EQ(f.h.type, node::PUSH_UIDS);
    p.route = uint16_t(f.h.arg);
    Reader r(f.body);
    const uint32_t n = r.u32();
    for (uint32_t i = 0; i < n && r.ok(); i++)
        p.uids.push_back(r.u64());
    p.payload.assign(r.rest());
    EXPECT_TRUE(r.ok());
    return p;
}

std::string pb(const google::protobuf::MessageLite &m)
{
    return m.SerializeAsString();
}

coho::game::Player get_player(Gate &g, uint64_t uid)
{
    Resp r = g.call(uid, wire::R_PLAYER_GET, pb(PlayerGetReq()));
    EXPECT_EQ(r.status, wire::OK);
    coho::game::Player p;
    EXPECT_TRUE(p.ParseFromString(r.body));
    return p;
}

int64_t add(Gate &g, uint64_t uid, int64_t delta)
{
    PlayerAddReq req;
    req.set_delta(delta);
    Resp r = g.call(uid, wire::R_PLAYER_ADD, pb(req));
    EXPECT_EQ(r.status, wire::OK);
    PlayerAddResp resp;
    EXPECT_TRUE(resp.ParseFromString(r.body));
    return resp.counter();
}

// ---- players ----

TEST(LogicNode, LoginCreatesThePlayerAndCountsLogins)
{
    const int dbp = db_port();
    ASSERT_GT(dbp, 0);
    Logic node(logic_args("logic_login", dbp));
    ASSERT_GT(node.port(), 0);
    Gate g(node.port(), 1);
    ASSERT_EQ(g.load(1001).status, wire::OK);
    coho::game::Player p = get_player(g, 1001);
    EXPECT_EQ(p.uid(), 1001u);
    EXPECT_EQ(p.counter(), 0);
    EXPECT_EQ(p.logins(), 1u);
    EXPECT_EQ(add(g, 1001, 5), 5);
    EXPECT_EQ(add(g, 1001, -2), 3);
    ASSERT_EQ(g.session_end(1001).status, wire::OK);
    ASSERT_EQ(g.load(1001, 2).status, wire::OK);
    p = get_player(g, 1001);
    EXPECT_EQ(p.counter(), 3);
    EXPECT_EQ(p.logins(), 2u);
    // Another player is another row.
    ASSERT_EQ(g.load(1002).status, wire::OK);
    EXPECT_EQ(get_player(g, 1002).counter(), 0);
    EXPECT_EQ(node.stop(), 0);
}

TEST(LogicNode, StatePersistsAcrossANodeRestart)
{
    const int dbp = db_port();
    ASSERT_GT(dbp, 0);
    {
        Logic node(logic_args("logic_restart", dbp));
        ASSERT_GT(node.port(), 0);
        Gate g(node.port(), 1);
        ASSERT_EQ(g.load(77).status, wire::OK);
        EXPECT_EQ(add(g, 77, 40), 40);
        EXPECT_EQ(add(g, 77, 2), 42);
        EXPECT_EQ(node.stop(), 0) << "SIGTERM must end the node cleanly";
    }
    {
        // Killed outright this time: every acknowledged change was already saved.
        Logic node(logic_args("logic_restart", dbp));
        ASSERT_GT(node.port(), 0);
        Gate g(node.port(), 1);
        ASSERT_EQ(g.load(77).status, wire::OK);
        coho::game::Player p = get_player(g, 77);
        EXPECT_EQ(p.counter(), 42);
        EXPECT_EQ(p.logins(), 2u);
        EXPECT_EQ(add(g, 77, 1), 43);
    }
    Logic node(logic_args("logic_restart", dbp));
    ASSERT_GT(node.port(), 0);
    Gate g(node.port(), 1);
    // Without a LOAD (the uid moved here from another node) the player is read on demand.
    coho::game::Player p = get_player(g, 77);
    EXPECT_EQ(p.counter(), 43);
    EXPECT_EQ(p.logins(), 2u);
    EXPECT_EQ(node.stop(), 0);
}

// Two nodes on one database: a uid served by one node, then another (nodes come and go and
// rendezvous hashing moves uids), then the first again, reads what the other saved.
TEST(LogicNode, TwoNodesOnOneDatabaseSeeEachOthersSaves)
{
    const int dbp = db_port();
    ASSERT_GT(dbp, 0);
    Logic a(logic_args("logic_two", dbp)), b(logic_args("logic_two", dbp));
    ASSERT_GT(a.port(), 0);
    ASSERT_GT(b.port(), 0);
    Gate ga(a.port(), 1), gb(b.port(), 1);
    ASSERT_EQ(ga.load(9).status, wire::OK);
    EXPECT_EQ(add(ga, 9, 5), 5);
    EXPECT_EQ(add(gb, 9, 3), 8) << "node b adds to what node a saved";
    EXPECT_EQ(get_player(ga, 9).counter(), 8) << "node a must not answer from a stale copy";
    EXPECT_EQ(add(ga, 9, 1), 9);
    EXPECT_EQ(get_player(gb, 9).counter(), 9);
    EXPECT_EQ(a.stop(), 0);
    EXPECT_EQ(b.stop(), 0);
}

// Many calls in flight at once: each is a coroutine, the database pool is shared, and one
// player's calls run one at a time (load, change, save, reply), so no add is lost.
TEST(LogicNode, ConcurrentCallsOnOnePlayerLoseNoUpdate)
{
    const int dbp = db_port();
    ASSERT_GT(dbp, 0);
    Logic node(logic_args("logic_concurrent", dbp));
    ASSERT_GT(node.port(), 0);
    Gate g(node.port(), 1);
    constexpr int kCalls = 200;
    // Pipelined: all requests written before any response is read.
    std::string burst;
    for (int i = 0; i < kCalls; i++) {
        PlayerAddReq req;
        req.set_delta(i + 1);
        const uint64_t uid = 500 + uint64_t(i % 4);
        burst += node::frame(node::CALL, 100000 + uint64_t(i), wire::R_PLAYER_ADD,
                             node::uid_session(uid, 1, pb(req)));
    }
    g.send_raw(burst);
    // The responses come in any order; each is one of the running sums of its player.
    std::map<uint64_t, Resp> got = g.responses(kCalls);
    ASSERT_EQ(got.size(), size_t(kCalls));
    int64_t want[4] = {0, 0, 0, 0};
    std::set<int64_t> counters[4];
    for (int i = 0; i < kCalls; i++) {
        const Resp &r = got[100000 + uint64_t(i)];
        ASSERT_EQ(r.status, wire::OK) << "call " << i;
        PlayerAddResp resp;
        ASSERT_TRUE(resp.ParseFromString(r.body));
        EXPECT_TRUE(counters[i % 4].insert(resp.counter()).second)
            << "two adds reported the same counter " << resp.counter();
        want[i % 4] += i + 1;
    }
    for (int k = 0; k < 4; k++) {
        EXPECT_EQ(*counters[k].rbegin(), want[k]) << "uid " << 500 + k;
        EXPECT_EQ(get_player(g, 500 + uint64_t(k)).counter(), want[k]) << "uid " << 500 + k;
    }
    EXPECT_EQ(node.stop(), 0);
}

// ---- test routes, malformed input ----

TEST(LogicNode, EchoAndPushSelf)
{
    const int dbp = db_port();
    ASSERT_GT(dbp, 0);
    Logic node(logic_args("logic_echo", dbp));
    ASSERT_GT(node.port(), 0);
    Gate g(node.port(), 3);
    Resp r = g.call(9, wire::R_ECHO, std::string("any\0bytes", 9));
    EXPECT_EQ(r.status, wire::OK);
    EXPECT_EQ(r.body, std::string("any\0bytes", 9));
    EXPECT_EQ(g.call(9, wire::R_ECHO, "").body, "");
    std::string k;
    put_u32(k, 5);
    r = g.call(9, wire::R_PUSH_SELF, k);
    EXPECT_EQ(r.status, wire::OK);
    EXPECT_EQ(r.body, "");
    g.barrier();
    auto frames = g.take();
    ASSERT_EQ(frames.size(), 5u);
    for (uint32_t i = 0; i < 5; i++) {
        UidsPush p = uids_push(frames[i]);
        EXPECT_EQ(p.route, wire::R_PUSH_SELF);
        EXPECT_EQ(p.uids, std::vector<uint64_t>{9});
        ASSERT_EQ(p.payload.size(), 4u);
        EXPECT_EQ(get_u32(reinterpret_cast<const unsigned char *>(p.payload.data())), i + 1);
    }
    EXPECT_EQ(node.stop(), 0);
}

TEST(LogicNode, MalformedPayloadsGetAStatusAndTheNodeStaysUp)
{
    const int dbp = db_port();
    ASSERT_GT(dbp, 0);
    Logic node(logic_args("logic_malformed", dbp));
    ASSERT_GT(node.port(), 0);
    Gate g(node.port(), 4);
    // A CALL body shorter than uid + session.
    EXPECT_EQ(g.request(node::CALL, wire::R_ECHO, "short").status, wire::BAD_PAYLOAD);
    EXPECT_EQ(g.request(node::LOAD, 0, "1234567").status, wire::BAD_PAYLOAD);
    // Unknown routes and frame types.
    EXPECT_EQ(g.call(1, 999, "").status, wire::UNKNOWN_ROUTE);
    EXPECT_EQ(g.request(node::CALL, 0x10001, node::uid_session(1, 1)).status, wire::UNKNOWN_ROUTE);
    EXPECT_EQ(g.request(77, 0, node::uid_session(1, 1)).status, wire::BAD_PAYLOAD);
    // Payloads that do not parse, or break a route's rules.
    const std::string junk("\xff\xff\xff\xff\xff", 5);
    for (uint16_t route :
         {wire::R_PLAYER_GET, wire::R_PLAYER_ADD, wire::R_CHAT_JOIN, wire::R_CHAT_SAY,
          wire::R_CHAT_LEAVE, wire::R_SCENE_ENTER, wire::R_SCENE_MOVE, wire::R_SCENE_LEAVE})
        EXPECT_EQ(g.call(1, route, junk).status, wire::BAD_PAYLOAD) << "route " << route;
    EXPECT_EQ(g.call(1, wire::R_PUSH_SELF, "abc").status, wire::BAD_PAYLOAD);
    std::string huge;
    put_u32(huge, 1u << 30);
    EXPECT_EQ(g.call(1, wire::R_PUSH_SELF, huge).status, wire::BAD_PAYLOAD);
    ChatJoinReq empty_channel;
    EXPECT_EQ(g.call(1, wire::R_CHAT_JOIN, pb(empty_channel)).status, wire::BAD_PAYLOAD);
    ChatJoinReq long_channel;
    long_channel.set_channel(std::string(65, 'c'));
    EXPECT_EQ(g.call(1, wire::R_CHAT_JOIN, pb(long_channel)).status, wire::BAD_PAYLOAD);
    ChatSayReq long_text;
    long_text.set_channel("c");
    long_text.set_text(std::string(1025, 't'));
    EXPECT_EQ(g.call(1, wire::R_CHAT_SAY, pb(long_text)).status, wire::BAD_PAYLOAD);
    SceneMoveReq move_outside;
    move_outside.set_scene(5);
    EXPECT_EQ(g.call(1, wire::R_SCENE_MOVE, pb(move_outside)).status, wire::BAD_PAYLOAD);
    // A counter that would overflow.
    ASSERT_EQ(g.load(1).status, wire::OK);
    EXPECT_EQ(add(g, 1, INT64_MAX), INT64_MAX);
    PlayerAddReq over;
    over.set_delta(1);
    EXPECT_EQ(g.call(1, wire::R_PLAYER_ADD, pb(over)).status, wire::BAD_PAYLOAD);
    EXPECT_EQ(get_player(g, 1).counter(), INT64_MAX);
    // Nothing was pushed for any of it.
    g.barrier();
    EXPECT_TRUE(g.take().empty());
    // A frame with a wrong magic closes that connection only.
    Gate bad(node.port(), 5);
    std::string f = node::frame(node::CALL, 1, wire::R_ECHO, node::uid_session(1, 1));
    f[0] = 'X';
    bad.send_raw(f);
    EXPECT_TRUE(bad.closed_within(kReplyTimeoutMs));
    EXPECT_EQ(g.call(1, wire::R_ECHO, "alive").body, "alive");
    EXPECT_TRUE(node.running());
    EXPECT_EQ(node.stop(), 0);
}

TEST(LogicNode, RequestsBeforeHelloAreRefused)
{
    const int dbp = db_port();
    ASSERT_GT(dbp, 0);
    Logic node(logic_args("logic_hello", dbp));
    ASSERT_GT(node.port(), 0);
    Gate g(node.port(), 0, false);
    EXPECT_EQ(g.call(1, wire::R_ECHO, "x").status, wire::SERVER_ERROR);
    EXPECT_EQ(g.request(node::HELLO, 0, "abc").status, wire::BAD_PAYLOAD);
    std::string id;
    put_u64(id, 0); // gateway id 0 is an id like any other
    EXPECT_EQ(g.request(node::HELLO, 0, id).status, wire::OK);
    EXPECT_EQ(g.request(node::HELLO, 0, id).status, wire::BAD_PAYLOAD) << "a second HELLO";
    EXPECT_EQ(g.call(1, wire::R_ECHO, "x").body, "x");
    EXPECT_EQ(node.stop(), 0);
}

// Random frames of every type and route: each gets an answer, the node stays up.
TEST(LogicNode, RandomFramesAreAnsweredAndNeverCrashTheNode)
{
    const int dbp = db_port();
    ASSERT_GT(dbp, 0);
    Logic node(logic_args("logic_random", dbp));
    ASSERT_GT(node.port(), 0);
    Gate g(node.port(), 1);
    std::mt19937 rng(2024);
    constexpr int kBatches = 10, kBatch = 200;
    uint64_t seq = 1000000;
    for (int b = 0; b < kBatches; b++) {
        std::string burst;
        for (int i = 0; i < kBatch; i++) {
            std::string payload(rng() % 48, '\0');
            for (char &c : payload)
                c = char(rng());
            const uint32_t type =
                rng() % 8 == 0 ? uint32_t(rng() % 6) : uint32_t(node::CALL); // HELLO, LOAD, ...
            const uint32_t route = rng() % 8 == 0 ? uint32_t(rng()) : rng() % 40;
            std::string body =
                rng() % 16 == 0 ? payload : node::uid_session(rng() % 50, 1, payload);
            burst += node::frame(type, seq++, route, body);
        }
        g.send_raw(burst);
        std::map<uint64_t, Resp> got = g.responses(kBatch);
        ASSERT_EQ(got.size(), size_t(kBatch)) << "batch " << b;
        for (auto &[s, r] : got)
            EXPECT_LE(r.status, uint32_t(wire::SERVER_ERROR)) << "seq " << s;
    }
    EXPECT_EQ(g.call(1, wire::R_ECHO, "alive").body, "alive");
    EXPECT_TRUE(node.running());
    EXPECT_EQ(node.stop(), 0);
}

// The log: every line of one request carries that request's coroutine id, the database's
// lines included, so a request's story can be read by its [TID-COID].
TEST(LogicNode, LogLinesOfOneRequestShareItsCoroutineId)
{
    const int dbp = db_port();
    ASSERT_GT(dbp, 0);
    char dir[] = "/tmp/coho-logic-log.XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    const std::string log = std::string(dir) + "/logic.log";
    auto args = logic_args("logic_log", dbp);
    args.insert(args.end(), {"--log", log, "--log-level", "trace"});
    {
        Logic node(args);
        ASSERT_GT(node.port(), 0);
        Gate g(node.port(), 1);
        ASSERT_EQ(g.load(4242).status, wire::OK);
        EXPECT_EQ(g.call(4242, wire::R_ECHO, "x").body, "x");
        EXPECT_EQ(node.stop(), 0);
    }
    std::ifstream in(log);
    std::stringstream all;
    all << in.rdbuf();
    const std::string text = all.str();
    unlink(log.c_str());
    rmdir(dir);
    std::smatch m;
    const std::regex login(R"(\[(\d+)-(\d+)\]uid 4242 logged in)");
    ASSERT_TRUE(std::regex_search(text, m, login)) << text;
    const std::string coid = m[2];
    EXPECT_NE(coid, "0") << "a request runs in a coroutine";
    // Its trace line, or its slow-request line (the first request connects to the database).
    const std::regex done(R"(\[(\d+)-(\d+)\](slow request: )?(request )?type 2 route 0 uid 4242)");
    ASSERT_TRUE(std::regex_search(text, m, done)) << text;
    EXPECT_EQ(m[2], coid) << "the trace line of the LOAD and its login line";
    const std::regex db(R"(\[(\d+)-(\d+)\]db: connected)");
    ASSERT_TRUE(std::regex_search(text, m, db)) << text;
    EXPECT_EQ(m[2], coid) << "the first request opened the database connection";
    EXPECT_NE(text.find("route 1: 1 calls"), std::string::npos) << "the counters at exit";
}

// ---- the database down ----

TEST(LogicNode, DatabaseDownFailsPlayerCallsWithServerErrorAndNothingElse)
{
    Logic node(logic_args("logic_down", dead_port()));
    ASSERT_GT(node.port(), 0) << "the node must start without its database";
    Gate g(node.port(), 1);
    EXPECT_EQ(g.load(1).status, wire::SERVER_ERROR);
    EXPECT_EQ(g.call(1, wire::R_PLAYER_GET, pb(PlayerGetReq())).status, wire::SERVER_ERROR);
    PlayerAddReq req;
    req.set_delta(1);
    EXPECT_EQ(g.call(1, wire::R_PLAYER_ADD, pb(req)).status, wire::SERVER_ERROR);
    // Routes that need no database still work.
    EXPECT_EQ(g.call(1, wire::R_ECHO, "up").body, "up");
    ChatJoinReq join;
    join.set_channel("c");
    EXPECT_EQ(g.call(1, wire::R_CHAT_JOIN, pb(join)).status, wire::OK);
    EXPECT_TRUE(node.running());
    EXPECT_EQ(node.stop(), 0);
}

// A TCP proxy in front of mariadbd that the test can cut: while it is down, every proxied
// connection is shut and new ones are closed at once (the node sees the server gone).
class CuttableProxy {
public:
    explicit CuttableProxy(int upstream) : upstream_(upstream)
    {
        lfd_ = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof a;
        if (bind(lfd_, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0 || listen(lfd_, 64) != 0 ||
            getsockname(lfd_, reinterpret_cast<sockaddr *>(&a), &len) != 0) {
            ADD_FAILURE() << "proxy: " << strerror(errno);
            return;
        }
        port_ = ntohs(a.sin_port);
        acceptor_ = std::thread([this] { accept_loop(); });
    }
    ~CuttableProxy()
    {
        stop_ = true;
        shutdown(lfd_, SHUT_RDWR);
        acceptor_.join();
        set_down(true);
        for (auto &t : pumps_)
            t.join();
        close(lfd_);
        for (int fd : fds_)
            close(fd);
    }
    int port() const { return port_; }
    void set_down(bool down)
    {
        std::lock_guard<std::mutex> g(mu_);
        down_ = down;
        if (down)
            for (int fd : fds_)
                shutdown(fd, SHUT_RDWR);
    }

private:
    void accept_loop()
    {
        while (!stop_) {
            int c = accept(lfd_, nullptr, nullptr);
            if (c < 0) {
                if (stop_ || errno == EINVAL)
                    return;
                continue;
            }
            std::lock_guard<std::mutex> g(mu_);
            if (down_) {
                close(c);
                continue;
            }
            int u = socket(AF_INET, SOCK_STREAM, 0);
            sockaddr_in a{};
            a.sin_family = AF_INET;
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            a.sin_port = htons(uint16_t(upstream_));
            if (connect(u, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0) {
                close(c);
                close(u);
                continue;
            }
            fds_.push_back(c);
            fds_.push_back(u);
            pumps_.emplace_back([c, u] { pump(c, u); });
            pumps_.emplace_back([c, u] { pump(u, c); });
        }
    }
    static void pump(int from, int to)
    {
        char buf[16384];
        for (;;) {
            ssize_t n = recv(from, buf, sizeof buf, 0);
            if (n <= 0 || ::send(to, buf, size_t(n), MSG_NOSIGNAL) != n)
                break;
        }
        shutdown(to, SHUT_RDWR);
        shutdown(from, SHUT_RDWR);
    }

    int upstream_;
    int lfd_ = -1;
    int port_ = 0;
    std::atomic<bool> stop_{false};
    std::mutex mu_;
    bool down_ = false;
    std::vector<int> fds_;
    std::vector<std::thread> pumps_;
    std::thread acceptor_;
};

// While the database is away, reads fail with status 7 and a change to a loaded player is
// acknowledged once it is in the journal (after the retries); the journal is replayed when the
// database is back.
TEST(LogicNode, DatabaseLostMidRunFailsReadsJournalsChangesThenRecovers)
{
    const int dbp = db_port();
    ASSERT_GT(dbp, 0);
    CuttableProxy proxy(dbp);
    ASSERT_GT(proxy.port(), 0);
    auto args = logic_args("logic_lost", proxy.port());
    args.insert(args.end(), {"--db-retries", "2", "--db-backoff-ms", "20"});
    Logic node(args);
    ASSERT_GT(node.port(), 0);
    Gate g(node.port(), 1);
    ASSERT_EQ(g.load(5).status, wire::OK);
    EXPECT_EQ(add(g, 5, 10), 10);

    proxy.set_down(true);
    const int64_t t0 = now_ms();
    EXPECT_EQ(add(g, 5, 1), 11) << "acknowledged once journaled";
    EXPECT_EQ(g.load(6).status, wire::SERVER_ERROR);
    EXPECT_EQ(g.call(5, wire::R_PLAYER_GET, pb(PlayerGetReq())).status, wire::SERVER_ERROR);
    EXPECT_LT(now_ms() - t0, kReplyTimeoutMs) << "a lost database must fail calls, not hang them";
    EXPECT_EQ(g.call(5, wire::R_ECHO, "up").body, "up");

    proxy.set_down(false);
    EXPECT_EQ(get_player(g, 5).counter(), 11)
        << "the node must reconnect once the database is back";
    EXPECT_EQ(add(g, 5, 1), 12);
    ASSERT_EQ(g.load(6).status, wire::OK);
    EXPECT_EQ(node.stop(), 0);
}

// ---- chat ----

TEST(LogicNode, ChatJoinSayLeaveGoThroughTheGatewaysGroups)
{
    const int dbp = db_port();
    ASSERT_GT(dbp, 0);
    Logic node(logic_args("logic_chat", dbp));
    ASSERT_GT(node.port(), 0);
    Gate g1(node.port(), 1), g2(node.port(), 2);
    const uint64_t A = 11, B = 12, C = 13; // A and C on gateway 1, B on gateway 2
    ChatJoinReq jx;
    jx.set_channel("x");
    Resp r = g1.call(A, wire::R_CHAT_JOIN, pb(jx));
    ASSERT_EQ(r.status, wire::OK);
    ChatJoinResp jr;
    ASSERT_TRUE(jr.ParseFromString(r.body));
    EXPECT_EQ(jr.channel(), "x");
    ASSERT_EQ(g2.call(B, wire::R_CHAT_JOIN, pb(jx)).status, wire::OK);
    g1.barrier();
    g2.barrier();
    auto f1 = g1.take(), f2 = g2.take();
    ASSERT_EQ(f1.size(), 1u);
    EXPECT_EQ(f1[0].h.type, node::GROUP_JOIN);
    EXPECT_EQ(f1[0].body, node::uid_group(A, "chat:x"));
    ASSERT_EQ(f2.size(), 1u);
    EXPECT_EQ(f2[0].h.type, node::GROUP_JOIN);
    EXPECT_EQ(f2[0].body, node::uid_group(B, "chat:x"));

    // A says: one message to group chat:x on each gateway, whoever its members there are.
    auto say = [&](Gate &g, uint64_t uid, const std::string &ch, const std::string &text) {
        ChatSayReq s;
        s.set_channel(ch);
        s.set_text(text);
        Resp sr = g.call(uid, wire::R_CHAT_SAY, pb(s));
        EXPECT_EQ(sr.status, wire::OK);
        ChatSayResp resp;
        EXPECT_TRUE(resp.ParseFromString(sr.body));
        return resp.msg_id();
    };
    EXPECT_EQ(say(g1, A, "x", "hello"), 1u);
    EXPECT_EQ(say(g2, B, "x", "hi A"), 2u);
    EXPECT_EQ(say(g1, C, "y", "anyone?"), 1u) << "msg ids count per channel";
    g1.barrier();
    g2.barrier();
    for (Gate *g : {&g1, &g2}) {
        auto fs = g->take();
        ASSERT_EQ(fs.size(), 3u);
        const struct {
            const char *group;
            uint64_t from;
            const char *text;
            uint64_t id;
        } want[] = {
            {"chat:x", A, "hello", 1}, {"chat:x", B, "hi A", 2}, {"chat:y", C, "anyone?", 1}};
        for (size_t i = 0; i < 3; i++) {
            EXPECT_EQ(fs[i].h.type, node::PUSH_GROUP);
            EXPECT_EQ(fs[i].h.arg, wire::R_CHAT_SAY);
            Reader rd(fs[i].body);
            std::string_view group = rd.bytes(rd.u16());
            ASSERT_TRUE(rd.ok());
            EXPECT_EQ(group, want[i].group);
            ChatMsg m;
            std::string_view rest = rd.rest();
            ASSERT_TRUE(m.ParseFromArray(rest.data(), int(rest.size())));
            EXPECT_EQ(m.channel(), std::string(want[i].group).substr(5));
            EXPECT_EQ(m.from_uid(), want[i].from);
            EXPECT_EQ(m.text(), want[i].text);
            EXPECT_EQ(m.msg_id(), want[i].id);
        }
    }
    // A leaves x; B's session ends: both leave their groups on their own gateway.
    ChatLeaveReq lx;
    lx.set_channel("x");
    ASSERT_EQ(g1.call(A, wire::R_CHAT_LEAVE, pb(lx)).status, wire::OK);
    ASSERT_EQ(g2.session_end(B).status, wire::OK);
    g1.barrier();
    g2.barrier();
    f1 = g1.take();
    f2 = g2.take();
    ASSERT_EQ(f1.size(), 1u);
    EXPECT_EQ(f1[0].h.type, node::GROUP_LEAVE);
    EXPECT_EQ(f1[0].body, node::uid_group(A, "chat:x"));
    ASSERT_EQ(f2.size(), 1u);
    EXPECT_EQ(f2[0].h.type, node::GROUP_LEAVE);
    EXPECT_EQ(f2[0].body, node::uid_group(B, "chat:x"));
    EXPECT_EQ(node.stop(), 0);
}

// A relogin starts session 2; the end of session 1, arriving late, must not end session 2.
TEST(LogicNode, ALateSessionEndOfAnOlderSessionChangesNothing)
{
    const int dbp = db_port();
    ASSERT_GT(dbp, 0);
    Logic node(logic_args("logic_stale", dbp));
    ASSERT_GT(node.port(), 0);
    Gate g(node.port(), 1);
    ASSERT_EQ(g.load(21, 1).status, wire::OK);
    ASSERT_EQ(g.load(21, 2).status, wire::OK);
    ChatJoinReq j;
    j.set_channel("c");
    ASSERT_EQ(g.call(21, wire::R_CHAT_JOIN, pb(j), 2).status, wire::OK);
    ASSERT_EQ(g.session_end(21, 1).status, wire::OK);
    g.barrier();
    auto fs = g.take();
    ASSERT_EQ(fs.size(), 1u);
    EXPECT_EQ(fs[0].h.type, node::GROUP_JOIN) << "no GROUP_LEAVE for the stale end";
    ASSERT_EQ(g.session_end(21, 2).status, wire::OK);
    g.barrier();
    fs = g.take();
    ASSERT_EQ(fs.size(), 1u);
    EXPECT_EQ(fs[0].h.type, node::GROUP_LEAVE);
    EXPECT_EQ(fs[0].body, node::uid_group(21, "chat:c"));
    EXPECT_EQ(node.stop(), 0);
}

// ---- scenes ----

// A SceneEnterReq or SceneMoveReq payload.
template <class Req>
std::string pos_req(uint32_t scene, int32_t x, int32_t y)
{
    Req r;
    r.set_scene(scene);
    r.mutable_pos()->set_x(x);
    r.mutable_pos()->set_y(y);
    return pb(r);
}
std::string enter_req(uint32_t scene, int32_t x, int32_t y)
{
    return pos_req<SceneEnterReq>(scene, x, y);
}
std::string move_req(uint32_t scene, int32_t x, int32_t y)
{
    return pos_req<SceneMoveReq>(scene, x, y);
}

// The uids a SceneEnterResp names (a test failure when it does not parse).
std::set<uint64_t> others_in(const std::string &resp_body)
{
    SceneEnterResp resp;
    EXPECT_TRUE(resp.ParseFromString(resp_body));
    std::set<uint64_t> others;
    for (auto &e : resp.others())
        others.insert(e.uid());
    return others;
}

// One entry of an AoiBatch, as one recipient got it; a LEAVE without a position (the entity
// left the scene) has x = y = -1.
struct K {
    enum Kind { ENTER, MOVE, LEAVE };
};

struct Aoi {
    uint64_t to;
    K::Kind kind;
    uint64_t who;
    int32_t x, y;
    bool operator<(const Aoi &o) const
    {
        return std::tie(to, kind, who, x, y) < std::tie(o.to, o.kind, o.who, o.x, o.y);
    }
    bool operator==(const Aoi &o) const { return !(*this < o) && !(o < *this); }
};

std::ostream &operator<<(std::ostream &os, const Aoi &a)
{
    return os << "{to " << a.to << " kind " << a.kind << " who " << a.who << " at " << a.x << ","
              << a.y << "}";
}

void add_entries(std::multiset<Aoi> &out, const UidsPush &p, uint32_t scene)
{
    EXPECT_EQ(p.route, wire::R_SCENE_AOI);
    AoiBatch b;
    EXPECT_TRUE(b.ParseFromString(p.payload));
    EXPECT_EQ(b.scene(), scene);
    EXPECT_GT(b.entered_size() + b.moved_size() + b.left_size(), 0) << "an empty batch";
    for (uint64_t u : p.uids) {
        for (auto &e : b.entered())
            out.insert({u, K::ENTER, e.uid(), e.pos().x(), e.pos().y()});
        for (auto &e : b.moved())
            out.insert({u, K::MOVE, e.uid(), e.pos().x(), e.pos().y()});
        for (auto &e : b.left())
            out.insert({u, K::LEAVE, e.uid(), e.has_pos() ? e.pos().x() : -1,
                        e.has_pos() ? e.pos().y() : -1});
    }
}

// Every AOI push each gateway received since the last call, one entry per recipient and
// entity.
std::multiset<Aoi> aoi_pushes(Gate &g, uint32_t scene)
{
    g.barrier();
    std::multiset<Aoi> out;
    for (const Frame &f : g.take())
        add_entries(out, uids_push(f), scene);
    return out;
}

TEST(LogicNode, AoiPushesReachNeighboursOnly)
{
    const int dbp = db_port();
    ASSERT_GT(dbp, 0);
    Logic node(logic_args("logic_aoi", dbp, 100));
    ASSERT_GT(node.port(), 0);
    Gate g1(node.port(), 1), g2(node.port(), 2);
    const uint32_t S = 7;
    const uint64_t A = 1, B = 2, C = 3; // A on gateway 1; B and C on gateway 2
    auto enter = [&](Gate &g, uint64_t uid, int32_t x, int32_t y) {
        Resp r = g.call(uid, wire::R_SCENE_ENTER, enter_req(S, x, y));
        EXPECT_EQ(r.status, wire::OK);
        return others_in(r.body);
    };
    auto move = [&](Gate &g, uint64_t uid, int32_t x, int32_t y) {
        SceneMoveReq req;
        req.set_scene(S);
        req.mutable_pos()->set_x(x);
        req.mutable_pos()->set_y(y);
        EXPECT_EQ(g.call(uid, wire::R_SCENE_MOVE, pb(req)).status, wire::OK);
    };
    auto nothing = std::multiset<Aoi>{};

    EXPECT_TRUE(enter(g1, A, 0, 0).empty());
    EXPECT_EQ(aoi_pushes(g1, S), nothing);
    EXPECT_EQ(enter(g2, B, 50, 50), std::set<uint64_t>{A});
    EXPECT_EQ(aoi_pushes(g1, S), (std::multiset<Aoi>{{A, K::ENTER, B, 50, 50}}));
    EXPECT_EQ(aoi_pushes(g2, S), nothing);
    EXPECT_TRUE(enter(g2, C, 1000, 1000).empty()) << "C is far away";
    EXPECT_EQ(aoi_pushes(g1, S), nothing);
    EXPECT_EQ(aoi_pushes(g2, S), nothing);

    move(g2, B, 60, 70);
    EXPECT_EQ(aoi_pushes(g1, S), (std::multiset<Aoi>{{A, K::MOVE, B, 60, 70}}));
    EXPECT_EQ(aoi_pushes(g2, S), nothing) << "C must not hear of B";

    // C walks into the 3x3 block of A and B: each side learns of the other.
    move(g2, C, 150, 199);
    EXPECT_EQ(aoi_pushes(g1, S), (std::multiset<Aoi>{{A, K::ENTER, C, 150, 199}}));
    EXPECT_EQ(aoi_pushes(g2, S),
              (std::multiset<Aoi>{
                  {B, K::ENTER, C, 150, 199}, {C, K::ENTER, A, 0, 0}, {C, K::ENTER, B, 60, 70}}));

    // A jumps away: the others see it leave, and it sees them leave.
    move(g1, A, 5000, 5000);
    EXPECT_EQ(aoi_pushes(g1, S),
              (std::multiset<Aoi>{{A, K::LEAVE, B, 60, 70}, {A, K::LEAVE, C, 150, 199}}));
    EXPECT_EQ(aoi_pushes(g2, S),
              (std::multiset<Aoi>{{B, K::LEAVE, A, 5000, 5000}, {C, K::LEAVE, A, 5000, 5000}}));

    // B leaves: only C (its neighbour) hears it.
    SceneLeaveReq lv;
    lv.set_scene(S);
    ASSERT_EQ(g2.call(B, wire::R_SCENE_LEAVE, pb(lv)).status, wire::OK);
    EXPECT_EQ(aoi_pushes(g1, S), nothing);
    EXPECT_EQ(aoi_pushes(g2, S), (std::multiset<Aoi>{{C, K::LEAVE, B, -1, -1}}));
    // Entering again is a move: A comes back next to C. Its reply is its whole view, so A
    // itself gets no push; C is told as of a move.
    EXPECT_EQ(enter(g1, A, 199, 199), std::set<uint64_t>{C});
    EXPECT_EQ(aoi_pushes(g1, S), nothing);
    EXPECT_EQ(aoi_pushes(g2, S), (std::multiset<Aoi>{{C, K::ENTER, A, 199, 199}}));
    // C's session ends: it leaves the scene, A is told.
    ASSERT_EQ(g2.session_end(C).status, wire::OK);
    EXPECT_EQ(aoi_pushes(g1, S), (std::multiset<Aoi>{{A, K::LEAVE, C, -1, -1}}));
    EXPECT_EQ(aoi_pushes(g2, S), nothing);
    // Another scene is another world.
    SceneEnterReq other;
    other.set_scene(S + 1);
    Resp r = g2.call(B, wire::R_SCENE_ENTER, pb(other));
    ASSERT_EQ(r.status, wire::OK);
    SceneEnterResp resp;
    ASSERT_TRUE(resp.ParseFromString(r.body));
    EXPECT_EQ(resp.others_size(), 0);
    EXPECT_EQ(aoi_pushes(g1, S), nothing);
    EXPECT_EQ(node.stop(), 0);
}

// Scenes span 0..--scene-size - 1: an enter or a move outside is status 6 and changes nothing
// (nobody is told, the mover stays where it was).
TEST(LogicNode, ScenePositionsOutsideTheSceneAreRefused)
{
    const int dbp = db_port();
    ASSERT_GT(dbp, 0);
    auto args = logic_args("logic_aoi_out", dbp, 100);
    args.insert(args.end(), {"--scene-size", "1000"});
    Logic node(args);
    ASSERT_GT(node.port(), 0);
    Gate g(node.port(), 1);
    auto enter = [&](uint64_t uid, int32_t x, int32_t y) {
        SceneEnterReq req;
        req.set_scene(1);
        req.mutable_pos()->set_x(x);
        req.mutable_pos()->set_y(y);
        return g.call(uid, wire::R_SCENE_ENTER, pb(req)).status;
    };
    auto move = [&](uint64_t uid, int32_t x, int32_t y) {
        SceneMoveReq req;
        req.set_scene(1);
        req.mutable_pos()->set_x(x);
        req.mutable_pos()->set_y(y);
        return g.call(uid, wire::R_SCENE_MOVE, pb(req)).status;
    };
    for (auto [x, y] : {std::pair{-1, 0}, {0, -1}, {1000, 0}, {0, 1000}, {INT32_MIN, INT32_MAX}})
        EXPECT_EQ(enter(1, x, y), wire::BAD_PAYLOAD) << x << "," << y;
    ASSERT_EQ(enter(1, 999, 999), wire::OK); // the far corner is in
    ASSERT_EQ(enter(2, 950, 950), wire::OK);
    EXPECT_EQ(aoi_pushes(g, 1), (std::multiset<Aoi>{{1, K::ENTER, 2, 950, 950}}));
    EXPECT_EQ(move(2, 1000, 950), wire::BAD_PAYLOAD);
    EXPECT_EQ(move(2, 950, -1), wire::BAD_PAYLOAD);
    EXPECT_EQ(aoi_pushes(g, 1), (std::multiset<Aoi>{})) << "a refused move is not told";
    ASSERT_EQ(move(2, 0, 0), wire::OK);
    EXPECT_EQ(aoi_pushes(g, 1),
              (std::multiset<Aoi>{{1, K::LEAVE, 2, 0, 0}, {2, K::LEAVE, 1, 999, 999}}))
        << "2 moved from where it was, not from a refused position";
    EXPECT_EQ(node.stop(), 0);
}

// With a tick, each observer gets one push per tick holding everything that changed in its
// view, each entity once at its last position; observers told the same thing share a frame.
TEST(LogicNode, AoiPushesAreBatchedPerTickAndCoalesced)
{
    const int dbp = db_port();
    ASSERT_GT(dbp, 0);
    // A long tick: the calls below all fall within the first one (the first change starts it).
    Logic node(logic_args("logic_aoi_tick", dbp, 100, 5000));
    ASSERT_GT(node.port(), 0);
    Gate g(node.port(), 1);
    const uint32_t S = 3;
    auto enter = [&](uint64_t uid, int32_t x, int32_t y) {
        SceneEnterReq req;
        req.set_scene(S);
        req.mutable_pos()->set_x(x);
        req.mutable_pos()->set_y(y);
        Resp r = g.call(uid, wire::R_SCENE_ENTER, pb(req));
        EXPECT_EQ(r.status, wire::OK);
        SceneEnterResp resp;
        EXPECT_TRUE(resp.ParseFromString(r.body));
        std::set<uint64_t> others;
        for (auto &e : resp.others())
            others.insert(e.uid());
        return others;
    };
    auto move = [&](uint64_t uid, int32_t x, int32_t y) {
        SceneMoveReq req;
        req.set_scene(S);
        req.mutable_pos()->set_x(x);
        req.mutable_pos()->set_y(y);
        EXPECT_EQ(g.call(uid, wire::R_SCENE_MOVE, pb(req)).status, wire::OK);
    };
    // Waits for `frames` more AOI frames; then nothing else may come (nothing is pending).
    auto wait_frames = [&](size_t frames) {
        std::vector<UidsPush> got;
        const int64_t deadline = now_ms() + 30000;
        while (got.size() < frames && now_ms() < deadline) {
            usleep(50 * 1000);
            g.barrier();
            for (const Frame &f : g.take())
                got.push_back(uids_push(f));
        }
        EXPECT_EQ(got.size(), frames);
        return got;
    };
    EXPECT_TRUE(enter(1, 0, 0).empty());
    EXPECT_EQ(enter(2, 50, 50), std::set<uint64_t>{1}); // the tick starts here
    move(2, 60, 60);
    move(2, 70, 70);
    move(2, 80, 80);
    EXPECT_EQ(enter(3, 150, 150), (std::set<uint64_t>{1, 2}));
    EXPECT_EQ(enter(4, 10, 10), (std::set<uint64_t>{1, 2, 3}));
    SceneLeaveReq lv;
    lv.set_scene(S);
    ASSERT_EQ(g.call(4, wire::R_SCENE_LEAVE, pb(lv)).status, wire::OK); // came and went
    g.barrier();
    EXPECT_TRUE(g.take().empty()) << "pushes before the tick";

    auto got = wait_frames(2);
    std::multiset<Aoi> entries;
    std::multiset<uint64_t> to;
    for (auto &p : got) {
        add_entries(entries, p, S);
        to.insert(p.uids.begin(), p.uids.end());
    }
    EXPECT_EQ(to, (std::multiset<uint64_t>{1, 2})) << "one push per observer";
    EXPECT_EQ(entries, (std::multiset<Aoi>{{1, K::ENTER, 2, 80, 80},
                                           {1, K::ENTER, 3, 150, 150},
                                           {2, K::ENTER, 3, 150, 150}}));

    // 3 moves twice: 1 and 2 are told the same thing, in one frame naming both.
    move(3, 160, 160);
    move(3, 170, 170);
    got = wait_frames(1);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(std::set<uint64_t>(got[0].uids.begin(), got[0].uids.end()),
              (std::set<uint64_t>{1, 2}));
    entries.clear();
    add_entries(entries, got[0], S);
    EXPECT_EQ(entries, (std::multiset<Aoi>{{1, K::MOVE, 3, 170, 170}, {2, K::MOVE, 3, 170, 170}}));

    // 2 walks out of view and back within a tick: 1 and 2 see each other as moved (known
    // before, known now); 3 walks away for good.
    move(2, 5000, 5000);
    move(2, 90, 90);
    move(3, 5000, 5000);
    got = wait_frames(3);
    entries.clear();
    for (auto &p : got)
        add_entries(entries, p, S);
    EXPECT_EQ(entries, (std::multiset<Aoi>{{1, K::MOVE, 2, 90, 90},
                                           {1, K::LEAVE, 3, 5000, 5000},
                                           {2, K::MOVE, 1, 0, 0},
                                           {2, K::LEAVE, 3, 5000, 5000},
                                           {3, K::LEAVE, 1, 0, 0},
                                           {3, K::LEAVE, 2, 90, 90}}));
    EXPECT_EQ(node.stop(), 0);
}

// A gateway that goes away for good takes its sessions with it (no ghosts in scenes); one
// that reconnects within the grace period keeps them.
TEST(LogicNode, AGatewayGoneForItsGracePeriodEndsItsSessions)
{
    const int dbp = db_port();
    ASSERT_GT(dbp, 0);
    auto args = logic_args("logic_gone", dbp, 100);
    args.insert(args.end(), {"--gate-grace-ms", "1000"});
    Logic node(args);
    ASSERT_GT(node.port(), 0);
    Gate g1(node.port(), 1);
    auto enter = [](Gate &g, uint64_t uid, int32_t x) {
        SceneEnterReq req;
        req.set_scene(1);
        req.mutable_pos()->set_x(x);
        EXPECT_EQ(g.call(uid, wire::R_SCENE_ENTER, pb(req)).status, wire::OK);
    };
    enter(g1, 1, 0);
    {
        // Gateway 2 comes and goes back within the grace period: B stays.
        auto g2 = std::make_unique<Gate>(node.port(), 2);
        enter(*g2, 2, 10);
        g2.reset();
        g2 = std::make_unique<Gate>(node.port(), 2);
        usleep(1500 * 1000); // past the grace period of the first connection
        EXPECT_EQ(aoi_pushes(g1, 1), (std::multiset<Aoi>{{1, K::ENTER, 2, 10, 0}}));
        // Then it goes for good: after the grace period A sees B leave.
    }
    const int64_t deadline = now_ms() + kReplyTimeoutMs;
    std::multiset<Aoi> got;
    while (got.empty() && now_ms() < deadline) {
        usleep(50 * 1000);
        got = aoi_pushes(g1, 1);
    }
    EXPECT_EQ(got, (std::multiset<Aoi>{{1, K::LEAVE, 2, -1, -1}}));
    // B is gone from the scene: a newcomer next to A sees A only.
    Gate g3(node.port(), 3);
    SceneEnterReq req;
    req.set_scene(1);
    req.mutable_pos()->set_x(20);
    Resp r = g3.call(3, wire::R_SCENE_ENTER, pb(req));
    ASSERT_EQ(r.status, wire::OK);
    SceneEnterResp resp;
    ASSERT_TRUE(resp.ParseFromString(r.body));
    ASSERT_EQ(resp.others_size(), 1);
    EXPECT_EQ(resp.others(0).uid(), 1u);
    EXPECT_EQ(node.stop(), 0);
}

// An entity remembers the session that entered or moved it last: a relogin's new session takes
// it over, and a late scene.leave or SESSION_END of the old one (a gateway tells the scene's node
// when a session ends) leaves it in place.
TEST(LogicNode, ALateLeaveOfAnOlderSessionLeavesTheSceneEntityInPlace)
{
    const int dbp = db_port();
    ASSERT_GT(dbp, 0);
    Logic node(logic_args("logic_scene_sessions", dbp, 100));
    ASSERT_GT(node.port(), 0);
    Gate g(node.port(), 1);
    auto enter = [&](uint64_t uid, int32_t x, uint64_t session) {
        Resp r = g.call(uid, wire::R_SCENE_ENTER, enter_req(3, x, 0), session);
        EXPECT_EQ(r.status, wire::OK);
        return others_in(r.body);
    };
    SceneLeaveReq lv;
    lv.set_scene(3);
    enter(7, 0, 1);
    enter(7, 5, 2); // the same uid, a newer session: a move, now the entity of session 2
    EXPECT_EQ(g.call(7, wire::R_SCENE_LEAVE, pb(lv), 1).status, wire::OK);
    EXPECT_EQ(g.session_end(7, 1).status, wire::OK);
    EXPECT_EQ(enter(8, 10, 1), std::set<uint64_t>{7}) << "an older session took out the newer one";
    EXPECT_EQ(g.session_end(7, 2).status, wire::OK);
    EXPECT_EQ(enter(9, 10, 1), std::set<uint64_t>{8}) << "the session's own end left it in place";
    // Scene 0 is no scene (proto3 cannot tell it from a missing id; gateways route by it).
    SceneEnterReq zero;
    zero.mutable_pos()->set_x(1);
    EXPECT_EQ(g.call(10, wire::R_SCENE_ENTER, pb(zero)).status, wire::BAD_PAYLOAD);
    EXPECT_EQ(node.stop(), 0);
}

TEST(LogicNode, AoiCellSizeComesFromTheEnvironmentWhenNoFlagIsGiven)
{
    const int dbp = db_port();
    ASSERT_GT(dbp, 0);
    Logic node(logic_args("logic_aoi_env", dbp), {"COHO_LOGIC_AOI_CELL=1000"});
    ASSERT_GT(node.port(), 0);
    Gate g(node.port(), 1);
    SceneEnterReq a;
    a.set_scene(1);
    ASSERT_EQ(g.call(1, wire::R_SCENE_ENTER, pb(a)).status, wire::OK);
    SceneEnterReq b;
    b.set_scene(1);
    b.mutable_pos()->set_x(1999); // cell 1 of 1000: a neighbour (cell 19 of 100 would not be)
    Resp r = g.call(2, wire::R_SCENE_ENTER, pb(b));
    ASSERT_EQ(r.status, wire::OK);
    SceneEnterResp resp;
    ASSERT_TRUE(resp.ParseFromString(r.body));
    ASSERT_EQ(resp.others_size(), 1);
    EXPECT_EQ(resp.others(0).uid(), 1u);
    EXPECT_EQ(node.stop(), 0);
}

// ---- the admin port ----

// One HTTP exchange with 127.0.0.1:port; the whole answer (head and body), read until the
// server closes (an HTTP/1.1 request must ask for that: the admin server keeps connections).
std::string http(int port, const std::string &request)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(uint16_t(port));
    std::string out;
    if (connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0 ||
        ::send(fd, request.data(), request.size(), MSG_NOSIGNAL) != ssize_t(request.size())) {
        ADD_FAILURE() << "admin port: " << strerror(errno);
        close(fd);
        return out;
    }
    timeval tv{20, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[4096];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof buf, 0)) > 0)
        out.append(buf, size_t(n));
    close(fd);
    return out;
}

std::string body_of(const std::string &resp)
{
    size_t p = resp.find("\r\n\r\n");
    return p == std::string::npos ? std::string() : resp.substr(p + 4);
}

TEST(LogicNode, AdminPortServesMetricsAndStats)
{
    const int dbp = db_port();
    ASSERT_GT(dbp, 0);
    auto args = logic_args("logic_admin", dbp);
    args.insert(args.end(), {"--admin", "127.0.0.1:0"});
    Logic node(args);
    ASSERT_GT(node.port(), 0);
    ASSERT_GT(node.admin_port(), 0) << "no 'listening admin' line";
    Gate g(node.port(), 1);
    ASSERT_EQ(g.load(8).status, wire::OK);
    for (int i = 0; i < 3; i++)
        EXPECT_EQ(g.call(8, wire::R_ECHO, "abcd").status, wire::OK);
    EXPECT_EQ(g.call(8, 999, "").status, wire::UNKNOWN_ROUTE);
    EXPECT_EQ(g.call(8, 12345, "").status, wire::UNKNOWN_ROUTE);

    const std::string resp =
        http(node.admin_port(), "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    ASSERT_EQ(resp.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << resp;
    EXPECT_NE(resp.find("Content-Type: text/plain; version=0.0.4"), std::string::npos);
    const std::string m = body_of(resp);
    for (const char *want : {
             "coho_logic_route_calls_total{route=\"1\"} 3\n",
             "coho_logic_route_in_bytes_total{route=\"1\"} 12\n",
             "coho_logic_route_out_bytes_total{route=\"1\"} 12\n",
             // Routes the node does not serve share one series: numbers are not labels.
             "coho_logic_route_errors_total{route=\"other\"} 2\n",
             "coho_logic_route_calls_total{route=\"other\"} 2\n",
             "coho_logic_route_latency_seconds_bucket{route=\"1\",le=\"+Inf\"} 3\n",
             "coho_logic_route_latency_seconds_count{route=\"1\"} 3\n",
             "coho_logic_players_loaded 1\n",
             "coho_logic_gateways 1\n",
             "# TYPE coho_logic_route_latency_seconds histogram\n",
         })
        EXPECT_NE(m.find(want), std::string::npos) << "missing: " << want << "\n" << m;
    EXPECT_EQ(m.find("route=\"999\""), std::string::npos) << m;
    EXPECT_EQ(m.find("route=\"12345\""), std::string::npos) << m;
    // Socket buffer memory: the gateway's connection holds chunks.
    for (const char *name :
         {"coho_logic_cbuf_chunks ", "coho_logic_cbuf_bytes ", "coho_logic_cbuf_idle_bytes "}) {
        size_t at = m.find(std::string("\n") + name);
        ASSERT_NE(at, std::string::npos) << name << "\n" << m;
        if (std::string(name) != "coho_logic_cbuf_idle_bytes ") {
            EXPECT_GT(std::stod(m.substr(at + 1 + strlen(name))), 0) << name << "\n" << m;
        }
    }
    // promtool (Debian's prometheus package) checks the exposition format when present.
    if (access("/usr/bin/promtool", X_OK) == 0) {
        char path[] = "/tmp/coho-logic-metrics.XXXXXX";
        int fd = mkstemp(path);
        ASSERT_GE(fd, 0);
        ASSERT_EQ(write(fd, m.data(), m.size()), ssize_t(m.size()));
        close(fd);
        const std::string cmd = std::string("/usr/bin/promtool check metrics < ") + path;
        EXPECT_EQ(std::system(cmd.c_str()), 0) << m;
        unlink(path);
    }
    const std::string stats = body_of(http(node.admin_port(), "GET /stats HTTP/1.0\r\n\r\n"));
    EXPECT_NE(stats.find("\"1\":{\"calls\":3,"), std::string::npos) << stats;
    EXPECT_NE(stats.find("\"other\":{\"calls\":2,"), std::string::npos) << stats;
    EXPECT_NE(stats.find("\"players\":1,"), std::string::npos) << stats;
    EXPECT_EQ(http(node.admin_port(), "GET /nope HTTP/1.0\r\n\r\n").rfind("HTTP/1.1 404", 0), 0u);
    EXPECT_EQ(http(node.admin_port(), "POST /metrics HTTP/1.0\r\n\r\n").rfind("HTTP/1.1 405", 0),
              0u);
    EXPECT_EQ(http(node.admin_port(), "garbage\r\n\r\n").rfind("HTTP/1.1 400", 0), 0u);
    EXPECT_EQ(g.call(8, wire::R_ECHO, "still").body, "still");
    EXPECT_EQ(node.stop(), 0);
}

TEST(LogicNode, AdminPortDumpsTheNodesCoroutines)
{
    const int dbp = db_port();
    ASSERT_GT(dbp, 0);
    auto args = logic_args("logic_admin_co", dbp);
    args.insert(args.end(), {"--admin", "127.0.0.1:0"});
    Logic node(args);
    ASSERT_GT(node.port(), 0);
    ASSERT_GT(node.admin_port(), 0) << "no 'listening admin' line";
    const std::string resp = http(node.admin_port(), "GET /coroutines HTTP/1.0\r\n\r\n");
    ASSERT_EQ(resp.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << resp;
    // The node's scheduler is registered under "logic", and it answers the dump although the
    // admin server runs on it too.
    const std::string body = body_of(resp);
    EXPECT_NE(body.find("== logic =="), std::string::npos) << body;
    EXPECT_EQ(body.find("no answer"), std::string::npos) << body;
    EXPECT_EQ(node.stop(), 0);
}

// The output (stdout and stderr) of `sh -c cmd`, and its exit status in *status.
std::string run_capture(const std::string &cmd, int *status)
{
    std::string out;
    FILE *f = popen((cmd + " 2>&1").c_str(), "r");
    char buf[4096];
    size_t n;
    if (f == nullptr)
        return "popen failed";
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        out.append(buf, n);
    const int st = pclose(f);
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return out;
}

// The debugging tools (tools/README.md, "Debugging coroutines") on a real coho-logic node:
// coho-top through its admin port's /coroutines, and coho-gdb.py's `coho list` attached to the
// process (when gdb is installed: tools/deps.sh test). Both must show the node's scheduler and
// its gateway listener parked in accept's poll.
TEST(LogicNode, DebugToolsSeeTheNodesCoroutines)
{
    const int dbp = db_port();
    ASSERT_GT(dbp, 0);
    auto args = logic_args("logic_debug_tools", dbp);
    args.insert(args.end(), {"--admin", "127.0.0.1:0"});
    Logic node(args);
    ASSERT_GT(node.port(), 0);
    ASSERT_GT(node.admin_port(), 0) << "no 'listening admin' line";
    int st = -1;
    std::string top =
        run_capture(std::string(COHO_TOP_TOOL) + " --once --timeout 60 --admin 127.0.0.1:" +
                        std::to_string(node.admin_port()),
                    &st);
    EXPECT_EQ(st, 0) << top;
    EXPECT_TRUE(std::regex_search(top, std::regex("^coho-top  admin 127.0.0.1:[0-9]+ "))) << top;
    EXPECT_TRUE(std::regex_search(top, std::regex("\nlogic \\(0x[0-9a-f]+\\): [0-9]+ coroutines")))
        << top;
    EXPECT_TRUE(std::regex_search(top, std::regex("\nlongest parked \\([0-9]+ of [0-9]+\\)\n")))
        << top;
    EXPECT_TRUE(std::regex_search(top, std::regex("\n +[0-9]+ +logic +[0-9]+ +[^\n]*poll nfds=")))
        << top;

    if (std::system("gdb --version >/dev/null 2>&1") != 0) {
        EXPECT_EQ(node.stop(), 0);
        GTEST_SKIP() << "gdb is not installed (tools/deps.sh test): coho-gdb.py not checked";
    }
    std::string list = run_capture("gdb -nx -batch -q -p " + std::to_string(node.pid()) +
                                       " -x " COHO_GDB_SCRIPT " -ex 'coho list'",
                                   &st);
    EXPECT_TRUE(std::regex_search(
        list, std::regex("scheduler 0 at 0x[0-9a-f]+, thread [0-9]+ \\(tid [0-9]+\\): [0-9]+ "
                         "coroutines")))
        << list;
    EXPECT_TRUE(std::regex_search(list, std::regex("\n  [0-9]+ +[^\n]* +parked +poll nfds=1 ")))
        << list;
    EXPECT_EQ(list.find("Python Exception"), std::string::npos) << list;
    EXPECT_EQ(list.find("Error occurred"), std::string::npos) << list;
    // detached again: the node still serves and stops cleanly
    EXPECT_EQ(node.stop(), 0);
}

TEST(LogicNode, AdminMetricsPassPromtoolAfterTraffic)
{
    if (access("/usr/bin/promtool", X_OK) != 0)
        GTEST_SKIP() << "no /usr/bin/promtool";
    const int dbp = db_port();
    ASSERT_GT(dbp, 0);
    auto args = logic_args("logic_admin_prom", dbp);
    args.insert(args.end(), {"--admin", "127.0.0.1:0"});
    Logic node(args);
    ASSERT_GT(node.port(), 0);
    ASSERT_GT(node.admin_port(), 0) << "no 'listening admin' line";
    Gate g(node.port(), 1);
    ASSERT_EQ(g.load(9).status, wire::OK);
    EXPECT_EQ(g.call(9, wire::R_ECHO, "x").status, wire::OK);
    EXPECT_EQ(g.call(9, 998, "").status, wire::UNKNOWN_ROUTE);
    const std::string m = body_of(http(node.admin_port(), "GET /metrics HTTP/1.0\r\n\r\n"));
    ASSERT_NE(m.find("coho_logic_route_calls_total{route=\"other\"} 1\n"), std::string::npos) << m;
    char path[] = "/tmp/coho-logic-metrics.XXXXXX";
    int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(write(fd, m.data(), m.size()), ssize_t(m.size()));
    close(fd);
    const std::string cmd = std::string("/usr/bin/promtool check metrics < ") + path;
    EXPECT_EQ(std::system(cmd.c_str()), 0) << m;
    unlink(path);
    EXPECT_EQ(node.stop(), 0);
}

// ---- the command line ----

TEST(LogicNode, BadFlagsExitWithOneAndHelpWithZero)
{
    const std::vector<std::vector<std::string>> bad = {
        {"--listen", "127.0.0.1:0"}, // no --db
        {"--db", "127.0.0.1:3306"},  // no --listen
        {"--listen", "nocolon", "--db", "127.0.0.1:3306"},
        {"--listen", "127.0.0.1:0", "--db", "127.0.0.1:99999"},
        {"--listen", "127.0.0.1:0", "--db", "127.0.0.1:3306", "--db-name", "bad-name"},
        {"--listen", "127.0.0.1:0", "--db", "127.0.0.1:3306", "--aoi-cell", "0"},
        {"--listen", "127.0.0.1:0", "--db", "127.0.0.1:3306", "--aoi-cell", "-100"},
        {"--listen", "127.0.0.1:0", "--db", "127.0.0.1:3306", "--scene-size", "0"},
        {"--listen", "127.0.0.1:0", "--db", "127.0.0.1:3306", "--scene-size", "-1"},
        {"--listen", "127.0.0.1:0", "--db", "127.0.0.1:3306", "--aoi-tick-ms", "10001"},
        {"--listen", "127.0.0.1:0", "--db", "127.0.0.1:3306", "--node-id", "x"},
        {"--listen", "127.0.0.1:0", "--db", "127.0.0.1:3306", "--log-level", "loud"},
        {"--listen", "127.0.0.1:0", "--db", "127.0.0.1:3306", "--frobnicate"},
        {"--listen", "300.1.1.1:0", "--db", "127.0.0.1:3306"}, // not an address: cannot listen
        {"--listen", "127.0.0.1:0", "--db", "127.0.0.1:3306", "--admin", "nope"},
        {"--listen", "127.0.0.1:0", "--db", "127.0.0.1:3306", "--gate-grace-ms", "99999999999"},
        {"--listen", "127.0.0.1:0", "--db", "127.0.0.1:3306", "--admin", "300.1.1.1:0"},
    };
    for (auto &args : bad) {
        Logic p(args);
        EXPECT_EQ(p.wait(20000), 1) << args.back();
    }
    Logic help({"--help"});
    EXPECT_EQ(help.wait(20000), 0);
}

} // namespace

// ---- persistence (game/README.md "Persistence") ----

// What the database holds for a player: read by the test's own connection.
struct DbRow {
    int64_t counter = 0;
    uint64_t version = 0;
    std::string name;
};

// Every row of `db`.players, or nullopt when the server cannot be read now.
std::optional<std::map<uint64_t, DbRow>> read_players(int port, const std::string &db)
{
    MYSQL *m = mysql_init(nullptr);
    if (m == nullptr)
        return std::nullopt;
    unsigned t = 10;
    mysql_options(m, MYSQL_OPT_CONNECT_TIMEOUT, &t);
    mysql_options(m, MYSQL_OPT_READ_TIMEOUT, &t);
    std::optional<std::map<uint64_t, DbRow>> out;
    const std::string q = "SELECT uid, counter, version, name FROM `" + db + "`.players";
    if (mysql_real_connect(m, "127.0.0.1", "root", "", nullptr, unsigned(port), nullptr, 0) &&
        mysql_query(m, q.c_str()) == 0) {
        if (MYSQL_RES *res = mysql_store_result(m)) {
            out.emplace();
            while (MYSQL_ROW r = mysql_fetch_row(res))
                (*out)[std::strtoull(r[0], nullptr, 10)] = {std::strtoll(r[1], nullptr, 10),
                                                            std::strtoull(r[2], nullptr, 10), r[3]};
            mysql_free_result(res);
        }
    }
    mysql_close(m);
    return out;
}

// Polls `cond` every 50 ms for up to `ms`.
template <class F>
bool wait_until(F cond, int ms = 60000)
{
    const int64_t deadline = now_ms() + ms;
    while (!cond()) {
        if (now_ms() > deadline)
            return false;
        usleep(50000);
    }
    return true;
}

// The value of one series on the node's /metrics (-1 when missing).
double metric(int admin_port, const std::string &series)
{
    const std::string m =
        body_of(http(admin_port, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
    const std::string key = "\n" + series + " ";
    const size_t p = m.find(key);
    return p == std::string::npos ? -1 : std::strtod(m.c_str() + p + key.size(), nullptr);
}

std::string servers_dir()
{
    const char *dir = std::getenv("COHO_TEST_SERVERS");
    return dir != nullptr ? dir : "/tmp";
}

// A mariadbd of the test's own (test/support/servers/mariadb.sh), which it may kill -9 and
// start again on the same datadir and port.
class OwnMariadb {
public:
    OwnMariadb()
    {
        char d[] = "/tmp/coho-logic-own-db.XXXXXX";
        if (mkdtemp(d) == nullptr) {
            ADD_FAILURE() << "mkdtemp: " << strerror(errno);
            return;
        }
        dir_ = d;
        if (script("start") != 0) {
            ADD_FAILURE() << "mariadb.sh start failed (" << dir_ << "/script.log)";
            return;
        }
        std::ifstream in(dir_ + "/mariadb.port");
        in >> port_;
    }
    ~OwnMariadb()
    {
        if (dir_.empty())
            return;
        script("stop");
        std::system(("rm -rf '" + dir_ + "'").c_str());
    }
    int port() const { return port_; }
    void kill9()
    {
        std::ifstream in(dir_ + "/mariadb.pid");
        pid_t pid = 0;
        ASSERT_TRUE(in >> pid) << "no mariadbd pid";
        ASSERT_EQ(kill(pid, SIGKILL), 0) << strerror(errno);
        // Gone (or a zombie, for its parent to reap).
        EXPECT_TRUE(wait_until([&] {
            std::ifstream st("/proc/" + std::to_string(pid) + "/stat");
            std::string line;
            if (!std::getline(st, line))
                return true;
            const size_t rp = line.rfind(')');
            return rp != std::string::npos && rp + 2 < line.size() && line[rp + 2] == 'Z';
        }));
    }
    bool restart() { return script("restart") == 0; }

private:
    int script(const char *action)
    {
        const std::string cmd = std::string(COHO_MARIADB_SH) + " " + action + " '" + dir_ + "' " +
                                COHO_DELAYD_BIN + " >>'" + dir_ + "/script.log' 2>&1";
        return std::system(cmd.c_str());
    }
    std::string dir_;
    int port_ = -1;
};

// The node's arguments for a persistence test: a journal and error file named by the test.
std::vector<std::string> persist_args(const std::string &db_name, int dbp,
                                      const std::string &journal,
                                      std::vector<std::string> extra = {})
{
    std::vector<std::string> a{"--listen",       "127.0.0.1:0",
                               "--db",           "127.0.0.1:" + std::to_string(dbp),
                               "--db-name",      db_name + "_" + std::to_string(getpid()),
                               "--db-timeout-s", "10",
                               "--journal",      journal,
                               "--admin",        "127.0.0.1:0"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
}

std::string journal_path(const std::string &name)
{
    const std::string p = servers_dir() + "/" + name + "_" + std::to_string(getpid()) + ".journal";
    unlink(p.c_str());
    unlink((p + ".errors").c_str());
    return p;
}

// Adds of delta 1 to players, pipelined, with what came back: per uid, the counters the
// acknowledged adds reported.
class AddRun {
public:
    AddRun(Gate &g, std::vector<uint64_t> uids) : g_(g), uids_(std::move(uids)) {}
    // Sends `n` adds (round-robin over the uids) without reading.
    void send(int n)
    {
        std::string burst;
        for (int i = 0; i < n; i++) {
            const uint64_t uid = uids_[size_t(next_++) % uids_.size()];
            PlayerAddReq req;
            req.set_delta(1);
            burst += node::frame(node::CALL, seq_, wire::R_PLAYER_ADD,
                                 node::uid_session(uid, 1, pb(req)));
            uid_of_[seq_++] = uid;
            sent_[uid]++;
        }
        g_.send_raw(burst);
        pending_ += size_t(n);
    }
    // Reads the replies of what was sent; every one must be OK.
    void collect()
    {
        std::map<uint64_t, Resp> got = g_.responses(pending_);
        pending_ = 0;
        for (auto &[seq, r] : got) {
            ASSERT_EQ(r.status, wire::OK) << "add " << seq;
            PlayerAddResp resp;
            ASSERT_TRUE(resp.ParseFromString(r.body));
            EXPECT_TRUE(acked_[uid_of_[seq]].insert(resp.counter()).second)
                << "two adds reported the same counter";
        }
    }
    void round(int n)
    {
        send(n);
        collect();
    }
    // Acknowledged adds of `uid`: their counters must be exactly 1..count.
    int64_t acked(uint64_t uid)
    {
        const std::set<int64_t> &s = acked_[uid];
        EXPECT_TRUE(s.empty() || (*s.begin() == 1 && *s.rbegin() == int64_t(s.size())))
            << "uid " << uid << ": acknowledged counters are not 1.." << s.size();
        return int64_t(s.size());
    }
    int64_t sent(uint64_t uid) { return sent_[uid]; }
    const std::vector<uint64_t> &uids() const { return uids_; }

private:
    Gate &g_;
    std::vector<uint64_t> uids_;
    uint64_t seq_ = 1000, next_ = 0;
    size_t pending_ = 0;
    std::map<uint64_t, uint64_t> uid_of_;
    std::map<uint64_t, int64_t> sent_;
    std::map<uint64_t, std::set<int64_t>> acked_;
};

// kill -9 mariadbd while saves run, then start it again: every acknowledged add is in the
// database afterwards, once (adds of 1: the saved counter is the number of adds).
TEST(LogicPersist, EveryAcknowledgedSaveSurvivesMariadbKilledMidRun)
{
    OwnMariadb db;
    ASSERT_GT(db.port(), 0);
    const std::string name = "persist_dbkill", journal = journal_path(name);
    Logic node(
        persist_args(name, db.port(), journal, {"--db-retries", "3", "--db-backoff-ms", "20"}));
    ASSERT_GT(node.port(), 0);
    ASSERT_GT(node.admin_port(), 0);
    Gate g(node.port(), 1);
    AddRun run(g, {1, 2, 3, 4, 5, 6, 7, 8});
    for (uint64_t uid : run.uids())
        ASSERT_EQ(g.load(uid).status, wire::OK);
    for (int i = 0; i < 5; i++)
        run.round(40);
    run.send(40);
    db.kill9(); // saves of those adds are on their way
    run.collect();
    for (int i = 0; i < 5; i++)
        run.round(40); // acknowledged once journaled
    EXPECT_GT(metric(node.admin_port(), "coho_logic_journal_saves"), 0);
    ASSERT_TRUE(db.restart());
    for (int i = 0; i < 5; i++)
        run.round(40);
    ASSERT_FALSE(HasFailure());
    const std::string dbname = name + "_" + std::to_string(getpid());
    std::map<uint64_t, DbRow> rows;
    EXPECT_TRUE(wait_until([&] {
        auto r = read_players(db.port(), dbname);
        if (!r)
            return false;
        rows = *r;
        for (uint64_t uid : run.uids())
            if (rows[uid].counter != run.sent(uid))
                return false;
        return true;
    })) << "the database did not catch up";
    for (uint64_t uid : run.uids()) {
        EXPECT_EQ(run.acked(uid), run.sent(uid)) << "every add was acknowledged, uid " << uid;
        EXPECT_EQ(rows[uid].counter, run.sent(uid)) << "uid " << uid;
    }
    EXPECT_GT(metric(node.admin_port(), "coho_logic_saves_journaled_total"), 0);
    EXPECT_TRUE(
        wait_until([&] { return metric(node.admin_port(), "coho_logic_journal_saves") == 0; }));
    EXPECT_GT(metric(node.admin_port(), "coho_logic_saves_replayed_total"), 0);
    EXPECT_EQ(node.stop(), 0);
    unlink(journal.c_str());
    unlink((journal + ".errors").c_str());
}

// The node killed -9 while the database is away (its saves in the journal) and in the middle
// of a burst of adds: the next node on the same journal replays it first.
TEST(LogicPersist, JournaledSavesAreReplayedWhenANodeKilledMidRunStartsAgain)
{
    const int dbp = db_port();
    ASSERT_GT(dbp, 0);
    CuttableProxy proxy(dbp);
    ASSERT_GT(proxy.port(), 0);
    const std::string name = "persist_nodekill", journal = journal_path(name);
    const std::vector<std::string> flags = {"--db-retries", "1", "--db-backoff-ms", "10"};
    std::map<uint64_t, int64_t> acked, sent;
    {
        Logic node(persist_args(name, proxy.port(), journal, flags));
        ASSERT_GT(node.port(), 0);
        Gate g(node.port(), 1);
        AddRun run(g, {11, 12, 13, 14});
        for (uint64_t uid : run.uids())
            ASSERT_EQ(g.load(uid).status, wire::OK);
        for (int i = 0; i < 3; i++)
            run.round(20);
        proxy.set_down(true);
        for (int i = 0; i < 3; i++)
            run.round(20);
        EXPECT_GT(metric(node.admin_port(), "coho_logic_journal_saves"), 0);
        run.send(20);
        node.kill9();
        for (uint64_t uid : run.uids()) {
            acked[uid] = run.acked(uid);
            sent[uid] = run.sent(uid);
        }
    }
    ASSERT_FALSE(HasFailure());
    struct stat st {};
    ASSERT_EQ(stat(journal.c_str(), &st), 0);
    EXPECT_GT(st.st_size, 30) << "the journal holds the saves made while the database was away";
    Logic node(persist_args(name, dbp, journal, flags));
    ASSERT_GT(node.port(), 0);
    const std::string dbname = name + "_" + std::to_string(getpid());
    std::map<uint64_t, DbRow> rows;
    EXPECT_TRUE(wait_until([&] {
        auto r = read_players(dbp, dbname);
        if (!r)
            return false;
        rows = *r;
        for (auto &[uid, n] : acked)
            if (rows[uid].counter < n)
                return false;
        return true;
    })) << "the journal was not replayed";
    for (auto &[uid, n] : acked) {
        EXPECT_GE(rows[uid].counter, n) << "an acknowledged add was lost, uid " << uid;
        EXPECT_LE(rows[uid].counter, sent[uid]) << "an add was applied twice, uid " << uid;
    }
    EXPECT_TRUE(
        wait_until([&] { return metric(node.admin_port(), "coho_logic_journal_saves") == 0; }));
    EXPECT_GT(metric(node.admin_port(), "coho_logic_saves_replayed_total"), 0);
    ASSERT_EQ(stat(journal.c_str(), &st), 0);
    EXPECT_EQ(st.st_size, off_t(std::strlen("coho-logic journal v1\n"))) << "replayed: emptied";
    Gate g(node.port(), 1);
    EXPECT_EQ(get_player(g, 11).counter(), rows[11].counter);
    EXPECT_EQ(add(g, 11, 1), rows[11].counter + 1);
    EXPECT_EQ(node.stop(), 0);
    unlink(journal.c_str());
    unlink((journal + ".errors").c_str());
}

std::vector<std::string> lines_of(const std::string &path)
{
    std::ifstream in(path);
    std::vector<std::string> v;
    for (std::string l; std::getline(in, l);)
        v.push_back(l);
    return v;
}

// A name longer than its column: MariaDB refuses the save (an SQL error, not a network one).
// The add gets status 6, the save goes to the error file with its statement, once; the other
// saves of the same flush are made; the player keeps what was saved.
TEST(LogicPersist, AValueTooLongForItsColumnGoesToTheErrorFileOnce)
{
    const int dbp = db_port();
    ASSERT_GT(dbp, 0);
    const std::string name = "persist_sqlerr", journal = journal_path(name);
    Logic node(persist_args(name, dbp, journal, {"--save-interval-ms", "200"}));
    ASSERT_GT(node.port(), 0);
    Gate g(node.port(), 1);
    for (uint64_t uid : {1, 2, 3})
        ASSERT_EQ(g.load(uid).status, wire::OK);
    PlayerAddReq ok;
    ok.set_delta(5);
    ok.set_name("ok");
    ASSERT_EQ(g.call(1, wire::R_PLAYER_ADD, pb(ok)).status, wire::OK);
    // One flush: a bad save among good ones.
    PlayerAddReq bad, one, fine;
    bad.set_delta(1);
    bad.set_name(std::string(40, 'x'));
    one.set_delta(1);
    fine.set_delta(1);
    fine.set_name(std::string(32, 'y'));
    g.send_raw(node::frame(node::CALL, 501, wire::R_PLAYER_ADD, node::uid_session(1, 1, pb(bad))) +
               node::frame(node::CALL, 502, wire::R_PLAYER_ADD, node::uid_session(2, 1, pb(one))) +
               node::frame(node::CALL, 503, wire::R_PLAYER_ADD, node::uid_session(3, 1, pb(fine))));
    std::map<uint64_t, Resp> got = g.responses(3);
    EXPECT_EQ(got[501].status, wire::BAD_PAYLOAD) << "too long for the column";
    EXPECT_EQ(got[502].status, wire::OK);
    EXPECT_EQ(got[503].status, wire::OK);
    coho::game::Player p1 = get_player(g, 1);
    EXPECT_EQ(p1.counter(), 5) << "the refused change is undone";
    EXPECT_EQ(p1.name(), "ok");
    EXPECT_EQ(get_player(g, 3).name(), std::string(32, 'y'));
    EXPECT_EQ(add(g, 1, 1), 6) << "the player goes on";
    const std::vector<std::string> errs = lines_of(journal + ".errors");
    ASSERT_EQ(errs.size(), 1u);
    EXPECT_NE(errs[0].find("code=1406"), std::string::npos) << errs[0];
    EXPECT_NE(errs[0].find("save_player 1 6 "), std::string::npos) << errs[0];
    EXPECT_NE(errs[0].find("sql=INSERT INTO players"), std::string::npos) << errs[0];
    EXPECT_EQ(metric(node.admin_port(), "coho_logic_save_sql_errors_total"), 1);
    EXPECT_EQ(metric(node.admin_port(), "coho_logic_save_retries_total"), 0) << "never retried";
    EXPECT_EQ(node.stop(), 0);
    EXPECT_EQ(lines_of(journal + ".errors").size(), 1u) << "not retried at the stop either";
    auto rows = read_players(dbp, name + "_" + std::to_string(getpid()));
    ASSERT_TRUE(rows);
    EXPECT_EQ((*rows)[1].counter, 6);
    EXPECT_EQ((*rows)[1].name, "ok");
    EXPECT_EQ((*rows)[2].counter, 1);
    unlink(journal.c_str());
    unlink((journal + ".errors").c_str());
}

// Write-behind: 100 adds of one player within one save interval are one save; the query
// metrics are on /metrics.
TEST(LogicPersist, APlayerChangedManyTimesBetweenSavesIsSavedOnce)
{
    const int dbp = db_port();
    ASSERT_GT(dbp, 0);
    const std::string name = "persist_once", journal = journal_path(name);
    Logic node(persist_args(name, dbp, journal, {"--save-interval-ms", "1000"}));
    ASSERT_GT(node.port(), 0);
    Gate g(node.port(), 1);
    ASSERT_EQ(g.load(7).status, wire::OK);
    AddRun run(g, {7});
    run.round(100);
    EXPECT_EQ(run.acked(7), 100);
    const double saves = metric(node.admin_port(), "coho_logic_saves_total");
    EXPECT_LE(saves, 2) << "adds made while a save waits join it";
    std::printf("100 adds of one player: %.0f saves; write latency p99 %.6f s\n", saves,
                metric(node.admin_port(),
                       "coho_logic_db_query_latency_seconds{kind=\"write\",stat=\"p99\"}"));
    auto rows = read_players(dbp, name + "_" + std::to_string(getpid()));
    ASSERT_TRUE(rows);
    EXPECT_EQ((*rows)[7].counter, 100);
    const int ap = node.admin_port();
    EXPECT_GE(metric(ap, "coho_logic_db_queries_total{kind=\"write\"}"), 2); // login, save
    EXPECT_GE(metric(ap, "coho_logic_db_queries_total{kind=\"read\"}"), 1);
    for (const char *stat : {"min", "avg", "max", "p99"})
        EXPECT_GT(metric(ap, std::string("coho_logic_db_query_latency_seconds{kind=\"write\","
                                         "stat=\"") +
                                 stat + "\"}"),
                  0)
            << stat;
    EXPECT_EQ(metric(ap, "coho_logic_dirty_players"), 0);
    EXPECT_EQ(metric(ap, "coho_logic_journal_bytes"), 0);
    EXPECT_EQ(node.stop(), 0);
    unlink(journal.c_str());
    unlink((journal + ".errors").c_str());
}

// A dirty set of 4 players: changes to more wait for the saver (which flushes a full set at
// once, not after its interval), and nothing is lost.
TEST(LogicPersist, AFullDirtySetMakesChangesWaitAndLosesNothing)
{
    const int dbp = db_port();
    ASSERT_GT(dbp, 0);
    const std::string name = "persist_bound", journal = journal_path(name);
    Logic node(
        persist_args(name, dbp, journal, {"--dirty-max", "4", "--save-interval-ms", "2000"}));
    ASSERT_GT(node.port(), 0);
    Gate g(node.port(), 1);
    std::vector<uint64_t> uids;
    for (uint64_t uid = 100; uid < 140; uid++) {
        ASSERT_EQ(g.load(uid).status, wire::OK);
        uids.push_back(uid);
    }
    AddRun run(g, uids);
    run.round(40);
    for (uint64_t uid = 100; uid < 140; uid++)
        EXPECT_EQ(run.acked(uid), 1);
    EXPECT_GT(metric(node.admin_port(), "coho_logic_dirty_waits_total"), 0);
    auto rows = read_players(dbp, name + "_" + std::to_string(getpid()));
    ASSERT_TRUE(rows);
    for (uint64_t uid = 100; uid < 140; uid++)
        EXPECT_EQ((*rows)[uid].counter, 1) << uid;
    EXPECT_EQ(node.stop(), 0);
    unlink(journal.c_str());
    unlink((journal + ".errors").c_str());
}

// Idle connections are pinged; one the server dropped fails its ping and is replaced.
TEST(LogicPersist, IdleConnectionsArePingedAndADeadOneIsReplaced)
{
    const int dbp = db_port();
    ASSERT_GT(dbp, 0);
    CuttableProxy proxy(dbp);
    ASSERT_GT(proxy.port(), 0);
    const std::string name = "persist_ping", journal = journal_path(name);
    Logic node(persist_args(name, proxy.port(), journal, {"--db-ping-ms", "200"}));
    ASSERT_GT(node.port(), 0);
    const int ap = node.admin_port();
    Gate g(node.port(), 1);
    ASSERT_EQ(g.load(1).status, wire::OK); // one connection, idle from now on
    EXPECT_TRUE(wait_until([&] { return metric(ap, "coho_logic_db_pings_total") >= 2; }));
    EXPECT_EQ(metric(ap, "coho_logic_db_dead_connections_replaced_total"), 0);
    proxy.set_down(true);
    EXPECT_TRUE(wait_until(
        [&] { return metric(ap, "coho_logic_db_dead_connections_replaced_total") >= 1; }));
    proxy.set_down(false);
    EXPECT_TRUE(wait_until([&] { return metric(ap, "coho_logic_db_connections_idle") >= 1; }))
        << "a new connection replaces the dead one";
    EXPECT_EQ(get_player(g, 1).logins(), 1u);
    EXPECT_EQ(node.stop(), 0);
    unlink(journal.c_str());
    unlink((journal + ".errors").c_str());
}

std::string hex_of(const std::string &s)
{
    std::string h;
    char b[3];
    for (unsigned char c : s) {
        std::snprintf(b, sizeof b, "%02x", c);
        h += b;
    }
    return h;
}

// FNV-1a 64, as the journal's records carry it.
std::string journal_record(const std::string &body)
{
    uint64_t h = 14695981039346656037ull;
    for (unsigned char c : body) {
        h ^= c;
        h *= 1099511628211ull;
    }
    char sum[17];
    std::snprintf(sum, sizeof sum, "%016llx", static_cast<unsigned long long>(h));
    return std::string(sum) + " " + body + "\n";
}

// A journal as a crash leaves it: good records, then a torn one (never acknowledged). The
// good ones are replayed, the torn one cut; an older save after a newer one changes nothing;
// one the database refuses goes to the error file; a second node cannot take a journal in
// use, nor a file that is not a journal.
TEST(LogicPersist, AJournalWithATornLastRecordIsReplayedAndLocked)
{
    const int dbp = db_port();
    ASSERT_GT(dbp, 0);
    const std::string name = "persist_torn", journal = journal_path(name);
    {
        std::ofstream out(journal);
        out << "coho-logic journal v1\n"
            << journal_record("save_player 9 70 5 6e696e65") // name "nine"
            << journal_record("save_player 9 60 4 -")        // older: ignored
            << journal_record("save_player 10 -3 2 -")
            << journal_record("save_player 12 5 1 " + hex_of(std::string(100, 'z'))) // too long
            << journal_record("save_player 11 1 1 -").substr(0, 20);                 // torn
    }
    Logic node(persist_args(name, dbp, journal));
    ASSERT_GT(node.port(), 0);
    const std::string dbname = name + "_" + std::to_string(getpid());
    std::map<uint64_t, DbRow> rows;
    EXPECT_TRUE(wait_until([&] {
        auto r = read_players(dbp, dbname);
        if (r)
            rows = *r;
        // The refused save reaches the error file on its own schedule: wait for it too.
        return r && rows.count(9) != 0 && rows.count(10) != 0 &&
               !lines_of(journal + ".errors").empty();
    }));
    EXPECT_EQ(rows[9].counter, 70);
    EXPECT_EQ(rows[9].version, 5u);
    EXPECT_EQ(rows[9].name, "nine");
    EXPECT_EQ(rows[10].counter, -3);
    EXPECT_EQ(rows.count(11), 0u) << "the torn record is not replayed";
    EXPECT_EQ(rows.count(12), 0u) << "refused by the database";
    const std::vector<std::string> errs = lines_of(journal + ".errors");
    ASSERT_EQ(errs.size(), 1u) << "a replayed save the database refuses goes to the error file";
    EXPECT_NE(errs[0].find("code=1406"), std::string::npos) << errs[0];
    EXPECT_NE(errs[0].find("save_player 12 5 1 "), std::string::npos) << errs[0];

    Logic second(persist_args(name, dbp, journal));
    EXPECT_EQ(second.wait(20000), 1) << "the journal is locked by the first node";
    const std::string other = journal + ".not";
    {
        std::ofstream out(other);
        out << "something else\n";
    }
    Logic third(persist_args(name, dbp, other));
    EXPECT_EQ(third.wait(20000), 1) << "not a journal";
    unlink(other.c_str());
    unlink((other + ".errors").c_str());

    Gate g(node.port(), 1);
    EXPECT_EQ(add(g, 9, 1), 71);
    EXPECT_EQ(node.stop(), 0);
    unlink(journal.c_str());
    unlink((journal + ".errors").c_str());
}

// ---- scenes across nodes, behind a real gateway ----
//
// Two logic nodes on one database and coho-gate in front of them: scene calls are routed by the
// scene id (one node owns a scene), everything else by the uid.
#ifdef COHO_GATE_BIN

namespace {

namespace gh = coho_test::gate_harness;

struct SceneCluster {
    std::unique_ptr<Logic> a, b;
    std::unique_ptr<gh::GateProc> gate;
    std::string addr_a, addr_b;

    explicit SceneCluster(const std::string &db)
    {
        const int dbp = db_port();
        if (dbp <= 0)
            return;
        a = std::make_unique<Logic>(logic_args(db, dbp, 100));
        b = std::make_unique<Logic>(logic_args(db, dbp, 100));
        if (a->port() <= 0 || b->port() <= 0)
            return;
        addr_a = "127.0.0.1:" + std::to_string(a->port());
        addr_b = "127.0.0.1:" + std::to_string(b->port());
        gate = std::make_unique<gh::GateProc>(gh::GateProc::args({addr_a, addr_b}));
    }
    bool up() const { return gate && gate->tcp > 0; }
    // 0 when node a owns `key` (a uid, or scene_key(scene)) with both up, 1 when node b does.
    int owner(uint64_t key) const
    {
        return rendezvous_pick({fnv1a(addr_a), fnv1a(addr_b)}, {true, true}, key);
    }
    // The first uid from `from` that node `node` owns.
    uint64_t uid_on(int node, uint64_t from) const
    {
        while (owner(from) != node)
            from++;
        return from;
    }
    uint32_t scene_on(int node) const
    {
        uint32_t s = 1;
        while (owner(scene_key(s)) != node)
            s++;
        return s;
    }
};

uint32_t call_status(gh::Client &c, uint16_t route, const std::string &payload)
{
    auto f = c.call(route, payload);
    return f ? f->status() : ~0u;
}

// Reads `c`'s pushes (those kept while it read replies first) until an AOI push of `scene`
// names `who` in one of its lists (`kinds`: "e" entered, "m" moved, "l" left); false if none
// came within kReplyTimeoutMs.
bool saw(gh::Client &c, uint32_t scene, uint64_t who, const std::string &kinds)
{
    const int64_t deadline = now_ms() + kReplyTimeoutMs;
    size_t next = 0;
    for (;;) {
        for (; next < c.pushes.size(); next++) {
            const std::string &body = c.pushes[next].body;
            if (body.size() < 2 || get_u16((const unsigned char *)body.data()) != wire::R_SCENE_AOI)
                continue;
            AoiBatch b;
            if (!b.ParseFromString(body.substr(2)) || b.scene() != scene)
                continue;
            auto names = [&](const google::protobuf::RepeatedPtrField<Entity> &l) {
                for (auto &e : l)
                    if (e.uid() == who)
                        return true;
                return false;
            };
            if ((kinds.find('e') != std::string::npos && names(b.entered())) ||
                (kinds.find('m') != std::string::npos && names(b.moved())) ||
                (kinds.find('l') != std::string::npos && names(b.left())))
                return true;
        }
        if (now_ms() >= deadline)
            return false;
        auto f = c.read(); // up to the client's 5 s receive timeout
        if (f && f->type == wire::PUSH)
            c.pushes.push_back(*f);
    }
}

TEST(SceneCluster, PlayersOfTwoNodesInOneSceneSeeEachOther)
{
    SceneCluster cl("scene_two");
    ASSERT_TRUE(cl.up());
    const uint64_t u1 = cl.uid_on(0, 1000), u2 = cl.uid_on(1, 1000);
    const uint32_t scene = cl.scene_on(0);
    gh::Client c1(cl.gate->tcp), c2(cl.gate->tcp);
    ASSERT_EQ(c1.login(u1), wire::OK);
    ASSERT_EQ(c2.login(u2), wire::OK);
    ASSERT_EQ(call_status(c1, wire::R_SCENE_ENTER, enter_req(scene, 10, 10)), wire::OK);
    auto f = c2.call(wire::R_SCENE_ENTER, enter_req(scene, 20, 20));
    ASSERT_TRUE(f);
    ASSERT_EQ(f->status(), wire::OK);
    EXPECT_EQ(others_in(f->body.substr(4)), std::set<uint64_t>{u1})
        << "u2 does not see u1, whose uid is on the other node";
    EXPECT_TRUE(saw(c1, scene, u2, "e")) << "u1 was not told that u2 entered";
    ASSERT_EQ(call_status(c1, wire::R_SCENE_MOVE, move_req(scene, 15, 15)), wire::OK);
    EXPECT_TRUE(saw(c2, scene, u1, "m")) << "u2 was not told that u1 moved";
    ASSERT_EQ(call_status(c2, wire::R_SCENE_MOVE, move_req(scene, 25, 25)), wire::OK);
    EXPECT_TRUE(saw(c1, scene, u2, "m")) << "u1 was not told that u2 moved";
}

TEST(SceneCluster, APlayerWhoseSessionEndsLeavesTheSceneOnTheScenesNode)
{
    SceneCluster cl("scene_end");
    ASSERT_TRUE(cl.up());
    // The scene on node a, u2's uid on node b: only the gateway can tell a that u2 is gone.
    const uint64_t u1 = cl.uid_on(0, 2000), u2 = cl.uid_on(1, 2000);
    const uint32_t scene = cl.scene_on(0);
    gh::Client c1(cl.gate->tcp);
    ASSERT_EQ(c1.login(u1), wire::OK);
    ASSERT_EQ(call_status(c1, wire::R_SCENE_ENTER, enter_req(scene, 10, 10)), wire::OK);
    {
        gh::Client c2(cl.gate->tcp);
        ASSERT_EQ(c2.login(u2), wire::OK);
        ASSERT_EQ(call_status(c2, wire::R_SCENE_ENTER, enter_req(scene, 20, 20)), wire::OK);
        EXPECT_TRUE(saw(c1, scene, u2, "e"));
        ASSERT_TRUE(c2.send(wire::LOGOUT, 9));
        auto f = c2.reply();
        ASSERT_TRUE(f);
        EXPECT_EQ(f->type, wire::LOGOUT | wire::kResponse);
    }
    EXPECT_TRUE(saw(c1, scene, u2, "l")) << "u2's session ended and it stayed in the scene";
    // And it is gone from the scene's grid: a newcomer sees u1 only.
    gh::Client c3(cl.gate->tcp);
    const uint64_t u3 = cl.uid_on(1, u2 + 1);
    ASSERT_EQ(c3.login(u3), wire::OK);
    auto f = c3.call(wire::R_SCENE_ENTER, enter_req(scene, 30, 30));
    ASSERT_TRUE(f);
    ASSERT_EQ(f->status(), wire::OK);
    EXPECT_EQ(others_in(f->body.substr(4)), std::set<uint64_t>{u1});
}

TEST(SceneCluster, AKilledScenesNodeHandsItsPlayersToTheNewOwner)
{
    SceneCluster cl("scene_kill");
    ASSERT_TRUE(cl.up());
    // The scene on node a, both uids on node b, which survives.
    const uint64_t u1 = cl.uid_on(1, 3000);
    const uint64_t u2 = cl.uid_on(1, u1 + 1);
    const uint32_t scene = cl.scene_on(0);
    gh::Client c1(cl.gate->tcp), c2(cl.gate->tcp);
    ASSERT_EQ(c1.login(u1), wire::OK);
    ASSERT_EQ(c2.login(u2), wire::OK);
    ASSERT_EQ(call_status(c1, wire::R_SCENE_ENTER, enter_req(scene, 10, 10)), wire::OK);
    ASSERT_EQ(call_status(c2, wire::R_SCENE_ENTER, enter_req(scene, 20, 20)), wire::OK);
    EXPECT_TRUE(saw(c1, scene, u2, "e"));

    cl.a->kill9();
    c1.pushes.clear();
    c2.pushes.clear();
    // The next moves succeed once the gateway has seen node a's links drop (status 3 until
    // then): the gateway enters each player again at node b, where it last stood.
    auto move_until_ok = [&](gh::Client &c, int32_t x) {
        const int64_t deadline = now_ms() + kReplyTimeoutMs;
        uint32_t st = ~0u;
        while (now_ms() < deadline) {
            st = call_status(c, wire::R_SCENE_MOVE, move_req(scene, x, x));
            if (st != wire::NO_NODE)
                break;
            usleep(50 * 1000);
        }
        return st;
    };
    ASSERT_EQ(move_until_ok(c1, 12), wire::OK);
    ASSERT_EQ(move_until_ok(c2, 22), wire::OK);
    // Both stand in node b's grid now and see each other there: u2 entered again after u1, so
    // u1 hears of it from node b, and u2 got node b's view of u1 from the gateway.
    EXPECT_TRUE(saw(c1, scene, u2, "em")) << "u1 does not see u2 after the scene moved";
    EXPECT_TRUE(saw(c2, scene, u1, "e")) << "u2 was not told whom it sees at the new owner";
    ASSERT_EQ(call_status(c1, wire::R_SCENE_MOVE, move_req(scene, 14, 14)), wire::OK);
    EXPECT_TRUE(saw(c2, scene, u1, "m")) << "u2 does not see u1 move at the new owner";
    // Player calls were never affected: the uids live on node b.
    EXPECT_EQ(call_status(c1, wire::R_PLAYER_GET, {}), wire::OK);
}

// A free TCP port on 127.0.0.1 (bound, then closed: a node started on it right away gets it).
int free_port()
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = 0;
    if (bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) == 0 &&
        getsockname(fd, reinterpret_cast<sockaddr *>(&a), &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

// A node that joins and wins a scene by the hash: each player's next call enters it there, and
// the node that held the scene until then is told to drop it (it is alive: no ghosts may stay).
TEST(SceneCluster, ANodeThatJoinsTakesTheSceneItWinsAndTheOldNodeDropsItsPlayers)
{
    const int dbp = db_port();
    ASSERT_GT(dbp, 0);
    auto args_a = logic_args("scene_join", dbp, 100);
    args_a.insert(args_a.end(), {"--admin", "127.0.0.1:0"});
    Logic a(args_a);
    ASSERT_GT(a.port(), 0);
    ASSERT_GT(a.admin_port(), 0);
    const int port_b = free_port();
    ASSERT_GT(port_b, 0);
    const std::string addr_a = "127.0.0.1:" + std::to_string(a.port());
    const std::string addr_b = "127.0.0.1:" + std::to_string(port_b);
    gh::GateProc gate(gh::GateProc::args({addr_a, addr_b})); // b is not up yet
    ASSERT_GT(gate.tcp, 0);
    const std::vector<uint64_t> hashes = {fnv1a(addr_a), fnv1a(addr_b)};
    uint32_t scene = 1;
    while (rendezvous_pick(hashes, {true, true}, scene_key(scene)) != 1)
        scene++; // node b's once it is up
    const uint64_t u1 = 4000, u2 = 4001;
    gh::Client c1(gate.tcp), c2(gate.tcp);
    ASSERT_EQ(c1.login(u1), wire::OK);
    ASSERT_EQ(c2.login(u2), wire::OK);
    ASSERT_EQ(call_status(c1, wire::R_SCENE_ENTER, enter_req(scene, 10, 10)), wire::OK);
    ASSERT_EQ(call_status(c2, wire::R_SCENE_ENTER, enter_req(scene, 20, 20)), wire::OK);
    EXPECT_EQ(metric(a.admin_port(), "coho_logic_scene_entities"), 2);

    auto args_b = logic_args("scene_join", dbp, 100);
    args_b[1] = addr_b; // --listen
    args_b.insert(args_b.end(), {"--admin", "127.0.0.1:0"});
    Logic b(args_b);
    ASSERT_EQ(b.port(), port_b);
    c1.pushes.clear();
    c2.pushes.clear();
    // Once the gateway's links to b are up, c1's next move enters it at b and takes it out of a.
    int32_t x = 10;
    EXPECT_TRUE(wait_until(
        [&] {
            x = x == 10 ? 12 : 10;
            EXPECT_EQ(call_status(c1, wire::R_SCENE_MOVE, move_req(scene, x, x)), wire::OK);
            return metric(a.admin_port(), "coho_logic_scene_entities") == 1;
        },
        kReplyTimeoutMs))
        << "u1 was not taken out of the node that held the scene";
    ASSERT_EQ(call_status(c2, wire::R_SCENE_MOVE, move_req(scene, 22, 22)), wire::OK);
    EXPECT_TRUE(wait_until([&] { return metric(a.admin_port(), "coho_logic_scene_entities") == 0; },
                           kReplyTimeoutMs))
        << "u2 was not taken out of the node that held the scene";
    EXPECT_EQ(metric(b.admin_port(), "coho_logic_scene_entities"), 2);
    // At b they see each other: u2 entered after u1, so b tells u1; the gateway told u2 whom it
    // sees at b.
    EXPECT_TRUE(saw(c1, scene, u2, "em")) << "u1 does not see u2 at the new owner";
    EXPECT_TRUE(saw(c2, scene, u1, "e")) << "u2 was not told whom it sees at the new owner";
}

} // namespace

#endif // COHO_GATE_BIN
