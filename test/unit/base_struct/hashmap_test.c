/* SPDX-License-Identifier: MIT */
/* Tests of the u64 -> pointer open-addressing map: put/get/del/replace, growth, backward-shift
 * deletion among colliding keys, iteration, bad input, and a randomized model comparison. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base_struct/hashmap.h"
#include "test/support/cmocka_main.h"

/* Distinct non-NULL values that need no storage. */
#define VAL(n) ((void *)(uintptr_t)(0x1000 + (uintptr_t)(n)*16))

static void hashmap_get_of_absent_key_is_null(void **state)
{
    coho__hashmap_t m;

    (void)state;
    assert_int_equal(coho__hashmap_init(&m, 0), 0);
    assert_null(coho__hashmap_get(&m, 0));
    assert_null(coho__hashmap_get(&m, 42));
    assert_null(coho__hashmap_del(&m, 42));
    assert_int_equal(coho__hashmap_put(&m, 1, VAL(1), NULL), 0);
    assert_null(coho__hashmap_get(&m, 2));
    assert_null(coho__hashmap_get(&m, 0));
    assert_null(coho__hashmap_del(&m, 2));
    assert_int_equal(coho__hashmap_count(&m), 1);
    coho__hashmap_destroy(&m);
}

static void hashmap_put_then_get_returns_value(void **state)
{
    coho__hashmap_t m;
    uint64_t k;

    (void)state;
    assert_int_equal(coho__hashmap_init(&m, 0), 0);
    for (k = 0; k < 1000; k++)
        assert_int_equal(coho__hashmap_put(&m, k * 7919, VAL(k), NULL), 0);
    assert_int_equal(coho__hashmap_count(&m), 1000);
    for (k = 0; k < 1000; k++)
        assert_ptr_equal(coho__hashmap_get(&m, k * 7919), VAL(k));
    coho__hashmap_destroy(&m);
}

static void hashmap_put_of_existing_key_replaces_and_returns_old(void **state)
{
    coho__hashmap_t m;
    void *old = VAL(99);

    (void)state;
    assert_int_equal(coho__hashmap_init(&m, 4), 0);
    assert_int_equal(coho__hashmap_put(&m, 5, VAL(1), &old), 0);
    assert_null(old);
    assert_int_equal(coho__hashmap_put(&m, 5, VAL(2), &old), 1);
    assert_ptr_equal(old, VAL(1));
    assert_ptr_equal(coho__hashmap_get(&m, 5), VAL(2));
    assert_int_equal(coho__hashmap_put(&m, 5, VAL(3), NULL), 1);
    assert_ptr_equal(coho__hashmap_get(&m, 5), VAL(3));
    assert_int_equal(coho__hashmap_count(&m), 1);
    coho__hashmap_destroy(&m);
}

static void hashmap_put_of_null_value_is_einval(void **state)
{
    coho__hashmap_t m;
    void *old = VAL(1);

    (void)state;
    assert_int_equal(coho__hashmap_init(&m, 0), 0);
    assert_int_equal(coho__hashmap_put(&m, 5, NULL, &old), -EINVAL);
    assert_null(old);
    assert_int_equal(coho__hashmap_count(&m), 0);
    assert_int_equal(coho__hashmap_put(&m, 5, VAL(1), NULL), 0);
    assert_int_equal(coho__hashmap_put(&m, 5, NULL, NULL), -EINVAL);
    assert_ptr_equal(coho__hashmap_get(&m, 5), VAL(1)); /* unchanged */
    coho__hashmap_destroy(&m);
}

static void hashmap_zero_and_max_keys_are_ordinary_keys(void **state)
{
    coho__hashmap_t m;

    (void)state;
    assert_int_equal(coho__hashmap_init(&m, 0), 0);
    assert_int_equal(coho__hashmap_put(&m, 0, VAL(0), NULL), 0);
    assert_int_equal(coho__hashmap_put(&m, UINT64_MAX, VAL(1), NULL), 0);
    assert_ptr_equal(coho__hashmap_get(&m, 0), VAL(0));
    assert_ptr_equal(coho__hashmap_get(&m, UINT64_MAX), VAL(1));
    assert_ptr_equal(coho__hashmap_del(&m, 0), VAL(0));
    assert_null(coho__hashmap_get(&m, 0));
    assert_ptr_equal(coho__hashmap_get(&m, UINT64_MAX), VAL(1));
    coho__hashmap_destroy(&m);
}

