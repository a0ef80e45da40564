/*
 * crc32 - CRC-32 (ISO-HDLC / IEEE 802.3: reflected polynomial 0xEDB88320, initial value and final xor 0xFFFFFFFF),
 * computed "slice-by-8" (eight 256-entry tables, 8 bytes per step), the table-driven method zlib and most software
 * CRC-32 implementations use. Written for this suite from the algorithm (Sarwate's byte table of ../kernels/crc32.h, extended to eight
 * tables as in Kounavis and Berry, "A Systematic Approach to Building High Performance Software-Based CRC
 * Generators", 2005). Self-check: CRC-32("123456789") = 0xCBF43926 (the catalogue check value), by slice-by-8 and by
 * the bytewise table.
 *
 * Work: scale MiB checksummed, as passes over a 256 KiB buffer (one byte changes per pass).
 */
#include "bench.h"
#include "../kernels/crc32.h"

const struct bench_kernel bench_kernel = { "crc32", 80 };

#define BUF_SIZE (256 * 1024)
static uint8_t buf[BUF_SIZE];
static uint32_t table[8][256];

static void make_tables(void)
{
    crc32_make_table(table[0]);
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xFF];
}

static inline uint32_t load32le(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint32_t crc32_slice8(uint32_t crc, const uint8_t *p, size_t n)
{
    crc = ~crc;
    for (; n >= 8; n -= 8, p += 8) {
        uint32_t one = load32le(p) ^ crc, two = load32le(p + 4);
        crc = table[7][one & 0xFF] ^ table[6][(one >> 8) & 0xFF] ^ table[5][(one >> 16) & 0xFF] ^ table[4][one >> 24] ^
              table[3][two & 0xFF] ^ table[2][(two >> 8) & 0xFF] ^ table[1][(two >> 16) & 0xFF] ^ table[0][two >> 24];
    }
    while (n--)
        crc = table[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

uint64_t bench_run(uint32_t scale)
{
    make_tables();
    static const uint8_t check[] = "123456789";
    if (crc32_slice8(0, check, 9) != 0xCBF43926u || crc32_bytewise(table[0], 0, check, 9) != 0xCBF43926u)
        bench_fail("CRC-32(\"123456789\") is not 0xCBF43926");
    bench_fill(buf, BUF_SIZE, 0xC3C32u);
    uint64_t sum = 0;
    uint32_t crc = 0;
    for (uint32_t pass = 0; pass < scale * 4u; pass++) {
        buf[(pass * 2654435761u) % BUF_SIZE] ^= (uint8_t)(pass + 1);
        crc = crc32_slice8(crc, buf, BUF_SIZE);
        sum = bench_mix(sum, crc);
    }
    /* The tail path and unaligned starts too: a bytewise cross-check on an odd-sized, odd-aligned piece. */
    if (crc32_slice8(crc, buf + 3, 1001) != crc32_bytewise(table[0], crc, buf + 3, 1001))
        bench_fail("slice-by-8 and bytewise CRC-32 disagree");
    return sum;
}
