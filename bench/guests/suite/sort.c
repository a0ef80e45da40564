/*
 * sort - sorting 32-bit keys two textbook ways: quicksort (Hoare partitioning around a median of three, insertion
 * sort below 16 elements, recursion on the smaller side so the stack stays O(log n); Sedgewick, "Implementing
 * Quicksort Programs", CACM 1978) and a top-down merge sort with one scratch buffer (alternating the roles of the
 * buffers per level; Knuth TAOCP vol. 3, 5.2.4). Written for this suite. Self-checks: both results are ordered
 * and equal, and the key sum is unchanged.
 *
 * Work: one sort of scale x 16384 keys by each algorithm (the default, 64, sorts 1 Mi keys = 4 MiB); at most 128.
 */
#include "bench.h"

const struct bench_kernel bench_kernel = { "sort", 64 };

#define MAX_KEYS (128u * 16384u)
static uint32_t input[MAX_KEYS], quick[MAX_KEYS], merged[MAX_KEYS], scratch[MAX_KEYS];

static void insertion_sort(uint32_t *v, long lo, long hi)
{
    for (long i = lo + 1; i <= hi; i++) {
        uint32_t x = v[i];
        long j = i - 1;
        while (j >= lo && v[j] > x) {
            v[j + 1] = v[j];
            j--;
        }
        v[j + 1] = x;
    }
}

static void swap(uint32_t *v, long i, long j)
{
    uint32_t t = v[i];
    v[i] = v[j];
    v[j] = t;
}

static void quicksort(uint32_t *v, long lo, long hi)
{
    while (hi - lo >= 16) {
        long mid = lo + (hi - lo) / 2;
        if (v[mid] < v[lo])
            swap(v, mid, lo);
        if (v[hi] < v[lo])
            swap(v, hi, lo);
        if (v[hi] < v[mid])
            swap(v, hi, mid);
        uint32_t pivot = v[mid];
        long i = lo - 1, j = hi + 1;
        for (;;) {
            do
                i++;
            while (v[i] < pivot);
            do
                j--;
            while (v[j] > pivot);
            if (i >= j)
                break;
            swap(v, i, j);
        }
        if (j - lo < hi - j) {
            quicksort(v, lo, j);
            lo = j + 1;
        } else {
            quicksort(v, j + 1, hi);
            hi = j;
        }
    }
    insertion_sort(v, lo, hi);
}

/* Sorts src[lo, hi) into dst[lo, hi); src and dst hold the same keys on entry. */
static void merge_sort(uint32_t *src, uint32_t *dst, size_t lo, size_t hi)
{
    if (hi - lo < 2)
        return;
    size_t mid = lo + (hi - lo) / 2;
    merge_sort(dst, src, lo, mid);
    merge_sort(dst, src, mid, hi);
    size_t i = lo, j = mid, k = lo;
    while (i < mid && j < hi)
        dst[k++] = src[j] < src[i] ? src[j++] : src[i++];
    while (i < mid)
        dst[k++] = src[i++];
    while (j < hi)
        dst[k++] = src[j++];
}

uint64_t bench_run(uint32_t scale)
{
    if (scale > MAX_KEYS / 16384u)
        bench_fail("scale is at most 128 (2 Mi keys)");
    size_t n = (size_t)scale * 16384u;
    uint64_t s = 0x50127u, total = 0;
    for (size_t i = 0; i < n; i++) {
        /* Mostly random keys, with runs of duplicates and a sorted stretch, as real data has. */
        uint32_t key = (uint32_t)(bench_random(&s) >> 32);
        if (i % 64 < 4)
            key &= 0xFF;
        else if (i > n / 2 && i < n / 2 + n / 16)
            key = (uint32_t)i * 3u;
        input[i] = quick[i] = merged[i] = scratch[i] = key;
        total += key;
    }
    quicksort(quick, 0, (long)n - 1);
    merge_sort(scratch, merged, 0, n);
    uint64_t sum = 0, check = 0;
    for (size_t i = 0; i < n; i++) {
        if (quick[i] != merged[i] || (i > 0 && quick[i - 1] > quick[i]))
            bench_fail("the two sorts disagree or are not ordered");
        check += quick[i];
        if ((i & 1023) == 0)
            sum = bench_mix(sum, (uint64_t)quick[i] << 32 | input[i]);
    }
    if (check != total)
        bench_fail("the keys changed while sorting");
    return bench_mix(sum, n);
}
