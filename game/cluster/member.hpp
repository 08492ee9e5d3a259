// SPDX-License-Identifier: MIT
// A node's registration in the cluster: the key /<cluster>/<role>/<id> holds the node's
// description (Member::describe: its address and capacity) under an etcd lease of ttl_s
// seconds, which a coroutine keeps alive. A node that cannot renew its lease in time (etcd
// unreachable, the process stopped) has lost it: valid() turns false at the moment etcd may
// have expired it, and stays false until the coroutine has registered again under a new lease.
// Nodes check valid() before acting for a uid (fencing): after the lease is gone, another node
// may own the uid.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "game/cluster/etcd.hpp"

namespace coho::game::cluster {

struct MemberConfig {
    std::vector<std::string> etcd; // HOST:PORT of each etcd member
    std::string cluster = "coho";  // the key prefix: /<cluster>/
    std::string role;              // "logic" or "gate"
    std::string id;                // the node's id, unique within the role
    std::string value;             // what the key holds (describe())
    int64_t ttl_s = 5;
    // Called at each registration with the new lease, before the node's key is written (and
    // so before gateways route to it): what else the node holds under its lease (its machine
    // id). False (or a throw) undoes the registration (the lease is revoked) and it is tried
    // again later.
    std::function<bool(etcd::Client &, int64_t lease)> on_lease;
};

// The value a node registers: {"addr":"HOST:PORT","capacity":N} (capacity 0: left out).
std::string describe(const std::string &addr, uint64_t capacity);
// The address in a value describe() wrote; empty when it has none.
std::string addr_of(const std::string &value);
// "/<cluster>/<role>/": the prefix every node of the role registers under.
std::string role_prefix(const std::string &cluster, const std::string &role);
// Whether `name` is usable as a cluster name or node id: 1..64 of [A-Za-z0-9_.-].
bool valid_name(const std::string &name);

class Member {
public:
    explicit Member(MemberConfig cfg);
    ~Member();
    Member(const Member &) = delete;
    Member &operator=(const Member &) = delete;

    // Spawns the coroutine that registers and keeps the lease alive, on the calling thread's
    // coho::Scheduler. Inside a coroutine or on the scheduler's thread.
    void start();
    // Ends the coroutine, then revokes the lease (the key goes at once, not after the TTL).
    // Inside a coroutine of the same scheduler.
    void stop();

    // Holds a lease etcd granted or renewed less than the TTL ago: the node may serve. It turns
    // true just before the key is written (a gateway that sees the key may send requests at
    // once, and they must be served), so for a moment it can be true with the key not yet in
    // etcd. Any thread.
    bool valid() const;
    // Waits up to `d` until valid() and the key of the current lease is written; inside a
    // coroutine.
    bool wait_valid(std::chrono::milliseconds d) const;
    int64_t lease() const { return lease_.load(); }
    uint64_t registrations() const { return registrations_.load(); }
    uint64_t leases_lost() const { return lost_.load(); }
    const std::string &key() const { return key_; }
    etcd::Client &client() { return client_; }

private:
    void run();
    bool register_once();
    bool sleep_unless_stopping(std::chrono::milliseconds d);

    MemberConfig cfg_;
    std::string key_;
    etcd::Client client_;
    uint64_t co_ = 0;
    std::atomic<bool> stopping_{false};
    std::atomic<int64_t> lease_{0};
    std::atomic<int64_t> registered_lease_{0}; // the lease whose key was last written
    std::atomic<int64_t> valid_until_ns_{0};   // steady_clock; 0: not registered
    std::atomic<uint64_t> registrations_{0}, lost_{0};
};

} // namespace coho::game::cluster
