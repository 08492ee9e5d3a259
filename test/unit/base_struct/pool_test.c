/* SPDX-License-Identifier: MIT */
/* Tests of the generation-id node pool: ids, stale-id detection, slab growth without moving
 * nodes, limits, generation wrap-around, trimming idle slabs, and a randomized comparison
 * against a model. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base_struct/pool.h"
#include "test/support/cmocka_main.h"
#include "test/support/pool_testing.h"

#if defined(__SANITIZE_ADDRESS__)
#    include <sanitizer/asan_interface.h>
#endif

static uint32_t id_index(uint64_t id)
{
    return (uint32_t)id;
}

static uint32_t id_gen(uint64_t id)
{
    return (uint32_t)(id >> 32);
}

static void pool_alloc_returns_nonzero_id_and_zeroed_aligned_node(void **state)
{
    static const size_t sizes[] = {1, 7, 8, 16, 24, 100, 4096};
    size_t k;

    (void)state;
    for (k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        coho__pool_t *p = coho__pool_create(sizes[k], 4, 0);
        int i;

        assert_non_null(p);
        for (i = 0; i < 10; i++) {
            void *node = NULL;
            int err = 0;
            uint64_t id = coho__pool_alloc(p, &node, &err);

            assert_int_not_equal(id, 0);
            assert_int_equal(err, 0);
            assert_true(id_gen(id) >= 1);
            assert_non_null(node);
            assert_int_equal((uintptr_t)node % 16, 0);
            assert_ptr_equal(coho__pool_get(p, id), node);
            for (size_t b = 0; b < sizes[k]; b++)
                assert_int_equal(((unsigned char *)node)[b], 0);
            memset(node, 0xab, sizes[k]); /* must not spill into a neighbour (ASan checks) */
        }
        /* a freed node comes back zeroed */
        {
            void *node;
            uint64_t id = coho__pool_alloc(p, &node, NULL);

            memset(node, 0xcd, sizes[k]);
            assert_int_equal(coho__pool_free(p, id), 0);
            id = coho__pool_alloc(p, &node, NULL);
            for (size_t b = 0; b < sizes[k]; b++)
                assert_int_equal(((unsigned char *)node)[b], 0);
        }
        coho__pool_destroy(p);
    }
}

static void pool_alloc_accepts_null_out_pointers(void **state)
{
    coho__pool_t *p = coho__pool_create(32, 0, 0);
    uint64_t id;

    (void)state;
    id = coho__pool_alloc(p, NULL, NULL);
    assert_int_not_equal(id, 0);
    assert_non_null(coho__pool_get(p, id));
    coho__pool_destroy(p);
}

static void pool_get_of_zero_or_never_issued_id_is_null(void **state)
{
    coho__pool_t *p = coho__pool_create(32, 8, 0);
    uint64_t id;

    (void)state;
    assert_null(coho__pool_get(p, 0)); /* empty pool */
    assert_null(coho__pool_get(p, (uint64_t)1 << 32));
    id = coho__pool_alloc(p, NULL, NULL);
    assert_null(coho__pool_get(p, 0));
    assert_null(coho__pool_get(p, id_index(id)));                      /* generation 0 */
    assert_null(coho__pool_get(p, id + ((uint64_t)1 << 32)));          /* future generation */
    assert_null(coho__pool_get(p, id + 1));                            /* slot in slab, unused */
    assert_null(coho__pool_get(p, ((uint64_t)1 << 32) | 7));           /* last slot of slab */
    assert_null(coho__pool_get(p, ((uint64_t)1 << 32) | 1000000));     /* beyond every slab */
    assert_null(coho__pool_get(p, ((uint64_t)1 << 32) | 0xffffffffu)); /* largest index */
    assert_null(coho__pool_get(p, UINT64_MAX));
    assert_int_equal(coho__pool_free(p, UINT64_MAX), -ENOENT);
    assert_int_equal(coho__pool_free(p, 0), -ENOENT);
    assert_int_equal(coho__pool_free(p, id + 1), -ENOENT);
    assert_int_equal(coho__pool_count(p), 1);
    coho__pool_destroy(p);
}

static void pool_get_of_freed_id_is_null(void **state)
{
    coho__pool_t *p = coho__pool_create(32, 0, 0);
    uint64_t id = coho__pool_alloc(p, NULL, NULL);

    (void)state;
    assert_int_equal(coho__pool_free(p, id), 0);
    assert_null(coho__pool_get(p, id));
    assert_int_equal(coho__pool_count(p), 0);
    coho__pool_destroy(p);
}

