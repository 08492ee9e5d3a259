/* SPDX-License-Identifier: MIT */
/* net/ framers: length-prefixed (1/2/4 bytes, either byte order, header counted or not), the
 * prefix encoder, and the line framer, driven over cbufs as a server reads them. */
#include <errno.h>
#include <string.h>

#include <coho/net.h>

#include "test/support/cmocka_main.h"

/* Scans `bytes` with `f` as read_frame does (cursor at 0). */
static ssize_t scan_bytes(const coho_tdp_framer_t *f, const void *bytes, size_t len)
{
    coho_cbuf_t b;
    uint64_t id = 99;
    ssize_t n;

    assert_int_equal(coho_cbuf_init(&b, NULL), 0);
    assert_int_equal(coho_cbuf_append(&b, bytes, len), 0);
    n = f->scan(&b, &id, f->ctx);
    assert_int_equal(id, 0);
    assert_int_equal(coho_cbuf_len(&b), len); /* scan never changes the data */
    coho_cbuf_destroy(&b);
    return n;
}

static void lenpfx_four_le_counts_bytes_after_prefix(void **state)
{
    coho_lenpfx_t cfg = {.size = 4};
    coho_tdp_framer_t f;
    const unsigned char fr[] = {3, 0, 0, 0, 'a', 'b', 'c'};

    (void)state;
    assert_int_equal(coho_lenpfx_framer_init(&f, &cfg), 0);
    assert_int_equal(scan_bytes(&f, fr, 3), 0); /* prefix incomplete */
    assert_int_equal(scan_bytes(&f, fr, 4), 7); /* length known from the prefix alone */
    assert_int_equal(scan_bytes(&f, fr, sizeof(fr)), 7);
}

static void lenpfx_two_be_including_header(void **state)
{
    coho_lenpfx_t cfg = {.size = 2, .big_endian = true, .includes_header = true};
    coho_tdp_framer_t f;
    const unsigned char fr[] = {0x01, 0x02};
    const unsigned char bad[] = {0x00, 0x01}; /* shorter than its own prefix */

    (void)state;
    assert_int_equal(coho_lenpfx_framer_init(&f, &cfg), 0);
    assert_int_equal(scan_bytes(&f, fr, 2), 0x0102);
    assert_int_equal(scan_bytes(&f, bad, 2), -1);
}

static void lenpfx_one_byte_frames(void **state)
{
    coho_lenpfx_t cfg = {.size = 1};
    coho_tdp_framer_t f;
    const unsigned char fr[] = {0};

    (void)state;
    assert_int_equal(coho_lenpfx_framer_init(&f, &cfg), 0);
    assert_int_equal(scan_bytes(&f, fr, 1), 1); /* an empty payload is a 1-byte frame */
}

static void lenpfx_encode_round_trips_every_format(void **state)
{
    (void)state;
    for (unsigned size = 1; size <= 4; size *= 2)
        for (int be = 0; be < 2; be++)
            for (int inc = 0; inc < 2; inc++) {
                coho_lenpfx_t cfg = {.size = size, .big_endian = be, .includes_header = inc};
                coho_tdp_framer_t f;
                unsigned char buf[4 + 100];
                memset(buf, 'x', sizeof(buf));
                assert_int_equal(coho_lenpfx_framer_init(&f, &cfg), 0);
                assert_int_equal(coho_lenpfx_encode(&cfg, 100, buf), (int)size);
                assert_int_equal(scan_bytes(&f, buf, size + 100), (ssize_t)(size + 100));
            }
}

static void lenpfx_encode_too_long_is_emsgsize(void **state)
{
    coho_lenpfx_t one = {.size = 1}, two_inc = {.size = 2, .includes_header = true};
    unsigned char out[4];

    (void)state;
    assert_int_equal(coho_lenpfx_encode(&one, 255, out), 1);
    errno = 0;
    assert_int_equal(coho_lenpfx_encode(&one, 256, out), -1);
    assert_int_equal(errno, EMSGSIZE);
    assert_int_equal(coho_lenpfx_encode(&two_inc, 65533, out), 2);
    assert_int_equal(coho_lenpfx_encode(&two_inc, 65534, out), -1);
    assert_int_equal(errno, EMSGSIZE);
}

static void lenpfx_bad_size_is_einval(void **state)
{
    coho_lenpfx_t cfg = {.size = 3};
    coho_tdp_framer_t f;
    unsigned char out[4];

    (void)state;
    errno = 0;
    assert_int_equal(coho_lenpfx_framer_init(&f, &cfg), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(coho_lenpfx_encode(&cfg, 1, out), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(coho_lenpfx_framer_init(&f, NULL), -1);
}

static void line_framer_ends_at_newline_across_chunks(void **state)
{
    coho_tdp_framer_t f;
    coho_cbuf_opts_t o;
    coho_cbuf_t b;
    uint64_t id;
    char line[300];

    (void)state;
    assert_int_equal(coho_line_framer_init(&f), 0);
    assert_int_equal(scan_bytes(&f, "abc", 3), 0);
    assert_int_equal(scan_bytes(&f, "abc\nde", 6), 4);
    /* A line that straddles 64-byte chunks. */
    coho_cbuf_opts_init(&o);
    o.chunk_size = 64;
    assert_int_equal(coho_cbuf_init(&b, &o), 0);
    memset(line, 'y', sizeof(line));
    line[250] = '\n';
    assert_int_equal(coho_cbuf_append(&b, line, sizeof(line)), 0);
    assert_int_equal(f.scan(&b, &id, f.ctx), 251);
    coho_cbuf_destroy(&b);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(lenpfx_four_le_counts_bytes_after_prefix),
        cmocka_unit_test(lenpfx_two_be_including_header),
        cmocka_unit_test(lenpfx_one_byte_frames),
        cmocka_unit_test(lenpfx_encode_round_trips_every_format),
        cmocka_unit_test(lenpfx_encode_too_long_is_emsgsize),
        cmocka_unit_test(lenpfx_bad_size_is_einval),
        cmocka_unit_test(line_framer_ends_at_newline_across_chunks),
    };
    return coho_test_main("net_frame", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
