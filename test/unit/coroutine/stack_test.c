/* SPDX-License-Identifier: MIT */
/* Tests of the coroutine stack pool: free-list reuse, guard pages that fault and are recognised
 * (also from a signal handler), canaries of unguarded stacks, the mincore high-water mark, the
 * guarded_max cap on kernel maps, MADV_DONTNEED of idle stacks, and bad input. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "coroutine/stack.h"
#include "test/support/cmocka_main.h"

#define KIB ((size_t)1024)

static size_t pg(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}

/* decay_ms 0: stacks beyond idle_keep are given back in the put, so a test sees it at once. */
static coho__stack_pool_t *pool_decaying(size_t size, unsigned guarded_max, unsigned idle_keep,
                                         unsigned decay_ms)
{
    coho__stack_pool_opts_t o;
    coho__stack_pool_t *p;

    coho__stack_pool_opts_init(&o);
    o.stack_size = size;
    o.guarded_max = guarded_max;
    o.idle_keep = idle_keep;
    o.decay_ms = decay_ms;
    o.keep_decay_ms = 0; /* the idle_keep stacks stay resident, unless a test says otherwise */
    p = coho__stack_pool_create(&o);
    assert_non_null(p);
    return p;
}

static coho__stack_pool_t *pool_with(size_t size, unsigned guarded_max, unsigned idle_keep)
{
    return pool_decaying(size, guarded_max, idle_keep, 0);
}

static size_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, resident = 0;

    assert_non_null(f);
    assert_int_equal(fscanf(f, "%lu %lu", &size, &resident), 2);
    fclose(f);
    return resident * pg();
}

static void touch_all(const coho__stack_t *s)
{
    memset(s->lo, 0x5a, s->size);
}

static void stack_pool_opts_init_fills_documented_defaults(void **state)
{
    (void)state;
    coho__stack_pool_opts_t o;

    coho__stack_pool_opts_init(&o);
#if defined(COHO_SANITIZE_BUILD)
    assert_int_equal(o.stack_size, 4 * 128 * KIB);
#else
    assert_int_equal(o.stack_size, 128 * KIB);
#endif
    assert_int_equal(o.guard_size, pg());
    assert_int_equal(o.guarded_max, 8192);
    assert_int_equal(o.idle_keep, 64);
    assert_int_equal(o.decay_ms, 1000);
    assert_int_equal(o.keep_decay_ms, 3000);
}

static void stack_get_reuses_a_returned_stack(void **state)
{
    (void)state;
    coho__stack_pool_t *p = pool_with(64 * KIB, 8, 4);
    coho__stack_t a, b;

    assert_int_equal(coho__stack_get(p, 0, &a), 0);
    assert_true(a.guarded);
    assert_true(a.size >= 64 * KIB);
    assert_int_equal((uintptr_t)a.lo % 16, 0);
    void *lo = a.lo;
    coho__stack_put(p, &a);
    assert_int_equal(coho__stack_get(p, 0, &b), 0);
    assert_ptr_equal(b.lo, lo);
    coho__stack_put(p, &b);
    coho__stack_pool_destroy(p);
}

static void stack_get_reuses_a_stack_given_back_with_dontneed(void **state)
{
    (void)state;
    /* unguarded, nothing kept resident; 256 KiB makes the first slab hold this one stack */
    coho__stack_pool_t *p = pool_with(256 * KIB, 0, 0);
    coho__stack_t a, b;

    assert_int_equal(coho__stack_get(p, 0, &a), 0);
    assert_false(a.guarded);
    touch_all(&a);
    void *lo = a.lo;
    coho__stack_put(p, &a);
    assert_int_equal(coho__stack_get(p, 0, &b), 0);
    assert_ptr_equal(b.lo, lo);
    assert_true(coho__stack_canary_is_intact(&b)); /* rewritten after the pages were dropped */
    assert_int_equal(((unsigned char *)b.lo)[0], 0);
    coho__stack_put(p, &b);
    coho__stack_pool_destroy(p);
}

