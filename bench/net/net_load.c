/* SPDX-License-Identifier: MIT */
/* Load client of the net/ benchmarks (tools/bench-net.sh): one thread, non-blocking sockets,
 * level-triggered epoll, plain libc (no coho), so every server is driven by the same program.
 * Frames are a 4-byte little-endian payload length and the payload (net_common.h).
 *
 *   echo   -c C -s S -d secs -w warm      C connections doing ping-pong of S-byte payloads
 *   bcast  -c N -r rounds -i gap_ms       N members; a 'G' frame per round makes the server
 *                                         broadcast; every member's delivery latency
 *   hold   -c N -b heartbeat_ms -d secs   N connections, each sending a heartbeat every
 *                                         heartbeat_ms (phases spread); prints "connected"
 *   churn  -d secs -k inflight            connect + reset as fast as possible
 *   chat   -c N -R msgs_per_s -s S -d secs  every member sends stamped frames; deliveries
 *   slow   -c normal -z stalled -d secs   the stalled connections never read
 *   kick   -c N -T idle_ms                silent connections; when the server closes them
 *   emfile -c N -H hold_ms -g pace_us     how each connection is answered: echo or close
 *                                         (connects pace_us apart at least)
 *
 * Each mode prints one line of key=value results. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net_common.h"

/* ---- options ---------------------------------------------------------------------------- */

static const char *host = "127.0.0.1";
static int port;
static int nconn = 1, nstalled, rounds = 20, inflight = 64;
static size_t size = 32;
static double secs = 5.0, warm = 0.5, rate = 0.2;
static unsigned gap_ms = 200, hb_ms = 30000, idle_ms = 2000, hold_ms = 1000;
static int stalled_rcvbuf = 4096;
static unsigned pace_us;

/* ---- latency histogram: 1 us buckets up to LAT_MAX_US, then one overflow bucket -------- */

#define LAT_MAX_US 4000000u

static uint32_t *lat_hist;
static uint64_t lat_count, lat_max_ns;

static void die(const char *what)
{
    fprintf(stderr, "net_load: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void lat_add(uint64_t ns)
{
    uint64_t us = ns / 1000u;

    lat_hist[us < LAT_MAX_US ? us : LAT_MAX_US]++;
    lat_count++;
    if (ns > lat_max_ns)
        lat_max_ns = ns;
}

static double lat_q_us(double q)
{
    uint64_t need = (uint64_t)(q * (double)lat_count + 0.5), seen = 0;

    if (lat_count == 0)
        return 0;
    if (need == 0)
        need = 1;
    for (uint32_t i = 0; i <= LAT_MAX_US; i++) {
        seen += lat_hist[i];
        if (seen >= need)
            return (double)i + 0.5;
    }
    return (double)LAT_MAX_US;
}

static void lat_reset(void)
{
    memset(lat_hist, 0, (LAT_MAX_US + 1) * sizeof(*lat_hist));
    lat_count = 0;
    lat_max_ns = 0;
}

static void lat_print(const char *prefix)
{
    printf("%sp50_us=%.1f %sp99_us=%.1f %smax_us=%.1f", prefix, lat_q_us(0.50), prefix,
           lat_q_us(0.99), prefix, (double)lat_max_ns / 1e3);
}

/* ---- connections and the frame reader ----------------------------------------------------- */

struct conn {
    int fd;
    bool dead;
    uint32_t got, need; /* bytes of the current frame read; its whole length (0: not known) */
    unsigned char head[NB_STAMP_MIN];
    uint64_t t0_ns; /* echo: the request's send time; kick/emfile: the connect time */
    uint64_t t1_ns; /* kick/emfile: when the answer came */
    uint64_t t2_ns; /* kick: when the echo of the last frame came */
    int answer;     /* emfile: 1 echoed, 2 closed */
};

static struct conn *conns;
static int ep;
static char scratch[1 << 16];

typedef void (*frame_fn)(struct conn *c);

/* A connected TCP socket to the server, TCP_NODELAY, blocking. -1 with errno on failure. */
static int dial(int rcvbuf)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    inet_pton(AF_INET, host, &a.sin_addr);
    if (rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static void watch(struct conn *c)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};

    if (fcntl(c->fd, F_SETFL, O_NONBLOCK) != 0 || epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) != 0)
        die("epoll_ctl");
}

