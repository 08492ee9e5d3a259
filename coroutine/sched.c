/* SPDX-License-Identifier: MIT */
/* The scheduler: one per thread, coroutines in a generation-id pool, a FIFO ready queue, the
 * block/wake protocol with tokens (coroutine/internal.h), join/detach, keys, exit callbacks,
 * cancellation, and the sanitizer/valgrind annotations around every switch. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base_struct/clock.h"
#include "base_struct/err.h"
#include "base_struct/pool_impl.h"
#include "coroutine/internal.h"
#include "coroutine/sched_impl.h"
#include "log/check.h"
#include "log/log.h"

/* ---- sanitizer and valgrind annotations -------------------------------------------------- */

#if defined(__has_feature)
#    if __has_feature(address_sanitizer)
#        define SCHED_ASAN 1
#    endif
#    if __has_feature(thread_sanitizer)
#        define SCHED_TSAN 1
#    endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(SCHED_ASAN)
#    define SCHED_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__) && !defined(SCHED_TSAN)
#    define SCHED_TSAN 1
#endif

#ifdef SCHED_ASAN
#    include <sanitizer/asan_interface.h>
#    include <sanitizer/common_interface_defs.h>
#endif
#ifdef SCHED_TSAN
#    include <sanitizer/tsan_interface.h>
#endif
#ifdef COHO_VALGRIND
#    include <valgrind/valgrind.h>
#endif

/* ---- thread state ------------------------------------------------------------------------- */

/* initial-exec: a plain %fs-relative load, so coho__co_self_id (the log's id provider) is
 * async-signal-safe and cheap, also in the shared library. */
#define SCHED_TLS __thread __attribute__((tls_model("initial-exec")))

static SCHED_TLS coho_sched_t *tls_sched; /* the scheduler created on this thread */
static SCHED_TLS coho__co_t *tls_co;      /* the running coroutine */
static SCHED_TLS uint64_t tls_co_id;      /* tls_co->id, readable from signal handlers */

static atomic_bool provider_registered;

/* ---- switch hook ---------------------------------------------------------------------------- */

static coho_switch_hook_t hook_storage;
static _Atomic(const coho_switch_hook_t *) hook_current;

/* Installs and compares under a lock: threads constructing their first coho::Scheduler at once
 * all install the same hook, while other schedulers may already be switching. */
static pthread_mutex_t hook_mu = PTHREAD_MUTEX_INITIALIZER;

int coho_set_switch_hook(const coho_switch_hook_t *h)
{
    const coho_switch_hook_t *cur;
    int rc = 0;

    if (h != NULL &&
        (h->slot_size > COHO_SWITCH_HOOK_SLOT_MAX || h->save == NULL || h->restore == NULL)) {
        errno = EINVAL;
        return -1;
    }
    pthread_mutex_lock(&hook_mu);
    cur = atomic_load_explicit(&hook_current, memory_order_acquire);
    if (h == NULL) {
        atomic_store_explicit(&hook_current, NULL, memory_order_release);
    } else if (cur != NULL) {
        if (cur->save != h->save || cur->restore != h->restore || cur->slot_size != h->slot_size)
            rc = EBUSY;
    } else {
        hook_storage = *h;
        /* Release: a scheduler on another thread that sees the pointer sees the fields. */
        atomic_store_explicit(&hook_current, &hook_storage, memory_order_release);
    }
    pthread_mutex_unlock(&hook_mu);
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    return 0;
}

static inline void hook_run(void *out_slot, void *in_slot)
{
    /* Acquire (a plain load on x86): pairs with the release of coho_set_switch_hook. */
    const coho_switch_hook_t *h = atomic_load_explicit(&hook_current, memory_order_acquire);

    if (__builtin_expect(h != NULL, 0)) {
        h->save(out_slot);
        h->restore(in_slot);
    }
}

/* ---- helpers ----------------------------------------------------------------------------------
 */

static inline pid_t current_tid(void)
{
    return (pid_t)syscall(SYS_gettid);
}

static inline coho__co_t *co_lookup(coho_sched_t *s, uint64_t id)
{
    slot_header_t *slot = pool_live_slot(s->pool, id); /* inline: every wake looks one up */

    return slot != NULL ? (coho__co_t *)slot_node(slot) : NULL;
}

/* The scheduler of this thread for calls that name coroutines by id, or NULL. */
static inline coho_sched_t *sched_here(void)
{
    return tls_sched;
}

static inline void check_thread(const coho_sched_t *s, const char *what)
{
    COHO_CHECK(tls_sched == s,
               "%s: scheduler %p belongs to thread %d, called from thread %d "
               "(use coho_sched_post from other threads)",
               what, (const void *)s, (int)s->tid, (int)current_tid());
}

const char *coho__co_state_name(unsigned state)
{
    switch (state) {
    case COHO__CO_READY:
        return "ready";
    case COHO__CO_RUNNING:
        return "running";
    case COHO__CO_PARKED:
        return "parked";
    case COHO__CO_DONE:
        return "finished";
    default:
        return "?";
    }
}

/* Symbol of an entry function, resolved once per function and scheduler (dladdr is far too
 * slow for every spawn and is not async-signal-safe, so the overflow handler reads this
 * cached pointer instead). A full cache stops resolving: such entries print as an address. */
static __attribute__((noinline)) const char *entry_lookup(coho_sched_t *s, void (*fn)(void *))
{
    size_t h = ((uintptr_t)fn >> 4) * 0x9e3779b97f4a7c15ull >> 58; /* 6 bits: 64 slots */
    size_t i;

    for (i = 0; i < COHO__ENTRY_CACHE; i++) {
        size_t k = (h + i) & (COHO__ENTRY_CACHE - 1);

        if (s->entry_cache[k].fn == fn) {
            s->entry_last = k;
            return s->entry_cache[k].name;
        }
        if (s->entry_cache[k].fn == NULL) {
            Dl_info info;
            const char *name = NULL;

            if (dladdr((void *)(uintptr_t)fn, &info) != 0 && info.dli_sname != NULL &&
                info.dli_saddr == (void *)(uintptr_t)fn)
                name = info.dli_sname;
            s->entry_cache[k].fn = fn;
            s->entry_cache[k].name = name;
            s->entry_last = k;
            return name;
        }
    }
    return NULL;
}

/* The entry of the last spawn first: a server spawns the same function over and over. */
static inline const char *entry_name(coho_sched_t *s, void (*fn)(void *))
{
    if (__builtin_expect(s->entry_cache[s->entry_last].fn == fn, 1))
        return s->entry_cache[s->entry_last].name;
    return entry_lookup(s, fn);
}

/* ---- spawn and exit trace lines ------------------------------------------------------------ */

/* Debug lines that tools/coho-trace reads (format in coroutine/README.md). The level is checked
 * before anything else, so with debug off a spawn and an exit each cost one call and a compare;
 * the spawn time is only taken while debug is on (0: not taken). */
static inline bool trace_on(void)
{
    return coho__log_is_on(COHO_LOG_DEBUG); /* a relaxed load, no call */
}

/* Logged by the spawner, so the line's COID is the parent's (0 outside coroutines). The name
 * comes last because it may contain spaces. */
