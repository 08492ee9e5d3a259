/* SPDX-License-Identifier: MIT */
/* The aarch64 context switch, tested on its own: a static binary built with aarch64-linux-gnu-gcc
 * from this file, coroutine/ctx.c and coroutine/ctx_aarch64.S, run under qemu-aarch64 by
 * tools/ci-extra.sh. Checks x19-x28, d8-d15 and live locals across switches, FPCR per context,
 * and the frame-record chain end of a new context. Exit status 0 means every check passed.
 *
 *   aarch64-linux-gnu-gcc -std=gnu11 -O2 -static -I. -o ctx_switch_arch_test \
 *       test/arch/ctx_switch_arch_test.c coroutine/ctx.c coroutine/ctx_aarch64.S
 *   qemu-aarch64 ./ctx_switch_arch_test */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coroutine/ctx.h"

#if !defined(__aarch64__)
#    error "this test is for aarch64; build it with aarch64-linux-gnu-gcc"
#endif

static int failures;

#define CHECK(cond, ...)                                                             \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                            \
            fputc('\n', stderr);                                                     \
            failures++;                                                              \
        }                                                                            \
    } while (0)

/* ctx.c reports misuse through COHO_CHECK; this binary has no logger. */
void coho__check_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fprintf(stderr, "%s:%d: ", file, line);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

static coho__ctx_t main_ctx, co_ctx;
static unsigned char *co_stack;
static const size_t co_stack_size = 256 * 1024;

static void start(coho__ctx_entry_fn fn, void *arg)
{
    memset(&main_ctx, 0, sizeof(main_ctx));
    coho__ctx_make(&co_ctx, co_stack, co_stack_size, fn, arg);
}

/* ---- ping-pong ---- */

static volatile uint64_t mailbox;

static void pingpong_entry(void *arg)
{
    CHECK(arg == &mailbox, "arg %p", arg);
    for (;;) {
        mailbox = mailbox * 3 + 1;
        coho__ctx_switch(&co_ctx, &main_ctx);
    }
}

static void test_ping_pong(void)
{
    start(pingpong_entry, (void *)&mailbox);
    for (uint64_t i = 0; i < 100000; i++) {
        mailbox = i;
        coho__ctx_switch(&main_ctx, &co_ctx);
        if (mailbox != i * 3 + 1) {
            CHECK(mailbox == i * 3 + 1, "round %llu got %llu", (unsigned long long)i,
                  (unsigned long long)mailbox);
            return;
        }
    }
}

/* ---- x19-x28 and d8-d15: loaded with known values, switched, stored back ---- */

#define NREGS 18
void arch_test_switch_with_regs(coho__ctx_t *from, coho__ctx_t *to, const uint64_t *in,
                                uint64_t *out);
__asm__(".text\n"
        ".globl arch_test_switch_with_regs\n"
        ".type arch_test_switch_with_regs, %function\n"
        ".p2align 4\n"
        "arch_test_switch_with_regs:\n"
        "  stp x29, x30, [sp, #-176]!\n"
        "  mov x29, sp\n"
        "  stp x19, x20, [sp, #16]\n"
        "  stp x21, x22, [sp, #32]\n"
        "  stp x23, x24, [sp, #48]\n"
        "  stp x25, x26, [sp, #64]\n"
        "  stp x27, x28, [sp, #80]\n"
        "  stp d8, d9, [sp, #96]\n"
        "  stp d10, d11, [sp, #112]\n"
        "  stp d12, d13, [sp, #128]\n"
        "  stp d14, d15, [sp, #144]\n"
        "  str x3, [sp, #160]\n"
        "  ldp x19, x20, [x2, #0]\n"
        "  ldp x21, x22, [x2, #16]\n"
        "  ldp x23, x24, [x2, #32]\n"
        "  ldp x25, x26, [x2, #48]\n"
        "  ldp x27, x28, [x2, #64]\n"
        "  ldp d8, d9, [x2, #80]\n"
        "  ldp d10, d11, [x2, #96]\n"
        "  ldp d12, d13, [x2, #112]\n"
        "  ldp d14, d15, [x2, #128]\n"
        "  bl coho__ctx_switch\n"
        "  ldr x3, [sp, #160]\n"
        "  stp x19, x20, [x3, #0]\n"
        "  stp x21, x22, [x3, #16]\n"
        "  stp x23, x24, [x3, #32]\n"
        "  stp x25, x26, [x3, #48]\n"
        "  stp x27, x28, [x3, #64]\n"
        "  stp d8, d9, [x3, #80]\n"
        "  stp d10, d11, [x3, #96]\n"
        "  stp d12, d13, [x3, #112]\n"
        "  stp d14, d15, [x3, #128]\n"
        "  ldp x19, x20, [sp, #16]\n"
        "  ldp x21, x22, [sp, #32]\n"
        "  ldp x23, x24, [sp, #48]\n"
        "  ldp x25, x26, [sp, #64]\n"
        "  ldp x27, x28, [sp, #80]\n"
        "  ldp d8, d9, [sp, #96]\n"
        "  ldp d10, d11, [sp, #112]\n"
        "  ldp d12, d13, [sp, #128]\n"
        "  ldp d14, d15, [sp, #144]\n"
        "  ldp x29, x30, [sp], #176\n"
        "  ret\n"
        ".size arch_test_switch_with_regs, .-arch_test_switch_with_regs\n");

