/*
 * string.c: the libc pieces a freestanding guest needs. gcc emits calls to memcpy, memmove, memset and memcmp
 * for struct copies and large initialisers even with -ffreestanding, so they must exist.
 *
 * Byte loops on purpose: small, obviously correct, and plain moves for the emulator. The
 * optimize("no-tree-loop-distribute-patterns") attribute stops gcc from turning these loops back into calls to
 * themselves.
 */
#include <paravirt/paravirt.h>

#define PV_NO_LIBCALL __attribute__((optimize("no-tree-loop-distribute-patterns")))

PV_NO_LIBCALL void *memcpy(void *dst, const void *src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;
    for (size_t i = 0; i < n; i++) {
        d[i] = s[i];
    }
    return dst;
}

PV_NO_LIBCALL void *memmove(void *dst, const void *src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;
    if ((uintptr_t)d - (uintptr_t)s >= n) {
        /* No harmful overlap (dst before src, or disjoint): copy forwards. */
        for (size_t i = 0; i < n; i++) {
            d[i] = s[i];
        }
    } else {
        for (size_t i = n; i > 0; i--) {
            d[i - 1] = s[i - 1];
        }
    }
    return dst;
}

PV_NO_LIBCALL void *memset(void *dst, int c, size_t n)
{
    unsigned char *d = dst;
    for (size_t i = 0; i < n; i++) {
        d[i] = (unsigned char)c;
    }
    return dst;
}

PV_NO_LIBCALL int memcmp(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a, *y = b;
    for (size_t i = 0; i < n; i++) {
        if (x[i] != y[i]) {
            return x[i] < y[i] ? -1 : 1;
        }
    }
    return 0;
}

PV_NO_LIBCALL size_t strlen(const char *s)
{
    size_t n = 0;
    while (s[n] != '\0') {
        n++;
    }
    return n;
}

int strcmp(const char *a, const char *b)
{
    const unsigned char *x = (const unsigned char *)a, *y = (const unsigned char *)b;
    while (*x != '\0' && *x == *y) {
        x++;
        y++;
    }
    return (*x > *y) - (*x < *y);
}

int strncmp(const char *a, const char *b, size_t n)
{
    const unsigned char *x = (const unsigned char *)a, *y = (const unsigned char *)b;
    for (size_t i = 0; i < n; i++) {
        if (x[i] != y[i] || x[i] == '\0') {
            return (x[i] > y[i]) - (x[i] < y[i]);
        }
    }
    return 0;
}
