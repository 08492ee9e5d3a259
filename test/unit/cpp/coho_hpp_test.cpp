// SPDX-License-Identifier: MIT
// Tests of coho.hpp: Scheduler and spawn, this_co, Mutex/CondVar/Semaphore/WaitGroup,
// Channel<T> (by value, owned heap copies, across threads), join rethrowing what escaped a
// coroutine, and the per-coroutine C++ exception state.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <coho.hpp>

using namespace std::chrono_literals;

namespace {

using Clock = std::chrono::steady_clock;

long elapsed_ms(Clock::time_point t0)
{
    return static_cast<long>(
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count());
}

template <class F>
void expect_system_error(F &&f, int code)
{
    try {
        f();
        ADD_FAILURE() << "no std::system_error thrown";
    } catch (const std::system_error &e) {
        EXPECT_EQ(e.code().value(), code) << e.what();
        EXPECT_EQ(&e.code().category(), &std::generic_category());
    }
}

} // namespace

// ---- scheduler, spawn, this_co -------------------------------------------------------------

TEST(CppScheduler, SpawnMovesAMoveOnlyCallableIntoTheCoroutine)
{
    coho::Scheduler s;
    auto p = std::make_unique<int>(41);
    int seen = 0;
    uint64_t id = s.spawn([p = std::move(p), &seen] { seen = *p + 1; });
    EXPECT_NE(id, 0u);
    EXPECT_EQ(seen, 0); // not run before run()
    s.run();
    EXPECT_EQ(seen, 42);
}

TEST(CppScheduler, DestroyedWithoutRunDestroysTheCallablesOfCoroutinesThatNeverRan)
{
    auto token = std::make_shared<int>(1);
    {
        coho::Scheduler s;
        s.spawn([token] {});
        s.spawn([token] {});
        EXPECT_EQ(token.use_count(), 3);
    }
    EXPECT_EQ(token.use_count(), 1);
}

TEST(CppScheduler, SpawnFromInsideACoroutineRunsOnTheSameScheduler)
{
    coho::Scheduler s;
    std::vector<int> order;
    s.spawn([&] {
        uint64_t a = coho::spawn([&] { order.push_back(2); });
        uint64_t b = coho::spawn([&] { order.push_back(3); });
        order.push_back(1);
        coho::join(a);
        coho::join(b);
        order.push_back(4);
    });
    s.run();
    EXPECT_EQ(order, (std::vector<int>{1, 2, 3, 4}));
}

// The free coho::spawn with options: a detached coroutine is reaped when it finishes (its
// record does not wait for a join that never comes), a joinable one waits for coho_join.
TEST(CppScheduler, FreeSpawnWithDetachedOptionsReapsTheCoroutineWhenItEnds)
{
    coho::Scheduler s;
    int detached_rc = 0, detached_errno = 0, joinable_rc = -1;
    s.spawn([&] {
        coho_spawn_opts_t so;
        coho_spawn_opts_init(&so);
        so.detached = true;
        so.name = "detached";
        bool done = false;
        uint64_t d = coho::spawn(so, [&] { done = true; });
        uint64_t j = coho::spawn([] {});
        while (!done)
            coho_yield();
        coho_yield();
        errno = 0;
        detached_rc = coho_join(d, 0);
        detached_errno = errno;
        joinable_rc = coho_join(j, -1);
    });
    s.run();
    EXPECT_EQ(detached_rc, -1);
    EXPECT_EQ(detached_errno, ESRCH) << "the detached coroutine's record was not reaped";
    EXPECT_EQ(joinable_rc, 0);
}

TEST(CppScheduler, SpawnOnAThreadWithoutSchedulerThrowsEperm)
{
    std::thread t([] { expect_system_error([] { coho::spawn([] {}); }, EPERM); });
    t.join();
}

TEST(CppThisCo, IdIsTheCoroutineIdInsideAndZeroOutside)
{
    coho::Scheduler s;
    uint64_t inside = 0;
    uint64_t id = s.spawn([&] { inside = coho::this_co::id(); });
    EXPECT_EQ(coho::this_co::id(), 0u);
    s.run();
    EXPECT_EQ(inside, id);
}

TEST(CppThisCo, SleepForAndSleepUntilWaitAtLeastTheDuration)
{
    coho::Scheduler s;
    long slept_for = -1;
    long slept_until = -1;
    s.spawn([&] {
        auto t0 = Clock::now();
        coho::this_co::sleep_for(30ms);
        slept_for = elapsed_ms(t0);
        t0 = Clock::now();
        coho::this_co::sleep_until(t0 + 25ms);
        slept_until = elapsed_ms(t0);
        coho::this_co::sleep_for(-5ms); // already due: returns
    });
    s.run();
    EXPECT_GE(slept_for, 30);
    EXPECT_LT(slept_for, 30 + 1000);
    EXPECT_GE(slept_until, 25);
    EXPECT_LT(slept_until, 25 + 1000);
}

