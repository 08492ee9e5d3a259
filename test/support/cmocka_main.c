/* SPDX-License-Identifier: MIT */
/* The shared CMocka main: case listing, exact-name filtering, seeds. */
#include "test/support/cmocka_main.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int coho_test_main(const char *group, const struct CMUnitTest *tests, size_t count, int argc,
                   char **argv)
{
    size_t i;

    if (argc > 1 && strcmp(argv[1], "--list") == 0) {
        for (i = 0; i < count; i++)
            printf("%s\n", tests[i].name);
        return 0;
    }
    if (argc > 1) {
        for (i = 0; i < count; i++) {
            if (strcmp(tests[i].name, argv[1]) == 0)
                return _cmocka_run_group_tests(group, &tests[i], 1, NULL, NULL);
        }
        fprintf(stderr, "%s: no test case named '%s' in group '%s'\n", argv[0], argv[1], group);
        return 2;
    }
    return _cmocka_run_group_tests(group, tests, count, NULL, NULL);
}

uint64_t coho_test_seed(void)
{
    static uint64_t seed;
    static int have;
    const char *env;

    if (have)
        return seed;
    env = getenv("COHO_TEST_SEED");
    if (env != NULL && *env != '\0') {
        seed = strtoull(env, NULL, 0);
    } else {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        seed = (uint64_t)ts.tv_sec * 1000000007u ^ (uint64_t)ts.tv_nsec;
    }
    have = 1;
    fprintf(stderr, "COHO_TEST_SEED=%" PRIu64 " (set it to repeat this run)\n", seed);
    return seed;
}

uint64_t coho_test_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