/* Opens conns[0..n) (blocking connects, then non-blocking and watched). */
static void open_all(int n, int first, int rcvbuf, bool watched)
{
    for (int i = first; i < first + n; i++) {
        int fd;
        int tries = 0;
        while ((fd = dial(rcvbuf)) < 0) {
            if (++tries > 50)
                die("connect");
            usleep(20000);
        }
        conns[i].fd = fd;
        if (watched)
            watch(&conns[i]);
    }
}

/* Sends a whole small frame on a non-blocking socket; false when it did not all go. */
static bool send_all(struct conn *c, const void *buf, size_t len)
{
    ssize_t w = send(c->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);

    return w == (ssize_t)len;
}

static void conn_dead(struct conn *c)
{
    if (!c->dead) {
        c->dead = true;
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    }
}

/* Reads what is there and calls `fn` per whole frame; false at EOF or an error. */
static bool pump(struct conn *c, frame_fn fn)
{
    for (int loops = 0; loops < 4; loops++) {
        ssize_t r = recv(c->fd, scratch, sizeof(scratch), 0);
        if (r < 0)
            return errno == EAGAIN || errno == EINTR;
        if (r == 0)
            return false;
        for (ssize_t off = 0; off < r;) {
            if (c->got < 4) {
                c->head[c->got++] = (unsigned char)scratch[off++];
                if (c->got == 4)
                    c->need = 4 + nb_get_u32(c->head);
            } else {
                uint32_t k = c->need - c->got;
                if ((ssize_t)k > r - off)
                    k = (uint32_t)(r - off);
                for (uint32_t j = 0; j < k && c->got + j < NB_STAMP_MIN; j++)
                    c->head[c->got + j] = (unsigned char)scratch[off + j];
                c->got += k;
                off += k;
            }
            if (c->got >= 4 && c->got == c->need) {
                fn(c);
                c->got = 0;
                c->need = 0;
            }
        }
        if ((size_t)r < sizeof(scratch))
            return true;
    }
    return true;
}

/* One epoll round (timeout in ms); frames go to `fn`, closed connections to `on_close`. */
static void poll_once(int timeout_ms, frame_fn fn, void (*on_close)(struct conn *c))
{
    struct epoll_event evs[512];
    int n = epoll_wait(ep, evs, 512, timeout_ms);

    if (n < 0) {
        if (errno == EINTR)
            return;
        die("epoll_wait");
    }
    for (int i = 0; i < n; i++) {
        struct conn *c = evs[i].data.ptr;
        if (!pump(c, fn)) {
            conn_dead(c);
            if (on_close)
                on_close(c);
        }
    }
}

static void close_all(int n)
{
    for (int i = 0; i < n; i++)
        if (conns[i].fd > 0)
            close(conns[i].fd);
}

/* ---- echo ---------------------------------------------------------------------------------- */

static unsigned char *echo_msg;
static uint64_t echo_replies;
static bool measuring;

static void echo_frame(struct conn *c)
{
    uint64_t t = nb_now_ns();

    echo_replies++;
    if (measuring)
        lat_add(t - c->t0_ns);
    c->t0_ns = t;
    if (!send_all(c, echo_msg, 4 + size))
        die("echo send (the request did not fit the socket)");
}

static void echo_closed(struct conn *c)
{
    (void)c;
    fprintf(stderr, "net_load: the server closed a connection\n");
    exit(1);
}

