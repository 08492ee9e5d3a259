/* SPDX-License-Identifier: MIT */
/* Hand-written io_uring echo server: one thread, raw io_uring system calls and mmap'd rings (no
 * liburing, no coho), the ceiling of what a multishot design can reach next to echo_epoll.
 *
 * - One multishot accept on the listening socket (re-armed when a CQE lacks IORING_CQE_F_MORE).
 * - Per connection one multishot recv (IORING_RECV_MULTISHOT) drawing its buffers from one
 *   provided buffer ring (IORING_REGISTER_PBUF_RING, IOSQE_BUFFER_SELECT): a recv whose data
 *   is ready costs no system call of its own.
 * - The bytes of each recv completion are queued on the connection in arrival order and sent
 *   with IORING_OP_SEND, one send in flight per connection (so the order holds), a partial send
 *   continued from where it stopped; a buffer goes back to the ring once all its bytes are sent.
 * - A recv that ends (no IORING_CQE_F_MORE) is re-armed; one that ended with ENOBUFS (the ring
 *   ran dry) is re-armed after buffers have gone back. A connection holding URING_MAX_QUEUED
 *   buffers (its peer does not read its replies) has its recv cancelled and re-armed once half
 *   of them are sent, so one peer cannot take the whole ring.
 * - EOF: the queued bytes are sent, then the socket is closed. An error on recv or send: what is
 *   in flight on the socket is cancelled, its buffers go back and the socket is closed once no
 *   operation refers to the connection any more.
 * - One io_uring_enter per loop iteration submits every queued SQE and waits for >= 1 CQE
 *   (ECHO_URING_WAIT_SENDS=1: for the sends submitted plus one, see main).
 *
 * Limits (said, not silent): URING_BUFS buffers of ECHO_BUF_SIZE bytes are shared by all
 * connections (ECHO_URING_BUFS=N overrides the count, a power of two up to 32768). The cap of
 * URING_MAX_QUEUED per connection is soft: the recv goes on filling buffers until its cancel
 * takes effect (tens of buffers in one io_uring_enter when the peer sends fast). When peers
 * that do not read hold all buffers, the other connections wait until buffers come back.
 *
 * ECHO_URING_SETUP=defer|coop|plain picks the ring's set-up flags (SINGLE_ISSUER|DEFER_TASKRUN,
 * COOP_TASKRUN|TASKRUN_FLAG, none); unset, the first of them the kernel accepts. */
#define _GNU_SOURCE
#include <linux/io_uring.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include "echo_common.h"

#define PROG             "echo_uring"
#define URING_SQ_ENTRIES 1024u
#define URING_CQ_ENTRIES 8192u
#define URING_BUFS       2048u
#define URING_MAX_QUEUED 8u
#define URING_BGID       0
#define URING_NONE       UINT32_MAX

/* What a CQE's user_data names: the operation kind in the low bits, the connection above. */
enum { OP_ACCEPT = 0, OP_RECV = 1, OP_SEND = 2, OP_CANCEL = 3, OP_MASK = 3 };

struct conn {
    int fd;
    uint32_t qhead, qtail; /* buffers to send, linked by buf_next; URING_NONE: empty */
    uint32_t queued;       /* buffers on the queue */
    uint32_t off;          /* bytes of the head buffer already sent */
    bool recv_armed;       /* a recv is in the kernel */
    bool send_busy;        /* a send is in the kernel */
    bool cancel_busy;      /* a cancel is in the kernel */
    bool paused;           /* recv cancelled while the queue drains */
    bool starved;          /* recv ended with ENOBUFS: on the starved list */
    bool eof;              /* the peer closed its side */
    bool failed;           /* recv or send failed: close as soon as nothing is in flight */
    struct conn *starved_next;
};

static struct {
    int fd;
    unsigned sq_mask, sq_entries, sq_tail, cq_mask;
    unsigned *sq_khead, *sq_ktail, *cq_khead, *cq_ktail;
    struct io_uring_sqe *sqes;
    struct io_uring_cqe *cqes;
    /* provided buffers */
    struct io_uring_buf_ring *br;
    unsigned nbufs, br_tail, held; /* held: buffers out of the ring (in the queues) */
    char *bufs;
    uint32_t *buf_len, *buf_next;
    struct conn *starved; /* connections waiting for buffers */
    int lfd;
    unsigned nsend;  /* sends queued since the last io_uring_enter */
    bool wait_sends; /* wait for the sends' completions too (ECHO_URING_WAIT_SENDS) */
} g;

