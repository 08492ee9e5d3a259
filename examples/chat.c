/* SPDX-License-Identifier: MIT */
/* A chat server: every line a client sends goes to every client (try two `nc 127.0.0.1 7000`). */
#include <stdio.h>
#include <unistd.h>

#include <coho/net.h>

static coho_group_t *room;

static void chat(coho_conn_t *c, void *user) /* one coroutine per client */
{
    coho_cbuf_t line;
    ssize_t n;
    (void)user;
    coho_cbuf_init(&line, NULL);
    coho_group_add(room, coho_conn_id(c));
    while ((n = coho_conn_read_frame(c, &line)) > 0) /* parks until a whole line is in */
        coho_group_broadcast(room, coho_cbuf_linearize(&line, (size_t)n), (size_t)n);
    coho_group_remove(room, coho_conn_id(c)); /* a slow reader is cut, never waited for */
    coho_cbuf_destroy(&line);
}

int main(int argc, char **argv)
{
    coho_server_opts_t o;
    coho_server_opts_init(&o);
    o.framing = COHO_FRAMING_LINE;
    room = coho_group_create();
    coho_server_t *s = coho_server_start(argc > 1 ? argv[1] : "127.0.0.1:7000", &o, chat, NULL);
    if (room == NULL || s == NULL)
        return perror("chat"), 1;
    printf("chat on port %d\n", coho_server_port(s));
    fflush(stdout);
    pause(); /* the server runs on a thread of its own */
}
