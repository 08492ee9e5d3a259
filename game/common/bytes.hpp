// SPDX-License-Identifier: MIT
// Little-endian byte writing and bounds-checked reading, shared by the client protocol
// (wire.hpp) and the gateway <-> logic protocol (node.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace coho::game {

inline void put_u16(std::string &out, uint16_t v)
{
    char b[2] = {char(v & 0xff), char(v >> 8)};
    out.append(b, 2);
}
inline void put_u32(std::string &out, uint32_t v)
{
    char b[4];
    for (int i = 0; i < 4; i++)
        b[i] = char((v >> (8 * i)) & 0xff);
    out.append(b, 4);
}
inline void put_u64(std::string &out, uint64_t v)
{
    char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = char((v >> (8 * i)) & 0xff);
    out.append(b, 8);
}
inline uint16_t get_u16(const unsigned char *p)
{
    return uint16_t(p[0] | (p[1] << 8));
}
inline uint32_t get_u32(const unsigned char *p)
{
    return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}
inline uint64_t get_u64(const unsigned char *p)
{
    return uint64_t(get_u32(p)) | uint64_t(get_u32(p + 4)) << 32;
}

// Reads fields off the front of a byte view; every read checks the bounds first and a failed
// read leaves `ok()` false for good, so a parser checks once at the end:
//     Reader r(body); uint64_t uid = r.u64(); auto tok = r.bytes(r.u16());
//     if (!r.ok()) return bad_payload();
class Reader {
public:
    explicit Reader(std::string_view b)
        : p_(reinterpret_cast<const unsigned char *>(b.data())), n_(b.size())
    {}
    // A Reader views bytes it does not own: reading a temporary string would read freed memory.
    explicit Reader(std::string &&) = delete;
    uint16_t u16() { return take(2) ? get_u16(p_ - 2) : 0; }
    uint32_t u32() { return take(4) ? get_u32(p_ - 4) : 0; }
    uint64_t u64() { return take(8) ? get_u64(p_ - 8) : 0; }
    std::string_view bytes(size_t n)
    {
        if (!take(n))
            return {};
        return {reinterpret_cast<const char *>(p_ - n), n};
    }
    std::string_view rest()
    {
        std::string_view v(reinterpret_cast<const char *>(p_), ok_ ? n_ : 0);
        p_ += n_;
        n_ = 0;
        return v;
    }
    size_t left() const { return ok_ ? n_ : 0; }
    bool ok() const { return ok_; }

private:
    bool take(size_t n)
    {
        if (!ok_ || n_ < n) {
            ok_ = false;
            return false;
        }
        p_ += n;
        n_ -= n;
        return true;
    }
    const unsigned char *p_;
    size_t n_;
    bool ok_ = true;
};

} // namespace coho::game