// Sleeps keep their nanoseconds: 20 sleeps of 200 us, none early, and a quarter or more under
// 0.6 ms (with whole-millisecond sleeps none would be; a loaded machine may make some late).
TEST(CppThisCo, SubMillisecondSleepsAreNotRoundedToAMillisecond)
{
    coho::Scheduler s;
    int early = 0, quick = 0;
    s.spawn([&] {
        for (int i = 0; i < 20; i++) {
            auto t0 = Clock::now();
            if (i % 2)
                coho::this_co::sleep_for(200us);
            else
                coho::this_co::sleep_until(t0 + 200us);
            auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0);
            early += us.count() < 200;
            quick += us.count() < 600;
        }
    });
    s.run();
    EXPECT_EQ(early, 0);
    EXPECT_GE(quick, 5);
}

TEST(CppThisCo, SleepOutsideACoroutineThrowsEperm)
{
    expect_system_error([] { coho::this_co::sleep_for(1ms); }, EPERM);
}

// ---- Mutex, CondVar, Semaphore, WaitGroup ------------------------------------------------

TEST(CppMutex, LockGuardExcludesCoroutinesThatYieldInside)
{
    coho::Scheduler s;
    coho::Mutex m;
    int inside = 0;
    int max_inside = 0;
    for (int i = 0; i < 6; i++) {
        s.spawn([&] {
            for (int k = 0; k < 20; k++) {
                std::lock_guard<coho::Mutex> g(m);
                max_inside = std::max(max_inside, ++inside);
                coho::this_co::yield();
                --inside;
            }
        });
    }
    s.run();
    EXPECT_EQ(max_inside, 1);
}

TEST(CppMutex, TryLockFailsWhileHeldAndLockOutsideACoroutineThrowsEperm)
{
    coho::Scheduler s;
    coho::Mutex m;
    bool second = true;
    s.spawn([&] {
        std::unique_lock<coho::Mutex> lk(m);
        coho::spawn([&] { second = m.try_lock(); });
        coho::this_co::yield();
    });
    s.run();
    EXPECT_FALSE(second);
    EXPECT_FALSE(m.try_lock());
    expect_system_error([&] { m.lock(); }, EPERM);
}

TEST(CppCondVar, WaitWithPredicateReturnsOnceItHolds)
{
    coho::Scheduler s;
    coho::Mutex m;
    coho::CondVar cv;
    int value = 0;
    std::vector<int> seen;
    for (int i = 0; i < 3; i++) {
        s.spawn([&] {
            std::unique_lock<coho::Mutex> lk(m);
            cv.wait(lk, [&] { return value >= 3; });
            EXPECT_TRUE(lk.owns_lock());
            seen.push_back(value);
        });
    }
    s.spawn([&] {
        for (int i = 0; i < 3; i++) {
            coho::this_co::yield();
            std::lock_guard<coho::Mutex> g(m);
            value++;
            cv.notify_all();
        }
    });
    s.run();
    EXPECT_EQ(seen, (std::vector<int>{3, 3, 3}));
}

TEST(CppCondVar, WaitForTimesOutHoldingTheLockAndNotifyOneEndsAWait)
{
    coho::Scheduler s;
    coho::Mutex m;
    coho::CondVar cv;
    std::cv_status first = std::cv_status::no_timeout;
    bool second = false;
    bool pred_result = true;
    long waited = -1;
    s.spawn([&] {
        std::unique_lock<coho::Mutex> lk(m);
        auto t0 = Clock::now();
        first = cv.wait_for(lk, 30ms);
        waited = elapsed_ms(t0);
        EXPECT_TRUE(lk.owns_lock());
        pred_result = cv.wait_for(lk, 20ms, [] { return false; });
        coho::spawn([&] {
            std::lock_guard<coho::Mutex> g(m);
            cv.notify_one();
        });
        second = cv.wait_for(lk, 10s) == std::cv_status::no_timeout;
    });
    s.run();
    EXPECT_EQ(first, std::cv_status::timeout);
    EXPECT_GE(waited, 30);
    EXPECT_LT(waited, 30 + 1000);
    EXPECT_FALSE(pred_result);
    EXPECT_TRUE(second);
}

