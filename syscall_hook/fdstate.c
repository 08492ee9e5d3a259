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
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>

#include "syscall_hook/internal.h"

/* Two-level table: chunks of FD_CHUNK slots, allocated on first use and never
 * freed, so a slot pointer read without the lock stays valid for the life of
 * the process. */
#define FD_CHUNK_SHIFT COHO__FD_CHUNK_SHIFT
#define FD_CHUNK       (1u << FD_CHUNK_SHIFT)
#define FD_LIMIT_MAX   (1u << 22)

_Atomic(coho__fd_t *) *coho__fd_chunks;
unsigned coho__fd_limit; /* slots addressable: a multiple of FD_CHUNK */
static pthread_mutex_t fd_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t fd_once = PTHREAD_ONCE_INIT;
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
    coho__fd_chunks = calloc(coho__fd_limit / FD_CHUNK, sizeof(*coho__fd_chunks));
    if (coho__fd_chunks == NULL) {
        coho__fd_limit = 0; /* every hook passes straight through */
        return;
    }
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
                chunk[i].rcvtimeo_ms = -1;
                chunk[i].sndtimeo_ms = -1;
                coho_list_init(&chunk[i].waiters);
                coho_list_init(&chunk[i].lock_q[0]);
                coho_list_init(&chunk[i].lock_q[1]);
            }
            atomic_store_explicit(&coho__fd_chunks[(unsigned)fd >> FD_CHUNK_SHIFT], chunk,
                                  memory_order_release);
        }
    }
    pthread_mutex_unlock(&fd_lock);
    return chunk != NULL ? &chunk[(unsigned)fd & (FD_CHUNK - 1)] : NULL;
}

