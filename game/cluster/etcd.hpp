// SPDX-License-Identifier: MIT
// An etcd v3 client over etcd's JSON gateway (etcd 3.4: POST /v3/kv/put, /v3/kv/range, ...),
// spoken with unmodified libcurl. Every call blocks its caller; inside a coroutine, coho's hooks
// park the coroutine while curl waits for the network, so one scheduler thread runs many calls
// at once (a keepalive loop, a watch stream and the node's requests side by side).
//
//     coho::game::etcd::Client c({{"127.0.0.1:2379"}});
//     int64_t lease = c.lease_grant(5);
//     c.put("/demo/logic/1", "127.0.0.1:7001", lease);
//     for (auto &kv : c.get_prefix("/demo/logic/")) ...
//
// Keys and values are bytes (base64 on the wire). A transport failure tries the next endpoint;
// when none answers, or etcd answers an error, the call throws etcd::Error with the reason.
// A Client is used from one thread; its calls may overlap (each takes its own curl handle).
#pragma once

#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace coho::game::etcd {

class Error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct Kv {
    std::string key, value;
    int64_t create_revision = 0, mod_revision = 0, version = 0, lease = 0;
};

struct Event {
    enum Type { PUT, DELETE };
    Type type = PUT;
    Kv kv; // on DELETE: the key and mod_revision only
};

struct Options {
    std::vector<std::string> endpoints; // HOST:PORT of each etcd member
    long timeout_ms = 2000;             // per unary call (not the watch stream)
    long connect_timeout_ms = 1000;
};

// The end of the range that holds every key starting with `prefix` (etcd's range_end).
std::string prefix_end(std::string_view prefix);
std::string base64_encode(std::string_view bytes);
// false on text that is not base64.
bool base64_decode(std::string_view text, std::string *out);
// "HOST:PORT[,...]" into its endpoints; false (with *err) when one is not HOST:PORT.
bool parse_endpoints(const std::string &list, std::vector<std::string> *out, std::string *err);

class Client {
public:
    // Throws std::invalid_argument when there is no endpoint or one is not HOST:PORT.
    explicit Client(Options o);
    ~Client();
    Client(const Client &) = delete;
    Client &operator=(const Client &) = delete;

    // The store's revision after the put.
    int64_t put(std::string_view key, std::string_view value, int64_t lease = 0);
    // The key's entry, if any (0 or 1 element).
    std::vector<Kv> get(std::string_view key, int64_t *revision = nullptr);
    // Every key under `prefix`, in key order; *revision: the store's revision they were read at.
    std::vector<Kv> get_prefix(std::string_view prefix, int64_t *revision = nullptr);
    // How many keys were deleted.
    int64_t del(std::string_view key);
    int64_t del_prefix(std::string_view prefix);

    // A new lease of `ttl_s` seconds; its id.
    int64_t lease_grant(int64_t ttl_s);
    // Renews the lease once; the TTL it has now, 0 when it no longer exists (expired, revoked).
    int64_t lease_keepalive(int64_t lease);
    // Revokes the lease: every key attached to it goes.
    void lease_revoke(int64_t lease);

    // One transaction: if `key` does not exist (create_revision == 0), put it (attached to
    // `lease` when not 0) and return true; else change nothing and return false.
    bool put_if_absent(std::string_view key, std::string_view value, int64_t lease = 0);

    // Streams the changes to every key under `prefix` from `start_revision` (0: from now),
    // calling `on_events` with each batch, in order. Returns when `on_events` returns false or
    // `keep_going` does (checked at each batch and about once a second while idle); throws
    // etcd::Error when the stream cannot start or breaks (etcd went away, revision compacted).
    void watch_prefix(std::string_view prefix, int64_t start_revision,
                      const std::function<bool(const std::vector<Event> &)> &on_events,
                      const std::function<bool()> &keep_going);

    // POSTs `json` to `path` (e.g. "/v3/kv/range") and returns the response body; throws
    // etcd::Error on a transport failure on every endpoint or an HTTP status other than 200.
    std::string call(const std::string &path, const std::string &json);

    const std::vector<std::string> &endpoints() const { return opts_.endpoints; }

private:
    void *take_handle(); // CURL *
    void give_handle(void *h);

    Options opts_;
    size_t next_ = 0; // the endpoint tried first
    std::vector<void *> idle_;
};

} // namespace coho::game::etcd
