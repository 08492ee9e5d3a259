// SPDX-License-Identifier: MIT
// libcoho_net WebSocket servers: a real client (python3-websockets) end to end, and a raw client
// for what a real one never sends: bad upgrade requests, unmasked frames, oversize messages,
// continuation of nothing, control frames inside a fragmented message; broadcast to WebSocket and
// TCP members of one group (each transport encoded once).
// ctest: TIMEOUT=120
#include <arpa/inet.h>
#include <errno.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include <coho.h>
#include <coho/net.h>

namespace {

int connect_to(int port)
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

bool send_all(int fd, const std::string &b)
{
    return send(fd, b.data(), b.size(), MSG_NOSIGNAL) == ssize_t(b.size());
}

bool recv_all(int fd, void *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = recv(fd, static_cast<char *>(buf) + got, len - got, 0);
        if (n <= 0)
            return false;
        got += size_t(n);
    }
    return true;
}

// The response head of an upgrade (up to the blank line).
std::string recv_head(int fd)
{
    std::string s;
    char ch;
    while (s.size() < 4 || s.compare(s.size() - 4, 4, "\r\n\r\n") != 0) {
        if (recv(fd, &ch, 1, 0) != 1)
            break;
        s += ch;
    }
    return s;
}

const char *kUpgrade = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: "
                       "keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                       "Sec-WebSocket-Version: 13\r\n\r\n";

// A client frame: masked unless `mask` is false.
std::string ws_frame(int opcode, const std::string &payload, bool fin = true, bool mask = true)
{
    std::string f;
    f += char((fin ? 0x80 : 0) | opcode);
    size_t n = payload.size();
    unsigned char m = mask ? 0x80 : 0;
    if (n < 126) {
        f += char(m | n);
    } else if (n <= 0xffff) {
        f += char(m | 126);
        f += char(n >> 8);
        f += char(n & 0xff);
    } else {
        f += char(m | 127);
        for (int i = 7; i >= 0; i--)
            f += char((uint64_t(n) >> (8 * i)) & 0xff);
    }
    const unsigned char key[4] = {0x12, 0x34, 0x56, 0x78};
    if (mask)
        f.append(reinterpret_cast<const char *>(key), 4);
    for (size_t i = 0; i < n; i++)
        f += mask ? char(payload[i] ^ key[i % 4]) : payload[i];
    return f;
}

// Reads one server frame; false on EOF. Server frames are never masked.
bool ws_read(int fd, int *opcode, std::string *payload)
{
    unsigned char h[2];
    if (!recv_all(fd, h, 2))
        return false;
    if (h[1] & 0x80)
        return false; // a masked server frame is an error
    uint64_t n = h[1] & 0x7f;
    if (n == 126 || n == 127) {
        unsigned char ext[8];
        int k = n == 126 ? 2 : 8;
        if (!recv_all(fd, ext, size_t(k)))
            return false;
        n = 0;
        for (int i = 0; i < k; i++)
            n = n << 8 | ext[i];
    }
    *opcode = h[0] & 0x0f;
    payload->assign(n, '\0');
    return n == 0 || recv_all(fd, &(*payload)[0], n);
}

unsigned close_code(const std::string &p)
{
    return p.size() >= 2 ? unsigned((unsigned char)p[0]) << 8 | (unsigned char)p[1] : 0;
}

struct Record {
    std::mutex mu;
    std::vector<int> ends;
    std::vector<uint64_t> ids;
    std::atomic<int> ended{0};
    coho_group_t *group = nullptr;
};

void echo(coho_conn_t *c, void *user)
{
    auto *r = static_cast<Record *>(user);
    coho_cbuf_t f;
    coho_cbuf_init(&f, nullptr);
    {
        std::lock_guard<std::mutex> g(r->mu);
        r->ids.push_back(coho_conn_id(c));
    }
    if (r->group)
        coho_group_add(r->group, coho_conn_id(c));
    ssize_t n;
    while ((n = coho_conn_read_frame(c, &f)) > 0)
        coho_conn_send(c, coho_cbuf_linearize(&f, size_t(n)), size_t(n));
    int err = n == 0 ? 0 : errno;
    {
        std::lock_guard<std::mutex> g(r->mu);
        r->ends.push_back(err);
    }
    coho_cbuf_destroy(&f);
    r->ended++;
}

