/* SPDX-License-Identifier: MIT */
/* The poller over io_uring: readiness through IORING_OP_POLL_ADD, with raw syscalls and the
 * mmap'd rings (no liburing). Operations (recv, send, ...) are not submitted through the ring:
 * the hooks still make those calls themselves; the ring replaces epoll only.
 *
 * - An edge-triggered registration is one multishot poll (IORING_POLL_ADD_MULTI, edge mode);
 *   a level-triggered one is a one-shot poll re-armed after each completion, which reports
 *   again at the next wait while the fd stays ready.
 * - Every SQE queued between two waits (adds, removals, re-arms) goes to the kernel in the
 *   io_uring_enter that waits for completions (IORING_ENTER_GETEVENTS with the timeout in
 *   IORING_ENTER_EXT_ARG): one system call per loop iteration, like epoll_wait. A zero-timeout
 *   wait with nothing to submit and nothing pending (IORING_SQ_TASKRUN clear) makes none.
 * - user_data is fd | sequence << 32, a fresh sequence per registration: a completion whose
 *   user_data is not the current one of its fd slot (an earlier tenant of the number, a
 *   cancelled request) is dropped, never reported with a later registration's token.
 * - Removal: an ADD not handed to the kernel yet becomes a NOP in place; otherwise an
 *   IORING_OP_ASYNC_CANCEL by user_data, submitted at once with GETEVENTS so the cancelled
 *   request (and its reference to the file) is gone before the caller closes the fd. Not
 *   IORING_OP_POLL_REMOVE: it fails with -EALREADY and leaves the poll armed when a wake-up's
 *   task work is pending (with DEFER_TASKRUN: any wake-up since the last wait, such as the one
 *   a shutdown() makes), and the poll would then keep the socket open after close().
 * - The ring is IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN where the kernel has
 *   them: completions are processed only inside the driver's io_uring_enter, so they never
 *   interrupt the thread's other system calls. Older kernels get COOP_TASKRUN or a plain ring.
 * - fork: the child unmaps the parent's rings (shared memory it must not touch), closes the
 *   inherited fd and makes a ring of its own. */
#include <errno.h>
#include <linux/io_uring.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base_struct/sys.h"
#include "coho/log.h"
#include "mio_driver/internal.h"

#define URING_SQ_ENTRIES  512
#define URING_CQ_ENTRIES  8192
#define URING_MAX_EVENTS  256
#define URING_UD_INTERNAL 0 /* removals and NOPs: never a registration (sequences start at 1) */
/* An operation's user_data: slot index | URING_OP_BIT, generation << 32. Poll registrations
 * carry an fd number there, always below URING_FD_LIMIT. */
#define URING_OP_BIT   (UINT64_C(1) << 30)
#define URING_FD_LIMIT (1 << 30)
#define URING_OPS_MAX  (1u << 22)

typedef struct uop_slot {
    coho__op_t *op; /* in flight, or NULL (free) */
    uint32_t gen;   /* bumped at every use: a stale completion never matches */
    uint32_t next;  /* free list */
} uop_slot_t;

typedef struct ufd {
    uint64_t udata;   /* user_data of the registration's poll, 0: none */
    uint64_t token;   /* the driver's token, reported with its events */
    uint32_t ev;      /* EPOLL* bits; EPOLLET: multishot */
    uint32_t sqe_pos; /* SQ position of its ADD while sqe_pending */
    bool sqe_pending; /* its ADD sits in the SQ, maybe not handed to the kernel yet */
    bool armed;       /* a poll request is (or is about to be) in the kernel */
    bool pri_check;   /* an urgent-data check (pri_check_queue) is on its way */
} ufd_t;

struct coho__uring {
    int fd;
    unsigned setup_flags;
    void *sq_map, *cq_map;
    size_t sq_map_sz, cq_map_sz;
    struct io_uring_sqe *sqes;
    size_t sqes_sz;
    unsigned *sq_khead, *sq_ktail, *sq_kflags, sq_mask, sq_entries;
    unsigned *cq_khead, *cq_ktail, cq_mask;
    struct io_uring_cqe *cqes;
    unsigned sq_tail;   /* next free SQ position (published to the kernel at each enter) */
    unsigned submitted; /* positions before this have been consumed by the kernel */
    ufd_t *fds;
    size_t nfds;
    uint32_t seq;
    /* operations (coho__op_submit): slots, a free list through uop_slot_t.next */
    uop_slot_t *ops;
    uint32_t nops, ops_cap, ops_free, ops_live;
    uint64_t ring_ops; /* operations completed */
    int ops_mode;      /* COHO__OPS_* from $COHO_URING_OPS */
};

