// SPDX-License-Identifier: MIT
// The logic node's frame handling (node.hpp): HELLO, LOAD, CALL and SESSION_END from the
// gateways, each request in its own coroutine, the route table, the pushes back to the
// gateways, and the two schema-free test routes.
#include "game/logic/node.hpp"

#include <algorithm>
#include <cinttypes>
#include <system_error>

#include <coho.h>

#include "game/common/scene_call.hpp"

namespace coho::game::logic {

using coho::tdp::Request;

Node::Node(Config cfg, coho::Scheduler &sched)
    : cfg_(std::move(cfg)), sched_(sched), db_(cfg_.db), store_(cfg_.persist, db_)
{
    routes_ = {
        {wire::R_ECHO, echo},
        {wire::R_PUSH_SELF, push_self},
        {wire::R_PLAYER_GET, player_get},
        {wire::R_PLAYER_ADD, player_add},
        {wire::R_CHAT_JOIN, chat_join},
        {wire::R_CHAT_SAY, chat_say},
        {wire::R_CHAT_LEAVE, chat_leave},
        {wire::R_SCENE_ENTER, scene_enter},
        {wire::R_SCENE_MOVE, scene_move},
        {wire::R_SCENE_LEAVE, scene_leave},
    };
    register_metrics();
}

Node::~Node()
{
    // The read_metric series point at this node; the registry itself goes with the members.
    coho_metrics_remove_fn(metrics_.native_handle(), this);
}

void Node::start()
{
    store_.open(); // the journal's saves are known before the first request
    coho::tdp::Options o;
    o.max_frame_len = 1u << 20;
    o.on_conn_new = [this](uint64_t conn) {
        coho_log_info("gateway connection %" PRIu64 " up", conn);
    };
    o.on_conn_delete = [this](uint64_t conn, int err) { on_conn_delete(conn, err); };
    pool_ = coho::tdp::Pool::listen(
        cfg_.listen_ip.c_str(), cfg_.listen_port, [this](Request rq) { on_request(std::move(rq)); },
        o);
    store_.start(sched_);
    coho_log_info("logic node %" PRIu64 " listening on %s:%u", cfg_.node_id, cfg_.listen_ip.c_str(),
                  unsigned(pool_.local_port()));
}

void Node::stop()
{
    stopping_ = true;
    pool_.close();
    gates_.clear();
    gate_of_conn_.clear();
    store_.stop(); // every change made is saved (or journaled) before the node exits
}

void Node::on_conn_delete(uint64_t conn, int err)
{
    auto it = gate_of_conn_.find(conn);
    if (it == gate_of_conn_.end()) {
        coho_log_info("connection %" PRIu64 " closed (%s) before HELLO", conn, strerror(err));
        return;
    }
    const uint64_t gate = it->second.gate;
    gate_of_conn_.erase(it);
    auto g = gates_.find(gate);
    if (g == gates_.end())
        return;
    auto &v = g->second.conns;
    for (size_t i = 0; i < v.size(); i++)
        if (v[i] == conn) {
            v.erase(v.begin() + long(i));
            break;
        }
    coho_log_info("gateway %" PRIu64 ": connection %" PRIu64 " closed (%s), %zu left", gate, conn,
                  strerror(err), v.size());
    // The gateway's sessions stay while its connect pool reconnects; if it stays away for
    // gate_grace, they end here.
    if (!v.empty() || stopping_)
        return;
    gates_.erase(g);
    const uint64_t epoch = ++gate_epoch_[gate];
    coho_spawn_opts_t so;
    coho_spawn_opts_init(&so);
    so.detached = true;
    so.name = "logic.gate-grace";
    try {
        sched_.spawn(so, [this, gate, epoch] { expire_gate(gate, epoch); });
    } catch (const std::system_error &e) {
        coho_log_error("gateway %" PRIu64 ": no coroutine for its grace period: %s", gate,
                       e.what());
    }
}

void Node::expire_gate(uint64_t gate, uint64_t epoch)
{
    // Sleep in slices, so that stopping the node never waits for a grace period.
    const auto end = std::chrono::steady_clock::now() + cfg_.gate_grace;
    while (std::chrono::steady_clock::now() < end) {
        if (stopping_)
            return;
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            end - std::chrono::steady_clock::now());
        coho::this_co::sleep_for(std::min(left, std::chrono::milliseconds(100)) +
                                 std::chrono::milliseconds(1));
    }
    if (stopping_ || gates_.count(gate) != 0 || gate_epoch_[gate] != epoch)
        return; // it came back
    std::set<uint64_t> uids;
    for (auto &[uid, p] : players)
        if (p->gate == gate)
            uids.insert(uid);
    for (uint64_t uid : scene_uids_of_gate(*this, gate))
        uids.insert(uid);
    coho_log_warn("gateway %" PRIu64 " gone for %lld ms: ending its %zu sessions here", gate,
                  static_cast<long long>(cfg_.gate_grace.count()), uids.size());
    for (uint64_t uid : uids) {
        auto it = players.find(uid);
        if (it != players.end() && it->second->gate == gate)
            players.erase(it);
        channels_of.erase(uid); // its groups went with the gateway
        scene_gate_end(*this, uid, gate);
    }
}

