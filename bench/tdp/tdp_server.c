/* SPDX-License-Identifier: MIT */
/* The coho servers of the socket_ext benchmark: `--mode tdp` is a socket_ext listen pool that
 * answers each request at once from its on_req callback (with --spawn: from a coroutine spawned
 * per request); `--mode co` runs one coroutine per accepted connection, a blocking-style loop of
 * recv and send (hooked). Prints "port N" once listening, then serves until killed. */
#define _GNU_SOURCE /* accept4, SOCK_CLOEXEC */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <coho.h>
#include <coho/net.h>

#include "tdp_common.h"

static coho_sched_t *sched;
static struct tdp_opts opts;
static unsigned char resp_body[TDP_BODY_MAX];

/* ---- socket_ext listen pool ---- */

static void answer(void *arg)
{
    coho_tdp_req_t *rq = arg;
    unsigned char hdr[TDP_HDR_LEN];
    struct tdp_hdr h;
    struct iovec iov[2];

    if (coho_cbuf_read(&rq->frame, hdr, sizeof(hdr)) == (ssize_t)sizeof(hdr) &&
        tdp_hdr_get(hdr, &h) == 0) {
        h.type |= TDP_RESP_BIT;
        h.body_len = h.arg;
        h.arg = 0;
        tdp_hdr_put(hdr, &h);
        iov[0].iov_base = hdr;
        iov[0].iov_len = sizeof(hdr);
        iov[1].iov_base = resp_body;
        iov[1].iov_len = h.body_len;
        coho_tdp_sendv(rq->pool, rq->conn_id, 0, iov, h.body_len > 0 ? 2 : 1);
    }
    coho_tdp_req_free(rq);
}

static void on_req(coho_tdp_req_t *rq, void *user)
{
    static coho_spawn_opts_t so = {.stack_size = 64 * 1024, .detached = true};

    (void)user;
    if (!opts.spawn || coho_spawn_ex(sched, answer, rq, &so) == 0)
        answer(rq);
}

static void tdp_main(void)
{
    static size_t max_body = TDP_BODY_MAX;
    static coho_tdp_framer_t framer;
    struct sockaddr_in addr = {.sin_family = AF_INET};
    coho_tdp_opts_t o;
    coho_tdp_pool_t *p;

    coho_sock_framer_init(&framer, &max_body);
    coho_tdp_opts_init(&o);
    o.framers[0] = &framer;
    o.framer_count = 1;
    o.on_req = on_req;
    o.backlog = 4096;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons((uint16_t)opts.port);
    p = coho_tdp_listen((struct sockaddr *)&addr, sizeof(addr), &o);
    if (p == NULL) {
        perror("coho_tdp_listen");
        exit(1);
    }
    printf("port %u\n", coho_tdp_local_port(p));
    fflush(stdout);
    for (;;)
        coho_sleep_ms(3600 * 1000);
}

/* ---- one coroutine per connection ---- */

static void co_conn(void *arg)
{
    int fd = (int)(intptr_t)arg, one = 1;
    unsigned char in[16384], *out = malloc(TDP_FRAME_MAX * 4);
    size_t have = 0, out_cap = TDP_FRAME_MAX * 4;

    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    while (out != NULL) {
        size_t off = 0, out_len = 0;
        ssize_t n = recv(fd, in + have, sizeof(in) - have, 0);

        if (n <= 0)
            break;
        have += (size_t)n;
        /* Answer every whole frame buffered, in one send. */
        while (have - off >= TDP_HDR_LEN) {
            struct tdp_hdr h;

            if (tdp_hdr_get(in + off, &h) != 0 || TDP_HDR_LEN + (size_t)h.body_len > sizeof(in))
                goto out;
            if (have - off < TDP_HDR_LEN + (size_t)h.body_len)
                break;
            if (out_cap - out_len < TDP_HDR_LEN + (size_t)h.arg) {
                if (sendn(fd, out, out_len, 0) != (ssize_t)out_len)
                    goto out;
                out_len = 0;
            }
            out_len += tdp_resp_put(out + out_len, &h);
            off += TDP_HDR_LEN + (size_t)h.body_len;
        }
        if (out_len > 0 && sendn(fd, out, out_len, 0) != (ssize_t)out_len)
            break;
        memmove(in, in + off, have - off);
        have -= off;
    }
out:
    free(out);
    close(fd);
}

static void co_main(void)
{
    struct sockaddr_in addr = {.sin_family = AF_INET};
    socklen_t alen = sizeof(addr);
    coho_spawn_opts_t so;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

    coho_spawn_opts_init(&so);
    so.detached = true;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons((uint16_t)opts.port);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) != 0 ||
        listen(lfd, 4096) != 0 || getsockname(lfd, (struct sockaddr *)&addr, &alen) != 0) {
        perror("co server: listen");
        exit(1);
    }
    printf("port %u\n", ntohs(addr.sin_port));
    fflush(stdout);
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE)
                coho_sleep_ms(10);
            continue;
        }
        if (coho_spawn_ex(sched, co_conn, (void *)(intptr_t)fd, &so) == 0)
            close(fd);
    }
}

static void main_co(void *arg)
{
    (void)arg;
    if (strcmp(opts.mode, "tdp") == 0)
        tdp_main();
    else
        co_main();
}

int main(int argc, char **argv)
{
    coho_sched_opts_t so;

    tdp_opts_parse(argc, argv, &opts);
    if (strcmp(opts.mode, "tdp") != 0 && strcmp(opts.mode, "co") != 0) {
        fprintf(stderr, "tdp_server: --mode tdp|co\n");
        return 2;
    }
    memset(resp_body, 'r', sizeof(resp_body));
    tdp_raise_nofile();
    coho_sched_opts_init(&so);
    so.idle_stacks_max = 4096; /* --spawn: bursts of a coroutine per request reuse warm stacks */
    sched = coho_sched_create(&so);
    if (sched == NULL || coho_spawn(sched, main_co, NULL) == 0) {
        perror("tdp_server");
        return 1;
    }
    coho_sched_run(sched);
    coho_sched_destroy(sched);
    return 0;
}
