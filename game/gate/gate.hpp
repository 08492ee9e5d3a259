// SPDX-License-Identifier: MIT
// coho-gate: the game gateway (game/README.md, DESIGN.md "Wire format of the game protocol").
//
// One scheduler thread per --threads ("shard"). Each shard runs its own TCP and WebSocket
// servers (net/, sharing the ports with SO_REUSEPORT), its own socket_ext pools to every logic
// node, and one coroutine per client connection. What spans shards is the session table
// (sessions.cpp, one mutex, never held across a park) and the counters.
//
// Files, one feature each:
//   main.cpp      command line, threads, signals, shutdown
//   shard.cpp     a shard's life: node links, servers, the grace janitor, the stop
//   admission.cpp who may connect: allow/deny lists, connection limits
//   client.cpp    a connection's read loop: frame checks, kicks, dispatch
//   login.cpp     LOGIN, LOGOUT
//   rebind.cpp    REBIND, ACK
//   route.cpp     CALL, and the node links (rendezvous on uid, timeouts)
//   scenes.cpp    scene calls: routed by scene id, the sessions' seats, re-entry, leaving
//   push.cpp      what nodes send: pushes to uids, groups, everyone; group membership
//   sessions.cpp  the session table, the replay cache and ordered delivery
//   admin.cpp     the metrics registry's series and the /stats sections (net/'s admin server)
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <coho.hpp>
#include <coho/net.hpp>

#include "wire.hpp"

namespace coho::game::gate {

struct Config {
    std::string listen, ws_listen, ws_path, admin, secret, tls_cert, tls_key;
    std::string allow_file, deny_file; // CIDR lists, reloaded on SIGHUP
    std::vector<std::string> logic;    // HOST:PORT of every logic node
    std::vector<std::string> etcd;     // with --etcd: the logic nodes are found there instead
    std::string cluster = "coho";
    uint64_t lease_ttl_s = 5;
    uint64_t gate_id = 0;
    unsigned threads = 1;
    uint64_t heartbeat_ms = 10000, idle_ms = 20000;
    uint64_t max_conns = 100000, per_ip_max = 0;
    uint64_t max_frame = wire::kDefaultMaxFrame, send_queue_bytes = 1 << 20;
    uint64_t rate_limit = 0;
    uint64_t replay_pushes = 256, replay_bytes = 256 << 10, grace_ms = 30000;
    uint64_t call_timeout_ms = 3000, node_conns = 2;
    uint64_t sndbuf = 0; // SO_SNDBUF of client sockets; 0: the kernel's
    bool stats = true;   // per-route and per-connection accounting (--no-stats: off)
};

// Counters, all shards (admin.cpp registers them as callback series of Gate::metrics).
struct Counters {
    std::atomic<uint64_t> accepted{0}, conns_open{0}, refused{0};
    std::atomic<uint64_t> logins{0}, login_failures{0}, logouts{0};
    std::atomic<uint64_t> rebinds{0}, rebind_failures{0};
    std::atomic<uint64_t> calls{0}, call_failures{0}, call_timeouts{0};
    std::atomic<uint64_t> pings{0}, acks{0}, protocol_errors{0};
    std::atomic<uint64_t> node_frames{0}, node_bad_frames{0};
    std::atomic<uint64_t> pushes{0}, push_drops{0}, sessions_expired{0};
    std::atomic<uint64_t> scene_bad_calls{0}; // scene calls without a valid scene id (status 6)
    std::atomic<uint64_t> scene_reentries{0}; // entities entered again where their scene moved
    std::atomic<uint64_t> kicks[8] = {};
};

// Calls of one route (route.cpp counts into these series of Gate::metrics). Latency is measured
// at the gateway: from the CALL read to its answer queued.
constexpr double kLatencyBounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                     0.025,  0.05,    0.1,    0.25,  0.5,    1.0,   2.5};
constexpr int64_t kSlowCallUs = 50000; // logged, with the coroutine id (coho-trace)
struct RouteStat {
    coho::net::Counter calls, errors, slow, bytes_in, bytes_out;
    coho::net::Histogram latency;
};
constexpr int kOtherRoutes = -1; // the key of routes nodes do not know (status 5)

