/* SPDX-License-Identifier: MIT */
/* coho: the umbrella C API. This is the only header a user needs.
 *
 * Conventions: functions return 0 on success and -1 with errno set on failure unless noted;
 * pointer results are NULL + errno on failure; ids are uint64_t and 0 means none. */
#ifndef COHO_H
#define COHO_H

/* Each part of the API lives in its own file under include/coho/. socket_ext (coho_tdp_*,
 * coho_sock_*) is part of libcoho_net: include <coho/net.h> and link coho::net (coho-net.pc). */
#include "coho/cbuf.h"
#include "coho/common.h"
#include "coho/hook.h"
#include "coho/idpool.h"
#include "coho/list.h"
#include "coho/log.h"
#include "coho/sched.h"
#include "coho/sync.h"
#include "coho/version.h"

#endif /* COHO_H */
