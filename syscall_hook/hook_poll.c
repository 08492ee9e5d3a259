/* SPDX-License-Identifier: MIT */
/* poll, ppoll, select, epoll_wait/epoll_pwait on a user's epoll fd, and the
 * sleep family.
 *
 * In a coroutine a multiplexing call first asks the kernel with a zero timeout;
 * if nothing is ready it parks on every watched fd's edge-triggered
 * registration at once, and asks again after each wake. revents therefore
 * always come from the kernel, exactly. */
#define _GNU_SOURCE /* IOV_MAX, POLLRDHUP, SOCK_NONBLOCK, F_DUPFD_CLOEXEC */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "base_struct/sys_net.h"
#include "syscall_hook/internal.h"

extern void __chk_fail(void) __attribute__((noreturn));

/* Fds that cannot be parked on (a type epoll cannot watch) are re-polled at this
 * interval while the call waits. */
#define POLL_RECHECK_MS 10

static unsigned poll_to_ev(short events)
{
    unsigned ev = 0;

    if (events & (POLLIN | POLLPRI | POLLRDNORM | POLLRDBAND | POLLRDHUP))
        ev |= COHO__EV_READ;
    if (events & (POLLOUT | POLLWRNORM | POLLWRBAND))
        ev |= COHO__EV_WRITE;
    return ev;
}

/* Whether a poll of the one fd `p` may park without looking first: it waits only to read, the
 * fd is a stream socket this scheduler watches, its last read emptied it, and no edge (data,
 * hang-up, error, urgent data) came since. Then nothing is ready but what the driver has yet
 * to report, and the driver's next pass reports it and wakes the poll, whose look after the
 * wake-up gives the exact revents. A client that polls before each read (libcurl, hiredis,
 * coho-bots) pays one poll per wait instead of two. */
static bool poll_parks_at_once(const struct pollfd *p)
{
    coho__fd_reg_t *r;
    int err;

    if (p->fd < 0 || p->events == 0 || (p->events & ~(POLLIN | POLLRDNORM)) != 0)
        return false;
    r = coho__fd_for_hook(p->fd, &err);
    return r != NULL && r->kind == COHO__FD_STREAM && r->rd_drained && r->sticky == 0;
}

/* A poll of the one fd `p` on the io_uring backend: a one-shot IORING_OP_POLL_ADD, whose
 * completion carries the revents, polled by the kernel when it reports (so exact, as a real
 * poll's). `parks`: poll_parks_at_once said nothing is ready; else "on" looks first with a zero
 * timeout and "submit" does not. Returns the count (1, or 0 for the timeout), -ECANCELED, or
 * 1 with `p->revents` 0 when the call must go the readiness way (the caller's loop: not taken,
 * the fd closed meanwhile, or a report of only what the ring adds, such as POLLRDHUP not asked
 * for), with `*timeout_ms` set to what is left of the timeout. */
static int poll_ring(struct pollfd *p, int64_t *timeout_ms, bool parks)
{
    short want = (short)(p->events | POLLERR | POLLHUP | POLLNVAL);
    int64_t deadline;
    coho__fd_reg_t *r;
    ssize_t res;
    int err, mode;

    if (p->fd < 0 || p->events == 0 || (r = coho__fd_for_hook(p->fd, &err)) == NULL ||
        r->keep_mode || (mode = coho__driver_ops_mode(r->drv)) == COHO__OPS_OFF)
        return 1;
    if (!parks && mode == COHO__OPS_ON) {
        int rc = coho__sys.poll(p, 1, 0);

        if (rc != 0)
            return rc < 0 ? -errno : rc;
    }
    deadline = *timeout_ms < 0 ? -1 : (int64_t)(coho__hook_now_ms() + (uint64_t)*timeout_ms);
    res = coho__fd_ring_io(r, COHO__OP_POLL, NULL, 0, (unsigned short)p->events, NULL, *timeout_ms);
    if (res > 0 && (res & want) != 0) {
        p->revents = (short)(res & want);
        return 1;
    }
    if (res == -ETIMEDOUT) {
        p->revents = 0;
        return 0;
    }
    if (res == -ECANCELED)
        return (int)res;
    /* The readiness way gets what is left of the timeout (none left: a last look). */
    if (deadline >= 0)
        *timeout_ms = coho__hook_remaining(deadline, coho__hook_now_ms());
    return 1;
}

