// SPDX-License-Identifier: MIT
// A logic node in the cluster (cluster.hpp).
#include "game/logic/cluster.hpp"

#include <cinttypes>

#include <coho.h>

#include "game/cluster/machine_id.hpp"

namespace coho::game::logic {

ClusterMember::ClusterMember(cluster::MemberConfig m, const std::string &addr, uint64_t capacity,
                             int64_t machine_id)
    : cluster_(m.cluster), owner_("logic/" + m.id + " " + addr), machine_id_(machine_id)
{
    m.role = "logic";
    m.value = cluster::describe(addr, capacity);
    m.on_lease = [this](etcd::Client &c, int64_t lease) { return take_machine_id(c, lease); };
    member_ = std::make_unique<cluster::Member>(std::move(m));
}

bool ClusterMember::take_machine_id(etcd::Client &c, int64_t lease)
{
    int64_t id = machine_id_.load();
    if (id < 0) {
        id = cluster::lease_machine_id(c, cluster_, lease, owner_); // throws when none is free
        machine_id_ = id;
        coho_log_info("cluster: machine id %" PRId64 " taken (lease %" PRId64 ")", id, lease);
        return true;
    }
    const std::string key = cluster::machine_id_key(cluster_, id);
    for (int attempt = 0; attempt < 3; attempt++) {
        if (c.put_if_absent(key, owner_, lease)) {
            coho_log_info("cluster: machine id %" PRId64 " held (lease %" PRId64 ")", id, lease);
            return true;
        }
        // Held under this node's own earlier lease, which it gave up (not renewed in time) but
        // etcd has not expired yet (an etcd restart extends leases): revoke that lease and
        // take the id again. The owner names the node id and its address, which only one
        // process can listen on.
        const auto held = c.get(key);
        if (held.empty())
            continue; // gone meanwhile: try again
        if (held[0].value != owner_ || held[0].lease == lease)
            break;
        coho_log_info("cluster: machine id %" PRId64 " still held by this node's lease %" PRId64
                      ": revoking it",
                      id, held[0].lease);
        if (held[0].lease != 0)
            c.lease_revoke(held[0].lease);
    }
    const auto held = c.get(key);
    coho_log_error("cluster: machine id %" PRId64 " is held by another node (%s): no more ids here",
                   id, held.empty() ? "?" : held[0].value.c_str());
    machine_id_lost_ = true;
    return false;
}

bool ClusterMember::owns(const char *kind, uint64_t id) const
{
    if (member_->valid())
        return true;
    if (fenced_++ % 1000 == 0)
        coho_log_warn("cluster: no valid lease: %s %" PRIu64 " refused (%" PRIu64 " so far)", kind,
                      id, fenced_);
    return false;
}

} // namespace coho::game::logic
