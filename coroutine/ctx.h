/* SPDX-License-Identifier: MIT */
/* The machine context switch (ctx_x86_64.S, ctx_aarch64.S). A context is the saved stack
 * pointer of a suspended flow; callee-saved registers (and the FP control state) live on that
 * stack, in the frame laid out in ctx_offsets.h. No ucontext, no signal-mask syscalls. */
#ifndef COHO_COROUTINE_CTX_H
#define COHO_COROUTINE_CTX_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifndef __cplusplus /* ctx_offsets.h pins its offsets with C's _Static_assert */
#    include "coroutine/ctx_offsets.h"
#endif

typedef struct coho__ctx {
    void *sp; /* saved stack pointer; NULL for a context that never ran (the thread's own
                 context is filled in by its first switch away) */
} coho__ctx_t;

/* Entry function of a new context. It must never return: it ends by switching away for the
 * last time (the trampoline aborts if it does return). */
typedef void (*coho__ctx_entry_fn)(void *arg);

/* Prepares `c` to start `entry(arg)` on the stack [stack_lo, stack_lo + size) on its first
 * switch-in. The first frame terminates the frame chain (zeroed return address and frame
 * pointer, CFI undefined return column) so backtraces end cleanly. The new context starts with
 * the FP control state (MXCSR control bits, x87 control word / FPCR) of the thread at the time
 * of this call. `size` must be at least 4096; the stack is 16-byte aligned by this call. */
void coho__ctx_make(coho__ctx_t *c, void *stack_lo, size_t size, coho__ctx_entry_fn entry,
                    void *arg);

/* As coho__ctx_make, but the new context starts with the FP control state `fpctl` (a value
 * coho__ctx_fpctl_current returned, perhaps earlier and on another flow of the thread). */
void coho__ctx_make_fp(coho__ctx_t *c, void *stack_lo, size_t size, coho__ctx_entry_fn entry,
                       void *arg, uint64_t fpctl);

#ifndef __cplusplus
/* coho__ctx_make_fp without its argument checks, inline: for the scheduler, which lays out
 * the first frame of every coroutine with arguments it knows to be valid. */
static inline void coho__ctx_init(coho__ctx_t *c, void *stack_lo, size_t size,
                                  coho__ctx_entry_fn entry, void *arg, uint64_t fpctl)
{
    /* Stack map of a new context (addresses grow upwards):
     *
     *   top (16-byte aligned) ->  +----------------------------+
     *                             | COHO_CTX_TOP_PAD zero bytes |  nothing ever returns here
     *                             +----------------------------+
     *                             | first frame                 |  FP control of this thread,
     *                             |   entry, arg, fp = 0,       |  popped by the first switch-in
     *                             |   pc = trampoline           |
     *   c->sp ->                  +----------------------------+
     *                             | ... the stack grows down    |
     *   stack_lo ->               +----------------------------+
     *
     * After the first switch-in pops the frame, sp = top - COHO_CTX_TOP_PAD, 16-byte aligned,
     * which is what the trampoline needs before its call. */
    uintptr_t top = ((uintptr_t)stack_lo + size) & ~(uintptr_t)15;
    unsigned char *pad = (unsigned char *)(top - COHO_CTX_TOP_PAD);
    memset(pad, 0, COHO_CTX_TOP_PAD);

    coho__ctx_frame_t *f = (coho__ctx_frame_t *)(void *)(pad - COHO_CTX_FRAME_SIZE);
    memset(f, 0, sizeof(*f));
    unsigned char *raw = (unsigned char *)f;
    uint64_t entry_word = (uint64_t)(uintptr_t)entry;
    uint64_t arg_word = (uint64_t)(uintptr_t)arg;
    uint64_t pc_word = (uint64_t)(uintptr_t)coho__ctx_trampoline;
    memcpy(raw + COHO_CTX_OFF_FPCTL, &fpctl, sizeof(fpctl));
    memcpy(raw + COHO_CTX_OFF_ENTRY, &entry_word, sizeof(entry_word));
    memcpy(raw + COHO_CTX_OFF_ARG, &arg_word, sizeof(arg_word));
    memcpy(raw + COHO_CTX_OFF_PC, &pc_word, sizeof(pc_word));
    /* COHO_CTX_OFF_FP stays 0: the frame-pointer chain of the new context ends there. */
    c->sp = f;
}
#endif

/* The calling flow's FP control state in the format coho__ctx_make_fp takes. */
uint64_t coho__ctx_fpctl_current(void);

/* Saves the current flow into `from` and resumes `to`. Returns when something switches back to
 * `from`. The incoming context's FP control bits (MXCSR bits 6-15 and the x87 control word;
 * FPCR on aarch64) are in force when it resumes, under either policy below; sticky status flags
 * are not kept per context. */
void coho__ctx_switch(coho__ctx_t *from, coho__ctx_t *to);

/* How the x86_64 switch keeps the FP control bits (aarch64 always compares FPCR):
 * COHO__CTX_FP_COMPARE reloads MXCSR and the x87 control word only when the incoming control
 * bits differ; COHO__CTX_FP_RELOAD reloads MXCSR on every switch and the x87 control word when
 * it differs. Both keep the control bits per context; they differ only in cost, which depends
 * on the core (coroutine/README.md "Context switch"). */
enum { COHO__CTX_FP_COMPARE = 0, COHO__CTX_FP_RELOAD = 1 };

/* The policy in force, set once at load time by coho__ctx_fp_policy_choose() from the
 * environment variable COHO_CTX_FP. Tests and benchmarks may set it while no context other than
 * the caller's is between switches. */
extern int coho__ctx_fp_policy;

/* The cheaper policy for this CPU, by vendor and family (per-architecture, in the .S). */
int coho__ctx_fp_policy_default(void);

/* "compare" -> COHO__CTX_FP_COMPARE, "reload" -> COHO__CTX_FP_RELOAD; -1 for anything else
 * (NULL included). */
int coho__ctx_fp_policy_parse(const char *value);

/* The policy for a process whose COHO_CTX_FP is `env_value` (NULL: unset): the forced one when
 * it parses, else coho__ctx_fp_policy_default(); a value that does not parse is reported on
 * stderr (naming the value and the default used) and ignored. aarch64 accepts either value and
 * always compares FPCR. */
int coho__ctx_fp_policy_choose(const char *env_value);

#endif /* COHO_COROUTINE_CTX_H */
