/* SPDX-License-Identifier: MIT */
/* The bounded channel: a ring buffer and two FIFO queues of parked senders and receivers,
 * guarded by one pthread mutex so that coroutines of different schedulers and plain threads
 * can share it. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <coho.h>

#include "base_struct/clock.h"
#include "base_struct/err.h"
#include "coroutine/internal.h"

/*
 * Who waits, and how it is woken (the waker holds ch->mu and has already moved the element):
 *
 *   waiter                         | woken by
 *   -------------------------------+-----------------------------------------------------------
 *   plain thread (sched == NULL)   | pthread_cond_signal on the waiter's own condvar
 *   coroutine, waker on its thread | coho__co_wake(co_id, token) directly
 *   coroutine, waker elsewhere     | coho__sched_post(sched, post_wake, w) once ch->mu is
 *                                  | released: the wake runs on the waiter's own scheduler
 *                                  | thread, and the woken peer does not run into a held lock
 *
 * A posted wake carries a pointer to the waiter's record, which lives on the waiter's stack. The
 * record must outlive the posted callback, so `post_pending` is set (under ch->mu, before the
 * lock is released) and cleared by the callback; a waiter whose wait ended some other way (a
 * timeout racing with the transfer) yields until the callback has run before it returns. The
 * callback runs on the waiter's thread, so it never runs concurrently with the waiter itself.
 *
 * Elements move directly between a parked peer's buffer and the caller's, so a capacity-0
 * channel is a rendezvous and a receiver that frees a slot pulls the first parked sender's
 * element into the ring (FIFO order is kept).
 */

enum { W_WAITING, W_DONE, W_CLOSED };

struct chan_waiter {
    struct chan_waiter *next;
    struct chan_waiter *prev;
    coho_sched_t *sched; /* NULL: a plain thread blocked on `cv` */
    uint64_t co_id;
    uint64_t token;
    pthread_cond_t *cv;
    void *elem; /* sender: its source; receiver: its destination */
    int state;  /* W_*: written by the waker under ch->mu */
    atomic_int post_pending;
};

struct chan_queue {
    struct chan_waiter *head;
    struct chan_waiter *tail;
    size_t count;
};

struct coho_chan {
    pthread_mutex_t mu;
    size_t elem_size;
    size_t capacity;
    size_t head;  /* ring index of the oldest element */
    size_t count; /* buffered elements */
    bool closed;
    struct chan_queue senders;
    struct chan_queue receivers;
    unsigned char *ring;
};

static void queue_push(struct chan_queue *q, struct chan_waiter *w)
{
    w->next = NULL;
    w->prev = q->tail;
    if (q->tail != NULL)
        q->tail->next = w;
    else
        q->head = w;
    q->tail = w;
    q->count++;
}

static void queue_unlink(struct chan_queue *q, struct chan_waiter *w)
{
    if (w->prev != NULL)
        w->prev->next = w->next;
    else
        q->head = w->next;
    if (w->next != NULL)
        w->next->prev = w->prev;
    else
        q->tail = w->prev;
    w->next = w->prev = NULL;
    q->count--;
}

static void post_wake(void *arg)
{
    struct chan_waiter *w = arg;

    (void)coho__co_wake(w->co_id, w->token, 0);
    atomic_store_explicit(&w->post_pending, 0, memory_order_release);
}

/* Queues the posted wake of `w` (post_pending already set). Any thread, with or without
 * ch->mu held. */
static void post_wake_send(struct chan_waiter *w)
{
    /* -ESHUTDOWN: the waiter's scheduler is being destroyed and the waiter will never run
     * again; nothing is left to wake. */
    if (coho__sched_post(w->sched, post_wake, w) < 0)
        atomic_store_explicit(&w->post_pending, 0, memory_order_release);
}

/* Ends `w`'s wait with `state`. Called with ch->mu held; `w` is already unlinked. Returns `w`
 * when its wake must still be posted to another scheduler: the caller does that with
 * post_wake_send() after releasing ch->mu, so the woken peer does not run into the lock still
 * held (post_pending keeps the record alive until then). NULL when the wake is done. */
static struct chan_waiter *waiter_finish(struct chan_waiter *w, int state)
{
    w->state = state;
    if (w->sched == NULL) {
        /* Under the lock: the thread may return and destroy `cv` as soon as it is released. */
        pthread_cond_signal(w->cv);
        return NULL;
    }
    if (w->sched == coho__sched_current()) {
        (void)coho__co_wake(w->co_id, w->token, 0);
        return NULL;
    }
    atomic_store_explicit(&w->post_pending, 1, memory_order_relaxed);
    return w;
}

static unsigned char *ring_slot(coho_chan_t *ch, size_t i)
{
    return ch->ring + ((ch->head + i) % ch->capacity) * ch->elem_size;
}

static void ring_push(coho_chan_t *ch, const void *elem)
{
    memcpy(ring_slot(ch, ch->count), elem, ch->elem_size);
    ch->count++;
}

static void ring_pop(coho_chan_t *ch, void *elem)
{
    memcpy(elem, ring_slot(ch, 0), ch->elem_size);
    ch->head = (ch->head + 1) % ch->capacity;
    ch->count--;
}

