// SPDX-License-Identifier: MIT
#include "link.hpp"

#include <openssl/evp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <coho/net.h>

namespace coho::game::bots {

namespace {

constexpr size_t kReadChunk = 16 * 1024;
constexpr size_t kMaxHttpHeader = 8192;
constexpr char kWsGuid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

std::string base64(const unsigned char *p, size_t n)
{
    std::string out(4 * ((n + 2) / 3) + 1, '\0');
    int len = EVP_EncodeBlock(reinterpret_cast<unsigned char *>(out.data()), p, int(n));
    out.resize(size_t(len));
    return out;
}

// Sec-WebSocket-Accept for `key`: base64(SHA-1(key + GUID)).
std::string ws_accept(const std::string &key)
{
    std::string in = key + kWsGuid;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (!EVP_Digest(in.data(), in.size(), md, &md_len, EVP_sha1(), nullptr))
        return {};
    return base64(md, md_len);
}

std::string lower(std::string s)
{
    for (auto &c : s)
        c = char(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

// The value of header `name` (lowercase) in an HTTP response head, or "" when absent.
std::string header_value(const std::string &head, const std::string &name)
{
    size_t pos = 0;
    while ((pos = head.find("\r\n", pos)) != std::string::npos) {
        pos += 2;
        size_t end = head.find("\r\n", pos);
        if (end == std::string::npos)
            end = head.size();
        std::string line = head.substr(pos, end - pos);
        size_t colon = line.find(':');
        if (colon != std::string::npos && lower(line.substr(0, colon)) == name) {
            std::string v = line.substr(colon + 1);
            v.erase(0, v.find_first_not_of(" \t"));
            v.erase(v.find_last_not_of(" \t") + 1);
            return v;
        }
    }
    return {};
}

int remaining_ms(Clock::time_point deadline)
{
    if (deadline == Clock::time_point::max())
        return -1;
    auto left = deadline - Clock::now();
    if (left <= Clock::duration::zero())
        return 0;
    auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
    return int(std::min<int64_t>(ms, 1 << 30));
}

} // namespace

Link::Link(int fd, const LinkOptions &o, uint64_t seed) : fd_(fd), o_(o), rng_(seed) {}

Link::~Link()
{
    ::close(fd_);
}

std::unique_ptr<Link> Link::open(const LinkOptions &o, uint64_t seed, std::string &err)
{
    auto deadline = Clock::now() + std::chrono::milliseconds(o.connect_timeout_ms);
    int fd = coho_dial(o.host_port.c_str(), o.connect_timeout_ms);
    if (fd < 0) {
        err = "connect to " + o.host_port + ": " + std::strerror(errno);
        return nullptr;
    }
    std::unique_ptr<Link> l(new Link(fd, o, seed));
    if (o.ws && !l->upgrade(deadline, err))
        return nullptr;
    return l;
}

bool Link::write_all(std::string_view bytes, std::string &err)
{
    while (!bytes.empty()) {
        ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            err = std::string("send: ") + std::strerror(errno);
            return false;
        }
        bytes.remove_prefix(size_t(n));
    }
    return true;
}

ReadResult Link::fill(Clock::time_point deadline, std::string &err)
{
    for (;;) {
        pollfd p{fd_, POLLIN, 0};
        int r = ::poll(&p, 1, remaining_ms(deadline));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            err = std::string("poll: ") + std::strerror(errno);
            return ReadResult::CLOSED;
        }
        if (r == 0)
            return ReadResult::TIMEOUT;
        size_t had = in_.size();
        in_.resize(had + kReadChunk); // read straight into in_: no big buffer on the stack
        ssize_t n = ::read(fd_, in_.data() + had, kReadChunk);
        in_.resize(had + size_t(std::max<ssize_t>(n, 0)));
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            err = std::string("read: ") + std::strerror(errno);
            return ReadResult::CLOSED;
        }
        if (n == 0) {
            err = "the gateway closed the connection";
            return ReadResult::CLOSED;
        }
        return ReadResult::FRAME;
    }
}

