/* SPDX-License-Identifier: MIT */
/* The process-wide id sequence (contract in id.h). A relaxed fetch-add is enough: ids only
 * need to be distinct, not ordered across threads. The seed is a splitmix64 mix of both clocks
 * and the pid; an atfork handler reseeds the child, which would otherwise repeat the parent's
 * ids from the fork on. */
#include "base_struct/id.h"

#include <pthread.h>
#include <time.h>
#include <unistd.h>

static uint64_t id_counter;
static uint64_t id_start;
static pthread_once_t id_once = PTHREAD_ONCE_INIT;

static uint64_t mix64(uint64_t z)
{
    z += UINT64_C(0x9e3779b97f4a7c15);
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static void id_reseed(void)
{
    struct timespec rt = {0, 0}, mono = {0, 0};
    uint64_t seed;

    clock_gettime(CLOCK_REALTIME, &rt);
    clock_gettime(CLOCK_MONOTONIC, &mono);
    seed = mix64((uint64_t)rt.tv_sec * 1000000000u + (uint64_t)rt.tv_nsec);
    seed = mix64(seed ^ ((uint64_t)mono.tv_sec * 1000000000u + (uint64_t)mono.tv_nsec));
    seed = mix64(seed ^ (uint64_t)getpid());
    __atomic_store_n(&id_start, seed, __ATOMIC_RELAXED);
    __atomic_store_n(&id_counter, seed, __ATOMIC_RELAXED);
}

static void id_init(void)
{
    id_reseed();
    pthread_atfork(NULL, NULL, id_reseed);
}

uint64_t coho__id_next(void)
{
    uint64_t id;

    pthread_once(&id_once, id_init);
    do {
        id = __atomic_fetch_add(&id_counter, 1, __ATOMIC_RELAXED);
    } while (id == 0);
    return id;
}

uint64_t coho__id_seed(void)
{
    pthread_once(&id_once, id_init);
    return __atomic_load_n(&id_start, __ATOMIC_RELAXED);
}

void coho__id_test_set_next(uint64_t next)
{
    pthread_once(&id_once, id_init);
    __atomic_store_n(&id_counter, next, __ATOMIC_RELAXED);
}
