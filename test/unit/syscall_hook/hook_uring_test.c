/* SPDX-License-Identifier: MIT */
/* Hooked calls on the io_uring backend submitted as ring operations (IORING_OP_RECV/SEND):
 * the scheduler's ring_ops counter proves the ring carried them (a silent fall-back to
 * readiness fails these cases), and the semantics the readiness way keeps hold: a timeout
 * with a later byte not lost, close from another coroutine waking with EBADF without the
 * kernel writing the buffer afterwards, cancellation, partial writes, SIGPIPE. */
/* ctest: TIMEOUT=60 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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

/* fork while a coroutine waits in a ring recv: the child's new ring takes the operation again
 * and the child's copy of the coroutine gets the byte the child sends; the parent's operation
 * (its task work runs only in its own io_uring_enter, not while it sits in waitpid) still
 * waits and gets the parent's byte. The child's send is MSG_DONTWAIT (never a ring operation),
 * so its ring_ops counts the victim's completion alone. */
struct fork_ctx {
    int fd[2];
    char got;
    ssize_t n;
};

static void fork_victim(void *arg)
{
    struct fork_ctx *c = arg;

    c->n = recv(c->fd[0], &c->got, 1, 0);
}

static void fork_body(void *arg)
{
    struct fork_ctx c = {.got = 0, .n = -2};
    uint64_t id;
    pid_t pid;
    int status = -1;

    (void)arg;
    CO_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, c.fd) == 0);
    id = coho_spawn(coho_sched_current(), fork_victim, &c);
    coho_sleep_ms(20); /* the victim's recv is in the ring */
    pid = fork();
    CO_CHECK(pid >= 0);
    if (pid == 0) {
        uint64_t before = ring_ops();
        int ok;

        ok = send(c.fd[1], "c", 1, MSG_DONTWAIT) == 1 && coho_join(id, 2000) == 0 && c.n == 1 &&
             c.got == 'c' && ring_ops() > before;
        _exit(ok ? 0 : 1);
    }
    CO_CHECK(waitpid(pid, &status, 0) == pid);
    CO_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CO_CHECK(send(c.fd[1], "p", 1, 0) == 1);
    CO_CHECK(coho_join(id, 2000) == 0);
    CO_CHECK(c.n == 1 && c.got == 'p');
    close(c.fd[0]);
    close(c.fd[1]);
}

static void uring_forked_child_submits_a_waiting_recv_again(void **state)
{
    (void)state;
    run_case(fork_body, NULL);
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
    };

    return coho_test_main("hook_uring", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
