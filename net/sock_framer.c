/* SPDX-License-Identifier: MIT */
/* The sock protocol's framer for socket_ext: a 24-byte little-endian header (magic, type, seq,
 * body length, arg) followed by the body; the response bit of the type tells the kinds apart
 * and seq carries the request id. */
#include <errno.h>
#include <stdio.h> /* SEEK_SET */

#include <coho.h>
#include <coho/net.h>

#include "net/tdp_internal.h"

static void put_le32(unsigned char *o, uint32_t v)
{
    o[0] = (unsigned char)v;
    o[1] = (unsigned char)(v >> 8);
    o[2] = (unsigned char)(v >> 16);
    o[3] = (unsigned char)(v >> 24);
}

static uint32_t get_le32(const unsigned char *i)
{
    return (uint32_t)i[0] | (uint32_t)i[1] << 8 | (uint32_t)i[2] << 16 | (uint32_t)i[3] << 24;
}

void coho_sock_hdr_encode(const coho_sock_hdr_t *h, unsigned char out[COHO_SOCK_HDR_LEN])
{
    put_le32(out, h->magic);
    put_le32(out + 4, h->type);
    put_le32(out + 8, (uint32_t)h->seq);
    put_le32(out + 12, (uint32_t)(h->seq >> 32));
    put_le32(out + 16, h->body_len);
    put_le32(out + 20, h->arg);
}

int coho_sock_hdr_decode(const unsigned char in[COHO_SOCK_HDR_LEN], coho_sock_hdr_t *h)
{
    h->magic = get_le32(in);
    h->type = get_le32(in + 4);
    h->seq = (uint64_t)get_le32(in + 8) | (uint64_t)get_le32(in + 12) << 32;
    h->body_len = get_le32(in + 16);
    h->arg = get_le32(in + 20);
    if (h->magic != COHO_SOCK_MAGIC) {
        errno = EPROTO;
        return -1;
    }
    return 0;
}

static int sock_detect(coho_cbuf_t *b, void *ctx)
{
    unsigned char hdr[COHO_SOCK_HDR_LEN];
    coho_sock_hdr_t h;

    (void)ctx;
    if (coho_cbuf_len(b) < 4)
        return COHO_TDP_NEED_MORE;
    if (coho_cbuf_len(b) < COHO_SOCK_HDR_LEN) {
        /* Reject a wrong magic as soon as its 4 bytes are there. */
        if (coho_cbuf_read(b, hdr, 4) != 4 || get_le32(hdr) != COHO_SOCK_MAGIC)
            return COHO_TDP_BAD;
        return COHO_TDP_NEED_MORE;
    }
    if (coho_cbuf_read(b, hdr, sizeof(hdr)) != (ssize_t)sizeof(hdr) ||
        coho_sock_hdr_decode(hdr, &h) != 0)
        return COHO_TDP_BAD;
    return (h.type & COHO_SOCK_RESPONSE) ? COHO_TDP_RESPONSE : COHO_TDP_REQUEST;
}

static ssize_t sock_scan(coho_cbuf_t *b, uint64_t *req_id, void *ctx)
{
    unsigned char hdr[COHO_SOCK_HDR_LEN];
    const size_t *max_body = ctx;
    coho_sock_hdr_t h;

    if (coho_cbuf_len(b) < COHO_SOCK_HDR_LEN)
        return 0;
    if (coho_cbuf_read(b, hdr, sizeof(hdr)) != (ssize_t)sizeof(hdr) ||
        coho_sock_hdr_decode(hdr, &h) != 0)
        return -1;
    if (max_body != NULL && h.body_len > *max_body)
        return -1;
    *req_id = h.seq;
    return (ssize_t)(COHO_SOCK_HDR_LEN + (size_t)h.body_len);
}

bool coho__sock_is_framer(const coho_tdp_framer_t *f)
{
    return f->detect == sock_detect && f->scan == sock_scan;
}

void coho_sock_framer_init(coho_tdp_framer_t *f, const size_t *max_body_len)
{
    f->name = "sock";
    f->detect = sock_detect;
    f->scan = sock_scan;
    f->ctx = (void *)max_body_len;
}
