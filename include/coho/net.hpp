// SPDX-License-Identifier: MIT
// The C++ face of libcoho_net (include/coho/net.h): servers whose handlers are lambdas, a
// connection view, broadcast groups, dial. Header-only over the C API; link coho::net.
//
//     coho::net::Group room;
//     coho::net::Server::Options o;
//     o.framing = COHO_FRAMING_LINE;
//     coho::net::Server chat("127.0.0.1:7000", o, [&](coho::net::Conn &c) {
//         room.add(c.id());
//         while (auto line = c.read())   // parks until a whole frame is in
//             room.broadcast(*line);     // queues, never waits
//     });                                // ~Server stops it (drains for a second)
//
// Errors follow coho.hpp: what the caller cannot route around (a server that cannot start, no
// memory) throws std::system_error(errno, std::generic_category(), "coho_..."); what a
// connection's life brings (EOF, an idle kick, a departed id, a full queue) is a return value.
// An exception that escapes a handler is logged and ends that connection; it never crosses into
// C.
#pragma once

#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <coho.hpp>
#include <coho/net.h>

namespace coho {
namespace net {

// A connection as its handler sees it: a view, valid while the handler runs.
class Conn {
public:
    explicit Conn(coho_conn_t *c) noexcept : c_(c) { coho_cbuf_init(&buf_, nullptr); }
    Conn(const Conn &) = delete;
    Conn &operator=(const Conn &) = delete;
    ~Conn() { coho_cbuf_destroy(&buf_); }

    // The next whole frame (header included), or nullopt at EOF or on an error; error() then
    // tells which (0 at EOF; EDQUOT leaves the connection open, see coho_conn_read_frame).
    // In the handler's coroutine.
    std::optional<std::string> read()
    {
        std::string out;
        if (!read(out))
            return std::nullopt;
        return out;
    }

    // read() into `out` (its capacity is reused); false at EOF or on an error.
    bool read(std::string &out)
    {
        ssize_t n = coho_conn_read_frame(c_, &buf_);
        if (n <= 0) {
            err_ = n == 0 ? 0 : errno;
            return false;
        }
        out.resize(static_cast<size_t>(n));
        coho_cbuf_read(&buf_, &out[0], static_cast<size_t>(n));
        err_ = 0;
        return true;
    }

    // Why the last read() returned nothing: 0 (EOF) or its errno.
    int error() const noexcept { return err_; }

    // Queues one encoded frame (coho_conn_send); never parks. False with errno ENOTCONN (closing)
    // or ENOBUFS (the queue's bound: the connection is being closed). Throws on ENOMEM.
    bool send(std::string_view frame)
    {
        if (coho_conn_send(c_, frame.data(), frame.size()) == 0)
            return true;
        if (errno == ENOMEM)
            coho::detail::throw_errno("coho_conn_send");
        return false;
    }

    // Stops reading (coho_conn_close): read() fails with ECONNABORTED from now on.
    void close() noexcept { coho_conn_close(c_); }

    uint64_t id() const noexcept { return coho_conn_id(c_); }
    coho_conn_t *native_handle() const noexcept { return c_; }

private:
    coho_conn_t *c_;
    coho_cbuf_t buf_;
    int err_ = 0;
};

// coho_conn_send_to: from any coroutine or thread. False with errno ENOTCONN for a departed id
// (never its successor) or ENOBUFS; throws on ENOMEM.
inline bool send_to(uint64_t conn_id, std::string_view frame)
{
    if (coho_conn_send_to(conn_id, frame.data(), frame.size()) == 0)
        return true;
    if (errno == ENOMEM)
        coho::detail::throw_errno("coho_conn_send_to");
    return false;
}

// A frame of `payload` behind a length prefix in format `cfg` (default: 4 bytes, little-endian,
// not counting itself). Throws system_error EMSGSIZE when the length does not fit.
inline std::string lenpfx_frame(std::string_view payload,
                                const coho_lenpfx_t &cfg = {4, false, false})
{
    unsigned char h[4];
    int n = coho_lenpfx_encode(&cfg, payload.size(), h);
    if (n < 0)
        coho::detail::throw_errno("coho_lenpfx_encode");
    std::string f(reinterpret_cast<const char *>(h), static_cast<size_t>(n));
    f.append(payload.data(), payload.size());
    return f;
}

// A TCP server (RAII over coho_server_t): the handler runs in a coroutine of its own per
// connection. Not copyable; movable.
class Server {
public:
    // coho_server_opts_t with the defaults filled in.
    struct Options : coho_server_opts_t {
        Options() noexcept { coho_server_opts_init(this); }
    };
    using Handler = std::function<void(Conn &)>;

