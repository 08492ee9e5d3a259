// SPDX-License-Identifier: MIT
// Player saves (persist.hpp): the dirty set, the saver and pinger coroutines, the journal and
// the error file. Everything runs on the node's scheduler thread; the lists change only
// between parks, and the mutex exists for the condition variables.
//
// The journal is a text file: a header line, then one line per save,
//   <16 hex: FNV-1a 64 of the rest of the line> save_player <uid> <counter> <version> <name>
// where <name> is the name's bytes in hex, or "-" when empty. A line is appended and fsync'd
// before the changes it holds are acknowledged; a last line without its newline or checksum
// (the node died while writing it, so it was never acknowledged) is cut at open.
#include "game/logic/persist.hpp"

#include <fcntl.h>
#include <mysqld_error.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstring>
#include <ctime>
#include <mutex>
#include <stdexcept>
#include <type_traits>

#include <coho.h>

#include "game/common/wire.hpp"
#include "game/logic/node.hpp"

namespace coho::game::logic {

namespace {

const char kHeader[] = "coho-logic journal v1\n";
constexpr size_t kBatch = 200; // rows per save statement

uint64_t fnv1a(const char *p, size_t n)
{
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < n; i++) {
        h ^= uint8_t(p[i]);
        h *= 1099511628211ull;
    }
    return h;
}

std::string hex(const std::string &s)
{
    static const char d[] = "0123456789abcdef";
    std::string out;
    out.reserve(2 * s.size());
    for (unsigned char c : s) {
        out += d[c >> 4];
        out += d[c & 15];
    }
    return out;
}

bool unhex(const std::string &h, std::string *out)
{
    if (h.size() % 2 != 0)
        return false;
    out->clear();
    for (size_t i = 0; i < h.size(); i += 2) {
        int v = 0;
        for (size_t k = 0; k < 2; k++) {
            const char c = h[i + k];
            v <<= 4;
            if (c >= '0' && c <= '9')
                v |= c - '0';
            else if (c >= 'a' && c <= 'f')
                v |= c - 'a' + 10;
            else
                return false;
        }
        out->push_back(char(v));
    }
    return true;
}

// A decimal number that fills `t` exactly.
template <class T>
bool parse_num(const std::string &t, T *v)
{
    if (t.empty() || (t[0] == '-' && !std::is_signed<T>::value))
        return false;
    char *end = nullptr;
    errno = 0;
    if constexpr (std::is_signed<T>::value)
        *v = std::strtoll(t.c_str(), &end, 10);
    else
        *v = std::strtoull(t.c_str(), &end, 10);
    return errno == 0 && *end == '\0';
}

// One journal line without its newline into *s; false when it does not parse or its checksum
// is wrong.
bool parse_record(const std::string &line, Save *s)
{
    if (line.size() < 18 || line[16] != ' ')
        return false;
    const std::string sum_hex = line.substr(0, 16);
    char *end = nullptr;
    const uint64_t sum = std::strtoull(sum_hex.c_str(), &end, 16);
    if (*end != '\0' || sum != fnv1a(line.data() + 17, line.size() - 17))
        return false;
    std::vector<std::string> f;
    for (size_t pos = 17;;) {
        const size_t sp = line.find(' ', pos);
        f.push_back(line.substr(pos, sp == std::string::npos ? std::string::npos : sp - pos));
        if (sp == std::string::npos)
            break;
        pos = sp + 1;
    }
    long long counter = 0;
    unsigned long long uid = 0, version = 0;
    if (f.size() != 5 || f[0] != "save_player" || !parse_num(f[1], &uid) ||
        !parse_num(f[2], &counter) || !parse_num(f[3], &version))
        return false;
    s->uid = uid;
    s->counter = counter;
    s->version = version;
    if (f[4] == "-")
        s->name.clear();
    else if (f[4].empty() || !unhex(f[4], &s->name))
        return false;
    return true;
}

bool write_all(int fd, const std::string &s)
{
    size_t off = 0;
    while (off < s.size()) {
        const ssize_t n = ::write(fd, s.data() + off, s.size() - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        off += size_t(n);
    }
    return true;
}

// The wire status of a save MariaDB refused: the value does not fit its column (bad input),
// or anything else (a server error).
uint32_t status_of_sql_error(unsigned code)
{
    switch (code) {
    case ER_DATA_TOO_LONG:
    case ER_WARN_DATA_OUT_OF_RANGE:
    case ER_TRUNCATED_WRONG_VALUE_FOR_FIELD:
    case ER_TRUNCATED_WRONG_VALUE:
        return wire::BAD_PAYLOAD;
    default:
        return wire::SERVER_ERROR;
    }
}

} // namespace

Store::Store(PersistConfig cfg, Db &db) : cfg_(std::move(cfg)), db_(db)
{
    if (cfg_.errors.empty())
        cfg_.errors = cfg_.journal + ".errors";
}

Store::~Store()
{
    if (journal_fd_ >= 0)
        ::close(journal_fd_); // the lock goes with it
    if (errors_fd_ >= 0)
        ::close(errors_fd_);
}

std::string Store::record(const Save &s)
{
    std::string body = "save_player " + std::to_string(s.uid) + " " + std::to_string(s.counter) +
                       " " + std::to_string(s.version) + " " +
                       (s.name.empty() ? std::string("-") : hex(s.name));
    char sum[17];
    std::snprintf(sum, sizeof sum, "%016" PRIx64, fnv1a(body.data(), body.size()));
    return std::string(sum) + " " + body + "\n";
}

std::string Store::save_sql(const std::vector<Save> &v, size_t from, size_t n)
{
    std::string sql = "INSERT INTO players (uid, counter, version, name) VALUES ";
    for (size_t i = from; i < from + n; i++) {
        const Save &s = v[i];
        if (i != from)
            sql += ",";
        sql += "(" + std::to_string(s.uid) + "," + std::to_string(s.counter) + "," +
               std::to_string(s.version) + "," +
               (s.name.empty() ? std::string("''") : "_utf8mb4 X'" + hex(s.name) + "'") + ")";
    }
    // Assignments run left to right: `version` changes last, so the IFs see the old one.
    sql += " ON DUPLICATE KEY UPDATE"
           " counter = IF(VALUES(version) > version, VALUES(counter), counter),"
           " name = IF(VALUES(version) > version, VALUES(name), name),"
           " version = GREATEST(version, VALUES(version))";
    return sql;
}

void Store::open()
{
    journal_fd_ = ::open(cfg_.journal.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (journal_fd_ < 0)
        throw std::runtime_error("journal " + cfg_.journal + ": " + strerror(errno));
    if (flock(journal_fd_, LOCK_EX | LOCK_NB) != 0)
        throw std::runtime_error("journal " + cfg_.journal + ": " +
                                 (errno == EWOULDBLOCK ? std::string("locked by another process")
                                                       : std::string(strerror(errno))));
    std::string text;
    char buf[65536];
    for (;;) {
        const ssize_t n = ::read(journal_fd_, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            throw std::runtime_error("journal " + cfg_.journal + ": read: " + strerror(errno));
        if (n == 0)
            break;
        text.append(buf, size_t(n));
    }
    const size_t hlen = sizeof kHeader - 1;
    if (text.size() < hlen && std::string(kHeader).compare(0, text.size(), text) == 0) {
        // New (or cut while its header was written): start it over.
        if (ftruncate(journal_fd_, 0) != 0 ||
            pwrite(journal_fd_, kHeader, hlen, 0) != ssize_t(hlen) || fsync(journal_fd_) != 0)
            throw std::runtime_error("journal " + cfg_.journal + ": write: " + strerror(errno));
        text = kHeader;
    } else if (text.compare(0, hlen, kHeader) != 0) {
        throw std::runtime_error("journal " + cfg_.journal + ": not a coho-logic journal");
    }
    size_t pos = hlen, good_end = hlen;
    uint64_t bad = 0;
    while (pos < text.size()) {
        const size_t nl = text.find('\n', pos);
        Save s;
        if (nl == std::string::npos) {
            coho_log_warn("journal %s: a torn last record of %zu bytes cut (never acknowledged)",
                          cfg_.journal.c_str(), text.size() - pos);
            break;
        }
        if (!parse_record(text.substr(pos, nl - pos), &s)) {
            bad++;
            coho_log_error("journal %s: unreadable record at byte %zu skipped",
                           cfg_.journal.c_str(), pos);
        } else {
            journal_records_++;
            Save &cur = journal_index_[s.uid];
            if (s.version >= cur.version)
                cur = s;
        }
        pos = nl + 1;
        good_end = pos;
    }
    if (good_end != text.size() &&
        (ftruncate(journal_fd_, off_t(good_end)) != 0 || fsync(journal_fd_) != 0))
        throw std::runtime_error("journal " + cfg_.journal + ": truncate: " + strerror(errno));
    if (lseek(journal_fd_, 0, SEEK_END) < 0)
        throw std::runtime_error("journal " + cfg_.journal + ": seek: " + strerror(errno));
    journal_bytes_ = good_end - hlen;
    if (journal_records_ != 0 || bad != 0)
        coho_log_warn("journal %s: %" PRIu64 " saves of %zu players to replay (%" PRIu64
                      " unreadable)",
                      cfg_.journal.c_str(), journal_records_, journal_index_.size(), bad);
    errors_fd_ = ::open(cfg_.errors.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (errors_fd_ < 0)
        throw std::runtime_error("error file " + cfg_.errors + ": " + strerror(errno));
}

void Store::start(coho::Scheduler &sched)
{
    coho_spawn_opts_t so;
    coho_spawn_opts_init(&so);
    so.daemon = true;
    so.detached = true;
    so.name = "logic.saver";
    started_ = true;
    sched.spawn(so, [this] { saver(); });
    so.name = "logic.db-ping";
    sched.spawn(so, [this] { pinger(); });
}

void Store::stop()
{
    std::unique_lock<coho::Mutex> lk(mu_);
    if (!started_)
        return;
    stopping_ = true;
    work_cv_.notify_all();
    saved_cv_.wait(lk, [&] { return saver_done_ && pinger_done_; });
}

void Store::wait_room(Player &p)
{
    if (p.dirty)
        return;
    std::unique_lock<coho::Mutex> lk(mu_);
    if (dirty_.size() < cfg_.dirty_max)
        return;
    stats_.dirty_waits++;
    kick_ = true;
    work_cv_.notify_one();
    room_cv_.wait(lk, [&] { return p.dirty || dirty_.size() < cfg_.dirty_max || saver_done_; });
}

void Store::mark(const std::shared_ptr<Player> &p)
{
    std::lock_guard<coho::Mutex> g(mu_);
    if (!p->dirty) {
        p->dirty = true;
        dirty_[p->uid] = p;
    }
    if (dirty_.size() >= cfg_.dirty_max)
        kick_ = true;
    work_cv_.notify_one();
}

uint32_t Store::wait_saved(const Player &p, uint64_t v)
{
    std::unique_lock<coho::Mutex> lk(mu_);
    saved_cv_.wait(lk,
                   [&] { return p.saved_version >= v || p.failed_version >= v || saver_done_; });
    if (p.saved_version >= v)
        return wire::OK;
    if (p.failed_version >= v)
        return p.failed_status;
    return wire::SERVER_ERROR; // stopped before the save (the node is going away)
}

void Store::settle(uint64_t uid)
{
    std::unique_lock<coho::Mutex> lk(mu_);
    if (dirty_.count(uid) == 0 && inflight_.count(uid) == 0)
        return;
    kick_ = true;
    work_cv_.notify_one();
    saved_cv_.wait(
        lk, [&] { return (dirty_.count(uid) == 0 && inflight_.count(uid) == 0) || saver_done_; });
}

const Save *Store::journaled(uint64_t uid) const
{
    auto it = journal_index_.find(uid);
    return it == journal_index_.end() ? nullptr : &it->second;
}

void Store::saver()
{
    auto next_replay = std::chrono::steady_clock::now();
    std::unique_lock<coho::Mutex> lk(mu_);
    for (;;) {
        // Work: dirty players, a journal to replay, or the stop.
        if (journal_records_ != 0)
            work_cv_.wait_until(lk, next_replay, [&] { return stopping_ || !dirty_.empty(); });
        else
            work_cv_.wait(lk, [&] { return stopping_ || !dirty_.empty(); });
        // Gather the changes of the next few milliseconds into this flush.
        if (!dirty_.empty() && !stopping_ && !kick_)
            work_cv_.wait_for(lk, cfg_.save_interval, [&] { return stopping_ || kick_; });
        kick_ = false;
        std::vector<std::shared_ptr<Player>> batch;
        std::vector<Save> v;
        batch.reserve(dirty_.size());
        v.reserve(dirty_.size());
        for (auto &[uid, p] : dirty_) {
            p->dirty = false;
            inflight_[uid] = p->version;
            v.push_back({uid, p->counter, p->version, p->name});
            batch.push_back(std::move(p));
        }
        dirty_.clear();
        room_cv_.notify_all();
        lk.unlock();

        // The journal first: its saves are older than any of this batch.
        if (stopping_)
            next_replay = std::chrono::steady_clock::now(); // one last try before exiting
        if (journal_records_ != 0 && std::chrono::steady_clock::now() >= next_replay) {
            if (!replay())
                next_replay = std::chrono::steady_clock::now() + cfg_.replay_every;
        }
        std::vector<uint32_t> st;
        if (!v.empty()) {
            save(v, &st);
            stats_.flushes++;
        }

        lk.lock();
        for (size_t i = 0; i < batch.size(); i++) {
            Player &p = *batch[i];
            inflight_.erase(p.uid);
            if (st[i] == wire::OK) {
                if (v[i].version > p.saved_version) {
                    p.saved_version = v[i].version;
                    p.saved_counter = v[i].counter;
                    p.saved_name = v[i].name;
                }
                continue;
            }
            // Not durable: every change of the player so far failed (the later ones were made
            // over this state); it goes back to what was saved last.
            p.failed_version = p.version;
            p.failed_status = st[i];
            p.counter = p.saved_counter;
            p.name = p.saved_name;
            if (p.dirty) {
                p.dirty = false;
                dirty_.erase(p.uid);
                room_cv_.notify_all();
            }
        }
        saved_cv_.notify_all();
        if (stopping_ && dirty_.empty())
            break;
    }
    if (journal_records_ != 0)
        coho_log_warn("journal %s: %" PRIu64 " saves left for the next start", cfg_.journal.c_str(),
                      journal_records_);
    saver_done_ = true;
    room_cv_.notify_all();
    saved_cv_.notify_all();
}

void Store::pinger()
{
    const auto slice = std::chrono::milliseconds(100);
    auto next = std::chrono::steady_clock::now() + cfg_.ping_every;
    while (!stopping_) {
        const auto now = std::chrono::steady_clock::now();
        if (now < next) {
            coho::this_co::sleep_for(
                std::min<std::chrono::steady_clock::duration>(next - now, slice));
            continue;
        }
        db_.ping_idle(cfg_.ping_every);
        next = std::chrono::steady_clock::now() + cfg_.ping_every;
    }
    std::lock_guard<coho::Mutex> g(mu_);
    pinger_done_ = true;
    saved_cv_.notify_all();
}

Store::Outcome Store::run(const std::string &sql, bool retry, std::string *err, unsigned *code)
{
    auto backoff = cfg_.backoff;
    for (unsigned attempt = 0;; attempt++) {
        if (db_.exec(sql, err, code))
            return Outcome::OK;
        if (!Db::is_network_error(*code))
            return Outcome::SQL;
        if (!retry || attempt >= cfg_.retries)
            return Outcome::NETWORK;
        stats_.retries++;
        coho_log_warn("save: %s; trying again in %lld ms (%u of %u)", err->c_str(),
                      static_cast<long long>(backoff.count()), attempt + 1, cfg_.retries);
        coho::this_co::sleep_for(backoff);
        backoff = std::min(backoff * 2, cfg_.backoff_max);
    }
}

void Store::save(const std::vector<Save> &v, std::vector<uint32_t> *st)
{
    st->assign(v.size(), wire::SERVER_ERROR);
    for (size_t from = 0; from < v.size(); from += kBatch) {
        const size_t n = std::min(kBatch, v.size() - from);
        // While the journal holds saves, MariaDB is known away (the replay before this failed):
        // straight to the journal, after the saves it holds.
        Outcome o = Outcome::NETWORK;
        std::string err, sql;
        unsigned code = 0;
        if (journal_records_ == 0) {
            sql = save_sql(v, from, n);
            o = run(sql, true, &err, &code);
        }
        if (o == Outcome::OK) {
            stats_.saves += n;
            std::fill(st->begin() + long(from), st->begin() + long(from + n), wire::OK);
        } else if (o == Outcome::NETWORK) {
            if (journal_append(v, from, n))
                std::fill(st->begin() + long(from), st->begin() + long(from + n), wire::OK);
        } else if (n > 1) {
            // One row spoils the statement: each row alone finds it.
            for (size_t i = from; i < from + n; i++) {
                std::vector<uint32_t> one;
                save(std::vector<Save>{v[i]}, &one);
                (*st)[i] = one[0];
            }
        } else {
            stats_.sql_errors++;
            error_file_append(v[from], code, err, sql);
            (*st)[from] = status_of_sql_error(code);
        }
    }
}

bool Store::replay()
{
    std::vector<Save> v;
    v.reserve(journal_index_.size());
    for (auto &[uid, s] : journal_index_)
        v.push_back(s);
    size_t done = 0;
    for (size_t from = 0; from < v.size(); from += kBatch) {
        const size_t n = std::min(kBatch, v.size() - from);
        const std::string sql = save_sql(v, from, n);
        std::string err;
        unsigned code = 0;
        const Outcome o = run(sql, false, &err, &code);
        if (o == Outcome::NETWORK) {
            coho_log_info("journal %s: replay waits for the database (%s)", cfg_.journal.c_str(),
                          err.c_str());
            // Keep only what is left (the saves done are in the database).
            for (size_t i = 0; i < from; i++)
                journal_index_.erase(v[i].uid);
            return false;
        }
        if (o == Outcome::SQL) {
            for (size_t i = from; i < from + n; i++) {
                const std::string one = save_sql(v, i, 1);
                const Outcome oi = run(one, false, &err, &code);
                if (oi == Outcome::NETWORK) {
                    for (size_t k = 0; k < i; k++)
                        journal_index_.erase(v[k].uid);
                    return false;
                }
                if (oi == Outcome::SQL) {
                    stats_.sql_errors++;
                    error_file_append(v[i], code, err, one);
                }
            }
        }
        done += n;
        stats_.replayed += n;
    }
    coho_log_info("journal %s: %zu saves replayed (%" PRIu64 " records)", cfg_.journal.c_str(),
                  done, journal_records_);
    journal_truncate();
    return true;
}

bool Store::journal_append(const std::vector<Save> &v, size_t from, size_t n)
{
    std::string text;
    for (size_t i = from; i < from + n; i++)
        text += record(v[i]);
    // fsync blocks the scheduler thread for the disk's flush: this happens only while MariaDB
    // cannot be reached, once per flush.
    const off_t before = lseek(journal_fd_, 0, SEEK_END);
    if (before < 0 || !write_all(journal_fd_, text) || fdatasync(journal_fd_) != 0) {
        const int e = errno;
        coho_log_error("journal %s: append of %zu saves failed: %s; those changes are not "
                       "durable",
                       cfg_.journal.c_str(), n, strerror(e));
        if (before >= 0 && ftruncate(journal_fd_, before) == 0)
            lseek(journal_fd_, before, SEEK_SET);
        return false;
    }
    for (size_t i = from; i < from + n; i++) {
        Save &cur = journal_index_[v[i].uid];
        if (v[i].version >= cur.version)
            cur = v[i];
    }
    journal_records_ += n;
    journal_bytes_ += text.size();
    stats_.journaled += n;
    coho_log_warn("journal %s: %zu saves appended (%" PRIu64 " held); the database is away",
                  cfg_.journal.c_str(), n, journal_records_);
    return true;
}

void Store::journal_truncate()
{
    const off_t hlen = off_t(sizeof kHeader - 1);
    if (ftruncate(journal_fd_, hlen) != 0 || fsync(journal_fd_) != 0 ||
        lseek(journal_fd_, hlen, SEEK_SET) < 0)
        coho_log_error("journal %s: truncate after the replay: %s (its saves will be replayed "
                       "again, which changes nothing)",
                       cfg_.journal.c_str(), strerror(errno));
    journal_index_.clear();
    journal_records_ = 0;
    journal_bytes_ = 0;
}

void Store::error_file_append(const Save &s, unsigned code, const std::string &err,
                              const std::string &sql)
{
    std::string msg = err;
    std::replace(msg.begin(), msg.end(), '\n', ' ');
    char when[32];
    const time_t t = time(nullptr);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    std::string rec = record(s);
    rec.pop_back();
    const std::string line = std::string(when) + " code=" + std::to_string(code) + " error=" + msg +
                             " record=" + rec + " sql=" + sql + "\n";
    coho_log_error("save of uid %" PRIu64
                   " refused by the database, not retried: %s; statement: %s",
                   s.uid, msg.c_str(), sql.c_str());
    if (!write_all(errors_fd_, line) || fdatasync(errors_fd_) != 0)
        coho_log_error("error file %s: %s", cfg_.errors.c_str(), strerror(errno));
}

} // namespace coho::game::logic
