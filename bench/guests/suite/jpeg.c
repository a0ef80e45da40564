/*
 * jpeg - a baseline-JPEG-style codec (ITU-T T.81): 8x8 DCT, the Annex K quantization tables at quality 75, zig-zag
 * order, DC prediction, run-length/size symbols for the AC coefficients, Huffman coding with optimal tables built
 * by the Annex K.2 procedure, and 0xFF byte stuffing; YCbCr 4:2:0 (JFIF colour conversion, 2x2 chroma averaging).
 * No file headers or markers: the benchmark is the entropy-coded data. Written for this suite from T.81 (the
 * Huffman table generation of Annex C and K.2, the decoding procedures of F.2.2, the DCT definition of A.3.3).
 *
 * The encoder runs once on a synthetic 256x256 image (gradients, a disc, stripes, noise); the timed work is
 * decoding it: Huffman decoding with a 9-bit lookahead table (the technique of libjpeg's jdhuff.c), dequantization,
 * a separable fixed-point inverse DCT (the matrix form of A.3.3, 12-bit coefficients, sparse rows skipped), chroma
 * upsampling and YCbCr to RGB. Self-checks: the decoded image is close to the source (mean absolute error per
 * channel value below 12; about 8 is what quality 75 and 4:2:0 make of the image's noise and sharp edges), and
 * every decode of the same data is identical.
 *
 * Work: scale frames decoded (256 MCUs, 1536 blocks each).
 */
#include "bench.h"

const struct bench_kernel bench_kernel = { "jpeg", 20 };

#define W 256
#define H 256
#define MCUS_X (W / 16)
#define MCUS_Y (H / 16)
#define BLOCKS (MCUS_X * MCUS_Y * 6)

static uint8_t src_rgb[H][W][3], out_rgb[H][W][3];
static uint8_t plane_y[H][W], plane_cb[H / 2][W / 2], plane_cr[H / 2][W / 2];
static int16_t coefs[BLOCKS][64]; /* quantized, natural order, in MCU order */
static uint8_t stream[1 << 20];
static size_t stream_len;

static int zigzag[64]; /* zig-zag position -> natural index */
static int qtab[2][64];
static double basis[8][8];     /* basis[u][x] = C(u)/2 cos((2x+1)u pi/16) */
static int32_t idct_tab[8][8]; /* idct_tab[x][u] = basis[u][x] * 2^12, rounded */

/* ---- tables ---------------------------------------------------------------------------------------------------- */

static double cos_taylor(double x) /* |x| <= pi: plenty of terms; only + - * / so every IEEE machine agrees */
{
    double term = 1, sum = 1;
    for (int n = 1; n < 30; n++) {
        term *= -x * x / ((2 * n - 1) * (2 * n));
        sum += term;
    }
    return sum;
}

static void make_tables(void)
{
    int k = 0;
    for (int s = 0; s < 15; s++) {
        int lo = s < 8 ? 0 : s - 7, hi = s < 8 ? s : 7;
        if (s % 2 == 0)
            for (int row = hi; row >= lo; row--)
                zigzag[k++] = row * 8 + (s - row);
        else
            for (int row = lo; row <= hi; row++)
                zigzag[k++] = row * 8 + (s - row);
    }
    static const uint8_t lum[64] = { 16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57,
                                     69, 56, 14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64,
                                     81, 104, 113, 92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99 };
    static const uint8_t chr[64] = { 17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99,
                                     99, 99, 47, 66, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
                                     99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99 };
    for (int i = 0; i < 64; i++) { /* IJG quality scaling, quality 75: scale factor 50% */
        int l = (lum[i] * 50 + 50) / 100, c = (chr[i] * 50 + 50) / 100;
        qtab[0][i] = l < 1 ? 1 : l;
        qtab[1][i] = c < 1 ? 1 : c;
    }
    const double pi = 3.14159265358979323846;
    for (int u = 0; u < 8; u++)
        for (int x = 0; x < 8; x++) {
            double c = u == 0 ? 1 / __builtin_sqrt(2.0) : 1.0;
            basis[u][x] = c / 2 * cos_taylor((2 * x + 1) * u * pi / 16);
            double scaled = basis[u][x] * 4096;
            idct_tab[x][u] = (int32_t)(scaled + (scaled >= 0 ? 0.5 : -0.5));
        }
}

/* ---- the source image -------------------------------------------------------------------------------------------- */

static uint8_t clamp255(int v) { return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v); }

