// SPDX-License-Identifier: MIT
// The MariaDB connection pool of the logic node (db.hpp). All of it runs on the scheduler
// thread, so the pool's lists change only between parks; the mutex exists for the condition
// variable that queues coroutines waiting for a connection.
#include "game/logic/db.hpp"

#include <errmsg.h>
#include <mysqld_error.h>

#include <algorithm>
#include <mutex>

#include <coho.h>

namespace coho::game::logic {

namespace {

// `version` orders the saves of a player (persist.hpp): a save applies only over an older
// version, so a save replayed twice changes nothing the second time.
const char *const kSchema = "CREATE TABLE IF NOT EXISTS players ("
                            " uid BIGINT UNSIGNED NOT NULL PRIMARY KEY,"
                            " counter BIGINT NOT NULL DEFAULT 0,"
                            " logins INT UNSIGNED NOT NULL DEFAULT 0,"
                            " version BIGINT UNSIGNED NOT NULL DEFAULT 0,"
                            " name VARCHAR(32) NOT NULL DEFAULT ''"
                            ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";
// A table made by an older coho-logic gets the newer columns.
const char *const kUpgrade = "ALTER TABLE players"
                             " ADD COLUMN IF NOT EXISTS version BIGINT UNSIGNED NOT NULL DEFAULT 0,"
                             " ADD COLUMN IF NOT EXISTS name VARCHAR(32) NOT NULL DEFAULT ''";
// Strict: a value that does not fit its column is an error, never silently cut.
const char *const kSqlMode = "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'";

// Errors after which the connection cannot be trusted again.
bool is_connection_error(unsigned code)
{
    return code == CR_SERVER_GONE_ERROR || code == CR_SERVER_LOST || code == CR_CONNECTION_ERROR ||
           code == CR_CONN_HOST_ERROR || code == CR_COMMANDS_OUT_OF_SYNC ||
           code == CR_UNKNOWN_ERROR;
}

std::string describe(MYSQL *m)
{
    return std::string("MariaDB error ") + std::to_string(mysql_errno(m)) + ": " + mysql_error(m);
}

uint64_t since_us(std::chrono::steady_clock::time_point t0)
{
    return uint64_t(
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0)
            .count());
}

} // namespace

void QueryStats::record(uint64_t us, bool ok)
{
    count_++;
    if (!ok)
        failed_++;
    sum_ += us;
    min_ = std::min(min_, us);
    max_ = std::max(max_, us);
    if (window_.size() < kWindow) {
        window_.push_back(us);
    } else {
        window_[next_] = us;
        next_ = (next_ + 1) % kWindow;
    }
}

uint64_t QueryStats::p99_us() const
{
    if (window_.empty())
        return 0;
    std::vector<uint64_t> v(window_);
    const size_t k = (v.size() * 99 + 99) / 100 - 1; // the nearest-rank 99th percentile
    std::nth_element(v.begin(), v.begin() + long(k), v.end());
    return v[k];
}

bool Db::is_network_error(unsigned code)
{
    return code == CR_SERVER_GONE_ERROR || code == CR_SERVER_LOST || code == CR_CONNECTION_ERROR ||
           code == CR_CONN_HOST_ERROR || code == CR_UNKNOWN_HOST || code == CR_IPSOCK_ERROR ||
           code == CR_SERVER_HANDSHAKE_ERR || code == CR_SERVER_LOST_EXTENDED ||
           code == ER_SERVER_SHUTDOWN || code == ER_CONNECTION_KILLED ||
           code == ER_CON_COUNT_ERROR || code == ER_NET_READ_ERROR ||
           code == ER_NET_READ_INTERRUPTED || code == ER_NET_ERROR_ON_WRITE ||
           code == ER_NET_WRITE_INTERRUPTED;
}

Db::~Db()
{
    for (const Idle &c : idle_)
        mysql_close(c.m);
}

bool Db::valid_name(const std::string &name)
{
    if (name.empty() || name.size() > 64)
        return false;
    for (char c : name)
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return false;
    return true;
}

MYSQL *Db::connect(std::string *err, unsigned *code)
{
    MYSQL *m = mysql_init(nullptr);
    if (m == nullptr) {
        *err = "mysql_init: out of memory";
        *code = CR_OUT_OF_MEMORY;
        return nullptr;
    }
    unsigned t = cfg_.timeout_s;
    mysql_options(m, MYSQL_OPT_CONNECT_TIMEOUT, &t);
    mysql_options(m, MYSQL_OPT_READ_TIMEOUT, &t);
    mysql_options(m, MYSQL_OPT_WRITE_TIMEOUT, &t);
    if (mysql_real_connect(m, cfg_.host.c_str(), cfg_.user.c_str(), cfg_.password.c_str(), nullptr,
                           cfg_.port, nullptr, 0) == nullptr) {
        *err = "connect to " + cfg_.host + ":" + std::to_string(cfg_.port) + ": " + describe(m);
        *code = mysql_errno(m);
        mysql_close(m);
        return nullptr;
    }
    // The database and the table, if missing; then the connection uses the database.
    const std::string create_db = "CREATE DATABASE IF NOT EXISTS `" + cfg_.name + "`";
    if (mysql_query(m, kSqlMode) != 0 ||
        mysql_real_query(m, create_db.data(), create_db.size()) != 0 ||
        mysql_select_db(m, cfg_.name.c_str()) != 0 || mysql_query(m, kSchema) != 0 ||
        (!schema_upgraded_ && mysql_query(m, kUpgrade) != 0)) {
        *err = "schema of database " + cfg_.name + ": " + describe(m);
        *code = mysql_errno(m);
        mysql_close(m);
        return nullptr;
    }
    schema_upgraded_ = true;
    coho_log_info("db: connected to %s:%u, database %s (%u open)", cfg_.host.c_str(), cfg_.port,
                  cfg_.name.c_str(), open_);
    return m;
}