// An address block: 16 bytes (IPv4 as ::ffff:a.b.c.d) and a prefix length over them.
struct Cidr {
    unsigned char addr[16] = {};
    unsigned bits = 0;
};

// A session's entity in a scene: the node that holds it (its address and registration: the
// scene's owner when the session last called it) and the bytes of its last position (a Pos
// message, game.proto).
struct SceneSeat {
    std::string node;
    int64_t lease = 0; // cluster::NodeInfo::lease
    std::string pos;
};

// A player's session: outlives its connection for --grace-ms so that REBIND can move it to a
// new one. Every field is guarded by Gate::mu.
struct Session {
    uint64_t uid = 0, id = 0;
    std::string key;       // resume key, wire::kResumeKeyLen bytes
    uint64_t conn_id = 0;  // 0 while no connection holds it
    unsigned shard = 0;    // the shard of conn_id (or of the last one)
    uint32_t push_seq = 0; // the last push's seq
    uint32_t sent_seq = 0; // the last push handed to the connection
    std::deque<std::pair<uint32_t, std::string>> replay; // (seq, PUSH frame), oldest first
    size_t replay_bytes = 0;
    int64_t detached_ms = 0;
    bool ended = false;
    bool flush_pending = false;
    std::unordered_set<std::string> groups;
    // The scenes the session entered (scenes.cpp): where its entity lives and where it last
    // stood, so that its session end leaves them and a scene that moved gets it back.
    std::map<uint32_t, SceneSeat> scenes;
};
using SessionPtr = std::shared_ptr<Session>;

class NodeLinks; // route.cpp
struct Shard;    // shard.cpp

// A connection's traffic, readable from any thread (admin.cpp's "conns" section of /stats).
struct ConnTraffic {
    uint64_t id = 0;
    unsigned shard = 0;
    bool ws = false;
    std::string peer;
    int64_t since_ms = 0;
    std::atomic<uint64_t> uid{0}; // 0 until a LOGIN or REBIND
    std::atomic<uint64_t> frames_in{0}, bytes_in{0}, frames_out{0}, bytes_out{0};
};

// A client connection as its handler coroutine holds it (client.cpp).
struct Client {
    coho::net::Conn &conn;
    Shard &shard;
    bool ws;
    SessionPtr session;
    bool done = false;   // the read loop ends after this frame
    bool kicked = false; // a KICK went out: nothing more is sent
    std::shared_ptr<unsigned> calls_in_flight = std::make_shared<unsigned>(0);
    std::shared_ptr<ConnTraffic> traffic = std::make_shared<ConnTraffic>();

    // Queues `frame`; false when the connection is going. A frame that would take the send
    // queue past --send-queue-bytes (less the room kept for the KICK) kicks the connection
    // instead: KICK 3, slow consumer.
    bool send(std::string_view frame);
    // KICK `reason` and end the read loop; the connection closes once it has left.
    void kick(uint32_t reason);
    // A protocol error: counted, KICK 4, the connection closes; nothing else is touched.
    void protocol_error(const char *what);
};

struct Shard {
    unsigned index = 0;
    coho_sched_t *sched = nullptr; // set before the shard serves; cleared under Gate::mu
    std::unique_ptr<NodeLinks> links;
    std::unordered_map<uint64_t, Client *> clients; // this shard's connections, by conn id
    // Sampled by the shard's janitor for the admin port (coho_sched_get_stats is for the
    // scheduler's own thread).
    std::atomic<uint64_t> coroutines{0}, user_coroutines{0}, conns{0}, cbuf_idle_bytes{0};
};

struct Gate {
    Config cfg;
    Counters stats;
    std::vector<std::unique_ptr<Shard>> shards;

