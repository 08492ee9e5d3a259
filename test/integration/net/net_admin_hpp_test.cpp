// SPDX-License-Identifier: MIT
// coho/net.hpp's metrics and admin face: Metrics hands out Counter/Gauge/Histogram handles and
// renders them, bad names throw, Admin serves /stats sections written as lambdas (one that
// throws shows null), and a Server's counters registered through Metrics::add_server.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <system_error>

#include <coho/net.hpp>

namespace {

using namespace std::chrono_literals;

// GET `path` over a fresh connection with Connection: close; the whole response.
std::string http_get(int port, const std::string &path)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(port));
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    timeval tv{10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof(a)) != 0) {
        close(fd);
        return "";
    }
    std::string req = "GET " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    if (send(fd, req.data(), req.size(), MSG_NOSIGNAL) != ssize_t(req.size())) {
        close(fd);
        return "";
    }
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof(buf), 0)) > 0)
        out.append(buf, size_t(n));
    close(fd);
    return out;
}

TEST(NetHppMetrics, HandlesCountAndRender)
{
    coho::net::Metrics m;
    auto calls = m.counter("app_calls_total", "Calls.", {{"route", "login"}});
    auto players = m.gauge("app_players", "Players.");
    auto lat = m.histogram("app_call_seconds", "Latency.", {0.01, 0.1});
    ++calls;
    calls.add(2);
    players.inc();
    players.inc();
    players.dec();
    lat.observe(15ms);
    lat.observe(0.5);
    EXPECT_EQ(calls.value(), 3u);
    EXPECT_EQ(players.value(), 1.0);
    EXPECT_EQ(lat.count(), 2u);
    EXPECT_DOUBLE_EQ(lat.sum(), 0.515);
    // The same series again is the same handle.
    EXPECT_EQ(m.counter("app_calls_total", "Calls.", {{"route", "login"}}).native_handle(),
              calls.native_handle());

    std::string text = m.prometheus();
    EXPECT_NE(text.find("app_calls_total{route=\"login\"} 3\n"), std::string::npos) << text;
    EXPECT_NE(text.find("app_players 1\n"), std::string::npos) << text;
    EXPECT_NE(text.find("app_call_seconds_bucket{le=\"0.1\"} 1\n"), std::string::npos) << text;
    EXPECT_NE(text.find("app_call_seconds_bucket{le=\"+Inf\"} 2\n"), std::string::npos) << text;
    EXPECT_NE(m.json().find("\"app_players\":{\"type\":\"gauge\""), std::string::npos);
}

TEST(NetHppMetrics, BadRegistrationsThrowEinval)
{
    coho::net::Metrics m;
    m.counter("ok_total", "OK.");
    try {
        m.gauge("ok_total", "Another type.");
        FAIL() << "no exception";
    } catch (const std::system_error &e) {
        EXPECT_EQ(e.code().value(), EINVAL);
    }
    EXPECT_THROW(m.counter("bad-name", "x"), std::system_error);
    EXPECT_THROW(m.histogram("h", "x", {2, 1}), std::system_error);
}

TEST(NetHppAdmin, ServesSectionsAndServerCounters)
{
    coho::net::Metrics m;
    coho::net::Server echo("127.0.0.1:0", [](coho::net::Conn &c) {
        while (auto f = c.read())
            c.send(*f);
    });
    m.add_server(echo, "echo");
    EXPECT_THROW(m.add_server(echo, "again"), std::system_error);

    coho::net::Admin admin("127.0.0.1:0", &m);
    ASSERT_GT(admin.port(), 0);
    admin.add_section("app", [](coho::net::Json &j) {
        j.raw("{\"n\":").number(3).raw(",\"x\":").number(0.5).raw(",\"s\":").string("a\"b\n");
        j.raw("}");
    });
    admin.add_section("broken", [](coho::net::Json &j) {
        j.raw("{\"half\":");
        throw std::runtime_error("section failed");
    });
    EXPECT_THROW(admin.add_section("app", [](coho::net::Json &) {}), std::system_error);

    std::string r = http_get(admin.port(), "/stats");
    EXPECT_EQ(r.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << r;
    EXPECT_NE(r.find("\"app\":{\"n\":3,\"x\":0.5,\"s\":\"a\\\"b\\u000a\"}"), std::string::npos)
        << r;
    EXPECT_NE(r.find("\"broken\":null"), std::string::npos) << r;
    EXPECT_TRUE(admin.remove_section("broken"));
    EXPECT_FALSE(admin.remove_section("broken"));

    r = http_get(admin.port(), "/metrics");
    EXPECT_NE(r.find("coho_server_accepted_total{server=\"echo\"} 0\n"), std::string::npos) << r;
    admin.stop();
    admin.stop(); // a second stop does nothing
    EXPECT_EQ(admin.port(), -1);
}

} // namespace
