// SPDX-License-Identifier: MIT
// Calendar timers (calendar.hpp): civil-time arithmetic in the process's time zone, the rules'
// occurrences, the system and manual clocks, the boundary file store, and the calendar's two
// heaps (rule timers by wall time, delays by monotonic time) with the driver coroutine.
#include "game/svc/calendar.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <system_error>

#include <coho.h>

#include "game/svc/durable_file.hpp"

namespace coho::game {

namespace {

int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const int64_t yoe = y - era * 400;
    const int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

void civil_from_days(int64_t z, int *y, int *m, int *d)
{
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const int64_t doe = z - era * 146097;
    const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const int64_t mp = (5 * doy + 2) / 153;
    *d = int(doy - (153 * mp + 2) / 5 + 1);
    *m = int(mp < 10 ? mp + 3 : mp - 9);
    *y = int(yoe + era * 400 + (*m <= 2));
}

// The UTC offset (s) of local time at instant t.
int64_t offset_at(int64_t t)
{
    struct tm tm;
    time_t tt = time_t(t);
    if (localtime_r(&tt, &tm) == nullptr)
        return 0;
    return tm.tm_gmtoff;
}

const char *const kMonthNames[] = {"January",   "February", "March",    "April",
                                   "May",       "June",     "July",     "August",
                                   "September", "October",  "November", "December"};
const char *const kDayNames[] = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                 "Thursday", "Friday", "Saturday"};

std::string two(int v)
{
    char b[16];
    std::snprintf(b, sizeof b, "%02d", v);
    return b;
}

std::string tod_text(int h, int m, int s)
{
    return two(h) + ":" + two(m) + ":" + two(s);
}

std::string date_text(const DateTime &dt)
{
    char b[64];
    std::snprintf(b, sizeof b, "%04d-%02d-%02d %02d:%02d:%02d", dt.year, dt.month, dt.day, dt.hour,
                  dt.minute, dt.second);
    return b;
}

// Reads a decimal number of 1..max_digits digits at s[*i]; false if there is none.
bool take_num(std::string_view s, size_t *i, int max_digits, int *out)
{
    int v = 0, n = 0;
    while (*i < s.size() && s[*i] >= '0' && s[*i] <= '9' && n < max_digits) {
        v = v * 10 + (s[*i] - '0');
        ++*i;
        ++n;
    }
    if (n == 0)
        return false;
    *out = v;
    return true;
}

bool take_char(std::string_view s, size_t *i, char c)
{
    if (*i < s.size() && s[*i] == c) {
        ++*i;
        return true;
    }
    return false;
}

// "HH:MM[:SS]" from s[*i]; false if it does not have that shape.
bool take_tod(std::string_view s, size_t *i, TimeOfDay *t)
{
    if (!take_num(s, i, 2, &t->hour) || !take_char(s, i, ':') || !take_num(s, i, 2, &t->minute))
        return false;
    t->second = 0;
    if (take_char(s, i, ':') && !take_num(s, i, 2, &t->second))
        return false;
    return true;
}

constexpr int64_t kFarFutureMs = INT64_C(4102444800000); // 2100-01-01: "no deadline"

} // namespace

// ---- civil time ---------------------------------------------------------------------------

namespace cal {

int days_in_month(int year, int month)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (month < 1 || month > 12)
        return 0;
    if (month == 2 && ((year % 4 == 0 && year % 100 != 0) || year % 400 == 0))
        return 29;
    return days[month - 1];
}

void check(const TimeOfDay &t)
{
    const std::string text = tod_text(t.hour, t.minute, t.second);
    if (t.hour < 0 || t.hour > 23)
        throw std::invalid_argument(text + ": hour " + std::to_string(t.hour) + " is not 0..23");
    if (t.minute < 0 || t.minute > 59)
        throw std::invalid_argument(text + ": minute " + std::to_string(t.minute) +
                                    " is not 0..59");
    if (t.second < 0 || t.second > 59)
        throw std::invalid_argument(text + ": second " + std::to_string(t.second) +
                                    " is not 0..59");
}

void check(const DateTime &dt)
{
    const std::string text = date_text(dt);
    if (dt.year < 1970 || dt.year > 9999)
        throw std::invalid_argument(text + ": year " + std::to_string(dt.year) +
                                    " is not 1970..9999");
    if (dt.month < 1 || dt.month > 12)
        throw std::invalid_argument(text + ": month " + std::to_string(dt.month) + " is not 1..12");
    const int dim = days_in_month(dt.year, dt.month);
    if (dt.day < 1 || dt.day > dim)
        throw std::invalid_argument(text + ": " + kMonthNames[dt.month - 1] + " " +
                                    std::to_string(dt.year) + " has " + std::to_string(dim) +
                                    " days");
    check(TimeOfDay{dt.hour, dt.minute, dt.second});
}