static void make_image(void)
{
    uint64_t s = 0x1E6u;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            int noise = (int)(bench_random(&s) >> 60) - 8;
            int dx = x - 150, dy = y - 100;
            int disc = dx * dx + dy * dy < 60 * 60;
            int stripes = ((x + 2 * y) / 12) % 2;
            int r = x + noise + (disc ? 60 : 0);
            int g = (x + y) / 2 + (stripes ? 40 : -20) + noise;
            int b = 255 - y + (disc ? -90 : 0) + (x > 200 ? 30 : 0);
            src_rgb[y][x][0] = clamp255(r);
            src_rgb[y][x][1] = clamp255(g);
            src_rgb[y][x][2] = clamp255(b);
        }
    /* JFIF RGB -> YCbCr, 16-bit fixed point; chroma averaged over 2x2. */
    static int cb_full[H][W], cr_full[H][W];
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            int r = src_rgb[y][x][0], g = src_rgb[y][x][1], b = src_rgb[y][x][2];
            plane_y[y][x] = clamp255((19595 * r + 38470 * g + 7471 * b + 32768) >> 16);
            cb_full[y][x] = (-11059 * r - 21709 * g + 32768 * b + (128 << 16) + 32768) >> 16;
            cr_full[y][x] = (32768 * r - 27439 * g - 5329 * b + (128 << 16) + 32768) >> 16;
        }
    for (int y = 0; y < H / 2; y++)
        for (int x = 0; x < W / 2; x++) {
            int y0 = 2 * y, y1 = 2 * y + 1, x0 = 2 * x, x1 = 2 * x + 1;
            plane_cb[y][x] = clamp255((cb_full[y0][x0] + cb_full[y0][x1] + cb_full[y1][x0] + cb_full[y1][x1] + 2) >> 2);
            plane_cr[y][x] = clamp255((cr_full[y0][x0] + cr_full[y0][x1] + cr_full[y1][x0] + cr_full[y1][x1] + 2) >> 2);
        }
}

/* ---- encoder --------------------------------------------------------------------------------------------------- */

static void fdct_quantize(const uint8_t *p, int stride, const int *q, int16_t *out)
{
    double tmp[8][8];
    for (int y = 0; y < 8; y++)
        for (int u = 0; u < 8; u++) {
            double acc = 0;
            for (int x = 0; x < 8; x++)
                acc += basis[u][x] * (p[y * stride + x] - 128);
            tmp[y][u] = acc;
        }
    for (int v = 0; v < 8; v++)
        for (int u = 0; u < 8; u++) {
            double acc = 0;
            for (int y = 0; y < 8; y++)
                acc += basis[v][y] * tmp[y][u];
            double r = acc / q[v * 8 + u];
            out[v * 8 + u] = (int16_t)(r + (r >= 0 ? 0.5 : -0.5));
        }
}

/* Block b of the stream: component (0 = Y, 1 = Cb, 2 = Cr) and its pixels. */
static int block_component(int b) { return b % 6 < 4 ? 0 : b % 6 - 3; }

static void transform_all(void)
{
    int b = 0;
    for (int my = 0; my < MCUS_Y; my++)
        for (int mx = 0; mx < MCUS_X; mx++) {
            for (int k = 0; k < 4; k++)
                fdct_quantize(&plane_y[my * 16 + (k / 2) * 8][mx * 16 + (k % 2) * 8], W, qtab[0], coefs[b++]);
            fdct_quantize(&plane_cb[my * 8][mx * 8], W / 2, qtab[1], coefs[b++]);
            fdct_quantize(&plane_cr[my * 8][mx * 8], W / 2, qtab[1], coefs[b++]);
        }
}

struct huff_spec { /* T.81 BITS and HUFFVAL */
    uint8_t bits[17];
    uint8_t val[256];
    int count;
};

/* T.81 Annex K.2: code lengths from frequencies (K.1 code_size with the reserved symbol 256, K.2 count, K.3 limit to
   16 bits, K.4 sort), as IJG's jpeg_gen_optimal_table does. */
