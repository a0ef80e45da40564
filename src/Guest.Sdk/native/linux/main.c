/*
 * main.c: the library OS's entry (kmain, called by entry.S on the boot stack) and small helpers.
 */
#include "kernel.h"

bool kverbose;
bool kstrace;   /* "strace" on the command line: every system call and its result on the debug output */
bool kpftrace;  /* "pftrace": every page fault */

void kmain(u64 boot_info_phys);

void kmain(u64 boot_info_phys)
{
    const pv_boot_info *bi = phys_to_virt(boot_info_phys);
    pv_runtime_init(bi);
    if (bi->size < sizeof(pv_boot_info)) {
        panic("the host's boot info is %u bytes; the Linux personality needs ABI 1.1 (%u bytes)", bi->size,
              (unsigned)sizeof(pv_boot_info));
    }
    kverbose = pv_cmdline_get("verbose", NULL, 0) >= 0;
    kstrace = pv_cmdline_get("strace", NULL, 0) >= 0;
    kpftrace = pv_cmdline_get("pftrace", NULL, 0) >= 0;
    pv_accept_features(0, PV_FEATURE0_CONSOLE | PV_FEATURE0_WALL_CLOCK | PV_FEATURE0_POLL | PV_FEATURE0_DEVICES |
                              PV_FEATURE0_ENTROPY | PV_FEATURE0_TIMER);
    cpu_init();
    sched_init();
    pmm_init(bi->heap_start, bi->memory_size);

    u64 app_phys = 0, app_size = 0;
    if (bi->boot_modules != 0 && bi->boot_module_count <= 64) {
        const pv_boot_module *m = phys_to_virt(bi->boot_modules);
        for (u32 i = 0; i < bi->boot_module_count; i++) {
            if (m[i].kind == PV_BOOT_MODULE_KIND_LINUX_EXECUTABLE) {
                app_phys = m[i].address;
                app_size = m[i].size;
            }
        }
    }
    if (app_phys == 0 || (app_phys & (PAGE_SIZE - 1)) != 0 || app_phys + app_size > bi->heap_start) {
        panic("no usable application boot module");
    }
    vm_init(app_phys, app_size);
    vm_activate();
    fs_init();
    exec_start(bi);
}

/* The drivers' shared pages (rings, console page) come from the frame allocator. */
void *pv_page_alloc(size_t count)
{
    u64 phys = pmm_alloc_contig(count);
    return phys == 0 ? NULL : phys_to_virt(phys);
}

size_t pv_page_available(void)
{
    return (size_t)(pmm_free_pages() * PAGE_SIZE);
}

void kprintf(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    size_t n = pv_vformat(buf, sizeof(buf), "", fmt, ap);
    va_end(ap);
    if (n > 0) {
        pv_debug_write(buf, n);
    }
}

void panic(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    size_t n = pv_vformat(buf, sizeof(buf) - 1, "paravirt-linux: panic: ", fmt, ap); /* room left for the newline */
    va_end(ap);
    buf[n++] = '\n';
    pv_debug_write(buf, n);
    pv_exit(255);
}

long host_random(void *buf, u64 len)
{
    u8 *p = buf;
    while (len > 0) {
        u64 n = MIN(len, 4096ull);
        long r = pv_hypercall2(PV_HYPERCALL_RANDOM, virt_to_phys(p), n);
        if (r <= 0) {
            return r < 0 ? r : -EIO;
        }
        p += r;
        len -= (u64)r;
    }
    return 0;
}

u64 kstrlen(const char *s)
{
    u64 n = 0;
    while (s[n]) {
        n++;
    }
    return n;
}

int kstrcmp(const char *a, const char *b)
{
    return strcmp(a, b);
}

bool kstartswith(const char *s, const char *prefix)
{
    while (*prefix) {
        if (*s++ != *prefix++) {
            return false;
        }
    }
    return true;
}
