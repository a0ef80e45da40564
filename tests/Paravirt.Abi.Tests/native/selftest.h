/*
 * selftest.h - what the native self-tests share: the check counters and CHECK, which counts a check and reports a
 * failed one with its line. The includer defines SELFTEST_PRINTF first: printf in a host program (ring_selftest.c),
 * pv_printf in a guest (runtime_selftest.c).
 */
#ifndef PARAVIRT_SELFTEST_H
#define PARAVIRT_SELFTEST_H

static int checks, failed;

#define CHECK(cond)                                                                                                \
    do {                                                                                                           \
        checks++;                                                                                                  \
        if (!(cond)) {                                                                                             \
            failed++;                                                                                              \
            SELFTEST_PRINTF("FAILED line %d: %s\n", __LINE__, #cond);                                              \
        }                                                                                                          \
    } while (0)

#endif
