// SPDX-License-Identifier: MIT
// cbuf streaming bandwidth against memcpy through a flat buffer, in the same run: `depth` writes
// of 4 KiB, then `depth` reads of 4 KiB, repeated. Two cbuf paths: the file-like one (append,
// then read at the cursor + consume) and the socket one (reserve_iov + copy + commit, then
// data_iov + copy + consume, the copies standing in for readv/writev). The bandwidth ratios
// (cbuf / flat; the target is >= 0.8) are printed after the table. The flat baseline calls the C
// library's memcpy with a run-time size, as cbuf does; BM_FlatConst_Stream shows what the
// compiler's inline expansion of a constant 4 KiB memcpy does on the same machine.
//
//   cbuf_bench [google benchmark flags]   the benchmarks and the ratio table
//   cbuf_bench --callgrind OP [DEPTH]     runs only OP (flat, cbuf, cbuf_iov) for 102400
//                                         4 KiB messages written then read, DEPTH (default 1)
//                                         at a time, for
//   valgrind --tool=callgrind --collect-atstart=no --toggle-collect=cg_OP
//       cbuf_bench --callgrind OP [DEPTH] (instructions per message = Ir / 102400)
#include <benchmark/benchmark.h>
#include <sys/uio.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include <coho/cbuf.h>

namespace {

constexpr size_t kMsg = 4096;
constexpr long kCgMessages = 102400;

// Sources and destinations of the messages. Copy speed depends on where source and destination
// sit relative to each other within a 4 KiB page (4K aliasing), which for cbuf depends on where
// malloc put the chunks; so each message uses the next of kSpots source/destination pairs,
// spread across the page, and every variant sees the same mix.
constexpr unsigned kSpots = 8;

struct Bytes {
    unsigned char *region;
    unsigned char *in[kSpots], *out[kSpots];
    Bytes()
    {
        region = static_cast<unsigned char *>(std::aligned_alloc(4096, 4 * kSpots * 4096));
        for (unsigned j = 0; j < kSpots; j++) {
            size_t off = (j * 528u) % 4096u;
            in[j] = region + 2 * j * 4096 + off;
            out[j] = region + 2 * (kSpots + j) * 4096 + off;
            for (size_t i = 0; i < kMsg; i++) {
                in[j][i] = static_cast<unsigned char>(i * 131u + 7u);
                out[j][i] = 0;
            }
        }
    }
    ~Bytes() { std::free(region); }
    Bytes(const Bytes &) = delete;
    Bytes &operator=(const Bytes &) = delete;
    // True when the first `n` spots got their source bytes back.
    bool ok(int64_t n) const
    {
        for (unsigned j = 0; j < kSpots && j < n; j++)
            if (std::memcmp(in[j], out[j], kMsg) != 0)
                return false;
        return true;
    }
};

// The baseline: a flat buffer that holds `depth` messages; writes fill it, reads drain it.
struct Flat {
    std::vector<unsigned char> buf;
    size_t head = 0, tail = 0;
    explicit Flat(size_t cap) : buf(cap) {}
};

// `msg` is the message size as the program sees it at run time (as cbuf and a socket path do),
// so both sides call the C library's memcpy. flat_round_const lets the compiler see the
// constant 4 KiB and expand memcpy inline (rep movsq on x86_64): reported as a second baseline.
// Round r writes messages from spots r, r+1, ... and reads them back to the same spots.
inline void flat_round(Flat &f, const Bytes &io, unsigned r, long depth, size_t msg)
{
    for (long i = 0; i < depth; i++) {
        std::memcpy(f.buf.data() + f.tail, io.in[(r + i) % kSpots], msg);
        f.tail += msg;
    }
    for (long i = 0; i < depth; i++) {
        std::memcpy(io.out[(r + i) % kSpots], f.buf.data() + f.head, msg);
        f.head += msg;
    }
    f.head = f.tail = 0;
}

inline void flat_round_const(Flat &f, const Bytes &io, unsigned r, long depth)
{
    for (long i = 0; i < depth; i++) {
        std::memcpy(f.buf.data() + f.tail, io.in[(r + i) % kSpots], kMsg);
        f.tail += kMsg;
    }
    for (long i = 0; i < depth; i++) {
        std::memcpy(io.out[(r + i) % kSpots], f.buf.data() + f.head, kMsg);
        f.head += kMsg;
    }
    f.head = f.tail = 0;
}

// The message size, hidden from the optimiser.
size_t runtime_msg()
{
    size_t msg = kMsg;
    benchmark::DoNotOptimize(msg);
    return msg;
}

inline void cbuf_round(coho_cbuf_t *b, const Bytes &io, unsigned r, long depth)
{
    for (long i = 0; i < depth; i++)
        coho_cbuf_append(b, io.in[(r + i) % kSpots], kMsg);
    for (long i = 0; i < depth; i++) {
        coho_cbuf_read(b, io.out[(r + i) % kSpots], kMsg);
        coho_cbuf_consume(b, kMsg);
    }
}

inline void cbuf_iov_round(coho_cbuf_t *b, const Bytes &io, unsigned r, long depth)
{
    struct iovec iov[4];
    for (long i = 0; i < depth; i++) {
        int n = coho_cbuf_reserve_iov(b, kMsg, iov, 4);
        size_t left = kMsg;
        const unsigned char *s = io.in[(r + i) % kSpots];
        for (int k = 0; k < n && left > 0; k++) {
            size_t c = iov[k].iov_len < left ? iov[k].iov_len : left;
            std::memcpy(iov[k].iov_base, s, c);
            s += c;
            left -= c;
        }
        coho_cbuf_commit(b, kMsg);
    }
    for (long i = 0; i < depth; i++) {
        int n = coho_cbuf_data_iov(b, 0, iov, 4);
        size_t left = kMsg;
        unsigned char *d = io.out[(r + i) % kSpots];
        for (int k = 0; k < n && left > 0; k++) {
            size_t c = iov[k].iov_len < left ? iov[k].iov_len : left;
            std::memcpy(d, iov[k].iov_base, c);
            d += c;
            left -= c;
        }
        coho_cbuf_consume(b, kMsg);
    }
}

} // namespace

