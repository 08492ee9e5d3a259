/* SPDX-License-Identifier: MIT */
/* Tests of the intrusive lists: the circular doubly linked list and the singly linked FIFO
 * queue, including a randomized comparison of the doubly linked list against an array. */
#include <stdlib.h>
#include <string.h>

#include "base_struct/list.h"
#include "test/support/cmocka_main.h"

typedef struct elem {
    int value;
    coho_list_t link;
    coho_snode_t snode;
} elem_t;

/* Walks `head` forwards and backwards, checking the links agree, and writes the values. */
static int collect(coho_list_t *head, int *out, int max)
{
    coho_list_t *pos;
    int n = 0, back;

    coho_list_for_each(pos, head)
    {
        assert_ptr_equal(pos->next->prev, pos);
        assert_ptr_equal(pos->prev->next, pos);
        assert_true(n < max);
        out[n++] = coho_list_entry(pos, elem_t, link)->value;
    }
    back = n;
    for (pos = head->prev; pos != head; pos = pos->prev)
        assert_int_equal(coho_list_entry(pos, elem_t, link)->value, out[--back]);
    assert_int_equal(back, 0);
    return n;
}

static void list_init_makes_empty_list_and_unlinked_node(void **state)
{
    coho_list_t head;
    elem_t e = {.value = 1};

    (void)state;
    coho_list_init(&head);
    coho_list_init(&e.link);
    assert_true(coho_list_is_empty(&head));
    assert_false(coho_list_is_linked(&e.link));
    assert_null(coho_list_pop_front(&head));
    coho_list_push_back(&head, &e.link);
    assert_false(coho_list_is_empty(&head));
    assert_true(coho_list_is_linked(&e.link));
    assert_ptr_equal(coho_list_first(&head), &e.link);
}

static void list_push_back_keeps_order_and_push_front_reverses_it(void **state)
{
    coho_list_t head;
    elem_t e[5];
    int out[5], i;

    (void)state;
    coho_list_init(&head);
    for (i = 0; i < 5; i++) {
        e[i].value = i;
        coho_list_push_back(&head, &e[i].link);
    }
    assert_int_equal(collect(&head, out, 5), 5);
    for (i = 0; i < 5; i++)
        assert_int_equal(out[i], i);
    coho_list_init(&head);
    for (i = 0; i < 5; i++)
        coho_list_push_front(&head, &e[i].link);
    assert_int_equal(collect(&head, out, 5), 5);
    for (i = 0; i < 5; i++)
        assert_int_equal(out[i], 4 - i);
}

static void list_del_unlinks_and_second_del_is_harmless(void **state)
{
    coho_list_t head;
    elem_t a = {.value = 1}, b = {.value = 2}, c = {.value = 3};
    int out[3];

    (void)state;
    coho_list_init(&head);
    coho_list_push_back(&head, &a.link);
    coho_list_push_back(&head, &b.link);
    coho_list_push_back(&head, &c.link);
    coho_list_del(&b.link);
    assert_false(coho_list_is_linked(&b.link));
    coho_list_del(&b.link); /* self-linked: nothing happens to the list */
    assert_int_equal(collect(&head, out, 3), 2);
    assert_int_equal(out[0], 1);
    assert_int_equal(out[1], 3);
    coho_list_del(&a.link);
    coho_list_del(&c.link);
    assert_true(coho_list_is_empty(&head));
}

static void list_pop_front_returns_elements_in_order_then_null(void **state)
{
    coho_list_t head, *n;
    elem_t e[3];
    int i;

    (void)state;
    coho_list_init(&head);
    for (i = 0; i < 3; i++) {
        e[i].value = i;
        coho_list_push_back(&head, &e[i].link);
    }
    for (i = 0; i < 3; i++) {
        n = coho_list_pop_front(&head);
        assert_ptr_equal(n, &e[i].link);
        assert_false(coho_list_is_linked(n));
    }
    assert_null(coho_list_pop_front(&head));
    assert_true(coho_list_is_empty(&head));
}

