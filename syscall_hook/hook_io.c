/* SPDX-License-Identifier: MIT */
/* The socket and I/O hooks: socket, accept, connect, the read and write
 * families, close, dup, fcntl, ioctl, setsockopt, the _FORTIFY_SOURCE variants,
 * and recvn/sendn/writevn.
 *
 * Every call goes one of three ways:
 *   - in a coroutine with hooks on, on an adopted fd: try the syscall (the
 * kernel file is non-blocking), park on the driver on EAGAIN, honour
 * SO_RCVTIMEO/SO_SNDTIMEO;
 *   - outside a coroutine on an fd coho made non-blocking while the user's view
 * is blocking: emulate the blocking call with a real poll;
 *   - anything else: straight to libc. */
#define _GNU_SOURCE /* IOV_MAX, POLLRDHUP, SOCK_NONBLOCK, F_DUPFD_CLOEXEC */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/close_range.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "base_struct/sys_net.h"
#include "syscall_hook/internal.h"

extern void __chk_fail(void) __attribute__((noreturn));

enum io_kind {
    OP_READ,
    OP_RECV,
    OP_RECVFROM,
    OP_READV,
    OP_RECVMSG,
    OP_WRITE,
    OP_SEND,
    OP_SENDTO,
    OP_WRITEV,
    OP_SENDMSG,
};

/* One call's arguments; the write loop advances buf/len or iov as bytes go out.
 */
struct io_args {
    enum io_kind kind;
    void *buf;
    size_t len;
    int flags;
    struct sockaddr *addr;
    socklen_t *alen;
    const struct sockaddr *daddr;
    socklen_t dlen;
    const struct iovec *iov;
    int iovcnt;
    struct msghdr *msg;
};

/* Fills the fields a read/recv/write/send uses (kind, buf, len, flags; msg is
 * NULL), without zero-filling the rest of the block on every call: no path of
 * these four kinds reads the other fields. */
static inline void io_args_simple(struct io_args *a, enum io_kind kind, void *buf, size_t len,
                                  int flags)
{
    a->kind = kind;
    a->buf = buf;
    a->len = len;
    a->flags = flags;
    a->msg = NULL;
}

static bool io_is_read(enum io_kind k)
{
    return k <= OP_RECVMSG;
}

/* One attempt. Returns bytes, or -errno (read right after the syscall). */
__attribute__((hot)) static ssize_t io_once(int fd, struct io_args *a)
{
    ssize_t n;

    switch (a->kind) {
    case OP_READ:
        n = coho__sys.read(fd, a->buf, a->len);
        break;
    case OP_RECV:
        n = coho__sys.recv(fd, a->buf, a->len, a->flags);
        break;
    case OP_RECVFROM:
        n = coho__sys.recvfrom(fd, a->buf, a->len, a->flags, a->addr, a->alen);
        break;
    case OP_READV:
        n = coho__sys.readv(fd, a->iov, a->iovcnt);
        break;
    case OP_RECVMSG:
        n = coho__sys.recvmsg(fd, a->msg, a->flags);
        break;
    case OP_WRITE:
        n = coho__sys.write(fd, a->buf, a->len);
        break;
    case OP_SEND:
        n = coho__sys.send(fd, a->buf, a->len, a->flags);
        break;
    case OP_SENDTO:
        n = coho__sys.sendto(fd, a->buf, a->len, a->flags, a->daddr, a->dlen);
        break;
    case OP_WRITEV:
        n = coho__sys.writev(fd, a->iov, a->iovcnt);
        break;
    case OP_SENDMSG:
    default:
        n = coho__sys.sendmsg(fd, a->msg, a->flags);
        break;
    }
    return n < 0 ? -errno : n;
}

/* One attempt that never blocks on a keep-mode socket (whose kernel file is in the user's
 * blocking mode, shared with other processes): the socket calls with MSG_DONTWAIT, so a sibling
 * process that took the data between the readiness check and the call cannot block the thread.
 * Returns bytes, or -errno. */
static ssize_t io_once_dontwait(int fd, struct io_args *a)
{
    struct msghdr m = {0};
    ssize_t n;

    switch (a->kind) {
    case OP_READ:
        n = coho__sys.recv(fd, a->buf, a->len, MSG_DONTWAIT);
        break;
    case OP_RECV:
        n = coho__sys.recv(fd, a->buf, a->len, a->flags | MSG_DONTWAIT);
        break;
    case OP_RECVFROM:
        n = coho__sys.recvfrom(fd, a->buf, a->len, a->flags | MSG_DONTWAIT, a->addr, a->alen);
        break;
    case OP_READV:
        m.msg_iov = (struct iovec *)a->iov;
        m.msg_iovlen = (size_t)a->iovcnt;
        n = coho__sys.recvmsg(fd, &m, MSG_DONTWAIT);
        break;
    case OP_RECVMSG:
        n = coho__sys.recvmsg(fd, a->msg, a->flags | MSG_DONTWAIT);
        break;
    case OP_WRITE:
        n = coho__sys.send(fd, a->buf, a->len, MSG_DONTWAIT);
        break;
    case OP_SEND:
        n = coho__sys.send(fd, a->buf, a->len, a->flags | MSG_DONTWAIT);
        break;
    case OP_SENDTO:
        n = coho__sys.sendto(fd, a->buf, a->len, a->flags | MSG_DONTWAIT, a->daddr, a->dlen);
        break;
    case OP_WRITEV:
        m.msg_iov = (struct iovec *)a->iov;
        m.msg_iovlen = (size_t)a->iovcnt;
        n = coho__sys.sendmsg(fd, &m, MSG_DONTWAIT);
        break;
    case OP_SENDMSG:
    default:
        n = coho__sys.sendmsg(fd, a->msg, a->flags | MSG_DONTWAIT);
        break;
    }
    return n < 0 ? -errno : n;
}

/* Total length of an iovec array, saturating at SIZE_MAX. */
static size_t iov_total(const struct iovec *iov, int n)
{
    size_t t = 0;
    int i;

    for (i = 0; i < n; i++)
        t = iov[i].iov_len > SIZE_MAX - t ? SIZE_MAX : t + iov[i].iov_len;
    return t;
}

/* Bytes the call asked for (for the "short read means drained" rule). */
static size_t io_want(const struct io_args *a)
{
    switch (a->kind) {
    case OP_READV:
    case OP_WRITEV:
        return iov_total(a->iov, a->iovcnt);
    case OP_RECVMSG:
    case OP_SENDMSG:
        return iov_total(a->msg->msg_iov, (int)a->msg->msg_iovlen);
    default:
        return a->len;
    }
}

/* A short read on a stream socket, with no ancillary data and no hang-up or
 * urgent data seen, means the socket is drained: the next read parks until the
 * next edge instead of paying a failing syscall (LESSONS.md, "a recv that
 * returns EAGAIN on every request"). Peeks and reads of the error queue or of
 * out-of-band data say nothing about the stream. */
__attribute__((hot, always_inline)) static inline void
io_note_read(coho__fd_reg_t *r, const struct io_args *a, ssize_t n)
{
    if (r->kind != COHO__FD_STREAM || r->sticky != 0 || n <= 0)
        return;
    if ((a->flags & (MSG_PEEK | MSG_OOB | MSG_ERRQUEUE)) && a->kind != OP_READ &&
        a->kind != OP_READV)
        return;
    if (a->kind == OP_RECVMSG && (a->msg->msg_controllen != 0 || (a->msg->msg_flags & MSG_CTRUNC)))
        return;
    if ((size_t)n < (a->kind <= OP_RECVFROM ? a->len : io_want(a)))
        r->rd_drained = true;
}

/* Copies of the iovec array for the write loop, advanced past `done` bytes. */
struct iov_cursor {
    struct iovec small[8];
    struct iovec *v;
    int n;
};

static int iov_cursor_init(struct iov_cursor *c, const struct iovec *iov, int n)
{
    c->v = n <= 8 ? c->small : malloc(sizeof(*iov) * (size_t)n);
    if (c->v == NULL)
        return -ENOMEM;
    memcpy(c->v, iov, sizeof(*iov) * (size_t)n);
    c->n = n;
    return 0;
}

static void iov_cursor_advance(struct iov_cursor *c, size_t done)
{
    while (c->n > 0 && done >= c->v[0].iov_len) {
        done -= c->v[0].iov_len;
        c->v++;
        c->n--;
    }
    if (c->n > 0) {
        c->v[0].iov_base = (char *)c->v[0].iov_base + done;
        c->v[0].iov_len -= done;
    }
}

