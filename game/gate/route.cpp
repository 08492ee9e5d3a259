// SPDX-License-Identifier: MIT
// CALL: a client's request goes to the logic node that owns its uid (a scene call: its scene,
// scenes.cpp) and the answer comes back with the client's seq. Each CALL runs in a coroutine of its
// own (up to kCallsInFlight per connection; past that the connection's reads wait for the call), so
// a slow route never holds up the connection's other calls. Also the node links (links.hpp).
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cinttypes>
#include <stdexcept>

#include <coho/socket_ext.hpp>

#include "bytes.hpp"
#include "links.hpp"
#include "node.hpp"
#include "rendezvous.hpp"
#include "scene_call.hpp"

namespace coho::game::gate {

namespace {

constexpr unsigned kCallsInFlight = 64;

// The answer's frame (wire::frame of the status and the payload) in one allocation, without
// an intermediate body.
std::string ok_response(uint16_t type, uint32_t seq, std::string_view payload)
{
    std::string f;
    f.reserve(wire::kHeaderLen + 4 + payload.size());
    put_u32(f, uint32_t(8 + 4 + payload.size()));
    put_u16(f, uint16_t(type | wire::kResponse));
    put_u16(f, 0);
    put_u32(f, seq);
    put_u32(f, wire::OK);
    f.append(payload);
    return f;
}

// The answer to a CALL, from a coroutine of the connection's shard.
void answer(uint64_t conn_id, const NodeLinks::Reply &r, uint32_t seq)
{
    std::string f = r.status == wire::OK ? ok_response(wire::CALL, seq, r.payload)
                                         : wire::error_response(wire::CALL, seq, r.status);
    send_to_client(conn_id, f);
}

int64_t now_us()
{
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

void count_route(uint16_t route, size_t in, const NodeLinks::Reply &r, int64_t us)
{
    RouteStat s = route_stat(r.status == wire::UNKNOWN_ROUTE ? kOtherRoutes : int(route));
    s.calls.add();
    if (r.status != wire::OK)
        s.errors.add();
    if (us > kSlowCallUs)
        s.slow.add();
    s.bytes_in.add(in);
    s.bytes_out.add(r.payload.size());
    s.latency.observe(double(us) / 1e6);
}

// Slow calls are all counted (per route) but logged at most kSlowLogsPerSecond a second per
// thread: under overload nearly every call is slow, and a line each (a write(2) on the shard's
// thread when the log goes to stderr) would feed the overload. The first slow call of a later
// second says how many lines the previous one left out.
constexpr int kSlowLogsPerSecond = 10;

struct SlowLog {
    int64_t second = -1;
    int logged = 0;
    uint64_t left_out = 0;
};
thread_local SlowLog slow_log;

void log_slow(uint16_t route, uint64_t uid, uint32_t seq, int64_t us, uint32_t status, int64_t now)
{
    SlowLog &l = slow_log;
    if (now / 1000000 != l.second) {
        if (l.left_out > 0)
            coho_log_warn("gate: %llu more slow calls not logged in the second before",
                          (unsigned long long)l.left_out);
        l = {now / 1000000, 0, 0};
    }
    if (l.logged >= kSlowLogsPerSecond) {
        l.left_out++;
        return;
    }
    l.logged++;
    coho_log_warn("gate: slow call: route %u uid %llu seq %u took %lld us, status %u",
                  unsigned(route), (unsigned long long)uid, seq, (long long)us, status);
}

// One CALL, start to end: ask the node (by uid; scene calls by scene id), count, answer.
void routed(NodeLinks &links, const SessionPtr &s, uint64_t conn_id, uint32_t seq, uint16_t route,
            std::string_view payload)
{
    const uint64_t uid = s->uid;
    int64_t t0 = now_us();
    NodeLinks::Reply r = is_scene_route(route) ? scene_call(links, s, route, payload)
                                               : links.call(uid, s->id, route, payload);
    int64_t t1 = now_us(), us = t1 - t0;
    if (us > kSlowCallUs)
        log_slow(route, uid, seq, us, r.status, t1);
    if (gate().cfg.stats)
        count_route(route, payload.size(), r, us);
    answer(conn_id, r, seq);
}

} // namespace

void call(Client &c, uint32_t seq, std::string_view body)
{
    Reader r(body);
    uint16_t route = r.u16();
    if (!r.ok())
        return c.protocol_error("CALL body shorter than its route");
    if (!c.session) {
        c.send(wire::error_response(wire::CALL, seq, wire::UNKNOWN_SESSION));
        return;
    }
    gate().stats.calls++;
    uint64_t conn_id = c.conn.id();
    NodeLinks &links = *c.shard.links;
    if (*c.calls_in_flight >= kCallsInFlight)
        return routed(links, c.session, conn_id, seq, route, r.rest());
    ++*c.calls_in_flight;
    coho_spawn_opts_t so;
    coho_spawn_opts_init(&so);
    so.detached = true; // nobody joins it: a joinable one would keep its record forever
    so.name = "gate.call";
    coho::spawn(so, [&links, session = c.session, conn_id, seq, route,
                     payload = std::string(r.rest()), in_flight = c.calls_in_flight] {
        routed(links, session, conn_id, seq, route, payload);
        --*in_flight;
    });
}

// ---- the node links ------------------------------------------------------------------------

namespace {

// Every connection of a pool starts with HELLO, so the node knows which gateway it serves.
void on_link_new(coho_tdp_pool_t *p, uint64_t conn_id, void *user)
{
    uint64_t gate_id = *static_cast<uint64_t *>(user);
    coho_tdp_for_each_conn(
        p,
        [](uint64_t id, int fd, void *want) {
            if (id == *static_cast<uint64_t *>(want)) {
                int one = 1;
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            }
        },
        &conn_id);
    uint64_t req = coho_tdp_req_id(p);
    std::string body;
    put_u64(body, gate_id);
    std::string f = node::frame(node::HELLO, req, 0, body);
    if (req == 0 || coho_tdp_send(p, conn_id, req, f.data(), f.size()) != 0) {
        coho_log_warn("gate: HELLO on node link %llu failed: %s", (unsigned long long)conn_id,
                      strerror(errno));
        if (req != 0)
            coho_tdp_req_release(p, req);
        return;
    }
    coho_tdp_req_release(p, req); // the answer carries nothing; it is dropped when it comes
}

// A push, or a group change, from a node. The yield first lets the CALLs whose answers came in
// the same read send them, so that what a node sends after an answer, on the link it answered
// on, reaches the client after that answer (push.self: the answer, then the pushes).
void on_link_frame(coho_tdp_req_t *req, void *)
{
    coho::tdp::Request rq(req);
    coho_yield();
    on_node_frame(rq.frame());
}

void on_link_delete(coho_tdp_pool_t *, uint64_t conn_id, int err, void *)
{
    coho_log_warn("gate: node link %llu lost: %s", (unsigned long long)conn_id, strerror(err));
}

} // namespace

void NodeLinks::start(const Config &cfg, int64_t wait_ms)
{
    timeout_ms_ = int64_t(cfg.call_timeout_ms);
    gate_id_ = cfg.gate_id;
    node_conns_ = unsigned(cfg.node_conns);
    for (const std::string &addr : cfg.logic)
        add(addr);
    wait_up(wait_ms);
}

void NodeLinks::wait_up(int64_t wait_ms)
{
    int64_t deadline = now_ms() + wait_ms; // one wait for all: down nodes do not add up
    for (auto &n : nodes_)
        if (coho_tdp_pick(n->pool, std::max<int64_t>(0, deadline - now_ms())) == 0)
            coho_log_warn("gate: logic node %s is not up yet", n->addr.c_str());
}

void NodeLinks::add(const std::string &addr, int64_t lease)
{
    auto n = std::make_unique<Node>();
    n->addr = addr;
    n->lease = lease;
    auto colon = addr.rfind(':');
    std::string host = addr.substr(0, colon), port = addr.substr(colon + 1);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    addrinfo hints{}, *res = nullptr;
    hints.ai_socktype = SOCK_STREAM;
    if (colon == std::string::npos || getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0 ||
        res == nullptr)
        throw std::runtime_error("logic node '" + addr + "' does not resolve");
    n->max_body = wire::kDefaultMaxFrame * 16;
    coho_sock_framer_init(&n->framer, &n->max_body);
    coho_tdp_opts_t o;
    coho_tdp_opts_init(&o);
    o.framers[0] = &n->framer;
    o.framer_count = 1;
    o.max_frame_len = n->max_body + COHO_SOCK_HDR_LEN;
    o.conn_count = node_conns_;
    o.connect_timeout_ms = 1000;
    o.reconnect_min_ms = 20;
    o.reconnect_max_ms = 1000;
    o.max_conn_reqs = 0; // pushes are applied as they arrive: no backpressure needed
    o.max_conn_req_len = 0;
    o.on_req = on_link_frame;
    o.on_conn_new = on_link_new;
    o.on_conn_delete = on_link_delete;
    o.user = &gate_id_;
    n->pool = coho_tdp_connect(res->ai_addr, res->ai_addrlen, &o);
    int err = errno;
    freeaddrinfo(res);
    if (n->pool == nullptr)
        throw std::runtime_error("logic node '" + addr + "': " + strerror(err));
    hashes_.push_back(fnv1a(addr));
    nodes_.push_back(std::move(n));
}

void NodeLinks::set_nodes(const std::vector<cluster::NodeInfo> &nodes)
{
    auto find = [&](const std::string &addr) {
        return std::find_if(nodes.begin(), nodes.end(),
                            [&](const cluster::NodeInfo &n) { return n.addr == addr; });
    };
    // Gone first: requests in flight to them wake with an error and answer NO_NODE. A node at
    // the same address under a new lease (it lost its lease and registered again, or it
    // restarted) is a new node: the links of the old one close with their requests, and the
    // node refuses what still comes on them (its scenes and players of the old lease are gone;
    // a call written before it stopped must not run after it came back).
    for (size_t i = nodes_.size(); i-- > 0;) {
        if (auto it = find(nodes_[i]->addr); it != nodes.end()) {
            if (it->lease == nodes_[i]->lease)
                continue;
            coho_log_info("gate: logic node %s registered again (lease %" PRId64 ", was %" PRId64
                          "): its links open again",
                          it->addr.c_str(), it->lease, nodes_[i]->lease);
        } else {
            coho_log_info("gate: logic node %s left", nodes_[i]->addr.c_str());
        }
        std::unique_ptr<Node> gone = std::move(nodes_[i]);
        nodes_.erase(nodes_.begin() + long(i));
        hashes_.erase(hashes_.begin() + long(i));
        if (gone->pool != nullptr)
            coho_tdp_close(gone->pool);
    }
    for (const auto &a : nodes) {
        bool have = false;
        for (auto &n : nodes_)
            have = have || n->addr == a.addr;
        if (have)
            continue;
        try {
            add(a.addr, a.lease);
            coho_log_info("gate: logic node %s joined (lease %" PRId64 ")", a.addr.c_str(),
                          a.lease);
        } catch (const std::exception &e) {
            coho_log_warn("gate: %s", e.what());
        }
    }
}

void NodeLinks::close()
{
    for (auto &n : nodes_)
        if (n->pool != nullptr)
            coho_tdp_close(std::exchange(n->pool, nullptr));
}

int NodeLinks::pick(uint64_t key, uint64_t *conn) const
{
    std::vector<bool> up(nodes_.size());
    std::vector<uint64_t> c(nodes_.size());
    for (size_t i = 0; i < nodes_.size(); i++) {
        c[i] = nodes_[i]->pool ? coho_tdp_pick(nodes_[i]->pool, 0) : 0;
        up[i] = c[i] != 0;
    }
    int i = rendezvous_pick(hashes_, up, key);
    if (i >= 0 && conn != nullptr)
        *conn = c[size_t(i)];
    return i;
}

cluster::NodeInfo NodeLinks::owner(uint64_t key) const
{
    int i = pick(key, nullptr);
    if (i < 0)
        return {};
    return {nodes_[size_t(i)]->addr, nodes_[size_t(i)]->lease};
}

NodeLinks::Reply NodeLinks::request(uint32_t type, uint32_t arg, uint64_t uid,
                                    const std::string &body)
{
    uint64_t conn = 0;
    int i = pick(uid, &conn);
    if (i < 0)
        return {wire::NO_NODE, {}};
    return request_at(size_t(i), conn, type, arg, body);
}

NodeLinks::Reply NodeLinks::request_at(size_t i, uint64_t conn, uint32_t type, uint32_t arg,
                                       const std::string &body)
{
    coho_tdp_pool_t *p = nodes_[i]->pool;
    uint64_t id = coho_tdp_req_id(p);
    if (id == 0)
        return {wire::NO_NODE, {}};
    std::string f = node::frame(type, id, arg, body);
    coho::tdp::Buffer resp;
    // One park for the send and the answer; the id is released either way.
    if (coho_tdp_call(p, conn, id, f.data(), f.size(), timeout_ms_, resp.native_handle()) != 0) {
        if (errno == ETIMEDOUT) {
            gate().stats.call_timeouts++;
            return {wire::TIMEOUT, {}};
        }
        return {wire::NO_NODE, {}};
    }
    std::string whole = resp.str();
    node::Header h;
    std::string_view rbody;
    if (!node::parse(whole, &h, &rbody) || h.type != (type | node::kResponseBit)) {
        gate().stats.node_bad_frames++;
        return {wire::SERVER_ERROR, {}};
    }
    return {h.arg, std::string(rbody)};
}

NodeLinks::Reply NodeLinks::call(uint64_t uid, uint64_t session, uint16_t route,
                                 std::string_view payload)
{
    Reply r = request(node::CALL, route, uid, node::uid_session(uid, session, payload));
    if (r.status != wire::OK)
        gate().stats.call_failures++;
    return r;
}

NodeLinks::Reply NodeLinks::call_at(const std::string &addr, uint64_t uid, uint64_t session,
                                    uint16_t route, std::string_view payload)
{
    Reply r{wire::NO_NODE, {}};
    for (size_t i = 0; i < nodes_.size(); i++) {
        if (nodes_[i]->addr != addr)
            continue;
        uint64_t conn = nodes_[i]->pool ? coho_tdp_pick(nodes_[i]->pool, 0) : 0;
        if (conn != 0)
            r = request_at(i, conn, node::CALL, route, node::uid_session(uid, session, payload));
        break;
    }
    return r;
}

uint32_t NodeLinks::load(uint64_t uid, uint64_t session)
{
    return request(node::LOAD, 0, uid, node::uid_session(uid, session)).status;
}

void NodeLinks::session_end(uint64_t uid, uint64_t session)
{
    Reply r = request(node::SESSION_END, 0, uid, node::uid_session(uid, session));
    if (r.status != wire::OK)
        coho_log_warn("gate: SESSION_END of uid %llu session %llu: status %u",
                      (unsigned long long)uid, (unsigned long long)session, r.status);
}

} // namespace coho::game::gate
