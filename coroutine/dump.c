/* SPDX-License-Identifier: MIT */
/* The live dump: one log line per coroutine of a scheduler (coho_sched_dump, and SIGUSR2 when a
 * scheduler opts in), and the coroutine counts (coho_sched_get_stats). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "coroutine/internal.h"
#include "coroutine/sched_impl.h"
#include "log/check.h"

typedef struct dump_ctx {
    coho_sched_t *s;
    uint64_t now_ms;
} dump_ctx_t;

/* Formats what a parked coroutine waits on from its wait note. The note is two stores on the
 * waiter's path (coho__co_wait_note), so the formatting happens here, steered by the label's
 * last character:
 *
 *   label ends in '@'   detail is an object's address    "mutex@" -> "mutex@0x5581c2a4e2a0"
 *   label ends in '='   detail is a number that belongs   "read fd=" -> "read fd=7"
 *   otherwise           detail (if >= 0) follows a space  "join", 5 -> "join 5"; "sleep", -1 */
static void wait_format(char *out, size_t len, const char *what, int64_t detail)
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

static void dump_one(uint64_t id, void *node, void *arg)
{
    const coho__co_t *co = node;
    const dump_ctx_t *d = arg;
    char entry[32];
    char wait[128];
    size_t hw = co->has_stack ? coho__stack_high_water(&co->stack) : 0;

    if (co->entry_name == NULL)
        snprintf(entry, sizeof(entry), "%p", (void *)(uintptr_t)co->fn);
    wait[0] = '\0';
    if (co->state == COHO__CO_PARKED) {
        uint64_t since = d->now_ms >= co->wait_since_ms ? d->now_ms - co->wait_since_ms : 0;
        char what[80];

        wait_format(what, sizeof(what), co->wait_what, co->wait_detail);
        snprintf(wait, sizeof(wait), " waits on %s for %" PRIu64 " ms", what, since);
    }
    coho_log_info("coroutine %" PRIu64 " (%s, entry %s) %s%s%s%s%s, stack %zu of %zu KiB used%s",
                  id, co->name[0] != '\0' ? co->name : "unnamed",
                  co->entry_name != NULL ? co->entry_name : entry, coho__co_state_name(co->state),
                  wait, co->daemon ? ", daemon" : "", co->detached ? ", detached" : "",
                  co->cancelled ? ", cancelled" : "", hw / 1024, (co->stack_nominal + 1023) / 1024,
                  co->stack.guarded ? " (guarded)" : "");
}

void coho_sched_dump(coho_sched_t *s)
{
    dump_ctx_t d;

    COHO_CHECK(s != NULL && coho__sched_current() == s,
               "coho_sched_dump: scheduler %p belongs to another thread", (void *)s);
    d.s = s;
    d.now_ms = coho__driver_update_now(s->driver);
    coho_log_info("scheduler %p: %zu coroutines (%zu unfinished, %zu user, %zu ready)", (void *)s,
                  coho__pool_count(s->pool), s->live, s->user_live, s->ready_count);
    coho__pool_for_each(s->pool, dump_one, &d);
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
    return 0;
}
