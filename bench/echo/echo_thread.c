/* SPDX-License-Identifier: MIT */
/* Baseline echo server: one thread per connection, blocking recv and send. Plain libc and
 * pthreads, no coho. */
#define _GNU_SOURCE
#include <pthread.h>

#include "echo_common.h"

static void *conn_main(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[ECHO_BUF_SIZE];

    for (;;) {
        ssize_t r = recv(fd, buf, sizeof(buf), 0), off = 0;

        if (r <= 0)
            break;
        while (off < r) {
            ssize_t n = send(fd, buf + off, (size_t)(r - off), MSG_NOSIGNAL);

            if (n < 0)
                goto out;
            off += n;
        }
    }
out:
    close(fd);
    return NULL;
}

int main(int argc, char **argv)
{
    int port = echo_port_arg(argc, argv);
    int lfd = echo_listen("echo_thread", port, 0);
    pthread_attr_t attr;

    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 128 * 1024); /* coho's default coroutine stack */
    for (;;) {
        pthread_t t;
        int fd = accept(lfd, NULL, NULL);

        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            echo_die("echo_thread", "accept");
        }
        echo_nodelay(fd);
        if (pthread_create(&t, &attr, conn_main, (void *)(intptr_t)fd) != 0) {
            fprintf(stderr, "echo_thread: pthread_create failed\n");
            close(fd);
        }
    }
}