static __attribute__((noinline, cold)) void trace_spawn(coho__co_t *co)
{
    char addr[2 + 16 + 1];
    const char *entry = co->entry_name;

    if (entry == NULL) {
        snprintf(addr, sizeof(addr), "%p", (void *)(uintptr_t)co->fn);
        entry = addr;
    }
    co->spawn_ns = coho__mono_ns() | 1u;
    coho_log_debug("spawn co=%llu entry=%s name=%s", (unsigned long long)co->id, entry,
                   co->name[0] != '\0' ? co->name : "-");
}

/* Logged by the coroutine itself after its exit callbacks and key destructors, so it is the
 * last line it writes. The name is repeated because coho_set_name may have changed it. */
static __attribute__((noinline, cold)) void trace_exit(const coho__co_t *co)
{
    const char *name = co->name[0] != '\0' ? co->name : "-";

    if (co->spawn_ns != 0)
        coho_log_debug("exit co=%llu ran=%lluus name=%s", (unsigned long long)co->id,
                       (unsigned long long)((coho__mono_ns() - co->spawn_ns) / 1000u), name);
    else
        coho_log_debug("exit co=%llu ran=? name=%s", (unsigned long long)co->id, name);
}

/* Trace lines around a park (format in coroutine/README.md "Trace lines"), read by coho-trace
 * --chrome to draw parked intervals. Both are written in the parked coroutine's own context:
 * "park" just before it leaves, "wake" as soon as it runs again, so the interval between them
 * is the time it was parked plus the time it waited in the ready queue. With the log above
 * trace level a park pays one relaxed load and a predicted branch (coho__log_is_on). */
static __attribute__((noinline, cold)) void trace_park(coho__co_t *co)
{
    char what[96];

    coho__co_wait_format(what, sizeof(what), co->wait_what, co->wait_detail);
    co->park_ns = coho__mono_ns();
    coho_log_trace("park co=%llu on=%s", (unsigned long long)co->id, what);
}

/* The label is repeated so that a wake line alone (its park line rotated away) says what the
 * coroutine waited on; the note is still the park's (coho__co_block clears it afterwards). */
static __attribute__((noinline, cold)) void trace_wake(const coho__co_t *co)
{
    char what[96];

    coho__co_wait_format(what, sizeof(what), co->wait_what, co->wait_detail);
    coho_log_trace("wake co=%llu parked=%lluus result=%d on=%s", (unsigned long long)co->id,
                   (unsigned long long)((coho__mono_ns() - co->park_ns) / 1000u), co->wake_result,
                   what);
}

/* ---- switching ---------------------------------------------------------------------------- */

/* errno is part of each flow's state (DESIGN.md "errno per coroutine"), the scheduler's stack
 * included. The flow that leaves saves the thread's errno and, last thing before the jump,
 * installs the saved errno of the flow it switches to: one load and one store of the thread's
 * errno each way, through the address cached at create (no __errno_location call), and
 * nothing to do after a switch-in. Both happen before the jump on purpose: on the AMD EPYC of
 * bench/RESULTS.md, the same store made by the arriving flow right after the switch made a
 * yield round trip about 15 ns slower (a store to errno straight after the switch is
 * expensive there), while the store before it costs about 2 ns. */

/* Who runs now: the scheduler's bookkeeping and the thread-locals the log and the API read.
 * Set by the flow that switches, before the switch (NULL: the scheduler's own stack). */
static inline void set_current(coho_sched_t *s, coho__co_t *co)
{
    s->current = co;
    tls_co = co;
    tls_co_id = co != NULL ? co->id : 0;
    if (co != NULL)
        co->state = COHO__CO_RUNNING;
}

static void co_main(void *arg);

/* Before the first switch-in of `co`: takes the stack spawn reserved (the spare stack of the
 * coroutine that finished last, else the warmest free one) and lays out the first frame
 * there. */
static __attribute__((noinline)) void co_bind_stack(coho_sched_t *s, coho__co_t *co)
{
    if (s->has_spare && s->spare_cls == co->stack_cls) {
        coho__stack_move_reserved(s->stacks, co->stack_cls, &s->spare, &co->stack);
        s->has_spare = false;
    } else {
        coho__stack_get_reserved(s->stacks, co->stack_cls, &co->stack);
    }
    co->stack_reserved = false;
    co->has_stack = true;
    co->stack.owner = co;
    coho__ctx_init(&co->ctx, co->stack.lo, co->stack.size, co_main, co, co->fpctl);
#ifdef COHO_VALGRIND
    co->vg_stack_id = VALGRIND_STACK_REGISTER(co->stack.lo, (char *)co->stack.lo + co->stack.size);
#endif
}

/* Scheduler stack -> coroutine `co`; returns when some coroutine switches back to the
 * scheduler's stack (s->left says which: `co` itself, or one `co` handed the CPU to), having
 * put the scheduler's errno back. */
static inline void switch_in(coho_sched_t *s, coho__co_t *co)
{
    if (__builtin_expect(co->ctx.sp == NULL, 0))
        co_bind_stack(s, co);
    s->saved_errno = *s->errno_loc;
    set_current(s, co);
    hook_run(s->hook_slot, co->hook_slot);
#ifdef SCHED_TSAN
    __tsan_switch_to_fiber(co->tsan_fiber, 0);
#endif
#ifdef SCHED_ASAN
    s->asan_from_sched = true;
    __sanitizer_start_switch_fiber(&s->asan_fake_stack, co->stack.lo, co->stack.size);
#endif
    *s->errno_loc = co->saved_errno;
    coho__ctx_switch(&s->ctx, &co->ctx);
#ifdef SCHED_ASAN
    __sanitizer_finish_switch_fiber(s->asan_fake_stack, NULL, NULL);
#endif
}

/* Runs on `co`'s stack right after it was switched in (its first arrival included). */
static inline void arrived(coho__co_t *co)
{
#ifdef SCHED_ASAN
    coho_sched_t *s = co->sched;

    /* The bounds of the stack left behind: the thread's own (learnt for the switches back)
     * only when the switch came from the scheduler's stack, not from another coroutine. */
    const void *bottom;
    size_t size;

    __sanitizer_finish_switch_fiber(co->asan_fake_stack, &bottom, &size);
    if (s->asan_from_sched) {
        s->asan_stack_bottom = bottom;
        s->asan_stack_size = size;
    }
#else
    (void)co;
#endif
}

static __attribute__((noinline, cold, noreturn)) void canary_breached(const coho__co_t *co);

/* Coroutine `co` -> coroutine `next` of the same scheduler, without passing through the
 * scheduler's stack (a yield or a park with another coroutine ready and no poll due). `co`
 * leaves as it would to the scheduler: its canary is checked (it cannot be after the switch,
 * since nothing returns to the scheduler for it), errno saved, hooks and sanitizers told. */