static void iov_cursor_destroy(struct iov_cursor *c, struct iovec *orig_alloc)
{
    if (orig_alloc != NULL && orig_alloc != c->small)
        free(orig_alloc);
}

/* Waits for `ev` within the deadline: in a coroutine on its registration `r`,
 * else (`r` NULL) with a real poll on `fd`. Returns 0, -ETIMEDOUT, -EBADF (then
 * `r` must not be touched again), -ECANCELED. */
static int io_wait(int fd, coho__fd_reg_t *r, unsigned ev, int64_t deadline)
{
    /* No deadline: no clock reading. */
    int64_t left = deadline < 0 ? -1 : coho__hook_remaining(deadline, coho__hook_now_ms());

    if (deadline >= 0 && left == 0)
        return -ETIMEDOUT;
    return r != NULL ? coho__fd_wait(r, ev, left) : coho__fd_wait_thread(fd, ev, left);
}

/* Level check for keep-mode fds, whose kernel mode is blocking: is `ev` ready
 * now? */
static bool io_ready_now(int fd, unsigned ev)
{
    struct pollfd p = {.fd = fd, .events = (short)((ev & COHO__EV_READ) ? POLLIN : POLLOUT)};

    return coho__sys.poll(&p, 1, 0) != 0;
}

/* Whether a write of this kind on this fd must go out whole (the kernel's
 * blocking behaviour for byte streams). */
static bool io_is_full_write(const coho__fd_t *f, const struct io_args *a)
{
    return !io_is_read(a->kind) &&
           (f->kind == COHO__FD_STREAM || f->kind == COHO__FD_PIPE || f->kind == COHO__FD_TTY);
}

/* Moves a write call's arguments past `done` bytes. */
static void io_advance(struct io_args *a, struct iov_cursor *c, size_t done)
{
    if (a->kind == OP_WRITEV) {
        iov_cursor_advance(c, done);
        a->iov = c->v;
        a->iovcnt = c->n;
    } else if (a->kind == OP_SENDMSG) {
        iov_cursor_advance(c, done);
        a->msg->msg_iov = c->v;
        a->msg->msg_iovlen = (size_t)c->n;
    } else {
        a->buf = (char *)a->buf + done;
        a->len -= done;
    }
}

/* Whether `f` is a socket (the calls take per-call flags). */
static bool io_is_socket(const coho__fd_t *f)
{
    uint8_t k = f->kind;

    return k == COHO__FD_STREAM || k == COHO__FD_DGRAM || k == COHO__FD_SEQPACKET;
}

/* Flags a ring operation takes as the syscall would; anything else (out-of-band data, the error
 * queue, peeks, MSG_DONTWAIT) goes the readiness way. MSG_WAITALL is the caller's loop. */
#define IO_RING_FLAGS_BAD (MSG_OOB | MSG_PEEK | MSG_ERRQUEUE | MSG_TRUNC | MSG_DONTWAIT)

/* Whether a call that would block goes to the ring: a plain buffer (or recvmsg/sendmsg without
 * ancillary data), flags the operation takes as the syscall would, and no urgent data seen (a read
 * stops at the urgent mark, and only the readiness way hears of the mark through EPOLLPRI). */
static inline bool io_ringable(const coho__fd_reg_t *r, const struct io_args *a)
{
    return r->ring != COHO__OPS_OFF && !(a->flags & IO_RING_FLAGS_BAD) &&
           !(r->sticky & COHO__EV_PRI) &&
           (a->kind == OP_READ || a->kind == OP_RECV || a->kind == OP_WRITE || a->kind == OP_SEND ||
            a->kind == OP_READV || a->kind == OP_WRITEV ||
            ((a->kind == OP_RECVMSG || a->kind == OP_SENDMSG) && a->msg->msg_controllen == 0));
}

/* A call that would block, made as a ring operation (the io_uring backend, a stream socket, a
 * plain buffer or readv/writev's iovecs) within the deadline. Returns bytes or -errno as io_once
 * and io_wait do
 * (-ETIMEDOUT, -ECANCELED, -EBADF: then `r` must not be touched again), or -EOPNOTSUPP when
 * the call must go the readiness way. */
static ssize_t io_ring(coho__fd_reg_t *r, struct io_args *a, int64_t deadline)
{
    bool rd = io_is_read(a->kind);
    struct msghdr m;
    int64_t left;
    ssize_t n;

    if (!io_ringable(r, a))
        return -EOPNOTSUPP;
    left = deadline < 0 ? -1 : coho__hook_remaining(deadline, coho__hook_now_ms());
    if (deadline >= 0 && left == 0)
        return -ETIMEDOUT;
    if (a->kind == OP_READV || a->kind == OP_WRITEV) {
        /* readv/writev on a socket are recvmsg/sendmsg with the iovecs and no flags; `m` lives
         * until the operation's completion (coho__fd_ring_io waits for it). */
        memset(&m, 0, sizeof(m));
        m.msg_iov = (struct iovec *)a->iov;
        m.msg_iovlen = (size_t)a->iovcnt;
        n = coho__fd_ring_io(r, rd ? COHO__OP_RECVMSG : COHO__OP_SENDMSG, &m, 0, 0, NULL, left);
    } else if (a->kind == OP_RECVMSG || a->kind == OP_SENDMSG) {
        /* the user's own msghdr (sendmsg's copy), with no ancillary data (io_ringable) */
        n = coho__fd_ring_io(r, rd ? COHO__OP_RECVMSG : COHO__OP_SENDMSG, a->msg, 0,
                             a->flags & ~MSG_WAITALL, NULL, left);
    } else {
        n = coho__fd_ring_io(
            r, rd ? COHO__OP_RECV : COHO__OP_SEND, a->buf, a->len,
            a->kind == OP_READ || a->kind == OP_WRITE ? 0 : a->flags & ~MSG_WAITALL, NULL, left);
    }
    if (n == -EAGAIN)
        return -EOPNOTSUPP; /* not taken by a forked child's ring: the readiness way */
    /* io_uring sends with MSG_NOSIGNAL; the call the user made raises SIGPIPE on this thread
     * (as the kernel does), unless it asked for MSG_NOSIGNAL. */
    if (n == -EPIPE && !rd &&
        !((a->kind == OP_SEND || a->kind == OP_SENDMSG) && (a->flags & MSG_NOSIGNAL)))
        raise(SIGPIPE);
    return n;
}

/* io_blocking's `again` when no syscall was tried (the ring's "submit" mode): if the ring does
 * not take the call, the syscall comes before any readiness wait. */
#define IO_SKIPPED_TRY 2

/* The blocking-view engine for an adopted fd: in a coroutine with its
 * registration `r`, or in a plain thread using a managed fd (`r` NULL).
 * `again`: the caller's own first attempt (io_call's fast path) just failed with
 * EAGAIN, so the first step is the wait. Returns bytes or -errno. */