/* The classic game-server bug: a recycled slot must not answer to its departed owner's id. */
static void pool_stale_id_of_reused_slot_does_not_reach_new_owner(void **state)
{
    coho__pool_t *p = coho__pool_create(32, 0, 0);
    uint64_t old_id, new_id;
    void *old_node, *new_node;

    (void)state;
    old_id = coho__pool_alloc(p, &old_node, NULL);
    assert_int_equal(coho__pool_free(p, old_id), 0);
    new_id = coho__pool_alloc(p, &new_node, NULL);
    assert_int_equal(id_index(new_id), id_index(old_id)); /* same slot, reused */
    assert_ptr_equal(new_node, old_node);
    assert_int_not_equal(new_id, old_id);
    assert_null(coho__pool_get(p, old_id));
    assert_ptr_equal(coho__pool_get(p, new_id), new_node);
    assert_int_equal(coho__pool_free(p, old_id), -ENOENT); /* the stale id frees nothing */
    assert_ptr_equal(coho__pool_get(p, new_id), new_node);
    assert_int_equal(coho__pool_count(p), 1);
    coho__pool_destroy(p);
}

static void pool_double_free_is_enoent(void **state)
{
    coho__pool_t *p = coho__pool_create(32, 0, 0);
    uint64_t a = coho__pool_alloc(p, NULL, NULL);
    uint64_t b = coho__pool_alloc(p, NULL, NULL);

    (void)state;
    assert_int_equal(coho__pool_free(p, a), 0);
    assert_int_equal(coho__pool_free(p, a), -ENOENT);
    assert_int_equal(coho__pool_count(p), 1);
    assert_non_null(coho__pool_get(p, b));
    /* the free list was not corrupted: the next two allocs give two distinct slots */
    {
        uint64_t c = coho__pool_alloc(p, NULL, NULL);
        uint64_t d = coho__pool_alloc(p, NULL, NULL);

        assert_int_not_equal(id_index(c), id_index(d));
        assert_int_not_equal(id_index(c), id_index(b));
        assert_int_not_equal(id_index(d), id_index(b));
    }
    assert_int_equal(coho__pool_count(p), 3);
    coho__pool_destroy(p);
}

static void pool_freed_slot_is_reused_lifo(void **state)
{
    coho__pool_t *p = coho__pool_create(32, 0, 0);
    uint64_t a = coho__pool_alloc(p, NULL, NULL);
    uint64_t b = coho__pool_alloc(p, NULL, NULL);
    uint64_t c = coho__pool_alloc(p, NULL, NULL);

    (void)state;
    assert_int_equal(coho__pool_free(p, a), 0);
    assert_int_equal(coho__pool_free(p, c), 0);
    assert_int_equal(id_index(coho__pool_alloc(p, NULL, NULL)), id_index(c));
    assert_int_equal(id_index(coho__pool_alloc(p, NULL, NULL)), id_index(a));
    assert_non_null(coho__pool_get(p, b));
    coho__pool_destroy(p);
}

static void pool_alloc_past_max_count_is_eagain(void **state)
{
    coho__pool_t *p = coho__pool_create(16, 2, 5);
    uint64_t ids[5];
    int i, err = 0;

    (void)state;
    for (i = 0; i < 5; i++) {
        ids[i] = coho__pool_alloc(p, NULL, &err);
        assert_int_not_equal(ids[i], 0);
    }
    assert_int_equal(coho__pool_alloc(p, NULL, &err), 0);
    assert_int_equal(err, -EAGAIN);
    assert_int_equal(coho__pool_alloc(p, NULL, NULL), 0); /* err is optional */
    assert_int_equal(coho__pool_count(p), 5);
    assert_int_equal(coho__pool_free(p, ids[2]), 0);
    err = 0;
    assert_int_not_equal(coho__pool_alloc(p, NULL, &err), 0);
    assert_int_equal(err, 0);
    coho__pool_destroy(p);
}

static void pool_create_with_zero_or_oversized_size_is_einval(void **state)
{
    (void)state;
    errno = 0;
    assert_null(coho__pool_create(0, 0, 0));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(coho__pool_create(SIZE_MAX, 0, 0));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(coho__pool_create(SIZE_MAX - 7, 1, 0)); /* would overflow the slot stride */
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(coho__pool_create((size_t)1 << 30, 1u << 20, 0)); /* a 1 PiB slab */
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(coho__pool_create(16, UINT32_MAX, 0));
    assert_int_equal(errno, EINVAL);
    coho__pool_destroy(NULL); /* harmless */
}

