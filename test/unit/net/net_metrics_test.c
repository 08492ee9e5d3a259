/* SPDX-License-Identifier: MIT */
/* The metrics registry (coho/metrics.h): the Prometheus text exposition format byte for byte
 * (HELP/TYPE lines, escaping, histogram buckets), the JSON rendering, registration rules,
 * callback series, and increments from several threads summing exactly. */
#include <errno.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <coho/metrics.h>

#include "test/support/cmocka_main.h"

static char *prom(coho_metrics_t *m)
{
    size_t len = 0;
    char *s = coho_metrics_render_prometheus(m, &len);

    assert_non_null(s);
    assert_int_equal(strlen(s), len);
    return s;
}

static void counter_renders_help_type_and_value(void **state)
{
    coho_metrics_t *m = coho_metrics_create();
    coho_counter_t *c;
    coho_gauge_t *g;
    char *s;

    (void)state;
    assert_non_null(m);
    c = coho_metrics_counter(m, "app_requests_total", "Requests served.", NULL, 0);
    g = coho_metrics_gauge(m, "app_temperature_celsius", "Temperature.", NULL, 0);
    assert_non_null(c);
    assert_non_null(g);
    coho_counter_add(c, 41);
    coho_counter_add(c, 1);
    coho_gauge_set(g, 21.5);
    coho_gauge_add(g, -0.25);
    assert_int_equal(coho_counter_get(c), 42);
    assert_true(coho_gauge_get(g) == 21.25);
    s = prom(m);
    assert_string_equal(s, "# HELP app_requests_total Requests served.\n"
                           "# TYPE app_requests_total counter\n"
                           "app_requests_total 42\n"
                           "# HELP app_temperature_celsius Temperature.\n"
                           "# TYPE app_temperature_celsius gauge\n"
                           "app_temperature_celsius 21.25\n");
    free(s);
    coho_metrics_destroy(m);
}

static void label_values_and_help_are_escaped(void **state)
{
    coho_metrics_t *m = coho_metrics_create();
    coho_label_t l[] = {{"path", "C:\\dir \"x\"\nnext"}, {"code", "200"}};
    char *s;

    (void)state;
    coho_counter_add(coho_metrics_counter(m, "http_total", "Line one\nback\\slash \"q\"", l, 2), 3);
    s = prom(m);
    assert_string_equal(s, "# HELP http_total Line one\\nback\\\\slash \"q\"\n"
                           "# TYPE http_total counter\n"
                           "http_total{path=\"C:\\\\dir \\\"x\\\"\\nnext\",code=\"200\"} 3\n");
    free(s);
    coho_metrics_destroy(m);
}

static void histogram_buckets_are_cumulative_and_end_in_inf(void **state)
{
    coho_metrics_t *m = coho_metrics_create();
    const double bounds[] = {0.005, 0.1, 1};
    coho_label_t l[] = {{"route", "login"}};
    coho_histogram_t *h = coho_metrics_histogram(m, "rpc_seconds", "Latency.", l, 1, bounds, 3);
    coho_histogram_t *plain = coho_metrics_histogram(m, "q_seconds", "Q.", NULL, 0, bounds, 1);
    uint64_t count;
    double sum;
    char *s;

    (void)state;
    assert_non_null(h);
    assert_non_null(plain);
    coho_histogram_observe(h, 0.005); /* on a bound: that bucket (le is inclusive) */
    coho_histogram_observe(h, 0.05);
    coho_histogram_observe(h, 0.5);
    coho_histogram_observe(h, 2.5);
    coho_histogram_observe(h, NAN); /* ignored */
    coho_histogram_get(h, &count, &sum);
    assert_int_equal(count, 4);
    assert_true(fabs(sum - 3.055) < 1e-12);
    coho_histogram_observe(plain, 7);
    s = prom(m);
    assert_string_equal(s, "# HELP rpc_seconds Latency.\n"
                           "# TYPE rpc_seconds histogram\n"
                           "rpc_seconds_bucket{route=\"login\",le=\"0.005\"} 1\n"
                           "rpc_seconds_bucket{route=\"login\",le=\"0.1\"} 2\n"
                           "rpc_seconds_bucket{route=\"login\",le=\"1\"} 3\n"
                           "rpc_seconds_bucket{route=\"login\",le=\"+Inf\"} 4\n"
                           "rpc_seconds_sum{route=\"login\"} 3.055\n"
                           "rpc_seconds_count{route=\"login\"} 4\n"
                           "# HELP q_seconds Q.\n"
                           "# TYPE q_seconds histogram\n"
                           "q_seconds_bucket{le=\"0.005\"} 0\n"
                           "q_seconds_bucket{le=\"+Inf\"} 1\n"
                           "q_seconds_sum 7\n"
                           "q_seconds_count 1\n");
    free(s);
    coho_metrics_destroy(m);
}

