/*
 * paravirt/linux.h: user-defined hypercalls from a Linux application running on the Paravirt Linux personality.
 *
 * The application is an ordinary static Linux program (glibc or musl); the library OS under it forwards two extra
 * system call numbers to the host (see PV_LINUX_* in paravirt/abi.h):
 *
 *     long r = pv_linux_hypercall(0x1000, 21, 0, 0, 0, 0);            // values only
 *     long r = pv_linux_hypercall_buffer(0x1001, buf, len, 0, 0, 0);  // buf travels to the host and back
 *
 * Only codes of the user-defined range (PV_HYPERCALL_RANGE_USER_FIRST..LAST, registered by the host application)
 * are forwarded; others return -EINVAL. The result is the host handler's (>= 0 success, negative: a PV_STATUS_*,
 * which are errno values). On plain Linux both return -ENOSYS (-38): pv_linux_on_paravirt() tells the two apart.
 *
 * Header-only and libc-free: the system call is issued directly.
 */
#ifndef PARAVIRT_LINUX_H
#define PARAVIRT_LINUX_H

#include <stddef.h>
#include <stdint.h>

#include "abi.h"

#ifdef __cplusplus
extern "C" {
#endif

static inline long pv_linux_syscall6(long nr, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6)
{
    long ret;
    register uint64_t r10 __asm__("r10") = a4;
    register uint64_t r8 __asm__("r8") = a5;
    register uint64_t r9 __asm__("r9") = a6;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(nr), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}

/* User-defined hypercall `code` with five value arguments; returns the host's result. */
static inline long pv_linux_hypercall(uint32_t code, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5)
{
    return pv_linux_syscall6(PV_LINUX_HYPERCALL_SYSCALL, code, a1, a2, a3, a4, a5);
}

/* User-defined hypercall `code` whose first two arguments are a buffer: the host reads and may write
 * buf[0..len) (len <= PV_LINUX_MAX_HYPERCALL_BUFFER); returns the host's result. */
static inline long pv_linux_hypercall_buffer(uint32_t code, void *buf, size_t len, uint64_t a3, uint64_t a4, uint64_t a5)
{
    return pv_linux_syscall6(PV_LINUX_HYPERCALL_BUFFER_SYSCALL, code, (uint64_t)(uintptr_t)buf, len, a3, a4, a5);
}

/* 1 when running on the Paravirt Linux personality, 0 on plain Linux. */
static inline int pv_linux_on_paravirt(void)
{
    /* code 0 is outside the user range: the library OS answers -EINVAL (22), Linux -ENOSYS (38) */
    return pv_linux_hypercall(0, 0, 0, 0, 0, 0) == -22;
}

#ifdef __cplusplus
}
#endif

#endif /* PARAVIRT_LINUX_H */