static void optimal_table(const long freq_in[256], struct huff_spec *spec)
{
    long freq[257];
    int codesize[257], others[257], bits[64];
    for (int i = 0; i < 256; i++)
        freq[i] = freq_in[i];
    freq[256] = 1;
    for (int i = 0; i < 257; i++) {
        codesize[i] = 0;
        others[i] = -1;
    }
    for (int i = 0; i < 64; i++)
        bits[i] = 0;
    for (;;) {
        int c1 = -1, c2 = -1;
        long v = 1L << 62;
        for (int i = 0; i <= 256; i++)
            if (freq[i] && freq[i] <= v) {
                v = freq[i];
                c1 = i;
            }
        v = 1L << 62;
        for (int i = 0; i <= 256; i++)
            if (freq[i] && freq[i] <= v && i != c1) {
                v = freq[i];
                c2 = i;
            }
        if (c2 < 0)
            break;
        freq[c1] += freq[c2];
        freq[c2] = 0;
        codesize[c1]++;
        while (others[c1] >= 0) {
            c1 = others[c1];
            codesize[c1]++;
        }
        others[c1] = c2;
        codesize[c2]++;
        while (others[c2] >= 0) {
            c2 = others[c2];
            codesize[c2]++;
        }
    }
    for (int i = 0; i <= 256; i++)
        if (codesize[i]) {
            if (codesize[i] > 63)
                bench_fail("Huffman code longer than 63 bits");
            bits[codesize[i]]++;
        }
    for (int i = 63; i > 16; i--)
        while (bits[i] > 0) {
            int j = i - 2;
            while (bits[j] == 0)
                j--;
            bits[i] -= 2;
            bits[i - 1]++;
            bits[j + 1] += 2;
            bits[j]--;
        }
    int i = 16;
    while (bits[i] == 0)
        i--;
    bits[i]--; /* drop the reserved symbol's code (the all-ones one) */
    spec->bits[0] = 0;
    for (i = 1; i <= 16; i++)
        spec->bits[i] = (uint8_t)bits[i];
    spec->count = 0;
    for (int len = 1; len <= 63; len++)
        for (int sym = 0; sym < 256; sym++)
            if (codesize[sym] == len)
                spec->val[spec->count++] = (uint8_t)sym;
}

struct huff_enc {
    uint16_t code[256];
    uint8_t size[256];
};

static void encoder_table(const struct huff_spec *spec, struct huff_enc *e)
{
    for (int i = 0; i < 256; i++)
        e->size[i] = 0;
    unsigned code = 0;
    int k = 0;
    for (int len = 1; len <= 16; len++) {
        for (int n = 0; n < spec->bits[len]; n++, k++) {
            e->code[spec->val[k]] = (uint16_t)code++;
            e->size[spec->val[k]] = (uint8_t)len;
        }
        code <<= 1;
    }
}

static int magnitude_bits(int v)
{
    unsigned a = (unsigned)(v < 0 ? -v : v);
    int n = 0;
    while (a) {
        n++;
        a >>= 1;
    }
    return n;
}

struct bit_writer {
    uint64_t acc;
    int n;
};

static void put_bits(struct bit_writer *w, unsigned v, int n)
{
    w->acc = (w->acc << n) | (v & ((1u << n) - 1));
    w->n += n;
    while (w->n >= 8) {
        uint8_t byte = (uint8_t)(w->acc >> (w->n - 8));
        w->n -= 8;
        if (stream_len + 2 > sizeof stream)
            bench_fail("entropy-coded data does not fit");
        stream[stream_len++] = byte;
        if (byte == 0xFF)
            stream[stream_len++] = 0x00; /* byte stuffing */
    }
}

/* Visits the symbols of every block in order: pass 0 counts them, pass 1 writes them. */
static void entropy_code(int pass, long freq[4][256], const struct huff_enc enc[4])
{
    int pred[3] = { 0, 0, 0 };
    struct bit_writer w = { 0, 0 };
    for (int b = 0; b < BLOCKS; b++) {
        int comp = block_component(b), t = comp ? 1 : 0;
        const int16_t *c = coefs[b];
        int diff = c[0] - pred[comp];
        pred[comp] = c[0];
        int s = magnitude_bits(diff);
        if (pass == 0)
            freq[2 * t][s]++;
        else {
            put_bits(&w, enc[2 * t].code[s], enc[2 * t].size[s]);
            put_bits(&w, (unsigned)(diff < 0 ? diff - 1 : diff), s);
        }
        int run = 0;
        for (int k = 1; k < 64; k++) {
            int v = c[zigzag[k]];
            if (v == 0) {
                run++;
                continue;
            }
            for (; run > 15; run -= 16) {
                if (pass == 0)
                    freq[2 * t + 1][0xF0]++;
                else
                    put_bits(&w, enc[2 * t + 1].code[0xF0], enc[2 * t + 1].size[0xF0]);
            }
            s = magnitude_bits(v);
            int rs = run << 4 | s;
            if (pass == 0)
                freq[2 * t + 1][rs]++;
            else {
                put_bits(&w, enc[2 * t + 1].code[rs], enc[2 * t + 1].size[rs]);
                put_bits(&w, (unsigned)(v < 0 ? v - 1 : v), s);
            }
            run = 0;
        }
        if (run > 0) {
            if (pass == 0)
                freq[2 * t + 1][0x00]++;
            else
                put_bits(&w, enc[2 * t + 1].code[0], enc[2 * t + 1].size[0]);
        }
    }
    if (pass == 1 && w.n > 0)
        put_bits(&w, 0x7F, 8 - w.n); /* pad with 1-bits (T.81 F.1.2.3) */
}

