/* SPDX-License-Identifier: MIT */
/* A program built against the installed coho: it must compile, link and run. */
#include <stdio.h>
#include <string.h>

#include <coho.h>

int main(void)
{
    if (coho_version() != COHO_VERSION_NUMBER ||
        strcmp(coho_version_string(), COHO_VERSION_STRING) != 0) {
        fprintf(stderr, "consumer: header and library versions differ\n");
        return 1;
    }
    printf("coho %s\n", coho_version_string());
    return 0;
}
