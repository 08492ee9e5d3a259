/* SPDX-License-Identifier: MIT */
/* The single-thread synchronisation primitives: mutex, condition variable, semaphore and wait
 * group. Each parks coroutines in a FIFO of wait records that live on the waiters' stacks. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>

#include <coho.h>

#include "base_struct/err.h"
#include "coroutine/internal.h"
#include "log/check.h"

/* A parked coroutine. The waker that dequeues a record decides the outcome: it sets `granted`
 * (the lock, the semaphore unit, the signal, the zero count is now this coroutine's) and wakes
 * the token. The token may be stale by then (the wait ended by timeout or cancellation, and
 * the coroutine is ready but has not run yet): the wake is then a no-op, but the grant still
 * stands, so nothing handed out is ever lost. A waiter that finds itself not granted was not
 * dequeued by anyone and unlinks itself. */
struct coho__sync_waiter {
    struct coho__sync_waiter *next;
    struct coho__sync_waiter *prev;
    uint64_t co_id;
    uint64_t token;
    bool granted;
};

enum {
    MUTEX_MAGIC = 0x636d7478u, /* "cmtx" */
    COND_MAGIC = 0x63636e64u,  /* "ccnd" */
    SEM_MAGIC = 0x6373656du,   /* "csem" */
    WG_MAGIC = 0x63776721u,    /* "cwg!" */
};

/* The address of this thread-local byte identifies the calling thread cheaply. */
static __thread char thread_tag;

static void base_init(coho__sync_base_t *b, uint32_t magic)
{
    b->thread_ = NULL;
    b->head_ = NULL;
    b->tail_ = NULL;
    b->magic_ = magic;
    b->nwaiters_ = 0;
}

/* Checks that `b` is initialised and belongs to the calling thread. The first use on a thread
 * that has a scheduler binds the primitive to that thread (one scheduler per thread, so this
 * records the owning scheduler). */
static void base_check(coho__sync_base_t *b, uint32_t magic, const char *what, const char *fn)
{
    COHO_CHECK(b->magic_ == magic, "%s: %s %p is not initialised or was destroyed", fn, what,
               (void *)b);
    if (__builtin_expect(b->thread_ == &thread_tag, 1))
        return;
    if (b->thread_ == NULL) {
        if (coho__sched_current() != NULL)
            b->thread_ = &thread_tag;
        return;
    }
    COHO_CHECK(0,
               "%s: %s %p used from another thread (coroutine %llu); it belongs to the thread "
               "of the scheduler that first used it",
               fn, what, (void *)b, (unsigned long long)coho__co_self_id());
}

static void queue_push(coho__sync_base_t *b, struct coho__sync_waiter *w)
{
    w->next = NULL;
    w->prev = b->tail_;
    if (b->tail_ != NULL)
        b->tail_->next = w;
    else
        b->head_ = w;
    b->tail_ = w;
    b->nwaiters_++;
}

static void queue_unlink(coho__sync_base_t *b, struct coho__sync_waiter *w)
{
    if (w->prev != NULL)
        w->prev->next = w->next;
    else
        b->head_ = w->next;
    if (w->next != NULL)
        w->next->prev = w->prev;
    else
        b->tail_ = w->prev;
    w->next = w->prev = NULL;
    b->nwaiters_--;
}

/* Dequeues the first waiter, grants it and makes it ready. Returns it (valid until this
 * function's caller returns to the scheduler), or NULL when nobody waits. */
static struct coho__sync_waiter *grant_first(coho__sync_base_t *b)
{
    struct coho__sync_waiter *w = b->head_;

    if (w == NULL)
        return NULL;
    queue_unlink(b, w);
    w->granted = true;
    /* -ESTALE (the wait already ended) is fine: the waiter checks `granted` when it runs. */
    (void)coho__co_wake(w->co_id, w->token, 0);
    return w;
}

/* Opens a wait on `b` and labels it for coho_sched_dump: `what` is the primitive's kind with
 * a trailing '@', so the dump prints the object's address after it. Two stores; the dump does
 * the formatting. */
static uint64_t wait_prepare(coho__sync_base_t *b, const char *what)
{
    uint64_t token = coho__co_block_prepare();

    coho__co_wait_note(what, (int64_t)(intptr_t)b);
    return token;
}

