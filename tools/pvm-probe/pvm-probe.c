/*
 * pvm-probe: what a /dev/kvm served by kvm_pvm (PVM) accepts, and what it needs from a VMM to run a flat 64-bit
 * Paravirt guest natively (not through KVM's instruction emulator).
 *
 *   cc -O2 -Wall -o pvm-probe pvm-probe.c && timeout 60 ./pvm-probe [case ...]
 *
 * Part 1 reports the system: API version, capabilities, PVM's CPUID leaves (0x40000000..), the MSR index list
 * (PVM's MSR_PVM_* at 0x4b564df0..). Part 2 runs one tiny guest per "case" (a vCPU state variant), each in a forked
 * child under alarm(): the guest reports through `out 0xE2, al` (rax = stage), runs SSE, reports again, then hlt.
 * Every exit prints its reason, rip/rax and CR0/CR4/EFER/CS as KVM_GET_SREGS sees them: a vCPU that PVM converted
 * to "PVM mode" shows CR0.AM set by try_to_convert_to_pvm_mode(); one still in the bootstrap "non-PVM mode" is run
 * by KVM's instruction emulator, which stops at the first SSE instruction with KVM_EXIT_INTERNAL_ERROR.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MEM_SIZE (4u << 20)
#define PML4 0x10000
#define PDPT 0x11000
#define PD 0x12000
#define CODE 0x200000
#define STACK_TOP 0x3ff000

#define CR0_PE 0x1ull
#define CR0_MP 0x2ull
#define CR0_ET 0x10ull
#define CR0_NE 0x20ull
#define CR0_WP 0x10000ull
#define CR0_AM 0x40000ull
#define CR0_PG 0x80000000ull
#define CR4_PAE 0x20ull
#define CR4_OSFXSR 0x200ull
#define CR4_OSXMMEXCPT 0x400ull
#define CR4_FSGSBASE 0x10000ull
#define CR4_PCIDE 0x20000ull
#define CR4_OSXSAVE 0x40000ull
#define EFER_SCE 0x1ull
#define EFER_LME 0x100ull
#define EFER_LMA 0x400ull
#define EFER_NXE 0x800ull

#define MSR_STAR 0xc0000081u
#define MSR_LSTAR 0xc0000082u
#define MSR_PVM_BASE 0x4b564df0u

static int kvm;

static void die(const char *what)
{
    fprintf(stderr, "pvm-probe: %s: %s\n", what, strerror(errno));
    exit(2);
}

static const char *exit_name(unsigned r)
{
    switch (r) {
    case KVM_EXIT_UNKNOWN: return "UNKNOWN";
    case KVM_EXIT_EXCEPTION: return "EXCEPTION";
    case KVM_EXIT_IO: return "IO";
    case KVM_EXIT_HYPERCALL: return "HYPERCALL";
    case KVM_EXIT_DEBUG: return "DEBUG";
    case KVM_EXIT_HLT: return "HLT";
    case KVM_EXIT_MMIO: return "MMIO";
    case KVM_EXIT_SHUTDOWN: return "SHUTDOWN";
    case KVM_EXIT_FAIL_ENTRY: return "FAIL_ENTRY";
    case KVM_EXIT_INTR: return "INTR";
    case KVM_EXIT_INTERNAL_ERROR: return "INTERNAL_ERROR";
    case KVM_EXIT_SYSTEM_EVENT: return "SYSTEM_EVENT";
    case KVM_EXIT_X86_RDMSR: return "X86_RDMSR";
    case KVM_EXIT_X86_WRMSR: return "X86_WRMSR";
    default: return "?";
    }
}

/* ---- part 1: the system ---- */

