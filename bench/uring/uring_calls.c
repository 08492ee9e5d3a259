/* SPDX-License-Identifier: MIT */
/* The hooked accept/connect and one-fd poll, as blocking-style code makes them, for comparing
 * the backends and COHO_URING_OPS policies (mio_driver/README.md, "Ring operations"). Run it
 * under `strace -c -f` or `perf stat -e raw_syscalls:sys_enter` for system calls per operation,
 * or under callgrind for instructions.
 *
 *   uring_calls storm N C   N connections to a loopback listener from C connecting coroutines;
 *                           one coroutine accepts and closes each
 *   uring_calls poll N      N round trips over a socketpair, each side waiting in
 *                           poll(fd, POLLIN) before its recv (hiredis, libmariadb, curl style)
 *
 * Prints the wall time, operations per second and the scheduler's ring_ops. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <coho.h>

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static struct sockaddr_in g_addr;
static int g_listener;
static long g_n, g_per;

static void acceptor(void *arg)
{
    (void)arg;
    for (long i = 0; i < g_n; i++) {
        int a = accept4(g_listener, NULL, NULL, SOCK_CLOEXEC);

        if (a < 0)
            die("accept4");
        close(a);
    }
    close(g_listener);
}

static void connector(void *arg)
{
    (void)arg;
    for (long i = 0; i < g_per; i++) {
        int s = socket(AF_INET, SOCK_STREAM, 0);

        if (s < 0)
            die("socket");
        if (connect(s, (struct sockaddr *)&g_addr, sizeof(g_addr)) != 0)
            die("connect");
        close(s);
    }
}

static void storm(void *arg)
{
    long c = *(long *)arg;
    socklen_t len = sizeof(g_addr);
    int one = 1;

    g_listener = socket(AF_INET, SOCK_STREAM, 0);
    memset(&g_addr, 0, sizeof(g_addr));
    g_addr.sin_family = AF_INET;
    g_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(g_listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(g_listener, (struct sockaddr *)&g_addr, sizeof(g_addr)) != 0 ||
        listen(g_listener, 4096) != 0 ||
        getsockname(g_listener, (struct sockaddr *)&g_addr, &len) != 0)
        die("listen");
    coho_spawn(coho_sched_current(), acceptor, NULL);
    for (long i = 0; i < c; i++)
        coho_spawn(coho_sched_current(), connector, NULL);
}

static int g_pair[2];

static void ponger(void *arg)
{
    char b[64];
    struct pollfd p = {.fd = g_pair[1], .events = POLLIN};

    (void)arg;
    for (long i = 0; i < g_n; i++) {
        if (poll(&p, 1, -1) != 1 || recv(g_pair[1], b, sizeof(b), 0) != 16 ||
            send(g_pair[1], b, 16, 0) != 16)
            die("ponger");
    }
}

static void pinger(void *arg)
{
    char b[64] = "0123456789abcdef";
    struct pollfd p = {.events = POLLIN};

    (void)arg;
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, g_pair) != 0)
        die("socketpair");
    p.fd = g_pair[0];
    coho_spawn(coho_sched_current(), ponger, NULL);
    for (long i = 0; i < g_n; i++) {
        if (send(g_pair[0], b, 16, 0) != 16 || poll(&p, 1, -1) != 1 ||
            recv(g_pair[0], b, sizeof(b), 0) != 16)
            die("pinger");
    }
}

int main(int argc, char **argv)
{
    coho_sched_stats_t st;
    coho_sched_t *s;
    long c = 1;
    double t0, dt;

    if (argc < 3 || (strcmp(argv[1], "storm") != 0 && strcmp(argv[1], "poll") != 0)) {
        fprintf(stderr, "usage: %s storm N C | poll N\n", argv[0]);
        return 2;
    }
    g_n = atol(argv[2]);
    if (strcmp(argv[1], "storm") == 0) {
        c = argc > 3 ? atol(argv[3]) : 50;
        if (g_n <= 0 || c <= 0 || g_n % c != 0) {
            fprintf(stderr, "N must be a positive multiple of C\n");
            return 2;
        }
        g_per = g_n / c;
    }
    s = coho_sched_create(NULL);
    if (s == NULL)
        die("coho_sched_create");
    t0 = now_s();
    coho_spawn(s, strcmp(argv[1], "storm") == 0 ? storm : pinger, &c);
    if (coho_sched_run(s) != 0)
        die("coho_sched_run");
    dt = now_s() - t0;
    coho_sched_get_stats(s, &st);
    printf("%s backend=%s n=%ld %.3f s %.0f ops/s ring_ops=%llu\n", argv[1],
           coho_sched_backend(s) == COHO_BACKEND_IO_URING ? "io_uring" : "epoll", g_n, dt,
           (double)g_n / dt, (unsigned long long)st.ring_ops);
    coho_sched_destroy(s);
    return 0;
}
