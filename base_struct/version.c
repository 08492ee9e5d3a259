/* SPDX-License-Identifier: MIT */
/* The library's version, for header/library mismatch checks. */
#include <coho/version.h>

int coho_version(void)
{
    return COHO_VERSION_NUMBER;
}

const char *coho_version_string(void)
{
    return COHO_VERSION_STRING;
}