/* poll in a coroutine. `timeout_ms` < 0: forever. Returns the count, or -errno.
 */
static int poll_co(struct pollfd *fds, nfds_t n, int64_t timeout_ms)
{
    coho__fd_waiter_t small[16];
    coho__fd_waiter_t *w = small;
    int64_t deadline;
    nfds_t i;
    int rc;

    if (n == 1 && timeout_ms != 0) {
        bool parks = poll_parks_at_once(&fds[0]);

        fds[0].revents = 0;
        rc = poll_ring(&fds[0], &timeout_ms, parks);
        if (rc != 1 || fds[0].revents != 0)
            return rc;
        /* The readiness way: look first unless nothing can be ready (and last if no time is
         * left). */
        if (!parks || timeout_ms == 0) {
            rc = coho__sys.poll(fds, n, 0);
            if (rc != 0 || timeout_ms == 0)
                return rc < 0 ? -errno : rc;
        }
    } else {
        rc = coho__sys.poll(fds, n, 0);
        if (rc != 0 || timeout_ms == 0)
            return rc < 0 ? -errno : rc;
    }
    if (n > sizeof(small) / sizeof(small[0])) {
        w = malloc(sizeof(*w) * n);
        if (w == NULL)
            return -ENOMEM;
    }
    deadline = timeout_ms < 0 ? -1 : (int64_t)(coho__hook_now_ms() + (uint64_t)timeout_ms);
    for (;;) {
        uint64_t tok = coho__co_block_prepare();
        uint64_t me = coho__co_self_id();
        bool recheck = false;
        int64_t left;

        coho__co_wait_note("poll nfds=", (int64_t)n); /* select and ppoll park here too */
        for (i = 0; i < n; i++) {
            coho__fd_reg_t *r;
            int err;

            coho_list_init(&w[i].link);
            if (fds[i].fd < 0)
                continue;
            r = coho__fd_for_hook(fds[i].fd, &err);
            if (r == NULL) {
                recheck = true;
                continue;
            }
            w[i].co_id = me;
            w[i].token = tok;
            w[i].events = poll_to_ev(fds[i].events);
            coho_list_push_back(&r->waiters, &w[i].link);
        }
        left = coho__hook_remaining(deadline, coho__hook_now_ms());
        if (recheck && (left < 0 || left > POLL_RECHECK_MS))
            left = POLL_RECHECK_MS;
        rc = coho__hook_block(left);
        for (i = 0; i < n; i++)
            coho_list_del(&w[i].link);
        if (rc == -ECANCELED)
            break;
        rc = coho__sys.poll(fds, n, 0);
        if (rc != 0) {
            if (rc < 0)
                rc = -errno;
            break;
        }
        if (deadline >= 0 && coho__hook_remaining(deadline, coho__hook_now_ms()) == 0)
            break; /* rc == 0: timed out */
    }
    if (w != small)
        free(w);
    return rc;
}

COHO_HOOK int poll(struct pollfd *fds, nfds_t n, int timeout_ms)
{
    int saved = errno;
    coho__sys_init();
    if (!coho__hook_active() || (fds == NULL && n > 0))
        return coho__sys.poll(fds, n, timeout_ms);
    return (int)coho__posix_ret_keep(poll_co(fds, n, timeout_ms < 0 ? -1 : timeout_ms), saved);
}

COHO_HOOK int __poll_chk(struct pollfd *fds, nfds_t n, int timeout_ms, size_t fdslen)
{
    if (fdslen / sizeof(*fds) < n)
        __chk_fail();
    return poll(fds, n, timeout_ms);
}

/* A timespec as milliseconds, rounded up; -1 for NULL. -EINVAL if malformed. */
static int64_t ts_to_ms(const struct timespec *ts)
{
    if (ts == NULL)
        return -1;
    if (ts->tv_sec < 0 || ts->tv_nsec < 0 || ts->tv_nsec >= 1000000000L)
        return -EINVAL;
    if (ts->tv_sec > INT64_MAX / 1000 - 1)
        return INT64_MAX / 2;
    return (int64_t)ts->tv_sec * 1000 + (ts->tv_nsec + 999999) / 1000000;
}

