/*
 * fft - complex fast Fourier transform of 16384 points (256 KiB of doubles): iterative radix-2 Cooley-Tukey,
 * decimation in time, bit-reversal permutation first, twiddle factors from a table (Cormen et al., "Introduction to
 * Algorithms", 30.3). The inverse transform is the forward one on conjugates, scaled by 1/n. Written for this
 * suite. The twiddles are built without libm: cos and sin of 2 pi / 2^k by the half-angle formulas from cos(pi/2) =
 * 0 (sqrtsd and divsd only), and every other factor as a product of those, so every IEEE machine computes the same
 * bits. Self-checks: the transform of a unit impulse is all ones, and a forward plus inverse transform gives back
 * the input within 1e-9.
 *
 * Work: scale forward + inverse transform pairs of fresh random data.
 */
#include "bench.h"

const struct bench_kernel bench_kernel = { "fft", 40 };

#define LOG2N 14
#define N (1 << LOG2N)

struct cpx {
    double re, im;
};

static struct cpx data[N], orig[N], twiddle[N / 2]; /* twiddle[k] = exp(-2 pi i k / N) */

static void make_twiddles(void)
{
    /* pow2[j] = exp(-2 pi i 2^j / N): the angle 2 pi 2^j / N = pi / 2^(LOG2N - 1 - j). */
    struct cpx pow2[LOG2N];
    double c = 0, s = 1; /* cos and sin of pi / 2 */
    for (int j = LOG2N - 3; j >= 0; j--) {
        double ch = __builtin_sqrt((1 + c) / 2); /* half angle */
        s = s / (2 * ch);
        c = ch;
        pow2[j] = (struct cpx){ c, -s };
    }
    pow2[LOG2N - 2] = (struct cpx){ 0, -1 }; /* angle pi / 2 */
    pow2[LOG2N - 1] = (struct cpx){ -1, 0 }; /* angle pi (not used below N / 2) */
    twiddle[0] = (struct cpx){ 1, 0 };
    for (int k = 1; k < N / 2; k++) {
        int low = __builtin_ctz((unsigned)k);
        struct cpx a = twiddle[k & (k - 1)], b = pow2[low];
        twiddle[k] = (struct cpx){ a.re * b.re - a.im * b.im, a.re * b.im + a.im * b.re };
    }
}

static void fft(struct cpx *x, int inverse)
{
    for (unsigned i = 1, j = 0; i < N; i++) {
        unsigned bit = N >> 1;
        for (; j & bit; bit >>= 1)
            j ^= bit;
        j ^= bit;
        if (i < j) {
            struct cpx t = x[i];
            x[i] = x[j];
            x[j] = t;
        }
    }
    for (int len = 2; len <= N; len <<= 1) {
        int half = len / 2, step = N / len;
        for (int start = 0; start < N; start += len)
            for (int k = 0; k < half; k++) {
                struct cpx w = twiddle[k * step];
                if (inverse)
                    w.im = -w.im;
                struct cpx a = x[start + k], b = x[start + k + half];
                struct cpx t = { b.re * w.re - b.im * w.im, b.re * w.im + b.im * w.re };
                x[start + k] = (struct cpx){ a.re + t.re, a.im + t.im };
                x[start + k + half] = (struct cpx){ a.re - t.re, a.im - t.im };
            }
    }
    if (inverse)
        for (int i = 0; i < N; i++) {
            x[i].re *= 1.0 / N;
            x[i].im *= 1.0 / N;
        }
}

static double unit_random(uint64_t *s) { return (double)(int64_t)(bench_random(s) >> 10) * 0x1p-53 - 1.0; }

uint64_t bench_run(uint32_t scale)
{
    make_twiddles();
    for (int i = 0; i < N; i++)
        data[i] = (struct cpx){ i == 0, 0 };
    fft(data, 0);
    for (int i = 0; i < N; i++)
        if (data[i].re != 1.0 || data[i].im != 0.0)
            bench_fail("the transform of a unit impulse is not all ones");
    uint64_t s = 0xFF7u, sum = 0;
    for (uint32_t r = 0; r < scale; r++) {
        for (int i = 0; i < N; i++)
            data[i] = orig[i] = (struct cpx){ unit_random(&s), unit_random(&s) };
        fft(data, 0);
        for (int i = 0; i < N; i += 97)
            sum = bench_mix(sum, bench_bits(data[i].re) ^ bench_bits(data[i].im) >> 3);
        fft(data, 1);
        double worst = 0;
        for (int i = 0; i < N; i++) {
            double dr = data[i].re - orig[i].re, di = data[i].im - orig[i].im;
            dr = dr < 0 ? -dr : dr;
            di = di < 0 ? -di : di;
            worst = dr > worst ? dr : worst;
            worst = di > worst ? di : worst;
        }
        if (!(worst < 1e-9))
            bench_fail("forward then inverse transform does not give back the input");
        sum = bench_mix(sum, bench_bits(worst));
    }
    return sum;
}