static ssize_t io_blocking(coho__fd_t *f, coho__fd_reg_t *r, struct io_args *a, int again)
{
    bool untried = again == IO_SKIPPED_TRY;
    bool in_co = r != NULL;
    bool rd = io_is_read(a->kind);
    unsigned ev = rd ? COHO__EV_READ : COHO__EV_WRITE;
    int64_t tmo = rd ? coho__fd_rcvtimeo(f) : coho__fd_sndtimeo(f);
    int64_t deadline = tmo < 0 ? -1 : (int64_t)(coho__hook_now_ms() + (uint64_t)tmo);
    bool full = io_is_full_write(f, a);
    bool waitall = rd && (a->flags & MSG_WAITALL) && f->kind == COHO__FD_STREAM;
    size_t want = (full || waitall) ? io_want(a) : 0;
    size_t done = 0;
    struct iov_cursor cur; /* only cur.v is read before iov_cursor_init */
    struct iovec *cur_alloc = NULL;
    struct msghdr msg_copy;
    struct msghdr *orig_msg = a->msg;
    ssize_t n, ret;
    int rc;

    cur.v = NULL;
    if (again)
        goto wait;
    for (;;) {
        if (f->keep_mode) {
            if (!io_ready_now(f->fd, ev)) {
                rc = io_wait(f->fd, r, ev, deadline);
                if (rc < 0) {
                    ret = rc;
                    goto out_err;
                }
                continue;
            }
            n = io_is_socket(f) ? io_once_dontwait(f->fd, a) : io_once(f->fd, a);
        } else if (rd && in_co && r->rd_drained && io_want(a) - 1 < SSIZE_MAX) {
            /* Drained: park for the next edge. (A zero length returns at once, and a length
             * the kernel rejects up front is passed on, so its error comes back at once, as
             * from libc.) */
            n = -EAGAIN;
        } else {
            n = io_once(f->fd, a);
        }
    got:
        if (n >= 0) {
            if (rd && in_co)
                io_note_read(r, a, n);
            if (!(full || waitall) || n == 0 || done + (size_t)n >= want) {
                ret = (ssize_t)done + n;
                goto out;
            }
            /* Partial progress of a whole-buffer call: continue past what went. */
            done += (size_t)n;
            if ((a->kind == OP_WRITEV || a->kind == OP_SENDMSG || a->kind == OP_READV ||
                 a->kind == OP_RECVMSG) &&
                cur.v == NULL) {
                const struct iovec *src =
                    a->kind == OP_WRITEV || a->kind == OP_READV ? a->iov : a->msg->msg_iov;
                int cnt = a->kind == OP_WRITEV || a->kind == OP_READV ? a->iovcnt
                                                                      : (int)a->msg->msg_iovlen;

                if (iov_cursor_init(&cur, src, cnt) != 0) {
                    ret = (ssize_t)done;
                    goto out;
                }
                cur_alloc = cur.v;
                if (a->kind == OP_SENDMSG || a->kind == OP_RECVMSG) {
                    /* Ancillary data goes with the first part only, as the kernel does:
                     * the rest never resends SCM_RIGHTS fds nor overwrites the control
                     * data already received. */
                    msg_copy = *a->msg;
                    msg_copy.msg_control = NULL;
                    msg_copy.msg_controllen = 0;
                    a->msg = &msg_copy;
                }
            }
            if (a->kind == OP_READV || a->kind == OP_RECVMSG) {
                iov_cursor_advance(&cur, (size_t)n);
                if (a->kind == OP_READV) {
                    a->iov = cur.v;
                    a->iovcnt = cur.n;
                } else {
                    a->msg->msg_iov = cur.v;
                    a->msg->msg_iovlen = (size_t)cur.n;
                }
            } else if (rd) {
                a->buf = (char *)a->buf + n;
                a->len -= (size_t)n;
            } else {
                io_advance(a, &cur, (size_t)n);
            }
            continue;
        }
        if (n != -EAGAIN) {
            ret = n;
            goto out_err;
        }
    wait:
        if (in_co && !f->keep_mode) {
            n = io_ring(r, a, deadline);
            if (n == -EOPNOTSUPP && (untried || io_ringable(r, a))) {
                /* Not tried yet, refused (full SQ) or handed back by a forked child's ring:
                 * the edge a wait would need may have passed, so the syscall first. */
                untried = false;
                n = io_once(f->fd, a);
            }
            if (n != -EOPNOTSUPP && n != -EAGAIN) {
                if (n >= 0)
                    goto got;
                /* A timeout reports EAGAIN, as the kernel does for SO_RCVTIMEO/SO_SNDTIMEO. */
                ret = n == -ETIMEDOUT ? -EAGAIN : n;
                goto out_err;
            }
        }
        rc = io_wait(f->fd, r, ev, deadline);
        if (rc < 0) {
            /* A timeout reports EAGAIN, as the kernel does for
             * SO_RCVTIMEO/SO_SNDTIMEO. */
            ret = rc == -ETIMEDOUT ? -EAGAIN : rc;
            goto out_err;
        }
    }
out_err:
    if (done > 0)
        ret = (ssize_t)done;
out:
    if (a->kind == OP_RECVMSG && a->msg != orig_msg) {
        /* The caller's msghdr keeps the first part's control data; the flags say what
         * any part reported. */
        orig_msg->msg_flags |= a->msg->msg_flags;
    }
    iov_cursor_destroy(&cur, cur_alloc);
    return ret;
}

/* The first attempt of a plain read/recv/write/send without MSG_WAITALL in a
 * coroutine, on an adopted fd in the blocking view whose kernel file is
 * non-blocking: the common case where the call does not block. It makes the
 * same system calls, in the same order, as io_blocking would, and hands over to
 * it only for what io_blocking alone does (a drained socket, EAGAIN, the rest of
 * a partial stream write). */
__attribute__((hot)) static ssize_t io_fast(coho__fd_reg_t *r, struct io_args *a)
{
    coho__fd_t *f = r->f;
    ssize_t n, more;
    int rc;

    if ((a->kind == OP_READ || a->kind == OP_RECV) &&
        atomic_load_explicit(&r->ofd->rcvtimeo_ms, memory_order_relaxed) < 0) {
        /* io_blocking's loop for a read without a deadline, without its set-up. */
        for (;;) {
            /* Drained: park for the next edge (see io_blocking); on the io_uring backend the
             * read itself is submitted and parks. */
            if (r->rd_drained && a->len - 1 < SSIZE_MAX) {
                n = -EAGAIN;
            } else {
                /* io_once for the two kinds that come here, without its dispatch */
                n = a->kind == OP_READ ? coho__sys.read(f->fd, a->buf, a->len)
                                       : coho__sys.recv(f->fd, a->buf, a->len, a->flags);
                if (n < 0)
                    n = -errno;
            }
            if (n == -EAGAIN && r->ring != COHO__OPS_OFF) {
                n = io_ring(r, a, -1);
                if (n == -ETIMEDOUT)
                    return -EAGAIN;
                if (n == -EBADF)
                    return n; /* `r` may be gone */
                if (n == -EOPNOTSUPP && io_ringable(r, a)) {
                    /* Refused (full SQ) or handed back by a forked child's ring: the edge
                     * this read waited for may have passed, so the syscall before a wait. */
                    n = a->kind == OP_READ ? coho__sys.read(f->fd, a->buf, a->len)
                                           : coho__sys.recv(f->fd, a->buf, a->len, a->flags);
                    if (n < 0)
                        n = -errno;
                }
            }
            if (n != -EAGAIN && n != -EOPNOTSUPP) {
                io_note_read(r, a, n);
                return n;
            }
            rc = io_wait(f->fd, r, COHO__EV_READ, -1);
            if (rc < 0)
                return rc == -ETIMEDOUT ? -EAGAIN : rc;
        }
    }
    if (a->kind == OP_READ || a->kind == OP_RECV) {
        if (r->rd_drained && a->len - 1 < SSIZE_MAX)
            return io_blocking(f, r, a, false); /* parks for the next edge */
        n = io_once(f->fd, a);
        if (n == -EAGAIN)
            return io_blocking(f, r, a, true);
        io_note_read(r, a, n);
        return n;
    }
    if (r->ring == COHO__OPS_SUBMIT && io_ringable(r, a))
        return io_blocking(f, r, a, IO_SKIPPED_TRY); /* submitted without a try first */
    n = io_once(f->fd, a);
    if (n == -EAGAIN)
        return io_blocking(f, r, a, true);
    if (n <= 0 || (size_t)n >= a->len || !io_is_full_write(f, a))
        return n;
    /* A stream write that went out in part: io_blocking sends the rest; what
     * already went counts even if the rest fails. */
    a->buf = (char *)a->buf + n;
    a->len -= (size_t)n;
    more = io_blocking(f, r, a, false);
    return more < 0 ? n : n + more;
}

/* io_call outside a coroutine (or with hooks off): libc's call, or the blocking view emulated
 * with a real poll on a managed fd. */
static ssize_t io_call_plain(int fd, struct io_args *a, bool dontwait)
{
    coho__fd_t *f = coho__fd_adopted(fd);

    if (f == NULL || !f->managed || dontwait || coho__fd_user_nonblock(f))
        return io_once(fd, a);
    return io_blocking(f, NULL, a, false);
}

/* Dispatches one I/O call. `dontwait`: MSG_DONTWAIT was given. */
__attribute__((hot)) static ssize_t io_call(int fd, struct io_args *a, bool dontwait)
{
    coho__fd_reg_t *r;
    int err;

    if (coho__hook_active()) {
        r = coho__fd_for_hook(fd, &err);
        if (r == NULL || dontwait ||
            atomic_load_explicit(&r->ofd->user_nonblock, memory_order_relaxed))
            return io_once(fd, a);
        if (!r->keep_mode &&
            (a->kind == OP_READ || a->kind == OP_RECV || a->kind == OP_WRITE ||
             a->kind == OP_SEND) &&
            !(a->flags & MSG_WAITALL))
            return io_fast(r, a);
        return io_blocking(r->f, r, a, false);
    }
    return io_call_plain(fd, a, dontwait);
}