static void fill(uint64_t *v, uint64_t tag, uint64_t round)
{
    for (int r = 0; r < NREGS; r++)
        v[r] = tag ^ (round << 20) ^ (uint64_t)(r + 1) * 0x0101010101010101ull;
}

static volatile int co_reg_failures;

static void regs_entry(void *arg)
{
    uint64_t in[NREGS], out[NREGS];

    (void)arg;
    for (uint64_t round = 0;; round++) {
        fill(in, 0xbb00000000000000ull, round);
        arch_test_switch_with_regs(&co_ctx, &main_ctx, in, out);
        if (memcmp(in, out, sizeof(in)) != 0)
            co_reg_failures++;
    }
}

static void test_callee_saved_registers(void)
{
    uint64_t in[NREGS], out[NREGS];

    co_reg_failures = 0;
    start(regs_entry, NULL);
    coho__ctx_switch(&main_ctx, &co_ctx);
    for (uint64_t round = 0; round < 10000; round++) {
        fill(in, 0xaa00000000000000ull, round);
        arch_test_switch_with_regs(&main_ctx, &co_ctx, in, out);
        for (int r = 0; r < NREGS; r++) {
            if (in[r] != out[r]) {
                CHECK(in[r] == out[r], "round %llu register %d: %llx != %llx",
                      (unsigned long long)round, r, (unsigned long long)out[r],
                      (unsigned long long)in[r]);
                return;
            }
        }
    }
    CHECK(co_reg_failures == 0, "%d rounds lost registers inside the context", co_reg_failures);
}

/* ---- many live locals at -O2 (kept in callee-saved registers across the call) ---- */

static volatile uint64_t seed = 7;
static volatile uint64_t co_locals_diff;

static __attribute__((noinline)) uint64_t locals_round(coho__ctx_t *self, coho__ctx_t *other)
{
    uint64_t a = seed, b = a * 3, c = b + 7, d = c ^ 0x55, e = d * 5, f = e + a, g = f ^ b,
             h = g * 11, i = h + c, j = i ^ d, k = j * 13, l = k + e;
    double x = (double)a * 0.5, y = (double)b * 0.25, z = (double)c * 0.125, w = x * y + z;
    uint64_t expect = a + b + c + d + e + f + g + h + i + j + k + l + (uint64_t)(x + y + z + w);

    coho__ctx_switch(self, other);
    return (a + b + c + d + e + f + g + h + i + j + k + l + (uint64_t)(x + y + z + w)) ^ expect;
}

static void locals_entry(void *arg)
{
    (void)arg;
    for (;;)
        co_locals_diff |= locals_round(&co_ctx, &main_ctx);
}

static void test_live_locals(void)
{
    co_locals_diff = 0;
    start(locals_entry, NULL);
    coho__ctx_switch(&main_ctx, &co_ctx);
    for (uint64_t r = 0; r < 10000; r++) {
        seed = r * 0x9e3779b97f4a7c15ull;
        uint64_t diff = locals_round(&main_ctx, &co_ctx);
        if (diff != 0) {
            CHECK(diff == 0, "round %llu", (unsigned long long)r);
            return;
        }
    }
    CHECK(co_locals_diff == 0, "locals changed inside the context");
}

/* ---- FPCR per context ---- */

#define FPCR_RMODE_MASK (3ull << 22)
#define FPCR_RMODE_RZ   (3ull << 22)

static uint64_t fpcr_get(void)
{
    uint64_t v;
    __asm__ volatile("mrs %0, fpcr" : "=r"(v));
    return v;
}

