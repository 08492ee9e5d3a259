/* SPDX-License-Identifier: MIT */
/* The per-fd state table: lazy adoption, the edge-triggered registration,
 * waiters, the user's O_NONBLOCK view per open file description, and close/dup
 * bookkeeping. */
#define _GNU_SOURCE /* IOV_MAX, POLLRDHUP, SOCK_NONBLOCK, F_DUPFD_CLOEXEC */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>

#include "base_struct/sys_net.h"
#include "syscall_hook/internal.h"

/* Two-level table: chunks of FD_CHUNK slots, allocated on first use and never
 * freed, so a slot pointer read without the lock stays valid for the life of
 * the process. */
#define FD_CHUNK_SHIFT COHO__FD_CHUNK_SHIFT
#define FD_CHUNK       (1u << FD_CHUNK_SHIFT)
#define FD_LIMIT_MAX   COHO__FD_LIMIT_MAX

_Atomic(coho__fd_t *) coho__fd_chunks[COHO__FD_LIMIT_MAX >> COHO__FD_CHUNK_SHIFT];
unsigned coho__fd_limit; /* slots addressable: a multiple of FD_CHUNK */
static pthread_mutex_t fd_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t fd_once = PTHREAD_ONCE_INIT;
static pthread_once_t fd_atfork_once = PTHREAD_ONCE_INIT;
static coho__ofd_t *ofd_free; /* released ofd records, under fd_lock */
__thread coho_sched_t *coho__fd_tls_sched __attribute__((tls_model("initial-exec")));
static unsigned char *fd_inherited; /* bitmap: open when the library was loaded */
static unsigned fd_inherited_count; /* bits in fd_inherited */

static void fd_sched_gone(coho_sched_t *s);

static void fd_table_init(void)
{
    struct rlimit rl;
    rlim_t lim = 65536;
    DIR *dir;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max != RLIM_INFINITY)
        lim = rl.rlim_max > lim ? rl.rlim_max : lim;
    if (lim > FD_LIMIT_MAX)
        lim = FD_LIMIT_MAX;
    coho__fd_limit = (unsigned)((lim + FD_CHUNK - 1) & ~(rlim_t)(FD_CHUNK - 1));
    /* fds open now were inherited (across exec, or opened before coho was
     * loaded): coho never switches them to O_NONBLOCK (DESIGN.md, fd readiness).
     */
    dir = opendir("/proc/self/fd");
    if (dir != NULL) {
        struct dirent *de;
        int self = dirfd(dir);

        fd_inherited_count = coho__fd_limit;
        fd_inherited = calloc(coho__fd_limit / 8, 1);
        while (fd_inherited != NULL && (de = readdir(dir)) != NULL) {
            long n = strtol(de->d_name, NULL, 10);

            if (de->d_name[0] >= '0' && de->d_name[0] <= '9' && n != self && n >= 0 &&
                (unsigned long)n < coho__fd_limit)
                fd_inherited[n / 8] |= (unsigned char)(1u << (n % 8));
        }
        closedir(dir);
    }
    coho__sched_on_destroy(fd_sched_gone);
}

static bool fd_is_inherited(int fd)
{
    return fd_inherited != NULL && (unsigned)fd < fd_inherited_count &&
           (fd_inherited[fd / 8] & (1u << (fd % 8))) != 0;
}

static void fd_clear_inherited(int fd)
{
    if (fd_inherited != NULL && (unsigned)fd < fd_inherited_count)
        fd_inherited[fd / 8] &= (unsigned char)~(1u << (fd % 8));
}

__attribute__((constructor(102))) static void fd_constructor(void)
{
    pthread_once(&fd_once, fd_table_init);
}

static coho__fd_t *fd_slot_if_exists(int fd)
{
    return coho__fd_slot_if_exists(fd);
}

coho__fd_t *coho__fd_slot(int fd)
{
    coho__fd_t *f, *chunk;
    unsigned base, i;

    pthread_once(&fd_once, fd_table_init);
    f = fd_slot_if_exists(fd);
    if (f != NULL || fd < 0 || (unsigned)fd >= coho__fd_limit)
        return f;
    pthread_mutex_lock(&fd_lock);
    chunk = atomic_load_explicit(&coho__fd_chunks[(unsigned)fd >> FD_CHUNK_SHIFT],
                                 memory_order_acquire);
    if (chunk == NULL) {
        chunk = calloc(FD_CHUNK, sizeof(*chunk));
        if (chunk != NULL) {
            base = (unsigned)fd & ~(FD_CHUNK - 1);
            for (i = 0; i < FD_CHUNK; i++) {
                chunk[i].fd = (int)(base + i);
                coho_list_init(&chunk[i].regs);
            }
            atomic_store_explicit(&coho__fd_chunks[(unsigned)fd >> FD_CHUNK_SHIFT], chunk,
                                  memory_order_release);
        }
    }
    pthread_mutex_unlock(&fd_lock);
    return chunk != NULL ? &chunk[(unsigned)fd & (FD_CHUNK - 1)] : NULL;
}

