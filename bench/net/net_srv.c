/* SPDX-License-Identifier: MIT */
/* The coho_server side of the net/ benchmarks (tools/bench-net.sh): one program, a mode per
 * scenario. Frames are the server's default framing (4-byte little-endian payload length, then
 * the payload); bench/net/net_common.h has the message layouts.
 *
 *   echo   every frame goes back to its sender
 *   bcast  every connection joins one group; a frame whose first payload byte is 'G' makes the
 *          server broadcast one 64-byte frame (the send time inside) to the group, and prints
 *          how long the broadcast call took and when the last member's frame was written;
 *          any other frame is echoed (the client's readiness check)
 *   chat   every connection joins one group; every frame is broadcast to the group
 *   tick   every connection joins one group; a ticker broadcasts a -m byte frame every -P ms
 *          (slow consumers: members that do not read are closed at their queue bound)
 *
 * The program prints "port=N" once it listens, then waits for signals: SIGUSR1 prints the
 * server's counters and the process's RSS, SIGTERM or SIGINT prints them and stops. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <coho.h>
#include <coho/net.h>

#include "net_common.h"

enum { MODE_ECHO, MODE_BCAST, MODE_CHAT, MODE_TICK };

static int mode = MODE_ECHO;
static coho_server_t *server;
static coho_group_t *group;
static size_t tick_size = 1024;
static unsigned tick_period_ms = 10;

static void usage(void)
{
    fprintf(stderr, "usage: net_srv [-M echo|bcast|chat|tick] [-p port] [-t threads] [-i idle_ms]\n"
                    "               [-f flush_tick_ms] [-q send_queue_bytes] [-k stack_size]\n"
                    "               [-n max_conns] [-S sndbuf] [-m tick_bytes] [-P tick_ms] [-W]\n"
                    "               [-c cert.pem -K key.pem]\n"
                    "  -W: WebSocket; -c/-K: TLS\n");
    exit(2);
}

/* bcast: the broadcast round a 'G' frame asks for, on the handler that read it. */
static void broadcast_round(uint32_t round)
{
    unsigned char msg[NB_BCAST_FRAME];
    coho_server_stats_t st0, st1;
    uint64_t t0, t1, t2;
    size_t members = coho_group_count(group);

    coho_server_get_stats(server, &st0);
    t0 = nb_now_ns();
    nb_put_stamp(msg, NB_BCAST_FRAME, t0, round);
    if (coho_group_broadcast(group, msg, sizeof(msg)) != 0) {
        fprintf(stderr, "net_srv: coho_group_broadcast: %s\n", strerror(errno));
        return;
    }
    t1 = nb_now_ns();
    /* The writers run when this coroutine yields: wait until every member's frame is out. */
    do {
        coho_yield();
        coho_server_get_stats(server, &st1);
        t2 = nb_now_ns();
    } while (st1.frames_out - st0.frames_out < members && t2 - t0 < 10000000000ull);
    printf("round=%u members=%zu queued_us=%.1f all_sent_us=%.1f written=%llu\n", round, members,
           (double)(t1 - t0) / 1e3, (double)(t2 - t0) / 1e3,
           (unsigned long long)(st1.frames_out - st0.frames_out));
    fflush(stdout);
}

static void on_conn(coho_conn_t *c, void *user)
{
    coho_cbuf_t f;
    uint64_t id = coho_conn_id(c);
    bool joined = false;

    (void)user;
    coho_cbuf_init(&f, NULL);
    if (mode != MODE_ECHO) {
        if (coho_group_add(group, id) != 0) {
            fprintf(stderr, "net_srv: coho_group_add: %s\n", strerror(errno));
            goto out;
        }
        joined = true;
    }
    for (;;) {
        ssize_t n = coho_conn_read_frame(c, &f);
        const unsigned char *p;

        if (n < 0 && errno == EDQUOT)
            continue;
        if (n <= 0)
            break;
        p = coho_cbuf_linearize(&f, (size_t)n);
        if (p == NULL)
            break;
        if (mode == MODE_CHAT) {
            if (coho_group_broadcast(group, p, (size_t)n) != 0)
                break;
        } else if (mode == MODE_BCAST && n > 4 && p[4] == 'G') {
            uint32_t round;
            memcpy(&round, p + 5, n >= 9 ? 4 : 0);
            broadcast_round(n >= 9 ? round : 0);
        } else if (mode != MODE_TICK) {
            if (coho_conn_send(c, p, (size_t)n) != 0)
                break;
        }
    }
out:
    if (joined)
        coho_group_remove(group, id);
    coho_cbuf_destroy(&f);
}

