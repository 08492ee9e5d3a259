/* SPDX-License-Identifier: MIT */
/* cbuf: the elastic chained socket buffer. A chain of fixed-size chunks from a per-thread chunk
 * pool, with iovec hand-out for readv/writev without an intermediate copy and a file-like cursor
 * (tell, seek, read, write, truncate) for framers. */
#ifndef COHO_CBUF_H
#define COHO_CBUF_H

#include <sys/types.h>
#include <sys/uio.h>

#include "coho/common.h"

COHO_EXTERN_C_BEGIN

/* Chunk payload sizes: a power of two in [COHO_CBUF_CHUNK_SIZE_MIN, COHO_CBUF_CHUNK_SIZE_MAX]. */
#define COHO_CBUF_CHUNK_SIZE_MIN     ((size_t)64)
#define COHO_CBUF_CHUNK_SIZE_MAX     ((size_t)1 << 24)
#define COHO_CBUF_CHUNK_SIZE_DEFAULT ((size_t)4096)

/* The data length limit of a buffer: default, and the largest value a buffer accepts. */
#define COHO_CBUF_MAX_LEN_DEFAULT ((size_t)1 << 30)
#define COHO_CBUF_MAX_LEN_LIMIT   ((size_t)1 << 46)

/* The per-thread chunk pool keeps at most this many bytes of idle chunks by default. */
#define COHO_CBUF_POOL_CAP_DEFAULT ((size_t)1 << 20)

/* Chunk pointers a buffer holds without allocating its chunk table. */
#define COHO_CBUF_INLINE_CHUNKS 4

/* Options for coho_cbuf_init. Fill with coho_cbuf_opts_init, then change what you need. */
typedef struct coho_cbuf_opts {
    size_t chunk_size; /* bytes of payload per chunk; a power of two, default 4 KiB */
    size_t max_len;    /* data bytes the buffer may hold; growth past it fails with ENOBUFS */
} coho_cbuf_opts_t;

/* A buffer. Users embed it (no allocation for the struct itself); every field is private and may
 * change between versions: use only the functions below. The struct may be moved (memcpy) while
 * no borrowed pointer or iovec into it is in use. A buffer may be used by one thread at a time;
 * it may move to another thread with the usual hand-over (a mutex or a channel).
 *
 * Layout: data starts `head_off` bytes into the first chunk and runs contiguously through the
 * chunk table; whole chunks past the data's end are idle (free space):
 *
 *     chunk 0            chunk 1            chunk 2            chunk 3
 *     +------------------+------------------+------------------+------------------+
 *     |....|ddddddddddddd|dddddddddddddddddd|dddddd|...........|..................|
 *     +------------------+------------------+------------------+------------------+
 *      head_off ^         <----------- len ----------->  ^ free space ...  (idle)
 */
typedef struct coho_cbuf {
    union {
        void **heap; /* chunk table when table_cap > COHO_CBUF_INLINE_CHUNKS */
        void *inl[COHO_CBUF_INLINE_CHUNKS];
    } table;          /* a ring of table_cap chunk pointers */
    uint32_t magic;   /* set by init, cleared by destroy */
    uint32_t shift;   /* log2 of the chunk size */
    size_t table_cap; /* a power of two */
    size_t first;     /* ring index of chunk 0 */
    size_t nchunks;   /* chunks held */
    size_t head_off;  /* offset of the first data byte in chunk 0 */
    size_t len;       /* data bytes */
    size_t cursor;    /* file position, 0..len */
    size_t max_len;
    void *scratch; /* linearize copies here when bytes straddle chunks */
    size_t scratch_cap;
} coho_cbuf_t;

/* What the calling thread's chunk pool holds, and the chunk memory of the whole process. */
typedef struct coho_cbuf_pool_stats {
    size_t idle_count; /* chunks waiting for reuse in this thread's pool */
    size_t idle_bytes; /* their payload bytes */
    size_t cap_bytes;  /* the pool keeps at most this many idle bytes */
    /* Every chunk of every thread that is allocated and not freed: held by buffers or idle in
     * a pool. What cbufs cost the process in payload bytes (malloc's own overhead aside). */
    size_t process_chunks;
    size_t process_bytes;
} coho_cbuf_pool_stats_t;

