/* SPDX-License-Identifier: MIT */
/* The hook layer's own behaviours: parking instead of blocking, the user's O_NONBLOCK view,
 * timeouts, close while waiting, the drained-socket shortcut, per-fd locks, recvn/sendn,
 * emulated blocking for plain threads, DNS off-thread. The differential suite against libc is
 * test/integration/conformance_test.cpp. */
/* ctest: TIMEOUT=60 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <coho.h>

#include "base_struct/sys_net.h"
#include "syscall_hook/internal.h"
#include "test/support/cmocka_main.h"

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- checks made off the case's stack ----
 * A failing CMocka assertion longjmps to the case's frame: from a coroutine body that jump
 * crosses stacks and skips the scheduler's frames, and an assertion in a body that never runs
 * proves nothing. Bodies record their checks with CO_CHECK() and CO_CHECK_INT() and count
 * their ends with co_ended(); the case calls expect_co() once the scheduler has returned. */
static struct {
    unsigned failed; /* checks that failed */
    unsigned ended;  /* bodies that ran to their end */
    int line;        /* of the first failed check */
    char what[256];
} co_checks;

#define CO_CHECK(cond)     co_check((cond), __LINE__, #cond)
#define CO_CHECK_INT(a, b) co_check_int((long long)(a), (long long)(b), __LINE__, #a " == " #b)

static void co_record(int line, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void co_record(int line, const char *fmt, ...)
{
    va_list ap;

    if (__atomic_fetch_add(&co_checks.failed, 1, __ATOMIC_RELAXED) != 0)
        return;
    co_checks.line = line;
    va_start(ap, fmt);
    vsnprintf(co_checks.what, sizeof(co_checks.what), fmt, ap);
    va_end(ap);
}

static bool co_check(bool ok, int line, const char *what)
{
    if (!ok)
        co_record(line, "%s", what);
    return ok;
}

static bool co_check_int(long long got, long long want, int line, const char *what)
{
    if (got != want)
        co_record(line, "%s: got %lld", what, got);
    return got == want;
}

static void co_ended(void)
{
    __atomic_fetch_add(&co_checks.ended, 1, __ATOMIC_RELAXED);
}

/* Asserts that no recorded check failed and that `ended` bodies ran to their end, then clears
 * the record. */
static void expect_co(unsigned ended)
{
    unsigned failed = co_checks.failed, n = co_checks.ended;

    co_checks.failed = 0;
    co_checks.ended = 0;
    if (failed != 0)
        fail_msg("%u check(s) failed off the case's stack; the first, line %d: %s", failed,
                 co_checks.line, co_checks.what);
    assert_int_equal(n, ended);
}

/* Runs fn(arg) as the only user coroutine of a fresh scheduler, to completion; `ended`
 * coroutine bodies (fn and what it spawned) must have run to their end. */
static void run_in_coroutine(void (*fn)(void *), void *arg, unsigned ended)
{
    coho_sched_t *s = coho_sched_create(NULL);

    assert_non_null(s);
    assert_int_not_equal(coho_spawn(s, fn, arg), 0);
    assert_int_equal(coho_sched_run(s), 0);
    coho_sched_destroy(s);
    expect_co(ended);
}

/* ---- a ticker proves the thread keeps running coroutines while another is parked ---- */
struct ticker {
    volatile int ticks;
    volatile bool stop;
};

static void ticker_main(void *arg)
{
    struct ticker *t = arg;

    while (!t->stop) {
        t->ticks++;
        coho_sleep_ms(1);
    }
}

struct park_ctx {
    struct ticker t;
    int sv[2];
    ssize_t got;
    int err;
    int ticks_seen;
    char buf[16];
};

static void parked_reader(void *arg)
{
    struct park_ctx *c = arg;

    c->got = recv(c->sv[0], c->buf, sizeof(c->buf), 0);
    c->err = errno;
    c->ticks_seen = c->t.ticks;
    c->t.stop = true;
}

/* Writes once the ticker ran 5 times (while the reader stayed parked), however slow the
 * machine: the count, not a fixed sleep, decides when. */
static void late_writer(void *arg)
{
    struct park_ctx *c = arg;
    int waited = 0;

    while (c->t.ticks < 6 && waited++ < 10000)
        coho_sleep_ms(1);
    CO_CHECK_INT(send(c->sv[1], "hello", 5, 0), 5);
    co_ended();
}

static void park_main(void *arg)
{
    struct park_ctx *c = arg;
    coho_sched_t *s = coho__sched_current();

    CO_CHECK_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, c->sv), 0);
    coho_spawn(s, ticker_main, &c->t);
    coho_spawn(s, parked_reader, c);
    coho_spawn(s, late_writer, c);
    co_ended();
}

