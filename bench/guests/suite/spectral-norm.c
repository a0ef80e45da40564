/*
 * spectral-norm - the spectral norm of the infinite matrix A(i,j) = 1 / ((i+j)(i+j+1)/2 + i + 1) by the power
 * method on A^T A (ten iterations), as in the Computer Language Benchmarks Game's spectral-norm. Double precision;
 * every matrix element is recomputed (a divsd each), as the benchmark specifies. Written for this suite from the
 * benchmark's description. Self-check: for n = 100 the result is the published 1.274219991.
 *
 * Work: one spectral norm of an n x n truncation with n = 50 x scale (the default, 14, is n = 700).
 */
#include "bench.h"

const struct bench_kernel bench_kernel = { "spectral-norm", 14 };

#define MAX_N 5000
static double u[MAX_N], v[MAX_N], tmp[MAX_N];

static inline double a(long i, long j) { return 1.0 / (double)((i + j) * (i + j + 1) / 2 + i + 1); }

/* y = A x, or y = A^T x when transpose (element (i, j) of A^T is A(j, i)). */
static inline __attribute__((always_inline)) void mul(long n, const double *x, double *y, int transpose)
{
    for (long i = 0; i < n; i++) {
        double s = 0;
        for (long j = 0; j < n; j++)
            s += (transpose ? a(j, i) : a(i, j)) * x[j];
        y[i] = s;
    }
}

static void mul_av(long n, const double *x, double *y) { mul(n, x, y, 0); }
static void mul_atv(long n, const double *x, double *y) { mul(n, x, y, 1); }

static void mul_atav(long n, const double *x, double *y)
{
    mul_av(n, x, tmp);
    mul_atv(n, tmp, y);
}

static double spectral_norm(long n)
{
    for (long i = 0; i < n; i++)
        u[i] = 1;
    for (int k = 0; k < 10; k++) {
        mul_atav(n, u, v);
        mul_atav(n, v, u);
    }
    double vbv = 0, vv = 0;
    for (long i = 0; i < n; i++) {
        vbv += u[i] * v[i];
        vv += v[i] * v[i];
    }
    return __builtin_sqrt(vbv / vv);
}

uint64_t bench_run(uint32_t scale)
{
    if (scale > MAX_N / 50)
        bench_fail("scale is at most 100");
    double check = spectral_norm(100);
    if (check - 1.274219991 > 5e-10 || 1.274219991 - check > 5e-10)
        bench_fail("the spectral norm for n = 100 is not the benchmark's 1.274219991");
    long n = 50L * scale;
    double r = spectral_norm(n);
    uint64_t sum = bench_mix(bench_bits(check), bench_bits(r));
    for (long i = 0; i < n; i += 7)
        sum = bench_mix(sum, bench_bits(u[i]));
    return sum;
}
