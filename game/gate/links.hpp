// SPDX-License-Identifier: MIT
// A shard's links to the logic nodes (route.cpp): one socket_ext connect pool per node, on the
// shard's scheduler. A request goes to the node that owns its key by rendezvous hashing over
// the nodes that are up now (the uid; for scene calls the scene, scenes.cpp); a node that is down,
// or goes down with the request in flight, answers NO_NODE at once, and a node that stays silent
// answers TIMEOUT after
// --call-timeout-ms.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <coho/socket_ext.h>

#include "game/cluster/discovery.hpp"
#include "gate.hpp"

namespace coho::game::gate {

class NodeLinks {
public:
    using Reply = NodeReply;

    // Connects to every node and waits up to `wait_ms` for each to be up, so that the first
    // logins hash over every node that is running. In a coroutine on the shard's thread.
    // Throws std::runtime_error when a node's address does not resolve.
    void start(const Config &cfg, int64_t wait_ms);
    void close();
    // The nodes change (discovery, cluster.cpp): links to nodes not in `nodes` close (their
    // requests in flight answer NO_NODE at once), new ones open. A node that registered again
    // at the same address (a new lease) counts as one that left and one that joined. On the
    // shard's thread.
    void set_nodes(const std::vector<cluster::NodeInfo> &nodes);
    // Waits up to `wait_ms` for every node to have a connection up.
    void wait_up(int64_t wait_ms);

    Reply call(uint64_t uid, uint64_t session, uint16_t route, std::string_view payload);
    // The node that owns `key` now: its address (empty when no node is up) and registration
    // (0 for a node of --logic, which has none).
    cluster::NodeInfo owner(uint64_t key) const;
    // A CALL to the node at `addr` (NO_NODE when it is not up, or not a node of these links).
    // Unlike call(), a failure is not counted: the caller counts what its client was answered.
    Reply call_at(const std::string &addr, uint64_t uid, uint64_t session, uint16_t route,
                  std::string_view payload);
    uint32_t load(uint64_t uid, uint64_t session);
    void session_end(uint64_t uid, uint64_t session);

private:
    struct Node {
        std::string addr;
        int64_t lease = 0; // NodeInfo::lease
        coho_tdp_pool_t *pool = nullptr;
        size_t max_body = 0;
        coho_tdp_framer_t framer{};
    };
    Reply request(uint32_t type, uint32_t arg, uint64_t uid, const std::string &body);
    // `conn`: a connection of node `i` that is up.
    Reply request_at(size_t i, uint64_t conn, uint32_t type, uint32_t arg, const std::string &body);
    int pick(uint64_t key, uint64_t *conn) const; // the owner's index (-1: none is up)
    // Throws std::runtime_error when `addr` does not resolve.
    void add(const std::string &addr, int64_t lease = 0);

    std::vector<std::unique_ptr<Node>> nodes_;
    std::vector<uint64_t> hashes_;
    int64_t timeout_ms_ = 3000;
    uint64_t gate_id_ = 0;
    unsigned node_conns_ = 2;
};

} // namespace coho::game::gate
