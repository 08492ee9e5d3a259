/* SPDX-License-Identifier: MIT */
/* The coho__sys table: real libc functions resolved once with dlsym(RTLD_NEXT, ...). This is the
 * only file in coho that looks up libc symbols (DESIGN.md "Layers"). */
#include "base_struct/sys.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

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

static void *sys_lookup(const char *name)
{
    void *p = dlsym(RTLD_NEXT, name);

    if (p == NULL)
        sys_die(name);
    return p;
}

/* The cast through void * is how POSIX says dlsym results become function pointers. */
#define SYS_RESOLVE(field, name) (*(void **)(&coho__sys.field) = sys_lookup(name))

static void sys_resolve(void)
{
    SYS_RESOLVE(socket, "socket");
    SYS_RESOLVE(socketpair, "socketpair");
    SYS_RESOLVE(accept, "accept");
    SYS_RESOLVE(accept4, "accept4");
    SYS_RESOLVE(connect, "connect");
    SYS_RESOLVE(read, "read");
    SYS_RESOLVE(write, "write");
    SYS_RESOLVE(readv, "readv");
    SYS_RESOLVE(writev, "writev");
    SYS_RESOLVE(recv, "recv");
    SYS_RESOLVE(recvfrom, "recvfrom");
    SYS_RESOLVE(recvmsg, "recvmsg");
    SYS_RESOLVE(send, "send");
    SYS_RESOLVE(sendto, "sendto");
    SYS_RESOLVE(sendmsg, "sendmsg");
    SYS_RESOLVE(close, "close");
    SYS_RESOLVE(close_range, "close_range");
    SYS_RESOLVE(closefrom, "closefrom");
    SYS_RESOLVE(fclose, "fclose");
    SYS_RESOLVE(shutdown, "shutdown");
    SYS_RESOLVE(dup, "dup");
    SYS_RESOLVE(dup2, "dup2");
    SYS_RESOLVE(dup3, "dup3");
    SYS_RESOLVE(fcntl, "fcntl");
    SYS_RESOLVE(fcntl64, "fcntl64");
    SYS_RESOLVE(ioctl, "ioctl");
    SYS_RESOLVE(setsockopt, "setsockopt");
    SYS_RESOLVE(getsockopt, "getsockopt");
    SYS_RESOLVE(poll, "poll");
    SYS_RESOLVE(ppoll, "ppoll");
    SYS_RESOLVE(select, "select");
    SYS_RESOLVE(epoll_wait, "epoll_wait");
    SYS_RESOLVE(epoll_pwait, "epoll_pwait");
    SYS_RESOLVE(sleep, "sleep");
    SYS_RESOLVE(usleep, "usleep");
    SYS_RESOLVE(nanosleep, "nanosleep");
    SYS_RESOLVE(getaddrinfo, "getaddrinfo");
    SYS_RESOLVE(getnameinfo, "getnameinfo");
    SYS_RESOLVE(gethostbyname, "gethostbyname");
    SYS_RESOLVE(gethostbyname_r, "gethostbyname_r");
    SYS_RESOLVE(gethostbyname2, "gethostbyname2");
    SYS_RESOLVE(gethostbyname2_r, "gethostbyname2_r");
    SYS_RESOLVE(read_chk, "__read_chk");
    SYS_RESOLVE(recv_chk, "__recv_chk");
    SYS_RESOLVE(recvfrom_chk, "__recvfrom_chk");
    SYS_RESOLVE(poll_chk, "__poll_chk");
    SYS_RESOLVE(ppoll_chk, "__ppoll_chk");
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

/* Priority 101 runs before constructors of default priority in this object, so the rest of
 * coho's own start-up code finds the table ready. */
__attribute__((constructor(101))) static void sys_constructor(void)
{
    coho__sys_init();
}
