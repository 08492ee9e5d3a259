/* SPDX-License-Identifier: MIT */
/* The x86_64 context switch: coho__ctx_switch, the first-frame trampoline of a new context,
 * and the FP-control snapshot coho__ctx_make puts into a new frame.
 *
 * ABI: System V AMD64 psABI 1.0, section 3.2 ("Function Calling Sequence"): rbx, rbp, r12-r15
 * and rsp are callee-saved; the control bits of MXCSR and the x87 control word are callee-saved
 * too (3.2.1 "Registers"), while the MXCSR status flags and the x87 status word are not.
 * Everything else is caller-saved, so coho__ctx_switch, being called like any C function, only
 * has to keep the callee-saved set.
 *
 * Saved frame (offsets in ctx_offsets.h, checked against C by _Static_assert), from the saved
 * rsp upwards:
 *
 *   +0x00  MXCSR (u32) | x87 CW (u16) | pad (u16)
 *   +0x08  r15
 *   +0x10  r14
 *   +0x18  r13      new context: arg
 *   +0x20  r12      new context: entry
 *   +0x28  rbx
 *   +0x30  rbp      new context: 0 (the frame-pointer chain ends here)
 *   +0x38  rip      where the switch resumes (new context: coho__ctx_trampoline)
 *
 * Pitfalls:
 * - Resume with an indirect jmp, never ret. A ret to a return address that belongs to another
 *   stack mispredicts in the return-stack buffer every time (8.6-10.8 ns per switch measured
 *   against 1.8 ns with jmp on the reference machine). The jmp target is a return site, so with
 *   CET indirect-branch tracking enforced it would need an endbr64 there; Debian 12 (glibc
 *   2.36) enforces neither IBT nor shadow stacks.
 * - CET shadow stack: with SHSTK enabled every context needs its own shadow stack and the
 *   switch must swap them (saveprevssp/rstorssp), and the pop+jmp resume would leave the
 *   shadow stack unbalanced. This file does not mark itself SHSTK-compatible, so a linker that
 *   sees it turns SHSTK off for the whole program.
 * - MXCSR and x87 control word: saved on every switch-out; the incoming control bits (MXCSR bits
 *   6-15, the whole x87 CW) are always in force after the switch. Which is cheapest depends on
 *   the core, so the policy is chosen once per process (coho__ctx_fp_policy, ctx.h; README.md
 *   "Context switch" has both measurements):
 *   COMPARE (Intel and others): reload only when the control bits differ. On Intel cores
 *     ldmxcsr of a new value serialises (33-55 ns a switch when the sides differ on every
 *     switch, e.g. only in sticky flags, as fcontext's unconditional reload does).
 *   RELOAD (AMD family 17h and later): ldmxcsr on every switch, the x87 CW compared. Reading
 *     back what stmxcsr just stored is what costs on these cores (~1.4 ns a switch), while an
 *     unconditional ldmxcsr is cheap even when the value changes.
 *   The MXCSR sticky exception flags (bits 0-5) are not kept per context under either policy:
 *   a reload loads the incoming context's saved flags, no reload leaves them as they are.
 * - Red zone: a leaf function may use 128 bytes below rsp without moving rsp. The switch pushes
 *   its frame below the caller's rsp, which is allowed because the caller made a call (callers
 *   never keep live data in their red zone across a call). The slow MXCSR path uses the red
 *   zone of the incoming stack, below its saved frame, where nothing lives.
 * - Signals: a signal arriving on a coroutine runs its handler on that coroutine's stack unless
 *   the handler was installed with SA_ONSTACK and a sigaltstack exists. A stack overflow can
 *   only be reported from an alternate stack, since the faulting stack has no room left. The
 *   switch touches no signal mask (no syscalls at all), so the mask is per thread, not per
 *   coroutine.
 * - The direction flag is clear at every call boundary (ABI), so it needs no saving.
 */
#include "coroutine/ctx_offsets.h"

    .hidden coho__ctx_fp_policy         /* int, ctx.c: COHO__CTX_FP_COMPARE (0) or _RELOAD (1) */

    .text

/* void coho__ctx_switch(coho__ctx_t *from = rdi, coho__ctx_t *to = rsi) */
    .globl  coho__ctx_switch
    .hidden coho__ctx_switch
    .type   coho__ctx_switch, @function
    .p2align 4