static void hashmap_del_returns_value_and_key_becomes_absent(void **state)
{
    coho__hashmap_t m;
    uint64_t k;

    (void)state;
    assert_int_equal(coho__hashmap_init(&m, 0), 0);
    for (k = 1; k <= 100; k++)
        assert_int_equal(coho__hashmap_put(&m, k, VAL(k), NULL), 0);
    for (k = 1; k <= 100; k += 2)
        assert_ptr_equal(coho__hashmap_del(&m, k), VAL(k));
    assert_int_equal(coho__hashmap_count(&m), 50);
    for (k = 1; k <= 100; k++) {
        if (k % 2)
            assert_null(coho__hashmap_get(&m, k));
        else
            assert_ptr_equal(coho__hashmap_get(&m, k), VAL(k));
    }
    assert_null(coho__hashmap_del(&m, 1)); /* already gone */
    assert_int_equal(coho__hashmap_count(&m), 50);
    coho__hashmap_destroy(&m);
}

static void hashmap_grows_past_load_factor_keeping_entries(void **state)
{
    coho__hashmap_t m;
    uint64_t k;

    (void)state;
    assert_int_equal(coho__hashmap_init(&m, 0), 0);
    for (k = 0; k < 100000; k++) {
        assert_int_equal(coho__hashmap_put(&m, k << 32, VAL(k), NULL), 0);
        /* load stays at or below 3/4 */
        assert_true(coho__hashmap_count(&m) * 4 <= (m.mask + 1) * 3);
    }
    for (k = 0; k < 100000; k++)
        assert_ptr_equal(coho__hashmap_get(&m, k << 32), VAL(k));
    coho__hashmap_destroy(&m);
}

static void hashmap_replace_at_full_load_does_not_grow(void **state)
{
    coho__hashmap_t m;
    coho__hashmap_slot_t *table;
    uint64_t k;

    (void)state;
    assert_int_equal(coho__hashmap_init(&m, 6), 0);
    assert_int_equal(m.mask + 1, 8);
    for (k = 0; k < 6; k++) /* 6 of 8 slots: the 3/4 limit */
        assert_int_equal(coho__hashmap_put(&m, k, VAL(k), NULL), 0);
    table = m.slots;
    for (k = 0; k < 6; k++)
        assert_int_equal(coho__hashmap_put(&m, k, VAL(k + 10), NULL), 1);
    assert_ptr_equal(m.slots, table);
    assert_int_equal(m.mask + 1, 8);
    assert_int_equal(coho__hashmap_put(&m, 6, VAL(6), NULL), 0); /* a new key does grow */
    assert_int_equal(m.mask + 1, 16);
    for (k = 0; k < 6; k++)
        assert_ptr_equal(coho__hashmap_get(&m, k), VAL(k + 10));
    coho__hashmap_destroy(&m);
}

static void hashmap_reserve_avoids_growth(void **state)
{
    coho__hashmap_t m;
    coho__hashmap_slot_t *table;
    uint64_t k;

    (void)state;
    assert_int_equal(coho__hashmap_init(&m, 1000), 0);
    table = m.slots;
    for (k = 0; k < 1000; k++)
        assert_int_equal(coho__hashmap_put(&m, k, VAL(k), NULL), 0);
    assert_ptr_equal(m.slots, table);
    assert_int_equal(coho__hashmap_reserve(&m, 10), 0); /* never shrinks */
    assert_ptr_equal(m.slots, table);
    assert_int_equal(coho__hashmap_reserve(&m, 5000), 0);
    for (k = 0; k < 1000; k++)
        assert_ptr_equal(coho__hashmap_get(&m, k), VAL(k));
    coho__hashmap_destroy(&m);
}

static void hashmap_oversized_reserve_is_einval(void **state)
{
    coho__hashmap_t m;

    (void)state;
    assert_int_equal(coho__hashmap_init(&m, SIZE_MAX), -EINVAL);
    assert_int_equal(coho__hashmap_count(&m), 0);
    assert_null(coho__hashmap_get(&m, 1));
    assert_int_equal(coho__hashmap_reserve(&m, SIZE_MAX / 2), -EINVAL);
    assert_int_equal(coho__hashmap_put(&m, 1, VAL(1), NULL), 0); /* still usable */
    assert_int_equal(coho__hashmap_reserve(&m, SIZE_MAX / 16), -EINVAL);
    assert_ptr_equal(coho__hashmap_get(&m, 1), VAL(1));
    coho__hashmap_destroy(&m);
}

