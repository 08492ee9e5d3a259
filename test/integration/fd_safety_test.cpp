// SPDX-License-Identifier: MIT
/* fd safety of the hooks (DESIGN.md "Rules the implementation keeps": "fds across schedulers and
 * threads", "errno per coroutine"): closes that bypass the hooks, closes from other threads and
 * other schedulers, several schedulers waiting on one fd, fork, timeouts that belong to the
 * socket, ancillary data on partial transfers, and whole-buffer writes whose fd is closed and
 * reused under them. Each case reproduces a defect found in an earlier version.
 *
 * Built three ways like the conformance suite (test/integration/CMakeLists.txt): with
 * libcoho.so, the static library, and under LD_PRELOAD=libcoho_preload.so. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/close_range.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "test/integration/coho_api.h"
#include "test/support/loopback.h"

namespace {

using coho_test::api;

constexpr int kWatchdogS = 30;

int64_t now_ms()
{
    return coho_lb_now_ms();
}

std::string errname(int e)
{
    const char *n = strerrorname_np(e);
    return n != nullptr ? n : std::to_string(e);
}

// Ends the process with a message if a case is still running after kWatchdogS (a call that
// should return is stuck).
class Watchdog {
public:
    explicit Watchdog(const char *what)
        : thread_([this, what] {
              std::unique_lock<std::mutex> lk(m_);
              if (!cv_.wait_for(lk, std::chrono::seconds(kWatchdogS), [this] { return done_; })) {
                  fprintf(stderr, "FATAL: %s still running after %d s\n", what, kWatchdogS);
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

// Spawns `fn` as a coroutine of `s` (from anywhere on its thread).
uint64_t go(coho_sched_t *s, std::function<void()> fn)
{
    auto *job = new std::function<void()>(std::move(fn));
    uint64_t id = api().spawn(
        s,
        [](void *p) {
            auto *f = static_cast<std::function<void()> *>(p);
            (*f)();
            delete f;
        },
        job);
    EXPECT_NE(id, 0u) << "coho_spawn: " << errname(errno);
    if (id == 0)
        delete job;
    return id;
}

// Runs `fn` as a coroutine on a fresh scheduler of the calling thread, until no user coroutine
// is left; `fn` gets the scheduler to spawn more.
void in_coroutines(const std::function<void(coho_sched_t *)> &fn)
{
    ASSERT_TRUE(api().ok) << "run this binary with LD_PRELOAD=libcoho_preload.so";
    coho_sched_opts_t o;
    api().opts_init(&o);
    o.stack_size = 1u << 20;
    coho_sched_t *s = api().create(&o);
    ASSERT_NE(s, nullptr) << "coho_sched_create: " << errname(errno);
    bool ran = false;
    go(s, [&] {
        fn(s);
        ran = true;
    });
    EXPECT_EQ(api().run(s), 0) << errname(errno);
    EXPECT_TRUE(ran) << "the test coroutine did not finish";
    api().destroy(s);
}

// A scheduler on a thread of its own, running coroutines handed to it until stopped.
class SchedThread {
public:
    SchedThread()
    {
        std::promise<coho_sched_t *> made;
        auto fut = made.get_future();
        thread_ = std::thread([this, &made] {
            coho_sched_opts_t o;
            api().opts_init(&o);
            o.stack_size = 1u << 20;
            coho_sched_t *s = api().create(&o);
            made.set_value(s);
            if (s == nullptr)
                return;
            // A keeper that holds the scheduler open until stop().
            go(s, [this] {
                while (!stop_)
                    api().sleep_ms(2);
            });
            api().run(s);
            api().destroy(s);
        });
        sched_ = fut.get();
        EXPECT_NE(sched_, nullptr);
    }
    ~SchedThread() { stop(); }

    // Runs `fn` as a coroutine of this scheduler (posted to its thread).
    void run(std::function<void()> fn)
    {
        auto *job = new Job{this, std::move(fn)};
        live_++;
        ASSERT_EQ(api().post(
                      sched_,
                      [](void *p) {
                          auto *j = static_cast<Job *>(p);
                          go(j->t->sched_, [j] {
                              j->fn();
                              j->t->live_--;
                              delete j;
                          });
                      },
                      job),
                  0);
    }
    void wait_idle()
    {
        while (live_ > 0)
            coho_lb_sleep_ms(1);
    }
    void stop()
    {
        if (!thread_.joinable())
            return;
        wait_idle();
        stop_ = true;
        thread_.join();
    }

private:
    struct Job {
        SchedThread *t;
        std::function<void()> fn;
    };
    std::thread thread_;
    coho_sched_t *sched_ = nullptr;
    std::atomic<bool> stop_{false};
    std::atomic<int> live_{0};
};

// A blocking recv that records what happened.
struct Got {
    std::atomic<long long> n{-2};
    std::atomic<int> err{0};
    std::atomic<int64_t> at{0};
};

void recv_into(int fd, Got &g)
{
    char buf[64];
    errno = 0;
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    g.err = errno;
    g.at = now_ms();
    g.n = n;
}

// ================================ closes that bypass the hooks ===================================

enum class Bypass { fclose_fdopen, close_range, raw_syscall };

const char *bypass_name(Bypass b)
{
    switch (b) {
    case Bypass::fclose_fdopen:
        return "fclose(fdopen(fd))";
    case Bypass::close_range:
        return "close_range(fd, fd, 0)";
    default:
        return "syscall(SYS_close, fd)";
    }
}

void close_bypassing(Bypass b, int fd)
{
    switch (b) {
    case Bypass::fclose_fdopen: {
        FILE *f = fdopen(fd, "r+");
        ASSERT_NE(f, nullptr);
        EXPECT_EQ(fclose(f), 0);
        break;
    }
    case Bypass::close_range:
        EXPECT_EQ(close_range(static_cast<unsigned>(fd), static_cast<unsigned>(fd), 0), 0);
        break;
    default:
        EXPECT_EQ(syscall(SYS_close, fd), 0);
        break;
    }
}

// After an adopted socket is closed behind the hooks, every later socket on that number works:
// created, parked on, woken by data. (Before: EEXIST from every socket() on the number.)
TEST(FdSafety, a_close_that_bypasses_the_hooks_does_not_poison_the_number)
{
    Watchdog w("a_close_that_bypasses_the_hooks_does_not_poison_the_number");
    for (Bypass b : {Bypass::fclose_fdopen, Bypass::close_range, Bypass::raw_syscall}) {
        SCOPED_TRACE(bypass_name(b));
        in_coroutines([&](coho_sched_t *s) {
            int sv[2];
            ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
            int number = sv[0];
            char c;
            ASSERT_EQ(send(sv[1], "x", 1, 0), 1);
            ASSERT_EQ(recv(sv[0], &c, 1, 0), 1); // used: adopted and registered
            close_bypassing(b, number);
            close(sv[1]);
            for (int i = 0; i < 4; i++) {
                int p[2];
                errno = 0;
                ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, p), 0)
                    << "attempt " << i << ": " << errname(errno);
                EXPECT_EQ(p[0], number) << "the number is reused (lowest free)";
                int peer = p[1];
                go(s, [peer] {
                    api().sleep_ms(10);
                    EXPECT_EQ(send(peer, "hi", 2, 0), 2);
                });
                char buf[8];
                EXPECT_EQ(recv(p[0], buf, sizeof(buf), 0), 2)
                    << "attempt " << i << ": a recv that parks on the new socket, "
                    << errname(errno);
                close(p[0]);
                close(p[1]);
            }
        });
    }
}

// closefrom closes every fd from a number up, so it runs in a child process: the sockets it
// closed leave no registration behind, and new sockets on their numbers park and wake.
// The fork comes before the watchdog's thread exists: a thread starting at the moment of the
// fork can hold the allocator lock of AddressSanitizer (gcc 12's libasan takes none around
// fork), and the child's first malloc would then wait forever. The child bounds itself with
// alarm().
TEST(FdSafety, closefrom_forgets_the_fds_it_closes)
{
    ASSERT_TRUE(api().ok);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        alarm(kWatchdogS - 10);
        int failures = 0;
        coho_sched_t *s = api().create(nullptr);
        if (s == nullptr)
            _exit(10);
        go(s, [&] {
            int sv[2];
            if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
                failures++;
                return;
            }
            char c;
            if (send(sv[1], "x", 1, 0) != 1 || recv(sv[0], &c, 1, 0) != 1)
                failures++;
            closefrom(sv[0]);
            int p[2];
            if (socketpair(AF_UNIX, SOCK_STREAM, 0, p) != 0 || p[0] != sv[0]) {
                failures++;
                return;
            }
            int peer = p[1];
            go(s, [peer] {
                api().sleep_ms(10);
                send(peer, "hi", 2, 0);
            });
            char buf[4];
            if (recv(p[0], buf, sizeof(buf), 0) != 2)
                failures++;
            close(p[0]);
            close(p[1]);
        });
        api().run(s);
        api().destroy(s);
        _exit(failures == 0 ? 0 : 1);
    }
    Watchdog w("closefrom_forgets_the_fds_it_closes");
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status))
        << "the child died (signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0)
        << "; SIGALRM: stuck for " << kWatchdogS - 10 << " s)";
    EXPECT_EQ(WEXITSTATUS(status), 0) << "a socket on a number closefrom closed did not work";
}

// accept on a listen socket the user made non-blocking returns an fd (never a positive errno
// value) when the accepted socket lands on a number whose earlier tenant was closed behind the
// hooks.
TEST(FdSafety, accept_onto_a_number_closed_behind_the_hooks_returns_an_fd)
{
    Watchdog w("accept_onto_a_number_closed_behind_the_hooks_returns_an_fd");
    in_coroutines([&](coho_sched_t *) {
        sockaddr_in addr{};
        int lfd = coho_lb_listen(16, &addr);
        ASSERT_GE(lfd, 0);
        ASSERT_EQ(fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) | O_NONBLOCK), 0);
        int sv[2];
        ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        char c;
        ASSERT_EQ(send(sv[1], "x", 1, 0), 1);
        ASSERT_EQ(recv(sv[0], &c, 1, 0), 1);
        int number = sv[0];
        close(sv[1]);
        // The client takes sv[1]'s number; the accepted socket gets sv[0]'s.
        int cl = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        ASSERT_GE(cl, 0);
        ASSERT_EQ(syscall(SYS_close, number), 0);
        int rc = connect(cl, reinterpret_cast<sockaddr *>(&addr), sizeof(addr));
        ASSERT_TRUE(rc == 0 || errno == EINPROGRESS) << errname(errno);
        int a = -1;
        for (int i = 0; i < 200 && a < 0; i++) {
            a = accept(lfd, nullptr, nullptr);
            if (a < 0) {
                ASSERT_EQ(errno, EAGAIN) << errname(errno);
                api().sleep_ms(1);
            }
        }
        EXPECT_EQ(a, number) << "accept returned " << a << " (errno " << errname(errno) << ")";
        if (a >= 0) {
            pollfd p{cl, POLLOUT, 0};
            ASSERT_EQ(poll(&p, 1, 1000), 1);
            ASSERT_EQ(send(cl, "ok", 2, 0), 2);
            char buf[4];
            EXPECT_EQ(recv(a, buf, sizeof(buf), 0), 2) << errname(errno);
            close(a);
        }
        close(cl);
        close(lfd);
    });
}

// ================================ timeouts belong to the socket =================================

// SO_RCVTIMEO set on a socket coho never adopted does not apply to the next socket that gets
// its number. (Before: the new socket's recv timed out.)
TEST(FdSafety, a_timeout_of_a_closed_socket_does_not_reach_the_next_tenant)
{
    Watchdog w("a_timeout_of_a_closed_socket_does_not_reach_the_next_tenant");
    in_coroutines([&](coho_sched_t *s) {
        int old = -1;
        std::thread([&] { // a plain thread: the socket is never adopted
            old = socket(AF_INET, SOCK_STREAM, 0);
            ASSERT_GE(old, 0);
            timeval tv{0, 100 * 1000};
            EXPECT_EQ(setsockopt(old, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
            EXPECT_EQ(close(old), 0);
        })
            .join();
        int p[2];
        ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, p), 0);
        EXPECT_EQ(p[0], old);
        int peer = p[1];
        go(s, [peer] {
            api().sleep_ms(300);
            EXPECT_EQ(send(peer, "late", 4, 0), 4);
        });
        char buf[8];
        int64_t t0 = now_ms();
        errno = 0;
        EXPECT_EQ(recv(p[0], buf, sizeof(buf), 0), 4)
            << "the recv had no timeout of its own, got " << errname(errno) << " after "
            << now_ms() - t0 << " ms";
        close(p[0]);
        close(p[1]);
    });
}

// SO_RCVTIMEO set through one dup applies to the other, as it does for threads.
TEST(FdSafety, a_timeout_set_on_a_dup_is_seen_through_the_original)
{
    Watchdog w("a_timeout_set_on_a_dup_is_seen_through_the_original");
    in_coroutines([&](coho_sched_t *) {
        int p[2];
        ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, p), 0);
        int d = dup(p[0]);
        ASSERT_GE(d, 0);
        timeval tv{0, 100 * 1000};
        ASSERT_EQ(setsockopt(d, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
        char buf[8];
        int64_t t0 = now_ms();
        errno = 0;
        EXPECT_EQ(recv(p[0], buf, sizeof(buf), 0), -1);
        EXPECT_EQ(errno, EAGAIN) << errname(errno);
        int64_t took = now_ms() - t0;
        EXPECT_GE(took, 98);
        EXPECT_LE(took, 600);
        close(d);
        close(p[0]);
        close(p[1]);
    });
}

// An accepted socket inherits the listener's SO_RCVTIMEO, as in the kernel.
TEST(FdSafety, an_accepted_socket_inherits_the_listeners_timeout)
{
    Watchdog w("an_accepted_socket_inherits_the_listeners_timeout");
    in_coroutines([&](coho_sched_t *) {
        sockaddr_in addr{};
        int lfd = coho_lb_listen(16, &addr);
        ASSERT_GE(lfd, 0);
        timeval tv{0, 100 * 1000};
        ASSERT_EQ(setsockopt(lfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
        int cl = socket(AF_INET, SOCK_STREAM, 0);
        ASSERT_EQ(connect(cl, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)), 0);
        int a = accept(lfd, nullptr, nullptr);
        ASSERT_GE(a, 0);
        char buf[8];
        int64_t t0 = now_ms();
        EXPECT_EQ(recv(a, buf, sizeof(buf), 0), -1);
        EXPECT_EQ(errno, EAGAIN) << errname(errno);
        EXPECT_LE(now_ms() - t0, 600);
        close(a);
        close(cl);
        close(lfd);
    });
}

// ================================ connect keeps a real hang-up ==================================

// A blocking connect that parked, whose peer wrote and closed before the scheduler polled: the
// data, then EOF. (Before: the second recv parked for ever.)
TEST(FdSafety, connect_keeps_a_hang_up_that_came_with_its_completion)
{
    Watchdog w("connect_keeps_a_hang_up_that_came_with_its_completion");
    coho_lb_black_hole_t bh;
    ASSERT_EQ(coho_lb_black_hole_open(&bh), 0);
    std::atomic<bool> closed{false};
    // The server: frees the accept queue, then (after the client's SYN is retransmitted)
    // accepts it, writes 5 bytes and closes.
    std::thread server([&] {
        coho_lb_sleep_ms(50);
        int first = accept(bh.listener, nullptr, nullptr);
        EXPECT_GE(first, 0);
        int a = accept(bh.listener, nullptr, nullptr);
        EXPECT_GE(a, 0);
        EXPECT_EQ(coho_lb_write_full(a, "hello", 5), 5);
        close(a);
        close(first);
        closed = true;
    });
    in_coroutines([&](coho_sched_t *s) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        ASSERT_GE(fd, 0);
        // Another coroutine holds the thread (no yield) from the moment connect parks until
        // the server has written and closed, so the completion, the data and the hang-up reach
        // the scheduler in one poll.
        go(s, [&] {
            while (!closed)
                coho_lb_sleep_ms(1); // clock_nanosleep: not hooked, the thread stays here
            coho_lb_sleep_ms(20);
        });
        ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr *>(&bh.addr), sizeof(bh.addr)), 0)
            << errname(errno);
        char buf[16];
        EXPECT_EQ(recv(fd, buf, sizeof(buf), 0), 5);
        timeval tv{2, 0}; // a wrong park shows as EAGAIN after 2 s, not a hang
        ASSERT_EQ(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
        errno = 0;
        EXPECT_EQ(recv(fd, buf, sizeof(buf), 0), 0) << "EOF expected, got " << errname(errno);
        close(fd);
    });
    server.join();
    coho_lb_black_hole_close(&bh);
}

// ================================ ancillary data on partial transfers ===========================

int fd_count_in(msghdr *m)
{
    int n = 0;
    for (cmsghdr *c = CMSG_FIRSTHDR(m); c != nullptr; c = CMSG_NXTHDR(m, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            int k = static_cast<int>((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            int *fds = reinterpret_cast<int *>(CMSG_DATA(c));
            for (int i = 0; i < k; i++)
                close(fds[i]);
            n += k;
        }
    }
    return n;
}

// One large sendmsg carrying one fd over a slowly read AF_UNIX socket delivers the fd once.
// (Before: once per partial send, 20 copies.)
TEST(FdSafety, a_partial_sendmsg_sends_its_fds_once)
{
    Watchdog w("a_partial_sendmsg_sends_its_fds_once");
    int sv[2];
    ASSERT_EQ(coho_lb_unix_pair(sv, 4096), 0);
    const size_t total = 1u << 20;
    std::atomic<int> fds_seen{0};
    std::atomic<size_t> bytes_seen{0};
    std::thread reader([&] {
        std::vector<char> buf(8192);
        alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int) * 8)];
        while (bytes_seen < total) {
            iovec iov{buf.data(), buf.size()};
            msghdr m{};
            m.msg_iov = &iov;
            m.msg_iovlen = 1;
            m.msg_control = ctl;
            m.msg_controllen = sizeof(ctl);
            ssize_t n = recvmsg(sv[1], &m, 0);
            if (n <= 0)
                break;
            bytes_seen += static_cast<size_t>(n);
            fds_seen += fd_count_in(&m);
            coho_lb_sleep_ms(1);
        }
    });
    in_coroutines([&](coho_sched_t *) {
        std::vector<char> data(total, 'd');
        int passed = dup(STDERR_FILENO);
        ASSERT_GE(passed, 0);
        iovec iov{data.data(), data.size()};
        alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int))] = {};
        msghdr m{};
        m.msg_iov = &iov;
        m.msg_iovlen = 1;
        m.msg_control = ctl;
        m.msg_controllen = sizeof(ctl);
        cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &passed, sizeof(int));
        EXPECT_EQ(sendmsg(sv[0], &m, 0), static_cast<ssize_t>(total)) << errname(errno);
        close(passed);
    });
    reader.join();
    EXPECT_EQ(bytes_seen.load(), total);
    EXPECT_EQ(fds_seen.load(), 1) << "one SCM_RIGHTS fd sent, this many received";
    close(sv[0]);
    close(sv[1]);
}

// recvmsg with MSG_WAITALL whose data comes in two parts keeps the first part's control data
// (the fd that came with it). (Before: the second part overwrote it, and the fd leaked.)
TEST(FdSafety, recvmsg_waitall_keeps_the_control_data_of_its_first_part)
{
    Watchdog w("recvmsg_waitall_keeps_the_control_data_of_its_first_part");
    int sv[2];
    ASSERT_EQ(coho_lb_unix_pair(sv, 0), 0);
    std::thread sender([&] {
        int passed = dup(STDERR_FILENO);
        char part[4] = {'a', 'b', 'c', 'd'};
        iovec iov{part, sizeof(part)};
        alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int))] = {};
        msghdr m{};
        m.msg_iov = &iov;
        m.msg_iovlen = 1;
        m.msg_control = ctl;
        m.msg_controllen = sizeof(ctl);
        cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &passed, sizeof(int));
        EXPECT_EQ(sendmsg(sv[1], &m, 0), 4);
        close(passed);
        coho_lb_sleep_ms(50);
        EXPECT_EQ(coho_lb_write_full(sv[1], "efgh", 4), 4);
    });
    in_coroutines([&](coho_sched_t *) {
        char buf[8];
        iovec iov{buf, sizeof(buf)};
        alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int) * 4)];
        msghdr m{};
        m.msg_iov = &iov;
        m.msg_iovlen = 1;
        m.msg_control = ctl;
        m.msg_controllen = sizeof(ctl);
        EXPECT_EQ(recvmsg(sv[0], &m, MSG_WAITALL), 8) << errname(errno);
        EXPECT_EQ(memcmp(buf, "abcdefgh", 8), 0);
        EXPECT_EQ(fd_count_in(&m), 1) << "the fd that came with the first part";
    });
    sender.join();
    close(sv[0]);
    close(sv[1]);
}

// ================================ whole-buffer writes and reused numbers =========================

// A sendn of 8 MiB whose fd another coroutine closes mid-write, with the number reused at once
// by a new connection: not one byte of it reaches the new connection. (Before: 4 MB did.)
TEST(FdSafety, a_sendn_whose_fd_is_closed_and_reused_sends_nothing_to_the_new_socket)
{
    Watchdog w("a_sendn_whose_fd_is_closed_and_reused_sends_nothing_to_the_new_socket");
    sockaddr_in addr{};
    int lfd = coho_lb_listen(16, &addr);
    ASSERT_GE(lfd, 0);
    std::atomic<long long> first_got{0}, second_got{-1};
    // The server: accepts both connections, reads the first slowly, the second until EOF.
    std::thread server([&] {
        int a1 = accept(lfd, nullptr, nullptr);
        ASSERT_GE(a1, 0);
        int a2 = accept(lfd, nullptr, nullptr);
        ASSERT_GE(a2, 0);
        std::thread slow([&] {
            char b[65536];
            ssize_t n;
            coho_lb_sleep_ms(100);
            while ((n = read(a1, b, sizeof(b))) > 0)
                first_got += n;
        });
        char b[65536];
        long long got = 0;
        ssize_t n;
        while ((n = read(a2, b, sizeof(b))) > 0)
            got += n;
        second_got = got;
        close(a2);
        slow.join();
        close(a1);
    });
    const size_t total = 8u << 20;
    in_coroutines([&](coho_sched_t *s) {
        int c1 = socket(AF_INET, SOCK_STREAM, 0);
        ASSERT_EQ(connect(c1, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)), 0);
        std::atomic<bool> reused{false};
        go(s, [&, c1] {
            api().sleep_ms(30); // the sendn is parked on a full send buffer by now
            EXPECT_EQ(close(c1), 0);
            int c2 = socket(AF_INET, SOCK_STREAM, 0);
            EXPECT_EQ(c2, c1) << "the number is reused at once";
            EXPECT_EQ(connect(c2, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)), 0);
            reused = true;
            api().sleep_ms(300); // the old sendn had every chance to write here
            close(c2);
        });
        std::vector<char> data(total, 'Z');
        errno = 0;
        ssize_t n = api().sendn_fn(c1, data.data(), data.size(), 0);
        int e = errno;
        EXPECT_LT(n, static_cast<ssize_t>(total));
        EXPECT_EQ(e, EBADF) << "the write stops at the close, got " << errname(e);
        while (!reused)
            api().sleep_ms(1);
    });
    server.join();
    close(lfd);
    EXPECT_EQ(second_got.load(), 0) << "bytes of the old sendn reached the new connection";
    EXPECT_GT(first_got.load(), 0);
}

// The same for writevn.
TEST(FdSafety, a_writevn_whose_fd_is_closed_and_reused_sends_nothing_to_the_new_socket)
{
    Watchdog w("a_writevn_whose_fd_is_closed_and_reused_sends_nothing_to_the_new_socket");
    in_coroutines([&](coho_sched_t *s) {
        int p[2];
        ASSERT_EQ(coho_lb_unix_pair(p, 4096), 0);
        int writer = p[0];
        go(s, [&, writer] {
            api().sleep_ms(30);
            EXPECT_EQ(close(writer), 0);
            int q[2];
            EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, q), 0);
            EXPECT_EQ(q[0], writer);
            api().sleep_ms(100);
            char b[64];
            errno = 0;
            EXPECT_EQ(recv(q[1], b, sizeof(b), MSG_DONTWAIT), -1)
                << "bytes of the old writevn reached the new socket";
            close(q[0]);
            close(q[1]);
        });
        std::vector<char> a(1u << 20, 'A'), b(1u << 20, 'B');
        iovec iov[2] = {{a.data(), a.size()}, {b.data(), b.size()}};
        errno = 0;
        ssize_t n = api().writevn_fn(writer, iov, 2);
        EXPECT_LT(n, static_cast<ssize_t>(2u << 20));
        EXPECT_EQ(errno, EBADF) << errname(errno);
        api().sleep_ms(200);
        close(p[1]);
    });
}

// ================================ across schedulers and threads ================================

// A plain thread closes an fd a coroutine waits on: the close returns at once and the coroutine
// wakes with EBADF.
TEST(FdSafety, a_plain_thread_closing_an_fd_wakes_its_waiter_and_never_waits)
{
    Watchdog w("a_plain_thread_closing_an_fd_wakes_its_waiter_and_never_waits");
    int p[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, p), 0);
    SchedThread st;
    Got g;
    st.run([&] { recv_into(p[0], g); });
    coho_lb_sleep_ms(50);
    int64_t t0 = now_ms();
    EXPECT_EQ(close(p[0]), 0);
    EXPECT_LE(now_ms() - t0, 50) << "close waited for the scheduler's thread";
    st.wait_idle();
    EXPECT_EQ(g.n.load(), -1);
    EXPECT_EQ(g.err.load(), EBADF) << errname(g.err);
    EXPECT_LE(g.at.load() - t0, 250);
    close(p[1]);
}

// Two schedulers close each other's fds while coroutines wait on them: neither close blocks its
// thread, both waiters wake with EBADF. (Before: a deadlock.)
TEST(FdSafety, two_schedulers_closing_each_others_fds_do_not_deadlock)
{
    Watchdog w("two_schedulers_closing_each_others_fds_do_not_deadlock");
    int x[2], y[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, x), 0);
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, y), 0);
    SchedThread s1, s2;
    Got gx, gy;
    s1.run([&] { recv_into(x[0], gx); }); // x[0] adopted by s1
    s2.run([&] { recv_into(y[0], gy); }); // y[0] adopted by s2
    coho_lb_sleep_ms(50);
    std::atomic<int64_t> took1{-1}, took2{-1};
    std::atomic<int> at_barrier{0};
    // Both closes start together, each holding its scheduler's thread until then.
    auto barrier = [&] {
        at_barrier++;
        while (at_barrier.load() < 2)
            coho_lb_sleep_ms(1);
    };
    s1.run([&] {
        barrier();
        int64_t t0 = now_ms();
        EXPECT_EQ(close(y[0]), 0);
        took1 = now_ms() - t0;
    });
    s2.run([&] {
        barrier();
        int64_t t0 = now_ms();
        EXPECT_EQ(close(x[0]), 0);
        took2 = now_ms() - t0;
    });
    s1.wait_idle();
    s2.wait_idle();
    EXPECT_GE(took1.load(), 0);
    EXPECT_LE(took1.load(), 250);
    EXPECT_LE(took2.load(), 250);
    EXPECT_EQ(gx.err.load(), EBADF) << errname(gx.err);
    EXPECT_EQ(gy.err.load(), EBADF) << errname(gy.err);
    close(x[1]);
    close(y[1]);
}

// Closing an fd adopted by a scheduler whose run() returned (not destroyed) is immediate.
// (Before: 550 ms.)
TEST(FdSafety, closing_an_fd_of_a_stopped_scheduler_is_immediate)
{
    Watchdog w("closing_an_fd_of_a_stopped_scheduler_is_immediate");
    ASSERT_TRUE(api().ok);
    int p[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, p), 0);
    coho_sched_t *s = nullptr;
    std::mutex mu;
    std::condition_variable cv;
    bool ran = false, may_destroy = false;
    std::thread t([&] {
        s = api().create(nullptr);
        go(s, [&] {
            EXPECT_EQ(send(p[1], "x", 1, 0), 1);
            char c;
            EXPECT_EQ(recv(p[0], &c, 1, 0), 1); // adopted by s
        });
        api().run(s);
        std::unique_lock<std::mutex> lk(mu);
        ran = true;
        cv.notify_all();
        cv.wait(lk, [&] { return may_destroy; });
        lk.unlock();
        api().destroy(s);
    });
    {
        std::unique_lock<std::mutex> lk(mu);
        cv.wait(lk, [&] { return ran; });
    }
    int64_t t0 = now_ms();
    EXPECT_EQ(close(p[0]), 0);
    EXPECT_LE(now_ms() - t0, 50);
    {
        std::lock_guard<std::mutex> lk(mu);
        may_destroy = true;
    }
    cv.notify_all();
    t.join();
    close(p[1]);
}

// N schedulers on N threads block in accept on one shared listen socket and each gets
// connections: each scheduler takes one and stops, so the next connection must be taken by a
// scheduler that has not had one yet.
TEST(FdSafety, every_scheduler_accepting_on_a_shared_listen_socket_gets_connections)
{
    Watchdog w("every_scheduler_accepting_on_a_shared_listen_socket_gets_connections");
    constexpr int kScheds = 4;
    sockaddr_in addr{};
    int lfd = coho_lb_listen(64, &addr);
    ASSERT_GE(lfd, 0);
    std::vector<std::unique_ptr<SchedThread>> ss;
    std::atomic<int> accepted{0};
    std::atomic<int> errors{0};
    for (int i = 0; i < kScheds; i++) {
        ss.emplace_back(new SchedThread);
        ss.back()->run([&] {
            int a = accept(lfd, nullptr, nullptr);
            if (a < 0) {
                errors++;
                ADD_FAILURE() << "accept: " << errname(errno);
                return;
            }
            char c;
            EXPECT_EQ(recv(a, &c, 1, 0), 1);
            close(a);
            accepted++;
        });
    }
    coho_lb_sleep_ms(50); // every accept is parked
    for (int i = 0; i < kScheds; i++) {
        int c = socket(AF_INET, SOCK_STREAM, 0);
        ASSERT_EQ(connect(c, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)), 0);
        ASSERT_EQ(send(c, "x", 1, 0), 1);
        int64_t t0 = now_ms();
        while (accepted.load() < i + 1 && now_ms() - t0 < 5000)
            coho_lb_sleep_ms(1);
        EXPECT_EQ(accepted.load(), i + 1) << "connection " << i << " was not accepted";
        close(c);
    }
    for (auto &s : ss)
        s->stop();
    EXPECT_EQ(errors.load(), 0);
    close(lfd);
}

// Two coroutines of one scheduler wait at once on an fd another scheduler adopted: both get
// their data. (Before: the second got EEXIST from recv.)
TEST(FdSafety, two_coroutines_wait_on_an_fd_another_scheduler_adopted)
{
    Watchdog w("two_coroutines_wait_on_an_fd_another_scheduler_adopted");
    int p[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, p), 0);
    SchedThread owner, other;
    owner.run([&] {
        char c;
        EXPECT_EQ(recv(p[0], &c, 1, MSG_DONTWAIT), -1); // adopted by `owner`
    });
    owner.wait_idle();
    Got g1, g2;
    other.run([&] { recv_into(p[0], g1); });
    other.run([&] { recv_into(p[0], g2); });
    coho_lb_sleep_ms(50);
    EXPECT_EQ(send(p[1], "one", 3, 0), 3);
    EXPECT_EQ(send(p[1], "two", 3, 0), 3);
    other.wait_idle();
    EXPECT_EQ(g1.n.load(), 3) << errname(g1.err);
    EXPECT_EQ(g2.n.load(), 3) << errname(g2.err);
    close(p[0]);
    close(p[1]);
}

// When its scheduler goes, an fd keeps the user's O_NONBLOCK: the kernel file goes back to the
// mode of the user's view, not always to blocking.
TEST(FdSafety, a_destroyed_scheduler_leaves_the_users_o_nonblock_in_place)
{
    Watchdog w("a_destroyed_scheduler_leaves_the_users_o_nonblock_in_place");
    int p[2] = {-1, -1};
    in_coroutines([&](coho_sched_t *) {
        ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, p), 0); // adopted
        ASSERT_EQ(fcntl(p[0], F_SETFL, fcntl(p[0], F_GETFL) | O_NONBLOCK), 0);
        char c;
        EXPECT_EQ(recv(p[0], &c, 1, 0), -1);
        EXPECT_EQ(errno, EAGAIN);
    });
    int fl = fcntl(p[0], F_GETFL);
    EXPECT_NE(fl & O_NONBLOCK, 0) << "F_GETFL in a plain thread after the scheduler is gone";
    char c;
    errno = 0;
    EXPECT_EQ(recv(p[0], &c, 1, 0), -1) << "a non-blocking recv returns at once";
    EXPECT_EQ(errno, EAGAIN) << errname(errno);
    close(p[0]);
    close(p[1]);
}

// ================================ fork ==========================================================

// A child forked while another thread's scheduler has coroutines parked on fds can close every
// fd and exit. (Before: the child deadlocked in close.)
TEST(FdSafety, a_forked_child_closes_fds_of_schedulers_that_did_not_survive_the_fork)
{
    Watchdog w("a_forked_child_closes_fds_of_schedulers_that_did_not_survive_the_fork");
    std::vector<int> peers;
    SchedThread st;
    std::vector<Got> got(8);
    for (int i = 0; i < 8; i++) {
        int p[2];
        ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, p), 0);
        peers.push_back(p[1]);
        int fd = p[0];
        Got *g = &got[static_cast<size_t>(i)];
        st.run([fd, g] {
            recv_into(fd, *g);
            close(fd);
        });
    }
    coho_lb_sleep_ms(50);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        for (int fd = 3; fd < 1024; fd++)
            close(fd);
        _exit(0);
    }
    int status = 0;
    pid_t r = 0;
    int64_t t0 = now_ms();
    while ((r = waitpid(pid, &status, WNOHANG)) == 0 && now_ms() - t0 < 2000)
        coho_lb_sleep_ms(5);
    if (r == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        FAIL() << "the child was still alive after 2 s (deadlocked in close)";
    }
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    for (int fd : peers)
        EXPECT_EQ(send(fd, "x", 1, 0), 1);
    st.wait_idle();
    for (auto &g : got)
        EXPECT_EQ(g.n.load(), 1) << "the parent's waiters are untouched by the child";
    for (int fd : peers)
        close(fd);
}

// ================================ plain threads and signals =====================================

void on_usr1(int) {}

// A plain thread blocked on a managed fd (a coroutine adopted it) restarts its wait after a
// signal whose handler has SA_RESTART, as libc would. (Before: EINTR.)
TEST(FdSafety, a_plain_threads_wait_on_a_managed_fd_restarts_after_an_sa_restart_signal)
{
    Watchdog w("a_plain_threads_wait_on_a_managed_fd_restarts_after_an_sa_restart_signal");
    struct sigaction sa {
    }, old{};
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    ASSERT_EQ(sigaction(SIGUSR1, &sa, &old), 0);
    int p[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, p), 0);
    SchedThread st;
    st.run([&] {
        char c;
        EXPECT_EQ(recv(p[0], &c, 1, MSG_DONTWAIT), -1); // adopted: non-blocking underneath
    });
    st.wait_idle();
    Got g;
    std::thread t([&] { recv_into(p[0], g); });
    coho_lb_sleep_ms(50);
    pthread_kill(t.native_handle(), SIGUSR1);
    coho_lb_sleep_ms(50);
    EXPECT_EQ(g.n.load(), -2) << "the recv returned early: " << errname(g.err);
    EXPECT_EQ(send(p[1], "data", 4, 0), 4);
    t.join();
    EXPECT_EQ(g.n.load(), 4) << errname(g.err);
    sigaction(SIGUSR1, &old, nullptr);
    close(p[0]);
    close(p[1]);
}

} // namespace

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    ::testing::InitGoogleTest(&argc, argv);
    return RUN_ALL_TESTS();
}
