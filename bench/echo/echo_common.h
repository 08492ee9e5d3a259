/* SPDX-License-Identifier: MIT */
/* Shared by the echo servers of the comparison: argument parsing and the listening socket.
 * Plain libc calls, so in the coho server they go through the hooks like any user code. */
#ifndef COHO_BENCH_ECHO_COMMON_H
#define COHO_BENCH_ECHO_COMMON_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Bytes one recv asks for: larger than any request of the matrix, so a reply is one recv. */
#define ECHO_BUF_SIZE 16384

static inline void echo_die(const char *prog, const char *what)
{
    fprintf(stderr, "%s: %s: %s\n", prog, what, strerror(errno));
    exit(1);
}

static inline int echo_port_arg(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 0;

    if (port <= 0 || port > 65535) {
        fprintf(stderr, "usage: %s PORT (listens on 127.0.0.1)\n", argv[0]);
        exit(2);
    }
    return port;
}

/* A listening TCP socket on 127.0.0.1:port with a backlog large enough for the 1000
 * connections the client opens back to back. `type_flags` is or-ed into the socket type. */
static inline int echo_listen(const char *prog, int port, int type_flags)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int one = 1, fd = socket(AF_INET, SOCK_STREAM | type_flags, 0);

    if (fd < 0)
        echo_die(prog, "socket");
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
        echo_die(prog, "bind");
    if (listen(fd, 4096) != 0)
        echo_die(prog, "listen");
    printf("%s: listening on 127.0.0.1:%d\n", prog, port);
    fflush(stdout);
    return fd;
}

static inline void echo_nodelay(int fd)
{
    int one = 1;

    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

#endif /* COHO_BENCH_ECHO_COMMON_H */