static void recv_parks_coroutine_while_others_run(void **state)
{
    struct park_ctx c;

    (void)state;
    memset(&c, 0, sizeof(c));
    run_in_coroutine(park_main, &c, 2);
    assert_int_equal(c.got, 5);
    assert_memory_equal(c.buf, "hello", 5);
    assert_true(c.ticks_seen >= 5); /* the ticker ran while the reader was parked */
    close(c.sv[0]);
    close(c.sv[1]);
}

/* ---- the user's O_NONBLOCK view ---- */
static void view_main(void *arg)
{
    int sv[2], fl, on = 1;
    char b;

    (void)arg;
    CO_CHECK_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    fl = fcntl(sv[0], F_GETFL);
    CO_CHECK(!(fl & O_NONBLOCK)); /* coho's own O_NONBLOCK never shows */
    CO_CHECK(coho__sys.fcntl(sv[0], F_GETFL) & O_NONBLOCK);
    CO_CHECK_INT(fcntl(sv[0], F_SETFL, fl | O_NONBLOCK), 0);
    CO_CHECK(fcntl(sv[0], F_GETFL) & O_NONBLOCK);
    errno = 0;
    CO_CHECK_INT(recv(sv[0], &b, 1, 0), -1);
    CO_CHECK_INT(errno, EAGAIN); /* user non-blocking: never parks */
    CO_CHECK_INT(fcntl(sv[0], F_SETFL, fl), 0);
    CO_CHECK(!(fcntl(sv[0], F_GETFL) & O_NONBLOCK));
    CO_CHECK_INT(ioctl(sv[1], FIONBIO, &on), 0);
    CO_CHECK(fcntl(sv[1], F_GETFL) & O_NONBLOCK);
    {
        int d = dup(sv[1]); /* the view belongs to the open file description */

        CO_CHECK(d >= 0);
        CO_CHECK(fcntl(d, F_GETFL) & O_NONBLOCK);
        close(d);
    }
    close(sv[0]);
    close(sv[1]);
    co_ended();
}

static void f_getfl_shows_user_view_and_user_nonblock_returns_eagain(void **state)
{
    (void)state;
    run_in_coroutine(view_main, NULL, 1);
}

/* A short read marks the socket drained, so the next read in the blocking view parks without
 * a system call. In the non-blocking view the read is made anyway: data that arrived since is
 * returned at once (before the driver saw its edge), an empty socket gives EAGAIN, and a
 * successful read leaves errno as it was. */
static void drained_view_main(void *arg)
{
    int sv[2], fl;
    char b[16];

    (void)arg;
    CO_CHECK_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    CO_CHECK_INT(send(sv[1], "abc", 3, 0), 3);
    CO_CHECK_INT(recv(sv[0], b, sizeof(b), 0), 3); /* short: drained */
    fl = fcntl(sv[0], F_GETFL);
    CO_CHECK_INT(fcntl(sv[0], F_SETFL, fl | O_NONBLOCK), 0);
    errno = 0;
    CO_CHECK_INT(recv(sv[0], b, sizeof(b), 0), -1);
    CO_CHECK_INT(errno, EAGAIN);
    CO_CHECK_INT(coho__sys.send(sv[1], "de", 2, 0), 2); /* raw: no scheduler pass between */
    errno = EDOM;
    CO_CHECK_INT(recv(sv[0], b, sizeof(b), 0), 2);
    CO_CHECK_INT(errno, EDOM);
    CO_CHECK(memcmp(b, "de", 2) == 0);
    CO_CHECK_INT(coho__sys.send(sv[1], "f", 1, 0), 1);
    errno = ERANGE;
    CO_CHECK_INT(read(sv[0], b, sizeof(b)), 1);
    CO_CHECK_INT(errno, ERANGE);
    CO_CHECK_INT(fcntl(sv[0], F_SETFL, fl), 0);
    /* Back in the blocking view: a read of a drained socket parks until the data comes. */
    CO_CHECK_INT(coho__sys.send(sv[1], "gh", 2, 0), 2);
    errno = EDOM;
    CO_CHECK_INT(recv(sv[0], b, sizeof(b), 0), 2);
    CO_CHECK_INT(errno, EDOM);
    CO_CHECK(memcmp(b, "gh", 2) == 0);
    close(sv[0]);
    close(sv[1]);
    co_ended();
}

