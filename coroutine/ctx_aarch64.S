/* SPDX-License-Identifier: MIT */
/* The aarch64 context switch: coho__ctx_switch, the first-frame trampoline of a new context,
 * and the FP-control snapshot coho__ctx_make puts into a new frame.
 *
 * ABI: Procedure Call Standard for the Arm 64-bit Architecture (AAPCS64), section 6.1.1
 * ("General-purpose registers": x19-x28 callee-saved, x29 frame pointer, x30 link register,
 * sp) and 6.1.2 ("SIMD and Floating-Point registers": the low 64 bits of v8-v15, i.e. d8-d15,
 * callee-saved). FPCR holds only control bits (rounding, flush-to-zero, default NaN, trap
 * enables) and is treated as callee-saved; FPSR holds the sticky flags and stays per thread.
 *
 * Saved frame (offsets in ctx_offsets.h, checked against C by _Static_assert), from the saved
 * sp upwards:
 *
 *   +0x00  x19, x20       new context: entry, arg
 *   +0x10  x21, x22
 *   +0x20  x23, x24
 *   +0x30  x25, x26
 *   +0x40  x27, x28
 *   +0x50  x29, x30       new context: 0, coho__ctx_trampoline
 *   +0x60  d8,  d9
 *   +0x70  d10, d11
 *   +0x80  d12, d13
 *   +0x90  d14, d15
 *   +0xa0  fpcr, pad
 *
 * Pitfalls:
 * - Resume with ret to x30. ret is a return, not an indirect branch, so BTI never checks its
 *   target: it works whether or not the program is built with branch protection, and return
 *   sites (which carry no BTI landing pad) stay legal targets. `br x30` would be predicted as
 *   an indirect branch instead of mispredicting in the return stack, but under BTI it faults
 *   on every return site that lacks a `bti j` pad, i.e. all of them. Return-address signing
 *   (pac-ret) is unaffected: callers sign and authenticate their own x30 against their own sp,
 *   which the switch hands back unchanged.
 * - FPCR writes are context-synchronising on some cores: they happen only when the incoming
 *   FPCR differs from the current one.
 * - Signals: a handler runs on the coroutine's stack unless it was installed with SA_ONSTACK
 *   and a sigaltstack exists; a stack overflow can only be reported from an alternate stack.
 *   The switch makes no syscall, so the signal mask is per thread. aarch64 Linux has no red
 *   zone: nothing below sp is ever live.
 * - The upper 64 bits of v8-v15 are not callee-saved (AAPCS64) and are not kept.
 */
#include "coroutine/ctx_offsets.h"

/* BTI landing pad for functions reached by an indirect call, when branch protection is on. */
#if defined(__ARM_FEATURE_BTI_DEFAULT) && __ARM_FEATURE_BTI_DEFAULT
# define COHO_BTI_C hint 34
#else
# define COHO_BTI_C
#endif

    .text

/* void coho__ctx_switch(coho__ctx_t *from = x0, coho__ctx_t *to = x1) */
    .globl  coho__ctx_switch
    .hidden coho__ctx_switch
    .type   coho__ctx_switch, %function
    .p2align 4
