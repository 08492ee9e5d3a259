// SPDX-License-Identifier: MIT
// The logic node: a socket_ext listen pool that gateways connect to (game/common/node.hpp is
// the protocol). Every request runs in a coroutine of its own as straight-line code; the game
// rules live in one file per feature (player.cpp, chat.cpp, scene.cpp), this class holds what
// they share: the gateways, the pushes, the database, and the state of each feature.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <coho.hpp>
#include <coho/net.hpp>
#include <coho/socket_ext.hpp>

#include "game/common/node.hpp"
#include "game/common/wire.hpp"
#include "game/logic/aoi.hpp"
#include "game/logic/aoi_batch.hpp"
#include "game/logic/db.hpp"
#include "game/logic/persist.hpp"

namespace coho::game::logic {

struct Config {
    std::string listen_ip = "127.0.0.1";
    uint16_t listen_port = 0;
    uint64_t node_id = 1;
    int32_t aoi_cell = 100;     // units per AOI cell side
    int32_t scene_size = 10000; // scenes span 0..scene_size-1 on both axes
    // How often the observers of a scene are told what changed in their view (one push per
    // observer per tick); 0: before the reply of each scene call, no batching.
    std::chrono::milliseconds aoi_tick{50};
    uint32_t max_push_self = 4096; // largest k of route 2
    // How long a gateway may stay without a connection before its sessions are ended here
    // (players unloaded, entities taken out of scenes with LEAVE pushes).
    std::chrono::milliseconds gate_grace{30000};
    DbConfig db;
    PersistConfig persist;
    // Cluster fencing (cluster.hpp): LOAD and CALL for what this says the node does not own
    // (`kind` "uid" and the uid; "scene" and the scene id for scene calls, which gateways route
    // by scene) are answered NO_NODE. Empty: everything is this node's.
    std::function<bool(const char *kind, uint64_t id)> owns;
    // The lease the node holds now (cluster.hpp); 0 without a cluster. A scene kept from an
    // earlier lease is stale (the gateways moved it away while the node had none) and starts
    // empty at its next call.
    std::function<int64_t()> lease;
};

// One CALL as the feature code sees it.
struct Call {
    uint64_t uid = 0;
    uint64_t session = 0;
    uint64_t gate = 0; // the gateway holding the caller's session
    uint16_t route = 0;
    std::string_view payload;
    // Work to do once the reply is sent (route 2's pushes follow its response).
    mutable std::function<void()> then;
};

class Node;

// A route: fills `out` with the response payload and returns a wire::Status.
using Handler = uint32_t (*)(Node &n, const Call &c, std::string &out);

// A player loaded on this node (player.cpp). `mu` serialises the player's changes; saves are
// written behind by the Store (persist.hpp), and each change carries a version.
struct Player {
    uint64_t uid = 0;
    uint64_t session = 0;
    uint64_t gate = 0;
    int64_t counter = 0;
    std::string name;
    uint32_t logins = 0;
    bool loaded = false;
    uint64_t version = 0;       // bumped by every change
    uint64_t saved_version = 0; // durable (in the database or the journal) up to this one
    int64_t saved_counter = 0;  // what saved_version holds
    std::string saved_name;
    uint64_t failed_version = 0; // the changes up to this one could not be saved
    uint32_t failed_status = 0;  // and the status their callers got
    bool dirty = false;          // in the Store's dirty set
    int64_t lease = 0;           // the node's lease when it was loaded (Config::lease)
    coho::Mutex mu;
};

// A scene this node owns (scene.cpp): the AOI grid, per entity the gateway to push to and the
// session that put it there, and what its observers are still to be told at the next tick.
struct Scene {
    Scene(int32_t cell, aoi::Area area, int64_t lease_) : grid(cell, area), lease(lease_) {}
    aoi::Grid grid;
    std::unordered_map<uint64_t, uint64_t> gate_of;
    std::unordered_map<uint64_t, uint64_t> session_of;
    int64_t lease = 0; // the node's lease when the scene was made (Config::lease)
    aoi::Batches pending;
    bool ticking = false; // its tick coroutine runs (it flushes `pending`, then ends when idle)
};

// Per-route series in the node's registry (stats.cpp), created at a route's first call.
struct RouteStats {
    static constexpr uint64_t kBucketsUs[] = {100,   250,   500,   1000,   2500,   5000,
                                              10000, 25000, 50000, 100000, 250000, 1000000};
    coho::net::Counter calls;
    coho::net::Counter errors; // replies whose status is not OK
    coho::net::Counter slow;   // took more than kSlowCall
    coho::net::Counter bytes_in;
    coho::net::Counter bytes_out;
    coho::net::Histogram latency; // seconds
};

class Node {
public:
    static constexpr std::chrono::milliseconds kSlowCall{50};
    static constexpr int kOtherRoutes = -1; // the stats key of calls to routes not served

    // `sched`: the scheduler of the calling thread, where requests get their coroutines.
    Node(Config cfg, coho::Scheduler &sched);
    ~Node();
    Node(const Node &) = delete;
    Node &operator=(const Node &) = delete;

    // Starts listening. Inside a coroutine. Throws std::system_error (EADDRINUSE, ...).
    void start();
    // Stops accepting and closes every gateway connection; requests being handled finish
    // (their replies fail). Inside a coroutine.
    void stop();
    uint16_t port() const { return pool_.local_port(); }