static void drained_socket_in_the_nonblocking_view_still_reads(void **state)
{
    (void)state;
    run_in_coroutine(drained_view_main, NULL, 1);
}

/* ---- SO_RCVTIMEO ---- */
static void rcvtimeo_main(void *arg)
{
    struct timeval tv = {.tv_sec = 0, .tv_usec = 50000};
    int sv[2];
    uint64_t t0;
    char b;

    (void)arg;
    CO_CHECK_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    CO_CHECK_INT(setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
    t0 = now_ms();
    errno = 0;
    CO_CHECK_INT(recv(sv[0], &b, 1, 0), -1);
    CO_CHECK_INT(errno, EAGAIN);
    CO_CHECK(now_ms() - t0 >= 50);
    CO_CHECK(now_ms() - t0 < 2000);
    close(sv[0]);
    close(sv[1]);
    co_ended();
}

static void so_rcvtimeo_expires_with_eagain(void **state)
{
    (void)state;
    run_in_coroutine(rcvtimeo_main, NULL, 1);
}

/* ---- close while another coroutine waits ---- */
struct close_ctx {
    int sv[2];
    ssize_t got;
    int err;
};

static void close_waiter(void *arg)
{
    struct close_ctx *c = arg;
    char b;

    c->got = recv(c->sv[0], &b, 1, 0);
    c->err = errno;
}

static void close_closer(void *arg)
{
    struct close_ctx *c = arg;
    int again[2];

    coho_sleep_ms(10);
    close(c->sv[0]);
    /* The number is likely reused at once; the old waiter must not see the new tenant. */
    CO_CHECK_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, again), 0);
    send(again[1], "x", 1, 0);
    coho_sleep_ms(10);
    close(again[0]);
    close(again[1]);
    co_ended();
}

static void close_main(void *arg)
{
    struct close_ctx *c = arg;

    CO_CHECK_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, c->sv), 0);
    coho_spawn(coho__sched_current(), close_waiter, c);
    coho_spawn(coho__sched_current(), close_closer, c);
    co_ended();
}

static void close_wakes_waiter_with_ebadf(void **state)
{
    struct close_ctx c = {.got = 99};

    (void)state;
    run_in_coroutine(close_main, &c, 2);
    assert_int_equal(c.got, -1);
    assert_int_equal(c.err, EBADF);
    close(c.sv[1]);
}

/* ---- the drained-socket shortcut still sees data and FIN ----
 * The writer sends each "ping" only once the reader has taken the previous one, so every read
 * is short (4 of 64 bytes: the socket is drained) and the next one parks without a syscall
 * until the next edge. Exactly 101 reads prove that each of those edges woke the reader and no
 * data was merged or lost; the last edge carries "last" and the FIN together. */
enum { DRAIN_PINGS = 100 };

struct drain_ctx {
    int sv[2];
    int msgs; /* reads that returned data */
    bool eof;
    size_t len;
    char data[8 * (DRAIN_PINGS + 1)];
};

static void drain_reader(void *arg)
{
    struct drain_ctx *c = arg;
    char buf[64];

    for (;;) {
        ssize_t n = recv(c->sv[0], buf, sizeof(buf), 0);

        if (n == 0) {
            c->eof = true;
            co_ended();
            return;
        }
        if (!CO_CHECK(n > 0) || !CO_CHECK((size_t)n <= sizeof(c->data) - c->len))
            return;
        memcpy(c->data + c->len, buf, (size_t)n);
        c->len += (size_t)n;
        c->msgs++;
    }
}

static void drain_writer(void *arg)
{
    struct drain_ctx *c = arg;
    uint64_t deadline = now_ms() + 5000;
    int i;

    for (i = 0; i < DRAIN_PINGS; i++) {
        CO_CHECK_INT(send(c->sv[1], "ping", 4, 0), 4);
        while (c->msgs == i && now_ms() < deadline) /* until the reader took it */
            coho_yield();
        if (!CO_CHECK_INT(c->msgs, i + 1))
            break;
    }
    /* Data and FIN in one edge: the reader must get both. */
    CO_CHECK_INT(send(c->sv[1], "last", 4, 0), 4);
    shutdown(c->sv[1], SHUT_WR);
    co_ended();
}

