/* SPDX-License-Identifier: MIT */
/* socket_ext frame handling on the receive side: sock frames whose headers and bodies straddle
 * the receive buffer's chunks, or arrive a few bytes at a time, are split whole; request records
 * reused after on_req destroyed, grew or read their frame buffer carry the next frame exactly;
 * a response replaces what the waiter's buffer held (read from its start), and one longer than
 * that buffer's max_len, or for a new empty buffer, arrives in a buffer made for it. */
/* ctest: TIMEOUT=60 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <coho.h>
#include <coho/net.h>

#include "test/support/cmocka_main.h"
#include "test/unit/net/socket_ext_check.h"

static size_t max_body = 1u << 20;
static coho_tdp_framer_t sock_framer;

static unsigned char pattern(uint64_t seq, size_t i)
{
    return (unsigned char)(seq * 7 + i * 13 + 1);
}

/* What the server saw. */
static struct {
    unsigned frames;   /* whole, correct request frames */
    unsigned bad;      /* frames with a wrong length, seq or body */
    uint64_t next_seq; /* in-order check for one connection (0: not checked) */
    bool answer;       /* answer with `arg` body bytes */
    bool mangle;       /* then do something to rq->frame before freeing it (by seq) */
} sv;

/* Checks a request frame: header seq, a body of `body_len` bytes of pattern(seq). */
static bool frame_ok(coho_cbuf_t *frame, coho_sock_hdr_t *h)
{
    unsigned char hdr[COHO_SOCK_HDR_LEN], *body;
    bool ok;
    size_t i;

    if (coho_cbuf_len(frame) < COHO_SOCK_HDR_LEN || coho_cbuf_seek(frame, 0, SEEK_SET) != 0 ||
        coho_cbuf_read(frame, hdr, sizeof(hdr)) != (ssize_t)sizeof(hdr) ||
        coho_sock_hdr_decode(hdr, h) != 0 ||
        coho_cbuf_len(frame) != COHO_SOCK_HDR_LEN + (size_t)h->body_len)
        return false;
    body = malloc(h->body_len + 1u);
    ok = coho_cbuf_read(frame, body, h->body_len) == (ssize_t)h->body_len;
    for (i = 0; ok && i < h->body_len; i++)
        ok = body[i] == pattern(h->seq, i);
    free(body);
    return ok;
}

static void on_req(coho_tdp_req_t *rq, void *user)
{
    coho_sock_hdr_t h;

    (void)user;
    if (!frame_ok(&rq->frame, &h) || (sv.next_seq != 0 && h.seq != sv.next_seq)) {
        sv.bad++;
        coho_tdp_req_free(rq);
        return;
    }
    sv.frames++;
    if (sv.next_seq != 0)
        sv.next_seq++;
    if (sv.answer) {
        unsigned char *body = malloc(h.arg + 1u);
        size_t i;

        for (i = 0; i < h.arg; i++)
            body[i] = pattern(h.seq, i);
        CO_CHECK_EQ(co_sock_reply(rq, h, body, h.arg), 0);
        free(body);
    }
    if (sv.mangle) {
        static unsigned char junk[10000];

        switch (h.seq % 4) {
        case 1: /* gone: the record must not reuse a destroyed buffer */
            CO_CHECK_EQ(coho_cbuf_destroy(&rq->frame), 0);
            break;
        case 2: /* grown past what a kept record holds */
            CO_CHECK_EQ(coho_cbuf_append(&rq->frame, junk, sizeof(junk)), 0);
            break;
        case 3: /* partly consumed, the cursor moved */
            CO_CHECK_EQ(coho_cbuf_consume(&rq->frame, 10), 0);
            break;
        default:
            break;
        }
    }
    coho_tdp_req_free(rq);
}

static coho_tdp_pool_t *server_open(void)
{
    struct sockaddr_in addr;
    coho_tdp_opts_t o;
    coho_tdp_pool_t *p;

    memset(&addr, 0, sizeof(addr));
    coho_sock_framer_init(&sock_framer, &max_body);
    coho_tdp_opts_init(&o);
    o.framers[0] = &sock_framer;
    o.framer_count = 1;
    o.on_req = on_req;
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    p = coho_tdp_listen((struct sockaddr *)&addr, sizeof(addr), &o);
    CO_CHECK(p != NULL);
    return p;
}

static coho_tdp_pool_t *client_open(coho_tdp_pool_t *server)
{
    struct sockaddr_in addr;
    coho_tdp_opts_t o;
    coho_tdp_pool_t *p;

    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(coho_tdp_local_port(server));
    coho_tdp_opts_init(&o);
    o.framers[0] = &sock_framer;
    o.framer_count = 1;
    o.conn_count = 1;
    p = coho_tdp_connect((struct sockaddr *)&addr, sizeof(addr), &o);
    CO_CHECK(p != NULL);
    return p;
}

/* Writes request frame `seq` (body `body` bytes of the pattern, asking for `want`) to buf.
 * Returns its length. */
