/* SPDX-License-Identifier: MIT */
/* cbuf: the elastic chained socket buffer (include/coho/cbuf.h) and its per-thread chunk pool.
 * Chunk sizes are powers of two, so a data offset maps to (chunk, offset in chunk) with a shift
 * and a mask, and every operation finds its chunk in O(1) through a ring of chunk pointers. */
#define _GNU_SOURCE /* IOV_MAX */
#include "coho/cbuf.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base_struct/cbuf_internal.h"
#include "base_struct/err.h"

#if defined(__SANITIZE_ADDRESS__)
#    define CBUF_ASAN 1
#elif defined(__has_feature)
#    if __has_feature(address_sanitizer)
#        define CBUF_ASAN 1
#    endif
#endif
#ifdef CBUF_ASAN
#    include <sanitizer/asan_interface.h>
#    define CBUF_POISON(p, n)   ASAN_POISON_MEMORY_REGION((p), (n))
#    define CBUF_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#    define CBUF_POISON(p, n)   ((void)(p), (void)(n))
#    define CBUF_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define CBUF_MAGIC 0x63627566u /* "cbuf" */
#define CLASS_MIN  6           /* log2(COHO_CBUF_CHUNK_SIZE_MIN) */
#define CLASS_MAX  24          /* log2(COHO_CBUF_CHUNK_SIZE_MAX) */
#define NCLASS     (CLASS_MAX - CLASS_MIN + 1)

/* Idle chunks a buffer keeps after consume or truncate: one, so that a buffer streaming through
 * (write a chunk, consume a chunk) reuses the same chunk without touching the pool. */
#define SPARE_CHUNKS 1

_Static_assert(COHO_CBUF_CHUNK_SIZE_MIN == (size_t)1 << CLASS_MIN, "chunk class range");
_Static_assert(COHO_CBUF_CHUNK_SIZE_MAX == (size_t)1 << CLASS_MAX, "chunk class range");
_Static_assert((COHO_CBUF_INLINE_CHUNKS & (COHO_CBUF_INLINE_CHUNKS - 1)) == 0,
               "the inline chunk table is a ring: a power of two");

/* ---- the per-thread chunk pool ----------------------------------------------------------------
 *
 * One free list per chunk size class, linked through the first word of each idle chunk. The pool
 * lives in thread-local storage; the first time a thread uses it, it is registered under a
 * pthread key whose destructor frees every idle chunk when the thread exits. After that the
 * pool is dead for the thread: chunks handed back later (by another key's destructor) are freed
 * at once. A chunk may be handed back on another thread than the one that took it; malloc and
 * free do not care. */

enum { POOL_FRESH = 0, POOL_LIVE, POOL_DEAD };

typedef struct chunk_pool {
    void *free[NCLASS];
    size_t count[NCLASS];
    size_t idle_bytes;
    size_t cap_bytes;
    int state;
} chunk_pool_t;

/* initial-exec: a %fs-relative access, also in the shared library (the general-dynamic
 * default calls __tls_get_addr on every chunk taken or given back). */
static __thread __attribute__((tls_model("initial-exec"))) chunk_pool_t tpool;
static pthread_key_t pool_key;
static pthread_once_t pool_key_once = PTHREAD_ONCE_INIT;
static bool pool_key_ok;
static size_t chunks_live;       /* chunks of every thread taken from malloc and not freed */
static size_t chunks_live_bytes; /* their bytes */

static void live_add(size_t size)
{
    __atomic_fetch_add(&chunks_live, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&chunks_live_bytes, size, __ATOMIC_RELAXED);
}

static void live_sub(size_t size)
{
    __atomic_fetch_sub(&chunks_live, 1, __ATOMIC_RELAXED);
    __atomic_fetch_sub(&chunks_live_bytes, size, __ATOMIC_RELAXED);
}

static void pool_drop_all(chunk_pool_t *p)
{
    unsigned c;

    for (c = 0; c < NCLASS; c++) {
        while (p->free[c] != NULL) {
            void *ch = p->free[c];

            p->free[c] = *(void **)ch;
            CBUF_UNPOISON(ch, (size_t)1 << (c + CLASS_MIN));
            free(ch);
            live_sub((size_t)1 << (c + CLASS_MIN));
        }
        p->count[c] = 0;
    }
    p->idle_bytes = 0;
}

static void pool_thread_exit(void *arg)
{
    chunk_pool_t *p = arg;

    pool_drop_all(p);
    p->state = POOL_DEAD;
}

