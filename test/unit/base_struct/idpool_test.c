/* SPDX-License-Identifier: MIT */
/* Tests of the node pool's public face (<coho/idpool.h>): ids, stale ids, the errno
 * convention, the cap, iteration. The pool itself is tested in pool_test.c. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <coho.h>

#include "test/support/cmocka_main.h"

static void idpool_alloc_gives_zeroed_node_reachable_by_its_id(void **state)
{
    coho_idpool_t *p = coho_idpool_create(40, 4, 0);
    void *node = NULL;
    uint64_t id;

    (void)state;
    assert_non_null(p);
    id = coho_idpool_alloc(p, &node);
    assert_int_not_equal(id, 0);
    assert_non_null(node);
    assert_true(((uintptr_t)node & 15) == 0);
    for (size_t i = 0; i < 40; i++)
        assert_int_equal(((unsigned char *)node)[i], 0);
    assert_ptr_equal(coho_idpool_get(p, id), node);
    assert_int_equal(coho_idpool_count(p), 1);
    coho_idpool_destroy(p);
}

static void idpool_stale_id_resolves_to_null_after_reuse(void **state)
{
    coho_idpool_t *p = coho_idpool_create(16, 0, 0);
    void *a = NULL, *b = NULL;
    uint64_t old_id, new_id;

    (void)state;
    assert_non_null(p);
    old_id = coho_idpool_alloc(p, &a);
    assert_int_equal(coho_idpool_free(p, old_id), 0);
    new_id = coho_idpool_alloc(p, &b);
    assert_ptr_equal(a, b); /* the slot is reused ... */
    assert_int_not_equal(old_id, new_id);
    assert_null(coho_idpool_get(p, old_id)); /* ... but the old id never reaches its tenant */
    assert_ptr_equal(coho_idpool_get(p, new_id), b);
    assert_null(coho_idpool_get(p, 0));
    coho_idpool_destroy(p);
}

static void idpool_free_of_stale_id_is_enoent(void **state)
{
    coho_idpool_t *p = coho_idpool_create(16, 0, 0);
    uint64_t id;

    (void)state;
    assert_non_null(p);
    id = coho_idpool_alloc(p, NULL);
    assert_int_not_equal(id, 0);
    assert_int_equal(coho_idpool_free(p, id), 0);
    errno = 0;
    assert_int_equal(coho_idpool_free(p, id), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(coho_idpool_count(p), 0);
    coho_idpool_destroy(p);
}

static void idpool_alloc_past_max_count_is_eagain(void **state)
{
    coho_idpool_t *p = coho_idpool_create(8, 0, 2);

    (void)state;
    assert_non_null(p);
    assert_int_not_equal(coho_idpool_alloc(p, NULL), 0);
    assert_int_not_equal(coho_idpool_alloc(p, NULL), 0);
    errno = 0;
    assert_int_equal(coho_idpool_alloc(p, NULL), 0);
    assert_int_equal(errno, EAGAIN);
    coho_idpool_destroy(p);
}

static void idpool_create_with_zero_node_size_is_einval(void **state)
{
    (void)state;
    errno = 0;
    assert_null(coho_idpool_create(0, 0, 0));
    assert_int_equal(errno, EINVAL);
    coho_idpool_destroy(NULL); /* a no-op */
}

static void count_and_free(uint64_t id, void *node, void *arg)
{
    struct {
        coho_idpool_t *p;
        unsigned seen;
    } *ctx = arg;

    (void)node;
    ctx->seen++;
    assert_int_equal(coho_idpool_free(ctx->p, id), 0);
}

static void idpool_for_each_visits_every_live_node_and_may_free_it(void **state)
{
    struct {
        coho_idpool_t *p;
        unsigned seen;
    } ctx = {coho_idpool_create(24, 2, 0), 0};
    uint64_t ids[5];

    (void)state;
    assert_non_null(ctx.p);
    for (int i = 0; i < 5; i++)
        ids[i] = coho_idpool_alloc(ctx.p, NULL);
    assert_int_equal(coho_idpool_free(ctx.p, ids[2]), 0);
    coho_idpool_for_each(ctx.p, count_and_free, &ctx);
    assert_int_equal(ctx.seen, 4);
    assert_int_equal(coho_idpool_count(ctx.p), 0);
    coho_idpool_destroy(ctx.p);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(idpool_alloc_gives_zeroed_node_reachable_by_its_id),
        cmocka_unit_test(idpool_stale_id_resolves_to_null_after_reuse),
        cmocka_unit_test(idpool_free_of_stale_id_is_enoent),
        cmocka_unit_test(idpool_alloc_past_max_count_is_eagain),
        cmocka_unit_test(idpool_create_with_zero_node_size_is_einval),
        cmocka_unit_test(idpool_for_each_visits_every_live_node_and_may_free_it),
    };

    return coho_test_main("idpool", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