static size_t put_req(unsigned char *buf, uint64_t seq, uint32_t body, uint32_t want)
{
    coho_sock_hdr_t h = {.magic = COHO_SOCK_MAGIC, .seq = seq, .body_len = body, .arg = want};
    size_t i;

    coho_sock_hdr_encode(&h, buf);
    for (i = 0; i < body; i++)
        buf[COHO_SOCK_HDR_LEN + i] = pattern(seq, i);
    return COHO_SOCK_HDR_LEN + (size_t)body;
}

/* ---- frames across the receive buffer's chunks, and in small pieces ---- */
#define STREAM_FRAMES 3000
#define CHUNK         4096 /* the receive buffer's chunk size */

static void straddle_main(void *arg)
{
    size_t cap = STREAM_FRAMES * (COHO_SOCK_HDR_LEN + 300), len = 0, off, i;
    unsigned char *stream = malloc(cap);
    unsigned straddling_headers = 0, straddling_frames = 0;
    coho_tdp_pool_t *server;
    coho_tdp_stats_t st;
    uint64_t seed = 12345;
    int sp[2];

    (void)arg;
    memset(&sv, 0, sizeof(sv));
    sv.next_seq = 1;
    server = server_open();
    /* Bodies of 0..299 bytes: over ~0.5 MB many headers and bodies cross a 4 KiB boundary of
     * the stream, hence of the receive buffer's chunks while it is never emptied. */
    for (i = 0; i < STREAM_FRAMES; i++) {
        uint32_t body;

        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        body = (uint32_t)(seed >> 33) % 300;
        if (len / CHUNK != (len + COHO_SOCK_HDR_LEN - 1) / CHUNK)
            straddling_headers++;
        if (len / CHUNK != (len + COHO_SOCK_HDR_LEN + body - 1) / CHUNK)
            straddling_frames++;
        len += put_req(stream + len, i + 1, body, 0);
    }
    CO_CHECK(straddling_headers > 10);
    CO_CHECK(straddling_frames > 100);
    CO_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
    CO_CHECK_NE(coho_tdp_attach(server, sp[0]), 0);
    /* The first half in pieces of 1..61 bytes (partial headers, each dispatched as far as it
     * goes), the rest in one write. */
    for (off = 0; off < len / 2;) {
        size_t n = 1 + (off * 7) % 61;

        if (n > len / 2 - off)
            n = len / 2 - off;
        CO_CHECK_EQ(send(sp[1], stream + off, n, 0), (ssize_t)n);
        off += n;
        if (off % 5 == 0)
            coho_yield(); /* let the receive coroutine see some pieces alone */
    }
    CO_CHECK_EQ(sendn(sp[1], stream + off, len - off, 0), (ssize_t)(len - off));
    for (i = 0; i < 5000 && sv.frames + sv.bad < STREAM_FRAMES; i++)
        coho_sleep_ms(2);
    CO_CHECK_EQ(sv.frames, STREAM_FRAMES);
    CO_CHECK_EQ(sv.bad, 0);
    CO_CHECK_EQ(coho_tdp_get_stats(server, &st), 0);
    CO_CHECK_EQ(st.protocol_errors, 0);
    close(sp[1]);
    CO_CHECK_EQ(coho_tdp_close(server), 0);
    free(stream);
}

static void frames_straddling_receive_chunks_or_in_small_pieces_arrive_whole(void **state)
{
    (void)state;
    co_run(straddle_main, NULL);
}

/* ---- request records reused after on_req did things to their frame buffers ---- */
#define REUSE_FRAMES 400

static void reuse_main(void *arg)
{
    static const uint32_t bodies[] = {0, 5, 40, 4000, 5000, 7, 64, 100, 3000, 20000, 1, 33};
    unsigned char *buf = malloc(COHO_SOCK_HDR_LEN + 20000);
    coho_tdp_pool_t *server;
    unsigned i;
    int sp[2];

    (void)arg;
    memset(&sv, 0, sizeof(sv));
    sv.next_seq = 1;
    sv.mangle = true;
    server = server_open();
    CO_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
    CO_CHECK_NE(coho_tdp_attach(server, sp[0]), 0);
    /* One frame at a time, each freed before the next arrives: every frame after the first
     * goes to a kept record, whose buffer the previous on_req destroyed, grew, consumed or
     * left alone (seq % 4), and whose size class may be too small for the next frame. */
    for (i = 0; i < REUSE_FRAMES; i++) {
        size_t n = put_req(buf, i + 1, bodies[i % (sizeof(bodies) / sizeof(bodies[0]))], 0);
        unsigned waited;

        CO_CHECK_EQ(sendn(sp[1], buf, n, 0), (ssize_t)n);
        for (waited = 0; waited < 5000 && sv.frames + sv.bad < i + 1; waited++)
            coho_sleep_ms(1);
    }
    CO_CHECK_EQ(sv.frames, REUSE_FRAMES);
    CO_CHECK_EQ(sv.bad, 0);
    close(sp[1]);
    CO_CHECK_EQ(coho_tdp_close(server), 0);
    free(buf);
}

static void reused_request_records_carry_the_next_frame_whatever_on_req_did(void **state)
{
    (void)state;
    co_run(reuse_main, NULL);
}

/* ---- the waiter's buffer ---- */

