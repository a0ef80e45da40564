/*
 * native_runner: runs a Paravirt guest image directly on the host CPU, in this (Linux x86-64) process, as a smoke
 * test of the C runtime before any backend exists. Not a sandbox and not a backend: the guest shares the process.
 *
 *   native_runner IMAGE.elf      prints the guest's console output, exits with the guest's exit status
 *
 * Each PT_LOAD is mapped at its link address (MAP_FIXED_NOREPLACE, 1 MiB and up is free in a normal process).
 * The boot info and the hypercall page live wherever mmap puts them: the runtime only uses the addresses the boot
 * info gives it. The hypercall page stub is `jmp *0(%rip)` to a trampoline that saves every register the guest
 * expects preserved (all but rax, including SSE state), calls dispatch(), and returns to the guest.
 * Exit codes of the runner itself: 120 bad usage/image, 121 the guest returned from _start.
 */
#define _GNU_SOURCE
#include <elf.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <paravirt/abi.h>

long pv_runner_dispatch(uint64_t code, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5);
void pv_runner_trampoline(void);

__asm__(
    ".text\n"
    ".globl pv_runner_trampoline\n"
    "pv_runner_trampoline:\n"
    "    push %rbp\n"
    "    mov %rsp, %rbp\n"
    "    push %rdi; push %rsi; push %rdx; push %rcx; push %r8; push %r9; push %r10; push %r11\n"
    "    and $-64, %rsp\n"
    "    sub $512, %rsp\n"
    "    fxsave64 (%rsp)\n"
    "    mov %r8, %r9\n"       /* a5 */
    "    mov %r10, %r8\n"      /* a4 */
    "    mov %rdx, %rcx\n"     /* a3 */
    "    mov %rsi, %rdx\n"     /* a2 */
    "    mov %rdi, %rsi\n"     /* a1 */
    "    mov %rax, %rdi\n"     /* code */
    "    call pv_runner_dispatch\n"
    "    fxrstor64 (%rsp)\n"
    "    lea -64(%rbp), %rsp\n"
    "    pop %r11; pop %r10; pop %r9; pop %r8; pop %rcx; pop %rdx; pop %rsi; pop %rdi\n"
    "    pop %rbp\n"
    "    ret\n");

static uint64_t g_features = PV_FEATURE0_CONSOLE | PV_FEATURE0_WALL_CLOCK;

static uint64_t now_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