static uint8_t fd_kind_of(int fd, const struct stat *st, bool *watchable)
{
    *watchable = true;
    if (S_ISSOCK(st->st_mode)) {
        int type = 0;
        socklen_t len = sizeof(type);

        if (coho__sys.getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0) {
            if (type == SOCK_STREAM)
                return COHO__FD_STREAM;
            if (type == SOCK_SEQPACKET)
                return COHO__FD_SEQPACKET;
        }
        return COHO__FD_DGRAM;
    }
    if (S_ISFIFO(st->st_mode))
        return COHO__FD_PIPE;
    if (S_ISCHR(st->st_mode)) {
        struct termios t;

        return coho__sys.ioctl(fd, TCGETS, &t) == 0 ? COHO__FD_TTY : COHO__FD_OTHER;
    }
    if (S_ISREG(st->st_mode) || S_ISDIR(st->st_mode) || S_ISBLK(st->st_mode) ||
        S_ISLNK(st->st_mode))
        *watchable = false;
    return COHO__FD_OTHER; /* anon inodes: eventfd, epoll, timerfd, signalfd ...
                            */
}

/* ---- the user's view records ---- */

/* A fresh view (fd_lock held). Records come from a free list and are never freed, so a thread
 * that read a slot's ofd pointer just before a close still reads valid memory. */
static coho__ofd_t *ofd_create_locked(bool nonblock, int64_t rcvtimeo, int64_t sndtimeo)
{
    coho__ofd_t *o = ofd_free;

    if (o != NULL)
        ofd_free = o->next_free;
    else if ((o = malloc(sizeof(*o))) == NULL)
        return NULL;
    o->next_free = NULL;
    atomic_store(&o->refs, 1);
    atomic_store(&o->user_nonblock, nonblock);
    atomic_store(&o->rcvtimeo_ms, rcvtimeo);
    atomic_store(&o->sndtimeo_ms, sndtimeo);
    return o;
}

static void ofd_put_locked(coho__ofd_t *o)
{
    if (o != NULL && atomic_fetch_sub_explicit(&o->refs, 1, memory_order_acq_rel) == 1) {
        o->next_free = ofd_free;
        ofd_free = o;
    }
}

/* A socket option timeout in ms (-1: none) as the kernel holds it. */
static int64_t sock_timeo_ms(int fd, int opt)
{
    struct timeval tv;
    socklen_t len = sizeof(tv);

    if (coho__sys.getsockopt(fd, SOL_SOCKET, opt, &tv, &len) != 0 || len < sizeof(tv))
        return -1;
    return coho__timeval_to_ms(&tv);
}

int64_t coho__timeval_to_ms(const struct timeval *tv)
{
    int64_t ms;

    if (tv->tv_sec < 0 || tv->tv_usec < 0)
        return -1;
    if (tv->tv_sec > INT64_MAX / 1000 - 1)
        return INT64_MAX / 2; /* ~146 million years: for ever, without overflow */
    ms = (int64_t)tv->tv_sec * 1000 + (tv->tv_usec + 999) / 1000;
    return ms == 0 ? -1 : ms;
}

/* ---- registrations ---- */

/* Driver callback for a registration (on its scheduler's thread): record readiness and wake
 * the coroutines that wait for it. */
static void fd_on_event(coho__io_t *io, unsigned events)
{
    coho__fd_reg_t *r = io->data;
    coho_list_t *pos, *tmp;
    const unsigned bad = COHO__EV_HUP | COHO__EV_ERROR;

    if (events & (COHO__EV_READ | COHO__EV_RDHUP | COHO__EV_PRI | bad))
        r->rd_drained = false;
    r->sticky |= (uint8_t)(events & (COHO__EV_RDHUP | COHO__EV_PRI | bad));
    coho_list_for_each_safe(pos, tmp, &r->waiters)
    {
        coho__fd_waiter_t *w = coho_list_entry(pos, coho__fd_waiter_t, link);
        bool hit;

        if (w->events & COHO__FD_WAIT_RING)
            continue; /* its operation's completion wakes it */
        hit = (w->events & events) != 0 || (events & bad) != 0 ||
              ((w->events & COHO__EV_READ) && (events & (COHO__EV_RDHUP | COHO__EV_PRI)));

        if (hit) {
            coho_list_del(&w->link);
            coho__co_wake(w->co_id, w->token, 0);
        }
    }
}

