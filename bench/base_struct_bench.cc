// SPDX-License-Identifier: MIT
// base_struct micro benchmarks, each against a baseline in the same run: node pool alloc+free
// vs malloc/free, hash map lookup vs std::unordered_map, 4-ary heap pop+push vs
// std::priority_queue. The ratios are printed after the table (lower is better for coho).
//
//   base_struct_bench [google benchmark flags]   the benchmarks and the ratio table
//   base_struct_bench --callgrind OP             runs only OP (pool_alloc_free,
//                                                hashmap_lookup) CG_OPS times in a
//                                                noinline function, for
//   valgrind --tool=callgrind --collect-atstart=no --toggle-collect=cg_OP
//       base_struct_bench --callgrind OP         (instructions per op = Ir / CG_OPS)
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <queue>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

extern "C" {
#include "base_struct/hashmap.h"
#include "base_struct/heap.h"
#include "base_struct/pool.h"
}

namespace {

constexpr size_t kNodeSize = 64;
constexpr long kCgOps = 1000000;

uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

} // namespace

// ---- fixed-count loops for callgrind (instruction counts per op) ----

extern "C" __attribute__((noinline)) void cg_pool_alloc_free(coho__pool_t *p, long n)
{
    for (long i = 0; i < n; i++) {
        void *node;
        uint64_t id = coho__pool_alloc(p, &node, nullptr);
        benchmark::DoNotOptimize(node);
        coho__pool_free(p, id);
    }
}

extern "C" __attribute__((noinline)) void cg_hashmap_lookup(const coho__hashmap_t *m,
                                                            const uint64_t *order, long n)
{
    for (long i = 0; i < n; i++)
        benchmark::DoNotOptimize(coho__hashmap_get(m, order[i & 1023]));
}

