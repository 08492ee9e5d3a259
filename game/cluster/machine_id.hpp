// SPDX-License-Identifier: MIT
// Machine ids for snowflake ids: each node holds one id in [0, max_id] while its lease lives.
// The id is the key /<cluster>/machine/<id>, created by one etcd transaction (compare
// create_revision == 0, then put under the lease), so two nodes never hold the same id at once;
// it is released with the lease (revoked on a clean stop, expired after a crash). A node whose
// lease is lost (Member::valid() false) must stop making ids with it: another node may hold it.
#pragma once

#include <cstdint>
#include <string>

#include "game/cluster/etcd.hpp"

namespace coho::game::cluster {

// Claims the lowest free id in [0, max_id] for `lease`; the key's value is `owner` (for ops).
// Throws etcd::Error when every id is held (or etcd fails), std::invalid_argument on a bad
// range or lease.
int64_t lease_machine_id(etcd::Client &c, const std::string &cluster, int64_t lease,
                         const std::string &owner, int64_t max_id = 1023);

// The id's key: /<cluster>/machine/<id>.
std::string machine_id_key(const std::string &cluster, int64_t id);

} // namespace coho::game::cluster
