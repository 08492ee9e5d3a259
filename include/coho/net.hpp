// SPDX-License-Identifier: MIT
// The C++ face of libcoho_net (include/coho/net.h): servers whose handlers are lambdas, a
// connection view, broadcast groups, dial, metrics and the admin server. Header-only over the C
// API; link coho::net.
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
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
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

// ---- metrics and the admin server (coho/metrics.h, coho/admin.h) ----------------------------

// Label names and values of one series: {{"route", "login"}, {"server", "game"}}.
using Labels = std::vector<std::pair<std::string, std::string>>;

namespace detail {
struct CLabels {
    explicit CLabels(const Labels &l)
    {
        for (const auto &kv : l)
            v.push_back(coho_label_t{kv.first.c_str(), kv.second.c_str()});
    }
    const coho_label_t *data() const noexcept { return v.empty() ? nullptr : v.data(); }
    unsigned size() const noexcept { return static_cast<unsigned>(v.size()); }
    std::vector<coho_label_t> v;
};
} // namespace detail

// A counter series (a handle owned by its Metrics; copy it freely). Any thread, no lock.
class Counter {
public:
    Counter() noexcept = default;
    explicit Counter(coho_counter_t *c) noexcept : c_(c) {}
    void add(uint64_t n = 1) noexcept { coho_counter_add(c_, n); }
    Counter &operator++() noexcept
    {
        add(1);
        return *this;
    }
    uint64_t value() const noexcept { return coho_counter_get(c_); }
    coho_counter_t *native_handle() const noexcept { return c_; }

private:
    coho_counter_t *c_ = nullptr;
};

// A gauge series (a handle owned by its Metrics). Any thread.
class Gauge {
public:
    Gauge() noexcept = default;
    explicit Gauge(coho_gauge_t *g) noexcept : g_(g) {}
    void set(double v) noexcept { coho_gauge_set(g_, v); }
    void add(double d) noexcept { coho_gauge_add(g_, d); }
    void inc() noexcept { add(1); }
    void dec() noexcept { add(-1); }
    double value() const noexcept { return coho_gauge_get(g_); }
    coho_gauge_t *native_handle() const noexcept { return g_; }

private:
    coho_gauge_t *g_ = nullptr;
};

// A histogram series with fixed buckets (a handle owned by its Metrics). Any thread, no lock.
class Histogram {
public:
    Histogram() noexcept = default;
    explicit Histogram(coho_histogram_t *h) noexcept : h_(h) {}
    void observe(double v) noexcept { coho_histogram_observe(h_, v); }
    // Observes a duration in seconds (the Prometheus base unit).
    template <class Rep, class Period>
    void observe(const std::chrono::duration<Rep, Period> &d) noexcept
    {
        observe(std::chrono::duration<double>(d).count());
    }
    uint64_t count() const noexcept
    {
        uint64_t n = 0;
        coho_histogram_get(h_, &n, nullptr);
        return n;
    }
    double sum() const noexcept
    {
        double s = 0;
        coho_histogram_get(h_, nullptr, &s);
        return s;
    }
    coho_histogram_t *native_handle() const noexcept { return h_; }

private:
    coho_histogram_t *h_ = nullptr;
};

// A metrics registry (RAII over coho_metrics_t). Not copyable or movable: handles, servers and
// admin servers point at it. Registration throws system_error (EINVAL: a bad name or label, or
// a family of another shape; ENOMEM).
class Metrics {
public:
    Metrics()
    {
        m_ = coho_metrics_create();
        if (m_ == nullptr)
            coho::detail::throw_errno("coho_metrics_create");
    }
    Metrics(const Metrics &) = delete;
    Metrics &operator=(const Metrics &) = delete;
    ~Metrics() { coho_metrics_destroy(m_); }

    Counter counter(const std::string &name, const std::string &help, const Labels &labels = {})
    {
        detail::CLabels l(labels);
        coho_counter_t *c =
            coho_metrics_counter(m_, name.c_str(), help.c_str(), l.data(), l.size());
        if (c == nullptr)
            coho::detail::throw_errno("coho_metrics_counter");
        return Counter(c);
    }

    Gauge gauge(const std::string &name, const std::string &help, const Labels &labels = {})
    {
        detail::CLabels l(labels);
        coho_gauge_t *g = coho_metrics_gauge(m_, name.c_str(), help.c_str(), l.data(), l.size());
        if (g == nullptr)
            coho::detail::throw_errno("coho_metrics_gauge");
        return Gauge(g);
    }

    Histogram histogram(const std::string &name, const std::string &help,
                        const std::vector<double> &bounds, const Labels &labels = {})
    {
        detail::CLabels l(labels);
        coho_histogram_t *h =
            coho_metrics_histogram(m_, name.c_str(), help.c_str(), l.data(), l.size(),
                                   bounds.data(), static_cast<unsigned>(bounds.size()));
        if (h == nullptr)
            coho::detail::throw_errno("coho_metrics_histogram");
        return Histogram(h);
    }

    // Registers `s`'s counters with server="<name>" (coho_server_register_metrics); they leave
    // when the server stops.
    void add_server(Server &s, const std::string &name)
    {
        if (coho_server_register_metrics(s.native_handle(), m_, name.c_str()) != 0)
            coho::detail::throw_errno("coho_server_register_metrics");
    }

