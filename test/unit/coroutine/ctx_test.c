/* SPDX-License-Identifier: MIT */
/* Tests of the machine context switch: values passed back and forth, FP control state kept per
 * context (MXCSR rounding, x87 control word), callee-saved registers, deep recursion on a new
 * stack, clean frame-chain ends for backtraces, and a million switches. */
#include <execinfo.h>
#include <fenv.h>
#include <float.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "coroutine/ctx.h"
#include "test/support/cmocka_main.h"

#if defined(__SANITIZE_ADDRESS__)
#    include <sanitizer/asan_interface.h>
#endif

/* A context with its stack. The switch helpers call the ASan fiber API around
 * coho__ctx_switch in sanitizer builds, the way the scheduler does. */
typedef struct tctx {
    coho__ctx_t ctx;
    void *stack_lo;
    size_t size;
    void *fake_stack;
} tctx_t;

static tctx_t main_ctx;

static void fiber_switch_begin(tctx_t *from, const tctx_t *to)
{
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_start_switch_fiber(&from->fake_stack, to->stack_lo, to->size);
#else
    (void)from;
    (void)to;
#endif
}

static void fiber_switch_end(tctx_t *self, tctx_t *prev)
{
#if defined(__SANITIZE_ADDRESS__)
    const void *bottom = NULL;
    size_t size = 0;

    __sanitizer_finish_switch_fiber(self->fake_stack, &bottom, &size);
    if (prev != NULL && prev->stack_lo == NULL) {
        prev->stack_lo = (void *)bottom;
        prev->size = size;
    }
#else
    (void)self;
    (void)prev;
#endif
}

static void tswitch(tctx_t *from, tctx_t *to)
{
    fiber_switch_begin(from, to);
    coho__ctx_switch(&from->ctx, &to->ctx);
    fiber_switch_end(from, NULL);
}

/* First thing an entry function does. */
static void tstarted(tctx_t *self)
{
    fiber_switch_end(self, &main_ctx);
}

static void tctx_make(tctx_t *t, size_t size, coho__ctx_entry_fn fn, void *arg)
{
    memset(t, 0, sizeof(*t));
    t->stack_lo = aligned_alloc(4096, size);
    assert_non_null(t->stack_lo);
    t->size = size;
    coho__ctx_make(&t->ctx, t->stack_lo, size, fn, arg);
    assert_non_null(t->ctx.sp);
}

static void tctx_free(tctx_t *t)
{
    free(t->stack_lo);
}

static void reset_main(void)
{
    memset(&main_ctx, 0, sizeof(main_ctx));
}

/* ---- ping-pong ------------------------------------------------------------------------------ */

static tctx_t pp_co;
static volatile uint64_t pp_mailbox;
static void *pp_arg; /* checked by the case: a failing assertion here would longjmp off-stack */

static void pp_entry(void *arg)
{
    tstarted(&pp_co);
    pp_arg = arg;
    for (;;) {
        pp_mailbox = pp_mailbox * 2 + 1; /* reply to the value main sent */
        tswitch(&pp_co, &main_ctx);
    }
}

static void ctx_switch_ping_pong_passes_values(void **state)
{
    (void)state;
    reset_main();
    pp_arg = NULL;
    tctx_make(&pp_co, 64 * 1024, pp_entry, (void *)&pp_mailbox);
    for (uint64_t i = 0; i < 1000; i++) {
        pp_mailbox = i;
        tswitch(&main_ctx, &pp_co);
        assert_int_equal(pp_mailbox, i * 2 + 1);
    }
    assert_ptr_equal(pp_arg, &pp_mailbox);
    tctx_free(&pp_co);
}

/* ---- FP control state ----------------------------------------------------------------------- */

/* Setting one rounding mode at a time: SSE (MXCSR) and x87 separately, so each is tested on its
 * own. On other architectures both fall back to fesetround (one FPCR). */
#if defined(__x86_64__)
static void set_sse_round_toward_zero(void)
{
    __builtin_ia32_ldmxcsr(__builtin_ia32_stmxcsr() | 0x6000u);
}

static void set_x87_round_toward_zero(void)
{
    uint16_t cw;

    __asm__ volatile("fnstcw %0" : "=m"(cw));
    cw |= 0x0c00u;
    __asm__ volatile("fldcw %0" : : "m"(cw));
}

/* The thread's FP control state, saved and restored around each test (fenv would need libm). */
typedef struct fp_saved {
    unsigned mxcsr;
    uint16_t x87_cw;
} fp_saved_t;

