/* SPDX-License-Identifier: MIT */
/* The saved-context frame of coho__ctx_switch, defined once for the assembly (ctx_x86_64.S,
 * ctx_aarch64.S) and for C (ctx.c). A suspended context's saved stack pointer points at this
 * frame; C checks every offset against offsetof with _Static_assert. This header is one of the
 * two places where architecture conditionals are allowed (STYLE.md "Platform-specific code"). */
#ifndef COHO_COROUTINE_CTX_OFFSETS_H
#define COHO_COROUTINE_CTX_OFFSETS_H

/* Generic names used by coho__ctx_make (ctx.c):
 *   COHO_CTX_FRAME_SIZE  bytes of the frame (a multiple of 16)
 *   COHO_CTX_OFF_FPCTL   the saved FP control word(s), 8 bytes
 *   COHO_CTX_OFF_ENTRY   callee-saved slot carrying the entry function into the trampoline
 *   COHO_CTX_OFF_ARG     callee-saved slot carrying its argument
 *   COHO_CTX_OFF_FP      the saved frame pointer (0 in a new context: the chain ends there)
 *   COHO_CTX_OFF_PC      where the switch resumes (the trampoline in a new context)
 *   COHO_CTX_TOP_PAD     zeroed bytes kept above the first frame of a new stack */

#if defined(__x86_64__)
/*
 * x86_64 frame, from the saved rsp upwards:
 *
 *   +0x00  MXCSR (u32)        stmxcsr
 *   +0x04  x87 control word   fnstcw (u16), then 2 bytes of padding
 *   +0x08  r15
 *   +0x10  r14
 *   +0x18  r13                new context: arg
 *   +0x20  r12                new context: entry
 *   +0x28  rbx
 *   +0x30  rbp                new context: 0
 *   +0x38  return address     new context: coho__ctx_trampoline
 *   +0x40  (caller's frame)
 */
#    define COHO_CTX_OFF_MXCSR  0x00
#    define COHO_CTX_OFF_X87CW  0x04
#    define COHO_CTX_OFF_R15    0x08
#    define COHO_CTX_OFF_R14    0x10
#    define COHO_CTX_OFF_R13    0x18
#    define COHO_CTX_OFF_R12    0x20
#    define COHO_CTX_OFF_RBX    0x28
#    define COHO_CTX_OFF_RBP    0x30
#    define COHO_CTX_OFF_RIP    0x38
#    define COHO_CTX_FRAME_SIZE 0x40

#    define COHO_CTX_OFF_FPCTL COHO_CTX_OFF_MXCSR
#    define COHO_CTX_OFF_ENTRY COHO_CTX_OFF_R12
#    define COHO_CTX_OFF_ARG   COHO_CTX_OFF_R13
#    define COHO_CTX_OFF_FP    COHO_CTX_OFF_RBP
#    define COHO_CTX_OFF_PC    COHO_CTX_OFF_RIP
#    define COHO_CTX_TOP_PAD   16

/* MXCSR bits kept per context: DAZ, the exception masks, rounding control, FTZ (bits 6-15).
 * Bits 0-5 are the sticky exception flags, which stay per thread. */
#    define COHO_CTX_MXCSR_CONTROL_MASK 0xffc0

#elif defined(__aarch64__)
/*
 * aarch64 frame, from the saved sp upwards:
 *
 *   +0x00  x19, x20            new context: entry, arg
 *   +0x10  x21, x22
 *   +0x20  x23, x24
 *   +0x30  x25, x26
 *   +0x40  x27, x28
 *   +0x50  x29 (fp), x30 (lr)  new context: 0, coho__ctx_trampoline
 *   +0x60  d8,  d9
 *   +0x70  d10, d11
 *   +0x80  d12, d13
 *   +0x90  d14, d15
 *   +0xa0  fpcr                then 8 bytes of padding (sp stays 16-byte aligned)
 *   +0xb0  (caller's frame)
 */
#    define COHO_CTX_OFF_X19    0x00
#    define COHO_CTX_OFF_X21    0x10
#    define COHO_CTX_OFF_X23    0x20
#    define COHO_CTX_OFF_X25    0x30
#    define COHO_CTX_OFF_X27    0x40
#    define COHO_CTX_OFF_X29    0x50
#    define COHO_CTX_OFF_X30    0x58
#    define COHO_CTX_OFF_D8     0x60
#    define COHO_CTX_OFF_D10    0x70
#    define COHO_CTX_OFF_D12    0x80
#    define COHO_CTX_OFF_D14    0x90
#    define COHO_CTX_OFF_FPCR   0xa0
#    define COHO_CTX_FRAME_SIZE 0xb0

