// SPDX-License-Identifier: MIT
/* The differential conformance suite of the libc hooks (issue 5, DESIGN.md "Rules the
 * implementation keeps"). Every scenario is a short script of libc calls against a loopback
 * peer; it runs once in a plain thread (no coroutine, so the calls are libc's) and once in a
 * coroutine on a coho scheduler next to a ticker coroutine. Every call's return value, errno
 * (when it failed) and the bytes moved are recorded; the two traces must be identical, except
 * in the scenarios marked "deliberate", where DESIGN.md lists the difference and the coroutine
 * run asserts coho's behaviour. A call that blocks the thread rather than parking is caught by
 * the ticker: it must have ticked while the call waited.
 *
 * This file is built three times (test/integration/CMakeLists.txt): linked with libcoho.so,
 * with the static library (whole archive), and with neither, run under
 * LD_PRELOAD=libcoho_preload.so. The preload build looks the scheduler functions up with
 * dlsym(RTLD_DEFAULT, ...) in the preloaded library: linking libcoho.so as well would load a
 * second copy of the runtime whose scheduler the preloaded hooks would never see.
 *
 * The file is compiled with -O2 -D_FORTIFY_SOURCE=2, so reads with a runtime length into a
 * buffer of known size become __read_chk, __recv_chk, ... as in distribution builds. */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <coho.h>

#include "test/integration/coho_api.h"
#include "test/support/loopback.h"

namespace {

using coho_test::api;

// ---- timing -----------------------------------------------------------------------------------

constexpr int kTimeoutMs = 100; // SO_RCVTIMEO, SO_SNDTIMEO, poll timeouts
constexpr int kLateMs = 60;     // when a helper thread acts on the peer
constexpr int kSlackMs = 400;   // upper slack on every duration (2 shared cores, sanitizers)
constexpr int kWatchdogS = 20;  // a run still going after this is stuck
constexpr int kFastMs = 250;    // "at once": the alternative is waiting for ever

int64_t now_ms()
{
    return coho_lb_now_ms();
}

// `v`, hidden from the optimizer: a runtime length, so fortified calls take their _chk form and
// deliberate bad arguments draw no compile-time diagnostics.
template <class T>
T opaque(T v)
{
    volatile T x = v;
    return x;
}
size_t runtime_len(size_t n)
{
    return opaque(n);
}

timeval tv_ms(int ms)
{
    return timeval{ms / 1000, (ms % 1000) * 1000};
}

std::string errname(int e)
{
    const char *n = strerrorname_np(e);
    return n != nullptr ? n : std::to_string(e);
}

// ---- the context a scenario runs in -------------------------------------------------------------

enum class Mode { thread, coroutine };

class Ctx {
public:
    explicit Ctx(Mode m) : mode_(m) {}

    bool in_coho() const { return mode_ == Mode::coroutine; }
    const char *mode_name() const { return in_coho() ? "coroutine" : "plain thread"; }

    // Appends a free-form observation to the trace.
    void note(const std::string &what) { trace.push_back(what); }

    // Records a call's result: its return value, and errno when it failed.
    long long rec(const char *label, long long rv, int err, bool is_fd)
    {
        std::ostringstream os;
        os << label << " -> ";
        if (rv == -1)
            os << "-1 " << errname(err);
        else if (is_fd)
            os << (rv >= 0 ? "fd" : std::to_string(rv));
        else
            os << rv;
        trace.push_back(os.str());
        last_errno = err;
        return rv;
    }

    // Records `n` bytes (length, hash and a printable prefix).
    void bytes(const char *label, const void *p, long long n)
    {
        std::ostringstream os;
        os << label << ": ";
        if (n < 0) {
            os << "none";
        } else {
            std::string s(static_cast<const char *>(p), static_cast<size_t>(n > 24 ? 24 : n));
            for (char &ch : s)
                if (ch < 32 || ch > 126)
                    ch = '.';
            os << n << " bytes \"" << s << "\" #" << std::hex
               << coho_lb_hash(p, static_cast<size_t>(n));
        }
        trace.push_back(os.str());
    }

    // Runs `fn` in a helper thread (plain libc, never a coroutine) after `ms` milliseconds.
    void later(int ms, std::function<void()> fn)
    {
        helpers_.emplace_back([ms, fn] {
            coho_lb_sleep_ms(ms);
            fn();
        });
    }
    void join_helpers()
    {
        for (auto &t : helpers_)
            t.join();
        helpers_.clear();
    }

    // Runs `fn` concurrently in the scenario's own mode: another thread, or another coroutine
    // on the same scheduler. Returns the coroutine's id (0 for a thread).
    uint64_t go(std::function<void()> fn)
    {
        actors_live_++;
        if (!in_coho()) {
            actor_threads_.emplace_back([this, fn] {
                fn();
                actors_live_--;
            });
            return 0;
        }
        auto *job = new Job{this, std::move(fn)};
        uint64_t id = api().spawn(sched, &Ctx::run_job, job);
        if (id == 0) {
            ADD_FAILURE() << "coho_spawn: " << errname(errno);
            actors_live_--;
            delete job;
        }
        return id;
    }
    void join_actors()
    {
        if (in_coho()) {
            while (actors_live_ > 0)
                api().sleep_ms(1);
            return;
        }
        for (auto &t : actor_threads_)
            t.join();
        actor_threads_.clear();
    }

    // Sleeps in the scenario's own mode without a hooked call: coho_sleep_ms in a coroutine.
    void nap(int ms)
    {
        if (in_coho())
            api().sleep_ms(static_cast<uint64_t>(ms));
        else
            coho_lb_sleep_ms(ms);
    }

    // The ticker's count (always 0 in a plain thread).
    uint64_t tick() const { return ticks.load(); }

    // In a coroutine: the ticker must have run while the call since `t0` waited, or the call
    // blocked the thread instead of parking.
    void expect_parked(uint64_t t0, const char *what)
    {
        if (in_coho()) {
            EXPECT_GE(ticks.load() - t0, 2u)
                << what << ": the ticker coroutine did not run while the call waited, so it "
                << "blocked the thread instead of parking the coroutine";
        }
    }

    // The call since `t0_ms` took between lo and hi milliseconds.
    void expect_took(int64_t t0_ms, int64_t lo, int64_t hi, const char *what)
    {
        int64_t d = now_ms() - t0_ms;
        EXPECT_GE(d, lo) << what << " returned too early in the " << mode_name();
        EXPECT_LE(d, hi) << what << " returned too late in the " << mode_name();
    }

    std::vector<std::string> trace;
    int last_errno = 0;
    std::atomic<uint64_t> ticks{0};
    std::atomic<bool> done{false};
    coho_sched_t *sched = nullptr;

private:
    struct Job {
        Ctx *c;
        std::function<void()> fn;
    };
    static void run_job(void *p)
    {
        auto *job = static_cast<Job *>(p);
        job->fn();
        job->c->actors_live_--;
        delete job;
    }

    Mode mode_;
    std::vector<std::thread> helpers_;
    std::vector<std::thread> actor_threads_;
    std::atomic<int> actors_live_{0};
};

// Calls f() with errno cleared and records its result and errno; errno is left as f set it.
template <class F>
long long call(Ctx &c, const char *label, bool is_fd, F &&f)
{
    errno = 0;
    long long rv = static_cast<long long>(f());
    int e = errno;
    c.rec(label, rv, e, is_fd);
    errno = e;
    return rv;
}
#define CALL(c, label, expr)   call((c), (label), false, [&] { return (expr); })
#define CALLFD(c, label, expr) call((c), (label), true, [&] { return (expr); })

// Both ends of a pair, closed at the end of the scenario (in the scenario's mode), once the
// scenario's helper threads, which may still hold them, are joined.
struct Fds {
    int a = -1, b = -1;
    Ctx *c = nullptr; // set by tcp_pair / unix_pair
    Fds() = default;
    Fds(const Fds &) = delete;
    Fds &operator=(const Fds &) = delete;
    ~Fds()
    {
        if (c != nullptr)
            c->join_helpers();
        if (a >= 0)
            close(a);
        if (b >= 0)
            close(b);
    }
};

void tcp_pair(Ctx &c, Fds &p)
{
    int fds[2];
    int rc = coho_lb_tcp_pair(fds);
    EXPECT_EQ(rc, 0) << "loopback TCP pair: " << errname(-rc);
    if (rc == 0) {
        p.a = fds[0];
        p.b = fds[1];
    }
    p.c = &c;
}

void unix_pair(Ctx &c, Fds &p, int sndbuf = 0)
{
    int fds[2];
    int rc = coho_lb_unix_pair(fds, sndbuf);
    EXPECT_EQ(rc, 0) << "unix pair: " << errname(-rc);
    if (rc == 0) {
        p.a = fds[0];
        p.b = fds[1];
    }
    p.c = &c;
}

// A write from a helper thread (or setup code) that must succeed.
void put(int fd, const char *s)
{
    size_t n = strlen(s);
    EXPECT_EQ(coho_lb_write_full(fd, s, n), static_cast<ssize_t>(n)) << "peer write";
}

void set_timeo(Ctx &c, int fd, int opt, int ms)
{
    timeval tv = tv_ms(ms);
    CALL(c, opt == SO_RCVTIMEO ? "setsockopt(SO_RCVTIMEO)" : "setsockopt(SO_SNDTIMEO)",
         setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof(tv)));
}

void note_flags(Ctx &c, const char *label, int fd)
{
    long long fl = CALL(c, label, fcntl(fd, F_GETFL));
    if (fl >= 0)
        c.note(std::string(label) + " O_NONBLOCK=" + ((fl & O_NONBLOCK) ? "1" : "0"));
}

// ================================ the scenarios ==================================================

// -- timeouts
// --------------------------------------------------------------------------------------

void recv_parks_until_the_peer_sends(Ctx &c)
{
    Fds p;
    tcp_pair(c, p);
    int b = p.b;
    int64_t m0 = now_ms(); // before the helper starts its delay, so the lower bound holds
    c.later(kLateMs, [b] { put(b, "hello"); });
    char buf[64];
    uint64_t t0 = c.tick();
    long long n = CALL(c, "recv", recv(p.a, buf, sizeof(buf), 0));
    c.bytes("data", buf, n);
    c.expect_parked(t0, "recv");
    c.expect_took(m0, kLateMs - 2, kLateMs + kSlackMs, "recv");
}

void recv_times_out_with_eagain_after_so_rcvtimeo(Ctx &c)
{
    Fds p;
    tcp_pair(c, p);
    set_timeo(c, p.a, SO_RCVTIMEO, kTimeoutMs);
    char buf[16];
    uint64_t t0 = c.tick();
    int64_t m0 = now_ms();
    CALL(c, "recv", recv(p.a, buf, sizeof(buf), 0));
    c.expect_parked(t0, "recv");
    c.expect_took(m0, kTimeoutMs - 2, kTimeoutMs + kSlackMs, "recv with SO_RCVTIMEO");
    // The timeout is per call: a second one waits again.
    m0 = now_ms();
    CALL(c, "recv again", recv(p.a, buf, sizeof(buf), 0));
    c.expect_took(m0, kTimeoutMs - 2, kTimeoutMs + kSlackMs, "second recv with SO_RCVTIMEO");
}

void read_and_readv_honour_so_rcvtimeo(Ctx &c)
{
    Fds p;
    tcp_pair(c, p);
    set_timeo(c, p.a, SO_RCVTIMEO, kTimeoutMs);
    char buf[16];
    int64_t m0 = now_ms();
    CALL(c, "read", read(p.a, buf, sizeof(buf)));
    c.expect_took(m0, kTimeoutMs - 2, kTimeoutMs + kSlackMs, "read with SO_RCVTIMEO");
    iovec iov = {buf, sizeof(buf)};
    m0 = now_ms();
    CALL(c, "readv", readv(p.a, &iov, 1));
    c.expect_took(m0, kTimeoutMs - 2, kTimeoutMs + kSlackMs, "readv with SO_RCVTIMEO");
}

void zero_so_rcvtimeo_means_no_timeout(Ctx &c)
{
    Fds p;
    tcp_pair(c, p);
    set_timeo(c, p.a, SO_RCVTIMEO, kTimeoutMs);
    set_timeo(c, p.a, SO_RCVTIMEO, 0);
    int b = p.b;
    c.later(2 * kTimeoutMs, [b] { put(b, "late"); });
    char buf[16];
    uint64_t t0 = c.tick();
    long long n = CALL(c, "recv", recv(p.a, buf, sizeof(buf), 0));
    c.bytes("data", buf, n);
    c.expect_parked(t0, "recv");
}

void so_rcvtimeo_and_so_sndtimeo_read_back_as_set(Ctx &c)
{
    Fds p;
    tcp_pair(c, p);
    timeval r = {0, 250000}, s = {1, 500000}, got{};
    socklen_t len = sizeof(got);
    CALL(c, "set SO_RCVTIMEO", setsockopt(p.a, SOL_SOCKET, SO_RCVTIMEO, &r, sizeof(r)));
    CALL(c, "set SO_SNDTIMEO", setsockopt(p.a, SOL_SOCKET, SO_SNDTIMEO, &s, sizeof(s)));
    CALL(c, "get SO_RCVTIMEO", getsockopt(p.a, SOL_SOCKET, SO_RCVTIMEO, &got, &len));
    c.note("rcvtimeo " + std::to_string(got.tv_sec) + "." + std::to_string(got.tv_usec) + " len " +
           std::to_string(len));
    len = sizeof(got);
    CALL(c, "get SO_SNDTIMEO", getsockopt(p.a, SOL_SOCKET, SO_SNDTIMEO, &got, &len));
    c.note("sndtimeo " + std::to_string(got.tv_sec) + "." + std::to_string(got.tv_usec));
    timeval bad = {0, 2000000};
    CALL(c, "set SO_RCVTIMEO usec 2e6",
         setsockopt(p.a, SOL_SOCKET, SO_RCVTIMEO, &bad, sizeof(bad)));
    CALL(c, "set SO_RCVTIMEO short optlen", setsockopt(p.a, SOL_SOCKET, SO_RCVTIMEO, &r, 3));
    len = sizeof(got);
    CALL(c, "get SO_RCVTIMEO after bad sets", getsockopt(p.a, SOL_SOCKET, SO_RCVTIMEO, &got, &len));
    c.note("rcvtimeo " + std::to_string(got.tv_sec) + "." + std::to_string(got.tv_usec));
}