static inline void switch_to_prepare(coho_sched_t *s, coho__co_t *co, coho__co_t *next)
{
    if (!co->stack.guarded && !coho__stack_canary_is_intact(&co->stack))
        canary_breached(co);
    if (__builtin_expect(next->ctx.sp == NULL, 0))
        co_bind_stack(s, next);
    co->saved_errno = *s->errno_loc;
    set_current(s, next);
    hook_run(co->hook_slot, next->hook_slot);
    /* No TSan fiber switch here: TSan would count this function's return against the shadow
     * stack of `next` (see switch_to). */
#ifdef SCHED_ASAN
    s->asan_from_sched = false;
    __sanitizer_start_switch_fiber(&co->asan_fake_stack, next->stack.lo, next->stack.size);
#endif
    *s->errno_loc = next->saved_errno; /* last thing before the jump, as everywhere */
}

static inline void switch_to(coho_sched_t *s, coho__co_t *co, coho__co_t *next)
{
    switch_to_prepare(s, co, next);
#ifdef SCHED_TSAN
    /* In the frame that jumps, after the last return on this stack: TSan keeps a shadow call
     * stack per fiber, and a function that switched fibers and then returned would pop a frame
     * of `next`'s (its stack then underflows, a crash inside TSan). */
    __tsan_switch_to_fiber(next->tsan_fiber, 0);
#endif
    coho__ctx_switch(&co->ctx, &next->ctx);
    arrived(co);
}

/* Coroutine `co` -> its scheduler's stack; returns when `co` is switched in again (with its
 * errno put back by whoever switched to it). `last`: the coroutine has finished and is never
 * switched in again. */
static inline void switch_out(coho__co_t *co, bool last)
{
    coho_sched_t *s = co->sched;

    co->saved_errno = *s->errno_loc;
    s->left = co;
    set_current(s, NULL);
    hook_run(co->hook_slot, s->hook_slot);
#ifdef SCHED_TSAN
    __tsan_switch_to_fiber(s->tsan_fiber, 0);
#endif
#ifdef SCHED_ASAN
    __sanitizer_start_switch_fiber(last ? NULL : &co->asan_fake_stack, s->asan_stack_bottom,
                                   s->asan_stack_size);
#else
    (void)last;
#endif
    *s->errno_loc = s->saved_errno;
    coho__ctx_switch(&co->ctx, &s->ctx);
    arrived(co);
}

/* ---- ready queue -------------------------------------------------------------------------- */

static inline void make_ready(coho_sched_t *s, coho__co_t *co)
{
    co->state = COHO__CO_READY;
    coho_list_push_back(&s->ready, &co->ready_link);
    s->ready_count++;
}

static inline coho__co_t *ready_pop(coho_sched_t *s)
{
    coho_list_t *l = coho_list_pop_front(&s->ready);

    s->ready_count--;
    return coho_list_entry(l, coho__co_t, ready_link);
}

/* The driver is polled (epoll_wait with a zero timeout, then posts and due timers) whenever
 * the ready queue runs dry, and otherwise at a bounded interval: every SCHED_CLOCK_EVERY resumes
 * of coroutines the clock is read, and the driver is polled if SCHED_POLL_NS have passed since
 * the last poll. In between, a coroutine that yields or parks with others ready hands the CPU
 * straight to the next one (FIFO), without passing through the scheduler's stack: a yield is
 * one switch and no system call. An fd event or a timer therefore waits at most
 * max(SCHED_POLL_NS, SCHED_CLOCK_EVERY coroutine slices) for a busy loop to notice it.
 * A poll costs ~3.5 us here (epoll_wait with PTI in a KVM guest) and a clock read ~80 ns;
 * bench/RESULTS.md ("coroutine: scheduler") compares this with polling every N resumes. */
#ifndef SCHED_CLOCK_EVERY
#    define SCHED_CLOCK_EVERY 64
#endif
#ifndef SCHED_POLL_NS
#    define SCHED_POLL_NS 200000u /* 0: poll every SCHED_CLOCK_EVERY resumes (no clock) */
#endif

/* The resume budget is spent: is a poll due? If not, a new budget starts. */
static __attribute__((noinline)) bool poll_is_due(coho_sched_t *s)
{
    if (SCHED_POLL_NS == 0 || coho__mono_ns() - s->last_poll_ns >= SCHED_POLL_NS)
        return true;
#if COHO_SCHED_COUNTERS
    /* The spent budget goes to the resume counter; the new one already holds this resume. */
    s->resumes_done += s->budget_start;
#endif
    s->budget_start = SCHED_CLOCK_EVERY;
    s->poll_budget = SCHED_CLOCK_EVERY - 1;
    return false;
}

/* After a poll: a full budget, the spent one counted. */
static inline void budget_restart(coho_sched_t *s)
{
#if COHO_SCHED_COUNTERS
    s->resumes_done += s->budget_start - s->poll_budget;
#endif
    s->budget_start = SCHED_CLOCK_EVERY;
    s->poll_budget = SCHED_CLOCK_EVERY;
}

#if COHO_SCHED_COUNTERS
#    define SCHED_COUNT(x) ((x)++)
#else
#    define SCHED_COUNT(x) ((void)0)
#endif

/* What a park waits on, from the label of coho__co_wait_note (coroutine/README.md lists them):
 * the first two characters tell the labels apart, so a park pays a load or two and a jump. */
static inline unsigned park_reason(const char *what)
{
    if (what == NULL)
        return COHO__PARK_OTHER;
    switch (what[0]) {
    case 'r': /* read fd=, read/write fd= */
    case 'p': /* poll nfds= */
    case 'f': /* fd read lock fd=, fd write lock fd= */
    case 'd': /* dns */
        return COHO__PARK_IO;
    case 'w': /* write fd= | waitgroup@ */
        return what[1] == 'r' ? COHO__PARK_IO : COHO__PARK_SYNC;
    case 's': /* sleep | sem@ */
        return what[1] == 'l'   ? COHO__PARK_SLEEP
               : what[1] == 'e' ? COHO__PARK_SYNC
                                : COHO__PARK_OTHER;
    case 'm': /* mutex@ */
    case 'c': /* cond@, chan send@, chan recv@ */
        return COHO__PARK_SYNC;
    case 'j': /* join */
        return COHO__PARK_JOIN;
    default:
        return COHO__PARK_OTHER;
    }
}

/* Counts one resume; false when the driver must be polled first. */
static inline bool may_resume(coho_sched_t *s)
{
    if (__builtin_expect(s->poll_budget > 0, 1)) {
        s->poll_budget--;
        return true;
    }
    return !poll_is_due(s);
}

/* A running coroutine that parks (or yielded and is queued again): runs the next ready
 * coroutine directly, or returns at once when that is `co` itself (nothing else was ready), or
 * switches to the scheduler's stack when the queue is empty or the driver is due a poll. */
static inline void co_leave(coho_sched_t *s, coho__co_t *co)
{
    if (s->ready_count > 0 && may_resume(s)) {
        coho__co_t *next = ready_pop(s);

        if (next == co) {
            co->state = COHO__CO_RUNNING;
            return;
        }
        switch_to(s, co, next);
        return;
    }
    switch_out(co, false);
}

/* Ends the open wait of a parked or running coroutine with `result`. */
static void wait_end(coho_sched_t *s, coho__co_t *co, int result)
{
    co->wait_open = false;
    co->wake_result = result;
    if (co->state == COHO__CO_PARKED) {
        SCHED_COUNT(s->wakes);
        /* The timer of a wait with a timeout stays armed (see timer_fired). */
        make_ready(s, co);
    } else {
        co->woken = true;
    }
}

