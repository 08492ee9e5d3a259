// SPDX-License-Identifier: MIT
// What each observer of a scene must be told at the next tick: who came into its view, who
// moved in it, who went out of it, so that a tick's batch takes the observer from what it knew
// at the last tick to what is true now, each entity once, at its position now:
//
//     within one tick, entity E, observer O     O is told
//     E comes into view (and moves)             entered
//     E moves in view                           moved
//     E goes out of view (after moving)         left
//     E comes into view and goes out again      nothing (O never knew)
//     E goes out of view and comes back         moved (O knew before and knows now)
//
// Crossing into and out of view is recorded per (observer, entity), as the grid (aoi.hpp)
// reports it; a move inside the view is recorded once per entity (not once per observer), and
// at take() each moved entity is sent to whoever sees it then. So a tick costs O(entities that
// moved x their view), whatever the number of moves each made.
//
//     aoi::Batches b;
//     b.entered(observer, who);  b.left(observer, who);  b.moved(who);
//     b.take(grid, [](uint64_t observer, const aoi::Batch &batch) { ... });  // once per observer
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "game/logic/aoi.hpp"

namespace coho::game::aoi {

struct Seen {
    uint64_t who = 0;
    Pos pos;
    bool has_pos = true; // false in `left` when the entity is no longer in the scene
};

// One observer's changes over one tick; each entity appears at most once in all three lists,
// each list sorted by id.
struct Batch {
    std::vector<Seen> entered;
    std::vector<Seen> moved;
    std::vector<Seen> left;
    size_t size() const { return entered.size() + moved.size() + left.size(); }
};

class Batches {
public:
    // `who` came into / went out of the view of `observer` (either may have moved).
    void entered(uint64_t observer, uint64_t who) { cross(observer, who, ENTER); }
    void left(uint64_t observer, uint64_t who) { cross(observer, who, LEAVE); }
    // `who` moved: whoever sees it at take() and knew of it before is told where it is.
    void moved(uint64_t who) { moved_[who] = ++seq_; }

    // `observer` was just given its whole view (it entered the scene, or entered again), or
    // left the scene: what it was still to be told is dropped, and moves made before now are
    // not told to it.
    void forget(uint64_t observer)
    {
        crossed_.erase(observer);
        if (!moved_.empty()) // only moves already recorded are older than its view
            fresh_[observer] = ++seq_;
    }

    bool empty() const { return crossed_.empty() && moved_.empty(); }

    // Calls fn(observer, batch) for every observer with something to be told (in no particular
    // order) and starts the next tick empty; positions are read from `g`, which must hold
    // what the changes were recorded from. fn must not record changes.
    template <class F>
    void take(const Grid &g, F fn)
    {
        // The batches are kept from tick to tick (their lists keep their capacity); those of
        // observers gone from the grid are dropped.
        auto &out = out_;
        for (auto it = out.begin(); it != out.end();) {
            if (!g.contains(it->first)) {
                it = out.erase(it);
                continue;
            }
            it->second.entered.clear();
            it->second.moved.clear();
            it->second.left.clear();
            ++it;
        }
        auto seen_at = [&g](uint64_t who) {
            const Pos *p = g.pos(who);
            return Seen{who, p ? *p : Pos{}, p != nullptr};
        };
        for (auto &[observer, changes] : crossed_) {
            if (!g.contains(observer))
                continue;
            Batch &b = out[observer];
            for (auto &[who, c] : changes) {
                const Seen s = seen_at(who);
                if (c.kind == LEAVE)
                    b.left.push_back(s);
                else if (s.has_pos)
                    (c.knew ? b.moved : b.entered).push_back(s);
            }
        }
        std::vector<uint64_t> &view = view_;
        const bool any_fresh = !fresh_.empty(), any_crossed = !crossed_.empty();
        for (auto &[who, seq] : moved_) {
            const Pos *p = g.pos(who);
            if (p == nullptr)
                continue;
            view.clear();
            g.view_of(*p, who, view);
            for (uint64_t observer : view) {
                if (any_fresh) {
                    auto f = fresh_.find(observer);
                    if (f != fresh_.end() && f->second > seq)
                        continue; // its view was given whole after this move
                }
                if (any_crossed) {
                    auto c = crossed_.find(observer);
                    if (c != crossed_.end() && c->second.count(who) != 0)
                        continue; // told above, as entered or moved
                }
                out[observer].moved.push_back({who, *p, true});
            }
        }
        crossed_.clear();
        moved_.clear();
        fresh_.clear();
        for (auto &[observer, b] : out) {
            if (b.size() == 0)
                continue;
            for (auto *v : {&b.entered, &b.moved, &b.left})
                std::sort(v->begin(), v->end(),
                          [](const Seen &x, const Seen &y) { return x.who < y.who; });
            fn(observer, static_cast<const Batch &>(b));
        }
    }

private:
    enum Kind : uint8_t { ENTER, LEAVE };
    struct Change {
        Kind kind;
        bool knew; // the observer knew of the entity at the start of the tick
    };

    void cross(uint64_t observer, uint64_t who, Kind kind)
    {
        auto &changes = crossed_[observer];
        auto it = changes.find(who);
        if (it == changes.end()) {
            // First crossing this tick: an entity that enters was unknown, one that leaves known.
            changes.emplace(who, Change{kind, kind == LEAVE});
            return;
        }
        if (kind == LEAVE && !it->second.knew) {
            changes.erase(it); // came and went within the tick
            if (changes.empty())
                crossed_.erase(observer);
            return;
        }
        it->second.kind = kind;
    }

    uint64_t seq_ = 0;
    std::unordered_map<uint64_t, std::unordered_map<uint64_t, Change>> crossed_;
    std::unordered_map<uint64_t, uint64_t> moved_; // who -> seq of its last move
    std::unordered_map<uint64_t, uint64_t> fresh_; // observer -> seq of its whole view
    std::unordered_map<uint64_t, Batch> out_;      // take()'s batches, kept for their capacity
    std::vector<uint64_t> view_;
};

} // namespace coho::game::aoi
