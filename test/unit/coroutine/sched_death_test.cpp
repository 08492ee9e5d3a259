// SPDX-License-Identifier: MIT
// Scheduler misuse that must abort with a clear message (COHO_CHECK), and the stack-overflow
// report that names the coroutine, checked with GoogleTest death tests.
#include <gtest/gtest.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <regex>
#include <string>

#include <coho.h>

extern "C" {
#include "coroutine/internal.h"
}

namespace {

class SchedDeath : public ::testing::Test {
protected:
    void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

void noop(void *) {}

void *spawn_from_thread(void *arg)
{
    coho_spawn(static_cast<coho_sched_t *>(arg), noop, nullptr);
    return nullptr;
}

TEST_F(SchedDeath, SpawnFromAnotherThreadAbortsNamingBothThreads)
{
    EXPECT_DEATH(
        {
            coho_sched_t *s = coho_sched_create(nullptr);
            pthread_t t;

            pthread_create(&t, nullptr, spawn_from_thread, s);
            pthread_join(t, nullptr);
        },
        "coho_spawn: scheduler 0x[0-9a-f]+ belongs to thread [0-9]+, called from thread "
        "[0-9]+ \\(use coho_sched_post from other threads\\)");
}

void nested_run(void *arg)
{
    coho_sched_run(static_cast<coho_sched_t *>(arg));
}

TEST_F(SchedDeath, RunFromInsideACoroutineAborts)
{
    EXPECT_DEATH(
        {
            coho_sched_t *s = coho_sched_create(nullptr);

            coho_spawn(s, nested_run, s);
            coho_sched_run(s);
        },
        "coho_sched_run: scheduler 0x[0-9a-f]+ is already running");
}

void blocks_without_prepare(void *)
{
    coho__co_block(-1);
}

TEST_F(SchedDeath, BlockWithoutPrepareAborts)
{
    EXPECT_DEATH(
        {
            coho_sched_t *s = coho_sched_create(nullptr);

            coho_spawn(s, blocks_without_prepare, nullptr);
            coho_sched_run(s);
        },
        "coroutine [0-9]+: coho__co_block without coho__co_block_prepare");
}

// Each frame uses more than a KiB and the recursion is not a tail call, so the stack runs
// into the guard page below it.
extern "C" __attribute__((noinline)) int recurse_forever(int depth)
{
    volatile char frame[1024];

    if (depth < 0) // never: the stack runs out first
        return 0;
    frame[0] = static_cast<char>(depth);
    frame[sizeof(frame) - 1] = static_cast<char>(depth);
    return recurse_forever(depth + 1) + frame[0] + frame[sizeof(frame) - 1];
}

[[maybe_unused]] void overflows(void *)
{
    recurse_forever(0);
}

TEST_F(SchedDeath, GuardPageOverflowReportsCoroutineNameEntryAndStackSize)
{
#ifdef COHO_SANITIZE_BUILD
    GTEST_SKIP() << "sanitizer builds leave SIGSEGV to the sanitizer";
#else
    EXPECT_DEATH(
        {
            coho_sched_opts_t o;
            coho_spawn_opts_t so;

            coho_sched_opts_init(&o);
            o.stack_size = 64 * 1024;
            coho_sched_t *s = coho_sched_create(&o);
            coho_spawn_opts_init(&so);
            so.name = "deep-recursion";
            coho_spawn_ex(s, overflows, nullptr, &so);
            coho_sched_run(s);
        },
        "coroutine [0-9]+ \\(deep-recursion, entry (_ZN12_GLOBAL__N_19overflowsEPv|0x[0-9a-f]+)\\) "
        "overflowed its 64 KiB stack");
#endif
}

[[maybe_unused]] void *overflow_on_thread(void *)
{
    coho_sched_t *s = coho_sched_create(nullptr);
    coho_spawn_opts_t so;

    coho_spawn_opts_init(&so);
    so.name = "second-thread";
    coho_spawn_ex(s, overflows, nullptr, &so);
    coho_sched_run(s);
    return nullptr;
}

// Every scheduler thread gets its own alternate signal stack, so the report works there too.
TEST_F(SchedDeath, GuardPageOverflowOnASecondSchedulerThreadIsReported)
{
#ifdef COHO_SANITIZE_BUILD
    GTEST_SKIP() << "sanitizer builds leave SIGSEGV to the sanitizer";
#else
    EXPECT_DEATH(
        {
            coho_sched_t *main_sched = coho_sched_create(nullptr);
            pthread_t t;

            pthread_create(&t, nullptr, overflow_on_thread, nullptr);
            pthread_join(t, nullptr);
            coho_sched_destroy(main_sched);
        },
        "coroutine [0-9]+ \\(second-thread, entry [^)]+\\) overflowed its [0-9]+ KiB stack");
#endif
}

[[maybe_unused]] void logs_then_overflows(void *)
{
    coho_log_info("line buffered before the overflow");
    recurse_forever(0);
}

// The report chains to the log's crash handler, which writes the lines still buffered.
TEST_F(SchedDeath, GuardPageOverflowChainsToTheLogFlush)
{
#ifdef COHO_SANITIZE_BUILD
    GTEST_SKIP() << "sanitizer builds leave SIGSEGV to the sanitizer";
#else
    const char *dir = std::getenv("COHO_TEST_TMPDIR");
    // No pid in the name: the threadsafe death test re-runs this body in a new process.
    std::string path = std::string(dir != nullptr ? dir : "/tmp") + "/sched_death_overflow.log";

    mkdir(dir != nullptr ? dir : "/tmp", 0755);
    unlink(path.c_str());
    EXPECT_DEATH(
        {
            coho_log_opts_t lo;

            coho_log_opts_init(&lo);
            lo.path = path.c_str();
            lo.flush_interval_ms = 60 * 1000; // nothing reaches the file before the crash
            coho_log_open(&lo);
            coho_sched_t *s = coho_sched_create(nullptr);
            coho_spawn(s, logs_then_overflows, nullptr);
            coho_sched_run(s);
        },
        "overflowed its [0-9]+ KiB stack");
    FILE *f = std::fopen(path.c_str(), "r");
    ASSERT_NE(f, nullptr);
    char buf[4096] = {0};
    size_t n = std::fread(buf, 1, sizeof(buf) - 1, f);
    std::fclose(f);
    unlink(path.c_str());
    buf[n] = '\0';
    EXPECT_NE(std::strstr(buf, "line buffered before the overflow"), nullptr) << buf;
#endif
}

// Seconds since the epoch of a line's "YY/MM/DD HH:MM:SS" stamp read as local time, or -1.
[[maybe_unused]] time_t line_stamp(const std::string &line)
{
    struct tm tm = {};
    int yy, mo, dd, hh, mi, ss;

    if (std::sscanf(line.c_str(), "%2d/%2d/%2d %2d:%2d:%2d", &yy, &mo, &dd, &hh, &mi, &ss) != 6)
        return -1;
    tm.tm_year = 100 + yy;
    tm.tm_mon = mo - 1;
    tm.tm_mday = dd;
    tm.tm_hour = hh;
    tm.tm_min = mi;
    tm.tm_sec = ss;
    tm.tm_isdst = -1;
    return mktime(&tm);
}

// The report chains to the log's crash handler, which writes the lines still buffered, and the
// report itself is a fatal line of the log file, after them, in the overflowing coroutine's
// name (TID-COID) and with the local time. A time zone that is not whole hours from UTC shows
// that the signal-safe time stamp applies the offset.
TEST_F(SchedDeath, GuardPageOverflowReportIsWrittenToTheLogAfterTheBufferedLines)
{
#ifdef COHO_SANITIZE_BUILD
    GTEST_SKIP() << "sanitizer builds leave SIGSEGV to the sanitizer";
#else
    const char *dir = std::getenv("COHO_TEST_TMPDIR");
    const char *old_tz = std::getenv("TZ");
    std::string saved_tz = old_tz != nullptr ? old_tz : "";
    // The parent's pid keeps concurrent runs apart. The threadsafe death test re-runs this body
    // in a new process, which finds the parent's name in the environment.
    const char *inherited = std::getenv("SCHED_DEATH_REPORT_LOG");
    std::string path = inherited != nullptr
                           ? inherited
                           : std::string(dir != nullptr ? dir : "/tmp") + "/sched_death_report." +
                                 std::to_string(getpid()) + ".log";
    setenv("SCHED_DEATH_REPORT_LOG", path.c_str(), 1);

    mkdir(dir != nullptr ? dir : "/tmp", 0755);
    unlink(path.c_str());
    setenv("TZ", "XST-5:30", 1); // POSIX form: no tzdata needed; the child inherits it
    tzset();
    time_t before = time(nullptr);
    EXPECT_DEATH(
        {
            coho_log_opts_t lo;

            coho_log_opts_init(&lo);
            lo.path = path.c_str();
            lo.flush_interval_ms = 60 * 1000; // nothing reaches the file before the crash
            coho_log_open(&lo);
            coho_sched_t *s = coho_sched_create(nullptr);
            coho_spawn(s, logs_then_overflows, nullptr);
            coho_sched_run(s);
        },
        "overflowed its [0-9]+ KiB stack");
    time_t after = time(nullptr);
    std::string text;
    {
        FILE *f = std::fopen(path.c_str(), "r");
        ASSERT_NE(f, nullptr);
        char buf[4096];
        size_t n;

        while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0)
            text.append(buf, n);
        std::fclose(f);
    }
    unlink(path.c_str());
    unsetenv("SCHED_DEATH_REPORT_LOG");

