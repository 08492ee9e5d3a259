/* SPDX-License-Identifier: MIT */
/* Hooked calls on the io_uring backend submitted as ring operations (IORING_OP_RECV/SEND, the
 * vectored and msg forms, ACCEPT, CONNECT, and one-fd poll as POLL_ADD):
 * the scheduler's ring_ops counter proves the ring carried them (a silent fall-back to
 * readiness fails these cases), and the semantics the readiness way keeps hold: a timeout
 * with a later byte not lost, close from another coroutine waking with EBADF without the
 * kernel writing the buffer afterwards, cancellation, partial writes, SIGPIPE. */
/* ctest: TIMEOUT=60 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <coho.h>

#include "test/support/cmocka_main.h"

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Checks made in coroutine bodies are recorded and asserted on the case's own stack. */
static int failures;
static char failure_text[512];

#define CO_CHECK(cond)                                                                     \
    do {                                                                                   \
        if (!(cond) && failures++ == 0)                                                    \
            snprintf(failure_text, sizeof(failure_text), "%s:%d: %s (errno %d)", __FILE__, \
                     __LINE__, #cond, errno);                                              \
    } while (0)

static coho_sched_t *uring_sched(void)
{
    coho_sched_opts_t o;
    coho_sched_t *s;

    coho_sched_opts_init(&o);
    o.backend = COHO_BACKEND_IO_URING;
    s = coho_sched_create(&o);
    assert_non_null(s);
    if (coho_sched_backend(s) != COHO_BACKEND_IO_URING) {
        coho_sched_destroy(s);
        skip(); /* the kernel refuses rings here */
    }
    return s;
}

static void run_case(void (*body)(void *), void *arg)
{
    coho_sched_t *s = uring_sched();

    failures = 0;
    failure_text[0] = '\0';
    assert_true(coho_spawn(s, body, arg) != 0);
    assert_int_equal(coho_sched_run(s), 0);
    coho_sched_destroy(s);
    if (failures != 0)
        fail_msg("%d failed check(s), first: %s", failures, failure_text);
}

static uint64_t ring_ops(void)
{
    coho_sched_stats_t st;

    coho_sched_get_stats(coho_sched_current(), &st);
    return st.ring_ops;
}

static uint64_t parks_io(void)
{
    coho_sched_stats_t st;

    coho_sched_get_stats(coho_sched_current(), &st);
    return st.parks_io;
}

struct pair {
    int fd[2];
    unsigned delay_ms;
    const char *bytes;
    size_t len;
    int close_fd;    /* the sender closes this fd instead of writing */
    uint64_t target; /* the sender cancels this coroutine instead */
};

static void sender(void *arg)
{
    struct pair *p = arg;

    coho_sleep_ms(p->delay_ms);
    if (p->target != 0) {
        CO_CHECK(coho_cancel(p->target) == 0);
        return;
    }
    if (p->close_fd >= 0) {
        CO_CHECK(close(p->close_fd) == 0);
        return;
    }
    CO_CHECK(send(p->fd[1], p->bytes, p->len, MSG_NOSIGNAL) == (ssize_t)p->len);
}

/* A recv that would block completes through the ring with the peer's bytes. */
static void recv_body(void *arg)
{
    struct pair p = {.delay_ms = 20, .bytes = "hello", .len = 5, .close_fd = -1};
    char buf[64];
    uint64_t before, parks;
    ssize_t n;

    (void)arg;
    CO_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, p.fd) == 0);
    before = ring_ops();
    parks = parks_io();
    coho_spawn(coho_sched_current(), sender, &p);
    n = recv(p.fd[0], buf, sizeof(buf), 0);
    CO_CHECK(n == 5);
    CO_CHECK(parks_io() > parks); /* a ring wait counts as an io park */
    CO_CHECK(n == 5 && memcmp(buf, "hello", 5) == 0);
    CO_CHECK(ring_ops() > before);
    /* drained now: the next read goes to the ring at once, read() too */
    p.bytes = "again";
    before = ring_ops();
    coho_spawn(coho_sched_current(), sender, &p);
    n = read(p.fd[0], buf, sizeof(buf));
    CO_CHECK(n == 5 && memcmp(buf, "again", 5) == 0);
    CO_CHECK(ring_ops() > before);
    /* EOF through the ring */
    p.close_fd = p.fd[1];
    coho_spawn(coho_sched_current(), sender, &p);
    CO_CHECK(recv(p.fd[0], buf, sizeof(buf), 0) == 0);
    close(p.fd[0]);
}

static void uring_recv_completes_through_the_ring(void **state)
{
    (void)state;
    run_case(recv_body, NULL);
}

/* SO_RCVTIMEO: the op is cancelled at the deadline (EAGAIN), and a byte that arrives later is
 * read by the next call, not lost into the cancelled operation. */
