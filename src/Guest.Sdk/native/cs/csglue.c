/*
 * csglue.c: the native half of the C# guest runtime (src/Guest.Sdk/cs/CoreLib), linked with the C runtime
 * (start.S, runtime.c, note.c, ...) and the object file the NativeAOT compiler (ILC) made from the guest's
 * assemblies.
 *
 *   main()            start.S calls it after pv_runtime_init(); it enters the compiler-generated
 *                     __managed__Main (which runs the C# Main) and returns its status to start.S -> pv_exit.
 *   pv_cs_hypercall() one hypercall through the hypercall page, for Paravirt.Guest.Hypercall.
 *   __security_cookie the canary value of the compiler's stack-overrun checks.
 *   pv_cs_alloc()     the managed heap: a bump allocator over [boot_info.heap_start, memory_size - 64 KiB)
 *                     (the top 64 KiB stay free, as for the C drivers' page allocator); zeroed memory, 8-byte
 *                     aligned, never freed (no GC). Exhaustion is fatal: pv_panic, exit status 255.
 */
#include <paravirt/paravirt.h>

#define PV_CS_HEAP_RESERVE 0x10000u

extern int __managed__Main(int argc, char **argv);

/* The stack-buffer-overrun canary the compiler checks in methods with stackalloc (a fixed value: a guest has no
   entropy source at boot, and the check is for bugs, not attackers). A mismatch calls RhpFallbackFailFast. */
uintptr_t __security_cookie = 0x2B992DDFA2320000u;

static uint64_t pv_cs_heap_next;
static uint64_t pv_cs_heap_end;

long pv_cs_hypercall(uint64_t code, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5)
{
    return pv_hypercall5(code, a1, a2, a3, a4, a5);
}

void *pv_cs_alloc(size_t size)
{
    if (pv_cs_heap_end == 0) {
        const pv_boot_info *bi = pv_boot_info_get();
        uint64_t start = (bi->heap_start + 15u) & ~(uint64_t)15u;
        uint64_t end = bi->memory_size > PV_CS_HEAP_RESERVE ? bi->memory_size - PV_CS_HEAP_RESERVE : 0;
        pv_cs_heap_next = start;
        pv_cs_heap_end = end > start ? end : start + 1;
    }
    uint64_t rounded = ((uint64_t)size + 7u) & ~(uint64_t)7u;
    if (rounded < size || rounded > pv_cs_heap_end - pv_cs_heap_next) {
        pv_panic("out of memory: C# allocation of %lu bytes, %lu left on the heap", (unsigned long)size,
                 (unsigned long)(pv_cs_heap_end - pv_cs_heap_next));
    }
    void *p = (void *)(uintptr_t)pv_cs_heap_next;
    pv_cs_heap_next += rounded;
    memset(p, 0, (size_t)rounded);
    return p;
}

int main(void)
{
    static char name[] = "guest";
    static char *argv[] = { name, NULL };
    return __managed__Main(1, argv);
}
