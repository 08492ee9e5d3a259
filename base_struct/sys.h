/* SPDX-License-Identifier: MIT */
/* coho__sys: the table of real libc functions.
 *
 * Inside libcoho a plain call to read, write, close, poll... binds to coho's own hook once the
 * syscall_hook layer defines it, so every layer that needs the real call goes through this
 * table. It is resolved once with dlsym with RTLD_NEXT from a high-priority constructor, and
 * again on demand by coho__sys_init() (a hook that runs before constructors calls it first). */
#ifndef COHO_BASE_STRUCT_SYS_H
#define COHO_BASE_STRUCT_SYS_H

#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

typedef struct coho__sys_table {
    int (*socket)(int domain, int type, int protocol);
    int (*socketpair)(int domain, int type, int protocol, int sv[2]);
    int (*accept)(int fd, struct sockaddr *addr, socklen_t *len);
    int (*accept4)(int fd, struct sockaddr *addr, socklen_t *len, int flags);
    int (*connect)(int fd, const struct sockaddr *addr, socklen_t len);
    ssize_t (*read)(int fd, void *buf, size_t n);
    ssize_t (*write)(int fd, const void *buf, size_t n);
    ssize_t (*readv)(int fd, const struct iovec *iov, int iovcnt);
    ssize_t (*writev)(int fd, const struct iovec *iov, int iovcnt);
    ssize_t (*recv)(int fd, void *buf, size_t n, int flags);
    ssize_t (*recvfrom)(int fd, void *buf, size_t n, int flags, struct sockaddr *addr,
                        socklen_t *len);
    ssize_t (*recvmsg)(int fd, struct msghdr *msg, int flags);
    ssize_t (*send)(int fd, const void *buf, size_t n, int flags);
    ssize_t (*sendto)(int fd, const void *buf, size_t n, int flags, const struct sockaddr *addr,
                      socklen_t len);
    ssize_t (*sendmsg)(int fd, const struct msghdr *msg, int flags);
    int (*close)(int fd);
    int (*close_range)(unsigned int first, unsigned int last, int flags);
    void (*closefrom)(int lowfd);
    int (*fclose)(FILE *stream);
    int (*shutdown)(int fd, int how);
    int (*dup)(int fd);
    int (*dup2)(int fd, int fd2);
    int (*dup3)(int fd, int fd2, int flags);
    int (*fcntl)(int fd, int cmd, ...);
    int (*fcntl64)(int fd, int cmd, ...);
    int (*ioctl)(int fd, unsigned long req, ...);
    int (*setsockopt)(int fd, int level, int name, const void *val, socklen_t len);
    int (*getsockopt)(int fd, int level, int name, void *val, socklen_t *len);
    int (*poll)(struct pollfd *fds, nfds_t n, int timeout_ms);
    int (*ppoll)(struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *mask);
    int (*select)(int n, fd_set *r, fd_set *w, fd_set *e, struct timeval *tv);
    int (*epoll_wait)(int epfd, struct epoll_event *ev, int max, int timeout_ms);
    int (*epoll_pwait)(int epfd, struct epoll_event *ev, int max, int timeout_ms,
                       const sigset_t *mask);
    unsigned int (*sleep)(unsigned int s);
    int (*usleep)(useconds_t us);
    int (*nanosleep)(const struct timespec *req, struct timespec *rem);
    int (*getaddrinfo)(const char *node, const char *service, const struct addrinfo *hints,
                       struct addrinfo **res);
    int (*getnameinfo)(const struct sockaddr *addr, socklen_t len, char *host, socklen_t hostlen,
                       char *serv, socklen_t servlen, int flags);
    struct hostent *(*gethostbyname)(const char *name);
    int (*gethostbyname_r)(const char *name, struct hostent *ret, char *buf, size_t buflen,
                           struct hostent **result, int *h_errnop);
    struct hostent *(*gethostbyname2)(const char *name, int af);
    int (*gethostbyname2_r)(const char *name, int af, struct hostent *ret, char *buf, size_t buflen,
                            struct hostent **result, int *h_errnop);
    ssize_t (*read_chk)(int fd, void *buf, size_t n, size_t buflen);
    ssize_t (*recv_chk)(int fd, void *buf, size_t n, size_t buflen, int flags);
    ssize_t (*recvfrom_chk)(int fd, void *buf, size_t n, size_t buflen, int flags,
                            struct sockaddr *addr, socklen_t *len);
    int (*poll_chk)(struct pollfd *fds, nfds_t n, int timeout_ms, size_t fdslen);
    int (*ppoll_chk)(struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *mask,
                     size_t fdslen);
} coho__sys_table_t;

/* The table. Every entry is non-NULL once coho__sys_init() has returned. */
extern coho__sys_table_t coho__sys;

/* Resolves the table (idempotent, thread-safe, cheap after the first call). Called from a
 * constructor; a hook that may run before constructors (another library's constructor calling
 * a hooked function) calls it first. A libc function that cannot be found is fatal: the
 * message names it and the process aborts, since no call could be made correctly. */
void coho__sys_init(void);

/* True once the table is resolved. */
bool coho__sys_is_ready(void);

#endif /* COHO_BASE_STRUCT_SYS_H */
