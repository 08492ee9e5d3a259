/* SPDX-License-Identifier: MIT */
/* CIDR allow/deny lists. IPv4 addresses are kept in their IPv4-mapped IPv6 form, so one
 * comparison serves both families and an IPv4 peer on a dual-stack socket matches "10.0.0.0/8". */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/internal.h"

static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

bool coho__addr16(const struct sockaddr *sa, unsigned char out[16])
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        memcpy(out, v4mapped, 12);
        memcpy(out + 12, &in->sin_addr, 4);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        memcpy(out, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        return true;
    }
    return false;
}

int coho__cidr_parse(const char *s, coho__cidr_t *out)
{
    char buf[INET6_ADDRSTRLEN + 8];
    const char *slash;
    size_t alen;
    unsigned max, prefix;
    struct in_addr a4;

    if (s == NULL || out == NULL)
        return -EINVAL;
    slash = strchr(s, '/');
    alen = slash ? (size_t)(slash - s) : strlen(s);
    if (alen == 0 || alen >= sizeof(buf))
        return -EINVAL;
    memcpy(buf, s, alen);
    buf[alen] = '\0';
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, buf, &a4) == 1) {
        memcpy(out->addr, v4mapped, 12);
        memcpy(out->addr + 12, &a4, 4);
        max = 32;
    } else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
        max = 128;
    } else {
        return -EINVAL;
    }
    prefix = max;
    if (slash != NULL) {
        char *end;
        unsigned long v;
        if (slash[1] < '0' || slash[1] > '9')
            return -EINVAL;
        v = strtoul(slash + 1, &end, 10);
        if (*end != '\0' || v > max)
            return -EINVAL;
        prefix = (unsigned)v;
    }
    out->prefix = prefix + (128 - max);
    /* Clear the host bits so that "10.1.2.3/8" means 10.0.0.0/8. */
    for (unsigned bit = out->prefix; bit < 128; bit++)
        out->addr[bit / 8] &= (unsigned char)~(0x80u >> (bit % 8));
    return 0;
}

static bool cidr_match(const coho__cidr_t *c, const unsigned char a[16])
{
    unsigned full = c->prefix / 8, rest = c->prefix % 8;

    if (memcmp(c->addr, a, full) != 0)
        return false;
    if (rest == 0)
        return true;
    unsigned char mask = (unsigned char)(0xffu << (8 - rest));
    return (a[full] & mask) == c->addr[full];
}

static int parse_list(const char *const *in, unsigned n, coho__cidr_t **out)
{
    *out = NULL;
    if (n == 0)
        return 0;
    if (in == NULL)
        return -EINVAL;
    *out = calloc(n, sizeof(**out));
    if (*out == NULL)
        return -ENOMEM;
    for (unsigned i = 0; i < n; i++) {
        int rc = coho__cidr_parse(in[i], &(*out)[i]);
        if (rc < 0) {
            free(*out);
            *out = NULL;
            return rc;
        }
    }
    return 0;
}

int coho__acl_make(const char *const *allow, unsigned allow_count, const char *const *deny,
                   unsigned deny_count, coho__acl_t **out)
{
    coho__acl_t *a;
    int rc;

    *out = NULL;
    if (allow_count == 0 && deny_count == 0)
        return 0;
    a = calloc(1, sizeof(*a));
    if (a == NULL)
        return -ENOMEM;
    rc = parse_list(allow, allow_count, &a->allow);
    if (rc < 0)
        goto fail_allow;
    rc = parse_list(deny, deny_count, &a->deny);
    if (rc < 0)
        goto fail_deny;
    a->allow_count = allow_count;
    a->deny_count = deny_count;
    *out = a;
    return 0;

fail_deny:
    free(a->allow);
fail_allow:
    free(a);
    return rc;
}

void coho__acl_destroy(coho__acl_t *a)
{
    if (a == NULL)
        return;
    free(a->allow);
    free(a->deny);
    free(a);
}

bool coho__acl_admits(const coho__acl_t *a, const unsigned char addr16[16])
{
    bool allowed;

    if (a == NULL)
        return true;
    for (unsigned i = 0; i < a->deny_count; i++)
        if (cidr_match(&a->deny[i], addr16))
            return false;
    allowed = a->allow_count == 0;
    for (unsigned i = 0; i < a->allow_count && !allowed; i++)
        allowed = cidr_match(&a->allow[i], addr16);
    return allowed;
}