static int run_echo(void)
{
    uint64_t t_start, t_meas = 0, counted0 = 0, t;

    echo_msg = malloc(4 + size);
    if (echo_msg == NULL)
        die("malloc");
    memset(echo_msg, 'e', 4 + size);
    nb_put_u32(echo_msg, (uint32_t)size);
    open_all(nconn, 0, 0, true);
    t_start = nb_now_ns();
    for (int i = 0; i < nconn; i++) {
        conns[i].t0_ns = t_start;
        if (!send_all(&conns[i], echo_msg, 4 + size))
            die("echo send");
    }
    measuring = warm <= 0;
    if (measuring)
        t_meas = t_start;
    for (;;) {
        poll_once(100, echo_frame, echo_closed);
        t = nb_now_ns();
        if (!measuring && t - t_start >= (uint64_t)(warm * 1e9)) {
            measuring = true;
            t_meas = t;
            counted0 = echo_replies;
        } else if (measuring && t - t_meas >= (uint64_t)(secs * 1e9)) {
            break;
        }
    }
    double el = (double)(t - t_meas) / 1e9;
    printf("mode=echo conns=%d size=%zu replies=%llu secs=%.2f rps=%.0f ", nconn, size,
           (unsigned long long)(echo_replies - counted0), el,
           (double)(echo_replies - counted0) / el);
    lat_print("");
    printf("\n");
    close_all(nconn);
    return 0;
}

/* ---- bcast ---------------------------------------------------------------------------------- */

static uint64_t got_round, got_pongs, got_stale;
static uint32_t cur_round;
static uint64_t round_last_ns, round_t0;