static void report_system(void)
{
    static const struct { int cap; const char *name; } caps[] = {
        { KVM_CAP_USER_MEMORY, "USER_MEMORY" }, { KVM_CAP_SYNC_REGS, "SYNC_REGS" },
        { KVM_CAP_IMMEDIATE_EXIT, "IMMEDIATE_EXIT" }, { KVM_CAP_EXT_CPUID, "EXT_CPUID" },
        { KVM_CAP_SET_TSS_ADDR, "SET_TSS_ADDR" }, { KVM_CAP_NR_VCPUS, "NR_VCPUS" },
        { KVM_CAP_MAX_VCPUS, "MAX_VCPUS" }, { KVM_CAP_XSAVE, "XSAVE" }, { KVM_CAP_XCRS, "XCRS" },
        { KVM_CAP_X86_USER_SPACE_MSR, "X86_USER_SPACE_MSR" }, { KVM_CAP_READONLY_MEM, "READONLY_MEM" },
        { KVM_CAP_EXIT_HYPERCALL, "EXIT_HYPERCALL" }, { KVM_CAP_GET_MSR_FEATURES, "GET_MSR_FEATURES" },
        { KVM_CAP_ADJUST_CLOCK, "ADJUST_CLOCK" }, { KVM_CAP_IRQCHIP, "IRQCHIP" },
        { KVM_CAP_SET_GUEST_DEBUG, "SET_GUEST_DEBUG" }, { KVM_CAP_DIRTY_LOG_RING, "DIRTY_LOG_RING" },
        { KVM_CAP_X86_DISABLE_EXITS, "X86_DISABLE_EXITS" },
    };
    printf("== system\n");
    printf("KVM_GET_API_VERSION = %d\n", ioctl(kvm, KVM_GET_API_VERSION, 0));
    printf("KVM_GET_VCPU_MMAP_SIZE = %d\n", ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0));
    for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++)
        printf("KVM_CHECK_EXTENSION %-20s = %d\n", caps[i].name, ioctl(kvm, KVM_CHECK_EXTENSION, caps[i].cap));

    int n = 256;
    struct kvm_cpuid2 *cpuid = calloc(1, sizeof *cpuid + n * sizeof(struct kvm_cpuid_entry2));
    cpuid->nent = n;
    if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, cpuid) < 0)
        die("KVM_GET_SUPPORTED_CPUID");
    printf("KVM_GET_SUPPORTED_CPUID: %u entries\n", cpuid->nent);
    for (unsigned i = 0; i < cpuid->nent; i++) {
        struct kvm_cpuid_entry2 *e = &cpuid->entries[i];
        if (e->function == 1 || (e->function == 7 && e->index == 0) || e->function == 0xd ||
            (e->function >= 0x40000000 && e->function < 0x40000100)) {
            char sig[13] = { 0 };
            memcpy(sig, &e->ebx, 4), memcpy(sig + 4, &e->ecx, 4), memcpy(sig + 8, &e->edx, 4);
            for (int k = 0; k < 12; k++)
                if (sig[k] < 32 || sig[k] > 126) sig[k] = '.';
            printf("  leaf %08x.%u: eax=%08x ebx=%08x ecx=%08x edx=%08x  '%s'\n", e->function, e->index, e->eax,
                   e->ebx, e->ecx, e->edx, sig);
        }
    }
    free(cpuid);

    struct kvm_msr_list probe = { .nmsrs = 0 };
    ioctl(kvm, KVM_GET_MSR_INDEX_LIST, &probe); /* E2BIG, sets nmsrs */
    struct kvm_msr_list *list = calloc(1, sizeof *list + probe.nmsrs * sizeof(uint32_t));
    list->nmsrs = probe.nmsrs;
    if (ioctl(kvm, KVM_GET_MSR_INDEX_LIST, list) < 0)
        die("KVM_GET_MSR_INDEX_LIST");
    printf("KVM_GET_MSR_INDEX_LIST: %u MSRs; non-architectural ones:", list->nmsrs);
    for (unsigned i = 0; i < list->nmsrs; i++)
        if (list->indices[i] >= 0x40000000 && list->indices[i] < 0xc0000000)
            printf(" %#x", list->indices[i]);
    printf("\n");
    free(list);
}

/* ---- part 2: guests ---- */

struct variant {
    const char *name;
    const char *why;
    uint16_t cs, ds;
    uint64_t cr0, cr4, efer, rflags;
    uint64_t star; /* 0: leave MSR_STAR alone */
    int tr_null;   /* TR unusable/null as the PVM testbed sets it */
    int code;      /* which guest program */
    int cpuid_add; /* advertise PCID, XSAVE, FSGSBASE in the vCPU's CPUID (so CR4 may have them) */
    uint32_t gmsr; /* nonzero: the guest first WRMSRs gmsr = gval, RDMSRs it back and reports it (stage 5) */
    uint64_t gval;
    int user_pages; /* page-table entries with U/S set */
    uint32_t hmsr;  /* nonzero: the VMM sets hmsr = hval with KVM_SET_MSRS before the first KVM_RUN */
    uint64_t hval;
};

enum { PROG_SSE, PROG_SYSCALL, PROG_CPUID, PROG_LOOP_SSE, PROG_UD2, PROG_MMIO, PROG_HLT, PROG_PF, PROG_MMIO_GPA, PROG_EXITS, PROG_PUSHF };

static const uint64_t OUR_CR0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
static const uint64_t OUR_CR4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
static const uint64_t OUR_EFER = EFER_LME | EFER_LMA;

static size_t emit(uint8_t *p, const char *bytes, size_t n)
{
    memcpy(p, bytes, n);
    return n;
}

/* mov eax, imm32 ; out 0xE2, al */
static size_t emit_stage(uint8_t *p, uint32_t stage)
{
    p[0] = 0xb8;
    memcpy(p + 1, &stage, 4);
    p[5] = 0xe6, p[6] = 0xe2;
    return 7;
}

static int user_pages;
static uint8_t *guest_mem;

