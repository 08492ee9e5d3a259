/* SPDX-License-Identifier: MIT */
/* coho__check_fail: the end of a failed COHO_CHECK. Logs at fatal level, flushes, tells
 * stderr, aborts. */
#include "log/check.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <coho/log.h>

#include "base_struct/sys.h"

void coho__check_fail(const char *file, int line, const char *fmt, ...)
{
    static __thread bool failing;
    char msg[1024];
    char out[1200];
    va_list ap;
    int n;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (!failing) { /* a check that fails inside the logger must not recurse */
        failing = true;
        coho_log_write(COHO_LOG_FATAL, file, line, "CHECK failed: %s", msg);
        if (coho_log_is_open()) {
            (void)coho_log_flush();
            /* with no file open the fatal line itself already went to stderr */
            n = snprintf(out, sizeof(out), "coho: CHECK failed at %s:%d: %s\n", file, line, msg);
            coho__sys_init();
            if (n > 0)
                (void)coho__sys_write_all(2, out,
                                          (size_t)n < sizeof(out) ? (size_t)n : sizeof(out) - 1);
        }
    }
    abort();
}