static void timeout_body(void *arg)
{
    struct pair p = {.delay_ms = 0, .bytes = "z", .len = 1, .close_fd = -1};
    struct timeval tv = {.tv_sec = 0, .tv_usec = 50 * 1000};
    char buf[16] = {0};
    uint64_t t0, before;
    ssize_t n;

    (void)arg;
    CO_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, p.fd) == 0);
    CO_CHECK(setsockopt(p.fd[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0);
    before = ring_ops();
    t0 = now_ms();
    n = recv(p.fd[0], buf, sizeof(buf), 0);
    CO_CHECK(n == -1 && errno == EAGAIN);
    CO_CHECK(now_ms() - t0 >= 50);
    CO_CHECK(ring_ops() > before); /* the cancelled operation completed before the return */
    CO_CHECK(buf[0] == 0);
    CO_CHECK(send(p.fd[1], "z", 1, 0) == 1);
    n = recv(p.fd[0], buf, sizeof(buf), 0);
    CO_CHECK(n == 1 && buf[0] == 'z');
    /* the same with the byte arriving while the next recv waits */
    coho_spawn(coho_sched_current(), sender, &p);
    p.delay_ms = 10;
    n = recv(p.fd[0], buf, sizeof(buf), 0);
    CO_CHECK(n == 1 && buf[0] == 'z');
    close(p.fd[0]);
    close(p.fd[1]);
}

static void uring_timeout_cancels_and_a_later_byte_is_not_lost(void **state)
{
    (void)state;
    run_case(timeout_body, NULL);
}

/* close() of the fd by another coroutine: the waiting recv fails with EBADF, its buffer is
 * never written afterwards, and the close really closes (the peer sees it at once). */
static void close_body(void *arg)
{
    struct pair p = {.delay_ms = 20, .close_fd = -1};
    char buf[16];
    uint64_t before;
    ssize_t n;

    (void)arg;
    CO_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, p.fd) == 0);
    p.close_fd = p.fd[0];
    before = ring_ops();
    memset(buf, 0xAA, sizeof(buf));
    coho_spawn(coho_sched_current(), sender, &p);
    n = recv(p.fd[0], buf, sizeof(buf), 0);
    CO_CHECK(n == -1 && errno == EBADF);
    CO_CHECK(ring_ops() > before); /* the cancelled operation's completion came first */
    /* The ring operation was cancelled before the real close: the peer's send fails. */
    n = send(p.fd[1], "late", 4, MSG_NOSIGNAL);
    CO_CHECK(n == -1 && errno == EPIPE);
    coho_sleep_ms(10);
    for (size_t i = 0; i < sizeof(buf); i++)
        CO_CHECK((unsigned char)buf[i] == 0xAA);
    close(p.fd[1]);
}

static void uring_close_from_another_coroutine_wakes_with_ebadf(void **state)
{
    (void)state;
    run_case(close_body, NULL);
}

/* coho_cancel of a coroutine parked in a ring recv: ECANCELED, and the byte sent afterwards
 * is read by the next recv (the cancelled operation took nothing). */
struct cancel_ctx {
    int fd[2];
    char buf[16];
    ssize_t n;
    int err;
};

static void cancel_victim(void *arg)
{
    struct cancel_ctx *c = arg;

    memset(c->buf, 0xAA, sizeof(c->buf));
    c->n = recv(c->fd[0], c->buf, sizeof(c->buf), 0);
    c->err = errno;
}

static void cancel_body(void *arg)
{
    struct cancel_ctx c;
    uint64_t id, before;
    char buf[16];

    (void)arg;
    CO_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, c.fd) == 0);
    before = ring_ops();
    id = coho_spawn(coho_sched_current(), cancel_victim, &c);
    coho_sleep_ms(20);
    CO_CHECK(coho_cancel(id) == 0);
    CO_CHECK(coho_join(id, -1) == 0);
    CO_CHECK(c.n == -1 && c.err == ECANCELED);
    CO_CHECK(ring_ops() > before);
    for (size_t i = 0; i < sizeof(c.buf); i++)
        CO_CHECK((unsigned char)c.buf[i] == 0xAA);
    CO_CHECK(send(c.fd[1], "q", 1, 0) == 1);
    CO_CHECK(recv(c.fd[0], buf, sizeof(buf), 0) == 1 && buf[0] == 'q');
    close(c.fd[0]);
    close(c.fd[1]);
}

static void uring_cancel_of_a_parked_recv(void **state)
{
    (void)state;
    run_case(cancel_body, NULL);
}

/* A stream send larger than the socket buffer: the part that does not fit is sent through
 * the ring as the reader drains, whole and in order. */
#define BIG (4u << 20)

/* Reads BIG bytes of the pattern (i * 7) from `fd`, with recv or, `vectored`, with readv
 * over two iovecs; pauses now and then so that the writer's socket buffer fills. */
static void read_pattern(int fd, bool vectored)
{
    unsigned char *buf = malloc(65536);
    size_t got = 0;
    ssize_t n;

    CO_CHECK(buf != NULL);
    while (buf != NULL && got < BIG) {
        if (vectored) {
            struct iovec v[2] = {{buf, 1000}, {buf + 1000, 64536}};

            n = readv(fd, v, 2);
        } else {
            n = recv(fd, buf, 65536, 0);
        }
        CO_CHECK(n > 0);
        if (n <= 0)
            break;
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] != (unsigned char)((got + (size_t)i) * 7)) {
                CO_CHECK(!"byte out of order");
                n = -1;
                break;
            }
        if (n < 0)
            break;
        got += (size_t)n;
        coho_sleep_ms(got % (512 * 1024) < 65536 ? 1 : 0);
    }
    CO_CHECK(got == BIG);
    free(buf);
}

static void big_reader(void *arg)
{
    read_pattern(*(int *)arg, false);
}

static void big_body(void *arg)
{
    int fd[2];
    unsigned char *data = malloc(BIG);
    uint64_t before;

    (void)arg;
    CO_CHECK(data != NULL);
    if (data == NULL)
        return;
    for (size_t i = 0; i < BIG; i++)
        data[i] = (unsigned char)(i * 7);
    CO_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, fd) == 0);
    before = ring_ops();
    coho_spawn(coho_sched_current(), big_reader, &fd[1]);
    CO_CHECK(send(fd[0], data, BIG, 0) == (ssize_t)BIG);
    CO_CHECK(ring_ops() > before);
    coho_sleep_ms(50);
    close(fd[0]);
    close(fd[1]);
    free(data);
}

static void uring_partial_writes_go_out_whole(void **state)
{
    (void)state;
    run_case(big_body, NULL);
}

