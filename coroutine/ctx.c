/* SPDX-License-Identifier: MIT */
/* The portable half of the context switch: building the first frame of a new context (the
 * frame layout and its _Static_asserts come from ctx_offsets.h), and the abort when an entry
 * function returns. The switch itself is in ctx_<arch>.S. */
#include "coroutine/ctx.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coroutine/ctx_offsets.h"
#include "log/check.h"

void coho__ctx_make(coho__ctx_t *c, void *stack_lo, size_t size, coho__ctx_entry_fn entry,
                    void *arg)
{
    coho__ctx_make_fp(c, stack_lo, size, entry, arg, coho__ctx_fpctl_current());
}

void coho__ctx_make_fp(coho__ctx_t *c, void *stack_lo, size_t size, coho__ctx_entry_fn entry,
                       void *arg, uint64_t fpctl)
{
    COHO_CHECK(c != NULL && stack_lo != NULL && entry != NULL && size >= 4096,
               "coho__ctx_make: bad arguments (stack %p, %zu bytes)", stack_lo, size);

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

int coho__ctx_fp_policy = COHO__CTX_FP_COMPARE;

int coho__ctx_fp_policy_parse(const char *value)
{
    if (value == NULL)
        return -1;
    if (strcmp(value, "compare") == 0)
        return COHO__CTX_FP_COMPARE;
    if (strcmp(value, "reload") == 0)
        return COHO__CTX_FP_RELOAD;
    return -1;
}

int coho__ctx_fp_policy_choose(const char *env_value)
{
    int cpu = coho__ctx_fp_policy_default();
    if (env_value == NULL || env_value[0] == '\0')
        return cpu;
    int forced = coho__ctx_fp_policy_parse(env_value);
    if (forced >= 0)
        return forced;
    fprintf(stderr,
            "coho: COHO_CTX_FP=\"%s\" is neither \"compare\" nor \"reload\"; using this CPU's "
            "default (%s)\n",
            env_value, cpu == COHO__CTX_FP_RELOAD ? "reload" : "compare");
    return cpu;
}

/* Chosen before main (and before any scheduler can switch); a switch made earlier, from another
 * constructor, runs under COMPARE, which is correct too. */
__attribute__((constructor)) static void ctx_fp_policy_init(void)
{
    coho__ctx_fp_policy = coho__ctx_fp_policy_choose(getenv("COHO_CTX_FP"));
}

void coho__ctx_entry_returned(void)
{
    coho__check_fail(__FILE__, __LINE__,
                     "a context entry function returned; it must switch away for the last time");
}
