/* SPDX-License-Identifier: MIT */
/* coho: the umbrella C API. This is the only header a user needs.
 *
 * Conventions: functions return 0 on success and -1 with errno set on failure unless noted;
 * pointer results are NULL + errno on failure; ids are uint64_t and 0 means none. */
#ifndef COHO_H
#define COHO_H

#include "coho/common.h"

COHO_EXTERN_C_BEGIN

#define COHO_VERSION_MAJOR 0
#define COHO_VERSION_MINOR 1
#define COHO_VERSION_PATCH 0
#define COHO_VERSION_NUMBER \
    (COHO_VERSION_MAJOR * 10000 + COHO_VERSION_MINOR * 100 + COHO_VERSION_PATCH)
#define COHO_VERSION_STRING "0.1.0"

/* The library's version as MAJOR * 10000 + MINOR * 100 + PATCH; compare with
 * COHO_VERSION_NUMBER to detect a header/library mismatch. Any thread. */
COHO_API int coho_version(void);

/* The library's version as "MAJOR.MINOR.PATCH"; a static string. Any thread. */
COHO_API const char *coho_version_string(void);

COHO_EXTERN_C_END

/* Each part of the API lives in its own file under include/coho/. */
#include "coho/cbuf.h"
#include "coho/hook.h"
#include "coho/log.h"
#include "coho/sched.h"
#include "coho/socket_ext.h"
#include "coho/sync.h"

#endif /* COHO_H */