/* Nodes never move: pointers taken before growth still hold their data after many slabs. */
static void pool_grows_in_slabs_without_moving_nodes(void **state)
{
    enum { N = 1000 };
    coho__pool_t *p = coho__pool_create(24, 4, 0);
    uint64_t *ids = calloc(N, sizeof(*ids));
    void **nodes = calloc(N, sizeof(*nodes));
    int i;

    (void)state;
    for (i = 0; i < N; i++) {
        ids[i] = coho__pool_alloc(p, &nodes[i], NULL);
        assert_int_not_equal(ids[i], 0);
        memcpy(nodes[i], &i, sizeof(i));
    }
    assert_int_equal(coho__pool_count(p), N);
    for (i = 0; i < N; i++) {
        int v;

        assert_ptr_equal(coho__pool_get(p, ids[i]), nodes[i]);
        memcpy(&v, nodes[i], sizeof(v));
        assert_int_equal(v, i);
    }
    coho__pool_destroy(p);
    free(ids);
    free(nodes);
}

/* A slot whose generation would wrap to 0 is retired: its ids never come back. */
static void pool_generation_wrap_retires_slot(void **state)
{
    coho__pool_t *p = coho__pool_create(16, 4, 0);
    uint64_t id, last, again;
    int i;

    (void)state;
    id = coho__pool_alloc(p, NULL, NULL);
    assert_int_equal(coho__pool_test_set_generation(p, 0, 5), 0);
    assert_int_equal(coho__pool_test_set_generation(p, id, 0), 0);
    /* one below the top generation: the slot is still reused, with the top generation */
    id = coho__pool_test_set_generation(p, id, UINT32_MAX - 1);
    assert_int_equal(id_gen(id), UINT32_MAX - 1);
    assert_int_equal(coho__pool_free(p, id), 0);
    last = coho__pool_alloc(p, NULL, NULL);
    assert_int_equal(id_index(last), id_index(id));
    assert_int_equal(id_gen(last), UINT32_MAX);
    assert_null(coho__pool_get(p, id));
    /* freeing the top generation retires the slot */
    assert_int_equal(coho__pool_free(p, last), 0);
    assert_null(coho__pool_get(p, last));
    assert_int_equal(coho__pool_free(p, last), -ENOENT);
    assert_null(coho__pool_get(p, id_index(last))); /* what a wrapped generation would give */
    assert_int_equal(coho__pool_count(p), 0);
    for (i = 0; i < 100; i++) {
        again = coho__pool_alloc(p, NULL, NULL);
        assert_int_not_equal(again, 0);
        assert_int_not_equal(id_index(again), id_index(last));
        if (i % 2)
            assert_int_equal(coho__pool_free(p, again), 0);
    }
    coho__pool_destroy(p);
}

typedef struct visit {
    uint64_t ids[16];
    void *nodes[16];
    int n;
} visit_t;

static void record_visit(uint64_t id, void *node, void *arg)
{
    visit_t *v = arg;

    v->ids[v->n] = id;
    v->nodes[v->n] = node;
    v->n++;
}

static void pool_for_each_visits_live_nodes_in_slot_order(void **state)
{
    coho__pool_t *p = coho__pool_create(16, 2, 0);
    uint64_t ids[8];
    visit_t v = {.n = 0};
    int i;

    (void)state;
    coho__pool_for_each(p, record_visit, &v);
    assert_int_equal(v.n, 0);
    for (i = 0; i < 8; i++)
        ids[i] = coho__pool_alloc(p, NULL, NULL);
    assert_int_equal(coho__pool_free(p, ids[1]), 0);
    assert_int_equal(coho__pool_free(p, ids[4]), 0);
    assert_int_equal(coho__pool_free(p, ids[7]), 0);
    coho__pool_for_each(p, record_visit, &v);
    assert_int_equal(v.n, 5);
    assert_int_equal(v.ids[0], ids[0]);
    assert_int_equal(v.ids[1], ids[2]);
    assert_int_equal(v.ids[2], ids[3]);
    assert_int_equal(v.ids[3], ids[5]);
    assert_int_equal(v.ids[4], ids[6]);
    for (i = 0; i < v.n; i++)
        assert_ptr_equal(v.nodes[i], coho__pool_get(p, v.ids[i]));
    coho__pool_destroy(p);
}

