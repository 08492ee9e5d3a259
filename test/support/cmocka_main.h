/* SPDX-License-Identifier: MIT */
/* The shared main of CMocka test programs. ctest registers every case as its own entry and
 * runs `prog <case>`; a name that is not one of the program's cases is an error (a CMocka
 * filter that matches nothing would run nothing and pass). `prog --list` prints the cases.
 *
 *     int main(int argc, char **argv)
 *     {
 *         const struct CMUnitTest tests[] = { cmocka_unit_test(x_does_y), ... };
 *         return coho_test_main("group", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
 *     }
 */
#ifndef COHO_TEST_SUPPORT_CMOCKA_MAIN_H
#define COHO_TEST_SUPPORT_CMOCKA_MAIN_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

int coho_test_main(const char *group, const struct CMUnitTest *tests, size_t count, int argc,
                   char **argv);

/* The seed for randomized tests: $COHO_TEST_SEED if set, else a fresh one. It is printed, so a
 * failing run can be repeated with COHO_TEST_SEED=<seed>. */
uint64_t coho_test_seed(void);

/* A small deterministic PRNG (splitmix64) for randomized tests. */
uint64_t coho_test_rand(uint64_t *state);

#endif /* COHO_TEST_SUPPORT_CMOCKA_MAIN_H */
