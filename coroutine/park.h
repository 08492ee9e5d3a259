/* SPDX-License-Identifier: MIT */
/* The park primitive: the one internal interface libcoho exports to libcoho_net (net/), so that
 * net/ can build wait lists of its own (socket_ext's response waiters, flush waiters, pick
 * waiters) on the same block/wake protocol as coho's mutexes and hooks, without scheduler
 * internals. Not installed and not part of the public API: the names are coho__ and listed in
 * syscall_hook/hooked.list, the exported-symbol allowlist. coroutine/README.md "Parking".
 *
 *     uint64_t tok = coho__park_prepare();        // fresh token for this wait
 *     coho__park_note("what@", (int64_t)(intptr_t)obj);
 *     ...publish {coho_self(), tok} where the waker finds it (a coho_list_t of waiters)...
 *     int rc = coho__park(timeout_ms);            // the waker's result, -ETIMEDOUT or -ECANCELED
 *     ...unpublish (the waker may have done it already)...
 *
 *     coho__park_wake(co_id, tok, result);        // waker, same scheduler thread
 *
 * A wake with a stale token (that wait already ended by timeout, cancellation or another wake)
 * is ignored, so a timer and a wake racing for the same coroutine resume it once. */
#ifndef COHO_COROUTINE_PARK_H
#define COHO_COROUTINE_PARK_H

#include <coho/common.h>

COHO_EXTERN_C_BEGIN

/* Opens a new wait of the running coroutine and returns its token (never 0; 0 outside a
 * coroutine). A wait opened and never parked on simply ends at the next prepare. */
COHO_API uint64_t coho__park_prepare(void);

/* Parks the running coroutine until coho__park_wake with the current token, the timeout
 * (`timeout_ms` < 0: none) or cancellation. Returns the wake's `result`, -ETIMEDOUT or
 * -ECANCELED (at once when the coroutine was already cancelled: cancellation is sticky). A wake
 * that arrived between the prepare and this call returns its result at once. -EPERM outside a
 * coroutine; without a prepare it is a COHO_CHECK abort. */
COHO_API int coho__park(int64_t timeout_ms);

/* Labels the open wait for coho_sched_dump(): `what` is a static string, `detail` an fd, an id,
 * an address or -1 ("x@" prints the detail as an address, "x=" right after the label, anything
 * else as " <detail>" when it is >= 0). Call after each prepare. No-op outside coroutines. */
COHO_API void coho__park_note(const char *what, int64_t detail);

/* Makes coroutine `co_id` ready with `result` if its open wait has token `token`. Returns 0, or
 * -ESRCH (no such coroutine) / -ESTALE (not waiting with that token): both harmless no-ops.
 * On the coroutine's scheduler thread only (COHO_CHECK abort on a thread without one). */
COHO_API int coho__park_wake(uint64_t co_id, uint64_t token, int result);

COHO_EXTERN_C_END

#endif /* COHO_COROUTINE_PARK_H */
