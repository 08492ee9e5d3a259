/* SPDX-License-Identifier: MIT */
/* The version of the coho headers, and of the library they are used with. */
#ifndef COHO_VERSION_H
#define COHO_VERSION_H

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

#endif /* COHO_VERSION_H */
