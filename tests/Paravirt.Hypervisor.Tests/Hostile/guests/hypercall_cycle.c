/*
 * hypercall_cycle: a hostile guest that calls `count=N` distinct hypercall codes nobody registered (from
 * `first=C` on, skipping the user-defined range), then exits 0. The host's statistics and metrics must not keep
 * one entry per code.
 */
#include <paravirt/paravirt.h>

int main(void)
{
    uint64_t first = pv_cmdline_u64("first", 0x20000);
    uint64_t count = pv_cmdline_u64("count", 100000);
    for (uint64_t i = 0; i < count; i++) {
        long r = pv_hypercall0(first + i);
        if (r != PV_STATUS_NOT_IMPLEMENTED) {
            pv_printf("hypercall_cycle: code 0x%lx answered %ld\n", (unsigned long)(first + i), r);
            return 1;
        }
    }
    return 0;
}
