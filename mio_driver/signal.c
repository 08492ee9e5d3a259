/* SPDX-License-Identifier: MIT */
/* Signals through one signalfd per driver: a watched signal is blocked in the thread that asks
 * for it and read from the signalfd on the loop, so its callback runs as ordinary loop code
 * (no async-signal-safety rules apply inside it). */
#include <errno.h>
#include <string.h>
#include <sys/signalfd.h>

#include "base_struct/sys.h"
#include "mio_driver/internal.h"

static void signal_ready(coho__io_t *io, unsigned events)
{
    coho__driver_t *d = io->data;
    struct signalfd_siginfo si[8];
    ssize_t n;

    (void)events;
    d->ncb--; /* the signalfd itself is not a user callback */
    while ((n = coho__sys_base.read(d->sigfd, si, sizeof(si))) > 0) {
        for (size_t i = 0; i < (size_t)n / sizeof(si[0]); i++) {
            int signo = (int)si[i].ssi_signo;

            if (signo > 0 && signo < _NSIG && d->sigs[signo].cb != NULL) {
                d->ncb++;
                d->sigs[signo].cb(signo, d->sigs[signo].arg);
            }
        }
    }
}

void coho__signal_init(coho__driver_t *d)
{
    d->sigfd = -1;
    sigemptyset(&d->sigmask);
    memset(d->sigs, 0, sizeof(d->sigs));
}

int coho__driver_signal_start(coho__driver_t *d, int signo, void (*cb)(int signo, void *arg),
                              void *arg)
{
    sigset_t one, mask;
    int rc, fd;

    if (signo <= 0 || signo >= _NSIG || signo == SIGKILL || signo == SIGSTOP || cb == NULL ||
        d->sigs[signo].cb != NULL)
        return -EINVAL;
    mask = d->sigmask;
    if (sigaddset(&mask, signo) < 0)
        return -EINVAL;
    sigemptyset(&one);
    sigaddset(&one, signo);
    if ((rc = pthread_sigmask(SIG_BLOCK, &one, NULL)) != 0)
        return -rc;
    fd = signalfd(d->sigfd, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (d->sigfd < 0) {
        d->sigfd = fd;
        if ((rc = coho__driver_io_internal(d, &d->sig_io, fd, signal_ready)) < 0) {
            coho__sys_base.close(fd);
            d->sigfd = -1;
            return rc;
        }
    }
    d->sigmask = mask;
    d->sigs[signo].cb = cb;
    d->sigs[signo].arg = arg;
    return 0;
}

int coho__driver_signal_stop(coho__driver_t *d, int signo)
{
    sigset_t one;

    if (signo <= 0 || signo >= _NSIG || d->sigs[signo].cb == NULL)
        return -EINVAL;
    sigdelset(&d->sigmask, signo);
    if (signalfd(d->sigfd, &d->sigmask, SFD_NONBLOCK | SFD_CLOEXEC) < 0)
        return -errno;
    d->sigs[signo].cb = NULL;
    d->sigs[signo].arg = NULL;
    sigemptyset(&one);
    sigaddset(&one, signo);
    pthread_sigmask(SIG_UNBLOCK, &one, NULL);
    return 0;
}

void coho__signal_destroy(coho__driver_t *d)
{
    if (d->sigfd < 0)
        return;
    coho__io_stop(d, &d->sig_io);
    coho__sys_base.close(d->sigfd);
    d->sigfd = -1;
}

void coho__signal_fork_child(coho__driver_t *d)
{
    int fd;

    if (d->sigfd < 0)
        return;
    fd = signalfd(-1, &d->sigmask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0)
        return;
    coho__sys_base.close(d->sigfd);
    d->sigfd = fd;
    coho__driver_io_refd(d, &d->sig_io, fd);
}
