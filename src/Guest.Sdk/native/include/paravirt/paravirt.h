/*
 * paravirt/paravirt.h: the public API of the Paravirt C guest runtime.
 *
 * A guest is a freestanding x86-64 program: the runtime's _start (start.S) switches to its own 64 KiB stack,
 * clears .bss, calls pv_runtime_init() with the boot info the host passed in rdi, then calls
 *
 *     int main(void);
 *
 * and ends the guest with the exit hypercall and main's return value (the host's exit status).
 *
 * Hypercall convention (see paravirt/abi.h): rax = function code, arguments in rdi, rsi, rdx, r10, r8, result in
 * rax (>= 0 success, < 0 a PV_STATUS_* code). The guest never traps itself: it calls the stub on the hypercall
 * page whose address the host put in pv_boot_info.hypercall_page; the stub preserves every register but rax.
 */
#ifndef PARAVIRT_PARAVIRT_H
#define PARAVIRT_PARAVIRT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "abi.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Hypercalls -------------------------------------------------------------------------------------------- */

/* Entry of the hypercall page stub (boot_info->hypercall_page + PV_HYPERCALL_PAGE_ENTRY_OFFSET); set by
 * pv_runtime_init before main runs. */
extern uintptr_t pv_hypercall_entry;

/*
 * pv_hypercallN(code, a1..aN): one hypercall. The stub is reached with `call`, so the asm pushes a return address
 * below rsp: guests are compiled with -mno-red-zone, which makes that safe anywhere. "memory" because the host
 * reads and writes guest buffers; "cc" because the stub may change flags.
 */
static inline long pv_hypercall0(uint64_t code)
{
    long ret;
    __asm__ volatile("call *%[entry]"
                     : "=a"(ret)
                     : "a"(code), [entry] "r"(pv_hypercall_entry)
                     : "memory", "cc");
    return ret;
}

static inline long pv_hypercall1(uint64_t code, uint64_t a1)
{
    long ret;
    __asm__ volatile("call *%[entry]"
                     : "=a"(ret)
                     : "a"(code), "D"(a1), [entry] "r"(pv_hypercall_entry)
                     : "memory", "cc");
    return ret;
}

static inline long pv_hypercall2(uint64_t code, uint64_t a1, uint64_t a2)
{
    long ret;
    __asm__ volatile("call *%[entry]"
                     : "=a"(ret)
                     : "a"(code), "D"(a1), "S"(a2), [entry] "r"(pv_hypercall_entry)
                     : "memory", "cc");
    return ret;
}

static inline long pv_hypercall3(uint64_t code, uint64_t a1, uint64_t a2, uint64_t a3)
{
    long ret;
    __asm__ volatile("call *%[entry]"
                     : "=a"(ret)
                     : "a"(code), "D"(a1), "S"(a2), "d"(a3), [entry] "r"(pv_hypercall_entry)
                     : "memory", "cc");
    return ret;
}

static inline long pv_hypercall4(uint64_t code, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4)
{
    long ret;
    register uint64_t r10 __asm__("r10") = a4;
    __asm__ volatile("call *%[entry]"
                     : "=a"(ret)
                     : "a"(code), "D"(a1), "S"(a2), "d"(a3), "r"(r10), [entry] "r"(pv_hypercall_entry)
                     : "memory", "cc");
    return ret;
}

static inline long pv_hypercall5(uint64_t code, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5)
{
    long ret;
    register uint64_t r10 __asm__("r10") = a4;
    register uint64_t r8 __asm__("r8") = a5;
    __asm__ volatile("call *%[entry]"
                     : "=a"(ret)
                     : "a"(code), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8), [entry] "r"(pv_hypercall_entry)
                     : "memory", "cc");
    return ret;
}

/* ---- Guest-physical addresses ------------------------------------------------------------------------------- */

/*
 * Hypercalls, rings and device requests carry guest-physical addresses. A guest image starts identity mapped
 * (PV_ENTRY_*), so for it a pointer is its guest-physical address. A guest that builds its own page tables with all
 * of guest memory mapped at a fixed virtual offset (the Linux personality maps it at 0xffff800000000000) compiles
 * the runtime with -DPV_PHYS_OFFSET=<offset>; the runtime and drivers convert every address with these two.
 */
