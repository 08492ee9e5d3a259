/* SPDX-License-Identifier: MIT */
/* Shared by the net/ benchmark programs: the clock and the stamped frame layout.
 *
 * Every frame is a 4-byte little-endian payload length and the payload (coho_server's default
 * framing). A stamped frame (broadcasts, chat, ticks) carries in its payload:
 *
 *   offset 4  'S'
 *   offset 8  send time, CLOCK_MONOTONIC ns, little-endian u64 (the client and the server run
 *             on the same machine, so a receiver subtracts it from its own clock)
 *   offset 16 sequence number, u32
 */
#ifndef COHO_BENCH_NET_COMMON_H
#define COHO_BENCH_NET_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#define NB_STAMP_MIN   24u /* bytes of a stamped frame at least */
#define NB_BCAST_FRAME 64u /* the broadcast benchmark's frame, header included */

static inline uint64_t nb_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void nb_put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static inline uint32_t nb_get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Fills `buf` (`len` >= NB_STAMP_MIN bytes, header included) as a stamped frame. */
static inline void nb_put_stamp(unsigned char *buf, size_t len, uint64_t t_ns, uint32_t seq)
{
    memset(buf, 'x', len);
    nb_put_u32(buf, (uint32_t)(len - 4));
    buf[4] = 'S';
    nb_put_u32(buf + 8, (uint32_t)t_ns);
    nb_put_u32(buf + 12, (uint32_t)(t_ns >> 32));
    nb_put_u32(buf + 16, seq);
}

/* The send time of a stamped frame whose first 20 bytes are `head`; 0 when it is not one. */
static inline uint64_t nb_get_stamp(const unsigned char *head)
{
    if (head[4] != 'S')
        return 0;
    return (uint64_t)nb_get_u32(head + 8) | (uint64_t)nb_get_u32(head + 12) << 32;
}

#endif /* COHO_BENCH_NET_COMMON_H */