/* A coroutine waiting in coho__fd_ring_io (on its stack). */
typedef struct ring_wait {
    coho__fd_waiter_t w;
    coho__op_t op;
    bool done;      /* the operation's completion arrived */
    bool closed;    /* a close cancelled it */
    bool cancelled; /* its IORING_OP_ASYNC_CANCEL is queued */
} ring_wait_t;

/* Stops `r`'s registration and wakes everything parked on it with -EBADF. On `r`'s thread. */
static void reg_stop(coho__fd_reg_t *r)
{
    coho_list_t *pos, *tmp;
    int i;

    if (r->released)
        return;
    r->released = true;
    /* After a close on another thread the number may be closed or reused by now: only the
     * driver's record goes (that thread made the EPOLL_CTL_DEL). */
    if (r->kernel_gone)
        coho__io_forget(r->drv, &r->io);
    else
        coho__io_stop(r->drv, &r->io);
    coho_list_for_each_safe(pos, tmp, &r->waiters)
    {
        coho__fd_waiter_t *w = coho_list_entry(pos, coho__fd_waiter_t, link);

        coho_list_del(&w->link);
        if (w->events & COHO__FD_WAIT_RING) {
            /* Its operation holds a reference to the file: cancel it now, before the real
             * close, so the close releases the socket. The coroutine waits for the
             * operation's completion before it returns. */
            ring_wait_t *rw = coho_container_of(w, ring_wait_t, w);

            rw->closed = true;
            rw->cancelled = coho__op_cancel(r->drv, &rw->op, true) == 0;
        }
        coho__co_wake(w->co_id, w->token, -EBADF);
    }
    for (i = 0; i < 2; i++) {
        coho_list_for_each_safe(pos, tmp, &r->lock_q[i])
        {
            coho__fd_waiter_t *w = coho_list_entry(pos, coho__fd_waiter_t, link);

            coho_list_del(&w->link);
            coho__co_wake(w->co_id, w->token, -EBADF);
        }
        r->lock_owner[i] = 0;
    }
}

/* The post a closing thread sends to a registration's scheduler. */
static void reg_release_posted(void *arg)
{
    coho__fd_reg_t *r = arg;

    reg_stop(r);
    free(r);
}

/* Releases registrations taken off a slot (fd_lock held): this thread's at once; another
 * scheduler's are removed from its epoll set here (so the real close that follows never leaves
 * one behind a dup) and released by a post to that scheduler. Never waits. */
static void regs_release_locked(coho_list_t *taken)
{
    coho_sched_t *self = coho__sched_current();
    coho_list_t *pos;

    while ((pos = coho_list_pop_front(taken)) != NULL) {
        coho__fd_reg_t *r = coho_list_entry(pos, coho__fd_reg_t, link);

        if (r->sched == self) {
            reg_stop(r);
            free(r);
            continue;
        }
        coho__io_kernel_del(r->drv, &r->io);
        r->kernel_gone = true;
        /* Posted under fd_lock: the scheduler's destroy drops its registrations under the same
         * lock before its driver goes, so the driver is alive here and runs the post (in its
         * loop, or in its destroy). */
        if (coho__sched_post(r->sched, reg_release_posted, r) != 0) {
            /* Out of memory for the post: the registration stays with its (stale) driver entry;
             * the next adoption of the number on that scheduler stops it (fd_reg_create). */
            coho_log_warn("fd %d: cannot post the release of its registration to scheduler %p; "
                          "its waiters wake when the number is reused there",
                          r->io.fd, (void *)r->sched);
        }
    }
}

/* Takes every registration off `f` and forgets its description (fd_lock held); the
 * registrations go to `taken`. */
static void fd_reset_locked(coho__fd_t *f, coho_list_t *taken)
{
    atomic_fetch_add_explicit(&f->gen, 1, memory_order_acq_rel);
    f->state = COHO__FDS_UNKNOWN;
    f->sched0 = NULL;
    f->reg0 = NULL;
    coho_list_splice_back(taken, &f->regs);
    ofd_put_locked(f->ofd);
    f->ofd = NULL;
    f->managed = false;
    f->keep_mode = false;
}

static void fd_atfork_prepare(void)
{
    pthread_mutex_lock(&fd_lock);
}

static void fd_atfork_parent(void)
{
    pthread_mutex_unlock(&fd_lock);
}

/* The child has one thread: registrations of other threads' schedulers can never be released
 * by their (absent) threads, and a close in the child must not wait for them. They are taken
 * off their slots and left with their drivers, which no thread runs in the child. */
