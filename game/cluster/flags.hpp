// SPDX-License-Identifier: MIT
// The command-line flags every cluster member takes (coho-gate, coho-logic): --etcd, --cluster,
// --lease-ttl-s. Without --etcd a program runs on its fixed addresses, as before.
#pragma once

#include <string>
#include <vector>

#include "game/cluster/etcd.hpp"
#include "game/cluster/member.hpp"
#include "game/common/flags.hpp"

namespace coho::game::cluster {

struct Flags {
    std::string *etcd = nullptr, *cluster = nullptr;
    uint64_t *ttl_s = nullptr;

    // Declares the flags on `f`.
    void add(coho::game::Flags &f)
    {
        etcd = &f.str("etcd", "HOST:PORT[,...]",
                      "etcd members: register there and find the other nodes (game/README.md, "
                      "\"Cluster\"); absent: fixed addresses only");
        cluster = &f.str("cluster", "NAME", "the cluster's key prefix in etcd: /NAME/...", "coho");
        ttl_s = &f.u64("lease-ttl-s", "N",
                       "this node's etcd lease: it is fenced, and its uids move, this long "
                       "after it stops renewing",
                       5);
    }

    // After f.parse: the endpoints (empty without --etcd); a bad value fails through `f`.
    std::vector<std::string> endpoints(coho::game::Flags &f) const
    {
        std::vector<std::string> eps;
        if (etcd->empty())
            return eps;
        std::string err;
        if (!etcd::parse_endpoints(*etcd, &eps, &err))
            f.fail("--etcd: " + err);
        if (!valid_name(*cluster))
            f.fail("--cluster: '" + *cluster + "' is not 1..64 of [A-Za-z0-9_.-]");
        if (*ttl_s < 1 || *ttl_s > 3600)
            f.fail("--lease-ttl-s: must be 1..3600");
        return eps;
    }
};

} // namespace coho::game::cluster
