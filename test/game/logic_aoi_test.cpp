// SPDX-License-Identifier: MIT
// game/logic/aoi.hpp: the nine-square grid against its definition (two entities see each other
// when their cells differ by at most one on both axes), at cell boundaries, at the edges of the
// int32 world, and for thousands of players against a brute-force model.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "game/logic/aoi.hpp"
#include "game/logic/aoi_batch.hpp"

using coho::game::aoi::Area;
using coho::game::aoi::Batch;
using coho::game::aoi::Batches;
using coho::game::aoi::Grid;
using coho::game::aoi::Pos;
using coho::game::aoi::Result;

namespace {

std::set<uint64_t> as_set(const std::vector<uint64_t> &v)
{
    std::set<uint64_t> s(v.begin(), v.end());
    EXPECT_EQ(s.size(), v.size()) << "an id was reported twice";
    return s;
}

// The definition, for the model.
bool sees(Pos a, Pos b, int32_t cell)
{
    int64_t dx = Grid::cell_of(a.x, cell) - Grid::cell_of(b.x, cell);
    int64_t dy = Grid::cell_of(a.y, cell) - Grid::cell_of(b.y, cell);
    const bool want = dx >= -1 && dx <= 1 && dy >= -1 && dy <= 1;
    EXPECT_EQ(Grid::sees(a, b, cell), want);
    return want;
}

TEST(LogicAoi, CellOfIsFloorDivisionOnBothSidesOfZero)
{
    EXPECT_EQ(Grid::cell_of(0, 100), 0);
    EXPECT_EQ(Grid::cell_of(99, 100), 0);
    EXPECT_EQ(Grid::cell_of(100, 100), 1);
    EXPECT_EQ(Grid::cell_of(-1, 100), -1);
    EXPECT_EQ(Grid::cell_of(-100, 100), -1);
    EXPECT_EQ(Grid::cell_of(-101, 100), -2);
    EXPECT_EQ(Grid::cell_of(INT32_MAX, 1), INT32_MAX);
    EXPECT_EQ(Grid::cell_of(INT32_MIN, 1), INT32_MIN);
    EXPECT_EQ(Grid::cell_of(INT32_MIN, 7), -306783379); // floor(-2147483648 / 7)
    EXPECT_EQ(Grid::cell_of(INT32_MAX, INT32_MAX), 1);
    EXPECT_EQ(Grid::cell_of(INT32_MIN, INT32_MAX), -2);
}

TEST(LogicAoi, NeighboursAreTheEightCellsAroundAndNothingFurther)
{
    Grid g(100);
    std::vector<uint64_t> seen;
    ASSERT_EQ(Result::ok, g.enter(1, {150, 150}, seen)); // cell (1,1)
    EXPECT_TRUE(seen.empty());
    // The corners of the 3x3 block around (1,1): cells 0..2 on both axes, [0, 300).
    ASSERT_EQ(Result::ok, g.enter(2, {0, 0}, seen));
    EXPECT_EQ(as_set(seen), std::set<uint64_t>{1});
    ASSERT_EQ(Result::ok, g.enter(3, {299, 299}, seen));
    EXPECT_EQ(as_set(seen), std::set<uint64_t>{1}); // 2 is two cells away from 3
    // Just outside the block on each side.
    ASSERT_EQ(Result::ok, g.enter(4, {300, 150}, seen));
    EXPECT_EQ(as_set(seen), std::set<uint64_t>{3});
    ASSERT_EQ(Result::ok, g.enter(5, {-1, 150}, seen));
    EXPECT_EQ(as_set(seen), std::set<uint64_t>{2});
    ASSERT_EQ(Result::ok,
              g.enter(6, {150, -1}, seen)); // cell (1,-1): next to 2's (0,0), not 5's (-1,1)
    EXPECT_EQ(as_set(seen), std::set<uint64_t>{2});
    ASSERT_EQ(Result::ok, g.enter(7, {150, 300}, seen));
    EXPECT_EQ(as_set(seen), std::set<uint64_t>{3});
    // Everyone 1 can see: 2 and 3 (and nobody outside [0, 300)).
    seen.clear();
    g.view_of({150, 150}, 1, seen);
    EXPECT_EQ(as_set(seen), (std::set<uint64_t>{2, 3}));
    EXPECT_EQ(g.size(), 7u);
}

TEST(LogicAoi, EnterTwiceMoveOrLeaveAStrangerChangeNothing)
{
    Grid g(10);
    std::vector<uint64_t> seen;
    Grid::Moved m;
    ASSERT_EQ(Result::ok, g.enter(1, {5, 5}, seen));
    EXPECT_EQ(Result::present, g.enter(1, {500, 500}, seen));
    ASSERT_NE(g.pos(1), nullptr);
    EXPECT_EQ(g.pos(1)->x, 5);
    EXPECT_EQ(Result::absent, g.move(2, {1, 1}, m));
    EXPECT_EQ(Result::absent, g.leave(2, seen));
    EXPECT_EQ(g.size(), 1u);
    EXPECT_EQ(g.cell_count(), 1u);
    ASSERT_EQ(Result::ok, g.leave(1, seen));
    EXPECT_EQ(g.size(), 0u);
    EXPECT_EQ(g.cell_count(), 0u) << "an empty cell must be dropped";
    EXPECT_EQ(g.pos(1), nullptr);
}

TEST(LogicAoi, MoveSplitsWatchersIntoEnteredStayedAndLeft)
{
    Grid g(100);
    std::vector<uint64_t> seen;
    g.enter(10, {-50, 50}, seen);  // cell (-1,0): near the start only
    g.enter(11, {150, 50}, seen);  // cell (1,0): near both
    g.enter(12, {350, 50}, seen);  // cell (3,0): near the end only
    g.enter(13, {1050, 50}, seen); // far from both
    g.enter(1, {50, 50}, seen);    // cell (0,0)
    EXPECT_EQ(as_set(seen), (std::set<uint64_t>{10, 11}));
    Grid::Moved m;
    ASSERT_EQ(Result::ok, g.move(1, {250, 50}, m)); // to cell (2,0)
    EXPECT_EQ(as_set(m.entered), std::set<uint64_t>{12});
    EXPECT_EQ(as_set(m.stayed), std::set<uint64_t>{11});
    EXPECT_EQ(as_set(m.left), std::set<uint64_t>{10});
    ASSERT_EQ(Result::ok, g.move(1, {299, 99}, m)); // same cell: everyone stays
    EXPECT_TRUE(m.entered.empty());
    EXPECT_TRUE(m.left.empty());
    EXPECT_EQ(as_set(m.stayed), (std::set<uint64_t>{11, 12}));
    ASSERT_EQ(Result::ok, g.move(1, {5000, 5000}, m)); // a jump: everyone leaves
    EXPECT_TRUE(m.entered.empty());
    EXPECT_TRUE(m.stayed.empty());
    EXPECT_EQ(as_set(m.left), (std::set<uint64_t>{11, 12}));
    ASSERT_EQ(Result::ok, g.leave(1, seen));
    EXPECT_TRUE(seen.empty());
}

TEST(LogicAoi, TheEdgesOfTheInt32WorldHaveFewerNeighboursAndNoOverflow)
{
    for (int32_t cell : {1, 7, 1000, INT32_MAX}) {
        Grid g(cell);
        std::vector<uint64_t> seen;
        const Pos corners[] = {{INT32_MIN, INT32_MIN},
                               {INT32_MIN, INT32_MAX},
                               {INT32_MAX, INT32_MIN},
                               {INT32_MAX, INT32_MAX}};
        for (uint64_t i = 0; i < 4; i++) {
            ASSERT_EQ(Result::ok, g.enter(i + 1, corners[i], seen));
            for (uint64_t o : seen)
                EXPECT_TRUE(sees(corners[i], corners[o - 1], cell)) << "cell " << cell;
        }
        // Next to a corner, one cell in: sees the corner.
        Pos in{INT32_MAX - cell + 1 > INT32_MAX - 1 ? INT32_MAX - 1 : INT32_MAX - cell + 1,
               INT32_MAX};
        ASSERT_EQ(Result::ok, g.enter(9, in, seen));
        EXPECT_TRUE(as_set(seen).count(4)) << "cell " << cell;
        Grid::Moved m;
        ASSERT_EQ(Result::ok, g.move(9, {INT32_MIN, INT32_MIN}, m));
        EXPECT_TRUE(as_set(m.entered).count(1) || as_set(m.stayed).count(1)) << "cell " << cell;
        ASSERT_EQ(Result::ok, g.leave(9, seen));
        EXPECT_EQ(g.size(), 4u);
    }
}

TEST(LogicAoi, ZeroOrNegativeCellSizesAndEmptyAreasAreRefusedWithTheReason)
{
    for (int32_t bad : {0, -1, -100, INT32_MIN}) {
        EXPECT_NE(Grid::check(bad, {}).find("cell size must be 1.."), std::string::npos) << bad;
        try {
            Grid g(bad);
            ADD_FAILURE() << "a grid of cell size " << bad << " was made";
        } catch (const std::invalid_argument &e) {
            EXPECT_NE(std::string(e.what()).find("got " + std::to_string(bad)), std::string::npos)
                << e.what();
        }
    }
    EXPECT_NE(Grid::check(int64_t(INT32_MAX) + 1, {}), "");
    EXPECT_NE(Grid::check(10, {{5, 0}, {4, 10}}).find("area is empty"), std::string::npos);
    EXPECT_THROW(Grid(10, Area{{0, 5}, {10, 4}}), std::invalid_argument);
    EXPECT_EQ(Grid::check(1, {}), "");
    EXPECT_EQ(Grid::check(10, {{3, 3}, {3, 3}}), "") << "a one-point area is an area";
}

// A 1000x1000 scene: its corners and edges are in, one unit past them is out, and a refused
// enter or move changes nothing.
TEST(LogicAoi, PositionsOutsideTheAreaAreRefusedAndChangeNothing)
{
    Grid g(100, {{0, 0}, {999, 999}});
    std::vector<uint64_t> seen;
    Grid::Moved m;
    const Pos in[] = {{0, 0}, {999, 0}, {0, 999}, {999, 999}, {500, 0}, {0, 500}};
    uint64_t id = 1;
    for (Pos p : in)
        EXPECT_EQ(Result::ok, g.enter(id++, p, seen)) << p.x << "," << p.y;
    const Pos out[] = {{-1, 0},    {0, -1},    {1000, 0},        {0, 1000},
                       {-1, 1000}, {1000, -1}, {INT32_MIN, 500}, {500, INT32_MAX}};
    for (Pos p : out) {
        EXPECT_EQ(Result::outside, g.enter(100, p, seen)) << p.x << "," << p.y;
        EXPECT_TRUE(seen.empty());
        EXPECT_FALSE(g.contains(100));
        EXPECT_EQ(Result::outside, g.move(1, p, m)) << p.x << "," << p.y;
        ASSERT_NE(g.pos(1), nullptr);
        EXPECT_EQ(g.pos(1)->x, 0);
        EXPECT_EQ(g.pos(1)->y, 0);
    }
    EXPECT_STREQ(coho::game::aoi::to_string(Result::outside), "position outside the scene");
    // From (0,0) nobody is in view: the others stand 5 cells away or more.
    seen.clear();
    g.view_of({0, 0}, 1, seen);
    EXPECT_TRUE(seen.empty()) << "every other entity is at least 5 cells away";
    EXPECT_EQ(Result::ok, g.move(1, {199, 199}, m)); // cell (1,1): still nobody in view
    EXPECT_EQ(Result::ok, g.move(1, {999, 899}, m)); // cell (9,8): next to 4's (9,9) only
    EXPECT_EQ(as_set(m.entered), std::set<uint64_t>{4});
    EXPECT_EQ(g.size(), 6u);
}

std::map<uint64_t, Batch> take_all(Batches &b, const Grid &g)
{
    std::map<uint64_t, Batch> out;
    b.take(g, [&](uint64_t observer, const Batch &batch) {
        EXPECT_EQ(out.count(observer), 0u) << "observer " << observer << " got two batches";
        out[observer] = batch;
    });
    EXPECT_TRUE(b.empty());
    return out;
}

std::set<uint64_t> ids(const std::vector<coho::game::aoi::Seen> &v)
{
    std::set<uint64_t> s;
    for (auto &x : v)
        s.insert(x.who);
    return s;
}

// Records in `b` what a grid change tells whom, as coho-logic's scenes do.
struct World {
    Grid g{100, {{0, 0}, {9999, 9999}}};
    Batches b;
    std::vector<uint64_t> seen;
    Grid::Moved m;
    void enter(uint64_t id, Pos p)
    {
        ASSERT_EQ(Result::ok, g.enter(id, p, seen));
        b.forget(id);
        for (uint64_t o : seen)
            b.entered(o, id);
    }
    void move(uint64_t id, Pos p)
    {
        ASSERT_EQ(Result::ok, g.move(id, p, m));
        b.moved(id);
        for (uint64_t o : m.entered) {
            b.entered(o, id);
            b.entered(id, o);
        }
        for (uint64_t o : m.left) {
            b.left(o, id);
            b.left(id, o);
        }
    }
    void leave(uint64_t id)
    {
        ASSERT_EQ(Result::ok, g.leave(id, seen));
        for (uint64_t o : seen)
            b.left(o, id);
        b.forget(id);
    }
};

TEST(LogicAoi, BatchesCoalesceEachEntityIntoOneEntryPerObserverPerTick)
{
    World w;
    w.enter(1, {50, 50}); // the observer, cell (0,0)
    w.enter(11, {150, 150});
    w.enter(13, {100, 0});
    w.enter(14, {0, 100});
    w.enter(15, {199, 0});
    w.enter(16, {60, 60});
    take_all(w.b, w.g); // the tick before: 1 knows 11, 13, 14, 15, 16
    // 10 enters the view and moves twice -> entered, at its last position.
    w.enter(10, {1000, 1000});
    w.move(10, {120, 120});
    w.move(10, {130, 130});
    // 11 (known) moves three times in view -> moved, last position.
    w.move(11, {160, 160});
    w.move(11, {170, 170});
    w.move(11, {180, 180});
    // 12 comes and goes within the tick -> nothing.
    w.enter(12, {20, 20});
    w.move(12, {25, 25});
    w.move(12, {900, 900});
    // 13 (known) moves, goes out of view, then on unseen -> left, where it is now.
    w.move(13, {110, 10});
    w.move(13, {700, 700});
    w.move(13, {701, 701});
    // 14 (known) goes out of view and comes back -> moved.
    w.move(14, {0, 600});
    w.move(14, {0, 120});
    // 15 leaves the scene -> left without a position. 16 stands still -> nothing.
    w.leave(15);
    auto got = take_all(w.b, w.g);
    ASSERT_EQ(got.count(1), 1u);
    const Batch &o = got[1];
    EXPECT_EQ(ids(o.entered), std::set<uint64_t>{10});
    EXPECT_EQ(o.entered[0].pos.x, 130);
    EXPECT_EQ(ids(o.moved), (std::set<uint64_t>{11, 14}));
    EXPECT_EQ(o.moved[0].who, 11u) << "lists are sorted by id";
    EXPECT_EQ(o.moved[0].pos.x, 180);
    EXPECT_EQ(o.moved[1].pos.y, 120);
    EXPECT_EQ(ids(o.left), (std::set<uint64_t>{13, 15}));
    EXPECT_TRUE(o.left[0].has_pos);
    EXPECT_EQ(o.left[0].pos.x, 701);
    EXPECT_FALSE(o.left[1].has_pos);
    EXPECT_EQ(o.size(), 5u);
    // 16 (next to 1, standing still) is told the same of the others.
    EXPECT_EQ(ids(got[16].entered), std::set<uint64_t>{10});
    EXPECT_EQ(ids(got[16].moved), (std::set<uint64_t>{11, 14}));
    EXPECT_EQ(ids(got[16].left), (std::set<uint64_t>{13, 15}));
    // The next tick starts empty.
    EXPECT_TRUE(take_all(w.b, w.g).empty());
    // One who entered after a move is not told of it (its enter reply had it); a move after
    // its enter is told.
    w.move(11, {190, 190});
    w.enter(20, {55, 55});
    got = take_all(w.b, w.g);
    EXPECT_EQ(got.count(20), 0u);
    EXPECT_EQ(ids(got[1].moved), std::set<uint64_t>{11});
    EXPECT_EQ(ids(got[1].entered), std::set<uint64_t>{20});
    w.enter(21, {56, 56});
    w.move(11, {191, 191});
    got = take_all(w.b, w.g);
    EXPECT_EQ(ids(got[21].moved), std::set<uint64_t>{11});
    // An observer that leaves is told nothing more.
    w.move(11, {192, 192});
    w.leave(1);
    got = take_all(w.b, w.g);
    EXPECT_EQ(got.count(1), 0u);
}

// Grid and batches together, ticked at random moments, against the definition: after each
// tick an observer's picture (its last enter reply, then every batch applied) is exactly the
// entities in its view, at their true positions.
TEST(LogicAoi, BatchedPicturesMatchTheGridAfterEveryTick)
{
    constexpr int32_t kCell = 50;
    std::mt19937 rng(99);
    std::uniform_int_distribution<int32_t> coord(0, 999);
    Grid g(kCell, {{0, 0}, {999, 999}});
    Batches b;
    std::map<uint64_t, std::map<uint64_t, Pos>> picture; // observer -> who -> pos
    std::vector<uint64_t> seen;
    Grid::Moved m;
    auto enter = [&](uint64_t id) {
        Pos p{coord(rng), coord(rng)};
        ASSERT_EQ(Result::ok, g.enter(id, p, seen));
        b.forget(id);
        for (uint64_t o : seen) {
            b.entered(o, id);
            picture[id][o] = *g.pos(o);
        }
        picture[id]; // an empty view is a view
    };
    for (uint64_t id = 1; id <= 300; id++)
        enter(id);
    for (int step = 0; step < 6000; step++) {
        const uint64_t id = 1 + rng() % 300;
        if (!g.contains(id)) {
            enter(id);
        } else if (step % 29 == 0) {
            ASSERT_EQ(Result::ok, g.leave(id, seen));
            for (uint64_t o : seen)
                b.left(o, id);
            b.forget(id);
            picture.erase(id);
        } else {
            Pos p = *g.pos(id);
            p.x = std::clamp(p.x + int32_t(rng() % 81) - 40, 0, 999);
            p.y = std::clamp(p.y + int32_t(rng() % 81) - 40, 0, 999);
            ASSERT_EQ(Result::ok, g.move(id, p, m));
            b.moved(id);
            for (uint64_t o : m.entered) {
                b.entered(o, id);
                b.entered(id, o);
            }
            for (uint64_t o : m.left) {
                b.left(o, id);
                b.left(id, o);
            }
        }
        if (rng() % 40 != 0)
            continue;
        // A tick.
        b.take(g, [&](uint64_t observer, const Batch &batch) {
            auto &pic = picture[observer];
            for (auto &x : batch.entered) {
                EXPECT_EQ(pic.count(x.who), 0u) << "entered twice: " << x.who;
                pic[x.who] = x.pos;
            }
            for (auto &x : batch.moved) {
                EXPECT_EQ(pic.count(x.who), 1u) << "moved unseen: " << x.who;
                pic[x.who] = x.pos;
            }
            for (auto &x : batch.left) {
                EXPECT_EQ(pic.count(x.who), 1u) << "left unseen: " << x.who;
                if (x.has_pos) {
                    EXPECT_FALSE(Grid::sees(*g.pos(observer), x.pos, kCell));
                }
                pic.erase(x.who);
            }
        });
        for (auto &[observer, pic] : picture) {
            std::map<uint64_t, Pos> want;
            seen.clear();
            g.view_of(*g.pos(observer), observer, seen);
            for (uint64_t o : seen)
                want[o] = *g.pos(o);
            ASSERT_EQ(pic.size(), want.size()) << "observer " << observer << " step " << step;
            for (auto &[o, p] : want) {
                ASSERT_EQ(pic.count(o), 1u) << "observer " << observer << " misses " << o;
                EXPECT_EQ(pic[o].x, p.x);
                EXPECT_EQ(pic[o].y, p.y);
            }
        }
        if (HasFailure())
            return;
    }
}

// A world of many players, driven at random, against the definition.
TEST(LogicAoi, ThousandsOfPlayersMatchABruteForceModel)
{
    constexpr int32_t kCell = 50;
    constexpr int kPlayers = 2000, kMoves = 4000;
    std::mt19937 rng(12345);
    std::uniform_int_distribution<int32_t> coord(-1000, 1000);
    Grid g(kCell);
    std::map<uint64_t, Pos> model;
    std::vector<uint64_t> seen;
    auto expect_view = [&](uint64_t id, Pos p, const std::vector<uint64_t> &got) {
        std::set<uint64_t> want;
        for (auto &[o, op] : model)
            if (o != id && sees(p, op, kCell))
                want.insert(o);
        EXPECT_EQ(as_set(got), want) << "id " << id;
    };
    for (uint64_t id = 1; id <= kPlayers; id++) {
        Pos p{coord(rng), coord(rng)};
        ASSERT_EQ(Result::ok, g.enter(id, p, seen));
        expect_view(id, p, seen);
        model[id] = p;
    }
    Grid::Moved m;
    for (int i = 0; i < kMoves; i++) {
        const uint64_t id = 1 + rng() % kPlayers;
        if (model.count(id) == 0) {
            Pos p{coord(rng), coord(rng)};
            ASSERT_EQ(Result::ok, g.enter(id, p, seen));
            expect_view(id, p, seen);
            model[id] = p;
            continue;
        }
        if (i % 10 == 0) {
            ASSERT_EQ(Result::ok, g.leave(id, seen));
            expect_view(id, model[id], seen);
            model.erase(id);
            continue;
        }
        // Mostly small steps (cell crossings), sometimes jumps.
        Pos from = model[id], to = from;
        if (i % 7 == 0) {
            to = {coord(rng), coord(rng)};
        } else {
            to.x = std::clamp(from.x + int32_t(rng() % 121) - 60, -1000, 1000);
            to.y = std::clamp(from.y + int32_t(rng() % 121) - 60, -1000, 1000);
        }
        ASSERT_EQ(Result::ok, g.move(id, to, m));
        std::set<uint64_t> entered, stayed, left;
        for (auto &[o, op] : model) {
            if (o == id)
                continue;
            bool before = sees(from, op, kCell), after = sees(to, op, kCell);
            if (before && after)
                stayed.insert(o);
            else if (after)
                entered.insert(o);
            else if (before)
                left.insert(o);
        }
        EXPECT_EQ(as_set(m.entered), entered) << "move " << i;
        EXPECT_EQ(as_set(m.stayed), stayed) << "move " << i;
        EXPECT_EQ(as_set(m.left), left) << "move " << i;
        model[id] = to;
        if (HasFailure())
            return;
    }
    EXPECT_EQ(g.size(), model.size());
}

// 10 k players into a dense scene (the worst case of a list-based AOI): every sighting is
// reported once each way. Its cost is measured by bench/aoi_bench.cc.
TEST(LogicAoi, TenThousandPlayersEnterADenseScene)
{
    Grid g(100, {{0, 0}, {999, 999}});
    std::vector<uint64_t> seen;
    std::mt19937 rng(7);
    std::uniform_int_distribution<int32_t> coord(0, 999);
    size_t total_seen = 0;
    for (uint64_t id = 1; id <= 10000; id++) {
        ASSERT_EQ(Result::ok, g.enter(id, {coord(rng), coord(rng)}, seen));
        total_seen += seen.size();
    }
    EXPECT_EQ(g.size(), 10000u);
    EXPECT_EQ(g.cell_count(), 100u);
    // Each pair in view is counted once (by whichever entered second).
    size_t pairs = 0;
    for (uint64_t id = 1; id <= 10000; id++) {
        seen.clear();
        g.view_of(*g.pos(id), id, seen);
        pairs += seen.size();
    }
    EXPECT_EQ(pairs, 2 * total_seen);
}

} // namespace