static void die_err(const char *what, int err)
{
    fprintf(stderr, "%s: %s: %s\n", PROG, what, strerror(err));
    exit(1);
}

static int sys_enter(unsigned submit, unsigned min, unsigned flags, void *arg, size_t argsz)
{
    long rc = syscall(__NR_io_uring_enter, g.fd, submit, min, flags, arg, argsz);

    return rc < 0 ? -errno : (int)rc;
}

/* Free SQ slots. */
static unsigned sq_space(void)
{
    return g.sq_entries - (g.sq_tail - __atomic_load_n(g.sq_khead, __ATOMIC_ACQUIRE));
}

/* A zeroed SQE at the tail. The caller has made sure of the space (sq_space). */
static struct io_uring_sqe *sqe_get(void)
{
    struct io_uring_sqe *sqe = &g.sqes[g.sq_tail & g.sq_mask];

    memset(sqe, 0, sizeof(*sqe));
    g.sq_tail++;
    return sqe;
}

static uint64_t ud(struct conn *c, int op)
{
    return (uint64_t)(uintptr_t)c | (uint64_t)op;
}

static void arm_accept(void)
{
    struct io_uring_sqe *sqe = sqe_get();

    sqe->opcode = IORING_OP_ACCEPT;
    sqe->fd = g.lfd;
    sqe->ioprio = IORING_ACCEPT_MULTISHOT;
    sqe->accept_flags = SOCK_CLOEXEC;
    sqe->user_data = ud(NULL, OP_ACCEPT);
}

static void arm_recv(struct conn *c)
{
    struct io_uring_sqe *sqe = sqe_get();

    sqe->opcode = IORING_OP_RECV;
    sqe->fd = c->fd;
    sqe->ioprio = IORING_RECV_MULTISHOT;
    sqe->flags = IOSQE_BUFFER_SELECT;
    sqe->buf_group = URING_BGID;
    sqe->user_data = ud(c, OP_RECV);
    c->recv_armed = true;
}

static void arm_send(struct conn *c)
{
    struct io_uring_sqe *sqe = sqe_get();

    sqe->opcode = IORING_OP_SEND;
    sqe->fd = c->fd;
    sqe->addr = (uint64_t)(uintptr_t)(g.bufs + (size_t)c->qhead * ECHO_BUF_SIZE + c->off);
    sqe->len = g.buf_len[c->qhead] - c->off;
    sqe->msg_flags = MSG_NOSIGNAL;
    sqe->user_data = ud(c, OP_SEND);
    c->send_busy = true;
    g.nsend++;
}

/* Cancels the connection's recv only (pause), or everything on its socket (close). */
static void arm_cancel(struct conn *c, bool all)
{
    struct io_uring_sqe *sqe = sqe_get();

    sqe->opcode = IORING_OP_ASYNC_CANCEL;
    if (all) {
        sqe->fd = c->fd;
        sqe->cancel_flags = IORING_ASYNC_CANCEL_FD | IORING_ASYNC_CANCEL_ALL;
    } else {
        sqe->fd = -1;
        sqe->addr = ud(c, OP_RECV);
    }
    sqe->user_data = ud(c, OP_CANCEL);
    c->cancel_busy = true;
}

/* Gives buffer `bid` back to the kernel (visible at the next buf_publish). */
static void buf_put(uint32_t bid)
{
    struct io_uring_buf *b = &g.br->bufs[g.br_tail & (g.nbufs - 1)];

    b->addr = (uint64_t)(uintptr_t)(g.bufs + (size_t)bid * ECHO_BUF_SIZE);
    b->len = ECHO_BUF_SIZE;
    b->bid = (uint16_t)bid;
    g.br_tail++;
    g.held--;
}

static void buf_publish(void)
{
    __atomic_store_n(&g.br->tail, (uint16_t)g.br_tail, __ATOMIC_RELEASE);
}

static void queue_pop(struct conn *c)
{
    uint32_t bid = c->qhead;

    c->qhead = g.buf_next[bid];
    if (c->qhead == URING_NONE)
        c->qtail = URING_NONE;
    c->queued--;
    c->off = 0;
    buf_put(bid);
}

static void starved_del(struct conn *c)
{
    struct conn **p = &g.starved;

    while (*p != c)
        p = &(*p)->starved_next;
    *p = c->starved_next;
    c->starved = false;
}

/* Closes and frees the connection once nothing in the kernel refers to it; before that, starts
 * the cancellation of what is in flight. Returns true when it was freed. */
