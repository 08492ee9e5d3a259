// SPDX-License-Identifier: MIT
// coho-gate as a test drives it: the gateway as a process (started on 127.0.0.1, ports read from
// its "listening ..." lines, COHO_GATE_BIN) and a client over a plain blocking TCP socket that
// logs in (tokens signed with kSecret), calls and keeps the pushes it reads. Header-only; used by
// gate_test.cpp (against fake logic nodes) and logic_node_test.cpp (against coho-logic).
#pragma once

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

#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "game/common/bytes.hpp"
#include "game/common/token.hpp"
#include "game/common/wire.hpp"

extern char **environ;

namespace coho_test::gate_harness {

using namespace coho::game;

inline const char *const kSecret = "test-secret";

inline int64_t now_ms()
{
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// ---- the gateway process ---------------------------------------------------------------------

class GateProc {
public:
    // nofile > 0: the gateway's RLIMIT_NOFILE (inherited: this process holds it while spawning).
    explicit GateProc(std::vector<std::string> args, rlim_t nofile = 0)
    {
        rlimit saved{};
        getrlimit(RLIMIT_NOFILE, &saved);
        if (nofile > 0) {
            rlimit lower = saved;
            lower.rlim_cur = nofile;
            setrlimit(RLIMIT_NOFILE, &lower);
        }
        spawn(std::move(args));
        if (nofile > 0)
            setrlimit(RLIMIT_NOFILE, &saved);
    }

    void spawn(std::vector<std::string> args)
    {
        int out[2];
        if (pipe2(out, O_CLOEXEC) != 0)
            return;
        std::vector<std::string> argv_s = {COHO_GATE_BIN};
        argv_s.insert(argv_s.end(), args.begin(), args.end());
        std::vector<char *> argv;
        for (auto &a : argv_s)
            argv.push_back(a.data());
        argv.push_back(nullptr);
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, out[1], 1);
        if (posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), environ) != 0)
            pid_ = -1;
        posix_spawn_file_actions_destroy(&fa);
        close(out[1]);
        out_ = out[0];
        // The listening lines, before it serves.
        std::string buf;
        int64_t end = now_ms() + 20000;
        while (pid_ > 0 && now_ms() < end) {
            pollfd p{out_, POLLIN, 0};
            if (poll(&p, 1, 200) <= 0)
                continue;
            char c;
            if (read(out_, &c, 1) != 1)
                break;
            if (c != '\n') {
                buf += c;
                continue;
            }
            parse_line(buf);
            buf.clear();
            if (tcp > 0 && (!want_ws_ || ws > 0) && (!want_admin_ || admin > 0))
                break;
        }
        (void)args;
    }
    ~GateProc()
    {
        stop();
        if (out_ >= 0)
            close(out_);
    }

    // SIGTERM and the exit status (-1 when it did not exit within 20 s).
    int stop()
    {
        if (pid_ <= 0)
            return status_;
        kill(pid_, SIGTERM);
        int64_t end = now_ms() + 20000;
        int st = 0;
        while (now_ms() < end) {
            pid_t r = waitpid(pid_, &st, WNOHANG);
            if (r == pid_) {
                status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
                pid_ = -1;
                return status_;
            }
            usleep(10000);
        }
        kill(pid_, SIGKILL);
        waitpid(pid_, &st, 0);
        pid_ = -1;
        return -1;
    }

    static std::vector<std::string> args(const std::vector<std::string> &nodes,
                                         std::vector<std::string> extra = {})
    {
        std::string list;
        for (auto &n : nodes)
            list += (list.empty() ? "" : ",") + n;
        std::vector<std::string> a = {"--listen", "127.0.0.1:0", "--logic", list,
                                      "--secret", kSecret,       "--admin", "127.0.0.1:0"};
        a.insert(a.end(), extra.begin(), extra.end());
        return a;
    }
    void signal(int sig) { kill(pid_, sig); }
    GateProc &expect_ws()
    {
        want_ws_ = true;
        return *this;
    }

    int tcp = 0, ws = 0, admin = 0;

private:
    void parse_line(const std::string &l)
    {
        auto port_of = [&](const std::string &prefix) {
            return l.rfind(prefix, 0) == 0 ? std::stoi(l.substr(l.rfind(':') + 1)) : 0;
        };
        if (int p = port_of("listening tcp "))
            tcp = p;
        if (int p = port_of("listening ws "))
            ws = p, want_ws_ = true;
        if (int p = port_of("listening admin "))
            admin = p;
        want_admin_ = true;
    }

    pid_t pid_ = -1;
    int out_ = -1;
    int status_ = -1;
    bool want_ws_ = false, want_admin_ = false;
};

