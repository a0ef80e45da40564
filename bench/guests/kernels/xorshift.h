/*
 * xorshift.h - Marsaglia's xorshift64 (Journal of Statistical Software 8(14), 2003), the pseudo-random but fixed
 * input of the benchmark kernels: the suite's bench.h (bench_random) and bench/guests/compute.c include it.
 */
#ifndef BENCH_KERNELS_XORSHIFT_H
#define BENCH_KERNELS_XORSHIFT_H

#include <stdint.h>

static inline uint64_t xorshift64(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    return x;
}

#endif