static void free_if_odd(uint64_t id, void *node, void *arg)
{
    coho__pool_t *p = arg;

    if (*(int *)node % 2)
        assert_int_equal(coho__pool_free(p, id), 0);
}

static void pool_for_each_callback_may_free_its_node(void **state)
{
    coho__pool_t *p = coho__pool_create(sizeof(int), 4, 0);
    uint64_t ids[20];
    int i;

    (void)state;
    for (i = 0; i < 20; i++) {
        int *n;

        ids[i] = coho__pool_alloc(p, (void **)&n, NULL);
        *n = i;
    }
    coho__pool_for_each(p, free_if_odd, p);
    assert_int_equal(coho__pool_count(p), 10);
    for (i = 0; i < 20; i++) {
        if (i % 2)
            assert_null(coho__pool_get(p, ids[i]));
        else
            assert_int_equal(*(int *)coho__pool_get(p, ids[i]), i);
    }
    coho__pool_destroy(p);
}

static void pool_freed_node_is_poisoned_under_asan(void **state)
{
    (void)state;
#if defined(__SANITIZE_ADDRESS__)
    coho__pool_t *p = coho__pool_create(40, 4, 0);
    void *node;
    uint64_t id = coho__pool_alloc(p, &node, NULL);

    assert_false(__asan_address_is_poisoned(node));
    assert_false(__asan_address_is_poisoned((char *)node + 39));
    assert_int_equal(coho__pool_free(p, id), 0);
    assert_true(__asan_address_is_poisoned(node));
    id = coho__pool_alloc(p, &node, NULL);
    assert_false(__asan_address_is_poisoned(node));
    coho__pool_destroy(p);
#else
    skip();
#endif
}

/* Random alloc / free / get against a model (the set of live ids and every id ever freed).
 * Every live id resolves to its own node (holding its id); every freed id stays dead. */
static void pool_randomized_ops_match_model(void **state)
{
    enum { CAP = 3000, OPS = 300000 };
    uint64_t rng = coho_test_seed();
    coho__pool_t *p = coho__pool_create(sizeof(uint64_t), 16, CAP);
    uint64_t *live = calloc(CAP, sizeof(*live));
    uint64_t *dead = calloc(OPS, sizeof(*dead));
    size_t nlive = 0, ndead = 0;
    int op;

    (void)state;
    assert_non_null(p);
    for (op = 0; op < OPS; op++) {
        uint64_t r = coho_test_rand(&rng);
        /* Phases of 20,000 ops that grow and shrink the pool, so whole slabs empty out and
         * the trims (every 997 ops) have slabs to give back and later to reuse. */
        bool shrinking = (op / 20000) % 2 == 1;
        unsigned kind = (unsigned)(r % 5);

        if (op % 997 == 0)
            coho__pool_trim(p);
        if (kind == 1 && shrinking)
            kind = 2;
        switch (kind) {
        case 0:
        case 1: { /* alloc */
            void *node;
            int err = 0;
            uint64_t id = coho__pool_alloc(p, &node, &err);

            if (nlive == CAP) {
                assert_int_equal(id, 0);
                assert_int_equal(err, -EAGAIN);
                break;
            }
            assert_int_not_equal(id, 0);
            assert_int_equal(*(uint64_t *)node, 0);
            *(uint64_t *)node = id;
            live[nlive++] = id;
            break;
        }
        case 2: { /* free a live id */
            size_t k;

            if (nlive == 0)
                break;
            k = (size_t)(r >> 16) % nlive;
            assert_int_equal(coho__pool_free(p, live[k]), 0);
            dead[ndead++] = live[k];
            live[k] = live[--nlive];
            break;
        }
        case 3: { /* a live id resolves to its own node */
            uint64_t *node;

            if (nlive == 0)
                break;
            node = coho__pool_get(p, live[(size_t)(r >> 16) % nlive]);
            assert_non_null(node);
            assert_int_equal(*node, live[(size_t)(r >> 16) % nlive]);
            break;
        }
        default: { /* a freed id stays dead */
            uint64_t id;

            if (ndead == 0)
                break;
            id = dead[(size_t)(r >> 16) % ndead];
            assert_null(coho__pool_get(p, id));
            assert_int_equal(coho__pool_free(p, id), -ENOENT);
            break;
        }
        }
        assert_int_equal(coho__pool_count(p), nlive);
    }
    coho__pool_destroy(p);
    free(live);
    free(dead);
}