static void pool_key_create(void)
{
    pool_key_ok = pthread_key_create(&pool_key, pool_thread_exit) == 0;
}

/* The calling thread's pool, registered for release at thread exit on first use. A pool that
 * cannot be registered never keeps chunks (state dead), so nothing leaks. */
static chunk_pool_t *pool_self(void)
{
    chunk_pool_t *p = &tpool;

    if (__builtin_expect(p->state == POOL_FRESH, 0)) {
        p->cap_bytes = COHO_CBUF_POOL_CAP_DEFAULT;
        pthread_once(&pool_key_once, pool_key_create);
        if (pool_key_ok && pthread_setspecific(pool_key, p) == 0)
            p->state = POOL_LIVE;
        else
            p->state = POOL_DEAD;
    }
    return p;
}

static void *chunk_get(chunk_pool_t *p, unsigned shift)
{
    unsigned c = shift - CLASS_MIN;
    size_t size = (size_t)1 << shift;
    void *ch = p->free[c];

    if (ch != NULL) {
        CBUF_UNPOISON(ch, size);
        p->free[c] = *(void **)ch;
        p->count[c]--;
        p->idle_bytes -= size;
        return ch;
    }
    ch = malloc(size);
    if (ch != NULL)
        live_add(size);
    return ch;
}

static void chunk_put(unsigned shift, void *ch)
{
    chunk_pool_t *p = pool_self();
    unsigned c = shift - CLASS_MIN;
    size_t size = (size_t)1 << shift;

    if (p->state == POOL_LIVE && p->idle_bytes + size <= p->cap_bytes) {
        *(void **)ch = p->free[c];
        p->free[c] = ch;
        p->count[c]++;
        p->idle_bytes += size;
        /* An iovec or pointer kept past its lifetime now faults under ASan. */
        CBUF_POISON((char *)ch + sizeof(void *), size - sizeof(void *));
        return;
    }
    free(ch);
    live_sub(size);
}

int coho_cbuf_pool_get_stats(coho_cbuf_pool_stats_t *out)
{
    chunk_pool_t *p;
    unsigned c;

    if (out == NULL) {
        errno = EINVAL;
        return -1;
    }
    p = pool_self();
    out->idle_count = 0;
    for (c = 0; c < NCLASS; c++)
        out->idle_count += p->count[c];
    out->idle_bytes = p->idle_bytes;
    out->cap_bytes = p->state == POOL_LIVE ? p->cap_bytes : 0;
    out->process_chunks = __atomic_load_n(&chunks_live, __ATOMIC_RELAXED);
    out->process_bytes = __atomic_load_n(&chunks_live_bytes, __ATOMIC_RELAXED);
    return 0;
}

int coho_cbuf_pool_set_cap(size_t cap_bytes)
{
    chunk_pool_t *p = pool_self();
    unsigned c;

    p->cap_bytes = cap_bytes;
    /* Free from the largest class down: big chunks are the cheapest to re-create per byte. */
    for (c = NCLASS; c-- > 0 && p->idle_bytes > cap_bytes;) {
        size_t size = (size_t)1 << (c + CLASS_MIN);

        while (p->free[c] != NULL && p->idle_bytes > cap_bytes) {
            void *ch = p->free[c];

            p->free[c] = *(void **)ch;
            p->count[c]--;
            p->idle_bytes -= size;
            CBUF_UNPOISON(ch, size);
            free(ch);
            live_sub(size);
        }
    }
    return 0;
}

size_t coho__cbuf_chunks_live(void)
{
    return __atomic_load_n(&chunks_live, __ATOMIC_RELAXED);
}

/* ---- the chunk table: a ring of chunk pointers ------------------------------------------------
 *
 * Data byte `pos` (0 = front) lives at absolute offset head_off + pos, which is byte
 * (abs & mask) of chunk (abs >> shift). Invariants: head_off < chunk size; len == 0 implies
 * head_off == 0; head_off + len <= nchunks * chunk size; cursor <= len <= max_len. */

static inline bool is_live(const coho_cbuf_t *b)
{
    return b != NULL && b->magic == CBUF_MAGIC;
}

static inline size_t chunk_size(const coho_cbuf_t *b)
{
    return (size_t)1 << b->shift;
}

static inline void **table_of(coho_cbuf_t *b)
{
    return b->table_cap > COHO_CBUF_INLINE_CHUNKS ? b->table.heap : b->table.inl;
}

