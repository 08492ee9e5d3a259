// SPDX-License-Identifier: MIT
// Tests of coho/socket_ext.hpp: Pool (connect/listen, pick, request, stats, callbacks,
// for_each_conn, close), Request ownership and replies after close, on_req with move-only
// callables and escaping exceptions, Buffer, and the sock protocol helpers.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <coho.hpp>
#include <coho/socket_ext.hpp>

using namespace std::chrono_literals;
namespace tdp = coho::tdp;

namespace {

using Clock = std::chrono::steady_clock;

long elapsed_ms(Clock::time_point t0)
{
    return static_cast<long>(
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count());
}

template <class F>
void expect_system_error(F &&f, int code)
{
    try {
        f();
        ADD_FAILURE() << "no std::system_error thrown";
    } catch (const std::system_error &e) {
        EXPECT_EQ(e.code().value(), code) << e.what();
        EXPECT_EQ(&e.code().category(), &std::generic_category());
    }
}

// Runs `f` as the only user coroutine of a fresh scheduler.
template <class F>
void run(F &&f)
{
    coho::Scheduler s;
    s.spawn(std::forward<F>(f));
    s.run();
}

// The answer to a request: its body reversed, after `delay` ms when type says so (type >> 8).
std::string answer(const tdp::Request &rq)
{
    auto m = tdp::sock::decode(rq.frame());
    if (!m)
        throw std::runtime_error("not a sock frame");
    if (m->header.type >> 8)
        coho::this_co::sleep_for(std::chrono::milliseconds(m->header.type >> 8));
    std::string body(m->body.rbegin(), m->body.rend());
    return tdp::sock::encode_response(m->header, body);
}

// A handler that answers every request from a coroutine of its own. Move-only on purpose.
auto echo_handler(int *handled)
{
    auto token = std::make_unique<int>(7);
    return [token = std::move(token), handled](tdp::Request rq) {
        ASSERT_EQ(*token, 7);
        ++*handled;
        coho::spawn([rq = std::move(rq)] {
            try {
                rq.reply(answer(rq));
            } catch (const std::system_error &e) {
                EXPECT_EQ(e.code().value(), ENOTCONN); // the client went away first
            }
        });
    };
}

std::string reversed(const std::string &s)
{
    return std::string(s.rbegin(), s.rend());
}

} // namespace

TEST(TdpSock, EncodeDecodeRoundTrip)
{
    const std::string f = tdp::sock::encode_request(42, "hello", 3, 9);
    ASSERT_EQ(f.size(), COHO_SOCK_HDR_LEN + 5u);
    auto m = tdp::sock::decode(f);
    ASSERT_TRUE(m.has_value());
    EXPECT_EQ(m->header.magic, COHO_SOCK_MAGIC);
    EXPECT_EQ(m->header.seq, 42u);
    EXPECT_EQ(m->header.type, 3u);
    EXPECT_EQ(m->header.arg, 9u);
    EXPECT_EQ(m->header.body_len, 5u);
    EXPECT_EQ(m->body, "hello");
    EXPECT_FALSE(tdp::sock::is_response(m->header));

    auto r = tdp::sock::decode(tdp::sock::encode_response(m->header, "ok", 5));
    ASSERT_TRUE(r.has_value());
    EXPECT_TRUE(tdp::sock::is_response(r->header));
    EXPECT_EQ(r->header.seq, 42u);
    EXPECT_EQ(r->header.arg, 5u);
    EXPECT_EQ(r->body, "ok");
}

TEST(TdpSock, DecodeRejectsShortWrongMagicAndLengthMismatch)
{
    std::string f = tdp::sock::encode_request(1, "abc");
    EXPECT_FALSE(tdp::sock::decode(f.substr(0, COHO_SOCK_HDR_LEN - 1)).has_value());
    EXPECT_FALSE(tdp::sock::decode(f.substr(0, f.size() - 1)).has_value());
    EXPECT_FALSE(tdp::sock::decode(f + "x").has_value());
    f[0] ^= 1;
    EXPECT_FALSE(tdp::sock::decode(f).has_value());
}

TEST(TdpBuffer, MovesWithoutCopyingAndLeavesTheSourceEmpty)
{
    tdp::Buffer a(std::string(10000, 'q'));
    ASSERT_EQ(a.size(), 10000u);
    tdp::Buffer b(std::move(a));
    EXPECT_EQ(a.size(), 0u); // NOLINT(bugprone-use-after-move): the moved-from state is defined
    EXPECT_EQ(b.str(), std::string(10000, 'q'));
    tdp::Buffer c("x");
    c = std::move(b);
    EXPECT_EQ(c.size(), 10000u);
    char two[2];
    EXPECT_EQ(c.copy_out(9999, two, 2), 1u);
    EXPECT_EQ(two[0], 'q');
}

