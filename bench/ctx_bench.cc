// SPDX-License-Identifier: MIT
// One-way context switch: coho__ctx_switch against Boost.Context's fcontext and glibc's
// swapcontext, in three FP situations: both sides alike (Equal); one side did inexact math, so
// the sticky MXCSR flags differ (FlagsDiffer: a full-MXCSR reload changes the register on every
// switch, coho compares control bits only); one side rounds toward zero (RoundingDiffers: the
// control bits differ, so every implementation must reload on every switch). Every benchmark
// iteration is a round trip (two switches); "per_switch" is the time of one. At the end the
// binary prints each variant's ratio to fcontext in the same situation, measured in the same
// run (the target: <= 1.0x fcontext on the CPU it runs on). coho's switch runs under both of its
// FP policies (policy:0 compare-then-reload, policy:1 MXCSR reloaded on every switch); the
// table marks the one coho__ctx_fp_policy_default() picks for this CPU.
#include <benchmark/benchmark.h>
#include <ucontext.h>

#include <boost/context/detail/fcontext.hpp>
#include <cfenv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

extern "C" {
#include "coroutine/ctx.h"
}

namespace {

namespace bctx = boost::context::detail;

constexpr size_t kStackSize = 64 * 1024;

void *stack_alloc()
{
    void *p = std::aligned_alloc(4096, kStackSize);
    if (p == nullptr)
        std::abort();
    return p;
}

enum Mode { kEqual = 0, kFlagsDiffer = 1, kRoundingDiffers = 2 };

volatile double fp_one = 1.0, fp_three = 3.0, fp_sink;

// Run by the switched-to side once, before its loop: makes its FP state differ from main's.
void enter_mode(intptr_t mode)
{
    if (mode == kFlagsDiffer)
        fp_sink = fp_one / fp_three; // raises the sticky inexact flag on this side
    if (mode == kRoundingDiffers)
        std::fesetround(FE_TOWARDZERO);
}

// Run by main before the loop: clear flags, so FlagsDiffer really differs.
void main_mode()
{
    std::feclearexcept(FE_ALL_EXCEPT);
}

void report(benchmark::State &state)
{
    state.counters["per_switch"] = benchmark::Counter(
        2, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

// ---- coho ----

coho__ctx_t coho_main, coho_co;

void coho_entry(void *arg)
{
    enter_mode(reinterpret_cast<intptr_t>(arg));
    for (;;)
        coho__ctx_switch(&coho_co, &coho_main);
}

void BM_CtxSwitch_Asm(benchmark::State &state)
{
    void *stack = stack_alloc();
    int saved_policy = coho__ctx_fp_policy;
    coho__ctx_fp_policy = static_cast<int>(state.range(1));
    main_mode();
    coho__ctx_make(&coho_co, stack, kStackSize, coho_entry,
                   reinterpret_cast<void *>(static_cast<intptr_t>(state.range(0))));
    coho__ctx_switch(&coho_main, &coho_co); // start it; it parks in its loop
    for (auto _ : state)
        coho__ctx_switch(&coho_main, &coho_co);
    report(state);
    std::fesetround(FE_TONEAREST);
    coho__ctx_fp_policy = saved_policy;
    std::free(stack);
}

// ---- Boost.Context fcontext ----

void fcontext_entry(bctx::transfer_t t)
{
    enter_mode(reinterpret_cast<intptr_t>(t.data));
    for (;;)
        t = bctx::jump_fcontext(t.fctx, nullptr);
}

void BM_CtxSwitch_Fcontext(benchmark::State &state)
{
    void *stack = stack_alloc();
    main_mode();
    bctx::fcontext_t c =
        bctx::make_fcontext(static_cast<char *>(stack) + kStackSize, kStackSize, fcontext_entry);
    c = bctx::jump_fcontext(c, reinterpret_cast<void *>(static_cast<intptr_t>(state.range(0))))
            .fctx;
    for (auto _ : state)
        c = bctx::jump_fcontext(c, nullptr).fctx;
    report(state);
    std::free(stack);
}

// ---- ucontext ----

ucontext_t uc_main, uc_co;
intptr_t uc_mode;

void ucontext_entry()
{
    enter_mode(uc_mode);
    for (;;)
        swapcontext(&uc_co, &uc_main);
}

void BM_CtxSwitch_Ucontext(benchmark::State &state)
{
    void *stack = stack_alloc();
    main_mode();
    getcontext(&uc_co);
    uc_co.uc_stack.ss_sp = stack;
    uc_co.uc_stack.ss_size = kStackSize;
    uc_co.uc_link = nullptr;
    uc_mode = state.range(0);
    makecontext(&uc_co, ucontext_entry, 0);
    swapcontext(&uc_main, &uc_co);
    for (auto _ : state)
        swapcontext(&uc_main, &uc_co);
    report(state);
    std::free(stack);
}

void modes(benchmark::internal::Benchmark *b)
{
    b->ArgName("fp")->Arg(kEqual)->Arg(kFlagsDiffer)->Arg(kRoundingDiffers);
}

void modes_policies(benchmark::internal::Benchmark *b)
{
    b->ArgNames({"fp", "policy"});
    for (int m : {kEqual, kFlagsDiffer, kRoundingDiffers})
        for (int p : {COHO__CTX_FP_COMPARE, COHO__CTX_FP_RELOAD})
            b->Args({m, p});
}

BENCHMARK(BM_CtxSwitch_Asm)->Apply(modes_policies);
BENCHMARK(BM_CtxSwitch_Fcontext)->Apply(modes);
BENCHMARK(BM_CtxSwitch_Ucontext)->Apply(modes);

// Console output as usual, plus the fastest repetition of each benchmark for the ratio table.
class RatioReporter : public benchmark::ConsoleReporter {
public:
    void ReportRuns(const std::vector<Run> &runs) override
    {
        for (const Run &r : runs) {
            if (r.run_type != Run::RT_Iteration || r.error_occurred || r.iterations == 0)
                continue;
            double ns = r.cpu_accumulated_time * 1e9 / static_cast<double>(r.iterations) / 2;
            std::string name = r.run_name.function_name + "/" + r.run_name.args;
            auto it = ns_per_switch_.find(name);
            if (it == ns_per_switch_.end() || ns < it->second)
                ns_per_switch_[name] = ns;
        }
        ConsoleReporter::ReportRuns(runs);
    }

    void print_ratios() const
    {
        static const char *const fp[] = {"fp:0", "fp:1", "fp:2"};
        static const char *const what[] = {"equal", "flags differ", "rounding differs"};
        std::printf("\none-way switch, fastest repetition (ns), and ratio to the baseline:\n");
        for (int m = 0; m < 3; m++) {
            auto base = ns_per_switch_.find(std::string("BM_CtxSwitch_Fcontext/") + fp[m]);
            if (base == ns_per_switch_.end())
                continue;
            const std::string chosen = "/policy:" + std::to_string(coho__ctx_fp_policy_default());
            for (std::string impl : {std::string("BM_CtxSwitch_Asm/") + fp[m] + "/policy:0",
                                     std::string("BM_CtxSwitch_Asm/") + fp[m] + "/policy:1",
                                     std::string("BM_CtxSwitch_Ucontext/") + fp[m]}) {
                auto a = ns_per_switch_.find(impl);
                if (a == ns_per_switch_.end())
                    continue;
                bool is_chosen =
                    impl.size() > chosen.size() &&
                    impl.compare(impl.size() - chosen.size(), chosen.size(), chosen) == 0;
                std::printf("  %-16s %-36s %7.2f ns   fcontext %7.2f ns   ratio %.2fx%s\n", what[m],
                            a->first.c_str(), a->second, base->second, a->second / base->second,
                            is_chosen ? "   (policy chosen on this CPU)" : "");
            }
        }
    }

private:
    std::map<std::string, double> ns_per_switch_;
};

} // namespace

int main(int argc, char **argv)
{
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv))
        return 1;
    RatioReporter reporter;
    benchmark::RunSpecifiedBenchmarks(&reporter);
    reporter.print_ratios();
    benchmark::Shutdown();
    return 0;
}
