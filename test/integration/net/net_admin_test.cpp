// SPDX-License-Identifier: MIT
// The admin HTTP server end to end over loopback: /metrics accepted by promtool (Debian's
// prometheus package, required: tools/deps.sh installs it), /stats parsed as JSON by Python,
// /coroutines naming a parked coroutine of another thread's scheduler, 404/405/400/431, keep-
// alive, a request split byte by byte, a request with a body, and a server's counters moving as
// clients connect, send and are shed.
// ctest: TIMEOUT=120
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <thread>

#include <coho.h>
#include <coho/net.h>

namespace {

int connect_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    timeval tv{10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(port));
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

bool send_all(int fd, const std::string &s)
{
    size_t off = 0;
    while (off < s.size()) {
        ssize_t n = send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
        if (n <= 0)
            return false;
        off += size_t(n);
    }
    return true;
}

struct Response {
    int status = 0; // 0: no response (EOF, timeout or garbage)
    std::string head, body;

    std::string header(const std::string &name) const
    {
        std::string key = "\r\n" + name + ": ";
        size_t at = head.find(key);
        if (at == std::string::npos)
            return "";
        size_t end = head.find("\r\n", at + key.size());
        return head.substr(at + key.size(), end - at - key.size());
    }
};

// Reads one response (head, then Content-Length bytes of body); `rest` keeps what follows.
Response read_response(int fd, std::string &rest)
{
    Response r;
    std::string &buf = rest;
    char tmp[65536];
    size_t end;

    while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
        ssize_t n = recv(fd, tmp, sizeof(tmp), 0);
        if (n <= 0)
            return r;
        buf.append(tmp, size_t(n));
    }
    r.head = buf.substr(0, end + 2);
    buf.erase(0, end + 4);
    if (sscanf(r.head.c_str(), "HTTP/1.1 %d", &r.status) != 1)
        return Response{};
    size_t len = std::stoul(r.header("Content-Length").empty() ? "0" : r.header("Content-Length"));
    while (buf.size() < len) {
        ssize_t n = recv(fd, tmp, sizeof(tmp), 0);
        if (n <= 0)
            return Response{};
        buf.append(tmp, size_t(n));
    }
    r.body = buf.substr(0, len);
    buf.erase(0, len);
    return r;
}

// True when the peer closed: recv returns 0, or ECONNRESET when the peer closed with our bytes
// unread (not a timeout).
bool peer_closed(int fd)
{
    char c;
    ssize_t n = recv(fd, &c, 1, 0);
    return n == 0 || (n < 0 && errno == ECONNRESET);
}

