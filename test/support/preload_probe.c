/* SPDX-License-Identifier: MIT */
/* An ordinary program that knows nothing of coho, for hook_preload_test: a loopback TCP echo
 * between two threads, pipe and file I/O, poll/select/sleep and name lookups, printing only
 * what is the same from run to run. Run with and without LD_PRELOAD=libcoho_preload.so, its
 * standard output must not change. On standard error it says whether coho was loaded. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int listener;

static uint64_t hash(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t h = 1469598103934665603ULL;

    while (n-- > 0) {
        h ^= *b++;
        h *= 1099511628211ULL;
    }
    return h;
}

static void *echo_server(void *arg)
{
    char buf[4096];
    int c = accept(listener, NULL, NULL);
    ssize_t n;

    (void)arg;
    if (c < 0)
        return NULL;
    while ((n = recv(c, buf, sizeof(buf), 0)) > 0)
        if (send(c, buf, (size_t)n, 0) != n)
            break;
    close(c);
    return NULL;
}

static void echo(void)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    pthread_t t;
    char line[64], back[64];
    int s, i;

    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    listener = socket(AF_INET, SOCK_STREAM, 0);
    if (bind(listener, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(listener, 4) != 0 ||
        getsockname(listener, (struct sockaddr *)&a, &len) != 0) {
        printf("echo: setup failed: %s\n", strerror(errno));
        return;
    }
    pthread_create(&t, NULL, echo_server, NULL);
    s = socket(AF_INET, SOCK_STREAM, 0);
    printf("connect: %d\n", connect(s, (struct sockaddr *)&a, sizeof(a)));
    printf("F_GETFL O_NONBLOCK: %d\n", (fcntl(s, F_GETFL) & O_NONBLOCK) != 0);
    for (i = 0; i < 5; i++) {
        int n = snprintf(line, sizeof(line), "line %d of the echo test", i);
        ssize_t got = 0;

        send(s, line, (size_t)n, 0);
        while (got < n) {
            ssize_t r = recv(s, back + got, sizeof(back) - (size_t)got, 0);
            if (r <= 0)
                break;
            got += r;
        }
        printf("echo: %.*s\n", (int)got, back);
    }
    shutdown(s, SHUT_WR);
    printf("recv after shutdown: %zd\n", recv(s, back, sizeof(back), 0));
    close(s);
    pthread_join(t, NULL);
    close(listener);
}

static void files(void)
{
    char path[] = "/tmp/coho-probe-XXXXXX";
    char data[8192], back[8192];
    int fd = mkstemp(path);
    size_t i;

    if (fd < 0) {
        printf("file: mkstemp failed\n");
        return;
    }
    for (i = 0; i < sizeof(data); i++)
        data[i] = (char)(i * 31);
    printf("file write: %zd\n", write(fd, data, sizeof(data)));
    printf("file lseek: %ld\n", (long)lseek(fd, 0, SEEK_SET));
    printf("file read: %zd\n", read(fd, back, sizeof(back)));
    printf("file same bytes: %d\n", memcmp(data, back, sizeof(data)) == 0);
    printf("file read at eof: %zd\n", read(fd, back, sizeof(back)));
    close(fd);
    FILE *f = fopen(path, "r");
    printf("stdio fread: %zu hash %llx\n", fread(back, 1, sizeof(back), f),
           (unsigned long long)hash(back, sizeof(back)));
    fclose(f);
    unlink(path);
}

static void pipes_and_waits(void)
{
    int p[2];
    struct pollfd pfd;
    fd_set r;
    struct timeval tv = {0, 20000};
    struct timespec ts = {0, 10000000};
    char buf[16];
    ssize_t n;
    int rc;

    if (pipe(p) != 0)
        return;
    pfd.fd = p[0];
    pfd.events = POLLIN;
    pfd.revents = 0;
    rc = poll(&pfd, 1, 20);
    printf("poll empty pipe: %d revents %d\n", rc, pfd.revents);
    printf("pipe write: %zd\n", write(p[1], "pipe", 4));
    rc = poll(&pfd, 1, 1000);
    printf("poll: %d revents %d\n", rc, pfd.revents);
    FD_ZERO(&r);
    FD_SET(p[0], &r);
    rc = select(p[0] + 1, &r, NULL, NULL, &tv);
    printf("select: %d isset %d\n", rc, FD_ISSET(p[0], &r));
    printf("pipe read: %zd\n", read(p[0], buf, sizeof(buf)));
    printf("nanosleep: %d\n", nanosleep(&ts, NULL));
    printf("usleep: %d sleep(0): %u\n", usleep(1000), sleep(0));
    close(p[1]);
    printf("read at eof: %zd\n", read(p[0], buf, sizeof(buf)));
    close(p[0]);
    errno = 0;
    n = recv(-1, buf, 1, 0);
    printf("recv bad fd: %zd errno %s\n", n, strerrorname_np(errno));
}

static void names(void)
{
    struct addrinfo hints, *res = NULL, *ai;
    char host[64];
    int rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo("localhost", "80", &hints, &res);
    printf("getaddrinfo: %d\n", rc);
    for (ai = res; rc == 0 && ai != NULL; ai = ai->ai_next) {
        struct sockaddr_in *in = (struct sockaddr_in *)ai->ai_addr;
        printf("  %s:%d\n", inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host)),
               ntohs(in->sin_port));
    }
    if (rc == 0)
        freeaddrinfo(res);
    struct hostent *h = gethostbyname("127.0.0.1");
    printf("gethostbyname: %s\n", h != NULL ? h->h_name : "NULL");
}

int main(void)
{
    fprintf(stderr, "coho loaded: %s\n",
            dlsym(RTLD_DEFAULT, "coho_sched_create") != NULL ? "yes" : "no");
    echo();
    files();
    pipes_and_waits();
    names();
    printf("done\n");
    return 0;
}