bool Link::upgrade(Clock::time_point deadline, std::string &err)
{
    unsigned char raw[16];
    for (auto &b : raw)
        b = static_cast<unsigned char>(rng_());
    std::string key = base64(raw, sizeof raw);
    std::string host = o_.host_port;
    std::string req = "GET " + o_.ws_path + " HTTP/1.1\r\nHost: " + host +
                      "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
                      "\r\nSec-WebSocket-Version: 13\r\n\r\n";
    if (!write_all(req, err)) {
        err = "websocket upgrade: " + err;
        return false;
    }
    size_t end;
    while ((end = in_.find("\r\n\r\n")) == std::string::npos) {
        if (in_.size() > kMaxHttpHeader) {
            err = "websocket upgrade: response head longer than 8 KiB";
            return false;
        }
        ReadResult r = fill(deadline, err);
        if (r == ReadResult::TIMEOUT)
            err = "no answer";
        if (r != ReadResult::FRAME) {
            err = "websocket upgrade: " + err;
            return false;
        }
    }
    std::string head = in_.substr(0, end + 2);
    in_.erase(0, end + 4);
    std::string status = head.substr(0, head.find("\r\n"));
    if (status.rfind("HTTP/1.1 101", 0) != 0) {
        err = "websocket upgrade refused: '" + status + "'";
        return false;
    }
    if (header_value(head, "sec-websocket-accept") != ws_accept(key)) {
        err = "websocket upgrade: wrong Sec-WebSocket-Accept";
        return false;
    }
    return true;
}

bool Link::send_ws(uint8_t opcode, std::string_view payload, std::string &err)
{
    std::string f;
    f.reserve(payload.size() + 14);
    f.push_back(char(0x80 | opcode));
    if (payload.size() < 126) {
        f.push_back(char(0x80 | payload.size()));
    } else if (payload.size() <= 0xffff) {
        f.push_back(char(0x80 | 126));
        f.push_back(char(payload.size() >> 8));
        f.push_back(char(payload.size() & 0xff));
    } else {
        f.push_back(char(0x80 | 127));
        for (int i = 7; i >= 0; i--)
            f.push_back(char((uint64_t(payload.size()) >> (8 * i)) & 0xff));
    }
    uint32_t key = uint32_t(rng_());
    char mask[4];
    std::memcpy(mask, &key, 4);
    f.append(mask, 4);
    for (size_t i = 0; i < payload.size(); i++)
        f.push_back(char(payload[i] ^ mask[i & 3]));
    return write_all(f, err);
}

bool Link::send(std::string_view frame, std::string &err)
{
    return o_.ws ? send_ws(0x2, frame, err) : write_all(frame, err);
}

ReadResult Link::take_frame(std::string_view bytes, Frame &f, std::string &err) const
{
    if (bytes.size() < wire::kHeaderLen) {
        err = "a frame of " + std::to_string(bytes.size()) + " bytes, shorter than its header";
        return ReadResult::BAD;
    }
    f.h = wire::parse_header(reinterpret_cast<const unsigned char *>(bytes.data()));
    if (f.h.len < wire::kMinLen || f.h.len > o_.max_frame) {
        err =
            "frame len " + std::to_string(f.h.len) + " outside 8.." + std::to_string(o_.max_frame);
        return ReadResult::BAD;
    }
    if (bytes.size() != 4 + size_t(f.h.len)) {
        err = "a websocket message of " + std::to_string(bytes.size()) +
              " bytes carrying a frame of len " + std::to_string(f.h.len);
        return ReadResult::BAD;
    }
    f.body.assign(bytes.substr(wire::kHeaderLen));
    return ReadResult::FRAME;
}

