/* SPDX-License-Identifier: MIT */
/* coho_sched_dump names the waits of socket_ext (net/): a pick while no connection is up (by
 * pool) and a response wait (by request id). */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <coho.h>
#include <coho/net.h>

#include "test/support/cmocka_main.h"
#include "test/support/dump_capture.h"

/* ---- socket_ext (tdp) ---------------------------------------------------------------------- */

static size_t tdp_max_body = 1u << 16;
static coho_tdp_framer_t tdp_framer;
static coho_tdp_pool_t *tdp_server;  /* takes requests and never answers */
static coho_tdp_pool_t *tdp_client;  /* connected to tdp_server */
static coho_tdp_pool_t *tdp_nowhere; /* connects to a port nobody listens on */
static coho_tdp_req_t *tdp_held;
static uint64_t tdp_req;

static void tdp_hold(coho_tdp_req_t *rq, void *user)
{
    (void)user;
    if (tdp_held != NULL)
        coho_tdp_req_free(tdp_held);
    tdp_held = rq;
}

static void tdp_opts(coho_tdp_opts_t *o)
{
    coho_tdp_opts_init(o);
    o->framers[0] = &tdp_framer;
    o->framer_count = 1;
    o->conn_count = 1;
}

/* A loopback port that refuses connections: bound once, then closed. */
/* A loopback port nothing listens on, or 0 on failure (it runs in a coroutine: no CMocka
 * assertion here). */
static uint16_t refusing_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    bool ok;

    if (fd < 0)
        return 0;
    ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
         getsockname(fd, (struct sockaddr *)&a, &len) == 0;
    close(fd);
    return ok ? ntohs(a.sin_port) : 0;
}

static void tdp_picker(void *arg)
{
    (void)arg;
    (void)coho_tdp_pick(tdp_nowhere, -1);
}

static void tdp_requester(void *arg)
{
    unsigned char hdr[COHO_SOCK_HDR_LEN];
    coho_sock_hdr_t h = {.magic = COHO_SOCK_MAGIC};
    uint64_t conn = coho_tdp_pick(tdp_client, 5000);
    coho_cbuf_t resp;

    (void)arg;
    if (conn == 0)
        return;
    tdp_req = coho_tdp_req_id(tdp_client);
    h.seq = tdp_req;
    coho_sock_hdr_encode(&h, hdr);
    if (coho_tdp_send(tdp_client, conn, tdp_req, hdr, sizeof(hdr)) != 0)
        return;
    coho_cbuf_init(&resp, NULL);
    (void)coho_tdp_wait_resp(tdp_client, tdp_req, -1, &resp);
    coho_cbuf_destroy(&resp);
}

static bool tdp_main_ended;

static void tdp_main(void *arg)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    coho_tdp_opts_t o;

    (void)arg;
    coho_sock_framer_init(&tdp_framer, &tdp_max_body);
    tdp_opts(&o);
    o.on_req = tdp_hold;
    tdp_server = coho_tdp_listen((struct sockaddr *)&a, sizeof(a), &o);
    if (tdp_server == NULL)
        return;
    a.sin_port = htons(coho_tdp_local_port(tdp_server));
    tdp_opts(&o);
    tdp_client = coho_tdp_connect((struct sockaddr *)&a, sizeof(a), &o);
    a.sin_port = htons(refusing_port());
    if (a.sin_port == 0)
        return;
    tdp_opts(&o);
    tdp_nowhere = coho_tdp_connect((struct sockaddr *)&a, sizeof(a), &o);
    if (tdp_client == NULL || tdp_nowhere == NULL)
        return;
    spawn_named("tdp-picker", tdp_picker, NULL);
    spawn_named("tdp-requester", tdp_requester, NULL);
    coho_sleep_ms(200); /* the request has reached the server by now */
    coho_sched_dump(sched);
    coho_sched_stop(sched);
    tdp_main_ended = true;
}

static void setup_tdp(void)
{
    tdp_server = tdp_client = tdp_nowhere = NULL;
    tdp_held = NULL;
    tdp_req = 0;
    tdp_main_ended = false;
    spawn_named("tdp-main", tdp_main, NULL);
}

static void dump_names_tdp_connection_and_response_waits(void **state)
{
    char want[96];

    (void)state;
    run_and_read(setup_tdp);
    assert_true(tdp_main_ended);
    assert_non_null(tdp_server);
    assert_non_null(tdp_client);
    assert_non_null(tdp_nowhere);
    assert_int_not_equal(tdp_req, 0);
    snprintf(want, sizeof(want), "parked waits on tdp connection of pool@0x%" PRIxPTR " for ",
             (uintptr_t)tdp_nowhere);
    expect_dump_line("tdp-picker", want);
    snprintf(want, sizeof(want), "parked waits on tdp response req=%" PRIu64 " for ", tdp_req);
    expect_dump_line("tdp-requester", want);
    free(dump_text);
    if (tdp_held != NULL)
        coho_tdp_req_free(tdp_held);
    assert_int_equal(coho_tdp_close(tdp_nowhere), 0);
    assert_int_equal(coho_tdp_close(tdp_client), 0);
    assert_int_equal(coho_tdp_close(tdp_server), 0);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(dump_names_tdp_connection_and_response_waits),
    };

    return coho_test_main("tdp_dump", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
