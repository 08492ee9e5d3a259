/* SPDX-License-Identifier: MIT */
/* A libcoho_net program built against the installed package: a server on loopback echoes one
 * length-prefixed frame to a client on another thread, then stops; and socket_ext's sock header
 * (part of libcoho_net) round-trips. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <coho.h>
#include <coho/net.h>

static void echo(coho_conn_t *c, void *user)
{
    coho_cbuf_t f;
    ssize_t n;

    (void)user;
    coho_cbuf_init(&f, NULL);
    while ((n = coho_conn_read_frame(c, &f)) > 0)
        coho_conn_send(c, coho_cbuf_linearize(&f, (size_t)n), (size_t)n);
    coho_cbuf_destroy(&f);
}

int main(void)
{
    coho_server_t *s = coho_server_start("127.0.0.1:0", NULL, echo, NULL);
    char addr[64], back[9];
    coho_sock_hdr_t h = {.magic = COHO_SOCK_MAGIC, .seq = 42, .body_len = 7}, h2;
    unsigned char raw[COHO_SOCK_HDR_LEN];
    int fd;

    coho_sock_hdr_encode(&h, raw);
    if (coho_sock_hdr_decode(raw, &h2) != 0 || h2.seq != 42 || h2.body_len != 7) {
        fprintf(stderr, "net_consumer: the sock header did not round-trip\n");
        return 1;
    }
    if (s == NULL) {
        perror("net_consumer: start");
        return 1;
    }
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", coho_server_port(s));
    fd = coho_dial(addr, 1000);
    if (fd < 0 || write(fd, "\5\0\0\0hello", 9) != 9 || recvn(fd, back, 9, 0) != 9 ||
        memcmp(back, "\5\0\0\0hello", 9) != 0) {
        perror("net_consumer: echo");
        return 1;
    }
    close(fd);
    if (coho_server_stop(s, 1000) != 0) {
        perror("net_consumer: stop");
        return 1;
    }
    printf("coho-net echo ok\n");
    return 0;
}
