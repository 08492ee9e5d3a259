// SPDX-License-Identifier: MIT
// The C++ face of socket_ext (include/coho/socket_ext.h): pooled request/response
// multiplexing over long TCP connections or UDP sockets. Header-only; it includes coho.hpp and
// socket_ext.h. socket_ext is part of libcoho_net: link coho::net (pkg-config coho-net).
//
//     // a server: every request frame goes to the callable, which owns the Request
//     auto srv = coho::tdp::Pool::listen("127.0.0.1", 0, [](coho::tdp::Request rq) {
//         coho::spawn([rq = std::move(rq)] { rq.reply(answer_for(rq.frame())); });
//     });
//     // a client: pick a connection, send a frame carrying a fresh request id, wait
//     auto cli = coho::tdp::Pool::connect("127.0.0.1", srv.local_port());
//     coho::tdp::Buffer resp = cli.request(
//         [&](uint64_t id) { return coho::tdp::sock::encode_request(id, body); }, 2s);
//
// Errors follow coho.hpp: what the caller cannot route around throws
// std::system_error(errno, std::generic_category(), "coho_tdp_..."); try_* returns an empty
// optional (or false). Every call is for the thread of the scheduler the pool was created on,
// inside a coroutine unless it says otherwise, as in the C API.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include <coho.hpp>
#include <coho/socket_ext.h>

namespace coho {
namespace tdp {

// A timeout of "no limit" for pick, wait_resp and request.
inline constexpr std::chrono::milliseconds forever{-1};

namespace detail {

// Milliseconds for the C API: negative (forever) is -1, fractions round up.
template <class Rep, class Period>
int64_t timeout_ms(const std::chrono::duration<Rep, Period> &d)
{
    if (d < d.zero())
        return -1;
    return static_cast<int64_t>(coho::detail::to_ms(d));
}

// A socket address from a numeric IPv4 or IPv6 literal and a port (host order).
struct Address {
    sockaddr_storage ss{};
    socklen_t len = 0;

    Address(const char *ip, uint16_t port)
    {
        auto *a4 = reinterpret_cast<sockaddr_in *>(&ss);
        auto *a6 = reinterpret_cast<sockaddr_in6 *>(&ss);
        if (inet_pton(AF_INET, ip, &a4->sin_addr) == 1) {
            a4->sin_family = AF_INET;
            a4->sin_port = htons(port);
            len = sizeof(*a4);
        } else if (inet_pton(AF_INET6, ip, &a6->sin6_addr) == 1) {
            a6->sin6_family = AF_INET6;
            a6->sin6_port = htons(port);
            len = sizeof(*a6);
        } else {
            throw std::system_error(EINVAL, std::generic_category(), "inet_pton");
        }
    }
    const sockaddr *get() const noexcept { return reinterpret_cast<const sockaddr *>(&ss); }
};

} // namespace detail

// ---- buffers ------------------------------------------------------------------------------

// An owned coho_cbuf_t: a response or a request frame. Movable (the C struct may be moved
// while nothing borrows from it), not copyable. Single thread.
class Buffer {
public:
    Buffer() noexcept { coho_cbuf_init(&b_, nullptr); }
    explicit Buffer(std::string_view bytes) : Buffer() { append(bytes.data(), bytes.size()); }
    ~Buffer() { coho_cbuf_destroy(&b_); }
    Buffer(const Buffer &) = delete;
    Buffer &operator=(const Buffer &) = delete;
    Buffer(Buffer &&o) noexcept
    {
        std::memcpy(static_cast<void *>(&b_), &o.b_, sizeof(b_));
        coho_cbuf_init(&o.b_, nullptr);
    }
    Buffer &operator=(Buffer &&o) noexcept
    {
        if (this != &o) {
            coho_cbuf_destroy(&b_);
            std::memcpy(static_cast<void *>(&b_), &o.b_, sizeof(b_));
            coho_cbuf_init(&o.b_, nullptr);
        }
        return *this;
    }