TimeOfDay parse_time_of_day(std::string_view s)
{
    TimeOfDay t;
    size_t i = 0;
    if (!take_tod(s, &i, &t) || i != s.size())
        throw std::invalid_argument("'" + std::string(s) + "' is not HH:MM or HH:MM:SS");
    check(t);
    return t;
}

DateTime parse_date_time(std::string_view s)
{
    DateTime dt;
    TimeOfDay t;
    size_t i = 0;
    bool ok = take_num(s, &i, 4, &dt.year) && take_char(s, &i, '-') &&
              take_num(s, &i, 2, &dt.month) && take_char(s, &i, '-') &&
              take_num(s, &i, 2, &dt.day) && (take_char(s, &i, ' ') || take_char(s, &i, 'T')) &&
              take_tod(s, &i, &t) && i == s.size();
    if (!ok)
        throw std::invalid_argument("'" + std::string(s) +
                                    "' is not YYYY-MM-DD HH:MM or YYYY-MM-DD HH:MM:SS");
    dt.hour = t.hour;
    dt.minute = t.minute;
    dt.second = t.second;
    check(dt);
    return dt;
}

DateTime to_local(int64_t unix_s)
{
    struct tm tm;
    time_t tt = time_t(unix_s);
    DateTime dt;
    if (localtime_r(&tt, &tm) == nullptr)
        return dt;
    dt.year = tm.tm_year + 1900;
    dt.month = tm.tm_mon + 1;
    dt.day = tm.tm_mday;
    dt.hour = tm.tm_hour;
    dt.minute = tm.tm_min;
    dt.second = tm.tm_sec;
    return dt;
}

std::string format_local(int64_t unix_s)
{
    const int64_t off = offset_at(unix_s);
    const int64_t a = off < 0 ? -off : off;
    char b[32];
    std::snprintf(b, sizeof b, "%c%02d%02d", off < 0 ? '-' : '+', int(a / 3600),
                  int(a % 3600 / 60));
    return date_text(to_local(unix_s)) + b;
}

int64_t resolve_local(const DateTime &dt)
{
    // L: the wall-clock reading as seconds, as if the zone were UTC. An instant t shows it when
    // t + offset_at(t) == L. The offsets a day either side cover any one transition.
    const int64_t L = days_from_civil(dt.year, dt.month, dt.day) * 86400 + dt.hour * 3600 +
                      dt.minute * 60 + dt.second;
    const int64_t before = offset_at(L - 86400), after = offset_at(L + 86400);
    if (before == after && offset_at(L - before) == before)
        return L - before; // no transition near: the one reading (the common case, 3 lookups)
    const int64_t cands[3] = {before, offset_at(L), after};
    int64_t best = kNone;
    for (int64_t o : cands) {
        const int64_t t = L - o;
        if (offset_at(t) == o && (best == kNone || t < best))
            best = t;
    }
    if (best != kNone)
        return best;
    // Nothing shows L: the clock jumps over it. The first instant showing a later time is
    // the end of the gap, between L - max offset (showing earlier) and L - min offset.
    int64_t lo = L - *std::max_element(cands, cands + 3);
    int64_t hi = L - *std::min_element(cands, cands + 3);
    while (lo + 1 < hi) {
        const int64_t mid = lo + (hi - lo) / 2;
        if (mid + offset_at(mid) >= L)
            hi = mid;
        else
            lo = mid;
    }
    return hi;
}

} // namespace cal

// ---- rules --------------------------------------------------------------------------------

Rule Rule::at(const DateTime &dt)
{
    cal::check(dt);
    Rule r;
    r.kind_ = Kind::Once;
    r.once_s_ = cal::resolve_local(dt);
    return r;
}

namespace {
void set_tod(TimeOfDay t, int8_t *h, int8_t *m, int8_t *s)
{
    cal::check(t);
    *h = int8_t(t.hour);
    *m = int8_t(t.minute);
    *s = int8_t(t.second);
}
} // namespace

Rule Rule::daily(TimeOfDay t)
{
    Rule r;
    r.kind_ = Kind::Daily;
    set_tod(t, &r.hour_, &r.minute_, &r.second_);
    return r;
}

Rule Rule::weekly(int weekday, TimeOfDay t)
{
    if (weekday < 0 || weekday > 6)
        throw std::invalid_argument("weekday " + std::to_string(weekday) +
                                    " is not 0 (Sunday)..6 (Saturday)");
    Rule r;
    r.kind_ = Kind::Weekly;
    r.weekday_ = int8_t(weekday);
    set_tod(t, &r.hour_, &r.minute_, &r.second_);
    return r;
}