/* readv/writev go through the ring as recvmsg/sendmsg: a readv that would block gets the
 * bytes spread over its iovecs; a writev larger than the socket buffer goes out whole. */
static void vec_reader(void *arg)
{
    read_pattern(*(int *)arg, true);
}

static void vec_body(void *arg)
{
    struct pair p = {.delay_ms = 20, .bytes = "hello world", .len = 11, .close_fd = -1};
    char a[5], b[16];
    struct iovec v[2] = {{a, sizeof(a)}, {b, sizeof(b)}};
    unsigned char *data = malloc(BIG);
    uint64_t before;
    ssize_t n;

    (void)arg;
    CO_CHECK(data != NULL);
    if (data == NULL)
        return;
    CO_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, p.fd) == 0);
    before = ring_ops();
    coho_spawn(coho_sched_current(), sender, &p);
    n = readv(p.fd[0], v, 2);
    CO_CHECK(n == 11 && memcmp(a, "hello", 5) == 0 && memcmp(b, " world", 6) == 0);
    CO_CHECK(ring_ops() > before);
    for (size_t i = 0; i < BIG; i++)
        data[i] = (unsigned char)(i * 7);
    coho_spawn(coho_sched_current(), vec_reader, &p.fd[1]);
    before = ring_ops();
    struct iovec w[2] = {{data, 12345}, {data + 12345, BIG - 12345}};
    CO_CHECK(writev(p.fd[0], w, 2) == (ssize_t)BIG);
    CO_CHECK(ring_ops() > before);
    coho_sleep_ms(50);
    close(p.fd[0]);
    close(p.fd[1]);
    free(data);
}

static void uring_readv_and_writev_go_through_the_ring(void **state)
{
    (void)state;
    run_case(vec_body, NULL);
}

/* fork while a coroutine waits in a ring recv or one-fd poll: the child's new ring takes the
 * operation again and the child's copy of the coroutine sees the byte the child sends (recv gets
 * it, poll reports it). The parent's operation (its task work runs only in its own
 * io_uring_enter, not while it sits in waitpid) still waits: a recv gets the parent's byte, as
 * the child's recv took the child's from the shared socket; a poll reports the child's byte,
 * which is still there. The child's send is MSG_DONTWAIT (never a ring operation), so its
 * ring_ops counts the victim's completion alone. */
struct fork_ctx {
    bool in_poll; /* the victim waits in poll(POLLIN) instead of a one-byte recv */
    int fd[2];
    ssize_t rc;    /* what recv or poll returned */
    char got;      /* the byte recv got */
    short revents; /* what poll reported */
};

static void fork_victim(void *arg)
{
    struct fork_ctx *c = arg;

    if (c->in_poll) {
        struct pollfd p = {.fd = c->fd[0], .events = POLLIN};

        c->rc = poll(&p, 1, 5000);
        c->revents = p.revents;
    } else {
        c->rc = recv(c->fd[0], &c->got, 1, 0);
    }
}

/* The victim's call ended as it should: recv got byte `b`; poll reported the fd readable (the
 * byte it sees is the child's, whoever checks). */
static bool fork_victim_saw(const struct fork_ctx *c, char b)
{
    if (c->in_poll)
        return c->rc == 1 && c->revents == POLLIN;
    return c->rc == 1 && c->got == b;
}

static void fork_body(void *arg)
{
    struct fork_ctx *c = arg;
    uint64_t id;
    pid_t pid;
    int status = -1;

    CO_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, c->fd) == 0);
    id = coho_spawn(coho_sched_current(), fork_victim, c);
    coho_sleep_ms(20); /* the victim's recv or poll is in the ring */
    pid = fork();
    CO_CHECK(pid >= 0);
    if (pid == 0) {
        uint64_t before = ring_ops();
        int ok;

        ok = send(c->fd[1], "c", 1, MSG_DONTWAIT) == 1 && coho_join(id, 2000) == 0 &&
             fork_victim_saw(c, 'c') && ring_ops() > before;
        _exit(ok ? 0 : 1);
    }
    CO_CHECK(waitpid(pid, &status, 0) == pid);
    CO_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (!c->in_poll)
        CO_CHECK(send(c->fd[1], "p", 1, 0) == 1);
    CO_CHECK(coho_join(id, 2000) == 0);
    CO_CHECK(fork_victim_saw(c, 'p'));
    close(c->fd[0]);
    close(c->fd[1]);
}

static void uring_forked_child_submits_a_waiting_recv_again(void **state)
{
    struct fork_ctx c = {.in_poll = false, .rc = -2};

    (void)state;
    run_case(fork_body, &c);
}

/* A send parked in the ring when the peer goes: EPIPE and SIGPIPE as from the kernel (io_uring
 * itself sends with MSG_NOSIGNAL). */
static volatile sig_atomic_t pipes;

static void on_pipe(int sig)
{
    (void)sig;
    pipes++;
}

static void closer(void *arg)
{
    coho_sleep_ms(20);
    close(*(int *)arg);
}

static void pipe_body(void *arg)
{
    int fd[2];
    static char data[1 << 20];
    ssize_t n;

    (void)arg;
    CO_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, fd) == 0);
    coho_spawn(coho_sched_current(), closer, &fd[1]);
    n = send(fd[0], data, sizeof(data), 0);
    /* part went into the buffer before the peer closed: the count of what went, as the
     * kernel's blocking send reports; the next send fails */
    CO_CHECK(n > 0 || (n == -1 && errno == EPIPE));
    n = send(fd[0], data, sizeof(data), 0);
    CO_CHECK(n == -1 && errno == EPIPE);
    CO_CHECK(pipes >= 1);
    close(fd[0]);
}

