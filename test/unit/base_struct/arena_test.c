/* SPDX-License-Identifier: MIT */
/* Tests of the arena: alignment, many small and large allocations, release by reset and
 * destroy, and the answers to zero, oversized and overflowing requests. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base_struct/arena.h"
#include "test/support/cmocka_main.h"

#if defined(__SANITIZE_ADDRESS__)
#    include <sanitizer/asan_interface.h>

/* An impossible malloc must fail with ENOMEM here too, as it does without ASan. The runtime
 * looks the hook up dynamically, so it must stay visible despite -fvisibility=hidden. */
const char *__asan_default_options(void);
__attribute__((visibility("default"))) const char *__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}
#elif defined(__SANITIZE_THREAD__)
/* The same under ThreadSanitizer, whose allocator otherwise reports the request and dies. */
const char *__tsan_default_options(void);
__attribute__((visibility("default"))) const char *__tsan_default_options(void)
{
    return "allocator_may_return_null=1";
}
#endif

static void arena_small_allocations_are_aligned_and_disjoint(void **state)
{
    enum { N = 5000 };
    uint64_t rng = coho_test_seed();
    coho__arena_t *a = coho__arena_create(1024);
    unsigned char **ptrs = calloc(N, sizeof(*ptrs));
    size_t *sizes = calloc(N, sizeof(*sizes));
    size_t total = 0;
    int i;

    (void)state;
    assert_non_null(a);
    for (i = 0; i < N; i++) {
        sizes[i] = 1 + (size_t)(coho_test_rand(&rng) % 200);
        ptrs[i] = coho__arena_alloc(a, sizes[i]);
        assert_non_null(ptrs[i]);
        assert_int_equal((uintptr_t)ptrs[i] % COHO__ARENA_ALIGN, 0);
        memset(ptrs[i], i & 0xff, sizes[i]);
        total += sizes[i];
    }
    /* every allocation still holds its own fill: none overlapped another */
    for (i = 0; i < N; i++) {
        for (size_t b = 0; b < sizes[i]; b++)
            assert_int_equal(ptrs[i][b], i & 0xff);
    }
    assert_int_equal(coho__arena_used(a), total);
    assert_true(coho__arena_reserved(a) >= total);
    coho__arena_destroy(a);
    free(ptrs);
    free(sizes);
}

static void arena_alloc_aligned_honours_alignment(void **state)
{
    static const size_t aligns[] = {1, 2, 8, 16, 32, 64, 256, 4096};
    coho__arena_t *a = coho__arena_create(0);
    size_t k;
    int i;

    (void)state;
    for (i = 0; i < 3; i++) {
        for (k = 0; k < sizeof(aligns) / sizeof(aligns[0]); k++) {
            unsigned char *p = coho__arena_alloc_aligned(a, 3 + k, aligns[k]);
            unsigned char *big = coho__arena_alloc_aligned(a, 100000, aligns[k]);

            assert_non_null(p);
            assert_non_null(big);
            assert_int_equal((uintptr_t)p % aligns[k], 0);
            assert_int_equal((uintptr_t)p % COHO__ARENA_ALIGN, 0);
            assert_int_equal((uintptr_t)big % aligns[k], 0);
            memset(p, 1, 3 + k);
            memset(big, 2, 100000);
        }
    }
    coho__arena_destroy(a);
}

static void arena_large_allocation_gets_its_own_block(void **state)
{
    coho__arena_t *a = coho__arena_create(4096);
    unsigned char *small1, *big, *small2;
    size_t before;

    (void)state;
    small1 = coho__arena_alloc(a, 100);
    before = coho__arena_reserved(a);
    big = coho__arena_alloc(a, 1 << 20);
    assert_non_null(big);
    memset(big, 0x5a, 1 << 20);
    assert_true(coho__arena_reserved(a) >= before + (1 << 20));
    /* the small request after it continues in the same block, right after the first */
    small2 = coho__arena_alloc(a, 100);
    assert_ptr_equal(small2, small1 + 112);
    assert_int_equal(coho__arena_used(a), 200 + (1 << 20));
    coho__arena_destroy(a);
}

static void arena_reset_releases_all_but_one_block(void **state)
{
    coho__arena_t *a = coho__arena_create(1024);
    unsigned char *first, *again;
    int i;

    (void)state;
    first = coho__arena_alloc(a, 64);
    for (i = 0; i < 1000; i++)
        assert_non_null(coho__arena_alloc(a, 100));
    assert_non_null(coho__arena_alloc(a, 50000));
    assert_true(coho__arena_reserved(a) > 100 * 1024);
    coho__arena_reset(a);
    assert_int_equal(coho__arena_used(a), 0);
    assert_int_equal(coho__arena_reserved(a), 1024);
    /* the kept block is reused from its start */
    again = coho__arena_alloc(a, 64);
    assert_ptr_equal(again, first);
    assert_int_equal(coho__arena_used(a), 64);
    for (i = 0; i < 5; i++) {
        coho__arena_reset(a);
        assert_int_equal(coho__arena_reserved(a), 1024);
    }
    coho__arena_destroy(a);
}