static inline void *const *table_of_const(const coho_cbuf_t *b)
{
    return b->table_cap > COHO_CBUF_INLINE_CHUNKS ? b->table.heap : b->table.inl;
}

static inline char *chunk_at(const coho_cbuf_t *b, size_t i)
{
    return table_of_const(b)[(b->first + i) & (b->table_cap - 1)];
}

/* Bytes of chunk payload after the data. */
static inline size_t free_space(const coho_cbuf_t *b)
{
    return (b->nchunks << b->shift) - b->head_off - b->len;
}

/* Chunks that hold at least one data byte. */
static inline size_t used_chunks(const coho_cbuf_t *b)
{
    return (b->head_off + b->len + chunk_size(b) - 1) >> b->shift;
}

/* Moves the ring into a table of new_cap entries (a power of two >= nchunks), chunk 0 first. */
static int table_resize(coho_cbuf_t *b, size_t new_cap)
{
    void *tmp[COHO_CBUF_INLINE_CHUNKS];
    void **old = table_of(b), **dst;
    bool old_heap = b->table_cap > COHO_CBUF_INLINE_CHUNKS;
    size_t i;

    if (new_cap > COHO_CBUF_INLINE_CHUNKS) {
        dst = malloc(new_cap * sizeof(*dst));
        if (dst == NULL)
            return -ENOMEM;
    } else {
        dst = tmp;
    }
    for (i = 0; i < b->nchunks; i++)
        dst[i] = old[(b->first + i) & (b->table_cap - 1)];
    if (old_heap)
        free(old);
    if (new_cap > COHO_CBUF_INLINE_CHUNKS)
        b->table.heap = dst;
    else
        memcpy(b->table.inl, tmp, sizeof(tmp));
    b->table_cap = new_cap;
    b->first = 0;
    return 0;
}

static int table_push_back(coho_cbuf_t *b, void *ch)
{
    if (b->nchunks == b->table_cap) {
        int rc = table_resize(b, b->table_cap * 2);

        if (rc < 0)
            return rc;
    }
    table_of(b)[(b->first + b->nchunks) & (b->table_cap - 1)] = ch;
    b->nchunks++;
    return 0;
}

static void *table_pop_front(coho_cbuf_t *b)
{
    void *ch = table_of(b)[b->first];

    b->first = (b->first + 1) & (b->table_cap - 1);
    b->nchunks--;
    return ch;
}

static void *table_pop_back(coho_cbuf_t *b)
{
    b->nchunks--;
    return table_of(b)[(b->first + b->nchunks) & (b->table_cap - 1)];
}

/* Hands idle chunks back to the pool until at most `keep` remain. */
static inline void trim_idle(coho_cbuf_t *b, size_t keep)
{
    size_t used = used_chunks(b);

    while (__builtin_expect(b->nchunks > used + keep, 0))
        chunk_put(b->shift, table_pop_back(b));
}

static __attribute__((noinline)) int grow_slow(coho_cbuf_t *b, size_t need)
{
    size_t count = (need - free_space(b) + chunk_size(b) - 1) >> b->shift;
    size_t n0 = b->nchunks, cap = b->table_cap, i, mask;
    chunk_pool_t *p = pool_self();
    void **t;

    /* count <= max_len / 64 < 2^40, so neither the sum nor the doubling overflows. */
    while (cap < n0 + count)
        cap *= 2;
    if (cap != b->table_cap && table_resize(b, cap) < 0)
        return -ENOMEM;
    t = table_of(b);
    mask = b->table_cap - 1;
    for (i = 0; i < count; i++) {
        void *ch = chunk_get(p, b->shift);

        if (ch == NULL) {
            /* All or nothing: give back what this call took. */
            while (b->nchunks > n0)
                chunk_put(b->shift, table_pop_back(b));
            return -ENOMEM;
        }
        t[(b->first + b->nchunks) & mask] = ch;
        b->nchunks++;
    }
    return 0;
}

/* Makes at least `need` bytes of free space after the data. The caller checked max_len. */
static inline int grow(coho_cbuf_t *b, size_t need)
{
    if (__builtin_expect(free_space(b) >= need, 1))
        return 0;
    return grow_slow(b, need);
}

/* Copies n bytes into the buffer at data position pos; the chunks must exist. src NULL writes
 * zeros. */
