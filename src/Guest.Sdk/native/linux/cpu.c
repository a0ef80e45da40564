/*
 * cpu.c: GDT (Linux's selector layout), TSS, IDT, the SYSCALL MSRs, the FPU's initial state, and the exception
 * handler that turns application faults into signals.
 */
#include "kernel.h"

struct tss {
    u32 reserved0;
    u64 rsp0, rsp1, rsp2;
    u64 reserved1;
    u64 ist[7];
    u64 reserved2;
    u16 reserved3;
    u16 iomap_base;
} __attribute__((packed));

struct idt_gate {
    u16 offset_low;
    u16 selector;
    u8 ist;
    u8 type_attr;
    u16 offset_mid;
    u32 offset_high;
    u32 zero;
} __attribute__((packed));

struct dtr {
    u16 limit;
    u64 base;
} __attribute__((packed));

static u64 gdt[10] __attribute__((aligned(16)));
static struct tss tss __attribute__((aligned(16)));
static struct idt_gate idt[256] __attribute__((aligned(16)));
static u8 df_stack[8192] __attribute__((aligned(16)));

u64 cpu_kstack_top;
bool cpu_has_nx;
u32 cpu_hwcap;
u32 cpu_mxcsr_mask = 0xffbf;
struct fxsave_area fpu_initial;

void cpu_set_kernel_stack(u64 top)
{
    cpu_kstack_top = top;
    tss.rsp0 = top;
}

static void set_gate(int vec, u64 handler, u8 dpl, u8 ist)
{
    struct idt_gate *g = &idt[vec];
    g->offset_low = (u16)handler;
    g->selector = KERNEL_CS;
    g->ist = ist;
    g->type_attr = (u8)(0x8E | (dpl << 5)); /* present, 64-bit interrupt gate: IF cleared on entry */
    g->offset_mid = (u16)(handler >> 16);
    g->offset_high = (u32)(handler >> 32);
    g->zero = 0;
}

void cpu_init(void)
{
    u32 a, b, c, d;
    cpuid(1, 0, &a, &b, &c, &d);
    cpu_hwcap = d;
    cpuid(0x80000000u, 0, &a, &b, &c, &d);
    if (a >= 0x80000001u) {
        cpuid(0x80000001u, 0, &a, &b, &c, &d);
        cpu_has_nx = (d >> 20) & 1;
    }

    /* GDT as Linux: 0x10 kernel code, 0x18 kernel data, 0x2b user data, 0x33 user code, 0x40 TSS. The 32-bit
     * user code slot (0x23) stays empty: the application cannot enter compatibility mode. */
    gdt[0] = 0;
    gdt[1] = 0;
    gdt[2] = 0x00af9a000000ffffull; /* 0x10: kernel code, L */
    gdt[3] = 0x00cf92000000ffffull; /* 0x18: kernel data */
    gdt[4] = 0;                     /* 0x20: (user 32-bit code: not provided) */
    gdt[5] = 0x00cff2000000ffffull; /* 0x28: user data, DPL 3 */
    gdt[6] = 0x00affa000000ffffull; /* 0x30: user code, L, DPL 3 */
    gdt[7] = 0;
    u64 base = (u64)(uintptr_t)&tss;
    u64 limit = sizeof(tss) - 1;
    gdt[8] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x89ull << 40) | (((limit >> 16) & 0xf) << 48) |
             (((base >> 24) & 0xff) << 56);
    gdt[9] = base >> 32;
    tss.iomap_base = sizeof(tss); /* no I/O bitmap: every port is denied at CPL 3 */
    tss.ist[0] = (u64)(uintptr_t)(df_stack + sizeof(df_stack));

    struct dtr g = { sizeof(gdt) - 1, (u64)(uintptr_t)gdt };
    __asm__ volatile("lgdt %0" ::"m"(g) : "memory");
    /* reload CS with a far return, then the data segments */
    __asm__ volatile("pushq %0\n\t"
                     "leaq 1f(%%rip), %%rax\n\t"
                     "pushq %%rax\n\t"
                     "lretq\n"
                     "1:\n\t"
                     "movl %1, %%eax\n\t"
                     "movl %%eax, %%ss\n\t"
                     "xorl %%eax, %%eax\n\t"
                     "movl %%eax, %%ds\n\t"
                     "movl %%eax, %%es\n\t"
                     "movl %%eax, %%fs\n\t"
                     "movl %%eax, %%gs\n\t"
                     :
                     : "i"((u64)KERNEL_CS), "i"(KERNEL_DS)
                     : "rax", "memory");
    __asm__ volatile("ltr %w0" ::"r"((u16)TSS_SEL));

    for (int v = 0; v < 256; v++) {
        set_gate(v, isr_stubs[v], 0, 0);
    }
    set_gate(3, isr_stubs[3], 3, 0);  /* int3 from user mode is a breakpoint (SIGTRAP), not #GP */
    set_gate(4, isr_stubs[4], 3, 0);  /* into */
    set_gate(8, isr_stubs[8], 0, 1);  /* double fault on its own stack */
    struct dtr i = { sizeof(idt) - 1, (u64)(uintptr_t)idt };
    __asm__ volatile("lidt %0" ::"m"(i) : "memory");

    u64 efer = rdmsr(MSR_EFER) | EFER_SCE;
    if (cpu_has_nx) {
        efer |= EFER_NXE;
    }
    wrmsr(MSR_EFER, efer);
    wrmsr(MSR_STAR, ((u64)(USER32_CS & ~3) << 48) | ((u64)KERNEL_CS << 32));
    wrmsr(MSR_LSTAR, (u64)(uintptr_t)syscall_entry);
    wrmsr(MSR_CSTAR, 0);
    /* TF DF IF IOPL AC NT: what Linux masks on entry */
    wrmsr(MSR_SFMASK, 0x47700);
    wrmsr(MSR_FS_BASE, 0);
    wrmsr(MSR_GS_BASE, 0);
    wrmsr(MSR_KERNEL_GS_BASE, 0);

    /* The application's initial FPU state, as after FNINIT and LDMXCSR 0x1f80: x87 control word 0x37f, every
     * register empty (abridged tag word 0), MXCSR 0x1f80 (all SSE exceptions masked). Built as an FXSAVE image and
     * loaded with FXRSTOR, so the library OS itself runs no x87 instruction; FXSAVE then reports the CPU's MXCSR mask. */
    memset(&fpu_initial, 0, sizeof(fpu_initial));
    u16 fcw = 0x37f;
    u32 mxcsr = 0x1f80;
    memcpy(&fpu_initial.bytes[0], &fcw, 2);
    memcpy(&fpu_initial.bytes[24], &mxcsr, 4);
    __asm__ volatile("fxrstor64 %0" ::"m"(fpu_initial));
    static struct fxsave_area probe;
    __asm__ volatile("fxsave64 %0" : "=m"(probe));
    u32 mask;
    memcpy(&mask, &probe.bytes[28], 4);
    cpu_mxcsr_mask = mask != 0 ? mask : 0xffbf;
}

