/* SPDX-License-Identifier: MIT */
/* The log's fatal-signal handlers: write every buffered line, then hand the signal on to the
 * handler installed before (or re-raise it with the default action, so a core dump happens).
 * Chain order (DESIGN.md "Signals"): the coroutine layer's stack-overflow handler, then this
 * one, then whatever was there before. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>

#include "log/log.h"

/* Sanitizer builds leave SIGSEGV to the sanitizer, which reports the fault itself. */
static const int crash_signals[] = {
#ifndef COHO_SANITIZE_BUILD
    SIGSEGV,
#endif
    SIGBUS,  SIGABRT, SIGFPE, SIGILL,
};
#define CRASH_N (sizeof(crash_signals) / sizeof(crash_signals[0]))

static struct sigaction crash_prev[CRASH_N];
static pthread_once_t crash_once = PTHREAD_ONCE_INIT;

static void crash_handler(int sig, siginfo_t *info, void *uctx)
{
    int saved_errno = errno;
    struct sigaction prev;
    size_t i;

    coho__log_crash_flush();
    for (i = 0; i < CRASH_N && crash_signals[i] != sig; i++)
        ;
    if (i == CRASH_N) { /* not ours: cannot happen, but never return into a fault loop */
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    prev = crash_prev[i];
    /* Restore first: if the previous handler returns into the faulting instruction, the
     * repeated fault goes straight to it (or to the default action), not back here. */
    sigaction(sig, &prev, NULL);
    if (prev.sa_handler != SIG_DFL && prev.sa_handler != SIG_IGN) {
        if (prev.sa_flags & SA_SIGINFO)
            prev.sa_sigaction(sig, info, uctx);
        else
            prev.sa_handler(sig);
        errno = saved_errno;
        return;
    }
    /* Default action (an ignored fatal signal would loop on a fault, so it gets the default
     * action too). The signal is blocked while this handler runs, so the raised one stays
     * pending and kills the process as the handler returns, before the faulting instruction
     * could run again. */
    signal(sig, SIG_DFL);
    raise(sig);
    errno = saved_errno;
}

static void crash_install(void)
{
    struct sigaction sa = {0};
    size_t i;

    sa.sa_sigaction = crash_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK; /* the thread's alternate stack, if it has one */
    sigemptyset(&sa.sa_mask);
    for (i = 0; i < CRASH_N; i++)
        sigaddset(&sa.sa_mask, crash_signals[i]);
    for (i = 0; i < CRASH_N; i++)
        sigaction(crash_signals[i], &sa, &crash_prev[i]);
}

void coho__log_crash_install(void)
{
    pthread_once(&crash_once, crash_install);
}