// ---- fixed-count loops for callgrind (instructions per 4 KiB message written and read) ----

extern "C" __attribute__((noinline)) void cg_flat(Flat *f, const Bytes *io, long depth, long rounds)
{
    const size_t msg = runtime_msg();
    for (long i = 0; i < rounds; i++) {
        flat_round(*f, *io, static_cast<unsigned>(i), depth, msg);
        benchmark::ClobberMemory();
    }
}

extern "C" __attribute__((noinline)) void cg_cbuf(coho_cbuf_t *b, const Bytes *io, long depth,
                                                  long rounds)
{
    for (long i = 0; i < rounds; i++) {
        cbuf_round(b, *io, static_cast<unsigned>(i), depth);
        benchmark::ClobberMemory();
    }
}

extern "C" __attribute__((noinline)) void cg_cbuf_iov(coho_cbuf_t *b, const Bytes *io, long depth,
                                                      long rounds)
{
    for (long i = 0; i < rounds; i++) {
        cbuf_iov_round(b, *io, static_cast<unsigned>(i), depth);
        benchmark::ClobberMemory();
    }
}

namespace {

void BM_Flat_Stream(benchmark::State &st)
{
    const long depth = st.range(0);
    const size_t msg = runtime_msg();
    Bytes io;
    unsigned r = 0;
    Flat f(static_cast<size_t>(depth) * kMsg);
    for (auto _ : st) {
        flat_round(f, io, r++, depth, msg);
        benchmark::ClobberMemory();
    }
    if (!io.ok(st.iterations() + depth - 1))
        st.SkipWithError("flat: bytes differ");
    st.SetBytesProcessed(st.iterations() * depth * static_cast<int64_t>(kMsg));
}
BENCHMARK(BM_Flat_Stream)->Arg(1)->Arg(16)->Arg(64);

void BM_FlatConst_Stream(benchmark::State &st)
{
    const long depth = st.range(0);
    Bytes io;
    unsigned r = 0;
    Flat f(static_cast<size_t>(depth) * kMsg);
    for (auto _ : st) {
        flat_round_const(f, io, r++, depth);
        benchmark::ClobberMemory();
    }
    if (!io.ok(st.iterations() + depth - 1))
        st.SkipWithError("flat const: bytes differ");
    st.SetBytesProcessed(st.iterations() * depth * static_cast<int64_t>(kMsg));
}
BENCHMARK(BM_FlatConst_Stream)->Arg(1)->Arg(16)->Arg(64);

void BM_Cbuf_Stream(benchmark::State &st)
{
    const long depth = st.range(0);
    Bytes io;
    unsigned r = 0;
    coho_cbuf_t b;
    coho_cbuf_init(&b, nullptr);
    for (auto _ : st) {
        cbuf_round(&b, io, r++, depth);
        benchmark::ClobberMemory();
    }
    if (!io.ok(st.iterations() + depth - 1) || coho_cbuf_len(&b) != 0)
        st.SkipWithError("cbuf: bytes differ");
    coho_cbuf_destroy(&b);
    st.SetBytesProcessed(st.iterations() * depth * static_cast<int64_t>(kMsg));
}
BENCHMARK(BM_Cbuf_Stream)->Arg(1)->Arg(16)->Arg(64);

void BM_Cbuf_StreamIov(benchmark::State &st)
{
    const long depth = st.range(0);
    Bytes io;
    unsigned r = 0;
    coho_cbuf_t b;
    coho_cbuf_init(&b, nullptr);
    for (auto _ : st) {
        cbuf_iov_round(&b, io, r++, depth);
        benchmark::ClobberMemory();
    }
    if (!io.ok(st.iterations() + depth - 1) || coho_cbuf_len(&b) != 0)
        st.SkipWithError("cbuf iov: bytes differ");
    coho_cbuf_destroy(&b);
    st.SetBytesProcessed(st.iterations() * depth * static_cast<int64_t>(kMsg));
}
BENCHMARK(BM_Cbuf_StreamIov)->Arg(1)->Arg(16)->Arg(64);

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
            {"BM_Cbuf_Stream/1", "BM_Flat_Stream/1"},
            {"BM_Cbuf_Stream/16", "BM_Flat_Stream/16"},
            {"BM_Cbuf_Stream/64", "BM_Flat_Stream/64"},
            {"BM_Cbuf_StreamIov/1", "BM_Flat_Stream/1"},
            {"BM_Cbuf_StreamIov/16", "BM_Flat_Stream/16"},
            {"BM_Cbuf_StreamIov/64", "BM_Flat_Stream/64"},
            {"BM_Cbuf_Stream/1", "BM_FlatConst_Stream/1"},
            {"BM_Cbuf_Stream/16", "BM_FlatConst_Stream/16"},
            {"BM_Cbuf_Stream/64", "BM_FlatConst_Stream/64"},
            {"BM_Flat_Stream/1", "BM_FlatConst_Stream/1"},
            {"BM_Flat_Stream/64", "BM_FlatConst_Stream/64"},
        };
        std::printf("\nBandwidth ratios (median when repeated; target >= 0.8)\n");
        std::printf("%-24s %-24s %10s\n", "measured", "baseline", "bw ratio");
        for (const auto &p : pairs) {
            auto a = ns_.find(p[0]), b = ns_.find(p[1]);
            if (a == ns_.end() || b == ns_.end() || a->second <= 0)
                continue;
            // Same bytes per iteration, so bandwidth ratio = baseline time / cbuf time.
            std::printf("%-24s %-24s %10.3f\n", p[0], p[1], b->second / a->second);
        }
    }

