/* SPDX-License-Identifier: MIT */
/* libFuzzer target: cbuf cursor and iovec operations driven by the fuzz input, checked after
 * every step against a flat-array model; any difference aborts.
 *
 * Input: byte 0 picks the chunk size (64 << (b % 6)) and byte 1 the max_len (256 << (b % 8));
 * then each operation is an opcode byte followed by a 16-bit little-endian size/offset. Bytes
 * written into the buffer come from the input too (or a pattern when it runs out). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include <coho.h>

#include "base_struct/cbuf_internal.h"

#define MODEL_MAX ((size_t)256 << 7)

typedef struct input {
    const uint8_t *p;
    size_t n;
} input_t;

typedef struct model {
    uint8_t data[MODEL_MAX + 1];
    size_t len, cursor, max_len;
} model_t;

static model_t m;
static uint8_t tmp[MODEL_MAX + 1];

static void check(int ok, const char *what, int line)
{
    if (!ok) {
        fprintf(stderr, "cbuf_fuzz: %s (line %d): len %zu cursor %zu\n", what, line, m.len,
                m.cursor);
        abort();
    }
}
#define CHECK(cond) check((cond) != 0, #cond, __LINE__)

static int take_byte(input_t *in, uint8_t *out)
{
    if (in->n == 0)
        return 0;
    *out = *in->p++;
    in->n--;
    return 1;
}

static size_t take_u16(input_t *in)
{
    uint8_t lo = 0, hi = 0;

    take_byte(in, &lo);
    take_byte(in, &hi);
    return (size_t)lo | (size_t)hi << 8;
}

/* Fills tmp[0..n) from the input, then with a pattern. */
static void take_bytes(input_t *in, size_t n, unsigned salt)
{
    size_t k = in->n < n ? in->n : n, i;

    memcpy(tmp, in->p, k);
    in->p += k;
    in->n -= k;
    for (i = k; i < n; i++)
        tmp[i] = (uint8_t)(i * 131u + salt);
}

static void model_put(size_t pos, const uint8_t *src, size_t n)
{
    if (pos + n > m.len)
        m.len = pos + n;
    if (src != NULL)
        memcpy(m.data + pos, src, n);
    else
        memset(m.data + pos, 0, n);
}