    std::mutex mu; // the sessions and groups below
    std::unordered_map<uint64_t, SessionPtr> by_uid, by_id;
    std::unordered_map<std::string, std::unordered_set<uint64_t>> groups; // name -> uids

    std::mutex ip_mu; // --per-ip-max, --allow, --deny
    std::unordered_map<std::string, uint64_t> per_ip;
    std::vector<Cidr> allow, deny;

    std::mutex conns_mu; // every admitted client connection's traffic
    std::unordered_map<uint64_t, std::shared_ptr<ConnTraffic>> conns;

    // The registry the admin port serves (/metrics, and "metrics" in /stats); created before
    // the shards start, destroyed after they stop.
    std::unique_ptr<coho::net::Metrics> metrics;
    std::mutex route_mu;
    std::map<int, RouteStat> routes; // by route number, or kOtherRoutes: the series' handles
};

Gate &gate();
Shard *this_shard(); // the calling thread's shard, or nullptr
void set_this_shard(Shard *s);
int64_t now_ms();

// admission.cpp: --max-conns, --per-ip-max, --allow, --deny, held for a connection's life.
class Admission {
public:
    explicit Admission(coho::net::Conn &conn);
    ~Admission();
    Admission(const Admission &) = delete;
    Admission &operator=(const Admission &) = delete;
    bool ok() const { return ok_; }
    const std::string &peer() const { return peer_; }

private:
    std::string peer_; // the peer's address, as text
    std::string ip_;   // counted in per_ip
    bool ok_ = false;
};
bool parse_cidr(const std::string &s, Cidr *out);
// (Re)loads --allow and --deny; false with *err (the lists in force stay) on a bad file.
bool load_acl(std::string *err);

// client.cpp
void serve_client(coho::net::Conn &conn, Shard &shard, bool ws);
// KICK `reason` to connection `conn_id` of shard `shard` and close it, from any thread.
void kick_conn(unsigned shard, uint64_t conn_id, uint32_t reason);
// Client::send to connection `conn_id` of the calling shard; false when it is gone.
bool send_to_client(uint64_t conn_id, std::string_view frame);

// login.cpp
void login(Client &c, uint32_t seq, std::string_view body);
void logout(Client &c, uint32_t seq);

// rebind.cpp
void rebind(Client &c, uint32_t seq, std::string_view body);
void ack(Client &c, std::string_view body);

// route.cpp
void call(Client &c, uint32_t seq, std::string_view body);

// scenes.cpp: routes 30-32, routed by scene id (game/common/scene_call.hpp).
struct NodeReply {
    uint32_t status = wire::OK;
    std::string payload;
};
NodeReply scene_call(NodeLinks &links, const SessionPtr &s, uint16_t route,
                     std::string_view payload);
// After the session ended (its scenes were taken out of it): each scene's node is told to
// take the session's entity out. In a coroutine of the calling shard.
void leave_scenes(NodeLinks &links, uint64_t uid, uint64_t sid,
                  const std::map<uint32_t, SceneSeat> &seats);

// sessions.cpp
SessionPtr start_session(uint64_t uid, uint64_t sid, Client &c);
void end_session(const SessionPtr &s); // logout: tells the node
void detach_session(Client &c);        // the connection dropped: the grace period starts
void expire_sessions(Shard &shard);    // ends this shard's sessions past their grace
void push_to(const SessionPtr &s, uint16_t route, std::string_view payload); // any thread
std::string random_bytes(size_t n);

// push.cpp: a request frame a node sent on one of this shard's links.
void on_node_frame(std::string_view frame);

// admin.cpp
// Registers the gateway's counters, gauges and per-shard figures into `m` as callback series
// (read at each scrape). After the shards are created, before they start.
void register_metrics(coho::net::Metrics &m);
// The series of route `key` (a route number or kOtherRoutes), created on first use. Any thread.
RouteStat route_stat(int key);
// Adds the /stats sections: "gate" (the counters above, flat) and "conns" (the busiest
// connections).
void add_stats_sections(coho::net::Admin &a);

} // namespace coho::game::gate