/* ---- the fast path of read/recv/write/send in a coroutine ----
 *
 * The common call: a coroutine with hooks on, an fd this scheduler adopted (the slot's first
 * registration), the kernel file non-blocking (not keep-mode), no MSG_DONTWAIT or MSG_WAITALL,
 * a read not known to be drained. It makes the one system call io_call would make first, and
 * only what depends on its outcome comes after it: the user's O_NONBLOCK view, the timeouts
 * and the drained note matter only for EAGAIN or a short transfer (io_fast_more); a full
 * transfer returns at once, and an error other than EAGAIN returns with libc's errno as it
 * is. Everything else, and the set-up of the table itself, goes through io_call. */

/* Why io_fast_try hands a call to the hook's slow path (no system call was made): not the fast
 * path's case but maybe a coroutine with hooks on (io_call); not a coroutine with hooks on
 * (io_call_plain); the thread's scheduler not cached yet (the slow path looks it up: none means
 * no coroutine, so io_call_plain). */
#define IO_NOT_FAST   ((ssize_t)-2)
#define IO_NOT_HOOKED ((ssize_t)-3)
#define IO_NO_SCHED   ((ssize_t)-4)

/* The hook's own way off the fast path (read_slow, ...), called with one of the reasons above. */
typedef ssize_t (*io_slow_fn)(int fd, void *buf, size_t n, int flags, ssize_t why);

/* What io_fast_try leaves to a call that did not transfer all it asked for at once: `n` is the
 * first attempt's result (>= 0, short) or -1 with errno EAGAIN; `saved` is errno before it.
 * Returns the hook's result, errno set as io_call's callers set it. */
__attribute__((noinline)) static ssize_t io_fast_more(coho__fd_reg_t *r, struct io_args *a,
                                                      ssize_t n, int saved)
{
    ssize_t rc, more;
    int w;

    if (atomic_load_explicit(&r->ofd->user_nonblock, memory_order_relaxed))
        return n; /* io_once's result as it is (errno EAGAIN for -1) */
    if (!coho__hook_active()) {
        /* Not a coroutine with hooks on (the scheduler's own flow, or hooks off): what
         * io_call_plain does after its first attempt, which was this one. */
        if (!r->f->managed)
            return n;
        if (n < 0)
            return coho__posix_ret_keep(io_blocking(r->f, NULL, a, true), saved);
        if (io_is_read(a->kind) || n == 0 || !io_is_full_write(r->f, a))
            return n;
        a->buf = (char *)a->buf + n;
        a->len -= (size_t)n;
        more = io_blocking(r->f, NULL, a, false);
        return coho__posix_ret_keep(more < 0 ? n : n + more, saved);
    }
    if (n >= 0) {
        if (io_is_read(a->kind)) {
            io_note_read(r, a, n);
            return n;
        }
        if (n == 0 || !io_is_full_write(r->f, a))
            return n;
        /* A stream write that went out in part: io_blocking sends the rest; what already
         * went counts even if the rest fails (as in io_fast). */
        a->buf = (char *)a->buf + n;
        a->len -= (size_t)n;
        more = io_blocking(r->f, r, a, false);
        return coho__posix_ret_keep(more < 0 ? n : n + more, saved);
    }
    if (io_is_read(a->kind) && r->ring == COHO__OPS_OFF &&
        atomic_load_explicit(&r->ofd->rcvtimeo_ms, memory_order_relaxed) < 0) {
        /* io_fast's read loop, entered at its wait. (With ring operations io_blocking submits
         * the read.) */
        w = io_wait(r->f->fd, r, COHO__EV_READ, -1);
        rc = w < 0 ? (w == -ETIMEDOUT ? -EAGAIN : w) : io_fast(r, a);
    } else {
        rc = io_blocking(r->f, r, a, true);
    }
    return coho__posix_ret_keep(rc, saved);
}

/* A read/recv on the fast path whose socket a short read drained: park for the next edge
 * straight away, with no system call first (io_fast), unless the user's view is non-blocking
 * (then the call is made as io_call makes it). Not a coroutine with hooks on: `slow`. */
__attribute__((noinline)) static ssize_t io_fast_drained(coho__fd_reg_t *r, enum io_kind kind,
                                                         void *buf, size_t len, int flags,
                                                         io_slow_fn slow)
{
    uint32_t *cf = coho__co_flags();
    int saved = errno;
    struct io_args a;
    ssize_t rc;

    if (cf == NULL || (*cf & COHO__CO_FLAG_NOHOOK) != 0)
        return slow(r->f->fd, buf, len, flags, IO_NOT_HOOKED);
    if (atomic_load_explicit(&r->ofd->user_nonblock, memory_order_relaxed)) {
        /* io_once for the two kinds that come here */
        rc = kind == OP_READ ? coho__sys.read(r->f->fd, buf, len)
                             : coho__sys.recv(r->f->fd, buf, len, flags);
        if (rc < 0)
            return -1; /* libc set errno */
        errno = saved;
        return rc;
    }
    io_args_simple(&a, kind, buf, len, flags);
    rc = io_fast(r, &a);
    return coho__posix_ret_keep(rc, saved);
}

/* read/recv/write/send off the fast path: the full dispatch. `why` (IO_NOT_FAST, IO_NOT_HOOKED,
 * IO_NO_SCHED) says whether the caller may be a coroutine with hooks on (io_call) or is not
 * (io_call_plain). */
static ssize_t io_slow(int fd, enum io_kind kind, void *buf, size_t n, int flags, ssize_t why)
{
    int saved = errno;
    bool plain = why == IO_NOT_HOOKED || (why == IO_NO_SCHED && coho__fd_cur_sched() == NULL);
    bool dontwait = (flags & MSG_DONTWAIT) != 0;
    struct io_args a;

    io_args_simple(&a, kind, buf, n, flags);
    coho__sys_init();
    return coho__posix_ret_keep(plain ? io_call_plain(fd, &a, dontwait) : io_call(fd, &a, dontwait),
                                saved);
}

/* recv/send with MSG_DONTWAIT: every way through the hook (io_call in a coroutine with hooks
 * on, io_call_plain elsewhere, any fd) makes exactly one attempt, io_once, so this makes it
 * without the dispatch: libc's call, with libc's errno (a broadcast's direct sends, one per
 * member, come here). */
__attribute__((noinline)) static ssize_t io_dontwait(int fd, enum io_kind kind, void *buf,
                                                     size_t len, int flags)
{
    coho__sys_init();
    return kind == OP_RECV ? coho__sys.recv(fd, buf, len, flags)
                           : coho__sys.send(fd, buf, len, flags);
}

/* The calling thread's errno, its address taken once per thread: reading errno on the fast
 * path is then a load, not a call (which would make the hook keep its arguments in callee-saved
 * registers). */
static __thread int *io_errno_loc __attribute__((tls_model("initial-exec")));

__attribute__((always_inline)) static inline int *io_errno(void)
{
    int *p = io_errno_loc;

    if (__builtin_expect(p == NULL, 0))
        p = io_errno_loc = &errno;
    return p;
}

/* The fast path's system call (x86-64, outside sanitizer builds): the `syscall` instruction
 * inline, not libc's wrapper. The wrapper costs about 20 instructions of its own (the call, its
 * cancellation-state check, errno), and being a call, it makes the hook keep its arguments in
 * callee-saved registers across it; the instruction clobbers only rcx and r11. Returns the
 * kernel's result (-errno on failure; errno is not set).
 *
 * What changes against libc's call: it is not a thread-cancellation point. A hooked call in a
 * coroutine already was not one once it parked (the thread then waits in the driver), and a
 * cancellation acting in a coroutine would unwind a stack that is not the thread's. Sanitizer
 * builds keep libc's call, so that the sanitizers' interceptors still see the buffer it
 * writes (ASan) and the socket's happens-before edge (TSan). */
#if defined(__x86_64__) && !defined(COHO_SANITIZE_BUILD)
__attribute__((always_inline)) static inline long io_sys4(long nr, long a1, long a2, long a3,
                                                          long a4)
{
    register long r10 __asm__("r10") = a4;
    register long r8 __asm__("r8") = 0;
    register long r9 __asm__("r9") = 0;
    long ret;

    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "0"(nr), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}
#endif

/* The fast path's one system call for `kind`: the kernel's result, -errno on failure, errno
 * untouched (the inline instruction above, or libc's call with errno put back). */
