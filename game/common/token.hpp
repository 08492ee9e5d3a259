// SPDX-License-Identifier: MIT
// Login tokens: the lowercase hex HMAC-SHA256 of the uid written in decimal, keyed with the
// shared secret, as a login server signs them (DESIGN.md, "Login").
#pragma once

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace coho::game {

inline std::string login_token(std::string_view secret, uint64_t uid)
{
    std::string msg = std::to_string(uid);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    if (!HMAC(EVP_sha256(), secret.data(), int(secret.size()),
              reinterpret_cast<const unsigned char *>(msg.data()), msg.size(), mac, &mac_len))
        return {};
    static const char hex[] = "0123456789abcdef";
    std::string out(mac_len * 2, '0');
    for (unsigned i = 0; i < mac_len; i++) {
        out[2 * i] = hex[mac[i] >> 4];
        out[2 * i + 1] = hex[mac[i] & 15];
    }
    return out;
}

// Constant time in the token's length: no early exit on the first differing byte.
inline bool token_ok(std::string_view secret, uint64_t uid, std::string_view token)
{
    std::string want = login_token(secret, uid);
    if (want.empty() || token.size() != want.size())
        return false;
    return CRYPTO_memcmp(want.data(), token.data(), want.size()) == 0;
}

} // namespace coho::game