static void bcast_frame(struct conn *c)
{
    uint64_t t = nb_now_ns(), st = nb_get_stamp(c->head);

    if (st == 0) {
        got_pongs++;
        return;
    }
    if (nb_get_u32(c->head + 16) != cur_round) {
        got_stale++;
        return;
    }
    got_round++;
    lat_add(t - st);
    round_t0 = st;
    if (t > round_last_ns)
        round_last_ns = t;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

static int run_bcast(void)
{
    unsigned char ping[8] = {4, 0, 0, 0, 'P', 0, 0, 0}, go[9] = {5, 0, 0, 0, 'G'};
    uint64_t *last = calloc((size_t)rounds, sizeof(uint64_t)), missing = 0, t;

    if (last == NULL)
        die("calloc");
    open_all(nconn, 0, 0, true);
    /* Every member answers a ping: its handler runs and it is in the group. */
    for (int i = 0; i < nconn; i++)
        if (!send_all(&conns[i], ping, sizeof(ping)))
            die("ping");
    t = nb_now_ns();
    while (got_pongs < (uint64_t)nconn) {
        poll_once(100, bcast_frame, echo_closed);
        if (nb_now_ns() - t > 30000000000ull)
            die("members did not answer the ping in 30 s");
    }
    for (int r = 0; r < rounds; r++) {
        cur_round = (uint32_t)r + 1;
        got_round = 0;
        round_last_ns = 0;
        nb_put_u32(go + 5, cur_round);
        if (!send_all(&conns[0], go, sizeof(go)))
            die("go");
        t = nb_now_ns();
        while (got_round < (uint64_t)nconn && nb_now_ns() - t < 5000000000ull)
            poll_once(10, bcast_frame, echo_closed);
        missing += (uint64_t)nconn - got_round;
        last[r] = round_last_ns > round_t0 ? round_last_ns - round_t0 : 0;
        t = nb_now_ns();
        while (nb_now_ns() - t < (uint64_t)gap_ms * 1000000u)
            poll_once(10, bcast_frame, echo_closed);
    }
    qsort(last, (size_t)rounds, sizeof(*last), cmp_u64);
    printf("mode=bcast members=%d rounds=%d deliveries=%llu missing=%llu stale=%llu ", nconn,
           rounds, (unsigned long long)lat_count, (unsigned long long)missing,
           (unsigned long long)got_stale);
    lat_print("");
    printf(" last_delivery_median_us=%.1f last_delivery_max_us=%.1f\n",
           (double)last[rounds / 2] / 1e3, (double)last[rounds - 1] / 1e3);
    close_all(nconn);
    free(last);
    return 0;
}

/* ---- hold ------------------------------------------------------------------------------------ */

static uint64_t hb_replies, closed_count;

static void hold_frame(struct conn *c)
{
    hb_replies++;
    lat_add(nb_now_ns() - c->t0_ns);
}

static void count_close(struct conn *c)
{
    (void)c;
    closed_count++;
}

static int run_hold(void)
{
    unsigned char hb[12] = {8, 0, 0, 0, 'H'};
    uint64_t t_start, step, next_t, sent = 0;
    int next_i = 0;

    open_all(nconn, 0, 0, true);
    printf("connected=%d\n", nconn);
    fflush(stdout);
    t_start = nb_now_ns();
    step = (uint64_t)hb_ms * 1000000u / (uint64_t)nconn;
    if (step == 0)
        step = 1;
    next_t = t_start + step;
    while (nb_now_ns() - t_start < (uint64_t)(secs * 1e9)) {
        uint64_t t;
        poll_once(10, hold_frame, count_close);
        t = nb_now_ns();
        while (t >= next_t) {
            struct conn *c = &conns[next_i];
            if (!c->dead) {
                c->t0_ns = t;
                if (send_all(c, hb, sizeof(hb)))
                    sent++;
            }
            next_i = (next_i + 1) % nconn;
            next_t += step;
        }
    }
    printf("mode=hold conns=%d heartbeat_ms=%u secs=%.1f heartbeats=%llu replies=%llu "
           "closed_by_server=%llu ",
           nconn, hb_ms, secs, (unsigned long long)sent, (unsigned long long)hb_replies,
           (unsigned long long)closed_count);
    lat_print("rtt_");
    printf("\n");
    close_all(nconn);
    return 0;
}

/* ---- churn ----------------------------------------------------------------------------------- */

static int churn_start(struct conn *c)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    inet_pton(AF_INET, host, &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    c->fd = fd;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
        die("epoll_ctl");
    return 0;
}

static int run_churn(void)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    uint64_t ok = 0, refused = 0, other = 0, start_fail = 0, t0 = nb_now_ns(), t;
    struct epoll_event evs[512];

    for (int i = 0; i < inflight; i++)
        if (churn_start(&conns[i]) != 0)
            die("connect");
    while ((t = nb_now_ns()) - t0 < (uint64_t)(secs * 1e9)) {
        int n = epoll_wait(ep, evs, 512, 100);
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            int err = 0;
            socklen_t el = sizeof(err);
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
            if (err == 0)
                ok++;
            else if (err == ECONNREFUSED)
                refused++;
            else
                other++;
            epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
            /* A reset instead of a FIN: no TIME_WAIT, so the ports do not run out. */
            setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
            close(c->fd);
            while (churn_start(c) != 0) {
                start_fail++;
                usleep(1000);
            }
        }
    }
    printf("mode=churn secs=%.1f inflight=%d connected=%llu connects_per_s=%.0f refused=%llu "
           "other_errors=%llu local_failures=%llu\n",
           (double)(t - t0) / 1e9, inflight, (unsigned long long)ok,
           (double)ok / ((double)(t - t0) / 1e9), (unsigned long long)refused,
           (unsigned long long)other, (unsigned long long)start_fail);
    return 0;
}

/* ---- chat ------------------------------------------------------------------------------------ */

static uint64_t deliveries;

static void chat_frame(struct conn *c)
{
    uint64_t st = nb_get_stamp(c->head);

    deliveries++;
    if (st != 0 && measuring)
        lat_add(nb_now_ns() - st);
}