__attribute__((always_inline)) static inline ssize_t io_fast_sys(int fd, enum io_kind kind,
                                                                 void *buf, size_t len, int flags)
{
#if defined(__x86_64__) && !defined(COHO_SANITIZE_BUILD)
    switch (kind) {
    case OP_READ:
        return io_sys4(SYS_read, fd, (long)buf, (long)len, 0);
    case OP_RECV:
        return io_sys4(SYS_recvfrom, fd, (long)buf, (long)len, flags);
    case OP_WRITE:
        return io_sys4(SYS_write, fd, (long)buf, (long)len, 0);
    default:
        return io_sys4(SYS_sendto, fd, (long)buf, (long)len, flags);
    }
#else
    int *ep = io_errno(), saved = *ep;
    ssize_t n;

    switch (kind) {
    case OP_READ:
        n = coho__sys.read(fd, buf, len);
        break;
    case OP_RECV:
        n = coho__sys.recv(fd, buf, len, flags);
        break;
    case OP_WRITE:
        n = coho__sys.write(fd, buf, len);
        break;
    default:
        n = coho__sys.send(fd, buf, len, flags);
        break;
    }
    if (n < 0) {
        n = -*ep;
        *ep = saved;
    }
    return n;
#endif
}

/* io_fast_try after a system call that failed or moved less than asked (`n`: io_fast_sys's
 * result): errno, then io_fast_more. Out of line, so that the hot path keeps no stack frame and
 * saves no register. */
__attribute__((noinline)) static ssize_t io_fast_short(coho__fd_reg_t *r, enum io_kind kind,
                                                       void *buf, size_t len, int flags, ssize_t n)
{
    int *ep = io_errno();
    int saved = *ep;
    struct io_args a;

    if (n < 0) {
        *ep = (int)-n;
        if (n != -EAGAIN)
            return -1;
        n = -1;
    }
    io_args_simple(&a, kind, buf, len, flags);
    return io_fast_more(r, &a, n, saved);
}

/* One read/recv/write/send on the fast path; a call that is not for it goes to the hook's `slow`
 * (a tail call, so the arguments need not outlive the system call in callee-saved registers).
 * Inlined into each hook, with `kind`, `slow` and (for read and write) `flags` constant. */
__attribute__((hot, always_inline)) static inline ssize_t
io_fast_try(int fd, enum io_kind kind, void *buf, size_t len, int flags, io_slow_fn slow)
{
    coho__fd_t *f;
    coho__fd_reg_t *r;
    coho_sched_t *s;
    ssize_t n;

    if (flags & MSG_DONTWAIT)
        return io_dontwait(fd, kind, buf, len, flags);
    if (flags & MSG_WAITALL)
        return slow(fd, buf, len, flags, IO_NOT_FAST);
    s = coho__fd_tls_sched;
    if (__builtin_expect(s == NULL, 0))
        return slow(fd, buf, len, flags, IO_NO_SCHED);
    f = coho__fd_slot_if_exists(fd);
    if (__builtin_expect(f == NULL || f->state != COHO__FDS_ADOPTED || f->sched0 != s, 0))
        return slow(fd, buf, len, flags, IO_NOT_FAST);
    r = f->reg0;
    if (__builtin_expect(r == NULL || f->sched0 != s, 0))
        return slow(fd, buf, len, flags, IO_NOT_FAST);
    if (__builtin_expect(r->keep_mode, 0))
        return slow(fd, buf, len, flags, IO_NOT_FAST);
    if (io_is_read(kind) && r->rd_drained)
        return io_fast_drained(r, kind, buf, len, flags, slow);
    if (__builtin_expect(r->ring == COHO__OPS_SUBMIT, 0) && !io_is_read(kind))
        return slow(fd, buf, len, flags, IO_NOT_FAST); /* io_fast submits without trying */
    /* Whether the caller is a coroutine with hooks on matters only from here on (a park, a
     * drained note, the rest of a write): the first attempt is the same system call in every
     * case, since this scheduler's registration means the kernel file is non-blocking.
     * coho__sys is set up: the fd was adopted through a hook, which set it up first. */
    n = io_fast_sys(fd, kind, buf, len, flags);
    if (__builtin_expect(n >= 0 && (size_t)n >= len, 1))
        return n;
    return io_fast_short(r, kind, buf, len, flags, n);
}

/* read off the fast path (`flags` is 0; `why`: IO_NOT_FAST, IO_NOT_HOOKED, IO_NO_SCHED). */
__attribute__((noinline)) static ssize_t read_slow(int fd, void *buf, size_t n, int flags,
                                                   ssize_t why)
{
    return io_slow(fd, OP_READ, buf, n, flags, why);
}

__attribute__((hot)) COHO_HOOK ssize_t read(int fd, void *buf, size_t n)
{
    return io_fast_try(fd, OP_READ, buf, n, 0, read_slow);
}

/* write off the fast path (`flags` is 0): as read_slow. */
__attribute__((noinline)) static ssize_t write_slow(int fd, void *buf, size_t n, int flags,
                                                    ssize_t why)
{
    return io_slow(fd, OP_WRITE, buf, n, flags, why);
}

__attribute__((hot)) COHO_HOOK ssize_t write(int fd, const void *buf, size_t n)
{
    return io_fast_try(fd, OP_WRITE, (void *)buf, n, 0, write_slow);
}

COHO_HOOK ssize_t readv(int fd, const struct iovec *iov, int iovcnt)
{
    int saved = errno;
    struct io_args a = {.kind = OP_READV, .iov = iov, .iovcnt = iovcnt};

    coho__sys_init();
    if (iovcnt < 0 || iovcnt > IOV_MAX || (iov == NULL && iovcnt > 0))
        return coho__sys.readv(fd, iov, iovcnt); /* libc's own error */
    return coho__posix_ret_keep(io_call(fd, &a, false), saved);
}

COHO_HOOK ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
    int saved = errno;
    struct io_args a = {.kind = OP_WRITEV, .iov = iov, .iovcnt = iovcnt};

    coho__sys_init();
    if (iovcnt < 0 || iovcnt > IOV_MAX || (iov == NULL && iovcnt > 0))
        return coho__sys.writev(fd, iov, iovcnt);
    return coho__posix_ret_keep(io_call(fd, &a, false), saved);
}

/* recv off the fast path: as read_slow. */
__attribute__((noinline)) static ssize_t recv_slow(int fd, void *buf, size_t n, int flags,
                                                   ssize_t why)
{
    return io_slow(fd, OP_RECV, buf, n, flags, why);
}

__attribute__((hot)) COHO_HOOK ssize_t recv(int fd, void *buf, size_t n, int flags)
{
    return io_fast_try(fd, OP_RECV, buf, n, flags, recv_slow);
}

COHO_HOOK ssize_t recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *addr,
                           socklen_t *alen)
{
    int saved = errno;
    struct io_args a = {
        .kind = OP_RECVFROM, .buf = buf, .len = n, .flags = flags, .addr = addr, .alen = alen};

    coho__sys_init();
    return coho__posix_ret_keep(io_call(fd, &a, (flags & MSG_DONTWAIT) != 0), saved);
}

COHO_HOOK ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
    int saved = errno;
    struct io_args a = {.kind = OP_RECVMSG, .msg = msg, .flags = flags};

    coho__sys_init();
    if (msg == NULL || (msg->msg_iov == NULL && msg->msg_iovlen > 0) || msg->msg_iovlen > IOV_MAX)
        return coho__sys.recvmsg(fd, msg, flags);
    return coho__posix_ret_keep(io_call(fd, &a, (flags & MSG_DONTWAIT) != 0), saved);
}

/* send off the fast path: as read_slow. */
__attribute__((noinline)) static ssize_t send_slow(int fd, void *buf, size_t n, int flags,
                                                   ssize_t why)
{
    return io_slow(fd, OP_SEND, buf, n, flags, why);
}

__attribute__((hot)) COHO_HOOK ssize_t send(int fd, const void *buf, size_t n, int flags)
{
    return io_fast_try(fd, OP_SEND, (void *)buf, n, flags, send_slow);
}

COHO_HOOK ssize_t sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *addr,
                         socklen_t alen)
{
    int saved = errno;
    struct io_args a = {.kind = OP_SENDTO,
                        .buf = (void *)buf,
                        .len = n,
                        .flags = flags,
                        .daddr = addr,
                        .dlen = alen};

    coho__sys_init();
    return coho__posix_ret_keep(io_call(fd, &a, (flags & MSG_DONTWAIT) != 0), saved);
}