/* Fills `o` with the defaults: 4 KiB chunks, max_len COHO_CBUF_MAX_LEN_DEFAULT. Any thread. */
COHO_API void coho_cbuf_opts_init(coho_cbuf_opts_t *o);

/* Makes `b` an empty buffer. `o` may be NULL for the defaults. Allocates nothing: chunks come
 * from the calling thread's pool on first growth. Returns 0, or -1 with errno EINVAL (b NULL,
 * chunk_size not a power of two in range, max_len 0 or above COHO_CBUF_MAX_LEN_LIMIT). */
COHO_API int coho_cbuf_init(coho_cbuf_t *b, const coho_cbuf_opts_t *o);

/* Hands every chunk back to the calling thread's pool (chunks past the pool's cap are freed),
 * frees the buffer's own tables, and makes `b` uninitialised; every borrowed pointer and iovec
 * dies with it. Returns 0, or -1 with errno EINVAL (b NULL or not initialised). */
COHO_API int coho_cbuf_destroy(coho_cbuf_t *b);

/* Data bytes held; 0 for NULL or an uninitialised buffer. */
COHO_API size_t coho_cbuf_len(const coho_cbuf_t *b);

/* Bytes of chunk payload held (data, the unused part of the first and last chunk, idle chunks);
 * 0 for NULL or an uninitialised buffer. */
COHO_API size_t coho_cbuf_capacity(const coho_cbuf_t *b);

/* Copies `len` bytes from `data` to the end of the buffer. All or nothing; the cursor does not
 * move. len 0 does nothing and succeeds. Returns 0, or -1 with errno EINVAL (b not initialised,
 * data NULL with len > 0), ENOBUFS (the data would exceed max_len) or ENOMEM. */
COHO_API int coho_cbuf_append(coho_cbuf_t *b, const void *data, size_t len);

/* Drops the first `n` bytes. The cursor stays on the same byte, or moves to 0 if that byte was
 * dropped. Whole chunks that empty are handed back to the thread's pool, except that the buffer
 * keeps one idle chunk for the next write. n 0 does nothing. Returns 0, or -1 with errno EINVAL
 * (b not initialised, n > len; nothing changes). */
COHO_API int coho_cbuf_consume(coho_cbuf_t *b, size_t n);

/* Makes at least `min_bytes` of free space after the data (taking chunks from the thread's pool)
 * and describes the free space in up to `max_iov` entries of `iov` (at most IOV_MAX), in order,
 * so that readv(fd, iov, count) writes straight into the chunks; then call coho_cbuf_commit with
 * the bytes read. The entries cover at least min_bytes, all free space that fits in max_iov
 * entries, and never more than max_len - len bytes, so committing what they hold cannot fail.
 * Returns the number of entries filled (>= 1), or -1 with errno EINVAL (b not initialised, iov
 * NULL, min_bytes 0, max_iov < 1, or min_bytes more than max_iov entries can describe), ENOBUFS
 * (len + min_bytes > max_len) or ENOMEM. Borrowed: the iovecs point into the buffer and are valid
 * until the next call that changes b (append, write, commit, consume, truncate, shrink,
 * reserve_iov, destroy). */
COHO_API int coho_cbuf_reserve_iov(coho_cbuf_t *b, size_t min_bytes, struct iovec *iov,
                                   int max_iov);

/* Adds the first `n` bytes of free space (as handed out by coho_cbuf_reserve_iov and filled by
 * the caller) to the data. The cursor does not move. n 0 does nothing. Returns 0, or -1 with
 * errno EINVAL (b not initialised, n more than the free space) or ENOBUFS (len + n > max_len). */
COHO_API int coho_cbuf_commit(coho_cbuf_t *b, size_t n);