Response get(int port, const std::string &path)
{
    int fd = connect_to(port);
    std::string rest;
    if (fd < 0)
        return Response{};
    send_all(fd, "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    Response r = read_response(fd, rest);
    close(fd);
    return r;
}

std::string temp_file(const std::string &contents)
{
    char path[] = "/tmp/coho-admin-XXXXXX";
    int fd = mkstemp(path);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(write(fd, contents.data(), contents.size()), ssize_t(contents.size()));
    close(fd);
    return path;
}

// Runs `cmd` with /bin/sh; its exit status (127: not found), and its output in *out.
int run(const std::string &cmd, std::string *out)
{
    FILE *p = popen((cmd + " 2>&1").c_str(), "r");
    char buf[4096];
    size_t n;
    if (p == nullptr)
        return -1;
    while ((n = fread(buf, 1, sizeof(buf), p)) > 0)
        out->append(buf, n);
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

class Admin : public ::testing::Test {
protected:
    void SetUp() override
    {
        m_ = coho_metrics_create();
        ASSERT_NE(m_, nullptr);
        a_ = coho_admin_start("127.0.0.1:0", m_, nullptr);
        ASSERT_NE(a_, nullptr) << strerror(errno);
        port_ = coho_admin_port(a_);
        ASSERT_GT(port_, 0);
    }
    void TearDown() override
    {
        if (a_ != nullptr) {
            EXPECT_EQ(coho_admin_stop(a_), 0);
        }
        coho_metrics_destroy(m_);
    }

    coho_metrics_t *m_ = nullptr;
    coho_admin_t *a_ = nullptr;
    int port_ = 0;
};

void echo(coho_conn_t *c, void *)
{
    coho_cbuf_t f;
    ssize_t n;
    coho_cbuf_init(&f, nullptr);
    while ((n = coho_conn_read_frame(c, &f)) > 0)
        coho_conn_send(c, coho_cbuf_linearize(&f, size_t(n)), size_t(n));
    coho_cbuf_destroy(&f);
}

TEST_F(Admin, MetricsPageIsAcceptedByPromtool)
{
    coho_label_t route[] = {{"route", "a \"quoted\\ path\nwith a newline"}};
    const double bounds[] = {0.001, 0.01, 0.1, 1};
    coho_counter_add(coho_metrics_counter(m_, "game_calls_total", "Calls served.", route, 1), 7);
    coho_gauge_set(coho_metrics_gauge(m_, "game_players", "Players online.", nullptr, 0), 12);
    coho_histogram_t *h = coho_metrics_histogram(m_, "game_call_duration_seconds", "Call latency.",
                                                 route, 1, bounds, 4);
    for (int i = 0; i < 100; i++)
        coho_histogram_observe(h, i / 50.0);
    coho_server_t *s = coho_server_start("127.0.0.1:0", nullptr, echo, nullptr);
    ASSERT_NE(s, nullptr);
    ASSERT_EQ(coho_server_register_metrics(s, m_, "echo"), 0);

    Response r = get(port_, "/metrics");
    ASSERT_EQ(r.status, 200);
    EXPECT_EQ(r.header("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
    EXPECT_NE(r.body.find("# TYPE game_call_duration_seconds histogram\n"), std::string::npos);
    EXPECT_NE(r.body.find("le=\"+Inf\"} 100\n"), std::string::npos);
    EXPECT_NE(r.body.find("coho_server_accepted_total{server=\"echo\"} 0\n"), std::string::npos);

    std::string file = temp_file(r.body), out;
    int rc = run("promtool check metrics < " + file, &out);
    unlink(file.c_str());
    ASSERT_NE(rc, 127) << "promtool is required (Debian package prometheus; tools/deps.sh test)";
    EXPECT_EQ(rc, 0) << out << "\n--- the page:\n" << r.body;
    EXPECT_EQ(out, "") << out;
    EXPECT_EQ(coho_server_stop(s, 1000), 0);
}

void section(coho_admin_json_t *out, void *arg)
{
    coho_admin_json_printf(out, "{\"answer\":%d,\"who\":", *static_cast<int *>(arg));
    coho_admin_json_string(out, "tab\there \"q\"");
    coho_admin_json_raw(out, "}");
}

void silent_section(coho_admin_json_t *, void *) {}

TEST_F(Admin, StatsPageIsJsonWithTheRegistryAndSections)
{
    int answer = 42;
    coho_counter_add(coho_metrics_counter(m_, "jobs_total", "Jobs.", nullptr, 0), 3);
    ASSERT_EQ(coho_admin_add_section(a_, "mine", section, &answer), 0);
    ASSERT_EQ(coho_admin_add_section(a_, "quiet", silent_section, nullptr), 0);
    EXPECT_EQ(coho_admin_add_section(a_, "mine", section, &answer), -1);
    EXPECT_EQ(errno, EEXIST);
    EXPECT_EQ(coho_admin_add_section(a_, "metrics", section, &answer), -1);
    EXPECT_EQ(errno, EINVAL);

    Response r = get(port_, "/stats");
    ASSERT_EQ(r.status, 200);
    EXPECT_EQ(r.header("Content-Type"), "application/json");
    std::string file = temp_file(r.body), out;
    int rc = run("/usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); "
                 "assert d[\"mine\"] == {\"answer\": 42, \"who\": \"tab\\there \\\"q\\\"\"}, d; "
                 "assert d[\"quiet\"] is None, d; "
                 "assert d[\"metrics\"][\"jobs_total\"][\"series\"][0][\"value\"] == 3, d' " +
                     file,
                 &out);
    unlink(file.c_str());
    EXPECT_EQ(rc, 0) << out << "\n--- the page:\n" << r.body;

    ASSERT_EQ(coho_admin_remove_section(a_, "mine"), 0);
    EXPECT_EQ(coho_admin_remove_section(a_, "mine"), -1);
    EXPECT_EQ(errno, ENOENT);
    r = get(port_, "/stats");
    EXPECT_EQ(r.body.find("\"mine\""), std::string::npos);
}

struct Parked {
    coho_chan_t *release;
};

void parked_main(void *arg)
{
    auto *p = static_cast<Parked *>(arg);
    int v;
    coho_set_name(0, "parked-worker");
    coho_chan_recv(p->release, &v);
}

TEST_F(Admin, CoroutinesPageListsAParkedCoroutineOfAnotherThread)
{
    Parked p{coho_chan_create(sizeof(int), 1)};
    ASSERT_NE(p.release, nullptr);
    // A scheduler belongs to the thread that creates it.
    std::atomic<coho_sched_t *> made{nullptr};
    std::atomic<bool> removed{false};
    std::thread t([&] {
        coho_sched_t *own = coho_sched_create(nullptr);
        if (own != nullptr && coho_spawn(own, parked_main, &p) == 0) {
            coho_sched_destroy(own);
            own = nullptr;
        }
        made = own != nullptr ? own : reinterpret_cast<coho_sched_t *>(1);
        if (own == nullptr)
            return;
        coho_sched_run(own);
        while (!removed) // removed from the admin server before it is destroyed
            usleep(1000);
        coho_sched_destroy(own);
    });
    while (made.load() == nullptr)
        usleep(1000);
    coho_sched_t *s = made.load();
    ASSERT_NE(s, reinterpret_cast<coho_sched_t *>(1));
    ASSERT_EQ(coho_admin_add_sched(a_, s, "workers"), 0);
    EXPECT_EQ(coho_admin_add_sched(a_, s, "again"), -1);
    EXPECT_EQ(errno, EEXIST);

    // The worker names itself once it runs: poll until the dump shows it.
    Response r;
    for (int i = 0; i < 500; i++) {
        r = get(port_, "/coroutines");
        if (r.body.find("parked-worker") != std::string::npos)
            break;
        usleep(10000);
    }
    ASSERT_EQ(r.status, 200);
    EXPECT_NE(r.body.find("== workers =="), std::string::npos) << r.body;
    EXPECT_NE(r.body.find("(parked-worker, entry"), std::string::npos) << r.body;
    EXPECT_NE(r.body.find("parked waits on"), std::string::npos) << r.body;

    int v = 1;
    ASSERT_EQ(coho_chan_send(p.release, &v), 0);
    EXPECT_EQ(coho_admin_remove_sched(a_, s), 0);
    EXPECT_EQ(coho_admin_remove_sched(a_, s), -1);
    removed = true;
    t.join();
    coho_chan_destroy(p.release);
    r = get(port_, "/coroutines");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body.find("workers"), std::string::npos);
}

void short_sleeper(void *)
{
    coho_sleep_ms(300);
}

// A scheduler that is not running posts: the page says so after dump_timeout_ms, and the dump
// the scheduler runs later (into the job the request gave up on) is freed by it, not leaked.
TEST(AdminStart, SchedulerNotRunningPostsTimesOutAndItsLateDumpIsFreed)
{
    coho_admin_opts_t ao;
    coho_admin_opts_init(&ao);
    ao.dump_timeout_ms = 200;
    coho_admin_t *a = coho_admin_start("127.0.0.1:0", nullptr, &ao);
    ASSERT_NE(a, nullptr);
    std::atomic<coho_sched_t *> made{nullptr};
    std::atomic<bool> go{false}, removed{false};
    std::atomic<int> run_rc{-2};
    std::thread t([&] {
        coho_sched_t *s = coho_sched_create(nullptr);
        if (s != nullptr && coho_spawn(s, short_sleeper, nullptr) == 0) {
            coho_sched_destroy(s);
            s = nullptr;
        }
        made = s != nullptr ? s : reinterpret_cast<coho_sched_t *>(1);
        if (s == nullptr)
            return;
        while (!go)
            usleep(1000);
        run_rc = coho_sched_run(s); // runs the late post, then the sleeper ends
        while (!removed)
            usleep(1000);
        coho_sched_destroy(s);
    });
    while (made.load() == nullptr)
        usleep(1000);
    coho_sched_t *s = made.load();
    ASSERT_NE(s, reinterpret_cast<coho_sched_t *>(1));
    ASSERT_EQ(coho_admin_add_sched(a, s, "stalled"), 0);

    Response r = get(coho_admin_port(a), "/coroutines");
    EXPECT_EQ(r.status, 200);
    EXPECT_NE(r.body.find("== stalled ==\n(no answer within 200 ms"), std::string::npos) << r.body;
    go = true;
    while (run_rc == -2)
        usleep(1000);
    EXPECT_EQ(run_rc.load(), 0);
    EXPECT_EQ(coho_admin_remove_sched(a, s), 0);
    removed = true;
    t.join();
    EXPECT_EQ(coho_admin_stop(a), 0);
}

TEST_F(Admin, UnknownPathIs404AndOtherMethodsAre405OnAKeptAliveConnection)
{
    int fd = connect_to(port_);
    std::string rest;
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(send_all(fd, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
                             "DELETE /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
                             "GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n"));
    Response r = read_response(fd, rest);
    EXPECT_EQ(r.status, 404);
    EXPECT_EQ(r.header("Connection"), "keep-alive");
    r = read_response(fd, rest);
    EXPECT_EQ(r.status, 405);
    EXPECT_EQ(r.header("Allow"), "GET");
    r = read_response(fd, rest);
    EXPECT_EQ(r.status, 200); // the query is ignored
    close(fd);
}

TEST_F(Admin, MalformedRequestIs400AndCloses)
{
    int fd = connect_to(port_);
    std::string rest;
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(send_all(fd, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
                             "THIS IS NOT HTTP\r\n\r\n"));
    EXPECT_EQ(read_response(fd, rest).status, 200);
    Response r = read_response(fd, rest);
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(r.header("Connection"), "close");
    EXPECT_TRUE(peer_closed(fd));
    close(fd);
}

TEST_F(Admin, Http10WithoutKeepAliveIsClosedAfterTheResponse)
{
    int fd = connect_to(port_);
    std::string rest;
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(send_all(fd, "GET /stats HTTP/1.0\r\n\r\n"));
    Response r = read_response(fd, rest);
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.header("Connection"), "close");
    EXPECT_TRUE(peer_closed(fd));
    close(fd);
}

TEST_F(Admin, RequestWithABodyIsAnsweredThenClosed)
{
    int fd = connect_to(port_);
    std::string rest;
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(
        send_all(fd, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"));
    Response r = read_response(fd, rest);
    EXPECT_EQ(r.status, 405);
    EXPECT_EQ(r.header("Connection"), "close");
    EXPECT_TRUE(peer_closed(fd));
    close(fd);
}

TEST_F(Admin, RequestSplitByteByByteIsServed)
{
    coho_counter_add(coho_metrics_counter(m_, "split_total", "S.", nullptr, 0), 5);
    int fd = connect_to(port_);
    std::string rest, req = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n";
    ASSERT_GE(fd, 0);
    for (char ch : req) {
        ASSERT_TRUE(send_all(fd, std::string(1, ch)));
        usleep(1000);
    }
    Response r = read_response(fd, rest);
    EXPECT_EQ(r.status, 200);
    EXPECT_NE(r.body.find("split_total 5\n"), std::string::npos) << r.body;
    close(fd);
}

TEST_F(Admin, OversizeRequestIs431AndCloses)
{
    int fd = connect_to(port_);
    std::string rest;
    ASSERT_GE(fd, 0);
    // 16 KiB of headers against the default 8 KiB bound, with no blank line yet.
    ASSERT_TRUE(send_all(fd, "GET /metrics HTTP/1.1\r\nX-Big: " + std::string(16384, 'a')));
    Response r = read_response(fd, rest);
    EXPECT_EQ(r.status, 431);
    EXPECT_TRUE(peer_closed(fd));
    close(fd);
}

// The value of series `name` (with labels) in a Prometheus page, or -1.
double sample(const std::string &page, const std::string &series)
{
    size_t at = page.find("\n" + series + " ");
    if (at == std::string::npos)
        return -1;
    return std::stod(page.substr(at + series.size() + 2));
}

TEST_F(Admin, ServerCountersMoveAsClientsConnectSendAndAreShed)
{
    coho_server_opts_t o;
    coho_server_opts_init(&o);
    o.max_conns = 1;
    coho_server_t *s = coho_server_start("127.0.0.1:0", &o, echo, nullptr);
    ASSERT_NE(s, nullptr);
    ASSERT_EQ(coho_server_register_metrics(s, m_, "echo"), 0);
    EXPECT_EQ(coho_server_register_metrics(s, m_, "again"), -1); // once per registry
    EXPECT_EQ(errno, EEXIST);
    coho_server_t *other = coho_server_start("127.0.0.1:0", nullptr, echo, nullptr);
    ASSERT_NE(other, nullptr);
    EXPECT_EQ(coho_server_register_metrics(other, m_, "echo"), -1); // the name is taken
    EXPECT_EQ(errno, EINVAL);
    ASSERT_EQ(coho_server_register_metrics(other, m_, "other"), 0);

    std::string page = get(port_, "/metrics").body;
    EXPECT_EQ(sample(page, "coho_server_accepted_total{server=\"echo\"}"), 0) << page;
    EXPECT_EQ(sample(page, "coho_server_connections{server=\"echo\"}"), 0) << page;

    int fd = connect_to(coho_server_port(s));
    ASSERT_GE(fd, 0);
    const char frame[] = {5, 0, 0, 0, 'h', 'e', 'l', 'l', 'o'};
    ASSERT_TRUE(send_all(fd, std::string(frame, sizeof(frame))));
    char back[sizeof(frame)];
    ASSERT_EQ(recv(fd, back, sizeof(back), MSG_WAITALL), ssize_t(sizeof(back)));
    int extra = connect_to(coho_server_port(s)); // past max_conns: shed
    ASSERT_GE(extra, 0);
    EXPECT_TRUE(peer_closed(extra));
    close(extra);

    page = get(port_, "/metrics").body;
    EXPECT_EQ(sample(page, "coho_server_accepted_total{server=\"echo\"}"), 1) << page;
    EXPECT_EQ(sample(page, "coho_server_connections{server=\"echo\"}"), 1) << page;
    EXPECT_EQ(sample(page, "coho_server_rejected_total{server=\"echo\",reason=\"max_conns\"}"), 1)
        << page;
    EXPECT_EQ(sample(page, "coho_server_rejected_total{server=\"echo\",reason=\"acl\"}"), 0);
    EXPECT_EQ(sample(page, "coho_server_received_frames_total{server=\"echo\"}"), 1) << page;
    EXPECT_EQ(sample(page, "coho_server_sent_frames_total{server=\"echo\"}"), 1) << page;
    EXPECT_EQ(sample(page, "coho_server_received_bytes_total{server=\"echo\"}"), 9) << page;
    EXPECT_EQ(sample(page, "coho_server_sent_bytes_total{server=\"echo\"}"), 9) << page;
    close(fd);

    // A stopped server leaves the registry; the others stay.
    ASSERT_EQ(coho_server_stop(s, 1000), 0);
    page = get(port_, "/metrics").body;
    EXPECT_EQ(page.find("server=\"echo\""), std::string::npos) << page;
    EXPECT_EQ(sample(page, "coho_server_accepted_total{server=\"other\"}"), 0) << page;
    ASSERT_EQ(coho_server_stop(other, 1000), 0);
}

// An admin server on the caller's scheduler (opts.sched) dumping that same scheduler: the
// request posts the dump to its own thread and parks until the post has run.
struct OwnSched {
    coho_sched_t *s = nullptr;
    std::atomic<int> port{0};
    std::atomic<bool> done{false};
    std::atomic<int> stop_rc{-2};
};

void own_sched_main(void *arg)
{
    auto *o = static_cast<OwnSched *>(arg);
    coho_admin_opts_t ao;
    coho_admin_opts_init(&ao);
    ao.sched = o->s;
    coho_set_name(0, "admin-owner");
    coho_admin_t *a = coho_admin_start("127.0.0.1:0", nullptr, &ao);
    if (a == nullptr || coho_admin_add_sched(a, o->s, "self") != 0) {
        o->port = -1;
        return;
    }
    o->port = coho_admin_port(a);
    while (!o->done)
        coho_sleep_ms(5);
    coho_admin_remove_sched(a, o->s);
    o->stop_rc = coho_admin_stop(a);
}

TEST(AdminStart, OnTheCallersSchedulerDumpsThatScheduler)
{
    OwnSched o;
    std::thread t([&o] {
        o.s = coho_sched_create(nullptr);
        if (o.s == nullptr || coho_spawn(o.s, own_sched_main, &o) == 0) {
            o.port = -1;
            return;
        }
        coho_sched_run(o.s);
        coho_sched_destroy(o.s);
    });
    while (o.port == 0)
        usleep(1000);
    ASSERT_GT(o.port.load(), 0);
    Response r = get(o.port, "/coroutines");
    EXPECT_EQ(r.status, 200);
    EXPECT_NE(r.body.find("== self =="), std::string::npos) << r.body;
    EXPECT_NE(r.body.find("(admin-owner, entry"), std::string::npos) << r.body;
    EXPECT_NE(r.body.find("(admin-http, entry"), std::string::npos) << r.body; // the request
    o.done = true;
    t.join();
    EXPECT_EQ(o.stop_rc.load(), 0);
}

int64_t now_ms()
{
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// A slow client (half a request head, then nothing) is closed at idle_ms, not held forever.
TEST(AdminStart, ClientWithoutAWholeRequestIsClosedAtIdleMs)
{
    coho_admin_opts_t ao;
    coho_admin_opts_init(&ao);
    ao.idle_ms = 300;
    coho_admin_t *a = coho_admin_start("127.0.0.1:0", nullptr, &ao);
    ASSERT_NE(a, nullptr);
    int fd = connect_to(coho_admin_port(a));
    ASSERT_GE(fd, 0);
    int64_t t0 = now_ms();
    ASSERT_TRUE(send_all(fd, "GET /metr"));
    EXPECT_TRUE(peer_closed(fd)); // recv times out after 10 s otherwise
    int64_t waited = now_ms() - t0;
    EXPECT_GE(waited, 200);  // not at once (the kick counts from the accept, a moment before t0)
    EXPECT_LE(waited, 5000); // generous: a loaded 2-core machine
    close(fd);
    EXPECT_EQ(coho_admin_stop(a), 0);
}

TEST(AdminStart, BadArgumentsAreEinval)
{
    coho_admin_opts_t o;
    coho_admin_opts_init(&o);
    o.max_conns = 0;
    errno = 0;
    EXPECT_EQ(coho_admin_start(nullptr, nullptr, nullptr), nullptr);
    EXPECT_EQ(errno, EINVAL);
    EXPECT_EQ(coho_admin_start("127.0.0.1:0", nullptr, &o), nullptr);
    EXPECT_EQ(errno, EINVAL);
    EXPECT_EQ(coho_admin_start("not an address", nullptr, nullptr), nullptr);
    EXPECT_EQ(coho_admin_port(nullptr), -1);
    EXPECT_EQ(coho_admin_stop(nullptr), -1);
    EXPECT_EQ(errno, EINVAL);
}

TEST(AdminStart, EmptyRegistryServesEmptyPages)
{
    coho_admin_t *a = coho_admin_start("127.0.0.1:0", nullptr, nullptr);
    ASSERT_NE(a, nullptr);
    Response r = get(coho_admin_port(a), "/metrics");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "");
    r = get(coho_admin_port(a), "/stats");
    EXPECT_EQ(r.body, "{\"metrics\":{}}\n");
    EXPECT_EQ(coho_admin_stop(a), 0);
}

} // namespace
