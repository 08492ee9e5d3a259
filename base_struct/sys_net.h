/* SPDX-License-Identifier: MIT */
/* coho__sys, the hook table: the real libc functions syscall_hook/ calls. It holds every entry
 * of the base table (base_struct/sys.h) plus the socket and DNS functions, which only the hook
 * layer needs; the layers below it use coho__sys_base and never see socket types. Resolved
 * together with the base table (coho__sys_init()); same X-macro form and required/optional
 * rule. */
#ifndef COHO_BASE_STRUCT_SYS_NET_H
#define COHO_BASE_STRUCT_SYS_NET_H

#include <netdb.h>
#include <sys/socket.h>

#include "base_struct/sys.h"

#define COHO__SYS_NET_FUNCS(X)                                                                    \
    X(int, socket, (int domain, int type, int protocol), 1)                                       \
    X(int, socketpair, (int domain, int type, int protocol, int sv[2]), 1)                        \
    X(int, accept4, (int fd, struct sockaddr *addr, socklen_t *len, int flags), 1)                \
    X(int, connect, (int fd, const struct sockaddr *addr, socklen_t len), 1)                      \
    X(ssize_t, recv, (int fd, void *buf, size_t n, int flags), 1)                                 \
    X(ssize_t, recvfrom,                                                                          \
      (int fd, void *buf, size_t n, int flags, struct sockaddr *addr, socklen_t *len), 1)         \
    X(ssize_t, recvmsg, (int fd, struct msghdr *msg, int flags), 1)                               \
    X(ssize_t, send, (int fd, const void *buf, size_t n, int flags), 1)                           \
    X(ssize_t, sendto,                                                                            \
      (int fd, const void *buf, size_t n, int flags, const struct sockaddr *addr, socklen_t len), \
      1)                                                                                          \
    X(ssize_t, sendmsg, (int fd, const struct msghdr *msg, int flags), 1)                         \
    X(int, shutdown, (int fd, int how), 1)                                                        \
    X(int, setsockopt, (int fd, int level, int name, const void *val, socklen_t len), 1)          \
    X(int, getsockopt, (int fd, int level, int name, void *val, socklen_t *len), 1)               \
    X(int, getaddrinfo,                                                                           \
      (const char *node, const char *service, const struct addrinfo *hints,                       \
       struct addrinfo **res),                                                                    \
      1)                                                                                          \
    X(int, getnameinfo,                                                                           \
      (const struct sockaddr *addr, socklen_t len, char *host, socklen_t hostlen, char *serv,     \
       socklen_t servlen, int flags),                                                             \
      1)                                                                                          \
    X(struct hostent *, gethostbyname, (const char *name), 1)                                     \
    X(int, gethostbyname_r,                                                                       \
      (const char *name, struct hostent *ret, char *buf, size_t buflen, struct hostent **result,  \
       int *h_errnop),                                                                            \
      1)                                                                                          \
    X(struct hostent *, gethostbyname2, (const char *name, int af), 1)                            \
    X(int, gethostbyname2_r,                                                                      \
      (const char *name, int af, struct hostent *ret, char *buf, size_t buflen,                   \
       struct hostent **result, int *h_errnop),                                                   \
      1)

typedef struct coho__sys_table {
    COHO__SYS_BASE_FUNCS(COHO__SYS_FIELD)
    COHO__SYS_NET_FUNCS(COHO__SYS_FIELD)
} coho__sys_table_t;

/* The hook table. Every required entry is non-NULL once coho__sys_init() has returned; its
 * base entries equal those of coho__sys_base. */
extern coho__sys_table_t coho__sys;

#endif /* COHO_BASE_STRUCT_SYS_NET_H */
