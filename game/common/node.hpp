// SPDX-License-Identifier: MIT
// The protocol between a gateway and its logic nodes, over socket_ext pools: the gateway keeps
// a connect pool to every node (coho_tdp_connect), a node serves a listen pool
// (coho_tdp_listen). Frames use the sock protocol's 24-byte header (DESIGN.md, "Wire format of
// the sock_svr test protocol": magic | type | seq | body_len | arg, little-endian; responses
// carry type | COHO_SOCK_RESPONSE and arg = status) with these types:
//
// gateway -> node, requests (seq = the socket_ext request id; every one is answered):
//   HELLO        body: gate_id u64                       first frame on every connection; the
//                                                          node learns which gateway it is
//   LOAD         body: uid u64 | session u64             the player logs in: load it
//                                                          (response arg = status, no body)
//   CALL         arg: route; body: uid u64 | session u64 | payload
//                                                          response arg = status, body = payload
//   SESSION_END  body: uid u64 | session u64             the session ended (logout, kicked,
//                                                          grace expired): leave channels,
//                                                          scenes; response arg = 0
// node -> gateway, one-way requests (seq 0, never answered), sent on one connection per
// gateway so that their order is kept:
//   PUSH_UIDS    arg: route; body: n u32 | uid u64 × n | payload
//   PUSH_GROUP   arg: route; body: name_len u16 | name | payload
//   PUSH_ALL     arg: route; body: payload
//   GROUP_JOIN   body: uid u64 | name_len u16 | name    the uid's session joins the gateway's
//   GROUP_LEAVE  body: uid u64 | name_len u16 | name    named group (chat channel, scene)
//
// Statuses are the client protocol's (wire.hpp). Groups live in the gateways (net/'s
// broadcast groups: a push to a group is encoded once per gateway), so channel membership is
// the same whichever node a member's calls go to.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "bytes.hpp"

namespace coho::game::node {

constexpr uint32_t kMagic = 0x4F484F43u;
constexpr size_t kHeaderLen = 24;
constexpr uint32_t kResponseBit = 0x80u;
constexpr size_t kMaxGroupName = 255;

enum Type : uint32_t {
    HELLO = 1,
    LOAD = 2,
    CALL = 3,
    SESSION_END = 4,
    PUSH_UIDS = 0x10,
    PUSH_GROUP = 0x11,
    PUSH_ALL = 0x12,
    GROUP_JOIN = 0x13,
    GROUP_LEAVE = 0x14,
};

struct Header {
    uint32_t type = 0;
    uint64_t seq = 0;
    uint32_t body_len = 0;
    uint32_t arg = 0;
};

// The 24-byte header then the body, ready to send.
inline std::string frame(uint32_t type, uint64_t seq, uint32_t arg, std::string_view body)
{
    std::string f;
    f.reserve(kHeaderLen + body.size());
    put_u32(f, kMagic);
    put_u32(f, type);
    put_u64(f, seq);
    put_u32(f, uint32_t(body.size()));
    put_u32(f, arg);
    f.append(body);
    return f;
}

// Parses the header of a whole frame; false on a wrong magic or a body_len that disagrees
// with the frame's size.
inline bool parse(std::string_view whole, Header *h, std::string_view *body)
{
    if (whole.size() < kHeaderLen)
        return false;
    auto p = reinterpret_cast<const unsigned char *>(whole.data());
    if (get_u32(p) != kMagic)
        return false;
    h->type = get_u32(p + 4);
    h->seq = get_u64(p + 8);
    h->body_len = get_u32(p + 16);
    h->arg = get_u32(p + 20);
    if (h->body_len != whole.size() - kHeaderLen)
        return false;
    *body = whole.substr(kHeaderLen);
    return true;
}

inline std::string uid_session(uint64_t uid, uint64_t session, std::string_view payload = {})
{
    std::string b;
    put_u64(b, uid);
    put_u64(b, session);
    b.append(payload);
    return b;
}

inline std::string uid_group(uint64_t uid, std::string_view name)
{
    std::string b;
    put_u64(b, uid);
    put_u16(b, uint16_t(name.size()));
    b.append(name);
    return b;
}

} // namespace coho::game::node
