/* SPDX-License-Identifier: MIT */
/* WebSocket, server side (RFC 6455): the HTTP/1.1 upgrade (http-parser; the accept key from
 * OpenSSL's SHA-1 and base64), frames read with wslay's frame API (masking, reserved bits,
 * control frame rules, fragmentation, ping/pong, the close handshake, max message size), and
 * server frames encoded once per shared frame. */
#define _GNU_SOURCE
#include <errno.h>
#include <http_parser.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <wslay/wslay.h>

#include "net/internal.h"

#define WS_REQUEST_MAX 8192 /* bytes of an upgrade request at most */
#define WS_GUID        "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

enum { WS_CONT = 0, WS_TEXT = 1, WS_BINARY = 2, WS_CLOSE = 8, WS_PING = 9, WS_PONG = 10 };

/* ---- encoding (server frames are never masked) --------------------------------------------- */

static size_t ws_header(unsigned char h[10], int opcode, size_t len)
{
    h[0] = (unsigned char)(0x80 | opcode);
    if (len < 126) {
        h[1] = (unsigned char)len;
        return 2;
    }
    if (len <= 0xffff) {
        h[1] = 126;
        h[2] = (unsigned char)(len >> 8);
        h[3] = (unsigned char)len;
        return 4;
    }
    h[1] = 127;
    for (int i = 0; i < 8; i++)
        h[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
    return 10;
}

static coho__frame_t *ws_encode(int opcode, const void *data, size_t len)
{
    unsigned char h[10];
    size_t hl = ws_header(h, opcode, len);
    coho__frame_t *f;

    if (len > UINT32_MAX - hl)
        return NULL;
    f = malloc(sizeof(*f) + hl + len);
    if (f == NULL)
        return NULL;
    atomic_init(&f->refs, 1);
    atomic_init(&f->ws, NULL);
    f->len = (uint32_t)(hl + len);
    memcpy(f->data, h, hl);
    if (len)
        memcpy(f->data + hl, data, len);
    return f;
}

coho__frame_t *coho__ws_twin(coho__frame_t *f, bool text)
{
    coho__frame_t *twin = atomic_load_explicit(&f->ws, memory_order_acquire), *expected = NULL;

    if (twin != NULL)
        return twin;
    twin = ws_encode(text ? WS_TEXT : WS_BINARY, f->data, f->len);
    if (twin == NULL)
        return NULL;
    /* The first encoder wins; the shared frame holds the twin's reference. */
    if (!atomic_compare_exchange_strong_explicit(&f->ws, &expected, twin, memory_order_acq_rel,
                                                 memory_order_acquire)) {
        coho__frame_unref(twin);
        twin = expected;
    }
    return twin;
}

/* Queues a control frame (close, pong) on `c`. */
static void ws_control(struct coho_conn *c, int opcode, const void *data, size_t len)
{
    coho__frame_t *f = ws_encode(opcode, data, len);

    if (f == NULL)
        return;
    coho__conn_enqueue_raw(c, f);
    coho__frame_unref(f);
}

void coho__ws_close(struct coho_conn *c, unsigned code)
{
    unsigned char b[2] = {(unsigned char)(code >> 8), (unsigned char)code};

    if (c->ws_close_sent)
        return;
    c->ws_close_sent = true;
    ws_control(c, WS_CLOSE, b, sizeof(b));
}

/* ---- the upgrade ------------------------------------------------------------------------------
 */

struct upgrade {
    char field[32];
    size_t field_len;
    bool in_value;
    int hdr; /* which header the value belongs to */
    char key[64];
    size_t key_len;
    bool upgrade_ws, conn_upgrade, version13, path_ok, done;
    const char *path;
    char url[256];
    size_t url_len;
};

enum { H_OTHER, H_UPGRADE, H_CONNECTION, H_KEY, H_VERSION };

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct upgrade *u = p->data;

    if (u->url_len + len >= sizeof(u->url))
        return 1;
    memcpy(u->url + u->url_len, at, len);
    u->url_len += len;
    return 0;
}