// In the connection's receive coroutine: HELLO is answered here (it never parks, and the
// connection must know its gateway before the next frame), everything else gets a coroutine.
void Node::on_request(Request rq)
{
    const std::string whole = rq.frame();
    node::Header h;
    std::string_view body;
    if (!node::parse(whole, &h, &body)) {
        bad_frames_++;
        coho_log_warn("connection %" PRIu64 ": malformed frame of %zu bytes dropped", rq.conn_id(),
                      whole.size());
        return;
    }
    if (h.type != node::HELLO) {
        coho_spawn_opts_t so;
        coho_spawn_opts_init(&so);
        so.detached = true;
        so.name = "logic.req";
        const uint64_t conn = rq.conn_id();
        try {
            sched_.spawn(so, [this, rq = std::move(rq)]() mutable { serve(std::move(rq)); });
        } catch (const std::system_error &e) {
            // The request is dropped unanswered: the gateway's call times out.
            coho_log_error("no coroutine for a request of connection %" PRIu64 ": %s", conn,
                           e.what());
        }
        return;
    }
    Reader r(body);
    const uint64_t gate = r.u64();
    uint32_t status = wire::OK;
    if (!r.ok()) {
        status = wire::BAD_PAYLOAD;
        coho_log_warn("connection %" PRIu64 ": HELLO without a gateway id", rq.conn_id());
    } else if (gate_of_conn_.count(rq.conn_id()) != 0) {
        status = wire::BAD_PAYLOAD;
        coho_log_warn("connection %" PRIu64 ": second HELLO ignored", rq.conn_id());
    } else {
        gate_of_conn_[rq.conn_id()] = Link{gate, lease()};
        auto &gs = gates_[gate].conns;
        if (gs.empty())
            ++gate_epoch_[gate]; // (re)connected: a pending grace period is void
        gs.push_back(rq.conn_id());
        coho_log_info("gateway %" PRIu64 " on connection %" PRIu64, gate, rq.conn_id());
    }
    try {
        rq.reply(node::frame(h.type | node::kResponseBit, h.seq, status, {}));
    } catch (const std::system_error &e) {
        coho_log_info("HELLO reply on connection %" PRIu64 ": %s", rq.conn_id(), e.what());
    }
}

