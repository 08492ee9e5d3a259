// SPDX-License-Identifier: MIT
// Who may connect: --deny and --allow lists of addresses and CIDR blocks (one a line, '#'
// comments; reloaded on SIGHUP), --max-conns over every thread and listener, --per-ip-max. A
// connection refused gets KICK 7 and is closed.
#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>
#include <fstream>

#include "gate.hpp"

namespace coho::game::gate {

namespace {

// An address as 16 bytes (IPv4 as ::ffff:a.b.c.d) and the prefix length over those 16.
bool to16(const sockaddr_storage &ss, unsigned char out[16])
{
    if (ss.ss_family == AF_INET) {
        std::memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        std::memcpy(out + 12, &reinterpret_cast<const sockaddr_in *>(&ss)->sin_addr, 4);
        return true;
    }
    if (ss.ss_family == AF_INET6) {
        std::memcpy(out, &reinterpret_cast<const sockaddr_in6 *>(&ss)->sin6_addr, 16);
        return true;
    }
    return false;
}

bool in_block(const Cidr &b, const unsigned char a[16])
{
    unsigned full = b.bits / 8, rest = b.bits % 8;
    if (std::memcmp(a, b.addr, full) != 0)
        return false;
    if (rest == 0)
        return true;
    unsigned char mask = uint8_t(0xff << (8 - rest));
    return (a[full] & mask) == (b.addr[full] & mask);
}

bool in_list(const std::vector<Cidr> &l, const unsigned char a[16])
{
    for (const Cidr &b : l)
        if (in_block(b, a))
            return true;
    return false;
}

std::string text_of(const unsigned char a[16])
{
    char buf[INET6_ADDRSTRLEN] = "?";
    static const unsigned char v4[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(a, v4, 12) == 0)
        inet_ntop(AF_INET, a + 12, buf, sizeof(buf));
    else
        inet_ntop(AF_INET6, a, buf, sizeof(buf));
    return buf;
}

} // namespace

bool parse_cidr(const std::string &s, Cidr *out)
{
    std::string addr = s;
    int bits = -1;
    if (auto slash = s.find('/'); slash != std::string::npos) {
        addr = s.substr(0, slash);
        std::string b = s.substr(slash + 1);
        if (b.empty() || b.size() > 3 || b.find_first_not_of("0123456789") != std::string::npos)
            return false;
        bits = std::stoi(b);
    }
    unsigned char a4[4];
    if (inet_pton(AF_INET, addr.c_str(), a4) == 1) {
        if (bits > 32)
            return false;
        std::memset(out->addr, 0, 10);
        out->addr[10] = out->addr[11] = 0xff;
        std::memcpy(out->addr + 12, a4, 4);
        out->bits = 96 + (bits < 0 ? 32 : bits);
        return true;
    }
    if (inet_pton(AF_INET6, addr.c_str(), out->addr) == 1) {
        if (bits > 128)
            return false;
        out->bits = bits < 0 ? 128 : bits;
        return true;
    }
    return false;
}

bool load_cidr_file(const std::string &path, std::vector<Cidr> *out, std::string *err)
{
    std::ifstream in(path);
    if (!in) {
        *err = "cannot read '" + path + "': " + strerror(errno);
        return false;
    }
    std::vector<Cidr> list;
    std::string line;
    for (int n = 1; std::getline(in, line); n++) {
        if (auto hash = line.find('#'); hash != std::string::npos)
            line.resize(hash);
        size_t a = line.find_first_not_of(" \t\r"), b = line.find_last_not_of(" \t\r");
        if (a == std::string::npos)
            continue;
        Cidr c;
        if (!parse_cidr(line.substr(a, b - a + 1), &c)) {
            *err = path + ":" + std::to_string(n) + ": '" + line.substr(a, b - a + 1) +
                   "' is not an address or CIDR block";
            return false;
        }
        list.push_back(c);
    }
    *out = std::move(list);
    return true;
}

bool load_acl(std::string *err)
{
    Gate &g = gate();
    std::vector<Cidr> allow, deny;
    if (!g.cfg.allow_file.empty() && !load_cidr_file(g.cfg.allow_file, &allow, err))
        return false;
    if (!g.cfg.deny_file.empty() && !load_cidr_file(g.cfg.deny_file, &deny, err))
        return false;
    std::lock_guard<std::mutex> lk(g.ip_mu);
    g.allow = std::move(allow);
    g.deny = std::move(deny);
    return true;
}

Admission::Admission(coho::net::Conn &conn)
{
    Gate &g = gate();
    uint64_t open = ++g.stats.conns_open;
    if (g.cfg.max_conns > 0 && open > g.cfg.max_conns)
        return;
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    unsigned char a[16] = {};
    bool known =
        coho_conn_peer(conn.native_handle(), reinterpret_cast<sockaddr *>(&ss), &len) == 0 &&
        to16(ss, a);
    if (known)
        peer_ = text_of(a) + ":" +
                std::to_string(ntohs(ss.ss_family == AF_INET
                                         ? reinterpret_cast<sockaddr_in *>(&ss)->sin_port
                                         : reinterpret_cast<sockaddr_in6 *>(&ss)->sin6_port));
    std::lock_guard<std::mutex> lk(g.ip_mu);
    if (known && (in_list(g.deny, a) || (!g.allow.empty() && !in_list(g.allow, a))))
        return;
    if (!known && !g.allow.empty())
        return;
    if (g.cfg.per_ip_max > 0 && known) {
        std::string ip = text_of(a);
        uint64_t &n = g.per_ip[ip];
        if (n >= g.cfg.per_ip_max) {
            if (n == 0)
                g.per_ip.erase(ip);
            return;
        }
        n++;
        ip_ = ip;
    }
    ok_ = true;
}

Admission::~Admission()
{
    Gate &g = gate();
    g.stats.conns_open--;
    if (ip_.empty())
        return;
    std::lock_guard<std::mutex> lk(g.ip_mu);
    if (--g.per_ip[ip_] == 0)
        g.per_ip.erase(ip_);
}

} // namespace coho::game::gate