COHO_HOOK int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *mask)
{
    int saved = errno;
    int64_t ms;

    coho__sys_init();
    if (!coho__hook_active() || (fds == NULL && n > 0))
        return coho__sys.ppoll(fds, n, ts, mask);
    ms = ts_to_ms(ts);
    if (ts != NULL && ms < 0)
        return (int)coho__posix_ret(-EINVAL);
    /* The signal mask is not applied while parked: a signal never interrupts a
     * parked call (DESIGN.md, deliberate differences). */
    return (int)coho__posix_ret_keep(poll_co(fds, n, ms), saved);
}

COHO_HOOK int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *ts,
                          const sigset_t *mask, size_t fdslen)
{
    if (fdslen / sizeof(*fds) < n)
        __chk_fail();
    return ppoll(fds, n, ts, mask);
}

/* Copies the first `nfds` bits of a user fd_set as the kernel would read them: a bad pointer
 * gives -EFAULT instead of a crash. */
static int fdset_copy_in(fd_set *dst, const fd_set *src, int nfds)
{
    size_t bytes = (size_t)((nfds + NFDBITS - 1) / NFDBITS) * sizeof(fd_mask);
    struct iovec local = {.iov_base = dst, .iov_len = bytes};
    struct iovec remote = {.iov_base = (void *)src, .iov_len = bytes};
    ssize_t n;

    FD_ZERO(dst);
    if (src == NULL || bytes == 0)
        return 0;
    n = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
    if (n == (ssize_t)bytes)
        return 0;
    if (n < 0 && (errno == ENOSYS || errno == EPERM)) {
        memcpy(dst, src, bytes); /* no process_vm_readv here: trust the pointer */
        return 0;
    }
    return -EFAULT;
}

COHO_HOOK int select(int nfds, fd_set *r, fd_set *w, fd_set *e, struct timeval *tv)
{
    fd_set rs, ws, es;
    int saved = errno;
    struct pollfd small[32];
    struct pollfd *p = small;
    int64_t ms = -1;
    uint64_t start;
    int i, cnt = 0, rc, ready = 0;

    coho__sys_init();
    if (!coho__hook_active() || nfds < 0 || nfds > FD_SETSIZE ||
        (tv != NULL && (tv->tv_sec < 0 || tv->tv_usec < 0 || tv->tv_usec >= 1000000)))
        return coho__sys.select(nfds, r, w, e, tv); /* libc's own result, EINVAL included */
    if (tv != NULL)
        ms = tv->tv_sec > INT64_MAX / 1000 - 1
                 ? INT64_MAX / 2 /* for ever, without overflow */
                 : (int64_t)tv->tv_sec * 1000 + (tv->tv_usec + 999) / 1000;
    if (fdset_copy_in(&rs, r, nfds) != 0 || fdset_copy_in(&ws, w, nfds) != 0 ||
        fdset_copy_in(&es, e, nfds) != 0)
        return (int)coho__posix_ret(-EFAULT);
    for (i = 0; i < nfds; i++)
        if (FD_ISSET(i, &rs) || FD_ISSET(i, &ws) || FD_ISSET(i, &es))
            cnt++;
    if (cnt > (int)(sizeof(small) / sizeof(small[0]))) {
        p = malloc(sizeof(*p) * (size_t)cnt);
        if (p == NULL)
            return (int)coho__posix_ret(-ENOMEM);
    }
    cnt = 0;
    for (i = 0; i < nfds; i++) {
        short ev = 0;

        if (FD_ISSET(i, &rs))
            ev |= POLLIN;
        if (FD_ISSET(i, &ws))
            ev |= POLLOUT;
        if (FD_ISSET(i, &es))
            ev |= POLLPRI;
        if (ev != 0) {
            p[cnt].fd = i;
            p[cnt].events = ev;
            p[cnt].revents = 0;
            cnt++;
        }
    }
    start = coho__hook_now_ms();
    rc = poll_co(p, (nfds_t)cnt, ms);
    if (rc > 0) {
        for (i = 0; i < cnt; i++)
            if (p[i].revents & POLLNVAL) {
                rc = -EBADF;
                break;
            }
    }
    if (rc >= 0) {
        if (r)
            FD_ZERO(r);
        if (w)
            FD_ZERO(w);
        if (e)
            FD_ZERO(e);
        for (i = 0; i < cnt && rc > 0; i++) {
            short re = p[i].revents;

            if (r && (p[i].events & POLLIN) && (re & (POLLIN | POLLHUP | POLLERR))) {
                FD_SET(p[i].fd, r);
                ready++;
            }
            if (w && (p[i].events & POLLOUT) && (re & (POLLOUT | POLLERR))) {
                FD_SET(p[i].fd, w);
                ready++;
            }
            if (e && (p[i].events & POLLPRI) && (re & POLLPRI)) {
                FD_SET(p[i].fd, e);
                ready++;
            }
        }
        rc = ready;
        if (tv != NULL) {
            /* Linux writes back the time not slept. */
            uint64_t spent = coho__hook_now_ms() - start;
            int64_t left = ms > (int64_t)spent ? ms - (int64_t)spent : 0;

            tv->tv_sec = left / 1000;
            tv->tv_usec = (left % 1000) * 1000;
        }
    }
    if (p != small)
        free(p);
    return (int)coho__posix_ret_keep(rc, saved);
}

