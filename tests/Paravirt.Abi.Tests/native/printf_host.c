/*
 * Runs the guest runtime's formatter (src/Guest.Sdk/native/runtime/printf.c) on the host and compares each result
 * with the host libc's snprintf. Prints one line per failure and "N failures" last; exit status 1 on failure.
 * Built by GuestRuntimeTests with: gcc -O2 -fno-builtin -I<native>/include printf_host.c <native>/runtime/printf.c
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

int pv_snprintf(char *buf, size_t size, const char *fmt, ...);
int pv_printf(const char *fmt, ...);

static char console[512];
static size_t console_len;

/* The formatter's only dependency on the hypercall layer. */
long pv_console_write(const void *buf, size_t len)
{
    if (console_len + len < sizeof(console)) {
        memcpy(console + console_len, buf, len);
        console_len += len;
    }
    return (long)len;
}

static int failures;

#define CHECK(expected, ...)                                                                                    \
    do {                                                                                                       \
        char got[96], ref[96];                                                                                 \
        int n = pv_snprintf(got, sizeof got, __VA_ARGS__);                                                    \
        int m = snprintf(ref, sizeof ref, __VA_ARGS__);                                                        \
        if (strcmp(got, expected) != 0 || strcmp(ref, expected) != 0 || n != m) {                              \
            printf("FAIL %s: pv '%s' (%d), libc '%s' (%d), expected '%s'\n", #__VA_ARGS__, got, n, ref, m,     \
                   expected);                                                                                  \
            failures++;                                                                                        \
        }                                                                                                      \
    } while (0)

int main(void)
{
    CHECK("-5", "%d", -5);
    CHECK("   -5", "%5d", -5);
    CHECK("-0005", "%05d", -5);
    CHECK("-5   |", "%-5d|", -5);
    CHECK("42", "%i", 42);
    CHECK("-2147483648", "%d", (int)INT32_MIN);
    CHECK("4294967295", "%u", 4294967295u);
    CHECK("abc", "%x", 0xabcu);
    CHECK("ABC", "%X", 0xabcu);
    CHECK("00000abc", "%08x", 0xabcu);
    CHECK("ffffffffffffffff", "%lx", (unsigned long)-1L);
    CHECK("18446744073709551615", "%llu", 18446744073709551615ULL);
    CHECK("-9223372036854775808", "%lld", (long long)INT64_MIN);
    CHECK("-1", "%ld", -1L);
    CHECK("7", "%zu", (size_t)7);
    CHECK("0x1000", "%p", (void *)0x1000);
    CHECK("x|a  |", "%c|%-3s|", 'x', "a");
    CHECK("  hi", "%4s", "hi");
    CHECK("100%", "%d%%", 100);
    CHECK("2026-11-24T10:11:12Z", "%04d-%02u-%02uT%02u:%02u:%02uZ", 2026, 11u, 24u, 10u, 11u, 12u);
    CHECK("Hello from a Paravirt unikernel!", "%s", "Hello from a Paravirt unikernel!");

    char small[4];
    int n = pv_snprintf(small, sizeof small, "%s", "hello");
    if (n != 5 || strcmp(small, "hel") != 0) {
        printf("FAIL truncation: '%s' (%d)\n", small, n);
        failures++;
    }
    n = pv_snprintf(NULL, 0, "%d", 12345);
    if (n != 5) {
        printf("FAIL size 0: %d\n", n);
        failures++;
    }

    /* pv_printf stages output in a 128-byte buffer: a longer line must arrive whole and in order. */
    char line[300];
    for (int i = 0; i < 299; i++) {
        line[i] = (char)('a' + i % 26);
    }
    line[299] = '\0';
    n = pv_printf("[%s]", line);
    if (n != 301 || console_len != 301 || console[0] != '[' || memcmp(console + 1, line, 299) != 0 || console[300] != ']') {
        printf("FAIL pv_printf: returned %d, console %zu bytes\n", n, console_len);
        failures++;
    }

    printf("%d failures\n", failures);
    return failures != 0;
}