#define URING_NO_SLOT UINT32_MAX

static int sys_setup(unsigned entries, struct io_uring_params *p)
{
    long rc = syscall(__NR_io_uring_setup, entries, p);

    return rc < 0 ? -errno : (int)rc;
}

static void ring_unmap(struct coho__uring *u)
{
    if (u->sqes != NULL && u->sqes != MAP_FAILED)
        munmap(u->sqes, u->sqes_sz);
    if (u->cq_map != NULL && u->cq_map != MAP_FAILED && u->cq_map != u->sq_map)
        munmap(u->cq_map, u->cq_map_sz);
    if (u->sq_map != NULL && u->sq_map != MAP_FAILED)
        munmap(u->sq_map, u->sq_map_sz);
    u->sqes = NULL;
    u->cq_map = NULL;
    u->sq_map = NULL;
}

/* Makes the ring and maps it. Returns 0 or -errno. */
static int ring_setup(struct coho__uring *u)
{
    static const unsigned tries[] = {
        IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER |
            IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
        IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN |
            IORING_SETUP_TASKRUN_FLAG,
        IORING_SETUP_CQSIZE,
    };
    struct io_uring_params p;
    const char *fail = getenv("COHO_BACKEND_URING_FAIL"); /* test-only: act as if refused */
    int fd = -EINVAL;

    if (fail != NULL && fail[0] == '1')
        return -EPERM;
    for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
        memset(&p, 0, sizeof(p));
        p.flags = tries[i];
        p.cq_entries = URING_CQ_ENTRIES;
        fd = sys_setup(URING_SQ_ENTRIES, &p);
        if (fd >= 0 || fd != -EINVAL)
            break;
    }
    if (fd < 0)
        return fd;
    u->fd = fd;
    u->setup_flags = p.flags;
    if ((p.features & (IORING_FEAT_NODROP | IORING_FEAT_EXT_ARG)) !=
        (IORING_FEAT_NODROP | IORING_FEAT_EXT_ARG)) {
        coho__sys_base.close(fd);
        u->fd = -1;
        return -ENOSYS; /* before 5.11: no timeout with the wait, completions may drop */
    }
    u->sq_map_sz = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    u->cq_map_sz = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    if (p.features & IORING_FEAT_SINGLE_MMAP) {
        if (u->cq_map_sz > u->sq_map_sz)
            u->sq_map_sz = u->cq_map_sz;
        u->cq_map_sz = u->sq_map_sz;
    }
    u->sq_map = mmap(NULL, u->sq_map_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                     IORING_OFF_SQ_RING);
    if (u->sq_map == MAP_FAILED)
        goto fail;
    if (p.features & IORING_FEAT_SINGLE_MMAP) {
        u->cq_map = u->sq_map;
    } else {
        u->cq_map = mmap(NULL, u->cq_map_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                         IORING_OFF_CQ_RING);
        if (u->cq_map == MAP_FAILED)
            goto fail;
    }
    u->sqes_sz = p.sq_entries * sizeof(struct io_uring_sqe);
    u->sqes = mmap(NULL, u->sqes_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                   IORING_OFF_SQES);
    if (u->sqes == MAP_FAILED)
        goto fail;

    char *sq = u->sq_map, *cq = u->cq_map;

    u->sq_khead = (unsigned *)(sq + p.sq_off.head);
    u->sq_ktail = (unsigned *)(sq + p.sq_off.tail);
    u->sq_kflags = (unsigned *)(sq + p.sq_off.flags);
    u->sq_mask = *(unsigned *)(sq + p.sq_off.ring_mask);
    u->sq_entries = p.sq_entries;
    unsigned *array = (unsigned *)(sq + p.sq_off.array);

    for (unsigned i = 0; i < p.sq_entries; i++)
        array[i] = i; /* SQE i always sits in slot i */
    u->cq_khead = (unsigned *)(cq + p.cq_off.head);
    u->cq_ktail = (unsigned *)(cq + p.cq_off.tail);
    u->cq_mask = *(unsigned *)(cq + p.cq_off.ring_mask);
    u->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
    u->sq_tail = __atomic_load_n(u->sq_ktail, __ATOMIC_RELAXED);
    u->submitted = u->sq_tail;
    return 0;

