// SPDX-License-Identifier: MIT
// MariaDB for the logic node: a pool of libmariadb connections (the unmodified, blocking client
// library; coho's hooks park the calling coroutine on every socket wait, so a query reads as a
// plain call). The node's schema is created on every new connection if missing.
#pragma once

#include <mysql.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <coho.hpp>

namespace coho::game::logic {

struct DbConfig {
    std::string host = "127.0.0.1";
    unsigned port = 3306;
    std::string user = "root";
    std::string password;
    std::string name = "coho_game"; // letters, digits and '_' only (checked by valid_name)
    unsigned conns = 8;             // connections kept at most
    unsigned timeout_s = 5;         // connect, read and write timeouts of each connection
};

// One row of a result: every column as text, std::nullopt for NULL.
using Row = std::vector<std::optional<std::string>>;

// Latency and count of one kind of query (reads: statements with a result set; writes: the
// others), each measured as the whole call (waiting for a connection included). min, max and
// the mean cover the whole run; p99 covers the last kWindow queries.
class QueryStats {
public:
    static constexpr size_t kWindow = 4096;
    void record(uint64_t us, bool ok);
    uint64_t count() const { return count_; }
    uint64_t failed() const { return failed_; }
    uint64_t min_us() const { return count_ != 0 ? min_ : 0; }
    uint64_t max_us() const { return max_; }
    double avg_us() const { return count_ != 0 ? double(sum_) / double(count_) : 0; }
    uint64_t p99_us() const; // 0 before the first query

private:
    uint64_t count_ = 0, failed_ = 0, sum_ = 0, min_ = UINT64_MAX, max_ = 0;
    std::vector<uint64_t> window_; // a ring of the last kWindow latencies
    size_t next_ = 0;
};

// A pool of connections. Every call is for the scheduler thread, inside a coroutine; calls of
// many coroutines overlap (each takes its own connection; past `conns` they wait for one).
class Db {
public:
    explicit Db(DbConfig cfg) : cfg_(std::move(cfg)) {}
    ~Db(); // closes the idle connections (a connection in use is closed by its user)
    Db(const Db &) = delete;
    Db &operator=(const Db &) = delete;

    // Whether `name` may be a database name here (1..64 of [A-Za-z0-9_]).
    static bool valid_name(const std::string &name);

    // Whether a MariaDB error code means the server could not be reached or the connection
    // broke (connect refused, server gone or lost...), as opposed to an error of the
    // statement itself (data too long for a column, syntax...).
    static bool is_network_error(unsigned code);

    // Runs `sql` (a statement without a result set). false with *err set on failure, and
    // *code (when not null) set to the MariaDB error code (0 when there is none). *affected
    // (when not null) receives the affected-rows count.
    bool exec(const std::string &sql, std::string *err, unsigned *code = nullptr,
              uint64_t *affected = nullptr);

    // Runs `sql` and returns its first row in *row; *found tells whether there was one.
    bool query_row(const std::string &sql, Row *row, bool *found, std::string *err,
                   unsigned *code = nullptr);

    // Pings (mysql_ping) every connection idle for at least `idle_for`; one that fails is
    // closed and a new one opened in its place (if that fails too, at the next call). Returns
    // how many failed their ping.
    unsigned ping_idle(std::chrono::milliseconds idle_for);

    // Connections open now (idle or in use) and idle.
    unsigned open_count() const { return open_; }
    size_t idle_count() const { return idle_.size(); }

    // Errors seen (connect failures and failed statements) since the start.
    uint64_t error_count() const { return errors_; }

    const QueryStats &reads() const { return reads_; }
    const QueryStats &writes() const { return writes_; }
    uint64_t pings() const { return pings_; }
    uint64_t dead_replaced() const { return dead_replaced_; }

private:
    struct Idle {
        MYSQL *m;
        std::chrono::steady_clock::time_point since;
    };
    // A connection: an idle one, or a new one (nullptr with *err and *code when connecting
    // failed).
    MYSQL *acquire(bool *fresh, std::string *err, unsigned *code);
    void release(MYSQL *m, bool broken);
    MYSQL *connect(std::string *err, unsigned *code);
    // Runs `sql` on a pooled connection, reconnecting once if a reused connection turned out
    // to be dead; *row receives the first row when `want_result`.
    bool run(const std::string &sql, bool want_result, Row *row, bool *found, std::string *err,
             unsigned *code, uint64_t *affected);
    bool run_once(const std::string &sql, bool want_result, Row *row, bool *found, std::string *err,
                  unsigned *code, uint64_t *affected);

    DbConfig cfg_;
    std::vector<Idle> idle_;
    unsigned open_ = 0; // idle + in use + being connected
    uint64_t errors_ = 0;
    uint64_t pings_ = 0, dead_replaced_ = 0;
    unsigned owed_ = 0;            // dead connections not replaced yet (the server was away)
    bool schema_upgraded_ = false; // the columns added since the first schema, once per process
    QueryStats reads_, writes_;
    coho::Mutex mu_;
    coho::CondVar cv_;
};

} // namespace coho::game::logic
