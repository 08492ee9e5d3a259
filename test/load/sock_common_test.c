/* SPDX-License-Identifier: MIT */
/* The load test's shared parts: the body pattern catches every corruption the checks rely on,
 * the histogram's percentiles stay within its resolution, and flags parse as documented. */
/* ctest: TIMEOUT=30 */
#include <stdlib.h>
#include <string.h>

#include "test/load/sock_common.c" /* the load programs' helpers are not part of libcoho */
#include "test/support/cmocka_main.h"

static void pattern_check_accepts_what_fill_wrote_at_any_offset(void **state)
{
    unsigned char buf[300];
    size_t off, len;

    (void)state;
    for (off = 0; off < 17; off++)
        for (len = 0; len < 40; len += 3) {
            sock_pattern_fill(buf, len, 77, SOCK_SALT_RESPONSE, off);
            assert_int_equal(sock_pattern_check(buf, len, 77, SOCK_SALT_RESPONSE, off), len);
        }
    /* A piece filled at offset 5 is bytes 5.. of the whole body. */
    sock_pattern_fill(buf, 64, 9, SOCK_SALT_REQUEST, 0);
    assert_int_equal(sock_pattern_check(buf + 5, 59, 9, SOCK_SALT_REQUEST, 5), 59);
}

static void pattern_check_finds_the_first_wrong_byte(void **state)
{
    unsigned char buf[1000];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(buf); i += 37) {
        sock_pattern_fill(buf, sizeof(buf), 5, SOCK_SALT_RESPONSE, 0);
        buf[i] ^= 0x01;
        assert_int_equal(sock_pattern_check(buf, sizeof(buf), 5, SOCK_SALT_RESPONSE, 0), i);
    }
}

static void pattern_differs_by_seq_salt_and_position(void **state)
{
    unsigned char a[64], b[64];

    (void)state;
    sock_pattern_fill(a, sizeof(a), 100, SOCK_SALT_RESPONSE, 0);
    sock_pattern_fill(b, sizeof(b), 101, SOCK_SALT_RESPONSE, 0);
    assert_int_not_equal(sock_pattern_check(b, sizeof(b), 100, SOCK_SALT_RESPONSE, 0), sizeof(b));
    sock_pattern_fill(b, sizeof(b), 100, SOCK_SALT_REQUEST, 0);
    assert_int_not_equal(sock_pattern_check(b, sizeof(b), 100, SOCK_SALT_RESPONSE, 0), sizeof(b));
    /* Shifted by one word: a body that lost 8 bytes does not pass. */
    assert_int_not_equal(sock_pattern_check(a + 8, 56, 100, SOCK_SALT_RESPONSE, 0), 56);
}

static void pattern_check_cbuf_spans_chunks(void **state)
{
    coho_cbuf_opts_t o;
    coho_cbuf_t b;
    unsigned char hdr[24] = {0}, *body = malloc(10000);

    (void)state;
    coho_cbuf_opts_init(&o);
    o.chunk_size = 1024;
    assert_int_equal(coho_cbuf_init(&b, &o), 0);
    sock_pattern_fill(body, 10000, 3, SOCK_SALT_RESPONSE, 0);
    assert_int_equal(coho_cbuf_append(&b, hdr, sizeof(hdr)), 0);
    assert_int_equal(coho_cbuf_append(&b, body, 10000), 0);
    assert_int_equal(sock_pattern_check_cbuf(&b, 24, 10000, 3, SOCK_SALT_RESPONSE), 10000);
    assert_int_equal(sock_pattern_check_cbuf(&b, 24, 10001, 3, SOCK_SALT_RESPONSE), -1);
    assert_int_equal(coho_cbuf_truncate(&b, 0), 0);
    body[4321] ^= 0x80;
    assert_int_equal(coho_cbuf_append(&b, hdr, sizeof(hdr)), 0);
    assert_int_equal(coho_cbuf_append(&b, body, 10000), 0);
    assert_int_equal(sock_pattern_check_cbuf(&b, 24, 10000, 3, SOCK_SALT_RESPONSE), 4321);
    coho_cbuf_destroy(&b);
    free(body);
}

static void hist_percentiles_are_within_the_bucket_resolution(void **state)
{
    sock_hist_t h;
    uint64_t v, p50, p99;

    (void)state;
    sock_hist_reset(&h);
    assert_int_equal(sock_hist_percentile(&h, 50), 0);
    for (v = 1; v <= 100000; v++)
        sock_hist_add(&h, v);
    p50 = sock_hist_percentile(&h, 50);
    p99 = sock_hist_percentile(&h, 99);
    assert_true(p50 >= 50000 && p50 <= 50000 + 50000 / SOCK_HIST_SUB);
    assert_true(p99 >= 99000 && p99 <= 99000 + 99000 / SOCK_HIST_SUB);
    assert_int_equal(sock_hist_percentile(&h, 100), 100000);
    assert_int_equal(h.max_us, 100000);
    /* Exact below 64 us; the top bucket holds anything huge. */
    sock_hist_reset(&h);
    sock_hist_add(&h, 7);
    assert_int_equal(sock_hist_percentile(&h, 50), 7);
    sock_hist_add(&h, UINT64_MAX / 2);
    assert_int_equal(sock_hist_percentile(&h, 100), UINT64_MAX / 2);
}

static void hist_merge_adds_counts(void **state)
{
    sock_hist_t a, b;

    (void)state;
    sock_hist_reset(&a);
    sock_hist_reset(&b);
    sock_hist_add(&a, 10);
    sock_hist_add(&b, 1000);
    sock_hist_add(&b, 2000);
    sock_hist_merge(&a, &b);
    assert_int_equal(a.count, 3);
    assert_int_equal(a.max_us, 2000);
    assert_int_equal(sock_hist_percentile(&a, 1), 10);
}

static void flags_parse_sizes_levels_and_both_spellings(void **state)
{
    uint64_t port = 0, body = 0;
    int level = COHO_LOG_INFO;
    const char *host = "x";
    bool quiet = false;
    const sock_flag_t flags[] = {
        {"port", SOCK_FLAG_U64, &port, ""},         {"max-body", SOCK_FLAG_SIZE, &body, ""},
        {"log-level", SOCK_FLAG_LEVEL, &level, ""}, {"host", SOCK_FLAG_STR, &host, ""},
        {"quiet", SOCK_FLAG_BOOL, &quiet, ""},
    };
    char *argv[] = {"prog",  "--port",          "8080",   "--max-body=256K", "--log-level",
                    "debug", "--host=10.0.0.1", "--quiet"};

    (void)state;
    sock_flags_parse("prog", "", flags, 5, 8, argv);
    assert_int_equal(port, 8080);
    assert_int_equal(body, 256 * 1024);
    assert_int_equal(level, COHO_LOG_DEBUG);
    assert_string_equal(host, "10.0.0.1");
    assert_true(quiet);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pattern_check_accepts_what_fill_wrote_at_any_offset),
        cmocka_unit_test(pattern_check_finds_the_first_wrong_byte),
        cmocka_unit_test(pattern_differs_by_seq_salt_and_position),
        cmocka_unit_test(pattern_check_cbuf_spans_chunks),
        cmocka_unit_test(hist_percentiles_are_within_the_bucket_resolution),
        cmocka_unit_test(hist_merge_adds_counts),
        cmocka_unit_test(flags_parse_sizes_levels_and_both_spellings),
    };

    return coho_test_main("sock_common", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