/* The timer of waits with a timeout is lazy: a wait that ends before its deadline leaves it
 * armed, and the next wait with a timeout only re-arms it when its deadline is earlier than the
 * armed one (with one timeout value throughout, never: time only moves forward). So a wait that
 * ends in time costs no timer work at all, which matters for request/response loops whose
 * deadlines almost never pass. When the timer fires, the open wait's own deadline (deadline_ns)
 * decides: passed, the wait ends with -ETIMEDOUT; later, the timer is armed again for it; no wait
 * with a deadline open, nothing. The deadline is compared with the timer's, which the driver
 * never fires early, so a wait never times out before its deadline. A finished coroutine's
 * timer is disarmed in co_main. */
static void timer_fired(coho__timer_t *t)
{
    coho__co_t *co = t->data;

    if (co->state != COHO__CO_PARKED || !co->wait_open || co->deadline_ns == UINT64_MAX)
        return;
    if (co->deadline_ns <= t->deadline_ns)
        wait_end(co->sched, co, -ETIMEDOUT);
    else
        coho__timer_start_at(co->sched->driver, t, co->deadline_ns);
}

/* ---- coroutine lifetime ------------------------------------------------------------------- */

static void keys_run_destructors(coho__co_t *co);

/* Stacks given back per decay step: a burst's surplus goes back in slices (one madvise each),
 * a millisecond apart, so no single step stalls the loop for long. */
#define STACK_DECAY_BATCH 512

/* The stack decay (coroutine/stack.h): idle stacks beyond idle_stacks_max go back to the kernel
 * once they have been idle for the decay time; the timer is armed only while there are such
 * stacks, so an idle scheduler sleeps. Its last step also trims the coroutine pool: slabs of
 * records with no live coroutine left go back as well (base_struct/pool.h). */
/* The last decay step: the burst is over. Its coroutine records go back too (the node pool's
 * empty slabs), and so do the freed descriptors of the stack slabs the decay unmapped, which
 * malloc keeps in the middle of its heap (about 48 bytes a stack: 5 MB after 10^5). */
static void decay_done(coho_sched_t *s)
{
    coho__pool_trim(s->pool);
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}

static void stack_decay_fired(coho__timer_t *t)
{
    coho_sched_t *s = t->data;
    int64_t next;

    if (s->has_spare) { /* not spare_flush: this step arms the timer again itself */
        s->has_spare = false;
        coho__stack_put(s->stacks, &s->spare);
    }
    next = coho__stack_pool_decay(s->stacks, coho__driver_now_ms(s->driver), STACK_DECAY_BATCH);

    if (next >= 0)
        coho__timer_start(s->driver, &s->stack_decay, next > 0 ? (uint64_t)next : 1, 0, 0);
    else
        decay_done(s);
}

/* Tells the tools that `co` no longer runs on its stack. */
static inline void co_stack_leave(coho__co_t *co)
{
#ifdef COHO_VALGRIND
    VALGRIND_STACK_DEREGISTER(co->vg_stack_id);
#endif
#ifdef SCHED_TSAN
    if (co->tsan_fiber != NULL)
        __tsan_destroy_fiber(co->tsan_fiber);
    co->tsan_fiber = NULL;
#endif
#ifdef SCHED_ASAN
    /* A coroutine that finished (or never finished) leaves the redzone poison of the frames it
     * had live; the next coroutine on this stack must not trip over it. */
    ASAN_UNPOISON_MEMORY_REGION(co->stack.lo, co->stack.size);
#else
    (void)co;
#endif
}

/* Returns a stack to the pool; arms the decay when the pool has idle stacks to give back. */
static void stack_put(coho_sched_t *s, coho__stack_t *st)
{
    if (coho__stack_put(s->stacks, st) && !coho__timer_is_active(&s->stack_decay))
        coho__timer_start(s->driver, &s->stack_decay, s->stack_decay_ms, 0, 0);
}

/* Gives the spare stack (co_reap) back to the pool: the scheduler goes idle, the decay runs
 * or the scheduler is destroyed. */
static void spare_flush(coho_sched_t *s)
{
    if (s->has_spare) {
        s->has_spare = false;
        stack_put(s, &s->spare);
    }
}

/* Frees what a finished or dropped coroutine holds besides its pool node. */
static void co_release_stack(coho_sched_t *s, coho__co_t *co)
{
    if (co->stack_reserved) { /* never ran */
        coho__stack_unreserve(s->stacks, co->stack_cls);
        co->stack_reserved = false;
    }
    if (!co->has_stack)
        return;
    co_stack_leave(co);
    stack_put(s, &co->stack);
    co->has_stack = false;
}

/* Reaps the stack of a coroutine that finished: kept as the spare for the next coroutine's
 * first switch-in when there is none yet (a batch of coroutines that each run to their end
 * passes one stack along without touching the pool's lists), else given back. */
static inline void co_reap_stack(coho_sched_t *s, coho__co_t *co)
{
    if (s->has_spare || !co->has_stack) {
        co_release_stack(s, co);
        return;
    }
    co_stack_leave(co);
    coho__stack_move(&co->stack, &s->spare);
    s->spare_cls = co->stack_cls;
    s->has_spare = true;
    co->has_stack = false;
}

static void co_free_extras(coho__co_t *co)
{
    coho__exit_cb_t *cb;

    while ((cb = co->exit_cbs) != NULL) {
        co->exit_cbs = cb->next;
        free(cb);
    }
    if (co->keys != NULL) {
        free(co->keys);
        co->keys = NULL;
    }
}

/* Runs the exit callbacks (LIFO; a callback may register more), then the key destructors,
 * then frees both (a callback a destructor registered is dropped unrun). */
static __attribute__((noinline, cold)) void co_exit_extras(coho__co_t *co)
{
    coho__exit_cb_t *cb;

    while ((cb = co->exit_cbs) != NULL) {
        co->exit_cbs = cb->next;
        cb->fn(cb->arg);
        free(cb);
    }
    keys_run_destructors(co);
    co_free_extras(co);
}

static void co_main(void *arg)
{
    coho__co_t *co = arg;
    coho_sched_t *s = co->sched;

    arrived(co);
    co->fn(co->arg);

    /* One test for what most coroutines never use: exit callbacks and keys. */
    if (__builtin_expect(co->exit_cbs != NULL || co->keys != NULL, 0))
        co_exit_extras(co);
    if (__builtin_expect(trace_on(), 0))
        trace_exit(co);

    if (coho__timer_is_active(&co->timer)) /* lazy: armed after the last wait (timer_fired) */
        coho__timer_stop(s->driver, &co->timer);
    co->state = COHO__CO_DONE;
    co->wait_open = false;
    s->live--;
    if (!co->daemon)
        s->user_live--;
    if (co->joiner_id != 0)
        coho__co_wake(co->joiner_id, co->joiner_token, 0);
    switch_out(co, true);
    COHO_CHECK(0, "coroutine %llu was resumed after it finished", (unsigned long long)co->id);
}

