// SPDX-License-Identifier: MIT
// What logic nodes send the gateway (node.hpp): pushes to a list of uids, to a named group or
// to everyone, and group membership. A node sends them on one link so that they arrive in the
// order it sent them; each is applied as it arrives, in the link's receive coroutine.
//
// Every push carries the recipient session's own push seq (the wire format's rule), so a group
// push is one frame per member; the payload is built once.
#include "bytes.hpp"
#include "gate.hpp"
#include "node.hpp"

namespace coho::game::gate {

namespace {

std::vector<SessionPtr> sessions_of_uids(Reader &r, uint32_t n)
{
    std::vector<SessionPtr> out;
    std::lock_guard<std::mutex> g(gate().mu);
    for (uint32_t i = 0; i < n && r.ok(); i++) {
        uint64_t uid = r.u64();
        auto it = gate().by_uid.find(uid);
        if (r.ok() && it != gate().by_uid.end())
            out.push_back(it->second);
    }
    return out;
}

std::vector<SessionPtr> sessions_of_group(std::string_view name)
{
    std::vector<SessionPtr> out;
    std::lock_guard<std::mutex> g(gate().mu);
    auto git = gate().groups.find(std::string(name));
    if (git == gate().groups.end())
        return out;
    for (uint64_t uid : git->second) {
        auto it = gate().by_uid.find(uid);
        if (it != gate().by_uid.end())
            out.push_back(it->second);
    }
    return out;
}

std::vector<SessionPtr> all_sessions()
{
    std::vector<SessionPtr> out;
    std::lock_guard<std::mutex> g(gate().mu);
    out.reserve(gate().by_uid.size());
    for (auto &[uid, s] : gate().by_uid)
        out.push_back(s);
    return out;
}

void push_all_of(const std::vector<SessionPtr> &to, uint16_t route, std::string_view payload)
{
    for (const SessionPtr &s : to)
        push_to(s, route, payload);
}

// GROUP_JOIN / GROUP_LEAVE: the uid's current session joins or leaves group `name`.
void membership(uint64_t uid, std::string_view name, bool join)
{
    std::lock_guard<std::mutex> g(gate().mu);
    auto it = gate().by_uid.find(uid);
    if (it == gate().by_uid.end())
        return;
    Session &s = *it->second;
    std::string n(name);
    if (join) {
        s.groups.insert(n);
        gate().groups[n].insert(uid);
        return;
    }
    s.groups.erase(n);
    auto git = gate().groups.find(n);
    if (git == gate().groups.end())
        return;
    git->second.erase(uid);
    if (git->second.empty())
        gate().groups.erase(git);
}

bool bad(const char *what)
{
    gate().stats.node_bad_frames++;
    coho_log_warn("gate: bad frame from a logic node: %s", what);
    return false;
}

bool apply_request(const node::Header &h, std::string_view body)
{
    Reader r(body);
    uint16_t route = uint16_t(h.arg);
    switch (h.type) {
    case node::PUSH_UIDS: {
        uint32_t n = r.u32();
        if (!r.ok() || r.left() / 8 < n)
            return bad("PUSH_UIDS shorter than its uid list");
        auto to = sessions_of_uids(r, n);
        push_all_of(to, route, r.rest());
        return true;
    }
    case node::PUSH_GROUP: {
        std::string_view name = r.bytes(r.u16());
        if (!r.ok())
            return bad("PUSH_GROUP shorter than its group name");
        push_all_of(sessions_of_group(name), route, r.rest());
        return true;
    }
    case node::PUSH_ALL:
        push_all_of(all_sessions(), route, body);
        return true;
    case node::GROUP_JOIN:
    case node::GROUP_LEAVE: {
        uint64_t uid = r.u64();
        std::string_view name = r.bytes(r.u16());
        if (!r.ok() || name.size() > node::kMaxGroupName)
            return bad("GROUP_JOIN/GROUP_LEAVE body malformed");
        membership(uid, name, h.type == node::GROUP_JOIN);
        return true;
    }
    default:
        return bad("unknown request type");
    }
}

} // namespace

void on_node_frame(std::string_view frame)
{
    gate().stats.node_frames++;
    node::Header h;
    std::string_view body;
    if (!node::parse(frame, &h, &body)) {
        bad("header");
        return;
    }
    apply_request(h, body);
}

} // namespace coho::game::gate