static void drain_main(void *arg)
{
    struct drain_ctx *c = arg;

    CO_CHECK_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, c->sv), 0);
    coho_spawn(coho__sched_current(), drain_reader, c);
    coho_spawn(coho__sched_current(), drain_writer, c);
    co_ended();
}

static void short_reads_then_data_and_fin_are_all_seen(void **state)
{
    struct drain_ctx c = {0};
    char want[sizeof(c.data)];
    size_t n = 0;

    (void)state;
    run_in_coroutine(drain_main, &c, 3);
    for (int i = 0; i < DRAIN_PINGS; i++, n += 4)
        memcpy(want + n, "ping", 4);
    memcpy(want + n, "last", 4);
    n += 4;
    assert_true(c.eof);
    assert_int_equal(c.msgs, DRAIN_PINGS + 1);
    assert_int_equal(c.len, n);
    assert_memory_equal(c.data, want, n);
    close(c.sv[0]);
    close(c.sv[1]);
}

/* ---- refused connect reports the real error ---- */
static void refused_main(void *arg)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof(a);
    int l, fd;

    (void)arg;
    /* A port nobody listens on: bind one, note it, close it. */
    l = socket(AF_INET, SOCK_STREAM, 0);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CO_CHECK_INT(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
    CO_CHECK_INT(getsockname(l, (struct sockaddr *)&a, &len), 0);
    close(l);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    errno = 0;
    CO_CHECK_INT(connect(fd, (struct sockaddr *)&a, sizeof(a)), -1);
    CO_CHECK_INT(errno, ECONNREFUSED);
    close(fd);
    co_ended();
}

static void connect_refused_reports_econnrefused(void **state)
{
    (void)state;
    run_in_coroutine(refused_main, NULL, 1);
}

/* ---- a loopback accept/connect/echo with recvn/sendn and big writes ---- */
struct echo_ctx {
    int lfd;
    struct sockaddr_in addr;
    size_t size;
    bool ok;
};

static void echo_server(void *arg)
{
    struct echo_ctx *c = arg;
    char *buf = malloc(c->size);
    int fd = accept(c->lfd, NULL, NULL);

    CO_CHECK(fd >= 0);
    CO_CHECK_INT(recvn(fd, buf, c->size, 0), (ssize_t)c->size);
    CO_CHECK_INT(sendn(fd, buf, c->size, 0), (ssize_t)c->size);
    close(fd);
    free(buf);
    co_ended();
}

static void echo_client(void *arg)
{
    struct echo_ctx *c = arg;
    char *out = malloc(c->size), *in = malloc(c->size);
    size_t i;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    for (i = 0; i < c->size; i++)
        out[i] = (char)(i * 7 + 3);
    CO_CHECK_INT(connect(fd, (struct sockaddr *)&c->addr, sizeof(c->addr)), 0);
    /* 8 MiB in one blocking send: returns only when all of it went. */
    CO_CHECK_INT(send(fd, out, c->size, 0), (ssize_t)c->size);
    CO_CHECK_INT(recv(fd, in, c->size, MSG_WAITALL), (ssize_t)c->size);
    c->ok = memcmp(in, out, c->size) == 0;
    CO_CHECK_INT(recv(fd, in, 1, 0), 0); /* the server closed */
    close(fd);
    free(out);
    free(in);
    co_ended();
}

static void echo_main(void *arg)
{
    struct echo_ctx *c = arg;
    socklen_t len = sizeof(c->addr);

    c->lfd = socket(AF_INET, SOCK_STREAM, 0);
    c->addr.sin_family = AF_INET;
    c->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CO_CHECK_INT(bind(c->lfd, (struct sockaddr *)&c->addr, sizeof(c->addr)), 0);
    CO_CHECK_INT(listen(c->lfd, 16), 0);
    CO_CHECK_INT(getsockname(c->lfd, (struct sockaddr *)&c->addr, &len), 0);
    coho_spawn(coho__sched_current(), echo_server, c);
    coho_spawn(coho__sched_current(), echo_client, c);
    co_ended();
}

static void blocking_8mib_send_and_waitall_recv_complete_in_one_thread(void **state)
{
    struct echo_ctx c = {.size = 8u << 20};

    (void)state;
    run_in_coroutine(echo_main, &c, 3);
    assert_true(c.ok);
    close(c.lfd);
}

/* ---- accepted sockets: non-blocking in the kernel from accept4 on, the user's view kept ---- */
struct acc_ctx {
    int client; /* the connected peer of the accepted socket under test */
};

