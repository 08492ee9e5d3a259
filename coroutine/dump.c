/* SPDX-License-Identifier: MIT */
/* The live dump: one log line per coroutine of a scheduler (coho_sched_dump, and SIGUSR2 when a
 * scheduler opts in; coho_sched_dump_to hands the lines to a callback), and the coroutine counts
 * (coho_sched_get_stats). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "coroutine/internal.h"
#include "coroutine/sched_impl.h"
#include "log/check.h"

/* Formats what a parked coroutine waits on from its wait note (for the dump and the park trace
 * lines). The note is two stores on the waiter's path (coho__co_wait_note), so the formatting
 * happens here, steered by the label's
 * last character:
 *
 *   label ends in '@'   detail is an object's address    "mutex@" -> "mutex@0x5581c2a4e2a0"
 *   label ends in '='   detail is a number that belongs   "read fd=" -> "read fd=7"
 *   otherwise           detail (if >= 0) follows a space  "join", 5 -> "join 5"; "sleep", -1 */
void coho__co_wait_format(char *out, size_t len, const char *what, int64_t detail)
{
    size_t n;

    if (what == NULL)
        what = "event";
    n = strlen(what);
    if (n > 0 && what[n - 1] == '@')
        snprintf(out, len, "%s0x%" PRIx64, what, (uint64_t)detail);
    else if (n > 0 && what[n - 1] == '=')
        snprintf(out, len, "%s%" PRIu64, what, (uint64_t)detail);
    else if (detail >= 0)
        snprintf(out, len, "%s %" PRId64, what, detail);
    else
        snprintf(out, len, "%s", what);
}

typedef struct dump_ctx {
    coho_sched_t *s;
    uint64_t now_ms;
    void (*line)(void *arg, const char *text, size_t len); /* NULL: the log */
    void *arg;
} dump_ctx_t;

static void dump_emit(const dump_ctx_t *d, const char *text)
{
    if (d->line == NULL)
        coho_log_info("%s", text);
    else
        d->line(d->arg, text, strlen(text));
}

static void dump_one(uint64_t id, void *node, void *arg)
{
    const coho__co_t *co = node;
    const dump_ctx_t *d = arg;
    char entry[32];
    char wait[128];
    char text[512];
    size_t hw = co->has_stack ? coho__stack_high_water(&co->stack) : 0;

    if (co->entry_name == NULL)
        snprintf(entry, sizeof(entry), "%p", (void *)(uintptr_t)co->fn);
    wait[0] = '\0';
    if (co->state == COHO__CO_PARKED) {
        uint64_t since = d->now_ms >= co->wait_since_ms ? d->now_ms - co->wait_since_ms : 0;
        char what[80];

        coho__co_wait_format(what, sizeof(what), co->wait_what, co->wait_detail);
        snprintf(wait, sizeof(wait), " waits on %s for %" PRIu64 " ms", what, since);
    }
    snprintf(text, sizeof(text),
             "coroutine %" PRIu64 " (%s, entry %s) %s%s%s%s%s, stack %zu of %zu KiB used%s", id,
             co->name[0] != '\0' ? co->name : "unnamed",
             co->entry_name != NULL ? co->entry_name : entry, coho__co_state_name(co->state), wait,
             co->daemon ? ", daemon" : "", co->detached ? ", detached" : "",
             co->cancelled ? ", cancelled" : "", hw / 1024, (co->stack_nominal + 1023) / 1024,
             co->stack.guarded ? " (guarded)" : "");
    dump_emit(d, text);
}

static void dump_run(coho_sched_t *s, dump_ctx_t *d)
{
    char text[256];
    size_t fds, timers;

    d->s = s;
    d->now_ms = coho__driver_update_now(s->driver);
    coho__driver_counts(s->driver, &fds, &timers);
    /* The switch count last: coho-top reads switches/s off successive dumps. */
    snprintf(text, sizeof(text),
             "scheduler %p: %zu coroutines (%zu unfinished, %zu user, %zu ready), %zu fds "
             "watched, %zu timers armed, %" PRIu64 " switches",
             (void *)s, coho__pool_count(s->pool), s->live, s->user_live, s->ready_count, fds,
             timers, (uint64_t)(s->resumes_done + (s->budget_start - s->poll_budget)));
    dump_emit(d, text);
    coho__pool_for_each(s->pool, dump_one, d);
}

void coho_sched_dump(coho_sched_t *s)
{
    dump_ctx_t d = {0};

    COHO_CHECK(s != NULL && coho__sched_current() == s,
               "coho_sched_dump: scheduler %p belongs to another thread", (void *)s);
    dump_run(s, &d);
}

int coho_sched_dump_to(coho_sched_t *s, void (*line)(void *arg, const char *text, size_t len),
                       void *arg)
{
    dump_ctx_t d = {0};

    if (s == NULL || line == NULL) {
        errno = EINVAL;
        return -1;
    }
    COHO_CHECK(coho__sched_current() == s,
               "coho_sched_dump_to: scheduler %p belongs to another thread", (void *)s);
    d.line = line;
    d.arg = arg;
    dump_run(s, &d);
    return 0;
}

int coho_sched_get_stats(const coho_sched_t *s, coho_sched_stats_t *out)
{
    if (s == NULL || out == NULL) {
        errno = EINVAL;
        return -1;
    }
    COHO_CHECK(coho__sched_current() == s,
               "coho_sched_get_stats: scheduler %p belongs to another thread", (const void *)s);
    out->coroutines = coho__pool_count(s->pool);
    out->unfinished = s->live;
    out->user = s->user_live;
    out->ready = s->ready_count;
    out->switches = s->resumes_done + (s->budget_start - s->poll_budget);
    out->parks_io = s->parks[COHO__PARK_IO];
    out->parks_sleep = s->parks[COHO__PARK_SLEEP];
    out->parks_sync = s->parks[COHO__PARK_SYNC];
    out->parks_join = s->parks[COHO__PARK_JOIN];
    out->parks_other = s->parks[COHO__PARK_OTHER];
    out->wakes = s->wakes;
    out->polls = s->polls;
    out->timer_fires = coho__driver_timers_fired(s->driver);
    out->ring_ops = coho__driver_ring_ops(s->driver);
    return 0;
}