fail : {
    int err = errno;

    ring_unmap(u);
    coho__sys_base.close(fd);
    u->fd = -1;
    return -err;
}
}

/* Hands every queued SQE to the kernel and, with IORING_ENTER_GETEVENTS in `flags`, waits for
 * `min` completions. Returns io_uring_enter's result (-errno on failure). */
static int ring_enter(struct coho__uring *u, unsigned min, unsigned flags, void *arg, size_t argsz)
{
    unsigned n = u->sq_tail - u->submitted;
    long rc;

    if (n != 0)
        __atomic_store_n(u->sq_ktail, u->sq_tail, __ATOMIC_RELEASE);
    rc = syscall(__NR_io_uring_enter, u->fd, n, min, flags, arg, argsz);
    if (rc < 0)
        rc = -errno;
    u->submitted = __atomic_load_n(u->sq_khead, __ATOMIC_ACQUIRE);
    return (int)rc;
}

/* A zeroed SQE at the tail, or NULL if the SQ stays full after handing it to the kernel. */
static struct io_uring_sqe *sqe_get(struct coho__uring *u)
{
    if (u->sq_tail - __atomic_load_n(u->sq_khead, __ATOMIC_ACQUIRE) >= u->sq_entries) {
        ring_enter(u, 0, 0, NULL, 0);
        if (u->sq_tail - __atomic_load_n(u->sq_khead, __ATOMIC_ACQUIRE) >= u->sq_entries)
            return NULL;
    }
    struct io_uring_sqe *sqe = &u->sqes[u->sq_tail & u->sq_mask];

    memset(sqe, 0, sizeof(*sqe));
    return sqe;
}

static bool sqe_unsubmitted(const struct coho__uring *u, const ufd_t *s)
{
    return s->sqe_pending && (int32_t)(s->sqe_pos - u->submitted) >= 0;
}

/* Queues the POLL_ADD of `s` (fd `fd`). */
static int ufd_arm(struct coho__uring *u, int fd, ufd_t *s)
{
    struct io_uring_sqe *sqe = sqe_get(u);

    if (sqe == NULL)
        return -EAGAIN;
    sqe->opcode = IORING_OP_POLL_ADD;
    sqe->fd = fd;
    /* Not EPOLLPRI: a multishot poll reports the wake-up's key rather than polling the file
     * again, and every TCP data arrival wakes with EPOLLIN | EPOLLPRI, which would mark every
     * socket as having urgent data (sticky in the hooks, turning their "drained" shortcut off).
     * Urgent data is checked for by pri_check_queue instead. */
    sqe->poll32_events = s->ev & ~(uint32_t)(EPOLLET | EPOLLONESHOT | EPOLLEXCLUSIVE | EPOLLPRI);
    sqe->len = (s->ev & EPOLLET) ? IORING_POLL_ADD_MULTI : 0;
    sqe->user_data = s->udata;
    s->sqe_pos = u->sq_tail;
    s->sqe_pending = true;
    s->armed = true;
    u->sq_tail++;
    return 0;
}

/* Takes `s`'s poll out: its unsubmitted ADD becomes a NOP, a submitted one gets an
 * ASYNC_CANCEL (which, unlike POLL_REMOVE, also cancels a poll whose wake-up is still pending).
 * Returns true if a removal was queued. */
static bool ufd_disarm(struct coho__uring *u, ufd_t *s)
{
    bool queued = false;

    if (sqe_unsubmitted(u, s)) {
        struct io_uring_sqe *sqe = &u->sqes[s->sqe_pos & u->sq_mask];

        memset(sqe, 0, sizeof(*sqe));
        sqe->opcode = IORING_OP_NOP;
        sqe->user_data = URING_UD_INTERNAL;
    } else if (s->armed) {
        struct io_uring_sqe *sqe = sqe_get(u);

        if (sqe != NULL) {
            sqe->opcode = IORING_OP_ASYNC_CANCEL;
            sqe->fd = -1;
            sqe->addr = s->udata;
            sqe->user_data = URING_UD_INTERNAL;
            u->sq_tail++;
            queued = true;
        }
    }
    s->sqe_pending = false;
    s->armed = false;
    return queued;
}

/* A readable event of a registration that wants EPOLLPRI: queue a one-shot EPOLLPRI poll and,
 * right behind it, its removal. Arming polls the file for real, so the poll completes at once
 * (EPOLLPRI reported) only if urgent data is there; otherwise the removal cancels it. Both go
 * with the next io_uring_enter: no system call of its own. user_data: the registration's with
 * bit 31 set. */
