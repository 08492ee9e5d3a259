/* SPDX-License-Identifier: MIT */
/* A growable string buffer for rendering metrics and HTTP responses (metrics.c, admin.c).
 * An allocation failure is sticky: later appends do nothing and `err` stays -ENOMEM. */
#ifndef COHO_NET_SBUF_H
#define COHO_NET_SBUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct coho__sbuf {
    char *p;    /* NUL-terminated while len > 0 or after any append; NULL before */
    size_t len; /* bytes, the NUL not counted */
    size_t cap;
    int err; /* 0 or -ENOMEM */
} coho__sbuf_t;

void coho__sbuf_init(coho__sbuf_t *b);
void coho__sbuf_destroy(coho__sbuf_t *b);
/* Hands the string out (the caller frees it) and leaves `b` empty; NULL after a failure. */
char *coho__sbuf_take(coho__sbuf_t *b, size_t *len);
void coho__sbuf_add(coho__sbuf_t *b, const void *data, size_t len);
void coho__sbuf_adds(coho__sbuf_t *b, const char *s);
void coho__sbuf_printf(coho__sbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void coho__sbuf_vprintf(coho__sbuf_t *b, const char *fmt, va_list ap);
/* `s` as a JSON string, quotes included. */
void coho__sbuf_json_string(coho__sbuf_t *b, const char *s);
/* `v` the shortest way that reads back as the same double ("NaN", "+Inf", "-Inf" otherwise). */
void coho__sbuf_double(coho__sbuf_t *b, double v);

#endif /* COHO_NET_SBUF_H */
