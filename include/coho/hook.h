/* SPDX-License-Identifier: MIT */
/* The hook layer's public calls: switching hooks per coroutine, whole-buffer I/O (recvn, sendn,
 * writevn, kept under the lineage's names) and per-fd locks for multi-call exchanges.
 *
 * Inside a coroutine, libcoho's libc functions (socket, connect, recv, send, poll, sleep,
 * getaddrinfo, ... the full list is syscall_hook/hooked.list) park the coroutine instead of
 * blocking the thread, with libc's semantics otherwise; outside a coroutine they are libc's.
 * See syscall_hook/README.md for the semantics table and the deliberate differences. */
#ifndef COHO_HOOK_H
#define COHO_HOOK_H

#include <sys/uio.h>

#include "coho/common.h"

COHO_EXTERN_C_BEGIN

/* Turns hooking on (the default) or off for the calling coroutine. With hooking off, every
 * hooked call of that coroutine behaves exactly like libc's and blocks the thread.
 * Inside a coroutine only: -1 with EPERM outside. */
COHO_API int coho_hook_enable(bool on);

/* Whether hooked calls of the calling coroutine park it; false outside a coroutine. */
COHO_API bool coho_hook_is_enabled(void);

/* Receives exactly `len` bytes unless end-of-file, an error or a timeout comes first (each
 * underlying recv honours SO_RCVTIMEO). Returns `len`; or, when the peer closed first, the bytes
 * received
 * (< len, possibly 0) with errno 0; or -1 with errno (EAGAIN on timeout, ECONNRESET, ...) when
 * nothing was received; or the partial count with errno set to why it stopped. `flags` as for
 * recv. Any context: outside a coroutine it blocks the thread like recv(MSG_WAITALL). */
COHO_API ssize_t recvn(int fd, void *buf, size_t len, int flags);

/* Sends exactly `len` bytes unless an error or a timeout comes first (each underlying send
 * honours SO_SNDTIMEO). Returns `len`, or the partial count with errno set, or -1 with errno when
 * nothing was sent. `flags` as for send (MSG_NOSIGNAL is added). Any context. */
COHO_API ssize_t sendn(int fd, const void *buf, size_t len, int flags);

/* writev until every byte of the `iovcnt` buffers went out; errors as for sendn (a socket is
 * written with MSG_NOSIGNAL: a peer that went away is EPIPE, never SIGPIPE). The iovec array is
 * not modified. Any context. */
COHO_API ssize_t writevn(int fd, const struct iovec *iov, int iovcnt);

/* Per-fd locks for multi-call exchanges (write a request in several calls, read a reply in
 * several calls) when several coroutines share one fd: FIFO, one holder per direction.
 * Inside a coroutine only (EPERM outside). coho_fd_lock fails with EBADF when the fd is closed
 * while waiting, EINVAL for a bad `dir`; coho_fd_unlock fails with EPERM if the caller does not
 * hold the lock. */
enum { COHO_FD_LOCK_READ = 0, COHO_FD_LOCK_WRITE = 1 };
COHO_API int coho_fd_lock(int fd, int dir);
COHO_API int coho_fd_unlock(int fd, int dir);

COHO_EXTERN_C_END

#endif /* COHO_HOOK_H */