private:
    std::map<std::string, double> ns_;
    std::map<std::string, bool> median_;
};

int run_callgrind(const char *op, long depth)
{
    Bytes io;
    const long rounds = kCgMessages / depth;
    if (depth < 1 || depth > kCgMessages) {
        std::fprintf(stderr, "depth must be 1..%ld\n", kCgMessages);
        return 2;
    }
    if (std::strcmp(op, "flat") == 0) {
        Flat f(static_cast<size_t>(depth) * kMsg);
        cg_flat(&f, &io, depth, rounds);
        return 0;
    }
    if (std::strcmp(op, "cbuf") == 0 || std::strcmp(op, "cbuf_iov") == 0) {
        coho_cbuf_t b;
        coho_cbuf_init(&b, nullptr);
        if (op[4] == '\0')
            cg_cbuf(&b, &io, depth, rounds);
        else
            cg_cbuf_iov(&b, &io, depth, rounds);
        coho_cbuf_destroy(&b);
        return 0;
    }
    std::fprintf(stderr, "unknown op %s\n", op);
    return 2;
}

} // namespace

int main(int argc, char **argv)
{
    if ((argc == 3 || argc == 4) && std::strcmp(argv[1], "--callgrind") == 0)
        return run_callgrind(argv[2], argc == 4 ? std::atol(argv[3]) : 1);
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv))
        return 1;
    RatioReporter reporter;
    benchmark::RunSpecifiedBenchmarks(&reporter);
    reporter.print_ratios();
    benchmark::Shutdown();
    return 0;
}
