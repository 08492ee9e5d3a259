/* SPDX-License-Identifier: MIT */
/* The compile-time floor: with COHO_LOG_FLOOR at info, debug and trace calls compile to
 * nothing, so their arguments are not even evaluated, while info and above still log. */
#define COHO_LOG_FLOOR COHO_LOG_INFO

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <coho.h>

#include "test/support/cmocka_main.h"

static int evaluated;

static int bump(void)
{
    return ++evaluated;
}

static void calls_below_the_floor_compile_out_and_do_not_evaluate_arguments(void **state)
{
    char dir[512], path[600], buf[4096];
    const char *base = getenv("COHO_TEST_TMPDIR");
    coho_log_opts_t o;
    FILE *f;
    size_t n;

    (void)state;
    snprintf(dir, sizeof(dir), "%s/logfloor_XXXXXX", base != NULL && *base ? base : "/tmp");
    mkdir(base != NULL && *base ? base : "/tmp", 0755);
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/floor.log", dir);
    coho_log_opts_init(&o);
    o.path = path;
    o.level = COHO_LOG_TRACE; /* the run-time level would let them through */
    assert_int_equal(coho_log_open(&o), 0);
    coho_log_trace("trace %d", bump());
    coho_log_debug("debug %d", bump());
    coho_log_info("info %d", bump());
    assert_int_equal(coho_log_close(), 0);
    assert_int_equal(evaluated, 1); /* only the info call's argument */

    f = fopen(path, "r");
    assert_non_null(f);
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    assert_null(strstr(buf, "]trace"));
    assert_null(strstr(buf, "]debug"));
    assert_non_null(strstr(buf, "-[info]-["));
    assert_non_null(strstr(buf, "]info 1\n"));
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(calls_below_the_floor_compile_out_and_do_not_evaluate_arguments),
    };

    return coho_test_main("log_floor", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