/* Queues the calling coroutine `self` on `b` with a fresh wait token. */
static void wait_enqueue(coho__sync_base_t *b, struct coho__sync_waiter *w, uint64_t self,
                         const char *what)
{
    w->co_id = self;
    w->granted = false;
    w->token = wait_prepare(b, what);
    queue_push(b, w);
}

/* Parks until `w` is granted (returns 0), the timeout, or cancellation (returns -ETIMEDOUT /
 * -ECANCELED with `w` unlinked). A grant wins over a timeout that raced with it. */
static int wait_block(coho__sync_base_t *b, struct coho__sync_waiter *w, int64_t timeout_ms,
                      const char *what)
{
    for (;;) {
        int rc = coho__co_block(timeout_ms);

        if (w->granted)
            return 0;
        if (rc < 0) {
            queue_unlink(b, w);
            return rc;
        }
        /* A wake that did not come with a grant is not ours to act on: wait again. */
        w->token = wait_prepare(b, what);
    }
}

static int64_t timeout_arg(uint64_t ms)
{
    return ms > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)ms;
}

/* ---- mutex ---------------------------------------------------------------------------------- */

int coho_mutex_init(coho_mutex_t *m)
{
    base_init(&m->base_, MUTEX_MAGIC);
    m->owner_ = 0;
    return 0;
}

int coho_mutex_destroy(coho_mutex_t *m)
{
    COHO_CHECK(m->base_.magic_ == MUTEX_MAGIC,
               "coho_mutex_destroy: mutex %p is not initialised or was destroyed", (void *)m);
    if (m->owner_ != 0 || m->base_.nwaiters_ != 0)
        return (int)coho__posix_ret(-EBUSY);
    m->base_.magic_ = 0;
    return 0;
}

/* Invariant: owner_ == 0 implies an empty queue (an unlock with waiters hands the mutex to the
 * first of them), so a free mutex never has a queue to jump. */
int coho_mutex_lock(coho_mutex_t *m)
{
    struct coho__sync_waiter w;
    uint64_t self = coho__co_self_id();

    if (self == 0)
        return (int)coho__posix_ret(-EPERM);
    base_check(&m->base_, MUTEX_MAGIC, "mutex", "coho_mutex_lock");
    if (m->owner_ == 0) {
        m->owner_ = self;
        return 0;
    }
    if (m->owner_ == self)
        return (int)coho__posix_ret(-EDEADLK);
    wait_enqueue(&m->base_, &w, self, "mutex@");
    return (int)coho__posix_ret(wait_block(&m->base_, &w, -1, "mutex@"));
}

int coho_mutex_trylock(coho_mutex_t *m)
{
    uint64_t self = coho__co_self_id();

    if (self == 0)
        return (int)coho__posix_ret(-EPERM);
    base_check(&m->base_, MUTEX_MAGIC, "mutex", "coho_mutex_trylock");
    if (m->owner_ != 0)
        return (int)coho__posix_ret(-EBUSY);
    m->owner_ = self;
    return 0;
}

/* Hands `m` to its first waiter, or leaves it free. */
static void mutex_release(coho_mutex_t *m)
{
    struct coho__sync_waiter *w = grant_first(&m->base_);

    m->owner_ = w != NULL ? w->co_id : 0;
}

/* "<id>" or "<id> (<name>)" for COHO_CHECK messages. */
static const char *co_label(uint64_t id, char *buf, size_t len)
{
    char name[COHO_NAME_MAX];

    if (id != 0 && coho_get_name(id, name, sizeof(name)) == 0 && name[0] != '\0')
        snprintf(buf, len, "%llu (%s)", (unsigned long long)id, name);
    else
        snprintf(buf, len, "%llu", (unsigned long long)id);
    return buf;
}

__attribute__((noreturn, noinline)) static void unlock_by_non_owner(coho_mutex_t *m, uint64_t self)
{
    char me[COHO_NAME_MAX + 32];
    char owner[COHO_NAME_MAX + 32];

    if (m->owner_ == 0)
        coho__check_fail(__FILE__, __LINE__,
                         "coho_mutex_unlock: coroutine %s unlocked mutex %p, which is not locked",
                         co_label(self, me, sizeof(me)), (void *)m);
    coho__check_fail(__FILE__, __LINE__,
                     "coho_mutex_unlock: coroutine %s unlocked mutex %p it does not own (owner: "
                     "coroutine %s)",
                     co_label(self, me, sizeof(me)), (void *)m,
                     co_label(m->owner_, owner, sizeof(owner)));
}

