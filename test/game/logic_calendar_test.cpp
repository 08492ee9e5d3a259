// SPDX-License-Identifier: MIT
// coho-logic's calendar (game/logic/timers.cpp) as a process: the daily reset fires through an
// injected clock offset and shows in the log, on /stats and on /metrics; across restarts with
// the same --state-dir a boundary is handled once (a boundary passed while the node was down
// is handled late at start, and never again); bad calendar flags are refused. The node runs
// without its database (a dead port): the calendar does not need it.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

int64_t now_s()
{
    return int64_t(time(nullptr));
}

int dead_port()
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof a);
    getsockname(fd, reinterpret_cast<sockaddr *>(&a), &len);
    close(fd);
    return ntohs(a.sin_port);
}

std::string read_file(const std::string &path)
{
    std::ifstream f(path);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

// coho-logic with TZ=UTC; stdout (the "listening" lines) to a pipe, the log to `log`.
class Logic {
public:
    Logic(std::vector<std::string> extra, const std::string &log)
    {
        std::vector<std::string> args{"--listen", "127.0.0.1:0", "--db",
                                      "127.0.0.1:" + std::to_string(dead_port()), "--admin",
                                      "127.0.0.1:0", "--log", log, "--db-timeout-s", "1",
                                      // A journal of its own: the default (in the working
                                      // directory, locked) is shared by every node of an id.
                                      "--journal", log + ".journal"};
        args.insert(args.end(), extra.begin(), extra.end());
        int out[2];
        if (pipe(out) != 0)
            return;
        pid_ = fork();
        if (pid_ == 0) {
            dup2(out[1], 1);
            dup2(out[1], 2);
            close(out[0]);
            close(out[1]);
            setenv("TZ", "UTC", 1);
            std::vector<char *> argv{const_cast<char *>(COHO_LOGIC_BIN)};
            for (auto &a : args)
                argv.push_back(const_cast<char *>(a.c_str()));
            argv.push_back(nullptr);
            execv(argv[0], argv.data());
            _exit(127);
        }
        close(out[1]);
        out_ = out[0];
    }
    ~Logic()
    {
        if (pid_ > 0 && !reaped_) {
            kill(pid_, SIGKILL);
            waitpid(pid_, nullptr, 0);
        }
        if (out_ >= 0)
            close(out_);
    }
    // Reads stdout until "listening tcp"; the admin port, or 0.
    int admin_port()
    {
        std::string line;
        for (int i = 0; i < 600; i++) {
            pollfd p{out_, POLLIN, 0};
            if (poll(&p, 1, 100) <= 0)
                continue;
            char c;
            if (read(out_, &c, 1) != 1)
                break;
            if (c != '\n') {
                line += c;
                continue;
            }
            if (line.rfind("listening admin ", 0) == 0)
                admin_ = std::atoi(line.substr(line.rfind(':') + 1).c_str());
            if (line.rfind("listening tcp ", 0) == 0)
                return admin_;
            line.clear();
        }
        ADD_FAILURE() << "coho-logic printed no 'listening tcp' line";
        return 0;
    }
    // SIGTERM and the exit status (-1: signal or timeout).
    int stop()
    {
        kill(pid_, SIGTERM);
        for (int i = 0; i < 3000; i++) {
            int st = 0;
            if (waitpid(pid_, &st, WNOHANG) == pid_) {
                reaped_ = true;
                return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
            }
            usleep(10000);
        }
        return -1;
    }
    // Waits for the exit of a program that should not start; its status and output.
    int exit_status(std::string *output)
    {
        char buf[4096];
        ssize_t n;
        while ((n = read(out_, buf, sizeof buf)) > 0)
            output->append(buf, size_t(n));
        int st = 0;
        waitpid(pid_, &st, 0);
        reaped_ = true;
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    }

private:
    pid_t pid_ = -1;
    int out_ = -1;
    int admin_ = 0;
    bool reaped_ = false;
};

std::string http_get(int port, const std::string &path)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(uint16_t(port));
    const std::string rq = "GET " + path + " HTTP/1.0\r\n\r\n";
    std::string out;
    if (connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) == 0 &&
        send(fd, rq.data(), rq.size(), MSG_NOSIGNAL) == ssize_t(rq.size())) {
        timeval tv{20, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        char buf[4096];
        ssize_t n;
        while ((n = recv(fd, buf, sizeof buf, 0)) > 0)
            out.append(buf, size_t(n));
    }
    close(fd);
    return out;
}

