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

// Node id (the key past the prefix) -> its address (the "addr" of its value).
using NodeSet = std::map<std::string, std::string>;

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