static void fp_save(fp_saved_t *s)
{
    s->mxcsr = __builtin_ia32_stmxcsr();
    __asm__ volatile("fnstcw %0" : "=m"(s->x87_cw));
}

static void fp_restore(const fp_saved_t *s)
{
    __builtin_ia32_ldmxcsr(s->mxcsr);
    __asm__ volatile("fldcw %0" : : "m"(s->x87_cw));
}
#else
static void set_sse_round_toward_zero(void)
{
    fesetround(FE_TOWARDZERO);
}

static void set_x87_round_toward_zero(void)
{
    fesetround(FE_TOWARDZERO);
}

typedef fenv_t fp_saved_t;

static void fp_save(fp_saved_t *s)
{
    fegetenv(s);
}

static void fp_restore(const fp_saved_t *s)
{
    fesetenv(s);
}
#endif

/* 1 + 0.75 ulp: nearest gives 1 + 1 ulp, toward zero gives 1. The operands are volatile so the
 * sum is computed at run time, in the current mode. */
static volatile double d_one = 1.0, d_frac = DBL_EPSILON * 0.75;
static volatile long double ld_one = 1.0L, ld_frac = LDBL_EPSILON * 0.75L;

static bool double_rounds_to_nearest(void)
{
    volatile double s = d_one + d_frac;
    return s == 1.0 + DBL_EPSILON;
}

static bool double_rounds_toward_zero(void)
{
    volatile double s = d_one + d_frac;
    return s == 1.0;
}

static bool long_double_rounds_to_nearest(void)
{
    volatile long double s = ld_one + ld_frac;
    return s == 1.0L + LDBL_EPSILON;
}

static bool long_double_rounds_toward_zero(void)
{
    volatile long double s = ld_one + ld_frac;
    return s == 1.0L;
}

static tctx_t fp_co;
static int fp_rounds;
static volatile int fp_co_failures;

static void mxcsr_entry(void *arg)
{
    (void)arg;
    tstarted(&fp_co);
    set_sse_round_toward_zero();
    for (;;) {
        if (!double_rounds_toward_zero())
            fp_co_failures++;
        fp_rounds++;
        tswitch(&fp_co, &main_ctx);
    }
}

/* Under both FP policies (coho__ctx_fp_policy): each must keep the control bits per context. */
static void ctx_switch_keeps_mxcsr_rounding_mode_per_context(void **state)
{
    (void)state;
    int policy_saved = coho__ctx_fp_policy;

    for (int policy = COHO__CTX_FP_COMPARE; policy <= COHO__CTX_FP_RELOAD; policy++) {
        fp_saved_t saved;
        fp_save(&saved);
        coho__ctx_fp_policy = policy;
        reset_main();
        fp_rounds = 0;
        fp_co_failures = 0;
        tctx_make(&fp_co, 64 * 1024, mxcsr_entry, NULL);
        assert_true(double_rounds_to_nearest());
        for (int i = 0; i < 10000; i++) {
            tswitch(&main_ctx, &fp_co);
            if (!double_rounds_to_nearest())
                fail_msg("main context lost round-to-nearest after %d switches (policy %d)", i,
                         policy);
        }
        assert_int_equal(fp_rounds, 10000);
        assert_int_equal(fp_co_failures, 0);
        fp_restore(&saved);
        tctx_free(&fp_co);
    }
    coho__ctx_fp_policy = policy_saved;
}

static void x87_entry(void *arg)
{
    (void)arg;
    tstarted(&fp_co);
    set_x87_round_toward_zero();
    for (;;) {
        if (!long_double_rounds_toward_zero())
            fp_co_failures++;
        fp_rounds++;
        tswitch(&fp_co, &main_ctx);
    }
}

/* Under both FP policies (coho__ctx_fp_policy): each must keep the control bits per context. */
static void ctx_switch_keeps_x87_control_word_per_context(void **state)
{
    (void)state;
    int policy_saved = coho__ctx_fp_policy;

    for (int policy = COHO__CTX_FP_COMPARE; policy <= COHO__CTX_FP_RELOAD; policy++) {
        fp_saved_t saved;
        fp_save(&saved);
        coho__ctx_fp_policy = policy;
        reset_main();
        fp_rounds = 0;
        fp_co_failures = 0;
        tctx_make(&fp_co, 64 * 1024, x87_entry, NULL);
        assert_true(long_double_rounds_to_nearest());
        for (int i = 0; i < 10000; i++) {
            tswitch(&main_ctx, &fp_co);
            if (!long_double_rounds_to_nearest())
                fail_msg("main context lost x87 round-to-nearest after %d switches (policy %d)", i,
                         policy);
        }
        assert_int_equal(fp_rounds, 10000);
        assert_int_equal(fp_co_failures, 0);
        fp_restore(&saved);
        tctx_free(&fp_co);
    }
    coho__ctx_fp_policy = policy_saved;
}