static void fd_atfork_child(void)
{
    coho_sched_t *self = coho__sched_current();
    unsigned c, i;

    pthread_mutex_init(&fd_lock, NULL);
    for (c = 0; c < coho__fd_limit / FD_CHUNK; c++) {
        coho__fd_t *chunk = atomic_load_explicit(&coho__fd_chunks[c], memory_order_acquire);

        for (i = 0; chunk != NULL && i < FD_CHUNK; i++) {
            coho__fd_t *f = &chunk[i];
            coho_list_t *pos, *tmp;

            coho_list_for_each_safe(pos, tmp, &f->regs)
            {
                coho__fd_reg_t *r = coho_list_entry(pos, coho__fd_reg_t, link);

                if (r->sched != self)
                    coho_list_del(&r->link);
            }
            if (f->sched0 != NULL && f->sched0 != self) {
                f->sched0 = NULL;
                f->reg0 = NULL;
            }
        }
    }
}

/* Registered once a scheduler exists, after mio_driver's handlers: prepare handlers run in
 * reverse order, so fd_lock is taken before the driver's post locks, the order forget uses. */
static void fd_atfork_register(void)
{
    pthread_atfork(fd_atfork_prepare, fd_atfork_parent, fd_atfork_child);
}

/* This scheduler's registration of `f` (fd_lock held, state ADOPTED), made if missing.
 * Returns it, or NULL with *err = -errno. */
static coho__fd_reg_t *fd_reg_get_locked(coho__fd_t *f, int *err)
{
    coho_sched_t *s = coho__fd_cur_sched();
    coho__driver_t *d = coho__sched_driver(s);
    unsigned gen = atomic_load_explicit(&f->gen, memory_order_relaxed);
    coho__fd_reg_t *r;
    coho__io_t *old;
    coho_list_t *pos;
    int rc;

    coho_list_for_each(pos, &f->regs)
    {
        r = coho_list_entry(pos, coho__fd_reg_t, link);
        if (r->sched == s)
            goto found;
    }
    pthread_once(&fd_atfork_once, fd_atfork_register);
    /* A registration of an earlier tenant of the number that a close on another thread took
     * off the slot, whose release is still on its way here: stop it now (the post frees it). */
    old = coho__driver_io_at(d, f->fd);
    if (old != NULL && old->cb == fd_on_event)
        reg_stop(old->data);
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        *err = -ENOMEM;
        return NULL;
    }
    r->f = f;
    r->ofd = f->ofd;
    r->gen = gen;
    r->kind = f->kind;
    r->keep_mode = f->keep_mode;
    r->ring = f->kind == COHO__FD_STREAM && !f->keep_mode ? (uint8_t)coho__driver_ops_mode(d)
                                                          : (uint8_t)COHO__OPS_OFF;
    r->sched = s;
    r->drv = d;
    coho_list_init(&r->waiters);
    coho_list_init(&r->lock_q[0]);
    coho_list_init(&r->lock_q[1]);
    coho__io_init(&r->io, f->fd, fd_on_event, r);
    rc = coho__io_start(d, &r->io, COHO__EV_READ | COHO__EV_WRITE, COHO__IO_EDGE, -1);
    if (rc != 0) {
        free(r);
        *err = rc;
        return NULL;
    }
    coho_list_push_back(&f->regs, &r->link);
found:
    if (f->reg0 == NULL) {
        f->reg0 = r; /* reg0 before sched0: see coho__fd_for_hook */
        f->sched0 = s;
    }
    *err = 0;
    return r;
}

/* Learns what `f`'s fd is and adopts it (fd_lock held): kind, keep-mode, O_NONBLOCK underneath,
 * the user's view (`ofd`, or a new one from the kernel's flags and timeouts), then this
 * scheduler's registration. `keep` < 0: decide keep-mode from the fd; 0/1: as a dup's original
 * says. Returns 0, 1 (pass through: unwatchable) or -errno. */
