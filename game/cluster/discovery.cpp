// SPDX-License-Identifier: MIT
// Discovery over an etcd watch (discovery.hpp).
#include "game/cluster/discovery.hpp"

#include <chrono>

#include <coho.h>
#include <coho.hpp>

#include "game/cluster/member.hpp"

namespace coho::game::cluster {

namespace {

etcd::Options options(std::vector<std::string> eps)
{
    etcd::Options o;
    o.endpoints = std::move(eps);
    o.timeout_ms = 2000;
    o.connect_timeout_ms = 1000;
    return o;
}

} // namespace

Discovery::Discovery(std::vector<std::string> etcd, std::string prefix)
    : client_(options(std::move(etcd))), prefix_(std::move(prefix))
{}

Discovery::~Discovery() = default;

bool Discovery::read_all()
{
    int64_t rev = 0;
    std::vector<etcd::Kv> kvs;
    try {
        kvs = client_.get_prefix(prefix_, &rev);
    } catch (const std::exception &e) {
        coho_log_warn("cluster: reading %s: %s", prefix_.c_str(), e.what());
        return false;
    }
    NodeSet now;
    for (const auto &kv : kvs) {
        std::string addr = addr_of(kv.value);
        if (addr.empty()) {
            coho_log_warn("cluster: %s has no address: '%s' ignored", kv.key.c_str(),
                          kv.value.c_str());
            continue;
        }
        now[kv.key.substr(prefix_.size())] = NodeInfo{addr, kv.lease};
    }
    revision_ = rev;
    if (now != nodes_ || changes_ == 0) {
        nodes_ = std::move(now);
        changes_++;
        on_change_(nodes_);
    }
    return true;
}

bool Discovery::start(std::function<void(const NodeSet &)> on_change, int64_t first_wait_ms)
{
    on_change_ = std::move(on_change);
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(first_wait_ms);
    bool ok = read_all();
    while (!ok && std::chrono::steady_clock::now() < end) {
        coho::this_co::sleep_for(std::chrono::milliseconds(100));
        ok = read_all();
    }
    co_ = coho::spawn([this] { run(); });
    return ok;
}

void Discovery::stop()
{
    stopping_ = true;
    if (co_ != 0) {
        coho::join(co_);
        co_ = 0;
    }
}

void Discovery::run()
{
    bool fresh = revision_ != 0; // start() read the set
    while (!stopping_) {
        if (!fresh && !read_all()) {
            coho::this_co::sleep_for(std::chrono::milliseconds(250));
            continue;
        }
        fresh = false;
        try {
            client_.watch_prefix(
                prefix_, revision_ + 1,
                [this](const std::vector<etcd::Event> &evs) {
                    NodeSet now = nodes_;
                    for (const auto &e : evs) {
                        revision_ = std::max(revision_, e.kv.mod_revision);
                        std::string id = e.kv.key.substr(prefix_.size());
                        if (e.type == etcd::Event::DELETE) {
                            now.erase(id);
                        } else if (std::string addr = addr_of(e.kv.value); !addr.empty()) {
                            now[id] = NodeInfo{addr, e.kv.lease};
                        }
                    }
                    if (now != nodes_) {
                        nodes_ = std::move(now);
                        changes_++;
                        on_change_(nodes_);
                    }
                    return true;
                },
                [this] { return !stopping_.load(); });
        } catch (const std::exception &e) {
            coho_log_warn("cluster: watching %s: %s", prefix_.c_str(), e.what());
            if (!stopping_)
                coho::this_co::sleep_for(std::chrono::milliseconds(250));
        }
    }
}

} // namespace coho::game::cluster
