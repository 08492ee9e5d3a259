/* SPDX-License-Identifier: MIT */
/* coho_sched_dump names what each parked coroutine waits on: the sync primitives and channels
 * (by address), fds, poll/select/epoll_wait, per-fd locks and DNS waits (by fd or count), sleep
 * and join, and for how long. socket_ext's waits (net/) are in test/unit/net/tdp_dump_test.c. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <coho.h>

#include "coroutine/internal.h"
#include "test/support/cmocka_main.h"
#include "test/support/dump_capture.h"

/* ---- sync primitives, channels, sleep, join ------------------------------------------------ */

static coho_mutex_t mu;
static coho_mutex_t cmu;
static coho_cond_t cv;
static coho_sem_t sem;
static coho_wg_t wg;
static coho_chan_t *ch_send; /* capacity 0: a sender parks until a receiver comes */
static coho_chan_t *ch_recv; /* empty: a receiver parks */
static uint64_t sleeper_id;
static bool done_flag;

static void mutex_holder(void *arg)
{
    (void)arg;
    coho_mutex_lock(&mu);
    coho_sleep_ms(60 * 1000); /* cancelled by the stop */
    coho_mutex_unlock(&mu);
}

static void mutex_waiter(void *arg)
{
    (void)arg;
    if (coho_mutex_lock(&mu) == 0)
        coho_mutex_unlock(&mu);
}

static void cond_waiter(void *arg)
{
    (void)arg;
    coho_mutex_lock(&cmu);
    while (!done_flag && coho_cond_wait(&cv, &cmu) == 0) {
    }
    coho_mutex_unlock(&cmu);
}

static void sem_waiter(void *arg)
{
    (void)arg;
    (void)coho_sem_wait(&sem);
}

static void wg_waiter(void *arg)
{
    (void)arg;
    (void)coho_wg_wait(&wg);
}

static void chan_sender(void *arg)
{
    int v = 1;

    (void)arg;
    (void)coho_chan_send(ch_send, &v);
}

static void chan_receiver(void *arg)
{
    int v;

    (void)arg;
    (void)coho_chan_recv(ch_recv, &v);
}

static void sleeper(void *arg)
{
    (void)arg;
    coho_sleep_ms(60 * 1000);
}

static void joiner(void *arg)
{
    (void)arg;
    (void)coho_join(sleeper_id, -1);
}

static void dump_then_stop(void *arg)
{
    (void)arg;
    coho_sleep_ms(50); /* every parker is parked by now */
    coho_sched_dump(sched);
    coho_sched_stop(sched); /* cancels every parked call */
}

static void setup_sync(void)
{
    done_flag = false;
    coho_mutex_init(&mu);
    coho_mutex_init(&cmu);
    coho_cond_init(&cv);
    coho_sem_init(&sem, 0);
    coho_wg_init(&wg);
    coho_wg_add(&wg, 1);
    ch_send = coho_chan_create(sizeof(int), 0);
    ch_recv = coho_chan_create(sizeof(int), 4);
    assert_non_null(ch_send);
    assert_non_null(ch_recv);
    spawn_named("mutex-holder", mutex_holder, NULL);
    spawn_named("mutex-waiter", mutex_waiter, NULL);
    spawn_named("cond-waiter", cond_waiter, NULL);
    spawn_named("sem-waiter", sem_waiter, NULL);
    spawn_named("wg-waiter", wg_waiter, NULL);
    spawn_named("chan-sender", chan_sender, NULL);
    spawn_named("chan-receiver", chan_receiver, NULL);
    sleeper_id = spawn_named("sleeper", sleeper, NULL);
    spawn_named("joiner", joiner, NULL);
    spawn_named("dumper", dump_then_stop, NULL);
}