static void inherit_entry(void *arg)
{
    (void)arg;
    tstarted(&fp_co);
    fp_co_failures = double_rounds_toward_zero() ? 0 : 1;
    for (;;)
        tswitch(&fp_co, &main_ctx);
}

static void ctx_make_starts_with_the_fp_control_of_its_creator(void **state)
{
    (void)state;
    fp_saved_t saved;
    fp_save(&saved);
    reset_main();
    set_sse_round_toward_zero();
    tctx_make(&fp_co, 64 * 1024, inherit_entry, NULL);
    fp_restore(&saved); /* back to nearest before the first switch-in */
    fp_co_failures = -1;
    tswitch(&main_ctx, &fp_co);
    assert_int_equal(fp_co_failures, 0);
    assert_true(double_rounds_to_nearest());
    tctx_free(&fp_co);
}

/* The policy picked at load time follows the vendor and family in /proc/cpuinfo: RELOAD on AMD
 * and Hygon family 17h (Zen) and later, COMPARE elsewhere (and on every non-x86 CPU). */
static void ctx_fp_policy_default_follows_cpu_vendor_and_family(void **state)
{
    (void)state;
    char line[256], vendor[64] = "";
    int family = -1;
    FILE *f = fopen("/proc/cpuinfo", "r");

    assert_non_null(f);
    while (fgets(line, sizeof(line), f) != NULL && (vendor[0] == 0 || family < 0)) {
        if (vendor[0] == 0)
            (void)sscanf(line, "vendor_id : %63s", vendor);
        if (family < 0)
            (void)sscanf(line, "cpu family : %d", &family);
    }
    fclose(f);
#if defined(__x86_64__)
    bool amd = strcmp(vendor, "AuthenticAMD") == 0 || strcmp(vendor, "HygonGenuine") == 0;
    int want = amd && family >= 0x17 ? COHO__CTX_FP_RELOAD : COHO__CTX_FP_COMPARE;
#else
    int want = COHO__CTX_FP_COMPARE;
#endif
    assert_int_equal(coho__ctx_fp_policy_default(), want);
    /* ctest also runs this binary with COHO_CTX_FP=compare and =reload: the forced policy is the
     * one in force then. */
    const char *forced = getenv("COHO_CTX_FP");
    if (forced != NULL && forced[0] != '\0')
        want = coho__ctx_fp_policy_parse(forced);
    assert_int_equal(coho__ctx_fp_policy, want);
}

/* COHO_CTX_FP forces either policy on any CPU; anything but "compare" or "reload" is reported
 * and the CPU's default stays. */
static void ctx_fp_policy_environment_override(void **state)
{
    (void)state;
    int cpu = coho__ctx_fp_policy_default();

    assert_int_equal(coho__ctx_fp_policy_parse("compare"), COHO__CTX_FP_COMPARE);
    assert_int_equal(coho__ctx_fp_policy_parse("reload"), COHO__CTX_FP_RELOAD);
    assert_int_equal(coho__ctx_fp_policy_parse("Reload"), -1);
    assert_int_equal(coho__ctx_fp_policy_parse("reload "), -1);
    assert_int_equal(coho__ctx_fp_policy_parse(""), -1);
    assert_int_equal(coho__ctx_fp_policy_parse(NULL), -1);

    assert_int_equal(coho__ctx_fp_policy_choose("compare"), COHO__CTX_FP_COMPARE);
    assert_int_equal(coho__ctx_fp_policy_choose("reload"), COHO__CTX_FP_RELOAD);
    assert_int_equal(coho__ctx_fp_policy_choose(NULL), cpu);
    assert_int_equal(coho__ctx_fp_policy_choose(""), cpu);

    /* A bad value names itself on stderr. */
    char path[] = "/tmp/coho_ctx_fp_XXXXXX";
    int tmp = mkstemp(path);
    assert_true(tmp >= 0);
    unlink(path);
    fflush(stderr);
    int saved_err = dup(STDERR_FILENO);
    assert_true(saved_err >= 0);
    assert_int_equal(dup2(tmp, STDERR_FILENO), STDERR_FILENO);
    int got = coho__ctx_fp_policy_choose("fast");
    fflush(stderr);
    assert_int_equal(dup2(saved_err, STDERR_FILENO), STDERR_FILENO);
    close(saved_err);
    assert_int_equal(got, cpu);

    char msg[256] = "";
    ssize_t n = pread(tmp, msg, sizeof(msg) - 1, 0);
    close(tmp);
    assert_true(n > 0);
    msg[n] = '\0';
    assert_non_null(strstr(msg, "COHO_CTX_FP=\"fast\""));
    assert_non_null(strstr(msg, cpu == COHO__CTX_FP_RELOAD ? "(reload)" : "(compare)"));
}