static bool conn_check(struct conn *c)
{
    if (!c->failed && !(c->eof && c->qhead == URING_NONE && !c->send_busy))
        return false;
    if (c->recv_armed || c->send_busy) {
        if (!c->cancel_busy)
            arm_cancel(c, true);
        return false;
    }
    if (c->cancel_busy)
        return false;
    while (c->qhead != URING_NONE)
        queue_pop(c);
    if (c->starved)
        starved_del(c);
    close(c->fd);
    free(c);
    return true;
}

/* Re-arms the recv of a paused connection when its queue has drained to half and the cancel
 * and the recv it ended are both back. */
static void conn_resume(struct conn *c)
{
    if (c->paused && !c->recv_armed && !c->cancel_busy && !c->eof && !c->failed &&
        c->queued <= URING_MAX_QUEUED / 2) {
        c->paused = false;
        arm_recv(c);
    }
}

static void on_accept(const struct io_uring_cqe *cqe)
{
    static int last_err;
    struct conn *c;

    if (!(cqe->flags & IORING_CQE_F_MORE))
        arm_accept();
    if (cqe->res < 0) {
        if (-cqe->res != last_err) /* once per kind of error, not once per retry */
            fprintf(stderr, "%s: accept: %s\n", PROG, strerror(-cqe->res));
        last_err = -cqe->res;
        return;
    }
    last_err = 0;
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        fprintf(stderr, "%s: out of memory: connection refused\n", PROG);
        close(cqe->res);
        return;
    }
    c->fd = cqe->res;
    c->qhead = c->qtail = URING_NONE;
    echo_nodelay(c->fd);
    arm_recv(c);
}

static void on_recv(struct conn *c, const struct io_uring_cqe *cqe)
{
    bool more = (cqe->flags & IORING_CQE_F_MORE) != 0;

    if (!more)
        c->recv_armed = false;
    if (cqe->res > 0) {
        uint32_t bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;

        if (!(cqe->flags & IORING_CQE_F_BUFFER) || bid >= g.nbufs) {
            fprintf(stderr, "%s: recv completion without a valid buffer\n", PROG);
            exit(1);
        }
        g.held++;
        g.buf_len[bid] = (uint32_t)cqe->res;
        g.buf_next[bid] = URING_NONE;
        if (c->qtail == URING_NONE)
            c->qhead = bid;
        else
            g.buf_next[c->qtail] = bid;
        c->qtail = bid;
        c->queued++;
        if (!c->failed && !c->send_busy)
            arm_send(c); /* failed: the buffer goes back when the socket is closed */
    } else if (cqe->res == 0) {
        c->eof = true;
    } else if (cqe->res != -ENOBUFS && cqe->res != -ECANCELED) {
        c->failed = true;
    }
    if (!more && !c->eof && !c->failed && !c->paused) {
        if (cqe->res == -ENOBUFS) {
            if (!c->starved) {
                c->starved = true;
                c->starved_next = g.starved;
                g.starved = c;
            }
        } else {
            arm_recv(c); /* ended for another reason (e.g. a full CQ): go on */
        }
    }
    if (c->recv_armed && !c->paused && !c->cancel_busy && c->queued >= URING_MAX_QUEUED) {
        c->paused = true; /* the peer does not read: stop taking buffers for it */
        arm_cancel(c, false);
    }
    if (!conn_check(c))
        conn_resume(c);
}

static void on_send(struct conn *c, const struct io_uring_cqe *cqe)
{
    c->send_busy = false;
    if (cqe->res <= 0) { /* 0 for a non-empty send on a stream socket: treat as broken */
        c->failed = true;
    } else {
        c->off += (uint32_t)cqe->res;
        if (c->off >= g.buf_len[c->qhead])
            queue_pop(c);
        if (!c->failed && c->qhead != URING_NONE)
            arm_send(c);
    }
    if (!conn_check(c))
        conn_resume(c);
}

static void on_cancel(struct conn *c)
{
    c->cancel_busy = false;
    if (!conn_check(c))
        conn_resume(c);
}

/* SQEs one CQE can queue at most (send + cancel, or re-arm + cancel), plus the accept. */
#define URING_SQE_PER_CQE 3u

