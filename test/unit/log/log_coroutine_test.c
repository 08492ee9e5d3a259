/* SPDX-License-Identifier: MIT */
/* The trace log with the coroutine layer: a scheduler registers the current-coroutine-id
 * provider, so a line logged inside a coroutine carries that coroutine's id as its COID, and a
 * line on the scheduler's thread outside any coroutine carries 0. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <coho.h>

#include "test/support/cmocka_main.h"

static uint64_t co_seen_id;

static void co_logs(void *arg)
{
    (void)arg;
    co_seen_id = coho_self();
    coho_log_info("in coroutine");
}

static void line_logged_inside_a_coroutine_carries_that_coroutine_id(void **state)
{
    char dir[512], path[600], needle[128], buf[8192];
    const char *base = getenv("COHO_TEST_TMPDIR");
    coho_sched_t *s;
    FILE *f;
    size_t n;

    (void)state;
    base = base != NULL && *base != '\0' ? base : "/tmp";
    mkdir(base, 0755);
    snprintf(dir, sizeof(dir), "%s/logco_XXXXXX", base);
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/co.log", dir);
    {
        coho_log_opts_t o;

        coho_log_opts_init(&o);
        o.path = path;
        assert_int_equal(coho_log_open(&o), 0);
    }
    s = coho_sched_create(NULL);
    assert_non_null(s);
    assert_true(coho_spawn(s, co_logs, NULL) != 0);
    assert_int_equal(coho_sched_run(s), 0);
    coho_log_info("on the thread");
    coho_sched_destroy(s);
    assert_int_equal(coho_log_close(), 0);
    assert_true(co_seen_id != 0);

    f = fopen(path, "r");
    assert_non_null(f);
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    snprintf(needle, sizeof(needle), "-[info]-[%d-%llu]in coroutine\n", (int)gettid(),
             (unsigned long long)co_seen_id);
    assert_non_null(strstr(buf, needle));
    snprintf(needle, sizeof(needle), "-[info]-[%d-0]on the thread\n", (int)gettid());
    assert_non_null(strstr(buf, needle));
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(line_logged_inside_a_coroutine_carries_that_coroutine_id),
    };

    return coho_test_main("log_coroutine", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
