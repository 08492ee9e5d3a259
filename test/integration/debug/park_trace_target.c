/* SPDX-License-Identifier: MIT */
/* A program whose coroutines park once each in known ways and then finish, for the park and
 * wake trace lines (coho_trace_chrome_test.cpp): "reader" in recv() on a socket, "locker" on a
 * mutex "holder" holds across a sleep, "chan-reader" in coho_chan_recv(), "joiner" in
 * coho_join() of "holder", and "waker" in a sleep, after which it sends the byte and the
 * channel value that end the first waits. Every waiter is spawned, and so parks, before the
 * waker starts its sleep, so the waits are the same however late the thread runs.
 *
 *     park_trace_target LOG LEVEL      LEVEL: trace, debug or info
 *
 * Writes its log at LOG with that level, prints "fd=N mutex=0xADDR chan=0xADDR holder=ID"
 * (the details the wait labels carry) and exits 0 once every coroutine has finished. */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <coho.h>

static coho_mutex_t mu;
static coho_chan_t *chan;
static int pair[2];
static uint64_t holder_id;

static void reader(void *arg)
{
    char c;

    (void)arg;
    if (recv(pair[0], &c, 1, 0) != 1)
        perror("recv");
}

static void holder(void *arg)
{
    (void)arg;
    coho_mutex_lock(&mu);
    coho_sleep_ms(20);
    coho_mutex_unlock(&mu);
}

static void locker(void *arg)
{
    (void)arg;
    coho_mutex_lock(&mu);
    coho_mutex_unlock(&mu);
}

static void chan_reader(void *arg)
{
    int v;

    (void)arg;
    if (coho_chan_recv(chan, &v) != 0)
        perror("coho_chan_recv");
}

static void joiner(void *arg)
{
    (void)arg;
    if (coho_join(holder_id, -1) != 0)
        perror("coho_join");
}

static void waker(void *arg)
{
    int v = 7;

    (void)arg;
    coho_sleep_ms(10);
    if (send(pair[1], "x", 1, 0) != 1)
        perror("send");
    if (coho_chan_send(chan, &v) != 0)
        perror("coho_chan_send");
}

static uint64_t spawn_named(coho_sched_t *s, void (*fn)(void *), const char *name)
{
    coho_spawn_opts_t o;

    coho_spawn_opts_init(&o);
    o.name = name;
    return coho_spawn_ex(s, fn, NULL, &o);
}

int main(int argc, char **argv)
{
    coho_log_opts_t lo;
    coho_sched_t *s;

    if (argc != 3) {
        fprintf(stderr, "usage: park_trace_target LOG trace|debug|info\n");
        return 2;
    }
    coho_log_opts_init(&lo);
    lo.path = argv[1];
    lo.level = strcmp(argv[2], "trace") == 0   ? COHO_LOG_TRACE
               : strcmp(argv[2], "debug") == 0 ? COHO_LOG_DEBUG
                                               : COHO_LOG_INFO;
    if (coho_log_open(&lo) != 0) {
        perror("coho_log_open");
        return 1;
    }
    s = coho_sched_create(NULL);
    if (s == NULL || socketpair(AF_UNIX, SOCK_STREAM, 0, pair) != 0 || coho_mutex_init(&mu) != 0 ||
        (chan = coho_chan_create(sizeof(int), 0)) == NULL) {
        perror("setup");
        return 1;
    }
    printf("fd=%d mutex=%p chan=%p", pair[0], (void *)&mu, (void *)chan);
    spawn_named(s, reader, "reader");
    holder_id = spawn_named(s, holder, "holder");
    printf(" holder=%llu\n", (unsigned long long)holder_id);
    fflush(stdout);
    spawn_named(s, locker, "locker");
    spawn_named(s, chan_reader, "chan-reader");
    spawn_named(s, joiner, "joiner");
    spawn_named(s, waker, "waker");
    if (coho_sched_run(s) != 0) {
        perror("coho_sched_run");
        return 1;
    }
    coho_sched_destroy(s);
    coho_chan_destroy(chan);
    coho_mutex_destroy(&mu);
    close(pair[0]);
    close(pair[1]);
    return coho_log_close() == 0 ? 0 : 1;
}
