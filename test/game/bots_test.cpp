// SPDX-License-Identifier: MIT
// coho-bots against a fake gateway written here (plain threads and blocking sockets speaking
// DESIGN.md's game protocol): login, heartbeat, calls, pushes, rebind, WebSocket, latency
// accounting, and a gateway that kicks, sends garbage or loses pushes — which the bots must
// report as errors (exit status 3), never crash on.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bytes.hpp"
#include "game.pb.h"
#include "token.hpp"
#include "wire.hpp"

using namespace coho::game;
using Clock = std::chrono::steady_clock;

namespace {

const char kSecret[] = "bots-test-secret";

// ---- the fake gateway ------------------------------------------------------------------------

struct Behaviour {
    uint32_t heartbeat_ms = 10000;
    int echo_delay_ms = 0;
    bool ws = false;
    bool kick_after_login = false;    // KICK 4 right after a successful LOGIN
    bool garbage_after_login = false; // a frame whose len is 3
    bool corrupt_echo = false;        // echo answers other bytes
    bool skip_push_seq = false;       // the second push of a session gets seq 3
    bool repeat_push_seq = false;     // the second push of a session reuses seq 1
    bool push_during_rebind = false;  // a chat push "arrives" while the bot is away
    bool ws_ping_then_close = false;  // ws: a ping after LOGIN, a close (1008) at the 2nd CALL
    bool aoi_lies = false;            // AOI pushes break the grid rule (cell 100)
    bool refuse_first_enter = false;  // a session's first scene.enter gets status 3 (no node)
};

class FakeGate {
public:
    explicit FakeGate(Behaviour b) : b_(b)
    {
        lfd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof a;
        if (lfd_ < 0 || bind(lfd_, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0 ||
            listen(lfd_, 512) != 0 ||
            getsockname(lfd_, reinterpret_cast<sockaddr *>(&a), &len) != 0)
            throw std::runtime_error(std::string("fake gate listen: ") + std::strerror(errno));
        port_ = ntohs(a.sin_port);
        acceptor_ = std::thread([this] { accept_loop(); });
    }
    ~FakeGate() { die(); }
    // The gateway goes away as a killed process would: the listener closes (a connect is
    // refused) and every connection ends.
    void die()
    {
        if (lfd_ < 0)
            return;
        stopping_ = true;
        shutdown(lfd_, SHUT_RDWR);
        acceptor_.join();
        close(lfd_);
        lfd_ = -1;
        {
            std::lock_guard<std::mutex> g(mu_);
            for (int fd : fds_)
                shutdown(fd, SHUT_RDWR);
        }
        for (auto &t : conns_)
            t.join();
    }
    std::string addr() const { return "127.0.0.1:" + std::to_string(port_); }

    std::atomic<int> logins{0}, bad_tokens{0}, pings{0}, calls{0}, acks{0}, logouts{0};
    std::atomic<int> callers{0}; // connections whose session made a CALL
    std::atomic<int> rebinds_ok{0}, rebinds_bad{0}, rebind_last_exact{0}, unmasked{0}, pongs{0};
    std::atomic<int64_t> max_gap_ms{0}; // longest silence of a logged-in client
    // scene.move and scene.leave calls of a session that is in no scene (the node refuses them)
    std::atomic<int> scene_calls_outside{0};
    // When the first and the last LOGIN came.
    std::pair<Clock::time_point, Clock::time_point> login_span()
    {
        std::lock_guard<std::mutex> g(mu_);
        return {first_login_, last_login_};
    }
    // When each successful REBIND came, in order.
    std::vector<Clock::time_point> rebind_times()
    {
        std::lock_guard<std::mutex> g(mu_);
        return rebind_times_;
    }

private:
    struct Session {
        uint64_t uid = 0;
        std::string key;
        uint32_t push_seq = 0;
        std::vector<std::pair<uint32_t, std::string>> pushes; // (seq, frame) sent so far
        std::string channel;
        int64_t counter = 0;
        int enters = 0;
        bool in_scene = false;
    };
    struct Conn {
        int fd;
        bool ws;
        std::string in;
        Session *s = nullptr;
        int calls = 0;
        bool called = false; // a CALL came on this connection's session
    };

    void accept_loop()
    {
        for (;;) {
            int fd = accept4(lfd_, nullptr, nullptr, SOCK_CLOEXEC);
            if (fd < 0) {
                if (stopping_)
                    return;
                if (errno == EINTR || errno == ECONNABORTED)
                    continue;
                return;
            }
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            std::lock_guard<std::mutex> g(mu_);
            fds_.push_back(fd);
            conns_.emplace_back([this, fd] {
                serve(fd);
                shutdown(fd, SHUT_RDWR);
            });
        }
    }

    // Reads at least one more byte into c.in; false at EOF or error.
    static bool fill(Conn &c)
    {
        char buf[16384];
        ssize_t n;
        do
            n = read(c.fd, buf, sizeof buf);
        while (n < 0 && errno == EINTR);
        if (n <= 0)
            return false;
        c.in.append(buf, size_t(n));
        return true;
    }

    static bool write_all(int fd, const std::string &b)
    {
        size_t off = 0;
        while (off < b.size()) {
            ssize_t n = send(fd, b.data() + off, b.size() - off, MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                return false;
            off += size_t(n);
        }
        return true;
    }

    bool ws_handshake(Conn &c)
    {
        size_t end;
        while ((end = c.in.find("\r\n\r\n")) == std::string::npos)
            if (!fill(c))
                return false;
        std::string head = c.in.substr(0, end);
        c.in.erase(0, end + 4);
        const std::string tag = "Sec-WebSocket-Key: ";
        size_t k = head.find(tag);
        if (k == std::string::npos || head.rfind("GET / HTTP/1.1", 0) != 0)
            return false;
        std::string key = head.substr(k + tag.size(), head.find("\r\n", k) - k - tag.size());
        std::string in = key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned md_len = 0;
        EVP_Digest(in.data(), in.size(), md, &md_len, EVP_sha1(), nullptr);
        char b64[64];
        EVP_EncodeBlock(reinterpret_cast<unsigned char *>(b64), md, int(md_len));
        return write_all(c.fd, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                               "Connection: Upgrade\r\nSec-WebSocket-Accept: " +
                                   std::string(b64) + "\r\n\r\n");
    }

    // The next game frame from the client (one WebSocket message with ws), or false.
    bool read_frame(Conn &c, std::string &frame)
    {
        if (!c.ws) {
            for (;;) {
                if (c.in.size() >= 4) {
                    uint32_t len = get_u32(reinterpret_cast<const unsigned char *>(c.in.data()));
                    if (len < 8 || len > (1u << 20))
                        return false;
                    if (c.in.size() >= 4 + len) {
                        frame = c.in.substr(0, 4 + len);
                        c.in.erase(0, 4 + len);
                        return true;
                    }
                }
                if (!fill(c))
                    return false;
            }
        }
        for (;;) {
            while (c.in.size() < 2)
                if (!fill(c))
                    return false;
            auto *p = reinterpret_cast<const unsigned char *>(c.in.data());
            uint8_t opcode = p[0] & 0x0f;
            bool masked = p[1] & 0x80;
            uint64_t len = p[1] & 0x7f;
            size_t h = 2;
            if (len == 126)
                h = 4;
            else if (len == 127)
                h = 10;
            while (c.in.size() < h + 4)
                if (!fill(c))
                    return false;
            p = reinterpret_cast<const unsigned char *>(c.in.data());
            if (len == 126)
                len = uint64_t(p[2]) << 8 | p[3];
            else if (len == 127) {
                len = 0;
                for (int i = 0; i < 8; i++)
                    len = len << 8 | p[2 + i];
            }
            if (!masked) {
                unmasked++;
                return false;
            }
            while (c.in.size() < h + 4 + len)
                if (!fill(c))
                    return false;
            std::string payload = c.in.substr(h + 4, size_t(len));
            for (size_t i = 0; i < payload.size(); i++)
                payload[i] = char(payload[i] ^ c.in[h + (i & 3)]);
            c.in.erase(0, h + 4 + size_t(len));
            if (opcode == 0x8)
                return false;
            if (opcode == 0xA && payload == "are you there")
                pongs++;
            if (opcode != 0x2)
                continue;
            frame = payload;
            return true;
        }
    }

    bool send_frame(Conn &c, const std::string &frame)
    {
        if (!c.ws)
            return write_all(c.fd, frame);
        std::string h;
        h.push_back(char(0x82));
        if (frame.size() < 126) {
            h.push_back(char(frame.size()));
        } else {
            h.push_back(char(126));
            h.push_back(char(frame.size() >> 8));
            h.push_back(char(frame.size() & 0xff));
        }
        return write_all(c.fd, h + frame);
    }

    bool reply(Conn &c, uint16_t type, uint32_t seq, const std::string &body)
    {
        return send_frame(c, wire::frame(uint16_t(type | wire::kResponse), seq, body));
    }
    bool reply_ok(Conn &c, uint32_t seq, const std::string &payload)
    {
        std::string b;
        put_u32(b, wire::OK);
        return reply(c, wire::CALL, seq, b + payload);
    }
    // Records a push in the session (for replays) and sends it if the client is there.
    bool push(Conn *c, Session &s, uint16_t route, const std::string &payload)
    {
        uint32_t seq = ++s.push_seq;
        if (b_.skip_push_seq && seq == 2)
            seq = ++s.push_seq;
        if (b_.repeat_push_seq && seq == 2)
            seq = 1;
        std::string f = wire::frame(wire::PUSH, seq, wire::call_body(route, payload));
        s.pushes.emplace_back(seq, f);
        return c == nullptr || send_frame(*c, f);
    }

    void serve(int fd)
    {
        Conn c{fd, b_.ws, {}, nullptr};
        if (c.ws && !ws_handshake(c))
            return;
        std::mt19937_64 rng(uint64_t(fd) * 7919);
        std::string f;
        auto last = Clock::now();
        while (read_frame(c, f)) {
            auto now = Clock::now();
            if (c.s) {
                int64_t gap =
                    std::chrono::duration_cast<std::chrono::milliseconds>(now - last).count();
                int64_t m = max_gap_ms.load();
                while (gap > m && !max_gap_ms.compare_exchange_weak(m, gap)) {
                }
            }
            last = now;
            auto h = wire::parse_header(reinterpret_cast<const unsigned char *>(f.data()));
            std::string body = f.substr(wire::kHeaderLen);
            Reader r(body);
            switch (h.type) {
            case wire::LOGIN: {
                uint64_t uid = r.u64();
                std::string_view tok = r.bytes(r.u16());
                if (!r.ok() || !token_ok(kSecret, uid, tok)) {
                    bad_tokens++;
                    if (!send_frame(c, wire::error_response(wire::LOGIN, h.seq, wire::BAD_TOKEN)))
                        return;
                    break;
                }
                std::lock_guard<std::mutex> g(mu_);
                uint64_t id = ++next_session_;
                Session &s = sessions_[id];
                s.uid = uid;
                for (int i = 0; i < 16; i++)
                    s.key.push_back(char(rng()));
                c.s = &s;
                logins++;
                if (logins == 1)
                    first_login_ = now;
                last_login_ = now;
                std::string b;
                put_u32(b, wire::OK);
                put_u64(b, id);
                b += s.key;
                put_u32(b, b_.heartbeat_ms);
                if (!reply(c, wire::LOGIN, h.seq, b))
                    return;
                if (b_.kick_after_login) {
                    send_frame(c, wire::kick(wire::KICK_PROTOCOL));
                    return;
                }
                if (b_.ws_ping_then_close &&
                    !write_all(c.fd, std::string("\x89\x0d", 2) + "are you there"))
                    return;
                if (b_.garbage_after_login) {
                    send_frame(c, std::string("\x03\x00\x00\x00\x01\x00\x00", 7));
                    return;
                }
                break;
            }
            case wire::PING:
                pings++;
                if (!reply(c, wire::PING, h.seq, ""))
                    return;
                break;
            case wire::REBIND: {
                uint64_t id = r.u64();
                std::string key(r.bytes(16));
                uint32_t last_seq = r.u32();
                std::lock_guard<std::mutex> g(mu_);
                auto it = sessions_.find(id);
                if (!r.ok() || it == sessions_.end() || it->second.key != key) {
                    rebinds_bad++;
                    if (!send_frame(
                            c, wire::error_response(wire::REBIND, h.seq, wire::UNKNOWN_SESSION)))
                        return;
                    break;
                }
                Session &s = it->second;
                if (last_seq == s.push_seq)
                    rebind_last_exact++;
                if (b_.push_during_rebind && !s.channel.empty()) {
                    ChatMsg m;
                    m.set_channel(s.channel);
                    m.set_from_uid(s.uid);
                    m.set_text("while away");
                    push(nullptr, s, wire::R_CHAT_SAY, m.SerializeAsString());
                }
                s.key.clear();
                for (int i = 0; i < 16; i++)
                    s.key.push_back(char(rng()));
                c.s = &s;
                rebinds_ok++;
                rebind_times_.push_back(Clock::now());
                std::string b;
                put_u32(b, wire::OK);
                if (!reply(c, wire::REBIND, h.seq, b + s.key))
                    return;
                for (auto &[seq, pf] : s.pushes)
                    if (seq > last_seq && !send_frame(c, pf))
                        return;
                break;
            }
            case wire::CALL: {
                calls++;
                // The pong comes after the first CALL (the bot reads the ping while it waits
                // for that reply): close at the second.
                if (b_.ws_ping_then_close && ++c.calls == 2) {
                    write_all(c.fd, std::string("\x88\x02\x03\xf0", 4)); // close, 1008
                    return;
                }
                if (!c.s) {
                    if (!send_frame(c,
                                    wire::error_response(wire::CALL, h.seq, wire::UNKNOWN_SESSION)))
                        return;
                    break;
                }
                if (!c.called) {
                    c.called = true;
                    callers++;
                }
                uint16_t route = r.u16();
                if (!call(c, h.seq, route, std::string(r.rest())))
                    return;
                break;
            }
            case wire::ACK:
                acks++;
                break;
            case wire::LOGOUT:
                logouts++;
                reply(c, wire::LOGOUT, h.seq, "");
                return;
            default:
                send_frame(c, wire::kick(wire::KICK_PROTOCOL));
                return;
            }
        }
    }

    bool call(Conn &c, uint32_t seq, uint16_t route, const std::string &payload)
    {
        Session &s = *c.s;
        switch (route) {
        case wire::R_ECHO:
            if (b_.echo_delay_ms)
                std::this_thread::sleep_for(std::chrono::milliseconds(b_.echo_delay_ms));
            return reply_ok(c, seq, b_.corrupt_echo ? payload + "x" : payload);
        case wire::R_PUSH_SELF: {
            Reader r(payload);
            uint32_t k = r.u32();
            if (!reply_ok(c, seq, ""))
                return false;
            for (uint32_t i = 1; i <= k; i++) {
                std::string p;
                put_u32(p, i);
                if (!push(&c, s, wire::R_PUSH_SELF, p))
                    return false;
            }
            return true;
        }
        case wire::R_PLAYER_GET: {
            Player p;
            p.set_uid(s.uid);
            p.set_counter(s.counter);
            return reply_ok(c, seq, p.SerializeAsString());
        }
        case wire::R_PLAYER_ADD: {
            PlayerAddReq req;
            req.ParseFromString(payload);
            s.counter += req.delta();
            PlayerAddResp resp;
            resp.set_counter(s.counter);
            return reply_ok(c, seq, resp.SerializeAsString());
        }
        case wire::R_CHAT_JOIN: {
            ChatJoinReq req;
            req.ParseFromString(payload);
            s.channel = req.channel();
            ChatJoinResp resp;
            resp.set_channel(req.channel());
            return reply_ok(c, seq, resp.SerializeAsString());
        }
        case wire::R_CHAT_SAY: {
            ChatSayReq req;
            req.ParseFromString(payload);
            ChatSayResp resp;
            resp.set_msg_id(++msg_id_);
            ChatMsg m;
            m.set_channel(req.channel());
            m.set_from_uid(s.uid);
            m.set_text(req.text());
            m.set_msg_id(resp.msg_id());
            return reply_ok(c, seq, resp.SerializeAsString()) &&
                   push(&c, s, wire::R_CHAT_SAY, m.SerializeAsString());
        }
        case wire::R_SCENE_ENTER:
            if (b_.refuse_first_enter && s.enters++ == 0)
                return send_frame(c, wire::error_response(wire::CALL, seq, wire::NO_NODE));
            s.in_scene = true;
            return reply_ok(c, seq, "");
        case wire::R_SCENE_MOVE: {
            if (!s.in_scene)
                scene_calls_outside++;
            SceneMoveReq req;
            req.ParseFromString(payload);
            // Someone moves right where the bot went (in view), or with aoi_lies: someone
            // "enters" ten cells away (out of view of every recent position of the bot) and
            // the bot itself "leaves".
            AoiBatch e;
            e.set_scene(req.scene());
            Entity *who = b_.aoi_lies ? e.add_entered() : e.add_moved();
            who->set_uid(s.uid + 1000000);
            who->mutable_pos()->set_x(req.pos().x() + (b_.aoi_lies ? 1000 : 0));
            who->mutable_pos()->set_y(req.pos().y());
            if (b_.aoi_lies) {
                Entity *gone = e.add_left();
                gone->set_uid(s.uid);
                *gone->mutable_pos() = req.pos();
            }
            return reply_ok(c, seq, "") && push(&c, s, wire::R_SCENE_AOI, e.SerializeAsString());
        }
        case wire::R_SCENE_LEAVE:
            if (!s.in_scene)
                scene_calls_outside++;
            s.in_scene = false;
            return reply_ok(c, seq, "");
        case wire::R_CHAT_LEAVE:
            return reply_ok(c, seq, "");
        default:
            return send_frame(c, wire::error_response(wire::CALL, seq, wire::UNKNOWN_ROUTE));
        }
    }

    Behaviour b_;
    int lfd_ = -1;
    int port_ = 0;
    std::atomic<bool> stopping_{false};
    std::thread acceptor_;
    std::mutex mu_;
    std::vector<int> fds_;
    std::vector<std::thread> conns_;
    std::map<uint64_t, Session> sessions_;
    std::vector<Clock::time_point> rebind_times_;
    uint64_t next_session_ = 0;
    Clock::time_point first_login_, last_login_;
    std::atomic<uint64_t> msg_id_{0};
};

// ---- running coho-bots -----------------------------------------------------------------------

struct BotsRun {
    int status = -1; // exit status, or -1 when it did not exit normally
    std::string out;
    // A number from the SUMMARY line: "routes/echo/p50_us", "errors", "error_kinds/kicked".
    uint64_t num(const std::string &path) const
    {
        size_t pos = out.find("SUMMARY {");
        if (pos == std::string::npos)
            ADD_FAILURE() << "no SUMMARY line in:\n" << out;
        size_t at = pos, start = 0;
        for (;;) {
            size_t dot = path.find('/', start);
            std::string key = path.substr(start, dot == std::string::npos ? dot : dot - start);
            at = out.find("\"" + key + "\":", at);
            if (at == std::string::npos || pos == std::string::npos) {
                ADD_FAILURE() << "no '" << path << "' in the SUMMARY line";
                return 0;
            }
            at += key.size() + 3;
            if (dot == std::string::npos)
                break;
            start = dot + 1;
        }
        return std::strtoull(out.c_str() + at, nullptr, 10);
    }
};

// Runs coho-bots with `args`; with `term_after_s`, sends it SIGTERM that many seconds in.
BotsRun run_bots(const std::string &args, double term_after_s = 0)
{
    std::string cmd = std::string(COHO_BOTS_PATH) + " " + args + " 2>&1";
    if (term_after_s > 0)
        cmd = "{ " + cmd + " & pid=$!; sleep " + std::to_string(term_after_s) +
              "; kill -TERM $pid; wait $pid; }";
    BotsRun r;
    FILE *p = popen(cmd.c_str(), "r");
    if (!p) {
        ADD_FAILURE() << "popen: " << std::strerror(errno);
        return r;
    }
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0)
        r.out.append(buf, n);
    int st = pclose(p);
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return r;
}

std::string common(const FakeGate &g, int bots, int duration_s)
{
    return "--gate " + g.addr() + " --secret " + kSecret + " --bots " + std::to_string(bots) +
           " --duration-s " + std::to_string(duration_s) + " --ramp-s 0 --quiet";
}

} // namespace

TEST(Bots, PlayAgainstAWellBehavedGatewayWithoutErrors)
{
    FakeGate g(Behaviour{});
    BotsRun r = run_bots(common(g, 4, 2) + " --rate 50 --threads 2");
    ASSERT_EQ(r.status, 0) << r.out;
    EXPECT_EQ(r.num("errors"), 0u) << r.out;
    EXPECT_EQ(r.num("logins"), 4u);
    EXPECT_EQ(r.num("logouts"), 4u);
    EXPECT_EQ(r.num("routes/login/ok"), 4u);
    EXPECT_EQ(r.num("routes/chat.join/ok"), 4u);
    EXPECT_EQ(r.num("routes/scene.enter/ok"), 4u);
    EXPECT_EQ(r.num("routes/scene.leave/ok"), 4u);
    EXPECT_GT(r.num("routes/echo/ok"), 0u);
    EXPECT_GT(r.num("routes/push.self/ok"), 0u);
    EXPECT_GT(r.num("routes/player.add/ok"), 0u);
    EXPECT_GT(r.num("routes/chat.say/ok"), 0u);
    EXPECT_GT(r.num("self_pushes"), r.num("routes/push.self/ok") - 1);
    EXPECT_EQ(r.num("chat_pushes"), r.num("routes/chat.say/ok"));
    EXPECT_EQ(r.num("aoi_pushes"), r.num("routes/scene.move/ok"));
    EXPECT_EQ(r.num("scene_moves"), r.num("routes/scene.move/ok"));
    EXPECT_EQ(r.num("aoi_moved"), r.num("routes/scene.move/ok"));
    EXPECT_EQ(r.num("aoi_mismatches"), 0u);
    EXPECT_NE(r.out.find("scene moves " + std::to_string(r.num("scene_moves")) + "; aoi pushes"),
              std::string::npos)
        << r.out;
    EXPECT_EQ(g.logins.load(), 4);
    EXPECT_EQ(g.logouts.load(), 4);
    EXPECT_EQ(g.bad_tokens.load(), 0);
    EXPECT_GT(g.acks.load(), 0);
    EXPECT_NE(r.out.find("coho-bots: PASS"), std::string::npos);
}

// A scene.enter that fails (status 3: the scene's node is down) is tried again in place of
// the next move: the bot never moves in, or leaves, a scene it did not enter.
TEST(Bots, AFailedSceneEnterIsTriedAgainBeforeAnyMove)
{
    Behaviour b;
    b.refuse_first_enter = true;
    FakeGate g(b);
    BotsRun r = run_bots(common(g, 4, 2) + " --rate 50 --max-errors 4");
    ASSERT_EQ(r.status, 0) << r.out;
    EXPECT_EQ(r.num("routes/scene.enter/status_errors"), 4u) << r.out;
    EXPECT_EQ(r.num("routes/scene.enter/ok"), 4u) << r.out;
    EXPECT_EQ(r.num("error_kinds/status"), 4u) << r.out;
    EXPECT_GT(r.num("routes/scene.move/ok"), 0u) << r.out;
    EXPECT_EQ(r.num("routes/scene.leave/ok"), 4u) << r.out;
    EXPECT_EQ(g.scene_calls_outside.load(), 0);
}

// --calls echo: after entering the world, every action is an echo call.
TEST(Bots, EchoOnlyCallsMakeEveryActionAnEcho)
{
    FakeGate g(Behaviour{});
    BotsRun r = run_bots(common(g, 3, 2) + " --rate 50 --calls echo");
    ASSERT_EQ(r.status, 0) << r.out;
    EXPECT_GT(r.num("routes/echo/ok"), 30u) << r.out;
    EXPECT_EQ(r.num("routes/push.self/ok"), 0u) << r.out;
    EXPECT_EQ(r.num("routes/player.add/ok"), 0u) << r.out;
    EXPECT_EQ(r.num("routes/chat.say/ok"), 0u) << r.out;
    EXPECT_EQ(r.num("routes/scene.move/ok"), 0u) << r.out;
    BotsRun bad = run_bots("--gate 127.0.0.1:1 --secret s --calls some");
    EXPECT_EQ(bad.status, 1);
    EXPECT_NE(bad.out.find("--calls must be"), std::string::npos) << bad.out;
}

TEST(Bots, IdleBotsKeepTheConnectionAliveWithPings)
{
    Behaviour b;
    b.heartbeat_ms = 500; // the bots ping after 250 ms without sending
    FakeGate g(b);
    BotsRun r = run_bots(common(g, 2, 3) + " --rate 1");
    ASSERT_EQ(r.status, 0) << r.out;
    // 3 s of mostly idle time per bot: about 8 pings each.
    EXPECT_GE(r.num("routes/ping/ok"), 6u) << r.out;
    EXPECT_EQ(uint64_t(g.pings.load()), r.num("routes/ping/ok"));
    // The gateway would kick after 2 x heartbeat_ms of silence.
    EXPECT_LT(g.max_gap_ms.load(), 1000) << "a bot stayed silent too long";
}

TEST(Bots, LatencyIsMeasuredPerRoute)
{
    Behaviour b;
    b.echo_delay_ms = 60;
    FakeGate g(b);
    BotsRun r = run_bots(common(g, 2, 2) + " --rate 0");
    ASSERT_EQ(r.status, 0) << r.out;
    EXPECT_GT(r.num("routes/echo/ok"), 2u);
    EXPECT_GE(r.num("routes/echo/p50_us"), 60000u) << r.out;
    EXPECT_GE(r.num("routes/echo/max_us"), r.num("routes/echo/p99_us"));
    EXPECT_LT(r.num("routes/echo/p50_us"), 2000000u) << r.out;
    // The other routes are answered at once: far below the echo delay.
    EXPECT_GT(r.num("routes/player.get/ok"), 0u);
    EXPECT_LT(r.num("routes/player.get/p50_us"), 30000u) << r.out;
    // Latency counts requests, not the pushes after them.
    EXPECT_EQ(r.num("routes/echo/ok") + r.num("routes/push.self/ok") +
                  r.num("routes/player.get/ok") + r.num("routes/player.add/ok") +
                  r.num("routes/chat.say/ok") + r.num("routes/scene.move/ok") +
                  r.num("routes/chat.join/ok") + r.num("routes/scene.enter/ok") +
                  r.num("routes/scene.leave/ok") + r.num("routes/chat.leave/ok"),
              uint64_t(g.calls.load()));
}

TEST(Bots, TheRampUpSpreadsLoginsAndTheRunLastsRampPlusDuration)
{
    FakeGate g(Behaviour{});
    auto t0 = Clock::now();
    // Bot i starts at 2 s * i / 4: logins at about 0, 0.5, 1 and 1.5 s.
    BotsRun r = run_bots("--gate " + g.addr() + " --secret " + kSecret +
                         " --bots 4 --duration-s 1 --ramp-s 2 --quiet");
    auto took = Clock::now() - t0;
    ASSERT_EQ(r.status, 0) << r.out;
    EXPECT_EQ(g.logins.load(), 4);
    auto [first, last] = g.login_span();
    // 1.5 s apart when on time; a slow first connect (sanitizers, a loaded machine) shortens it.
    auto span_ms = std::chrono::duration_cast<std::chrono::milliseconds>(last - first).count();
    EXPECT_GE(span_ms, 1000);
    EXPECT_LT(span_ms, 6000);
    EXPECT_GE(r.num("elapsed_s"), 3u);
    EXPECT_GE(took, std::chrono::seconds(3));
    EXPECT_LT(took, std::chrono::seconds(20));
}

TEST(Bots, AWarmUpLeavesTheLoginsOutOfTheMeasuredPart)
{
    FakeGate g(Behaviour{});
    // Logins come first, at the start: inside a 2 s warm-up even on a loaded machine.
    BotsRun r = run_bots(common(g, 2, 5) + " --warmup-s 2 --calls echo --rate 20");
    ASSERT_EQ(r.status, 0) << r.out;
    EXPECT_EQ(g.logins.load(), 2);
    EXPECT_EQ(r.num("routes/login/ok"), 0u) << r.out;
    EXPECT_EQ(r.num("routes/chat.join/ok"), 0u) << r.out;
    EXPECT_GT(r.num("warmup_ok"), 2u) << r.out; // the logins, joins and the first echoes
    EXPECT_GT(r.num("routes/echo/ok"), 0u) << r.out;
    EXPECT_EQ(r.num("measured_s"), 3u) << r.out;
    // Every answer is either measured or left out in the warm-up; none is lost.
    uint64_t measured = 0;
    for (const char *route : {"login", "ping", "chat.join", "scene.enter", "echo", "scene.leave",
                              "chat.leave", "logout"})
        measured += r.num(std::string("routes/") + route + "/ok");
    EXPECT_EQ(r.num("warmup_ok") + measured,
              uint64_t(g.calls.load() + g.logins.load() + g.pings.load() + g.logouts.load()))
        << r.out;

    BotsRun bad = run_bots(common(g, 1, 3) + " --warmup-s 3");
    EXPECT_EQ(bad.status, 1) << bad.out;
    EXPECT_NE(bad.out.find("--warmup-s must be below --duration-s"), std::string::npos) << bad.out;
}

TEST(Bots, AReplyLaterThanTheTimeoutIsAnErrorAndTheBotStartsAfresh)
{
    Behaviour b;
    b.echo_delay_ms = 1500;
    FakeGate g(b);
    auto t0 = Clock::now();
    BotsRun r = run_bots(common(g, 2, 2) + " --rate 0 --timeout-ms 300");
    ASSERT_EQ(r.status, 3) << r.out;
    EXPECT_GE(r.num("error_kinds/timeout"), 2u) << r.out;
    EXPECT_NE(r.out.find("no reply to echo within 300 ms"), std::string::npos) << r.out;
    // The late reply could be taken for the next request's: the bot drops that connection and
    // logs in again on a new one.
    EXPECT_GE(r.num("relogins"), 1u) << r.out;
    EXPECT_EQ(r.num("error_kinds/protocol"), 0u) << r.out;
    EXPECT_LT(Clock::now() - t0, std::chrono::seconds(30)); // nothing waited for the replies
}

TEST(Bots, SigtermEndsTheRunEarlyWithLogoutsAndTheReport)
{
    FakeGate g(Behaviour{});
    auto t0 = Clock::now();
    BotsRun r = run_bots(common(g, 3, 60) + " --rate 20", 2);
    ASSERT_EQ(r.status, 0) << r.out;
    EXPECT_LT(Clock::now() - t0, std::chrono::seconds(30)) << "the bots played on";
    EXPECT_NE(r.out.find("stopped early by a signal"), std::string::npos) << r.out;
    EXPECT_EQ(r.num("errors"), 0u) << r.out;
    EXPECT_EQ(r.num("logouts"), 3u) << r.out;
    EXPECT_EQ(g.logouts.load(), 3);
}

TEST(Bots, AKickDuringTheRunIsAnErrorAndTheBotsCarryOn)
{
    Behaviour b;
    b.kick_after_login = true;
    FakeGate g(b);
    BotsRun r = run_bots(common(g, 2, 2));
    ASSERT_EQ(r.status, 3) << r.out;
    EXPECT_GE(r.num("error_kinds/kicked"), 2u);
    EXPECT_NE(r.out.find("KICK 4"), std::string::npos) << r.out;
    // Each kicked bot logged in again after a back-off.
    EXPECT_GE(g.logins.load(), 3);
    EXPECT_NE(r.out.find("coho-bots: FAIL"), std::string::npos);
}

TEST(Bots, ErrorsWithinMaxErrorsStillPass)
{
    Behaviour b;
    b.kick_after_login = true;
    FakeGate g(b);
    BotsRun r = run_bots(common(g, 2, 1) + " --max-errors 1000000");
    ASSERT_EQ(r.status, 0) << r.out;
    EXPECT_GE(r.num("error_kinds/kicked"), 1u);
}

TEST(Bots, GarbageFromTheGatewayIsAProtocolErrorNotACrash)
{
    Behaviour b;
    b.garbage_after_login = true;
    FakeGate g(b);
    BotsRun r = run_bots(common(g, 3, 2));
    ASSERT_EQ(r.status, 3) << r.out;
    EXPECT_GE(r.num("error_kinds/protocol"), 3u);
    EXPECT_NE(r.out.find("frame len 3"), std::string::npos) << r.out;
}

TEST(Bots, AGapInThePushSequenceIsReported)
{
    Behaviour b;
    b.skip_push_seq = true;
    FakeGate g(b);
    BotsRun r = run_bots(common(g, 2, 2) + " --rate 50");
    ASSERT_EQ(r.status, 3) << r.out;
    EXPECT_GE(r.num("error_kinds/push_lost"), 1u) << r.out;
    EXPECT_NE(r.out.find("pushes 2..2 never came"), std::string::npos) << r.out;
}

// Pushes that contradict the grid rule for the bots' own positions are counted as errors.
TEST(Bots, AoiPushesAgainstTheGridRuleAreReported)
{
    Behaviour b;
    b.aoi_lies = true;
    FakeGate g(b);
    BotsRun r = run_bots(common(g, 2, 2) + " --rate 50 --aoi-cell 100");
    ASSERT_EQ(r.status, 3) << r.out;
    const uint64_t moves = r.num("routes/scene.move/ok");
    ASSERT_GT(moves, 0u) << r.out;
    EXPECT_EQ(r.num("aoi_mismatches"), 2 * moves) << r.out;
    EXPECT_EQ(r.num("error_kinds/aoi_mismatch"), 2 * moves);
    EXPECT_EQ(r.num("aoi_entered"), moves);
    EXPECT_EQ(r.num("aoi_left"), moves);
    EXPECT_NE(r.out.find("entered at ("), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("out of view of cell size 100"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("(itself)"), std::string::npos) << r.out;
}

TEST(Bots, ADuplicatePushIsReported)
{
    Behaviour b;
    b.repeat_push_seq = true;
    FakeGate g(b);
    // The duplicate is dropped, so the push.self waiting for it times out: keep that short.
    BotsRun r = run_bots(common(g, 2, 2) + " --rate 50 --timeout-ms 1000");
    ASSERT_EQ(r.status, 3) << r.out;
    EXPECT_GE(r.num("error_kinds/push_dup"), 1u) << r.out;
}

TEST(Bots, AWrongReplyPayloadIsReported)
{
    Behaviour b;
    b.corrupt_echo = true;
    FakeGate g(b);
    BotsRun r = run_bots(common(g, 2, 2) + " --rate 50");
    ASSERT_EQ(r.status, 3) << r.out;
    EXPECT_GE(r.num("error_kinds/reply"), 1u) << r.out;
    EXPECT_EQ(r.num("error_kinds/reply"), r.num("routes/echo/ok"));
}

TEST(Bots, AWrongSecretFailsLoginWithStatus1)
{
    FakeGate g(Behaviour{});
    BotsRun r = run_bots("--gate " + g.addr() +
                         " --secret wrong --bots 2 --duration-s 1 --ramp-s 0 --quiet");
    ASSERT_EQ(r.status, 3) << r.out;
    EXPECT_GE(r.num("routes/login/status_errors"), 2u);
    EXPECT_EQ(r.num("logins"), 0u);
    EXPECT_GE(g.bad_tokens.load(), 2);
    EXPECT_NE(r.out.find("login: status 1"), std::string::npos) << r.out;
}

TEST(Bots, RebindKeepsThePushSequenceAcrossSockets)
{
    Behaviour b;
    b.push_during_rebind = true;
    FakeGate g(b);
    BotsRun r = run_bots(common(g, 3, 3) + " --rate 20 --rebind-every-s 1");
    ASSERT_EQ(r.status, 0) << r.out;
    EXPECT_EQ(r.num("errors"), 0u) << r.out;
    EXPECT_GE(r.num("rebinds"), 3u);
    EXPECT_EQ(r.num("rebinds"), uint64_t(g.rebinds_ok.load()));
    EXPECT_EQ(g.rebinds_bad.load(), 0);
    EXPECT_EQ(r.num("logins"), 3u) << "a rebind fell back to a new login";
    // Every REBIND named the last push the gateway had sent: nothing was left unread.
    EXPECT_EQ(g.rebind_last_exact.load(), g.rebinds_ok.load());
    // The push made while each bot was away came through the replay.
    EXPECT_GE(r.num("chat_pushes"), r.num("routes/chat.say/ok") + r.num("rebinds"));
}

// Two gateways: the first dies under the bots, which move to the second, try REBIND there
// (refused with status 2: sessions live in the gateway that made them), log in again and carry on.
TEST(Bots, BotsOfAGatewayThatDiesMoveToTheNextOneAndLogInAgain)
{
    FakeGate first(Behaviour{}), second(Behaviour{});
    const int bots = 4;
    BotsRun r;
    {
        std::thread runner([&] {
            r = run_bots("--gate " + first.addr() + " --gate " + second.addr() + " --secret " +
                         kSecret + " --bots " + std::to_string(bots) +
                         " --duration-s 6 --ramp-s 0 --quiet --rate 20 --calls echo --max-errors " +
                         std::to_string(bots));
        });
        // Every bot playing on the first gateway (logged in, calling), then it dies.
        auto deadline = Clock::now() + std::chrono::seconds(30);
        while (first.callers.load() < bots && Clock::now() < deadline)
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        EXPECT_EQ(first.callers.load(), bots);
        first.die();
        runner.join();
    }
    ASSERT_EQ(r.status, 0) << r.out;
    EXPECT_EQ(second.rebinds_bad.load(), bots) << r.out;
    EXPECT_EQ(second.rebinds_ok.load(), 0);
    EXPECT_EQ(second.logins.load(), bots) << r.out;
    EXPECT_EQ(r.num("rebinds_refused"), uint64_t(bots)) << r.out;
    EXPECT_EQ(r.num("failovers_playing"), uint64_t(bots)) << r.out;
    EXPECT_GE(r.num("gate_failovers"), uint64_t(bots)) << r.out;
    EXPECT_EQ(r.num("relogins"), uint64_t(bots)) << r.out;
    EXPECT_EQ(r.num("logouts"), uint64_t(bots)) << r.out;
    // Only the connection each bot had when the gateway died: no REBIND status error, no
    // connect error (the dead gateway's refusal is a failover).
    EXPECT_LE(r.num("errors"), uint64_t(bots)) << r.out;
    EXPECT_EQ(r.num("error_kinds/connect"), 0u) << r.out;
    EXPECT_EQ(r.num("error_kinds/status"), 0u) << r.out;
    EXPECT_EQ(r.num("routes/rebind/status_errors"), 0u) << r.out;
    EXPECT_NE(r.out.find("rebinds refused by the new gateway " + std::to_string(bots)),
              std::string::npos)
        << r.out;
}

TEST(Bots, WebSocketBotsPlayLikeTcpOnes)
{
    Behaviour b;
    b.ws = true;
    FakeGate g(b);
    BotsRun r = run_bots(common(g, 3, 2) + " --rate 50 --ws");
    ASSERT_EQ(r.status, 0) << r.out;
    EXPECT_EQ(r.num("errors"), 0u) << r.out;
    EXPECT_EQ(r.num("logins"), 3u);
    EXPECT_EQ(r.num("logouts"), 3u);
    EXPECT_GT(r.num("routes/echo/ok"), 0u);
    EXPECT_GT(r.num("self_pushes"), 0u);
    EXPECT_EQ(g.unmasked.load(), 0);
}

TEST(Bots, WebSocketPingsAreAnsweredAndACloseIsReported)
{
    Behaviour b;
    b.ws = true;
    b.ws_ping_then_close = true;
    FakeGate g(b);
    BotsRun r = run_bots(common(g, 2, 1) + " --ws");
    ASSERT_EQ(r.status, 3) << r.out;
    EXPECT_GE(g.pongs.load(), 2) << "a ping went unanswered";
    EXPECT_GE(r.num("error_kinds/closed"), 2u) << r.out;
    EXPECT_NE(r.out.find("websocket close, code 1008"), std::string::npos) << r.out;
}

TEST(Bots, AGatewayThatIsNotThereGivesConnectErrors)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof a), 0);
    ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr *>(&a), &len), 0);
    close(fd); // a port nobody listens on
    BotsRun r = run_bots("--gate 127.0.0.1:" + std::to_string(ntohs(a.sin_port)) +
                         " --secret s --bots 2 --duration-s 1 --ramp-s 0 --quiet");
    ASSERT_EQ(r.status, 3) << r.out;
    EXPECT_GE(r.num("error_kinds/connect"), 2u);
    EXPECT_NE(r.out.find("Connection refused"), std::string::npos) << r.out;
}