void send_times_out_on_a_full_buffer_with_so_sndtimeo(Ctx &c)
{
    Fds p;
    unix_pair(c, p, 4096);
    ssize_t filled = coho_lb_fill(p.a);
    c.note(std::string("filled ") + (filled > 0 ? "yes" : "no"));
    set_timeo(c, p.a, SO_SNDTIMEO, kTimeoutMs);
    static const char chunk[4096] = {0};
    uint64_t t0 = c.tick();
    int64_t m0 = now_ms();
    CALL(c, "send", send(p.a, chunk, sizeof(chunk), 0));
    c.expect_parked(t0, "send");
    c.expect_took(m0, kTimeoutMs - 2, kTimeoutMs + kSlackMs, "send with SO_SNDTIMEO");
    m0 = now_ms();
    CALL(c, "write", write(p.a, chunk, sizeof(chunk)));
    c.expect_took(m0, kTimeoutMs - 2, kTimeoutMs + kSlackMs, "write with SO_SNDTIMEO");
}

void blocking_send_waits_until_the_reader_drains(Ctx &c)
{
    Fds p;
    unix_pair(c, p, 4096);
    ssize_t filled = coho_lb_fill(p.a);
    c.note(std::string("filled ") + (filled > 0 ? "yes" : "no"));
    std::vector<char> big(65536, 'x');
    std::atomic<long long> drained{0};
    int b = p.b;
    c.later(kLateMs, [&drained, b, filled] {
        drained = coho_lb_read_full(b, nullptr, static_cast<size_t>(filled) + 65536);
    });
    uint64_t t0 = c.tick();
    CALL(c, "send 64 KiB", send(p.a, big.data(), big.size(), 0));
    c.expect_parked(t0, "send");
    c.join_helpers();
    c.note(std::string("peer drained all: ") + (drained == filled + 65536 ? "yes" : "no"));
}

void write_of_8_mib_to_a_slow_reader_returns_every_byte(Ctx &c)
{
    Fds p;
    tcp_pair(c, p);
    const size_t total = 8u << 20;
    std::vector<char> big(total);
    for (size_t i = 0; i < total; i++)
        big[i] = static_cast<char>(i * 7 + (i >> 12));
    std::atomic<uint64_t> peer_hash{0};
    std::atomic<long long> peer_len{0};
    int b = p.b;
    c.later(10, [&, b] {
        std::vector<char> got(total);
        size_t done = 0;
        while (done < total) {
            size_t want = total - done < 65536 ? total - done : 65536;
            ssize_t n = coho_lb_read_full(b, got.data() + done, want);
            if (n <= 0)
                break;
            done += static_cast<size_t>(n);
            coho_lb_sleep_ms(1);
        }
        peer_len = static_cast<long long>(done);
        peer_hash = coho_lb_hash(got.data(), done);
    });
    uint64_t t0 = c.tick();
    CALL(c, "write 8 MiB", write(p.a, big.data(), big.size()));
    c.expect_parked(t0, "write");
    c.join_helpers();
    c.note("peer got " + std::to_string(peer_len.load()) +
           " bytes, same bytes: " + (peer_hash == coho_lb_hash(big.data(), total) ? "yes" : "no"));
}

// -- connect -------------------------------------------------------------------------------------

void connect_to_a_refused_port_reports_econnrefused(Ctx &c)
{
    sockaddr_in addr{};
    int holder = -1;
    EXPECT_EQ(coho_lb_refused(&addr, &holder), 0);
    int s = CALLFD(c, "socket", socket(AF_INET, SOCK_STREAM, 0));
    CALL(c, "connect", connect(s, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)));
    int err = -1;
    socklen_t len = sizeof(err);
    CALL(c, "getsockopt(SO_ERROR)", getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len));
    c.note("SO_ERROR " + errname(err));
    close(s);
    close(holder);
}

void nonblocking_connect_to_a_refused_port_reports_it_through_so_error(Ctx &c)
{
    sockaddr_in addr{};
    int holder = -1;
    EXPECT_EQ(coho_lb_refused(&addr, &holder), 0);
    int s = CALLFD(c, "socket(SOCK_NONBLOCK)", socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0));
    CALL(c, "connect", connect(s, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)));
    pollfd pfd = {s, POLLOUT, 0};
    CALL(c, "poll(POLLOUT)", poll(&pfd, 1, 2000));
    c.note("revents " + std::to_string(pfd.revents));
    int err = -1;
    socklen_t len = sizeof(err);
    CALL(c, "getsockopt(SO_ERROR)", getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len));
    c.note("SO_ERROR " + errname(err));
    close(s);
    close(holder);
}

void connect_to_a_black_hole_with_so_sndtimeo_gives_einprogress_then_ealready(Ctx &c)
{
    coho_lb_black_hole_t bh;
    int rc = coho_lb_black_hole_open(&bh);
    ASSERT_EQ(rc, 0) << errname(-rc);
    int s = CALLFD(c, "socket", socket(AF_INET, SOCK_STREAM, 0));
    set_timeo(c, s, SO_SNDTIMEO, kTimeoutMs);
    uint64_t t0 = c.tick();
    int64_t m0 = now_ms();
    CALL(c, "connect", connect(s, reinterpret_cast<sockaddr *>(&bh.addr), sizeof(bh.addr)));
    c.expect_parked(t0, "connect");
    c.expect_took(m0, kTimeoutMs - 2, kTimeoutMs + kSlackMs, "connect with SO_SNDTIMEO");
    // Linux: a second blocking connect while the first is in progress waits SO_SNDTIMEO again,
    // then reports EALREADY.
    m0 = now_ms();
    CALL(c, "connect again", connect(s, reinterpret_cast<sockaddr *>(&bh.addr), sizeof(bh.addr)));
    c.expect_took(m0, kTimeoutMs - 2, kTimeoutMs + kSlackMs, "second connect with SO_SNDTIMEO");
    close(s);
    coho_lb_black_hole_close(&bh);
}

void blocking_connect_to_a_listener_succeeds_and_reconnect_is_eisconn(Ctx &c)
{
    sockaddr_in addr{};
    int l = coho_lb_listen(8, &addr);
    ASSERT_GE(l, 0);
    int s = CALLFD(c, "socket", socket(AF_INET, SOCK_STREAM, 0));
    CALL(c, "connect", connect(s, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)));
    CALL(c, "connect again", connect(s, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)));
    sockaddr_in peer{};
    socklen_t len = sizeof(peer);
    CALL(c, "getpeername", getpeername(s, reinterpret_cast<sockaddr *>(&peer), &len));
    c.note(std::string("peer is the listener: ") + (peer.sin_port == addr.sin_port ? "yes" : "no"));
    int a = CALLFD(c, "accept", accept(l, nullptr, nullptr));
    CALL(c, "send", send(s, "ping", 4, 0));
    char buf[8];
    long long n = CALL(c, "recv", recv(a, buf, sizeof(buf), 0));
    c.bytes("data", buf, n);
    close(a);
    close(s);
    close(l);
}

// -- the user's O_NONBLOCK view
// --------------------------------------------------------------------

void user_o_nonblock_recv_returns_eagain_at_once(Ctx &c)
{
    Fds p;
    tcp_pair(c, p);
    long long fl = CALL(c, "F_GETFL", fcntl(p.a, F_GETFL));
    CALL(c, "F_SETFL O_NONBLOCK", fcntl(p.a, F_SETFL, static_cast<int>(fl) | O_NONBLOCK));
    char buf[16];
    int64_t m0 = now_ms();
    CALL(c, "recv", recv(p.a, buf, sizeof(buf), 0));
    CALL(c, "read", read(p.a, buf, sizeof(buf)));
    c.expect_took(m0, 0, kFastMs, "non-blocking recv and read");
    put(p.b, "now");
    long long n = CALL(c, "recv with data", recv(p.a, buf, sizeof(buf), 0));
    c.bytes("data", buf, n);
}

void user_o_nonblock_send_on_a_full_buffer_returns_eagain(Ctx &c)
{
    Fds p;
    unix_pair(c, p, 4096);
    long long fl = CALL(c, "F_GETFL", fcntl(p.a, F_GETFL));
    CALL(c, "F_SETFL O_NONBLOCK", fcntl(p.a, F_SETFL, static_cast<int>(fl) | O_NONBLOCK));
    static const char chunk[1024] = {0};
    long long total = 0, n;
    int64_t m0 = now_ms();
    while ((n = send(p.a, chunk, sizeof(chunk), 0)) > 0)
        total += n;
    c.rec("send until full", n, errno, false);
    c.note(std::string("queued some: ") + (total > 0 ? "yes" : "no"));
    c.expect_took(m0, 0, kFastMs, "non-blocking sends");
}

void f_getfl_shows_the_users_view_through_adoption_and_parking(Ctx &c)
{
    Fds p;
    tcp_pair(c, p);
    note_flags(c, "F_GETFL fresh", p.a);
    put(p.b, "one");
    char buf[16];
    long long n = CALL(c, "recv ready", recv(p.a, buf, sizeof(buf), 0));
    c.bytes("data", buf, n);
    note_flags(c, "F_GETFL after a recv", p.a);
    int b = p.b;
    c.later(kLateMs, [b] { put(b, "two"); });
    n = CALL(c, "recv parked", recv(p.a, buf, sizeof(buf), 0));
    c.bytes("data", buf, n);
    note_flags(c, "F_GETFL after a parked recv", p.a);
    long long fl = CALL(c, "fcntl64 F_GETFL", fcntl64(p.a, F_GETFL));
    CALL(c, "F_SETFL O_NONBLOCK", fcntl(p.a, F_SETFL, static_cast<int>(fl) | O_NONBLOCK));
    note_flags(c, "F_GETFL after set", p.a);
    CALL(c, "fcntl64 F_SETFL 0", fcntl64(p.a, F_SETFL, static_cast<int>(fl) & ~O_NONBLOCK));
    note_flags(c, "F_GETFL after clear", p.a);
    note_flags(c, "F_GETFL peer", p.b);
}

void ioctl_fionbio_sets_and_clears_the_users_nonblocking_view(Ctx &c)
{
    Fds p;
    tcp_pair(c, p);
    int on = 1, off = 0;
    CALL(c, "FIONBIO 1", ioctl(p.a, FIONBIO, &on));
    note_flags(c, "F_GETFL", p.a);
    char buf[16];
    CALL(c, "recv", recv(p.a, buf, sizeof(buf), 0));
    CALL(c, "FIONBIO 0", ioctl(p.a, FIONBIO, &off));
    note_flags(c, "F_GETFL", p.a);
    int b = p.b;
    c.later(kLateMs, [b] { put(b, "blocking again"); });
    uint64_t t0 = c.tick();
    long long n = CALL(c, "recv parked", recv(p.a, buf, sizeof(buf), 0));
    c.bytes("data", buf, n);
    c.expect_parked(t0, "recv");
}

void sock_nonblock_socketpair_returns_eagain(Ctx &c)
{
    int sv[2] = {-1, -1};
    CALL(c, "socketpair(SOCK_NONBLOCK)", socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv));
    note_flags(c, "F_GETFL", sv[0]);
    char buf[16];
    CALL(c, "recv", recv(sv[0], buf, sizeof(buf), 0));
    CALL(c, "send", send(sv[1], "x", 1, 0));
    long long n = CALL(c, "recv", recv(sv[0], buf, sizeof(buf), 0));
    c.bytes("data", buf, n);
    close(sv[0]);
    close(sv[1]);
}

void sock_nonblock_connect_returns_einprogress_then_completes(Ctx &c)
{
    sockaddr_in addr{};
    int l = coho_lb_listen(8, &addr);
    ASSERT_GE(l, 0);
    int s = CALLFD(c, "socket(SOCK_NONBLOCK)", socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0));
    CALL(c, "connect", connect(s, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)));
    pollfd pfd = {s, POLLOUT, 0};
    CALL(c, "poll(POLLOUT)", poll(&pfd, 1, 2000));
    c.note("revents " + std::to_string(pfd.revents));
    int err = -1;
    socklen_t len = sizeof(err);
    CALL(c, "getsockopt(SO_ERROR)", getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len));
    c.note("SO_ERROR " + std::to_string(err));
    CALL(c, "connect again", connect(s, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)));
    close(s);
    close(l);
}

