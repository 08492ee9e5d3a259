/* SPDX-License-Identifier: MIT */
/* Tests of cbuf, the chained socket buffer: each operation with chunk-boundary cases, misuse
 * answers, readv/writev straight into and out of the chunks, the per-thread chunk pool, and a
 * randomized operation sequence against a flat-array model. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <coho.h>

#include "base_struct/cbuf_internal.h"
#include "base_struct/sys_net.h"
#include "test/support/cmocka_main.h"

/* A buffer with small chunks, so that short data crosses chunk boundaries. */
static void init_small(coho_cbuf_t *b, size_t chunk_size)
{
    coho_cbuf_opts_t o;

    coho_cbuf_opts_init(&o);
    o.chunk_size = chunk_size;
    assert_int_equal(coho_cbuf_init(b, &o), 0);
}

static void fill_pattern(unsigned char *p, size_t n, unsigned seed)
{
    size_t i;

    for (i = 0; i < n; i++)
        p[i] = (unsigned char)(i * 31u + seed * 7u + (i >> 8));
}

/* The whole data of b, gathered through data_iov, must equal want[0..n). */
static void assert_contents(const coho_cbuf_t *b, const unsigned char *want, size_t n)
{
    struct iovec iov[64];
    size_t pos = 0;
    int i, count;

    assert_int_equal(coho_cbuf_len(b), n);
    while (pos < n) {
        count = coho_cbuf_data_iov(b, pos, iov, 64);
        assert_true(count >= 1);
        for (i = 0; i < count; i++) {
            assert_true(iov[i].iov_len > 0);
            assert_memory_equal(iov[i].iov_base, want + pos, iov[i].iov_len);
            pos += iov[i].iov_len;
        }
    }
    assert_int_equal(pos, n);
    assert_int_equal(coho__cbuf_check(b), 0);
}

static void cbuf_init_rejects_bad_options(void **state)
{
    static const size_t bad_sizes[] = {0, 32, 100, 4097, (size_t)1 << 25};
    coho_cbuf_opts_t o;
    coho_cbuf_t b;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad_sizes) / sizeof(bad_sizes[0]); i++) {
        coho_cbuf_opts_init(&o);
        o.chunk_size = bad_sizes[i];
        errno = 0;
        assert_int_equal(coho_cbuf_init(&b, &o), -1);
        assert_int_equal(errno, EINVAL);
    }
    coho_cbuf_opts_init(&o);
    o.max_len = 0;
    assert_int_equal(coho_cbuf_init(&b, &o), -1);
    assert_int_equal(errno, EINVAL);
    o.max_len = COHO_CBUF_MAX_LEN_LIMIT + 1;
    assert_int_equal(coho_cbuf_init(&b, &o), -1);
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_int_equal(coho_cbuf_init(NULL, NULL), -1);
    assert_int_equal(errno, EINVAL);
    /* The extremes of the range are accepted. */
    o.max_len = COHO_CBUF_MAX_LEN_LIMIT;
    o.chunk_size = COHO_CBUF_CHUNK_SIZE_MIN;
    assert_int_equal(coho_cbuf_init(&b, &o), 0);
    assert_int_equal(coho_cbuf_destroy(&b), 0);
    o.chunk_size = COHO_CBUF_CHUNK_SIZE_MAX;
    assert_int_equal(coho_cbuf_init(&b, &o), 0);
    assert_int_equal(coho_cbuf_destroy(&b), 0);
}

static void cbuf_calls_on_uninitialised_buffer_are_einval(void **state)
{
    coho_cbuf_t b, *bp[2] = {NULL, &b};
    struct iovec iov[2];
    char c = 'x';
    int i;

    (void)state;
    memset(&b, 0, sizeof(b));
    for (i = 0; i < 2; i++) {
        coho_cbuf_t *p = bp[i];

        assert_int_equal(coho_cbuf_len(p), 0);
        assert_int_equal(coho_cbuf_capacity(p), 0);
        assert_int_equal(coho_cbuf_tell(p), 0);
        errno = 0;
        assert_int_equal(coho_cbuf_append(p, &c, 1), -1);
        assert_int_equal(errno, EINVAL);
        errno = 0;
        assert_int_equal(coho_cbuf_consume(p, 0), -1);
        assert_int_equal(errno, EINVAL);
        errno = 0;
        assert_int_equal(coho_cbuf_reserve_iov(p, 1, iov, 2), -1);
        assert_int_equal(errno, EINVAL);
        errno = 0;
        assert_int_equal(coho_cbuf_commit(p, 0), -1);
        assert_int_equal(errno, EINVAL);
        errno = 0;
        assert_int_equal(coho_cbuf_data_iov(p, 0, iov, 2), -1);
        assert_int_equal(errno, EINVAL);
        errno = 0;
        assert_int_equal(coho_cbuf_seek(p, 0, SEEK_SET), -1);
        assert_int_equal(errno, EINVAL);
        errno = 0;
        assert_int_equal(coho_cbuf_read(p, &c, 1), -1);
        assert_int_equal(errno, EINVAL);
        errno = 0;
        assert_int_equal(coho_cbuf_write(p, &c, 1), -1);
        assert_int_equal(errno, EINVAL);
        errno = 0;
        assert_int_equal(coho_cbuf_truncate(p, 0), -1);
        assert_int_equal(errno, EINVAL);
        errno = 0;
        assert_null(coho_cbuf_linearize(p, 1));
        assert_int_equal(errno, EINVAL);
        errno = 0;
        assert_int_equal(coho_cbuf_shrink(p), -1);
        assert_int_equal(errno, EINVAL);
        errno = 0;
        assert_int_equal(coho_cbuf_destroy(p), -1);
        assert_int_equal(errno, EINVAL);
    }
}