COHO_HOOK ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
    int saved = errno;
    struct msghdr copy;
    struct io_args a = {.kind = OP_SENDMSG, .flags = flags};

    coho__sys_init();
    if (msg == NULL || (msg->msg_iov == NULL && msg->msg_iovlen > 0) || msg->msg_iovlen > IOV_MAX)
        return coho__sys.sendmsg(fd, msg, flags);
    copy = *msg; /* the write loop advances the iovec in a copy, never the
                    caller's */
    a.msg = &copy;
    return coho__posix_ret_keep(io_call(fd, &a, (flags & MSG_DONTWAIT) != 0), saved);
}

COHO_HOOK ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen)
{
    if (n > buflen)
        __chk_fail();
    return read(fd, buf, n);
}

COHO_HOOK ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags)
{
    if (n > buflen)
        __chk_fail();
    return recv(fd, buf, n, flags);
}

COHO_HOOK ssize_t __recvfrom_chk(int fd, void *buf, size_t n, size_t buflen, int flags,
                                 struct sockaddr *addr, socklen_t *alen)
{
    if (n > buflen)
        __chk_fail();
    return recvfrom(fd, buf, n, flags, addr, alen);
}

/* ---- sockets: creation, accept, connect ---- */

COHO_HOOK int socket(int domain, int type, int protocol)
{
    int fd, rc;

    coho__sys_init();
    fd = coho__sys.socket(domain, type, protocol);
    if (fd < 0 || !coho__hook_active())
        return fd;
    rc = coho__fd_adopt_new(fd, (type & SOCK_NONBLOCK) != 0, NULL);
    if (rc < 0) {
        coho__sys.close(fd);
        return (int)coho__posix_ret(rc);
    }
    return fd;
}

COHO_HOOK int socketpair(int domain, int type, int protocol, int sv[2])
{
    int rc;

    coho__sys_init();
    rc = coho__sys.socketpair(domain, type, protocol, sv);
    if (rc != 0 || !coho__hook_active())
        return rc;
    rc = coho__fd_adopt_new(sv[0], (type & SOCK_NONBLOCK) != 0, NULL);
    if (rc == 0)
        rc = coho__fd_adopt_new(sv[1], (type & SOCK_NONBLOCK) != 0, NULL);
    if (rc < 0) {
        coho__fd_forget(sv[0]);
        coho__sys.close(sv[0]);
        coho__sys.close(sv[1]);
        return (int)coho__posix_ret(rc);
    }
    return 0;
}

/* Whether a coroutine's accept on listener `lf` may make the new socket non-blocking in the
 * kernel at once (SOCK_NONBLOCK added): `lf` is an adopted, managed stream socket, so the new
 * socket is a stream socket its adoption will make non-blocking anyway (accept_adopt). */
static bool accept_nonblock_ok(const coho__fd_t *lf)
{
    return lf != NULL && lf->state == COHO__FDS_ADOPTED && lf->managed &&
           lf->kind == COHO__FD_STREAM;
}

/* Adopts an accepted socket in a coroutine (it inherits the listener's timeouts, as in the
 * kernel); on failure it is closed. `kflags`: the flags accept4 was given (the user's, plus
 * SOCK_NONBLOCK where accept_nonblock_ok). Returns the fd or -errno. */
static int accept_adopt(int nfd, int flags, int kflags, const coho__fd_t *lf)
{
    bool user_nb = (flags & SOCK_NONBLOCK) != 0;
    int rc;

    if ((kflags & ~flags & SOCK_NONBLOCK) != 0 && nfd > 2) {
        rc = coho__fd_adopt_accepted(nfd, user_nb, lf); /* no system call but epoll_ctl */
    } else {
        if ((kflags & ~flags & SOCK_NONBLOCK) != 0)
            coho__sys.fcntl(nfd, F_SETFL, 0); /* fds 0-2 keep the user's mode in the kernel */
        rc = coho__fd_adopt_new(nfd, user_nb, lf);
    }

    if (rc < 0) {
        coho__sys.close(nfd);
        return rc;
    }
    return nfd;
}

static int accept_common(int fd, struct sockaddr *addr, socklen_t *alen, int flags)
{
    bool in_co = coho__hook_active();
    coho__fd_reg_t *r = NULL;
    coho__fd_t *f;
    int64_t deadline, tmo;
    int err, nfd, rc, kflags;
    bool ring;

    if (in_co) {
        r = coho__fd_for_hook(fd, &err);
        f = r != NULL ? r->f : coho__fd_adopted(fd);
    } else {
        f = coho__fd_adopted(fd);
    }
    kflags = in_co && accept_nonblock_ok(f) ? flags | SOCK_NONBLOCK : flags;
    if (f == NULL || coho__fd_user_nonblock(f) || (in_co && r == NULL) || (!in_co && !f->managed)) {
        nfd = coho__sys.accept4(fd, addr, alen, kflags);
        if (nfd < 0)
            return -errno;
        return in_co ? accept_adopt(nfd, flags, kflags, f) : nfd;
    }
    tmo = coho__fd_rcvtimeo(f);
    deadline = tmo < 0 ? -1 : (int64_t)(coho__hook_now_ms() + (uint64_t)tmo);
    /* On the io_uring backend the accept that would block is an IORING_OP_ACCEPT (r->ring is
     * set only for a stream socket that is not keep-mode), after a try in every policy: under
     * load the queue is rarely empty, and an accept submitted without a try cost 3-6x the
     * wall time in a connect/accept storm (mio_driver/README.md). */
    ring = in_co && r->ring != COHO__OPS_OFF;
    for (;;) {
        if (f->keep_mode && !io_ready_now(fd, COHO__EV_READ)) {
            nfd = -1;
            err = EAGAIN;
        } else {
            nfd = coho__sys.accept4(fd, addr, alen, kflags);
            err = nfd < 0 ? errno : 0;
        }
        if (nfd >= 0)
            break;
        if (err != EAGAIN)
            return -err;
        if (ring) {
            int64_t left = deadline < 0 ? -1 : coho__hook_remaining(deadline, coho__hook_now_ms());
            ssize_t n;

            if (deadline >= 0 && left == 0)
                return -EAGAIN;
            n = coho__fd_ring_io(r, COHO__OP_ACCEPT, addr, 0, kflags, alen, left);
            if (n >= 0) {
                nfd = (int)n;
                break;
            }
            if (n == -ETIMEDOUT)
                return -EAGAIN; /* as the kernel's SO_RCVTIMEO */
            if (n != -EOPNOTSUPP && n != -EAGAIN)
                return (int)n; /* its error, -ECANCELED, -EBADF (`r` may be gone) */
            /* Not taken (full SQ) or handed back by a forked child's ring: the readiness way,
             * the syscall first (the edge a wait needs may have passed). */
            ring = false;
            continue;
        }
        rc = io_wait(fd, r, COHO__EV_READ, deadline);
        if (rc < 0)
            return rc == -ETIMEDOUT ? -EAGAIN : rc;
    }
    return in_co ? accept_adopt(nfd, flags, kflags, f) : nfd;
}

COHO_HOOK int accept(int fd, struct sockaddr *addr, socklen_t *alen)
{
    int saved = errno;
    coho__sys_init();
    return (int)coho__posix_ret_keep(accept_common(fd, addr, alen, 0), saved);
}

COHO_HOOK int accept4(int fd, struct sockaddr *addr, socklen_t *alen, int flags)
{
    int saved = errno;
    coho__sys_init();
    return (int)coho__posix_ret_keep(accept_common(fd, addr, alen, flags), saved);
}

/* After a connect completed: an unconnected socket polls as hung up, so the
 * hang-ups the registration recorded before may be no hang-up of this
 * connection. What holds now is asked of the kernel (a peer that wrote and
 * closed at once has hung up already). */
static void connect_resync(coho__fd_reg_t *r, int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
    uint8_t sticky = 0;

    if (r == NULL)
        return;
    if (coho__sys.poll(&p, 1, 0) > 0) {
        if (p.revents & POLLRDHUP)
            sticky |= COHO__EV_RDHUP;
        if (p.revents & POLLHUP)
            sticky |= COHO__EV_HUP;
        if (p.revents & POLLERR)
            sticky |= COHO__EV_ERROR;
    }
    r->sticky = sticky;
    r->rd_drained = false;
}

