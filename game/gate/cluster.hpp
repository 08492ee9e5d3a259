// SPDX-License-Identifier: MIT
// A shard's part in the cluster (cluster.cpp), with --etcd: it follows the live logic nodes
// (/<cluster>/logic/, discovery.hpp) and keeps its node links to exactly those; shard 0 also
// registers the gateway as /<cluster>/gate/<gate id> (member.hpp).
#pragma once

#include <memory>

#include "game/cluster/discovery.hpp"
#include "game/cluster/member.hpp"
#include "gate.hpp"

namespace coho::game::gate {

class ShardCluster {
public:
    // Reads the live nodes and opens links to them (waiting up to `wait_ms` for them to be up),
    // then follows them. In a coroutine on the shard's thread, after its links started.
    ShardCluster(Shard &sh, int64_t wait_ms);
    ~ShardCluster();
    // Shard 0: registers the gateway, reachable at `addr` (its client listener).
    void register_gate(const std::string &addr);
    // Before the shard's links close.
    void stop();

private:
    Shard &sh_;
    std::unique_ptr<cluster::Discovery> disc_;
    std::unique_ptr<cluster::Member> member_;
};

} // namespace coho::game::gate
