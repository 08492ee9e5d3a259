/* SPDX-License-Identifier: MIT */
/* trace_demo: the trace log in use. Opens ./log/trace_demo.log, logs a few hundred lines from
 * two threads at every level, flushes, and prints where the log is with a per-level summary.
 * `make run` runs it in the build directory. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <coho.h>

#define LINES_PER_THREAD 200

/* Log calls per level (index = level); each worker owns its row. */
static unsigned calls[2][COHO_LOG_FATAL + 1];

struct worker {
    int id;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    int i;

    for (i = 0; i < LINES_PER_THREAD; i++) {
        int level = i % 50 == 49 ? COHO_LOG_ERROR : i % 10 == 9 ? COHO_LOG_WARN : i % 3;

        switch (level) {
        case COHO_LOG_TRACE:
            coho_log_trace("worker %d: step %d, inner loop detail", w->id, i);
            break;
        case COHO_LOG_DEBUG:
            coho_log_debug("worker %d: step %d, state ok", w->id, i);
            break;
        case COHO_LOG_INFO:
            coho_log_info("worker %d: step %d done", w->id, i);
            break;
        case COHO_LOG_WARN:
            coho_log_warn("worker %d: step %d slow (%d ms)", w->id, i, 10 + i % 7);
            break;
        default:
            coho_log_error("worker %d: step %d failed: %s", w->id, i, strerror(ECONNRESET));
            break;
        }
        calls[w->id][level]++;
    }
    return NULL;
}

int main(void)
{
    static const char *const names[] = {"trace", "debug", "info", "warn", "error", "fatal"};
    const char *path = "log/trace_demo.log";
    struct worker w[2];
    pthread_t th[2];
    coho_log_opts_t o;
    int i, level;

    if (mkdir("log", 0755) != 0 && errno != EEXIST) {
        perror("trace_demo: mkdir log");
        return 1;
    }
    coho_log_opts_init(&o);
    o.path = path;
    o.level = COHO_LOG_DEBUG; /* trace lines are filtered at run time */
    if (coho_log_open(&o) != 0)
        return 1; /* coho_log_open has said why on stderr */
    coho_log_info("trace_demo: start, level %s", names[coho_log_get_level()]);
    for (i = 0; i < 2; i++) {
        w[i].id = i;
        pthread_create(&th[i], NULL, worker_main, &w[i]);
    }
    for (i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    coho_log_info("trace_demo: done");
    if (coho_log_flush() != 0) {
        perror("trace_demo: coho_log_flush");
        return 1;
    }

    printf("trace_demo: wrote %s (line format: YY/MM/DD HH:MM:SS mmm "
           "[file:line]-[level]-[TID-COID]message)\n",
           path);
    for (level = COHO_LOG_TRACE; level <= COHO_LOG_ERROR; level++)
        printf("  %-5s %4u calls, %s\n", names[level], calls[0][level] + calls[1][level],
               level < coho_log_get_level() ? "below the run-time level: not written" : "written");
    printf("  dropped %llu lines\n", (unsigned long long)coho_log_dropped_count());
    coho_log_close();
    return 0;
}