// ---- a client ----------------------------------------------------------------------------------

struct Frame {
    uint16_t type = 0;
    uint32_t seq = 0;
    std::string body;
    uint32_t u32_at(size_t off) const
    {
        return body.size() >= off + 4 ? get_u32((const unsigned char *)body.data() + off) : ~0u;
    }
    uint32_t status() const { return u32_at(0); }
};

class Client {
public:
    explicit Client(int port, int rcvbuf = 0)
    {
        fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (rcvbuf > 0)
            setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
        timeval tv{5, 0};
        setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        int one = 1;
        setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(uint16_t(port));
        inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
        if (connect(fd_, reinterpret_cast<sockaddr *>(&a), sizeof(a)) != 0) {
            close(fd_);
            fd_ = -1;
        }
    }
    ~Client()
    {
        if (fd_ >= 0)
            close(fd_);
    }
    bool ok() const { return fd_ >= 0; }
    void drop()
    {
        close(fd_);
        fd_ = -1;
    }

    bool send_raw(const std::string &bytes)
    {
        size_t off = 0;
        while (off < bytes.size()) {
            ssize_t n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
            if (n <= 0)
                return false;
            off += size_t(n);
        }
        return true;
    }
    bool send(uint16_t type, uint32_t seq, const std::string &body = {})
    {
        return send_raw(wire::frame(type, seq, body));
    }

    // Reads through a buffer (a slow-consumer test reads hundreds of thousands of frames).
    bool recv_exact(char *p, size_t n)
    {
        while (in_.size() - in_off_ < n) {
            if (in_off_ > 0) {
                in_.erase(0, in_off_);
                in_off_ = 0;
            }
            char buf[65536];
            ssize_t r = ::recv(fd_, buf, sizeof(buf), 0);
            if (r <= 0)
                return false;
            in_.append(buf, size_t(r));
        }
        std::memcpy(p, in_.data() + in_off_, n);
        in_off_ += n;
        return true;
    }
    std::optional<Frame> read()
    {
        char h[wire::kHeaderLen];
        if (!recv_exact(h, sizeof(h)))
            return std::nullopt;
        auto hd = wire::parse_header((const unsigned char *)h);
        if (hd.len < 8)
            return std::nullopt;
        Frame f;
        f.type = hd.type;
        f.seq = hd.seq;
        f.body.resize(hd.len - 8);
        if (!f.body.empty() && !recv_exact(f.body.data(), f.body.size()))
            return std::nullopt;
        return f;
    }
    // The next frame that is not a PUSH (pushes are kept in `pushes`).
    std::optional<Frame> reply()
    {
        for (;;) {
            auto f = read();
            if (!f || f->type != wire::PUSH)
                return f;
            pushes.push_back(*f);
        }
    }
    // True when the gateway closed the connection (EOF or reset) within 5 s.
    bool closed()
    {
        if (in_off_ < in_.size())
            return false;
        char c;
        ssize_t r = ::recv(fd_, &c, 1, 0);
        return r == 0 || (r < 0 && errno == ECONNRESET);
    }

    // LOGIN; on success fills session and key.
    uint32_t login(uint64_t uid, const std::string &token, uint32_t seq = 1)
    {
        if (!send(wire::LOGIN, seq, wire::login_body(uid, token)))
            return ~0u;
        auto f = reply();
        if (!f || f->type != (wire::LOGIN | wire::kResponse) || f->seq != seq)
            return ~0u;
        if (f->status() == 0 && f->body.size() == 4 + 8 + 16 + 4) {
            session = get_u64((const unsigned char *)f->body.data() + 4);
            key = f->body.substr(12, 16);
            heartbeat_ms = f->u32_at(28);
        }
        return f->status();
    }
    uint32_t login(uint64_t uid) { return login(uid, login_token(kSecret, uid)); }

    std::optional<Frame> call(uint16_t route, const std::string &payload, uint32_t seq = 7)
    {
        if (!send(wire::CALL, seq, wire::call_body(route, payload)))
            return std::nullopt;
        return reply();
    }

    std::vector<Frame> pushes;
    uint64_t session = 0;
    std::string key;
    uint32_t heartbeat_ms = 0;

private:
    int fd_ = -1;
    std::string in_;
    size_t in_off_ = 0;
};

} // namespace coho_test::gate_harness