static uint64_t spawn(coho_sched_t *s, void (*fn)(void *), void *arg, const coho_spawn_opts_t *o,
                      int *err)
{
    coho__co_t *co;
    uint64_t id;
    unsigned cls;
    int rc;

    if (atomic_load_explicit(&s->stop_requested, memory_order_relaxed) || s->draining) {
        *err = -ESHUTDOWN;
        return 0;
    }
    rc = coho__stack_reserve(s->stacks, o != NULL ? o->stack_size : 0, &cls);
    if (rc < 0) {
        *err = rc;
        return 0;
    }
    id = pool_alloc_raw_fast(s->pool, (void **)&co);
    if (id == 0)
        id = coho__pool_alloc_raw(s->pool, (void **)&co, &rc);
    if (id == 0) {
        coho__stack_unreserve(s->stacks, cls);
        *err = rc == 0 ? -ENOMEM : rc;
        return 0;
    }
    /* Every field but those sched_impl.h says carry over (the record is not zeroed). */
    co->id = id;
    co->sched = s;
    co->ctx.sp = NULL;
    co->stack = (coho__stack_t){0};
    co->stack_nominal = o != NULL && o->stack_size != 0 ? o->stack_size : s->opts.stack_size;
    co->fn = fn;
    co->arg = arg;
    co->entry_name = entry_name(s, fn);
    co->daemon = false;
    co->detached = false;
    co->cancelled = false;
    co->wait_open = false;
    co->woken = false;
    co->has_stack = false;
    co->stack_reserved = true;
    co->flags = 0;
    co->stack_cls = cls;
    co->fpctl = coho__ctx_fpctl_current(); /* a new coroutine starts with its spawner's */
    co->wake_result = 0;
    co->saved_errno = 0;
    co->token = 0;
    co->joiner_id = 0;
    co->joiner_token = 0;
    co->wait_what = NULL;
    co->wait_detail = -1;
    co->wait_since_ms = 0;
    co->spawn_ns = 0;
    co->keys = NULL;
    co->exit_cbs = NULL;
    co->asan_fake_stack = NULL;
    co->tsan_fiber = NULL;
    co->vg_stack_id = 0;
    co->name[0] = '\0';
    memset(co->hook_slot, 0, sizeof(co->hook_slot));
    if (o != NULL) {
        co->daemon = o->daemon;
        co->detached = o->detached;
        if (o->name != NULL) {
            strncpy(co->name, o->name, sizeof(co->name) - 1);
            co->name[sizeof(co->name) - 1] = '\0';
        }
    }
#ifdef SCHED_TSAN
    co->tsan_fiber = __tsan_create_fiber(0);
#endif
    s->live++;
    if (!co->daemon)
        s->user_live++;
    make_ready(s, co);
    if (__builtin_expect(trace_on(), 0))
        trace_spawn(co);
    return id;
}

uint64_t coho_spawn_ex(coho_sched_t *s, void (*fn)(void *), void *arg, const coho_spawn_opts_t *o)
{
    uint64_t id;
    int err = 0;

    COHO_CHECK(s != NULL && fn != NULL, "coho_spawn: NULL scheduler or function");
    check_thread(s, "coho_spawn");
    id = spawn(s, fn, arg, o, &err);
    if (id == 0)
        errno = -err;
    return id;
}

uint64_t coho_spawn(coho_sched_t *s, void (*fn)(void *), void *arg)
{
    return coho_spawn_ex(s, fn, arg, NULL);
}

void coho_spawn_opts_init(coho_spawn_opts_t *o)
{
    memset(o, 0, sizeof(*o));
}

/* ---- create / run / stop / destroy -------------------------------------------------------- */

void coho_sched_opts_init(coho_sched_opts_t *o)
{
    coho__stack_pool_opts_t so;

    memset(o, 0, sizeof(*o));
    coho__stack_pool_opts_init(&so);
    o->stack_size = so.stack_size;
    o->guarded_stacks_max = so.guarded_max;
    o->guard_size = so.guard_size;
    o->idle_stacks_max = so.idle_keep;
    o->max_coroutines = 0;
    o->dump_on_sigusr2 = false;
    o->backend = COHO_BACKEND_DEFAULT;
}

coho_backend_t coho_sched_backend(const coho_sched_t *s)
{
    return (coho_backend_t)coho__driver_backend(s->driver);
}

#define DESTROY_CBS_MAX 8
static void (*_Atomic destroy_cbs[DESTROY_CBS_MAX])(coho_sched_t *s);

int coho__sched_on_destroy(void (*fn)(coho_sched_t *s))
{
    size_t i;

    for (i = 0; i < DESTROY_CBS_MAX; i++) {
        void (*expected)(coho_sched_t *) = NULL;

        if (atomic_load(&destroy_cbs[i]) == fn)
            return 0;
        if (atomic_compare_exchange_strong(&destroy_cbs[i], &expected, fn))
            return 0;
        if (expected == fn)
            return 0;
    }
    return -ENOSPC;
}

static void dump_signal_cb(int signo, void *arg)
{
    (void)signo;
    coho_sched_dump(arg);
}