/* ---- callee-saved registers ----------------------------------------------------------------- */

#if defined(__x86_64__)
/* Loads rbx, rbp, r12-r15 from in[0..5], switches, and stores them to out[0..5] after the
 * switch returns: whatever the other side did with those registers must not show. */
void ctx_test_switch_with_regs(coho__ctx_t *from, coho__ctx_t *to, const uint64_t *in,
                               uint64_t *out);
__asm__(".text\n"
        ".globl ctx_test_switch_with_regs\n"
        ".type ctx_test_switch_with_regs, @function\n"
        ".p2align 4\n"
        "ctx_test_switch_with_regs:\n"
        "  pushq %rbp\n"
        "  pushq %rbx\n"
        "  pushq %r12\n"
        "  pushq %r13\n"
        "  pushq %r14\n"
        "  pushq %r15\n"
        "  pushq %rcx\n" /* out; rsp is now 16-byte aligned for the call */
        "  movq 0(%rdx), %rbx\n"
        "  movq 8(%rdx), %rbp\n"
        "  movq 16(%rdx), %r12\n"
        "  movq 24(%rdx), %r13\n"
        "  movq 32(%rdx), %r14\n"
        "  movq 40(%rdx), %r15\n"
        "  call coho__ctx_switch\n"
        "  popq %rcx\n"
        "  movq %rbx, 0(%rcx)\n"
        "  movq %rbp, 8(%rcx)\n"
        "  movq %r12, 16(%rcx)\n"
        "  movq %r13, 24(%rcx)\n"
        "  movq %r14, 32(%rcx)\n"
        "  movq %r15, 40(%rcx)\n"
        "  popq %r15\n"
        "  popq %r14\n"
        "  popq %r13\n"
        "  popq %r12\n"
        "  popq %rbx\n"
        "  popq %rbp\n"
        "  ret\n"
        ".size ctx_test_switch_with_regs, .-ctx_test_switch_with_regs\n");
#    define REG_COUNT 6
#else
static void ctx_test_switch_with_regs(coho__ctx_t *from, coho__ctx_t *to, const uint64_t *in,
                                      uint64_t *out)
{
    coho__ctx_switch(from, to);
    memcpy(out, in, 8 * sizeof(uint64_t));
}
#    define REG_COUNT 8
#endif

static void tswitch_regs(tctx_t *from, tctx_t *to, const uint64_t *in, uint64_t *out)
{
    fiber_switch_begin(from, to);
    ctx_test_switch_with_regs(&from->ctx, &to->ctx, in, out);
    fiber_switch_end(from, NULL);
}

static tctx_t reg_co;
static volatile int reg_co_failures;

static void fill_regs(uint64_t *v, uint64_t tag, uint64_t round)
{
    for (int r = 0; r < REG_COUNT; r++)
        v[r] = tag ^ (round << 16) ^ (uint64_t)(r + 1) * 0x0101010101010101ull;
}

static void regs_entry(void *arg)
{
    (void)arg;
    uint64_t in[REG_COUNT], out[REG_COUNT];

    tstarted(&reg_co);
    for (uint64_t round = 0;; round++) {
        fill_regs(in, 0xbbbb000000000000ull, round);
        tswitch_regs(&reg_co, &main_ctx, in, out);
        if (memcmp(in, out, sizeof(in)) != 0)
            reg_co_failures++;
    }
}

static void ctx_switch_preserves_callee_saved_registers(void **state)
{
    (void)state;
    uint64_t in[REG_COUNT], out[REG_COUNT];

    reset_main();
    reg_co_failures = 0;
    tctx_make(&reg_co, 64 * 1024, regs_entry, NULL);
    tswitch(&main_ctx, &reg_co); /* let it start and park inside the register helper */
    for (uint64_t round = 0; round < 1000; round++) {
        fill_regs(in, 0xaaaa000000000000ull, round);
        tswitch_regs(&main_ctx, &reg_co, in, out);
        assert_memory_equal(in, out, sizeof(in));
    }
    assert_int_equal(reg_co_failures, 0);
    tctx_free(&reg_co);
}