static void uring_send_to_a_gone_peer_raises_sigpipe(void **state)
{
    struct sigaction sa = {.sa_handler = on_pipe}, old;

    (void)state;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGPIPE, &sa, &old);
    pipes = 0;
    run_case(pipe_body, NULL);
    sigaction(SIGPIPE, &old, NULL);
}

/* ---- accept, connect, the user's recvmsg/sendmsg, one-fd poll ---- */

/* A TCP listener on 127.0.0.1 with a kernel-chosen port, its address in `*a`. */
static int listen_lb(int backlog, struct sockaddr_in *a)
{
    socklen_t len = sizeof(*a);
    int l = socket(AF_INET, SOCK_STREAM, 0);

    memset(a, 0, sizeof(*a));
    a->sin_family = AF_INET;
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (l < 0 || bind(l, (struct sockaddr *)a, sizeof(*a)) != 0 || listen(l, backlog) != 0 ||
        getsockname(l, (struct sockaddr *)a, &len) != 0)
        return -1;
    return l;
}

struct conn_ctx {
    struct sockaddr_in addr;
    unsigned delay_ms;
    int fd;  /* the connected socket, or -1 */
    int err; /* connect's errno */
};

static void connector(void *arg)
{
    struct conn_ctx *c = arg;

    coho_sleep_ms(c->delay_ms);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    CO_CHECK(c->fd >= 0);
    c->err = connect(c->fd, (struct sockaddr *)&c->addr, sizeof(c->addr)) == 0 ? 0 : errno;
}

/* One accept that waits for a connection made 10 ms later: through the ring, the new fd works
 * and shows exactly the flags asked for. */
static void accept_one(int l, struct sockaddr_in *la, int flags)
{
    struct conn_ctx c = {.addr = *la, .delay_ms = 10, .fd = -1, .err = -1};
    struct sockaddr_in peer;
    socklen_t plen = sizeof(peer);
    uint64_t before = ring_ops();
    char buf[8];
    int a, fl, fdfl;

    coho_spawn(coho_sched_current(), connector, &c);
    memset(&peer, 0, sizeof(peer));
    a = accept4(l, (struct sockaddr *)&peer, &plen, flags);
    CO_CHECK(a >= 0);
    CO_CHECK(ring_ops() > before);
    CO_CHECK(plen == sizeof(peer) && peer.sin_family == AF_INET &&
             peer.sin_addr.s_addr == htonl(INADDR_LOOPBACK));
    fl = fcntl(a, F_GETFL);
    fdfl = fcntl(a, F_GETFD);
    CO_CHECK(fl >= 0 && ((fl & O_NONBLOCK) != 0) == ((flags & SOCK_NONBLOCK) != 0));
    CO_CHECK(fdfl >= 0 && ((fdfl & FD_CLOEXEC) != 0) == ((flags & SOCK_CLOEXEC) != 0));
    while (c.err == -1)
        coho_sleep_ms(1);
    CO_CHECK(c.err == 0);
    if (flags & SOCK_NONBLOCK) {
        /* the user's non-blocking view: EAGAIN at once, no ring operation */
        before = ring_ops();
        CO_CHECK(recv(a, buf, sizeof(buf), 0) == -1 && errno == EAGAIN);
        CO_CHECK(ring_ops() == before);
    }
    CO_CHECK(send(c.fd, "ping", 4, 0) == 4);
    if (flags & SOCK_NONBLOCK) {
        struct pollfd p = {.fd = a, .events = POLLIN};

        CO_CHECK(poll(&p, 1, 1000) == 1);
    }
    CO_CHECK(recv(a, buf, sizeof(buf), 0) == 4 && memcmp(buf, "ping", 4) == 0);
    close(a);
    close(c.fd);
}

static void accept_body(void *arg)
{
    struct sockaddr_in la;
    uint64_t before;
    int l, fl;

    (void)arg;
    l = listen_lb(16, &la);
    CO_CHECK(l >= 0);
    accept_one(l, &la, 0);
    accept_one(l, &la, SOCK_CLOEXEC);
    accept_one(l, &la, SOCK_NONBLOCK);
    accept_one(l, &la, SOCK_NONBLOCK | SOCK_CLOEXEC);
    /* accept() too */
    {
        struct conn_ctx c = {.addr = la, .delay_ms = 10, .fd = -1, .err = -1};
        int a;

        before = ring_ops();
        coho_spawn(coho_sched_current(), connector, &c);
        a = accept(l, NULL, NULL);
        CO_CHECK(a >= 0 && ring_ops() > before);
        fl = fcntl(a, F_GETFL);
        CO_CHECK(fl >= 0 && (fl & O_NONBLOCK) == 0);
        CO_CHECK(fcntl(a, F_GETFD) == 0);
        while (c.err == -1)
            coho_sleep_ms(1);
        close(a);
        close(c.fd);
    }
    /* the user's O_NONBLOCK on the listener: EAGAIN at once, as today */
    fl = fcntl(l, F_GETFL);
    CO_CHECK(fcntl(l, F_SETFL, fl | O_NONBLOCK) == 0);
    before = ring_ops();
    CO_CHECK(accept(l, NULL, NULL) == -1 && errno == EAGAIN);
    CO_CHECK(ring_ops() == before);
    close(l);
}

static void uring_accept_goes_through_the_ring_with_the_flags_asked(void **state)
{
    (void)state;
    run_case(accept_body, NULL);
}

struct closer_ctx {
    int fd;
    unsigned delay_ms;
    uint64_t target; /* coho_cancel this coroutine instead */
};

static void closer_co(void *arg)
{
    struct closer_ctx *c = arg;

    coho_sleep_ms(c->delay_ms);
    if (c->target != 0)
        CO_CHECK(coho_cancel(c->target) == 0);
    else
        CO_CHECK(close(c->fd) == 0);
}