void accept4_flags_apply_to_the_accepted_socket(Ctx &c)
{
    sockaddr_in addr{};
    int l = coho_lb_listen(8, &addr);
    ASSERT_GE(l, 0);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    CALL(c, "connect", connect(s, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)));
    int a = CALLFD(c, "accept4(SOCK_NONBLOCK|SOCK_CLOEXEC)",
                   accept4(l, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    note_flags(c, "F_GETFL", a);
    CALL(c, "F_GETFD", fcntl(a, F_GETFD));
    char buf[8];
    CALL(c, "recv", recv(a, buf, sizeof(buf), 0));
    CALL(c, "accept4 bad flags", accept4(l, nullptr, nullptr, 0x1));
    close(a);
    close(s);
    close(l);
}

void accept_parks_until_a_client_connects(Ctx &c)
{
    sockaddr_in addr{};
    int l = coho_lb_listen(8, &addr);
    ASSERT_GE(l, 0);
    std::atomic<int> client{-1};
    c.later(kLateMs, [&client, addr] {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        EXPECT_EQ(connect(s, reinterpret_cast<const sockaddr *>(&addr), sizeof(addr)), 0);
        put(s, "hi");
        client = s;
    });
    sockaddr_in from{};
    socklen_t len = sizeof(from);
    uint64_t t0 = c.tick();
    int a = CALLFD(c, "accept", accept(l, reinterpret_cast<sockaddr *>(&from), &len));
    c.expect_parked(t0, "accept");
    c.note("addrlen " + std::to_string(len) + " family " + std::to_string(from.sin_family));
    char buf[8];
    long long n = CALL(c, "recv", recv(a, buf, sizeof(buf), 0));
    c.bytes("data", buf, n);
    c.join_helpers();
    close(client.load());
    close(a);
    close(l);
}

void accept_times_out_with_so_rcvtimeo(Ctx &c)
{
    int l = coho_lb_listen(8, nullptr);
    ASSERT_GE(l, 0);
    set_timeo(c, l, SO_RCVTIMEO, kTimeoutMs);
    uint64_t t0 = c.tick();
    int64_t m0 = now_ms();
    CALLFD(c, "accept", accept(l, nullptr, nullptr));
    c.expect_parked(t0, "accept");
    c.expect_took(m0, kTimeoutMs - 2, kTimeoutMs + kSlackMs, "accept with SO_RCVTIMEO");
    long long fl = fcntl(l, F_GETFL);
    CALL(c, "F_SETFL O_NONBLOCK", fcntl(l, F_SETFL, static_cast<int>(fl) | O_NONBLOCK));
    m0 = now_ms();
    CALLFD(c, "non-blocking accept", accept(l, nullptr, nullptr));
    c.expect_took(m0, 0, kFastMs, "non-blocking accept");
    close(l);
}

// -- peer behaviour ------------------------------------------------------------------------------

void reset(int fd)
{
    linger lg = {1, 0};
    EXPECT_EQ(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    close(fd);
}

void peer_reset_wakes_a_parked_recv_with_econnreset(Ctx &c)
{
    Fds p;
    tcp_pair(c, p);
    int b = p.b;
    p.b = -1;
    c.later(kLateMs, [b] { reset(b); });
    char buf[16];
    uint64_t t0 = c.tick();
    CALL(c, "recv", recv(p.a, buf, sizeof(buf), 0));
    c.expect_parked(t0, "recv");
    CALL(c, "recv after reset", recv(p.a, buf, sizeof(buf), 0));
}

void send_after_a_peer_reset_gives_econnreset_then_epipe(Ctx &c)
{
    Fds p;
    tcp_pair(c, p);
    reset(p.b);
    p.b = -1;
    pollfd pfd = {p.a, POLLIN, 0};
    CALL(c, "poll", poll(&pfd, 1, 2000));
    c.note("revents " + std::to_string(pfd.revents));
    CALL(c, "send", send(p.a, "x", 1, MSG_NOSIGNAL));
    CALL(c, "send again", send(p.a, "x", 1, MSG_NOSIGNAL));
    CALL(c, "write", write(p.a, "x", 1));
}

void half_close_delivers_data_then_eof_every_time(Ctx &c)
{
    Fds p;
    tcp_pair(c, p);
    int b = p.b;
    // Data and FIN back to back can arrive in one readiness edge: after the short read the next
    // recv must still see the EOF at once.
    c.later(kLateMs, [b] {
        put(b, "abc");
        EXPECT_EQ(shutdown(b, SHUT_WR), 0);
    });
    char buf[64];
    uint64_t t0 = c.tick();
    long long n = CALL(c, "recv", recv(p.a, buf, sizeof(buf), 0));
    c.bytes("data", buf, n);
    c.expect_parked(t0, "recv");
    if (n == 1 || n == 2) { // the peer's bytes may straddle two segments in rare cases
        long long m = recv(p.a, buf, sizeof(buf), 0);
        c.note("rest " + std::to_string(n + m));
    }
    int64_t m0 = now_ms();
    CALL(c, "recv at eof", recv(p.a, buf, sizeof(buf), 0));
    CALL(c, "read at eof", read(p.a, buf, sizeof(buf)));
    c.expect_took(m0, 0, kFastMs, "recv at EOF");
    CALL(c, "send on the half-open side", send(p.a, "x", 1, 0));
    long long m = CALL(c, "peer reads", recv(p.b, buf, sizeof(buf), 0));
    c.bytes("peer data", buf, m);
}

// A read of zero bytes returns 0 at once, also on a socket a short read has just drained. (A
// recv of zero bytes on an empty TCP socket waits for data in the kernel: not asked here.)
void zero_length_read_on_a_drained_socket_returns_zero(Ctx &c)
{
    Fds p;
    tcp_pair(c, p);
    put(p.b, "abc");
    char buf[64];
    long long n = CALL(c, "recv", recv(p.a, buf, sizeof(buf), 0)); // short: drained
    c.bytes("data", buf, n);
    int64_t m0 = now_ms();
    CALL(c, "read 0 bytes", read(p.a, buf, runtime_len(0)));
    c.expect_took(m0, 0, kFastMs, "a zero-length read");
}

// A read stops short at the urgent mark: that is no sign of a drained socket, so the next read
// returns the rest at once.
void a_read_stopped_by_urgent_data_is_not_a_drained_socket(Ctx &c)
{
    Fds p;
    tcp_pair(c, p);
    put(p.b, "abc");
    EXPECT_EQ(send(p.b, "!", 1, MSG_OOB), 1);
    put(p.b, "def");
    c.nap(20); // every segment is in, and a coroutine's scheduler has polled their edges
    char buf[64];
    long long n = CALL(c, "recv up to the mark", recv(p.a, buf, sizeof(buf), 0));
    c.bytes("data", buf, n);
    int64_t m0 = now_ms();
    n = CALL(c, "recv past the mark", recv(p.a, buf, sizeof(buf), 0));
    c.bytes("rest", buf, n);
    c.expect_took(m0, 0, kFastMs, "the read after the urgent mark");
}

// Timeouts so large that milliseconds overflow mean "for ever", in the socket option and in
// select, as in the kernel.
void huge_timeouts_mean_for_ever(Ctx &c)
{
    Fds p;
    tcp_pair(c, p);
    timeval huge{LONG_MAX, 0};
    CALL(c, "setsockopt(SO_RCVTIMEO huge)",
         setsockopt(p.a, SOL_SOCKET, SO_RCVTIMEO, &huge, sizeof(huge)));
    int b = p.b;
    c.later(kLateMs, [b] { put(b, "late"); });
    char buf[16];
    long long n = CALL(c, "recv", recv(p.a, buf, sizeof(buf), 0));
    c.bytes("data", buf, n);
    put(p.b, "more");
    fd_set rs;
    FD_ZERO(&rs);
    FD_SET(p.a, &rs);
    timeval tv{LONG_MAX, 0};
    CALL(c, "select with a huge timeout", select(p.a + 1, &rs, nullptr, nullptr, &tv));
    c.note(std::string("readable ") + (FD_ISSET(p.a, &rs) ? "1" : "0"));
}

void shutdown_write_gives_the_peer_eof_and_send_epipe(Ctx &c)
{
    Fds p;
    tcp_pair(c, p);
    CALL(c, "shutdown(SHUT_WR)", shutdown(p.a, SHUT_WR));
    char buf[8];
    CALL(c, "peer recv", recv(p.b, buf, sizeof(buf), 0));
    CALL(c, "send", send(p.a, "x", 1, MSG_NOSIGNAL));
    CALL(c, "shutdown(SHUT_RD)", shutdown(p.a, SHUT_RD));
    int64_t m0 = now_ms();
    CALL(c, "recv after SHUT_RD", recv(p.a, buf, sizeof(buf), 0));
    c.expect_took(m0, 0, kFastMs, "recv after SHUT_RD");
    CALL(c, "shutdown bad how", shutdown(p.a, 99));
}

// -- recv flags ----------------------------------------------------------------------------------

void msg_waitall_collects_every_byte(Ctx &c)
{
    Fds p;
    tcp_pair(c, p);
    int b = p.b;
    c.later(20, [b] {
        std::string chunk(1000, 'w');
        for (int i = 0; i < 3; i++) {
            chunk[0] = static_cast<char>('0' + i);
            put(b, chunk.c_str());
            coho_lb_sleep_ms(30);
        }
    });
    std::vector<char> buf(3000);
    uint64_t t0 = c.tick();
    long long n = CALL(c, "recv(MSG_WAITALL)", recv(p.a, buf.data(), buf.size(), MSG_WAITALL));
    c.bytes("data", buf.data(), n);
    c.expect_parked(t0, "recv(MSG_WAITALL)");
}

void msg_waitall_returns_a_short_count_at_eof(Ctx &c)
{
    Fds p;
    tcp_pair(c, p);
    int b = p.b;
    c.later(kLateMs, [b] {
        put(b, std::string(100, 'e').c_str());
        EXPECT_EQ(shutdown(b, SHUT_WR), 0);
    });
    std::vector<char> buf(1000);
    long long n = CALL(c, "recv(MSG_WAITALL)", recv(p.a, buf.data(), buf.size(), MSG_WAITALL));
    c.bytes("data", buf.data(), n);
}

void msg_waitall_with_so_rcvtimeo_returns_the_partial_count(Ctx &c)
{
    Fds p;
    tcp_pair(c, p);
    set_timeo(c, p.a, SO_RCVTIMEO, 150);
    int b = p.b;
    c.later(30, [b] { put(b, std::string(100, 'p').c_str()); });
    std::vector<char> buf(1000);
    int64_t m0 = now_ms();
    long long n = CALL(c, "recv(MSG_WAITALL)", recv(p.a, buf.data(), buf.size(), MSG_WAITALL));
    c.bytes("data", buf.data(), n);
    c.expect_took(m0, 148, 150 + kSlackMs, "recv(MSG_WAITALL) with SO_RCVTIMEO");
}

void msg_peek_parks_and_leaves_the_data_queued(Ctx &c)
{
    Fds p;
    tcp_pair(c, p);
    int b = p.b;
    c.later(kLateMs, [b] { put(b, "hello world"); });
    char buf[64];
    uint64_t t0 = c.tick();
    long long n = CALL(c, "recv(MSG_PEEK)", recv(p.a, buf, 5, MSG_PEEK));
    c.bytes("peeked", buf, n);
    c.expect_parked(t0, "recv(MSG_PEEK)");
    n = CALL(c, "recv(MSG_PEEK) again", recv(p.a, buf, 5, MSG_PEEK));
    c.bytes("peeked", buf, n);
    n = CALL(c, "recv", recv(p.a, buf, sizeof(buf), 0));
    c.bytes("data", buf, n);
}

void msg_dontwait_returns_eagain_on_a_blocking_socket(Ctx &c)
{
    Fds p;
    unix_pair(c, p, 4096);
    char buf[16];
    int64_t m0 = now_ms();
    CALL(c, "recv(MSG_DONTWAIT)", recv(p.a, buf, sizeof(buf), MSG_DONTWAIT));
    ssize_t filled = coho_lb_fill(p.a);
    c.note(std::string("filled ") + (filled > 0 ? "yes" : "no"));
    CALL(c, "send(MSG_DONTWAIT)", send(p.a, buf, sizeof(buf), MSG_DONTWAIT));
    c.expect_took(m0, 0, kFastMs, "MSG_DONTWAIT calls");
    note_flags(c, "F_GETFL", p.a);
    put(p.b, "z");
    long long n =
        CALL(c, "recv(MSG_DONTWAIT) with data", recv(p.a, buf, sizeof(buf), MSG_DONTWAIT));
    c.bytes("data", buf, n);
}

// -- signals (deliberate difference) ------------------------------------------------------------

std::atomic<int> g_usr1_count{0};
void on_usr1(int)
{
    g_usr1_count++;
}

void a_signal_does_not_interrupt_a_parked_recv(Ctx &c)
{
    struct sigaction sa {
    }, old{};
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; // no SA_RESTART: libc's blocking recv fails with EINTR
    ASSERT_EQ(sigaction(SIGUSR1, &sa, &old), 0);
    g_usr1_count = 0;
    Fds p;
    tcp_pair(c, p);
    pthread_t target = pthread_self();
    int b = p.b;
    c.later(kLateMs, [target, b] {
        EXPECT_EQ(pthread_kill(target, SIGUSR1), 0);
        coho_lb_sleep_ms(kLateMs);
        put(b, "after");
    });
    char buf[16];
    long long n = CALL(c, "recv", recv(p.a, buf, sizeof(buf), 0));
    int err = c.last_errno;
    c.join_helpers();
    EXPECT_EQ(g_usr1_count.load(), 1) << "the signal handler ran once";
    if (c.in_coho()) {
        EXPECT_EQ(n, 5) << "a parked call is not interrupted by a signal (DESIGN.md: as if "
                           "SA_RESTART were set); got errno "
                        << errname(err);
    } else {
        EXPECT_EQ(n, -1);
        EXPECT_EQ(err, EINTR);
    }
    sigaction(SIGUSR1, &old, nullptr);
}

// -- fds not made by hooked calls ----------------------------------------------------------------

void pipe_read_is_adopted_lazily_and_parks(Ctx &c)
{
    int pp[2];
    ASSERT_EQ(pipe(pp), 0);
    int w = pp[1];
    c.later(kLateMs, [w] { put(w, "through the pipe"); });
    char buf[64];
    uint64_t t0 = c.tick();
    long long n = CALL(c, "read", read(pp[0], buf, sizeof(buf)));
    c.bytes("data", buf, n);
    c.expect_parked(t0, "read from a pipe");
    note_flags(c, "F_GETFL read end", pp[0]);
    c.join_helpers(); // the helper wrote through pp[1]: done with it before it is closed
    CALL(c, "close write end", close(pp[1]));
    CALL(c, "read at eof", read(pp[0], buf, sizeof(buf)));
    close(pp[0]);
}

void pipe_write_to_a_full_pipe_parks_until_drained(Ctx &c)
{
    int pp[2];
    ASSERT_EQ(pipe(pp), 0);
    CALL(c, "F_SETPIPE_SZ", fcntl(pp[1], F_SETPIPE_SZ, 4096));
    std::vector<char> big(65536, 'q');
    std::atomic<long long> drained{0};
    int r = pp[0];
    c.later(kLateMs, [&drained, r] { drained = coho_lb_read_full(r, nullptr, 65536); });
    uint64_t t0 = c.tick();
    CALL(c, "write 64 KiB", write(pp[1], big.data(), big.size()));
    c.expect_parked(t0, "write to a full pipe");
    c.join_helpers();
    c.note("drained " + std::to_string(drained.load()));
    close(pp[0]);
    close(pp[1]);
}

void eventfd_read_is_adopted_lazily_and_parks(Ctx &c)
{
    int efd = CALLFD(c, "eventfd", eventfd(0, 0));
    c.later(kLateMs, [efd] {
        uint64_t v = 5;
        EXPECT_EQ(write(efd, &v, sizeof(v)), 8);
    });
    uint64_t v = 0;
    uint64_t t0 = c.tick();
    CALL(c, "read", read(efd, &v, sizeof(v)));
    c.note("value " + std::to_string(v));
    c.expect_parked(t0, "read from an eventfd");
    CALL(c, "short read", read(efd, &v, 4));
    c.join_helpers(); // the helper wrote to efd: done with it before it is closed
    close(efd);
    int nb = CALLFD(c, "eventfd(EFD_NONBLOCK)", eventfd(0, EFD_NONBLOCK));
    CALL(c, "read", read(nb, &v, sizeof(v)));
    close(nb);
}

void stdin_pipe_is_never_switched_to_nonblocking(Ctx &c)
{
    int saved = dup(0);
    ASSERT_GE(saved, 0);
    int pp[2];
    ASSERT_EQ(pipe(pp), 0);
    ASSERT_EQ(dup2(pp[0], 0), 0);
    close(pp[0]);
    std::atomic<long> kernel_flags{-1};
    int w = pp[1];
    c.later(kLateMs, [&kernel_flags, w] {
        kernel_flags = syscall(SYS_fcntl, 0, F_GETFL); // the kernel's flags, not a view
        put(w, "stdin");
    });
    char buf[16];
    uint64_t t0 = c.tick();
    long long n = CALL(c, "read(0)", read(0, buf, sizeof(buf)));
    c.bytes("data", buf, n);
    c.expect_parked(t0, "read from fd 0");
    c.join_helpers();
    c.note(std::string("kernel O_NONBLOCK on fd 0 while waiting: ") +
           ((kernel_flags.load() & O_NONBLOCK) ? "1" : "0"));
    note_flags(c, "F_GETFL(0)", 0);
    dup2(saved, 0);
    close(saved);
    close(w);
}

// -- poll, select, ppoll, epoll_wait
// ---------------------------------------------------------------

struct ManyPairs {
    std::vector<pollfd> fds;
    std::vector<int> open_fds;
    ~ManyPairs()
    {
        for (int fd : open_fds)
            close(fd);
    }
};

// 500 socket pairs: entry 2k is pair k's reading end, 2k + 1 its writing end.
void many_pairs(ManyPairs &m)
{
    ASSERT_EQ(coho_lb_raise_nofile(4096), 0);
    for (int k = 0; k < 500; k++) {
        int sv[2];
        ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        m.open_fds.push_back(sv[0]);
        m.open_fds.push_back(sv[1]);
        m.fds.push_back(pollfd{sv[0], POLLIN, 0});
        m.fds.push_back(pollfd{sv[1], POLLIN, 0});
    }
}

std::string revents_of(const std::vector<pollfd> &fds)
{
    std::ostringstream os;
    for (size_t i = 0; i < fds.size(); i++)
        if (fds[i].revents != 0)
            os << i << ":" << fds[i].revents << " ";
    return os.str();
}

void poll_with_1000_fds_reports_exact_revents(Ctx &c)
{
    ManyPairs m;
    many_pairs(m);
    for (int k = 0; k < 500; k += 7)
        put(m.fds[2 * k + 1].fd, "r");
    m.fds[500].fd = -1;      // ignored: revents 0
    m.fds[501].fd = 1 << 20; // beyond the fd table: POLLNVAL
    m.fds[3].events = POLLOUT;
    CALL(c, "poll 1000 fds", poll(m.fds.data(), m.fds.size(), 1000));
    c.note("revents " + revents_of(m.fds));
}

void poll_with_1000_fds_parks_until_one_is_ready(Ctx &c)
{
    ManyPairs m;
    many_pairs(m);
    int w = m.fds[999].fd;
    c.later(kLateMs, [w] { put(w, "last"); });
    uint64_t t0 = c.tick();
    CALL(c, "poll 1000 fds", poll(m.fds.data(), m.fds.size(), 5000));
    c.expect_parked(t0, "poll");
    c.note("revents " + revents_of(m.fds));
    for (auto &p : m.fds)
        p.revents = 0;
    int64_t m0 = now_ms();
    CALL(c, "poll 1000 fds again", poll(m.fds.data(), m.fds.size(), kTimeoutMs));
    c.note("revents " + revents_of(m.fds));
    char buf[8];
    CALL(c, "read", read(m.fds[998].fd, buf, sizeof(buf)));
    for (auto &p : m.fds)
        p.revents = 0;
    m0 = now_ms();
    CALL(c, "poll 1000 fds, none ready", poll(m.fds.data(), m.fds.size(), kTimeoutMs));
    c.expect_took(m0, kTimeoutMs - 2, kTimeoutMs + kSlackMs, "poll timeout");
}

void poll_with_zero_fds_sleeps_for_the_timeout(Ctx &c)
{
    uint64_t t0 = c.tick();
    int64_t m0 = now_ms();
    CALL(c, "poll(NULL, 0, 100)", poll(nullptr, 0, kTimeoutMs));
    c.expect_parked(t0, "poll with no fds");
    c.expect_took(m0, kTimeoutMs - 2, kTimeoutMs + kSlackMs, "poll with no fds");
    m0 = now_ms();
    CALL(c, "poll(NULL, 0, 0)", poll(nullptr, 0, 0));
    c.expect_took(m0, 0, kFastMs, "poll with no fds and timeout 0");
}

void poll_times_out_with_zero_and_no_revents(Ctx &c)
{
    Fds p;
    tcp_pair(c, p);
    pollfd pfd = {p.a, POLLIN | POLLPRI, 0};
    int64_t m0 = now_ms();
    CALL(c, "poll", poll(&pfd, 1, kTimeoutMs));
    c.expect_took(m0, kTimeoutMs - 2, kTimeoutMs + kSlackMs, "poll timeout");
    c.note("revents " + std::to_string(pfd.revents));
    pfd.events = POLLOUT;
    CALL(c, "poll(POLLOUT)", poll(&pfd, 1, kTimeoutMs));
    c.note("revents " + std::to_string(pfd.revents));
    pfd.events = 0;
    CALL(c, "poll(no events)", poll(&pfd, 1, 0));
    c.note("revents " + std::to_string(pfd.revents));
}

void poll_reports_pollhup_and_pollrdhup_after_peer_close(Ctx &c)
{
    Fds p;
    tcp_pair(c, p);
    int b = p.b;
    p.b = -1;
    c.later(kLateMs, [b] { close(b); });
    pollfd pfd = {p.a, POLLIN | POLLRDHUP, 0};
    uint64_t t0 = c.tick();
    CALL(c, "poll", poll(&pfd, 1, 5000));
    c.expect_parked(t0, "poll");
    c.note("revents " + std::to_string(pfd.revents));
    char buf[4];
    CALL(c, "recv", recv(p.a, buf, sizeof(buf), 0));
    c.join_helpers();
    CALL(c, "send", send(p.a, "x", 1, MSG_NOSIGNAL));
    c.nap(20); // the closed peer answers with a reset
    pfd.events = POLLIN | POLLOUT | POLLRDHUP;
    CALL(c, "poll after reset", poll(&pfd, 1, 1000));
    c.note("revents " + std::to_string(pfd.revents));
}

void select_reports_exact_sets_and_parks(Ctx &c)
{
    Fds p, q;
    tcp_pair(c, p);
    tcp_pair(c, q);
    int b = p.b;
    c.later(kLateMs, [b] { put(b, "sel"); });
    fd_set r;
    FD_ZERO(&r);
    FD_SET(p.a, &r);
    FD_SET(q.a, &r);
    int maxfd = std::max(p.a, q.a);
    uint64_t t0 = c.tick();
    CALL(c, "select read", select(maxfd + 1, &r, nullptr, nullptr, nullptr));
    c.expect_parked(t0, "select");
    c.note(std::string("p readable ") + (FD_ISSET(p.a, &r) ? "1" : "0") + " q readable " +
           (FD_ISSET(q.a, &r) ? "1" : "0"));
    fd_set r2, w2, e2;
    FD_ZERO(&r2);
    FD_ZERO(&w2);
    FD_ZERO(&e2);
    FD_SET(p.a, &r2);
    FD_SET(q.a, &r2);
    FD_SET(p.a, &w2);
    FD_SET(q.a, &w2);
    FD_SET(q.a, &e2);
    timeval tv = {1, 0};
    CALL(c, "select read+write+except", select(maxfd + 1, &r2, &w2, &e2, &tv));
    c.note(std::string("r ") + (FD_ISSET(p.a, &r2) ? "p" : "") + (FD_ISSET(q.a, &r2) ? "q" : "") +
           " w " + (FD_ISSET(p.a, &w2) ? "p" : "") + (FD_ISSET(q.a, &w2) ? "q" : "") + " e " +
           (FD_ISSET(q.a, &e2) ? "q" : ""));
}

void select_timeout_returns_zero_and_updates_the_timeval(Ctx &c)
{
    Fds p;
    tcp_pair(c, p);
    fd_set r;
    FD_ZERO(&r);
    FD_SET(p.a, &r);
    timeval tv = tv_ms(kTimeoutMs);
    uint64_t t0 = c.tick();
    int64_t m0 = now_ms();
    CALL(c, "select", select(p.a + 1, &r, nullptr, nullptr, &tv));
    c.expect_parked(t0, "select");
    c.expect_took(m0, kTimeoutMs - 2, kTimeoutMs + kSlackMs, "select timeout");
    c.note("timeval left " + std::to_string(tv.tv_sec) + "." + std::to_string(tv.tv_usec) +
           " set " + (FD_ISSET(p.a, &r) ? "1" : "0"));
    timeval zero = {0, 0};
    CALL(c, "select(0, NULL x3, tv)", select(0, nullptr, nullptr, nullptr, &zero));
    CALL(c, "select nfds -1", select(-1, nullptr, nullptr, nullptr, &zero));
    timeval badtv = {0, -1};
    CALL(c, "select bad timeval", select(0, nullptr, nullptr, nullptr, &badtv));
}

void ppoll_waits_with_a_timespec(Ctx &c)
{
    Fds p;
    tcp_pair(c, p);
    int b = p.b;
    c.later(kLateMs, [b] { put(b, "pp"); });
    pollfd pfd = {p.a, POLLIN, 0};
    timespec ts = {2, 0};
    sigset_t mask;
    sigemptyset(&mask);
    uint64_t t0 = c.tick();
    CALL(c, "ppoll", ppoll(&pfd, 1, &ts, &mask));
    c.expect_parked(t0, "ppoll");
    c.note("revents " + std::to_string(pfd.revents));
    char buf[8];
    CALL(c, "recv", recv(p.a, buf, sizeof(buf), 0));
    timespec shortts = {0, kTimeoutMs * 1000000L};
    int64_t m0 = now_ms();
    CALL(c, "ppoll timeout", ppoll(&pfd, 1, &shortts, nullptr));
    c.expect_took(m0, kTimeoutMs - 2, kTimeoutMs + kSlackMs, "ppoll timeout");
    timespec badts = {0, 1000000000L};
    CALL(c, "ppoll bad timespec", ppoll(&pfd, 1, &badts, nullptr));
}

void epoll_wait_on_a_user_epoll_fd_parks_until_ready(Ctx &c)
{
    Fds p;
    tcp_pair(c, p);
    int ep = CALLFD(c, "epoll_create1", epoll_create1(EPOLL_CLOEXEC));
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = 0x1234;
    CALL(c, "epoll_ctl ADD", epoll_ctl(ep, EPOLL_CTL_ADD, p.a, &ev));
    int b = p.b;
    c.later(kLateMs, [b] { put(b, "ep"); });
    epoll_event out[8];
    uint64_t t0 = c.tick();
    long long n = CALL(c, "epoll_wait", epoll_wait(ep, out, 8, 5000));
    c.expect_parked(t0, "epoll_wait");
    if (n == 1)
        c.note("event " + std::to_string(out[0].events) + " data " +
               std::to_string(out[0].data.u64));
    CALL(c, "epoll_wait level-triggered again", epoll_wait(ep, out, 8, 0));
    char buf[8];
    CALL(c, "recv", recv(p.a, buf, sizeof(buf), 0));
    CALL(c, "epoll_wait drained", epoll_wait(ep, out, 8, 0));
    close(ep);
}

void epoll_wait_and_epoll_pwait_time_out_with_zero(Ctx &c)
{
    Fds p;
    tcp_pair(c, p);
    int ep = epoll_create1(0);
    epoll_event ev{};
    ev.events = EPOLLIN;
    CALL(c, "epoll_ctl ADD", epoll_ctl(ep, EPOLL_CTL_ADD, p.a, &ev));
    epoll_event out[4];
    uint64_t t0 = c.tick();
    int64_t m0 = now_ms();
    CALL(c, "epoll_wait", epoll_wait(ep, out, 4, kTimeoutMs));
    c.expect_parked(t0, "epoll_wait");
    c.expect_took(m0, kTimeoutMs - 2, kTimeoutMs + kSlackMs, "epoll_wait timeout");
    sigset_t mask;
    sigemptyset(&mask);
    m0 = now_ms();
    CALL(c, "epoll_pwait", epoll_pwait(ep, out, 4, kTimeoutMs, &mask));
    c.expect_took(m0, kTimeoutMs - 2, kTimeoutMs + kSlackMs, "epoll_pwait timeout");
    CALL(c, "epoll_wait maxevents 0", epoll_wait(ep, out, 0, 0));
    CALL(c, "epoll_wait on a socket", epoll_wait(p.a, out, 4, 0));
    close(ep);
}

// -- close while another waits (deliberate difference) -------------------------------------------

// The plain-thread half of close_wakes_a_waiting_coroutine_with_ebadf closes an fd that another
// thread is blocked on in recv: a race by definition, made on purpose, since what libc does then
// (the thread stays blocked) is what the scenario records. It has a function of its own so that
// test/tsan.supp names that one race; the coroutine half's close must stay race-free (coho
// orders it after the waiter's park).
__attribute__((noinline)) int close_racing_a_blocked_thread(int fd)
{
    int rc = close(fd);
    __asm__ __volatile__("" ::: "memory"); // no tail call: this frame stays in TSan's report
    return rc;
}

void close_wakes_a_waiting_coroutine_with_ebadf(Ctx &c)
{
    Fds p;
    tcp_pair(c, p);
    int a = p.a;
    std::atomic<bool> returned{false};
    std::atomic<long long> rv{0};
    std::atomic<int> err{0};
    c.go([&, a] {
        char buf[8];
        errno = 0;
        rv = recv(a, buf, sizeof(buf), 0);
        err = errno;
        returned = true;
    });
    c.nap(kLateMs); // the waiter parks (or blocks) in recv
    CALL(c, "close", c.in_coho() ? close(a) : close_racing_a_blocked_thread(a));
    p.a = -1;
    c.nap(kLateMs);
    bool woke = returned.load();
    if (c.in_coho()) {
        EXPECT_TRUE(woke) << "close must wake a coroutine waiting on the fd at once";
        c.join_actors();
        EXPECT_EQ(rv.load(), -1);
        EXPECT_EQ(err.load(), EBADF) << "got " << errname(err.load());
    } else {
        EXPECT_FALSE(woke) << "libc leaves a thread blocked in recv when another closes the fd";
        EXPECT_EQ(shutdown(p.b, SHUT_RDWR), 0); // the peer's EOF releases it
        c.join_actors();
        EXPECT_EQ(rv.load(), 0);
    }
    // A new fd that takes the closed number is not confused with the old one.
    int s = CALLFD(c, "socket", socket(AF_INET, SOCK_STREAM, 0));
    note_flags(c, "F_GETFL new fd", s);
    close(s);
}

void dup2_over_an_fd_another_waits_on_wakes_it_with_ebadf(Ctx &c)
{
    Fds p, q;
    tcp_pair(c, p);
    tcp_pair(c, q);
    int a = p.a;
    std::atomic<bool> returned{false};
    std::atomic<long long> rv{0};
    std::atomic<int> err{0};
    c.go([&, a] {
        char buf[8];
        errno = 0;
        rv = recv(a, buf, sizeof(buf), 0);
        err = errno;
        returned = true;
    });
    c.nap(kLateMs);
    CALLFD(c, "dup2 over the waited fd", dup2(q.a, a));
    c.nap(kLateMs);
    bool woke = returned.load();
    if (c.in_coho()) {
        EXPECT_TRUE(woke) << "dup2 over an fd a coroutine waits on must wake it at once";
        c.join_actors();
        EXPECT_EQ(rv.load(), -1);
        EXPECT_EQ(err.load(), EBADF) << "got " << errname(err.load());
    } else {
        EXPECT_FALSE(woke) << "libc leaves a thread blocked on the file it was reading";
        EXPECT_EQ(shutdown(p.b, SHUT_RDWR), 0); // the old file's peer releases it
        c.join_actors();
        EXPECT_EQ(rv.load(), 0);
    }
    put(q.b, "new");
    char buf[8];
    long long n = CALL(c, "recv on the new file", recv(a, buf, sizeof(buf), 0));
    c.bytes("data", buf, n);
}

void cancelling_a_parked_recv_fails_it_with_ecanceled(Ctx &c)
{
    Fds p;
    tcp_pair(c, p);
    int a = p.a;
    std::atomic<long long> rv{0};
    std::atomic<int> err{0};
    uint64_t id = c.go([&, a] {
        char buf[8];
        errno = 0;
        rv = recv(a, buf, sizeof(buf), 0);
        err = errno;
    });
    c.nap(kLateMs);
    if (c.in_coho()) {
        EXPECT_EQ(api().cancel(id), 0);
        c.join_actors();
        EXPECT_EQ(rv.load(), -1);
        EXPECT_EQ(err.load(), ECANCELED) << "got " << errname(err.load());
    } else {
        put(p.b, "data"); // threads have no such cancellation: the data releases it
        c.join_actors();
        EXPECT_EQ(rv.load(), 4);
    }
}

// -- dup family
// ------------------------------------------------------------------------------------

void dup_shares_the_o_nonblock_view(Ctx &c)
{
    Fds p;
    tcp_pair(c, p);
    int d = CALLFD(c, "dup", dup(p.a));
    long long fl = CALL(c, "F_GETFL dup", fcntl(d, F_GETFL));
    CALL(c, "F_SETFL O_NONBLOCK on dup", fcntl(d, F_SETFL, static_cast<int>(fl) | O_NONBLOCK));
    note_flags(c, "F_GETFL original", p.a);
    char buf[8];
    int64_t m0 = now_ms();
    CALL(c, "recv original", recv(p.a, buf, sizeof(buf), 0));
    c.expect_took(m0, 0, kFastMs, "recv on a dup whose twin is non-blocking");
    CALL(c, "F_SETFL 0 on original", fcntl(p.a, F_SETFL, static_cast<int>(fl) & ~O_NONBLOCK));
    note_flags(c, "F_GETFL dup", d);
    int b = p.b;
    c.later(kLateMs, [b] { put(b, "dup"); });
    uint64_t t0 = c.tick();
    long long n = CALL(c, "recv dup", recv(d, buf, sizeof(buf), 0));
    c.bytes("data", buf, n);
    c.expect_parked(t0, "recv on a dup");
    CALL(c, "close dup", close(d));
    CALL(c, "send original", send(p.a, "o", 1, 0));
}

void f_dupfd_shares_the_o_nonblock_view(Ctx &c)
{
    Fds p;
    tcp_pair(c, p);
    int d = CALLFD(c, "F_DUPFD_CLOEXEC", fcntl(p.a, F_DUPFD_CLOEXEC, 100));
    c.note(std::string("dup >= 100: ") + (d >= 100 ? "yes" : "no"));
    CALL(c, "F_GETFD", fcntl(d, F_GETFD));
    int on = 1;
    CALL(c, "FIONBIO 1 on original", ioctl(p.a, FIONBIO, &on));
    note_flags(c, "F_GETFL dup", d);
    char buf[8];
    CALL(c, "recv dup", recv(d, buf, sizeof(buf), 0));
    close(d);
}

void dup2_over_an_adopted_fd_follows_the_new_file(Ctx &c)
{
    Fds p, q;
    tcp_pair(c, p);
    tcp_pair(c, q);
    put(p.b, "old");
    char buf[8];
    long long n = CALL(c, "recv old", recv(p.a, buf, sizeof(buf), 0));
    c.bytes("data", buf, n);
    long long fl = fcntl(q.a, F_GETFL);
    CALL(c, "F_SETFL O_NONBLOCK on the new file",
         fcntl(q.a, F_SETFL, static_cast<int>(fl) | O_NONBLOCK));
    long long r = CALLFD(c, "dup2 over it", dup2(q.a, p.a));
    c.note(std::string("dup2 returned the target: ") + (r == p.a ? "yes" : "no"));
    note_flags(c, "F_GETFL target", p.a);
    CALL(c, "recv target (non-blocking now)", recv(p.a, buf, sizeof(buf), 0));
    CALL(c, "F_SETFL 0 via target", fcntl(p.a, F_SETFL, static_cast<int>(fl) & ~O_NONBLOCK));
    note_flags(c, "F_GETFL new file", q.a);
    int d = q.b;
    c.later(kLateMs, [d] { put(d, "new"); });
    uint64_t t0 = c.tick();
    n = CALL(c, "recv target", recv(p.a, buf, sizeof(buf), 0));
    c.bytes("data", buf, n);
    c.expect_parked(t0, "recv after dup2");
    CALLFD(c, "dup2 onto itself", dup2(p.a, p.a));
    CALL(c, "dup2 to a bad fd", dup2(p.a, -1));
}

void dup3_sets_o_cloexec_and_rejects_same_fd(Ctx &c)
{
    Fds p, q;
    tcp_pair(c, p);
    tcp_pair(c, q);
    CALLFD(c, "dup3(O_CLOEXEC)", dup3(q.a, p.a, O_CLOEXEC));
    CALL(c, "F_GETFD", fcntl(p.a, F_GETFD));
    CALL(c, "dup3 same fd", dup3(p.a, p.a, 0));
    CALL(c, "dup3 bad flags", dup3(q.a, p.a, 0x4));
    put(q.b, "3");
    char buf[4];
    long long n = CALL(c, "recv", recv(p.a, buf, sizeof(buf), 0));
    c.bytes("data", buf, n);
}

// -- vectors, datagrams, ancillary data -----------------------------------------------------------

void readv_and_writev_scatter_and_gather(Ctx &c)
{
    Fds p;
    tcp_pair(c, p);
    int b = p.b;
    c.later(kLateMs, [b] {
        char x[] = "hello", y[] = "-wide-", z[] = "world!!";
        iovec out[3] = {{x, 5}, {y, 6}, {z, 7}};
        EXPECT_EQ(writev(b, out, 3), 18);
    });
    char h[4], t[20];
    iovec in[2] = {{h, sizeof(h)}, {t, sizeof(t)}};
    uint64_t t0 = c.tick();
    long long n = CALL(c, "readv", readv(p.a, in, 2));
    c.expect_parked(t0, "readv");
    c.bytes("head", h, n < 4 ? n : 4);
    c.bytes("tail", t, n > 4 ? n - 4 : 0);
    char u[] = "abc", v[] = "defg";
    iovec out[2] = {{u, 3}, {v, 4}};
    CALL(c, "writev", writev(p.a, out, 2));
    char back[16];
    n = CALL(c, "peer recv", recv(p.b, back, sizeof(back), 0));
    c.bytes("peer data", back, n);
    CALL(c, "writev 0 iovecs", writev(p.a, out, 0));
}

void udp_recvfrom_parks_and_reports_the_sender(Ctx &c)
{
    int u[2];
    sockaddr_in addrs[2];
    ASSERT_EQ(coho_lb_udp_pair(u, addrs), 0);
    int from_fd = u[1];
    sockaddr_in to = addrs[0];
    c.later(kLateMs, [from_fd, to] {
        EXPECT_EQ(
            sendto(from_fd, "dgram-1", 7, 0, reinterpret_cast<const sockaddr *>(&to), sizeof(to)),
            7);
    });
    char buf[64];
    sockaddr_in from{};
    socklen_t len = sizeof(from);
    uint64_t t0 = c.tick();
    long long n =
        CALL(c, "recvfrom",
             recvfrom(u[0], buf, sizeof(buf), 0, reinterpret_cast<sockaddr *>(&from), &len));
    c.expect_parked(t0, "recvfrom");
    c.bytes("data", buf, n);
    c.note("addrlen " + std::to_string(len) +
           " from the sender: " + (from.sin_port == addrs[1].sin_port ? "yes" : "no"));
    CALL(c, "sendto back", sendto(u[0], "reply", 5, 0, reinterpret_cast<sockaddr *>(&from), len));
    n = CALL(c, "recv reply", recv(u[1], buf, sizeof(buf), 0));
    c.bytes("reply", buf, n);
    CALL(c, "sendto bad addrlen", sendto(u[0], "x", 1, 0, reinterpret_cast<sockaddr *>(&from), 1));
    set_timeo(c, u[0], SO_RCVTIMEO, kTimeoutMs);
    int64_t m0 = now_ms();
    CALL(c, "recvfrom times out", recvfrom(u[0], buf, sizeof(buf), 0, nullptr, nullptr));
    c.expect_took(m0, kTimeoutMs - 2, kTimeoutMs + kSlackMs, "UDP recvfrom timeout");
    c.join_helpers(); // the helper sent from u[1]: done with it before it is closed
    close(u[0]);
    close(u[1]);
}

void udp_queued_datagrams_are_received_one_by_one(Ctx &c)
{
    int u[2];
    sockaddr_in addrs[2];
    ASSERT_EQ(coho_lb_udp_pair(u, addrs), 0);
    CALL(c, "connect", connect(u[1], reinterpret_cast<sockaddr *>(&addrs[0]), sizeof(addrs[0])));
    int s = u[1];
    // Two datagrams back to back raise a single readiness edge; the second must still be read.
    c.later(kLateMs, [s] {
        EXPECT_EQ(send(s, "one", 3, 0), 3);
        EXPECT_EQ(send(s, "three", 5, 0), 5);
    });
    char buf[64];
    uint64_t t0 = c.tick();
    long long n = CALL(c, "recv", recv(u[0], buf, sizeof(buf), 0));
    c.bytes("first", buf, n);
    c.expect_parked(t0, "recv");
    c.join_helpers();
    n = CALL(c, "recv", recv(u[0], buf, sizeof(buf), 0));
    c.bytes("second", buf, n);
    CALL(c, "send", send(u[1], "0123456789", 10, 0));
    n = CALL(c, "recv(MSG_TRUNC) 4 of 10", recv(u[0], buf, 4, MSG_TRUNC));
    c.bytes("truncated", buf, 4);
    close(u[0]);
    close(u[1]);
}

void recvmsg_and_sendmsg_pass_an_fd_with_scm_rights(Ctx &c)
{
    Fds p;
    unix_pair(c, p);
    int pp[2];
    ASSERT_EQ(pipe(pp), 0);
    int b = p.b, wr = pp[1];
    c.later(kLateMs, [b, wr] {
        char data = 'F';
        iovec iov = {&data, 1};
        alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int))] = {};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = ctl;
        msg.msg_controllen = sizeof(ctl);
        cmsghdr *cm = CMSG_FIRSTHDR(&msg);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &wr, sizeof(int));
        EXPECT_EQ(sendmsg(b, &msg, 0), 1);
    });
    char data = 0;
    iovec iov = {&data, 1};
    alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int))] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctl;
    msg.msg_controllen = sizeof(ctl);
    uint64_t t0 = c.tick();
    CALL(c, "recvmsg", recvmsg(p.a, &msg, 0));
    c.expect_parked(t0, "recvmsg");
    c.bytes("data", &data, 1);
    cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    int got = -1;
    if (cm != nullptr && cm->cmsg_type == SCM_RIGHTS)
        memcpy(&got, CMSG_DATA(cm), sizeof(int));
    c.note(std::string("fd received: ") + (got >= 0 ? "yes" : "no") + " msg_flags " +
           std::to_string(msg.msg_flags));
    if (got >= 0) {
        CALL(c, "write through the received fd", write(got, "via", 3));
        close(got);
    }
    close(pp[1]);
    char buf[8];
    long long n = CALL(c, "read pipe", read(pp[0], buf, sizeof(buf)));
    c.bytes("pipe data", buf, n);
    close(pp[0]);
    // sendmsg with two iovecs, recvmsg into one
    char x[] = "ab", y[] = "cd";
    iovec two[2] = {{x, 2}, {y, 2}};
    msghdr out{};
    out.msg_iov = two;
    out.msg_iovlen = 2;
    CALL(c, "sendmsg", sendmsg(p.a, &out, 0));
    char back[8];
    iovec one = {back, sizeof(back)};
    msghdr in{};
    in.msg_iov = &one;
    in.msg_iovlen = 1;
    n = CALL(c, "recvmsg", recvmsg(p.b, &in, 0));
    c.bytes("data", back, n);
}