static void write_guest(uint8_t *mem, int prog, uint32_t gmsr, uint64_t gval)
{
    memset(mem, 0, MEM_SIZE);
    uint64_t *pml4 = (uint64_t *)(mem + PML4), *pdpt = (uint64_t *)(mem + PDPT), *pd = (uint64_t *)(mem + PD);
    uint64_t us = user_pages ? 4 : 0;
    pml4[0] = PDPT | 3 | us;
    pdpt[0] = PD | 3 | us;
    for (int i = 0; i < 3; i++) /* the third 2 MiB page (4..6 MiB) has no memory slot: MMIO */
        pd[i] = ((uint64_t)i << 21) | 0x83 | us; /* 2 MiB, present, writable */
    uint8_t *c = mem + CODE;
    size_t o = 0;
    if (gmsr && gval >= 0x20000 && gval < CODE) memset(mem + (gval & ~0xfffull), 0xaa, 4096); /* to see what PVM writes */
    if (gmsr) {
        uint32_t lo = (uint32_t)gval, hi = (uint32_t)(gval >> 32);
        c[o++] = 0xb9, memcpy(c + o, &gmsr, 4), o += 4; /* mov ecx, gmsr */
        c[o++] = 0xb8, memcpy(c + o, &lo, 4), o += 4;   /* mov eax, lo */
        c[o++] = 0xba, memcpy(c + o, &hi, 4), o += 4;   /* mov edx, hi */
        o += emit(c + o, "\x0f\x30", 2);               /* wrmsr */
        o += emit_stage(c + o, 5);
    }
    o += emit_stage(c + o, 1);
    switch (prog) {
    case PROG_SSE:
        o += emit(c + o, "\x66\x0f\xef\xc0", 4);     /* pxor xmm0, xmm0 */
        o += emit(c + o, "\x48\xc7\xc1\x05\x00\x00\x00", 7); /* mov rcx, 5 */
        o += emit(c + o, "\xf2\x48\x0f\x2a\xc9", 5); /* cvtsi2sd xmm1, rcx */
        o += emit(c + o, "\xf2\x0f\x58\xc1", 4);     /* addsd xmm0, xmm1 */
        o += emit(c + o, "\xf2\x48\x0f\x2d\xd8", 5); /* cvtsd2si rbx, xmm0 */
        o += emit_stage(c + o, 2);                   /* rbx == 5 if SSE ran */
        break;
    case PROG_SYSCALL:
        o += emit(c + o, "\x0f\x05", 2); /* syscall: a PVM hypercall from supervisor mode */
        o += emit_stage(c + o, 2);
        break;
    case PROG_LOOP_SSE:
        o += emit(c + o, "\xb9\xa0\x86\x01\x00", 5); /* mov ecx, 100000 */
        o += emit(c + o, "\xff\xc9", 2);             /* 1: dec ecx */
        o += emit(c + o, "\x75\xfc", 2);             /* jnz 1b */
        o += emit_stage(c + o, 4);
        o += emit(c + o, "\x66\x0f\xef\xc0", 4);     /* pxor xmm0, xmm0 */
        o += emit(c + o, "\x48\xc7\xc1\x05\x00\x00\x00", 7); /* mov rcx, 5 */
        o += emit(c + o, "\xf2\x48\x0f\x2a\xc9", 5); /* cvtsi2sd xmm1, rcx */
        o += emit(c + o, "\xf2\x0f\x58\xc1", 4);     /* addsd xmm0, xmm1 */
        o += emit(c + o, "\xf2\x48\x0f\x2d\xd8", 5); /* cvtsd2si rbx, xmm0 */
        o += emit_stage(c + o, 2);
        break;
    case PROG_UD2:
        o += emit(c + o, "\x0f\x0b", 2); /* ud2 */
        break;
    case PROG_MMIO:
        o += emit(c + o, "\x48\xb8\x00\x00\x00\x00\x01\x00\x00\x00", 10); /* mov rax, 0x100000000 */
        o += emit(c + o, "\x48\x8b\x00", 3); /* mov rax, [rax]: unmapped virtual address (#PF) */
        break;
    case PROG_HLT:
        o += emit(c + o, "\xf4", 1); /* hlt */
        break;
    case PROG_PF:
        o += emit(c + o, "\xb8\x00\x00\x80\x00", 5); /* mov eax, 0x800000: mapped by no page table */
        o += emit(c + o, "\x8b\x00", 2);                 /* mov eax, [rax] */
        break;
    case PROG_MMIO_GPA:
        o += emit(c + o, "\xb8\x00\x00\x40\x00", 5); /* mov eax, 0x400000: mapped, but no memory slot */
        o += emit(c + o, "\xc7\x00\x78\x56\x34\x12", 6); /* mov dword [rax], 0x12345678 */
        o += emit(c + o, "\x8b\x18", 2);                 /* mov ebx, [rax] */
        o += emit_stage(c + o, 2);
        break;
    case PROG_EXITS:
        o += emit(c + o, "\xbb\x10\x27\x00\x00", 5); /* mov ebx, 10000 */
        o += emit(c + o, "\xb8\x07\x00\x00\x00", 5); /* 1: mov eax, 7 */
        o += emit(c + o, "\xe6\xe2", 2);                 /* out 0xE2, al */
        o += emit(c + o, "\xff\xcb\x75\xf5", 4);         /* dec ebx; jnz 1b */
        break;
    case PROG_PUSHF:
        o += emit(c + o, "\x9c\x5f", 2); /* pushfq; pop rdi */
        o += emit_stage(c + o, 2);
        break;
    case PROG_CPUID:
        o += emit(c + o, "\xb8\x00\x00\x00\x40", 5); /* mov eax, 0x40000000 */
        o += emit(c + o, "\x31\xc9", 2);             /* xor ecx, ecx */
        o += emit(c + o, "\x0f\xa2", 2);             /* cpuid */
        o += emit(c + o, "\x89\xc7", 2);             /* mov edi, eax */
        o += emit_stage(c + o, 2);
        break;
    }
    o += emit_stage(c + o, 3);
    c[o++] = 0xf4; /* hlt */
}

static void seg(struct kvm_segment *s, uint16_t sel, uint8_t type, int l, int db)
{
    memset(s, 0, sizeof *s);
    s->selector = sel, s->limit = 0xffffffff, s->type = type, s->present = 1, s->s = 1, s->l = l, s->db = db, s->g = 1;
}

/* Flat 64-bit long mode (the page tables write_guest built) with rip at the given guest address. */
static void enter_long_mode(int vcpu, uint64_t rip)
{
    struct kvm_sregs s;
    ioctl(vcpu, KVM_GET_SREGS, &s);
    seg(&s.cs, 0x08, 11, 1, 0);
    seg(&s.ds, 0x10, 3, 0, 1);
    s.es = s.fs = s.gs = s.ss = s.ds;
    s.cr0 = OUR_CR0, s.cr3 = PML4, s.cr4 = OUR_CR4, s.efer = OUR_EFER;
    if (ioctl(vcpu, KVM_SET_SREGS, &s) < 0) die("KVM_SET_SREGS");
    struct kvm_regs regs = { .rip = rip, .rsp = STACK_TOP, .rflags = 2 };
    ioctl(vcpu, KVM_SET_REGS, &regs);
}