    // Bytes held.
    size_t size() const noexcept { return coho_cbuf_len(&b_); }
    bool empty() const noexcept { return size() == 0; }

    // Appends `len` bytes. Throws system_error: ENOBUFS, ENOMEM.
    void append(const void *data, size_t len)
    {
        if (coho_cbuf_append(&b_, data, len) != 0)
            coho::detail::throw_errno("coho_cbuf_append");
    }

    // Copies `len` bytes from offset `off` to `dst` (does not move the cursor of the C
    // buffer for good: it is restored). Returns the bytes copied (fewer at the end).
    size_t copy_out(size_t off, void *dst, size_t len) const noexcept
    {
        auto *self = const_cast<coho_cbuf_t *>(&b_);
        const size_t pos = coho_cbuf_tell(self);
        ssize_t n = 0;
        if (coho_cbuf_seek(self, static_cast<off_t>(off), SEEK_SET) >= 0)
            n = coho_cbuf_read(self, dst, len);
        coho_cbuf_seek(self, static_cast<off_t>(pos), SEEK_SET);
        return n > 0 ? static_cast<size_t>(n) : 0;
    }

    // All bytes, copied into a string.
    std::string str() const
    {
        std::string s(size(), '\0');
        s.resize(copy_out(0, s.data(), s.size()));
        return s;
    }

    coho_cbuf_t *native_handle() noexcept { return &b_; }
    const coho_cbuf_t *native_handle() const noexcept { return &b_; }

private:
    coho_cbuf_t b_;
};

// ---- a request handed to on_req ----------------------------------------------------------

// A request frame a listen pool (or a connect pool's peer) sent: owns the coho_tdp_req_t and
// frees it when destroyed (coho_tdp_req_free). Movable, not copyable. It stays usable after
// its pool is closed: reply() then throws ENOTCONN.
class Request {
public:
    Request() noexcept = default;
    explicit Request(coho_tdp_req_t *rq) noexcept : rq_(rq) {}
    ~Request() { coho_tdp_req_free(rq_); }
    Request(const Request &) = delete;
    Request &operator=(const Request &) = delete;
    Request(Request &&o) noexcept : rq_(std::exchange(o.rq_, nullptr)) {}
    Request &operator=(Request &&o) noexcept
    {
        if (this != &o) {
            coho_tdp_req_free(rq_);
            rq_ = std::exchange(o.rq_, nullptr);
        }
        return *this;
    }

    explicit operator bool() const noexcept { return rq_ != nullptr; }
    uint64_t conn_id() const noexcept { return rq_ != nullptr ? rq_->conn_id : 0; }
    uint64_t req_id() const noexcept { return rq_ != nullptr ? rq_->req_id : 0; }

    // The frame's bytes (exactly one frame), copied into a string.
    std::string frame() const
    {
        if (rq_ == nullptr)
            return std::string();
        std::string s(coho_cbuf_len(&rq_->frame), '\0');
        coho_cbuf_t *f = &rq_->frame;
        coho_cbuf_seek(f, 0, SEEK_SET);
        ssize_t n = coho_cbuf_read(f, s.data(), s.size());
        s.resize(n > 0 ? static_cast<size_t>(n) : 0);
        coho_cbuf_seek(f, 0, SEEK_SET);
        return s;
    }

    // Sends `frame` back (coho_tdp_reply): on the connection the request came from, or on a
    // UDP pool as one datagram to its sender; the answer is whole or not at all. Inside a
    // coroutine. Throws system_error: ENOTCONN (the connection or its pool is gone), EINVAL
    // (empty, or a moved-from Request), EMSGSIZE (UDP), or the send error.
    void reply(std::string_view frame) const
    {
        if (coho_tdp_reply(rq_, frame.data(), frame.size()) != 0)
            coho::detail::throw_errno("coho_tdp_reply");
    }

