// SPDX-License-Identifier: MIT
// coho's C++17 face: RAII wrappers over the C API in coho.h. Header-only.
//
//     coho::Scheduler s;
//     auto id = s.spawn([&] { ... });        // any callable, moved into the coroutine
//     s.run();
//
// Errors the caller cannot route around throw std::system_error(errno, std::generic_category(),
// "coho_..."); try_* functions return bool (or an empty std::optional). An exception that
// escapes a coroutine's callable is caught at the coroutine's boundary, logged with the
// coroutine id, and rethrown by coho::join(id). The C++ runtime's "currently handled
// exceptions" state is kept per coroutine by a switch hook (DESIGN.md "C++ exceptions"), so a
// coroutine that parks inside a catch block still rethrows its own exception with `throw;`.
#pragma once

#include <cxxabi.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <system_error>
#include <type_traits>
#include <unordered_map>
#include <utility>

#include <coho.h>

namespace coho {

namespace detail {

[[noreturn]] inline void throw_errno(const char *what)
{
    throw std::system_error(errno, std::generic_category(), what);
}

// `d` in whole `To` units for a wait: negative durations are 0, fractions round up (a wait never
// ends early), and anything longer than `max_s` seconds saturates at 2^60 units.
template <class To, class Rep, class Period>
uint64_t to_units(const std::chrono::duration<Rep, Period> &d, double max_s)
{
    using namespace std::chrono;
    if (d <= d.zero())
        return 0;
    if (duration_cast<duration<double>>(d).count() > max_s)
        return UINT64_C(1) << 60;
    return static_cast<uint64_t>(ceil<To>(d).count());
}

// Milliseconds for a timeout.
template <class Rep, class Period>
uint64_t to_ms(const std::chrono::duration<Rep, Period> &d)
{
    return to_units<std::chrono::milliseconds>(d, 1.0e15);
}

// Nanoseconds for a sleep (saturating at about 36 years).
template <class Rep, class Period>
uint64_t to_ns(const std::chrono::duration<Rep, Period> &d)
{
    return to_units<std::chrono::nanoseconds>(d, 1.0e9);
}

// ---- per-coroutine C++ exception state ----------------------------------------------------
//
// libstdc++ and libc++abi keep, per thread, the stack of exceptions being handled (the head of
// the caughtExceptions chain) and the count of exceptions in flight (__cxa_get_globals()). A
// coroutine that parks inside a catch block would otherwise leave its exception on the
// thread's stack for the next coroutine to see, and its `throw;` would rethrow whatever another
// coroutine caught last. The switch hook saves the block into the outgoing flow's slot and
// restores the incoming one's; a new coroutine starts with a zeroed slot: nothing caught.
struct EhGlobals {
    void *caught_exceptions;
    unsigned int uncaught_exceptions;
};
static_assert(sizeof(EhGlobals) <= COHO_SWITCH_HOOK_SLOT_MAX, "switch hook slot too small");

inline void eh_save(void *slot)
{
    std::memcpy(slot, static_cast<void *>(abi::__cxa_get_globals()), sizeof(EhGlobals));
}

inline void eh_restore(void *slot)
{
    std::memcpy(static_cast<void *>(abi::__cxa_get_globals()), slot, sizeof(EhGlobals));
}

// Installs the hook (idempotent). EBUSY means another hook owns the slot (for example a copy
// of this header in another shared object with its own eh_save address); that copy keeps the
// same state, so it is not an error.
inline void install_switch_hook()
{
    static const coho_switch_hook_t hook = {sizeof(EhGlobals), &eh_save, &eh_restore};
    if (coho_set_switch_hook(&hook) != 0 && errno != EBUSY)
        throw_errno("coho_set_switch_hook");
}

// The scheduler a coho::Scheduler created on this thread (coho::spawn from inside).
inline coho_sched_t *&thread_sched() noexcept
{
    static thread_local coho_sched_t *s = nullptr;
    return s;
}

// Exceptions that escaped coroutines of this thread, by coroutine id, until coho::join.
inline std::unordered_map<uint64_t, std::exception_ptr> &escaped() noexcept
{
    static thread_local std::unordered_map<uint64_t, std::exception_ptr> m;
    return m;
}

// The tasks of this thread whose coroutine has not finished, so that a Scheduler destroyed
// before its coroutines ran to the end still destroys their callables.
struct TaskLink {
    TaskLink *prev_ = this;
    TaskLink *next_ = this;
};

inline TaskLink &live_tasks() noexcept
{
    static thread_local TaskLink head;
    return head;
}

struct TaskBase : TaskLink {
    explicit TaskBase(coho_sched_t *s) noexcept : sched_(s)
    {
        TaskLink &h = live_tasks();
        prev_ = h.prev_;
        next_ = &h;
        h.prev_->next_ = this;
        h.prev_ = this;
    }
    TaskBase(const TaskBase &) = delete;
    TaskBase &operator=(const TaskBase &) = delete;
    virtual ~TaskBase()
    {
        prev_->next_ = next_;
        next_->prev_ = prev_;
    }
    virtual void run() = 0;
    coho_sched_t *sched_;
    bool joinable_ = true; // spawned detached: an escaped exception is only logged
};

// Destroys the callables of `s`'s coroutines that never finished (after coho_sched_destroy
// dropped them). They are first moved to a private list, so a destructor that spawns or drops
// other tasks cannot disturb the walk.
inline void drop_tasks(coho_sched_t *s) noexcept
{
    TaskLink &h = live_tasks();
    TaskLink dropped;
    for (TaskLink *l = h.next_; l != &h;) {
        TaskLink *n = l->next_;
        if (static_cast<TaskBase *>(l)->sched_ == s) {
            l->prev_->next_ = l->next_;
            l->next_->prev_ = l->prev_;
            l->prev_ = dropped.prev_;
            l->next_ = &dropped;
            dropped.prev_->next_ = l;
            dropped.prev_ = l;
        }
        l = n;
    }
    while (dropped.next_ != &dropped)
        delete static_cast<TaskBase *>(dropped.next_);
}

template <class F>
struct Task final : TaskBase {
    Task(coho_sched_t *s, F &&f) : TaskBase(s), f_(std::move(f)) {}
    Task(coho_sched_t *s, const F &f) : TaskBase(s), f_(f) {}
    void run() override { std::invoke(f_); }
    F f_;
};

// The coroutine entry: owns the task, and is the boundary no exception crosses into C.
inline void task_entry(void *arg) noexcept
{
    std::unique_ptr<TaskBase> task(static_cast<TaskBase *>(arg));
    try {
        task->run();
        task.reset(); // the callable's captures die inside the try as well
    } catch (...) {
        const uint64_t id = coho_self();
        std::exception_ptr e = std::current_exception();
        const char *what = "(not a std::exception)";
        try {
            throw;
        } catch (const std::exception &ex) {
            what = ex.what();
            coho_log_error("coroutine %llu: exception escaped its callable: %s",
                           static_cast<unsigned long long>(id), what);
        } catch (...) {
            coho_log_error("coroutine %llu: exception escaped its callable: %s",
                           static_cast<unsigned long long>(id), what);
        }
        if (task == nullptr || task->joinable_) {
            try {
                escaped()[id] = std::move(e);
            } catch (...) {
                // No memory to keep it: it was logged, join() will not rethrow it.
            }
        }
    }
}

template <class F>
uint64_t spawn_on(coho_sched_t *s, F &&f, const coho_spawn_opts_t *opts)
{
    using Fn = std::decay_t<F>;
    static_assert(std::is_invocable_v<Fn &>, "coho::spawn needs a callable taking no arguments");
    if (s == nullptr) {
        errno = EPERM;
        throw_errno("coho_spawn");
    }
    auto task = std::make_unique<Task<Fn>>(s, std::forward<F>(f));
    task->joinable_ = opts == nullptr || !opts->detached;
    const uint64_t id = coho_spawn_ex(s, &task_entry, task.get(), opts);
    if (id == 0)
        throw_errno("coho_spawn");
    task.release(); // the coroutine owns it now
    return id;
}

} // namespace detail

// ---- scheduler ----------------------------------------------------------------------------

// The calling thread's scheduler (RAII over coho_sched_t). Not copyable or movable: it belongs
// to the thread that constructs it. Constructing one installs the exception-state switch hook.
class Scheduler {
public:
    Scheduler() : Scheduler(nullptr) {}
    explicit Scheduler(const coho_sched_opts_t &opts) : Scheduler(&opts) {}
    Scheduler(const Scheduler &) = delete;
    Scheduler &operator=(const Scheduler &) = delete;

