// SPDX-License-Identifier: MIT
// A bot's connection to the gateway: game frames (wire.hpp) over plain TCP or, with --ws, one
// frame per binary WebSocket message (the client side of RFC 6455: HTTP/1.1 upgrade, masked
// frames, ping answered with pong, close ends the link). Every call blocks the calling
// coroutine only: the fd is a hooked socket, so poll/read/write park.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <string_view>

#include "wire.hpp"

namespace coho::game::bots {

using Clock = std::chrono::steady_clock;

struct Frame {
    wire::Header h;
    std::string body;
};

enum class ReadResult {
    FRAME,   // `f` holds one complete frame
    TIMEOUT, // the deadline passed with no complete frame
    CLOSED,  // the peer closed or reset the connection (`err` says how)
    BAD,     // bytes that are not the game protocol (`err` says what); drop the link
};

struct LinkOptions {
    std::string host_port;         // the gateway's TCP or WebSocket listener
    bool ws = false;               // WebSocket instead of plain TCP
    std::string ws_path = "/";     // the upgrade request's path
    uint32_t max_frame = 1u << 20; // largest `len` accepted from the gateway
    int64_t connect_timeout_ms = 5000;
};

class Link {
public:
    // Connects (and upgrades, with ws) before `deadline`. Returns null with `err` set on failure.
    static std::unique_ptr<Link> open(const LinkOptions &o, uint64_t seed, std::string &err);

    Link(const Link &) = delete;
    Link &operator=(const Link &) = delete;
    ~Link();

    // Sends one whole frame (header included). False with `err` set when the socket failed.
    bool send(std::string_view frame, std::string &err);
    // Reads the next frame, waiting until `deadline` at most.
    ReadResult read(Frame &f, Clock::time_point deadline, std::string &err);

private:
    Link(int fd, const LinkOptions &o, uint64_t seed);
    bool write_all(std::string_view bytes, std::string &err);
    // Appends bytes read from the socket to in_, waiting until `deadline`.
    ReadResult fill(Clock::time_point deadline, std::string &err);
    bool upgrade(Clock::time_point deadline, std::string &err);
    ReadResult read_tcp(Frame &f, Clock::time_point deadline, std::string &err);
    ReadResult read_ws(Frame &f, Clock::time_point deadline, std::string &err);
    // Checks that `bytes` is exactly one game frame and moves it into `f`.
    ReadResult take_frame(std::string_view bytes, Frame &f, std::string &err) const;
    bool send_ws(uint8_t opcode, std::string_view payload, std::string &err);

    int fd_;
    LinkOptions o_;
    std::mt19937_64 rng_; // WebSocket masking keys
    std::string in_;      // bytes read and not consumed yet
    std::string message_; // a fragmented WebSocket message being assembled
    bool in_message_ = false;
};

} // namespace coho::game::bots
