/*
 * linux-c: an ordinary C program, linked statically against glibc (samples/linux-c) or musl (samples/linux-musl),
 * that runs unchanged as a Paravirt guest on the Linux personality and natively. Its output depends only on its
 * arguments, environment and standard input, so the tests compare the two runs byte for byte.
 *
 * It exercises: argv/envp, printf with %f/%e/%g, malloc/realloc/free, qsort, libm, pthreads (threads, a mutex, a
 * condition variable, join), clock_gettime/nanosleep, reading standard input to end of file, the exit status.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define THREADS 4
#define PER_THREAD 250000

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t turn_changed = PTHREAD_COND_INITIALIZER;
static int turn;
static uint64_t total;
static char order[THREADS * 2 + 1];

struct work {
    int index;
    uint64_t sum;
};

static void *worker(void *arg)
{
    struct work *w = arg;
    for (uint64_t i = 0; i < PER_THREAD; i++) {
        w->sum += (i * (uint64_t)(w->index + 1)) % 7;
    }
    /* take turns in index order: a condition variable handing the lock around */
    pthread_mutex_lock(&lock);
    while (turn != w->index) {
        pthread_cond_wait(&turn_changed, &lock);
    }
    total += w->sum;
    size_t n = strlen(order);
    order[n] = (char)('A' + w->index);
    turn++;
    pthread_cond_broadcast(&turn_changed);
    pthread_mutex_unlock(&lock);
    return w;
}

static int compare(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static uint32_t next_random(uint32_t *state)
{
    *state = *state * 1103515245u + 12345u; /* the same sequence on every libc */
    return (*state >> 16) & 0x7fff;
}

int main(int argc, char **argv)
{
    printf("linux-c: %d argument(s):", argc - 1);
    for (int i = 1; i < argc; i++) {
        printf(" [%s]", argv[i]);
    }
    printf("\n");
    fflush(stdout); /* the first line leaves at once: bench/linux.sh times the start-up to main by it */
    const char *sample = getenv("PARAVIRT_SAMPLE");
    printf("environment: PARAVIRT_SAMPLE=%s HOME=%s\n", sample ? sample : "(unset)", getenv("HOME") ? "set" : "(unset)");

    /* floating point and libm */
    double x = 2.0;
    printf("sqrt(2) = %.12f, pi = %.10f, e = %e\n", sqrt(x), 4.0 * atan(1.0), exp(1.0));
    printf("sin(1) = %.9f, cos(1) = %.9f, pow(1.5, 7.25) = %.6g, log10(12345) = %.8f\n", sin(1.0), cos(1.0),
           pow(1.5, 7.25), log10(12345.0));
    float f = 1.0f / 3.0f;
    printf("1/3 as float %.8f, as double %.17g\n", f, 1.0 / 3.0);

    /* the heap: many blocks, grown and freed */
    size_t live = 0;
    char **blocks = calloc(1000, sizeof(char *));
    for (int i = 0; i < 1000; i++) {
        blocks[i] = malloc((size_t)(i % 97) * 16 + 1);
        memset(blocks[i], i & 0xff, (size_t)(i % 97) * 16 + 1);
        live += (size_t)(i % 97) * 16 + 1;
    }
    for (int i = 0; i < 1000; i += 2) {
        blocks[i] = realloc(blocks[i], 4096 + (size_t)i);
        blocks[i][4095] = 1;
    }
    char *big = malloc(8 << 20); /* large: mmap in both libcs */
    memset(big, 0x5a, 8 << 20);
    long check = 0;
    for (size_t i = 0; i < (8u << 20); i += 4096) {
        check += big[i];
    }
    free(big);
    for (int i = 0; i < 1000; i++) {
        free(blocks[i]);
    }
    free(blocks);
    printf("heap: %zu bytes in 1000 blocks, 8 MiB block checksum %ld\n", live, check);

    /* qsort */
    uint32_t state = 42;
    int numbers[2000];
    for (int i = 0; i < 2000; i++) {
        numbers[i] = (int)next_random(&state) - 16384;
    }
    qsort(numbers, 2000, sizeof(int), compare);
    int sorted = 1;
    for (int i = 1; i < 2000; i++) {
        sorted &= numbers[i - 1] <= numbers[i];
    }
    printf("qsort: %s, min %d, median %d, max %d\n", sorted ? "sorted" : "NOT SORTED", numbers[0], numbers[1000], numbers[1999]);

    /* threads */
    pthread_t threads[THREADS];
    struct work work[THREADS];
    for (int i = THREADS - 1; i >= 0; i--) {
        work[i].index = i;
        work[i].sum = 0;
        if (pthread_create(&threads[i], NULL, worker, &work[i]) != 0) {
            printf("pthread_create failed\n");
            return 1;
        }
    }
    for (int i = 0; i < THREADS; i++) {
        void *r;
        pthread_join(threads[i], &r);
    }
    printf("threads: %d joined, total %llu, turns %s\n", THREADS, (unsigned long long)total, order);

    /* time */
    struct timespec t0, t1, pause = { 0, 20 * 1000 * 1000 };
    clock_gettime(CLOCK_MONOTONIC, &t0);
    nanosleep(&pause, NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double slept = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("nanosleep(20 ms): %s\n", slept >= 0.020 ? "at least 20 ms passed" : "TOO SHORT");

    /* standard input to end of file */
    char line[256];
    int lines = 0;
    size_t bytes = 0;
    while (fgets(line, sizeof(line), stdin) != NULL) {
        lines++;
        bytes += strlen(line);
        line[strcspn(line, "\n")] = 0;
        printf("stdin %d: %s\n", lines, line);
    }
    printf("stdin: %d line(s), %zu byte(s), then end of file\n", lines, bytes);
    return 3;
}