long pv_runner_dispatch(uint64_t code, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5)
{
    switch (code) {
    case PV_HYPERCALL_VERSION:
        return PV_ABI_VERSION_PACKED;
    case PV_HYPERCALL_FEATURES:
        return a1 == 0 ? (long)g_features : 0;
    case PV_HYPERCALL_EXIT:
        _exit((int)(a1 & 0xFF));
    case PV_HYPERCALL_DEBUG_WRITE:
    case PV_HYPERCALL_CONSOLE_WRITE: {
        ssize_t n = write(code == PV_HYPERCALL_DEBUG_WRITE ? 2 : 1, (const void *)(uintptr_t)a1, (size_t)a2);
        return n < 0 ? PV_STATUS_IO_ERROR : (long)n;
    }
    case PV_HYPERCALL_CLOCK_MONOTONIC:
        return (long)now_ns(CLOCK_MONOTONIC);
    case PV_HYPERCALL_CLOCK_WALL:
        return (long)now_ns(CLOCK_REALTIME);
    case PV_HYPERCALL_YIELD:
        return 0;
    case PV_HYPERCALL_RANGE_USER_FIRST + 1:
    case PV_HYPERCALL_RANGE_USER_FIRST + 2:
    case PV_HYPERCALL_RANGE_USER_FIRST + 3:
    case PV_HYPERCALL_RANGE_USER_FIRST + 4:
    case PV_HYPERCALL_RANGE_USER_FIRST + 5: {
        /* Test calls USER_FIRST + n: sum of i * a_i over the first n arguments, which proves each argument
           arrives in its register (rdi, rsi, rdx, r10, r8). */
        uint64_t n = code - PV_HYPERCALL_RANGE_USER_FIRST;
        return (long)(a1 + (n >= 2 ? 2 * a2 : 0) + (n >= 3 ? 3 * a3 : 0) + (n >= 4 ? 4 * a4 : 0) + (n >= 5 ? 5 * a5 : 0));
    }
    default:
        return PV_STATUS_NOT_IMPLEMENTED;
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: native_runner IMAGE.elf\n");
        return 120;
    }
    FILE *f = fopen(argv[1], "rb");
    if (f == NULL) {
        perror(argv[1]);
        return 120;
    }
    static unsigned char file[4 << 20];
    size_t size = fread(file, 1, sizeof(file), f);
    fclose(f);
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)file;
    if (size < sizeof(*eh) || memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_machine != EM_X86_64 ||
        eh->e_type != ET_EXEC || eh->e_phentsize != sizeof(Elf64_Phdr) ||
        eh->e_phoff + (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr) > size) {
        fprintf(stderr, "native_runner: %s is not an x86-64 ELF executable\n", argv[1]);
        return 120;
    }
    for (int i = 0; i < eh->e_phnum; i++) {
        const Elf64_Phdr *ph = (const Elf64_Phdr *)(file + eh->e_phoff) + i;
        if (ph->p_type != PT_LOAD || ph->p_memsz == 0) {
            continue;
        }
        if (ph->p_offset + ph->p_filesz > size || ph->p_filesz > ph->p_memsz || ph->p_vaddr < PV_ENTRY_IMAGE_MIN_ADDRESS) {
            fprintf(stderr, "native_runner: bad PT_LOAD %d\n", i);
            return 120;
        }
        uint64_t start = ph->p_vaddr & ~(uint64_t)0xFFF;
        uint64_t end = (ph->p_vaddr + ph->p_memsz + 0xFFF) & ~(uint64_t)0xFFF;
        void *p = mmap((void *)(uintptr_t)start, end - start, PROT_READ | PROT_WRITE | PROT_EXEC,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        if (p != (void *)(uintptr_t)start) {
            fprintf(stderr, "native_runner: cannot map 0x%llx-0x%llx\n", (unsigned long long)start, (unsigned long long)end);
            return 120;
        }
        memcpy((void *)(uintptr_t)ph->p_vaddr, file + ph->p_offset, ph->p_filesz);
    }

    unsigned char *page = mmap(NULL, PV_HYPERCALL_PAGE_SIZE, PROT_READ | PROT_WRITE | PROT_EXEC,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED) {
        return 120;
    }
    /* jmp *0(%rip); .quad pv_runner_trampoline */
    static const unsigned char stub[6] = { 0xFF, 0x25, 0x00, 0x00, 0x00, 0x00 };
    memcpy(page + PV_HYPERCALL_PAGE_ENTRY_OFFSET, stub, sizeof(stub));
    uint64_t target = (uint64_t)(uintptr_t)&pv_runner_trampoline;
    memcpy(page + PV_HYPERCALL_PAGE_ENTRY_OFFSET + sizeof(stub), &target, sizeof(target));
    uint32_t magic = PV_HYPERCALL_PAGE_MAGIC, version = PV_ABI_VERSION_PACKED;
    memcpy(page + PV_HYPERCALL_PAGE_MAGIC_OFFSET, &magic, 4);
    memcpy(page + PV_HYPERCALL_PAGE_VERSION_OFFSET, &version, 4);

    static pv_boot_info boot;
    boot.size = sizeof(boot);
    boot.abi_major = PV_ABI_VERSION_MAJOR;
    boot.abi_minor = PV_ABI_VERSION_MINOR;
    boot.hypercall_page = (uint64_t)(uintptr_t)page;
    boot.vcpu_count = 1;
    boot.features0 = g_features;

    fflush(stdout);
    /* Enter the guest: rdi = boot info; _start switches to its own stack and never returns. */
    __asm__ volatile("call *%1" : : "D"(&boot), "r"((uintptr_t)eh->e_entry) : "memory");
    return 121;
}