/* Pages of slab i resident (mincore). */
static size_t slab_resident_pages(const coho__pool_t *p, uint32_t i)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE), n = p->slab_bytes / pg, k, r = 0;
    unsigned char *vec = malloc(n);

    assert_non_null(vec);
    assert_int_equal(mincore(p->allocs[i], p->slab_bytes, vec), 0);
    for (k = 0; k < n; k++)
        r += vec[k] & 1u;
    free(vec);
    return r;
}

static void count_node(uint64_t id, void *node, void *arg)
{
    (void)id;
    (void)node;
    (*(size_t *)arg)++;
}

/* 4 slabs of 64 nodes of 512 bytes: slabs 1 and 3 emptied, slab 2 keeps one node. A trim gives
 * back slabs 1 and 3 only (slab 0, emptied too, stays), their old ids stay stale, and their
 * slots come back, with fresh generations, only after every other freed slot is used. */
static void pool_trim_gives_back_empty_slabs_and_keeps_old_ids_stale(void **state)
{
    enum { PER = 64, N = 4 * PER };
    coho__pool_t *p = coho__pool_create(512, PER, 0);
    static uint64_t ids[N];
    uint64_t again[N];
    size_t visited = 0, k, j;

    (void)state;
    assert_non_null(p);
    for (k = 0; k < N; k++) {
        void *node;

        ids[k] = coho__pool_alloc(p, &node, NULL);
        assert_int_not_equal(ids[k], 0);
        memset(node, 0xab, 512);
    }
    /* Slab 1 freed twice over (so its generations differ), then everything but one node of
     * slab 2. */
    for (k = PER; k < 2 * PER; k++) {
        assert_int_equal(coho__pool_free(p, ids[k]), 0);
        ids[k] = coho__pool_alloc(p, NULL, NULL);
        assert_int_equal(id_gen(ids[k]), 2);
    }
    for (k = 0; k < N; k++)
        if (k != 2 * PER + 5)
            assert_int_equal(coho__pool_free(p, ids[k]), 0);
    assert_true(slab_resident_pages(p, 1) > 0);
    assert_int_equal(coho__pool_trim(p), 2);
    assert_int_equal(slab_resident_pages(p, 1), 0);
    assert_int_equal(slab_resident_pages(p, 3), 0);
    assert_true(slab_resident_pages(p, 0) > 0);
    assert_true(slab_resident_pages(p, 2) > 0);
    assert_int_equal(coho__pool_trim(p), 0); /* nothing more to give back */
    for (k = 0; k < N; k++) {
        if (k == 2 * PER + 5)
            assert_non_null(coho__pool_get(p, ids[k]));
        else
            assert_null(coho__pool_get(p, ids[k]));
    }
    coho__pool_for_each(p, count_node, &visited);
    assert_int_equal(visited, 1);
    assert_int_equal(coho__pool_count(p), 1);

    /* The resident free slots first (slabs 0 and 2), then the trimmed slabs. */
    for (k = 0; k < N - 1; k++) {
        void *node;

        again[k] = coho__pool_alloc(p, &node, NULL);
        assert_int_not_equal(again[k], 0);
        for (j = 0; j < 512; j++)
            assert_int_equal(((unsigned char *)node)[j], 0);
        if (k < 2 * PER - 1)
            assert_true(id_index(again[k]) / PER == 0 || id_index(again[k]) / PER == 2);
        else
            assert_true(id_index(again[k]) / PER == 1 || id_index(again[k]) / PER == 3);
    }
    /* No new id equals an old one; old ids of the reused slabs are stale. */
    for (k = 0; k < N - 1; k++) {
        for (j = 0; j < N; j++)
            assert_true(again[k] != ids[j]);
    }
    for (k = 0; k < N; k++) {
        if (k != 2 * PER + 5)
            assert_null(coho__pool_get(p, ids[k]));
    }
    assert_int_equal(coho__pool_count(p), N);
    assert_int_equal(p->nslabs, 4); /* no slab added: the trimmed ones were reused */
    coho__pool_destroy(p);
}