// /stats until `want` appears in it (up to 60 s); the last answer.
std::string stats_until(int port, const std::string &want)
{
    std::string s;
    for (int i = 0; i < 600; i++) {
        s = http_get(port, "/stats");
        if (s.find(want) != std::string::npos)
            break;
        usleep(100000);
    }
    return s;
}

struct TempDir {
    std::string path;
    TempDir()
    {
        char tmpl[] = "/tmp/coho-logic-cal-XXXXXX";
        const char *d = mkdtemp(tmpl);
        path = d != nullptr ? d : "";
    }
    ~TempDir() { std::system(("rm -rf " + path).c_str()); }
};

// The offset that makes the node's clock (UTC) read `lead_s` seconds before the next 05:00.
int64_t offset_to_reset(int64_t lead_s)
{
    const int64_t now = now_s();
    int64_t reset = now - now % 86400 + 5 * 3600;
    if (reset <= now)
        reset += 86400;
    return reset - now - lead_s;
}

} // namespace

TEST(LogicCalendar, TheDailyResetFiresOncePerBoundaryAcrossRestarts)
{
    TempDir dir;
    ASSERT_FALSE(dir.path.empty());
    const std::string state = dir.path + "/state";
    const int64_t offset = offset_to_reset(2);
    // The previous day's reset was handled: today's fires once, at 05:00 on the node's clock
    // (2 s after the start), or at its start if a loaded machine started it later than that.
    const int64_t reset_s = now_s() + offset + 2;
    ASSERT_EQ(mkdir(state.c_str(), 0755), 0);
    std::ofstream(state + "/daily-reset.boundary")
        << "coho-boundary v1 last_s=" << (reset_s - 86400) << "\n";
    // The weekly reset on a weekday none of the runs reaches: only the daily reset fires here.
    const time_t far = time_t(reset_s + 3 * 86400);
    struct tm far_tm;
    gmtime_r(&far, &far_tm);
    const std::string weekly_day = std::to_string(far_tm.tm_wday);
    {
        // First start, 2 s before 05:00 on the node's clock.
        Logic node({"--clock-offset-s", std::to_string(offset), "--state-dir", state,
                    "--machine-id", "77", "--weekly-reset-day", weekly_day},
                   dir.path + "/log1");
        const int admin = node.admin_port();
        ASSERT_GT(admin, 0);
        const std::string stats = stats_until(admin, "\"daily_resets\":1");
        EXPECT_NE(stats.find("\"daily_resets\":1"), std::string::npos) << stats;
        EXPECT_NE(stats.find("\"machine_id\":77"), std::string::npos) << stats;
        const std::string metrics = http_get(admin, "/metrics");
        EXPECT_NE(metrics.find("coho_logic_daily_resets_total 1"), std::string::npos) << metrics;
        EXPECT_NE(metrics.find("coho_logic_calendar_fired_total 1"), std::string::npos);
        EXPECT_EQ(node.stop(), 0);
        const std::string log = read_file(dir.path + "/log1");
        char want[64];
        const time_t r = time_t(reset_s);
        struct tm tm;
        gmtime_r(&r, &tm);
        strftime(want, sizeof want, "daily reset: boundary %Y-%m-%d 05:00:00+0000", &tm);
        EXPECT_NE(log.find(want), std::string::npos) << "want '" << want << "' in\n" << log;
    }
    {
        // A day later on the node's clock: the next boundary passed while it was down; it is
        // handled once, late, at start.
        Logic node({"--clock-offset-s", std::to_string(offset + 86400 + 30), "--state-dir", state,
                    "--weekly-reset-day", weekly_day},
                   dir.path + "/log2");
        const int admin = node.admin_port();
        ASSERT_GT(admin, 0);
        const std::string stats = stats_until(admin, "\"daily_resets\":1");
        EXPECT_NE(stats.find("\"daily_resets\":1"), std::string::npos) << stats;
        EXPECT_NE(stats.find("\"late\":1"), std::string::npos) << stats;
        EXPECT_EQ(node.stop(), 0);
        EXPECT_NE(read_file(dir.path + "/log2").find("late)"), std::string::npos);
    }
    {
        // The same day again: that boundary was handled; the next one is a day away.
        Logic node({"--clock-offset-s", std::to_string(offset + 86400 + 120), "--state-dir", state,
                    "--weekly-reset-day", weekly_day},
                   dir.path + "/log3");
        ASSERT_GT(node.admin_port(), 0);
        EXPECT_EQ(node.stop(), 0);
        const std::string log = read_file(dir.path + "/log3");
        EXPECT_EQ(log.find("daily reset: boundary"), std::string::npos) << log;
        // The start line names the next boundary: 05:00 two days after the first.
        char want[64];
        const time_t next = time_t(reset_s + 2 * 86400);
        struct tm tm;
        gmtime_r(&next, &tm);
        strftime(want, sizeof want, "next at %Y-%m-%d 05:00:00+0000", &tm);
        EXPECT_NE(log.find(want), std::string::npos) << "want '" << want << "' in\n" << log;
    }
}

