// SPDX-License-Identifier: MIT
// libcoho_net over TLS: a self-signed certificate made at test time (the openssl command), real
// clients (Python's ssl module; python3-websockets over wss), handshake garbage, bad files.
// ctest: TIMEOUT=120
#include <arpa/inet.h>
#include <errno.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <string>

#include <coho.h>
#include <coho/net.h>

namespace {

// A fresh key and self-signed certificate for "localhost" in a temporary directory.
struct Cert {
    std::string dir, cert, key;
    Cert()
    {
        char tmpl[] = "/tmp/coho-tls-XXXXXX";
        dir = mkdtemp(tmpl);
        cert = dir + "/cert.pem";
        key = dir + "/key.pem";
        std::string cmd = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
                          "-days 1 -subj /CN=localhost -addext subjectAltName=DNS:localhost "
                          "-keyout " +
                          key + " -out " + cert + " 2>/dev/null";
        ok = std::system(cmd.c_str()) == 0;
    }
    ~Cert()
    {
        unlink(cert.c_str());
        unlink(key.c_str());
        rmdir(dir.c_str());
    }
    bool ok = false;
};

std::atomic<int> handlers{0};

void echo(coho_conn_t *c, void *)
{
    handlers++;
    coho_cbuf_t f;
    coho_cbuf_init(&f, nullptr);
    ssize_t n;
    while ((n = coho_conn_read_frame(c, &f)) > 0)
        coho_conn_send(c, coho_cbuf_linearize(&f, size_t(n)), size_t(n));
    coho_cbuf_destroy(&f);
}

coho_server_t *start(const Cert &c, bool ws)
{
    coho_server_opts_t o;
    coho_server_opts_init(&o);
    o.tls_cert_file = c.cert.c_str();
    o.tls_key_file = c.key.c_str();
    o.websocket = ws;
    o.max_frame = 200000;
    return coho_server_start("127.0.0.1:0", &o, echo, nullptr);
}

std::string client(const char *mode, int port, const Cert &c)
{
    return std::string("/usr/bin/python3 ") + COHO_SOURCE_DIR +
           "/test/integration/net/tls_client.py " + mode + " " + std::to_string(port) + " " +
           c.cert;
}

TEST(NetTls, RealClientEchoesFramesOverTls)
{
    Cert c;
    ASSERT_TRUE(c.ok) << "openssl req";
    coho_server_t *s = start(c, false);
    ASSERT_NE(s, nullptr) << strerror(errno);
    EXPECT_EQ(std::system(client("tcp", coho_server_port(s), c).c_str()), 0);
    EXPECT_EQ(coho_server_stop(s, 1000), 0);
}

TEST(NetTls, RealWebSocketClientOverWss)
{
    Cert c;
    ASSERT_TRUE(c.ok);
    coho_server_t *s = start(c, true);
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(std::system(client("wss", coho_server_port(s), c).c_str()), 0);
    EXPECT_EQ(coho_server_stop(s, 1000), 0);
}

TEST(NetTls, HandshakeGarbageIsClosedAndCounted)
{
    Cert c;
    ASSERT_TRUE(c.ok);
    handlers = 0;
    coho_server_t *s = start(c, false);
    ASSERT_NE(s, nullptr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(coho_server_port(s)));
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    timeval tv{5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof(a)), 0);
    const char junk[] = "GET / HTTP/1.1\r\nHost: not-tls\r\n\r\n";
    ASSERT_EQ(send(fd, junk, sizeof(junk) - 1, MSG_NOSIGNAL), ssize_t(sizeof(junk) - 1));
    char buf[256];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) {
    } // perhaps an alert, then the close
    EXPECT_EQ(n, 0);
    close(fd);
    coho_server_stats_t st{};
    for (int i = 0; i < 500 && st.protocol_errors == 0; i++) {
        coho_server_get_stats(s, &st);
        usleep(2000);
    }
    EXPECT_EQ(st.protocol_errors, 1u);
    EXPECT_EQ(handlers.load(), 0) << "no handler runs without a handshake";
    EXPECT_EQ(coho_server_stop(s, 1000), 0);
}

TEST(NetTls, UnreadableOrMismatchedFilesAreEinval)
{
    Cert c, other;
    ASSERT_TRUE(c.ok && other.ok);
    coho_server_opts_t o;
    coho_server_opts_init(&o);
    o.tls_cert_file = "/nonexistent/cert.pem";
    o.tls_key_file = c.key.c_str();
    errno = 0;
    EXPECT_EQ(coho_server_start("127.0.0.1:0", &o, echo, nullptr), nullptr);
    EXPECT_EQ(errno, EINVAL);
    o.tls_cert_file = c.cert.c_str();
    o.tls_key_file = other.key.c_str(); // not this certificate's key
    errno = 0;
    EXPECT_EQ(coho_server_start("127.0.0.1:0", &o, echo, nullptr), nullptr);
    EXPECT_EQ(errno, EINVAL);
    o.tls_key_file = nullptr; // half a pair
    EXPECT_EQ(coho_server_start("127.0.0.1:0", &o, echo, nullptr), nullptr);
    EXPECT_EQ(errno, EINVAL);
}

} // namespace