    // reply() from buffers gathered by the caller (coho_tdp_replyv).
    void reply(const struct iovec *iov, int iovcnt) const
    {
        if (coho_tdp_replyv(rq_, iov, iovcnt) != 0)
            coho::detail::throw_errno("coho_tdp_replyv");
    }

    // UDP pools: the sender's address (where reply() goes); nullptr on stream pools.
    const sockaddr *peer() const noexcept
    {
        return rq_ != nullptr && rq_->peer_len > 0 ? reinterpret_cast<const sockaddr *>(&rq_->peer)
                                                   : nullptr;
    }

    coho_tdp_req_t *native_handle() const noexcept { return rq_; }

    // Gives up ownership: the caller frees it with coho_tdp_req_free.
    coho_tdp_req_t *release() noexcept { return std::exchange(rq_, nullptr); }

private:
    coho_tdp_req_t *rq_ = nullptr;
};

// ---- the sock protocol (DESIGN.md "Wire format") ------------------------------------------

namespace sock {

using Header = coho_sock_hdr_t;

// A header and body, decoded from a frame.
struct Message {
    Header header{};
    std::string body;
};

// Header then body, as bytes on the wire. body_len is set from `body`.
inline std::string encode(Header h, std::string_view body)
{
    unsigned char raw[COHO_SOCK_HDR_LEN];
    h.magic = COHO_SOCK_MAGIC;
    h.body_len = static_cast<uint32_t>(body.size());
    coho_sock_hdr_encode(&h, raw);
    std::string s(reinterpret_cast<const char *>(raw), sizeof(raw));
    s.append(body.data(), body.size());
    return s;
}

// A request frame: request id `seq`, `type` (the response bit cleared), `arg`.
inline std::string encode_request(uint64_t seq, std::string_view body, uint32_t type = 0,
                                  uint32_t arg = 0)
{
    return encode(Header{COHO_SOCK_MAGIC, type & ~COHO_SOCK_RESPONSE, seq, 0, arg}, body);
}

// The response to request `req` (its seq and type with the response bit), status in arg.
inline std::string encode_response(const Header &req, std::string_view body, uint32_t status = 0)
{
    return encode(Header{COHO_SOCK_MAGIC, req.type | COHO_SOCK_RESPONSE, req.seq, 0, status}, body);
}

// Decodes a whole frame. Empty optional: too short, wrong magic, or body_len not matching
// the bytes that follow the header.
inline std::optional<Message> decode(std::string_view frame)
{
    if (frame.size() < COHO_SOCK_HDR_LEN)
        return std::nullopt;
    Message m;
    if (coho_sock_hdr_decode(reinterpret_cast<const unsigned char *>(frame.data()), &m.header) !=
            0 ||
        frame.size() - COHO_SOCK_HDR_LEN != m.header.body_len)
        return std::nullopt;
    m.body.assign(frame.substr(COHO_SOCK_HDR_LEN));
    return m;
}

inline std::optional<Message> decode(const Buffer &b)
{
    return decode(b.str());
}

inline bool is_response(const Header &h) noexcept
{
    return (h.type & COHO_SOCK_RESPONSE) != 0;
}

// The sock framer with its body limit (the C framer's ctx points into this object, so it
// neither moves nor copies). Pass framer() in Options::framers.
class Framer {
public:
    explicit Framer(size_t max_body_len) noexcept : max_body_(max_body_len)
    {
        coho_sock_framer_init(&f_, &max_body_);
    }
    Framer(const Framer &) = delete;
    Framer &operator=(const Framer &) = delete;

