/* SPDX-License-Identifier: MIT */
/* DNS hooks: getaddrinfo, getnameinfo and the gethostbyname family run on the
 * driver's offload pool while the coroutine parks. Results are computed into a
 * job the hook owns and copied out in the coroutine, so glibc's static buffers
 * are never shared and a coroutine cancelled while parked simply abandons its
 * job (the completion frees it). A full offload queue fails at once with
 * EAI_AGAIN / TRY_AGAIN instead of blocking the thread, and so does, in a forked
 * child, a lookup that was running in the parent's worker at the fork. */
#define _GNU_SOURCE /* IOV_MAX, POLLRDHUP, SOCK_NONBLOCK, F_DUPFD_CLOEXEC */
#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>

#include "base_struct/sys_net.h"
#include "syscall_hook/internal.h"

enum dns_kind { DNS_GAI, DNS_GNI, DNS_GHBN };

struct dns_job {
    enum dns_kind kind;
    uint64_t co_id;
    uint64_t token;
    bool abandoned; /* the coroutine stopped waiting; the completion frees the job
                     */
    /* getaddrinfo */
    char *node, *service;
    struct addrinfo hints;
    bool has_hints;
    struct addrinfo *res;
    int gai_rc;
    /* getnameinfo */
    struct sockaddr_storage sa;
    socklen_t salen;
    char *host, *serv;
    socklen_t hostlen, servlen;
    int flags;
    /* gethostbyname2_r */
    char *name;
    int af;
    struct hostent he;
    struct hostent *he_res;
    char *buf;
    size_t buflen;
    int herr;
    int rc;
};

static void dns_job_free(struct dns_job *j)
{
    if (j->res != NULL)
        freeaddrinfo(j->res);
    free(j->node);
    free(j->service);
    free(j->host);
    free(j->serv);
    free(j->name);
    free(j->buf);
    free(j);
}

/* Worker thread: the real lookup, reentrant variants only. */
static void dns_work(void *arg)
{
    struct dns_job *j = arg;

    switch (j->kind) {
    case DNS_GAI:
        j->gai_rc =
            coho__sys.getaddrinfo(j->node, j->service, j->has_hints ? &j->hints : NULL, &j->res);
        j->rc = errno;
        break;
    case DNS_GNI:
        j->gai_rc = coho__sys.getnameinfo((struct sockaddr *)&j->sa, j->salen, j->host, j->hostlen,
                                          j->serv, j->servlen, j->flags);
        j->rc = errno;
        break;
    case DNS_GHBN:
        for (;;) {
            j->rc = coho__sys.gethostbyname2_r(j->name, j->af, &j->he, j->buf, j->buflen,
                                               &j->he_res, &j->herr);
            if (j->rc != ERANGE || j->buflen >= (1u << 20))
                break;
            free(j->buf);
            j->buflen *= 2;
            j->buf = malloc(j->buflen);
            if (j->buf == NULL) {
                j->rc = ENOMEM;
                j->he_res = NULL;
                j->herr = NETDB_INTERNAL;
                break;
            }
        }
        break;
    }
}

/* What coho__co_wake hands the parked coroutine. */
enum { DNS_DONE = 1, DNS_LOST = 2 };

/* Driver thread: wake the coroutine, or clean up after one that left. */
static void dns_done(void *arg)
{
    struct dns_job *j = arg;

    if (j->abandoned) {
        dns_job_free(j);
        return;
    }
    coho__co_wake(j->co_id, j->token, DNS_DONE);
}

/* Driver thread of a forked child, for a lookup that was running in the parent's worker: it
 * never ends here. What it wrote is partial, so the result list is dropped unread (one that
 * glibc finished just before the fork leaks in the child rather than risk freeing half of
 * one); the lookup fails as if the offload queue were full. */
static void dns_lost(void *arg)
{
    struct dns_job *j = arg;

    j->res = NULL;
    if (j->abandoned) {
        dns_job_free(j);
        return;
    }
    coho__co_wake(j->co_id, j->token, DNS_LOST);
}

/* Runs `j` on the offload pool and parks until it is done. Returns 0, -EAGAIN
 * (queue full, or the lookup was lost to a fork), -ECANCELED (the job is then
 * abandoned: not to be touched), -ENOMEM. */
static int dns_run(struct dns_job *j)
{
    coho__driver_t *d = coho__sched_driver(coho__sched_current());
    int rc;

    j->co_id = coho__co_self_id();
    j->token = coho__co_block_prepare();
    coho__co_wait_note("dns", -1);
    rc = coho__driver_offload_ex(d, dns_work, dns_done, dns_lost, j);
    if (rc != 0)
        return rc;
    rc = coho__hook_block(-1);
    if (rc == DNS_DONE)
        return 0;
    if (rc == DNS_LOST)
        return -EAGAIN;
    j->abandoned = true;
    return rc < 0 ? rc : -EIO;
}

