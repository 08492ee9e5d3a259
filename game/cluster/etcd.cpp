// SPDX-License-Identifier: MIT
// The etcd v3 JSON gateway client (etcd.hpp). The gateway maps the gRPC API onto POSTs of JSON:
// 64-bit integers travel as strings, bytes as base64, fields at their zero value are left out
// (no "kvs" when nothing matched, no "TTL" on a lease that is gone), and streams (keepalive,
// watch) answer with one {"result": ...} object per message, newline-delimited.
#include "game/cluster/etcd.hpp"

#include <curl/curl.h>
#include <openssl/evp.h>

#include <cstdlib>
#include <mutex>
#include <nlohmann/json.hpp>

namespace coho::game::etcd {

using json = nlohmann::json;

namespace {

// A 64-bit field as the gateway writes it: a string of digits, a number, or absent (0).
int64_t i64(const json &j, const char *name)
{
    auto it = j.find(name);
    if (it == j.end() || it->is_null())
        return 0;
    if (it->is_number_integer())
        return it->get<int64_t>();
    if (it->is_string()) {
        const std::string &s = it->get_ref<const std::string &>();
        char *end = nullptr;
        errno = 0;
        long long v = std::strtoll(s.c_str(), &end, 10);
        if (s.empty() || errno != 0 || *end != '\0')
            throw Error("etcd: field '" + std::string(name) + "' is not an integer: '" + s + "'");
        return v;
    }
    throw Error("etcd: field '" + std::string(name) + "' is not an integer");
}

std::string bytes(const json &j, const char *name)
{
    auto it = j.find(name);
    if (it == j.end() || it->is_null())
        return {};
    std::string out;
    if (!it->is_string() || !base64_decode(it->get_ref<const std::string &>(), &out))
        throw Error("etcd: field '" + std::string(name) + "' is not base64");
    return out;
}

Kv kv_of(const json &j)
{
    Kv kv;
    kv.key = bytes(j, "key");
    kv.value = bytes(j, "value");
    kv.create_revision = i64(j, "create_revision");
    kv.mod_revision = i64(j, "mod_revision");
    kv.version = i64(j, "version");
    kv.lease = i64(j, "lease");
    return kv;
}

json parse(const std::string &body)
{
    json j = json::parse(body, nullptr, false);
    if (j.is_discarded() || !j.is_object())
        throw Error("etcd: answer is not a JSON object: '" + body.substr(0, 200) + "'");
    return j;
}

int64_t revision_of(const json &j)
{
    auto h = j.find("header");
    return h == j.end() ? 0 : i64(*h, "revision");
}

size_t append(char *p, size_t size, size_t n, void *out)
{
    static_cast<std::string *>(out)->append(p, size * n);
    return size * n;
}

std::once_flag g_curl_once;

} // namespace

std::string prefix_end(std::string_view prefix)
{
    std::string end(prefix);
    while (!end.empty()) {
        if (static_cast<unsigned char>(end.back()) < 0xff) {
            end.back() = char(static_cast<unsigned char>(end.back()) + 1);
            return end;
        }
        end.pop_back();
    }
    return std::string(1, '\0'); // every key (etcd's "\0" range end)
}

std::string base64_encode(std::string_view b)
{
    std::string out(4 * ((b.size() + 2) / 3), '\0');
    int n = EVP_EncodeBlock(reinterpret_cast<unsigned char *>(out.data()),
                            reinterpret_cast<const unsigned char *>(b.data()), int(b.size()));
    out.resize(size_t(n));
    return out;
}

bool base64_decode(std::string_view t, std::string *out)
{
    if (t.size() % 4 != 0)
        return false;
    out->assign(t.size() / 4 * 3, '\0');
    if (t.empty())
        return true;
    int n = EVP_DecodeBlock(reinterpret_cast<unsigned char *>(out->data()),
                            reinterpret_cast<const unsigned char *>(t.data()), int(t.size()));
    if (n < 0)
        return false;
    size_t pad = t.back() == '=' ? (t[t.size() - 2] == '=' ? 2 : 1) : 0;
    out->resize(size_t(n) - pad);
    return true;
}

bool parse_endpoints(const std::string &list, std::vector<std::string> *out, std::string *err)
{
    out->clear();
    size_t start = 0;
    while (start <= list.size()) {
        size_t comma = list.find(',', start);
        std::string e =
            list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        auto colon = e.rfind(':');
        char *end = nullptr;
        unsigned long port =
            colon == std::string::npos ? 0 : std::strtoul(e.c_str() + colon + 1, &end, 10);
        if (colon == std::string::npos || colon == 0 || colon + 1 == e.size() || *end != '\0' ||
            port == 0 || port > 65535) {
            *err = "'" + e + "' is not HOST:PORT";
            return false;
        }
        out->push_back(e);
        if (comma == std::string::npos)
            break;
        start = comma + 1;
    }
    if (out->empty()) {
        *err = "no endpoint";
        return false;
    }
    return true;
}

Client::Client(Options o) : opts_(std::move(o))
{
    if (opts_.endpoints.empty())
        throw std::invalid_argument("etcd: no endpoint");
    std::vector<std::string> check;
    std::string err;
    for (const auto &e : opts_.endpoints)
        if (!parse_endpoints(e, &check, &err) || check.size() != 1)
            throw std::invalid_argument("etcd: endpoint " + err);
    std::call_once(g_curl_once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

Client::~Client()
{
    for (void *h : idle_)
        curl_easy_cleanup(static_cast<CURL *>(h));
}

void *Client::take_handle()
{
    if (!idle_.empty()) {
        void *h = idle_.back();
        idle_.pop_back();
        return h;
    }
    CURL *h = curl_easy_init();
    if (h == nullptr)
        throw Error("etcd: curl_easy_init failed");
    return h;
}

void Client::give_handle(void *h)
{
    if (idle_.size() < 8)
        idle_.push_back(h);
    else
        curl_easy_cleanup(static_cast<CURL *>(h));
}

std::string Client::call(const std::string &path, const std::string &body)
{
    CURL *h = static_cast<CURL *>(take_handle());
    curl_slist *hdrs = curl_slist_append(nullptr, "Content-Type: application/json");
    hdrs = curl_slist_append(hdrs, "Expect:");
    std::string last_err;
    for (size_t tries = 0; tries < opts_.endpoints.size(); tries++) {
        const size_t e = (next_ + tries) % opts_.endpoints.size();
        std::string url = "http://" + opts_.endpoints[e] + path, out;
        curl_easy_reset(h);
        curl_easy_setopt(h, CURLOPT_URL, url.c_str());
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, opts_.timeout_ms);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, opts_.connect_timeout_ms);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body.c_str());
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, long(body.size()));
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, append);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &out);
        CURLcode rc = curl_easy_perform(h);
        if (rc != CURLE_OK) {
            last_err = opts_.endpoints[e] + ": " + curl_easy_strerror(rc);
            continue; // the next endpoint
        }
        long status = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        next_ = e; // it answered: ask it first next time
        curl_slist_free_all(hdrs);
        give_handle(h);
        if (status != 200) {
            json j = json::parse(out, nullptr, false);
            std::string msg = j.is_object() && j.contains("error") && j["error"].is_string()
                                  ? j["error"].get<std::string>()
                                  : out.substr(0, 200);
            throw Error("etcd: " + path + ": HTTP " + std::to_string(status) + ": " + msg);
        }
        return out;
    }
    next_ = (next_ + 1) % opts_.endpoints.size();
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h); // its connections are to members that failed
    throw Error("etcd: " + path + ": no endpoint answered (" + last_err + ")");
}

