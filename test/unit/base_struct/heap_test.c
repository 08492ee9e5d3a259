/* SPDX-License-Identifier: MIT */
/* Tests of the intrusive 4-ary min-heap: ordering, removal and update of any element, misuse
 * answers, and a randomized comparison against a plain array model. */
#include <errno.h>
#include <stdlib.h>

#include "base_struct/heap.h"
#include "test/support/cmocka_main.h"

typedef struct item {
    coho__heap_node_t node;
    int key;
    int id;
} item_t;

static bool item_less(const coho__heap_node_t *a, const coho__heap_node_t *b)
{
    const item_t *x = (const item_t *)((const char *)a - offsetof(item_t, node));
    const item_t *y = (const item_t *)((const char *)b - offsetof(item_t, node));

    return x->key < y->key;
}

static item_t *item_of(coho__heap_node_t *n)
{
    return n == NULL ? NULL : (item_t *)((char *)n - offsetof(item_t, node));
}

/* Every node knows its index, and no child comes out before its parent. */
static void check_heap_shape(const coho__heap_t *h)
{
    size_t i;

    for (i = 0; i < h->count; i++) {
        assert_int_equal(h->nodes[i]->index, i);
        if (i > 0)
            assert_false(h->less(h->nodes[i], h->nodes[(i - 1) / 4]));
    }
}

static void heap_pop_returns_elements_in_ascending_order(void **state)
{
    enum { N = 1000 };
    item_t *items = calloc(N, sizeof(*items));
    coho__heap_t h;
    int i, prev = -1;

    (void)state;
    coho__heap_init(&h, item_less);
    for (i = 0; i < N; i++) {
        items[i].key = (i * 7919) % N; /* a permutation of 0..N-1 */
        coho__heap_node_init(&items[i].node);
        assert_int_equal(coho__heap_push(&h, &items[i].node), 0);
    }
    assert_int_equal(coho__heap_count(&h), N);
    check_heap_shape(&h);
    for (i = 0; i < N; i++) {
        item_t *it = item_of(coho__heap_pop(&h));

        assert_non_null(it);
        assert_int_equal(it->key, prev + 1);
        assert_false(coho__heap_node_is_in(&it->node));
        prev = it->key;
    }
    assert_int_equal(coho__heap_count(&h), 0);
    coho__heap_destroy(&h);
    free(items);
}

static void heap_top_and_pop_of_empty_heap_return_null(void **state)
{
    coho__heap_t h;
    item_t a = {.key = 1};

    (void)state;
    coho__heap_init(&h, item_less);
    assert_null(coho__heap_top(&h));
    assert_null(coho__heap_pop(&h));
    coho__heap_node_init(&a.node);
    assert_int_equal(coho__heap_push(&h, &a.node), 0);
    assert_ptr_equal(coho__heap_pop(&h), &a.node);
    assert_null(coho__heap_top(&h));
    assert_null(coho__heap_pop(&h));
    coho__heap_destroy(&h);
    coho__heap_destroy(&h); /* a destroyed heap is empty; destroying again is harmless */
}

static void heap_top_is_minimum_without_removing_it(void **state)
{
    coho__heap_t h;
    item_t a = {.key = 5}, b = {.key = 2}, c = {.key = 9};

    (void)state;
    coho__heap_init(&h, item_less);
    coho__heap_node_init(&a.node);
    coho__heap_node_init(&b.node);
    coho__heap_node_init(&c.node);
    assert_int_equal(coho__heap_push(&h, &a.node), 0);
    assert_int_equal(coho__heap_push(&h, &b.node), 0);
    assert_int_equal(coho__heap_push(&h, &c.node), 0);
    assert_ptr_equal(coho__heap_top(&h), &b.node);
    assert_ptr_equal(coho__heap_top(&h), &b.node);
    assert_int_equal(coho__heap_count(&h), 3);
    coho__heap_destroy(&h);
}

static void heap_push_of_node_already_in_a_heap_is_ealready(void **state)
{
    coho__heap_t h1, h2;
    item_t a = {.key = 1};

    (void)state;
    coho__heap_init(&h1, item_less);
    coho__heap_init(&h2, item_less);
    coho__heap_node_init(&a.node);
    assert_int_equal(coho__heap_push(&h1, &a.node), 0);
    assert_int_equal(coho__heap_push(&h1, &a.node), -EALREADY);
    assert_int_equal(coho__heap_push(&h2, &a.node), -EALREADY);
    assert_int_equal(coho__heap_count(&h1), 1);
    assert_int_equal(coho__heap_count(&h2), 0);
    coho__heap_destroy(&h1);
    coho__heap_destroy(&h2);
}