static void list_splice_back_moves_all_and_empties_source(void **state)
{
    coho_list_t to, from;
    elem_t e[6];
    int out[6], i;

    (void)state;
    coho_list_init(&to);
    coho_list_init(&from);
    coho_list_splice_back(&to, &from); /* both empty */
    assert_true(coho_list_is_empty(&to));
    for (i = 0; i < 6; i++)
        e[i].value = i;
    coho_list_push_back(&from, &e[0].link);
    coho_list_push_back(&from, &e[1].link);
    coho_list_splice_back(&to, &from); /* into an empty list */
    assert_true(coho_list_is_empty(&from));
    assert_int_equal(collect(&to, out, 6), 2);
    coho_list_splice_back(&to, &from); /* an empty source changes nothing */
    assert_int_equal(collect(&to, out, 6), 2);
    for (i = 2; i < 6; i++)
        coho_list_push_back(&from, &e[i].link);
    coho_list_splice_back(&to, &from);
    assert_true(coho_list_is_empty(&from));
    assert_int_equal(collect(&to, out, 6), 6);
    for (i = 0; i < 6; i++)
        assert_int_equal(out[i], i);
}

static void list_for_each_safe_allows_unlinking_current(void **state)
{
    coho_list_t head, *pos, *tmp;
    elem_t e[10];
    int out[10], i;

    (void)state;
    coho_list_init(&head);
    for (i = 0; i < 10; i++) {
        e[i].value = i;
        coho_list_push_back(&head, &e[i].link);
    }
    coho_list_for_each_safe(pos, tmp, &head)
    {
        if (coho_list_entry(pos, elem_t, link)->value % 2 == 0)
            coho_list_del(pos);
    }
    assert_int_equal(collect(&head, out, 10), 5);
    for (i = 0; i < 5; i++)
        assert_int_equal(out[i], 2 * i + 1);
}

static void list_container_of_recovers_element(void **state)
{
    elem_t e = {.value = 42};

    (void)state;
    assert_ptr_equal(coho_container_of(&e.link, elem_t, link), &e);
    assert_ptr_equal(coho_container_of(&e.snode, elem_t, snode), &e);
    assert_int_equal(coho_list_entry(&e.link, elem_t, link)->value, 42);
}

/* Random push_front / push_back / del / pop_front / splice against an array model. */
static void list_randomized_ops_match_array_model(void **state)
{
    enum { N = 64, OPS = 100000 };
    uint64_t rng = coho_test_seed();
    elem_t e[N];
    int model[N], out[N], n = 0, i, op;
    bool in[N] = {false};
    coho_list_t head, side;

    (void)state;
    coho_list_init(&head);
    coho_list_init(&side);
    for (i = 0; i < N; i++) {
        e[i].value = i;
        coho_list_init(&e[i].link);
    }
    for (op = 0; op < OPS; op++) {
        uint64_t r = coho_test_rand(&rng);
        int k = (int)((r >> 8) % N);

        switch (r % 5) {
        case 0: /* push_back */
            if (in[k])
                break;
            coho_list_push_back(&head, &e[k].link);
            model[n++] = k;
            in[k] = true;
            break;
        case 1: /* push_front */
            if (in[k])
                break;
            coho_list_push_front(&head, &e[k].link);
            memmove(model + 1, model, (size_t)n * sizeof(int));
            model[0] = k;
            n++;
            in[k] = true;
            break;
        case 2: /* del wherever it is (or harmlessly, when unlinked) */
            coho_list_del(&e[k].link);
            if (in[k]) {
                for (i = 0; model[i] != k; i++)
                    ;
                memmove(model + i, model + i + 1, (size_t)(n - i - 1) * sizeof(int));
                n--;
                in[k] = false;
            }
            break;
        case 3: { /* pop_front */
            coho_list_t *p = coho_list_pop_front(&head);

            if (n == 0) {
                assert_null(p);
                break;
            }
            assert_ptr_equal(p, &e[model[0]].link);
            in[model[0]] = false;
            memmove(model, model + 1, (size_t)(n - 1) * sizeof(int));
            n--;
            break;
        }
        default: { /* move the last few to a side list and splice them back */
            int take = n < 3 ? n : 3;

            for (i = n - take; i < n; i++) {
                coho_list_del(&e[model[i]].link);
                coho_list_push_back(&side, &e[model[i]].link);
            }
            coho_list_splice_back(&head, &side);
            assert_true(coho_list_is_empty(&side));
            break;
        }
        }
        assert_int_equal(collect(&head, out, N), n);
        for (i = 0; i < n; i++)
            assert_int_equal(out[i], model[i]);
        for (i = 0; i < N; i++)
            assert_int_equal(coho_list_is_linked(&e[i].link), in[i]);
    }
}

