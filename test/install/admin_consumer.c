/* SPDX-License-Identifier: MIT */
/* A program that calls libcoho_net only (a metrics registry and the admin HTTP server), built
 * against the installed package: with a linker that defaults to --as-needed, libcoho must still
 * load ahead of libc (coho-net.pc and the coho::net target keep it), else its hooks cannot
 * resolve libc and the program aborts at start-up. It scrapes its own /metrics through stdio, so
 * it names no libc function libcoho defines (a call to read or write would keep libcoho linked
 * by itself). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <coho/admin.h>
#include <coho/metrics.h>
#include <coho/net.h>

int main(void)
{
    coho_metrics_t *m = coho_metrics_create();
    coho_admin_t *a;
    char addr[64], buf[4096];
    const char req[] = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    size_t got;
    FILE *f;
    int fd;

    if (m == NULL)
        return 1;
    coho_counter_add(coho_metrics_counter(m, "consumer_runs_total", "Runs.", NULL, 0), 1);
    a = coho_admin_start("127.0.0.1:0", m, NULL);
    if (a == NULL) {
        perror("coho_admin_start");
        return 1;
    }
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", coho_admin_port(a));
    fd = coho_dial(addr, 5000);
    f = fd >= 0 ? fdopen(fd, "r+") : NULL;
    if (f == NULL || fputs(req, f) == EOF || fflush(f) != 0) {
        perror("admin request");
        return 1;
    }
    got = fread(buf, 1, sizeof(buf) - 1, f); /* the server closes after the response */
    buf[got] = '\0'; /* f stays open until exit: fclose is one of libcoho's names too */
    coho_admin_stop(a);
    coho_metrics_destroy(m);
    if (strncmp(buf, "HTTP/1.1 200 ", 13) != 0 || strstr(buf, "consumer_runs_total 1\n") == NULL) {
        fprintf(stderr, "unexpected response:\n%s\n", buf);
        return 1;
    }
    puts("coho-net admin ok");
    return 0;
}
