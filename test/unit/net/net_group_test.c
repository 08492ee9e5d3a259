/* SPDX-License-Identifier: MIT */
/* Broadcast groups' membership: members kept in join order with an index by id; a removal
 * moves the last member into the hole and re-points its index entry. Checked against a plain
 * array through random adds and removes, and through a broadcast that drops departed ids. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <coho/net.h>

#include "test/support/cmocka_main.h"

#define IDS 3000

/* A connection id of an unused shard (no server runs in this process). */
static uint64_t id_of(unsigned i)
{
    return ((uint64_t)7 << 40) | ((uint64_t)(i + 1) << 20) | (i * 2654435761u % 1000003u);
}

static void membership_matches_a_reference_through_random_adds_and_removes(void **state)
{
    coho_group_t *g = coho_group_create();
    static bool in[IDS];
    size_t n = 0;
    unsigned seed = 12345;

    (void)state;
    assert_non_null(g);
    memset(in, 0, sizeof(in));
    for (int op = 0; op < 60000; op++) {
        unsigned i = (unsigned)rand_r(&seed) % IDS;
        if (rand_r(&seed) % 3 != 0) {
            int rc = coho_group_add(g, id_of(i));
            if (in[i]) {
                assert_int_equal(rc, -1);
                assert_int_equal(errno, EEXIST);
            } else {
                assert_int_equal(rc, 0);
                in[i] = true;
                n++;
            }
        } else {
            int rc = coho_group_remove(g, id_of(i));
            if (in[i]) {
                assert_int_equal(rc, 0);
                in[i] = false;
                n--;
            } else {
                assert_int_equal(rc, -1);
                assert_int_equal(errno, ENOENT);
            }
        }
        assert_int_equal(coho_group_count(g), n);
    }
    /* Every member is found (EEXIST) and every other id is not (ENOENT), then all leave. */
    for (unsigned i = 0; i < IDS; i++) {
        if (in[i]) {
            assert_int_equal(coho_group_add(g, id_of(i)), -1);
            assert_int_equal(errno, EEXIST);
        } else {
            assert_int_equal(coho_group_remove(g, id_of(i)), -1);
            assert_int_equal(errno, ENOENT);
        }
    }
    for (unsigned i = 0; i < IDS; i++)
        if (in[i])
            assert_int_equal(coho_group_remove(g, id_of(i)), 0);
    assert_int_equal(coho_group_count(g), 0);
    coho_group_destroy(g);
}

static void broadcast_drops_ids_of_no_live_connection_and_keeps_the_rest_consistent(void **state)
{
    coho_group_t *g = coho_group_create();
    const char msg[] = "hello";

    (void)state;
    assert_non_null(g);
    for (unsigned i = 0; i < 1000; i++)
        assert_int_equal(coho_group_add(g, id_of(i)), 0);
    assert_int_equal(coho_group_remove(g, id_of(500)), 0);
    /* No server runs: every member is departed, and the broadcast removes them all. */
    assert_int_equal(coho_group_broadcast(g, msg, sizeof(msg)), 0);
    assert_int_equal(coho_group_count(g), 0);
    assert_int_equal(coho_group_remove(g, id_of(1)), -1);
    assert_int_equal(errno, ENOENT);
    /* The emptied group works as a new one. */
    for (unsigned i = 0; i < 100; i++)
        assert_int_equal(coho_group_add(g, id_of(i)), 0);
    assert_int_equal(coho_group_count(g), 100);
    assert_int_equal(coho_group_broadcast(g, NULL, 1), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(coho_group_add(g, 0), -1);
    assert_int_equal(errno, ENOTCONN);
    coho_group_destroy(g);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(membership_matches_a_reference_through_random_adds_and_removes),
        cmocka_unit_test(broadcast_drops_ids_of_no_live_connection_and_keeps_the_rest_consistent),
    };
    return coho_test_main("net_group", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
