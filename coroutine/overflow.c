/* SPDX-License-Identifier: MIT */
/* Stack-overflow forensics: a SIGSEGV handler on a per-thread alternate stack that recognises a
 * hit on a coroutine's guard page, names the coroutine in the log file and on stderr, then
 * chains to the handler installed before it (the log's crash handler) or the default action.
 * Sanitizer builds leave SIGSEGV to the sanitizer (DESIGN.md "Signals"). */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base_struct/sys.h"
#include "coroutine/sched_impl.h"
#include "log/log.h"

/* ---- async-signal-safe formatting ----------------------------------------------------------- */

typedef struct sbuf {
    char *p;
    size_t len;
    size_t n;
} sbuf_t;

static void put_str(sbuf_t *b, const char *s)
{
    while (*s != '\0' && b->n + 1 < b->len)
        b->p[b->n++] = *s++;
}

static void put_u64(sbuf_t *b, uint64_t v)
{
    char tmp[24];
    size_t i = 0;

    do {
        tmp[i++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (i > 0 && b->n + 1 < b->len)
        b->p[b->n++] = tmp[--i];
}

static void put_hex(sbuf_t *b, uint64_t v)
{
    char tmp[16];
    size_t i = 0;

    do {
        tmp[i++] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v != 0);
    put_str(b, "0x");
    while (i > 0 && b->n + 1 < b->len)
        b->p[b->n++] = tmp[--i];
}

size_t coho__overflow_format(char *buf, size_t len, const coho__co_t *co)
{
    sbuf_t b = {buf, len, 0};

    if (len == 0)
        return 0;
    put_str(&b, "coroutine ");
    put_u64(&b, co->id);
    put_str(&b, " (");
    put_str(&b, co->name[0] != '\0' ? co->name : "unnamed");
    put_str(&b, ", entry ");
    if (co->entry_name != NULL)
        put_str(&b, co->entry_name);
    else
        put_hex(&b, (uint64_t)(uintptr_t)co->fn);
    put_str(&b, ") overflowed its ");
    put_u64(&b, (co->stack_nominal + 1023) / 1024);
    put_str(&b, " KiB stack");
    buf[b.n] = '\0';
    return b.n;
}

#ifndef COHO_SANITIZE_BUILD

static struct sigaction prev_segv;
static pthread_once_t segv_once = PTHREAD_ONCE_INIT;
static int segv_install_err;

static void segv_handler(int signo, siginfo_t *si, void *uc)
{
    const coho__stack_t *st = NULL;
    int saved = errno;

    if (si != NULL && coho__stack_find_guard(si->si_addr, &st)) {
        const coho__co_t *co = coho__co_current();
        char msg[256];
        sbuf_t b = {msg, sizeof(msg), 0};

        /* The faulting flow is the running coroutine of this thread when the guard is its own;
         * anything else (a wild write into another coroutine's guard) is reported by address. */
        if (co != NULL && st != NULL && co->stack.lo == st->lo) {
            b.n = coho__overflow_format(msg, sizeof(msg) - 1, co);
        } else {
            put_str(&b, "a coroutine stack guard page was hit at ");
            put_hex(&b, (uint64_t)(uintptr_t)si->si_addr);
        }
        msg[b.n] = '\0';
        /* The log first: its buffered lines, then the report, so the file reads in order and
         * holds the report even when stderr goes nowhere. stderr gets it in any case. */
        (void)coho__log_crash_write(COHO_LOG_FATAL, __FILE__, __LINE__, msg);
        put_str(&b, "\n");
        (void)coho__sys_write_all(STDERR_FILENO, "coho: ", 6);
        (void)coho__sys_write_all(STDERR_FILENO, msg, b.n);
    }
    errno = saved;

    /* Chain: the previous handler (the log's flush-and-re-raise), or the default action. */
    if ((prev_segv.sa_flags & SA_SIGINFO) && prev_segv.sa_sigaction != NULL) {
        prev_segv.sa_sigaction(signo, si, uc);
        return;
    }
    if (!(prev_segv.sa_flags & SA_SIGINFO) && prev_segv.sa_handler != SIG_DFL &&
        prev_segv.sa_handler != SIG_IGN && prev_segv.sa_handler != NULL) {
        prev_segv.sa_handler(signo);
        return;
    }
    /* Returning re-executes the faulting access, which now takes the default action (core). */
    {
        struct sigaction dfl;

        memset(&dfl, 0, sizeof(dfl));
        dfl.sa_handler = SIG_DFL;
        sigemptyset(&dfl.sa_mask);
        sigaction(SIGSEGV, &dfl, NULL);
    }
}

static void segv_install(void)
{
    struct sigaction sa;

    /* The log's crash handler goes in first, so the one recorded as previous here (and called
     * after the report) is the log's flush (DESIGN.md "Signals"). */
    coho__log_crash_install();
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = segv_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, &prev_segv) != 0)
        segv_install_err = -errno;
}

int coho__overflow_install(struct coho_sched *s)
{
    stack_t cur;
    stack_t ss;
    long min;
    size_t size;
    void *p;

    pthread_once(&segv_once, segv_install);
    if (segv_install_err < 0)
        return segv_install_err;
    if (sigaltstack(NULL, &cur) != 0)
        return -errno;
    if (!(cur.ss_flags & SS_DISABLE))
        return 0; /* the thread already has one (its owner keeps it) */
    min = sysconf(_SC_SIGSTKSZ);
    size = 64 * 1024;
    if (min > 0 && (size_t)min * 4 > size)
        size = (size_t)min * 4;
    p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1,
             0);
    if (p == MAP_FAILED)
        return -ENOMEM;
    memset(&ss, 0, sizeof(ss));
    ss.ss_sp = p;
    ss.ss_size = size;
    if (sigaltstack(&ss, NULL) != 0) {
        int err = -errno;

        munmap(p, size);
        return err;
    }
    s->altstack = p;
    s->altstack_size = size;
    return 0;
}

void coho__overflow_uninstall(struct coho_sched *s)
{
    stack_t cur;

    if (s->altstack == NULL)
        return;
    if (sigaltstack(NULL, &cur) == 0 && cur.ss_sp == s->altstack && !(cur.ss_flags & SS_ONSTACK)) {
        stack_t off;

        memset(&off, 0, sizeof(off));
        off.ss_flags = SS_DISABLE;
        if (sigaltstack(&off, NULL) == 0)
            munmap(s->altstack, s->altstack_size);
    }
    s->altstack = NULL;
}

#else /* COHO_SANITIZE_BUILD */

int coho__overflow_install(struct coho_sched *s)
{
    (void)s;
    return 0;
}

void coho__overflow_uninstall(struct coho_sched *s)
{
    (void)s;
}

#endif