Rule Rule::monthly(int day, TimeOfDay t, ShortMonth p)
{
    if (day < 1 || day > 31)
        throw std::invalid_argument("day of month " + std::to_string(day) + " is not 1..31");
    Rule r;
    r.kind_ = Kind::Monthly;
    r.day_ = int8_t(day);
    r.short_ = p;
    set_tod(t, &r.hour_, &r.minute_, &r.second_);
    return r;
}

Rule Rule::yearly(int month, int day, TimeOfDay t, ShortMonth p)
{
    if (month < 1 || month > 12)
        throw std::invalid_argument("month " + std::to_string(month) + " is not 1..12");
    const int dim = cal::days_in_month(2000, month); // a leap year: February 29 is allowed
    if (day < 1 || day > dim)
        throw std::invalid_argument(std::string(kMonthNames[month - 1]) + " has no day " +
                                    std::to_string(day));
    Rule r;
    r.kind_ = Kind::Yearly;
    r.month_ = int8_t(month);
    r.day_ = int8_t(day);
    r.short_ = p;
    set_tod(t, &r.hour_, &r.minute_, &r.second_);
    return r;
}

Rule Rule::every_minutes(int n)
{
    if (n < 1 || n > 60 || 60 % n != 0)
        throw std::invalid_argument("every " + std::to_string(n) +
                                    " minutes: n must divide 60 (1, 2, 3, 4, 5, 6, 10, 12, "
                                    "15, 20, 30 or 60)");
    Rule r;
    r.kind_ = Kind::EveryMinutes;
    r.n_ = n;
    return r;
}

int64_t Rule::ordinal_of(int64_t t) const
{
    if (kind_ == Kind::Once)
        return 0;
    if (kind_ == Kind::EveryMinutes)
        return floor_div(t, int64_t(n_) * 60);
    const int64_t day = floor_div(t + offset_at(t), 86400); // the local date's day number
    if (kind_ == Kind::Daily)
        return day;
    if (kind_ == Kind::Weekly)
        return floor_div(day + 4, 7); // weeks start on Sunday; day 0 (1970-01-01) is a Thursday
    int y, m, d;
    civil_from_days(day, &y, &m, &d);
    return kind_ == Kind::Monthly ? int64_t(y) * 12 + (m - 1) : y;
}

int64_t Rule::occ(int64_t k) const
{
    DateTime dt;
    dt.hour = hour_;
    dt.minute = minute_;
    dt.second = second_;
    switch (kind_) {
    case Kind::Once:
        return k == 0 ? once_s_ : cal::kNone;
    case Kind::EveryMinutes:
        return k * 60 * n_;
    case Kind::Daily:
        civil_from_days(k, &dt.year, &dt.month, &dt.day);
        break;
    case Kind::Weekly:
        civil_from_days(k * 7 - 4 + weekday_, &dt.year, &dt.month, &dt.day);
        break;
    case Kind::Monthly:
    case Kind::Yearly: {
        dt.year = int(kind_ == Kind::Monthly ? floor_div(k, 12) : k);
        dt.month = kind_ == Kind::Monthly ? int(k - int64_t(dt.year) * 12 + 1) : month_;
        const int dim = cal::days_in_month(dt.year, dt.month);
        if (day_ > dim && short_ == ShortMonth::Skip)
            return cal::kNone;
        dt.day = std::min<int>(day_, dim);
        break;
    }
    }
    if (dt.year < 1970 || dt.year > 9999)
        return cal::kNone;
    return cal::resolve_local(dt);
}

// Occurrences grow with their ordinal, so the first one after t is found by walking up from
// t's own period (less one: a DST gap can push a period's occurrence into the next day).
// A Skip rule may lack up to 8 consecutive periods (February 29 between 2096 and 2104).
Rule::Occ Rule::next_occ(int64_t t) const
{
    const int64_t k0 = ordinal_of(t);
    for (int64_t k = k0 - 1; k <= k0 + 10; k++) {
        const int64_t o = occ(k);
        if (o != cal::kNone && o > t)
            return {k, o};
    }
    return {0, cal::kNone};
}

Rule::Occ Rule::last_occ(int64_t t) const
{
    const int64_t k0 = ordinal_of(t);
    for (int64_t k = k0 + 1; k >= k0 - 10; k--) {
        const int64_t o = occ(k);
        if (o != cal::kNone && o <= t)
            return {k, o};
    }
    return {0, cal::kNone};
}

int64_t Rule::next_after(int64_t t) const
{
    return next_occ(t).t;
}