    // Starts listening on `host_port` (coho_server_start). Throws system_error on failure.
    Server(const std::string &host_port, Handler handler) : Server(host_port, Options(), handler) {}
    Server(const std::string &host_port, const coho_server_opts_t &opts, Handler handler)
        : handler_(std::make_unique<Handler>(std::move(handler)))
    {
        // The handlers are C++ running in coroutines: the exception-state switch hook must be
        // in place before the server's schedulers run (coho_set_switch_hook's rule).
        coho::detail::install_switch_hook();
        s_ = coho_server_start(host_port.c_str(), &opts, &Server::trampoline, handler_.get());
        if (s_ == nullptr)
            coho::detail::throw_errno("coho_server_start");
    }
    Server(const Server &) = delete;
    Server &operator=(const Server &) = delete;
    Server(Server &&o) noexcept : s_(std::exchange(o.s_, nullptr)), handler_(std::move(o.handler_))
    {}
    Server &operator=(Server &&o) noexcept
    {
        if (this != &o) {
            stop();
            s_ = std::exchange(o.s_, nullptr);
            handler_ = std::move(o.handler_);
        }
        return *this;
    }

    // Stops with a one-second drain unless stop() was called.
    ~Server() { stop(); }

    // coho_server_stop: reads fail with ESHUTDOWN, handlers get `drain` to return, then are
    // cut. Parks in a coroutine, blocks a plain thread. A second call does nothing.
    void stop(std::chrono::milliseconds drain = std::chrono::seconds(1)) noexcept
    {
        if (s_ != nullptr)
            coho_server_stop(s_, static_cast<int64_t>(drain.count()));
        s_ = nullptr;
    }

    int port() const noexcept { return s_ ? coho_server_port(s_) : -1; }

    // Replaces the CIDR allow and deny lists (coho_server_set_acl). Throws system_error EINVAL
    // on a bad CIDR (nothing changes).
    void set_acl(const std::vector<std::string> &allow, const std::vector<std::string> &deny)
    {
        std::vector<const char *> a, d;
        for (const auto &x : allow)
            a.push_back(x.c_str());
        for (const auto &x : deny)
            d.push_back(x.c_str());
        if (coho_server_set_acl(s_, a.data(), static_cast<unsigned>(a.size()), d.data(),
                                static_cast<unsigned>(d.size())) != 0)
            coho::detail::throw_errno("coho_server_set_acl");
    }

    coho_server_stats_t stats() const noexcept
    {
        coho_server_stats_t st{};
        coho_server_get_stats(s_, &st);
        return st;
    }

    coho_server_t *native_handle() const noexcept { return s_; }

private:
    static void trampoline(coho_conn_t *c, void *user) noexcept
    {
        Conn conn(c);
        try {
            (*static_cast<Handler *>(user))(conn);
        } catch (const std::exception &e) {
            coho_log_error("connection %llu: exception escaped its handler: %s",
                           static_cast<unsigned long long>(conn.id()), e.what());
        } catch (...) {
            coho_log_error("connection %llu: exception escaped its handler",
                           static_cast<unsigned long long>(conn.id()));
        }
    }

    coho_server_t *s_ = nullptr;
    std::unique_ptr<Handler> handler_;
};

// A broadcast group (RAII over coho_group_t): connection ids of any servers and threads.
class Group {
public:
    Group()
    {
        g_ = coho_group_create();
        if (g_ == nullptr)
            coho::detail::throw_errno("coho_group_create");
    }
    Group(const Group &) = delete;
    Group &operator=(const Group &) = delete;
    ~Group() { coho_group_destroy(g_); }

    // Adds a member; false (errno EEXIST or ENOTCONN) when it is one already or is gone.
    bool add(uint64_t conn_id)
    {
        if (coho_group_add(g_, conn_id) == 0)
            return true;
        if (errno == ENOMEM)
            coho::detail::throw_errno("coho_group_add");
        return false;
    }

    // Removes a member; false when it was not one.
    bool remove(uint64_t conn_id) noexcept { return coho_group_remove(g_, conn_id) == 0; }

    // Queues `frame` to every member, copied once (coho_group_broadcast). Never parks.
    void broadcast(std::string_view frame)
    {
        if (coho_group_broadcast(g_, frame.data(), frame.size()) != 0)
            coho::detail::throw_errno("coho_group_broadcast");
    }

    size_t size() const noexcept { return coho_group_count(g_); }
    coho_group_t *native_handle() const noexcept { return g_; }

private:
    coho_group_t *g_;
};

// Connects to `host_port` within `timeout` (negative: no limit; coho_dial) and returns the fd,
// which the caller closes. Throws system_error (ETIMEDOUT, ECONNREFUSED, EHOSTUNREACH, ...).
template <class Rep, class Period>
int dial(const std::string &host_port, const std::chrono::duration<Rep, Period> &timeout)
{
    int64_t ms = timeout < timeout.zero() ? -1 : static_cast<int64_t>(coho::detail::to_ms(timeout));
    int fd = coho_dial(host_port.c_str(), ms);
    if (fd < 0)
        coho::detail::throw_errno("coho_dial");
    return fd;
}

} // namespace net
} // namespace coho
