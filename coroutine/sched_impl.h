/* SPDX-License-Identifier: MIT */
/* Private to the scheduler files (sched.c, dump.c, overflow.c): the coroutine and scheduler
 * records. Layers above use coroutine/internal.h and include/coho/sched.h only. */
#ifndef COHO_COROUTINE_SCHED_IMPL_H
#define COHO_COROUTINE_SCHED_IMPL_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <coho.h>

#include "base_struct/list.h"
#include "base_struct/pool.h"
#include "coroutine/ctx.h"
#include "coroutine/stack.h"
#include "mio_driver/driver.h"

enum coho__co_state {
    COHO__CO_READY = 1, /* in the ready queue (new coroutines too) */
    COHO__CO_RUNNING,   /* on the CPU */
    COHO__CO_PARKED,    /* in coho__co_block() */
    COHO__CO_DONE,      /* returned from its entry; waits to be joined (stack already freed) */
};

/* Why a coroutine parked (coho_sched_stats_t's parks_*), from its wait label (sched.c,
 * park_reason). */
enum coho__park_reason {
    COHO__PARK_IO,
    COHO__PARK_SLEEP,
    COHO__PARK_SYNC,
    COHO__PARK_JOIN,
    COHO__PARK_OTHER,
    COHO__PARK_REASONS
};

/* The scheduler counters (coho_sched_get_stats) are compiled in unless COHO_SCHED_COUNTERS is
 * defined to 0, which exists only to measure what they cost (bench/RESULTS.md). */
#ifndef COHO_SCHED_COUNTERS
#    define COHO_SCHED_COUNTERS 1
#endif

typedef struct coho__key_value {
    void *value;
    uint32_t seq; /* the key's sequence number when the value was set */
} coho__key_value_t;

typedef struct coho__exit_cb {
    struct coho__exit_cb *next;
    void (*fn)(void *arg);
    void *arg;
} coho__exit_cb_t;

/* A record is taken from the pool unzeroed (coho__pool_alloc_raw): spawn sets every field but
 * token_seq (it only grows), the timer (idle between tenants: cb and data, if set, already
 * name this record) and keys and exit_cbs (NULL whenever a coroutine has finished). The stack
 * is taken at the first switch-in, so a batch of coroutines spawned at once that each run to
 * the end share the one warm stack each returns (spawn only reserves it). */
typedef struct coho__co {
    uint64_t id;
    struct coho_sched *sched;
    coho__ctx_t ctx;
    coho__stack_t stack;
    size_t stack_nominal; /* the size asked for (the usable size may be a little larger) */
    void (*fn)(void *arg);
    void *arg;
    const char *entry_name; /* symbol of fn resolved at spawn (cached), or NULL */
    coho_list_t ready_link;
    uint8_t state; /* enum coho__co_state */
    bool daemon;
    bool detached;
    bool cancelled;
    bool wait_open;      /* between coho__co_block_prepare and the end of that wait */
    bool woken;          /* woken while not parked yet: coho__co_block returns at once */
    bool has_stack;      /* stack is held (false until the first switch-in, and once finished) */
    bool stack_reserved; /* a stack of class stack_cls is promised (coho__stack_reserve) */
    uint32_t flags;      /* coho__co_flags() */
    unsigned stack_cls;  /* the stack's size class, while stack_reserved */
    uint64_t fpctl;      /* the spawner's FP control state, for the first frame */
    int wake_result;     /* the result the current or last wait ended with */
    int saved_errno;     /* errno while switched out (0 for a new coroutine, as for a new thread) */
    uint64_t token;      /* token of the open wait */
    uint64_t token_seq;
    coho__timer_t timer;  /* block timeouts and sleeps; lazy (sched.c, timer_fired) */
    uint64_t deadline_ns; /* of the open wait (coho__mono_ns scale); UINT64_MAX: none */
    uint64_t joiner_id;   /* the coroutine in coho_join on this one, 0: none */
    uint64_t joiner_token;
    const char *wait_what; /* what a parked coroutine waits on (static string) */
    int64_t wait_detail;   /* an fd, an id, ... for the dump; -1: none */
    uint64_t wait_since_ms;
    uint64_t spawn_ns;       /* CLOCK_MONOTONIC at spawn if debug logging was on then, else 0 */
    uint64_t park_ns;        /* CLOCK_MONOTONIC at the last traced park (trace level only) */
    coho__key_value_t *keys; /* COHO_KEYS_MAX entries, allocated on first coho_key_set */
    coho__exit_cb_t *exit_cbs;
    void *asan_fake_stack;
    void *tsan_fiber;
    unsigned vg_stack_id;
    char name[COHO_NAME_MAX];
    _Alignas(16) unsigned char hook_slot[COHO_SWITCH_HOOK_SLOT_MAX];
} coho__co_t;