    // Logs the per-route counters (info level).
    void log_stats() const;
    // The node's metrics registry, for net/'s admin server (GET /metrics). Some series are read
    // from the node's state when the registry is rendered, so render it (run the admin server)
    // on the node's scheduler only.
    coho::net::Metrics &metrics() { return metrics_; }
    // The node's summary as one JSON object (the "logic" section of GET /stats). On the node's
    // scheduler.
    void stats_json(coho::net::Json &j) const;

    const Config &config() const { return cfg_; }
    int64_t lease() const { return cfg_.lease ? cfg_.lease() : 0; }
    bool stopping() const { return stopping_; }
    coho::Scheduler &scheduler() { return sched_; }
    Db &db() { return db_; }
    Store &store() { return store_; }

    // ---- pushes (one-way frames to a gateway, on the one connection kept per gateway) ----
    void push_uids(uint64_t gate, uint16_t route, const std::vector<uint64_t> &uids,
                   std::string_view payload);
    void push_group_all(uint16_t route, std::string_view group, std::string_view payload);
    void group_join(uint64_t gate, uint64_t uid, std::string_view group);
    void group_leave(uint64_t gate, uint64_t uid, std::string_view group);

    // ---- feature state ----
    std::unordered_map<uint64_t, std::shared_ptr<Player>> players;
    std::unordered_map<uint64_t, std::set<std::string>> channels_of; // uid -> chat channels
    std::unordered_map<std::string, uint64_t> channel_msg_id;        // last msg_id per channel
    std::map<uint32_t, std::unique_ptr<Scene>> scenes;
    std::unordered_map<uint64_t, std::set<uint32_t>> scenes_of; // uid -> scenes it is in

    uint64_t pushes_sent() const { return pushes_sent_; }
    uint64_t pushes_dropped() const { return pushes_dropped_; }

private:
    struct Gate {
        std::vector<uint64_t> conns; // HELLO'd connections; front() carries the pushes
    };
    // A gateway's connection after its HELLO.
    struct Link {
        uint64_t gate = 0;
        // The node's lease at the HELLO. Under another lease the connection's requests are
        // refused (NO_NODE): they were written to the node it was before (a gateway moved its
        // uids and scenes away when that lease ended, and opens new links to the node it is now).
        int64_t lease = 0;
    };

    void on_request(coho::tdp::Request rq);
    void serve(coho::tdp::Request rq); // the request's own coroutine
    uint32_t dispatch_call(const Call &c, std::string &out);
    // Cluster fencing of one request (Config::owns): the scene of a scene call, else the uid.
    bool owns(const node::Header &h, uint64_t uid, std::string_view payload) const;
    void send_to_gate(uint64_t gate, const std::string &frame);
    void on_conn_delete(uint64_t conn, int err);
    // After gate_grace without a connection of `gate`: ends every session it held here.
    void expire_gate(uint64_t gate, uint64_t epoch);
    // stats.cpp: the series read from the node's state at each scrape, and a route's series.
    void register_metrics();
    RouteStats &route_stats(int route); // a route number or kOtherRoutes
    static double read_metric(void *node, int key);

    Config cfg_;
    coho::Scheduler &sched_;
    coho::net::Metrics metrics_; // before every member whose series it holds
    Db db_;
    Store store_;
    coho::tdp::Pool pool_;
    std::unordered_map<uint64_t, Link> gate_of_conn_;
    std::map<uint64_t, Gate> gates_;
    std::unordered_map<uint64_t, uint64_t> gate_epoch_; // bumped when a gateway (re)connects
    bool stopping_ = false;
    std::map<uint16_t, Handler> routes_;
    // By route number; calls to routes the node does not serve share one "other" entry
    // (kOtherRoutes), so a client sending every number cannot make 65,536 series.
    std::map<int, RouteStats> stats_;
    uint64_t pushes_sent_ = 0, pushes_dropped_ = 0, bad_frames_ = 0, stale_requests_ = 0;
};

// ---- the features (one file each) ----
// player.cpp: LOAD, player.get, player.add, and what a SESSION_END means for the player.
uint32_t player_load(Node &n, uint64_t uid, uint64_t session, uint64_t gate);
// false when another (newer) session of the uid is loaded: the end is stale, nothing changes.
bool player_session_end(Node &n, uint64_t uid, uint64_t session);
uint32_t player_get(Node &n, const Call &c, std::string &out);
uint32_t player_add(Node &n, const Call &c, std::string &out);
// chat.cpp
uint32_t chat_join(Node &n, const Call &c, std::string &out);
uint32_t chat_say(Node &n, const Call &c, std::string &out);
uint32_t chat_leave(Node &n, const Call &c, std::string &out);
void chat_session_end(Node &n, uint64_t uid, uint64_t gate);
// scene.cpp
uint32_t scene_enter(Node &n, const Call &c, std::string &out);
uint32_t scene_move(Node &n, const Call &c, std::string &out);
uint32_t scene_leave(Node &n, const Call &c, std::string &out);
// Takes `uid` out of the scenes where session `session` put it (a newer session's entity stays).
void scene_session_end(Node &n, uint64_t uid, uint64_t session);
// Takes `uid` out of the scenes where its pushes go to gateway `gate` (that gateway is gone).
void scene_gate_end(Node &n, uint64_t uid, uint64_t gate);
// Every uid in a scene of this node whose pushes go to `gate`.
std::vector<uint64_t> scene_uids_of_gate(const Node &n, uint64_t gate);
// test routes (node.cpp)
uint32_t echo(Node &n, const Call &c, std::string &out);
uint32_t push_self(Node &n, const Call &c, std::string &out);

} // namespace coho::game::logic
