/* SPDX-License-Identifier: MIT */
/* The one conversion from coho's internal error convention (a result >= 0, or -errno) to the
 * POSIX one at a public boundary (STYLE.md "Errors"). */
#ifndef COHO_BASE_STRUCT_ERR_H
#define COHO_BASE_STRUCT_ERR_H

#include <errno.h>
#include <sys/types.h>

/* Returns `rc` when it is >= 0; otherwise sets errno to -rc and returns -1. Call it last, right
 * before returning from the public function: a log call or a coroutine switch between the
 * failing call and the boundary may change errno, the internal result never. Functions that
 * return int cast the result: (int)coho__posix_ret(rc). */
static inline ssize_t coho__posix_ret(ssize_t rc)
{
    if (rc < 0) {
        errno = (int)-rc;
        return -1;
    }
    return rc;
}

#endif /* COHO_BASE_STRUCT_ERR_H */