    const coho_tdp_framer_t *framer() const noexcept { return &f_; }
    size_t max_body_len() const noexcept { return max_body_; }

private:
    size_t max_body_;
    coho_tdp_framer_t f_;
};

} // namespace sock

// ---- pools --------------------------------------------------------------------------------

using Stats = coho_tdp_stats_t;

// What a pool is built with; the defaults are coho_tdp_opts_init's. With no framers, the pool
// uses the sock framer with a body limit of max_frame_len - COHO_SOCK_HDR_LEN.
struct Options {
    std::vector<const coho_tdp_framer_t *> framers; // tried in order; at most 4; must outlive
                                                    // the pool
    size_t max_frame_len = 16u << 20;
    unsigned conn_count = 4;                         // connect pools
    std::chrono::milliseconds connect_timeout{3000}; // connect pools; negative: none
    std::chrono::milliseconds reconnect_min{10};     // connect pools
    std::chrono::milliseconds reconnect_max{2000};   // connect pools
    unsigned max_conns = 10000;                      // listen pools
    int backlog = 1024;                              // listen pools
    // Backpressure per connection (coho_tdp_opts_t): requests in on_req (held Request objects)
    // and their bytes at which a connection stops reading until some are released; 0: no limit.
    unsigned max_conn_reqs = 1024;
    size_t max_conn_req_len = 4u << 20;
    // Called in the pool's coroutines for each connection that joins the pool, and for each
    // that leaves it with the errno value that ended it. Exceptions are logged and dropped.
    std::function<void(uint64_t conn_id)> on_conn_new;
    std::function<void(uint64_t conn_id, int err)> on_conn_delete;
};

// A socket_ext pool (RAII over coho_tdp_pool_t): a connect pool keeping conn_count connections
// to one address, or a listen pool serving the clients it accepts. Movable, not copyable. The
// destructor closes the pool (coho_tdp_close); close() does it explicitly.
class Pool {
    struct State;

public:
    Pool() noexcept = default;
    Pool(const Pool &) = delete;
    Pool &operator=(const Pool &) = delete;
    Pool(Pool &&o) noexcept : p_(std::exchange(o.p_, nullptr)), st_(std::move(o.st_)) {}
    Pool &operator=(Pool &&o) noexcept
    {
        if (this != &o) {
            close();
            p_ = std::exchange(o.p_, nullptr);
            st_ = std::move(o.st_);
        }
        return *this;
    }
    ~Pool() { close(); }

    // A connect pool to `addr` (coho_tdp_connect). Inside a coroutine. Throws system_error:
    // EINVAL, EPERM (outside a coroutine), ENOMEM.
    static Pool connect(const sockaddr *addr, socklen_t addrlen, const Options &o = Options())
    {
        Pool pool;
        pool.st_ = std::make_unique<State>(o);
        coho_tdp_opts_t c = pool.st_->c_opts(o);
        pool.p_ = coho_tdp_connect(addr, addrlen, &c);
        if (pool.p_ == nullptr)
            coho::detail::throw_errno("coho_tdp_connect");
        return pool;
    }

    // connect() to a numeric IPv4/IPv6 address and port.
    static Pool connect(const char *ip, uint16_t port, const Options &o = Options())
    {
        detail::Address a(ip, port);
        return connect(a.get(), a.len, o);
    }

    // A listen pool on `addr` (coho_tdp_listen; port 0 picks one, see local_port()). Every
    // request frame is handed to `on_req` as a Request, in the connection's receive coroutine:
    // the callable should not park for long (spawn a coroutine to answer). Any callable taking
    // a Request, also move-only ones; an exception escaping it is logged and dropped (the
    // Request is freed). Inside a coroutine. Throws system_error: EINVAL, EPERM, EADDRINUSE...
    template <class F>
    static Pool listen(const sockaddr *addr, socklen_t addrlen, F &&on_req,
                       const Options &o = Options())
    {
        static_assert(std::is_invocable_v<std::decay_t<F> &, Request>,
                      "on_req must be callable with a coho::tdp::Request");
        Pool pool;
        pool.st_ = std::make_unique<State>(o);
        pool.st_->on_req_ = std::make_unique<ReqFn<std::decay_t<F>>>(std::forward<F>(on_req));
        coho_tdp_opts_t c = pool.st_->c_opts(o);
        pool.p_ = coho_tdp_listen(addr, addrlen, &c);
        if (pool.p_ == nullptr)
            coho::detail::throw_errno("coho_tdp_listen");
        return pool;
    }

