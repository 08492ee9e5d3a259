// SPDX-License-Identifier: MIT
// Chat channels. A channel is a named group in the gateways ("chat:" + channel): joining adds
// the member's session to the group of its gateway, saying pushes one message to the group on
// every gateway (each encodes it once for all its members). This node remembers which channels
// its callers joined, so that a session's end leaves them.
#include <cinttypes>

#include <coho.h>

#include "game.pb.h"
#include "game/logic/node.hpp"

namespace coho::game::logic {

namespace {

constexpr size_t kMaxChannel = 64;
constexpr size_t kMaxText = 1024;

bool valid_channel(const std::string &ch)
{
    return !ch.empty() && ch.size() <= kMaxChannel;
}

std::string group_of(const std::string &channel)
{
    return "chat:" + channel;
}

} // namespace

uint32_t chat_join(Node &n, const Call &c, std::string &out)
{
    ChatJoinReq req;
    if (!req.ParseFromArray(c.payload.data(), int(c.payload.size())) ||
        !valid_channel(req.channel()))
        return wire::BAD_PAYLOAD;
    n.channels_of[c.uid].insert(req.channel());
    n.group_join(c.gate, c.uid, group_of(req.channel()));
    ChatJoinResp resp;
    resp.set_channel(req.channel());
    resp.SerializeToString(&out);
    return wire::OK;
}

uint32_t chat_say(Node &n, const Call &c, std::string &out)
{
    ChatSayReq req;
    if (!req.ParseFromArray(c.payload.data(), int(c.payload.size())) ||
        !valid_channel(req.channel()) || req.text().size() > kMaxText)
        return wire::BAD_PAYLOAD;
    ChatMsg msg;
    msg.set_channel(req.channel());
    msg.set_from_uid(c.uid);
    msg.set_text(req.text());
    msg.set_msg_id(++n.channel_msg_id[req.channel()]);
    n.push_group_all(wire::R_CHAT_SAY, group_of(req.channel()), msg.SerializeAsString());
    ChatSayResp resp;
    resp.set_msg_id(msg.msg_id());
    resp.SerializeToString(&out);
    return wire::OK;
}

uint32_t chat_leave(Node &n, const Call &c, std::string &out)
{
    ChatLeaveReq req;
    if (!req.ParseFromArray(c.payload.data(), int(c.payload.size())) ||
        !valid_channel(req.channel()))
        return wire::BAD_PAYLOAD;
    auto it = n.channels_of.find(c.uid);
    if (it != n.channels_of.end()) {
        it->second.erase(req.channel());
        if (it->second.empty())
            n.channels_of.erase(it);
    }
    n.group_leave(c.gate, c.uid, group_of(req.channel()));
    ChatLeaveResp().SerializeToString(&out);
    return wire::OK;
}

void chat_session_end(Node &n, uint64_t uid, uint64_t gate)
{
    auto it = n.channels_of.find(uid);
    if (it == n.channels_of.end())
        return;
    const std::set<std::string> channels = std::move(it->second);
    n.channels_of.erase(it);
    for (const std::string &ch : channels)
        n.group_leave(gate, uid, group_of(ch));
}

} // namespace coho::game::logic