#define COHO__ENTRY_CACHE 64

typedef struct coho_sched {
    coho__driver_t *driver;
    coho__pool_t *pool;
    coho__stack_pool_t *stacks;
    coho__timer_t stack_decay; /* armed while more than idle_stacks_max stacks are idle */
    /* The stack of the coroutine that finished last, held for the next first switch-in of its
     * size class (sched.c, co_bind_stack) instead of a put and a get; given back to the pool
     * when the scheduler goes idle, when the decay runs and at destroy. */
    coho__stack_t spare;
    unsigned spare_cls;
    bool has_spare;
    unsigned stack_decay_ms;
    coho__ctx_t ctx; /* the scheduler's own flow (the thread's stack) */
    int *errno_loc;  /* &errno of the scheduler's thread: no __errno_location call per switch */
    int saved_errno; /* the scheduler flow's errno while a coroutine runs */
    coho_list_t ready;
    size_t ready_count;
    coho__co_t *current;
    coho__co_t *left;     /* the coroutine that last switched back to the scheduler's stack */
    unsigned poll_budget; /* resumes left before the clock is read (sched.c, may_resume) */
    /* Counters. Resumes cost nothing where they happen: they are the spent part of the poll
     * budget (budget_start - poll_budget), added to resumes_done whenever the budget starts
     * over. */
    unsigned budget_start; /* poll_budget when the current budget started */
    uint64_t resumes_done; /* resumes of the budgets before the current one */
    uint64_t parks[COHO__PARK_REASONS];
    uint64_t wakes;
    uint64_t polls;
    uint64_t last_poll_ns; /* CLOCK_MONOTONIC after the last poll of the driver */
    bool asan_from_sched;  /* the switch in progress leaves the scheduler's stack */
    size_t live;           /* coroutines not finished */
    size_t user_live;      /* non-daemon coroutines not finished */
    pthread_t thread;
    pid_t tid;
    bool running;
    bool draining; /* run() cancelled what was left and waits for it to finish */
    atomic_bool stop_requested;
    coho_sched_opts_t opts;
    bool dump_signal;
    void *altstack; /* the alternate signal stack this scheduler installed, or NULL */
    size_t altstack_size;
    const void *asan_stack_bottom; /* the thread stack, learned from the first switch back */
    size_t asan_stack_size;
    void *asan_fake_stack;
    void *tsan_fiber;
    struct coho_sched *debug_next; /* the debugger's registry of schedulers (debug.c) */
    struct {
        void (*fn)(void *);
        const char *name; /* NULL: dladdr found no symbol */
    } entry_cache[COHO__ENTRY_CACHE];
    unsigned entry_last; /* the entry_cache slot the last lookup found */
    _Alignas(16) unsigned char hook_slot[COHO_SWITCH_HOOK_SLOT_MAX];
} coho__sched_impl_t;

/* The running coroutine of this thread (NULL on a scheduler stack or outside schedulers). */
coho__co_t *coho__co_current(void);

/* Names for the dump. */
const char *coho__co_state_name(unsigned state);

/* Installs the process-wide overflow SIGSEGV handler (once) and, if the calling thread has no
 * alternate signal stack, one owned by `s`. Returns 0 or -errno. No-op in sanitizer builds. */
int coho__overflow_install(struct coho_sched *s);

/* Removes the alternate stack `s` installed (if it is still the thread's). */
void coho__overflow_uninstall(struct coho_sched *s);

/* Formats "coroutine <id> (<name>, entry <symbol>) overflowed its <N> KiB stack" into
 * buf[len] (async-signal-safe; NUL-terminated, cut to fit). Returns the length. */
size_t coho__overflow_format(char *buf, size_t len, const coho__co_t *co);

/* Adds `s` to / removes it from the registry of live schedulers a debugger walks
 * (tools/coho-gdb.py; debug.c). A mutex per create and destroy, nothing per switch. */
void coho__debug_register(struct coho_sched *s);
void coho__debug_unregister(struct coho_sched *s);

#endif /* COHO_COROUTINE_SCHED_IMPL_H */