int64_t Rule::last_at_or_before(int64_t t) const
{
    return last_occ(t).t;
}

uint64_t Rule::count_between(int64_t a, int64_t b) const
{
    if (b <= a)
        return 0;
    const Occ f = next_occ(a);
    if (f.t == cal::kNone || f.t > b)
        return 0;
    const Occ l = last_occ(b);
    uint64_t n = uint64_t(l.k - f.k + 1);
    if (short_ == ShortMonth::Skip && (kind_ == Kind::Monthly || kind_ == Kind::Yearly)) {
        for (int64_t k = f.k + 1; k < l.k; k++) { // periods without an occurrence
            const int y = int(kind_ == Kind::Monthly ? floor_div(k, 12) : k);
            const int m = kind_ == Kind::Monthly ? int(k - int64_t(y) * 12 + 1) : month_;
            if (day_ > cal::days_in_month(y, m))
                n--;
        }
    }
    return n;
}

std::string Rule::describe() const
{
    const std::string tod = tod_text(hour_, minute_, second_);
    const char *policy =
        short_ == ShortMonth::Skip ? " (skipped when short)" : " (last day when short)";
    switch (kind_) {
    case Kind::Once:
        return "once at " + cal::format_local(once_s_);
    case Kind::Daily:
        return "daily " + tod;
    case Kind::Weekly:
        return std::string("weekly ") + kDayNames[weekday_] + " " + tod;
    case Kind::Monthly:
        return "monthly day " + std::to_string(day_) + " " + tod + policy;
    case Kind::Yearly:
        return "yearly " + two(month_) + "-" + two(day_) + " " + tod + policy;
    case Kind::EveryMinutes:
        return "every " + std::to_string(n_) + " min";
    }
    return "?";
}

// ---- clocks -------------------------------------------------------------------------------

SystemClock::SystemClock(int64_t offset_ms) : offset_ms_(offset_ms)
{
    fd_ = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK | TFD_CLOEXEC);
    if (fd_ < 0)
        throw std::system_error(errno, std::generic_category(), "timerfd_create");
    arm(kNever); // from now on a clock set is seen
}

SystemClock::~SystemClock()
{
    if (fd_ >= 0)
        close(fd_);
}

int64_t SystemClock::wall_ms()
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000 + offset_ms_;
}

int64_t SystemClock::mono_ms()
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

void SystemClock::settime(int64_t abs_ms)
{
    // it_value 0 would disarm the timer (and stop CANCEL_ON_SET): a deadline in the past is
    // armed as 1 ms after the epoch, which has passed, so the timer expires at once.
    if (abs_ms < 1)
        abs_ms = 1;
    struct itimerspec its;
    std::memset(&its, 0, sizeof its);
    its.it_value.tv_sec = time_t(abs_ms / 1000);
    its.it_value.tv_nsec = long(abs_ms % 1000) * 1000000;
    if (timerfd_settime(fd_, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, &its, nullptr) != 0) {
        if (errno != ECANCELED)
            throw std::system_error(errno, std::generic_category(), "timerfd_settime");
        set_pending_ = true; // the clock was set before this call saw it
    }
}

void SystemClock::arm(int64_t wall_deadline_ms)
{
    if (wall_deadline_ms == kNever || wall_deadline_ms - offset_ms_ > kFarFutureMs)
        settime(kFarFutureMs);
    else
        settime(wall_deadline_ms - offset_ms_);
}

void SystemClock::interrupt()
{
    interrupted_ = true;
    settime(1);
}

bool SystemClock::wake_of_read(ssize_t n, int err, Wake *out)
{
    if (n == ssize_t(sizeof(uint64_t))) {
        *out = Wake::Expired;
        return true;
    }
    if (n < 0 && err == ECANCELED) {
        *out = Wake::Set;
        return true;
    }
    if (n < 0 && (err == EAGAIN || err == EINTR))
        return false;
    throw std::system_error(n < 0 ? err : EIO, std::generic_category(), "read(timerfd)");
}

Clock::Wake SystemClock::wait()
{
    for (;;) {
        if (interrupted_) {
            interrupted_ = false;
            return Wake::Interrupted;
        }
        if (set_pending_) {
            set_pending_ = false;
            return Wake::Set;
        }
        uint64_t expirations = 0;
        const ssize_t n = read(fd_, &expirations, sizeof expirations);
        Wake w;
        if (wake_of_read(n, errno, &w)) {
            if (interrupted_)
                continue;
            return w;
        }
        struct pollfd p = {fd_, POLLIN, 0};
        if (poll(&p, 1, -1) < 0) {
            if (errno == EINTR)
                continue;
            if (errno == ECANCELED || coho_is_cancelled())
                return Wake::Cancelled;
            throw std::system_error(errno, std::generic_category(), "poll(timerfd)");
        }
    }
}