TEST(TdpPool, ManyCoroutinesGetTheirOwnResponses)
{
    int handled = 0, ok = 0;
    run([&] {
        auto srv = tdp::Pool::listen("127.0.0.1", 0, echo_handler(&handled));
        ASSERT_NE(srv.local_port(), 0);
        tdp::Options o;
        o.conn_count = 3;
        auto cli = tdp::Pool::connect("127.0.0.1", srv.local_port(), o);
        coho::WaitGroup wg;
        for (int c = 0; c < 30; c++) {
            wg.add();
            coho::spawn([&, c] {
                for (int i = 0; i < 10; i++) {
                    const std::string body = "req-" + std::to_string(c) + "-" + std::to_string(i);
                    uint64_t sent_id = 0;
                    tdp::Buffer resp = cli.request(
                        [&](uint64_t id) {
                            sent_id = id;
                            return tdp::sock::encode_request(id, body);
                        },
                        2s);
                    auto m = tdp::sock::decode(resp);
                    ASSERT_TRUE(m.has_value());
                    EXPECT_EQ(m->header.seq, sent_id);
                    EXPECT_EQ(m->body, reversed(body));
                    ok++;
                }
                wg.done();
            });
        }
        wg.wait();
        const tdp::Stats st = cli.stats();
        EXPECT_EQ(st.responses_in, 300u);
        EXPECT_EQ(st.in_flight, 0u);
        EXPECT_EQ(srv.stats().requests_in, 300u);
    });
    EXPECT_EQ(ok, 300);
    EXPECT_EQ(handled, 300);
}

TEST(TdpPool, LowLevelCallsPickSendWaitResp)
{
    int handled = 0;
    run([&] {
        auto srv = tdp::Pool::listen("::1", 0, echo_handler(&handled));
        auto cli = tdp::Pool::connect("::1", srv.local_port());
        const uint64_t conn = cli.pick(2s);
        const uint64_t id = cli.req_id();
        cli.send(conn, id, tdp::sock::encode_request(id, "abc"));
        auto m = tdp::sock::decode(cli.wait_resp(id, 2s));
        ASSERT_TRUE(m.has_value());
        EXPECT_EQ(m->body, "cba");
        expect_system_error([&] { cli.wait_resp(id, 10ms); }, ENOENT); // collected
        const uint64_t unused = cli.req_id();
        EXPECT_TRUE(cli.release(unused));
        EXPECT_FALSE(cli.release(unused));
    });
    EXPECT_EQ(handled, 1);
}

TEST(TdpPool, LateResponseThrowsEtimedoutAtTheTimeout)
{
    int handled = 0;
    run([&] {
        auto srv = tdp::Pool::listen("127.0.0.1", 0, echo_handler(&handled));
        auto cli = tdp::Pool::connect("127.0.0.1", srv.local_port());
        const auto t0 = Clock::now();
        expect_system_error(
            [&] {
                cli.request(
                    [](uint64_t id) { return tdp::sock::encode_request(id, "x", 300u << 8); },
                    50ms);
            },
            ETIMEDOUT);
        EXPECT_GE(elapsed_ms(t0), 50);
        EXPECT_LT(elapsed_ms(t0), 290);
        EXPECT_EQ(cli.stats().in_flight, 0u);
        coho::this_co::sleep_for(400ms); // the late answer arrives and is dropped
        EXPECT_EQ(cli.stats().responses_dropped, 1u);
    });
}

TEST(TdpPool, ExceptionEscapingOnReqIsContainedAndTheRequestFreed)
{
    int calls = 0;
    run([&] {
        auto srv = tdp::Pool::listen("127.0.0.1", 0, [&](tdp::Request rq) {
            if (calls++ == 0)
                throw std::runtime_error("first request fails");
            rq.reply(answer(rq)); // inline, from the receive coroutine
        });
        auto cli = tdp::Pool::connect("127.0.0.1", srv.local_port());
        expect_system_error(
            [&] {
                cli.request([](uint64_t id) { return tdp::sock::encode_request(id, "a"); }, 100ms);
            },
            ETIMEDOUT);
        auto m = tdp::sock::decode(
            cli.request([](uint64_t id) { return tdp::sock::encode_request(id, "xy"); }, 2s));
        ASSERT_TRUE(m.has_value());
        EXPECT_EQ(m->body, "yx");
        EXPECT_EQ(srv.stats().conns_open, 4u); // the connection survived the exception
    });
    EXPECT_EQ(calls, 2);
}

