/* SPDX-License-Identifier: MIT */
/* coho-trace --chrome on the log of a real program: parked_target writes its log at debug level
 * (spawn and exit lines), is dumped once by SIGUSR2 (parked intervals), and the Chrome trace the
 * tool makes of it passes check_chrome_trace.py's structural check (every event has ph, ts, pid,
 * tid; B/E balanced per track; flows matched) with the tracks, parked spans, spawn arrows and
 * log instants the program's coroutines must give. The checker is shown to fail on broken
 * traces too. */
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

#include "test/integration/debug/parked_process.hpp"

namespace {

const std::string tmpdir = COHO_CHROME_TMPDIR;

std::string slurp(const std::string &path)
{
    std::ifstream f(path);
    std::stringstream ss;

    ss << f.rdbuf();
    return ss.str();
}

size_t count(const std::string &text, const std::string &what)
{
    size_t n = 0;

    for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1))
        n++;
    return n;
}

std::string check(const std::string &json, const std::string &expect, int *status)
{
    return run_capture("python3 " COHO_CHROME_CHECK " " + json + " " + expect, status);
}

/* Runs parked_target with its log at `log`, dumps it once, and stops it once the dump's
 * lines (its four parked coroutines) are in the file. */
void make_log(const std::string &log)
{
    ParkedProcess p;

    unlink(log.c_str());
    ASSERT_EQ(p.start(COHO_TARGET, {log}), "");
    ASSERT_EQ(kill(p.pid(), SIGUSR2), 0);
    for (int i = 0; i < 1200 && count(slurp(log), " parked waits on ") < 4; i++)
        usleep(50 * 1000);
    ASSERT_EQ(count(slurp(log), " parked waits on "), 4u) << slurp(log);
}

class Chrome : public ::testing::Test {
protected:
    void SetUp() override
    {
        run_capture("mkdir -p " + tmpdir);
        base = tmpdir + "/" + ::testing::UnitTest::GetInstance()->current_test_info()->name() +
               "." + std::to_string(getpid());
    }
    void TearDown() override
    {
        run_capture("rm -f " + base + ".log " + base + ".json " + base + ".html");
    }
    std::string base;
};

TEST_F(Chrome, TimelineOfARealProgram)
{
    make_log(base + ".log");
    int st = -1;
    std::string out =
        run_capture(COHO_TRACE_TOOL " --chrome " + base + ".json all " + base + ".log", &st);
    ASSERT_EQ(st, 0) << out;
    out = check(base + ".json",
                "--track recv-waiter --track mutex-holder --track mutex-waiter "
                "--track chan-waiter --track reporter --track reporter-child --track sleeper "
                "--parked 'read fd=' --parked sleep --parked mutex@0x --parked 'chan recv@0x' "
                "--flow reporter\\>reporter-child --flow 'outside coroutines>recv-waiter' "
                "--flow 'outside coroutines>sleeper' --instant 'every waiter parked' "
                "--instant 'reporter child runs'",
                &st);
    EXPECT_EQ(st, 0) << out;
    EXPECT_NE(out.find("ok: "), std::string::npos) << out;
    /* the finished coroutines' spans end at their exit lines, the parked ones at the end */
    std::string json = slurp(base + ".json");
    EXPECT_NE(json.find("\"exited\":true"), std::string::npos);
    EXPECT_NE(json.find("\"exited\":false"), std::string::npos);
}

TEST_F(Chrome, SubtreeOnly)
{
    make_log(base + ".log");
    int st = -1;
    std::string out =
        run_capture(COHO_TRACE_TOOL " --chrome " + base + ".json " + base + ".log 4294967300", &st);
    ASSERT_EQ(st, 0) << out;
    out = check(base + ".json",
                "--track reporter --track reporter-child "
                "--flow reporter\\>reporter-child",
                &st);
    EXPECT_EQ(st, 0) << out;
    out = check(base + ".json", "--track recv-waiter", &st);
    EXPECT_EQ(st, 1) << out;
    EXPECT_NE(out.find("no track named 'recv-waiter'"), std::string::npos) << out;
}

TEST_F(Chrome, BadOutputPathFailsClearly)
{
    make_log(base + ".log");
    int st = -1;
    std::string out =
        run_capture(COHO_TRACE_TOOL " --chrome /nonexistent/dir/x.json all " + base + ".log", &st);
    EXPECT_EQ(st, 1) << out;
    EXPECT_NE(out.find("coho-trace: /nonexistent/dir/x.json: No such file or directory"),
              std::string::npos)
        << out;
}