namespace {

// ---- node pool vs malloc ----

void BM_Pool_AllocFree(benchmark::State &st)
{
    coho__pool_t *p = coho__pool_create(kNodeSize, 0, 0);
    for (auto _ : st) {
        void *n;
        uint64_t id = coho__pool_alloc(p, &n, nullptr);
        benchmark::DoNotOptimize(n);
        coho__pool_free(p, id);
    }
    coho__pool_destroy(p);
}
BENCHMARK(BM_Pool_AllocFree);

void BM_Malloc_AllocFree(benchmark::State &st)
{
    for (auto _ : st) {
        void *n = malloc(kNodeSize);
        benchmark::DoNotOptimize(n);
        free(n);
    }
}
BENCHMARK(BM_Malloc_AllocFree);

// 1024 allocations, then 1024 frees in a shuffled order: the free list gets scrambled, as it
// does in a server whose connections end in any order. Time is per alloc+free pair.
void BM_Pool_AllocFreeBatch(benchmark::State &st)
{
    const size_t n = static_cast<size_t>(st.range(0));
    coho__pool_t *p = coho__pool_create(kNodeSize, 0, 0);
    std::vector<uint64_t> ids(n);
    std::vector<size_t> order(n);
    uint64_t rng = 1;
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    for (size_t i = n - 1; i > 0; i--)
        std::swap(order[i], order[splitmix(&rng) % (i + 1)]);
    for (auto _ : st) {
        for (size_t i = 0; i < n; i++)
            ids[i] = coho__pool_alloc(p, nullptr, nullptr);
        for (size_t i = 0; i < n; i++)
            coho__pool_free(p, ids[order[i]]);
    }
    st.SetItemsProcessed(st.iterations() * static_cast<int64_t>(n));
    coho__pool_destroy(p);
}
BENCHMARK(BM_Pool_AllocFreeBatch)->Arg(1024);

void BM_Malloc_AllocFreeBatch(benchmark::State &st)
{
    const size_t n = static_cast<size_t>(st.range(0));
    std::vector<void *> ptrs(n);
    std::vector<size_t> order(n);
    uint64_t rng = 1;
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    for (size_t i = n - 1; i > 0; i--)
        std::swap(order[i], order[splitmix(&rng) % (i + 1)]);
    for (auto _ : st) {
        for (size_t i = 0; i < n; i++) {
            ptrs[i] = malloc(kNodeSize);
            benchmark::DoNotOptimize(ptrs[i]);
        }
        for (size_t i = 0; i < n; i++)
            free(ptrs[order[i]]);
    }
    st.SetItemsProcessed(st.iterations() * static_cast<int64_t>(n));
}
BENCHMARK(BM_Malloc_AllocFreeBatch)->Arg(1024);

// Resolving a live id (the scheduler's coroutine lookup), 4096 live nodes, random order.
void BM_Pool_Get(benchmark::State &st)
{
    const size_t n = 4096;
    coho__pool_t *p = coho__pool_create(kNodeSize, 0, 0);
    std::vector<uint64_t> ids(n);
    uint64_t rng = 2;
    for (size_t i = 0; i < n; i++)
        ids[i] = coho__pool_alloc(p, nullptr, nullptr);
    for (size_t i = n - 1; i > 0; i--)
        std::swap(ids[i], ids[splitmix(&rng) % (i + 1)]);
    size_t i = 0;
    for (auto _ : st) {
        benchmark::DoNotOptimize(coho__pool_get(p, ids[i]));
        i = (i + 1) & (n - 1);
    }
    coho__pool_destroy(p);
}
BENCHMARK(BM_Pool_Get);

// ---- hash map vs std::unordered_map: hits, keys random 64-bit, looked up in random order ----

struct KeySet {
    std::vector<uint64_t> keys;  // insertion order
    std::vector<uint64_t> order; // lookup order (a shuffle of keys)
};

KeySet make_keys(size_t n)
{
    KeySet ks;
    uint64_t rng = 3;
    ks.keys.resize(n);
    for (size_t i = 0; i < n; i++)
        ks.keys[i] = splitmix(&rng);
    ks.order = ks.keys;
    for (size_t i = n - 1; i > 0; i--)
        std::swap(ks.order[i], ks.order[splitmix(&rng) % (i + 1)]);
    return ks;
}

void *value_of(uint64_t k)
{
    return reinterpret_cast<void *>(static_cast<uintptr_t>(k | 1));
}

void BM_HashMap_Lookup(benchmark::State &st)
{
    const size_t n = static_cast<size_t>(st.range(0));
    KeySet ks = make_keys(n);
    coho__hashmap_t m;
    coho__hashmap_init(&m, 0);
    for (uint64_t k : ks.keys)
        coho__hashmap_put(&m, k, value_of(k), nullptr);
    size_t i = 0;
    for (auto _ : st) {
        benchmark::DoNotOptimize(coho__hashmap_get(&m, ks.order[i]));
        i = (i + 1) & (n - 1);
    }
    coho__hashmap_destroy(&m);
}
BENCHMARK(BM_HashMap_Lookup)->Arg(1 << 10)->Arg(1 << 16)->Arg(1 << 20);

void BM_UnorderedMap_Lookup(benchmark::State &st)
{
    const size_t n = static_cast<size_t>(st.range(0));
    KeySet ks = make_keys(n);
    std::unordered_map<uint64_t, void *> m;
    for (uint64_t k : ks.keys)
        m.emplace(k, value_of(k));
    size_t i = 0;
    for (auto _ : st) {
        benchmark::DoNotOptimize(m.find(ks.order[i])->second);
        i = (i + 1) & (n - 1);
    }
}
BENCHMARK(BM_UnorderedMap_Lookup)->Arg(1 << 10)->Arg(1 << 16)->Arg(1 << 20);

// ---- 4-ary intrusive heap vs std::priority_queue: pop the minimum, push it back later ----

struct HeapItem {
    coho__heap_node_t node;
    uint64_t key;
};

bool heap_item_less(const coho__heap_node_t *a, const coho__heap_node_t *b)
{
    return reinterpret_cast<const HeapItem *>(a)->key < reinterpret_cast<const HeapItem *>(b)->key;
}

void BM_Heap_PushPop(benchmark::State &st)
{
    const size_t n = static_cast<size_t>(st.range(0));
    std::vector<HeapItem> items(n);
    coho__heap_t h;
    uint64_t rng = 4;
    coho__heap_init(&h, heap_item_less);
    for (auto &it : items) {
        it.key = splitmix(&rng) % (n * 4);
        coho__heap_node_init(&it.node);
        coho__heap_push(&h, &it.node);
    }
    for (auto _ : st) {
        HeapItem *it = reinterpret_cast<HeapItem *>(coho__heap_pop(&h));
        it->key += splitmix(&rng) % (n * 4);
        coho__heap_push(&h, &it->node);
    }
    coho__heap_destroy(&h);
}
BENCHMARK(BM_Heap_PushPop)->Arg(1 << 10)->Arg(1 << 20);

void BM_PriorityQueue_PushPop(benchmark::State &st)
{
    const size_t n = static_cast<size_t>(st.range(0));
    using Entry = std::pair<uint64_t, HeapItem *>;
    std::vector<HeapItem> items(n);
    std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> q;
    uint64_t rng = 4;
    for (auto &it : items) {
        it.key = splitmix(&rng) % (n * 4);
        q.emplace(it.key, &it);
    }
    for (auto _ : st) {
        HeapItem *it = q.top().second;
        q.pop();
        it->key += splitmix(&rng) % (n * 4);
        q.emplace(it->key, it);
    }
}
BENCHMARK(BM_PriorityQueue_PushPop)->Arg(1 << 10)->Arg(1 << 20);

// ---- the ratio table ----

class RatioReporter : public benchmark::ConsoleReporter {
public:
    void ReportRuns(const std::vector<Run> &reports) override
    {
        // With --benchmark_repetitions the median wins over the last single run.
        for (const Run &r : reports) {
            if (r.error_occurred)
                continue;
            if (r.run_type == Run::RT_Iteration && median_.count(r.run_name.str()) == 0)
                ns_[r.run_name.str()] = r.GetAdjustedCPUTime();
            if (r.run_type == Run::RT_Aggregate && r.aggregate_name == "median") {
                ns_[r.run_name.str()] = r.GetAdjustedCPUTime();
                median_[r.run_name.str()] = true;
            }
        }
        ConsoleReporter::ReportRuns(reports);
    }

