// SPDX-License-Identifier: MIT
// Scene calls as the gateway sees them, without the schema (game.proto): routes 30-32 carry
// their scene id in field 1 (a varint) and, for enter and move, the position in field 2 (a Pos
// message). The gateway routes them by rendezvous hashing on the scene id (scene_key), remembers
// each session's position, and builds scene.enter / scene.leave payloads on a player's behalf.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "rendezvous.hpp"
#include "wire.hpp"

namespace coho::game {

inline bool is_scene_route(uint16_t route)
{
    return route == wire::R_SCENE_ENTER || route == wire::R_SCENE_MOVE ||
           route == wire::R_SCENE_LEAVE;
}

// The rendezvous key of scene `scene`: a key space of its own (salted), so that scene n and uid
// n go to independent nodes.
inline uint64_t scene_key(uint32_t scene)
{
    return mix64(0x53434e4553434e45ull ^ scene);
}

namespace pbwire {

// One varint at `*p` (advanced past it); false when it runs past `end` or over 10 bytes.
inline bool varint(const unsigned char *&p, const unsigned char *end, uint64_t *v)
{
    uint64_t x = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (p == end)
            return false;
        const unsigned char b = *p++;
        x |= uint64_t(b & 0x7f) << shift;
        if ((b & 0x80) == 0) {
            *v = x;
            return true;
        }
    }
    return false;
}

inline void put_varint(std::string &out, uint64_t v)
{
    while (v >= 0x80) {
        out.push_back(char(v | 0x80));
        v >>= 7;
    }
    out.push_back(char(v));
}

// Calls f(field, wire_type, value, bytes) for every field of a serialized message: `value` for
// varints, `bytes` for length-delimited fields (fixed-size ones are skipped). False when the
// message is malformed (a truncated field, a group, field number 0) or f returns false.
template <class F>
bool each_field(std::string_view msg, F &&f)
{
    auto p = reinterpret_cast<const unsigned char *>(msg.data());
    const unsigned char *end = p + msg.size();
    while (p != end) {
        uint64_t key = 0, v = 0;
        if (!varint(p, end, &key) || (key >> 3) == 0 || (key >> 3) > 0x1fffffff)
            return false;
        const uint32_t field = uint32_t(key >> 3), type = uint32_t(key & 7);
        std::string_view bytes;
        switch (type) {
        case 0:
            if (!varint(p, end, &v))
                return false;
            break;
        case 1:
        case 5: {
            const size_t n = type == 1 ? 8 : 4;
            if (size_t(end - p) < n)
                return false;
            p += n;
            break;
        }
        case 2:
            if (!varint(p, end, &v) || v > uint64_t(end - p))
                return false;
            bytes = std::string_view(reinterpret_cast<const char *>(p), size_t(v));
            p += v;
            break;
        default:
            return false; // groups (3, 4) and undefined types
        }
        if (!f(field, type, v, bytes))
            return false;
    }
    return true;
}

} // namespace pbwire

// The scene id (field 1) of a scene request, and in *pos the bytes of its position (field 2,
// every occurrence, concatenated: protobuf merges repeated occurrences of a message field the
// same way). False when the payload is malformed, field 1 has another wire type, or the id is
// missing, 0 (proto3 cannot tell 0 from missing: scene ids start at 1) or wider than 32 bits.
inline bool parse_scene_call(std::string_view payload, uint32_t *scene, std::string *pos)
{
    uint64_t id = 0;
    pos->clear();
    const bool ok = pbwire::each_field(
        payload, [&](uint32_t field, uint32_t type, uint64_t v, std::string_view bytes) {
            if (field == 1) {
                if (type != 0)
                    return false;
                id = v;
            } else if (field == 2 && type == 2) {
                pos->append(bytes);
            }
            return true;
        });
    if (!ok || id == 0 || id > UINT32_MAX)
        return false;
    *scene = uint32_t(id);
    return true;
}

// A SceneEnterReq (or SceneLeaveReq: pos empty) payload: scene in field 1, pos bytes in field 2.
inline std::string scene_payload(uint32_t scene, std::string_view pos, bool with_pos)
{
    std::string out;
    out.push_back(0x08);
    pbwire::put_varint(out, scene);
    if (with_pos) {
        out.push_back(0x12);
        pbwire::put_varint(out, pos.size());
        out.append(pos);
    }
    return out;
}

// An AoiBatch (route 33) that tells of every entity of a SceneEnterResp as `entered`: the
// response's field 1 (others) becomes the batch's field 2, the scene goes in field 1. False when
// the response is malformed; *out is empty when it names no one.
inline bool enter_resp_as_aoi(uint32_t scene, std::string_view resp, std::string *out)
{
    std::string entered;
    const bool ok = pbwire::each_field(
        resp, [&](uint32_t field, uint32_t type, uint64_t, std::string_view bytes) {
            if (field == 1 && type == 2) {
                entered.push_back(0x12);
                pbwire::put_varint(entered, bytes.size());
                entered.append(bytes);
            }
            return true;
        });
    out->clear();
    if (!ok)
        return false;
    if (!entered.empty())
        *out = scene_payload(scene, {}, false) + entered;
    return true;
}

} // namespace coho::game
