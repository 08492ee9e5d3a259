// SPDX-License-Identifier: MIT
// A logic node in the cluster (cluster.cpp), with --etcd: it registers /<cluster>/logic/<id>
// under a lease kept alive by a coroutine (member.hpp), and owns no uid while that lease is not
// valid (fencing: after a pause or a partition past the TTL, the gateways have moved its uids to
// other nodes, so it answers NO_NODE until it has registered again). Which uids a live node
// gets is the gateways' choice (rendezvous hashing over the nodes they see up), so the uids of a
// node that crashed move at once, without waiting for its lease to expire.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "game/cluster/member.hpp"

namespace coho::game::logic {

class ClusterMember {
public:
    // `m.value` is filled from `addr` (where gateways reach this node) and `capacity`.
    ClusterMember(cluster::MemberConfig m, const std::string &addr, uint64_t capacity);
    // Inside a coroutine: registers, and keeps the lease alive, in the background.
    void start() { member_->start(); }
    void stop() { member_->stop(); }
    // Whether this node may serve `uid` now. On the node's scheduler.
    bool owns(uint64_t uid) const;
    const cluster::Member &member() const { return *member_; }
    uint64_t fenced() const { return fenced_; }

private:
    std::unique_ptr<cluster::Member> member_;
    mutable uint64_t fenced_ = 0;
};

} // namespace coho::game::logic
