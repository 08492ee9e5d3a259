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

    coho__ctx_init(c, stack_lo, size, entry, arg, fpctl);
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
