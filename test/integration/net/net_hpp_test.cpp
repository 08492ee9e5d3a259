// SPDX-License-Identifier: MIT
// coho/net.hpp: a Server whose handler is a lambda, Conn reads and sends, Group broadcasts, the
// RAII stop, an exception escaping a handler, dial inside a coho::Scheduler.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <system_error>
#include <thread>

#include <coho/net.hpp>

namespace {

using namespace std::chrono_literals;

int connect_lo(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(port));
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    timeval tv{5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

std::string read_line(int fd)
{
    std::string s;
    char ch;
    while (recv(fd, &ch, 1, 0) == 1) {
        s += ch;
        if (ch == '\n')
            break;
    }
    return s;
}

TEST(NetHpp, LambdaHandlerEchoesAndGroupBroadcasts)
{
    coho::net::Group room;
    std::atomic<int> ended{0};
    coho::net::Server::Options o;
    o.framing = COHO_FRAMING_LINE;
    coho::net::Server srv("127.0.0.1:0", o, [&](coho::net::Conn &c) {
        room.add(c.id());
        std::string line;
        while (c.read(line)) {
            if (line == "all\n")
                room.broadcast("to all\n");
            else
                c.send(line);
        }
        room.remove(c.id());
        ended++;
    });
    ASSERT_GT(srv.port(), 0);
    int a = connect_lo(srv.port()), b = connect_lo(srv.port());
    ASSERT_EQ(send(a, "ping\n", 5, 0), 5);
    EXPECT_EQ(read_line(a), "ping\n");
    ASSERT_EQ(send(b, "pong\n", 5, 0), 5); // b's handler has joined once this comes back
    EXPECT_EQ(read_line(b), "pong\n");
    ASSERT_EQ(send(a, "all\n", 4, 0), 4);
    EXPECT_EQ(read_line(a), "to all\n");
    EXPECT_EQ(read_line(b), "to all\n");
    EXPECT_EQ(room.size(), 2u);
    close(a);
    close(b);
    srv.stop();
    EXPECT_EQ(ended.load(), 2);
    EXPECT_EQ(srv.port(), -1);
}

TEST(NetHpp, ExceptionEscapingAHandlerEndsOnlyThatConnection)
{
    coho::net::Server::Options o;
    o.framing = COHO_FRAMING_LINE;
    coho::net::Server srv("127.0.0.1:0", o, [](coho::net::Conn &c) {
        while (auto line = c.read()) {
            if (*line == "throw\n")
                throw std::runtime_error("handler gave up");
            c.send(*line);
        }
    });
    int a = connect_lo(srv.port());
    ASSERT_EQ(send(a, "throw\n", 6, 0), 6);
    char ch;
    EXPECT_EQ(recv(a, &ch, 1, 0), 0) << "the connection closed";
    int b = connect_lo(srv.port());
    ASSERT_EQ(send(b, "fine\n", 5, 0), 5);
    EXPECT_EQ(read_line(b), "fine\n");
    close(a);
    close(b);
}

TEST(NetHpp, StartOnBadAddressThrows)
{
    EXPECT_THROW(coho::net::Server("not an address", [](coho::net::Conn &) {}), std::system_error);
}

TEST(NetHpp, DialAndSendToFromACoroutine)
{
    std::atomic<uint64_t> id{0};
    coho::net::Server srv("127.0.0.1:0", [&](coho::net::Conn &c) {
        id = c.id();
        while (c.read()) {
        }
    });
    std::string got;
    coho::Scheduler s;
    s.spawn([&] {
        int fd = coho::net::dial("127.0.0.1:" + std::to_string(srv.port()), 1s);
        while (id == 0)
            coho::this_co::sleep_for(1ms);
        EXPECT_TRUE(coho::net::send_to(id, coho::net::lenpfx_frame("pushed")));
        char buf[10];
        if (recvn(fd, buf, sizeof(buf), 0) == ssize_t(sizeof(buf)))
            got.assign(buf, sizeof(buf));
        close(fd);
    });
    s.run();
    EXPECT_EQ(got, std::string("\x06\x00\x00\x00pushed", 10));
    EXPECT_THROW(coho::net::dial("127.0.0.1:1", 1s), std::system_error);
}

} // namespace
