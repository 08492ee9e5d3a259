// SPDX-License-Identifier: MIT
// Players: loaded from MariaDB at login (LOAD), kept while their session lasts, dropped at
// SESSION_END. A change is written behind (persist.hpp: the dirty set, the saver, the
// journal) and its reply waits until it is durable, so a node that stops or crashes, or a
// database that goes away, loses nothing that was acknowledged.
#include <cinttypes>
#include <cstdlib>
#include <mutex>

#include <coho.h>

#include "game.pb.h"
#include "game/logic/node.hpp"

namespace coho::game::logic {

namespace {

bool parse_i64(const std::optional<std::string> &s, int64_t *v)
{
    if (!s || s->empty())
        return false;
    char *end = nullptr;
    errno = 0;
    long long x = std::strtoll(s->c_str(), &end, 10);
    if (errno != 0 || *end != '\0')
        return false;
    *v = x;
    return true;
}

// Reads the player's row into `p` (no row yet: a new player, all zero), with the journal's
// newer save over it if there is one. At login the row is created if missing and its login
// count goes up first. A copy in memory that is newer than the database (changes not saved
// yet) is kept; only a newer version (saved by another node) replaces it.
uint32_t load(Node &n, Player &p, bool login)
{
    if (!p.loaded)
        n.store().settle(p.uid); // an earlier copy of this player may still be being saved
    const std::string uid = std::to_string(p.uid);
    std::string err;
    if (login && !n.db().exec("INSERT INTO players (uid, logins) VALUES (" + uid +
                                  ", 1) ON DUPLICATE KEY UPDATE logins = logins + 1",
                              &err))
        return wire::SERVER_ERROR;
    Row row;
    bool found = false;
    if (!n.db().query_row("SELECT counter, logins, version, name FROM players WHERE uid = " + uid,
                          &row, &found, &err))
        return wire::SERVER_ERROR;
    int64_t counter = 0, logins = 0, version = 0;
    std::string name;
    if (found && (row.size() != 4 || !parse_i64(row[0], &counter) || !parse_i64(row[1], &logins) ||
                  !parse_i64(row[2], &version) || !row[3])) {
        coho_log_error("uid %" PRIu64 ": unreadable players row", p.uid);
        return wire::SERVER_ERROR;
    }
    if (found)
        name = *row[3];
    if (const Save *j = n.store().journaled(p.uid);
        j != nullptr && j->version > uint64_t(version)) {
        counter = j->counter;
        version = int64_t(j->version);
        name = j->name;
    }
    if (!p.loaded || uint64_t(version) > p.version) {
        p.counter = p.saved_counter = counter;
        p.name = p.saved_name = name;
        p.version = p.saved_version = uint64_t(version);
    }
    p.logins = uint32_t(logins);
    p.loaded = true;
    p.lease = n.lease();
    coho_log_debug("uid %" PRIu64 " loaded: counter %" PRId64 ", %u logins, version %" PRIu64,
                   p.uid, p.counter, p.logins, p.version);
    return wire::OK;
}

// The player `uid`, loaded (read again when `reload`), with its lock held by `*lk`. A player
// dropped while this call waited for its lock is looked up again.
uint32_t lock_loaded(Node &n, uint64_t uid, bool login, bool reload, std::shared_ptr<Player> *out,
                     std::unique_lock<coho::Mutex> *lk)
{
    for (;;) {
        std::shared_ptr<Player> &slot = n.players[uid];
        if (!slot) {
            slot = std::make_shared<Player>();
            slot->uid = uid;
        }
        std::shared_ptr<Player> p = slot;
        std::unique_lock<coho::Mutex> l(p->mu);
        auto it = n.players.find(uid);
        if (it == n.players.end() || it->second != p)
            continue;
        if (p->loaded && p->lease != n.lease()) {
            // Kept from an earlier lease: while the node had none, the gateways moved the uid
            // to another node, which may have changed and saved it. Read it again, and let the
            // database's copy win over this one (settled first: its own saves go before).
            coho_log_warn("uid %" PRIu64 ": the copy kept from lease %" PRId64
                          " is read again (lease now %" PRId64 ")",
                          uid, p->lease, n.lease());
            p->loaded = false;
        }
        if (!p->loaded || login || reload) {
            const uint32_t st = load(n, *p, login);
            if (st != wire::OK) {
                if (!p->loaded) {
                    it = n.players.find(uid);
                    if (it != n.players.end() && it->second == p)
                        n.players.erase(it);
                }
                return st;
            }
        }
        *out = std::move(p);
        *lk = std::move(l);
        return wire::OK;
    }
}

} // namespace

uint32_t player_load(Node &n, uint64_t uid, uint64_t session, uint64_t gate)
{
    std::shared_ptr<Player> p;
    std::unique_lock<coho::Mutex> lk;
    const uint32_t st = lock_loaded(n, uid, true, false, &p, &lk);
    if (st != wire::OK)
        return st;
    p->session = session;
    p->gate = gate;
    coho_log_info("uid %" PRIu64 " logged in (session %" PRIu64 ", gateway %" PRIu64 ", login %u)",
                  uid, session, gate, p->logins);
    return wire::OK;
}

bool player_session_end(Node &n, uint64_t uid, uint64_t session)
{
    auto it = n.players.find(uid);
    if (it == n.players.end())
        return true;
    if (it->second->session != 0 && it->second->session != session)
        return false; // a newer session of the uid keeps the player
    n.players.erase(it);
    coho_log_debug("uid %" PRIu64 " unloaded", uid);
    return true;
}

uint32_t player_get(Node &n, const Call &c, std::string &out)
{
    PlayerGetReq req;
    if (!req.ParseFromArray(c.payload.data(), int(c.payload.size())))
        return wire::BAD_PAYLOAD;
    // Read from the database every time: while the uid was served by another node (nodes
    // come and go, rendezvous hashing moves uids), that node may have changed the row.
    std::shared_ptr<Player> p;
    std::unique_lock<coho::Mutex> lk;
    if (const uint32_t st = lock_loaded(n, c.uid, false, true, &p, &lk); st != wire::OK)
        return st;
    p->gate = c.gate;
    coho::game::Player resp;
    resp.set_uid(p->uid);
    resp.set_counter(p->counter);
    resp.set_logins(p->logins);
    resp.set_name(p->name);
    resp.SerializeToString(&out);
    return wire::OK;
}

uint32_t player_add(Node &n, const Call &c, std::string &out)
{
    PlayerAddReq req;
    if (!req.ParseFromArray(c.payload.data(), int(c.payload.size())))
        return wire::BAD_PAYLOAD;
    std::shared_ptr<Player> p;
    std::unique_lock<coho::Mutex> lk;
    if (const uint32_t st = lock_loaded(n, c.uid, false, false, &p, &lk); st != wire::OK)
        return st;
    n.store().wait_room(*p); // a bounded dirty set: may wait for the saver
    int64_t sum;
    if (__builtin_add_overflow(p->counter, req.delta(), &sum))
        return wire::BAD_PAYLOAD;
    // Change the copy in memory, hand it to the saver, and answer once it is durable. The
    // player's lock is not held meanwhile: the next changes of the player join this save.
    p->counter = sum;
    if (!req.name().empty())
        p->name = req.name();
    p->version++;
    p->gate = c.gate;
    const uint64_t v = p->version;
    n.store().mark(p);
    lk.unlock();
    if (const uint32_t st = n.store().wait_saved(*p, v); st != wire::OK)
        return st;
    PlayerAddResp resp;
    resp.set_counter(sum);
    resp.SerializeToString(&out);
    return wire::OK;
}

} // namespace coho::game::logic