static void fpcr_set(uint64_t v)
{
    __asm__ volatile("msr fpcr, %0" : : "r"(v));
}

/* 1 + 0.75 ulp: nearest gives 1 + 1 ulp, toward zero gives 1. */
static volatile double one = 1.0, frac = 0x1.8p-53;

static int rounds_toward_zero(void)
{
    volatile double s = one + frac;
    return s == 1.0;
}

static volatile int co_fp_failures, co_fp_rounds;

static void fpcr_entry(void *arg)
{
    (void)arg;
    fpcr_set((fpcr_get() & ~FPCR_RMODE_MASK) | FPCR_RMODE_RZ);
    for (;;) {
        if (!rounds_toward_zero() || (fpcr_get() & FPCR_RMODE_MASK) != FPCR_RMODE_RZ)
            co_fp_failures++;
        co_fp_rounds++;
        coho__ctx_switch(&co_ctx, &main_ctx);
    }
}

static void test_fpcr_per_context(void)
{
    uint64_t saved = fpcr_get();

    co_fp_failures = 0;
    co_fp_rounds = 0;
    start(fpcr_entry, NULL);
    for (int r = 0; r < 10000; r++) {
        coho__ctx_switch(&main_ctx, &co_ctx);
        if (rounds_toward_zero() || (fpcr_get() & FPCR_RMODE_MASK) != 0) {
            CHECK(0, "main context lost round-to-nearest after %d switches", r);
            break;
        }
    }
    CHECK(co_fp_rounds == 10000, "%d rounds", co_fp_rounds);
    CHECK(co_fp_failures == 0, "the context lost round-toward-zero %d times", co_fp_failures);
    fpcr_set(saved);
}

static volatile int inherit_ok;

static void inherit_entry(void *arg)
{
    (void)arg;
    inherit_ok = rounds_toward_zero();
    for (;;)
        coho__ctx_switch(&co_ctx, &main_ctx);
}

static void test_new_context_inherits_fpcr(void)
{
    uint64_t saved = fpcr_get();

    fpcr_set((saved & ~FPCR_RMODE_MASK) | FPCR_RMODE_RZ);
    start(inherit_entry, NULL);
    fpcr_set(saved);
    inherit_ok = -1;
    coho__ctx_switch(&main_ctx, &co_ctx);
    CHECK(inherit_ok == 1, "new context did not start with its creator's FPCR (%d)", inherit_ok);
    CHECK(!rounds_toward_zero(), "main context lost round-to-nearest");
}

/* ---- the frame-record chain of a new context ends in a zero frame ---- */

static volatile int chain_steps, chain_outside;

static __attribute__((noinline, optimize("no-omit-frame-pointer"))) void chain_inner(void)
{
    void **fp = (void **)__builtin_frame_address(0);
    uintptr_t lo = (uintptr_t)co_stack, hi = lo + co_stack_size;
    int steps = 0;

    while (fp != NULL && steps < 64) {
        if ((uintptr_t)fp < lo || (uintptr_t)fp >= hi)
            chain_outside = 1;
        fp = (void **)fp[0];
        steps++;
    }
    chain_steps = fp == NULL ? steps : -1;
}

static __attribute__((noinline, optimize("no-omit-frame-pointer"))) void chain_entry(void *arg)
{
    (void)arg;
    chain_inner();
    for (;;)
        coho__ctx_switch(&co_ctx, &main_ctx);
}

static void test_frame_chain_ends(void)
{
    chain_steps = 0;
    chain_outside = 0;
    start(chain_entry, NULL);
    coho__ctx_switch(&main_ctx, &co_ctx);
    CHECK(chain_outside == 0, "a frame record lies outside the context's stack");
    CHECK(chain_steps == 2, "frame chain: %d steps (want chain_inner, chain_entry, then 0)",
          chain_steps);
}

int main(void)
{
    co_stack = aligned_alloc(16, co_stack_size);
    if (co_stack == NULL)
        return 2;

    test_ping_pong();
    test_callee_saved_registers();
    test_live_locals();
    test_fpcr_per_context();
    test_new_context_inherits_fpcr();
    test_frame_chain_ends();

    free(co_stack);
    if (failures != 0) {
        fprintf(stderr, "ctx_switch_arch_test: %d check(s) failed\n", failures);
        return 1;
    }
    printf("ctx_switch_arch_test: all checks passed\n");
    return 0;
}
