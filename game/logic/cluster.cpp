// SPDX-License-Identifier: MIT
// A logic node in the cluster (cluster.hpp).
#include "game/logic/cluster.hpp"

#include <cinttypes>

#include <coho.h>

namespace coho::game::logic {

ClusterMember::ClusterMember(cluster::MemberConfig m, const std::string &addr, uint64_t capacity)
{
    m.role = "logic";
    m.value = cluster::describe(addr, capacity);
    member_ = std::make_unique<cluster::Member>(std::move(m));
}

bool ClusterMember::owns(uint64_t uid) const
{
    if (member_->valid())
        return true;
    if (fenced_++ % 1000 == 0)
        coho_log_warn("cluster: no valid lease: uid %" PRIu64 " refused (%" PRIu64 " so far)", uid,
                      fenced_);
    return false;
}

} // namespace coho::game::logic