/* tick: one broadcast of tick_size bytes every tick_period_ms, from a thread of its own. */
static void *ticker_main(void *arg)
{
    unsigned char *msg = malloc(tick_size);
    uint32_t seq = 0;

    (void)arg;
    if (msg == NULL)
        return NULL;
    for (;;) {
        nb_put_stamp(msg, tick_size, nb_now_ns(), seq++);
        if (coho_group_count(group) > 0)
            coho_group_broadcast(group, msg, tick_size);
        usleep(tick_period_ms * 1000u);
    }
    return NULL;
}

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;

    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld", &v) == 1)
            break;
    fclose(f);
    return v;
}

static void print_stats(void)
{
    coho_server_stats_t s;

    if (coho_server_get_stats(server, &s) != 0)
        return;
    printf("stats accepted=%llu open=%llu rejected_max=%llu rejected_fds=%llu "
           "rejected_other=%llu accept_errors=%llu bytes_in=%llu bytes_out=%llu "
           "frames_in=%llu frames_out=%llu queue_full_closes=%llu idle_kicks=%llu "
           "protocol_errors=%llu send_stale=%llu rss_kib=%ld\n",
           (unsigned long long)s.accepted, (unsigned long long)s.conns_open,
           (unsigned long long)s.rejected_max, (unsigned long long)s.rejected_fds,
           (unsigned long long)s.rejected_other, (unsigned long long)s.accept_errors,
           (unsigned long long)s.bytes_in, (unsigned long long)s.bytes_out,
           (unsigned long long)s.frames_in, (unsigned long long)s.frames_out,
           (unsigned long long)s.queue_full_closes, (unsigned long long)s.idle_kicks,
           (unsigned long long)s.protocol_errors, (unsigned long long)s.send_stale, rss_kib());
    fflush(stdout);
}

int main(int argc, char **argv)
{
    coho_server_opts_t o;
    int opt, port = 0, sig;
    char addr[64];
    sigset_t set;

    coho_server_opts_init(&o);
    o.max_conns = 0;
    while ((opt = getopt(argc, argv, "M:p:t:i:f:q:k:n:S:m:P:Wc:K:")) != -1) {
        switch (opt) {
        case 'M':
            if (strcmp(optarg, "echo") == 0)
                mode = MODE_ECHO;
            else if (strcmp(optarg, "bcast") == 0)
                mode = MODE_BCAST;
            else if (strcmp(optarg, "chat") == 0)
                mode = MODE_CHAT;
            else if (strcmp(optarg, "tick") == 0)
                mode = MODE_TICK;
            else
                usage();
            break;
        case 'p':
            port = atoi(optarg);
            break;
        case 't':
            o.threads = (unsigned)atoi(optarg);
            break;
        case 'i':
            o.idle_ms = strtoull(optarg, NULL, 0);
            break;
        case 'f':
            o.flush_tick_ms = strtoull(optarg, NULL, 0);
            break;
        case 'q':
            o.send_queue_bytes = (size_t)strtoull(optarg, NULL, 0);
            break;
        case 'k':
            o.stack_size = (size_t)strtoull(optarg, NULL, 0);
            break;
        case 'n':
            o.max_conns = (unsigned)atoi(optarg);
            break;
        case 'S':
            o.sndbuf = atoi(optarg);
            break;
        case 'm':
            tick_size = (size_t)strtoull(optarg, NULL, 0);
            break;
        case 'P':
            tick_period_ms = (unsigned)atoi(optarg);
            break;
        case 'W':
            o.websocket = true;
            break;
        case 'c':
            o.tls_cert_file = optarg;
            break;
        case 'K':
            o.tls_key_file = optarg;
            break;
        default:
            usage();
        }
    }
    if (port < 0 || port > 65535 || tick_size < NB_STAMP_MIN || tick_period_ms == 0)
        usage();
    /* Signals go to the sigwait below, not to the server's threads (they inherit the mask). */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (mode != MODE_ECHO) {
        group = coho_group_create();
        if (group == NULL) {
            fprintf(stderr, "net_srv: coho_group_create: %s\n", strerror(errno));
            return 1;
        }
    }
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    server = coho_server_start(addr, &o, on_conn, NULL);
    if (server == NULL) {
        fprintf(stderr, "net_srv: coho_server_start %s: %s\n", addr, strerror(errno));
        return 1;
    }
    if (mode == MODE_TICK) {
        pthread_t t;
        if (pthread_create(&t, NULL, ticker_main, NULL) != 0) {
            fprintf(stderr, "net_srv: pthread_create failed\n");
            return 1;
        }
        pthread_detach(t);
    }
    printf("port=%d rss_kib=%ld\n", coho_server_port(server), rss_kib());
    fflush(stdout);
    for (;;) {
        if (sigwait(&set, &sig) != 0)
            continue;
        print_stats();
        if (sig != SIGUSR1)
            break;
    }
    /* The ticker thread may still broadcast: leave the group to the process's end. */
    if (coho_server_stop(server, 1000) != 0)
        fprintf(stderr, "net_srv: coho_server_stop: %s\n", strerror(errno));
    return 0;
}