static int connect_common(int fd, const struct sockaddr *addr, socklen_t alen)
{
    bool in_co = coho__hook_active();
    coho__fd_reg_t *r = NULL;
    coho__fd_t *f;
    int64_t deadline, tmo;
    int err, first, rc;

    if (in_co) {
        r = coho__fd_for_hook(fd, &err);
        f = r != NULL ? r->f : NULL;
    } else {
        f = coho__fd_adopted(fd);
    }
    if (r != NULL && r->ring != COHO__OPS_OFF && !coho__fd_user_nonblock(f)) {
        /* The io_uring backend, a stream socket in the user's blocking view: the connect is an
         * IORING_OP_CONNECT, made without a try (a connect after a non-blocking one got
         * EINPROGRESS would say EALREADY at once). A Unix socket whose listener's backlog is
         * full completes with EAGAIN (the kernel file is non-blocking): the way below then
         * reports it as today. */
        tmo = coho__fd_sndtimeo(f);
        rc = (int)coho__fd_ring_io(r, COHO__OP_CONNECT, (void *)addr, alen, 0, NULL, tmo);
        if (rc == 0) {
            connect_resync(r, fd);
            return 0;
        }
        if (rc == -ETIMEDOUT)
            return -EINPROGRESS; /* SO_SNDTIMEO passed, as below */
        if (rc != -EOPNOTSUPP && rc != -EAGAIN && rc != -EALREADY && rc != -EINPROGRESS)
            return rc; /* its error (ECONNREFUSED, EISCONN, ...), -ECANCELED, -EBADF */
        /* Not taken, handed back by a forked child's ring, a connect already in progress
         * (which waits and then says EALREADY), or io_uring's worker made it on the
         * non-blocking file: the readiness way below. */
    }
    if (coho__sys.connect(fd, addr, alen) == 0) {
        connect_resync(r, fd);
        return 0;
    }
    first = err = errno;
    if (f == NULL || (err != EINPROGRESS && err != EALREADY) || coho__fd_user_nonblock(f) ||
        (!in_co && !f->managed))
        return -err;
    /* A blocking connect waits as long as the kernel would; with SO_SNDTIMEO it fails with
     * EINPROGRESS after that time, as Linux does, and a connect while one is in progress
     * waits again and then says EALREADY. The outcome is learnt by calling connect again,
     * which (unlike reading SO_ERROR) also moves the socket to "connected", so a later
     * connect reports EISCONN as libc's would. */
    tmo = coho__fd_sndtimeo(f);
    deadline = tmo < 0 ? -1 : (int64_t)(coho__hook_now_ms() + (uint64_t)tmo);
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};

        if (coho__sys.poll(&p, 1, 0) == 0) {
            rc = io_wait(fd, r, COHO__EV_WRITE, deadline);
            if (rc == -ETIMEDOUT)
                return -first;
            if (rc < 0)
                return rc;
            continue;
        }
        if (coho__sys.connect(fd, addr, alen) == 0 || errno == EISCONN)
            break;
        if (errno != EALREADY && errno != EINPROGRESS)
            return -errno;
        /* Writable but still in progress: wait for the next edge. */
        rc = io_wait(fd, r, COHO__EV_WRITE, deadline);
        if (rc == -ETIMEDOUT)
            return -first;
        if (rc < 0)
            return rc;
    }
    connect_resync(r, fd);
    return 0;
}

COHO_HOOK int connect(int fd, const struct sockaddr *addr, socklen_t alen)
{
    int saved = errno;
    coho__sys_init();
    return (int)coho__posix_ret_keep(connect_common(fd, addr, alen), saved);
}

/* ---- close, shutdown, dup ---- */

COHO_HOOK int close(int fd)
{
    coho__sys_init();
    coho__fd_forget(fd);
    return coho__sys.close(fd);
}

/* close_range(2): every fd of the range that coho knows is forgotten first (its waiters wake
 * with EBADF), as close does; with CLOSE_RANGE_CLOEXEC nothing is closed. */
COHO_HOOK int close_range(unsigned int first, unsigned int last, int flags)
{
    coho__sys_init();
    if (first <= last && (flags & CLOSE_RANGE_CLOEXEC) == 0)
        coho__fd_forget_range(first, last);
    if (coho__sys.close_range == NULL) /* a libc without it: the system call */
        return (int)syscall(SYS_close_range, first, last, flags);
    return coho__sys.close_range(first, last, flags);
}

COHO_HOOK void closefrom(int lowfd)
{
    coho__sys_init();
    if (lowfd >= 0)
        coho__fd_forget_range((unsigned)lowfd, UINT_MAX);
    if (coho__sys.closefrom != NULL)
        coho__sys.closefrom(lowfd);
    else if (lowfd >= 0)
        (void)syscall(SYS_close_range, (unsigned)lowfd, UINT_MAX, 0);
}

/* glibc closes a stream's fd inside fclose without going through close: the fd is forgotten
 * first, so the number is not left with a stale registration. */
COHO_HOOK int fclose(FILE *stream)
{
    coho__sys_init();
    if (stream != NULL) {
        int fd = fileno(stream);

        if (fd >= 0)
            coho__fd_forget(fd);
    }
    return coho__sys.fclose(stream);
}

COHO_HOOK int shutdown(int fd, int how)
{
    coho__sys_init();
    return coho__sys.shutdown(fd, how);
}

COHO_HOOK int dup(int fd)
{
    int nfd;

    coho__sys_init();
    nfd = coho__sys.dup(fd);
    if (nfd >= 0)
        coho__fd_on_dup(fd, nfd);
    return nfd;
}

static int dup_over(int fd, int fd2, int flags, bool is_dup3)
{
    int rc;

    if (fd != fd2 && fd2 >= 0 && coho__sys.fcntl(fd, F_GETFD) >= 0)
        coho__fd_forget(fd2); /* the kernel closes fd2: its waiters get EBADF */
    rc = is_dup3 ? coho__sys.dup3(fd, fd2, flags) : coho__sys.dup2(fd, fd2);
    if (rc >= 0 && fd != fd2)
        coho__fd_on_dup(fd, rc);
    return rc;
}

COHO_HOOK int dup2(int fd, int fd2)
{
    coho__sys_init();
    return dup_over(fd, fd2, 0, false);
}

COHO_HOOK int dup3(int fd, int fd2, int flags)
{
    coho__sys_init();
    return dup_over(fd, fd2, flags, true);
}

/* ---- fcntl, ioctl, socket options: the user's view ---- */

static int fcntl_common(int fd, int cmd, unsigned long arg)
{
    coho__fd_t *f = coho__fd_adopted(fd);
    int rc;

    switch (cmd) {
    case F_GETFL:
        rc = coho__sys.fcntl(fd, F_GETFL);
        if (rc >= 0 && f != NULL && f->ofd != NULL)
            rc = (rc & ~O_NONBLOCK) | (coho__fd_user_nonblock(f) ? O_NONBLOCK : 0);
        return rc;
    case F_SETFL:
        if (f == NULL || f->ofd == NULL || !f->managed) {
            rc = coho__sys.fcntl(fd, F_SETFL, arg);
            if (rc == 0 && f != NULL && f->ofd != NULL)
                atomic_store(&f->ofd->user_nonblock, (arg & O_NONBLOCK) != 0);
            return rc;
        }
        rc = coho__sys.fcntl(fd, F_SETFL, arg | O_NONBLOCK);
        if (rc == 0)
            atomic_store(&f->ofd->user_nonblock, (arg & O_NONBLOCK) != 0);
        return rc;
    case F_DUPFD:
    case F_DUPFD_CLOEXEC:
        rc = coho__sys.fcntl(fd, cmd, arg);
        if (rc >= 0)
            coho__fd_on_dup(fd, rc);
        return rc;
    default:
        return coho__sys.fcntl(fd, cmd, arg);
    }
}

COHO_HOOK int fcntl(int fd, int cmd, ...)
{
    unsigned long arg;
    va_list ap;

    coho__sys_init();
    va_start(ap, cmd);
    arg = va_arg(ap, unsigned long);
    va_end(ap);
    return fcntl_common(fd, cmd, arg);
}

COHO_HOOK int fcntl64(int fd, int cmd, ...)
{
    unsigned long arg;
    va_list ap;

    coho__sys_init();
    va_start(ap, cmd);
    arg = va_arg(ap, unsigned long);
    va_end(ap);
    return fcntl_common(fd, cmd, arg);
}

