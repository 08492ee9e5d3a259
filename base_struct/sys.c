/* SPDX-License-Identifier: MIT */
/* The real-libc tables (base_struct/sys.h, base_struct/sys_net.h), resolved once with
 * dlsym(RTLD_NEXT, ...). This is the only file in coho that looks up libc symbols (DESIGN.md
 * "Layers"). */
#include "base_struct/sys.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base_struct/sys_net.h"

coho__sys_base_table_t coho__sys_base;
coho__sys_table_t coho__sys;

static pthread_once_t sys_once = PTHREAD_ONCE_INIT;
static atomic_bool sys_ready;

/* Writes straight through the raw syscall: the table is not usable yet. */
static void sys_die(const char *name)
{
    static const char head[] = "coho: cannot resolve libc function '";
    static const char tail[] = "' with dlsym(RTLD_NEXT); aborting\n";

    syscall(SYS_write, 2, head, sizeof(head) - 1);
    syscall(SYS_write, 2, name, strlen(name));
    syscall(SYS_write, 2, tail, sizeof(tail) - 1);
    abort();
}

/* A missing required function is fatal; a missing optional one is NULL. */
static void *sys_lookup(const char *name, int required)
{
    void *p = dlsym(RTLD_NEXT, name);

    if (p == NULL && required)
        sys_die(name);
    return p;
}

/* The cast through void * is how POSIX says dlsym results become function pointers. */
#define SYS_RESOLVE_BASE(ret, name, params, required) \
    *(void **)(&coho__sys_base.name) = sys_lookup(#name, required);
#define SYS_COPY_BASE(ret, name, params, required) coho__sys.name = coho__sys_base.name;
#define SYS_RESOLVE_NET(ret, name, params, required) \
    *(void **)(&coho__sys.name) = sys_lookup(#name, required);

static void sys_resolve(void)
{
    COHO__SYS_BASE_FUNCS(SYS_RESOLVE_BASE)
    COHO__SYS_BASE_FUNCS(SYS_COPY_BASE)
    COHO__SYS_NET_FUNCS(SYS_RESOLVE_NET)
    atomic_store_explicit(&sys_ready, true, memory_order_release);
}

void coho__sys_init(void)
{
    if (atomic_load_explicit(&sys_ready, memory_order_acquire))
        return;
    pthread_once(&sys_once, sys_resolve);
}

bool coho__sys_is_ready(void)
{
    return atomic_load_explicit(&sys_ready, memory_order_acquire);
}

int coho__sys_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len > 0) {
        ssize_t n = coho__sys_base.write(fd, p, len);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EIO;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Priority 101 runs before constructors of default priority in this object, so the rest of
 * coho's own start-up code finds the tables ready. */
__attribute__((constructor(101))) static void sys_constructor(void)
{
    coho__sys_init();
}