    // Destroys the scheduler; it must not be running. Coroutines that never finished are
    // dropped without running further (coho_sched_destroy); their callables are destroyed.
    ~Scheduler()
    {
        if (detail::thread_sched() == s_)
            detail::thread_sched() = nullptr;
        coho_sched_destroy(s_);
        detail::drop_tasks(s_);
    }

    // Spawns a coroutine that runs `f()` (`f` is moved or copied into it). Inside or outside
    // coroutines, on this scheduler's thread. Returns the coroutine id; throws system_error
    // (ESHUTDOWN after stop(), EAGAIN at max_coroutines, ENOMEM).
    template <class F>
    uint64_t spawn(F &&f)
    {
        return detail::spawn_on(s_, std::forward<F>(f), nullptr);
    }

    // spawn() with options (name, stack size, daemon, detached).
    template <class F>
    uint64_t spawn(const coho_spawn_opts_t &opts, F &&f)
    {
        return detail::spawn_on(s_, std::forward<F>(f), &opts);
    }

    // Runs until no user coroutine is left or stop() (coho_sched_run). Outside coroutines.
    void run()
    {
        if (coho_sched_run(s_) != 0)
            detail::throw_errno("coho_sched_run");
    }

    // Asks run() to wind down (coho_sched_stop). Any thread.
    void stop() noexcept { coho_sched_stop(s_); }

