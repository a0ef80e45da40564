/*
 * sha256 - SHA-256 as specified in FIPS 180-4 (message schedule, 64 rounds, padding), written for this suite from
 * the standard; the kernel itself is ../kernels/sha256.h, which bench/guests/compute.c shares. Self-checks: the
 * FIPS 180-4 example vectors "abc" and the 448-bit "abcdbcdecdefdefg...nopq" message (two blocks of padding logic).
 *
 * Work: scale x 64 KiB hashed, as 64 KiB messages that each start with the previous digest (a hash chain).
 */
#include "bench.h"

const struct bench_kernel bench_kernel = { "sha256", 72 };

#define MSG_SIZE (64 * 1024)
static uint8_t msg[MSG_SIZE];

#include "../kernels/sha256.h"

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