/* The calling context: 1 = coroutine, 0 = a thread without a scheduler, -EPERM = outside
 * coroutines on a scheduler's thread (blocking it would stall its coroutines). */
static int caller_kind(void)
{
    if (coho__co_self_id() != 0)
        return 1;
    return coho__sched_current() != NULL ? -EPERM : 0;
}

/* Parks the caller as `w` in `q` until a peer finishes the wait, the timeout (`timeout_ms` < 0:
 * none), cancellation, or close; `what` labels the wait for the dump. Called and returns with
 * ch->mu held. Returns 0 (the element moved), -EPIPE, -ETIMEDOUT or -ECANCELED. */
static int wait_in(coho_chan_t *ch, struct chan_queue *q, struct chan_waiter *w, int kind,
                   int64_t timeout_ms, const char *what)
{
    int rc = 0;

    w->state = W_WAITING;
    atomic_init(&w->post_pending, 0);
    if (kind == 1) {
        w->sched = coho__sched_current();
        w->co_id = coho__co_self_id();
        w->cv = NULL;
        w->token = coho__co_block_prepare();
        coho__co_wait_note(what, (int64_t)(intptr_t)ch); /* '@': the dump prints the address */
        queue_push(q, w);
        for (;;) {
            pthread_mutex_unlock(&ch->mu);
            rc = coho__co_block(timeout_ms);
            pthread_mutex_lock(&ch->mu);
            if (w->state != W_WAITING || rc < 0)
                break;
            w->token = coho__co_block_prepare(); /* a wake that is not ours: wait again */
            coho__co_wait_note(what, (int64_t)(intptr_t)ch);
        }
    } else {
        pthread_condattr_t attr;
        pthread_cond_t cv;
        struct timespec deadline;

        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&cv, &attr);
        pthread_condattr_destroy(&attr);
        w->sched = NULL;
        w->co_id = 0;
        w->token = 0;
        w->cv = &cv;
        if (timeout_ms >= 0)
            coho__mono_deadline(&deadline, (uint64_t)timeout_ms);
        queue_push(q, w);
        while (w->state == W_WAITING && rc == 0) {
            if (timeout_ms < 0)
                pthread_cond_wait(&cv, &ch->mu);
            else if (pthread_cond_timedwait(&cv, &ch->mu, &deadline) == ETIMEDOUT)
                rc = -ETIMEDOUT;
        }
        pthread_cond_destroy(&cv);
    }
    /* A transfer or close that won the race against a timeout or cancellation stands. */
    if (w->state == W_WAITING) {
        queue_unlink(q, w);
        return rc;
    }
    return w->state == W_DONE ? 0 : -EPIPE;
}

/* Waits, after ch->mu is released, until no posted wake still refers to `w`. */
static void waiter_leave(struct chan_waiter *w)
{
    while (atomic_load_explicit(&w->post_pending, memory_order_acquire))
        coho_yield();
}

/* timeout_ms: < 0 waits forever, 0 never waits (try_), > 0 bounded. */
static int chan_send(coho_chan_t *ch, const void *elem, int64_t timeout_ms)
{
    struct chan_waiter w;
    struct chan_waiter *r;
    struct chan_waiter *post = NULL;
    int kind = 0;
    int rc;

    if (timeout_ms != 0) {
        kind = caller_kind();
        if (kind < 0)
            return kind;
    }
    pthread_mutex_lock(&ch->mu);
    if (ch->closed) {
        rc = -EPIPE;
    } else if ((r = ch->receivers.head) != NULL) {
        /* A parked receiver means the ring is empty: hand the element over directly. */
        queue_unlink(&ch->receivers, r);
        memcpy(r->elem, elem, ch->elem_size);
        post = waiter_finish(r, W_DONE);
        rc = 0;
    } else if (ch->count < ch->capacity) {
        ring_push(ch, elem);
        rc = 0;
    } else if (timeout_ms == 0) {
        rc = -EAGAIN;
    } else {
        w.elem = (void *)elem;
        rc = wait_in(ch, &ch->senders, &w, kind, timeout_ms, "chan send@");
        pthread_mutex_unlock(&ch->mu);
        if (kind == 1)
            waiter_leave(&w);
        return rc;
    }
    pthread_mutex_unlock(&ch->mu);
    if (post != NULL)
        post_wake_send(post);
    return rc;
}