coho__ctx_switch:
    .cfi_startproc
    endbr64
    leaq    -(COHO_CTX_FRAME_SIZE - 8)(%rsp), %rsp
    .cfi_adjust_cfa_offset COHO_CTX_FRAME_SIZE - 8
    stmxcsr COHO_CTX_OFF_MXCSR(%rsp)
    fnstcw  COHO_CTX_OFF_X87CW(%rsp)
    movq    %r15, COHO_CTX_OFF_R15(%rsp)
    .cfi_rel_offset %r15, COHO_CTX_OFF_R15
    movq    %r14, COHO_CTX_OFF_R14(%rsp)
    .cfi_rel_offset %r14, COHO_CTX_OFF_R14
    movq    %r13, COHO_CTX_OFF_R13(%rsp)
    .cfi_rel_offset %r13, COHO_CTX_OFF_R13
    movq    %r12, COHO_CTX_OFF_R12(%rsp)
    .cfi_rel_offset %r12, COHO_CTX_OFF_R12
    movq    %rbx, COHO_CTX_OFF_RBX(%rsp)
    .cfi_rel_offset %rbx, COHO_CTX_OFF_RBX
    movq    %rbp, COHO_CTX_OFF_RBP(%rsp)
    .cfi_rel_offset %rbp, COHO_CTX_OFF_RBP

    movq    %rsp, %rax
    movq    %rsp, (%rdi)
    movq    (%rsi), %rsp
    /* Now on the incoming stack. Its frame has the same layout, so the CFI above still
     * describes it: an unwinder stopped here sees the incoming context's caller. The resume
     * address is loaded first so the indirect jump's target is known early. */
    movq    COHO_CTX_OFF_RIP(%rsp), %rcx
    cmpl    $0, coho__ctx_fp_policy(%rip)
    je      .Lcompare
    /* RELOAD: MXCSR as saved, at once (nothing waits for the stmxcsr above); the x87 CW read
     * back is cheap, so fldcw stays conditional. */
    ldmxcsr COHO_CTX_OFF_MXCSR(%rsp)
    movq    COHO_CTX_OFF_R15(%rsp), %r15
    movq    COHO_CTX_OFF_R14(%rsp), %r14
    movq    COHO_CTX_OFF_R13(%rsp), %r13
    movq    COHO_CTX_OFF_R12(%rsp), %r12
    movq    COHO_CTX_OFF_RBX(%rsp), %rbx
    movq    COHO_CTX_OFF_RBP(%rsp), %rbp
    movzwl  COHO_CTX_OFF_X87CW(%rax), %edx
    cmpw    COHO_CTX_OFF_X87CW(%rsp), %dx
    jne     .Lreload_x87
.Lresume:
    .cfi_remember_state
    leaq    COHO_CTX_FRAME_SIZE(%rsp), %rsp
    .cfi_def_cfa_offset 0
    .cfi_register %rip, %rcx
    jmp     *%rcx

.Lcompare:
    .cfi_restore_state
    movq    COHO_CTX_OFF_R15(%rsp), %r15
    movq    COHO_CTX_OFF_R14(%rsp), %r14
    movq    COHO_CTX_OFF_R13(%rsp), %r13
    movq    COHO_CTX_OFF_R12(%rsp), %r12
    movq    COHO_CTX_OFF_RBX(%rsp), %rbx
    movq    COHO_CTX_OFF_RBP(%rsp), %rbp
    /* COMPARE: the control bits of the outgoing frame (just stored by stmxcsr/fnstcw) against
     * the incoming ones. Reading back what stmxcsr stored waits for that store, so it comes
     * last, after the restores it would otherwise delay. Same-size loads, so forwarding
     * applies. */
    movl    COHO_CTX_OFF_MXCSR(%rax), %edx
    xorl    COHO_CTX_OFF_MXCSR(%rsp), %edx
    andl    $COHO_CTX_MXCSR_CONTROL_MASK, %edx
    movzwl  COHO_CTX_OFF_X87CW(%rax), %eax
    xorw    COHO_CTX_OFF_X87CW(%rsp), %ax
    orl     %eax, %edx
    jz      .Lresume
    /* Out of line: the incoming control bits differ. Load the incoming MXCSR and x87 control
     * word as saved; the sticky flags come along with the MXCSR, which is within "not kept per
     * context" and costs less than merging them (a store-forwarded ldmxcsr). rcx holds the
     * resume address. */
    ldmxcsr COHO_CTX_OFF_MXCSR(%rsp)