void Node::serve(Request rq)
{
    const std::string whole = rq.frame();
    node::Header h;
    std::string_view body;
    node::parse(whole, &h, &body); // checked by on_request
    const auto t0 = std::chrono::steady_clock::now();
    uint32_t status = wire::OK;
    std::string out;
    uint16_t route = 0;
    auto g = gate_of_conn_.find(rq.conn_id());
    const bool hello = g != gate_of_conn_.end();
    const uint64_t gate = hello ? g->second.gate : 0;
    std::function<void()> then;

    Reader r(body);
    const uint64_t uid = r.u64();
    const uint64_t session = r.u64();
    const std::string_view payload = r.rest();
    try {
        if (!hello) {
            coho_log_warn("connection %" PRIu64 ": request type %u before HELLO", rq.conn_id(),
                          h.type);
            status = wire::SERVER_ERROR;
        } else if (!r.ok()) {
            coho_log_warn("gateway %" PRIu64 ": request type %u with a %zu-byte body", gate, h.type,
                          body.size());
            status = wire::BAD_PAYLOAD;
        } else if (h.type != node::SESSION_END && cfg_.owns && g->second.lease != lease()) {
            if (stale_requests_++ % 1000 == 0)
                coho_log_warn("connection %" PRIu64 " of gateway %" PRIu64
                              ": opened under lease %" PRId64 ", the node holds %" PRId64
                              " now: request type %u refused (%" PRIu64 " so far)",
                              rq.conn_id(), gate, g->second.lease, lease(), h.type,
                              stale_requests_);
            status = wire::NO_NODE;
        } else if (h.type != node::SESSION_END && cfg_.owns && !owns(h, uid, payload)) {
            coho_log_debug("uid %" PRIu64 ": not this node's (cluster), type %u refused", uid,
                           h.type);
            status = wire::NO_NODE;
        } else if (h.type == node::LOAD) {
            status = player_load(*this, uid, session, gate);
        } else if (h.type == node::CALL) {
            route = uint16_t(h.arg);
            if (h.arg > UINT16_MAX) {
                status = wire::UNKNOWN_ROUTE;
            } else {
                Call c{uid, session, gate, route, payload, {}};
                status = dispatch_call(c, out);
                then = std::move(c.then);
            }
        } else if (h.type == node::SESSION_END) {
            // A late SESSION_END of an older session leaves the newer one alone.
            // Scenes keep the session that put each entity there, so that check is theirs.
            scene_session_end(*this, uid, session);
            if (player_session_end(*this, uid, session)) {
                coho_log_debug("session %" PRIu64 " of uid %" PRIu64 " ended", session, uid);
                chat_session_end(*this, uid, gate);
            } else {
                coho_log_info("SESSION_END of uid %" PRIu64 " session %" PRIu64
                              " ignored: a newer session is loaded",
                              uid, session);
            }
        } else {
            coho_log_warn("gateway %" PRIu64 ": unknown request type %u", gate, h.type);
            status = wire::BAD_PAYLOAD;
        }
    } catch (const std::exception &e) {
        coho_log_error("gateway %" PRIu64 " uid %" PRIu64 " type %u route %u: %s", gate, uid,
                       h.type, unsigned(route), e.what());
        status = wire::SERVER_ERROR;
    }
    if (status != wire::OK)
        out.clear();

    const auto us =
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0)
            .count();
    if (h.type == node::CALL) {
        RouteStats &st = route_stats(status == wire::UNKNOWN_ROUTE ? kOtherRoutes : int(route));
        st.calls.add(1);
        st.bytes_in.add(body.size() >= 16 ? body.size() - 16 : body.size()); // the payload
        st.bytes_out.add(out.size());
        if (status != wire::OK)
            st.errors.add(1);
        if (us > std::chrono::microseconds(kSlowCall).count())
            st.slow.add(1);
        st.latency.observe(double(us) / 1e6);
    }
    if (us > std::chrono::microseconds(kSlowCall).count())
        coho_log_warn("slow request: type %u route %u uid %" PRIu64
                      " took %lld us (status %u, coroutine %" PRIu64 ")",
                      h.type, unsigned(route), uid, static_cast<long long>(us), status,
                      coho_self());
    else
        coho_log_trace("request type %u route %u uid %" PRIu64 ": status %u in %lld us", h.type,
                       unsigned(route), uid, status, static_cast<long long>(us));
    try {
        rq.reply(node::frame(h.type | node::kResponseBit, h.seq, status, out));
    } catch (const std::system_error &e) {
        coho_log_info("reply to gateway %" PRIu64 " (type %u, uid %" PRIu64 ") lost: %s", gate,
                      h.type, uid, e.what());
    }
    if (then && status == wire::OK) {
        try {
            then();
        } catch (const std::exception &e) {
            coho_log_error("uid %" PRIu64 " route %u, after the reply: %s", uid, unsigned(route),
                           e.what());
        }
    }
}

bool Node::owns(const node::Header &h, uint64_t uid, std::string_view payload) const
{
    // Scene calls are routed by scene (game/common/scene_call.hpp): the node must own the scene,
    // whoever's uid it is. A payload without a scene id is refused by its route, if owned.
    uint32_t scene = 0;
    std::string pos;
    if (h.type == node::CALL && h.arg <= UINT16_MAX && is_scene_route(uint16_t(h.arg)) &&
        parse_scene_call(payload, &scene, &pos))
        return cfg_.owns("scene", scene);
    return cfg_.owns("uid", uid);
}

