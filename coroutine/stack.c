/* SPDX-License-Identifier: MIT */
/* Coroutine stacks: slabs of guarded or canary-protected stacks, free lists of hot (resident)
 * and cold stacks, time-based decay of idle stacks past the watermark (MADV_DONTNEED, and
 * munmap of slabs left with no resident stack), the mincore high-water mark, and the
 * process-wide guard registry read by the SIGSEGV handler. Stack map: README.md. */
#include "coroutine/stack.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base_struct/list.h"
#include "log/check.h"

#define STACK_DEFAULT_SIZE ((size_t)128 << 10)
#if defined(COHO_SANITIZE_BUILD)
#    define STACK_DEFAULT_FACTOR 4 /* sanitizer frames are several times larger */
#else
#    define STACK_DEFAULT_FACTOR 1
#endif
#define STACK_SIZE_MAX    ((size_t)1 << 30)  /* per stack, usable bytes */
#define GUARD_SIZE_MAX    ((size_t)64 << 20) /* per guard */
#define CANARY_SIZE       16                 /* two words just below lo */
#define CANARY_MAGIC      0x636f686f53544b21ull
#define SLAB_BUDGET_FIRST ((size_t)256 << 10) /* first slab of a size class, bytes */
#define SLAB_BUDGET_MAX   ((size_t)64 << 20)  /* later slabs double up to this */
#define SLAB_STACKS_MAX   4096u
#define REGISTRY_MAX      16384u /* guarded slabs of the whole process */

enum slot_state { SLOT_LIVE, SLOT_HOT, SLOT_COLD };

typedef struct slab slab_t;
typedef struct size_class size_class_t;

/* One stack of a slab; coho__stack_t.internal_ points here. */
typedef struct slot {
    coho_list_t link; /* in its class's hot or cold list while free */
    slab_t *slab;
    const coho__stack_t *_Atomic live; /* the descriptor handed out; NULL while free */
    uint64_t idle_since_ms;            /* the pool's clock when it was put back (hot) */
    unsigned index;
    unsigned char state;
    bool guard_set; /* guarded slab: the guard below this slot is PROT_NONE (set at first take) */
    bool drop_pending; /* made cold by the decay step running now; memory not given back yet */
} slot_t;

/*
 * A slab is one mapping. Guarded (guard > 0), n slots of stride = guard + usable:
 *
 *   base                                                         base + n * stride
 *   | guard | stack 0 ... top | guard | stack 1 ... top | ... |
 *           ^lo                       ^lo
 *
 * Unguarded (guard == 0), n slots of stride = nominal + page, usable = stride - CANARY_SIZE,
 * laid out so that the canary of slot i shares a page with the top of slot i-1
 * (P_i = base + i * stride):
 *
 *   P_i                     P_i + page                    P_{i+1}              P_{i+1} + page
 *   | top of slot i-1 |canary i| stack i (private pages) ...| top of stack i |canary i+1| ...
 *                              ^lo                                          ^top (= canary i+1)
 *
 * The mapping is n * stride + one page (the page holding the last slot's top). A live slot
 * dirties its top page, which also holds the canary above it, so a canary costs no extra
 * resident page when neighbours are in use.
 */
struct slab {
    coho_list_t link; /* in the pool's slab list */
    coho__stack_pool_t *pool;
    unsigned char *base;
    size_t map_size;
    size_t stride;
    size_t guard; /* 0: unguarded */
    size_t usable;
    unsigned cls; /* index of its size class in the pool */
    unsigned count;
    unsigned cold;          /* slots in SLOT_COLD: all of them -> the decay unmaps the slab */
    int reg;                /* index in the guard registry, -1 if none */
    coho_list_t decay_link; /* in the decay step's list of slabs with drops pending */
    bool decay_pending;
    slot_t slots[];
};

struct size_class {
    size_t nominal;    /* requested size rounded to pages: the key */
    coho_list_t hot;   /* resident free slots, most recently put first (oldest at the back) */
    coho_list_t cold;  /* free slots whose memory was given back (or never touched) */
    unsigned slabs;    /* slabs made so far (sets the next slab's size) */
    unsigned nfree;    /* free slots, hot and cold */
    unsigned reserved; /* of those, promised to coho__stack_reserve's callers */
};