struct accept_victim {
    int l;
    int rc;
    int err;
    int done;
};

static void accept_victim_co(void *arg)
{
    struct accept_victim *v = arg;

    v->rc = accept(v->l, NULL, NULL);
    v->err = errno;
    v->done = 1;
}

/* An accept ended by SO_RCVTIMEO (EAGAIN), by a close from another coroutine (EBADF, the
 * address buffer never written), by coho_cancel (ECANCELED): each waits for the cancelled
 * operation's completion, and a connection that comes later is accepted by the next call. */
static void accept_cancel_body(void *arg)
{
    struct timeval tv = {.tv_sec = 0, .tv_usec = 50 * 1000};
    struct sockaddr_in la, peer;
    socklen_t plen = sizeof(peer);
    struct closer_ctx cl = {.delay_ms = 20};
    struct accept_victim v = {0};
    uint64_t t0, before;
    int l, a;

    (void)arg;
    l = listen_lb(16, &la);
    CO_CHECK(l >= 0);
    CO_CHECK(setsockopt(l, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0);
    before = ring_ops();
    t0 = now_ms();
    CO_CHECK(accept(l, NULL, NULL) == -1 && errno == EAGAIN);
    CO_CHECK(now_ms() - t0 >= 50);
    CO_CHECK(ring_ops() > before);
    {
        struct conn_ctx c = {.addr = la, .delay_ms = 0, .fd = -1, .err = -1};

        connector(&c);
        CO_CHECK(c.err == 0);
        a = accept(l, NULL, NULL);
        CO_CHECK(a >= 0);
        close(a);
        close(c.fd);
    }
    /* coho_cancel */
    v.l = l;
    before = ring_ops();
    cl.target = coho_spawn(coho_sched_current(), accept_victim_co, &v);
    coho_spawn(coho_sched_current(), closer_co, &cl);
    while (!v.done)
        coho_sleep_ms(1);
    CO_CHECK(v.rc == -1 && v.err == ECANCELED);
    CO_CHECK(ring_ops() > before);
    /* close from another coroutine */
    cl.target = 0;
    cl.fd = l;
    memset(&peer, 0xAA, sizeof(peer));
    before = ring_ops();
    coho_spawn(coho_sched_current(), closer_co, &cl);
    t0 = now_ms();
    CO_CHECK(accept(l, (struct sockaddr *)&peer, &plen) == -1 && errno == EBADF);
    CO_CHECK(now_ms() - t0 < 1000);
    CO_CHECK(ring_ops() > before);
    coho_sleep_ms(10);
    CO_CHECK(plen == sizeof(peer));
    for (size_t i = 0; i < sizeof(peer); i++)
        CO_CHECK(((unsigned char *)&peer)[i] == 0xAA);
    /* the listener is really closed: a connect is refused */
    {
        struct conn_ctx c = {.addr = la, .delay_ms = 0, .fd = -1, .err = -1};

        connector(&c);
        CO_CHECK(c.err == ECONNREFUSED);
        close(c.fd);
    }
}

static void uring_accept_ended_by_timeout_cancel_and_close(void **state)
{
    (void)state;
    run_case(accept_cancel_body, NULL);
}

/* A listener with backlog 0 whose one queue slot a never-accepted client holds: a further
 * SYN is dropped, so a connect to it hangs in SYN_SENT. */
struct black_hole {
    struct sockaddr_in addr;
    int l;
    int client;
};

static void black_hole_open(struct black_hole *bh)
{
    bh->l = listen_lb(0, &bh->addr);
    CO_CHECK(bh->l >= 0);
    bh->client = socket(AF_INET, SOCK_STREAM, 0);
    CO_CHECK(connect(bh->client, (struct sockaddr *)&bh->addr, sizeof(bh->addr)) == 0);
    coho_sleep_ms(10); /* the handshake's last ACK queues it */
}

/* connect through the ring: success (and EISCONN again), ECONNREFUSED with SO_ERROR left 0,
 * SO_SNDTIMEO (EINPROGRESS, then EALREADY after another wait, as Linux), close from another
 * coroutine (EBADF) and coho_cancel (ECANCELED). */
static void connect_body(void *arg)
{
    struct timeval tv = {.tv_sec = 0, .tv_usec = 50 * 1000};
    struct sockaddr_in la, ra;
    struct closer_ctx cl = {.delay_ms = 20};
    struct black_hole bh;
    socklen_t elen;
    uint64_t before, t0;
    int l, s, a, e, rl;

    (void)arg;
    l = listen_lb(16, &la);
    CO_CHECK(l >= 0);
    s = socket(AF_INET, SOCK_STREAM, 0);
    before = ring_ops();
    CO_CHECK(connect(s, (struct sockaddr *)&la, sizeof(la)) == 0);
    CO_CHECK(ring_ops() > before);
    CO_CHECK(connect(s, (struct sockaddr *)&la, sizeof(la)) == -1 && errno == EISCONN);
    a = accept(l, NULL, NULL);
    CO_CHECK(a >= 0);
    CO_CHECK(send(s, "hi", 2, 0) == 2);
    {
        char b[4];

        CO_CHECK(recv(a, b, sizeof(b), 0) == 2 && memcmp(b, "hi", 2) == 0);
    }
    close(a);
    close(s);
    /* refused: a bound socket that does not listen */
    rl = socket(AF_INET, SOCK_STREAM, 0);
    memset(&ra, 0, sizeof(ra));
    ra.sin_family = AF_INET;
    ra.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    elen = sizeof(ra);
    CO_CHECK(bind(rl, (struct sockaddr *)&ra, sizeof(ra)) == 0 &&
             getsockname(rl, (struct sockaddr *)&ra, &elen) == 0);
    s = socket(AF_INET, SOCK_STREAM, 0);
    before = ring_ops();
    CO_CHECK(connect(s, (struct sockaddr *)&ra, sizeof(ra)) == -1 && errno == ECONNREFUSED);
    CO_CHECK(ring_ops() > before);
    e = -1;
    elen = sizeof(e);
    CO_CHECK(getsockopt(s, SOL_SOCKET, SO_ERROR, &e, &elen) == 0 && e == 0);
    close(s);
    close(rl);
    /* SO_SNDTIMEO against a black hole */
    black_hole_open(&bh);
    s = socket(AF_INET, SOCK_STREAM, 0);
    CO_CHECK(setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == 0);
    before = ring_ops();
    t0 = now_ms();
    CO_CHECK(connect(s, (struct sockaddr *)&bh.addr, sizeof(bh.addr)) == -1 &&
             errno == EINPROGRESS);
    CO_CHECK(now_ms() - t0 >= 50);
    CO_CHECK(ring_ops() > before);
    t0 = now_ms();
    CO_CHECK(connect(s, (struct sockaddr *)&bh.addr, sizeof(bh.addr)) == -1 && errno == EALREADY);
    CO_CHECK(now_ms() - t0 >= 50);
    close(s);
    /* close from another coroutine */
    s = socket(AF_INET, SOCK_STREAM, 0);
    cl.fd = s;
    before = ring_ops();
    coho_spawn(coho_sched_current(), closer_co, &cl);
    t0 = now_ms();
    CO_CHECK(connect(s, (struct sockaddr *)&bh.addr, sizeof(bh.addr)) == -1 && errno == EBADF);
    CO_CHECK(now_ms() - t0 < 1000);
    CO_CHECK(ring_ops() > before);
    close(bh.client);
    close(bh.l);
    close(l);
}

static void uring_connect_refused_timeout_and_close(void **state)
{
    (void)state;
    run_case(connect_body, NULL);
}

/* coho_cancel of a coroutine parked in a ring connect: ECANCELED. */
struct connect_victim {
    struct sockaddr_in addr;
    int rc;
    int err;
    int done;
};

static void connect_victim_co(void *arg)
{
    struct connect_victim *v = arg;
    int s = socket(AF_INET, SOCK_STREAM, 0);

    v->rc = connect(s, (struct sockaddr *)&v->addr, sizeof(v->addr));
    v->err = errno;
    close(s);
    v->done = 1;
}

static void connect_cancel_body(void *arg)
{
    struct closer_ctx cl = {.delay_ms = 20};
    struct connect_victim v = {0};
    struct black_hole bh;
    uint64_t before;

    (void)arg;
    black_hole_open(&bh);
    v.addr = bh.addr;
    before = ring_ops();
    cl.target = coho_spawn(coho_sched_current(), connect_victim_co, &v);
    coho_spawn(coho_sched_current(), closer_co, &cl);
    while (!v.done)
        coho_sleep_ms(1);
    CO_CHECK(v.rc == -1 && v.err == ECANCELED);
    CO_CHECK(ring_ops() > before);
    close(bh.client);
    close(bh.l);
}

static void uring_cancel_of_a_parked_connect(void **state)
{
    (void)state;
    run_case(connect_cancel_body, NULL);
}

/* The user's recvmsg/sendmsg with iovecs on a stream socket: through the ring, the bytes
 * scattered and gathered as the syscall does; a big sendmsg goes out whole; recvmsg with a
 * control buffer stays on readiness. */
struct msg_sender {
    int fd;
    unsigned delay_ms;
    size_t bytes; /* > 0: read and count this many bytes instead of sending */
    size_t got;
};

static void msg_sender_co(void *arg)
{
    struct msg_sender *m = arg;
    char buf[65536];

    coho_sleep_ms(m->delay_ms);
    if (m->bytes == 0) {
        CO_CHECK(send(m->fd, "abcdefgh", 8, MSG_DONTWAIT) == 8);
        return;
    }
    while (m->got < m->bytes) {
        ssize_t n = recv(m->fd, buf, sizeof(buf), 0);

        CO_CHECK(n > 0);
        if (n <= 0)
            return;
        for (ssize_t i = 0; i < n; i++)
            CO_CHECK(buf[i] == (char)((m->got + (size_t)i) % 251));
        m->got += (size_t)n;
    }
}

static void msg_body(void *arg)
{
    int fd[2];
    char a[3], b[5];
    struct iovec iov[2] = {{a, sizeof(a)}, {b, sizeof(b)}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
    struct msg_sender ms = {.delay_ms = 20};
    union {
        struct cmsghdr c;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    uint64_t before;
    size_t big = 4u << 20;
    char *data;

    (void)arg;
    CO_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, fd) == 0);
    ms.fd = fd[1];
    before = ring_ops();
    coho_spawn(coho_sched_current(), msg_sender_co, &ms);
    CO_CHECK(recvmsg(fd[0], &mh, 0) == 8);
    CO_CHECK(memcmp(a, "abc", 3) == 0 && memcmp(b, "defgh", 5) == 0 && mh.msg_flags == 0);
    CO_CHECK(ring_ops() > before);
    /* with a control buffer: the readiness way (no operation) */
    mh.msg_control = ctl.buf;
    mh.msg_controllen = sizeof(ctl.buf);
    before = ring_ops();
    coho_spawn(coho_sched_current(), msg_sender_co, &ms);
    CO_CHECK(recvmsg(fd[0], &mh, 0) == 8);
    CO_CHECK(memcmp(a, "abc", 3) == 0 && memcmp(b, "defgh", 5) == 0);
    CO_CHECK(ring_ops() == before);
    /* a big sendmsg over two iovecs, read 20 ms later: it goes out whole, through the ring */
    data = malloc(big);
    CO_CHECK(data != NULL);
    if (data != NULL) {
        struct iovec wv[2];
        struct msghdr wm = {.msg_iov = wv, .msg_iovlen = 2};

        for (size_t i = 0; i < big; i++)
            data[i] = (char)(i % 251);
        wv[0].iov_base = data;
        wv[0].iov_len = 1000;
        wv[1].iov_base = data + 1000;
        wv[1].iov_len = big - 1000;
        ms.fd = fd[0];
        ms.bytes = big;
        coho_spawn(coho_sched_current(), msg_sender_co, &ms);
        before = ring_ops();
        CO_CHECK(sendmsg(fd[1], &wm, MSG_NOSIGNAL) == (ssize_t)big);
        CO_CHECK(ring_ops() > before);
        CO_CHECK(wv[0].iov_base == data && wv[0].iov_len == 1000); /* the caller's untouched */
        while (ms.got < big)
            coho_sleep_ms(1);
        free(data);
    }
    close(fd[0]);
    close(fd[1]);
}

static void uring_recvmsg_and_sendmsg_go_through_the_ring(void **state)
{
    (void)state;
    run_case(msg_body, NULL);
}

/* poll of one fd: a one-shot poll through the ring with the kernel's revents; a timeout; a
 * hang-up; a close from another coroutine (POLLNVAL, as the readiness way reports). */
static void poll_body(void *arg)
{
    struct pair p = {.delay_ms = 20, .bytes = "x", .len = 1, .close_fd = -1};
    struct closer_ctx cl = {.delay_ms = 20};
    struct pollfd pf;
    uint64_t before, t0;
    char c;

    (void)arg;
    CO_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, p.fd) == 0);
    pf.fd = p.fd[0];
    pf.events = POLLIN;
    before = ring_ops();
    coho_spawn(coho_sched_current(), sender, &p);
    CO_CHECK(poll(&pf, 1, 5000) == 1 && pf.revents == POLLIN);
    CO_CHECK(ring_ops() > before);
    CO_CHECK(recv(p.fd[0], &c, 1, 0) == 1 && c == 'x');
    /* timeout */
    before = ring_ops();
    t0 = now_ms();
    CO_CHECK(poll(&pf, 1, 50) == 0 && pf.revents == 0);
    CO_CHECK(now_ms() - t0 >= 50);
    CO_CHECK(ring_ops() > before);
    /* ppoll too, POLLOUT ready at once */
    {
        struct timespec ts = {.tv_sec = 1};

        pf.events = POLLOUT;
        CO_CHECK(ppoll(&pf, 1, &ts, NULL) == 1 && pf.revents == POLLOUT);
    }
    /* the peer hangs up: POLLIN | POLLHUP, as the kernel's poll */
    pf.events = POLLIN;
    p.close_fd = p.fd[1];
    coho_spawn(coho_sched_current(), sender, &p);
    CO_CHECK(poll(&pf, 1, 5000) == 1 && pf.revents == (POLLIN | POLLHUP));
    close(p.fd[0]);
    /* close from another coroutine */
    CO_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, p.fd) == 0);
    cl.fd = p.fd[0];
    pf.fd = p.fd[0];
    before = ring_ops();
    coho_spawn(coho_sched_current(), closer_co, &cl);
    CO_CHECK(poll(&pf, 1, 5000) == 1 && pf.revents == POLLNVAL);
    CO_CHECK(ring_ops() > before);
    close(p.fd[1]);
}

