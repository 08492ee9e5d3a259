// SPDX-License-Identifier: MIT
// Registration under a lease (member.hpp). The renewal is sent every third of the TTL; the
// node counts its lease valid until the send time of the last acknowledged renewal plus the TTL
// etcd granted then, which is never later than etcd's own expiry of the lease.
#include "game/cluster/member.hpp"

#include <algorithm>
#include <cctype>
#include <cinttypes>
#include <nlohmann/json.hpp>

#include <coho.h>
#include <coho.hpp>

namespace coho::game::cluster {

namespace {

int64_t now_ns()
{
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

etcd::Options client_options(const MemberConfig &c)
{
    etcd::Options o;
    o.endpoints = c.etcd;
    // A call must not outlast the lease it renews.
    o.timeout_ms = std::max<long>(500, long(c.ttl_s) * 1000 / 3);
    o.connect_timeout_ms = std::min<long>(o.timeout_ms, 1000);
    return o;
}

} // namespace

std::string describe(const std::string &addr, uint64_t capacity)
{
    nlohmann::json j = {{"addr", addr}};
    if (capacity != 0)
        j["capacity"] = capacity;
    return j.dump();
}

std::string addr_of(const std::string &value)
{
    auto j = nlohmann::json::parse(value, nullptr, false);
    if (!j.is_object())
        return {};
    auto a = j.find("addr");
    return a != j.end() && a->is_string() ? a->get<std::string>() : std::string();
}

std::string role_prefix(const std::string &cluster, const std::string &role)
{
    return "/" + cluster + "/" + role + "/";
}

bool valid_name(const std::string &name)
{
    if (name.empty() || name.size() > 64)
        return false;
    for (char c : name)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-'))
            return false;
    return true;
}

Member::Member(MemberConfig cfg)
    : cfg_(std::move(cfg)), key_(role_prefix(cfg_.cluster, cfg_.role) + cfg_.id),
      client_(client_options(cfg_))
{
    if (cfg_.ttl_s <= 0)
        throw std::invalid_argument("cluster: the lease TTL must be positive");
}

Member::~Member() = default;

void Member::start()
{
    co_ = coho::spawn([this] { run(); });
}

void Member::stop()
{
    stopping_ = true;
    if (co_ != 0) {
        coho::join(co_);
        co_ = 0;
    }
    valid_until_ns_ = 0;
    if (int64_t l = lease_.exchange(0); l != 0) {
        try {
            client_.lease_revoke(l);
            coho_log_info("cluster: %s deregistered (lease %" PRId64 " revoked)", key_.c_str(), l);
        } catch (const std::exception &e) {
            coho_log_warn("cluster: revoking the lease of %s: %s (it expires by itself)",
                          key_.c_str(), e.what());
        }
    }
}

bool Member::valid() const
{
    const int64_t until = valid_until_ns_.load();
    return until != 0 && now_ns() < until;
}

bool Member::wait_valid(std::chrono::milliseconds d) const
{
    const auto end = std::chrono::steady_clock::now() + d;
    while (!valid() || registered_lease_.load() != lease_.load()) {
        if (std::chrono::steady_clock::now() >= end)
            return false;
        coho::this_co::sleep_for(std::chrono::milliseconds(10));
    }
    return true;
}

bool Member::sleep_unless_stopping(std::chrono::milliseconds d)
{
    const auto end = std::chrono::steady_clock::now() + d;
    while (!stopping_) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            end - std::chrono::steady_clock::now());
        if (left.count() <= 0)
            return true;
        coho::this_co::sleep_for(std::min(left, std::chrono::milliseconds(100)));
    }
    return false;
}

bool Member::register_once()
{
    const int64_t t0 = now_ns();
    int64_t l = 0;
    try {
        l = client_.lease_grant(cfg_.ttl_s);
        // What else the node holds under the lease comes first: once the key is written,
        // gateways route to the node, which must be ready (valid) by then.
        if (cfg_.on_lease && !cfg_.on_lease(client_, l))
            throw std::runtime_error("what the node holds under its lease could not be taken");
        // The node is the new lease's before the key says so: a gateway that sees the key
        // connects at once, and its HELLO must find the lease it saw.
        lease_ = l;
        valid_until_ns_ = t0 + cfg_.ttl_s * 1000000000;
        client_.put(key_, cfg_.value, l);
        registered_lease_ = l;
    } catch (const std::exception &e) {
        lease_ = 0;
        valid_until_ns_ = 0;
        coho_log_warn("cluster: registering %s: %s", key_.c_str(), e.what());
        if (l != 0) {
            try {
                client_.lease_revoke(l);
            } catch (const std::exception &) {
                // it expires by itself
            }
        }
        return false;
    }
    registrations_++;
    coho_log_info("cluster: registered %s = %s (lease %" PRId64 ", TTL %" PRId64 " s)",
                  key_.c_str(), cfg_.value.c_str(), l, cfg_.ttl_s);
    return true;
}

void Member::run()
{
    const auto period = std::chrono::milliseconds(std::max<int64_t>(100, cfg_.ttl_s * 1000 / 3));
    while (!stopping_) {
        if (lease_ == 0) {
            if (!register_once() && !sleep_unless_stopping(std::chrono::milliseconds(250)))
                return;
            continue;
        }
        if (!sleep_unless_stopping(period))
            return;
        const int64_t t0 = now_ns();
        int64_t ttl = -1;
        try {
            ttl = client_.lease_keepalive(lease_);
        } catch (const std::exception &e) {
            coho_log_warn("cluster: renewing the lease of %s: %s", key_.c_str(), e.what());
        }
        if (ttl > 0) {
            valid_until_ns_ = t0 + ttl * 1000000000;
            continue;
        }
        if (ttl == 0 || !valid()) {
            // Gone in etcd, or not renewed in time: whatever etcd says later, another node may
            // own this node's uids now. Register again under a new lease.
            valid_until_ns_ = 0;
            lost_++;
            coho_log_warn("cluster: %s lost its lease %" PRId64 "%s", key_.c_str(), lease_.load(),
                          ttl == 0 ? " (expired in etcd)" : " (not renewed within its TTL)");
            lease_ = 0;
        }
    }
}

} // namespace coho::game::cluster
