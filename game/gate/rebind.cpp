// SPDX-License-Identifier: MIT
// REBIND: a client whose socket dropped comes back on a new one with its session id, resume
// key and the last push it received. The session moves to the new connection (an old one still
// open gets KICK 2), gets a new resume key, and the pushes the client missed follow the answer
// in order. ACK: pushes up to a seq may leave the replay cache.
#include <openssl/crypto.h>

#include "bytes.hpp"
#include "gate.hpp"

namespace coho::game::gate {

namespace {

void fail(Client &c, uint32_t seq)
{
    gate().stats.rebind_failures++;
    c.send(wire::error_response(wire::REBIND, seq, wire::UNKNOWN_SESSION));
}

} // namespace

void rebind(Client &c, uint32_t seq, std::string_view body)
{
    Reader r(body);
    uint64_t sid = r.u64();
    std::string_view key = r.bytes(wire::kResumeKeyLen);
    uint32_t last = r.u32();
    if (!r.ok())
        return c.protocol_error("REBIND body shorter than its fields");
    if (c.session)
        return fail(c, seq); // this connection holds a session already

    SessionPtr s;
    uint64_t old_conn = 0;
    unsigned old_shard = 0;
    {
        std::lock_guard<std::mutex> g(gate().mu);
        auto it = gate().by_id.find(sid);
        if (it == gate().by_id.end() || it->second->ended)
            return fail(c, seq);
        s = it->second;
        if (CRYPTO_memcmp(s->key.data(), key.data(), wire::kResumeKeyLen) != 0)
            return fail(c, seq); // the session is untouched
        uint32_t first_kept = s->replay.empty() ? s->push_seq + 1 : s->replay.front().first;
        if (last > s->sent_seq || uint64_t(last) + 1 < first_kept)
            return fail(c, seq); // newer than the last push sent, or older than the cache
        old_conn = s->conn_id;
        old_shard = s->shard;
        s->conn_id = c.conn.id();
        s->shard = c.shard.index;
        s->detached_ms = 0;
        s->key = random_bytes(wire::kResumeKeyLen);
        s->sent_seq = last;
        while (!s->replay.empty() && s->replay.front().first <= last) {
            s->replay_bytes -= s->replay.front().second.size();
            s->replay.pop_front();
        }
        std::string reply;
        put_u32(reply, wire::OK);
        reply.append(s->key);
        c.send(wire::frame(wire::REBIND | wire::kResponse, seq, reply));
        // The missed pushes, in order, right behind the answer (this is the session's shard).
        for (auto &[pseq, frame] : s->replay) {
            if (!c.send(frame))
                break;
            s->sent_seq = pseq;
        }
    }
    c.session = s;
    gate().stats.rebinds++;
    if (old_conn != 0 && old_conn != c.conn.id())
        kick_conn(old_shard, old_conn, wire::KICK_ELSEWHERE);
}

void ack(Client &c, std::string_view body)
{
    Reader r(body);
    uint32_t upto = r.u32();
    if (!r.ok())
        return c.protocol_error("ACK body shorter than its push seq");
    gate().stats.acks++;
    if (!c.session)
        return;
    std::lock_guard<std::mutex> g(gate().mu);
    Session &s = *c.session;
    while (!s.replay.empty() && s.replay.front().first <= upto &&
           s.replay.front().first <= s.sent_seq) {
        s.replay_bytes -= s.replay.front().second.size();
        s.replay.pop_front();
    }
}

} // namespace coho::game::gate