#ifndef PV_PHYS_OFFSET
#define PV_PHYS_OFFSET 0
#endif

static inline uint64_t pv_phys(const volatile void *p)
{
    return (uint64_t)(uintptr_t)p - (uint64_t)PV_PHYS_OFFSET;
}

static inline void *pv_virt(uint64_t phys)
{
    return (void *)(uintptr_t)(phys + (uint64_t)PV_PHYS_OFFSET);
}

/* ---- Runtime ----------------------------------------------------------------------------------------------- */

/* Called by _start before main. Validates the boot info (size covers the fields the runtime reads) and the
 * hypercall page (magic == PV_HYPERCALL_PAGE_MAGIC). If the page is unusable nothing can be reported, so the
 * vCPU stops in a `cli; hlt` loop; a too-small boot info with a good page is reported and exits with 255. */
void pv_runtime_init(const pv_boot_info *boot_info);

/* The boot info the host passed at entry (never NULL once main runs). */
const pv_boot_info *pv_boot_info_get(void);

/* The host's ABI version, packed (PV_ABI_VERSION_MAJOR_OF / _MINOR_OF), or a negative PV_STATUS_*. */
long pv_version(void);

/* Feature word `word` offered by the host (0 for unknown words), or a negative PV_STATUS_*. */
long pv_features(uint32_t word);

/* Accepts a subset of the offered features of word `word`; returns the accepted set. */
long pv_accept_features(uint32_t word, uint64_t bits);

/* Ends the guest with `status` (the host application receives it). */
void pv_exit(int status) __attribute__((noreturn));

/* Writes to the console output stream; returns bytes written or a negative PV_STATUS_*. */
long pv_console_write(const void *buf, size_t len);

/* Writes synchronously to the host's debug output (early boot, panics). */
long pv_debug_write(const void *buf, size_t len);

/* Monotonic time in ns since an unspecified start. */
uint64_t pv_clock_monotonic_ns(void);

/* Wall-clock time in ns since the Unix epoch, UTC (0 when the host does not offer PV_FEATURE0_WALL_CLOCK). */
uint64_t pv_clock_wall_ns(void);

/* Blocks until one of `events` is pending or the monotonic clock reaches `deadline_ns`; returns the pending
 * event bits (0 on timeout) or a negative PV_STATUS_*. */
long pv_poll(uint64_t deadline_ns, uint64_t events);

/* Gives the host a chance to run other work. */
long pv_yield(void);

/* Arms the one-shot paravirtual timer (ABI 1.1, host feature PV_FEATURE0_TIMER): external interrupt `vector`
 * (32-255) is raised through the guest's IDT when pv_clock_monotonic_ns() reaches `deadline_ns`, and held pending
 * while interrupts are disabled; a pv_poll in progress returns. `deadline_ns` 0 cancels. Returns 0 or a negative
 * PV_STATUS_* (PV_STATUS_NOT_IMPLEMENTED when the backend cannot inject interrupts). The guest needs an IDT. */
long pv_timer_set(uint64_t deadline_ns, unsigned vector);

/* ---- Command line ---------------------------------------------------------------------------------------- */
/* The command line is space-separated words; "key=value" words are arguments. */

/* Copies the value of `key` (NUL-terminated, truncated to cap - 1) into buf; returns its full length, or
 * PV_STATUS_NOT_FOUND. A bare word "key" has the empty value. */
long pv_cmdline_get(const char *key, char *buf, size_t cap);

/* The value of `key` as an unsigned decimal (or 0x hex) number, or `fallback` when absent or malformed. */
uint64_t pv_cmdline_u64(const char *key, uint64_t fallback);

/* ---- Formatted output -------------------------------------------------------------------------------------- */
/* Conversions: %s %c %d %i %u %x %X %p %%, length modifiers l ll z, a field width and the 0 flag. */