static void copy_in(coho_cbuf_t *b, size_t pos, const void *src, size_t n)
{
    size_t abs = b->head_off + pos, size = chunk_size(b);
    size_t idx = abs >> b->shift, off = abs & (size - 1);
    const char *s = src;

    while (n > 0) {
        size_t k = size - off < n ? size - off : n;

        if (s != NULL) {
            memcpy(chunk_at(b, idx) + off, s, k);
            s += k;
        } else {
            memset(chunk_at(b, idx) + off, 0, k);
        }
        n -= k;
        idx++;
        off = 0;
    }
}

/* Copies n data bytes from data position pos out to dst. */
static __attribute__((noinline)) void copy_out(const coho_cbuf_t *b, size_t pos, void *dst,
                                               size_t n)
{
    size_t abs = b->head_off + pos, size = chunk_size(b);
    size_t idx = abs >> b->shift, off = abs & (size - 1);
    char *d = dst;

    while (n > 0) {
        size_t k = size - off < n ? size - off : n;

        memcpy(d, chunk_at(b, idx) + off, k);
        d += k;
        n -= k;
        idx++;
        off = 0;
    }
}

/* Drops the first n data bytes (n <= len). An emptied chunk moves to the back as an idle chunk
 * while fewer than SPARE_CHUNKS are idle, and goes back to the pool otherwise. */
static void drop_front(coho_cbuf_t *b, size_t n)
{
    size_t abs = b->head_off + n, drop, idle;

    b->len -= n;
    b->cursor = b->cursor > n ? b->cursor - n : 0;
    if (b->len == 0) {
        b->head_off = 0;
        trim_idle(b, SPARE_CHUNKS);
        return;
    }
    drop = abs >> b->shift;
    b->head_off = abs & (chunk_size(b) - 1);
    idle = b->nchunks - drop - used_chunks(b);
    while (drop-- > 0) {
        void *ch = table_pop_front(b);

        if (idle < SPARE_CHUNKS) {
            /* The table has room: the pop freed the slot the push takes. */
            (void)table_push_back(b, ch);
            idle++;
        } else {
            chunk_put(b->shift, ch);
        }
    }
    trim_idle(b, SPARE_CHUNKS);
}

/* ---- the public API ----------------------------------------------------------------------------
 */

void coho_cbuf_opts_init(coho_cbuf_opts_t *o)
{
    if (o == NULL)
        return;
    o->chunk_size = COHO_CBUF_CHUNK_SIZE_DEFAULT;
    o->max_len = COHO_CBUF_MAX_LEN_DEFAULT;
}

int coho_cbuf_init(coho_cbuf_t *b, const coho_cbuf_opts_t *o)
{
    coho_cbuf_opts_t def;

    if (o == NULL) {
        coho_cbuf_opts_init(&def);
        o = &def;
    }
    if (b == NULL || o->chunk_size < COHO_CBUF_CHUNK_SIZE_MIN ||
        o->chunk_size > COHO_CBUF_CHUNK_SIZE_MAX || (o->chunk_size & (o->chunk_size - 1)) != 0 ||
        o->max_len == 0 || o->max_len > COHO_CBUF_MAX_LEN_LIMIT)
        return (int)coho__posix_ret(-EINVAL);
    memset(b, 0, sizeof(*b));
    b->magic = CBUF_MAGIC;
    b->shift = (uint32_t)__builtin_ctzll(o->chunk_size);
    b->table_cap = COHO_CBUF_INLINE_CHUNKS;
    b->max_len = o->max_len;
    return 0;
}

int coho_cbuf_destroy(coho_cbuf_t *b)
{
    if (!is_live(b))
        return (int)coho__posix_ret(-EINVAL);
    while (b->nchunks > 0)
        chunk_put(b->shift, table_pop_front(b));
    if (b->table_cap > COHO_CBUF_INLINE_CHUNKS)
        free(b->table.heap);
    free(b->scratch);
    memset(b, 0, sizeof(*b));
    return 0;
}

size_t coho_cbuf_len(const coho_cbuf_t *b)
{
    return is_live(b) ? b->len : 0;
}

size_t coho_cbuf_capacity(const coho_cbuf_t *b)
{
    return is_live(b) ? b->nchunks << b->shift : 0;
}

static __attribute__((noinline)) int append_slow(coho_cbuf_t *b, const void *data, size_t len)
{
    int rc = grow(b, len);

    if (rc < 0)
        return (int)coho__posix_ret(rc);
    copy_in(b, b->len, data, len);
    b->len += len;
    return 0;
}