.Lreload_x87:
    fldcw   COHO_CTX_OFF_X87CW(%rsp)
    jmp     .Lresume
    .cfi_endproc
    .size   coho__ctx_switch, .-coho__ctx_switch

/* The first code of a new context, reached by the jmp of coho__ctx_switch with entry in r12,
 * arg in r13, rbp = 0 and rsp 16-byte aligned. The return address column is undefined, so
 * DWARF unwinders (gdb, backtrace(), C++ exceptions) stop here, and rbp = 0 ends frame-pointer
 * walks. */
    .globl  coho__ctx_trampoline
    .hidden coho__ctx_trampoline
    .type   coho__ctx_trampoline, @function
    .p2align 4
coho__ctx_trampoline:
    .cfi_startproc
    .cfi_undefined %rip
    endbr64
    movq    %r13, %rdi
    callq   *%r12
    /* entry returned: a programming error (it must switch away for the last time). */
    callq   coho__ctx_entry_returned
    ud2
    .cfi_endproc
    .size   coho__ctx_trampoline, .-coho__ctx_trampoline

/* uint64_t coho__ctx_fpctl_current(void): MXCSR | x87 CW << 32, the frame's FPCTL format. */
    .globl  coho__ctx_fpctl_current
    .hidden coho__ctx_fpctl_current
    .type   coho__ctx_fpctl_current, @function
    .p2align 4
coho__ctx_fpctl_current:
    .cfi_startproc
    endbr64
    stmxcsr -8(%rsp)
    fnstcw  -4(%rsp)
    movl    -8(%rsp), %eax
    movzwl  -4(%rsp), %edx
    shlq    $32, %rdx
    orq     %rdx, %rax
    ret
    .cfi_endproc
    .size   coho__ctx_fpctl_current, .-coho__ctx_fpctl_current

/* int coho__ctx_fp_policy_default(void): COHO__CTX_FP_RELOAD on AMD and Hygon cores of family
 * 17h (Zen) and later, where it was measured to be the cheaper policy; COHO__CTX_FP_COMPARE on
 * everything else (the policy DESIGN.md's rule was measured with, on Intel). cpuid leaf 0 gives
 * the vendor, leaf 1 the family (base + extended when the base is 0xf). */
    .globl  coho__ctx_fp_policy_default
    .hidden coho__ctx_fp_policy_default
    .type   coho__ctx_fp_policy_default, @function
    .p2align 4
coho__ctx_fp_policy_default:
    .cfi_startproc
    endbr64
    pushq   %rbx
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %rbx, 0
    xorl    %eax, %eax
    cpuid
    cmpl    $0x68747541, %ebx           /* "Auth" enti cAMD */
    jne     1f
    cmpl    $0x69746e65, %edx
    jne     .Lpolicy_compare
    cmpl    $0x444d4163, %ecx
    jne     .Lpolicy_compare
    jmp     2f
1:  cmpl    $0x6f677948, %ebx           /* "Hygo" nGen uine */
    jne     .Lpolicy_compare
    cmpl    $0x6e65476e, %edx
    jne     .Lpolicy_compare
    cmpl    $0x656e6975, %ecx
    jne     .Lpolicy_compare
2:  cmpl    $1, %eax                    /* leaf 1 must exist */
    jb      .Lpolicy_compare
    movl    $1, %eax
    cpuid
    movl    %eax, %edx
    shrl    $8, %edx
    andl    $0xf, %edx                  /* base family */
    cmpl    $0xf, %edx
    jne     3f
    shrl    $20, %eax
    andl    $0xff, %eax
    addl    %eax, %edx                  /* + extended family */
3:  xorl    %eax, %eax
    cmpl    $0x17, %edx
    setae   %al                         /* COHO__CTX_FP_RELOAD = 1 */
    popq    %rbx
    .cfi_adjust_cfa_offset -8
    .cfi_restore %rbx
    ret
.Lpolicy_compare:
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %rbx, 0
    xorl    %eax, %eax                  /* COHO__CTX_FP_COMPARE = 0 */
    popq    %rbx
    .cfi_adjust_cfa_offset -8
    .cfi_restore %rbx
    ret
    .cfi_endproc
    .size   coho__ctx_fp_policy_default, .-coho__ctx_fp_policy_default

    .section .note.GNU-stack, "", %progbits