    template <class F>
    static Pool listen(const char *ip, uint16_t port, F &&on_req, const Options &o = Options())
    {
        detail::Address a(ip, port);
        return listen(a.get(), a.len, std::forward<F>(on_req), o);
    }

    // UDP pools, one datagram per frame (coho_tdp_udp_connect / coho_tdp_udp_listen): the same
    // calls as the stream pools; a lost datagram shows as a wait_resp timeout, and frames are
    // at most 65536 bytes. Reconnect, connect-timeout, max_conns and backlog do not apply.
    static Pool udp_connect(const sockaddr *addr, socklen_t addrlen, const Options &o = Options())
    {
        Pool pool;
        pool.st_ = std::make_unique<State>(o);
        coho_tdp_opts_t c = pool.st_->c_opts(o);
        pool.p_ = coho_tdp_udp_connect(addr, addrlen, &c);
        if (pool.p_ == nullptr)
            coho::detail::throw_errno("coho_tdp_udp_connect");
        return pool;
    }

    static Pool udp_connect(const char *ip, uint16_t port, const Options &o = Options())
    {
        detail::Address a(ip, port);
        return udp_connect(a.get(), a.len, o);
    }

    template <class F>
    static Pool udp_listen(const sockaddr *addr, socklen_t addrlen, F &&on_req,
                           const Options &o = Options())
    {
        static_assert(std::is_invocable_v<std::decay_t<F> &, Request>,
                      "on_req must be callable with a coho::tdp::Request");
        Pool pool;
        pool.st_ = std::make_unique<State>(o);
        pool.st_->on_req_ = std::make_unique<ReqFn<std::decay_t<F>>>(std::forward<F>(on_req));
        coho_tdp_opts_t c = pool.st_->c_opts(o);
        pool.p_ = coho_tdp_udp_listen(addr, addrlen, &c);
        if (pool.p_ == nullptr)
            coho::detail::throw_errno("coho_tdp_udp_listen");
        return pool;
    }

    template <class F>
    static Pool udp_listen(const char *ip, uint16_t port, F &&on_req, const Options &o = Options())
    {
        detail::Address a(ip, port);
        return udp_listen(a.get(), a.len, std::forward<F>(on_req), o);
    }

    // Closes the pool (coho_tdp_close): waiters fail with ECANCELED, requests still held keep
    // working until freed (their replies fail with ENOTCONN). Idempotent; noexcept. Not from
    // the pool's own on_req/on_conn_new/on_conn_delete (they live in the state this frees, and
    // the calling coroutine still runs them): spawn a coroutine that closes it instead.
    void close() noexcept
    {
        if (p_ != nullptr)
            coho_tdp_close(std::exchange(p_, nullptr));
        st_.reset();
    }

    explicit operator bool() const noexcept { return p_ != nullptr; }

    // Serves an already connected stream fd as one more connection of this (stream) listen
    // pool (coho_tdp_attach); takes ownership of `fd`. Returns the connection id. Throws
    // system_error: EINVAL, ESHUTDOWN, EPERM, ENOMEM.
    uint64_t attach(int fd)
    {
        const uint64_t id = coho_tdp_attach(p_, fd);
        if (id == 0)
            coho::detail::throw_errno("coho_tdp_attach");
        return id;
    }

    // The bound port of a listen pool (host order), or 0.
    uint16_t local_port() const noexcept { return coho_tdp_local_port(p_); }

    // A healthy connection, round-robin, parking up to `timeout` while none is up. Throws
    // system_error: ETIMEDOUT, ECANCELED, ESHUTDOWN.
    template <class Rep = int64_t, class Period = std::milli>
    uint64_t pick(const std::chrono::duration<Rep, Period> &timeout = forever)
    {
        const uint64_t id = coho_tdp_pick(p_, detail::timeout_ms(timeout));
        if (id == 0)
            coho::detail::throw_errno("coho_tdp_pick");
        return id;
    }