// --rebind-aligned: bots that logged in over a 3-s ramp drop their sockets at the same moments
// (a reconnect storm), not each --rebind-every-s after its own login (which would spread the
// first REBINDs over the ramp's 2.25 s).
TEST(Bots, AlignedRebindsOfRampedBotsFallTogether)
{
    FakeGate g(Behaviour{});
    BotsRun r = run_bots("--gate " + g.addr() + " --secret " + kSecret +
                         " --bots 4 --ramp-s 3 --duration-s 3 --rate 5 --rebind-every-s 4"
                         " --rebind-aligned --quiet");
    ASSERT_EQ(r.status, 0) << r.out;
    EXPECT_EQ(r.num("errors"), 0u) << r.out;
    EXPECT_EQ(r.num("logins"), 4u) << r.out;
    // The run lasts ramp + duration = 6 s: one storm, at 4 s, for every bot.
    ASSERT_EQ(r.num("rebinds"), 4u) << r.out;
    std::vector<Clock::time_point> t = g.rebind_times();
    ASSERT_EQ(t.size(), 4u);
    auto spread = t.back() - t.front();
    EXPECT_LT(spread, std::chrono::milliseconds(1000))
        << "the REBINDs spread over "
        << std::chrono::duration_cast<std::chrono::milliseconds>(spread).count() << " ms";
    BotsRun alone = run_bots("--gate " + g.addr() + " --secret s --rebind-aligned");
    EXPECT_EQ(alone.status, 1);
    EXPECT_NE(alone.out.find("--rebind-aligned needs --rebind-every-s"), std::string::npos)
        << alone.out;
}

