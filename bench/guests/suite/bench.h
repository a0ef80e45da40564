/*
 * bench.h - what every kernel of the emulator benchmark suite (bench/emulator-suite.sh) shares.
 *
 * A kernel is one C file that defines
 *     const struct bench_kernel bench_kernel = { "name", DEFAULT_SCALE };
 *     uint64_t bench_run(uint32_t scale);      returns the checksum of the work it did
 * and is linked with runtime.c into ONE static ELF that runs unchanged in three places: natively on Linux, under
 * qemu-x86_64, and as a Paravirt guest (`paravirt run KERNEL.elf --cmdline SCALE`); see runtime.c. It prints one
 * line, "NAME scale=N checksum=HEX", or "NAME FAIL reason" (and exit status 1) when a self-check fails.
 */
#ifndef BENCH_H
#define BENCH_H

#include <stddef.h>
#include <stdint.h>

#include "../kernels/xorshift.h"

struct bench_kernel {
    const char *name;
    uint32_t default_scale; /* the scale a full benchmark run uses (what one unit is: the kernel's comment) */
};

extern const struct bench_kernel bench_kernel;
uint64_t bench_run(uint32_t scale);

/* Ends the run with "NAME FAIL why" and exit status 1 (a self-check against a known answer failed). */
__attribute__((noreturn)) void bench_fail(const char *why);

void *memcpy(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);

/* The inputs are pseudo-random but fixed: xorshift64 (../kernels/xorshift.h). */
static inline uint64_t bench_random(uint64_t *state)
{
    return xorshift64(state);
}

/* Folds a value into a running checksum (a multiply-xorshift mix, so order and every bit matter). */
static inline uint64_t bench_mix(uint64_t h, uint64_t v)
{
    h ^= v;
    h *= 0x9E3779B97F4A7C15ull;
    return h ^ (h >> 29);
}

static inline uint64_t bench_bits(double d)
{
    uint64_t u;
    __builtin_memcpy(&u, &d, sizeof u);
    return u;
}

static inline void bench_fill(uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t s = seed | 1, v = 0;
    for (size_t i = 0; i < n; i++) {
        if ((i & 7) == 0)
            v = bench_random(&s);
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

#endif