static void acc_late_sender(void *arg)
{
    struct acc_ctx *c = arg;

    coho_sleep_ms(20);
    CO_CHECK_INT(send(c->client, "x", 1, 0), 1);
    co_ended();
}

/* Connects a client to `addr` and accepts it with accept4(`flags`); *client gets the peer. */
static int acc_pair(int lfd, const struct sockaddr_in *addr, int flags, int *client)
{
    *client = socket(AF_INET, SOCK_STREAM, 0);
    CO_CHECK_INT(connect(*client, (const struct sockaddr *)addr, sizeof(*addr)), 0);
    return accept4(lfd, NULL, NULL, flags);
}

/* The listener's own mode (blocking or O_NONBLOCK, as net/ listens) must not matter. */
static void acc_check(int lfd_flags)
{
    struct sockaddr_in addr = {.sin_family = AF_INET};
    socklen_t len = sizeof(addr);
    struct acc_ctx c;
    char b;
    int lfd = socket(AF_INET, SOCK_STREAM | lfd_flags, 0), a;

    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CO_CHECK_INT(bind(lfd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    CO_CHECK_INT(listen(lfd, 16), 0);
    CO_CHECK_INT(getsockname(lfd, (struct sockaddr *)&addr, &len), 0);

    /* The blocking view: F_GETFL hides the kernel's O_NONBLOCK, a recv parks for the data. */
    a = acc_pair(lfd, &addr, SOCK_CLOEXEC, &c.client);
    CO_CHECK(a > 2);
    CO_CHECK_INT(fcntl(a, F_GETFL) & O_NONBLOCK, 0);
    CO_CHECK((coho__sys.fcntl(a, F_GETFL) & O_NONBLOCK) != 0);
    CO_CHECK((fcntl(a, F_GETFD) & FD_CLOEXEC) != 0);
    coho_spawn(coho__sched_current(), acc_late_sender, &c);
    CO_CHECK_INT(recv(a, &b, 1, 0), 1);
    CO_CHECK_INT(b, 'x');
    close(a);
    close(c.client);

    /* The user's O_NONBLOCK: F_GETFL shows it, a recv with nothing there is EAGAIN. */
    a = acc_pair(lfd, &addr, SOCK_NONBLOCK, &c.client);
    CO_CHECK(a > 2);
    CO_CHECK(((long)fcntl(a, F_GETFL) & O_NONBLOCK) != 0);
    errno = 0;
    CO_CHECK_INT(recv(a, &b, 1, 0), -1);
    CO_CHECK_INT(errno, EAGAIN);
    /* ... and clearing it gives the blocking view back. */
    CO_CHECK_INT(fcntl(a, F_SETFL, fcntl(a, F_GETFL) & ~O_NONBLOCK), 0);
    coho_spawn(coho__sched_current(), acc_late_sender, &c);
    CO_CHECK_INT(recv(a, &b, 1, 0), 1);
    close(a);
    close(c.client);
    close(lfd);
}

static void acc_main(void *arg)
{
    (void)arg;
    acc_check(0);
    acc_check(SOCK_NONBLOCK);
    co_ended();
}

static void accepted_socket_is_nonblocking_underneath_with_the_users_view(void **state)
{
    (void)state;
    run_in_coroutine(acc_main, NULL, 5);
}

/* ---- per-fd write lock: FIFO, and frames never interleave ---- */
struct lock_ctx {
    int sv[2];
    int order[3];
    int n;
};

static void locker(void *arg)
{
    struct lock_ctx *c = arg;
    int me = (int)(coho_self() & 0xff);

    CO_CHECK_INT(coho_fd_lock(c->sv[0], COHO_FD_LOCK_WRITE), 0);
    c->order[c->n++] = me;
    coho_sleep_ms(5); /* hold it across a park */
    CO_CHECK_INT(coho_fd_unlock(c->sv[0], COHO_FD_LOCK_WRITE), 0);
    co_ended();
}

static void lock_main(void *arg)
{
    struct lock_ctx *c = arg;
    uint64_t ids[3];
    int i;

    CO_CHECK_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, c->sv), 0);
    for (i = 0; i < 3; i++)
        ids[i] = coho_spawn(coho__sched_current(), locker, c);
    for (i = 0; i < 3; i++)
        CO_CHECK_INT(coho_join(ids[i], -1), 0);
    for (i = 0; i < 3; i++)
        CO_CHECK_INT(c->order[i], (int)(ids[i] & 0xff));
    errno = 0;
    CO_CHECK_INT(coho_fd_unlock(c->sv[0], COHO_FD_LOCK_WRITE), -1);
    CO_CHECK_INT(errno, EPERM);
    close(c->sv[0]);
    close(c->sv[1]);
    co_ended();
}