// -- name resolution -----------------------------------------------------------------------------

std::string addr_str(const sockaddr *sa)
{
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa->sa_family == AF_INET) {
        auto *in = reinterpret_cast<const sockaddr_in *>(sa);
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        port = ntohs(in->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        auto *in6 = reinterpret_cast<const sockaddr_in6 *>(sa);
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        port = ntohs(in6->sin6_port);
    }
    return std::string(host) + ":" + std::to_string(port);
}

void note_gai(Ctx &c, const char *label, int rc, addrinfo *res)
{
    std::ostringstream os;
    os << label << " -> " << rc;
    for (addrinfo *ai = res; rc == 0 && ai != nullptr; ai = ai->ai_next)
        os << " [" << ai->ai_family << "/" << ai->ai_socktype << "/" << ai->ai_protocol << " "
           << addr_str(ai->ai_addr) << (ai->ai_canonname ? std::string(" ") + ai->ai_canonname : "")
           << "]";
    c.note(os.str());
}

void getaddrinfo_resolves_localhost(Ctx &c)
{
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_CANONNAME;
    addrinfo *res = nullptr;
    int rc = getaddrinfo("localhost", "80", &hints, &res);
    note_gai(c, "getaddrinfo(localhost, 80)", rc, res);
    if (rc == 0)
        freeaddrinfo(res);
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    hints.ai_family = AF_INET;
    res = nullptr;
    rc = getaddrinfo("127.0.0.1", "8080", &hints, &res);
    note_gai(c, "getaddrinfo(127.0.0.1, 8080)", rc, res);
    if (rc == 0)
        freeaddrinfo(res);
    hints = addrinfo{};
    hints.ai_flags = AI_PASSIVE;
    hints.ai_socktype = SOCK_DGRAM;
    res = nullptr;
    rc = getaddrinfo(nullptr, "53", &hints, &res);
    note_gai(c, "getaddrinfo(NULL, 53, passive)", rc, res);
    if (rc == 0)
        freeaddrinfo(res);
}

