/* SPDX-License-Identifier: MIT */
/* tools/coho-gdb.py in gdb's batch mode against parked_target (coroutines parked in recv, on a
 * mutex, on a channel, in a sleep on a second scheduler), attached live and on a core file the
 * test makes with gcore. Built twice: COHO_TARGET is the program linked with libcoho.so or with
 * the static library. Exits 77 (ctest SKIP_RETURN_CODE) when gdb is not installed. */
#include <gtest/gtest.h>

#include <regex>
#include <string>

#include "test/integration/debug/parked_process.hpp"

namespace {

/* gdb in batch mode with the script loaded, on `target` (-p PID or EXE CORE). */
std::string gdb(const std::string &target, const std::vector<std::string> &cmds)
{
    std::string cmd = "gdb -nx -batch -q " + target + " -x " COHO_GDB_SCRIPT;
    for (const std::string &c : cmds)
        cmd += " -ex '" + c + "'";
    return run_capture(cmd);
}

std::string live(const ParkedProcess &p)
{
    return "-p " + std::to_string(p.pid());
}

void expect_has(const std::string &out, const std::string &pattern)
{
    EXPECT_TRUE(std::regex_search(out, std::regex(pattern))) << "no /" << pattern << "/ in:\n"
                                                             << out;
}

void expect_lacks(const std::string &out, const std::string &pattern)
{
    EXPECT_FALSE(std::regex_search(out, std::regex(pattern))) << "/" << pattern << "/ in:\n" << out;
}

/* The rows `coho list` prints for the five coroutines still parked, whatever the target. */
void expect_list(const std::string &out)
{
    expect_has(out, "scheduler 0 at 0x[0-9a-f]+, thread [0-9]+ \\(tid [0-9]+\\): 5 coroutines, 4 "
                    "unfinished, 0 ready");
    expect_has(out, "scheduler 1 at 0x[0-9a-f]+, thread [0-9]+ \\(tid [0-9]+\\): 1 coroutines");
    expect_has(out, "\n  [0-9]+ +recv-waiter +parked +read fd=[0-9]+ +[0-9]+ \\([0-9]+ ms\\) "
                    "+waiter_recv\n");
    expect_has(out, "\n  [0-9]+ +mutex-holder +parked +sleep +[0-9]+ \\([0-9]+ ms\\) "
                    "+holder_mutex\n");
    expect_has(out, "\n  [0-9]+ +mutex-waiter +parked +mutex@0x[0-9a-f]+ .* +waiter_mutex\n");
    expect_has(out, "\n  [0-9]+ +chan-waiter +parked +chan recv@0x[0-9a-f]+ .* +waiter_chan\n");
    expect_has(out, "\n  [0-9]+ +reporter +done +- +- +reporter\n");
    expect_has(out, "\n  [0-9]+ +sleeper +parked +sleep .* +waiter_sleep\n");
    expect_lacks(out, "Python Exception|Error occurred");
}

/* The function a scheduler thread waits in for events, on either backend (see expect_bt); in
 * a build without inlining (Debug, the sanitizer runs) the io_uring backend's frame 1 is its
 * io_uring_enter wrapper, ring_enter. */
#define WAIT_FN "(coho[._]+(poller|uring)_wait|ring_enter)"

/* `coho bt` of each waiter: the call that parked it, then its entry function, from frame 1. */
const std::vector<std::string> bt_cmds = {"coho bt recv-waiter", "coho bt mutex-waiter",
                                          "coho bt chan-waiter", "coho bt sleeper", "bt 2"};

void expect_bt(const std::string &out)
{
    expect_has(out, "coroutine [0-9]+ \\(recv-waiter, entry waiter_recv\\) parked on read "
                    "fd=[0-9]+:\n#1 ([^\n]*\n#[0-9]+ )*[^\n]* in recv(_slow)? [^\n]*\n"
                    "(#[0-9]+ [^\n]*\n)*#[0-9]+ [^\n]* in waiter_recv ");
    expect_has(out, "\\(mutex-waiter, entry waiter_mutex\\) parked on mutex@0x[0-9a-f]+:\n"
                    "#1 ([^\n]*\n#[0-9]+ )*[^\n]* in coho_mutex_lock [^\n]*\n"
                    "(#[0-9]+ [^\n]*\n)*#[0-9]+ [^\n]* in waiter_mutex ");
    expect_has(out, "\\(chan-waiter, entry waiter_chan\\) parked on chan recv@0x[0-9a-f]+:\n"
                    "#1 ([^\n]*\n#[0-9]+ )*[^\n]* in coho_chan_recv [^\n]*\n"
                    "(#[0-9]+ [^\n]*\n)*#[0-9]+ [^\n]* in waiter_chan ");
    expect_has(out, "\\(sleeper, entry waiter_sleep\\) parked on sleep:\n"
                    "#1 ([^\n]*\n#[0-9]+ )*[^\n]* in coho_sleep_ms [^\n]*\n"
                    "(#[0-9]+ [^\n]*\n)*#[0-9]+ [^\n]* in waiter_sleep ");
    /* The thread's own stack afterwards: the scheduler's loop, no coroutine frame. The thread
     * waits in the backend's wait: coho__poller_wait (epoll) or coho__uring_wait, which
     * coho__poller_wait tail-calls (io_uring), or ring_enter below it. */
    expect_has(out, "\n#1 [^\n]* in " WAIT_FN " ");
    expect_lacks(out, "Backtrace stopped|Python Exception|Error occurred");
}

/* `coho frame` selects a waiter's frame: its local holds the value the program set; after
 * `coho switch back` the thread's own frames are back. */
const std::vector<std::string> frame_cmds = {"coho switch chan-waiter",
                                             "frame function waiter_chan",
                                             "info locals",
                                             "coho switch back",
                                             "coho switch 1:sleeper",
                                             "frame function waiter_sleep",
                                             "print marker_sleep",
                                             "coho frame back",
                                             "bt 2"};

void expect_frames(const std::string &out)
{
    expect_has(out, "thread [0-9]+ shows coroutine [0-9]+ \\(chan-waiter\\) from frame 1 up");
    expect_has(out, "marker_chan = 4103");
    expect_has(out, "thread [0-9]+ shows coroutine [0-9]+ \\(sleeper\\) from frame 1 up");
    expect_has(out, "\\$1 = 4104");
    expect_has(out, "\n#1 [^\n]* in " WAIT_FN " ");
    expect_lacks(out, "Python Exception|Error occurred|No symbol \"marker");
}

TEST(CohoGdb, ListLive)
{
    ParkedProcess p;
    ASSERT_EQ(p.start(COHO_TARGET), "");
    expect_list(gdb(live(p), {"coho list"}));
    EXPECT_TRUE(p.alive());
}

TEST(CohoGdb, BacktraceLive)
{
    ParkedProcess p;
    ASSERT_EQ(p.start(COHO_TARGET), "");
    expect_bt(gdb(live(p), bt_cmds));
    EXPECT_TRUE(p.alive());
}

TEST(CohoGdb, FrameLive)
{
    ParkedProcess p;
    ASSERT_EQ(p.start(COHO_TARGET), "");
    expect_frames(gdb(live(p), frame_cmds));
    /* Nothing was left changed: the list reads the same afterwards, the process runs on. */
    expect_list(gdb(live(p), {"coho list"}));
    EXPECT_TRUE(p.alive());
}

TEST(CohoGdb, BadInput)
{
    ParkedProcess p;
    ASSERT_EQ(p.start(COHO_TARGET), "");
    std::string out = gdb(live(p), {"coho bt 12345", "coho bt sleeper-x", "coho bt 4294967296",
                                    "coho bt reporter", "coho frame chan-waiter 0",
                                    "coho switch back", "coho bt"});
    expect_has(out, "coho: no coroutine 12345 \\(see `coho list`\\)");
    expect_has(out, "coho: no coroutine sleeper-x");
    expect_has(out, "4294967296 names a coroutine on each of schedulers 0, 1: write SCHED:ID");
    expect_has(out, "coroutine [0-9]+ has finished");
    expect_has(out, "numbered from 1");
    expect_has(out, "no `coho switch` to undo");
    expect_has(out, "usage: coho bt ID");
    expect_lacks(out, "Python Exception");
}

/* Without -x: gdb loads the script itself, as libcoho.so-gdb.py next to the library (the
 * build copies it there); the static variant has no library file and skips. */
TEST(CohoGdb, AutoLoad)
{
    if (!COHO_SHARED)
        GTEST_SKIP() << "a static program has no libcoho.so to auto-load a script for";
    ParkedProcess p;
    ASSERT_EQ(p.start(COHO_TARGET), "");
    std::string out =
        run_capture("gdb -nx -batch -q -iex 'set auto-load safe-path /' -p " +
                    std::to_string(p.pid()) + " -ex 'coho list' -ex 'coho bt chan-waiter'");
    expect_list(out);
    expect_has(out, "#[0-9]+ [^\n]* in waiter_chan ");
}

TEST(CohoGdb, CoreFile)
{
    if (COHO_SANITIZED)
        GTEST_SKIP() << "gcore of a sanitizer build's process (its shadow memory) takes minutes";
    ParkedProcess p;
    ASSERT_EQ(p.start(COHO_TARGET), "");
    std::string core = std::string(COHO_GDB_TMPDIR) + "/core." + std::to_string(p.pid());
    run_capture("mkdir -p " COHO_GDB_TMPDIR);
    std::string out = gdb(live(p), {"gcore " + core});
    p.stop();
    ASSERT_EQ(access(core.c_str(), R_OK), 0) << out;
    std::string target = std::string(COHO_TARGET) + " " + core;
    std::string list = gdb(target, {"coho list"});
    expect_list(list);
    expect_has(list, "against the monotonic clock, last poll = [0-9]+ ms");
    expect_bt(gdb(target, bt_cmds));
    expect_frames(gdb(target, frame_cmds));
    unlink(core.c_str());
}

} // namespace

int main(int argc, char **argv)
{
    testing::InitGoogleTest(&argc, argv);
    if (!have_program("gdb")) {
        printf("gdb is not installed: skipped (tools/deps.sh test installs it)\n");
        return 77;
    }
    return RUN_ALL_TESTS();
}
