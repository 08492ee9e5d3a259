/* SPDX-License-Identifier: MIT */
/* tools/coho-top against parked_target: through the SIGUSR2 dump in its log and through the
 * admin server's /coroutines (parked_target_admin), in batch mode (--once, --iterations), and
 * its live screen in a tmux pane (capture-pane). */
#include <gtest/gtest.h>

#include <regex>
#include <string>

#include "test/integration/debug/parked_process.hpp"

namespace {

const std::string tmpdir = COHO_TOP_TMPDIR;

void expect_has(const std::string &out, const std::string &pattern)
{
    EXPECT_TRUE(std::regex_search(out, std::regex(pattern))) << "no /" << pattern << "/ in:\n"
                                                             << out;
}

/* What one refresh of the main scheduler must show: its counts, the parked four with what they
 * wait on, the recv/mutex/chan/sleep waits named. */
void expect_main_sched(const std::string &out)
{
    expect_has(out, "\\(0x[0-9a-f]+\\): 5 coroutines, 4 unfinished, 4 user\n"
                    "  running 0  ready 0  parked 4  done 1\n"
                    "  ready queue 0  fds watched [1-9][0-9]*  timers armed [1-9][0-9]*  "
                    "switches/s ");
    expect_has(out, "\n +[0-9]+ +[a-z0-9 ]+ +4294967296 +recv-waiter +read fd=[0-9]+ ");
    expect_has(out, "\n +[0-9]+ +[a-z0-9 ]+ +4294967297 +mutex-holder +sleep ");
    expect_has(out, "\n +[0-9]+ +[a-z0-9 ]+ +4294967298 +mutex-waiter +mutex@0x[0-9a-f]+ ");
    expect_has(out, "\n +[0-9]+ +[a-z0-9 ]+ +4294967299 +chan-waiter +chan recv@0x[0-9a-f]+ ");
}

std::string log_path()
{
    run_capture("mkdir -p " + tmpdir);
    return tmpdir + "/coho_top." + std::to_string(getpid()) + ".log";
}

TEST(CohoTop, DumpOnce)
{
    std::string log = log_path();
    ParkedProcess p;
    unlink(log.c_str());
    ASSERT_EQ(p.start(COHO_TARGET, {log}), "");
    int st = -1;
    std::string out = run_capture(
        COHO_TOP_TOOL " --once --pid " + std::to_string(p.pid()) + " --log " + log, &st);
    EXPECT_EQ(st, 0) << out;
    expect_has(out, "^coho-top  pid [0-9]+, log ");
    expect_has(out, "\ncoroutines 5: running 0  ready 0  parked 4  done 1\n");
    expect_has(out, "\nthread [0-9]+ \\(0x");
    expect_main_sched(out);
    expect_has(out, "\nlongest parked \\(4 of 4\\)\n");
    /* --top cuts the list */
    out = run_capture(
        COHO_TOP_TOOL " --once --top 2 --pid " + std::to_string(p.pid()) + " --log " + log, &st);
    EXPECT_EQ(st, 0) << out;
    expect_has(out, "\nlongest parked \\(2 of 4\\)\n[^\n]*\n[^\n]*\n[^\n]*\n$");
    p.stop();
    unlink(log.c_str());
}

TEST(CohoTop, DumpBatch)
{
    std::string log = log_path();
    ParkedProcess p;
    unlink(log.c_str());
    ASSERT_EQ(p.start(COHO_TARGET, {log}), "");
    int st = -1;
    std::string out = run_capture(COHO_TOP_TOOL " --iterations 3 --interval 0.2 --pid " +
                                      std::to_string(p.pid()) + " --log " + log,
                                  &st);
    EXPECT_EQ(st, 0) << out;
    /* three refreshes, each a fresh dump; no escape sequences in batch mode */
    std::regex head("(^|\n)coho-top  pid ");
    EXPECT_EQ(
        std::distance(std::sregex_iterator(out.begin(), out.end(), head), std::sregex_iterator()),
        3)
        << out;
    EXPECT_EQ(out.find('\x1b'), std::string::npos);
    expect_main_sched(out);
    p.stop();
    unlink(log.c_str());
}

TEST(CohoTop, AdminOnce)
{
    ParkedProcess p;
    ASSERT_EQ(p.start(COHO_TARGET_ADMIN), "");
    std::smatch m;
    ASSERT_TRUE(std::regex_search(p.line(), m, std::regex("admin ([0-9]+)$"))) << p.line();
    int st = -1;
    std::string out = run_capture(COHO_TOP_TOOL " --once --admin 127.0.0.1:" + m[1].str(), &st);
    EXPECT_EQ(st, 0) << out;
    expect_has(out, "^coho-top  admin 127.0.0.1:[0-9]+ ");
    expect_has(out, "\ncoroutines 6: running 0  ready 0  parked 5  done 1\n");
    expect_has(out, "\nmain \\(0x");
    expect_has(out, "\nsecond \\(0x[0-9a-f]+\\): 1 coroutines, 1 unfinished, 1 user\n");
    expect_main_sched(out);
    expect_has(out, "\n +[0-9]+ +second +4294967296 +sleeper +sleep ");
    expect_has(out, "\nlongest parked \\(5 of 5\\)\n");
}

TEST(CohoTop, BadInput)
{
    int st = -1;
    std::string out = run_capture(COHO_TOP_TOOL " --once", &st);
    EXPECT_EQ(st, 2) << out;
    expect_has(out, "give --admin HOST:PORT, or --pid PID and --log FILE");
    out = run_capture(COHO_TOP_TOOL " --once --admin 127.0.0.1:1", &st);
    EXPECT_EQ(st, 1) << out;
    expect_has(out, "coho-top: http://127.0.0.1:1/coroutines: .*refused");
    out = run_capture(COHO_TOP_TOOL " --once --pid 1 --log /nonexistent/x.log", &st);
    EXPECT_EQ(st, 1) << out;
    expect_has(out, "coho-top: /nonexistent/x.log: No such file or directory");
    /* a program that never dumps: a clear timeout, not a hang */
    std::string log = log_path();
    ParkedProcess p;
    unlink(log.c_str());
    ASSERT_EQ(p.start(COHO_TARGET, {log}), "");
    run_capture("touch " + log + ".other");
    out = run_capture(COHO_TOP_TOOL " --once --timeout 1 --pid " + std::to_string(p.pid()) +
                          " --log " + log + ".other",
                      &st);
    EXPECT_EQ(st, 1) << out;
    expect_has(out, "no complete dump in .* within 1 s of SIGUSR2");
    p.stop();
    unlink(log.c_str());
    unlink((log + ".other").c_str());
}

/* The screen mode in a tmux pane: redrawn every interval (the clock in the title changes, one
 * screen at a time: the title appears once in the pane). */
TEST(CohoTop, LiveScreenInTmux)
{
    if (run_capture("tmux -V >/dev/null 2>&1 && echo yes") != "yes\n")
        GTEST_SKIP() << "tmux is not installed";
    std::string log = log_path();
    ParkedProcess p;
    unlink(log.c_str());
    ASSERT_EQ(p.start(COHO_TARGET, {log}), "");
    std::string session = "coho_top_" + std::to_string(getpid());
    std::string sock = "-L " + session;
    int st = -1;
    std::string out = run_capture("tmux " + sock + " new-session -d -s " + session +
                                      " -x 160 -y 40 '" COHO_TOP_TOOL " --interval 0.5 --pid " +
                                      std::to_string(p.pid()) + " --log " + log + "'",
                                  &st);
    ASSERT_EQ(st, 0) << out;
    std::string first, screen;
    for (int i = 0; i < 600; i++) {
        screen = run_capture("tmux " + sock + " capture-pane -p -t " + session);
        if (screen.find("longest parked (4 of 4)") != std::string::npos) {
            if (first.empty())
                first = screen.substr(0, screen.find('\n'));
            else if (screen.substr(0, screen.find('\n')) != first)
                break;
        }
        usleep(100 * 1000);
    }
    run_capture("tmux " + sock + " kill-server");
    p.stop();
    unlink(log.c_str());
    ASSERT_FALSE(first.empty()) << screen;
    EXPECT_NE(screen.substr(0, screen.find('\n')), first) << "not redrawn:\n" << screen;
    expect_has(screen, "^coho-top  pid ");
    expect_main_sched(screen);
    std::regex title("coho-top  pid");
    EXPECT_EQ(std::distance(std::sregex_iterator(screen.begin(), screen.end(), title),
                            std::sregex_iterator()),
              1)
        << screen;
}

} // namespace
