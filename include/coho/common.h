/* SPDX-License-Identifier: MIT */
/* Definitions every coho public header shares: export macro and basic includes. */
#ifndef COHO_COMMON_H
#define COHO_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#if defined(COHO_BUILDING_LIBRARY)
#    define COHO_API __attribute__((visibility("default")))
#else
#    define COHO_API
#endif

#ifdef __cplusplus
#    define COHO_EXTERN_C_BEGIN extern "C" {
#    define COHO_EXTERN_C_END   }
#else
#    define COHO_EXTERN_C_BEGIN
#    define COHO_EXTERN_C_END
#endif

#endif /* COHO_COMMON_H */