TEST(CppSemaphore, AcquireParksUntilReleaseAndTryAcquireForTimesOut)
{
    coho::Scheduler s;
    coho::Semaphore sem(1);
    std::vector<int> order;
    s.spawn([&] {
        sem.acquire();
        EXPECT_FALSE(sem.try_acquire());
        EXPECT_FALSE(sem.try_acquire_for(10ms));
        coho::spawn([&] {
            sem.acquire();
            order.push_back(2);
        });
        coho::this_co::yield();
        order.push_back(1);
        sem.release();
    });
    s.run();
    EXPECT_EQ(order, (std::vector<int>{1, 2}));
    EXPECT_EQ(sem.value(), 0u);
}

TEST(CppWaitGroup, WaitReturnsAfterEveryDone)
{
    coho::Scheduler s;
    coho::WaitGroup wg;
    int finished = 0;
    s.spawn([&] {
        wg.add(5);
        for (int i = 0; i < 5; i++) {
            coho::spawn([&, i] {
                coho::this_co::sleep_for(std::chrono::milliseconds(2 * i));
                finished++;
                wg.done();
            });
        }
        EXPECT_FALSE(wg.wait_for(0ms));
        wg.wait();
        EXPECT_EQ(finished, 5);
    });
    s.run();
    EXPECT_EQ(finished, 5);
}

// ---- Channel -----------------------------------------------------------------------------

