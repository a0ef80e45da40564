/*
 * runtime.c: start-up checks and the hypercall wrappers of the public API (paravirt/paravirt.h).
 */
#include <paravirt/paravirt.h>

uintptr_t pv_hypercall_entry;
static const pv_boot_info *pv_boot;

/* The boot-info fields this runtime reads: everything up to and including features0. */
#define PV_BOOT_INFO_MIN_SIZE (offsetof(pv_boot_info, features0) + sizeof(uint64_t))

/* Nothing can be reported without a hypercall page: stop the vCPU for good. Under KVM an in-kernel LAPIC may
   absorb HLT, so the host sees a hang rather than an exit; the emulator reports a halt. That is the one case in
   which the runtime does not end with the exit hypercall. */
static void __attribute__((noreturn)) pv_halt_forever(void)
{
    for (;;) {
        __asm__ volatile("cli; hlt" ::: "memory");
    }
}

void pv_runtime_init(const pv_boot_info *boot_info)
{
    if (boot_info == NULL || boot_info->size < offsetof(pv_boot_info, hypercall_page) + sizeof(uint64_t)) {
        pv_halt_forever();
    }
    uint64_t page = boot_info->hypercall_page;
    if (page == 0 || (page & (PV_HYPERCALL_PAGE_SIZE - 1)) != 0 ||
        *(const volatile uint32_t *)pv_virt(page + PV_HYPERCALL_PAGE_MAGIC_OFFSET) != PV_HYPERCALL_PAGE_MAGIC) {
        pv_halt_forever();
    }
    pv_hypercall_entry = (uintptr_t)pv_virt(page + PV_HYPERCALL_PAGE_ENTRY_OFFSET);
    pv_boot = boot_info;
    if (boot_info->size < PV_BOOT_INFO_MIN_SIZE) {
        pv_panic("boot info is %u bytes, the runtime needs at least %u (host too old?)",
                 (unsigned)boot_info->size, (unsigned)PV_BOOT_INFO_MIN_SIZE);
    }
}

const pv_boot_info *pv_boot_info_get(void)
{
    return pv_boot;
}

long pv_version(void)
{
    return pv_hypercall0(PV_HYPERCALL_VERSION);
}

long pv_features(uint32_t word)
{
    return pv_hypercall1(PV_HYPERCALL_FEATURES, word);
}

long pv_accept_features(uint32_t word, uint64_t bits)
{
    return pv_hypercall2(PV_HYPERCALL_ACCEPT_FEATURES, word, bits);
}

void pv_exit(int status)
{
    pv_hypercall1(PV_HYPERCALL_EXIT, (uint64_t)(int64_t)status);
    /* The exit hypercall does not return; a host that resumes us anyway gets a halted vCPU. */
    pv_halt_forever();
}

/* Writes all of buf with hypercall `code`, retrying on short writes; the loop ends because every pass either
   advances or returns. */
static long pv_write_all(uint64_t code, const void *buf, size_t len)
{
    const char *p = buf;
    size_t done = 0;
    while (done < len) {
        long n = pv_hypercall2(code, pv_phys(p + done), len - done);
        if (n == PV_STATUS_TRY_AGAIN) {
            continue; /* the host's output queue is full (a slow reader); the host already waited a little */
        }
        if (n < 0) {
            return done > 0 ? (long)done : n;
        }
        if (n == 0 || (size_t)n > len - done) {
            break;
        }
        done += (size_t)n;
    }
    return (long)done;
}

long pv_console_write(const void *buf, size_t len)
{
    return pv_write_all(PV_HYPERCALL_CONSOLE_WRITE, buf, len);
}

long pv_debug_write(const void *buf, size_t len)
{
    return pv_write_all(PV_HYPERCALL_DEBUG_WRITE, buf, len);
}

uint64_t pv_clock_monotonic_ns(void)
{
    return (uint64_t)pv_hypercall0(PV_HYPERCALL_CLOCK_MONOTONIC);
}

uint64_t pv_clock_wall_ns(void)
{
    long t = pv_hypercall0(PV_HYPERCALL_CLOCK_WALL);
    return t < 0 ? 0 : (uint64_t)t;
}

long pv_poll(uint64_t deadline_ns, uint64_t events)
{
    return pv_hypercall2(PV_HYPERCALL_POLL, deadline_ns, events);
}

long pv_yield(void)
{
    return pv_hypercall0(PV_HYPERCALL_YIELD);
}

long pv_timer_set(uint64_t deadline_ns, unsigned vector)
{
    return pv_hypercall2(PV_HYPERCALL_TIMER_SET, deadline_ns, vector);
}

/* Formats the message, then the panic hypercall (which does not return on a 1.1 host); on an older host, the 1.0
   behaviour: "panic: <message>" on the debug output and exit status 255. */
static void __attribute__((noreturn)) pv_panic_v(const pv_panic_frame *frame, const char *fmt, va_list ap)
{
    char buf[256];
    static const char prefix[] = "panic: ";
    size_t n = pv_vformat(buf, sizeof(buf) - 1, prefix, fmt, ap); /* room left for the newline */
    if (pv_hypercall_entry != 0) {
        pv_hypercall3(PV_HYPERCALL_PANIC, (uint64_t)(uintptr_t)(buf + sizeof(prefix) - 1), n - (sizeof(prefix) - 1),
                      (uint64_t)(uintptr_t)frame);
        buf[n++] = '\n';
        pv_debug_write(buf, n);
        pv_exit(255);
    }
    pv_halt_forever();
}

void pv_panic(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pv_panic_v(NULL, fmt, ap);
}

void pv_panic_at(const pv_panic_frame *frame, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pv_panic_v(frame, fmt, ap);
}