/* The table slot a key lands in when alone in a fresh 8-slot map (found by iteration). */
static size_t home_in_8(uint64_t key)
{
    coho__hashmap_t m;
    size_t pos = 0;

    assert_int_equal(coho__hashmap_init(&m, 1), 0);
    assert_int_equal(m.mask + 1, 8);
    assert_int_equal(coho__hashmap_put(&m, key, VAL(1), NULL), 0);
    assert_true(coho__hashmap_next(&m, &pos, NULL, NULL));
    coho__hashmap_destroy(&m);
    return pos - 1;
}

/* Colliding keys around the end of the table (wrap-around): deleting any of them, in any
 * order, leaves the others reachable. Exercises every branch of the backward shift. */
static void hashmap_del_keeps_colliding_entries_reachable(void **state)
{
    uint64_t at7[3], at0[2], k;
    int n7 = 0, n0 = 0, order;

    (void)state;
    for (k = 1; n7 < 3 || n0 < 2; k++) {
        size_t h = home_in_8(k);

        if (h == 7 && n7 < 3)
            at7[n7++] = k;
        else if (h == 0 && n0 < 2)
            at0[n0++] = k;
    }
    /* slots: 7:a 0:b 1:c (homes 7), then d e (home 0) at 2 and 3; 6 entries fit in 8 */
    for (order = 0; order < 5 * 4 * 3 * 2; order++) {
        uint64_t keys[5] = {at7[0], at7[1], at7[2], at0[0], at0[1]};
        bool gone[5] = {false};
        coho__hashmap_t m;
        int step, o = order, i;

        assert_int_equal(coho__hashmap_init(&m, 5), 0);
        assert_int_equal(m.mask + 1, 8);
        for (i = 0; i < 5; i++)
            assert_int_equal(coho__hashmap_put(&m, keys[i], VAL(i), NULL), 0);
        for (step = 5; step > 1; step--) {
            int pick = o % step, j = -1;

            o /= step;
            for (i = 0; i < 5; i++) {
                if (!gone[i] && pick-- == 0) {
                    j = i;
                    break;
                }
            }
            assert_ptr_equal(coho__hashmap_del(&m, keys[j]), VAL(j));
            gone[j] = true;
            for (i = 0; i < 5; i++) {
                if (gone[i])
                    assert_null(coho__hashmap_get(&m, keys[i]));
                else
                    assert_ptr_equal(coho__hashmap_get(&m, keys[i]), VAL(i));
            }
        }
        assert_int_equal(coho__hashmap_count(&m), 1);
        coho__hashmap_destroy(&m);
    }
}

static void hashmap_iteration_visits_every_entry_once(void **state)
{
    enum { N = 777 };
    coho__hashmap_t m;
    int seen[N] = {0};
    size_t pos = 0, visits = 0;
    uint64_t key;
    void *value;
    int i;

    (void)state;
    assert_int_equal(coho__hashmap_init(&m, 0), 0);
    assert_false(coho__hashmap_next(&m, &pos, &key, &value)); /* nothing allocated yet */
    for (i = 0; i < N; i++)
        assert_int_equal(coho__hashmap_put(&m, (uint64_t)i * 1000003, VAL(i), NULL), 0);
    while (coho__hashmap_next(&m, &pos, &key, &value)) {
        assert_int_equal(key % 1000003, 0);
        assert_ptr_equal(value, VAL(key / 1000003));
        seen[key / 1000003]++;
        visits++;
    }
    assert_int_equal(visits, N);
    for (i = 0; i < N; i++)
        assert_int_equal(seen[i], 1);
    assert_false(coho__hashmap_next(&m, &pos, &key, &value)); /* stays at the end */
    coho__hashmap_destroy(&m);
}