static const char *const vector_names[32] = {
    "#DE divide error", "#DB debug", "NMI", "#BP breakpoint", "#OF overflow", "#BR bound range",
    "#UD invalid opcode", "#NM device not available", "#DF double fault", "coprocessor segment overrun",
    "#TS invalid TSS", "#NP segment not present", "#SS stack fault", "#GP general protection", "#PF page fault",
    "reserved", "#MF x87 floating point", "#AC alignment check", "#MC machine check", "#XM SIMD floating point",
    "#VE virtualization", "#CP control protection", "reserved", "reserved", "reserved", "reserved", "reserved",
    "reserved", "#HV", "#VC", "#SX", "reserved",
};

static void __attribute__((noreturn)) kernel_trap(struct regs *r)
{
    u64 v = r->orig_rax;
    panic("library OS exception %lu (%s) error 0x%lx at rip 0x%lx cr2 0x%lx rsp 0x%lx | rax 0x%lx rbx 0x%lx "
          "rcx 0x%lx rdx 0x%lx rsi 0x%lx rdi 0x%lx rbp 0x%lx r8 0x%lx r12 0x%lx",
          v, v < 32 ? vector_names[v] : "interrupt", r->error, r->rip, read_cr2(), r->rsp, r->rax, r->rbx, r->rcx,
          r->rdx, r->rsi, r->rdi, r->rbp, r->r8, r->r12);
}

void trap_handler(struct regs *r)
{
    if ((r->cs & 3) == 0) {
        kernel_trap(r);
    }
    current->in_syscall = false;
    u64 vec = r->orig_rax;
    switch (vec) {
    case 14: {
        u64 addr = read_cr2();
        if (kpftrace) {
            kprintf("[%d] page fault at 0x%lx error 0x%lx rip 0x%lx\n", current->tid, addr, r->error, r->rip);
        }
        if (vm_handle_fault(addr, r->error)) {
            return;
        }
        /* as Linux: a mapping that forbids the access is SEGV_ACCERR, no mapping at all SEGV_MAPERR */
        signal_force_fault(r, SIGSEGV, vm_find(addr) != NULL ? SEGV_ACCERR : SEGV_MAPERR, addr);
        return;
    }
    case 0:
        signal_force_fault(r, SIGFPE, FPE_INTDIV, r->rip);
        return;
    case 1:
    case 3:
        signal_force_fault(r, SIGTRAP, vec == 3 ? SI_KERNEL : TRAP_BRKPT, 0);
        return;
    case 6:
    case 7:
        signal_force_fault(r, SIGILL, ILL_ILLOPN, r->rip);
        return;
    case 16:
    case 19:
        signal_force_fault(r, SIGFPE, FPE_FLTINV, r->rip);
        return;
    case 11:
    case 12:
    case 17:
        signal_force_fault(r, SIGBUS, BUS_ADRERR, 0);
        return;
    case 4:
    case 5:
    case 13:
        signal_force_fault(r, SIGSEGV, SI_KERNEL, 0);
        return;
    default:
        if (vec >= 32) {
            /* An external interrupt taken in user mode: the slice timer sends the thread through the preemption
             * check on its way back; any other vector only interrupted it. */
            if (vec == TIMER_VECTOR) {
                sched_timer_interrupt();
            }
            return;
        }
        signal_force_fault(r, SIGSEGV, SI_KERNEL, 0);
        return;
    }
}