static void series_of_a_family_share_one_help_and_type_block(void **state)
{
    coho_metrics_t *m = coho_metrics_create();
    coho_label_t a[] = {{"server", "game"}}, b[] = {{"server", "chat"}};
    coho_counter_t *ca = coho_metrics_counter(m, "conns_total", "Conns.", a, 1);
    coho_counter_t *cb = coho_metrics_counter(m, "conns_total", "ignored", b, 1);
    char *s;

    (void)state;
    assert_non_null(ca);
    assert_non_null(cb);
    assert_ptr_not_equal(ca, cb);
    assert_ptr_equal(coho_metrics_counter(m, "conns_total", "Conns.", a, 1), ca);
    coho_counter_add(ca, 1);
    coho_counter_add(cb, 2);
    s = prom(m);
    assert_string_equal(s, "# HELP conns_total Conns.\n"
                           "# TYPE conns_total counter\n"
                           "conns_total{server=\"game\"} 1\n"
                           "conns_total{server=\"chat\"} 2\n");
    free(s);
    coho_metrics_destroy(m);
}

static void bad_registrations_are_einval(void **state)
{
    coho_metrics_t *m = coho_metrics_create();
    coho_label_t l[] = {{"server", "x"}}, other[] = {{"srv", "x"}}, le[] = {{"le", "1"}};
    coho_label_t reserved[] = {{"__name", "x"}}, dup[] = {{"a", "1"}, {"a", "2"}};
    const double up[] = {1, 2}, down[] = {2, 1}, nan_b[] = {NAN};

    (void)state;
    assert_non_null(coho_metrics_counter(m, "a_total", "A.", l, 1));
    errno = 0;
    assert_null(coho_metrics_gauge(m, "a_total", "A.", l, 1)); /* another type */
    assert_int_equal(errno, EINVAL);
    assert_null(coho_metrics_counter(m, "a_total", "A.", other, 1)); /* other label names */
    assert_null(coho_metrics_counter(m, "a_total", "A.", NULL, 0));
    assert_null(coho_metrics_counter(m, "9starts_with_digit", "x", NULL, 0));
    assert_null(coho_metrics_counter(m, "has-dash", "x", NULL, 0));
    assert_null(coho_metrics_counter(m, "", "x", NULL, 0));
    assert_null(coho_metrics_counter(m, "ok_total", NULL, NULL, 0));
    assert_null(coho_metrics_counter(m, "ok_total", "x", reserved, 1));
    assert_null(coho_metrics_counter(m, "ok_total", "x", dup, 2));
    assert_null(coho_metrics_counter(NULL, "ok_total", "x", NULL, 0));
    assert_null(coho_metrics_histogram(m, "h_seconds", "x", le, 1, up, 2));
    assert_null(coho_metrics_histogram(m, "h_seconds", "x", NULL, 0, down, 2));
    assert_null(coho_metrics_histogram(m, "h_seconds", "x", NULL, 0, nan_b, 1));
    assert_non_null(coho_metrics_histogram(m, "h_seconds", "x", NULL, 0, up, 2));
    assert_null(coho_metrics_histogram(m, "h_seconds", "x", l, 0, up, 1)); /* other bounds */
    assert_int_equal(errno, EINVAL);
    assert_non_null(coho_metrics_counter(m, "ns:sub_total", "colons are allowed", NULL, 0));
    coho_metrics_destroy(m);
}

static double read_key(void *arg, int key)
{
    return *(double *)arg * key;
}

