/* SPDX-License-Identifier: MIT */
/* Tests of the process-unique id source: never 0, distinct across threads, wrap skips 0, and
 * a forked child does not repeat its parent's ids. */
#include <pthread.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base_struct/id.h"
#include "test/support/cmocka_main.h"

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

static void id_next_is_never_zero_and_never_repeats(void **state)
{
    enum { N = 200000 };
    uint64_t *ids = calloc(N, sizeof(*ids));
    int i;

    (void)state;
    for (i = 0; i < N; i++) {
        ids[i] = coho__id_next();
        assert_int_not_equal(ids[i], 0);
    }
    qsort(ids, N, sizeof(*ids), cmp_u64);
    for (i = 1; i < N; i++)
        assert_int_not_equal(ids[i], ids[i - 1]);
    free(ids);
}

static void id_sequence_skips_zero_when_it_wraps(void **state)
{
    (void)state;
    coho__id_test_set_next(UINT64_MAX - 1);
    assert_int_equal(coho__id_next(), UINT64_MAX - 1);
    assert_int_equal(coho__id_next(), UINT64_MAX);
    assert_int_equal(coho__id_next(), 1);
    coho__id_test_set_next(0);
    assert_int_equal(coho__id_next(), 1);
    assert_int_equal(coho__id_next(), 2);
}

enum { THREADS = 4, PER_THREAD = 100000 };

static void *take_ids(void *arg)
{
    uint64_t *out = arg;
    int i;

    for (i = 0; i < PER_THREAD; i++)
        out[i] = coho__id_next();
    return NULL;
}

static void id_next_is_unique_across_threads(void **state)
{
    uint64_t *ids = calloc((size_t)THREADS * PER_THREAD, sizeof(*ids));
    pthread_t t[THREADS];
    size_t i;

    (void)state;
    /* start just below the wrap so the threads also race across it */
    coho__id_test_set_next(UINT64_MAX - THREADS * PER_THREAD / 2);
    for (i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, take_ids, ids + i * PER_THREAD), 0);
    for (i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    qsort(ids, (size_t)THREADS * PER_THREAD, sizeof(*ids), cmp_u64);
    assert_int_not_equal(ids[0], 0);
    for (i = 1; i < (size_t)THREADS * PER_THREAD; i++)
        assert_int_not_equal(ids[i], ids[i - 1]);
    free(ids);
}

static void id_seed_is_the_first_id_of_the_sequence(void **state)
{
    int status;
    pid_t pid;

    (void)state;
    /* checked in a child: there the sequence is fresh, whatever ran before in this process */
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        uint64_t seed = coho__id_seed();

        _exit(seed != 0 && coho__id_next() == seed && coho__id_seed() == seed ? 0 : 1);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void id_forked_child_does_not_repeat_parent_ids(void **state)
{
    uint64_t before, child_ids[2], parent_next, child_seed;
    int fds[2], status;
    pid_t pid;

    (void)state;
    before = coho__id_next();
    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        uint64_t out[2] = {coho__id_next(), coho__id_seed()};

        _exit(write(fds[1], out, sizeof(out)) == (ssize_t)sizeof(out) ? 0 : 1);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(read(fds[0], child_ids, sizeof(child_ids)), sizeof(child_ids));
    close(fds[0]);
    close(fds[1]);
    parent_next = coho__id_next();
    child_seed = child_ids[1];
    assert_int_equal(parent_next, before + 1);
    assert_int_not_equal(child_ids[0], parent_next);
    assert_int_not_equal(child_seed, coho__id_seed());
    assert_int_equal(child_ids[0], child_seed);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(id_next_is_never_zero_and_never_repeats),
        cmocka_unit_test(id_sequence_skips_zero_when_it_wraps),
        cmocka_unit_test(id_next_is_unique_across_threads),
        cmocka_unit_test(id_seed_is_the_first_id_of_the_sequence),
        cmocka_unit_test(id_forked_child_does_not_repeat_parent_ids),
    };

    return coho_test_main("id", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