void ManualClock::poke()
{
    if (waiting_ && wake_.value() == 0)
        wake_.release();
}

void ManualClock::arm(int64_t wall_deadline_ms)
{
    armed_ = wall_deadline_ms;
    if (wall_ >= armed_)
        poke();
}

void ManualClock::interrupt()
{
    interrupted_ = true;
    poke();
}

void ManualClock::advance(std::chrono::milliseconds d)
{
    wall_ += d.count();
    mono_ += d.count();
    poke();
}

void ManualClock::set_wall(int64_t wall_ms)
{
    wall_ = wall_ms;
    set_pending_ = true;
    poke();
}

Clock::Wake ManualClock::wait()
{
    for (;;) {
        if (interrupted_) {
            interrupted_ = false;
            return Wake::Interrupted;
        }
        if (set_pending_) {
            set_pending_ = false;
            return Wake::Set;
        }
        if (armed_ != kNever && wall_ >= armed_)
            return Wake::Expired;
        waiting_ = true;
        try {
            wake_.acquire();
        } catch (const std::system_error &e) {
            waiting_ = false;
            if (e.code().value() == ECANCELED)
                return Wake::Cancelled;
            throw;
        }
        waiting_ = false;
    }
}

// ---- boundary store -----------------------------------------------------------------------

FileBoundaryStore::FileBoundaryStore(std::string dir) : dir_(std::move(dir))
{
    if (dir_.empty())
        throw std::invalid_argument("boundary store: empty directory name");
    for (size_t i = 1; i <= dir_.size(); i++) { // mkdir -p
        if (i == dir_.size() || dir_[i] == '/') {
            const std::string part = dir_.substr(0, i);
            if (mkdir(part.c_str(), 0755) != 0 && errno != EEXIST)
                throw std::system_error(errno, std::generic_category(), "mkdir " + part);
        }
    }
}

std::string FileBoundaryStore::path_of(const std::string &name) const
{
    bool ok = !name.empty() && name.size() <= 128 && name[0] != '.';
    for (char c : name)
        ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.');
    if (!ok)
        throw std::invalid_argument("boundary name '" + name +
                                    "': 1..128 of [A-Za-z0-9._-], not starting with '.'");
    return dir_ + "/" + name + ".boundary";
}

namespace {
constexpr char kBoundaryTag[] = "coho-boundary v1 last_s=";
}

bool FileBoundaryStore::load(const std::string &name, int64_t *last_s)
{
    const std::string path = path_of(name);
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return false;
        throw std::system_error(errno, std::generic_category(), "open " + path);
    }
    char buf[256];
    const ssize_t n = read(fd, buf, sizeof buf - 1);
    const int err = errno;
    close(fd);
    if (n < 0)
        throw std::system_error(err, std::generic_category(), "read " + path);
    buf[n] = '\0';
    const size_t tag = sizeof kBoundaryTag - 1;
    char *end = nullptr;
    errno = 0;
    long long v = 0;
    if (size_t(n) > tag && std::memcmp(buf, kBoundaryTag, tag) == 0)
        v = std::strtoll(buf + tag, &end, 10);
    if (end == nullptr || end == buf + tag || errno != 0 || (*end != ' ' && *end != '\n'))
        throw std::invalid_argument(path + ": not a boundary file (expected '" + kBoundaryTag +
                                    "SECONDS ...')");
    *last_s = v;
    return true;
}

void FileBoundaryStore::save(const std::string &name, int64_t last_s)
{
    write_file_durably(path_of(name), kBoundaryTag + std::to_string(last_s) + " (" +
                                          cal::format_local(last_s) + ")\n");
}

// ---- the calendar's heaps -----------------------------------------------------------------

void Calendar::Heap::up(std::deque<Slot> &s, size_t i)
{
    const HeapItem it = a[i];
    while (i > 0) {
        const size_t p = (i - 1) / 2;
        if (a[p].due <= it.due)
            break;
        a[i] = a[p];
        s[a[i].slot].heap_pos = uint32_t(i);
        i = p;
    }
    a[i] = it;
    s[it.slot].heap_pos = uint32_t(i);
}

void Calendar::Heap::down(std::deque<Slot> &s, size_t i)
{
    const HeapItem it = a[i];
    const size_t n = a.size();
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && a[c + 1].due < a[c].due)
            c++;
        if (it.due <= a[c].due)
            break;
        a[i] = a[c];
        s[a[i].slot].heap_pos = uint32_t(i);
        i = c;
    }
    a[i] = it;
    s[it.slot].heap_pos = uint32_t(i);
}

