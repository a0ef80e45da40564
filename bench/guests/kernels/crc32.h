/*
 * crc32.h - CRC-32 (ISO-HDLC / IEEE 802.3: reflected polynomial 0xEDB88320, initial value and final xor
 * 0xFFFFFFFF): the bit step, Sarwate's 256-entry byte table and the bytewise table-driven update. The one copy the
 * suite's crc32.c (which extends the table to slice-by-8) and bench/guests/compute.c include.
 * (Marked unused: an includer may need only some of it, and the suite builds with -Wall -Werror.)
 */
#ifndef BENCH_KERNELS_CRC32_H
#define BENCH_KERNELS_CRC32_H

#include <stddef.h>
#include <stdint.h>

/* One bit of the reflected CRC: shift right, xor the polynomial when the bit shifted out was set. */
static inline uint32_t crc32_bit_step(uint32_t c)
{
    return (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
}

/* Sarwate's byte table: entry i is the CRC register after shifting in byte i (eight bit steps). */
__attribute__((unused)) static void crc32_make_table(uint32_t table[256])
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = crc32_bit_step(c);
        table[i] = c;
    }
}

/* CRC-32 of p[0..n) continued from crc (0 to start), one table lookup per byte. */
__attribute__((unused)) static uint32_t crc32_bytewise(const uint32_t table[256], uint32_t crc, const uint8_t *p,
                                                       size_t n)
{
    crc = ~crc;
    while (n--)
        crc = table[(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

#endif