TEST(LogicCalendar, BadCalendarFlagsAreRefused)
{
    TempDir dir;
    const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
        {{"--daily-reset", "25:00"}, "hour 25 is not 0..23"},
        {{"--daily-reset", "5 o'clock"}, "is not HH:MM"},
        {{"--clock-offset-s", "soon"}, "--clock-offset-s"},
        {{"--machine-id", "1024"}, "--machine-id"},
        {{"--weekly-reset-day", "7"}, "--weekly-reset-day"},
    };
    for (const auto &c : cases) {
        Logic node(c.first, dir.path + "/log");
        std::string out;
        EXPECT_EQ(node.exit_status(&out), 1) << out;
        EXPECT_NE(out.find(c.second), std::string::npos) << out;
    }
}

TEST(LogicCalendar, TheWeeklyResetFiresOnItsWeekdayAtTheDailyResetTime)
{
    TempDir dir;
    ASSERT_FALSE(dir.path.empty());
    const std::string state = dir.path + "/state";
    const int64_t offset = offset_to_reset(2);
    const int64_t reset_s = now_s() + offset + 2;
    const time_t r = time_t(reset_s);
    struct tm tm;
    gmtime_r(&r, &tm);
    // Last week's reset was handled: this one fires at 05:00 on the node's clock (or at start).
    ASSERT_EQ(mkdir(state.c_str(), 0755), 0);
    std::ofstream(state + "/weekly-reset.boundary")
        << "coho-boundary v1 last_s=" << (reset_s - 7 * 86400) << "\n";
    Logic node({"--clock-offset-s", std::to_string(offset), "--state-dir", state,
                "--weekly-reset-day", std::to_string(tm.tm_wday)},
               dir.path + "/log");
    const int admin = node.admin_port();
    ASSERT_GT(admin, 0);
    const std::string stats = stats_until(admin, "\"weekly_resets\":1");
    EXPECT_NE(stats.find("\"weekly_resets\":1"), std::string::npos) << stats;
    EXPECT_NE(http_get(admin, "/metrics").find("coho_logic_weekly_resets_total 1"),
              std::string::npos);
    EXPECT_EQ(node.stop(), 0);
    char want[64];
    strftime(want, sizeof want, "weekly reset: boundary %Y-%m-%d 05:00:00+0000", &tm);
    EXPECT_NE(read_file(dir.path + "/log").find(want), std::string::npos) << want;
}
