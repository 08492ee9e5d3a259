/* SPDX-License-Identifier: MIT */
/* Per-coroutine state: names, coroutine-local keys and their destructors, exit callbacks, the
 * switch hook's slots, the log's coroutine-id provider and the live dump. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <coho.h>

#include "coroutine/internal.h"
#include "test/support/cmocka_main.h"

/* ---- checks made off the case's stack ----
 * A failing CMocka assertion longjmps to the case's frame: from a coroutine body that jump
 * crosses stacks and skips the scheduler's frames, and an assertion in a body that never runs
 * proves nothing. Bodies record their checks with CO_CHECK() and CO_CHECK_INT() and count
 * their ends with co_ended(); the case calls expect_co() once the scheduler has returned. */
static struct {
    unsigned failed; /* checks that failed */
    unsigned ended;  /* bodies that ran to their end */
    int line;        /* of the first failed check */
    char what[256];
} co_checks;

#define CO_CHECK(cond)     co_check((cond), __LINE__, #cond)
#define CO_CHECK_INT(a, b) co_check_int((long long)(a), (long long)(b), __LINE__, #a " == " #b)

static void co_record(int line, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void co_record(int line, const char *fmt, ...)
{
    va_list ap;

    if (__atomic_fetch_add(&co_checks.failed, 1, __ATOMIC_RELAXED) != 0)
        return;
    co_checks.line = line;
    va_start(ap, fmt);
    vsnprintf(co_checks.what, sizeof(co_checks.what), fmt, ap);
    va_end(ap);
}

static bool co_check(bool ok, int line, const char *what)
{
    if (!ok)
        co_record(line, "%s", what);
    return ok;
}

static bool co_check_int(long long got, long long want, int line, const char *what)
{
    if (got != want)
        co_record(line, "%s: got %lld", what, got);
    return got == want;
}

static void co_ended(void)
{
    __atomic_fetch_add(&co_checks.ended, 1, __ATOMIC_RELAXED);
}

/* Asserts that no recorded check failed and that `ended` bodies ran to their end, then clears
 * the record. */
static void expect_co(unsigned ended)
{
    unsigned failed = co_checks.failed, n = co_checks.ended;

    co_checks.failed = 0;
    co_checks.ended = 0;
    if (failed != 0)
        fail_msg("%u check(s) failed off the case's stack; the first, line %d: %s", failed,
                 co_checks.line, co_checks.what);
    assert_int_equal(n, ended);
}

static coho_sched_t *sched;

static void begin(void)
{
    sched = coho_sched_create(NULL);
    assert_non_null(sched);
}

/* Runs the scheduler; `ended` coroutine bodies must have run to their end. */
static void run_and_end(unsigned ended)
{
    assert_int_equal(coho_sched_run(sched), 0);
    coho_sched_destroy(sched);
    sched = NULL;
    expect_co(ended);
}

/* ---- names ---- */

static void names_co(void *arg)
{
    char buf[COHO_NAME_MAX];

    (void)arg;
    CO_CHECK_INT(coho_get_name(0, buf, sizeof(buf)), 0);
    CO_CHECK(strcmp(buf, "from-spawn") == 0);
    CO_CHECK_INT(coho_set_name(0, "renamed"), 0);
    CO_CHECK_INT(coho_get_name(coho_self(), buf, sizeof(buf)), 0);
    CO_CHECK(strcmp(buf, "renamed") == 0);
    CO_CHECK_INT(coho_get_name(0, buf, 4), 0); /* cut to fit */
    CO_CHECK(strcmp(buf, "ren") == 0);
    CO_CHECK_INT(coho_set_name(0, "a-name-much-longer-than-thirty-one-bytes-is-cut"), 0);
    CO_CHECK_INT(coho_get_name(0, buf, sizeof(buf)), 0);
    CO_CHECK_INT(strlen(buf), COHO_NAME_MAX - 1);
    CO_CHECK_INT(coho_set_name(0, NULL), 0);
    CO_CHECK_INT(coho_get_name(0, buf, sizeof(buf)), 0);
    CO_CHECK(strcmp(buf, "") == 0);
    co_ended();
}

static void set_name_and_get_name_round_trip(void **state)
{
    coho_spawn_opts_t o;
    char buf[8];

    (void)state;
    begin();
    coho_spawn_opts_init(&o);
    o.name = "from-spawn";
    assert_int_not_equal(coho_spawn_ex(sched, names_co, NULL, &o), 0);
    errno = 0;
    assert_int_equal(coho_get_name(0x123400000001ull, buf, sizeof(buf)), -1);
    assert_int_equal(errno, ESRCH);
    errno = 0;
    assert_int_equal(coho_get_name(0, NULL, 0), -1);
    assert_int_equal(errno, EINVAL);
    run_and_end(1);
}

/* ---- keys ---- */

static coho_key_t key_a, key_b;
static int dtor_calls;
static void *dtor_last;
static int order[16];
static int order_n;

static void dtor_a(void *v)
{
    dtor_calls++;
    dtor_last = v;
    order[order_n++] = 100 + (int)(intptr_t)v;
}

static void key_user(void *arg)
{
    intptr_t me = (intptr_t)arg;

    CO_CHECK(coho_key_get(key_a) == NULL);
    CO_CHECK_INT(coho_key_set(key_a, (void *)me), 0);
    coho_yield(); /* the other coroutine sets its own value meanwhile */
    CO_CHECK(coho_key_get(key_a) == ((void *)me));
    co_ended();
}

static void key_values_are_per_coroutine_and_destructed_at_exit(void **state)
{
    (void)state;
    begin();
    dtor_calls = 0;
    order_n = 0;
    assert_int_equal(coho_key_create(&key_a, dtor_a), 0);
    coho_spawn(sched, key_user, (void *)(intptr_t)1);
    coho_spawn(sched, key_user, (void *)(intptr_t)2);
    run_and_end(2);
    assert_int_equal(dtor_calls, 2);
    assert_int_equal(order[0], 101);
    assert_int_equal(order[1], 102);
    assert_int_equal(coho_key_delete(key_a), 0);
    errno = 0;
    assert_int_equal(coho_key_delete(key_a), -1);
    assert_int_equal(errno, EINVAL);
}

static void dtor_resets(void *v)
{
    dtor_calls++;
    if (dtor_calls < 10) /* keeps setting a value: bounded to 4 rounds */
        coho_key_set(key_b, v);
}

static void sets_b(void *arg)
{
    (void)arg;
    CO_CHECK_INT(coho_key_set(key_b, &key_b), 0);
    co_ended();
}

static void destructor_that_sets_again_gets_at_most_four_rounds(void **state)
{
    (void)state;
    begin();
    dtor_calls = 0;
    assert_int_equal(coho_key_create(&key_b, dtor_resets), 0);
    coho_spawn(sched, sets_b, NULL);
    run_and_end(1);
    assert_int_equal(dtor_calls, 4);
    assert_int_equal(coho_key_delete(key_b), 0);
}

static void reuses_deleted_key(void *arg)
{
    coho_key_t old = key_a;

    (void)arg;
    CO_CHECK_INT(coho_key_set(old, &old), 0);
    CO_CHECK_INT(coho_key_delete(old), 0);
    CO_CHECK(coho_key_get(old) == NULL);
    errno = 0;
    CO_CHECK_INT(coho_key_set(old, &old), -1);
    CO_CHECK_INT(errno, EINVAL);
    /* a new key may reuse the slot; the old value must not show through it */
    CO_CHECK_INT(coho_key_create(&key_b, NULL), 0);
    CO_CHECK(coho_key_get(key_b) == NULL);
    CO_CHECK_INT(coho_key_delete(key_b), 0);
    co_ended();
}

static void deleted_key_value_never_shows_through_a_new_key(void **state)
{
    (void)state;
    begin();
    dtor_calls = 0;
    assert_int_equal(coho_key_create(&key_a, dtor_a), 0);
    coho_spawn(sched, reuses_deleted_key, NULL);
    run_and_end(1);
    assert_int_equal(dtor_calls, 0); /* no destructor for a deleted key */
}

/* ---- exit callbacks ---- */

static void exit_cb(void *arg)
{
    order[order_n++] = (int)(intptr_t)arg;
}

static void registers_exit_cbs(void *arg)
{
    (void)arg;
    CO_CHECK_INT(coho_key_set(key_a, (void *)(intptr_t)5), 0);
    CO_CHECK_INT(coho_at_exit(exit_cb, (void *)(intptr_t)1), 0);
    CO_CHECK_INT(coho_at_exit(exit_cb, (void *)(intptr_t)2), 0);
    CO_CHECK_INT(coho_at_exit(exit_cb, (void *)(intptr_t)3), 0);
    order[order_n++] = 0;
    co_ended();
}

static void exit_callbacks_run_lifo_before_key_destructors(void **state)
{
    (void)state;
    begin();
    order_n = 0;
    assert_int_equal(coho_key_create(&key_a, dtor_a), 0);
    coho_spawn(sched, registers_exit_cbs, NULL);
    run_and_end(1);
    assert_int_equal(order_n, 5);
    assert_int_equal(order[0], 0);
    assert_int_equal(order[1], 3);
    assert_int_equal(order[2], 2);
    assert_int_equal(order[3], 1);
    assert_int_equal(order[4], 105);
    assert_int_equal(coho_key_delete(key_a), 0);
}

/* ---- switch hook ---- */

static uint64_t fake_tls; /* stands for a thread-local the hook keeps per coroutine */
static int saves, restores;

static void hook_save(void *slot)
{
    memcpy(slot, &fake_tls, sizeof(fake_tls));
    saves++;
}

static void hook_restore(void *slot)
{
    memcpy(&fake_tls, slot, sizeof(fake_tls));
    restores++;
}

static void hook_user(void *arg)
{
    uint64_t mine = (uint64_t)(uintptr_t)arg;

    CO_CHECK_INT(fake_tls, 0); /* a new coroutine starts from a zeroed slot */
    fake_tls = mine;
    for (int i = 0; i < 3; i++) {
        coho_yield();
        CO_CHECK_INT(fake_tls, mine);
    }
    co_ended();
}

static void switch_hook_keeps_a_slot_per_coroutine(void **state)
{
    static const coho_switch_hook_t h = {sizeof(uint64_t), hook_save, hook_restore};
    coho_switch_hook_t other = h;

    (void)state;
    assert_int_equal(coho_set_switch_hook(&h), 0);
    assert_int_equal(coho_set_switch_hook(&h), 0); /* same hook again: fine */
    other.slot_size = 8;
    other.save = hook_restore;
    errno = 0;
    assert_int_equal(coho_set_switch_hook(&other), -1);
    assert_int_equal(errno, EBUSY);
    begin();
    fake_tls = 777; /* the scheduler's own value survives the coroutines */
    coho_spawn(sched, hook_user, (void *)(uintptr_t)1);
    coho_spawn(sched, hook_user, (void *)(uintptr_t)2);
    run_and_end(2);
    assert_int_equal(fake_tls, 777);
    assert_true(saves >= 8);
    assert_int_equal(saves, restores);
    assert_int_equal(coho_set_switch_hook(NULL), 0);
    other.slot_size = COHO_SWITCH_HOOK_SLOT_MAX + 1;
    errno = 0;
    assert_int_equal(coho_set_switch_hook(&other), -1);
    assert_int_equal(errno, EINVAL);
}

/* ---- dump and log ids ---- */

static char log_path[256];

static void open_temp_log(void)
{
    const char *dir = getenv("COHO_TEST_TMPDIR");
    coho_log_opts_t o;

    if (dir == NULL)
        dir = "/tmp";
    snprintf(log_path, sizeof(log_path), "%s/sched_local_%d.log", dir, (int)getpid());
    (void)mkdir(dir, 0755);
    unlink(log_path);
    coho_log_opts_init(&o);
    o.path = log_path;
    o.level = COHO_LOG_TRACE;
    assert_int_equal(coho_log_open(&o), 0);
}

/* The whole log file, NUL-terminated (the caller frees it). */
static char *read_log(void)
{
    FILE *f;
    char *buf;
    long n;

    assert_int_equal(coho_log_close(), 0);
    f = fopen(log_path, "r");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = calloc(1, (size_t)n + 1);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    unlink(log_path);
    return buf;
}

static uint64_t logged_id;

static void logs_a_line(void *arg)
{
    (void)arg;
    logged_id = coho_self();
    coho_log_info("hello from a coroutine");
}

static void log_lines_carry_the_coroutine_id(void **state)
{
    char want[64];
    char *text;

    (void)state;
    open_temp_log();
    begin();
    coho_spawn(sched, logs_a_line, NULL);
    run_and_end(0);
    text = read_log();
    snprintf(want, sizeof(want), "-%llu]hello from a coroutine", (unsigned long long)logged_id);
    assert_non_null(strstr(text, want));
    free(text);
}

static void dumped_parker(void *arg)
{
    (void)arg;
    coho_sleep_ms(60 * 1000);
}

static void dumper(void *arg)
{
    (void)arg;
    coho_sleep_ms(30);
    coho_sched_dump(sched);
    coho_sched_stop(sched);
}

static void dump_writes_one_line_per_coroutine_with_state_and_wait(void **state)
{
    coho_spawn_opts_t o;
    uint64_t parker;
    char want[128];
    char *text;

    (void)state;
    open_temp_log();
    begin();
    coho_spawn_opts_init(&o);
    o.name = "parker";
    parker = coho_spawn_ex(sched, dumped_parker, NULL, &o);
    coho_spawn(sched, dumper, NULL);
    run_and_end(0);
    text = read_log();
    snprintf(want, sizeof(want), "coroutine %llu (parker, entry ", (unsigned long long)parker);
    assert_non_null(strstr(text, want));
    assert_non_null(strstr(text, "parked waits on sleep for "));
    assert_non_null(strstr(text, "running"));
    assert_non_null(strstr(text, "KiB used"));
    assert_non_null(strstr(text, "2 coroutines"));
    free(text);
}

static void sigusr2_dumper(void *arg)
{
    (void)arg;
    coho_sleep_ms(20);
    kill(getpid(), SIGUSR2);
    coho_sleep_ms(50);
}

static void sigusr2_dumps_when_the_scheduler_opts_in(void **state)
{
    coho_sched_opts_t so;
    coho_spawn_opts_t o;
    char *text;

    (void)state;
    open_temp_log();
    coho_sched_opts_init(&so);
    so.dump_on_sigusr2 = true;
    sched = coho_sched_create(&so);
    assert_non_null(sched);
    coho_spawn_opts_init(&o);
    o.name = "usr2-target";
    coho_spawn_ex(sched, sigusr2_dumper, NULL, &o);
    run_and_end(0);
    text = read_log();
    assert_non_null(strstr(text, "(usr2-target, entry "));
    free(text);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(set_name_and_get_name_round_trip),
        cmocka_unit_test(key_values_are_per_coroutine_and_destructed_at_exit),
        cmocka_unit_test(destructor_that_sets_again_gets_at_most_four_rounds),
        cmocka_unit_test(deleted_key_value_never_shows_through_a_new_key),
        cmocka_unit_test(exit_callbacks_run_lifo_before_key_destructors),
        cmocka_unit_test(switch_hook_keeps_a_slot_per_coroutine),
        cmocka_unit_test(log_lines_carry_the_coroutine_id),
        cmocka_unit_test(dump_writes_one_line_per_coroutine_with_state_and_wait),
        cmocka_unit_test(sigusr2_dumps_when_the_scheduler_opts_in),
    };

    return coho_test_main("sched_local", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