static void heap_remove_of_node_not_in_heap_is_enoent(void **state)
{
    coho__heap_t h1, h2;
    item_t a = {.key = 1}, b = {.key = 2}, loose = {.key = 3};

    (void)state;
    coho__heap_init(&h1, item_less);
    coho__heap_init(&h2, item_less);
    coho__heap_node_init(&a.node);
    coho__heap_node_init(&b.node);
    coho__heap_node_init(&loose.node);
    assert_int_equal(coho__heap_push(&h1, &a.node), 0);
    assert_int_equal(coho__heap_push(&h2, &b.node), 0);
    /* never pushed; in another heap at an index h1 also has; already removed */
    assert_int_equal(coho__heap_remove(&h1, &loose.node), -ENOENT);
    assert_int_equal(coho__heap_remove(&h1, &b.node), -ENOENT);
    assert_int_equal(coho__heap_update(&h1, &b.node), -ENOENT);
    assert_int_equal(coho__heap_update(&h1, &loose.node), -ENOENT);
    assert_int_equal(coho__heap_remove(&h1, &a.node), 0);
    assert_false(coho__heap_node_is_in(&a.node));
    assert_int_equal(coho__heap_remove(&h1, &a.node), -ENOENT);
    assert_int_equal(coho__heap_count(&h1), 0);
    assert_int_equal(coho__heap_count(&h2), 1);
    assert_ptr_equal(coho__heap_top(&h2), &b.node);
    coho__heap_destroy(&h1);
    coho__heap_destroy(&h2);
}

static void heap_remove_of_any_element_keeps_order(void **state)
{
    enum { N = 200 };
    item_t items[N];
    coho__heap_t h;
    int i, prev = -1, seen = 0;

    (void)state;
    coho__heap_init(&h, item_less);
    for (i = 0; i < N; i++) {
        items[i].key = (i * 37) % N;
        coho__heap_node_init(&items[i].node);
        assert_int_equal(coho__heap_push(&h, &items[i].node), 0);
    }
    /* remove every third element, from wherever it sits: root, inner node or leaf */
    for (i = 0; i < N; i += 3) {
        assert_int_equal(coho__heap_remove(&h, &items[i].node), 0);
        assert_false(coho__heap_node_is_in(&items[i].node));
        check_heap_shape(&h);
    }
    while (coho__heap_count(&h) > 0) {
        item_t *it = item_of(coho__heap_pop(&h));

        assert_true(it->key > prev);
        assert_int_not_equal((it - items) % 3, 0);
        prev = it->key;
        seen++;
    }
    assert_int_equal(seen, N - (N + 2) / 3);
    coho__heap_destroy(&h);
}

static void heap_update_after_key_change_restores_order(void **state)
{
    enum { N = 64 };
    item_t items[N];
    coho__heap_t h;
    int i;

    (void)state;
    coho__heap_init(&h, item_less);
    for (i = 0; i < N; i++) {
        items[i].key = i * 10;
        coho__heap_node_init(&items[i].node);
        assert_int_equal(coho__heap_push(&h, &items[i].node), 0);
    }
    items[50].key = -1; /* decrease: must rise to the top */
    assert_int_equal(coho__heap_update(&h, &items[50].node), 0);
    check_heap_shape(&h);
    assert_ptr_equal(coho__heap_top(&h), &items[50].node);
    items[50].key = 10000; /* increase: must sink to the bottom */
    assert_int_equal(coho__heap_update(&h, &items[50].node), 0);
    check_heap_shape(&h);
    items[0].key = 5000; /* the root increases */
    assert_int_equal(coho__heap_update(&h, &items[0].node), 0);
    check_heap_shape(&h);
    assert_ptr_equal(coho__heap_top(&h), &items[1].node);
    assert_int_equal(coho__heap_update(&h, &items[1].node), 0); /* unchanged key: no-op */
    check_heap_shape(&h);
    for (i = 0; i < N - 1; i++)
        (void)coho__heap_pop(&h);
    assert_ptr_equal(coho__heap_pop(&h), &items[50].node);
    coho__heap_destroy(&h);
}

static void heap_equal_keys_all_come_out(void **state)
{
    enum { N = 100 };
    item_t items[N];
    coho__heap_t h;
    int seen[N] = {0};
    int i;

    (void)state;
    coho__heap_init(&h, item_less);
    for (i = 0; i < N; i++) {
        items[i].key = i % 3;
        items[i].id = i;
        coho__heap_node_init(&items[i].node);
        assert_int_equal(coho__heap_push(&h, &items[i].node), 0);
    }
    for (i = 0; i < N; i++) {
        item_t *it = item_of(coho__heap_pop(&h));

        assert_int_equal(it->key, i < 34 ? 0 : (i < 67 ? 1 : 2));
        seen[it->id]++;
    }
    for (i = 0; i < N; i++)
        assert_int_equal(seen[i], 1);
    coho__heap_destroy(&h);
}