static void stack_sizes_per_request_come_from_their_own_class(void **state)
{
    (void)state;
    coho__stack_pool_t *p = pool_with(64 * KIB, 4, 64);
    coho__stack_t s[12];
    size_t sizes[12];

    /* more sizes than the initial class array holds, with stacks parked in the free lists while
     * the array grows */
    for (int i = 0; i < 12; i++) {
        sizes[i] = (size_t)(i + 1) * 16 * KIB + 100;
        assert_int_equal(coho__stack_get(p, sizes[i], &s[i]), 0);
        assert_true(s[i].size >= sizes[i]);
        memset(s[i].lo, i, sizes[i]);
        if (i % 2 == 0)
            coho__stack_put(p, &s[i]);
    }
    for (int i = 0; i < 12; i += 2) {
        void *lo = s[i].lo;
        assert_int_equal(coho__stack_get(p, sizes[i], &s[i]), 0);
        assert_ptr_equal(s[i].lo, lo);
    }
    for (int i = 0; i < 12; i++)
        coho__stack_put(p, &s[i]);
    coho__stack_pool_destroy(p);
}

static void stack_guard_page_write_kills_with_sigsegv(void **state)
{
    (void)state;
    coho__stack_pool_t *p = pool_with(64 * KIB, 8, 4);
    coho__stack_t s;
    int status = 0;

    assert_int_equal(coho__stack_get(p, 0, &s), 0);
    assert_true(s.guarded);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        signal(SIGSEGV, SIG_DFL); /* sanitizer runtimes install their own handler */
        ((volatile unsigned char *)s.lo)[-1] = 1;
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGSEGV);
    /* the usable bottom byte is writable */
    ((volatile unsigned char *)s.lo)[0] = 1;
    coho__stack_put(p, &s);
    coho__stack_pool_destroy(p);
}

static coho__stack_t handler_stack;

static void guard_segv_handler(int sig, siginfo_t *si, void *uc)
{
    const coho__stack_t *found = NULL;

    (void)sig;
    (void)uc;
    if (coho__stack_find_guard(si->si_addr, &found) && found == &handler_stack)
        _exit(42);
    _exit(43);
}

static void stack_guard_fault_is_recognised_from_a_signal_handler(void **state)
{
    (void)state;
    coho__stack_pool_t *p = pool_with(64 * KIB, 8, 4);
    int status = 0;

    assert_int_equal(coho__stack_get(p, 0, &handler_stack), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        static unsigned char alt[64 * 1024];
        stack_t ss = {.ss_sp = alt, .ss_size = sizeof(alt), .ss_flags = 0};
        struct sigaction sa;

        memset(&sa, 0, sizeof(sa));
        sa.sa_sigaction = guard_segv_handler;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
        if (sigaltstack(&ss, NULL) != 0 || sigaction(SIGSEGV, &sa, NULL) != 0)
            _exit(44);
        ((volatile unsigned char *)handler_stack.lo)[-(long)pg() / 2] = 1;
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 42);
    coho__stack_put(p, &handler_stack);
    coho__stack_pool_destroy(p);
}

static void stack_find_guard_recognises_only_guard_addresses(void **state)
{
    (void)state;
    coho__stack_pool_opts_t o;
    coho__stack_pool_t *p;
    coho__stack_t a, b, u;
    const coho__stack_t *found = NULL;
    unsigned char *lo;

    coho__stack_pool_opts_init(&o);
    o.stack_size = 32 * KIB;
    o.guard_size = 3 * pg(); /* a configurable guard, more than one page */
    o.guarded_max = 2;
    p = coho__stack_pool_create(&o);
    assert_non_null(p);
    assert_int_equal(coho__stack_get(p, 0, &a), 0);
    assert_int_equal(coho__stack_get(p, 0, &b), 0);
    assert_int_equal(coho__stack_get(p, 0, &u), 0);
    assert_true(a.guarded && b.guarded);
    assert_false(u.guarded); /* past guarded_max */

    lo = a.lo;
    assert_true(coho__stack_find_guard(lo - 1, &found));
    assert_ptr_equal(found, &a);
    found = NULL;
    assert_true(coho__stack_find_guard(lo - 3 * pg(), &found));
    assert_ptr_equal(found, &a);
    assert_true(coho__stack_find_guard(lo - 1, NULL));
    assert_false(coho__stack_find_guard(lo, &found));
    assert_false(coho__stack_find_guard(lo + a.size - 1, &found));
    lo = b.lo;
    assert_true(coho__stack_find_guard(lo - 2 * pg(), &found));
    assert_ptr_equal(found, &b);
    assert_false(coho__stack_find_guard((unsigned char *)u.lo - 1, &found));
    assert_false(coho__stack_find_guard(&found, &found));
    assert_false(coho__stack_find_guard(NULL, &found));

    /* a returned stack's guard is no longer a live stack's guard */
    lo = a.lo;
    coho__stack_put(p, &a);
    assert_false(coho__stack_find_guard(lo - 1, &found));
    coho__stack_put(p, &b);
    coho__stack_put(p, &u);
    coho__stack_pool_destroy(p);
    assert_false(coho__stack_find_guard(lo - 1, &found)); /* unregistered with the pool */
}

