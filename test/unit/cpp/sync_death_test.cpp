// SPDX-License-Identifier: MIT
// Misuse of the single-thread sync primitives aborts with a COHO_CHECK message that names the
// coroutine: unlocking a mutex another coroutine holds, using a mutex (or a semaphore) from a
// second scheduler's thread, and a wait group count below zero.
#include <gtest/gtest.h>

#include <thread>

#include <coho.hpp>

namespace {

class SyncDeathTest : public ::testing::Test {
protected:
    void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

void unlock_by_non_owner()
{
    coho::Scheduler s;
    coho::Mutex m;
    s.spawn([&] {
        m.lock();
        coho::this_co::yield();
        m.unlock();
    });
    s.spawn([&] {
        coho_set_name(0, "intruder");
        m.unlock(); // runs while the first coroutine holds it
    });
    s.run();
}

void unlock_of_an_unlocked_mutex()
{
    coho::Scheduler s;
    coho::Mutex m;
    s.spawn([&] { m.unlock(); });
    s.run();
}

void mutex_from_another_thread()
{
    coho::Mutex m;
    {
        coho::Scheduler s;
        s.spawn([&] {
            std::lock_guard<coho::Mutex> g(m); // binds the mutex to this thread
        });
        s.run();
    }
    std::thread t([&] {
        coho::Scheduler s;
        s.spawn([&] { std::lock_guard<coho::Mutex> g(m); });
        s.run();
    });
    t.join();
}

void semaphore_post_from_a_plain_thread()
{
    coho_sem_t sem;
    coho_sem_init(&sem, 0);
    {
        coho::Scheduler s;
        s.spawn([&] { coho_sem_timedwait_ms(&sem, 1); });
        s.run();
    }
    std::thread t([&] { coho_sem_post(&sem); });
    t.join();
}

void wait_group_below_zero()
{
    coho::Scheduler s;
    coho::WaitGroup wg;
    s.spawn([&] {
        wg.add(1);
        wg.done();
        wg.done();
    });
    s.run();
}

} // namespace

TEST_F(SyncDeathTest, UnlockByNonOwnerAbortsNamingBothCoroutines)
{
    EXPECT_DEATH(unlock_by_non_owner(),
                 "coho_mutex_unlock: coroutine [0-9]+ \\(intruder\\) unlocked mutex 0x[0-9a-f]+ "
                 "it does not own \\(owner: coroutine [0-9]+\\)");
}

TEST_F(SyncDeathTest, UnlockOfAnUnlockedMutexAborts)
{
    EXPECT_DEATH(unlock_of_an_unlocked_mutex(),
                 "coho_mutex_unlock: coroutine [0-9]+ unlocked mutex 0x[0-9a-f]+, which is not "
                 "locked");
}

TEST_F(SyncDeathTest, MutexUsedFromAnotherSchedulersThreadAborts)
{
    EXPECT_DEATH(mutex_from_another_thread(),
                 "coho_mutex_lock: mutex 0x[0-9a-f]+ used from another thread \\(coroutine "
                 "[0-9]+\\)");
}

TEST_F(SyncDeathTest, SemaphorePostFromAPlainThreadAborts)
{
    EXPECT_DEATH(semaphore_post_from_a_plain_thread(),
                 "coho_sem_post: semaphore 0x[0-9a-f]+ used from another thread");
}

TEST_F(SyncDeathTest, WaitGroupCountBelowZeroAborts)
{
    EXPECT_DEATH(wait_group_below_zero(), "coho_wg_add: wait group 0x[0-9a-f]+ count 0 -1 goes "
                                          "out of range");
}