static int run_chat(void)
{
    size_t flen = 4 + (size < NB_STAMP_MIN ? NB_STAMP_MIN : size);
    unsigned char *msg = malloc(flen);
    uint64_t t_start, step, next_t, sent = 0, send_fail = 0, d0 = 0, t_meas = 0;
    int next_i = 0;

    if (msg == NULL)
        die("malloc");
    open_all(nconn, 0, 0, true);
    sleep(1); /* the members join the group */
    t_start = nb_now_ns();
    step = (uint64_t)(1e9 / (rate * nconn));
    next_t = t_start + step;
    measuring = false;
    while (nb_now_ns() - t_start < (uint64_t)((secs + warm) * 1e9)) {
        uint64_t t;
        poll_once(5, chat_frame, echo_closed);
        t = nb_now_ns();
        if (!measuring && t - t_start >= (uint64_t)(warm * 1e9)) {
            measuring = true;
            d0 = deliveries;
            t_meas = t;
        }
        while (t >= next_t) {
            nb_put_stamp(msg, flen, t, (uint32_t)sent);
            if (send_all(&conns[next_i], msg, flen))
                sent++;
            else
                send_fail++;
            next_i = (next_i + 1) % nconn;
            next_t += step;
        }
    }
    double el = (double)(nb_now_ns() - t_meas) / 1e9;
    printf("mode=chat members=%d rate_per_member=%.2f secs=%.1f sent=%llu send_fail=%llu "
           "deliveries=%llu deliveries_per_s=%.0f expected_per_s=%.0f ",
           nconn, rate, el, (unsigned long long)sent, (unsigned long long)send_fail,
           (unsigned long long)(deliveries - d0), (double)(deliveries - d0) / el,
           rate * nconn * nconn);
    lat_print("");
    printf("\n");
    close_all(nconn);
    free(msg);
    return 0;
}

/* ---- slow ------------------------------------------------------------------------------------ */

static int run_slow(void)
{
    uint64_t t_start, d0 = 0, t_meas = 0;

    /* The stalled connections come first, with a small receive buffer, and are never read. */
    open_all(nstalled, 0, stalled_rcvbuf, false);
    open_all(nconn, nstalled, 0, true);
    printf("connected=%d stalled=%d\n", nconn, nstalled);
    fflush(stdout);
    t_start = nb_now_ns();
    measuring = false;
    while (nb_now_ns() - t_start < (uint64_t)((secs + warm) * 1e9)) {
        poll_once(10, chat_frame, echo_closed);
        if (!measuring && nb_now_ns() - t_start >= (uint64_t)(warm * 1e9)) {
            measuring = true;
            d0 = deliveries;
            t_meas = nb_now_ns();
        }
    }
    double el = (double)(nb_now_ns() - t_meas) / 1e9;
    printf("mode=slow normal=%d stalled=%d secs=%.1f deliveries=%llu deliveries_per_s=%.0f ", nconn,
           nstalled, el, (unsigned long long)(deliveries - d0), (double)(deliveries - d0) / el);
    lat_print("");
    printf("\n");
    close_all(nconn + nstalled);
    return 0;
}

/* ---- kick ------------------------------------------------------------------------------------ */

static uint64_t answered;

/* The echo of the frame: the server stamped its activity before this. */
static void kick_frame(struct conn *c)
{
    if (c->answer == 0) {
        c->answer = 1;
        c->t2_ns = nb_now_ns();
    }
}

static void kick_close(struct conn *c)
{
    c->t1_ns = nb_now_ns();
    answered++;
}

