/* SPDX-License-Identifier: MIT */
/* TLS over OpenSSL with memory BIOs: the connection's own coroutines move the ciphertext with
 * the hooked calls (they park there), and SSL_accept, SSL_read and SSL_write only ever work on
 * memory, so they never park halfway: the handler (reading) and the writer (sending) can never
 * be inside one SSL object at once. */
#define _GNU_SOURCE
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/internal.h"

#define TLS_READ_CHUNK 16384

int coho__tls_ctx_make(coho_server_t *srv)
{
    SSL_CTX *ctx;

    if (srv->o.tls_cert_file == NULL && srv->o.tls_key_file == NULL)
        return 0;
    if (srv->o.tls_cert_file == NULL || srv->o.tls_key_file == NULL)
        return -EINVAL;
    ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL)
        return -ENOMEM;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (SSL_CTX_use_certificate_chain_file(ctx, srv->o.tls_cert_file) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, srv->o.tls_key_file, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        ERR_clear_error();
        SSL_CTX_free(ctx);
        return -EINVAL;
    }
    srv->tls_ctx = ctx;
    return 0;
}

void coho__tls_ctx_free(coho_server_t *srv)
{
    SSL_CTX_free(srv->tls_ctx);
    srv->tls_ctx = NULL;
}

void coho__tls_free(struct coho_conn *c)
{
    SSL_free(c->ssl); /* frees both memory BIOs */
    c->ssl = NULL;
}

/* Sends what SSL left in the write BIO (handshake records, alerts): parks until it went.
 * Handler coroutine only, before the writer exists (the handshake) or for alerts. */
static int tls_flush_direct(struct coho_conn *c)
{
    BIO *w = SSL_get_wbio(c->ssl);
    char *p;
    long n = BIO_get_mem_data(w, &p);

    if (n <= 0)
        return 0;
    if (sendn(c->fd, p, (size_t)n, MSG_NOSIGNAL) != (ssize_t)n)
        return -(errno ? errno : EPIPE);
    COHO__STAT_ADD(c->sh->srv, bytes_out, n);
    (void)BIO_reset(w);
    return 0;
}

/* Reads ciphertext from the socket into the read BIO: > 0, 0 at EOF, -errno. Parks. */
static ssize_t tls_pull(struct coho_conn *c)
{
    char buf[TLS_READ_CHUNK];
    ssize_t r;

    do
        r = recv(c->fd, buf, sizeof(buf), 0);
    while (r < 0 && errno == EINTR);
    if (r > 0) {
        COHO__STAT_ADD(c->sh->srv, bytes_in, r);
        BIO_write(SSL_get_rbio(c->ssl), buf, (int)r);
    }
    return r < 0 ? -errno : r;
}

int coho__tls_accept(struct coho_conn *c)
{
    c->ssl = SSL_new(c->sh->srv->tls_ctx);
    if (c->ssl == NULL)
        return -ENOMEM;
    SSL_set_bio(c->ssl, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
    SSL_set_accept_state(c->ssl);
    for (;;) {
        int rc = SSL_do_handshake(c->ssl), e;
        ssize_t r;

        if (tls_flush_direct(c) < 0)
            return -EPIPE;
        if (rc == 1)
            return 0;
        e = SSL_get_error(c->ssl, rc);
        if (e != SSL_ERROR_WANT_READ) {
            ERR_clear_error();
            COHO__STAT_ADD(c->sh->srv, protocol_errors, 1);
            return -EPROTO;
        }
        if (c->close_err != 0)
            return -c->close_err;
        r = tls_pull(c);
        if (r == 0)
            return -ECONNRESET;
        if (r < 0)
            return (int)r;
    }
}

/* coho__conn_fill for TLS: plaintext into c->rbuf. */
ssize_t coho__tls_fill(struct coho_conn *c)
{
    for (;;) {
        struct iovec iov[1];
        int n = coho_cbuf_reserve_iov(&c->rbuf, 1, iov, 1), got, e; /* to the chunk's end */
        ssize_t r;

        if (n < 0)
            return -errno;
        got = SSL_read(c->ssl, iov[0].iov_base, (int)iov[0].iov_len);
        if (got > 0) {
            coho_cbuf_commit(&c->rbuf, (size_t)got);
            if (BIO_ctrl_pending(SSL_get_wbio(c->ssl)) > 0)
                coho__conn_kick_writer(c); /* records SSL_read produced (key updates) */
            return got;
        }
        e = SSL_get_error(c->ssl, got);
        if (e == SSL_ERROR_ZERO_RETURN) {
            c->rd_eof = true; /* close_notify */
            return 0;
        }
        if (e != SSL_ERROR_WANT_READ) {
            ERR_clear_error();
            c->rd_eof = true;
            if (c->close_err == 0)
                c->close_err = EPROTO;
            COHO__STAT_ADD(c->sh->srv, protocol_errors, 1);
            return -EPROTO;
        }
        if (c->close_err != 0)
            return -c->close_err;
        r = tls_pull(c);
        if (r == -ECANCELED)
            return r;
        if (r <= 0) {
            c->rd_eof = true;
            if (r < 0 && c->close_err == 0)
                c->close_err = (int)-r;
            return r;
        }
    }
}

/* The writer's step for TLS: encrypts queued frames into the write BIO (memory: never parks)
 * and returns the plaintext bytes taken; the writer then sends the BIO's bytes. */
size_t coho__tls_seal(struct coho_conn *c, const struct iovec *iov, int n)
{
    size_t took = 0;

    for (int i = 0; i < n; i++) {
        int w = SSL_write(c->ssl, iov[i].iov_base, (int)iov[i].iov_len);
        if (w <= 0) {
            ERR_clear_error();
            break;
        }
        took += (size_t)w;
        if ((size_t)w < iov[i].iov_len)
            break;
    }
    return took;
}

/* Takes the ciphertext waiting in the write BIO into a buffer of its own (the caller frees
 * it), so that SSL calls made while it is being sent cannot move it. NULL when none. */
char *coho__tls_take(struct coho_conn *c, size_t *len)
{
    BIO *w = SSL_get_wbio(c->ssl);
    size_t n = BIO_ctrl_pending(w);
    char *buf;

    *len = 0;
    if (n == 0 || (buf = malloc(n)) == NULL)
        return NULL;
    if (BIO_read(w, buf, (int)n) != (int)n) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

bool coho__tls_has_pending(struct coho_conn *c)
{
    return c->ssl != NULL && BIO_ctrl_pending(SSL_get_wbio(c->ssl)) > 0;
}

void coho__tls_shutdown(struct coho_conn *c)
{
    if (c->ssl != NULL && SSL_is_init_finished(c->ssl))
        SSL_shutdown(c->ssl); /* close_notify into the write BIO; the writer sends it */
}