static void heap_removed_node_can_be_pushed_again(void **state)
{
    coho__heap_t h;
    item_t a = {.key = 4}, b = {.key = 6};

    (void)state;
    coho__heap_init(&h, item_less);
    coho__heap_node_init(&a.node);
    coho__heap_node_init(&b.node);
    assert_int_equal(coho__heap_push(&h, &a.node), 0);
    assert_int_equal(coho__heap_push(&h, &b.node), 0);
    assert_int_equal(coho__heap_remove(&h, &a.node), 0);
    a.key = 8;
    assert_int_equal(coho__heap_push(&h, &a.node), 0);
    assert_ptr_equal(coho__heap_pop(&h), &b.node);
    assert_ptr_equal(coho__heap_pop(&h), &a.node);
    assert_int_equal(coho__heap_push(&h, &a.node), 0);
    assert_ptr_equal(coho__heap_pop(&h), &a.node);
    coho__heap_destroy(&h);
}

/* Random push / pop / remove / update against a model: an array of the items in the heap.
 * The popped key must be the model's minimum; the shape is checked throughout. */
static void heap_randomized_ops_match_sorted_model(void **state)
{
    enum { N = 2000, OPS = 200000 };
    uint64_t rng = coho_test_seed();
    item_t *items = calloc(N, sizeof(*items));
    int *model = calloc(N, sizeof(*model)); /* ids of the items in the heap */
    int *where = calloc(N, sizeof(*where)); /* index of each id in model, -1 when out */
    int n = 0, i, op;
    coho__heap_t h;

    (void)state;
    assert_non_null(items);
    assert_non_null(model);
    assert_non_null(where);
    coho__heap_init(&h, item_less);
    for (i = 0; i < N; i++) {
        items[i].id = i;
        where[i] = -1;
        coho__heap_node_init(&items[i].node);
    }
    for (op = 0; op < OPS; op++) {
        uint64_t r = coho_test_rand(&rng);
        int id = (int)((r >> 8) % N);
        item_t *it = &items[id];

        switch (r % 8) {
        case 0:
        case 1:
        case 2: /* push (or -EALREADY when it is in) */
            if (where[id] >= 0) {
                assert_int_equal(coho__heap_push(&h, &it->node), -EALREADY);
                break;
            }
            it->key = (int)((r >> 32) % 5000);
            assert_int_equal(coho__heap_push(&h, &it->node), 0);
            where[id] = n;
            model[n++] = id;
            break;
        case 3:
        case 4: { /* pop: the minimum of the model */
            int min = -1, k;
            item_t *got = item_of(coho__heap_pop(&h));

            for (k = 0; k < n; k++) {
                if (min < 0 || items[model[k]].key < items[min].key)
                    min = model[k];
            }
            if (min < 0) {
                assert_null(got);
                break;
            }
            assert_non_null(got);
            assert_int_equal(got->key, items[min].key);
            assert_true(where[got->id] >= 0);
            k = where[got->id];
            model[k] = model[--n];
            where[model[k]] = k;
            where[got->id] = -1;
            break;
        }
        case 5: /* remove an arbitrary element */
            if (where[id] < 0) {
                assert_int_equal(coho__heap_remove(&h, &it->node), -ENOENT);
                break;
            }
            assert_int_equal(coho__heap_remove(&h, &it->node), 0);
            model[where[id]] = model[--n];
            where[model[where[id]]] = where[id];
            where[id] = -1;
            break;
        default: /* change the key of an element and update */
            if (where[id] < 0) {
                assert_int_equal(coho__heap_update(&h, &it->node), -ENOENT);
                break;
            }
            it->key = (int)((r >> 32) % 5000);
            assert_int_equal(coho__heap_update(&h, &it->node), 0);
            break;
        }
        assert_int_equal(coho__heap_count(&h), n);
        if (op % 997 == 0)
            check_heap_shape(&h);
    }
    check_heap_shape(&h);
    /* drain: keys come out sorted */
    {
        int prev = -1;

        while (n > 0) {
            item_t *got = item_of(coho__heap_pop(&h));

            assert_true(got->key >= prev);
            prev = got->key;
            n--;
        }
        assert_null(coho__heap_pop(&h));
    }
    coho__heap_destroy(&h);
    free(items);
    free(model);
    free(where);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(heap_pop_returns_elements_in_ascending_order),
        cmocka_unit_test(heap_top_and_pop_of_empty_heap_return_null),
        cmocka_unit_test(heap_top_is_minimum_without_removing_it),
        cmocka_unit_test(heap_push_of_node_already_in_a_heap_is_ealready),
        cmocka_unit_test(heap_remove_of_node_not_in_heap_is_enoent),
        cmocka_unit_test(heap_remove_of_any_element_keeps_order),
        cmocka_unit_test(heap_update_after_key_change_restores_order),
        cmocka_unit_test(heap_equal_keys_all_come_out),
        cmocka_unit_test(heap_removed_node_can_be_pushed_again),
        cmocka_unit_test(heap_randomized_ops_match_sorted_model),
    };

    return coho_test_main("heap", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