static void stack_canary_breach_is_detected(void **state)
{
    (void)state;
    coho__stack_pool_t *p = pool_with(64 * KIB, 0, 4);
    coho__stack_t s, g;

    assert_int_equal(coho__stack_get(p, 0, &s), 0);
    assert_false(s.guarded);
    assert_true(coho__stack_canary_is_intact(&s));
    touch_all(&s); /* using the whole stack is fine */
    assert_true(coho__stack_canary_is_intact(&s));
    ((volatile unsigned char *)s.lo)[-3] ^= 0x10; /* one byte past the limit */
    assert_false(coho__stack_canary_is_intact(&s));
    coho__stack_put(p, &s);
    coho__stack_pool_destroy(p);

    p = pool_with(64 * KIB, 1, 4);
    assert_int_equal(coho__stack_get(p, 0, &g), 0);
    assert_true(g.guarded);
    assert_true(coho__stack_canary_is_intact(&g));
    coho__stack_put(p, &g);
    coho__stack_pool_destroy(p);
}

/* Neighbouring unguarded stacks share a page (the canary of one, the top of the other); a
 * randomized get/put/drop sequence must never break a live stack's canary or data. */
static void stack_unguarded_neighbours_survive_random_get_and_put(void **state)
{
    (void)state;
    enum { N = 48 };
    uint64_t seed = coho_test_seed(), rng = seed;
    coho__stack_pool_t *p = pool_with(16 * KIB, 0, (unsigned)(coho_test_rand(&rng) % 4));
    coho__stack_t s[N];
    bool live[N] = {false};

    for (int step = 0; step < 4000; step++) {
        int i = (int)(coho_test_rand(&rng) % N);
        if (live[i]) {
            uint64_t *bottom = s[i].lo, *top = (uint64_t *)((char *)s[i].lo + s[i].size) - 1;
            if (!coho__stack_canary_is_intact(&s[i]) || *bottom != (uint64_t)i ||
                *top != ~(uint64_t)i)
                fail_msg("seed %llu step %d: stack %d damaged", (unsigned long long)seed, step, i);
            coho__stack_put(p, &s[i]);
            live[i] = false;
        } else {
            assert_int_equal(coho__stack_get(p, 0, &s[i]), 0);
            uint64_t *bottom = s[i].lo, *top = (uint64_t *)((char *)s[i].lo + s[i].size) - 1;
            *bottom = (uint64_t)i;
            *top = ~(uint64_t)i;
            live[i] = true;
        }
    }
    for (int i = 0; i < N; i++) {
        if (live[i]) {
            assert_true(coho__stack_canary_is_intact(&s[i]));
            coho__stack_put(p, &s[i]);
        }
    }
    coho__stack_pool_destroy(p);
}

static void stack_high_water_grows_when_deeper_pages_are_touched(void **state)
{
    (void)state;
    coho__stack_pool_t *p = pool_with(256 * KIB, 8, 4);
    coho__stack_t s;

    assert_int_equal(coho__stack_get(p, 0, &s), 0);
    unsigned char *top = (unsigned char *)s.lo + s.size;
    size_t h0 = coho__stack_high_water(&s);
    assert_true(h0 <= pg());
    memset(top - 40 * KIB, 1, 40 * KIB);
    size_t h1 = coho__stack_high_water(&s);
    assert_true(h1 >= 40 * KIB);
    assert_true(h1 <= 40 * KIB + pg());
    memset(top - 200 * KIB, 1, 160 * KIB);
    size_t h2 = coho__stack_high_water(&s);
    assert_true(h2 >= 200 * KIB);
    assert_true(h2 <= 200 * KIB + pg());
    touch_all(&s);
    assert_int_equal(coho__stack_high_water(&s), s.size);
    coho__stack_put(p, &s);
    coho__stack_pool_destroy(p);
}

