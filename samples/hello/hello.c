/*
 * hello: the smallest useful Paravirt unikernel.
 *
 * Checks that the host speaks an ABI this image can use, greets, prints the ABI and the host's wall-clock time
 * (ISO-8601, UTC), and exits with status 7 so a test can see the status travel back to the host.
 */
#include <paravirt/paravirt.h>

/* Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's civil_from_days), integers only. */
static void civil_from_days(int64_t days, int64_t *year, unsigned *month, unsigned *day)
{
    days += 719468;
    const int64_t era = (days >= 0 ? days : days - 146096) / 146097;
    const uint64_t doe = (uint64_t)(days - era * 146097);                      /* [0, 146096] */
    const uint64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* [0, 399] */
    const uint64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);              /* [0, 365] */
    const uint64_t mp = (5 * doy + 2) / 153;                                   /* [0, 11] */
    *day = (unsigned)(doy - (153 * mp + 2) / 5 + 1);                           /* [1, 31] */
    *month = (unsigned)(mp < 10 ? mp + 3 : mp - 9);                            /* [1, 12] */
    *year = (int64_t)yoe + era * 400 + (*month <= 2);
}

int main(void)
{
    long version = pv_version();
    if (version < 0) {
        pv_printf("hello: the version hypercall failed (status %ld)\n", version);
        return 3;
    }
    /* Same rule as the host's loader: same major, and the host's minor at least the one this image was built for. */
    int host_major = (int)PV_ABI_VERSION_MAJOR_OF((unsigned long)version);
    int host_minor = (int)PV_ABI_VERSION_MINOR_OF((unsigned long)version);
    if (host_major != PV_ABI_VERSION_MAJOR || host_minor < PV_ABI_VERSION_MINOR) {
        pv_printf("hello: ABI mismatch: built for %d.%d, host speaks %d.%d\n",
                  PV_ABI_VERSION_MAJOR, PV_ABI_VERSION_MINOR, host_major, host_minor);
        return 3;
    }

    pv_puts("Hello from a Paravirt unikernel!");
    pv_printf("hello: ABI %d.%d (host %d.%d)\n", PV_ABI_VERSION_MAJOR, PV_ABI_VERSION_MINOR, host_major, host_minor);

    if ((pv_boot_info_get()->features0 & PV_FEATURE0_WALL_CLOCK) != 0) {
        uint64_t secs = pv_clock_wall_ns() / 1000000000u;
        int64_t year;
        unsigned month, day;
        civil_from_days((int64_t)(secs / 86400), &year, &month, &day);
        unsigned sod = (unsigned)(secs % 86400);
        pv_printf("hello: wall clock %04lld-%02u-%02uT%02u:%02u:%02uZ\n",
                  (long long)year, month, day, sod / 3600, sod / 60 % 60, sod % 60);
    } else {
        pv_puts("hello: wall clock not offered by this host");
    }

    pv_puts("hello: exiting with status 7");
    return 7;
}