TEST(Bots, HelpExitsZeroAndBadFlagsExitOne)
{
    BotsRun help = run_bots("--help");
    EXPECT_EQ(help.status, 0);
    EXPECT_NE(help.out.find("--gate HOST:PORT"), std::string::npos) << help.out;
    BotsRun bad = run_bots("--gate 127.0.0.1:1 --secret s --no-such-flag");
    EXPECT_EQ(bad.status, 1);
    EXPECT_NE(bad.out.find("unknown flag '--no-such-flag'"), std::string::npos) << bad.out;
    BotsRun missing = run_bots("--secret s");
    EXPECT_EQ(missing.status, 1);
    EXPECT_NE(missing.out.find("missing required flag '--gate'"), std::string::npos);
    BotsRun zero = run_bots("--gate 127.0.0.1:1 --secret s --bots 0");
    EXPECT_EQ(zero.status, 1);
    EXPECT_NE(zero.out.find("--bots must be"), std::string::npos) << zero.out;
    BotsRun notnum = run_bots("--gate 127.0.0.1:1 --secret s --rate fast");
    EXPECT_EQ(notnum.status, 1);
}

namespace {

// One HTTP/1.0 GET to 127.0.0.1:port; the body, or "" on any failure.
std::string http_get(int port, const std::string &path)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval tv{5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string resp;
    if (connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) == 0) {
        std::string req = "GET " + path + " HTTP/1.0\r\n\r\n";
        if (send(fd, req.data(), req.size(), MSG_NOSIGNAL) == ssize_t(req.size())) {
            char buf[4096];
            ssize_t n;
            while ((n = recv(fd, buf, sizeof buf, 0)) > 0)
                resp.append(buf, size_t(n));
        }
    }
    close(fd);
    size_t body = resp.find("\r\n\r\n");
    return resp.rfind("HTTP/1.1 200", 0) == 0 && body != std::string::npos ? resp.substr(body + 4)
                                                                           : std::string();
}