static void dump_sregs(int vcpu, const char *when)
{
    struct kvm_sregs s;
    if (ioctl(vcpu, KVM_GET_SREGS, &s) < 0) {
        printf("    %s: KVM_GET_SREGS: %s\n", when, strerror(errno));
        return;
    }
    printf("    %s: cr0=%#llx cr4=%#llx efer=%#llx cs=%#x(l=%d dpl=%d) ss=%#x\n", when, (unsigned long long)s.cr0,
           (unsigned long long)s.cr4, (unsigned long long)s.efer, s.cs.selector, s.cs.l, s.cs.dpl, s.ss.selector);
}

static int set_msr(int vcpu, uint32_t index, uint64_t value)
{
    struct { struct kvm_msrs h; struct kvm_msr_entry e; } m = { .h.nmsrs = 1, .e.index = index, .e.data = value };
    return ioctl(vcpu, KVM_SET_MSRS, &m);
}

static int get_msr(int vcpu, uint32_t index, uint64_t *value)
{
    struct { struct kvm_msrs h; struct kvm_msr_entry e; } m = { .h.nmsrs = 1, .e.index = index };
    int r = ioctl(vcpu, KVM_GET_MSRS, &m);
    *value = m.e.data;
    return r;
}

static void run_variant(const struct variant *v, int show_msrs)
{
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0) die("KVM_CREATE_VM");
    uint8_t *mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    user_pages = v->user_pages;
    write_guest(mem, v->code, v->gmsr, v->gval);
    struct kvm_userspace_memory_region region = { .slot = 0, .guest_phys_addr = 0, .memory_size = MEM_SIZE,
                                                  .userspace_addr = (uint64_t)mem };
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) die("KVM_SET_USER_MEMORY_REGION");
    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (vcpu < 0) die("KVM_CREATE_VCPU");
    int mmap_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    struct kvm_run *run = mmap(NULL, mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);

    int n = 256;
    struct kvm_cpuid2 *cpuid = calloc(1, sizeof *cpuid + n * sizeof(struct kvm_cpuid_entry2));
    cpuid->nent = n;
    if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, cpuid) < 0) die("KVM_GET_SUPPORTED_CPUID");
    if (v->cpuid_add)
        for (unsigned i = 0; i < cpuid->nent; i++) {
            struct kvm_cpuid_entry2 *e = &cpuid->entries[i];
            if (e->function == 1) e->ecx |= (1u << 17) | (1u << 26); /* PCID, XSAVE */
            if (e->function == 7 && e->index == 0) e->ebx |= 1u; /* FSGSBASE */
        }
    if (ioctl(vcpu, KVM_SET_CPUID2, cpuid) < 0) die("KVM_SET_CPUID2");

    if (show_msrs) {
        printf("  MSRs of a fresh vCPU (KVM_GET_MSRS):\n");
        for (uint32_t i = MSR_PVM_BASE; i < MSR_PVM_BASE + 16; i++) {
            uint64_t val;
            int r = get_msr(vcpu, i, &val);
            if (r != 0) printf("    %#x: KVM_GET_MSRS -> %d, value %#llx\n", i, r, (unsigned long long)val);
        }
        uint64_t val;
        if (get_msr(vcpu, MSR_STAR, &val) == 1) printf("    MSR_STAR = %#llx\n", (unsigned long long)val);
        dump_sregs(vcpu, "reset state");
    }

    struct kvm_sregs s;
    if (ioctl(vcpu, KVM_GET_SREGS, &s) < 0) die("KVM_GET_SREGS");
    seg(&s.cs, v->cs, 11, 1, 0);
    seg(&s.ds, v->ds, 3, 0, 1);
    s.es = s.fs = s.gs = s.ss = s.ds;
    if (v->tr_null) {
        memset(&s.tr, 0, sizeof s.tr);
        s.tr.present = 1, s.tr.type = 11;
    } else {
        memset(&s.tr, 0, sizeof s.tr);
        s.tr.selector = 0x18, s.tr.limit = 0x67, s.tr.type = 11, s.tr.present = 1;
    }
    s.gdt.base = 0x1000, s.gdt.limit = 39;
    s.idt.base = 0, s.idt.limit = 0;
    s.cr0 = v->cr0, s.cr3 = PML4, s.cr4 = v->cr4, s.efer = v->efer;
    int r = ioctl(vcpu, KVM_SET_SREGS, &s);
    if (r < 0) {
        printf("  KVM_SET_SREGS: %s (errno %d)\n", strerror(errno), errno);
        return;
    }
    if (v->hmsr) {
        int hr = set_msr(vcpu, v->hmsr, v->hval);
        uint64_t back = 0;
        get_msr(vcpu, v->hmsr, &back);
        printf("    KVM_SET_MSRS %#x = %#llx -> %d; KVM_GET_MSRS reads %#llx\n", v->hmsr, (unsigned long long)v->hval, hr,
               (unsigned long long)back);
    }
    if (v->star && set_msr(vcpu, MSR_STAR, v->star) != 1)
        printf("  KVM_SET_MSRS MSR_STAR=%#llx refused\n", (unsigned long long)v->star);
    struct kvm_regs regs = { .rip = CODE, .rsp = STACK_TOP, .rflags = v->rflags };
    if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) die("KVM_SET_REGS");
    dump_sregs(vcpu, "after set ");
    guest_mem = mem;
    uint64_t star;
    if (get_msr(vcpu, MSR_STAR, &star) == 1) printf("    MSR_STAR now %#llx\n", (unsigned long long)star);

    struct timespec b0, b1;
    long quiet = 0;
    clock_gettime(CLOCK_MONOTONIC, &b0);
    for (int i = 0; i < 12; i++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        r = ioctl(vcpu, KVM_RUN, 0);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (r == 0 && run->exit_reason == KVM_EXIT_IO && run->io.port == 0xe2 && *((uint8_t *)run + run->io.data_offset) == 7) {
            if (quiet++ == 0) clock_gettime(CLOCK_MONOTONIC, &b0);
            i--;
            continue;
        }
        if (quiet) {
            clock_gettime(CLOCK_MONOTONIC, &b1);
            printf("  %ld out exits, %.2f us per round trip\n", quiet,
                   ((b1.tv_sec - b0.tv_sec) * 1e6 + (b1.tv_nsec - b0.tv_nsec) / 1e3) / quiet);
            quiet = 0;
        }
        printf("  KVM_RUN took %.1f us\n", (t1.tv_sec - t0.tv_sec) * 1e6 + (t1.tv_nsec - t0.tv_nsec) / 1e3);
        if (r < 0) {
            printf("  KVM_RUN: %s (errno %d)\n", strerror(errno), errno);
            break;
        }
        struct kvm_regs g;
        ioctl(vcpu, KVM_GET_REGS, &g);
        printf("  exit %u %s: rip=%#llx rax=%#llx rbx=%#llx rcx=%#llx rdi=%#llx rflags=%#llx", run->exit_reason,
               exit_name(run->exit_reason), (unsigned long long)g.rip, (unsigned long long)g.rax,
               (unsigned long long)g.rbx, (unsigned long long)g.rcx, (unsigned long long)g.rdi,
               (unsigned long long)g.rflags);
        if (run->exit_reason == KVM_EXIT_IO)
            printf(" [%s port %#x size %u]", run->io.direction ? "out" : "in", run->io.port, run->io.size);
        if (run->exit_reason == KVM_EXIT_INTERNAL_ERROR) {
            printf(" [suberror %u, data", run->internal.suberror);
            for (unsigned k = 0; k < run->internal.ndata && k < 16; k++)
                printf(" %#llx", (unsigned long long)run->internal.data[k]);
            printf("]");
        }
        if (run->exit_reason == KVM_EXIT_HYPERCALL)
            printf(" [nr %#llx args %#llx %#llx]", (unsigned long long)run->hypercall.nr,
                   (unsigned long long)run->hypercall.args[0], (unsigned long long)run->hypercall.args[1]);
        if (run->exit_reason == KVM_EXIT_FAIL_ENTRY)
            printf(" [hw reason %#llx]", (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
        printf("\n");
        dump_sregs(vcpu, "         ");
        if (run->exit_reason == KVM_EXIT_MMIO) {
            uint32_t d;
            memcpy(&d, run->mmio.data, 4);
            printf("    mmio %s %#llx len %u data %#x\n", run->mmio.is_write ? "write" : "read",
                   (unsigned long long)run->mmio.phys_addr, run->mmio.len, d);
            if (!run->mmio.is_write) memcpy(run->mmio.data, "\x21\x43\x65\x87", 4);
            continue;
        }
        if (run->exit_reason != KVM_EXIT_IO)
            break;
    }
}

/*
 * msrs FIRST LAST: the guest RDMSRs every index in [FIRST, LAST) and reports each on port 0xE3. With
 * KVM_CAP_X86_USER_SPACE_MSR (UNKNOWN|INVAL), an index the kernel does not know comes to user space as
 * KVM_EXIT_X86_RDMSR instead of a #GP, so what is left is exactly what kvm_pvm implements for the guest.
 */
static void scan_msrs(uint32_t first, uint32_t last, int write, uint64_t value)
{
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0) die("KVM_CREATE_VM");
    struct kvm_enable_cap cap = { .cap = KVM_CAP_X86_USER_SPACE_MSR,
                                  .args = { KVM_MSR_EXIT_REASON_UNKNOWN | KVM_MSR_EXIT_REASON_INVAL } };
    if (ioctl(vm, KVM_ENABLE_CAP, &cap) < 0) die("KVM_ENABLE_CAP X86_USER_SPACE_MSR");
    uint8_t *mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    write_guest(mem, PROG_SSE, 0, 0);
    uint8_t *c = mem + CODE;
    size_t o = 0;
    c[o++] = 0xb9, memcpy(c + o, &first, 4), o += 4;      /* mov ecx, first */
    size_t loop = o;
    if (write) {
        uint32_t lo = (uint32_t)value, hi = (uint32_t)(value >> 32);
        c[o++] = 0xb8, memcpy(c + o, &lo, 4), o += 4; /* mov eax, lo */
        c[o++] = 0xba, memcpy(c + o, &hi, 4), o += 4; /* mov edx, hi */
        o += emit(c + o, "\x0f\x30", 2);             /* wrmsr */
    }
    o += emit(c + o, "\x31\xc0\x31\xd2\x0f\x32", 6); /* xor eax,eax; xor edx,edx; rdmsr */
    o += emit(c + o, "\xe6\xe3\xff\xc1", 4);           /* out 0xE3, al; inc ecx */
    c[o++] = 0x81, c[o++] = 0xf9, memcpy(c + o, &last, 4), o += 4; /* cmp ecx, last */
    c[o++] = 0x75, c[o] = (uint8_t)(loop - (o + 1)), o++; /* jne loop */
    c[o++] = 0xf4;
    struct kvm_userspace_memory_region region = { .slot = 0, .memory_size = MEM_SIZE, .userspace_addr = (uint64_t)mem };
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) die("KVM_SET_USER_MEMORY_REGION");
    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    struct kvm_run *run = mmap(NULL, ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0), PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    enter_long_mode(vcpu, CODE);
    int unknown = 0, known = 0;
    for (;;) {
        if (ioctl(vcpu, KVM_RUN, 0) < 0) die("KVM_RUN");
        if (run->exit_reason == KVM_EXIT_X86_WRMSR) {
            printf("  guest WRMSR %#x = %#llx refused (reason %#x)\n", run->msr.index, (unsigned long long)run->msr.data,
                   run->msr.reason);
            run->msr.error = 0;
            continue;
        }
        if (run->exit_reason == KVM_EXIT_X86_RDMSR) {
            unknown = 1;
            run->msr.error = 0, run->msr.data = 0;
            continue;
        }
        if (run->exit_reason == KVM_EXIT_IO && run->io.port == 0xe3) {
            struct kvm_regs g;
            ioctl(vcpu, KVM_GET_REGS, &g);
            if (!unknown) {
                printf("  guest RDMSR %#x = %#llx\n", (unsigned)g.rcx, (unsigned long long)((g.rdx << 32) | (uint32_t)g.rax));
                known++;
            }
            unknown = 0;
            continue;
        }
        if (run->exit_reason == KVM_EXIT_HLT) break;
        printf("  unexpected exit %u %s\n", run->exit_reason, exit_name(run->exit_reason));
        if (run->exit_reason == KVM_EXIT_INTERNAL_ERROR) printf("  suberror %u\n", run->internal.suberror);
        break;
    }
    printf("  %d of %u indexes in [%#x, %#x) are implemented\n", known, last - first, first, last);
}