static int epoll_co(int epfd, struct epoll_event *ev, int max, int64_t timeout_ms)
{
    coho__fd_reg_t *f;
    int64_t deadline;
    int err, rc;

    rc = coho__sys.epoll_wait(epfd, ev, max, 0);
    if (rc != 0 || timeout_ms == 0)
        return rc < 0 ? -errno : rc;
    f = coho__fd_for_hook(epfd, &err);
    if (f == NULL)
        return err != 0 ? err : -EINVAL;
    deadline = timeout_ms < 0 ? -1 : (int64_t)(coho__hook_now_ms() + (uint64_t)timeout_ms);
    for (;;) {
        int64_t left = coho__hook_remaining(deadline, coho__hook_now_ms());

        if (deadline >= 0 && left == 0)
            return 0;
        rc = coho__fd_wait(f, COHO__EV_READ, left);
        if (rc != 0 && rc != -ETIMEDOUT)
            return rc;
        rc = coho__sys.epoll_wait(epfd, ev, max, 0);
        if (rc != 0)
            return rc < 0 ? -errno : rc;
    }
}

COHO_HOOK int epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout_ms)
{
    int saved = errno;
    coho__sys_init();
    if (!coho__hook_active() || ev == NULL || max <= 0)
        return coho__sys.epoll_wait(epfd, ev, max, timeout_ms);
    return (int)coho__posix_ret_keep(epoll_co(epfd, ev, max, timeout_ms < 0 ? -1 : timeout_ms),
                                     saved);
}

COHO_HOOK int epoll_pwait(int epfd, struct epoll_event *ev, int max, int timeout_ms,
                          const sigset_t *mask)
{
    int saved = errno;
    coho__sys_init();
    if (!coho__hook_active() || ev == NULL || max <= 0)
        return coho__sys.epoll_pwait(epfd, ev, max, timeout_ms, mask);
    return (int)coho__posix_ret_keep(epoll_co(epfd, ev, max, timeout_ms < 0 ? -1 : timeout_ms),
                                     saved);
}

/* ---- sleeping ---- */

COHO_HOOK unsigned int sleep(unsigned int s)
{
    coho__sys_init();
    if (!coho__hook_active())
        return coho__sys.sleep(s);
    if (s == 0) {
        coho_yield();
        return 0;
    }
    return coho__hook_sleep_ms((uint64_t)s * 1000u) == 0 ? 0 : s;
}

COHO_HOOK int usleep(useconds_t us)
{
    coho__sys_init();
    if (!coho__hook_active())
        return coho__sys.usleep(us);
    if (us == 0) {
        coho_yield();
        return 0;
    }
    return (int)coho__posix_ret(coho__hook_sleep_ns((uint64_t)us * 1000u));
}

COHO_HOOK int nanosleep(const struct timespec *req, struct timespec *rem)
{
    uint64_t ns;

    coho__sys_init();
    if (!coho__hook_active() || req == NULL)
        return coho__sys.nanosleep(req, rem);
    if (req->tv_sec < 0 || req->tv_nsec < 0 || req->tv_nsec >= 1000000000L)
        return (int)coho__posix_ret(-EINVAL);
    if (req->tv_sec == 0 && req->tv_nsec == 0) {
        coho_yield();
        return 0;
    }
    ns = (uint64_t)req->tv_sec > (UINT64_MAX - 1000000000u) / 1000000000u
             ? UINT64_MAX
             : (uint64_t)req->tv_sec * 1000000000u + (uint64_t)req->tv_nsec;
    return (int)coho__posix_ret(coho__hook_sleep_ns(ns));
}