TEST(TdpPool, ReplyAfterTheServerClosedThrowsEnotconn)
{
    std::vector<tdp::Request> held;
    run([&] {
        auto srv = tdp::Pool::listen("127.0.0.1", 0,
                                     [&](tdp::Request rq) { held.push_back(std::move(rq)); });
        auto cli = tdp::Pool::connect("127.0.0.1", srv.local_port());
        auto waiter = coho::spawn([&] {
            expect_system_error(
                [&] {
                    cli.request([](uint64_t id) { return tdp::sock::encode_request(id, "z"); }, 5s);
                },
                ECONNRESET);
        });
        while (held.empty())
            coho::this_co::sleep_for(2ms);
        srv.close();
        EXPECT_FALSE(srv);
        ASSERT_EQ(held.size(), 1u);
        expect_system_error([&] { held[0].reply(answer(held[0])); }, ENOTCONN);
        coho::join(waiter);
    });
    held.clear(); // frees the request, and with it the closed pool's memory
}

TEST(TdpPool, ClosingTheClientFailsWaitersWithEcanceled)
{
    int handled = 0;
    run([&] {
        auto srv = tdp::Pool::listen("127.0.0.1", 0, echo_handler(&handled));
        auto cli = tdp::Pool::connect("127.0.0.1", srv.local_port());
        const auto t0 = Clock::now();
        auto waiter = coho::spawn([&] {
            expect_system_error(
                [&] {
                    cli.request(
                        [](uint64_t id) { return tdp::sock::encode_request(id, "s", 1000u << 8); },
                        5s);
                },
                ECANCELED);
        });
        coho::this_co::sleep_for(50ms);
        cli.close();
        coho::join(waiter);
        EXPECT_LT(elapsed_ms(t0), 500);
    });
}

TEST(TdpPool, CallbacksAndForEachConnSeeTheSameConnections)
{
    std::set<uint64_t> added, removed, seen;
    int handled = 0;
    run([&] {
        auto srv = tdp::Pool::listen("127.0.0.1", 0, echo_handler(&handled));
        tdp::Options o;
        o.conn_count = 2;
        o.on_conn_new = [&](uint64_t id) { EXPECT_TRUE(added.insert(id).second); };
        o.on_conn_delete = [&](uint64_t id, int err) {
            EXPECT_TRUE(removed.insert(id).second);
            EXPECT_NE(err, 0);
        };
        auto cli = tdp::Pool::connect("127.0.0.1", srv.local_port(), o);
        while (cli.stats().conns_open < 2)
            coho::this_co::sleep_for(2ms);
        cli.for_each_conn([&](uint64_t id, int fd) {
            EXPECT_GE(fd, 0);
            seen.insert(id);
        });
        EXPECT_TRUE(removed.empty());
        cli.close();
    });
    EXPECT_EQ(added.size(), 2u);
    EXPECT_EQ(added, seen);
    EXPECT_EQ(added, removed);
}

TEST(TdpPool, PickWithNothingToConnectToTimesOut)
{
    run([&] {
        tdp::Options o;
        o.conn_count = 1;
        auto cli = tdp::Pool::connect("127.0.0.1", 1, o); // refused
        EXPECT_FALSE(cli.try_pick().has_value());
        const auto t0 = Clock::now();
        expect_system_error([&] { cli.pick(50ms); }, ETIMEDOUT);
        EXPECT_GE(elapsed_ms(t0), 50);
        EXPECT_GE(cli.stats().reconnects, 1u);
        tdp::Pool moved(std::move(cli));
        EXPECT_FALSE(cli); // NOLINT(bugprone-use-after-move): the moved-from state is defined
        EXPECT_TRUE(moved);
    });
}

TEST(TdpPool, BadArgumentsThrow)
{
    expect_system_error([] { tdp::Pool::connect("127.0.0.1", 1); }, EPERM); // outside
    expect_system_error([] { tdp::Pool::connect("not an address", 1); }, EINVAL);
    run([] {
        tdp::Options o;
        o.framers.assign(COHO_TDP_MAX_FRAMERS + 1, nullptr);
        expect_system_error([&] { tdp::Pool::connect("127.0.0.1", 1, o); }, EINVAL);
        o.framers.clear();
        o.conn_count = 0;
        expect_system_error([&] { tdp::Pool::connect("127.0.0.1", 1, o); }, EINVAL);
    });
}