static int on_field(http_parser *p, const char *at, size_t len)
{
    struct upgrade *u = p->data;

    if (u->in_value) {
        u->in_value = false;
        u->field_len = 0;
    }
    if (u->field_len + len < sizeof(u->field)) {
        memcpy(u->field + u->field_len, at, len);
        u->field_len += len;
    } else {
        u->field_len = sizeof(u->field); /* too long for a header we care about */
    }
    return 0;
}

/* Whether the comma-separated list `v` holds `token` (case-insensitive). */
static bool has_token(const char *v, size_t len, const char *token)
{
    size_t tl = strlen(token);

    for (size_t i = 0; i < len;) {
        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < len && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e - s == tl && strncasecmp(v + s, token, tl) == 0)
            return true;
    }
    return false;
}

static int on_value(http_parser *p, const char *at, size_t len)
{
    struct upgrade *u = p->data;

    if (!u->in_value) {
        u->in_value = true;
        u->hdr = H_OTHER;
        if (u->field_len == 7 && strncasecmp(u->field, "upgrade", 7) == 0)
            u->hdr = H_UPGRADE;
        else if (u->field_len == 10 && strncasecmp(u->field, "connection", 10) == 0)
            u->hdr = H_CONNECTION;
        else if (u->field_len == 17 && strncasecmp(u->field, "sec-websocket-key", 17) == 0)
            u->hdr = H_KEY;
        else if (u->field_len == 21 && strncasecmp(u->field, "sec-websocket-version", 21) == 0)
            u->hdr = H_VERSION;
    }
    switch (u->hdr) {
    case H_UPGRADE:
        u->upgrade_ws = u->upgrade_ws || has_token(at, len, "websocket");
        break;
    case H_CONNECTION:
        u->conn_upgrade = u->conn_upgrade || has_token(at, len, "upgrade");
        break;
    case H_KEY:
        if (u->key_len + len < sizeof(u->key)) {
            memcpy(u->key + u->key_len, at, len);
            u->key_len += len;
        }
        break;
    case H_VERSION:
        u->version13 = len == 2 && memcmp(at, "13", 2) == 0;
        break;
    }
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct upgrade *u = p->data;
    size_t plen = strlen(u->path);
    const char *q = memchr(u->url, '?', u->url_len);
    size_t ulen = q ? (size_t)(q - u->url) : u->url_len;

    u->path_ok = ulen == plen && memcmp(u->url, u->path, plen) == 0;
    u->done = true;
    return 1; /* stop here: what follows is WebSocket */
}

static int send_text(struct coho_conn *c, const char *s)
{
    coho__frame_t *f = coho__frame_make(s, strlen(s));

    if (f == NULL)
        return -ENOMEM;
    coho__conn_enqueue_raw(c, f);
    coho__frame_unref(f);
    return 0;
}

/* Reads the upgrade request (the handler's coroutine), answers 101 or an error status. 0 when
 * the connection is a WebSocket now; -errno otherwise (the status was queued). */