static void dump_names_sync_channel_sleep_and_join_waits(void **state)
{
    char want[96];

    (void)state;
    run_and_read(setup_sync);
    snprintf(want, sizeof(want), "parked waits on mutex@0x%" PRIxPTR " for ", (uintptr_t)&mu);
    expect_dump_line("mutex-waiter", want);
    snprintf(want, sizeof(want), "parked waits on cond@0x%" PRIxPTR " for ", (uintptr_t)&cv);
    expect_dump_line("cond-waiter", want);
    snprintf(want, sizeof(want), "parked waits on sem@0x%" PRIxPTR " for ", (uintptr_t)&sem);
    expect_dump_line("sem-waiter", want);
    snprintf(want, sizeof(want), "parked waits on waitgroup@0x%" PRIxPTR " for ", (uintptr_t)&wg);
    expect_dump_line("wg-waiter", want);
    snprintf(want, sizeof(want), "parked waits on chan send@0x%" PRIxPTR " for ",
             (uintptr_t)ch_send);
    expect_dump_line("chan-sender", want);
    snprintf(want, sizeof(want), "parked waits on chan recv@0x%" PRIxPTR " for ",
             (uintptr_t)ch_recv);
    expect_dump_line("chan-receiver", want);
    expect_dump_line("mutex-holder", "parked waits on sleep for ");
    expect_dump_line("sleeper", "parked waits on sleep for ");
    snprintf(want, sizeof(want), "parked waits on join %" PRIu64 " for ", sleeper_id);
    expect_dump_line("joiner", want);
    expect_dump_line("dumper", "running");
    free(dump_text);
    coho_chan_destroy(ch_send);
    coho_chan_destroy(ch_recv);
}

/* A condition waiter woken and then parked on the mutex is shown on the mutex, not the cond. */
static void cond_signaller(void *arg)
{
    (void)arg;
    coho_mutex_lock(&cmu);
    done_flag = true;
    coho_cond_signal(&cv);
    coho_sleep_ms(60 * 1000); /* holds cmu: the woken waiter parks on it */
    coho_mutex_unlock(&cmu);
}

static void setup_cond_relock(void)
{
    done_flag = false;
    coho_mutex_init(&cmu);
    coho_cond_init(&cv);
    spawn_named("cond-waiter", cond_waiter, NULL);
    spawn_named("signaller", cond_signaller, NULL);
    spawn_named("dumper", dump_then_stop, NULL);
}

static void dump_shows_a_signalled_cond_waiter_on_its_mutex(void **state)
{
    char want[96];

    (void)state;
    run_and_read(setup_cond_relock);
    snprintf(want, sizeof(want), "parked waits on mutex@0x%" PRIxPTR " for ", (uintptr_t)&cmu);
    expect_dump_line("cond-waiter", want);
    free(dump_text);
}

/* ---- fds, poll, select, epoll_wait, fd locks ----------------------------------------------- */

static int rd_pair[2]; /* [0] is read by the reader; nobody writes */
static int wr_pair[2]; /* [0] is written until full; nobody reads */
static int ep_fd;
static int lock_pair[2];

static void fd_reader(void *arg)
{
    char c;

    (void)arg;
    (void)recv(rd_pair[0], &c, 1, 0);
}

static void fd_writer(void *arg)
{
    static char big[4 << 20];

    (void)arg;
    (void)send(wr_pair[0], big, sizeof(big), MSG_NOSIGNAL); /* parks once the buffers fill */
}

static void poller(void *arg)
{
    struct pollfd p[2] = {{.fd = rd_pair[0], .events = POLLIN},
                          {.fd = rd_pair[1], .events = POLLPRI}};

    (void)arg;
    (void)poll(p, 2, 60 * 1000);
}

static void selecter(void *arg)
{
    fd_set rs;

    (void)arg;
    FD_ZERO(&rs);
    FD_SET(rd_pair[0], &rs);
    (void)select(rd_pair[0] + 1, &rs, NULL, NULL, NULL);
}

static void epoller(void *arg)
{
    struct epoll_event ev;

    (void)arg;
    (void)epoll_wait(ep_fd, &ev, 1, 60 * 1000);
}

static void lock_holder(void *arg)
{
    (void)arg;
    if (coho_fd_lock(lock_pair[0], COHO_FD_LOCK_WRITE) == 0) {
        coho_sleep_ms(60 * 1000);
        coho_fd_unlock(lock_pair[0], COHO_FD_LOCK_WRITE);
    }
}

static void lock_waiter(void *arg)
{
    (void)arg;
    if (coho_fd_lock(lock_pair[0], COHO_FD_LOCK_WRITE) == 0)
        coho_fd_unlock(lock_pair[0], COHO_FD_LOCK_WRITE);
}