/* Counts the lines of /proc/self/maps that overlap one of the stacks or its guard, and among
 * them the PROT_NONE ones. Other mappings (allocator, sanitizer runtime) do not count. */
static void count_stack_maps(const coho__stack_t *s, int n, size_t guard, long *maps, long *none)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];

    assert_non_null(f);
    *maps = 0;
    *none = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        unsigned long start, end;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s", &start, &end, perms) != 3)
            continue;
        for (int i = 0; i < n; i++) {
            uintptr_t lo = (uintptr_t)s[i].lo - (s[i].guarded ? guard : 0);
            uintptr_t hi = (uintptr_t)s[i].lo + s[i].size;
            if (start < hi && lo < end) {
                (*maps)++;
                *none += perms[0] == '-' && perms[1] == '-' && perms[2] == '-';
                break;
            }
        }
    }
    fclose(f);
}

static void stack_guarded_max_caps_the_guarded_stacks_and_their_maps(void **state)
{
    (void)state;
    enum { N = 64, CAP = 4 };
    coho__stack_t s[N];
    coho__stack_pool_t *p = pool_with(32 * KIB, CAP, 64);
    int guarded = 0;
    long maps, none;

    for (int i = 0; i < N; i++) {
        assert_int_equal(coho__stack_get(p, 0, &s[i]), 0);
        guarded += s[i].guarded;
        memset(s[i].lo, 1, 64);
    }
    count_stack_maps(s, N, pg(), &maps, &none);
    print_message("%d guarded stacks; %ld maps hold the %d stacks, %ld of them PROT_NONE\n",
                  guarded, maps, N, none);
    assert_int_equal(guarded, CAP);
    assert_int_equal(none, CAP);
    /* each guard splits a mapping (2 maps per guarded stack); the unguarded stacks come in a
     * few slabs of one mapping each. Guarding all 64 would take at least 128 maps. */
    assert_true(maps <= 2 * CAP + 8);
    for (int i = 0; i < N; i++)
        coho__stack_put(p, &s[i]);
    coho__stack_pool_destroy(p);
    count_stack_maps(s, N, pg(), &maps, &none);
    assert_int_equal(maps, 0);
}

static void stack_idle_stacks_beyond_idle_keep_give_memory_back(void **state)
{
    (void)state;
    enum { N = 32 };
    coho__stack_pool_t *p = pool_with(256 * KIB, 16, 0);
    coho__stack_t s[N];

    for (int i = 0; i < N; i++) {
        assert_int_equal(coho__stack_get(p, 0, &s[i]), 0);
        touch_all(&s[i]);
    }
    size_t before = rss_bytes();
    for (int i = 0; i < N; i++) {
        assert_int_equal(coho__stack_high_water(&s[i]), s[i].size);
        coho__stack_put(p, &s[i]);
        /* the descriptor still names the memory: none of it is resident now */
        assert_true(coho__stack_high_water(&s[i]) <= pg());
    }
    size_t after = rss_bytes();
    print_message("rss %zu KiB -> %zu KiB\n", before / KIB, after / KIB);
    assert_true(before > after);
    assert_true(before - after >= (size_t)N * 256 * KIB * 3 / 4);
    coho__stack_pool_destroy(p);
}

static void stack_idle_stacks_within_idle_keep_stay_resident(void **state)
{
    (void)state;
    enum { N = 8 };
    coho__stack_pool_t *p = pool_with(128 * KIB, 16, N);
    coho__stack_t s[N + 1];

    for (int i = 0; i <= N; i++) {
        assert_int_equal(coho__stack_get(p, 0, &s[i]), 0);
        touch_all(&s[i]);
    }
    for (int i = 0; i <= N; i++)
        coho__stack_put(p, &s[i]);
    for (int i = 0; i < N; i++)
        assert_int_equal(coho__stack_high_water(&s[i]), s[i].size);
    assert_true(coho__stack_high_water(&s[N]) <= pg()); /* the one past idle_keep */
    coho__stack_pool_destroy(p);
}

