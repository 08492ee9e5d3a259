// SPDX-License-Identifier: MIT
// Rendezvous (highest random weight) hashing: a key goes to the node whose hash of
// (node name, key) is highest, so adding or removing a node moves only the keys that node
// gains or loses.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace coho::game {

// splitmix64's finaliser: a good 64-bit mix, cheap.
inline uint64_t mix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

inline uint64_t fnv1a(const std::string &s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (char c : s)
        h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
    return h;
}

// The index in `node_hashes` (fnv1a of each node's name, e.g. "HOST:PORT") of the node that
// owns `key` among those with `up[i]` true; -1 when none is up.
inline int rendezvous_pick(const std::vector<uint64_t> &node_hashes, const std::vector<bool> &up,
                           uint64_t key)
{
    int best = -1;
    uint64_t best_w = 0;
    for (size_t i = 0; i < node_hashes.size(); i++) {
        if (!up[i])
            continue;
        uint64_t w = mix64(node_hashes[i] ^ mix64(key));
        if (best < 0 || w > best_w) {
            best = int(i);
            best_w = w;
        }
    }
    return best;
}

} // namespace coho::game
