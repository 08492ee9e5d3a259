/* SPDX-License-Identifier: MIT */
/* delayd: the delaying servers of the hook integration tests, one epoll loop, no coho.
 *
 *   delayd free-port                        prints a free 127.0.0.1 TCP port
 *   delayd http  PORT_FILE DELAY_MS         HTTP/1.1 server: answers every request after
 *                                           DELAY_MS with "hello <path>\n", then closes
 *   delayd proxy PORT_FILE DELAY_MS UPSTREAM_PORT
 *                                           TCP proxy to 127.0.0.1:UPSTREAM_PORT that holds
 *                                           every chunk from upstream DELAY_MS before passing
 *                                           it on (requests go through at once)
 *
 * Servers listen on 127.0.0.1 with a kernel-chosen port and a backlog of 1024, write the port
 * to PORT_FILE once listening, and run until SIGTERM. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_FDS   65536
#define REQ_MAX   4096
#define BACKLOG   1024
#define CHUNK_MAX 65536

/* One chunk held back until `due_ms`. */
struct chunk {
    struct chunk *next;
    int64_t due_ms;
    size_t len;
    char data[];
};

struct conn {
    int used;
    int peer;       /* proxy: the other side; -1 for http */
    int upstream;   /* proxy: this is the upstream side */
    int64_t due_ms; /* http: when the response goes out; 0: request not complete */
    size_t len;
    char req[REQ_MAX];
    struct chunk *head, *tail; /* proxy, client side: delayed chunks from upstream */
    int peer_closed;           /* proxy, client side: upstream closed; close after the queue */
};

static struct conn *conns;
static int epfd;
static int max_fd; /* highest fd ever used: run_due scans up to it */
static volatile sig_atomic_t stop;

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_term(int sig)
{
    (void)sig;
    stop = 1;
}

static int listen_loopback(uint16_t *port)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, BACKLOG) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        close(fd);
        return -1;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

static int write_port_file(const char *path, uint16_t port)
{
    char tmp[4096];
    FILE *f;

    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    f = fopen(tmp, "w");
    if (f == NULL)
        return -1;
    fprintf(f, "%u\n", port);
    if (fclose(f) != 0)
        return -1;
    return rename(tmp, path); /* readers never see a half-written file */
}

static void watch(int fd, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.fd = fd};

    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
        perror("delayd: epoll_ctl");
}

static void drop(int fd)
{
    struct conn *c = &conns[fd];
    struct chunk *k = c->head;

    while (k != NULL) {
        struct chunk *next = k->next;
        free(k);
        k = next;
    }
    epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    memset(c, 0, sizeof(*c));
}

/* Writes all of buf to a non-blocking socket, sleeping 1 ms whenever it is full (responses are
 * small; a slow peer only delays this test server). */
static int send_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

        if (n > 0) {
            buf += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
            continue;
        }
        return -1;
    }
    return 0;
}

static void accept_all(int lfd, int mode_proxy, uint16_t upstream_port)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        int one = 1;

        if (fd < 0)
            return;
        if (fd >= MAX_FDS) {
            close(fd);
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (fd > max_fd)
            max_fd = fd;
        memset(&conns[fd], 0, sizeof(conns[fd]));
        conns[fd].used = 1;
        conns[fd].peer = -1;
        if (mode_proxy) {
            struct sockaddr_in a;
            int up = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

            memset(&a, 0, sizeof(a));
            a.sin_family = AF_INET;
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            a.sin_port = htons(upstream_port);
            if (up < 0 || up >= MAX_FDS || connect(up, (struct sockaddr *)&a, sizeof(a)) != 0) {
                perror("delayd: upstream connect");
                if (up >= 0)
                    close(up);
                close(fd);
                conns[fd].used = 0;
                continue;
            }
            fcntl(up, F_SETFL, O_NONBLOCK);
            if (up > max_fd)
                max_fd = up;
            setsockopt(up, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            memset(&conns[up], 0, sizeof(conns[up]));
            conns[up].used = 1;
            conns[up].upstream = 1;
            conns[up].peer = fd;
            conns[fd].peer = up;
            watch(up, EPOLLIN);
        }
        watch(fd, EPOLLIN);
    }
}

static void http_readable(int fd, int delay_ms)
{
    struct conn *c = &conns[fd];

    for (;;) {
        ssize_t n = recv(fd, c->req + c->len, sizeof(c->req) - 1 - c->len, 0);

        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            drop(fd);
            return;
        }
        if (n < 0)
            return;
        c->len += (size_t)n;
        c->req[c->len] = '\0';
        if (strstr(c->req, "\r\n\r\n") != NULL && c->due_ms == 0) {
            c->due_ms = now_ms() + delay_ms;
            epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
            return;
        }
        if (c->len >= sizeof(c->req) - 1) {
            drop(fd);
            return;
        }
    }
}