static void check_all(const coho_cbuf_t *b)
{
    struct iovec iov[16];
    size_t pos = 0;
    int i, count;

    CHECK(coho__cbuf_check(b) == 0);
    CHECK(coho_cbuf_len(b) == m.len);
    CHECK(coho_cbuf_tell(b) == m.cursor);
    while (pos < m.len) {
        count = coho_cbuf_data_iov(b, pos, iov, 16);
        CHECK(count >= 1);
        for (i = 0; i < count; i++) {
            CHECK(iov[i].iov_len > 0 && pos + iov[i].iov_len <= m.len);
            CHECK(memcmp(iov[i].iov_base, m.data + pos, iov[i].iov_len) == 0);
            pos += iov[i].iov_len;
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    input_t in = {data, size};
    coho_cbuf_opts_t o;
    coho_cbuf_t b;
    uint8_t c0 = 0, c1 = 0, opc;
    unsigned step = 0;

    take_byte(&in, &c0);
    take_byte(&in, &c1);
    coho_cbuf_opts_init(&o);
    o.chunk_size = (size_t)64 << (c0 % 6);
    o.max_len = (size_t)256 << (c1 % 8);
    CHECK(coho_cbuf_init(&b, &o) == 0);
    m.len = m.cursor = 0;
    m.max_len = o.max_len;

    while (take_byte(&in, &opc)) {
        size_t n = take_u16(&in) % (m.max_len + 2);
        ssize_t got;
        int rc;

        step++;
        switch (opc % 12) {
        case 0: /* append */
            take_bytes(&in, n, step);
            rc = coho_cbuf_append(&b, tmp, n);
            if (m.len + n > m.max_len) {
                CHECK(rc == -1 && errno == ENOBUFS);
            } else {
                CHECK(rc == 0);
                model_put(m.len, tmp, n);
            }
            break;
        case 1: /* consume */
            rc = coho_cbuf_consume(&b, n);
            if (n > m.len) {
                CHECK(rc == -1 && errno == EINVAL);
            } else {
                CHECK(rc == 0);
                memmove(m.data, m.data + n, m.len - n);
                m.len -= n;
                m.cursor = m.cursor > n ? m.cursor - n : 0;
            }
            break;
        case 2: /* write at the cursor */
            take_bytes(&in, n, step);
            got = coho_cbuf_write(&b, tmp, n);
            if (m.cursor + n > m.max_len) {
                CHECK(got == -1 && errno == ENOBUFS);
            } else {
                CHECK(got == (ssize_t)n);
                model_put(m.cursor, tmp, n);
                m.cursor += n;
            }
            break;
        case 3: { /* read at the cursor */
            size_t want = n < m.len - m.cursor ? n : m.len - m.cursor;

            got = coho_cbuf_read(&b, tmp, n);
            CHECK(got == (ssize_t)want);
            CHECK(memcmp(tmp, m.data + m.cursor, want) == 0);
            m.cursor += want;
            break;
        }
        case 4:
        case 5:
        case 6: { /* seek SET / CUR / END with a signed offset */
            int whence = opc % 12 == 4 ? SEEK_SET : opc % 12 == 5 ? SEEK_CUR : SEEK_END;
            off_t base = whence == SEEK_SET   ? 0
                         : whence == SEEK_CUR ? (off_t)m.cursor
                                              : (off_t)m.len;
            off_t off = (off_t)(int16_t)(uint16_t)n, pos = base + off;

            if (pos < 0 || (size_t)pos > m.len) {
                CHECK(coho_cbuf_seek(&b, off, whence) == -1 && errno == EINVAL);
            } else {
                CHECK(coho_cbuf_seek(&b, off, whence) == pos);
                m.cursor = (size_t)pos;
            }
            break;
        }
        case 7: /* truncate */
            rc = coho_cbuf_truncate(&b, n);
            if (n > m.max_len) {
                CHECK(rc == -1 && errno == ENOBUFS);
            } else {
                CHECK(rc == 0);
                if (n > m.len)
                    model_put(m.len, NULL, n - m.len);
                m.len = n;
                if (m.cursor > n)
                    m.cursor = n;
            }
            break;
        case 8: { /* reserve_iov, fill part of it from the input, commit */
            struct iovec iov[8];
            size_t fill, k = 0, total = 0;
            int cnt, i;

            cnt = coho_cbuf_reserve_iov(&b, n, iov, 8);
            if (n == 0) {
                CHECK(cnt == -1 && errno == EINVAL);
                break;
            }
            if (n > m.max_len - m.len) {
                CHECK(cnt == -1 && errno == ENOBUFS);
                break;
            }
            /* Eight entries describe the rest of the last data chunk plus seven chunks. */
            if (cnt == -1) {
                CHECK(errno == EINVAL && n > 7 * o.chunk_size);
                break;
            }
            CHECK(cnt >= 1 && cnt <= 8);
            for (i = 0; i < cnt; i++)
                total += iov[i].iov_len;
            CHECK(total >= n && total <= m.max_len - m.len);
            fill = take_u16(&in) % (total + 1);
            take_bytes(&in, fill, step);
            for (i = 0; i < cnt && k < fill; i++) {
                size_t part = iov[i].iov_len < fill - k ? iov[i].iov_len : fill - k;

                memcpy(iov[i].iov_base, tmp + k, part);
                k += part;
            }
            CHECK(coho_cbuf_commit(&b, fill) == 0);
            model_put(m.len, tmp, fill);
            break;
        }
        case 9: { /* linearize */
            const void *p = coho_cbuf_linearize(&b, n);

            if (n == 0 || n > m.len) {
                CHECK(p == NULL && errno == EINVAL);
            } else {
                CHECK(p != NULL && memcmp(p, m.data, n) == 0);
            }
            break;
        }
        case 10: /* shrink */
            CHECK(coho_cbuf_shrink(&b) == 0);
            CHECK(coho_cbuf_capacity(&b) < m.len + 2 * o.chunk_size);
            break;
        default: { /* data_iov from an offset */
            struct iovec iov[3];
            size_t k = 0;
            int cnt = coho_cbuf_data_iov(&b, n, iov, 3), i;

            if (n > m.len) {
                CHECK(cnt == -1 && errno == EINVAL);
                break;
            }
            CHECK(cnt >= 0 && cnt <= 3);
            for (i = 0; i < cnt; i++) {
                CHECK(memcmp(iov[i].iov_base, m.data + n + k, iov[i].iov_len) == 0);
                k += iov[i].iov_len;
            }
            CHECK(cnt == 3 || n + k == m.len);
            break;
        }
        }
        check_all(&b);
    }
    CHECK(coho_cbuf_destroy(&b) == 0);
    return 0;
}