static void uring_one_fd_poll_goes_through_the_ring(void **state)
{
    (void)state;
    run_case(poll_body, NULL);
}

/* Two coroutines parked in ring recvs whose completions arrive in the same loop pass; the one
 * that runs first closes the other's fd. The other's operation has completed with a byte, but
 * its fd is closed before it runs: its recv fails with EBADF (as the readiness way's look after
 * the wake-up would), and the hook does not touch the freed registration (ASan). */
struct race_side {
    int fd;        /* this side's socket */
    int *other_fd; /* closed by whichever side runs first */
    int *first;    /* set by the side that runs first */
    ssize_t n;
    int err;
    int done;
};

static void race_side_co(void *arg)
{
    struct race_side *r = arg;
    char b[16];

    r->n = recv(r->fd, b, sizeof(b), 0);
    r->err = errno;
    if (*r->first == 0) {
        *r->first = 1;
        CO_CHECK(close(*r->other_fd) == 0);
    }
    r->done = 1;
}

struct race_send {
    int fd[2];
};

static void *race_sender(void *arg)
{
    struct race_send *rs = arg;
    struct timespec ts = {.tv_sec = 0, .tv_nsec = 20 * 1000000L};

    nanosleep(&ts, NULL);
    if (send(rs->fd[0], "a", 1, 0) != 1 || send(rs->fd[1], "b", 1, 0) != 1)
        abort();
    return NULL;
}

