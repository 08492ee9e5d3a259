// SPDX-License-Identifier: MIT
// LOGIN: check the token, have the node that owns the uid load the player, start the session
// (a previous session of the uid ends and its connection gets KICK 2), answer with the session
// id, the resume key and the heartbeat interval. LOGOUT: answer, end the session, close.
#include "bytes.hpp"
#include "links.hpp"
#include "token.hpp"

namespace coho::game::gate {

void login(Client &c, uint32_t seq, std::string_view body)
{
    Reader r(body);
    uint64_t uid = r.u64();
    std::string_view token = r.bytes(r.u16());
    if (!r.ok())
        return c.protocol_error("LOGIN body shorter than its fields");
    if (c.session)
        return c.protocol_error("a second LOGIN on a logged-in connection");
    if (!token_ok(gate().cfg.secret, uid, token)) {
        gate().stats.login_failures++;
        c.send(wire::error_response(wire::LOGIN, seq, wire::BAD_TOKEN));
        return;
    }
    uint64_t sid = get_u64(reinterpret_cast<const unsigned char *>(random_bytes(8).data())) | 1;
    uint32_t status = c.shard.links->load(uid, sid);
    if (status != wire::OK) {
        gate().stats.login_failures++;
        c.send(wire::error_response(wire::LOGIN, seq, status));
        return;
    }
    c.session = start_session(uid, sid, c);
    gate().stats.logins++;

    std::string reply;
    put_u32(reply, wire::OK);
    put_u64(reply, sid);
    reply.append(c.session->key);
    put_u32(reply, uint32_t(gate().cfg.heartbeat_ms));
    c.send(wire::frame(wire::LOGIN | wire::kResponse, seq, reply));
}

void logout(Client &c, uint32_t seq)
{
    c.send(wire::frame(wire::LOGOUT | wire::kResponse, seq));
    if (c.session) {
        end_session(c.session);
        c.session.reset();
        gate().stats.logouts++;
    }
    c.done = true;
}

} // namespace coho::game::gate
