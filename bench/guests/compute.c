/*
 * compute.c - the emulator-vs-QEMU benchmark kernel: CRC32 (bitwise and table driven), SHA-256 over a buffer, an
 * integer mix (multiply, divide, shifts, rotates, branches, table lookups) and floating point (an n-body step loop
 * and a Mandelbrot row, SSE2 double). Prints a checksum and returns.
 *
 * Built two ways from this one file by bench/guests/build-compute.sh (and the emulator's CompiledGuestTests):
 *   -DPARAVIRT_GUEST : a freestanding Paravirt guest (flat-guest.h: flat binary at 0x100000, entry _start,
 *                      output through the debug_write hypercall, stop through the exit hypercall);
 *   otherwise        : a static Linux program (main + write), run natively and under qemu-x86_64.
 * The kernel (everything above the entry sections) is the same C code compiled with the same flags; SHA-256, the
 * n-body step, the CRC-32 table and xorshift64 are the suite's (kernels/sha256.h, kernels/nbody.h, kernels/crc32.h,
 * kernels/xorshift.h), the Mandelbrot iteration fpmix.c's (kernels/mandelbrot.h).
 */
#include <stdint.h>
#include <stddef.h>

#include "kernels/crc32.h"
#include "kernels/xorshift.h"

#ifndef ROUNDS
#define ROUNDS 200
#endif
#ifndef BUF_SIZE
#define BUF_SIZE (64 * 1024)
#endif

static uint8_t buf[BUF_SIZE];
static uint32_t crc_table[256];

static void fill(uint64_t seed)
{
    uint64_t s = seed | 1;
    for (size_t i = 0; i < BUF_SIZE; i += 8) {
        uint64_t v = xorshift64(&s);
        for (int k = 0; k < 8; k++)
            buf[i + k] = (uint8_t)(v >> (8 * k));
    }
}

static uint32_t crc32_bitwise(const uint8_t *p, size_t n)
{
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++)
            crc = crc32_bit_step(crc);
    }
    return ~crc;
}

#include "kernels/sha256.h"

/* Integer mix: multiplies, divisions, shifts, rotates, data-dependent branches and a small state machine. */
static uint64_t integer_mix(uint64_t seed, int n)
{
    uint64_t s = seed | 1, acc = 0x9E3779B97F4A7C15ull;
    uint32_t counts[8] = { 0 };
    for (int i = 0; i < n; i++) {
        uint64_t x = xorshift64(&s);
        uint32_t d = (uint32_t)(x >> 40) | 1u;
        acc += (x * 0x2545F4914F6CDD1Dull) ^ (acc >> 29);
        acc ^= (uint64_t)((uint32_t)x / d) + (uint64_t)((uint32_t)x % d);
        acc = (acc << 13) | (acc >> 51);
        switch (x & 7) {
        case 0: acc += x >> 3; break;
        case 1: acc -= x << 5; break;
        case 2: acc ^= (int64_t)x >> 17; break;
        case 3: acc *= 3; break;
        case 4: acc = acc > x ? acc - x : x - acc; break;
        case 5: acc += (uint64_t)((int64_t)acc / ((int64_t)(x | 1) >> 48 | 1)); break;
        default: acc ^= 0xDEADBEEFull; break;
        }
        counts[(acc >> 61) & 7]++;
    }
    for (int k = 0; k < 8; k++)
        acc = acc * 31 + counts[k];
    return acc;
}

/* Floating point (SSE2 double, as compilers emit it): an n-body step loop and a Mandelbrot row. */
static uint64_t bits_of(double d)
{
    union { double d; uint64_t u; } v = { d };
    return v.u;
}

static double root(double x)
{
    __asm__("sqrtsd %1, %0" : "=x"(x) : "x"(x)); /* no libm (and no errno path) in a freestanding guest */
    return x;
}

#define NBODY_SQRT root
#include "kernels/nbody.h"
#include "kernels/mandelbrot.h"

static uint64_t fp_kernel(int round, int steps)
{
    struct body b[5] = {
        { 0, 0, 0, 0, 0, 0, 39.47841760435743 },
        { 4.84, -1.16, -0.10, 0.606, 2.81, -0.025, 0.0377 },
        { 8.34, 4.12, -0.40, -1.01, 1.82, 0.0084, 0.0113 },
        { 12.89, -15.11, -0.22, 1.08, 0.868, -0.0108, 0.00172 },
        { 15.38, -25.92, 0.18, 0.979, 0.594, -0.0348, 0.00203 },
    };
    b[1].x += round * 1e-3;
    nbody_advance(b, steps, 0.01);
    uint64_t h = 0;
    for (int i = 0; i < 5; i++)
        h = h * 31 + bits_of(b[i].x) + bits_of(b[i].vy);
    for (int x = 0; x < 256; x++)
        h = h * 33 + (uint64_t)mandelbrot_escape(x / 128.0 - 1.5, (round % 64) / 32.0 - 1.0, 64);
    return h;
}

uint64_t compute_kernel(int rounds)
{
    uint64_t sum = 0;
    uint8_t digest[32];
    crc32_make_table(crc_table);
    for (int r = 0; r < rounds; r++) {
        fill(0x1234567ull + (uint64_t)r * 0x10001ull);
        sum = sum * 1000003u + crc32_bitwise(buf, BUF_SIZE / 4);
        sum = sum * 1000003u + crc32_bytewise(crc_table, 0, buf, BUF_SIZE);
        sha256(buf, BUF_SIZE - (size_t)r, digest);
        for (int k = 0; k < 32; k++)
            sum = sum * 131u + digest[k];
        sum ^= integer_mix(sum, 20000);
        sum = sum * 1000003u + fp_kernel(r, 400);
    }
    return sum;
}

static int format_result(char *out, uint64_t v)
{
    const char *prefix = "checksum ";
    int n = 0;
    while (prefix[n]) {
        out[n] = prefix[n];
        n++;
    }
    for (int k = 15; k >= 0; k--)
        out[n++] = "0123456789abcdef"[(v >> (4 * k)) & 0xF];
    out[n++] = '\n';
    return n;
}

#ifdef PARAVIRT_GUEST
#include "flat-guest.h"

__attribute__((noreturn)) void guest_main(void *boot_info)
{
    (void)boot_info;
    char line[32];
    int n = format_result(line, compute_kernel(ROUNDS));
    flat_guest_finish(line, (size_t)n);
}
#else
/* ---- Linux entry ---- */
#include <stdio.h>
#include <unistd.h>

int main(void)
{
    char line[32];
    int n = format_result(line, compute_kernel(ROUNDS));
    return write(1, line, (size_t)n) == n ? 0 : 1;
}
#endif