static void setup_fds(void)
{
    struct epoll_event ev = {.events = EPOLLIN};
    int small = 4096;

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, rd_pair), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, wr_pair), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, lock_pair), 0);
    assert_int_equal(setsockopt(wr_pair[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    ep_fd = epoll_create1(EPOLL_CLOEXEC);
    assert_true(ep_fd >= 0);
    ev.data.fd = rd_pair[0];
    assert_int_equal(epoll_ctl(ep_fd, EPOLL_CTL_ADD, rd_pair[0], &ev), 0);
    spawn_named("fd-reader", fd_reader, NULL);
    spawn_named("fd-writer", fd_writer, NULL);
    spawn_named("poller", poller, NULL);
    spawn_named("selecter", selecter, NULL);
    spawn_named("epoller", epoller, NULL);
    spawn_named("lock-holder", lock_holder, NULL);
    spawn_named("lock-waiter", lock_waiter, NULL);
    spawn_named("dumper", dump_then_stop, NULL);
}

static void dump_names_fd_poll_select_epoll_and_fd_lock_waits(void **state)
{
    char want[96];
    int i;

    (void)state;
    run_and_read(setup_fds);
    snprintf(want, sizeof(want), "parked waits on read fd=%d for ", rd_pair[0]);
    expect_dump_line("fd-reader", want);
    snprintf(want, sizeof(want), "parked waits on write fd=%d for ", wr_pair[0]);
    expect_dump_line("fd-writer", want);
    expect_dump_line("poller", "parked waits on poll nfds=2 for ");
    expect_dump_line("selecter", "parked waits on poll nfds=1 for ");
    snprintf(want, sizeof(want), "parked waits on read fd=%d for ", ep_fd);
    expect_dump_line("epoller", want);
    snprintf(want, sizeof(want), "parked waits on fd write lock fd=%d for ", lock_pair[0]);
    expect_dump_line("lock-waiter", want);
    free(dump_text);
    for (i = 0; i < 2; i++) {
        close(rd_pair[i]);
        close(wr_pair[i]);
        close(lock_pair[i]);
    }
    close(ep_fd);
}

/* ---- DNS ----------------------------------------------------------------------------------- */

/* Offload jobs that hold the pool's workers until released, so a lookup queued behind them
 * stays parked while the dump runs. More jobs than workers: every worker is taken. */
enum { BLOCKERS = 8 };
static sem_t blockers_go;
static uint64_t dns_id;
static int dns_join_rc;

static void blocker_work(void *arg)
{
    (void)arg;
    while (sem_wait(&blockers_go) != 0 && errno == EINTR) {
    }
}

static void blocker_done(void *arg)
{
    (void)arg;
}

static void resolver(void *arg)
{
    struct addrinfo hints;
    struct addrinfo *res = NULL;

    (void)arg;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_INET;
    hints.ai_flags = AI_NUMERICHOST; /* no network, no resolver files: only the wait matters */
    if (getaddrinfo("127.0.0.1", "80", &hints, &res) == 0)
        freeaddrinfo(res);
}

static void dns_dumper(void *arg)
{
    int i;

    (void)arg;
    coho_sleep_ms(50);
    coho_sched_dump(sched);
    for (i = 0; i < BLOCKERS; i++)
        sem_post(&blockers_go);
    dns_join_rc = coho_join(dns_id, 10 * 1000); /* the lookup completes: no job left behind */
}

static void setup_dns(void)
{
    coho__driver_t *d = coho__sched_driver(sched);
    int i;

    dns_join_rc = -2;
    assert_int_equal(sem_init(&blockers_go, 0, 0), 0);
    for (i = 0; i < BLOCKERS; i++)
        assert_int_equal(coho__driver_offload(d, blocker_work, blocker_done, NULL), 0);
    dns_id = spawn_named("resolver", resolver, NULL);
    spawn_named("dumper", dns_dumper, NULL);
}

static void dump_names_a_dns_wait(void **state)
{
    (void)state;
    run_and_read(setup_dns);
    assert_int_equal(dns_join_rc, 0);
    expect_dump_line("resolver", "parked waits on dns for ");
    free(dump_text);
    sem_destroy(&blockers_go);
}

/* ---- how long ------------------------------------------------------------------------------ */

static void long_sleeper(void *arg)
{
    (void)arg;
    coho_sleep_ms(60 * 1000);
}

static void late_dumper(void *arg)
{
    (void)arg;
    coho_sleep_ms(200);
    coho_sched_dump(sched);
    coho_sched_stop(sched);
}

static void setup_how_long(void)
{
    spawn_named("long-sleeper", long_sleeper, NULL);
    spawn_named("dumper", late_dumper, NULL);
}

/* The sleeper parked about 200 ms before the dump; the driver's clock is read fresh for the
 * dump, so the figure is at least the 200 ms the dumper slept (less 1 ms of tick rounding), and
 * far from a stale or absolute value. */
static void dump_shows_how_long_a_coroutine_has_waited(void **state)
{
    const char *at;
    unsigned long long ms;

    (void)state;
    run_and_read(setup_how_long);
    at = strstr(dump_text, "(long-sleeper, entry ");
    assert_non_null(at);
    at = strstr(at, "waits on sleep for ");
    assert_non_null(at);
    assert_int_equal(sscanf(at, "waits on sleep for %llu ms", &ms), 1);
    assert_true(ms >= 199);
    assert_true(ms < 60 * 1000);
    free(dump_text);
}

/* ---- to a callback ------------------------------------------------------------------------ */

static char dump_to_text[8192];
static size_t dump_to_lines;
static int dump_to_rc;
static bool dump_to_bad; /* a line with a newline, a wrong length or arg; checked after the run */

/* Runs in the dumper coroutine: no CMocka assertion here (it would longjmp across stacks). */
static void collect_line(void *arg, const char *text, size_t len)
{
    size_t used = strlen(dump_to_text);

    if (arg != &dump_to_lines || strlen(text) != len || strchr(text, '\n') != NULL ||
        used + len + 2 > sizeof(dump_to_text)) {
        dump_to_bad = true;
        return;
    }
    memcpy(dump_to_text + used, text, len);
    dump_to_text[used + len] = '\n';
    dump_to_text[used + len + 1] = '\0';
    dump_to_lines++;
}

static void callback_dumper(void *arg)
{
    (void)arg;
    coho_sleep_ms(20);
    dump_to_rc = coho_sched_dump_to(sched, collect_line, &dump_to_lines);
    coho_sched_stop(sched);
}

static void setup_dump_to(void)
{
    spawn_named("long-sleeper", long_sleeper, NULL);
    spawn_named("dumper", callback_dumper, NULL);
}

/* The same lines, handed to the callback instead of the log: a header, then one per coroutine. */
static void dump_to_hands_each_line_to_the_callback(void **state)
{
    (void)state;
    dump_to_text[0] = '\0';
    dump_to_lines = 0;
    dump_to_rc = -1;
    dump_to_bad = false;
    run_and_read(setup_dump_to);
    assert_int_equal(dump_to_rc, 0);
    assert_false(dump_to_bad);
    assert_int_equal(dump_to_lines, 3);
    assert_non_null(strstr(dump_to_text, "scheduler "));
    /* The scheduler line ends with the switch count (coho-top's switches/s): two coroutines
     * ran before the dump. */
    {
        const char *sw = strstr(dump_to_text, " timers armed, ");
        char *end = NULL;

        assert_non_null(sw);
        assert_true(strtoull(sw + strlen(" timers armed, "), &end, 10) >= 2);
        assert_int_equal(strncmp(end, " switches", strlen(" switches")), 0);
    }
    assert_non_null(strstr(dump_to_text, "(long-sleeper, entry "));
    assert_non_null(strstr(dump_to_text, "waits on sleep for "));
    assert_non_null(strstr(dump_to_text, "(dumper, entry "));
    assert_null(strstr(dump_text, "long-sleeper")); /* nothing went to the log */
    errno = 0;
    assert_int_equal(coho_sched_dump_to(NULL, collect_line, NULL), -1);
    assert_int_equal(errno, EINVAL);
    free(dump_text);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(dump_names_sync_channel_sleep_and_join_waits),
        cmocka_unit_test(dump_shows_a_signalled_cond_waiter_on_its_mutex),
        cmocka_unit_test(dump_names_fd_poll_select_epoll_and_fd_lock_waits),
        cmocka_unit_test(dump_names_a_dns_wait),
        cmocka_unit_test(dump_shows_how_long_a_coroutine_has_waited),
        cmocka_unit_test(dump_to_hands_each_line_to_the_callback),
    };

    return coho_test_main("sched_dump", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
