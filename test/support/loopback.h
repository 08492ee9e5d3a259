/* SPDX-License-Identifier: MIT */
/* Loopback peers for the hook conformance suite: listeners, connected pairs, a refused address
 * and a black-holed one, all on 127.0.0.1 with ports the kernel picks.
 *
 * Every function makes ordinary libc calls, so inside a coroutine they go through coho's hooks
 * like the scenario code does. All return 0 (or an fd) on success and -errno on failure; none
 * changes errno's final meaning for the caller (it is whatever the last libc call left). */
#ifndef COHO_TEST_SUPPORT_LOOPBACK_H
#define COHO_TEST_SUPPORT_LOOPBACK_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Opens a TCP listener on 127.0.0.1 with a kernel-chosen port and the given backlog; stores the
 * bound address in `*addr` (if not NULL). Returns the fd or -errno. */
int coho_lb_listen(int backlog, struct sockaddr_in *addr);

/* Makes a connected TCP pair over loopback: fds[0] is the connecting side, fds[1] the accepted
 * one. Both are blocking, without flags. Returns 0 or -errno (nothing left open on failure). */
int coho_lb_tcp_pair(int fds[2]);

/* Makes a connected AF_UNIX SOCK_STREAM pair whose send buffer is `sndbuf` bytes (0: default),
 * so "full" is reached quickly and deterministically. Returns 0 or -errno. */
int coho_lb_unix_pair(int fds[2], int sndbuf);

/* Two UDP sockets bound to 127.0.0.1 (kernel ports), not connected; their addresses in
 * addrs[0..1]. Returns 0 or -errno. */
int coho_lb_udp_pair(int fds[2], struct sockaddr_in addrs[2]);

/* A loopback address whose connect is refused: a TCP socket bound to 127.0.0.1 that does not
 * listen; the caller closes `*holder` when done. Returns 0 or -errno. */
int coho_lb_refused(struct sockaddr_in *addr, int *holder);

/* A black-holed address: a listener with backlog 0 whose only accept-queue slot is taken by one
 * connected, never-accepted client, so a further SYN is dropped and connect hangs in SYN_SENT.
 * The caller closes both holders. Returns 0 or -errno. */
typedef struct coho_lb_black_hole {
    struct sockaddr_in addr; /* connect here to hang */
    int listener;            /* backlog 0, never accepts */
    int client;              /* occupies the accept queue */
} coho_lb_black_hole_t;
int coho_lb_black_hole_open(coho_lb_black_hole_t *bh);
void coho_lb_black_hole_close(coho_lb_black_hole_t *bh);

/* Fills the send path of a blocking stream socket with MSG_DONTWAIT sends until the kernel says
 * EAGAIN. Returns the number of bytes queued (> 0), or -errno on any other error. */
ssize_t coho_lb_fill(int fd);

/* Reads exactly `len` bytes (blocking, retrying short reads and EINTR) into `buf`; NULL `buf`
 * discards them. Returns `len`, the smaller count read before EOF, or -errno. */
ssize_t coho_lb_read_full(int fd, void *buf, size_t len);

/* Writes all `len` bytes (retrying short writes and EINTR). Returns `len` or -errno. */
ssize_t coho_lb_write_full(int fd, const void *buf, size_t len);

/* Milliseconds on CLOCK_MONOTONIC. */
int64_t coho_lb_now_ms(void);

/* Sleeps `ms` milliseconds with clock_nanosleep (not a hooked call), restarting on EINTR. */
void coho_lb_sleep_ms(int64_t ms);

/* Raises RLIMIT_NOFILE's soft limit to at least `n` (up to the hard limit). Returns 0 or
 * -errno (-EMFILE if the hard limit is lower). */
int coho_lb_raise_nofile(unsigned long n);

/* The FNV-1a 64-bit hash of `len` bytes. */
uint64_t coho_lb_hash(const void *buf, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* COHO_TEST_SUPPORT_LOOPBACK_H */