void getaddrinfo_errors_match(Ctx &c)
{
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo *res = nullptr;
    note_gai(c, "unknown service", getaddrinfo("localhost", "no-such-service-coho", &hints, &res),
             nullptr);
    hints.ai_flags = AI_NUMERICHOST;
    note_gai(c, "AI_NUMERICHOST with a name", getaddrinfo("localhost", "80", &hints, &res),
             nullptr);
    hints = addrinfo{};
    note_gai(c, "no node, no service", getaddrinfo(nullptr, nullptr, &hints, &res), nullptr);
    hints.ai_family = 12345;
    note_gai(c, "bad family", getaddrinfo("localhost", "80", &hints, &res), nullptr);
    hints = addrinfo{};
    hints.ai_flags = 0x7fff0000;
    note_gai(c, "bad flags", getaddrinfo("localhost", "80", &hints, &res), nullptr);
    c.note(std::string("gai_strerror(EAI_NONAME) ") + gai_strerror(EAI_NONAME));
}

void getnameinfo_matches(Ctx &c)
{
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(80);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    char host[NI_MAXHOST] = "", serv[NI_MAXSERV] = "";
    int rc = getnameinfo(reinterpret_cast<sockaddr *>(&sa), sizeof(sa), host, sizeof(host), serv,
                         sizeof(serv), NI_NUMERICHOST | NI_NUMERICSERV);
    c.note("numeric -> " + std::to_string(rc) + " " + host + " " + serv);
    rc = getnameinfo(reinterpret_cast<sockaddr *>(&sa), sizeof(sa), host, sizeof(host), serv,
                     sizeof(serv), 0);
    c.note("names -> " + std::to_string(rc) + " " + host + " " + serv);
    rc = getnameinfo(reinterpret_cast<sockaddr *>(&sa), sizeof(sa), host, 2, nullptr, 0,
                     NI_NUMERICHOST);
    c.note("host buffer too small -> " + std::to_string(rc));
    rc = getnameinfo(reinterpret_cast<sockaddr *>(&sa), 3, host, sizeof(host), nullptr, 0, 0);
    c.note("bad addrlen -> " + std::to_string(rc));
}

