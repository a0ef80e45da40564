/*
 * runtime_selftest: a guest that exercises the C runtime (run by GuestRuntimeTests under native_runner).
 * Prints "selftest: N checks, M failed" and then deliberately panics, so the test also sees pv_panic's output on the
 * debug stream and its exit status 255.
 */
#include <paravirt/paravirt.h>

#define SELFTEST_PRINTF(...) pv_printf("selftest: " __VA_ARGS__)
#include "selftest.h"

static uint64_t zeroed[512];             /* .bss: must read as zero */
static volatile uint64_t initialised = 0x1122334455667788ull; /* .data */

struct big {
    char bytes[300];
};

static struct big make_big(char c)
{
    struct big b;
    memset(&b, c, sizeof b);
    return b;
}

int main(void)
{
    const pv_boot_info *bi = pv_boot_info_get();
    CHECK(bi != NULL && bi->size >= 64);
    CHECK(pv_version() == (long)PV_ABI_VERSION_PACKED);
    CHECK(pv_features(0) == (long)bi->features0);
    CHECK(pv_features(12345) == 0);

    int all_zero = 1;
    for (size_t i = 0; i < sizeof zeroed / sizeof zeroed[0]; i++) {
        all_zero &= zeroed[i] == 0;
    }
    CHECK(all_zero);
    CHECK(initialised == 0x1122334455667788ull);

    /* Every argument register, and the registers the stub must preserve, survive a hypercall. */
    CHECK(pv_hypercall5(PV_HYPERCALL_RANGE_USER_FIRST + 5, 1, 10, 100, 1000, 10000) == 1 + 20 + 300 + 4000 + 50000);
    CHECK(pv_hypercall4(PV_HYPERCALL_RANGE_USER_FIRST + 4, 7, 0, 0, 3) == 7 + 12);
    CHECK(pv_hypercall3(PV_HYPERCALL_RANGE_USER_FIRST + 3, 0, 0, 5) == 15);
    volatile uint64_t keep[6] = { 11, 22, 33, 44, 55, 66 };
    uint64_t sum = 0;
    for (int i = 0; i < 6; i++) {
        sum += pv_hypercall2(PV_HYPERCALL_RANGE_USER_FIRST + 2, keep[i], (uint64_t)i) + keep[5 - i];
    }
    CHECK(sum == (11 + 22 + 33 + 44 + 55 + 66) * 2 + 2 * (0 + 1 + 2 + 3 + 4 + 5));
    CHECK(pv_hypercall1(PV_HYPERCALL_RANGE_USER_FIRST + 1, 99) == 99);
    CHECK(pv_hypercall0(0x0FFF) == PV_STATUS_NOT_IMPLEMENTED);

    uint64_t t0 = pv_clock_monotonic_ns(), t1 = pv_clock_monotonic_ns();
    CHECK(t1 >= t0 && t0 > 0);
    CHECK(pv_clock_wall_ns() > 1600000000ull * 1000000000ull);

    /* libc pieces, including the calls gcc emits itself for struct copies. */
    struct big a = make_big('x'), b = a;
    CHECK(b.bytes[0] == 'x' && b.bytes[299] == 'x');
    char buf[32] = "abcdefghij";
    memmove(buf + 2, buf, 8);
    CHECK(memcmp(buf, "ababcdefgh", 10) == 0);
    memmove(buf, buf + 2, 8);
    CHECK(memcmp(buf, "abcdefghgh", 10) == 0);
    memcpy(buf, "hello", 6);
    CHECK(strlen(buf) == 5 && strcmp(buf, "hello") == 0);
    CHECK(strcmp("abc", "abd") < 0 && strcmp("abd", "abc") > 0 && strcmp("", "") == 0);
    CHECK(strncmp("abcX", "abcY", 3) == 0 && strncmp("ab", "abc", 3) < 0);
    CHECK(memcmp("\x01", "\xff", 1) < 0);

    char out[64];
    CHECK(pv_snprintf(out, sizeof out, "%s=%d/%u/%x/%05ld", "v", -3, 7u, 255u, 42L) == 15);
    CHECK(strcmp(out, "v=-3/7/ff/00042") == 0);

    pv_printf("selftest: %d checks, %d failed\n", checks, failed);
    if (failed != 0) {
        return 1;
    }
    pv_panic("selftest done %d", 42);
}
