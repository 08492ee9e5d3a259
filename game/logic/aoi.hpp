// SPDX-License-Identifier: MIT
// The area-of-interest grid of a scene ("nine-square"): the plane is cut into square cells of
// `cell_size` units; an entity sees every entity in its own cell and the eight around it, and
// is seen by them. Entering, moving and leaving cost O(entities in 3x3 cells), whatever the
// size of the world (cells exist only while someone stands in them).
//
//     aoi::Grid g(100, {{0, 0}, {999, 999}});   // throws std::invalid_argument on a bad size
//     std::vector<uint64_t> seen;
//     g.enter(7, {10, 20}, seen);      // seen: who 7 now sees, and who must be told of 7
//     aoi::Grid::Moved m;
//     g.move(7, {350, 20}, m);         // m.entered / m.stayed / m.left
//     g.leave(7, seen);
//
// Visibility is symmetric, so one list answers both "whom does X see" and "who sees X".
// A grid covers an area (by default the whole int32 plane); a position outside it is refused
// (Result::outside) and nothing changes. Cells at the edges simply have fewer neighbours.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

namespace coho::game::aoi {

struct Pos {
    int32_t x = 0;
    int32_t y = 0;
};

// The positions a grid accepts: lo.x <= x <= hi.x and lo.y <= y <= hi.y (inclusive).
struct Area {
    Pos lo{INT32_MIN, INT32_MIN};
    Pos hi{INT32_MAX, INT32_MAX};
    bool contains(Pos p) const { return p.x >= lo.x && p.x <= hi.x && p.y >= lo.y && p.y <= hi.y; }
};

// What enter, move and leave did.
enum class Result {
    ok,
    present, // enter: the id is already in the grid
    absent,  // move, leave: the id is not in the grid
    outside, // enter, move: the position is outside the grid's area
};

inline const char *to_string(Result r)
{
    switch (r) {
    case Result::ok:
        return "ok";
    case Result::present:
        return "already in the scene";
    case Result::absent:
        return "not in the scene";
    case Result::outside:
        return "position outside the scene";
    }
    return "?";
}

class Grid {
public:
    // Why a grid of this cell size and area cannot be made, or "" when it can.
    static std::string check(int64_t cell_size, Area area)
    {
        if (cell_size < 1 || cell_size > INT32_MAX)
            return "AOI cell size must be 1.." + std::to_string(INT32_MAX) + ", got " +
                   std::to_string(cell_size);
        if (area.lo.x > area.hi.x || area.lo.y > area.hi.y)
            return "AOI area is empty: (" + std::to_string(area.lo.x) + "," +
                   std::to_string(area.lo.y) + ")..(" + std::to_string(area.hi.x) + "," +
                   std::to_string(area.hi.y) + ")";
        return {};
    }

    // cell_size: units per cell side. Throws std::invalid_argument when check() refuses them.
    explicit Grid(int32_t cell_size, Area area = {}) : cell_(cell_size), area_(area)
    {
        const std::string why = check(cell_size, area);
        if (!why.empty())
            throw std::invalid_argument(why);
    }

    // The cell index of coordinate `v`: floor(v / cell_size), also for negative v.
    static int64_t cell_of(int32_t v, int32_t cell_size)
    {
        int64_t q = int64_t(v) / cell_size;
        if (int64_t(v) % cell_size != 0 && v < 0)
            q--;
        return q;
    }

    int32_t cell_size() const { return cell_; }
    const Area &area() const { return area_; }
    size_t size() const { return ents_.size(); }
    size_t cell_count() const { return cells_.size(); }
    bool contains(uint64_t id) const { return ents_.count(id) != 0; }

    // Where `id` stands, or nullptr.
    const Pos *pos(uint64_t id) const
    {
        auto it = ents_.find(id);
        return it == ents_.end() ? nullptr : &it->second.pos;
    }

    // Places `id` at `p` and fills `seen` (cleared first) with every other entity in view.
    // Nothing changes unless the result is ok.
    Result enter(uint64_t id, Pos p, std::vector<uint64_t> &seen)
    {
        seen.clear();
        if (contains(id))
            return Result::present;
        if (!area_.contains(p))
            return Result::outside;
        const Cell c = cell(p);
        view(c, id, seen);
        add_to_cell(id, p, c);
        return Result::ok;
    }

    struct Moved {
        std::vector<uint64_t> entered; // newly in view of each other
        std::vector<uint64_t> stayed;  // in view before and after
        std::vector<uint64_t> left;    // in view before, out of view now
    };