/*
 * boot: what the KVM backend does under PVM. The vCPU starts (emulated, non-PVM mode) at a host-written stub that
 * WRMSRs the PVM vCPU-struct MSR and halts; the host then loads the real start registers with KVM_SET_REGS, and
 * the guest runs natively from its first instruction: SSE, port I/O, MMIO, HLT.
 */
#define MSR_PVM_VCPU_STRUCT_FORK 0x4b564d10u
#define STUB 0x5000
#define PVCS 0x6000
static void boot(int prog)
{
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    uint8_t *mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    user_pages = 1;
    write_guest(mem, prog, 0, 0);
    uint8_t *c = mem + STUB;
    size_t o = 0;
    uint32_t msr = MSR_PVM_VCPU_STRUCT_FORK, pvcs = PVCS;
    c[o++] = 0xb9, memcpy(c + o, &msr, 4), o += 4;  /* mov ecx, msr */
    c[o++] = 0xb8, memcpy(c + o, &pvcs, 4), o += 4; /* mov eax, pvcs */
    o += emit(c + o, "\xba\x00\x00\x00\x00\x0f\x30\xf4", 8); /* mov edx, 0; wrmsr; hlt */
    struct kvm_userspace_memory_region region = { .slot = 0, .memory_size = MEM_SIZE, .userspace_addr = (uint64_t)mem };
    ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region);
    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    struct kvm_run *run = mmap(NULL, ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0), PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    int n = 256;
    struct kvm_cpuid2 *cpuid = calloc(1, sizeof *cpuid + n * sizeof(struct kvm_cpuid_entry2));
    cpuid->nent = n;
    ioctl(kvm, KVM_GET_SUPPORTED_CPUID, cpuid);
    ioctl(vcpu, KVM_SET_CPUID2, cpuid);
    enter_long_mode(vcpu, STUB);
    uint64_t before, after;
    get_msr(vcpu, msr, &before);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int r = ioctl(vcpu, KVM_RUN, 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    get_msr(vcpu, msr, &after);
    printf("  bootstrap: KVM_RUN %d, exit %u %s after %.1f us; MSR %#x reads %#llx before, %#llx after\n", r,
           run->exit_reason, exit_name(run->exit_reason), (t1.tv_sec - t0.tv_sec) * 1e6 + (t1.tv_nsec - t0.tv_nsec) / 1e3,
           msr, (unsigned long long)before, (unsigned long long)after);
    struct kvm_regs regs = { .rip = CODE, .rsp = STACK_TOP, .rflags = 2 };
    ioctl(vcpu, KVM_SET_REGS, &regs);
    for (int i = 0; i < 12; i++) {
        clock_gettime(CLOCK_MONOTONIC, &t0);
        r = ioctl(vcpu, KVM_RUN, 0);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        struct kvm_regs g;
        ioctl(vcpu, KVM_GET_REGS, &g);
        printf("  exit %u %s after %.1f us: rip=%#llx rax=%#llx rbx=%#llx\n", run->exit_reason, exit_name(run->exit_reason),
               (t1.tv_sec - t0.tv_sec) * 1e6 + (t1.tv_nsec - t0.tv_nsec) / 1e3, (unsigned long long)g.rip,
               (unsigned long long)g.rax, (unsigned long long)g.rbx);
        if (run->exit_reason != KVM_EXIT_IO) break;
    }
}