static void slist_push_back_pop_front_is_fifo(void **state)
{
    coho_slist_t q;
    elem_t e[4];
    int i;

    (void)state;
    coho_slist_init(&q);
    assert_true(coho_slist_is_empty(&q));
    assert_null(coho_slist_pop_front(&q));
    for (i = 0; i < 4; i++) {
        e[i].value = i;
        coho_slist_push_back(&q, &e[i].snode);
    }
    assert_false(coho_slist_is_empty(&q));
    for (i = 0; i < 4; i++) {
        coho_snode_t *n = coho_slist_pop_front(&q);

        assert_ptr_equal(n, &e[i].snode);
        assert_null(n->next);
    }
    assert_true(coho_slist_is_empty(&q));
    assert_null(coho_slist_pop_front(&q));
}

static void slist_push_front_on_empty_queue_sets_tail(void **state)
{
    coho_slist_t q;
    elem_t a = {.value = 1}, b = {.value = 2}, c = {.value = 3};

    (void)state;
    coho_slist_init(&q);
    coho_slist_push_front(&q, &a.snode);
    coho_slist_push_back(&q, &b.snode); /* must land after a, through the tail */
    coho_slist_push_front(&q, &c.snode);
    assert_ptr_equal(coho_slist_pop_front(&q), &c.snode);
    assert_ptr_equal(coho_slist_pop_front(&q), &a.snode);
    assert_ptr_equal(coho_slist_pop_front(&q), &b.snode);
    assert_null(coho_slist_pop_front(&q));
}

static void slist_push_back_after_draining_starts_a_fresh_queue(void **state)
{
    coho_slist_t q;
    elem_t a = {.value = 1}, b = {.value = 2}, c = {.value = 3};

    (void)state;
    coho_slist_init(&q);
    coho_slist_push_back(&q, &a.snode);
    assert_ptr_equal(coho_slist_pop_front(&q), &a.snode);
    /* the tail still names a; pushing must not link through it */
    coho_slist_push_back(&q, &b.snode);
    coho_slist_push_back(&q, &c.snode);
    assert_null(a.snode.next);
    assert_ptr_equal(coho_slist_pop_front(&q), &b.snode);
    assert_ptr_equal(coho_slist_pop_front(&q), &c.snode);
    assert_true(coho_slist_is_empty(&q));
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(list_init_makes_empty_list_and_unlinked_node),
        cmocka_unit_test(list_push_back_keeps_order_and_push_front_reverses_it),
        cmocka_unit_test(list_del_unlinks_and_second_del_is_harmless),
        cmocka_unit_test(list_pop_front_returns_elements_in_order_then_null),
        cmocka_unit_test(list_splice_back_moves_all_and_empties_source),
        cmocka_unit_test(list_for_each_safe_allows_unlinking_current),
        cmocka_unit_test(list_container_of_recovers_element),
        cmocka_unit_test(list_randomized_ops_match_array_model),
        cmocka_unit_test(slist_push_back_pop_front_is_fifo),
        cmocka_unit_test(slist_push_front_on_empty_queue_sets_tail),
        cmocka_unit_test(slist_push_back_after_draining_starts_a_fresh_queue),
    };

    return coho_test_main("list", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