static int fd_adopt_locked(coho__fd_t *f, coho__ofd_t *ofd, int keep)
{
    struct stat st;
    bool watchable, keep_mode;
    uint8_t kind;
    int flags, rc;

    if (coho__sched_current() == NULL)
        return 1;
    if (fstat(f->fd, &st) != 0)
        return -errno;
    kind = fd_kind_of(f->fd, &st, &watchable);
    if (!watchable) {
        f->kind = kind;
        f->state = COHO__FDS_PASSTHROUGH;
        return 1;
    }
    flags = coho__sys.fcntl(f->fd, F_GETFL);
    if (flags < 0)
        return -errno;
    if (keep >= 0)
        keep_mode = keep != 0;
    else
        keep_mode = f->fd <= 2 || kind == COHO__FD_TTY || fd_is_inherited(f->fd);
    if (ofd == NULL) {
        bool sock = S_ISSOCK(st.st_mode);

        ofd = ofd_create_locked((flags & O_NONBLOCK) != 0,
                                sock ? sock_timeo_ms(f->fd, SO_RCVTIMEO) : -1,
                                sock ? sock_timeo_ms(f->fd, SO_SNDTIMEO) : -1);
        if (ofd == NULL)
            return -ENOMEM;
    } else {
        atomic_fetch_add_explicit(&ofd->refs, 1, memory_order_relaxed);
    }
    /* Every adopted fd but the keep-mode ones runs non-blocking in the kernel; the user's
     * blocking view lives in the shared ofd and is emulated by the hooks. */
    if (!keep_mode && !(flags & O_NONBLOCK) &&
        coho__sys.fcntl(f->fd, F_SETFL, flags | O_NONBLOCK) != 0) {
        rc = -errno;
        ofd_put_locked(ofd);
        return rc;
    }
    f->kind = kind;
    f->keep_mode = keep_mode;
    f->managed = !keep_mode;
    f->ofd = ofd;
    f->state = COHO__FDS_ADOPTED;
    if (fd_reg_get_locked(f, &rc) == NULL) {
        coho_list_t none;

        if (!keep_mode && (flags & O_NONBLOCK) == 0)
            coho__sys.fcntl(f->fd, F_SETFL, flags); /* give back the mode it had */
        coho_list_init(&none);
        fd_reset_locked(f, &none);
        if (rc == -EPERM) {
            f->state = COHO__FDS_PASSTHROUGH;
            return 1;
        }
        return rc;
    }
    return 0;
}

coho__fd_reg_t *coho__fd_for_hook_slow(int fd, int *err)
{
    coho__fd_reg_t *r = NULL;
    coho__fd_t *f;
    int rc;

    *err = 0;
    f = fd_slot_if_exists(fd);
    if (f != NULL && f->state == COHO__FDS_PASSTHROUGH)
        return NULL;
    if (fd < 0) {
        *err = -EBADF;
        return NULL;
    }
    f = coho__fd_slot(fd);
    if (f == NULL)
        return NULL;
    pthread_mutex_lock(&fd_lock);
    if (f->state == COHO__FDS_UNKNOWN) {
        rc = fd_adopt_locked(f, NULL, -1);
        if (rc == 0)
            r = fd_reg_get_locked(f, &rc);
    } else if (f->state == COHO__FDS_ADOPTED) {
        r = fd_reg_get_locked(f, &rc);
    } else {
        rc = 0;
    }
    pthread_mutex_unlock(&fd_lock);
    if (r == NULL)
        *err = rc == -EBADF ? -EBADF : 0;
    return r;
}

int coho__fd_adopt_new(int fd, bool user_nonblock, const coho__fd_t *from)
{
    coho__fd_t *f = coho__fd_slot(fd);
    coho_list_t taken;
    coho__ofd_t *o;
    int rc;

    if (f == NULL)
        return 0; /* beyond the table: the fd simply stays unhooked */
    coho_list_init(&taken);
    pthread_mutex_lock(&fd_lock);
    fd_clear_inherited(fd);
    /* Whatever the slot holds belongs to an earlier tenant closed behind coho's back (a raw
     * close, or one inside another library): start afresh. */
    fd_reset_locked(f, &taken);
    regs_release_locked(&taken);
    o = ofd_create_locked(user_nonblock, from != NULL ? coho__fd_rcvtimeo(from) : -1,
                          from != NULL ? coho__fd_sndtimeo(from) : -1);
    if (o == NULL) {
        pthread_mutex_unlock(&fd_lock);
        return -ENOMEM;
    }
    rc = fd_adopt_locked(f, o, -1);
    ofd_put_locked(o); /* fd_adopt_locked took its own reference */
    pthread_mutex_unlock(&fd_lock);
    return rc < 0 ? rc : 0;
}

/* fd_adopt_locked for a stream socket whose kind and kernel mode are known (an accepted socket
 * made with SOCK_NONBLOCK by a managed stream listener, fd > 2): no fstat, getsockopt or fcntl,
 * only the registration. On a failure the kernel file gets the user's mode back. Returns 0, 1
 * (pass through) or -errno. */
static int fd_adopt_known_locked(coho__fd_t *f, coho__ofd_t *ofd)
{
    int rc;

    if (coho__sched_current() == NULL)
        return 1;
    atomic_fetch_add_explicit(&ofd->refs, 1, memory_order_relaxed);
    f->kind = COHO__FD_STREAM;
    f->keep_mode = false;
    f->managed = true;
    f->ofd = ofd;
    f->state = COHO__FDS_ADOPTED;
    if (fd_reg_get_locked(f, &rc) == NULL) {
        coho_list_t none;

        if (!atomic_load_explicit(&ofd->user_nonblock, memory_order_relaxed))
            coho__sys.fcntl(f->fd, F_SETFL, 0); /* the blocking mode the user asked for */
        coho_list_init(&none);
        fd_reset_locked(f, &none);
        if (rc == -EPERM) {
            f->state = COHO__FDS_PASSTHROUGH;
            return 1;
        }
        return rc;
    }
    return 0;
}