/* Runs park_trace_target with its log at `level`; returns its stdout line ("fd=N mutex=0x..
 * chan=0x.. holder=ID"), or an empty string after a failed assertion. */
std::string run_park_target(const std::string &log, const char *level)
{
    int st = -1;

    unlink(log.c_str());
    std::string out =
        run_capture(std::string(COHO_PARK_TARGET) + " " + log + " " + level + " 2>/dev/null", &st);
    EXPECT_EQ(st, 0) << out;
    return st == 0 ? out : std::string();
}

/* The value of `key=` in the target's line. */
std::string field(const std::string &line, const std::string &key)
{
    size_t at = line.find(key + "=");

    if (at == std::string::npos)
        return "";
    at += key.size() + 1;
    return line.substr(at, line.find_first_of(" \n", at) - at);
}

/* With the log at trace level every park writes a park and a wake line, and the Chrome trace
 * draws each wait as a "parked: LABEL" span on its coroutine's track, labelled with exactly
 * what it waited on. */
TEST_F(Chrome, ParkedIntervalsFromParkAndWakeLines)
{
    std::string line = run_park_target(base + ".log", "trace");
    ASSERT_NE(line, "");
    std::string fd = field(line, "fd"), mu = field(line, "mutex"), ch = field(line, "chan"),
                holder = field(line, "holder");
    ASSERT_TRUE(!fd.empty() && !mu.empty() && !ch.empty() && !holder.empty()) << line;
    std::string log = slurp(base + ".log");
    /* reader, holder (sleep), locker, chan-reader, joiner, waker (sleep): six waits at least */
    EXPECT_GE(count(log, "]park co="), 6u) << log;
    EXPECT_EQ(count(log, "]park co="), count(log, "]wake co=")) << log;
    EXPECT_NE(log.find("]park co=" + holder + " on=sleep"), std::string::npos) << log;
    int st = -1;
    std::string out =
        run_capture(COHO_TRACE_TOOL " --chrome " + base + ".json all " + base + ".log", &st);
    ASSERT_EQ(st, 0) << out;
    out = check(base + ".json",
                "--track reader --track locker --track chan-reader --track joiner "
                "--parked-on 'reader=read fd=" +
                    fd + "' --parked-on 'locker=mutex@" + mu +
                    "' --parked-on 'chan-reader=chan recv@" + ch + "' --parked-on 'joiner=join " +
                    holder +
                    "' --parked-on holder=sleep --parked-on waker=sleep "
                    "--no-instant 'park co=' --no-instant 'wake co='",
                &st);
    EXPECT_EQ(st, 0) << out << "\n" << log;
    EXPECT_NE(out.find("ok: "), std::string::npos) << out;
}

/* Below trace level the park path writes nothing: the same program at debug level logs its
 * spawn and exit lines but no park or wake line, and its trace has no parked span. */
TEST_F(Chrome, NoParkLinesWithTracingOff)
{
    ASSERT_NE(run_park_target(base + ".log", "debug"), "");
    std::string log = slurp(base + ".log");
    EXPECT_GE(count(log, "]spawn co="), 6u) << log;
    EXPECT_EQ(count(log, "park co="), 0u) << log;
    EXPECT_EQ(count(log, "wake co="), 0u) << log;
    int st = -1;
    std::string out =
        run_capture(COHO_TRACE_TOOL " --chrome " + base + ".json all " + base + ".log", &st);
    ASSERT_EQ(st, 0) << out;
    out = check(base + ".json", "--track reader --track locker --no-parked", &st);
    EXPECT_EQ(st, 0) << out;
    /* and the checker's --no-parked does fail on a trace with parked spans */
    ASSERT_NE(run_park_target(base + ".log", "trace"), "");
    run_capture(COHO_TRACE_TOOL " --chrome " + base + ".json all " + base + ".log", &st);
    ASSERT_EQ(st, 0);
    out = check(base + ".json", "--no-parked", &st);
    EXPECT_EQ(st, 1) << out;
}

/* --html writes one self-contained page: the same trace embedded (checked as above), the
 * viewer's script inline and nothing fetched from the network. */
