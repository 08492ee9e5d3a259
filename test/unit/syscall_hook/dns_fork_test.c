/* SPDX-License-Identifier: MIT */
/* DNS lookups in flight at fork: the lookup runs on the parent's offload worker, which the
 * child does not have, so the child's parked coroutine must fail with the lookup's "try again"
 * error (getaddrinfo: EAI_AGAIN, gethostbyname: TRY_AGAIN) at once, not wait forever.
 *
 * Hermetic: both offload workers are pointed at a local UDP socket that never answers (their
 * own resolver state, _res, is per thread), so a lookup stays in flight for the resolver
 * timeout and no packet leaves 127.0.0.1. Coroutine bodies only record; the child reports
 * through its exit status. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <resolv.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <coho.h>

#include "coroutine/internal.h"
#include "mio_driver/driver.h"
#include "test/support/cmocka_main.h"

enum {
    RESOLVER_TIMEOUT_S = 3, /* what the parent's lookups wait for the blackhole */
    CHILD_BOUND_MS = 1000,  /* the child's lookups must fail well before that */
    OFFLOAD_WORKERS = 2,    /* the driver's default */
};

#define GAI_NAME  "coho-gai.blackhole.test."
#define GHBN_NAME "coho-ghbn.blackhole.test."

static uint64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- pointing the offload workers at the blackhole ---- */

static struct sockaddr_in blackhole_addr;
static pthread_barrier_t patch_barrier;
static atomic_int patched;

/* Runs on an offload worker; the barrier makes each worker take one of the two jobs. */
static void patch_work(void *arg)
{
    (void)arg;
    res_init();
    _res.nscount = 1;
    _res.nsaddr_list[0] = blackhole_addr;
    _res.retrans = RESOLVER_TIMEOUT_S;
    _res.retry = 1;
    _res.options &= ~(unsigned long)(RES_DNSRCH | RES_DEFNAMES);
    pthread_barrier_wait(&patch_barrier);
}

static void patch_done(void *arg)
{
    (void)arg;
    atomic_fetch_add(&patched, 1);
}

/* ---- the lookups ---- */

typedef struct lookup {
    bool end;
    int rc;         /* getaddrinfo's result */
    bool he_null;   /* gethostbyname returned NULL */
    int herr;       /* h_errno after gethostbyname */
    uint64_t at_ms; /* when the call returned */
} lookup_t;

static void gai_main(void *arg)
{
    lookup_t *l = arg;
    struct addrinfo hints, *res = NULL;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    l->rc = getaddrinfo(GAI_NAME, "80", &hints, &res);
    l->at_ms = mono_ms();
    if (res != NULL)
        freeaddrinfo(res);
    l->end = true;
}

static void ghbn_main(void *arg)
{
    lookup_t *l = arg;
    struct hostent *he = gethostbyname(GHBN_NAME);

    l->he_null = he == NULL;
    l->herr = h_errno;
    l->at_ms = mono_ms();
    l->end = true;
}

/* ---- the coroutine that sets up, waits for both queries and forks ---- */

typedef struct run {
    int blackhole;
    lookup_t gai, ghbn;
    int setup_failed; /* the step that failed, 0: none */
    pid_t child;
    int child_status;
    bool child_reaped;
    bool end;
} run_t;

static int child_verdict(const run_t *r, uint64_t forked_ms)
{
    uint64_t t0 = mono_ms();

    while (!(r->gai.end && r->ghbn.end) && mono_ms() - t0 < 3u * CHILD_BOUND_MS)
        (void)coho_sleep_ms(5);
    if (!r->gai.end || !r->ghbn.end)
        return 10; /* parked past the bound (before the fix: forever) */
    if (r->gai.at_ms - forked_ms > CHILD_BOUND_MS || r->ghbn.at_ms - forked_ms > CHILD_BOUND_MS)
        return 11;
    if (r->gai.rc != EAI_AGAIN)
        return 12;
    if (!r->ghbn.he_null || r->ghbn.herr != TRY_AGAIN)
        return 13;
    return 0;
}