    // Moves `id` to `p`. Nothing changes unless the result is ok.
    Result move(uint64_t id, Pos p, Moved &out)
    {
        out.entered.clear();
        out.stayed.clear();
        out.left.clear();
        auto it = ents_.find(id);
        if (it == ents_.end())
            return Result::absent;
        if (!area_.contains(p))
            return Result::outside;
        const Cell from = it->second.cell, to = cell(p);
        it->second.pos = p;
        if (from.x == to.x && from.y == to.y) {
            view(to, id, out.stayed);
            return Result::ok;
        }
        // The 3x3 blocks around `from` and `to`: cells in both keep their watchers, the rest
        // of the new block are new watchers, the rest of the old block lost sight of `id`.
        for (int64_t dx = -1; dx <= 1; dx++)
            for (int64_t dy = -1; dy <= 1; dy++) {
                const Cell n{to.x + dx, to.y + dy};
                const bool both = near(n, from);
                collect(n, id, both ? out.stayed : out.entered);
                const Cell o{from.x + dx, from.y + dy};
                if (!near(o, to))
                    collect(o, id, out.left);
            }
        remove_from_cell(it->second);
        add_to_cell(id, p, to);
        return Result::ok;
    }

    // Removes `id` and fills `seen` (cleared first) with the entities that saw it.
    Result leave(uint64_t id, std::vector<uint64_t> &seen)
    {
        seen.clear();
        auto it = ents_.find(id);
        if (it == ents_.end())
            return Result::absent;
        view(it->second.cell, id, seen);
        remove_from_cell(it->second);
        ents_.erase(it);
        return Result::ok;
    }

    // The rule itself, for whoever checks the grid from positions alone (tests, bots): do
    // entities at `a` and `b` see each other with cells of `cell_size`?
    static bool sees(Pos a, Pos b, int32_t cell_size)
    {
        return near({cell_of(a.x, cell_size), cell_of(a.y, cell_size)},
                    {cell_of(b.x, cell_size), cell_of(b.y, cell_size)});
    }

    // Every entity in view of position `p`, except `except`, appended to `out`.
    void view_of(Pos p, uint64_t except, std::vector<uint64_t> &out) const
    {
        view(cell(p), except, out);
    }

private:
    struct Cell {
        int64_t x, y;
    };
    struct Ent {
        Pos pos;
        Cell cell;
        size_t idx; // position in its cell's vector
    };

    static constexpr int64_t kMin = INT32_MIN, kMax = INT32_MAX;

    Cell cell(Pos p) const { return {cell_of(p.x, cell_), cell_of(p.y, cell_)}; }
    static bool near(Cell a, Cell b)
    {
        return a.x - b.x <= 1 && b.x - a.x <= 1 && a.y - b.y <= 1 && b.y - a.y <= 1;
    }
    static bool valid(Cell c) { return c.x >= kMin && c.x <= kMax && c.y >= kMin && c.y <= kMax; }
    static uint64_t key(Cell c) { return uint64_t(uint32_t(int32_t(c.x))) << 32 | uint32_t(c.y); }

    void collect(Cell c, uint64_t except, std::vector<uint64_t> &out) const
    {
        if (!valid(c))
            return;
        auto it = cells_.find(key(c));
        if (it == cells_.end())
            return;
        for (uint64_t id : it->second)
            if (id != except)
                out.push_back(id);
    }
    void view(Cell c, uint64_t except, std::vector<uint64_t> &out) const
    {
        for (int64_t dx = -1; dx <= 1; dx++)
            for (int64_t dy = -1; dy <= 1; dy++)
                collect({c.x + dx, c.y + dy}, except, out);
    }
    void add_to_cell(uint64_t id, Pos p, Cell c)
    {
        auto &v = cells_[key(c)];
        ents_[id] = Ent{p, c, v.size()};
        v.push_back(id);
    }
    // Swap-remove from the cell's vector; an emptied cell is dropped.
    void remove_from_cell(const Ent &e)
    {
        auto it = cells_.find(key(e.cell));
        auto &v = it->second;
        const size_t i = e.idx;
        if (i + 1 != v.size()) {
            v[i] = v.back();
            ents_[v[i]].idx = i;
        }
        v.pop_back();
        if (v.empty())
            cells_.erase(it);
    }

    int32_t cell_;
    Area area_;
    std::unordered_map<uint64_t, std::vector<uint64_t>> cells_;
    std::unordered_map<uint64_t, Ent> ents_;
};

} // namespace coho::game::aoi