int64_t Client::put(std::string_view key, std::string_view value, int64_t lease)
{
    json rq = {{"key", base64_encode(key)}, {"value", base64_encode(value)}};
    if (lease != 0)
        rq["lease"] = std::to_string(lease);
    return revision_of(parse(call("/v3/kv/put", rq.dump())));
}

std::vector<Kv> Client::get(std::string_view key, int64_t *revision)
{
    json rq = {{"key", base64_encode(key)}};
    json j = parse(call("/v3/kv/range", rq.dump()));
    if (revision)
        *revision = revision_of(j);
    std::vector<Kv> out;
    if (auto it = j.find("kvs"); it != j.end() && it->is_array())
        for (const auto &kv : *it)
            out.push_back(kv_of(kv));
    return out;
}

std::vector<Kv> Client::get_prefix(std::string_view prefix, int64_t *revision)
{
    json rq = {{"key", base64_encode(prefix)}, {"range_end", base64_encode(prefix_end(prefix))}};
    json j = parse(call("/v3/kv/range", rq.dump()));
    if (revision)
        *revision = revision_of(j);
    std::vector<Kv> out;
    if (auto it = j.find("kvs"); it != j.end() && it->is_array())
        for (const auto &kv : *it)
            out.push_back(kv_of(kv));
    return out;
}

