/* SPDX-License-Identifier: MIT */
/* Arena: many small allocations carved from large blocks, released all at once.
 *
 * Allocation is a pointer bump inside the current block; requests larger than a quarter of the
 * block size get a block of their own. Nothing is freed one by one: coho__arena_reset() drops
 * every allocation (keeping one block for reuse) and coho__arena_destroy() returns everything.
 * An arena belongs to one thread at a time (no locking). */
#ifndef COHO_BASE_STRUCT_ARENA_H
#define COHO_BASE_STRUCT_ARENA_H

#include <stddef.h>

typedef struct coho__arena coho__arena_t;

/* Default alignment of coho__arena_alloc (bytes). */
#define COHO__ARENA_ALIGN 16
/* Largest alignment coho__arena_alloc_aligned accepts (bytes). */
#define COHO__ARENA_MAX_ALIGN 4096

/* Creates an arena that takes blocks of `block_size` bytes from malloc (0: a default of
 * 64 KiB). Allocates nothing until the first allocation. Returns NULL with errno EINVAL
 * (block_size below 256 or above 1 GiB) or ENOMEM. */
coho__arena_t *coho__arena_create(size_t block_size);

/* Frees every block and the arena; every pointer it handed out becomes invalid. NULL is
 * harmless. */
void coho__arena_destroy(coho__arena_t *a);

/* Returns `size` bytes aligned to COHO__ARENA_ALIGN, uninitialised, valid until the next
 * coho__arena_reset or coho__arena_destroy. Returns NULL with errno EINVAL (size 0, or above
 * PTRDIFF_MAX) or ENOMEM. */
void *coho__arena_alloc(coho__arena_t *a, size_t size);

/* As coho__arena_alloc, aligned to `align` (a power of two, at most COHO__ARENA_MAX_ALIGN;
 * smaller alignments are raised to COHO__ARENA_ALIGN). EINVAL also for a bad `align`. */
void *coho__arena_alloc_aligned(coho__arena_t *a, size_t size, size_t align);

/* As coho__arena_alloc for `count` elements of `size` bytes each, zeroed. EINVAL also when
 * count * size overflows. */
void *coho__arena_alloc_array(coho__arena_t *a, size_t count, size_t size);

/* Copies the NUL-terminated string `s` into the arena. NULL with errno EINVAL for s == NULL,
 * or ENOMEM. */
char *coho__arena_strdup(coho__arena_t *a, const char *s);

/* Drops every allocation at once. Keeps the first ordinary block for reuse and frees the
 * rest, so an arena reused per request settles at one malloc'd block. */
void coho__arena_reset(coho__arena_t *a);

/* Bytes handed out since creation or the last reset (requested sizes, without padding). */
size_t coho__arena_used(const coho__arena_t *a);

/* Bytes currently held from malloc (blocks and large allocations, with their headers). */
size_t coho__arena_reserved(const coho__arena_t *a);

#endif /* COHO_BASE_STRUCT_ARENA_H */