// The value of one series line of a /metrics page, or -1.
double series(const std::string &page, const std::string &name)
{
    size_t at = page.find("\n" + name + " ");
    return at == std::string::npos ? -1 : std::stod(page.substr(at + name.size() + 2));
}

} // namespace

// --admin serves the run live: the counters move while the bots play, /stats carries the
// SUMMARY's JSON, /coroutines every bot thread, and promtool accepts /metrics.
TEST(Bots, AdminPortServesTheRunWhileItPlays)
{
    FakeGate g(Behaviour{});
    std::string cmd = std::string(COHO_BOTS_PATH) + " " + common(g, 3, 6) +
                      " --rate 20 --threads 2 --admin 127.0.0.1:0 2>&1";
    FILE *p = popen(cmd.c_str(), "r");
    ASSERT_NE(p, nullptr);
    std::string out;
    char line[4096];
    int port = -1;
    while (port < 0 && fgets(line, sizeof line, p) != nullptr) {
        out += line;
        if (std::strncmp(line, "listening admin 127.0.0.1:", 26) == 0)
            port = std::atoi(line + 26);
    }
    ASSERT_GT(port, 0) << out;
    // Every bot logs in at once (--ramp-s 0), then plays for 6 s.
    std::string m;
    auto end = Clock::now() + std::chrono::seconds(10);
    while (Clock::now() < end) {
        m = http_get(port, "/metrics");
        if (series(m, "coho_bots_replies_total{op=\"login\"}") == 3 &&
            series(m, "coho_bots_replies_total{op=\"echo\"}") > 0)
            break;
        usleep(50000);
    }
    EXPECT_EQ(series(m, "coho_bots_replies_total{op=\"login\"}"), 3) << m;
    EXPECT_GT(series(m, "coho_bots_replies_total{op=\"echo\"}"), 0) << m;
    EXPECT_EQ(series(m, "coho_bots_running"), 3) << m;
    EXPECT_EQ(series(m, "coho_bots_errors_total{kind=\"timeout\"}"), 0) << m;
    EXPECT_GT(series(m, "coho_bots_latency_p99_seconds{op=\"echo\"}"), 0) << m;
    EXPECT_LT(series(m, "coho_bots_latency_p99_seconds{op=\"echo\"}"), 5) << m;
    if (access("/usr/bin/promtool", X_OK) == 0) {
        char path[] = "/tmp/coho-bots-metrics.XXXXXX";
        int fd = mkstemp(path);
        ASSERT_GE(fd, 0);
        ASSERT_EQ(write(fd, m.data(), m.size()), ssize_t(m.size()));
        close(fd);
        EXPECT_EQ(std::system((std::string("/usr/bin/promtool check metrics < ") + path).c_str()),
                  0)
            << m;
        unlink(path);
    }
    std::string stats = http_get(port, "/stats");
    EXPECT_NE(stats.find("\"bots\":{"), std::string::npos) << stats;
    EXPECT_NE(stats.find("\"logins\":3"), std::string::npos) << stats;
    std::string co = http_get(port, "/coroutines");
    EXPECT_NE(co.find("== bots 0 =="), std::string::npos) << co;
    EXPECT_NE(co.find("== bots 1 =="), std::string::npos) << co;
    while (fgets(line, sizeof line, p) != nullptr)
        out += line;
    int st = pclose(p);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << out;
    EXPECT_NE(out.find("coho-bots: PASS"), std::string::npos) << out;
}

TEST(Bots, AnAdminAddressThatCannotBeServedExitsOne)
{
    BotsRun bad = run_bots("--gate 127.0.0.1:1 --secret s --admin nope");
    EXPECT_EQ(bad.status, 1);
    EXPECT_NE(bad.out.find("--admin wants HOST:PORT"), std::string::npos) << bad.out;
    BotsRun unbindable = run_bots("--gate 127.0.0.1:1 --secret s --admin 192.0.2.1:0");
    EXPECT_EQ(unbindable.status, 1);
    EXPECT_NE(unbindable.out.find("coho-bots: --admin 192.0.2.1:0"), std::string::npos)
        << unbindable.out;
}