    size_t buffered = text.find("line buffered before the overflow");
    size_t report = text.find("overflowed its ");
    ASSERT_NE(buffered, std::string::npos) << text;
    ASSERT_NE(report, std::string::npos) << text;
    EXPECT_LT(buffered, report) << text;
    size_t bol = text.rfind('\n', report);
    bol = bol == std::string::npos ? 0 : bol + 1;
    std::string line = text.substr(bol, text.find('\n', report) - bol);
    std::smatch m;
    ASSERT_TRUE(std::regex_search(
        line, m,
        std::regex(
            "^[0-9]{2}/[0-9]{2}/[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2} [0-9]{3} "
            "\\[coroutine/overflow\\.c:[0-9]+\\]-\\[fatal\\]-\\[[0-9]+-([0-9]+)\\]"
            "coroutine ([0-9]+) \\(unnamed, entry [^)]+\\) overflowed its [0-9]+ KiB stack$")))
        << line;
    EXPECT_EQ(m[1].str(), m[2].str()) << "the COID field names the overflowing coroutine";
    EXPECT_NE(m[1].str(), "0");
    time_t stamp = line_stamp(line);
    EXPECT_GE(stamp, before - 1) << line;
    EXPECT_LE(stamp, after + 1) << line;
    if (old_tz != nullptr)
        setenv("TZ", saved_tz.c_str(), 1);
    else
        unsetenv("TZ");
    tzset();
#endif
}

// A log opened after the first scheduler started (its handlers were installed with the
// scheduler's, in the same order) still receives the report.
TEST_F(SchedDeath, GuardPageOverflowReportReachesALogOpenedAfterTheScheduler)
{
#ifdef COHO_SANITIZE_BUILD
    GTEST_SKIP() << "sanitizer builds leave SIGSEGV to the sanitizer";
#else
    const char *dir = std::getenv("COHO_TEST_TMPDIR");
    const char *inherited = std::getenv("SCHED_DEATH_LATE_LOG");
    std::string path = inherited != nullptr
                           ? inherited
                           : std::string(dir != nullptr ? dir : "/tmp") + "/sched_death_late." +
                                 std::to_string(getpid()) + ".log";

    setenv("SCHED_DEATH_LATE_LOG", path.c_str(), 1);
    mkdir(dir != nullptr ? dir : "/tmp", 0755);
    unlink(path.c_str());
    EXPECT_DEATH(
        {
            coho_sched_t *s = coho_sched_create(nullptr);
            coho_log_opts_t lo;

            coho_log_opts_init(&lo);
            lo.path = path.c_str();
            coho_log_open(&lo);
            coho_spawn(s, logs_then_overflows, nullptr);
            coho_sched_run(s);
        },
        "overflowed its [0-9]+ KiB stack");
    std::string text;
    {
        FILE *f = std::fopen(path.c_str(), "r");
        ASSERT_NE(f, nullptr);
        char buf[4096];
        size_t n;

        while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0)
            text.append(buf, n);
        std::fclose(f);
    }
    unlink(path.c_str());
    unsetenv("SCHED_DEATH_LATE_LOG");
    EXPECT_NE(text.find("line buffered before the overflow"), std::string::npos) << text;
    EXPECT_TRUE(
        std::regex_search(text, std::regex("\\]-\\[fatal\\]-\\[[0-9]+-[1-9][0-9]*\\]coroutine "
                                           "[0-9]+ \\(unnamed, entry [^)]+\\) overflowed "
                                           "its [0-9]+ KiB stack")))
        << text;
#endif
}

// Without a log file the report still reaches stderr, and the buffered lines go there too.
TEST_F(SchedDeath, GuardPageOverflowWithoutALogFileReportsOnStderr)
{
#ifdef COHO_SANITIZE_BUILD
    GTEST_SKIP() << "sanitizer builds leave SIGSEGV to the sanitizer";
#else
    EXPECT_DEATH(
        {
            coho_sched_t *s = coho_sched_create(nullptr);
            coho_spawn(s, overflows, nullptr);
            coho_sched_run(s);
        },
        "coho: coroutine [0-9]+ \\(unnamed, entry [^)]+\\) overflowed its [0-9]+ KiB stack");
#endif
}

} // namespace