/* Handles the CQEs there are while the SQ has room for what they queue. */
static void reap(void)
{
    unsigned head = *g.cq_khead, tail = __atomic_load_n(g.cq_ktail, __ATOMIC_ACQUIRE);

    while (head != tail && sq_space() >= URING_SQE_PER_CQE) {
        const struct io_uring_cqe *cqe = &g.cqes[head & g.cq_mask];
        struct conn *c = (struct conn *)(uintptr_t)(cqe->user_data & ~(uint64_t)OP_MASK);

        switch (cqe->user_data & OP_MASK) {
        case OP_ACCEPT:
            on_accept(cqe);
            break;
        case OP_RECV:
            on_recv(c, cqe);
            break;
        case OP_SEND:
            on_send(c, cqe);
            break;
        default:
            on_cancel(c);
            break;
        }
        head++;
    }
    __atomic_store_n(g.cq_khead, head, __ATOMIC_RELEASE);
    /* Buffers came back: the connections that ran dry read again. */
    while (g.starved != NULL && g.held < g.nbufs && sq_space() >= 1) {
        struct conn *c = g.starved;

        g.starved = c->starved_next;
        c->starved = false;
        arm_recv(c);
    }
    buf_publish();
}

static void *map_ring(size_t size, off_t what)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, g.fd, what);

    if (p == MAP_FAILED)
        die_err("mmap of the ring", errno);
    return p;
}

static void ring_setup(void)
{
    static const struct {
        const char *name;
        unsigned flags;
    } modes[] = {
        {"defer", IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN},
        {"coop", IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG},
        {"plain", 0},
    };
    const char *want = getenv("ECHO_URING_SETUP");
    struct io_uring_params p;
    const char *mode = NULL;
    size_t sq_size, cq_size;
    char *sq, *cq;
    long fd = -1;
    int err = EINVAL;

    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        if (want != NULL && want[0] != '\0' && strcmp(want, modes[i].name) != 0)
            continue;
        memset(&p, 0, sizeof(p));
        p.flags = modes[i].flags | IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
        p.cq_entries = URING_CQ_ENTRIES;
        fd = syscall(__NR_io_uring_setup, URING_SQ_ENTRIES, &p);
        if (fd >= 0) {
            mode = modes[i].name;
            break;
        }
        err = errno;
        if (err != EINVAL)
            break;
    }
    if (fd < 0) {
        if (want != NULL && want[0] != '\0' && mode == NULL && err == EINVAL &&
            strcmp(want, "defer") != 0 && strcmp(want, "coop") != 0 && strcmp(want, "plain") != 0) {
            fprintf(stderr, "%s: ECHO_URING_SETUP=%s: not defer, coop or plain\n", PROG, want);
            exit(2);
        }
        fprintf(stderr,
                "%s: io_uring_setup: %s (io_uring unavailable: kernel too old, seccomp or "
                "/proc/sys/kernel/io_uring_disabled)\n",
                PROG, strerror(err));
        exit(1);
    }
    g.fd = (int)fd;
    if ((p.features & (IORING_FEAT_NODROP | IORING_FEAT_EXT_ARG)) !=
        (IORING_FEAT_NODROP | IORING_FEAT_EXT_ARG)) {
        fprintf(stderr, "%s: the kernel lacks IORING_FEAT_NODROP or _EXT_ARG (before 5.11)\n",
                PROG);
        exit(1);
    }
    sq_size = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    cq_size = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    if (p.features & IORING_FEAT_SINGLE_MMAP) {
        sq_size = cq_size = sq_size > cq_size ? sq_size : cq_size;
        sq = cq = map_ring(sq_size, IORING_OFF_SQ_RING);
    } else {
        sq = map_ring(sq_size, IORING_OFF_SQ_RING);
        cq = map_ring(cq_size, IORING_OFF_CQ_RING);
    }
    g.sqes = map_ring(p.sq_entries * sizeof(struct io_uring_sqe), IORING_OFF_SQES);
    g.sq_khead = (unsigned *)(sq + p.sq_off.head);
    g.sq_ktail = (unsigned *)(sq + p.sq_off.tail);
    g.sq_mask = *(unsigned *)(sq + p.sq_off.ring_mask);
    g.sq_entries = p.sq_entries;
    for (unsigned i = 0; i < p.sq_entries; i++)
        ((unsigned *)(sq + p.sq_off.array))[i] = i; /* SQE i always sits in slot i */
    g.sq_tail = *g.sq_ktail;
    g.cq_khead = (unsigned *)(cq + p.cq_off.head);
    g.cq_ktail = (unsigned *)(cq + p.cq_off.tail);
    g.cq_mask = *(unsigned *)(cq + p.cq_off.ring_mask);
    g.cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
    printf("%s: ring %s (sq %u, cq %u)\n", PROG, mode, p.sq_entries, p.cq_entries);
}

