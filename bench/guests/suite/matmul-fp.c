/*
 * matmul-fp - dense double-precision matrix multiply, C = A x B for 128 x 128 matrices (128 KiB each), i-k-j loop
 * order (gcc -O2 vectorizes the inner loop to SSE2 mulpd/addpd: no FMA in x86-64-v2). Written for this suite.
 * Entries are in [-1, 1) and A is rebuilt for every multiplication, so no value drifts toward overflow or
 * denormals. Self-check: every 17th element of C against its dot product summed in the same order (bit-equal).
 *
 * Work: scale multiplications (2.1 M multiply-adds each).
 */
#include "bench.h"

const struct bench_kernel bench_kernel = { "matmul-fp", 36 };

#define MATMUL_N 128
#define MATMUL_ELEM double
#include "../kernels/matmul.h"

static double unit_random(uint64_t *s) /* uniform in [-1, 1), 53 random bits */
{
    return (double)(int64_t)(bench_random(s) >> 10) * 0x1p-53 - 1.0;
}

uint64_t bench_run(uint32_t scale)
{
    uint64_t s = 0xF10A7u;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++)
            b[i][j] = unit_random(&s);
    uint64_t sum = 0;
    for (uint32_t r = 0; r < scale; r++) {
        uint64_t sa = 0xA0000u + r;
        for (int i = 0; i < N; i++)
            for (int j = 0; j < N; j++)
                a[i][j] = unit_random(&sa);
        multiply();
        for (int n = 0; n < N * N; n += 17) {
            int i = n / N, j = n % N;
            double want = dot(i, j);
            if (bench_bits(want) != bench_bits(c[i][j]))
                bench_fail("an element of C differs from its dot product");
        }
        for (int i = 0; i < N; i++)
            sum = bench_mix(sum, bench_bits(c[i][i]) ^ bench_bits(c[i][N - 1 - i]) >> 1);
    }
    return sum;
}
