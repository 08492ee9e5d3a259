/* SPDX-License-Identifier: MIT */
/* Process-unique 64-bit ids: one lock-free atomic counter for the whole process, seeded from
 * the clocks and the pid so that ids of different processes and runs (whose logs may be read
 * side by side) almost never coincide. Id 0 is never returned: it means "none" everywhere. */
#ifndef COHO_BASE_STRUCT_ID_H
#define COHO_BASE_STRUCT_ID_H

#include <stdint.h>

/* Returns the next id of this process: never 0, never returned before in this process (the
 * sequence would have to run through all 2^64 - 1 values first). Any thread, lock-free after
 * the first call. A forked child continues from a fresh random seed, so parent and child
 * do not repeat each other's ids after the fork (short of two random 64-bit seeds landing
 * within one sequence length of each other). */
uint64_t coho__id_next(void);

/* The value the current sequence started from (changes in a forked child). */
uint64_t coho__id_seed(void);

/* For tests only: makes `next` the value the next coho__id_next considers (0 is then skipped). */
void coho__id_test_set_next(uint64_t next);

#endif /* COHO_BASE_STRUCT_ID_H */