/* Many values live across switches: at -O2 the compiler keeps them in callee-saved registers,
 * which the other side overwrites with its own. */
static tctx_t locals_co;
static volatile uint64_t locals_seed = 12345;

static __attribute__((noinline)) uint64_t many_locals_round(tctx_t *self, tctx_t *other)
{
    uint64_t a = locals_seed, b = a * 3, c = b + 7, d = c ^ 0x55, e = d * 5, f = e + a, g = f ^ b,
             h = g * 11, i = h + c, j = i ^ d;
    double x = (double)a * 0.5, y = (double)b * 0.25, z = (double)c * 0.125;
    uint64_t expect = a + b + c + d + e + f + g + h + i + j + (uint64_t)(x + y + z);

    tswitch(self, other);
    return (a + b + c + d + e + f + g + h + i + j + (uint64_t)(x + y + z)) ^ expect;
}

static volatile uint64_t locals_co_diff;

static void locals_entry(void *arg)
{
    (void)arg;
    tstarted(&locals_co);
    for (;;)
        locals_co_diff |= many_locals_round(&locals_co, &main_ctx);
}

static void ctx_switch_keeps_many_live_locals(void **state)
{
    (void)state;
    reset_main();
    locals_co_diff = 0;
    tctx_make(&locals_co, 64 * 1024, locals_entry, NULL);
    tswitch(&main_ctx, &locals_co);
    for (int k = 0; k < 1000; k++) {
        locals_seed = (uint64_t)k * 0x9e3779b97f4a7c15ull;
        assert_int_equal(many_locals_round(&main_ctx, &locals_co), 0);
    }
    assert_int_equal(locals_co_diff, 0);
    tctx_free(&locals_co);
}

/* ---- deep recursion, frame chain end, volume --------------------------------------------------
 */

static tctx_t deep_co;

static __attribute__((noinline)) uint64_t recurse(int depth)
{
    volatile unsigned char pad[512];

    for (size_t k = 0; k < sizeof(pad); k++)
        pad[k] = (unsigned char)(depth + k);
    if (depth == 0) {
        tswitch(&deep_co, &main_ctx); /* park at the bottom of the recursion */
        return pad[3];
    }
    return recurse(depth - 1) + pad[depth % sizeof(pad)];
}

static volatile uint64_t deep_result;

static void deep_entry(void *arg)
{
    tstarted(&deep_co);
    deep_result = recurse((int)(intptr_t)arg);
    tswitch(&deep_co, &main_ctx);
    /* not on the case's stack: a CMocka failure here would longjmp across stacks */
    fprintf(stderr, "deep_entry: resumed after the end\n");
    abort();
}

static uint64_t recurse_expected(int depth)
{
    uint64_t r = (unsigned char)(0 + 3);
    for (int d = 1; d <= depth; d++)
        r += (unsigned char)(d + d % 512);
    return r;
}

static void ctx_deep_recursion_runs_on_the_new_stack(void **state)
{
    (void)state;
    const int depth = 2000; /* about 1.1 MiB of frames */
    const size_t size = 4u << 20;
    uintptr_t lo, hi;

    reset_main();
    deep_result = 0;
    tctx_make(&deep_co, size, deep_entry, (void *)(intptr_t)depth);
    tswitch(&main_ctx, &deep_co);
    /* parked at the bottom: the recursion's frames lie in the new stack, not in ours */
    lo = (uintptr_t)deep_co.stack_lo;
    hi = lo + size;
    assert_true((uintptr_t)deep_co.ctx.sp > lo && (uintptr_t)deep_co.ctx.sp < hi);
    assert_true(hi - (uintptr_t)deep_co.ctx.sp > (size_t)depth * 512);
    tswitch(&main_ctx, &deep_co);
    assert_int_equal(deep_result, recurse_expected(depth));
    tctx_free(&deep_co);
}

static tctx_t bt_co;
static volatile int bt_fp_steps, bt_frames;
static volatile int bt_fp_outside_stack;