struct WsServer {
    Record rec;
    coho_server_t *s = nullptr;
    int port = 0;
    explicit WsServer(size_t max_frame = 65536 * 2)
    {
        coho_server_opts_t o;
        coho_server_opts_init(&o);
        o.websocket = true;
        o.ws_path = "/ws";
        o.max_frame = max_frame;
        s = coho_server_start("127.0.0.1:0", &o, echo, &rec);
        if (s)
            port = coho_server_port(s);
    }
    ~WsServer()
    {
        if (s)
            coho_server_stop(s, 1000);
    }
    std::vector<int> ends()
    {
        std::lock_guard<std::mutex> g(rec.mu);
        return rec.ends;
    }
};

bool wait_until(const std::function<bool()> &pred, int ms = 5000)
{
    for (int i = 0; i < ms / 2 && !pred(); i++)
        usleep(2000);
    return pred();
}

int upgraded(int port)
{
    int fd = connect_to(port);
    if (fd < 0 || !send_all(fd, kUpgrade))
        return -1;
    std::string head = recv_head(fd);
    if (head.find("101 Switching Protocols") == std::string::npos ||
        head.find("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == std::string::npos) {
        close(fd);
        return -1;
    }
    return fd;
}

TEST(NetWs, RealClientTalksBinaryTextFragmentsPingAndClose)
{
    WsServer srv;
    ASSERT_NE(srv.s, nullptr);
    // Debian's interpreter: python3-websockets is installed for it (tools/deps.sh).
    std::string cmd = std::string("/usr/bin/python3 ") + COHO_SOURCE_DIR +
                      "/test/integration/net/ws_client.py " + std::to_string(srv.port) + " /ws";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    ASSERT_TRUE(wait_until([&] { return srv.rec.ended == 1; }));
    EXPECT_EQ(srv.ends(), std::vector<int>{0});
}

TEST(NetWs, UpgradeAnswersRfcAcceptKeyAndEchoesMessages)
{
    WsServer srv;
    int fd = upgraded(srv.port);
    ASSERT_GE(fd, 0) << "101 with the RFC 6455 example's accept key";
    ASSERT_TRUE(send_all(fd, ws_frame(2, "hello")));
    int op;
    std::string p;
    ASSERT_TRUE(ws_read(fd, &op, &p));
    EXPECT_EQ(op, 2);
    EXPECT_EQ(p, "hello");
    // A fragmented text message with a ping between its fragments: pong first, then the whole.
    ASSERT_TRUE(send_all(fd, ws_frame(1, "ab", false) + ws_frame(9, "p!") +
                                 ws_frame(0, "cd", false) + ws_frame(0, "ef", true)));
    ASSERT_TRUE(ws_read(fd, &op, &p));
    EXPECT_EQ(op, 10);
    EXPECT_EQ(p, "p!");
    ASSERT_TRUE(ws_read(fd, &op, &p));
    EXPECT_EQ(p, "abcdef");
    // The close handshake: the server answers with the same code, then closes.
    ASSERT_TRUE(send_all(fd, ws_frame(8, std::string("\x03\xe8", 2))));
    ASSERT_TRUE(ws_read(fd, &op, &p));
    EXPECT_EQ(op, 8);
    EXPECT_EQ(close_code(p), 1000u);
    char ch;
    EXPECT_EQ(recv(fd, &ch, 1, 0), 0);
    close(fd);
    ASSERT_TRUE(wait_until([&] { return srv.rec.ended == 1; }));
    EXPECT_EQ(srv.ends(), std::vector<int>{0});
}

TEST(NetWs, FrameSplitByteByByteIsReassembled)
{
    WsServer srv;
    int fd = upgraded(srv.port);
    ASSERT_GE(fd, 0);
    std::string f = ws_frame(2, std::string(300, 'q'));
    for (char ch : f) {
        ASSERT_EQ(send(fd, &ch, 1, MSG_NOSIGNAL), 1);
        usleep(100);
    }
    int op;
    std::string p;
    ASSERT_TRUE(ws_read(fd, &op, &p));
    EXPECT_EQ(p, std::string(300, 'q'));
    close(fd);
}

TEST(NetWs, UnmaskedClientFrameIsClosedWith1002)
{
    WsServer srv;
    int fd = upgraded(srv.port);
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(send_all(fd, ws_frame(2, "naked", true, false)));
    int op;
    std::string p;
    ASSERT_TRUE(ws_read(fd, &op, &p));
    EXPECT_EQ(op, 8);
    EXPECT_EQ(close_code(p), 1002u);
    ASSERT_TRUE(wait_until([&] { return srv.rec.ended == 1; }));
    EXPECT_EQ(srv.ends(), std::vector<int>{EPROTO});
    close(fd);
}

TEST(NetWs, OversizeMessageIsClosedWith1009AtItsFirstBytes)
{
    WsServer srv(1000);
    int fd = upgraded(srv.port);
    ASSERT_GE(fd, 0);
    // Fragments that add up past max_frame: the one that crosses it is refused with its first
    // payload bytes, long before the rest.
    std::string big =
        ws_frame(2, std::string(600, 'a'), false) + ws_frame(0, std::string(600, 'b'));
    ASSERT_TRUE(send_all(fd, big.substr(0, big.size() - 590)));
    int op;
    std::string p;
    ASSERT_TRUE(ws_read(fd, &op, &p));
    EXPECT_EQ(op, 8);
    EXPECT_EQ(close_code(p), 1009u);
    ASSERT_TRUE(wait_until([&] { return srv.rec.ended == 1; }));
    EXPECT_EQ(srv.ends(), std::vector<int>{EMSGSIZE});
    close(fd);
}

TEST(NetWs, ContinuationOfNothingAndReservedBitsAreProtocolErrors)
{
    WsServer srv;
    for (const std::string &bad : {ws_frame(0, "x"), std::string("\xc2\x80\0\0\0\0", 6),
                                   ws_frame(9, "ping", false), ws_frame(3, "op3")}) {
        int fd = upgraded(srv.port);
        ASSERT_GE(fd, 0);
        ASSERT_TRUE(send_all(fd, bad));
        int op;
        std::string p;
        ASSERT_TRUE(ws_read(fd, &op, &p));
        EXPECT_EQ(op, 8);
        EXPECT_EQ(close_code(p), 1002u);
        close(fd);
    }
    ASSERT_TRUE(wait_until([&] { return srv.rec.ended == 4; }));
    EXPECT_EQ(srv.ends(), (std::vector<int>{EPROTO, EPROTO, EPROTO, EPROTO}));
}

TEST(NetWs, BadUpgradeRequestsAreRefused)
{
    WsServer srv;
    struct Case {
        std::string req;
        const char *status;
    } cases[] = {
        {"GET /ws HTTP/1.1\r\nHost: x\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
         "Sec-WebSocket-Version: 13\r\n\r\n",
         "400"}, // no Upgrade/Connection
        {"POST /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
         "400"}, // not GET
        {"GET /other HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
         "404"}, // wrong path
        {"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n",
         "400"}, // bad key
        {"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
         "426"}, // old version
        {"garbage\r\n\r\n", "400"},
        {"GET /ws HTTP/1.1\r\nX: " + std::string(9000, 'x') + "\r\n\r\n", "431"},
    };
    for (auto &cs : cases) {
        int fd = connect_to(srv.port);
        ASSERT_GE(fd, 0);
        (void)send_all(fd, cs.req);
        std::string head = recv_head(fd);
        EXPECT_EQ(head.compare(0, 12, std::string("HTTP/1.1 ") + cs.status), 0)
            << cs.req.substr(0, 40) << " -> " << head;
        char ch;
        EXPECT_LE(recv(fd, &ch, 1, 0), 0) << "closed after the refusal";
        close(fd);
    }
    coho_server_stats_t st{};
    coho_server_get_stats(srv.s, &st);
    EXPECT_EQ(st.protocol_errors, 7u);
    EXPECT_EQ(srv.rec.ended.load(), 0) << "no handler ran";
}

TEST(NetWs, BroadcastReachesWebSocketAndTcpMembers)
{
    coho_group_t *g = coho_group_create();
    WsServer ws;
    ws.rec.group = g;
    Record tcp_rec;
    tcp_rec.group = g;
    coho_server_opts_t o;
    coho_server_opts_init(&o);
    coho_server_t *tcp = coho_server_start("127.0.0.1:0", &o, echo, &tcp_rec);
    ASSERT_NE(tcp, nullptr);
    std::vector<int> wsfds;
    for (int i = 0; i < 3; i++)
        wsfds.push_back(upgraded(ws.port));
    int t = connect_to(coho_server_port(tcp));
    ASSERT_TRUE(wait_until([&] { return coho_group_count(g) == 4; }));
    std::string msg = std::string("\x05\0\0\0", 4) + "hello";
    ASSERT_EQ(coho_group_broadcast(g, msg.data(), msg.size()), 0);
    for (int fd : wsfds) {
        int op;
        std::string p;
        ASSERT_TRUE(ws_read(fd, &op, &p));
        EXPECT_EQ(op, 2);
        EXPECT_EQ(p, msg) << "one message holds the frame";
        close(fd);
    }
    char buf[9];
    ASSERT_TRUE(recv_all(t, buf, 9));
    EXPECT_EQ(std::string(buf, 9), msg) << "TCP members get the bare frame";
    close(t);
    coho_server_stop(tcp, 1000);
    coho_server_stop(ws.s, 1000);
    ws.s = nullptr;
    coho_group_destroy(g);
}

} // namespace