    // Queues fn(arg) to run on this scheduler's thread (coho_sched_post). Any thread.
    void post(void (*fn)(void *), void *arg)
    {
        if (coho_sched_post(s_, fn, arg) != 0)
            detail::throw_errno("coho_sched_post");
    }

    coho_sched_t *native_handle() const noexcept { return s_; }

private:
    explicit Scheduler(const coho_sched_opts_t *opts)
    {
        detail::install_switch_hook();
        s_ = coho_sched_create(opts);
        if (s_ == nullptr)
            detail::throw_errno("coho_sched_create");
        detail::thread_sched() = s_;
    }

    coho_sched_t *s_ = nullptr;
};

// Spawns `f()` on the coho::Scheduler of the calling thread (from inside a coroutine or on
// that thread). Throws system_error: EPERM when the thread has no coho::Scheduler, and as
// Scheduler::spawn.
template <class F>
uint64_t spawn(F &&f)
{
    return detail::spawn_on(detail::thread_sched(), std::forward<F>(f), nullptr);
}

// spawn() with options (name, stack size, daemon, detached) on the calling thread's scheduler.
// A coroutine nobody joins must be spawned detached: a joinable one keeps its record after it
// finished until coho_join reaps it.
template <class F>
uint64_t spawn(const coho_spawn_opts_t &opts, F &&f)
{
    return detail::spawn_on(detail::thread_sched(), std::forward<F>(f), &opts);
}

// Waits for coroutine `id` to finish and reaps it (coho_join); inside a coroutine of the same
// scheduler. If an exception escaped the coroutine's callable, rethrows it. Throws
// system_error: EPERM (outside a coroutine), EDEADLK (self), ESRCH (unknown or reaped), EINVAL
// (detached or joined by another), ECANCELED.
inline void join(uint64_t id)
{
    if (coho_join(id, -1) != 0)
        detail::throw_errno("coho_join");
    auto &m = detail::escaped();
    auto it = m.find(id);
    if (it != m.end()) {
        std::exception_ptr e = std::move(it->second);
        m.erase(it);
        std::rethrow_exception(e);
    }
}

// join() that gives up after `d`: returns false on timeout (the coroutine stays joinable).
template <class Rep, class Period>
bool join_for(uint64_t id, const std::chrono::duration<Rep, Period> &d)
{
    const uint64_t ms = detail::to_ms(d);
    if (coho_join(id, static_cast<int64_t>(ms)) != 0) {
        if (errno == ETIMEDOUT)
            return false;
        detail::throw_errno("coho_join");
    }
    auto &m = detail::escaped();
    auto it = m.find(id);
    if (it != m.end()) {
        std::exception_ptr e = std::move(it->second);
        m.erase(it);
        std::rethrow_exception(e);
    }
    return true;
}

// ---- the running coroutine (mirrors std::this_thread) ------------------------------------

namespace this_co {

// The running coroutine's id, 0 outside coroutines.
inline uint64_t id() noexcept
{
    return coho_self();
}

// Lets the other ready coroutines run (does nothing outside a coroutine).
inline void yield() noexcept
{
    coho_yield();
}

// Parks for at least `d`, waking within one timer tick (100 us) after it (coho_sleep_ns).
// Throws system_error: EPERM outside a coroutine, ECANCELED when cancelled.
template <class Rep, class Period>
void sleep_for(const std::chrono::duration<Rep, Period> &d)
{
    if (coho_sleep_ns(detail::to_ns(d)) != 0)
        detail::throw_errno("coho_sleep_ns");
}

// Parks until `t` (any clock; steady_clock recommended). Throws as sleep_for.
template <class Clock, class Duration>
void sleep_until(const std::chrono::time_point<Clock, Duration> &t)
{
    for (;;) {
        const auto now = Clock::now();
        if (now >= t)
            return;
        sleep_for(t - now);
    }
}

} // namespace this_co

// ---- mutex and condition variable -------------------------------------------------------

// A coroutine mutex (Lockable: works with std::lock_guard and std::unique_lock). FIFO handoff;
// single scheduler thread. Unlocking a mutex the coroutine does not hold aborts.
class Mutex {
public:
    Mutex() noexcept { coho_mutex_init(&m_); }
    ~Mutex() { coho_mutex_destroy(&m_); }
    Mutex(const Mutex &) = delete;
    Mutex &operator=(const Mutex &) = delete;