#define URING_PRI_BIT (UINT64_C(1) << 31)

static void pri_check_queue(struct coho__uring *u, int fd, ufd_t *s)
{
    struct io_uring_sqe *sqe;

    if (s->pri_check ||
        u->sq_entries - (u->sq_tail - __atomic_load_n(u->sq_khead, __ATOMIC_ACQUIRE)) < 2)
        return;
    sqe = &u->sqes[u->sq_tail & u->sq_mask];
    memset(sqe, 0, sizeof(*sqe));
    sqe->opcode = IORING_OP_POLL_ADD;
    sqe->fd = fd;
    sqe->poll32_events = EPOLLPRI;
    sqe->user_data = s->udata | URING_PRI_BIT;
    u->sq_tail++;
    sqe = &u->sqes[u->sq_tail & u->sq_mask];
    memset(sqe, 0, sizeof(*sqe));
    sqe->opcode = IORING_OP_ASYNC_CANCEL; /* not POLL_REMOVE: see ufd_disarm */
    sqe->fd = -1;
    sqe->addr = s->udata | URING_PRI_BIT;
    sqe->user_data = URING_UD_INTERNAL;
    u->sq_tail++;
    s->pri_check = true;
}

static int fds_reserve(struct coho__uring *u, int fd)
{
    size_t n = u->nfds ? u->nfds : 64;
    ufd_t *f;

    if ((size_t)fd < u->nfds)
        return 0;
    while (n <= (size_t)fd)
        n *= 2;
    f = realloc(u->fds, n * sizeof(*f));
    if (f == NULL)
        return -ENOMEM;
    memset(f + u->nfds, 0, (n - u->nfds) * sizeof(*f));
    u->fds = f;
    u->nfds = n;
    return 0;
}

static int ops_mode_from_env(void)
{
    const char *e = getenv("COHO_URING_OPS");

    if (e == NULL || e[0] == '\0' || strcmp(e, "submit") == 0)
        return COHO__OPS_SUBMIT; /* the default: measured, mio_driver/README.md */
    if (strcmp(e, "on") == 0)
        return COHO__OPS_ON;
    return COHO__OPS_OFF; /* "off", "0", anything else */
}

/* Queues the SQE of `op` under a fresh generation of slot `idx`. */
static int op_queue(struct coho__uring *u, coho__op_t *op, uint32_t idx)
{
    struct io_uring_sqe *sqe = sqe_get(u);
    uop_slot_t *sl = &u->ops[idx];

    if (sqe == NULL)
        return -EAGAIN;
    if (++sl->gen == 0)
        sl->gen = 1;
    sl->op = op;
    op->ud_ = (uint64_t)idx | URING_OP_BIT | ((uint64_t)sl->gen << 32);
    static const uint8_t opcode[] = {
        [COHO__OP_RECV] = IORING_OP_RECV,       [COHO__OP_SEND] = IORING_OP_SEND,
        [COHO__OP_RECVMSG] = IORING_OP_RECVMSG, [COHO__OP_SENDMSG] = IORING_OP_SENDMSG,
        [COHO__OP_ACCEPT] = IORING_OP_ACCEPT,   [COHO__OP_CONNECT] = IORING_OP_CONNECT,
        [COHO__OP_POLL] = IORING_OP_POLL_ADD,
    };

    sqe->opcode = opcode[op->kind_];
    sqe->fd = op->fd_;
    sqe->addr = (uint64_t)(uintptr_t)op->buf_;
    switch (op->kind_) {
    case COHO__OP_RECV:
    case COHO__OP_SEND:
        sqe->len = op->len_;
        sqe->msg_flags = (uint32_t)op->flags_;
        break;
    case COHO__OP_RECVMSG:
    case COHO__OP_SENDMSG:
        sqe->len = 1;
        sqe->msg_flags = (uint32_t)op->flags_;
        break;
    case COHO__OP_ACCEPT:
        sqe->addr2 = (uint64_t)(uintptr_t)op->buf2_;
        sqe->accept_flags = (uint32_t)op->flags_;
        break;
    case COHO__OP_CONNECT:
        sqe->off = op->len_; /* the address length */
        break;
    default: /* COHO__OP_POLL: one-shot (len 0) */
        sqe->addr = 0;
        sqe->poll32_events = (uint32_t)op->flags_;
        break;
    }
    sqe->user_data = op->ud_;
    u->sq_tail++;
    return 0;
}