struct coho__stack_pool {
    coho__stack_pool_opts_t o; /* rounded */
    size_class_t *classes;
    unsigned nclasses, cap_classes;
    coho_list_t slabs;
    unsigned guarded;    /* guarded slots mapped (live or free) */
    unsigned idle_hot;   /* free slots kept resident */
    unsigned idle_limit; /* idle slots the decay leaves alone for good (idle_limit()) */
    unsigned live;
    uint64_t now_ms;       /* coho__stack_pool_set_now: stamps the slots put back */
    size_t last_size;      /* the size of the last coho__stack_get (0: none yet) ... */
    unsigned last_cls;     /* ... and the index of its class */
    uint64_t slabs_mapped; /* slabs mapped so far (coho__stack_pool_slabs_mapped) */
    uint64_t guards_set;   /* guard pages set so far (coho__stack_pool_guards_set) */
};

/* The guard registry: published slabs, read without locks by coho__stack_find_guard (in a
 * signal handler). A slab's geometry is written before its pointer is stored (release) and
 * never changes while the pointer is published. */
static slab_t *_Atomic registry[REGISTRY_MAX];
static _Atomic unsigned registry_top;

static size_t page_size(void)
{
    static _Atomic size_t page; /* every thread computes the same value: relaxed is enough */
    size_t pg = atomic_load_explicit(&page, memory_order_relaxed);

    if (pg == 0) {
        pg = (size_t)sysconf(_SC_PAGESIZE);
        atomic_store_explicit(&page, pg, memory_order_relaxed);
    }
    return pg;
}

static size_t round_page(size_t n)
{
    size_t pg = page_size();
    return (n + pg - 1) & ~(pg - 1);
}

void coho__stack_pool_opts_init(coho__stack_pool_opts_t *o)
{
    o->stack_size = STACK_DEFAULT_SIZE * STACK_DEFAULT_FACTOR;
    o->guard_size = page_size();
    o->guarded_max = 8192;
    o->idle_keep = 64;
    o->decay_ms = 1000;
    o->keep_decay_ms = 3000;
}

coho__stack_pool_t *coho__stack_pool_create(const coho__stack_pool_opts_t *o)
{
    coho__stack_pool_opts_t d;
    coho__stack_pool_t *p;

    if (o == NULL) {
        coho__stack_pool_opts_init(&d);
        o = &d;
    }
    if (o->stack_size == 0 || o->stack_size > STACK_SIZE_MAX || o->guard_size > GUARD_SIZE_MAX) {
        errno = EINVAL;
        return NULL;
    }
    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    p->o = *o;
    p->o.stack_size = round_page(o->stack_size);
    p->o.guard_size = o->guard_size == 0 ? page_size() : round_page(o->guard_size);
    if (p->o.keep_decay_ms != 0 && p->o.keep_decay_ms < p->o.decay_ms)
        p->o.keep_decay_ms = p->o.decay_ms; /* the budget never decays before the surplus */
    p->idle_limit = p->o.keep_decay_ms != 0 && p->o.decay_ms != 0 ? 0 : p->o.idle_keep;
    coho_list_init(&p->slabs);
    return p;
}

static void registry_add(slab_t *s)
{
    unsigned top = atomic_load_explicit(&registry_top, memory_order_acquire);

    s->reg = -1;
    for (unsigned i = 0; i < top; i++) {
        slab_t *expect = NULL;
        if (atomic_compare_exchange_strong_explicit(&registry[i], &expect, s, memory_order_release,
                                                    memory_order_relaxed)) {
            s->reg = (int)i;
            return;
        }
    }
    for (;;) {
        unsigned i = atomic_fetch_add_explicit(&registry_top, 1, memory_order_acq_rel);
        slab_t *expect = NULL;
        if (i >= REGISTRY_MAX) {
            /* Full: the guard still faults, the overflow report just cannot name the stack. */
            atomic_fetch_sub_explicit(&registry_top, 1, memory_order_relaxed);
            return;
        }
        if (atomic_compare_exchange_strong_explicit(&registry[i], &expect, s, memory_order_release,
                                                    memory_order_relaxed)) {
            s->reg = (int)i;
            return;
        }
    }
}

