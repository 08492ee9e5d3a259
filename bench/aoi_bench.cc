// SPDX-License-Identifier: MIT
// The AOI grid of game/logic (aoi.hpp, aoi_batch.hpp) against a naive all-pairs scan, in the
// same run (bench/RESULTS.md "AOI grid"):
//   - Insert: 10 k entities entering one dense area, each told who it sees. "Spread": a
//     1000x1000 scene; "Point": all at one spot, the worst case (everyone sees everyone).
//   - Move: 10 k entities in a 1000x1000 scene moving once each (one second of play at
//     1 move/s), each move split into entered/stayed/left; "Batched" also records every change
//     for the observers and takes the batches every 500 moves (a 50 ms tick).
// The naive AOI computes the same answers by checking every other entity against the rule.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "game/logic/aoi.hpp"
#include "game/logic/aoi_batch.hpp"

namespace {

using coho::game::aoi::Area;
using coho::game::aoi::Batch;
using coho::game::aoi::Batches;
using coho::game::aoi::Grid;
using coho::game::aoi::Pos;

constexpr int kEntities = 10000;
constexpr int32_t kSide = 1000;
const Area kScene{{0, 0}, {kSide - 1, kSide - 1}};

// Every entity checked against every other: the same answers as the grid, by brute force.
class Naive {
public:
    explicit Naive(int32_t cell) : cell_(cell) {}
    void enter(uint64_t id, Pos p, std::vector<uint64_t> &seen)
    {
        seen.clear();
        for (uint64_t o = 0; o < pos_.size(); o++)
            if (in_[o] && Grid::sees(p, pos_[o], cell_))
                seen.push_back(o);
        if (id >= pos_.size()) {
            pos_.resize(id + 1);
            in_.resize(id + 1);
        }
        pos_[id] = p;
        in_[id] = true;
    }
    void move(uint64_t id, Pos p, Grid::Moved &m)
    {
        m.entered.clear();
        m.stayed.clear();
        m.left.clear();
        const Pos from = pos_[id];
        for (uint64_t o = 0; o < pos_.size(); o++) {
            if (!in_[o] || o == id)
                continue;
            const bool before = Grid::sees(from, pos_[o], cell_);
            const bool after = Grid::sees(p, pos_[o], cell_);
            if (before && after)
                m.stayed.push_back(o);
            else if (after)
                m.entered.push_back(o);
            else if (before)
                m.left.push_back(o);
        }
        pos_[id] = p;
    }

private:
    int32_t cell_;
    std::vector<Pos> pos_;
    std::vector<bool> in_;
};

std::vector<Pos> spread(uint32_t seed)
{
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int32_t> c(0, kSide - 1);
    std::vector<Pos> v(kEntities);
    for (auto &p : v)
        p = {c(rng), c(rng)};
    return v;
}

// One step per entity: up to 10 units on each axis (walking speed), inside the scene.
std::vector<Pos> steps(const std::vector<Pos> &from, uint32_t seed)
{
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int32_t> d(-10, 10);
    std::vector<Pos> v(from.size());
    for (size_t i = 0; i < v.size(); i++) {
        v[i].x = std::clamp(from[i].x + d(rng), 0, kSide - 1);
        v[i].y = std::clamp(from[i].y + d(rng), 0, kSide - 1);
    }
    return v;
}

template <class Aoi>
void insert(benchmark::State &state, Aoi make, const std::vector<Pos> &at)
{
    std::vector<uint64_t> seen;
    seen.reserve(kEntities);
    size_t sightings = 0;
    for (auto _ : state) {
        auto aoi = make();
        sightings = 0;
        for (uint64_t id = 0; id < at.size(); id++) {
            aoi.enter(id, at[id], seen);
            sightings += seen.size();
        }
        benchmark::DoNotOptimize(sightings);
    }
    state.counters["sightings"] = double(sightings);
    state.SetItemsProcessed(int64_t(state.iterations()) * kEntities);
}

void BM_InsertSpread_Grid(benchmark::State &state)
{
    const int32_t cell = int32_t(state.range(0));
    insert(
        state, [&] { return Grid(cell, kScene); }, spread(1));
}
void BM_InsertSpread_Naive(benchmark::State &state)
{
    const int32_t cell = int32_t(state.range(0));
    insert(
        state, [&] { return Naive(cell); }, spread(1));
}
void BM_InsertPoint_Grid(benchmark::State &state)
{
    insert(
        state, [] { return Grid(100, kScene); }, std::vector<Pos>(kEntities, Pos{500, 500}));
}
void BM_InsertPoint_Naive(benchmark::State &state)
{
    insert(
        state, [] { return Naive(100); }, std::vector<Pos>(kEntities, Pos{500, 500}));
}

// The batches of a tick; only the grid keeps positions (Batches::take reads them there).
void take(Batches &b, const Grid &g, size_t &told)
{
    b.take(g, [&](uint64_t, const Batch &batch) { told += batch.size(); });
}
void take(Batches &, const class Naive &, size_t &) {}

// One iteration: every entity moves once (a second of play at 1 move/s each).
template <class Aoi>
void move(benchmark::State &state, Aoi &aoi, bool batched)
{
    std::vector<Pos> now = spread(2);
    std::vector<uint64_t> seen;
    for (uint64_t id = 0; id < now.size(); id++)
        aoi.enter(id, now[id], seen);
    Grid::Moved m;
    Batches b;
    uint32_t round = 0;
    size_t told = 0, changes = 0;
    for (auto _ : state) {
        state.PauseTiming();
        const std::vector<Pos> next = steps(now, ++round);
        state.ResumeTiming();
        for (uint64_t id = 0; id < next.size(); id++) {
            aoi.move(id, next[id], m);
            changes += m.entered.size() + m.stayed.size() + m.left.size();
            if (batched) {
                b.moved(id);
                for (uint64_t o : m.entered) {
                    b.entered(o, id);
                    b.entered(id, o);
                }
                for (uint64_t o : m.left) {
                    b.left(o, id);
                    b.left(id, o);
                }
                if (id % 500 == 499)
                    take(b, aoi, told);
            }
        }
        now = next;
        benchmark::DoNotOptimize(changes);
    }
    state.counters["changes/move"] =
        double(changes) / double(int64_t(state.iterations()) * kEntities);
    if (batched)
        state.counters["told/move"] =
            double(told) / double(int64_t(state.iterations()) * kEntities);
    state.SetItemsProcessed(int64_t(state.iterations()) * kEntities);
}

void BM_MoveSecond_Grid(benchmark::State &state)
{
    Grid g(int32_t(state.range(0)), kScene);
    move(state, g, false);
}
void BM_MoveSecond_GridBatched(benchmark::State &state)
{
    Grid g(int32_t(state.range(0)), kScene);
    move(state, g, true);
}
void BM_MoveSecond_Naive(benchmark::State &state)
{
    Naive n(int32_t(state.range(0)));
    move(state, n, false);
}

} // namespace

BENCHMARK(BM_InsertSpread_Grid)->Arg(50)->Arg(100)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_InsertSpread_Naive)->Arg(50)->Arg(100)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_InsertPoint_Grid)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_InsertPoint_Naive)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_MoveSecond_Grid)->Arg(50)->Arg(100)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_MoveSecond_GridBatched)->Arg(50)->Arg(100)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_MoveSecond_Naive)->Arg(50)->Arg(100)->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