void Calendar::Heap::push(std::deque<Slot> &s, uint32_t slot, int64_t due)
{
    a.push_back({due, slot});
    s[slot].due = due;
    up(s, a.size() - 1);
}

uint32_t Calendar::Heap::pop(std::deque<Slot> &s)
{
    const uint32_t slot = a[0].slot;
    remove(s, 0);
    return slot;
}

void Calendar::Heap::remove(std::deque<Slot> &s, uint32_t pos)
{
    s[a[pos].slot].heap_pos = kNil;
    if (pos + 1 == a.size()) {
        a.pop_back();
        return;
    }
    a[pos] = a.back();
    a.pop_back();
    if (pos > 0 && a[pos].due < a[(pos - 1) / 2].due)
        up(s, pos);
    else
        down(s, pos);
}

// ---- the calendar -------------------------------------------------------------------------

Calendar::Calendar(coho::Scheduler &sched, Clock &clock) : sched_(sched), clock_(clock) {}

Calendar::~Calendar()
{
    if (started_)
        coho_log_error("calendar destroyed without stop(): %" PRIu64 " callbacks still running",
                       stats_.running);
}

uint32_t Calendar::alloc(TimerOpts &o, Callback &cb, Kind k)
{
    if (!cb)
        throw std::invalid_argument("timer '" + o.name + "': no callback");
    if (stopping_)
        throw std::invalid_argument("timer '" + o.name + "': the calendar is stopping");
    uint32_t i;
    if (!free_.empty()) {
        i = free_.back();
        free_.pop_back();
    } else {
        if (slots_.size() >= kNil - 1)
            throw std::length_error("calendar: too many timers");
        i = uint32_t(slots_.size());
        slots_.emplace_back();
    }
    Slot &s = slots_[i];
    s.cb = std::move(cb);
    s.name = std::move(o.name);
    s.owner = o.owner;
    s.missed = o.missed;
    s.kind = k;
    s.store = nullptr;
    s.live = true;
    s.running = false;
    s.jumped = false;
    s.heap_pos = kNil;
    auto [it, fresh] = owners_.try_emplace(s.owner, i);
    s.prev = kNil;
    s.next = fresh ? kNil : it->second;
    if (!fresh) {
        slots_[it->second].prev = i;
        it->second = i;
    }
    stats_.live++;
    return i;
}

void Calendar::release(uint32_t i)
{
    Slot &s = slots_[i];
    s.cb = nullptr;
    s.name.clear();
    s.store = nullptr;
    if (++s.gen == 0)
        s.gen = 1;
    free_.push_back(i);
}

uint32_t Calendar::find(uint64_t id) const
{
    const uint64_t low = id & 0xffffffffu;
    if (low == 0 || low > slots_.size())
        return kNil;
    const Slot &s = slots_[low - 1];
    return s.live && s.gen == uint32_t(id >> 32) ? uint32_t(low - 1) : kNil;
}

// Ends timer i: out of its heap and its owner's list; released now, or when its callback returns.
void Calendar::end(uint32_t i)
{
    Slot &s = slots_[i];
    if (!s.live)
        return;
    s.live = false;
    stats_.live--;
    if (s.heap_pos != kNil)
        (s.kind == Kind::Delay ? mono_ : wall_).remove(slots_, s.heap_pos);
    if (s.prev != kNil) {
        slots_[s.prev].next = s.next;
    } else {
        auto it = owners_.find(s.owner);
        if (s.next == kNil)
            owners_.erase(it);
        else
            it->second = s.next;
    }
    if (s.next != kNil)
        slots_[s.next].prev = s.prev;
    s.prev = s.next = kNil;
    if (!s.running)
        release(i);
}

bool Calendar::cancel(uint64_t id)
{
    const uint32_t i = find(id);
    if (i == kNil)
        return false;
    end(i);
    return true;
}

size_t Calendar::cancel_owner(const Owner &o)
{
    auto it = owners_.find(o);
    if (it == owners_.end())
        return 0;
    std::vector<uint32_t> list;
    for (uint32_t i = it->second; i != kNil; i = slots_[i].next)
        list.push_back(i);
    for (uint32_t i : list)
        end(i);
    return list.size();
}

int64_t Calendar::next_due_ms(uint64_t id) const
{
    const uint32_t i = find(id);
    if (i == kNil || slots_[i].heap_pos == kNil)
        return cal::kNone;
    const Slot &s = slots_[i];
    if (s.kind == Kind::Delay)
        return s.due - clock_.mono_ms() + clock_.wall_ms();
    return s.due;
}

Calendar::Stats Calendar::stats() const
{
    return stats_;
}