static int chan_recv(coho_chan_t *ch, void *elem, int64_t timeout_ms)
{
    struct chan_waiter w;
    struct chan_waiter *s;
    struct chan_waiter *post = NULL;
    int kind = 0;
    int rc;

    if (timeout_ms != 0) {
        kind = caller_kind();
        if (kind < 0)
            return kind;
    }
    pthread_mutex_lock(&ch->mu);
    if (ch->count > 0) {
        ring_pop(ch, elem);
        /* A slot is free: the first parked sender's element goes in behind the others. */
        if ((s = ch->senders.head) != NULL) {
            queue_unlink(&ch->senders, s);
            ring_push(ch, s->elem);
            post = waiter_finish(s, W_DONE);
        }
        rc = 0;
    } else if ((s = ch->senders.head) != NULL) {
        /* Rendezvous (capacity 0): take the element straight from the sender. */
        queue_unlink(&ch->senders, s);
        memcpy(elem, s->elem, ch->elem_size);
        post = waiter_finish(s, W_DONE);
        rc = 0;
    } else if (ch->closed) {
        rc = -EPIPE;
    } else if (timeout_ms == 0) {
        rc = -EAGAIN;
    } else {
        w.elem = elem;
        rc = wait_in(ch, &ch->receivers, &w, kind, timeout_ms, "chan recv@");
        pthread_mutex_unlock(&ch->mu);
        if (kind == 1)
            waiter_leave(&w);
        return rc;
    }
    pthread_mutex_unlock(&ch->mu);
    if (post != NULL)
        post_wake_send(post);
    return rc;
}

static int64_t timeout_arg(uint64_t ms)
{
    return ms > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)ms;
}

coho_chan_t *coho_chan_create(size_t elem_size, size_t capacity)
{
    coho_chan_t *ch;
    size_t ring_size;

    if (elem_size == 0 || (capacity != 0 && elem_size > SIZE_MAX / capacity)) {
        errno = EINVAL;
        return NULL;
    }
    ring_size = elem_size * capacity;
    ch = calloc(1, sizeof(*ch));
    if (ch == NULL)
        goto fail_chan;
    if (ring_size != 0) {
        ch->ring = malloc(ring_size);
        if (ch->ring == NULL)
            goto fail_ring;
    }
    if (pthread_mutex_init(&ch->mu, NULL) != 0)
        goto fail_mutex;
    ch->elem_size = elem_size;
    ch->capacity = capacity;
    return ch;

fail_mutex:
    free(ch->ring);
fail_ring:
    free(ch);
fail_chan:
    errno = ENOMEM;
    return NULL;
}

int coho_chan_destroy(coho_chan_t *ch)
{
    if (ch == NULL)
        return 0;
    pthread_mutex_lock(&ch->mu);
    if (ch->senders.count != 0 || ch->receivers.count != 0) {
        pthread_mutex_unlock(&ch->mu);
        return (int)coho__posix_ret(-EBUSY);
    }
    pthread_mutex_unlock(&ch->mu);
    pthread_mutex_destroy(&ch->mu);
    free(ch->ring);
    free(ch);
    return 0;
}

int coho_chan_close(coho_chan_t *ch)
{
    struct chan_waiter *w;

    pthread_mutex_lock(&ch->mu);
    if (ch->closed) {
        pthread_mutex_unlock(&ch->mu);
        return (int)coho__posix_ret(-EPIPE);
    }
    ch->closed = true;
    /* Parked receivers imply an empty ring: nothing is left for them to drain. */
    while ((w = ch->receivers.head) != NULL) {
        queue_unlink(&ch->receivers, w);
        if (waiter_finish(w, W_CLOSED) != NULL)
            post_wake_send(w);
    }
    while ((w = ch->senders.head) != NULL) {
        queue_unlink(&ch->senders, w);
        if (waiter_finish(w, W_CLOSED) != NULL)
            post_wake_send(w);
    }
    pthread_mutex_unlock(&ch->mu);
    return 0;
}

bool coho_chan_is_closed(coho_chan_t *ch)
{
    bool closed;

    pthread_mutex_lock(&ch->mu);
    closed = ch->closed;
    pthread_mutex_unlock(&ch->mu);
    return closed;
}

int coho_chan_send(coho_chan_t *ch, const void *elem)
{
    return (int)coho__posix_ret(chan_send(ch, elem, -1));
}

int coho_chan_try_send(coho_chan_t *ch, const void *elem)
{
    return (int)coho__posix_ret(chan_send(ch, elem, 0));
}

int coho_chan_timedsend_ms(coho_chan_t *ch, const void *elem, uint64_t ms)
{
    /* A zero timeout still must not report "full" as EAGAIN: it is a timed call. */
    int rc = chan_send(ch, elem, ms == 0 ? 0 : timeout_arg(ms));

    return (int)coho__posix_ret(rc == -EAGAIN ? -ETIMEDOUT : rc);
}

int coho_chan_recv(coho_chan_t *ch, void *elem)
{
    return (int)coho__posix_ret(chan_recv(ch, elem, -1));
}

int coho_chan_try_recv(coho_chan_t *ch, void *elem)
{
    return (int)coho__posix_ret(chan_recv(ch, elem, 0));
}

int coho_chan_timedrecv_ms(coho_chan_t *ch, void *elem, uint64_t ms)
{
    int rc = chan_recv(ch, elem, ms == 0 ? 0 : timeout_arg(ms));

    return (int)coho__posix_ret(rc == -EAGAIN ? -ETIMEDOUT : rc);
}

size_t coho_chan_count(coho_chan_t *ch)
{
    size_t n;

    pthread_mutex_lock(&ch->mu);
    n = ch->count;
    pthread_mutex_unlock(&ch->mu);
    return n;
}

size_t coho_chan_capacity(const coho_chan_t *ch)
{
    return ch->capacity;
}