TEST_F(Chrome, HtmlPageEmbedsTheTrace)
{
    std::string line = run_park_target(base + ".log", "trace");
    ASSERT_NE(line, "");
    int st = -1;
    std::string out =
        run_capture(COHO_TRACE_TOOL " --html " + base + ".html all " + base + ".log", &st);
    ASSERT_EQ(st, 0) << out;
    std::string page = slurp(base + ".html");
    EXPECT_EQ(page.find("@COHO_TRACE_DATA@"), std::string::npos);
    EXPECT_EQ(page.find("http://"), page.find("http://www.w3.org/2000/svg")) << "a URL besides "
                                                                                "the SVG namespace";
    EXPECT_EQ(page.find("https://"), std::string::npos);
    EXPECT_EQ(page.find("<script src"), std::string::npos);
    out = check(base + ".html",
                "--track reader --parked-on 'reader=read fd=" + field(line, "fd") +
                    "' --parked-on waker=sleep --flow 'outside coroutines>waker'",
                &st);
    EXPECT_EQ(st, 0) << out;
}

/* The page renders in a browser: Chromium headless (tools/deps.sh viewer; skipped without it)
 * loads it from a file, runs its script without an error and draws every track, parked
 * interval, log line and arrow of the trace (the counts the script puts on <body> after
 * drawing, read back from the DOM Chromium dumps). */
TEST_F(Chrome, HtmlPageRendersInChromium)
{
    if (!have_program("chromium"))
        GTEST_SKIP() << "chromium is not installed (tools/deps.sh viewer)";
    ASSERT_NE(run_park_target(base + ".log", "trace"), "");
    int st = -1;
    std::string out =
        run_capture(COHO_TRACE_TOOL " --html " + base + ".html all " + base + ".log", &st);
    ASSERT_EQ(st, 0) << out;
    /* a private profile directory: parallel runs do not share one */
    std::string dom =
        run_capture("timeout 150 chromium --headless --no-sandbox --disable-gpu "
                    "--user-data-dir=" +
                        base + ".profile --dump-dom file://" + base + ".html 2>/dev/null",
                    &st);
    run_capture("rm -rf " + base + ".profile");
    ASSERT_EQ(st, 0) << dom;
    /* 7 tracks (6 coroutines and the thread outside them), 6 waits, 6 spawn arrows */
    EXPECT_NE(dom.find("data-rendered=\"{&quot;tracks&quot;:7,&quot;spans&quot;:7,&quot;"
                       "parked&quot;:6,"),
              std::string::npos)
        << dom.substr(0, 4000);
    EXPECT_NE(dom.find("&quot;arrows&quot;:6}"), std::string::npos) << dom.substr(0, 4000);
    EXPECT_NE(dom.find("<div id=\"errors\"></div>"), std::string::npos) << dom.substr(0, 4000);
    EXPECT_NE(dom.find("parked: mutex@0x"), std::string::npos);
}

/* The checker catches each kind of breakage, so its "ok" means something. */
TEST_F(Chrome, CheckerRejectsBrokenTraces)
{
    const char *bad[][2] = {
        {"[]", "no traceEvents list"},
        {"{\"traceEvents\":[{\"ph\":\"B\",\"ts\":1,\"pid\":1}]}", "lacks tid"},
        {"{\"traceEvents\":[{\"ph\":\"B\",\"name\":\"x\",\"ts\":1,\"pid\":1,\"tid\":2}]}",
         "never ends"},
        {"{\"traceEvents\":[{\"ph\":\"E\",\"ts\":1,\"pid\":1,\"tid\":2}]}", "without an open B"},
        {"{\"traceEvents\":[{\"ph\":\"B\",\"ts\":1,\"pid\":1,\"tid\":2},"
         "{\"ph\":\"s\",\"id\":7,\"ts\":2,\"pid\":1,\"tid\":2},"
         "{\"ph\":\"E\",\"ts\":3,\"pid\":1,\"tid\":2}]}",
         "flow id 7 has no end"},
    };
    for (const auto &b : bad) {
        std::ofstream(base + ".json") << b[0];
        int st = -1;
        std::string out = check(base + ".json", "", &st);
        EXPECT_EQ(st, 1) << b[0];
        EXPECT_NE(out.find(b[1]), std::string::npos) << b[0] << ": " << out;
    }
}

} // namespace