int coho_mutex_unlock(coho_mutex_t *m)
{
    uint64_t self = coho__co_self_id();

    if (self == 0)
        return (int)coho__posix_ret(-EPERM);
    base_check(&m->base_, MUTEX_MAGIC, "mutex", "coho_mutex_unlock");
    if (__builtin_expect(m->owner_ != self, 0))
        unlock_by_non_owner(m, self);
    mutex_release(m);
    return 0;
}

/* Re-acquires `m` for `self` after a condition wait, whatever happens: a cancellation does not
 * stop it (the cond wait contract returns with the mutex held). A cancelled coroutine stays in
 * the FIFO and yields until an unlock hands it the mutex: its park would return ECANCELED at
 * once again. */
static void mutex_relock(coho_mutex_t *m, uint64_t self)
{
    struct coho__sync_waiter w;

    if (m->owner_ == 0) {
        m->owner_ = self;
        return;
    }
    wait_enqueue(&m->base_, &w, self, "mutex@");
    (void)coho__co_block(-1);
    while (!w.granted)
        coho_yield();
}

/* ---- condition variable --------------------------------------------------------------------- */

int coho_cond_init(coho_cond_t *c)
{
    base_init(&c->base_, COND_MAGIC);
    return 0;
}

int coho_cond_destroy(coho_cond_t *c)
{
    COHO_CHECK(c->base_.magic_ == COND_MAGIC,
               "coho_cond_destroy: condition variable %p is not initialised or was destroyed",
               (void *)c);
    if (c->base_.nwaiters_ != 0)
        return (int)coho__posix_ret(-EBUSY);
    c->base_.magic_ = 0;
    return 0;
}

static int cond_wait(coho_cond_t *c, coho_mutex_t *m, int64_t timeout_ms, const char *fn)
{
    struct coho__sync_waiter w;
    uint64_t self = coho__co_self_id();
    int rc;

    if (self == 0)
        return -EPERM;
    base_check(&c->base_, COND_MAGIC, "condition variable", fn);
    base_check(&m->base_, MUTEX_MAGIC, "mutex", fn);
    if (m->owner_ != self)
        return -EPERM;
    /* Queue first, then release: a signal sent by the coroutine that gets the mutex next
     * finds this waiter already queued. */
    wait_enqueue(&c->base_, &w, self, "cond@");
    mutex_release(m);
    rc = wait_block(&c->base_, &w, timeout_ms, "cond@");
    mutex_relock(m, self);
    return rc;
}

int coho_cond_wait(coho_cond_t *c, coho_mutex_t *m)
{
    return (int)coho__posix_ret(cond_wait(c, m, -1, "coho_cond_wait"));
}

int coho_cond_timedwait_ms(coho_cond_t *c, coho_mutex_t *m, uint64_t ms)
{
    return (int)coho__posix_ret(cond_wait(c, m, timeout_arg(ms), "coho_cond_timedwait_ms"));
}

int coho_cond_signal(coho_cond_t *c)
{
    base_check(&c->base_, COND_MAGIC, "condition variable", "coho_cond_signal");
    (void)grant_first(&c->base_);
    return 0;
}

int coho_cond_broadcast(coho_cond_t *c)
{
    base_check(&c->base_, COND_MAGIC, "condition variable", "coho_cond_broadcast");
    while (grant_first(&c->base_) != NULL) {
    }
    return 0;
}

/* ---- semaphore ------------------------------------------------------------------------------ */

int coho_sem_init(coho_sem_t *s, uint64_t value)
{
    base_init(&s->base_, SEM_MAGIC);
    s->value_ = value;
    return 0;
}

int coho_sem_destroy(coho_sem_t *s)
{
    COHO_CHECK(s->base_.magic_ == SEM_MAGIC,
               "coho_sem_destroy: semaphore %p is not initialised or was destroyed", (void *)s);
    if (s->base_.nwaiters_ != 0)
        return (int)coho__posix_ret(-EBUSY);
    s->base_.magic_ = 0;
    return 0;
}