/* Describes the data from byte `offset` to the end in up to `max_iov` entries of `iov` (at most
 * IOV_MAX), in order, so that writev(fd, iov, count) sends straight from the chunks; then call
 * coho_cbuf_consume with the bytes sent. Returns the number of entries filled (0 when offset ==
 * len), or -1 with errno EINVAL (b not initialised, iov NULL, max_iov < 1, offset > len).
 * Borrowed: valid until the next call that changes b (see coho_cbuf_reserve_iov). */
COHO_API int coho_cbuf_data_iov(const coho_cbuf_t *b, size_t offset, struct iovec *iov,
                                int max_iov);

/* The cursor: the file position of read and write, in 0..len; 0 for an uninitialised buffer. */
COHO_API size_t coho_cbuf_tell(const coho_cbuf_t *b);

/* Moves the cursor to `off` bytes from the start (SEEK_SET), the cursor (SEEK_CUR) or the end
 * (SEEK_END), as lseek does, except that the new position must lie within 0..len. Returns the new
 * position, or -1 with errno EINVAL (b not initialised, unknown whence, position before 0 or
 * past the end; the cursor does not move). */
COHO_API off_t coho_cbuf_seek(coho_cbuf_t *b, off_t off, int whence);

/* Copies up to `n` bytes from the cursor to `dst` and advances the cursor past them; the data
 * stays in the buffer. Returns the bytes copied (0 at the end, or for n 0), or -1 with errno
 * EINVAL (b not initialised, dst NULL with n > 0, n > SSIZE_MAX). */
COHO_API ssize_t coho_cbuf_read(coho_cbuf_t *b, void *dst, size_t n);

/* Writes `n` bytes from `src` at the cursor: overwrites data there, and extends the buffer with
 * what goes past the end; the cursor advances past them. All or nothing. Returns n, or -1 with
 * errno EINVAL (b not initialised, src NULL with n > 0, n > SSIZE_MAX), ENOBUFS (the data would
 * exceed max_len) or ENOMEM. */
COHO_API ssize_t coho_cbuf_write(coho_cbuf_t *b, const void *src, size_t n);

/* Sets the data length to `len`, as ftruncate does: a shorter length drops the tail (the cursor
 * moves back to len if it was past it; emptied chunks are handed back as in coho_cbuf_consume),
 * a longer length appends zero bytes. Returns 0, or -1 with errno EINVAL (b not initialised),
 * ENOBUFS (len > max_len) or ENOMEM. */
COHO_API int coho_cbuf_truncate(coho_cbuf_t *b, size_t len);

/* A pointer to the first `n` data bytes, contiguous. When they lie in one chunk this points into
 * it; when they straddle chunks they are copied to a scratch area the buffer keeps (grown with
 * malloc on demand, freed by shrink and destroy). The data is unchanged either way; do not write
 * through the pointer. Returns NULL with errno EINVAL (b not initialised, n 0, n > len) or
 * ENOMEM. Borrowed: valid until the next call that changes b (see coho_cbuf_reserve_iov) or
 * the next linearize; read, seek, tell, len and data_iov leave it valid. */
COHO_API const void *coho_cbuf_linearize(coho_cbuf_t *b, size_t n);

/* Hands every idle chunk (wholly past the data) back to the thread's pool and frees the
 * linearize scratch and, when few chunks remain, the chunk table. Data and cursor are unchanged.
 * Returns 0, or -1 with errno EINVAL (b not initialised). */
COHO_API int coho_cbuf_shrink(coho_cbuf_t *b);

/* Fills `out` with the calling thread's chunk pool figures and the process-wide chunk totals.
 * Any thread. Returns 0, or -1 with errno EINVAL (out NULL). */
COHO_API int coho_cbuf_pool_get_stats(coho_cbuf_pool_stats_t *out);

/* Sets how many bytes of idle chunks the calling thread's pool keeps (default
 * COHO_CBUF_POOL_CAP_DEFAULT) and frees idle chunks beyond it at once; 0 keeps none. The pool is
 * released when the thread exits. Always returns 0. */
COHO_API int coho_cbuf_pool_set_cap(size_t cap_bytes);

COHO_EXTERN_C_END

#endif /* COHO_CBUF_H */