static void fn_series_are_read_at_render_and_removed_by_arg(void **state)
{
    coho_metrics_t *m = coho_metrics_create();
    coho_label_t a[] = {{"k", "a"}}, b[] = {{"k", "b"}};
    double va = 1.5, vb = 10;
    char *s;

    (void)state;
    assert_int_equal(
        coho_metrics_add_fn(m, COHO_METRIC_GAUGE, "fn_value", "F.", a, 1, read_key, &va, 2), 0);
    assert_int_equal(
        coho_metrics_add_fn(m, COHO_METRIC_GAUGE, "fn_value", "F.", b, 1, read_key, &vb, 1), 0);
    /* The same series twice, or over a plain one, is refused. */
    assert_int_equal(
        coho_metrics_add_fn(m, COHO_METRIC_GAUGE, "fn_value", "F.", b, 1, read_key, &vb, 1), -1);
    assert_int_equal(errno, EINVAL);
    assert_null(coho_metrics_gauge(m, "fn_value", "F.", b, 1));
    assert_int_equal(coho_metrics_add_fn(m, 7, "fn_other", "F.", NULL, 0, read_key, &vb, 1), -1);
    va = 4;
    s = prom(m);
    assert_string_equal(s, "# HELP fn_value F.\n"
                           "# TYPE fn_value gauge\n"
                           "fn_value{k=\"a\"} 8\n"
                           "fn_value{k=\"b\"} 10\n");
    free(s);
    assert_int_equal(coho_metrics_remove_fn(m, &va), 1);
    assert_int_equal(coho_metrics_remove_fn(m, &va), 0);
    assert_int_equal(coho_metrics_remove_fn(m, &vb), 1);
    s = prom(m);
    assert_string_equal(s, ""); /* a family without series is not rendered */
    free(s);
    /* The family keeps its shape and takes new series. */
    assert_int_equal(
        coho_metrics_add_fn(m, COHO_METRIC_GAUGE, "fn_value", "F.", b, 1, read_key, &vb, 3), 0);
    s = prom(m);
    assert_non_null(strstr(s, "fn_value{k=\"b\"} 30\n"));
    free(s);
    coho_metrics_destroy(m);
}

static void json_rendering_lists_families_and_series(void **state)
{
    coho_metrics_t *m = coho_metrics_create();
    coho_label_t l[] = {{"name", "q\"uote"}};
    const double bounds[] = {0.5};
    size_t len;
    char *s;

    (void)state;
    coho_counter_add(coho_metrics_counter(m, "c_total", "C.", l, 1), 5);
    coho_gauge_set(coho_metrics_gauge(m, "g", "G\n.", NULL, 0), INFINITY);
    coho_histogram_observe(coho_metrics_histogram(m, "h", "H.", NULL, 0, bounds, 1), 0.25);
    s = coho_metrics_render_json(m, &len);
    assert_non_null(s);
    assert_int_equal(strlen(s), len);
    assert_string_equal(
        s, "{\"c_total\":{\"type\":\"counter\",\"help\":\"C.\",\"series\":[{\"labels\":"
           "{\"name\":\"q\\\"uote\"},\"value\":5}]},"
           "\"g\":{\"type\":\"gauge\",\"help\":\"G\\n.\",\"series\":[{\"labels\":{},\"value\":"
           "\"+Inf\"}]},"
           "\"h\":{\"type\":\"histogram\",\"help\":\"H.\",\"series\":[{\"labels\":{},\"count\":1,"
           "\"sum\":0.25,\"buckets\":[{\"le\":0.5,\"count\":1},{\"le\":\"+Inf\",\"count\":1}]}]}}");
    free(s);
    coho_metrics_destroy(m);
}

#define THREADS    8
#define PER_THREAD 200000

struct hammer {
    coho_counter_t *c;
    coho_histogram_t *h;
    coho_gauge_t *g;
};

static void *hammer_main(void *arg)
{
    struct hammer *w = arg;

    for (unsigned i = 0; i < PER_THREAD; i++) {
        coho_counter_add(w->c, 1);
        coho_histogram_observe(w->h, (double)(i % 4));
        coho_gauge_add(w->g, 1);
    }
    return NULL;
}

