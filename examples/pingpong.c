/* SPDX-License-Identifier: MIT */
/* The README's example: two coroutines on one thread talk over a socketpair with plain
 * blocking recv/send; while one is parked in recv, the other runs. */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <coho.h>

static int fds[2];

static void server(void *arg)
{
    (void)arg;
    char buf[64];
    ssize_t n;
    while ((n = recv(fds[1], buf, sizeof buf, 0)) > 0) /* parks this coroutine only */
        send(fds[1], buf, (size_t)n, 0);
    close(fds[1]);
}

static void client(void *arg)
{
    (void)arg;
    char buf[64];
    for (int i = 0; i < 3; i++) {
        coho_sleep_ms(10);
        send(fds[0], "ping", 4, 0);
        ssize_t n = recv(fds[0], buf, sizeof buf, 0);
        printf("coroutine %llu got %.*s\n", (unsigned long long)coho_self(), (int)n, buf);
    }
    close(fds[0]); /* the server's recv returns 0 */
}

int main(void)
{
    coho_sched_t *s = coho_sched_create(NULL);
    if (!s || socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) {
        perror("pingpong");
        return 1;
    }
    coho_spawn(s, server, NULL);
    coho_spawn(s, client, NULL);
    coho_sched_run(s); /* returns when both coroutines have ended */
    coho_sched_destroy(s);
    return 0;
}