int coho__driver_ops_mode(const coho__driver_t *d)
{
    return d->backend == COHO__BACKEND_IO_URING && d->uring != NULL ? d->uring->ops_mode
                                                                    : COHO__OPS_OFF;
}

uint64_t coho__driver_ring_ops(const coho__driver_t *d)
{
    return d->backend == COHO__BACKEND_IO_URING && d->uring != NULL ? d->uring->ring_ops : 0;
}

int coho__op_submit(coho__driver_t *d, coho__op_t *op, int kind, int fd, void *buf, size_t len,
                    int msg_flags, void *buf2)
{
    struct coho__uring *u;
    uint32_t idx;
    int rc;

    if (coho__driver_ops_mode(d) == COHO__OPS_OFF || kind < COHO__OP_RECV || kind > COHO__OP_POLL)
        return -EOPNOTSUPP;
    u = d->uring;
    if (u->ops_free != URING_NO_SLOT) {
        idx = u->ops_free;
        u->ops_free = u->ops[idx].next;
    } else {
        if (u->nops >= URING_OPS_MAX)
            return -EAGAIN;
        if (u->nops == u->ops_cap) {
            uint32_t cap = u->ops_cap ? u->ops_cap * 2 : 64;
            uop_slot_t *n = realloc(u->ops, cap * sizeof(*n));

            if (n == NULL)
                return -ENOMEM;
            memset(n + u->ops_cap, 0, (cap - u->ops_cap) * sizeof(*n));
            u->ops = n;
            u->ops_cap = cap;
        }
        idx = u->nops++;
    }
    op->kind_ = (uint8_t)kind;
    op->fd_ = fd;
    op->buf_ = buf;
    op->buf2_ = buf2;
    op->len_ = len > INT32_MAX ? INT32_MAX : (uint32_t)len;
    op->flags_ = msg_flags;
    if ((rc = op_queue(u, op, idx)) < 0) {
        op->ud_ = 0;
        u->ops[idx].next = u->ops_free;
        u->ops_free = idx;
        return rc;
    }
    u->ops_live++;
    /* A connect starts when it is called, as the syscall's does (its SYN leaves now, and its
     * timeout counts from now): handed to the kernel at once, without waiting. Other kinds
     * wait for the iteration's io_uring_enter. */
    if (kind == COHO__OP_CONNECT)
        (void)ring_enter(u, 0, 0, NULL, 0); /* on failure it goes with the next enter */
    return 0;
}

int coho__op_cancel(coho__driver_t *d, coho__op_t *op, bool now)
{
    struct coho__uring *u = d->uring;
    struct io_uring_sqe *sqe;

    if (u == NULL || op->ud_ == 0)
        return -ENOENT;
    if ((sqe = sqe_get(u)) == NULL)
        return -EAGAIN;
    sqe->opcode = IORING_OP_ASYNC_CANCEL;
    sqe->fd = -1;
    sqe->addr = op->ud_;
    sqe->user_data = URING_UD_INTERNAL;
    u->sq_tail++;
    if (now)
        ring_enter(u, 0, IORING_ENTER_GETEVENTS, NULL, 0);
    return 0;
}

/* The completion of an operation: delivered to its op if the slot's generation matches. */
static void op_complete(struct coho__uring *u, uint64_t ud, int32_t res)
{
    uint32_t idx = (uint32_t)(ud & (URING_OP_BIT - 1));
    uop_slot_t *sl;
    coho__op_t *op;

    if (idx >= u->nops)
        return;
    sl = &u->ops[idx];
    op = sl->op;
    if (op == NULL || sl->gen != (uint32_t)(ud >> 32) || op->ud_ != ud)
        return;
    sl->op = NULL;
    sl->next = u->ops_free;
    u->ops_free = idx;
    u->ops_live--;
    u->ring_ops++;
    op->ud_ = 0;
    op->res = res;
    op->cb(op);
}

