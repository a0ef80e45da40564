/*
 * write_flood: a hostile guest that writes console output with the console_write hypercall forever, in 64 KiB
 * pieces. With a reader that never reads, the host's vCPU thread must not block in the write.
 */
#include <paravirt/paravirt.h>

static char chunk[64 * 1024];

int main(void)
{
    memset(chunk, 'y', sizeof(chunk));
    for (;;) {
        pv_hypercall2(PV_HYPERCALL_CONSOLE_WRITE, (uint64_t)(uintptr_t)chunk, sizeof(chunk));
        pv_hypercall2(PV_HYPERCALL_DEBUG_WRITE, (uint64_t)(uintptr_t)chunk, 16);
    }
}
