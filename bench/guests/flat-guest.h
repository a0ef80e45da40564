/*
 * flat-guest.h - the Paravirt side of a program built from one C file two ways: -DPARAVIRT_GUEST gives a freestanding
 * guest (flat binary at 0x100000, entry _start, rdi = boot info, rsp = top of memory, hypercall page at 0x3000),
 * otherwise a static Linux program. bench/guests/compute.c and the emulator tests' Guests/fpmix.c include it inside
 * their #ifdef PARAVIRT_GUEST, define guest_main and end it with flat_guest_finish.
 *
 * It gives: the hypercall page call, the memset/memcpy a compiler may emit for a freestanding program, and _start.
 */
#ifndef BENCH_FLAT_GUEST_H
#define BENCH_FLAT_GUEST_H

#include <stddef.h>
#include <stdint.h>

#define HYPERCALL_PAGE 0x3000ul
#define HC_EXIT 0x0002
#define HC_DEBUG_WRITE 0x0003

static long hypercall2(long code, long a1, long a2)
{
    long ret = code;
    __asm__ volatile("call *%[page]"
                     : "+a"(ret)
                     : [page] "r"(HYPERCALL_PAGE), "D"(a1), "S"(a2)
                     : "memory", "cc");
    return ret;
}

void *memset(void *d, int c, size_t n)
{
    uint8_t *p = d;
    while (n--)
        *p++ = (uint8_t)c;
    return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
    uint8_t *p = d;
    const uint8_t *q = s;
    while (n--)
        *p++ = *q++;
    return d;
}

/* Writes the program's output through debug_write and exits with status 0. */
__attribute__((noreturn)) static void flat_guest_finish(const char *output, size_t n)
{
    hypercall2(HC_DEBUG_WRITE, (long)output, (long)n);
    hypercall2(HC_EXIT, 0, 0);
    for (;;)
        __asm__ volatile("hlt");
}

/* The includer's entry point: boot_info is the BootInfo address the host passed in rdi. */
__attribute__((noreturn)) void guest_main(void *boot_info);

__asm__(".section .text.start,\"ax\",@progbits\n"
        ".globl _start\n"
        "_start:\n"
        "    and $-16, %rsp\n"
        "    call guest_main\n"
        "1:  hlt\n"
        "    jmp 1b\n"
        ".previous\n");

#endif