static void fd_write_lock_is_fifo_and_owner_checked(void **state)
{
    struct lock_ctx c = {0};

    (void)state;
    run_in_coroutine(lock_main, &c, 4);
}

/* ---- a socket made in a coroutine keeps blocking semantics in a plain thread ---- */
static int thread_fd = -1;

static void make_socket_main(void *arg)
{
    int *sv = arg;

    CO_CHECK_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    co_ended();
}

static void *late_sender(void *arg)
{
    struct timespec ts = {.tv_sec = 0, .tv_nsec = 30 * 1000 * 1000};

    (void)arg;
    nanosleep(&ts, NULL);
    send(thread_fd, "z", 1, 0);
    return NULL;
}

static void plain_thread_blocks_on_socket_made_in_coroutine(void **state)
{
    int sv[2];
    pthread_t th;
    char b = 0;

    (void)state;
    run_in_coroutine(make_socket_main, sv, 1);
    thread_fd = sv[1];
    assert_int_equal(pthread_create(&th, NULL, late_sender, NULL), 0);
    /* Outside any coroutine: libc's blocking recv, even though the kernel file is O_NONBLOCK. */
    assert_int_equal(recv(sv[0], &b, 1, 0), 1);
    assert_int_equal(b, 'z');
    pthread_join(th, NULL);
    close(sv[0]);
    close(sv[1]);
}

/* The same on the scheduler's own thread, outside its coroutines, while the scheduler that
 * adopted the socket still exists (the hooks' fast path finds its registration there): the
 * first attempt is made, and a call that would block blocks the thread as libc's would,
 * instead of parking; errno stays as it was on success. */
static void scheduler_thread_outside_coroutines_blocks_like_libc(void **state)
{
    coho_sched_t *s = coho_sched_create(NULL);
    int sv[2];
    pthread_t th;
    char b[8] = {0};

    (void)state;
    assert_non_null(s);
    assert_int_not_equal(coho_spawn(s, make_socket_main, sv), 0);
    assert_int_equal(coho_sched_run(s), 0);
    expect_co(1);
    assert_int_equal(send(sv[1], "xy", 2, 0), 2);
    errno = EDOM;
    assert_int_equal(recv(sv[0], b, sizeof(b), 0), 2); /* short: no drained note here */
    assert_int_equal(errno, EDOM);
    thread_fd = sv[1];
    assert_int_equal(pthread_create(&th, NULL, late_sender, NULL), 0);
    errno = ERANGE;
    assert_int_equal(read(sv[0], b, sizeof(b)), 1); /* EAGAIN first, then a real wait */
    assert_int_equal(errno, ERANGE);
    assert_int_equal(b[0], 'z');
    pthread_join(th, NULL);
    close(sv[0]);
    close(sv[1]);
    coho_sched_destroy(s);
}

/* ---- poll with many fds ---- */
static void poll_main(void *arg)
{
    enum { N = 200 };
    struct pollfd p[N];
    int sv[N][2], i;
    uint64_t t0;

    (void)arg;
    for (i = 0; i < N; i++) {
        CO_CHECK_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv[i]), 0);
        p[i].fd = sv[i][0];
        p[i].events = POLLIN;
    }
    t0 = now_ms();
    CO_CHECK_INT(poll(p, N, 20), 0); /* nothing ready: times out */
    CO_CHECK(now_ms() - t0 >= 20);
    send(sv[N - 1][1], "a", 1, 0);
    send(sv[7][1], "b", 1, 0);
    CO_CHECK_INT(poll(p, N, -1), 2);
    for (i = 0; i < N; i++)
        CO_CHECK_INT(p[i].revents, (i == 7 || i == N - 1) ? POLLIN : 0);
    for (i = 0; i < N; i++) {
        close(sv[i][0]);
        close(sv[i][1]);
    }
    co_ended();
}

static void poll_reports_exact_revents_and_honours_timeout(void **state)
{
    (void)state;
    run_in_coroutine(poll_main, NULL, 1);
}

/* ---- poll after a read that emptied the socket ---- */
static int polls_made;
static int (*real_poll)(struct pollfd *, nfds_t, int);

static int counting_poll(struct pollfd *fds, nfds_t n, int timeout_ms)
{
    polls_made++;
    return real_poll(fds, n, timeout_ms);
}