std::string hostent_str(const hostent *h)
{
    if (h == nullptr)
        return "NULL";
    std::ostringstream os;
    os << h->h_name << " type " << h->h_addrtype << " len " << h->h_length;
    for (char **a = h->h_addr_list; *a != nullptr; a++) {
        char buf[INET6_ADDRSTRLEN];
        inet_ntop(h->h_addrtype, *a, buf, sizeof(buf));
        os << " " << buf;
    }
    return os.str();
}

void gethostbyname_family_resolves_localhost(Ctx &c)
{
    hostent *h = gethostbyname("localhost");
    c.note("gethostbyname(localhost) " + hostent_str(h));
    h = gethostbyname("127.0.0.1");
    c.note("gethostbyname(127.0.0.1) " + hostent_str(h));
    h = gethostbyname2("localhost", AF_INET);
    c.note("gethostbyname2(localhost, AF_INET) " + hostent_str(h));
    hostent he{}, *res = nullptr;
    int herr = 0;
    std::vector<char> buf(2048);
    int rc = gethostbyname_r("localhost", &he, buf.data(), buf.size(), &res, &herr);
    c.note("gethostbyname_r -> " + std::to_string(rc) + " " + hostent_str(res));
    char tiny[8];
    res = nullptr;
    rc = gethostbyname_r("localhost", &he, tiny, sizeof(tiny), &res, &herr);
    c.note("gethostbyname_r tiny buffer -> " + errname(rc) + " " + hostent_str(res));
    res = nullptr;
    rc = gethostbyname2_r("127.0.0.1", AF_INET, &he, buf.data(), buf.size(), &res, &herr);
    c.note("gethostbyname2_r -> " + std::to_string(rc) + " " + hostent_str(res));
}

// -- sleeping
// --------------------------------------------------------------------------------------

void sleeps_last_their_duration_and_park(Ctx &c)
{
    timespec ts = {0, 50 * 1000000L}, rem = {9, 9};
    uint64_t t0 = c.tick();
    int64_t m0 = now_ms();
    CALL(c, "nanosleep 50 ms", nanosleep(&ts, &rem));
    c.expect_parked(t0, "nanosleep");
    c.expect_took(m0, 48, 50 + kSlackMs, "nanosleep");
    t0 = c.tick();
    m0 = now_ms();
    CALL(c, "usleep 30 ms", usleep(30000));
    c.expect_parked(t0, "usleep");
    c.expect_took(m0, 28, 30 + kSlackMs, "usleep");
    m0 = now_ms();
    CALL(c, "sleep(0)", sleep(0));
    CALL(c, "usleep(0)", usleep(0));
    timespec zero = {0, 0};
    CALL(c, "nanosleep 0", nanosleep(&zero, nullptr));
    c.expect_took(m0, 0, kFastMs, "zero sleeps");
    m0 = now_ms();
    CALL(c, "sleep(1)", sleep(1));
    c.expect_took(m0, 998, 1000 + kSlackMs, "sleep(1)");
}

int64_t mono_us()
{
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

// usleep(200) and a 200 us nanosleep last about 200 us, as libc's do, and are not rounded to a
// millisecond (which every one of them would be with a 1 ms timer tick or a millisecond
// deadline). None may return early; on a loaded machine some may be late, so at least a
// quarter of them must be under 0.6 ms.
void sub_millisecond_sleeps_are_not_rounded_to_a_millisecond(Ctx &c)
{
    constexpr int kRounds = 20, kUs = 200;
    for (int nano = 0; nano < 2; nano++) {
        int early = 0, quick = 0;
        uint64_t t0 = c.tick();
        for (int i = 0; i < kRounds; i++) {
            int64_t a = mono_us();
            int rc;
            if (nano) {
                timespec ts = {0, kUs * 1000L};
                rc = nanosleep(&ts, nullptr);
            } else {
                rc = usleep(kUs);
            }
            int64_t d = mono_us() - a;
            EXPECT_EQ(rc, 0);
            early += d < kUs;
            quick += d < 600;
        }
        const char *what = nano ? "nanosleep 200 us" : "usleep(200)";
        if (c.in_coho())
            c.expect_parked(t0, what);
        EXPECT_EQ(early, 0) << what << " returned early in the " << c.mode_name();
        EXPECT_GE(quick, kRounds / 4) << what << ": only " << quick << " of " << kRounds
                                      << " calls took less than 0.6 ms in the " << c.mode_name();
        c.note(std::string(what) + " x20: none early, a quarter or more under 0.6 ms");
    }
}

void nanosleep_rejects_a_bad_timespec(Ctx &c)
{
    timespec neg_ns = {0, -1}, big_ns = {0, 1000000000L}, neg_s = {-1, 0};
    CALL(c, "nanosleep tv_nsec -1", nanosleep(&neg_ns, nullptr));
    CALL(c, "nanosleep tv_nsec 1e9", nanosleep(&big_ns, nullptr));
    CALL(c, "nanosleep tv_sec -1", nanosleep(&neg_s, nullptr));
}

// -- bad input
// -------------------------------------------------------------------------------------

void bad_fds_return_ebadf(Ctx &c)
{
    char buf[8] = {0};
    const int bad[] = {-1, 1 << 20, 19999};
    for (int fd : bad) {
        std::string tag = " fd " + std::to_string(fd);
        c.note("--" + tag);
        CALL(c, "read", read(fd, buf, sizeof(buf)));
        CALL(c, "write", write(fd, buf, sizeof(buf)));
        CALL(c, "recv", recv(fd, buf, sizeof(buf), 0));
        CALL(c, "send", send(fd, buf, sizeof(buf), 0));
        CALL(c, "recvfrom", recvfrom(fd, buf, sizeof(buf), 0, nullptr, nullptr));
        CALL(c, "sendto", sendto(fd, buf, sizeof(buf), 0, nullptr, 0));
        iovec iov = {buf, sizeof(buf)};
        CALL(c, "readv", readv(fd, &iov, 1));
        CALL(c, "writev", writev(fd, &iov, 1));
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        CALL(c, "recvmsg", recvmsg(fd, &msg, 0));
        CALL(c, "sendmsg", sendmsg(fd, &msg, 0));
        CALLFD(c, "accept", accept(fd, nullptr, nullptr));
        CALLFD(c, "accept4", accept4(fd, nullptr, nullptr, 0));
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        CALL(c, "connect", connect(fd, reinterpret_cast<sockaddr *>(&sa), sizeof(sa)));
        CALL(c, "shutdown", shutdown(fd, SHUT_RDWR));
        CALL(c, "fcntl F_GETFL", fcntl(fd, F_GETFL));
        CALL(c, "fcntl F_SETFL", fcntl(fd, F_SETFL, O_NONBLOCK));
        int on = 1;
        CALL(c, "ioctl FIONBIO", ioctl(fd, FIONBIO, &on));
        int v = 0;
        socklen_t len = sizeof(v);
        CALL(c, "getsockopt", getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &len));
        CALL(c, "setsockopt", setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)));
        CALLFD(c, "dup", dup(fd));
        CALLFD(c, "dup2", dup2(fd, 50));
        CALLFD(c, "dup3", dup3(fd, 50, 0));
        epoll_event ev[2];
        CALL(c, "epoll_wait", epoll_wait(fd, ev, 2, 0));
        pollfd pfd = {fd, POLLIN, 0};
        CALL(c, "poll", poll(&pfd, 1, 0));
        c.note("revents " + std::to_string(pfd.revents));
        CALL(c, "close", close(fd));
    }
    int s = socket(AF_INET, SOCK_STREAM, 0);
    CALLFD(c, "dup2 to a huge fd", dup2(s, 1 << 20));
    close(s);
}