static char *dup_or_null(const char *s, bool *oom)
{
    char *d;

    if (s == NULL)
        return NULL;
    d = strdup(s);
    if (d == NULL)
        *oom = true;
    return d;
}

COHO_HOOK int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                          struct addrinfo **res)
{
    struct dns_job *j;
    bool oom = false;
    int rc;

    coho__sys_init();
    if (!coho__hook_active() || res == NULL)
        return coho__sys.getaddrinfo(node, service, hints, res);
    j = calloc(1, sizeof(*j));
    if (j == NULL)
        return EAI_MEMORY;
    j->kind = DNS_GAI;
    j->node = dup_or_null(node, &oom);
    j->service = dup_or_null(service, &oom);
    if (hints != NULL) {
        j->hints = *hints;
        j->hints.ai_addr = NULL;
        j->hints.ai_canonname = NULL;
        j->hints.ai_next = NULL;
        j->has_hints = true;
    }
    if (oom) {
        dns_job_free(j);
        return EAI_MEMORY;
    }
    rc = dns_run(j);
    if (rc != 0) {
        if (rc != -ECANCELED)
            dns_job_free(j);
        if (rc == -EAGAIN)
            return EAI_AGAIN;
        errno = -rc;
        return EAI_SYSTEM;
    }
    rc = j->gai_rc;
    *res = j->res;
    j->res = NULL;
    if (rc == EAI_SYSTEM)
        errno = j->rc;
    dns_job_free(j);
    return rc;
}

COHO_HOOK int getnameinfo(const struct sockaddr *sa, socklen_t salen, char *host, socklen_t hostlen,
                          char *serv, socklen_t servlen, int flags)
{
    struct dns_job *j;
    int rc;

    coho__sys_init();
    if (!coho__hook_active() || sa == NULL || salen > sizeof(struct sockaddr_storage))
        return coho__sys.getnameinfo(sa, salen, host, hostlen, serv, servlen, flags);
    j = calloc(1, sizeof(*j));
    if (j == NULL)
        return EAI_MEMORY;
    j->kind = DNS_GNI;
    memcpy(&j->sa, sa, salen);
    j->salen = salen;
    j->flags = flags;
    if (host != NULL && hostlen > 0) {
        j->host = malloc(hostlen);
        j->hostlen = hostlen;
    }
    if (serv != NULL && servlen > 0) {
        j->serv = malloc(servlen);
        j->servlen = servlen;
    }
    if ((host != NULL && hostlen > 0 && j->host == NULL) ||
        (serv != NULL && servlen > 0 && j->serv == NULL)) {
        dns_job_free(j);
        return EAI_MEMORY;
    }
    rc = dns_run(j);
    if (rc != 0) {
        if (rc != -ECANCELED)
            dns_job_free(j);
        if (rc == -EAGAIN)
            return EAI_AGAIN;
        errno = -rc;
        return EAI_SYSTEM;
    }
    rc = j->gai_rc;
    if (rc == 0) {
        if (j->host != NULL)
            memcpy(host, j->host, hostlen);
        if (j->serv != NULL)
            memcpy(serv, j->serv, servlen);
    } else if (rc == EAI_SYSTEM) {
        errno = j->rc;
    }
    dns_job_free(j);
    return rc;
}

/* Deep-copies `src` into `dst`, laying its strings and arrays out in `buf`.
 * Returns 0 or -ERANGE when `buf` is too small. */
static int hostent_copy(struct hostent *dst, char *buf, size_t buflen, const struct hostent *src)
{
    size_t naliases = 0, naddrs = 0, need, off, i, len;
    char **aliases, **addrs;

    while (src->h_aliases != NULL && src->h_aliases[naliases] != NULL)
        naliases++;
    while (src->h_addr_list != NULL && src->h_addr_list[naddrs] != NULL)
        naddrs++;
    need = (naliases + 1 + naddrs + 1) * sizeof(char *) + naddrs * (size_t)src->h_length +
           strlen(src->h_name) + 1 + sizeof(char *);
    for (i = 0; i < naliases; i++)
        need += strlen(src->h_aliases[i]) + 1;
    if (need > buflen)
        return -ERANGE;
    off = (sizeof(char *) - ((uintptr_t)buf % sizeof(char *))) % sizeof(char *);
    aliases = (char **)(buf + off);
    addrs = aliases + naliases + 1;
    off += (naliases + 1 + naddrs + 1) * sizeof(char *);
    for (i = 0; i < naddrs; i++) {
        addrs[i] = buf + off;
        memcpy(addrs[i], src->h_addr_list[i], (size_t)src->h_length);
        off += (size_t)src->h_length;
    }
    addrs[naddrs] = NULL;
    for (i = 0; i < naliases; i++) {
        len = strlen(src->h_aliases[i]) + 1;
        aliases[i] = buf + off;
        memcpy(aliases[i], src->h_aliases[i], len);
        off += len;
    }
    aliases[naliases] = NULL;
    len = strlen(src->h_name) + 1;
    dst->h_name = buf + off;
    memcpy(dst->h_name, src->h_name, len);
    dst->h_aliases = aliases;
    dst->h_addr_list = addrs;
    dst->h_addrtype = src->h_addrtype;
    dst->h_length = src->h_length;
    return 0;
}