int coho__ws_accept(struct coho_conn *c)
{
    coho_server_t *srv = c->sh->srv;
    struct upgrade u;
    http_parser_settings st;
    http_parser p;
    size_t end = 0;
    const char *req;
    unsigned char sha[SHA_DIGEST_LENGTH], keybuf[96];
    char accept[64], resp[256];
    int rc;

    /* The whole request first: up to the blank line, at most WS_REQUEST_MAX bytes. */
    for (;;) {
        size_t have = coho_cbuf_len(&c->rbuf);
        if (have >= 4) {
            const char *b = coho_cbuf_linearize(&c->rbuf, have);
            const char *hit = b ? memmem(b, have, "\r\n\r\n", 4) : NULL;
            if (hit != NULL) {
                end = (size_t)(hit - b) + 4;
                break;
            }
        }
        if (have >= WS_REQUEST_MAX) {
            send_text(c, "HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n"
                         "Content-Length: 0\r\n\r\n");
            COHO__STAT_ADD(srv, protocol_errors, 1);
            return -EMSGSIZE;
        }
        rc = coho__conn_fill(c);
        if (rc <= 0)
            return rc < 0 ? rc : -ECONNRESET;
    }
    if (end > WS_REQUEST_MAX) {
        send_text(c, "HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n"
                     "Content-Length: 0\r\n\r\n");
        COHO__STAT_ADD(srv, protocol_errors, 1);
        return -EMSGSIZE;
    }
    req = coho_cbuf_linearize(&c->rbuf, end);
    memset(&u, 0, sizeof(u));
    u.path = srv->o.ws_path ? srv->o.ws_path : "/";
    http_parser_settings_init(&st);
    st.on_url = on_url;
    st.on_header_field = on_field;
    st.on_header_value = on_value;
    st.on_headers_complete = on_headers_complete;
    http_parser_init(&p, HTTP_REQUEST);
    p.data = &u;
    http_parser_execute(&p, &st, req, end);
    coho_cbuf_consume(&c->rbuf, end); /* bytes after the request are the first frames */
    if (!u.done || p.method != HTTP_GET || p.http_major != 1 || p.http_minor < 1 || !u.upgrade_ws ||
        !u.conn_upgrade || u.key_len != 24 || !u.path_ok) {
        send_text(
            c, u.done && !u.path_ok
                   ? "HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
                   : "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
        COHO__STAT_ADD(srv, protocol_errors, 1);
        return -EPROTO;
    }
    if (!u.version13) {
        send_text(c, "HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\n"
                     "Connection: close\r\nContent-Length: 0\r\n\r\n");
        COHO__STAT_ADD(srv, protocol_errors, 1);
        return -EPROTO;
    }
    memcpy(keybuf, u.key, 24);
    memcpy(keybuf + 24, WS_GUID, sizeof(WS_GUID) - 1);
    SHA1(keybuf, 24 + sizeof(WS_GUID) - 1, sha);
    EVP_EncodeBlock((unsigned char *)accept, sha, sizeof(sha));
    snprintf(resp, sizeof(resp),
             "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Accept: %s\r\n\r\n",
             accept);
    rc = send_text(c, resp);
    if (rc < 0)
        return rc;
    c->ws = true;
    return 0;
}

/* ---- reading messages ------------------------------------------------------------------------ */

/* wslay's recv callback: bytes already in c->rbuf (read ahead by the upgrade), else one read
 * through coho__conn_fill (plain or TLS; parks). */
static ssize_t ws_recv_cb(uint8_t *buf, size_t len, int flags, void *user)
{
    struct coho_conn *c = user;
    ssize_t n;

    (void)flags;
    if (coho_cbuf_len(&c->rbuf) == 0) {
        if (c->close_err != 0 || c->rd_eof)
            return -1;
        n = coho__conn_fill(c);
        if (n == -ECANCELED)
            c->ws_cancelled = true;
        if (n <= 0)
            return -1;
    }
    size_t have = coho_cbuf_len(&c->rbuf);
    coho_cbuf_seek(&c->rbuf, 0, SEEK_SET);
    n = coho_cbuf_read(&c->rbuf, buf, len < have ? len : have);
    coho_cbuf_consume(&c->rbuf, (size_t)n);
    return n;
}

static int ws_genmask_cb(uint8_t *buf, size_t len, void *user)
{
    (void)buf;
    (void)len;
    (void)user;
    return -1; /* the server never masks */
}

static ssize_t ws_send_cb(const uint8_t *data, size_t len, int flags, void *user)
{
    (void)data;
    (void)len;
    (void)flags;
    (void)user;
    return -1; /* frames are encoded by ws_encode and leave through the send queue */
}

static ssize_t ws_fail(struct coho_conn *c, unsigned code, int err)
{
    COHO__STAT_ADD(c->sh->srv, protocol_errors, 1);
    coho__ws_close(c, code);
    coho__conn_stop_reading(c, err);
    return -err;
}

ssize_t coho__ws_read(struct coho_conn *c, coho_cbuf_t *out)
{
    coho_server_t *srv = c->sh->srv;
    struct wslay_frame_iocb io;
    int msg_op = -1; /* the data message being assembled, -1: none */
    bool in_frame = false;
    int frame_op = 0; /* the frame being received */
    uint64_t frame_got = 0;
    unsigned char ctl[125];
    size_t ctl_len = 0;

    if (c->wsctx == NULL) {
        struct wslay_frame_callbacks cb = {ws_send_cb, ws_recv_cb, ws_genmask_cb};
        if (wslay_frame_context_init((wslay_frame_context_ptr *)&c->wsctx, &cb, c) != 0)
            return -ENOMEM;
    }
    if (coho_cbuf_truncate(out, 0) != 0)
        return -errno;
    for (;;) {
        ssize_t r;

        if (c->close_err != 0)
            return -c->close_err;
        memset(&io, 0, sizeof(io));
        r = wslay_frame_recv(c->wsctx, &io);
        if (r == WSLAY_ERR_WANT_READ) {
            if (c->ws_cancelled) {
                c->ws_cancelled = false;
                return -ECANCELED;
            }
            if (c->close_err != 0)
                return -c->close_err;
            if (c->rd_eof) {
                /* EOF without a close frame: between messages a plain end, else torn. */
                if (in_frame || msg_op >= 0)
                    return ws_fail(c, 1002, ECONNRESET);
                return 0;
            }
            continue;
        }
        if (r < 0)
            return ws_fail(c, 1002, EPROTO);
        if (!in_frame) {
            /* A new frame's header: no extension was negotiated, and clients must mask. */
            if (io.rsv != 0 || !io.mask)
                return ws_fail(c, 1002, EPROTO);
            if (io.opcode >= WS_CLOSE) {
                /* Control frames: whole (fin), at most 125 bytes, allowed inside a message. */
                if (!io.fin || io.payload_length > 125 ||
                    (io.opcode != WS_CLOSE && io.opcode != WS_PING && io.opcode != WS_PONG))
                    return ws_fail(c, 1002, EPROTO);
                ctl_len = 0;
            } else if (io.opcode == WS_CONT) {
                if (msg_op < 0)
                    return ws_fail(c, 1002, EPROTO); /* a continuation of nothing */
            } else if (io.opcode == WS_TEXT || io.opcode == WS_BINARY) {
                if (msg_op >= 0)
                    return ws_fail(c, 1002, EPROTO); /* a new message inside another */
                msg_op = io.opcode;
            } else {
                return ws_fail(c, 1002, EPROTO);
            }
            if (io.opcode < WS_CLOSE && coho_cbuf_len(out) + io.payload_length > srv->o.max_frame)
                return ws_fail(c, 1009, EMSGSIZE); /* wslay shows a header with its first bytes */
            in_frame = true;
            frame_op = io.opcode;
            frame_got = 0;
        }
        if (frame_op >= WS_CLOSE) {
            memcpy(ctl + ctl_len, io.data, io.data_length);
            ctl_len += io.data_length;
        } else if (io.data_length > 0 && coho_cbuf_append(out, io.data, io.data_length) != 0) {
            return -errno;
        }
        frame_got += io.data_length;
        if (frame_got < io.payload_length)
            continue;
        in_frame = false;
        c->last_ms = coho__net_now_ms(); /* a whole frame is activity */
        if (frame_op == WS_PING) {
            ws_control(c, WS_PONG, ctl, ctl_len);
        } else if (frame_op == WS_CLOSE) {
            /* The close handshake: answer with the peer's code; this side reads no more. */
            unsigned code = ctl_len >= 2 ? (unsigned)(ctl[0] << 8 | ctl[1]) : 1000;
            coho__ws_close(c, ctl_len == 1 ? 1002 : code);
            c->rd_eof = true;
            if (msg_op >= 0)
                return ws_fail(c, 1002, ECONNRESET);
            return 0;
        } else if (frame_op < WS_CLOSE && io.fin) {
            c->last_text = msg_op == WS_TEXT;
            coho_cbuf_seek(out, 0, SEEK_SET);
            return (ssize_t)coho_cbuf_len(out);
        }
    }
}

void coho__ws_free(struct coho_conn *c)
{
    if (c->wsctx != NULL)
        wslay_frame_context_free(c->wsctx);
    c->wsctx = NULL;
}
