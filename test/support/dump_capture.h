/* SPDX-License-Identifier: MIT */
/* Runs a scheduler with its log in a temporary file and checks coho_sched_dump's lines there:
 * the shared harness of the dump tests (sched_dump_test.c, net/tdp_dump_test.c). Included once
 * by a CMocka test file, after cmocka_main.h; its definitions are static to that file.
 *
 *     static void setup(void) { spawn_named("parker", park_forever, NULL); ... }
 *     run_and_read(setup);
 *     expect_dump_line("parker", "wait");
 */
#ifndef COHO_TEST_DUMP_CAPTURE_H
#define COHO_TEST_DUMP_CAPTURE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <coho.h>

#include "test/support/cmocka_main.h"

static coho_sched_t *sched;
static char log_path[256];
static char *dump_text; /* the log after the run */

static void open_temp_log(void)
{
    const char *dir = getenv("COHO_TEST_TMPDIR");
    coho_log_opts_t o;

    if (dir == NULL)
        dir = "/tmp";
    snprintf(log_path, sizeof(log_path), "%s/dump_capture_%d.log", dir, (int)getpid());
    (void)mkdir(dir, 0755);
    unlink(log_path);
    coho_log_opts_init(&o);
    o.path = log_path;
    assert_int_equal(coho_log_open(&o), 0);
}

/* Closes the log and keeps the whole file in dump_text. */
static void read_log(void)
{
    FILE *f;
    long n;

    assert_int_equal(coho_log_close(), 0);
    f = fopen(log_path, "r");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    dump_text = calloc(1, (size_t)n + 1);
    assert_non_null(dump_text);
    assert_int_equal(fread(dump_text, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    unlink(log_path);
}

/* Spawns failed by spawn_named(). It also runs in coroutines, where a CMocka assertion would
 * longjmp across stacks: run_and_read() checks the count on the case's stack. */
static unsigned spawn_failures;

static uint64_t spawn_named(const char *name, void (*fn)(void *), void *arg)
{
    coho_spawn_opts_t o;
    uint64_t id;

    coho_spawn_opts_init(&o);
    o.name = name;
    id = coho_spawn_ex(sched, fn, arg, &o);
    spawn_failures += id == 0;
    return id;
}

/* Runs the scheduler; `setup` spawns the parkers and the dumper. */
static void run_and_read(void (*setup)(void))
{
    open_temp_log();
    sched = coho_sched_create(NULL);
    assert_non_null(sched);
    spawn_failures = 0;
    setup();
    assert_int_equal(coho_sched_run(sched), 0);
    coho_sched_destroy(sched);
    sched = NULL;
    read_log();
    assert_int_equal(spawn_failures, 0);
}

/* The dump line of the coroutine called `name`: asserts that it exists and contains `want`. */
static void expect_dump_line(const char *name, const char *want)
{
    char key[64];
    const char *at;
    const char *bol;
    const char *eol;
    char line[1024];
    size_t n;

    snprintf(key, sizeof(key), "(%s, entry ", name);
    at = strstr(dump_text, key);
    if (at == NULL)
        fail_msg("no dump line for %s in:\n%s", name, dump_text);
    for (bol = at; bol > dump_text && bol[-1] != '\n'; bol--) {
    }
    eol = strchr(at, '\n');
    n = eol != NULL ? (size_t)(eol - bol) : strlen(bol);
    if (n >= sizeof(line))
        n = sizeof(line) - 1;
    memcpy(line, bol, n);
    line[n] = '\0';
    if (strstr(line, want) == NULL)
        fail_msg("the dump line of %s lacks \"%s\":\n%s", name, want, line);
}

#endif