static __attribute__((noinline, optimize("no-omit-frame-pointer"))) void bt_inner(void)
{
    void *frames[64];
    void **fp = (void **)__builtin_frame_address(0);
    uintptr_t lo = (uintptr_t)bt_co.stack_lo, hi = lo + bt_co.size;
    int steps = 0;

    /* frame-pointer walk: bt_inner -> bt_entry -> 0 */
    while (fp != NULL && steps < 64) {
        if ((uintptr_t)fp < lo || (uintptr_t)fp >= hi)
            bt_fp_outside_stack = 1;
        fp = (void **)fp[0];
        steps++;
    }
    bt_fp_steps = fp == NULL ? steps : -1;
    /* DWARF unwind: stops at the trampoline */
    bt_frames = backtrace(frames, 64);
}

static __attribute__((noinline, optimize("no-omit-frame-pointer"))) void bt_entry(void *arg)
{
    (void)arg;
    tstarted(&bt_co);
    bt_inner();
    for (;;)
        tswitch(&bt_co, &main_ctx);
}

static void ctx_new_context_frame_chain_ends_cleanly(void **state)
{
    (void)state;
    reset_main();
    bt_fp_steps = 0;
    bt_frames = 0;
    bt_fp_outside_stack = 0;
    tctx_make(&bt_co, 256 * 1024, bt_entry, NULL);
    tswitch(&main_ctx, &bt_co);
    assert_int_equal(bt_fp_outside_stack, 0);
    assert_int_equal(bt_fp_steps, 2); /* bt_inner's frame, then bt_entry's, whose saved fp is 0 */
    /* bt_inner, bt_entry, the trampoline; sanitizer runtimes may add an interceptor frame */
    assert_in_range(bt_frames, 3, 5);
    tctx_free(&bt_co);
}

static tctx_t many_co;
static volatile uint64_t many_count;

static void many_entry(void *arg)
{
    (void)arg;
    tstarted(&many_co);
    for (;;) {
        many_count++;
        tswitch(&many_co, &main_ctx);
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void ctx_switch_survives_a_million_round_trips(void **state)
{
    (void)state;
    const uint64_t n = 1000000;

    reset_main();
    many_count = 0;
    tctx_make(&many_co, 64 * 1024, many_entry, NULL);
    double t0 = now_s();
    for (uint64_t k = 0; k < n; k++)
        tswitch(&main_ctx, &many_co);
    double dt = now_s() - t0;
    assert_int_equal(many_count, n);
    /* 2e6 switches: ~5 ms in release; the bound leaves room for sanitizers and a busy host. */
    print_message("2e6 switches in %.3f s\n", dt);
    assert_true(dt < 20.0);
    tctx_free(&many_co);
}

/* ---- misuse: an entry function that returns ------------------------------------------------ */

static tctx_t ret_co;

static void returning_entry(void *arg)
{
    (void)arg;
    tstarted(&ret_co);
}

static void ctx_entry_that_returns_aborts_with_a_message(void **state)
{
    (void)state;
    int fds[2], status = 0;
    char buf[4096];
    size_t n = 0;
    ssize_t r;

    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        signal(SIGABRT, SIG_DFL);
        reset_main();
        tctx_make(&ret_co, 64 * 1024, returning_entry, NULL);
        tswitch(&main_ctx, &ret_co);
        _exit(0); /* not reached: the trampoline aborts */
    }
    close(fds[1]);
    while (n < sizeof(buf) - 1 && (r = read(fds[0], buf + n, sizeof(buf) - 1 - n)) > 0)
        n += (size_t)r;
    buf[n] = 0;
    close(fds[0]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
    assert_non_null(strstr(buf, "entry function returned"));
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ctx_switch_ping_pong_passes_values),
        cmocka_unit_test(ctx_switch_keeps_mxcsr_rounding_mode_per_context),
        cmocka_unit_test(ctx_switch_keeps_x87_control_word_per_context),
        cmocka_unit_test(ctx_make_starts_with_the_fp_control_of_its_creator),
        cmocka_unit_test(ctx_fp_policy_default_follows_cpu_vendor_and_family),
        cmocka_unit_test(ctx_fp_policy_environment_override),
        cmocka_unit_test(ctx_switch_preserves_callee_saved_registers),
        cmocka_unit_test(ctx_switch_keeps_many_live_locals),
        cmocka_unit_test(ctx_deep_recursion_runs_on_the_new_stack),
        cmocka_unit_test(ctx_new_context_frame_chain_ends_cleanly),
        cmocka_unit_test(ctx_switch_survives_a_million_round_trips),
        cmocka_unit_test(ctx_entry_that_returns_aborts_with_a_message),
    };

    return coho_test_main("ctx", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