static int run_kick(void)
{
    unsigned char ping[8] = {4, 0, 0, 0, 'P', 0, 0, 0};
    uint64_t t0, early = 0, late = 0;
    double lo = 1e18, hi = 0, lo2, hi2;

    /* Every connection is accepted first; then each gets one frame, the last activity the
     * server sees: its kick is due idle_ms after that frame arrived, which is after t0_ns
     * (taken just before the send), so a close before t0_ns + idle_ms is early for sure. */
    open_all(nconn, 0, 0, true);
    usleep(500000);
    for (int i = 0; i < nconn; i++) {
        conns[i].t0_ns = nb_now_ns();
        if (!send_all(&conns[i], ping, sizeof(ping)))
            die("ping");
    }
    t0 = nb_now_ns();
    while (answered < (uint64_t)nconn && nb_now_ns() - t0 < (uint64_t)idle_ms * 3000000u + 5e9)
        poll_once(5, kick_frame, kick_close);
    lat_reset();
    for (int i = 0; i < nconn; i++) {
        if (conns[i].t1_ns == 0)
            continue;
        double over_ms = ((double)conns[i].t1_ns - (double)conns[i].t0_ns) / 1e6 - idle_ms;
        if (over_ms < 0)
            early++;
        else
            lat_add((uint64_t)(over_ms * 1e6));
        if (over_ms > 100)
            late++;
        if (over_ms < lo)
            lo = over_ms;
        if (over_ms > hi)
            hi = over_ms;
    }
    /* The same from the echo: the server's stamp is before it, so this is a lower bound of
     * the lateness that leaves out how long the server took to read the frame. */
    lo2 = 1e18;
    hi2 = 0;
    for (int i = 0; i < nconn; i++) {
        if (conns[i].t1_ns == 0 || conns[i].t2_ns == 0)
            continue;
        double over_ms = ((double)conns[i].t1_ns - (double)conns[i].t2_ns) / 1e6 - idle_ms;
        if (over_ms < lo2)
            lo2 = over_ms;
        if (over_ms > hi2)
            hi2 = over_ms;
    }
    printf("mode=kick conns=%d idle_ms=%u from_echo_min_ms=%.2f from_echo_max_ms=%.2f ", nconn,
           idle_ms, lo2, hi2);
    printf("closed=%llu not_closed=%llu early=%llu "
           "late_over_100ms=%llu over_T_min_ms=%.2f over_T_max_ms=%.2f ",
           (unsigned long long)answered, (unsigned long long)((uint64_t)nconn - answered),
           (unsigned long long)early, (unsigned long long)late, lo, hi);
    lat_print("over_T_");
    printf("\n");
    close_all(nconn);
    return 0;
}

/* ---- emfile ---------------------------------------------------------------------------------- */

static void emfile_frame(struct conn *c)
{
    if (c->answer == 0) {
        c->answer = 1;
        c->t1_ns = nb_now_ns();
        answered++;
    }
}

static void emfile_close(struct conn *c)
{
    if (c->answer == 0) {
        c->answer = 2;
        c->t1_ns = nb_now_ns();
        answered++;
    }
}

static int run_emfile(void)
{
    unsigned char ping[8] = {4, 0, 0, 0, 'P', 0, 0, 0};
    uint64_t echoed = 0, closed = 0, connect_fail = 0, t0, after_ok = 0;

    for (int i = 0; i < nconn; i++) {
        conns[i].fd = dial(0);
        if (conns[i].fd < 0) {
            connect_fail++;
            conns[i].answer = 3;
            continue;
        }
        conns[i].t0_ns = nb_now_ns();
        watch(&conns[i]);
        if (!send_all(&conns[i], ping, sizeof(ping)))
            die("ping");
        do
            poll_once(pace_us > 0 ? 1 : 0, emfile_frame, emfile_close);
        while (nb_now_ns() - conns[i].t0_ns < (uint64_t)pace_us * 1000u);
    }
    t0 = nb_now_ns();
    while (answered + connect_fail < (uint64_t)nconn && nb_now_ns() - t0 < 5000000000ull)
        poll_once(5, emfile_frame, emfile_close);
    lat_reset();
    for (int i = 0; i < nconn; i++) {
        if (conns[i].answer == 1)
            echoed++;
        else if (conns[i].answer == 2) {
            closed++;
            lat_add(conns[i].t1_ns - conns[i].t0_ns);
        }
    }
    printf("mode=emfile clients=%d echoed=%llu refused=%llu unanswered=%llu connect_failed=%llu ",
           nconn, (unsigned long long)echoed, (unsigned long long)closed,
           (unsigned long long)((uint64_t)nconn - echoed - closed - connect_fail),
           (unsigned long long)connect_fail);
    lat_print("refusal_");
    usleep(hold_ms * 1000u);
    for (int i = 0; i < nconn; i++)
        if (conns[i].fd > 0) {
            conn_dead(&conns[i]);
            close(conns[i].fd);
            conns[i].fd = -1;
        }
    usleep(500000);
    /* Once the clients left, new connections must be served. */
    for (int i = 0; i < 10; i++) {
        struct conn *c = &conns[i];
        memset(c, 0, sizeof(*c));
        c->fd = dial(0);
        if (c->fd < 0)
            continue;
        watch(c);
        if (send_all(c, ping, sizeof(ping))) {
            answered = 0;
            t0 = nb_now_ns();
            while (c->answer == 0 && nb_now_ns() - t0 < 2000000000ull)
                poll_once(5, emfile_frame, emfile_close);
            after_ok += c->answer == 1;
        }
        close(c->fd);
    }
    printf(" after_leave_ok=%llu/10\n", (unsigned long long)after_ok);
    return 0;
}

