/*
 * runtime.c - the entry point and I/O of every benchmark kernel: one static ELF that runs unchanged
 *   - natively on Linux and under qemu-x86_64: `KERNEL.elf [SCALE]` (the scale is argv[1]);
 *   - as a Paravirt guest: `paravirt run KERNEL.elf --cmdline SCALE` (the scale is the command line).
 * So the three runners execute the very same machine code. No libc: output is one write, then exit.
 *
 * Which world we are in is decided from the registers at _start: the Paravirt entry convention (paravirt/abi.h,
 * PV_ENTRY_*) passes the boot info address in rdi, while Linux (and qemu-user) start a process with rdi = 0 (the
 * kernel's ELF_PLAT_INIT clears the general registers). The boot info is then checked (its size and ABI major)
 * before it is used.
 *
 * The image carries the Paravirt ABI note (as every guest does; Linux ignores unknown notes) and is linked at
 * PV_ENTRY_IMAGE_MIN_ADDRESS by bench/guests/build-suite.sh. It runs on its own 256 KiB stack in .bss in both
 * worlds, so the kernels see the same addresses everywhere.
 */
#include "bench.h"

#include <paravirt/abi.h>

__attribute__((used, section(".note.paravirt"), aligned(4))) static const struct {
    uint32_t namesz, descsz, type;
    char name[(sizeof(PV_NOTE_NAME) + 3) & ~(size_t)3];
    pv_abi_note desc;
} abi_note = {
    sizeof(PV_NOTE_NAME), sizeof(pv_abi_note), PV_NOTE_TYPE_ABI, PV_NOTE_NAME, { PV_ABI_VERSION_MAJOR, PV_ABI_VERSION_MINOR, 0 },
};

#define STACK_SIZE (256 * 1024)
__attribute__((aligned(16))) static uint8_t stack[STACK_SIZE];
uint8_t *const bench_stack_top = stack + STACK_SIZE;

static const pv_boot_info *boot; /* null when running as a Linux process */

void *memcpy(void *dst, const void *src, size_t n)
{
    void *d = dst;
    __asm__ volatile("rep movsb" : "+D"(d), "+S"(src), "+c"(n) : : "memory");
    return dst;
}

void *memset(void *dst, int c, size_t n)
{
    void *d = dst;
    __asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
    return dst;
}

static long hypercall2(long code, long a1, long a2)
{
    long ret = code;
    __asm__ volatile("call *%[entry]"
                     : "+a"(ret)
                     : [entry] "r"(boot->hypercall_page + PV_HYPERCALL_PAGE_ENTRY_OFFSET), "D"(a1), "S"(a2)
                     : "memory", "cc");
    return ret;
}

static long linux_syscall3(long nr, long a1, long a2, long a3)
{
    long ret = nr;
    __asm__ volatile("syscall" : "+a"(ret) : "D"(a1), "S"(a2), "d"(a3) : "rcx", "r11", "memory");
    return ret;
}

static void write_out(const char *s, size_t n)
{
    if (boot)
        hypercall2(PV_HYPERCALL_DEBUG_WRITE, (long)s, (long)n);
    else
        linux_syscall3(1 /* write */, 1, (long)s, (long)n);
}

__attribute__((noreturn)) static void exit_with(int status)
{
    if (boot)
        hypercall2(PV_HYPERCALL_EXIT, status, 0);
    else
        linux_syscall3(231 /* exit_group */, status, 0, 0);
    for (;;)
        __asm__ volatile("hlt");
}

static size_t append(char *out, size_t n, const char *s)
{
    while (*s)
        out[n++] = *s++;
    return n;
}

__attribute__((noreturn)) void bench_fail(const char *why)
{
    char line[160];
    size_t n = append(line, 0, bench_kernel.name);
    n = append(line, n, " FAIL ");
    for (const char *p = why; *p && n < sizeof line - 1; p++)
        line[n++] = *p;
    line[n++] = '\n';
    write_out(line, n);
    exit_with(1);
}

/* The first decimal number in s[0..n) (leading blanks skipped), or `fallback` when there is none or it is 0. */
static uint32_t parse_scale(const char *s, size_t n, uint32_t fallback)
{
    size_t i = 0;
    while (i < n && (s[i] == ' ' || s[i] == '\t'))
        i++;
    uint64_t v = 0;
    size_t digits = 0;
    for (; i < n && s[i] >= '0' && s[i] <= '9' && digits < 9; i++, digits++)
        v = v * 10 + (uint64_t)(s[i] - '0');
    if (i < n && s[i] != ' ' && s[i] != '\t' && s[i] != '\0')
        bench_fail("the argument must be a scale (a positive decimal number)");
    return v == 0 ? fallback : (uint32_t)v;
}

static size_t cstrlen(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

__attribute__((noreturn, used)) void bench_start(const pv_boot_info *boot_info, const uint64_t *initial_sp)
{
    uint32_t scale;
    if (boot_info) {
        if (boot_info->size < 48 || boot_info->abi_major != PV_ABI_VERSION_MAJOR)
            for (;;)
                __asm__ volatile("hlt"); /* not a host this image understands: nothing can be printed */
        boot = boot_info;
        const char *cmd = boot->command_line ? (const char *)boot->command_line : "";
        scale = parse_scale(cmd, boot->command_line ? boot->command_line_length : 0, bench_kernel.default_scale);
    } else {
        uint64_t argc = initial_sp[0];
        const char *arg = argc > 1 ? (const char *)initial_sp[2] : "";
        scale = parse_scale(arg, cstrlen(arg), bench_kernel.default_scale);
    }

    uint64_t sum = bench_run(scale);

    char line[96];
    size_t n = append(line, 0, bench_kernel.name);
    n = append(line, n, " scale=");
    char digits[10];
    int d = 0;
    do {
        digits[d++] = (char)('0' + scale % 10);
        scale /= 10;
    } while (scale);
    while (d)
        line[n++] = digits[--d];
    n = append(line, n, " checksum=");
    for (int k = 15; k >= 0; k--)
        line[n++] = "0123456789abcdef"[(sum >> (4 * k)) & 0xF];
    line[n++] = '\n';
    write_out(line, n);
    exit_with(0);
}

/* rdi = boot info (Paravirt) or 0 (Linux); rsp = the host's stack (Paravirt) or argc/argv (Linux). */
__asm__(".section .text.start,\"ax\",@progbits\n"
        ".globl _start\n"
        ".type _start, @function\n"
        "_start:\n"
        "    cld\n"
        "    xorl %ebp, %ebp\n"
        "    movq %rsp, %rsi\n"
        "    movq bench_stack_top(%rip), %rsp\n"
        "    call bench_start\n"
        "1:  hlt\n"
        "    jmp 1b\n"
        ".previous\n");
