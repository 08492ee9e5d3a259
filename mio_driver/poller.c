/* SPDX-License-Identifier: MIT */
/* Choosing the poller backend: coho__driver_opts_t.backend, else $COHO_BACKEND, else io_uring
 * (the faster one here: mio_driver/README.md, "Backends"). An io_uring ring the kernel refuses
 * (ENOSYS on old kernels, EPERM under seccomp or kernel.io_uring_disabled, ENOMEM under
 * RLIMIT_MEMLOCK, ...) means epoll, said once per process at info level. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "base_struct/sys.h"
#include "coho/log.h"
#include "mio_driver/internal.h"

static atomic_bool fallback_logged, bad_env_logged;

static int backend_from_env(void)
{
    const char *e = getenv("COHO_BACKEND");

    if (e == NULL || *e == '\0' || strcmp(e, "io_uring") == 0 || strcmp(e, "uring") == 0)
        return COHO__BACKEND_IO_URING;
    if (strcmp(e, "epoll") == 0)
        return COHO__BACKEND_EPOLL;
    if (!atomic_exchange(&bad_env_logged, true))
        coho_log_warn("mio_driver: COHO_BACKEND=%s is neither epoll nor io_uring; using io_uring",
                      e);
    return COHO__BACKEND_IO_URING;
}

int coho__poller_init(coho__driver_t *d)
{
    int want = d->opts.backend;

    if (want != COHO__BACKEND_EPOLL && want != COHO__BACKEND_IO_URING)
        want = backend_from_env();
    if (want == COHO__BACKEND_IO_URING) {
        int rc = coho__uring_init(d);

        if (rc == 0) {
            d->backend = COHO__BACKEND_IO_URING;
            return 0;
        }
        if (!atomic_exchange(&fallback_logged, true))
            coho_log_info("mio_driver: io_uring unavailable (%s); using epoll", strerror(-rc));
    }
    d->backend = COHO__BACKEND_EPOLL;
    return coho__epoll_init(d);
}

void coho__poller_close(coho__driver_t *d)
{
    if (d->backend == COHO__BACKEND_IO_URING)
        coho__uring_close(d);
    else
        coho__epoll_close(d);
}

int coho__poller_fork_child(coho__driver_t *d)
{
    if (d->backend == COHO__BACKEND_IO_URING) {
        if (coho__uring_fork_child(d) == 0)
            return 0;
        d->backend = COHO__BACKEND_EPOLL; /* no ring for the child: epoll from now on */
        return coho__epoll_init(d);
    }
    int old = d->epfd;

    d->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (old >= 0)
        coho__sys_base.close(old);
    return d->epfd < 0 ? -errno : 0;
}