static void bufs_setup(void)
{
    const char *env = getenv("ECHO_URING_BUFS");
    struct io_uring_buf_reg reg;
    unsigned n = URING_BUFS;
    size_t ring_size;

    if (env != NULL && env[0] != '\0') {
        long v = atol(env);

        if (v < 1 || v > 32768 || (v & (v - 1)) != 0) {
            fprintf(stderr, "%s: ECHO_URING_BUFS=%s: not a power of two in 1..32768\n", PROG, env);
            exit(2);
        }
        n = (unsigned)v;
    }
    g.nbufs = n;
    ring_size = n * sizeof(struct io_uring_buf);
    g.br = mmap(NULL, ring_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    g.bufs = mmap(NULL, (size_t)n * ECHO_BUF_SIZE, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    g.buf_len = calloc(n, sizeof(*g.buf_len));
    g.buf_next = calloc(n, sizeof(*g.buf_next));
    if (g.br == MAP_FAILED || g.bufs == MAP_FAILED || g.buf_len == NULL || g.buf_next == NULL)
        die_err("buffers", ENOMEM);
    /* Transparent huge pages where THP is "madvise": the buffers are touched in ring order, so
     * with 4 KiB pages nearly every recv and send meets a TLB miss (no PCID: each system call
     * entry empties the TLB). A refusal only costs speed. */
    (void)madvise(g.bufs, (size_t)n * ECHO_BUF_SIZE, MADV_HUGEPAGE);
    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (uint64_t)(uintptr_t)g.br;
    reg.ring_entries = n;
    reg.bgid = URING_BGID;
    if (syscall(__NR_io_uring_register, g.fd, IORING_REGISTER_PBUF_RING, &reg, 1) != 0)
        die_err("io_uring_register(IORING_REGISTER_PBUF_RING) (kernel before 5.19?)", errno);
    g.held = n;
    for (unsigned i = 0; i < n; i++)
        buf_put(i);
    buf_publish();
    printf("%s: %u provided buffers of %d bytes\n", PROG, n, ECHO_BUF_SIZE);
}

int main(int argc, char **argv)
{
    int port = echo_port_arg(argc, argv);

    ring_setup();
    bufs_setup();
    g.lfd = echo_listen(PROG, port, SOCK_CLOEXEC);
    arm_accept();
    {
        const char *w = getenv("ECHO_URING_WAIT_SENDS");

        g.wait_sends = w != NULL && w[0] == '1';
    }
    for (;;) {
        /* A send to a socket with room completes inside the io_uring_enter that submits it, so
         * waiting for 1 completion returns at once with only the sends' CQEs and costs a second
         * io_uring_enter per batch. ECHO_URING_WAIT_SENDS=1 waits for the sends plus one more
         * CQE instead, with a 1 ms cap in case a send waits for its peer while a CQE that must
         * be handled for progress (a next send, a close, buffers for starved connections)
         * waits in the CQ. Off by default: arming that timer costs more CPU on this guest
         * (about 4 us per wait at 1 connection) than the io_uring_enter it saves. */
        struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 1000000};
        struct io_uring_getevents_arg arg = {.ts = (uint64_t)(uintptr_t)&ts};
        unsigned ready = __atomic_load_n(g.cq_ktail, __ATOMIC_ACQUIRE) - *g.cq_khead;
        unsigned submit = g.sq_tail - __atomic_load_n(g.sq_khead, __ATOMIC_ACQUIRE);
        int rc;

        __atomic_store_n(g.sq_ktail, g.sq_tail, __ATOMIC_RELEASE);
        if (ready > 0) /* reap stopped for SQ room: submit, then go on reaping */
            rc = sys_enter(submit, 0, IORING_ENTER_GETEVENTS, NULL, 0);
        else if (g.wait_sends && g.nsend > 0)
            rc = sys_enter(submit, g.nsend + 1, IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, &arg,
                           sizeof(arg));
        else
            rc = sys_enter(submit, 1, IORING_ENTER_GETEVENTS, NULL, 0);
        g.nsend = 0;
        /* EINTR, ETIME: go on; EBUSY/EAGAIN: completions must be reaped first, as reap does. */
        if (rc < 0 && rc != -EINTR && rc != -ETIME && rc != -EBUSY && rc != -EAGAIN)
            die_err("io_uring_enter", -rc);
        reap();
    }
}
