/*
 * matmul.h - the dense matrix multiply of the suite's matmul-int.c and matmul-fp.c: C = A x B for N x N matrices in
 * the cache-friendly i-k-j loop order (the inner loop streams a row of B and a row of C, which gcc -O2 vectorizes),
 * and the same element computed the naive i-j-k way for the self-checks. One loop, two element types: the includer
 * defines MATMUL_N and MATMUL_ELEM (the element type) before including it.
 */
#ifndef BENCH_KERNELS_MATMUL_H
#define BENCH_KERNELS_MATMUL_H

#define N MATMUL_N
static MATMUL_ELEM a[N][N], b[N][N], c[N][N];

static void multiply(void)
{
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < N; j++)
            c[i][j] = 0;
        for (int k = 0; k < N; k++) {
            MATMUL_ELEM aik = a[i][k];
            for (int j = 0; j < N; j++)
                c[i][j] += aik * b[k][j];
        }
    }
}

/* Element (i, j) of A x B as a dot product, summed in the order multiply() sums it (so bit-equal for doubles). */
static inline MATMUL_ELEM dot(int i, int j)
{
    MATMUL_ELEM d = 0;
    for (int k = 0; k < N; k++)
        d += a[i][k] * b[k][j];
    return d;
}

#endif
