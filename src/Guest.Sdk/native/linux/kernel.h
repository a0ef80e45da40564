/*
 * kernel.h: the Paravirt Linux personality, a library OS that runs one static Linux x86-64 executable.
 *
 * The library OS is a Paravirt guest (it boots on the hypercall ABI like any C guest and links the SDK's runtime and
 * drivers) that runs at CPL 0 with its own page tables, GDT, TSS and IDT. The application runs at CPL 3 in the lower
 * half of the address space and enters the library OS with `syscall` (LSTAR) or through exceptions (IDT). One
 * address space, one vCPU, kernel code never preempted (interrupts are off at CPL 0).
 *
 * Virtual address space
 *
 *   0x0000_0000_0000_0000  +------------------------------+
 *                          | (unmapped: null page ...)    |
 *   0x0000_0000_0040_0000  | application image (ET_EXEC)  |  PT_LOAD segments at their addresses
 *                          | brk heap                     |
 *                          | ...                          |
 *   0x0000_5555_5555_4000  | application image (ET_DYN)   |  static-pie load base
 *                          | ...                          |
 *                          | mmap area (grows down)       |  below MMAP_TOP
 *   0x0000_7fff_f000_0000  +------------------------------+  MMAP_TOP
 *                          | main thread stack (8 MiB)    |
 *   0x0000_7fff_ffff_f000  +------------------------------+  USER_TOP
 *                          | (non-canonical hole)         |
 *   0xffff_8000_0000_0000  +------------------------------+  PHYS_OFFSET: all guest-physical memory, 2 MiB pages,
 *                          | direct map of guest memory   |  supervisor only; the library OS image lives here at
 *                          |   library OS at +1 MiB       |  PHYS_OFFSET + its load address (linux.ld)
 *                          +------------------------------+
 *
 * Guest-physical memory: the host's low area (boot info, hypercall page, boot module table), the library OS at
 * 1 MiB, then the boot modules (application ELF file, arguments), then boot_info.heap_start: from there on every
 * page belongs to the frame allocator (page tables, kernel heap, thread stacks, application memory).
 */
#ifndef PARAVIRT_LINUX_KERNEL_H
#define PARAVIRT_LINUX_KERNEL_H

#include <paravirt/paravirt.h>
#include <stdbool.h>

#include "uapi.h"

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;
typedef int32_t i32;
typedef int64_t i64;

#define PHYS_OFFSET 0xffff800000000000ull
#define PAGE_SIZE 4096ull
#define PAGE_MASK (~(PAGE_SIZE - 1))
#define USER_TOP 0x00007ffffffff000ull   /* first address past user space (Linux TASK_SIZE) */
#define MMAP_TOP 0x00007ffff0000000ull
#define STACK_SIZE_MAIN (8ull << 20)
#define DYN_BASE 0x0000555555554000ull
#define MMAP_MIN_ADDR 0x10000ull

#define KSTACK_SIZE (16 * 1024)

/* GDT selectors, as Linux lays them out (user code and signal frames see the same values). */
#define KERNEL_CS 0x10
#define KERNEL_DS 0x18
#define USER32_CS 0x23
#define USER_DS 0x2b
#define USER_CS 0x33
#define TSS_SEL 0x40

#define ALIGN_UP(x, a) (((x) + ((a) - 1)) & ~((u64)(a) - 1))
#define ALIGN_DOWN(x, a) ((x) & ~((u64)(a) - 1))
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define UNUSED(x) (void)(x)

/* ---- CPU ------------------------------------------------------------------------------------------------------ */

/* The register frame at the top of a thread's kernel stack: built by the syscall entry and the exception stubs
 * (entry.S), read and written by C, popped by the return paths. Field order is entry.S's push order reversed. */
struct regs {
    u64 r15, r14, r13, r12, r11, r10, r9, r8;
    u64 rbp, rdi, rsi, rdx, rcx, rbx, rax;
    u64 orig_rax;   /* syscall: the number; exception: the vector */
    u64 error;      /* exception error code (0 when the vector has none) */
    u64 rip, cs, rflags, rsp, ss;   /* as iretq pops them */
};

#define RFLAGS_IF (1ull << 9)
#define RFLAGS_USER_MASK 0x0000000000254dd5ull  /* CF PF AF ZF SF TF DF OF NT(no) RF(no) AC ID: what sigreturn may set */

static inline u64 rdmsr(u32 msr)
{
    u32 lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return ((u64)hi << 32) | lo;
}