    // The Prometheus text format (coho_metrics_render_prometheus).
    std::string prometheus() const { return take(coho_metrics_render_prometheus(m_, nullptr)); }
    // The JSON rendering (coho_metrics_render_json).
    std::string json() const { return take(coho_metrics_render_json(m_, nullptr)); }

    coho_metrics_t *native_handle() const noexcept { return m_; }

private:
    static std::string take(char *s)
    {
        if (s == nullptr)
            coho::detail::throw_errno("coho_metrics_render");
        std::string out(s);
        std::free(s);
        return out;
    }

    coho_metrics_t *m_;
};

// What a /stats section writes: one JSON value, built in pieces.
class Json {
public:
    Json &raw(std::string_view json)
    {
        out_.append(json);
        return *this;
    }
    // `s` quoted, with '"', '\\' and control characters escaped.
    Json &string(std::string_view s)
    {
        static const char hex[] = "0123456789abcdef";
        out_ += '"';
        for (char ch : s) {
            unsigned char c = static_cast<unsigned char>(ch);
            if (c == '"' || c == '\\') {
                out_ += '\\';
                out_ += ch;
            } else if (c < 0x20) {
                out_ += "\\u00";
                out_ += hex[c >> 4];
                out_ += hex[c & 15];
            } else {
                out_ += ch;
            }
        }
        out_ += '"';
        return *this;
    }
    // An integer as is; a floating-point value as %.17g (null when not finite).
    template <class T>
    Json &number(T v)
    {
        static_assert(std::is_arithmetic_v<T> && !std::is_same_v<T, bool>, "a number");
        if constexpr (std::is_integral_v<T>) {
            out_ += std::to_string(v);
        } else if (!std::isfinite(v)) {
            out_ += "null";
        } else {
            char b[32];
            std::snprintf(b, sizeof(b), "%.17g", static_cast<double>(v));
            out_ += b;
        }
        return *this;
    }
    const std::string &str() const noexcept { return out_; }

private:
    std::string out_;
};

// The admin HTTP server (RAII over coho_admin_t): /metrics, /stats, /coroutines. Not copyable
// or movable (sections point at it).
class Admin {
public:
    // coho_admin_opts_t with the defaults filled in.
    struct Options : coho_admin_opts_t {
        Options() noexcept { coho_admin_opts_init(this); }
    };
    using Section = std::function<void(Json &)>;

    // Starts serving `metrics` (may be null; it must outlive the Admin) on `host_port`
    // (coho_admin_start). Throws system_error on failure.
    explicit Admin(const std::string &host_port, Metrics *metrics = nullptr,
                   const Options &o = Options())
    {
        a_ = coho_admin_start(host_port.c_str(),
                              metrics != nullptr ? metrics->native_handle() : nullptr, &o);
        if (a_ == nullptr)
            coho::detail::throw_errno("coho_admin_start");
    }
    Admin(const Admin &) = delete;
    Admin &operator=(const Admin &) = delete;
    ~Admin() { stop(); }

    // coho_admin_stop; a second call does nothing. Parks in a coroutine, blocks a plain thread.
    void stop() noexcept
    {
        if (a_ != nullptr)
            coho_admin_stop(a_);
        a_ = nullptr;
        sections_.clear();
    }

    int port() const noexcept { return a_ ? coho_admin_port(a_) : -1; }

    // Shows `s` in /coroutines (coho_admin_add_sched); remove it before it is destroyed.
    void add_sched(coho_sched_t *s, const std::string &name)
    {
        if (coho_admin_add_sched(a_, s, name.c_str()) != 0)
            coho::detail::throw_errno("coho_admin_add_sched");
    }
    void add_sched(Scheduler &s, const std::string &name) { add_sched(s.native_handle(), name); }
    bool remove_sched(coho_sched_t *s) noexcept { return coho_admin_remove_sched(a_, s) == 0; }
    bool remove_sched(Scheduler &s) noexcept { return remove_sched(s.native_handle()); }

    // Adds `fn`'s value to /stats under `name` (coho_admin_add_section). fn runs on the admin
    // server's thread for each request and must not park; an exception it throws is logged and
    // the section shows null.
    void add_section(const std::string &name, Section fn)
    {
        auto holder = std::make_unique<Section>(std::move(fn));
        if (coho_admin_add_section(a_, name.c_str(), &Admin::trampoline, holder.get()) != 0)
            coho::detail::throw_errno("coho_admin_add_section");
        sections_.emplace_back(name, std::move(holder));
    }
    bool remove_section(const std::string &name) noexcept
    {
        if (coho_admin_remove_section(a_, name.c_str()) != 0)
            return false;
        for (auto it = sections_.begin(); it != sections_.end(); ++it) {
            if (it->first == name) {
                sections_.erase(it);
                break;
            }
        }
        return true;
    }

    coho_admin_t *native_handle() const noexcept { return a_; }

private:
    static void trampoline(coho_admin_json_t *out, void *arg) noexcept
    {
        try {
            Json j;
            (*static_cast<Section *>(arg))(j);
            coho_admin_json_raw(out, j.str().c_str());
        } catch (const std::exception &e) {
            coho_log_error("admin /stats section: exception: %s", e.what());
        } catch (...) {
            coho_log_error("admin /stats section: exception");
        }
    }

    coho_admin_t *a_ = nullptr;
    std::vector<std::pair<std::string, std::unique_ptr<Section>>> sections_;
};

} // namespace net
} // namespace coho