static void close_race_body(void *arg)
{
    int a[2], b[2], first = 0;
    struct race_side sa, sb;
    struct race_send rs;
    struct timespec hold = {.tv_sec = 0, .tv_nsec = 150 * 1000000L};
    pthread_t th;

    (void)arg;
    CO_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, a) == 0);
    CO_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, b) == 0);
    sa = (struct race_side){.fd = a[0], .other_fd = &b[0], .first = &first};
    sb = (struct race_side){.fd = b[0], .other_fd = &a[0], .first = &first};
    coho_spawn(coho_sched_current(), race_side_co, &sa);
    coho_spawn(coho_sched_current(), race_side_co, &sb);
    coho_sleep_ms(10); /* both recvs are submitted and parked */
    rs.fd[0] = a[1];
    rs.fd[1] = b[1];
    CO_CHECK(pthread_create(&th, NULL, race_sender, &rs) == 0);
    /* Hold the thread (nanosleep through the syscall: not a park) while both bytes arrive, so
     * both completions reach the scheduler in one pass. */
    syscall(SYS_nanosleep, &hold, NULL);
    while (!sa.done || !sb.done)
        coho_sleep_ms(1);
    pthread_join(th, NULL);
    /* One side ran first with its byte; the other's fd was closed before it ran. */
    CO_CHECK((sa.n == 1 && sb.n == -1 && sb.err == EBADF) ||
             (sb.n == 1 && sa.n == -1 && sa.err == EBADF));
    close(a[1]);
    close(b[1]);
}

