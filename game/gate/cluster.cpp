// SPDX-License-Identifier: MIT
// A shard in the cluster (cluster.hpp).
#include "cluster.hpp"

#include <vector>

#include "links.hpp"

namespace coho::game::gate {

ShardCluster::ShardCluster(Shard &sh, int64_t wait_ms) : sh_(sh)
{
    const Config &cfg = gate().cfg;
    disc_ =
        std::make_unique<cluster::Discovery>(cfg.etcd, cluster::role_prefix(cfg.cluster, "logic"));
    if (!disc_->start(
            [this](const cluster::NodeSet &nodes) {
                std::vector<cluster::NodeInfo> live;
                for (const auto &[id, node] : nodes)
                    live.push_back(node);
                coho_log_info("gate: shard %u: %zu logic nodes live", sh_.index, live.size());
                sh_.links->set_nodes(live);
            },
            wait_ms))
        coho_log_warn("gate: shard %u: etcd did not answer yet; routing waits for it", sh.index);
    sh_.links->wait_up(wait_ms);
}

ShardCluster::~ShardCluster() = default;

void ShardCluster::register_gate(const std::string &addr)
{
    const Config &cfg = gate().cfg;
    cluster::MemberConfig m;
    m.etcd = cfg.etcd;
    m.cluster = cfg.cluster;
    m.role = "gate";
    m.id = std::to_string(cfg.gate_id);
    m.value = cluster::describe(addr, 0);
    m.ttl_s = int64_t(cfg.lease_ttl_s);
    member_ = std::make_unique<cluster::Member>(m);
    member_->start();
}

void ShardCluster::stop()
{
    if (member_)
        member_->stop();
    disc_->stop();
}

} // namespace coho::game::gate
