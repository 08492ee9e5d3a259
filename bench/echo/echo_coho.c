/* SPDX-License-Identifier: MIT */
/* coho echo server: plain blocking accept, recv and send, one coroutine per connection, all on
 * one thread. The libc calls are coho's hooks, so a call that would block parks the coroutine. */
#define _GNU_SOURCE
#include <coho.h>

#include "echo_common.h"

static coho_sched_t *sched;

static void conn_main(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[ECHO_BUF_SIZE];

    for (;;) {
        ssize_t r = recv(fd, buf, sizeof(buf), 0);

        /* A blocking send on a stream socket returns only when every byte went. */
        if (r <= 0 || send(fd, buf, (size_t)r, MSG_NOSIGNAL) != r)
            break;
    }
    close(fd);
}

static void acceptor_main(void *arg)
{
    int lfd = echo_listen("echo_coho", (int)(intptr_t)arg, 0);
    coho_spawn_opts_t o;

    coho_spawn_opts_init(&o);
    o.detached = true;
    for (;;) {
        int fd = accept(lfd, NULL, NULL);

        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            echo_die("echo_coho", "accept");
        }
        echo_nodelay(fd);
        if (coho_spawn_ex(sched, conn_main, (void *)(intptr_t)fd, &o) == 0) {
            fprintf(stderr, "echo_coho: spawn failed: %s\n", strerror(errno));
            close(fd);
        }
    }
}

int main(int argc, char **argv)
{
    int port = echo_port_arg(argc, argv);
    coho_sched_opts_t opts;

    coho_sched_opts_init(&opts);
    /* Up to 1000 connections arrive at once and each keeps its stack: keep them all resident
     * instead of returning surplus stacks to the kernel between runs. */
    opts.idle_stacks_max = 2048;
    sched = coho_sched_create(&opts);
    if (sched == NULL)
        echo_die("echo_coho", "coho_sched_create");
    if (coho_spawn(sched, acceptor_main, (void *)(intptr_t)port) == 0)
        echo_die("echo_coho", "coho_spawn");
    if (coho_sched_run(sched) != 0)
        echo_die("echo_coho", "coho_sched_run");
    coho_sched_destroy(sched);
    return 0;
}