    // A healthy connection if one is up now; never parks.
    std::optional<uint64_t> try_pick() noexcept
    {
        const uint64_t id = coho_tdp_pick(p_, 0);
        if (id == 0)
            return std::nullopt;
        return id;
    }

    // A fresh request id (coho_tdp_req_id). Throws system_error: ENOMEM, ESHUTDOWN.
    uint64_t req_id()
    {
        const uint64_t id = coho_tdp_req_id(p_);
        if (id == 0)
            coho::detail::throw_errno("coho_tdp_req_id");
        return id;
    }

    // Sends one frame on `conn_id`; `req_id` != 0 ties the waiter of that id to the
    // connection. Throws system_error: ENOTCONN, ENOENT, EINVAL, or the send error.
    void send(uint64_t conn_id, uint64_t req_id, std::string_view frame)
    {
        if (coho_tdp_send(p_, conn_id, req_id, frame.data(), frame.size()) != 0)
            coho::detail::throw_errno("coho_tdp_send");
    }

    // Parks until the response to `req_id` arrives and returns its frame; the id is released
    // either way. Throws system_error: ETIMEDOUT, ECONNRESET, ECANCELED, ENOENT.
    template <class Rep = int64_t, class Period = std::milli>
    Buffer wait_resp(uint64_t req_id, const std::chrono::duration<Rep, Period> &timeout = forever)
    {
        Buffer b;
        if (coho_tdp_wait_resp(p_, req_id, detail::timeout_ms(timeout), b.native_handle()) != 0)
            coho::detail::throw_errno("coho_tdp_wait_resp");
        return b;
    }

    // Releases `req_id` without waiting. false: unknown id, or a coroutine waits for it.
    bool release(uint64_t req_id) noexcept { return coho_tdp_req_release(p_, req_id) == 0; }

    // Sends the request and waits for its response with one park (coho_tdp_call): the same
    // as send() then wait_resp(), and the id is released either way. Throws system_error:
    // ETIMEDOUT, ENOTCONN, ECONNRESET or the write's error, ECANCELED, ENOENT, EBUSY, EDEADLK,
    // EINVAL, ENOMEM.
    template <class Rep = int64_t, class Period = std::milli>
    Buffer request(uint64_t conn_id, uint64_t req_id, std::string_view frame,
                   const std::chrono::duration<Rep, Period> &timeout = forever)
    {
        Buffer b;
        if (coho_tdp_call(p_, conn_id, req_id, frame.data(), frame.size(),
                          detail::timeout_ms(timeout), b.native_handle()) != 0)
            coho::detail::throw_errno("coho_tdp_call");
        return b;
    }

    // The whole exchange: picks a connection (waiting up to `timeout` for one), allocates a
    // request id, builds the frame with `make_frame(id)` (anything convertible to
    // std::string_view, for example a std::string), sends it and waits for the response. The
    // timeout applies to the pick and to the wait each. Throws as pick, send and wait_resp, and
    // what make_frame throws (the id is then released).
    template <class F, class Rep = int64_t, class Period = std::milli>
    Buffer request(F &&make_frame, const std::chrono::duration<Rep, Period> &timeout = forever)
    {
        const uint64_t conn = pick(timeout);
        const uint64_t id = req_id();
        try {
            const auto frame = std::invoke(std::forward<F>(make_frame), id);
            return request(conn, id, std::string_view(frame), timeout);
        } catch (...) {
            coho_tdp_req_release(p_, id); // harmless when already released
            throw;
        }
    }

    // Calls f(conn_id, fd) for every live connection.
    template <class F>
    void for_each_conn(F &&f)
    {
        auto thunk = [](uint64_t id, int fd, void *arg) {
            std::invoke(*static_cast<std::remove_reference_t<F> *>(arg), id, fd);
        };
        if (coho_tdp_for_each_conn(p_, thunk, &f) != 0)
            coho::detail::throw_errno("coho_tdp_for_each_conn");
    }