static void run_main(void *arg)
{
    run_t *r = arg;
    coho__driver_t *d = coho__sched_driver(coho__sched_current());
    bool seen_gai = false, seen_ghbn = false;
    char pkt[512];
    uint64_t forked_ms, t0;
    int i;

    for (i = 0; i < OFFLOAD_WORKERS; i++)
        if (coho__driver_offload(d, patch_work, patch_done, NULL) != 0)
            r->setup_failed = 1;
    while (r->setup_failed == 0 && atomic_load(&patched) < OFFLOAD_WORKERS)
        (void)coho_sleep_ms(1);
    if (r->setup_failed != 0 || coho_spawn(coho__sched_current(), gai_main, &r->gai) == 0 ||
        coho_spawn(coho__sched_current(), ghbn_main, &r->ghbn) == 0) {
        r->setup_failed = r->setup_failed != 0 ? r->setup_failed : 2;
        r->end = true;
        return;
    }
    /* Both lookups are in flight once the blackhole has their queries. */
    while (!(seen_gai && seen_ghbn)) {
        ssize_t n = recv(r->blackhole, pkt, sizeof(pkt), 0); /* parks */

        if (n <= 0) {
            r->setup_failed = 3;
            break;
        }
        seen_gai |= memmem(pkt, (size_t)n, "coho-gai", 8) != NULL;
        seen_ghbn |= memmem(pkt, (size_t)n, "coho-ghbn", 9) != NULL;
    }
    if (r->setup_failed != 0) {
        r->end = true;
        return;
    }
    forked_ms = mono_ms();
    r->child = fork();
    if (r->child == 0)
        _exit(child_verdict(r, forked_ms));
    t0 = mono_ms();
    while (r->child > 0 && mono_ms() - t0 < 10000u) {
        if (waitpid(r->child, &r->child_status, WNOHANG) == r->child) {
            r->child_reaped = true;
            break;
        }
        (void)coho_sleep_ms(10);
    }
    r->end = true;
}

static void lookup_in_flight_at_fork_fails_with_try_again_in_the_child(void **state)
{
    run_t r = {0};
    socklen_t len = sizeof(blackhole_addr);
    coho_sched_t *s;

    (void)state;
    r.blackhole = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(r.blackhole >= 0);
    memset(&blackhole_addr, 0, sizeof(blackhole_addr));
    blackhole_addr.sin_family = AF_INET;
    blackhole_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(r.blackhole, (struct sockaddr *)&blackhole_addr, len), 0);
    assert_int_equal(getsockname(r.blackhole, (struct sockaddr *)&blackhole_addr, &len), 0);
    assert_int_equal(pthread_barrier_init(&patch_barrier, NULL, OFFLOAD_WORKERS), 0);
    s = coho_sched_create(NULL);
    assert_non_null(s);
    assert_int_not_equal(coho_spawn(s, run_main, &r), 0);
    assert_int_equal(coho_sched_run(s), 0);
    coho_sched_destroy(s);
    pthread_barrier_destroy(&patch_barrier);
    close(r.blackhole);

    assert_true(r.end);
    assert_int_equal(r.setup_failed, 0);
    assert_true(r.child > 0);
    assert_true(r.child_reaped);
    assert_true(WIFEXITED(r.child_status));
    assert_int_equal(WEXITSTATUS(r.child_status), 0);
    /* In the parent the lookups ran their course against the silent resolver. */
    assert_true(r.gai.end && r.ghbn.end);
    assert_int_equal(r.gai.rc, EAI_AGAIN);
    assert_true(r.ghbn.he_null);
    assert_int_equal(r.ghbn.herr, TRY_AGAIN);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(lookup_in_flight_at_fork_fails_with_try_again_in_the_child),
    };

    return coho_test_main("dns_fork", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