TEST(CppChannel, SendRecvKeepsOrderAndCloseDrainsThenEnds)
{
    coho::Scheduler s;
    coho::Channel<int> ch(4);
    std::vector<int> got;
    bool send_after_close = true;
    s.spawn([&] {
        for (int i = 0; i < 10; i++)
            EXPECT_TRUE(ch.send(i));
        ch.close();
        send_after_close = ch.send(99);
    });
    s.spawn([&] {
        while (std::optional<int> v = ch.recv())
            got.push_back(*v);
    });
    s.run();
    EXPECT_EQ(got, (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
    EXPECT_FALSE(send_after_close);
    EXPECT_TRUE(ch.is_closed());
}

TEST(CppChannel, TryAndTimedVariantsReportFullEmptyAndTimeout)
{
    coho::Scheduler s;
    coho::Channel<int> ch(1);
    s.spawn([&] {
        EXPECT_FALSE(ch.try_recv().has_value());
        EXPECT_TRUE(ch.try_send(1));
        EXPECT_FALSE(ch.try_send(2));
        EXPECT_EQ(ch.size(), 1u);
        auto t0 = Clock::now();
        EXPECT_FALSE(ch.send_for(3, 20ms));
        EXPECT_GE(elapsed_ms(t0), 20);
        EXPECT_EQ(ch.recv_for(20ms), std::optional<int>(1));
        t0 = Clock::now();
        EXPECT_FALSE(ch.recv_for(20ms).has_value());
        EXPECT_GE(elapsed_ms(t0), 20);
        EXPECT_FALSE(ch.is_closed());
    });
    s.run();
}

TEST(CppChannel, CarriesMoveOnlyAndNonTrivialTypes)
{
    coho::Scheduler s;
    coho::Channel<std::unique_ptr<std::string>> ptrs(2);
    coho::Channel<std::string> strings(0);
    std::vector<std::string> got;
    s.spawn([&] {
        EXPECT_TRUE(ptrs.send(std::make_unique<std::string>("boxed")));
        std::string kept = "kept";
        EXPECT_FALSE(strings.try_send(std::move(kept))); // no receiver: not moved from
        EXPECT_EQ(kept, "kept");
        EXPECT_TRUE(strings.send(std::string(100, 'x'))); // beyond the small-string buffer
        EXPECT_TRUE(strings.send("short"));
        strings.close();
        // left buffered in `ptrs`: the destructor frees it (ASan checks)
        EXPECT_TRUE(ptrs.send(std::make_unique<std::string>("dropped")));
    });
    s.spawn([&] {
        auto p = ptrs.recv();
        ASSERT_TRUE(p.has_value());
        got.push_back(**p);
        while (auto v = strings.recv())
            got.push_back(*v);
    });
    s.run();
    EXPECT_EQ(got, (std::vector<std::string>{"boxed", std::string(100, 'x'), "short"}));
}

TEST(CppChannel, CarriesMessagesInOrderBetweenSchedulersOnTwoThreads)
{
    constexpr int n = 20000;
    coho::Channel<std::string> ch(8);
    int received = 0;
    bool in_order = true;
    std::thread consumer([&] {
        coho::Scheduler s;
        s.spawn([&] {
            while (auto v = ch.recv()) {
                if (*v != std::to_string(received))
                    in_order = false;
                received++;
            }
        });
        s.run();
    });
    std::thread producer([&] {
        coho::Scheduler s;
        s.spawn([&] {
            for (int i = 0; i < n; i++)
                ch.send(std::to_string(i));
            ch.close();
        });
        s.run();
    });
    producer.join();
    consumer.join();
    EXPECT_EQ(received, n);
    EXPECT_TRUE(in_order);
}

TEST(CppChannel, PlainThreadAndCoroutineExchangeMessages)
{
    coho::Channel<int> to_co(0);
    coho::Channel<int> to_thread(0);
    long sum = 0;
    std::thread echo([&] {
        while (auto v = to_co.recv())
            to_thread.send(*v * 2);
        to_thread.close();
    });
    coho::Scheduler s;
    s.spawn([&] {
        for (int i = 1; i <= 1000; i++) {
            to_co.send(i);
            sum += *to_thread.recv();
        }
        to_co.close();
        EXPECT_FALSE(to_thread.recv().has_value());
    });
    s.run();
    echo.join();
    EXPECT_EQ(sum, 1000L * 1001L);
}

// ---- exceptions ---------------------------------------------------------------------------

TEST(CppJoin, RethrowsTheExceptionThatEscapedTheCoroutine)
{
    coho::Scheduler s;
    std::string what;
    bool second_join_esrch = false;
    s.spawn([&] {
        uint64_t id = coho::spawn([] { throw std::runtime_error("escaped here"); });
        try {
            coho::join(id);
        } catch (const std::runtime_error &e) {
            what = e.what();
        }
        try {
            coho::join(id);
        } catch (const std::system_error &e) {
            second_join_esrch = e.code().value() == ESRCH;
        }
    });
    s.run();
    EXPECT_EQ(what, "escaped here");
    EXPECT_TRUE(second_join_esrch);
}

TEST(CppJoin, ExceptionOfADetachedCoroutineIsLoggedAndNotKept)
{
    coho::Scheduler s;
    coho_spawn_opts_t o;
    coho_spawn_opts_init(&o);
    o.detached = true;
    bool ran = false;
    s.spawn(o, [&] {
        ran = true;
        throw std::runtime_error("nobody joins this");
    });
    s.run();
    EXPECT_TRUE(ran);
    EXPECT_TRUE(coho::detail::escaped().empty());
}

TEST(CppJoin, JoinForTimesOutAndThenJoinsACoroutineThatReturned)
{
    coho::Scheduler s;
    bool timed_out = false;
    bool joined = false;
    s.spawn([&] {
        uint64_t id = coho::spawn([] { coho::this_co::sleep_for(30ms); });
        timed_out = !coho::join_for(id, 1ms);
        joined = coho::join_for(id, 10s);
    });
    s.run();
    EXPECT_TRUE(timed_out);
    EXPECT_TRUE(joined);
}

TEST(CppExceptions, EachCoroutineRethrowsItsOwnExceptionAfterParkingInACatchBlock)
{
    coho::Scheduler s;
    std::string got[2];
    for (int i = 0; i < 2; i++) {
        s.spawn([i, &got] {
            try {
                throw std::runtime_error("thrown by coroutine " + std::to_string(i));
            } catch (...) {
                // Both coroutines are inside their catch blocks when each rethrows.
                coho::this_co::yield();
                coho::this_co::yield();
                try {
                    throw;
                } catch (const std::runtime_error &e) {
                    got[i] = e.what();
                }
            }
        });
    }
    s.run();
    EXPECT_EQ(got[0], "thrown by coroutine 0");
    EXPECT_EQ(got[1], "thrown by coroutine 1");
    EXPECT_EQ(std::current_exception(), nullptr); // the thread's own state is untouched
}

namespace {
// Parks in its destructor, i.e. in the middle of stack unwinding.
struct ParksWhileUnwinding {
    int *seen;
    ~ParksWhileUnwinding()
    {
        coho::this_co::yield();
        *seen = std::uncaught_exceptions();
    }
};
} // namespace

TEST(CppExceptions, UncaughtExceptionsCountIsPerCoroutine)
{
    coho::Scheduler s;
    int unwinding_sees = -1;
    int bystander_sees = -1;
    s.spawn([&] {
        try {
            ParksWhileUnwinding p{&unwinding_sees};
            throw std::logic_error("unwinding");
        } catch (const std::logic_error &) {
        }
    });
    s.spawn([&] { bystander_sees = std::uncaught_exceptions(); });
    s.run();
    EXPECT_EQ(unwinding_sees, 1);
    EXPECT_EQ(bystander_sees, 0);
}