    // The pool's counters (coho_tdp_get_stats).
    Stats stats() const
    {
        Stats s{};
        if (coho_tdp_get_stats(p_, &s) != 0)
            coho::detail::throw_errno("coho_tdp_get_stats");
        return s;
    }

    coho_tdp_pool_t *native_handle() const noexcept { return p_; }

private:
    struct ReqFnBase {
        virtual ~ReqFnBase() = default;
        virtual void call(Request rq) = 0;
    };
    template <class F>
    struct ReqFn final : ReqFnBase {
        template <class G>
        explicit ReqFn(G &&g) : f_(std::forward<G>(g))
        {}
        void call(Request rq) override { std::invoke(f_, std::move(rq)); }
        F f_;
    };
    // What the C callbacks reach through `user`; lives at a fixed address until close().
    struct State {
        explicit State(const Options &o)
            : sock_(o.max_frame_len > COHO_SOCK_HDR_LEN ? o.max_frame_len - COHO_SOCK_HDR_LEN : 0),
              on_new_(o.on_conn_new), on_del_(o.on_conn_delete)
        {}

        coho_tdp_opts_t c_opts(const Options &o)
        {
            coho_tdp_opts_t c;
            coho_tdp_opts_init(&c);
            if (o.framers.size() > COHO_TDP_MAX_FRAMERS) {
                errno = EINVAL;
                coho::detail::throw_errno("coho_tdp_opts");
            }
            if (o.framers.empty()) {
                c.framers[0] = sock_.framer();
                c.framer_count = 1;
            } else {
                for (size_t i = 0; i < o.framers.size(); i++)
                    c.framers[i] = o.framers[i];
                c.framer_count = static_cast<unsigned>(o.framers.size());
            }
            c.max_frame_len = o.max_frame_len;
            c.conn_count = o.conn_count;
            c.connect_timeout_ms = detail::timeout_ms(o.connect_timeout);
            c.reconnect_min_ms = coho::detail::to_ms(o.reconnect_min);
            c.reconnect_max_ms = coho::detail::to_ms(o.reconnect_max);
            c.max_conns = o.max_conns;
            c.backlog = o.backlog;
            c.max_conn_reqs = o.max_conn_reqs;
            c.max_conn_req_len = o.max_conn_req_len;
            c.on_req = on_req_ != nullptr ? on_req_thunk : nullptr;
            c.on_conn_new = on_new_ ? on_new_thunk : nullptr;
            c.on_conn_delete = on_del_ ? on_del_thunk : nullptr;
            c.user = this;
            return c;
        }

        // The boundary no exception crosses into C.
        static void on_req_thunk(coho_tdp_req_t *rq, void *user) noexcept
        {
            auto *st = static_cast<State *>(user);
            Request r(rq);
            try {
                st->on_req_->call(std::move(r));
            } catch (const std::exception &e) {
                coho_log_error("tdp on_req: exception escaped: %s", e.what());
            } catch (...) {
                coho_log_error("tdp on_req: exception escaped (not a std::exception)");
            }
        }
        static void on_new_thunk(coho_tdp_pool_t *, uint64_t id, void *user) noexcept
        {
            try {
                static_cast<State *>(user)->on_new_(id);
            } catch (...) {
                coho_log_error("tdp on_conn_new: exception escaped");
            }
        }
        static void on_del_thunk(coho_tdp_pool_t *, uint64_t id, int err, void *user) noexcept
        {
            try {
                static_cast<State *>(user)->on_del_(id, err);
            } catch (...) {
                coho_log_error("tdp on_conn_delete: exception escaped");
            }
        }

        sock::Framer sock_;
        std::unique_ptr<ReqFnBase> on_req_;
        std::function<void(uint64_t)> on_new_;
        std::function<void(uint64_t, int)> on_del_;
    };

    coho_tdp_pool_t *p_ = nullptr;
    std::unique_ptr<State> st_;
};

} // namespace tdp
} // namespace coho