/* Sends one byte to *arg after 20 ms. */
static void late_byte_main(void *arg)
{
    coho_sleep_ms(20);
    CO_CHECK_INT(send(*(int *)arg, "b", 1, 0), 1);
    co_ended();
}

/* How a one-fd poll waits here: 0 the readiness way (epoll, COHO_URING_OPS=off), else the
 * io_uring ring's one-shot poll, after a look first (1, "on", when not drained) or without
 * one (2, "submit", the default). */
static int poll_ring_mode(void)
{
    const char *e = getenv("COHO_URING_OPS");

    if (coho_sched_backend(coho_sched_current()) != COHO_BACKEND_IO_URING)
        return 0;
    if (e == NULL || e[0] == '\0' || strcmp(e, "submit") == 0)
        return 2;
    return strcmp(e, "on") == 0 ? 1 : 0;
}

static void drained_poll_main(void *arg)
{
    int mode = poll_ring_mode();
    int sv[2];
    char b[16];
    struct pollfd p;

    (void)arg;
    CO_CHECK_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    real_poll = coho__sys.poll;
    coho__sys.poll = counting_poll;
    /* Not drained yet: the poll looks first and finds the byte. */
    CO_CHECK_INT(send(sv[1], "a", 1, 0), 1);
    p = (struct pollfd){.fd = sv[0], .events = POLLIN};
    polls_made = 0;
    CO_CHECK_INT(poll(&p, 1, 1000), 1);
    CO_CHECK_INT(p.revents, POLLIN);
    CO_CHECK_INT(polls_made, mode == 2 ? 0 : 1);   /* "submit": the ring's poll finds it */
    CO_CHECK_INT(recv(sv[0], b, sizeof(b), 0), 1); /* short: the socket is drained */
    /* Drained: the poll parks without looking, and looks once after the wake-up (the ring's
     * poll: its completion carries the revents, no look at all). */
    CO_CHECK(coho_spawn(coho_sched_current(), late_byte_main, &sv[1]) != 0);
    polls_made = 0;
    p.revents = -1;
    CO_CHECK_INT(poll(&p, 1, 5000), 1);
    CO_CHECK_INT(p.revents, POLLIN);
    CO_CHECK_INT(polls_made, mode != 0 ? 0 : 1);
    CO_CHECK_INT(recv(sv[0], b, sizeof(b), 0), 1);
    /* Drained and nothing comes: the timeout still holds, with revents 0. */
    polls_made = 0;
    p.revents = -1;
    CO_CHECK_INT(poll(&p, 1, 20), 0);
    CO_CHECK_INT(p.revents, 0);
    CO_CHECK_INT(polls_made, mode != 0 ? 0 : 1);
    /* A timeout of 0 always looks. */
    polls_made = 0;
    CO_CHECK_INT(poll(&p, 1, 0), 0);
    CO_CHECK_INT(polls_made, 1);
    /* A hang-up after the drain is an edge: the poll looks first and reports it. */
    CO_CHECK_INT(shutdown(sv[1], SHUT_WR), 0);
    coho_yield();
    coho_sleep_ms(5);
    polls_made = 0;
    CO_CHECK_INT(poll(&p, 1, 1000), 1);
    CO_CHECK(p.revents & POLLIN);
    CO_CHECK_INT(recv(sv[0], b, sizeof(b), 0), 0);
    coho__sys.poll = real_poll;
    close(sv[0]);
    close(sv[1]);
    co_ended();
}

static void poll_after_a_draining_read_parks_without_a_first_look(void **state)
{
    (void)state;
    run_in_coroutine(drained_poll_main, NULL, 2);
}

/* ---- DNS runs off-thread ---- */
struct dns_ctx {
    struct ticker t;
    int rc;
};

static void dns_lookup(void *arg)
{
    struct dns_ctx *c = arg;
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res = NULL;

    c->rc = getaddrinfo("localhost", "80", &hints, &res);
    if (c->rc == 0) {
        if (CO_CHECK(res != NULL)) {
            CO_CHECK_INT(res->ai_family, AF_INET);
            freeaddrinfo(res);
        }
    }
    c->t.stop = true;
    co_ended();
}

static void dns_main(void *arg)
{
    struct dns_ctx *c = arg;

    coho_spawn(coho__sched_current(), ticker_main, &c->t);
    coho_spawn(coho__sched_current(), dns_lookup, c);
}