int coho__fd_adopt_accepted(int fd, bool user_nonblock, const coho__fd_t *from)
{
    coho__fd_t *f = coho__fd_slot(fd);
    coho_list_t taken;
    coho__ofd_t *o;
    int rc;

    if (f == NULL) {
        if (!user_nonblock)
            coho__sys.fcntl(fd, F_SETFL, 0); /* stays unhooked, in the user's mode */
        return 0;
    }
    coho_list_init(&taken);
    pthread_mutex_lock(&fd_lock);
    fd_clear_inherited(fd);
    fd_reset_locked(f, &taken);
    regs_release_locked(&taken);
    o = ofd_create_locked(user_nonblock, coho__fd_rcvtimeo(from), coho__fd_sndtimeo(from));
    if (o == NULL) {
        pthread_mutex_unlock(&fd_lock);
        return -ENOMEM;
    }
    rc = fd_adopt_known_locked(f, o);
    ofd_put_locked(o); /* fd_adopt_known_locked took its own reference */
    pthread_mutex_unlock(&fd_lock);
    return rc < 0 ? rc : 0;
}

void coho__fd_forget(int fd)
{
    coho__fd_t *f = fd_slot_if_exists(fd);
    coho_list_t taken;

    if (f == NULL)
        return;
    coho_list_init(&taken);
    pthread_mutex_lock(&fd_lock);
    fd_clear_inherited(fd);
    if (f->state == COHO__FDS_UNKNOWN)
        atomic_fetch_add_explicit(&f->gen, 1, memory_order_acq_rel); /* for sendn's check */
    else
        fd_reset_locked(f, &taken);
    regs_release_locked(&taken);
    pthread_mutex_unlock(&fd_lock);
}

void coho__fd_forget_range(unsigned first, unsigned last)
{
    unsigned fd;

    if (coho__fd_limit == 0 || first >= coho__fd_limit)
        return;
    if (last >= coho__fd_limit)
        last = coho__fd_limit - 1;
    for (fd = first; fd <= last; fd++) {
        if (atomic_load_explicit(&coho__fd_chunks[fd >> FD_CHUNK_SHIFT], memory_order_acquire) ==
            NULL) {
            fd |= FD_CHUNK - 1; /* no slot of this chunk was ever used */
            continue;
        }
        coho__fd_forget((int)fd);
    }
}

void coho__fd_on_dup(int oldfd, int newfd)
{
    coho__fd_t *o = fd_slot_if_exists(oldfd);
    coho__fd_t *n;
    coho_list_t taken;

    if (o == NULL || o->state != COHO__FDS_ADOPTED)
        return;
    n = coho__fd_slot(newfd);
    if (n == NULL)
        return;
    coho_list_init(&taken);
    pthread_mutex_lock(&fd_lock);
    fd_clear_inherited(newfd);
    fd_reset_locked(n, &taken); /* the new number's previous tenant is gone */
    regs_release_locked(&taken);
    if (o->state == COHO__FDS_ADOPTED && o->ofd != NULL) {
        if (coho__sched_current() != NULL) {
            fd_adopt_locked(n, o->ofd, o->keep_mode);
        } else {
            /* A plain thread: the description and view now, a registration on first use in a
             * coroutine. */
            atomic_fetch_add_explicit(&o->ofd->refs, 1, memory_order_relaxed);
            n->kind = o->kind;
            n->keep_mode = o->keep_mode;
            n->managed = o->managed;
            n->ofd = o->ofd;
            n->state = COHO__FDS_ADOPTED;
        }
    }
    pthread_mutex_unlock(&fd_lock);
}

/* A scheduler is going away with its driver: drop its registrations. An fd no other scheduler
 * waits on goes back to the kernel mode of the user's view and is forgotten; it stays open in
 * the user's hands. */
static void fd_sched_gone(coho_sched_t *s)
{
    unsigned c, i;

    if (coho__fd_tls_sched == s)
        coho__fd_tls_sched = NULL; /* destroy runs on the scheduler's own thread */
    pthread_mutex_lock(&fd_lock);
    for (c = 0; c < coho__fd_limit / FD_CHUNK; c++) {
        coho__fd_t *chunk = atomic_load_explicit(&coho__fd_chunks[c], memory_order_acquire);

        for (i = 0; chunk != NULL && i < FD_CHUNK; i++) {
            coho__fd_t *f = &chunk[i];
            coho_list_t *pos, *tmp;
            bool had = false;

            coho_list_for_each_safe(pos, tmp, &f->regs)
            {
                coho__fd_reg_t *r = coho_list_entry(pos, coho__fd_reg_t, link);

                if (r->sched != s)
                    continue;
                had = true;
                coho_list_del(&r->link);
                reg_stop(r);
                free(r);
            }
            if (f->sched0 == s) {
                f->sched0 = NULL;
                f->reg0 = NULL;
            }
            if (had && coho_list_is_empty(&f->regs) && f->state == COHO__FDS_ADOPTED) {
                coho_list_t none;

                if (f->managed && !coho__fd_user_nonblock(f)) {
                    int fl = coho__sys.fcntl(f->fd, F_GETFL);

                    if (fl >= 0)
                        coho__sys.fcntl(f->fd, F_SETFL, fl & ~O_NONBLOCK);
                }
                coho_list_init(&none);
                fd_reset_locked(f, &none);
            }
        }
    }
    pthread_mutex_unlock(&fd_lock);
}

