/* SPDX-License-Identifier: MIT */
/* Echo load client for net_srv's WebSocket and TLS modes (tools/bench-net.sh "wstls"): written
 * with coho itself, one coroutine per connection doing blocking calls (OpenSSL's SSL_connect,
 * SSL_write and SSL_read over hooked sockets park the coroutine), so TLS needs no hand-written
 * state machine. Each connection does ping-pong rounds of one S-byte message:
 *
 *   plain:     a 4-byte little-endian length and the payload (net_srv's default framing)
 *   WebSocket: the upgrade, then one masked binary frame (RFC 6455: clients must mask); the
 *              server answers with one unmasked binary frame
 *
 * usage: net_tlsload -p port [-c conns] [-s bytes] [-d secs] [-w warm_secs] [-t] [-W]
 *   -t: TLS (the certificate is not checked: a benchmark, not a client to copy)
 *   -W: WebSocket
 * Prints one line: mode=... conns= rps= p50_us= p99_us=. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <coho.h>

#include "net_common.h"

#define LAT_MAX_US 4000000u

static int port, nconn = 10, use_tls, use_ws;
static size_t size = 32;
static double secs = 3.0, warm = 0.5;
static SSL_CTX *ctx;
static coho_sched_t *sched;
static volatile int measuring, stopping;
static uint64_t replies, failures, connected;
static uint32_t *lat_hist;
static uint64_t lat_count;

struct client {
    int fd;
    SSL *ssl;
};

static int io_write(struct client *c, const void *buf, size_t len)
{
    if (c->ssl != NULL)
        return SSL_write(c->ssl, buf, (int)len) == (int)len ? 0 : -1;
    /* A blocking send in a coroutine returns when every byte went (the hooks' semantics). */
    return send(c->fd, buf, len, MSG_NOSIGNAL) == (ssize_t)len ? 0 : -1;
}

static int io_read(struct client *c, void *buf, size_t len)
{
    size_t got = 0;

    while (got < len) {
        int n = c->ssl != NULL ? SSL_read(c->ssl, (char *)buf + got, (int)(len - got))
                               : (int)recv(c->fd, (char *)buf + got, len - got, 0);
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    return 0;
}

static int ws_upgrade(struct client *c)
{
    static const char req[] =
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n";
    char resp[1024];
    size_t n = 0;

    if (io_write(c, req, sizeof(req) - 1) != 0)
        return -1;
    /* One byte at a time up to the blank line: the answer's frames must stay unread. */
    while (n < sizeof(resp) - 1) {
        if (io_read(c, resp + n, 1) != 0)
            return -1;
        n++;
        if (n >= 4 && memcmp(resp + n - 4, "\r\n\r\n", 4) == 0)
            break;
    }
    resp[n] = '\0';
    return strncmp(resp, "HTTP/1.1 101", 12) == 0 ? 0 : -1;
}

static void client_main(void *arg)
{
    struct client c = {.fd = -1};
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    unsigned char req[8 + 65536], resp[8 + 65536];
    size_t req_len, resp_len;
    int one = 1;

    (void)arg;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c.fd < 0 || connect(c.fd, (struct sockaddr *)&a, sizeof(a)) != 0)
        goto fail;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (use_tls) {
        c.ssl = SSL_new(ctx);
        if (c.ssl == NULL || SSL_set_fd(c.ssl, c.fd) != 1 || SSL_connect(c.ssl) != 1)
            goto fail;
    }
    if (use_ws && ws_upgrade(&c) != 0)
        goto fail;
    if (use_ws) {
        /* FIN + binary, MASK + 7-bit length (size < 126), a zero masking key: the payload
         * goes as is. */
        req[0] = 0x82;
        req[1] = (unsigned char)(0x80 | size);
        memset(req + 2, 0, 4);
        memset(req + 6, 'w', size);
        req_len = 6 + size;
        resp_len = 2 + size;
    } else {
        nb_put_u32(req, (uint32_t)size);
        memset(req + 4, 'e', size);
        req_len = 4 + size;
        resp_len = 4 + size;
    }
    connected++;
    while (!stopping) {
        uint64_t t0 = nb_now_ns(), us;
        if (io_write(&c, req, req_len) != 0 || io_read(&c, resp, resp_len) != 0)
            goto fail;
        if (measuring && !stopping) {
            replies++;
            us = (nb_now_ns() - t0) / 1000u;
            lat_hist[us < LAT_MAX_US ? us : LAT_MAX_US]++;
            lat_count++;
        }
    }
    goto out;
fail:
    failures++;
    if (!stopping)
        ERR_print_errors_fp(stderr);
out:
    if (c.ssl != NULL)
        SSL_free(c.ssl);
    if (c.fd >= 0)
        close(c.fd);
}