void closed_fd_returns_ebadf(Ctx &c)
{
    Fds p;
    tcp_pair(c, p);
    put(p.b, "x");
    int a = p.a;
    p.a = -1;
    CALL(c, "close", close(a));
    char buf[4];
    CALL(c, "recv", recv(a, buf, sizeof(buf), 0));
    CALL(c, "send", send(a, "x", 1, 0));
    CALL(c, "close again", close(a));
    pollfd pfd = {a, POLLIN, 0};
    CALL(c, "poll", poll(&pfd, 1, 0));
    c.note("revents " + std::to_string(pfd.revents));
    fd_set r;
    FD_ZERO(&r);
    FD_SET(a, &r);
    timeval tv = {0, 0};
    CALL(c, "select", select(a + 1, &r, nullptr, nullptr, &tv));
}

void null_buffers_return_efault(Ctx &c)
{
    Fds p;
    tcp_pair(c, p);
    put(p.b, "abcdef");
    char *volatile null_buf = nullptr; // hides NULL from the compiler's nonnull checks
    pollfd pfd = {p.a, POLLIN, 0};
    CALL(c, "poll until readable", poll(&pfd, 1, 2000));
    CALL(c, "recv(NULL)", recv(p.a, null_buf, 4, 0));
    CALL(c, "read(NULL)", read(p.a, null_buf, 4));
    CALL(c, "recvfrom(NULL)", recvfrom(p.a, null_buf, 4, 0, nullptr, nullptr));
    char buf[16];
    long long n = CALL(c, "recv after EFAULT", recv(p.a, buf, sizeof(buf), 0));
    c.bytes("data", buf, n);
    CALL(c, "send(NULL)", send(p.a, null_buf, 4, MSG_NOSIGNAL));
    CALL(c, "write(NULL)", write(p.a, null_buf, 4));
    CALL(c, "readv(NULL iov)", readv(p.a, reinterpret_cast<iovec *>(null_buf), 1));
    CALL(c, "writev(NULL iov)", writev(p.a, reinterpret_cast<iovec *>(null_buf), 1));
    CALL(c, "recvmsg(NULL)", recvmsg(p.a, reinterpret_cast<msghdr *>(null_buf), 0));
    CALL(c, "sendmsg(NULL)", sendmsg(p.a, reinterpret_cast<msghdr *>(null_buf), 0));
    CALL(c, "poll(NULL, 1)", poll(reinterpret_cast<pollfd *>(null_buf), 1, 0));
    int s = socket(AF_INET, SOCK_STREAM, 0);
    CALL(c, "connect(NULL)", connect(s, reinterpret_cast<sockaddr *>(null_buf), 16));
    close(s);
    socklen_t len = 4;
    CALL(c, "getsockopt(NULL)", getsockopt(p.a, SOL_SOCKET, SO_ERROR, null_buf, &len));
    CALL(c, "setsockopt SO_RCVTIMEO NULL", setsockopt(p.a, SOL_SOCKET, SO_RCVTIMEO, null_buf, 16));
    int ep = epoll_create1(0);
    CALL(c, "epoll_wait(NULL)", epoll_wait(ep, reinterpret_cast<epoll_event *>(null_buf), 1, 0));
    close(ep);
    CALL(c, "nanosleep(NULL)", nanosleep(reinterpret_cast<timespec *>(null_buf), nullptr));
    fd_set *volatile bad_set = reinterpret_cast<fd_set *>(8);
    CALL(c, "select bad fd_set", select(1, bad_set, nullptr, nullptr, nullptr));
}

void huge_and_negative_lengths_match_libc(Ctx &c)
{
    Fds p;
    tcp_pair(c, p);
    put(p.b, "hello");
    pollfd pfd = {p.a, POLLIN, 0};
    CALL(c, "poll until readable", poll(&pfd, 1, 2000));
    std::vector<char> heap(64);
    char *volatile buf = heap.data(); // of unknown size to the compiler: plain, not _chk, calls
    CALL(c, "read SIZE_MAX", read(p.a, buf, opaque(SIZE_MAX)));
    long long n = CALL(c, "recv (size_t)-1", recv(p.a, buf, opaque(static_cast<size_t>(-1)), 0));
    c.bytes("data", buf, n);
    iovec big[2] = {{buf, SSIZE_MAX}, {buf, 10}};
    CALL(c, "readv total > SSIZE_MAX", readv(p.a, big, 2));
    CALL(c, "writev total > SSIZE_MAX", writev(p.a, big, 2));
    iovec one = {buf, 1};
    CALL(c, "readv iovcnt -1", readv(p.a, &one, opaque(-1)));
    CALL(c, "readv iovcnt 1025", readv(p.a, &one, opaque(1025)));
    CALL(c, "writev iovcnt -1", writev(p.a, &one, opaque(-1)));
    socklen_t neg = static_cast<socklen_t>(-1);
    int v = 0;
    CALL(c, "getsockopt optlen -1", getsockopt(p.a, SOL_SOCKET, SO_TYPE, &v, &neg));
    CALL(c, "setsockopt optlen -1", setsockopt(p.a, SOL_SOCKET, SO_REUSEADDR, &v, neg));
    sockaddr_in sa{};
    CALL(c, "connect addrlen -1",
         connect(p.a, reinterpret_cast<sockaddr *>(&sa), static_cast<socklen_t>(-1)));
    epoll_event ev;
    int ep = epoll_create1(0);
    CALL(c, "epoll_wait maxevents -1", epoll_wait(ep, &ev, opaque(-1), 0));
    close(ep);
    CALL(c, "socket bad protocol", socket(AF_INET, SOCK_STREAM, 999));
    int sv[2];
    CALL(c, "socketpair AF_INET", socketpair(AF_INET, SOCK_STREAM, 0, sv));
    CALL(c, "fcntl bad cmd", fcntl(p.a, 99999));
}

void wrong_fd_types_return_enotsock_and_friends(Ctx &c)
{
    int pp[2];
    ASSERT_EQ(pipe(pp), 0);
    char buf[8] = {0};
    CALL(c, "recv on a pipe", recv(pp[0], buf, sizeof(buf), 0));
    CALL(c, "send on a pipe", send(pp[1], buf, 1, 0));
    CALLFD(c, "accept on a pipe", accept(pp[0], nullptr, nullptr));
    int on = 1;
    CALL(c, "setsockopt on a pipe", setsockopt(pp[0], SOL_SOCKET, SO_RCVTIMEO, &on, sizeof(on)));
    CALL(c, "shutdown on a pipe", shutdown(pp[0], SHUT_RD));
    CALL(c, "read from the write end", read(pp[1], buf, sizeof(buf)));
    CALL(c, "write to the read end", write(pp[0], buf, 1));
    char path[] = "/tmp/coho-conf-XXXXXX";
    int f = mkstemp(path);
    ASSERT_GE(f, 0);
    unlink(path);
    CALL(c, "recv on a file", recv(f, buf, sizeof(buf), 0));
    CALL(c, "connect on a file", connect(f, nullptr, 0));
    CALL(c, "FIONBIO on a file", ioctl(f, FIONBIO, &on));
    note_flags(c, "F_GETFL file", f);
    close(f);
    close(pp[0]);
    close(pp[1]);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    CALL(c, "recv unconnected", recv(s, buf, sizeof(buf), 0));
    CALL(c, "read unconnected", read(s, buf, sizeof(buf)));
    CALL(c, "send unconnected", send(s, buf, 1, MSG_NOSIGNAL));
    CALLFD(c, "accept not listening", accept(s, nullptr, nullptr));
    sockaddr_in peer{};
    socklen_t len = sizeof(peer);
    CALL(c, "getpeername unconnected", getpeername(s, reinterpret_cast<sockaddr *>(&peer), &len));
    close(s);
}

// -- _FORTIFY_SOURCE variants
// ------------------------------------------------------------------------

void fortify_read_chk_parks_until_data(Ctx &c)
{
    Fds p;
    tcp_pair(c, p);
    int b = p.b;
    c.later(kLateMs, [b] { put(b, "chk1"); });
    char buf[32];
    uint64_t t0 = c.tick();
    long long n = CALL(c, "read (fortified)", read(p.a, buf, runtime_len(16)));
    c.bytes("data", buf, n);
    c.expect_parked(t0, "__read_chk");
    c.later(kLateMs, [b] { put(b, "chk2"); });
    t0 = c.tick();
    n = CALL(c, "__read_chk", __read_chk(p.a, buf, runtime_len(16), sizeof(buf)));
    c.bytes("data", buf, n);
    c.expect_parked(t0, "__read_chk");
}

void fortify_recv_chk_and_recvfrom_chk_park_until_data(Ctx &c)
{
    Fds p;
    tcp_pair(c, p);
    int b = p.b;
    c.later(kLateMs, [b] { put(b, "rchk"); });
    char buf[32];
    uint64_t t0 = c.tick();
    long long n = CALL(c, "recv (fortified)", recv(p.a, buf, runtime_len(16), 0));
    c.bytes("data", buf, n);
    c.expect_parked(t0, "__recv_chk");
    c.later(kLateMs, [b] { put(b, "rchk2"); });
    t0 = c.tick();
    n = CALL(c, "__recv_chk", __recv_chk(p.a, buf, runtime_len(16), sizeof(buf), 0));
    c.bytes("data", buf, n);
    c.expect_parked(t0, "__recv_chk");
    int u[2];
    sockaddr_in addrs[2];
    ASSERT_EQ(coho_lb_udp_pair(u, addrs), 0);
    int s = u[1];
    sockaddr_in to = addrs[0];
    c.later(kLateMs, [s, to] {
        EXPECT_EQ(sendto(s, "udp", 3, 0, reinterpret_cast<const sockaddr *>(&to), sizeof(to)), 3);
    });
    t0 = c.tick();
    n = CALL(c, "recvfrom (fortified)", recvfrom(u[0], buf, runtime_len(16), 0, nullptr, nullptr));
    c.bytes("data", buf, n);
    c.expect_parked(t0, "__recvfrom_chk");
    c.later(kLateMs, [s, to] {
        EXPECT_EQ(sendto(s, "udp2", 4, 0, reinterpret_cast<const sockaddr *>(&to), sizeof(to)), 4);
    });
    t0 = c.tick();
    n = CALL(c, "__recvfrom_chk",
             __recvfrom_chk(u[0], buf, runtime_len(16), sizeof(buf), 0, nullptr, nullptr));
    c.bytes("data", buf, n);
    c.expect_parked(t0, "__recvfrom_chk");
    c.join_helpers(); // the helpers sent from u[1]: done with it before it is closed
    close(u[0]);
    close(u[1]);
}

void fortify_poll_chk_and_ppoll_chk_park_until_ready(Ctx &c)
{
    Fds p;
    tcp_pair(c, p);
    int b = p.b;
    pollfd pfd[2] = {{p.a, POLLIN, 0}, {-1, 0, 0}};
    c.later(kLateMs, [b] { put(b, "1"); });
    uint64_t t0 = c.tick();
    CALL(c, "poll (fortified)", poll(pfd, runtime_len(1), 5000));
    c.expect_parked(t0, "__poll_chk");
    c.note("revents " + std::to_string(pfd[0].revents));
    char buf[8];
    CALL(c, "recv", recv(p.a, buf, sizeof(buf), 0));
    c.later(kLateMs, [b] { put(b, "2"); });
    t0 = c.tick();
    CALL(c, "__poll_chk", __poll_chk(pfd, runtime_len(1), 5000, sizeof(pfd)));
    c.expect_parked(t0, "__poll_chk");
    CALL(c, "recv", recv(p.a, buf, sizeof(buf), 0));
    timespec ts = {5, 0};
    c.later(kLateMs, [b] { put(b, "3"); });
    t0 = c.tick();
    CALL(c, "ppoll (fortified)", ppoll(pfd, runtime_len(1), &ts, nullptr));
    c.expect_parked(t0, "__ppoll_chk");
    CALL(c, "recv", recv(p.a, buf, sizeof(buf), 0));
    c.later(kLateMs, [b] { put(b, "4"); });
    t0 = c.tick();
    CALL(c, "__ppoll_chk", __ppoll_chk(pfd, runtime_len(1), &ts, nullptr, sizeof(pfd)));
    c.expect_parked(t0, "__ppoll_chk");
    c.note("revents " + std::to_string(pfd[0].revents));
}

// -- files, errno
// ------------------------------------------------------------------------------------

void regular_file_io_passes_through(Ctx &c)
{
    char path[] = "/tmp/coho-conf-XXXXXX";
    int f = mkstemp(path);
    ASSERT_GE(f, 0);
    std::vector<char> data(10000);
    for (size_t i = 0; i < data.size(); i++)
        data[i] = static_cast<char>('a' + i % 26);
    CALL(c, "write", write(f, data.data(), data.size()));
    CALL(c, "lseek", lseek(f, 0, SEEK_SET));
    std::vector<char> back(20000);
    long long n = CALL(c, "read", read(f, back.data(), back.size()));
    c.bytes("data", back.data(), n);
    CALL(c, "read at eof", read(f, back.data(), back.size()));
    note_flags(c, "F_GETFL", f);
    pollfd pfd = {f, POLLIN | POLLOUT, 0};
    CALL(c, "poll a file", poll(&pfd, 1, 1000));
    c.note("revents " + std::to_string(pfd.revents));
    iovec iov[2] = {{back.data(), 3}, {back.data() + 3, 4}};
    CALL(c, "lseek", lseek(f, 26, SEEK_SET));
    CALL(c, "readv", readv(f, iov, 2));
    c.bytes("data", back.data(), 7);
    CALL(c, "close", close(f));
    unlink(path);
}