/* ---- decoder --------------------------------------------------------------------------------------------------- */

#define LOOKAHEAD 9
struct huff_dec {
    uint8_t look_size[1 << LOOKAHEAD], look_sym[1 << LOOKAHEAD];
    int32_t maxcode[18]; /* largest code of each length, -1 if none; maxcode[17] sentinel */
    int32_t valoffset[17];
    uint8_t val[256];
};

static void decoder_table(const struct huff_spec *spec, struct huff_dec *d)
{
    int32_t code = 0;
    int k = 0;
    for (int i = 0; i < 256; i++)
        d->val[i] = spec->val[i];
    for (int i = 0; i < (1 << LOOKAHEAD); i++)
        d->look_size[i] = 0;
    for (int len = 1; len <= 16; len++) {
        if (spec->bits[len]) {
            d->valoffset[len] = k - code;
            for (int n = 0; n < spec->bits[len]; n++, k++, code++)
                if (len <= LOOKAHEAD)
                    for (int fill = 0; fill < 1 << (LOOKAHEAD - len); fill++) {
                        int idx = (code << (LOOKAHEAD - len)) | fill;
                        d->look_size[idx] = (uint8_t)len;
                        d->look_sym[idx] = spec->val[k];
                    }
            d->maxcode[len] = code - 1;
        } else
            d->maxcode[len] = -1;
        code <<= 1;
    }
    d->maxcode[17] = 0x7FFFFFFF;
}

struct bit_reader {
    const uint8_t *p, *end;
    uint64_t acc; /* next bits at the top */
    int n;
};

static inline void fill(struct bit_reader *r)
{
    while (r->n <= 56) {
        uint8_t byte = 0;
        if (r->p < r->end) {
            byte = *r->p++;
            if (byte == 0xFF)
                r->p++; /* the stuffed zero */
        }
        r->acc |= (uint64_t)byte << (56 - r->n);
        r->n += 8;
    }
}

static inline unsigned get_bits(struct bit_reader *r, int n)
{
    if (n == 0)
        return 0;
    if (r->n < n)
        fill(r);
    unsigned v = (unsigned)(r->acc >> (64 - n));
    r->acc <<= n;
    r->n -= n;
    return v;
}

static inline int decode_symbol(struct bit_reader *r, const struct huff_dec *d)
{
    if (r->n < 16)
        fill(r);
    unsigned look = (unsigned)(r->acc >> (64 - LOOKAHEAD));
    int len = d->look_size[look];
    if (len) {
        r->acc <<= len;
        r->n -= len;
        return d->look_sym[look];
    }
    len = LOOKAHEAD + 1;
    int32_t code = (int32_t)(r->acc >> (64 - len));
    while (code > d->maxcode[len]) {
        len++;
        code = (int32_t)(r->acc >> (64 - len));
    }
    if (len > 16)
        bench_fail("corrupt Huffman code");
    r->acc <<= len;
    r->n -= len;
    return d->val[d->valoffset[len] + code];
}

static inline int extend(unsigned v, int s) /* T.81 F.2.2.1 EXTEND */
{
    return s == 0 ? 0 : v < (1u << (s - 1)) ? (int)v - (1 << s) + 1 : (int)v;
}