static void arena_reset_of_unused_arena_is_harmless(void **state)
{
    coho__arena_t *a = coho__arena_create(0);

    (void)state;
    coho__arena_reset(a);
    assert_int_equal(coho__arena_used(a), 0);
    assert_int_equal(coho__arena_reserved(a), 0);
    assert_non_null(coho__arena_alloc(a, 10));
    coho__arena_destroy(a);
    coho__arena_destroy(NULL);
}

static void arena_zero_size_request_is_einval(void **state)
{
    coho__arena_t *a = coho__arena_create(0);

    (void)state;
    errno = 0;
    assert_null(coho__arena_alloc(a, 0));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(coho__arena_alloc_aligned(a, 0, 64));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(coho__arena_alloc_array(a, 0, 8));
    assert_int_equal(errno, EINVAL);
    assert_int_equal(coho__arena_used(a), 0);
    coho__arena_destroy(a);
}

static void arena_oversized_or_overflowing_request_is_einval(void **state)
{
    coho__arena_t *a = coho__arena_create(0);

    (void)state;
    errno = 0;
    assert_null(coho__arena_alloc(a, SIZE_MAX));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(coho__arena_alloc(a, (size_t)PTRDIFF_MAX + 1));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(coho__arena_alloc_array(a, SIZE_MAX / 2, 3));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(coho__arena_alloc_aligned(a, 16, 24)); /* not a power of two */
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(coho__arena_alloc_aligned(a, 16, 8192)); /* above the largest alignment */
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(coho__arena_strdup(a, NULL));
    assert_int_equal(errno, EINVAL);
    assert_int_equal(coho__arena_used(a), 0);
    /* and the arena still works */
    assert_non_null(coho__arena_alloc(a, 16));
    coho__arena_destroy(a);
}

static void arena_memory_exhaustion_is_enomem(void **state)
{
    coho__arena_t *a = coho__arena_create(0);

    (void)state;
    errno = 0;
    /* below PTRDIFF_MAX, so valid, but no machine has it */
    assert_null(coho__arena_alloc(a, (size_t)PTRDIFF_MAX - 8192));
    assert_int_equal(errno, ENOMEM);
    coho__arena_destroy(a);
}

static void arena_create_with_bad_block_size_is_einval(void **state)
{
    (void)state;
    errno = 0;
    assert_null(coho__arena_create(1));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(coho__arena_create(255));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(coho__arena_create(SIZE_MAX));
    assert_int_equal(errno, EINVAL);
    coho__arena_destroy(coho__arena_create(256));
}

static void arena_alloc_array_is_zeroed(void **state)
{
    coho__arena_t *a = coho__arena_create(1024);
    unsigned char *p;
    uint32_t *q;
    int i;

    (void)state;
    p = coho__arena_alloc(a, 500);
    memset(p, 0xff, 500);
    coho__arena_reset(a);
    q = coho__arena_alloc_array(a, 100, sizeof(*q)); /* lands on the dirtied memory */
    assert_non_null(q);
    for (i = 0; i < 100; i++)
        assert_int_equal(q[i], 0);
    coho__arena_destroy(a);
}

static void arena_strdup_copies_string(void **state)
{
    coho__arena_t *a = coho__arena_create(0);
    char buf[] = "coroutine";
    char *d;

    (void)state;
    d = coho__arena_strdup(a, buf);
    buf[0] = 'X';
    assert_string_equal(d, "coroutine");
    assert_string_equal(coho__arena_strdup(a, ""), "");
    coho__arena_destroy(a);
}

static void arena_memory_dropped_by_reset_is_poisoned_under_asan(void **state)
{
    (void)state;
#if defined(__SANITIZE_ADDRESS__)
    coho__arena_t *a = coho__arena_create(1024);
    unsigned char *p = coho__arena_alloc(a, 32);

    assert_false(__asan_address_is_poisoned(p));
    assert_false(__asan_address_is_poisoned(p + 31));
    assert_true(__asan_address_is_poisoned(p + 32)); /* the free tail of the block */
    coho__arena_reset(a);
    assert_true(__asan_address_is_poisoned(p));
    coho__arena_destroy(a);
#else
    skip();
#endif
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(arena_small_allocations_are_aligned_and_disjoint),
        cmocka_unit_test(arena_alloc_aligned_honours_alignment),
        cmocka_unit_test(arena_large_allocation_gets_its_own_block),
        cmocka_unit_test(arena_reset_releases_all_but_one_block),
        cmocka_unit_test(arena_reset_of_unused_arena_is_harmless),
        cmocka_unit_test(arena_zero_size_request_is_einval),
        cmocka_unit_test(arena_oversized_or_overflowing_request_is_einval),
        cmocka_unit_test(arena_memory_exhaustion_is_enomem),
        cmocka_unit_test(arena_create_with_bad_block_size_is_einval),
        cmocka_unit_test(arena_alloc_array_is_zeroed),
        cmocka_unit_test(arena_strdup_copies_string),
        cmocka_unit_test(arena_memory_dropped_by_reset_is_poisoned_under_asan),
    };

    return coho_test_main("arena", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