/* Runs gethostbyname2_r off-thread into a job. Returns the job (done) or NULL
 * with *rc set to -EAGAIN/-ECANCELED/-ENOMEM. */
static struct dns_job *ghbn_job(const char *name, int af, int *rc)
{
    struct dns_job *j = calloc(1, sizeof(*j));

    if (j == NULL || (j->name = strdup(name)) == NULL || (j->buf = malloc(1024)) == NULL) {
        if (j != NULL)
            dns_job_free(j);
        *rc = -ENOMEM;
        return NULL;
    }
    j->kind = DNS_GHBN;
    j->af = af;
    j->buflen = 1024;
    *rc = dns_run(j);
    if (*rc != 0) {
        if (*rc != -ECANCELED)
            dns_job_free(j);
        return NULL;
    }
    return j;
}

/* Per-thread result of gethostbyname/gethostbyname2 in coroutines, as libc's is
 * static: valid until the next such call on the same thread. */
static __thread struct hostent ghbn_he;
static __thread char *ghbn_buf;
static __thread size_t ghbn_buflen;

static struct hostent *ghbn_static(const char *name, int af)
{
    struct dns_job *j;
    int rc;

    j = ghbn_job(name, af, &rc);
    if (j == NULL) {
        h_errno = rc == -EAGAIN ? TRY_AGAIN : NETDB_INTERNAL;
        errno = -rc;
        return NULL;
    }
    if (j->he_res == NULL) {
        h_errno = j->herr;
        dns_job_free(j);
        return NULL;
    }
    if (ghbn_buflen < j->buflen) {
        char *nb = realloc(ghbn_buf, j->buflen);

        if (nb == NULL) {
            dns_job_free(j);
            h_errno = NETDB_INTERNAL;
            errno = ENOMEM;
            return NULL;
        }
        ghbn_buf = nb;
        ghbn_buflen = j->buflen;
    }
    rc = hostent_copy(&ghbn_he, ghbn_buf, ghbn_buflen, j->he_res);
    dns_job_free(j);
    if (rc != 0) {
        h_errno = NETDB_INTERNAL;
        errno = ERANGE;
        return NULL;
    }
    return &ghbn_he;
}

COHO_HOOK struct hostent *gethostbyname(const char *name)
{
    coho__sys_init();
    if (!coho__hook_active() || name == NULL)
        return coho__sys.gethostbyname(name);
    return ghbn_static(name, AF_INET);
}

COHO_HOOK struct hostent *gethostbyname2(const char *name, int af)
{
    coho__sys_init();
    if (!coho__hook_active() || name == NULL)
        return coho__sys.gethostbyname2(name, af);
    return ghbn_static(name, af);
}

static int ghbn_r(const char *name, int af, struct hostent *ret, char *buf, size_t buflen,
                  struct hostent **result, int *h_errnop)
{
    struct dns_job *j;
    int rc;

    *result = NULL;
    j = ghbn_job(name, af, &rc);
    if (j == NULL) {
        *h_errnop = rc == -EAGAIN ? TRY_AGAIN : NETDB_INTERNAL;
        return -rc;
    }
    if (j->he_res == NULL) {
        *h_errnop = j->herr;
        rc = j->rc;
        dns_job_free(j);
        return rc;
    }
    rc = hostent_copy(ret, buf, buflen, j->he_res);
    dns_job_free(j);
    if (rc != 0) {
        *h_errnop = NETDB_INTERNAL;
        return ERANGE;
    }
    *result = ret;
    return 0;
}

COHO_HOOK int gethostbyname_r(const char *name, struct hostent *ret, char *buf, size_t buflen,
                              struct hostent **result, int *h_errnop)
{
    coho__sys_init();
    if (!coho__hook_active() || name == NULL || ret == NULL || buf == NULL || result == NULL ||
        h_errnop == NULL)
        return coho__sys.gethostbyname_r(name, ret, buf, buflen, result, h_errnop);
    return ghbn_r(name, AF_INET, ret, buf, buflen, result, h_errnop);
}

COHO_HOOK int gethostbyname2_r(const char *name, int af, struct hostent *ret, char *buf,
                               size_t buflen, struct hostent **result, int *h_errnop)
{
    coho__sys_init();
    if (!coho__hook_active() || name == NULL || ret == NULL || buf == NULL || result == NULL ||
        h_errnop == NULL)
        return coho__sys.gethostbyname2_r(name, af, ret, buf, buflen, result, h_errnop);
    return ghbn_r(name, af, ret, buf, buflen, result, h_errnop);
}