static void idct(const int32_t *f, uint8_t *out, int stride)
{
    int32_t g[8][8];
    for (int v = 0; v < 8; v++) {
        const int32_t *row = f + 8 * v;
        if (!(row[1] | row[2] | row[3] | row[4] | row[5] | row[6] | row[7])) {
            int32_t dc = (row[0] * idct_tab[0][0] + 512) >> 10;
            for (int x = 0; x < 8; x++)
                g[v][x] = dc;
            continue;
        }
        for (int x = 0; x < 8; x++) {
            int32_t acc = 0;
            for (int u = 0; u < 8; u++)
                acc += row[u] * idct_tab[x][u];
            g[v][x] = (acc + 512) >> 10;
        }
    }
    for (int y = 0; y < 8; y++)
        for (int x = 0; x < 8; x++) {
            int32_t acc = 0;
            for (int v = 0; v < 8; v++)
                acc += g[v][x] * idct_tab[y][v];
            out[y * stride + x] = clamp255(((acc + (1 << 13)) >> 14) + 128);
        }
}

static void decode_frame(const struct huff_dec dec[4])
{
    struct bit_reader r = { stream, stream + stream_len, 0, 0 };
    int pred[3] = { 0, 0, 0 };
    uint8_t pix[6][64];
    for (int my = 0; my < MCUS_Y; my++)
        for (int mx = 0; mx < MCUS_X; mx++) {
            for (int blk = 0; blk < 6; blk++) {
                int comp = blk < 4 ? 0 : blk - 3, t = comp ? 1 : 0;
                const int *q = qtab[t];
                int32_t f[64];
                for (int k = 0; k < 64; k++)
                    f[k] = 0;
                int s = decode_symbol(&r, &dec[2 * t]);
                pred[comp] += extend(get_bits(&r, s), s);
                f[0] = pred[comp] * q[0];
                for (int k = 1; k < 64; k++) {
                    int rs = decode_symbol(&r, &dec[2 * t + 1]);
                    int run = rs >> 4;
                    s = rs & 15;
                    if (s == 0) {
                        if (run != 15)
                            break; /* EOB */
                        k += 15;   /* ZRL */
                        continue;
                    }
                    k += run;
                    if (k > 63)
                        bench_fail("corrupt AC run");
                    int z = zigzag[k];
                    f[z] = extend(get_bits(&r, s), s) * q[z];
                }
                idct(f, pix[blk], 8);
            }
            /* 4:2:0 upsampling by replication and JFIF YCbCr -> RGB (16-bit fixed point). */
            for (int y = 0; y < 16; y++)
                for (int x = 0; x < 16; x++) {
                    int Y = pix[(y / 8) * 2 + x / 8][(y % 8) * 8 + x % 8] << 16;
                    int cb = pix[4][(y / 2) * 8 + x / 2] - 128, cr = pix[5][(y / 2) * 8 + x / 2] - 128;
                    uint8_t *o = out_rgb[my * 16 + y][mx * 16 + x];
                    o[0] = clamp255((Y + 91881 * cr + 32768) >> 16);
                    o[1] = clamp255((Y - 22554 * cb - 46802 * cr + 32768) >> 16);
                    o[2] = clamp255((Y + 116130 * cb + 32768) >> 16);
                }
        }
}

uint64_t bench_run(uint32_t scale)
{
    make_tables();
    make_image();
    transform_all();
    static long freq[4][256];
    struct huff_spec spec[4];
    static struct huff_enc enc[4];
    static struct huff_dec dec[4];
    entropy_code(0, freq, enc);
    for (int t = 0; t < 4; t++) {
        optimal_table(freq[t], &spec[t]);
        encoder_table(&spec[t], &enc[t]);
        decoder_table(&spec[t], &dec[t]);
    }
    entropy_code(1, freq, enc);

    uint64_t sum = bench_mix(0, stream_len), first = 0;
    for (uint32_t frame = 0; frame < scale; frame++) {
        decode_frame(dec);
        uint64_t h = 0;
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x += 8)
                h = bench_mix(h, (uint64_t)out_rgb[y][x][0] | (uint64_t)out_rgb[y][x + 3][1] << 8 |
                                     (uint64_t)out_rgb[y][x + 5][2] << 16 | (uint64_t)y << 24);
        if (frame == 0) {
            first = h;
            uint64_t err = 0;
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++)
                    for (int c = 0; c < 3; c++) {
                        int d = out_rgb[y][x][c] - src_rgb[y][x][c];
                        err += (uint64_t)(d < 0 ? -d : d);
                    }
            if (err >= 12ull * H * W * 3)
                bench_fail("the decoded image is far from the source");
        } else if (h != first)
            bench_fail("two decodes of the same data differ");
        sum = bench_mix(sum, h);
    }
    return sum;
}