/* Sends request `seq` asking for `want` body bytes and waits for the response into `resp`. */
static int call(coho_tdp_pool_t *client, uint64_t *seq, uint32_t want, coho_cbuf_t *resp)
{
    unsigned char hdr[COHO_SOCK_HDR_LEN];
    uint64_t id = coho_tdp_req_id(client), conn = coho_tdp_pick(client, 2000);

    CO_CHECK_NE(id, 0);
    CO_CHECK_NE(conn, 0);
    *seq = id;
    put_req(hdr, id, 0, want);
    CO_CHECK_EQ(coho_tdp_send(client, conn, id, hdr, sizeof(hdr)), 0);
    return coho_tdp_wait_resp(client, id, 5000, resp);
}

/* The response in `resp`, read from the cursor: length, header, body pattern. */
static void check_resp(coho_cbuf_t *resp, uint64_t seq, uint32_t want)
{
    unsigned char hdr[COHO_SOCK_HDR_LEN], *body = malloc(want + 1u);
    coho_sock_hdr_t h;
    size_t i;

    CO_CHECK_EQ(coho_cbuf_len(resp), COHO_SOCK_HDR_LEN + want);
    CO_CHECK_EQ(coho_cbuf_read(resp, hdr, sizeof(hdr)), (ssize_t)sizeof(hdr));
    CO_CHECK_EQ(coho_sock_hdr_decode(hdr, &h), 0);
    CO_CHECK_EQ(h.seq, seq);
    CO_CHECK_EQ(h.body_len, want);
    CO_CHECK_EQ(coho_cbuf_read(resp, body, want), (ssize_t)want);
    for (i = 0; i < want; i++)
        if (!CO_CHECK_EQ(body[i], pattern(seq, i)))
            break;
    free(body);
}

static void out_main(void *arg)
{
    static const uint32_t wants[] = {40, 9000, 0, 100, 70000, 16};
    static unsigned char junk[5000];
    coho_tdp_pool_t *server, *client;
    coho_cbuf_opts_t small;
    coho_cbuf_t resp;
    uint64_t seq;
    size_t i;

    (void)arg;
    memset(&sv, 0, sizeof(sv));
    sv.answer = true;
    server = server_open();
    client = client_open(server);
    /* A buffer holding data, its cursor in the middle: each response replaces all of it and is
     * read from its first byte. */
    coho_cbuf_init(&resp, NULL);
    for (i = 0; i < sizeof(wants) / sizeof(wants[0]); i++) {
        CO_CHECK_EQ(coho_cbuf_append(&resp, junk, sizeof(junk) - i * 300), 0);
        CO_CHECK(coho_cbuf_seek(&resp, 100, SEEK_SET) == 100);
        CO_CHECK_EQ(call(client, &seq, wants[i], &resp), 0);
        CO_CHECK_EQ(coho_cbuf_tell(&resp), 0);
        check_resp(&resp, seq, wants[i]);
        CO_CHECK(coho_cbuf_seek(&resp, 7, SEEK_SET) == 7); /* left mid-way for the next call */
    }
    coho_cbuf_destroy(&resp);
    /* A buffer whose max_len is below the response: it arrives whole in a buffer made for it,
     * which then grows like any other. */
    coho_cbuf_opts_init(&small);
    small.max_len = 64;
    coho_cbuf_init(&resp, &small);
    CO_CHECK_EQ(coho_cbuf_append(&resp, junk, 50), 0);
    CO_CHECK_EQ(call(client, &seq, 200, &resp), 0);
    CO_CHECK_EQ(coho_cbuf_tell(&resp), 0);
    check_resp(&resp, seq, 200);
    CO_CHECK_EQ(coho_cbuf_append(&resp, junk, sizeof(junk)), 0);
    CO_CHECK_EQ(call(client, &seq, 30, &resp), 0);
    check_resp(&resp, seq, 30);
    coho_cbuf_destroy(&resp);
    /* A new, empty buffer: a small response comes in chunk memory sized for it, not in a
     * default 4 KiB chunk (callers that make a buffer per call, as the C++ wait_resp does). */
    coho_cbuf_init(&resp, NULL);
    CO_CHECK_EQ(call(client, &seq, 16, &resp), 0);
    check_resp(&resp, seq, 16);
    CO_CHECK(coho_cbuf_capacity(&resp) < COHO_CBUF_CHUNK_SIZE_DEFAULT);
    coho_cbuf_destroy(&resp);
    CO_CHECK_EQ(sv.bad, 0);
    CO_CHECK_EQ(coho_tdp_close(client), 0);
    CO_CHECK_EQ(coho_tdp_close(server), 0);
}

static void response_replaces_the_wait_buffer_contents_or_comes_in_its_own(void **state)
{
    (void)state;
    co_run(out_main, NULL);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(frames_straddling_receive_chunks_or_in_small_pieces_arrive_whole),
        cmocka_unit_test(reused_request_records_carry_the_next_frame_whatever_on_req_did),
        cmocka_unit_test(response_replaces_the_wait_buffer_contents_or_comes_in_its_own),
    };

    return coho_test_main("socket_ext_frames", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