uint64_t coho__hook_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Driver callback for an adopted fd (on the owner's thread): record readiness
 * and wake the coroutines that wait for it. */
static void fd_on_event(coho__io_t *io, unsigned events)
{
    coho__fd_t *f = io->data;
    coho_list_t *pos, *tmp;
    const unsigned bad = COHO__EV_HUP | COHO__EV_ERROR;

    if (events & (COHO__EV_READ | COHO__EV_RDHUP | bad))
        f->rd_drained = false;
    f->sticky |= (uint8_t)(events & (COHO__EV_RDHUP | bad));
    coho_list_for_each_safe(pos, tmp, &f->waiters)
    {
        coho__fd_waiter_t *w = coho_list_entry(pos, coho__fd_waiter_t, link);
        bool hit = (w->events & events) != 0 || (events & bad) != 0 ||
                   ((w->events & COHO__EV_READ) && (events & COHO__EV_RDHUP));

        if (hit) {
            coho_list_del(&w->link);
            coho__co_wake(w->co_id, w->token, 0);
        }
    }
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

static coho__ofd_t *ofd_create(bool nonblock)
{
    coho__ofd_t *o = malloc(sizeof(*o));

    if (o != NULL) {
        atomic_init(&o->refs, 1);
        atomic_init(&o->user_nonblock, nonblock);
    }
    return o;
}

static void ofd_put(coho__ofd_t *o)
{
    if (o != NULL && atomic_fetch_sub_explicit(&o->refs, 1, memory_order_acq_rel) == 1)
        free(o);
}

/* Registers `f` (fd_lock held) with the current scheduler's driver. `ofd` NULL:
 * new view from the kernel flags. `keep` < 0: decide keep-mode from the fd;
 * 0/1: as a dup's original says. Returns 0, 1 (pass through: unwatchable) or
 * -errno. */
static int fd_adopt_locked(coho__fd_t *f, coho__ofd_t *ofd, int keep)
{
    coho_sched_t *s = coho__sched_current();
    coho__driver_t *d;
    struct stat st;
    bool watchable;
    int flags, rc;

    if (s == NULL)
        return 1;
    d = coho__sched_driver(s);
    if (fstat(f->fd, &st) != 0)
        return -errno;
    f->kind = fd_kind_of(f->fd, &st, &watchable);
    if (!watchable) {
        f->state = COHO__FDS_PASSTHROUGH;
        return 1;
    }
    flags = coho__sys.fcntl(f->fd, F_GETFL);
    if (flags < 0)
        return -errno;
    if (keep >= 0)
        f->keep_mode = keep != 0;
    else
        f->keep_mode = f->fd <= 2 || f->kind == COHO__FD_TTY || fd_is_inherited(f->fd);
    if (ofd == NULL) {
        ofd = ofd_create((flags & O_NONBLOCK) != 0);
        if (ofd == NULL)
            return -ENOMEM;
    } else {
        atomic_fetch_add_explicit(&ofd->refs, 1, memory_order_relaxed);
    }
    /* Every adopted fd but the keep-mode ones runs non-blocking in the kernel;
     * the user's blocking view lives in the shared ofd and is emulated by the
     * hooks. */
    f->managed = !f->keep_mode;
    if (f->managed && !(flags & O_NONBLOCK) &&
        coho__sys.fcntl(f->fd, F_SETFL, flags | O_NONBLOCK) != 0) {
        rc = -errno;
        ofd_put(ofd);
        return rc;
    }
    coho__io_init(&f->io, f->fd, fd_on_event, f);
    rc = coho__io_start(d, &f->io, COHO__EV_READ | COHO__EV_WRITE, COHO__IO_EDGE, -1);
    if (rc != 0) {
        if (f->managed && (flags & O_NONBLOCK) == 0)
            coho__sys.fcntl(f->fd, F_SETFL, flags); /* give back the mode it had */
        ofd_put(ofd);
        f->managed = false;
        if (rc == -EPERM) {
            f->state = COHO__FDS_PASSTHROUGH;
            return 1;
        }
        return rc;
    }
    f->ofd = ofd;
    f->rd_drained = false;
    f->sticky = 0;
    f->owner = s;
    f->drv = d;
    f->state = COHO__FDS_ADOPTED;
    return 0;
}

coho__fd_t *coho__fd_for_hook_slow(int fd, int *err)
{
    coho__fd_t *f;
    int rc;

    *err = 0;
    f = fd_slot_if_exists(fd);
    if (f != NULL && f->state == COHO__FDS_ADOPTED)
        return f;
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
    rc = f->state == COHO__FDS_UNKNOWN ? fd_adopt_locked(f, NULL, -1) : 0;
    pthread_mutex_unlock(&fd_lock);
    if (rc < 0) {
        *err = rc == -EBADF ? -EBADF : 0;
        return NULL;
    }
    return f->state == COHO__FDS_ADOPTED ? f : NULL;
}

int coho__fd_adopt_new(int fd, bool user_nonblock)
{
    coho__fd_t *f = coho__fd_slot(fd);
    coho__ofd_t *o;
    int rc;

    if (f == NULL)
        return 0; /* beyond the table: the fd simply stays unhooked */
    o = ofd_create(user_nonblock);
    if (o == NULL)
        return -ENOMEM;
    pthread_mutex_lock(&fd_lock);
    fd_clear_inherited(fd);
    if (f->state != COHO__FDS_UNKNOWN) {
        /* A stale tenant closed behind coho's back (glibc-internal close): start
         * afresh. */
        atomic_fetch_add_explicit(&f->gen, 1, memory_order_relaxed);
        f->state = COHO__FDS_UNKNOWN;
        ofd_put(f->ofd);
        f->ofd = NULL;
    }
    rc = fd_adopt_locked(f, o, -1);
    pthread_mutex_unlock(&fd_lock);
    ofd_put(o); /* fd_adopt_locked took its own reference */
    return rc < 0 ? rc : 0;
}

/* Removes the registration and wakes every waiter with -EBADF. Runs on the
 * owner's thread. */
static void fd_detach(coho__fd_t *f)
{
    coho_list_t *pos, *tmp;
    int i;

    if (f->drv != NULL)
        coho__io_stop(f->drv, &f->io);
    coho_list_for_each_safe(pos, tmp, &f->waiters)
    {
        coho__fd_waiter_t *w = coho_list_entry(pos, coho__fd_waiter_t, link);

        coho_list_del(&w->link);
        coho__co_wake(w->co_id, w->token, -EBADF);
    }
    for (i = 0; i < 2; i++) {
        coho_list_for_each_safe(pos, tmp, &f->lock_q[i])
        {
            coho__fd_waiter_t *w = coho_list_entry(pos, coho__fd_waiter_t, link);

            coho_list_del(&w->link);
            coho__co_wake(w->co_id, w->token, -EBADF);
        }
        f->lock_owner[i] = 0;
    }
}

static void fd_reset_locked(coho__fd_t *f)
{
    atomic_fetch_add_explicit(&f->gen, 1, memory_order_release);
    f->state = COHO__FDS_UNKNOWN;
    ofd_put(f->ofd);
    f->ofd = NULL;
    f->owner = NULL;
    f->drv = NULL;
    f->managed = false;
    f->keep_mode = false;
    f->rd_drained = false;
    f->sticky = 0;
    f->rcvtimeo_ms = -1;
    f->sndtimeo_ms = -1;
}

/* Cross-thread detach: the owner's thread removes the registration; the closing
 * thread waits for it, so the real close never races the owner's epoll set. */
struct fd_remote {
    coho__fd_t *f;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
};

static void fd_remote_detach(void *arg)
{
    struct fd_remote *r = arg;

    fd_detach(r->f);
    pthread_mutex_lock(&r->mu);
    r->done = true;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

void coho__fd_forget(int fd)
{
    coho__fd_t *f = fd_slot_if_exists(fd);

    if (f == NULL)
        return;
    fd_clear_inherited(fd);
    if (f->state == COHO__FDS_UNKNOWN)
        return;
    if (f->state == COHO__FDS_ADOPTED && f->owner != NULL && f->owner != coho__sched_current()) {
        struct fd_remote r = {.f = f, .done = false};

        pthread_mutex_init(&r.mu, NULL);
        pthread_cond_init(&r.cv, NULL);
        if (coho__sched_post(f->owner, fd_remote_detach, &r) == 0) {
            pthread_mutex_lock(&r.mu);
            while (!r.done)
                pthread_cond_wait(&r.cv, &r.mu);
            pthread_mutex_unlock(&r.mu);
        }
        pthread_cond_destroy(&r.cv);
        pthread_mutex_destroy(&r.mu);
    } else if (f->state == COHO__FDS_ADOPTED) {
        fd_detach(f);
    }
    pthread_mutex_lock(&fd_lock);
    fd_reset_locked(f);
    pthread_mutex_unlock(&fd_lock);
}

void coho__fd_on_dup(int oldfd, int newfd)
{
    coho__fd_t *o = fd_slot_if_exists(oldfd);
    coho__fd_t *n;

    if (o == NULL || o->state != COHO__FDS_ADOPTED || o->ofd == NULL)
        return;
    n = coho__fd_slot(newfd);
    if (n == NULL)
        return;
    pthread_mutex_lock(&fd_lock);
    fd_clear_inherited(newfd);
    if (n->state == COHO__FDS_UNKNOWN && coho__sched_current() != NULL) {
        if (fd_adopt_locked(n, o->ofd, o->keep_mode) == 0) {
            n->rcvtimeo_ms = o->rcvtimeo_ms;
            n->sndtimeo_ms = o->sndtimeo_ms;
        }
    }
    pthread_mutex_unlock(&fd_lock);
}

/* A scheduler is going away with its driver: forget every registration that
 * lived there. */
static void fd_sched_gone(coho_sched_t *s)
{
    unsigned c, i;

    pthread_mutex_lock(&fd_lock);
    for (c = 0; c < coho__fd_limit / FD_CHUNK; c++) {
        coho__fd_t *chunk = atomic_load_explicit(&coho__fd_chunks[c], memory_order_acquire);

        for (i = 0; chunk != NULL && i < FD_CHUNK; i++) {
            coho__fd_t *f = &chunk[i];

            if (f->state == COHO__FDS_ADOPTED && f->owner == s) {
                if (f->drv != NULL)
                    coho__io_stop(f->drv, &f->io);
                /* The fd stays open in the user's hands: give the kernel file back its
                 * blocking mode if coho changed it. */
                if (f->managed) {
                    int fl = coho__sys.fcntl(f->fd, F_GETFL);

                    if (fl >= 0)
                        coho__sys.fcntl(f->fd, F_SETFL, fl & ~O_NONBLOCK);
                }
                fd_reset_locked(f);
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

static void fd_foreign_event(coho__io_t *io, unsigned events)
{
    coho__fd_waiter_t *w = io->data;

    (void)events;
    coho__co_wake(w->co_id, w->token, 0);
}

/* A coroutine of another scheduler waits on an fd owned elsewhere: a temporary
 * level-triggered registration in its own driver. The kernel drops that
 * registration silently if the fd is closed, so the wait re-checks the
 * generation at least every 100 ms. */
static int fd_wait_foreign(coho__fd_t *f, unsigned events, int64_t timeout_ms)
{
    coho__driver_t *d = coho__sched_driver(coho__sched_current());
    unsigned gen0 = atomic_load_explicit(&f->gen, memory_order_acquire);
    int64_t deadline = timeout_ms < 0 ? -1 : (int64_t)(coho__hook_now_ms() + (uint64_t)timeout_ms);
    coho__fd_waiter_t w;
    coho__io_t io;
    int rc;

    w.co_id = coho__co_self_id();
    coho__io_init(&io, f->fd, fd_foreign_event, &w);
    for (;;) {
        int64_t left = coho__hook_remaining(deadline, coho__hook_now_ms());
        int64_t slice = left < 0 || left > 100 ? 100 : left;

        w.token = coho__co_block_prepare();
        coho__co_wait_note(fd_wait_what(events), f->fd);
        rc = coho__io_start(d, &io, events & (COHO__EV_READ | COHO__EV_WRITE), 0, -1);
        if (rc != 0)
            return rc;
        rc = coho__hook_block(slice);
        coho__io_stop(d, &io);
        if (atomic_load_explicit(&f->gen, memory_order_acquire) != gen0)
            return -EBADF;
        if (rc != -ETIMEDOUT)
            return rc;
        if (deadline >= 0 && coho__hook_remaining(deadline, coho__hook_now_ms()) == 0)
            return -ETIMEDOUT;
    }
}

int coho__fd_wait(coho__fd_t *f, unsigned events, int64_t timeout_ms)
{
    coho__fd_waiter_t w;
    unsigned gen0;
    int rc;

    if (f->owner != coho__sched_current())
        return fd_wait_foreign(f, events, timeout_ms);
    gen0 = atomic_load_explicit(&f->gen, memory_order_acquire);
    w.co_id = coho__co_self_id();
    w.token = coho__co_block_prepare();
    coho__co_wait_note(fd_wait_what(events), f->fd);
    w.events = events;
    coho_list_push_back(&f->waiters, &w.link);
    rc = coho__hook_block(timeout_ms);
    coho_list_del(&w.link);
    if (atomic_load_explicit(&f->gen, memory_order_acquire) != gen0)
        return -EBADF;
    return rc;
}

int coho__fd_wait_thread(int fd, unsigned events, int64_t timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = 0};
    int rc;

    if (events & COHO__EV_READ)
        p.events |= POLLIN;
    if (events & COHO__EV_WRITE)
        p.events |= POLLOUT;
    rc = coho__sys.poll(
        &p, 1, timeout_ms < 0 ? -1 : (timeout_ms > INT32_MAX ? INT32_MAX : (int)timeout_ms));
    if (rc < 0)
        return -errno;
    if (rc == 0)
        return -ETIMEDOUT;
    if (p.revents & POLLNVAL)
        return -EBADF;
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