int64_t Client::del(std::string_view key)
{
    json rq = {{"key", base64_encode(key)}};
    return i64(parse(call("/v3/kv/deleterange", rq.dump())), "deleted");
}

int64_t Client::del_prefix(std::string_view prefix)
{
    json rq = {{"key", base64_encode(prefix)}, {"range_end", base64_encode(prefix_end(prefix))}};
    return i64(parse(call("/v3/kv/deleterange", rq.dump())), "deleted");
}

int64_t Client::lease_grant(int64_t ttl_s)
{
    if (ttl_s <= 0)
        throw std::invalid_argument("etcd: a lease's TTL must be positive");
    json rq = {{"TTL", std::to_string(ttl_s)}, {"ID", "0"}};
    json j = parse(call("/v3/lease/grant", rq.dump()));
    if (j.contains("error") && j["error"].is_string() && !j["error"].get<std::string>().empty())
        throw Error("etcd: lease grant: " + j["error"].get<std::string>());
    int64_t id = i64(j, "ID");
    if (id == 0)
        throw Error("etcd: lease grant answered no ID");
    return id;
}

int64_t Client::lease_keepalive(int64_t lease)
{
    json rq = {{"ID", std::to_string(lease)}};
    std::string body = call("/v3/lease/keepalive", rq.dump());
    // A stream of one message: {"result": {...}} (newline-terminated).
    json j = parse(body.substr(0, body.find('\n')));
    auto r = j.find("result");
    if (r == j.end() || !r->is_object()) {
        if (auto e = j.find("error"); e != j.end())
            throw Error("etcd: lease keepalive: " + e->dump());
        throw Error("etcd: lease keepalive: no result in '" + body.substr(0, 200) + "'");
    }
    return i64(*r, "TTL");
}

void Client::lease_revoke(int64_t lease)
{
    json rq = {{"ID", std::to_string(lease)}};
    parse(call("/v3/lease/revoke", rq.dump()));
}

bool Client::put_if_absent(std::string_view key, std::string_view value, int64_t lease)
{
    const std::string k = base64_encode(key);
    json put = {{"key", k}, {"value", base64_encode(value)}};
    if (lease != 0)
        put["lease"] = std::to_string(lease);
    json rq = {
        {"compare",
         json::array(
             {{{"target", "CREATE"}, {"result", "EQUAL"}, {"key", k}, {"create_revision", "0"}}})},
        {"success", json::array({{{"request_put", put}}})},
    };
    json j = parse(call("/v3/kv/txn", rq.dump()));
    auto s = j.find("succeeded");
    return s != j.end() && s->is_boolean() && s->get<bool>();
}