#    define COHO_CTX_OFF_FPCTL COHO_CTX_OFF_FPCR
#    define COHO_CTX_OFF_ENTRY COHO_CTX_OFF_X19
#    define COHO_CTX_OFF_ARG   (COHO_CTX_OFF_X19 + 8)
#    define COHO_CTX_OFF_FP    COHO_CTX_OFF_X29
#    define COHO_CTX_OFF_PC    COHO_CTX_OFF_X30
#    define COHO_CTX_TOP_PAD   16

#else
#    error "coho: the context switch exists for x86_64 and aarch64 only"
#endif

#ifndef __ASSEMBLER__
#    include <stddef.h>
#    include <stdint.h>

#    if defined(__x86_64__)
typedef struct coho__ctx_frame {
    uint32_t mxcsr;
    uint16_t x87_cw;
    uint16_t pad;
    uint64_t r15, r14, r13, r12, rbx, rbp;
    uint64_t rip;
} coho__ctx_frame_t;

_Static_assert(offsetof(coho__ctx_frame_t, mxcsr) == COHO_CTX_OFF_MXCSR, "mxcsr");
_Static_assert(offsetof(coho__ctx_frame_t, x87_cw) == COHO_CTX_OFF_X87CW, "x87 cw");
_Static_assert(offsetof(coho__ctx_frame_t, r15) == COHO_CTX_OFF_R15, "r15");
_Static_assert(offsetof(coho__ctx_frame_t, r14) == COHO_CTX_OFF_R14, "r14");
_Static_assert(offsetof(coho__ctx_frame_t, r13) == COHO_CTX_OFF_R13, "r13");
_Static_assert(offsetof(coho__ctx_frame_t, r12) == COHO_CTX_OFF_R12, "r12");
_Static_assert(offsetof(coho__ctx_frame_t, rbx) == COHO_CTX_OFF_RBX, "rbx");
_Static_assert(offsetof(coho__ctx_frame_t, rbp) == COHO_CTX_OFF_RBP, "rbp");
_Static_assert(offsetof(coho__ctx_frame_t, rip) == COHO_CTX_OFF_RIP, "rip");
#    elif defined(__aarch64__)
typedef struct coho__ctx_frame {
    uint64_t x19_x28[10];
    uint64_t x29, x30;
    uint64_t d8_d15[8];
    uint64_t fpcr;
    uint64_t pad;
} coho__ctx_frame_t;

_Static_assert(offsetof(coho__ctx_frame_t, x19_x28[0]) == COHO_CTX_OFF_X19, "x19");
_Static_assert(offsetof(coho__ctx_frame_t, x19_x28[2]) == COHO_CTX_OFF_X21, "x21");
_Static_assert(offsetof(coho__ctx_frame_t, x19_x28[4]) == COHO_CTX_OFF_X23, "x23");
_Static_assert(offsetof(coho__ctx_frame_t, x19_x28[6]) == COHO_CTX_OFF_X25, "x25");
_Static_assert(offsetof(coho__ctx_frame_t, x19_x28[8]) == COHO_CTX_OFF_X27, "x27");
_Static_assert(offsetof(coho__ctx_frame_t, x29) == COHO_CTX_OFF_X29, "x29");
_Static_assert(offsetof(coho__ctx_frame_t, x30) == COHO_CTX_OFF_X30, "x30");
_Static_assert(offsetof(coho__ctx_frame_t, d8_d15[0]) == COHO_CTX_OFF_D8, "d8");
_Static_assert(offsetof(coho__ctx_frame_t, d8_d15[2]) == COHO_CTX_OFF_D10, "d10");
_Static_assert(offsetof(coho__ctx_frame_t, d8_d15[4]) == COHO_CTX_OFF_D12, "d12");
_Static_assert(offsetof(coho__ctx_frame_t, d8_d15[6]) == COHO_CTX_OFF_D14, "d14");
_Static_assert(offsetof(coho__ctx_frame_t, fpcr) == COHO_CTX_OFF_FPCR, "fpcr");
#    endif

_Static_assert(sizeof(coho__ctx_frame_t) == COHO_CTX_FRAME_SIZE, "frame size");
_Static_assert(COHO_CTX_FRAME_SIZE % 16 == 0, "the frame keeps the stack 16-byte aligned");
_Static_assert(COHO_CTX_TOP_PAD % 16 == 0, "the pad keeps the stack 16-byte aligned");

/* Internal to ctx.c and the .S: the first code a new context runs (it calls entry(arg)), the
 * current FP control state in the frame's FPCTL format, and the abort when an entry returns. */
void coho__ctx_trampoline(void);
uint64_t coho__ctx_fpctl_current(void);
__attribute__((noreturn)) void coho__ctx_entry_returned(void);
#endif /* __ASSEMBLER__ */

#endif /* COHO_COROUTINE_CTX_OFFSETS_H */
