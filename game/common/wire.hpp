// SPDX-License-Identifier: MIT
// The game protocol between clients and the gateway (DESIGN.md, "Wire format of the game
// protocol"): every frame is `len u32 | type u16 | flags u16 | seq u32 | body`, little-endian,
// where len counts the bytes after itself (at least 8). Over WebSocket one binary message
// carries exactly one frame.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>

#include "bytes.hpp"

namespace coho::game::wire {

constexpr size_t kHeaderLen = 12; // len + type + flags + seq
constexpr uint32_t kMinLen = 8;   // len of a frame with an empty body
constexpr uint32_t kDefaultMaxFrame = 65536;
constexpr uint16_t kResponse = 0x8000;

enum Type : uint16_t {
    LOGIN = 1,
    PING = 2,
    REBIND = 3,
    CALL = 4,
    PUSH = 5, // gateway -> client only
    ACK = 6,
    KICK = 7, // gateway -> client only
    LOGOUT = 8,
};

enum Status : uint32_t {
    OK = 0,
    BAD_TOKEN = 1,
    UNKNOWN_SESSION = 2, // also: a CALL before LOGIN
    NO_NODE = 3,
    TIMEOUT = 4,
    UNKNOWN_ROUTE = 5,
    BAD_PAYLOAD = 6,
    SERVER_ERROR = 7,
};

enum Kick : uint32_t {
    KICK_IDLE = 1,
    KICK_ELSEWHERE = 2,
    KICK_SLOW = 3,
    KICK_PROTOCOL = 4,
    KICK_SHUTDOWN = 5,
    KICK_RATE = 6,
    KICK_DENIED = 7,
};

enum Route : uint16_t {
    R_ECHO = 1,
    R_PUSH_SELF = 2,
    R_PLAYER_GET = 10,
    R_PLAYER_ADD = 11,
    R_CHAT_JOIN = 20,
    R_CHAT_SAY = 21, // also the route of chat pushes
    R_CHAT_LEAVE = 22,
    R_SCENE_ENTER = 30,
    R_SCENE_MOVE = 31,
    R_SCENE_LEAVE = 32,
    R_SCENE_AOI = 33, // pushes only
};

constexpr size_t kResumeKeyLen = 16;

struct Header {
    uint32_t len = 0; // bytes after the len field
    uint16_t type = 0;
    uint16_t flags = 0;
    uint32_t seq = 0;
    size_t body_len() const { return len - 8; }
};

// The header of the frame at `p` (at least kHeaderLen bytes). Checks nothing.
inline Header parse_header(const unsigned char *p)
{
    Header h;
    h.len = get_u32(p);
    h.type = get_u16(p + 4);
    h.flags = get_u16(p + 6);
    h.seq = get_u32(p + 8);
    return h;
}

// Appends one frame to `out`.
inline void append_frame(std::string &out, uint16_t type, uint32_t seq, std::string_view body)
{
    put_u32(out, uint32_t(8 + body.size()));
    put_u16(out, type);
    put_u16(out, 0);
    put_u32(out, seq);
    out.append(body);
}

inline std::string frame(uint16_t type, uint32_t seq, std::string_view body = {})
{
    std::string f;
    f.reserve(kHeaderLen + body.size());
    append_frame(f, type, seq, body);
    return f;
}

// A response whose status is not OK carries the status alone.
inline std::string error_response(uint16_t req_type, uint32_t seq, uint32_t status)
{
    std::string b;
    put_u32(b, status);
    return frame(uint16_t(req_type | kResponse), seq, b);
}

inline std::string kick(uint32_t reason)
{
    std::string b;
    put_u32(b, reason);
    return frame(KICK, 0, b);
}

// Bodies of the client's requests.
inline std::string login_body(uint64_t uid, std::string_view token)
{
    std::string b;
    put_u64(b, uid);
    put_u16(b, uint16_t(token.size()));
    b.append(token);
    return b;
}
inline std::string rebind_body(uint64_t session, std::string_view resume_key,
                               uint32_t last_push_seq)
{
    std::string b;
    put_u64(b, session);
    b.append(resume_key.substr(0, kResumeKeyLen));
    b.append(kResumeKeyLen - std::min(kResumeKeyLen, resume_key.size()), '\0');
    put_u32(b, last_push_seq);
    return b;
}
inline std::string call_body(uint16_t route, std::string_view payload)
{
    std::string b;
    put_u16(b, route);
    b.append(payload);
    return b;
}

} // namespace coho::game::wire