    // Parks until the mutex is ours. Throws system_error: EPERM (outside a coroutine), EDEADLK
    // (already held by the caller), ECANCELED.
    void lock()
    {
        if (coho_mutex_lock(&m_) != 0)
            detail::throw_errno("coho_mutex_lock");
    }

    // Takes the mutex if it is free; false otherwise (and outside a coroutine).
    bool try_lock() noexcept { return coho_mutex_trylock(&m_) == 0; }

    void unlock() noexcept { coho_mutex_unlock(&m_); }

    coho_mutex_t *native_handle() noexcept { return &m_; }

private:
    coho_mutex_t m_;
};

// A condition variable for coho::Mutex, used through std::unique_lock<coho::Mutex>. Waits
// return with the lock held, also when they throw.
class CondVar {
public:
    CondVar() noexcept { coho_cond_init(&c_); }
    ~CondVar() { coho_cond_destroy(&c_); }
    CondVar(const CondVar &) = delete;
    CondVar &operator=(const CondVar &) = delete;

    void notify_one() noexcept { coho_cond_signal(&c_); }
    void notify_all() noexcept { coho_cond_broadcast(&c_); }

    // Parks until notified. Throws system_error: EPERM (outside a coroutine or `lk` not held),
    // ECANCELED.
    void wait(std::unique_lock<Mutex> &lk)
    {
        if (coho_cond_wait(&c_, lk.mutex()->native_handle()) != 0)
            detail::throw_errno("coho_cond_wait");
    }

    template <class Predicate>
    void wait(std::unique_lock<Mutex> &lk, Predicate pred)
    {
        while (!pred())
            wait(lk);
    }

    template <class Rep, class Period>
    std::cv_status wait_for(std::unique_lock<Mutex> &lk,
                            const std::chrono::duration<Rep, Period> &d)
    {
        if (coho_cond_timedwait_ms(&c_, lk.mutex()->native_handle(), detail::to_ms(d)) == 0)
            return std::cv_status::no_timeout;
        if (errno != ETIMEDOUT)
            detail::throw_errno("coho_cond_timedwait_ms");
        return std::cv_status::timeout;
    }

    // Waits until pred() holds or `d` has passed; returns pred().
    template <class Rep, class Period, class Predicate>
    bool wait_for(std::unique_lock<Mutex> &lk, const std::chrono::duration<Rep, Period> &d,
                  Predicate pred)
    {
        return wait_until(lk, std::chrono::steady_clock::now() + d, std::move(pred));
    }

    template <class Clock, class Duration>
    std::cv_status wait_until(std::unique_lock<Mutex> &lk,
                              const std::chrono::time_point<Clock, Duration> &t)
    {
        const auto now = Clock::now();
        if (now >= t)
            return std::cv_status::timeout;
        wait_for(lk, t - now);
        return Clock::now() >= t ? std::cv_status::timeout : std::cv_status::no_timeout;
    }