static void dump_page(const uint8_t *mem, uint64_t gpa)
{
    const uint64_t *q = (const uint64_t *)(mem + gpa);
    printf("  page %#llx:", (unsigned long long)gpa);
    for (int i = 0; i < 24; i++) printf("%s%#llx", i % 8 ? " " : "\n    ", (unsigned long long)q[i]);
    printf("\n");
}

static int parse_variant(struct variant *v, int argc, char **argv)
{
    for (int a = 0; a < argc; a++) {
        char key[16];
        unsigned long long val;
        if (sscanf(argv[a], "%15[^=]=%lli", key, &val) != 2) { fprintf(stderr, "bad %s\n", argv[a]); return -1; }
        if (!strcmp(key, "cs")) v->cs = val;
        else if (!strcmp(key, "ds")) v->ds = val;
        else if (!strcmp(key, "cr0")) v->cr0 = val;
        else if (!strcmp(key, "cr4")) v->cr4 = val;
        else if (!strcmp(key, "efer")) v->efer = val;
        else if (!strcmp(key, "rflags")) v->rflags = val;
        else if (!strcmp(key, "star")) v->star = val;
        else if (!strcmp(key, "prog")) v->code = val;
        else if (!strcmp(key, "trnull")) v->tr_null = val;
        else if (!strcmp(key, "cpuid")) v->cpuid_add = val;
        else if (!strcmp(key, "gmsr")) v->gmsr = val;
        else if (!strcmp(key, "gval")) v->gval = val;
        else if (!strcmp(key, "user")) v->user_pages = val;
        else if (!strcmp(key, "hmsr")) v->hmsr = val;
        else if (!strcmp(key, "hval")) v->hval = val;
        else { fprintf(stderr, "unknown key %s\n", key); return -1; }
    }
    return 0;
}

