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
    if (s.grid.size() == 0 && !s.ticking)
        n.scenes.erase(it);
}

void forget(Node &n, uint64_t uid, uint32_t scene)
{
    auto it = n.scenes_of.find(uid);
    if (it == n.scenes_of.end())
        return;
    it->second.erase(scene);
    if (it->second.empty())
        n.scenes_of.erase(it);
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
    const aoi::Pos p = pos_of(req.pos());
    const Config &cfg = n.config();
    const aoi::Area area{{0, 0}, {cfg.scene_size - 1, cfg.scene_size - 1}};
    if (!area.contains(p))
        return refused(c, scene, p, aoi::Result::outside); // before a scene is made for it
    auto &slot = n.scenes[scene];
    if (!slot)
        slot = std::make_unique<Scene>(cfg.aoi_cell, area);
    Scene &s = *slot;
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
    const aoi::Pos p = pos_of(req.pos());
    auto it = n.scenes.find(req.scene());
    if (it == n.scenes.end())
        return refused(c, req.scene(), p, aoi::Result::absent); // enter first
    Scene &s = *it->second;
    const aoi::Result r = move_in(s, c.uid, p);
    if (r != aoi::Result::ok)
        return refused(c, req.scene(), p, r);
    s.gate_of[c.uid] = c.gate;
    SceneMoveResp().SerializeToString(&out);
    settle(n, req.scene());
    return wire::OK;
}

uint32_t scene_leave(Node &n, const Call &c, std::string &out)
{
    SceneLeaveReq req;
    if (!req.ParseFromArray(c.payload.data(), int(c.payload.size())))
        return wire::BAD_PAYLOAD;
    leave_in(n, req.scene(), c.uid); // leaving a scene one is not in changes nothing
    forget(n, c.uid, req.scene());
    SceneLeaveResp().SerializeToString(&out);
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

void scene_session_end(Node &n, uint64_t uid)
{
    auto it = n.scenes_of.find(uid);
    if (it == n.scenes_of.end())
        return;
    const std::set<uint32_t> scenes = std::move(it->second);
    n.scenes_of.erase(it);
    for (uint32_t scene : scenes)
        leave_in(n, scene, uid);
    for (uint32_t scene : scenes)
        settle(n, scene);
}

} // namespace coho::game::logic