    template <class Clock, class Duration, class Predicate>
    bool wait_until(std::unique_lock<Mutex> &lk, const std::chrono::time_point<Clock, Duration> &t,
                    Predicate pred)
    {
        while (!pred()) {
            if (wait_until(lk, t) == std::cv_status::timeout)
                return pred();
        }
        return true;
    }

    coho_cond_t *native_handle() noexcept { return &c_; }

private:
    coho_cond_t c_;
};

// ---- semaphore and wait group -----------------------------------------------------------

// A counting semaphore (shaped like std::counting_semaphore). FIFO; single scheduler thread.
class Semaphore {
public:
    explicit Semaphore(uint64_t initial = 0) noexcept { coho_sem_init(&s_, initial); }
    ~Semaphore() { coho_sem_destroy(&s_); }
    Semaphore(const Semaphore &) = delete;
    Semaphore &operator=(const Semaphore &) = delete;

    void release()
    {
        if (coho_sem_post(&s_) != 0)
            detail::throw_errno("coho_sem_post");
    }

    // Parks until a unit is ours. Throws system_error: EPERM, ECANCELED.
    void acquire()
    {
        if (coho_sem_wait(&s_) != 0)
            detail::throw_errno("coho_sem_wait");
    }

    bool try_acquire() noexcept { return coho_sem_trywait(&s_) == 0; }

    template <class Rep, class Period>
    bool try_acquire_for(const std::chrono::duration<Rep, Period> &d)
    {
        if (coho_sem_timedwait_ms(&s_, detail::to_ms(d)) == 0)
            return true;
        if (errno != ETIMEDOUT)
            detail::throw_errno("coho_sem_timedwait_ms");
        return false;
    }

    uint64_t value() const noexcept { return coho_sem_value(&s_); }
    coho_sem_t *native_handle() noexcept { return &s_; }

private:
    coho_sem_t s_;
};

// Waits for a counted set of activities (Go's sync.WaitGroup). Single scheduler thread.
class WaitGroup {
public:
    WaitGroup() noexcept { coho_wg_init(&wg_); }
    ~WaitGroup() { coho_wg_destroy(&wg_); }
    WaitGroup(const WaitGroup &) = delete;
    WaitGroup &operator=(const WaitGroup &) = delete;

    // Adds `n` (may be negative; a count below 0 aborts).
    void add(int64_t n = 1) noexcept { coho_wg_add(&wg_, n); }
    void done() noexcept { coho_wg_done(&wg_); }

    // Parks until the count is 0. Throws system_error: EPERM, ECANCELED.
    void wait()
    {
        if (coho_wg_wait(&wg_) != 0)
            detail::throw_errno("coho_wg_wait");
    }

    // Returns false when the count did not reach 0 within `d`.
    template <class Rep, class Period>
    bool wait_for(const std::chrono::duration<Rep, Period> &d)
    {
        if (coho_wg_timedwait_ms(&wg_, detail::to_ms(d)) == 0)
            return true;
        if (errno != ETIMEDOUT)
            detail::throw_errno("coho_wg_timedwait_ms");
        return false;
    }

    coho_wg_t *native_handle() noexcept { return &wg_; }

private:
    coho_wg_t wg_;
};

// ---- channel ----------------------------------------------------------------------------

// A bounded FIFO channel of T, safe between coroutines of any schedulers and plain threads
// (a coroutine parks; a plain thread blocks). Capacity 0 is a rendezvous. Trivially copyable
// T travel by value; other T travel as an owned heap copy (one allocation per element).
// close() lets receivers drain what is buffered; then recv() returns an empty optional.
template <class T>
class Channel {
    static constexpr bool by_value = std::is_trivially_copyable_v<T>;
    using Slot = std::conditional_t<by_value, T, T *>;

public:
    explicit Channel(size_t capacity) : ch_(coho_chan_create(sizeof(Slot), capacity))
    {
        if (ch_ == nullptr)
            detail::throw_errno("coho_chan_create");
    }

    // Destroys the channel and the elements still buffered. No one may be parked on it.
    ~Channel()
    {
        if constexpr (!by_value) {
            Slot p;
            while (coho_chan_try_recv(ch_, &p) == 0)
                delete p;
        }
        coho_chan_destroy(ch_);
    }

    Channel(const Channel &) = delete;
    Channel &operator=(const Channel &) = delete;

