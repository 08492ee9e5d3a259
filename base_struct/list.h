/* SPDX-License-Identifier: MIT */
/* Intrusive lists for libcoho's layers: the public header <coho/list.h> is the definition (it
 * is header-only, so net/ and user code share it without a library symbol). */
#ifndef COHO_BASE_STRUCT_LIST_H
#define COHO_BASE_STRUCT_LIST_H

#include <coho/list.h>

#endif /* COHO_BASE_STRUCT_LIST_H */
