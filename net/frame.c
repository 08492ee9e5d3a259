/* SPDX-License-Identifier: MIT */
/* Frames: the reference-counted frames shared by send queues, and the built-in framers
 * (length-prefixed, line) in socket_ext's coho_tdp_framer_t shape. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "net/internal.h"

int64_t coho__net_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

coho__frame_t *coho__frame_make(const void *data, size_t len)
{
    coho__frame_t *f;

    if (len > UINT32_MAX)
        return NULL;
    f = malloc(sizeof(*f) + (len ? len : 1));
    if (f == NULL)
        return NULL;
    atomic_init(&f->refs, 1);
    atomic_init(&f->ws, NULL);
    f->len = (uint32_t)len;
    if (len)
        memcpy(f->data, data, len);
    return f;
}

void coho__frame_ref(coho__frame_t *f)
{
    atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
}

void coho__frame_unref(coho__frame_t *f)
{
    if (f != NULL && atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) == 1) {
        coho__frame_unref(atomic_load_explicit(&f->ws, memory_order_acquire));
        free(f);
    }
}

/* ---- length-prefixed ---------------------------------------------------------------------- */

static int lenpfx_valid(const coho_lenpfx_t *cfg)
{
    return cfg != NULL && (cfg->size == 1 || cfg->size == 2 || cfg->size == 4);
}

static int lenpfx_detect(coho_cbuf_t *b, void *ctx)
{
    const coho_lenpfx_t *cfg = ctx;

    return coho_cbuf_len(b) < cfg->size ? COHO_TDP_NEED_MORE : COHO_TDP_REQUEST;
}

static ssize_t lenpfx_scan(coho_cbuf_t *b, uint64_t *req_id, void *ctx)
{
    const coho_lenpfx_t *cfg = ctx;
    unsigned char h[4];
    uint64_t v = 0;

    *req_id = 0;
    if (coho_cbuf_len(b) < cfg->size)
        return 0;
    if (coho_cbuf_read(b, h, cfg->size) != (ssize_t)cfg->size)
        return -1;
    for (unsigned i = 0; i < cfg->size; i++) {
        unsigned k = cfg->big_endian ? i : cfg->size - 1 - i;
        v = (v << 8) | h[k];
    }
    if (cfg->includes_header) {
        if (v < cfg->size)
            return -1;
        return (ssize_t)v;
    }
    return (ssize_t)(v + cfg->size);
}

int coho_lenpfx_framer_init(coho_tdp_framer_t *f, const coho_lenpfx_t *cfg)
{
    if (f == NULL || !lenpfx_valid(cfg)) {
        errno = EINVAL;
        return -1;
    }
    memset(f, 0, sizeof(*f));
    f->name = "lenpfx";
    f->detect = lenpfx_detect;
    f->scan = lenpfx_scan;
    f->ctx = (void *)cfg;
    return 0;
}

int coho_lenpfx_encode(const coho_lenpfx_t *cfg, size_t payload_len, unsigned char out[4])
{
    uint64_t v;

    if (!lenpfx_valid(cfg) || out == NULL) {
        errno = EINVAL;
        return -1;
    }
    v = (uint64_t)payload_len + (cfg->includes_header ? cfg->size : 0);
    if (cfg->size < 8 && v >> (cfg->size * 8) != 0) {
        errno = EMSGSIZE;
        return -1;
    }
    for (unsigned i = 0; i < cfg->size; i++) {
        unsigned k = cfg->big_endian ? cfg->size - 1 - i : i;
        out[k] = (unsigned char)(v >> (8 * i));
    }
    return (int)cfg->size;
}

/* ---- lines ---------------------------------------------------------------------------------- */

static int line_detect(coho_cbuf_t *b, void *ctx)
{
    (void)ctx;
    return coho_cbuf_len(b) == 0 ? COHO_TDP_NEED_MORE : COHO_TDP_REQUEST;
}

static ssize_t line_scan(coho_cbuf_t *b, uint64_t *req_id, void *ctx)
{
    struct iovec iov[16];
    size_t off = 0, len = coho_cbuf_len(b);

    (void)ctx;
    *req_id = 0;
    while (off < len) {
        int n = coho_cbuf_data_iov(b, off, iov, 16);
        if (n <= 0)
            return -1;
        for (int i = 0; i < n; i++) {
            const char *nl = memchr(iov[i].iov_base, '\n', iov[i].iov_len);
            if (nl != NULL)
                return (ssize_t)(off + (size_t)(nl - (const char *)iov[i].iov_base) + 1);
            off += iov[i].iov_len;
        }
    }
    return 0;
}

int coho_line_framer_init(coho_tdp_framer_t *f)
{
    if (f == NULL) {
        errno = EINVAL;
        return -1;
    }
    memset(f, 0, sizeof(*f));
    f->name = "line";
    f->detect = line_detect;
    f->scan = line_scan;
    return 0;
}