TEST(TdpPool, UdpPoolsAnswerEachRequestAtItsSender)
{
    int handled = 0, ok = 0;
    run([&] {
        auto srv = tdp::Pool::udp_listen("127.0.0.1", 0, [&](tdp::Request rq) {
            EXPECT_NE(rq.peer(), nullptr);
            handled++;
            rq.reply(answer(rq)); // inline: one datagram back to the sender
        });
        tdp::Options o;
        o.conn_count = 2;
        auto a = tdp::Pool::udp_connect("127.0.0.1", srv.local_port(), o);
        auto b = tdp::Pool::udp_connect("127.0.0.1", srv.local_port());
        coho::WaitGroup wg;
        for (int c = 0; c < 10; c++) {
            wg.add();
            coho::spawn([&, c] {
                tdp::Pool &p = c % 2 ? a : b;
                for (int i = 0; i < 5; i++) {
                    const std::string body(static_cast<size_t>(c * 10 + i), 'a' + c);
                    auto m = tdp::sock::decode(p.request(
                        [&](uint64_t id) { return tdp::sock::encode_request(id, body + "!"); },
                        2s));
                    ASSERT_TRUE(m.has_value());
                    EXPECT_EQ(m->body, reversed(body + "!"));
                    ok++;
                }
                wg.done();
            });
        }
        wg.wait();
        EXPECT_EQ(a.stats().conns_open, 2u);
        expect_system_error([&] { a.send(a.pick(), 0, std::string(70000, 'x')); }, EMSGSIZE);
    });
    EXPECT_EQ(ok, 50);
    EXPECT_EQ(handled, 50);
}

TEST(TdpPool, MaxConnReqsHoldsBackAPeerThatPipelines)
{
    int live = 0, live_max = 0, answered = 0;
    run([&] {
        tdp::Options o;
        o.max_conn_reqs = 3;
        auto srv = tdp::Pool::listen(
            "127.0.0.1", 0,
            [&](tdp::Request rq) {
                live_max = std::max(live_max, ++live);
                coho::spawn([&, rq = std::move(rq)]() mutable {
                    coho::this_co::sleep_for(2ms);
                    rq.reply(answer(rq));
                    live--;
                    tdp::Request gone(std::move(rq)); // frees it: room for the next
                });
            },
            o);
        int sv[2];
        ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        EXPECT_NE(srv.attach(sv[0]), 0u);
        std::string reqs;
        for (uint64_t i = 1; i <= 30; i++)
            reqs += tdp::sock::encode_request(i, "x");
        ASSERT_EQ(sendn(sv[1], reqs.data(), reqs.size(), 0), static_cast<ssize_t>(reqs.size()));
        std::string got(COHO_SOCK_HDR_LEN + 1, '\0');
        for (int i = 0; i < 30; i++) {
            ASSERT_EQ(recvn(sv[1], got.data(), got.size(), 0), static_cast<ssize_t>(got.size()));
            answered++;
        }
        EXPECT_EQ(srv.stats().conns_open, 1u);
        close(sv[1]);
    });
    EXPECT_EQ(answered, 30);
    EXPECT_EQ(live_max, 3);
}

TEST(TdpPool, AttachedSocketpairEndIsServedLikeAnAcceptedConnection)
{
    int handled = 0;
    run([&] {
        auto srv = tdp::Pool::listen("127.0.0.1", 0, echo_handler(&handled));
        int sv[2];
        ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        const uint64_t id = srv.attach(sv[0]);
        EXPECT_NE(id, 0u);
        const std::string req = tdp::sock::encode_request(5, "pair");
        ASSERT_EQ(sendn(sv[1], req.data(), req.size(), 0), static_cast<ssize_t>(req.size()));
        std::string got(COHO_SOCK_HDR_LEN + 4, '\0');
        ASSERT_EQ(recvn(sv[1], got.data(), got.size(), 0), static_cast<ssize_t>(got.size()));
        auto m = tdp::sock::decode(got);
        ASSERT_TRUE(m.has_value());
        EXPECT_EQ(m->header.seq, 5u);
        EXPECT_EQ(m->body, "riap");
        close(sv[1]);
        auto udp = tdp::Pool::udp_listen("127.0.0.1", 0, [](tdp::Request) {});
        ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        expect_system_error([&] { udp.attach(sv[0]); }, EINVAL);
        close(sv[0]);
        close(sv[1]);
    });
    EXPECT_EQ(handled, 1);
}