coho__ctx_switch:
    .cfi_startproc
    COHO_BTI_C
    sub     sp, sp, #COHO_CTX_FRAME_SIZE
    .cfi_adjust_cfa_offset COHO_CTX_FRAME_SIZE
    stp     x19, x20, [sp, #COHO_CTX_OFF_X19]
    stp     x21, x22, [sp, #COHO_CTX_OFF_X21]
    stp     x23, x24, [sp, #COHO_CTX_OFF_X23]
    stp     x25, x26, [sp, #COHO_CTX_OFF_X25]
    stp     x27, x28, [sp, #COHO_CTX_OFF_X27]
    stp     x29, x30, [sp, #COHO_CTX_OFF_X29]
    .cfi_rel_offset x29, COHO_CTX_OFF_X29
    .cfi_rel_offset x30, COHO_CTX_OFF_X30
    stp     d8, d9, [sp, #COHO_CTX_OFF_D8]
    stp     d10, d11, [sp, #COHO_CTX_OFF_D10]
    stp     d12, d13, [sp, #COHO_CTX_OFF_D12]
    stp     d14, d15, [sp, #COHO_CTX_OFF_D14]
    mrs     x9, fpcr
    str     x9, [sp, #COHO_CTX_OFF_FPCR]

    mov     x10, sp
    str     x10, [x0]
    ldr     x10, [x1]
    mov     sp, x10
    /* Now on the incoming stack; its frame has the same layout, so the CFI still holds. */

    ldr     x11, [sp, #COHO_CTX_OFF_FPCR]
    cmp     x9, x11
    b.ne    .Lreload_fpcr
.Lrestore:
    ldp     x19, x20, [sp, #COHO_CTX_OFF_X19]
    ldp     x21, x22, [sp, #COHO_CTX_OFF_X21]
    ldp     x23, x24, [sp, #COHO_CTX_OFF_X23]
    ldp     x25, x26, [sp, #COHO_CTX_OFF_X25]
    ldp     x27, x28, [sp, #COHO_CTX_OFF_X27]
    ldp     d8, d9, [sp, #COHO_CTX_OFF_D8]
    ldp     d10, d11, [sp, #COHO_CTX_OFF_D10]
    ldp     d12, d13, [sp, #COHO_CTX_OFF_D12]
    ldp     d14, d15, [sp, #COHO_CTX_OFF_D14]
    ldp     x29, x30, [sp, #COHO_CTX_OFF_X29]
    add     sp, sp, #COHO_CTX_FRAME_SIZE
    ret

.Lreload_fpcr:
    /* Out of line: the incoming context runs with another FPCR. */
    msr     fpcr, x11
    b       .Lrestore
    .cfi_endproc
    .size   coho__ctx_switch, .-coho__ctx_switch

/* The first code of a new context, reached by the ret of coho__ctx_switch with entry in x19,
 * arg in x20, x29 = 0 and sp 16-byte aligned. The return address column is undefined, so DWARF
 * unwinders stop here, and x29 = 0 ends frame-record walks. Reached by ret, so it needs no BTI
 * landing pad. */
    .globl  coho__ctx_trampoline
    .hidden coho__ctx_trampoline
    .type   coho__ctx_trampoline, %function
    .p2align 4
coho__ctx_trampoline:
    .cfi_startproc
    .cfi_undefined x30
    mov     x0, x20
    blr     x19
    /* entry returned: a programming error (it must switch away for the last time). */
    bl      coho__ctx_entry_returned
    brk     #0
    .cfi_endproc
    .size   coho__ctx_trampoline, .-coho__ctx_trampoline

/* uint64_t coho__ctx_fpctl_current(void): FPCR, the frame's FPCTL format. */
    .globl  coho__ctx_fpctl_current
    .hidden coho__ctx_fpctl_current
    .type   coho__ctx_fpctl_current, %function
    .p2align 4
coho__ctx_fpctl_current:
    .cfi_startproc
    COHO_BTI_C
    mrs     x0, fpcr
    ret
    .cfi_endproc
    .size   coho__ctx_fpctl_current, .-coho__ctx_fpctl_current

/* int coho__ctx_fp_policy_default(void): COHO__CTX_FP_COMPARE; this switch compares FPCR
 * whatever coho__ctx_fp_policy says. */
    .globl  coho__ctx_fp_policy_default
    .hidden coho__ctx_fp_policy_default
    .type   coho__ctx_fp_policy_default, %function
    .p2align 4
coho__ctx_fp_policy_default:
    .cfi_startproc
    COHO_BTI_C
    mov     w0, #0
    ret
    .cfi_endproc
    .size   coho__ctx_fp_policy_default, .-coho__ctx_fp_policy_default

    .section .note.GNU-stack, "", %progbits