/* Lazy decay: stacks beyond idle_keep stay resident (and are reused first) until they have
 * been idle for decay_ms on the pool's clock; then the decay gives them back, oldest first. */
static void stack_idle_stacks_beyond_idle_keep_stay_resident_until_they_decay(void **state)
{
    (void)state;
    enum { N = 8, KEEP = 2 };
    coho__stack_pool_t *p = pool_decaying(64 * KIB, 16, KEEP, 1000);
    coho__stack_t s[N];
    void *lo[N];

    coho__stack_pool_set_now(p, 5000);
    assert_int_equal(coho__stack_pool_decay(p, 5000, UINT_MAX), -1); /* nothing idle */
    for (int i = 0; i < N; i++) {
        assert_int_equal(coho__stack_get(p, 0, &s[i]), 0);
        touch_all(&s[i]);
        lo[i] = s[i].lo;
    }
    /* puts at 5000 (the first N - KEEP) and 5600 (the rest): the first ones are the oldest */
    for (int i = 0; i < N; i++) {
        if (i == N - KEEP)
            coho__stack_pool_set_now(p, 5600);
        assert_int_equal(coho__stack_put(p, &s[i]), i + 1 > KEEP);
    }
    for (int i = 0; i < N; i++)
        assert_int_equal(coho__stack_high_water(&s[i]), s[i].size); /* all still resident */
    /* not due yet: the oldest became idle 999 ms ago */
    assert_int_equal(coho__stack_pool_decay(p, 5999, UINT_MAX), 1);
    for (int i = 0; i < N; i++)
        assert_int_equal(coho__stack_high_water(&s[i]), s[i].size);
    /* due: the N - KEEP oldest go, at most 2 per call */
    assert_int_equal(coho__stack_pool_decay(p, 6000, 2), 0);
    assert_int_equal(coho__stack_pool_decay(p, 6000, 2), 0);
    assert_int_equal(coho__stack_pool_decay(p, 6000, 2), -1);
    for (int i = 0; i < N; i++) {
        if (i < N - KEEP)
            assert_true(coho__stack_high_water(&s[i]) <= pg());
        else
            assert_int_equal(coho__stack_high_water(&s[i]), s[i].size);
    }
    /* the resident ones are reused first, most recently put first */
    for (int i = N - 1; i >= 0; i--) {
        coho__stack_t t;
        assert_int_equal(coho__stack_get(p, 0, &t), 0);
        if (i >= N - KEEP)
            assert_ptr_equal(t.lo, lo[i]);
        s[i] = t;
    }
    for (int i = 0; i < N; i++)
        coho__stack_put(p, &s[i]);
    coho__stack_pool_destroy(p);
}

/* keep_decay_ms: once the surplus beyond idle_keep is gone, the idle_keep stacks go too after
 * keep_decay_ms of idling (never before decay_ms), so an idle pool ends up with nothing
 * resident; adjacent stacks go in one step. */
