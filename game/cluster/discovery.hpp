// SPDX-License-Identifier: MIT
// Discovery: follows the nodes registered under one prefix (/<cluster>/logic/) through an etcd
// watch, and hands the whole live set to a callback at every change. It reads the prefix once,
// then watches from the revision it read at; when the stream breaks (etcd restarted, compacted)
// it reads again and watches again, so no change is missed or applied twice.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "game/cluster/etcd.hpp"

namespace coho::game::cluster {

// A registered node: its address (the "addr" of its value) and the lease it registered under.
// A node that registers again (it lost its lease and took a new one, or restarted) has a new
// lease at the same address: what it held under the old one (scenes, the gateways' connections)
// it no longer holds.
struct NodeInfo {
    std::string addr;
    int64_t lease = 0;
    bool operator==(const NodeInfo &o) const { return addr == o.addr && lease == o.lease; }
    bool operator!=(const NodeInfo &o) const { return !(*this == o); }
};

// Node id (the key past the prefix) -> the node.
using NodeSet = std::map<std::string, NodeInfo>;

class Discovery {
public:
    Discovery(std::vector<std::string> etcd, std::string prefix);
    ~Discovery();
    Discovery(const Discovery &) = delete;
    Discovery &operator=(const Discovery &) = delete;

    // Reads the set once (up to `first_wait_ms` while etcd does not answer), calls `on_change`
    // with it, then spawns the watching coroutine on the calling thread's scheduler, which calls
    // `on_change` after each change. Inside a coroutine. false when the first read failed (the
    // coroutine keeps trying).
    bool start(std::function<void(const NodeSet &)> on_change, int64_t first_wait_ms);
    // Ends the watching coroutine (within about a second). Inside a coroutine.
    void stop();

    const NodeSet &nodes() const { return nodes_; }
    uint64_t changes() const { return changes_; }

private:
    bool read_all();
    void run();

    etcd::Client client_;
    std::string prefix_;
    std::function<void(const NodeSet &)> on_change_;
    NodeSet nodes_;
    int64_t revision_ = 0; // the set is as of this revision
    uint64_t co_ = 0, changes_ = 0;
    std::atomic<bool> stopping_{false};
};

} // namespace coho::game::cluster
