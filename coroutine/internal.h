/* SPDX-License-Identifier: MIT */
/* Internal coroutine API for the layers above coroutine/ (syscall_hook/, sync code): the
 * current coroutine and scheduler, and the block/wake primitive with wake tokens.
 *
 * Blocking protocol (every parked wait in coho is built on it):
 *
 *     uint64_t tok = coho__co_block_prepare();      // fresh token for this wait
 *     ...publish {coho__co_self_id(), tok} where a waker finds it (a wait list, an fd slot)...
 *     int rc = coho__co_block(timeout_ms);          // parks
 *     // rc: the `result` given to coho__co_wake, or -ETIMEDOUT, or -ECANCELED
 *
 * A wake with a stale token (the wait already ended by timeout, cancel or another wake) is
 * ignored, so a timer and an fd event racing to wake the same coroutine resume it once. */
#ifndef COHO_COROUTINE_INTERNAL_H
#define COHO_COROUTINE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <coho.h>

#include "mio_driver/driver.h"

/* The scheduler of the calling thread (from coho_sched_create to coho_sched_destroy, whether or
 * not coho_sched_run is active), or NULL if the thread has none. */
coho_sched_t *coho__sched_current(void);

/* The driver of a scheduler (for fd registrations and timers of the hook layer). */
coho__driver_t *coho__sched_driver(coho_sched_t *s);

/* The id of the running coroutine, 0 on a scheduler's own stack or outside any scheduler. */
uint64_t coho__co_self_id(void);

/* Starts a new wait of the running coroutine and returns its token (never 0). Must be inside
 * a coroutine (outside one it returns 0). A wait opened and never blocked on simply ends at
 * the next prepare. */
uint64_t coho__co_block_prepare(void);

/* Parks the running coroutine until coho__co_wake with the current token, the timeout
 * (`timeout_ms` < 0: none), or cancellation. Returns the wake result, -ETIMEDOUT or
 * -ECANCELED. A cancellation requested before the call returns -ECANCELED at once (it is
 * sticky: every later call does too), and a wake that arrived after the prepare returns its
 * result at once. -EPERM outside a coroutine; without a prepare it is a COHO_CHECK abort. */
int coho__co_block(int64_t timeout_ms);

/* coho__co_block with an absolute deadline on coho__mono_ns()'s clock (UINT64_MAX: none): the
 * wait times out once the clock has reached it, within one driver tick (100 us by default). */
int coho__co_block_until(uint64_t deadline_ns);

/* Describes the open wait of the running coroutine for coho_sched_dump(): `what` is a static
 * string, `detail` an fd, id, address or -1. The dump formats by the label's last character:
 * '@' prints the detail as an address ("mutex@" -> "mutex@0x55..."), '=' prints it right after
 * ("read fd=" -> "read fd=7"), anything else prints " <detail>" when it is >= 0 ("join 5").
 * Two stores, so it costs nothing on the hot path. Call it after coho__co_block_prepare (which
 * clears the note), again after every re-prepare. No-op outside coroutines. */
void coho__co_wait_note(const char *what, int64_t detail);

/* Writes the label of a wait note as coho_sched_dump shows it ("read fd=7", "mutex@0x5581...",
 * "sleep", "join 5") into `out` (`len` bytes, always terminated). Any thread. */
void coho__co_wait_format(char *out, size_t len, const char *what, int64_t detail);

/* Makes the coroutine `co_id` ready with `result` if its current wait has token `token`.
 * Returns 0, or -ESRCH (no such coroutine) / -ESTALE (not waiting with that token): both are
 * harmless no-ops. Only on the coroutine's own scheduler thread. */
int coho__co_wake(uint64_t co_id, uint64_t token, int result);

/* Runs `fn(arg)` on scheduler `s`'s thread (any thread; the cross-thread path of channels). */
int coho__sched_post(coho_sched_t *s, void (*fn)(void *arg), void *arg);

/* Per-coroutine flag word for the layers above (bit COHO__CO_FLAG_NOHOOK: the hook layer
 * passes calls straight to libc for this coroutine). NULL outside a coroutine. */
enum { COHO__CO_FLAG_NOHOOK = 1u << 0 };
uint32_t *coho__co_flags(void);

/* Registers fn(s), called once by coho_sched_destroy(s) before its driver is destroyed (the hook
 * layer drops fd registrations that live in that driver). At most 8 per process. Returns 0 or
 * -ENOSPC. */
int coho__sched_on_destroy(void (*fn)(coho_sched_t *s));

/* The per-coroutine switch hook (used by coho.hpp to keep the C++ exception globals per
 * coroutine) is public, since coho.hpp is a header compiled into user code:
 * coho_set_switch_hook() in include/coho/sched.h. */

#endif /* COHO_COROUTINE_INTERNAL_H */