int coho__uring_init(coho__driver_t *d)
{
    struct coho__uring *u = calloc(1, sizeof(*u));
    int rc;

    if (u == NULL)
        return -ENOMEM;
    u->fd = -1;
    if ((rc = ring_setup(u)) < 0) {
        free(u);
        return rc;
    }
    d->events = calloc(URING_MAX_EVENTS, sizeof(struct epoll_event));
    if (d->events == NULL) {
        ring_unmap(u);
        coho__sys_base.close(u->fd);
        free(u);
        return -ENOMEM;
    }
    d->maxevents = URING_MAX_EVENTS;
    u->ops_free = URING_NO_SLOT;
    u->ops_mode = ops_mode_from_env();
    d->uring = u;
    return 0;
}

int coho__uring_ctl(coho__driver_t *d, int op, int fd, uint32_t ev, uint64_t data)
{
    struct coho__uring *u = d->uring;
    ufd_t *s;
    int rc;

    if (fd < 0 || fd >= URING_FD_LIMIT)
        return -EBADF;
    if ((rc = fds_reserve(u, fd)) < 0)
        return rc;
    s = &u->fds[fd];
    if (op == COHO__POLLER_MOD) {
        if (s->udata == 0 || s->token != data)
            return -ENOENT;
        ufd_disarm(u, s);
    } else if (s->udata != 0) {
        ufd_disarm(u, s); /* an earlier tenant the driver never removed: its poll goes */
    }
    if (++u->seq == 0)
        u->seq = 1;
    s->udata = (uint64_t)(uint32_t)fd | ((uint64_t)u->seq << 32);
    s->token = data;
    s->ev = ev;
    s->pri_check = false;
    if ((rc = ufd_arm(u, fd, s)) < 0)
        s->udata = 0;
    return rc;
}

void coho__uring_del(coho__driver_t *d, int fd, uint64_t data)
{
    struct coho__uring *u = d->uring;
    ufd_t *s;

    if (fd < 0 || (size_t)fd >= u->nfds)
        return;
    s = &u->fds[fd];
    if (s->udata == 0 || s->token != data)
        return;
    /* With GETEVENTS the kernel also runs the cancelled request's completion (deferred task
     * work), which drops its reference to the file: a close right after this closes it. */
    if (ufd_disarm(u, s))
        ring_enter(u, 0, IORING_ENTER_GETEVENTS, NULL, 0);
    s->udata = 0;
    s->pri_check = false;
}

int coho__uring_wait(coho__driver_t *d, int64_t timeout_ns)
{
    struct coho__uring *u = d->uring;
    struct epoll_event *out = d->events;
    unsigned head = *u->cq_khead;
    unsigned tail = __atomic_load_n(u->cq_ktail, __ATOMIC_ACQUIRE);
    bool pending_sq = u->sq_tail != u->submitted;
    int n = 0, rc = 0;

    if (head == tail) {
        unsigned kf = __atomic_load_n(u->sq_kflags, __ATOMIC_ACQUIRE);

        if (timeout_ns == 0 && !pending_sq && (u->setup_flags & IORING_SETUP_TASKRUN_FLAG) &&
            !(kf & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW)))
            return 0; /* nothing can have completed: no system call */
        struct __kernel_timespec ts;
        struct io_uring_getevents_arg arg = {.sigmask = 0, .sigmask_sz = _NSIG / 8};

        if (timeout_ns >= 0) {
            ts.tv_sec = timeout_ns / 1000000000;
            ts.tv_nsec = timeout_ns % 1000000000;
            arg.ts = (uint64_t)(uintptr_t)&ts;
        }
        rc = ring_enter(u, timeout_ns == 0 ? 0 : 1, IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG,
                        &arg, sizeof(arg));
        if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY && rc != -EAGAIN)
            return rc;
        tail = __atomic_load_n(u->cq_ktail, __ATOMIC_ACQUIRE);
    } else if (pending_sq) {
        ring_enter(u, 0, IORING_ENTER_GETEVENTS, NULL, 0);
        tail = __atomic_load_n(u->cq_ktail, __ATOMIC_ACQUIRE);
    }
    while (head != tail && n < d->maxevents) {
        const struct io_uring_cqe *cqe = &u->cqes[head & u->cq_mask];
        uint64_t ud = cqe->user_data;
        int32_t res = cqe->res;
        uint32_t fd = (uint32_t)ud, mask = 0;
        ufd_t *s;

        head++;
        if (ud != URING_UD_INTERNAL && (ud & URING_OP_BIT) && !(ud & URING_PRI_BIT)) {
            /* Its callback may queue SQEs (a cancel, the next operation): no system call. */
            op_complete(u, ud, res);
            continue;
        }
        if (ud != URING_UD_INTERNAL && (ud & URING_PRI_BIT)) {
            fd &= ~(uint32_t)URING_PRI_BIT;
            if (fd >= u->nfds || u->fds[fd].udata != (ud & ~URING_PRI_BIT))
                continue;
            s = &u->fds[fd];
            s->pri_check = false;
            if (res <= 0 || !((uint32_t)res & EPOLLPRI))
                continue; /* cancelled: no urgent data */
            out[n].events = EPOLLPRI;
            out[n].data.u64 = s->token;
            n++;
            continue;
        }
        if (ud == URING_UD_INTERNAL || fd >= u->nfds || u->fds[fd].udata != ud)
            continue; /* a removal, a NOP, or an earlier registration of the number */
        s = &u->fds[fd];
        if (res >= 0)
            mask = (uint32_t)res;
        if (!(cqe->flags & IORING_CQE_F_MORE)) {
            /* The request ended: a one-shot fired, or a multishot stopped (CQ overflow, ...).
             * Re-arm it: arming reports the fd's current readiness, so nothing is lost. */
            s->armed = false;
            s->sqe_pending = false;
            if (res >= 0 || res == -EAGAIN || res == -ENOMEM || res == -EINTR)
                ufd_arm(u, (int)fd, s);
            else if (res != -ECANCELED)
                mask = EPOLLERR | EPOLLHUP; /* EBADF...: the waiters' own calls say what */
        }
        if (mask == 0)
            continue;
        if ((mask & EPOLLIN) && (s->ev & EPOLLPRI))
            pri_check_queue(u, (int)fd, s);
        out[n].events = mask;
        out[n].data.u64 = s->token;
        n++;
    }
    __atomic_store_n(u->cq_khead, head, __ATOMIC_RELEASE);
    return n;
}