// Arms the clock for the earliest deadline of both heaps. Adding a timer only ever re-arms
// earlier (a cancelled earliest timer costs one early wake-up of the driver, not a syscall per
// cancel).
void Calendar::rearm()
{
    int64_t d = wall_.a.empty() ? Clock::kNever : wall_.a[0].due;
    if (!mono_.a.empty())
        d = std::min(d, mono_.a[0].due - clock_.mono_ms() + clock_.wall_ms());
    clock_.arm(d);
}

uint64_t Calendar::after(std::chrono::milliseconds delay, TimerOpts o, Callback cb)
{
    if (delay.count() < 0)
        throw std::invalid_argument("timer '" + o.name + "': negative delay (" +
                                    std::to_string(delay.count()) + " ms)");
    const bool earliest_before = mono_.a.empty();
    const int64_t due = clock_.mono_ms() + delay.count();
    const uint32_t i = alloc(o, cb, Kind::Delay);
    mono_.push(slots_, i, due);
    if (earliest_before || mono_.a[0].slot == i)
        rearm();
    return id_of(i);
}

uint64_t Calendar::at(const DateTime &dt, TimerOpts o, Callback cb)
{
    return every(Rule::at(dt), std::move(o), std::move(cb));
}

uint64_t Calendar::every(const Rule &r, TimerOpts o, Callback cb)
{
    const int64_t now_s = floor_div(clock_.wall_ms(), 1000);
    const int64_t first = r.next_after(now_s);
    if (first == cal::kNone) {
        if (r.kind() == Rule::Kind::Once)
            throw std::invalid_argument("timer '" + o.name + "': " + r.describe() +
                                        " is not after now (" + cal::format_local(now_s) + ")");
        throw std::invalid_argument("timer '" + o.name + "': " + r.describe() +
                                    " has no occurrence after now");
    }
    const uint32_t i = alloc(o, cb, Kind::Rule);
    slots_[i].rule = r;
    slots_[i].last_s = now_s;
    wall_.push(slots_, i, first * 1000);
    if (wall_.a[0].slot == i)
        rearm();
    return id_of(i);
}

uint64_t Calendar::boundary(const Rule &r, BoundaryStore &store, TimerOpts o, Callback cb)
{
    if (r.kind() == Rule::Kind::Once)
        throw std::invalid_argument("boundary '" + o.name + "': a one-time rule has no boundaries");
    for (const Slot &s : slots_)
        if (s.live && s.kind == Kind::Boundary && s.name == o.name)
            throw std::invalid_argument("boundary '" + o.name + "' already exists");
    const int64_t now_s = floor_div(clock_.wall_ms(), 1000);
    int64_t last = 0;
    if (!store.load(o.name, &last)) {
        last = r.last_at_or_before(now_s);
        if (last == cal::kNone)
            last = now_s;
        store.save(o.name, last);
    }
    const int64_t next = r.next_after(last);
    if (next == cal::kNone)
        throw std::invalid_argument("boundary '" + o.name + "': " + r.describe() +
                                    " has no occurrence after " + cal::format_local(last));
    const uint32_t i = alloc(o, cb, Kind::Boundary);
    Slot &s = slots_[i];
    s.rule = r;
    s.store = &store;
    s.last_s = last;
    s.jumped = next <= now_s; // passed while the program was down: a restart is a jump
    wall_.push(slots_, i, next * 1000);
    if (wall_.a[0].slot == i)
        rearm();
    return id_of(i);
}

void Calendar::start()
{
    if (started_)
        throw std::logic_error("calendar: started twice");
    coho_spawn_opts_t so;
    coho_spawn_opts_init(&so);
    so.name = "calendar";
    so.daemon = true;
    driver_ = sched_.spawn(so, [this] { run(); });
    started_ = true;
}

void Calendar::stop()
{
    if (!started_)
        return;
    stopping_ = true;
    for (uint32_t i = 0; i < slots_.size(); i++)
        end(i);
    clock_.interrupt();
    coho::join(driver_);
    running_.wait();
    started_ = false;
    stopping_ = false;
}

void Calendar::run()
{
    try {
        for (;;) {
            rearm();
            const Clock::Wake w = clock_.wait();
            if (w == Clock::Wake::Cancelled || stopping_)
                return;
            if (w == Clock::Wake::Set) {
                stats_.clock_sets++;
                coho_log_info(
                    "calendar: the wall clock was set; now %s; re-evaluating %" PRIu64 " timers",
                    cal::format_local(floor_div(clock_.wall_ms(), 1000)).c_str(), stats_.live);
            }
            process(w == Clock::Wake::Set);
        }
    } catch (const std::exception &e) {
        coho_log_error("calendar: the driver stopped: %s", e.what());
    }
}