static void increments_from_several_threads_sum_exactly(void **state)
{
    coho_metrics_t *m = coho_metrics_create();
    const double bounds[] = {0, 1, 2};
    struct hammer w;
    pthread_t t[THREADS];
    uint64_t count;
    double sum;
    char *s;

    (void)state;
    w.c = coho_metrics_counter(m, "hits_total", "Hits.", NULL, 0);
    w.h = coho_metrics_histogram(m, "v", "V.", NULL, 0, bounds, 3);
    w.g = coho_metrics_gauge(m, "level", "L.", NULL, 0);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, hammer_main, &w), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(coho_counter_get(w.c), (uint64_t)THREADS * PER_THREAD);
    coho_histogram_get(w.h, &count, &sum);
    assert_int_equal(count, (uint64_t)THREADS * PER_THREAD);
    /* 0+1+2+3 per four observations: exact in a double at this size. */
    assert_true(sum == (double)THREADS * PER_THREAD / 4 * 6);
    assert_true(coho_gauge_get(w.g) == (double)THREADS * PER_THREAD);
    s = prom(m);
    assert_non_null(strstr(s, "v_bucket{le=\"0\"} 400000\n"));
    assert_non_null(strstr(s, "v_bucket{le=\"2\"} 1200000\n"));
    assert_non_null(strstr(s, "v_bucket{le=\"+Inf\"} 1600000\n"));
    free(s);
    coho_metrics_destroy(m);
}

/* A program that set a locale whose decimal point is a comma (de_DE) still renders '.': the
 * exposition format and JSON have one number syntax. The locale is compiled with localedef into
 * a temporary directory (Debian's `locales` sources); without them the case is skipped. */
static void numbers_use_a_dot_whatever_the_programs_locale(void **state)
{
    char dir[] = "/tmp/coho-locale.XXXXXX", cmd[256], buf[32];
    coho_metrics_t *m;
    char *s;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(cmd, sizeof(cmd), "localedef -i de_DE -f UTF-8 %s/de_DE.UTF-8 >/dev/null 2>&1", dir);
    if (system(cmd) != 0 || setenv("LOCPATH", dir, 1) != 0 ||
        setlocale(LC_NUMERIC, "de_DE.UTF-8") == NULL) {
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        (void)!system(cmd);
        skip();
    }
    snprintf(buf, sizeof(buf), "%.2f", 1.5);
    assert_string_equal(buf, "1,50"); /* the locale is in force */
    m = coho_metrics_create();
    assert_non_null(m);
    coho_gauge_set(coho_metrics_gauge(m, "g", "G.", NULL, 0), 21.25);
    s = prom(m);
    assert_string_equal(s, "# HELP g G.\n# TYPE g gauge\ng 21.25\n");
    free(s);
    s = coho_metrics_render_json(m, NULL);
    assert_non_null(s);
    assert_non_null(strstr(s, "21.25"));
    free(s);
    coho_metrics_destroy(m);
    setlocale(LC_NUMERIC, "C");
    unsetenv("LOCPATH");
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void null_handles_are_no_ops(void **state)
{
    (void)state;
    coho_counter_add(NULL, 1);
    coho_gauge_set(NULL, 1);
    coho_gauge_add(NULL, 1);
    coho_histogram_observe(NULL, 1);
    assert_int_equal(coho_counter_get(NULL), 0);
    assert_true(coho_gauge_get(NULL) == 0.0);
    assert_null(coho_metrics_render_prometheus(NULL, NULL));
    assert_int_equal(errno, EINVAL);
    assert_int_equal(coho_metrics_remove_fn(NULL, NULL), 0);
    coho_metrics_destroy(NULL);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(counter_renders_help_type_and_value),
        cmocka_unit_test(label_values_and_help_are_escaped),
        cmocka_unit_test(histogram_buckets_are_cumulative_and_end_in_inf),
        cmocka_unit_test(series_of_a_family_share_one_help_and_type_block),
        cmocka_unit_test(bad_registrations_are_einval),
        cmocka_unit_test(fn_series_are_read_at_render_and_removed_by_arg),
        cmocka_unit_test(json_rendering_lists_families_and_series),
        cmocka_unit_test(increments_from_several_threads_sum_exactly),
        cmocka_unit_test(null_handles_are_no_ops),
        cmocka_unit_test(numbers_use_a_dot_whatever_the_programs_locale),
    };
    return coho_test_main("net_metrics", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