static void hashmap_clear_removes_everything_keeps_table(void **state)
{
    coho__hashmap_t m;
    coho__hashmap_slot_t *table;
    size_t pos = 0;
    uint64_t k;

    (void)state;
    assert_int_equal(coho__hashmap_init(&m, 0), 0);
    coho__hashmap_clear(&m); /* empty, unallocated: harmless */
    for (k = 0; k < 100; k++)
        assert_int_equal(coho__hashmap_put(&m, k, VAL(k), NULL), 0);
    table = m.slots;
    coho__hashmap_clear(&m);
    assert_int_equal(coho__hashmap_count(&m), 0);
    assert_ptr_equal(m.slots, table);
    for (k = 0; k < 100; k++)
        assert_null(coho__hashmap_get(&m, k));
    assert_false(coho__hashmap_next(&m, &pos, NULL, NULL));
    assert_int_equal(coho__hashmap_put(&m, 3, VAL(3), NULL), 0);
    assert_ptr_equal(coho__hashmap_get(&m, 3), VAL(3));
    coho__hashmap_destroy(&m);
    coho__hashmap_destroy(&m); /* a destroyed map is empty; destroying again is harmless */
}

/* Random put / replace / del / get against a direct-indexed model over a fixed key set (random
 * 64-bit keys plus 0 and UINT64_MAX), with heavy churn so tables grow and entries shift. */
static void hashmap_randomized_ops_match_model(void **state)
{
    enum { K = 5000, OPS = 400000 };
    uint64_t rng = coho_test_seed();
    uint64_t *keys = calloc(K, sizeof(*keys));
    void **model = calloc(K, sizeof(*model));
    size_t count = 0;
    coho__hashmap_t m;
    int i, op;

    (void)state;
    for (i = 0; i < K; i++)
        keys[i] = coho_test_rand(&rng);
    keys[0] = 0;
    keys[1] = UINT64_MAX;
    for (i = 0; i < K / 2; i++) /* keys that differ only in their high bits, like pool ids */
        keys[2 + i] = (uint64_t)(i + 1) << 32 | 7;
    assert_int_equal(coho__hashmap_init(&m, 0), 0);
    for (op = 0; op < OPS; op++) {
        uint64_t r = coho_test_rand(&rng);
        /* a sliding window of keys makes the map grow, then shrink its live set */
        size_t span = 50 + (size_t)(op / 100) % (K - 50);
        size_t k = (size_t)(r >> 16) % span;

        switch (r % 4) {
        case 0: { /* put (add or replace) */
            void *old = VAL(12345), *v = VAL(op + 1);
            int rc = coho__hashmap_put(&m, keys[k], v, &old);

            assert_int_equal(rc, model[k] != NULL ? 1 : 0);
            assert_ptr_equal(old, model[k]);
            if (model[k] == NULL)
                count++;
            model[k] = v;
            break;
        }
        case 1: /* del */
            assert_ptr_equal(coho__hashmap_del(&m, keys[k]), model[k]);
            if (model[k] != NULL)
                count--;
            model[k] = NULL;
            break;
        default: /* get */
            assert_ptr_equal(coho__hashmap_get(&m, keys[k]), model[k]);
            break;
        }
        assert_int_equal(coho__hashmap_count(&m), count);
        if (op % 50000 == 0 || op == OPS - 1) {
            size_t pos = 0, visits = 0;
            uint64_t key;
            void *value;

            for (i = 0; i < K; i++)
                assert_ptr_equal(coho__hashmap_get(&m, keys[i]), model[i]);
            while (coho__hashmap_next(&m, &pos, &key, &value))
                visits++;
            assert_int_equal(visits, count);
        }
    }
    coho__hashmap_destroy(&m);
    free(keys);
    free(model);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hashmap_get_of_absent_key_is_null),
        cmocka_unit_test(hashmap_put_then_get_returns_value),
        cmocka_unit_test(hashmap_put_of_existing_key_replaces_and_returns_old),
        cmocka_unit_test(hashmap_put_of_null_value_is_einval),
        cmocka_unit_test(hashmap_zero_and_max_keys_are_ordinary_keys),
        cmocka_unit_test(hashmap_del_returns_value_and_key_becomes_absent),
        cmocka_unit_test(hashmap_grows_past_load_factor_keeping_entries),
        cmocka_unit_test(hashmap_replace_at_full_load_does_not_grow),
        cmocka_unit_test(hashmap_reserve_avoids_growth),
        cmocka_unit_test(hashmap_oversized_reserve_is_einval),
        cmocka_unit_test(hashmap_del_keeps_colliding_entries_reachable),
        cmocka_unit_test(hashmap_iteration_visits_every_entry_once),
        cmocka_unit_test(hashmap_clear_removes_everything_keeps_table),
        cmocka_unit_test(hashmap_randomized_ops_match_model),
    };

    return coho_test_main("hashmap", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