COHO_HOOK int ioctl(int fd, unsigned long req, ...)
{
    coho__fd_t *f;
    void *arg;
    va_list ap;

    coho__sys_init();
    va_start(ap, req);
    arg = va_arg(ap, void *);
    va_end(ap);
    f = coho__fd_adopted(fd);
    if (req == FIONBIO && f != NULL && f->ofd != NULL && arg != NULL) {
        int on = *(int *)arg;

        if (f->managed) {
            /* The kernel file stays non-blocking; only the user's view changes. */
            atomic_store(&f->ofd->user_nonblock, on != 0);
            return 0;
        }
        if (coho__sys.ioctl(fd, req, arg) != 0)
            return -1;
        atomic_store(&f->ofd->user_nonblock, on != 0);
        return 0;
    }
    return coho__sys.ioctl(fd, req, arg);
}

COHO_HOOK int setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
    coho__fd_t *f;
    int rc;

    coho__sys_init();
    rc = coho__sys.setsockopt(fd, level, name, val, len);
    if (rc != 0 || level != SOL_SOCKET || (name != SO_RCVTIMEO && name != SO_SNDTIMEO) ||
        len < (socklen_t)sizeof(struct timeval) || val == NULL)
        return rc;
    /* The timeouts belong to the socket: kept in the view every dup shares. An fd coho has
     * not adopted keeps nothing here; adoption reads them from the kernel. */
    f = coho__fd_adopted(fd);
    if (f != NULL) {
        coho__ofd_t *o = f->ofd;

        if (o != NULL)
            atomic_store(name == SO_RCVTIMEO ? &o->rcvtimeo_ms : &o->sndtimeo_ms,
                         coho__timeval_to_ms(val));
    }
    return rc;
}

COHO_HOOK int getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
    coho__sys_init();
    return coho__sys.getsockopt(fd, level, name, val, len);
}

/* ---- whole-buffer calls ---- */

static ssize_t n_result(ssize_t done, ssize_t rc, int *err)
{
    *err = rc < 0 ? (int)-rc : 0;
    if (done > 0)
        return done;
    return rc < 0 ? -1 : 0;
}

ssize_t recvn(int fd, void *buf, size_t len, int flags)
{
    ssize_t rc = 0;
    size_t done = 0;
    int err;

    if (len > SSIZE_MAX) {
        errno = EINVAL;
        return -1;
    }
    while (done < len) {
        rc = recv(fd, (char *)buf + done, len - done, flags);
        if (rc <= 0) {
            rc = rc < 0 ? -errno : 0;
            break;
        }
        done += (size_t)rc;
    }
    if (done == len)
        return (ssize_t)len;
    rc = n_result((ssize_t)done, rc, &err);
    errno = err;
    return rc;
}

/* Whether a whole-buffer write may go on after a partial transfer: not if the
 * fd was closed meanwhile (its generation moved), even if the number has a new
 * tenant: no byte of this buffer may reach a later socket. */
static bool n_same_tenant(int fd, unsigned gen0, ssize_t *rc)
{
    if (coho__fd_gen(fd) == gen0)
        return true;
    *rc = -EBADF;
    return false;
}

ssize_t sendn(int fd, const void *buf, size_t len, int flags)
{
    unsigned gen0 = coho__fd_gen(fd);
    ssize_t rc = 0;
    size_t done = 0;
    int err;

    if (len > SSIZE_MAX) {
        errno = EINVAL;
        return -1;
    }
    while (done < len) {
        if (done > 0 && !n_same_tenant(fd, gen0, &rc))
            break;
        rc = send(fd, (const char *)buf + done, len - done, flags | MSG_NOSIGNAL);
        if (rc < 0) {
            rc = -errno;
            break;
        }
        done += (size_t)rc;
    }
    if (done == len)
        return (ssize_t)len;
    rc = n_result((ssize_t)done, rc, &err);
    errno = err;
    return rc;
}

ssize_t writevn(int fd, const struct iovec *iov, int iovcnt)
{
    unsigned gen0 = coho__fd_gen(fd);
    struct iov_cursor c;
    struct iovec *alloc;
    size_t total, done = 0;
    ssize_t rc = 0;
    bool sock = true; /* until sendmsg says ENOTSOCK */
    int err;

    if (iovcnt < 0 || iovcnt > IOV_MAX || (iov == NULL && iovcnt > 0)) {
        errno = EINVAL;
        return -1;
    }
    total = iov_total(iov, iovcnt);
    if (total > SSIZE_MAX) {
        errno = EINVAL;
        return -1;
    }
    if (iov_cursor_init(&c, iov, iovcnt) != 0) {
        errno = ENOMEM;
        return -1;
    }
    alloc = c.v;
    while (done < total) {
        if (done > 0 && !n_same_tenant(fd, gen0, &rc))
            break;
        /* A socket is written with sendmsg and MSG_NOSIGNAL, as sendn: a peer that went away
         * is EPIPE, never SIGPIPE (socket_ext writes its connections through here). Any other
         * fd (ENOTSOCK: a pipe, a file) with writev. */
        if (sock) {
            struct msghdr mh = {.msg_iov = c.v, .msg_iovlen = (size_t)c.n};

            rc = sendmsg(fd, &mh, MSG_NOSIGNAL);
            if (rc < 0 && errno == ENOTSOCK) {
                sock = false;
                continue;
            }
        } else {
            rc = writev(fd, c.v, c.n);
        }
        if (rc < 0) {
            rc = -errno;
            break;
        }
        done += (size_t)rc;
        iov_cursor_advance(&c, (size_t)rc);
    }
    iov_cursor_destroy(&c, alloc);
    if (done == total)
        return (ssize_t)total;
    rc = n_result((ssize_t)done, rc, &err);
    errno = err;
    return rc;
}

/* ---- hook switch and per-fd locks ---- */

int coho_hook_enable(bool on)
{
    uint32_t *flags = coho__co_flags();

    if (flags == NULL) {
        errno = EPERM;
        return -1;
    }
    if (on)
        *flags &= ~(uint32_t)COHO__CO_FLAG_NOHOOK;
    else
        *flags |= COHO__CO_FLAG_NOHOOK;
    return 0;
}

bool coho_hook_is_enabled(void)
{
    return coho__hook_active();
}

int coho_fd_lock(int fd, int dir)
{
    coho__fd_waiter_t w;
    coho__fd_reg_t *r;
    coho__fd_t *f;
    unsigned gen0;
    int err, rc;

    if (dir != COHO_FD_LOCK_READ && dir != COHO_FD_LOCK_WRITE)
        return (int)coho__posix_ret(-EINVAL);
    if (!coho__hook_active())
        return (int)coho__posix_ret(-EPERM);
    r = coho__fd_for_hook(fd, &err);
    if (r == NULL)
        return (int)coho__posix_ret(err != 0 ? err : -EBADF);
    if (r->lock_owner[dir] == 0) {
        r->lock_owner[dir] = coho__co_self_id();
        return 0;
    }
    f = r->f;
    gen0 = r->gen;
    w.co_id = coho__co_self_id();
    w.token = coho__co_block_prepare();
    coho__co_wait_note(dir == COHO_FD_LOCK_READ ? "fd read lock fd=" : "fd write lock fd=", fd);
    w.events = 0;
    coho_list_push_back(&r->lock_q[dir], &w.link);
    rc = coho__hook_block(-1);
    if (coho_list_is_linked(&w.link)) {
        coho_list_del(&w.link); /* cancelled while queued: never became the owner */
    }
    if (atomic_load(&f->gen) != gen0)
        return (int)coho__posix_ret(-EBADF); /* closed: `r` may be gone */
    if (rc != 0 && r->lock_owner[dir] == w.co_id)
        coho_fd_unlock(fd, dir); /* handed over, then cancelled: pass it on */
    return (int)coho__posix_ret(rc);
}

int coho_fd_unlock(int fd, int dir)
{
    coho__fd_reg_t *r;
    coho_list_t *first;
    int err;

    if (dir != COHO_FD_LOCK_READ && dir != COHO_FD_LOCK_WRITE)
        return (int)coho__posix_ret(-EINVAL);
    r = coho__co_self_id() != 0 ? coho__fd_for_hook(fd, &err) : NULL;
    if (r == NULL || r->lock_owner[dir] == 0 || r->lock_owner[dir] != coho__co_self_id())
        return (int)coho__posix_ret(-EPERM);
    first = coho_list_pop_front(&r->lock_q[dir]);
    if (first == NULL) {
        r->lock_owner[dir] = 0;
        return 0;
    }
    {
        coho__fd_waiter_t *w = coho_list_entry(first, coho__fd_waiter_t, link);

        r->lock_owner[dir] = w->co_id; /* FIFO handoff */
        coho__co_wake(w->co_id, w->token, 0);
    }
    return 0;
}
