/*
 * aes - AES-128 (FIPS 197) in software with the classic 32-bit "T-table" formulation (four 1 KiB tables that merge
 * SubBytes, ShiftRows and MixColumns into table lookups and xors, as in Daemen and Rijmen, "The Design of
 * Rijndael", section 4.2), in counter (CTR) mode, encrypt and decrypt (the inverse cipher with the equivalent
 * decryption key schedule, FIPS 197 section 5.3.5, over the same tables' inverse). No AES-NI: the benchmark is
 * built for x86-64-v2, which has none, and the Paravirt emulator does not offer it. Written for this suite from FIPS
 * 197; the S-box is computed (multiplicative inverse in GF(2^8) then the affine map), not typed in. Self-checks:
 * the FIPS 197 appendix C.1 AES-128 example (encrypt and decrypt) and a CTR round trip.
 *
 * Work: scale x 64 KiB encrypted in CTR mode, plus one ECB decryption pass over the same data per unit.
 */
#include "bench.h"

const struct bench_kernel bench_kernel = { "aes", 52 };

#define BUF_SIZE (64 * 1024)
static uint8_t plain[BUF_SIZE], cipher[BUF_SIZE];
static uint8_t sbox[256], inv_sbox[256];
static uint32_t te[4][256], td[4][256];

static uint8_t xtime(uint8_t b) { return (uint8_t)((b << 1) ^ ((b >> 7) * 0x1B)); }

static uint8_t gmul(uint8_t a, uint8_t b)
{
    uint8_t p = 0;
    while (b) {
        if (b & 1)
            p ^= a;
        a = xtime(a);
        b >>= 1;
    }
    return p;
}