/* The label of an fd wait in coho_sched_dump ("read fd=7"): '=' makes the dump print the fd
 * right after it. */
static const char *fd_wait_what(unsigned events)
{
    if ((events & COHO__EV_READ) && (events & COHO__EV_WRITE))
        return "read/write fd=";
    return (events & COHO__EV_WRITE) ? "write fd=" : "read fd=";
}

int coho__fd_wait(coho__fd_reg_t *r, unsigned events, int64_t timeout_ms)
{
    coho__fd_t *f = r->f;
    unsigned gen0 = r->gen;
    coho__fd_waiter_t w;
    int rc;

    /* One read-modify-write both checks the tenancy and publishes this coroutine's calls on the
     * fd so far. A close on any thread increments `gen` (acq_rel) before the real close, so it
     * reads this release: the calls the waiter made happen before the close that wakes it, and
     * a close from another thread does not race with the call that parked here. */
    if (atomic_fetch_add_explicit(&f->gen, 0, memory_order_acq_rel) != gen0 || r->released)
        return -EBADF;
    w.co_id = coho__co_self_id();
    w.token = coho__co_block_prepare();
    coho__co_wait_note(fd_wait_what(events), f->fd);
    w.events = events;
    coho_list_push_back(&r->waiters, &w.link);
    /* coho__co_block, not coho__hook_block: the scheduler keeps errno per coroutine across the
     * park, and every hook that waits here puts the caller's errno back when it returns
     * (coho__posix_ret_keep), so a second save and restore would only cost. */
    rc = coho__co_block(timeout_ms);
    coho_list_del(&w.link); /* a release unlinked it already; the node is self-linked then */
    /* Checked without touching `r`: a close since the park may have freed it. */
    if (atomic_load_explicit(&f->gen, memory_order_acquire) != gen0)
        return -EBADF;
    return rc;
}

/* A ring operation's completion (the driver's thread, inside its wait). */
static void ring_op_done(coho__op_t *op)
{
    ring_wait_t *rw = op->data;

    rw->done = true;
    coho__co_wake(rw->w.co_id, rw->w.token, 0);
}

/* The label of a ring operation's park (as the readiness waits': the dump and parks_io count them
 * the same way). */
static const char *ring_wait_what(int kind)
{
    if (kind == COHO__OP_POLL)
        return "poll nfds="; /* as the readiness way's poll, with 1 as the value */
    return fd_wait_what(kind == COHO__OP_RECV || kind == COHO__OP_RECVMSG || kind == COHO__OP_ACCEPT
                            ? COHO__EV_READ
                            : COHO__EV_WRITE);
}