static double lat_q_us(double q)
{
    uint64_t need = (uint64_t)(q * (double)lat_count + 0.5), seen = 0;

    if (need == 0)
        need = 1;
    for (uint32_t i = 0; i <= LAT_MAX_US; i++) {
        seen += lat_hist[i];
        if (seen >= need)
            return (double)i + 0.5;
    }
    return (double)LAT_MAX_US;
}

static void timer_main(void *arg)
{
    uint64_t t0, t1;

    (void)arg;
    coho_sleep_ms((uint64_t)(warm * 1000));
    measuring = 1;
    t0 = nb_now_ns();
    coho_sleep_ms((uint64_t)(secs * 1000));
    t1 = nb_now_ns();
    stopping = 1;
    printf("mode=%s%s conns=%d size=%zu connected=%llu failures=%llu replies=%llu secs=%.2f "
           "rps=%.0f p50_us=%.1f p99_us=%.1f\n",
           use_tls ? "tls" : "tcp", use_ws ? "+ws" : "", nconn, size, (unsigned long long)connected,
           (unsigned long long)failures, (unsigned long long)replies, (double)(t1 - t0) / 1e9,
           (double)replies / ((double)(t1 - t0) / 1e9), lat_q_us(0.5), lat_q_us(0.99));
    fflush(stdout);
}

int main(int argc, char **argv)
{
    coho_sched_opts_t so;
    coho_spawn_opts_t o;
    int opt;

    while ((opt = getopt(argc, argv, "p:c:s:d:w:tW")) != -1) {
        switch (opt) {
        case 'p':
            port = atoi(optarg);
            break;
        case 'c':
            nconn = atoi(optarg);
            break;
        case 's':
            size = (size_t)strtoul(optarg, NULL, 0);
            break;
        case 'd':
            secs = atof(optarg);
            break;
        case 'w':
            warm = atof(optarg);
            break;
        case 't':
            use_tls = 1;
            break;
        case 'W':
            use_ws = 1;
            break;
        default:
            fprintf(stderr, "usage: net_tlsload -p port [-c conns] [-s bytes] [-d secs] "
                            "[-w warm_secs] [-t] [-W]\n");
            return 2;
        }
    }
    if (port <= 0 || port > 65535 || nconn <= 0 || size == 0 || size > (use_ws ? 125u : 65536u)) {
        fprintf(stderr, "net_tlsload: bad arguments (WebSocket: 1..125 bytes)\n");
        return 2;
    }
    lat_hist = calloc(LAT_MAX_US + 1, sizeof(*lat_hist));
    if (lat_hist == NULL)
        return 1;
    if (use_tls) {
        ctx = SSL_CTX_new(TLS_client_method());
        if (ctx == NULL) {
            ERR_print_errors_fp(stderr);
            return 1;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    coho_sched_opts_init(&so);
    sched = coho_sched_create(&so);
    if (sched == NULL) {
        fprintf(stderr, "net_tlsload: coho_sched_create: %s\n", strerror(errno));
        return 1;
    }
    coho_spawn_opts_init(&o);
    o.detached = true;
    o.stack_size = 256 * 1024; /* two 64 KiB buffers and OpenSSL's frames */
    for (int i = 0; i < nconn; i++)
        if (coho_spawn_ex(sched, client_main, NULL, &o) == 0) {
            fprintf(stderr, "net_tlsload: coho_spawn: %s\n", strerror(errno));
            return 1;
        }
    if (coho_spawn_ex(sched, timer_main, NULL, &o) == 0 || coho_sched_run(sched) != 0) {
        fprintf(stderr, "net_tlsload: %s\n", strerror(errno));
        return 1;
    }
    coho_sched_destroy(sched);
    if (ctx != NULL)
        SSL_CTX_free(ctx);
    free(lat_hist);
    return failures > 0 ? 1 : 0;
}