uint32_t Node::dispatch_call(const Call &c, std::string &out)
{
    auto it = routes_.find(c.route);
    if (it == routes_.end()) {
        coho_log_info("uid %" PRIu64 ": unknown route %u", c.uid, unsigned(c.route));
        return wire::UNKNOWN_ROUTE;
    }
    return it->second(*this, c, out);
}

void Node::send_to_gate(uint64_t gate, const std::string &frame)
{
    // The first connection of the gateway carries its pushes, so they arrive in the order
    // they were sent; when it breaks, the next one takes over.
    for (;;) {
        auto g = gates_.find(gate);
        if (g == gates_.end() || g->second.conns.empty()) {
            pushes_dropped_++;
            coho_log_warn("push to gateway %" PRIu64 " dropped: no connection to it", gate);
            return;
        }
        const uint64_t conn = g->second.conns.front();
        if (coho_tdp_send(pool_.native_handle(), conn, 0, frame.data(), frame.size()) == 0) {
            pushes_sent_++;
            return;
        }
        const int err = errno;
        coho_log_warn("push to gateway %" PRIu64 " on connection %" PRIu64 ": %s", gate, conn,
                      strerror(err));
        // Drop the broken connection from the gateway now (on_conn_delete may come later).
        g = gates_.find(gate);
        if (g != gates_.end() && !g->second.conns.empty() && g->second.conns.front() == conn)
            g->second.conns.erase(g->second.conns.begin());
    }
}

void Node::push_uids(uint64_t gate, uint16_t route, const std::vector<uint64_t> &uids,
                     std::string_view payload)
{
    if (uids.empty())
        return;
    std::string body;
    body.reserve(4 + 8 * uids.size() + payload.size());
    put_u32(body, uint32_t(uids.size()));
    for (uint64_t u : uids)
        put_u64(body, u);
    body.append(payload);
    send_to_gate(gate, node::frame(node::PUSH_UIDS, 0, route, body));
}

void Node::push_group_all(uint16_t route, std::string_view group, std::string_view payload)
{
    std::string body;
    put_u16(body, uint16_t(group.size()));
    body.append(group);
    body.append(payload);
    const std::string f = node::frame(node::PUSH_GROUP, 0, route, body);
    // A group lives in every gateway: its members may be on any of them.
    std::vector<uint64_t> ids;
    for (auto &g : gates_)
        ids.push_back(g.first);
    for (uint64_t gate : ids)
        send_to_gate(gate, f);
}

void Node::group_join(uint64_t gate, uint64_t uid, std::string_view group)
{
    send_to_gate(gate, node::frame(node::GROUP_JOIN, 0, 0, node::uid_group(uid, group)));
}

void Node::group_leave(uint64_t gate, uint64_t uid, std::string_view group)
{
    send_to_gate(gate, node::frame(node::GROUP_LEAVE, 0, 0, node::uid_group(uid, group)));
}

void Node::log_stats() const
{
    for (auto &[route, st] : stats_)
        coho_log_info("route %u: %" PRIu64 " calls, %" PRIu64 " errors, %" PRIu64 " slow, %" PRIu64
                      " bytes in, %" PRIu64 " bytes out",
                      unsigned(route), st.calls.value(), st.errors.value(), st.slow.value(),
                      st.bytes_in.value(), st.bytes_out.value());
    coho_log_info("pushes: %" PRIu64 " sent, %" PRIu64 " dropped; malformed frames: %" PRIu64
                  "; db: %u connections, %" PRIu64 " errors",
                  pushes_sent_, pushes_dropped_, bad_frames_, db_.open_count(), db_.error_count());
}

// ---- the schema-free test routes ----

uint32_t echo(Node &, const Call &c, std::string &out)
{
    out.assign(c.payload);
    return wire::OK;
}

uint32_t push_self(Node &n, const Call &c, std::string &)
{
    Reader r(c.payload);
    const uint32_t k = r.u32();
    if (!r.ok() || r.left() != 0 || k > n.config().max_push_self)
        return wire::BAD_PAYLOAD;
    // The response first, then the pushes (DESIGN.md's route table).
    c.then = [&n, uid = c.uid, gate = c.gate, k] {
        const std::vector<uint64_t> to{uid};
        for (uint32_t i = 1; i <= k; i++) {
            std::string p;
            put_u32(p, i);
            n.push_uids(gate, wire::R_PUSH_SELF, to, p);
        }
    };
    return wire::OK;
}

} // namespace coho::game::logic