ssize_t coho__fd_ring_io(coho__fd_reg_t *r, int kind, void *buf, size_t len, int flags, void *buf2,
                         int64_t timeout_ms)
{
    coho__fd_t *f = r->f;
    coho__driver_t *drv = r->drv; /* r may be freed by a close: the driver outlives the park */
    unsigned gen0 = r->gen;
    ring_wait_t rw;
    int rc;

    /* As coho__fd_wait: checks the tenancy and publishes this coroutine's calls so far. */
    if (atomic_fetch_add_explicit(&f->gen, 0, memory_order_acq_rel) != gen0 || r->released)
        return -EBADF;
    rw.op.cb = ring_op_done;
    rw.op.data = &rw;
    rw.done = false;
    rw.closed = false;
    rw.cancelled = false;
    rc = coho__op_submit(drv, &rw.op, kind, f->fd, buf, len, flags, buf2);
    if (rc < 0)
        return -EOPNOTSUPP;
    rw.w.co_id = coho__co_self_id();
    rw.w.token = coho__co_block_prepare();
    coho__co_wait_note(ring_wait_what(kind), kind == COHO__OP_POLL ? 1 : f->fd);
    rw.w.events = COHO__FD_WAIT_RING;
    coho_list_push_back(&r->waiters, &rw.w.link);
    rc = coho__co_block(timeout_ms);
    coho_list_del(&rw.w.link); /* a release unlinked it already; the node is self-linked then */
    if (!rw.done) {
        /* Timed out, cancelled or closed: the kernel still owns `buf`. Cancel the operation
         * (a close did already) and wait for its completion, whatever else happens. */
        while (!rw.done) {
            if (!rw.cancelled)
                rw.cancelled = coho__op_cancel(drv, &rw.op, false) == 0;
            if (!rw.cancelled || coho_is_cancelled()) {
                /* A park would return ECANCELED at once; a cancel the full SQ refused is
                 * tried again after the loop has run. */
                coho_yield();
                continue;
            }
            rw.w.token = coho__co_block_prepare();
            coho__co_wait_note(ring_wait_what(kind), kind == COHO__OP_POLL ? 1 : f->fd);
            if (rw.done)
                break;
            (void)coho__co_block(-1);
        }
    }
    if (atomic_load_explicit(&f->gen, memory_order_acquire) != gen0) {
        /* The fd was closed (another coroutine's close may have come after the completion,
         * before this coroutine ran): `r` may be freed, and the call reports EBADF as the
         * readiness way does, whose look after the wake-up finds the fd closed. Only an
         * accepted fd is returned (it is the caller's, and would leak otherwise). */
        if (kind == COHO__OP_ACCEPT && rw.op.res >= 0)
            return rw.op.res;
        return -EBADF;
    }
    if (rw.op.res != -ECANCELED) {
        /* It completed on its own: bytes (kept, whatever ended the wait), EOF, or its error;
         * -EAGAIN (a forked child's ring could not take it) makes the caller retry. A wait ended
         * by a timeout, a cancel or a close reports that, as the readiness way does, unless
         * bytes moved: an EOF (0) is not lost by it, since a stream's next read sees it again. */
        if (rc == 0 || rw.op.res > 0 || rw.op.res == -EAGAIN ||
            (rw.op.res == 0 && kind >= COHO__OP_ACCEPT))
            return rw.op.res; /* an accept's fd 0 and a connect that succeeded count too */
        return rc;
    }
    /* The cancel won: why the wait ended (a cancel no one here asked for: -ECANCELED). */
    if (rw.closed)
        return -EBADF;
    return rc < 0 ? rc : -ECANCELED;
}

/* True when every installed handler of a signal that can interrupt a call has SA_RESTART: a
 * blocking call libc makes would then restart after any signal that interrupts it. (Fault
 * signals are raised by an instruction, never while a call waits; abort does not return.) */
static bool signals_restart(void)
{
    int sig;

    for (sig = 1; sig < NSIG; sig++) {
        struct sigaction sa;

        if (sig == SIGSEGV || sig == SIGBUS || sig == SIGFPE || sig == SIGILL || sig == SIGTRAP ||
            sig == SIGSYS || sig == SIGABRT)
            continue;
        if (sigaction(sig, NULL, &sa) != 0)
            continue;
        if ((sa.sa_flags & SA_SIGINFO) == 0 &&
            (sa.sa_handler == SIG_DFL || sa.sa_handler == SIG_IGN))
            continue;
        if ((sa.sa_flags & SA_RESTART) == 0)
            return false;
    }
    return true;
}

int coho__fd_wait_thread(int fd, unsigned events, int64_t timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = 0};
    int64_t deadline = timeout_ms < 0 ? -1 : (int64_t)(coho__hook_now_ms() + (uint64_t)timeout_ms);
    int rc;

    if (events & COHO__EV_READ)
        p.events |= POLLIN;
    if (events & COHO__EV_WRITE)
        p.events |= POLLOUT;
    for (;;) {
        int64_t left = coho__hook_remaining(deadline, coho__hook_now_ms());

        rc = coho__sys.poll(&p, 1, left < 0 ? -1 : (left > INT32_MAX ? INT32_MAX : (int)left));
        if (rc >= 0)
            break;
        /* Socket calls with a timeout are never restarted by the kernel (signal(7)). */
        if (errno != EINTR || timeout_ms >= 0 || !signals_restart())
            return -errno;
    }
    if (rc == 0)
        return -ETIMEDOUT;
    if (p.revents & POLLNVAL)
        return -EBADF;
    return 0;
}

int coho__hook_sleep_ns(uint64_t ns)
{
    int saved = errno;

    if (coho_sleep_ns(ns) != 0)
        return -errno;
    errno = saved;
    return 0;
}

int coho__hook_sleep_ms(uint64_t ms)
{
    int rc;

    coho__co_block_prepare();
    coho__co_wait_note("sleep", -1);
    rc = coho__hook_block(ms > INT64_MAX ? INT64_MAX : (int64_t)ms);
    return rc == -ETIMEDOUT ? 0 : rc;
}
