// SPDX-License-Identifier: MIT
// Scenes: positions on an AOI grid (aoi.hpp). Each scene call changes the grid at once and
// records what every observer must be told (aoi_batch.hpp); the scene's tick coroutine sends
// each observer one push per tick (route 33, an AoiBatch) with what changed in its view, then
// ends when the scene is idle. With a tick of 0 the batch goes out before the call's reply.
// The grid is never seen half changed: pushes are built first and sent afterwards.
#include <cinttypes>

#include <coho.h>

#include "game.pb.h"
#include "game/logic/node.hpp"

namespace coho::game::logic {

namespace {

// A push carries at most this many entities; a larger batch goes out as several pushes.
constexpr size_t kMaxPerPush = 1000;

aoi::Pos pos_of(const Pos &p)
{
    return {p.x(), p.y()};
}

void put(Entity *e, uint64_t uid, aoi::Pos p)
{
    e->set_uid(uid);
    e->mutable_pos()->set_x(p.x);
    e->mutable_pos()->set_y(p.y);
}

// Sends every observer's batch. Observers of one gateway told the same thing share a frame.
// Only the taking of the batches touches the scene, so the scene may go while pushes park.
void flush(Node &n, uint32_t scene, Scene &s)
{
    std::map<std::pair<uint64_t, std::string>, std::vector<uint64_t>> frames;
    s.pending.take(s.grid, [&](uint64_t observer, const aoi::Batch &b) {
        auto g = s.gate_of.find(observer);
        if (g == s.gate_of.end())
            return;
        AoiBatch msg;
        size_t count = 0;
        auto emit = [&] {
            msg.set_scene(scene);
            frames[{g->second, msg.SerializeAsString()}].push_back(observer);
            msg.Clear();
            count = 0;
        };
        auto add = [&](Entity *e, const aoi::Seen &x) {
            if (x.has_pos)
                put(e, x.who, x.pos);
            else
                e->set_uid(x.who);
            if (++count == kMaxPerPush)
                emit();
        };
        for (const aoi::Seen &x : b.entered)
            add(msg.add_entered(), x);
        for (const aoi::Seen &x : b.moved)
            add(msg.add_moved(), x);
        for (const aoi::Seen &x : b.left)
            add(msg.add_left(), x);
        if (count != 0)
            emit();
    });
    for (auto &[key, uids] : frames)
        n.push_uids(key.first, wire::R_SCENE_AOI, uids, key.second);
}

// The scene's tick: flushes every tick while something is pending, then ends; an empty scene
// is dropped here (a scene is never dropped while its tick runs).
void tick(Node &n, uint32_t id)
{
    const auto period = n.config().aoi_tick;
    for (;;) {
        // Sleep in slices, so that stopping the node never waits for a long tick.
        const auto end = std::chrono::steady_clock::now() + period;
        while (std::chrono::steady_clock::now() < end && !n.stopping())
            coho::this_co::sleep_for(std::min<std::chrono::steady_clock::duration>(
                end - std::chrono::steady_clock::now(), std::chrono::milliseconds(100)));
        if (n.stopping())
            return;
        auto it = n.scenes.find(id);
        if (it == n.scenes.end())
            return;
        Scene &s = *it->second;
        if (s.pending.empty()) {
            s.ticking = false;
            if (s.grid.size() == 0)
                n.scenes.erase(it);
            return;
        }
        flush(n, id, s);
    }
}

// After a change to scene `id`: with no tick, tell the observers now; otherwise make sure the
// scene's tick runs.
void settle(Node &n, uint32_t id)
{
    auto it = n.scenes.find(id);
    if (it == n.scenes.end())
        return;
    Scene &s = *it->second;
    if (n.config().aoi_tick.count() == 0) {
        flush(n, id, s);
        return;
    }
    if (s.ticking || s.pending.empty())
        return;
    coho_spawn_opts_t so;
    coho_spawn_opts_init(&so);
    so.detached = true;
    so.name = "logic.aoi-tick";
    try {
        n.scheduler().spawn(so, [&n, id] { tick(n, id); });
        s.ticking = true;
    } catch (const std::system_error &e) {
        // Without a tick the batch goes out now rather than never.
        coho_log_error("scene %u: no coroutine for its AOI tick (%s): telling observers now", id,
                       e.what());
        flush(n, id, s);
    }
}

// Moves `uid` (already in `s`) and records what the move tells whom.
aoi::Result move_in(Scene &s, uint64_t uid, aoi::Pos p)
{
    aoi::Grid::Moved m;
    const aoi::Result r = s.grid.move(uid, p, m);
    if (r != aoi::Result::ok)
        return r;
    s.pending.moved(uid);
    for (uint64_t o : m.entered) {
        s.pending.entered(o, uid);
        s.pending.entered(uid, o);
    }
    for (uint64_t o : m.left) {
        s.pending.left(o, uid);
        s.pending.left(uid, o);
    }
    return r;
}

// `uid` is no longer in `scene` (the index SESSION_END reads).
void forget(Node &n, uint64_t uid, uint32_t scene)
{
    auto it = n.scenes_of.find(uid);
    if (it == n.scenes_of.end())
        return;
    it->second.erase(scene);
    if (it->second.empty())
        n.scenes_of.erase(it);
}

// Scene `id`, or nullptr. A scene kept from an earlier lease of the node is emptied first: while
// the node had no lease the gateways moved it to another node, where its entities went on (and
// some left); they enter again here when it comes back, and what stayed would be ghosts.
Scene *find_scene(Node &n, uint32_t id)
{
    auto it = n.scenes.find(id);
    if (it == n.scenes.end())
        return nullptr;
    Scene &s = *it->second;
    if (s.lease == n.lease())
        return &s;
    coho_log_warn("scene %u: %zu entities kept from lease %" PRId64 " dropped (lease now %" PRId64
                  ")",
                  id, s.grid.size(), s.lease, n.lease());
    for (auto &[uid, gate] : s.gate_of)
        forget(n, uid, id);
    s.grid = aoi::Grid(n.config().aoi_cell, s.grid.area());
    s.gate_of.clear();
    s.session_of.clear();
    s.pending = aoi::Batches();
    s.lease = n.lease();
    return &s;
}

// Removes `uid` from scene `scene` (if there) and records the LEAVEs.
void leave_in(Node &n, uint32_t scene, uint64_t uid)
{
    auto it = n.scenes.find(scene);
    if (it == n.scenes.end())
        return;
    Scene &s = *it->second;
    std::vector<uint64_t> seen;
    if (s.grid.leave(uid, seen) != aoi::Result::ok)
        return;
    for (uint64_t o : seen)
        s.pending.left(o, uid);
    s.pending.forget(uid);
    s.gate_of.erase(uid);
    s.session_of.erase(uid);
    if (s.grid.size() == 0 && !s.ticking)
        n.scenes.erase(it);
}

// Scene ids start at 1: proto3 cannot tell scene 0 from no scene, and gateways route by it.
uint32_t no_scene_id(const Call &c)
{
    coho_log_info("uid %" PRIu64 ": route %u without a scene id", c.uid, unsigned(c.route));
    return wire::BAD_PAYLOAD;
}

uint32_t refused(const Call &c, uint32_t scene, aoi::Pos p, aoi::Result r)
{
    coho_log_info("scene %u: uid %" PRIu64 " at (%d,%d) refused: %s", scene, c.uid, p.x, p.y,
                  aoi::to_string(r));
    return wire::BAD_PAYLOAD;
}

} // namespace

uint32_t scene_enter(Node &n, const Call &c, std::string &out)
{
    SceneEnterReq req;
    if (!req.ParseFromArray(c.payload.data(), int(c.payload.size())))
        return wire::BAD_PAYLOAD;
    const uint32_t scene = req.scene();
    if (scene == 0)
        return no_scene_id(c);
    const aoi::Pos p = pos_of(req.pos());
    const Config &cfg = n.config();
    const aoi::Area area{{0, 0}, {cfg.scene_size - 1, cfg.scene_size - 1}};
    if (!area.contains(p))
        return refused(c, scene, p, aoi::Result::outside); // before a scene is made for it
    if (find_scene(n, scene) == nullptr)
        n.scenes[scene] = std::make_unique<Scene>(cfg.aoi_cell, area, n.lease());
    Scene &s = *n.scenes[scene];
    std::vector<uint64_t> seen;
    if (s.grid.contains(c.uid)) {
        // Entering again is a move to the new position; the reply is the caller's whole view,
        // so what it was still to be told is dropped.
        move_in(s, c.uid, p);
        s.pending.forget(c.uid);
        s.grid.view_of(p, c.uid, seen);
    } else {
        s.grid.enter(c.uid, p, seen);
        s.pending.forget(c.uid); // the reply is its view
        n.scenes_of[c.uid].insert(scene);
        for (uint64_t o : seen)
            s.pending.entered(o, c.uid);
    }
    s.gate_of[c.uid] = c.gate;
    s.session_of[c.uid] = c.session;
    SceneEnterResp resp;
    for (uint64_t o : seen)
        put(resp.add_others(), o, *s.grid.pos(o));
    resp.SerializeToString(&out);
    settle(n, scene);
    return wire::OK;
}

uint32_t scene_move(Node &n, const Call &c, std::string &out)
{
    SceneMoveReq req;
    if (!req.ParseFromArray(c.payload.data(), int(c.payload.size())))
        return wire::BAD_PAYLOAD;
    if (req.scene() == 0)
        return no_scene_id(c);
    const aoi::Pos p = pos_of(req.pos());
    Scene *sp = find_scene(n, req.scene());
    if (sp == nullptr)
        return refused(c, req.scene(), p, aoi::Result::absent); // enter first
    Scene &s = *sp;
    const aoi::Result r = move_in(s, c.uid, p);
    if (r != aoi::Result::ok)
        return refused(c, req.scene(), p, r);
    s.gate_of[c.uid] = c.gate;
    s.session_of[c.uid] = c.session; // a newer session of the uid takes the entity over
    SceneMoveResp().SerializeToString(&out);
    settle(n, req.scene());
    return wire::OK;
}

uint32_t scene_leave(Node &n, const Call &c, std::string &out)
{
    SceneLeaveReq req;
    if (!req.ParseFromArray(c.payload.data(), int(c.payload.size())))
        return wire::BAD_PAYLOAD;
    if (req.scene() == 0)
        return no_scene_id(c);
    // Leaving a scene one is not in changes nothing; nor does leaving an entity another session
    // of the uid put there or moved last (a late leave of a session that ended, sent by its
    // gateway, must not take out the session that replaced it).
    SceneLeaveResp().SerializeToString(&out);
    Scene *s = find_scene(n, req.scene());
    if (s == nullptr)
        return wire::OK;
    auto who = s->session_of.find(c.uid);
    if (who == s->session_of.end() || who->second != c.session)
        return wire::OK;
    leave_in(n, req.scene(), c.uid);
    forget(n, c.uid, req.scene());
    settle(n, req.scene());
    return wire::OK;
}

std::vector<uint64_t> scene_uids_of_gate(const Node &n, uint64_t gate)
{
    std::set<uint64_t> uids;
    for (auto &sc : n.scenes)
        for (auto &[uid, g] : sc.second->gate_of)
            if (g == gate)
                uids.insert(uid);
    return {uids.begin(), uids.end()};
}

namespace {

// Takes `uid` out of the scenes whose map `of` (the session, or the gateway, of each entity)
// holds `want` for it.
void leave_where(Node &n, uint64_t uid, std::unordered_map<uint64_t, uint64_t> Scene::*of,
                 uint64_t want)
{
    auto it = n.scenes_of.find(uid);
    if (it == n.scenes_of.end())
        return;
    std::vector<uint32_t> left;
    for (uint32_t scene : it->second) {
        auto sc = n.scenes.find(scene);
        if (sc == n.scenes.end())
            continue;
        const auto &m = (*sc->second).*of;
        auto v = m.find(uid);
        if (v != m.end() && v->second == want)
            left.push_back(scene);
    }
    for (uint32_t scene : left) {
        leave_in(n, scene, uid);
        forget(n, uid, scene);
    }
    for (uint32_t scene : left)
        settle(n, scene);
}

} // namespace

void scene_session_end(Node &n, uint64_t uid, uint64_t session)
{
    leave_where(n, uid, &Scene::session_of, session);
}

void scene_gate_end(Node &n, uint64_t uid, uint64_t gate)
{
    leave_where(n, uid, &Scene::gate_of, gate);
}

} // namespace coho::game::logic
