// SPDX-License-Identifier: MIT
// The id generator (ids.hpp): one atomic word holds the last id's time and sequence; a
// compare-and-swap issues the next. The state file is written under a mutex that is never held
// across a park (file I/O does not park), only when an id would pass the reserved time.
#include "game/svc/ids.hpp"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <system_error>

#include "game/svc/durable_file.hpp"

namespace coho::game {

namespace {

constexpr char kTag[] = "coho-ids v1 reserved_unix_ms=";

int64_t realtime_ms()
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

void nap_ms(int64_t ms)
{
    struct timespec ts = {time_t(ms / 1000), long(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

// The reserved time of a state file (unix ms), or -1 when there is none.
int64_t read_state(const std::string &path)
{
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return -1;
        throw std::system_error(errno, std::generic_category(), "open " + path);
    }
    char buf[256];
    const ssize_t n = read(fd, buf, sizeof buf - 1);
    const int err = errno;
    close(fd);
    if (n < 0)
        throw std::system_error(err, std::generic_category(), "read " + path);
    buf[n] = '\0';
    const size_t tag = sizeof kTag - 1;
    char *end = nullptr;
    long long v = -1;
    errno = 0;
    if (size_t(n) > tag && std::memcmp(buf, kTag, tag) == 0)
        v = std::strtoll(buf + tag, &end, 10);
    if (end == nullptr || end == buf + tag || errno != 0 || v < 0 || (*end != ' ' && *end != '\n'))
        throw std::invalid_argument(path + ": not an id state file (expected '" + kTag +
                                    "MS ...')");
    return v;
}

void write_state(const std::string &path, int64_t unix_ms, uint32_t machine)
{
    write_file_durably(path, kTag + std::to_string(unix_ms) +
                                 " machine=" + std::to_string(machine) + "\n");
}

} // namespace

IdGen::IdGen(Options o) : machine_(o.machine_id), o_(std::move(o))
{
    if (machine_ > kMaxMachine)
        throw std::invalid_argument("machine id " + std::to_string(machine_) + " is not 0.." +
                                    std::to_string(kMaxMachine));
    if (o_.reserve_ms < 1 || o_.max_ahead_ms < 0 || o_.max_wait_ms < 0)
        throw std::invalid_argument("ids: reserve_ms must be >= 1, max_ahead_ms and "
                                    "max_wait_ms >= 0");
    if (!o_.now_ms)
        o_.now_ms = realtime_ms;
    if (!o_.sleep_ms)
        o_.sleep_ms = nap_ms;
    reserved_.store(INT64_MAX);
    if (!o_.state_path.empty()) {
        const int64_t r = read_state(o_.state_path);
        int64_t t = r < 0 ? 0 : r - kEpochMs; // ids before the restart had time < t
        if (t < 0)
            t = 0;
        if (t > kMaxTimeMs)
            throw std::invalid_argument(o_.state_path + ": reserved time beyond the ids' range");
        if (t > 0)
            state_.store((uint64_t(t - 1) << kSeqBits) | ((1u << kSeqBits) - 1));
        reserved_.store(t); // the first id writes a reservation before it is issued
    }
}

void IdGen::reserve(int64_t t, int64_t now)
{
    std::lock_guard<std::mutex> g(file_mu_);
    if (t < reserved_.load(std::memory_order_acquire))
        return; // another thread reserved meanwhile
    const int64_t r = std::max(t, now) + o_.reserve_ms;
    write_state(o_.state_path, r + kEpochMs, machine_);
    reserved_.store(r, std::memory_order_release);
}

uint64_t IdGen::next()
{
    constexpr uint64_t kSeqMax = (1u << kSeqBits) - 1;
    int64_t waited = 0;
    for (;;) {
        uint64_t s = state_.load(std::memory_order_acquire);
        const int64_t now = o_.now_ms() - kEpochMs;
        if (now < 0)
            throw IdClockError("ids: the clock reads before 2025-01-01, the ids' epoch");
        int64_t t = int64_t(s >> kSeqBits);
        uint64_t seq = s & kSeqMax;
        if (now > t) {
            t = now;
            seq = 0;
        } else if (seq < kSeqMax) {
            seq++;
        } else {
            t++; // this millisecond is used up: borrow the next
            seq = 0;
        }
        if (t > kMaxTimeMs)
            throw IdClockError("ids: time beyond the ids' 41-bit range (year 2094)");
        const int64_t ahead = t - now;
        if (ahead > o_.max_ahead_ms) {
            // The clock is behind the ids (set back, or more than 4096 ids/ms for a while).
            const int64_t behind = ahead - o_.max_ahead_ms;
            if (waited + behind > o_.max_wait_ms)
                throw IdClockError("ids: the clock is " + std::to_string(ahead) +
                                   " ms behind the last id's time; waiting for it would take "
                                   "more than max_wait_ms (" +
                                   std::to_string(o_.max_wait_ms) + " ms)");
            waits_.fetch_add(1, std::memory_order_relaxed);
            o_.sleep_ms(behind);
            waited += behind;
            continue;
        }
        if (t >= reserved_.load(std::memory_order_acquire)) {
            reserve(t, now);
            continue;
        }
        const uint64_t ns = (uint64_t(t) << kSeqBits) | seq;
        if (state_.compare_exchange_weak(s, ns, std::memory_order_acq_rel)) {
            issued_.fetch_add(1, std::memory_order_relaxed);
            return (uint64_t(t) << (kSeqBits + kMachineBits)) | (uint64_t(machine_) << kSeqBits) |
                   seq;
        }
    }
}

IdGen::Parts IdGen::decode(uint64_t id)
{
    Parts p;
    p.unix_ms = int64_t(id >> (kSeqBits + kMachineBits)) + kEpochMs;
    p.machine = uint32_t(id >> kSeqBits) & kMaxMachine;
    p.seq = uint32_t(id & ((1u << kSeqBits) - 1));
    return p;
}

} // namespace coho::game