static void stack_idle_keep_stacks_decay_after_keep_decay_ms(void **state)
{
    (void)state;
    enum { N = 6, KEEP = 2 };
    coho__stack_pool_opts_t o;
    coho__stack_pool_t *p;
    coho__stack_t s[N];

    coho__stack_pool_opts_init(&o);
    o.stack_size = 64 * KIB;
    o.guarded_max = 3; /* a guarded slab and an unguarded one */
    o.idle_keep = KEEP;
    o.decay_ms = 1000;
    o.keep_decay_ms = 3000;
    p = coho__stack_pool_create(&o);
    assert_non_null(p);
    coho__stack_pool_set_now(p, 10000);
    for (int i = 0; i < N; i++) {
        assert_int_equal(coho__stack_get(p, 0, &s[i]), 0);
        touch_all(&s[i]);
    }
    /* Every put reports work for the decay now, even within idle_keep. */
    for (int i = 0; i < N; i++)
        assert_true(coho__stack_put(p, &s[i]));
    /* At 11000 the N - KEEP oldest go; the KEEP newest wait until 13000. */
    assert_int_equal(coho__stack_pool_decay(p, 11000, UINT_MAX), 2000);
    for (int i = 0; i < N; i++) {
        if (i < N - KEEP)
            assert_true(coho__stack_high_water(&s[i]) <= pg());
        else
            assert_int_equal(coho__stack_high_water(&s[i]), s[i].size);
    }
    assert_int_equal(coho__stack_pool_decay(p, 12999, UINT_MAX), 1);
    assert_int_equal(coho__stack_high_water(&s[N - 1]), s[N - 1].size);
    assert_int_equal(coho__stack_pool_decay(p, 13000, UINT_MAX), -1);
    for (int i = 0; i < N; i++)
        assert_true(coho__stack_high_water(&s[i]) <= pg());
    /* Stacks are handed out again (fresh slabs: the decayed ones were unmapped). */
    for (int i = 0; i < N; i++) {
        assert_int_equal(coho__stack_get(p, 0, &s[i]), 0);
        touch_all(&s[i]);
    }
    for (int i = 0; i < N; i++)
        coho__stack_put(p, &s[i]);
    coho__stack_pool_destroy(p);
}

/* A slab whose stacks all decayed (none live, none resident) is unmapped, guards included; the
 * pool maps a new one when stacks are needed again. */
static void stack_decay_unmaps_slabs_left_with_nothing_resident(void **state)
{
    (void)state;
    enum { N = 48 };
    coho__stack_pool_t *p = pool_decaying(32 * KIB, 8, 0, 10);
    coho__stack_t s[N], copy[N];
    long maps, none;

    coho__stack_pool_set_now(p, 0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(coho__stack_get(p, 0, &s[i]), 0);
        memset(s[i].lo, 1, 64);
    }
    memcpy(copy, s, sizeof(s));
    count_stack_maps(copy, N, pg(), &maps, &none);
    assert_true(maps > 0);
    assert_int_equal(none, 8);
    for (int i = 0; i < N; i++)
        coho__stack_put(p, &s[i]);
    assert_int_equal(coho__stack_pool_decay(p, 10, UINT_MAX), -1);
    count_stack_maps(copy, N, pg(), &maps, &none);
    assert_int_equal(maps, 0);
    /* usable again, guarded again up to guarded_max */
    int guarded = 0;
    for (int i = 0; i < N; i++) {
        assert_int_equal(coho__stack_get(p, 0, &s[i]), 0);
        memset(s[i].lo, 2, 64);
        guarded += s[i].guarded;
    }
    assert_int_equal(guarded, 8);
    for (int i = 0; i < N; i++)
        coho__stack_put(p, &s[i]);
    coho__stack_pool_destroy(p);
}

/* A promised stack (coho__stack_reserve) is the warmest free one when it is taken: the one put
 * back last, even if it was put back after the promise. */
static void stack_reserved_stack_is_the_last_one_put_back(void **state)
{
    (void)state;
    coho__stack_pool_t *p = pool_with(32 * KIB, 8, 16);
    coho__stack_t a, b, c;
    unsigned cls = 99;

    assert_int_equal(coho__stack_reserve(p, 0, &cls), 0);
    assert_int_equal(coho__stack_get(p, 0, &a), 0);
    assert_int_equal(coho__stack_get(p, 0, &b), 0);
    void *lo_b = b.lo;
    coho__stack_put(p, &a);
    coho__stack_put(p, &b);
    coho__stack_get_reserved(p, cls, &c);
    assert_ptr_equal(c.lo, lo_b);
    memset(c.lo, 3, c.size);
    coho__stack_put(p, &c);
    coho__stack_pool_destroy(p);
}

/* Promises are kept: more stacks promised than are free maps new slabs at once, and the decay
 * does not unmap the slabs the promised stacks will come from; withdrawn, it does. */
