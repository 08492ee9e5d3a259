// SPDX-License-Identifier: MIT
// Scheduler misuse that must abort with a clear message (COHO_CHECK), and the stack-overflow
// report that names the coroutine, checked with GoogleTest death tests.
#include <gtest/gtest.h>
#include <pthread.h>

#include <cstring>

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

} // namespace