    // Sends `v`, parking (or blocking a plain thread) while the channel is full. Returns false
    // when the channel is closed (`v` is dropped). Throws system_error: ECANCELED, EPERM (on a
    // scheduler's thread outside coroutines).
    bool send(T v)
    {
        Slot s = make_slot(std::move(v));
        if (coho_chan_send(ch_, &s) == 0)
            return true;
        return fail_send(s, "coho_chan_send");
    }

    // Sends without waiting; false when full (or, for capacity 0, no receiver waits) or
    // closed. `v` is moved from only on success.
    bool try_send(T &&v) { return try_send_slot(make_slot(std::move(v)), &v); }
    bool try_send(const T &v) { return try_send_slot(make_slot(T(v)), nullptr); }

    // send() giving up after `d`; false on timeout or when closed.
    template <class Rep, class Period>
    bool send_for(T v, const std::chrono::duration<Rep, Period> &d)
    {
        Slot s = make_slot(std::move(v));
        if (coho_chan_timedsend_ms(ch_, &s, detail::to_ms(d)) == 0)
            return true;
        if (errno == ETIMEDOUT) {
            drop_slot(s);
            return false;
        }
        return fail_send(s, "coho_chan_timedsend_ms");
    }

    // Receives the oldest element, parking while the channel is empty. Empty optional: closed
    // and drained. Throws system_error: ECANCELED, EPERM (on a scheduler's thread outside
    // coroutines).
    std::optional<T> recv()
    {
        SlotBuffer b;
        if (coho_chan_recv(ch_, b.bytes) == 0)
            return take(b);
        if (errno != EPIPE)
            detail::throw_errno("coho_chan_recv");
        return std::nullopt;
    }

    // Receives without waiting; empty when nothing is buffered (or closed and drained).
    std::optional<T> try_recv()
    {
        SlotBuffer b;
        if (coho_chan_try_recv(ch_, b.bytes) == 0)
            return take(b);
        return std::nullopt;
    }

    // recv() giving up after `d`; empty on timeout or when closed and drained (is_closed()
    // tells which).
    template <class Rep, class Period>
    std::optional<T> recv_for(const std::chrono::duration<Rep, Period> &d)
    {
        SlotBuffer b;
        if (coho_chan_timedrecv_ms(ch_, b.bytes, detail::to_ms(d)) == 0)
            return take(b);
        if (errno != ETIMEDOUT && errno != EPIPE)
            detail::throw_errno("coho_chan_timedrecv_ms");
        return std::nullopt;
    }

    // Closes the channel (idempotent): parked senders fail, receivers drain, then get nothing.
    void close() noexcept { coho_chan_close(ch_); }

    bool is_closed() const noexcept { return coho_chan_is_closed(ch_); }
    size_t size() const noexcept { return coho_chan_count(ch_); }
    size_t capacity() const noexcept { return coho_chan_capacity(ch_); }
    coho_chan_t *native_handle() noexcept { return ch_; }

private:
    static Slot make_slot(T &&v)
    {
        if constexpr (by_value)
            return v;
        else
            return new T(std::move(v));
    }

    static void drop_slot(Slot s) noexcept
    {
        if constexpr (!by_value)
            delete s;
        else
            (void)s;
    }

    // Raw storage a received slot is copied into (T need not be default-constructible).
    struct SlotBuffer {
        alignas(Slot) unsigned char bytes[sizeof(Slot)];
    };

    static std::optional<T> take(SlotBuffer &b)
    {
        Slot *s = std::launder(reinterpret_cast<Slot *>(b.bytes));
        if constexpr (by_value) {
            return std::optional<T>(*s);
        } else {
            std::unique_ptr<T> p(*s);
            return std::optional<T>(std::move(*p));
        }
    }

    bool fail_send(Slot s, const char *what)
    {
        const int e = errno;
        drop_slot(s);
        if (e == EPIPE)
            return false;
        errno = e;
        detail::throw_errno(what);
    }

    bool try_send_slot(Slot s, T *restore_to)
    {
        if (coho_chan_try_send(ch_, &s) == 0)
            return true;
        if constexpr (!by_value) {
            if (restore_to != nullptr)
                *restore_to = std::move(*s);
        }
        drop_slot(s);
        return false;
    }

    coho_chan_t *ch_;
};

} // namespace coho
