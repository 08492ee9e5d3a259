// SPDX-License-Identifier: MIT
// The session table: one session per uid, found by uid (pushes) and by session id (REBIND).
// A session keeps its pushes in a bounded replay cache; delivery hands them to the session's
// connection in seq order on the connection's own shard, so that pushes coming from several
// node links (several threads) still reach the client as 1, 2, 3, ... without gaps.
#include <openssl/rand.h>
#include <time.h>

#include <stdexcept>

#include "bytes.hpp"
#include "links.hpp"

namespace coho::game::gate {

namespace {

Gate g_gate;
thread_local Shard *tl_shard = nullptr;

// Hands the pushes the connection has not had yet to it, in order. Under Gate::mu, on the
// session's shard.
void flush_locked(Session &s)
{
    for (auto &[seq, frame] : s.replay) {
        if (seq <= s.sent_seq)
            continue;
        if (!send_to_client(s.conn_id, frame)) {
            // Gone, or kicked as a slow consumer: the pushes stay for a REBIND.
            gate().stats.push_drops++;
            return;
        }
        s.sent_seq = seq;
    }
}

struct FlushPost {
    SessionPtr s;
};
void schedule_flush_locked(const SessionPtr &s);

void flush_posted(void *arg)
{
    std::unique_ptr<FlushPost> p(static_cast<FlushPost *>(arg));
    std::lock_guard<std::mutex> g(gate().mu);
    p->s->flush_pending = false;
    schedule_flush_locked(p->s);
}

// Delivers now when the session's connection lives on this thread, else posts the delivery to
// its shard (once: later pushes ride on the pending post). Under Gate::mu.
void schedule_flush_locked(const SessionPtr &s)
{
    if (s->conn_id == 0 || s->ended)
        return;
    Shard *here = this_shard();
    if (here != nullptr && here->index == s->shard) {
        flush_locked(*s);
        return;
    }
    if (s->flush_pending)
        return;
    coho_sched_t *sched = gate().shards[s->shard]->sched;
    if (sched == nullptr)
        return; // the shard has stopped
    auto *p = new FlushPost{s};
    if (coho_sched_post(sched, flush_posted, p) != 0) {
        delete p; // the shard is stopping: its connections are going too
        return;
    }
    s->flush_pending = true;
}

// Drops the oldest pushes past the cache's bounds; pushes not yet handed to a connected
// client stay (they leave at the next flush). Under Gate::mu.
void trim_locked(Session &s)
{
    const Config &cfg = gate().cfg;
    while (!s.replay.empty() &&
           (s.replay.size() > cfg.replay_pushes || s.replay_bytes > cfg.replay_bytes)) {
        auto &front = s.replay.front();
        if (s.conn_id != 0 && front.first > s.sent_seq)
            break;
        s.replay_bytes -= front.second.size();
        s.replay.pop_front();
    }
}

// Removes `s` from the tables and from its groups. Under Gate::mu.
void unlink_locked(Session &s)
{
    Gate &g = gate();
    s.ended = true;
    auto it = g.by_uid.find(s.uid);
    if (it != g.by_uid.end() && it->second.get() == &s)
        g.by_uid.erase(it);
    g.by_id.erase(s.id);
    for (const std::string &name : s.groups) {
        auto git = g.groups.find(name);
        if (git == g.groups.end())
            continue;
        git->second.erase(s.uid);
        if (git->second.empty())
            g.groups.erase(git);
    }
    s.groups.clear();
    s.replay.clear();
    s.replay_bytes = 0;
}

// Tells the uid's node that the session `s` (ended) ended, and the node of each scene it was in
// to take its entity out (scenes.cpp), from coroutines of the calling shard.
void tell_node_ended(const SessionPtr &s)
{
    std::map<uint32_t, SceneSeat> seats;
    {
        std::lock_guard<std::mutex> g(gate().mu);
        seats.swap(s->scenes);
    }
    Shard *sh = this_shard();
    if (sh == nullptr || !sh->links)
        return;
    NodeLinks *links = sh->links.get();
    const uint64_t uid = s->uid, sid = s->id;
    leave_scenes(*links, uid, sid, seats);
    coho_spawn_opts_t so;
    coho_spawn_opts_init(&so);
    so.detached = true; // nobody joins it
    so.name = "gate.session-end";
    coho::spawn(so, [links, uid, sid] { links->session_end(uid, sid); });
}

} // namespace

Gate &gate()
{
    return g_gate;
}
Shard *this_shard()
{
    return tl_shard;
}
void set_this_shard(Shard *s)
{
    tl_shard = s;
}

int64_t now_ms()
{
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

std::string random_bytes(size_t n)
{
    std::string b(n, '\0');
    if (RAND_bytes(reinterpret_cast<unsigned char *>(b.data()), int(n)) != 1)
        throw std::runtime_error("RAND_bytes failed");
    return b;
}

SessionPtr start_session(uint64_t uid, uint64_t sid, Client &c)
{
    auto s = std::make_shared<Session>();
    s->uid = uid;
    s->id = sid;
    s->key = random_bytes(wire::kResumeKeyLen);
    s->conn_id = c.conn.id();
    s->shard = c.shard.index;
    SessionPtr old;
    uint64_t old_conn = 0;
    unsigned old_shard = 0;
    {
        std::lock_guard<std::mutex> g(gate().mu);
        auto it = gate().by_uid.find(uid);
        if (it != gate().by_uid.end()) {
            old = it->second;
            old_conn = old->conn_id;
            old_shard = old->shard;
            old->conn_id = 0;
            unlink_locked(*old);
        }
        gate().by_uid[uid] = s;
        gate().by_id[sid] = s;
    }
    if (old) {
        if (old_conn != 0)
            kick_conn(old_shard, old_conn, wire::KICK_ELSEWHERE);
        tell_node_ended(old);
    }
    return s;
}

void end_session(const SessionPtr &s)
{
    {
        std::lock_guard<std::mutex> g(gate().mu);
        if (s->ended)
            return;
        s->conn_id = 0;
        unlink_locked(*s);
    }
    tell_node_ended(s);
}

void detach_session(Client &c)
{
    SessionPtr s = std::move(c.session);
    if (!s)
        return;
    {
        std::lock_guard<std::mutex> g(gate().mu);
        if (s->ended || s->conn_id != c.conn.id())
            return; // ended, or rebound to another connection
        s->conn_id = 0;
        s->detached_ms = now_ms();
        if (gate().cfg.grace_ms > 0)
            return;
        unlink_locked(*s);
    }
    tell_node_ended(s);
}

void expire_sessions(Shard &shard)
{
    std::vector<SessionPtr> gone;
    {
        std::lock_guard<std::mutex> g(gate().mu);
        int64_t now = now_ms();
        for (auto &[id, s] : gate().by_id)
            if (s->conn_id == 0 && s->shard == shard.index &&
                now - s->detached_ms >= int64_t(gate().cfg.grace_ms))
                gone.push_back(s);
        for (auto &s : gone)
            unlink_locked(*s);
    }
    for (auto &s : gone) {
        gate().stats.sessions_expired++;
        tell_node_ended(s);
    }
}

void push_to(const SessionPtr &s, uint16_t route, std::string_view payload)
{
    std::string body;
    body.reserve(2 + payload.size());
    put_u16(body, route);
    body.append(payload);
    std::lock_guard<std::mutex> g(gate().mu);
    if (s->ended)
        return;
    uint32_t seq = ++s->push_seq;
    std::string f = wire::frame(wire::PUSH, seq, body);
    s->replay_bytes += f.size();
    s->replay.emplace_back(seq, std::move(f));
    gate().stats.pushes++;
    schedule_flush_locked(s);
    trim_locked(*s);
}

} // namespace coho::game::gate
