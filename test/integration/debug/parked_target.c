/* SPDX-License-Identifier: MIT */
/* A program whose coroutines park in known places, for the debugger tests (coho_gdb_test.cpp)
 * and coho-top's (coho_top_test.cpp): on the main thread's scheduler one coroutine in recv(),
 * one on a mutex another one holds while it sleeps, one in coho_chan_recv() and, on a second
 * thread's scheduler, one in coho_sleep_ms(). Once all of them are parked it prints "parked"
 * and its pid to stdout and stays parked until killed. Each waiter keeps a local with a known
 * value, for `coho frame`. With an argument it writes the log at that path, at debug level
 * (spawn and exit lines for coho-trace), and SIGUSR2 dumps the main thread's scheduler there
 * (the second thread inherits SIGUSR2 blocked and does not read it). */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <coho.h>
#ifdef PARKED_ADMIN
#    include <coho/admin.h>

/* Built as parked_target_admin: an admin server on 127.0.0.1 (a free port) shows both
 * schedulers on /coroutines; the "parked" line ends with "admin PORT". */
static coho_admin_t *admin;
#endif

static coho_mutex_t mu;
static coho_chan_t *chan;
static int pair[2];
static volatile int parked_count;
static pthread_mutex_t count_lock = PTHREAD_MUTEX_INITIALIZER;

static void parked_one(void)
{
    pthread_mutex_lock(&count_lock);
    parked_count++;
    pthread_mutex_unlock(&count_lock);
}

static __attribute__((noinline)) void waiter_recv(void *arg)
{
    volatile int marker_recv = 4101;
    char buf[8];

    (void)arg;
    parked_one();
    if (recv(pair[0], buf, sizeof(buf), 0) < 0)
        perror("recv");
    (void)marker_recv;
}

static __attribute__((noinline)) void holder_mutex(void *arg)
{
    (void)arg;
    coho_mutex_lock(&mu);
    parked_one();
    coho_sleep_ms(3600 * 1000);
    coho_mutex_unlock(&mu);
}

static __attribute__((noinline)) void waiter_mutex(void *arg)
{
    volatile int marker_mutex = 4102;

    (void)arg;
    parked_one();
    coho_mutex_lock(&mu);
    coho_mutex_unlock(&mu);
    (void)marker_mutex;
}

static __attribute__((noinline)) void waiter_chan(void *arg)
{
    volatile int marker_chan = 4103;
    int v;

    (void)arg;
    parked_one();
    coho_chan_recv(chan, &v);
    (void)marker_chan;
}

static __attribute__((noinline)) void waiter_sleep(void *arg)
{
    volatile int marker_sleep = 4104;

    (void)arg;
    parked_one();
    coho_sleep_ms(3600 * 1000);
    (void)marker_sleep;
}

static uint64_t spawn_named(coho_sched_t *s, void (*fn)(void *), const char *name)
{
    coho_spawn_opts_t o;

    coho_spawn_opts_init(&o);
    o.name = name;
    return coho_spawn_ex(s, fn, NULL, &o);
}

static coho_sched_opts_t sched_opts(bool dump)
{
    coho_sched_opts_t o;

    coho_sched_opts_init(&o);
    o.dump_on_sigusr2 = dump;
    return o;
}

static void *second_thread(void *arg)
{
    coho_sched_opts_t o = sched_opts(false);
    coho_sched_t *s = coho_sched_create(&o);

    (void)arg;
    if (s == NULL || spawn_named(s, waiter_sleep, "sleeper") == 0) {
        perror("second scheduler");
        exit(1);
    }
#ifdef PARKED_ADMIN
    if (coho_admin_add_sched(admin, s, "second") != 0) {
        perror("coho_admin_add_sched");
        exit(1);
    }
#endif
    coho_sched_run(s);
    return NULL;
}

static void reporter_child(void *arg)
{
    (void)arg;
    coho_log_info("reporter child runs");
}

/* Prints "parked" once every waiter has had time to block: the reporter yields until the
 * count is complete, then sleeps 50 ms of coroutine time (the last waiters park right after
 * they count themselves; the 50 ms let them park before the line goes out). */
static void reporter(void *arg)
{
    (void)arg;
    for (;;) {
        int n;

        pthread_mutex_lock(&count_lock);
        n = parked_count;
        pthread_mutex_unlock(&count_lock);
        if (n == 5)
            break;
        coho_sleep_ms(5);
    }
    coho_sleep_ms(50);
    coho_join(spawn_named(coho_sched_current(), reporter_child, "reporter-child"), -1);
    coho_log_info("every waiter parked");
#ifdef PARKED_ADMIN
    printf("parked %d admin %d\n", (int)getpid(), coho_admin_port(admin));
#else
    printf("parked %d\n", (int)getpid());
#endif
    fflush(stdout);
}

int main(int argc, char **argv)
{
    coho_sched_opts_t o = sched_opts(true);
    coho_sched_t *s;
    pthread_t t;

    if (argc > 1) {
        coho_log_opts_t lo;

        coho_log_opts_init(&lo);
        lo.path = argv[1];
        lo.level = COHO_LOG_DEBUG;
        if (coho_log_open(&lo) != 0) {
            perror("coho_log_open");
            return 1;
        }
    }
    s = coho_sched_create(&o);
    if (s == NULL || socketpair(AF_UNIX, SOCK_STREAM, 0, pair) != 0 || coho_mutex_init(&mu) != 0 ||
        (chan = coho_chan_create(sizeof(int), 0)) == NULL) {
        perror("setup");
        return 1;
    }
#ifdef PARKED_ADMIN
    admin = coho_admin_start("127.0.0.1:0", NULL, NULL);
    if (admin == NULL || coho_admin_add_sched(admin, s, "main") != 0) {
        perror("admin");
        return 1;
    }
#endif
    if (pthread_create(&t, NULL, second_thread, NULL) != 0)
        return 1;
    spawn_named(s, waiter_recv, "recv-waiter");
    spawn_named(s, holder_mutex, "mutex-holder");
    spawn_named(s, waiter_mutex, "mutex-waiter");
    spawn_named(s, waiter_chan, "chan-waiter");
    spawn_named(s, reporter, "reporter");
    coho_sched_run(s);
    return 0;
}