static void cbuf_destroy_twice_is_einval(void **state)
{
    coho_cbuf_t b;

    (void)state;
    assert_int_equal(coho_cbuf_init(&b, NULL), 0);
    assert_int_equal(coho_cbuf_append(&b, "abc", 3), 0);
    assert_int_equal(coho_cbuf_destroy(&b), 0);
    errno = 0;
    assert_int_equal(coho_cbuf_destroy(&b), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(coho_cbuf_len(&b), 0);
}

static void cbuf_init_allocates_nothing(void **state)
{
    size_t live = coho__cbuf_chunks_live();
    coho_cbuf_t b;

    (void)state;
    assert_int_equal(coho_cbuf_init(&b, NULL), 0);
    assert_int_equal(coho_cbuf_len(&b), 0);
    assert_int_equal(coho_cbuf_capacity(&b), 0);
    assert_int_equal(coho__cbuf_chunks_live(), live);
    assert_int_equal(coho_cbuf_destroy(&b), 0);
}

static void cbuf_append_then_read_returns_same_bytes(void **state)
{
    unsigned char in[10000], out[10000];
    coho_cbuf_t b;

    (void)state;
    fill_pattern(in, sizeof(in), 1);
    assert_int_equal(coho_cbuf_init(&b, NULL), 0);
    assert_int_equal(coho_cbuf_append(&b, in, sizeof(in)), 0);
    assert_int_equal(coho_cbuf_len(&b), sizeof(in));
    assert_int_equal(coho_cbuf_capacity(&b), 3 * 4096);
    assert_int_equal(coho_cbuf_tell(&b), 0); /* append does not move the cursor */
    assert_int_equal(coho_cbuf_read(&b, out, sizeof(out)), sizeof(out));
    assert_memory_equal(in, out, sizeof(in));
    assert_int_equal(coho_cbuf_tell(&b), sizeof(in));
    assert_int_equal(coho_cbuf_len(&b), sizeof(in)); /* read leaves the data in place */
    assert_contents(&b, in, sizeof(in));
    assert_int_equal(coho_cbuf_destroy(&b), 0);
}

static void cbuf_append_spans_chunk_boundary(void **state)
{
    unsigned char in[200];
    struct iovec iov[8];
    coho_cbuf_t b;

    (void)state;
    fill_pattern(in, sizeof(in), 2);
    init_small(&b, 64);
    assert_int_equal(coho_cbuf_append(&b, in, 50), 0);
    assert_int_equal(coho_cbuf_append(&b, in + 50, 150), 0);
    assert_int_equal(coho_cbuf_capacity(&b), 256);
    assert_int_equal(coho_cbuf_data_iov(&b, 0, iov, 8), 4);
    assert_int_equal(iov[0].iov_len, 64);
    assert_int_equal(iov[1].iov_len, 64);
    assert_int_equal(iov[2].iov_len, 64);
    assert_int_equal(iov[3].iov_len, 8);
    assert_contents(&b, in, sizeof(in));
    assert_int_equal(coho_cbuf_destroy(&b), 0);
}

static void cbuf_append_of_zero_bytes_changes_nothing(void **state)
{
    coho_cbuf_t b;

    (void)state;
    assert_int_equal(coho_cbuf_init(&b, NULL), 0);
    assert_int_equal(coho_cbuf_append(&b, NULL, 0), 0);
    assert_int_equal(coho_cbuf_len(&b), 0);
    assert_int_equal(coho_cbuf_capacity(&b), 0);
    errno = 0;
    assert_int_equal(coho_cbuf_append(&b, NULL, 1), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(coho_cbuf_destroy(&b), 0);
}

static void cbuf_append_past_max_len_is_enobufs_and_changes_nothing(void **state)
{
    unsigned char in[300];
    coho_cbuf_opts_t o;
    coho_cbuf_t b;

    (void)state;
    fill_pattern(in, sizeof(in), 3);
    coho_cbuf_opts_init(&o);
    o.chunk_size = 64;
    o.max_len = 200;
    assert_int_equal(coho_cbuf_init(&b, &o), 0);
    assert_int_equal(coho_cbuf_append(&b, in, 150), 0);
    errno = 0;
    assert_int_equal(coho_cbuf_append(&b, in + 150, 51), -1);
    assert_int_equal(errno, ENOBUFS);
    assert_contents(&b, in, 150);
    assert_int_equal(coho_cbuf_append(&b, in + 150, 50), 0);
    assert_contents(&b, in, 200);
    assert_int_equal(coho_cbuf_destroy(&b), 0);
}

static void cbuf_oversized_requests_fail_cleanly(void **state)
{
    size_t live = coho__cbuf_chunks_live();
    struct iovec iov[4];
    char c = 0;
    coho_cbuf_t b;

    (void)state;
    assert_int_equal(coho_cbuf_init(&b, NULL), 0);
    errno = 0;
    assert_int_equal(coho_cbuf_append(&b, &c, SIZE_MAX), -1);
    assert_int_equal(errno, ENOBUFS);
    errno = 0;
    assert_int_equal(coho_cbuf_read(&b, &c, (size_t)SSIZE_MAX + 1), -1);
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_int_equal(coho_cbuf_write(&b, &c, SIZE_MAX), -1);
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_int_equal(coho_cbuf_write(&b, &c, COHO_CBUF_MAX_LEN_DEFAULT + 1), -1);
    assert_int_equal(errno, ENOBUFS);
    errno = 0;
    assert_int_equal(coho_cbuf_truncate(&b, SIZE_MAX), -1);
    assert_int_equal(errno, ENOBUFS);
    errno = 0;
    assert_int_equal(coho_cbuf_reserve_iov(&b, SIZE_MAX, iov, 4), -1);
    assert_int_equal(errno, ENOBUFS);
    errno = 0;
    assert_int_equal(coho_cbuf_commit(&b, SIZE_MAX), -1);
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_int_equal(coho_cbuf_consume(&b, SIZE_MAX), -1);
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(coho_cbuf_linearize(&b, SIZE_MAX));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_int_equal(coho_cbuf_data_iov(&b, SIZE_MAX, iov, 4), -1);
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_int_equal(coho_cbuf_seek(&b, (off_t)((~0ull) >> 1), SEEK_SET), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(coho_cbuf_len(&b), 0);
    assert_int_equal(coho_cbuf_capacity(&b), 0);
    assert_int_equal(coho__cbuf_chunks_live(), live);
    assert_int_equal(coho_cbuf_destroy(&b), 0);
}

static void cbuf_consume_drops_front_and_keeps_cursor_on_same_byte(void **state)
{
    unsigned char in[300], c;
    coho_cbuf_t b;

    (void)state;
    fill_pattern(in, sizeof(in), 4);
    init_small(&b, 64);
    assert_int_equal(coho_cbuf_append(&b, in, sizeof(in)), 0);
    assert_int_equal(coho_cbuf_seek(&b, 150, SEEK_SET), 150);
    assert_int_equal(coho_cbuf_consume(&b, 100), 0);
    assert_int_equal(coho_cbuf_tell(&b), 50);
    assert_int_equal(coho_cbuf_read(&b, &c, 1), 1);
    assert_int_equal(c, in[150]);
    assert_contents(&b, in + 100, 200);
    /* Dropping the byte under the cursor moves the cursor to the front. */
    assert_int_equal(coho_cbuf_consume(&b, 120), 0);
    assert_int_equal(coho_cbuf_tell(&b), 0);
    assert_contents(&b, in + 220, 80);
    assert_int_equal(coho_cbuf_consume(&b, 0), 0);
    assert_contents(&b, in + 220, 80);
    assert_int_equal(coho_cbuf_destroy(&b), 0);
}

static void cbuf_consume_more_than_len_is_einval_and_changes_nothing(void **state)
{
    unsigned char in[100];
    coho_cbuf_t b;

    (void)state;
    fill_pattern(in, sizeof(in), 5);
    init_small(&b, 64);
    assert_int_equal(coho_cbuf_append(&b, in, sizeof(in)), 0);
    assert_int_equal(coho_cbuf_seek(&b, 10, SEEK_SET), 10);
    errno = 0;
    assert_int_equal(coho_cbuf_consume(&b, 101), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(coho_cbuf_tell(&b), 10);
    assert_contents(&b, in, sizeof(in));
    assert_int_equal(coho_cbuf_destroy(&b), 0);
}

static void cbuf_consume_hands_emptied_chunks_back_keeping_one_spare(void **state)
{
    unsigned char in[640];
    coho_cbuf_pool_stats_t before, after;
    coho_cbuf_t b;

    (void)state;
    fill_pattern(in, sizeof(in), 6);
    init_small(&b, 64);
    assert_int_equal(coho_cbuf_append(&b, in, sizeof(in)), 0);
    assert_int_equal(coho_cbuf_capacity(&b), 640);
    assert_int_equal(coho_cbuf_pool_get_stats(&before), 0);
    /* 40 bytes remain in chunk 9; chunks 0..8 empty: one stays as the spare, 8 go back. */
    assert_int_equal(coho_cbuf_consume(&b, 600), 0);
    assert_int_equal(coho_cbuf_capacity(&b), 128);
    assert_int_equal(coho_cbuf_pool_get_stats(&after), 0);
    assert_int_equal(after.idle_count, before.idle_count + 8);
    assert_int_equal(after.idle_bytes, before.idle_bytes + 8 * 64);
    assert_contents(&b, in + 600, 40);
    /* Emptying the buffer keeps one chunk, and the next data starts at its beginning. */
    assert_int_equal(coho_cbuf_consume(&b, 40), 0);
    assert_int_equal(coho_cbuf_capacity(&b), 64);
    assert_int_equal(coho_cbuf_append(&b, in, 64), 0);
    assert_int_equal(coho_cbuf_capacity(&b), 64);
    assert_contents(&b, in, 64);
    assert_int_equal(coho_cbuf_destroy(&b), 0);
}

static void cbuf_streaming_reuses_spare_chunk_without_pool(void **state)
{
    unsigned char in[4096], out[4096];
    coho_cbuf_pool_stats_t before, after;
    size_t live;
    coho_cbuf_t b;
    int i;

    (void)state;
    fill_pattern(in, sizeof(in), 7);
    assert_int_equal(coho_cbuf_init(&b, NULL), 0);
    assert_int_equal(coho_cbuf_append(&b, in, sizeof(in)), 0);
    assert_int_equal(coho_cbuf_consume(&b, sizeof(in)), 0);
    assert_int_equal(coho_cbuf_pool_get_stats(&before), 0);
    live = coho__cbuf_chunks_live();
    for (i = 0; i < 100; i++) {
        assert_int_equal(coho_cbuf_append(&b, in, sizeof(in)), 0);
        assert_int_equal(coho_cbuf_read(&b, out, sizeof(out)), sizeof(out));
        assert_memory_equal(in, out, sizeof(in));
        assert_int_equal(coho_cbuf_consume(&b, sizeof(out)), 0);
        assert_int_equal(coho_cbuf_capacity(&b), 4096);
    }
    assert_int_equal(coho_cbuf_pool_get_stats(&after), 0);
    assert_int_equal(after.idle_count, before.idle_count);
    assert_int_equal(coho__cbuf_chunks_live(), live);
    assert_int_equal(coho_cbuf_destroy(&b), 0);
}

static void cbuf_seek_past_end_is_einval(void **state)
{
    coho_cbuf_t b;

    (void)state;
    assert_int_equal(coho_cbuf_init(&b, NULL), 0);
    assert_int_equal(coho_cbuf_append(&b, "0123456789", 10), 0);
    assert_int_equal(coho_cbuf_seek(&b, 4, SEEK_SET), 4);
    errno = 0;
    assert_int_equal(coho_cbuf_seek(&b, 11, SEEK_SET), -1);
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_int_equal(coho_cbuf_seek(&b, 7, SEEK_CUR), -1);
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_int_equal(coho_cbuf_seek(&b, 1, SEEK_END), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(coho_cbuf_tell(&b), 4); /* a failed seek leaves the cursor alone */
    assert_int_equal(coho_cbuf_seek(&b, 10, SEEK_SET), 10); /* the end itself is fine */
    assert_int_equal(coho_cbuf_destroy(&b), 0);
}

static void cbuf_seek_before_start_or_bad_whence_is_einval(void **state)
{
    coho_cbuf_t b;

    (void)state;
    assert_int_equal(coho_cbuf_init(&b, NULL), 0);
    assert_int_equal(coho_cbuf_append(&b, "0123456789", 10), 0);
    assert_int_equal(coho_cbuf_seek(&b, 3, SEEK_SET), 3);
    errno = 0;
    assert_int_equal(coho_cbuf_seek(&b, -1, SEEK_SET), -1);
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_int_equal(coho_cbuf_seek(&b, -4, SEEK_CUR), -1);
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_int_equal(coho_cbuf_seek(&b, -11, SEEK_END), -1);
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_int_equal(coho_cbuf_seek(&b, 0, 42), -1);
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_int_equal(coho_cbuf_seek(&b, (off_t)((~0ull) >> 1), SEEK_END), -1); /* overflow */
    assert_int_equal(errno, EINVAL);
    assert_int_equal(coho_cbuf_tell(&b), 3);
    assert_int_equal(coho_cbuf_destroy(&b), 0);
}

static void cbuf_seek_set_cur_end_move_cursor(void **state)
{
    char c;
    coho_cbuf_t b;

    (void)state;
    assert_int_equal(coho_cbuf_init(&b, NULL), 0);
    assert_int_equal(coho_cbuf_append(&b, "0123456789", 10), 0);
    assert_int_equal(coho_cbuf_seek(&b, 2, SEEK_SET), 2);
    assert_int_equal(coho_cbuf_seek(&b, 3, SEEK_CUR), 5);
    assert_int_equal(coho_cbuf_read(&b, &c, 1), 1);
    assert_int_equal(c, '5');
    assert_int_equal(coho_cbuf_seek(&b, -2, SEEK_CUR), 4);
    assert_int_equal(coho_cbuf_seek(&b, -1, SEEK_END), 9);
    assert_int_equal(coho_cbuf_read(&b, &c, 1), 1);
    assert_int_equal(c, '9');
    assert_int_equal(coho_cbuf_seek(&b, 0, SEEK_END), 10);
    assert_int_equal(coho_cbuf_seek(&b, 0, SEEK_SET), 0);
    assert_int_equal(coho_cbuf_destroy(&b), 0);
}

static void cbuf_read_spans_chunk_boundary(void **state)
{
    unsigned char in[200], out[100];
    coho_cbuf_t b;

    (void)state;
    fill_pattern(in, sizeof(in), 8);
    init_small(&b, 64);
    assert_int_equal(coho_cbuf_append(&b, in, sizeof(in)), 0);
    assert_int_equal(coho_cbuf_seek(&b, 60, SEEK_SET), 60);
    assert_int_equal(coho_cbuf_read(&b, out, 10), 10); /* bytes 60..69: chunks 0 and 1 */
    assert_memory_equal(out, in + 60, 10);
    assert_int_equal(coho_cbuf_tell(&b), 70);
    assert_int_equal(coho_cbuf_read(&b, out, 100), 100); /* 70..169: chunks 1, 2 and 3 */
    assert_memory_equal(out, in + 70, 100);
    assert_int_equal(coho_cbuf_destroy(&b), 0);
}

static void cbuf_read_at_end_returns_zero_and_short_read_stops_at_end(void **state)
{
    unsigned char in[100], out[100];
    coho_cbuf_t b;

    (void)state;
    fill_pattern(in, sizeof(in), 9);
    init_small(&b, 64);
    assert_int_equal(coho_cbuf_read(&b, out, sizeof(out)), 0);
    assert_int_equal(coho_cbuf_append(&b, in, sizeof(in)), 0);
    assert_int_equal(coho_cbuf_seek(&b, 90, SEEK_SET), 90);
    assert_int_equal(coho_cbuf_read(&b, out, sizeof(out)), 10);
    assert_memory_equal(out, in + 90, 10);
    assert_int_equal(coho_cbuf_read(&b, out, sizeof(out)), 0);
    assert_int_equal(coho_cbuf_read(&b, NULL, 0), 0);
    errno = 0;
    assert_int_equal(coho_cbuf_read(&b, NULL, 1), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(coho_cbuf_destroy(&b), 0);
}

static void cbuf_write_overwrites_then_extends(void **state)
{
    coho_cbuf_t b;

    (void)state;
    assert_int_equal(coho_cbuf_init(&b, NULL), 0);
    assert_int_equal(coho_cbuf_write(&b, "hello world", 11), 11);
    assert_int_equal(coho_cbuf_tell(&b), 11);
    assert_int_equal(coho_cbuf_seek(&b, 6, SEEK_SET), 6);
    assert_int_equal(coho_cbuf_write(&b, "there!!", 7), 7);
    assert_int_equal(coho_cbuf_tell(&b), 13);
    assert_contents(&b, (const unsigned char *)"hello there!!", 13);
    assert_int_equal(coho_cbuf_seek(&b, 0, SEEK_SET), 0);
    assert_int_equal(coho_cbuf_write(&b, "J", 1), 1); /* wholly inside: no growth */
    assert_contents(&b, (const unsigned char *)"Jello there!!", 13);
    assert_int_equal(coho_cbuf_write(&b, NULL, 0), 0);
    assert_int_equal(coho_cbuf_destroy(&b), 0);
}

static void cbuf_write_spans_chunk_boundary(void **state)
{
    unsigned char in[300], patch[100], want[300];
    coho_cbuf_t b;

    (void)state;
    fill_pattern(in, sizeof(in), 10);
    fill_pattern(patch, sizeof(patch), 11);
    init_small(&b, 64);
    assert_int_equal(coho_cbuf_append(&b, in, 150), 0);
    /* 100 bytes at 120: overwrite 30 bytes in chunk 1 and 2, extend by 70 into chunks 2..3. */
    assert_int_equal(coho_cbuf_seek(&b, 120, SEEK_SET), 120);
    assert_int_equal(coho_cbuf_write(&b, patch, sizeof(patch)), sizeof(patch));
    memcpy(want, in, 120);
    memcpy(want + 120, patch, 100);
    assert_contents(&b, want, 220);
    assert_int_equal(coho_cbuf_tell(&b), 220);
    assert_int_equal(coho_cbuf_destroy(&b), 0);
}

static void cbuf_write_past_max_len_is_enobufs_and_changes_nothing(void **state)
{
    unsigned char in[100];
    coho_cbuf_opts_t o;
    coho_cbuf_t b;

    (void)state;
    fill_pattern(in, sizeof(in), 12);
    coho_cbuf_opts_init(&o);
    o.chunk_size = 64;
    o.max_len = 100;
    assert_int_equal(coho_cbuf_init(&b, &o), 0);
    assert_int_equal(coho_cbuf_append(&b, in, 90), 0);
    assert_int_equal(coho_cbuf_seek(&b, 50, SEEK_SET), 50);
    errno = 0;
    assert_int_equal(coho_cbuf_write(&b, in, 51), -1);
    assert_int_equal(errno, ENOBUFS);
    assert_int_equal(coho_cbuf_tell(&b), 50);
    assert_contents(&b, in, 90);
    assert_int_equal(coho_cbuf_write(&b, in, 50), 50);
    assert_int_equal(coho_cbuf_len(&b), 100);
    assert_int_equal(coho_cbuf_destroy(&b), 0);
}

static void cbuf_truncate_shortens_and_pulls_cursor_back(void **state)
{
    unsigned char in[500];
    coho_cbuf_t b;

    (void)state;
    fill_pattern(in, sizeof(in), 13);
    init_small(&b, 64);
    assert_int_equal(coho_cbuf_append(&b, in, sizeof(in)), 0);
    assert_int_equal(coho_cbuf_seek(&b, 400, SEEK_SET), 400);
    assert_int_equal(coho_cbuf_truncate(&b, 130), 0);
    assert_int_equal(coho_cbuf_tell(&b), 130);
    assert_contents(&b, in, 130);
    /* 3 chunks hold data, one idle chunk stays. */
    assert_int_equal(coho_cbuf_capacity(&b), 4 * 64);
    assert_int_equal(coho_cbuf_seek(&b, 10, SEEK_SET), 10);
    assert_int_equal(coho_cbuf_truncate(&b, 20), 0);
    assert_int_equal(coho_cbuf_tell(&b), 10); /* a cursor inside stays */
    assert_int_equal(coho_cbuf_truncate(&b, 0), 0);
    assert_int_equal(coho_cbuf_tell(&b), 0);
    assert_int_equal(coho_cbuf_len(&b), 0);
    assert_int_equal(coho__cbuf_check(&b), 0);
    assert_int_equal(coho_cbuf_destroy(&b), 0);
}

static void cbuf_truncate_longer_appends_zeros(void **state)
{
    unsigned char in[100], want[300];
    coho_cbuf_t b;

    (void)state;
    fill_pattern(in, sizeof(in), 14);
    init_small(&b, 64);
    assert_int_equal(coho_cbuf_append(&b, in, sizeof(in)), 0);
    /* Stale bytes in the chunk past the data must not show through. */
    assert_int_equal(coho_cbuf_truncate(&b, 10), 0);
    assert_int_equal(coho_cbuf_truncate(&b, 300), 0);
    memset(want, 0, sizeof(want));
    memcpy(want, in, 10);
    assert_contents(&b, want, 300);
    assert_int_equal(coho_cbuf_tell(&b), 0);
    assert_int_equal(coho_cbuf_destroy(&b), 0);
}

static void cbuf_linearize_inside_one_chunk_copies_nothing(void **state)
{
    unsigned char in[200];
    struct iovec iov[4];
    const void *p;
    coho_cbuf_t b;

    (void)state;
    fill_pattern(in, sizeof(in), 15);
    init_small(&b, 64);
    assert_int_equal(coho_cbuf_append(&b, in, sizeof(in)), 0);
    assert_int_equal(coho_cbuf_consume(&b, 70), 0); /* data now starts 6 bytes into a chunk */
    assert_int_equal(coho_cbuf_data_iov(&b, 0, iov, 4), 3);
    p = coho_cbuf_linearize(&b, 58); /* exactly the rest of the first chunk */
    assert_ptr_equal(p, iov[0].iov_base);
    assert_memory_equal(p, in + 70, 58);
    assert_int_equal(coho_cbuf_destroy(&b), 0);
}

static void cbuf_linearize_straddling_chunks_returns_contiguous_copy(void **state)
{
    unsigned char in[300];
    struct iovec iov[8];
    const unsigned char *p;
    coho_cbuf_t b;
    int i, count;

    (void)state;
    fill_pattern(in, sizeof(in), 16);
    init_small(&b, 64);
    assert_int_equal(coho_cbuf_append(&b, in, sizeof(in)), 0);
    assert_int_equal(coho_cbuf_consume(&b, 70), 0);
    p = coho_cbuf_linearize(&b, 59);
    assert_non_null(p);
    assert_memory_equal(p, in + 70, 59);
    /* The copy lies outside every chunk, and the data itself is unchanged. */
    count = coho_cbuf_data_iov(&b, 0, iov, 8);
    for (i = 0; i < count; i++) {
        const unsigned char *base = iov[i].iov_base;

        assert_false(p >= base && p < base + iov[i].iov_len);
    }
    assert_contents(&b, in + 70, 230);
    p = coho_cbuf_linearize(&b, 230); /* the whole data, several chunks */
    assert_non_null(p);
    assert_memory_equal(p, in + 70, 230);
    assert_int_equal(coho_cbuf_shrink(&b), 0);
    assert_int_equal(coho__cbuf_check(&b), 0);
    assert_int_equal(coho_cbuf_destroy(&b), 0);
}

static void cbuf_linearize_zero_or_past_len_is_einval(void **state)
{
    coho_cbuf_t b;

    (void)state;
    assert_int_equal(coho_cbuf_init(&b, NULL), 0);
    errno = 0;
    assert_null(coho_cbuf_linearize(&b, 1));
    assert_int_equal(errno, EINVAL);
    assert_int_equal(coho_cbuf_append(&b, "abc", 3), 0);
    errno = 0;
    assert_null(coho_cbuf_linearize(&b, 0));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(coho_cbuf_linearize(&b, 4));
    assert_int_equal(errno, EINVAL);
    assert_memory_equal(coho_cbuf_linearize(&b, 3), "abc", 3);
    assert_int_equal(coho_cbuf_destroy(&b), 0);
}

/* readv straight into reserve_iov: the bytes land in the chunks at the handed-out addresses,
 * data_iov later points at exactly those addresses, and no chunk is taken or copied on the way.
 */
static void cbuf_readv_into_reserve_iov_copies_nothing(void **state)
{
    unsigned char in[1000];
    struct iovec res[8], dat[8];
    size_t live, cap, pos;
    coho_cbuf_t b;
    int sv[2], nres, ndat, i;
    ssize_t got;

    (void)state;
    fill_pattern(in, sizeof(in), 17);
    coho__sys_init();
    assert_int_equal(coho__sys.socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    init_small(&b, 256);
    assert_int_equal(coho_cbuf_append(&b, in, 100), 0); /* free space starts mid-chunk */
    nres = coho_cbuf_reserve_iov(&b, 900, res, 8);
    assert_int_equal(nres, 4);
    assert_int_equal(res[0].iov_len, 156);
    assert_int_equal(res[3].iov_len, 256);
    live = coho__cbuf_chunks_live();
    cap = coho_cbuf_capacity(&b);
    assert_int_equal(coho__sys.write(sv[1], in + 100, 900), 900);
    got = coho__sys.readv(sv[0], res, nres);
    assert_int_equal(got, 900);
    /* The data is already where the iovecs point, before any cbuf call. */
    assert_memory_equal(res[0].iov_base, in + 100, 156);
    assert_memory_equal(res[1].iov_base, in + 256, 256);
    assert_memory_equal(res[3].iov_base, in + 768, 900 - 668);
    assert_int_equal(coho_cbuf_commit(&b, (size_t)got), 0);
    assert_int_equal(coho__cbuf_chunks_live(), live);
    assert_int_equal(coho_cbuf_capacity(&b), cap);
    ndat = coho_cbuf_data_iov(&b, 0, dat, 8);
    assert_int_equal(ndat, 4);
    for (i = 1; i < ndat; i++)
        assert_ptr_equal(dat[i].iov_base, res[i].iov_base);
    assert_ptr_equal((unsigned char *)dat[0].iov_base + 100, res[0].iov_base);
    for (pos = 0, i = 0; i < ndat; i++)
        pos += dat[i].iov_len;
    assert_int_equal(pos, 1000);
    assert_contents(&b, in, 1000);
    coho__sys.close(sv[0]);
    coho__sys.close(sv[1]);
    assert_int_equal(coho_cbuf_destroy(&b), 0);
}

/* writev straight from data_iov sends the data, and consume of the bytes sent drops them. */
static void cbuf_writev_from_data_iov_sends_from_chunks(void **state)
{
    unsigned char in[3000], out[3000];
    struct iovec iov[16];
    coho_cbuf_t b;
    int sv[2], n;
    ssize_t sent, got = 0, r;

    (void)state;
    fill_pattern(in, sizeof(in), 18);
    coho__sys_init();
    assert_int_equal(coho__sys.socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    init_small(&b, 512);
    assert_int_equal(coho_cbuf_append(&b, in, sizeof(in)), 0);
    n = coho_cbuf_data_iov(&b, 0, iov, 16);
    assert_int_equal(n, 6);
    sent = coho__sys.writev(sv[1], iov, n);
    assert_int_equal(sent, 3000);
    assert_int_equal(coho_cbuf_consume(&b, (size_t)sent), 0);
    assert_int_equal(coho_cbuf_len(&b), 0);
    while (got < 3000) {
        r = coho__sys.read(sv[0], out + got, sizeof(out) - (size_t)got);
        assert_true(r > 0);
        got += r;
    }
    assert_memory_equal(in, out, sizeof(in));
    coho__sys.close(sv[0]);
    coho__sys.close(sv[1]);
    assert_int_equal(coho_cbuf_destroy(&b), 0);
}

static void cbuf_data_iov_from_offset_starts_mid_chunk_and_respects_max_iov(void **state)
{
    unsigned char in[300];
    struct iovec iov[8];
    coho_cbuf_t b;

    (void)state;
    fill_pattern(in, sizeof(in), 19);
    init_small(&b, 64);
    assert_int_equal(coho_cbuf_append(&b, in, sizeof(in)), 0);
    assert_int_equal(coho_cbuf_data_iov(&b, 100, iov, 8), 4);
    assert_int_equal(iov[0].iov_len, 28);
    assert_memory_equal(iov[0].iov_base, in + 100, 28);
    assert_int_equal(iov[3].iov_len, 300 - 256);
    assert_int_equal(coho_cbuf_data_iov(&b, 100, iov, 2), 2); /* only what fits */
    assert_int_equal(iov[1].iov_len, 64);
    assert_int_equal(coho_cbuf_data_iov(&b, 300, iov, 8), 0); /* offset == len: nothing */
    errno = 0;
    assert_int_equal(coho_cbuf_data_iov(&b, 301, iov, 8), -1);
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_int_equal(coho_cbuf_data_iov(&b, 0, iov, 0), -1);
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_int_equal(coho_cbuf_data_iov(&b, 0, NULL, 8), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(coho_cbuf_destroy(&b), 0);
}

static void cbuf_reserve_iov_rejects_zero_and_oversized_requests(void **state)
{
    struct iovec iov[4];
    coho_cbuf_opts_t o;
    coho_cbuf_t b;

    (void)state;
    coho_cbuf_opts_init(&o);
    o.chunk_size = 64;
    o.max_len = 1000;
    assert_int_equal(coho_cbuf_init(&b, &o), 0);
    errno = 0;
    assert_int_equal(coho_cbuf_reserve_iov(&b, 0, iov, 4), -1);
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_int_equal(coho_cbuf_reserve_iov(&b, 10, iov, 0), -1);
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_int_equal(coho_cbuf_reserve_iov(&b, 10, NULL, 4), -1);
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_int_equal(coho_cbuf_reserve_iov(&b, 257, iov, 4), -1); /* 4 entries hold 256 */
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_int_equal(coho_cbuf_reserve_iov(&b, 1001, iov, 4), -1);
    assert_int_equal(errno, ENOBUFS);
    assert_int_equal(coho_cbuf_capacity(&b), 0); /* failures took nothing */
    assert_int_equal(coho_cbuf_reserve_iov(&b, 256, iov, 4), 4);
    assert_int_equal(coho_cbuf_capacity(&b), 256);
    assert_int_equal(coho_cbuf_destroy(&b), 0);
}

static void cbuf_reserve_iov_never_hands_out_more_than_max_len(void **state)
{
    struct iovec iov[8];
    coho_cbuf_opts_t o;
    coho_cbuf_t b;
    size_t total = 0;
    int i, n;

    (void)state;
    coho_cbuf_opts_init(&o);
    o.chunk_size = 64;
    o.max_len = 100;
    assert_int_equal(coho_cbuf_init(&b, &o), 0);
    assert_int_equal(coho_cbuf_append(&b, "0123456789", 10), 0);
    assert_int_equal(coho_cbuf_reserve_iov(&b, 80, iov, 8), 2);
    for (i = 0; i < 2; i++)
        total += iov[i].iov_len;
    assert_int_equal(total, 90);
    assert_int_equal(coho_cbuf_commit(&b, total), 0);
    assert_int_equal(coho_cbuf_len(&b), 100);
    /* A buffer at max_len has nothing to hand out. */
    errno = 0;
    n = coho_cbuf_reserve_iov(&b, 1, iov, 8);
    assert_int_equal(n, -1);
    assert_int_equal(errno, ENOBUFS);
    assert_int_equal(coho_cbuf_destroy(&b), 0);
}

static void cbuf_reserve_iov_describes_existing_free_space_too(void **state)
{
    struct iovec iov[8];
    coho_cbuf_t b;

    (void)state;
    init_small(&b, 64);
    assert_int_equal(coho_cbuf_reserve_iov(&b, 200, iov, 8), 4);
    assert_int_equal(coho_cbuf_commit(&b, 10), 0);
    /* Asking for 1 byte hands out all the 246 bytes of free space the buffer holds. */
    assert_int_equal(coho_cbuf_reserve_iov(&b, 1, iov, 8), 4);
    assert_int_equal(iov[0].iov_len, 54);
    assert_int_equal(coho_cbuf_capacity(&b), 256);
    /* With one entry allowed, it describes the rest of the current chunk. */
    assert_int_equal(coho_cbuf_reserve_iov(&b, 1, iov, 1), 1);
    assert_int_equal(iov[0].iov_len, 54);
    assert_int_equal(coho_cbuf_destroy(&b), 0);
}

static void cbuf_commit_more_than_free_space_is_einval(void **state)
{
    struct iovec iov[2];
    coho_cbuf_t b;

    (void)state;
    init_small(&b, 64);
    errno = 0;
    assert_int_equal(coho_cbuf_commit(&b, 1), -1); /* no chunk yet: no free space */
    assert_int_equal(errno, EINVAL);
    assert_int_equal(coho_cbuf_reserve_iov(&b, 64, iov, 2), 1);
    errno = 0;
    assert_int_equal(coho_cbuf_commit(&b, 65), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(coho_cbuf_len(&b), 0);
    assert_int_equal(coho_cbuf_commit(&b, 0), 0);
    memset(iov[0].iov_base, 'z', 64);
    assert_int_equal(coho_cbuf_commit(&b, 64), 0);
    assert_int_equal(coho_cbuf_len(&b), 64);
    assert_int_equal(coho_cbuf_tell(&b), 0); /* commit does not move the cursor */
    assert_int_equal(coho_cbuf_destroy(&b), 0);
}

static void cbuf_shrink_hands_idle_chunks_back_to_pool(void **state)
{
    unsigned char in[100];
    struct iovec iov[17];
    coho_cbuf_pool_stats_t before, after;
    coho_cbuf_t b;

    (void)state;
    fill_pattern(in, sizeof(in), 20);
    init_small(&b, 64);
    assert_int_equal(coho_cbuf_append(&b, in, sizeof(in)), 0);
    /* 28 bytes left in chunk 1, then 16 more chunks: the table leaves its inline slots. */
    assert_int_equal(coho_cbuf_reserve_iov(&b, 1000, iov, 17), 17);
    assert_int_equal(coho_cbuf_capacity(&b), 18 * 64);
    assert_non_null(coho_cbuf_linearize(&b, 100));
    assert_int_equal(coho_cbuf_pool_get_stats(&before), 0);
    assert_int_equal(coho_cbuf_shrink(&b), 0);
    assert_int_equal(coho_cbuf_pool_get_stats(&after), 0);
    assert_int_equal(coho_cbuf_capacity(&b), 128);
    assert_int_equal(after.idle_count, before.idle_count + 16);
    assert_contents(&b, in, sizeof(in));
    assert_int_equal(coho_cbuf_append(&b, in, sizeof(in)), 0); /* still usable */
    assert_int_equal(coho_cbuf_len(&b), 200);
    assert_int_equal(coho_cbuf_truncate(&b, 0), 0);
    assert_int_equal(coho_cbuf_shrink(&b), 0);
    assert_int_equal(coho_cbuf_capacity(&b), 0);
    assert_int_equal(coho__cbuf_check(&b), 0);
    assert_int_equal(coho_cbuf_destroy(&b), 0);
}

static void cbuf_moved_struct_keeps_working(void **state)
{
    unsigned char in[1000];
    coho_cbuf_t a, b;

    (void)state;
    fill_pattern(in, sizeof(in), 21);
    init_small(&a, 64);
    assert_int_equal(coho_cbuf_append(&a, in, 200), 0); /* inline chunk table */
    memcpy(&b, &a, sizeof(b));
    memset(&a, 0xa5, sizeof(a));
    assert_contents(&b, in, 200);
    assert_int_equal(coho_cbuf_append(&b, in + 200, 800), 0); /* table moves to the heap */
    memcpy(&a, &b, sizeof(a));
    memset(&b, 0, sizeof(b));
    assert_contents(&a, in, 1000);
    assert_int_equal(coho_cbuf_destroy(&a), 0);
}

static void cbuf_pool_reuses_chunks_handed_back(void **state)
{
    unsigned char in[8192];
    size_t live;
    coho_cbuf_t b;

    (void)state;
    fill_pattern(in, sizeof(in), 22);
    assert_int_equal(coho_cbuf_init(&b, NULL), 0);
    assert_int_equal(coho_cbuf_append(&b, in, sizeof(in)), 0);
    assert_int_equal(coho_cbuf_destroy(&b), 0);
    live = coho__cbuf_chunks_live();
    assert_int_equal(coho_cbuf_init(&b, NULL), 0);
    assert_int_equal(coho_cbuf_append(&b, in, sizeof(in)), 0);
    assert_int_equal(coho__cbuf_chunks_live(), live); /* both chunks came from the pool */
    assert_contents(&b, in, sizeof(in));
    assert_int_equal(coho_cbuf_destroy(&b), 0);
}

/* The process-wide totals count every allocated chunk, held or idle, in chunks and bytes; a
 * chunk moving between a buffer and a pool changes neither. */
static void cbuf_pool_stats_count_the_process_chunk_memory(void **state)
{
    unsigned char in[3 * 4096 + 100];
    coho_cbuf_pool_stats_t st0, st;
    coho_cbuf_t b, small;

    (void)state;
    fill_pattern(in, sizeof(in), 29);
    assert_int_equal(coho_cbuf_pool_set_cap(0), 0);
    assert_int_equal(coho_cbuf_pool_get_stats(&st0), 0);
    assert_int_equal(st0.process_chunks, coho__cbuf_chunks_live());
    assert_int_equal(coho_cbuf_init(&b, NULL), 0);
    assert_int_equal(coho_cbuf_append(&b, in, sizeof(in)), 0); /* 4 chunks of 4 KiB */
    init_small(&small, 64);
    assert_int_equal(coho_cbuf_append(&small, in, 100), 0); /* 2 chunks of 64 B */
    assert_int_equal(coho_cbuf_pool_get_stats(&st), 0);
    assert_int_equal(st.process_chunks, st0.process_chunks + 6);
    assert_int_equal(st.process_bytes, st0.process_bytes + 4 * 4096 + 2 * 64);
    /* Handed to a pool: still allocated. */
    assert_int_equal(coho_cbuf_pool_set_cap(8 * 4096), 0);
    assert_int_equal(coho_cbuf_destroy(&b), 0);
    assert_int_equal(coho_cbuf_pool_get_stats(&st), 0);
    assert_int_equal(st.idle_count, 4);
    assert_int_equal(st.process_chunks, st0.process_chunks + 6);
    assert_int_equal(st.process_bytes, st0.process_bytes + 4 * 4096 + 2 * 64);
    /* Freed: gone from the totals. */
    assert_int_equal(coho_cbuf_pool_set_cap(0), 0);
    assert_int_equal(coho_cbuf_destroy(&small), 0);
    assert_int_equal(coho_cbuf_pool_get_stats(&st), 0);
    assert_int_equal(st.process_chunks, st0.process_chunks);
    assert_int_equal(st.process_bytes, st0.process_bytes);
    assert_int_equal(coho_cbuf_pool_set_cap(COHO_CBUF_POOL_CAP_DEFAULT), 0);
}

static void cbuf_pool_keeps_at_most_cap_bytes(void **state)
{
    unsigned char in[5 * 4096];
    coho_cbuf_pool_stats_t st;
    size_t live;
    coho_cbuf_t b;

    (void)state;
    fill_pattern(in, sizeof(in), 23);
    assert_int_equal(coho_cbuf_pool_set_cap(0), 0);
    assert_int_equal(coho_cbuf_pool_get_stats(&st), 0);
    assert_int_equal(st.idle_count, 0);
    assert_int_equal(coho_cbuf_pool_set_cap(2 * 4096), 0);
    assert_int_equal(coho_cbuf_init(&b, NULL), 0);
    assert_int_equal(coho_cbuf_append(&b, in, sizeof(in)), 0);
    live = coho__cbuf_chunks_live();
    assert_int_equal(coho_cbuf_destroy(&b), 0);
    assert_int_equal(coho_cbuf_pool_get_stats(&st), 0);
    assert_int_equal(st.idle_count, 2);
    assert_int_equal(st.idle_bytes, 2 * 4096);
    assert_int_equal(st.cap_bytes, 2 * 4096);
    assert_int_equal(coho__cbuf_chunks_live(), live - 3);
    assert_int_equal(coho_cbuf_pool_set_cap(4096), 0); /* lowering the cap frees at once */
    assert_int_equal(coho_cbuf_pool_get_stats(&st), 0);
    assert_int_equal(st.idle_count, 1);
    assert_int_equal(coho__cbuf_chunks_live(), live - 4);
    errno = 0;
    assert_int_equal(coho_cbuf_pool_get_stats(NULL), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(coho_cbuf_pool_set_cap(COHO_CBUF_POOL_CAP_DEFAULT), 0);
}

typedef struct thread_report {
    size_t idle_count;
    coho_cbuf_t handed_over; /* a buffer filled on the thread, destroyed by the test thread */
} thread_report_t;

static void *pool_thread(void *arg)
{
    thread_report_t *r = arg;
    unsigned char in[6 * 4096];
    coho_cbuf_pool_stats_t st;
    coho_cbuf_t b;

    fill_pattern(in, sizeof(in), 24);
    if (coho_cbuf_init(&b, NULL) != 0 || coho_cbuf_append(&b, in, sizeof(in)) != 0 ||
        coho_cbuf_destroy(&b) != 0)
        return NULL;
    if (coho_cbuf_init(&r->handed_over, NULL) != 0 ||
        coho_cbuf_append(&r->handed_over, in, 3 * 4096) != 0)
        return NULL;
    if (coho_cbuf_pool_get_stats(&st) != 0)
        return NULL;
    r->idle_count = st.idle_count;
    return r;
}

static void cbuf_thread_exit_releases_its_chunk_pool(void **state)
{
    thread_report_t r;
    pthread_t t;
    void *ret = NULL;
    size_t live;

    (void)state;
    memset(&r, 0, sizeof(r));
    live = coho__cbuf_chunks_live();
    assert_int_equal(pthread_create(&t, NULL, pool_thread, &r), 0);
    assert_int_equal(pthread_join(t, &ret), 0);
    assert_ptr_equal(ret, &r);
    /* The thread's pool held the 3 chunks left over from its first buffer; the thread's exit
     * freed them, so only the handed-over buffer's 3 chunks are still alive. */
    assert_int_equal(r.idle_count, 3);
    assert_int_equal(coho__cbuf_chunks_live(), live + 3);
    /* Chunks taken on one thread may be handed back on another: they join this thread's pool. */
    assert_int_equal(coho_cbuf_len(&r.handed_over), 3 * 4096);
    assert_int_equal(coho_cbuf_destroy(&r.handed_over), 0);
    assert_int_equal(coho__cbuf_chunks_live(), live + 3);
    assert_int_equal(coho_cbuf_pool_set_cap(0), 0);
    assert_true(coho__cbuf_chunks_live() <= live);
    assert_int_equal(coho_cbuf_pool_set_cap(COHO_CBUF_POOL_CAP_DEFAULT), 0);
}

/* ---- randomized operation sequences against a flat-array model ---- */

typedef struct model {
    unsigned char *data;
    size_t len, cursor, max_len;
} model_t;

static void model_write_at(model_t *m, size_t pos, const unsigned char *src, size_t n)
{
    if (pos + n > m->len) {
        if (pos > m->len)
            memset(m->data + m->len, 0, pos - m->len);
        m->len = pos + n;
    }
    if (src != NULL)
        memcpy(m->data + pos, src, n);
    else
        memset(m->data + pos, 0, n);
}

static void cbuf_randomized_ops_match_flat_model(void **state)
{
    enum { MAX_LEN = 20000, ROUNDS = 40, OPS = 1500 };
    uint64_t seed = coho_test_seed(), rng = seed;
    unsigned char *tmp = malloc(MAX_LEN + 1);
    model_t m = {.data = malloc(MAX_LEN + 1), .max_len = MAX_LEN};
    int round, op;

    (void)state;
    assert_non_null(tmp);
    assert_non_null(m.data);
    for (round = 0; round < ROUNDS; round++) {
        coho_cbuf_opts_t o;
        coho_cbuf_t b;

        coho_cbuf_opts_init(&o);
        o.chunk_size = (size_t)64 << (coho_test_rand(&rng) % 6);
        o.max_len = MAX_LEN;
        assert_int_equal(coho_cbuf_init(&b, &o), 0);
        m.len = m.cursor = 0;
        for (op = 0; op < OPS; op++) {
            uint64_t r = coho_test_rand(&rng);
            size_t n = (size_t)(r >> 16) % (r & 0x100 ? 3 * o.chunk_size : 40);
            ssize_t got;
            int rc;

            switch ((r >> 8) % 11) {
            case 0: /* append */
                fill_pattern(tmp, n, (unsigned)op);
                rc = coho_cbuf_append(&b, tmp, n);
                if (m.len + n > m.max_len) {
                    assert_int_equal(rc, -1);
                    assert_int_equal(errno, ENOBUFS);
                } else {
                    assert_int_equal(rc, 0);
                    model_write_at(&m, m.len, tmp, n);
                }
                break;
            case 1: /* consume */
                n = m.len > 0 ? (size_t)(r >> 20) % (m.len + 1) : 0;
                assert_int_equal(coho_cbuf_consume(&b, n), 0);
                memmove(m.data, m.data + n, m.len - n);
                m.len -= n;
                m.cursor = m.cursor > n ? m.cursor - n : 0;
                break;
            case 2: /* write at the cursor */
                fill_pattern(tmp, n, (unsigned)op + 1000);
                got = coho_cbuf_write(&b, tmp, n);
                if (m.cursor + n > m.max_len) {
                    assert_int_equal(got, -1);
                    assert_int_equal(errno, ENOBUFS);
                } else {
                    assert_int_equal(got, n);
                    model_write_at(&m, m.cursor, tmp, n);
                    m.cursor += n;
                }
                break;
            case 3: /* read at the cursor */
                got = coho_cbuf_read(&b, tmp, n);
                assert_true(got >= 0);
                assert_int_equal(got, n < m.len - m.cursor ? n : m.len - m.cursor);
                assert_memory_equal(tmp, m.data + m.cursor, (size_t)got);
                m.cursor += (size_t)got;
                break;
            case 4: { /* seek, sometimes out of range */
                int whence = (int)((r >> 40) % 3);
                off_t base = whence == SEEK_SET   ? 0
                             : whence == SEEK_CUR ? (off_t)m.cursor
                                                  : (off_t)m.len;
                off_t off = (off_t)((r >> 20) % (m.len + 1)) - base, want;

                if (r & 0x200)
                    off += 2; /* past the end now and then */
                if (r & 0x400)
                    off -= 3; /* before the start now and then */
                want = base + off;
                if (want < 0 || (size_t)want > m.len) {
                    assert_int_equal(coho_cbuf_seek(&b, off, whence), -1);
                    assert_int_equal(errno, EINVAL);
                } else {
                    assert_int_equal(coho_cbuf_seek(&b, off, whence), want);
                    m.cursor = (size_t)want;
                }
                break;
            }
            case 5: /* truncate shorter or longer */
                n = (size_t)(r >> 20) % (m.len + 2 * o.chunk_size + 1);
                rc = coho_cbuf_truncate(&b, n);
                if (n > m.max_len) {
                    assert_int_equal(rc, -1);
                    assert_int_equal(errno, ENOBUFS);
                } else {
                    assert_int_equal(rc, 0);
                    if (n > m.len)
                        model_write_at(&m, m.len, NULL, n - m.len);
                    m.len = n;
                    if (m.cursor > n)
                        m.cursor = n;
                }
                break;
            case 6: { /* reserve_iov, fill part of it, commit */
                struct iovec iov[8];
                size_t want = n + 1, fill, k;
                int cnt, i;

                cnt = coho_cbuf_reserve_iov(&b, want, iov, 8);
                if (want > m.max_len - m.len) {
                    assert_int_equal(cnt, -1);
                    assert_int_equal(errno, ENOBUFS);
                    break;
                }
                assert_true(cnt >= 1);
                fill = (size_t)(r >> 24) % (want + 1);
                fill_pattern(tmp, fill, (unsigned)op + 2000);
                for (i = 0, k = 0; i < cnt && k < fill; i++) {
                    size_t c = iov[i].iov_len < fill - k ? iov[i].iov_len : fill - k;

                    memcpy(iov[i].iov_base, tmp + k, c);
                    k += c;
                }
                assert_int_equal(k, fill);
                assert_int_equal(coho_cbuf_commit(&b, fill), 0);
                model_write_at(&m, m.len, tmp, fill);
                break;
            }
            case 7: /* linearize */
                if (m.len == 0 || n == 0 || n > m.len) {
                    assert_null(coho_cbuf_linearize(&b, n));
                    assert_int_equal(errno, EINVAL);
                } else {
                    const void *p = coho_cbuf_linearize(&b, n);

                    assert_non_null(p);
                    assert_memory_equal(p, m.data, n);
                }
                break;
            case 8: /* shrink */
                assert_int_equal(coho_cbuf_shrink(&b), 0);
                assert_true(coho_cbuf_capacity(&b) < m.len + 2 * o.chunk_size);
                break;
            case 9: { /* data_iov from an offset */
                struct iovec iov[4];
                size_t off = (size_t)(r >> 20) % (m.len + 1), k = 0;
                int cnt = coho_cbuf_data_iov(&b, off, iov, 4), i;

                assert_true(cnt >= 0);
                for (i = 0; i < cnt; i++) {
                    assert_memory_equal(iov[i].iov_base, m.data + off + k, iov[i].iov_len);
                    k += iov[i].iov_len;
                }
                assert_true(cnt == 4 || off + k == m.len);
                break;
            }
            default: /* tell and len */
                assert_int_equal(coho_cbuf_tell(&b), m.cursor);
                break;
            }
            assert_int_equal(coho_cbuf_len(&b), m.len);
            assert_int_equal(coho_cbuf_tell(&b), m.cursor);
            assert_int_equal(coho__cbuf_check(&b), 0);
        }
        assert_contents(&b, m.data, m.len);
        assert_int_equal(coho_cbuf_destroy(&b), 0);
    }
    free(m.data);
    free(tmp);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cbuf_init_rejects_bad_options),
        cmocka_unit_test(cbuf_calls_on_uninitialised_buffer_are_einval),
        cmocka_unit_test(cbuf_destroy_twice_is_einval),
        cmocka_unit_test(cbuf_init_allocates_nothing),
        cmocka_unit_test(cbuf_append_then_read_returns_same_bytes),
        cmocka_unit_test(cbuf_append_spans_chunk_boundary),
        cmocka_unit_test(cbuf_append_of_zero_bytes_changes_nothing),
        cmocka_unit_test(cbuf_append_past_max_len_is_enobufs_and_changes_nothing),
        cmocka_unit_test(cbuf_oversized_requests_fail_cleanly),
        cmocka_unit_test(cbuf_consume_drops_front_and_keeps_cursor_on_same_byte),
        cmocka_unit_test(cbuf_consume_more_than_len_is_einval_and_changes_nothing),
        cmocka_unit_test(cbuf_consume_hands_emptied_chunks_back_keeping_one_spare),
        cmocka_unit_test(cbuf_streaming_reuses_spare_chunk_without_pool),
        cmocka_unit_test(cbuf_seek_past_end_is_einval),
        cmocka_unit_test(cbuf_seek_before_start_or_bad_whence_is_einval),
        cmocka_unit_test(cbuf_seek_set_cur_end_move_cursor),
        cmocka_unit_test(cbuf_read_spans_chunk_boundary),
        cmocka_unit_test(cbuf_read_at_end_returns_zero_and_short_read_stops_at_end),
        cmocka_unit_test(cbuf_write_overwrites_then_extends),
        cmocka_unit_test(cbuf_write_spans_chunk_boundary),
        cmocka_unit_test(cbuf_write_past_max_len_is_enobufs_and_changes_nothing),
        cmocka_unit_test(cbuf_truncate_shortens_and_pulls_cursor_back),
        cmocka_unit_test(cbuf_truncate_longer_appends_zeros),
        cmocka_unit_test(cbuf_linearize_inside_one_chunk_copies_nothing),
        cmocka_unit_test(cbuf_linearize_straddling_chunks_returns_contiguous_copy),
        cmocka_unit_test(cbuf_linearize_zero_or_past_len_is_einval),
        cmocka_unit_test(cbuf_readv_into_reserve_iov_copies_nothing),
        cmocka_unit_test(cbuf_writev_from_data_iov_sends_from_chunks),
        cmocka_unit_test(cbuf_data_iov_from_offset_starts_mid_chunk_and_respects_max_iov),
        cmocka_unit_test(cbuf_reserve_iov_rejects_zero_and_oversized_requests),
        cmocka_unit_test(cbuf_reserve_iov_never_hands_out_more_than_max_len),
        cmocka_unit_test(cbuf_reserve_iov_describes_existing_free_space_too),
        cmocka_unit_test(cbuf_commit_more_than_free_space_is_einval),
        cmocka_unit_test(cbuf_shrink_hands_idle_chunks_back_to_pool),
        cmocka_unit_test(cbuf_moved_struct_keeps_working),
        cmocka_unit_test(cbuf_pool_reuses_chunks_handed_back),
        cmocka_unit_test(cbuf_pool_keeps_at_most_cap_bytes),
        cmocka_unit_test(cbuf_pool_stats_count_the_process_chunk_memory),
        cmocka_unit_test(cbuf_thread_exit_releases_its_chunk_pool),
        cmocka_unit_test(cbuf_randomized_ops_match_flat_model),
    };

    return coho_test_main("cbuf", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