MYSQL *Db::acquire(bool *fresh, std::string *err, unsigned *code)
{
    {
        std::unique_lock<coho::Mutex> lk(mu_);
        cv_.wait(lk, [&] { return !idle_.empty() || open_ < cfg_.conns; });
        if (!idle_.empty()) {
            MYSQL *m = idle_.back().m;
            idle_.pop_back();
            *fresh = false;
            return m;
        }
        open_++; // reserve the slot before parking in connect
    }
    *fresh = true;
    MYSQL *m = connect(err, code);
    if (m == nullptr) {
        std::lock_guard<coho::Mutex> g(mu_);
        open_--;
        cv_.notify_one();
    }
    return m;
}

void Db::release(MYSQL *m, bool broken)
{
    std::lock_guard<coho::Mutex> g(mu_);
    if (broken) {
        mysql_close(m);
        open_--;
    } else {
        idle_.push_back({m, std::chrono::steady_clock::now()});
    }
    cv_.notify_one();
}

unsigned Db::ping_idle(std::chrono::milliseconds idle_for)
{
    // Take the connections to ping out of the pool, so that no query uses one meanwhile.
    std::vector<MYSQL *> due;
    {
        std::lock_guard<coho::Mutex> g(mu_);
        const auto before = std::chrono::steady_clock::now() - idle_for;
        for (size_t i = 0; i < idle_.size();) {
            if (idle_[i].since <= before) {
                due.push_back(idle_[i].m);
                idle_.erase(idle_.begin() + long(i));
            } else {
                i++;
            }
        }
    }
    unsigned replaced = 0;
    for (MYSQL *m : due) {
        pings_++;
        if (mysql_ping(m) == 0) {
            release(m, false);
            continue;
        }
        coho_log_warn("db: idle connection failed its ping (%s); replacing it",
                      describe(m).c_str());
        release(m, true);
        dead_replaced_++;
        replaced++;
        owed_++;
    }
    // A new connection for each dead one; those that cannot connect now are tried at the next
    // round.
    while (owed_ > 0) {
        {
            std::lock_guard<coho::Mutex> g(mu_);
            if (open_ >= cfg_.conns) {
                owed_ = 0; // the pool filled up again meanwhile
                break;
            }
        }
        std::string err;
        unsigned code = 0;
        bool fresh = false;
        MYSQL *n = acquire(&fresh, &err, &code);
        if (n == nullptr) {
            errors_++;
            coho_log_warn("db: no replacement connection yet: %s", err.c_str());
            break;
        }
        release(n, false);
        owed_--;
    }
    return replaced;
}

bool Db::run(const std::string &sql, bool want_result, Row *row, bool *found, std::string *err,
             unsigned *code, uint64_t *affected)
{
    const auto t0 = std::chrono::steady_clock::now();
    unsigned c = 0;
    const bool ok = run_once(sql, want_result, row, found, err, &c, affected);
    (want_result ? reads_ : writes_).record(since_us(t0), ok);
    if (code != nullptr)
        *code = ok ? 0 : c;
    return ok;
}

bool Db::run_once(const std::string &sql, bool want_result, Row *row, bool *found, std::string *err,
                  unsigned *code, uint64_t *affected)
{
    for (int attempt = 0;; attempt++) {
        bool fresh = false;
        MYSQL *m = acquire(&fresh, err, code);
        if (m == nullptr) {
            errors_++;
            coho_log_error("db: %s", err->c_str());
            return false;
        }
        if (mysql_real_query(m, sql.data(), sql.size()) != 0) {
            *code = mysql_errno(m);
            *err = describe(m);
            const bool broken = is_connection_error(*code) || is_network_error(*code);
            release(m, broken);
            // A pooled connection may have died while idle (server restart, wait_timeout):
            // one more try on a new connection.
            if (broken && !fresh && attempt == 0) {
                coho_log_warn("db: pooled connection lost (%s); reconnecting", err->c_str());
                continue;
            }
            errors_++;
            coho_log_error("db: %s; statement: %s", err->c_str(), sql.c_str());
            return false;
        }
        if (!want_result) {
            if (affected != nullptr)
                *affected = mysql_affected_rows(m);
            release(m, false);
            return true;
        }
        MYSQL_RES *res = mysql_store_result(m);
        if (res == nullptr) {
            *err = mysql_field_count(m) == 0 ? "statement returned no result set" : describe(m);
            *code = mysql_errno(m);
            release(m, *code != 0 && (is_connection_error(*code) || is_network_error(*code)));
            errors_++;
            coho_log_error("db: %s; statement: %s", err->c_str(), sql.c_str());
            return false;
        }
        *found = false;
        row->clear();
        if (MYSQL_ROW r = mysql_fetch_row(res)) {
            const unsigned n = mysql_num_fields(res);
            const unsigned long *lens = mysql_fetch_lengths(res);
            for (unsigned i = 0; i < n; i++) {
                if (r[i] == nullptr)
                    row->emplace_back(std::nullopt);
                else
                    row->emplace_back(std::string(r[i], lens[i]));
            }
            *found = true;
        }
        mysql_free_result(res);
        release(m, false);
        return true;
    }
}

bool Db::exec(const std::string &sql, std::string *err, unsigned *code, uint64_t *affected)
{
    return run(sql, false, nullptr, nullptr, err, code, affected);
}

bool Db::query_row(const std::string &sql, Row *row, bool *found, std::string *err, unsigned *code)
{
    return run(sql, true, row, found, err, code, nullptr);
}

} // namespace coho::game::logic
