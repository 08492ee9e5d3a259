/* SPDX-License-Identifier: MIT */
/* Test-only access to the node pool's slots (base_struct/pool_impl.h), kept out of the library. */
#ifndef COHO_TEST_SUPPORT_POOL_TESTING_H
#define COHO_TEST_SUPPORT_POOL_TESTING_H

#include "base_struct/pool_impl.h"

/* For tests of generation wrap-around: gives the live node of `id` the generation `gen` (>= 1)
 * and returns its new id, or 0 if `id` is not live or `gen` is 0. */
static inline uint64_t coho__pool_test_set_generation(coho__pool_t *p, uint64_t id, uint32_t gen)
{
    slot_header_t *s = pool_live_slot(p, id);

    if (s == NULL || gen == 0)
        return 0;
    s->gen = gen;
    return make_id(gen, (uint32_t)id);
}

#endif /* COHO_TEST_SUPPORT_POOL_TESTING_H */
