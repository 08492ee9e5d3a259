/* SPDX-License-Identifier: MIT */
/* What a debugger needs to find coroutines without running code in the process: a registry of
 * the live schedulers and a table of the offsets of the scheduler, coroutine, pool and saved
 * context fields it reads (tools/coho-gdb.py). Both are plain data, so they read the same in a
 * live process and in a core file, with or without debug information for libcoho. */
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "base_struct/pool_impl.h"
#include "coroutine/ctx_offsets.h"
#include "coroutine/internal.h"
#include "coroutine/sched_impl.h"

/* Bump `version` whenever a field below changes meaning; tools/coho-gdb.py checks it. The
 * context registers are listed per architecture in the order of tools/coho-gdb.py's CTX_REGS:
 * x86_64 rbx, rbp, r12, r13, r14, r15, rip; aarch64 x19 .. x30. The stack pointer of a saved
 * context after its resume is the saved sp plus ctx_frame_size. */
typedef struct coho__debug_layout {
    uint32_t magic; /* "coho" */
    uint32_t version;
    uint32_t arch; /* 1: x86_64, 2: aarch64 */
    uint32_t sched_next, sched_tid, sched_pool, sched_current, sched_ctx, sched_ready_count,
        sched_live, sched_last_poll_ns;
    uint32_t pool_slabs, pool_nslabs, pool_shift, pool_mask, pool_stride, pool_fresh, pool_header;
    uint32_t co_id, co_state, co_name, co_name_max, co_fn, co_entry_name, co_ctx, co_wait_what,
        co_wait_detail, co_wait_since_ms, co_stack_lo, co_stack_size, co_has_stack, co_daemon,
        co_cancelled;
    uint32_t ctx_frame_size;
    uint32_t ctx_regs_count;
    uint32_t ctx_regs[12];
} coho__debug_layout_t;

typedef struct coho__debug_registry {
    const coho__debug_layout_t *layout;
    coho_sched_t *head; /* linked through debug_next, newest first */
} coho__debug_registry_t;

static const coho__debug_layout_t layout = {
    .magic = 0x6f686f63u,
    .version = 1,
#if defined(__x86_64__)
    .arch = 1,
    .ctx_regs_count = 7,
    .ctx_regs = {COHO_CTX_OFF_RBX, COHO_CTX_OFF_RBP, COHO_CTX_OFF_R12, COHO_CTX_OFF_R13,
                 COHO_CTX_OFF_R14, COHO_CTX_OFF_R15, COHO_CTX_OFF_RIP},
#elif defined(__aarch64__)
    .arch = 2,
    .ctx_regs_count = 12,
    .ctx_regs = {COHO_CTX_OFF_X19, COHO_CTX_OFF_X19 + 8, COHO_CTX_OFF_X21, COHO_CTX_OFF_X21 + 8,
                 COHO_CTX_OFF_X23, COHO_CTX_OFF_X23 + 8, COHO_CTX_OFF_X25, COHO_CTX_OFF_X25 + 8,
                 COHO_CTX_OFF_X27, COHO_CTX_OFF_X27 + 8, COHO_CTX_OFF_X29, COHO_CTX_OFF_X30},
#endif
    .sched_next = offsetof(coho__sched_impl_t, debug_next),
    .sched_tid = offsetof(coho__sched_impl_t, tid),
    .sched_pool = offsetof(coho__sched_impl_t, pool),
    .sched_current = offsetof(coho__sched_impl_t, current),
    .sched_ctx = offsetof(coho__sched_impl_t, ctx),
    .sched_ready_count = offsetof(coho__sched_impl_t, ready_count),
    .sched_live = offsetof(coho__sched_impl_t, live),
    .sched_last_poll_ns = offsetof(coho__sched_impl_t, last_poll_ns),
    .pool_slabs = offsetof(struct coho__pool, slabs),
    .pool_nslabs = offsetof(struct coho__pool, nslabs),
    .pool_shift = offsetof(struct coho__pool, shift),
    .pool_mask = offsetof(struct coho__pool, mask),
    .pool_stride = offsetof(struct coho__pool, stride),
    .pool_fresh = offsetof(struct coho__pool, fresh),
    .pool_header = POOL_HEADER_SIZE,
    .co_id = offsetof(coho__co_t, id),
    .co_state = offsetof(coho__co_t, state),
    .co_name = offsetof(coho__co_t, name),
    .co_name_max = COHO_NAME_MAX,
    .co_fn = offsetof(coho__co_t, fn),
    .co_entry_name = offsetof(coho__co_t, entry_name),
    .co_ctx = offsetof(coho__co_t, ctx),
    .co_wait_what = offsetof(coho__co_t, wait_what),
    .co_wait_detail = offsetof(coho__co_t, wait_detail),
    .co_wait_since_ms = offsetof(coho__co_t, wait_since_ms),
    .co_stack_lo = offsetof(coho__co_t, stack.lo),
    .co_stack_size = offsetof(coho__co_t, stack.size),
    .co_has_stack = offsetof(coho__co_t, has_stack),
    .co_daemon = offsetof(coho__co_t, daemon),
    .co_cancelled = offsetof(coho__co_t, cancelled),
    .ctx_frame_size = COHO_CTX_FRAME_SIZE,
};

_Static_assert(sizeof(((coho__sched_impl_t *)0)->tid) == 4, "tid is read as 32 bits");
_Static_assert(sizeof(((coho__co_t *)0)->state) == 1, "state is read as 8 bits");

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;

/* The debugger's entry point: external so that its symbol survives in every build, used so that
 * no linker drops it. */
__attribute__((used)) coho__debug_registry_t coho__debug_registry = {&layout, NULL};

void coho__debug_register(coho_sched_t *s)
{
    pthread_mutex_lock(&registry_lock);
    s->debug_next = coho__debug_registry.head;
    coho__debug_registry.head = s;
    pthread_mutex_unlock(&registry_lock);
}

void coho__debug_unregister(coho_sched_t *s)
{
    coho_sched_t **p;

    pthread_mutex_lock(&registry_lock);
    for (p = &coho__debug_registry.head; *p != NULL; p = &(*p)->debug_next) {
        if (*p == s) {
            *p = s->debug_next;
            break;
        }
    }
    pthread_mutex_unlock(&registry_lock);
}