static void uring_fd_closed_after_the_completion_reports_ebadf(void **state)
{
    (void)state;
    run_case(close_race_body, NULL);
}

/* The same with the victim in a one-fd poll through the ring (fork_body above). */
static void uring_forked_child_submits_a_waiting_poll_again(void **state)
{
    struct fork_ctx c = {.in_poll = true, .rc = -2};

    (void)state;
    run_case(fork_body, &c);
}

/* A read that finds data is made at once, not submitted (the default `submit` policy submits a
 * read without a try only once a short read drained the socket), and the fast path's system
 * call reports as libc's does: errno untouched on success, the kernel's error in errno, EAGAIN
 * under the user's O_NONBLOCK. */
static void ready_read_body(void *arg)
{
    struct pair p = {.delay_ms = 20, .bytes = "wxyz", .len = 4, .close_fd = -1};
    char buf[64];
    uint64_t before, parks;
    int fl;

    (void)arg;
    CO_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, p.fd) == 0);
    /* Registered with the scheduler by a first read that waits (through the ring), and a
     * full read: the socket is not known drained. */
    coho_spawn(coho_sched_current(), sender, &p);
    CO_CHECK(recv(p.fd[0], buf, 4, 0) == 4 && memcmp(buf, "wxyz", 4) == 0);
    CO_CHECK(send(p.fd[1], "abcdefghijkl", 12, 0) == 12);
    CO_CHECK(recv(p.fd[0], buf, 4, 0) == 4 && memcmp(buf, "abcd", 4) == 0);
    /* Not drained: the reads that find data neither park nor go to the ring. */
    before = ring_ops();
    parks = parks_io();
    errno = 777;
    CO_CHECK(recv(p.fd[0], buf, 4, 0) == 4 && memcmp(buf, "efgh", 4) == 0);
    CO_CHECK(errno == 777);
    CO_CHECK(read(p.fd[0], buf, 4) == 4 && memcmp(buf, "ijkl", 4) == 0);
    CO_CHECK(ring_ops() == before && parks_io() == parks);
    /* An error of the system call itself: -1 and the kernel's errno. */
    CO_CHECK(send(p.fd[1], "mn", 2, 0) == 2);
    errno = 0;
    CO_CHECK(recv(p.fd[0], (void *)8, 2, 0) == -1 && errno == EFAULT);
    CO_CHECK(recv(p.fd[0], buf, 2, 0) == 2 && memcmp(buf, "mn", 2) == 0);
    /* The user's O_NONBLOCK: EAGAIN, no park. */
    fl = fcntl(p.fd[0], F_GETFL);
    CO_CHECK(fcntl(p.fd[0], F_SETFL, fl | O_NONBLOCK) == 0);
    parks = parks_io();
    errno = 0;
    CO_CHECK(recv(p.fd[0], buf, 2, 0) == -1 && errno == EAGAIN);
    CO_CHECK(parks_io() == parks);
    CO_CHECK(fcntl(p.fd[0], F_SETFL, fl) == 0);
    /* A write to a peer that is gone: EPIPE (MSG_NOSIGNAL). */
    close(p.fd[0]);
    errno = 0;
    CO_CHECK(send(p.fd[1], "x", 1, MSG_NOSIGNAL) == -1 && errno == EPIPE);
    close(p.fd[1]);
}

static void uring_a_read_that_finds_data_is_made_at_once(void **state)
{
    (void)state;
    run_case(ready_read_body, NULL);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(uring_recv_completes_through_the_ring),
        cmocka_unit_test(uring_timeout_cancels_and_a_later_byte_is_not_lost),
        cmocka_unit_test(uring_close_from_another_coroutine_wakes_with_ebadf),
        cmocka_unit_test(uring_cancel_of_a_parked_recv),
        cmocka_unit_test(uring_partial_writes_go_out_whole),
        cmocka_unit_test(uring_readv_and_writev_go_through_the_ring),
        cmocka_unit_test(uring_forked_child_submits_a_waiting_recv_again),
        cmocka_unit_test(uring_send_to_a_gone_peer_raises_sigpipe),
        cmocka_unit_test(uring_accept_goes_through_the_ring_with_the_flags_asked),
        cmocka_unit_test(uring_accept_ended_by_timeout_cancel_and_close),
        cmocka_unit_test(uring_connect_refused_timeout_and_close),
        cmocka_unit_test(uring_cancel_of_a_parked_connect),
        cmocka_unit_test(uring_recvmsg_and_sendmsg_go_through_the_ring),
        cmocka_unit_test(uring_one_fd_poll_goes_through_the_ring),
        cmocka_unit_test(uring_fd_closed_after_the_completion_reports_ebadf),
        cmocka_unit_test(uring_forked_child_submits_a_waiting_poll_again),
        cmocka_unit_test(uring_a_read_that_finds_data_is_made_at_once),
    };

    return coho_test_main("hook_uring", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