// Fires everything due. After a clock set, rule timers found due were passed over by the jump:
// their Missed policy decides. Delays keep their monotonic deadline whatever the wall clock does.
void Calendar::process(bool after_set)
{
    const int64_t now_ms = clock_.wall_ms();
    const int64_t mono = clock_.mono_ms();
    if (after_set && stats_.running > 0)
        for (Slot &s : slots_)
            if (s.running && s.live)
                s.jumped = true;
    while (!mono_.a.empty() && mono_.a[0].due <= mono) {
        const int64_t due = mono_.a[0].due;
        const uint32_t i = mono_.pop(slots_);
        Fire f;
        f.timer = id_of(i);
        f.due_ms = due - mono + now_ms;
        f.now_ms = now_ms;
        fire(i, f, cal::kNone);
    }
    while (!wall_.a.empty() && wall_.a[0].due <= now_ms) {
        const uint32_t i = wall_.pop(slots_);
        handle_rule(i, now_ms, after_set || slots_[i].jumped);
    }
}

void Calendar::handle_rule(uint32_t i, int64_t now_ms, bool jumped)
{
    Slot &s = slots_[i];
    s.jumped = false;
    const int64_t now_s = floor_div(now_ms, 1000);
    const int64_t latest = s.rule.last_at_or_before(now_s);
    const uint64_t n = s.rule.count_between(s.last_s, now_s);
    if (latest == cal::kNone || n == 0) { // cannot happen: it was due; keep it going
        schedule_rule(i);
        return;
    }
    const int64_t previous = s.last_s;
    s.last_s = latest;
    if (jumped && s.missed == Missed::Skip) {
        stats_.skipped += n;
        coho_log_info("calendar: timer '%s' (%s): %" PRIu64 " occurrence(s) up to %s skipped",
                      s.name.c_str(), s.rule.describe().c_str(), n,
                      cal::format_local(latest).c_str());
        if (s.kind == Kind::Boundary) {
            try {
                s.store->save(s.name, latest);
            } catch (const std::exception &e) {
                coho_log_error("calendar: boundary '%s': %s", s.name.c_str(), e.what());
            }
        }
        schedule_rule(i);
        return;
    }
    Fire f;
    f.timer = id_of(i);
    f.due_ms = latest * 1000;
    f.now_ms = now_ms;
    f.missed = n - 1;
    f.late = jumped || n > 1;
    f.previous_s = previous;
    fire(i, f, s.kind == Kind::Boundary ? latest : cal::kNone);
}

void Calendar::schedule_rule(uint32_t i)
{
    Slot &s = slots_[i];
    const int64_t next = s.rule.next_after(s.last_s);
    if (next == cal::kNone) {
        end(i); // a one-time timer that has fired
        return;
    }
    wall_.push(slots_, i, next * 1000);
}

void Calendar::fire(uint32_t i, const Fire &f, int64_t save_s)
{
    Slot &s = slots_[i];
    s.running = true;
    stats_.running++;
    stats_.fired++;
    if (f.late)
        stats_.late++;
    running_.add(1);
    coho_spawn_opts_t so;
    coho_spawn_opts_init(&so);
    so.name = s.name.c_str();
    so.detached = true;
    try {
        sched_.spawn(so, [this, i, f, save_s] {
            const Callback &cb = slots_[i].cb; // slots_ is a deque: this stays put
            try {
                cb(f);
            } catch (const std::exception &e) {
                coho_log_error("calendar: timer '%s' callback threw: %s", slots_[i].name.c_str(),
                               e.what());
            } catch (...) {
                coho_log_error("calendar: timer '%s' callback threw", slots_[i].name.c_str());
            }
            finished(i, save_s);
        });
    } catch (const std::exception &e) {
        coho_log_error("calendar: timer '%s' could not start its callback: %s", s.name.c_str(),
                       e.what());
        finished(i, cal::kNone);
    }
}

void Calendar::finished(uint32_t i, int64_t save_s)
{
    Slot &s = slots_[i];
    s.running = false;
    stats_.running--;
    running_.done();
    if (save_s != cal::kNone && s.store != nullptr) {
        try {
            s.store->save(s.name, save_s);
        } catch (const std::exception &e) {
            coho_log_error("calendar: boundary '%s': cannot save: %s", s.name.c_str(), e.what());
        }
    }
    if (!s.live) {
        release(i);
        return;
    }
    if (s.kind == Kind::Delay) {
        end(i);
        return;
    }
    schedule_rule(i);
    if (s.heap_pos != kNil && wall_.a[0].slot == i)
        rearm();
}

} // namespace coho::game