static void registry_del(slab_t *s)
{
    if (s->reg >= 0)
        atomic_store_explicit(&registry[s->reg], NULL, memory_order_release);
    s->reg = -1;
}

static unsigned char *slot_lo(const slab_t *s, unsigned i)
{
    return s->guard != 0 ? s->base + (size_t)i * s->stride + s->guard
                         : s->base + (size_t)i * s->stride + page_size();
}

static void canary_write(const slab_t *s, unsigned i)
{
    uint64_t *w = (uint64_t *)(void *)(slot_lo(s, i) - CANARY_SIZE);

    w[0] = CANARY_MAGIC ^ (uint64_t)(uintptr_t)&w[0];
    w[1] = CANARY_MAGIC ^ (uint64_t)(uintptr_t)&w[1];
}

/* Maps a slab for `cls`; guarded when the pool's guarded budget allows. Its slots go to the back
 * of the class's free list, lowest address first (then neighbouring tops and canaries share
 * pages as stacks are taken in order). */
static int slab_create(coho__stack_pool_t *p, size_class_t *cls)
{
    size_t pg = page_size();
    size_t budget = cls->slabs >= 8 ? SLAB_BUDGET_MAX : SLAB_BUDGET_FIRST << cls->slabs;
    unsigned guard_left = p->o.guarded_max > p->guarded ? p->o.guarded_max - p->guarded : 0;
    size_t guard = guard_left > 0 ? p->o.guard_size : 0;
    size_t stride = guard != 0 ? guard + cls->nominal : cls->nominal + pg;
    size_t n, map_size;
    unsigned char *base;
    slab_t *s;

    if (budget > SLAB_BUDGET_MAX)
        budget = SLAB_BUDGET_MAX;
    n = budget / stride;
    if (n == 0)
        n = 1;
    if (n > SLAB_STACKS_MAX)
        n = SLAB_STACKS_MAX;
    if (guard != 0 && n > guard_left)
        n = guard_left;
    map_size = n * stride + (guard != 0 ? 0 : pg);

    s = calloc(1, sizeof(*s) + n * sizeof(slot_t));
    if (s == NULL)
        return -ENOMEM;
    base = mmap(NULL, map_size, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (base == MAP_FAILED) {
        free(s);
        return -ENOMEM;
    }
    /* The guards are set when each slot is first taken (slot_guard), not here: a burst of
     * spawns maps slabs for all its promises, while the coroutines often run one after another
     * on a few warm stacks and never touch the rest. */
    s->pool = p;
    s->base = base;
    s->map_size = map_size;
    s->stride = stride;
    s->guard = guard;
    s->usable = guard != 0 ? cls->nominal : stride - CANARY_SIZE;
    s->cls = (unsigned)(cls - p->classes);
    s->count = (unsigned)n;
    s->cold = (unsigned)n;
    s->reg = -1;
    for (unsigned i = 0; i < s->count; i++) {
        s->slots[i].slab = s;
        s->slots[i].index = i;
        s->slots[i].state = SLOT_COLD;
        atomic_init(&s->slots[i].live, NULL);
        coho_list_push_back(&cls->cold, &s->slots[i].link);
    }
    if (guard != 0) {
        p->guarded += s->count;
        registry_add(s);
    }
    coho_list_push_back(&p->slabs, &s->link);
    p->slabs_mapped++;
    cls->slabs++;
    cls->nfree += (unsigned)n;
    return 0;
}

static size_class_t *class_find(coho__stack_pool_t *p, size_t nominal)
{
    for (unsigned i = 0; i < p->nclasses; i++) {
        if (p->classes[i].nominal == nominal)
            return &p->classes[i];
    }
    if (p->nclasses == p->cap_classes) {
        unsigned cap = p->cap_classes == 0 ? 4 : p->cap_classes * 2;
        size_class_t *c = malloc(cap * sizeof(*c));
        if (c == NULL)
            return NULL;
        /* The free lists are anchored in the array: re-anchor them when it moves. */
        for (unsigned i = 0; i < p->nclasses; i++) {
            c[i] = p->classes[i];
            coho_list_init(&c[i].hot);
            coho_list_splice_back(&c[i].hot, &p->classes[i].hot);
            coho_list_init(&c[i].cold);
            coho_list_splice_back(&c[i].cold, &p->classes[i].cold);
        }
        free(p->classes);
        p->classes = c;
        p->cap_classes = cap;
    }
    size_class_t *cls = &p->classes[p->nclasses++];
    cls->nominal = nominal;
    cls->slabs = 0;
    cls->nfree = 0;
    cls->reserved = 0;
    coho_list_init(&cls->hot);
    coho_list_init(&cls->cold);
    return cls;
}

/* The class of `size` (0: the pool's default), or NULL with *rc set. */
static inline size_class_t *class_of(coho__stack_pool_t *p, size_t size, int *rc)
{
    size_class_t *cls;

    if (size == 0)
        size = p->o.stack_size;
    if (size == p->last_size)
        return &p->classes[p->last_cls]; /* the usual case: every coroutine of one size */
    if (size > STACK_SIZE_MAX) {
        *rc = -EINVAL;
        return NULL;
    }
    cls = class_find(p, round_page(size));
    if (cls == NULL) {
        *rc = -ENOMEM;
        return NULL;
    }
    p->last_size = size;
    p->last_cls = (unsigned)(cls - p->classes);
    return cls;
}

/* Sets the guard of a guarded slab's slot at its first take (slab_create). Where the kernel
 * refuses (out of maps: vm.max_map_count), the slot goes without, as a stack of an unguarded
 * slab does: a canary just below lo (in the guard's page), checked at every switch-out; the
 * next take tries the guard again. */
static __attribute__((noinline)) void slot_guard(slab_t *s, slot_t *slot)
{
    if (mprotect(s->base + (size_t)slot->index * s->stride, s->guard, PROT_NONE) == 0) {
        slot->guard_set = true;
        s->pool->guards_set++;
    } else
        canary_write(s, slot->index);
}

/* Takes a free slot of `cls` (there is one): the most recently put back hot one, else a cold
 * one. */
static inline void slot_take(coho__stack_pool_t *p, size_class_t *cls, coho__stack_t *out)
{
    slot_t *slot;
    slab_t *s;

    if (!coho_list_is_empty(&cls->hot)) {
        slot = coho_list_entry(coho_list_pop_front(&cls->hot), slot_t, link);
        p->idle_hot--;
    } else {
        slot = coho_list_entry(coho_list_pop_front(&cls->cold), slot_t, link);
        slot->slab->cold--;
    }
    cls->nfree--;
    slot->state = SLOT_LIVE;
    s = slot->slab;
    if (s->guard == 0)
        canary_write(s, slot->index);
    else if (__builtin_expect(!slot->guard_set, 0))
        slot_guard(s, slot);
    out->lo = slot_lo(s, slot->index);
    out->size = s->usable;
    out->guarded = slot->guard_set;
    out->owner = NULL;
    out->internal_ = slot;
    atomic_store_explicit(&slot->live, out, memory_order_release);
    p->live++;
}

int coho__stack_get(coho__stack_pool_t *p, size_t size, coho__stack_t *out)
{
    int rc = 0;
    size_class_t *cls = class_of(p, size, &rc);

    if (cls == NULL)
        return rc;
    if (cls->nfree <= cls->reserved) {
        rc = slab_create(p, cls);
        if (rc < 0)
            return rc;
    }
    slot_take(p, cls, out);
    return 0;
}

static __attribute__((noinline)) int reserve_slow(coho__stack_pool_t *p, size_t size,
                                                  unsigned *cls_out)
{
    int rc = 0;
    size_class_t *cls = class_of(p, size, &rc);

    if (cls == NULL)
        return rc;
    if (cls->nfree <= cls->reserved) {
        rc = slab_create(p, cls);
        if (rc < 0)
            return rc;
    }
    cls->reserved++;
    *cls_out = (unsigned)(cls - p->classes);
    return 0;
}

int coho__stack_reserve(coho__stack_pool_t *p, size_t size, unsigned *cls_out)
{
    /* The usual case first, without a frame: the size of the last call, a stack to spare. */
    if (__builtin_expect((size != 0 ? size : p->o.stack_size) == p->last_size, 1)) {
        size_class_t *cls = &p->classes[p->last_cls];

        if (cls->nfree > cls->reserved) {
            cls->reserved++;
            *cls_out = p->last_cls;
            return 0;
        }
    }
    return reserve_slow(p, size, cls_out);
}

void coho__stack_unreserve(coho__stack_pool_t *p, unsigned cls)
{
    COHO_CHECK(cls < p->nclasses && p->classes[cls].reserved > 0,
               "coho__stack_unreserve: nothing reserved in class %u", cls);
    p->classes[cls].reserved--;
}

void coho__stack_get_reserved(coho__stack_pool_t *p, unsigned cls, coho__stack_t *out)
{
    size_class_t *c = &p->classes[cls]; /* coho__stack_reserve made sure a slot is free */

    c->reserved--;
    slot_take(p, c, out);
}

void coho__stack_move(coho__stack_t *from, coho__stack_t *to)
{
    slot_t *slot = from->internal_;

    *to = *from;
    from->internal_ = NULL;
    atomic_store_explicit(&slot->live, to, memory_order_release);
}

void coho__stack_move_reserved(coho__stack_pool_t *p, unsigned cls, coho__stack_t *from,
                               coho__stack_t *to)
{
    slot_t *slot = from->internal_;

    p->classes[cls].reserved--;
    *to = *from;
    from->internal_ = NULL;
    atomic_store_explicit(&slot->live, to, memory_order_release);
}

static bool slot_is_cold(const slab_t *s, long i)
{
    return i < 0 || i >= (long)s->count || s->slots[i].state == SLOT_COLD;
}

/* Gives the memory of slot i back. For an unguarded slab the page below lo (this slot's
 * canary, the top of slot i-1) and the page holding this slot's top (the canary of slot i+1)
 * are shared: each goes only when the neighbour sharing it is cold too. Canaries are written
 * again when a slot is taken. */
static void slot_drop(const slab_t *s, unsigned i)
{
    size_t pg = page_size();
    unsigned char *start, *end;

    if (s->guard != 0) {
        start = slot_lo(s, i);
        end = start + s->usable;
    } else {
        unsigned char *p_i = s->base + (size_t)i * s->stride;
        start = slot_is_cold(s, (long)i - 1) ? p_i : p_i + pg;
        end = slot_is_cold(s, (long)i + 1) ? p_i + s->stride + pg : p_i + s->stride;
    }
    madvise(start, (size_t)(end - start), MADV_DONTNEED);
}

static void slot_make_cold(size_class_t *cls, slot_t *slot)
{
    slot->state = SLOT_COLD;
    slot->slab->cold++;
    slot_drop(slot->slab, slot->index);
    coho_list_push_back(&cls->cold, &slot->link);
}

/* Idle stacks the decay leaves alone for good: idle_keep, or none when the budget decays too
 * (keep_decay_ms), the decay being off (decay_ms 0) or not. */
static inline unsigned idle_limit(const coho__stack_pool_t *p)
{
    return p->idle_limit;
}

bool coho__stack_put(coho__stack_pool_t *p, coho__stack_t *st)
{
    slot_t *slot = st->internal_;

    COHO_CHECK(slot != NULL && slot->slab->pool == p && slot->state == SLOT_LIVE,
               "coho__stack_put: stack %p is not a live stack of this pool", st->lo);
    atomic_store_explicit(&slot->live, NULL, memory_order_release);
    p->live--;
    st->internal_ = NULL;
    size_class_t *cls = &p->classes[slot->slab->cls];
    if (p->o.decay_ms == 0 && p->idle_hot >= p->o.idle_keep) {
        slot_make_cold(cls, slot); /* no decay: given back at once */
        cls->nfree++;
        return false;
    }
    slot->state = SLOT_HOT;
    slot->idle_since_ms = p->now_ms;
    p->idle_hot++;
    cls->nfree++;
    coho_list_push_front(&cls->hot, &slot->link);
    return p->idle_hot > idle_limit(p);
}

void coho__stack_pool_set_now(coho__stack_pool_t *p, uint64_t now_ms)
{
    p->now_ms = now_ms;
}

/* Unmaps a slab none of whose slots is live or resident. Its slots leave the cold list. */
static void slab_release(coho__stack_pool_t *p, slab_t *s)
{
    for (unsigned i = 0; i < s->count; i++)
        coho_list_del(&s->slots[i].link);
    registry_del(s);
    if (s->guard != 0)
        p->guarded -= s->count;
    p->classes[s->cls].nfree -= s->count;
    coho_list_del(&s->link);
    munmap(s->base, s->map_size);
    free(s);
}

/* Gives back the memory of the slots of `s` the decay step made cold, one madvise per run of
 * adjacent ones (a guarded run spans its guards, which hold no page; an unguarded run's
 * shared edge pages follow slot_drop's rule). */
static void slab_drop_pending(slab_t *s)
{
    size_t pg = page_size();
    unsigned a = 0;

    while (a < s->count) {
        unsigned b;
        unsigned char *start, *end;

        if (!s->slots[a].drop_pending) {
            a++;
            continue;
        }
        for (b = a; b + 1 < s->count && s->slots[b + 1].drop_pending; b++)
            ;
        if (s->guard != 0) {
            start = slot_lo(s, a);
            end = slot_lo(s, b) + s->usable;
        } else {
            unsigned char *p_a = s->base + (size_t)a * s->stride;
            unsigned char *p_b1 = s->base + (size_t)(b + 1) * s->stride;

            start = slot_is_cold(s, (long)a - 1) ? p_a : p_a + pg;
            end = slot_is_cold(s, (long)b + 1) ? p_b1 + pg : p_b1;
        }
        madvise(start, (size_t)(end - start), MADV_DONTNEED);
        for (; a <= b; a++)
            s->slots[a].drop_pending = false;
    }
    s->decay_pending = false;
}

int64_t coho__stack_pool_decay(coho__stack_pool_t *p, uint64_t now_ms, unsigned max)
{
    int64_t next = -1;
    unsigned done = 0;
    coho_list_t pending;

    coho_list_init(&pending);
    p->now_ms = now_ms;
    for (unsigned c = 0; c < p->nclasses && p->idle_hot > idle_limit(p); c++) {
        size_class_t *cls = &p->classes[c];

        while (p->idle_hot > idle_limit(p) && !coho_list_is_empty(&cls->hot)) {
            slot_t *slot = coho_list_entry(cls->hot.prev, slot_t, link); /* the oldest */
            /* Beyond idle_keep: decay_ms; within it (once the surplus is gone): keep_decay_ms. */
            uint64_t due = slot->idle_since_ms +
                           (p->idle_hot > p->o.idle_keep ? p->o.decay_ms : p->o.keep_decay_ms);
            slab_t *s = slot->slab;

            if (due > now_ms) {
                if (next < 0 || (int64_t)(due - now_ms) < next)
                    next = (int64_t)(due - now_ms);
                break;
            }
            if (done == max) {
                next = 0;
                goto out;
            }
            coho_list_del(&slot->link);
            p->idle_hot--;
            /* Cold now, its memory given back below, a run of neighbours at once, or with
             * the whole slab when all its slots are cold (then no madvise at all). */
            slot->state = SLOT_COLD;
            slot->drop_pending = true;
            s->cold++;
            coho_list_push_back(&cls->cold, &slot->link);
            done++;
            /* A slab whose slots are all cold is unmapped, unless its slots are needed for
             * the stacks promised to coroutines that have not run yet, or for the idle_keep
             * free stacks the class keeps mapped (their memory is given back all the same):
             * a server whose connections come and go would otherwise map a slab and set its
             * guard pages (one mprotect per stack) at every burst after a quiet second. */
            if (s->cold == s->count && cls->nfree - s->count >= cls->reserved + p->o.idle_keep) {
                if (s->decay_pending)
                    coho_list_del(&s->decay_link);
                slab_release(p, s);
            } else if (!s->decay_pending) {
                s->decay_pending = true;
                coho_list_push_back(&pending, &s->decay_link);
            }
        }
    }
    if (p->idle_hot <= idle_limit(p))
        next = -1;
out:
    while (!coho_list_is_empty(&pending))
        slab_drop_pending(coho_list_entry(coho_list_pop_front(&pending), slab_t, decay_link));
    return next;
}

void coho__stack_pool_destroy(coho__stack_pool_t *p)
{
    if (p == NULL)
        return;
    COHO_CHECK(p->live == 0, "coho__stack_pool_destroy: %u stacks still in use", p->live);
    while (!coho_list_is_empty(&p->slabs)) {
        slab_t *s = coho_list_entry(coho_list_pop_front(&p->slabs), slab_t, link);
        registry_del(s);
        munmap(s->base, s->map_size);
        free(s);
    }
    free(p->classes);
    free(p);
}

uint64_t coho__stack_pool_slabs_mapped(const coho__stack_pool_t *p)
{
    return p->slabs_mapped;
}

uint64_t coho__stack_pool_guards_set(const coho__stack_pool_t *p)
{
    return p->guards_set;
}

bool coho__stack_canary_is_intact(const coho__stack_t *st)
{
    const uint64_t *w;

    if (st->guarded)
        return true;
    w = (const uint64_t *)(const void *)((const unsigned char *)st->lo - CANARY_SIZE);
    return w[0] == (CANARY_MAGIC ^ (uint64_t)(uintptr_t)&w[0]) &&
           w[1] == (CANARY_MAGIC ^ (uint64_t)(uintptr_t)&w[1]);
}

size_t coho__stack_high_water(const coho__stack_t *st)
{
    size_t pg = page_size();
    uintptr_t lo = (uintptr_t)st->lo, top = lo + st->size;
    uintptr_t lo_page = lo & ~(uintptr_t)(pg - 1);
    uintptr_t end = (top + pg - 1) & ~(uintptr_t)(pg - 1); /* one past the top page */
    uintptr_t touched = top;                               /* lowest resident address so far */
    unsigned char vec[256];

    /* Stacks grow down: walk pages from the top until the first one never touched. */
    while (end > lo_page) {
        size_t n = (end - lo_page) / pg;
        if (n > sizeof(vec))
            n = sizeof(vec);
        uintptr_t start = end - n * pg;
        if (mincore((void *)start, n * pg, vec) != 0)
            break;
        size_t k = n;
        while (k > 0 && (vec[k - 1] & 1))
            k--;
        touched = start + k * pg;
        if (k > 0)
            break;
        end = start;
    }
    if (touched < lo)
        touched = lo;
    return top > touched ? top - touched : 0;
}

bool coho__stack_find_guard(const void *addr, const coho__stack_t **out)
{
    uintptr_t a = (uintptr_t)addr;
    unsigned top = atomic_load_explicit(&registry_top, memory_order_acquire);

    if (top > REGISTRY_MAX)
        top = REGISTRY_MAX;
    for (unsigned i = 0; i < top; i++) {
        const slab_t *s = atomic_load_explicit(&registry[i], memory_order_acquire);
        uintptr_t base;

        if (s == NULL)
            continue;
        base = (uintptr_t)s->base;
        if (a < base || a >= base + (uintptr_t)s->count * s->stride)
            continue;
        if ((a - base) % s->stride >= s->guard)
            return false; /* inside a stack, not a guard */
        const coho__stack_t *live =
            atomic_load_explicit(&s->slots[(a - base) / s->stride].live, memory_order_acquire);
        if (live == NULL)
            return false;
        if (out != NULL)
            *out = live;
        return true;
    }
    return false;
}