int pv_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
int pv_snprintf(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Formats `prefix` (may be "") then the message into buf (size > 0 bytes), truncating to fit and NUL-terminating;
   returns the length of what buf holds (at most size - 1), unlike pv_vsnprintf's untruncated count. The one step of
   every message written into a fixed buffer (panics, the Linux personality's kprintf and /proc text, sandbox errors). */
size_t pv_vformat(char *buf, size_t size, const char *prefix, const char *fmt, va_list ap);
/* Formats to the console; returns the number of characters produced. */
int pv_vprintf(const char *fmt, va_list ap);
int pv_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Writes `s` and a newline to the console. */
int pv_puts(const char *s);
/* Ends the guest as a crash: the panic hypercall (ABI 1.1) makes the host print "panic: <message>" and a crash report
   (registers, code, backtrace; `paravirt run --core` writes a core file). On a 1.0 host: writes "panic: <message>\n"
   with the debug hypercall and exits with status 255. */
void pv_panic(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
/* As pv_panic, with the registers where the failure happened (an exception handler's or a fatal signal's frame:
   the Linux personality's hook) instead of those of the pv_panic_at call; frame->size must be set. */
void pv_panic_at(const pv_panic_frame *frame, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));

/* ---- Freestanding libc pieces (gcc may emit calls to the mem* functions itself) ----------------------------- */

void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);

/* ---- Device manifest --------------------------------------------------------------------------------------- */

/* pv_manifest_entry.flags bit 0: the guest runs without this device. */
#define PV_MANIFEST_FLAG_OPTIONAL 1u

/* One manifest entry: a PV_DEVICE_KIND_* and a name of at most 24 characters ("disk0"). */
#define PV_DEVICE(kind, name) { (kind), 0u, name }
#define PV_DEVICE_OPTIONAL(kind, name) { (kind), PV_MANIFEST_FLAG_OPTIONAL, name }

#define PV_MANIFEST_ENTRIES_SIZE_(...) sizeof((const pv_manifest_entry[]){ __VA_ARGS__ })

/*
 * PV_DEVICE_MANIFEST(PV_DEVICE(PV_DEVICE_KIND_BLOCK, "disk0"), PV_DEVICE_OPTIONAL(PV_DEVICE_KIND_NET, "net0"));
 *
 * Emits, at file scope, the ELF note (owner PV_NOTE_NAME, type PV_NOTE_TYPE_MANIFEST, section .note.paravirt)
 * whose descriptor is a pv_manifest_header followed by the entries. Use it once per image: the note is the
 * global symbol pv_device_manifest_note, so a second manifest is a link error.
 */
#define PV_DEVICE_MANIFEST(...)                                                                                    \
    __attribute__((used, section(".note.paravirt"), aligned(4))) const struct {                                   \
        uint32_t namesz, descsz, type;                                                                             \
        char name[(sizeof(PV_NOTE_NAME) + 3) & ~(size_t)3];                                                        \
        pv_manifest_header header;                                                                                 \
        pv_manifest_entry entries[PV_MANIFEST_ENTRIES_SIZE_(__VA_ARGS__) / sizeof(pv_manifest_entry)];             \
    } pv_device_manifest_note = {                                                                                  \
        sizeof(PV_NOTE_NAME),                                                                                      \
        (uint32_t)(sizeof(pv_manifest_header) + PV_MANIFEST_ENTRIES_SIZE_(__VA_ARGS__)),                           \
        PV_NOTE_TYPE_MANIFEST,                                                                                     \
        PV_NOTE_NAME,                                                                                              \
        { (uint32_t)(PV_MANIFEST_ENTRIES_SIZE_(__VA_ARGS__) / sizeof(pv_manifest_entry)), 0u },                   \
        { __VA_ARGS__ },                                                                                           \
    };                                                                                                             \
    _Static_assert(PV_MANIFEST_ENTRIES_SIZE_(__VA_ARGS__) / sizeof(pv_manifest_entry) <= PV_NOTE_MANIFEST_MAX_ENTRIES, \
                   "too many devices in PV_DEVICE_MANIFEST")

/* Shorthand for an image that needs exactly one device. */
#define PV_REQUIRE_DEVICE(kind, name) PV_DEVICE_MANIFEST(PV_DEVICE(kind, name))

#ifdef __cplusplus
}
#endif

/* Device drivers (console, block, net) and the ring helpers. */
#include "devices.h"

/* MessagePack, guest functions and host functions (sandboxes). */
#include "msgpack.h"
#include "sandbox.h"

#endif /* PARAVIRT_PARAVIRT_H */
