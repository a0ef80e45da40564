/*
 * sha256 - SHA-256 as specified in FIPS 180-4 (message schedule, 64 rounds, padding), written for this suite from
 * the standard (the same code as bench/guests/compute.c's). Self-checks: the FIPS 180-4 example vectors "abc" and
 * the 448-bit "abcdbcdecdefdefg...nopq" message (two blocks of padding logic).
 *
 * Work: scale x 64 KiB hashed, as 64 KiB messages that each start with the previous digest (a hash chain).
 */
#include "bench.h"

const struct bench_kernel bench_kernel = { "sha256", 72 };

#define MSG_SIZE (64 * 1024)
static uint8_t msg[MSG_SIZE];

static const uint32_t K[64] = {
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

static void compress(uint32_t h[8], const uint8_t *p)
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
        uint32_t t1 = hh + (ROR32(e, 6) ^ ROR32(e, 11) ^ ROR32(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
        uint32_t t2 = (ROR32(a, 2) ^ ROR32(a, 13) ^ ROR32(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        hh = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
    h[5] += f;
    h[6] += g;
    h[7] += hh;
}

static void sha256(const uint8_t *p, size_t n, uint8_t out[32])
{
    uint32_t h[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };
    size_t i = 0;
    for (; i + 64 <= n; i += 64)
        compress(h, p + i);
    uint8_t last[128];
    size_t rest = n - i, total = rest + 1 + 8 <= 64 ? 64 : 128;
    for (size_t k = 0; k < rest; k++)
        last[k] = p[i + k];
    last[rest] = 0x80;
    for (size_t k = rest + 1; k < total - 8; k++)
        last[k] = 0;
    uint64_t bits = (uint64_t)n * 8;
    for (int k = 0; k < 8; k++)
        last[total - 1 - k] = (uint8_t)(bits >> (8 * k));
    for (size_t k = 0; k < total; k += 64)
        compress(h, last + k);
    for (int k = 0; k < 8; k++) {
        out[4 * k] = (uint8_t)(h[k] >> 24);
        out[4 * k + 1] = (uint8_t)(h[k] >> 16);
        out[4 * k + 2] = (uint8_t)(h[k] >> 8);
        out[4 * k + 3] = (uint8_t)h[k];
    }
}

static int digest_is(const uint8_t d[32], const uint32_t want[8])
{
    for (int k = 0; k < 8; k++)
        if (((uint32_t)d[4 * k] << 24 | (uint32_t)d[4 * k + 1] << 16 | (uint32_t)d[4 * k + 2] << 8 | d[4 * k + 3]) != want[k])
            return 0;
    return 1;
}

uint64_t bench_run(uint32_t scale)
{
    static const uint32_t abc[8] = { 0xba7816bf, 0x8f01cfea, 0x414140de, 0x5dae2223,
                                     0xb00361a3, 0x96177a9c, 0xb410ff61, 0xf20015ad };
    static const uint32_t two[8] = { 0x248d6a61, 0xd20638b8, 0xe5c02693, 0x0c3e6039,
                                     0xa33ce459, 0x64ff2167, 0xf6ecedd4, 0x19db06c1 };
    static const char m2[] = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    uint8_t d[32];
    sha256((const uint8_t *)"abc", 3, d);
    if (!digest_is(d, abc))
        bench_fail("SHA-256(\"abc\") differs from FIPS 180-4");
    sha256((const uint8_t *)m2, sizeof m2 - 1, d);
    if (!digest_is(d, two))
        bench_fail("SHA-256 of the 448-bit FIPS 180-4 message differs");

    bench_fill(msg, MSG_SIZE, 0x5A256u);
    uint64_t sum = 0;
    for (uint32_t i = 0; i < scale; i++) {
        for (int k = 0; k < 32; k++)
            msg[k] = d[k];
        sha256(msg, MSG_SIZE - (i & 63), d); /* lengths that end anywhere in a block exercise the padding */
        for (int k = 0; k < 32; k += 8)
            sum = bench_mix(sum, (uint64_t)d[k] | (uint64_t)d[k + 1] << 8 | (uint64_t)d[k + 2] << 16 |
                                     (uint64_t)d[k + 3] << 24 | (uint64_t)d[k + 4] << 32 | (uint64_t)d[k + 5] << 40 |
                                     (uint64_t)d[k + 6] << 48 | (uint64_t)d[k + 7] << 56);
    }
    return sum;
}