static inline void wrmsr(u32 msr, u64 v)
{
    __asm__ volatile("wrmsr" ::"c"(msr), "a"((u32)v), "d"((u32)(v >> 32)) : "memory");
}

static inline u64 read_cr2(void)
{
    u64 v;
    __asm__ volatile("mov %%cr2, %0" : "=r"(v));
    return v;
}

static inline void invlpg(u64 va)
{
    __asm__ volatile("invlpg (%0)" ::"r"(va) : "memory");
}

static inline void cpuid(u32 leaf, u32 sub, u32 *a, u32 *b, u32 *c, u32 *d)
{
    __asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(sub));
}

#define MSR_EFER 0xC0000080u
#define MSR_STAR 0xC0000081u
#define MSR_LSTAR 0xC0000082u
#define MSR_CSTAR 0xC0000083u
#define MSR_SFMASK 0xC0000084u
#define MSR_FS_BASE 0xC0000100u
#define MSR_GS_BASE 0xC0000101u
#define MSR_KERNEL_GS_BASE 0xC0000102u
#define EFER_SCE (1ull << 0)
#define EFER_NXE (1ull << 11)

/* cpu.c */
void cpu_init(void);
void cpu_set_kernel_stack(u64 top);
extern u64 cpu_kstack_top;    /* read by the syscall entry */
extern bool cpu_has_nx;
extern u32 cpu_hwcap;         /* CPUID.1:EDX, Linux's AT_HWCAP on x86-64 */
extern u32 cpu_mxcsr_mask;
void trap_handler(struct regs *r);

/* entry.S */
void syscall_entry(void);
void return_to_user(struct regs *r) __attribute__((noreturn));
void switch_stacks(u64 *save_rsp, u64 new_rsp);
void thread_first_return(void);
extern u64 isr_stubs[256];

/* ---- Console and panic ------------------------------------------------------------------------------------------ */

void kprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void panic(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
extern bool kverbose;
extern bool kstrace;
extern bool kpftrace;

/* ---- Physical memory and the kernel heap (mm.c) ------------------------------------------------------------------ */

void pmm_init(u64 start, u64 end);
u64 pmm_alloc(void);                 /* one zeroed frame (physical address), 0 when none */
u64 pmm_alloc_contig(u64 count);     /* count contiguous zeroed frames, 0 when none */
void pmm_free(u64 phys);
void pmm_free_contig(u64 phys, u64 count);
u64 pmm_free_pages(void);
u64 pmm_total_pages(void);
void *kmalloc(u64 size);             /* zeroed, 16-byte aligned; NULL when out of memory */
void kfree(void *p);

static inline void *phys_to_virt(u64 phys) { return (void *)(uintptr_t)(phys + PHYS_OFFSET); }
static inline u64 virt_to_phys(const void *p) { return (u64)(uintptr_t)p - PHYS_OFFSET; }

/* ---- Virtual memory (vm.c) --------------------------------------------------------------------------------------- */

#define VMA_READ 1u
#define VMA_WRITE 2u
#define VMA_EXEC 4u
#define VMA_IMAGE 8u      /* private mapping of the application file (the boot module) */
#define VMA_STACK 16u     /* a thread stack (for /proc/self/maps' [stack]) */
#define VMA_HEAP 32u      /* the brk area ([heap]) */

struct vma {
    u64 start, end;       /* [start, end), page aligned */
    u32 flags;            /* VMA_* */
    u64 file_offset;      /* VMA_IMAGE: offset in the file that maps to start */
    u64 file_end;         /* VMA_IMAGE: first virtual address past the file's bytes (zero-filled above) */
};

void vm_init(u64 image_phys, u64 image_size);
void vm_activate(void);
long vm_map(u64 addr, u64 len, u32 flags, bool fixed, bool noreplace, u64 *out);
long vm_map_image(u64 addr, u64 len, u32 flags, u64 file_offset, u64 file_end);
long vm_unmap(u64 addr, u64 len);
long vm_protect(u64 addr, u64 len, u32 prot);
long vm_discard(u64 addr, u64 len);
long vm_remap(u64 old, u64 old_len, u64 new_len, int flags, u64 new_addr, u64 *out);
bool vm_handle_fault(u64 addr, u64 error);
const struct vma *vm_find(u64 addr);
long vm_brk(u64 want);
void vm_set_brk_base(u64 base);
int vm_count(void);
const struct vma *vm_at(int i);

/* User memory access: every user pointer goes through these (range, overflow and permission checked against the
 * mappings; pages are faulted in first). They return 0 or -EFAULT. */
long copy_from_user(void *dst, u64 src, u64 len);
long copy_to_user(u64 dst, const void *src, u64 len);
long clear_user(u64 dst, u64 len);
long user_strncpy(char *dst, u64 src, u64 cap);   /* length, -EFAULT, or -ENAMETOOLONG */
bool user_range_ok(u64 addr, u64 len);

/* ---- Threads, scheduling, futexes (sched.c) -------------------------------------------------------------------- */

struct fxsave_area {
    u8 bytes[512];
} __attribute__((aligned(16)));

struct sigaltstack_state {
    u64 sp;
    u64 size;
    int flags;
};

enum thread_state { T_RUNNABLE, T_BLOCKED, T_DEAD };

struct thread {
    int tid;
    enum thread_state state;
    u64 ksp;                 /* saved kernel rsp while switched out */
    u64 kstack;              /* base of the kernel stack (direct-mapped) */
    struct regs *regs;       /* the user frame at the top of the kernel stack */
    u64 fs_base;
    struct fxsave_area fpu;
    u64 clear_child_tid;
    u64 robust_list;
    u64 robust_len;
    u64 sigmask;             /* blocked signals (bit signo-1) */
    u64 sigpending;
    struct sigaltstack_state altstack;
    bool in_syscall;
    /* blocking */
    u64 wake_deadline;       /* monotonic ns, UINT64_MAX = none */
    int wake_reason;         /* WAKE_* */
    u64 futex_addr;
    u32 futex_bitset;
    void *wait_channel;      /* what it sleeps on (futex, pipe, console, ...) */
    struct thread *next_run; /* run queue */
    struct thread *next_all; /* all threads */
    u64 cpu_ns;              /* time spent running */
    u32 entries_since_check; /* kernel entries since the time slice was last looked at */
    u64 run_started;
    char name[16];
};

#define WAKE_NONE 0
#define WAKE_EVENT 1
#define WAKE_TIMEOUT 2
#define WAKE_SIGNAL 3

extern struct thread *current;
extern int thread_count;
struct thread *thread_create(void);
void thread_exit(int status) __attribute__((noreturn));
void schedule(void);
void sched_yield_now(void);
int block_current(void *channel, u64 deadline_ns);   /* WAKE_EVENT, WAKE_TIMEOUT or WAKE_SIGNAL */
void wake_channel(void *channel, int max);
void wake_thread(struct thread *t, int reason);
void sched_check_preempt(void);
void sched_init(void);                /* reads whether the host offers the slice timer */
void sched_arm_preemption(void);      /* on every return to user mode: the timer fires when the slice ends */
void sched_timer_interrupt(void);     /* the slice timer's interrupt arrived in user mode */
#define TIMER_VECTOR 32
u64 now_ns(void);
u64 realtime_ns(void);
struct thread *thread_by_tid(int tid);
struct thread *thread_first(void);
long futex_wake(u64 uaddr, int count, u32 bitset);

/* ---- Signals (signal.c) -------------------------------------------------------------------------------------------- */

struct k_sigaction {
    u64 handler;
    u64 flags;
    u64 restorer;
    u64 mask;
};
extern struct k_sigaction sigactions[LINUX_NSIG];
bool signal_pending(struct thread *t);
void signal_send_thread(struct thread *t, int sig);
void signal_send_process(int sig);
void signal_deliver(struct regs *r);
void signal_force_fault(struct regs *r, int sig, int code, u64 addr);
/* Ends the run: the application was killed by sig (addr: the fault address; r: its registers, or NULL). */
void kill_process_by_signal(int sig, u64 addr, u64 rip, const struct regs *r) __attribute__((noreturn));
long sys_rt_sigreturn(struct regs *r);

/* ---- Files (fs.c) ---------------------------------------------------------------------------------------------------- */

void fs_init(void);
void fs_poll_console(void);
u64 fs_wait_events(void);
void fs_events(u64 pending);
long random_to_user(u64 buf, u64 len);

/* ---- System calls (syscall.c) ----------------------------------------------------------------------------------------- */

void syscall_handler(struct regs *r);
void syscall_report_unimplemented(u64 nr, u64 rip);

/* ---- ELF loading and start-up (exec.c) ------------------------------------------------------------------------------- */

void exec_start(const pv_boot_info *bi) __attribute__((noreturn));
extern char exec_path[256];
extern u64 exec_entry;

/* ---- Misc ---------------------------------------------------------------------------------------------------------- */

long host_random(void *buf, u64 len);
u64 kstrlen(const char *s);
int kstrcmp(const char *a, const char *b);
bool kstartswith(const char *s, const char *prefix);

#endif
