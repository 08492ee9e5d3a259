// SPDX-License-Identifier: MIT
// Scene calls (routes 30-32): routed by rendezvous hashing on the scene id, so one node owns a
// scene and everyone in it sees everyone, whichever node owns their uid. The session remembers
// each scene it entered (its seat: the node holding its entity, its last position), which gives
// the two things a node cannot do for itself:
//  - a session that ends leaves its scenes: a scene.leave on its behalf goes to each seat's node
//    (the uid's own node only hears SESSION_END);
//  - a scene whose owner changed (a node joined, left or crashed, or the owner registered again
//    after losing its lease, which dropped the scene's entities) gets the entity back: the
//    session's next call on the scene first enters it again at the new owner, where it last
//    stood, tells the client who it sees there (an AOI push of them as `entered`), and takes it
//    out of the old owner if that is another node, still up.
#include <cinttypes>

#include "links.hpp"
#include "scene_call.hpp"

namespace coho::game::gate {

namespace {

// A scene.leave to `node` on the session's behalf, in a coroutine of its own (a node that
// hangs must not hold up the caller). On the calling shard.
void leave_later(NodeLinks &links, const std::string &node, uint64_t uid, uint64_t sid,
                 uint32_t scene)
{
    coho_spawn_opts_t so;
    coho_spawn_opts_init(&so);
    so.detached = true; // nobody joins it
    so.name = "gate.scene-leave";
    coho::spawn(so, [&links, node, uid, sid, scene] {
        NodeReply r =
            links.call_at(node, uid, sid, wire::R_SCENE_LEAVE, scene_payload(scene, {}, false));
        if (r.status != wire::OK)
            coho_log_info("gate: scene %u: leave of uid %" PRIu64 " at %s: status %u", scene, uid,
                          node.c_str(), r.status);
    });
}

// The scene moved from `seat.node` to `owner`: enter the entity there at its last position and
// tell the client whom it sees. Returns the status of that enter.
uint32_t enter_again(NodeLinks &links, const SessionPtr &s, uint32_t scene, const SceneSeat &seat,
                     const cluster::NodeInfo &owner)
{
    NodeReply e = links.call_at(owner.addr, s->uid, s->id, wire::R_SCENE_ENTER,
                                scene_payload(scene, seat.pos, true));
    if (e.status != wire::OK) {
        coho_log_info("gate: scene %u moved to %s: entering uid %" PRIu64 " again: status %u",
                      scene, owner.addr.c_str(), s->uid, e.status);
        return e.status;
    }
    gate().stats.scene_reentries++;
    if (seat.node == owner.addr)
        coho_log_info("gate: scene %u: %s registered again: uid %" PRIu64 " entered again", scene,
                      owner.addr.c_str(), s->uid);
    else
        coho_log_info("gate: scene %u moved from %s to %s: uid %" PRIu64 " entered again", scene,
                      seat.node.c_str(), owner.addr.c_str(), s->uid);
    std::string aoi;
    if (!enter_resp_as_aoi(scene, e.payload, &aoi))
        coho_log_warn("gate: scene %u: node %s sent a malformed SceneEnterResp", scene,
                      owner.addr.c_str());
    else if (!aoi.empty())
        push_to(s, wire::R_SCENE_AOI, aoi);
    return wire::OK;
}

} // namespace

NodeReply scene_call(NodeLinks &links, const SessionPtr &s, uint16_t route,
                     std::string_view payload)
{
    uint32_t scene = 0;
    std::string pos;
    if (!parse_scene_call(payload, &scene, &pos)) {
        gate().stats.scene_bad_calls++;
        gate().stats.call_failures++;
        coho_log_info("gate: route %u from uid %" PRIu64 " without a valid scene id (field 1)",
                      unsigned(route), s->uid);
        return {wire::BAD_PAYLOAD, {}};
    }
    const cluster::NodeInfo owner = links.owner(scene_key(scene));
    if (owner.addr.empty()) {
        gate().stats.call_failures++;
        return {wire::NO_NODE, {}};
    }
    SceneSeat seat;
    bool seated = false;
    {
        std::lock_guard<std::mutex> g(gate().mu);
        auto it = s->scenes.find(scene);
        if (it != s->scenes.end()) {
            seated = true;
            seat = it->second;
        }
    }
    if (seated && (seat.node != owner.addr || seat.lease != owner.lease)) {
        // Where the entity was: its old node, if still up, takes it out (a crashed one took
        // the whole scene with it). The same node under a new registration dropped it itself,
        // and a leave there would take out the entity entered again below.
        if (seat.node != owner.addr)
            leave_later(links, seat.node, s->uid, s->id, scene);
        if (route != wire::R_SCENE_LEAVE && route != wire::R_SCENE_ENTER) {
            if (uint32_t st = enter_again(links, s, scene, seat, owner); st != wire::OK) {
                gate().stats.call_failures++;
                return {st, {}};
            }
        }
    }
    NodeReply r = links.call_at(owner.addr, s->uid, s->id, route, payload);
    if (r.status != wire::OK) {
        gate().stats.call_failures++;
        return r;
    }
    bool ended = false;
    {
        std::lock_guard<std::mutex> g(gate().mu);
        ended = s->ended;
        if (!ended && route == wire::R_SCENE_LEAVE)
            s->scenes.erase(scene);
        else if (!ended)
            s->scenes[scene] = SceneSeat{owner.addr, owner.lease, pos};
    }
    // The session ended while the call was at the node: its leaves are gone already.
    if (ended && route != wire::R_SCENE_LEAVE)
        leave_later(links, owner.addr, s->uid, s->id, scene);
    return r;
}

void leave_scenes(NodeLinks &links, uint64_t uid, uint64_t sid,
                  const std::map<uint32_t, SceneSeat> &seats)
{
    for (const auto &[scene, seat] : seats)
        leave_later(links, seat.node, uid, sid, scene);
}

} // namespace coho::game::gate