/* Invariant: value_ > 0 implies an empty queue (a post with waiters hands its unit over). */
static int sem_wait(coho_sem_t *s, int64_t timeout_ms, const char *fn)
{
    struct coho__sync_waiter w;
    uint64_t self = coho__co_self_id();

    if (self == 0)
        return -EPERM;
    base_check(&s->base_, SEM_MAGIC, "semaphore", fn);
    if (s->value_ > 0) {
        s->value_--;
        return 0;
    }
    if (timeout_ms == 0)
        return -ETIMEDOUT;
    wait_enqueue(&s->base_, &w, self, "sem@");
    return wait_block(&s->base_, &w, timeout_ms, "sem@");
}

int coho_sem_wait(coho_sem_t *s)
{
    return (int)coho__posix_ret(sem_wait(s, -1, "coho_sem_wait"));
}

int coho_sem_timedwait_ms(coho_sem_t *s, uint64_t ms)
{
    return (int)coho__posix_ret(sem_wait(s, timeout_arg(ms), "coho_sem_timedwait_ms"));
}

int coho_sem_trywait(coho_sem_t *s)
{
    base_check(&s->base_, SEM_MAGIC, "semaphore", "coho_sem_trywait");
    if (s->value_ == 0)
        return (int)coho__posix_ret(-EAGAIN);
    s->value_--;
    return 0;
}

int coho_sem_post(coho_sem_t *s)
{
    base_check(&s->base_, SEM_MAGIC, "semaphore", "coho_sem_post");
    if (grant_first(&s->base_) != NULL)
        return 0;
    if (s->value_ == UINT64_MAX)
        return (int)coho__posix_ret(-EOVERFLOW);
    s->value_++;
    return 0;
}

uint64_t coho_sem_value(const coho_sem_t *s)
{
    return s->value_;
}

/* ---- wait group ----------------------------------------------------------------------------- */

int coho_wg_init(coho_wg_t *wg)
{
    base_init(&wg->base_, WG_MAGIC);
    wg->count_ = 0;
    return 0;
}

int coho_wg_destroy(coho_wg_t *wg)
{
    COHO_CHECK(wg->base_.magic_ == WG_MAGIC,
               "coho_wg_destroy: wait group %p is not initialised or was destroyed", (void *)wg);
    if (wg->base_.nwaiters_ != 0)
        return (int)coho__posix_ret(-EBUSY);
    wg->base_.magic_ = 0;
    return 0;
}

int coho_wg_add(coho_wg_t *wg, int64_t delta)
{
    base_check(&wg->base_, WG_MAGIC, "wait group", "coho_wg_add");
    COHO_CHECK(delta >= 0 ? wg->count_ <= INT64_MAX - delta : wg->count_ + delta >= 0,
               "coho_wg_add: wait group %p count %lld %+lld goes out of range (more done() than "
               "add()?)",
               (void *)wg, (long long)wg->count_, (long long)delta);
    wg->count_ += delta;
    if (wg->count_ == 0) {
        while (grant_first(&wg->base_) != NULL) {
        }
    }
    return 0;
}

int coho_wg_done(coho_wg_t *wg)
{
    return coho_wg_add(wg, -1);
}

static int wg_wait(coho_wg_t *wg, int64_t timeout_ms, const char *fn)
{
    struct coho__sync_waiter w;
    uint64_t self = coho__co_self_id();

    if (self == 0)
        return -EPERM;
    base_check(&wg->base_, WG_MAGIC, "wait group", fn);
    if (wg->count_ == 0)
        return 0;
    if (timeout_ms == 0)
        return -ETIMEDOUT;
    wait_enqueue(&wg->base_, &w, self, "waitgroup@");
    return wait_block(&wg->base_, &w, timeout_ms, "waitgroup@");
}

int coho_wg_wait(coho_wg_t *wg)
{
    return (int)coho__posix_ret(wg_wait(wg, -1, "coho_wg_wait"));
}

int coho_wg_timedwait_ms(coho_wg_t *wg, uint64_t ms)
{
    return (int)coho__posix_ret(wg_wait(wg, timeout_arg(ms), "coho_wg_timedwait_ms"));
}
