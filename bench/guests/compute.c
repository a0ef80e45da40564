/*
 * compute.c - the emulator-vs-QEMU benchmark kernel: CRC32 (bitwise and table driven), SHA-256 over a buffer, an
 * integer mix (multiply, divide, shifts, rotates, branches, table lookups) and floating point (an n-body step loop
 * and a Mandelbrot row, SSE2 double). Prints a checksum and returns.
 *
 * Built two ways by bench/emulator-vs-qemu.sh from this one file:
 *   -DPARAVIRT_GUEST : a freestanding Paravirt guest (flat binary at 0x100000, entry _start, rdi = boot info,
 *                      output through the debug_write hypercall, stop through the exit hypercall);
 *   otherwise        : a static Linux program (main + printf), run natively and under qemu-x86_64.
 * The kernel (everything above the entry sections) is the same C code compiled with the same flags.
 */
#include <stdint.h>
#include <stddef.h>

#ifndef ROUNDS
#define ROUNDS 200
#endif
#ifndef BUF_SIZE
#define BUF_SIZE (64 * 1024)
#endif

static uint8_t buf[BUF_SIZE];
static uint32_t crc_table[256];

static uint64_t xorshift64(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

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
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

static void crc32_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
        crc_table[i] = c;
    }
}

static uint32_t crc32_table(const uint8_t *p, size_t n)
{
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++)
        crc = crc_table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

/* SHA-256 (FIPS 180-4). */
static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define ROR32(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(uint32_t h[8], const uint8_t *p)
{
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROR32(w[i - 15], 7) ^ ROR32(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROR32(w[i - 2], 17) ^ ROR32(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = hh + (ROR32(e, 6) ^ ROR32(e, 11) ^ ROR32(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i];
        uint32_t t2 = (ROR32(a, 2) ^ ROR32(a, 13) ^ ROR32(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        hh = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
}

static void sha256(const uint8_t *p, size_t n, uint8_t out[32])
{
    uint32_t h[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };
    size_t i = 0;
    for (; i + 64 <= n; i += 64)
        sha256_block(h, p + i);
    uint8_t last[128];
    size_t rest = n - i, total;
    for (size_t k = 0; k < rest; k++)
        last[k] = p[i + k];
    last[rest] = 0x80;
    total = rest + 1 + 8 <= 64 ? 64 : 128;
    for (size_t k = rest + 1; k < total - 8; k++)
        last[k] = 0;
    uint64_t bits = (uint64_t)n * 8;
    for (int k = 0; k < 8; k++)
        last[total - 1 - k] = (uint8_t)(bits >> (8 * k));
    for (size_t k = 0; k < total; k += 64)
        sha256_block(h, last + k);
    for (int k = 0; k < 8; k++) {
        out[4 * k] = (uint8_t)(h[k] >> 24);
        out[4 * k + 1] = (uint8_t)(h[k] >> 16);
        out[4 * k + 2] = (uint8_t)(h[k] >> 8);
        out[4 * k + 3] = (uint8_t)h[k];
    }
}

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
struct body { double x, y, z, vx, vy, vz, m; };

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
    for (int s = 0; s < steps; s++) {
        for (int i = 0; i < 5; i++)
            for (int j = i + 1; j < 5; j++) {
                double dx = b[i].x - b[j].x, dy = b[i].y - b[j].y, dz = b[i].z - b[j].z;
                double d2 = dx * dx + dy * dy + dz * dz;
                double mag = 0.01 / (d2 * root(d2));
                b[i].vx -= dx * b[j].m * mag;
                b[i].vy -= dy * b[j].m * mag;
                b[i].vz -= dz * b[j].m * mag;
                b[j].vx += dx * b[i].m * mag;
                b[j].vy += dy * b[i].m * mag;
                b[j].vz += dz * b[i].m * mag;
            }
        for (int i = 0; i < 5; i++) {
            b[i].x += 0.01 * b[i].vx;
            b[i].y += 0.01 * b[i].vy;
            b[i].z += 0.01 * b[i].vz;
        }
    }
    uint64_t h = 0;
    for (int i = 0; i < 5; i++)
        h = h * 31 + bits_of(b[i].x) + bits_of(b[i].vy);
    for (int x = 0; x < 256; x++) {
        double cr = x / 128.0 - 1.5, ci = (round % 64) / 32.0 - 1.0, zr = 0, zi = 0;
        int it = 0;
        for (; it < 64 && zr * zr + zi * zi <= 4.0; it++) {
            double t = zr * zr - zi * zi + cr;
            zi = 2 * zr * zi + ci;
            zr = t;
        }
        h = h * 33 + (uint64_t)it;
    }
    return h;
}

uint64_t compute_kernel(int rounds)
{
    uint64_t sum = 0;
    uint8_t digest[32];
    crc32_init();
    for (int r = 0; r < rounds; r++) {
        fill(0x1234567ull + (uint64_t)r * 0x10001ull);
        sum = sum * 1000003u + crc32_bitwise(buf, BUF_SIZE / 4);
        sum = sum * 1000003u + crc32_table(buf, BUF_SIZE);
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
/* ---- Paravirt guest entry: rdi = boot info, rsp = top of memory; hypercall page at 0x3000 ---- */
#define HYPERCALL_PAGE 0x3000ul
#define HC_EXIT 0x0002
#define HC_DEBUG_WRITE 0x0003

static long hypercall2(long code, long a1, long a2)
{
    long ret = code;
    __asm__ volatile("call *%[page]"
                     : "+a"(ret)
                     : [page] "r"(HYPERCALL_PAGE), "D"(a1), "S"(a2)
                     : "memory", "cc");
    return ret;
}

void *memset(void *d, int c, size_t n)
{
    uint8_t *p = d;
    while (n--)
        *p++ = (uint8_t)c;
    return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
    uint8_t *p = d;
    const uint8_t *q = s;
    while (n--)
        *p++ = *q++;
    return d;
}

__attribute__((noreturn)) void guest_main(void *boot_info)
{
    (void)boot_info;
    char line[32];
    int n = format_result(line, compute_kernel(ROUNDS));
    hypercall2(HC_DEBUG_WRITE, (long)line, n);
    hypercall2(HC_EXIT, 0, 0);
    for (;;)
        __asm__ volatile("hlt");
}

__asm__(".section .text.start,\"ax\",@progbits\n"
        ".globl _start\n"
        "_start:\n"
        "    and $-16, %rsp\n"
        "    call guest_main\n"
        "1:  hlt\n"
        "    jmp 1b\n"
        ".previous\n");
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