static void http_respond(int fd)
{
    struct conn *c = &conns[fd];
    char path[1024] = "/";
    char body[1100], resp[1400];
    int blen, rlen;

    if (sscanf(c->req, "%*s %1023s", path) != 1)
        strcpy(path, "/");
    blen = snprintf(body, sizeof(body), "hello %s\n", path);
    rlen = snprintf(resp, sizeof(resp),
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                    "Connection: close\r\n\r\n%s",
                    blen, body);
    send_all(fd, resp, (size_t)rlen);
    drop(fd);
}

static void proxy_readable(int fd, int delay_ms)
{
    struct conn *c = &conns[fd];
    char buf[CHUNK_MAX];

    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);

        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            int peer = c->peer;

            if (c->upstream && peer >= 0 && conns[peer].head != NULL) {
                /* the client still gets what is queued, then the close */
                conns[peer].peer_closed = 1;
                conns[peer].peer = -1;
                drop(fd);
                return;
            }
            drop(fd);
            if (peer >= 0 && conns[peer].used)
                drop(peer);
            return;
        }
        if (n < 0)
            return;
        if (!c->upstream) {
            if (c->peer >= 0 && send_all(c->peer, buf, (size_t)n) != 0) {
                int peer = c->peer;
                drop(fd);
                drop(peer);
                return;
            }
            continue;
        }
        /* from upstream: hold it back */
        struct conn *cl = &conns[c->peer];
        struct chunk *k = malloc(sizeof(*k) + (size_t)n);

        if (k == NULL)
            abort();
        k->next = NULL;
        k->due_ms = now_ms() + delay_ms;
        k->len = (size_t)n;
        memcpy(k->data, buf, (size_t)n);
        if (cl->tail != NULL)
            cl->tail->next = k;
        else
            cl->head = k;
        cl->tail = k;
    }
}

/* Runs the due work and returns the epoll timeout until the next due moment. */
static int run_due(int http)
{
    int64_t now = now_ms(), next = -1;
    int fd;

    for (fd = 0; fd <= max_fd; fd++) {
        struct conn *c = &conns[fd];

        if (!c->used)
            continue;
        if (http && c->due_ms != 0) {
            if (c->due_ms <= now)
                http_respond(fd);
            else if (next < 0 || c->due_ms < next)
                next = c->due_ms;
            continue;
        }
        while (!http && c->head != NULL && c->head->due_ms <= now) {
            struct chunk *k = c->head;

            c->head = k->next;
            if (c->head == NULL)
                c->tail = NULL;
            if (send_all(fd, k->data, k->len) != 0)
                c->peer_closed = 1;
            free(k);
        }
        if (!http && c->head == NULL && c->peer_closed) {
            drop(fd);
            continue;
        }
        if (!http && c->head != NULL && (next < 0 || c->head->due_ms < next))
            next = c->head->due_ms;
    }
    if (next < 0)
        return 1000;
    return next > now ? (int)(next - now) : 0;
}

static int serve(const char *port_file, int delay_ms, int proxy, uint16_t upstream_port)
{
    struct sigaction sa;
    uint16_t port;
    int lfd;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    conns = calloc(MAX_FDS, sizeof(*conns));
    epfd = epoll_create1(EPOLL_CLOEXEC);
    lfd = listen_loopback(&port);
    if (conns == NULL || epfd < 0 || lfd < 0) {
        perror("delayd: setup");
        return 1;
    }
    watch(lfd, EPOLLIN);
    if (write_port_file(port_file, port) != 0) {
        perror("delayd: port file");
        return 1;
    }
    while (!stop) {
        struct epoll_event evs[256];
        int timeout = run_due(!proxy);
        int n = epoll_wait(epfd, evs, 256, timeout);
        int i;

        for (i = 0; i < n; i++) {
            int fd = evs[i].data.fd;

            if (fd == lfd)
                accept_all(lfd, proxy, upstream_port);
            else if (!conns[fd].used)
                continue;
            else if (proxy)
                proxy_readable(fd, delay_ms);
            else
                http_readable(fd, delay_ms);
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "free-port") == 0) {
        uint16_t port;
        int fd = listen_loopback(&port);

        if (fd < 0) {
            perror("delayd: free-port");
            return 1;
        }
        close(fd);
        printf("%u\n", port);
        return 0;
    }
    if (argc == 4 && strcmp(argv[1], "http") == 0)
        return serve(argv[2], atoi(argv[3]), 0, 0);
    if (argc == 5 && strcmp(argv[1], "proxy") == 0)
        return serve(argv[2], atoi(argv[3]), 1, (uint16_t)atoi(argv[4]));
    fprintf(stderr, "usage: delayd free-port | http PORT_FILE DELAY_MS | "
                    "proxy PORT_FILE DELAY_MS UPSTREAM_PORT\n");
    return 2;
}
