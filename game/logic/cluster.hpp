// SPDX-License-Identifier: MIT
// A logic node in the cluster (cluster.cpp), with --etcd: it registers /<cluster>/logic/<id>
// under a lease kept alive by a coroutine (member.hpp), and owns no uid while that lease is not
// valid (fencing: after a pause or a partition past the TTL, the gateways have moved its uids and
// scenes to other nodes, so it answers NO_NODE until it has registered again). Which uids a live
// node gets is the gateways' choice (rendezvous hashing over the nodes they see up), so the uids of
// a node that crashed move at once, without waiting for its lease to expire.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "game/cluster/member.hpp"

namespace coho::game::logic {

class ClusterMember {
public:
    // `m.value` is filled from `addr` (where gateways reach this node) and `capacity`. Under
    // each lease the node also holds a machine id for its snowflake ids (machine_id.hpp):
    // `machine_id` when it is >= 0 (--machine-id: taken as given, and an error if another
    // node holds it), else the lowest free one at the first registration. After a lost lease
    // the node takes the same id again; if another node took it meanwhile, machine_id_lost().
    ClusterMember(cluster::MemberConfig m, const std::string &addr, uint64_t capacity,
                  int64_t machine_id = -1);
    // Inside a coroutine: registers, and keeps the lease alive, in the background.
    void start() { member_->start(); }
    void stop() { member_->stop(); }
    // Whether this node may serve `id` now: a uid, or a scene (`kind` names which, for the log).
    // On the node's scheduler.
    bool owns(const char *kind, uint64_t id) const;
    const cluster::Member &member() const { return *member_; }
    uint64_t fenced() const { return fenced_; }
    // The machine id held; -1 before the first registration.
    int64_t machine_id() const { return machine_id_.load(); }
    // Another node holds the id this node had (taken while this node had no lease, or given
    // to both with --machine-id): this node must make no more ids with it.
    bool machine_id_lost() const { return machine_id_lost_.load(); }

private:
    bool take_machine_id(etcd::Client &c, int64_t lease);

    std::string cluster_, owner_;
    std::atomic<int64_t> machine_id_{-1};
    std::atomic<bool> machine_id_lost_{false};
    std::unique_ptr<cluster::Member> member_;
    mutable uint64_t fenced_ = 0;
};

} // namespace coho::game::logic
