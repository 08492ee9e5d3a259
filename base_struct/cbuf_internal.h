/* SPDX-License-Identifier: MIT */
/* cbuf internals that tests and the fuzzer use: the process-wide chunk count and an invariant
 * check. Nothing here is exported from libcoho.so. */
#ifndef COHO_BASE_STRUCT_CBUF_INTERNAL_H
#define COHO_BASE_STRUCT_CBUF_INTERNAL_H

#include <stddef.h>

#include <coho/cbuf.h>

/* Chunks obtained from malloc and not yet freed, over every thread: chunks held by buffers plus
 * chunks idle in the per-thread pools. Any thread. */
size_t coho__cbuf_chunks_live(void);

/* Checks the invariants of an initialised buffer (offsets within the chunk table, cursor within
 * the data, length within max_len, chunk table a power of two that holds every chunk). Returns
 * 0, or -EINVAL for an uninitialised buffer, or -EUCLEAN when an invariant is broken. */
int coho__cbuf_check(const coho_cbuf_t *b);

#endif /* COHO_BASE_STRUCT_CBUF_INTERNAL_H */
