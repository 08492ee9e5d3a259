// SPDX-License-Identifier: MIT
// Machine ids under a lease (machine_id.hpp). One range read finds the ids held now; the free
// ones are then tried in order with a compare-and-put each, so a race with another node only
// costs a retry on the next id.
#include "game/cluster/machine_id.hpp"

#include <cstdlib>
#include <set>
#include <stdexcept>

#include "game/cluster/member.hpp"

namespace coho::game::cluster {

std::string machine_id_key(const std::string &cluster, int64_t id)
{
    return role_prefix(cluster, "machine") + std::to_string(id);
}

int64_t lease_machine_id(etcd::Client &c, const std::string &cluster, int64_t lease,
                         const std::string &owner, int64_t max_id)
{
    if (max_id < 0)
        throw std::invalid_argument("cluster: max machine id must be >= 0");
    if (lease == 0)
        throw std::invalid_argument("cluster: a machine id needs a lease");
    const std::string prefix = role_prefix(cluster, "machine");
    std::set<int64_t> held;
    for (const auto &kv : c.get_prefix(prefix)) {
        const std::string n = kv.key.substr(prefix.size());
        char *end = nullptr;
        long long id = std::strtoll(n.c_str(), &end, 10);
        if (!n.empty() && *end == '\0')
            held.insert(id);
    }
    for (int64_t id = 0; id <= max_id; id++) {
        if (held.count(id) != 0)
            continue;
        if (c.put_if_absent(machine_id_key(cluster, id), owner, lease))
            return id;
    }
    throw etcd::Error("cluster: every machine id 0.." + std::to_string(max_id) + " of '" + cluster +
                      "' is held");
}

} // namespace coho::game::cluster