/* ---- main ------------------------------------------------------------------------------------ */

static void usage(void)
{
    fprintf(stderr, "usage: net_load MODE -p port [-h host] [-c conns] [-z stalled] [-s bytes]\n"
                    "                [-d secs] [-w warm_secs] [-r rounds] [-i gap_ms]\n"
                    "                [-b heartbeat_ms] [-k inflight] [-R msgs_per_s]\n"
                    "                [-T idle_ms] [-H hold_ms] [-B stalled_rcvbuf] [-g pace_us]\n"
                    "MODE: echo bcast hold churn chat slow kick emfile (see the source)\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *mode;
    int opt, total;
    struct rlimit rl;

    if (argc < 2)
        usage();
    mode = argv[1];
    optind = 2;
    while ((opt = getopt(argc, argv, "p:h:c:z:s:d:w:r:i:b:k:R:T:H:B:g:")) != -1) {
        switch (opt) {
        case 'p':
            port = atoi(optarg);
            break;
        case 'h':
            host = optarg;
            break;
        case 'c':
            nconn = atoi(optarg);
            break;
        case 'z':
            nstalled = atoi(optarg);
            break;
        case 's':
            size = (size_t)strtoul(optarg, NULL, 0);
            break;
        case 'd':
            secs = atof(optarg);
            break;
        case 'w':
            warm = atof(optarg);
            break;
        case 'r':
            rounds = atoi(optarg);
            break;
        case 'i':
            gap_ms = (unsigned)atoi(optarg);
            break;
        case 'b':
            hb_ms = (unsigned)atoi(optarg);
            break;
        case 'k':
            inflight = atoi(optarg);
            break;
        case 'R':
            rate = atof(optarg);
            break;
        case 'T':
            idle_ms = (unsigned)atoi(optarg);
            break;
        case 'H':
            hold_ms = (unsigned)atoi(optarg);
            break;
        case 'B':
            stalled_rcvbuf = atoi(optarg);
            break;
        case 'g':
            pace_us = (unsigned)atoi(optarg);
            break;
        default:
            usage();
        }
    }
    if (port <= 0 || port > 65535 || nconn <= 0 || nstalled < 0 || rounds <= 0 || rate <= 0 ||
        inflight <= 0 || size == 0 || size > 60000)
        usage();
    /* Raise the soft fd limit to the hard one: the client holds every connection. */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    total = nconn + nstalled + inflight;
    lat_hist = calloc(LAT_MAX_US + 1, sizeof(*lat_hist));
    conns = calloc((size_t)total, sizeof(*conns));
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (lat_hist == NULL || conns == NULL || ep < 0)
        die("setup");
    if (strcmp(mode, "echo") == 0)
        return run_echo();
    if (strcmp(mode, "bcast") == 0)
        return run_bcast();
    if (strcmp(mode, "hold") == 0)
        return run_hold();
    if (strcmp(mode, "churn") == 0)
        return run_churn();
    if (strcmp(mode, "chat") == 0)
        return run_chat();
    if (strcmp(mode, "slow") == 0)
        return run_slow();
    if (strcmp(mode, "kick") == 0)
        return run_kick();
    if (strcmp(mode, "emfile") == 0)
        return run_emfile();
    usage();
    return 2;
}