int coho_cbuf_append(coho_cbuf_t *b, const void *data, size_t len)
{
    size_t abs, off, idx;

    if (!is_live(b) || (data == NULL && len > 0))
        return (int)coho__posix_ret(-EINVAL);
    if (len > b->max_len - b->len)
        return (int)coho__posix_ret(-ENOBUFS);
    if (len == 0)
        return 0;
    /* The common case, one copy into a chunk the buffer already holds, stays short. */
    abs = b->head_off + b->len;
    idx = abs >> b->shift;
    off = abs & (chunk_size(b) - 1);
    if (idx >= b->nchunks || chunk_size(b) - off < len)
        return append_slow(b, data, len);
    memcpy(chunk_at(b, idx) + off, data, len);
    b->len += len;
    return 0;
}

int coho_cbuf_consume(coho_cbuf_t *b, size_t n)
{
    if (!is_live(b) || n > b->len)
        return (int)coho__posix_ret(-EINVAL);
    if (n > 0)
        drop_front(b, n);
    return 0;
}

int coho_cbuf_reserve_iov(coho_cbuf_t *b, size_t min_bytes, struct iovec *iov, int max_iov)
{
    size_t size, abs, off, room, limit;
    int rc, count = 0;

    if (!is_live(b) || iov == NULL || min_bytes == 0 || max_iov < 1)
        return (int)coho__posix_ret(-EINVAL);
    if (max_iov > IOV_MAX)
        max_iov = IOV_MAX;
    if (min_bytes > b->max_len - b->len)
        return (int)coho__posix_ret(-ENOBUFS);
    size = chunk_size(b);
    abs = b->head_off + b->len;
    /* The first entry holds what is left of the last data chunk, each further one a chunk. */
    if (min_bytes > size - (abs & (size - 1)) + (size_t)(max_iov - 1) * size)
        return (int)coho__posix_ret(-EINVAL);
    rc = grow(b, min_bytes);
    if (rc < 0)
        return (int)coho__posix_ret(rc);
    limit = free_space(b);
    if (limit > b->max_len - b->len)
        limit = b->max_len - b->len;
    off = abs & (size - 1);
    abs >>= b->shift;
    while (limit > 0 && count < max_iov) {
        room = size - off < limit ? size - off : limit;
        iov[count].iov_base = chunk_at(b, abs) + off;
        iov[count].iov_len = room;
        count++;
        limit -= room;
        abs++;
        off = 0;
    }
    return count;
}

int coho_cbuf_commit(coho_cbuf_t *b, size_t n)
{
    if (!is_live(b) || n > free_space(b))
        return (int)coho__posix_ret(-EINVAL);
    if (n > b->max_len - b->len)
        return (int)coho__posix_ret(-ENOBUFS);
    b->len += n;
    return 0;
}

int coho_cbuf_data_iov(const coho_cbuf_t *b, size_t offset, struct iovec *iov, int max_iov)
{
    size_t size, pos, abs, k;
    int count = 0;

    if (!is_live(b) || iov == NULL || max_iov < 1 || offset > b->len)
        return (int)coho__posix_ret(-EINVAL);
    if (max_iov > IOV_MAX)
        max_iov = IOV_MAX;
    size = chunk_size(b);
    for (pos = offset; pos < b->len && count < max_iov; pos += k) {
        abs = b->head_off + pos;
        k = size - (abs & (size - 1));
        if (k > b->len - pos)
            k = b->len - pos;
        iov[count].iov_base = chunk_at(b, abs >> b->shift) + (abs & (size - 1));
        iov[count].iov_len = k;
        count++;
    }
    return count;
}

size_t coho_cbuf_tell(const coho_cbuf_t *b)
{
    return is_live(b) ? b->cursor : 0;
}

off_t coho_cbuf_seek(coho_cbuf_t *b, off_t off, int whence)
{
    off_t base, pos;

    if (!is_live(b))
        return (off_t)coho__posix_ret(-EINVAL);
    switch (whence) {
    case SEEK_SET:
        base = 0;
        break;
    case SEEK_CUR:
        base = (off_t)b->cursor;
        break;
    case SEEK_END:
        base = (off_t)b->len;
        break;
    default:
        return (off_t)coho__posix_ret(-EINVAL);
    }
    if (__builtin_add_overflow(base, off, &pos) || pos < 0 || (size_t)pos > b->len)
        return (off_t)coho__posix_ret(-EINVAL);
    b->cursor = (size_t)pos;
    return pos;
}