void coho__uring_event(const coho__driver_t *d, int i, uint32_t *ev, uint64_t *data)
{
    const struct epoll_event *e = (const struct epoll_event *)d->events + i;

    *ev = e->events;
    *data = e->data.u64;
}

void coho__uring_close(coho__driver_t *d)
{
    struct coho__uring *u = d->uring;

    if (u != NULL) {
        ring_unmap(u);
        if (u->fd >= 0)
            coho__sys_base.close(u->fd);
        free(u->fds);
        free(u->ops);
        free(u);
    }
    d->uring = NULL;
    free(d->events);
    d->events = NULL;
}

/* In a forked child, an operation that cannot be submitted again: it completes with -EAGAIN
 * (its caller retries the call) at the driver's next iteration, on its own thread. The
 * fork handler runs on the forking thread, which may not be the driver's. */
static void op_defer(coho__driver_t *d, coho__op_t *op)
{
    coho__op_t **n = realloc(d->op_deferred, (d->n_op_deferred + 1) * sizeof(*n));

    op->ud_ = 0;
    op->res = -EAGAIN;
    if (n == NULL) {
        coho_log_error("mio_driver: fork child: out of memory for an operation's completion; "
                       "its coroutine stays parked");
        return;
    }
    d->op_deferred = n;
    n[d->n_op_deferred++] = op;
}

int coho__uring_fork_child(coho__driver_t *d)
{
    struct coho__uring *u = d->uring;
    int rc;

    /* The maps are the parent's ring (MAP_SHARED): unmap them without writing a byte. */
    ring_unmap(u);
    if (u->fd >= 0)
        coho__sys_base.close(u->fd);
    u->fd = -1;
    memset(u->fds, 0, u->nfds * sizeof(*u->fds));
    if ((rc = ring_setup(u)) == 0) {
        /* The operations the parent had in flight wait here too: submit them again. */
        for (uint32_t i = 0; i < u->nops; i++) {
            coho__op_t *op = u->ops[i].op;

            if (op != NULL && op_queue(u, op, i) < 0) {
                u->ops[i].op = NULL;
                u->ops[i].next = u->ops_free;
                u->ops_free = i;
                u->ops_live--;
                op_defer(d, op);
            }
        }
        return 0;
    }
    /* No ring for the child: what waited on one retries its call (the hooks park on readiness). */
    for (uint32_t i = 0; i < u->nops; i++) {
        coho__op_t *op = u->ops[i].op;

        if (op != NULL) {
            u->ops[i].op = NULL;
            op_defer(d, op);
        }
    }
    free(u->ops);
    free(u->fds);
    free(u);
    d->uring = NULL;
    free(d->events);
    d->events = NULL;
    return rc;
}