/* Runs fn(arg) in a child process killed after `seconds` (a vCPU that never exits must not hang the probe). */
static void isolated(unsigned seconds, void (*fn)(const void *), const void *arg)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        alarm(seconds);
        fn(arg);
        fflush(stdout);
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    if (WIFSIGNALED(status))
        printf("  (no exit: the child was killed by signal %d after at most %u s)\n", WTERMSIG(status), seconds);
}

static void run_variant_isolated(const void *v) { run_variant(v, 0); }
static void boot_isolated(const void *prog) { boot(*(const int *)prog); }

#define OURS .cs = 0x08, .ds = 0x10, .cr0 = OUR_CR0, .cr4 = OUR_CR4, .efer = OUR_EFER, .rflags = 0x2
#define NATIVE OURS, .user_pages = 1, .gmsr = MSR_PVM_VCPU_STRUCT_FORK, .gval = 0x30000

/*
 * The experiments, in the order the README tells them. Each runs one tiny guest (see write_guest) in a child
 * process; "stage" exits are `out 0xE2, al` with rax = the stage number (5: after the guest's WRMSR, 1: start of
 * the program, 2: after the program's work, 3: before its final hlt).
 */
static const struct variant experiments[] = {
    { .name = "emulated", OURS, .code = PROG_SSE,
      .why = "the backend's vCPU state before this work (flat long mode, CS 0x08, CR0 PE|MP|ET|NE|WP|PG, CR4 "
             "PAE|OSFXSR|OSXMMEXCPT, EFER LME|LMA): PVM keeps it in non-PVM mode, run by KVM's instruction "
             "emulator; the first SSE instruction (pxor, 66 0f ef c0) ends the run with KVM_EXIT_INTERNAL_ERROR, "
             "suberror 1 (emulation failed) and the instruction bytes" },
    { .name = "emulated-spec-state", .cs = 0x10, .ds = 0x18, .cr0 = OUR_CR0 | CR0_AM,
      .cr4 = OUR_CR4 | CR4_FSGSBASE | CR4_OSXSAVE, .efer = OUR_EFER | EFER_SCE | EFER_NXE, .rflags = 0x202,
      .star = (0x10ull << 32) | (0x23ull << 48), .cpuid_add = 1, .code = PROG_SSE,
      .why = "the state the upstream PVM spec asks for, as far as KVM_SET_SREGS accepts it (CR0 +AM; CR4 "
             "+FSGSBASE +OSXSAVE, which needed the CPUID bits added; EFER +SCE +NXE; the host's kernel selectors "
             "0x10/0x18; MSR_STAR with kernel CS 0x10, user32 CS 0x23; IF=1): still emulated. CR4.PCIDE is refused "
             "(KVM_SET_SREGS: EINVAL) even with PCID in the vCPU's CPUID" },
    { .name = "emulated-loop", OURS, .code = PROG_LOOP_SSE,
      .why = "100,000 iterations of dec/jnz: about a microsecond per instruction, i.e. emulated" },
    { .name = "native-without-user-pages", OURS, .gmsr = MSR_PVM_VCPU_STRUCT_FORK, .gval = 0x30000,
      .code = PROG_SSE,
      .why = "the guest WRMSRs its vCPU struct (0x30000) to MSR 0x4b564d10 with the page tables' U/S bit clear: "
             "the vCPU leaves emulation and never exits again (a fault loop on supervisor-only pages at CPL 3)" },
    { .name = "native", NATIVE, .code = PROG_SSE,
      .why = "the same with U/S set in every page-table entry: SSE runs (rbx = 5 from cvtsd2si), port I/O exits "
             "with KVM_EXIT_IO, hlt with KVM_EXIT_HLT" },
    { .name = "native-loop", NATIVE, .code = PROG_LOOP_SSE,
      .why = "the 100,000-iteration loop now takes microseconds: native execution" },
    { .name = "native-mmio", NATIVE, .code = PROG_MMIO_GPA,
      .why = "a store and a load to a mapped guest-physical address without a memory slot: KVM_EXIT_MMIO, the "
             "load completed with the VMM's data (rbx)" },
    { .name = "native-ud2", NATIVE, .code = PROG_UD2,
      .why = "an exception with no handler (ud2): KVM_EXIT_SHUTDOWN, as on hardware KVM with an empty IDT" },
    { .name = "native-page-fault", NATIVE, .code = PROG_PF,
      .why = "a load from an unmapped linear address: KVM_EXIT_SHUTDOWN" },
    { .name = "native-cpuid", NATIVE, .code = PROG_CPUID,
      .why = "CPUID 0x40000000 at hardware CPL 3 is still intercepted: the vCPU's KVM signature, not the host's" },
    { .name = "native-pushf", NATIVE, .code = PROG_PUSHF,
      .why = "pushf shows IF=1 (rdi = 0x202) though the vCPU was started with RFLAGS 0x2: PVM runs the guest "
             "with the hardware IF set and keeps the guest's IF in the vCPU struct" },
    { .name = "vcpu-struct-on-page-table", OURS, .user_pages = 1, .gmsr = MSR_PVM_VCPU_STRUCT_FORK, .gval = 0x10000,
      .code = PROG_SSE,
      .why = "the MSR value is a guest-physical page that PVM writes to: pointed at the PML4, the guest dies "
             "(KVM_EXIT_SHUTDOWN)" },
    { .name = "vcpu-struct-outside-memory", OURS, .user_pages = 1, .gmsr = MSR_PVM_VCPU_STRUCT_FORK,
      .gval = 0x800000, .code = PROG_SSE, .why = "pointed outside guest memory: KVM_EXIT_SHUTDOWN" },
    { .name = "vcpu-struct-page-zero", OURS, .user_pages = 1, .gmsr = MSR_PVM_VCPU_STRUCT_FORK, .gval = 0x1,
      .code = PROG_SSE, .why = "values below 0x1000 (page 0) leave the vCPU emulated" },
    { .name = "host-set-msr", OURS, .user_pages = 1, .hmsr = MSR_PVM_VCPU_STRUCT_FORK, .hval = 0x30001,
      .code = PROG_SSE,
      .why = "the VMM sets the MSR itself with KVM_SET_MSRS (accepted only with bit 0 set; reads back with bit 10 "
             "added): SSE runs natively, but after a few exits the final hlt goes astray (rip 0x3fffff, "
             "KVM_EXIT_INTERNAL_ERROR); hence the backend's guest-side bootstrap" },
    { .name = "exit-cost-emulated", OURS, .code = PROG_EXITS,
      .why = "10,000 `out` round trips in emulated mode" },
    { .name = "exit-cost-native", NATIVE, .code = PROG_EXITS,
      .why = "10,000 `out` round trips in native mode: slower than emulated, every one is a trap at CPL 3" },
};

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) die("open /dev/kvm");
    if (argc > 3 && !strcmp(argv[1], "msrs")) {
        scan_msrs(strtoul(argv[2], NULL, 0), strtoul(argv[3], NULL, 0), argc > 4, argc > 4 ? strtoull(argv[4], NULL, 0) : 0);
        return 0;
    }
    if (argc > 1 && !strcmp(argv[1], "boot")) {
        alarm(5);
        boot(argc > 2 ? atoi(argv[2]) : PROG_SSE);
        return 0;
    }
    if (argc > 1 && !strcmp(argv[1], "try")) {
        struct variant v = { OURS, .name = "try", .why = "from the command line" };
        if (parse_variant(&v, argc - 2, argv + 2) < 0) return 64;
        alarm(5);
        run_variant(&v, 1);
        if (v.gmsr && v.gval < MEM_SIZE) dump_page(guest_mem, v.gval & ~0xfffull);
        return 0;
    }
    int all = argc < 2;
    for (int a = 1; a < argc; a++) all |= !strcmp(argv[a], "all");
    int want_system = all;
    for (int a = 1; a < argc; a++) want_system |= !strcmp(argv[a], "system");
    if (want_system) {
        report_system();
        printf("== reset state and MSRs of a fresh vCPU\n");
        struct variant fresh = { OURS, .name = "fresh", .why = "", .code = PROG_HLT };
        run_variant(&fresh, 1);
        printf("== guest RDMSR of 0x4b564d00..0x4b564dff (KVM_CAP_X86_USER_SPACE_MSR: unknown indexes come to the VMM)\n");
        scan_msrs(0x4b564d00, 0x4b564e00, 0, 0);
        printf("== guest WRMSR 0x4b564d10 = 0x1f, RDMSR back\n");
        scan_msrs(0x4b564d10, 0x4b564d11, 1, 0x1f);
        printf("== guest WRMSR 0x4b564d10 = 0x7e0 (bits 5..10 are dropped), RDMSR back\n");
        scan_msrs(0x4b564d10, 0x4b564d11, 1, 0x7e0);
    }
    for (size_t i = 0; i < sizeof experiments / sizeof experiments[0]; i++) {
        int wanted = all;
        for (int a = 1; a < argc; a++) wanted |= !strcmp(argv[a], experiments[i].name);
        if (!wanted) continue;
        printf("== %s: %s\n", experiments[i].name, experiments[i].why);
        isolated(strstr(experiments[i].name, "without-user") ? 2 : 5, run_variant_isolated, &experiments[i]);
    }
    if (all || (argc > 1 && !strcmp(argv[1], "backend"))) {
        static const int progs[] = { PROG_SSE, PROG_MMIO_GPA };
        for (size_t i = 0; i < 2; i++) {
            printf("== backend-bootstrap (program %d): what the KVM backend does: the vCPU starts at a stub at 0x%x "
                   "(mov ecx, 0x4b564d10; mov eax, 0x%x; mov edx, 0; wrmsr; hlt), then KVM_SET_REGS loads the "
                   "entry state\n", progs[i], STUB, PVCS);
            isolated(5, boot_isolated, &progs[i]);
        }
    }
    return 0;
}
