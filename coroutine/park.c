/* SPDX-License-Identifier: MIT */
/* The exported park primitive (park.h) over the scheduler's block/wake protocol. The wrappers
 * keep coho__co_block and friends hidden: libcoho's own hot paths call them directly, without
 * a PLT hop, and only libcoho_net pays the one extra jump. */
#include "coroutine/park.h"

#include "coroutine/internal.h"

uint64_t coho__park_prepare(void)
{
    return coho__co_block_prepare();
}

int coho__park(int64_t timeout_ms)
{
    return coho__co_block(timeout_ms);
}

void coho__park_note(const char *what, int64_t detail)
{
    coho__co_wait_note(what, detail);
}

int coho__park_wake(uint64_t co_id, uint64_t token, int result)
{
    return coho__co_wake(co_id, token, result);
}
