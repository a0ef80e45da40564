/*
 * matmul-int - dense 32-bit integer matrix multiply, C = A x B for 128 x 128 matrices (64 KiB each), in the
 * cache-friendly i-k-j loop order (the inner loop streams a row of B and a row of C, which gcc -O2 vectorizes with
 * SSE4.1 pmulld). Arithmetic wraps modulo 2^32 (unsigned), as integer GEMMs do. Written for this suite. Self-check:
 * every 17th element of C against its dot product computed the naive i-j-k way.
 *
 * Work: scale multiplications (2.1 M multiply-adds each); A changes between them.
 */
#include "bench.h"

const struct bench_kernel bench_kernel = { "matmul-int", 64 };

#define MATMUL_N 128
#define MATMUL_ELEM uint32_t
#include "../kernels/matmul.h"

uint64_t bench_run(uint32_t scale)
{
    uint64_t s = 0x3A7817u;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            a[i][j] = (uint32_t)bench_random(&s);
            b[i][j] = (uint32_t)bench_random(&s) >> (j & 15); /* a spread of magnitudes */
        }
    uint64_t sum = 0;
    for (uint32_t r = 0; r < scale; r++) {
        multiply();
        for (int n = 0; n < N * N; n += 17) {
            int i = n / N, j = n % N;
            uint32_t want = dot(i, j);
            if (want != c[i][j])
                bench_fail("an element of C differs from its dot product");
        }
        for (int i = 0; i < N; i++)
            sum = bench_mix(sum, (uint64_t)c[i][i] << 32 | c[i][N - 1 - i]);
        for (int i = 0; i < N; i++) /* the next A is this C, rotated, so no two multiplications are alike */
            for (int j = 0; j < N; j++)
                a[i][j] = c[(i + 1) % N][j] ^ (uint32_t)r;
    }
    return sum;
}
