// SPDX-License-Identifier: MIT
// coho-logic in a cluster (game/logic/cluster.hpp) against a real etcd
// (test/support/servers/etcd.sh): it registers /<cluster>/logic/<node-id> under its lease, and
// after a SIGSTOP past the TTL it answers NO_NODE (status 3) to what it no longer owns until it
// has registered again. A fake gateway speaks the node protocol (game/common/node.hpp); echo
// calls need no database, so the node's --db points nowhere.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "game/cluster/etcd.hpp"
#include "game/cluster/member.hpp"
#include "game/common/node.hpp"
#include "game/common/scene_call.hpp"
#include "game/common/wire.hpp"
#include "test/support/client_harness.hpp"

namespace {

using namespace coho::game;
using namespace std::chrono_literals;

std::string endpoint()
{
    int port = coho_test::server_port("etcd");
    return port > 0 ? "127.0.0.1:" + std::to_string(port) : std::string();
}

// Polls `cond` every 20 ms for up to `d` (a plain thread: no coroutines here).
bool wait_for(const std::function<bool()> &cond, std::chrono::milliseconds d)
{
    const auto end = std::chrono::steady_clock::now() + d;
    while (!cond()) {
        if (std::chrono::steady_clock::now() >= end)
            return false;
        std::this_thread::sleep_for(20ms);
    }
    return true;
}

// coho-logic as a child process; its stdout is read for "listening tcp HOST:PORT".
class LogicProc {
public:
    explicit LogicProc(std::vector<std::string> args)
    {
        // A journal of its own, not the default one in the working directory (locked: two
        // nodes of one id started by tests at once would collide).
        static int started = 0;
        journal_ = "/tmp/coho-fence." + std::to_string(getpid()) + "." + std::to_string(++started) +
                   ".journal";
        args.push_back("--journal");
        args.push_back(journal_);
        int out[2];
        if (pipe(out) != 0)
            return;
        pid_ = fork();
        if (pid_ == 0) {
            dup2(out[1], 1);
            close(out[0]);
            close(out[1]);
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
    ~LogicProc()
    {
        if (pid_ > 0) {
            kill(pid_, SIGCONT);
            kill(pid_, SIGKILL);
            waitpid(pid_, nullptr, 0);
        }
        if (out_ >= 0)
            close(out_);
        unlink(journal_.c_str());
        unlink((journal_ + ".errors").c_str());
    }
    int port()
    {
        std::string line;
        const auto end = std::chrono::steady_clock::now() + 30s;
        while (std::chrono::steady_clock::now() < end) {
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
            if (line.rfind("listening tcp ", 0) == 0)
                return std::atoi(line.substr(line.rfind(':') + 1).c_str());
            if (line.rfind("machine id ", 0) == 0)
                machine_id_ = std::atoi(line.c_str() + 11);
            line.clear();
        }
        ADD_FAILURE() << "coho-logic printed no 'listening tcp' line";
        return 0;
    }
    void signal(int sig) { kill(pid_, sig); }
    // The "machine id N" line printed before "listening tcp" (with --etcd); -1 if none.
    int machine_id() const { return machine_id_; }
    // The exit status, waiting up to `d` (-1: still running or killed by a signal).
    int exit_status(std::chrono::milliseconds d)
    {
        int st = 0;
        const bool gone = wait_for([&] { return waitpid(pid_, &st, WNOHANG) == pid_; }, d);
        if (!gone)
            return -1;
        pid_ = -1;
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    }

private:
    int machine_id_ = -1;
    pid_t pid_ = -1;
    int out_ = -1;
    std::string journal_;
};

// One connection speaking the node protocol: HELLO, then requests answered in order.
class FakeGate {
public:
    explicit FakeGate(int port)
    {
        fd_ = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons(uint16_t(port));
        if (connect(fd_, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0)
            ADD_FAILURE() << "connect: " << strerror(errno);
        std::string b;
        put_u64(b, 42);
        send(node::HELLO, 0, b);
        EXPECT_EQ(status(), wire::OK) << "HELLO";
    }
    ~FakeGate() { close(fd_); }
    void send(uint32_t type, uint32_t arg, const std::string &body)
    {
        std::string f = node::frame(type, seq_++, arg, body);
        ASSERT_EQ(::send(fd_, f.data(), f.size(), MSG_NOSIGNAL), ssize_t(f.size()));
    }
    void echo(uint64_t uid) { send(node::CALL, wire::R_ECHO, node::uid_session(uid, 1, "hi")); }
    // scene.enter of `uid` into `scene` at (x, 0): routed by scene, fenced by scene.
    void enter(uint64_t uid, uint32_t scene, int32_t x)
    {
        std::string pos;
        pos.push_back(0x08); // Pos.x, sint32: zigzag
        coho::game::pbwire::put_varint(pos, uint32_t((x << 1) ^ (x >> 31)));
        send(node::CALL, wire::R_SCENE_ENTER,
             node::uid_session(uid, 1, scene_payload(scene, pos, true)));
    }
    // LOAD of `uid` (its login), and player.add of `delta` to it (PlayerAddReq.delta, field 1).
    void load(uint64_t uid) { send(node::LOAD, 0, node::uid_session(uid, 1)); }
    void add(uint64_t uid, int64_t delta)
    {
        std::string req;
        req.push_back(0x08);
        coho::game::pbwire::put_varint(req, uint64_t(delta));
        send(node::CALL, wire::R_PLAYER_ADD, node::uid_session(uid, 1, req));
    }
    // The counter of a player.add answer (PlayerAddResp.counter, field 1; 0 when absent).
    static int64_t counter_of(const std::string &body)
    {
        int64_t c = 0;
        EXPECT_TRUE(coho::game::pbwire::each_field(body, [&](uint32_t field, uint32_t, uint64_t v,
                                                             std::string_view) {
            if (field == 1)
                c = int64_t(v);
            return true;
        })) << "a PlayerAddResp that does not parse";
        return c;
    }
    // The status of the next response (UINT32_MAX if none came within 20 s); its body in *body.
    uint32_t status(std::string *body = nullptr)
    {
        const auto end = std::chrono::steady_clock::now() + 20s;
        while (std::chrono::steady_clock::now() < end) {
            if (buf_.size() >= node::kHeaderLen) {
                auto p = reinterpret_cast<const unsigned char *>(buf_.data());
                uint32_t len = get_u32(p + 16);
                if (buf_.size() >= node::kHeaderLen + len) {
                    const uint32_t st = get_u32(p + 20);
                    if (body != nullptr)
                        *body = buf_.substr(node::kHeaderLen, len);
                    buf_.erase(0, node::kHeaderLen + len);
                    return st;
                }
            }
            pollfd p{fd_, POLLIN, 0};
            if (poll(&p, 1, 100) <= 0)
                continue;
            char tmp[4096];
            ssize_t n = recv(fd_, tmp, sizeof tmp, 0);
            if (n <= 0)
                break;
            buf_.append(tmp, size_t(n));
        }
        ADD_FAILURE() << "no response from coho-logic";
        return UINT32_MAX;
    }

private:
    std::string buf_; // read, not yet taken (two responses may come in one read)
    int fd_ = -1;
    uint64_t seq_ = 1;
};

TEST(ClusterFence, a_node_stopped_past_its_ttl_refuses_uids_until_it_registered_again)
{
    const std::string ep = endpoint();
    ASSERT_FALSE(ep.empty());
    const std::string cl = "fence" + std::to_string(getpid());
    etcd::Options o;
    o.endpoints = {ep};
    etcd::Client etcd(o);
    const std::string key = cluster::role_prefix(cl, "logic") + "7";
    auto registered = [&] { return !etcd.get(key).empty(); };

    LogicProc logic({"--listen", "127.0.0.1:0", "--db", "127.0.0.1:1", "--db-timeout-s", "1",
                     "--node-id", "7", "--etcd", ep, "--cluster", cl, "--lease-ttl-s", "1"});
    const int port = logic.port();
    ASSERT_GT(port, 0);
    ASSERT_TRUE(wait_for(registered, 20s)) << key << " never appeared in etcd";
    const std::string addr = cluster::addr_of(etcd.get(key)[0].value);
    EXPECT_EQ(addr, "127.0.0.1:" + std::to_string(port));

    FakeGate g(port);
    g.echo(1);
    EXPECT_EQ(g.status(), wire::OK);
    g.enter(1, 5, 10); // scene calls need no database
    EXPECT_EQ(g.status(), wire::OK);

    // Stopped: nobody renews the lease; etcd expires it and the key goes.
    logic.signal(SIGSTOP);
    EXPECT_TRUE(wait_for([&] { return !registered(); }, 20s)) << "the lease outlived the stop";
    // Calls that wait in the socket: the gateway gave up on them when the lease ended. Whether
    // the node reads them before or after it registers again, it must not serve them.
    g.echo(2);
    g.enter(2, 5, 20);
    logic.signal(SIGCONT);
    EXPECT_EQ(g.status(), wire::NO_NODE) << "a node without its lease served a uid";
    EXPECT_EQ(g.status(), wire::NO_NODE) << "a node without its lease served a scene";

    // It registers again (new lease). The connection opened under the old lease stays refused;
    // a gateway opens new ones to the node it is now, which serves them.
    ASSERT_TRUE(wait_for(registered, 20s)) << "the node did not register again";
    g.echo(3);
    EXPECT_EQ(g.status(), wire::NO_NODE) << "a connection of the old lease was served";
    FakeGate now(port);
    uint32_t st = wire::NO_NODE;
    wait_for(
        [&] {
            now.echo(3);
            st = now.status();
            return st == wire::OK;
        },
        10s);
    EXPECT_EQ(st, wire::OK);
    // Scene 5 as it was under the old lease is gone: meanwhile the gateways had moved it to
    // another node, where uid 1 may have left. A newcomer next to where uid 1 stood sees no one.
    now.enter(3, 5, 20);
    std::string body;
    EXPECT_EQ(now.status(&body), wire::OK);
    EXPECT_TRUE(body.empty()) << "scene 5 kept an entity from the lost lease";
}

// A node stopped past its TTL loses its uids to another node, which changes and saves a player;
// when the first node registers again and the uid comes back to it, the copy it kept from the
// old lease is read again from the database: the other node's change is not lost.
TEST(ClusterFence, a_node_back_from_a_lost_lease_reads_its_players_again)
{
    const std::string ep = endpoint();
    ASSERT_FALSE(ep.empty());
    const int dbp = coho_test::server_port("mariadb");
    ASSERT_GT(dbp, 0);
    const std::string cl = "reload" + std::to_string(getpid());
    etcd::Options o;
    o.endpoints = {ep};
    etcd::Client etcd(o);
    auto registered = [&](const char *id) {
        return !etcd.get(cluster::role_prefix(cl, "logic") + id).empty();
    };
    auto args = [&](const char *id) {
        return std::vector<std::string>{"--listen",       "127.0.0.1:0",
                                        "--db",           "127.0.0.1:" + std::to_string(dbp),
                                        "--db-name",      cl,
                                        "--db-timeout-s", "10",
                                        "--node-id",      id,
                                        "--etcd",         ep,
                                        "--cluster",      cl,
                                        "--lease-ttl-s",  "1"};
    };
    LogicProc a(args("7"));
    const int pa = a.port();
    ASSERT_GT(pa, 0);
    LogicProc b(args("8"));
    const int pb = b.port();
    ASSERT_GT(pb, 0);
    ASSERT_TRUE(wait_for([&] { return registered("7") && registered("8"); }, 20s));
    FakeGate ga(pa), gb(pb);

    // The gateways route by uid; a node serves any uid while its lease is valid.
    const uint64_t uid = 1;
    ga.load(uid);
    ASSERT_EQ(ga.status(), wire::OK);
    std::string body;
    ga.add(uid, 5);
    ASSERT_EQ(ga.status(&body), wire::OK);
    EXPECT_EQ(FakeGate::counter_of(body), 5);

    // Node 7 stops; past its lease, node 8 serves the uid and saves a change.
    a.signal(SIGSTOP);
    ASSERT_TRUE(wait_for([&] { return !registered("7"); }, 20s)) << "the lease outlived the stop";
    ASSERT_TRUE(wait_for(
        [&] {
            gb.load(uid);
            return gb.status() == wire::OK;
        },
        20s))
        << "node 8 never took the uid";
    gb.add(uid, 100);
    ASSERT_EQ(gb.status(&body), wire::OK);
    EXPECT_EQ(FakeGate::counter_of(body), 105);

    // Node 7 comes back, registers again and owns the uid again: it answers from the database
    // (on a new connection: the old lease's stays refused).
    a.signal(SIGCONT);
    ASSERT_TRUE(wait_for([&] { return registered("7"); }, 20s)) << "node 7 did not register again";
    FakeGate again(pa);
    uint32_t st = wire::NO_NODE;
    wait_for(
        [&] {
            again.add(uid, 1);
            st = again.status(&body);
            return st == wire::OK;
        },
        20s);
    ASSERT_EQ(st, wire::OK);
    EXPECT_EQ(FakeGate::counter_of(body), 106)
        << "node 7 served the copy it kept from its old lease (105 + 1 expected)";
}

TEST(ClusterFence, a_stopped_node_deregisters_at_once)
{
    const std::string ep = endpoint();
    ASSERT_FALSE(ep.empty());
    const std::string cl = "leave" + std::to_string(getpid());
    etcd::Options o;
    o.endpoints = {ep};
    etcd::Client etcd(o);
    const std::string key = cluster::role_prefix(cl, "logic") + "3";
    LogicProc logic({"--listen", "127.0.0.1:0", "--db", "127.0.0.1:1", "--node-id", "3", "--etcd",
                     ep, "--cluster", cl, "--lease-ttl-s", "60"});
    ASSERT_GT(logic.port(), 0);
    ASSERT_TRUE(wait_for([&] { return !etcd.get(key).empty(); }, 20s));
    logic.signal(SIGTERM);
    // Well under the 60 s TTL: the lease was revoked, not left to expire.
    EXPECT_TRUE(wait_for([&] { return etcd.get(key).empty(); }, 15s));
}

// Two nodes on one etcd: each snowflake generator takes a machine id held under the node's lease
// (/<cluster>/machine/<id>, the lowest free one), so they differ; a node given an id another
// node holds (--machine-id) refuses to start.
TEST(ClusterFence, two_nodes_get_different_machine_ids_and_a_held_one_is_refused)
{
    const std::string ep = endpoint();
    ASSERT_FALSE(ep.empty());
    const std::string cl = "mid" + std::to_string(getpid());
    etcd::Options o;
    o.endpoints = {ep};
    etcd::Client etcd(o);
    const std::string prefix = cluster::role_prefix(cl, "machine");
    auto common = [&](const char *node) {
        return std::vector<std::string>{
            "--listen", "127.0.0.1:0", "--db", "127.0.0.1:1",   "--node-id", node, "--etcd",
            ep,         "--cluster",   cl,     "--lease-ttl-s", "30"};
    };
    LogicProc a(common("1"));
    ASSERT_GT(a.port(), 0);
    LogicProc b(common("2"));
    ASSERT_GT(b.port(), 0);
    ASSERT_GE(a.machine_id(), 0);
    ASSERT_GE(b.machine_id(), 0);
    EXPECT_NE(a.machine_id(), b.machine_id());
    // Both held in etcd, each by the node that printed it.
    auto held_by = [&](int id) {
        auto kv = etcd.get(prefix + std::to_string(id));
        return kv.empty() ? std::string() : kv[0].value;
    };
    EXPECT_EQ(held_by(a.machine_id()).rfind("logic/1 ", 0), 0u) << held_by(a.machine_id());
    EXPECT_EQ(held_by(b.machine_id()).rfind("logic/2 ", 0), 0u) << held_by(b.machine_id());

    // An explicit --machine-id that another node holds: exit status 1, and the id stays A's.
    auto args = common("3");
    args.push_back("--machine-id");
    args.push_back(std::to_string(a.machine_id()));
    LogicProc c(args);
    EXPECT_EQ(c.exit_status(30s), 1);
    EXPECT_EQ(held_by(a.machine_id()).rfind("logic/1 ", 0), 0u) << held_by(a.machine_id());

    // An id held under a lease this same node (node id and address) gave up, which etcd has not
    // expired yet (as after an etcd restart): the node revokes that lease and takes the id.
    const int64_t old = etcd.lease_grant(60);
    etcd.put(prefix + "5", "logic/4 127.0.0.1:9", old);
    auto again = common("4");
    for (const char *x : {"--advertise", "127.0.0.1:9", "--machine-id", "5"})
        again.push_back(x);
    LogicProc d(again);
    ASSERT_GT(d.port(), 0);
    EXPECT_EQ(d.machine_id(), 5);
    EXPECT_EQ(etcd.lease_keepalive(old), 0) << "the old lease was not revoked";
    ASSERT_FALSE(etcd.get(prefix + "5").empty());
    EXPECT_NE(etcd.get(prefix + "5")[0].lease, old);

    // A clean stop releases the id with the lease: a new node may take it.
    a.signal(SIGTERM);
    EXPECT_EQ(a.exit_status(15s), 0);
    EXPECT_TRUE(held_by(a.machine_id()).empty());
}

TEST(ClusterFence, bad_cluster_flags_are_refused)
{
    for (const auto &bad : std::vector<std::vector<std::string>>{
             {"--etcd", "nohost"},
             {"--etcd", "127.0.0.1:1", "--cluster", "a/b"},
             {"--etcd", "127.0.0.1:1", "--lease-ttl-s", "0"},
             {"--etcd", "127.0.0.1:1", "--listen", "0.0.0.0:0"}}) {
        std::vector<std::string> args{"--listen", "127.0.0.1:0", "--db", "127.0.0.1:1"};
        args.insert(args.end(), bad.begin(), bad.end());
        pid_t pid = fork();
        if (pid == 0) {
            int null = open("/dev/null", O_WRONLY);
            dup2(null, 2);
            std::vector<char *> argv{const_cast<char *>(COHO_LOGIC_BIN)};
            for (auto &a : args)
                argv.push_back(const_cast<char *>(a.c_str()));
            argv.push_back(nullptr);
            execv(argv[0], argv.data());
            _exit(127);
        }
        int st = 0;
        waitpid(pid, &st, 0);
        EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 1) << bad[bad.size() - 1];
    }
}

} // namespace