static void getaddrinfo_resolves_localhost_in_a_coroutine(void **state)
{
    struct dns_ctx c;

    (void)state;
    memset(&c, 0, sizeof(c));
    run_in_coroutine(dns_main, &c, 1);
    assert_int_equal(c.rc, 0);
}

/* ---- whole-buffer writes to a peer that went away: EPIPE, and no SIGPIPE kills the process ----
 * (SIGPIPE keeps its default action here: a raised one ends the test program.) */
static void writevn_to_gone_peer(void)
{
    char a[4096], b[4096];
    struct iovec iov[2] = {{a, sizeof(a)}, {b, sizeof(b)}};
    int sv[2], p[2];

    memset(a, 'a', sizeof(a));
    memset(b, 'b', sizeof(b));
    CO_CHECK_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    close(sv[1]);
    errno = 0;
    CO_CHECK_INT(writevn(sv[0], iov, 2), -1);
    CO_CHECK_INT(errno, EPIPE);
    errno = 0;
    CO_CHECK_INT(sendn(sv[0], a, sizeof(a), 0), -1);
    CO_CHECK_INT(errno, EPIPE);
    close(sv[0]);
    /* Not a socket: writevn is writev (a pipe's reader is still there). */
    CO_CHECK_INT(pipe(p), 0);
    CO_CHECK_INT(writevn(p[1], iov, 1), (ssize_t)sizeof(a));
    CO_CHECK_INT(read(p[0], b, sizeof(b)), (ssize_t)sizeof(a));
    CO_CHECK(memcmp(a, b, sizeof(a)) == 0);
    close(p[0]);
    close(p[1]);
}

static void writevn_gone_peer_main(void *arg)
{
    (void)arg;
    writevn_to_gone_peer();
    co_ended();
}

static void writevn_to_a_closed_peer_fails_with_epipe_without_sigpipe(void **state)
{
    (void)state;
    writevn_to_gone_peer(); /* a plain thread */
    expect_co(0);
    run_in_coroutine(writevn_gone_peer_main, NULL, 1);
}

/* ---- hooks off ---- */
static void nohook_main(void *arg)
{
    int sv[2];
    char b;

    (void)arg;
    CO_CHECK(coho_hook_is_enabled());
    CO_CHECK_INT(coho_hook_enable(false), 0);
    CO_CHECK(!coho_hook_is_enabled());
    CO_CHECK_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    CO_CHECK(!(coho__sys.fcntl(sv[0], F_GETFL) & O_NONBLOCK)); /* not adopted */
    send(sv[1], "q", 1, 0);
    CO_CHECK_INT(recv(sv[0], &b, 1, 0), 1);
    CO_CHECK_INT(coho_hook_enable(true), 0);
    close(sv[0]);
    close(sv[1]);
    co_ended();
}

static void hook_enable_false_passes_calls_to_libc(void **state)
{
    (void)state;
    run_in_coroutine(nohook_main, NULL, 1);
    errno = 0;
    assert_int_equal(coho_hook_enable(true), -1);
    assert_int_equal(errno, EPERM);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(recv_parks_coroutine_while_others_run),
        cmocka_unit_test(f_getfl_shows_user_view_and_user_nonblock_returns_eagain),
        cmocka_unit_test(accepted_socket_is_nonblocking_underneath_with_the_users_view),
        cmocka_unit_test(drained_socket_in_the_nonblocking_view_still_reads),
        cmocka_unit_test(so_rcvtimeo_expires_with_eagain),
        cmocka_unit_test(close_wakes_waiter_with_ebadf),
        cmocka_unit_test(short_reads_then_data_and_fin_are_all_seen),
        cmocka_unit_test(connect_refused_reports_econnrefused),
        cmocka_unit_test(blocking_8mib_send_and_waitall_recv_complete_in_one_thread),
        cmocka_unit_test(fd_write_lock_is_fifo_and_owner_checked),
        cmocka_unit_test(plain_thread_blocks_on_socket_made_in_coroutine),
        cmocka_unit_test(scheduler_thread_outside_coroutines_blocks_like_libc),
        cmocka_unit_test(poll_reports_exact_revents_and_honours_timeout),
        cmocka_unit_test(poll_after_a_draining_read_parks_without_a_first_look),
        cmocka_unit_test(getaddrinfo_resolves_localhost_in_a_coroutine),
        cmocka_unit_test(writevn_to_a_closed_peer_fails_with_epipe_without_sigpipe),
        cmocka_unit_test(hook_enable_false_passes_calls_to_libc),
    };

    return coho_test_main("hook", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
