/* SPDX-License-Identifier: MIT */
/* Loopback peers for the hook conformance suite (see loopback.h). */
#include "test/support/loopback.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static void loopback_addr(struct sockaddr_in *a)
{
    memset(a, 0, sizeof(*a));
    a->sin_family = AF_INET;
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a->sin_port = 0;
}

static int bound_socket(int type, struct sockaddr_in *addr)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, type, 0);
    int err;

    if (fd < 0)
        return -errno;
    loopback_addr(&a);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
        goto fail;
    if (getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        goto fail;
    if (addr != NULL)
        *addr = a;
    return fd;
fail:
    err = errno;
    close(fd);
    return -err;
}

int coho_lb_listen(int backlog, struct sockaddr_in *addr)
{
    int fd = bound_socket(SOCK_STREAM, addr);
    int err;

    if (fd < 0)
        return fd;
    if (listen(fd, backlog) != 0) {
        err = errno;
        close(fd);
        return -err;
    }
    return fd;
}

int coho_lb_tcp_pair(int fds[2])
{
    struct sockaddr_in a;
    int lfd = coho_lb_listen(1, &a);
    int c, s, err;

    if (lfd < 0)
        return lfd;
    c = socket(AF_INET, SOCK_STREAM, 0);
    if (c < 0)
        goto fail_listener;
    if (connect(c, (struct sockaddr *)&a, sizeof(a)) != 0)
        goto fail_client;
    s = accept(lfd, NULL, NULL);
    if (s < 0)
        goto fail_client;
    close(lfd);
    fds[0] = c;
    fds[1] = s;
    return 0;
fail_client:
    err = errno;
    close(c);
    close(lfd);
    return -err;
fail_listener:
    err = errno;
    close(lfd);
    return -err;
}

int coho_lb_unix_pair(int fds[2], int sndbuf)
{
    int err;

    if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0)
        return -errno;
    if (sndbuf > 0 && setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)) != 0) {
        err = errno;
        close(fds[0]);
        close(fds[1]);
        return -err;
    }
    return 0;
}

int coho_lb_udp_pair(int fds[2], struct sockaddr_in addrs[2])
{
    int a = bound_socket(SOCK_DGRAM, &addrs[0]);
    int b;

    if (a < 0)
        return a;
    b = bound_socket(SOCK_DGRAM, &addrs[1]);
    if (b < 0) {
        close(a);
        return b;
    }
    fds[0] = a;
    fds[1] = b;
    return 0;
}

int coho_lb_refused(struct sockaddr_in *addr, int *holder)
{
    int fd = bound_socket(SOCK_STREAM, addr);

    if (fd < 0)
        return fd;
    *holder = fd;
    return 0;
}

int coho_lb_black_hole_open(coho_lb_black_hole_t *bh)
{
    int err;

    bh->listener = coho_lb_listen(0, &bh->addr);
    if (bh->listener < 0)
        return bh->listener;
    bh->client = socket(AF_INET, SOCK_STREAM, 0);
    if (bh->client < 0)
        goto fail;
    /* Backlog 0 admits one connection (the queue is full once it holds more than the backlog);
     * it completes the handshake and sits unaccepted, and every later SYN is dropped. */
    if (connect(bh->client, (struct sockaddr *)&bh->addr, sizeof(bh->addr)) != 0)
        goto fail_client;
    return 0;
fail_client:
    err = errno;
    close(bh->client);
    close(bh->listener);
    return -err;
fail:
    err = errno;
    close(bh->listener);
    return -err;
}

void coho_lb_black_hole_close(coho_lb_black_hole_t *bh)
{
    close(bh->client);
    close(bh->listener);
}

ssize_t coho_lb_fill(int fd)
{
    static const char chunk[4096];
    ssize_t total = 0;

    for (;;) {
        ssize_t n = send(fd, chunk, sizeof(chunk), MSG_DONTWAIT | MSG_NOSIGNAL);

        if (n > 0) {
            total += n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return total > 0 ? total : -EAGAIN;
        return n < 0 ? -errno : -EIO;
    }
}

ssize_t coho_lb_read_full(int fd, void *buf, size_t len)
{
    char sink[65536];
    size_t done = 0;

    while (done < len) {
        size_t want = len - done;
        void *dst;
        ssize_t n;

        if (buf == NULL) {
            dst = sink;
            if (want > sizeof(sink))
                want = sizeof(sink);
        } else {
            dst = (char *)buf + done;
        }
        n = read(fd, dst, want);
        if (n == 0)
            break;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        done += (size_t)n;
    }
    return (ssize_t)done;
}

ssize_t coho_lb_write_full(int fd, const void *buf, size_t len)
{
    size_t done = 0;

    while (done < len) {
        ssize_t n = write(fd, (const char *)buf + done, len - done);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        done += (size_t)n;
    }
    return (ssize_t)done;
}

int64_t coho_lb_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void coho_lb_sleep_ms(int64_t ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

int coho_lb_raise_nofile(unsigned long n)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -errno;
    if (rl.rlim_cur >= n)
        return 0;
    if (rl.rlim_max < n)
        return -EMFILE;
    rl.rlim_cur = n;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -errno;
    return 0;
}

uint64_t coho_lb_hash(const void *buf, size_t len)
{
    const unsigned char *p = buf;
    uint64_t h = 1469598103934665603ULL;
    size_t i;

    for (i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}
