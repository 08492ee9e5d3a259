/* SPDX-License-Identifier: MIT */
/* The tables of real libc functions.
 *
 * Inside libcoho a plain call to read, write, close, poll... binds to coho's own hook once the
 * syscall_hook layer defines it, so every layer that needs the real call goes through a table.
 * Two tables are resolved once with dlsym and RTLD_NEXT from a high-priority constructor, and
 * again on demand by coho__sys_init() (a hook that runs before constructors calls it first):
 *
 *   coho__sys_base  (this header)              the fd, poll and sleep functions; what the
 *                                              layers below syscall_hook/ use
 *   coho__sys       (base_struct/sys_net.h)    the hook table: the same entries plus the
 *                                              socket and DNS functions, for syscall_hook/
 *
 * This header knows nothing of sockets (DESIGN.md "Layers"). An entry is declared once, in an
 * X-macro list: X(return type, name, (parameters), required). A required function that libc
 * lacks is fatal at start-up: the message names it and the process aborts, since no call could
 * be made correctly. An optional one (required 0) is NULL in the table when libc lacks it, and
 * its caller checks. */
#ifndef COHO_BASE_STRUCT_SYS_H
#define COHO_BASE_STRUCT_SYS_H

#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* close_range and closefrom arrived in glibc 2.34: optional. */
#define COHO__SYS_BASE_FUNCS(X)                                                             \
    X(ssize_t, read, (int fd, void *buf, size_t n), 1)                                      \
    X(ssize_t, write, (int fd, const void *buf, size_t n), 1)                               \
    X(ssize_t, readv, (int fd, const struct iovec *iov, int iovcnt), 1)                     \
    X(ssize_t, writev, (int fd, const struct iovec *iov, int iovcnt), 1)                    \
    X(int, close, (int fd), 1)                                                              \
    X(int, close_range, (unsigned int first, unsigned int last, int flags), 0)              \
    X(void, closefrom, (int lowfd), 0)                                                      \
    X(int, fclose, (FILE * stream), 1)                                                      \
    X(int, dup, (int fd), 1)                                                                \
    X(int, dup2, (int fd, int fd2), 1)                                                      \
    X(int, dup3, (int fd, int fd2, int flags), 1)                                           \
    X(int, fcntl, (int fd, int cmd, ...), 1)                                                \
    X(int, ioctl, (int fd, unsigned long req, ...), 1)                                      \
    X(int, poll, (struct pollfd * fds, nfds_t n, int timeout_ms), 1)                        \
    X(int, ppoll,                                                                           \
      (struct pollfd * fds, nfds_t n, const struct timespec *ts, const sigset_t *mask), 1)  \
    X(int, select, (int n, fd_set *r, fd_set *w, fd_set *e, struct timeval *tv), 1)         \
    X(int, epoll_wait, (int epfd, struct epoll_event *ev, int max, int timeout_ms), 1)      \
    X(int, epoll_pwait,                                                                     \
      (int epfd, struct epoll_event *ev, int max, int timeout_ms, const sigset_t *mask), 1) \
    X(unsigned int, sleep, (unsigned int s), 1)                                             \
    X(int, usleep, (useconds_t us), 1)                                                      \
    X(int, nanosleep, (const struct timespec *req, struct timespec *rem), 1)

/* One table field per X-macro entry. */
#define COHO__SYS_FIELD(ret, name, params, required) ret(*name) params;

typedef struct coho__sys_base_table {
    COHO__SYS_BASE_FUNCS(COHO__SYS_FIELD)
} coho__sys_base_table_t;

/* The base table. Every required entry is non-NULL once coho__sys_init() has returned. */
extern coho__sys_base_table_t coho__sys_base;

/* Resolves both tables (idempotent, thread-safe, cheap after the first call). Called from a
 * constructor; a hook that may run before constructors (another library's constructor calling
 * a hooked function) calls it first. */
void coho__sys_init(void);

/* True once the tables are resolved. */
bool coho__sys_is_ready(void);

/* Writes all `len` bytes of `buf` to `fd` with the real write, retrying EINTR and short writes.
 * Returns 0 or -errno (-EIO if write returns 0). Async-signal-safe (it only calls write), for
 * the log writer and crash paths. The table must be resolved. */
int coho__sys_write_all(int fd, const void *buf, size_t len);

#endif /* COHO_BASE_STRUCT_SYS_H */