static uint32_t ror32(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void make_tables(void)
{
    for (int x = 0; x < 256; x++) {
        uint8_t inv = 0;
        for (int y = 1; y < 256 && x; y++)
            if (gmul((uint8_t)x, (uint8_t)y) == 1) {
                inv = (uint8_t)y;
                break;
            }
        uint8_t s = inv;
        for (int r = 1; r <= 4; r++)
            s ^= (uint8_t)((inv << r) | (inv >> (8 - r)));
        s ^= 0x63;
        sbox[x] = s;
        inv_sbox[s] = (uint8_t)x;
    }
    for (int x = 0; x < 256; x++) {
        uint8_t s = sbox[x], i = inv_sbox[x];
        /* A column is the big-endian word (row 0 in the top byte). */
        uint32_t e = (uint32_t)gmul(s, 2) << 24 | (uint32_t)s << 16 | (uint32_t)s << 8 | gmul(s, 3);
        uint32_t d = (uint32_t)gmul(i, 14) << 24 | (uint32_t)gmul(i, 9) << 16 | (uint32_t)gmul(i, 13) << 8 | gmul(i, 11);
        for (int t = 0; t < 4; t++) {
            te[t][x] = ror32(e, 8 * t);
            td[t][x] = ror32(d, 8 * t);
        }
    }
}

static uint32_t sub_word(uint32_t w)
{
    return (uint32_t)sbox[w >> 24] << 24 | (uint32_t)sbox[(w >> 16) & 0xFF] << 16 | (uint32_t)sbox[(w >> 8) & 0xFF] << 8 |
           sbox[w & 0xFF];
}

/* FIPS 197 5.2 key expansion (44 words), and the equivalent inverse cipher's schedule (5.3.5). */
static void expand_key(const uint8_t key[16], uint32_t ek[44], uint32_t dk[44])
{
    for (int i = 0; i < 4; i++)
        ek[i] = (uint32_t)key[4 * i] << 24 | (uint32_t)key[4 * i + 1] << 16 | (uint32_t)key[4 * i + 2] << 8 | key[4 * i + 3];
    uint8_t rcon = 1;
    for (int i = 4; i < 44; i++) {
        uint32_t t = ek[i - 1];
        if (i % 4 == 0) {
            t = sub_word((t << 8) | (t >> 24)) ^ ((uint32_t)rcon << 24);
            rcon = xtime(rcon);
        }
        ek[i] = ek[i - 4] ^ t;
    }
    /* Round keys in reverse order; InvMixColumns applied to all but the first and last. */
    for (int r = 0; r <= 10; r++)
        for (int c = 0; c < 4; c++) {
            uint32_t w = ek[4 * (10 - r) + c];
            if (r != 0 && r != 10)
                w = td[0][sbox[w >> 24]] ^ td[1][sbox[(w >> 16) & 0xFF]] ^ td[2][sbox[(w >> 8) & 0xFF]] ^ td[3][sbox[w & 0xFF]];
            dk[4 * r + c] = w;
        }
}

static inline uint32_t load_be(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void store_be(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/*
 * Encryption and decryption (the equivalent inverse cipher, FIPS 197 5.3.5) are the same rounds with other tables:
 * column c of a round reads state words c, c+1, c+2, c+3 when encrypting and c, c-1, c-2, c-3 (the inverse
 * ShiftRows) when decrypting. So one round body serves both: it names the state words in column order, s0..s3 being
 * words 0, w1, 2, w3 of the block (w1 = 1 and w3 = 3 to encrypt, swapped to decrypt), and the round keys likewise.
 */
static inline __attribute__((always_inline)) void crypt_block(const uint32_t rk[44], const uint32_t tab[4][256],
                                                              const uint8_t box[256], int w1, int w3,
                                                              const uint8_t in[16], uint8_t out[16])
{
    uint32_t s0 = load_be(in) ^ rk[0], s1 = load_be(in + 4 * w1) ^ rk[w1], s2 = load_be(in + 8) ^ rk[2],
             s3 = load_be(in + 4 * w3) ^ rk[w3];
#define COLUMN(a, b, c, d) (tab[0][(a) >> 24] ^ tab[1][((b) >> 16) & 0xFF] ^ tab[2][((c) >> 8) & 0xFF] ^ tab[3][(d) & 0xFF])
    for (int r = 1; r < 10; r++) {
        const uint32_t *k = rk + 4 * r;
        uint32_t t0 = COLUMN(s0, s1, s2, s3) ^ k[0];
        uint32_t t1 = COLUMN(s1, s2, s3, s0) ^ k[w1];
        uint32_t t2 = COLUMN(s2, s3, s0, s1) ^ k[2];
        uint32_t t3 = COLUMN(s3, s0, s1, s2) ^ k[w3];
        s0 = t0;
        s1 = t1;
        s2 = t2;
        s3 = t3;
    }
#undef COLUMN
    const uint32_t *k = rk + 40;
#define LAST(a, b, c, d)                                                                                               \
    ((uint32_t)box[(a) >> 24] << 24 | (uint32_t)box[((b) >> 16) & 0xFF] << 16 | (uint32_t)box[((c) >> 8) & 0xFF] << 8 | \
     box[(d) & 0xFF])
    store_be(out, LAST(s0, s1, s2, s3) ^ k[0]);
    store_be(out + 4 * w1, LAST(s1, s2, s3, s0) ^ k[w1]);
    store_be(out + 8, LAST(s2, s3, s0, s1) ^ k[2]);
    store_be(out + 4 * w3, LAST(s3, s0, s1, s2) ^ k[w3]);
#undef LAST
}

static void encrypt_block(const uint32_t rk[44], const uint8_t in[16], uint8_t out[16])
{
    crypt_block(rk, te, sbox, 1, 3, in, out);
}

static void decrypt_block(const uint32_t rk[44], const uint8_t in[16], uint8_t out[16])
{
    crypt_block(rk, td, inv_sbox, 3, 1, in, out);
}

/* CTR mode (NIST SP 800-38A): the keystream is E(K, nonce || counter), big-endian 64-bit counter. */
static void ctr_crypt(const uint32_t ek[44], uint64_t nonce, uint64_t counter, const uint8_t *in, uint8_t *out, size_t n)
{
    uint8_t block[16], ks[16];
    for (size_t off = 0; off < n; off += 16, counter++) {
        store_be(block, (uint32_t)(nonce >> 32));
        store_be(block + 4, (uint32_t)nonce);
        store_be(block + 8, (uint32_t)(counter >> 32));
        store_be(block + 12, (uint32_t)counter);
        encrypt_block(ek, block, ks);
        for (int k = 0; k < 16; k++)
            out[off + k] = in[off + k] ^ ks[k];
    }
}

uint64_t bench_run(uint32_t scale)
{
    make_tables();
    uint32_t ek[44], dk[44];
    uint8_t key[16], pt[16], ct[16], back[16];
    static const uint8_t want[16] = { 0x69, 0xc4, 0xe0, 0xd8, 0x6a, 0x7b, 0x04, 0x30,
                                      0xd8, 0xcd, 0xb7, 0x80, 0x70, 0xb4, 0xc5, 0x5a };
    for (int k = 0; k < 16; k++) {
        key[k] = (uint8_t)k;
        pt[k] = (uint8_t)(k * 0x11);
    }
    expand_key(key, ek, dk);
    encrypt_block(ek, pt, ct);
    decrypt_block(dk, ct, back);
    for (int k = 0; k < 16; k++)
        if (ct[k] != want[k] || back[k] != pt[k])
            bench_fail("AES-128 differs from the FIPS 197 appendix C.1 example");

    bench_fill(plain, BUF_SIZE, 0xAE5u);
    bench_fill(key, 16, 0x6B65u);
    expand_key(key, ek, dk);
    /* CTR is its own inverse. */
    ctr_crypt(ek, 42, 7, plain, cipher, 256);
    ctr_crypt(ek, 42, 7, cipher, cipher, 256);
    for (int k = 0; k < 256; k++)
        if (cipher[k] != plain[k])
            bench_fail("AES-128 CTR encryption twice is not the identity");
    uint64_t sum = 0;
    for (uint32_t i = 0; i < scale; i++) {
        ctr_crypt(ek, 0x0123456789ABCDEFull, (uint64_t)i << 20, plain, cipher, BUF_SIZE);
        for (size_t off = 0; off < BUF_SIZE; off += 16)
            decrypt_block(dk, cipher + off, plain + off); /* the next unit encrypts what this one decrypted */
        for (size_t off = 0; off < BUF_SIZE; off += 4096)
            sum = bench_mix(sum, load_be(plain + off) ^ (uint64_t)load_be(cipher + off + 8) << 32);
    }
    return sum;
}
