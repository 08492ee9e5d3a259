// SPDX-License-Identifier: MIT
// Player saves of the logic node (game/README.md, "Persistence"): write-behind through a bounded
// dirty set, flushed by a saver coroutine; a change is acknowledged once it is durable, in
// MariaDB or, while MariaDB cannot be reached, in an fsync'd journal replayed when it comes
// back (or at the next start). A save that MariaDB refuses (an SQL error, not a network one) is
// logged and written to an error file, never retried.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <coho.hpp>

#include "game/logic/db.hpp"

namespace coho::game::logic {

struct Player;

struct PersistConfig {
    std::string journal = "coho-logic-1.journal"; // locked by one node at a time
    std::string errors;                           // empty: journal + ".errors"
    // A change waits at most this long for the saver to start saving it (changes made
    // meanwhile, to any player, go in the same flush; a player changed many times is saved
    // once).
    std::chrono::milliseconds save_interval{5};
    // Most players changed and not yet handed to the saver; a change to one more waits (the
    // saver is told to flush at once).
    size_t dirty_max = 10000;
    // A save that fails for a network reason is tried again this many times, after `backoff`,
    // then twice that, ... up to `backoff_max`; then it goes to the journal.
    unsigned retries = 4;
    std::chrono::milliseconds backoff{50};
    std::chrono::milliseconds backoff_max{1000};
    // While the journal holds saves, replaying them is tried this often.
    std::chrono::milliseconds replay_every{1000};
    // Connections idle this long are pinged (checked as often); a dead one is replaced.
    std::chrono::milliseconds ping_every{30000};
};

// One save of a player: absolute values and the version they carry.
struct Save {
    uint64_t uid = 0;
    int64_t counter = 0;
    uint64_t version = 0;
    std::string name;
};

// Counters of the store (metrics).
struct PersistStats {
    uint64_t flushes = 0;     // saver rounds that saved something
    uint64_t saves = 0;       // player saves written to MariaDB
    uint64_t retries = 0;     // statements tried again after a network error
    uint64_t journaled = 0;   // saves appended to the journal
    uint64_t replayed = 0;    // saves replayed from the journal
    uint64_t sql_errors = 0;  // saves refused by MariaDB (written to the error file)
    uint64_t dirty_waits = 0; // changes that waited for room in the dirty set
};

class Store {
public:
    Store(PersistConfig cfg, Db &db);
    ~Store();
    Store(const Store &) = delete;
    Store &operator=(const Store &) = delete;

    // Opens (creating) and locks the journal, reads the saves it holds and cuts a torn last
    // record, opens the error file. Throws std::runtime_error saying why.
    void open();
    // Starts the saver and the pinger coroutines on `sched` (daemons). Inside a coroutine.
    void start(coho::Scheduler &sched);
    // Saves every dirty player (to MariaDB or the journal), then ends the coroutines. Inside a
    // coroutine; the saves of changes made after this are not started.
    void stop();

    // Before changing `p` (its lock held): waits while the dirty set is full and `p` is not in
    // it.
    void wait_room(Player &p);
    // After changing `p` (its version bumped, its lock held): `p` joins the dirty set.
    void mark(const std::shared_ptr<Player> &p);
    // Waits until version `v` of `p` is durable: wire::OK; or the status of a save that failed
    // (wire::BAD_PAYLOAD for a value the column refuses, wire::SERVER_ERROR else).
    uint32_t wait_saved(const Player &p, uint64_t v);
    // Waits until no save of `uid` is pending (dirty or being written), so that the database
    // (with the journal over it) holds its latest state.
    void settle(uint64_t uid);
    // The newest save of `uid` the journal holds (not yet replayed), or nullptr.
    const Save *journaled(uint64_t uid) const;

    size_t dirty_size() const { return dirty_.size(); }
    uint64_t journal_bytes() const { return journal_bytes_; }
    uint64_t journal_records() const { return journal_records_; }
    const PersistStats &stats() const { return stats_; }
    const PersistConfig &config() const { return cfg_; }

    // The statement a save is written with (absolute values; applied only over an older
    // version, so that replaying it again changes nothing).
    static std::string save_sql(const std::vector<Save> &v, size_t from, size_t n);

private:
    enum class Outcome { OK, NETWORK, SQL };
    void saver();
    void pinger();
    // Writes `v` (in statements of at most kBatch rows); st[i] is the wire status of v[i].
    void save(const std::vector<Save> &v, std::vector<uint32_t> *st);
    // Runs `sql`; with `retry`, a network error is tried again with backoff.
    Outcome run(const std::string &sql, bool retry, std::string *err, unsigned *code);
    // Replays the journal's saves; true when it is empty afterwards.
    bool replay();
    bool journal_append(const std::vector<Save> &v, size_t from, size_t n);
    void journal_truncate();
    void error_file_append(const Save &s, unsigned code, const std::string &err,
                           const std::string &sql);
    static std::string record(const Save &s);

    PersistConfig cfg_;
    Db &db_;
    int journal_fd_ = -1;
    int errors_fd_ = -1;
    uint64_t journal_bytes_ = 0, journal_records_ = 0;
    std::map<uint64_t, Save> journal_index_; // uid -> the newest save journaled
    std::unordered_map<uint64_t, std::shared_ptr<Player>> dirty_;
    std::unordered_map<uint64_t, uint64_t> inflight_; // uid -> version being written
    PersistStats stats_;
    bool started_ = false, stopping_ = false, kick_ = false;
    bool saver_done_ = false, pinger_done_ = false;
    coho::Mutex mu_;
    coho::CondVar work_cv_;  // the saver waits for work
    coho::CondVar room_cv_;  // writers wait for room in the dirty set
    coho::CondVar saved_cv_; // writers wait for their saves; stop() for the coroutines
};

} // namespace coho::game::logic