static void stack_reserved_stacks_survive_the_decay(void **state)
{
    (void)state;
    enum { N = 48 };
    coho__stack_pool_t *p = pool_decaying(32 * KIB, 8, 0, 10);
    coho__stack_t s[N], copy[N];
    unsigned cls[N];
    long maps, none;

    coho__stack_pool_set_now(p, 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(coho__stack_reserve(p, 0, &cls[i]), 0); /* maps the slabs */
    for (int i = 0; i < N; i++) {
        assert_int_equal(coho__stack_get(p, 0, &s[i]), 0); /* beyond the promises: more slabs */
        memset(s[i].lo, 1, 64);
    }
    memcpy(copy, s, sizeof(s));
    for (int i = 0; i < N; i++)
        coho__stack_put(p, &s[i]);
    assert_int_equal(coho__stack_pool_decay(p, 10, UINT_MAX), -1);
    /* Every stack is cold; the slabs of N of them stay mapped for the promises. */
    for (int i = 0; i < N; i++) {
        coho__stack_get_reserved(p, cls[i], &s[i]);
        memset(s[i].lo, 2, s[i].size);
    }
    for (int i = 0; i < N; i++)
        coho__stack_put(p, &s[i]);
    /* Promised and withdrawn: the decay unmaps everything again. */
    for (int i = 0; i < N; i++)
        assert_int_equal(coho__stack_reserve(p, 0, &cls[i]), 0);
    for (int i = 0; i < N; i++)
        coho__stack_unreserve(p, cls[i]);
    assert_int_equal(coho__stack_pool_decay(p, 100, UINT_MAX), -1);
    count_stack_maps(copy, N, pg(), &maps, &none);
    assert_int_equal(maps, 0);
    coho__stack_pool_destroy(p);
}

/* False also when the page is no longer mapped (ENOMEM). */
static bool page_is_resident(const void *addr)
{
    unsigned char v = 0;
    uintptr_t page = (uintptr_t)addr & ~(uintptr_t)(pg() - 1);

    if (mincore((void *)page, pg(), &v) != 0) {
        assert_int_equal(errno, ENOMEM);
        return false;
    }
    return (v & 1) != 0;
}

/* Bursts separated by quiet spells long enough for the whole decay (the scheduler's settings:
 * the idle_keep stacks decay too): the memory goes back each time, but the slabs of the
 * idle_keep free stacks stay mapped, so the next bursts map no slab and set no guard page. */
static void stack_bursts_after_the_decay_reuse_the_slabs_it_kept(void **state)
{
    (void)state;
    enum { N = 24, KEEP = 32, ROUNDS = 6 };
    coho__stack_pool_opts_t o;
    coho__stack_pool_t *p;
    coho__stack_t s[N];
    uint64_t mapped = 0;

    coho__stack_pool_opts_init(&o);
    o.stack_size = 32 * KIB;
    o.guarded_max = 4096;
    o.idle_keep = KEEP;
    o.decay_ms = 10;
    o.keep_decay_ms = 30;
    p = coho__stack_pool_create(&o);
    assert_non_null(p);
    for (int r = 0; r < ROUNDS; r++) {
        uint64_t now = (uint64_t)r * 1000;

        coho__stack_pool_set_now(p, now);
        for (int i = 0; i < N; i++) {
            assert_int_equal(coho__stack_get(p, 0, &s[i]), 0);
            memset((char *)s[i].lo + s[i].size - 64, r + 1, 64);
        }
        for (int i = 0; i < N; i++)
            coho__stack_put(p, &s[i]);
        assert_int_equal(coho__stack_pool_decay(p, now + 500, UINT_MAX), -1);
        for (int i = 0; i < N; i++) /* every stack gave its memory back */
            assert_false(page_is_resident((char *)s[i].lo + s[i].size - 64));
        if (r == 0)
            mapped = coho__stack_pool_slabs_mapped(p);
        else
            assert_int_equal(coho__stack_pool_slabs_mapped(p), mapped);
    }
    assert_true(mapped > 0);
    coho__stack_pool_destroy(p);
}

/* A burst of promises maps slabs for all of them, but a guard page is set only when its stack
 * is first taken: promised stacks that are never taken cost no mprotect and no kernel map. */
static void stack_guard_is_set_when_the_stack_is_first_taken(void **state)
{
    (void)state;
    enum { N = 40 };
    coho__stack_pool_t *p = pool_with(32 * KIB, 4096, 64);
    unsigned cls[N];
    coho__stack_t a, b, copy;
    long maps, none;

    for (int i = 0; i < N; i++)
        assert_int_equal(coho__stack_reserve(p, 0, &cls[i]), 0);
    assert_true(coho__stack_pool_slabs_mapped(p) >= 3); /* 7 + 14 + 28 stacks of 36 KiB */
    assert_int_equal(coho__stack_pool_guards_set(p), 0);
    coho__stack_get_reserved(p, cls[0], &a);
    assert_true(a.guarded);
    memset(a.lo, 1, a.size);
    copy = a;
    count_stack_maps(&copy, 1, pg(), &maps, &none);
    assert_int_equal(none, 1); /* the guard is PROT_NONE */
    assert_int_equal(coho__stack_pool_guards_set(p), 1);
    coho__stack_put(p, &a);
    coho__stack_get_reserved(p, cls[1], &b); /* the same stack again: guarded already */
    assert_ptr_equal(b.lo, copy.lo);
    assert_true(b.guarded);
    assert_int_equal(coho__stack_pool_guards_set(p), 1);
    coho__stack_put(p, &b);
    for (int i = 2; i < N; i++)
        coho__stack_unreserve(p, cls[i]);
    coho__stack_pool_destroy(p);
}

static void stack_bad_sizes_are_einval(void **state)
{
    (void)state;
    coho__stack_pool_opts_t o;
    coho__stack_pool_t *p = pool_with(64 * KIB, 8, 4);
    coho__stack_t s;

    assert_int_equal(coho__stack_get(p, (size_t)2 << 30, &s), -EINVAL);
    assert_int_equal(coho__stack_get(p, SIZE_MAX, &s), -EINVAL);
    coho__stack_pool_destroy(p);

    coho__stack_pool_opts_init(&o);
    o.stack_size = 0;
    errno = 0;
    assert_null(coho__stack_pool_create(&o));
    assert_int_equal(errno, EINVAL);
    coho__stack_pool_opts_init(&o);
    o.stack_size = SIZE_MAX;
    errno = 0;
    assert_null(coho__stack_pool_create(&o));
    assert_int_equal(errno, EINVAL);
    coho__stack_pool_opts_init(&o);
    o.guard_size = (size_t)1 << 40;
    errno = 0;
    assert_null(coho__stack_pool_create(&o));
    assert_int_equal(errno, EINVAL);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(stack_pool_opts_init_fills_documented_defaults),
        cmocka_unit_test(stack_get_reuses_a_returned_stack),
        cmocka_unit_test(stack_get_reuses_a_stack_given_back_with_dontneed),
        cmocka_unit_test(stack_sizes_per_request_come_from_their_own_class),
        cmocka_unit_test(stack_guard_page_write_kills_with_sigsegv),
        cmocka_unit_test(stack_guard_fault_is_recognised_from_a_signal_handler),
        cmocka_unit_test(stack_find_guard_recognises_only_guard_addresses),
        cmocka_unit_test(stack_canary_breach_is_detected),
        cmocka_unit_test(stack_unguarded_neighbours_survive_random_get_and_put),
        cmocka_unit_test(stack_high_water_grows_when_deeper_pages_are_touched),
        cmocka_unit_test(stack_guarded_max_caps_the_guarded_stacks_and_their_maps),
        cmocka_unit_test(stack_idle_stacks_beyond_idle_keep_give_memory_back),
        cmocka_unit_test(stack_idle_stacks_within_idle_keep_stay_resident),
        cmocka_unit_test(stack_idle_stacks_beyond_idle_keep_stay_resident_until_they_decay),
        cmocka_unit_test(stack_decay_unmaps_slabs_left_with_nothing_resident),
        cmocka_unit_test(stack_idle_keep_stacks_decay_after_keep_decay_ms),
        cmocka_unit_test(stack_reserved_stack_is_the_last_one_put_back),
        cmocka_unit_test(stack_reserved_stacks_survive_the_decay),
        cmocka_unit_test(stack_bursts_after_the_decay_reuse_the_slabs_it_kept),
        cmocka_unit_test(stack_guard_is_set_when_the_stack_is_first_taken),
        cmocka_unit_test(stack_bad_sizes_are_einval),
    };

    return coho_test_main("stack", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