ssize_t coho_cbuf_read(coho_cbuf_t *b, void *dst, size_t n)
{
    size_t k, abs, off;

    if (!is_live(b) || (dst == NULL && n > 0) || n > SSIZE_MAX)
        return coho__posix_ret(-EINVAL);
    k = b->len - b->cursor;
    if (k > n)
        k = n;
    if (k == 0)
        return 0;
    abs = b->head_off + b->cursor;
    off = abs & (chunk_size(b) - 1);
    if (chunk_size(b) - off >= k)
        memcpy(dst, chunk_at(b, abs >> b->shift) + off, k);
    else
        copy_out(b, b->cursor, dst, k);
    b->cursor += k;
    return (ssize_t)k;
}

ssize_t coho_cbuf_write(coho_cbuf_t *b, const void *src, size_t n)
{
    size_t end;
    int rc;

    if (!is_live(b) || (src == NULL && n > 0) || n > SSIZE_MAX)
        return coho__posix_ret(-EINVAL);
    if (n > b->max_len - b->cursor)
        return coho__posix_ret(-ENOBUFS);
    end = b->cursor + n;
    if (end > b->len) {
        rc = grow(b, end - b->len);
        if (rc < 0)
            return coho__posix_ret(rc);
    }
    copy_in(b, b->cursor, src, n);
    if (end > b->len)
        b->len = end;
    b->cursor = end;
    return (ssize_t)n;
}

int coho_cbuf_truncate(coho_cbuf_t *b, size_t len)
{
    int rc;

    if (!is_live(b))
        return (int)coho__posix_ret(-EINVAL);
    if (len > b->max_len)
        return (int)coho__posix_ret(-ENOBUFS);
    if (len < b->len) {
        b->len = len;
        if (b->cursor > len)
            b->cursor = len;
        if (len == 0)
            b->head_off = 0;
        trim_idle(b, SPARE_CHUNKS);
    } else if (len > b->len) {
        rc = grow(b, len - b->len);
        if (rc < 0)
            return (int)coho__posix_ret(rc);
        copy_in(b, b->len, NULL, len - b->len);
        b->len = len;
    }
    return 0;
}

const void *coho_cbuf_linearize(coho_cbuf_t *b, size_t n)
{
    if (!is_live(b) || n == 0 || n > b->len) {
        errno = EINVAL;
        return NULL;
    }
    if (b->head_off + n <= chunk_size(b))
        return chunk_at(b, 0) + b->head_off;
    if (n > b->scratch_cap) {
        /* Round up so that a framer's slowly growing frames do not realloc every time. */
        size_t cap = b->scratch_cap > 0 ? b->scratch_cap : chunk_size(b);
        void *p;

        while (cap < n)
            cap *= 2;
        p = malloc(cap);
        if (p == NULL) {
            errno = ENOMEM;
            return NULL;
        }
        free(b->scratch);
        b->scratch = p;
        b->scratch_cap = cap;
    }
    copy_out(b, 0, b->scratch, n);
    return b->scratch;
}

int coho_cbuf_shrink(coho_cbuf_t *b)
{
    size_t cap = COHO_CBUF_INLINE_CHUNKS;

    if (!is_live(b))
        return (int)coho__posix_ret(-EINVAL);
    trim_idle(b, 0);
    if (b->nchunks == 0)
        b->head_off = 0;
    free(b->scratch);
    b->scratch = NULL;
    b->scratch_cap = 0;
    while (cap < b->nchunks)
        cap *= 2;
    /* Keep a table at most twice the chunks' need; a failed smaller malloc keeps the old one. */
    if (cap < b->table_cap)
        (void)table_resize(b, cap);
    return 0;
}

int coho__cbuf_check(const coho_cbuf_t *b)
{
    size_t size;

    if (!is_live(b))
        return -EINVAL;
    size = chunk_size(b);
    if (b->shift < CLASS_MIN || b->shift > CLASS_MAX || b->table_cap < COHO_CBUF_INLINE_CHUNKS ||
        (b->table_cap & (b->table_cap - 1)) != 0 || b->nchunks > b->table_cap ||
        b->first >= b->table_cap || b->head_off >= size || (b->len == 0 && b->head_off != 0) ||
        b->head_off + b->len > b->nchunks * size || b->cursor > b->len || b->len > b->max_len ||
        (b->scratch == NULL) != (b->scratch_cap == 0))
        return -EUCLEAN;
    return 0;
}