void errno_is_untouched_by_a_successful_parked_call(Ctx &c)
{
    Fds p;
    tcp_pair(c, p);
    int b = p.b;
    c.later(kLateMs, [b] { put(b, "ok"); });
    char buf[8];
    errno = ERANGE;
    ssize_t n = recv(p.a, buf, sizeof(buf), 0);
    int e = errno;
    c.note("recv -> " + std::to_string(n) + ", errno after: " + errname(e));
    errno = ENOTTY;
    timespec ts = {0, 20 * 1000000L};
    int r = nanosleep(&ts, nullptr);
    e = errno;
    c.note("nanosleep -> " + std::to_string(r) + ", errno after: " + errname(e));
}

// ================================ the table ======================================================

enum class Kind { same, deliberate };

struct Scenario {
    const char *name;
    void (*fn)(Ctx &);
    Kind kind;
    const char *why; // for deliberate differences: DESIGN.md's rule
};

// gtest prints a parameter with this (the scenario's name, not its bytes).
void PrintTo(const Scenario &s, std::ostream *os)
{
    *os << s.name;
}

#define SAME(fn)                \
    Scenario                    \
    {                           \
#        fn, fn, Kind::same, "" \
    }
#define DELIBERATE(fn, why)            \
    Scenario                           \
    {                                  \
#        fn, fn, Kind::deliberate, why \
    }

const Scenario kScenarios[] = {
    SAME(recv_parks_until_the_peer_sends),
    SAME(recv_times_out_with_eagain_after_so_rcvtimeo),
    SAME(read_and_readv_honour_so_rcvtimeo),
    SAME(zero_so_rcvtimeo_means_no_timeout),
    SAME(so_rcvtimeo_and_so_sndtimeo_read_back_as_set),
    SAME(send_times_out_on_a_full_buffer_with_so_sndtimeo),
    SAME(blocking_send_waits_until_the_reader_drains),
    SAME(write_of_8_mib_to_a_slow_reader_returns_every_byte),
    SAME(connect_to_a_refused_port_reports_econnrefused),
    SAME(nonblocking_connect_to_a_refused_port_reports_it_through_so_error),
    SAME(connect_to_a_black_hole_with_so_sndtimeo_gives_einprogress_then_ealready),
    SAME(blocking_connect_to_a_listener_succeeds_and_reconnect_is_eisconn),
    SAME(user_o_nonblock_recv_returns_eagain_at_once),
    SAME(user_o_nonblock_send_on_a_full_buffer_returns_eagain),
    SAME(f_getfl_shows_the_users_view_through_adoption_and_parking),
    SAME(ioctl_fionbio_sets_and_clears_the_users_nonblocking_view),
    SAME(sock_nonblock_socketpair_returns_eagain),
    SAME(sock_nonblock_connect_returns_einprogress_then_completes),
    SAME(accept4_flags_apply_to_the_accepted_socket),
    SAME(accept_parks_until_a_client_connects),
    SAME(accept_times_out_with_so_rcvtimeo),
    SAME(peer_reset_wakes_a_parked_recv_with_econnreset),
    SAME(send_after_a_peer_reset_gives_econnreset_then_epipe),
    SAME(half_close_delivers_data_then_eof_every_time),
    SAME(shutdown_write_gives_the_peer_eof_and_send_epipe),
    SAME(zero_length_read_on_a_drained_socket_returns_zero),
    SAME(a_read_stopped_by_urgent_data_is_not_a_drained_socket),
    SAME(huge_timeouts_mean_for_ever),
    SAME(msg_waitall_collects_every_byte),
    SAME(msg_waitall_returns_a_short_count_at_eof),
    SAME(msg_waitall_with_so_rcvtimeo_returns_the_partial_count),
    SAME(msg_peek_parks_and_leaves_the_data_queued),
    SAME(msg_dontwait_returns_eagain_on_a_blocking_socket),
    DELIBERATE(a_signal_does_not_interrupt_a_parked_recv,
               "a signal does not interrupt a parked call (as if SA_RESTART were set)"),
    SAME(pipe_read_is_adopted_lazily_and_parks),
    SAME(pipe_write_to_a_full_pipe_parks_until_drained),
    SAME(eventfd_read_is_adopted_lazily_and_parks),
    SAME(stdin_pipe_is_never_switched_to_nonblocking),
    SAME(poll_with_1000_fds_reports_exact_revents),
    SAME(poll_with_1000_fds_parks_until_one_is_ready),
    SAME(poll_with_zero_fds_sleeps_for_the_timeout),
    SAME(poll_times_out_with_zero_and_no_revents),
    SAME(poll_reports_pollhup_and_pollrdhup_after_peer_close),
    SAME(select_reports_exact_sets_and_parks),
    SAME(select_timeout_returns_zero_and_updates_the_timeval),
    SAME(ppoll_waits_with_a_timespec),
    SAME(epoll_wait_on_a_user_epoll_fd_parks_until_ready),
    SAME(epoll_wait_and_epoll_pwait_time_out_with_zero),
    DELIBERATE(close_wakes_a_waiting_coroutine_with_ebadf,
               "close of an fd another coroutine waits on wakes it with EBADF"),
    DELIBERATE(dup2_over_an_fd_another_waits_on_wakes_it_with_ebadf,
               "dup2 closes the old file of the fd: like close, it wakes its waiters with EBADF"),
    DELIBERATE(cancelling_a_parked_recv_fails_it_with_ecanceled,
               "cancelling a parked coroutine makes its call fail with ECANCELED"),
    SAME(dup_shares_the_o_nonblock_view),
    SAME(f_dupfd_shares_the_o_nonblock_view),
    SAME(dup2_over_an_adopted_fd_follows_the_new_file),
    SAME(dup3_sets_o_cloexec_and_rejects_same_fd),
    SAME(readv_and_writev_scatter_and_gather),
    SAME(udp_recvfrom_parks_and_reports_the_sender),
    SAME(udp_queued_datagrams_are_received_one_by_one),
    SAME(recvmsg_and_sendmsg_pass_an_fd_with_scm_rights),
    SAME(getaddrinfo_resolves_localhost),
    SAME(getaddrinfo_errors_match),
    SAME(getnameinfo_matches),
    SAME(gethostbyname_family_resolves_localhost),
    SAME(sleeps_last_their_duration_and_park),
    SAME(sub_millisecond_sleeps_are_not_rounded_to_a_millisecond),
    SAME(nanosleep_rejects_a_bad_timespec),
    SAME(bad_fds_return_ebadf),
    SAME(closed_fd_returns_ebadf),
    SAME(null_buffers_return_efault),
    SAME(huge_and_negative_lengths_match_libc),
    SAME(wrong_fd_types_return_enotsock_and_friends),
    SAME(fortify_read_chk_parks_until_data),
    SAME(fortify_recv_chk_and_recvfrom_chk_park_until_data),
    SAME(fortify_poll_chk_and_ppoll_chk_park_until_ready),
    SAME(regular_file_io_passes_through),
    SAME(errno_is_untouched_by_a_successful_parked_call),
};

// ================================ running a scenario ============================================

// Ends the process with a message if a run is still going after kWatchdogS: a call that should
// return is stuck (a thread blocked, or a coroutine never woken).
class Watchdog {
public:
    Watchdog(const char *scenario, const char *mode)
        : thread_([this, scenario, mode] {
              std::unique_lock<std::mutex> lk(m_);
              if (!cv_.wait_for(lk, std::chrono::seconds(kWatchdogS), [this] { return done_; })) {
                  fprintf(stderr, "FATAL: scenario %s still running in the %s after %d s\n",
                          scenario, mode, kWatchdogS);
                  fflush(stderr);
                  std::_Exit(3);
              }
          })
    {}
    ~Watchdog()
    {
        {
            std::lock_guard<std::mutex> lk(m_);
            done_ = true;
        }
        cv_.notify_one();
        thread_.join();
    }

private:
    std::mutex m_;
    std::condition_variable cv_;
    bool done_ = false;
    std::thread thread_;
};

struct Run {
    const Scenario *s;
    Ctx *c;
};

void run_scenario_body(const Scenario &s, Ctx &c)
{
    s.fn(c);
    c.join_actors();
    c.join_helpers();
}

void run_in_thread(const Scenario &s, Ctx &c)
{
    std::thread t([&] { run_scenario_body(s, c); });
    t.join();
}

void ticker_main(void *p)
{
    auto *c = static_cast<Ctx *>(p);
    while (!c->done) {
        errno = EDOM; // must not leak into the scenario coroutine (errno survives switches)
        api().sleep_ms(1);
        c->ticks++;
    }
}

void scenario_main(void *p)
{
    auto *r = static_cast<Run *>(p);
    run_scenario_body(*r->s, *r->c);
    r->c->done = true;
}

void run_in_coroutine(const Scenario &s, Ctx &c)
{
    ASSERT_TRUE(api().ok) << "the coho_* functions are not loaded: run this binary with "
                             "LD_PRELOAD=libcoho_preload.so";
    coho_sched_opts_t o;
    api().opts_init(&o);
    o.stack_size = 1u << 20;
    coho_sched_t *sched = api().create(&o);
    ASSERT_NE(sched, nullptr) << "coho_sched_create: " << errname(errno);
    c.sched = sched;
    Run r{&s, &c};
    EXPECT_NE(api().spawn(sched, ticker_main, &c), 0u);
    EXPECT_NE(api().spawn(sched, scenario_main, &r), 0u);
    EXPECT_EQ(api().run(sched), 0) << errname(errno);
    EXPECT_TRUE(c.done.load()) << "the scenario coroutine did not finish";
    api().destroy(sched);
}

std::string side_by_side(const Ctx &t, const Ctx &k)
{
    std::ostringstream os;
    size_t n = std::max(t.trace.size(), k.trace.size());
    os << "step | plain thread (libc) | coroutine (coho)\n";
    for (size_t i = 0; i < n; i++) {
        const std::string a = i < t.trace.size() ? t.trace[i] : "(none)";
        const std::string b = i < k.trace.size() ? k.trace[i] : "(none)";
        os << (a == b ? "  " : "!!") << " " << i << " | " << a;
        if (a != b)
            os << " | " << b;
        os << "\n";
    }
    return os.str();
}

class Conformance : public ::testing::TestWithParam<Scenario> {};

TEST_P(Conformance, libc_and_coroutine_agree)
{
    const Scenario &s = GetParam();
    Ctx t(Mode::thread), k(Mode::coroutine);
    {
        Watchdog w(s.name, "plain thread");
        run_in_thread(s, t);
    }
    {
        Watchdog w(s.name, "coroutine");
        run_in_coroutine(s, k);
    }
    if (s.kind == Kind::same) {
        EXPECT_TRUE(t.trace == k.trace) << "the coroutine run differs from libc's:\n"
                                        << side_by_side(t, k);
    } else {
        std::cout << "deliberate difference (DESIGN.md): " << s.why << "\n";
    }
    if (getenv("COHO_CONF_VERBOSE") != nullptr || (s.kind == Kind::deliberate && HasFailure()))
        std::cout << side_by_side(t, k);
}

std::string scenario_name(const ::testing::TestParamInfo<Scenario> &info)
{
    return info.param.name;
}

INSTANTIATE_TEST_SUITE_P(table, Conformance, ::testing::ValuesIn(kScenarios), scenario_name);

// An fd a coroutine used (and coho made non-blocking underneath) blocks again like libc's when a
// plain thread uses it after the scheduler is gone.
TEST(ConformanceAfterScheduler, adopted_fd_blocks_like_libc_in_a_plain_thread)
{
    ASSERT_TRUE(api().ok) << "run with LD_PRELOAD=libcoho_preload.so";
    Watchdog w("adopted_fd_blocks_like_libc_in_a_plain_thread", "coroutine, then plain thread");
    int fds[2];
    ASSERT_EQ(coho_lb_tcp_pair(fds), 0);
    struct Arg {
        int fd, peer;
        long long got;
    } arg{fds[0], fds[1], -2};
    coho_sched_t *sched = api().create(nullptr);
    ASSERT_NE(sched, nullptr);
    api().spawn(
        sched,
        [](void *p) {
            auto *a = static_cast<Arg *>(p);
            std::thread peer([a] {
                coho_lb_sleep_ms(kLateMs);
                put(a->peer, "in");
            });
            char buf[8];
            a->got = recv(a->fd, buf, sizeof(buf), 0);
            peer.join();
        },
        &arg);
    EXPECT_EQ(api().run(sched), 0);
    api().destroy(sched);
    EXPECT_EQ(arg.got, 2);
    int fl = fcntl(fds[0], F_GETFL);
    EXPECT_EQ(fl & O_NONBLOCK, 0) << "F_GETFL outside coroutines shows libc's view";
    int64_t m0 = now_ms(); // before the peer starts its delay, so the lower bound holds
    std::thread peer([&] {
        coho_lb_sleep_ms(kLateMs);
        put(fds[1], "out");
    });
    char buf[8];
    errno = 0;
    ssize_t n = recv(fds[0], buf, sizeof(buf), 0);
    int e = errno;
    EXPECT_EQ(n, 3) << "a blocking recv in a plain thread waited for data, got errno "
                    << errname(e);
    EXPECT_GE(now_ms() - m0, kLateMs - 2);
    peer.join();
    close(fds[0]);
    close(fds[1]);
}

} // namespace

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    ::testing::InitGoogleTest(&argc, argv);
    return RUN_ALL_TESTS();
}