coho_sched_t *coho_sched_create(const coho_sched_opts_t *o)
{
    coho__stack_pool_opts_t so;
    coho_sched_opts_t defaults;
    coho_sched_t *s;
    int rc;

    if (tls_sched != NULL) {
        errno = EBUSY;
        return NULL;
    }
    if (o == NULL) {
        coho_sched_opts_init(&defaults);
        o = &defaults;
    }
    if (o->stack_size == 0) {
        errno = EINVAL;
        return NULL;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    s->opts = *o;
    s->thread = pthread_self();
    s->tid = current_tid();
    s->errno_loc = &errno;
    coho_list_init(&s->ready);
    atomic_init(&s->stop_requested, false);

    coho__stack_pool_opts_init(&so);
    so.stack_size = o->stack_size;
    so.guarded_max = o->guarded_stacks_max;
    so.idle_keep = o->idle_stacks_max;
    if (o->guard_size != 0)
        so.guard_size = o->guard_size;
    s->stacks = coho__stack_pool_create(&so);
    if (s->stacks == NULL) {
        rc = -errno;
        goto fail_stacks;
    }
    s->pool = coho__pool_create(sizeof(coho__co_t), 0, o->max_coroutines);
    if (s->pool == NULL) {
        rc = -errno;
        goto fail_pool;
    }
    coho__driver_opts_t dopts;

    coho__driver_opts_init(&dopts);
    dopts.backend = (int)o->backend;
    s->driver = coho__driver_create(&dopts);
    if (s->driver == NULL) {
        rc = -errno;
        goto fail_driver;
    }
    s->stack_decay_ms = so.decay_ms;
    s->poll_budget = SCHED_CLOCK_EVERY; /* both carry over from one run() to the next */
    s->budget_start = SCHED_CLOCK_EVERY;
    s->last_poll_ns = coho__mono_ns();
    coho__timer_init(&s->stack_decay, stack_decay_fired, s);
    coho__stack_pool_set_now(s->stacks, coho__driver_now_ms(s->driver));
    rc = coho__overflow_install(s);
    if (rc < 0)
        goto fail_overflow;
    if (o->dump_on_sigusr2) {
        rc = coho__driver_signal_start(s->driver, SIGUSR2, dump_signal_cb, s);
        if (rc < 0)
            goto fail_signal;
        s->dump_signal = true;
    }
    if (!atomic_exchange(&provider_registered, true))
        coho__log_set_id_provider(coho__co_self_id);
    tls_sched = s;
    coho__debug_register(s);
    return s;

fail_signal:
    coho__overflow_uninstall(s);
fail_overflow:
    coho__driver_destroy(s->driver);
fail_driver:
    coho__pool_destroy(s->pool);
fail_pool:
    coho__stack_pool_destroy(s->stacks);
fail_stacks:
    free(s);
    errno = rc == 0 ? ENOMEM : -rc;
    return NULL;
}

static void cancel_one(uint64_t id, void *node, void *arg)
{
    coho__co_t *co = node;
    bool all = *(bool *)arg;

    (void)id;
    if (co->state == COHO__CO_DONE || (!all && !co->daemon))
        return;
    co->cancelled = true;
    if (co->state == COHO__CO_PARKED && co->wait_open)
        wait_end(co->sched, co, -ECANCELED);
}

static __attribute__((noinline, cold, noreturn)) void canary_breached(const coho__co_t *co)
{
    char what[256];

    coho__overflow_format(what, sizeof(what), co);
    coho__check_fail(__FILE__, __LINE__,
                     "%s: the canary at the stack limit %p was overwritten (unguarded stack)", what,
                     co->stack.lo);
}

/* Runs ready coroutines until the queue is empty or a poll is due (see may_resume; resumes are
 * counted here, in co_leave and in coho_yield). Each return to this stack is from the coroutine in
 * s->left: its canary is checked here, and a finished one's stack released (it could not be while
 * the coroutine ran on it). Returns early when no user coroutine is left or a stop was asked. */
static void run_ready(coho_sched_t *s)
{
    while (s->ready_count > 0 && may_resume(s)) {
        coho__co_t *co;

        switch_in(s, ready_pop(s));
        co = s->left;
        if (!co->stack.guarded && !coho__stack_canary_is_intact(&co->stack))
            canary_breached(co);
        if (co->state == COHO__CO_DONE) {
            co_reap_stack(s, co);
            if (co->detached && !pool_free_node_fast(s->pool, co, co->id))
                coho__pool_free(s->pool, co->id);
            if (s->user_live == 0 && !s->draining)
                return;
        }
        if (atomic_load_explicit(&s->stop_requested, memory_order_relaxed))
            return;
    }
}

int coho_sched_run(coho_sched_t *s)
{
    int saved_errno;
    int rc = 0;

    check_thread(s, "coho_sched_run");
    /* A successful run leaves errno as it was, as libc calls do; the thread is the scheduler's
     * (checked above), so its errno is at the address cached at create. */
    saved_errno = *s->errno_loc;
    COHO_CHECK(!s->running && tls_co == NULL,
               "coho_sched_run: scheduler %p is already running (nested run)", (void *)s);
    s->running = true;
#ifdef SCHED_TSAN
    s->tsan_fiber = __tsan_get_current_fiber();
#endif
    for (;;) {
        bool stop;

        if (s->ready_count > 0)
            run_ready(s);
        stop = atomic_load_explicit(&s->stop_requested, memory_order_acquire);
        if (!s->draining && (s->user_live == 0 || stop)) {
            bool all = stop;

            s->draining = true;
            if (s->live > 0) /* a walk over every pool slot: only when there is something */
                coho__pool_for_each(s->pool, cancel_one, &all);
        }
        if (s->draining && s->live == 0)
            break;
        if (s->ready_count == 0)
            spare_flush(s); /* idle: the pool's decay owns every free stack */
        rc = coho__driver_run_once(s->driver, s->ready_count > 0 ? 0 : -1);
        SCHED_COUNT(s->polls);
        budget_restart(s);
        s->last_poll_ns = coho__mono_ns();
        coho__stack_pool_set_now(s->stacks, coho__driver_now_ms(s->driver));
        if (rc < 0 && rc != -EINTR)
            break;
        rc = 0;
    }
    s->draining = false;
    s->running = false;
    if (rc < 0)
        return (int)coho__posix_ret(rc);
    *s->errno_loc = saved_errno;
    return 0;
}

void coho_sched_stop(coho_sched_t *s)
{
    if (s == NULL)
        return;
    atomic_store_explicit(&s->stop_requested, true, memory_order_release);
    /* The loop may be asleep in epoll_wait, or about to enter it: a handler on the scheduler's
     * own thread may have run between the loop's check of the flag and the wait. A write to
     * the driver's eventfd wakes it in every case and takes no lock, so this is
     * async-signal-safe (a post would take the queue's lock, which the interrupted thread may
     * hold). */
    coho__driver_wake(s->driver);
}

static void drop_one(uint64_t id, void *node, void *arg)
{
    coho__co_t *co = node;
    coho_sched_t *s = arg;

    (void)id;
    if (coho__timer_is_active(&co->timer))
        coho__timer_stop(s->driver, &co->timer);
    co_release_stack(s, co);
    co_free_extras(co);
}

void coho_sched_destroy(coho_sched_t *s)
{
    size_t i;

    if (s == NULL)
        return;
    check_thread(s, "coho_sched_destroy");
    COHO_CHECK(!s->running, "coho_sched_destroy: scheduler %p is running", (void *)s);
    coho__debug_unregister(s);
    for (i = 0; i < DESTROY_CBS_MAX; i++) {
        void (*fn)(coho_sched_t *) = atomic_load(&destroy_cbs[i]);

        if (fn != NULL)
            fn(s);
    }
    coho__pool_for_each(s->pool, drop_one, s);
    spare_flush(s);
    if (coho__timer_is_active(&s->stack_decay))
        coho__timer_stop(s->driver, &s->stack_decay);
    if (s->dump_signal)
        coho__driver_signal_stop(s->driver, SIGUSR2);
    coho__driver_destroy(s->driver);
    coho__pool_destroy(s->pool);
    coho__stack_pool_destroy(s->stacks);
    coho__overflow_uninstall(s);
    tls_sched = NULL;
    free(s);
}

int coho_sched_post(coho_sched_t *s, void (*fn)(void *), void *arg)
{
    int rc = coho__sched_post(s, fn, arg);

    return (int)coho__posix_ret(rc);
}

int coho__sched_post(coho_sched_t *s, void (*fn)(void *), void *arg)
{
    if (s == NULL || fn == NULL)
        return -EINVAL;
    return coho__driver_post(s->driver, fn, arg);
}

/* ---- internal API (coroutine/internal.h) --------------------------------------------------- */

coho_sched_t *coho__sched_current(void)
{
    return tls_sched;
}

coho__driver_t *coho__sched_driver(coho_sched_t *s)
{
    return s->driver;
}

uint64_t coho__co_self_id(void)
{
    return tls_co_id;
}

coho__co_t *coho__co_current(void)
{
    return tls_co;
}

uint32_t *coho__co_flags(void)
{
    return tls_co != NULL ? &tls_co->flags : NULL;
}

uint64_t coho__co_block_prepare(void)
{
    coho__co_t *co = tls_co;

    if (co == NULL)
        return 0;
    co->token = ++co->token_seq;
    co->wait_open = true;
    co->woken = false;
    co->wait_what = NULL;
    co->wait_detail = -1;
    return co->token;
}

void coho__co_wait_note(const char *what, int64_t detail)
{
    coho__co_t *co = tls_co;

    if (co != NULL) {
        co->wait_what = what;
        co->wait_detail = detail;
    }
}

/* The deadline of coho__co_block's `timeout_ms` (< 0: none, UINT64_MAX) from a fresh clock
 * reading, as coho__timer_start takes: never a deadline early. */
static uint64_t deadline_after_ms(int64_t timeout_ms)
{
    uint64_t now;

    if (timeout_ms < 0)
        return UINT64_MAX;
    now = coho__mono_ns();
    if ((uint64_t)timeout_ms < (UINT64_MAX - 1 - now) / 1000000u)
        return now + (uint64_t)timeout_ms * 1000000u;
    return UINT64_MAX - 1; /* saturated: far enough */
}

/* coho__co_block and coho__co_block_until: the deadline is `deadline`, or when `timeout_ms` is
 * not -2 the one it gives, read only once the wait really parks. */
static inline __attribute__((always_inline)) int co_block(uint64_t deadline, int64_t timeout_ms)
{
    coho__co_t *co = tls_co;
    coho_sched_t *s;
    int rc;

    if (co == NULL)
        return -EPERM;
    s = co->sched;
    if (co->woken) {
        co->woken = false;
        return co->wake_result;
    }
    COHO_CHECK(co->wait_open, "coroutine %llu: coho__co_block without coho__co_block_prepare",
               (unsigned long long)co->id);
    if (co->cancelled) {
        co->wait_open = false;
        return -ECANCELED;
    }
    if (timeout_ms != -2)
        deadline = deadline_after_ms(timeout_ms);
    co->deadline_ns = deadline;
    if (deadline != UINT64_MAX) {
        if (co->timer.cb == NULL)
            coho__timer_init(&co->timer, timer_fired, co);
        if (coho__timer_is_active(&co->timer) && co->timer.deadline_ns > deadline)
            coho__timer_stop(s->driver, &co->timer); /* armed for later: re-armed below */
        if (!coho__timer_is_active(&co->timer)) {
            rc = coho__timer_start_at(s->driver, &co->timer, deadline);
            if (rc < 0) {
                co->wait_open = false;
                return rc;
            }
        }
    }
    co->state = COHO__CO_PARKED;
    co->wait_since_ms = coho__driver_now_ms(s->driver);
    SCHED_COUNT(s->parks[park_reason(co->wait_what)]);
    if (__builtin_expect(coho__log_is_on(COHO_LOG_TRACE), 0)) {
        /* a pair of lines per park, decided once: a level changed while parked never leaves a
         * park line without its wake line */
        trace_park(co);
        co_leave(s, co);
        trace_wake(co);
    } else {
        co_leave(s, co);
    }
    co->woken = false;
    co->wait_what = NULL;
    return co->wake_result;
}

int coho__co_block(int64_t timeout_ms)
{
    return co_block(UINT64_MAX, timeout_ms < 0 ? -1 : timeout_ms);
}

int coho__co_block_until(uint64_t deadline_ns)
{
    return co_block(deadline_ns, -2);
}

int coho__co_wake(uint64_t co_id, uint64_t token, int result)
{
    coho_sched_t *s = tls_sched;
    coho__co_t *co;

    COHO_CHECK(s != NULL, "coho__co_wake(%llu) from a thread without a scheduler",
               (unsigned long long)co_id);
    co = co_lookup(s, co_id);
    if (co == NULL)
        return -ESRCH;
    if (!co->wait_open || co->token != token || token == 0)
        return -ESTALE;
    wait_end(s, co, result);
    return 0;
}

/* ---- public coroutine calls ------------------------------------------------------------------ */

coho_sched_t *coho_sched_current(void)
{
    return tls_sched;
}

uint64_t coho_self(void)
{
    return tls_co_id;
}

void coho_yield(void)
{
    coho__co_t *co = tls_co;
    coho_sched_t *s;

    if (co == NULL)
        return;
    s = co->sched;
    if (may_resume(s)) {
        coho__co_t *next;

        if (s->ready_count == 0)
            return; /* nothing else is ready and no poll is due: carry on */
        next = ready_pop(s);
        make_ready(s, co);
#if !defined(SCHED_ASAN) && !defined(SCHED_TSAN)
        /* Nothing runs on this stack after the switch (errno and the rest are handed over in
         * switch_to_prepare), so the compiler makes it a tail call: `co` resumes straight in
         * its caller, and no return-stack entry is left behind for the next return of the
         * coroutine resumed now to mispredict on (about 5 ns a yield on the bench machine). */
        switch_to_prepare(s, co, next);
        coho__ctx_switch(&co->ctx, &next->ctx);
#else
        /* ASan's fiber switch must be finished after the arrival, TSan's made in the frame
         * that jumps (switch_to). */
        switch_to(s, co, next);
#endif
        return;
    }
    make_ready(s, co);
    switch_out(co, false);
}

int coho_sleep_ns(uint64_t ns)
{
    uint64_t now;
    int rc;

    if (tls_co == NULL)
        return (int)coho__posix_ret(-EPERM);
    now = coho__mono_ns();
    coho__co_block_prepare();
    coho__co_wait_note("sleep", -1);
    /* Past 2^64 ns a sleep is a wait for cancellation, as coho_sleep_ms's beyond 2^52 ms. */
    rc = coho__co_block_until(ns < UINT64_MAX - 1 - now ? now + ns : UINT64_MAX);
    if (rc == -ETIMEDOUT || rc == 0)
        return 0;
    return (int)coho__posix_ret(rc);
}

int coho_sleep_ms(uint64_t ms)
{
    int rc;

    if (tls_co == NULL)
        return (int)coho__posix_ret(-EPERM);
    coho__co_block_prepare();
    coho__co_wait_note("sleep", -1);
    /* Beyond 2^52 ms (140,000 years) a sleep is a wait for cancellation: no timer deadline
     * arithmetic can overflow then. */
    rc = coho__co_block(ms >= (UINT64_C(1) << 52) ? -1 : (int64_t)ms);
    if (rc == -ETIMEDOUT || rc == 0)
        return 0;
    return (int)coho__posix_ret(rc);
}

int coho_join(uint64_t id, int64_t timeout_ms)
{
    coho__co_t *self = tls_co;
    coho__co_t *co;
    coho_sched_t *s;
    int rc;

    if (self == NULL)
        return (int)coho__posix_ret(-EPERM);
    if (id == self->id)
        return (int)coho__posix_ret(-EDEADLK);
    s = self->sched;
    co = co_lookup(s, id);
    if (co == NULL)
        return (int)coho__posix_ret(-ESRCH);
    if (co->detached || co->joiner_id != 0)
        return (int)coho__posix_ret(-EINVAL);
    if (co->state != COHO__CO_DONE) {
        if (timeout_ms == 0)
            return (int)coho__posix_ret(-ETIMEDOUT);
        co->joiner_token = coho__co_block_prepare();
        co->joiner_id = self->id;
        coho__co_wait_note("join", (int64_t)id);
        rc = coho__co_block(timeout_ms < 0 ? -1 : timeout_ms);
        /* The pool never moves nodes and `co` is not reaped while it has a joiner. */
        co->joiner_id = 0;
        co->joiner_token = 0;
        if (co->state != COHO__CO_DONE)
            return (int)coho__posix_ret(rc < 0 ? rc : -EINTR);
    }
    coho__pool_free(s->pool, id);
    return 0;
}

int coho_detach(uint64_t id)
{
    coho_sched_t *s = sched_here();
    coho__co_t *co;

    if (s == NULL)
        return (int)coho__posix_ret(-ESRCH);
    co = id == 0 ? tls_co : co_lookup(s, id);
    if (co == NULL)
        return (int)coho__posix_ret(-ESRCH);
    if (co->detached || co->joiner_id != 0)
        return (int)coho__posix_ret(-EINVAL);
    co->detached = true;
    if (co->state == COHO__CO_DONE)
        coho__pool_free(s->pool, co->id);
    return 0;
}

/* The coroutine `id` (0: the caller) on this thread's scheduler, or NULL. */
static coho__co_t *co_find(uint64_t id)
{
    coho_sched_t *s = sched_here();

    if (id == 0)
        return tls_co;
    return s == NULL ? NULL : co_lookup(s, id);
}

int coho_set_name(uint64_t id, const char *name)
{
    coho__co_t *co = co_find(id);

    if (co == NULL)
        return (int)coho__posix_ret(-ESRCH);
    memset(co->name, 0, sizeof(co->name));
    if (name != NULL)
        strncpy(co->name, name, sizeof(co->name) - 1);
    return 0;
}

int coho_get_name(uint64_t id, char *buf, size_t len)
{
    coho__co_t *co;
    size_t n;

    if (buf == NULL || len == 0)
        return (int)coho__posix_ret(-EINVAL);
    co = co_find(id);
    if (co == NULL)
        return (int)coho__posix_ret(-ESRCH);
    n = strnlen(co->name, sizeof(co->name));
    if (n >= len)
        n = len - 1;
    memcpy(buf, co->name, n);
    buf[n] = '\0';
    return 0;
}

int coho_set_daemon(uint64_t id, bool daemon)
{
    coho__co_t *co = co_find(id);

    if (co == NULL || co->state == COHO__CO_DONE)
        return (int)coho__posix_ret(-ESRCH);
    if (co->daemon != daemon) {
        co->daemon = daemon;
        if (daemon)
            co->sched->user_live--;
        else
            co->sched->user_live++;
    }
    return 0;
}

int coho_cancel(uint64_t id)
{
    coho__co_t *co = co_find(id);

    if (co == NULL)
        return (int)coho__posix_ret(-ESRCH);
    if (co->state == COHO__CO_DONE)
        return 0;
    co->cancelled = true;
    if (co->state == COHO__CO_PARKED && co->wait_open)
        wait_end(co->sched, co, -ECANCELED);
    return 0;
}

bool coho_is_cancelled(void)
{
    return tls_co != NULL && tls_co->cancelled;
}

int coho_at_exit(void (*fn)(void *), void *arg)
{
    coho__co_t *co = tls_co;
    coho__exit_cb_t *cb;

    if (co == NULL)
        return (int)coho__posix_ret(-EPERM);
    if (fn == NULL)
        return (int)coho__posix_ret(-EINVAL);
    cb = malloc(sizeof(*cb));
    if (cb == NULL)
        return (int)coho__posix_ret(-ENOMEM);
    cb->fn = fn;
    cb->arg = arg;
    cb->next = co->exit_cbs;
    co->exit_cbs = cb;
    return 0;
}

/* ---- coroutine-local keys ------------------------------------------------------------------ */

/* seq is odd while the key is alive; every create and delete bumps it, so a value set under
 * a deleted key is never returned for the key that reuses the slot. */
static struct {
    _Atomic uint32_t seq;
    void (*_Atomic dtor)(void *);
} key_table[COHO_KEYS_MAX];

static inline bool key_decode(coho_key_t key, uint32_t *idx, uint32_t *seq)
{
    *idx = (uint32_t)(key & 0xffffffffu);
    *seq = (uint32_t)(key >> 32);
    return *idx < COHO_KEYS_MAX && (*seq & 1u) &&
           atomic_load_explicit(&key_table[*idx].seq, memory_order_acquire) == *seq;
}

int coho_key_create(coho_key_t *key, void (*dtor)(void *))
{
    uint32_t i;

    if (key == NULL)
        return (int)coho__posix_ret(-EINVAL);
    for (i = 0; i < COHO_KEYS_MAX; i++) {
        uint32_t seq = atomic_load(&key_table[i].seq);

        if ((seq & 1u) == 0 && atomic_compare_exchange_strong(&key_table[i].seq, &seq, seq + 1)) {
            atomic_store(&key_table[i].dtor, dtor);
            *key = (uint64_t)(seq + 1) << 32 | i;
            return 0;
        }
    }
    return (int)coho__posix_ret(-EAGAIN);
}

int coho_key_delete(coho_key_t key)
{
    uint32_t idx, seq;

    if (!key_decode(key, &idx, &seq))
        return (int)coho__posix_ret(-EINVAL);
    atomic_store(&key_table[idx].dtor, NULL);
    if (!atomic_compare_exchange_strong(&key_table[idx].seq, &seq, seq + 1))
        return (int)coho__posix_ret(-EINVAL);
    return 0;
}

int coho_key_set(coho_key_t key, void *value)
{
    coho__co_t *co = tls_co;
    uint32_t idx, seq;

    if (co == NULL)
        return (int)coho__posix_ret(-EPERM);
    if (!key_decode(key, &idx, &seq))
        return (int)coho__posix_ret(-EINVAL);
    if (co->keys == NULL) {
        if (value == NULL)
            return 0;
        co->keys = calloc(COHO_KEYS_MAX, sizeof(*co->keys));
        if (co->keys == NULL)
            return (int)coho__posix_ret(-ENOMEM);
    }
    co->keys[idx].value = value;
    co->keys[idx].seq = seq;
    return 0;
}

void *coho_key_get(coho_key_t key)
{
    coho__co_t *co = tls_co;
    uint32_t idx, seq;

    if (co == NULL || co->keys == NULL || !key_decode(key, &idx, &seq))
        return NULL;
    return co->keys[idx].seq == seq ? co->keys[idx].value : NULL;
}

static void keys_run_destructors(coho__co_t *co)
{
    int round;

    for (round = 0; round < 4 && co->keys != NULL; round++) {
        bool again = false;
        uint32_t i;

        for (i = 0; i < COHO_KEYS_MAX; i++) {
            coho__key_value_t *kv = &co->keys[i];
            void (*dtor)(void *);
            void *v = kv->value;

            if (v == NULL)
                continue;
            kv->value = NULL;
            if (kv->seq != atomic_load(&key_table[i].seq))
                continue;
            dtor = atomic_load(&key_table[i].dtor);
            if (dtor != NULL) {
                dtor(v);
                again = true;
            }
        }
        if (!again)
            break;
    }
}
