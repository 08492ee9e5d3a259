/* SPDX-License-Identifier: MIT */
/* COHO_CHECK: a programming-error check that stays on in release builds. On failure it logs the
 * message at fatal level (with the TID-COID of the caller), flushes the log, writes the message
 * to stderr too, and aborts. */
#ifndef COHO_LOG_CHECK_H
#define COHO_LOG_CHECK_H

/* Never returns. `fmt` is printf-style. */
__attribute__((noreturn, format(printf, 3, 4))) void coho__check_fail(const char *file, int line,
                                                                      const char *fmt, ...);

#define COHO_CHECK(cond, ...)                                  \
    do {                                                       \
        if (__builtin_expect(!(cond), 0))                      \
            coho__check_fail(__FILE__, __LINE__, __VA_ARGS__); \
    } while (0)

#endif /* COHO_LOG_CHECK_H */