ReadResult Link::read_tcp(Frame &f, Clock::time_point deadline, std::string &err)
{
    for (;;) {
        if (in_.size() >= 4) {
            uint32_t len = get_u32(reinterpret_cast<const unsigned char *>(in_.data()));
            if (len < wire::kMinLen || len > o_.max_frame) {
                err = "frame len " + std::to_string(len) + " outside 8.." +
                      std::to_string(o_.max_frame);
                return ReadResult::BAD;
            }
            if (in_.size() >= 4 + size_t(len)) {
                ReadResult r = take_frame(std::string_view(in_).substr(0, 4 + len), f, err);
                in_.erase(0, 4 + len);
                return r;
            }
        }
        ReadResult r = fill(deadline, err);
        if (r != ReadResult::FRAME)
            return r;
    }
}

ReadResult Link::read_ws(Frame &f, Clock::time_point deadline, std::string &err)
{
    for (;;) {
        // One WebSocket frame off the front of in_, if it is complete.
        if (in_.size() >= 2) {
            auto *p = reinterpret_cast<const unsigned char *>(in_.data());
            bool fin = p[0] & 0x80;
            uint8_t opcode = p[0] & 0x0f;
            if (p[0] & 0x70) {
                err = "websocket frame with reserved bits set";
                return ReadResult::BAD;
            }
            if (p[1] & 0x80) {
                err = "masked websocket frame from the server";
                return ReadResult::BAD;
            }
            uint64_t plen = p[1] & 0x7f;
            size_t hlen = 2;
            if (plen == 126) {
                hlen = 4;
                if (in_.size() >= hlen)
                    plen = uint64_t(p[2]) << 8 | p[3];
            } else if (plen == 127) {
                hlen = 10;
                if (in_.size() >= hlen) {
                    plen = 0;
                    for (int i = 0; i < 8; i++)
                        plen = plen << 8 | p[2 + i];
                }
            }
            if (in_.size() >= hlen) {
                if (plen > uint64_t(o_.max_frame) + 4) {
                    err = "websocket frame of " + std::to_string(plen) + " bytes";
                    return ReadResult::BAD;
                }
                if (in_.size() >= hlen + plen) {
                    std::string payload = in_.substr(hlen, size_t(plen));
                    in_.erase(0, hlen + size_t(plen));
                    switch (opcode) {
                    case 0x8: { // close
                        unsigned code = payload.size() >= 2 ? unsigned(uint8_t(payload[0])) << 8 |
                                                                  uint8_t(payload[1])
                                                            : 1005;
                        err = "websocket close, code " + std::to_string(code);
                        return ReadResult::CLOSED;
                    }
                    case 0x9: // ping
                        if (!send_ws(0xA, payload, err))
                            return ReadResult::CLOSED;
                        continue;
                    case 0xA: // pong
                        continue;
                    case 0x1:
                        err = "websocket text message";
                        return ReadResult::BAD;
                    case 0x2:
                    case 0x0:
                        if ((opcode == 0x2) == in_message_) {
                            err = opcode == 0x2 ? "websocket message inside a fragmented one"
                                                : "websocket continuation without a message";
                            return ReadResult::BAD;
                        }
                        message_ += payload;
                        if (message_.size() > size_t(o_.max_frame) + 4) {
                            err = "websocket message of more than " +
                                  std::to_string(size_t(o_.max_frame) + 4) + " bytes";
                            return ReadResult::BAD;
                        }
                        in_message_ = !fin;
                        if (fin) {
                            ReadResult r = take_frame(message_, f, err);
                            message_.clear();
                            return r;
                        }
                        continue;
                    default:
                        err = "websocket opcode " + std::to_string(opcode);
                        return ReadResult::BAD;
                    }
                }
            }
        }
        ReadResult r = fill(deadline, err);
        if (r != ReadResult::FRAME)
            return r;
    }
}

ReadResult Link::read(Frame &f, Clock::time_point deadline, std::string &err)
{
    return o_.ws ? read_ws(f, deadline, err) : read_tcp(f, deadline, err);
}

} // namespace coho::game::bots
