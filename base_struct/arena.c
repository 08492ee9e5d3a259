/* SPDX-License-Identifier: MIT */
/* Arena allocator (contract in arena.h): bump allocation in a chain of blocks, large requests
 * in blocks of their own, one release.
 *
 *     blocks:  [hdr | used ......... | free ]  <- current (bump `pos` .. `end`)
 *              [hdr | used ................ ]  <- older, full
 *     large:   [hdr | one allocation        ]  (size > block_size / 4)
 *
 * A large request never goes into the current block, so it cannot strand the free tail of a
 * block that small requests would still use. Under AddressSanitizer the free tail of a block
 * and everything dropped by a reset are poisoned, so a pointer kept past reset is caught. */
#include "base_struct/arena.h"

#include <errno.h>
#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#    include <sanitizer/asan_interface.h>
#    define ARENA_POISON(p, n)   ASAN_POISON_MEMORY_REGION((p), (n))
#    define ARENA_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#    define ARENA_POISON(p, n)   ((void)(p), (void)(n))
#    define ARENA_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define ARENA_DEFAULT_BLOCK ((size_t)64 * 1024)
#define ARENA_MIN_BLOCK     ((size_t)256)
#define ARENA_MAX_BLOCK     ((size_t)1 << 30)

typedef struct arena_block {
    struct arena_block *next;
    size_t size; /* bytes of this block, header included */
    alignas(COHO__ARENA_ALIGN) unsigned char data[];
} arena_block_t;

struct coho__arena {
    arena_block_t *blocks; /* ordinary blocks, newest (current) first */
    arena_block_t *large;  /* one allocation each */
    uintptr_t pos;         /* bump pointer in blocks->data */
    uintptr_t end;
    size_t block_size;
    size_t used;
    size_t reserved;
};

coho__arena_t *coho__arena_create(size_t block_size)
{
    coho__arena_t *a;

    if (block_size == 0)
        block_size = ARENA_DEFAULT_BLOCK;
    if (block_size < ARENA_MIN_BLOCK || block_size > ARENA_MAX_BLOCK) {
        errno = EINVAL;
        return NULL;
    }
    a = calloc(1, sizeof(*a));
    if (a == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    a->block_size = block_size;
    return a;
}

static void arena_free_chain(arena_block_t *b)
{
    while (b != NULL) {
        arena_block_t *next = b->next;

        ARENA_UNPOISON(b, b->size);
        free(b);
        b = next;
    }
}

void coho__arena_destroy(coho__arena_t *a)
{
    if (a == NULL)
        return;
    arena_free_chain(a->blocks);
    arena_free_chain(a->large);
    free(a);
}

/* A request of `size` bytes aligned to `align` in a block of its own. */
static void *arena_alloc_large(coho__arena_t *a, size_t size, size_t align)
{
    size_t bytes = sizeof(arena_block_t) + size + (align - COHO__ARENA_ALIGN);
    arena_block_t *b;
    uintptr_t p;

    if (bytes < size) {
        errno = EINVAL;
        return NULL;
    }
    b = malloc(bytes);
    if (b == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    b->size = bytes;
    b->next = a->large;
    a->large = b;
    a->reserved += bytes;
    p = ((uintptr_t)b->data + align - 1) & ~(uintptr_t)(align - 1);
    return (void *)p;
}

/* Makes a fresh ordinary block current. */
static int arena_add_block(coho__arena_t *a)
{
    arena_block_t *b = malloc(a->block_size);

    if (b == NULL)
        return -ENOMEM;
    b->size = a->block_size;
    b->next = a->blocks;
    a->blocks = b;
    a->reserved += a->block_size;
    a->pos = (uintptr_t)b->data;
    a->end = (uintptr_t)b + a->block_size;
    ARENA_POISON(b->data, a->end - a->pos);
    return 0;
}

void *coho__arena_alloc_aligned(coho__arena_t *a, size_t size, size_t align)
{
    uintptr_t p;

    if (size == 0 || size > PTRDIFF_MAX || align > COHO__ARENA_MAX_ALIGN ||
        (align & (align - 1)) != 0) {
        errno = EINVAL;
        return NULL;
    }
    if (align < COHO__ARENA_ALIGN)
        align = COHO__ARENA_ALIGN;
    if (size + align > a->block_size / 4) {
        void *r = arena_alloc_large(a, size, align);

        if (r != NULL)
            a->used += size;
        return r;
    }
    p = (a->pos + align - 1) & ~(uintptr_t)(align - 1);
    if (a->blocks == NULL || p > a->end || size > a->end - p) {
        if (arena_add_block(a) < 0) {
            errno = ENOMEM;
            return NULL;
        }
        /* size + align <= block_size / 4, so it fits a fresh block */
        p = (a->pos + align - 1) & ~(uintptr_t)(align - 1);
    }
    /* keep the bump pointer at the default alignment so the next request needs no padding */
    a->pos = (p + size + COHO__ARENA_ALIGN - 1) & ~(uintptr_t)(COHO__ARENA_ALIGN - 1);
    if (a->pos > a->end)
        a->pos = a->end;
    a->used += size;
    ARENA_UNPOISON((void *)p, size);
    return (void *)p;
}

void *coho__arena_alloc(coho__arena_t *a, size_t size)
{
    return coho__arena_alloc_aligned(a, size, COHO__ARENA_ALIGN);
}

void *coho__arena_alloc_array(coho__arena_t *a, size_t count, size_t size)
{
    size_t bytes;
    void *p;

    if (__builtin_mul_overflow(count, size, &bytes)) {
        errno = EINVAL;
        return NULL;
    }
    p = coho__arena_alloc(a, bytes);
    if (p != NULL)
        memset(p, 0, bytes);
    return p;
}

char *coho__arena_strdup(coho__arena_t *a, const char *s)
{
    size_t len;
    char *d;

    if (s == NULL) {
        errno = EINVAL;
        return NULL;
    }
    len = strlen(s) + 1;
    d = coho__arena_alloc_aligned(a, len, 1);
    if (d != NULL)
        memcpy(d, s, len);
    return d;
}

void coho__arena_reset(coho__arena_t *a)
{
    arena_block_t *keep = a->blocks;

    arena_free_chain(a->large);
    a->large = NULL;
    a->used = 0;
    a->reserved = 0;
    if (keep == NULL)
        return;
    /* keep the oldest block: the list is newest first */
    while (keep->next != NULL) {
        arena_block_t *b = keep;

        keep = keep->next;
        ARENA_UNPOISON(b, b->size);
        free(b);
    }
    a->blocks = keep;
    a->reserved = keep->size;
    a->pos = (uintptr_t)keep->data;
    a->end = (uintptr_t)keep + keep->size;
    ARENA_POISON(keep->data, a->end - a->pos);
}

size_t coho__arena_used(const coho__arena_t *a)
{
    return a->used;
}

size_t coho__arena_reserved(const coho__arena_t *a)
{
    return a->reserved;
}
