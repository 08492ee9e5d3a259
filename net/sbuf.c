/* SPDX-License-Identifier: MIT */
/* The growable string buffer of the metrics renderings and the admin server's responses. */
#define _GNU_SOURCE
#include "net/sbuf.h"

#include <errno.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void coho__sbuf_init(coho__sbuf_t *b)
{
    memset(b, 0, sizeof(*b));
}

void coho__sbuf_destroy(coho__sbuf_t *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

char *coho__sbuf_take(coho__sbuf_t *b, size_t *len)
{
    char *p;

    coho__sbuf_add(b, "", 0); /* an empty rendering is still a string */
    if (b->err != 0) {
        coho__sbuf_destroy(b);
        return NULL;
    }
    p = b->p;
    if (len != NULL)
        *len = b->len;
    memset(b, 0, sizeof(*b));
    return p;
}

static int grow(coho__sbuf_t *b, size_t more)
{
    size_t want, cap;
    char *p;

    if (b->err != 0)
        return -1;
    if (more >= (size_t)-1 / 2 - b->len) {
        b->err = -ENOMEM;
        return -1;
    }
    want = b->len + more + 1;
    if (want <= b->cap)
        return 0;
    cap = b->cap != 0 ? b->cap : 256;
    while (cap < want)
        cap *= 2;
    p = realloc(b->p, cap);
    if (p == NULL) {
        b->err = -ENOMEM;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

void coho__sbuf_add(coho__sbuf_t *b, const void *data, size_t len)
{
    if (grow(b, len) != 0)
        return;
    if (len > 0)
        memcpy(b->p + b->len, data, len);
    b->len += len;
    b->p[b->len] = '\0';
}

void coho__sbuf_adds(coho__sbuf_t *b, const char *s)
{
    coho__sbuf_add(b, s, strlen(s));
}

void coho__sbuf_vprintf(coho__sbuf_t *b, const char *fmt, va_list ap)
{
    va_list again;
    int n;

    va_copy(again, ap);
    n = vsnprintf(NULL, 0, fmt, again);
    va_end(again);
    if (n < 0) {
        if (b->err == 0)
            b->err = -ENOMEM;
        return;
    }
    if (grow(b, (size_t)n) != 0)
        return;
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

void coho__sbuf_printf(coho__sbuf_t *b, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    coho__sbuf_vprintf(b, fmt, ap);
    va_end(ap);
}

void coho__sbuf_json_string(coho__sbuf_t *b, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    const unsigned char *run = p;

    coho__sbuf_add(b, "\"", 1);
    for (; *p != '\0'; p++) {
        if (*p >= 0x20 && *p != '"' && *p != '\\')
            continue;
        coho__sbuf_add(b, run, (size_t)(p - run));
        if (*p == '"')
            coho__sbuf_add(b, "\\\"", 2);
        else if (*p == '\\')
            coho__sbuf_add(b, "\\\\", 2);
        else if (*p == '\n')
            coho__sbuf_add(b, "\\n", 2);
        else if (*p == '\r')
            coho__sbuf_add(b, "\\r", 2);
        else if (*p == '\t')
            coho__sbuf_add(b, "\\t", 2);
        else
            coho__sbuf_printf(b, "\\u%04x", *p);
        run = p + 1;
    }
    coho__sbuf_add(b, run, (size_t)(p - run));
    coho__sbuf_add(b, "\"", 1);
}

static pthread_once_t c_numeric_once = PTHREAD_ONCE_INIT;
static locale_t c_numeric; /* (locale_t)0 if it could not be made: the thread's locale is used */

static void c_numeric_make(void)
{
    c_numeric = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
}

void coho__sbuf_double(coho__sbuf_t *b, double v)
{
    char s[40];

    if (isnan(v)) {
        coho__sbuf_adds(b, "NaN");
        return;
    }
    if (isinf(v)) {
        coho__sbuf_adds(b, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    /* The shortest of %.15g..%.17g that reads back exactly: 0.005 stays "0.005". Prometheus
     * and JSON want a '.', whatever LC_NUMERIC the program set: format in the C locale. */
    pthread_once(&c_numeric_once, c_numeric_make);
    locale_t old = c_numeric != (locale_t)0 ? uselocale(c_numeric) : (locale_t)0;
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(s, sizeof(s), "%.*g", prec, v);
        if (strtod(s, NULL) == v)
            break;
    }
    if (old != (locale_t)0)
        uselocale(old);
    coho__sbuf_adds(b, s);
}