namespace {

struct WatchState {
    std::string buf;
    bool created = false;
    bool stop = false; // the caller is done
    std::string error; // the stream said why it ended
    const std::function<bool(const std::vector<Event> &)> *on_events = nullptr;
    const std::function<bool()> *keep_going = nullptr;
};

// One {"result": ...} message of the watch stream.
void watch_message(WatchState &w, const std::string &line)
{
    json j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
        w.error = "watch: not JSON: '" + line.substr(0, 200) + "'";
        return;
    }
    auto r = j.find("result");
    if (r == j.end() || !r->is_object()) {
        w.error = "watch: " + line.substr(0, 200);
        return;
    }
    if (r->value("created", false))
        w.created = true;
    if (i64(*r, "compact_revision") != 0) {
        w.error =
            "watch: revision compacted (now " + std::to_string(i64(*r, "compact_revision")) + ")";
        return;
    }
    if (r->value("canceled", false)) {
        w.error = "watch canceled: " + r->value("cancel_reason", std::string("no reason"));
        return;
    }
    auto evs = r->find("events");
    if (evs == r->end() || !evs->is_array() || evs->empty())
        return; // created, progress
    std::vector<Event> batch;
    for (const auto &e : *evs) {
        Event ev;
        ev.type = e.value("type", std::string("PUT")) == "DELETE" ? Event::DELETE : Event::PUT;
        if (auto kv = e.find("kv"); kv != e.end())
            ev.kv = kv_of(*kv);
        batch.push_back(std::move(ev));
    }
    if (!(*w.on_events)(batch) || !(*w.keep_going)())
        w.stop = true;
}

size_t watch_write(char *p, size_t size, size_t n, void *user)
{
    auto &w = *static_cast<WatchState *>(user);
    w.buf.append(p, size * n);
    size_t nl;
    while (!w.stop && w.error.empty() && (nl = w.buf.find('\n')) != std::string::npos) {
        std::string line = w.buf.substr(0, nl);
        w.buf.erase(0, nl + 1);
        if (!line.empty())
            watch_message(w, line);
    }
    return w.stop || !w.error.empty() ? 0 : size * n; // 0 ends the transfer
}

int watch_progress(void *user, curl_off_t, curl_off_t, curl_off_t, curl_off_t)
{
    auto &w = *static_cast<WatchState *>(user);
    if (!(*w.keep_going)())
        w.stop = true;
    return w.stop ? 1 : 0;
}

} // namespace

void Client::watch_prefix(std::string_view prefix, int64_t start_revision,
                          const std::function<bool(const std::vector<Event> &)> &on_events,
                          const std::function<bool()> &keep_going)
{
    json create = {{"key", base64_encode(prefix)},
                   {"range_end", base64_encode(prefix_end(prefix))}};
    if (start_revision > 0)
        create["start_revision"] = std::to_string(start_revision);
    const std::string body = json{{"create_request", create}}.dump();
    const std::string url = "http://" + opts_.endpoints[next_] + "/v3/watch";

    CURL *h = curl_easy_init();
    if (h == nullptr)
        throw Error("etcd: curl_easy_init failed");
    curl_slist *hdrs = curl_slist_append(nullptr, "Content-Type: application/json");
    hdrs = curl_slist_append(hdrs, "Expect:");
    WatchState w;
    w.on_events = &on_events;
    w.keep_going = &keep_going;
    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, opts_.connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, long(body.size()));
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, watch_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &w);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, watch_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, &w);
    // TCP keepalive: a member that vanishes without a FIN is noticed.
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPIDLE, 2L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPINTVL, 1L);
    CURLcode rc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    if (w.stop)
        return;
    if (rc != CURLE_OK && w.error.empty())
        next_ = (next_ + 1) % opts_.endpoints.size(); // try another member next time
    if (!w.error.empty())
        throw Error("etcd: " + w.error);
    if (rc != CURLE_OK)
        throw Error("etcd: watch on " + url + ": " + curl_easy_strerror(rc));
    throw Error("etcd: watch on " + url + " ended (HTTP " + std::to_string(status) + ")");
}

} // namespace coho::game::etcd