static void pool_trim_keeps_slabs_with_live_nodes_and_the_first(void **state)
{
    coho__pool_t *p = coho__pool_create(64, 16, 0);
    uint64_t ids[32];
    size_t k;

    (void)state;
    assert_non_null(p);
    assert_int_equal(coho__pool_trim(p), 0); /* empty pool */
    for (k = 0; k < 32; k++)
        ids[k] = coho__pool_alloc(p, NULL, NULL);
    assert_int_equal(coho__pool_trim(p), 0); /* all live */
    for (k = 0; k < 16; k++)
        assert_int_equal(coho__pool_free(p, ids[k]), 0);
    assert_int_equal(coho__pool_trim(p), 0); /* only slab 0 is empty */
    for (k = 16; k < 32; k++)
        assert_int_equal(coho__pool_free(p, ids[k]), 0);
    assert_int_equal(coho__pool_trim(p), 1);
    coho__pool_destroy(p);
}

/* coho__pool_alloc_raw keeps the last owner's bytes; the inline fast paths (pool_impl.h) give
 * the same ids and staleness as the functions, and leave to them what they cannot do. */
static void pool_alloc_raw_and_the_fast_paths_match_the_functions(void **state)
{
    (void)state;
    coho__pool_t *p = coho__pool_create(64, 4, 0);
    void *n1 = NULL, *n2 = NULL;
    uint64_t a, b, c;

    assert_non_null(p);
    a = coho__pool_alloc_raw(p, &n1, NULL);
    assert_int_not_equal(a, 0);
    assert_int_equal(((unsigned char *)n1)[0], 0); /* a slot never used: zeros */
    memset(n1, 0x5a, 64);
#if !defined(__SANITIZE_ADDRESS__)
    assert_int_equal(pool_alloc_raw_fast(p, &n2), 0); /* nothing freed yet: the function's job */
    assert_true(pool_free_fast(p, a));
    assert_false(pool_free_fast(p, a)); /* stale now */
    assert_null(coho__pool_get(p, a));
    b = pool_alloc_raw_fast(p, &n2);
    assert_ptr_equal(n2, n1);
    assert_int_equal(id_index(b), id_index(a));
    assert_int_equal(id_gen(b), id_gen(a) + 1);
    assert_int_equal(((unsigned char *)n2)[63], 0x5a); /* not zeroed */
    assert_ptr_equal(coho__pool_get(p, b), n2);
    assert_int_equal(coho__pool_count(p), 1);
    /* A generation about to wrap is the function's (it retires the slot). */
    b = coho__pool_test_set_generation(p, b, UINT32_MAX);
    assert_false(pool_free_fast(p, b));
    assert_int_equal(coho__pool_free(p, b), 0);
#else
    assert_int_equal(coho__pool_free(p, a), 0);
    b = coho__pool_alloc_raw(p, &n2, NULL);
    assert_int_equal(id_gen(b), id_gen(a) + 1);
    assert_int_equal(coho__pool_free(p, b), 0);
#endif
    c = coho__pool_alloc(p, &n2, NULL); /* the zeroing one still zeroes */
    assert_int_not_equal(c, 0);
    assert_int_equal(((unsigned char *)n2)[0], 0);
    coho__pool_destroy(p);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pool_alloc_returns_nonzero_id_and_zeroed_aligned_node),
        cmocka_unit_test(pool_alloc_accepts_null_out_pointers),
        cmocka_unit_test(pool_get_of_zero_or_never_issued_id_is_null),
        cmocka_unit_test(pool_get_of_freed_id_is_null),
        cmocka_unit_test(pool_stale_id_of_reused_slot_does_not_reach_new_owner),
        cmocka_unit_test(pool_double_free_is_enoent),
        cmocka_unit_test(pool_freed_slot_is_reused_lifo),
        cmocka_unit_test(pool_alloc_past_max_count_is_eagain),
        cmocka_unit_test(pool_create_with_zero_or_oversized_size_is_einval),
        cmocka_unit_test(pool_grows_in_slabs_without_moving_nodes),
        cmocka_unit_test(pool_generation_wrap_retires_slot),
        cmocka_unit_test(pool_for_each_visits_live_nodes_in_slot_order),
        cmocka_unit_test(pool_for_each_callback_may_free_its_node),
        cmocka_unit_test(pool_freed_node_is_poisoned_under_asan),
        cmocka_unit_test(pool_randomized_ops_match_model),
        cmocka_unit_test(pool_trim_gives_back_empty_slabs_and_keeps_old_ids_stale),
        cmocka_unit_test(pool_trim_keeps_slabs_with_live_nodes_and_the_first),
        cmocka_unit_test(pool_alloc_raw_and_the_fast_paths_match_the_functions),
    };

    return coho_test_main("pool", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