    void print_ratios() const
    {
        static const char *const pairs[][2] = {
            {"BM_Pool_AllocFree", "BM_Malloc_AllocFree"},
            {"BM_Pool_AllocFreeBatch/1024", "BM_Malloc_AllocFreeBatch/1024"},
            {"BM_HashMap_Lookup/1024", "BM_UnorderedMap_Lookup/1024"},
            {"BM_HashMap_Lookup/65536", "BM_UnorderedMap_Lookup/65536"},
            {"BM_HashMap_Lookup/1048576", "BM_UnorderedMap_Lookup/1048576"},
            {"BM_Heap_PushPop/1024", "BM_PriorityQueue_PushPop/1024"},
            {"BM_Heap_PushPop/1048576", "BM_PriorityQueue_PushPop/1048576"},
        };
        std::printf("\nCPU time ratios (median when repeated; below 1: coho is faster)\n");
        std::printf("%-34s %-34s %9s\n", "coho", "baseline", "coho/base");
        for (const auto &p : pairs) {
            auto a = ns_.find(p[0]), b = ns_.find(p[1]);
            if (a == ns_.end() || b == ns_.end() || b->second <= 0)
                continue;
            std::printf("%-34s %-34s %9.3f\n", p[0], p[1], a->second / b->second);
        }
    }

private:
    std::map<std::string, double> ns_;
    std::map<std::string, bool> median_;
};

int run_callgrind(const char *op)
{
    if (std::strcmp(op, "pool_alloc_free") == 0) {
        coho__pool_t *p = coho__pool_create(kNodeSize, 0, 0);
        cg_pool_alloc_free(p, kCgOps);
        coho__pool_destroy(p);
        return 0;
    }
    if (std::strcmp(op, "hashmap_lookup") == 0) {
        KeySet ks = make_keys(1024);
        coho__hashmap_t m;
        coho__hashmap_init(&m, 0);
        for (uint64_t k : ks.keys)
            coho__hashmap_put(&m, k, value_of(k), nullptr);
        cg_hashmap_lookup(&m, ks.order.data(), kCgOps);
        coho__hashmap_destroy(&m);
        return 0;
    }
    std::fprintf(stderr, "unknown op %s\n", op);
    return 2;
}

} // namespace

int main(int argc, char **argv)
{
    if (argc == 3 && std::strcmp(argv[1], "--callgrind") == 0)
        return run_callgrind(argv[2]);
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv))
        return 1;
    RatioReporter reporter;
    benchmark::RunSpecifiedBenchmarks(&reporter);
    reporter.print_ratios();
    benchmark::Shutdown();
    return 0;
}
