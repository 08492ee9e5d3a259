// SPDX-License-Identifier: MIT
// A client connection, start to end, in its own coroutine: admission (admission.cpp: KICK 7),
// then read a frame, check it, hand it to the feature it names, until
// the client leaves, is kicked, or logs out. Any complete frame is activity (net/'s idle
// timer); a read error names the KICK: idle 1, protocol error 4 (oversize, malformed), rate
// limit 6, shutdown 5.
#include <netinet/in.h>
#include <netinet/tcp.h>

#include "bytes.hpp"
#include "gate.hpp"

namespace coho::game::gate {

namespace {
// Send-queue room kept for the KICK: the frame and its largest WebSocket header.
constexpr size_t kKickRoom = 64;
constexpr size_t kWsHeaderMax = 14;
} // namespace

bool Client::send(std::string_view frame)
{
    if (kicked)
        return false;
    size_t queued = coho_conn_queued_bytes(conn.native_handle());
    if (queued + frame.size() + kWsHeaderMax + kKickRoom > gate().cfg.send_queue_bytes) {
        coho_log_info("gate: connection %llu: slow consumer (%zu bytes queued)",
                      (unsigned long long)conn.id(), queued);
        kick(wire::KICK_SLOW);
        conn.close();
        return false;
    }
    if (!conn.send(frame))
        return false;
    if (gate().cfg.stats) {
        traffic->frames_out.fetch_add(1, std::memory_order_relaxed);
        traffic->bytes_out.fetch_add(frame.size(), std::memory_order_relaxed);
    }
    return true;
}

bool send_to_client(uint64_t conn_id, std::string_view frame)
{
    Shard *sh = this_shard();
    auto it = sh != nullptr ? sh->clients.find(conn_id) : decltype(sh->clients.end()){};
    if (sh == nullptr || it == sh->clients.end())
        return false;
    return it->second->send(frame);
}

void Client::kick(uint32_t reason)
{
    if (!kicked) {
        conn.send(wire::kick(reason));
        gate().stats.kicks[reason & 7]++;
    }
    kicked = true;
    done = true;
}

void Client::protocol_error(const char *what)
{
    gate().stats.protocol_errors++;
    coho_log_info("gate: connection %llu: protocol error: %s", (unsigned long long)conn.id(), what);
    kick(wire::KICK_PROTOCOL);
}

namespace {

struct KickPost {
    uint64_t conn_id;
    uint32_t reason;
};

void kick_here(uint64_t conn_id, uint32_t reason)
{
    Shard *sh = this_shard();
    auto it = sh->clients.find(conn_id);
    if (it == sh->clients.end())
        return; // gone meanwhile
    it->second->kick(reason);
    it->second->conn.close(); // its read fails: the handler ends, the KICK leaves first
}

void kick_posted(void *arg)
{
    std::unique_ptr<KickPost> p(static_cast<KickPost *>(arg));
    kick_here(p->conn_id, p->reason);
}

void on_read_error(Client &c, int err)
{
    switch (err) {
    case 0:            // EOF between frames
    case ECONNRESET:   // EOF inside a frame, or reset
    case ECONNABORTED: // closed here (kicked) or at the send-queue bound
    case ECANCELED:
        return;
    case ETIMEDOUT:
        return c.kick(wire::KICK_IDLE);
    case EMSGSIZE:
    case EPROTO:
        if (c.ws) {
            // net/ has answered with a close frame (1009, 1002): nothing may follow it.
            gate().stats.protocol_errors++;
            c.kicked = c.done = true;
            return;
        }
        return c.protocol_error(err == EMSGSIZE ? "frame longer than --max-frame"
                                                : "malformed frame");
    case ESHUTDOWN:
        return c.kick(wire::KICK_SHUTDOWN);
    default:
        coho_log_info("gate: connection %llu: read failed: %s", (unsigned long long)c.conn.id(),
                      strerror(err));
    }
}

// One frame: checks the framing rules, then hands it to its feature.
void dispatch(Client &c, const std::string &f)
{
    if (c.ws && coho_conn_last_is_text(c.conn.native_handle()))
        return c.protocol_error("a text WebSocket message");
    if (f.size() < wire::kHeaderLen)
        return c.protocol_error("frame shorter than its header");
    auto h = wire::parse_header(reinterpret_cast<const unsigned char *>(f.data()));
    if (h.len < wire::kMinLen)
        return c.protocol_error("len below 8");
    if (size_t(h.len) + 4 != f.size())
        return c.protocol_error("WebSocket message is not exactly one frame");
    std::string_view body(f.data() + wire::kHeaderLen, f.size() - wire::kHeaderLen);
    switch (h.type) {
    case wire::LOGIN:
        return login(c, h.seq, body);
    case wire::PING:
        gate().stats.pings++;
        c.send(wire::frame(wire::PING | wire::kResponse, h.seq));
        return;
    case wire::REBIND:
        return rebind(c, h.seq, body);
    case wire::CALL:
        return call(c, h.seq, body);
    case wire::ACK:
        return ack(c, body);
    case wire::LOGOUT:
        return logout(c, h.seq);
    default:
        return c.protocol_error("unknown frame type, or one only the gateway sends");
    }
}

} // namespace

void kick_conn(unsigned shard, uint64_t conn_id, uint32_t reason)
{
    Shard *here = this_shard();
    if (here != nullptr && here->index == shard)
        return kick_here(conn_id, reason);
    auto *p = new KickPost{conn_id, reason};
    std::lock_guard<std::mutex> g(gate().mu);
    coho_sched_t *sched = gate().shards[shard]->sched;
    if (sched == nullptr || coho_sched_post(sched, kick_posted, p) != 0)
        delete p; // the shard is stopping: the connection goes with it
}

void serve_client(coho::net::Conn &conn, Shard &shard, bool ws)
{
    Gate &g = gate();
    Client c{conn, shard, ws, nullptr};
    g.stats.accepted++;
    Admission admitted(conn);
    if (!admitted.ok()) {
        g.stats.refused++;
        c.kick(wire::KICK_DENIED);
        return;
    }
    int one = 1;
    setsockopt(coho_conn_fd(conn.native_handle()), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    shard.clients[conn.id()] = &c;
    c.traffic->id = conn.id();
    c.traffic->shard = shard.index;
    c.traffic->ws = ws;
    c.traffic->peer = admitted.peer();
    c.traffic->since_ms = now_ms();
    {
        std::lock_guard<std::mutex> lk(g.conns_mu);
        g.conns[conn.id()] = c.traffic;
    }

    std::string f;
    while (!c.done) {
        if (!conn.read(f)) {
            if (conn.error() == EDQUOT)
                c.kick(wire::KICK_RATE);
            else
                on_read_error(c, conn.error());
            break;
        }
        if (g.cfg.stats) {
            c.traffic->frames_in.fetch_add(1, std::memory_order_relaxed);
            c.traffic->bytes_in.fetch_add(f.size(), std::memory_order_relaxed);
        }
        dispatch(c, f);
        if (c.session)
            c.traffic->uid.store(c.session->uid, std::memory_order_relaxed);
    }

    {
        std::lock_guard<std::mutex> lk(g.conns_mu);
        g.conns.erase(conn.id());
    }
    shard.clients.erase(conn.id());
    detach_session(c);
}

} // namespace coho::game::gate
